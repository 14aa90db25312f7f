//! The snapshots' reported state, and their status lines judged against their COWs (I14), at quiescence and after each merge step.

use engine::targets::SnapshotDevice;
use model::Event;

use super::World;
use crate::disk::SimDisk;
use crate::world::observer::lock;

impl World {
    /// After every step: when a snapshot's reported state changed (an
    /// overflow, an invalidation, a handover to snapshot-merge), every
    /// snapshot's state is reported at once, so that the oracle judges it
    /// before a later event can hide it.
    pub(super) fn report_status_on_change(&mut self) {
        // Runs after every step: compared in place, nothing allocated.
        let changed = self.engine.snapshots.len() != self.last_reported.len()
            || self.engine.snapshots.iter().zip(&self.last_reported).any(|(d, &last)| Self::reported_state(d) != last);
        if changed && !self.failed() {
            self.report_status();
        }
    }

    /// A snapshot's (valid, Overflow) as the engine has them now.
    fn reported_state(device: &SnapshotDevice<SimDisk>) -> (bool, bool) {
        let snapshot = device.snapshot();
        (snapshot.is_valid(), snapshot.is_overflowed())
    }

    /// Reports every snapshot's state; at quiescence also checks its
    /// status line against its COW (I14).
    pub(super) fn report_status(&mut self) {
        self.last_reported = self.engine.snapshots.iter().map(|d| Self::reported_state(d)).collect();
        let quiescent = !self.busy() && lock(&self.shared).counters.in_flight == 0;
        for event in self.statuses(quiescent) {
            let Event::Status { snapshot: k, valid, overflowed, .. } = event else { unreachable!("statuses yields status events") };
            self.emit(event);
            if quiescent && !self.failed() {
                let line = self.engine.snapshots[k].snapshot().status();
                let checked =
                    self.engine.disks[k + 1].with_cached(|cow| lock(&self.shared).oracle.check_status_line(k, valid, overflowed, &line, cow));
                if let Err(violation) = checked {
                    return lock(&self.shared).fail(violation);
                }
            }
        }
    }

    /// Each snapshot's reported state, as events.
    pub(super) fn statuses(&self, quiescent: bool) -> impl Iterator<Item = Event> + '_ {
        self.engine.snapshots.iter().enumerate().map(move |(snapshot, device)| {
            let s = device.snapshot();
            Event::Status { snapshot, valid: s.is_valid(), overflowed: s.is_overflowed(), quiescent, copies_max: s.copies_in_flight().1 as u32 }
        })
    }

    /// After every merge step (a run merged and its records cleared), the
    /// merging snapshot's status line must be the kernel's for what its COW
    /// holds, as at quiescence, but with the previous area's read possibly
    /// still in flight (either metadata size at an area boundary).
    pub(super) fn judge_merge_step(&mut self) {
        let Some((k, _)) = &self.merging else { return };
        let k = *k;
        let Some(device) = self.engine.snapshots.get(k) else { return };
        let snapshot = device.snapshot();
        let runs = snapshot.runs_merged();
        if runs == self.merge_runs_judged || self.failed() {
            return;
        }
        self.merge_runs_judged = runs;
        let (valid, overflowed, line) = (snapshot.is_valid(), snapshot.is_overflowed(), snapshot.status());
        let checked =
            self.engine.disks[k + 1].with_cached(|cow| lock(&self.shared).oracle.check_merge_step_status_line(k, valid, overflowed, &line, cow));
        if let Err(violation) = checked {
            lock(&self.shared).fail(violation);
        }
    }
}
