//! The writes a crash-state failure needs: delta debugging over the writes
//! a crash may keep or lose, printed in words.
//!
//! A failing crash state holds, for each non-durable write of the crash
//! point, all of its sectors (persisted), some (torn) or none (lost). The
//! failure rarely needs all of that. [`minimal_cause`] shrinks the set of
//! persisted and torn writes (ddmin, Zeller and Hildebrandt, to a
//! one-minimal set: dropping any one more write makes the state pass or
//! break another invariant), then names the lost writes the failure needs
//! too: those that, persisted as well, make it pass. The answer reads
//! `the failure needs: W9 on cow0 (area 0, FUA, in flight) lost while W7
//! on cow0 (chunk 2, data) persisted`.

use std::sync::Arc;

use model::Invariant;

use crate::disk::{HeldWrite, Image, SimDisk};
use crate::world::{CrashPoint, Report, World};

/// Crash states [`minimal_cause`] may judge before it gives up shrinking.
pub const JUDGED_MAX: u64 = 4096;

/// One write of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseWrite {
    /// Its disk: 0 the origin, `k + 1` COW `k`.
    pub disk: usize,
    /// Its request number on that disk (the `request` of its `Disk` event).
    pub request: u64,
    pub sector: u64,
    pub sectors: u64,
    /// Sectors of it the failing state needs (all, or fewer if torn).
    pub persisted_sectors: u64,
    /// Where it lands, in words: `area 0`, `chunk 5, data`, `header`, `sectors 16+8`.
    pub place: String,
    /// Its flags and state: `PREFLUSH`, `FUA, in flight`.
    pub flags: String,
}

impl std::fmt::Display for CauseWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let device = if self.disk == 0 { "origin".to_string() } else { format!("cow{}", self.disk - 1) };
        let flags = if self.flags.is_empty() { String::new() } else { format!(", {}", self.flags) };
        write!(f, "W{} on {device} ({}{flags})", self.request, self.place)?;
        if self.persisted_sectors < self.sectors {
            write!(f, " torn, {} of its {} sectors", self.persisted_sectors, self.sectors)?;
        }
        Ok(())
    }
}

/// What a failing crash state needs, shrunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Writes (or torn parts of writes) that must persist, oldest first per disk.
    pub persisted: Vec<CauseWrite>,
    /// Writes that must be lost: persisting any one of them too passes.
    pub lost: Vec<CauseWrite>,
    /// Non-durable writes at the crash point.
    pub pending: usize,
    /// Every non-durable write's fate in the failing state: disk, request,
    /// sectors it held there, its sectors.
    pub fates: Vec<(usize, u64, u64, u64)>,
    /// Crash states judged to find this.
    pub judged: u64,
    /// Shrinking stopped at [`JUDGED_MAX`] before it was one-minimal.
    pub truncated: bool,
}

impl Cause {
    /// The writes named, persisted or lost: (disk, request).
    pub fn named(&self) -> Vec<(usize, u64)> {
        self.persisted.iter().chain(&self.lost).map(|w| (w.disk, w.request)).collect()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |writes: &[CauseWrite]| writes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let some = if self.truncated { " (not minimal: the shrinking stopped early)" } else { "" };
        match (self.persisted.is_empty(), self.lost.is_empty()) {
            (true, true) => write!(f, "the failure needs no non-durable write: the durable images alone fail"),
            (true, false) => write!(f, "the failure needs: {} lost{some}", list(&self.lost)),
            (false, true) => write!(f, "the failure needs: {} persisted{some}", list(&self.persisted)),
            (false, false) => write!(f, "the failure needs: {} lost while {} persisted{some}", list(&self.lost), list(&self.persisted)),
        }
    }
}

/// Explains a run's failure by the seeded crash before it (kept when the
/// run recorded a timeline): the writes of that crash state the failure
/// needs, marked on the run's timeline. `None` when there was no crash
/// before the failure, or when the crash state alone does not fail as the
/// run did (the operations after the crash brought the failure about).
pub fn explain_run(report: &mut Report) -> Option<Cause> {
    let failure = report.failure.as_ref()?;
    let crash = report.last_crash.as_ref()?;
    if failure.step < crash.step {
        return None;
    }
    let cause = minimal_cause(&crash.disks, &crash.point, &crash.images, failure.violation.invariant)?;
    if let Some(timeline) = &mut report.timeline {
        timeline.mark_needed(crash.boot, &cause.named());
        timeline.cause = Some(cause.to_string());
    }
    Some(cause)
}

/// Shrinks the failing state `failing` (images of every disk, origin
/// first) of crash point `point` to the writes it needs to break
/// `invariant`. `None` when the state is not made of the point's writes (a
/// sector holding a value no pending write wrote), which the enumeration
/// never builds.
pub fn minimal_cause(disks: &[Arc<SimDisk>], point: &CrashPoint, failing: &[Image], invariant: Invariant) -> Option<Cause> {
    assert_eq!(disks.len(), failing.len(), "one failing image per disk");
    let durable: Vec<Image> = disks.iter().map(|d| d.durable()).collect();
    let elements = crate::disk::held_writes(disks, failing);
    let pending = elements.len();
    let judged = std::cell::Cell::new(0u64);
    let fails = |subset: &[(usize, Vec<usize>)]| -> bool {
        judged.set(judged.get() + 1);
        let mut images = durable.clone();
        for (e, sectors) in subset {
            let element = &elements[*e];
            for &i in sectors {
                let (sector, value) = &element.write.sectors[i];
                images[element.disk].set(*sector, value.clone());
            }
        }
        matches!(World::check_crash_state(point, images), Err(v) if v.invariant == invariant)
    };
    let start: Vec<(usize, Vec<usize>)> = elements.iter().enumerate().filter(|(_, e)| !e.held.is_empty()).map(|(i, e)| (i, e.held.clone())).collect();
    // The state rebuilt from its writes must fail as the original did.
    if !fails(&start) {
        return None;
    }
    let out_of_budget = || judged.get() >= JUDGED_MAX;
    let (kept, truncated) = ddmin(start, fails, out_of_budget);
    // Lost writes the failure needs: persisting one of them too passes.
    let mut lost = Vec::new();
    for (e, element) in elements.iter().enumerate() {
        if kept.iter().any(|(k, _)| *k == e) || out_of_budget() {
            continue;
        }
        let mut with: Vec<(usize, Vec<usize>)> = kept.clone();
        with.push((e, (0..element.write.sectors.len()).collect()));
        with.sort_by_key(|(k, _)| *k);
        if !fails(&with) {
            lost.push(describe(point, element, element.write.sectors.len()));
        }
    }
    let persisted = kept.iter().map(|(e, sectors)| describe(point, &elements[*e], sectors.len())).collect();
    let fates = elements.iter().map(HeldWrite::fate).collect();
    let judged = judged.get();
    debug_assert!(judged <= JUDGED_MAX + pending as u64 + 1, "judged {judged} states");
    Some(Cause { persisted, lost, pending, fates, judged, truncated })
}

/// ddmin over `items`: removes chunks, halving their size, while `still_fails`
/// holds without them, down to single items. Returns the kept items and
/// whether `out_of_budget` stopped it first.
fn ddmin<T: Clone>(mut items: Vec<T>, mut still_fails: impl FnMut(&[T]) -> bool, out_of_budget: impl Fn() -> bool) -> (Vec<T>, bool) {
    let mut size = items.len().div_ceil(2).max(1);
    loop {
        let mut removed_any = false;
        let mut start = 0;
        while start < items.len() {
            if out_of_budget() {
                return (items, true);
            }
            let mut fewer = items.clone();
            fewer.drain(start..(start + size).min(items.len()));
            if still_fails(&fewer) {
                items = fewer;
                removed_any = true;
            } else {
                start += size;
            }
        }
        if size == 1 && !removed_any {
            return (items, false);
        }
        size = if size == 1 { 1 } else { size.div_ceil(2) };
    }
}

fn describe(point: &CrashPoint, element: &HeldWrite, persisted_sectors: usize) -> CauseWrite {
    let write = &element.write;
    let sector = write.sectors.first().map_or(0, |(s, _)| *s);
    let mut flags = Vec::new();
    if write.preflush {
        flags.push("PREFLUSH");
    }
    if write.fua {
        flags.push("FUA");
    }
    let mut flags = flags.join("|");
    if !write.completed {
        flags = if flags.is_empty() { "in flight".into() } else { format!("{flags}, in flight") };
    }
    CauseWrite {
        disk: element.disk,
        request: write.request,
        sector,
        sectors: write.sectors.len() as u64,
        persisted_sectors: persisted_sectors as u64,
        place: point.place(element.disk, sector, write.sectors.len() as u64),
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::ddmin;

    #[test]
    fn ddmin_finds_a_one_minimal_failing_subset() {
        // Fails while it holds 3 and 7, or 5 alone.
        let fails = |s: &[u32]| (s.contains(&3) && s.contains(&7)) || s.contains(&5);
        let (kept, truncated) = ddmin((0..10).collect(), |s| fails(s), || false);
        assert!(!truncated);
        assert!(fails(&kept));
        for i in 0..kept.len() {
            let mut fewer = kept.clone();
            fewer.remove(i);
            assert!(!fails(&fewer), "{kept:?} is not one-minimal");
        }
        let (kept, _) = ddmin(vec![1, 2], |s| s.contains(&2), || false);
        assert_eq!(kept, vec![2]);
    }
}
