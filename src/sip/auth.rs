//! Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), sans-IO.
//!
//! The [`Authenticator`] issues challenges, verifies `Authorization` /
//! `Proxy-Authorization` credentials and rate-limits failed attempts per source. It never
//! reads a clock, a socket or the database: time (`Instant`) is an input and the caller
//! looks up the user's secret.
//!
//! Decisions worth knowing:
//! - **Stateless nonces.** A nonce is `base64url(timestamp_ms || random || HMAC-SHA256(
//!   secret, timestamp_ms || random || realm))`, so a forged nonce is recognised without
//!   storing every nonce issued. Timestamps are wall-clock milliseconds (derived from the
//!   [`ClockAnchor`] given at start) so nodes sharing a secret understand each other's nonces.
//! - **Replay protection** keeps the highest `nc` per nonce for nonces that have been used
//!   successfully, in a bounded map. When the map is full the oldest entry is evicted and
//!   every nonce issued at or before it becomes stale, so eviction can never re-open a
//!   replay window. Nonces issued before this process started are stale for the same
//!   reason (their `nc` history was lost).
//! - **Stale vs invalid.** `Stale` is answered only when the digest itself is correct for a
//!   nonce that is expired, replayed (`nc` not increasing) or shaped like ours but not
//!   verifiable (the per-process secret changed across a restart): the client may retry
//!   with the fresh nonce without asking its user again, and none of these count as a
//!   failure (RFC 7616 §3.3). `Stale` never authenticates: only a nonce whose MAC we
//!   verify can give `Ok`. A wrong digest, or a nonce not of our shape, is `Invalid` and
//!   counts toward the bans. The `opaque` value depends on the realm only, so that it
//!   too survives a restart.
//! - **Bans** (RFC 3261 §26.3.2.4 leaves it to us). Failures are counted per (source, user)
//!   and per source. `max_failures` for one user from one source bans that user from that
//!   source (a misconfigured phone behind a NAT does not lock out its neighbours);
//!   `max_source_failures` over all users bans the whole source (a scanner rotating user
//!   names). Trunk sources are never banned as a whole and do not count toward it: a
//!   scanner on the carrier's address must not take the trunk's calls down.
//! - **No user enumeration.** An unknown user is verified against a dummy HA1 through
//!   the same code path, so the outcome, the challenge and the work done are the same as
//!   for a wrong password.
//! - **No legacy RFC 2069 digests.** Responses without `qop` carry no `cnonce`/`nc` and so
//!   no replay protection; every UA we target supports `qop=auth`, so they are `Invalid`.
//! - The `uri` parameter is used for HA2 as RFC 2617 requires. Comparing it with the
//!   Request-URI (RFC 3261 §22.4) needs the request, so the endpoint does it before
//!   calling [`Authenticator::verify`]: as URIs, not as text, since UAs spell them
//!   differently.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac as _};
use rand::RngCore;
use rand::rngs::StdRng;
use sha2::{Digest as _, Sha256};
use sha2_011::Sha256 as Sha256v11;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Digest algorithms we offer and accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

impl DigestAlgorithm {
    /// The token used in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex digest of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(md5::Md5::digest(data)),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// Why an `Authorization` header value could not be parsed. No payload text: these values
/// come from the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("authorization scheme is not Digest")]
    NotDigest,
    #[error("authorization parameters are malformed at byte {offset}")]
    Syntax { offset: usize },
    #[error("authorization parameter {name} appears more than once")]
    DuplicateParam { name: &'static str },
    #[error("mandatory authorization parameter {name} is missing")]
    MissingParam { name: &'static str },
}

/// The parameters of a `Digest` credentials value (RFC 3261 §25.1 `digest-response`).
/// Values are unquoted and unescaped; unknown parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// As sent; `None` means MD5 (RFC 2617 §3.2.2).
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<String>,
    /// As sent (8 hex digits when well-formed); hashed verbatim.
    pub nc: Option<String>,
    pub userhash: Option<String>,
}

impl DigestCredentials {
    /// Parse an `Authorization` or `Proxy-Authorization` header value.
    ///
    /// # Errors
    /// [`CredentialsError`] when the scheme is not `Digest`, the syntax is broken, a known
    /// parameter is repeated or a mandatory one is missing.
    pub fn parse(value: &str) -> Result<DigestCredentials, CredentialsError> {
        let mut cursor = Cursor::new(value);
        cursor.skip_ws();
        let scheme = cursor.token();
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(CredentialsError::NotDigest);
        }
        if !cursor.skip_ws() && !cursor.at_end() {
            return Err(CredentialsError::Syntax {
                offset: cursor.offset(),
            });
        }
        let mut builder = CredentialsBuilder::default();
        loop {
            cursor.skip_ws();
            if cursor.at_end() {
                break;
            }
            if cursor.eat(',') {
                // Null list elements are allowed by the #rule (RFC 2616 §2.1).
                continue;
            }
            let name = cursor.token();
            if name.is_empty() {
                return Err(CredentialsError::Syntax {
                    offset: cursor.offset(),
                });
            }
            cursor.skip_ws();
            if !cursor.eat('=') {
                return Err(CredentialsError::Syntax {
                    offset: cursor.offset(),
                });
            }
            cursor.skip_ws();
            let param_value = if cursor.peek() == Some('"') {
                cursor.quoted_string().ok_or(CredentialsError::Syntax {
                    offset: cursor.offset(),
                })?
            } else {
                let token = cursor.token();
                if token.is_empty() {
                    return Err(CredentialsError::Syntax {
                        offset: cursor.offset(),
                    });
                }
                token.to_string()
            };
            builder.set(name, param_value)?;
            cursor.skip_ws();
            if !cursor.at_end() && !cursor.eat(',') {
                return Err(CredentialsError::Syntax {
                    offset: cursor.offset(),
                });
            }
        }
        builder.finish()
    }

    /// The algorithm requested, `None` when it is one we do not support.
    pub fn digest_algorithm(&self) -> Option<DigestAlgorithm> {
        match self.algorithm.as_deref() {
            None => Some(DigestAlgorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(DigestAlgorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(DigestAlgorithm::Sha256),
            Some(_) => None,
        }
    }
}

/// Pick, among a request's `Authorization` values, the first well-formed Digest credentials
/// for `realm` (a request may carry credentials for several realms, RFC 3261 §22.3).
pub fn credentials_for_realm<'a>(
    values: impl IntoIterator<Item = &'a str>,
    realm: &str,
) -> Option<DigestCredentials> {
    values
        .into_iter()
        .filter_map(|v| DigestCredentials::parse(v).ok())
        .find(|c| c.realm == realm)
}

#[derive(Default)]
struct CredentialsBuilder {
    creds: DigestCredentials,
    seen: [bool; 11],
}

impl CredentialsBuilder {
    const NAMES: [&'static str; 11] = [
        "username",
        "realm",
        "nonce",
        "uri",
        "response",
        "algorithm",
        "cnonce",
        "opaque",
        "qop",
        "nc",
        "userhash",
    ];

    fn set(&mut self, name: &str, value: String) -> Result<(), CredentialsError> {
        let Some(index) = Self::NAMES
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
        else {
            return Ok(());
        };
        let canonical = Self::NAMES.get(index).copied().unwrap_or("unknown");
        let seen = self
            .seen
            .get_mut(index)
            .ok_or(CredentialsError::DuplicateParam { name: canonical })?;
        if *seen {
            return Err(CredentialsError::DuplicateParam { name: canonical });
        }
        *seen = true;
        let c = &mut self.creds;
        match index {
            0 => c.username = value,
            1 => c.realm = value,
            2 => c.nonce = value,
            3 => c.uri = value,
            4 => c.response = value,
            5 => c.algorithm = Some(value),
            6 => c.cnonce = Some(value),
            7 => c.opaque = Some(value),
            8 => c.qop = Some(value),
            9 => c.nc = Some(value),
            _ => c.userhash = Some(value),
        }
        Ok(())
    }

    fn finish(self) -> Result<DigestCredentials, CredentialsError> {
        for (index, name) in Self::NAMES.iter().enumerate().take(5) {
            if !self.seen.get(index).copied().unwrap_or(false) {
                return Err(CredentialsError::MissingParam { name });
            }
        }
        Ok(self.creds)
    }
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }
    fn offset(&self) -> usize {
        self.pos
    }
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }
    fn at_end(&self) -> bool {
        self.rest().is_empty()
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.pos += expected.len_utf8();
            true
        } else {
            false
        }
    }
    /// Skips linear white space (folded lines included); true when any was skipped.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if matches!(c, ' ' | '\t' | '\r' | '\n') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.pos > start
    }
    /// RFC 3261 `token` characters.
    fn token(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
            .count();
        self.pos += len;
        rest.get(..len).unwrap_or("")
    }
    /// A quoted string starting at the opening quote; `None` when unterminated or when it
    /// contains a raw line break.
    fn quoted_string(&mut self) -> Option<String> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut out = String::new();
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += index + 1;
                    return Some(out);
                }
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    if matches!(escaped, '\r' | '\n') {
                        return None;
                    }
                    out.push(escaped);
                }
                '\r' | '\n' => return None,
                _ => out.push(c),
            }
        }
        None
    }
}

/// Quote a string for a header parameter (RFC 3261 §25.1 `quoted-string`).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// HA1 = H(username ":" realm ":" password).
pub fn ha1(algorithm: DigestAlgorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// What the `qop=auth` request-digest is computed from.
pub struct ResponseInputs<'a> {
    pub algorithm: DigestAlgorithm,
    pub ha1: &'a str,
    pub nonce: &'a str,
    pub nc: &'a str,
    pub cnonce: &'a str,
    pub qop: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
}

/// The lower-case hex `qop=auth` request-digest (RFC 2617 §3.2.2.1, RFC 7616 §3.4.1):
/// H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri)).
pub fn compute_response(inputs: &ResponseInputs<'_>) -> String {
    let ha2 = inputs
        .algorithm
        .hash_hex(format!("{}:{}", inputs.method, inputs.uri).as_bytes());
    inputs.algorithm.hash_hex(
        format!(
            "{}:{}:{}:{}:{}:{}",
            inputs.ha1, inputs.nonce, inputs.nc, inputs.cnonce, inputs.qop, ha2
        )
        .as_bytes(),
    )
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256v11> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Unpadded base64url (RFC 4648 §5).
fn base64url_encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes unpadded base64url; `None` for padding, other alphabets or a non-canonical
/// spelling (stray low bits), so one nonce has one spelling.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Maps the monotonic `Instant`s given as input to wall-clock milliseconds, which nonces
/// carry. The shell builds it once at start from `Instant::now()` and `SystemTime::now()`.
#[derive(Debug, Clone, Copy)]
pub struct ClockAnchor {
    pub instant: Instant,
    pub unix_ms: u64,
}

impl ClockAnchor {
    fn unix_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.instant).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

/// The secret keying nonce MACs. Share it between nodes (config) so that any node accepts
/// another's nonces; a random one per process also works (restart → one stale round trip).
#[derive(Clone)]
pub struct ServerSecret(pub [u8; 32]);

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

/// What the configuration knows about a user. Stored HA1 values are lower- or upper-case
/// hex of H(user:realm:password) for the server's realm.
#[derive(Clone, PartialEq, Eq)]
pub enum UserSecret {
    Password(String),
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserSecret::Password(_) => f.write_str("UserSecret::Password(..)"),
            UserSecret::Ha1 { .. } => f.write_str("UserSecret::Ha1(..)"),
        }
    }
}

/// Failed-authentication rate limiting (per source IP, IPv6 per /64; and per user).
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// This many failures for one user from one source within `window` ban that user from
    /// that source.
    pub max_failures: usize,
    /// This many failures from one source (any users) within `window` ban the whole
    /// source, trunks excepted. Higher than `max_failures`.
    pub max_source_failures: usize,
    pub window: Duration,
    pub ban: Duration,
    /// Sources with recent failures tracked at most; the least recently failing is evicted.
    pub max_tracked_sources: usize,
    /// Concurrent bans at most; when full the ban ending soonest is dropped.
    pub max_bans: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_failures: 10,
            max_source_failures: 50,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            max_tracked_sources: 10_000,
            max_bans: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub realm: String,
    /// A nonce older than this is stale.
    pub nonce_ttl: Duration,
    /// Nonces whose `nc` history is kept at most.
    pub max_tracked_nonces: usize,
    pub rate_limit: RateLimitConfig,
    /// Algorithms offered, most preferred first (RFC 8760 §2.4); credentials with another
    /// algorithm are refused. Some UAs (SIPp, older softphones) answer only the first
    /// challenge and know only MD5: operators order this list for their fleet.
    pub algorithms: Vec<DigestAlgorithm>,
}

impl AuthConfig {
    pub fn new(realm: impl Into<String>) -> Self {
        AuthConfig {
            realm: realm.into(),
            nonce_ttl: Duration::from_secs(300),
            max_tracked_nonces: 100_000,
            rate_limit: RateLimitConfig::default(),
            algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
        }
    }
}

/// Result of verifying credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The digest is right: the authenticated user name.
    Ok(String),
    /// The digest is right but the nonce cannot be used (expired, replayed, unverifiable):
    /// challenge again with `stale=true`.
    Stale,
    /// Wrong password, unknown user, unsupported parameters: challenge again (same answer
    /// in all these cases).
    Invalid,
    /// The source is banned; nothing was verified. Drop or answer 403.
    Banned { until: Instant },
}

/// A source (or one user from it) was just banned; the shell logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEvent {
    pub source: IpAddr,
    /// `Some`: only this user is banned from `source`; `None`: the whole source.
    pub user: Option<String>,
    pub until: Instant,
    pub failures: usize,
}

/// Where credentials came from, for the failure counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSource {
    pub ip: IpAddr,
    /// A configured trunk: never banned as a whole, not counted toward it.
    pub trunk: bool,
}

impl From<IpAddr> for AuthSource {
    fn from(ip: IpAddr) -> Self {
        AuthSource { ip, trunk: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub outcome: AuthOutcome,
    /// Set when this failure triggered a ban.
    pub ban: Option<BanEvent>,
}

/// Whether a source may be processed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDecision {
    Allow,
    Banned { until: Instant },
}

/// Whether a challenge follows a stale nonce (RFC 7616 §3.3 `stale=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    Fresh,
    Stale,
}

const NONCE_TIMESTAMP_LEN: usize = 8;
const NONCE_RANDOM_LEN: usize = 16;
const NONCE_ID_LEN: usize = NONCE_TIMESTAMP_LEN + NONCE_RANDOM_LEN;
const NONCE_MAC_LEN: usize = 32;
/// Nonces dated this far in the future (clock skew between nodes) are still accepted.
const MAX_FUTURE_SKEW_MS: u64 = 5_000;

/// Timestamp-first, so the map below orders nonces by age.
type NonceId = [u8; NONCE_ID_LEN];

enum NonceState {
    Fresh(NonceId),
    /// Genuine but unusable (expired, or issued before our replay history starts).
    Stale,
    /// Our shape and a plausible date, but the MAC does not verify: made with another
    /// secret (before a restart, or by a node with another secret), or forged.
    Foreign,
    /// Not of our shape at all.
    Malformed,
}

/// Issues challenges and verifies digest credentials; see the module docs.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    secret: ServerSecret,
    clock: ClockAnchor,
    rng: StdRng,
    opaque: String,
    dummy_password: String,
    /// Highest `nc` accepted per nonce.
    nonce_counts: BTreeMap<NonceId, u32>,
    /// Nonces issued at or before this time (unix ms) have no replay history: stale.
    replay_floor_ms: u64,
    limiter: FailureLimiter,
}

impl Authenticator {
    /// `clock` anchors `Instant`s to wall time; `rng` supplies nonce randomness (the shell
    /// passes `StdRng::from_os_rng()`, tests a seeded one).
    pub fn new(config: AuthConfig, secret: ServerSecret, clock: ClockAnchor, rng: StdRng) -> Self {
        // Not keyed by the secret: a client echoes the opaque of the challenge it got, and
        // after a restart (new secret) that must still match so the answer is `Stale`.
        let opaque = hex::encode(
            Sha256::digest([b"opaque:".as_slice(), config.realm.as_bytes()].concat())
                .get(..16)
                .unwrap_or_default(),
        );
        let dummy_password = hex::encode(hmac_sha256(&secret.0, &[b"dummy-password"]));
        let limiter = FailureLimiter::new(config.rate_limit.clone());
        Authenticator {
            replay_floor_ms: clock.unix_ms.saturating_sub(1),
            config,
            secret,
            clock,
            rng,
            opaque,
            dummy_password,
            nonce_counts: BTreeMap::new(),
            limiter,
        }
    }

    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Whether requests from `source` may be processed; call it before anything else
    /// (the caller skips it for trunk sources).
    pub fn check_source(&mut self, now: Instant, source: IpAddr) -> SourceDecision {
        self.limiter.check(now, source)
    }

    /// Whether `user` is banned from `source` (or the whole source is); for requests that
    /// name a user to authenticate.
    pub fn check_user(&mut self, now: Instant, source: AuthSource, user: &str) -> SourceDecision {
        if !source.trunk
            && let SourceDecision::Banned { until } = self.limiter.check(now, source.ip)
        {
            return SourceDecision::Banned { until };
        }
        self.limiter.check_user(now, source.ip, user)
    }

    /// True when some user is banned from some source: only then is [`check_user`](Self::check_user)
    /// worth the caller's parsing of the user name.
    pub fn has_user_bans(&self) -> bool {
        !self.limiter.by_user.bans.is_empty()
    }

    /// A fresh nonce.
    pub fn new_nonce(&mut self, now: Instant) -> String {
        let mut id: NonceId = [0; NONCE_ID_LEN];
        let (timestamp, random) = id.split_at_mut(NONCE_TIMESTAMP_LEN);
        timestamp.copy_from_slice(&self.clock.unix_ms(now).to_be_bytes());
        self.rng.fill_bytes(random);
        let mac = self.nonce_mac(&id);
        let mut raw = Vec::with_capacity(NONCE_ID_LEN + NONCE_MAC_LEN);
        raw.extend_from_slice(&id);
        raw.extend_from_slice(&mac);
        base64url_encode(&raw)
    }

    fn nonce_mac(&self, id: &NonceId) -> [u8; 32] {
        hmac_sha256(&self.secret.0, &[id, self.config.realm.as_bytes()])
    }

    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) values to send, one per configured
    /// algorithm in order of preference (RFC 8760 §2.4), sharing one fresh nonce.
    pub fn challenge(&mut self, now: Instant, staleness: Staleness) -> Vec<String> {
        let nonce = self.new_nonce(now);
        self.config
            .algorithms
            .iter()
            .map(|algorithm| {
                let mut value = format!(
                    "Digest realm={}, nonce=\"{nonce}\", opaque=\"{}\", algorithm={}, qop=\"auth\"",
                    quote(&self.config.realm),
                    self.opaque,
                    algorithm.as_str()
                );
                if staleness == Staleness::Stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect()
    }

    fn nonce_state(&self, now: Instant, nonce: &str) -> NonceState {
        let Some(raw) = base64url_decode(nonce) else {
            return NonceState::Malformed;
        };
        let (Some(id_bytes), Some(mac)) = (raw.get(..NONCE_ID_LEN), raw.get(NONCE_ID_LEN..)) else {
            return NonceState::Malformed;
        };
        let Ok(id) = NonceId::try_from(id_bytes) else {
            return NonceState::Malformed;
        };
        if mac.len() != NONCE_MAC_LEN {
            return NonceState::Malformed;
        }
        let issued_ms = issued_ms(&id);
        let now_ms = self.clock.unix_ms(now);
        if issued_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return NonceState::Malformed;
        }
        if !bool::from(self.nonce_mac(&id).ct_eq(mac)) {
            return NonceState::Foreign;
        }
        let ttl_ms = u64::try_from(self.config.nonce_ttl.as_millis()).unwrap_or(u64::MAX);
        if now_ms.saturating_sub(issued_ms) > ttl_ms || issued_ms <= self.replay_floor_ms {
            return NonceState::Stale;
        }
        NonceState::Fresh(id)
    }

    /// Verify `credentials` for a request with `method`, sent from `source`. `secret` is
    /// the configured secret of `credentials.username`, `None` for an unknown user (which
    /// is then handled exactly like a wrong password).
    pub fn verify(
        &mut self,
        now: Instant,
        source: impl Into<AuthSource>,
        method: &str,
        credentials: &DigestCredentials,
        secret: Option<&UserSecret>,
    ) -> Verification {
        let source = source.into();
        if let SourceDecision::Banned { until } =
            self.check_user(now, source, &credentials.username)
        {
            return Verification {
                outcome: AuthOutcome::Banned { until },
                ban: None,
            };
        }
        let digest_ok = self.digest_matches(method, credentials, secret);
        let outcome = if !digest_ok {
            AuthOutcome::Invalid
        } else {
            match self.nonce_state(now, &credentials.nonce) {
                NonceState::Fresh(id) => self.accept_nonce_count(now, id, credentials),
                NonceState::Stale | NonceState::Foreign => AuthOutcome::Stale,
                NonceState::Malformed => AuthOutcome::Invalid,
            }
        };
        let ban = if outcome == AuthOutcome::Invalid {
            self.limiter
                .record_failure(now, source, &credentials.username)
        } else {
            None
        };
        Verification { outcome, ban }
    }

    /// Constant-time check of the request-digest. Every path (unknown user, unsupported
    /// parameters) still hashes once for HA1 and once for the response.
    fn digest_matches(
        &self,
        method: &str,
        credentials: &DigestCredentials,
        secret: Option<&UserSecret>,
    ) -> bool {
        let realm = &self.config.realm;
        let mut acceptable = credentials.realm == *realm
            && credentials
                .qop
                .as_deref()
                .is_some_and(|q| q.eq_ignore_ascii_case("auth"))
            && credentials.userhash.as_deref().is_none_or(|u| u == "false")
            && credentials
                .nc
                .as_deref()
                .is_some_and(|nc| parse_nonce_count(nc).is_some())
            && credentials.cnonce.as_deref().is_some_and(|c| !c.is_empty())
            && credentials
                .opaque
                .as_deref()
                .is_none_or(|o| o == self.opaque);
        let algorithm = credentials
            .digest_algorithm()
            .filter(|a| self.config.algorithms.contains(a))
            .unwrap_or_else(|| {
                acceptable = false;
                DigestAlgorithm::Md5
            });
        let username = &credentials.username;
        let dummy_ha1 = || ha1(algorithm, username, realm, &self.dummy_password);
        let user_ha1 = match secret {
            Some(UserSecret::Password(password)) => ha1(algorithm, username, realm, password),
            Some(UserSecret::Ha1 { md5, sha256 }) => {
                let stored = match algorithm {
                    DigestAlgorithm::Md5 => md5,
                    DigestAlgorithm::Sha256 => sha256,
                };
                match stored {
                    Some(stored) => stored.to_ascii_lowercase(),
                    None => {
                        acceptable = false;
                        dummy_ha1()
                    }
                }
            }
            None => {
                acceptable = false;
                dummy_ha1()
            }
        };
        let expected = compute_response(&ResponseInputs {
            algorithm,
            ha1: &user_ha1,
            nonce: &credentials.nonce,
            nc: credentials.nc.as_deref().unwrap_or(""),
            cnonce: credentials.cnonce.as_deref().unwrap_or(""),
            qop: credentials.qop.as_deref().unwrap_or("auth"),
            method,
            uri: &credentials.uri,
        });
        let given = credentials.response.to_ascii_lowercase();
        let equal: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
        equal && acceptable
    }

    fn accept_nonce_count(
        &mut self,
        now: Instant,
        id: NonceId,
        credentials: &DigestCredentials,
    ) -> AuthOutcome {
        let Some(nc) = credentials.nc.as_deref().and_then(parse_nonce_count) else {
            return AuthOutcome::Invalid;
        };
        if let Some(last) = self.nonce_counts.get_mut(&id) {
            if nc <= *last {
                return AuthOutcome::Stale;
            }
            *last = nc;
        } else {
            self.prune_nonces(now);
            while self.nonce_counts.len() >= self.config.max_tracked_nonces.max(1) {
                let Some((oldest, _)) = self.nonce_counts.pop_first() else {
                    break;
                };
                self.replay_floor_ms = self.replay_floor_ms.max(issued_ms(&oldest));
            }
            if issued_ms(&id) <= self.replay_floor_ms {
                return AuthOutcome::Stale;
            }
            self.nonce_counts.insert(id, nc);
        }
        AuthOutcome::Ok(credentials.username.clone())
    }

    /// Forget `nc` history of nonces that are stale by age anyway.
    fn prune_nonces(&mut self, now: Instant) {
        let ttl_ms = u64::try_from(self.config.nonce_ttl.as_millis()).unwrap_or(u64::MAX);
        let cutoff = self.clock.unix_ms(now).saturating_sub(ttl_ms);
        while let Some(entry) = self.nonce_counts.first_entry() {
            if issued_ms(entry.key()) < cutoff {
                entry.remove();
            } else {
                break;
            }
        }
    }

    /// Drop expired state (nonce history, ended bans, idle failure windows). Optional:
    /// everything is also pruned lazily; call it from a periodic tick to return memory.
    pub fn housekeeping(&mut self, now: Instant) {
        self.prune_nonces(now);
        self.limiter.prune(now);
    }

    /// Number of sources currently tracked (failure windows and bans), for metrics.
    pub fn tracked_sources(&self) -> usize {
        self.limiter.by_source.tracked() + self.limiter.by_user.tracked()
    }
}

fn issued_ms(id: &NonceId) -> u64 {
    let mut timestamp = [0u8; NONCE_TIMESTAMP_LEN];
    timestamp.copy_from_slice(&id[..NONCE_TIMESTAMP_LEN]);
    u64::from_be_bytes(timestamp)
}

/// `nc` is exactly 8 hex digits (RFC 2617 §3.2.2).
fn parse_nonce_count(nc: &str) -> Option<u32> {
    if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
}

/// Rate-limit key: the IPv4 address, or the /64 of an IPv6 one (one host owns a /64).
fn source_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[derive(Debug)]
struct FailureWindow {
    failures: VecDeque<Instant>,
    /// Position in `FailureCounter::recency`.
    touch: u64,
}

/// Sliding-window failure counter and bans for one kind of key, with bounded memory.
#[derive(Debug)]
struct FailureCounter<K> {
    threshold: usize,
    windows: HashMap<K, FailureWindow>,
    /// touch counter → key, oldest first, for eviction.
    recency: BTreeMap<u64, K>,
    next_touch: u64,
    bans: HashMap<K, Instant>,
}

impl<K: std::hash::Hash + Eq + Clone> FailureCounter<K> {
    fn new(threshold: usize) -> Self {
        FailureCounter {
            threshold: threshold.max(1),
            windows: HashMap::new(),
            recency: BTreeMap::new(),
            next_touch: 0,
            bans: HashMap::new(),
        }
    }

    fn check(&mut self, now: Instant, key: &K) -> SourceDecision {
        match self.bans.get(key) {
            Some(&until) if now < until => SourceDecision::Banned { until },
            Some(_) => {
                self.bans.remove(key);
                SourceDecision::Allow
            }
            None => SourceDecision::Allow,
        }
    }

    /// Count one failure; `Some((until, failures))` when it starts a ban.
    fn record(
        &mut self,
        now: Instant,
        key: K,
        config: &RateLimitConfig,
    ) -> Option<(Instant, usize)> {
        let touch = self.next_touch;
        self.next_touch += 1;
        if !self.windows.contains_key(&key) {
            while self.windows.len() >= config.max_tracked_sources.max(1) {
                let Some((_, evicted)) = self.recency.pop_first() else {
                    break;
                };
                self.windows.remove(&evicted);
            }
        }
        let window = self
            .windows
            .entry(key.clone())
            .or_insert_with(|| FailureWindow {
                failures: VecDeque::new(),
                touch,
            });
        self.recency.remove(&window.touch);
        window.touch = touch;
        self.recency.insert(touch, key.clone());
        while window
            .failures
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= config.window)
        {
            window.failures.pop_front();
        }
        window.failures.push_back(now);
        let failures = window.failures.len();
        if failures < self.threshold {
            return None;
        }
        self.windows.remove(&key);
        self.recency.remove(&touch);
        if self.bans.len() >= config.max_bans.max(1) {
            self.bans.retain(|_, until| *until > now);
            if self.bans.len() >= config.max_bans.max(1) {
                let soonest = self
                    .bans
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.bans.remove(&k);
                }
            }
        }
        let until = now + config.ban;
        self.bans.insert(key, until);
        Some((until, failures))
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        self.bans.retain(|_, until| *until > now);
        let recency = &mut self.recency;
        self.windows.retain(|_, w| {
            let alive = w
                .failures
                .back()
                .is_some_and(|&at| now.saturating_duration_since(at) < window);
            if !alive {
                recency.remove(&w.touch);
            }
            alive
        });
    }

    fn tracked(&self) -> usize {
        self.windows.len() + self.bans.len()
    }
}

/// User names from the network are cut to this many characters in the counters' keys.
const MAX_USER_KEY_CHARS: usize = 64;

fn user_key(source: IpAddr, user: &str) -> (IpAddr, String) {
    (
        source_key(source),
        user.chars().take(MAX_USER_KEY_CHARS).collect(),
    )
}

/// Failures per source and per (source, user); see the module docs.
#[derive(Debug)]
struct FailureLimiter {
    config: RateLimitConfig,
    by_source: FailureCounter<IpAddr>,
    by_user: FailureCounter<(IpAddr, String)>,
}

impl FailureLimiter {
    fn new(config: RateLimitConfig) -> Self {
        FailureLimiter {
            by_source: FailureCounter::new(config.max_source_failures),
            by_user: FailureCounter::new(config.max_failures),
            config,
        }
    }

    fn check(&mut self, now: Instant, source: IpAddr) -> SourceDecision {
        self.by_source.check(now, &source_key(source))
    }

    fn check_user(&mut self, now: Instant, source: IpAddr, user: &str) -> SourceDecision {
        if self.by_user.bans.is_empty() {
            return SourceDecision::Allow;
        }
        self.by_user.check(now, &user_key(source, user))
    }

    fn record_failure(&mut self, now: Instant, source: AuthSource, user: &str) -> Option<BanEvent> {
        let key = user_key(source.ip, user);
        let user_ban =
            self.by_user
                .record(now, key.clone(), &self.config)
                .map(|(until, failures)| BanEvent {
                    source: key.0,
                    user: Some(key.1),
                    until,
                    failures,
                });
        if source.trunk {
            return user_ban;
        }
        let source_ban = self
            .by_source
            .record(now, source_key(source.ip), &self.config)
            .map(|(until, failures)| BanEvent {
                source: source_key(source.ip),
                user: None,
                until,
                failures,
            });
        source_ban.or(user_ban)
    }

    fn prune(&mut self, now: Instant) {
        self.by_source.prune(now, self.config.window);
        self.by_user.prune(now, self.config.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const REALM: &str = "12348.sd.cn";
    const METHOD: &str = "REGISTER";
    const URI: &str = "sip:12348.sd.cn";

    fn start() -> Instant {
        Instant::now()
    }

    fn authenticator(t0: Instant) -> Authenticator {
        authenticator_with(t0, AuthConfig::new(REALM))
    }

    fn authenticator_with(t0: Instant, config: AuthConfig) -> Authenticator {
        Authenticator::new(
            config,
            ServerSecret([7; 32]),
            ClockAnchor {
                instant: t0,
                unix_ms: 1_790_000_000_000,
            },
            StdRng::seed_from_u64(42),
        )
    }

    fn nonce_from(challenge: &str) -> String {
        let start = challenge.find("nonce=\"").map(|i| i + 7).unwrap_or(0);
        let rest = &challenge[start..];
        rest[..rest.find('"').unwrap_or(0)].to_string()
    }

    fn answer(
        nonce: &str,
        user: &str,
        password: &str,
        algorithm: DigestAlgorithm,
        nc: &str,
    ) -> DigestCredentials {
        let user_ha1 = ha1(algorithm, user, REALM, password);
        let response = compute_response(&ResponseInputs {
            algorithm,
            ha1: &user_ha1,
            nonce,
            nc,
            cnonce: "c0ffee",
            qop: "auth",
            method: METHOD,
            uri: URI,
        });
        let value = format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
             response=\"{response}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc}",
            algorithm.as_str()
        );
        DigestCredentials::parse(&value).expect("test credentials parse")
    }

    fn alice() -> UserSecret {
        UserSecret::Password("s3cret".into())
    }

    const SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

    #[test]
    fn rfc2617_md5_example_response() {
        let ha1 = ha1(
            DigestAlgorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let response = compute_response(&ResponseInputs {
            algorithm: DigestAlgorithm::Md5,
            ha1: &ha1,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc: "00000001",
            cnonce: "0a4f113b",
            qop: "auth",
            method: "GET",
            uri: "/dir/index.html",
        });
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        let ha1 = ha1(
            DigestAlgorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let response = compute_response(&ResponseInputs {
            algorithm: DigestAlgorithm::Sha256,
            ha1: &ha1,
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            nc: "00000001",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            qop: "auth",
            method: "GET",
            uri: "/dir/index.html",
        });
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key "Jefe"; ours takes 32-byte keys, so pad
        // it with zeros, which HMAC does anyway for short keys.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn base64url_round_trips_and_rejects_noncanonical() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url_encode(&data);
            assert_eq!(base64url_decode(&text), Some(data));
        }
        assert_eq!(base64url_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url_encode(b"fo"), "Zm8");
        assert_eq!(base64url_decode("Zm9"), None, "stray low bits");
        assert_eq!(base64url_decode("Zm8="), None, "padding is not ours");
        assert_eq!(base64url_decode("A"), None);
    }

    #[test]
    fn parses_credentials_in_any_order_with_escapes_and_unknown_params() {
        let creds = DigestCredentials::parse(
            "digest  nc=00000001,foo=\"bar, baz\" , Realm=\"a\\\"b\",username=\"al\\\\ice\",\
             nonce=\"n\",\r\n\turi=\"sip:x\",response=\"ABCDEF\",qop=auth,cnonce=\"c\",\
             opaque=\"o\",algorithm=SHA-256,,",
        )
        .expect("parses");
        assert_eq!(creds.username, "al\\ice");
        assert_eq!(creds.realm, "a\"b");
        assert_eq!(creds.uri, "sip:x");
        assert_eq!(creds.nc.as_deref(), Some("00000001"));
        assert_eq!(creds.qop.as_deref(), Some("auth"));
        assert_eq!(creds.opaque.as_deref(), Some("o"));
        assert_eq!(creds.digest_algorithm(), Some(DigestAlgorithm::Sha256));
    }

    #[test]
    fn rejects_duplicate_missing_and_malformed_params() {
        let base = "username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"";
        assert!(DigestCredentials::parse(&format!("Digest {base}")).is_ok());
        assert_eq!(
            DigestCredentials::parse(&format!("Digest {base}, realm=\"r2\"")),
            Err(CredentialsError::DuplicateParam { name: "realm" })
        );
        assert_eq!(
            DigestCredentials::parse("Digest username=\"a\", realm=\"r\""),
            Err(CredentialsError::MissingParam { name: "nonce" })
        );
        assert_eq!(
            DigestCredentials::parse(&format!("Basic {base}")),
            Err(CredentialsError::NotDigest)
        );
        assert_eq!(
            DigestCredentials::parse("Digestusername=\"a\""),
            Err(CredentialsError::NotDigest)
        );
        for broken in [
            "Digest username=\"a",
            "Digest username",
            "Digest username=",
            "Digest username=\"a\" realm=\"r\"",
            "Digest =\"a\"",
        ] {
            assert!(
                matches!(
                    DigestCredentials::parse(broken),
                    Err(CredentialsError::Syntax { .. })
                ),
                "{broken:?} must be a syntax error"
            );
        }
    }

    #[test]
    fn parser_never_panics_on_random_input() {
        let mut rng = StdRng::seed_from_u64(0x12348);
        let alphabet = b"Digest usernamrlcoq=\",\\ \t\r\n\x00\xff\xe4\xb8\xad";
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = rng.random_range(0..80);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        alphabet[rng.random_range(0..alphabet.len())]
                    } else {
                        rng.random()
                    }
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if DigestCredentials::parse(&text).is_ok() {
                parsed += 1;
            }
            let _ = DigestCredentials::parse(&format!(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response={text}"
            ));
            let _ = base64url_decode(&text);
        }
        assert!(parsed < 20_000);
    }

    #[test]
    fn challenge_offers_sha256_then_md5_with_one_nonce() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let values = auth.challenge(t0, Staleness::Fresh);
        assert_eq!(values.len(), 2);
        assert!(values[0].contains("algorithm=SHA-256"), "{}", values[0]);
        assert!(values[1].contains("algorithm=MD5"), "{}", values[1]);
        for v in &values {
            assert!(v.starts_with("Digest realm=\"12348.sd.cn\""), "{v}");
            assert!(v.contains("qop=\"auth\""));
            assert!(v.contains("opaque=\""));
            assert!(!v.contains("stale"));
        }
        assert_eq!(nonce_from(&values[0]), nonce_from(&values[1]));
        let stale = auth.challenge(t0, Staleness::Stale);
        assert!(stale.iter().all(|v| v.ends_with(", stale=true")));
        assert_ne!(nonce_from(&stale[0]), nonce_from(&values[0]), "fresh nonce");
    }

    #[test]
    fn correct_password_is_accepted_with_md5_and_sha256() {
        let t0 = start();
        let mut auth = authenticator(t0);
        for algorithm in [DigestAlgorithm::Md5, DigestAlgorithm::Sha256] {
            let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
            let creds = answer(&nonce, "alice", "s3cret", algorithm, "00000001");
            let result = auth.verify(t0, SOURCE, METHOD, &creds, Some(&alice()));
            assert_eq!(result.outcome, AuthOutcome::Ok("alice".into()));
        }
    }

    #[test]
    fn stored_ha1_is_accepted_and_missing_ha1_for_algorithm_is_invalid() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let secret = UserSecret::Ha1 {
            md5: Some(ha1(DigestAlgorithm::Md5, "bob", REALM, "pw").to_uppercase()),
            sha256: None,
        };
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let md5 = answer(&nonce, "bob", "pw", DigestAlgorithm::Md5, "00000001");
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &md5, Some(&secret)).outcome,
            AuthOutcome::Ok("bob".into())
        );
        let sha = answer(&nonce, "bob", "pw", DigestAlgorithm::Sha256, "00000002");
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &sha, Some(&secret)).outcome,
            AuthOutcome::Invalid
        );
    }

    #[test]
    fn forged_nonce_is_never_accepted() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let genuine = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        // Same structure, one bit of the random part flipped: the MAC no longer matches.
        let mut raw = base64url_decode(&genuine).expect("our nonce decodes");
        raw[10] ^= 1;
        let forged = base64url_encode(&raw);
        let mut other_secret = authenticator_with(t0, AuthConfig::new(REALM));
        other_secret.secret = ServerSecret([8; 32]);
        let foreign = other_secret.new_nonce(t0);
        // Our shape, MAC wrong (forged, or from before a restart): a correct digest is
        // only ever `Stale`, never `Ok`.
        for nonce in [forged.as_str(), foreign.as_str()] {
            let creds = answer(nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
            let result = auth.verify(t0, SOURCE, METHOD, &creds, Some(&alice()));
            assert_eq!(result.outcome, AuthOutcome::Stale, "nonce {nonce}");
            let wrong = answer(nonce, "alice", "guess", DigestAlgorithm::Md5, "00000001");
            let result = auth.verify(t0, SOURCE, METHOD, &wrong, Some(&alice()));
            assert_eq!(result.outcome, AuthOutcome::Invalid, "nonce {nonce}");
        }
        // Not our shape at all, or dated in the future: invalid even with the password.
        let mut future = base64url_decode(&genuine).expect("decodes");
        future[..8].copy_from_slice(&(1_790_000_000_000u64 + 3_600_000).to_be_bytes());
        let future = base64url_encode(&future);
        for nonce in ["dcd98b7102dd2f0e8b11d0f600bfb0c093", future.as_str()] {
            let creds = answer(nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
            let result = auth.verify(t0, SOURCE, METHOD, &creds, Some(&alice()));
            assert_eq!(result.outcome, AuthOutcome::Invalid, "nonce {nonce}");
        }
    }

    /// After a restart the secret is new: the phone's next REGISTER answers the old
    /// challenge (old nonce, old opaque) correctly. That is `Stale`, not a failure, however
    /// many phones behind one NAT do it (issue 14: 11 of them banned the NAT).
    #[test]
    fn correct_answer_to_a_challenge_from_before_a_restart_is_stale_and_never_counted() {
        let t0 = start();
        let mut before = authenticator(t0);
        let challenge = before.challenge(t0, Staleness::Fresh)[0].clone();
        let nonce = nonce_from(&challenge);
        let opaque_at = challenge.find("opaque=\"").expect("opaque") + 8;
        let opaque = challenge[opaque_at..]
            .split('"')
            .next()
            .expect("opaque value")
            .to_string();
        let t1 = t0 + Duration::from_secs(20);
        let mut after = Authenticator::new(
            AuthConfig::new(REALM),
            ServerSecret([9; 32]),
            ClockAnchor {
                instant: t1,
                unix_ms: 1_790_000_020_000,
            },
            StdRng::seed_from_u64(3),
        );
        for phone in 0..11 {
            let mut creds = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
            creds.opaque = Some(opaque.clone());
            let result = after.verify(t1, SOURCE, METHOD, &creds, Some(&alice()));
            assert_eq!(result.outcome, AuthOutcome::Stale, "phone {phone}");
            assert_eq!(result.ban, None);
        }
        assert_eq!(after.check_source(t1, SOURCE), SourceDecision::Allow);
        assert_eq!(after.tracked_sources(), 0, "nothing was counted");
        // The fresh nonce of the stale challenge then authenticates.
        let fresh = nonce_from(&after.challenge(t1, Staleness::Stale)[0]);
        let mut creds = answer(&fresh, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        creds.opaque = Some(opaque);
        assert_eq!(
            after
                .verify(t1, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Ok("alice".into())
        );
    }

    #[test]
    fn expired_nonce_is_stale() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let creds = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        let late = t0 + Duration::from_secs(301);
        assert_eq!(
            auth.verify(late, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Stale
        );
        let in_time = t0 + Duration::from_secs(299);
        assert_eq!(
            auth.verify(in_time, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Ok("alice".into())
        );
    }

    #[test]
    fn nonce_count_replay_is_rejected_and_increasing_nc_accepted() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let first = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        let ok = AuthOutcome::Ok("alice".into());
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &first, Some(&alice()))
                .outcome,
            ok
        );
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &first, Some(&alice()))
                .outcome,
            AuthOutcome::Stale,
            "same nc replayed"
        );
        let second = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000002");
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &second, Some(&alice()))
                .outcome,
            ok
        );
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &first, Some(&alice()))
                .outcome,
            AuthOutcome::Stale,
            "lower nc replayed"
        );
    }

    #[test]
    fn evicting_nonce_history_makes_older_nonces_stale_not_replayable() {
        let t0 = start();
        let mut config = AuthConfig::new(REALM);
        config.max_tracked_nonces = 2;
        let mut auth = authenticator_with(t0, config);
        let ok = AuthOutcome::Ok("alice".into());
        let mut used = Vec::new();
        for i in 0..3u64 {
            let now = t0 + Duration::from_millis(10 * (i + 1));
            let nonce = nonce_from(&auth.challenge(now, Staleness::Fresh)[0]);
            let creds = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
            assert_eq!(
                auth.verify(now, SOURCE, METHOD, &creds, Some(&alice()))
                    .outcome,
                ok
            );
            used.push(creds);
        }
        // The first nonce's history was evicted: replaying it must not succeed.
        let now = t0 + Duration::from_millis(100);
        assert_eq!(
            auth.verify(now, SOURCE, METHOD, &used[0], Some(&alice()))
                .outcome,
            AuthOutcome::Stale
        );
    }

    #[test]
    fn nonce_issued_before_restart_is_stale() {
        let t0 = start();
        let mut before = authenticator(t0);
        let nonce = nonce_from(&before.challenge(t0, Staleness::Fresh)[0]);
        let t1 = t0 + Duration::from_secs(5);
        let mut after = Authenticator::new(
            AuthConfig::new(REALM),
            ServerSecret([7; 32]),
            ClockAnchor {
                instant: t1,
                unix_ms: 1_790_000_005_000,
            },
            StdRng::seed_from_u64(1),
        );
        let creds = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        assert_eq!(
            after
                .verify(t1, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Stale
        );
    }

    #[test]
    fn unknown_user_gets_the_same_outcome_as_wrong_password() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let wrong_password = answer(&nonce, "alice", "guess", DigestAlgorithm::Md5, "00000001");
        let unknown_user = answer(&nonce, "mallory", "guess", DigestAlgorithm::Md5, "00000001");
        let a = auth.verify(t0, SOURCE, METHOD, &wrong_password, Some(&alice()));
        let b = auth.verify(t0, SOURCE, METHOD, &unknown_user, None);
        assert_eq!(a, b);
        assert_eq!(a.outcome, AuthOutcome::Invalid);
        // An unknown user cannot get in even by guessing the dummy password scheme.
        let dummy = auth.dummy_password.clone();
        let with_dummy = answer(&nonce, "mallory", &dummy, DigestAlgorithm::Md5, "00000002");
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &with_dummy, None).outcome,
            AuthOutcome::Invalid
        );
    }

    #[test]
    fn legacy_response_without_qop_is_invalid() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let user_ha1 = ha1(DigestAlgorithm::Md5, "alice", REALM, "s3cret");
        let ha2 = DigestAlgorithm::Md5.hash_hex(format!("{METHOD}:{URI}").as_bytes());
        let response =
            DigestAlgorithm::Md5.hash_hex(format!("{user_ha1}:{nonce}:{ha2}").as_bytes());
        let creds = DigestCredentials::parse(&format!(
            "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
             response=\"{response}\""
        ))
        .expect("parses");
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Invalid
        );
    }

    #[test]
    fn wrong_opaque_or_realm_is_invalid() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let mut creds = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        creds.opaque = Some("nope".into());
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Invalid
        );
        let mut creds = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000002");
        creds.realm = "other".into();
        assert_eq!(
            auth.verify(t0, SOURCE, METHOD, &creds, Some(&alice()))
                .outcome,
            AuthOutcome::Invalid
        );
    }

    #[test]
    fn source_is_banned_after_max_failures_and_released_after_ban_time() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let wrong = answer(&nonce, "alice", "guess", DigestAlgorithm::Md5, "00000001");
        let mut now = t0;
        for i in 0..9 {
            now = t0 + Duration::from_secs(i * 5);
            let result = auth.verify(now, SOURCE, METHOD, &wrong, Some(&alice()));
            assert_eq!(result.outcome, AuthOutcome::Invalid);
            assert_eq!(result.ban, None, "failure {i} must not ban yet");
        }
        let tenth = auth.verify(now, SOURCE, METHOD, &wrong, Some(&alice()));
        let until = now + Duration::from_secs(300);
        assert_eq!(
            tenth.ban,
            Some(BanEvent {
                source: SOURCE,
                user: Some("alice".into()),
                until,
                failures: 10
            })
        );
        assert_eq!(
            auth.check_user(now, SOURCE.into(), "alice"),
            SourceDecision::Banned { until }
        );
        // Only alice is banned from there: the source and its other users are not.
        assert_eq!(auth.check_source(now, SOURCE), SourceDecision::Allow);
        assert_eq!(
            auth.check_user(now, SOURCE.into(), "bob"),
            SourceDecision::Allow
        );
        // A correct password does not lift the ban.
        let nonce = nonce_from(&auth.challenge(now, Staleness::Fresh)[0]);
        let right = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        let during = until - Duration::from_millis(1);
        assert_eq!(
            auth.verify(during, SOURCE, METHOD, &right, Some(&alice()))
                .outcome,
            AuthOutcome::Banned { until }
        );
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(
            auth.check_user(during, other.into(), "alice"),
            SourceDecision::Allow
        );
        let after = until;
        assert_eq!(
            auth.check_user(after, SOURCE.into(), "alice"),
            SourceDecision::Allow
        );
        let nonce = nonce_from(&auth.challenge(after, Staleness::Fresh)[0]);
        let right = answer(&nonce, "alice", "s3cret", DigestAlgorithm::Md5, "00000001");
        assert_eq!(
            auth.verify(after, SOURCE, METHOD, &right, Some(&alice()))
                .outcome,
            AuthOutcome::Ok("alice".into())
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_ban() {
        let t0 = start();
        let mut auth = authenticator(t0);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let wrong = answer(&nonce, "alice", "guess", DigestAlgorithm::Md5, "00000001");
        for i in 0..30 {
            let now = t0 + Duration::from_secs(i * 7);
            let result = auth.verify(now, SOURCE, METHOD, &wrong, Some(&alice()));
            assert_eq!(result.ban, None, "failure {i}: only ~9 per 60 s");
        }
    }

    #[test]
    fn ipv6_sources_are_limited_per_64_and_tracked_sources_are_bounded() {
        let t0 = start();
        let mut config = AuthConfig::new(REALM);
        config.rate_limit.max_failures = 2;
        config.rate_limit.max_source_failures = 2;
        config.rate_limit.max_tracked_sources = 100;
        let mut auth = authenticator_with(t0, config);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let wrong = answer(&nonce, "alice", "guess", DigestAlgorithm::Md5, "00000001");
        let a: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().expect("ip").into();
        let b: IpAddr = "2001:db8:1:2::ffff".parse::<Ipv6Addr>().expect("ip").into();
        assert_eq!(auth.verify(t0, a, METHOD, &wrong, Some(&alice())).ban, None);
        assert!(
            auth.verify(t0, b, METHOD, &wrong, Some(&alice()))
                .ban
                .is_some()
        );
        assert!(matches!(
            auth.check_source(t0, a),
            SourceDecision::Banned { .. }
        ));
        for i in 0..1_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            auth.verify(t0, ip, METHOD, &wrong, Some(&alice()));
        }
        for counter in [
            &auth.limiter.by_source.windows.len(),
            &auth.limiter.by_user.windows.len(),
        ] {
            assert!(*counter <= 100);
        }
        assert_eq!(
            auth.limiter.by_source.recency.len(),
            auth.limiter.by_source.windows.len()
        );
        assert_eq!(
            auth.limiter.by_user.recency.len(),
            auth.limiter.by_user.windows.len()
        );
        auth.housekeeping(t0 + Duration::from_secs(3600));
        assert_eq!(auth.tracked_sources(), 0);
    }

    /// A scanner rotating user names fails once per name: no user ban, but the source
    /// cap (higher than the per-user one) bans the whole source.
    #[test]
    fn rotating_user_names_hit_the_per_source_cap() {
        let t0 = start();
        let mut config = AuthConfig::new(REALM);
        config.rate_limit.max_failures = 3;
        config.rate_limit.max_source_failures = 8;
        let mut auth = authenticator_with(t0, config);
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let mut bans = Vec::new();
        for n in 0..8 {
            let wrong = answer(
                &nonce,
                &format!("u{n}"),
                "guess",
                DigestAlgorithm::Md5,
                "00000001",
            );
            bans.extend(auth.verify(t0, SOURCE, METHOD, &wrong, None).ban);
        }
        assert_eq!(bans.len(), 1, "{bans:?}");
        assert_eq!(bans[0].user, None, "the whole source");
        assert_eq!(bans[0].failures, 8);
        assert!(matches!(
            auth.check_source(t0, SOURCE),
            SourceDecision::Banned { .. }
        ));
    }

    /// The same from a trunk: users get banned from it one by one, the trunk never is.
    #[test]
    fn a_trunk_source_is_never_banned_as_a_whole() {
        let t0 = start();
        let mut config = AuthConfig::new(REALM);
        config.rate_limit.max_failures = 3;
        config.rate_limit.max_source_failures = 8;
        let mut auth = authenticator_with(t0, config);
        let trunk = AuthSource {
            ip: SOURCE,
            trunk: true,
        };
        let nonce = nonce_from(&auth.challenge(t0, Staleness::Fresh)[0]);
        let mut bans = Vec::new();
        for n in 0..40 {
            let user = format!("u{}", n % 10);
            let wrong = answer(&nonce, &user, "guess", DigestAlgorithm::Md5, "00000001");
            bans.extend(auth.verify(t0, trunk, METHOD, &wrong, None).ban);
        }
        assert_eq!(bans.len(), 10, "one per user: {bans:?}");
        assert!(bans.iter().all(|b| b.user.is_some()));
        assert_eq!(auth.check_source(t0, SOURCE), SourceDecision::Allow);
        assert!(matches!(
            auth.check_user(t0, trunk, "u1"),
            SourceDecision::Banned { .. }
        ));
        assert_eq!(auth.check_user(t0, trunk, "alice"), SourceDecision::Allow);
    }

    #[test]
    fn credentials_for_realm_picks_the_matching_value() {
        let values = [
            "Digest username=\"a\", realm=\"other\", nonce=\"n\", uri=\"u\", response=\"r\"",
            "garbage",
            "Digest username=\"b\", realm=\"12348.sd.cn\", nonce=\"n\", uri=\"u\", response=\"r\"",
        ];
        let creds = credentials_for_realm(values, REALM).expect("found");
        assert_eq!(creds.username, "b");
    }
}
