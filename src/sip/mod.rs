//! SIP: message layer, transactions (sans-IO), digest auth, registrar, transports.

pub mod auth;
pub mod call_leg;
pub mod dialog;
pub mod message;
pub mod registrar;
pub mod transaction;
