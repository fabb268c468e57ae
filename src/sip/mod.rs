//! SIP: message layer, transactions (sans-IO), digest auth, registrar, transports.

pub mod auth;
pub mod endpoint;
pub mod message;
pub mod registrar;
pub mod transaction;
