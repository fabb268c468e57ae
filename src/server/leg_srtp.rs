//! SRTP with SDES (RFC 4568) on one leg of ours, whichever kind: the caller's, an
//! agent's, an outside party's through the trunk. The keys are exchanged in SDP; the
//! packets are protected and unprotected in place (`crate::media::srtp`).

use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::config::MediaEncryption;
use crate::media::sdp::{self, LocalMedia, SessionDescription};
use crate::media::srtp::{MasterKey, SdesCrypto, SrtpContext};
use crate::server::outleg::DATAGRAM;

/// SRTP on one leg (SDES): our key protects what we send, the peer's what it sends.
pub(crate) struct LegSrtp {
    pub(crate) ours: SdesCrypto,
    pub(crate) theirs: MasterKey,
    pub(crate) outbound: SrtpContext,
    pub(crate) inbound: SrtpContext,
}

impl std::fmt::Debug for LegSrtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegSrtp(..)")
    }
}

impl LegSrtp {
    pub(crate) fn new(ours: SdesCrypto, theirs: &SdesCrypto) -> Self {
        LegSrtp {
            outbound: SrtpContext::new(&ours.key),
            inbound: SrtpContext::new(&theirs.key),
            theirs: theirs.key.clone(),
            ours,
        }
    }

    /// Our key for an offer or an answer with tag `tag`.
    pub(crate) fn fresh(tag: u32) -> SdesCrypto {
        SdesCrypto {
            tag,
            key: MasterKey::random(),
        }
    }

    /// Decrypt the SRTP packet in `buf[..n]` in place: the RTP packet's length, or
    /// `None` for a packet that is not the peer's (dropped).
    pub(crate) fn unprotect(&mut self, buf: &mut [u8], n: usize) -> Option<usize> {
        self.inbound.unprotect_in_place(buf.get_mut(..n)?).ok()
    }
}

/// Send an RTP packet on `socket`, protected when the leg has SRTP.
pub(crate) fn send_rtp(
    socket: &UdpSocket,
    srtp: Option<&mut LegSrtp>,
    bytes: &[u8],
    to: SocketAddr,
) -> bool {
    match srtp {
        None => socket.try_send_to(bytes, to).is_ok(),
        Some(srtp) => {
            // On the stack: this runs for every packet sent.
            let mut packet = [0u8; DATAGRAM];
            let Some(room) = packet.get_mut(..bytes.len()) else {
                return false;
            };
            room.copy_from_slice(bytes);
            srtp.outbound
                .protect_in_place(&mut packet, bytes.len())
                .is_ok_and(|len| socket.try_send_to(&packet[..len], to).is_ok())
        }
    }
}

/// Our SDP offer for a leg whose policy is `policy`: `RTP/SAVP` with our key when SRTP
/// is required (a peer that cannot must refuse), `RTP/AVP` with a key when optional,
/// plain otherwise; with the key to keep until the answer.
pub(crate) fn offer(
    local: &LocalMedia,
    policy: MediaEncryption,
) -> (SessionDescription, Option<(SdesCrypto, MediaEncryption)>) {
    let srtp_offer = (policy != MediaEncryption::None).then(|| (LegSrtp::fresh(1), policy));
    let offer = match &srtp_offer {
        Some((ours, policy)) => sdp::with_sdes(
            sdp::offer(local),
            ours,
            *policy == MediaEncryption::Required,
        ),
        None => sdp::offer(local),
    };
    (offer, srtp_offer)
}

/// The peer's key from its answer to our offer `ours`: `Err` when the policy requires
/// SRTP and the answer has no key for our offer (the leg must end); `Ok(None)` for a
/// plain answer the policy allows.
pub(crate) fn from_answer(
    ours: Option<(SdesCrypto, MediaEncryption)>,
    answer: Option<&SessionDescription>,
) -> Result<Option<LegSrtp>, ()> {
    let Some((ours, policy)) = ours else {
        return Ok(None);
    };
    let theirs = answer
        .and_then(|a| a.media.iter().find(|m| m.kind == "audio" && m.port != 0))
        .and_then(sdp::MediaDescription::sdes_crypto)
        .filter(|theirs| theirs.tag == ours.tag);
    match theirs {
        Some(theirs) => Ok(Some(LegSrtp::new(ours, &theirs))),
        None if policy == MediaEncryption::Required => Err(()),
        None => Ok(None),
    }
}
