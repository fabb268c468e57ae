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
//!
//! A task's B-legs, decided by the call's core (`crate::call`) and placed here: agent legs
//! (ring-all: several at once, `calls/legs.rs`) and a unit's (`calls/unit_transfer.rs`);
//! an agent's call to
//! another agent is its own task, whose leg to the consulted agent can be handed to the
//! caller's task in an attended transfer (`calls/attended.rs`, [`CallRouter`] carries
//! the tasks' control messages).

use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::call::{Call, CallInput, CallOutput, CallPrompts, LegId, LegTarget, QueueCue, Repeat};
use crate::config::MediaEncryption;
use crate::config::{Config, TestExtensionConfig, TestExtensionKind};
use crate::ivr::cdr::{AgentFailureCause, CdrBuilder, HangupParty};
use crate::ivr::city::{
    CityEntry, CityId, CityLookup, CityResolution, CityResolver, MobilePrefixTable,
};
use crate::ivr::flow::{
    CallCategory, CallCityInfo, IvrConfig, IvrContext, IvrFlow, Urgency, callback_due,
};
use crate::ivr::hours::WorkingHours;
use crate::ivr::prompt::{PromptRef, number_prompts};
use crate::media::bridge::{LegMedia, RelayDirection, Relayed};
use crate::media::dtmf::{DtmfReceiver, InbandDetector, TelephoneEvent};
use crate::media::player::Prompt;
use crate::media::player::{BargeIn, Player, Playlist, Segment, load_wav};
use crate::media::port_pool::{PortPair, PortPool};
use crate::media::recorder::{Channel, RecorderConfig, WavRecorder, recording_path};
use crate::media::rtp::{RtpPacket, RtpSession, RtpSessionConfig, SessionEvent, write_packet};
use crate::media::sdp::{self, LocalMedia, Negotiated, SessionDescription};
use crate::media::srtp::{SdesCrypto, SrtpContext};
use crate::queue::{AgentId, LegFailure, Party, QueueInput, feature_code_input, position_prompts};
use crate::server::acd::{AcdCommand, AcdShell};
use crate::server::leg_srtp::{LegSrtp, send_rtp};
use crate::server::sip::SipShell;
use crate::sip::call_leg::{EndReason, LegEvent, Side};
use crate::sip::endpoint::{CallEvent, CallHandle, CallOrigin, IncomingCall};
use crate::store::Store;
use crate::store::calls::VoiceMessage;
use crate::ticket::model::CallId;

mod callback_key;
mod unit_transfer;

/// A G.711 frame of 20 ms.
const FRAME_BYTES: usize = 160;
/// Receive buffer: larger than any RTP datagram we accept.
const DATAGRAM: usize = 2048;

use crate::clock::WallClock;

/// Shared settings and resources of the media plane.
#[derive(Debug)]
pub struct MediaContext {
    pool: Mutex<PortPool>,
    bind_ip: IpAddr,
    pub(crate) public_ip: IpAddr,
    pub(crate) media_timeout: Duration,
    pub(crate) recordings_dir: PathBuf,
    prompts_dir: PathBuf,
    extensions: Vec<TestExtensionConfig>,
    max_test_call: Duration,
    pub clock: WallClock,
    active_calls: AtomicUsize,
    hotline: Option<HotlineSetup>,
    pub(crate) store: Option<Store>,
    /// Prompts by id, loaded once at start-up (no file IO on the call path).
    prompts: HashMap<String, Prompt>,
    /// The ACD (`[queues]`); `None`: calls in hours ring the city's first agent.
    pub acd: Option<Arc<AcdShell>>,
    /// Every configured agent (`[[agents]] id`): the numbers an agent may call to
    /// consult another agent.
    agent_ids: Vec<String>,
    /// The outbound trunk and the rule of what may be dialled (callbacks, transfers).
    pub outbound: Arc<crate::server::outbound::Outbound>,
    /// Callback attempts and transfers on work orders (set once the store and the
    /// work-order context exist).
    call_orders: std::sync::OnceLock<crate::server::call_orders::CallOrders>,
    /// Where call records go while the database is unavailable (set by `serve`).
    call_outbox: std::sync::OnceLock<Arc<crate::server::call_outbox::CallRecordOutbox>>,
    /// SRTP policy of each agent's phone (`[[agents]] media_encryption`).
    agent_media_encryption: HashMap<String, MediaEncryption>,
    /// SRTP policy of each trunk source address (`[[trunks]] media_encryption`).
    trunk_media_encryption: HashMap<IpAddr, MediaEncryption>,
    /// Agents' browsers registered as their phones (`GET /api/softphone`).
    pub browsers: Arc<crate::server::webrtc::BrowserPhones>,
}

/// What the 12348 IVR needs: cities, hours, calendar, flow config.
#[derive(Debug)]
struct HotlineSetup {
    service_numbers: Vec<String>,
    resolver: CityResolver,
    cities: HashMap<String, CitySetup>,
    /// The calendar in force (reloaded with the orders' when its file changes).
    calendar: crate::calendar::SharedCalendar,
    ivr: IvrConfig,
    province_center: CityId,
}

#[derive(Debug)]
struct CitySetup {
    hours: WorkingHours,
    duty_list: Vec<String>,
}

impl HotlineSetup {
    fn city_info(&self, city: &CityId, now: chrono::DateTime<chrono::FixedOffset>) -> CallCityInfo {
        let default_hours = WorkingHours::default();
        let setup = self.cities.get(city.as_str());
        let hours = setup.map_or(&default_hours, |c| &c.hours);
        CallCityInfo {
            city: city.clone(),
            open_status: hours.status(&self.calendar.current(), now),
            has_duty_list: setup.is_some_and(|c| !c.duty_list.is_empty()),
            hours_spoken: hours.spoken(),
        }
    }

    fn serves(&self, dialled: &str) -> bool {
        let digits: String = dialled.chars().filter(char::is_ascii_digit).collect();
        !digits.is_empty()
            && self
                .service_numbers
                .iter()
                .any(|n| digits.ends_with(n.as_str()))
    }
}

/// Problems building the media plane from config.
#[derive(Debug, thiserror::Error)]
pub enum MediaSetupError {
    #[error("RTP port range")]
    Ports(#[from] crate::media::port_pool::PortPoolError),
    #[error("city configuration")]
    Cities(#[from] crate::ivr::city::CityError),
    #[error("queue configuration")]
    Queues(#[from] crate::queue::QueueConfigError),
}

impl MediaContext {
    /// The SRTP policy of the phone or trunk an inbound call comes from.
    fn media_encryption_of(&self, incoming: &IncomingCall) -> MediaEncryption {
        match &incoming.origin {
            CallOrigin::Agent(agent) => self.agent_media_encryption_of(agent),
            CallOrigin::Trunk => self
                .trunk_media_encryption
                .get(&incoming.source.addr.ip())
                .copied()
                .unwrap_or_default(),
        }
    }

    pub(crate) fn agent_media_encryption_of(&self, agent: &str) -> MediaEncryption {
        self.agent_media_encryption
            .get(agent)
            .copied()
            .unwrap_or_default()
    }

    /// The SRTP policy of the trunk at `ip` (`[[trunks]] media_encryption`), for the
    /// calls we place through it.
    pub(crate) fn trunk_media_encryption_of(&self, ip: IpAddr) -> MediaEncryption {
        self.trunk_media_encryption
            .get(&ip)
            .copied()
            .unwrap_or_default()
    }

    /// # Errors
    /// The RTP port range holds no pair.
    pub fn from_config(
        config: &Config,
        sip_local: SocketAddr,
        clock: WallClock,
        calendar: crate::calendar::SharedCalendar,
        store: Option<Store>,
    ) -> Result<MediaContext, MediaSetupError> {
        let acd = match config.queues.clone() {
            Some(queues) => Some(AcdShell::new(
                queues,
                // The rosters follow the calendar in force (reloaded when its file
                // changes).
                calendar.clone(),
                clock,
                store.clone(),
                config
                    .agents
                    .iter()
                    .map(|a| (AgentId::new(a.id.clone()), a.name.clone()))
                    .collect(),
            )?),
            None => None,
        };
        let hotline = if config.cities.is_empty() {
            None
        } else {
            let entries: Vec<CityEntry> = config
                .cities
                .iter()
                .map(|c| CityEntry {
                    id: CityId::new(c.id.clone()),
                    name: c.name.clone(),
                    area_codes: c.area_codes.clone(),
                    numbers: c.numbers.clone(),
                })
                .collect();
            let mobile = match &config.calls.mobile_prefixes {
                Some(path) => MobilePrefixTable::load(path)?,
                None => MobilePrefixTable::default(),
            };
            let resolver = CityResolver::new(
                &entries,
                mobile,
                CityId::new(config.calls.province_center.clone()),
            )?;
            Some(HotlineSetup {
                service_numbers: config.calls.service_numbers.clone(),
                resolver,
                cities: config
                    .cities
                    .iter()
                    .map(|c| {
                        (
                            c.id.clone(),
                            CitySetup {
                                hours: c.hours.clone().unwrap_or_default(),
                                duty_list: c.duty_list.clone(),
                            },
                        )
                    })
                    .collect(),
                calendar,
                ivr: config.ivr.clone(),
                province_center: CityId::new(config.calls.province_center.clone()),
            })
        };
        let mut prompts = HashMap::new();
        let ids = config.ivr.prompt_ids();
        for id in ids
            .iter()
            .map(|i| i.as_str().to_string())
            .chain(["hold_music".into()])
        {
            let path = config.media.prompts_dir.join(format!("{id}.wav"));
            match load_wav(&path) {
                Ok(prompt) => {
                    prompts.insert(id, prompt);
                }
                Err(e) => debug!(%e, path = %path.display(), "prompt not loaded"),
            }
        }
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
            hotline,
            store,
            prompts,
            acd,
            agent_media_encryption: config
                .agents
                .iter()
                .map(|a| (a.id.clone(), a.media_encryption))
                .collect(),
            trunk_media_encryption: config
                .trunks
                .iter()
                .flat_map(|t| t.sources.iter().map(|ip| (*ip, t.media_encryption)))
                .collect(),
            agent_ids: config.agents.iter().map(|a| a.id.clone()).collect(),
            outbound: Arc::new(crate::server::outbound::Outbound::from_config(config)),
            call_orders: std::sync::OnceLock::new(),
            call_outbox: std::sync::OnceLock::new(),
            browsers: Arc::new(crate::server::webrtc::BrowserPhones::new(
                public_ip, bind_ip,
            )),
        })
    }

    /// Keep the records of calls that end while the database is unavailable in this
    /// outbox (`serve` does; without one they are logged and lost).
    pub fn keep_call_records_in(&self, outbox: Arc<crate::server::call_outbox::CallRecordOutbox>) {
        let _ = self.call_outbox.set(outbox);
    }

    /// Store a finished call's record; while the database is unavailable, queue it.
    pub(crate) async fn store_call_record(
        &self,
        handle: impl std::fmt::Display,
        record: &crate::ivr::cdr::CallDetailRecord,
        message: Option<&VoiceMessage>,
    ) {
        let Some(store) = &self.store else {
            warn!(%handle, "no database: CDR not stored");
            return;
        };
        let e = match store.insert_call(record, message).await {
            Ok(()) => return,
            Err(e) => e,
        };
        let Some(outbox) = self.call_outbox.get().filter(|_| e.is_unavailable()) else {
            warn!(%handle, %e, "CDR not stored");
            return;
        };
        let outbox = outbox.clone();
        let queued = crate::server::call_outbox::QueuedCallRecord {
            record: record.clone(),
            voice_message: message.cloned(),
        };
        match tokio::task::spawn_blocking(move || outbox.append(queued)).await {
            Ok(Ok(())) => {}
            Ok(Err(journal)) => {
                error!(%handle, %e, %journal, "CDR lost: the database is unavailable and the outbox cannot be written");
            }
            Err(join) => error!(%handle, %join, "CDR lost: the outbox task failed"),
        }
    }

    /// Start writing callbacks and transfers on work orders (`serve` does, once the
    /// store and the work-order context exist).
    pub fn start_call_orders(
        &self,
        store: Store,
        orders: Arc<crate::orders::OrdersContext>,
        province_center: crate::ticket::UnitId,
    ) {
        let _ = self
            .call_orders
            .set(crate::server::call_orders::CallOrders::start(
                store,
                orders,
                province_center,
            ));
    }

    /// The work-order writer of call facts, when started.
    pub(crate) fn call_orders(&self) -> Option<&crate::server::call_orders::CallOrders> {
        self.call_orders.get()
    }

    /// A play list of prompt ids and spoken numbers; a missing prompt becomes a short
    /// silence (logged), so a city's partial recording set never breaks the flow.
    pub(crate) fn playlist(&self, refs: &[PromptRef]) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut add = |id: &str| match self.prompts.get(id) {
            Some(p) => segments.push(Segment::Prompt(p.clone())),
            None => {
                warn!(prompt = id, "prompt missing; silence instead");
                segments.push(Segment::Silence(Duration::from_millis(300)));
            }
        };
        for r in refs {
            match r {
                PromptRef::Prompt(id) => add(id.as_str()),
                PromptRef::Number(n) => {
                    for id in number_prompts(*n) {
                        add(id.as_str());
                    }
                }
            }
        }
        segments
    }

    fn ivr_beep(&self) -> crate::ivr::prompt::PromptId {
        self.hotline.as_ref().map_or_else(
            || crate::ivr::prompt::PromptId::new("beep"),
            |s| s.ivr.beep.clone(),
        )
    }

    /// Calls with media open right now.
    pub fn active_calls(&self) -> usize {
        self.active_calls.load(Ordering::Relaxed)
    }

    pub(crate) fn release(&self, ports: PortPair) {
        if let Ok(mut pool) = self.pool.lock()
            && let Err(e) = pool.release(ports)
        {
            warn!(%e, "port pair released twice");
        }
    }

    /// Allocate and bind an RTP/RTCP pair, skipping pairs another process holds.
    pub(crate) async fn open_sockets(&self) -> Option<(PortPair, UdpSocket, UdpSocket)> {
        let attempts = self.pool.lock().map(|p| p.capacity()).unwrap_or(0);
        for _ in 0..attempts.min(64) {
            let pair = self.pool.lock().ok()?.allocate(rand::random())?;
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
        if let CallOrigin::Agent(user) = &call.origin
            && let Some(acd) = self.acd.as_ref()
            && let Some(input) = feature_code_input(AgentId::new(user.clone()), &call.dialled)
        {
            return match acd.input(input) {
                Ok(()) => {
                    info!(agent = %user, code = %call.dialled, "feature code taken");
                    Some(Service::FeatureDone)
                }
                Err(e) => {
                    info!(agent = %user, code = %call.dialled, %e, "feature code refused");
                    None
                }
            };
        }
        if let Some(e) = self.extensions.iter().find(|e| e.number == call.dialled) {
            return Some(Service::Test(e.clone()));
        }
        if let Some(service) = self.consult_service(call) {
            return Some(service);
        }
        // The hotline is for callers arriving over a trunk, never for agents' phones.
        let from_trunk = call.origin == crate::sip::endpoint::CallOrigin::Trunk;
        self.hotline
            .as_ref()
            .filter(|h| from_trunk && h.serves(&call.dialled))
            .map(|_| Service::Hotline)
    }
}

/// What a call is for.
#[derive(Debug, Clone)]
enum Service {
    Test(TestExtensionConfig),
    Hotline,
    /// A feature code (`*11` …) the ACD took: a confirmation tone, then BYE.
    FeatureDone,
    /// An agent calls another agent (consultation before an attended transfer,
    /// `calls/attended.rs`).
    Consult {
        from: AgentId,
        target: AgentId,
    },
}

/// Routes endpoint call events to the call tasks.
#[derive(Debug)]
pub struct CallRouter {
    media: Arc<MediaContext>,
    tasks: Mutex<HashMap<CallHandle, mpsc::UnboundedSender<(CallHandle, LegEvent)>>>,
    /// Each call task's control channel, by the handle of its inbound leg.
    controls: Mutex<HashMap<CallHandle, mpsc::UnboundedSender<TaskControl>>>,
    /// The task (inbound leg) each B-leg belongs to.
    owners: Mutex<HashMap<CallHandle, CallHandle>>,
}

impl CallRouter {
    pub fn new(media: Arc<MediaContext>) -> CallRouter {
        CallRouter {
            media,
            tasks: Mutex::new(HashMap::new()),
            controls: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// A registration was added, refreshed or removed: the ACD compares with the
    /// registrar.
    pub(crate) fn registration_changed(&self) {
        if let Some(acd) = self.media.acd.as_ref() {
            acd.registration_changed();
        }
    }

    /// The media plane.
    pub(crate) fn media(&self) -> &Arc<MediaContext> {
        &self.media
    }

    /// Send the events of `leg` (an outbound leg a callback task placed) to `tx`.
    pub(crate) fn route_leg(
        &self,
        leg: CallHandle,
        tx: mpsc::UnboundedSender<(CallHandle, LegEvent)>,
    ) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(leg, tx);
        }
    }

    /// Where the leg events of the task of `task` go (a browser leg reports there).
    fn task_events(
        &self,
        task: CallHandle,
    ) -> Option<mpsc::UnboundedSender<(CallHandle, LegEvent)>> {
        self.tasks.lock().ok()?.get(&task).cloned()
    }

    /// Send the events of `leg` (a B-leg the task placed) to the task of `task`.
    fn alias(&self, leg: CallHandle, task: CallHandle) {
        if let Ok(mut tasks) = self.tasks.lock()
            && let Some(tx) = tasks.get(&task).cloned()
        {
            tasks.insert(leg, tx);
        }
        if let Ok(mut owners) = self.owners.lock() {
            owners.insert(leg, task);
        }
    }

    pub(crate) fn dispatch(&self, shell: &Arc<SipShell>, call: CallHandle, event: CallEvent) {
        match event {
            CallEvent::Incoming(incoming) if incoming.replaces.is_some() => {
                self.route_replaces(shell, call, incoming);
            }
            CallEvent::Incoming(incoming) => {
                let (tx, rx) = mpsc::unbounded_channel();
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.insert(call, tx);
                }
                let (control_tx, control_rx) = mpsc::unbounded_channel();
                if let Ok(mut controls) = self.controls.lock() {
                    controls.insert(call, control_tx);
                }
                tokio::spawn(run_call(
                    shell.clone(),
                    self.media.clone(),
                    call,
                    *incoming,
                    (rx, control_rx),
                ));
            }
            CallEvent::Leg(event) => {
                let ended = matches!(event, LegEvent::Ended { .. });
                if let Ok(mut tasks) = self.tasks.lock() {
                    if let Some(tx) = tasks.get(&call) {
                        // A task that already finished has dropped its receiver: fine.
                        let _ = tx.send((call, event));
                    }
                    if ended {
                        tasks.remove(&call);
                        if let Ok(mut owners) = self.owners.lock() {
                            owners.remove(&call);
                        }
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

/// As words for the log: `local_hangup by local`, `unconfirmed`.
impl std::fmt::Display for CallEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallEnd::Leg { reason, who } => write!(f, "{reason} by {who}"),
            CallEnd::Unconfirmed => f.write_str("unconfirmed"),
        }
    }
}

async fn run_call(
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    handle: CallHandle,
    incoming: IncomingCall,
    (events, control): (
        mpsc::UnboundedReceiver<(CallHandle, LegEvent)>,
        mpsc::UnboundedReceiver<TaskControl>,
    ),
) {
    // Plain RTP from a phone or trunk that must use SRTP is refused before the call does
    // anything: a feature code dialled that way does not take effect either.
    if ctx.media_encryption_of(&incoming) == MediaEncryption::Required {
        let keyed = std::str::from_utf8(&incoming.sdp)
            .ok()
            .and_then(|text| SessionDescription::parse(text).ok())
            .is_some_and(|offer| matches!(sdp::offered_sdes(&offer), Ok(Some(_))));
        if !keyed {
            let _forget = attended::ForgetTask(shell.clone(), handle);
            info!(%handle, dialled = %incoming.dialled, "plain RTP offered where SRTP is required; 488");
            shell.drive(|ep| ep.call_reject(Instant::now(), handle, 488));
            return;
        }
    }
    let service = ctx.service_for(&incoming);
    if let Some(Service::Consult { from, target }) = service {
        attended::run_consult(
            &shell,
            &ctx,
            handle,
            &incoming,
            (events, control),
            from,
            target,
        )
        .await;
        shell.calls().forget_task(handle);
        return;
    }
    let _forget = attended::ForgetTask(shell.clone(), handle);
    let Some(service) = service else {
        // A refused feature code is 403 (the softphone shows "Forbidden": not a queue
        // agent, or not allowed now); otherwise 480 rather than 404: the number may be
        // served by another node or later.
        let feature = matches!(incoming.origin, CallOrigin::Agent(_))
            && incoming.dialled.starts_with('*')
            && ctx.acd.is_some();
        let status = if feature { 403 } else { 480 };
        info!(%handle, dialled = %incoming.dialled, status, "no service at this number");
        shell.drive(|ep| ep.call_reject(Instant::now(), handle, status));
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
    let policy = ctx.media_encryption_of(&incoming);
    let answer = srtp_answer(&offer, &local, policy);
    let (answer, srtp) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            info!(%handle, %e, ?policy, "SDP offer refused");
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
        caller = %crate::ticket::privacy::mask_phone(&incoming.caller),
        codec = answer.media.codec.encoding_name(),
        rtp_port = ports.rtp,
        srtp = srtp.is_some(),
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
    call.control_rx = Some(control);
    call.srtp = srtp;
    open_cdr(&ctx, &call);
    let end = call.run(events).await;
    let summary = call.finish(Instant::now(), end);
    ctx.release(ports);
    if let Some((record, message)) = &summary.cdr {
        info!(
            %handle,
            call_id = %record.call_id,
            city = %crate::logfmt::word(&record.city),
            category = %crate::logfmt::word(&record.category),
            path = %crate::logfmt::word(&record.path),
            hung_up_first = %crate::logfmt::word(&record.hung_up_first),
            callback_due = %crate::logfmt::word(&message.as_ref().map(|m| m.callback_due.as_str())),
            "cdr"
        );
        ctx.store_call_record(handle, record, message.as_ref())
            .await;
    }
    // Counted until its record is stored: a drain waits for that too.
    ctx.active_calls.fetch_sub(1, Ordering::Relaxed);
    info!(
        %handle,
        call_id = %incoming.call_id,
        end = %end,
        rtp_received = summary.received,
        rtp_sent = summary.sent,
        digits = %summary.digits,
        recording = %crate::logfmt::word(&summary.recording),
        "call ended"
    );
}

/// Answer an inbound offer under the caller's SRTP policy: an SDES offer is answered
/// with our own key when SRTP is allowed; plain RTP is refused when SRTP is required, and
/// an `RTP/SAVP` offer when it is not allowed (both 488).
fn srtp_answer(
    offer: &SessionDescription,
    local: &LocalMedia,
    policy: MediaEncryption,
) -> Result<(sdp::Answer, Option<LegSrtp>), sdp::SdpError> {
    let offered = match policy {
        MediaEncryption::None => None,
        MediaEncryption::Optional | MediaEncryption::Required => sdp::offered_sdes(offer)?,
    };
    match offered {
        Some(theirs) => {
            let savp = offer
                .media
                .iter()
                .find(|m| m.kind == "audio" && m.port != 0)
                .is_some_and(sdp::MediaDescription::is_savp);
            let mut answer = sdp::answer(&sdp::as_plain(offer), local)?;
            let ours = LegSrtp::fresh(theirs.tag);
            answer.sdp = sdp::with_sdes(answer.sdp, &ours, savp);
            Ok((answer, Some(LegSrtp::new(ours, &theirs))))
        }
        None if policy == MediaEncryption::Required => Err(sdp::SdpError::NoUsableAudio),
        None => Ok((sdp::answer(offer, local)?, None)),
    }
}

/// Write a hotline call's record as soon as it is answered (in progress), so that a
/// crash cannot lose it; the end completes it. In the background: the greeting never
/// waits for the database.
fn open_cdr(ctx: &MediaContext, call: &CallMedia) {
    let (Some(h), Some(store)) = (call.hotline.as_ref(), ctx.store.clone()) else {
        return;
    };
    let record = h.cdr.record().clone();
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(5), store.open_call(&record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(call_id = %record.call_id, %e, "call record not opened"),
            Err(_) => warn!(call_id = %record.call_id, "call record not opened: database too slow"),
        }
    });
}

#[derive(Debug, Default)]
struct CallSummary {
    received: u64,
    sent: u64,
    digits: String,
    recording: Option<PathBuf>,
    cdr: Option<(crate::ivr::cdr::CallDetailRecord, Option<VoiceMessage>)>,
}

/// The 12348 IVR part of a call.
struct HotlineCall {
    /// What the caller hears and where the call is (the sans-IO core, `src/call/`).
    call: Call,
    cdr: CdrBuilder,
    call_id: String,
    caller: String,
    /// The trunk vouched for `caller` (its identity header, or a From it screens):
    /// only then may the callback key dial it.
    callback_allowed: bool,
    city: Option<CityId>,
    message: Option<MessageRecording>,
    voice_message: Option<VoiceMessage>,
    last_message_path: Option<PathBuf>,
}

struct MessageRecording {
    recorder: WavRecorder<std::fs::File>,
    path: PathBuf,
}

/// One answered call's media state.
struct CallMedia {
    shell: Arc<SipShell>,
    ctx: Arc<MediaContext>,
    handle: CallHandle,
    /// SRTP with the caller (SDES), when negotiated.
    srtp: Option<LegSrtp>,
    /// `None` for a hotline call.
    kind: Option<TestExtensionKind>,
    hotline: Option<Box<HotlineCall>>,
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
    /// The caller's ACK arrived (or its media did): until then nothing is sent to the
    /// SDP address, which anyone can name (a reflection attack needs no ACK).
    confirmed: bool,
    /// The server hangs up at this moment (maximum call time, end of prompt …).
    hangup_at: Option<Instant>,
    /// We asked the endpoint to end the call; waiting for `Ended` until this moment.
    ending_since: Option<Instant>,
    /// The B-leg to the agent the caller is bridged to (a consultation: the consulted
    /// agent's, ringing or answered).
    agent: Option<AgentLeg>,
    /// The other agent legs the core dialled: ringing (ring-all: several), or ending.
    legs: Vec<AgentLeg>,
    /// Legs the core asked for, placed from the run loop (opening ports awaits).
    pending_legs: Vec<(LegId, LegTarget)>,
    /// The call is in the ACD under this id.
    queue: Option<QueueLink>,
    /// The ACD's command channel, handed to the run loop once.
    new_acd_rx: Option<mpsc::UnboundedReceiver<AcdCommand>>,
    /// Other call tasks' requests (`TaskControl`), handed to the run loop once.
    control_rx: Option<mpsc::UnboundedReceiver<TaskControl>>,
    /// Attended transfer state (`calls/attended.rs`).
    transfer: attended::TransferState,
    /// The caller's leg to a unit's outside number (transfer, `unit_transfer.rs`).
    unit: Option<Box<unit_transfer::UnitLeg>>,
}

/// A call the ACD owns (waiting, ringing an agent or bridged).
struct QueueLink {
    acd: Arc<AcdShell>,
    call: CallId,
    category: CallCategory,
    urgency: Urgency,
}

mod attended;
mod legs;

/// A G.711 RTP session for one leg: random SSRC, first sequence number and timestamp
/// (RFC 3550 §5.1), CNAME `cname`, ended after `media_timeout` without media (`None`
/// while the leg is on hold); media accepted from the SDP's host and from `signalling`,
/// the host the leg's SIP comes from (a phone behind NAT), when known.
pub(crate) fn leg_rtp_session(
    cname: String,
    media_timeout: Option<Duration>,
    now: Instant,
    remote: crate::media::rtp::RemoteMedia,
    signalling: Option<IpAddr>,
) -> RtpSession {
    let mut config = RtpSessionConfig::g711(rand::random(), rand::random(), rand::random(), cname);
    config.media_timeout = media_timeout;
    let mut session = RtpSession::new(config, now, std::time::SystemTime::now(), remote);
    if let Some(ip) = signalling {
        session.trust_signalling_ip(ip);
    }
    session
}

pub(crate) use crate::call::leg_failure;
use attended::TaskControl;

/// How long a consulted agent's phone rings.
const AGENT_RING_TIMEOUT: Duration = Duration::from_secs(30);

/// Our leg to an agent and the bridge to it.
struct AgentLeg {
    /// The call core's name for it (`None`: a consultation's leg, no core).
    id: Option<LegId>,
    handle: CallHandle,
    agent: String,
    /// The registered contact rung (dropped from the registrar if the phone vanishes).
    contact: crate::sip::message::Uri,
    /// Where the phone's SIP comes from (its media may come from there too, behind NAT).
    peer_ip: Option<IpAddr>,
    ports: PortPair,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    offer: SessionDescription,
    /// Our side of the leg's media (answers the agent's re-INVITEs).
    local: LocalMedia,
    session: Option<RtpSession>,
    negotiated: Option<Negotiated>,
    to_agent: Option<RelayDirection>,
    to_caller: Option<RelayDirection>,
    /// We sent CANCEL or BYE (or the media timeout ended it).
    ended: bool,
    /// Our SDES key in the offer and the agent's policy (`None`: plain RTP offered).
    srtp_offer: Option<(SdesCrypto, MediaEncryption)>,
    /// SRTP with the agent's phone, once its answer carried its key.
    srtp: Option<LegSrtp>,
}

impl CallMedia {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ctx: &Arc<MediaContext>,
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
        let media_timeout = (!negotiated.is_held()).then_some(ctx.media_timeout);
        let session = leg_rtp_session(
            format!("hotline-{}", handle.0),
            media_timeout,
            now,
            negotiated.remote(),
            Some(incoming.source.addr.ip()),
        );
        let mut call = CallMedia {
            srtp: None,
            shell,
            ctx: ctx.clone(),
            handle,
            kind: None,
            hotline: None,
            negotiated,
            local,
            rtp,
            rtcp,
            session,
            player: None,
            recorder: None,
            recording: None,
            dtmf: DtmfReceiver::default(),
            inband: None,
            digits: String::new(),
            sent: 0,
            media_timeout: ctx.media_timeout,
            confirmed: false,
            hangup_at: Some(now + ctx.max_test_call),
            ending_since: None,
            agent: None,
            legs: Vec::new(),
            pending_legs: Vec::new(),
            queue: None,
            new_acd_rx: None,
            control_rx: None,
            transfer: attended::TransferState::default(),
            unit: None,
        };
        match service {
            Service::Test(extension) => call.start_test(&extension, incoming, now),
            Service::Hotline => {
                call.hotline = start_hotline(ctx, handle, incoming);
                call.inband = Some(InbandDetector::new());
                // A backstop only: the IVR and the queue end calls long before.
                call.hangup_at = Some(now + Duration::from_secs(2 * 3600));
                call.control(now, CallInput::Start);
            }
            Service::Consult { .. } => {
                // Answered only once the consulted agent answers (`run_consult`).
                call.hangup_at = Some(now + Duration::from_secs(4 * 3600));
            }
            Service::FeatureDone => {
                // A short tone, then BYE: the softphone shows a completed call.
                call.kind = Some(TestExtensionKind::Play);
                let beep = call.ctx.ivr_beep();
                let mut segments = vec![Segment::Silence(Duration::from_millis(200))];
                segments.extend(call.ctx.playlist(&[PromptRef::Prompt(beep)]));
                call.player = Some(Player::new(Playlist::once(segments), now, BargeIn::Ignore));
            }
        }
        call
    }

    fn start_test(
        &mut self,
        extension: &TestExtensionConfig,
        incoming: &IncomingCall,
        now: Instant,
    ) {
        let handle = self.handle;
        let ctx = self.ctx.clone();
        self.kind = Some(extension.kind);
        match extension.kind {
            TestExtensionKind::Play => {
                let file = extension
                    .prompt
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("greeting.wav"));
                let path = ctx.prompts_dir.join(file);
                match load_wav(&path) {
                    Ok(prompt) => {
                        self.player = Some(Player::new(
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
                // Not dead air: say what this number does, then the beep.
                let ivr = ctx.hotline.as_ref().map(|s| &s.ivr);
                let refs = [
                    PromptRef::Prompt(ivr.map_or_else(
                        || crate::ivr::prompt::PromptId::new("test_record"),
                        |i| i.test_record.clone(),
                    )),
                    PromptRef::Prompt(ctx.ivr_beep()),
                ];
                self.player = Some(Player::new(
                    Playlist::once(ctx.playlist(&refs)),
                    now,
                    BargeIn::Ignore,
                ));
                let date = ctx.clock.now().date_naive();
                let path = recording_path(&ctx.recordings_dir, date, &incoming.call_id);
                let stereo = extension.stereo;
                match create_recorder(&path, now, stereo) {
                    Ok(r) => {
                        self.recorder = Some(r);
                        self.recording = Some(path);
                    }
                    Err(e) => {
                        crate::metrics::recording_failed();
                        warn!(%handle, %e, "recording not started; the call goes on");
                    }
                }
            }
            TestExtensionKind::Dtmf => {
                let prompt = ctx.hotline.as_ref().map_or_else(
                    || crate::ivr::prompt::PromptId::new("test_dtmf"),
                    |s| s.ivr.test_dtmf.clone(),
                );
                self.player = Some(Player::new(
                    Playlist::once(ctx.playlist(&[PromptRef::Prompt(prompt)])),
                    now,
                    BargeIn::StopOnDtmf,
                ));
                self.inband = Some(InbandDetector::new());
            }
            TestExtensionKind::Echo => {}
        }
    }

    fn next_deadline(&self) -> Instant {
        [
            self.session.poll_timeout(),
            self.player.as_ref().and_then(Player::poll_timeout),
            self.dtmf.poll_timeout(),
            self.recorder.as_ref().map(WavRecorder::poll_timeout),
            self.hotline.as_ref().and_then(|h| h.call.poll_timeout()),
            self.agent
                .as_ref()
                .and_then(|a| a.session.as_ref())
                .and_then(RtpSession::poll_timeout),
            self.unit_deadline(),
            self.hotline
                .as_ref()
                .and_then(|h| h.message.as_ref())
                .map(|m| m.recorder.poll_timeout()),
            self.hangup_at,
            self.ending_since.map(|t| t + Duration::from_secs(40)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }

    async fn run(
        &mut self,
        mut events: mpsc::UnboundedReceiver<(CallHandle, LegEvent)>,
    ) -> CallEnd {
        let mut buf = [0u8; DATAGRAM];
        let mut agent_buf = [0u8; DATAGRAM];
        let mut rtcp_buf = [0u8; DATAGRAM];
        let mut unit_buf = [0u8; DATAGRAM];
        let mut acd_rx: Option<mpsc::UnboundedReceiver<AcdCommand>> = None;
        let mut control_rx: Option<mpsc::UnboundedReceiver<TaskControl>> = None;
        loop {
            if let Some(rx) = self.new_acd_rx.take() {
                acd_rx = Some(rx);
            }
            if let Some(rx) = self.control_rx.take() {
                control_rx = Some(rx);
            }
            if !self.pending_legs.is_empty() {
                self.place_legs(Instant::now()).await;
            }
            let acd_command = async {
                match acd_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let control = async {
                match control_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            let agent_rtp = async {
                match self.agent.as_ref() {
                    Some(agent) => agent.rtp.recv_from(&mut agent_buf).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.rtp.recv_from(&mut buf) => {
                    if let Ok((n, from)) = received {
                        self.on_rtp(Instant::now(), from, &mut buf, n);
                    }
                }
                received = agent_rtp => {
                    if let Ok((n, from)) = received {
                        self.on_agent_rtp(Instant::now(), from, &mut agent_buf, n);
                    }
                }
                received = crate::server::outleg::recv_rtp(self.unit.as_ref().map(|u| &u.leg), &mut unit_buf) => {
                    if let Ok((n, from)) = received {
                        self.on_unit_rtp(Instant::now(), from, &mut unit_buf, n);
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
                command = acd_command => match command {
                    Some(command) => self.on_acd_command(Instant::now(), command),
                    None => acd_rx = None,
                },
                message = control => match message {
                    Some(message) => self.on_control(Instant::now(), message).await,
                    None => control_rx = None,
                },
                event = events.recv() => match event {
                    Some((leg, event)) if self.is_unit_leg(leg) => {
                        self.on_unit_event(Instant::now(), event);
                    }
                    Some((leg, event)) if leg != self.handle => {
                        self.on_agent_event(Instant::now(), leg, event);
                    }
                    Some((_, LegEvent::Ended { reason, who_hung_up })) => {
                        self.hang_up_agent(Instant::now());
                        return CallEnd::Leg { reason, who: who_hung_up };
                    }
                    Some((_, LegEvent::Reinvite { sdp })) => self.on_reinvite(Instant::now(), &sdp),
                    Some((_, LegEvent::Confirmed)) => self.confirmed = true,
                    Some((_, LegEvent::Refer { replaces, .. })) => {
                        self.on_own_refer(Instant::now(), replaces.as_ref());
                    }
                    Some((_, other)) => debug!(handle = %self.handle, ?other, "leg event"),
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

    /// The call's link to the ACD while the ACD holds the call (waiting or bridged to
    /// its agent; the core knows): not once it let go (voice message, callback, survey,
    /// unit) or the call was never queued.
    fn acd_link(&self) -> Option<&QueueLink> {
        let held = self.hotline.as_ref().is_some_and(|h| h.call.in_acd());
        self.queue.as_ref().filter(|_| held)
    }

    /// Report to the ACD while it holds the call; errors are races (the ACD already
    /// let go) and only logged.
    fn report(&self, input: QueueInput) {
        if let Some(q) = self.acd_link()
            && let Err(e) = q.acd.input(input)
        {
            debug!(handle = %self.handle, %e, "report not taken by the ACD");
        }
    }

    fn on_acd_command(&mut self, now: Instant, command: AcdCommand) {
        let handle = self.handle;
        debug!(%handle, ?command, "ACD command");
        match command {
            AcdCommand::HoldMusic => self.control(now, CallInput::Queue(QueueCue::HoldMusic)),
            AcdCommand::Announce { position } => {
                let refs = self.announcement(position);
                self.control(now, CallInput::Queue(QueueCue::Announce(refs)));
            }
            AcdCommand::PleaseHold => self.control(now, CallInput::Queue(QueueCue::PleaseHold)),
            AcdCommand::StopAnnouncement => {
                self.control(now, CallInput::Queue(QueueCue::StopAnnouncement));
            }
            AcdCommand::Ring { agent } => self.control(now, CallInput::RingAgent(agent)),
            AcdCommand::CancelRing { agent } => {
                info!(%handle, %agent, "ACD lets go of the agent leg");
                self.control(now, CallInput::CancelRing(agent));
            }
            AcdCommand::HangupAgent { agent } => {
                info!(%handle, %agent, "ACD hangs up the agent leg");
                self.control(now, CallInput::HangUpAgent(agent));
            }
            AcdCommand::Bridge { agent } => debug!(%handle, %agent, "bridged (at the answer)"),
            AcdCommand::CallbackRegistered { position } => self.callback_registered(now, position),
            AcdCommand::ToUnit { unit } => {
                self.control(now, CallInput::Queue(QueueCue::ToUnit(unit)));
            }
            AcdCommand::Overflowed { to } => {
                info!(%handle, to = to.as_str(), "overflowed to another queue");
            }
            AcdCommand::Survey => {
                info!(%handle, "satisfaction survey");
                self.control(now, CallInput::Queue(QueueCue::Survey));
            }
            AcdCommand::Transfer { to, reply } => {
                reply.send(self.blind_transfer(now, to, |_| {}));
            }
            AcdCommand::VoiceMessage { reason } => {
                if self.queue.is_none() {
                    return;
                }
                info!(%handle, reason = %crate::logfmt::word(&reason), "nobody can take the call now: voice message");
                self.control(now, CallInput::Queue(QueueCue::VoiceMessage(reason)));
            }
        }
    }

    /// An event of an agent leg: the hotline call's legs go to its core
    /// (`calls/legs.rs`); a consultation's leg to the consulted agent is handled here.
    fn on_agent_event(&mut self, now: Instant, leg: CallHandle, event: LegEvent) {
        let Some(event) = self.forward_handed_over(leg, event) else {
            return;
        };
        if self.hotline.is_some() {
            self.on_leg_event(now, leg, event);
        } else {
            self.on_consult_leg_event(now, leg, event);
        }
    }

    /// The consulted agent's leg of a consultation (no core): bridged at the answer;
    /// its end ends the consultation.
    fn on_consult_leg_event(&mut self, now: Instant, leg: CallHandle, event: LegEvent) {
        let handle = self.handle;
        let Some(mut agent) = self.agent.take_if(|a| a.handle == leg) else {
            return;
        };
        match event {
            LegEvent::Answered { sdp: Some(sdp) } => {
                let answer = std::str::from_utf8(&sdp)
                    .ok()
                    .and_then(|t| SessionDescription::parse(t).ok());
                let negotiated = answer
                    .as_ref()
                    .and_then(|answer| sdp::parse_answer(&agent.offer, answer).ok())
                    .filter(|_| agent.take_srtp_answer(answer.as_ref()));
                if let Some(negotiated) = negotiated {
                    self.start_agent_media(now, &mut agent, negotiated);
                    self.hangup_at = Some(now + Duration::from_secs(4 * 3600));
                    self.player = None;
                    info!(%handle, agent = %agent.agent, codec = negotiated.codec.encoding_name(), "consulted agent answered; bridged");
                } else {
                    warn!(%handle, "agent's SDP answer unusable; hanging up the agent");
                    self.shell.drive(|ep| ep.call_hangup(now, leg));
                }
                self.agent = Some(agent);
            }
            LegEvent::Ended { reason, .. } => {
                agent.ended = true;
                let bridged = agent.session.is_some();
                info!(%handle, %reason, bridged, "agent leg ended");
                if bridged {
                    self.hangup_at = Some(now);
                    self.agent = Some(agent);
                } else {
                    let ports = agent.ports;
                    drop(agent);
                    self.ctx.release(ports);
                }
            }
            LegEvent::Refer {
                replaces: Some(replaces),
                ..
            } => {
                self.agent = Some(agent);
                self.on_attended_refer(now, leg, &replaces);
            }
            LegEvent::Refer { refer_to, .. } => {
                self.agent = Some(agent);
                self.on_refer(now, leg, &refer_to);
            }
            LegEvent::Reinvite { sdp } => {
                self.agent = Some(agent);
                self.on_agent_reinvite(now, leg, &sdp);
            }
            other => {
                self.agent = Some(agent);
                debug!(%handle, ?other, "agent leg event");
            }
        }
    }

    /// A blind transfer (REFER, RFC 3515) from the bridged agent: `sip:survey@…` to
    /// the satisfaction survey, `sip:<city>@…` to that city's queue, `sip:unit-<id>@…`
    /// or the unit's number to a unit through the outbound trunk (the syntax of
    /// [`crate::queue::TransferTarget::parse`]). Anything else is refused with 403.
    fn on_refer(
        &mut self,
        now: Instant,
        leg: CallHandle,
        refer_to: &crate::sip::message::NameAddr,
    ) {
        let user = refer_to.uri.user.clone().unwrap_or_default();
        let handle = self.handle;
        // One parser for REFER and the transfer API; a number that is no unit's is
        // refused here (no open dialling).
        let accepted = match self.ctx.outbound.transfer_target(&user) {
            Ok(to) => self.blind_transfer(now, to, |call| {
                call.shell.drive(|ep| {
                    let _ = ep.call_accept_refer(now, leg);
                    let _ = ep.call_notify_refer(now, leg, 200, "OK");
                });
            }),
            Err(e) => {
                info!(%handle, %e, target = %user, "transfer refused");
                Err(crate::server::transfer::TransferError::Refused(
                    e.to_string(),
                ))
            }
        };
        if accepted.is_err() {
            self.shell.drive(|ep| ep.call_reject_refer(now, leg, 403));
        }
    }

    /// The blind transfer shared by the agent's REFER and the consoles' API: the ACD
    /// takes the call back (`QueueInput::Transfer`), `accepted` runs (the REFER's 202
    /// and NOTIFY), the agent leg is hung up and released, and the caller hears hold
    /// music until the ACD's next command (the survey, or another queue's agent).
    fn blind_transfer(
        &mut self,
        now: Instant,
        to: crate::queue::TransferTarget,
        accepted: impl FnOnce(&mut Self),
    ) -> Result<(), crate::server::transfer::TransferError> {
        use crate::server::transfer::TransferError;
        let handle = self.handle;
        let Some(q) = self.acd_link() else {
            return Err(TransferError::NotBridged);
        };
        let input = QueueInput::Transfer {
            call: q.call.clone(),
            to: to.clone(),
        };
        if let Err(e) = q.acd.input(input) {
            info!(%handle, %e, target = %crate::logfmt::word(&to), "transfer refused by the ACD");
            return Err(TransferError::Refused(e.to_string()));
        }
        info!(%handle, target = %crate::logfmt::word(&to), "blind transfer by the agent");
        accepted(self);
        // The core ends the agent's leg and puts the caller on hold music.
        self.control(now, CallInput::BlindTransfer { to: to.label() });
        Ok(())
    }

    /// RTP from the agent: relayed to the caller in place, recorded on the right channel.
    fn on_agent_rtp(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8], n: usize) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let n = match agent.srtp.as_mut() {
            Some(srtp) => match srtp.unprotect(buf, n) {
                Some(n) => n,
                None => return,
            },
            None => n,
        };
        if agent.negotiated.as_ref().is_some_and(Negotiated::is_held) {
            // The agent holds the caller: the caller hears our hold music instead.
            return;
        }
        let (Some(session), Some(relay)) = (agent.session.as_mut(), agent.to_caller.as_mut())
        else {
            return;
        };
        let accepted = buf
            .get(..n)
            .and_then(|d| RtpPacket::parse(d).ok())
            .is_some_and(|packet| {
                matches!(
                    session.receive_rtp(now, from, &packet),
                    crate::media::rtp::ReceiveOutcome::Accepted { .. }
                )
            });
        if !accepted {
            return;
        }
        let mut pcm = [0i16; DATAGRAM];
        let relayed = relay.relay(now, buf, n, Some(&mut pcm), self.session.outbound());
        self.agent_side_to_caller(now, buf, relayed, &pcm);
    }

    /// Audio relayed from the agent's side (an agent, or a unit's outside leg) towards
    /// the caller: the decoded samples go to the recording's agent channel, the packet
    /// to the caller unless the caller is on hold.
    pub(super) fn agent_side_to_caller<E>(
        &mut self,
        now: Instant,
        buf: &[u8],
        relayed: Result<Relayed, E>,
        pcm: &[i16],
    ) {
        let (len, timestamp, payload_len, decoded) = match relayed {
            Ok(Relayed::Audio {
                len,
                timestamp,
                payload_len,
                decoded,
            }) => (len, timestamp, payload_len, decoded),
            Ok(Relayed::Dtmf { len, timestamp, .. }) => (len, timestamp, 4, 0),
            _ => return,
        };
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) =
                recorder.push(now, Channel::Agent, pcm.get(..decoded).unwrap_or_default())
        {
            crate::metrics::recording_failed();
            warn!(handle = %self.handle, %e, "recording failed; the call goes on");
        }
        if self.negotiated.is_held() {
            return;
        }
        if let (Some(to), Some(bytes)) = (self.session.remote_rtp(), buf.get(..len))
            && send_rtp(&self.rtp, self.srtp.as_mut(), bytes, to)
        {
            self.session.record_sent(now, timestamp, payload_len);
            self.sent += 1;
        }
    }

    /// Caller RTP during a bridge: relayed to the agent in place.
    fn relay_to_agent(&mut self, now: Instant, buf: &mut [u8], n: usize) -> bool {
        let Some(agent) = self.agent.as_mut() else {
            return false;
        };
        let (Some(session), Some(relay)) = (agent.session.as_mut(), agent.to_agent.as_mut()) else {
            return false;
        };
        let mut pcm = [0i16; DATAGRAM];
        let relayed = relay.relay(now, buf, n, Some(&mut pcm), session.outbound());
        let (len, timestamp, payload_len, decoded) = match relayed {
            Ok(Relayed::Audio {
                len,
                timestamp,
                payload_len,
                decoded,
            }) => (len, timestamp, payload_len, decoded),
            Ok(Relayed::Dtmf { len, timestamp, .. }) => (len, timestamp, 4, 0),
            _ => return true,
        };
        let held = agent.negotiated.as_ref().is_some_and(Negotiated::is_held);
        if !held
            && let (Some(to), Some(bytes)) = (session.remote_rtp(), buf.get(..len))
            && send_rtp(&agent.rtp, agent.srtp.as_mut(), bytes, to)
        {
            session.record_sent(now, timestamp, payload_len);
        }
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) =
                recorder.push(now, Channel::Caller, pcm.get(..decoded).unwrap_or_default())
        {
            crate::metrics::recording_failed();
            warn!(handle = %self.handle, %e, "recording failed; the call goes on");
        }
        true
    }

    fn on_rtp(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8], n: usize) {
        let n = match self.srtp.as_mut() {
            Some(srtp) => match srtp.unprotect(buf, n) {
                Some(n) => n,
                None => return,
            },
            None => n,
        };
        if self.unit_bridged() {
            self.relay_caller_to_unit(now, from, buf, n);
            return;
        }
        let bridged = self
            .agent
            .as_ref()
            .is_some_and(|a| a.session.is_some() && !a.ended);
        if bridged {
            let accepted = buf
                .get(..n)
                .and_then(|d| RtpPacket::parse(d).ok())
                .is_some_and(|packet| {
                    matches!(
                        self.session.receive_rtp(now, from, &packet),
                        crate::media::rtp::ReceiveOutcome::Accepted { .. }
                    )
                });
            if accepted {
                self.relay_to_agent(now, buf, n);
            }
            return;
        }
        let Some(datagram) = buf.get(..n) else {
            return;
        };
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
                self.collect_digits(now);
            }
            if self.kind == Some(TestExtensionKind::Echo) {
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
        if self.kind == Some(TestExtensionKind::Echo) {
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
            crate::metrics::recording_failed();
            warn!(handle = %self.handle, %e, "recording failed; the call goes on");
        }
        if let Some(message) = self.hotline.as_mut().and_then(|h| h.message.as_mut())
            && let Err(e) = message.recorder.push(now, Channel::Caller, samples)
        {
            crate::metrics::recording_failed();
            warn!(handle = %self.handle, %e, "voice message recording failed");
        }
        let mut heard = [None; 4];
        if let Some(inband) = self.inband.as_mut() {
            for (slot, digit) in heard.iter_mut().zip(inband.process(samples)) {
                *slot = Some(digit.digit.as_char());
            }
        }
        for c in heard.into_iter().flatten() {
            self.on_digit(now, c, "inband");
        }
    }

    fn collect_digits(&mut self, now: Instant) {
        while let Some(digit) = self.dtmf.poll_digit() {
            self.on_digit(now, digit.digit.as_char(), "rfc4733");
        }
    }

    fn on_digit(&mut self, now: Instant, c: char, via: &'static str) {
        info!(handle = %self.handle, digit = %c, via, "dtmf digit heard");
        self.digits.push(c);
        self.control(now, CallInput::Digit(c));
    }

    /// Feed the call's control core (`src/call/`) and carry out what it asks, until it
    /// asks nothing more. Calls without one (consultations) keep the plain behaviour:
    /// hold music while held, hang up when the other side leaves.
    fn control(&mut self, now: Instant, input: CallInput) {
        let Some(h) = self.hotline.as_mut() else {
            match input {
                CallInput::AgentHeld(true) => self.play(now, &[hold_music()], Repeat::Loop),
                CallInput::AgentHeld(false) => self.player = None,
                _ => {}
            }
            return;
        };
        h.call.handle(now, input);
        self.run_control(now);
    }

    fn run_control(&mut self, now: Instant) {
        while let Some(output) = self.hotline.as_mut().and_then(|h| h.call.poll_output()) {
            if let Some(input) = self.carry_out(now, output)
                && let Some(h) = self.hotline.as_mut()
            {
                h.call.handle(now, input);
            }
        }
    }

    /// One output of the call's core; what it answers at once (the city looked up, a
    /// recording that could not start, no ACD) comes back as the next input.
    fn carry_out(&mut self, now: Instant, output: CallOutput) -> Option<CallInput> {
        let handle = self.handle;
        match output {
            CallOutput::Play { prompts, repeat } => self.play(now, &prompts, repeat),
            CallOutput::StopPlayback => self.player = None,
            CallOutput::StartMessage => {
                if !self.start_message(now) {
                    return Some(CallInput::MessageDone {
                        duration: Duration::ZERO,
                    });
                }
            }
            CallOutput::StopMessage => {
                let duration = self.stop_message();
                return Some(CallInput::MessageDone { duration });
            }
            CallOutput::LookUpCity { city, how } => {
                let wall = self.ctx.clock.now();
                let info = self.ctx.hotline.as_ref()?.city_info(&city, wall);
                let h = self.hotline.as_mut()?;
                h.cdr.city(&CityResolution {
                    city: city.clone(),
                    how,
                });
                if !info.open_status.open {
                    h.cdr.after_hours();
                }
                info!(%handle, city = city.as_str(), how = %crate::logfmt::word(&how), open = info.open_status.open, "city chosen");
                h.city = Some(city);
                return Some(CallInput::CityInfo(info));
            }
            CallOutput::Enqueue { category, urgency } => {
                if !self.enqueue(now, category, urgency) {
                    // Never held and dropped: nobody can take it, so the caller is
                    // told and may leave a message.
                    return Some(CallInput::Queue(QueueCue::VoiceMessage(
                        crate::queue::VoiceMessageReason::NoAgents,
                    )));
                }
            }
            CallOutput::RingDutyList { category, urgency } => {
                let h = self.hotline.as_mut()?;
                h.cdr.category(category, urgency);
                info!(%handle, category = %crate::logfmt::word(&category), urgency = %crate::logfmt::word(&urgency), "urgent after hours: ringing the duty list");
            }
            CallOutput::VoiceMessageTaken {
                category,
                urgency,
                duration,
            } => self.voice_message_taken(category, urgency, duration),
            CallOutput::QueueDigit(c) => {
                self.callback_key_pressed(c);
            }
            CallOutput::HangUp => {
                info!(%handle, "the server ends the call");
                self.hangup_at = Some(now);
            }
            CallOutput::Dial { leg, target } => self.pending_legs.push((leg, target)),
            CallOutput::EndLeg(leg) => self.end_leg(now, leg),
            CallOutput::Bridge(leg) => self.bridge_leg(now, leg),
            CallOutput::DropAgentBinding(leg) => self.drop_agent_binding(leg),
            CallOutput::Acd(report) => self.acd_report(report),
            CallOutput::Record(note) => self.record_note(note),
            CallOutput::Transfer(step) => return self.transfer_step(now, step),
        }
        None
    }

    fn play(&mut self, now: Instant, prompts: &[PromptRef], repeat: Repeat) {
        let segments = self.ctx.playlist(prompts);
        let list = match repeat {
            Repeat::Once => Playlist::once(segments),
            Repeat::Loop => Playlist::looping(segments),
        };
        self.player = Some(Player::new(list, now, BargeIn::Ignore));
    }

    /// Hand the call to the ACD (its queue decides who rings and when); false when no
    /// ACD takes it (none configured, or it refused the call).
    fn enqueue(&mut self, now: Instant, category: CallCategory, urgency: Urgency) -> bool {
        let handle = self.handle;
        let wall = self.ctx.clock.now();
        let province = self.ctx.hotline.as_ref().map(|s| s.province_center.clone());
        let acd = self.ctx.acd.clone();
        let Some(h) = self.hotline.as_mut() else {
            return false;
        };
        h.cdr.category(category, urgency).queued(wall);
        let Some(acd) = acd else {
            warn!(%handle, "no [queues] configured: nobody can answer in hours; voice message");
            return false;
        };
        let Some(city) = h.city.clone().or(province) else {
            return false;
        };
        let call = CallId(h.call_id.clone());
        let input = QueueInput::CallArrived {
            call: call.clone(),
            city: city.clone(),
            category,
            urgency,
            area: None,
            caller: h.caller.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.new_acd_rx = Some(rx);
        self.queue = Some(QueueLink {
            acd: acd.clone(),
            call,
            category,
            urgency,
        });
        self.hangup_at = Some(now + Duration::from_secs(2 * 3600));
        match acd.enqueue(input, tx) {
            Ok(()) => {
                info!(%handle, city = city.as_str(), category = %crate::logfmt::word(&category), urgency = %crate::logfmt::word(&urgency), "call enqueued");
                true
            }
            Err(e) => {
                warn!(%handle, %e, "the ACD refused the call; voice message");
                self.queue = None;
                self.new_acd_rx = None;
                false
            }
        }
    }

    /// Start recording the caller's voice message; false when it cannot be.
    fn start_message(&mut self, now: Instant) -> bool {
        let Some(h) = self.hotline.as_mut() else {
            return false;
        };
        let date = self.ctx.clock.now().date_naive();
        let path = recording_path(&self.ctx.recordings_dir, date, &h.call_id);
        match create_recorder(&path, now, false) {
            Ok(recorder) => {
                info!(handle = %self.handle, path = %path.display(), "recording voice message");
                h.message = Some(MessageRecording { recorder, path });
                true
            }
            Err(e) => {
                crate::metrics::recording_failed();
                warn!(handle = %self.handle, %e, "voice message cannot be recorded");
                false
            }
        }
    }

    /// End the voice message recording; how much audio it holds.
    fn stop_message(&mut self) -> Duration {
        let Some(h) = self.hotline.as_mut() else {
            return Duration::ZERO;
        };
        let Some(message) = h.message.take() else {
            return Duration::ZERO;
        };
        h.last_message_path = Some(message.path.clone());
        let duration = match message.recorder.finish() {
            Ok(summary) => Duration::from_millis(summary.frames.saturating_mul(1000) / 8000),
            Err(e) => {
                warn!(handle = %self.handle, %e, "voice message incomplete");
                Duration::ZERO
            }
        };
        info!(handle = %self.handle, duration_ms = duration.as_millis(), "voice message ended");
        duration
    }

    fn voice_message_taken(
        &mut self,
        category: CallCategory,
        urgency: Urgency,
        duration: Duration,
    ) {
        let Some(h) = self.hotline.as_mut() else {
            return;
        };
        let Some(path) = h.last_message_path.clone() else {
            return;
        };
        let received_at = self.ctx.clock.now();
        let due = self
            .ctx
            .hotline
            .as_ref()
            .map(|s| callback_due(&s.calendar.current(), received_at));
        let Some(due) = due else {
            return;
        };
        let recording = path.display().to_string();
        h.cdr
            .category(category, urgency)
            .voice_message(recording.clone());
        info!(
            handle = %self.handle,
            callback_due = %crate::logfmt::deadline(&due.at),
            provisional = due.provisional,
            "voice message taken: a callback work order is due"
        );
        h.voice_message = Some(VoiceMessage {
            call_id: h.call_id.clone(),
            caller: h.caller.clone(),
            city: h.city.as_ref().map(|c| c.as_str().to_string()),
            category: snake_name(&category),
            urgency: snake_name(&urgency),
            recording,
            duration_ms: i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
            received_at: received_at.to_rfc3339(),
            callback_due: due.at.to_rfc3339(),
            provisional: due.provisional,
            work_order: None,
        });
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
        if self.negotiated.is_held() || !(self.confirmed || self.session.is_latched()) {
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
            if send_rtp(&self.rtp, self.srtp.as_mut(), bytes, to) {
                self.sent += 1;
            }
        }
    }

    fn agent_timers(&mut self, now: Instant) {
        let handle = self.handle;
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let Some(session) = agent.session.as_mut() else {
            return;
        };
        session.handle_timeout(now);
        let mut timed_out = false;
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::RtcpDue => {
                    let mut out = [0u8; 512];
                    if let (Ok(len), Some(to)) =
                        (session.build_rtcp(now, &mut out), session.remote_rtcp())
                        && let Some(bytes) = out.get(..len)
                    {
                        // SRTCP is not spoken: an SRTP leg gets no RTCP in clear.
                        if agent.srtp.is_none() {
                            let _ = agent.rtcp.try_send_to(bytes, to);
                        }
                    }
                }
                SessionEvent::MediaTimeout { silent_for } => {
                    info!(%handle, silent_for_secs = silent_for.as_secs(), "media timeout on the agent leg");
                    timed_out = true;
                }
            }
        }
        if timed_out && !agent.ended {
            agent.ended = true;
            let (leg, id) = (agent.handle, agent.id);
            self.shell.drive(|ep| ep.call_media_timeout(now, leg));
            match id.filter(|_| self.hotline.is_some()) {
                Some(id) => {
                    // The core decides: back to the queue, or the call ends.
                    self.control(now, CallInput::LegMediaLost(id));
                    self.release_leg(leg);
                }
                None => self.hangup_at = Some(now),
            }
        }
    }

    /// Returns true when the task should stop (the end was never confirmed).
    fn on_timers(&mut self, now: Instant) -> bool {
        self.agent_timers(now);
        self.unit_timers(now);
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
                        // SRTCP is not spoken: an SRTP leg gets no RTCP in clear.
                        if self.srtp.is_none() {
                            let _ = self.rtcp.try_send_to(bytes, to);
                        }
                    }
                }
                SessionEvent::MediaTimeout { silent_for } => {
                    info!(handle = %self.handle, silent_for_secs = silent_for.as_secs(), "media timeout: no RTP; ending the call");
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
            if !player.is_finished() {
                self.player = Some(player);
            } else if self.kind == Some(TestExtensionKind::Play) {
                self.hangup_at = Some(now + Duration::from_millis(500));
            } else {
                self.control(now, CallInput::PlaybackDone);
            }
        }
        self.dtmf.handle_timeout(now);
        self.collect_digits(now);
        if let Some(h) = self.hotline.as_mut() {
            if let Some(message) = h.message.as_mut()
                && let Err(e) = message.recorder.tick(now)
            {
                crate::metrics::recording_failed();
                warn!(handle = %self.handle, %e, "voice message recording failed");
            }
            if h.call.poll_timeout().is_some_and(|t| t <= now) {
                h.call.handle_timeout(now);
                self.run_control(now);
            }
        }
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.tick(now)
        {
            crate::metrics::recording_failed();
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
        // An SRTP call keeps its keys across re-INVITEs (hold, resume): our answer
        // repeats our key; an offer that drops SRTP is answered as SRTP all the same.
        let answered = match self.srtp.as_mut() {
            Some(srtp) => {
                // A new key from the peer (RFC 4568 §7.1.4): its packets from now on.
                if let Ok(Some(theirs)) = sdp::offered_sdes(&offer)
                    && theirs.key != srtp.theirs
                {
                    srtp.inbound = SrtpContext::new(&theirs.key);
                    srtp.theirs = theirs.key;
                }
                let savp = offer
                    .media
                    .iter()
                    .find(|m| m.kind == "audio" && m.port != 0)
                    .is_some_and(sdp::MediaDescription::is_savp);
                sdp::answer(&sdp::as_plain(&offer), &self.local).map(|mut answer| {
                    answer.sdp = sdp::with_sdes(answer.sdp, &srtp.ours, savp);
                    answer
                })
            }
            None => sdp::answer(&offer, &self.local),
        };
        match answered {
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

    fn finish(&mut self, now: Instant, end: CallEnd) -> CallSummary {
        self.hang_up_agent(now);
        self.release_agent_legs();
        self.release_unit(now);
        if let Some(q) = self.queue.as_ref() {
            let caller_left = matches!(
                end,
                CallEnd::Leg {
                    who: Side::Remote,
                    ..
                }
            );
            let call = q.call.clone();
            self.report(QueueInput::CallEnded {
                call: call.clone(),
                who_hung_up: if caller_left {
                    Party::Caller
                } else {
                    Party::System
                },
            });
            q.acd.call_task_ended(&call);
        }
        let caller_hung_up = matches!(
            end,
            CallEnd::Leg {
                who: Side::Remote,
                ..
            }
        );
        // A message being recorded is closed and kept; nothing more is played.
        self.control(
            now,
            CallInput::Ended {
                caller: caller_hung_up,
            },
        );
        if self.hotline.as_ref().is_some_and(|h| h.message.is_some()) {
            self.stop_message();
        }
        let cdr = self.hotline.take().map(|h| {
            let h = *h;
            let wall = self.ctx.clock.now();
            let mut cdr = h.cdr;
            let party = if caller_hung_up {
                HangupParty::Caller
            } else {
                HangupParty::System
            };
            if matches!(
                end,
                CallEnd::Leg {
                    reason: EndReason::Shutdown,
                    ..
                }
            ) {
                cdr.system_end(wall, crate::ivr::cdr::SystemEnd::Shutdown);
            }
            cdr.hung_up(wall, party);
            if let Some(outcome) = h.call.flow().outcome() {
                cdr.ivr_outcome(outcome);
            }
            if let Some((category, urgency)) = h.call.flow().choice() {
                cdr.category(category, urgency);
            }
            if let Some(result) = h.call.survey_result() {
                cdr.survey(result);
            }
            (cdr.finish(wall), h.voice_message)
        });
        if let Some(recorder) = self.recorder.take() {
            match recorder.finish() {
                Ok(summary) => debug!(handle = %self.handle, ?summary, "recording finished"),
                Err(e) => {
                    crate::metrics::recording_failed();
                    warn!(handle = %self.handle, %e, "recording incomplete");
                }
            }
        }
        let foreign = self.session.stats().foreign_dropped
            + self
                .agent
                .as_ref()
                .and_then(|a| a.session.as_ref())
                .map_or(0, |s| s.stats().foreign_dropped);
        if foreign > 0 {
            crate::metrics::rtp_foreign_dropped(foreign);
            info!(handle = %self.handle, packets = foreign, "RTP from hosts not in the call dropped");
        }
        CallSummary {
            received: self.session.stats().received,
            sent: self.sent,
            digits: self.digits.clone(),
            recording: self.recording.clone(),
            cdr,
        }
    }
}

/// Fix the headers of recordings a crash left open (start-up, in the background): every
/// WAV under `dir` whose sizes do not cover its data is repaired; returns how many.
pub fn repair_recordings(dir: &std::path::Path) -> usize {
    let mut repaired = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "wav") {
                match crate::media::recorder::repair_wav(&path) {
                    Ok(crate::media::recorder::RepairOutcome::Repaired { data_bytes }) => {
                        warn!(path = %path.display(), data_bytes, "recording repaired after a crash");
                        repaired += 1;
                    }
                    Ok(_) => {}
                    Err(e) => warn!(path = %path.display(), %e, "recording cannot be repaired"),
                }
            }
        }
    }
    repaired
}

/// Create the directories and a mono (voice message) or stereo (call) WAV recorder.
pub(crate) fn create_recorder(
    path: &std::path::Path,
    now: Instant,
    stereo: bool,
) -> Result<WavRecorder<std::fs::File>, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let config = RecorderConfig::default();
    if stereo {
        WavRecorder::create_stereo(path, now, config)
    } else {
        WavRecorder::create_mono(path, now, config)
    }
    .map_err(|e| e.to_string())
}

/// Resolve the city, check its hours and start the IVR flow of a 12348 call.
fn start_hotline(
    ctx: &MediaContext,
    handle: CallHandle,
    incoming: &IncomingCall,
) -> Option<Box<HotlineCall>> {
    let setup = ctx.hotline.as_ref()?;
    let wall = ctx.clock.now();
    // The number the carrier vouches for (P-Asserted-Identity when the trunk names it)
    // is the caller's number everywhere: records, orders, the callback.
    let caller = incoming
        .verified_caller
        .clone()
        .unwrap_or_else(|| incoming.caller.clone());
    let mut cdr = CdrBuilder::new(
        incoming.call_id.clone(),
        caller.clone(),
        incoming.dialled.clone(),
        wall,
    );
    cdr.ivr_answered(wall);
    let city_info = match setup.resolver.resolve(
        &incoming.dialled,
        incoming.carrier_city.as_deref(),
        &caller,
    ) {
        CityLookup::Resolved(resolution) => {
            cdr.city(&resolution);
            let info = setup.city_info(&resolution.city, wall);
            if !info.open_status.open {
                cdr.after_hours();
            }
            info!(
                %handle,
                city = resolution.city.as_str(),
                how = %crate::logfmt::word(&resolution.how),
                open = info.open_status.open,
                next_open = %info.open_status.next_open.map_or_else(|| "none".to_owned(), |t| crate::logfmt::deadline(&t)),
                now = %crate::logfmt::deadline(&wall),
                "hotline call"
            );
            Some(info)
        }
        CityLookup::NeedsMenu => {
            info!(%handle, now = %crate::logfmt::deadline(&wall), "hotline call: city unknown, asking the caller");
            None
        }
    };
    let city = city_info.as_ref().map(|c| c.city.clone());
    let flow = IvrFlow::new(
        setup.ivr.clone(),
        IvrContext {
            city: city_info,
            province_center: setup.province_center.clone(),
        },
    );
    let callback_registered = ctx
        .prompts
        .contains_key(callback_key::CALLBACK_REGISTERED_PROMPT)
        .then(|| crate::ivr::prompt::PromptId::new(callback_key::CALLBACK_REGISTERED_PROMPT));
    let prompts = CallPrompts::from_ivr(&setup.ivr, callback_registered);
    Some(Box::new(HotlineCall {
        call: Call::new(setup.ivr.clone(), flow, prompts),
        cdr,
        call_id: incoming.call_id.clone(),
        caller,
        callback_allowed: incoming.verified_caller.is_some(),
        city,
        message: None,
        voice_message: None,
        last_message_path: None,
    }))
}

/// The hold music (the core plays the configured one; this is for calls without it).
fn hold_music() -> PromptRef {
    PromptRef::prompt("hold_music")
}

fn snake_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srtp_offer(proto: &str, crypto: bool) -> SessionDescription {
        let key = "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
        let text = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n\
             m=audio 4000 {proto} 0 8\r\n{}a=rtpmap:0 PCMU/8000\r\n",
            if crypto { key } else { "" }
        );
        SessionDescription::parse(&text).expect("offer")
    }

    /// The SRTP policy of an inbound leg decides its answer (RFC 4568 offer/answer):
    /// our own key under the offer's tag, the offer's profile kept; 488 for plain RTP
    /// where SRTP is required and for `RTP/SAVP` where it is not allowed.
    #[test]
    fn inbound_offers_are_answered_by_the_srtp_policy() {
        let local = LocalMedia::g711("203.0.113.5".parse().expect("ip"), 30000, 1, 1);
        let answer_of = |proto: &str, crypto: bool, policy| {
            srtp_answer(&srtp_offer(proto, crypto), &local, policy)
                .map(|(answer, srtp)| (answer.sdp.to_string(), srtp.is_some()))
        };
        let (sdp, srtp) = answer_of("RTP/SAVP", true, MediaEncryption::Required).expect("srtp");
        assert!(srtp);
        assert!(sdp.contains("m=audio 30000 RTP/SAVP 0"), "{sdp}");
        assert!(
            sdp.contains("a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{sdp}"
        );
        assert!(
            !sdp.contains("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"),
            "our own key: {sdp}"
        );
        let (sdp, srtp) = answer_of("RTP/AVP", true, MediaEncryption::Optional).expect("srtp");
        assert!(srtp && sdp.contains("m=audio 30000 RTP/AVP 0"), "{sdp}");
        let (sdp, srtp) = answer_of("RTP/AVP", false, MediaEncryption::Optional).expect("plain");
        assert!(!srtp && !sdp.contains("crypto"), "{sdp}");
        let (sdp, srtp) = answer_of("RTP/AVP", true, MediaEncryption::None).expect("plain");
        assert!(!srtp && !sdp.contains("crypto"), "a key is ignored: {sdp}");
        for (proto, crypto, policy) in [
            ("RTP/AVP", false, MediaEncryption::Required),
            ("RTP/SAVP", true, MediaEncryption::None),
            ("RTP/SAVP", false, MediaEncryption::Optional),
        ] {
            let refused = answer_of(proto, crypto, policy).expect_err("refused");
            assert_eq!(refused.sip_status(), 488, "{proto} {crypto} {policy:?}");
        }
    }
    use crate::calendar::Calendar;

    const CONFIG: &str = r#"
[server]
domain = "hotline.test"

[[cities]]
id = "jinan"
name = "济南"
area_codes = ["0531"]
numbers = ["053112348"]
duty_list = ["1001"]
hours = { periods = [{ start = "08:30", end = "12:00" }], days = "working_days" }

[[agents]]
id = "1001"
name = "a"
city = "jinan"
password = "pw"
roles = ["agent"]
"#;

    fn context(config: &Config) -> MediaContext {
        let calendar = Calendar::load(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config/calendar/cn-workdays.toml"),
        )
        .expect("calendar");
        MediaContext::from_config(
            config,
            "127.0.0.1:5060".parse().expect("addr"),
            WallClock::default(),
            crate::calendar::SharedCalendar::fixed(calendar),
            None,
        )
        .expect("context")
    }

    #[test]
    fn hotline_numbers_match_with_any_prefix_and_only_for_trunks() {
        let config = Config::from_toml(CONFIG).expect("config");
        let ctx = context(&config);
        let setup = ctx.hotline.as_ref().expect("hotline");
        for dialled in ["12348", "053112348", "+8653112348", "0531-12348"] {
            assert!(setup.serves(dialled), "{dialled}");
        }
        for dialled in ["", "123", "12349", "echo"] {
            assert!(!setup.serves(dialled), "{dialled}");
        }
        let mut call = IncomingCall {
            call_id: "x".into(),
            dialled: "12348".into(),
            caller: "053188886666".into(),
            to_user: "12348".into(),
            source: crate::sip::endpoint::SourceInfo {
                addr: "127.0.0.1:5070".parse().expect("addr"),
                transport: crate::sip::endpoint::Transport::Udp,
            },
            origin: crate::sip::endpoint::CallOrigin::Trunk,
            sdp: Bytes::new(),
            carrier_city: None,
            verified_caller: Some("053188886666".into()),
            replaces: None,
        };
        assert!(matches!(ctx.service_for(&call), Some(Service::Hotline)));
        call.origin = crate::sip::endpoint::CallOrigin::Agent("1001".into());
        assert!(
            ctx.service_for(&call).is_none(),
            "agents' phones do not reach the IVR"
        );
    }

    #[test]
    fn city_hours_from_config_decide_open_on_the_calendar() {
        let config = Config::from_toml(CONFIG).expect("config");
        let ctx = context(&config);
        let setup = ctx.hotline.as_ref().expect("hotline");
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("time");
        let jinan = CityId::new("jinan");
        // 08:45 on a working day: open under Jinan's own hours (default would be closed).
        assert!(
            setup
                .city_info(&jinan, at("2026-02-14T08:45:00+08:00"))
                .open_status
                .open
        );
        // The afternoon is not in Jinan's hours.
        assert!(
            !setup
                .city_info(&jinan, at("2026-02-13T14:00:00+08:00"))
                .open_status
                .open
        );
        // National Day.
        assert!(
            !setup
                .city_info(&jinan, at("2025-10-01T10:00:00+08:00"))
                .open_status
                .open
        );
        assert!(
            setup
                .city_info(&jinan, at("2025-10-01T10:00:00+08:00"))
                .has_duty_list
        );
        assert_eq!(
            setup.cities.get("jinan").map(|c| c.duty_list.clone()),
            Some(vec!["1001".to_string()])
        );
    }

    #[test]
    fn duty_list_must_name_agents_and_province_center_a_city() {
        let bad = CONFIG.replace("duty_list = [\"1001\"]", "duty_list = [\"9999\"]");
        let problems = Config::from_toml(&bad).expect_err("unknown agent");
        assert!(
            problems.iter().any(|p| p.path == "cities[0].duty_list"),
            "{problems:?}"
        );
        let bad = format!("{CONFIG}\n[calls]\nprovince_center = \"atlantis\"\n");
        let problems = Config::from_toml(&bad).expect_err("unknown city");
        assert!(
            problems.iter().any(|p| p.path == "calls.province_center"),
            "{problems:?}"
        );
    }

    #[test]
    fn recordings_left_open_by_a_crash_are_repaired_at_start_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("2026/02/14/crashed.wav");
        let t0 = Instant::now();
        let recorder = create_recorder(&path, t0, false).expect("recorder");
        // Crash right after the audio reached the disk but before the header was patched:
        // the header still says "no data".
        std::mem::forget(recorder);
        let audio: Vec<u8> = (0..8000i16)
            .flat_map(|i| ((i % 40) * 500).to_le_bytes())
            .collect();
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open"),
            &audio,
        )
        .expect("append");
        assert_eq!(repair_recordings(dir.path()), 1);
        let reader = hound::WavReader::open(&path).expect("playable after repair");
        assert!(reader.duration() > 4000, "{} samples", reader.duration());
        assert_eq!(repair_recordings(dir.path()), 0, "nothing left to repair");
    }

    #[test]
    fn fake_clock_reads_the_given_moment_and_advances() {
        let start =
            chrono::DateTime::parse_from_rfc3339("2025-10-01T10:00:00+08:00").expect("time");
        let clock = WallClock::starting_at(start);
        let now = clock.now();
        assert!(
            now >= start && now - start < chrono::Duration::seconds(5),
            "{now}"
        );
        assert_eq!(now.offset().local_minus_utc(), 8 * 3600);
    }
}
