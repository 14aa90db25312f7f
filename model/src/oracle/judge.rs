//! Judging what is read back against the model: values of the snapshots'
//! views and of the origin (I1, I2, I3, I10, I13; K2), and COW images (I4, I5).

use super::Oracle;
use crate::cow::{self, CowState, SectorSource};
use crate::invariant::{Invariant, Violation};

impl Oracle {
    /// Checks one sector of snapshot `k`'s view. `raced` says the read was in
    /// flight when the snapshot was invalidated; `settled` that nothing was
    /// in flight (a read-back at quiescence, or a crash image).
    pub fn check_view_sector(&mut self, k: usize, sector: u64, value: u64, raced: bool, settled: bool) -> Result<(), Violation> {
        if self.snapshots[k].view.live_holds(&self.config.initial, sector, value) {
            return Ok(());
        }
        self.judge_view_sector(k, sector, value, raced, settled)
    }

    /// Names what is wrong with `value`, a value snapshot `k`'s view cannot
    /// hold now (unless a kernel behaviour the oracle allows explains it).
    pub(super) fn judge_view_sector(&mut self, k: usize, sector: u64, value: u64, raced: bool, settled: bool) -> Result<(), Violation> {
        if self.snapshots[k].revived {
            return Ok(());
        }
        // An invalid snapshot handed to snapshot-merge serves the origin:
        // the kernel's merge target redirects all its I/O there.
        let merging_k = self.merging.is_some_and(|(m, _)| m == k);
        if raced && merging_k && self.origin.live_holds(&self.config.initial, sector, value) {
            return Ok(());
        }
        let origin_epoch = self.origin_values.get(&value).copied();
        if raced && origin_epoch.is_some() {
            if self.config.strict {
                let message = format!(
                    "a read of snapshot {k} in flight when it was invalidated returned origin data at sector {sector} (kernel behaviour K2: a failed exception releases origin writes without waiting for tracked reads)"
                );
                return Err(Violation::new(Invariant::I13ConflictingReads, message));
            }
            self.allowances.raced_invalidation += 1;
            return Ok(());
        }
        let allowed = self.snapshots[k].view.live_values(&self.config.initial, sector);
        let allowed: Vec<String> = allowed.into_iter().map(|v| self.name(v)).collect();
        let (invariant, what) = match origin_epoch {
            _ if self.merging.is_some() => (Invariant::I10Merge, "a value that is not the snapshot's view (during or after a merge)"),
            Some(epoch) if epoch == self.epoch && !settled => {
                (Invariant::I13ConflictingReads, "data written to the origin after the snapshot (a read that raced an origin write)")
            }
            Some(_) => (Invariant::I1AckedOriginWrite, "data written to the origin after the snapshot"),
            None => (Invariant::I2SnapshotView, "a value never legal there"),
        };
        let seen = self.name(value);
        Err(Violation::new(invariant, format!("snapshot {k} sector {sector} holds {seen}, {what}; legal: {}", allowed.join(" "))))
    }

    /// Checks one origin sector read after a reload or at the end (I3; I10
    /// once a merge has started: merged chunks hold the snapshot's view, and
    /// after a complete merge every chunk does).
    pub fn check_origin_sector(&self, sector: u64, value: u64) -> Result<(), Violation> {
        let initial = &self.config.initial;
        if let Some((k, complete)) = self.merging {
            let in_view = self.snapshots[k].view.live_holds(initial, sector, value);
            // A chunk copied but not yet committed (the merge failed or was
            // cut short) is still served from the COW, and the copy on the
            // origin may be of a view value since overwritten there.
            let ever_view = initial.get(sector as usize) == Some(&value) || self.snapshots[k].ever_written.contains(&value);
            let copied_early = !complete && ever_view;
            // A snapshot revived by K1 lost the exceptions of the copies that
            // failed before the crash, and may even be a new snapshot of a
            // later origin (if its header never became durable): its view is
            // unknown, and its merge may leave any data the sector ever held.
            let revived_any = self.snapshots[k].revived && (ever_view || self.origin_values.contains_key(&value));
            if in_view || copied_early || revived_any || (!complete && self.origin.live_holds(initial, sector, value)) {
                return Ok(());
            }
            let allowed: Vec<String> = self.snapshots[k].view.live_values(initial, sector).into_iter().map(|v| self.name(v)).collect();
            let state = if complete { "after a complete merge" } else { "during a merge" };
            let message = format!("origin sector {sector} holds {} {state} of snapshot {k}; its view: {}", self.name(value), allowed.join(" "));
            return Err(Violation::new(Invariant::I10Merge, message));
        }
        if self.origin.live_holds(initial, sector, value) {
            return Ok(());
        }
        let allowed: Vec<String> = self.origin.live_values(&self.config.initial, sector).into_iter().map(|v| self.name(v)).collect();
        let message =
            format!("origin sector {sector} holds {}; legal after the writes and flushes acknowledged: {}", self.name(value), allowed.join(" "));
        Err(Violation::new(Invariant::I3FlushedWrites, message))
    }

    /// Reads snapshot `k`'s COW image and checks it (I4, I5).
    pub fn check_cow(&self, k: usize, cow: &(impl SectorSource + ?Sized)) -> Result<CowState, Violation> {
        let geometry = self.geometry(k);
        let state = cow::decode(cow, geometry)?;
        cow::check_allocation_order(state.records(), geometry)?;
        // I4's "every chunk inside its device": an origin chunk too (the
        // last may end past the origin's end, and is a chunk all the same).
        let origin_chunks = (self.config.initial.len() as u64).div_ceil(u64::from(geometry.chunk_sectors));
        if let Some(&(old, new)) = state.records().iter().find(|(old, _)| *old >= origin_chunks) {
            let message =
                format!("snapshot {k}'s COW records origin chunk {old} (at COW chunk {new}), past the origin's end ({origin_chunks} chunks)");
            return Err(Violation::new(Invariant::I4MetadataWellFormed, message));
        }
        Ok(state)
    }
}
