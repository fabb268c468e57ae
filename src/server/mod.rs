//! The tokio shell: sockets, clocks and the database around the sans-IO cores.

pub mod acd;
pub mod call_orders;
pub mod callback;
pub mod calls;
pub mod metrics;
pub mod outbound;
pub mod outleg;
pub mod reminders;
pub mod sip;
pub mod survey;
pub mod transfer;
pub mod voicemail;

use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::sip::endpoint::Endpoint;
use crate::store::{Store, StoreError};
use metrics::Metrics;
use sip::{Shutdown, SipShell, SipSockets, wall_ms};

/// Everything `hotline serve` needs, after command-line overrides.
#[derive(Debug)]
pub struct ServeOptions {
    pub config: Config,
    pub database_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database")]
    Store(#[from] StoreError),
    #[error("cannot load the working-day calendar {path}")]
    Calendar {
        path: std::path::PathBuf,
        source: crate::calendar::CalendarError,
    },
    #[error("cannot listen for SIP on {addr}")]
    SipBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP on {addr}")]
    HttpBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("media plane")]
    Media(#[source] calls::MediaSetupError),
    #[error("HOTLINE_FAKE_NOW {0:?} is not a time like 2026-02-14T10:00+08:00")]
    FakeNow(String),
    #[error("cannot create the recordings directory {path}")]
    Recordings {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Run until SIGINT or SIGTERM.
///
/// # Errors
/// Start-up failures (database, sockets); a clean shutdown is `Ok`.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let config = options.config;
    let store = Store::connect(&options.database_url).await?;
    store.migrate().await?;
    std::fs::create_dir_all(&config.server.recordings_dir).map_err(|source| {
        ServeError::Recordings {
            path: config.server.recordings_dir.clone(),
            source,
        }
    })?;
    let recordings = config.server.recordings_dir.clone();
    tokio::task::spawn_blocking(move || calls::repair_recordings(&recordings));
    let metrics = Arc::new(Metrics::default());
    let calendar = crate::calendar::Calendar::load(&config.server.calendar).map_err(|source| {
        ServeError::Calendar {
            path: config.server.calendar.clone(),
            source,
        }
    })?;
    let warnings = calendar_warnings(
        &calendar,
        chrono::Utc::now()
            .with_timezone(&crate::calendar::shanghai())
            .date_naive(),
    );
    for w in &warnings {
        warn!("{w}: deadlines reaching into it are provisional (Mon-Fri assumed)");
    }

    let bindings = store.live_bindings(wall_ms()).await?;
    let restored = bindings.len();
    let endpoint = Endpoint::new(
        &config,
        bindings,
        metrics.clone(),
        std::time::Instant::now(),
        wall_ms(),
        None,
    );

    let sip_addr = config.server.sip_listen;
    let sockets = SipSockets::bind(sip_addr)
        .await
        .map_err(|source| ServeError::SipBind {
            addr: sip_addr,
            source,
        })?;
    let sip_local = sockets.udp.local_addr().unwrap_or(sip_addr);
    let http_addr = config.server.http_listen;
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| ServeError::HttpBind {
            addr: http_addr,
            source,
        })?;
    let http_local = http.local_addr().unwrap_or(http_addr);

    let clock = match std::env::var("HOTLINE_FAKE_NOW") {
        Ok(text) => {
            let fake = chrono::DateTime::parse_from_rfc3339(&text)
                .or_else(|_| chrono::DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M%:z"))
                .map_err(|_| ServeError::FakeNow(text.clone()))?;
            warn!(now = %fake, "HOTLINE_FAKE_NOW: wall-clock decisions use a shifted clock");
            calls::WallClock::starting_at(fake)
        }
        Err(_) => calls::WallClock::default(),
    };
    let media = calls::MediaContext::from_config(
        &config,
        sip_local,
        clock,
        Arc::new(calendar.clone()),
        Some(store.clone()),
    )
    .map_err(ServeError::Media)?;
    let shutdown = Shutdown::default();
    let media = Arc::new(media);
    let acd = media.acd.clone();
    let media_ctx = media.clone();
    let shell = SipShell::start(
        sockets,
        endpoint,
        metrics.clone(),
        store.clone(),
        config.sip.max_tcp_connections_per_source,
        Duration::from_secs(config.sip.tcp_idle_timeout_secs),
        shutdown.clone(),
        media,
    );
    if let Some(acd) = acd.as_ref() {
        acd.start(&shell, shutdown.clone());
    }
    tokio::spawn(expire_bindings_loop(store.clone(), shutdown.clone()));

    let orders = Arc::new(api::orders::OrdersContext::from_config(&config, calendar));
    media_ctx.start_call_orders(
        store.clone(),
        orders.clone(),
        crate::ticket::UnitId::new(config.calls.province_center.as_str()),
    );
    tokio::spawn(reminders::reminder_loop(
        store.clone(),
        orders.clone(),
        Arc::new(reminders::LogNotifier),
        shutdown.clone(),
    ));
    tokio::spawn(survey::survey_loop(
        store.clone(),
        orders.clone(),
        clock,
        shutdown.clone(),
    ));
    tokio::spawn(voicemail::voicemail_loop(
        store.clone(),
        orders.clone(),
        crate::ticket::UnitId::new(config.calls.province_center.as_str()),
        clock,
        shutdown.clone(),
    ));
    let state = AppState {
        store: store.clone(),
        metrics,
        warnings: Arc::new(warnings),
        orders,
        cities: Arc::new(config.cities.clone()),
    };
    let app = api::router(state)
        .layer(axum::Extension(api::queues::AcdApi(acd)))
        .layer(axum::Extension(api::recordings::RecordingsDir(Some(
            config.server.recordings_dir.clone(),
        ))))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    info!(
        sip = %sip_local,
        http = %http_local,
        database = ?store.backend(),
        restored_registrations = restored,
        "hotline ready"
    );
    wait_for_signal().await;
    info!("shutting down");
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(10), http_task).await {
        Ok(Ok(Err(e))) => return Err(ServeError::Http(e)),
        Ok(_) => {}
        Err(_) => warn!("HTTP server did not stop within 10 s"),
    }
    info!("stopped");
    Ok(())
}

/// "calendar for 2027 not loaded" for this year and next when their data is missing:
/// deadlines computed now can reach into next year.
pub fn calendar_warnings(
    calendar: &crate::calendar::Calendar,
    today: chrono::NaiveDate,
) -> Vec<String> {
    use chrono::Datelike;
    let loaded = calendar.loaded_years();
    [today.year(), today.year() + 1]
        .into_iter()
        .filter(|y| !loaded.contains(y))
        .map(|y| format!("calendar for {y} not loaded"))
        .collect()
}

/// Expired registrations are removed from the database periodically (the registrar
/// drops them from memory on its own timer).
async fn expire_bindings_loop(store: Store, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = store.delete_expired_bindings(wall_ms()).await {
            warn!(%e, "could not delete expired registrations");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(%e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn missing_next_year_is_a_startup_warning() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/calendar/cn-workdays.toml");
        let calendar = crate::calendar::Calendar::load(&path).expect("shipped calendar");
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(
            calendar_warnings(&calendar, day(2026, 11, 28)),
            vec!["calendar for 2027 not loaded".to_string()]
        );
        assert!(calendar_warnings(&calendar, day(2025, 6, 1)).is_empty());
        assert_eq!(calendar_warnings(&calendar, day(2027, 1, 5)).len(), 2);
    }
}
