//! The bottom of the crate: identifiers and the one vocabulary every other module
//! speaks (DESIGN.md: `api`, `runtime` → `orders`, `call` → `sip`, `media`, `ivr`,
//! `queue`, `ticket` → `domain`, `calendar`). Nothing here imports from above.

pub mod directory;
pub mod ids;
pub mod vocabulary;

pub use directory::{
    AppointmentStatus, DirectoryKind, IntegrityKind, IntegrityRecord, LicenceStatus,
};
pub use ids::{AgentId, CallId, CityId, OrderId, UnitId, UserId};
pub use vocabulary::{BusinessArea, CallCategory, Category, Channel, Urgency};
