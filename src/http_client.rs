//! The HTTP/1.1 client for `http://` and `https://` URLs: the webhook notifiers (order
//! notices, leader alerts) and the `hotline order` command line talking to a running
//! server. hyper-util's client over rustls (ring) does the protocol and TLS; this module
//! keeps what callers rely on:
//!
//! - one request per connection (`Connection: close`, nothing pooled), so a receiver
//!   that closes after each answer never sees a stale connection reused;
//! - the whole exchange (connect, TLS, request, response body) bounded by a timeout and
//!   the response body by [`MAX_RESPONSE_BYTES`];
//! - header names and values with CR, LF or other control characters are refused, so a
//!   token or a path can never inject a header;
//! - https servers are trusted through the system's store (`/etc/ssl/certs`, or
//!   `SSL_CERT_FILE` / `SSL_CERT_DIR`), so an operator's own CA is added the usual way;
//!   an untrusted or mismatched certificate fails the attempt like a refused connection.

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use tracing::{debug, warn};

/// Largest response body accepted.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why a URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Neither `http://…` nor `https://…`.
    #[error("the URL must start with http:// or https://")]
    Scheme,
    /// No host, a bad port, or a character that cannot appear in a request line.
    #[error("the URL has no usable host and port")]
    Authority,
}

/// An `http[s]://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`.
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

impl HttpUrl {
    /// Parses an `http://` or `https://` URL.
    ///
    /// # Errors
    /// [`UrlError`] for another scheme, a missing host or a bad port.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let (tls, rest) = match (text.get(..8), text.get(..7)) {
            (Some(p), _) if p.eq_ignore_ascii_case("https://") => (true, &text[8..]),
            (_, Some(p)) if p.eq_ignore_ascii_case("http://") => (false, &text[7..]),
            _ => return Err(UrlError::Scheme),
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') || !safe(&target) || target.contains(' ') {
            return Err(UrlError::Authority);
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            // [v6]:port
            let (host, after) = inner.split_once(']').ok_or(UrlError::Authority)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| UrlError::Authority)?,
                None if after.is_empty() => default_port,
                None => return Err(UrlError::Authority),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_owned(),
                    port.parse().map_err(|_| UrlError::Authority)?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
        if !host_ok || port == 0 {
            return Err(UrlError::Authority);
        }
        Ok(Self {
            tls,
            host,
            port,
            target,
        })
    }

    /// `https://`.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.tls
    }

    /// Host as written (without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port (80 or 443 by default).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query (`/` at least).
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// `host:port` for the `Host` header.
    #[must_use]
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same server with `path_and_query` appended to this URL's path (its trailing
    /// `/` dropped): `http://h:8080` + `/api/orders` → `http://h:8080/api/orders`.
    #[must_use]
    pub fn join(&self, path_and_query: &str) -> Self {
        let base = self
            .target
            .split('?')
            .next()
            .unwrap_or("/")
            .trim_end_matches('/');
        Self {
            tls: self.tls,
            host: self.host.clone(),
            port: self.port,
            target: format!("{base}{path_and_query}"),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.target)
    }
}

/// No CR, LF or other control characters (header values, request targets).
fn safe(text: &str) -> bool {
    !text.bytes().any(|b| b.is_ascii_control())
}

/// Request methods this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl Method {
    fn as_hyper(self) -> hyper::Method {
        match self {
            Self::Get => hyper::Method::GET,
            Self::Post => hyper::Method::POST,
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Where.
    pub url: HttpUrl,
    /// Extra headers (`Host`, `Connection` and `Content-Length` are added).
    pub headers: Vec<(String, String)>,
    /// Body with its content type.
    pub body: Option<(String, Vec<u8>)>,
}

impl Request {
    /// A GET.
    #[must_use]
    pub fn get(url: HttpUrl) -> Self {
        Self {
            method: Method::Get,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A POST of a JSON body.
    #[must_use]
    pub fn post_json(url: HttpUrl, body: &serde_json::Value) -> Self {
        Self {
            method: Method::Post,
            url,
            headers: Vec::new(),
            body: Some(("application/json".to_owned(), body.to_string().into_bytes())),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The request as hyper sends it.
    fn build(&self) -> Result<hyper::Request<Full<Bytes>>, HttpError> {
        let uri: hyper::Uri = self
            .url
            .to_string()
            .parse()
            .map_err(|_| HttpError::BadUrl(self.url.to_string()))?;
        let mut builder = hyper::Request::builder()
            .method(self.method.as_hyper())
            .uri(uri)
            .header(CONNECTION, HeaderValue::from_static("close"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("hotline/", env!("CARGO_PKG_VERSION"))),
            );
        for (name, value) in &self.headers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let bad = || HttpError::BadHeader(name.clone());
            if !name_ok || !safe(value) {
                return Err(bad());
            }
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value).map_err(|_| bad())?;
            builder = builder.header(name, value);
        }
        let body = match &self.body {
            Some((content_type, body)) => {
                let value = HeaderValue::from_str(content_type)
                    .ok()
                    .filter(|_| safe(content_type))
                    .ok_or_else(|| HttpError::BadHeader("Content-Type".to_owned()))?;
                builder = builder.header(CONTENT_TYPE, value);
                Bytes::from(body.clone())
            }
            None => Bytes::new(),
        };
        // Content-Length comes from the body (always sent with a POST).
        builder
            .body(Full::new(body))
            .map_err(|_| HttpError::BadUrl(self.url.to_string()))
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body (transfer coding removed).
    pub body: Vec<u8>,
}

impl Response {
    /// First header of that name (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (lossy).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Cannot connect, or the TLS handshake failed (untrusted certificate, wrong name…).
    #[error("cannot connect to {addr}: {}", causes(.source))]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// Sending the request or reading the response head failed (including a response
    /// that is not HTTP/1.x).
    #[error("the exchange failed: {}", causes(.0))]
    Exchange(#[source] hyper_util::client::legacy::Error),
    /// Reading the response body failed.
    #[error("reading the response failed: {}", causes(.0.as_ref()))]
    Body(#[source] Box<dyn StdError + Send + Sync>),
    /// No complete response within the time limit.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// A body larger than [`MAX_RESPONSE_BYTES`].
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// A header name or value that cannot be sent (control characters).
    #[error("header {0:?} cannot be sent")]
    BadHeader(String),
    /// A URL that [`HttpUrl::parse`] accepted but hyper does not.
    #[error("the URL {0} cannot be requested")]
    BadUrl(String),
}

/// An error and its causes, `: `-separated: hyper's own messages say only "client error
/// (Connect)"; the reason (refused, certificate not trusted…) is further down.
fn causes(error: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    let mut next = error.source();
    while let Some(cause) = next {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    if text.is_empty() {
        error.to_string()
    } else {
        text
    }
}

/// rustls on ring: its C builds with `cc` alone, faster than aws-lc on 2 cores (see
/// DEPENDENCIES.md). rustls 0.23.48 deprecates it for its lack of post-quantum key
/// exchange (X25519MLKEM768), which neither a webhook's notices nor our own HTTPS and
/// SIP over TLS listeners (`server::tls`) can have without aws-lc yet.
#[allow(deprecated)]
pub(crate) fn tls_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A client with its trust store; cheap to clone. [`send`] uses one for the whole
/// process, trusting the system's store.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// A client trusting exactly `roots` for https.
    ///
    /// # Panics
    /// Never: ring supports rustls' default protocol versions.
    #[must_use]
    pub fn with_roots(roots: RootCertStore) -> Self {
        let provider = Arc::new(tls_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .http1_title_case_headers(true)
            .build(connector);
        Self { client }
    }

    /// A client trusting the system's store (`/etc/ssl/certs`; `SSL_CERT_FILE` or
    /// `SSL_CERT_DIR` instead when set). Reads files: call it once.
    #[must_use]
    pub fn system() -> Self {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(%e, "a file of trusted certificates cannot be read");
        }
        let mut roots = RootCertStore::empty();
        let (trusted, unusable) = roots.add_parsable_certificates(found.certs);
        if trusted == 0 {
            warn!(
                "no trusted certificates found (install ca-certificates, or set SSL_CERT_FILE): \
                 https requests will fail"
            );
        }
        debug!(trusted, unusable, "https trust store loaded");
        Self::with_roots(roots)
    }

    /// Sends `request` and reads the whole response, all within `timeout`.
    ///
    /// # Errors
    /// [`HttpError`]: connection, TLS, timeout, malformed or oversized responses.
    pub async fn send(&self, request: &Request, timeout: Duration) -> Result<Response, HttpError> {
        let built = request.build()?;
        match tokio::time::timeout(timeout, self.exchange(&request.url, built)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &HttpUrl,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<Response, HttpError> {
        let response = self.client.request(request).await.map_err(|source| {
            if source.is_connect() {
                HttpError::Connect {
                    addr: url.authority(),
                    source,
                }
            } else {
                HttpError::Exchange(source)
            }
        })?;
        let (head, body) = response.into_parts();
        // A Content-Length over the limit fails at once, not after reading the limit.
        if hyper::body::Body::size_hint(&body).lower() > MAX_RESPONSE_BYTES as u64 {
            return Err(HttpError::TooLarge);
        }
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    HttpError::TooLarge
                } else {
                    HttpError::Body(e)
                }
            })?
            .to_bytes();
        let headers = head
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).trim().to_owned(),
                )
            })
            .collect();
        Ok(Response {
            status: head.status.as_u16(),
            headers,
            body: body.to_vec(),
        })
    }
}

/// Sends `request` with the process's client (trusting the system's store) and reads
/// the whole response, all within `timeout`.
///
/// # Errors
/// [`HttpError`]: connection, TLS, timeout, malformed or oversized responses.
pub async fn send(request: &Request, timeout: Duration) -> Result<Response, HttpError> {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(HttpClient::system)
        .send(request, timeout)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.host(), u.port(), u.target()), ("127.0.0.1", 8080, "/"));
        assert!(!u.is_https());
        assert_eq!(
            u.join("/api/orders?page=2").to_string(),
            "http://127.0.0.1:8080/api/orders?page=2"
        );
        let u = HttpUrl::parse("HTTP://hooks.example:9000/hotline/").unwrap();
        assert_eq!(u.join("/x").target(), "/hotline/x");
        let u = HttpUrl::parse("http://[::1]:81/a?b=c").unwrap();
        assert_eq!((u.host(), u.port(), u.target()), ("::1", 81, "/a?b=c"));
        assert_eq!(u.authority(), "[::1]:81");
        assert_eq!(HttpUrl::parse("http://h?q=1").unwrap().target(), "/?q=1");
        assert_eq!(HttpUrl::parse("http://h").unwrap().port(), 80);
        let u = HttpUrl::parse("HTTPS://hooks.example/in").unwrap();
        assert!(u.is_https());
        assert_eq!(u.port(), 443);
        assert_eq!(u.join("/x").to_string(), "https://hooks.example:443/in/x");
        assert_eq!(HttpUrl::parse("https://[::1]").unwrap().port(), 443);
        assert_eq!(HttpUrl::parse("ftp://h"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("httpx://h"), Err(UrlError::Scheme));
        for bad in [
            "http://",
            "https://",
            "http://h:0",
            "http://h:99999",
            "http://u@h",
            "https://u:p@h",
            "http://h/a b",
            "http://h/a\r\nX: y",
        ] {
            assert_eq!(HttpUrl::parse(bad), Err(UrlError::Authority), "{bad}");
        }
    }

    #[test]
    fn headers_cannot_be_injected() {
        let url = HttpUrl::parse("http://h").unwrap();
        let r = Request::get(url.clone()).header("Authorization", "Bearer x\r\nX-Evil: 1");
        assert!(matches!(r.build(), Err(HttpError::BadHeader(_))));
        let r = Request::get(url.clone()).header("Authorization", "Bearer x\ty");
        assert!(matches!(r.build(), Err(HttpError::BadHeader(_))));
        let r = Request::get(url.clone()).header("Bad Name", "v");
        assert!(matches!(r.build(), Err(HttpError::BadHeader(_))));
        let mut r = Request::post_json(url, &serde_json::json!({}));
        r.body = Some(("text/plain\r\nX-Evil: 1".to_owned(), Vec::new()));
        assert!(matches!(r.build(), Err(HttpError::BadHeader(_))));
    }

    /// Reads one request (head and `Content-Length` body) from `stream`.
    async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + length {
                    return got;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the client closed before its request was complete");
            got.extend_from_slice(&chunk[..n]);
        }
    }

    /// Answers one request on `stream` with `answer` and closes; returns the request.
    async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        answer: &[u8],
    ) -> Vec<u8> {
        let got = read_request(&mut stream).await;
        stream.write_all(answer).await.unwrap();
        stream.shutdown().await.ok();
        got
    }

    /// Serves one connection with `answer`, returns what the client sent.
    async fn one_shot(answer: &'static [u8]) -> (HttpUrl, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            answer_one(s, answer).await
        });
        (
            HttpUrl::parse(&format!("http://{addr}/base")).unwrap(),
            task,
        )
    }

    async fn fetch(answer: &'static [u8]) -> Result<Response, HttpError> {
        let (url, _task) = one_shot(answer).await;
        send(&Request::get(url), Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn bodies_by_length_chunks_and_end_of_stream() {
        let r = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = fetch(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "wikipedia"));
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
        let r = fetch(b"HTTP/1.0 404 Not Found\r\n\r\nno").await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "no"));
        assert!(!r.is_success());
        let r = fetch(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
        assert!(r.body.is_empty() && r.is_success());
        for bad in [
            &b"SIP/2.0 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            let result = fetch(bad).await;
            assert!(
                matches!(result, Err(HttpError::Exchange(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        ] {
            let result = fetch(bad).await;
            assert!(matches!(result, Err(HttpError::Body(_))), "{result:?}");
        }
        let result = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 33554433\r\n\r\n").await;
        assert!(matches!(result, Err(HttpError::TooLarge)), "{result:?}");
    }

    #[tokio::test]
    async fn a_post_over_a_real_socket() {
        let (url, task) = one_shot(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        let request = Request::post_json(url.join("/hook"), &serde_json::json!({"a": 1}))
            .header("Authorization", "Bearer t");
        let response = send(&request, Duration::from_secs(5)).await.unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "{}"));
        assert_eq!(response.header("content-type"), Some("application/json"));
        let sent = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(sent.starts_with("POST /base/hook HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("\r\nHost: 127.0.0.1:"), "{sent}");
        assert!(sent.contains("\r\nConnection: close\r\n"), "{sent}");
        assert!(sent.contains("\r\nAuthorization: Bearer t\r\n"), "{sent}");
        assert!(sent.contains("\r\nContent-Length: 7\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\n{\"a\":1}"), "{sent}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_port_fails_to_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = HttpUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let result = send(&Request::get(url), Duration::from_millis(200)).await;
        assert!(matches!(result, Err(HttpError::Timeout(_))), "{result:?}");
        drop(listener);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let result = send(&Request::get(url), Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(HttpError::Connect { .. })),
            "{result:?}"
        );
        let text = result.unwrap_err().to_string();
        assert!(
            text.contains("refused"),
            "the reason is in the message: {text}"
        );
    }

    const TEST_CERT: &[u8] = include_bytes!("../tests/fixtures/tls/cert.der");
    const TEST_KEY: &[u8] = include_bytes!("../tests/fixtures/tls/key.der");

    /// An https receiver on 127.0.0.1 with the self-signed test certificate, answering
    /// each of `connections` with `answer`; returns its URL and the requests it read.
    async fn tls_receiver(
        connections: usize,
        answer: &'static [u8],
    ) -> (HttpUrl, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let key = PrivateKeyDer::try_from(TEST_KEY.to_vec()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(tls_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(TEST_CERT.to_vec())], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            for _ in 0..connections {
                let (tcp, _) = listener.accept().await.unwrap();
                // A client that refuses our certificate aborts the handshake.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    requests.push(answer_one(tls, answer).await);
                }
            }
            requests
        });
        (
            HttpUrl::parse(&format!("https://{addr}/hooks")).unwrap(),
            task,
        )
    }

    #[tokio::test]
    async fn an_https_webhook_is_delivered_to_a_trusted_server_only() {
        let (url, task) = tls_receiver(2, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let request = Request::post_json(url.join("/in"), &serde_json::json!({"id": "n1"}))
            .header("X-Hotline-Event", "n1");

        // The process's client trusts the system's store, which has no self-signed test
        // certificate: refused before anything is sent, as a connection failure.
        let refused = send(&request, Duration::from_secs(5)).await;
        let Err(error @ HttpError::Connect { .. }) = refused else {
            panic!("an untrusted certificate must be refused: {refused:?}");
        };
        assert!(
            error.to_string().contains("certificate"),
            "the reason is in the message: {error}"
        );

        // Trusting it (as an operator does by adding a CA to the system's store).
        let mut roots = RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(TEST_CERT.to_vec()))
            .unwrap();
        let client = HttpClient::with_roots(roots);
        let response = client.send(&request, Duration::from_secs(5)).await.unwrap();
        assert_eq!((response.status, response.text().as_str()), (200, "ok"));
        let requests = task.await.unwrap();
        assert_eq!(requests.len(), 1, "only the trusted exchange got through");
        let sent = String::from_utf8(requests[0].clone()).unwrap();
        assert!(sent.starts_with("POST /hooks/in HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("\r\nX-Hotline-Event: n1\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\n{\"id\":\"n1\"}"), "{sent}");
    }
}
