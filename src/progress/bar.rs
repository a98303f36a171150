//! [`StderrBar`]: progress drawn on stderr with the `indicatif` crate, on a
//! terminal only.
//!
//! A phase measured in bytes shows bytes done and total, the rate and the
//! time left; a phase measured in files shows files done and total, files
//! per second and the time left; a phase of unknown length shows a spinner
//! with what is done and the rate. Short phases draw nothing (see
//! [`worth_a_bar`]): a bar that flashes for a small increment tells nothing.
//!
//! Log lines and the bar share stderr. The bar is cleared when its phase
//! ends, and [`suspend`] clears it while a log record is written (the Python
//! bindings wrap their logger in it), so that no log line is cut by a bar.

use std::io::IsTerminal;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::{Progress, Unit};

/// A byte phase shorter than this draws no bar (a small increment, the
/// checksum of a small last file).
pub const MIN_BYTES: u64 = 16 << 20;

/// A file phase with fewer files draws no bar.
pub const MIN_FILES: u64 = 100;

/// Redraws per second at most.
const REFRESH_HZ: u8 = 10;

/// The bar being drawn, for [`suspend`]. One process draws one bar at a
/// time (a command runs its phases one after the other).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run `f` (which writes to stderr) with the bar being drawn, if any,
/// cleared; the bar is drawn again after it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let shown = lock(&SHOWN).clone();
    match shown {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Whether a phase of `total` `unit`s is long enough for a bar. Phases of
/// unknown length (walking a tree, extracting an archive) get a spinner.
#[must_use]
pub fn worth_a_bar(unit: Unit, total: Option<u64>) -> bool {
    match (unit, total) {
        (_, None) => true,
        (Unit::Bytes, Some(n)) => n >= MIN_BYTES,
        (Unit::Files, Some(n)) => n >= MIN_FILES,
    }
}

/// The `indicatif` template of a phase.
#[must_use]
pub fn template(unit: Unit, known_total: bool) -> &'static str {
    match (unit, known_total) {
        (Unit::Bytes, true) => {
            "{msg:>14} [{bar:30}] {bytes}/{total_bytes}, {binary_bytes_per_sec}, ETA {eta}"
        }
        (Unit::Bytes, false) => "{msg:>14} {spinner} {bytes}, {binary_bytes_per_sec}",
        (Unit::Files, true) => {
            "{msg:>14} [{bar:30}] {human_pos}/{human_len} files, {files_per_sec}, ETA {eta}"
        }
        (Unit::Files, false) => "{msg:>14} {spinner} {files_so_far}",
    }
}

/// A rate of files as shown: whole files per second.
#[must_use]
pub fn files_per_second(rate: f64) -> String {
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        0.0
    };
    format!("{rate:.0} files/s")
}

/// Files done in a phase of unknown length, with their rate; nothing
/// before the first (walking a tree counts no files).
#[must_use]
pub fn files_so_far(done: u64, rate: f64) -> String {
    if done == 0 {
        String::new()
    } else {
        format!("{done} files, {}", files_per_second(rate))
    }
}

fn style(unit: Unit, known_total: bool) -> ProgressStyle {
    let files_per_sec = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&files_per_second(state.per_sec()));
    };
    let so_far = |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&files_so_far(state.pos(), state.per_sec()));
    };
    match ProgressStyle::with_template(template(unit, known_total)) {
        Ok(s) => s
            .with_key("files_per_sec", files_per_sec)
            .with_key("files_so_far", so_far)
            .progress_chars("=> ")
            .tick_chars("|/-\\ "),
        // The templates are tested; a bar is never worth a failure.
        Err(e) => {
            log::debug!("progress bar template: {e}");
            ProgressStyle::default_bar()
        }
    }
}

/// A [`Progress`] that draws on stderr when asked to and stderr is a
/// terminal, else nothing at all. Dropping it clears a bar left by a phase
/// that did not finish (an error).
#[derive(Debug)]
pub struct StderrBar {
    drawing: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl StderrBar {
    /// A bar on stderr when `wanted` and stderr is a terminal (checked
    /// here, not left to `indicatif`, which also hides itself for
    /// `TERM=dumb`).
    #[must_use]
    pub fn new(wanted: bool) -> Self {
        Self::with_drawing(wanted && std::io::stderr().is_terminal())
    }

    fn with_drawing(drawing: bool) -> Self {
        StderrBar {
            drawing,
            bar: Mutex::new(None),
        }
    }

    /// Whether this bar draws at all.
    #[must_use]
    pub fn is_drawing(&self) -> bool {
        self.drawing
    }

    fn clear(&self) {
        let Some(bar) = lock(&self.bar).take() else {
            return;
        };
        let mut shown = lock(&SHOWN);
        *shown = None;
        // Cleared while SHOWN is held: a log record waits, then finds no bar.
        bar.finish_and_clear();
    }
}

impl Progress for StderrBar {
    fn start(&self, phase: &str, total: Option<u64>, unit: Unit) {
        self.clear();
        if !self.drawing || !worth_a_bar(unit, total) {
            return;
        }
        let bar =
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(REFRESH_HZ));
        bar.set_style(style(unit, total.is_some()));
        bar.set_message(phase.to_owned());
        if total.is_none() {
            // Nothing may advance for a while (walking a tree): show life.
            bar.enable_steady_tick(Duration::from_millis(200));
        } else {
            bar.tick();
        }
        *lock(&SHOWN) = Some(bar.clone());
        *lock(&self.bar) = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = lock(&self.bar).as_ref() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        self.clear();
    }
}

impl Drop for StderrBar {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_phases_draw_nothing() {
        assert!(!worth_a_bar(Unit::Bytes, Some(0)));
        assert!(!worth_a_bar(Unit::Bytes, Some(MIN_BYTES - 1)));
        assert!(worth_a_bar(Unit::Bytes, Some(MIN_BYTES)));
        assert!(!worth_a_bar(Unit::Files, Some(MIN_FILES - 1)));
        assert!(worth_a_bar(Unit::Files, Some(MIN_FILES)));
        assert!(worth_a_bar(Unit::Bytes, None));
        assert!(worth_a_bar(Unit::Files, None));
    }

    #[test]
    fn every_template_parses() {
        for unit in [Unit::Bytes, Unit::Files] {
            for known in [false, true] {
                let t = template(unit, known);
                assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
            }
        }
    }

    #[test]
    fn templates_show_totals_rate_and_time_left() {
        let bytes = template(Unit::Bytes, true);
        for key in ["{bytes}", "{total_bytes}", "bytes_per_sec}", "{eta}"] {
            assert!(bytes.contains(key), "{bytes} lacks {key}");
        }
        let files = template(Unit::Files, true);
        for key in ["{human_pos}", "{human_len}", "{files_per_sec}", "{eta}"] {
            assert!(files.contains(key), "{files} lacks {key}");
        }
        assert!(!template(Unit::Bytes, false).contains("eta"));
        assert!(!template(Unit::Files, false).contains("eta"));
    }

    #[test]
    fn files_per_second_is_whole_and_never_odd() {
        assert_eq!(files_per_second(0.0), "0 files/s");
        assert_eq!(files_per_second(1234.56), "1235 files/s");
        assert_eq!(files_per_second(f64::NAN), "0 files/s");
        assert_eq!(files_per_second(f64::INFINITY), "0 files/s");
        assert_eq!(files_per_second(-3.0), "0 files/s");
        assert_eq!(files_so_far(0, 0.0), "");
        assert_eq!(files_so_far(12, 3.4), "12 files, 3 files/s");
    }

    #[test]
    fn not_drawing_keeps_no_bar() {
        let p = StderrBar::with_drawing(false);
        p.start("copying", Some(MIN_BYTES * 4), Unit::Bytes);
        assert!(lock(&p.bar).is_none());
        p.advance(10);
        p.finish();
        assert!(!p.is_drawing());
        assert!(!StderrBar::new(false).is_drawing());
    }

    #[test]
    fn a_short_phase_keeps_no_bar_and_an_unfinished_one_is_cleared() {
        let p = StderrBar::with_drawing(true);
        p.start("copying", Some(10), Unit::Bytes);
        assert!(lock(&p.bar).is_none());
        // On a test's stderr (a pipe or a terminal) indicatif hides or draws;
        // either way the bar is kept until the phase ends.
        p.start("copying", Some(MIN_BYTES), Unit::Bytes);
        assert!(lock(&p.bar).is_some());
        p.advance(MIN_BYTES / 2);
        assert_eq!(
            lock(&p.bar).as_ref().map(ProgressBar::position),
            Some(MIN_BYTES / 2)
        );
        // A new phase replaces it.
        p.start("blobs: copy", Some(MIN_FILES), Unit::Files);
        assert_eq!(lock(&p.bar).as_ref().map(ProgressBar::position), Some(0));
        p.finish();
        assert!(lock(&p.bar).is_none());
        assert!(lock(&SHOWN).is_none());
        assert_eq!(suspend(|| 7), 7);
    }
}
