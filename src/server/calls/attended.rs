//! Attended transfer (RFC 3515 REFER with RFC 3891 Replaces) in the B2BUA, and the
//! agent's hold by re-INVITE that comes before it.
//!
//! The flow, with the caller's call task H and a consultation task K:
//! 1. Agent A, bridged with the caller on leg A1 (ours to A), puts the caller on hold
//!    (re-INVITE `sendonly`/`inactive` on A1): H answers it and plays hold music to the
//!    caller ([`CallMedia::on_agent_reinvite`]).
//! 2. A calls agent B (INVITE to B's id; the endpoint lets an authenticated agent call
//!    another agent only from where it is registered: toll fraud). K answers A's leg A2
//!    only once B answers K's leg B1, and bridges A2↔B1 ([`run_consult`]). While the
//!    consultation lasts the ACD holds B (`QueueInput::DirectCall`): no queue call is
//!    offered to B, and a busy B refuses it (486).
//! 3. A sends REFER on A1 with `Refer-To: <sip:B@…?Replaces=A2's dialog>` (tags as we
//!    see them: `to-tag` ours, `from-tag` A's). H finds the dialog
//!    ([`crate::sip::endpoint::Endpoint::replaced_dialog`], RFC 3891 §3 checks), checks
//!    it is a consultation A placed (else 403), answers 202 + NOTIFY 100, and asks K for
//!    B1 ([`TaskControl::HandOver`]).
//! 4. K hands B1 over (sockets, RTP session and all; its events are re-routed to H) and
//!    hangs up A2 (BYE). H bridges the caller with B1, sends NOTIFY `SIP/2.0 200 OK`
//!    on A1 and hangs A1 up (BYE), tells the ACD (`QueueInput::AttendedTransfer`: A to
//!    wrap-up, B on the call), pushes the screen-pop to B's console, and adds the
//!    transfer to the CDR and to the call's work order when one was opened already
//!    (`call_logged` `transferred_to_agent`).
//!
//! A Replaces naming no usable dialog gets 202 and a final NOTIFY with the §3 status
//! (`SIP/2.0 481`, `486`, `603`): what the INVITE the REFER asks for would have got; the
//! caller stays with A. If K cannot hand over (B hung up meanwhile) the NOTIFY says 503.
//!
//! An INVITE with `Replaces` (RFC 3891 §3) for a leg of ours, from an authenticated
//! agent (e.g. A sent the REFER to B instead, and B's phone now replaces A1): the
//! endpoint checks it (400/481/486/603, 403 for a caller's trunk leg); the router hands
//! the new leg to the task that owns the replaced leg ([`TaskControl::Replace`]), which
//! answers it, bridges the caller to it, BYEs the replaced leg and tells the ACD, as
//! above. An early dialog of ours is not matched (its remote tag is not tracked): 481.

use super::*;
use crate::call::{LegId, ReplacesTarget, TransferStep};
use crate::sip::message::Replaces;

/// What one call task asks of another (through [`CallRouter`]).
pub(super) enum TaskControl {
    /// To a consultation task: give your leg to the consulted agent to task `to`.
    HandOver { to: CallHandle },
    /// The consultation's leg to the consulted agent, or `None` if it is gone.
    TakeOver { leg: Option<Box<AgentLeg>> },
    /// An INVITE with Replaces (`new`) for this task's leg `leg`.
    Replace {
        leg: CallHandle,
        new: CallHandle,
        incoming: Box<IncomingCall>,
    },
    /// From a consultation task whose calling agent sent the REFER on the consultation
    /// (to the target) with Replaces naming this task's agent leg `replaced`: bridge
    /// `leg` in its place; NOTIFY and BYE go to `refer_leg`.
    Transfer {
        leg: Box<AgentLeg>,
        replaced: CallHandle,
        refer_leg: CallHandle,
    },
}

impl std::fmt::Debug for TaskControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HandOver { to } => write!(f, "HandOver({to})"),
            Self::TakeOver { leg } => write!(f, "TakeOver({:?})", leg.as_ref().map(|l| l.handle)),
            Self::Replace { leg, new, .. } => write!(f, "Replace({leg} by {new})"),
            Self::Transfer { replaced, .. } => write!(f, "Transfer(replacing {replaced})"),
        }
    }
}

/// A call task's part in transfers. The hotline call's core decides them
/// (`crate::call::transfer`); this is what the SIP side needs meanwhile.
#[derive(Default)]
pub(super) struct TransferState {
    /// The REFER with Replaces the core is deciding or waiting on.
    refer: Option<ReferInFlight>,
    /// A leg offered in place of the bridged one, until the core adopts or drops it.
    offered: Option<Offered>,
    /// The REFER of the transfer being completed (NOTIFY 200) and the consultation's
    /// leg to hang up after the old agent leg.
    completing: Option<(CallHandle, CallHandle)>,
    /// This task is a consultation call between two agents.
    consult: Option<ConsultLink>,
    /// The consultation's leg was handed over: its late events go to that task.
    forward: Option<(CallHandle, CallHandle)>,
}

/// A REFER with Replaces on the bridged agent's leg.
struct ReferInFlight {
    /// The agent leg the REFER came on (NOTIFY goes there).
    refer_leg: CallHandle,
    /// The consultation's leg from the transferring agent (BYE once done).
    consult_leg: Option<CallHandle>,
    /// 202 sent.
    accepted: bool,
}

/// A leg offered in place of the bridged one.
struct Offered {
    leg: Box<AgentLeg>,
    /// An INVITE with Replaces: answered with this SDP once adopted.
    answer: Option<Bytes>,
    /// The REFER that brought it (NOTIFY) and the consultation leg to end.
    refer: Option<(CallHandle, CallHandle)>,
}

struct ConsultLink {
    /// The calling agent.
    from: AgentId,
    target: AgentId,
    /// The consultation's id for the ACD (its Call-ID).
    call: CallId,
    /// The ACD, when it knows the consulted agent.
    acd: Option<Arc<AcdShell>>,
    handed_over: bool,
}

impl MediaContext {
    /// An authenticated agent calling another configured agent: a consultation.
    pub(super) fn consult_service(&self, call: &IncomingCall) -> Option<Service> {
        let CallOrigin::Agent(user) = &call.origin else {
            return None;
        };
        if call.replaces.is_some()
            || *user == call.dialled
            || !self.agent_ids.contains(&call.dialled)
        {
            return None;
        }
        Some(Service::Consult {
            from: AgentId::new(user.clone()),
            target: AgentId::new(call.dialled.clone()),
        })
    }
}

/// Forgets a call task's control channel when the task ends, on every return path.
pub(super) struct ForgetTask(pub(super) Arc<SipShell>, pub(super) CallHandle);

impl Drop for ForgetTask {
    fn drop(&mut self) {
        self.0.calls().forget_task(self.1);
    }
}

impl CallRouter {
    /// The task of `task` is over: no more control messages for it.
    pub(super) fn forget_task(&self, task: CallHandle) {
        if let Ok(mut controls) = self.controls.lock() {
            controls.remove(&task);
        }
    }

    /// Send a control message to the task of inbound leg `task`; the message back if
    /// that task is gone.
    fn control(&self, task: CallHandle, message: TaskControl) -> Result<(), TaskControl> {
        let tx = self
            .controls
            .lock()
            .ok()
            .and_then(|c| c.get(&task).cloned());
        match tx {
            Some(tx) => tx.send(message).map_err(|e| e.0),
            None => Err(message),
        }
    }

    /// The task a leg belongs to (a task's own leg: itself).
    fn owner_of(&self, leg: CallHandle) -> CallHandle {
        self.owners
            .lock()
            .ok()
            .and_then(|o| o.get(&leg).copied())
            .unwrap_or(leg)
    }

    fn has_control(&self, task: CallHandle) -> bool {
        self.controls.lock().is_ok_and(|c| c.contains_key(&task))
    }

    /// Pass a leg event on to the task the leg belongs to now.
    fn forward(&self, leg: CallHandle, event: LegEvent) {
        if let Ok(tasks) = self.tasks.lock()
            && let Some(tx) = tasks.get(&leg)
        {
            let _ = tx.send((leg, event));
        }
    }

    /// An INVITE with Replaces: its leg goes to the task owning the replaced leg.
    pub(super) fn route_replaces(
        &self,
        shell: &Arc<SipShell>,
        call: CallHandle,
        incoming: Box<IncomingCall>,
    ) {
        let Some(replaced) = incoming.replaces else {
            return;
        };
        let owner = self.owner_of(replaced);
        let tx = self.tasks.lock().ok().and_then(|t| t.get(&owner).cloned());
        let delivered = match tx {
            Some(tx) => {
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.insert(call, tx);
                }
                if let Ok(mut owners) = self.owners.lock() {
                    owners.insert(call, owner);
                }
                self.control(
                    owner,
                    TaskControl::Replace {
                        leg: replaced,
                        new: call,
                        incoming,
                    },
                )
                .is_ok()
            }
            None => false,
        };
        if !delivered {
            info!(%call, %replaced, "INVITE with Replaces: the replaced call is gone; 481");
            shell.drive(|ep| ep.call_reject(Instant::now(), call, 481));
        }
    }
}

fn reason_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        603 => "Decline",
        _ => "Service Unavailable",
    }
}

/// A consultation call from agent `from` to agent `target` (task K of the module docs):
/// ring the target while the caller's phone hears ringing, answer when they answer,
/// relay both ways, and end both legs together, unless the target's leg is handed over
/// to a transfer.
pub(super) async fn run_consult(
    shell: &Arc<SipShell>,
    ctx: &Arc<MediaContext>,
    handle: CallHandle,
    incoming: &IncomingCall,
    (mut events, mut control): (
        mpsc::UnboundedReceiver<(CallHandle, LegEvent)>,
        mpsc::UnboundedReceiver<TaskControl>,
    ),
    from: AgentId,
    target: AgentId,
) {
    let reject = |status: u16| {
        info!(%handle, %from, %target, status, "consultation call refused");
        shell.drive(|ep| ep.call_reject(Instant::now(), handle, status));
    };
    let call_id = CallId(incoming.call_id.clone());
    let acd = ctx.acd.clone().filter(|a| a.knows_agent(target.as_str()));
    if let Some(acd) = &acd {
        let direct = QueueInput::DirectCall {
            agent: target.clone(),
            call: call_id.clone(),
        };
        if let Err(e) = acd.input(direct) {
            debug!(%handle, %e, "the ACD refuses the consultation");
            reject(486);
            return;
        }
        acd.leg_held(&call_id, &target, true);
    }
    let link = ConsultLink {
        from: from.clone(),
        target: target.clone(),
        call: call_id,
        acd,
        handed_over: false,
    };
    let now = Instant::now();
    let contact = shell
        .drive(|ep| ep.agent_contacts(now, std::slice::from_ref(&target.0)))
        .unwrap_or_default()
        .into_iter()
        .next();
    let offer = std::str::from_utf8(&incoming.sdp)
        .ok()
        .and_then(|text| SessionDescription::parse(text).ok());
    let (Some(contact), Some(offer)) = (contact, offer) else {
        reject(480);
        end_consult(&link);
        return;
    };
    let Some((ports, rtp, rtcp)) = ctx.open_sockets().await else {
        reject(503);
        end_consult(&link);
        return;
    };
    let local = LocalMedia::g711(
        ctx.public_ip,
        ports.rtp,
        u64::from(rand::random::<u32>()),
        1,
    );
    let answer = match sdp::answer(&offer, &local) {
        Ok(answer) => answer,
        Err(e) => {
            drop((rtp, rtcp));
            ctx.release(ports);
            reject(e.sip_status());
            end_consult(&link);
            return;
        }
    };
    shell.drive(|ep| ep.call_ring(now, handle));
    let service = Service::Consult {
        from: from.clone(),
        target: target.clone(),
    };
    let mut call = CallMedia::new(
        ctx,
        shell.clone(),
        handle,
        incoming,
        service,
        answer.media,
        local,
        rtp,
        rtcp,
        now,
    );
    call.transfer.consult = Some(link);
    match call.place_agent_leg(now, &contact, None).await {
        Some(leg) => call.agent = Some(leg),
        None => reject(503),
    }
    info!(%handle, %from, %target, "consultation call: ringing the agent");
    let answered = call.agent.is_some()
        && call
            .consult_ringing(
                &mut events,
                &mut control,
                Bytes::from(answer.sdp.to_string()),
                now + AGENT_RING_TIMEOUT,
            )
            .await;
    let end = if answered {
        ctx.active_calls.fetch_add(1, Ordering::Relaxed);
        call.control_rx = Some(control);
        let end = call.run(events).await;
        ctx.active_calls.fetch_sub(1, Ordering::Relaxed);
        end
    } else {
        CallEnd::Unconfirmed
    };
    call.finish(Instant::now(), end);
    if let Some(link) = call.transfer.consult.as_ref() {
        end_consult(link);
    }
    ctx.release(ports);
    info!(%handle, %from, %target, %end, answered, "consultation call ended");
}

/// The consultation is over without a hand-over: the ACD frees the consulted agent.
fn end_consult(link: &ConsultLink) {
    if link.handed_over {
        return;
    }
    if let Some(acd) = &link.acd {
        acd.leg_held(&link.call, &link.target, false);
        let ended = QueueInput::DirectCallEnded {
            agent: link.target.clone(),
            call: link.call.clone(),
        };
        if let Err(e) = acd.input(ended) {
            debug!(%e, "consultation end not taken by the ACD");
        }
    }
}

impl CallMedia {
    /// The consultation rings the target: true once they answered and the calling
    /// agent's leg is answered too; false when either side gave up.
    async fn consult_ringing(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<(CallHandle, LegEvent)>,
        control: &mut mpsc::UnboundedReceiver<TaskControl>,
        answer_sdp: Bytes,
        ring_until: Instant,
    ) -> bool {
        let handle = self.handle;
        let mut ring_until = Some(ring_until);
        loop {
            let Some(target_leg) = self.agent.as_ref().map(|a| a.handle) else {
                return false;
            };
            let deadline = ring_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(70));
            tokio::select! {
                event = events.recv() => match event {
                    None => return false,
                    Some((leg, LegEvent::Answered { sdp })) if leg == target_leg => {
                        let now = Instant::now();
                        self.on_agent_event(now, leg, LegEvent::Answered { sdp });
                        if self.agent.as_ref().is_none_or(|a| a.session.is_none()) {
                            continue; // unusable SDP: the leg is being hung up
                        }
                        let body = answer_sdp.clone();
                        if matches!(self.shell.drive(|ep| ep.call_answer(now, handle, body)), Some(Ok(()))) {
                            return true;
                        }
                        self.hang_up_agent(now);
                        return false;
                    }
                    Some((leg, LegEvent::Ended { reason, .. })) if leg == target_leg => {
                        let status = match leg_failure(reason) {
                            LegFailure::Busy => 486,
                            LegFailure::Rejected => 603,
                            LegFailure::NoAnswer | LegFailure::Unreachable => 480,
                        };
                        if let Some(agent) = self.agent.take() {
                            let ports = agent.ports;
                            drop(agent);
                            self.ctx.release(ports);
                        }
                        info!(%handle, status, %reason, "consulted agent did not answer");
                        self.shell.drive(|ep| ep.call_reject(Instant::now(), handle, status));
                        return false;
                    }
                    Some((leg, LegEvent::Ended { .. })) if leg == handle => {
                        // The calling agent gave up (CANCEL).
                        self.hang_up_agent(Instant::now());
                        return false;
                    }
                    Some(_) => {}
                },
                message = control.recv() => match message {
                    Some(message) => self.on_control(Instant::now(), message).await,
                    None => return false,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    if let Some(agent) = self.agent.as_ref()
                        && ring_until.is_some_and(|t| t <= now)
                    {
                        ring_until = None;
                        let leg = agent.handle;
                        self.shell.drive(|ep| ep.call_hangup(now, leg));
                    }
                }
            }
        }
    }

    /// A request from another call task.
    pub(super) async fn on_control(&mut self, now: Instant, message: TaskControl) {
        debug!(handle = %self.handle, ?message, "task control");
        match message {
            TaskControl::HandOver { to } => self.hand_over(now, to),
            TaskControl::TakeOver { leg } => self.take_over(now, leg),
            TaskControl::Replace { leg, new, incoming } => {
                self.replace_leg(now, leg, new, *incoming).await;
            }
            TaskControl::Transfer {
                leg,
                replaced,
                refer_leg,
            } => self.offer_transferred_leg(now, leg, replaced, refer_leg),
        }
    }

    /// The bridged agent leg with SIP handle `leg`, as the core names it.
    fn bridged_leg_id(&self, leg: CallHandle) -> Option<(LegId, AgentId)> {
        self.agent
            .as_ref()
            .filter(|a| a.handle == leg && a.session.is_some() && !a.ended)
            .and_then(|a| Some((a.id?, AgentId::new(a.agent.clone()))))
    }

    /// A consultation whose calling agent sent the REFER to the consulted agent, with
    /// Replaces naming our leg `replaced`: the consulted agent's `leg` is offered in its
    /// place; NOTIFY and BYE go to `refer_leg`.
    fn offer_transferred_leg(
        &mut self,
        now: Instant,
        leg: Box<AgentLeg>,
        replaced: CallHandle,
        refer_leg: CallHandle,
    ) {
        let bridged = self.bridged_leg_id(replaced);
        let (Some((id, _)), true) = (bridged, self.hotline.is_some()) else {
            info!(handle = %self.handle, "attended transfer to the target: the call moved on");
            self.refuse_offered(
                now,
                Offered {
                    leg,
                    answer: None,
                    refer: Some((refer_leg, refer_leg)),
                },
                481,
            );
            return;
        };
        let by = AgentId::new(leg.agent.clone());
        self.transfer.offered = Some(Offered {
            leg,
            answer: None,
            refer: Some((refer_leg, refer_leg)),
        });
        self.control(now, CallInput::Replace { leg: id, by });
    }

    /// A REFER on this task's own (inbound) leg. On a consultation, with Replaces naming
    /// the calling agent's leg of a queue call (the phone sent the REFER to the target
    /// instead of the transferee): the consulted agent's leg goes to that call in place
    /// of the calling agent's. Anything else: 403 (a caller cannot transfer).
    pub(super) fn on_own_refer(&mut self, now: Instant, replaces: Option<&Replaces>) {
        let handle = self.handle;
        let from = self.transfer.consult.as_ref().map(|c| c.from.clone());
        let bridged = self
            .agent
            .as_ref()
            .is_some_and(|a| a.session.is_some() && !a.ended);
        let (Some(replaces), Some(from), true) = (replaces, from, bridged) else {
            self.shell
                .drive(|ep| ep.call_reject_refer(now, handle, 403));
            return;
        };
        let found = self
            .shell
            .drive(|ep| ep.replaced_dialog(replaces))
            .unwrap_or(Err(503));
        let dialog = match found {
            Ok(dialog) => dialog,
            Err(status) => {
                info!(%handle, status, "attended transfer to the target: no usable dialog");
                self.shell.drive(|ep| {
                    let _ = ep.call_accept_refer(now, handle);
                    let _ = ep.call_notify_refer(now, handle, status, reason_text(status));
                });
                return;
            }
        };
        // Only the calling agent's own leg of a call may be replaced (our leg to them).
        let owner = self.shell.calls().owner_of(dialog.handle);
        let authorized =
            dialog.outbound && dialog.agent.as_deref() == Some(from.as_str()) && owner != handle;
        let leg = if authorized { self.agent.take() } else { None };
        let Some(mut leg) = leg else {
            info!(%handle, %from, "attended transfer to the target refused");
            self.shell
                .drive(|ep| ep.call_reject_refer(now, handle, 403));
            return;
        };
        self.shell.drive(|ep| ep.call_accept_refer(now, handle));
        leg.to_agent = None;
        leg.to_caller = None;
        let target_leg = leg.handle;
        self.shell.calls().alias(target_leg, owner);
        let sent = self.shell.calls().control(
            owner,
            TaskControl::Transfer {
                leg: Box::new(leg),
                replaced: dialog.handle,
                refer_leg: handle,
            },
        );
        if let Err(TaskControl::Transfer { leg, .. }) = sent {
            self.shell.calls().alias(target_leg, handle);
            self.agent = Some(*leg);
            self.shell
                .drive(|ep| ep.call_notify_refer(now, handle, 503, reason_text(503)));
            return;
        }
        self.consult_leg_handed_over(target_leg, owner);
        info!(%handle, to = %owner, "consultation leg sent to the call it replaces (REFER to the target)");
    }

    /// The consulted agent's leg now belongs to task `to`: forward its late events there,
    /// and tell the ACD this consultation no longer holds the agent.
    fn consult_leg_handed_over(&mut self, target_leg: CallHandle, to: CallHandle) {
        self.transfer.forward = Some((target_leg, to));
        if let Some(link) = self.transfer.consult.as_mut() {
            link.handed_over = true;
            if let Some(acd) = &link.acd {
                acd.leg_held(&link.call, &link.target, false);
            }
        }
    }

    /// Consultation task: give the consulted agent's leg to task `to`, hang up ours.
    fn hand_over(&mut self, now: Instant, to: CallHandle) {
        let handle = self.handle;
        let ready = self.transfer.consult.is_some()
            && self
                .agent
                .as_ref()
                .is_some_and(|a| a.session.is_some() && !a.ended);
        let leg = if ready { self.agent.take() } else { None };
        let Some(mut leg) = leg else {
            let _ = self
                .shell
                .calls()
                .control(to, TaskControl::TakeOver { leg: None });
            return;
        };
        leg.to_agent = None;
        leg.to_caller = None;
        let target_leg = leg.handle;
        self.shell.calls().alias(target_leg, to);
        let sent = self.shell.calls().control(
            to,
            TaskControl::TakeOver {
                leg: Some(Box::new(leg)),
            },
        );
        if let Err(TaskControl::TakeOver { leg: Some(leg) }) = sent {
            // The transferring call is gone meanwhile: the leg comes back and ends.
            self.shell.calls().alias(target_leg, handle);
            self.agent = Some(*leg);
            self.hangup_at = Some(now);
            return;
        }
        self.consult_leg_handed_over(target_leg, to);
        // The transferring task BYEs our leg to the calling agent right after its
        // NOTIFY 200, in that order; its end then ends this task.
        info!(%handle, to = %to, "consultation leg handed over for an attended transfer");
    }

    /// After a hand-over, events of the handed leg are passed on; others come back.
    pub(super) fn forward_handed_over(&self, leg: CallHandle, event: LegEvent) -> Option<LegEvent> {
        match self.transfer.forward {
            Some((handed, _)) if handed == leg => {
                self.shell.calls().forward(leg, event);
                None
            }
            _ => Some(event),
        }
    }

    /// The agent leg sent REFER with Replaces (attended transfer): the dialog it names
    /// is looked up here, the call's core decides.
    pub(super) fn on_attended_refer(&mut self, now: Instant, leg: CallHandle, replaces: &Replaces) {
        let handle = self.handle;
        let bridged = self.bridged_leg_id(leg);
        let (Some((id, from)), true, None) = (
            bridged,
            self.hotline.is_some(),
            self.transfer.refer.as_ref(),
        ) else {
            // Not the hotline call's bridged agent (a consultation's target cannot hand
            // a consultation on), or a REFER is already being decided.
            self.shell.drive(|ep| ep.call_reject_refer(now, leg, 403));
            return;
        };
        let found = self
            .shell
            .drive(|ep| ep.replaced_dialog(replaces))
            .unwrap_or(Err(503));
        let (target, consult_leg) = match found {
            Ok(dialog) => {
                // Only a consultation this agent placed (their call to us, owned by a
                // live consultation task) can be replaced.
                let consultation = !dialog.outbound
                    && dialog.handle != handle
                    && self.shell.calls().has_control(dialog.handle);
                match dialog.agent {
                    Some(agent) if consultation => (
                        ReplacesTarget::Consultation {
                            placed_by: AgentId::new(agent),
                        },
                        Some(dialog.handle),
                    ),
                    _ => (ReplacesTarget::NotAConsultation, None),
                }
            }
            Err(status) => {
                info!(%handle, %from, status, call_id = %replaces.call_id, "attended transfer: no usable dialog to replace");
                (ReplacesTarget::NoDialog(status), None)
            }
        };
        self.transfer.refer = Some(ReferInFlight {
            refer_leg: leg,
            consult_leg,
            accepted: false,
        });
        self.control(
            now,
            CallInput::AttendedRefer {
                leg: id,
                from,
                target,
            },
        );
    }

    /// The consultation's leg arrived (or not): the core decides.
    fn take_over(&mut self, now: Instant, leg: Option<Box<AgentLeg>>) {
        if self.hotline.is_none() {
            if let Some(leg) = leg {
                self.hang_up_and_release(now, *leg);
            }
            return;
        }
        let refer = self
            .transfer
            .refer
            .as_ref()
            .map(|r| (r.refer_leg, r.consult_leg.unwrap_or(r.refer_leg)));
        let agent = leg.as_ref().map(|l| AgentId::new(l.agent.clone()));
        if let Some(leg) = leg {
            self.transfer.offered = Some(Offered {
                leg,
                answer: None,
                refer,
            });
        }
        if agent.is_none() {
            info!(handle = %self.handle, "attended transfer failed: the consultation is gone");
        }
        self.control(now, CallInput::ConsultedLeg(agent));
    }

    /// Carry out one SIP step of an attended transfer the core decided; what it
    /// answers at once comes back as the next input.
    pub(super) fn transfer_step(&mut self, now: Instant, step: TransferStep) -> Option<CallInput> {
        let handle = self.handle;
        match step {
            TransferStep::RefuseRefer => {
                if let Some(refer) = self.transfer.refer.take() {
                    info!(%handle, "attended transfer refused: not the agent's consultation, or another transfer is under way");
                    self.shell
                        .drive(|ep| ep.call_reject_refer(now, refer.refer_leg, 403));
                }
            }
            TransferStep::TakeConsultedLeg => {
                let refer = self.transfer.refer.as_mut()?;
                refer.accepted = true;
                let (refer_leg, consult_leg) = (refer.refer_leg, refer.consult_leg);
                self.shell.drive(|ep| ep.call_accept_refer(now, refer_leg));
                let asked = consult_leg.map(|consultation| {
                    self.shell
                        .calls()
                        .control(consultation, TaskControl::HandOver { to: handle })
                });
                if !matches!(asked, Some(Ok(()))) {
                    return Some(CallInput::ConsultedLeg(None));
                }
                info!(%handle, consultation = ?consult_leg, "attended transfer: taking the consultation's leg");
            }
            TransferStep::Failed(status) => {
                if let Some(refer) = self.transfer.refer.take() {
                    info!(%handle, status, "attended transfer failed; the caller stays with the agent");
                    self.shell.drive(|ep| {
                        if !refer.accepted {
                            let _ = ep.call_accept_refer(now, refer.refer_leg);
                        }
                        let _ =
                            ep.call_notify_refer(now, refer.refer_leg, status, reason_text(status));
                    });
                }
            }
            TransferStep::DropOffered => {
                if let Some(offered) = self.transfer.offered.take() {
                    self.hang_up_and_release(now, *offered.leg);
                }
            }
            TransferStep::RefuseReplacing(status) => {
                if let Some(offered) = self.transfer.offered.take() {
                    self.refuse_offered(now, offered, status);
                }
            }
            TransferStep::Adopt(id) => self.adopt_offered(now, id),
            TransferStep::Completed => {
                if let Some((refer_leg, _)) = self.transfer.completing {
                    self.shell
                        .drive(|ep| ep.call_notify_refer(now, refer_leg, 200, reason_text(200)));
                }
            }
            TransferStep::EndConsultation => {
                if let Some((refer_leg, consult_leg)) = self.transfer.completing.take()
                    && consult_leg != refer_leg
                {
                    self.shell.drive(|ep| ep.call_hangup(now, consult_leg));
                }
            }
        }
        None
    }

    /// A leg offered in place of ours is not taken: an INVITE gets `status`; the
    /// consultation's leg sent by a REFER to the target: NOTIFY `status` and BYE.
    fn refuse_offered(&mut self, now: Instant, offered: Offered, status: u16) {
        let leg = offered.leg.handle;
        info!(handle = %self.handle, %leg, status, "a leg offered in place of the agent's is refused");
        if offered.answer.is_some() {
            self.shell.drive(|ep| ep.call_reject(now, leg, status));
            let ports = offered.leg.ports;
            drop(offered);
            self.ctx.release(ports);
            return;
        }
        if let Some((refer_leg, _)) = offered.refer {
            self.shell.drive(|ep| {
                let _ = ep.call_notify_refer(now, refer_leg, status, reason_text(status));
            });
        }
        self.hang_up_and_release(now, *offered.leg);
    }

    fn hang_up_and_release(&mut self, now: Instant, leg: AgentLeg) {
        let handle = leg.handle;
        self.shell.drive(|ep| ep.call_hangup(now, handle));
        let ports = leg.ports;
        drop(leg);
        self.ctx.release(ports);
    }

    /// An INVITE with Replaces for one of our legs: media made ready, then the core
    /// decides whether the new leg takes the bridged one's place.
    async fn replace_leg(
        &mut self,
        now: Instant,
        replaced: CallHandle,
        new: CallHandle,
        incoming: IncomingCall,
    ) {
        let handle = self.handle;
        let reject = |shell: &Arc<SipShell>, status: u16| {
            info!(%handle, %new, status, "INVITE with Replaces refused");
            shell.drive(|ep| ep.call_reject(now, new, status));
        };
        let CallOrigin::Agent(agent) = &incoming.origin else {
            reject(&self.shell, 403);
            return;
        };
        let bridged = self.bridged_leg_id(replaced);
        let (Some((id, _)), true) = (bridged, self.hotline.is_some()) else {
            reject(&self.shell, 481);
            return;
        };
        let offer = std::str::from_utf8(&incoming.sdp)
            .ok()
            .and_then(|text| SessionDescription::parse(text).ok());
        let Some(offer) = offer else {
            reject(&self.shell, 488);
            return;
        };
        let Some((ports, rtp, rtcp)) = self.ctx.open_sockets().await else {
            reject(&self.shell, 503);
            return;
        };
        let local = LocalMedia::g711(
            self.ctx.public_ip,
            ports.rtp,
            u64::from(rand::random::<u32>()),
            1,
        );
        // SDES as the agent's policy says, as on any call from that phone.
        let policy = self.ctx.agent_media_encryption_of(agent);
        let (answer, srtp) = match srtp_answer(&offer, &local, policy) {
            Ok(answered) => answered,
            Err(e) => {
                drop((rtp, rtcp));
                self.ctx.release(ports);
                reject(&self.shell, e.sip_status());
                return;
            }
        };
        let session = leg_rtp_session(
            format!("hotline-{}", new.0),
            Some(self.media_timeout),
            now,
            answer.media.remote(),
            Some(incoming.source.addr.ip()),
        );
        let contact = self
            .shell
            .drive(|ep| ep.agent_contacts(now, std::slice::from_ref(agent)))
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|c| c.contact)
            .or_else(|| crate::sip::message::Uri::parse(&format!("sip:{agent}@invalid")).ok());
        let Some(contact) = contact else {
            drop((rtp, rtcp));
            self.ctx.release(ports);
            reject(&self.shell, 500);
            return;
        };
        let body = Bytes::from(answer.sdp.to_string());
        let leg = AgentLeg {
            id: None,
            handle: new,
            agent: agent.clone(),
            contact,
            peer_ip: Some(incoming.source.addr.ip()),
            ports,
            rtp,
            rtcp,
            offer: answer.sdp,
            local,
            session: Some(session),
            negotiated: Some(answer.media),
            to_agent: None,
            to_caller: None,
            ended: false,
            srtp_offer: None,
            srtp,
        };
        info!(%handle, %agent, replaced = %replaced, "INVITE with Replaces: offered in place of the agent's leg");
        self.transfer.offered = Some(Offered {
            leg: Box::new(leg),
            answer: Some(body),
            refer: None,
        });
        let by = AgentId::new(agent.clone());
        self.control(now, CallInput::Replace { leg: id, by });
    }

    /// The core adopted the offered leg as `id`: answer it if it is an INVITE, bridge
    /// the caller to it; the old agent leg goes with the others until the core ends it.
    fn adopt_offered(&mut self, now: Instant, id: LegId) {
        let handle = self.handle;
        let Some(offered) = self.transfer.offered.take() else {
            return;
        };
        let mut leg = *offered.leg;
        if let Some(body) = offered.answer {
            let new = leg.handle;
            let answered = self.shell.drive(|ep| ep.call_answer(now, new, body));
            if !matches!(answered, Some(Ok(()))) {
                // Its end reaches the core as the bridged leg's end.
                warn!(%handle, %new, "the replacing INVITE could not be answered");
            }
        }
        let Some(negotiated) = leg.negotiated.filter(|_| leg.session.is_some()) else {
            self.hang_up_and_release(now, leg);
            return;
        };
        let caller_media = LegMedia::from(&self.negotiated);
        let agent_media = LegMedia::from(&negotiated);
        leg.to_agent = Some(RelayDirection::new(caller_media, agent_media));
        leg.to_caller = Some(RelayDirection::new(agent_media, caller_media));
        leg.ended = false;
        leg.id = Some(id);
        let to = leg.agent.clone();
        if let Some(previous) = self.agent.replace(leg) {
            self.legs.push(previous);
        }
        self.transfer.completing = offered.refer;
        self.transfer.refer = None;
        self.hangup_at = Some(now + Duration::from_secs(4 * 3600));
        info!(%handle, %to, "attended transfer: the caller is bridged to the consulted agent");
    }

    /// The ACD hears of an attended transfer: `to` has the caller, `from` is free.
    pub(super) fn acd_attended_transfer(&self, from: &AgentId, to: &AgentId) {
        let Some(q) = self.acd_link() else {
            return;
        };
        q.acd.leg_held(&q.call, to, true);
        q.acd.leg_held(&q.call, from, false);
        let input = QueueInput::AttendedTransfer {
            call: q.call.clone(),
            to: to.clone(),
        };
        let caller = self
            .hotline
            .as_ref()
            .map(|h| h.caller.clone())
            .unwrap_or_default();
        match q.acd.input(input) {
            Ok(()) => q
                .acd
                .call_transferred(&q.call, from, to, &caller, q.category, q.urgency),
            // The reconcile ends the call in the ACD and frees `from`.
            Err(e) => {
                warn!(handle = %self.handle, %e, "the ACD did not take the attended transfer")
            }
        }
    }

    /// The record and the call's work order hear of an attended transfer from the
    /// agent of `leg` to `to`.
    pub(super) fn record_attended_transfer(&mut self, from: Option<String>, to: &AgentId) {
        let wall = self.ctx.clock.now();
        let category = self.queue.as_ref().map(|q| (q.category, q.urgency));
        let Some(h) = self.hotline.as_mut() else {
            return;
        };
        h.cdr.transferred(
            wall,
            from.clone(),
            format!("agent:{to}"),
            crate::ivr::cdr::TransferKind::Attended,
        );
        if let (Some(orders), Some((category, urgency))) = (self.ctx.call_orders(), category) {
            let seed = crate::server::call_orders::CallOrderSeed {
                call: CallId(h.call_id.clone()),
                caller: h.caller.clone(),
                city: h.city.as_ref().map(|c| c.as_str().to_string()),
                category,
                urgency,
                received_at: h.cdr.record().arrival,
            };
            orders.transferred_to_agent(seed, from, to.0.clone(), wall);
        }
    }

    /// A re-INVITE from the bridged agent's phone (hold / resume): answered from the
    /// agent leg's own media; while the agent holds, the caller hears hold music and the
    /// agent's RTP is not relayed.
    pub(super) fn on_agent_reinvite(&mut self, now: Instant, leg: CallHandle, sdp: &[u8]) {
        let handle = self.handle;
        let media_timeout = self.media_timeout;
        let caller_media = LegMedia::from(&self.negotiated);
        let Some(agent) = self
            .agent
            .as_mut()
            .filter(|a| a.handle == leg && a.session.is_some())
        else {
            self.shell
                .drive(|ep| ep.call_reject_reinvite(now, leg, 488));
            return;
        };
        let offer = std::str::from_utf8(sdp)
            .ok()
            .and_then(|t| SessionDescription::parse(t).ok());
        let Some(offer) = offer else {
            self.shell
                .drive(|ep| ep.call_reject_reinvite(now, leg, 488));
            return;
        };
        agent.local.session_version += 1;
        let answer = match sdp::answer(&offer, &agent.local) {
            Ok(answer) => answer,
            Err(e) => {
                agent.local.session_version -= 1;
                self.shell
                    .drive(|ep| ep.call_reject_reinvite(now, leg, e.sip_status()));
                return;
            }
        };
        let held = answer.media.is_held();
        let was_held = agent.negotiated.as_ref().is_some_and(Negotiated::is_held);
        if let Some(session) = agent.session.as_mut() {
            session.set_remote(now, answer.media.remote());
            session.set_media_timeout(now, (!held).then_some(media_timeout));
            let agent_media = LegMedia::from(&answer.media);
            if agent.negotiated.map(|n| LegMedia::from(&n)) != Some(agent_media) {
                agent.to_agent = Some(RelayDirection::new(caller_media, agent_media));
                agent.to_caller = Some(RelayDirection::new(agent_media, caller_media));
            }
        }
        agent.negotiated = Some(answer.media);
        let body = Bytes::from(answer.sdp.to_string());
        self.shell
            .drive(|ep| ep.call_answer_reinvite(now, leg, body));
        info!(%handle, held, "agent re-INVITE answered");
        if held != was_held {
            self.control(now, CallInput::AgentHeld(held));
        }
    }
}
