//! Appointment reminders (W-8): each booking writes its reminder row in the booking's
//! transaction (due 24 hours before the slot, or at once when the slot is sooner); this
//! pass sends those due, for appointments still booked or confirmed, and marks them.
//! "Sent" is a log line for now (`appointment reminder`, with the masked phone): the
//! project has no SMS gateway; a gateway plugs in here.

use tracing::{info, warn};

use crate::store::{Store, StoreError};

/// Reminders sent per pass.
pub const PASS_LIMIT: i64 = 200;
/// How often the loop looks.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Sends the reminders due at `now_ms`; returns how many.
///
/// # Errors
/// Database errors (those sent before stay marked).
pub async fn send_due(store: &Store, now_ms: i64) -> Result<usize, StoreError> {
    let due = store.due_reminders(now_ms, PASS_LIMIT).await?;
    for d in &due {
        let a = &d.appointment;
        let slot = chrono::DateTime::from_timestamp_millis(a.slot_start_ms)
            .map(|t| t.with_timezone(&crate::calendar::shanghai()).to_rfc3339())
            .unwrap_or_default();
        info!(
            code = %a.code,
            institution = a.institution_id,
            slot = %slot,
            phone = %super::masked_phone(&a.phone),
            "appointment reminder"
        );
        store.mark_reminder_sent(a.id, now_ms).await?;
    }
    Ok(due.len())
}

/// Runs [`send_due`] every [`EVERY`] until shutdown.
pub async fn reminder_loop(
    store: Store,
    clock: crate::clock::WallClock,
    shutdown: crate::shutdown::Shutdown,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = send_due(&store, clock.now().timestamp_millis()).await {
            warn!(%e, "could not send appointment reminders");
        }
    }
}
