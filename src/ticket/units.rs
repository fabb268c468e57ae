//! The unit tree: province → cities → counties → townships, plus service institutions
//! hanging under any of them. Pure data; scope checks ask [`UnitTree::covers`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::domain::UnitId;

/// What kind of unit this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// Provincial Department of Justice (省司法厅).
    Province,
    /// City bureau of justice and its 12348 answering center (市司法局).
    City,
    /// County / district bureau (县(市、区)司法局).
    County,
    /// Township / street justice office (司法所).
    Township,
    /// Service institution: law firm, notary office, legal-aid center, …
    Institution,
}

impl UnitKind {
    /// The level's name as the API and `check-config` write it (`province`, `city`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Province => "province",
            Self::City => "city",
            Self::County => "county",
            Self::Township => "township",
            Self::Institution => "institution",
        }
    }
}

/// One unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// Identifier.
    pub id: UnitId,
    /// Display name (Chinese).
    pub name: String,
    /// Kind.
    pub kind: UnitKind,
    /// Parent unit; `None` only for the root.
    pub parent: Option<UnitId>,
    /// Fixed-line area code, for cities.
    pub area_code: Option<String>,
}

/// Errors building a [`UnitTree`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Two units with one id.
    #[error("unit {0} defined twice")]
    Duplicate(UnitId),
    /// The parent named does not exist (yet).
    #[error("unit {unit} names unknown parent {parent}")]
    UnknownParent {
        /// Unit being added.
        unit: UnitId,
        /// Parent named.
        parent: UnitId,
    },
    /// A second root.
    #[error("unit {0} has no parent but the tree already has a root")]
    SecondRoot(UnitId),
}

/// The tree of units. Parents are added before children, so it cannot contain a cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitTree {
    units: BTreeMap<UnitId, Unit>,
}

/// Shandong's 16 cities: id, name, area code.
const SHANDONG_CITIES: [(&str, &str, &str); 16] = [
    ("jinan", "济南市", "0531"),
    ("qingdao", "青岛市", "0532"),
    ("zibo", "淄博市", "0533"),
    ("zaozhuang", "枣庄市", "0632"),
    ("dongying", "东营市", "0546"),
    ("yantai", "烟台市", "0535"),
    ("weifang", "潍坊市", "0536"),
    ("jining", "济宁市", "0537"),
    ("taian", "泰安市", "0538"),
    ("weihai", "威海市", "0631"),
    ("rizhao", "日照市", "0633"),
    ("linyi", "临沂市", "0539"),
    ("dezhou", "德州市", "0534"),
    ("liaocheng", "聊城市", "0635"),
    ("binzhou", "滨州市", "0543"),
    ("heze", "菏泽市", "0530"),
];

/// Id of the province root in [`UnitTree::shandong_default`].
pub const SHANDONG: &str = "shandong";

impl UnitTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The province (`shandong`, 山东省司法厅) and its 16 cities with their area codes.
    /// Counties, townships and institutions are added from configuration.
    #[must_use]
    pub fn shandong_default() -> Self {
        let mut units = BTreeMap::new();
        let root = UnitId::new(SHANDONG);
        units.insert(
            root.clone(),
            Unit {
                id: root.clone(),
                name: "山东省司法厅".to_owned(),
                kind: UnitKind::Province,
                parent: None,
                area_code: None,
            },
        );
        for (id, name, code) in SHANDONG_CITIES {
            let id = UnitId::new(id);
            units.insert(
                id.clone(),
                Unit {
                    id,
                    name: name.to_owned(),
                    kind: UnitKind::City,
                    parent: Some(root.clone()),
                    area_code: Some(code.to_owned()),
                },
            );
        }
        Self { units }
    }

    /// Adds a unit below an existing parent.
    ///
    /// # Errors
    /// [`UnitError`] for a duplicate id, an unknown parent, or a second root.
    pub fn add(&mut self, unit: Unit) -> Result<(), UnitError> {
        if self.units.contains_key(&unit.id) {
            return Err(UnitError::Duplicate(unit.id));
        }
        match &unit.parent {
            Some(parent) if !self.units.contains_key(parent) => {
                return Err(UnitError::UnknownParent {
                    unit: unit.id.clone(),
                    parent: parent.clone(),
                });
            }
            None if !self.units.is_empty() => return Err(UnitError::SecondRoot(unit.id)),
            _ => {}
        }
        self.units.insert(unit.id.clone(), unit);
        Ok(())
    }

    /// The unit with this id.
    #[must_use]
    pub fn get(&self, id: &UnitId) -> Option<&Unit> {
        self.units.get(id)
    }

    /// Whether the unit exists.
    #[must_use]
    pub fn contains(&self, id: &UnitId) -> bool {
        self.units.contains_key(id)
    }

    /// Parent of `unit`.
    #[must_use]
    pub fn parent(&self, unit: &UnitId) -> Option<&UnitId> {
        self.units.get(unit).and_then(|u| u.parent.as_ref())
    }

    /// Whether `a` is a strict ancestor of `b`.
    #[must_use]
    pub fn is_ancestor(&self, a: &UnitId, b: &UnitId) -> bool {
        let mut current = self.parent(b);
        // Bounded by the tree size: guards against a cycle in hand-built data.
        for _ in 0..=self.units.len() {
            match current {
                Some(unit) if unit == a => return true,
                Some(unit) => current = self.parent(unit),
                None => return false,
            }
        }
        false
    }

    /// Whether `scope` is `unit` itself or one of its ancestors (the subtree of
    /// `scope` contains `unit`).
    #[must_use]
    pub fn covers(&self, scope: &UnitId, unit: &UnitId) -> bool {
        scope == unit || self.is_ancestor(scope, unit)
    }

    /// The city a unit belongs to (itself when it is a city).
    #[must_use]
    pub fn city_of(&self, unit: &UnitId) -> Option<&UnitId> {
        let mut current = Some(unit);
        for _ in 0..=self.units.len() {
            let found = self.units.get(current?)?;
            if found.kind == UnitKind::City {
                return Some(&found.id);
            }
            current = found.parent.as_ref();
        }
        None
    }

    /// The city with this fixed-line area code (`0531` → `jinan`).
    #[must_use]
    pub fn city_by_area_code(&self, code: &str) -> Option<&UnitId> {
        self.units
            .values()
            .find(|u| u.kind == UnitKind::City && u.area_code.as_deref() == Some(code))
            .map(|u| &u.id)
    }

    /// All units, by id.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.values()
    }
}
