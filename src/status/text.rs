//! The text form of a [`StatusReport`]: a few lines per storage and
//! location, one `WARNING: [<kind>] <message>` line per problem, and last
//! `OK` or `<N> problem(s) found` (see docs/status.rst). Facts only from
//! the report; nothing is looked up again.

use std::fmt::Write as _;

use super::{BlobLocationStatus, RepositoryStatus, StatusReport};

/// `2d 3h`, `1h 1s`, `45s`: every unit that is not zero.
pub(super) fn human_duration(secs: u64) -> String {
    let units = [
        (604_800, "w"),
        (86_400, "d"),
        (3600, "h"),
        (60, "m"),
        (1, "s"),
    ];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, unit) in units {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

impl StatusReport {
    /// The text form: a few lines per storage and location, then one
    /// `WARNING: [<kind>] <message>` line per problem, and last `OK` or
    /// `<N> problem(s) found`.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "Status of part {} at {} ({})",
            self.part, self.now.stamp, self.now.time
        );
        if let Some(max) = self.max_age_seconds {
            let _ = write!(out, ", maximum age {}", human_duration(max));
        }
        out.push('\n');
        for s in &self.storages {
            let _ = writeln!(out, "Storage {}: {}", s.name, s.datafs);
            match &s.newest {
                Some(n) => {
                    let _ = writeln!(
                        out,
                        "  newest backup: {} ({} old, {} seconds) {}",
                        n.stamp,
                        human_duration(n.age_seconds.unsigned_abs()),
                        n.age_seconds,
                        n.path
                    );
                }
                None => out.push_str("  newest backup: none\n"),
            }
            for l in &s.locations {
                if let Some(r) = &l.filestorage {
                    text_repository(&mut out, l.kind, r);
                }
                if let Some(b) = &l.blobs {
                    text_blobs(&mut out, l.kind, b);
                }
            }
        }
        for p in &self.problems {
            let _ = writeln!(out, "WARNING: [{}] {}", p.kind.as_str(), p.message);
        }
        match self.problems.len() {
            0 => out.push_str("OK\n"),
            1 => out.push_str("1 problem found\n"),
            n => {
                let _ = writeln!(out, "{n} problems found");
            }
        }
        out
    }
}

fn text_repository(out: &mut String, kind: &str, r: &RepositoryStatus) {
    if !r.exists {
        let _ = writeln!(out, "  {kind}: {} does not exist", r.path);
        return;
    }
    let files: usize = r.chains.iter().map(|c| c.backups.len()).sum();
    let _ = writeln!(
        out,
        "  {kind}: {}: {} chain(s), {files} backup file(s), {} bytes{}",
        r.path,
        r.chains.len(),
        r.bytes,
        if r.by_names {
            " (no .dat files: chains by names)"
        } else {
            ""
        }
    );
    for c in &r.chains {
        let (Some(first), Some(last)) = (c.backups.first(), c.backups.last()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "    chain {}: {} {}{}, {} incremental(s), last {}, {} bytes{}",
            c.dat.as_deref().unwrap_or("(by names)"),
            first.kind,
            first.file,
            if first.gzip { " (gzip)" } else { "" },
            c.backups.len() - 1,
            last.stamp,
            c.bytes,
            if c.whole { "" } else { ", BROKEN" }
        );
    }
}

fn text_blobs(out: &mut String, kind: &str, b: &BlobLocationStatus) {
    if !b.exists {
        let _ = writeln!(out, "  {kind} (blobs): {} does not exist", b.path);
        return;
    }
    let count = b
        .backups
        .iter()
        .filter(|x| x.kind != "snapshot_file")
        .count();
    let newest = b.backups.first().map_or("", |x| x.name.as_str());
    let _ = writeln!(
        out,
        "  {kind} (blobs): {}: {count} backup(s), {} bytes{}{}",
        b.path,
        b.bytes,
        if newest.is_empty() { "" } else { ", newest " },
        newest
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(3900), "1h 5m");
        assert_eq!(human_duration(3601), "1h 1s");
        assert_eq!(human_duration(183_600), "2d 3h");
        assert_eq!(human_duration(86_400), "1d");
    }
}
