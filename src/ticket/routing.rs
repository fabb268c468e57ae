//! Routing rules (TK-ROUTE, W-9): (city, business area, category) → unit, with
//! wildcards. A demand whose business area is unknown is never routed automatically:
//! a dispatcher chooses the unit and category.

use serde::{Deserialize, Serialize};

use super::model::{BusinessArea, Category, Order};
use super::units::UnitId;

/// One rule; `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRule {
    /// City, or any.
    #[serde(default)]
    pub city: Option<UnitId>,
    /// Business area, or any (never matches [`BusinessArea::Unknown`]).
    #[serde(default)]
    pub area: Option<BusinessArea>,
    /// Category, or any.
    #[serde(default)]
    pub category: Option<Category>,
    /// Unit to push to.
    pub unit: UnitId,
}

impl RoutingRule {
    fn matches(&self, city: &UnitId, area: BusinessArea, category: Category) -> bool {
        self.city.as_ref().is_none_or(|c| c == city)
            && self.area.is_none_or(|a| a == area)
            && self.category.is_none_or(|c| c == category)
    }

    /// Number of non-wildcard keys: the most specific rule wins.
    fn specificity(&self) -> usize {
        usize::from(self.city.is_some())
            + usize::from(self.area.is_some())
            + usize::from(self.category.is_some())
    }
}

/// The rule table (from configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRules {
    /// Rules; among equally specific matches the first listed wins.
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
}

impl RoutingRules {
    /// The unit for an order, or `None` when its area is unclear or no rule matches.
    #[must_use]
    pub fn route(&self, order: &Order) -> Option<UnitId> {
        self.route_fields(&order.fields.city, order.fields.area, order.fields.category)
    }

    /// The unit for (city, area, category).
    #[must_use]
    pub fn route_fields(
        &self,
        city: &UnitId,
        area: BusinessArea,
        category: Category,
    ) -> Option<UnitId> {
        if area == BusinessArea::Unknown {
            return None;
        }
        let mut best: Option<&RoutingRule> = None;
        for rule in self
            .rules
            .iter()
            .filter(|r| r.matches(city, area, category))
        {
            if best.is_none_or(|b| rule.specificity() > b.specificity()) {
                best = Some(rule);
            }
        }
        best.map(|rule| rule.unit.clone())
    }
}
