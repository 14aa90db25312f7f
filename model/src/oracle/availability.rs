//! Availability (I15): every failed user request, and every snapshot that
//! goes invalid or reports Overflow, has a cause the model can name.
//!
//! The kernel fails a user request only for a reason: an I/O error of a
//! device the request (or the copy it needed) touched, its snapshot
//! invalid, a `PO` snapshot out of room for a write that needed a new
//! chunk. And a snapshot goes invalid only on an I/O error of a copy or a
//! metadata write, or when its COW has no free chunk left (`P` on any
//! write that needs one, `PO` on an origin write). An engine that fails I/O
//! for no reason, or refuses reads of a snapshot that is still valid,
//! loses nothing a crash check would see: only this invariant catches it.
//!
//! The model knows a COW is possibly full by counting the chunks that
//! needed an exception: every chunk of the snapshot a write covered since
//! the snapshot was taken (origin writes, its own writes, and what a merge
//! of another snapshot copies onto the origin). That count only grows, so
//! it may call a COW full that is not (a crash lost records, a merge
//! freed some); it never calls a full one free.

use super::{Oracle, Pending};
use crate::event::{DiskOp, Target};
use crate::invariant::{Invariant, Violation};

impl Oracle {
    /// Snapshot `k`'s COW holds this many data chunks: those the allocator
    /// can hand out before the next one would end past the COW's last
    /// whole chunk (the kernel's `-ENOSPC`).
    pub(super) fn data_capacity(&self, k: usize) -> u64 {
        let geometry = self.geometry(k);
        let cow_chunks = self.config.snapshots[k].cow_sectors / u64::from(geometry.chunk_sectors);
        // nth_data_chunk grows with n: the first n past the end is the capacity.
        let (mut low, mut high) = (0u64, cow_chunks);
        while low < high {
            let mid = low + (high - low) / 2;
            if geometry.nth_data_chunk(mid) < cow_chunks { low = mid + 1 } else { high = mid }
        }
        debug_assert!(low == 0 || geometry.nth_data_chunk(low - 1) < cow_chunks, "the last data chunk counted fits");
        debug_assert!(geometry.nth_data_chunk(low) >= cow_chunks, "the first data chunk not counted does not fit");
        low
    }

    /// Whether snapshot `k`'s COW may have run out of free chunks.
    pub(super) fn may_be_full(&self, k: usize) -> bool {
        self.snapshots[k].claimed.len() as u64 > self.data_capacity(k)
    }

    /// A write of `sectors` sectors at `sector` to `target` was submitted:
    /// the chunks it covers need exceptions in every snapshot it reaches
    /// (all but the merging one for origin writes; the snapshot itself for
    /// its own writes).
    pub(super) fn claim(&mut self, target: Target, sector: u64, sectors: u64, lands_on_origin: bool) {
        let merging = self.merging.map(|(m, _)| m);
        for k in 0..self.snapshots.len() {
            let reached = if lands_on_origin { merging != Some(k) } else { target == Target::Snapshot(k) };
            if reached {
                self.claim_sectors(k, sector, sectors);
            }
        }
    }

    /// A merge of `m` started: it copies each of `m`'s chunks onto the
    /// origin, and every other snapshot must preserve what it overwrites.
    pub(super) fn claim_merge(&mut self, m: usize) {
        let chunk_m = u64::from(self.config.snapshots[m].chunk_sectors);
        let merged: Vec<u64> = self.snapshots[m].claimed.iter().copied().collect();
        for k in (0..self.snapshots.len()).filter(|&k| k != m) {
            merged.iter().for_each(|&c| self.claim_sectors(k, c * chunk_m, chunk_m));
        }
    }

    /// Snapshot `k`'s chunks that sectors `sector..sector + sectors` cover need exceptions.
    fn claim_sectors(&mut self, k: usize, sector: u64, sectors: u64) {
        debug_assert!(sectors > 0, "a write covers at least one sector");
        let chunk = u64::from(self.config.snapshots[k].chunk_sectors);
        self.snapshots[k].claimed.extend(sector / chunk..=(sector + sectors - 1) / chunk);
    }

    /// A disk request failed: an injected fault is a cause, but a request
    /// past the device's end is the engine's own error (a copy of a whole
    /// last chunk on an origin that ends mid-chunk, say) — except the
    /// kernel's own (K4): when an area fills, the next area is zeroed
    /// wherever it lies, and on a COW that ends where that area would
    /// begin the zeroing runs past the end, fails, and invalidates.
    pub(super) fn check_disk_request_in_range(&self, disk: usize, op: DiskOp, sector: u64, sectors: u64) -> Result<(), Violation> {
        let (size, device) = match disk {
            0 => (self.config.initial.len() as u64, "the origin".to_string()),
            cow => (self.config.snapshots[cow - 1].cow_sectors, format!("snapshot {}'s COW", cow - 1)),
        };
        if sector.checked_add(sectors).is_some_and(|end| end <= size) {
            return Ok(());
        }
        if disk > 0 && matches!(op, DiskOp::Write { .. }) {
            let geometry = self.geometry(disk - 1);
            let chunk = u64::from(geometry.chunk_sectors);
            if sector % chunk == 0 && sectors == chunk && geometry.is_metadata(sector / chunk) {
                return Ok(());
            }
        }
        let message = format!(
            "the engine asked {device} for sectors {sector}..{} past its end ({size} sectors): no user request may fail for that",
            sector.saturating_add(sectors)
        );
        Err(Violation::new(Invariant::I15Availability, message))
    }

    /// Why snapshot `k` may be invalid now, if it may: loaded invalid, an
    /// I/O error seen on its COW or the origin, or its COW possibly full —
    /// for a `PO` snapshot only once an origin write may have needed a
    /// chunk (a full `PO` store refuses snapshot writes and stays valid:
    /// its reads must go on returning its data).
    fn invalid_cause(&self, k: usize) -> Option<&'static str> {
        let state = &self.snapshots[k];
        let full_invalidates = !self.config.snapshots[k].overflow_store || state.origin_written;
        if !state.valid_at_load {
            Some("it loaded invalid")
        } else if state.io_error_seen || self.origin_error_seen {
            Some("an I/O error of its COW or the origin")
        } else if full_invalidates && self.may_be_full(k) {
            Some("its COW may be full")
        } else {
            None
        }
    }

    /// I15: snapshot `k` reported invalid (or Overflow) for a cause.
    pub(super) fn check_state_cause(&self, k: usize, valid: bool, overflowed: bool) -> Result<(), Violation> {
        if !valid && self.invalid_cause(k).is_none() {
            let message = format!(
                "snapshot {k} went invalid with no cause: no I/O error on its COW or the origin, and its COW has room ({} of {} data chunks ever needed)",
                self.snapshots[k].claimed.len(),
                self.data_capacity(k)
            );
            return Err(Violation::new(Invariant::I15Availability, message));
        }
        if valid && overflowed && !self.may_be_full(k) {
            let message = format!(
                "snapshot {k} reports Overflow with room in its COW ({} of {} data chunks ever needed)",
                self.snapshots[k].claimed.len(),
                self.data_capacity(k)
            );
            return Err(Violation::new(Invariant::I15Availability, message));
        }
        Ok(())
    }

    /// A write to a `PO` snapshot failed with no I/O error seen: it was
    /// refused for room, and the snapshot must say Overflow from now on.
    pub(super) fn note_refused_for_room(&mut self, pending: &Pending) {
        let Pending::Write { target: Target::Snapshot(k), .. } = *pending else { return };
        let merging = self.merging.is_some_and(|(m, _)| m == k);
        let state = &self.snapshots[k];
        if self.config.snapshots[k].overflow_store && !merging && state.valid_at_load && !state.io_error_seen && !self.origin_error_seen {
            debug_assert!(self.may_be_full(k), "a write refused for room on a COW with room passed I15");
            self.snapshots[k].must_overflow = true;
        }
    }

    /// I15: a user request `pending` failed; it must have a cause.
    pub(super) fn check_failure_cause(&self, op: u64, pending: &Pending) -> Result<(), Violation> {
        let is_write = matches!(pending, Pending::Write { .. });
        let (target, what) = match pending {
            Pending::Write { target, sector, values, .. } => (*target, format!("write {target} {sector}+{}", values.len())),
            Pending::Flush { target, .. } => (*target, format!("flush {target}")),
            Pending::Read { snapshot, sector, legal } => (Target::Snapshot(*snapshot), format!("read snapshot {snapshot} {sector}+{}", legal.len())),
        };
        let merging = self.merging.is_some_and(|(m, _)| target == Target::Snapshot(m));
        let explained = match target {
            Target::Origin => self.origin_error_seen,
            // The merging snapshot's requests go to the merge target, over the origin.
            Target::Snapshot(k) if merging => self.origin_error_seen || self.invalid_cause(k).is_some(),
            // A full PO store refuses a write that needs a new chunk (Overflow).
            Target::Snapshot(k) => self.invalid_cause(k).is_some() || (is_write && self.may_be_full(k)),
        };
        if explained {
            return Ok(());
        }
        let room = if is_write { "" } else { " (a full PO snapshot still serves reads)" };
        let message = format!(
            "op {op} ({what}) failed with no cause: no I/O error on a device it or its copy touched, its snapshot valid, and no COW full{room}"
        );
        Err(Violation::new(Invariant::I15Availability, message))
    }
}
