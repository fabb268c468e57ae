//! Console / API authentication: users from `[[users]]`, argon2 or plain (dev)
//! passwords, server-side sessions (HttpOnly SameSite=Strict cookie, 12 h) with a
//! CSRF token for cookie-authenticated writes, bearer tokens (SHA-256 stored), and a
//! login lockout (5 failures per user or per source within 15 minutes → 429).
//!
//! Clients can never act as [`Role::System`]: roles come only from the configuration,
//! whose role type has no such variant.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::Serialize;
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
/// Failed logins allowed per user or source within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// Window of the login lockout.
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

    fn password_matches(&self, password: &str) -> bool {
        match &self.secret {
            Secret::Plain(expected) => bool::from(expected.as_bytes().ct_eq(password.as_bytes())),
            Secret::Argon2(phc) => PasswordHash::new(phc).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            }),
        }
    }
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
    /// Too many failures; retry after this many seconds.
    #[error("too many failed logins")]
    LockedOut { retry_after_secs: u64 },
}

/// Users, sessions and the login lockout. In memory: sessions do not survive a
/// restart (users log in again).
#[derive(Debug, Default)]
pub struct Auth {
    users: HashMap<String, User>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Auth {
    /// From the `[[users]]` section (already validated).
    #[must_use]
    pub fn from_config(users: &[UserConfig]) -> Self {
        let users = users
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
        Self {
            users,
            ..Self::default()
        }
    }

    /// The user with this id.
    #[must_use]
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds until the oldest failure inside the window leaves it, when `key` is
    /// locked out.
    fn locked_for(
        failures: &mut HashMap<String, VecDeque<Instant>>,
        key: &str,
        now: Instant,
    ) -> Option<u64> {
        let list = failures.get_mut(key)?;
        while list
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FAILURE_WINDOW)
        {
            list.pop_front();
        }
        if list.len() >= MAX_FAILURES {
            let oldest = *list.front()?;
            let left = FAILURE_WINDOW.saturating_sub(now.saturating_duration_since(oldest));
            Some(left.as_secs().max(1))
        } else {
            None
        }
    }

    /// Check credentials; on success open a session: `(session id, csrf token, user)`.
    ///
    /// # Errors
    /// [`LoginError::BadCredentials`] for an unknown user or a wrong password (the
    /// same answer), [`LoginError::LockedOut`] after too many failures.
    pub fn login(
        &self,
        user_id: &str,
        password: &str,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<(String, String, User), LoginError> {
        let user_key = format!("user:{user_id}");
        let source_key = source.map(|ip| format!("source:{ip}"));
        {
            let mut failures = Self::lock(&self.failures);
            if failures.len() > 100_000 {
                failures.retain(|_, list| {
                    list.back()
                        .is_some_and(|t| now.saturating_duration_since(*t) < FAILURE_WINDOW)
                });
            }
            let locked = [Some(&user_key), source_key.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|key| Self::locked_for(&mut failures, key, now))
                .max();
            if let Some(retry_after_secs) = locked {
                return Err(LoginError::LockedOut { retry_after_secs });
            }
        }
        let found = self.users.get(user_id);
        // Unknown users still cost a comparison, so timing says little.
        let ok = match found {
            Some(user) => user.password_matches(password),
            None => {
                let _ = bool::from(b"no-such-user".ct_eq(password.as_bytes()));
                false
            }
        };
        let Some(user) = found.filter(|_| ok) else {
            let mut failures = Self::lock(&self.failures);
            for key in [Some(user_key), source_key].into_iter().flatten() {
                failures.entry(key).or_default().push_back(now);
            }
            return Err(LoginError::BadCredentials);
        };
        Self::lock(&self.failures).remove(&user_key);
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

/// The client's address, when the server recorded it.
#[must_use]
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
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
        let auth = &state.orders.auth;
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(ApiError::unauthenticated)?;
            return auth
                .bearer(token)
                .map(CurrentUser)
                .ok_or_else(ApiError::unauthenticated);
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
#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub unit: String,
    pub unit_name: String,
    /// The queue agent the user works as (agent workspace), if any.
    pub agent: Option<String>,
}

impl UserView {
    #[must_use]
    pub fn of(user: &User, unit_name: Option<&str>) -> Self {
        Self {
            id: user.id.clone(),
            name: user.name.clone(),
            roles: user.roles.clone(),
            unit: user.unit.as_str().to_owned(),
            unit_name: unit_name.unwrap_or_default().to_owned(),
            agent: user.agent.clone(),
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
    fn fifth_failure_locks_the_user_even_with_the_right_password() {
        let a = auth();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(a.login("agent", "bad", None, now).is_err());
        }
        match a.login("agent", "demo-agent", None, now) {
            Err(LoginError::LockedOut { retry_after_secs }) => {
                assert!((1..=900).contains(&retry_after_secs));
            }
            other => panic!("{other:?}"),
        }
        // After the window the user may log in again.
        assert!(
            a.login("agent", "demo-agent", None, now + FAILURE_WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn failures_from_one_source_lock_that_source() {
        let a = auth();
        let now = Instant::now();
        let ip: IpAddr = [10, 0, 0, 9].into();
        for i in 0..MAX_FAILURES {
            let _ = a.login(&format!("guess{i}"), "x", Some(ip), now);
        }
        assert!(matches!(
            a.login("agent", "demo-agent", Some(ip), now),
            Err(LoginError::LockedOut { .. })
        ));
        assert!(a.login("agent", "demo-agent", None, now).is_ok());
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
