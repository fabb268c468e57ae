//! Registrar (RFC 3261 §10.3), sans-IO: bindings from an address-of-record to contacts.
//!
//! The shell authenticates the REGISTER first (see [`crate::sip::auth`]), then calls
//! [`Registrar::handle_register`] with the authenticated user name. The registrar answers
//! with the Contact values for the 200 (or a typed error that knows its status) and lists
//! the binding changes so the shell can persist them; [`Registrar::expire`] and
//! [`Registrar::poll_timeout`] drive expiry in the caller's time.
//!
//! Decisions worth knowing:
//! - A request is applied all-or-nothing: every contact is checked (400, 423, 500) before
//!   any binding changes.
//! - A malformed `expires` or `q` contact parameter is a 400 rather than silently ignored.
//! - Contacts match an existing binding when their URIs are equal per a simplified
//!   RFC 3261 §19.1.4 (scheme, user, password, host case-insensitively, port, and the
//!   `transport`/`user`/`ttl`/`method`/`maddr` parameters), or when both carry the same
//!   `+sip.instance` and `reg-id` (RFC 5626 §6), so a rebooted phone replaces its binding.
//! - Same Call-ID with a CSeq not above the stored one aborts the request with 500, as
//!   §10.3 steps 6–7 require ("the update MUST be aborted and the request fails").
//! - At most `max_bindings_per_aor` bindings: when a registration would exceed it, the
//!   bindings expiring soonest that this request did not touch are evicted (reported as
//!   removed). A single request carrying more contacts than the limit is refused (403).

use crate::sip::message::{Contacts, NameAddr, ParseError, Request, Uri};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An address-of-record, `user@domain`, with the registrar's canonical domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor(String);

impl Aor {
    pub fn new(user: &str, domain: &str) -> Self {
        Aor(format!("{user}@{}", domain.to_ascii_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The user part (before the last `@`).
    pub fn user(&self) -> &str {
        self.0.rsplit_once('@').map_or(self.0.as_str(), |(u, _)| u)
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
}

/// Where a request actually came from (after NAT): used to reach the contact over the
/// same flow (TCP connection reuse, RFC 3581 symmetric response routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceInfo {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// A `q` value in thousandths (RFC 3261 §20.10 `qvalue`, 0..=1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q(u16);

impl Q {
    pub fn thousandths(self) -> u16 {
        self.0
    }

    /// `"0" ["." 0*3DIGIT]` or `"1" ["." 0*3("0")]`.
    pub fn parse(text: &str) -> Option<Q> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut thousandths: u16 = 0;
        for (i, b) in frac.bytes().enumerate() {
            let place = [100, 10, 1].get(i).copied()?;
            thousandths += u16::from(b - b'0') * place;
        }
        match int {
            "0" => Some(Q(thousandths)),
            "1" if thousandths == 0 => Some(Q(1000)),
            _ => None,
        }
    }
}

impl fmt::Display for Q {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1000 {
            return f.write_str("1");
        }
        let text = format!("0.{:03}", self.0);
        f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// One registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub aor: Aor,
    pub contact_uri: Uri,
    pub expires_at: Instant,
    pub q: Option<Q>,
    pub call_id: String,
    pub cseq: u32,
    /// The address and transport the REGISTER came from.
    pub source: SourceInfo,
    /// RFC 5626 `+sip.instance` as received (quotes included).
    pub instance: Option<String>,
    /// RFC 5626 `reg-id`.
    pub reg_id: Option<u32>,
    pub user_agent: Option<String>,
}

impl Binding {
    /// Seconds left, rounded down; 0 once expired.
    pub fn remaining(&self, now: Instant) -> u32 {
        let secs = self.expires_at.saturating_duration_since(now).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// The Contact header value a 200 to REGISTER lists for this binding.
    pub fn contact_value(&self, now: Instant) -> String {
        let mut value = format!("<{}>;expires={}", self.contact_uri.raw, self.remaining(now));
        if let Some(q) = self.q {
            value.push_str(&format!(";q={q}"));
        }
        if let Some(instance) = &self.instance {
            value.push_str(&format!(";+sip.instance={instance}"));
        }
        if let Some(reg_id) = self.reg_id {
            value.push_str(&format!(";reg-id={reg_id}"));
        }
        value
    }

    fn matches(&self, uri: &Uri, instance: Option<&str>, reg_id: Option<u32>) -> bool {
        let same_instance = matches!(
            (self.instance.as_deref(), self.reg_id, instance, reg_id),
            (Some(a), Some(ra), Some(b), Some(rb)) if a == b && ra == rb
        );
        same_instance || uris_equivalent(&self.contact_uri, uri)
    }
}

/// Why a binding went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// Expires 0 or `Contact: *`.
    Unregistered,
    /// Its time ran out.
    Expired,
    /// Evicted to stay within the per-AOR limit.
    Evicted,
}

impl RemovalReason {
    /// The reason as a word, for log lines.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalReason::Unregistered => "unregistered",
            RemovalReason::Expired => "expired",
            RemovalReason::Evicted => "evicted",
        }
    }
}

/// What changed, for the shell to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    Added(Binding),
    /// Same contact registered again (new expiry, CSeq, maybe Call-ID or source).
    Refreshed(Binding),
    Removed(Binding, RemovalReason),
}

/// A successful REGISTER: answer 200 OK with one `Contact` header per value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    pub status: u16,
    pub reason: &'static str,
    /// Every current binding of the AOR with its remaining expiry.
    pub contacts: Vec<String>,
    pub changes: Vec<BindingChange>,
}

/// A REGISTER that must be refused; [`RegistrarError::status`] says with what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrarError {
    #[error("request is not a REGISTER")]
    NotRegister,
    #[error("REGISTER is malformed: {0}")]
    Malformed(#[from] ParseError),
    #[error("Contact * needs Expires: 0 and no other Contact")]
    InvalidWildcard,
    #[error("a Contact has a malformed {param} parameter")]
    BadContactParam { param: &'static str },
    #[error("To is not an address-of-record of this domain")]
    NotOurAor,
    #[error("authenticated user may not register this address-of-record")]
    Forbidden,
    #[error("expiry below the minimum of {min_expires} s")]
    IntervalTooBrief { min_expires: u32 },
    #[error("CSeq is not above the one stored for this Call-ID")]
    OutOfOrder,
    #[error("more than {max} contacts in one registration")]
    TooManyContacts { max: usize },
}

impl RegistrarError {
    pub fn status(&self) -> u16 {
        match self {
            RegistrarError::NotRegister => 405,
            RegistrarError::Malformed(_)
            | RegistrarError::InvalidWildcard
            | RegistrarError::BadContactParam { .. } => 400,
            RegistrarError::NotOurAor => 404,
            RegistrarError::Forbidden | RegistrarError::TooManyContacts { .. } => 403,
            RegistrarError::IntervalTooBrief { .. } => 423,
            RegistrarError::OutOfOrder => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            RegistrarError::NotRegister => "Method Not Allowed",
            RegistrarError::Malformed(_) | RegistrarError::BadContactParam { .. } => "Bad Request",
            RegistrarError::InvalidWildcard => "Invalid Wildcard Contact",
            RegistrarError::NotOurAor => "Not Found",
            RegistrarError::Forbidden => "Forbidden",
            RegistrarError::TooManyContacts { .. } => "Too Many Contacts",
            RegistrarError::IntervalTooBrief { .. } => "Interval Too Brief",
            RegistrarError::OutOfOrder => "Out Of Order Request",
        }
    }

    /// Headers the response must carry: `Min-Expires` for 423 (RFC 3261 §10.3 step 7).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            RegistrarError::IntervalTooBrief { min_expires } => {
                vec![("Min-Expires", min_expires.to_string())]
            }
            _ => Vec::new(),
        }
    }
}

/// Which To hosts are addresses-of-record of ours, besides the canonical domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// Any host (phones configured with the server's IP as their domain); the AOR is
    /// always stored under the canonical domain.
    Any,
    /// Only the canonical domain and these aliases (case-insensitive).
    Listed(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Canonical domain of AORs (`user@domain`).
    pub domain: String,
    pub hosts: HostPolicy,
    /// Used when neither the contact nor the request gives an expiry.
    pub default_expires: u32,
    /// Shorter non-zero expiries get 423.
    pub min_expires: u32,
    /// Longer expiries are shortened to this.
    pub max_expires: u32,
    pub max_bindings_per_aor: usize,
}

impl RegistrarConfig {
    pub fn new(domain: impl Into<String>) -> Self {
        RegistrarConfig {
            domain: domain.into(),
            hosts: HostPolicy::Any,
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_bindings_per_aor: 10,
        }
    }
}

/// One contact of the request, checked and with its granted expiry.
struct ContactUpdate {
    uri: Uri,
    expires: u32,
    q: Option<Q>,
    instance: Option<String>,
    reg_id: Option<u32>,
}

/// The bindings table; see the module docs.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    bindings: HashMap<Aor, Vec<Binding>>,
}

impl Registrar {
    pub fn new(config: RegistrarConfig) -> Self {
        Registrar {
            config,
            bindings: HashMap::new(),
        }
    }

    /// The AOR of a user of this registrar.
    pub fn aor_for(&self, user: &str) -> Aor {
        Aor::new(user, &self.config.domain)
    }

    /// Apply an authenticated REGISTER (RFC 3261 §10.3 steps 4–8).
    ///
    /// # Errors
    /// A [`RegistrarError`] whose `status()`, `reason()` and `headers()` make the answer;
    /// nothing has changed then.
    pub fn handle_register(
        &mut self,
        now: Instant,
        request: &Request,
        source: SourceInfo,
        authenticated_user: &str,
    ) -> Result<RegisterOutcome, RegistrarError> {
        if request.method != crate::sip::message::Method::Register {
            return Err(RegistrarError::NotRegister);
        }
        let headers = &request.headers;
        let to = headers.to()?;
        let aor = self.aor_of(&to)?;
        if percent_decode(to.uri.user.as_deref().unwrap_or("")) != authenticated_user {
            return Err(RegistrarError::Forbidden);
        }
        let call_id = headers.call_id()?.to_string();
        let cseq = headers.cseq()?.seq;
        let expires_header = headers.expires()?;
        let user_agent = headers.get("User-Agent").map(str::to_string);
        // Everything fallible in the request is read before the table is touched.
        let contacts = headers.contacts()?;
        let contact_lines = headers.count("Contact");

        let mut changes = Vec::new();
        let mut current = self.bindings.remove(&aor).unwrap_or_default();
        let (alive, expired): (Vec<_>, Vec<_>) =
            current.drain(..).partition(|b| b.expires_at > now);
        current = alive;
        changes.extend(
            expired
                .into_iter()
                .map(|b| BindingChange::Removed(b, RemovalReason::Expired)),
        );

        let result = match contacts {
            None => Ok(Vec::new()),
            Some(Contacts::Star) => {
                if expires_header != Some(0) || contact_lines > 1 {
                    Err(RegistrarError::InvalidWildcard)
                } else {
                    remove_all(&mut current, &call_id, cseq)
                }
            }
            Some(Contacts::List(list)) => {
                self.contact_updates(&list, expires_header)
                    .and_then(|updates| {
                        self.apply(
                            now,
                            &mut current,
                            &aor,
                            updates,
                            &call_id,
                            cseq,
                            source,
                            user_agent,
                        )
                    })
            }
        };
        match result {
            Ok(applied) => {
                changes.extend(applied);
                let contacts = current.iter().map(|b| b.contact_value(now)).collect();
                if !current.is_empty() {
                    self.bindings.insert(aor, current);
                }
                Ok(RegisterOutcome {
                    status: 200,
                    reason: "OK",
                    contacts,
                    changes,
                })
            }
            Err(error) => {
                // Put the table back as it was (expired ones stay for `expire`).
                let mut restored = current;
                for change in changes {
                    if let BindingChange::Removed(b, RemovalReason::Expired) = change {
                        restored.push(b);
                    }
                }
                if !restored.is_empty() {
                    self.bindings.insert(aor, restored);
                }
                Err(error)
            }
        }
    }

    fn aor_of(&self, to: &NameAddr) -> Result<Aor, RegistrarError> {
        let uri = &to.uri;
        if uri.scheme != "sip" && uri.scheme != "sips" {
            return Err(RegistrarError::NotOurAor);
        }
        let Some(user) = uri.user.as_deref().filter(|u| !u.is_empty()) else {
            return Err(RegistrarError::NotOurAor);
        };
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        let ours = host.eq_ignore_ascii_case(&self.config.domain)
            || match &self.config.hosts {
                HostPolicy::Any => true,
                HostPolicy::Listed(aliases) => {
                    aliases.iter().any(|alias| alias.eq_ignore_ascii_case(host))
                }
            };
        if !ours {
            return Err(RegistrarError::NotOurAor);
        }
        Ok(Aor::new(&percent_decode(user), &self.config.domain))
    }

    /// Checks every contact and computes its expiry (§10.3 step 7) before anything changes.
    fn contact_updates(
        &self,
        list: &[NameAddr],
        expires_header: Option<u32>,
    ) -> Result<Vec<ContactUpdate>, RegistrarError> {
        if list.len() > self.config.max_bindings_per_aor {
            return Err(RegistrarError::TooManyContacts {
                max: self.config.max_bindings_per_aor,
            });
        }
        let mut updates = Vec::with_capacity(list.len());
        for contact in list {
            let requested = match contact.param("expires") {
                Some(Some(text)) => parse_delta_seconds(text)
                    .ok_or(RegistrarError::BadContactParam { param: "expires" })?,
                Some(None) => return Err(RegistrarError::BadContactParam { param: "expires" }),
                None => expires_header.unwrap_or(self.config.default_expires),
            };
            if requested != 0 && requested < self.config.min_expires {
                return Err(RegistrarError::IntervalTooBrief {
                    min_expires: self.config.min_expires,
                });
            }
            let q = match contact.param("q") {
                Some(Some(text)) => {
                    Some(Q::parse(text).ok_or(RegistrarError::BadContactParam { param: "q" })?)
                }
                Some(None) => return Err(RegistrarError::BadContactParam { param: "q" }),
                None => None,
            };
            let reg_id = match contact.param("reg-id") {
                Some(Some(text)) => Some(
                    text.parse::<u32>()
                        .map_err(|_| RegistrarError::BadContactParam { param: "reg-id" })?,
                ),
                Some(None) => return Err(RegistrarError::BadContactParam { param: "reg-id" }),
                None => None,
            };
            updates.push(ContactUpdate {
                uri: contact.uri.clone(),
                expires: requested.min(self.config.max_expires),
                q,
                instance: contact.param("+sip.instance").flatten().map(str::to_string),
                reg_id,
            });
        }
        Ok(updates)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        now: Instant,
        current: &mut Vec<Binding>,
        aor: &Aor,
        updates: Vec<ContactUpdate>,
        call_id: &str,
        cseq: u32,
        source: SourceInfo,
        user_agent: Option<String>,
    ) -> Result<Vec<BindingChange>, RegistrarError> {
        // Abort before any change if one matching binding is out of order.
        for update in &updates {
            let out_of_order = current.iter().any(|b| {
                b.matches(&update.uri, update.instance.as_deref(), update.reg_id)
                    && b.call_id == call_id
                    && cseq <= b.cseq
            });
            if out_of_order {
                return Err(RegistrarError::OutOfOrder);
            }
        }
        let mut changes = Vec::new();
        let mut touched: Vec<usize> = Vec::new();
        for update in updates {
            let existing = current
                .iter()
                .position(|b| b.matches(&update.uri, update.instance.as_deref(), update.reg_id));
            let binding = Binding {
                aor: aor.clone(),
                contact_uri: update.uri,
                expires_at: now + Duration::from_secs(u64::from(update.expires)),
                q: update.q,
                call_id: call_id.to_string(),
                cseq,
                source,
                instance: update.instance,
                reg_id: update.reg_id,
                user_agent: user_agent.clone(),
            };
            match (existing, update.expires) {
                (Some(index), 0) => {
                    let removed = current.remove(index);
                    touched.retain(|&t| t != index);
                    for t in touched.iter_mut() {
                        if *t > index {
                            *t -= 1;
                        }
                    }
                    changes.push(BindingChange::Removed(removed, RemovalReason::Unregistered));
                }
                (None, 0) => {}
                (Some(index), _) => {
                    if let Some(slot) = current.get_mut(index) {
                        *slot = binding.clone();
                        changes.push(BindingChange::Refreshed(binding));
                        if !touched.contains(&index) {
                            touched.push(index);
                        }
                    }
                }
                (None, _) => {
                    current.push(binding.clone());
                    touched.push(current.len() - 1);
                    changes.push(BindingChange::Added(binding));
                }
            }
        }
        // Stay within the per-AOR limit by evicting the untouched bindings expiring first.
        while current.len() > self.config.max_bindings_per_aor {
            let victim = current
                .iter()
                .enumerate()
                .filter(|(i, _)| !touched.contains(i))
                .min_by_key(|(_, b)| b.expires_at)
                .map(|(i, _)| i);
            let Some(index) = victim else {
                break;
            };
            let removed = current.remove(index);
            for t in touched.iter_mut() {
                if *t > index {
                    *t -= 1;
                }
            }
            changes.push(BindingChange::Removed(removed, RemovalReason::Evicted));
        }
        Ok(changes)
    }

    /// Remove and return the bindings whose time is up.
    pub fn expire(&mut self, now: Instant) -> Vec<Binding> {
        let mut expired = Vec::new();
        self.bindings.retain(|_, list| {
            let (alive, dead): (Vec<_>, Vec<_>) = list.drain(..).partition(|b| b.expires_at > now);
            *list = alive;
            expired.extend(dead);
            !list.is_empty()
        });
        expired
    }

    /// Remove the binding of `aor` to `contact` (its phone vanished: a call leg to it
    /// failed without an answer). Returns it, `None` when there was none.
    pub fn remove(&mut self, aor: &Aor, contact: &Uri) -> Option<Binding> {
        let list = self.bindings.get_mut(aor)?;
        let index = list.iter().position(|b| b.contact_uri.raw == contact.raw)?;
        let removed = list.remove(index);
        if list.is_empty() {
            self.bindings.remove(aor);
        }
        Some(removed)
    }

    /// When [`Registrar::expire`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings
            .values()
            .flat_map(|list| list.iter().map(|b| b.expires_at))
            .min()
    }

    /// Current bindings of an AOR (possibly including ones expired since the last
    /// [`Registrar::expire`]; check `expires_at` when that matters).
    pub fn lookup(&self, aor: &Aor) -> &[Binding] {
        self.bindings.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Number of bindings, for metrics.
    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Load bindings saved in the database at start-up. Matching duplicates keep the last
    /// one; the per-AOR limit applies (latest-expiring kept).
    pub fn restore(&mut self, bindings: impl IntoIterator<Item = Binding>) {
        for binding in bindings {
            let list = self.bindings.entry(binding.aor.clone()).or_default();
            list.retain(|b| {
                !b.matches(
                    &binding.contact_uri,
                    binding.instance.as_deref(),
                    binding.reg_id,
                )
            });
            list.push(binding);
            while list.len() > self.config.max_bindings_per_aor {
                let soonest = list
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| b.expires_at)
                    .map(|(i, _)| i);
                match soonest {
                    Some(index) => {
                        list.remove(index);
                    }
                    None => break,
                }
            }
        }
    }
}

/// `Contact: *` with Expires 0 (§10.3 step 6): removes every binding, unless one with the
/// same Call-ID has a CSeq not below the request's, which aborts the whole request.
fn remove_all(
    current: &mut Vec<Binding>,
    call_id: &str,
    cseq: u32,
) -> Result<Vec<BindingChange>, RegistrarError> {
    if current
        .iter()
        .any(|b| b.call_id == call_id && cseq <= b.cseq)
    {
        return Err(RegistrarError::OutOfOrder);
    }
    Ok(current
        .drain(..)
        .map(|b| BindingChange::Removed(b, RemovalReason::Unregistered))
        .collect())
}

/// `delta-seconds`, saturating at 2^32-1 as RFC 3261 §25.1 allows for large values.
fn parse_delta_seconds(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = text.trim_start_matches('0');
    if trimmed.len() > 10 {
        return Some(u32::MAX);
    }
    Some(
        trimmed
            .parse::<u64>()
            .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX)),
    )
}

/// Decode `%XX` escapes (RFC 3261 §19.1.2); invalid escapes are kept literally.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let decoded = if b == b'%' {
            bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        } else {
            None
        };
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Simplified RFC 3261 §19.1.4 URI equivalence for contact matching.
fn uris_equivalent(a: &Uri, b: &Uri) -> bool {
    const SIGNIFICANT: [&str; 5] = ["transport", "user", "ttl", "method", "maddr"];
    fn param<'u>(uri: &'u Uri, name: &str) -> Option<Option<&'u str>> {
        uri.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    let same_params = SIGNIFICANT
        .iter()
        .all(|name| match (param(a, name), param(b, name)) {
            (None, None) => true,
            (Some(x), Some(y)) => match (x, y) {
                (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
                (x, y) => x == y,
            },
            _ => false,
        });
    a.scheme.eq_ignore_ascii_case(&b.scheme)
        && a.user.as_deref().map(percent_decode) == b.user.as_deref().map(percent_decode)
        && a.password == b.password
        && a.host.eq_ignore_ascii_case(&b.host)
        && a.port == b.port
        && same_params
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn uri(user: &str, host: &str, port: Option<u16>, params: &[(&str, Option<&str>)]) -> Uri {
        let mut raw = format!("sip:{user}@{host}");
        if let Some(port) = port {
            raw.push_str(&format!(":{port}"));
        }
        for (k, v) in params {
            raw.push(';');
            raw.push_str(k);
            if let Some(v) = v {
                raw.push('=');
                raw.push_str(v);
            }
        }
        Uri {
            scheme: "sip".into(),
            user: Some(user.into()),
            password: None,
            host: host.into(),
            port,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
            headers: Vec::new(),
            raw,
        }
    }

    fn source() -> SourceInfo {
        SourceInfo {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 40000),
            transport: Transport::Udp,
        }
    }

    fn binding(aor: &Aor, contact: Uri, expires_at: Instant) -> Binding {
        Binding {
            aor: aor.clone(),
            contact_uri: contact,
            expires_at,
            q: None,
            call_id: "c1".into(),
            cseq: 1,
            source: source(),
            instance: None,
            reg_id: None,
            user_agent: None,
        }
    }

    #[test]
    fn q_values_parse_per_grammar() {
        assert_eq!(Q::parse("1"), Some(Q(1000)));
        assert_eq!(Q::parse("1.000"), Some(Q(1000)));
        assert_eq!(Q::parse("0.5"), Some(Q(500)));
        assert_eq!(Q::parse("0.05"), Some(Q(50)));
        assert_eq!(Q::parse("0.123"), Some(Q(123)));
        assert_eq!(Q::parse("0"), Some(Q(0)));
        for bad in ["", "1.5", "2", "0.1234", "-0.5", ".5", "0.a", "1.001"] {
            assert_eq!(Q::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Q(500).to_string(), "0.5");
        assert_eq!(Q(50).to_string(), "0.05");
        assert_eq!(Q(1000).to_string(), "1");
        assert_eq!(Q(0).to_string(), "0");
    }

    #[test]
    fn delta_seconds_saturate_and_reject_garbage() {
        assert_eq!(parse_delta_seconds("3600"), Some(3600));
        assert_eq!(parse_delta_seconds("0"), Some(0));
        assert_eq!(parse_delta_seconds("000"), Some(0));
        assert_eq!(parse_delta_seconds("4294967296"), Some(u32::MAX));
        assert_eq!(
            parse_delta_seconds("99999999999999999999999"),
            Some(u32::MAX)
        );
        for bad in ["", "-1", "1h", " 5", "0x10"] {
            assert_eq!(parse_delta_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("al%69ce"), "alice");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%E5%BC%A0"), "张");
    }

    #[test]
    fn uri_equivalence_follows_the_significant_parts() {
        let a = uri(
            "alice",
            "10.0.0.1",
            Some(5060),
            &[("transport", Some("tcp"))],
        );
        let same = uri(
            "al%69ce",
            "10.0.0.1",
            Some(5060),
            &[("Transport", Some("TCP"))],
        );
        assert!(uris_equivalent(&a, &same));
        let other_port = uri("alice", "10.0.0.1", None, &[("transport", Some("tcp"))]);
        assert!(!uris_equivalent(&a, &other_port), "absent port is not 5060");
        let no_transport = uri("alice", "10.0.0.1", Some(5060), &[]);
        assert!(!uris_equivalent(&a, &no_transport));
        let extra_ignored = uri(
            "alice",
            "10.0.0.1",
            Some(5060),
            &[("transport", Some("tcp")), ("ob", None)],
        );
        assert!(uris_equivalent(&a, &extra_ignored));
        let other_user = uri(
            "Alice",
            "10.0.0.1",
            Some(5060),
            &[("transport", Some("tcp"))],
        );
        assert!(
            !uris_equivalent(&a, &other_user),
            "user part is case-sensitive"
        );
    }

    #[test]
    fn restore_then_expire_in_simulated_time() {
        let t0 = Instant::now();
        let mut registrar = Registrar::new(RegistrarConfig::new("12348.sd.cn"));
        let aor = registrar.aor_for("1001");
        let first = binding(
            &aor,
            uri("1001", "10.0.0.1", None, &[]),
            t0 + Duration::from_secs(60),
        );
        let second = binding(
            &aor,
            uri("1001", "10.0.0.2", None, &[]),
            t0 + Duration::from_secs(120),
        );
        registrar.restore([first.clone(), second.clone()]);
        assert_eq!(registrar.lookup(&aor).len(), 2);
        assert_eq!(registrar.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(registrar.expire(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(registrar.expire(t0 + Duration::from_secs(60)), vec![first]);
        assert_eq!(
            registrar.poll_timeout(),
            Some(t0 + Duration::from_secs(120))
        );
        assert_eq!(
            registrar.expire(t0 + Duration::from_secs(600)),
            vec![second]
        );
        assert_eq!(registrar.poll_timeout(), None);
        assert!(registrar.lookup(&aor).is_empty());
        assert_eq!(registrar.binding_count(), 0);
    }

    #[test]
    fn a_vanished_phone_s_binding_is_removed_and_the_others_stay() {
        let t0 = Instant::now();
        let mut registrar = Registrar::new(RegistrarConfig::new("12348.sd.cn"));
        let aor = registrar.aor_for("1001");
        let desk = binding(
            &aor,
            uri("1001", "10.0.0.1", None, &[]),
            t0 + Duration::from_secs(60),
        );
        let soft = binding(
            &aor,
            uri("1001", "10.0.0.2", None, &[]),
            t0 + Duration::from_secs(60),
        );
        registrar.restore([desk.clone(), soft.clone()]);
        assert_eq!(
            registrar.remove(&aor, &desk.contact_uri),
            Some(desk.clone())
        );
        assert_eq!(registrar.lookup(&aor), std::slice::from_ref(&soft));
        assert_eq!(registrar.remove(&aor, &desk.contact_uri), None);
        assert_eq!(registrar.remove(&aor, &soft.contact_uri), Some(soft));
        assert_eq!(registrar.binding_count(), 0);
        assert_eq!(registrar.poll_timeout(), None);
    }

    #[test]
    fn restore_respects_the_per_aor_limit_and_deduplicates() {
        let t0 = Instant::now();
        let mut config = RegistrarConfig::new("12348.sd.cn");
        config.max_bindings_per_aor = 3;
        let mut registrar = Registrar::new(config);
        let aor = registrar.aor_for("1001");
        let saved: Vec<Binding> = (0..5u64)
            .map(|i| {
                binding(
                    &aor,
                    uri("1001", &format!("10.0.0.{i}"), None, &[]),
                    t0 + Duration::from_secs(100 + i),
                )
            })
            .collect();
        registrar.restore(saved.clone());
        registrar.restore([saved[4].clone()]);
        let kept: Vec<_> = registrar
            .lookup(&aor)
            .iter()
            .map(|b| b.contact_uri.host.clone())
            .collect();
        assert_eq!(kept, ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    }

    #[test]
    fn errors_map_to_rfc_statuses() {
        assert_eq!(RegistrarError::InvalidWildcard.status(), 400);
        assert_eq!(RegistrarError::Forbidden.status(), 403);
        assert_eq!(RegistrarError::NotOurAor.status(), 404);
        assert_eq!(RegistrarError::OutOfOrder.status(), 500);
        let brief = RegistrarError::IntervalTooBrief { min_expires: 60 };
        assert_eq!(brief.status(), 423);
        assert_eq!(brief.headers(), vec![("Min-Expires", "60".to_string())]);
    }

    // ---- Behaviour on parsed REGISTER requests ----

    use crate::sip::message::{Message, parse_message};

    const DOMAIN: &str = "12348.sd.cn";

    struct Register<'a> {
        to_user: &'a str,
        call_id: &'a str,
        cseq: u32,
        contacts: &'a [&'a str],
        expires: Option<&'a str>,
    }

    impl Register<'_> {
        fn request(&self) -> Request {
            let mut text = format!(
                "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 203.0.113.5:40000;branch=z9hG4bK{}x{}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{}@{DOMAIN}>;tag=f1\r\n\
                 To: <sip:{}@{DOMAIN}>\r\n\
                 Call-ID: {}\r\n\
                 CSeq: {} REGISTER\r\n\
                 User-Agent: test-phone/1.0\r\n",
                self.call_id, self.cseq, self.to_user, self.to_user, self.call_id, self.cseq
            );
            for contact in self.contacts {
                text.push_str(&format!("Contact: {contact}\r\n"));
            }
            if let Some(expires) = self.expires {
                text.push_str(&format!("Expires: {expires}\r\n"));
            }
            text.push_str("Content-Length: 0\r\n\r\n");
            match parse_message(text.as_bytes()) {
                Ok(Message::Request(request)) => request,
                other => panic!("test REGISTER must parse: {other:?}\n{text}"),
            }
        }
    }

    fn reg<'a>(call_id: &'a str, cseq: u32, contacts: &'a [&'a str]) -> Register<'a> {
        Register {
            to_user: "1001",
            call_id,
            cseq,
            contacts,
            expires: None,
        }
    }

    fn registrar() -> Registrar {
        Registrar::new(RegistrarConfig::new(DOMAIN))
    }

    fn hosts(registrar: &Registrar, user: &str) -> Vec<String> {
        let aor = registrar.aor_for(user);
        registrar
            .lookup(&aor)
            .iter()
            .map(|b| b.contact_uri.host.clone())
            .collect()
    }

    fn ok(registrar: &mut Registrar, now: Instant, register: &Register<'_>) -> RegisterOutcome {
        registrar
            .handle_register(now, &register.request(), source(), "1001")
            .expect("REGISTER accepted")
    }

    fn err(registrar: &mut Registrar, now: Instant, register: &Register<'_>) -> RegistrarError {
        registrar
            .handle_register(now, &register.request(), source(), "1001")
            .expect_err("REGISTER refused")
    }

    #[test]
    fn register_adds_a_binding_with_default_expiry_and_source() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let outcome = ok(
            &mut registrar,
            t0,
            &reg("c1", 1, &["<sip:1001@10.0.0.1:5062>"]),
        );
        assert_eq!((outcome.status, outcome.reason), (200, "OK"));
        assert_eq!(
            outcome.contacts,
            vec!["<sip:1001@10.0.0.1:5062>;expires=3600"]
        );
        let aor = registrar.aor_for("1001");
        let [binding] = registrar.lookup(&aor) else {
            panic!("one binding expected");
        };
        assert_eq!(binding.aor.as_str(), "1001@12348.sd.cn");
        assert_eq!(binding.source, source());
        assert_eq!(binding.call_id, "c1");
        assert_eq!(binding.cseq, 1);
        assert_eq!(binding.user_agent.as_deref(), Some("test-phone/1.0"));
        assert_eq!(binding.expires_at, t0 + Duration::from_secs(3600));
        assert_eq!(outcome.changes, vec![BindingChange::Added(binding.clone())]);
    }

    #[test]
    fn refresh_with_higher_cseq_extends_and_stale_cseq_is_refused_with_500() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let contact = ["<sip:1001@10.0.0.1>"];
        ok(&mut registrar, t0, &reg("c1", 1, &contact));
        let t1 = t0 + Duration::from_secs(1800);
        let outcome = ok(&mut registrar, t1, &reg("c1", 2, &contact));
        assert!(matches!(outcome.changes.as_slice(), [BindingChange::Refreshed(b)] if b.cseq == 2));
        assert_eq!(outcome.contacts, vec!["<sip:1001@10.0.0.1>;expires=3600"]);
        for stale_cseq in [1, 2] {
            let error = err(&mut registrar, t1, &reg("c1", stale_cseq, &contact));
            assert_eq!(error, RegistrarError::OutOfOrder);
            assert_eq!(error.status(), 500);
        }
        let aor = registrar.aor_for("1001");
        assert_eq!(
            registrar.lookup(&aor)[0].expires_at,
            t1 + Duration::from_secs(3600)
        );
        // A new Call-ID (phone restarted) may use any CSeq.
        let outcome = ok(&mut registrar, t1, &reg("c2", 1, &contact));
        assert!(
            matches!(outcome.changes.as_slice(), [BindingChange::Refreshed(b)] if b.call_id == "c2")
        );
        assert_eq!(registrar.lookup(&aor).len(), 1);
    }

    #[test]
    fn multiple_contacts_with_q_values_and_unregistering_one() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let outcome = ok(
            &mut registrar,
            t0,
            &reg(
                "c1",
                1,
                &[
                    "<sip:1001@10.0.0.1>;q=0.7, <sip:1001@10.0.0.2>;expires=600",
                    "<sip:1001@10.0.0.3>;q=1",
                ],
            ),
        );
        assert_eq!(
            outcome.contacts,
            vec![
                "<sip:1001@10.0.0.1>;expires=3600;q=0.7",
                "<sip:1001@10.0.0.2>;expires=600",
                "<sip:1001@10.0.0.3>;expires=3600;q=1",
            ]
        );
        let outcome = ok(
            &mut registrar,
            t0,
            &reg("c1", 2, &["<sip:1001@10.0.0.2>;expires=0"]),
        );
        assert!(matches!(
            outcome.changes.as_slice(),
            [BindingChange::Removed(b, RemovalReason::Unregistered)] if b.contact_uri.host == "10.0.0.2"
        ));
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.1", "10.0.0.3"]);
        // Expires header 0 unregisters the listed contact too.
        let mut unregister = reg("c1", 3, &["<sip:1001@10.0.0.1>"]);
        unregister.expires = Some("0");
        ok(&mut registrar, t0, &unregister);
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.3"]);
    }

    #[test]
    fn wildcard_with_expires_zero_removes_every_binding() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        ok(
            &mut registrar,
            t0,
            &reg("c1", 1, &["<sip:1001@10.0.0.1>", "<sip:1001@10.0.0.2>"]),
        );
        let mut star = reg("c9", 1, &["*"]);
        star.expires = Some("0");
        let outcome = ok(&mut registrar, t0, &star);
        assert_eq!(outcome.changes.len(), 2);
        assert!(outcome.contacts.is_empty());
        assert!(hosts(&registrar, "1001").is_empty());
        assert_eq!(registrar.poll_timeout(), None);
    }

    #[test]
    fn wildcard_without_expires_zero_or_with_other_contacts_is_400() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        ok(&mut registrar, t0, &reg("c1", 1, &["<sip:1001@10.0.0.1>"]));
        let no_expires = reg("c1", 2, &["*"]);
        let mut nonzero = reg("c1", 3, &["*"]);
        nonzero.expires = Some("3600");
        let mut with_other = reg("c1", 4, &["*", "<sip:1001@10.0.0.2>"]);
        with_other.expires = Some("0");
        for bad in [no_expires, nonzero, with_other] {
            let error = err(&mut registrar, t0, &bad);
            assert_eq!(error.status(), 400, "{error:?}");
        }
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.1"]);
    }

    #[test]
    fn wildcard_with_stale_cseq_for_same_call_id_is_refused() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        ok(&mut registrar, t0, &reg("c1", 5, &["<sip:1001@10.0.0.1>"]));
        let mut star = reg("c1", 5, &["*"]);
        star.expires = Some("0");
        assert_eq!(err(&mut registrar, t0, &star), RegistrarError::OutOfOrder);
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.1"]);
    }

    #[test]
    fn too_brief_expiry_is_423_with_min_expires_and_changes_nothing() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let error = err(
            &mut registrar,
            t0,
            &reg(
                "c1",
                1,
                &["<sip:1001@10.0.0.1>", "<sip:1001@10.0.0.2>;expires=30"],
            ),
        );
        assert_eq!(error.status(), 423);
        assert_eq!(error.reason(), "Interval Too Brief");
        assert_eq!(error.headers(), vec![("Min-Expires", "60".to_string())]);
        assert!(hosts(&registrar, "1001").is_empty(), "all or nothing");
        let mut header_too_brief = reg("c1", 2, &["<sip:1001@10.0.0.1>"]);
        header_too_brief.expires = Some("59");
        assert_eq!(err(&mut registrar, t0, &header_too_brief).status(), 423);
        let mut at_min = reg("c1", 3, &["<sip:1001@10.0.0.1>"]);
        at_min.expires = Some("60");
        assert_eq!(
            ok(&mut registrar, t0, &at_min).contacts,
            ["<sip:1001@10.0.0.1>;expires=60"]
        );
    }

    #[test]
    fn long_expiry_is_clamped_to_max_and_contact_param_beats_header() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let mut request = reg(
            "c1",
            1,
            &[
                "<sip:1001@10.0.0.1>;expires=4294967295",
                "<sip:1001@10.0.0.2>",
            ],
        );
        request.expires = Some("120");
        let outcome = ok(&mut registrar, t0, &request);
        assert_eq!(
            outcome.contacts,
            [
                "<sip:1001@10.0.0.1>;expires=7200",
                "<sip:1001@10.0.0.2>;expires=120"
            ]
        );
    }

    #[test]
    fn bindings_expire_in_simulated_time() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        ok(
            &mut registrar,
            t0,
            &reg("c1", 1, &["<sip:1001@10.0.0.1>;expires=60"]),
        );
        ok(
            &mut registrar,
            t0,
            &reg("c1", 2, &["<sip:1001@10.0.0.2>;expires=120"]),
        );
        assert_eq!(registrar.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let t30 = t0 + Duration::from_secs(30);
        let query = reg("c1", 3, &[]);
        assert_eq!(
            ok(&mut registrar, t30, &query).contacts,
            [
                "<sip:1001@10.0.0.1>;expires=30",
                "<sip:1001@10.0.0.2>;expires=90"
            ]
        );
        let expired = registrar.expire(t0 + Duration::from_secs(60));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].contact_uri.host, "10.0.0.1");
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.2"]);
        // A REGISTER arriving after an expiry not yet collected reports it as removed.
        let t200 = t0 + Duration::from_secs(200);
        let outcome = ok(&mut registrar, t200, &reg("c1", 4, &[]));
        assert!(outcome.contacts.is_empty());
        assert!(matches!(
            outcome.changes.as_slice(),
            [BindingChange::Removed(_, RemovalReason::Expired)]
        ));
        assert_eq!(registrar.poll_timeout(), None);
    }

    #[test]
    fn to_user_other_than_authenticated_user_is_403() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let mut other = reg("c1", 1, &["<sip:1002@10.0.0.1>"]);
        other.to_user = "1002";
        let error = err(&mut registrar, t0, &other);
        assert_eq!((error.status(), error.reason()), (403, "Forbidden"));
        assert!(hosts(&registrar, "1002").is_empty());
    }

    #[test]
    fn to_host_outside_listed_domains_is_404() {
        let t0 = Instant::now();
        let mut config = RegistrarConfig::new("other.example");
        config.hosts = HostPolicy::Listed(vec!["192.0.2.1".into()]);
        let mut registrar = Registrar::new(config);
        let error = err(&mut registrar, t0, &reg("c1", 1, &["<sip:1001@10.0.0.1>"]));
        assert_eq!(error.status(), 404);
        let mut config = RegistrarConfig::new("other.example");
        config.hosts = HostPolicy::Listed(vec!["12348.SD.CN".into()]);
        let mut registrar = Registrar::new(config);
        ok(&mut registrar, t0, &reg("c1", 1, &["<sip:1001@10.0.0.1>"]));
        let aor = registrar.aor_for("1001");
        assert_eq!(aor.as_str(), "1001@other.example");
        assert_eq!(registrar.lookup(&aor).len(), 1);
    }

    #[test]
    fn malformed_contact_parameters_are_400() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        for bad in [
            "<sip:1001@10.0.0.1>;expires=soon",
            "<sip:1001@10.0.0.1>;q=2",
            "<sip:1001@10.0.0.1>;q",
        ] {
            let contacts = [bad];
            let error = err(&mut registrar, t0, &reg("c1", 1, &contacts));
            assert_eq!(error.status(), 400, "{bad}");
        }
        assert!(hosts(&registrar, "1001").is_empty());
    }

    #[test]
    fn per_aor_limit_evicts_the_soonest_expiring_binding() {
        let t0 = Instant::now();
        let mut config = RegistrarConfig::new(DOMAIN);
        config.max_bindings_per_aor = 2;
        let mut registrar = Registrar::new(config);
        ok(
            &mut registrar,
            t0,
            &reg("c1", 1, &["<sip:1001@10.0.0.1>;expires=600"]),
        );
        ok(
            &mut registrar,
            t0,
            &reg("c2", 1, &["<sip:1001@10.0.0.2>;expires=300"]),
        );
        let outcome = ok(
            &mut registrar,
            t0,
            &reg("c3", 1, &["<sip:1001@10.0.0.3>;expires=60"]),
        );
        assert!(outcome.changes.iter().any(|c| matches!(
            c,
            BindingChange::Removed(b, RemovalReason::Evicted) if b.contact_uri.host == "10.0.0.2"
        )));
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.1", "10.0.0.3"]);
        let error = err(
            &mut registrar,
            t0,
            &reg(
                "c4",
                1,
                &[
                    "<sip:1001@10.0.0.4>",
                    "<sip:1001@10.0.0.5>",
                    "<sip:1001@10.0.0.6>",
                ],
            ),
        );
        assert_eq!(error, RegistrarError::TooManyContacts { max: 2 });
    }

    #[test]
    fn same_instance_and_reg_id_replace_the_old_contact() {
        let t0 = Instant::now();
        let mut registrar = registrar();
        let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1";
        let first = format!("<sip:1001@10.0.0.1:5060>;{instance}");
        let second = format!("<sip:1001@10.0.0.1:41234>;{instance}");
        ok(&mut registrar, t0, &reg("c1", 1, &[first.as_str()]));
        let outcome = ok(&mut registrar, t0, &reg("c2", 1, &[second.as_str()]));
        assert!(matches!(
            outcome.changes.as_slice(),
            [BindingChange::Refreshed(_)]
        ));
        let aor = registrar.aor_for("1001");
        let [binding] = registrar.lookup(&aor) else {
            panic!("one binding expected");
        };
        assert_eq!(binding.contact_uri.port, Some(41234));
        assert_eq!(binding.reg_id, Some(1));
        assert!(outcome.contacts[0].contains(";+sip.instance=\"<urn:uuid:"));
    }

    #[test]
    fn challenge_then_authenticated_register_end_to_end() {
        use crate::sip::auth::{
            AuthConfig, AuthOutcome, Authenticator, ClockAnchor, DigestAlgorithm, ResponseInputs,
            ServerSecret, Staleness, UserSecret, compute_response, credentials_for_realm, ha1,
        };
        use rand::SeedableRng;
        let t0 = Instant::now();
        let mut auth = Authenticator::new(
            AuthConfig::new(DOMAIN),
            ServerSecret([1; 32]),
            ClockAnchor {
                instant: t0,
                unix_ms: 1_790_000_000_000,
            },
            rand::rngs::StdRng::seed_from_u64(3),
        );
        let challenge = auth.challenge(t0, Staleness::Fresh);
        let sha = &challenge[0];
        let nonce_start = sha.find("nonce=\"").expect("nonce") + 7;
        let nonce = &sha[nonce_start..nonce_start + sha[nonce_start..].find('"').expect("end")];
        let opaque_start = sha.find("opaque=\"").expect("opaque") + 8;
        let opaque = &sha[opaque_start..opaque_start + sha[opaque_start..].find('"').expect("end")];
        let user_ha1 = ha1(DigestAlgorithm::Sha256, "1001", DOMAIN, "pw1001");
        let uri = format!("sip:{DOMAIN}");
        let response = compute_response(&ResponseInputs {
            algorithm: DigestAlgorithm::Sha256,
            ha1: &user_ha1,
            nonce,
            nc: "00000001",
            cnonce: "abc",
            qop: "auth",
            method: "REGISTER",
            uri: &uri,
        });
        let text = format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/TCP 203.0.113.5:40000;branch=z9hG4bKauth2\r\n\
             From: <sip:1001@{DOMAIN}>;tag=f1\r\n\
             To: <sip:1001@{DOMAIN}>\r\n\
             Call-ID: flow\r\n\
             CSeq: 2 REGISTER\r\n\
             Contact: <sip:1001@10.0.0.1;transport=tcp>\r\n\
             Authorization: Digest username=\"1001\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, cnonce=\"abc\", \
             opaque=\"{opaque}\", qop=auth, nc=00000001\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let Ok(Message::Request(request)) = parse_message(text.as_bytes()) else {
            panic!("REGISTER parses");
        };
        let credentials =
            credentials_for_realm(request.headers.get_all("Authorization"), DOMAIN).expect("creds");
        let secret = UserSecret::Password("pw1001".into());
        let source = SourceInfo {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 40000),
            transport: Transport::Tcp,
        };
        let verification = auth.verify(
            t0,
            source.addr.ip(),
            request.method.as_str(),
            &credentials,
            Some(&secret),
        );
        let AuthOutcome::Ok(user) = verification.outcome else {
            panic!("digest must verify: {verification:?}");
        };
        let mut registrar = registrar();
        let outcome = registrar
            .handle_register(t0, &request, source, &user)
            .expect("registered");
        assert_eq!(
            outcome.contacts,
            ["<sip:1001@10.0.0.1;transport=tcp>;expires=3600"]
        );
        assert_eq!(
            registrar.lookup(&registrar.aor_for("1001"))[0].source,
            source
        );
    }

    #[test]
    fn malformed_contact_header_leaves_existing_bindings_untouched() {
        // Regression: a Contact parse error used to return after the AOR's bindings had
        // been taken out of the table, silently unregistering the phone.
        let t0 = Instant::now();
        let mut registrar = registrar();
        ok(&mut registrar, t0, &reg("c1", 1, &["<sip:1001@10.0.0.1>"]));
        let error = err(&mut registrar, t0, &reg("c1", 2, &["<sip:1001@10.0.0.2"]));
        assert_eq!(error.status(), 400);
        assert_eq!(hosts(&registrar, "1001"), ["10.0.0.1"]);
    }
}
