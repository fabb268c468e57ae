//! Call-leg tests in simulated time: single legs fed parsed messages, and a UAC leg wired
//! to a UAS leg through an in-memory (optionally lossy) link.

use super::*;
use crate::sip::dialog::{DialogSet, Match};
use crate::sip::message::{Message, parse_message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn parse_request(text: &str) -> Request {
    let wire = text.replace('\n', "\r\n");
    match parse_message(wire.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("test request did not parse: {other:?}"),
    }
}

/// Round-trip through the wire form, as the shell would.
fn reparse(msg: &Message) -> Message {
    parse_message(&msg.to_bytes()).expect("our own output parses")
}

fn server_contact() -> NameAddr {
    NameAddr::parse("<sip:12348@10.0.0.1:5060>").expect("contact")
}

const CALLER_INVITE: &str = "INVITE sip:053112348@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcaller1
Record-Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>
Max-Forwards: 69
From: \"Caller\" <sip:13800000000@trunk.example.net>;tag=caller-tag
To: <sip:053112348@10.0.0.1>
Call-ID: call-1@trunk
CSeq: 10 INVITE
Contact: <sip:13800000000@192.0.2.10:5060>
Content-Type: application/sdp
Content-Length: 4

v=0
";

fn inbound() -> InboundLeg {
    InboundLeg::new(
        LegConfig::default(),
        parse_request(CALLER_INVITE),
        &server_contact(),
        7,
    )
    .expect("leg from a valid INVITE")
}

fn drain<F: FnMut() -> Option<LegOutput>>(mut poll: F) -> Vec<LegOutput> {
    std::iter::from_fn(&mut poll).collect()
}

fn responses(out: &[LegOutput]) -> Vec<&Response> {
    out.iter()
        .filter_map(|o| match o {
            LegOutput::SendResponse(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn requests(out: &[LegOutput]) -> Vec<&Request> {
    out.iter()
        .filter_map(|o| match o {
            LegOutput::SendRequest(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn events(out: &[LegOutput]) -> Vec<LegEvent> {
    out.iter()
        .filter_map(|o| match o {
            LegOutput::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn ended(events: &[LegEvent]) -> Vec<(EndReason, Side)> {
    events
        .iter()
        .filter_map(|e| match e {
            LegEvent::Ended {
                reason,
                who_hung_up,
            } => Some((*reason, *who_hung_up)),
            _ => None,
        })
        .collect()
}

fn statuses(out: &[LegOutput]) -> Vec<(u16, String)> {
    responses(out)
        .into_iter()
        .map(|r| {
            let method = r.headers.cseq().map(|c| c.method.to_string());
            (r.status, method.unwrap_or_default())
        })
        .collect()
}

/// An in-dialog request from the caller to the inbound leg (tags as the leg chose).
fn caller_request(leg: &InboundLeg, method: &str, cseq: u32, extra: &str) -> Request {
    let local_tag = leg.dialog_id().expect("dialog").local_tag.clone();
    parse_request(&format!(
        "{method} sip:12348@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{method}{cseq}
Max-Forwards: 70
From: <sip:13800000000@trunk.example.net>;tag=caller-tag
To: <sip:053112348@10.0.0.1>;tag={local_tag}
Call-ID: call-1@trunk
CSeq: {cseq} {method}
{extra}Content-Length: 0

"
    ))
}

/// Inbound leg answered and ACKed; outputs drained.
fn confirmed_inbound(t0: Instant) -> InboundLeg {
    let mut leg = inbound();
    leg.answer(t0, Bytes::from_static(b"v=0\r\n"))
        .expect("answer");
    let ack = caller_request(&leg, "ACK", 10, "");
    leg.handle_request(t0 + ms(20), ack);
    drain(|| leg.poll_output());
    assert_eq!(leg.state(), LegState::Confirmed);
    leg
}

#[test]
fn answer_retransmits_2xx_doubling_to_t2_then_ack_timeout_sends_bye() {
    let t0 = Instant::now();
    let mut leg = inbound();
    leg.answer(t0, Bytes::from_static(b"v=0\r\n"))
        .expect("answer");
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(200, "INVITE".to_string())]);
    assert_eq!(events(&out), vec![LegEvent::Answered { sdp: None }]);

    // Retransmissions at 0.5, 1.5, 3.5, 7.5, 11.5 … (interval 0.5, 1, 2, 4, 4 …), give up
    // at 32 s.
    let mut sent_at = Vec::new();
    let mut bye = None;
    while let Some(at) = leg.poll_timeout() {
        leg.handle_timeout(at);
        let out = drain(|| leg.poll_output());
        if !responses(&out).is_empty() {
            sent_at.push(at - t0);
        }
        if let Some(req) = requests(&out).first() {
            bye = Some(((*req).clone(), at - t0, ended(&events(&out))));
            break;
        }
    }
    assert_eq!(
        sent_at.iter().take(6).copied().collect::<Vec<_>>(),
        vec![ms(500), ms(1500), ms(3500), ms(7500), ms(11500), ms(15500)]
    );
    assert!(sent_at.iter().all(|d| *d < ms(32_000)));
    let (bye, at, ended_then) = bye.expect("BYE after the ACK timeout");
    assert_eq!(at, ms(32_000));
    assert_eq!(bye.method, Method::Bye);
    // The call ends with the BYE, at Timer H: a peer that never ACKed is not waited for
    // another 32 s (an INVITE flood's calls free their resources here).
    assert_eq!(ended_then, vec![(EndReason::AckTimeout, Side::Local)]);
    assert!(leg.is_ended());
    assert_eq!(leg.poll_timeout(), None);

    // A late answer to the BYE changes nothing.
    let ok = Response::for_request(&bye, 200, "OK", "x");
    leg.handle_response(t0 + ms(32_050), ok);
    let out = drain(|| leg.poll_output());
    assert!(ended(&events(&out)).is_empty());
}

#[test]
fn bye_without_any_response_still_ends_the_leg_by_the_guard() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    leg.hangup(t0 + ms(1000));
    let out = drain(|| leg.poll_output());
    assert_eq!(requests(&out).len(), 1);
    let guard = leg.poll_timeout().expect("BYE guard armed");
    assert_eq!(guard, t0 + ms(1000) + ms(32_000));
    leg.handle_timeout(guard);
    let out = drain(|| leg.poll_output());
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::LocalHangup, Side::Local)]
    );
}

#[test]
fn cancel_before_answer_gets_200_and_487_and_ends_once() {
    let t0 = Instant::now();
    let mut leg = inbound();
    leg.ring(t0).expect("ring");
    let cancel = parse_request(
        "CANCEL sip:053112348@10.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcaller1
Max-Forwards: 70
From: \"Caller\" <sip:13800000000@trunk.example.net>;tag=caller-tag
To: <sip:053112348@10.0.0.1>
Call-ID: call-1@trunk
CSeq: 10 CANCEL
Content-Length: 0

",
    );
    leg.handle_request(t0 + ms(100), cancel.clone());
    let out = drain(|| leg.poll_output());
    assert_eq!(
        statuses(&out),
        vec![
            (180, "INVITE".to_string()),
            (200, "CANCEL".to_string()),
            (487, "INVITE".to_string())
        ]
    );
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::Cancelled, Side::Remote)]
    );
    // A retransmitted CANCEL after the end changes nothing and ends nothing again.
    leg.handle_request(t0 + ms(600), cancel);
    let out = drain(|| leg.poll_output());
    assert!(ended(&events(&out)).is_empty());
    assert!(leg.answer(t0 + ms(700), Bytes::new()).is_err());
}

#[test]
fn caller_bye_gets_200_and_ends_with_caller_hangup() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    let bye = caller_request(&leg, "BYE", 11, "");
    leg.handle_request(t0 + ms(5000), bye);
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(200, "BYE".to_string())]);
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::RemoteHangup, Side::Remote)]
    );
}

#[test]
fn lower_cseq_in_dialog_request_gets_500_and_higher_gets_200() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    leg.handle_request(t0 + ms(100), caller_request(&leg, "INFO", 9, ""));
    leg.handle_request(t0 + ms(200), caller_request(&leg, "INFO", 11, ""));
    leg.handle_request(t0 + ms(300), caller_request(&leg, "OPTIONS", 10, ""));
    let out = drain(|| leg.poll_output());
    assert_eq!(
        statuses(&out),
        vec![
            (500, "INFO".to_string()),
            (200, "INFO".to_string()),
            (500, "OPTIONS".to_string())
        ]
    );
    assert_eq!(leg.state(), LegState::Confirmed);
}

#[test]
fn request_for_unknown_dialog_gets_481() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    let mut set = DialogSet::new();
    set.insert(leg.dialog_id().expect("dialog").clone(), 1u32);

    let stranger = parse_request(
        "BYE sip:12348@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx
Max-Forwards: 70
From: <sip:13800000000@trunk.example.net>;tag=caller-tag
To: <sip:053112348@10.0.0.1>;tag=not-ours
Call-ID: call-1@trunk
CSeq: 11 BYE
Content-Length: 0

",
    );
    assert_eq!(set.match_request(&stranger), Match::NoDialog(481));
    let ours = caller_request(&leg, "BYE", 11, "");
    assert_eq!(
        set.match_request(&ours),
        Match::Dialog(leg.dialog_id().expect("dialog").clone())
    );
    assert_eq!(
        set.match_request(&parse_request(CALLER_INVITE)),
        Match::OutOfDialog
    );

    // A leg handed a request that is not its own answers 481 too and stays up.
    leg.handle_request(t0 + ms(100), stranger);
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(481, "BYE".to_string())]);
    assert_eq!(leg.state(), LegState::Confirmed);
}

#[test]
fn uas_bye_uses_record_route_in_order_and_contact_as_request_uri() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    leg.hangup(t0 + ms(100));
    let out = drain(|| leg.poll_output());
    let bye = requests(&out).first().copied().cloned().expect("BYE");
    assert_eq!(bye.uri.raw, "sip:13800000000@192.0.2.10:5060");
    let routes: Vec<&str> = bye.headers.get_all("Route").collect();
    assert_eq!(
        routes,
        vec!["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"]
    );
    let cseq = bye.headers.cseq().expect("cseq");
    assert_eq!(cseq.method, Method::Bye);
    assert_eq!(bye.headers.max_forwards().expect("mf"), Some(70));
    let via = bye.headers.top_via().expect("via");
    assert!(
        via.branch
            .as_deref()
            .is_some_and(|b| b.starts_with("z9hG4bK"))
    );
    let to = bye.headers.to().expect("to");
    assert_eq!(to.tag(), Some("caller-tag"));
    // The wire form parses back identically.
    let wire = Message::Request(bye);
    assert_eq!(reparse(&wire).to_bytes(), wire.to_bytes());
}

fn agent_params() -> OutboundParams {
    OutboundParams {
        target: Uri::parse("sip:agent1001@192.0.2.50:5062").expect("uri"),
        from: NameAddr::parse("\"12348\" <sip:12348@10.0.0.1>").expect("from"),
        to: NameAddr::parse("<sip:agent1001@hotline.example>").expect("to"),
        contact: server_contact(),
        sdp_offer: Bytes::from_static(b"v=0\r\n"),
        route: Vec::new(),
        via: ViaSentBy {
            transport: "UDP".to_string(),
            host: "10.0.0.1".to_string(),
            port: Some(5060),
        },
        call_id: Some("b-leg-1@10.0.0.1".to_string()),
    }
}

/// The agent's answer to our INVITE, with a Record-Route as seen by the UAC.
fn agent_response(invite: &Request, status: u16, to_tag: &str) -> Response {
    let mut r = Response::for_request(invite, status, "X", to_tag);
    r.headers.push(
        "Record-Route",
        "<sip:p2.example.net;lr>, <sip:p1.example.net;lr>",
    );
    r.headers.push("Contact", "<sip:agent1001@192.0.2.50:5062>");
    if status / 100 == 2 {
        r.body = Bytes::from_static(b"v=0\r\n");
    }
    r
}

#[test]
fn uac_route_set_is_record_route_reversed_and_2xx_retransmission_is_reacked() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let out = drain(|| leg.poll_output());
    let invite = requests(&out).first().copied().cloned().expect("INVITE");
    assert_eq!(invite.method, Method::Invite);

    let ok = agent_response(&invite, 200, "agent-tag");
    leg.handle_response(t0 + ms(100), ok.clone());
    let out = drain(|| leg.poll_output());
    let ack = requests(&out).first().copied().cloned().expect("ACK");
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.cseq().expect("cseq").seq, 1);
    assert_eq!(ack.uri.raw, "sip:agent1001@192.0.2.50:5062");
    assert_eq!(
        events(&out),
        vec![
            LegEvent::Answered {
                sdp: Some(Bytes::from_static(b"v=0\r\n"))
            },
            LegEvent::Confirmed
        ]
    );
    // A retransmitted 2xx gets the same ACK again, and no new event.
    leg.handle_response(t0 + ms(600), ok);
    let out = drain(|| leg.poll_output());
    assert_eq!(requests(&out), vec![&ack]);
    assert!(events(&out).is_empty());

    leg.hangup(t0 + ms(1000));
    let out = drain(|| leg.poll_output());
    let bye = requests(&out).first().copied().cloned().expect("BYE");
    let routes: Vec<&str> = bye.headers.get_all("Route").collect();
    assert_eq!(
        routes,
        vec!["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"]
    );
    assert_eq!(bye.headers.cseq().expect("cseq").seq, 2);
    leg.handle_response(t0 + ms(1100), Response::for_request(&bye, 200, "OK", ""));
    let out = drain(|| leg.poll_output());
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::LocalHangup, Side::Local)]
    );
}

#[test]
fn strict_router_first_hop_becomes_request_uri_and_target_goes_last() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let out = drain(|| leg.poll_output());
    let invite = requests(&out).first().copied().cloned().expect("INVITE");
    let mut ok = Response::for_request(&invite, 200, "OK", "agent-tag");
    ok.headers.push("Record-Route", "<sip:strict.example.net>");
    ok.headers
        .push("Contact", "<sip:agent1001@192.0.2.50:5062>");
    leg.handle_response(t0 + ms(100), ok);
    let out = drain(|| leg.poll_output());
    let ack = requests(&out).first().copied().cloned().expect("ACK");
    assert_eq!(ack.uri.raw, "sip:strict.example.net");
    let routes: Vec<&str> = ack.headers.get_all("Route").collect();
    assert_eq!(routes, vec!["<sip:agent1001@192.0.2.50:5062>"]);
}

#[test]
fn uac_cancel_waits_for_a_provisional_then_sends_cancel_and_ends_on_487() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let invite = requests(&drain(|| leg.poll_output()))
        .first()
        .copied()
        .cloned()
        .expect("INVITE");
    leg.cancel(t0 + ms(10));
    assert!(
        requests(&drain(|| leg.poll_output())).is_empty(),
        "no CANCEL before a 1xx"
    );
    assert_eq!(leg.state(), LegState::Cancelling);

    leg.handle_response(
        t0 + ms(50),
        Response::for_request(&invite, 180, "Ringing", "a"),
    );
    let out = drain(|| leg.poll_output());
    let cancel = requests(&out).first().copied().cloned().expect("CANCEL");
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.headers.top_via().expect("via").branch,
        invite.headers.top_via().expect("via").branch
    );
    assert_eq!(cancel.headers.cseq().expect("cseq").seq, 1);
    assert!(events(&out).is_empty(), "no ringing event once cancelled");

    leg.handle_response(t0 + ms(80), Response::for_request(&cancel, 200, "OK", "a"));
    leg.handle_response(
        t0 + ms(90),
        Response::for_request(&invite, 487, "Terminated", "a"),
    );
    let out = drain(|| leg.poll_output());
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::Cancelled, Side::Local)]
    );
}

#[test]
fn uac_cancel_with_no_response_at_all_ends_at_64_t1() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    drain(|| leg.poll_output());
    leg.cancel(t0 + ms(10));
    let at = leg.poll_timeout().expect("guard");
    assert_eq!(at, t0 + ms(32_000));
    leg.handle_timeout(at);
    let out = drain(|| leg.poll_output());
    assert!(requests(&out).is_empty());
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::Cancelled, Side::Local)]
    );
}

#[test]
fn uac_rejected_by_busy_agent_fails_then_ends() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let invite = requests(&drain(|| leg.poll_output()))
        .first()
        .copied()
        .cloned()
        .expect("INVITE");
    leg.handle_response(
        t0 + ms(50),
        Response::for_request(&invite, 180, "Ringing", "a"),
    );
    leg.handle_response(
        t0 + ms(90),
        Response::for_request(&invite, 486, "Busy", "a"),
    );
    let out = drain(|| leg.poll_output());
    assert_eq!(
        events(&out),
        vec![
            LegEvent::Progress {
                status: 180,
                sdp: None
            },
            LegEvent::Failed { status: 486 },
            LegEvent::Ended {
                reason: EndReason::Rejected { status: 486 },
                who_hung_up: Side::Remote
            }
        ]
    );
    assert!(
        requests(&out).is_empty(),
        "the transaction layer ACKs non-2xx"
    );
}

#[test]
fn reinvite_is_reported_and_answered_with_retransmitted_2xx_until_ack() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    let mut reinvite = caller_request(
        &leg,
        "INVITE",
        11,
        "Contact: <sip:13800000000@192.0.2.99:5070>\nContent-Type: application/sdp\n",
    );
    reinvite.body = Bytes::from_static(b"v=0\r\na=sendonly\r\n");
    leg.handle_request(t0 + ms(100), reinvite);
    let out = drain(|| leg.poll_output());
    assert_eq!(
        events(&out),
        vec![LegEvent::Reinvite {
            sdp: Bytes::from_static(b"v=0\r\na=sendonly\r\n")
        }]
    );
    assert_eq!(
        leg.dialog().expect("dialog").remote_target().raw,
        "sip:13800000000@192.0.2.99:5070"
    );
    leg.answer_reinvite(t0 + ms(150), Bytes::from_static(b"v=0\r\na=recvonly\r\n"))
        .expect("answer");
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(200, "INVITE".to_string())]);
    let at = leg.poll_timeout().expect("retransmission armed");
    leg.handle_timeout(at);
    assert_eq!(statuses(&drain(|| leg.poll_output())).len(), 1);
    leg.handle_request(at + ms(10), caller_request(&leg, "ACK", 11, ""));
    assert_eq!(leg.poll_timeout(), None, "ACK stops the retransmissions");
    assert!(events(&drain(|| leg.poll_output())).is_empty());
    assert_eq!(leg.state(), LegState::Confirmed);
}

#[test]
fn refer_with_replaces_is_parsed_accepted_and_progress_notified() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    let refer = caller_request(
        &leg,
        "REFER",
        11,
        "Refer-To: <sip:agent2002@hotline.example?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>\n",
    );
    leg.handle_request(t0 + ms(100), refer);
    let out = drain(|| leg.poll_output());
    let evs = events(&out);
    let [LegEvent::Refer { refer_to, replaces }] = evs.as_slice() else {
        panic!("expected one Refer event, got {evs:?}");
    };
    assert_eq!(refer_to.uri.user.as_deref(), Some("agent2002"));
    assert_eq!(
        replaces,
        &Some(Replaces {
            call_id: "abc@host".to_string(),
            to_tag: "t1".to_string(),
            from_tag: "f1".to_string(),
            early_only: false,
        })
    );

    leg.accept_refer(t0 + ms(120)).expect("accept");
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(202, "REFER".to_string())]);
    let notify = requests(&out).first().copied().cloned().expect("NOTIFY");
    assert_eq!(notify.method, Method::Notify);
    assert_eq!(notify.headers.get("Event"), Some("refer"));
    assert_eq!(notify.body, Bytes::from_static(b"SIP/2.0 100 Trying\r\n"));

    leg.notify_refer_progress(t0 + ms(2000), 200, "OK")
        .expect("final notify");
    let out = drain(|| leg.poll_output());
    let notify = requests(&out).first().copied().cloned().expect("NOTIFY");
    assert!(
        notify
            .headers
            .get("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated"))
    );
    assert!(
        leg.notify_refer_progress(t0 + ms(2100), 200, "OK").is_err(),
        "no NOTIFY after the terminating one"
    );
}

#[test]
fn refer_without_refer_to_gets_400() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    leg.handle_request(t0 + ms(100), caller_request(&leg, "REFER", 11, ""));
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(400, "REFER".to_string())]);
    assert!(events(&out).is_empty());
}

#[test]
fn hangup_before_ack_waits_for_the_ack_then_sends_bye() {
    let t0 = Instant::now();
    let mut leg = inbound();
    leg.answer(t0, Bytes::from_static(b"v=0\r\n"))
        .expect("answer");
    drain(|| leg.poll_output());
    leg.hangup(t0 + ms(10));
    assert!(
        requests(&drain(|| leg.poll_output())).is_empty(),
        "RFC 3261 §15: no BYE before ACK"
    );
    leg.handle_request(t0 + ms(40), caller_request(&leg, "ACK", 10, ""));
    let out = drain(|| leg.poll_output());
    assert_eq!(events(&out), vec![LegEvent::Confirmed]);
    let bye = requests(&out).first().copied().cloned().expect("BYE");
    assert_eq!(bye.method, Method::Bye);
    leg.handle_response(t0 + ms(80), Response::for_request(&bye, 200, "OK", ""));
    assert_eq!(
        ended(&events(&drain(|| leg.poll_output()))),
        vec![(EndReason::LocalHangup, Side::Local)]
    );
}

// ---------------------------------------------------------------------------------------
// UAC leg ↔ UAS leg over an in-memory link.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToUas,
    ToUac,
}

/// Messages in flight. Losing a 2xx to INVITE or an ACK is real loss (the dialog layer
/// recovers it); any other message is carried by a transaction in the real stack, so a
/// "lost" one arrives one T1 later, exactly once (retransmission, duplicate absorbed).
struct Link {
    rng: StdRng,
    loss: f64,
    latency: Duration,
    in_flight: Vec<(Instant, Dir, Vec<u8>)>,
    dropped_dialog_layer: usize,
}

impl Link {
    fn new(seed: u64, loss: f64) -> Link {
        Link {
            rng: StdRng::seed_from_u64(seed),
            loss,
            latency: ms(20),
            in_flight: Vec::new(),
            dropped_dialog_layer: 0,
        }
    }

    fn send(&mut self, now: Instant, dir: Dir, output: &LegOutput) {
        let (wire, dialog_layer_reliability) = match output {
            LegOutput::SendRequest(r) => (r.to_bytes(), r.method == Method::Ack),
            LegOutput::SendResponse(r) => {
                let to_invite = r.headers.cseq().is_ok_and(|c| c.method == Method::Invite);
                (r.to_bytes(), to_invite && r.status / 100 == 2)
            }
            LegOutput::Event(_) => return,
        };
        let lost = self.rng.random_bool(self.loss);
        if lost && dialog_layer_reliability {
            self.dropped_dialog_layer += 1;
            return;
        }
        let delay = if lost {
            self.latency + ms(500)
        } else {
            self.latency
        };
        self.in_flight.push((now + delay, dir, wire));
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(at, _, _)| *at).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<(Dir, Vec<u8>)> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight.get(i).is_some_and(|(at, _, _)| *at <= now) {
                let (_, dir, wire) = self.in_flight.remove(i);
                due.push((dir, wire));
            } else {
                i += 1;
            }
        }
        due
    }
}

/// What the UAS shell does when the INVITE arrives.
#[derive(Debug, Clone, Copy)]
enum UasScript {
    RingThenAnswerAfter(Duration),
    RingOnly,
}

struct Pair {
    now: Instant,
    uac: OutboundLeg,
    uas: Option<InboundLeg>,
    link: Link,
    script: UasScript,
    answer_at: Option<Instant>,
    uac_events: Vec<LegEvent>,
    uas_events: Vec<LegEvent>,
}

impl Pair {
    fn new(seed: u64, loss: f64, script: UasScript) -> Pair {
        let now = Instant::now();
        let uac = OutboundLeg::new(now, LegConfig::default(), agent_params(), seed);
        Pair {
            now,
            uac,
            uas: None,
            link: Link::new(seed, loss),
            script,
            answer_at: None,
            uac_events: Vec::new(),
            uas_events: Vec::new(),
        }
    }

    fn flush(&mut self) {
        while let Some(o) = self.uac.poll_output() {
            if let LegOutput::Event(e) = &o {
                self.uac_events.push(e.clone());
            }
            self.link.send(self.now, Dir::ToUas, &o);
        }
        if let Some(uas) = self.uas.as_mut() {
            while let Some(o) = uas.poll_output() {
                if let LegOutput::Event(e) = &o {
                    self.uas_events.push(e.clone());
                }
                self.link.send(self.now, Dir::ToUac, &o);
            }
        }
    }

    fn deliver(&mut self, dir: Dir, wire: &[u8]) {
        let now = self.now;
        let msg = parse_message(wire).expect("legs emit parseable messages");
        match (dir, msg) {
            (Dir::ToUas, Message::Request(req)) => match self.uas.as_mut() {
                Some(uas) => uas.handle_request(now, req),
                None => {
                    assert_eq!(req.method, Method::Invite);
                    let mut uas =
                        InboundLeg::new(LegConfig::default(), req, &caller_side_contact(), 99)
                            .expect("inbound leg");
                    uas.ring(now).expect("ring");
                    if let UasScript::RingThenAnswerAfter(d) = self.script {
                        self.answer_at = Some(now + d);
                    }
                    self.uas = Some(uas);
                }
            },
            (Dir::ToUas, Message::Response(resp)) => {
                if let Some(uas) = self.uas.as_mut() {
                    uas.handle_response(now, resp);
                }
            }
            (Dir::ToUac, Message::Request(req)) => self.uac.handle_request(now, req),
            (Dir::ToUac, Message::Response(resp)) => self.uac.handle_response(now, resp),
        }
    }

    /// Advance simulated time event by event until nothing is pending or `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.flush();
            let next = [
                self.link.next_delivery(),
                self.uac.poll_timeout(),
                self.uas.as_ref().and_then(InboundLeg::poll_timeout),
                self.answer_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                self.now = self.now.max(until);
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            for (dir, wire) in self.link.take_due(now) {
                self.deliver(dir, &wire);
            }
            if self.answer_at.is_some_and(|at| at <= now) {
                self.answer_at = None;
                // The UAS may have hung up (or been cancelled) before its answer time.
                if let Some(uas) = self.uas.as_mut()
                    && uas.state() == LegState::Early
                {
                    uas.answer(now, Bytes::from_static(b"v=0\r\n"))
                        .expect("answer");
                }
            }
            if self.uac.poll_timeout().is_some_and(|at| at <= now) {
                self.uac.handle_timeout(now);
            }
            if let Some(uas) = self.uas.as_mut()
                && uas.poll_timeout().is_some_and(|at| at <= now)
            {
                uas.handle_timeout(now);
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn uas(&mut self) -> &mut InboundLeg {
        self.uas.as_mut().expect("INVITE reached the UAS")
    }
}

fn caller_side_contact() -> NameAddr {
    NameAddr::parse("<sip:12348@10.0.0.2:5060>").expect("contact")
}

fn confirmed_count(events: &[LegEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, LegEvent::Confirmed))
        .count()
}

#[test]
fn pair_answer_and_agent_side_bye_end_both_once() {
    let mut pair = Pair::new(1, 0.0, UasScript::RingThenAnswerAfter(ms(2000)));
    pair.run_for(ms(5000));
    assert_eq!(pair.uac.state(), LegState::Confirmed);
    assert_eq!(pair.uas().state(), LegState::Confirmed);
    assert!(pair.uac_events.contains(&LegEvent::Progress {
        status: 180,
        sdp: None
    }));

    let now = pair.now;
    pair.uas().hangup(now);
    pair.run_for(ms(40_000));
    assert_eq!(
        ended(&pair.uas_events),
        vec![(EndReason::LocalHangup, Side::Local)]
    );
    assert_eq!(
        ended(&pair.uac_events),
        vec![(EndReason::RemoteHangup, Side::Remote)]
    );
    assert_eq!(pair.uac.poll_timeout(), None);
    assert_eq!(pair.uas().poll_timeout(), None);
}

#[test]
fn lossy_link_2xx_retransmission_and_ack_still_confirm_both_and_bye_ends_both() {
    let mut total_dropped = 0;
    for seed in 0..40 {
        let mut pair = Pair::new(seed, 0.35, UasScript::RingThenAnswerAfter(ms(1000)));
        pair.run_for(ms(40_000));
        total_dropped += pair.link.dropped_dialog_layer;
        assert_eq!(pair.uac.state(), LegState::Confirmed, "seed {seed}");
        assert_eq!(pair.uas().state(), LegState::Confirmed, "seed {seed}");
        assert_eq!(confirmed_count(&pair.uas_events), 1, "seed {seed}");
        assert_eq!(confirmed_count(&pair.uac_events), 1, "seed {seed}");

        // The agent side (our UAC leg) hangs up.
        let now = pair.now;
        pair.uac.hangup(now);
        pair.run_for(ms(40_000));
        assert_eq!(
            ended(&pair.uac_events),
            vec![(EndReason::LocalHangup, Side::Local)],
            "seed {seed}"
        );
        assert_eq!(
            ended(&pair.uas_events),
            vec![(EndReason::RemoteHangup, Side::Remote)],
            "seed {seed}"
        );
    }
    assert!(
        total_dropped > 20,
        "the link really lost 2xx/ACKs: {total_dropped}"
    );
}

#[test]
fn cancel_crossing_200_ok_is_acked_then_byed_and_both_end_once() {
    let mut pair = Pair::new(5, 0.0, UasScript::RingOnly);
    pair.run_for(ms(1000));
    assert_eq!(pair.uac.state(), LegState::Early);
    // Both act at the same instant: the 200 and the CANCEL cross on the wire.
    let now = pair.now;
    pair.uas()
        .answer(now, Bytes::from_static(b"v=0\r\n"))
        .expect("answer");
    pair.uac.cancel(now);
    pair.run_for(ms(40_000));

    assert_eq!(
        ended(&pair.uac_events),
        vec![(EndReason::Cancelled, Side::Local)]
    );
    assert!(
        !pair
            .uac_events
            .iter()
            .any(|e| matches!(e, LegEvent::Answered { .. })),
        "a cancelled leg is never reported answered"
    );
    // The UAS saw its 200 ACKed (confirmed) and then the BYE.
    assert_eq!(confirmed_count(&pair.uas_events), 1);
    assert_eq!(
        ended(&pair.uas_events),
        vec![(EndReason::RemoteHangup, Side::Remote)]
    );
}

#[test]
fn unanswered_uas_is_cancelled_by_uac_ring_timeout() {
    let mut pair = Pair::new(6, 0.0, UasScript::RingOnly);
    pair.run_for(ms(15_000));
    let now = pair.now;
    pair.uac.cancel(now);
    pair.run_for(ms(40_000));
    assert_eq!(
        ended(&pair.uac_events),
        vec![(EndReason::Cancelled, Side::Local)]
    );
    assert_eq!(
        ended(&pair.uas_events),
        vec![(EndReason::Cancelled, Side::Remote)]
    );
}

/// Random hang-ups by either side at random moments, with loss: every run ends both legs
/// exactly once (the ACD's "never stuck ringing / on call" invariant).
#[test]
fn every_path_ends_each_leg_exactly_once() {
    let mut rng = StdRng::seed_from_u64(2026);
    for seed in 0..60 {
        let answer_after = ms(rng.random_range(0..3000));
        let act_after = ms(rng.random_range(0..6000));
        let actor = rng.random_range(0..4u8);
        let mut pair = Pair::new(seed, 0.2, UasScript::RingThenAnswerAfter(answer_after));
        pair.run_for(act_after);
        let now = pair.now;
        let uas_acts = actor >= 2 && pair.uas.is_some();
        match (actor, pair.uas.as_mut()) {
            (0, _) => pair.uac.hangup(now),
            (1, _) => pair.uac.cancel(now),
            (2, Some(uas)) => uas.hangup(now),
            (_, Some(uas)) => uas.media_timeout(now),
            (_, None) => pair.uac.media_timeout(now),
        }
        pair.run_for(ms(120_000));
        assert_eq!(
            ended(&pair.uac_events).len(),
            1,
            "seed {seed}: {:?}",
            pair.uac_events
        );
        if pair.uas.is_some() {
            assert_eq!(
                ended(&pair.uas_events).len(),
                1,
                "seed {seed}: {:?}",
                pair.uas_events
            );
        }
        assert!(pair.uac.is_ended());
        // Who hung up first is the side that acted, seen from both legs.
        let (uac_side, uas_side) = if uas_acts {
            (Side::Remote, Side::Local)
        } else {
            (Side::Local, Side::Remote)
        };
        assert!(
            ended(&pair.uac_events)
                .iter()
                .all(|(_, who)| *who == uac_side),
            "seed {seed}: {:?}",
            pair.uac_events
        );
        assert!(
            ended(&pair.uas_events)
                .iter()
                .all(|(_, who)| *who == uas_side),
            "seed {seed}: {:?}",
            pair.uas_events
        );
    }
}

#[test]
fn ringing_forever_without_cancel_is_cancelled_by_the_max_ringing_backstop() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let invite = requests(&drain(|| leg.poll_output()))
        .first()
        .copied()
        .cloned()
        .expect("INVITE");
    leg.handle_response(
        t0 + ms(50),
        Response::for_request(&invite, 180, "Ringing", "a"),
    );
    drain(|| leg.poll_output());
    let at = leg.poll_timeout().expect("backstop armed");
    assert_eq!(at, t0 + ms(50) + Duration::from_secs(180));
    leg.handle_timeout(at);
    let out = drain(|| leg.poll_output());
    assert_eq!(
        requests(&out).first().map(|r| r.method.clone()),
        Some(Method::Cancel)
    );
    leg.handle_response(
        at + ms(30),
        Response::for_request(&invite, 487, "Terminated", "a"),
    );
    assert_eq!(
        ended(&events(&drain(|| leg.poll_output()))),
        vec![(EndReason::NoAnswer, Side::Local)]
    );
}

#[test]
fn late_responses_after_giving_up_stop_the_callee_without_new_events() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let invite = requests(&drain(|| leg.poll_output()))
        .first()
        .copied()
        .cloned()
        .expect("INVITE");
    let guard = leg.poll_timeout().expect("guard");
    leg.handle_timeout(guard);
    assert_eq!(
        ended(&events(&drain(|| leg.poll_output()))),
        vec![(EndReason::NoAnswer, Side::Local)]
    );
    // The callee's phone starts ringing after all: CANCEL it.
    leg.handle_response(
        guard + ms(10),
        Response::for_request(&invite, 180, "Ringing", "a"),
    );
    let out = drain(|| leg.poll_output());
    assert_eq!(
        requests(&out).first().map(|r| r.method.clone()),
        Some(Method::Cancel)
    );
    // And if it answered anyway: ACK and BYE, still no event.
    leg.handle_response(guard + ms(20), agent_response(&invite, 200, "a"));
    let out = drain(|| leg.poll_output());
    let methods: Vec<Method> = requests(&out).iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, vec![Method::Ack, Method::Bye]);
    assert!(events(&out).is_empty());
    assert_eq!(leg.poll_timeout(), None);
}

#[test]
fn agent_bye_on_outbound_leg_gets_200_and_ends_with_remote_hangup() {
    let t0 = Instant::now();
    let mut leg = OutboundLeg::new(t0, LegConfig::default(), agent_params(), 3);
    let invite = requests(&drain(|| leg.poll_output()))
        .first()
        .copied()
        .cloned()
        .expect("INVITE");
    leg.handle_response(t0 + ms(100), agent_response(&invite, 200, "agent-tag"));
    drain(|| leg.poll_output());
    let local_tag = leg.dialog_id().expect("dialog").local_tag.clone();
    let bye = parse_request(&format!(
        "BYE sip:12348@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bKagentbye
Max-Forwards: 70
From: <sip:agent1001@hotline.example>;tag=agent-tag
To: \"12348\" <sip:12348@10.0.0.1>;tag={local_tag}
Call-ID: b-leg-1@10.0.0.1
CSeq: 7 BYE
Content-Length: 0

"
    ));
    leg.handle_request(t0 + ms(9000), bye);
    let out = drain(|| leg.poll_output());
    assert_eq!(statuses(&out), vec![(200, "BYE".to_string())]);
    assert_eq!(
        ended(&events(&out)),
        vec![(EndReason::RemoteHangup, Side::Remote)]
    );
}

#[test]
fn delayed_offer_reinvite_reports_the_answer_carried_in_the_ack() {
    let t0 = Instant::now();
    let mut leg = confirmed_inbound(t0);
    leg.handle_request(t0 + ms(100), caller_request(&leg, "INVITE", 11, ""));
    let out = drain(|| leg.poll_output());
    assert_eq!(events(&out), vec![LegEvent::Reinvite { sdp: Bytes::new() }]);
    leg.answer_reinvite(t0 + ms(120), Bytes::from_static(b"v=0\r\noffer\r\n"))
        .expect("offer in 2xx");
    drain(|| leg.poll_output());
    let mut ack = caller_request(&leg, "ACK", 11, "Content-Type: application/sdp\n");
    ack.body = Bytes::from_static(b"v=0\r\nanswer\r\n");
    leg.handle_request(t0 + ms(150), ack);
    assert_eq!(
        events(&drain(|| leg.poll_output())),
        vec![LegEvent::AckAnswer {
            sdp: Bytes::from_static(b"v=0\r\nanswer\r\n")
        }]
    );
}
