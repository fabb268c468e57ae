//! Public intake (W-2, W-9, WEB-INTAKE): the abuse controls of the citizens' channel —
//! web page, app and WeChat — that need no outside service. Pure: every check takes
//! `now` (an [`Instant`] for the limiters, unix milliseconds for challenges), so tests
//! run in simulated time.
//!
//! * **Proof of work** ([`PowChallenges`]): the server hands out a challenge signed
//!   with HMAC-SHA256 under a per-process secret (`v1.<expires_ms>.<bits>.<salt>.<mac>`);
//!   the client finds a nonce such that SHA-256(`challenge:nonce`) starts with `bits`
//!   zero bits (the browser does it with WebCrypto). Verifying costs one HMAC and one
//!   SHA-256 whatever the client sends (lengths are capped first); a solved challenge
//!   is spent once.
//! * **Rate limits** ([`WindowLimiter`]): at most `max` events per key in a sliding
//!   window (per source address, per phone, per looked-up code); memory is bounded.
//! * **Duplicates** ([`near_duplicate`]): the same phone sending a near-identical
//!   description within a window gets the earlier order's query code, not a new order.

use crate::window_limiter::SlidingWindow;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::{Digest as _, Sha256};
use sha2_011::Sha256 as Sha256v11;

/// Why a proof of work is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("the challenge is malformed or not signed by this server")]
    Invalid,
    #[error("the challenge has expired: ask for a new one")]
    Expired,
    #[error("the nonce does not solve the challenge")]
    Unsolved,
    #[error("the challenge was already used: ask for a new one")]
    Spent,
}

/// A rate limit was reached: try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests: retry after {retry_after_secs} s")]
pub struct Limited {
    pub retry_after_secs: u64,
}

/// Longest challenge and nonce accepted (before any hashing).
pub const MAX_CHALLENGE_LEN: usize = 160;
pub const MAX_NONCE_LEN: usize = 32;

/// Proof-of-work challenges under one secret.
pub struct PowChallenges {
    secret: [u8; 32],
    /// Leading zero bits a solution needs.
    pub bits: u8,
    /// How long a challenge may be solved.
    pub ttl: Duration,
    /// Spent challenges, with their expiry (ms), until they expire.
    spent: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for PowChallenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowChallenges")
            .field("bits", &self.bits)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Most spent challenges kept; past it a new solution is refused until some expire
/// (the rate limits keep honest users far below).
const MAX_SPENT: usize = 200_000;

fn hmac_sha256(key: &[u8; 32], text: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256v11> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(text);
    mac.finalize().into_bytes().into()
}

/// Leading zero bits of `digest`.
#[must_use]
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        if *byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

/// SHA-256 of `challenge:nonce`: what a solution's leading zero bits are counted on.
#[must_use]
pub fn work_digest(challenge: &str, nonce: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(challenge.as_bytes());
    hasher.update(b":");
    hasher.update(nonce.as_bytes());
    hasher.finalize().into()
}

/// Find a nonce for `challenge` (tests and the CLI; the browser has its own loop).
/// Bounded: `None` after `max_tries`.
#[must_use]
pub fn solve(challenge: &str, bits: u8, max_tries: u64) -> Option<String> {
    (0..max_tries)
        .map(|n| n.to_string())
        .find(|nonce| leading_zero_bits(&work_digest(challenge, nonce)) >= u32::from(bits))
}

impl PowChallenges {
    /// Under `secret`, asking `bits` leading zero bits, each challenge valid for `ttl`.
    #[must_use]
    pub fn new(secret: [u8; 32], bits: u8, ttl: Duration) -> Self {
        Self {
            secret,
            bits: bits.min(32),
            ttl,
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// A new challenge at `now_ms`, with 128 bits of `salt`; answers it and its expiry.
    #[must_use]
    pub fn issue(&self, now_ms: i64, salt: [u8; 16]) -> (String, i64) {
        let expires = now_ms.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(0));
        let body = format!("v1.{expires}.{}.{}", self.bits, hex::encode(salt));
        let mac = hex::encode(&hmac_sha256(&self.secret, body.as_bytes())[..16]);
        (format!("{body}.{mac}"), expires)
    }

    /// Check a solution at `now_ms` and spend the challenge.
    ///
    /// # Errors
    /// [`PowError`]: not ours, expired, unsolved or already spent.
    pub fn verify(&self, challenge: &str, nonce: &str, now_ms: i64) -> Result<(), PowError> {
        if challenge.len() > MAX_CHALLENGE_LEN || nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
            return Err(PowError::Invalid);
        }
        let (body, mac) = challenge.rsplit_once('.').ok_or(PowError::Invalid)?;
        let expected = hex::encode(&hmac_sha256(&self.secret, body.as_bytes())[..16]);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            mac.as_bytes(),
        )) {
            return Err(PowError::Invalid);
        }
        let mut parts = body.split('.');
        let (Some("v1"), Some(expires), Some(bits)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PowError::Invalid);
        };
        let expires: i64 = expires.parse().map_err(|_| PowError::Invalid)?;
        let bits: u32 = bits.parse().map_err(|_| PowError::Invalid)?;
        if now_ms > expires {
            return Err(PowError::Expired);
        }
        if leading_zero_bits(&work_digest(challenge, nonce)) < bits {
            return Err(PowError::Unsolved);
        }
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spent.len() >= MAX_SPENT / 2 {
            spent.retain(|_, exp| *exp >= now_ms);
        }
        if spent.contains_key(challenge) || spent.len() >= MAX_SPENT {
            return Err(PowError::Spent);
        }
        spent.insert(challenge.to_owned(), expires);
        Ok(())
    }
}

/// At most `max` events per key in a sliding window (the shared
/// [`crate::window_limiter::SlidingWindow`]).
#[derive(Debug)]
pub struct WindowLimiter {
    pub max: usize,
    events: SlidingWindow,
}

impl WindowLimiter {
    #[must_use]
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            events: SlidingWindow::new(window),
        }
    }

    /// Count an event for `key` at `now`, unless the key is at its limit.
    ///
    /// # Errors
    /// [`Limited`] with the seconds until the oldest event leaves the window.
    pub fn hit(&self, key: &str, now: Instant) -> Result<(), Limited> {
        self.events
            .hit(key, self.max, now)
            .map_err(|retry_after_secs| Limited { retry_after_secs })
    }
}

/// Characters that count in a description: letters and digits, lowercased (spaces and
/// punctuation, full- or half-width, do not make a new matter).
fn normalized(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether two descriptions are near-identical: equal once spaces and punctuation are
/// dropped, or sharing at least 80 % of their character bigrams (Jaccard), which
/// suits Chinese text without word segmentation.
#[must_use]
pub fn near_duplicate(a: &str, b: &str) -> bool {
    let (a, b) = (normalized(a), normalized(b));
    if a == b {
        return !a.is_empty();
    }
    if a.len() < 2 || b.len() < 2 {
        return false;
    }
    let grams =
        |t: &[char]| -> HashSet<(char, char)> { t.windows(2).map(|w| (w[0], w[1])).collect() };
    let (ga, gb) = (grams(&a), grams(&b));
    let common = ga.intersection(&gb).count();
    let all = ga.union(&gb).count();
    all > 0 && common * 10 >= all * 8
}

/// Digits of a phone number (what two spellings of one number share).
#[must_use]
pub fn phone_digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// The public intake's limits (defaults; `[public_intake]` is not configurable yet).
#[derive(Debug)]
pub struct PublicIntake {
    pub pow: PowChallenges,
    /// Challenges handed out per source address.
    pub challenges_per_source: WindowLimiter,
    /// Submissions per source address.
    pub per_source: WindowLimiter,
    /// Submissions per phone.
    pub per_phone: WindowLimiter,
    /// Look-ups and ratings per source address.
    pub lookups_per_source: WindowLimiter,
    /// Failed look-ups per query code (a code guessed with many phones).
    pub failed_per_code: WindowLimiter,
    /// How far back a submission is compared for duplicates.
    pub duplicate_window: Duration,
}

/// Leading zero bits of the shipped proof of work: about 65,000 hashes, a fraction
/// of a second in a phone's browser.
pub const DEFAULT_POW_BITS: u8 = 16;

impl Default for PublicIntake {
    fn default() -> Self {
        Self::with_pow_bits(DEFAULT_POW_BITS)
    }
}

impl PublicIntake {
    /// The default limits with a fresh random secret and `bits` of proof of work.
    #[must_use]
    pub fn with_pow_bits(bits: u8) -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            pow: PowChallenges::new(rand::random(), bits, Duration::from_secs(600)),
            challenges_per_source: WindowLimiter::new(120, hour),
            per_source: WindowLimiter::new(20, hour),
            per_phone: WindowLimiter::new(5, hour),
            lookups_per_source: WindowLimiter::new(60, hour),
            failed_per_code: WindowLimiter::new(10, hour),
            duplicate_window: Duration::from_secs(24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges(bits: u8) -> PowChallenges {
        PowChallenges::new([7; 32], bits, Duration::from_secs(600))
    }

    #[test]
    fn a_solved_challenge_passes_once_and_only_before_it_expires() {
        let pow = challenges(8);
        let (challenge, expires) = pow.issue(1_000, [1; 16]);
        assert_eq!(expires, 601_000);
        let nonce = solve(&challenge, 8, 1_000_000).expect("solvable");
        assert_eq!(pow.verify(&challenge, &nonce, 2_000), Ok(()));
        assert_eq!(pow.verify(&challenge, &nonce, 2_000), Err(PowError::Spent));
        let (late, _) = pow.issue(1_000, [2; 16]);
        let nonce = solve(&late, 8, 1_000_000).expect("solvable");
        assert_eq!(pow.verify(&late, &nonce, 601_001), Err(PowError::Expired));
    }

    #[test]
    fn unsolved_forged_and_oversized_challenges_are_refused() {
        let pow = challenges(12);
        let (challenge, _) = pow.issue(0, [3; 16]);
        let wrong = (0..10_000u32)
            .map(|n| n.to_string())
            .find(|n| leading_zero_bits(&work_digest(&challenge, n)) < 12)
            .expect("a non-solution");
        assert_eq!(pow.verify(&challenge, &wrong, 1), Err(PowError::Unsolved));
        // Asking for fewer bits breaks the signature.
        let forged = challenge.replacen(".12.", ".0.", 1);
        assert_eq!(pow.verify(&forged, "1", 1), Err(PowError::Invalid));
        // Another server's challenge.
        let other = PowChallenges::new([8; 32], 12, Duration::from_secs(600));
        let (theirs, _) = other.issue(0, [3; 16]);
        assert_eq!(pow.verify(&theirs, "1", 1), Err(PowError::Invalid));
        let long = "x".repeat(MAX_CHALLENGE_LEN + 1);
        assert_eq!(pow.verify(&long, "1", 1), Err(PowError::Invalid));
        assert_eq!(
            pow.verify(&challenge, &"1".repeat(MAX_NONCE_LEN + 1), 1),
            Err(PowError::Invalid)
        );
    }

    #[test]
    fn the_limiter_refuses_past_its_max_until_the_window_moves() {
        let limiter = WindowLimiter::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(limiter.hit("a", t0).is_ok());
        assert!(limiter.hit("a", t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(
            limiter.hit("a", t0 + Duration::from_secs(20)),
            Err(Limited {
                retry_after_secs: 40
            })
        );
        assert!(limiter.hit("b", t0 + Duration::from_secs(20)).is_ok());
        assert!(limiter.hit("a", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn near_identical_descriptions_are_duplicates_other_matters_are_not() {
        let a = "我和房东因为押金发生纠纷，房东拒绝退还三千元押金，请问怎么办？";
        assert!(near_duplicate(
            a,
            "我和房东因为押金发生纠纷 房东拒绝退还三千元押金 请问怎么办"
        ));
        assert!(near_duplicate(
            a,
            "我和房东因为押金发生纠纷，房东拒绝退还三千元押金，请问该怎么办？"
        ));
        assert!(!near_duplicate(
            a,
            "公司拖欠我三个月工资，我想申请法律援助。"
        ));
        assert!(!near_duplicate("", ""));
        assert_eq!(phone_digits("+86 138-0000-1234"), "8613800001234");
    }
}
