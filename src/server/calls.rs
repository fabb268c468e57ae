//! The call layer of the shell: one tokio task per inbound call owns its RTP/RTCP sockets
//! and drives the sans-IO media cores (`RtpSession`, `Player`, `DtmfReceiver`,
//! `InbandDetector`, `WavRecorder`); signalling stays in the [`Endpoint`] and reaches the
//! task as [`LegEvent`]s through an unbounded channel (a handful per call).
//!
//! Why a task per call (and not one shared socket loop): each call has its own pair of
//! sockets anyway (RFC 3550 port pairs), tokio multiplexes them on the same two worker
//! threads, and a task keeps all of a call's state local (no lock per packet). The packet
//! path uses fixed stack buffers: no allocation per packet.
//!
//! Every call ends exactly once: the task's single exit path finishes the recording,
//! closes the sockets and releases the ports, whatever ended it (BYE, CANCEL, media
//! timeout, end of the prompt, the server's maximum call time).

use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{Config, TestExtensionConfig, TestExtensionKind};
use crate::media::dtmf::{DtmfReceiver, InbandDetector, TelephoneEvent};
use crate::media::player::{BargeIn, Player, Playlist, Segment, load_wav};
use crate::media::port_pool::{PortPair, PortPool};
use crate::media::recorder::{Channel, RecorderConfig, WavRecorder, recording_path};
use crate::media::rtp::{RtpPacket, RtpSession, RtpSessionConfig, SessionEvent, write_packet};
use crate::media::sdp::{self, LocalMedia, Negotiated, SessionDescription};
use crate::server::sip::SipShell;
use crate::sip::call_leg::{EndReason, LegEvent, Side};
use crate::sip::endpoint::{CallEvent, CallHandle, IncomingCall};

/// A G.711 frame of 20 ms.
const FRAME_BYTES: usize = 160;
/// Receive buffer: larger than any RTP datagram we accept.
const DATAGRAM: usize = 2048;

/// Wall clock with an optional offset (`--now` / `HOTLINE_FAKE_NOW`) for decisions only
/// (hours, dates of recordings, CDR times); timers always run on the monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock {
    offset: chrono::Duration,
}

impl WallClock {
    /// A clock that reads `fake_now` at the moment of the call.
    pub fn starting_at(fake_now: chrono::DateTime<chrono::FixedOffset>) -> WallClock {
        WallClock {
            offset: fake_now.with_timezone(&chrono::Utc) - chrono::Utc::now(),
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        (chrono::Utc::now() + self.offset).with_timezone(&crate::calendar::shanghai())
    }
}

/// Shared settings and resources of the media plane.
#[derive(Debug)]
pub struct MediaContext {
    pool: Mutex<PortPool>,
    bind_ip: IpAddr,
    public_ip: IpAddr,
    media_timeout: Duration,
    recordings_dir: PathBuf,
    prompts_dir: PathBuf,
    extensions: Vec<TestExtensionConfig>,
    max_test_call: Duration,
    pub clock: WallClock,
    active_calls: AtomicUsize,
}

/// Problems building the media plane from config.
#[derive(Debug, thiserror::Error)]
pub enum MediaSetupError {
    #[error("RTP port range")]
    Ports(#[from] crate::media::port_pool::PortPoolError),
}

impl MediaContext {
    /// # Errors
    /// The RTP port range holds no pair.
    pub fn from_config(
        config: &Config,
        sip_local: SocketAddr,
        clock: WallClock,
    ) -> Result<MediaContext, MediaSetupError> {
        let media = &config.media;
        let pool = PortPool::new(media.rtp_port_min, media.rtp_port_max)?;
        let bind_ip = media.bind_address.unwrap_or(sip_local.ip());
        let public_ip = media.public_address.unwrap_or(if bind_ip.is_unspecified() {
            if sip_local.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                sip_local.ip()
            }
        } else {
            bind_ip
        });
        Ok(MediaContext {
            pool: Mutex::new(pool),
            bind_ip,
            public_ip,
            media_timeout: Duration::from_secs(media.media_timeout_secs),
            recordings_dir: config.server.recordings_dir.clone(),
            prompts_dir: media.prompts_dir.clone(),
            extensions: config.test_extensions.clone(),
            max_test_call: Duration::from_secs(media.max_test_call_secs),
            clock,
            active_calls: AtomicUsize::new(0),
        })
    }

    /// Calls with media open right now.
    pub fn active_calls(&self) -> usize {
        self.active_calls.load(Ordering::Relaxed)
    }

    fn release(&self, ports: PortPair) {
        if let Ok(mut pool) = self.pool.lock()
            && let Err(e) = pool.release(ports)
        {
            warn!(%e, "port pair released twice");
        }
    }

    /// Allocate and bind an RTP/RTCP pair, skipping pairs another process holds.
    async fn open_sockets(&self) -> Option<(PortPair, UdpSocket, UdpSocket)> {
        let attempts = self.pool.lock().map(|p| p.capacity()).unwrap_or(0);
        for _ in 0..attempts.min(64) {
            let pair = self.pool.lock().ok()?.allocate()?;
            let rtp = UdpSocket::bind(SocketAddr::new(self.bind_ip, pair.rtp)).await;
            let rtcp = UdpSocket::bind(SocketAddr::new(self.bind_ip, pair.rtcp)).await;
            match (rtp, rtcp) {
                (Ok(rtp), Ok(rtcp)) => return Some((pair, rtp, rtcp)),
                _ => {
                    debug!(port = pair.rtp, "RTP port pair busy; trying another");
                    if let Ok(mut pool) = self.pool.lock() {
                        let _ = pool.mark_bad(pair);
                    }
                }
            }
        }
        None
    }

    fn service_for(&self, call: &IncomingCall) -> Option<Service> {
        self.extensions
            .iter()
            .find(|e| e.number == call.dialled)
            .map(|e| Service::Test(e.clone()))
    }
}

/// What a call is for.
#[derive(Debug, Clone)]
enum Service {
    Test(TestExtensionConfig),
}

/// Routes endpoint call events to the call tasks.
#[derive(Debug)]
pub struct CallRouter {
    media: Arc<MediaContext>,
    tasks: Mutex<HashMap<CallHandle, mpsc::UnboundedSender<LegEvent>>>,
}

impl CallRouter {
    pub fn new(media: Arc<MediaContext>) -> CallRouter {
        CallRouter {
            media,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn dispatch(&self, shell: &Arc<SipShell>, call: CallHandle, event: CallEvent) {
        match event {
            CallEvent::Incoming(incoming) => {
                let (tx, rx) = mpsc::unbounded_channel();
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.insert(call, tx);
                }
                tokio::spawn(run_call(
                    shell.clone(),
                    self.media.clone(),
                    call,
                    *incoming,
                    rx,
                ));
            }
            CallEvent::Leg(event) => {
                let ended = matches!(event, LegEvent::Ended { .. });
                if let Ok(mut tasks) = self.tasks.lock() {
                    if let Some(tx) = tasks.get(&call) {
                        // A task that already finished has dropped its receiver: fine.
                        let _ = tx.send(event);
                    }
                    if ended {
                        tasks.remove(&call);
                    }
                }
            }
        }
    }
}

/// How a call ended, for the log and the CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    Leg {
        reason: EndReason,
        who: Side,
    },
    /// The call task gave up waiting for the signalling to confirm the end.
    Unconfirmed,
}

async fn run_call(
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    handle: CallHandle,
    incoming: IncomingCall,
    events: mpsc::UnboundedReceiver<LegEvent>,
) {
    let Some(service) = ctx.service_for(&incoming) else {
        // 480 rather than 404: the number may be served by another node or later.
        info!(%handle, dialled = %incoming.dialled, "no service at this number; 480");
        shell.drive(|ep| ep.call_reject(Instant::now(), handle, 480));
        return;
    };
    let offer = std::str::from_utf8(&incoming.sdp)
        .ok()
        .and_then(|text| SessionDescription::parse(text).ok());
    let Some(offer) = offer else {
        info!(%handle, "INVITE without a usable SDP offer; 488");
        shell.drive(|ep| ep.call_reject(Instant::now(), handle, 488));
        return;
    };
    let Some((ports, rtp, rtcp)) = ctx.open_sockets().await else {
        warn!(%handle, "no free RTP ports; 503");
        shell.drive(|ep| ep.call_reject(Instant::now(), handle, 503));
        return;
    };
    let session_id = u64::from(rand::random::<u32>());
    let local = LocalMedia::g711(ctx.public_ip, ports.rtp, session_id, 1);
    let answer = match sdp::answer(&offer, &local) {
        Ok(answer) => answer,
        Err(e) => {
            info!(%handle, %e, "SDP offer refused");
            drop((rtp, rtcp));
            ctx.release(ports);
            shell.drive(|ep| ep.call_reject(Instant::now(), handle, e.sip_status()));
            return;
        }
    };
    let now = Instant::now();
    let answered = shell.drive(|ep| {
        let _ = ep.call_ring(now, handle);
        ep.call_answer(now, handle, Bytes::from(answer.sdp.to_string()))
    });
    if !matches!(answered, Some(Ok(()))) {
        // The caller cancelled while we were setting up.
        drop((rtp, rtcp));
        ctx.release(ports);
        debug!(%handle, "call gone before the answer");
        return;
    }
    ctx.active_calls.fetch_add(1, Ordering::Relaxed);
    info!(
        %handle,
        call_id = %incoming.call_id,
        dialled = %incoming.dialled,
        caller = %incoming.caller,
        codec = ?answer.media.codec,
        rtp_port = ports.rtp,
        "call answered"
    );
    let mut call = CallMedia::new(
        &ctx,
        shell.clone(),
        handle,
        &incoming,
        service,
        answer.media,
        local,
        rtp,
        rtcp,
        now,
    );
    let end = call.run(events).await;
    let summary = call.finish();
    ctx.active_calls.fetch_sub(1, Ordering::Relaxed);
    ctx.release(ports);
    info!(
        %handle,
        call_id = %incoming.call_id,
        end = ?end,
        rtp_received = summary.received,
        rtp_sent = summary.sent,
        digits = %summary.digits,
        recording = ?summary.recording,
        "call ended"
    );
}

#[derive(Debug, Default)]
struct CallSummary {
    received: u64,
    sent: u64,
    digits: String,
    recording: Option<PathBuf>,
}

/// One answered call's media state.
struct CallMedia {
    shell: Arc<SipShell>,
    handle: CallHandle,
    kind: TestExtensionKind,
    negotiated: Negotiated,
    local: LocalMedia,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    session: RtpSession,
    player: Option<Player>,
    recorder: Option<WavRecorder<std::fs::File>>,
    recording: Option<PathBuf>,
    dtmf: DtmfReceiver,
    inband: Option<InbandDetector>,
    digits: String,
    sent: u64,
    media_timeout: Duration,
    /// The server hangs up at this moment (maximum call time, end of prompt …).
    hangup_at: Option<Instant>,
    /// We asked the endpoint to end the call; waiting for `Ended` until this moment.
    ending_since: Option<Instant>,
}

impl CallMedia {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ctx: &MediaContext,
        shell: Arc<SipShell>,
        handle: CallHandle,
        incoming: &IncomingCall,
        service: Service,
        negotiated: Negotiated,
        local: LocalMedia,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        now: Instant,
    ) -> CallMedia {
        let Service::Test(extension) = service;
        let mut config = RtpSessionConfig::g711(
            rand::random(),
            rand::random(),
            rand::random(),
            format!("hotline-{}", handle.0),
        );
        config.media_timeout = if negotiated.is_held() {
            None
        } else {
            Some(ctx.media_timeout)
        };
        let session = RtpSession::new(
            config,
            now,
            std::time::SystemTime::now(),
            negotiated.remote(),
        );
        let mut player = None;
        let mut recorder = None;
        let mut recording = None;
        let mut inband = None;
        match extension.kind {
            TestExtensionKind::Play => {
                let file = extension
                    .prompt
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("greeting.wav"));
                let path = ctx.prompts_dir.join(file);
                match load_wav(&path) {
                    Ok(prompt) => {
                        player = Some(Player::new(
                            Playlist::once(vec![
                                Segment::Silence(Duration::from_millis(200)),
                                Segment::Prompt(prompt),
                            ]),
                            now,
                            BargeIn::Ignore,
                        ));
                    }
                    Err(e) => warn!(%handle, %e, path = %path.display(), "prompt not loaded"),
                }
            }
            TestExtensionKind::Record => {
                let date = ctx.clock.now().date_naive();
                let path = recording_path(&ctx.recordings_dir, date, &incoming.call_id);
                let created = path
                    .parent()
                    .map(std::fs::create_dir_all)
                    .unwrap_or(Ok(()))
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        let config = RecorderConfig::default();
                        if extension.stereo {
                            WavRecorder::create_stereo(&path, now, config)
                        } else {
                            WavRecorder::create_mono(&path, now, config)
                        }
                        .map_err(|e| e.to_string())
                    });
                match created {
                    Ok(r) => {
                        recorder = Some(r);
                        recording = Some(path);
                    }
                    Err(e) => warn!(%handle, %e, "recording not started; the call goes on"),
                }
            }
            TestExtensionKind::Dtmf => inband = Some(InbandDetector::new()),
            TestExtensionKind::Echo => {}
        }
        CallMedia {
            shell,
            handle,
            kind: extension.kind,
            negotiated,
            local,
            rtp,
            rtcp,
            session,
            player,
            recorder,
            recording,
            dtmf: DtmfReceiver::default(),
            inband,
            digits: String::new(),
            sent: 0,
            media_timeout: ctx.media_timeout,
            hangup_at: Some(now + ctx.max_test_call),
            ending_since: None,
        }
    }

    fn next_deadline(&self) -> Instant {
        [
            self.session.poll_timeout(),
            self.player.as_ref().and_then(Player::poll_timeout),
            self.dtmf.poll_timeout(),
            self.recorder.as_ref().map(WavRecorder::poll_timeout),
            self.hangup_at,
            self.ending_since.map(|t| t + Duration::from_secs(40)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }

    async fn run(&mut self, mut events: mpsc::UnboundedReceiver<LegEvent>) -> CallEnd {
        let mut buf = [0u8; DATAGRAM];
        let mut rtcp_buf = [0u8; DATAGRAM];
        loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            tokio::select! {
                received = self.rtp.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received
                        && let Some(datagram) = buf.get(..n)
                    {
                        self.on_rtp(Instant::now(), from, datagram);
                    }
                }
                received = self.rtcp.recv_from(&mut rtcp_buf) => {
                    if let Ok((n, from)) = received
                        && let Some(datagram) = rtcp_buf.get(..n)
                        && let Err(e) = self.session.receive_rtcp(Instant::now(), from, datagram)
                    {
                        debug!(handle = %self.handle, %e, "bad RTCP");
                    }
                }
                event = events.recv() => match event {
                    Some(LegEvent::Ended { reason, who_hung_up }) => {
                        return CallEnd::Leg { reason, who: who_hung_up };
                    }
                    Some(LegEvent::Reinvite { sdp }) => self.on_reinvite(Instant::now(), &sdp),
                    Some(other) => debug!(handle = %self.handle, ?other, "leg event"),
                    None => return CallEnd::Unconfirmed,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if self.on_timers(Instant::now()) {
                        return CallEnd::Unconfirmed;
                    }
                }
            }
        }
    }

    fn on_rtp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(packet) = RtpPacket::parse(datagram) else {
            return;
        };
        if !matches!(
            self.session.receive_rtp(now, from, &packet),
            crate::media::rtp::ReceiveOutcome::Accepted { .. }
        ) {
            return;
        }
        if Some(packet.payload_type) == self.negotiated.dtmf_payload_type {
            if let Ok(event) = TelephoneEvent::parse(packet.payload) {
                self.dtmf.receive(now, packet.timestamp, &event);
                self.collect_digits();
            }
            if self.kind == TestExtensionKind::Echo {
                self.send(
                    now,
                    packet.payload_type,
                    packet.marker,
                    packet.timestamp,
                    packet.payload,
                );
            }
            return;
        }
        if packet.payload_type != self.negotiated.payload_type {
            return;
        }
        if self.kind == TestExtensionKind::Echo {
            self.send(
                now,
                packet.payload_type,
                packet.marker,
                packet.timestamp,
                packet.payload,
            );
            return;
        }
        let mut pcm = [0i16; DATAGRAM];
        let Some(pcm_out) = pcm.get_mut(..packet.payload.len()) else {
            return;
        };
        let decoded = self.negotiated.codec.decode_into(packet.payload, pcm_out);
        let samples = pcm.get(..decoded).unwrap_or_default();
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.push(now, Channel::Caller, samples)
        {
            warn!(handle = %self.handle, %e, "recording failed; the call goes on");
        }
        if let Some(inband) = self.inband.as_mut() {
            for digit in inband.process(samples) {
                let c = digit.digit.as_char();
                info!(handle = %self.handle, digit = %c, via = "inband", "dtmf digit heard");
                self.digits.push(c);
            }
        }
    }

    fn collect_digits(&mut self) {
        while let Some(digit) = self.dtmf.poll_digit() {
            let c = digit.digit.as_char();
            info!(handle = %self.handle, digit = %c, via = "rfc4733", "dtmf digit heard");
            self.digits.push(c);
        }
    }

    /// Send one RTP packet to the (latched) remote, unless the remote holds the call.
    fn send(
        &mut self,
        now: Instant,
        payload_type: u8,
        marker: crate::media::rtp::Marker,
        media_timestamp: u32,
        payload: &[u8],
    ) {
        if self.negotiated.is_held() {
            return;
        }
        let Some(to) = self.session.remote_rtp() else {
            return;
        };
        let header =
            self.session
                .next_header(now, payload_type, marker, media_timestamp, payload.len());
        let mut out = [0u8; DATAGRAM];
        if let Ok(len) = write_packet(&header, payload, &mut out)
            && let Some(bytes) = out.get(..len)
        {
            // Never block the call task: a full socket buffer drops the packet.
            if self.rtp.try_send_to(bytes, to).is_ok() {
                self.sent += 1;
            }
        }
    }

    /// Returns true when the task should stop (the end was never confirmed).
    fn on_timers(&mut self, now: Instant) -> bool {
        self.session.handle_timeout(now);
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::RtcpDue => {
                    let mut out = [0u8; 512];
                    if let (Ok(len), Some(to)) = (
                        self.session.build_rtcp(now, &mut out),
                        self.session.remote_rtcp(),
                    ) && let Some(bytes) = out.get(..len)
                    {
                        let _ = self.rtcp.try_send_to(bytes, to);
                    }
                }
                SessionEvent::MediaTimeout { silent_for } => {
                    info!(handle = %self.handle, ?silent_for, "media timeout: no RTP; ending the call");
                    let handle = self.handle;
                    self.shell.drive(|ep| ep.call_media_timeout(now, handle));
                    self.ending_since.get_or_insert(now);
                }
            }
        }
        if let Some(mut player) = self.player.take() {
            let pt = self.negotiated.payload_type;
            let codec = self.negotiated.codec;
            while let Some(frame) = player.poll(now) {
                let mut payload = [0u8; FRAME_BYTES];
                let n = codec.encode_into(&frame.samples, &mut payload);
                let payload = payload.get(..n).unwrap_or_default();
                self.send(now, pt, frame.marker, frame.timestamp, payload);
            }
            if player.is_finished() && self.kind == TestExtensionKind::Play {
                self.hangup_at = Some(now + Duration::from_millis(500));
            } else {
                self.player = Some(player);
            }
        }
        self.dtmf.handle_timeout(now);
        self.collect_digits();
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.tick(now)
        {
            warn!(handle = %self.handle, %e, "recording failed; the call goes on");
        }
        if self.hangup_at.is_some_and(|t| t <= now) {
            self.hangup_at = None;
            let handle = self.handle;
            debug!(%handle, "server hangs up");
            self.shell.drive(|ep| ep.call_hangup(now, handle));
            self.ending_since.get_or_insert(now);
        }
        self.ending_since
            .is_some_and(|t| now >= t + Duration::from_secs(40))
    }

    fn on_reinvite(&mut self, now: Instant, sdp: &[u8]) {
        let handle = self.handle;
        let offer = std::str::from_utf8(sdp)
            .ok()
            .and_then(|t| SessionDescription::parse(t).ok());
        let Some(offer) = offer else {
            self.shell
                .drive(|ep| ep.call_reject_reinvite(now, handle, 488));
            return;
        };
        self.local.session_version += 1;
        match sdp::answer(&offer, &self.local) {
            Ok(answer) => {
                self.session.set_remote(now, answer.media.remote());
                let timeout = (!answer.media.is_held()).then_some(self.media_timeout);
                self.session.set_media_timeout(now, timeout);
                info!(%handle, held = answer.media.is_held(), "re-INVITE answered");
                self.negotiated = answer.media;
                let body = Bytes::from(answer.sdp.to_string());
                self.shell
                    .drive(|ep| ep.call_answer_reinvite(now, handle, body));
            }
            Err(e) => {
                self.local.session_version -= 1;
                self.shell
                    .drive(|ep| ep.call_reject_reinvite(now, handle, e.sip_status()));
            }
        }
    }

    fn finish(&mut self) -> CallSummary {
        if let Some(recorder) = self.recorder.take() {
            match recorder.finish() {
                Ok(summary) => debug!(handle = %self.handle, ?summary, "recording finished"),
                Err(e) => warn!(handle = %self.handle, %e, "recording incomplete"),
            }
        }
        CallSummary {
            received: self.session.stats().received,
            sent: self.sent,
            digits: self.digits.clone(),
            recording: self.recording.clone(),
        }
    }
}
