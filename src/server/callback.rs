//! Callback in queue (`CALL-CALLBACK`): one task per attempt, the shell around a
//! sans-IO [`PlacedCall`] that decides each step (`crate::call::placed`).
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

use crate::call::placed::{PlacedCall, PlacedEnd, PlacedInput, PlacedOutput};
use crate::queue::{AgentId, CallbackResult, Party, QueueInput};
use crate::server::acd::{AcdCommand, AcdShell};
use crate::server::calls::MediaContext;
use crate::server::outbound::Dial;
use crate::server::outleg::{TwoLegs, Wake, lost_audio};
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
    /// What the attempt does next, decided sans-IO (`crate::call::placed`).
    core: PlacedCall,
    legs: TwoLegs,
    /// The final report to the ACD (sent once the task has let go of its legs).
    report: Option<QueueInput>,
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
        core: PlacedCall::new(AGENT_RING_BACKSTOP, job.caller_ring),
        job: job.clone(),
        report: None,
    };
    attempt.feed(Instant::now(), PlacedInput::Start).await;
    let mut commands_open = true;
    while !attempt.core.is_over() {
        let command = async {
            if commands_open {
                commands.recv().await
            } else {
                std::future::pending().await
            }
        };
        let core_due = attempt
            .core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            wake = attempt.legs.wait() => match wake {
                Wake::Event(leg, event) => attempt.on_event(Instant::now(), leg, event).await,
                Wake::Timers { agent, caller, .. } => {
                    // Ring timeouts and the longest call are the core's own timers.
                    let now = Instant::now();
                    for lost in lost_audio(agent, caller) {
                        info!(call = %attempt.job.call.0, ?lost, "callback: media timeout");
                        attempt.feed(now, lost).await;
                    }
                    attempt.on_timeout(now).await;
                }
                Wake::Closed => {
                    attempt.feed(Instant::now(), PlacedInput::Withdraw).await;
                }
            },
            command = command => match command {
                Some(command) => attempt.on_command(Instant::now(), command).await,
                None => commands_open = false,
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(core_due)) => {
                attempt.on_timeout(Instant::now()).await;
            }
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

    async fn on_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.carry_out(now).await;
    }

    /// Feed the core, and carry out what it asks until it asks nothing more.
    async fn feed(&mut self, now: Instant, input: PlacedInput) {
        self.core.handle(now, input);
        self.carry_out(now).await;
    }

    async fn carry_out(&mut self, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            let answer = match output {
                PlacedOutput::RingPerson => self.ring_agent(now).await,
                PlacedOutput::PersonOn => Some(self.agent_on()),
                PlacedOutput::HoldPerson => {
                    self.legs.hold(&self.ctx, now);
                    None
                }
                PlacedOutput::DialOther => self.dial_caller(now).await,
                PlacedOutput::Bridge => self.bridge(now),
                PlacedOutput::HangUp(side) => {
                    self.legs.hang_up(&self.shell, now, side.into());
                    None
                }
                PlacedOutput::Ended(how) => {
                    self.ended(how);
                    None
                }
            };
            if let Some(input) = answer {
                self.core.handle(now, input);
            }
        }
    }

    async fn ring_agent(&mut self, now: Instant) -> Option<PlacedInput> {
        let agent = self.agent_id().clone();
        let contact = self
            .shell
            .drive(|ep| ep.agent_contacts(now, std::slice::from_ref(&agent.0)))
            .unwrap_or_default()
            .into_iter()
            .next();
        let Some(contact) = contact else {
            info!(call = %self.job.call.0, %agent, "callback: the reserved agent has no registration");
            return Some(PlacedInput::PersonNotPlaced);
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
            return Some(PlacedInput::PersonNotPlaced);
        }
        info!(call = %self.job.call.0, %agent, "callback: ringing the reserved agent");
        None
    }

    /// The agent answered: the ACD hears it; an answer that crossed the ACD letting go
    /// (ring timeout) withdraws the attempt, and nobody is dialled.
    fn agent_on(&mut self) -> PlacedInput {
        let call = self.job.call.clone();
        let agent = self.agent_id().clone();
        info!(call = %call.0, %agent, "callback: the agent answered");
        if let Err(e) = self.acd.input(QueueInput::AgentAnswered {
            call: call.clone(),
            agent,
        }) {
            debug!(call = %call.0, %e, "answer not taken by the ACD");
        }
        let on_call = self.acd.agent_state(&self.job.agent)
            == Some(crate::queue::AgentState::OnCall { call });
        if on_call {
            PlacedInput::Proceed
        } else {
            PlacedInput::Withdraw
        }
    }

    /// The agent is on: dial the caller through the trunk (the outbound rule first).
    async fn dial_caller(&mut self, now: Instant) -> Option<PlacedInput> {
        let permit = self.ctx.outbound.permit(Dial::Callback {
            call: &self.job.call,
            number: &self.job.number,
        });
        let permit = match permit {
            Ok(permit) => permit,
            Err(e) => {
                warn!(call = %self.job.call.0, %e, "callback refused by the outbound rule");
                return Some(PlacedInput::OtherNotPlaced);
            }
        };
        let dialled = self
            .legs
            .dial_caller(&self.shell, &self.ctx, now, &permit, self.job.caller_ring)
            .await;
        if let Err(e) = dialled {
            warn!(call = %self.job.call.0, %e, "callback: the caller leg was not placed");
            return Some(PlacedInput::OtherNotPlaced);
        }
        info!(
            call = %self.job.call.0,
            number = %crate::ticket::privacy::mask_phone(permit.number()),
            "callback: dialling the caller through the trunk"
        );
        None
    }

    /// The attempt is over: the order's log and the ACD's report (sent in `finish`).
    fn ended(&mut self, how: PlacedEnd) {
        let call = self.job.call.clone();
        info!(call = %call.0, end = ?how, "callback attempt ended");
        self.report = match how {
            PlacedEnd::PersonFailed(reason) => Some(QueueInput::AgentLegFailed {
                call,
                agent: self.job.agent.clone(),
                reason,
            }),
            PlacedEnd::OtherFailed(result) => {
                self.log_attempt(result, None);
                Some(QueueInput::CallbackOutcome { call, result })
            }
            PlacedEnd::PersonLeft => {
                self.log_attempt(CallbackResult::NoAnswer, None);
                Some(QueueInput::CallEnded {
                    call,
                    who_hung_up: Party::Agent,
                })
            }
            PlacedEnd::Talked { who } => {
                self.ctx.outbound.callback_done(&self.job.call);
                if let Some(orders) = self.ctx.call_orders() {
                    orders.callback_completed(&self.job.call, self.wall());
                }
                Some(QueueInput::CallEnded {
                    call,
                    who_hung_up: who,
                })
            }
            // The ACD let go of this attempt: nothing more is reported.
            PlacedEnd::Withdrawn => None,
        };
    }

    async fn on_event(
        &mut self,
        now: Instant,
        leg: crate::sip::endpoint::CallHandle,
        event: LegEvent,
    ) {
        let Some(side) = self.legs.side_of(leg) else {
            debug!(?leg, ?event, "callback: event of an unknown leg");
            return;
        };
        let media_timeout = self.ctx.media_timeout;
        if let Some(input) = self
            .legs
            .placed_input(&self.shell, now, side, event, media_timeout)
        {
            self.feed(now, input).await;
        }
    }

    /// The caller answered: bridge to the agent, record, tell the ACD and the order.
    fn bridge(&mut self, now: Instant) -> Option<PlacedInput> {
        let call = self.job.call.clone();
        if !self
            .legs
            .bridge(&self.ctx, now, &format!("{}-callback", call.0))
        {
            return Some(PlacedInput::BridgeFailed);
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
        None
    }

    async fn on_command(&mut self, now: Instant, command: AcdCommand) {
        match command {
            AcdCommand::CancelRing { agent } | AcdCommand::HangupAgent { agent }
                if agent == self.job.agent =>
            {
                // The ACD let go of this attempt (ring timeout, an answer it no longer
                // wanted): nothing more is reported.
                info!(call = %self.job.call.0, %agent, "callback: the ACD lets go of the attempt");
                self.feed(now, PlacedInput::Withdraw).await;
            }
            other => debug!(call = %self.job.call.0, ?other, "callback: ACD command ignored"),
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
