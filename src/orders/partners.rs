//! Partner hotlines (12345 and others, H-6; WEB-INTAKE): orders handed over by machine
//! interface, and their progress told back.
//!
//! # Requests
//! Each request names its partner (`X-Partner-Id`) and carries `X-Timestamp` (unix
//! seconds) and `X-Signature`: hex HMAC-SHA256 under the partner's secret of
//! `"{timestamp}\n{METHOD}\n{path}\n{body}"`. A timestamp more than
//! [`REPLAY_WINDOW_SECS`] from the server's clock is refused, so a captured request
//! cannot be replayed later; within the window a replayed create is answered by its
//! `Idempotency-Key` (required on creates), which the database keeps unique per partner
//! (`idempotency_keys (actor, key)`, actor `partner:<id>`): a retry never makes a
//! second order, however many arrive at once. The same rows say which orders are the
//! partner's: it sees no others.
//!
//! # Status callbacks
//! [`delivery_loop`] reads the ledger itself: the events of each partner's orders that
//! moved them to dispatched, replied or closed, after the partner's cursor
//! (`partner_cursors`, advanced only after the partner answered 2xx). So a callback is
//! as durable as the event (nothing to lose between a commit and a queue), sent in the
//! ledger's order (in order per order), retried with a doubling backoff until
//! delivered, and signed like requests (`X-Timestamp`, `X-Signature` over
//! `"{timestamp}\nPOST\n{path}\n{body}"`). A receiver drops repeats by `id`.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac as _};
use serde::Serialize;
use sha2_011::Sha256 as Sha256v11;
use tracing::{info, warn};

use crate::config::PartnerConfig;
use crate::http_client::{self, HttpUrl, Request};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// How far a request's timestamp may be from the server's clock.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// Why a partner's request is refused (all answered 401 alike, the reason logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerAuthError {
    #[error("unknown partner")]
    UnknownPartner,
    #[error("missing or malformed X-Timestamp")]
    BadTimestamp,
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("bad signature")]
    BadSignature,
}

/// A configured partner.
#[derive(Debug, Clone)]
pub struct Partner {
    pub id: String,
    pub name: String,
    secret: Vec<u8>,
    pub webhook: Option<HttpUrl>,
}

impl Partner {
    /// From its `[[partners]]` entry (a webhook URL that does not parse is dropped with
    /// a warning; `check-config` names it).
    #[must_use]
    pub fn from_config(c: &PartnerConfig) -> Self {
        let webhook = c
            .webhook_url
            .as_deref()
            .and_then(|u| match HttpUrl::parse(u) {
                Ok(url) => Some(url),
                Err(e) => {
                    warn!(partner = %c.id, %e, "partner webhook_url ignored");
                    None
                }
            });
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            secret: c.secret.as_bytes().to_vec(),
            webhook,
        }
    }

    /// A partner with this secret (tests).
    #[must_use]
    pub fn new(id: &str, secret: &str, webhook: Option<HttpUrl>) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            secret: secret.as_bytes().to_vec(),
            webhook,
        }
    }

    /// The idempotency actor and ownership key of this partner's orders.
    #[must_use]
    pub fn actor(&self) -> String {
        format!("partner:{}", self.id)
    }

    /// Hex HMAC-SHA256 of a request.
    #[must_use]
    pub fn sign(&self, timestamp: i64, method: &str, path: &str, body: &[u8]) -> String {
        sign(&self.secret, timestamp, method, path, body)
    }

    /// Check a request's timestamp (against `now_secs`) and signature.
    ///
    /// # Errors
    /// [`PartnerAuthError`].
    pub fn verify(
        &self,
        timestamp: &str,
        signature: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), PartnerAuthError> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| PartnerAuthError::BadTimestamp)?;
        if (now_secs - ts).abs() > REPLAY_WINDOW_SECS {
            return Err(PartnerAuthError::Stale);
        }
        let expected = self.sign(ts, method, path, body);
        let given = signature.trim().to_ascii_lowercase();
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            given.as_bytes(),
        )) {
            Ok(())
        } else {
            Err(PartnerAuthError::BadSignature)
        }
    }
}

/// Hex HMAC-SHA256 under `secret` of `"{timestamp}\n{method}\n{path}\n{body}"`.
#[must_use]
pub fn sign(secret: &[u8], timestamp: i64, method: &str, path: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256v11> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}\n{method}\n{path}\n").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The partners by id.
#[derive(Debug, Clone, Default)]
pub struct Partners(pub HashMap<String, Partner>);

impl Partners {
    #[must_use]
    pub fn from_config(list: &[PartnerConfig]) -> Self {
        Self(
            list.iter()
                .map(|c| (c.id.clone(), Partner::from_config(c)))
                .collect(),
        )
    }

    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Partner> {
        self.0.get(id)
    }
}

/// A status callback's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCallback {
    /// `<order id>:<event seq>`: unique per callback; a receiver drops repeats.
    pub id: String,
    pub order_id: String,
    /// The order's short number.
    pub number: Option<String>,
    /// `dispatched`, `replied` or `closed`.
    pub status: &'static str,
    /// The lifecycle state after the event.
    pub state: String,
    /// When the event was recorded (RFC 3339).
    pub at: String,
    /// The reply, once given (replied, closed).
    pub reply: Option<String>,
}

/// The status a state entered means to a partner, if any.
#[must_use]
pub fn status_of(state_after: &str) -> Option<&'static str> {
    match state_after {
        "dispatched" => Some("dispatched"),
        "replied" | "fed_back" => Some("replied"),
        "closed" => Some("closed"),
        _ => None,
    }
}

/// Delivery timing.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryTiming {
    /// Idle wait between scans of the ledger.
    pub poll: Duration,
    /// First wait after a failed delivery; doubled each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
}

impl Default for DeliveryTiming {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

async fn wait(shutdown: &Shutdown, d: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// Deliver `partner`'s status callbacks until `shutdown` (see the module docs). The
/// clock gives each callback's `X-Timestamp`.
pub async fn delivery_loop(
    store: Store,
    partner: Partner,
    clock: crate::clock::WallClock,
    timing: DeliveryTiming,
    shutdown: Shutdown,
) {
    let Some(url) = partner.webhook.clone() else {
        return;
    };
    let actor = partner.actor();
    let mut backoff = timing.backoff;
    while !shutdown.is_cancelled() {
        let batch = match store.partner_events_after(&actor, 100).await {
            Ok(batch) => batch,
            Err(e) => {
                warn!(partner = %partner.id, %e, "partner callbacks: ledger not read");
                wait(&shutdown, backoff).await;
                backoff = (backoff * 2).min(timing.max_backoff);
                continue;
            }
        };
        if batch.is_empty() {
            wait(&shutdown, timing.poll).await;
            continue;
        }
        for event in batch {
            if shutdown.is_cancelled() {
                return;
            }
            let Some(status) = status_of(&event.state_after) else {
                // Not a status the partner follows: step over it.
                if let Err(e) = store.set_partner_cursor(&actor, event.global_seq).await {
                    warn!(partner = %partner.id, %e, "partner cursor not advanced");
                }
                continue;
            };
            let order = store.load_order(&event.order_id).await.ok().flatten();
            let body = serde_json::to_value(StatusCallback {
                id: format!("{}:{}", event.order_id, event.seq),
                order_id: event.order_id.clone(),
                number: order.as_ref().and_then(|o| o.number.clone()),
                status,
                state: event.state_after.clone(),
                at: event.at.clone(),
                reply: order
                    .as_ref()
                    .and_then(|o| o.reply.clone())
                    .filter(|_| status != "dispatched"),
            })
            .unwrap_or_default();
            // In order: this callback is retried until delivered before the next.
            loop {
                let ts = clock.now().timestamp();
                let signature = partner.sign(ts, "POST", url.target(), body.to_string().as_bytes());
                let request = Request::post_json(url.clone(), &body)
                    .header("X-Partner-Id", &partner.id)
                    .header("X-Timestamp", &ts.to_string())
                    .header("X-Signature", &signature)
                    .header(
                        "X-Hotline-Event",
                        &format!("{}:{}", event.order_id, event.seq),
                    );
                let failure = match http_client::send(&request, timing.timeout).await {
                    Ok(r) if r.is_success() => None,
                    Ok(r) => Some(format!("answered {}", r.status)),
                    Err(e) => Some(e.to_string()),
                };
                match failure {
                    None => {
                        info!(partner = %partner.id, order = %event.order_id, status, "partner callback delivered");
                        backoff = timing.backoff;
                        break;
                    }
                    Some(failure) => {
                        warn!(partner = %partner.id, order = %event.order_id, status, %failure, retry_in_ms = backoff.as_millis(), "partner callback failed");
                        wait(&shutdown, backoff).await;
                        backoff = (backoff * 2).min(timing.max_backoff);
                        if shutdown.is_cancelled() {
                            return;
                        }
                    }
                }
            }
            if let Err(e) = store.set_partner_cursor(&actor, event.global_seq).await {
                // Delivered again after a restart: the receiver drops the repeat by id.
                warn!(partner = %partner.id, %e, "partner cursor not advanced");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_passes_inside_the_window_only_and_unchanged() {
        let p = Partner::new("12345", "a-long-shared-secret", None);
        let body = br#"{"description":"x"}"#;
        let sig = p.sign(1_000, "POST", "/api/partner/orders", body);
        assert_eq!(
            p.verify("1000", &sig, "POST", "/api/partner/orders", body, 1_200),
            Ok(())
        );
        assert_eq!(
            p.verify("1000", &sig, "POST", "/api/partner/orders", body, 1_301),
            Err(PartnerAuthError::Stale)
        );
        assert_eq!(
            p.verify("1000", &sig, "POST", "/api/partner/orders", b"{}", 1_000),
            Err(PartnerAuthError::BadSignature)
        );
        assert_eq!(
            p.verify("1001", &sig, "POST", "/api/partner/orders", body, 1_000),
            Err(PartnerAuthError::BadSignature)
        );
        assert_eq!(
            p.verify("x", &sig, "POST", "/api/partner/orders", body, 1_000),
            Err(PartnerAuthError::BadTimestamp)
        );
        let other = Partner::new("12345", "another-secret-entirely", None);
        assert_eq!(
            other.verify("1000", &sig, "POST", "/api/partner/orders", body, 1_000),
            Err(PartnerAuthError::BadSignature)
        );
    }

    #[test]
    fn partners_follow_dispatch_reply_and_close() {
        assert_eq!(status_of("dispatched"), Some("dispatched"));
        assert_eq!(status_of("replied"), Some("replied"));
        assert_eq!(status_of("closed"), Some("closed"));
        assert_eq!(status_of("signed"), None);
    }
}
