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

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::queue::{AgentId, CallbackResult, LegFailure, Party, QueueInput};
use crate::server::acd::{AcdCommand, AcdShell};
use crate::server::calls::MediaContext;
use crate::server::outbound::Dial;
use crate::server::outleg::{LegTimer, Side, TwoLegs, Wake, attempt_result};
use crate::server::sip::SipShell;
use crate::sip::call_leg::LegEvent;
use crate::ticket::model::{CallAttemptResult, CallId};

/// Backstop on the agent's ring (the ACD cancels it after `ring_timeout_secs`).
const AGENT_RING_BACKSTOP: Duration = Duration::from_secs(180);

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

/// How an attempt is written on the work order (the order's callback calls too).
impl From<CallbackResult> for CallAttemptResult {
    fn from(result: CallbackResult) -> CallAttemptResult {
        match result {
            CallbackResult::Answered => CallAttemptResult::Answered,
            CallbackResult::NoAnswer => CallAttemptResult::NoAnswer,
            CallbackResult::Busy => CallAttemptResult::Busy,
            CallbackResult::Unreachable => CallAttemptResult::Unreachable,
        }
    }
}

struct Attempt {
    acd: Arc<AcdShell>,
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    job: CallbackJob,
    legs: TwoLegs,
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
    let mut attempt = Attempt {
        acd: acd.clone(),
        shell,
        ctx: ctx.clone(),
        legs: TwoLegs::new(format!("{}-callback", job.call.0)),
        job: job.clone(),
        report: None,
        done: false,
    };
    attempt.ring_agent(Instant::now()).await;
    let mut commands_open = true;
    while !attempt.done {
        let command = async {
            if commands_open {
                commands.recv().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            wake = attempt.legs.wait() => match wake {
                Wake::Event(leg, event) => attempt.on_event(Instant::now(), leg, event).await,
                Wake::Timers { agent, caller, max_call } => {
                    attempt.on_timers(Instant::now(), agent, caller, max_call);
                }
                Wake::Closed => attempt.done = true,
            },
            command = command => match command {
                Some(command) => attempt.on_command(Instant::now(), command),
                None => commands_open = false,
            },
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
                result.into(),
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

    fn hang_up(&mut self, now: Instant, side: Side) {
        self.legs.hang_up(&self.shell, now, side);
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
        let rung = self
            .legs
            .ring_agent(
                &self.shell,
                &self.ctx,
                now,
                &contact,
                &self.job.number,
                AGENT_RING_BACKSTOP,
            )
            .await;
        if let Err(e) = rung {
            warn!(call = %self.job.call.0, %e, "callback: the agent leg was not placed");
            self.end_with(Some(failed(LegFailure::Unreachable)));
            return;
        }
        info!(call = %self.job.call.0, %agent, "callback: ringing the reserved agent");
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
        let dialled = self
            .legs
            .dial_caller(&self.shell, &self.ctx, now, &permit, self.job.caller_ring)
            .await;
        if let Err(e) = dialled {
            warn!(call = %self.job.call.0, %e, "callback: the caller leg was not placed");
            self.caller_failed(now, CallbackResult::Unreachable);
            return;
        }
        info!(
            call = %self.job.call.0,
            number = %crate::ticket::privacy::mask_phone(permit.number()),
            "callback: dialling the caller through the trunk"
        );
    }

    /// The caller leg did not connect: the agent is released, the ACD retries later.
    fn caller_failed(&mut self, now: Instant, result: CallbackResult) {
        info!(call = %self.job.call.0, result = %crate::logfmt::word(&result), "callback attempt failed");
        self.hang_up(now, Side::Caller);
        self.hang_up(now, Side::Agent);
        self.log_attempt(result, None);
        let report = QueueInput::CallbackOutcome {
            call: self.job.call.clone(),
            result,
        };
        self.end_with(Some(report));
    }

    async fn on_event(
        &mut self,
        now: Instant,
        leg: crate::sip::endpoint::CallHandle,
        event: LegEvent,
    ) {
        match self.legs.side_of(leg) {
            Some(Side::Agent) => self.on_agent_event(now, event).await,
            Some(Side::Caller) => self.on_caller_event(now, event),
            None => debug!(?leg, ?event, "callback: event of an unknown leg"),
        }
    }

    async fn on_agent_event(&mut self, now: Instant, event: LegEvent) {
        let media_timeout = self.ctx.media_timeout;
        let call = self.job.call.clone();
        let agent = self.agent_id().clone();
        match event {
            LegEvent::Answered { sdp } => {
                if !self
                    .legs
                    .answered(Side::Agent, now, sdp.as_deref(), media_timeout)
                {
                    warn!(call = %call.0, "callback: the agent's SDP answer is unusable");
                    self.hang_up(now, Side::Agent);
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
                self.legs.hold(&self.ctx, now);
                self.dial_caller(now).await;
            }
            LegEvent::Ended { reason, .. } => {
                let answered = self.legs.was_answered(Side::Agent);
                self.legs.mark_ended(Side::Agent);
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
                if self.legs.is_up(Side::Caller) {
                    info!(call = %call.0, "callback: the agent hung up");
                    self.end_bridged(now, Party::Agent);
                } else {
                    // The agent left while the caller's phone rang: this attempt failed.
                    info!(call = %call.0, "callback: the agent hung up before the caller answered");
                    self.hang_up(now, Side::Caller);
                    self.log_attempt(CallbackResult::NoAnswer, None);
                    self.end_with(Some(QueueInput::CallEnded {
                        call,
                        who_hung_up: Party::Agent,
                    }));
                }
            }
            // Transfers of callbacks are not offered.
            event @ (LegEvent::Reinvite { .. } | LegEvent::Refer { .. }) => {
                self.legs.refuse(&self.shell, now, Side::Agent, &event);
            }
            other => debug!(call = %call.0, ?other, "callback: agent leg event"),
        }
    }

    fn on_caller_event(&mut self, now: Instant, event: LegEvent) {
        let media_timeout = self.ctx.media_timeout;
        let call = self.job.call.clone();
        match event {
            LegEvent::Answered { sdp } => {
                if !self
                    .legs
                    .answered(Side::Caller, now, sdp.as_deref(), media_timeout)
                {
                    warn!(call = %call.0, "callback: the caller side's SDP answer is unusable");
                    self.caller_failed(now, CallbackResult::Unreachable);
                    return;
                }
                self.bridge(now);
            }
            LegEvent::Ended { reason, .. } => {
                let answered = self.legs.was_answered(Side::Caller);
                self.legs.mark_ended(Side::Caller);
                if answered {
                    info!(call = %call.0, "callback: the caller hung up");
                    self.end_bridged(now, Party::Caller);
                } else {
                    self.caller_failed(now, attempt_result(reason));
                }
            }
            event @ LegEvent::Reinvite { .. } => {
                self.legs.refuse(&self.shell, now, Side::Caller, &event);
            }
            other => debug!(call = %call.0, ?other, "callback: caller leg event"),
        }
    }

    /// The caller answered: bridge to the agent, record, tell the ACD and the order.
    fn bridge(&mut self, now: Instant) {
        let call = self.job.call.clone();
        if !self
            .legs
            .bridge(&self.ctx, now, &format!("{}-callback", call.0))
        {
            return;
        }
        let recording = self
            .legs
            .recording
            .as_ref()
            .map(|p| p.display().to_string());
        info!(call = %call.0, agent = %self.job.agent, recording = %crate::logfmt::word(&recording), "callback: the caller answered; bridged");
        if let Err(e) = self.acd.input(QueueInput::CallbackOutcome {
            call: call.clone(),
            result: CallbackResult::Answered,
        }) {
            debug!(call = %call.0, %e, "callback answer not taken by the ACD");
        }
        self.log_attempt(CallbackResult::Answered, recording);
    }

    /// A bridged callback ends (`who` hung up): the other leg too.
    fn end_bridged(&mut self, now: Instant, who: Party) {
        self.hang_up(now, Side::Agent);
        self.hang_up(now, Side::Caller);
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
                self.hang_up(now, Side::Agent);
                self.hang_up(now, Side::Caller);
                self.end_with(None);
            }
            other => debug!(call = %self.job.call.0, ?other, "callback: ACD command ignored"),
        }
    }

    fn on_timers(&mut self, now: Instant, agent: LegTimer, caller: LegTimer, max_call: bool) {
        match agent {
            LegTimer::RingTimeout => {
                info!(call = %self.job.call.0, "callback: the agent's phone rang out (backstop)");
                self.hang_up(now, Side::Agent);
            }
            LegTimer::MediaTimeout => {
                info!(call = %self.job.call.0, "callback: media timeout on the agent leg");
                self.media_timeout(now);
                return;
            }
            LegTimer::Quiet => {}
        }
        match caller {
            LegTimer::RingTimeout => {
                info!(call = %self.job.call.0, "callback: the caller did not answer in time");
                // CANCEL: the leg's end (Cancelled) reports the attempt as not answered.
                self.hang_up(now, Side::Caller);
                self.caller_failed(now, CallbackResult::NoAnswer);
            }
            LegTimer::MediaTimeout => {
                info!(call = %self.job.call.0, "callback: media timeout on the caller leg");
                self.media_timeout(now);
            }
            LegTimer::Quiet => {}
        }
        if max_call {
            self.end_bridged(now, Party::System);
        }
    }

    fn media_timeout(&mut self, now: Instant) {
        if self.legs.was_answered(Side::Caller) {
            self.end_bridged(now, Party::System);
        } else {
            self.caller_failed(now, CallbackResult::Unreachable);
        }
    }

    /// Let go of everything, then send the final report (so a retry the report starts
    /// at once finds this attempt gone).
    fn finish(self, now: Instant, command_tx: &mpsc::UnboundedSender<AcdCommand>) {
        let Attempt {
            acd,
            shell,
            ctx,
            job,
            legs,
            report,
            ..
        } = self;
        legs.finish(&shell, &ctx, now);
        acd.leg_held(&job.call, &job.agent, false);
        acd.callback_task_ended(&job.call, command_tx);
        if let Some(report) = report
            && let Err(e) = acd.input(report)
        {
            debug!(call = %job.call.0, %e, "callback report not taken by the ACD");
        }
        acd.callback_settled(&job.call);
    }
}
