//! Prompt references: what the IVR asks the media layer to play.
//!
//! A prompt is a WAV file `config/prompts/<lang>/<id>.wav` (8 kHz mono 16-bit), whose
//! text lives in `config/prompts/<lang>/prompts.toml` so a city can record its own.
//! Spoken numbers are assembled from the digit prompts `digit_0`..`digit_9`, `liang`
//! (两), `shi` (十) and `bai` (百).

use serde::{Deserialize, Serialize};

/// Id of one prompt file, e.g. `greeting` → `greeting.wav`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PromptId(pub String);

impl PromptId {
    /// A prompt id from text.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text (also the WAV file stem).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PromptId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One element of a sequence to play.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptRef {
    /// A recorded prompt file.
    Prompt(PromptId),
    /// A number spoken in Mandarin (expand with [`number_prompts`]).
    Number(u32),
}

impl PromptRef {
    /// Shorthand for [`PromptRef::Prompt`].
    #[must_use]
    pub fn prompt(id: &str) -> Self {
        Self::Prompt(PromptId::new(id))
    }
}

/// Prompt ids used to speak numbers.
pub const NUMBER_PROMPT_IDS: [&str; 13] = [
    "digit_0", "digit_1", "digit_2", "digit_3", "digit_4", "digit_5", "digit_6", "digit_7",
    "digit_8", "digit_9", "liang", "shi", "bai",
];

fn digit(d: u32) -> PromptId {
    PromptId(format!("digit_{}", d % 10))
}

/// The prompt files that speak `n` in Mandarin: 2 → 两, 12 → 十二, 25 → 二十五,
/// 105 → 一百零五, 110 → 一百一十, 200 → 两百. Numbers of 1000 and above are read
/// digit by digit (queue positions and clock times never get there).
#[must_use]
pub fn number_prompts(n: u32) -> Vec<PromptId> {
    let word = |id: &str| PromptId::new(id);
    match n {
        2 => vec![word("liang")],
        0..=9 => vec![digit(n)],
        10..=19 => {
            let mut out = vec![word("shi")];
            if n % 10 != 0 {
                out.push(digit(n % 10));
            }
            out
        }
        20..=99 => {
            let mut out = vec![digit(n / 10), word("shi")];
            if n % 10 != 0 {
                out.push(digit(n % 10));
            }
            out
        }
        100..=999 => {
            let hundreds = n / 100;
            let mut out = if hundreds == 2 {
                vec![word("liang"), word("bai")]
            } else {
                vec![digit(hundreds), word("bai")]
            };
            let rest = n % 100;
            if rest == 0 {
                return out;
            }
            if rest < 10 {
                out.push(digit(0));
                out.push(digit(rest));
            } else {
                // 110 is 一百一十: inside a larger number the tens digit 1 is spoken.
                out.push(digit(rest / 10));
                out.push(word("shi"));
                if rest % 10 != 0 {
                    out.push(digit(rest % 10));
                }
            }
            out
        }
        _ => n
            .to_string()
            .chars()
            .filter_map(|c| c.to_digit(10))
            .map(digit)
            .collect(),
    }
}

/// Expands a play list into prompt files, numbers included.
#[must_use]
pub fn expand(list: &[PromptRef]) -> Vec<PromptId> {
    list.iter()
        .flat_map(|item| match item {
            PromptRef::Prompt(id) => vec![id.clone()],
            PromptRef::Number(n) => number_prompts(*n),
        })
        .collect()
}

/// The play list for a queue position announcement: "您前面还有" + n + "位来电人".
#[must_use]
pub fn queue_position(n: u32) -> Vec<PromptRef> {
    vec![
        PromptRef::prompt("queue_ahead"),
        PromptRef::Number(n),
        PromptRef::prompt("queue_callers"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken(n: u32) -> Vec<String> {
        number_prompts(n).into_iter().map(|p| p.0).collect()
    }

    #[test]
    fn numbers_are_spoken_the_mandarin_way() {
        assert_eq!(spoken(0), ["digit_0"]);
        assert_eq!(spoken(2), ["liang"]);
        assert_eq!(spoken(7), ["digit_7"]);
        assert_eq!(spoken(10), ["shi"]);
        assert_eq!(spoken(12), ["shi", "digit_2"]);
        assert_eq!(spoken(20), ["digit_2", "shi"]);
        assert_eq!(spoken(25), ["digit_2", "shi", "digit_5"]);
        assert_eq!(spoken(100), ["digit_1", "bai"]);
        assert_eq!(spoken(105), ["digit_1", "bai", "digit_0", "digit_5"]);
        assert_eq!(spoken(110), ["digit_1", "bai", "digit_1", "shi"]);
        assert_eq!(spoken(200), ["liang", "bai"]);
        assert_eq!(spoken(999), ["digit_9", "bai", "digit_9", "shi", "digit_9"]);
        assert_eq!(spoken(1234), ["digit_1", "digit_2", "digit_3", "digit_4"]);
    }

    #[test]
    fn queue_position_wraps_the_number() {
        let ids: Vec<String> = expand(&queue_position(3))
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(ids, ["queue_ahead", "digit_3", "queue_callers"]);
    }
}

#[cfg(test)]
mod shipped_prompt_tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use crate::ivr::flow::IvrConfig;

    /// Prompts made by the script from tones, not from text.
    const SYNTHESIZED: [&str; 2] = ["beep", "hold_music"];

    fn prompt_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prompts/zh")
    }

    /// (sample rate, channels, bits per sample, data bytes) from a RIFF/WAVE file.
    fn wav_format(bytes: &[u8]) -> Option<(u32, u16, u16, u32)> {
        let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
            return None;
        }
        let mut at = 12;
        let mut format = None;
        while at + 8 <= bytes.len() {
            let id = bytes.get(at..at + 4)?;
            let size = u32_at(at + 4)?;
            let body = at + 8;
            if id == b"fmt " {
                let audio_format = u16_at(body)?;
                if audio_format != 1 {
                    return None;
                }
                format = Some((u32_at(body + 4)?, u16_at(body + 2)?, u16_at(body + 14)?));
            } else if id == b"data" {
                let (rate, channels, bits) = format?;
                return Some((rate, channels, bits, size));
            }
            at = body + size as usize + (size as usize & 1);
        }
        None
    }

    fn header(rate: u32, channels: u16, bits: u16) -> Vec<u8> {
        let mut h = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        h.extend(16u32.to_le_bytes());
        h.extend(1u16.to_le_bytes());
        h.extend(channels.to_le_bytes());
        h.extend(rate.to_le_bytes());
        h.extend((rate * u32::from(channels) * u32::from(bits) / 8).to_le_bytes());
        h.extend((channels * bits / 8).to_le_bytes());
        h.extend(bits.to_le_bytes());
        h.extend(b"data");
        h.extend(4u32.to_le_bytes());
        h.extend([0u8; 4]);
        h
    }

    #[test]
    fn wav_header_reader_sees_rate_channels_and_bits() {
        assert_eq!(wav_format(&header(8000, 1, 16)), Some((8000, 1, 16, 4)));
        assert_eq!(wav_format(&header(22050, 2, 8)), Some((22050, 2, 8, 4)));
        assert_eq!(wav_format(b"RIFF\0\0\0\0AVI "), None);
        assert_eq!(wav_format(&header(8000, 1, 16)[..30]), None);
    }

    #[test]
    fn every_prompt_of_the_default_config_is_an_8khz_mono_16bit_wav() {
        let dir = prompt_dir();
        for id in IvrConfig::default().prompt_ids() {
            let path = dir.join(format!("{id}.wav"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let format = wav_format(&bytes);
            let Some((rate, channels, bits, data)) = format else {
                panic!("{}: not a PCM WAV", path.display());
            };
            assert_eq!((rate, channels, bits), (8000, 1, 16), "{}", path.display());
            assert!(data >= 1600, "{}: shorter than 100 ms", path.display());
        }
    }

    #[test]
    fn every_spoken_prompt_has_its_text_in_prompts_toml() {
        #[derive(serde::Deserialize)]
        struct Texts {
            prompts: BTreeMap<String, String>,
        }
        let path = prompt_dir().join("prompts.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let texts: Texts = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        for id in IvrConfig::default().prompt_ids() {
            if SYNTHESIZED.contains(&id.as_str()) {
                continue;
            }
            let spoken = texts.prompts.get(id.as_str());
            assert!(
                spoken.is_some_and(|t| !t.trim().is_empty()),
                "{id} has no text in prompts.toml"
            );
        }
        // 12348 must be written so it is read digit by digit.
        for (id, spoken) in &texts.prompts {
            assert!(!spoken.contains("12348"), "{id}: write 幺二三四八");
        }
        assert!(
            texts
                .prompts
                .get("greeting")
                .is_some_and(|g| g.contains("幺二三四八"))
        );
    }

    #[test]
    fn shipped_prompts_stay_small() {
        let total: u64 = std::fs::read_dir(prompt_dir())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "wav"))
            .filter_map(|entry| entry.metadata().ok())
            .map(|meta| meta.len())
            .sum();
        // 8 kHz 16-bit speech is 16 kB/s: about 3 minutes of prompts in all.
        assert!(total < 3_500_000, "prompts take {total} bytes");
    }
}
