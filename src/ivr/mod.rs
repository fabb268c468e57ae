//! Call flows: city, working hours, menus, voice messages, survey, CDR.
//!
//! Everything here is sans-IO: the call shell feeds inputs and the current time and
//! carries out the actions (play, record, enqueue, hang up).

pub mod cdr;
pub mod city;
pub mod flow;
pub mod hours;
pub mod prompt;
