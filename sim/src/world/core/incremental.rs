//! Judging crash states incrementally: the final read-back of a crash state reuses that of the last state read back whole, and reads again only the chunks whose resolution or contents differ.
//!
//! # Why it finds what the whole read-back finds
//!
//! A crash state is judged by booting on it, one more exception, a clean
//! reload, and at the end a read of every sector of the origin and of every
//! judged snapshot, each checked by the oracle (`read_back_everything`).
//! When that read-back begins the engine is quiet: nothing in flight, no
//! exception pending, no deferred work. A read of chunk `c` of snapshot `k`
//! then resolves through its table of completed exceptions to COW chunk `e`
//! or, unmapped, to origin chunk `c`, and returns what those sectors hold; a
//! read of the origin returns the origin's sectors (a merge target's through
//! the merging snapshot's table). The oracle's check of a sector read back
//! changes nothing when it passes, and depends only on its obligations
//! (`Oracle::obligations_digest`).
//!
//! So take the reference: the last state read back whole that passed, at
//! this crash point or an earlier one of the same boot of the recorded run.
//! A later state whose oracle has the
//! reference's digest, whose snapshots are read back (valid, judged) and
//! overflowed as the reference's, merging the same snapshot, differs from
//! the reference only
//! - in the sectors that may differ between the two crash images: the
//!   non-durable sectors of both points, and every sector the run wrote
//!   between them (only a completed write changes what is durable);
//! - in the sectors either judge wrote (the probe's copy and commit, the
//!   merge's copies). Every other sector holds the same bytes in both, and
//!   of these, those whose bytes are equal too;
//! - in the table entries that differ between the two reloads.
//!
//! Every other chunk reads the same bytes as in the reference and passes as
//! it passed there. The read-back reads again, in the whole read-back's
//! order (snapshots by index, then the origin, each by ascending sector):
//! each snapshot's chunks whose table entry differs, whose COW chunk changed,
//! or which are unmapped over a changed origin sector; and the origin's
//! changed sectors, with the merging snapshot's chunks. A state that does
//! not fit the reference is read back whole. The first failing sector of
//! the whole read-back is one of these, so both report the same violation;
//! `Bounds::check_incremental` judges every state both ways and records any
//! difference, and a test holds it to none.

use std::collections::BTreeSet;
use std::sync::Arc;

use engine::ExceptionTable;

use super::World;
use super::tables::differing_chunks;
use crate::disk::{Image, SimDisk};
use crate::world::observer::lock;

/// How the read-backs of a run's crash states went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IncrementalStats {
    /// States read back against the reference.
    pub incremental: u64,
    /// States read back whole (the reference, and states that do not fit it).
    pub whole: u64,
    /// Snapshot chunks and origin sectors the incremental read-backs read again.
    pub chunks_read: u64,
    pub origin_sectors_read: u64,
}

impl IncrementalStats {
    /// Both counts together.
    pub fn plus(self, other: Self) -> Self {
        Self {
            incremental: self.incremental + other.incremental,
            whole: self.whole + other.whole,
            chunks_read: self.chunks_read + other.chunks_read,
            origin_sectors_read: self.origin_sectors_read + other.origin_sectors_read,
        }
    }
}

/// What a state's read-back is compared by: everything besides the disks'
/// contents and the tables that decides what a read returns and how it is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Basis {
    obligations: u64,
    /// Per snapshot: read back (valid and judged by the oracle), overflowed.
    snapshots: Vec<(bool, bool)>,
    merging: Option<usize>,
}

/// The last state read back whole that passed, as its read-back began.
#[derive(Debug)]
struct Reference {
    basis: Basis,
    /// Each snapshot's completed exceptions.
    tables: Vec<ExceptionTable>,
    /// Every disk's contents.
    images: Vec<Image>,
    /// Each disk's sectors its judge wrote.
    written: Vec<BTreeSet<u64>>,
}

/// Incremental judging over the crash points of one recorded run: the
/// reference, the last state read back whole that passed, and per disk the
/// sectors a state of the current point may differ from it in besides
/// what the judges write.
#[derive(Debug, Default)]
pub struct Incremental {
    /// Per disk (origin first), the current point's non-durable sectors.
    varying: Vec<BTreeSet<u64>>,
    /// Per disk, the reference's point's non-durable sectors and every
    /// sector written since that point: where the durable images of the two
    /// points, or the reference's crash image, may differ.
    since_reference: Vec<BTreeSet<u64>>,
    /// The boot of the recorded run the reference's point was in.
    epoch: u64,
    reference: Option<Reference>,
    /// Per disk, the sectors outside the current point's non-durable ones
    /// that differ from the reference's, or that the judge that found them
    /// wrote: the same for every state of the point against this reference
    /// (each state's own judge's writes are compared state by state).
    settled: Option<Vec<BTreeSet<u64>>>,
    pub stats: IncrementalStats,
}

impl Incremental {
    /// For a recorded run, before its first crash point.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves to the next crash point of the run (`point`, its disks
    /// `disks`), the run having written `written` (per disk) since the last
    /// one. A reference from before a reboot of the run is dropped: the
    /// reboot replaced every disk by a crash image of it.
    pub fn at_point(&mut self, disks: &[Arc<SimDisk>], written: &[(usize, u64, u64)], point: &super::CrashPoint) {
        // After a reboot of the run, and when so much was written since the
        // reference that comparing it would cost more than a whole read-back,
        // the next state read back whole is the reference.
        let since: usize = self.since_reference.iter().map(BTreeSet::len).sum();
        if point.epoch() != self.epoch || since > SINCE_REFERENCE_MAX {
            self.reference = None;
            self.epoch = point.epoch();
        }
        self.settled = None;
        self.varying = disks.iter().map(|disk| disk.non_durable_sectors().into_keys().collect()).collect();
        self.since_reference.resize(disks.len(), BTreeSet::new());
        add_sectors(&mut self.since_reference, written);
        debug_assert_eq!(self.varying.len(), self.since_reference.len(), "one set per disk");
    }
}

/// Sectors written since the reference's point (over all disks) past which
/// the next state read back whole replaces it.
const SINCE_REFERENCE_MAX: usize = 4096;

/// What a quiet engine's reads need read again against the reference.
struct Rereads {
    /// Per snapshot, the chunks to read again.
    chunks: Vec<BTreeSet<u64>>,
    origin_sectors: BTreeSet<u64>,
}

impl World {
    /// Tells the world to keep a log of its completed writes from now on.
    pub(crate) fn note_writes(&mut self) {
        self.written = Some(Vec::new());
    }

    /// The writes completed since entry `from` of the log [`World::note_writes`] keeps.
    pub(crate) fn writes_since(&self, from: usize) -> &[(usize, u64, u64)] {
        self.written.as_deref().map_or(&[], |log| &log[from.min(log.len())..])
    }

    /// Per disk, the sectors the logged writes wrote.
    fn written_sectors(&self) -> Vec<BTreeSet<u64>> {
        let mut sectors = vec![BTreeSet::new(); self.engine.disks.len()];
        add_sectors(&mut sectors, self.writes_since(0));
        sectors
    }

    /// The final read-back of a crash state's judge: against the reference
    /// where the state fits it, whole otherwise; a state read back whole that
    /// passes becomes the reference.
    pub(super) fn read_back_against(&mut self, plan: &mut Incremental) {
        let basis = self.basis();
        let tables: Vec<ExceptionTable> = self.engine.snapshots.iter().map(|device| device.snapshot().completed_table()).collect();
        let written = self.written_sectors();
        if let Some(reference) = plan.reference.as_ref().filter(|reference| reference.basis == basis) {
            let settled = plan.settled.get_or_insert_with(|| self.settled_sectors(reference, [&plan.varying, &plan.since_reference], &written));
            let changed = self.changed_sectors(reference, [&plan.varying, &written], settled);
            let rereads = self.rereads(reference, &changed, &tables);
            plan.stats.incremental += 1;
            plan.stats.chunks_read += rereads.chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            plan.stats.origin_sectors_read += rereads.origin_sectors.len() as u64;
            self.read_back_only(&rereads);
            return;
        }
        plan.stats.whole += 1;
        self.read_back_everything();
        if !self.failed() {
            let images = self.engine.disks.iter().map(|disk| disk.cached()).collect();
            debug_assert!(self.written.is_some(), "the judge logged its writes");
            plan.reference = Some(Reference { basis, tables, images, written });
            plan.since_reference.clone_from(&plan.varying);
            plan.settled = None;
        }
    }

    fn basis(&self) -> Basis {
        let observer = lock(&self.shared);
        let snapshots = self
            .engine
            .snapshots
            .iter()
            .enumerate()
            .map(|(k, device)| (device.snapshot().is_valid() && observer.oracle.judges(k), device.snapshot().is_overflowed()))
            .collect();
        Basis { obligations: observer.oracle.obligations_digest(), snapshots, merging: self.merging.as_ref().map(|(k, _)| *k) }
    }

    /// [`Incremental::settled`], worked out on the first state of a point
    /// that fits the reference: of the sectors written since the
    /// reference's point (`[varying, since]`) or by its judge, those outside
    /// the point's non-durable ones that differ, or that this judge wrote.
    fn settled_sectors(&self, reference: &Reference, [varying, since]: [&[BTreeSet<u64>]; 2], written: &[BTreeSet<u64>]) -> Vec<BTreeSet<u64>> {
        self.per_disk(reference, |d, differs| {
            let candidates = since[d].iter().chain(&reference.written[d]).filter(|sector| !varying[d].contains(sector));
            candidates.copied().filter(|&s| written[d].contains(&s) || differs(s)).collect()
        })
    }

    /// Per disk, the sectors whose contents differ from the reference's:
    /// `settled`, and of the point's non-durable sectors and those this
    /// judge wrote (`[varying, written]`), those whose bytes differ.
    fn changed_sectors(&self, reference: &Reference, [varying, written]: [&[BTreeSet<u64>]; 2], settled: &[BTreeSet<u64>]) -> Vec<BTreeSet<u64>> {
        self.per_disk(reference, |d, differs| {
            let mut changed = settled[d].clone();
            changed.extend(varying[d].iter().chain(&written[d]).copied().filter(|&s| differs(s)));
            changed
        })
    }

    /// `sectors(d, differs)` for every disk `d`, where `differs(s)` says
    /// whether sector `s` of the disk now holds other bytes than in the reference.
    fn per_disk(&self, reference: &Reference, sectors: impl Fn(usize, &dyn Fn(u64) -> bool) -> BTreeSet<u64>) -> Vec<BTreeSet<u64>> {
        let disks = self.engine.disks.iter().enumerate();
        disks.map(|(d, disk)| disk.with_cached(|now| sectors(d, &|s| now.sector(s) != reference.images[d].sector(s)))).collect()
    }

    /// What this state's read-back must read again (see the module doc),
    /// its sectors that differ from the reference's being `changed`.
    fn rereads(&self, reference: &Reference, changed: &[BTreeSet<u64>], tables: &[ExceptionTable]) -> Rereads {
        let chunks: Vec<BTreeSet<u64>> = (0..self.knobs.snapshots)
            .map(|k| {
                let chunk_sectors = u64::from(self.knobs.snapshot_chunk_sectors(k));
                let (now, then) = (&tables[k], &reference.tables[k]);
                let mut chunks: BTreeSet<u64> = if now == then { BTreeSet::new() } else { differing_chunks(now.iter(), then.iter()).collect() };
                let cow_chunks: BTreeSet<u64> = changed[k + 1].iter().map(|sector| sector / chunk_sectors).collect();
                for run in now.runs() {
                    chunks.extend(cow_chunks.range(run.new_start..run.new_start + run.len).map(|e| run.old_start + (e - run.new_start)));
                }
                chunks.extend(changed[0].iter().map(|sector| sector / chunk_sectors).filter(|&chunk| now.lookup(chunk).is_none()));
                chunks
            })
            .collect();
        let mut origin_sectors = changed[0].clone();
        if let Some((m, _)) = &self.merging {
            // A merge target serves its unmerged chunks from the COW.
            let chunk_sectors = u64::from(self.knobs.snapshot_chunk_sectors(*m));
            origin_sectors.extend(chunks[*m].iter().flat_map(|chunk| chunk * chunk_sectors..(chunk + 1) * chunk_sectors));
        }
        let origin_end = self.knobs.origin_sectors();
        origin_sectors.retain(|&sector| sector < origin_end);
        Rereads { chunks, origin_sectors }
    }

    /// Reads again and judges what `rereads` names, in the whole read-back's order.
    fn read_back_only(&mut self, rereads: &Rereads) {
        let origin_end = self.knobs.origin_sectors();
        for (k, device) in self.engine.snapshots.clone().iter().enumerate() {
            if !device.snapshot().is_valid() || !lock(&self.shared).oracle.judges(k) {
                continue;
            }
            let chunk_sectors = u64::from(self.knobs.snapshot_chunk_sectors(k));
            for &chunk in &rereads.chunks[k] {
                let start = chunk * chunk_sectors;
                if start >= origin_end {
                    break;
                }
                let count = chunk_sectors.min(origin_end - start);
                let check = |oracle: &mut model::Oracle, sector, value| oracle.check_view_sector(k, sector, value, false, true);
                if !self.read_checked(device.as_ref(), start, count, true, &check) {
                    return;
                }
            }
        }
        let origin = Arc::clone(&self.engine.origin);
        for (start, count) in ranges(&rereads.origin_sectors, 64) {
            let check = |oracle: &mut model::Oracle, sector, value| oracle.check_origin_sector(sector, value);
            if !self.read_checked(origin.as_ref(), start, count, false, &check) {
                return;
            }
        }
    }
}

/// Adds to `sectors` (one set per disk) the sectors of the writes `log`
/// lists as (disk, first sector, sectors).
fn add_sectors(sectors: &mut [BTreeSet<u64>], log: &[(usize, u64, u64)]) {
    for &(disk, sector, count) in log {
        sectors[disk].extend(sector..sector + count);
    }
}

/// Sorted `sectors` as ranges of consecutive sectors of at most `most` each.
fn ranges(sectors: &BTreeSet<u64>, most: u64) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for &sector in sectors {
        match ranges.last_mut() {
            Some((start, count)) if *start + *count == sector && *count < most => *count += 1,
            _ => ranges.push((sector, 1)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_consecutive_sectors_up_to_the_limit() {
        let sectors = BTreeSet::from([1, 2, 3, 7, 8]);
        assert_eq!(ranges(&sectors, 2), vec![(1, 2), (3, 1), (7, 2)]);
        assert_eq!(ranges(&sectors, 64), vec![(1, 3), (7, 2)]);
    }
}
