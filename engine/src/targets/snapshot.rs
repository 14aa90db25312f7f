//! The snapshot target (`dm-snap.c`'s `snapshot_map` and what it sets off).
//!
//! A snapshot maps each chunk of the origin either to a COW chunk (a
//! completed exception) or to the origin itself. Writes to a chunk without an
//! exception — through the snapshot, or to the origin (see `origin.rs`) —
//! create a *pending* exception: a COW chunk is allocated, the origin chunk
//! is copied into it (or, for a snapshot write covering the whole chunk, the
//! write itself fills it), the exception is committed to the store in
//! allocation order, and only then are the writes waiting on it released.
//!
//! Locks: a snapshot's state is behind one mutex; the store's lock may be
//! taken under it, never the reverse. No user completion, copy or commit is
//! started while the state lock is held.

use std::collections::{BTreeMap, VecDeque};

use super::bio::{Join, WriteBio, next_target_identity, split, split_write};
use super::copy::copy;
use super::origin::Origin;
use super::sequencer::Sequencer;
use super::tracked::Tracked;
use crate::chunk::ChunkSize;
use crate::exception_table::ExceptionTable;
use crate::format::Record;
use crate::io::{BlockDevice, Defer, DeviceIdentity, IoDone, IoError, IoErrorKind, IoOp, SECTOR_BYTES, WriteFlags};
use crate::store::{KernelPatches, PersistentStore, StoreKind};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex, Weak};
use crate::zoo::Mutation;

/// Whether a snapshot is an ordinary snapshot or the snapshot-merge target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Snapshot,
    Merge,
}

/// An exception being created: its COW chunk is allocated, its copy may be
/// in flight, and writes that depend on it wait here.
struct Pending {
    new_chunk: u64,
    sequence: u64,
    /// The copy (or full-chunk write) has been issued.
    started: bool,
    copy_error: bool,
    /// Origin writes waiting for this exception.
    origin_bios: Vec<WriteBio>,
    /// Snapshot writes waiting for it, already remapped to the COW.
    snapshot_bios: Vec<WriteBio>,
    /// The completion of a snapshot write that filled the whole chunk itself.
    full_bio: Option<IoDone<()>>,
}

/// What waits for a chunk's tracked I/O to drain.
enum Waiter {
    /// `pending_complete` of the chunk's exception.
    Complete { success: bool },
    /// The merge of a run, once every chunk of it has drained.
    Merge,
    /// An origin write held by an invalidated snapshot (with the
    /// kernel-patches series, see [`Snapshot::hold_for_tracked_io`]), retried
    /// once the chunk has drained; `None`: a merge's extent, told through the
    /// origin's completed-exception count as for a pending exception.
    OriginWrite(Option<WriteBio>),
}

/// A snapshot's mutable state (the kernel's `struct dm_snapshot` under `s->lock`).
///
/// Only this module edits it; the origin and the merge go through its
/// methods (and the [`Snapshot`] methods that take it), which state what
/// each step may assume.
pub(super) struct State<D: BlockDevice> {
    store: Arc<PersistentStore<D>>,
    /// Cleared by invalidation; a snapshot-merge target never clears it.
    valid: bool,
    /// A snapshot write found no space (`PO` stores): further writes fail.
    overflowed: bool,
    /// Origin writes create exceptions only once the snapshot is active.
    active: bool,
    complete: ExceptionTable,
    pending: BTreeMap<u64, Pending>,
    sequencer: Sequencer<u64>,
    /// Exceptions released by the sequencer, to be committed in this order.
    commits: VecDeque<Record>,
    /// Someone is feeding `commits` to the store.
    committing: bool,
    tracked: Tracked<Waiter>,
    /// The merge's own bookkeeping (see `merge.rs`).
    pub(super) merge: super::merge::MergeState,
}

impl<D: BlockDevice> State<D> {
    /// The state of a snapshot taking over `store` with its completed `exceptions`.
    pub(super) fn new(store: Arc<PersistentStore<D>>, complete: ExceptionTable, valid: bool, overflowed: bool) -> Self {
        // Only a `PO` store overflows; a `P` one is invalidated instead.
        assert!(!overflowed || store.kind() == StoreKind::PersistentOverflow, "a {:?} store overflowed", store.kind());
        Self {
            store,
            valid,
            overflowed,
            active: true,
            complete,
            pending: BTreeMap::new(),
            sequencer: Sequencer::new(),
            commits: VecDeque::new(),
            committing: false,
            tracked: Tracked::default(),
            merge: super::merge::MergeState::default(),
        }
    }

    /// The store a merging target merges from, while the target is valid
    /// (an invalid one merges nothing).
    pub(super) fn merge_store(&self) -> Option<&Arc<PersistentStore<D>>> {
        assert!(self.pending.is_empty(), "a merging target has exceptions pending");
        self.valid.then_some(&self.store)
    }

    /// Hands the store and the completed exceptions over to the state of a
    /// new target on the same COW; this state serves no further I/O. The
    /// snapshot must be quiet: no exception pending.
    pub(super) fn hand_over(&mut self) -> Self {
        assert!(self.pending.is_empty(), "handover from a snapshot with exceptions pending");
        // Every queued commit belongs to a pending exception.
        assert!(self.commits.is_empty(), "handover with {} commits queued", self.commits.len());
        let exceptions = self.complete.len();
        let state = State::new(Arc::clone(&self.store), std::mem::take(&mut self.complete), self.valid, self.overflowed);
        // The source receives no further I/O.
        self.valid = false;
        assert_eq!(state.complete.len(), exceptions, "handover lost exceptions");
        state
    }

    /// Where a merging target sends I/O to `chunk`: its COW chunk while the
    /// target is valid and the chunk has an exception; the origin otherwise.
    pub(super) fn merge_remap(&self, chunk: u64) -> Option<u64> {
        debug_assert!(self.pending.is_empty(), "a merging target has exceptions pending");
        if self.valid { self.complete.lookup(chunk) } else { None }
    }

    /// Forgets the exception of a merged `chunk`; its COW chunk, if it had one.
    pub(super) fn forget_merged(&mut self, chunk: u64) -> Option<u64> {
        assert!(self.pending.is_empty(), "a merging target has exceptions pending");
        assert!(self.merge.chunks > 0, "chunk {chunk} merged with no run merging");
        let exceptions = self.complete.len();
        let removed = self.complete.remove(chunk);
        assert_eq!(self.complete.len() + u64::from(removed.is_some()), exceptions, "merging chunk {chunk} forgot other exceptions");
        removed
    }

    /// Tracks a write to `chunk` remapped to the COW (a merge waits for it).
    pub(super) fn track_write(&mut self, chunk: u64) {
        debug_assert!(self.complete.lookup(chunk).is_some(), "tracked write to chunk {chunk}, which has no exception");
        // Writes to the chunks being merged wait in the merge's queue instead.
        let (first, held) = (self.merge.first_chunk, self.merge.chunks);
        assert!(!(first..first + held).contains(&chunk), "write tracked on chunk {chunk}, which is merging");
        self.tracked.start(chunk);
    }

    /// The first chunk of `chunks` with tracked I/O in flight.
    pub(super) fn first_tracked(&self, chunks: std::ops::Range<u64>) -> Option<u64> {
        assert!(!chunks.is_empty(), "no chunks to look at");
        chunks.into_iter().find(|&c| self.tracked.is_tracked(c))
    }

    /// Resumes the merge once `chunk` has no tracked I/O in flight.
    pub(super) fn wait_for_merge(&mut self, chunk: u64) {
        assert!(self.merge.chunks > 0, "waiting for chunk {chunk} with no run merging");
        self.tracked.wait(chunk, Waiter::Merge);
    }
}

/// A snapshot of an origin, with its COW device and exception store.
pub struct Snapshot<D: BlockDevice> {
    pub(super) origin: Weak<Origin<D>>,
    pub(super) origin_dev: Arc<D>,
    pub(super) cow: Arc<D>,
    pub(super) chunk: ChunkSize,
    kind: StoreKind,
    pub(super) role: Role,
    /// The target's length: the origin's size when the snapshot was made.
    target_sectors: u64,
    /// Historical bugs switched on (never, without the `bug-zoo` feature).
    pub(super) mutations: crate::zoo::Mutations,
    /// Exceptions in progress, from the start of their copy until their
    /// record is durable (or has failed): what the COW throttle counts.
    ///
    /// The kernel releases a throttle slot when `commit_exception` returns,
    /// and since its metadata writes are synchronous on the single copy
    /// callback thread, a copy whose commit waits for an area write holds
    /// its slot meanwhile. Here commits are asynchronous, so the slot is held
    /// until the exception completes: copies and commits waiting for
    /// metadata I/O together stay within the threshold, and so does memory.
    copies_in_flight: AtomicUsize,
    /// The most exceptions ever in progress at once.
    copies_in_flight_max: AtomicUsize,
    defer: Arc<dyn Defer>,
    pub(super) state: Mutex<State<D>>,
}

impl<D: BlockDevice> std::fmt::Debug for Snapshot<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("chunk", &self.chunk).field("role", &self.role).field("status", &self.status()).finish()
    }
}

impl<D: BlockDevice> Snapshot<D> {
    /// A snapshot of `origin`'s device, serving `target_sectors` sectors,
    /// whose exceptions live on `cow` with `state`.
    pub(super) fn new(
        origin: &Arc<Origin<D>>,
        cow: Arc<D>,
        chunk: ChunkSize,
        kind: StoreKind,
        role: Role,
        target_sectors: u64,
        state: State<D>,
    ) -> Self {
        assert_eq!(state.store.chunk_size(), chunk, "the snapshot's chunk size is its store's");
        assert_eq!(state.store.kind(), kind, "the snapshot's store type is its store's");
        assert!(Arc::ptr_eq(state.store.cow(), &cow), "the snapshot's COW is its store's");
        assert_eq!(target_sectors, origin.dev.size_sectors(), "a snapshot is as long as its origin");
        // A new target starts with nothing in flight.
        assert!(state.pending.is_empty() && state.commits.is_empty() && state.tracked.is_empty(), "a new target with I/O in flight");
        Self {
            origin: Arc::downgrade(origin),
            origin_dev: Arc::clone(&origin.dev),
            cow,
            chunk,
            kind,
            role,
            target_sectors,
            copies_in_flight: AtomicUsize::new(0),
            copies_in_flight_max: AtomicUsize::new(0),
            defer: Arc::clone(&origin.defer),
            state: Mutex::new(state),
            mutations: origin.config().mutations,
        }
    }

    /// A new target in `role` over this one's COW and store, taking `state`
    /// (handed over from this one's): a table reload, or the switch to snapshot-merge.
    pub(super) fn successor(&self, origin: &Arc<Origin<D>>, role: Role, state: State<D>) -> Self {
        assert!(Arc::ptr_eq(&self.origin_dev, &origin.dev), "a successor on another origin");
        Self::new(origin, Arc::clone(&self.cow), self.chunk, self.kind, role, self.target_sectors, state)
    }

    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn store(&self) -> Arc<PersistentStore<D>> {
        Arc::clone(&self.state.lock().store)
    }

    pub fn cow(&self) -> &Arc<D> {
        &self.cow
    }

    /// Power loss: every write waiting on this snapshot (on a pending
    /// exception, a tracked read or a running merge) and every queued commit
    /// is dropped without completing, as is the store's. Nothing is written.
    /// A host that throws a machine away calls this (through
    /// [`Origin::power_off`](super::Origin::power_off)) so that the closures
    /// that hold the snapshot let go of it; the snapshot must not be used
    /// afterwards.
    pub fn power_off(&self) {
        let dropped = {
            let mut state = self.state.lock();
            let pending = std::mem::take(&mut state.pending);
            let commits = std::mem::take(&mut state.commits);
            let tracked = std::mem::take(&mut state.tracked);
            let merge = std::mem::take(&mut state.merge);
            state.committing = false;
            (pending, commits, tracked, merge, Arc::clone(&state.store))
        };
        dropped.4.power_off();
        // Dropped outside the lock: the closures' captures may lead back here.
        drop(dropped);
    }

    pub fn is_valid(&self) -> bool {
        self.state.lock().valid
    }

    pub fn is_overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Completed exceptions (chunks remapped to the COW).
    pub fn exception_count(&self) -> u64 {
        self.state.lock().complete.len()
    }

    /// Runs of consecutive chunks the completed exceptions are kept in.
    pub fn run_count(&self) -> usize {
        self.state.lock().complete.run_count()
    }

    /// A copy of the table of completed exceptions: what a read of a quiet
    /// snapshot resolves its chunks by.
    pub fn completed_table(&self) -> ExceptionTable {
        let state = self.state.lock();
        let table = state.complete.clone();
        debug_assert_eq!(table, state.complete, "a copy equals its table");
        debug_assert_eq!(table.runs().map(|run| run.len).sum::<u64>(), table.len(), "the runs hold every exception");
        table
    }

    /// The COW chunk of origin chunk `chunk`, if its exception is complete.
    pub fn lookup(&self, chunk: u64) -> Option<u64> {
        let state = self.state.lock();
        let found = state.complete.lookup(chunk);
        // A chunk's exception is pending or complete, never both.
        debug_assert!(
            found.is_none() || !state.pending.contains_key(&chunk) || self.mutations.has(Mutation::Z18PendingAllocationRace),
            "chunk {chunk} both pending and complete"
        );
        found
    }

    /// Exceptions allocated but not yet complete.
    pub fn pending_count(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Exceptions in progress (copying or committing) now, and the most there
    /// have ever been at once: what the COW throttle bounds.
    pub fn copies_in_flight(&self) -> (usize, usize) {
        (self.copies_in_flight.load(Ordering::SeqCst), self.copies_in_flight_max.load(Ordering::SeqCst))
    }

    /// The status line as `dmsetup status` prints it after the target name.
    pub fn status(&self) -> String {
        let state = self.state.lock();
        assert!(!state.merge.failed || self.role == Role::Merge, "a merge failed on a snapshot that is not merging");
        if !state.valid {
            "Invalid".to_string()
        } else if state.merge.failed {
            "Merge failed".to_string()
        } else if state.overflowed {
            "Overflow".to_string()
        } else {
            state.store.usage().to_string()
        }
    }

    /// The table line's arguments after the devices: `P 8`, `PO 16`.
    pub fn table_status(&self) -> String {
        format!("{} {}", self.kind.table_name(), self.chunk.sectors())
    }

    /// Completes `done` with `error` later, never inside the caller.
    fn fail_later<T: Send + 'static>(&self, done: IoDone<T>, error: IoError) {
        // Only the target's own refusals: device errors come back through the device's completion.
        debug_assert!(
            matches!(
                error.kind,
                IoErrorKind::SnapshotInvalid | IoErrorKind::SnapshotOverflow | IoErrorKind::Misaligned { .. } | IoErrorKind::OutOfRange { .. }
            ),
            "a {:?} error made up by the target",
            error.kind
        );
        self.defer.defer(Box::new(move || done(Err(error))));
    }

    /// The kernel's `__invalidate_snapshot`: drop the store (header valid=0) and stop serving.
    fn invalidate(&self, state: &mut State<D>, why: &str) {
        // A merging target has no exceptions to fail: it is redirected to the origin instead.
        assert_eq!(self.role, Role::Snapshot, "a snapshot-merge target invalidated ({why})");
        if !state.valid {
            return;
        }
        if !state.commits.is_empty() || state.pending.values().any(|p| p.started) {
            crate::cov::hit(crate::cov::Mark::InvalidatedWithCommitsQueued);
        }
        log::error!("invalidating snapshot: {why}");
        // A durable header holds origin writes back (`hold_for_header`), and
        // a merge waiting in `write_extent` must hear when it is written.
        let done: Option<crate::store::StoreDone> = match state.store.kernel_patches() {
            KernelPatches::Stock => None,
            KernelPatches::Applied => {
                let origin = Weak::clone(&self.origin);
                Some(Box::new(move |_| {
                    if let Some(origin) = origin.upgrade() {
                        origin.header_written();
                    }
                }))
            }
        };
        state.store.drop_snapshot(done);
        state.valid = false;
        // Origin writes pass an invalid snapshot only once its store has no header in flight.
        assert!(!state.store.is_valid(), "a snapshot invalidated over a valid store");
    }

    /// If this snapshot's durable invalid header is being written, holds
    /// origin write `bio` (if not already held elsewhere) until it has been,
    /// then retries it, and returns true: the kernel writes that header
    /// synchronously under the lock every origin write takes, so none gets
    /// past this snapshot before the invalidation is on the media.
    pub(super) fn hold_for_header(&self, state: &State<D>, bio: &mut Option<WriteBio>) -> bool {
        assert_eq!(self.role, Role::Snapshot, "a merging snapshot holds no origin writes");
        // Only an invalidated store writes the invalid header.
        if state.valid {
            return false;
        }
        let origin = Weak::clone(&self.origin);
        let held = state.store.hold_until_header_written(|| {
            let write = bio.take()?;
            Some(Box::new(move || match origin.upgrade() {
                Some(origin) => origin.retry(write),
                None => {
                    let (sector, sectors) = (write.sector, write.sectors());
                    write.fail(IoError::new(IoOp::Write, sector, sectors, IoErrorKind::SnapshotInvalid));
                }
            }))
        });
        // A held write is given up to the store, never kept as well.
        debug_assert!(!held || bio.is_none(), "a write held and returned");
        held
    }

    /// With the kernel-patches series: if this snapshot is invalid and I/O
    /// mapped before the invalidation is still in flight on the chunk holding
    /// origin `sector` (a snapshot read served by the origin), holds origin
    /// write `bio` (if not already held elsewhere) until that I/O has
    /// drained, then retries it, and returns true. The stock kernel skips an
    /// invalid snapshot at once, so such a read can return the write's data
    /// (K2); the series' `__origin_write` waits as `pending_complete` does for
    /// a valid one. An exception that failed sends its origin writes back
    /// through here too, so this covers both of K2's paths.
    pub(super) fn hold_for_tracked_io(&self, state: &mut State<D>, sector: u64, bio: &mut Option<WriteBio>) -> bool {
        assert_eq!(self.role, Role::Snapshot, "a merging snapshot holds no origin writes");
        if state.valid || sector >= self.target_sectors || state.store.kernel_patches() == KernelPatches::Stock {
            return false;
        }
        let chunk = self.chunk.sector_to_chunk(sector);
        if !state.tracked.is_tracked(chunk) {
            return false;
        }
        // An invalid snapshot serves no reads, so nothing new is tracked and the wait ends.
        crate::cov::hit(crate::cov::Mark::OriginWriteWaitsForInvalidSnapshotRead);
        state.tracked.wait(chunk, Waiter::OriginWrite(bio.take()));
        // A held write is given to the waiter, never kept as well.
        debug_assert!(bio.is_none(), "a write held and returned");
        true
    }

    /// Retries an origin write [`hold_for_tracked_io`](Self::hold_for_tracked_io)
    /// held, or wakes a merge that waited on the chunk.
    fn retry_held_origin_write(&self, bio: Option<WriteBio>) {
        // Only an invalidated snapshot holds origin writes here, and it never becomes valid again.
        assert!(!self.state.lock().valid, "a snapshot valid again released a write it held for its reads");
        debug_assert!(bio.as_ref().is_none_or(|b| b.sectors() > 0), "an empty origin write was held");
        let Some(origin) = self.origin.upgrade() else {
            if let Some(write) = bio {
                let (sector, sectors) = (write.sector, write.sectors());
                write.fail(IoError::new(IoOp::Write, sector, sectors, IoErrorKind::SnapshotInvalid));
            }
            return;
        };
        match bio {
            Some(write) => origin.retry(write),
            None => origin.exception_done(),
        }
    }

    /// Allocates a pending exception for `chunk` (the kernel's `__find_pending_exception`).
    /// On no space, a `PO` snapshot written through itself overflows; otherwise it is invalidated.
    pub(super) fn allocate_pending(&self, state: &mut State<D>, chunk: u64, snapshot_write: bool) -> bool {
        assert_eq!(self.role, Role::Snapshot, "a merging snapshot makes no new exceptions");
        // Z18 drops the lock after its caller looked: the snapshot may have changed since.
        let z18 = self.mutations.has(Mutation::Z18PendingAllocationRace);
        assert!(state.valid || z18, "exception allocated for chunk {chunk} in an invalid snapshot");
        assert!(!(snapshot_write && state.overflowed), "snapshot write allocating in an overflowed snapshot");
        debug_assert!(z18 || state.complete.lookup(chunk).is_none(), "exception allocated for chunk {chunk}, which has one");
        if state.pending.contains_key(&chunk) {
            return true;
        }
        match state.store.prepare_exception() {
            Ok(new_chunk) => {
                let sequence = state.sequencer.allocate();
                // Allocation order is sequence order, and no two exceptions share a COW chunk.
                debug_assert!(state.pending.values().all(|p| p.sequence < sequence), "sequence {sequence} is not the newest");
                debug_assert!(state.pending.values().all(|p| p.new_chunk != new_chunk), "COW chunk {new_chunk} allocated twice");
                let pending = Pending {
                    new_chunk,
                    sequence,
                    started: false,
                    copy_error: false,
                    origin_bios: Vec::new(),
                    snapshot_bios: Vec::new(),
                    full_bio: None,
                };
                state.pending.insert(chunk, pending);
                true
            }
            Err(error) => {
                if snapshot_write && self.kind == StoreKind::PersistentOverflow && !self.mutations.has(Mutation::Z17OverflowInvalidatesPo) {
                    crate::cov::hit(crate::cov::Mark::OverflowRefusedWrite);
                    if state.pending.values().any(|p| p.started) {
                        crate::cov::hit(crate::cov::Mark::OverflowWithCopiesInFlight);
                    }
                    log::error!("snapshot overflowed: unable to allocate exception ({error})");
                    state.overflowed = true;
                } else {
                    self.invalidate(state, &format!("unable to allocate exception: {error}"));
                }
                assert!(state.overflowed || !state.valid, "allocation failed and the snapshot goes on as if it had not");
                false
            }
        }
    }

    // ---- what an origin write (`__origin_write`) asks of each snapshot ----

    /// The chunk holding origin `sector`, if this snapshot must preserve it
    /// before the origin is written there: the snapshot is valid and active,
    /// `sector` lies within it, and the chunk has no completed exception.
    pub(super) fn chunk_to_preserve(&self, state: &State<D>, sector: u64) -> Option<u64> {
        assert_eq!(self.role, Role::Snapshot, "a merging snapshot makes no new exceptions");
        if !state.valid || !state.active || sector >= self.target_sectors {
            return None;
        }
        let chunk = self.chunk.sector_to_chunk(sector);
        if state.complete.lookup(chunk).is_some() {
            return None;
        }
        // Whoever allocates a pending exception starts it under the same lock hold.
        debug_assert!(state.pending.get(&chunk).is_none_or(|p| p.started), "chunk {chunk} pending but never started");
        Some(chunk)
    }

    /// Whether `chunk` has a pending exception.
    pub(super) fn has_pending(&self, state: &State<D>, chunk: u64) -> bool {
        debug_assert!(!state.pending.contains_key(&chunk) || state.complete.lookup(chunk).is_none(), "chunk {chunk} both pending and complete");
        state.pending.contains_key(&chunk)
    }

    /// Z18 only: the allocation after a dropped lock forgets any pending
    /// exception another writer made for `chunk` meanwhile.
    pub(super) fn forget_pending(&self, state: &mut State<D>, chunk: u64) {
        assert!(self.mutations.has(Mutation::Z18PendingAllocationRace), "only the Z18 race replaces a pending exception");
        state.pending.remove(&chunk);
    }

    /// Holds origin write `bio` on `chunk`'s pending exception until it completes.
    pub(super) fn park_origin_write(&self, state: &mut State<D>, chunk: u64, bio: WriteBio) {
        assert_eq!(self.chunk.sector_to_chunk(bio.sector), chunk, "origin write at sector {} parked on chunk {chunk}", bio.sector);
        let pending = state.pending.get_mut(&chunk).expect("origin write parked on a chunk with no pending exception");
        crate::cov::hit(crate::cov::Mark::OriginWriteWaitsForCommit);
        pending.origin_bios.push(bio);
    }

    /// Marks `chunk`'s pending exception as started; returns whether this
    /// call started it (and so must issue its copy), or it already was.
    pub(super) fn claim_copy(&self, state: &mut State<D>, chunk: u64) -> bool {
        let pending = state.pending.get_mut(&chunk).expect("copy claimed for a chunk with no pending exception");
        let first = !pending.started;
        if !first {
            crate::cov::hit(crate::cov::Mark::OriginWriteJoinsPendingException);
        }
        // A copy fails only after it started.
        assert!(!first || !pending.copy_error, "the copy into chunk {chunk} failed before it started");
        pending.started = true;
        // An exception is committed only after its copy: one not yet started is not queued.
        debug_assert!(
            !first || self.mutations.has(Mutation::Z18PendingAllocationRace) || state.commits.iter().all(|r| r.old_chunk != chunk),
            "chunk {chunk} queued for commit before its copy started"
        );
        first
    }

    /// Exceptions in progress now (what the COW throttle compares with its threshold).
    pub(super) fn exceptions_in_progress(&self) -> usize {
        self.copies_in_flight.load(Ordering::SeqCst)
    }

    /// Checks what holds of `state` whenever its lock is released: the cheap
    /// parts always, those that walk its maps in debug builds.
    fn check(&self, state: &State<D>) {
        assert!(!state.overflowed || self.kind == StoreKind::PersistentOverflow, "a {:?} store overflowed", self.kind);
        assert!(self.role == Role::Snapshot || (state.pending.is_empty() && state.commits.is_empty()), "a merging snapshot makes exceptions");
        state.merge.check();
        if !cfg!(debug_assertions) {
            return;
        }
        let has = |mutation| self.mutations.has(mutation);
        let z18 = has(Mutation::Z18PendingAllocationRace);
        // Whoever allocates a pending exception starts it under the same lock hold.
        debug_assert!(state.pending.values().all(|p| p.started), "a pending exception never started");
        debug_assert!(z18 || state.pending.keys().all(|&c| state.complete.lookup(c).is_none()), "a chunk both pending and complete");
        // A record is queued from its copy's completion until it is handed to the store.
        debug_assert!(z18 || state.commits.iter().all(|r| state.pending.contains_key(&r.old_chunk)), "a commit queued with no exception pending");
        // Every sequence number not yet released belongs to an exception still pending.
        debug_assert!(
            z18 || has(Mutation::Z3CommitInCompletionOrder) || state.sequencer.outstanding() <= state.pending.len() as u64,
            "{} sequence numbers outstanding for {} pending exceptions",
            state.sequencer.outstanding(),
            state.pending.len()
        );
        let cow_chunks: std::collections::BTreeSet<u64> = state.pending.values().map(|p| p.new_chunk).collect();
        debug_assert_eq!(cow_chunks.len(), state.pending.len(), "two pending exceptions share a COW chunk");
        let (first, held) = (state.merge.first_chunk, state.merge.chunks);
        debug_assert!(
            state.merge.queued.iter().all(|bio| (first..first + held).contains(&self.chunk.sector_to_chunk(bio.sector))),
            "a write held back outside the run merging"
        );
        match self.role {
            // An exception completes only once no read of its chunk is on the origin (Z9, Z19: not quite).
            Role::Snapshot => debug_assert!(
                has(Mutation::Z9NoWaitForTrackedReads)
                    || has(Mutation::Z19ReadTrackedAfterUnlock)
                    || state.tracked.chunks().all(|c| state.complete.lookup(c).is_none()),
                "a read tracked on the origin for a chunk whose exception completed"
            ),
            // A run is merged only once no write to its COW chunks is in flight (Z15: its first chunk only).
            Role::Merge => debug_assert!(
                has(Mutation::Z15MergeWaitsOnFirstChunkOnly) || state.tracked.chunks().all(|c| state.complete.lookup(c).is_some()),
                "a write tracked on a COW chunk merged under it"
            ),
        }
    }

    fn remap(&self, new_chunk: u64, sector: u64) -> u64 {
        // Exceptions live in the COW's data chunks: loaded ones were checked, new ones allocated.
        debug_assert!(new_chunk < self.chunk.chunks_in(self.cow.size_sectors()), "COW chunk {new_chunk} beyond the COW");
        assert!(new_chunk > crate::format::HEADER_CHUNKS, "I/O remapped to metadata chunk {new_chunk}");
        let remapped = self.chunk.chunk_to_sector(new_chunk) + (sector & u64::from(self.chunk.sectors() - 1));
        debug_assert_eq!(self.chunk.sector_to_chunk(remapped), new_chunk);
        debug_assert_eq!(
            remapped % u64::from(self.chunk.sectors()),
            sector % u64::from(self.chunk.sectors()),
            "remapping moved the offset in the chunk"
        );
        remapped
    }

    /// Starts copying origin chunk `chunk` into its allocated COW chunk.
    pub(super) fn start_copy(self: &Arc<Self>, chunk: u64) {
        assert_eq!(self.role, Role::Snapshot, "a merging snapshot copies nothing from the origin");
        let new_chunk = {
            let state = self.state.lock();
            let pending = state.pending.get(&chunk).expect("copy of a chunk with no pending exception");
            assert!(pending.started, "copy of an exception not marked started");
            pending.new_chunk
        };
        self.account_copy_start();
        let from = self.chunk.chunk_to_sector(chunk);
        let origin_sectors = self.origin_dev.size_sectors();
        assert!(from < origin_sectors, "copy of chunk {chunk} beyond the origin's end");
        let sectors = u64::from(self.chunk.sectors()).min(origin_sectors.saturating_sub(from)) as u32;
        if sectors < self.chunk.sectors() {
            crate::cov::hit(crate::cov::Mark::CopyClippedAtOriginEnd);
        }
        // The allocator hands out only chunks that fit in the COW.
        debug_assert!(self.chunk.chunk_to_sector(new_chunk + 1) <= self.cow.size_sectors(), "COW chunk {new_chunk} beyond the COW's end");
        let this = Arc::clone(self);
        copy(
            &self.origin_dev,
            from,
            &self.cow,
            self.chunk.chunk_to_sector(new_chunk),
            sectors,
            Box::new(move |result| {
                match &result {
                    Err(crate::targets::copy::CopyError::Read(_)) => crate::cov::hit(crate::cov::Mark::CopyReadError),
                    Err(crate::targets::copy::CopyError::Write(_)) => crate::cov::hit(crate::cov::Mark::CopyWriteError),
                    Ok(()) => {}
                }
                this.copy_done(chunk, result.is_err());
            }),
        );
    }

    fn account_copy_start(&self) {
        let now = self.copies_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.copies_in_flight_max.fetch_max(now, Ordering::SeqCst);
    }

    /// A copy (or full-chunk write) has finished: the kernel's `copy_callback`.
    fn copy_done(self: &Arc<Self>, chunk: u64, copy_error: bool) {
        {
            let mut state = self.state.lock();
            let pending = state.pending.get_mut(&chunk).expect("copy finished for an unknown exception");
            // Z18 replaces pending exceptions under their copies.
            let z18 = self.mutations.has(Mutation::Z18PendingAllocationRace);
            assert!(pending.started || z18, "copy finished for chunk {chunk}, whose copy never started");
            assert!(!pending.copy_error || z18, "copy of chunk {chunk} finished twice");
            pending.copy_error = copy_error;
            if copy_error && self.mutations.has(Mutation::Z5CopyErrorSkipsCommit) {
                // Z5: the failed exception never reaches the store; it and
                // every exception allocated after it wait forever.
                return;
            }
            let sequence = pending.sequence;
            let released = state.sequencer.finish(sequence, chunk);
            if released.is_empty() {
                crate::cov::hit(crate::cov::Mark::CopyFinishedOutOfOrder);
            }
            // This exception goes first, then those that finished early and waited on it.
            assert!(released.first().is_none_or(|&first| first == chunk), "sequencer released {released:?} for chunk {chunk}");
            if self.mutations.has(Mutation::Z3CommitInCompletionOrder) {
                // Z3: commit as copies complete, whatever the allocation order.
                let new_chunk = state.pending[&chunk].new_chunk;
                state.commits.push_back(Record { old_chunk: chunk, new_chunk });
            } else {
                debug_assert!(
                    z18 || released.iter().zip(sequence..).all(|(c, s)| state.pending[c].sequence == s),
                    "sequencer released {released:?} out of allocation order"
                );
                for released in released {
                    let new_chunk = state.pending[&released].new_chunk;
                    state.commits.push_back(Record { old_chunk: released, new_chunk });
                }
            }
            self.check(&state);
        }
        self.run_commits();
    }

    /// Feeds released exceptions to the store in order. Only one caller at a
    /// time does so; others leave their exceptions in the queue for it.
    fn run_commits(self: &Arc<Self>) {
        {
            let mut state = self.state.lock();
            if state.committing {
                return;
            }
            state.committing = true;
        }
        loop {
            let (record, valid, store) = {
                let mut state = self.state.lock();
                let Some(record) = state.commits.pop_front() else {
                    if self.mutations.has(Mutation::Z21CommitFeederStopsInTwoSteps) {
                        // Z21: a commit queued between these two lock holds
                        // finds `committing` still set and leaves it to us.
                        drop(state);
                        self.state.lock().committing = false;
                        return;
                    }
                    state.committing = false;
                    return;
                };
                assert!(state.committing, "the commit feeder lost its flag");
                let pending = &state.pending[&record.old_chunk];
                // What the copy wrote is what the record says (unless Z18 replaced the exception).
                debug_assert!(
                    self.mutations.has(Mutation::Z18PendingAllocationRace) || pending.new_chunk == record.new_chunk,
                    "record {record:?} for an exception in COW chunk {}",
                    pending.new_chunk
                );
                let valid = !pending.copy_error;
                (record, valid, Arc::clone(&state.store))
            };
            let this = Arc::clone(self);
            store.commit_exception(record, valid, Box::new(move |success| this.pending_complete(record.old_chunk, success)));
        }
    }

    /// The exception's record is durable (or the snapshot failed): the kernel's `pending_complete`.
    fn pending_complete(self: &Arc<Self>, chunk: u64, success: bool) {
        let pending = {
            let mut state = self.state.lock();
            assert!(
                state.pending.contains_key(&chunk) || self.mutations.has(Mutation::Z18PendingAllocationRace),
                "completion of chunk {chunk}, not pending"
            );
            let mut failed = false;
            if !success {
                self.invalidate(&mut state, "error reading or writing");
                failed = true;
            } else if !state.valid {
                failed = true;
            } else if state.tracked.is_tracked(chunk) && !self.mutations.has(Mutation::Z9NoWaitForTrackedReads) {
                // A snapshot read of this chunk is still reading the origin.
                crate::cov::hit(crate::cov::Mark::CommitWaitsForTrackedRead);
                state.tracked.wait(chunk, Waiter::Complete { success });
                return;
            } else {
                let new_chunk = state.pending[&chunk].new_chunk;
                // The chunk the exception completes in is a data chunk in the COW (Z1: maybe metadata).
                debug_assert!(new_chunk < self.chunk.chunks_in(self.cow.size_sectors()), "exception in COW chunk {new_chunk}, beyond the COW");
                debug_assert!(
                    self.mutations.has(Mutation::Z1NoSkipMetadataAfterLoad) || !state.store.layout().is_metadata_chunk(new_chunk),
                    "exception in metadata chunk {new_chunk}"
                );
                let exceptions = state.complete.len();
                if let Err(error) = state.complete.insert(chunk, new_chunk) {
                    panic!("completed exception already in the table: {error}");
                }
                assert_eq!(state.complete.len(), exceptions + 1, "completing chunk {chunk} added no exception");
            }
            let pending = state.pending.remove(&chunk).expect("completion of an unknown exception");
            let z18 = self.mutations.has(Mutation::Z18PendingAllocationRace);
            assert!(pending.started || z18, "chunk {chunk} completed before its copy started");
            assert_eq!(failed, !state.valid, "an exception fails exactly when the snapshot is invalid");
            // A failed copy invalidates the store, and so fails its exception.
            assert!(failed || !pending.copy_error || z18, "chunk {chunk} completed although its copy failed");
            self.check(&state);
            (pending, failed)
        };
        let (pending, failed) = pending;
        let before = self.copies_in_flight.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "more exceptions completed than were started");
        let origin = self.origin.upgrade();
        if let Some(origin) = &origin {
            origin.exception_done();
        }
        let error = |sector, sectors| IoError::new(IoOp::Write, sector, sectors, IoErrorKind::SnapshotInvalid);
        let chunk_sector = self.chunk.chunk_to_sector(chunk);
        if let Some(done) = pending.full_bio {
            done(if failed { Err(error(chunk_sector, u64::from(self.chunk.sectors()))) } else { Ok(()) });
        }
        for bio in pending.snapshot_bios {
            if failed {
                let (sector, sectors) = (bio.sector, bio.sectors());
                bio.fail(error(sector, sectors));
            } else {
                self.cow.write(bio.sector, bio.data, bio.flags, bio.done);
            }
        }
        if let Some(origin) = origin {
            for bio in pending.origin_bios {
                origin.retry(bio);
            }
            origin.unpark();
        } else {
            for bio in pending.origin_bios {
                let (sector, sectors) = (bio.sector, bio.sectors());
                bio.fail(IoError::new(IoOp::Write, sector, sectors, IoErrorKind::SnapshotInvalid));
            }
        }
    }

    /// Resumes whatever waited for `chunk`'s tracked I/O to drain.
    fn release_waiters(self: &Arc<Self>, chunk: u64, waiters: Vec<Waiter>) {
        // One exception per chunk at a time, so at most one completion waits on it.
        debug_assert!(
            self.mutations.has(Mutation::Z18PendingAllocationRace) || waiters.iter().filter(|w| matches!(w, Waiter::Complete { .. })).count() <= 1,
            "two completions waited on chunk {chunk}"
        );
        for waiter in waiters {
            match waiter {
                Waiter::Complete { success } => self.pending_complete(chunk, success),
                Waiter::Merge => self.merge_drained(),
                Waiter::OriginWrite(bio) => self.retry_held_origin_write(bio),
            }
        }
    }

    /// I/O tracked on `chunk` has ended.
    pub(super) fn untrack(self: &Arc<Self>, chunk: u64) {
        debug_assert!(self.chunk.chunk_to_sector(chunk) < self.target_sectors, "I/O tracked on chunk {chunk}, beyond the snapshot");
        let waiters = {
            let mut state = self.state.lock();
            let waiters = state.tracked.end(chunk);
            // Waiters are released by the last tracked I/O on their chunk.
            debug_assert!(waiters.is_empty() || !state.tracked.is_tracked(chunk), "waiters on chunk {chunk} released early");
            waiters
        };
        self.release_waiters(chunk, waiters);
    }

    // ---- the snapshot target's map (one chunk-sized piece at a time) ----

    fn map_read(self: &Arc<Self>, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let chunk = self.chunk.sector_to_chunk(sector);
        assert_eq!(self.chunk.sector_to_chunk(sector + u64::from(sectors) - 1), chunk, "a read piece spans two chunks");
        debug_assert!(sector + u64::from(sectors) <= self.target_sectors, "read beyond the snapshot, unchecked");
        let mut state = self.state.lock();
        if self.role == Role::Merge {
            // A merging snapshot that is invalid is redirected to the origin.
            let remapped = state.merge_remap(chunk);
            drop(state);
            return match remapped {
                Some(new_chunk) => self.cow.read(self.remap(new_chunk, sector), sectors, done),
                None => self.origin_dev.read(sector, sectors, done),
            };
        }
        if !state.valid {
            drop(state);
            crate::cov::hit(crate::cov::Mark::ReadOfInvalidSnapshot);
            return self.fail_later(done, IoError::new(IoOp::Read, sector, u64::from(sectors), IoErrorKind::SnapshotInvalid));
        }
        if let Some(new_chunk) = state.complete.lookup(chunk) {
            drop(state);
            return self.cow.read(self.remap(new_chunk, sector), sectors, done);
        }
        // Served by the origin: tracked, under the same lock hold as the
        // lookup, so that an exception completing meanwhile does not let an
        // origin write overtake this read.
        if self.mutations.has(Mutation::Z19ReadTrackedAfterUnlock) {
            // Z19: the exception may complete between lookup and tracking.
            drop(state);
            state = self.state.lock();
        }
        if state.pending.contains_key(&chunk) {
            crate::cov::hit(crate::cov::Mark::ReadRacesCopy);
        }
        state.tracked.start(chunk);
        drop(state);
        let this = Arc::clone(self);
        self.origin_dev.read(
            sector,
            sectors,
            Box::new(move |result| {
                this.untrack(chunk);
                done(result);
            }),
        );
    }

    fn map_write(self: &Arc<Self>, bio: WriteBio) {
        debug_assert!(bio.sector + bio.sectors() <= self.target_sectors, "write beyond the snapshot, unchecked");
        if self.role == Role::Merge {
            return self.merge_map_write(bio);
        }
        let chunk = self.chunk.sector_to_chunk(bio.sector);
        assert_eq!(self.chunk.sector_to_chunk(bio.sector + bio.sectors() - 1), chunk, "a write piece spans two chunks");
        let mut state = self.state.lock();
        if !state.valid || state.overflowed {
            let kind = if state.valid { IoErrorKind::SnapshotOverflow } else { IoErrorKind::SnapshotInvalid };
            drop(state);
            let error = IoError::new(IoOp::Write, bio.sector, bio.sectors(), kind);
            return self.fail_later(bio.done, error);
        }
        if let Some(new_chunk) = state.complete.lookup(chunk) {
            drop(state);
            return self.cow.write(self.remap(new_chunk, bio.sector), bio.data, bio.flags, bio.done);
        }
        if !self.allocate_pending(&mut state, chunk, true) {
            let kind = if state.valid { IoErrorKind::SnapshotOverflow } else { IoErrorKind::SnapshotInvalid };
            drop(state);
            let error = IoError::new(IoOp::Write, bio.sector, bio.sectors(), kind);
            return self.fail_later(bio.done, error);
        }
        let pending = state.pending.get_mut(&chunk).expect("just allocated");
        let remapped = self.remap(pending.new_chunk, bio.sector);
        let whole_chunk = bio.data.len() == self.chunk.bytes();
        if !pending.started && whole_chunk {
            crate::cov::hit(crate::cov::Mark::SnapshotWriteWholeChunk);
            // The write fills the chunk: no copy, but it is acknowledged only
            // once its exception is committed.
            debug_assert_eq!(bio.sector % u64::from(self.chunk.sectors()), 0, "a whole-chunk write starts at its chunk");
            // An exception is started under the lock hold that allocates it: none waits on it yet.
            assert!(pending.origin_bios.is_empty() && pending.snapshot_bios.is_empty(), "writes wait on chunk {chunk} before its copy");
            assert!(!pending.copy_error, "the copy into chunk {chunk} failed before it started");
            pending.started = true;
            // Z12: acknowledged as soon as the data is written, before the commit.
            let early_ack = if self.mutations.has(Mutation::Z12FullChunkWriteAckedBeforeCommit) {
                Some(bio.done)
            } else {
                pending.full_bio = Some(bio.done);
                None
            };
            drop(state);
            self.account_copy_start();
            let this = Arc::clone(self);
            return self.cow.write(
                remapped,
                bio.data,
                bio.flags,
                Box::new(move |result| {
                    let failed = result.is_err();
                    if let Some(done) = early_ack {
                        done(result);
                    }
                    this.copy_done(chunk, failed);
                }),
            );
        }
        pending.snapshot_bios.push(WriteBio { sector: remapped, ..bio });
        let start = !pending.started;
        if start {
            crate::cov::hit(crate::cov::Mark::SnapshotWriteNeedsCopy);
        }
        pending.started = true;
        drop(state);
        if start {
            self.start_copy(chunk);
        }
    }

    /// Where requests to this target are split: its chunk size, or for a
    /// snapshot-merge target (which acts as an origin too) the smallest chunk
    /// size of the origin's snapshots.
    fn split_boundary(&self) -> u64 {
        let own = u64::from(self.chunk.sectors());
        let boundary = match (self.role, self.origin.upgrade()) {
            (Role::Merge, Some(origin)) => origin.minimum_chunk_sectors().map_or(own, |s| own.min(u64::from(s))),
            _ => own,
        };
        // Never coarser than the chunk: a piece maps to one chunk of this snapshot.
        assert!(boundary <= own && own % boundary == 0, "split at {boundary} sectors for chunks of {own}");
        boundary
    }

    /// Submits a write to the snapshot, after the COW throttle admits it.
    pub(super) fn write_admitted(self: &Arc<Self>, bio: WriteBio) {
        self.map_write(bio);
    }
}

/// The snapshot as a block device: what `/dev/mapper/<snapshot>` serves.
#[derive(Debug)]
pub struct SnapshotDevice<D: BlockDevice> {
    snapshot: Arc<Snapshot<D>>,
    identity: DeviceIdentity,
}

impl<D: BlockDevice> SnapshotDevice<D> {
    pub fn new(snapshot: Arc<Snapshot<D>>) -> Self {
        Self { snapshot, identity: next_target_identity() }
    }

    pub fn snapshot(&self) -> &Arc<Snapshot<D>> {
        &self.snapshot
    }
}

impl<D: BlockDevice> BlockDevice for SnapshotDevice<D> {
    fn size_sectors(&self) -> u64 {
        self.snapshot.target_sectors
    }

    fn logical_block_bytes(&self) -> u32 {
        self.snapshot.origin_dev.logical_block_bytes()
    }

    fn identity(&self) -> DeviceIdentity {
        self.identity
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let snapshot = &self.snapshot;
        if let Err(error) = crate::io::check_request(IoOp::Read, sector, sectors as usize * SECTOR_BYTES, self.size_sectors()) {
            return snapshot.fail_later(done, error);
        }
        let whole_chunks_end = snapshot.chunk.chunk_to_sector(snapshot.chunk.chunks_in(self.size_sectors()));
        if sector + u64::from(sectors) > whole_chunks_end {
            crate::cov::hit(crate::cov::Mark::ReadPastLastWholeChunk);
        }
        let pieces = split(sector, u64::from(sectors), snapshot.split_boundary());
        let join = Join::new(pieces.len(), vec![0u8; sectors as usize * SECTOR_BYTES], done);
        for (piece_sector, piece_sectors) in pieces {
            let offset = (piece_sector - sector) as usize * SECTOR_BYTES;
            let fill = join.piece(move |buffer: &mut Vec<u8>, data: Vec<u8>| {
                debug_assert_eq!(data.len() as u64, piece_sectors * SECTOR_BYTES as u64, "a read returned other than the sectors asked for");
                buffer[offset..offset + data.len()].copy_from_slice(&data);
            });
            snapshot.map_read(piece_sector, piece_sectors as u32, fill);
        }
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        let snapshot = &self.snapshot;
        if let Err(error) = crate::io::check_request(IoOp::Write, sector, data.len(), self.size_sectors()) {
            return snapshot.fail_later(done, error);
        }
        if snapshot.role == Role::Merge && flags.preflush {
            // dm core sends a PREFLUSH write's flush ahead of its data, as an
            // empty flush to each of the target's flush bios — snapshot-merge
            // has two, the origin and the COW — and then the data without
            // the flag. Passing the flag on with the data alone would flush
            // only the device the chunk maps to: the other's completed
            // writes, which the caller's PREFLUSH promises durable, could be
            // lost in a crash.
            let snapshot = Arc::clone(snapshot);
            let data_flags = WriteFlags { preflush: false, ..flags };
            let boundary = snapshot.split_boundary();
            let then_write: IoDone<()> = Box::new(move |flushed| match flushed {
                Err(error) => done(Err(error)),
                Ok(()) => split_write(sector, data, data_flags, boundary, done, |bio| match snapshot.origin.upgrade() {
                    Some(origin) => origin.submit_snapshot_write(&snapshot, bio),
                    None => snapshot.write_admitted(bio),
                }),
            });
            return self.flush(then_write);
        }
        split_write(sector, data, flags, snapshot.split_boundary(), done, |bio| match snapshot.origin.upgrade() {
            Some(origin) => origin.submit_snapshot_write(snapshot, bio),
            None => snapshot.write_admitted(bio),
        });
    }

    fn flush(&self, done: IoDone<()>) {
        // A snapshot's flushes go to the COW; a merging snapshot's to both devices.
        let snapshot = &self.snapshot;
        if snapshot.role == Role::Merge {
            let join = Join::new(2, (), done);
            snapshot.origin_dev.flush(join.piece(|_: &mut (), _: ()| {}));
            snapshot.cow.flush(join.piece(|_: &mut (), _: ()| {}));
        } else {
            snapshot.cow.flush(done);
        }
    }
}
