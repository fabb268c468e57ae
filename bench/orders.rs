//! Work-order throughput against a RUNNING server (not part of `cargo test`):
//! N orders created and taken through the lifecycle over HTTP (create → auto-routed →
//! sign → start → reply → closed, 4 requests each) by C concurrent clients, then the
//! latency of `GET /api/orders?per_page=50&sort=deadline` sampled.
//!
//! ```text
//! cargo bench --bench orders -- --url http://127.0.0.1:8080 --orders 2000 --clients 8
//! ```
//! Uses the shipped demo users (`agent`, `handler`); see `bench/orders.sh`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    orders: usize,
    clients: usize,
    list_samples: usize,
    /// Only sample the list (orders already stored).
    list_only: bool,
    /// Stop creating orders after this long (0 = create all N); the figure is then
    /// for the orders actually done.
    max_secs: u64,
    /// Also sample a filtered list (`city`, `state`, `category`).
    filtered: bool,
    /// Also sample the dispatch inbox (`state=pending_dispatch`).
    inbox: bool,
    /// Demo user whose view of the list is sampled (default `handler`).
    list_user: String,
    /// Seeding mode: store this many orders directly in `--database` and exit.
    seed: usize,
    /// Orders made through the pure core and the store (the rest are SQL copies).
    templates: usize,
    database: String,
}

fn args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        orders: 1000,
        clients: 8,
        list_samples: 500,
        list_only: false,
        max_secs: 0,
        filtered: false,
        inbox: false,
        list_user: "handler".into(),
        seed: 0,
        templates: 10_000,
        database: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--list-only" {
            a.list_only = true;
            continue;
        }
        if flag == "--filtered" {
            a.filtered = true;
            continue;
        }
        if flag == "--inbox" {
            a.inbox = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => {
                a.addr = value
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .into()
            }
            "--orders" => a.orders = value.parse().unwrap_or(a.orders),
            "--clients" => a.clients = value.parse().unwrap_or(a.clients),
            "--list-user" => a.list_user = value,
            "--seed" => a.seed = value.parse().unwrap_or(0),
            "--templates" => a.templates = value.parse().unwrap_or(a.templates),
            "--database" => a.database = value,
            "--max-secs" => a.max_secs = value.parse().unwrap_or(0),
            "--list-samples" => a.list_samples = value.parse().unwrap_or(a.list_samples),
            _ => {}
        }
    }
    a
}

/// A keep-alive HTTP/1.1 connection (enough for this server's JSON answers).
struct Conn {
    stream: BufReader<TcpStream>,
    addr: String,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the server");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream: BufReader::new(stream),
            addr: addr.to_owned(),
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        auth: &[(String, String)],
        body: &str,
    ) -> Answer {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in auth {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut buf = vec![0u8; length];
        self.stream.read_exact(&mut buf).await.expect("body");
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&buf).into_owned(),
        }
    }
}

async fn login(addr: &str, user: &str) -> Vec<(String, String)> {
    let mut conn = Conn::open(addr).await;
    let body = format!("{{\"user\":\"{user}\",\"password\":\"demo-{user}\"}}");
    let answer = conn.call("POST", "/api/login", &[], &body).await;
    assert_eq!(answer.status, 200, "login {user}: {}", answer.body);
    let cookie = answer
        .headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .and_then(|(_, v)| v.split(';').next())
        .expect("cookie")
        .to_owned();
    let json: serde_json::Value = serde_json::from_str(&answer.body).expect("json");
    let csrf = json["csrf_token"].as_str().expect("csrf").to_owned();
    vec![("Cookie".into(), cookie), ("X-CSRF-Token".into(), csrf)]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let a = args();
    if a.seed > 0 {
        seed::run(&a).await;
        return;
    }
    let agent = login(&a.addr, "agent").await;
    let handler = login(&a.addr, "handler").await;
    if !a.list_only {
        lifecycle(&a, &agent, &handler).await;
    }
    let lister = login(&a.addr, &a.list_user).await;
    list_latency(&a, &lister).await;
}

async fn lifecycle(a: &Args, agent: &[(String, String)], handler: &[(String, String)]) {
    let started = Instant::now();
    let per_client = a.orders.div_ceil(a.clients);
    let limit = (a.max_secs > 0).then(|| Duration::from_secs(a.max_secs));
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (addr, agent, handler) = (a.addr.clone(), agent.to_vec(), handler.to_vec());
        let count = per_client.min(a.orders.saturating_sub(c * per_client));
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await;
            let mut done = 0usize;
            let mut collisions = 0usize;
            for i in 0..count {
                if limit.is_some_and(|l| started.elapsed() >= l) {
                    break;
                }
                let body = format!(
                    "{{\"contact_name\":\"张三\",\"contact_phone\":\"138{:08}\",\"category\":\"consultation\",\
                     \"business_area\":\"legal_aid\",\"description\":\"bench {c}-{i}\",\"city\":\"jinan\"}}",
                    (c * per_client + i) % 100_000_000
                );
                let mut created = conn.call("POST", "/api/orders", &agent, &body).await;
                // 409 on create = the server drew an order id already taken (random
                // 32 bits per day: expect a collision around 77k orders a day). Count
                // it and resend, as a client would.
                while created.status == 409 {
                    collisions += 1;
                    created = conn.call("POST", "/api/orders", &agent, &body).await;
                }
                assert_eq!(created.status, 201, "{}", created.body);
                let json: serde_json::Value = serde_json::from_str(&created.body).expect("json");
                let id = json["id"].as_str().expect("id").to_owned();
                for (command, body) in [("sign", "{}"), ("start", "{}"), ("reply", "{\"text\":\"答复\"}")] {
                    let done = conn
                        .call("POST", &format!("/api/orders/{id}/{command}"), &handler, body)
                        .await;
                    assert_eq!(done.status, 200, "{command}: {}", done.body);
                }
                done += 1;
            }
            (done, collisions)
        }));
    }
    let (mut done, mut collisions) = (0usize, 0usize);
    for t in tasks {
        let (d, c) = t.await.expect("client");
        done += d;
        collisions += c;
    }
    if collisions > 0 {
        println!("create answered 409 (order id collision) {collisions} times; resent");
    }
    let elapsed = started.elapsed();
    let rate = done as f64 / elapsed.as_secs_f64();
    println!(
        "lifecycle: {done} of {} orders ({} requests) by {} clients in {:.2} s = {:.1} orders/s ({:.1} req/s)",
        a.orders,
        done * 4,
        a.clients,
        elapsed.as_secs_f64(),
        rate,
        (done * 4) as f64 / elapsed.as_secs_f64()
    );
    if done < a.orders {
        println!(
            "  stopped at --max-secs {}: all {} would take ~{:.0} s at this rate",
            a.max_secs,
            a.orders,
            a.orders as f64 / rate
        );
    }
}

async fn list_latency(a: &Args, handler: &[(String, String)]) {
    sample_list(a, handler, "per_page=50&sort=deadline").await;
    if a.filtered {
        sample_list(
            a,
            handler,
            "per_page=50&sort=deadline&city=jinan&state=pending_dispatch&category=complaint",
        )
        .await;
    }
    if a.inbox {
        sample_list(
            a,
            handler,
            "per_page=50&sort=deadline&state=pending_dispatch",
        )
        .await;
    }
}

async fn sample_list(a: &Args, handler: &[(String, String)], query: &str) {
    let mut conn = Conn::open(&a.addr).await;
    let mut samples = Vec::with_capacity(a.list_samples);
    for i in 0..a.list_samples {
        let page = i % 20 + 1;
        let path = format!("/api/orders?{query}&page={page}");
        let t = Instant::now();
        let answer = conn.call("GET", &path, handler, "").await;
        samples.push(t.elapsed());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    samples.sort();
    println!(
        "GET /api/orders?{query} x{}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1000.0,
        percentile(&samples, 0.99).as_secs_f64() * 1000.0,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
}

/// Seeding mode (`--seed N --database URL [--templates K]`): store N orders quickly.
///
/// K template orders are made the real way: commands applied by the pure core
/// (create + submit with automatic routing, then sign + start for a third of the
/// dispatched ones) and appended by `Store::append_order_events`, so they have their
/// ledger rows, hash chain and projection. The remaining N - K are SQL copies of the
/// templates' projection rows (`orders`, `order_units`) with a new id (also replaced
/// inside the snapshot JSON) and a distinct `created_ms`, and of their `order_scope`
/// rows: the list reads only those three tables, so they are what a list benchmark needs. The copies have no ledger rows
/// (`hotline ledger verify` of such a database reports only the templates' chain, and
/// `verify_projection` would flag the copies): a bench database, not a real one.
mod seed {
    use std::path::Path;
    use std::time::Instant;

    use chrono::{DateTime, Duration as Span, FixedOffset, TimeZone};
    use hotline::api::orders::OrdersContext;
    use hotline::calendar::Calendar;
    use hotline::config::Config;
    use hotline::store::{Backend, Store};
    use hotline::ticket::{
        Actor, BusinessArea, Category, Channel, Command, Contact, Context, Order, OrderFields,
        OrderId, Role, State, UnitId, UnitKind, Urgency, UserId, apply,
    };

    const CATEGORIES: [Category; 3] = [
        Category::Consultation,
        Category::Complaint,
        Category::Suggestion,
    ];
    const AREAS: [BusinessArea; 5] = [
        BusinessArea::LegalAid,
        BusinessArea::Mediation,
        BusinessArea::Unknown,
        BusinessArea::GrassrootsLegalService,
        BusinessArea::Lawyer,
    ];

    pub async fn run(a: &super::Args) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config/hotline.toml")).expect("shipped config");
        let calendar =
            Calendar::load(root.join("config/calendar/cn-workdays.toml")).expect("calendar");
        let orders = OrdersContext::from_config(&config, calendar);
        let store = Store::connect(&a.database).await.expect("database");
        store.migrate().await.expect("migrate");
        // As the server does at start-up: order_scope rows follow the configured units.
        store
            .install_unit_tree(&orders.units)
            .await
            .expect("install units");
        let templates = a.templates.min(a.seed).max(1);
        let copies = a.seed.div_ceil(templates).saturating_sub(1);
        let started = Instant::now();
        make_templates(&store, &orders, templates).await;
        let t_templates = started.elapsed();
        println!(
            "seed: {templates} template orders through apply + append_order_events in {:.1} s ({:.0}/s)",
            t_templates.as_secs_f64(),
            templates as f64 / t_templates.as_secs_f64()
        );
        copy_rows(&a.database, store.backend(), copies).await;
        let total = started.elapsed();
        println!(
            "seed: {} orders stored ({templates} x {} copies) in {:.1} s",
            templates * (copies + 1),
            copies + 1,
            total.as_secs_f64()
        );
    }

    fn cities(orders: &OrdersContext) -> Vec<UnitId> {
        orders
            .units
            .units()
            .filter(|u| u.kind == UnitKind::City)
            .map(|u| u.id.clone())
            .collect()
    }

    async fn make_templates(store: &Store, orders: &OrdersContext, n: usize) {
        let calendar = orders.calendar.current();
        let ctx = Context {
            calendar: &calendar,
            units: &orders.units,
            routing: &orders.routing,
        };
        let cities = cities(orders);
        let shanghai = FixedOffset::east_opt(8 * 3600).expect("offset");
        let start: DateTime<FixedOffset> = shanghai
            .with_ymd_and_hms(2026, 1, 5, 8, 0, 0)
            .single()
            .expect("start");
        for i in 0..n {
            // Spread over ~320 days, every minute of the day, deterministic.
            let minutes = (i as i64 * 7919) % (320 * 24 * 60);
            let received = start + Span::minutes(minutes);
            let now = received + Span::minutes(5);
            // Jinan (with routing rules) gets half the orders.
            let city = if i % 2 == 0 {
                UnitId::new("jinan")
            } else {
                cities[i % cities.len()].clone()
            };
            let fields = OrderFields {
                contact: Contact {
                    name: "张三".into(),
                    phone: format!("138{:08}", i % 100_000_000),
                },
                category: CATEGORIES[i % 3],
                urgency: if i % 10 == 0 {
                    Urgency::Urgent
                } else {
                    Urgency::Normal
                },
                area: AREAS[(i / 3) % AREAS.len()],
                description: format!("seeded order {i}"),
                channel: Channel::Phone,
                city: city.clone(),
                received_at: received,
                ..OrderFields::default()
            };
            let system = Actor::system(city);
            let id = OrderId(format!("GD{}S{:07}", received.format("%Y%m%d"), i));
            let (o, mut events) = apply(
                &Order::new(id),
                Command::Create { fields },
                &system,
                now,
                &ctx,
            )
            .expect("create");
            let (mut order, more) = apply(&o, Command::Submit, &system, now, &ctx).expect("submit");
            events.extend(more);
            if order.state == State::Dispatched && i % 3 == 0 {
                let unit = order.assignments[0].unit.clone();
                let handler = Actor {
                    user_id: UserId("handler".into()),
                    roles: vec![Role::UnitHandler],
                    unit,
                };
                for command in [Command::Sign, Command::Start] {
                    let (next, more) = apply(&order, command, &handler, now, &ctx).expect("handle");
                    events.extend(more);
                    order = next;
                }
            }
            store
                .append_order_events(&order, 0, &events, None, now.timestamp_millis())
                .await
                .expect("append");
        }
    }

    async fn copy_rows(url: &str, backend: Backend, copies: usize) {
        if copies == 0 {
            return;
        }
        let started = Instant::now();
        // Every template id is "GD<date>S<n>" (no '-'); copy k is "<id>-<k>".
        let series = format!(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < {copies}) "
        );
        let orders = format!(
            "{series}INSERT INTO orders (id, version, state, city, category, urgency, area, units, \
             lead_unit, contact_phone, received_ms, transfer_due_ms, feedback_due_ms, \
             callback_due_ms, next_due_ms, due_sort, completed_ms, overdue_done, special_flag, \
             created_ms, updated_ms, snapshot) \
             SELECT o.id || '-' || n.k, version, state, city, category, urgency, area, units, \
             lead_unit, contact_phone, received_ms, transfer_due_ms, feedback_due_ms, \
             callback_due_ms, next_due_ms, due_sort, completed_ms, overdue_done, special_flag, \
             created_ms + n.k, updated_ms, \
             replace(snapshot, '\"id\":\"' || o.id || '\"', '\"id\":\"' || o.id || '-' || n.k || '\"') \
             FROM orders o, n WHERE o.id NOT LIKE '%-%'"
        );
        let units = format!(
            "{series}INSERT INTO order_units (order_id, unit) \
             SELECT u.order_id || '-' || n.k, u.unit FROM order_units u, n \
             WHERE u.order_id NOT LIKE '%-%'"
        );
        let scope = format!(
            "{series}INSERT INTO order_scope (order_id, unit, state, due_sort, created_ms) \
             SELECT s.order_id || '-' || n.k, s.unit, s.state, s.due_sort, s.created_ms + n.k \
             FROM order_scope s, n WHERE s.order_id NOT LIKE '%-%'"
        );
        match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
                for sql in [orders, units, scope, "ANALYZE".to_owned()] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .expect("copy");
                }
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(url).await.expect("postgres");
                // VACUUM too: the visibility map autovacuum would set lets COUNT use
                // index-only scans, as on a database that has been running.
                for sql in [orders, units, scope, "VACUUM ANALYZE".to_owned()] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .expect("copy");
                }
            }
        }
        println!(
            "seed: {copies} SQL copies of each template in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
