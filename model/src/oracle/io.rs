//! User writes, reads and flushes: how they change the model's volumes, and
//! the live reads judged against them (I1, I2, I10, I13).

use std::sync::Arc;

use super::{Oracle, Pending};
use crate::event::{Target, UserFlags};
use crate::invariant::Violation;

impl Oracle {
    /// A user write submitted: each sector it covers may now hold its value
    /// (not yet for certain), and reads in flight on the same view may return
    /// it. Checks no invariant; the values it adds are what I1–I3 judge by.
    pub(super) fn on_write(&mut self, op: u64, target: Target, sector: u64, values: &Arc<[u64]>, flags: UserFlags) {
        let initial = Arc::clone(&self.config.initial);
        debug_assert!(!self.pending.contains_key(&op), "operation {op} submitted twice");
        self.seq += 1;
        let submitted = self.seq;
        debug_assert!(self.pending_numbered_before(submitted), "a submission is numbered after everything pending");
        // Writes to the snapshot being merged land on the origin
        // (the merge target stands in for the origin device).
        let lands_on_origin = target == Target::Origin || self.merging.is_some_and(|(m, _)| target == Target::Snapshot(m));
        for (j, &value) in values.iter().enumerate() {
            let at = sector + j as u64;
            self.volume(target).sector(&initial, at).write(op, value, submitted);
            if lands_on_origin {
                self.origin_values.entry(value).or_insert(self.epoch);
            }
            if let Target::Snapshot(k) = target {
                self.snapshots[k].ever_written.insert(value);
            }
        }
        if lands_on_origin {
            self.snapshots.iter_mut().for_each(|s| s.origin_written = true);
        }
        self.claim(target, sector, values.len() as u64, lands_on_origin);
        let written = sector..sector + values.len() as u64;
        for pending in self.pending.values_mut() {
            if let Pending::Read { snapshot, sector: start, legal } = pending {
                if Target::Snapshot(*snapshot) == target {
                    for (j, legal) in legal.iter_mut().enumerate() {
                        let at = *start + j as u64;
                        if written.contains(&at) {
                            legal.push(values[(at - sector) as usize]);
                        }
                    }
                }
            }
        }
        self.pending.insert(op, Pending::Write { target, sector, values: Arc::clone(values), flags, submitted });
    }

    /// A user read submitted: a snapshot read may return any value its view
    /// could hold while it is in flight, starting with those it may hold now
    /// (judged when it completes). Origin reads are not judged live.
    pub(super) fn on_read(&mut self, op: u64, target: Target, sector: u64, sectors: u64) {
        if let Target::Snapshot(snapshot) = target {
            let view = &self.snapshots[snapshot].view;
            let legal: Vec<Vec<u64>> = (sector..sector + sectors).map(|at| view.live_values(&self.config.initial, at)).collect();
            debug_assert!(legal.iter().all(|l| !l.is_empty()), "every sector of a view may hold some value");
            self.pending.insert(op, Pending::Read { snapshot, sector, legal });
        }
    }

    /// A user flush submitted: once acknowledged, it makes durable every
    /// write to its target acknowledged before now (I3's flushed writes).
    pub(super) fn on_flush(&mut self, op: u64, target: Target) {
        self.seq += 1;
        debug_assert!(self.pending_numbered_before(self.seq), "a flush is numbered after everything pending");
        self.pending.insert(op, Pending::Flush { target, covers: self.seq });
    }

    /// A write or flush completed: a failed one must have a cause (I15) and
    /// is forgotten (its values stay possible), a successful one is
    /// acknowledged at the next sequence number.
    pub(super) fn on_ack(&mut self, op: u64, ok: bool) -> Result<(), Violation> {
        let pending = self.pending.remove(&op);
        if !ok {
            let Some(pending) = pending else { return Ok(()) };
            self.check_failure_cause(op, &pending)?;
            self.note_refused_for_room(&pending);
            return Ok(());
        }
        self.seq += 1;
        match pending {
            Some(Pending::Write { target, sector, values, flags, submitted }) => self.on_write_acked(op, target, sector, &values, flags, submitted),
            Some(Pending::Flush { target, covers }) => self.on_flush_acked(target, covers),
            Some(Pending::Read { .. }) | None => {}
        }
        Ok(())
    }

    /// A user write acknowledged (at the current sequence number): its values hide older ones from
    /// live reads; with PREFLUSH what was acknowledged before it was
    /// submitted is durable, with FUA its own data is (I1, I3 judge by this).
    fn on_write_acked(&mut self, op: u64, target: Target, sector: u64, values: &[u64], flags: UserFlags, submitted: u64) {
        let ack = self.seq;
        debug_assert!(submitted < ack, "write {op} acknowledged at {ack}, before its submission at {submitted}");
        let initial = Arc::clone(&self.config.initial);
        // PREFLUSH: what was acknowledged before the write was
        // submitted is durable, as after a flush submitted then.
        if flags.preflush {
            self.volume(target).flushed(submitted - 1);
        }
        for j in 0..values.len() as u64 {
            let versions = self.volume(target).sector(&initial, sector + j);
            versions.acked(op, ack);
            // FUA: this write's own data is durable now.
            if flags.fua {
                versions.fua_acked(values[j as usize]);
            }
        }
    }

    /// A user flush acknowledged (at the current sequence number): every write to its target
    /// acknowledged before it was submitted is durable (I3 judges by this).
    fn on_flush_acked(&mut self, target: Target, covers: u64) {
        debug_assert!(covers < self.seq, "a flush is acknowledged after its submission");
        self.volume(target).flushed(covers);
    }

    /// A user read completed: each value a snapshot read returned must be one
    /// its view could hold while the read was in flight (I2; I13 for origin
    /// data, I1 after a crash, I10 during a merge; K2 if it raced its
    /// snapshot's invalidation). A failed read, and a snapshot found
    /// invalid, must have a cause (I15).
    pub(super) fn on_read_done(&mut self, op: u64, values: Option<&[u64]>, snapshot_valid: bool) -> Result<(), Violation> {
        let pending = self.pending.remove(&op);
        if let Some(pending @ Pending::Read { snapshot, .. }) = &pending {
            if !snapshot_valid {
                self.check_state_cause(*snapshot, false, false)?;
            }
            if values.is_none() {
                self.check_failure_cause(op, pending)?;
            }
        }
        if let (Some(Pending::Read { snapshot, sector, legal }), Some(values)) = (pending, values) {
            debug_assert!(legal.iter().all(|l| !l.is_empty()), "a read's legal values only grow while it is in flight");
            for (j, &value) in values.iter().enumerate() {
                if !legal.get(j).is_some_and(|l| l.contains(&value)) {
                    self.judge_view_sector(snapshot, sector + j as u64, value, !snapshot_valid, false)?;
                }
            }
        }
        Ok(())
    }
}
