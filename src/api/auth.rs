//! Console / API authentication: users from `[[users]]`, argon2 or plain (dev)
//! passwords, server-side sessions (HttpOnly SameSite=Strict cookie, 12 h) with a
//! CSRF token for cookie-authenticated writes, bearer tokens (SHA-256 stored), and
//! throttles instead of lockouts (429 with Retry-After): 5 failed logins for one user
//! from one source, or 20 from one source for any users, within 15 minutes; 10 unknown
//! bearer tokens from one source. A user is never locked out by failures from other
//! addresses. Unknown users cost the same argon2 verification as known ones, so the
//! answer time does not tell which user names exist.
//!
//! Clients can never act as [`Role::System`]: roles come only from the configuration,
//! whose role type has no such variant.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::Serialize;

use crate::window_limiter::SlidingWindow;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::{Role as ConfigRole, UserConfig};
use crate::ticket::{Actor, Role, UnitId, UserId};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "hotline_session";
/// Session lifetime.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins allowed for one user from one source within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// Failed logins allowed from one source, whatever the users, within the window
/// (password spraying).
pub const MAX_SOURCE_FAILURES: usize = 20;
/// Unknown bearer tokens allowed from one source within the window.
pub const MAX_BEARER_FAILURES: usize = 10;
/// Window of the throttles.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone)]
enum Secret {
    Plain(String),
    Argon2(String),
}

/// A configured user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub unit: UnitId,
    /// The queue agent (softphone extension) this user works as, if any.
    pub agent: Option<String>,
    secret: Secret,
    api_token_sha256: Option<String>,
}

impl User {
    /// The actor the ticket core sees.
    #[must_use]
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: UserId(self.id.clone()),
            roles: self.roles.clone(),
            unit: self.unit.clone(),
        }
    }

    /// Whether the user holds `role`.
    #[must_use]
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the user works as queue agent `agent`: its `[[users]] agent`, or a user
    /// whose id is the agent's id.
    #[must_use]
    pub fn is_agent(&self, agent: &str) -> bool {
        self.agent.as_deref().unwrap_or(&self.id) == agent
    }

    /// Supervisors and province administrators oversee every agent and call.
    #[must_use]
    pub fn oversees_calls(&self) -> bool {
        self.has(Role::Supervisor) || self.has(Role::ProvinceAdmin)
    }

    fn password_matches(&self, password: &str, verifications: &AtomicU64) -> bool {
        match &self.secret {
            Secret::Plain(expected) => bool::from(expected.as_bytes().ct_eq(password.as_bytes())),
            Secret::Argon2(phc) => argon2_verify(phc, password, verifications),
        }
    }
}

/// Verify `password` against an argon2 PHC string (counted: tests check that unknown
/// users cost a verification too).
fn argon2_verify(phc: &str, password: &str, verifications: &AtomicU64) -> bool {
    verifications.fetch_add(1, Ordering::Relaxed);
    PasswordHash::new(phc).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

fn ticket_role(role: ConfigRole) -> Role {
    match role {
        ConfigRole::Agent => Role::Agent,
        ConfigRole::Dispatcher => Role::Dispatcher,
        ConfigRole::UnitHandler => Role::UnitHandler,
        ConfigRole::UnitHead => Role::UnitHead,
        ConfigRole::Reviewer => Role::Reviewer,
        ConfigRole::Supervisor => Role::Supervisor,
        ConfigRole::CallbackStaff => Role::CallbackStaff,
        ConfigRole::ProvinceAdmin => Role::ProvinceAdmin,
    }
}

#[derive(Debug)]
struct Session {
    user_id: String,
    csrf: String,
    expires: Instant,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (indistinguishable on purpose).
    #[error("bad credentials")]
    BadCredentials,
    /// Too many failures for this user from this source, or from this source;
    /// retry after this many seconds.
    #[error("too many failed logins")]
    Throttled { retry_after_secs: u64 },
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("unknown token")]
    Unknown,
    /// Too many unknown tokens from this source; retry after this many seconds.
    #[error("too many unknown tokens")]
    Throttled { retry_after_secs: u64 },
}

/// Users, sessions and the throttles. In memory: sessions do not survive a restart
/// (users log in again).
#[derive(Debug)]
pub struct Auth {
    users: HashMap<String, User>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Failure times by throttle key (`user:<id>@<source>`, `source:<ip>`,
    /// `bearer:<ip>`).
    failures: SlidingWindow,
    /// An argon2 hash verified (result ignored) for unknown user names, with the
    /// parameters the real users' hashes have: the answer takes as long as for a
    /// known user. `None` without argon2 users (then nothing slow is compared).
    dummy_hash: Option<String>,
    argon2_verifications: AtomicU64,
    /// `[http] secure_cookies` and `trusted_proxies`.
    transport: TransportPolicy,
}

/// What the server knows of the transport in front of it (`[http]`).
#[derive(Debug, Clone, Default)]
pub struct TransportPolicy {
    /// The session cookie is always `Secure` (HTTPS terminated in front).
    pub secure_cookies: bool,
    /// Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpAddr>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            users: HashMap::new(),
            sessions: Mutex::new(HashMap::new()),
            failures: SlidingWindow::new(FAILURE_WINDOW),
            dummy_hash: None,
            argon2_verifications: AtomicU64::new(0),
            transport: TransportPolicy::default(),
        }
    }
}

impl Auth {
    /// The users of `config` with its HTTP transport policy (secure cookies, proxies).
    #[must_use]
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self::from_config(&config.users).with_transport(TransportPolicy {
            secure_cookies: config.http.secure_cookies,
            trusted_proxies: config.http.trusted_proxies.clone(),
        })
    }
}

impl Auth {
    /// From the `[[users]]` section (already validated).
    #[must_use]
    pub fn from_config(users: &[UserConfig]) -> Self {
        let users: HashMap<String, User> = users
            .iter()
            .filter_map(|u| {
                let secret = match (&u.password_hash, &u.password) {
                    (Some(hash), _) => Secret::Argon2(hash.clone()),
                    (None, Some(plain)) => Secret::Plain(plain.clone()),
                    (None, None) => return None,
                };
                let mut roles: Vec<Role> = u.roles.iter().map(|r| ticket_role(*r)).collect();
                roles.dedup();
                Some((
                    u.id.clone(),
                    User {
                        id: u.id.clone(),
                        name: u.name.clone(),
                        roles,
                        unit: UnitId::new(u.unit.clone()),
                        agent: u.agent.clone(),
                        secret,
                        api_token_sha256: u.api_token.clone(),
                    },
                ))
            })
            .collect();
        let dummy_hash = users.values().find_map(|u: &User| match &u.secret {
            Secret::Argon2(phc) => Some(phc.clone()),
            Secret::Plain(_) => None,
        });
        Self {
            users,
            dummy_hash,
            ..Self::default()
        }
    }

    /// With the `[http]` transport policy (cookie `Secure`, trusted proxies).
    #[must_use]
    pub fn with_transport(mut self, transport: TransportPolicy) -> Self {
        self.transport = transport;
        self
    }

    /// The client's address: the peer's, or for a trusted proxy the address it
    /// appended last to `X-Forwarded-For` (the one it saw).
    #[must_use]
    pub fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = peer_ip(parts)?;
        if !self.transport.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        Some(forwarded.unwrap_or(peer))
    }

    /// Whether the session cookie gets `Secure`: configured, the request came over the
    /// built-in HTTPS listener, or through a trusted proxy that says it was HTTPS.
    #[must_use]
    pub fn secure_cookie(&self, parts: &Parts) -> bool {
        self.transport.secure_cookies
            || parts
                .extensions
                .get::<crate::server::http::OverTls>()
                .is_some()
            || (peer_ip(parts).is_some_and(|p| self.transport.trusted_proxies.contains(&p))
                && parts
                    .headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
    }

    /// Argon2 verifications run so far (tests: unknown users cost one too).
    #[must_use]
    pub fn argon2_verifications(&self) -> u64 {
        self.argon2_verifications.load(Ordering::Relaxed)
    }

    /// The user with this id.
    #[must_use]
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    /// The name of whoever works as queue agent (softphone extension) `agent`: the
    /// names of all such users, by user id, joined with `／` when several share it;
    /// `None` when nobody does.
    #[must_use]
    pub fn agent_name(&self, agent: &str) -> Option<String> {
        let mut users: Vec<&User> = self
            .users
            .values()
            .filter(|u| u.agent.as_deref() == Some(agent))
            .collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        (!names.is_empty()).then(|| names.join("／"))
    }

    /// The user who works as queue agent `agent` (the first by user id when several
    /// share it).
    #[must_use]
    pub fn user_of_agent(&self, agent: &str) -> Option<&User> {
        self.users
            .values()
            .filter(|u| u.agent.as_deref() == Some(agent))
            .min_by(|a, b| a.id.cmp(&b.id))
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The longest wait any of `keys` (with their limits) imposes.
    fn throttled(&self, keys: &[(&str, usize)], now: Instant) -> Option<u64> {
        keys.iter()
            .filter_map(|(key, max)| self.failures.retry_after(key, *max, now))
            .max()
    }

    fn record_failure(&self, keys: &[&str], now: Instant) {
        for key in keys {
            self.failures.record(key, now);
        }
    }

    /// Check credentials; on success open a session: `(session id, csrf token, user)`.
    /// Failures are throttled per user and source (and per source), never per user
    /// alone: wrong passwords from one address do not lock the user out elsewhere.
    /// Slow (argon2): call it off the async executor.
    ///
    /// # Errors
    /// [`LoginError::BadCredentials`] for an unknown user or a wrong password (the
    /// same answer, after the same work), [`LoginError::Throttled`] after too many
    /// failures.
    pub fn login(
        &self,
        user_id: &str,
        password: &str,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<(String, String, User), LoginError> {
        let source_text = source.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let pair_key = format!("user:{user_id}@{source_text}");
        let source_key = format!("source:{source_text}");
        let limits = [
            (pair_key.as_str(), MAX_FAILURES),
            (source_key.as_str(), MAX_SOURCE_FAILURES),
        ];
        if let Some(retry_after_secs) = self.throttled(&limits, now) {
            return Err(LoginError::Throttled { retry_after_secs });
        }
        let found = self.users.get(user_id);
        let ok = match (found, &self.dummy_hash) {
            (Some(user), _) => user.password_matches(password, &self.argon2_verifications),
            // The same work as for a known user, so the time says nothing.
            (None, Some(dummy)) => {
                let _ = argon2_verify(dummy, password, &self.argon2_verifications);
                false
            }
            (None, None) => {
                let _ = bool::from(b"no-such-user".ct_eq(password.as_bytes()));
                false
            }
        };
        let Some(user) = found.filter(|_| ok) else {
            self.record_failure(&[&pair_key, &source_key], now);
            return Err(LoginError::BadCredentials);
        };
        self.failures.forget(&pair_key);
        let session_id = random_hex();
        let csrf = random_hex();
        let mut sessions = Self::lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            session_id.clone(),
            Session {
                user_id: user.id.clone(),
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((session_id, csrf, user.clone()))
    }

    /// End a session.
    pub fn logout(&self, session_id: &str) {
        Self::lock(&self.sessions).remove(session_id);
    }

    /// The user and CSRF token of a live session.
    fn session(&self, session_id: &str, now: Instant) -> Option<(User, String)> {
        let sessions = Self::lock(&self.sessions);
        let session = sessions.get(session_id).filter(|s| s.expires > now)?;
        let user = self.users.get(&session.user_id)?.clone();
        Some((user, session.csrf.clone()))
    }

    /// The user of a bearer token sent from `source`; unknown tokens are throttled per
    /// source (a source over the limit is refused even with a good token, so guessing
    /// cannot go on in between).
    ///
    /// # Errors
    /// [`BearerError::Unknown`], or [`BearerError::Throttled`] after too many.
    pub fn bearer_from(
        &self,
        token: &str,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<User, BearerError> {
        let key = format!(
            "bearer:{}",
            source.map_or_else(|| "-".to_owned(), |ip| ip.to_string())
        );
        if let Some(retry_after_secs) = self.throttled(&[(&key, MAX_BEARER_FAILURES)], now) {
            return Err(BearerError::Throttled { retry_after_secs });
        }
        self.bearer(token).ok_or_else(|| {
            self.record_failure(&[&key], now);
            BearerError::Unknown
        })
    }

    /// The user whose `api_token` is the SHA-256 of `token`.
    fn bearer(&self, token: &str) -> Option<User> {
        let digest = sha256_hex(token);
        self.users
            .values()
            .find(|u| {
                u.api_token_sha256
                    .as_ref()
                    .is_some_and(|t| bool::from(t.as_bytes().ct_eq(digest.as_bytes())))
            })
            .cloned()
    }
}

/// The session id in a `Cookie` header.
#[must_use]
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The peer's address, when the server recorded it (see [`Auth::client_ip`] for the
/// client's).
fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The authenticated user of a request. Cookie-authenticated writes must carry the
/// session's CSRF token in `X-CSRF-Token`; bearer clients need none.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = &state.auth;
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiError::unauthenticated)?;
            return match auth.bearer_from(token, auth.client_ip(parts), Instant::now()) {
                Ok(user) => Ok(CurrentUser(user)),
                Err(BearerError::Unknown) => Err(ApiError::unauthenticated()),
                Err(BearerError::Throttled { retry_after_secs }) => {
                    state
                        .metrics
                        .api_throttled(crate::metrics::ApiThrottle::Bearer);
                    Err(ApiError::too_many_attempts(
                        "too many unknown tokens from this address",
                        retry_after_secs,
                    ))
                }
            };
        }
        let session_id = session_cookie(parts).ok_or_else(ApiError::unauthenticated)?;
        let (user, csrf) = auth
            .session(&session_id, Instant::now())
            .ok_or_else(ApiError::unauthenticated)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(csrf.as_bytes())) {
                return Err(ApiError::csrf());
            }
        }
        Ok(CurrentUser(user))
    }
}

/// A user as shown to clients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub unit: String,
    pub unit_name: String,
    /// The queue agent the user works as (agent workspace), if any.
    pub agent: Option<String>,
    /// The server's clock now (shifted by `--now` / `HOTLINE_FAKE_NOW` in demos): the
    /// console dates its default periods and remaining times by it, not by the
    /// browser's.
    #[schema(value_type = String, format = DateTime)]
    pub server_time: chrono::DateTime<chrono::FixedOffset>,
}

impl UserView {
    #[must_use]
    pub fn of(
        user: &User,
        unit_name: Option<&str>,
        server_time: chrono::DateTime<chrono::FixedOffset>,
    ) -> Self {
        Self {
            id: user.id.clone(),
            name: user.name.clone(),
            roles: user.roles.clone(),
            unit: user.unit.as_str().to_owned(),
            unit_name: unit_name.unwrap_or_default().to_owned(),
            agent: user.agent.clone(),
            server_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::from_config(&[UserConfig {
            id: "agent".into(),
            name: "A".into(),
            password: Some("demo-agent".into()),
            password_hash: None,
            roles: vec![ConfigRole::Agent],
            unit: "jinan".into(),
            api_token: Some(sha256_hex("tok")),
            agent: None,
        }])
    }

    #[test]
    fn unknown_user_and_wrong_password_answer_alike() {
        let a = auth();
        let now = Instant::now();
        assert_eq!(
            a.login("agent", "nope", None, now).err(),
            Some(LoginError::BadCredentials)
        );
        assert_eq!(
            a.login("ghost", "nope", None, now).err(),
            Some(LoginError::BadCredentials)
        );
        assert!(a.login("agent", "demo-agent", None, now).is_ok());
    }

    #[test]
    fn fifth_failure_from_a_source_throttles_the_user_there_only() {
        let a = auth();
        let now = Instant::now();
        let attacker: IpAddr = [10, 0, 0, 9].into();
        let office: IpAddr = [10, 0, 0, 10].into();
        for _ in 0..MAX_FAILURES {
            assert!(a.login("agent", "bad", Some(attacker), now).is_err());
        }
        match a.login("agent", "demo-agent", Some(attacker), now) {
            Err(LoginError::Throttled { retry_after_secs }) => {
                assert!((1..=900).contains(&retry_after_secs));
            }
            other => panic!("{other:?}"),
        }
        // The user, from anywhere else, is not locked out.
        assert!(a.login("agent", "demo-agent", Some(office), now).is_ok());
        // After the window the attacker's address may try again.
        assert!(
            a.login("agent", "demo-agent", Some(attacker), now + FAILURE_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn failures_for_many_users_from_one_source_throttle_that_source() {
        let a = auth();
        let now = Instant::now();
        let ip: IpAddr = [10, 0, 0, 9].into();
        for i in 0..MAX_SOURCE_FAILURES {
            let _ = a.login(&format!("guess{i}"), "x", Some(ip), now);
        }
        assert!(matches!(
            a.login("agent", "demo-agent", Some(ip), now),
            Err(LoginError::Throttled { .. })
        ));
        assert!(a.login("agent", "demo-agent", None, now).is_ok());
    }

    #[test]
    fn unknown_users_cost_the_same_argon2_verification_as_known_ones() {
        let salt =
            argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("salt");
        let hash = argon2::password_hash::PasswordHasher::hash_password(
            &argon2::Argon2::default(),
            b"s3cret",
            &salt,
        )
        .expect("hash")
        .to_string();
        let a = Auth::from_config(&[UserConfig {
            id: "supervisor".into(),
            name: "S".into(),
            password: None,
            password_hash: Some(hash),
            roles: vec![ConfigRole::Supervisor],
            unit: "jinan".into(),
            api_token: None,
            agent: None,
        }]);
        let now = Instant::now();
        assert!(a.login("supervisor", "wrong", None, now).is_err());
        assert_eq!(
            a.argon2_verifications(),
            1,
            "a known user: one verification"
        );
        assert_eq!(
            a.login("nobody", "wrong", None, now).err(),
            Some(LoginError::BadCredentials)
        );
        assert_eq!(
            a.argon2_verifications(),
            2,
            "an unknown user costs one verification too"
        );
    }

    #[test]
    fn unknown_bearer_tokens_are_throttled_per_source() {
        let a = auth();
        let now = Instant::now();
        let guesser: IpAddr = [10, 0, 0, 9].into();
        for i in 0..MAX_BEARER_FAILURES {
            assert_eq!(
                a.bearer_from(&format!("guess{i}"), Some(guesser), now)
                    .err(),
                Some(BearerError::Unknown)
            );
        }
        assert!(matches!(
            a.bearer_from("tok", Some(guesser), now),
            Err(BearerError::Throttled { .. })
        ));
        assert!(
            a.bearer_from("tok", Some([10, 0, 0, 10].into()), now)
                .is_ok()
        );
        assert!(
            a.bearer_from("tok", Some(guesser), now + FAILURE_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn argon2_hash_verifies() {
        // Hash of "s3cret" (argon2id, m=19456, t=2, p=1).
        let salt =
            argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("salt");
        let hash = argon2::password_hash::PasswordHasher::hash_password(
            &argon2::Argon2::default(),
            b"s3cret",
            &salt,
        )
        .expect("hash")
        .to_string();
        let a = Auth::from_config(&[UserConfig {
            id: "u".into(),
            name: "U".into(),
            password: None,
            password_hash: Some(hash),
            roles: vec![ConfigRole::Supervisor],
            unit: "jinan".into(),
            api_token: None,
            agent: None,
        }]);
        let now = Instant::now();
        assert!(a.login("u", "s3cret", None, now).is_ok());
        assert!(a.login("u", "s3cret!", None, now).is_err());
    }

    #[test]
    fn bearer_token_is_matched_by_its_hash() {
        let a = auth();
        assert_eq!(a.bearer("tok").map(|u| u.id), Some("agent".into()));
        assert!(a.bearer("other").is_none());
    }
}
