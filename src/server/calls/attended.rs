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
use crate::sip::endpoint::ReplacedDialog;
use crate::sip::message::Replaces;

/// How long a transfer waits for the consultation task's leg.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A call task's part in transfers.
#[derive(Default)]
pub(super) struct TransferState {
    /// A REFER with Replaces was accepted: waiting for the consultation's leg.
    pending: Option<PendingTransfer>,
    /// This task is a consultation call between two agents.
    consult: Option<ConsultLink>,
    /// The consultation's leg was handed over: its late events go to that task.
    forward: Option<(CallHandle, CallHandle)>,
}

struct PendingTransfer {
    /// The agent leg the REFER came on (NOTIFY goes there).
    refer_leg: CallHandle,
    /// The consultation's leg from the transferring agent (BYE once done).
    consult_leg: CallHandle,
    deadline: Instant,
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

impl TransferState {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }
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
            } => {
                let replaceable = self.transfer.pending.is_none()
                    && self
                        .agent
                        .as_ref()
                        .is_some_and(|a| a.handle == replaced && a.session.is_some() && !a.ended);
                if replaceable {
                    self.install_transferred_leg(now, *leg, Some((refer_leg, refer_leg)));
                } else {
                    info!(handle = %self.handle, "attended transfer to the target: the call moved on");
                    let target_leg = leg.handle;
                    self.shell.drive(|ep| {
                        let _ = ep.call_notify_refer(now, refer_leg, 481, reason_text(481));
                        let _ = ep.call_hangup(now, target_leg);
                    });
                    let ports = leg.ports;
                    drop(leg);
                    self.ctx.release(ports);
                }
            }
        }
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

    /// The agent leg sent REFER with Replaces (attended transfer).
    pub(super) fn on_attended_refer(&mut self, now: Instant, leg: CallHandle, replaces: &Replaces) {
        let handle = self.handle;
        let from = self
            .agent
            .as_ref()
            .filter(|a| a.handle == leg && a.session.is_some() && !a.ended)
            .map(|a| AgentId::new(a.agent.clone()));
        let Some(from) = from.filter(|_| self.transfer.pending.is_none()) else {
            self.shell.drive(|ep| ep.call_reject_refer(now, leg, 403));
            return;
        };
        let found = self
            .shell
            .drive(|ep| ep.replaced_dialog(replaces))
            .unwrap_or(Err(503));
        let dialog: ReplacedDialog = match found {
            Ok(dialog) => dialog,
            Err(status) => {
                info!(%handle, %from, status, call_id = %replaces.call_id, "attended transfer: no usable dialog to replace");
                self.shell.drive(|ep| {
                    let _ = ep.call_accept_refer(now, leg);
                    let _ = ep.call_notify_refer(now, leg, status, reason_text(status));
                });
                return;
            }
        };
        // Only a consultation this agent placed (their call to us) can be replaced.
        let authorized = !dialog.outbound
            && dialog.handle != handle
            && dialog.agent.as_deref() == Some(from.as_str())
            && self.shell.calls().has_control(dialog.handle);
        if !authorized {
            info!(%handle, %from, "attended transfer refused: not the agent's consultation");
            self.shell.drive(|ep| ep.call_reject_refer(now, leg, 403));
            return;
        }
        self.shell.drive(|ep| ep.call_accept_refer(now, leg));
        let asked = self
            .shell
            .calls()
            .control(dialog.handle, TaskControl::HandOver { to: handle });
        if asked.is_err() {
            self.shell
                .drive(|ep| ep.call_notify_refer(now, leg, 503, reason_text(503)));
            return;
        }
        info!(%handle, %from, consultation = %dialog.handle, "attended transfer: taking the consultation's leg");
        self.transfer.pending = Some(PendingTransfer {
            refer_leg: leg,
            consult_leg: dialog.handle,
            deadline: now + HANDOVER_TIMEOUT,
        });
    }

    /// The consultation's leg arrived (or not): finish the attended transfer.
    fn take_over(&mut self, now: Instant, leg: Option<Box<AgentLeg>>) {
        let Some(pending) = self.transfer.pending.take() else {
            // Nobody waits for it any more: the leg ends here.
            if let Some(leg) = leg {
                let target_leg = leg.handle;
                self.shell.drive(|ep| ep.call_hangup(now, target_leg));
                let ports = leg.ports;
                drop(leg);
                self.ctx.release(ports);
            }
            return;
        };
        let still_bridged = self
            .agent
            .as_ref()
            .is_some_and(|a| a.handle == pending.refer_leg && a.session.is_some() && !a.ended);
        if !still_bridged {
            // The transferring agent's leg ended meanwhile: the caller moved on.
            if let Some(leg) = leg {
                let target_leg = leg.handle;
                self.shell.drive(|ep| ep.call_hangup(now, target_leg));
                let ports = leg.ports;
                drop(leg);
                self.ctx.release(ports);
            }
            return;
        }
        let Some(leg) = leg else {
            info!(handle = %self.handle, "attended transfer failed: the consultation is gone");
            self.shell
                .drive(|ep| ep.call_notify_refer(now, pending.refer_leg, 503, reason_text(503)));
            return;
        };
        self.install_transferred_leg(now, *leg, Some((pending.refer_leg, pending.consult_leg)));
    }

    /// The handover did not come in time: the transfer failed, the call stays.
    pub(super) fn transfer_timers(&mut self, now: Instant) {
        if self
            .transfer
            .pending
            .as_ref()
            .is_some_and(|p| now >= p.deadline)
            && let Some(pending) = self.transfer.pending.take()
        {
            info!(handle = %self.handle, "attended transfer timed out");
            self.shell
                .drive(|ep| ep.call_notify_refer(now, pending.refer_leg, 503, reason_text(503)));
        }
    }

    /// An INVITE with Replaces for one of our legs: the new leg takes its place.
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
        let replaceable = self
            .agent
            .as_ref()
            .is_some_and(|a| a.handle == replaced && a.session.is_some() && !a.ended);
        let CallOrigin::Agent(agent) = &incoming.origin else {
            reject(&self.shell, 403);
            return;
        };
        if !replaceable || self.transfer.pending.is_some() {
            reject(&self.shell, 481);
            return;
        }
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
        let answer = match sdp::answer(&offer, &local) {
            Ok(answer) => answer,
            Err(e) => {
                drop((rtp, rtcp));
                self.ctx.release(ports);
                reject(&self.shell, e.sip_status());
                return;
            }
        };
        let body = Bytes::from(answer.sdp.to_string());
        let answered = self.shell.drive(|ep| ep.call_answer(now, new, body));
        if !matches!(answered, Some(Ok(()))) {
            drop((rtp, rtcp));
            self.ctx.release(ports);
            return;
        }
        let session = leg_rtp_session(
            format!("hotline-{}", new.0),
            Some(self.media_timeout),
            now,
            answer.media.remote(),
            Some(incoming.source.addr.ip()),
        );
        info!(%handle, %agent, replaced = %replaced, "INVITE with Replaces: the new leg replaces the agent's");
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
            return;
        };
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
            // The replacing INVITE is answered in plain RTP (SDES on it: not yet).
            srtp_offer: None,
            srtp: None,
        };
        self.install_transferred_leg(now, leg, None);
    }

    /// Bridge the caller with `leg` (answered, its RTP session up) in place of the
    /// current agent leg, which gets NOTIFY 200 (when it sent the REFER: `refer`, with
    /// the consultation leg to BYE next) and BYE.
    fn install_transferred_leg(
        &mut self,
        now: Instant,
        mut leg: AgentLeg,
        refer: Option<(CallHandle, CallHandle)>,
    ) {
        let handle = self.handle;
        let (Some(negotiated), true) = (leg.negotiated, leg.session.is_some()) else {
            let target_leg = leg.handle;
            self.shell.drive(|ep| ep.call_hangup(now, target_leg));
            let ports = leg.ports;
            drop(leg);
            self.ctx.release(ports);
            return;
        };
        let caller_media = LegMedia::from(&self.negotiated);
        let agent_media = LegMedia::from(&negotiated);
        leg.to_agent = Some(RelayDirection::new(caller_media, agent_media));
        leg.to_caller = Some(RelayDirection::new(agent_media, caller_media));
        leg.ended = false;
        // The core keeps its name for the bridged leg; only the agent changes.
        leg.id = self.agent.as_ref().and_then(|a| a.id);
        let to = AgentId::new(leg.agent.clone());
        let previous = self.agent.replace(leg);
        self.control(now, CallInput::BridgedAgentChanged(to.clone()));
        // Our hold music (the first agent held the caller) stops.
        self.control(now, CallInput::AgentHeld(false));
        self.hangup_at = Some(now + Duration::from_secs(4 * 3600));
        let from = previous.as_ref().map(|p| AgentId::new(p.agent.clone()));
        if let Some(old) = previous {
            let old_leg = old.handle;
            let ended = old.ended;
            self.shell.drive(|ep| {
                if let Some((refer_leg, _)) = refer {
                    let _ = ep.call_notify_refer(now, refer_leg, 200, reason_text(200));
                }
                if !ended {
                    let _ = ep.call_hangup(now, old_leg);
                }
                if let Some((_, consult_leg)) = refer {
                    let _ = ep.call_hangup(now, consult_leg);
                }
            });
            let ports = old.ports;
            drop(old);
            self.ctx.release(ports);
        }
        let caller = self
            .hotline
            .as_ref()
            .map(|h| h.caller.clone())
            .unwrap_or_default();
        if let (Some(q), Some(from)) = (self.acd_link(), &from) {
            q.acd.leg_held(&q.call, &to, true);
            q.acd.leg_held(&q.call, from, false);
            let input = QueueInput::AttendedTransfer {
                call: q.call.clone(),
                to: to.clone(),
            };
            match q.acd.input(input) {
                Ok(()) => q
                    .acd
                    .call_transferred(&q.call, from, &to, &caller, q.category, q.urgency),
                // The reconcile ends the call in the ACD and frees `from`.
                Err(e) => warn!(%handle, %e, "the ACD did not take the attended transfer"),
            }
        }
        let wall = self.ctx.clock.now();
        let category = self.queue.as_ref().map(|q| (q.category, q.urgency));
        if let Some(h) = self.hotline.as_mut() {
            h.cdr.transferred(
                wall,
                from.as_ref().map(|a| a.0.clone()),
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
                orders.transferred_to_agent(
                    seed,
                    from.as_ref().map(|a| a.0.clone()),
                    to.0.clone(),
                    wall,
                );
            }
        }
        info!(%handle, from = %crate::logfmt::word(&from.as_ref().map(AgentId::as_str)), to = %to, "attended transfer: the caller is bridged to the consulted agent");
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
