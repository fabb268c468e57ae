//! Work-order KPIs for the supervisor dashboard (`GET /api/stats/orders`), counted in
//! SQL over the `orders` projection: per state, overdue, due today, special flags and
//! the callers' satisfaction, for a read scope and an optional period of receipt.

use std::collections::BTreeMap;

use super::{Backend, Pool, Store, StoreError};

/// What to count.
#[derive(Debug, Clone, Default)]
pub struct StatsFilter {
    /// Orders involving one of these units; `None` = everything.
    pub scope: Option<Vec<String>>,
    /// Received in `[from, to)`, unix milliseconds; `None` = any time.
    pub received: Option<(i64, i64)>,
    /// "Now" for overdue and due today.
    pub now_ms: i64,
    /// The end of today (24:00, Asia/Shanghai) in unix milliseconds.
    pub end_of_today_ms: i64,
}

/// The counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrderStats {
    pub total: i64,
    /// Count per lifecycle state (snake_case names).
    pub by_state: BTreeMap<String, i64>,
    /// Not closed.
    pub open: i64,
    /// Open and past the feedback limit now.
    pub overdue_open: i64,
    /// Overdue as the order list's `overdue=true` filter counts it: open past the
    /// feedback limit, or completed after it.
    pub overdue: i64,
    /// Open, with the running limit still ahead but ending today.
    pub due_today: i64,
    pub special_flag: i64,
    /// Latest satisfaction of the orders that have one (snake_case → count).
    pub satisfaction: BTreeMap<String, i64>,
}

/// Transfer timeliness counts of one dispatch unit and dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    pub unit: String,
    /// `""`: not dispatched.
    pub dispatcher: String,
    pub on_time: i64,
    pub late: i64,
    pub urgent_late: i64,
    pub recorded_missed: i64,
}

enum Bind {
    Text(String),
    Int(i64),
}

/// `(name, count)` rows of a GROUP BY.
type Counts = Vec<(String, i64)>;

/// The WHERE clauses of `filter`'s scope and period, with their bound values.
fn filter_clauses(filter: &StatsFilter) -> (Vec<Bind>, Vec<String>) {
    let mut binds: Vec<Bind> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let next = |binds: &mut Vec<Bind>, b: Bind| {
        binds.push(b);
        format!("${}", binds.len())
    };
    if let Some((from, to)) = filter.received {
        let a = next(&mut binds, Bind::Int(from));
        let b = next(&mut binds, Bind::Int(to));
        clauses.push(format!("received_ms >= {a} AND received_ms < {b}"));
    }
    if let Some(scope) = &filter.scope {
        if scope.is_empty() {
            clauses.push("1 = 0".to_owned());
        } else {
            let list: Vec<String> = scope
                .iter()
                .map(|u| next(&mut binds, Bind::Text(u.clone())))
                .collect();
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM order_units ou WHERE ou.order_id = orders.id \
                 AND ou.unit IN ({}))",
                list.join(", ")
            ));
        }
    }
    (binds, clauses)
}

impl Store {
    /// Transfer timeliness counts of `filter`'s orders at `filter.now_ms`, per dispatch
    /// unit (the city for rows written before it was kept) and first dispatcher (`""`
    /// when never dispatched): the SQL form of [`crate::ticket::transfer_on_time`] —
    /// late when dispatched after the limit (`transfer_late`, computed by it at write
    /// time) or still waiting for dispatch past the limit now.
    ///
    /// # Errors
    /// Database errors.
    pub async fn transfer_counts(
        &self,
        filter: &StatsFilter,
    ) -> Result<Vec<TransferRow>, StoreError> {
        let (mut binds, mut clauses) = filter_clauses(filter);
        binds.push(Bind::Int(filter.now_ms));
        let now = format!("${}", binds.len());
        clauses.push("transfer_due_ms IS NOT NULL".to_owned());
        let late = format!(
            "(transfer_late = 1 OR (transfer_late IS NULL \
             AND state IN ('draft', 'pending_dispatch') AND transfer_due_ms < {now}))"
        );
        let sql = format!(
            "SELECT COALESCE(dispatch_unit, city), COALESCE(dispatched_by, ''), \
             SUM(CASE WHEN transfer_late = 0 THEN 1 ELSE 0 END), \
             SUM(CASE WHEN {late} THEN 1 ELSE 0 END), \
             SUM(CASE WHEN {late} AND urgency = 'urgent' THEN 1 ELSE 0 END), \
             SUM(CASE WHEN {late} AND transfer_missed = 1 THEN 1 ELSE 0 END) \
             FROM orders WHERE {} GROUP BY 1, 2",
            clauses.join(" AND ")
        );
        let rows: Vec<(String, String, i64, i64, i64, i64)> = on_pool!(self, |p| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for b in &binds {
                q = match b {
                    Bind::Text(s) => q.bind(s.clone()),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(unit, dispatcher, on_time, late, urgent_late, recorded)| TransferRow {
                    unit,
                    dispatcher,
                    on_time,
                    late,
                    urgent_late,
                    recorded_missed: recorded,
                },
            )
            .collect())
    }

    /// Count the orders of `filter`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn order_stats(&self, filter: &StatsFilter) -> Result<OrderStats, StoreError> {
        let (mut binds, clauses) = filter_clauses(filter);
        let next = |binds: &mut Vec<Bind>, b: Bind| {
            binds.push(b);
            format!("${}", binds.len())
        };
        let now = next(&mut binds, Bind::Int(filter.now_ms));
        let end = next(&mut binds, Bind::Int(filter.end_of_today_ms));
        let where_sql = if clauses.is_empty() {
            "WHERE 1 = 1".to_owned()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let satisfaction = match self.backend() {
            Backend::Sqlite => "json_extract(snapshot, '$.satisfaction')",
            Backend::Postgres => "(snapshot::jsonb ->> 'satisfaction')",
        };
        // Every value is bound; only fixed fragments and placeholders are joined. The
        // `now`/`end` placeholders are referenced by every query, so each query binds
        // the same list.
        let by_state_sql = format!(
            "SELECT state, COUNT(*) FROM orders {where_sql} AND {now} = {now} AND {end} = {end} \
             GROUP BY state"
        );
        let counts_sql = format!(
            "SELECT \
             COALESCE(SUM(CASE WHEN state <> 'closed' AND completed_ms IS NULL \
                 AND feedback_due_ms < {now} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN overdue_done = 1 OR (completed_ms IS NULL \
                 AND state <> 'closed' AND feedback_due_ms < {now}) THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN state <> 'closed' AND next_due_ms >= {now} \
                 AND next_due_ms <= {end} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN special_flag = 1 THEN 1 ELSE 0 END), 0) \
             FROM orders {where_sql}"
        );
        let satisfaction_sql = format!(
            "SELECT {satisfaction}, COUNT(*) FROM orders {where_sql} \
             AND {satisfaction} IS NOT NULL AND {now} = {now} AND {end} = {end} \
             GROUP BY {satisfaction}"
        );
        let (states, counts, satisfied): (Counts, (i64, i64, i64, i64), Counts) =
            on_pool!(self, |p| {
                let mut q1 = sqlx::query_as(sqlx::AssertSqlSafe(by_state_sql));
                let mut q2 = sqlx::query_as(sqlx::AssertSqlSafe(counts_sql));
                let mut q3 = sqlx::query_as(sqlx::AssertSqlSafe(satisfaction_sql));
                for b in &binds {
                    (q1, q2, q3) = match b {
                        Bind::Text(s) => {
                            (q1.bind(s.clone()), q2.bind(s.clone()), q3.bind(s.clone()))
                        }
                        Bind::Int(i) => (q1.bind(*i), q2.bind(*i), q3.bind(*i)),
                    };
                }
                (
                    q1.fetch_all(p).await?,
                    q2.fetch_one(p).await?,
                    q3.fetch_all(p).await?,
                )
            });
        let total = states.iter().map(|(_, n)| n).sum();
        let open = states
            .iter()
            .filter(|(s, _)| s != "closed")
            .map(|(_, n)| n)
            .sum();
        Ok(OrderStats {
            total,
            by_state: states.into_iter().collect(),
            open,
            overdue_open: counts.0,
            overdue: counts.1,
            due_today: counts.2,
            special_flag: counts.3,
            satisfaction: satisfied.into_iter().collect(),
        })
    }
}
