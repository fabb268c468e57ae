//! `cargo +nightly fuzz run sip_parse` (seed corpus: tests/fixtures/sip/torture/).
//!
//! Properties: no input panics; whatever parses re-serialises to bytes that parse again
//! and are a fixed point of parse→to_bytes; the stream framer survives any chunking.
#![no_main]

use hotline::sip::message::{Message, ParseError, StreamFramer, parse_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = parse_message(data) {
        let headers = msg.headers();
        let _ = (headers.via(), headers.contacts(), headers.expires(), headers.max_forwards());
        let _ = (headers.from(), headers.to(), headers.cseq(), headers.call_id());
        if let Message::Request(req) = &msg {
            let _ = req.validate(&["100rel"], false);
            let _ = req.validate(&[], true);
        }
        let wire = msg.to_bytes();
        match parse_message(&wire) {
            Ok(again) => assert_eq!(again.to_bytes(), wire),
            Err(e) => assert_eq!(e, ParseError::TooLarge),
        }
    }

    // The first byte picks the chunk size so the framer sees many different splits.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut framer = StreamFramer::new(4096);
    for chunk in data.chunks(step) {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    let _ = parse_message(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
