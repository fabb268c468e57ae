//! Assessment (H-15, H-16, H-17, W-19, W-20), sans-IO: which published reports are due
//! at a moment (`periods`), told the time; the shell (`src/api/reports.rs`) reads the
//! clock, the database and writes the files.

pub mod periods;
pub mod quality;
pub mod violations;
