//! Callback in queue, in the shell (`CALL-CALLBACK`): one task per attempt.
//!
//! When a callback's turn comes the ACD reserves an agent and emits `PlaceCallback`;
//! [`crate::server::acd::AcdShell`] starts one attempt task (`spawn`):
//!
//! 1. **the agent first**: the reserved agent's phone rings (From = the caller's
//!    number, so the agent sees whom they are calling back). The ACD times this ring
//!    like any offer (`ring_timeout_secs`); a miss puts the callback back in its place;
//! 2. once the agent answers, they hear hold music while **the caller is dialled**
//!    through the outbound trunk — only with a [`crate::server::outbound::DialPermit`] for the caller's own
//!    number (see [`crate::server::outbound`]) — for `callback_ring_secs`;
//! 3. the caller answers: both legs are bridged, recorded in stereo like an inbound
//!    queue call (caller left, agent right), until either hangs up.
//!
//! Why the agent first (the order, and what preview / agent-reserved callback
//! in call centres does): the caller was promised a person, not another queue — they
//! must never answer to hold music or a robot; the hotline never rings a citizen
//! without someone ready (no "abandoned outbound" calls); and the agent sees the
//! caller's number and earlier orders before the phone rings. The price is the agent's
//! time while the caller's phone rings (at most `callback_ring_secs`).
//!
//! Every attempt is reported to the ACD (`CallbackOutcome`: it retries after
//! `callback_retry_delay_secs` up to `callback_max_attempts`, then a work order says
//! "call back by hand"), is a `queue_log` row, and is a `call_logged` event on the
//! call's work order ([`crate::server::call_orders`]) with its time, agent, result and
//! recording.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::media::bridge::{RelayDirection, Relayed};
use crate::media::player::{BargeIn, Player, Playlist};
use crate::media::recorder::{Channel, WavRecorder, recording_path};
use crate::queue::{AgentId, CallbackResult, LegFailure, Party, QueueInput};
use crate::server::acd::{AcdCommand, AcdShell};
use crate::server::calls::{MediaContext, create_recorder};
use crate::server::outbound::Dial;
use crate::server::outleg::{
    DATAGRAM, LegTimer, OutLeg, Prepared, attempt_result, recv_rtcp, recv_rtp,
};
use crate::server::sip::SipShell;
use crate::sip::call_leg::LegEvent;
use crate::sip::endpoint::CallHandle;
use crate::ticket::model::{CallAttemptResult, CallId};

/// Backstop on the agent's ring (the ACD cancels it after `ring_timeout_secs`).
const AGENT_RING_BACKSTOP: Duration = Duration::from_secs(180);
/// Longest callback conversation before the server ends it.
const MAX_CALL: Duration = Duration::from_secs(4 * 3600);

/// One attempt the ACD asked for.
#[derive(Debug, Clone)]
pub(crate) struct CallbackJob {
    /// The queue call whose caller is called back.
    pub call: CallId,
    /// The reserved agent.
    pub agent: AgentId,
    /// The caller's number (checked again by the outbound rule).
    pub number: String,
    /// How long the caller's phone rings.
    pub caller_ring: Duration,
}

/// Start the attempt; `commands` is the call's ACD channel (already registered).
pub(crate) fn spawn(
    acd: Arc<AcdShell>,
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    job: CallbackJob,
    command_tx: mpsc::UnboundedSender<AcdCommand>,
    commands: mpsc::UnboundedReceiver<AcdCommand>,
) {
    tokio::spawn(run(acd, shell, ctx, job, command_tx, commands));
}

fn to_attempt(result: CallbackResult) -> CallAttemptResult {
    match result {
        CallbackResult::Answered => CallAttemptResult::Answered,
        CallbackResult::NoAnswer => CallAttemptResult::NoAnswer,
        CallbackResult::Busy => CallAttemptResult::Busy,
        CallbackResult::Unreachable => CallAttemptResult::Unreachable,
    }
}

struct Attempt {
    acd: Arc<AcdShell>,
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    job: CallbackJob,
    events_tx: mpsc::UnboundedSender<(CallHandle, LegEvent)>,
    agent: Option<OutLeg>,
    caller: Option<OutLeg>,
    to_agent: Option<RelayDirection>,
    to_caller: Option<RelayDirection>,
    /// Hold music to the agent while the caller's phone rings.
    player: Option<Player>,
    recorder: Option<WavRecorder<std::fs::File>>,
    recording: Option<PathBuf>,
    hangup_at: Option<Instant>,
    /// The final report to the ACD (sent once the task has let go of its legs).
    report: Option<QueueInput>,
    done: bool,
}

async fn run(
    acd: Arc<AcdShell>,
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    job: CallbackJob,
    command_tx: mpsc::UnboundedSender<AcdCommand>,
    mut commands: mpsc::UnboundedReceiver<AcdCommand>,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut attempt = Attempt {
        acd: acd.clone(),
        shell,
        ctx: ctx.clone(),
        job: job.clone(),
        events_tx,
        agent: None,
        caller: None,
        to_agent: None,
        to_caller: None,
        player: None,
        recorder: None,
        recording: None,
        hangup_at: None,
        report: None,
        done: false,
    };
    attempt.ring_agent(Instant::now()).await;
    let mut agent_buf = [0u8; DATAGRAM];
    let mut caller_buf = [0u8; DATAGRAM];
    let mut agent_rtcp = [0u8; DATAGRAM];
    let mut caller_rtcp = [0u8; DATAGRAM];
    let mut commands_open = true;
    while !attempt.done {
        let deadline = tokio::time::Instant::from_std(attempt.next_deadline());
        let command = async {
            if commands_open {
                commands.recv().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            r = recv_rtp(attempt.agent.as_ref(), &mut agent_buf) => {
                if let Ok((n, from)) = r {
                    attempt.on_agent_rtp(Instant::now(), from, &mut agent_buf, n);
                }
            }
            r = recv_rtp(attempt.caller.as_ref(), &mut caller_buf) => {
                if let Ok((n, from)) = r {
                    attempt.on_caller_rtp(Instant::now(), from, &mut caller_buf, n);
                }
            }
            r = recv_rtcp(attempt.agent.as_ref(), &mut agent_rtcp) => {
                if let (Ok((n, from)), Some(leg)) = (r, attempt.agent.as_mut()) {
                    leg.receive_rtcp(Instant::now(), from, agent_rtcp.get(..n).unwrap_or_default());
                }
            }
            r = recv_rtcp(attempt.caller.as_ref(), &mut caller_rtcp) => {
                if let (Ok((n, from)), Some(leg)) = (r, attempt.caller.as_mut()) {
                    leg.receive_rtcp(Instant::now(), from, caller_rtcp.get(..n).unwrap_or_default());
                }
            }
            event = events.recv() => match event {
                Some((leg, event)) => attempt.on_event(Instant::now(), leg, event).await,
                None => attempt.done = true,
            },
            command = command => match command {
                Some(command) => attempt.on_command(Instant::now(), command),
                None => commands_open = false,
            },
            _ = tokio::time::sleep_until(deadline) => attempt.on_timers(Instant::now()),
        }
    }
    attempt.finish(Instant::now(), &command_tx);
}

impl Attempt {
    fn agent_id(&self) -> &AgentId {
        &self.job.agent
    }

    fn wall(&self) -> chrono::DateTime<chrono::FixedOffset> {
        self.ctx.clock.now()
    }

    /// Log the attempt's result on the call's work order.
    fn log_attempt(&self, result: CallbackResult, recording: Option<String>) {
        if let Some(orders) = self.ctx.call_orders() {
            orders.callback_attempt(
                &self.job.call,
                self.agent_id().as_str(),
                to_attempt(result),
                recording,
                self.wall(),
            );
        }
    }

    /// The final report: sent once the legs are let go (see [`Attempt::finish`]).
    fn end_with(&mut self, report: Option<QueueInput>) {
        if self.report.is_none() {
            self.report = report;
        }
        self.done = true;
    }

    fn hang_up(&mut self, now: Instant, agent: bool) {
        let leg = if agent {
            self.agent.as_mut()
        } else {
            self.caller.as_mut()
        };
        if let Some(leg) = leg
            && !leg.ended
        {
            leg.ended = true;
            leg.ring_until = None;
            let handle = leg.handle;
            self.shell.drive(|ep| ep.call_hangup(now, handle));
        }
    }

    async fn ring_agent(&mut self, now: Instant) {
        let agent = self.agent_id().clone();
        let contact = self
            .shell
            .drive(|ep| ep.agent_contacts(now, std::slice::from_ref(&agent.0)))
            .unwrap_or_default()
            .into_iter()
            .next();
        let failed = |reason| QueueInput::AgentLegFailed {
            call: self.job.call.clone(),
            agent: agent.clone(),
            reason,
        };
        let Some(contact) = contact else {
            info!(call = %self.job.call.0, %agent, "callback: the reserved agent has no registration");
            self.end_with(Some(failed(LegFailure::Unreachable)));
            return;
        };
        let Some(prepared) = Prepared::open(&self.ctx).await else {
            warn!(call = %self.job.call.0, "callback: no RTP ports for the agent leg");
            self.end_with(Some(failed(LegFailure::Unreachable)));
            return;
        };
        let body = prepared.body();
        let shell = self.shell.clone();
        let tx = self.events_tx.clone();
        let number = self.job.number.clone();
        let dialled = self.shell.drive(|ep| {
            let leg = ep.call_dial(now, &contact, &number, body);
            // Registered while the endpoint is locked: no event of the leg can be lost.
            shell.calls().route_leg(leg, tx);
            leg
        });
        let Some(handle) = dialled else {
            prepared.release(&self.ctx);
            self.end_with(Some(failed(LegFailure::Unreachable)));
            return;
        };
        info!(call = %self.job.call.0, %agent, "callback: ringing the reserved agent");
        let mut leg = prepared.dialled(handle, Some(now + AGENT_RING_BACKSTOP));
        leg.peer_ip = Some(contact.source.addr.ip());
        self.agent = Some(leg);
    }

    /// The agent is on: dial the caller through the trunk (the outbound rule first).
    async fn dial_caller(&mut self, now: Instant) {
        let permit = self.ctx.outbound.permit(Dial::Callback {
            call: &self.job.call,
            number: &self.job.number,
        });
        let permit = match permit {
            Ok(permit) => permit,
            Err(e) => {
                warn!(call = %self.job.call.0, %e, "callback refused by the outbound rule");
                self.caller_failed(now, CallbackResult::Unreachable);
                return;
            }
        };
        let Some(prepared) = Prepared::open(&self.ctx).await else {
            warn!(call = %self.job.call.0, "callback: no RTP ports for the caller leg");
            self.caller_failed(now, CallbackResult::Unreachable);
            return;
        };
        let body = prepared.body();
        let shell = self.shell.clone();
        let tx = self.events_tx.clone();
        let dialled = self.shell.drive(|ep| {
            let leg = permit.place(ep, now, body);
            shell.calls().route_leg(leg, tx);
            leg
        });
        let Some(handle) = dialled else {
            prepared.release(&self.ctx);
            self.caller_failed(now, CallbackResult::Unreachable);
            return;
        };
        info!(
            call = %self.job.call.0,
            number = %crate::ticket::privacy::mask_phone(permit.number()),
            "callback: dialling the caller through the trunk"
        );
        self.caller = Some(prepared.dialled(handle, Some(now + self.job.caller_ring)));
    }

    /// The caller leg did not connect: the agent is released, the ACD retries later.
    fn caller_failed(&mut self, now: Instant, result: CallbackResult) {
        info!(call = %self.job.call.0, result = %crate::logfmt::word(&result), "callback attempt failed");
        self.hang_up(now, false);
        self.hang_up(now, true);
        self.log_attempt(result, None);
        let report = QueueInput::CallbackOutcome {
            call: self.job.call.clone(),
            result,
        };
        self.end_with(Some(report));
    }

    async fn on_event(&mut self, now: Instant, leg: CallHandle, event: LegEvent) {
        if self.agent.as_ref().is_some_and(|a| a.handle == leg) {
            self.on_agent_event(now, event).await;
        } else if self.caller.as_ref().is_some_and(|c| c.handle == leg) {
            self.on_caller_event(now, event);
        } else {
            debug!(?leg, ?event, "callback: event of an unknown leg");
        }
    }

    async fn on_agent_event(&mut self, now: Instant, event: LegEvent) {
        let media_timeout = self.ctx.media_timeout;
        let call = self.job.call.clone();
        let agent = self.agent_id().clone();
        match event {
            LegEvent::Answered { sdp } => {
                let ok = match (self.agent.as_mut(), sdp) {
                    (Some(leg), Some(sdp)) => leg.answered(now, &sdp, media_timeout),
                    _ => false,
                };
                if !ok {
                    warn!(call = %call.0, "callback: the agent's SDP answer is unusable");
                    self.hang_up(now, true);
                    self.end_with(Some(QueueInput::AgentLegFailed {
                        call,
                        agent,
                        reason: LegFailure::Unreachable,
                    }));
                    return;
                }
                info!(call = %call.0, %agent, "callback: the agent answered; calling the caller");
                if let Err(e) = self.acd.input(QueueInput::AgentAnswered {
                    call: call.clone(),
                    agent,
                }) {
                    debug!(call = %call.0, %e, "answer not taken by the ACD");
                }
                // An answer that crossed the ACD letting go (ring timeout): the ACD's
                // HangupAgent command ends the attempt; nobody is dialled.
                let on_call = self.acd.agent_state(&self.job.agent)
                    == Some(crate::queue::AgentState::OnCall { call: call.clone() });
                if self.done || !on_call {
                    return;
                }
                let hold = self
                    .ctx
                    .playlist(&[crate::ivr::prompt::PromptRef::prompt("hold_music")]);
                self.player = Some(Player::new(Playlist::looping(hold), now, BargeIn::Ignore));
                self.dial_caller(now).await;
            }
            LegEvent::Ended { reason, .. } => {
                let answered = self.agent.as_ref().is_some_and(|l| l.session.is_some());
                if let Some(leg) = self.agent.as_mut() {
                    leg.ended = true;
                }
                if !answered {
                    let failure = crate::server::calls::leg_failure(reason);
                    info!(call = %call.0, %agent, %reason, "callback: the agent did not take it");
                    self.end_with(Some(QueueInput::AgentLegFailed {
                        call,
                        agent,
                        reason: failure,
                    }));
                    return;
                }
                let bridged = self.caller.as_ref().is_some_and(OutLeg::is_up);
                if bridged {
                    info!(call = %call.0, "callback: the agent hung up");
                    self.end_bridged(now, Party::Agent);
                } else {
                    // The agent left while the caller's phone rang: this attempt failed.
                    info!(call = %call.0, "callback: the agent hung up before the caller answered");
                    self.hang_up(now, false);
                    self.log_attempt(CallbackResult::NoAnswer, None);
                    self.end_with(Some(QueueInput::CallEnded {
                        call,
                        who_hung_up: Party::Agent,
                    }));
                }
            }
            LegEvent::Reinvite { .. } => {
                if let Some(handle) = self.agent.as_ref().map(|l| l.handle) {
                    self.shell
                        .drive(|ep| ep.call_reject_reinvite(now, handle, 488));
                }
            }
            LegEvent::Refer { .. } => {
                // Transfers of callbacks are not offered.
                if let Some(handle) = self.agent.as_ref().map(|l| l.handle) {
                    self.shell
                        .drive(|ep| ep.call_reject_refer(now, handle, 403));
                }
            }
            other => debug!(call = %call.0, ?other, "callback: agent leg event"),
        }
    }

    fn on_caller_event(&mut self, now: Instant, event: LegEvent) {
        let media_timeout = self.ctx.media_timeout;
        let call = self.job.call.clone();
        match event {
            LegEvent::Answered { sdp } => {
                let ok = match (self.caller.as_mut(), sdp) {
                    (Some(leg), Some(sdp)) => leg.answered(now, &sdp, media_timeout),
                    _ => false,
                };
                if !ok {
                    warn!(call = %call.0, "callback: the caller side's SDP answer is unusable");
                    self.caller_failed(now, CallbackResult::Unreachable);
                    return;
                }
                self.bridge(now);
            }
            LegEvent::Ended { reason, .. } => {
                let answered = self.caller.as_ref().is_some_and(|l| l.session.is_some());
                if let Some(leg) = self.caller.as_mut() {
                    leg.ended = true;
                }
                if answered {
                    info!(call = %call.0, "callback: the caller hung up");
                    self.end_bridged(now, Party::Caller);
                } else {
                    self.caller_failed(now, attempt_result(reason));
                }
            }
            LegEvent::Reinvite { .. } => {
                if let Some(handle) = self.caller.as_ref().map(|l| l.handle) {
                    self.shell
                        .drive(|ep| ep.call_reject_reinvite(now, handle, 488));
                }
            }
            other => debug!(call = %call.0, ?other, "callback: caller leg event"),
        }
    }

    /// The caller answered: bridge to the agent, record, tell the ACD and the order.
    fn bridge(&mut self, now: Instant) {
        let call = self.job.call.clone();
        self.player = None;
        let (Some(agent), Some(caller)) = (self.agent.as_ref(), self.caller.as_ref()) else {
            return;
        };
        let (Some(agent_media), Some(caller_media)) = (agent.media(), caller.media()) else {
            return;
        };
        self.to_agent = agent.relay_into(caller_media);
        self.to_caller = caller.relay_into(agent_media);
        let date = self.wall().date_naive();
        let path = recording_path(
            &self.ctx.recordings_dir,
            date,
            &format!("{}-callback", call.0),
        );
        match create_recorder(&path, now, true) {
            Ok(r) => {
                self.recorder = Some(r);
                self.recording = Some(path);
            }
            Err(e) => {
                crate::server::metrics::recording_failed();
                warn!(call = %call.0, %e, "callback recording not started; the call goes on");
            }
        }
        self.hangup_at = Some(now + MAX_CALL);
        info!(call = %call.0, agent = %self.job.agent, recording = %crate::logfmt::word(&self.recording), "callback: the caller answered; bridged");
        if let Err(e) = self.acd.input(QueueInput::CallbackOutcome {
            call: call.clone(),
            result: CallbackResult::Answered,
        }) {
            debug!(call = %call.0, %e, "callback answer not taken by the ACD");
        }
        let recording = self.recording.as_ref().map(|p| p.display().to_string());
        self.log_attempt(CallbackResult::Answered, recording);
    }

    /// A bridged callback ends (`who` hung up): the other leg too.
    fn end_bridged(&mut self, now: Instant, who: Party) {
        self.hang_up(now, true);
        self.hang_up(now, false);
        self.ctx.outbound.callback_done(&self.job.call);
        if let Some(orders) = self.ctx.call_orders() {
            orders.callback_completed(&self.job.call, self.wall());
        }
        self.end_with(Some(QueueInput::CallEnded {
            call: self.job.call.clone(),
            who_hung_up: who,
        }));
    }

    fn on_command(&mut self, now: Instant, command: AcdCommand) {
        match command {
            AcdCommand::CancelRing { agent } | AcdCommand::HangupAgent { agent }
                if agent == self.job.agent =>
            {
                // The ACD let go of this attempt (ring timeout, an answer it no longer
                // wanted): nothing more is reported.
                info!(call = %self.job.call.0, %agent, "callback: the ACD lets go of the attempt");
                self.hang_up(now, true);
                self.hang_up(now, false);
                self.end_with(None);
            }
            other => debug!(call = %self.job.call.0, ?other, "callback: ACD command ignored"),
        }
    }

    fn on_agent_rtp(&mut self, now: Instant, from: std::net::SocketAddr, buf: &mut [u8], n: usize) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        if !agent.accept(now, from, buf.get(..n).unwrap_or_default()) {
            return;
        }
        let (Some(relay), Some(caller)) = (self.to_caller.as_mut(), self.caller.as_mut()) else {
            return;
        };
        let Some(out) = caller.outbound() else {
            return;
        };
        let mut pcm = [0i16; DATAGRAM];
        let Ok(relayed) = relay.relay(now, buf, n, Some(&mut pcm), out) else {
            return;
        };
        let (len, decoded) = match relayed {
            Relayed::Audio { len, decoded, .. } => (len, decoded),
            Relayed::Dtmf { len, .. } => (len, 0),
            Relayed::Dropped(_) => return,
        };
        caller.send_relayed(now, buf.get(..len).unwrap_or_default(), &relayed);
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) =
                recorder.push(now, Channel::Agent, pcm.get(..decoded).unwrap_or_default())
        {
            crate::server::metrics::recording_failed();
            warn!(call = %self.job.call.0, %e, "callback recording failed; the call goes on");
        }
    }

    fn on_caller_rtp(
        &mut self,
        now: Instant,
        from: std::net::SocketAddr,
        buf: &mut [u8],
        n: usize,
    ) {
        let Some(caller) = self.caller.as_mut() else {
            return;
        };
        if !caller.accept(now, from, buf.get(..n).unwrap_or_default()) {
            return;
        }
        let (Some(relay), Some(agent)) = (self.to_agent.as_mut(), self.agent.as_mut()) else {
            return;
        };
        let Some(out) = agent.outbound() else {
            return;
        };
        let mut pcm = [0i16; DATAGRAM];
        let Ok(relayed) = relay.relay(now, buf, n, Some(&mut pcm), out) else {
            return;
        };
        let (len, decoded) = match relayed {
            Relayed::Audio { len, decoded, .. } => (len, decoded),
            Relayed::Dtmf { len, .. } => (len, 0),
            Relayed::Dropped(_) => return,
        };
        agent.send_relayed(now, buf.get(..len).unwrap_or_default(), &relayed);
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) =
                recorder.push(now, Channel::Caller, pcm.get(..decoded).unwrap_or_default())
        {
            crate::server::metrics::recording_failed();
            warn!(call = %self.job.call.0, %e, "callback recording failed; the call goes on");
        }
    }

    fn next_deadline(&self) -> Instant {
        [
            self.agent.as_ref().and_then(OutLeg::poll_timeout),
            self.caller.as_ref().and_then(OutLeg::poll_timeout),
            self.player.as_ref().and_then(Player::poll_timeout),
            self.recorder.as_ref().map(WavRecorder::poll_timeout),
            self.hangup_at,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }

    fn on_timers(&mut self, now: Instant) {
        let agent_timer = self.agent.as_mut().map(|l| l.timers(now));
        let caller_timer = self.caller.as_mut().map(|l| l.timers(now));
        if let (Some(player), Some(agent)) = (self.player.as_mut(), self.agent.as_mut()) {
            agent.play(now, player);
        }
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.tick(now)
        {
            crate::server::metrics::recording_failed();
            warn!(call = %self.job.call.0, %e, "callback recording failed; the call goes on");
        }
        match agent_timer {
            Some(LegTimer::RingTimeout) => {
                info!(call = %self.job.call.0, "callback: the agent's phone rang out (backstop)");
                self.hang_up(now, true);
            }
            Some(LegTimer::MediaTimeout) => {
                info!(call = %self.job.call.0, "callback: media timeout on the agent leg");
                self.media_timeout(now);
                return;
            }
            _ => {}
        }
        match caller_timer {
            Some(LegTimer::RingTimeout) => {
                info!(call = %self.job.call.0, "callback: the caller did not answer in time");
                // CANCEL: the leg's end (Cancelled) reports the attempt as not answered.
                self.hang_up(now, false);
                self.caller_failed(now, CallbackResult::NoAnswer);
            }
            Some(LegTimer::MediaTimeout) => {
                info!(call = %self.job.call.0, "callback: media timeout on the caller leg");
                self.media_timeout(now);
            }
            _ => {}
        }
        if self.hangup_at.is_some_and(|t| now >= t) {
            self.hangup_at = None;
            self.end_bridged(now, Party::System);
        }
    }

    fn media_timeout(&mut self, now: Instant) {
        let bridged = self.caller.as_ref().is_some_and(|l| l.session.is_some());
        if bridged {
            self.end_bridged(now, Party::System);
        } else {
            self.caller_failed(now, CallbackResult::Unreachable);
        }
    }

    /// Let go of everything, then send the final report (so a retry the report starts
    /// at once finds this attempt gone).
    fn finish(mut self, now: Instant, command_tx: &mpsc::UnboundedSender<AcdCommand>) {
        self.hang_up(now, true);
        self.hang_up(now, false);
        if let Some(recorder) = self.recorder.take()
            && let Err(e) = recorder.finish()
        {
            crate::server::metrics::recording_failed();
            warn!(call = %self.job.call.0, %e, "callback recording incomplete");
        }
        for leg in [self.agent.take(), self.caller.take()]
            .into_iter()
            .flatten()
        {
            leg.release(&self.ctx);
        }
        self.acd.leg_held(&self.job.call, &self.job.agent, false);
        self.acd.callback_task_ended(&self.job.call, command_tx);
        if let Some(report) = self.report.take()
            && let Err(e) = self.acd.input(report)
        {
            debug!(call = %self.job.call.0, %e, "callback report not taken by the ACD");
        }
        self.acd.callback_settled(&self.job.call);
    }
}
