//! The transaction layer: owns every live transaction, matches messages to them
//! (RFC 3261 §17.1.3, §17.2.3), absorbs retransmissions, runs their timers and bounds
//! their number.

use super::{
    AckDisposition, Disposition, InviteClient, InviteServer, NonInviteClient, NonInviteServer,
    NonInviteServerState, Reliability, StatusClass, Timers, TransactionError, TransactionEvent,
    TransactionKey, Transmit,
};
use crate::sip::message::Method;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerConfig {
    pub timers: Timers,
    /// Most live transactions (client and server together). Beyond it new requests get
    /// [`RequestOutcome::Overloaded`] (answer 503 statelessly) and new client
    /// transactions [`LayerError::Overloaded`]. Each holds at most a request, a provisional
    /// and a final response, so this bounds memory.
    pub max_transactions: usize,
    /// When the INVITE server sends 100 Trying if the TU has not responded (RFC 3261
    /// §17.2.1: 200 ms). Zero sends it immediately.
    pub trying_delay: Duration,
    /// INVITE client guard in `Proceeding` (see [`InviteClient::new`]); default 3 min,
    /// the RFC 3261 §16.6 Timer C floor.
    pub proceeding_timeout: Duration,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            timers: Timers::default(),
            max_transactions: 10_000,
            trying_delay: Duration::from_millis(200),
            proceeding_timeout: Duration::from_secs(180),
        }
    }
}

/// Client transactions and server transactions live in separate tables: a B2BUA can be
/// both ends of one key when a request loops back to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// Counts per transaction kind, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounters {
    pub created: u64,
    pub terminated: u64,
    /// Timer B, F or H fired.
    pub timed_out: u64,
    pub transport_errors: u64,
}

/// Plain counters the shell reads for metrics. Monotonic; never reset by the layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransactionCounters {
    pub invite_client: KindCounters,
    pub non_invite_client: KindCounters,
    pub invite_server: KindCounters,
    pub non_invite_server: KindCounters,
    /// Request and response retransmissions (and non-2xx ACKs) absorbed by a transaction
    /// and so kept from the TU.
    pub retransmissions_absorbed: u64,
    /// New requests refused because the layer was full.
    pub rejected_over_cap: u64,
}

impl TransactionCounters {
    pub fn kind(&self, kind: TransactionKind) -> &KindCounters {
        match kind {
            TransactionKind::InviteClient => &self.invite_client,
            TransactionKind::NonInviteClient => &self.non_invite_client,
            TransactionKind::InviteServer => &self.invite_server,
            TransactionKind::NonInviteServer => &self.non_invite_server,
        }
    }

    fn kind_mut(&mut self, kind: TransactionKind) -> &mut KindCounters {
        match kind {
            TransactionKind::InviteClient => &mut self.invite_client,
            TransactionKind::NonInviteClient => &mut self.non_invite_client,
            TransactionKind::InviteServer => &mut self.invite_server,
            TransactionKind::NonInviteServer => &mut self.non_invite_server,
        }
    }
}

/// API misuse; protocol failures are events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("no live transaction has this key")]
    NoSuchTransaction,
    #[error("a client transaction with this key already exists")]
    DuplicateKey,
    #[error("ACK is sent by the TU directly; it never starts a client transaction")]
    AckHasNoTransaction,
    #[error("the transaction limit is reached")]
    Overloaded,
    #[error(
        "only a non-INVITE server transaction still waiting for its answer can answer statelessly"
    )]
    NotStatelessAnswerable,
    #[error(transparent)]
    Transaction(#[from] TransactionError),
}

/// A request received from the transport, with what the caller parsed from it.
#[derive(Debug, Clone)]
pub struct IncomingRequest<A> {
    /// From [`TransactionKey::for_request`] (an ACK gets the INVITE's key).
    pub key: TransactionKey,
    /// The request's own method (ACK stays ACK here).
    pub method: Method,
    /// Where responses go (RFC 3261 §18.2.2, worked out by the caller).
    pub peer: A,
    pub reliability: Reliability,
    /// The 100 Trying to send for a new INVITE if the TU is slow; ignored otherwise and for
    /// retransmissions, so the caller may skip building it when `key` is already known.
    pub trying: Option<Bytes>,
}

/// The right to answer one server transaction. It is not `Clone`, and
/// [`TransactionLayer::send_final`] consumes it, so a request cannot get two final
/// responses.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a server transaction must be answered"]
pub struct ServerTransaction {
    key: TransactionKey,
}

impl ServerTransaction {
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }
}

/// What the layer did with a received request.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new server transaction: pass the request to the TU, which answers through the
    /// handle.
    New(ServerTransaction),
    /// A retransmission: the transaction re-sent its last response if it had one. Do not
    /// pass it to the TU.
    Retransmission,
    /// The ACK of a non-2xx final response (or a repeat of it): absorbed.
    AckAbsorbed,
    /// An ACK that the TU must handle: it matched an INVITE server transaction in
    /// `Accepted` (RFC 6026), or no transaction at all (the usual 2xx ACK, which has its
    /// own branch).
    AckForTu,
    /// The layer is full: answer 503 (with Retry-After) statelessly and drop the request.
    Overloaded,
}

/// What the layer did with a received response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Passed to the TU as a [`TransactionEvent::Response`].
    Delivered,
    /// A retransmission absorbed by the transaction.
    Absorbed,
    /// No client transaction matches: discard it (RFC 6026 §7.1 stray responses).
    Unmatched,
}

/// Bytes to send, and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerTransmit<A> {
    pub peer: A,
    pub side: Side,
    pub key: TransactionKey,
    pub payload: Bytes,
}

/// An event of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEvent {
    pub side: Side,
    pub key: TransactionKey,
    pub event: TransactionEvent,
}

#[derive(Debug)]
enum Machine {
    InviteClient(InviteClient),
    NonInviteClient(NonInviteClient),
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
}

impl Machine {
    fn kind(&self) -> TransactionKind {
        match self {
            Machine::InviteClient(_) => TransactionKind::InviteClient,
            Machine::NonInviteClient(_) => TransactionKind::NonInviteClient,
            Machine::InviteServer(_) => TransactionKind::InviteServer,
            Machine::NonInviteServer(_) => TransactionKind::NonInviteServer,
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Machine::InviteClient(m) => m.poll_transmit(),
            Machine::NonInviteClient(m) => m.poll_transmit(),
            Machine::InviteServer(m) => m.poll_transmit(),
            Machine::NonInviteServer(m) => m.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<TransactionEvent> {
        match self {
            Machine::InviteClient(m) => m.poll_event(),
            Machine::NonInviteClient(m) => m.poll_event(),
            Machine::InviteServer(m) => m.poll_event(),
            Machine::NonInviteServer(m) => m.poll_event(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::InviteClient(m) => m.poll_timeout(),
            Machine::NonInviteClient(m) => m.poll_timeout(),
            Machine::InviteServer(m) => m.poll_timeout(),
            Machine::NonInviteServer(m) => m.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::InviteClient(m) => m.handle_timeout(now),
            Machine::NonInviteClient(m) => m.handle_timeout(now),
            Machine::InviteServer(m) => m.handle_timeout(now),
            Machine::NonInviteServer(m) => m.handle_timeout(now),
        }
    }

    fn handle_transport_error(&mut self, now: Instant) {
        match self {
            Machine::InviteClient(m) => m.handle_transport_error(now),
            Machine::NonInviteClient(m) => m.handle_transport_error(now),
            Machine::InviteServer(m) => m.handle_transport_error(now),
            Machine::NonInviteServer(m) => m.handle_transport_error(now),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::InviteClient(m) => m.is_terminated(),
            Machine::NonInviteClient(m) => m.is_terminated(),
            Machine::InviteServer(m) => m.is_terminated(),
            Machine::NonInviteServer(m) => m.is_terminated(),
        }
    }
}

/// Internal handle of a live transaction; keys are strings, so the timer schedule sorts
/// these instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct EntryId(u64);

#[derive(Debug)]
struct Entry<A> {
    side: Side,
    key: TransactionKey,
    peer: A,
    machine: Machine,
    /// The deadline this entry is filed under in `schedule`.
    scheduled: Option<Instant>,
}

/// Owns many transactions. Same calling contract as a single machine: mutate with
/// `handle_*`/`start_client`/`send_*`, then drain `poll_transmit` and `poll_event`, then
/// wait until `poll_timeout`. Terminated transactions are removed as soon as they
/// terminate (their `Terminated` event is still delivered).
#[derive(Debug)]
pub struct TransactionLayer<A> {
    config: LayerConfig,
    index: HashMap<(Side, TransactionKey), EntryId>,
    /// Boxed: ~600 bytes each and tens of thousands held for Timer J/K; a table of
    /// pointers keeps a rehash (which can double the buckets under insert/remove churn
    /// at a steady count) from adding tens of MiB at once.
    entries: HashMap<EntryId, Box<Entry<A>>>,
    schedule: BTreeSet<(Instant, EntryId)>,
    next_id: u64,
    transmits: VecDeque<LayerTransmit<A>>,
    events: VecDeque<LayerEvent>,
    counters: TransactionCounters,
}

impl<A: Clone> TransactionLayer<A> {
    pub fn new(config: LayerConfig) -> Self {
        TransactionLayer {
            config,
            index: HashMap::new(),
            entries: HashMap::new(),
            schedule: BTreeSet::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: TransactionCounters::default(),
        }
    }

    /// Give back the room the tables grew to in a burst (an INVITE flood holds thousands
    /// for Timer H/J); hash tables never shrink on their own.
    pub fn shrink_to_fit(&mut self) {
        self.index.shrink_to_fit();
        self.entries.shrink_to_fit();
        self.transmits.shrink_to_fit();
        self.events.shrink_to_fit();
    }

    pub fn config(&self) -> &LayerConfig {
        &self.config
    }

    pub fn counters(&self) -> &TransactionCounters {
        &self.counters
    }

    /// Live transactions, client and server.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, side: Side, key: &TransactionKey) -> bool {
        self.index.contains_key(&(side, key.clone()))
    }

    /// Starts a client transaction for `request` (INVITE or non-INVITE by `key.method()`)
    /// and queues it for sending to `peer`. `key` comes from the top Via the caller put in
    /// the request.
    ///
    /// # Errors
    /// [`LayerError::DuplicateKey`] if the key is live, [`LayerError::AckHasNoTransaction`]
    /// for ACK, [`LayerError::Overloaded`] when full.
    pub fn start_client(
        &mut self,
        now: Instant,
        key: TransactionKey,
        peer: A,
        reliability: Reliability,
        request: Bytes,
    ) -> Result<(), LayerError> {
        if *key.method() == Method::Ack {
            return Err(LayerError::AckHasNoTransaction);
        }
        if self.index.contains_key(&(Side::Client, key.clone())) {
            return Err(LayerError::DuplicateKey);
        }
        if self.is_full() {
            return Err(LayerError::Overloaded);
        }
        let timers = self.config.timers;
        let machine = if *key.method() == Method::Invite {
            Machine::InviteClient(InviteClient::new(
                now,
                timers,
                reliability,
                request,
                self.config.proceeding_timeout,
            ))
        } else {
            Machine::NonInviteClient(NonInviteClient::new(now, timers, reliability, request))
        };
        let id = self.insert(Side::Client, key, peer, machine);
        self.after_input(id);
        Ok(())
    }

    /// Matches a received request (§17.2.3) to a server transaction, creating one for a
    /// new request. ACK never creates a transaction.
    pub fn handle_request(&mut self, now: Instant, request: IncomingRequest<A>) -> RequestOutcome {
        let IncomingRequest {
            key,
            method,
            peer,
            reliability,
            trying,
        } = request;
        let existing = self.index.get(&(Side::Server, key.clone())).copied();
        if method == Method::Ack {
            let Some(id) = existing else {
                return RequestOutcome::AckForTu;
            };
            let disposition = match self.entries.get_mut(&id).map(|e| &mut e.machine) {
                Some(Machine::InviteServer(server)) => server.handle_ack(now),
                _ => AckDisposition::ForTu,
            };
            self.after_input(id);
            return match disposition {
                AckDisposition::Absorbed => {
                    self.counters.retransmissions_absorbed += 1;
                    RequestOutcome::AckAbsorbed
                }
                AckDisposition::ForTu => RequestOutcome::AckForTu,
            };
        }
        if let Some(id) = existing {
            match self.entries.get_mut(&id).map(|e| &mut e.machine) {
                Some(Machine::InviteServer(server)) => server.handle_request_retransmission(now),
                Some(Machine::NonInviteServer(server)) => server.handle_request_retransmission(now),
                _ => {}
            }
            self.after_input(id);
            self.counters.retransmissions_absorbed += 1;
            return RequestOutcome::Retransmission;
        }
        if self.is_full() {
            self.counters.rejected_over_cap += 1;
            return RequestOutcome::Overloaded;
        }
        let timers = self.config.timers;
        let machine = if method == Method::Invite {
            Machine::InviteServer(InviteServer::new(
                now,
                timers,
                reliability,
                trying,
                self.config.trying_delay,
            ))
        } else {
            Machine::NonInviteServer(NonInviteServer::new(now, timers, reliability))
        };
        let id = self.insert(Side::Server, key.clone(), peer, machine);
        self.after_input(id);
        RequestOutcome::New(ServerTransaction { key })
    }

    /// Matches a received response (§17.1.3) to a client transaction. `ack` is the ACK the
    /// caller built for a 300-699 response to INVITE (see [`InviteClient::handle_response`]);
    /// pass `None` otherwise.
    pub fn handle_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        status: u16,
        payload: Bytes,
        ack: Option<Bytes>,
    ) -> ResponseOutcome {
        let Some(id) = self.index.get(&(Side::Client, key.clone())).copied() else {
            return ResponseOutcome::Unmatched;
        };
        let disposition = match self.entries.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::InviteClient(client)) => {
                client.handle_response(now, status, payload, ack)
            }
            Some(Machine::NonInviteClient(client)) => client.handle_response(now, status, payload),
            _ => Disposition::Absorbed,
        };
        self.after_input(id);
        match disposition {
            Disposition::Delivered => ResponseOutcome::Delivered,
            Disposition::Absorbed => {
                self.counters.retransmissions_absorbed += 1;
                ResponseOutcome::Absorbed
            }
        }
    }

    /// Sends a 1xx on a server transaction.
    ///
    /// # Errors
    /// [`TransactionError::NotProvisional`] for other codes; [`LayerError::NoSuchTransaction`]
    /// once the transaction is gone (e.g. after a transport error).
    pub fn send_provisional(
        &mut self,
        now: Instant,
        transaction: &ServerTransaction,
        status: u16,
        payload: Bytes,
    ) -> Result<(), LayerError> {
        if StatusClass::of(status) != Some(StatusClass::Provisional) {
            return Err(TransactionError::NotProvisional(status).into());
        }
        self.respond(now, &transaction.key, status, payload)
    }

    /// Sends the final response (200-699), consuming the handle. For a 2xx to INVITE the
    /// TU keeps re-sending the 2xx with [`retransmit_2xx`](Self::retransmit_2xx) until the
    /// ACK arrives (RFC 3261 §13.3.1.4).
    ///
    /// # Errors
    /// [`TransactionError::NotFinal`] for a 1xx (the handle is consumed: send provisional
    /// responses with [`send_provisional`](Self::send_provisional));
    /// [`LayerError::NoSuchTransaction`] once the transaction is gone.
    pub fn send_final(
        &mut self,
        now: Instant,
        transaction: ServerTransaction,
        status: u16,
        payload: Bytes,
    ) -> Result<(), LayerError> {
        match StatusClass::of(status) {
            Some(StatusClass::Success | StatusClass::Failure) => {
                self.respond(now, &transaction.key, status, payload)
            }
            Some(StatusClass::Provisional) => Err(TransactionError::NotFinal(status).into()),
            None => Err(TransactionError::InvalidStatus(status).into()),
        }
    }

    /// Sends a final response to a non-INVITE request once and forgets its transaction
    /// at once instead of keeping it Completed for Timer J (RFC 3261 §8.2.7, the
    /// stateless UAS, meant for challenging unauthenticated requests). A retransmission
    /// of the request is then a new request and gets a fresh answer, which for a
    /// challenge is as good as the first; the table holds nothing for it.
    ///
    /// # Errors
    /// [`LayerError::NoSuchTransaction`]; [`LayerError::NotStatelessAnswerable`] unless
    /// `transaction` is a non-INVITE server transaction still waiting for its answer;
    /// [`TransactionError::NotFinal`] / [`TransactionError::InvalidStatus`].
    pub fn send_final_and_forget(
        &mut self,
        transaction: ServerTransaction,
        status: u16,
        payload: Bytes,
    ) -> Result<(), LayerError> {
        match StatusClass::of(status) {
            Some(StatusClass::Success | StatusClass::Failure) => {}
            Some(StatusClass::Provisional) => return Err(TransactionError::NotFinal(status).into()),
            None => return Err(TransactionError::InvalidStatus(status).into()),
        }
        let id = self.lookup(Side::Server, &transaction.key)?;
        let answerable = self.entries.get(&id).is_some_and(|e| {
            matches!(&e.machine, Machine::NonInviteServer(server)
                if matches!(server.state(), NonInviteServerState::Trying | NonInviteServerState::Proceeding))
        });
        if !answerable {
            return Err(LayerError::NotStatelessAnswerable);
        }
        let Some(entry) = self.entries.remove(&id) else {
            return Err(LayerError::NoSuchTransaction);
        };
        self.index.remove(&(entry.side, entry.key.clone()));
        if let Some(at) = entry.scheduled {
            self.schedule.remove(&(at, id));
        }
        self.counters
            .kind_mut(TransactionKind::NonInviteServer)
            .terminated += 1;
        self.transmits.push_back(LayerTransmit {
            peer: entry.peer,
            side: Side::Server,
            key: entry.key.clone(),
            payload,
        });
        self.events.push_back(LayerEvent {
            side: Side::Server,
            key: entry.key,
            event: TransactionEvent::Terminated,
        });
        Ok(())
    }

    /// Re-sends a 2xx through an INVITE server transaction in `Accepted`.
    ///
    /// # Errors
    /// [`TransactionError::NotAccepted`] unless `key` is an INVITE server transaction that
    /// sent a 2xx; [`LayerError::NoSuchTransaction`] after Timer L removed it.
    pub fn retransmit_2xx(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        status: u16,
        payload: Bytes,
    ) -> Result<(), LayerError> {
        if StatusClass::of(status) != Some(StatusClass::Success) {
            return Err(TransactionError::NotAccepted.into());
        }
        let id = self.lookup(Side::Server, key)?;
        match self.entries.get(&id).map(|e| &e.machine) {
            Some(Machine::InviteServer(server))
                if server.state() == super::InviteServerState::Accepted => {}
            _ => return Err(TransactionError::NotAccepted.into()),
        }
        self.respond(now, key, status, payload)
    }

    /// The key of the live INVITE server transaction that a CANCEL with `cancel_key`
    /// targets (same branch and sent-by, RFC 3261 §9.2), if any. The CANCEL itself is a
    /// separate non-INVITE server transaction (answer it 200 or 481); the TU then answers
    /// the INVITE 487 through its own handle.
    pub fn find_invite_for_cancel(&self, cancel_key: &TransactionKey) -> Option<TransactionKey> {
        let invite = cancel_key.invite_for_cancel()?;
        self.index
            .contains_key(&(Side::Server, invite.clone()))
            .then_some(invite)
    }

    /// The transport failed to send for this transaction.
    pub fn handle_transport_error(&mut self, now: Instant, side: Side, key: &TransactionKey) {
        if let Ok(id) = self.lookup(side, key) {
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.machine.handle_transport_error(now);
            }
            self.after_input(id);
        }
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<EntryId> = self
            .schedule
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.machine.handle_timeout(now);
            }
            self.after_input(id);
        }
    }

    /// The earliest deadline over all transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    pub fn poll_transmit(&mut self) -> Option<LayerTransmit<A>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LayerEvent> {
        self.events.pop_front()
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= self.config.max_transactions
    }

    fn lookup(&self, side: Side, key: &TransactionKey) -> Result<EntryId, LayerError> {
        self.index
            .get(&(side, key.clone()))
            .copied()
            .ok_or(LayerError::NoSuchTransaction)
    }

    fn respond(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        status: u16,
        payload: Bytes,
    ) -> Result<(), LayerError> {
        let id = self.lookup(Side::Server, key)?;
        let result = match self.entries.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::InviteServer(server)) => server.respond(now, status, payload),
            Some(Machine::NonInviteServer(server)) => server.respond(now, status, payload),
            _ => Err(TransactionError::Terminated),
        };
        self.after_input(id);
        result.map_err(LayerError::from)
    }

    fn insert(&mut self, side: Side, key: TransactionKey, peer: A, machine: Machine) -> EntryId {
        let id = EntryId(self.next_id);
        self.next_id += 1;
        self.counters.kind_mut(machine.kind()).created += 1;
        self.index.insert((side, key.clone()), id);
        self.entries.insert(
            id,
            Box::new(Entry {
                side,
                key,
                peer,
                machine,
                scheduled: None,
            }),
        );
        id
    }

    /// After any input to a machine: move its outputs to the layer queues, count, refile
    /// its timer, and drop it if it terminated.
    fn after_input(&mut self, id: EntryId) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let kind = entry.machine.kind();
        while let Some(transmit) = entry.machine.poll_transmit() {
            self.transmits.push_back(LayerTransmit {
                peer: entry.peer.clone(),
                side: entry.side,
                key: entry.key.clone(),
                payload: transmit.payload,
            });
        }
        while let Some(event) = entry.machine.poll_event() {
            let counters = self.counters.kind_mut(kind);
            match event {
                TransactionEvent::TimedOut => counters.timed_out += 1,
                TransactionEvent::TransportError => counters.transport_errors += 1,
                TransactionEvent::Terminated => counters.terminated += 1,
                TransactionEvent::Response { .. } => {}
            }
            self.events.push_back(LayerEvent {
                side: entry.side,
                key: entry.key.clone(),
                event,
            });
        }
        if let Some(at) = entry.scheduled.take() {
            self.schedule.remove(&(at, id));
        }
        if entry.machine.is_terminated() {
            let (side, key) = (entry.side, entry.key.clone());
            self.entries.remove(&id);
            self.index.remove(&(side, key));
            return;
        }
        entry.scheduled = entry.machine.poll_timeout();
        if let Some(at) = entry.scheduled {
            self.schedule.insert((at, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::*;

    fn key(branch: &str, method: Method) -> TransactionKey {
        TransactionKey::for_request(branch, "192.0.2.1:5060", &method)
    }

    fn incoming(key: TransactionKey, method: Method) -> IncomingRequest<u8> {
        IncomingRequest {
            key,
            method,
            peer: 7,
            reliability: Reliability::Unreliable,
            trying: Some(b("100")),
        }
    }

    fn payloads(layer: &mut TransactionLayer<u8>) -> Vec<Bytes> {
        std::iter::from_fn(|| layer.poll_transmit().map(|t| t.payload)).collect()
    }

    fn events(layer: &mut TransactionLayer<u8>) -> Vec<TransactionEvent> {
        std::iter::from_fn(|| layer.poll_event().map(|e| e.event)).collect()
    }

    #[test]
    fn new_request_creates_server_transaction_and_retransmission_is_absorbed() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let k = key("z9hG4bK1", Method::Options);
        let RequestOutcome::New(handle) =
            layer.handle_request(t0, incoming(k.clone(), Method::Options))
        else {
            panic!("expected a new transaction");
        };
        assert_eq!(
            layer.handle_request(t0 + ms(500), incoming(k.clone(), Method::Options)),
            RequestOutcome::Retransmission
        );
        layer
            .send_final(t0 + ms(600), handle, 200, b("200"))
            .unwrap();
        assert_eq!(
            layer.handle_request(t0 + ms(1500), incoming(k.clone(), Method::Options)),
            RequestOutcome::Retransmission
        );
        assert_eq!(payloads(&mut layer), vec![b("200"), b("200")]);
        assert_eq!(layer.counters().retransmissions_absorbed, 2);
        assert_eq!(layer.counters().non_invite_server.created, 1);
    }

    #[test]
    fn a_forgotten_answer_is_sent_once_and_frees_the_entry_and_only_for_non_invite() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let k = key("z9hG4bK-f1", Method::Register);
        let RequestOutcome::New(handle) =
            layer.handle_request(t0, incoming(k.clone(), Method::Register))
        else {
            panic!("expected a new transaction");
        };
        layer.send_final_and_forget(handle, 401, b("401")).unwrap();
        assert_eq!(payloads(&mut layer), vec![b("401")]);
        assert_eq!(events(&mut layer), vec![TransactionEvent::Terminated]);
        assert!(layer.is_empty());
        assert_eq!(layer.poll_timeout(), None, "no Timer J left behind");
        // The same request again is new, not a retransmission.
        assert!(matches!(
            layer.handle_request(t0 + ms(500), incoming(k, Method::Register)),
            RequestOutcome::New(_)
        ));

        let invite = key("z9hG4bK-f2", Method::Invite);
        let RequestOutcome::New(handle) =
            layer.handle_request(t0, incoming(invite.clone(), Method::Invite))
        else {
            panic!("expected a new transaction");
        };
        assert!(matches!(
            layer.send_final_and_forget(handle, 401, b("401")),
            Err(LayerError::NotStatelessAnswerable)
        ));
        assert!(
            layer.contains(Side::Server, &invite),
            "an INVITE stays stateful"
        );
    }

    #[test]
    fn ack_for_non_2xx_is_absorbed_and_unmatched_ack_goes_to_tu() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let k = key("z9hG4bK2", Method::Invite);
        let RequestOutcome::New(handle) =
            layer.handle_request(t0, incoming(k.clone(), Method::Invite))
        else {
            panic!("expected a new transaction");
        };
        layer.send_final(t0, handle, 486, b("486")).unwrap();
        let ack_key = TransactionKey::for_request("z9hG4bK2", "192.0.2.1:5060", &Method::Ack);
        assert_eq!(
            layer.handle_request(t0 + ms(10), incoming(ack_key, Method::Ack)),
            RequestOutcome::AckAbsorbed
        );
        let other = key("z9hG4bK-other", Method::Ack);
        assert_eq!(
            layer.handle_request(t0 + ms(10), incoming(other, Method::Ack)),
            RequestOutcome::AckForTu
        );
        // ACK never creates a transaction.
        assert_eq!(layer.len(), 1);
    }

    #[test]
    fn cancel_lookup_finds_the_invite_server_transaction() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let invite = key("z9hG4bK3", Method::Invite);
        let cancel = key("z9hG4bK3", Method::Cancel);
        let _invite_handle = layer.handle_request(t0, incoming(invite.clone(), Method::Invite));
        let outcome = layer.handle_request(t0 + ms(5), incoming(cancel.clone(), Method::Cancel));
        assert!(
            matches!(outcome, RequestOutcome::New(_)),
            "CANCEL is its own transaction"
        );
        assert_eq!(layer.find_invite_for_cancel(&cancel), Some(invite));
        assert_eq!(
            layer.find_invite_for_cancel(&key("z9hG4bK-none", Method::Cancel)),
            None
        );
        assert_eq!(layer.len(), 2);
    }

    #[test]
    fn poll_timeout_equals_the_earliest_over_all_transactions() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        assert_eq!(layer.poll_timeout(), None);
        // Non-INVITE client at t0+100: Timer E at +600.
        layer
            .start_client(
                t0 + ms(100),
                key("z9hG4bKa", Method::Options),
                1,
                Reliability::Unreliable,
                b("OPTIONS"),
            )
            .unwrap();
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(600)));
        // INVITE server at t0+200: Trying timer at +400, earlier.
        let _h = layer.handle_request(
            t0 + ms(200),
            incoming(key("z9hG4bKb", Method::Invite), Method::Invite),
        );
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(400)));
        layer.handle_timeout(t0 + ms(400));
        assert_eq!(payloads(&mut layer), vec![b("OPTIONS"), b("100")]);
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(600)));
        layer.handle_timeout(t0 + ms(600));
        assert_eq!(payloads(&mut layer), vec![b("OPTIONS")]);
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(1600)));
    }

    #[test]
    fn handle_timeout_fires_all_due_and_removes_terminated() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        for branch in ["z9hG4bK-1", "z9hG4bK-2", "z9hG4bK-3"] {
            layer
                .start_client(
                    t0,
                    key(branch, Method::Bye),
                    1,
                    Reliability::Reliable,
                    b("BYE"),
                )
                .unwrap();
        }
        payloads(&mut layer);
        layer.handle_timeout(t0 + ms(32_000));
        assert!(layer.is_empty());
        assert_eq!(layer.poll_timeout(), None);
        let evs = events(&mut layer);
        assert_eq!(
            evs.iter()
                .filter(|e| **e == TransactionEvent::TimedOut)
                .count(),
            3
        );
        assert_eq!(layer.counters().non_invite_client.timed_out, 3);
        assert_eq!(layer.counters().non_invite_client.terminated, 3);
    }

    #[test]
    fn over_the_cap_new_requests_get_overloaded_for_503() {
        let t0 = origin();
        let config = LayerConfig {
            max_transactions: 2,
            ..LayerConfig::default()
        };
        let mut layer = TransactionLayer::new(config);
        let k1 = key("z9hG4bK-c1", Method::Register);
        let _a = layer.handle_request(t0, incoming(k1.clone(), Method::Register));
        let _b = layer.handle_request(
            t0,
            incoming(key("z9hG4bK-c2", Method::Register), Method::Register),
        );
        assert_eq!(
            layer.handle_request(
                t0,
                incoming(key("z9hG4bK-c3", Method::Register), Method::Register)
            ),
            RequestOutcome::Overloaded
        );
        // Retransmissions of live transactions are still matched.
        assert_eq!(
            layer.handle_request(t0, incoming(k1, Method::Register)),
            RequestOutcome::Retransmission
        );
        assert_eq!(
            layer.start_client(
                t0,
                key("z9hG4bK-c4", Method::Options),
                1,
                Reliability::Reliable,
                b("O")
            ),
            Err(LayerError::Overloaded)
        );
        assert_eq!(layer.counters().rejected_over_cap, 1);
        assert_eq!(layer.len(), 2);
    }

    #[test]
    fn unmatched_response_is_reported_and_retransmitted_final_is_absorbed() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let k = key("z9hG4bK-r", Method::Invite);
        layer
            .start_client(t0, k.clone(), 1, Reliability::Unreliable, b("INVITE"))
            .unwrap();
        assert_eq!(
            layer.handle_response(t0, &key("z9hG4bK-x", Method::Invite), 200, b("200"), None),
            ResponseOutcome::Unmatched
        );
        assert_eq!(
            layer.handle_response(t0 + ms(50), &k, 486, b("486"), Some(b("ACK"))),
            ResponseOutcome::Delivered
        );
        assert_eq!(
            layer.handle_response(t0 + ms(550), &k, 486, b("486"), Some(b("ACK"))),
            ResponseOutcome::Absorbed
        );
        assert_eq!(payloads(&mut layer), vec![b("INVITE"), b("ACK"), b("ACK")]);
        assert_eq!(
            events(&mut layer),
            vec![TransactionEvent::Response {
                status: 486,
                payload: b("486")
            }]
        );
    }

    #[test]
    fn server_handle_rejects_provisional_as_final_and_2xx_retransmit_needs_accepted() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let k = key("z9hG4bK-h", Method::Invite);
        let RequestOutcome::New(handle) =
            layer.handle_request(t0, incoming(k.clone(), Method::Invite))
        else {
            panic!("expected a new transaction");
        };
        assert_eq!(
            layer.retransmit_2xx(t0, &k, 200, b("200")),
            Err(LayerError::Transaction(TransactionError::NotAccepted))
        );
        layer.send_provisional(t0, &handle, 180, b("180")).unwrap();
        assert_eq!(
            layer.send_provisional(t0, &handle, 200, b("200")),
            Err(LayerError::Transaction(TransactionError::NotProvisional(
                200
            )))
        );
        layer.send_final(t0, handle, 200, b("200")).unwrap();
        layer
            .retransmit_2xx(t0 + ms(500), &k, 200, b("200"))
            .unwrap();
        assert_eq!(payloads(&mut layer), vec![b("180"), b("200"), b("200")]);
        let ack = key("z9hG4bK-h", Method::Ack);
        assert_eq!(
            layer.handle_request(t0 + ms(600), incoming(ack, Method::Ack)),
            RequestOutcome::AckForTu
        );
    }

    #[test]
    fn transport_error_reaches_tu_and_removes_the_transaction() {
        let t0 = origin();
        let mut layer = TransactionLayer::new(LayerConfig::default());
        let k = key("z9hG4bK-t", Method::Message);
        layer
            .start_client(t0, k.clone(), 1, Reliability::Reliable, b("MESSAGE"))
            .unwrap();
        layer.handle_transport_error(t0, Side::Client, &k);
        assert_eq!(
            events(&mut layer),
            vec![
                TransactionEvent::TransportError,
                TransactionEvent::Terminated
            ]
        );
        assert!(!layer.contains(Side::Client, &k));
        assert_eq!(layer.counters().non_invite_client.transport_errors, 1);
    }
}
