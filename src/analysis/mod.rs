//! Hot, difficult and focal issues (H-11 热点、难点、焦点问题; H-6 社情民意), sans-IO:
//! what callers ask about, per topic and period, from the work orders' descriptions.
//!
//! - **Words**: jieba-rs segments a description; nouns and noun-like words of two or more
//!   characters are kept, stop words (`config/analysis/stopwords.txt`) dropped, and the
//!   legal terms of the user dictionary (`config/analysis/legal-terms.txt`: 劳动争议,
//!   拖欠工资, 离婚, 继承, 交通事故, 法律援助 …) are never split.
//! - **Topics of an order**: its [`TOPICS_PER_ORDER`] words of highest TF-IDF over the
//!   orders analysed (a word every order has says nothing), a legal term weighing double.
//! - **Hot**: a topic's count in the current period against its trailing baseline (the
//!   periods before, up to [`BASELINE_PERIODS`]): at least [`HOT_MIN_COUNT`] orders and a
//!   z-score of at least [`HOT_Z`], with the baseline's standard deviation taken as at
//!   least 1 so that a topic going from 0 to 1 is not a spike.
//! - **Difficult**: at least 2 of the topic's orders, and a quarter of them, were
//!   returned or went past a limit.
//! - **Focal**: the topic is asked about in at least [`FOCAL_CITIES`] cities, or at least
//!   2 of its orders involve several units.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Days, FixedOffset, Months, NaiveDate};
use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};

/// Topics counted per order.
pub const TOPICS_PER_ORDER: usize = 3;
/// Periods before the current one that form the baseline.
pub const BASELINE_PERIODS: usize = 8;
/// A hot topic has at least this many orders in the current period…
pub const HOT_MIN_COUNT: u32 = 3;
/// …and a z-score against its baseline of at least this.
pub const HOT_Z: f64 = 2.0;
/// A topic asked about in this many cities is focal.
pub const FOCAL_CITIES: usize = 3;

/// Why the analysis cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A dictionary or stop-word file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The user dictionary is not in jieba's format.
    #[error("{path}: not a jieba user dictionary: {source}")]
    Dictionary {
        path: PathBuf,
        source: jieba_rs::Error,
    },
}

/// Segments descriptions into topic words.
pub struct Segmenter {
    jieba: Jieba,
    legal: HashSet<String>,
    stop: HashSet<String>,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("legal_terms", &self.legal.len())
            .field("stop_words", &self.stop.len())
            .finish_non_exhaustive()
    }
}

/// The meaningful lines of a word list: trimmed, without blanks and `#` comments.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

impl Segmenter {
    /// From the user dictionary and stop-word files.
    ///
    /// # Errors
    /// A file that cannot be read, or a dictionary line jieba refuses.
    pub fn from_files(dictionary: &Path, stop_words: &Path) -> Result<Self, AnalysisError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| AnalysisError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let dictionary_text = read(dictionary)?;
        let stop_text = read(stop_words)?;
        Self::from_text(&dictionary_text, &stop_text).map_err(|source| AnalysisError::Dictionary {
            path: dictionary.to_owned(),
            source,
        })
    }

    /// From the texts of a user dictionary (`word [freq] [tag]` per line, `#` comments)
    /// and a stop-word list (one per line).
    ///
    /// # Errors
    /// A dictionary line jieba refuses.
    pub fn from_text(dictionary: &str, stop_words: &str) -> Result<Self, jieba_rs::Error> {
        let mut jieba = Jieba::new();
        let entries: Vec<&str> = lines(dictionary).collect();
        let joined = entries.join("\n");
        let mut reader = BufReader::new(joined.as_bytes());
        jieba.load_dict(&mut reader)?;
        let legal = entries
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        let stop = lines(stop_words).map(str::to_owned).collect();
        Ok(Self { jieba, legal, stop })
    }

    /// Whether `word` is one of the user dictionary's legal terms.
    #[must_use]
    pub fn is_legal_term(&self, word: &str) -> bool {
        self.legal.contains(word)
    }

    /// The topic words of `text`, in order of appearance (repeats kept: they are the
    /// term frequency): legal terms, and nouns, noun-like verbs, idioms and fixed
    /// expressions of two or more characters that are not stop words.
    #[must_use]
    pub fn words(&self, text: &str) -> Vec<String> {
        self.jieba
            .tag(text, true)
            .into_iter()
            .filter(|t| {
                let legal = self.legal.contains(t.word);
                let kind = t.tag.starts_with('n') || matches!(t.tag, "vn" | "l" | "i");
                (legal || kind)
                    && t.word.chars().count() >= 2
                    && !self.stop.contains(t.word)
                    && !t.word.chars().any(|c| c.is_ascii_digit())
            })
            .map(|t| t.word.to_owned())
            .collect()
    }
}

/// What the analysis needs of one work order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFacts {
    /// The order's city (unit id).
    pub city: String,
    /// When it was received.
    pub received: DateTime<FixedOffset>,
    /// Its description (and anything else worth segmenting).
    pub text: String,
    /// It was returned, or went past a limit.
    pub troubled: bool,
    /// How many units it involves.
    pub units: usize,
}

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Monday to Sunday.
    #[default]
    Week,
    /// A calendar month.
    Month,
}

/// A period: its first day and the day after its last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Period {
    /// First day (local date).
    #[schema(value_type = String, format = Date)]
    pub start: NaiveDate,
    /// The day after the last.
    #[schema(value_type = String, format = Date)]
    pub end: NaiveDate,
}

/// The current period (holding `today`) and the [`BASELINE_PERIODS`] before it, oldest
/// first.
#[must_use]
pub fn periods(today: NaiveDate, granularity: Granularity) -> Vec<Period> {
    let current_start = match granularity {
        Granularity::Week => today - Days::new(u64::from(today.weekday().num_days_from_monday())),
        Granularity::Month => today.with_day(1).unwrap_or(today),
    };
    let step_back = |start: NaiveDate, n: u32| match granularity {
        Granularity::Week => start - Days::new(7 * u64::from(n)),
        Granularity::Month => start - Months::new(n),
    };
    (0..=BASELINE_PERIODS as u32)
        .rev()
        .map(|n| {
            let start = step_back(current_start, n);
            let end = if n == 0 {
                match granularity {
                    Granularity::Week => start + Days::new(7),
                    Granularity::Month => start + Months::new(1),
                }
            } else {
                step_back(current_start, n - 1)
            };
            Period { start, end }
        })
        .collect()
}

/// One topic across the periods.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TopicTrend {
    /// The word.
    pub topic: String,
    /// A legal term of the user dictionary.
    pub legal_term: bool,
    /// Orders per period, oldest first (the last is the current period).
    pub counts: Vec<u32>,
    /// Orders in the current period.
    pub current: u32,
    /// Mean of the baseline periods.
    pub baseline_mean: f64,
    /// (current − mean) / max(standard deviation, 1).
    pub z: f64,
    /// A spike: see the module's rule.
    pub hot: bool,
    /// Often returned or late.
    pub difficult: bool,
    /// Across cities or units.
    pub focal: bool,
    /// The cities that asked about it, over all periods.
    pub cities: Vec<String>,
    /// Its orders over all periods.
    pub orders: u32,
    /// Of which returned or late.
    pub troubled: u32,
}

/// The topics of `orders` over `periods` (from [`periods`]; orders outside them are
/// ignored), most asked about in the current period first (a legal term before a
/// general word as often asked), at most `limit`.
#[must_use]
pub fn analyse(
    segmenter: &Segmenter,
    orders: &[OrderFacts],
    periods: &[Period],
    limit: usize,
) -> Vec<TopicTrend> {
    let Some(last) = periods.len().checked_sub(1) else {
        return Vec::new();
    };
    let period_of = |at: &DateTime<FixedOffset>| {
        let day = at.date_naive();
        periods.iter().position(|p| p.start <= day && day < p.end)
    };
    let docs: Vec<(usize, &OrderFacts, HashMap<String, u32>)> = orders
        .iter()
        .filter_map(|o| {
            let period = period_of(&o.received)?;
            let mut tf: HashMap<String, u32> = HashMap::new();
            for word in segmenter.words(&o.text) {
                *tf.entry(word).or_default() += 1;
            }
            Some((period, o, tf))
        })
        .collect();
    let mut df: HashMap<&str, u32> = HashMap::new();
    for (_, _, tf) in &docs {
        for word in tf.keys() {
            *df.entry(word.as_str()).or_default() += 1;
        }
    }
    let n = docs.len() as f64;
    #[derive(Default)]
    struct Tally {
        counts: Vec<u32>,
        cities: BTreeSet<String>,
        orders: u32,
        troubled: u32,
        multi_unit: u32,
    }
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for (period, order, tf) in &docs {
        let mut scored: Vec<(f64, &String)> = tf
            .iter()
            .map(|(word, &count)| {
                let idf = ((n + 1.0) / (f64::from(df[word.as_str()]) + 1.0)).ln() + 1.0;
                let weight = if segmenter.is_legal_term(word) {
                    2.0
                } else {
                    1.0
                };
                (f64::from(count) * idf * weight, word)
            })
            .collect();
        // Highest score first; ties by the word, so the result does not depend on the
        // hash map's order.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        for (_, word) in scored.into_iter().take(TOPICS_PER_ORDER) {
            let tally = tallies.entry(word.clone()).or_insert_with(|| Tally {
                counts: vec![0; periods.len()],
                ..Tally::default()
            });
            tally.counts[*period] += 1;
            tally.cities.insert(order.city.clone());
            tally.orders += 1;
            tally.troubled += u32::from(order.troubled);
            tally.multi_unit += u32::from(order.units > 1);
        }
    }
    let mut trends: Vec<TopicTrend> = tallies
        .into_iter()
        .map(|(topic, t)| {
            let current = t.counts[last];
            let baseline: Vec<f64> = t.counts[last.saturating_sub(BASELINE_PERIODS)..last]
                .iter()
                .map(|&c| f64::from(c))
                .collect();
            let (mean, sd) = if baseline.is_empty() {
                (0.0, 0.0)
            } else {
                let mean = baseline.iter().sum::<f64>() / baseline.len() as f64;
                let var = baseline.iter().map(|c| (c - mean).powi(2)).sum::<f64>()
                    / baseline.len() as f64;
                (mean, var.sqrt())
            };
            let z = (f64::from(current) - mean) / sd.max(1.0);
            TopicTrend {
                legal_term: segmenter.is_legal_term(&topic),
                hot: current >= HOT_MIN_COUNT && z >= HOT_Z,
                difficult: t.troubled >= 2 && t.troubled * 4 >= t.orders,
                focal: t.cities.len() >= FOCAL_CITIES || t.multi_unit >= 2,
                cities: t.cities.into_iter().collect(),
                orders: t.orders,
                troubled: t.troubled,
                counts: t.counts,
                current,
                baseline_mean: mean,
                z,
                topic,
            }
        })
        .collect();
    trends.sort_by(|a, b| {
        b.current
            .cmp(&a.current)
            .then_with(|| b.legal_term.cmp(&a.legal_term))
            .then_with(|| b.z.total_cmp(&a.z))
            .then_with(|| b.orders.cmp(&a.orders))
            .then_with(|| a.topic.cmp(&b.topic))
    });
    trends.truncate(limit);
    trends
}

#[cfg(test)]
mod tests;

/// A description as a public-sentiment summary may quote it (H-6, H-12-4): every
/// run of 5 or more digits masked as a phone number is, and the contact's name (when
/// it appears) masked as a name is.
#[must_use]
pub fn mask_description(text: &str, contact_name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().count() >= 5 {
            out.push_str(&crate::ticket::privacy::mask_phone(digits));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    let name = contact_name.trim();
    if name.chars().count() >= 2 {
        out = out.replace(name, &crate::ticket::privacy::mask_name(name));
    }
    out
}
