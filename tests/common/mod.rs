//! Shared harness for integration tests: start the real `hotline` binary on free
//! loopback ports with a temporary data directory, and run real SIP peers against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod ops;
pub mod orders;
pub mod phone;
pub mod queue;
pub mod schema;
pub mod tls;
pub mod trunk;

pub const TEST_CONFIG: &str = r#"
[server]
domain = "hotline.test"
calendar = "CALENDAR"

[sip]
min_expires = 10
auth_failures_before_ban = 5
auth_failure_window_secs = 60
ban_secs = 30
tcp_idle_timeout_secs = 3
digest_algorithms = ["MD5", "SHA-256"]

[[trunks]]
name = "test-trunk"
sources = ["127.0.0.1"]

[[cities]]
id = "jinan"
name = "济南"
area_codes = ["0531", "0634"]
numbers = ["053112348"]

[[cities]]
id = "qingdao"
name = "青岛"
area_codes = ["0532"]
numbers = ["053212348"]

[[agents]]
id = "1001"
name = "张律师"
city = "jinan"
password = "secret1001"
roles = ["agent"]

[[agents]]
id = "1002"
name = "李公证员"
city = "jinan"
ha1_md5 = "HA1_1002"
roles = ["agent"]

[[units]]
id = "province"
name = "山东省司法厅"
kind = "province"

# An API client for tests: bearer token "hotline-test-token" (see `Server::api_get`).
[[users]]
id = "test-dispatcher"
name = "测试转办员"
password = "test-dispatcher"
roles = ["dispatcher"]
unit = "province"
api_token = "0c289e76f71a0770d9e17a351bad1391dc86cf7fca0b868c51dcb67604456e37"
"#;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config text with its placeholders filled in: CALENDAR (the shipped calendar's
/// absolute path) and HA1_1002.
pub fn fill_placeholders(config: &str) -> String {
    let calendar = repo_root().join("config/calendar/cn-workdays.toml");
    config
        .replace("CALENDAR", &calendar.display().to_string())
        .replace("HA1_1002", &md5_hex("1002:hotline.test:secret1002"))
}

/// The shipped `config/hotline.toml` for a copy in a test's own directory: the calendar
/// and prompts (relative to `config/`) point into the checkout, the data and recordings
/// (`../data`, `../recordings`) stay inside the copy's directory.
pub fn shipped_config() -> String {
    let shipped =
        std::fs::read_to_string(repo_root().join("config/hotline.toml")).expect("read config");
    let config = repo_root().join("config");
    let mut text = shipped;
    for (from, to) in [
        (
            "calendar = \"calendar/cn-workdays.toml\"",
            "calendar = \"CALENDAR\"".to_owned(),
        ),
        (
            "prompts_dir = \"prompts/zh\"",
            format!(
                "prompts_dir = {:?}",
                config.join("prompts/zh").display().to_string()
            ),
        ),
        ("data_dir = \"../data\"", "data_dir = \"data\"".to_owned()),
        (
            "recordings_dir = \"../recordings\"",
            "recordings_dir = \"recordings\"".to_owned(),
        ),
    ] {
        assert!(text.contains(from), "the shipped config lost {from}");
        text = text.replace(from, &to);
    }
    text
}

/// A free port usable for both UDP and TCP on 127.0.0.1, with the TCP port above it free
/// too.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        // The port above too: baresip listens for SIP over TLS there (CI saw a caller
        // fail to start, "SIP/TLS transport failed: Address already in use").
        let above = port
            .checked_add(1)
            .map(|p| TcpListener::bind(("127.0.0.1", p)));
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && matches!(above, Some(Ok(_))) {
            return port;
        }
    }
    panic!("no free port");
}

/// A base port for SIPp's media (`-mp`): SIPp binds the base and the three above it
/// (audio RTP/RTCP, video RTP/RTCP), so one free port is not enough when many calls run
/// side by side. Four consecutive free UDP ports from an even base.
pub fn free_media_port() -> u16 {
    for _ in 0..200 {
        let base = {
            let probe = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
            probe.local_addr().expect("addr").port() & !1
        };
        if base > 65_000 {
            continue;
        }
        let held: Vec<UdpSocket> = (0..4)
            .filter_map(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == 4 {
            return base;
        }
    }
    panic!("no four free consecutive UDP ports");
}

pub struct Server {
    pub child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: Arc<Mutex<String>>,
}

pub fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(s.as_bytes()))
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(TEST_CONFIG, &[])
    }

    /// Start with a config text (placeholders CALENDAR and HA1_1002 are filled in) and
    /// extra environment variables.
    pub fn start_with(config: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server::start_in(dir, config, env)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Server {
        Server::start_wrapped(dir, config, env, None)
    }

    /// Start with the open-file limit set to `soft`:`hard` (through `prlimit`), as a
    /// service manager would.
    pub fn start_with_open_files(config: &str, soft: u64, hard: u64) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let wrapper = vec![
            require("prlimit").display().to_string(),
            format!("--nofile={soft}:{hard}"),
            "--".to_string(),
        ];
        Server::start_wrapped(dir, config, &[], Some(wrapper))
    }

    fn start_wrapped(
        dir: tempfile::TempDir,
        config: &str,
        env: &[(&str, &str)],
        wrapper: Option<Vec<String>>,
    ) -> Server {
        let config = fill_placeholders(config);
        let config_path = dir.path().join("hotline.toml");
        std::fs::write(&config_path, config).expect("write config");
        let sip = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = match &wrapper {
            Some(wrapper) => {
                let mut cmd = Command::new(&wrapper[0]);
                cmd.args(&wrapper[1..]).arg(env!("CARGO_BIN_EXE_hotline"));
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_hotline")),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .current_dir(dir.path())
            .env("RUST_LOG", "info,hotline=debug")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hotline");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let server = Server {
            child,
            sip,
            http,
            dir,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.log().contains("hotline ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// GET as the test config's API client (a province dispatcher, bearer token).
    pub fn api_get(&self, path: &str) -> (u16, String) {
        self.http_get_with(path, "Authorization: Bearer hotline-test-token\r\n")
    }

    /// Plain HTTP/1.1 GET, returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.http_get_with(path, "")
    }

    fn http_get_with(&self, path: &str, extra_headers: &str) -> (u16, String) {
        let s = std::net::TcpStream::connect(self.http).expect("connect http");
        http_get_on(s, path, extra_headers)
    }

    /// Plain GET from a client socket bound to `source` (127.0.0.x: another client).
    pub fn http_get_from(&self, source: std::net::IpAddr, path: &str) -> (u16, String) {
        http_get_on(connect_from(source, self.http), path, "")
    }
}

/// A TCP connection to `to` from address `source` (any 127.0.0.0/8 address on Linux).
pub fn connect_from(source: std::net::IpAddr, to: SocketAddr) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind source");
        socket.connect(to).await.expect("connect")
    });
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// One request from `source` with `Connection: close`: (status, the whole answer:
/// head and body). `headers` are extra header lines, each ending in CRLF.
pub fn http_request_from(
    source: std::net::IpAddr,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = connect_from(source, to);
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    (status_of(&resp), resp)
}

/// One GET with `Connection: close` on an open connection: (status, body); status 0
/// when the server closed it without an answer.
pub fn http_get_on(mut s: std::net::TcpStream, path: &str, extra_headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    {
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n"
        );
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Server {
    /// Value of a Prometheus sample line `name{labels} value` (0 when absent).
    pub fn metric(&self, sample: &str) -> u64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// Start again in the same directory (config, data, recordings) after the server
    /// was killed or terminated.
    pub fn restart(mut self, env: &[(&str, &str)]) -> Server {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tmp"));
        drop(self);
        let config = std::fs::read_to_string(dir.path().join("hotline.toml")).expect("config");
        Server::start_in(dir, &config, env)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Is a peer program installed? Tests of real peers fail loudly when it is not:
/// `.ci/run` installs them.
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} is not installed (run .ci/run, which installs the test peers)");
}

pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run a command with a hard time limit.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn peer");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    Output {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn sipp_scenario(name: &str) -> PathBuf {
    repo_root().join("tests/sipp").join(name)
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A bare SIP client over UDP for tests that need to see exact answers.
pub struct RawUdp {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl RawUdp {
    pub fn new(server: SocketAddr) -> RawUdp {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        RawUdp { socket, server }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    /// Send a request (LF line ends are turned into CRLF) and wait for one response.
    pub fn request(&self, text: &str) -> Option<String> {
        self.send(text);
        self.recv()
    }

    pub fn send(&self, text: &str) {
        let wire = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.socket
            .send_to(wire.as_bytes(), self.server)
            .expect("send");
    }

    pub fn send_bytes(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).expect("send");
    }

    pub fn recv(&self) -> Option<String> {
        let mut buf = vec![0u8; 65_536];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // 100 Trying is not what the tests wait for.
                    if text.starts_with("SIP/2.0 100 ") {
                        continue;
                    }
                    return Some(text);
                }
                Err(_) => return None,
            }
        }
    }
}

/// Status code of a response text.
pub fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// First value of a header (case-insensitive name) in a message text.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every value of a header.
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A quoted or bare parameter of a digest challenge.
pub fn digest_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().map(str::to_string)
    } else {
        rest.split([',', ' ']).next().map(str::to_string)
    }
}

/// What a digest response is computed from.
pub struct DigestInput<'a> {
    pub sha256: bool,
    pub user: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// RFC 2617 digest response with qop=auth (MD5 or SHA-256).
pub fn digest_response(d: &DigestInput<'_>) -> String {
    let DigestInput {
        sha256,
        user,
        realm,
        password,
        method,
        uri,
        nonce,
        nc,
        cnonce,
    } = *d;
    let h = |s: String| {
        if sha256 {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(s.as_bytes()))
        } else {
            md5_hex(&s)
        }
    };
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("{method}:{uri}"));
    h(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

/// A REGISTER for `user` from `client`, optionally with an Authorization header.
pub fn register_text(
    client: &RawUdp,
    user: &str,
    cseq: u32,
    expires: u32,
    auth: Option<&str>,
) -> String {
    let local = client.local();
    let server = client.server;
    let auth_line = auth
        .map(|a| format!("Authorization: {a}\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{server} SIP/2.0\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{user}-{cseq}-{nonce};rport\n\
         Max-Forwards: 70\n\
         From: <sip:{user}@hotline.test>;tag=t{user}\n\
         To: <sip:{user}@hotline.test>\n\
         Call-ID: reg-{user}-{port}\n\
         CSeq: {cseq} REGISTER\n\
         Contact: <sip:{user}@{local}>\n\
         Expires: {expires}\n\
         {auth_line}Content-Length: 0\n\n",
        port = local.port(),
        nonce = rand_suffix(),
    )
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Register `user` with `password` through a 401 challenge (MD5 or SHA-256); returns the
/// final response (None when nothing came back).
pub fn register_with_password(
    client: &RawUdp,
    user: &str,
    password: &str,
    sha256: bool,
    expires: u32,
) -> Option<String> {
    let register = authorized_register(client, user, password, sha256, expires)?;
    client.request(&register)
}

/// The REGISTER of `user` answering a fresh 401 challenge (MD5 or SHA-256), not yet sent:
/// send it, and send the same text again to play a retransmission.
pub fn authorized_register(
    client: &RawUdp,
    user: &str,
    password: &str,
    sha256: bool,
    expires: u32,
) -> Option<String> {
    let challenge_resp = client.request(&register_text(client, user, 1, expires, None))?;
    assert_eq!(status_of(&challenge_resp), 401, "{challenge_resp}");
    let alg = if sha256 { "SHA-256" } else { "MD5" };
    let challenge = headers(&challenge_resp, "WWW-Authenticate")
        .into_iter()
        .find(|c| c.contains(&format!("algorithm={alg}")))?;
    let realm = digest_param(challenge, "realm")?;
    let nonce = digest_param(challenge, "nonce")?;
    let opaque = digest_param(challenge, "opaque")?;
    let uri = format!("sip:{}", client.server);
    let response = digest_response(&DigestInput {
        sha256,
        user,
        realm: &realm,
        password,
        method: "REGISTER",
        uri: &uri,
        nonce: &nonce,
        nc: "00000001",
        cnonce: "abc123",
    });
    let auth = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={alg}, cnonce=\"abc123\", qop=auth, nc=00000001, \
         opaque=\"{opaque}\""
    );
    Some(register_text(client, user, 2, expires, Some(&auth)))
}

/// Every response `client` receives within `window` (100 Trying included), in order.
pub fn responses_within(client: &RawUdp, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero()
            || client
                .socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
        {
            break;
        }
        match client.socket.recv_from(&mut buf) {
            Ok((n, _)) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    let _ = client
        .socket
        .set_read_timeout(Some(Duration::from_millis(1500)));
    got
}

/// Wait up to `limit` for `needle` to appear in the server's log.
pub fn wait_for_log(server: &Server, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if server.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Every `.wav` below `dir` (recordings live in `YYYY/MM/DD/`).
pub fn find_wavs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(find_wavs(&path));
        } else if path.extension().is_some_and(|e| e == "wav") {
            out.push(path);
        }
    }
    out
}

/// (RMS of the first channel, seconds, channel count) of a 16-bit WAV.
pub fn wav_stats(path: &Path) -> (f64, f64, u16) {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    let channels = spec.channels;
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .step_by(usize::from(channels))
        .map(|s| s.expect("sample"))
        .collect();
    let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>()
        / samples.len().max(1) as f64)
        .sqrt();
    (
        rms,
        samples.len() as f64 / f64::from(spec.sample_rate),
        channels,
    )
}

/// An INVITE from a trunk caller to `service` offering PCMA audio at `rtp_port`.
pub fn pcma_invite_text(sip: &RawUdp, service: &str, call_id: &str, rtp_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
    );
    format!(
        "INVITE sip:{service}@{server} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\n\
         Max-Forwards: 70\nFrom: <sip:053188886666@127.0.0.1>;tag=raw\nTo: <sip:{service}@{server}>\n\
         Call-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:caller@{local}>\n\
         Content-Type: application/sdp\nContent-Length: {len}\n\n{sdp}",
        server = sip.server,
        local = sip.local(),
        len = sdp.len(),
    )
}

/// Send `text` and wait for the final response (1xx skipped); None on silence.
pub fn final_response(sip: &RawUdp, text: &str) -> Option<String> {
    sip.send(text);
    loop {
        let resp = sip.recv()?;
        if status_of(&resp) >= 200 {
            return Some(resp);
        }
    }
}

/// A tmpfs of a fixed size mounted for the life of the value (unmounted, lazily, on drop,
/// also when the test fails). Mounting needs root: CI runs the fault tests as root, and
/// a test that cannot mount fails rather than passing unchecked.
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mount a tmpfs of `size` (`mount -o size=…`, e.g. "6m") on `path`, creating it.
    pub fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs on {} was refused (run the fault tests as root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Fill the disk with a file `name` until the kernel says ENOSPC; returns the file,
    /// to delete when room should come back.
    pub fn fill(&self, name: &str) -> PathBuf {
        let filler = self.path.join(name);
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0x5a_u8; 4096];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", filler.display()),
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A console user who may create and list work orders (user 9001, password `pw-9001`,
/// province desk) and the city unit orders are routed to; append to [`TEST_CONFIG`].
pub const ORDER_DESK_CONFIG: &str = r#"
[[users]]
id = "9001"
name = "值班员"
unit = "province"
password = "pw-9001"
roles = ["agent", "supervisor"]

[[units]]
id = "jinan"
name = "济南市司法局"
kind = "city"
parent = "province"
"#;

/// One HTTP/1.1 request with a console session (cookie, CSRF token); (status, whole
/// response), status 0 when the server does not answer.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    session: &(String, String),
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(15))).ok();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nCookie: {}\r\nX-CSRF-Token: {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        session.0,
        session.1,
        body.len()
    );
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

/// The JSON body of a whole response (`Null` when there is none).
pub fn body_json(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// Log in as the order desk's user 9001 ([`ORDER_DESK_CONFIG`]): (cookie, CSRF token).
pub fn login_order_desk(server: &Server) -> (String, String) {
    login(server, "9001", "pw-9001")
}

/// Log in to the console as `user`: (cookie, CSRF token).
pub fn login(server: &Server, user: &str, password: &str) -> (String, String) {
    let none = (String::new(), String::new());
    let body = serde_json::json!({"user": user, "password": password}).to_string();
    let (status, resp) = http(server.http, "POST", "/api/login", &none, &body);
    assert_eq!(status, 200, "login {user}: {resp}");
    let cookie = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("Set-Cookie: ")
                .or_else(|| l.strip_prefix("set-cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    let csrf = body_json(&resp)["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    (cookie, csrf)
}

/// `POST /api/orders` of a consultation in Jinan, `key` in its description.
pub fn create_order(server: &Server, session: &(String, String), key: &str) -> (u16, String) {
    let body = serde_json::json!({
        "contact_name": "张三",
        "contact_phone": "13812345678",
        "category": "consultation",
        "urgency": "normal",
        "business_area": "legal_aid",
        "description": format!("数据库中断测试 {key}"),
        "channel": "phone",
        "city": "jinan",
    })
    .to_string();
    http(server.http, "POST", "/api/orders", session, &body)
}

/// `GET /healthz` as JSON.
pub fn health(server: &Server) -> serde_json::Value {
    let (_, body) = server.http_get("/healthz");
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// Poll `done` every 200 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// GET with a console session.
pub fn get(server: &Server, session: &(String, String), path: &str) -> (u16, String) {
    http(server.http, "GET", path, session, "")
}

/// The order landed: readable, not marked queued, with its creation events.
pub fn landed(server: &Server, session: &(String, String), id: &str) -> bool {
    let (status, resp) = get(server, session, &format!("/api/orders/{id}"));
    if status != 200 || body_json(&resp).get("queued").is_some() {
        return false;
    }
    let (status, resp) = get(server, session, &format!("/api/orders/{id}/events"));
    status == 200 && body_json(&resp).as_array().is_some_and(|e| !e.is_empty())
}

/// One after-hours hotline call (the IVR answers and takes a voice message), 3 s.
pub fn ivr_call(server: &Server) -> Output {
    let work = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        work.path().join("caller.wav"),
    )
    .expect("fixture");
    run_bounded(
        Command::new(require("sipp"))
            .current_dir(work.path())
            .args(["-sf", &path_str(&sipp_scenario("call_audio.xml"))])
            .args(["-s", "053112348", "-m", "1", "-i", "127.0.0.1"])
            .args(["-mi", "127.0.0.1", "-p", &free_port().to_string()])
            .args(["-mp", &free_media_port().to_string()])
            .args(["-d", "3000", "-nostdin", "-timeout", "25"])
            .arg(server.sip.to_string()),
        Duration::from_secs(30),
    )
}

/// H-12-4 in the server's log (human format, as `Server` starts it with
/// `RUST_LOG=info,hotline=debug`): no INFO, WARN or ERROR record contains the caller's
/// full `number`, and no record at any level carries it as a structured field value
/// (`caller=…`). DEBUG records may quote whole SIP messages, whose From header holds the
/// number: those are for tracing a call on a test or lab system. A record runs from a
/// line starting with its timestamp to the next such line (SIP dumps span lines).
pub fn assert_log_keeps_number_private(log: &str, number: &str) {
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        match records.last_mut() {
            Some(record) if !line.starts_with(|c: char| c.is_ascii_digit()) => {
                record.push('\n');
                record.push_str(line);
            }
            _ => records.push(line.to_owned()),
        }
    }
    assert!(records.len() > 10, "the log is too short to judge:\n{log}");
    for record in &records {
        let level = record.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            !(matches!(level, "INFO" | "WARN" | "ERROR") && record.contains(number)),
            "a {level} log record carries the full number {number}:\n{record}"
        );
        for field in [format!("={number}"), format!("=\"{number}")] {
            assert!(
                !record.contains(&field),
                "a log record carries the full number {number} in a field:\n{record}"
            );
        }
    }
}

/// A local HTTP receiver (webhook tests): answers 200 to every POST and keeps (head,
/// body); or, as a black hole, accepts and reads but never answers; or answers 500 to
/// the first `fail_first` requests (kept apart) before answering 200.
pub struct Receiver {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    refused: Arc<Mutex<usize>>,
}

impl Receiver {
    pub fn start(listener: TcpListener, answer: bool) -> Receiver {
        Receiver::spawn(listener, answer, 0)
    }

    /// Answers 500 to the first `fail_first` requests, then 200.
    pub fn failing_first(listener: TcpListener, fail_first: usize) -> Receiver {
        Receiver::spawn(listener, true, fail_first)
    }

    fn spawn(listener: TcpListener, answer: bool, fail_first: usize) -> Receiver {
        listener.set_nonblocking(true).expect("nonblocking");
        let refused = Arc::new(Mutex::new(0_usize));
        let refusals = refused.clone();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, flag) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) if !answer => held.push(stream),
                    Ok((mut stream, _)) => {
                        let failing = refusals.lock().is_ok_and(|n| *n < fail_first);
                        if failing {
                            if read_request(&mut stream).is_some() {
                                let _ = stream.write_all(
                                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                                );
                                if let Ok(mut n) = refusals.lock() {
                                    *n += 1;
                                }
                            }
                            continue;
                        }
                        if let Some(request) = read_request(&mut stream) {
                            let _ = stream.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                            if let Ok(mut g) = sink.lock() {
                                g.push(request);
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(held);
        });
        Receiver {
            got,
            stop,
            thread: Some(thread),
            refused,
        }
    }

    /// Requests answered 500.
    pub fn refused(&self) -> usize {
        self.refused.lock().map_or(0, |n| *n)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .map(|g| g.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default()
    }

    pub fn heads(&self) -> Vec<String> {
        self.got
            .lock()
            .map(|g| g.iter().map(|(h, _)| h.clone()).collect())
            .unwrap_or_default()
    }

    /// Stop and close every connection (and the listening socket).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Value)> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some((head.to_owned(), serde_json::from_str(body).ok()?));
            }
        }
    }
}
