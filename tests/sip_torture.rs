//! RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests) against the message
//! layer, plus a deterministic mutation smoke test standing in for the cargo-fuzz target.
//!
//! Fixtures live in `tests/fixtures/sip/torture/` as raw wire bytes (CRLF line ends, any
//! non-printable byte stored as itself); see the README there for provenance.

use hotline::sip::message::{
    Contacts, MAX_MESSAGE_SIZE, Message, Method, ParseError, Request, StreamFramer, parse_message,
};
use std::path::{Path, PathBuf};

/// What the RFC expects of one message.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Parses; `Request::validate` answers `uas` when we are the endpoint and `proxy` when
    /// we would forward (`None` = process it). Responses only need to parse.
    Valid {
        uas: Option<u16>,
        proxy: Option<u16>,
    },
    /// `parse_message` fails with exactly this error (the transport answers 400 to a
    /// request, 505 to `Version`, and drops a response).
    Invalid(ParseError),
}

use Expect::{Invalid, Valid};

const OK: Expect = Valid {
    uas: None,
    proxy: None,
};

/// (fixture, expectation, the RFC's reason in one line)
const CASES: &[(&str, Expect, &str)] = &[
    // ---- RFC 4475 §3.1.1 valid messages -----------------------------------------------
    (
        "rfc4475-wsinv",
        OK,
        "3.1.1.1: All elements should treat this as a well-formed request.",
    ),
    (
        "rfc4475-intmeth",
        OK,
        "3.1.1.2: unusual but legal characters; endpoints generate a 501 (unknown method, the core's job)",
    ),
    (
        "rfc4475-esc01",
        OK,
        "3.1.1.3: valid use of the % escaping mechanism; accept",
    ),
    (
        "rfc4475-escnull",
        OK,
        "3.1.1.4: The message is well formed - parsers must accept this message.",
    ),
    (
        "rfc4475-esc02",
        OK,
        "3.1.1.5: A parser should accept this message as well formed ... An endpoint would reject this message with a 501.",
    ),
    (
        "rfc4475-lwsdisp",
        OK,
        "3.1.1.6: no LWS between display name and < is legal",
    ),
    (
        "rfc4475-longreq",
        OK,
        "3.1.1.7: long values in header fields; well formed",
    ),
    (
        "rfc4475-dblreq",
        OK,
        "3.1.1.8: extra octets ... are just spurious noise that must be ignored.",
    ),
    (
        "rfc4475-semiuri",
        OK,
        "3.1.1.9: Receiving elements will accept this as a well-formed message.",
    ),
    (
        "rfc4475-transports",
        OK,
        "3.1.1.10: Parsers must accept this message as well formed.",
    ),
    (
        "rfc4475-mpart01",
        OK,
        "3.1.1.11: multipart MIME body with binary part; well formed",
    ),
    (
        "rfc4475-unreason",
        OK,
        "3.1.1.12: A parser must accept this message.",
    ),
    (
        "rfc4475-noreason",
        OK,
        "3.1.1.13: A parser must accept this message.",
    ),
    // ---- RFC 4475 §3.1.2 invalid messages ---------------------------------------------
    (
        "rfc4475-badinv01",
        Invalid(ParseError::HeaderValue { name: "Via" }),
        "3.1.2.1: syntactically invalid ... should respond with a 400 Bad Request error.",
    ),
    (
        "rfc4475-clerr",
        Invalid(ParseError::TruncatedBody),
        "3.1.2.2: Content-Length larger than the message; over UDP respond 400",
    ),
    (
        "rfc4475-ncl",
        Invalid(ParseError::ContentLength),
        "3.1.2.3: negative Content-Length; 400, and over TCP close the connection",
    ),
    (
        "rfc4475-scalar02",
        Invalid(ParseError::HeaderValue { name: "CSeq" }),
        "3.1.2.4: should respond with a 400 Bad Request due to the CSeq error.",
    ),
    (
        "rfc4475-scalarlg",
        Invalid(ParseError::HeaderValue { name: "CSeq" }),
        "3.1.2.5: An element receiving this response will simply discard it.",
    ),
    (
        "rfc4475-quotbal",
        Invalid(ParseError::HeaderValue { name: "To" }),
        "3.1.2.6: An element receiving this request should return a 400 Bad Request error.",
    ),
    (
        "rfc4475-ltgtruri",
        Invalid(ParseError::RequestUri),
        "3.1.2.7: It is reasonable always to reject a request with this error with a 400",
    ),
    (
        "rfc4475-lwsruri",
        Invalid(ParseError::StartLine),
        "3.1.2.8: An element receiving this request should respond with a 400 Bad Request.",
    ),
    (
        "rfc4475-lwsstart",
        Invalid(ParseError::StartLine),
        "3.1.2.9: It is acceptable to reject this request as malformed.",
    ),
    (
        "rfc4475-trws",
        Invalid(ParseError::StartLine),
        "3.1.2.10: It is acceptable to reject this request as malformed.",
    ),
    (
        "rfc4475-escruri",
        Valid {
            uas: Some(400),
            proxy: Some(400),
        },
        "3.1.2.11: It is acceptable for an element to reject this request with a 400 (checked in validate)",
    ),
    (
        "rfc4475-baddate",
        Valid {
            uas: Some(400),
            proxy: Some(400),
        },
        "3.1.2.12: the only acceptable time zone designation is GMT; 400 (checked in validate)",
    ),
    (
        "rfc4475-regbadct",
        Valid {
            uas: Some(400),
            proxy: Some(400),
        },
        "3.1.2.13: reasonable ... to respond with a 400 Bad Request (Contact checked in validate)",
    ),
    (
        "rfc4475-badaspec",
        Invalid(ParseError::HeaderValue { name: "To" }),
        "3.1.2.14: It is reasonable to reject this request with a 400 Bad Request response.",
    ),
    (
        "rfc4475-baddn",
        Invalid(ParseError::HeaderValue { name: "From" }),
        "3.1.2.15: It is reasonable always to reject this kind of error with a 400",
    ),
    (
        "rfc4475-badvers",
        Invalid(ParseError::Version),
        "3.1.2.16: The element should respond to the request with a 505 Version Not Supported",
    ),
    (
        "rfc4475-mismatch01",
        Invalid(ParseError::CSeqMethodMismatch),
        "3.1.2.17: Any element receiving this request will respond with a 400 Bad Request.",
    ),
    (
        "rfc4475-mismatch02",
        Invalid(ParseError::CSeqMethodMismatch),
        "3.1.2.18: should respond with a 501 ... A 400 Bad Request is also acceptable",
    ),
    (
        "rfc4475-bigcode",
        Invalid(ParseError::StartLine),
        "3.1.2.19: An element receiving this response should simply drop it.",
    ),
    // ---- RFC 4475 §3.2 transaction layer ----------------------------------------------
    (
        "rfc4475-badbranch",
        OK,
        "3.2.1: A parser must not break ... could fall back to the RFC 2543-style transaction identifier",
    ),
    // ---- RFC 4475 §3.3 application layer ----------------------------------------------
    (
        "rfc4475-insuf",
        Invalid(ParseError::MissingHeader { name: "To" }),
        "3.3.1: no Call-ID, From, or To ... Ideally, it will respond with a 400 Bad Request error.",
    ),
    (
        "rfc4475-unkscm",
        Valid {
            uas: Some(416),
            proxy: Some(416),
        },
        "3.3.2: An element receiving this request will reject it with a 416 Unsupported URI Scheme response.",
    ),
    (
        "rfc4475-novelsc",
        Valid {
            uas: Some(416),
            proxy: Some(416),
        },
        "3.3.3: if an element never accepts this scheme, return a 416 Unsupported URI Scheme",
    ),
    (
        "rfc4475-unksm2",
        Valid {
            uas: Some(400),
            proxy: Some(400),
        },
        "3.3.4: A registrar would reject this request with a 400 Bad Request response, since the To: header field is required to contain a SIP or SIPS URI as an AOR.",
    ),
    (
        "rfc4475-bext01",
        Valid {
            uas: Some(420),
            proxy: Some(420),
        },
        "3.3.5: will respond with a 420 Bad Extension ... Unsupported ... depending on the role",
    ),
    (
        "rfc4475-invut",
        Valid {
            uas: Some(415),
            proxy: None,
        },
        "3.3.6: A proxy receiving this request would process it just as it would any other INVITE. An endpoint receiving this request would reject it with a 415",
    ),
    (
        "rfc4475-regaut01",
        OK,
        "3.3.7: unknown Authorization scheme is well formed; a registrar that cares sends 401 (auth's job)",
    ),
    (
        "rfc4475-multi01",
        Invalid(ParseError::DuplicateHeader { name: "To" }),
        "3.3.8: An element receiving this request would respond with a 400 Bad Request error.",
    ),
    (
        "rfc4475-mcl01",
        Invalid(ParseError::DuplicateHeader {
            name: "Content-Length",
        }),
        "3.3.9: conflicting Content-Length values ... should respond with an error",
    ),
    (
        "rfc4475-bcast",
        OK,
        "3.3.10: well formed; parsers must not fail (the core drops the broadcast response)",
    ),
    (
        "rfc4475-zeromf",
        Valid {
            uas: None,
            proxy: Some(483),
        },
        "3.3.11: A proxy ... should respond 483 (Too Many Hops). An endpoint should process the request",
    ),
    (
        "rfc4475-cparam01",
        OK,
        "3.3.12: unknownparam is a contact-param; REGISTER should succeed",
    ),
    (
        "rfc4475-cparam02",
        OK,
        "3.3.13: unknownparam is a URI param; REGISTER should succeed",
    ),
    (
        "rfc4475-regescrt",
        OK,
        "3.3.14: escaped header in the Contact URI; REGISTER should succeed",
    ),
    (
        "rfc4475-sdp01",
        Valid {
            uas: Some(406),
            proxy: None,
        },
        "3.3.15: The recipient of this request could respond with a 406 Not Acceptable",
    ),
    // ---- RFC 4475 §3.4 backward compatibility ------------------------------------------
    (
        "rfc4475-inv2543",
        OK,
        "3.4.1: should be accepted by RFC 3261 elements that want to maintain backwards compatibility.",
    ),
    // ---- RFC 5118 §4 IPv6 ---------------------------------------------------------------
    (
        "rfc5118-ipv6-good",
        OK,
        "4.1: well-formatted; IPv6 reference in R-URI, Via and Contact",
    ),
    (
        "rfc5118-ipv6-bad",
        Invalid(ParseError::RequestUri),
        "4.2: no [ ] delimiters in the R-URI; should respond with a 400 Bad Request",
    ),
    (
        "rfc5118-port-ambiguous",
        OK,
        "4.3: From a parsing perspective, the request below is well-formed.",
    ),
    (
        "rfc5118-port-unambiguous",
        OK,
        "4.4: well formatted per the grammar in RFC 3261",
    ),
    (
        "rfc5118-via-received-param-with-delim",
        OK,
        "4.5: robust implementations must nonetheless be able to parse the topmost Via",
    ),
    (
        "rfc5118-via-received-param-no-delim",
        OK,
        "4.5: This request is valid according to the grammar in RFC 3261.",
    ),
    (
        "rfc5118-ipv6-in-sdp",
        Invalid(ParseError::TruncatedBody),
        "4.6: valid, but the RFC prints Content-Length 268 for a 251-octet body; see \
         rfc5118_ipv6_in_sdp_with_corrected_length_is_valid",
    ),
    (
        "rfc5118-mult-ip-in-header",
        OK,
        "4.7: Via list mixes IPv4 addresses and IPv6 references",
    ),
    ("rfc5118-mult-ip-in-sdp", OK, "4.8: valid and well-formed"),
    (
        "rfc5118-ipv4-mapped-ipv6",
        OK,
        "4.9: well-formed; IPv4-mapped IPv6 addresses",
    ),
    (
        "rfc5118-ipv6-bug-abnf-3-colons",
        OK,
        "4.10: may exhibit robustness by successfully parsing the IPv6 reference",
    ),
    (
        "rfc5118-ipv6-correct-abnf-2-colons",
        OK,
        "4.10: the correct syntax for the IPv6 reference",
    ),
];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sip/torture")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(format!("{name}.sip"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(name: &str) -> Request {
    match parse_message(&fixture(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn status(req: &Request, forwarding: bool) -> Option<u16> {
    req.validate(&[], forwarding).err().map(|r| r.status)
}

#[test]
fn every_torture_message_is_classified_as_the_rfc_says() {
    let mut failures = Vec::new();
    for (name, expect, reason) in CASES {
        let parsed = parse_message(&fixture(name));
        let outcome = match (&parsed, expect) {
            (Err(got), Invalid(want)) if got == want => continue,
            (Ok(Message::Response(_)), Valid { .. }) => continue,
            (Ok(Message::Request(req)), Valid { uas, proxy }) => {
                let got = (status(req, false), status(req, true));
                if got == (*uas, *proxy) {
                    continue;
                }
                format!("validate (uas, proxy) = {got:?}")
            }
            (Ok(_), _) => "parsed".to_string(),
            (Err(e), _) => format!("{e:?}"),
        };
        failures.push(format!(
            "{name}: expected {expect:?} ({reason}), got {outcome}"
        ));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_fixture_file_has_an_expectation() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".sip").map(str::to_string))
        .collect();
    names.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(n, _, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed);
    // 49 messages in RFC 4475 §3, 12 in RFC 5118 §4.
    assert_eq!(
        names.iter().filter(|n| n.starts_with("rfc4475-")).count(),
        49
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("rfc5118-")).count(),
        12
    );
}

#[test]
fn wsinv_fields_survive_folding_compact_forms_and_lws() {
    let r = request("rfc4475-wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.param("unknownparam"), Some(None));
    let to = r.headers.to().expect("To");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = r.headers.from().expect("from");
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(r.headers.max_forwards(), Ok(Some(68)));
    assert_eq!(r.headers.cseq().map(|c| c.seq), Ok(9));
    let vias = r.headers.via().expect("vias");
    let hosts: Vec<&str> = vias.iter().map(|v| v.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    );
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[2].branch.as_deref(), Some("z9hG4bK30239"));
    assert_eq!(r.headers.get("subject"), Some(""));
    assert_eq!(
        r.headers.get("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let Ok(Some(Contacts::List(contacts))) = r.headers.contacts() else {
        panic!("contacts");
    };
    assert_eq!(
        contacts[0].display_name.as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(contacts[0].param("newparam"), Some(Some("newvalue")));
    assert_eq!(contacts[0].param("secondparam"), Some(None));
    assert_eq!(contacts[0].param("q"), Some(Some("0.33")));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn unknown_methods_parse_as_extensions_for_the_core_to_answer_501() {
    let r = request("rfc4475-intmeth");
    assert_eq!(
        r.method,
        Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".to_string())
    );
    assert_eq!(
        r.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        r.uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    let to = r.headers.to().expect("to");
    assert_eq!(
        to.display_name.as_deref(),
        Some("BEL:\u{7} NUL:\0 DEL:\u{7f}")
    );
    let from = r.headers.from().expect("from");
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    // % is not an escape in a method: RE%47IST%45R is not REGISTER.
    let r = request("rfc4475-esc02");
    assert_eq!(r.method, Method::Extension("RE%47IST%45R".to_string()));
}

#[test]
fn bext01_lists_the_options_of_the_role_we_act_in() {
    let r = request("rfc4475-bext01");
    let uas = r.validate(&[], false).expect_err("420");
    assert_eq!((uas.status, uas.reason), (420, "Bad Extension"));
    assert_eq!(uas.headers[0].name, "Unsupported");
    assert_eq!(
        uas.headers[0].value,
        "nothingSupportsThis, nothingSupportsThisEither"
    );
    let proxy = r.validate(&[], true).expect_err("420");
    assert_eq!(
        proxy.headers[0].value,
        "noProxiesSupportThis, norDoAnyProxiesSupportThis"
    );
    // Supporting everything lets it through.
    let all = [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ];
    assert_eq!(r.validate(&all, false), Ok(()));
}

#[test]
fn datagram_noise_after_content_length_is_ignored() {
    let r = request("rfc4475-dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
}

#[test]
fn binary_multipart_body_is_kept_byte_exact() {
    let bytes = fixture("rfc4475-mpart01");
    let r = request("rfc4475-mpart01");
    assert_eq!(r.body.len(), 553);
    assert!(bytes.ends_with(&r.body));
}

#[test]
fn reason_phrases_utf8_and_empty() {
    for (name, reason) in [
        (
            "rfc4475-unreason",
            "= 2**3 * 5**2 но сто девяносто девять - простое",
        ),
        ("rfc4475-noreason", ""),
    ] {
        match parse_message(&fixture(name)) {
            Ok(Message::Response(r)) => assert_eq!(r.reason, reason, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn escaped_nulls_stay_escaped() {
    let r = request("rfc4475-escnull");
    assert_eq!(
        r.headers.to().map(|t| t.uri.user),
        Ok(Some("null-%00-null".into()))
    );
    let Ok(Some(Contacts::List(c))) = r.headers.contacts() else {
        panic!("contacts");
    };
    let users: Vec<_> = c.iter().map(|a| a.uri.user.clone()).collect();
    assert_eq!(users, [Some("%00".to_string()), Some("%00%00".to_string())]);
}

#[test]
fn contact_param_placement_follows_brackets() {
    let header_param = request("rfc4475-cparam01");
    let Ok(Some(Contacts::List(c))) = header_param.headers.contacts() else {
        panic!("contacts");
    };
    assert_eq!(c[0].param("unknownparam"), Some(None));
    assert!(c[0].uri.params.is_empty());
    let uri_param = request("rfc4475-cparam02");
    let Ok(Some(Contacts::List(c))) = uri_param.headers.contacts() else {
        panic!("contacts");
    };
    assert_eq!(c[0].param("unknownparam"), None);
    assert_eq!(c[0].uri.param("unknownparam"), Some(None));
}

#[test]
fn rfc5118_hosts_and_ports() {
    let r = request("rfc5118-port-unambiguous");
    assert_eq!(
        (r.uri.host.as_str(), r.uri.port),
        ("[2001:db8::10]", Some(5070))
    );
    let r = request("rfc5118-port-ambiguous");
    assert_eq!(
        (r.uri.host.as_str(), r.uri.port),
        ("[2001:db8::10:5070]", None)
    );
    let r = request("rfc5118-via-received-param-with-delim");
    assert_eq!(
        r.headers.top_via().map(|v| v.received),
        Ok(Some("[2001:db8::9:255]".to_string()))
    );
    let r = request("rfc5118-mult-ip-in-header");
    let vias = r.headers.via().expect("vias");
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].port, Some(6050));
    assert_eq!(vias[2].received.as_deref(), Some("192.0.2.200"));
    let r = request("rfc5118-ipv4-mapped-ipv6");
    assert_eq!(
        r.headers.top_via().map(|v| v.host),
        Ok("[::ffff:192.0.2.10]".to_string())
    );
}

/// RFC 5118 §4.6 prints `Content-Length: 268` above a 251-octet body. Over UDP that is a
/// truncated body and we refuse it rather than guess; with the length the body really has
/// the message is valid, as the RFC intends.
#[test]
fn rfc5118_ipv6_in_sdp_with_corrected_length_is_valid() {
    let text = String::from_utf8(fixture("rfc5118-ipv6-in-sdp")).expect("utf8");
    let fixed = text.replace("Content-Length: 268", "Content-Length: 251");
    match parse_message(fixed.as_bytes()) {
        Ok(Message::Request(r)) => {
            assert_eq!(r.body.len(), 251);
            assert_eq!(r.validate(&[], false), Ok(()));
        }
        other => panic!("{other:?}"),
    }
}

/// Over TCP the framing errors of ncl and mcl01 are fatal; valid fixtures frame exactly.
#[test]
fn stream_framing_of_the_corpus() {
    for name in ["rfc4475-ncl", "rfc4475-mcl01", "rfc4475-inv2543"] {
        let mut f = StreamFramer::new(MAX_MESSAGE_SIZE);
        f.push(&fixture(name));
        assert!(f.next_frame().is_err(), "{name}");
    }
    let mut f = StreamFramer::new(MAX_MESSAGE_SIZE);
    let wsinv = fixture("rfc4475-wsinv");
    let esc01 = fixture("rfc4475-esc01");
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(&wsinv);
    stream.extend_from_slice(&esc01);
    for chunk in stream.chunks(7) {
        f.push(chunk);
    }
    assert_eq!(
        f.next_frame().map(|b| b.map(|b| b.to_vec())),
        Ok(Some(wsinv))
    );
    assert_eq!(
        f.next_frame().map(|b| b.map(|b| b.to_vec())),
        Ok(Some(esc01))
    );
    assert_eq!(f.next_frame(), Ok(None));
}

/// Whatever parses re-serialises to bytes that parse again to the same message, and the
/// wire form is then a fixed point.
#[test]
fn parsed_corpus_round_trips() {
    for (name, _, _) in CASES {
        let Ok(msg) = parse_message(&fixture(name)) else {
            continue;
        };
        let wire = msg.to_bytes();
        let again = parse_message(&wire).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(again.to_bytes(), wire, "{name}");
        assert_eq!(
            again.headers().0.len(),
            msg.headers().0.len() + usize::from(msg.headers().get("content-length").is_none()),
            "{name}"
        );
    }
}

// ---- deterministic mutation smoke test ---------------------------------------------------

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

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\r\n ",
    b":",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b"[",
    b"]",
    b"%",
    b"%0",
    b"\0",
    b"\xff",
    b"\xe4\xb8",
    b"Content-Length: 99999999999999999999\r\n",
    b"l: 18446744073709551615\r\n",
    b"Via: SIP/2.0/UDP [::1]:0;rport;branch=z9hG4bK\r\n",
    b"CSeq: 4294967296 INVITE\r\n",
    b"Contact: *, <sip:a@b>\r\n",
    b"SIP/2.0 ",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.truncate(rng.below(len + 1)),
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                let at = rng.below(len + 1);
                data.splice(at..at, piece.iter().copied());
            }
            3 => {
                hotline::fuzz::duplicate_a_line(&mut data, |n| rng.below(n));
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(16)).min(len);
                data.drain(a..b);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            _ => {
                let at = rng.below(len + 1);
                let byte = [b' ', b'\t', b'\r', b'\n', b'0', b'9', b'=', b'@'][rng.below(8)];
                data.insert(at, byte);
            }
        }
    }
    data
}

/// Runs every entry point on `data`; true when it parsed as a message.
fn exercise(data: &[u8], rng: &mut Rng) -> bool {
    let parsed = parse_message(data);
    let ok = parsed.is_ok();
    if let Ok(msg) = parsed {
        let headers = msg.headers();
        let _ = (
            headers.via(),
            headers.contacts(),
            headers.expires(),
            headers.max_forwards(),
        );
        let _ = (
            headers.from(),
            headers.to(),
            headers.cseq(),
            headers.call_id(),
        );
        if let Message::Request(req) = &msg {
            let _ = req.validate(&["100rel"], rng.below(2) == 0);
        }
        let wire = msg.to_bytes();
        match parse_message(&wire) {
            Ok(again) => assert_eq!(again.to_bytes(), wire, "round trip is not a fixed point"),
            // Re-serialising may only fail by exceeding the size limit.
            Err(e) => assert_eq!(
                e,
                ParseError::TooLarge,
                "{:?}",
                String::from_utf8_lossy(data)
            ),
        }
    }
    let mut framer = StreamFramer::new(4096);
    let mut rest = data;
    while !rest.is_empty() {
        let n = (rng.below(64) + 1).min(rest.len());
        framer.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    let _ = parse_message(&frame);
                }
                Ok(None) => break,
                Err(_) => return ok,
            }
        }
    }
    ok
}

#[test]
fn mutated_corpus_never_panics() {
    let corpus: Vec<Vec<u8>> = CASES.iter().map(|(n, _, _)| fixture(n)).collect();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let seed = &corpus[rng.below(corpus.len())];
        let data = mutate(&mut rng, seed);
        parsed += usize::from(exercise(&data, &mut rng));
    }
    // The mutations must leave enough parseable messages to exercise the round trip.
    eprintln!("{parsed} of 20000 mutants parsed");
    assert!(parsed > 1_000, "only {parsed} mutants parsed");
}
