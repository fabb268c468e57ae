//! SIP: message layer, transactions (sans-IO), digest auth, registrar, dialogs and call
//! legs (sans-IO), and the endpoint core the transports feed.

pub mod auth;
pub mod call_leg;
pub mod counters;
pub mod dialog;
pub mod endpoint;
pub mod message;
pub mod registrar;
pub mod transaction;
