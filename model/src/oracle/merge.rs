//! Merging: a merge's start and end as the model records them, for I10 and
//! the merge rules of the checks elsewhere.

use super::Oracle;

impl Oracle {
    /// Snapshot `snapshot` was handed to snapshot-merge and its merge
    /// started (again, after a crash): from now on I10 judges the origin,
    /// and its view's values count as origin data (for K2 and I13). Checks
    /// nothing itself.
    pub(super) fn on_merge_start(&mut self, snapshot: usize) {
        if self.merging.is_none() {
            self.merging = Some((snapshot, false));
            self.claim_merge(snapshot);
        }
        // The merge copies the snapshot's data onto the origin.
        let epoch = self.epoch;
        for &value in &self.snapshots[snapshot].ever_written {
            self.origin_values.entry(value).or_insert(epoch);
        }
        debug_assert!(self.origin_values.values().all(|&written| written <= self.epoch), "no origin value dates from a later epoch");
    }

    /// The merge of `snapshot` ended: complete (`ok`: every chunk now holds
    /// its view, I10) or stopped on an error (its status says `Merge failed`
    /// until a reload, I14). Checks nothing itself.
    pub(super) fn on_merge_done(&mut self, snapshot: usize, ok: bool) {
        if ok {
            self.merging = Some((snapshot, true));
        } else {
            self.snapshots[snapshot].merge_failed = true;
        }
    }
}
