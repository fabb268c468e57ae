//! The caller's side of callback in queue (`CALL-CALLBACK`): the callback key pressed
//! while waiting goes to the ACD; once it registers the callback the caller hears a
//! confirmation and the server hangs up. The place is kept; the attempt itself is
//! [`crate::server::callback`].

use super::{
    CallInput, CallMedia, Instant, PromptRef, QueueCue, QueueInput, info, position_prompts,
};
use crate::queue::callback_offer_prompts;
use crate::server::call_orders::CallOrderSeed;

/// The confirmation: "已为您登记回电…" (falls back to the goodbye prompt).
pub(crate) const CALLBACK_REGISTERED_PROMPT: &str = "callback_registered";

impl CallMedia {
    /// The position announcement, followed by the callback offer when the queue has a
    /// callback key and callbacks can be placed.
    pub(super) fn announcement(&self, position: u32) -> Vec<PromptRef> {
        let mut refs = position_prompts(position);
        let vouched = self
            .hotline
            .as_ref()
            .is_some_and(|h| h.callback_allowed && self.ctx.outbound.may_call_back(&h.caller));
        let key = self
            .queue
            .as_ref()
            .filter(|_| self.ctx.outbound.has_trunk() && vouched)
            .and_then(|q| q.acd.callback_key(&q.call));
        if let Some(key) = key {
            refs.extend(callback_offer_prompts(key));
        }
        refs
    }

    /// A digit heard while the call waits in a queue: the queue's callback key asks the
    /// ACD for a callback. `true` when taken (the digit goes no further).
    pub(super) fn callback_key_pressed(&mut self, c: char) -> bool {
        let Some(q) = self.acd_link() else {
            return false;
        };
        if self.agent.as_ref().is_some_and(|a| a.session.is_some()) {
            return false;
        }
        if q.acd.callback_key(&q.call) != Some(c) {
            return false;
        }
        if !self.ctx.outbound.has_trunk() {
            info!(handle = %self.handle, "callback key pressed, but no outbound trunk is configured");
            return false;
        }
        let Some(h) = self.hotline.as_ref() else {
            return false;
        };
        // Only a caller who came in over a trunk reaches the queue: this number did
        // call in, on this call. Recorded before the ACD may place the callback.
        let (acd, call, category, urgency) = (q.acd.clone(), q.call.clone(), q.category, q.urgency);
        if !h.callback_allowed {
            info!(handle = %self.handle, "callback key pressed, but the trunk did not vouch for the caller's number");
            return false;
        }
        if let Err(e) = self
            .ctx
            .outbound
            .callback_requested(Instant::now(), &call, &h.caller)
        {
            info!(handle = %self.handle, %e, "callback refused");
            return false;
        }
        if let Err(e) = acd.input(QueueInput::CallbackRequested { call: call.clone() }) {
            info!(handle = %self.handle, %e, "callback request refused by the ACD");
            self.ctx.outbound.callback_done(&call);
            return false;
        }
        // On the work order before any attempt can be logged.
        if let Some(orders) = self.ctx.call_orders() {
            let seed = CallOrderSeed {
                call: call.clone(),
                caller: h.caller.clone(),
                city: h.city.as_ref().map(|c| c.as_str().to_string()),
                category,
                urgency,
                received_at: h.cdr.record().arrival,
            };
            let position = acd.position(&call).unwrap_or(1);
            orders.callback_requested(seed, position, self.ctx.clock.now());
        }
        true
    }

    /// The ACD registered the callback at `position`: the caller hears the
    /// confirmation and the server hangs up at its end.
    pub(super) fn callback_registered(&mut self, now: Instant, position: u32) {
        let handle = self.handle;
        info!(%handle, position, "callback registered; the caller hangs up");
        if let Some(h) = self.hotline.as_mut() {
            h.cdr.callback_requested();
        }
        self.control(now, CallInput::Queue(QueueCue::CallbackRegistered));
    }
}
