//! A small HTTP/1.1 client over tokio's `TcpStream`, for `http://` URLs only: the
//! `hotline order` command line talking to a running server, and the webhook notifier.
//!
//! One request per connection (`Connection: close`); the response body is read by
//! `Content-Length`, chunked transfer coding, or up to the end of the stream; the
//! whole exchange is bounded by a timeout and the response by a size limit. Header
//! values and targets with CR or LF are refused, so a token or a path can never inject
//! a header. No TLS: `https://` is refused with a clear error (run behind a
//! TLS-terminating proxy, as the server itself does).

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (head + body).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Largest response head.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why a URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// `https://`: this client has no TLS.
    #[error(
        "https is not supported by this client: use http:// (e.g. behind a TLS-terminating proxy)"
    )]
    Https,
    /// Not `http://…`.
    #[error("the URL must start with http://")]
    Scheme,
    /// No host, a bad port, or a character that cannot appear in a request line.
    #[error("the URL has no usable host and port")]
    Authority,
}

/// An `http://host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

impl HttpUrl {
    /// Parses an `http://` URL.
    ///
    /// # Errors
    /// [`UrlError`] for another scheme, a missing host or a bad port.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let rest = match text.get(..8) {
            Some(p) if p.eq_ignore_ascii_case("https://") => return Err(UrlError::Https),
            _ => match text.get(..7) {
                Some(p) if p.eq_ignore_ascii_case("http://") => &text[7..],
                _ => return Err(UrlError::Scheme),
            },
        };
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
                None if after.is_empty() => 80,
                None => return Err(UrlError::Authority),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_owned(),
                    port.parse().map_err(|_| UrlError::Authority)?,
                ),
                None => (authority.to_owned(), 80),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
        if !host_ok || port == 0 {
            return Err(UrlError::Authority);
        }
        Ok(Self { host, port, target })
    }

    /// Host as written (without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port (80 by default).
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
            host: self.host.clone(),
            port: self.port,
            target: format!("{base}{path_and_query}"),
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
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
    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
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

    fn encode(&self) -> Result<Vec<u8>, HttpError> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: hotline/{}\r\n",
            self.method.as_str(),
            self.url.target,
            self.url.authority(),
            env!("CARGO_PKG_VERSION")
        );
        for (name, value) in &self.headers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok || !safe(value) {
                return Err(HttpError::BadHeader(name.clone()));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body: &[u8] = match &self.body {
            Some((content_type, body)) => {
                if !safe(content_type) {
                    return Err(HttpError::BadHeader("Content-Type".to_owned()));
                }
                head.push_str(&format!("Content-Type: {content_type}\r\n"));
                body
            }
            None => &[],
        };
        if self.body.is_some() || self.method == Method::Post {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Ok(bytes)
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body (chunked coding removed).
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
    /// Cannot connect.
    #[error("cannot connect to {addr}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("connection failed")]
    Io(#[from] std::io::Error),
    /// No complete response within the time limit.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// Not an HTTP/1.x response.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_RESPONSE_BYTES`].
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// A header name or value that cannot be sent (control characters).
    #[error("header {0:?} cannot be sent")]
    BadHeader(String),
}

/// Sends `request` and reads the whole response, all within `timeout`.
///
/// # Errors
/// [`HttpError`]: connection, timeout, malformed or oversized responses.
pub async fn send(request: &Request, timeout: Duration) -> Result<Response, HttpError> {
    let bytes = request.encode()?;
    match tokio::time::timeout(timeout, exchange(&request.url, &bytes)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

async fn exchange(url: &HttpUrl, request: &[u8]) -> Result<Response, HttpError> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| HttpError::Connect {
            addr: url.authority(),
            source,
        })?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0_u8; 16 * 1024];
    let mut eof = false;
    loop {
        match parse_response(&buf, eof)? {
            Some(response) => return Ok(response),
            None if eof => return Err(HttpError::Malformed("the connection closed early")),
            None => {}
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            eof = true;
        } else {
            if buf.len() + n > MAX_RESPONSE_BYTES {
                return Err(HttpError::TooLarge);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The response in `buf` when complete (`eof`: the peer closed the stream);
/// `Ok(None)` to read more.
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HttpError::Malformed("response head too long"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::Malformed("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not an HTTP/1.x status line"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(HttpError::Malformed("bad status code"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let body = &buf[head_end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked =
        header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if chunked {
        match dechunk(body)? {
            Some(body) => body,
            None => return Ok(None),
        }
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
        if length > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        if body.len() < length {
            return Ok(None);
        }
        body[..length].to_vec()
    } else if eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        headers,
        body,
    }))
}

/// A complete chunked body decoded; `Ok(None)` when more bytes are needed.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..line_end])
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            return Ok(find(data, b"\r\n").map(|_| out));
        }
        if size > MAX_RESPONSE_BYTES || out.len() + size > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.host(), u.port(), u.target()), ("127.0.0.1", 8080, "/"));
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
        assert_eq!(HttpUrl::parse("https://h"), Err(UrlError::Https));
        assert_eq!(HttpUrl::parse("ftp://h"), Err(UrlError::Scheme));
        for bad in [
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://u@h",
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
        assert!(matches!(r.encode(), Err(HttpError::BadHeader(_))));
        let r = Request::get(url).header("Bad Name", "v");
        assert!(matches!(r.encode(), Err(HttpError::BadHeader(_))));
    }

    #[test]
    fn bodies_by_length_chunks_and_end_of_stream() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello+", false)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false)
                .unwrap()
                .is_none()
        );
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n";
        let r = parse_response(chunked, false).unwrap().unwrap();
        assert_eq!(r.text(), "wikipedia");
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
        assert!(
            parse_response(&chunked[..chunked.len() - 2], false)
                .unwrap()
                .is_none()
        );
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nno", true)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "no"));
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(r.body.is_empty());
        for bad in [
            &b"SIP/2.0 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(parse_response(bad, true).is_err(), "{bad:?}");
        }
    }

    /// Serves one connection with `answer`, returns what the client sent.
    async fn one_shot(answer: &'static [u8]) -> (HttpUrl, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0_u8; 4096];
            let n = s.read(&mut got).await.unwrap();
            s.write_all(answer).await.unwrap();
            got.truncate(n);
            got
        });
        (
            HttpUrl::parse(&format!("http://{addr}/base")).unwrap(),
            task,
        )
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
        let sent = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(sent.starts_with("POST /base/hook HTTP/1.1\r\n"), "{sent}");
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
    }
}
