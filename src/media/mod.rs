//! Media plane: RTP/RTCP, G.711, RFC 4733 DTMF, SDP, prompts, recorder, bridge.
//!
//! Every module here is sans-IO: no sockets, no clocks, no tasks. Time is passed in as
//! `Instant`; the tokio shell owns the sockets and files and calls these cores.

pub mod bridge;
pub mod dtmf;
pub mod g711;
pub mod player;
pub mod port_pool;
pub mod recorder;
pub mod rtp;
pub mod sdp;
