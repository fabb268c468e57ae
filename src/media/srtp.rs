//! SRTP (RFC 3711) with the one suite SIP phones and trunks all offer by SDES (RFC 4568):
//! `AES_CM_128_HMAC_SHA1_80` — AES-128 in counter mode, HMAC-SHA1 tags cut to 80 bits,
//! key derivation rate 0. Sans-IO: a [`SrtpContext`] protects or unprotects one packet
//! at a time and keeps the rollover counter and the replay window of each SSRC.
//!
//! Only RTP is protected here: the media plane neither sends nor reads RTCP, so SRTCP
//! packets from a phone are dropped as RTCP is today.
//!
//! The AES block cipher is RustCrypto's `aes`; counter mode (§4.1.1), the key derivation
//! (§4.3) and the packet index estimate (§3.3.1, Appendix A) are written here, after the
//! RFC, and checked against its Appendix B test vectors.

use std::collections::HashMap;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit as _, generic_array::GenericArray};
use hmac::{Hmac, KeyInit, Mac as _};

/// Master key and salt lengths of `AES_CM_128_HMAC_SHA1_80` (bytes).
pub const MASTER_KEY_LEN: usize = 16;
pub const MASTER_SALT_LEN: usize = 14;
/// The authentication tag appended to each SRTP packet (80 bits).
pub const AUTH_TAG_LEN: usize = 10;
const AUTH_KEY_LEN: usize = 20;
/// Packets older than this many behind the highest seen are refused (RFC 3711 §3.3.2).
const REPLAY_WINDOW: u64 = 64;
/// RTP's fixed header.
const RTP_HEADER_LEN: usize = 12;

type HmacSha1 = Hmac<sha1::Sha1>;

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("not an RTP packet (too short or not version 2)")]
    NotRtp,
    #[error("the authentication tag does not match")]
    BadTag,
    #[error("a replayed or too old packet")]
    Replayed,
}

/// A master key and salt (the 30 bytes of an SDES `inline:` key).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub key: [u8; MASTER_KEY_LEN],
    pub salt: [u8; MASTER_SALT_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach a log.
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From the 30 bytes key || salt.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; MASTER_KEY_LEN + MASTER_SALT_LEN]) -> Self {
        let mut key = [0u8; MASTER_KEY_LEN];
        let mut salt = [0u8; MASTER_SALT_LEN];
        key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        MasterKey { key, salt }
    }

    /// key || salt.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; MASTER_KEY_LEN + MASTER_SALT_LEN] {
        let mut out = [0u8; MASTER_KEY_LEN + MASTER_SALT_LEN];
        out[..MASTER_KEY_LEN].copy_from_slice(&self.key);
        out[MASTER_KEY_LEN..].copy_from_slice(&self.salt);
        out
    }

    /// A fresh random key and salt.
    #[must_use]
    pub fn random() -> Self {
        MasterKey::from_bytes(&rand::random())
    }
}

/// The session keys of one direction of RTP (§4.3.1, labels 0, 1 and 2).
#[derive(Clone)]
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; MASTER_SALT_LEN],
    auth: HmacSha1,
}

impl SessionKeys {
    fn derive(master: &MasterKey) -> Self {
        let prf = Aes128::new(GenericArray::from_slice(&master.key));
        let mut cipher_key = [0u8; MASTER_KEY_LEN];
        derive(&prf, &master.salt, 0x00, &mut cipher_key);
        let mut auth_key = [0u8; AUTH_KEY_LEN];
        derive(&prf, &master.salt, 0x01, &mut auth_key);
        let mut salt = [0u8; MASTER_SALT_LEN];
        derive(&prf, &master.salt, 0x02, &mut salt);
        SessionKeys {
            cipher: Aes128::new(GenericArray::from_slice(&cipher_key)),
            salt,
            auth: <HmacSha1 as KeyInit>::new_from_slice(&auth_key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        }
    }

    /// XOR `payload` with the AES-CM keystream of packet `index` of `ssrc` (§4.1.1).
    fn apply_keystream(&self, ssrc: u32, index: u64, payload: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        keystream_xor(&self.cipher, iv, payload);
    }

    /// The 80-bit tag over the authenticated portion and the rollover counter (§4.2).
    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; AUTH_TAG_LEN] {
        let mut mac = self.auth.clone();
        mac.update(authenticated);
        mac.update(&roc.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; AUTH_TAG_LEN];
        tag.copy_from_slice(&full[..AUTH_TAG_LEN]);
        tag
    }
}

/// AES-CM with the counter in the last 16 bits of `iv` (§4.1.1): block `j` of the
/// keystream is AES(iv + j).
fn keystream_xor(cipher: &Aes128, iv: [u8; 16], data: &mut [u8]) {
    for (j, chunk) in data.chunks_mut(16).enumerate() {
        let mut block = iv;
        let counter = u16::from_be_bytes([iv[14], iv[15]]).wrapping_add(j as u16);
        block[14..].copy_from_slice(&counter.to_be_bytes());
        let mut block = GenericArray::from(block);
        cipher.encrypt_block(&mut block);
        for (d, k) in chunk.iter_mut().zip(block.iter()) {
            *d ^= k;
        }
    }
}

/// The AES-CM PRF of §4.3.3 with key derivation rate 0: `out` is the keystream at
/// IV = (label·2^48 XOR master salt)·2^16.
fn derive(prf: &Aes128, master_salt: &[u8; MASTER_SALT_LEN], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    keystream_xor(prf, iv, out);
}

/// What a receiver keeps per SSRC (§3.2.1, §3.3.1): the highest index seen and which of
/// the 64 before it arrived.
#[derive(Debug, Clone, Copy, Default)]
struct ReceiveState {
    highest: u64,
    seen: u64,
    started: bool,
}

impl ReceiveState {
    /// The packet index of sequence number `seq` (§3.3.1, Appendix A).
    fn estimate(&self, seq: u16) -> u64 {
        if !self.started {
            return u64::from(seq);
        }
        let roc = self.highest >> 16;
        let s_l = (self.highest & 0xffff) as i64;
        let seq_i = i64::from(seq);
        let v = if s_l < 32_768 {
            if seq_i - s_l > 32_768 {
                roc.wrapping_sub(1)
            } else {
                roc
            }
        } else if s_l - 32_768 > seq_i {
            roc + 1
        } else {
            roc
        };
        (v << 16) | u64::from(seq)
    }

    fn check_replay(&self, index: u64) -> Result<(), SrtpError> {
        if !self.started || index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= REPLAY_WINDOW || self.seen & (1 << behind) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        if !self.started {
            *self = ReceiveState {
                highest: index,
                seen: 1,
                started: true,
            };
        } else if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= REPLAY_WINDOW {
                1
            } else {
                (self.seen << ahead) | 1
            };
            self.highest = index;
        } else {
            self.seen |= 1 << (self.highest - index);
        }
    }
}

/// One direction of SRTP: our outgoing packets under our key, or the peer's incoming
/// packets under theirs.
#[derive(Clone)]
pub struct SrtpContext {
    keys: SessionKeys,
    /// Sending: the rollover counter and last sequence number per SSRC.
    sent: HashMap<u32, (u32, u16)>,
    /// Receiving: per SSRC.
    received: HashMap<u32, ReceiveState>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("ssrcs_sent", &self.sent.len())
            .field("ssrcs_received", &self.received.len())
            .finish_non_exhaustive()
    }
}

/// Where an RTP packet's payload starts (after CSRCs and a header extension).
fn payload_offset(packet: &[u8]) -> Result<usize, SrtpError> {
    let first = *packet.first().ok_or(SrtpError::NotRtp)?;
    if packet.len() < RTP_HEADER_LEN || first >> 6 != 2 {
        return Err(SrtpError::NotRtp);
    }
    let mut offset = RTP_HEADER_LEN + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet
            .get(offset + 2..offset + 4)
            .ok_or(SrtpError::NotRtp)?;
        offset += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if offset > packet.len() {
        return Err(SrtpError::NotRtp);
    }
    Ok(offset)
}

fn seq_and_ssrc(packet: &[u8]) -> (u16, u32) {
    (
        u16::from_be_bytes([packet[2], packet[3]]),
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
    )
}

impl SrtpContext {
    #[must_use]
    pub fn new(master: &MasterKey) -> Self {
        SrtpContext {
            keys: SessionKeys::derive(master),
            sent: HashMap::new(),
            received: HashMap::new(),
        }
    }

    /// Encrypt the RTP packet in `buf[..len]` in place and append its tag: the SRTP
    /// packet's length. `buf` needs [`AUTH_TAG_LEN`] bytes of room after `len` (no
    /// allocation: this runs for every packet sent).
    ///
    /// # Errors
    /// [`SrtpError::NotRtp`] when `buf[..len]` is not RTP or has no room for the tag.
    pub fn protect_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if buf.len() < len + AUTH_TAG_LEN {
            return Err(SrtpError::NotRtp);
        }
        let packet = &mut buf[..len];
        let offset = payload_offset(packet)?;
        let (seq, ssrc) = seq_and_ssrc(packet);
        let (roc, last) = self.sent.entry(ssrc).or_insert((0, seq));
        // The sender's own sequence numbers only go forward: a wrap is a new rollover.
        if seq < *last && *last - seq > 0x8000 {
            *roc = roc.wrapping_add(1);
        }
        *last = seq;
        let roc = *roc;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        self.keys
            .apply_keystream(ssrc, index, &mut packet[offset..]);
        let tag = self.keys.tag(packet, roc);
        buf[len..len + AUTH_TAG_LEN].copy_from_slice(&tag);
        Ok(len + AUTH_TAG_LEN)
    }

    /// [`SrtpContext::protect_in_place`] on a packet that grows by its tag.
    ///
    /// # Errors
    /// [`SrtpError::NotRtp`] when `packet` is not RTP.
    pub fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = packet.len();
        packet.resize(len + AUTH_TAG_LEN, 0);
        let protected = self.protect_in_place(packet, len);
        if protected.is_err() {
            packet.truncate(len);
        }
        protected.map(|_| ())
    }

    /// Check the tag and the replay window of the SRTP packet `packet`, decrypt it in
    /// place: the RTP packet's length (its start; the tag after it is dropped).
    ///
    /// # Errors
    /// Not RTP, a wrong tag (not from the peer, or altered), or a replay.
    pub fn unprotect_in_place(&mut self, packet: &mut [u8]) -> Result<usize, SrtpError> {
        if packet.len() < RTP_HEADER_LEN + AUTH_TAG_LEN {
            return Err(SrtpError::NotRtp);
        }
        let authenticated_len = packet.len() - AUTH_TAG_LEN;
        let offset = payload_offset(&packet[..authenticated_len])?;
        let (seq, ssrc) = seq_and_ssrc(packet);
        let state = self.received.get(&ssrc).copied().unwrap_or_default();
        let index = state.estimate(seq);
        state.check_replay(index)?;
        let roc = (index >> 16) as u32;
        let expected = self.keys.tag(&packet[..authenticated_len], roc);
        let tag_ok: bool =
            subtle::ConstantTimeEq::ct_eq(&expected[..], &packet[authenticated_len..]).into();
        if !tag_ok {
            return Err(SrtpError::BadTag);
        }
        self.keys
            .apply_keystream(ssrc, index, &mut packet[offset..authenticated_len]);
        let mut state = state;
        state.accept(index);
        self.received.insert(ssrc, state);
        Ok(authenticated_len)
    }

    /// [`SrtpContext::unprotect_in_place`], the tag cut off `packet`.
    ///
    /// # Errors
    /// As [`SrtpContext::unprotect_in_place`].
    pub fn unprotect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = self.unprotect_in_place(packet)?;
        packet.truncate(len);
        Ok(())
    }
}

/// The SDP `a=crypto` attribute of SDES (RFC 4568 §9.1) for the one suite we speak:
/// `a=crypto:<tag> AES_CM_128_HMAC_SHA1_80 inline:<base64 key||salt>[|lifetime][|MKI:len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesCrypto {
    pub tag: u32,
    pub key: MasterKey,
}

/// Why an `a=crypto` line cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("malformed crypto attribute")]
    Malformed,
    /// Another suite (AES_256_CM…, AEAD_AES_128_GCM, F8…): skipped for the next line.
    #[error("crypto suite not supported")]
    UnsupportedSuite,
    /// An MKI, several keys, a key lifetime we would have to rekey at, or session
    /// parameters (UNENCRYPTED_SRTP …): none of them used by SIP phones' SDES.
    #[error("crypto parameters not supported")]
    UnsupportedParameters,
}

/// The suite name in `a=crypto`.
pub const SDES_SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

impl SdesCrypto {
    /// Parse the value of an `a=crypto:` attribute (what follows `crypto:`).
    ///
    /// # Errors
    /// [`SdesError`]: what makes the line unusable.
    pub fn parse(value: &str) -> Result<Self, SdesError> {
        use base64::Engine as _;
        let mut fields = value.split_ascii_whitespace();
        let tag = fields
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t < 1_000_000_000)
            .ok_or(SdesError::Malformed)?;
        let suite = fields.next().ok_or(SdesError::Malformed)?;
        if suite != SDES_SUITE {
            return Err(SdesError::UnsupportedSuite);
        }
        let key_params = fields.next().ok_or(SdesError::Malformed)?;
        if fields.next().is_some() || key_params.contains(';') {
            return Err(SdesError::UnsupportedParameters);
        }
        let inline = key_params
            .strip_prefix("inline:")
            .ok_or(SdesError::Malformed)?;
        let mut parts = inline.split('|');
        let encoded = parts.next().ok_or(SdesError::Malformed)?;
        for extra in parts {
            // A lifetime of 2^31 or more packets is what phones send: never reached by
            // a call; an MKI is not supported.
            let long_lifetime = extra
                .strip_prefix("2^")
                .and_then(|e| e.parse::<u32>().ok())
                .is_some_and(|e| (31..=48).contains(&e));
            if !long_lifetime {
                return Err(SdesError::UnsupportedParameters);
            }
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SdesError::Malformed)?;
        let bytes: [u8; MASTER_KEY_LEN + MASTER_SALT_LEN] =
            bytes.try_into().map_err(|_| SdesError::Malformed)?;
        Ok(SdesCrypto {
            tag,
            key: MasterKey::from_bytes(&bytes),
        })
    }
}

impl std::fmt::Display for SdesCrypto {
    /// The attribute's value, as offered or answered.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine as _;
        write!(
            f,
            "{} {SDES_SUITE} inline:{}",
            self.tag,
            base64::engine::general_purpose::STANDARD.encode(self.key.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdes_attributes_of_phones_parse_and_others_are_told_apart() {
        // RFC 4568 §9.1's example key, as baresip and Asterisk write it.
        let line =
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
        assert_eq!(
            SdesCrypto::parse(line),
            Err(SdesError::UnsupportedParameters),
            "an MKI"
        );
        let line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let crypto = SdesCrypto::parse(line).expect("parsed");
        assert_eq!(crypto.tag, 1);
        assert_eq!(crypto.to_string(), line, "written back as read");
        let with_lifetime = format!("{line}|2^31");
        assert_eq!(SdesCrypto::parse(&with_lifetime), Ok(crypto.clone()));
        for (bad, why) in [
            (
                "2 AES_256_CM_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
                SdesError::UnsupportedSuite,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR UNENCRYPTED_SRTP",
                SdesError::UnsupportedParameters,
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
                SdesError::Malformed,
            ),
            (
                "x AES_CM_128_HMAC_SHA1_80 inline:PS1u",
                SdesError::Malformed,
            ),
            ("1 AES_CM_128_HMAC_SHA1_80", SdesError::Malformed),
        ] {
            assert_eq!(SdesCrypto::parse(bad), Err(why), "{bad}");
        }
        let ours = SdesCrypto {
            tag: 1,
            key: MasterKey::random(),
        };
        assert_eq!(SdesCrypto::parse(&ours.to_string()), Ok(ours));
    }

    fn hex_bytes(text: &str) -> Vec<u8> {
        let text: String = text.split_whitespace().collect();
        hex::decode(text).expect("hex")
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream for session key
    /// 2B7E151628AED2A6ABF7158809CF4F3C, salt F0F1…FD, SSRC 0, index 0.
    #[test]
    fn aes_cm_keystream_matches_rfc3711_b2() {
        let key: [u8; 16] = hex_bytes("2B7E151628AED2A6ABF7158809CF4F3C")
            .try_into()
            .expect("16");
        let cipher = Aes128::new(GenericArray::from_slice(&key));
        let iv: [u8; 16] = hex_bytes("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
            .try_into()
            .expect("16");
        let mut stream = vec![0u8; 16 * 0xFF02];
        keystream_xor(&cipher, iv, &mut stream);
        for (block, expected) in [
            (0x0000, "E03EAD0935C95E80E166B16DD92B4EB4"),
            (0x0001, "D23513162B02D0F72A43A2FE4A5F97AB"),
            (0x0002, "41E95B3BB0A2E8DD477901E4FCA894C0"),
            (0xFEFF, "EC8CDF7398607CB0F2D21675EA9EA1E4"),
            (0xFF00, "362B7C3C6773516318A077D7FC5073AE"),
            (0xFF01, "6A2CC3787889374FBEB4C81B17BA6C44"),
        ] {
            assert_eq!(
                hex::encode_upper(&stream[block * 16..block * 16 + 16]),
                expected,
                "keystream block {block:#x}"
            );
        }
    }

    /// RFC 3711 Appendix B.3: the session keys of master key E1F97A0D…, salt 0EC675AD….
    #[test]
    fn key_derivation_matches_rfc3711_b3() {
        let master = MasterKey {
            key: hex_bytes("E1F97A0D3E018BE0D64FA32C06DE4139")
                .try_into()
                .expect("16"),
            salt: hex_bytes("0EC675AD498AFEEBB6960B3AABE6")
                .try_into()
                .expect("14"),
        };
        let prf = Aes128::new(GenericArray::from_slice(&master.key));
        let mut cipher_key = [0u8; 16];
        derive(&prf, &master.salt, 0, &mut cipher_key);
        assert_eq!(
            hex::encode_upper(cipher_key),
            "C61E7A93744F39EE10734AFE3FF7A087"
        );
        let mut salt = [0u8; 14];
        derive(&prf, &master.salt, 2, &mut salt);
        assert_eq!(hex::encode_upper(salt), "30CBBC08863D8C85D49DB34A9AE1");
        let mut auth = [0u8; 94];
        derive(&prf, &master.salt, 1, &mut auth);
        assert_eq!(
            hex::encode_upper(auth),
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE\
             E049646C43D9327AD175578EF7227098\
             6371C10C9A369AC2F94A8C5FBCDDDC256D6E919A48B610EF17C2041E47403576\
             6B68642C59BBFC2F34DB60DBDFB2"
        );
    }

    /// A whole packet under the RFC 3711 B.3 master key: the reference packet of
    /// libsrtp's own test driver (an independent implementation), byte for byte.
    #[test]
    fn a_packet_is_protected_as_libsrtp_protects_it() {
        let master = MasterKey::from_bytes(
            &hex_bytes("E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6")
                .try_into()
                .expect("30"),
        );
        let plain = hex_bytes("800F1234 DECAFBAD CAFEBABE ABABABAB ABABABAB ABABABAB ABABABAB");
        let mut packet = plain.clone();
        SrtpContext::new(&master)
            .protect(&mut packet)
            .expect("protect");
        assert_eq!(
            hex::encode_upper(&packet),
            "800F1234DECAFBADCAFEBABE4E55DC4CE79978D88CA4D215949D2402B78D6ACC99EA179B8DBB"
        );
        SrtpContext::new(&master)
            .unprotect(&mut packet)
            .expect("unprotect");
        assert_eq!(packet, plain);
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn protected_packets_round_trip_and_altered_or_replayed_ones_are_refused() {
        let master = MasterKey::random();
        let mut sender = SrtpContext::new(&master);
        let mut receiver = SrtpContext::new(&master);
        let plain = rtp(65_534, 7, &[0xd5; 160]);
        let mut packet = plain.clone();
        sender.protect(&mut packet).expect("protect");
        assert_eq!(packet.len(), plain.len() + AUTH_TAG_LEN);
        assert_eq!(packet[..12], plain[..12], "the header stays in clear");
        assert_ne!(packet[12..172], plain[12..], "the payload is encrypted");
        let replay = packet.clone();
        receiver.unprotect(&mut packet).expect("unprotect");
        assert_eq!(packet, plain);
        let mut again = replay;
        assert_eq!(receiver.unprotect(&mut again), Err(SrtpError::Replayed));
        // Across the sequence number's wrap: the rollover counter follows on both sides.
        for seq in [65_535u16, 0, 1, 2] {
            let plain = rtp(seq, 7, b"hello");
            let mut packet = plain.clone();
            sender.protect(&mut packet).expect("protect");
            receiver.unprotect(&mut packet).expect("after the wrap");
            assert_eq!(packet, plain, "seq {seq}");
        }
        // One bit flipped, or another key: refused.
        let mut packet = rtp(3, 7, b"hello");
        sender.protect(&mut packet).expect("protect");
        let mut flipped = packet.clone();
        flipped[13] ^= 1;
        assert_eq!(receiver.unprotect(&mut flipped), Err(SrtpError::BadTag));
        let mut stranger = SrtpContext::new(&MasterKey::random());
        assert_eq!(stranger.unprotect(&mut packet), Err(SrtpError::BadTag));
        assert_eq!(
            receiver.unprotect(&mut vec![0x80; 12]),
            Err(SrtpError::NotRtp)
        );
    }

    #[test]
    fn a_late_packet_within_the_window_is_taken_once() {
        let master = MasterKey::random();
        let mut sender = SrtpContext::new(&master);
        let mut receiver = SrtpContext::new(&master);
        let packets: Vec<Vec<u8>> = (100..110u16)
            .map(|seq| {
                let mut p = rtp(seq, 9, b"x");
                sender.protect(&mut p).expect("protect");
                p
            })
            .collect();
        for p in packets.iter().skip(1) {
            receiver.unprotect(&mut p.clone()).expect("in order");
        }
        receiver
            .unprotect(&mut packets[0].clone())
            .expect("late but in the window");
        assert_eq!(
            receiver.unprotect(&mut packets[0].clone()),
            Err(SrtpError::Replayed)
        );
    }
}
