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
use crate::store::{PersistentStore, StoreKind};
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
pub(super) struct Pending {
    pub(super) new_chunk: u64,
    pub(super) sequence: u64,
    /// The copy (or full-chunk write) has been issued.
    pub(super) started: bool,
    pub(super) copy_error: bool,
    /// Origin writes waiting for this exception.
    pub(super) origin_bios: Vec<WriteBio>,
    /// Snapshot writes waiting for it, already remapped to the COW.
    pub(super) snapshot_bios: Vec<WriteBio>,
    /// The completion of a snapshot write that filled the whole chunk itself.
    pub(super) full_bio: Option<IoDone<()>>,
}

/// What waits for a chunk's tracked I/O to drain.
pub(super) enum Waiter {
    /// `pending_complete` of the chunk's exception.
    Complete { success: bool },
    /// The merge of a run, once every chunk of it has drained.
    Merge,
}

/// A snapshot's mutable state (the kernel's `struct dm_snapshot` under `s->lock`).
pub(super) struct State<D: BlockDevice> {
    pub(super) store: Arc<PersistentStore<D>>,
    /// Cleared by invalidation; a snapshot-merge target never clears it.
    pub(super) valid: bool,
    /// A snapshot write found no space (`PO` stores): further writes fail.
    pub(super) overflowed: bool,
    /// Origin writes create exceptions only once the snapshot is active.
    pub(super) active: bool,
    pub(super) complete: ExceptionTable,
    pub(super) pending: BTreeMap<u64, Pending>,
    pub(super) sequencer: Sequencer<u64>,
    /// Exceptions released by the sequencer, to be committed in this order.
    pub(super) commits: VecDeque<Record>,
    /// Someone is feeding `commits` to the store.
    pub(super) committing: bool,
    pub(super) tracked: Tracked<Waiter>,
    pub(super) merge: super::merge::MergeState,
}

impl<D: BlockDevice> State<D> {
    /// The state of a snapshot taking over `store` with its completed `exceptions`.
    pub(super) fn new(store: Arc<PersistentStore<D>>, complete: ExceptionTable, valid: bool, overflowed: bool) -> Self {
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
}

/// A snapshot of an origin, with its COW device and exception store.
pub struct Snapshot<D: BlockDevice> {
    pub(super) origin: Weak<Origin<D>>,
    pub(super) origin_dev: Arc<D>,
    pub(super) cow: Arc<D>,
    pub(super) chunk: ChunkSize,
    pub(super) kind: StoreKind,
    pub(super) role: Role,
    /// The target's length: the origin's size when the snapshot was made.
    pub(super) target_sectors: u64,
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
    pub(super) copies_in_flight: AtomicUsize,
    /// The most exceptions ever in progress at once.
    pub(super) copies_in_flight_max: AtomicUsize,
    pub(super) defer: Arc<dyn Defer>,
    pub(super) state: Mutex<State<D>>,
}

impl<D: BlockDevice> std::fmt::Debug for Snapshot<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("chunk", &self.chunk).field("role", &self.role).field("status", &self.status()).finish()
    }
}

impl<D: BlockDevice> Snapshot<D> {
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

    /// The COW chunk of origin chunk `chunk`, if its exception is complete.
    pub fn lookup(&self, chunk: u64) -> Option<u64> {
        self.state.lock().complete.lookup(chunk)
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
    pub(super) fn fail_later<T: Send + 'static>(&self, done: IoDone<T>, error: IoError) {
        self.defer.defer(Box::new(move || done(Err(error))));
    }

    /// The kernel's `__invalidate_snapshot`: drop the store (header valid=0) and stop serving.
    pub(super) fn invalidate(&self, state: &mut State<D>, why: &str) {
        if !state.valid {
            return;
        }
        log::error!("invalidating snapshot: {why}");
        state.store.drop_snapshot(None);
        state.valid = false;
    }

    /// Allocates a pending exception for `chunk` (the kernel's `__find_pending_exception`).
    /// On no space, a `PO` snapshot written through itself overflows; otherwise it is invalidated.
    pub(super) fn allocate_pending(&self, state: &mut State<D>, chunk: u64, snapshot_write: bool) -> bool {
        if state.pending.contains_key(&chunk) {
            return true;
        }
        match state.store.prepare_exception() {
            Ok(new_chunk) => {
                let sequence = state.sequencer.allocate();
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
                    log::error!("snapshot overflowed: unable to allocate exception ({error})");
                    state.overflowed = true;
                } else {
                    self.invalidate(state, &format!("unable to allocate exception: {error}"));
                }
                false
            }
        }
    }

    fn remap(&self, new_chunk: u64, sector: u64) -> u64 {
        self.chunk.chunk_to_sector(new_chunk) + (sector & u64::from(self.chunk.sectors() - 1))
    }

    /// Starts copying origin chunk `chunk` into its allocated COW chunk.
    pub(super) fn start_copy(self: &Arc<Self>, chunk: u64) {
        let new_chunk = {
            let state = self.state.lock();
            let pending = state.pending.get(&chunk).expect("copy of a chunk with no pending exception");
            assert!(pending.started, "copy of an exception not marked started");
            pending.new_chunk
        };
        self.account_copy_start();
        let from = self.chunk.chunk_to_sector(chunk);
        let origin_sectors = self.origin_dev.size_sectors();
        let sectors = u64::from(self.chunk.sectors()).min(origin_sectors.saturating_sub(from)) as u32;
        let this = Arc::clone(self);
        copy(
            &self.origin_dev,
            from,
            &self.cow,
            self.chunk.chunk_to_sector(new_chunk),
            sectors,
            Box::new(move |result| {
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
            pending.copy_error = copy_error;
            if copy_error && self.mutations.has(Mutation::Z5CopyErrorSkipsCommit) {
                // Z5: the failed exception never reaches the store; it and
                // every exception allocated after it wait forever.
                return;
            }
            let sequence = pending.sequence;
            let released = state.sequencer.finish(sequence, chunk);
            if self.mutations.has(Mutation::Z3CommitInCompletionOrder) {
                // Z3: commit as copies complete, whatever the allocation order.
                let new_chunk = state.pending[&chunk].new_chunk;
                state.commits.push_back(Record { old_chunk: chunk, new_chunk });
            } else {
                for released in released {
                    let new_chunk = state.pending[&released].new_chunk;
                    state.commits.push_back(Record { old_chunk: released, new_chunk });
                }
            }
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
                let valid = !state.pending[&record.old_chunk].copy_error;
                (record, valid, Arc::clone(&state.store))
            };
            let this = Arc::clone(self);
            store.commit_exception(record, valid, Box::new(move |success| this.pending_complete(record.old_chunk, success)));
        }
    }

    /// The exception's record is durable (or the snapshot failed): the kernel's `pending_complete`.
    pub(super) fn pending_complete(self: &Arc<Self>, chunk: u64, success: bool) {
        let pending = {
            let mut state = self.state.lock();
            let mut failed = false;
            if !success {
                self.invalidate(&mut state, "error reading or writing");
                failed = true;
            } else if !state.valid {
                failed = true;
            } else if state.tracked.is_tracked(chunk) && !self.mutations.has(Mutation::Z9NoWaitForTrackedReads) {
                // A snapshot read of this chunk is still reading the origin.
                state.tracked.wait(chunk, Waiter::Complete { success });
                return;
            } else {
                let new_chunk = state.pending[&chunk].new_chunk;
                if let Err(error) = state.complete.insert(chunk, new_chunk) {
                    panic!("completed exception already in the table: {error}");
                }
            }
            let pending = state.pending.remove(&chunk).expect("completion of an unknown exception");
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
    pub(super) fn release_waiters(self: &Arc<Self>, chunk: u64, waiters: Vec<Waiter>) {
        for waiter in waiters {
            match waiter {
                Waiter::Complete { success } => self.pending_complete(chunk, success),
                Waiter::Merge => self.merge_drained(),
            }
        }
    }

    /// I/O tracked on `chunk` has ended.
    pub(super) fn untrack(self: &Arc<Self>, chunk: u64) {
        let waiters = self.state.lock().tracked.end(chunk);
        self.release_waiters(chunk, waiters);
    }

    // ---- the snapshot target's map (one chunk-sized piece at a time) ----

    fn map_read(self: &Arc<Self>, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let chunk = self.chunk.sector_to_chunk(sector);
        let mut state = self.state.lock();
        if self.role == Role::Merge {
            // A merging snapshot that is invalid is redirected to the origin.
            let remapped = if state.valid { state.complete.lookup(chunk) } else { None };
            drop(state);
            return match remapped {
                Some(new_chunk) => self.cow.read(self.remap(new_chunk, sector), sectors, done),
                None => self.origin_dev.read(sector, sectors, done),
            };
        }
        if !state.valid {
            drop(state);
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
        if self.role == Role::Merge {
            return self.merge_map_write(bio);
        }
        let chunk = self.chunk.sector_to_chunk(bio.sector);
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
        let remapped = self.chunk.chunk_to_sector(pending.new_chunk) + (bio.sector & u64::from(self.chunk.sectors() - 1));
        let whole_chunk = bio.data.len() == self.chunk.bytes();
        if !pending.started && whole_chunk {
            // The write fills the chunk: no copy, but it is acknowledged only
            // once its exception is committed.
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
        match (self.role, self.origin.upgrade()) {
            (Role::Merge, Some(origin)) => origin.minimum_chunk_sectors().map_or(own, |s| own.min(u64::from(s))),
            _ => own,
        }
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
        let pieces = split(sector, u64::from(sectors), snapshot.split_boundary());
        let join = Join::new(pieces.len(), vec![0u8; sectors as usize * SECTOR_BYTES], done);
        for (piece_sector, piece_sectors) in pieces {
            let offset = (piece_sector - sector) as usize * SECTOR_BYTES;
            let fill = join.piece(move |buffer: &mut Vec<u8>, data: Vec<u8>| {
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
