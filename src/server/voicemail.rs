//! After-hours voice messages become callback work orders (TK-INTAKE, CALL-AFTERHOURS).
//!
//! The call shell stores each message in `voice_messages` with `work_order` NULL. This
//! task, once at start-up and then every few seconds, opens a work order for each such
//! row as the system actor and writes the order id back:
//!
//! * channel `phone`, category and urgency from the IVR choice, the call's city (the
//!   province when unknown), contact phone = the caller, description
//!   "来电留言 (voice message)", the recording in `recordings` (kept on the server: the
//!   API shows a play URL, `GET /api/orders/{id}/voice_message`), the
//!   linked call id, and `received_at` = the arrival of the call that left the message
//!   (from its call record; the moment the message was taken if there is none), so
//!   every deadline counts from it (H-8, H-9, H-13-2);
//! * the callback due (next working day, per the calendar's counting rule) is shown in
//!   two places: the order's first deadline — the transfer limit of an ordinary order
//!   is 1 working day from receipt, i.e. the callback due (or earlier, when the call
//!   arrived on the day before the message was taken) — and, for every
//!   order including urgent ones (whose transfer limit is 1 hour), the remarks line
//!   `回电期限 callback due: …`;
//! * the order is submitted at once, so automatic routing applies when the area is
//!   clear (a voice message's business area is unknown, so it waits for a dispatcher).
//!
//! # Exactly one order per message
//! The order is created with the idempotency key `voice-message:<call id>` of the
//! system user [`IDEMPOTENCY_ACTOR`], in the order's own transaction. Linking the
//! message is a second write; if the process dies between the two, the next pass finds
//! the key, and only links the order created before.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::clock::WallClock;
use crate::orders::OrdersContext;
use crate::shutdown::Shutdown;
use crate::store::calls::VoiceMessage;
use crate::store::orders::{AppendError, IdempotencyRecord};
use crate::store::{Store, StoreError};
use crate::ticket::{
    Actor, Category, Channel, Command, Contact, Context, Order, OrderFields, OrderId,
    TransitionError, UnitId, UnitTree, Urgency, apply,
};

/// Description of every voice-message order.
pub const DESCRIPTION: &str = "来电留言 (voice message)";
/// The user id idempotency keys of voice-message orders are recorded under.
pub const IDEMPOTENCY_ACTOR: &str = "system:voice-message";
/// How often the task looks for new messages.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// Messages handled per pass (the rest wait for the next pass).
const BATCH: i64 = 200;

/// The idempotency key of the order of the message left in `call_id`.
#[must_use]
pub fn idempotency_key(call_id: &str) -> String {
    format!("voice-message:{call_id}")
}

/// A stored voice message that cannot become an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadVoiceMessage {
    #[error("received_at {0:?} is not RFC 3339")]
    ReceivedAt(String),
    #[error("category {0:?} is not consultation, complaint or suggestion")]
    Category(String),
    #[error("urgency {0:?} is not normal or urgent")]
    Urgency(String),
}

/// Why one message was not converted.
#[derive(Debug, thiserror::Error)]
pub enum VoicemailError {
    #[error("voice message {call_id} is unusable")]
    Bad {
        call_id: String,
        source: BadVoiceMessage,
    },
    #[error("the work-order rules refused the voice-message order")]
    Rules(#[from] TransitionError),
    #[error("cannot record the voice-message order")]
    Append(#[from] AppendError),
    #[error("database")]
    Store(#[from] StoreError),
}

fn parse_snake<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

/// The city unit of a message: its own city when the unit tree knows it, else the
/// province center (`calls.province_center`, the fallback of city resolution).
fn city_unit(units: &UnitTree, city: Option<&str>, province_center: &UnitId) -> UnitId {
    city.map(UnitId::new)
        .filter(|id| units.get(id).is_some())
        .unwrap_or_else(|| province_center.clone())
}

/// The intake fields of the order for `message` (pure).
///
/// # Errors
/// A field the IVR should never have stored (unparseable time, unknown category).
pub fn order_fields(
    message: &VoiceMessage,
    units: &UnitTree,
    province_center: &UnitId,
) -> Result<OrderFields, BadVoiceMessage> {
    let received_at = DateTime::parse_from_rfc3339(&message.received_at)
        .map_err(|_| BadVoiceMessage::ReceivedAt(message.received_at.clone()))?;
    let category: Category = parse_snake(&message.category)
        .filter(|c| *c != Category::Case)
        .ok_or_else(|| BadVoiceMessage::Category(message.category.clone()))?;
    let urgency: Urgency = parse_snake(&message.urgency)
        .ok_or_else(|| BadVoiceMessage::Urgency(message.urgency.clone()))?;
    let provisional = if message.provisional {
        " (provisional: calendar year not loaded)"
    } else {
        ""
    };
    // The recording's path stays out of what people read: the order's player
    // (`voice_message.play_url`) serves it.
    let remarks = format!(
        "留言录音 voice message: play it on the order; 回电期限 callback due: {}{provisional}; call {}",
        callback_due_display(&message.callback_due),
        message.call_id
    );
    Ok(OrderFields {
        contact: Contact {
            name: String::new(),
            phone: message.caller.clone(),
        },
        category,
        urgency,
        units_involved: Vec::new(),
        description: DESCRIPTION.to_owned(),
        remarks,
        channel: Channel::Phone,
        city: city_unit(units, message.city.as_deref(), province_center),
        call_id: Some(crate::ticket::CallId(message.call_id.clone())),
        recordings: vec![message.recording.clone()],
        received_at,
        ..OrderFields::default()
    })
}

/// The receipt of a voice message's order: its call's arrival, never later than the
/// moment the message was taken (a record with a skewed clock cannot delay it).
fn received_at(fields: &OrderFields, arrival: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    arrival.min(fields.received_at)
}

/// "24:00 of D" is stored as 00:00 of D+1; show it the way deadlines are written.
fn callback_due_display(stored: &str) -> String {
    match DateTime::parse_from_rfc3339(stored) {
        Ok(at) => crate::calendar::Deadline {
            at,
            provisional: false,
        }
        .display()
        .to_string(),
        Err(_) => stored.to_owned(),
    }
}

/// Open (or find) the order of one message and link it. Returns the order id.
///
/// # Errors
/// See [`VoicemailError`].
pub async fn convert_message(
    store: &Store,
    orders: &OrdersContext,
    province_center: &UnitId,
    message: &VoiceMessage,
    now: DateTime<FixedOffset>,
) -> Result<OrderId, VoicemailError> {
    let order_id = create_order(store, orders, province_center, message, now).await?;
    if !store
        .link_voice_message(&message.call_id, &order_id.0)
        .await?
    {
        warn!(call = %message.call_id, "voice message was linked concurrently");
    }
    Ok(order_id)
}

/// Create the order of `message` (idempotent by call id) without linking it: the
/// first half of [`convert_message`], public so a test can stop between the halves
/// as a crash would.
///
/// # Errors
/// See [`VoicemailError`].
pub async fn create_order(
    store: &Store,
    orders: &OrdersContext,
    province_center: &UnitId,
    message: &VoiceMessage,
    now: DateTime<FixedOffset>,
) -> Result<OrderId, VoicemailError> {
    let key = idempotency_key(&message.call_id);
    if let Some((_, id)) = store.idempotent_order(IDEMPOTENCY_ACTOR, &key).await? {
        return Ok(OrderId(id));
    }
    let mut fields = order_fields(message, &orders.units, province_center).map_err(|source| {
        VoicemailError::Bad {
            call_id: message.call_id.clone(),
            source,
        }
    })?;
    // The message arrived with its call: the order is received at the call's arrival
    // (stored with the message, in one transaction), not when the recording ended.
    if let Some(record) = store.call_record(&message.call_id).await? {
        fields.received_at = received_at(&fields, record.arrival);
    }
    let calendar = orders.calendar.current();
    let ctx = Context {
        calendar: &calendar,
        units: &orders.units,
        routing: &orders.routing,
    };
    let actor = Actor::system(fields.city.clone());
    let (created, mut events) = apply(
        &Order::new(crate::orders::new_order_id(now)),
        Command::Create { fields },
        &actor,
        now,
        &ctx,
    )?;
    let (order, submitted) = apply(&created, Command::Submit, &actor, now, &ctx)?;
    events.extend(submitted);
    let body_hash = hex::encode(Sha256::digest(message.call_id.as_bytes()));
    let record = IdempotencyRecord {
        actor: IDEMPOTENCY_ACTOR,
        key: &key,
        body_hash: &body_hash,
    };
    match store
        .append_order_events(&order, 0, &events, Some(record), now.timestamp_millis())
        .await
    {
        Ok(()) => {
            info!(order = %order.id, call = %message.call_id, state = %order.state,
                "voice message → work order");
            Ok(order.id)
        }
        Err(AppendError::IdempotencyKeyTaken) => {
            match store.idempotent_order(IDEMPOTENCY_ACTOR, &key).await? {
                Some((_, id)) => Ok(OrderId(id)),
                None => Err(AppendError::IdempotencyKeyTaken.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// One pass over the messages without an order. Returns how many were linked; a
/// message that fails is logged and retried on the next pass.
///
/// # Errors
/// Database errors reading the messages.
pub async fn convert_once(
    store: &Store,
    orders: &OrdersContext,
    province_center: &UnitId,
    now: DateTime<FixedOffset>,
) -> Result<usize, StoreError> {
    let mut linked = 0;
    for message in store.voice_messages_without_order(BATCH).await? {
        match convert_message(store, orders, province_center, &message, now).await {
            Ok(_) => linked += 1,
            Err(e) => warn!(call = %message.call_id, cause = %crate::logfmt::chain(&e),
                "voice message not converted"),
        }
    }
    Ok(linked)
}

/// Run [`convert_once`] at start-up (messages left before a crash) and every
/// [`INTERVAL`] until shutdown. Messages whose city is not a known unit go to
/// `province_center`. `clock` is the server's wall clock (shifted by
/// `HOTLINE_FAKE_NOW` in tests and demos, like the calls that store the messages).
pub async fn voicemail_loop(
    store: Store,
    orders: Arc<OrdersContext>,
    province_center: UnitId,
    clock: WallClock,
    shutdown: Shutdown,
) {
    loop {
        if let Err(e) = convert_once(&store, &orders, &province_center, clock.now()).await {
            warn!(%e, "voice-message pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(category: &str, urgency: &str, city: Option<&str>) -> VoiceMessage {
        VoiceMessage {
            call_id: "c1".into(),
            caller: "13812345678".into(),
            city: city.map(str::to_owned),
            category: category.into(),
            urgency: urgency.into(),
            recording: "recordings/c1.wav".into(),
            duration_ms: 5000,
            received_at: "2025-09-30T20:00:00+08:00".into(),
            callback_due: "2025-10-10T00:00:00+08:00".into(),
            provisional: false,
            work_order: None,
        }
    }

    fn center() -> UnitId {
        UnitId::new("jinan")
    }

    #[test]
    fn fields_carry_the_ivr_choice_caller_city_and_time() {
        let units = UnitTree::shandong_default();
        let f = order_fields(
            &message("complaint", "urgent", Some("qingdao")),
            &units,
            &center(),
        )
        .expect("fields");
        assert_eq!(f.category, Category::Complaint);
        assert_eq!(f.urgency, Urgency::Urgent);
        assert_eq!(f.city, UnitId::new("qingdao"));
        assert_eq!(f.contact.phone, "13812345678");
        assert_eq!(f.channel, Channel::Phone);
        assert_eq!(f.description, DESCRIPTION);
        assert_eq!(f.recordings, ["recordings/c1.wav"]);
        assert_eq!(f.received_at.to_rfc3339(), "2025-09-30T20:00:00+08:00");
        assert!(!f.remarks.contains("recordings/c1.wav"), "{}", f.remarks);
        assert!(f.remarks.contains("2025-10-09T24:00"), "{}", f.remarks);
    }

    #[test]
    fn unknown_city_falls_back_to_the_province_center() {
        let units = UnitTree::shandong_default();
        let f = order_fields(
            &message("consultation", "normal", Some("atlantis")),
            &units,
            &center(),
        )
        .expect("fields");
        assert_eq!(f.city, center());
        let f = order_fields(&message("consultation", "normal", None), &units, &center())
            .expect("fields");
        assert_eq!(f.city, center());
    }

    #[test]
    fn corrupt_rows_are_refused_not_guessed() {
        let units = UnitTree::shandong_default();
        assert_eq!(
            order_fields(&message("case", "normal", None), &units, &center()),
            Err(BadVoiceMessage::Category("case".into()))
        );
        assert_eq!(
            order_fields(&message("consultation", "soon", None), &units, &center()),
            Err(BadVoiceMessage::Urgency("soon".into()))
        );
        let mut m = message("consultation", "normal", None);
        m.received_at = "yesterday".into();
        assert!(matches!(
            order_fields(&m, &units, &center()),
            Err(BadVoiceMessage::ReceivedAt(_))
        ));
    }
}
