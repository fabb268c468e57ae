//! Leaders' alerts (报告领导, H-13-2): the city's leaders (`[[cities.leaders]]`) are told
//! when an urgent order is received and when its hour for the transfer passes.
//!
//! The reminder scheduler records each alert once in the order's ledger
//! (`leaders_alerted`, naming the leaders) and hands the committed notice to the
//! notifiers. This one writes a log line per leader (name and contact, never the
//! caller's) and, for a leader with a `webhook_url`, journals a delivery (fsync'd, in
//! `leader-notices-<hash of the url>.jsonl` in the data directory) that a task of that
//! URL POSTs as JSON until it is answered 2xx, oldest first, waiting longer after each
//! failure (at most a minute): a receiver that is down gets its alerts once it is back,
//! also after a restart. One journal per URL, so a leader whose receiver is down does
//! not hold up another's. The body is the [`Notice`] with the `leader` it is for; its
//! `X-Hotline-Event` header (`<order>:<seq>:leader-<n>`) lets a receiver drop repeats.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::journal::{DurableQueue, OutboxError, Queued};
use super::notify::{Notice, NoticeKind, Notifier};
use crate::config::{Config, LeaderConfig};
use crate::http_client::{self, HttpUrl, Request};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// The leaders of each city, by city id.
pub type LeaderDirectory = BTreeMap<String, Vec<LeaderConfig>>;

/// The leaders configured per city.
#[must_use]
pub fn directory(config: &Config) -> LeaderDirectory {
    config
        .cities
        .iter()
        .map(|c| (c.id.clone(), c.leaders.clone()))
        .collect()
}

/// Cities without leaders: their urgent orders are recorded as reported to nobody.
/// `check-config` and the server's start-up print it.
#[must_use]
pub fn leader_gaps(config: &Config) -> Option<String> {
    let missing: Vec<&str> = config
        .cities
        .iter()
        .filter(|c| c.leaders.is_empty())
        .map(|c| c.id.as_str())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "no [[cities.leaders]] for {}: their urgent orders are reported to nobody (H-13-2)",
            missing.join(", ")
        )
    })
}

/// One alert for one leader, waiting for its webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderDelivery {
    /// `<order>:<seq>:leader-<n>`, n the leader's place in the city's list (ASCII, for
    /// the header).
    pub id: String,
    /// The JSON POSTed.
    pub body: serde_json::Value,
}

impl Queued for LeaderDelivery {
    fn queue_id(&self) -> &str {
        &self.id
    }
}

/// The journal and delivery task of one webhook URL.
struct Target {
    url: HttpUrl,
    queue: Mutex<DurableQueue<LeaderDelivery>>,
    wake: Notify,
}

impl Target {
    fn push(&self, delivery: LeaderDelivery) {
        let id = delivery.id.clone();
        let Ok(mut queue) = self.queue.lock() else {
            warn!(%id, "leader alert journal unusable: alert only in the ledger and the log");
            return;
        };
        if let Err(e) = queue.push(delivery.clone()) {
            // Kept in memory: delivered all the same unless the process stops first.
            warn!(%id, %e, "leader alert not journaled; held in memory");
            queue.hold(delivery);
        }
        drop(queue);
        self.wake.notify_one();
    }

    fn front(&self) -> Option<LeaderDelivery> {
        self.queue.lock().ok()?.pending().front().cloned()
    }

    fn mark_done(&self, id: &str) -> Result<(), OutboxError> {
        let mut queue = self.queue.lock().map_err(|_| OutboxError::Poisoned)?;
        queue.mark_done(id).map(|_| ())
    }
}

/// Logs each leader alert per leader and delivers it to the leaders' webhooks (see the
/// module docs).
pub struct LeaderNotifier {
    directory: LeaderDirectory,
    targets: HashMap<String, Arc<Target>>,
}

impl std::fmt::Debug for LeaderNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderNotifier")
            .field("targets", &self.targets.len())
            .finish_non_exhaustive()
    }
}

/// The journal file of a webhook URL.
fn journal_name(url: &str) -> String {
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("leader-notices-{hex}")
}

impl LeaderNotifier {
    /// Opens the journals in `data_dir` (what a previous run left is delivered first)
    /// and starts one delivery task per webhook URL (ending at `shutdown`). A URL that
    /// does not parse is skipped (`check-config` reports it).
    ///
    /// # Errors
    /// A journal cannot be opened.
    pub fn start(
        directory: LeaderDirectory,
        data_dir: &Path,
        timeout: Duration,
        metrics: Arc<Metrics>,
        shutdown: &Shutdown,
    ) -> Result<Self, OutboxError> {
        let mut targets = HashMap::new();
        for leader in directory.values().flatten() {
            let Some(text) = leader.webhook_url.as_deref() else {
                continue;
            };
            if targets.contains_key(text) {
                continue;
            }
            let Ok(url) = HttpUrl::parse(text) else {
                warn!(leader = %leader.name, "leader webhook_url unusable: alerts only logged");
                continue;
            };
            let name = journal_name(text);
            let queue = DurableQueue::open(
                data_dir.join(format!("{name}.jsonl")),
                data_dir.join(format!("{name}.rejected.jsonl")),
            )?;
            if !queue.pending().is_empty() {
                info!(waiting = queue.pending().len(), %url, "leader alerts of an earlier run to deliver");
            }
            let target = Arc::new(Target {
                url,
                queue: Mutex::new(queue),
                wake: Notify::new(),
            });
            tokio::spawn(deliver_loop(
                target.clone(),
                timeout,
                metrics.clone(),
                shutdown.clone(),
            ));
            targets.insert(text.to_owned(), target);
        }
        Ok(Self { directory, targets })
    }
}

impl Notifier for LeaderNotifier {
    fn notify(&self, notice: &Notice) {
        if notice.event != NoticeKind::Leaders {
            return;
        }
        let Some(leaders) = self.directory.get(&notice.city) else {
            return;
        };
        for (index, leader) in leaders
            .iter()
            .enumerate()
            .filter(|(_, l)| notice.leaders.contains(&l.name))
        {
            info!(
                order = %notice.order_id,
                alert = ?notice.alert,
                leader = %leader.name,
                contact = %leader.contact,
                due = ?notice.due,
                "报告领导 urgent order reported to a leader"
            );
            let Some(target) = leader
                .webhook_url
                .as_deref()
                .and_then(|u| self.targets.get(u))
            else {
                continue;
            };
            let mut body = serde_json::to_value(notice).unwrap_or_default();
            if let Some(object) = body.as_object_mut() {
                object.insert(
                    "leader".into(),
                    serde_json::json!({"name": leader.name, "contact": leader.contact}),
                );
            }
            let delivery = LeaderDelivery {
                id: format!("{}:leader-{index}", notice.id),
                body,
            };
            let target = target.clone();
            // The journal fsyncs: off the async threads when there are any.
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || target.push(delivery));
                }
                Err(_) => target.push(delivery),
            }
        }
    }
}

/// First wait after a failed delivery; doubled after each, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

async fn deliver_loop(
    target: Arc<Target>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let mut wait = FIRST_BACKOFF;
    let mut attempt: u32 = 0;
    loop {
        let Some(delivery) = target.front() else {
            tokio::select! {
                () = target.wake.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        };
        let request = Request::post_json(target.url.clone(), &delivery.body)
            .header("X-Hotline-Event", &delivery.id);
        attempt = attempt.saturating_add(1);
        let failure = match http_client::send(&request, timeout).await {
            Ok(response) if response.is_success() => {
                metrics.notice_delivered();
                info!(id = %delivery.id, attempt, "leader alert delivered");
                let done = target.clone();
                let id = delivery.id.clone();
                match tokio::task::spawn_blocking(move || done.mark_done(&id)).await {
                    Ok(Ok(())) => {}
                    // Delivered; a restart may deliver it again (the receiver drops repeats).
                    Ok(Err(e)) => warn!(id = %delivery.id, %e, "cannot mark a leader alert done"),
                    Err(e) => warn!(%e, "leader alert journal task failed"),
                }
                wait = FIRST_BACKOFF;
                attempt = 0;
                continue;
            }
            Ok(response) => format!("answered {}", response.status),
            Err(e) => e.to_string(),
        };
        metrics.notice_attempt_failed();
        warn!(id = %delivery.id, attempt, url = %target.url, %failure, "leader alert delivery failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}
