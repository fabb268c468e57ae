//! The work-order service, used by the API and the call runtime alike (DESIGN.md:
//! `api`, `runtime` → `orders`): its context (calendar, units, routing, clock), the
//! outbox that keeps every answered create through a database outage, the durable
//! journal under it, the notifier (log + webhooks) and the leaders' directory.

pub mod context;
pub mod intake;
pub mod journal;
pub mod leaders;
pub mod notify;
pub mod outbox;
pub mod partners;

pub use context::{OrdersContext, dispatch_gaps, new_order_id, unit_tree};

/// The URL the console plays a call's recording from (never a server path): what an
/// order's history stores for a recorded call, served by the API's recordings route.
#[must_use]
pub fn recording_url(call_id: &str) -> String {
    format!("/api/recordings/{call_id}")
}
