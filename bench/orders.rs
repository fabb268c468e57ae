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
    /// Demo user whose view of the list is sampled (default `handler`).
    list_user: String,
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
        list_user: "handler".into(),
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
            for i in 0..count {
                if limit.is_some_and(|l| started.elapsed() >= l) {
                    break;
                }
                let body = format!(
                    "{{\"contact_name\":\"张三\",\"contact_phone\":\"138{:08}\",\"category\":\"consultation\",\
                     \"business_area\":\"legal_aid\",\"description\":\"bench {c}-{i}\",\"city\":\"jinan\"}}",
                    (c * per_client + i) % 100_000_000
                );
                let created = conn.call("POST", "/api/orders", &agent, &body).await;
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
            done
        }));
    }
    let mut done = 0usize;
    for t in tasks {
        done += t.await.expect("client");
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
