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
//!   With [`OracleConfig::kernel_patches_applied`] (the kernel-patches/ series) a
//!   snapshot a crash revives is judged on instead, and only a failed header
//!   write is K1.
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
//!
//! # Layout
//!
//! This file holds the model's state and dispatches each event to the
//! handler of its kind: [`io`] (user writes, reads, flushes and their
//! acknowledgements), [`status`] (I/O errors and reported state), [`crash`]
//! (crashes and reloads), [`merge`] (a merge's start and end); [`judge`]
//! checks values read back and COW images against the model.

mod availability;
mod crash;
mod io;
mod judge;
mod merge;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::cow::CowGeometry;
use crate::event::{Event, Target, UserFlags};
use crate::invariant::Violation;
use crate::versions::SectorVersions;

/// Events kept for a violation's story.
const STORY_EVENTS: usize = 24;
/// One snapshot as the oracle knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSpec {
    pub chunk_sectors: u32,
    /// Whether the store is `PO` (overflow does not invalidate on snapshot writes).
    pub overflow_store: bool,
    /// Its COW's size: how many chunks it can hand out (I15), and where a
    /// request to it would run past its end.
    pub cow_sectors: u64,
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
    /// The engine writes headers as the kernel with the kernel-patches/
    /// series does: the `valid = 0` header with FUA, no origin write let
    /// past an invalidated snapshot before that write has completed. A
    /// snapshot that a crash brings back valid then had its header write
    /// in flight, after which nothing changed its view: it is judged on,
    /// not counted as K1, and its view must be intact. Only a failed header
    /// write (the kernel warns and goes on) still revives a snapshot whose
    /// view may have changed: counted as K1, never a failure, strict or not.
    pub kernel_patches_applied: bool,
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
///
/// Each sector's versions are shared between copies of the oracle (every
/// crash state's judge starts from a copy of its crash point's) and copied
/// only when one of them changes it: a crash or a flush leaves alone the
/// sectors it would not change.
#[derive(Debug, Clone, Default)]
struct Volume {
    touched: BTreeMap<u64, Arc<SectorVersions>>,
}

impl Volume {
    fn sector(&mut self, initial: &[u64], sector: u64) -> &mut SectorVersions {
        Arc::make_mut(self.touched.entry(sector).or_insert_with(|| Arc::new(SectorVersions::new(initial[sector as usize]))))
    }

    /// A crash at sequence number `at` (see [`SectorVersions::crashed`]).
    fn crashed(&mut self, at: u64) {
        self.touched.values_mut().filter(|v| v.crash_changes()).for_each(|v| Arc::make_mut(v).crashed(at));
    }

    /// A flush covering `covers` acknowledged (see [`SectorVersions::flushed`]).
    fn flushed(&mut self, covers: u64) {
        self.touched.values_mut().filter(|v| v.flush_changes(covers)).for_each(|v| Arc::make_mut(v).flushed(covers));
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
    /// Came back valid after a crash with durable headers, its view still
    /// judged: to be read back at once ([`Oracle::take_revived`]).
    revived_to_read: bool,
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
    /// A write to it failed with no I/O error to explain it: only a full
    /// `PO` store refuses one, and it sets Overflow first, so the snapshot
    /// must report Overflow (or invalid) until the next (re)load — through
    /// a handover to snapshot-merge too.
    must_overflow: bool,
    /// An I/O error that may invalidate it was seen (COW write, origin read).
    io_error_seen: bool,
    /// Origin writes were submitted since the last reload (they may overflow it legitimately).
    origin_written: bool,
    /// Loaded valid at the last (re)load: only then can it be invalidated in this epoch.
    valid_at_load: bool,
    /// Its chunks that needed an exception since it was taken (I15: a COW
    /// is possibly full only once more than its data chunks were needed).
    claimed: BTreeSet<u64>,
    /// Every value ever written to its view (values are unique per sector):
    /// what an interrupted or failed merge may have copied to the origin.
    ever_written: BTreeSet<u64>,
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
    /// A request to the origin disk failed since the last (re)load (I15).
    origin_error_seen: bool,
    /// Readable names of values, for messages: the first bytes of the sector
    /// (`o00012s003.` for a tagged one). Appended, searched only on failure.
    labels: Vec<(u64, [u8; 16])>,
}

impl Volume {
    fn hash_obligations<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        self.touched.len().hash(state);
        for (sector, versions) in &self.touched {
            sector.hash(state);
            versions.hash_obligations(state);
        }
    }
}

impl SnapshotState {
    fn hash_obligations<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        self.view.hash_obligations(state);
        let flags = [
            self.ever_invalid,
            self.revived,
            self.revived_to_read,
            self.invalid_header_may_be_lost,
            self.header_write_failed,
            self.invalid_since_load,
            self.overflowed_since_load,
            self.merge_failed,
            self.must_invalidate,
            self.must_overflow,
            self.io_error_seen,
            self.origin_written,
            self.valid_at_load,
        ];
        flags.hash(state);
        self.claimed.hash(state);
        self.ever_written.hash(state);
    }
}

impl Oracle {
    /// A digest of everything a crash state is judged against: the values
    /// each sector of every volume may hold, every snapshot's obligations
    /// (must it be invalid, overflowed, may it revive), the merge, the
    /// writes and reads in flight. Two oracles with one digest judge every
    /// image alike, so a state judged under one need not be judged under
    /// the other; a state seen before under weaker obligations (before a
    /// flush was acknowledged, say) must be judged again. Sequence numbers,
    /// the story, labels and the counts of allowed kernel behaviours are
    /// left out: they change no verdict.
    pub fn obligations_digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // The digest only ever meets digests of the same run: a fast fixed mixer.
        let mut state = crate::digest::Digest::default();
        self.origin.hash_obligations(&mut state);
        self.snapshots.len().hash(&mut state);
        self.snapshots.iter().for_each(|s| s.hash_obligations(&mut state));
        self.pending.len().hash(&mut state);
        for (op, pending) in &self.pending {
            op.hash(&mut state);
            format!("{pending:?}").hash(&mut state);
        }
        self.origin_values.hash(&mut state);
        (self.epoch, self.merging, self.origin_error_seen).hash(&mut state);
        state.finish()
    }

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
            origin_error_seen: false,
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

    /// The events kept for a violation's story, oldest first.
    pub fn story(&self) -> Vec<String> {
        self.story.iter().map(ToString::to_string).collect()
    }

    /// Starts the story afresh: the judge of a crash state tells what it
    /// did after the crash apart from what led to it.
    pub fn forget_story(&mut self) {
        self.story.clear();
    }

    /// Attaches the recent events to a violation.
    pub fn with_story(&self, mut violation: Violation) -> Violation {
        violation.events = self.story();
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

    /// Hands `event` to the handler of its kind.
    fn apply_inner(&mut self, event: &Event) -> Result<(), Violation> {
        match event {
            Event::Write { op, target, sector, values, flags } => self.on_write(*op, *target, *sector, values, *flags),
            Event::Read { op, target, sector, sectors } => self.on_read(*op, *target, *sector, *sectors),
            Event::Flush { op, target } => self.on_flush(*op, *target),
            Event::Ack { op, ok } => self.on_ack(*op, *ok)?,
            Event::ReadDone { op, values, snapshot_valid } => self.on_read_done(*op, values.as_deref(), *snapshot_valid)?,
            Event::Disk { disk, op, sector, sectors, ok: false, .. } => {
                self.check_disk_request_in_range(*disk, *op, *sector, *sectors)?;
                self.on_disk_error(*disk, *op, *sector)
            }
            // A completed disk request and the engine's own work change nothing the model knows.
            Event::Disk { .. } | Event::Deferred => {}
            Event::MergeStart { snapshot } => self.on_merge_start(*snapshot),
            Event::MergeDone { snapshot, ok } => self.on_merge_done(*snapshot, *ok),
            Event::Status { snapshot, valid, overflowed, quiescent, copies_max } => {
                self.on_status(*snapshot, *valid, *overflowed, *quiescent, *copies_max)?
            }
            Event::Crash => self.on_crash(),
            Event::CleanReload => self.on_clean_reload(),
            Event::LoadFailed { snapshot } => self.on_load_failed(*snapshot),
            Event::Reloaded { valid } => self.on_reloaded(valid)?,
        }
        Ok(())
    }

    fn volume(&mut self, target: Target) -> &mut Volume {
        match target {
            Target::Origin => &mut self.origin,
            Target::Snapshot(k) => &mut self.snapshots[k].view,
        }
    }

    /// Whether every submission still pending was numbered before `seq`: the
    /// one sequence only grows, and an acknowledgement or a flush covers
    /// nothing submitted after it.
    fn pending_numbered_before(&self, seq: u64) -> bool {
        self.pending.values().all(|pending| match *pending {
            Pending::Write { submitted, .. } => submitted < seq,
            Pending::Flush { covers, .. } => covers < seq,
            Pending::Read { .. } => true,
        })
    }

    /// The COW geometry of snapshot `k`.
    pub fn geometry(&self, k: usize) -> CowGeometry {
        let chunk_sectors = self.config.snapshots[k].chunk_sectors;
        // An origin that ends mid-chunk still has that last chunk.
        CowGeometry { chunk_sectors, origin_chunks: (self.config.initial.len() as u64).div_ceil(u64::from(chunk_sectors)) }
    }
}
