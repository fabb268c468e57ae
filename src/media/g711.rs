//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) companding.
//!
//! Decoding is a lookup in a 256-entry table built at compile time from the G.711 segment
//! formula; encoding finds the segment from the position of the highest set bit (no table,
//! no branches per segment). Linear samples are 16-bit: µ-law values are the standard's
//! 14-bit values shifted left by 2 (range ±32124), A-law values are the 13-bit values
//! shifted left by 3 (range ±32256).
//!
//! Round trip: `encode(decode(c)) == c` for every code except µ-law `0x7F` ("negative
//! zero"), which decodes to 0 like `0xFF` and therefore re-encodes as `0xFF`.
//!
//! The transcoding tables [`ULAW_TO_ALAW`] and [`ALAW_TO_ULAW`] go through the linear value
//! (decode, then encode with the other law); they are used by the bridge to transcode a
//! payload in place, one lookup per byte.

/// The two G.711 laws, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static RTP payload type 0.
    Pcmu,
    /// A-law, static RTP payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub const fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap` (`PCMU`/`PCMA`).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec with this encoding name (case-insensitive), if it is one of ours.
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }

    /// Decode one code byte to a 16-bit linear sample.
    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(code),
            Codec::Pcma => alaw_decode(code),
        }
    }

    /// Encode one 16-bit linear sample.
    #[inline]
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    /// Decode `codes` into `out` (up to the shorter length); returns the samples written.
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) -> usize {
        let table = match self {
            Codec::Pcmu => &ULAW_DECODE,
            Codec::Pcma => &ALAW_DECODE,
        };
        let mut written = 0;
        for (sample, code) in out.iter_mut().zip(codes) {
            *sample = table[usize::from(*code)];
            written += 1;
        }
        written
    }

    /// Encode `samples` into `out` (up to the shorter length); returns the bytes written.
    pub fn encode_into(self, samples: &[i16], out: &mut [u8]) -> usize {
        let mut written = 0;
        for (code, sample) in out.iter_mut().zip(samples) {
            *code = self.encode(*sample);
            written += 1;
        }
        written
    }

    /// The 256-entry table mapping a code of `self` to the code of `to` (identity when equal).
    pub fn transcode_table(self, to: Codec) -> &'static [u8; 256] {
        match (self, to) {
            (Codec::Pcmu, Codec::Pcma) => &ULAW_TO_ALAW,
            (Codec::Pcma, Codec::Pcmu) => &ALAW_TO_ULAW,
            _ => &IDENTITY,
        }
    }
}

const fn ulaw_decode_formula(code: u8) -> i16 {
    let inverted = !code;
    let exponent = (inverted >> 4) & 0x07;
    let mantissa = (inverted & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if inverted & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_formula(code: u8) -> i16 {
    let toggled = code ^ 0x55;
    let exponent = (toggled >> 4) & 0x07;
    let mantissa = (toggled & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // In A-law the sign bit set means positive.
    if toggled & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_decode_table(law: Codec) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0usize;
    while code < 256 {
        table[code] = match law {
            Codec::Pcmu => ulaw_decode_formula(code as u8),
            Codec::Pcma => alaw_decode_formula(code as u8),
        };
        code += 1;
    }
    table
}

/// µ-law code → 16-bit linear.
pub static ULAW_DECODE: [i16; 256] = build_decode_table(Codec::Pcmu);
/// A-law code → 16-bit linear.
pub static ALAW_DECODE: [i16; 256] = build_decode_table(Codec::Pcma);

/// Decode a µ-law code.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Decode an A-law code.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Largest magnitude µ-law can represent before the bias is added (keeps the sum in 15 bits).
const ULAW_CLIP: i32 = 32635;
const ULAW_BIAS: i32 = 0x84;

/// Encode a 16-bit linear sample as µ-law.
#[inline]
pub const fn ulaw_encode(sample: i16) -> u8 {
    let value = sample as i32;
    // Negative magnitudes are taken as one's complement (!x = -x - 1), the convention of the
    // ITU-T G.191 reference coder, so values exactly on a decision level round the same way.
    let (sign, magnitude) = if value < 0 {
        (0x80u8, !value)
    } else {
        (0u8, value)
    };
    let magnitude = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    };
    let biased = (magnitude + ULAW_BIAS) as u32;
    // biased is in 0x84..=0x7FFF: its highest set bit is bit 7..=14, which is the segment + 7.
    let exponent = (31 - biased.leading_zeros()) - 7;
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

/// Encode a 16-bit linear sample as A-law.
#[inline]
pub const fn alaw_encode(sample: i16) -> u8 {
    let value = sample as i32;
    // One's complement for negatives, as in `ulaw_encode`.
    let (sign, magnitude) = if value < 0 {
        (0x00u8, !value)
    } else {
        (0x80u8, value)
    };
    // Work in the standard's 13-bit domain (0..=4095).
    let magnitude = (magnitude >> 3) as u32;
    let (exponent, mantissa) = if magnitude < 32 {
        (0u32, magnitude >> 1)
    } else {
        // Highest set bit is 5..=11, segment 1..=7.
        let exponent = (31 - magnitude.leading_zeros()) - 4;
        (exponent, (magnitude >> exponent) & 0x0F)
    };
    (sign | ((exponent as u8) << 4) | mantissa as u8) ^ 0x55
}

const fn build_transcode_table(from: Codec, to: Codec) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0usize;
    while code < 256 {
        let linear = match from {
            Codec::Pcmu => ulaw_decode_formula(code as u8),
            Codec::Pcma => alaw_decode_formula(code as u8),
        };
        table[code] = match to {
            Codec::Pcmu => ulaw_encode(linear),
            Codec::Pcma => alaw_encode(linear),
        };
        code += 1;
    }
    table
}

/// µ-law code → A-law code (via linear).
pub static ULAW_TO_ALAW: [u8; 256] = build_transcode_table(Codec::Pcmu, Codec::Pcma);
/// A-law code → µ-law code (via linear).
pub static ALAW_TO_ULAW: [u8; 256] = build_transcode_table(Codec::Pcma, Codec::Pcmu);

static IDENTITY: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut code = 0usize;
    while code < 256 {
        table[code] = code as u8;
        code += 1;
    }
    table
};

/// Transcode a µ-law code to A-law.
#[inline]
pub fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[code as usize]
}

/// Transcode an A-law code to µ-law.
#[inline]
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[code as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// G.711 table 2a (µ-law) described by its segment end points in the 14-bit domain:
    /// 8 segments of 16 equal intervals; the reconstruction value is the interval's midpoint.
    /// The first segment starts at -1 so that code 0 reconstructs to exactly 0 (the standard's
    /// half-width first interval).
    fn itu_ulaw_value(code: u8) -> i32 {
        const ENDS: [i32; 9] = [-1, 31, 95, 223, 479, 991, 2015, 4063, 8159];
        let bits = !code;
        let negative = bits & 0x80 != 0;
        let segment = ((bits >> 4) & 7) as usize;
        let interval = (bits & 0x0F) as i32;
        let step = (ENDS[segment + 1] - ENDS[segment]) / 16;
        let value14 = ENDS[segment] + step * interval + step / 2;
        let value16 = value14 * 4;
        if negative { -value16 } else { value16 }
    }

    /// G.711 table 1a (A-law) in the 13-bit domain: segment end points 0, 32, 64, …, 4096;
    /// midpoint reconstruction; even bits inverted on the line (xor 0x55); sign bit 1 = positive.
    fn itu_alaw_value(code: u8) -> i32 {
        const ENDS: [i32; 9] = [0, 32, 64, 128, 256, 512, 1024, 2048, 4096];
        let bits = code ^ 0x55;
        let positive = bits & 0x80 != 0;
        let segment = ((bits >> 4) & 7) as usize;
        let interval = (bits & 0x0F) as i32;
        let step = (ENDS[segment + 1] - ENDS[segment]) / 16;
        let value13 = ENDS[segment] + step * interval + step / 2;
        let value16 = value13 * 8;
        if positive { value16 } else { -value16 }
    }

    #[test]
    fn all_ulaw_codes_decode_to_itu_values() {
        for code in 0..=255u8 {
            assert_eq!(
                ulaw_decode(code) as i32,
                itu_ulaw_value(code),
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn all_alaw_codes_decode_to_itu_values() {
        for code in 0..=255u8 {
            assert_eq!(
                alaw_decode(code) as i32,
                itu_alaw_value(code),
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn slice_helpers_match_per_sample_functions() {
        let samples = [0i16, 1000, -1000, 32767, -32768];
        let mut codes = [0u8; 5];
        assert_eq!(Codec::Pcma.encode_into(&samples, &mut codes), 5);
        assert_eq!(
            codes.to_vec(),
            samples.iter().map(|s| alaw_encode(*s)).collect::<Vec<_>>()
        );
        let mut decoded = [0i16; 3];
        assert_eq!(Codec::Pcma.decode_into(&codes, &mut decoded), 3);
        assert_eq!(
            decoded.to_vec(),
            codes[..3]
                .iter()
                .map(|c| alaw_decode(*c))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// µ-law encoding as G.711 describes it, in the 14-bit domain: bias by 33, find the
    /// segment by linear search over the segment end points, take 4 bits after the leading one.
    fn reference_ulaw_encode(x: i16) -> u8 {
        let (sign, magnitude14) = if x < 0 {
            (0x80, (!x as i32) >> 2)
        } else {
            (0, (x as i32) >> 2)
        };
        let biased = (magnitude14 + 33).min(0x1FFF);
        let segment = (0..8).find(|s| biased < 64 << s).unwrap();
        let mantissa = (biased >> (segment + 1)) & 0x0F;
        !(sign | (segment << 4) as u8 | mantissa as u8)
    }

    /// A-law encoding as G.711 describes it, in the 13-bit domain.
    fn reference_alaw_encode(x: i16) -> u8 {
        let (sign, magnitude13) = if x < 0 {
            (0x00, (!x as i32) >> 3)
        } else {
            (0x80, (x as i32) >> 3)
        };
        let (segment, mantissa) = if magnitude13 < 32 {
            (0, magnitude13 >> 1)
        } else {
            let segment = (1..8).find(|s| magnitude13 < 32 << s).unwrap();
            (segment, (magnitude13 >> segment) & 0x0F)
        };
        (sign | (segment << 4) as u8 | mantissa as u8) ^ 0x55
    }

    #[test]
    fn fast_encoders_match_segment_search_for_every_input() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), reference_ulaw_encode(x), "µ-law {x}");
            assert_eq!(alaw_encode(x), reference_alaw_encode(x), "A-law {x}");
        }
    }

    #[test]
    fn ulaw_round_trip_all_codes_except_negative_zero() {
        for code in 0..=255u8 {
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw_encode(ulaw_decode(code)), expected, "code {code:#04x}");
        }
    }

    #[test]
    fn alaw_round_trip_all_codes() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "code {code:#04x}");
        }
    }

    #[test]
    fn encoders_are_monotonic_and_quantise_to_nearest_level() {
        let mut previous_u = i32::MIN;
        let mut previous_a = i32::MIN;
        for sample in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(sample)) as i32;
            let a = alaw_decode(alaw_encode(sample)) as i32;
            assert!(u >= previous_u, "µ-law not monotonic at {sample}");
            assert!(a >= previous_a, "A-law not monotonic at {sample}");
            previous_u = u;
            previous_a = a;
            // The quantisation error is at most one step of the top segment.
            assert!((u - sample as i32).abs() <= 1024, "µ-law error at {sample}");
            assert!((a - sample as i32).abs() <= 1024, "A-law error at {sample}");
        }
    }

    #[test]
    fn decode_tables_are_monotonic_per_sign() {
        // Positive µ-law codes 0x80..=0xFF decrease in magnitude as the code increases.
        for code in 0x80..0xFFu8 {
            assert!(ulaw_decode(code) > ulaw_decode(code + 1));
        }
        for code in 0x00..0x7Fu8 {
            assert!(ulaw_decode(code) < ulaw_decode(code + 1));
        }
    }

    #[test]
    fn transcode_tables_match_linear_path_and_are_close() {
        for code in 0..=255u8 {
            assert_eq!(ulaw_to_alaw(code), alaw_encode(ulaw_decode(code)));
            assert_eq!(alaw_to_ulaw(code), ulaw_encode(alaw_decode(code)));
            let error = (alaw_decode(ulaw_to_alaw(code)) as i32 - ulaw_decode(code) as i32).abs();
            assert!(error <= 1024, "code {code:#04x} error {error}");
        }
        // µ-law silence becomes A-law's smallest positive level, and back to the smallest
        // µ-law level (A-law has no zero).
        assert_eq!(ulaw_to_alaw(0xFF), 0xD5);
        assert_eq!(ulaw_decode(alaw_to_ulaw(0xD5)), 8);
        assert_eq!(Codec::Pcmu.transcode_table(Codec::Pcmu)[0x12], 0x12);
    }
}
