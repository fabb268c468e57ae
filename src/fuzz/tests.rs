//! Fixed-seed mutation tests: the fuzz targets' properties over mutants of the committed
//! seed corpora (`fuzz/corpus/<target>/`), so `cargo test` exercises them without
//! libFuzzer. Deterministic: the same mutants on every run. Regression inputs found by
//! fuzzing are pinned at the bottom.

use std::path::Path;

use super::*;

/// xorshift64*: tiny, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One to five mutations: bit flips, truncation, a dictionary token or a chunk of
/// another seed spliced in, a line duplicated, a range deleted, random bytes.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], tokens: &[&[u8]], input: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(5) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.truncate(rng.below(len + 1)),
            2 if !tokens.is_empty() => {
                let token = tokens[rng.below(tokens.len())];
                let at = rng.below(len + 1);
                data.splice(at..at, token.iter().copied());
            }
            3 => {
                crate::fuzz::duplicate_a_line(&mut data, |n| rng.below(n));
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(32)).min(len);
                data.drain(a..b);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            6 => {
                // Crossover: a slice of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let a = rng.below(other.len() + 1);
                let b = (a + rng.below(64)).min(other.len());
                let at = rng.below(len + 1);
                data.splice(at..at, other[a..b].iter().copied());
            }
            7 if len > 0 => {
                // Overwrite with an extreme integer byte pattern.
                let i = rng.below(len);
                let fill = [0x00, 0xFF, 0x7F, 0x80][rng.below(4)];
                let end = (i + 1 + rng.below(4)).min(len);
                data[i..end].fill(fill);
            }
            _ => {
                let at = rng.below(len + 1);
                let byte = [
                    b' ', b'\t', b'\r', b'\n', b'0', b'9', b'=', b'"', b'[', b'{',
                ][rng.below(10)];
                data.insert(at, byte);
            }
        }
    }
    data
}

fn run(target: &str, iterations: usize, seed: u64, tokens: &[&[u8]], check: fn(&[u8])) {
    let seeds = corpus(target);
    for s in &seeds {
        check(s);
    }
    let mut rng = Rng(seed);
    for i in 0..iterations {
        let input = &seeds[rng.below(seeds.len())];
        let data = mutate(&mut rng, &seeds, tokens, input);
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            eprintln!(
                "{target}: mutant {i} broke a property; input:\n{:?}",
                data.escape_ascii().to_string()
            );
            std::panic::resume_unwind(panic);
        }
    }
}

const SDP_TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"v=0\r\n",
    b"m=audio 0 RTP/AVP 0\r\n",
    b"m=audio 65535/2 RTP/AVP 8 101\r\n",
    b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"c=IN IP6 ::\r\n",
    b"c=IN IP6 ::ffff:192.0.2.1\r\n",
    b"c=IN IP4 224.2.1.1/127/3\r\n",
    b"a=rtpmap:101 telephone-event/8000\r\n",
    b"a=rtpmap:0 PCMU/8000/1\r\n",
    b"a=rtpmap:8 pcma/8000/2\r\n",
    b"a=rtpmap:255 PCMU/99999999999\r\n",
    b"a=fmtp:101 0-15\r\n",
    b"a=rtcp:65535 IN IP4 10.0.0.1\r\n",
    b"a=rtcp:0\r\n",
    b"a=ptime:4294967296\r\n",
    b"a=sendonly\r\n",
    b"a=inactive\r\n",
    b"a=recvonly\r\n",
    b"o=- 18446744073709551615 18446744073709551616 IN IP4 h\r\n",
    b"t=0 18446744073709551615\r\n",
    b" ",
    b":",
    b"/",
    b"\xe4\xb8\xad",
];

const RTP_TOKENS: &[&[u8]] = &[
    b"\x80\x00",
    b"\x80\x80",
    b"\xbf\xff",
    b"\x90\x00\xbe\xde\xff\xff",
    b"\x81\xc8\x00\x06",
    b"\x80\xc9\x00\x01",
    b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x05hello\x00",
    b"\x80\xcb\x00\x00",
    b"\x1f\xc9\xff\xff",
    b"\xa0\xc8\x00\x07",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
];

const DTMF_TOKENS: &[&[u8]] = &[
    b"\x00\x8a\x03\x20",
    b"\x0b\x0a\x00\xa0",
    b"\x10\x80\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
];

const CONFIG_TOKENS: &[&[u8]] = &[
    b"\n",
    b"[server]\n",
    b"[[cities]]\n",
    b"[[agents]]\n",
    b"[[users]]\n",
    b"[[units]]\n",
    b"[[routing]]\n",
    b"[queues]\n",
    b"[ivr]\n",
    b"[cities.hours]\n",
    b"periods = [{ start = \"24:00\", end = \"00:00\" }]\n",
    b"days = [\"mon\", \"funday\"]\n",
    b"exceptions = [{ date = \"2026-02-30\", open = true }]\n",
    b"rtp_port_min = 65535\n",
    b"t1_ms = 18446744073709551615\n",
    b"min_expires = 0\n",
    b"sip_listen = \"[::1]:99999\"\n",
    b"id = \"\"\n",
    b"parent = \"nowhere\"\n",
    b" = ",
    b"\"",
    b"'''",
    b"\"\"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b".",
    b"#",
    b"\\u0000",
    b"1979-05-27T07:32:00Z",
    b"inf",
    b"nan",
    b"-0",
    b"0x7f",
    b"\xe6\xb5\x8e\xe5\x8d\x97",
];

const API_TOKENS: &[&[u8]] = &[
    b"\xff",
    b"\xffC0",
    b"\xffX0",
    b"\xffO0",
    b"\xffK0",
    b"{}",
    b"[]",
    b"null",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"\"version\":",
    b"\"units\":[\"../x\"]",
    b"\"received_at\":\"2099-01-01T00:00:00+08:00\"",
    b"\"received_at\":\"1900-01-01T00:00:00Z\"",
    b"\"category\":\"case\"",
    b"\"contact_phone\":\"1' OR 1=1--\"",
    b"&",
    b"=",
    b"%",
    b"%27",
    b"%00",
    b"'",
    b";DROP TABLE orders;--",
    b"page=0&",
    b"per_page=9223372036854775807&",
    b"state=closed&",
    b"limit=-1&",
    b"from=2026-02-30T00:00:00Z&",
];

#[test]
fn mutated_sdp_keeps_its_properties() {
    run("sdp_parse", 20_000, 0x5d9_0001, SDP_TOKENS, sdp);
}

#[test]
fn mutated_rtp_and_rtcp_keep_their_properties() {
    run("rtp_parse", 20_000, 0x4a7_0002, RTP_TOKENS, rtp);
}

#[test]
fn mutated_telephone_events_keep_their_properties() {
    run("dtmf_event", 20_000, 0xd7f_0003, DTMF_TOKENS, dtmf);
}

#[test]
fn mutated_config_never_panics_and_every_problem_has_a_path() {
    run("config_toml", 2_000, 0xc0f_0004, CONFIG_TOKENS, config);
}

#[test]
fn mutated_api_requests_are_4xx_with_a_reason() {
    run("api_body", 5_000, 0xa91_0005, API_TOKENS, api);
}
