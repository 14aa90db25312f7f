//! The oracle: the reference model fed with a run's events, checking every
//! invariant it can see broken.
//!
//! The model is the origin and each snapshot as arrays of [`SectorVersions`]
//! (only sectors written since the snapshot are stored; the rest hold the
//! snapshot-time value). Live reads, reads after a reload and the final
//! read-back are checked against it; reported state is checked against the
//! I/O errors seen (I8, I9); COW images after a crash are read by
//! [`crate::cow`] (I4, I5, I6).
//!
//! # Kernel behaviours the oracle allows (and counts)
//!
//! The engine is a faithful port, so it keeps two holes the kernel has. The
//! oracle counts each occurrence instead of failing the run; with
//! [`OracleConfig::strict`] each becomes a violation of the invariant named.
//! - **K1 (I8)**: an invalidated snapshot may come back valid after a crash.
//!   The kernel writes the `valid = 0` header without FUA or a flush and lets
//!   origin writes go ahead at once, so a crash can lose the header while the
//!   origin changes stay. Such a snapshot's view is not checked after that.
//! - **K2 (I13)**: a snapshot read that was still in flight when its snapshot
//!   was invalidated may return origin data written after the snapshot: a
//!   failed exception releases its origin writes without waiting for tracked
//!   reads (only the success path waits).
//!
//! # Merge rules that are the kernel's, not holes
//!
//! - A snapshot revived by K1 has lost the exceptions of its failed copies;
//!   merging it leaves those chunks holding origin data (I10 allows either).
//! - Writes to the snapshot being merged land on the origin, and the merge
//!   copies the snapshot's data there: those values count as origin data
//!   (for K2 and I13).
//! - A failed merge commit shuts the merge down (`Merge failed`) and leaves
//!   the snapshot valid; it is not an I8 invalidation.
//! - A chunk copied to the origin whose merge commit never happened is still
//!   served from the COW; the origin may hold any value its view ever held.
//! - An invalid snapshot handed to snapshot-merge serves the origin.
//! - The merge makes the other snapshots preserve each run it overwrites
//!   without passing their throttles (`origin_write_extent`), so their
//!   copies in progress may exceed the threshold by one area's worth of
//!   records (I12).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::cow::{self, CowGeometry, CowState, SectorSource};
use crate::event::{DiskOp, Event, Target, UserFlags};
use crate::invariant::{Invariant, Violation};
use crate::versions::SectorVersions;

/// Events kept for a violation's story.
const STORY_EVENTS: usize = 24;

/// One snapshot as the oracle knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSpec {
    pub chunk_sectors: u32,
    /// Whether the store is `PO` (overflow does not invalidate on snapshot writes).
    pub overflow_store: bool,
}

/// What the oracle is told before a run.
#[derive(Debug, Clone)]
pub struct OracleConfig {
    /// The origin's contents when the snapshots were taken, one value per sector.
    pub initial: Arc<[u64]>,
    pub snapshots: Vec<SnapshotSpec>,
    /// Fail on the kernel behaviours K1 and K2 instead of counting them.
    pub strict: bool,
    /// Most exceptions a snapshot may have in progress at once (the COW
    /// throttle's `cow_threshold`); 0 = unlimited.
    pub cow_threshold: u32,
}

/// How often the run showed each allowed kernel behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowances {
    /// K1: invalidated snapshots that loaded valid after a crash.
    pub revived_invalid: u64,
    /// K2: reads that raced their snapshot's invalidation and saw origin data.
    pub raced_invalidation: u64,
}

impl std::fmt::Display for Allowances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "K1 revived-invalid {} / K2 read-raced-invalidation {}", self.revived_invalid, self.raced_invalidation)
    }
}

#[derive(Debug, Clone)]
enum Pending {
    /// A user write, with its flags and the sequence number it was submitted at.
    Write {
        target: Target,
        sector: u64,
        values: Arc<[u64]>,
        flags: UserFlags,
        submitted: u64,
    },
    /// A snapshot read, with every value each of its sectors could hold at
    /// some moment while it was in flight (a read may be served at any of them).
    Read {
        snapshot: usize,
        sector: u64,
        legal: Vec<Vec<u64>>,
    },
    Flush {
        target: Target,
        covers: u64,
    },
}

/// A volume's legal contents: snapshot-time values plus what was written since.
#[derive(Debug, Clone, Default)]
struct Volume {
    touched: BTreeMap<u64, SectorVersions>,
}

impl Volume {
    fn sector(&mut self, initial: &[u64], sector: u64) -> &mut SectorVersions {
        self.touched.entry(sector).or_insert_with(|| SectorVersions::new(initial[sector as usize]))
    }

    /// Values a read submitted now may return, absent a crash.
    fn live_values(&self, initial: &[u64], sector: u64) -> Vec<u64> {
        match self.touched.get(&sector) {
            Some(versions) => versions.live_values(),
            None => vec![initial[sector as usize]],
        }
    }

    fn live_holds(&self, initial: &[u64], sector: u64, value: u64) -> bool {
        self.live_values(initial, sector).contains(&value)
    }
}

#[derive(Debug, Clone, Default)]
struct SnapshotState {
    view: Volume,
    /// Reported invalid at some point (or a COW write failed) — sticky.
    ever_invalid: bool,
    /// Came back valid after being invalid (K1): its view is no longer checked.
    revived: bool,
    /// Since it went invalid, something could have lost its `valid = 0`
    /// header: a crash, or a failed write to its COW. Only then may it load
    /// valid again (K1); after a clean reload with neither it must load invalid.
    invalid_header_may_be_lost: bool,
    /// A write of its COW's header chunk failed since the last (re)load.
    header_write_failed: bool,
    /// Reported invalid, or Overflow, since the last (re)load: both are
    /// sticky until a reload, and carried across a handover to snapshot-merge.
    invalid_since_load: bool,
    overflowed_since_load: bool,
    /// Its merge stopped on an error since the last (re)load: the kernel's
    /// status says `Merge failed` until the table is reloaded.
    merge_failed: bool,
    /// A write to its COW failed, so it must be invalid.
    must_invalidate: bool,
    /// An I/O error that may invalidate it was seen (COW write, origin read).
    io_error_seen: bool,
    /// Origin writes were submitted since the last reload (they may overflow it legitimately).
    origin_written: bool,
    /// Loaded valid at the last (re)load: only then can it be invalidated in this epoch.
    valid_at_load: bool,
    /// Every value ever written to its view (values are unique per sector):
    /// what an interrupted or failed merge may have copied to the origin.
    ever_written: BTreeSet<u64>,
}

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

/// The reference model and its checks.
#[derive(Debug, Clone)]
pub struct Oracle {
    config: OracleConfig,
    origin: Volume,
    snapshots: Vec<SnapshotState>,
    pending: BTreeMap<u64, Pending>,
    /// Values written to the origin: the epoch (crash count) of their writes.
    origin_values: BTreeMap<u64, u64>,
    /// One sequence numbering submissions and acknowledgements.
    seq: u64,
    epoch: u64,
    story: VecDeque<Event>,
    allowances: Allowances,
    /// The snapshot being merged, and whether its merge completed.
    merging: Option<(usize, bool)>,
    /// Readable names of values, for messages: the first bytes of the sector
    /// (`o00012s003.` for a tagged one). Appended, searched only on failure.
    labels: Vec<(u64, [u8; 16])>,
}

impl Oracle {
    pub fn new(config: OracleConfig) -> Self {
        let snapshots = vec![SnapshotState::default(); config.snapshots.len()];
        Self {
            config,
            origin: Volume::default(),
            snapshots,
            pending: BTreeMap::new(),
            origin_values: BTreeMap::new(),
            seq: 0,
            epoch: 0,
            story: VecDeque::new(),
            allowances: Allowances::default(),
            labels: Vec::new(),
            merging: None,
        }
    }

    /// Names `value` in messages.
    pub fn label(&mut self, value: u64, head: [u8; 16]) {
        self.labels.push((value, head));
    }

    fn name(&self, value: u64) -> String {
        match self.labels.iter().rev().find(|&&(v, _)| v == value) {
            Some((_, head)) => {
                let end = head.iter().position(|&b| b == b'.' || b == 0).unwrap_or(head.len());
                String::from_utf8_lossy(&head[..end]).into_owned()
            }
            None => format!("{value:016x}"),
        }
    }

    pub fn allowances(&self) -> Allowances {
        self.allowances
    }

    pub fn config(&self) -> &OracleConfig {
        &self.config
    }

    /// Whether the kernel behaviours K1–K3 are failures (`--strict`).
    pub fn strict(&self) -> bool {
        self.config.strict
    }

    /// Whether snapshot `k`'s view is still judged (not revived by K1).
    pub fn judges(&self, snapshot: usize) -> bool {
        !self.snapshots[snapshot].revived
    }

    /// The snapshot being merged, if a merge has started.
    pub fn merging(&self) -> Option<usize> {
        self.merging.map(|(k, _)| k)
    }

    /// Attaches the recent events to a violation.
    pub fn with_story(&self, mut violation: Violation) -> Violation {
        violation.events = self.story.iter().map(ToString::to_string).collect();
        violation
    }

    /// Feeds one event to the model and checks what it can.
    pub fn apply(&mut self, event: &Event) -> Result<(), Violation> {
        if self.story.len() == STORY_EVENTS {
            self.story.pop_front();
        }
        self.story.push_back(event.clone());
        self.apply_inner(event).map_err(|v| self.with_story(v))
    }

    fn apply_inner(&mut self, event: &Event) -> Result<(), Violation> {
        let initial = Arc::clone(&self.config.initial);
        match event {
            Event::Write { op, target, sector, values, flags } => {
                debug_assert!(!self.pending.contains_key(op), "operation {op} submitted twice");
                self.seq += 1;
                let submitted = self.seq;
                // Writes to the snapshot being merged land on the origin
                // (the merge target stands in for the origin device).
                let lands_on_origin = *target == Target::Origin || self.merging.is_some_and(|(m, _)| *target == Target::Snapshot(m));
                for (j, &value) in values.iter().enumerate() {
                    let at = sector + j as u64;
                    self.volume(*target).sector(&initial, at).write(*op, value, submitted);
                    if lands_on_origin {
                        self.origin_values.entry(value).or_insert(self.epoch);
                    }
                    if let Target::Snapshot(k) = *target {
                        self.snapshots[k].ever_written.insert(value);
                    }
                }
                if lands_on_origin {
                    self.snapshots.iter_mut().for_each(|s| s.origin_written = true);
                }
                let written = *sector..*sector + values.len() as u64;
                for pending in self.pending.values_mut() {
                    if let Pending::Read { snapshot, sector: start, legal } = pending {
                        if Target::Snapshot(*snapshot) == *target {
                            for (j, legal) in legal.iter_mut().enumerate() {
                                let at = *start + j as u64;
                                if written.contains(&at) {
                                    legal.push(values[(at - *sector) as usize]);
                                }
                            }
                        }
                    }
                }
                self.pending.insert(*op, Pending::Write { target: *target, sector: *sector, values: Arc::clone(values), flags: *flags, submitted });
            }
            Event::Read { op, target, sector, sectors } => {
                if let Target::Snapshot(snapshot) = *target {
                    let view = &self.snapshots[snapshot].view;
                    let legal = (*sector..sector + sectors).map(|at| view.live_values(&initial, at)).collect();
                    self.pending.insert(*op, Pending::Read { snapshot, sector: *sector, legal });
                }
            }
            Event::Flush { op, target } => {
                self.seq += 1;
                self.pending.insert(*op, Pending::Flush { target: *target, covers: self.seq });
            }
            Event::Ack { op, ok } => {
                let pending = self.pending.remove(op);
                if !ok {
                    return Ok(());
                }
                self.seq += 1;
                let ack = self.seq;
                match pending {
                    Some(Pending::Write { target, sector, values, flags, submitted }) => {
                        // PREFLUSH: what was acknowledged before the write was
                        // submitted is durable, as after a flush submitted then.
                        if flags.preflush {
                            self.volume(target).touched.values_mut().for_each(|v| v.flushed(submitted - 1));
                        }
                        for j in 0..values.len() as u64 {
                            let versions = self.volume(target).sector(&initial, sector + j);
                            versions.acked(*op, ack);
                            // FUA: this write's own data is durable now.
                            if flags.fua {
                                versions.fua_acked(values[j as usize]);
                            }
                        }
                    }
                    Some(Pending::Flush { target, covers }) => {
                        self.volume(target).touched.values_mut().for_each(|v| v.flushed(covers));
                    }
                    Some(Pending::Read { .. }) | None => {}
                }
            }
            Event::ReadDone { op, values, snapshot_valid } => {
                let pending = self.pending.remove(op);
                if let (Some(Pending::Read { snapshot, sector, legal }), Some(values)) = (pending, values) {
                    for (j, &value) in values.iter().enumerate() {
                        if !legal.get(j).is_some_and(|l| l.contains(&value)) {
                            self.judge_view_sector(snapshot, sector + j as u64, value, !snapshot_valid, false)?;
                        }
                    }
                }
            }
            Event::Disk { disk, op, sector, ok: false, .. } => match (disk, op) {
                (0, DiskOp::Read) => self.snapshots.iter_mut().for_each(|s| s.io_error_seen = true),
                (0, _) => {}
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
                    state.header_write_failed |= *sector == 0;
                }
                (cow, DiskOp::Read | DiskOp::Flush) => self.snapshots[cow - 1].io_error_seen = true,
            },
            Event::Disk { .. } | Event::Deferred => {}
            Event::MergeStart { snapshot } => {
                if self.merging.is_none() {
                    self.merging = Some((*snapshot, false));
                }
                // The merge copies the snapshot's data onto the origin.
                let epoch = self.epoch;
                for &value in &self.snapshots[*snapshot].ever_written {
                    self.origin_values.entry(value).or_insert(epoch);
                }
            }
            Event::MergeDone { snapshot, ok } => {
                if *ok {
                    self.merging = Some((*snapshot, true));
                } else {
                    self.snapshots[*snapshot].merge_failed = true;
                }
            }
            Event::Status { snapshot, valid, overflowed, quiescent, copies_max } => {
                self.check_status(*snapshot, *valid, *overflowed, *quiescent)?;
                self.check_bounds(*snapshot, *copies_max)?;
            }
            // A clean reload is judged as a crash that lost nothing, except
            // that it cannot have lost an invalidated snapshot's header.
            Event::Crash | Event::CleanReload => {
                self.epoch += 1;
                self.seq += 1;
                let at = self.seq;
                self.pending.clear();
                self.origin.touched.values_mut().for_each(|v| v.crashed(at));
                for state in &mut self.snapshots {
                    state.view.touched.values_mut().for_each(|v| v.crashed(at));
                    // A failed exception that never completed left no record:
                    // the snapshot may load valid, and consistent.
                    state.must_invalidate = false;
                    state.invalid_header_may_be_lost |= matches!(event, Event::Crash);
                }
            }
            Event::Reloaded { valid } => {
                for (k, &valid) in valid.iter().enumerate() {
                    let state = &mut self.snapshots[k];
                    if valid && state.ever_invalid && !state.revived {
                        if !state.invalid_header_may_be_lost && !state.header_write_failed {
                            let message = format!(
                                "snapshot {k} was invalidated, then loaded valid after a clean reload: no crash and no failed COW write could have lost its valid=0 header"
                            );
                            return Err(Violation::new(Invariant::I8Invalidation, message));
                        }
                        if self.config.strict {
                            let message = format!(
                                "snapshot {k} was invalidated before a crash but loaded valid after it (kernel behaviour K1: the valid=0 header is a plain write and origin writes went ahead)"
                            );
                            return Err(Violation::new(Invariant::I8Invalidation, message));
                        }
                        state.revived = true;
                        self.allowances.revived_invalid += 1;
                    }
                    state.origin_written = false;
                    state.io_error_seen = false;
                    state.valid_at_load = valid;
                    state.invalid_since_load = false;
                    state.overflowed_since_load = false;
                    state.header_write_failed = false;
                    state.merge_failed = false;
                }
            }
        }
        Ok(())
    }

    fn volume(&mut self, target: Target) -> &mut Volume {
        match target {
            Target::Origin => &mut self.origin,
            Target::Snapshot(k) => &mut self.snapshots[k].view,
        }
    }

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
        if valid && !overflowed && state.overflowed_since_load {
            let message = format!("snapshot {snapshot} reported Overflow, then lost it without a reload");
            return Err(Violation::new(Invariant::I9Overflow, message));
        }
        state.invalid_since_load |= !valid;
        state.overflowed_since_load |= overflowed;
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
    fn judge_view_sector(&mut self, k: usize, sector: u64, value: u64, raced: bool, settled: bool) -> Result<(), Violation> {
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
        Ok(state)
    }

    /// The COW geometry of snapshot `k`.
    pub fn geometry(&self, k: usize) -> CowGeometry {
        let chunk_sectors = self.config.snapshots[k].chunk_sectors;
        CowGeometry { chunk_sectors, origin_chunks: self.config.initial.len() as u64 / u64::from(chunk_sectors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oracle(strict: bool) -> Oracle {
        let initial: Arc<[u64]> = (0..16).map(|s| 1000 + s).collect();
        let snapshots = vec![SnapshotSpec { chunk_sectors: 2, overflow_store: true }];
        Oracle::new(OracleConfig { initial, snapshots, strict, cow_threshold: 2 })
    }

    fn run(oracle: &mut Oracle, events: &[Event]) -> Result<(), Violation> {
        events.iter().try_for_each(|e| oracle.apply(e))
    }

    const S0: Target = Target::Snapshot(0);

    #[test]
    fn a_read_returning_origin_data_is_a_conflicting_read_live_and_i1_after_a_crash() {
        let mut o = oracle(false);
        run(
            &mut o,
            &[
                Event::Write { op: 0, target: Target::Origin, sector: 3, values: Arc::from([7]), flags: UserFlags::PLAIN },
                Event::Ack { op: 0, ok: true },
            ],
        )
        .unwrap();
        let read =
            [Event::Read { op: 1, target: S0, sector: 3, sectors: 1 }, Event::ReadDone { op: 1, values: Some(Arc::from([7])), snapshot_valid: true }];
        let error = run(&mut o.clone(), &read).unwrap_err();
        assert_eq!(error.invariant, Invariant::I13ConflictingReads);
        assert_eq!(error.events.len(), 4);
        run(&mut o, &[Event::Crash, Event::Reloaded { valid: vec![true] }]).unwrap();
        assert_eq!(run(&mut o, &read).unwrap_err().invariant, Invariant::I1AckedOriginWrite);
    }

    #[test]
    fn snapshot_writes_are_legal_values_and_flushed_ones_are_the_only_ones() {
        let mut o = oracle(false);
        let crash = [Event::Crash, Event::Reloaded { valid: vec![true] }];
        run(
            &mut o,
            &[Event::Write { op: 0, target: S0, sector: 5, values: Arc::from([9]), flags: UserFlags::PLAIN }, Event::Ack { op: 0, ok: true }],
        )
        .unwrap();
        // Live, an acknowledged write hides the old value; a crash may bring it back.
        assert_eq!(o.check_view_sector(0, 5, 1005, false, false).unwrap_err().invariant, Invariant::I2SnapshotView);
        assert!(o.check_view_sector(0, 5, 9, false, false).is_ok());
        let mut crashed = o.clone();
        run(&mut crashed, &crash).unwrap();
        assert!(crashed.check_view_sector(0, 5, 1005, false, true).is_ok() && crashed.check_view_sector(0, 5, 9, false, true).is_ok());
        // Flushed, it survives the crash alone.
        run(&mut o, &[Event::Flush { op: 1, target: S0 }, Event::Ack { op: 1, ok: true }]).unwrap();
        run(&mut o, &crash).unwrap();
        assert_eq!(o.check_view_sector(0, 5, 1005, false, true).unwrap_err().invariant, Invariant::I2SnapshotView);
        assert!(o.check_view_sector(0, 5, 9, false, true).is_ok());
    }

    #[test]
    fn a_read_may_return_any_value_legal_while_it_was_in_flight() {
        let mut o = oracle(false);
        let events = [
            Event::Read { op: 0, target: S0, sector: 4, sectors: 1 },
            Event::Write { op: 1, target: S0, sector: 4, values: Arc::from([11]), flags: UserFlags::PLAIN },
            Event::Ack { op: 1, ok: true },
            Event::Write { op: 2, target: S0, sector: 4, values: Arc::from([12]), flags: UserFlags::PLAIN },
            Event::Ack { op: 2, ok: true },
            Event::Flush { op: 3, target: S0 },
            Event::Ack { op: 3, ok: true },
        ];
        run(&mut o, &events).unwrap();
        for value in [1004, 11, 12] {
            o.clone().apply(&Event::ReadDone { op: 0, values: Some(Arc::from([value])), snapshot_valid: true }).unwrap();
        }
        let error = o.apply(&Event::ReadDone { op: 0, values: Some(Arc::from([13])), snapshot_valid: true }).unwrap_err();
        assert_eq!(error.invariant, Invariant::I2SnapshotView);
    }

    #[test]
    fn kernel_behaviours_are_counted_unless_strict() {
        let revive = [
            Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 },
            Event::Crash,
            Event::Reloaded { valid: vec![true] },
        ];
        let mut o = oracle(false);
        run(&mut o, &[Event::Write { op: 0, target: Target::Origin, sector: 0, values: Arc::from([5]), flags: UserFlags::PLAIN }]).unwrap();
        run(&mut o, &revive).unwrap();
        assert_eq!(o.allowances().revived_invalid, 1);
        let mut strict = oracle(true);
        run(&mut strict, &[Event::Write { op: 0, target: Target::Origin, sector: 0, values: Arc::from([5]), flags: UserFlags::PLAIN }]).unwrap();
        assert_eq!(run(&mut strict, &revive).unwrap_err().invariant, Invariant::I8Invalidation);
    }

    #[test]
    fn invalid_and_overflow_stay_until_a_reload() {
        let status = |valid, overflowed| Event::Status { snapshot: 0, valid, overflowed, quiescent: true, copies_max: 0 };
        let mut o = oracle(false);
        o.apply(&status(false, false)).unwrap();
        assert_eq!(o.clone().apply(&status(true, false)).unwrap_err().invariant, Invariant::I8Invalidation);
        let mut o = oracle(false);
        o.snapshots[0].io_error_seen = true;
        o.config.snapshots[0].overflow_store = true;
        o.apply(&status(true, true)).unwrap();
        assert_eq!(o.clone().apply(&status(true, false)).unwrap_err().invariant, Invariant::I9Overflow);
        o.apply(&Event::MergeStart { snapshot: 0 }).unwrap();
        o.apply(&status(true, true)).unwrap();
        o.apply(&Event::Crash).unwrap();
        o.apply(&Event::Reloaded { valid: vec![true] }).unwrap();
        o.apply(&status(true, false)).unwrap();
    }

    #[test]
    fn a_clean_reload_never_revives_an_invalid_snapshot() {
        let invalid = Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 };
        let mut o = oracle(false);
        run(&mut o, &[Event::Write { op: 0, target: Target::Origin, sector: 0, values: Arc::from([5]), flags: UserFlags::PLAIN }, invalid.clone()])
            .unwrap();
        let error = o.clone().apply(&Event::Reloaded { valid: vec![true] }).unwrap_err();
        assert_eq!(error.invariant, Invariant::I8Invalidation);
        assert!(error.message.contains("clean reload"), "{}", error.message);
        o.apply(&Event::Reloaded { valid: vec![false] }).unwrap();
        // A failed COW write after the invalidation may have been its header.
        let header_write_failed =
            Event::Disk { disk: 1, request: 9, op: DiskOp::Write { preflush: false, fua: false }, sector: 0, sectors: 1, ok: false };
        run(&mut o, &[header_write_failed, Event::Reloaded { valid: vec![true] }]).unwrap();
        assert_eq!(o.allowances().revived_invalid, 1);
    }

    #[test]
    fn invalidation_and_overflow_follow_the_errors_seen() {
        let cow_write_failed =
            Event::Disk { disk: 1, request: 3, op: DiskOp::Write { preflush: false, fua: false }, sector: 8, sectors: 2, ok: false };
        let mut o = oracle(false);
        o.apply(&cow_write_failed).unwrap();
        let error = o.apply(&Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: true, copies_max: 0 }).unwrap_err();
        assert_eq!(error.invariant, Invariant::I8Invalidation);
        let mut o = oracle(false);
        o.apply(&Event::Reloaded { valid: vec![true] }).unwrap();
        let error = o.apply(&Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 }).unwrap_err();
        assert_eq!(error.invariant, Invariant::I9Overflow);
        let mut o = oracle(false);
        o.apply(&Event::Reloaded { valid: vec![false] }).unwrap();
        o.apply(&Event::Status { snapshot: 0, valid: false, overflowed: false, quiescent: true, copies_max: 0 }).unwrap();
    }

    #[test]
    fn more_copies_in_flight_than_the_threshold_break_i12() {
        let mut o = oracle(false);
        o.apply(&Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: false, copies_max: 2 }).unwrap();
        let error = o.apply(&Event::Status { snapshot: 0, valid: true, overflowed: false, quiescent: false, copies_max: 3 }).unwrap_err();
        assert_eq!(error.invariant, Invariant::I12Bounds, "{error}");
    }

    #[test]
    fn status_lines_follow_the_kernel_formula() {
        // 2-sector chunks: 64 records per area; a 64-chunk COW of 128 sectors.
        let o = oracle(false);
        let mut cow = vec![0u8; 128 * 512];
        cow[..16].copy_from_slice(&[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        for n in 0..3u64 {
            let at = 2 * 512 + n as usize * 16;
            cow[at..at + 8].copy_from_slice(&n.to_le_bytes());
            cow[at + 8..at + 16].copy_from_slice(&(2 + n).to_le_bytes());
        }
        assert_eq!(o.check_status_line(0, true, false, "10/128 4", cow.as_slice()), Ok(()));
        assert_eq!(o.check_status_line(0, false, false, "Invalid", cow.as_slice()), Ok(()));
        assert_eq!(o.check_status_line(0, true, true, "Overflow", cow.as_slice()), Ok(()));
        let error = o.check_status_line(0, true, false, "8/128 4", cow.as_slice()).unwrap_err();
        assert_eq!(error.to_string(), "I14 status: snapshot 0's status line is `8/128 4`; the kernel's formula gives `10/128 4`");
    }
}
