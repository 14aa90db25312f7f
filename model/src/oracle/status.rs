//! Reported state: the I/O errors the model has seen, and the snapshot
//! state the engine reports judged against them (I8, I9, I12, I14).

use super::{Oracle, Pending};
use crate::cow::{self, CowState, SectorSource};
use crate::event::{DiskOp, Target};
use crate::invariant::{Invariant, Violation};

/// Where a merging snapshot's allocator stands at an area boundary (`n`
/// records, a non-zero multiple of the records per area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    /// In the area after the last record (every snapshot not being merged).
    Current,
    /// Stepped back to the last record's area (a merge between steps).
    SteppedBack,
    /// Either (a merge step that may still be reading the previous area).
    Either,
}

impl Oracle {
    /// A disk request failed: an origin read error or any COW error may
    /// invalidate the snapshots concerned, and a failed COW copy or metadata
    /// write must (what I8 and I9 judge reported state by). Checks nothing.
    pub(super) fn on_disk_error(&mut self, disk: usize, op: DiskOp, sector: u64) {
        match (disk, op) {
            (0, DiskOp::Read) => {
                self.origin_error_seen = true;
                self.snapshots.iter_mut().for_each(|s| s.io_error_seen = true);
            }
            (0, _) => self.origin_error_seen = true,
            (cow, DiskOp::Write { .. }) => {
                // A failed copy or metadata write must invalidate; a failed
                // snapshot write remapped to the COW only fails that write.
                // A data-chunk write is a user's only if one is in flight.
                // The merging snapshot's only COW writes are merge commits,
                // and a failed one shuts the merge down ("Merge failed")
                // with the snapshot left valid, as the kernel does.
                let k = cow - 1;
                let metadata = self.geometry(k).is_metadata(sector / u64::from(self.config.snapshots[k].chunk_sectors));
                let user_write = self.pending.values().any(|p| matches!(p, Pending::Write { target: Target::Snapshot(j), .. } if *j == k));
                let merging = self.merging.is_some_and(|(m, _)| m == k);
                let state = &mut self.snapshots[k];
                state.io_error_seen = true;
                state.must_invalidate |= !merging && (metadata || !user_write);
                // A failed write of the header chunk may have been the
                // valid=0 header itself (whether or not the oracle has
                // seen the snapshot report invalid yet).
                state.header_write_failed |= sector == 0;
            }
            (cow, DiskOp::Read | DiskOp::Flush) => self.snapshots[cow - 1].io_error_seen = true,
        }
        debug_assert!(self.snapshots.iter().all(|s| !s.header_write_failed || s.io_error_seen), "a failed header write is an I/O error seen");
    }

    /// The engine reported snapshot `snapshot`'s state: its validity and
    /// Overflow must follow the errors seen and stay until a reload (I8, I9),
    /// and its copies in progress must have stayed under the threshold (I12).
    pub(super) fn on_status(&mut self, snapshot: usize, valid: bool, overflowed: bool, quiescent: bool, copies_max: u32) -> Result<(), Violation> {
        self.check_status(snapshot, valid, overflowed, quiescent)?;
        self.check_state_cause(snapshot, valid, overflowed)?;
        self.check_bounds(snapshot, copies_max)
    }

    /// I8, I9: a reported state follows the errors seen and what was reported before.
    fn check_status(&mut self, snapshot: usize, valid: bool, overflowed: bool, quiescent: bool) -> Result<(), Violation> {
        let spec = self.config.snapshots[snapshot];
        let state = &mut self.snapshots[snapshot];
        if !valid && !state.ever_invalid {
            state.ever_invalid = true;
            state.invalid_header_may_be_lost = false;
        }
        // Invalid and Overflow are sticky until a reload, through a
        // handover to snapshot-merge too (the kernel's __handover_exceptions
        // copies both flags to the merge target).
        if valid && state.invalid_since_load {
            let message = format!("snapshot {snapshot} reported invalid, then valid again without a reload");
            return Err(Violation::new(Invariant::I8Invalidation, message));
        }
        if valid && !overflowed && state.must_overflow {
            let message = format!("a write to snapshot {snapshot} (store PO) was refused for room, yet it does not report Overflow");
            return Err(Violation::new(Invariant::I9Overflow, message));
        }
        if valid && !overflowed && state.overflowed_since_load {
            let message = format!("snapshot {snapshot} reported Overflow, then lost it without a reload");
            return Err(Violation::new(Invariant::I9Overflow, message));
        }
        state.invalid_since_load |= !valid;
        state.overflowed_since_load |= overflowed;
        debug_assert!(!state.invalid_since_load || state.ever_invalid, "a snapshot reported invalid since its load was ever invalid");
        // Exceptions fail in allocation order, so a failed copy invalidates
        // only once every earlier exception is done: judge at quiescence.
        if valid && state.must_invalidate && quiescent {
            let message = format!("a write to snapshot {snapshot}'s COW failed, yet the snapshot still reports valid");
            return Err(Violation::new(Invariant::I8Invalidation, message));
        }
        if overflowed && !spec.overflow_store {
            return Err(Violation::new(Invariant::I9Overflow, format!("snapshot {snapshot} (store P) reports Overflow; only PO overflows")));
        }
        if !valid && state.valid_at_load && spec.overflow_store && !state.io_error_seen && !state.origin_written {
            let message = format!(
                "snapshot {snapshot} (store PO) went invalid with no I/O error and no origin write: a full PO store must fail the snapshot write and stay valid"
            );
            return Err(Violation::new(Invariant::I9Overflow, message));
        }
        Ok(())
    }

    /// I12: the COW throttle held — no snapshot ever had more exceptions in
    /// progress than `cow_threshold`, so memory per origin write is bounded.
    fn check_bounds(&self, snapshot: usize, copies_max: u32) -> Result<(), Violation> {
        let threshold = self.config.cow_threshold;
        // A merge makes the other snapshots preserve each run it is about
        // to overwrite without passing their throttles (the kernel's
        // origin_write_extent), one copy per chunk of the run; a run never
        // spans more than one metadata area of the merging snapshot.
        let merge_copies = match self.merging {
            Some((m, _)) if m != snapshot => self.geometry(m).records_per_area() as u32,
            _ => 0,
        };
        if threshold > 0 && copies_max > threshold + merge_copies {
            let message = format!(
                "snapshot {snapshot} had {copies_max} exceptions in progress at once; the COW threshold is {threshold} (plus {merge_copies} a merge may start)"
            );
            return Err(Violation::new(Invariant::I12Bounds, message));
        }
        Ok(())
    }

    /// I14: snapshot `k`'s status line, taken at quiescence, is the kernel's
    /// `snapshot_status` for what its COW says: `Invalid`, `Overflow`, or
    /// `allocated/total metadata` in sectors, where after `n` records
    /// `allocated` is the next free chunk (the `n`-th data chunk),
    /// `total` the COW's size and `metadata` the header plus areas
    /// `0..=n / records_per_area`. A snapshot being merged says `Merge
    /// failed` once its merge stopped on an error; while its merge runs, the
    /// kernel's `persistent_prepare_merge` steps back to the previous area
    /// as soon as the current one is emptied, so with `n` a non-zero
    /// multiple of the records per area its metadata is one chunk less.
    pub fn check_status_line(
        &self,
        k: usize,
        valid: bool,
        overflowed: bool,
        line: &str,
        cow: &(impl SectorSource + ?Sized),
    ) -> Result<(), Violation> {
        let merging = self.merging.is_some_and(|(m, complete)| m == k && !complete);
        self.judge_status_line(k, valid, overflowed, line, cow, if merging { Boundary::SteppedBack } else { Boundary::Current })
    }

    /// I14 for the merging snapshot right after a merge step: as
    /// [`Oracle::check_status_line`], but at an area boundary the step back
    /// to the previous area may not have happened yet (it reads that area).
    pub fn check_merge_step_status_line(
        &self,
        k: usize,
        valid: bool,
        overflowed: bool,
        line: &str,
        cow: &(impl SectorSource + ?Sized),
    ) -> Result<(), Violation> {
        self.judge_status_line(k, valid, overflowed, line, cow, Boundary::Either)
    }

    fn judge_status_line(
        &self,
        k: usize,
        valid: bool,
        overflowed: bool,
        line: &str,
        cow: &(impl SectorSource + ?Sized),
        boundary: Boundary,
    ) -> Result<(), Violation> {
        let expected = if !valid {
            "Invalid".to_string()
        } else if self.snapshots[k].merge_failed {
            "Merge failed".to_string()
        } else if overflowed {
            "Overflow".to_string()
        } else {
            let geometry = self.geometry(k);
            let n = match cow::decode(cow, geometry)? {
                CowState::Valid(records) => records.len() as u64,
                CowState::Fresh => 0,
                CowState::Invalid => {
                    let message = format!("snapshot {k} reports valid (`{line}`) but its COW header says invalid");
                    return Err(Violation::new(Invariant::I14Status, message));
                }
            };
            let chunk = u64::from(geometry.chunk_sectors);
            let allocated = geometry.nth_data_chunk(n) * chunk;
            let per_area = geometry.records_per_area();
            let at_boundary = n > 0 && n % per_area == 0;
            let metadata = |stepped_back: bool| (n / per_area + if stepped_back { 1 } else { 2 }) * chunk;
            let line_of = |stepped_back: bool| format!("{allocated}/{} {}", cow.sector_count(), metadata(stepped_back));
            match boundary {
                Boundary::Either if at_boundary && line == line_of(false) => line_of(false),
                Boundary::Either | Boundary::SteppedBack => line_of(at_boundary),
                Boundary::Current => line_of(false),
            }
        };
        if line != expected {
            let message = format!("snapshot {k}'s status line is `{line}`; the kernel's formula gives `{expected}`");
            return Err(Violation::new(Invariant::I14Status, message));
        }
        Ok(())
    }
}
