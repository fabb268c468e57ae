//! The work-order context shared by the API and the call runtime.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use super::notify::Notifier;
use crate::calendar::Calendar;
use crate::config::Config;
use crate::ticket::{
    Context, Order, OrderId, RoutingRule, RoutingRules, Unit, UnitId, UnitKind, UnitTree,
};

/// What the work-order service needs besides the store: calendar, units, routing,
/// queues (for the sign-in rate), notifier, leaders and the clock. Shared by the API
/// handlers and the call runtime (orders opened from calls, voice messages, survey,
/// reminders).
#[derive(Debug, Default)]
pub struct OrdersContext {
    /// The working-day calendar in force (reloaded when its file changes).
    pub calendar: crate::calendar::SharedCalendar,
    pub units: UnitTree,
    pub routing: RoutingRules,
    /// Queues, agents and duty rosters (`[queues]`), for the sign-in rate.
    pub queues: Option<crate::queue::QueuesConfig>,
    /// Told of reminders and supervision presses made through the API, after commit.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Weights of the rankings' combined score (`[ranking.weights]`).
    pub ranking_weights: crate::ticket::RankingWeights,
    /// The leaders of each city, told of urgent orders (H-13-2) by the scheduler.
    pub leaders: super::leaders::LeaderDirectory,
    /// Wakes the reminder scheduler before its interval when a commit left it work due
    /// now (an urgent order received: its leaders are told at once).
    pub scheduler_wake: Arc<tokio::sync::Notify>,
    /// The server's one wall clock (shifted by `HOTLINE_FAKE_NOW` like the calls'):
    /// receipt times, deadlines and audit stamps of the API read it.
    pub clock: crate::clock::WallClock,
    /// The hot-topic analysis' word lists, loaded at its first request.
    pub analysis: AnalysisWords,
    /// The public intake's abuse controls (proof of work, rate limits, duplicates).
    pub public: super::intake::PublicIntake,
    /// Where citizens' attachments are written (`<data_dir>/attachments`); none: no
    /// attachments are taken.
    pub attachments_dir: Option<std::path::PathBuf>,
    /// Partner hotlines (`[[partners]]`): their keys and callback URLs.
    pub partners: super::partners::Partners,
    /// The quality review's rubric and sampling rules (`[quality]`).
    pub quality: crate::assessment::quality::QualityConfig,
}

/// Where the analysis' word lists are, and the segmenter once loaded (a failed load is
/// not kept: fixing the file is enough, no restart).
#[derive(Debug, Default)]
pub struct AnalysisWords {
    pub dictionary: std::path::PathBuf,
    pub stop_words: std::path::PathBuf,
    loaded: std::sync::Mutex<Option<Arc<crate::analysis::Segmenter>>>,
}

impl AnalysisWords {
    /// The segmenter, loading the word lists the first time.
    ///
    /// # Errors
    /// A list that cannot be read or parsed.
    pub fn segmenter(
        &self,
    ) -> Result<Arc<crate::analysis::Segmenter>, crate::analysis::AnalysisError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(segmenter) = loaded.as_ref() {
            return Ok(segmenter.clone());
        }
        let segmenter = Arc::new(crate::analysis::Segmenter::from_files(
            &self.dictionary,
            &self.stop_words,
        )?);
        *loaded = Some(segmenter.clone());
        Ok(segmenter)
    }
}

impl OrdersContext {
    /// From a validated configuration. Without `[[units]]` the province and its 16
    /// cities are used.
    #[must_use]
    pub fn from_config(config: &Config, calendar: Calendar) -> Self {
        Self {
            calendar: crate::calendar::SharedCalendar::fixed(calendar),
            units: unit_tree(config),
            routing: routing_rules(config),
            queues: config.queues.clone(),
            notifier: None,
            ranking_weights: config.ranking.weights,
            leaders: super::leaders::directory(config),
            scheduler_wake: Arc::default(),
            clock: crate::clock::WallClock::default(),
            analysis: AnalysisWords {
                dictionary: config.analysis.dictionary.clone(),
                stop_words: config.analysis.stop_words.clone(),
                ..AnalysisWords::default()
            },
            public: super::intake::PublicIntake::default(),
            attachments_dir: Some(config.server.data_dir.join("attachments")),
            partners: super::partners::Partners::from_config(&config.partners),
            quality: config.quality.clone(),
        }
    }

    /// After a commit: wake the scheduler when `order` has work due at `at`.
    pub fn wake_scheduler_for(&self, order: &Order, at: DateTime<FixedOffset>) {
        if crate::ticket::scheduler_due(order).is_some_and(|due| due <= at) {
            self.scheduler_wake.notify_one();
        }
    }

    /// The ticket core's context over `calendar` (the one in force, read once per
    /// request so a reload mid-request cannot mix two).
    #[must_use]
    pub fn ctx<'a>(&'a self, calendar: &'a Calendar) -> Context<'a> {
        Context {
            calendar,
            units: &self.units,
            routing: &self.routing,
        }
    }

    /// Ids of the units in `unit`'s subtree; `None` for the root (everything).
    pub(crate) fn scope_of(&self, unit: &UnitId) -> Option<Vec<String>> {
        let is_root = self.units.get(unit).is_some_and(|u| u.parent.is_none());
        (!is_root).then(|| {
            self.units
                .units()
                .filter(|u| self.units.covers(unit, &u.id))
                .map(|u| u.id.as_str().to_owned())
                .collect()
        })
    }

    /// A unit's display name.
    #[must_use]
    pub fn unit_name(&self, unit: &UnitId) -> Option<&str> {
        self.units.get(unit).map(|u| u.name.as_str())
    }
}

/// Units where an order can wait for a dispatcher — every city (where orders start)
/// and each unit above one (where `return_upward` sends them, H-13-3) — that no
/// configured dispatcher covers: an order there would be stuck. `check-config` prints
/// one line per unit.
#[must_use]
pub fn dispatch_gaps(config: &Config) -> Vec<String> {
    let tree = unit_tree(config);
    let dispatchers: Vec<UnitId> = config
        .users
        .iter()
        .filter(|u| u.roles.contains(&crate::config::Role::Dispatcher))
        .map(|u| UnitId::new(u.unit.clone()))
        .collect();
    let mut levels: Vec<UnitId> = Vec::new();
    for city in tree.units().filter(|u| u.kind == UnitKind::City) {
        let mut at = Some(city.id.clone());
        while let Some(unit) = at {
            at = tree.parent(&unit).cloned();
            if !levels.contains(&unit) {
                levels.push(unit);
            }
        }
    }
    levels
        .iter()
        .filter(|unit| !dispatchers.iter().any(|d| tree.covers(d, unit)))
        .map(|unit| {
            let kind = tree.get(unit).map_or("unit", |u| u.kind.as_str());
            format!(
                "no dispatcher can act on orders waiting at {kind} {unit}: add a [[users]] \
                 entry with roles = [\"dispatcher\"] at {unit} or above (H-13-3)"
            )
        })
        .collect()
}

/// The unit tree of the configuration (`[[units]]`, parents first whatever the order
/// in the file), or the province and its 16 cities when none is configured.
#[must_use]
pub fn unit_tree(config: &Config) -> UnitTree {
    if config.units.is_empty() {
        return UnitTree::shandong_default();
    }
    let kind = |k: crate::config::UnitKind| match k {
        crate::config::UnitKind::Province => UnitKind::Province,
        crate::config::UnitKind::City => UnitKind::City,
        crate::config::UnitKind::County => UnitKind::County,
        crate::config::UnitKind::Township => UnitKind::Township,
        crate::config::UnitKind::Institution => UnitKind::Institution,
    };
    let mut tree = UnitTree::new();
    let mut pending: Vec<&crate::config::UnitConfig> = config.units.iter().collect();
    // Parents first, whatever the order in the file.
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|u| {
            let parent_ready = u
                .parent
                .as_ref()
                .is_none_or(|p| tree.contains(&UnitId::new(p.clone())));
            if !parent_ready {
                return true;
            }
            let area_code = config
                .cities
                .iter()
                .find(|c| c.id == u.id)
                .and_then(|c| c.area_codes.first().cloned());
            let unit = Unit {
                id: UnitId::new(u.id.clone()),
                name: u.name.clone(),
                kind: kind(u.kind),
                parent: u.parent.clone().map(UnitId::new),
                area_code,
            };
            if let Err(e) = tree.add(unit) {
                tracing::warn!(%e, "unit ignored");
            }
            false
        });
        if pending.len() == before {
            for u in pending {
                tracing::warn!(unit = %u.id, "unit ignored: its parent is missing");
            }
            break;
        }
    }
    tree
}

pub(crate) fn parse_enum<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

fn routing_rules(config: &Config) -> RoutingRules {
    let wild = |s: &str| (s != "*").then(|| s.to_owned());
    RoutingRules {
        rules: config
            .routing
            .iter()
            .map(|r| RoutingRule {
                city: wild(&r.city).map(UnitId::new),
                area: wild(&r.business_area).and_then(|a| parse_enum(&a)),
                category: wild(&r.category).and_then(|c| parse_enum(&c)),
                unit: UnitId::new(r.unit.clone()),
            })
            .collect(),
    }
}

/// A fresh order id: `GD` + the day + 64 random bits. (32 bits collided in the 100k
/// bench: with ~77k orders a day a birthday collision is more likely than not.)
pub fn new_order_id(at: DateTime<FixedOffset>) -> OrderId {
    OrderId(format!(
        "GD{}{:016X}",
        at.format("%Y%m%d"),
        rand::random::<u64>()
    ))
}
