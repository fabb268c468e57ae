//! The calendar a running server uses, reloadable without a restart.
//!
//! [`SharedCalendar`] is a cheap handle (clone it freely) on the calendar currently in
//! force. The reminder scheduler calls [`SharedCalendar::reload_if_changed`] on each of
//! its passes: when the calendar file's modification time differs from the one loaded,
//! the file is read and validated again and, only when valid, replaces the calendar in
//! force (a broken edit keeps the previous calendar and is reported once per change).
//!
//! Why the file's mtime and not SIGHUP: `hotline calendar add-year` writes the file
//! and the running server notices within one scheduler interval, with nothing else to
//! do (no pid to find, no `ExecReload` in the packaged unit, the same on every platform
//! and under tests); the scheduler already wakes every minute, so the cost is one
//! `stat` a minute.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use super::{Calendar, CalendarError};

/// What [`SharedCalendar::reload_if_changed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// No file to watch, or it has not changed since it was last read.
    Unchanged,
    /// The file changed and was loaded: these years are now in force.
    Reloaded {
        /// Years with data after the reload.
        years: Vec<i32>,
        /// Years that were not loaded before.
        added: Vec<i32>,
    },
}

#[derive(Debug)]
struct Inner {
    current: RwLock<Arc<Calendar>>,
    path: Option<PathBuf>,
    /// Modification time of the file when it was last read (`None`: unknown).
    seen: Mutex<Option<SystemTime>>,
}

/// Handle on the calendar in force; see the module documentation.
#[derive(Debug, Clone)]
pub struct SharedCalendar(Arc<Inner>);

impl Default for SharedCalendar {
    fn default() -> Self {
        Self::fixed(Calendar::default())
    }
}

impl From<Calendar> for SharedCalendar {
    /// A calendar that is never reloaded.
    fn from(calendar: Calendar) -> Self {
        Self::fixed(calendar)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl SharedCalendar {
    /// A calendar that is never reloaded (tests, tools).
    #[must_use]
    pub fn fixed(calendar: Calendar) -> Self {
        Self(Arc::new(Inner {
            current: RwLock::new(Arc::new(calendar)),
            path: None,
            seen: Mutex::new(None),
        }))
    }

    /// `calendar`, just loaded from `path`, reloaded when the file changes.
    #[must_use]
    pub fn watching(path: impl Into<PathBuf>, calendar: Calendar) -> Self {
        let path = path.into();
        let seen = modified(&path);
        Self(Arc::new(Inner {
            current: RwLock::new(Arc::new(calendar)),
            path: Some(path),
            seen: Mutex::new(seen),
        }))
    }

    /// The calendar in force now.
    #[must_use]
    pub fn current(&self) -> Arc<Calendar> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The file watched, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.0.path.as_deref()
    }

    /// Replaces the calendar in force.
    pub fn replace(&self, calendar: Calendar) {
        *self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(calendar);
    }

    /// Reloads the watched file when its modification time changed since it was last
    /// read. A file that does not load (unreadable, invalid) keeps the calendar in
    /// force; the error is returned once for that change, not again until the file
    /// changes anew.
    ///
    /// # Errors
    /// The [`CalendarError`] of loading the changed file.
    pub fn reload_if_changed(&self) -> Result<Reload, CalendarError> {
        let Some(path) = self.0.path.as_deref() else {
            return Ok(Reload::Unchanged);
        };
        let now_modified = modified(path);
        {
            let mut seen = self.0.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now_modified {
                return Ok(Reload::Unchanged);
            }
            *seen = now_modified;
        }
        let calendar = Calendar::load(path)?;
        let before = self.current().loaded_years();
        let years = calendar.loaded_years();
        let added = years
            .iter()
            .copied()
            .filter(|y| !before.contains(y))
            .collect();
        self.replace(calendar);
        Ok(Reload::Reloaded { years, added })
    }
}
