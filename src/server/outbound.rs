//! Outbound calls through the carrier trunk, and the one rule of what the hotline may
//! dial (toll-fraud safety, `CALL-CALLBACK`, `CALL-TRANSFER`).
//!
//! # The rule
//! The hotline never dials a number a person typed. An outbound leg is placed only with
//! a [`DialPermit`], and [`Outbound::permit`] is the only place that makes one:
//!
//! - **callback** ([`Dial::Callback`]): the number must be the caller's own number as
//!   the carrier delivered it on that call (recorded by the call task when the caller
//!   pressed the callback key, [`Outbound::callback_requested`]), and a dialable number
//!   (digits, optional `+`). Any other number, or a call that never asked for a
//!   callback, is refused;
//! - **transfer to a unit** ([`Dial::Unit`]): the number is the unit's configured
//!   `[[units]] phone`, never one taken from the request; a unit without one is
//!   refused;
//! - **an order's callback call** ([`Dial::OrderContact`], H-11, H-12-3 回拨解答): the
//!   number is the contact phone stored on the work order (as the caller gave it or
//!   the call delivered it), never one from the request that asks for the call; it must
//!   be dialable and a number `[calls] callback_numbers` allows. The person asking is
//!   signed in, allowed to act on that order, and the call is logged on it: the daily
//!   and hourly bounds of the queue callback (anonymous callers pressing a key) do not
//!   apply.
//!
//! An agent's REFER to a raw number goes through [`TransferTarget::parse`] with
//! [`Outbound::unit_for_number`]: only a configured unit's number is accepted.
//!
//! # The trunk
//! The first `[[trunks]]` entry with `outbound` carries every outbound call: the
//! INVITE goes to that address with Request-URI `sip:<number>@<host>:<port>` and From
//! `sip:<service number>@<domain>` (the hotline's own number, shown to the called
//! party). A host name is resolved once at start-up.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use tracing::warn;

use crate::config::{Config, OutboundAddress, OutboundTransport, is_phone_number};
use crate::queue::{TransferTarget, TransferTargetError};
use crate::sip::endpoint::{CallHandle, Endpoint, SourceInfo, Transport};
use crate::sip::message::Uri;
use crate::ticket::model::CallId;
use crate::ticket::privacy::mask_phone;
use crate::ticket::units::UnitId;

/// What an outbound leg is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dial<'a> {
    /// Call the caller of `call` back at `number` (the ACD's `PlaceCallback`).
    Callback {
        /// The call whose caller asked for the callback.
        call: &'a CallId,
        /// The number the ACD asks to dial.
        number: &'a str,
    },
    /// Transfer a caller live to this unit's configured number.
    Unit(&'a UnitId),
    /// Call the contact of this work order back (the order as stored).
    OrderContact(&'a crate::ticket::Order),
}

/// Why an outbound leg may not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundRefused {
    /// No `[[trunks]] outbound` is configured (or its host did not resolve).
    #[error("no outbound trunk is configured")]
    NoTrunk,
    /// The number did not come in as the caller of that call (or the call never asked
    /// for a callback).
    #[error("{0} did not call in on this call: refused (no open dialling)")]
    NotACaller(String),
    /// The number cannot be dialled at all (letters, anonymous, empty).
    #[error("{0:?} is not a dialable number")]
    NotDialable(String),
    /// No such unit.
    #[error("unknown unit {0}")]
    UnknownUnit(UnitId),
    /// The unit has no outside number configured.
    #[error("unit {0} has no phone configured")]
    UnitWithoutPhone(UnitId),
    /// Not a number `[calls] callback_numbers` allows (international, short, emergency
    /// or service numbers).
    #[error("{0} is not a number callbacks may dial")]
    NotAllowedNumber(String),
    /// Too many callbacks to this number today, or to anyone this hour.
    #[error("callback limit reached ({0})")]
    RateLimited(&'static str),
}

/// Which numbers callbacks may dial and how often (toll-fraud bound).
#[derive(Debug)]
struct CallbackPolicy {
    patterns: Vec<String>,
    per_number_per_day: u32,
    per_hour: u32,
    /// Recent callback requests: when, and to which number.
    recent: std::collections::VecDeque<(Instant, String)>,
}

const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

/// A mainland number in national form: a leading `+86` or `0086` removed.
fn national(number: &str) -> &str {
    number
        .strip_prefix("+86")
        .or_else(|| number.strip_prefix("0086"))
        .unwrap_or(number)
}

impl CallbackPolicy {
    fn allows(&self, number: &str) -> bool {
        let national = national(number);
        self.patterns
            .iter()
            .any(|p| crate::config::matches_dial_pattern(p, national))
    }

    /// Count a request at `now`, or say which limit it breaks.
    fn admit(&mut self, now: Instant, number: &str) -> Result<(), OutboundRefused> {
        if !self.allows(number) {
            return Err(OutboundRefused::NotAllowedNumber(mask_phone(number)));
        }
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= DAY)
        {
            self.recent.pop_front();
        }
        let national = national(number);
        let today = self.recent.iter().filter(|(_, n)| n == national).count();
        if today >= self.per_number_per_day as usize {
            return Err(OutboundRefused::RateLimited("per number and day"));
        }
        let this_hour = self
            .recent
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) < HOUR)
            .count();
        if this_hour >= self.per_hour as usize {
            return Err(OutboundRefused::RateLimited("per hour"));
        }
        self.recent.push_back((now, national.to_string()));
        Ok(())
    }
}

/// Why a transfer request cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefused {
    /// Not a transfer address (or a number that is no unit's).
    #[error(transparent)]
    Target(#[from] TransferTargetError),
    /// A unit transfer the outbound rule refuses (no trunk, no phone).
    #[error(transparent)]
    Outbound(#[from] OutboundRefused),
}

/// Leave to place one outbound leg; only [`Outbound::permit`] makes one.
#[derive(Debug, Clone)]
pub struct DialPermit {
    number: String,
    uri: Uri,
    peer: SourceInfo,
    from_user: String,
}

impl DialPermit {
    /// The number to be dialled.
    #[must_use]
    pub fn number(&self) -> &str {
        &self.number
    }

    /// The trunk's own address: the leg's media is accepted from it as well as from the
    /// answer's SDP address (a carrier or SBC that names a private or other address of
    /// its own in its SDP still gets its audio through; nobody else does).
    #[must_use]
    pub fn trunk_ip(&self) -> std::net::IpAddr {
        self.peer.addr.ip()
    }

    /// Place the INVITE (the endpoint's outbound leg; events come back on the handle).
    pub(crate) fn place(&self, ep: &mut Endpoint, now: Instant, sdp_offer: Bytes) -> CallHandle {
        ep.call_dial_out(now, self.uri.clone(), self.peer, &self.from_user, sdp_offer)
    }
}

#[derive(Debug, Clone)]
struct TrunkRoute {
    /// Host as written in the Request-URI (IPv6 in brackets).
    uri_host: String,
    port: u16,
    peer: SourceInfo,
}

/// The outbound trunk, the units' numbers and the numbers that asked for a callback.
#[derive(Debug)]
pub struct Outbound {
    trunk: Option<TrunkRoute>,
    unit_phones: HashMap<UnitId, String>,
    units_by_phone: HashMap<String, UnitId>,
    known_units: Vec<UnitId>,
    /// Calls whose caller (arrived over a trunk) asked for a callback → their number.
    callbacks: Mutex<HashMap<CallId, String>>,
    policy: Mutex<CallbackPolicy>,
    from_user: String,
}

impl Outbound {
    /// From a validated configuration. An `outbound` host that does not resolve is
    /// logged and leaves the hotline without outbound calls.
    #[must_use]
    pub fn from_config(config: &Config) -> Outbound {
        let trunk = config
            .trunks
            .iter()
            .find_map(|t| t.outbound.as_deref())
            .and_then(|text| match OutboundAddress::parse(text) {
                Ok(address) => resolve(&address),
                Err(e) => {
                    warn!(%e, outbound = text, "outbound trunk address unusable");
                    None
                }
            });
        let unit_phones: HashMap<UnitId, String> = config
            .units
            .iter()
            .filter_map(|u| Some((UnitId::new(u.id.clone()), u.phone.clone()?)))
            .collect();
        let units_by_phone = unit_phones
            .iter()
            .map(|(unit, phone)| (phone.clone(), unit.clone()))
            .collect();
        Outbound {
            trunk,
            unit_phones,
            units_by_phone,
            known_units: config
                .units
                .iter()
                .map(|u| UnitId::new(u.id.clone()))
                .collect(),
            callbacks: Mutex::new(HashMap::new()),
            policy: Mutex::new(CallbackPolicy {
                patterns: config.calls.callback_numbers.clone(),
                per_number_per_day: config.calls.callback_per_number_per_day,
                per_hour: config.calls.callback_per_hour,
                recent: std::collections::VecDeque::new(),
            }),
            from_user: config
                .calls
                .service_numbers
                .first()
                .cloned()
                .unwrap_or_else(|| "12348".to_string()),
        }
    }

    /// Whether an outbound trunk is configured.
    #[must_use]
    pub fn has_trunk(&self) -> bool {
        self.trunk.is_some()
    }

    /// The rule: may this leg be dialled? See the module docs.
    ///
    /// # Errors
    /// See [`OutboundRefused`].
    pub fn permit(&self, dial: Dial<'_>) -> Result<DialPermit, OutboundRefused> {
        let number = match dial {
            Dial::Callback { call, number } => {
                if !is_phone_number(number) {
                    return Err(OutboundRefused::NotDialable(mask_phone(number)));
                }
                let came_in = self
                    .callbacks
                    .lock()
                    .ok()
                    .and_then(|c| c.get(call).cloned());
                if came_in.as_deref() != Some(number) {
                    return Err(OutboundRefused::NotACaller(mask_phone(number)));
                }
                number.to_string()
            }
            Dial::OrderContact(order) => {
                let number = dialable_form(&order.fields.contact.phone);
                if !is_phone_number(&number) {
                    return Err(OutboundRefused::NotDialable(mask_phone(&number)));
                }
                if !self.policy.lock().is_ok_and(|p| p.allows(&number)) {
                    return Err(OutboundRefused::NotAllowedNumber(mask_phone(&number)));
                }
                number
            }
            Dial::Unit(unit) => match self.unit_phones.get(unit) {
                Some(phone) => phone.clone(),
                None if self.known_units.contains(unit) => {
                    return Err(OutboundRefused::UnitWithoutPhone(unit.clone()));
                }
                None => return Err(OutboundRefused::UnknownUnit(unit.clone())),
            },
        };
        let trunk = self.trunk.as_ref().ok_or(OutboundRefused::NoTrunk)?;
        let transport = match trunk.peer.transport {
            Transport::Tcp => ";transport=tcp",
            _ => "",
        };
        let uri = Uri::parse(&format!(
            "sip:{number}@{}:{}{transport}",
            trunk.uri_host, trunk.port
        ))
        .map_err(|_| OutboundRefused::NotDialable(mask_phone(&number)))?;
        Ok(DialPermit {
            number,
            uri,
            peer: trunk.peer,
            from_user: self.from_user.clone(),
        })
    }

    /// Whether a callback to `number` would be allowed (offered to the caller only
    /// then): a number `[calls] callback_numbers` allows.
    #[must_use]
    pub fn may_call_back(&self, number: &str) -> bool {
        is_phone_number(number) && self.policy.lock().is_ok_and(|p| p.allows(number))
    }

    /// The caller of `call` (arrived over a trunk with this number, vouched for by it)
    /// asked for a callback at `now`: from now on, and until [`Outbound::callback_done`],
    /// that number may be dialled for that call.
    ///
    /// # Errors
    /// [`OutboundRefused::NotDialable`], [`OutboundRefused::NotAllowedNumber`] or
    /// [`OutboundRefused::RateLimited`]: no callback.
    pub fn callback_requested(
        &self,
        now: Instant,
        call: &CallId,
        caller: &str,
    ) -> Result<(), OutboundRefused> {
        if !is_phone_number(caller) {
            return Err(OutboundRefused::NotDialable(mask_phone(caller)));
        }
        self.policy
            .lock()
            .map_err(|_| OutboundRefused::RateLimited("unavailable"))?
            .admit(now, caller)?;
        if let Ok(mut c) = self.callbacks.lock() {
            c.insert(call.clone(), caller.to_string());
        }
        Ok(())
    }

    /// The callback of `call` is over (answered and ended, or given up).
    pub fn callback_done(&self, call: &CallId) {
        if let Ok(mut c) = self.callbacks.lock() {
            c.remove(call);
        }
    }

    /// Callbacks that may still be dialled.
    #[must_use]
    pub fn pending_callbacks(&self) -> usize {
        self.callbacks.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The unit whose configured phone is `number`.
    #[must_use]
    pub fn unit_for_number(&self, number: &str) -> Option<UnitId> {
        self.units_by_phone.get(number).cloned()
    }

    /// Parse a transfer address (REFER's Refer-To user, or the transfer API's target)
    /// with [`TransferTarget::parse`], and check that a unit transfer can be dialled.
    ///
    /// # Errors
    /// See [`TransferRefused`].
    pub fn transfer_target(&self, user: &str) -> Result<TransferTarget, TransferRefused> {
        let target = TransferTarget::parse(user, |n| self.unit_for_number(n))?;
        if let TransferTarget::Unit(unit) = &target {
            self.permit(Dial::Unit(unit))?;
        }
        Ok(target)
    }
}

/// A contact phone as stored on an order (`0531-8888 6666`) as it is dialled: the
/// separators people write are dropped.
fn dialable_form(phone: &str) -> String {
    phone.chars().filter(|c| !matches!(c, '-' | ' ')).collect()
}

fn resolve(address: &OutboundAddress) -> Option<TrunkRoute> {
    let resolved = (address.host.as_str(), address.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next());
    let Some(addr) = resolved else {
        warn!(host = %address.host, "outbound trunk host does not resolve: no outbound calls");
        return None;
    };
    let uri_host = if address.host.contains(':') {
        format!("[{}]", address.host)
    } else {
        address.host.clone()
    };
    Some(TrunkRoute {
        uri_host,
        port: address.port,
        peer: SourceInfo {
            addr,
            transport: match address.transport {
                OutboundTransport::Udp => Transport::Udp,
                OutboundTransport::Tcp => Transport::Tcp,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[server]
domain = "hotline.test"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1"]
outbound = "127.0.0.1:5999"

[[units]]
id = "province"
name = "省厅"
kind = "province"

[[units]]
id = "legal-aid-jinan"
name = "济南市法律援助中心"
kind = "institution"
parent = "province"
phone = "053188880000"
"#;

    fn outbound(text: &str) -> Outbound {
        Outbound::from_config(&Config::from_toml(text).expect("config"))
    }

    #[test]
    fn a_callback_dials_only_the_number_that_called_in_on_that_call() {
        let out = outbound(CONFIG);
        let call = CallId("c1".into());
        // Before the caller asked: nothing may be dialled for that call.
        assert_eq!(
            out.permit(Dial::Callback {
                call: &call,
                number: "13800001111"
            })
            .map(|p| p.number().to_string()),
            Err(OutboundRefused::NotACaller("138****1111".into()))
        );
        out.callback_requested(Instant::now(), &call, "13800001111")
            .expect("a mobile number");
        let permit = out
            .permit(Dial::Callback {
                call: &call,
                number: "13800001111",
            })
            .expect("the caller's own number");
        assert_eq!(permit.number(), "13800001111");
        assert_eq!(permit.uri.user.as_deref(), Some("13800001111"));
        assert_eq!(permit.peer.addr, "127.0.0.1:5999".parse().expect("addr"));
        assert_eq!(permit.from_user, "12348");
        // Any other number, for this call or another, is refused.
        for (c, n) in [("c1", "16800009999"), ("c2", "13800001111")] {
            assert!(matches!(
                out.permit(Dial::Callback {
                    call: &CallId(c.into()),
                    number: n
                }),
                Err(OutboundRefused::NotACaller(_))
            ));
        }
        assert!(matches!(
            out.permit(Dial::Callback {
                call: &call,
                number: "anonymous"
            }),
            Err(OutboundRefused::NotDialable(_))
        ));
        out.callback_done(&call);
        assert!(
            out.permit(Dial::Callback {
                call: &call,
                number: "13800001111"
            })
            .is_err(),
            "not after the callback is over"
        );
        assert_eq!(out.pending_callbacks(), 0);
    }

    #[test]
    fn callbacks_dial_only_national_numbers_and_within_their_limits() {
        let out = outbound(CONFIG);
        let t0 = Instant::now();
        let call = |n: u32| CallId(format!("c{n}"));
        // International, premium, short and emergency numbers are never called back.
        for number in [
            "+88216123456",
            "0088216123456",
            "110",
            "12345",
            "4008001234",
            "95588",
        ] {
            assert!(!out.may_call_back(number), "{number}");
            assert!(
                matches!(
                    out.callback_requested(t0, &call(0), number),
                    Err(OutboundRefused::NotAllowedNumber(_) | OutboundRefused::NotDialable(_))
                ),
                "{number}"
            );
        }
        // Mobiles (also with +86) and fixed lines with their area code are.
        for number in [
            "13800001111",
            "+8613900002222",
            "053188886666",
            "01012345678",
        ] {
            assert!(out.may_call_back(number), "{number}");
        }
        // Three a day to one number (+86 or not), then refused; others go on.
        for n in 1..=3 {
            let number = if n == 2 {
                "+8613800001111"
            } else {
                "13800001111"
            };
            out.callback_requested(t0, &call(n), number)
                .expect("within the limit");
        }
        assert_eq!(
            out.callback_requested(t0, &call(4), "13800001111"),
            Err(OutboundRefused::RateLimited("per number and day"))
        );
        assert_eq!(
            out.callback_requested(t0 + DAY, &call(5), "13800001111"),
            Ok(()),
            "a day later"
        );
        // The hotline's hourly bound.
        let tight =
            outbound(&CONFIG.replace("[server]", "[calls]\ncallback_per_hour = 2\n\n[server]"));
        tight
            .callback_requested(t0, &call(1), "13800000001")
            .expect("1");
        tight
            .callback_requested(t0, &call(2), "13800000002")
            .expect("2");
        assert_eq!(
            tight.callback_requested(t0, &call(3), "13800000003"),
            Err(OutboundRefused::RateLimited("per hour"))
        );
        assert_eq!(
            tight.callback_requested(t0 + HOUR, &call(3), "13800000003"),
            Ok(())
        );
    }

    #[test]
    fn an_order_callback_dials_the_orders_stored_contact_and_nothing_else() {
        let out = outbound(CONFIG);
        let mut order = crate::ticket::Order::default();
        order.fields.contact.phone = "0531-8888 6666".into();
        let permit = out
            .permit(Dial::OrderContact(&order))
            .expect("a fixed line with its area code");
        assert_eq!(permit.number(), "053188886666");
        assert_eq!(permit.uri.user.as_deref(), Some("053188886666"));
        assert_eq!(permit.from_user, "12348");
        // Numbers a callback never dials are refused when stored on an order too.
        for (phone, refused) in [
            ("", OutboundRefused::NotDialable(String::new())),
            (
                "anonymous",
                OutboundRefused::NotDialable(mask_phone("anonymous")),
            ),
            ("110", OutboundRefused::NotAllowedNumber(mask_phone("110"))),
            (
                "+88216123456",
                OutboundRefused::NotAllowedNumber(mask_phone("+88216123456")),
            ),
        ] {
            order.fields.contact.phone = phone.into();
            assert_eq!(
                out.permit(Dial::OrderContact(&order))
                    .map(|p| p.number().to_string()),
                Err(refused),
                "{phone:?}"
            );
        }
        // No trunk: nothing is dialled.
        let none = outbound(&CONFIG.replace("outbound = \"127.0.0.1:5999\"\n", ""));
        order.fields.contact.phone = "13800001111".into();
        assert_eq!(
            none.permit(Dial::OrderContact(&order))
                .map(|p| p.number().to_string()),
            Err(OutboundRefused::NoTrunk)
        );
    }

    #[test]
    fn a_unit_transfer_dials_the_configured_number_and_nothing_else() {
        let out = outbound(CONFIG);
        let aid = UnitId::new("legal-aid-jinan");
        assert_eq!(
            out.permit(Dial::Unit(&aid)).map(|p| p.number().to_string()),
            Ok("053188880000".into())
        );
        assert_eq!(
            out.permit(Dial::Unit(&UnitId::new("province")))
                .map(|p| p.number().to_string()),
            Err(OutboundRefused::UnitWithoutPhone(UnitId::new("province")))
        );
        assert_eq!(
            out.transfer_target("053188880000"),
            Ok(TransferTarget::Unit(aid.clone()))
        );
        assert_eq!(
            out.transfer_target("unit-legal-aid-jinan"),
            Ok(TransferTarget::Unit(aid))
        );
        assert_eq!(
            out.transfer_target("13900001111"),
            Err(TransferRefused::Target(
                TransferTargetError::NotAUnitNumber("139****1111".into())
            ))
        );
        assert_eq!(
            out.transfer_target("unit-province"),
            Err(TransferRefused::Outbound(
                OutboundRefused::UnitWithoutPhone(UnitId::new("province"))
            ))
        );
        assert_eq!(out.transfer_target("survey"), Ok(TransferTarget::Survey));
        // Without an outbound trunk nothing is dialled at all.
        let none = outbound(&CONFIG.replace("outbound = \"127.0.0.1:5999\"\n", ""));
        assert_eq!(
            none.permit(Dial::Unit(&UnitId::new("legal-aid-jinan")))
                .map(|p| p.number().to_string()),
            Err(OutboundRefused::NoTrunk)
        );
    }
}
