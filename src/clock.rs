//! The time source for backup names.
//!
//! Backup names have one-second resolution (`YYYY-MM-DD-HH-MM-SS`, UTC), so
//! tests inject a clock instead of sleeping.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Tells the current UTC time.
pub trait Clock: Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock for tests: starts at a given time and advances by `step` on
/// every reading.
#[derive(Debug)]
pub struct SteppingClock {
    next: Mutex<DateTime<Utc>>,
    step: Duration,
}

impl SteppingClock {
    /// A clock that first reads `start`, then `start + step`, and so on.
    #[must_use]
    pub fn new(start: DateTime<Utc>, step: Duration) -> Self {
        SteppingClock {
            next: Mutex::new(start),
            step,
        }
    }
}

impl Clock for SteppingClock {
    fn now(&self) -> DateTime<Utc> {
        let mut next = match self.next.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let t = *next;
        *next = t + self.step;
        t
    }
}
