//! The 12348 hotline server: SIP/RTP B2BUA, IVR, ACD queues and work orders (工单) for
//! Shandong's public legal-service hotline. See README.md and ../shared/DESIGN.md.

pub mod analysis;
pub mod api;
pub mod app;
pub mod assessment;
pub mod calendar;
pub mod call;
pub mod clock;
pub mod config;
pub mod directory;
pub mod domain;
pub mod fuzz;
pub mod http_client;
pub mod ivr;
pub mod logfmt;
pub mod media;
pub mod metrics;
pub mod order_cli;
pub mod orders;
pub mod queue;
pub mod server;
pub mod shutdown;
pub mod sip;
pub mod store;
pub mod ticket;
pub mod user_cli;
pub mod window_limiter;
