//! The composition root of `hotline serve`: reads the configuration, opens the store,
//! the outboxes and the sockets, builds the shell's tasks (`src/server/`) and the API
//! (`src/api/`) over them, and runs until SIGTERM. It is the one place that knows both:
//! the shell never imports the API, and the API reaches the shell only through the
//! handles given to it here.

use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::orders::{leaders, notify, outbox};
use crate::server::sip::{SipShell, SipSockets, wall_ms};
use crate::server::{
    HeartbeatState, calendar_warnings, call_outbox, calls, close_calls_left_open, drain_calls,
    expire_bindings_loop, heartbeat_loop, http, order_call, reminders, survey, tls, voicemail,
    wait_for_signal, write_heartbeat,
};
use crate::shutdown::Shutdown;
use crate::sip::endpoint::Endpoint;
use crate::store::{Store, StoreError};

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
    #[error("cannot listen for HTTPS on {addr}")]
    HttpsBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS certificate")]
    Tls(#[from] tls::TlsError),
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
    #[error("work-order outbox")]
    Outbox(#[from] outbox::OutboxError),
}

/// Run until SIGINT or SIGTERM.
///
/// # Errors
/// Start-up failures (database, sockets); a clean shutdown is `Ok`.
pub async fn serve(options: ServeOptions) -> Result<(), ServeError> {
    let config = options.config;
    let open_files = http::plan_open_files(http::raise_open_file_limit(), &config);
    info!(
        open_files = open_files.limit,
        reserved_for_sip_rtp_and_files = open_files.reserve,
        http_max_connections = open_files.http_max_connections,
        "open-file limit {}: {} kept for SIP, RTP and files, HTTP connections at most {}",
        open_files.limit,
        open_files.reserve,
        open_files.http_max_connections
    );
    if open_files.http_max_connections < config.http.max_connections {
        warn!(
            configured = config.http.max_connections,
            allowed = open_files.http_max_connections,
            "http.max_connections lowered: the open-file limit cannot hold it besides SIP and RTP"
        );
    }
    let clock = match std::env::var("HOTLINE_FAKE_NOW") {
        Ok(text) => {
            let fake = chrono::DateTime::parse_from_rfc3339(&text)
                .or_else(|_| chrono::DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M%:z"))
                .map_err(|_| ServeError::FakeNow(text.clone()))?;
            warn!(now = %crate::logfmt::deadline(&fake), "HOTLINE_FAKE_NOW: wall-clock decisions use a shifted clock");
            crate::clock::WallClock::starting_at(fake)
        }
        Err(_) => crate::clock::WallClock::default(),
    };
    let store = Store::connect(&options.database_url).await?;
    store.migrate().await?;
    let metrics = Arc::new(Metrics::default());
    metrics.set_service_level_secs(config.metrics.service_level_secs);
    let heartbeat = config.server.data_dir.join("heartbeat");
    close_calls_left_open(&store, &heartbeat, clock, &metrics).await;
    let outbox = outbox::OrderOutbox::open(&config.server.data_dir, metrics.clone())?;
    let call_outbox =
        call_outbox::CallRecordOutbox::open(&config.server.data_dir, metrics.clone())?;
    std::fs::create_dir_all(&config.server.recordings_dir).map_err(|source| {
        ServeError::Recordings {
            path: config.server.recordings_dir.clone(),
            source,
        }
    })?;
    let recordings = config.server.recordings_dir.clone();
    tokio::task::spawn_blocking(move || calls::repair_recordings(&recordings));
    let calendar = crate::calendar::Calendar::load(&config.server.calendar).map_err(|source| {
        ServeError::Calendar {
            path: config.server.calendar.clone(),
            source,
        }
    })?;
    // Logged once here; /healthz computes them afresh from the calendar in force.
    let calendar_missing = calendar_warnings(
        &calendar,
        &config.server.calendar,
        chrono::Utc::now()
            .with_timezone(&crate::calendar::shanghai())
            .date_naive(),
    );
    for w in &calendar_missing {
        warn!("{w} (deadlines reaching into it are provisional: Mon-Fri assumed)");
    }
    for gap in api::orders::dispatch_gaps(&config) {
        warn!("{gap}");
    }
    if let Some(gap) = leaders::leader_gaps(&config) {
        warn!("{gap}");
    }
    if let Some(gap) = tls::sdes_gaps(&config) {
        warn!("{gap}");
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

    let identity = if crate::config::TlsConfig::wanted(&config.server) {
        let identity = tls::load_or_create(&config)?;
        log_identity(&identity);
        Some(identity)
    } else {
        None
    };
    let sip_addr = config.server.sip_listen;
    let mut sockets = SipSockets::bind(sip_addr)
        .await
        .map_err(|source| ServeError::SipBind {
            addr: sip_addr,
            source,
        })?;
    let mut sip_tls_local = None;
    if let (Some(addr), Some(identity)) = (config.server.sip_tls_listen, &identity) {
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config(&[])?);
        sip_tls_local = Some(
            sockets
                .bind_tls(addr, acceptor)
                .await
                .map_err(|source| ServeError::SipBind { addr, source })?,
        );
    }
    let sip_local = sockets.udp.local_addr().unwrap_or(sip_addr);
    let http_addr = config.server.http_listen;
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .map_err(|source| ServeError::HttpBind {
            addr: http_addr,
            source,
        })?;
    let http_local = http.local_addr().unwrap_or(http_addr);
    let https = match (config.server.https_listen, &identity) {
        (Some(addr), Some(identity)) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::HttpsBind { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config(&[b"http/1.1"])?);
            Some((listener, acceptor, local))
        }
        _ => None,
    };

    // One calendar for the IVR's hours and the orders' deadlines, reloaded by the
    // reminder scheduler when its file changes (`calendar add-year`).
    let shared_calendar =
        crate::calendar::SharedCalendar::watching(&config.server.calendar, calendar.clone());
    let media = calls::MediaContext::from_config(
        &config,
        sip_local,
        clock,
        shared_calendar.clone(),
        Some(store.clone()),
    )
    .map_err(ServeError::Media)?;
    let shutdown = Shutdown::default();
    let media = Arc::new(media);
    let media_plane = media.clone();
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
    let acd_for_shutdown = acd.clone();
    let mut restored_sign_ins = 0;
    if let Some(acd) = acd.as_ref() {
        acd.count_in(metrics.clone());
        restored_sign_ins = acd.restore_presence().await;
        acd.start(&shell, shutdown.clone());
    }
    tokio::spawn(expire_bindings_loop(store.clone(), shutdown.clone()));
    tokio::spawn(heartbeat_loop(heartbeat.clone(), clock, shutdown.clone()));
    tokio::spawn(crate::directory::reminders::reminder_loop(
        store.clone(),
        clock,
        shutdown.clone(),
    ));

    let mut notifiers: Vec<Arc<dyn notify::Notifier>> = vec![Arc::new(notify::LogNotifier)];
    if let Some(url) = &config.notify.webhook_url {
        match crate::http_client::HttpUrl::parse(url) {
            Ok(url) => {
                info!(%url, "order notices also go to the webhook");
                notifiers.push(Arc::new(notify::WebhookNotifier::start(
                    url,
                    &config.notify,
                    metrics.clone(),
                    shutdown.clone(),
                )));
            }
            // check-config reports it; the server still runs.
            Err(e) => warn!(%e, "notify.webhook_url unusable: notices are only logged"),
        }
    }
    notifiers.push(Arc::new(leaders::LeaderNotifier::start(
        leaders::directory(&config),
        &config.server.data_dir,
        Duration::from_secs(config.notify.webhook_timeout_secs.max(1)),
        metrics.clone(),
        &shutdown,
    )?));
    let notifier: Arc<dyn notify::Notifier> = Arc::new(notify::FanOut(notifiers));
    let mut orders = api::orders::OrdersContext::from_config(&config, calendar);
    orders.calendar = shared_calendar;
    orders.notifier = Some(notifier.clone());
    orders.clock = clock;
    let orders = Arc::new(orders);
    // Before anything appends orders: the read scope follows the configured units.
    store.install_unit_tree(&orders.units).await?;
    store.set_order_numbering(Some(&config.orders.number_prefix));
    tokio::spawn(outbox.clone().replay_loop(store.clone(), shutdown.clone()));
    // Partner hotlines' status callbacks, read from the ledger (issue 17, H-6).
    for partner in orders.partners.0.values() {
        tokio::spawn(crate::orders::partners::delivery_loop(
            store.clone(),
            partner.clone(),
            clock,
            crate::orders::partners::DeliveryTiming::default(),
            shutdown.clone(),
        ));
    }
    media_ctx.keep_call_records_in(call_outbox.clone());
    tokio::spawn(
        call_outbox
            .clone()
            .replay_loop(store.clone(), shutdown.clone()),
    );
    media_ctx.start_call_orders(
        store.clone(),
        orders.clone(),
        crate::ticket::UnitId::new(config.calls.province_center.as_str()),
    );
    tokio::spawn(reminders::reminder_loop(
        store.clone(),
        orders.clone(),
        notifier,
        clock,
        Duration::from_secs(config.notify.reminder_interval_secs.max(1)),
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
        metrics: metrics.clone(),
        warnings: Arc::new(Vec::new()),
        orders,
        auth: Arc::new(api::auth::Auth::for_config(&config)),
        cities: Arc::new(config.cities.clone()),
    };
    // Published reports (H-15, W-19, W-20): made once after each month, quarter and year.
    let reports_dir = config.server.data_dir.join("reports");
    tokio::spawn(api::reports::report_loop(
        state.clone(),
        reports_dir.clone(),
        shutdown.clone(),
    ));
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = api::router(state)
        .layer(axum::Extension(api::reports::ReportsDir(Some(reports_dir))))
        .layer(axum::Extension(api::queues::AcdApi(acd)))
        .layer(axum::Extension(api::softphone::SoftphoneApi(Some(
            media_plane.browsers.clone(),
        ))))
        .layer(axum::Extension(api::order_calls::OrderCallsApi(Some(
            order_call::OrderCalls::new(&shell, media_plane.clone()),
        ))))
        .layer(axum::Extension(api::ServerHealth {
            outbox: Some(outbox.clone()),
            call_outbox: Some(call_outbox.clone()),
            draining: draining.clone(),
            sip: Some(api::SipLiveness(Arc::new({
                let shell = Arc::downgrade(&shell);
                move || shell.upgrade().is_some_and(|s| s.serving())
            }))),
        }))
        .layer(axum::Extension(api::recordings::RecordingsDir(Some(
            config.server.recordings_dir.clone(),
        ))));
    let limits = http::HttpLimits {
        header_timeout: Duration::from_secs(config.http.header_timeout_secs),
        max_connections: open_files.http_max_connections,
        max_connections_per_source: config
            .http
            .max_connections_per_source
            .min(open_files.http_max_connections),
        exempt_from_per_source: config.http.trusted_proxies.clone(),
    };
    let connections = http::ConnectionTable::new(limits);
    let mut https_local = None;
    let https_task = https.map(|(listener, acceptor, local)| {
        https_local = Some(local);
        tokio::spawn(http::serve(
            listener,
            Some(acceptor),
            app.clone(),
            connections.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    let plain_app = match https_local {
        Some(https) => app.layer(axum::middleware::from_fn_with_state(
            https.port(),
            http::redirect_to_https,
        )),
        None => app,
    };
    let http_task = tokio::spawn(http::serve(
        http,
        None,
        plain_app,
        connections,
        metrics.clone(),
        shutdown.clone(),
    ));

    // A first start (no work order yet): say who can sign in, or how to add a user.
    if store.has_orders().await.is_ok_and(|any| !any) {
        for line in crate::user_cli::first_start_lines(&config.users) {
            info!("{line}");
        }
    }
    let console = match https_local {
        Some(https) => crate::user_cli::console_url("https", https),
        None => crate::user_cli::console_url("http", http_local),
    };
    let fingerprint = identity.as_ref().map(tls::Identity::fingerprint);
    info!(
        console = %console,
        sip = %sip_local,
        http = %http_local,
        https = https_local.map(|a| a.to_string()),
        sip_tls = sip_tls_local.map(|a| a.to_string()),
        tls_sha256 = fingerprint,
        database = store.backend().as_str(),
        restored_registrations = restored,
        restored_sign_ins,
        "hotline ready: consoles at {console}"
    );
    wait_for_signal().await;
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    drain_calls(
        &shell,
        &media_plane,
        Duration::from_secs(config.server.drain_timeout_secs),
    )
    .await;
    info!("shutting down");
    if let Some(acd) = acd_for_shutdown.as_ref()
        && tokio::time::timeout(Duration::from_secs(5), acd.flush_queue_log())
            .await
            .is_err()
    {
        warn!("queue_log rows not all written within 5 s of the shutdown");
    }
    shutdown.cancel();
    for task in std::iter::once(http_task).chain(https_task) {
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(Err(e))) => return Err(ServeError::Http(e)),
            Ok(_) => {}
            Err(_) => warn!("HTTP server did not stop within 10 s"),
        }
    }
    write_heartbeat(&heartbeat, HeartbeatState::Stopped, clock.now());
    info!("stopped");
    Ok(())
}

/// Say which certificate the TLS listeners present and its fingerprint, which clients
/// of a self-signed one compare with what their browser or phone shows.
fn log_identity(identity: &tls::Identity) {
    let sha256 = identity.fingerprint();
    match &identity.origin {
        tls::Origin::Configured { certificate, .. } => {
            info!(certificate = %certificate.display(), %sha256, "TLS certificate {} (SHA-256 {sha256})", certificate.display());
        }
        tls::Origin::SelfSignedNew { path } => warn!(
            certificate = %path.display(),
            %sha256,
            "no [tls] certificate configured: made a self-signed one, {} (SHA-256 {sha256}); browsers and phones warn until it is trusted or replaced",
            path.display()
        ),
        tls::Origin::SelfSignedKept { path } => warn!(
            certificate = %path.display(),
            %sha256,
            "no [tls] certificate configured: the self-signed {} is used (SHA-256 {sha256})",
            path.display()
        ),
    }
}
