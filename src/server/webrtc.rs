//! Browser softphones: the agents whose console registered its browser as their phone
//! (a WebSocket, `GET /api/softphone`), and the WebRTC legs rung on them.
//!
//! A browser leg is one more kind of agent leg of a call (`calls/legs.rs` places it when
//! the rung agent has a browser registered; the browser is then rung instead of the
//! agent's SIP phone). It has a handle of its own, from a range the SIP endpoint never
//! uses, and reports the same [`LegEvent`]s a SIP leg does (`Progress`, `Answered` with
//! an SDP, `Ended`), so the call's core and the shell's bridge treat it as any agent leg.
//!
//! Media: the leg's [`WebRtcLeg`] (ICE-lite, DTLS-SRTP) runs in a task of its own that
//! owns the browser-facing UDP socket; the G.711 frames it exchanges with the call task
//! cross loopback as plain RTP to the agent leg's RTP socket, so the call's relays
//! (one SSRC, continuous sequence and timestamps toward each side) and the recorder
//! are those of a SIP agent leg.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::media::webrtc::{WebRtcError, WebRtcLeg, WebRtcOutput};
use crate::sip::call_leg::{EndReason, LegEvent, Side};
use crate::sip::endpoint::CallHandle;

/// Browser legs' handles start here (the SIP endpoint counts up from 1).
const BROWSER_HANDLES: u64 = 1 << 62;

/// Whether `handle` is a browser leg's.
#[must_use]
pub fn is_browser(handle: CallHandle) -> bool {
    handle.0 >= BROWSER_HANDLES
}

/// What the server tells a registered browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToBrowser {
    /// The browser is the agent's phone from now on.
    Registered { agent: String },
    /// A call rings: answer with `answer`, refuse with `hangup`.
    Ring { leg: String, caller: String },
    /// Our SDP answer to the browser's offer (ICE-lite, DTLS-SRTP, PCMU/PCMA).
    Answer { leg: String, sdp: String },
    /// The leg ended (the caller hung up, another device answered, the ring ran out).
    Hangup { leg: String },
    /// The browser's message was refused.
    Error { leg: Option<String>, reason: String },
}

/// What a registered browser tells the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromBrowser {
    /// Take the ringing call: the browser's SDP offer (its microphone track, ICE
    /// gathering complete).
    Answer { leg: String, sdp: String },
    /// Refuse the ringing call, or hang up.
    Hangup { leg: String },
    /// Hold the caller (`on`: the caller hears the hold music, the agent nothing) or
    /// take the call back.
    Hold { leg: String, on: bool },
}

/// Why a browser's answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum SoftphoneError {
    #[error("no such ringing call on this agent's browser")]
    UnknownLeg,
    #[error("the call was already answered")]
    AlreadyAnswered,
    #[error("no UDP port for the browser's media: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    WebRtc(#[from] WebRtcError),
}

struct Device {
    id: u64,
    tx: mpsc::UnboundedSender<ToBrowser>,
}

struct BrowserLeg {
    agent: String,
    device: u64,
    /// The call task's leg events.
    task: mpsc::UnboundedSender<(CallHandle, LegEvent)>,
    /// The agent leg's RTP socket, where the browser's frames go as plain RTP.
    agent_rtp: SocketAddr,
    /// Stops the media task (answered legs).
    stop: Option<oneshot::Sender<()>>,
    /// The agent leg's view of the answered browser: a plain RTP phone at this
    /// loopback address with this G.711 payload type.
    plain: Option<(SocketAddr, u8)>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, Device>,
    legs: HashMap<u64, BrowserLeg>,
}

/// The registered browsers and their legs (one per server, shared by the API and the
/// call tasks).
pub struct BrowserPhones {
    inner: Mutex<Inner>,
    next: AtomicU64,
    /// The address browsers reach our media at (`[media] public_address`), and the
    /// one we bind.
    public_ip: IpAddr,
    bind_ip: IpAddr,
}

impl std::fmt::Debug for BrowserPhones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserPhones")
            .field("public_ip", &self.public_ip)
            .finish_non_exhaustive()
    }
}

impl BrowserPhones {
    #[must_use]
    pub fn new(public_ip: IpAddr, bind_ip: IpAddr) -> BrowserPhones {
        BrowserPhones {
            inner: Mutex::new(Inner::default()),
            next: AtomicU64::new(1),
            public_ip,
            bind_ip,
        }
    }

    /// The browser of `agent` registers (replacing an earlier one, whose socket is
    /// told nothing more): its id and what to send it.
    pub fn register(&self, agent: &str) -> (u64, mpsc::UnboundedReceiver<ToBrowser>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(ToBrowser::Registered {
            agent: agent.to_string(),
        });
        if let Ok(mut inner) = self.inner.lock() {
            inner.devices.insert(agent.to_string(), Device { id, tx });
        }
        info!(%agent, device = id, "browser registered as the agent's phone");
        (id, rx)
    }

    /// The browser `device` of `agent` is gone: its legs end as if it hung up.
    pub fn unregister(&self, agent: &str, device: u64) {
        let gone: Vec<u64> = match self.inner.lock() {
            Ok(mut inner) => {
                if inner.devices.get(agent).is_some_and(|d| d.id == device) {
                    inner.devices.remove(agent);
                }
                inner
                    .legs
                    .iter()
                    .filter(|(_, l)| l.device == device)
                    .map(|(h, _)| *h)
                    .collect()
            }
            Err(_) => return,
        };
        for leg in gone {
            self.end(leg, EndReason::RemoteHangup, Side::Remote, false);
        }
        info!(%agent, device, "browser unregistered");
    }

    /// The agents with a registered browser.
    #[must_use]
    pub fn agents(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|i| i.devices.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `agent` has a registered browser.
    #[must_use]
    pub fn has(&self, agent: &str) -> bool {
        self.inner
            .lock()
            .is_ok_and(|i| i.devices.contains_key(agent))
    }

    /// Ring the browser of `agent` for a call whose events go to `task`; the agent
    /// leg's RTP socket is at `agent_rtp`. `None` when the agent has no browser.
    pub fn ring(
        &self,
        agent: &str,
        caller: &str,
        task: mpsc::UnboundedSender<(CallHandle, LegEvent)>,
        agent_rtp: SocketAddr,
    ) -> Option<CallHandle> {
        let handle = CallHandle(BROWSER_HANDLES + self.next.fetch_add(1, Ordering::Relaxed));
        let mut inner = self.inner.lock().ok()?;
        let device = inner.devices.get(agent)?;
        let rung = device.tx.send(ToBrowser::Ring {
            leg: handle.0.to_string(),
            caller: caller.to_string(),
        });
        if rung.is_err() {
            return None;
        }
        let device = device.id;
        let _ = task.send((
            handle,
            LegEvent::Progress {
                status: 180,
                sdp: None,
            },
        ));
        inner.legs.insert(
            handle.0,
            BrowserLeg {
                agent: agent.to_string(),
                device,
                task,
                agent_rtp,
                stop: None,
                plain: None,
            },
        );
        Some(handle)
    }

    /// The call ends the leg (another device answered, the caller hung up, the ring
    /// ran out): the browser is told, the leg reports its end.
    pub fn hang_up(&self, handle: CallHandle) {
        self.end(handle.0, EndReason::LocalHangup, Side::Local, true);
    }

    fn end(&self, leg: u64, reason: EndReason, who: Side, tell_browser: bool) {
        let Some((mut l, device)) = self.inner.lock().ok().and_then(|mut inner| {
            let l = inner.legs.remove(&leg)?;
            let device = inner
                .devices
                .get(&l.agent)
                .filter(|d| d.id == l.device)
                .map(|d| d.tx.clone());
            Some((l, device))
        }) else {
            return;
        };
        let answered = l.stop.is_some();
        if let Some(stop) = l.stop.take() {
            let _ = stop.send(());
        }
        if tell_browser && let Some(tx) = device {
            let _ = tx.send(ToBrowser::Hangup {
                leg: leg.to_string(),
            });
        }
        let reason = match reason {
            EndReason::LocalHangup if !answered => EndReason::Cancelled,
            EndReason::RemoteHangup if !answered => EndReason::Rejected { status: 603 },
            other => other,
        };
        debug!(leg, %reason, "browser leg ended");
        let _ = l.task.send((
            CallHandle(leg),
            LegEvent::Ended {
                reason,
                who_hung_up: who,
            },
        ));
    }

    /// A message from the browser of `agent` (`device`); what to answer it.
    pub async fn from_browser(
        &self,
        agent: &str,
        device: u64,
        message: FromBrowser,
    ) -> Option<ToBrowser> {
        match message {
            FromBrowser::Hangup { leg } => {
                if let Some(id) = self.leg_of(agent, device, &leg) {
                    self.end(id, EndReason::RemoteHangup, Side::Remote, false);
                }
                None
            }
            FromBrowser::Hold { leg, on } => self.hold(agent, device, &leg, on),
            FromBrowser::Answer { leg, sdp } => {
                match self.answer(agent, device, &leg, &sdp).await {
                    Ok(sdp) => Some(ToBrowser::Answer { leg, sdp }),
                    Err(e) => {
                        warn!(%agent, %leg, %e, "browser's answer refused");
                        Some(ToBrowser::Error {
                            leg: Some(leg),
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
    }

    fn leg_of(&self, agent: &str, device: u64, leg: &str) -> Option<u64> {
        let id: u64 = leg.parse().ok()?;
        let inner = self.inner.lock().ok()?;
        inner
            .legs
            .get(&id)
            .filter(|l| l.agent == agent && l.device == device)
            .map(|_| id)
    }

    async fn answer(
        &self,
        agent: &str,
        device: u64,
        leg: &str,
        offer: &str,
    ) -> Result<String, SoftphoneError> {
        let id = self
            .leg_of(agent, device, leg)
            .ok_or(SoftphoneError::UnknownLeg)?;
        let public = UdpSocket::bind(SocketAddr::new(self.bind_ip, 0))
            .await
            .map_err(SoftphoneError::Socket)?;
        let port = public.local_addr().map_err(SoftphoneError::Socket)?.port();
        let loopback = if self.bind_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.bind_ip
        };
        let inner_socket = UdpSocket::bind(SocketAddr::new(loopback, 0))
            .await
            .map_err(SoftphoneError::Socket)?;
        let inner_addr = inner_socket.local_addr().map_err(SoftphoneError::Socket)?;
        let (media, answer) =
            WebRtcLeg::answer(Instant::now(), offer, SocketAddr::new(self.public_ip, port))?;
        let pt = media.payload_type();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (task, agent_rtp) = {
            let mut inner = self.inner.lock().map_err(|_| SoftphoneError::UnknownLeg)?;
            let l = inner.legs.get_mut(&id).ok_or(SoftphoneError::UnknownLeg)?;
            if l.stop.is_some() {
                return Err(SoftphoneError::AlreadyAnswered);
            }
            l.stop = Some(stop_tx);
            l.plain = Some((inner_addr, pt));
            (l.task.clone(), l.agent_rtp)
        };
        info!(%agent, leg = id, port, codec = pt, "browser answered");
        tokio::spawn(run_media(
            id,
            media,
            public,
            inner_socket,
            agent_rtp,
            stop_rx,
            task.clone(),
        ));
        let _ = task.send((
            CallHandle(id),
            LegEvent::Answered {
                sdp: Some(plain_sdp(id, inner_addr, pt, "sendrecv")),
            },
        ));
        Ok(answer)
    }

    /// The browser holds the caller or takes the call back: to the call, the same
    /// re-INVITE a SIP phone sends (`a=sendonly` / `a=sendrecv`).
    fn hold(&self, agent: &str, device: u64, leg: &str, on: bool) -> Option<ToBrowser> {
        let refused = |reason: &str| {
            Some(ToBrowser::Error {
                leg: Some(leg.to_string()),
                reason: reason.to_string(),
            })
        };
        let Some(id) = self.leg_of(agent, device, leg) else {
            return refused("no such call on this agent's browser");
        };
        let Some((task, (addr, pt))) = self.inner.lock().ok().and_then(|i| {
            i.legs
                .get(&id)
                .and_then(|l| Some((l.task.clone(), l.plain?)))
        }) else {
            return refused("the call is not answered");
        };
        let direction = if on { "sendonly" } else { "sendrecv" };
        let _ = task.send((
            CallHandle(id),
            LegEvent::Reinvite {
                sdp: plain_sdp(id, addr, pt, direction),
            },
        ));
        info!(%agent, leg = id, on, "browser holds the call");
        None
    }
}

/// The agent leg's view of an answered browser: a plain RTP phone at `addr` (our
/// loopback socket) sending G.711 of payload type `pt`.
fn plain_sdp(id: u64, addr: SocketAddr, pt: u8, direction: &str) -> bytes::Bytes {
    let name = if pt == 8 { "PCMA" } else { "PCMU" };
    let ip = addr.ip();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    bytes::Bytes::from(format!(
        "v=0\r\no=- {id} 1 IN {family} {ip}\r\ns=webrtc\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\na={direction}\r\n",
        addr.port()
    ))
}

/// A plain RTP packet of one G.711 frame (toward the agent leg's socket).
fn rtp_packet(pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.extend_from_slice(&[0x80, pt & 0x7f]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The media task of an answered browser leg: the browser's socket on one side, the
/// agent leg's RTP socket (over loopback) on the other.
async fn run_media(
    leg: u64,
    mut media: WebRtcLeg,
    public: UdpSocket,
    inner: UdpSocket,
    agent_rtp: SocketAddr,
    mut stop: oneshot::Receiver<()>,
    task: mpsc::UnboundedSender<(CallHandle, LegEvent)>,
) {
    let mut buf = vec![0u8; 2048];
    let mut inner_buf = vec![0u8; 2048];
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    loop {
        let wait = loop {
            match media.poll() {
                WebRtcOutput::Wait(at) => break at,
                WebRtcOutput::Transmit { to, datagram } => {
                    let _ = public.send_to(&datagram, to).await;
                }
                WebRtcOutput::Audio {
                    payload_type,
                    timestamp,
                    payload,
                } => {
                    seq = seq.wrapping_add(1);
                    let packet = rtp_packet(payload_type, seq, timestamp, ssrc, &payload);
                    let _ = inner.send_to(&packet, agent_rtp).await;
                }
                WebRtcOutput::Connected => info!(leg, "browser media connected (DTLS-SRTP)"),
                WebRtcOutput::Ended => {
                    info!(leg, "browser media ended");
                    let _ = task.send((
                        CallHandle(leg),
                        LegEvent::Ended {
                            reason: EndReason::MediaTimeout,
                            who_hung_up: Side::Remote,
                        },
                    ));
                    return;
                }
            }
        };
        let deadline = tokio::time::Instant::from_std(wait.max(Instant::now()));
        tokio::select! {
            received = public.recv_from(&mut buf) => {
                if let Ok((n, from)) = received
                    && let Some(d) = buf.get(..n)
                {
                    media.receive(Instant::now(), from, d);
                }
            }
            received = inner.recv_from(&mut inner_buf) => {
                if let Ok((n, from)) = received
                    && from == agent_rtp
                    && let Some(packet) = inner_buf.get(..n)
                    && let Ok(rtp) = crate::media::rtp::RtpPacket::parse(packet)
                    && rtp.payload_type == media.payload_type()
                {
                    media.send_audio(Instant::now(), rtp.timestamp, rtp.payload);
                }
            }
            () = tokio::time::sleep_until(deadline) => media.timeout(Instant::now()),
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_handles_never_meet_the_endpoint_s() {
        assert!(!is_browser(CallHandle(1)));
        assert!(is_browser(CallHandle(BROWSER_HANDLES + 1)));
    }

    #[tokio::test]
    async fn a_rung_browser_hears_the_ring_and_the_call_hears_its_refusal() {
        let phones = BrowserPhones::new([127, 0, 0, 1].into(), [127, 0, 0, 1].into());
        let (device, mut rx) = phones.register("1001");
        assert!(matches!(
            rx.recv().await,
            Some(ToBrowser::Registered { .. })
        ));
        let (task, mut events) = mpsc::unbounded_channel();
        assert!(
            phones
                .ring(
                    "1002",
                    "138",
                    task.clone(),
                    "127.0.0.1:1".parse().expect("addr")
                )
                .is_none()
        );
        let handle = phones
            .ring("1001", "138", task, "127.0.0.1:1".parse().expect("addr"))
            .expect("rung");
        let Some(ToBrowser::Ring { leg, .. }) = rx.recv().await else {
            panic!("no ring");
        };
        assert!(matches!(
            events.recv().await,
            Some((h, LegEvent::Progress { .. })) if h == handle
        ));
        // Another device's hang-up of this leg is ignored.
        let _ = phones
            .from_browser(
                "1001",
                device + 99,
                FromBrowser::Hangup { leg: leg.clone() },
            )
            .await;
        let _ = phones
            .from_browser("1001", device, FromBrowser::Hangup { leg })
            .await;
        assert!(matches!(
            events.recv().await,
            Some((h, LegEvent::Ended { who_hung_up: Side::Remote, reason: EndReason::Rejected { status: 603 } })) if h == handle
        ));
        phones.unregister("1001", device);
        assert!(!phones.has("1001"));
    }

    /// A browser's offer (str0m as the browser).
    fn browser_offer() -> String {
        use str0m::media::{Direction, MediaKind};
        let mut browser = str0m::Rtc::builder()
            .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
            .clear_codecs()
            .enable_pcma(true, false)
            .build(Instant::now());
        browser.add_local_candidate(
            str0m::Candidate::host("127.0.0.1:50000".parse().expect("addr"), "udp")
                .expect("candidate"),
        );
        let mut change = browser.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        change.apply().expect("offer").0.to_sdp_string()
    }

    #[tokio::test]
    async fn an_answered_browser_is_a_plain_rtp_phone_to_the_call_until_it_hangs_up() {
        let phones = BrowserPhones::new([127, 0, 0, 1].into(), [127, 0, 0, 1].into());
        let (device, mut rx) = phones.register("1001");
        let _ = rx.recv().await;
        let (task, mut events) = mpsc::unbounded_channel();
        let handle = phones
            .ring("1001", "138", task, "127.0.0.1:9".parse().expect("addr"))
            .expect("rung");
        let _ = events.recv().await;
        let leg = handle.0.to_string();
        let reply = phones
            .from_browser(
                "1001",
                device,
                FromBrowser::Answer {
                    leg: leg.clone(),
                    sdp: browser_offer(),
                },
            )
            .await;
        let Some(ToBrowser::Answer { sdp, .. }) = reply else {
            panic!("no answer: {reply:?}");
        };
        assert!(
            sdp.contains("a=ice-lite") && sdp.contains("RTP/SAVPF 8"),
            "{sdp}"
        );
        // The call sees a plain PCMA phone on loopback.
        let Some((h, LegEvent::Answered { sdp: Some(plain) })) = events.recv().await else {
            panic!("no answer event");
        };
        assert_eq!(h, handle);
        let plain = String::from_utf8_lossy(&plain).to_string();
        assert!(plain.contains("c=IN IP4 127.0.0.1"), "{plain}");
        assert!(
            plain.contains("RTP/AVP 8") && plain.contains("a=sendrecv"),
            "{plain}"
        );
        // A second answer of the same leg is refused.
        let again = phones
            .from_browser(
                "1001",
                device,
                FromBrowser::Answer {
                    leg: leg.clone(),
                    sdp: browser_offer(),
                },
            )
            .await;
        assert!(matches!(again, Some(ToBrowser::Error { .. })), "{again:?}");
        // Hold is a re-INVITE with a=sendonly to the call.
        let _ = phones
            .from_browser(
                "1001",
                device,
                FromBrowser::Hold {
                    leg: leg.clone(),
                    on: true,
                },
            )
            .await;
        let Some((_, LegEvent::Reinvite { sdp })) = events.recv().await else {
            panic!("no re-INVITE");
        };
        assert!(String::from_utf8_lossy(&sdp).contains("a=sendonly"));
        // The browser hangs up: the leg ends as a phone's BYE.
        let _ = phones
            .from_browser("1001", device, FromBrowser::Hangup { leg })
            .await;
        assert!(matches!(
            events.recv().await,
            Some((h, LegEvent::Ended { reason: EndReason::RemoteHangup, who_hung_up: Side::Remote })) if h == handle
        ));
    }

    #[tokio::test]
    async fn the_call_ending_the_leg_tells_the_browser() {
        let phones = BrowserPhones::new([127, 0, 0, 1].into(), [127, 0, 0, 1].into());
        let (_device, mut rx) = phones.register("1001");
        let _ = rx.recv().await;
        let (task, mut events) = mpsc::unbounded_channel();
        let handle = phones
            .ring("1001", "138", task, "127.0.0.1:9".parse().expect("addr"))
            .expect("rung");
        let _ = rx.recv().await;
        let _ = events.recv().await;
        phones.hang_up(handle);
        assert!(matches!(rx.recv().await, Some(ToBrowser::Hangup { .. })));
        assert!(matches!(
            events.recv().await,
            Some((
                _,
                LegEvent::Ended {
                    reason: EndReason::Cancelled,
                    who_hung_up: Side::Local
                }
            ))
        ));
    }
}
