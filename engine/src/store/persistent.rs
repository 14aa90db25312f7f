//! The running persistent store: allocation, batched commits, merge and drop.
//!
//! The kernel does its metadata I/O synchronously from one worker thread, so
//! commits are naturally serialised. Here the I/O is asynchronous, so the
//! store is a small state machine: while an area write (or the zeroing of the
//! next area) is in flight, further commits wait in a queue, in arrival order,
//! and are taken up when it completes — exactly the order the kernel's worker
//! would have run them in. Callbacks never run under the store's lock.
//!
//! With [`KernelPatches::Applied`] the invalidated header is written with FUA
//! and, until that write completes, the store says so
//! ([`header_in_flight`](PersistentStore::header_in_flight)) and keeps
//! whatever must wait for it ([`hold_until_header_written`](PersistentStore::hold_until_header_written)):
//! the kernel writes that header synchronously under the snapshot's lock, so
//! no origin write gets past the snapshot before the write has completed.

use std::collections::VecDeque;

use super::{KernelPatches, StoreError, StoreKind, Usage};
use crate::chunk::ChunkSize;
use crate::format::{DiskHeader, Layout, Record, clear_record};
use crate::io::{BlockDevice, IoError, WriteFlags};
use crate::sync::{Arc, Mutex};
use crate::zoo::{Mutation, Mutations};

/// Called once a committed exception's record is durable (`true`), or with
/// `false` if the snapshot became invalid (the record may not be on disk).
pub type CommitCallback = Box<dyn FnOnce(bool) + Send + 'static>;

/// Receives the outcome of a merge step or of dropping the snapshot.
pub type StoreDone = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// Work that waits for the invalidated header's write to complete (an
/// origin write to retry), run once it has, outside the store's lock.
pub type HeaderWaiter = Box<dyn FnOnce() + Send + 'static>;

/// A run of exceptions to merge, found by [`PersistentStore::prepare_merge`]:
/// origin chunks `last_old_chunk + 1 - count ..= last_old_chunk` live in COW
/// chunks `last_new_chunk + 1 - count ..= last_new_chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeRun {
    pub last_old_chunk: u64,
    pub last_new_chunk: u64,
    pub count: u32,
}

/// What [`PersistentStore::prepare_merge`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStep {
    /// The newest records form this run.
    Run(MergeRun),
    /// The current area is used up: call
    /// [`read_previous_area`](PersistentStore::read_previous_area), then prepare again.
    NeedPreviousArea,
    /// No records are left: the merge is complete.
    Done,
}

/// What the metadata I/O machinery is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A full area is about to be committed; the next area is being zeroed first.
    ZeroingNextArea,
    /// The current area is being written with PREFLUSH|FUA.
    WritingArea,
    /// A merge read or write of the current area is in flight.
    MergeIo,
}

struct QueuedCommit {
    record: Record,
    valid: bool,
    callback: CommitCallback,
}

/// The store's mutable state, the kernel's `struct pstore`.
pub(super) struct State {
    /// Cleared on any metadata error or invalidation; never set again.
    pub(super) valid: bool,
    /// Index of the metadata area held in `area`.
    pub(super) current_area: u64,
    /// Records used in `area`.
    pub(super) current_committed: u32,
    /// The next chunk to allocate (never the header or a metadata area).
    pub(super) next_free: u64,
    /// Exceptions prepared but not yet committed.
    pub(super) pending_count: u64,
    /// The current metadata area, as it will be written.
    pub(super) area: Vec<u8>,
    phase: Phase,
    /// Callbacks of records in `area` not yet written.
    callbacks: Vec<CommitCallback>,
    /// Commits that arrived while metadata I/O was in flight.
    queued: VecDeque<QueuedCommit>,
    /// The durable `valid = 0` header write is in flight ([`KernelPatches::Applied`] only).
    header_in_flight: bool,
    /// What waits for that write to complete.
    header_waiters: Vec<HeaderWaiter>,
}

impl State {
    pub(super) fn new(chunk: ChunkSize) -> Self {
        // An area is a whole number of records.
        assert_eq!(chunk.bytes() % crate::format::RECORD_BYTES, 0, "{chunk:?} does not hold whole records");
        // The first data chunk: after the header and metadata area 0.
        debug_assert!(!Layout::new(chunk).is_metadata_chunk(crate::format::HEADER_CHUNKS + 1));
        Self {
            valid: true,
            current_area: 0,
            current_committed: 0,
            next_free: crate::format::HEADER_CHUNKS + 1,
            pending_count: 0,
            area: vec![0; chunk.bytes()],
            phase: Phase::Idle,
            callbacks: Vec::new(),
            queued: VecDeque::new(),
            header_in_flight: false,
            header_waiters: Vec::new(),
        }
    }
}

impl State {
    /// Checks what holds of the store's state whenever its lock is released:
    /// the cheap parts always, the scan of the area in debug builds.
    pub(super) fn check(&self, layout: Layout, mutations: Mutations) {
        let per_area = layout.exceptions_per_area();
        assert!(self.current_committed <= per_area, "area {} holds {} records", self.current_area, self.current_committed);
        // Callbacks wait only for records already in the area.
        assert!(self.callbacks.len() <= self.current_committed as usize, "{} callbacks for {} records", self.callbacks.len(), self.current_committed);
        assert!(
            self.queued.len() as u64 <= self.pending_count,
            "{} commits queued for {} exceptions prepared",
            self.queued.len(),
            self.pending_count
        );
        assert!(self.phase != Phase::MergeIo || (self.pending_count == 0 && self.queued.is_empty()), "merge I/O with exceptions pending");
        assert!(
            self.phase != Phase::ZeroingNextArea || self.current_committed == per_area,
            "next area zeroed while area {} has room",
            self.current_area
        );
        assert!(self.phase != Phase::WritingArea || self.current_committed > 0, "area {} written with no record in it", self.current_area);
        assert_eq!(self.area.len(), layout.chunk().bytes(), "the in-memory area is one chunk");
        // Only an invalidated store writes the invalid header, and only while it is in flight is anything held for it.
        assert!(!self.header_in_flight || !self.valid, "the invalid header in flight for a valid store");
        assert!(self.header_in_flight || self.header_waiters.is_empty(), "{} waiters held for no header write", self.header_waiters.len());
        // Z1: the allocator may resume on a metadata chunk after a load.
        let z1 = mutations.has(Mutation::Z1NoSkipMetadataAfterLoad);
        assert!(z1 || !layout.is_metadata_chunk(self.next_free), "allocator at metadata chunk {}", self.next_free);
        // Every full area before the current one holds records of distinct data chunks below
        // the allocator, and there are as many data chunks below the current area: the
        // allocator lies beyond it (Z8: the areas skipped at load hold no records in memory).
        assert!(
            z1 || mutations.has(Mutation::Z8LoadSkipsEveryOtherArea) || self.next_free > layout.area_location(self.current_area),
            "allocator at chunk {} before area {}",
            self.next_free,
            self.current_area
        );
        // Past the last record the area is zero, so the next commit takes a free slot and a
        // load stops at the record after the last.
        debug_assert!(
            self.area[self.current_committed as usize * crate::format::RECORD_BYTES..].iter().all(|&b| b == 0),
            "area {} not zero after its {} records",
            self.current_area,
            self.current_committed
        );
    }
}

/// What to do once the lock is released.
enum Step {
    Nothing,
    ZeroArea { chunk: u64 },
    WriteArea { chunk: u64, bytes: Vec<u8> },
    RunCallbacks { callbacks: Vec<CommitCallback>, valid: bool },
}

/// A persistent exception store on a COW device.
pub struct PersistentStore<D: BlockDevice> {
    pub(super) cow: Arc<D>,
    pub(super) kind: StoreKind,
    pub(super) layout: Layout,
    pub(super) state: Mutex<State>,
    pub(super) mutations: Mutations,
    pub(super) kernel_patches: KernelPatches,
}

impl<D: BlockDevice> std::fmt::Debug for PersistentStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("PersistentStore")
            .field("kind", &self.kind)
            .field("chunk", &self.layout.chunk())
            .field("valid", &state.valid)
            .field("current_area", &state.current_area)
            .field("current_committed", &state.current_committed)
            .field("next_free", &state.next_free)
            .field("pending_count", &state.pending_count)
            .field("phase", &state.phase)
            .field("kernel_patches", &self.kernel_patches)
            .field("header_in_flight", &state.header_in_flight)
            .finish()
    }
}

impl<D: BlockDevice> PersistentStore<D> {
    /// Power loss: the callbacks of commits not yet durable are dropped
    /// without being called, and queued commits and what waits for the
    /// invalid header are forgotten. Nothing is written; the store must not
    /// be used afterwards.
    pub fn power_off(&self) {
        let (callbacks, queued, header_waiters) = {
            let mut state = self.state.lock();
            // Callbacks wait only for records already in the area.
            assert!(
                state.callbacks.len() <= state.current_committed as usize,
                "{} callbacks for {} records",
                state.callbacks.len(),
                state.current_committed
            );
            (std::mem::take(&mut state.callbacks), std::mem::take(&mut state.queued), std::mem::take(&mut state.header_waiters))
        };
        // Dropped outside the lock: a callback's captures may lead back here.
        drop((callbacks, queued, header_waiters));
    }

    /// How this store writes its headers.
    pub fn kernel_patches(&self) -> KernelPatches {
        self.kernel_patches
    }

    /// Whether the durable `valid = 0` header is being written: until it
    /// has completed, no origin write may pass this snapshot (always false
    /// with [`KernelPatches::Stock`], whose header write nothing waits for).
    pub fn header_in_flight(&self) -> bool {
        let state = self.state.lock();
        assert!(!state.header_in_flight || self.kernel_patches == KernelPatches::Applied, "a stock store waits for its header");
        state.header_in_flight
    }

    /// If the durable `valid = 0` header is being written, keeps what
    /// `waiter` makes (if anything) to run once that write has completed
    /// and returns true; otherwise returns false without calling `waiter`.
    /// The check and the keeping are one step under the store's lock, so a
    /// completion in between cannot strand a waiter.
    pub fn hold_until_header_written(&self, waiter: impl FnOnce() -> Option<HeaderWaiter>) -> bool {
        let mut state = self.state.lock();
        if !state.header_in_flight {
            return false;
        }
        assert!(!state.valid, "a valid store holding writes for its header");
        if let Some(waiter) = waiter() {
            state.header_waiters.push(waiter);
        }
        true
    }

    /// The chunk size in force (the header's, once loaded).
    pub fn chunk_size(&self) -> ChunkSize {
        self.layout.chunk()
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    pub fn cow(&self) -> &Arc<D> {
        &self.cow
    }

    /// Whether no metadata error or invalidation has happened.
    pub fn is_valid(&self) -> bool {
        self.state.lock().valid
    }

    /// The next chunk the allocator will hand out.
    pub fn next_free(&self) -> u64 {
        let next_free = self.state.lock().next_free;
        // Z1: the allocator may resume on a metadata chunk after a load.
        assert!(
            self.mutations.has(Mutation::Z1NoSkipMetadataAfterLoad) || !self.layout.is_metadata_chunk(next_free),
            "allocator at metadata chunk {next_free}"
        );
        next_free
    }

    /// `(current_area, current_committed)`: where the next record goes.
    pub fn position(&self) -> (u64, u32) {
        let state = self.state.lock();
        assert!(
            state.current_committed <= self.layout.exceptions_per_area(),
            "area {} holds {} records",
            state.current_area,
            state.current_committed
        );
        (state.current_area, state.current_committed)
    }

    /// Exceptions prepared but not yet committed.
    pub fn pending_count(&self) -> u64 {
        self.state.lock().pending_count
    }

    /// The table's store arguments as `dmsetup table` prints them: `P 8`.
    pub fn table_status(&self) -> String {
        format!("{} {}", self.kind.table_name(), self.layout.chunk().sectors())
    }

    /// The kernel's `persistent_usage`.
    pub fn usage(&self) -> Usage {
        let state = self.state.lock();
        let chunk_sectors = u64::from(self.layout.chunk().sectors());
        // Every area up to the current one holds records of chunks the allocator has passed.
        assert!(
            state.next_free >= state.current_area + 1 + crate::format::HEADER_CHUNKS,
            "allocator at chunk {} behind metadata area {}",
            state.next_free,
            state.current_area
        );
        Usage {
            sectors_allocated: state.next_free * chunk_sectors,
            total_sectors: self.cow.size_sectors(),
            metadata_sectors: (state.current_area + 1 + crate::format::HEADER_CHUNKS) * chunk_sectors,
        }
    }

    /// Allocates the COW chunk for a new exception, or fails when the device
    /// has no room for one more chunk (the kernel's `-ENOSPC`).
    pub fn prepare_exception(&self) -> Result<u64, StoreError> {
        let mut state = self.state.lock();
        assert_ne!(state.phase, Phase::MergeIo, "an exception prepared during a merge");
        let chunk_sectors = u64::from(self.layout.chunk().sectors());
        let device_sectors = self.cow.size_sectors();
        let next_free = state.next_free;
        if device_sectors < (next_free + 1).saturating_mul(chunk_sectors) {
            crate::cov::hit(crate::cov::Mark::AllocationNoSpace);
            return Err(StoreError::NoSpace { device_sectors, next_free });
        }
        let z1 = self.mutations.has(Mutation::Z1NoSkipMetadataAfterLoad);
        assert!(z1 || !self.layout.is_metadata_chunk(next_free), "allocator points at metadata chunk {next_free}");
        assert!(next_free > crate::format::HEADER_CHUNKS, "allocator at chunk {next_free}, the header or area 0");
        // Z22: the allocator forgets to step over the next metadata area.
        let z22 = self.mutations.has(Mutation::Z22NoSkipMetadataOnAllocation);
        state.next_free = if z22 { next_free + 1 } else { self.layout.skip_metadata(next_free + 1) };
        if state.next_free > next_free + 1 {
            crate::cov::hit(crate::cov::Mark::AllocationSkippedMetadata);
        }
        state.pending_count += 1;
        // Chunks are handed out in increasing order, each once.
        assert!(state.next_free > next_free);
        state.check(self.layout, self.mutations);
        Ok(next_free)
    }

    /// Records a prepared exception. `valid == false` (a failed copy)
    /// invalidates the store. The callback runs once the record is durable —
    /// when the batch of records it belongs to has been written with
    /// PREFLUSH|FUA — with the store's validity at that moment.
    pub fn commit_exception(self: &Arc<Self>, record: Record, valid: bool, callback: CommitCallback) {
        let z1 = self.mutations.has(Mutation::Z1NoSkipMetadataAfterLoad);
        assert!(z1 || !self.layout.is_metadata_chunk(record.new_chunk), "commit of metadata chunk {}", record.new_chunk);
        // A record with COW chunk 0 would read back as the area's end marker.
        assert!(!record.is_end_marker(), "commit of {record:?}, an end marker");
        let step = {
            let mut state = self.state.lock();
            assert!(record.new_chunk < state.next_free, "commit of chunk {} never allocated (next free {})", record.new_chunk, state.next_free);
            assert_ne!(state.phase, Phase::MergeIo, "an exception committed during a merge");
            match state.phase {
                Phase::WritingArea => crate::cov::hit(crate::cov::Mark::CommitQueuedBehindAreaWrite),
                Phase::ZeroingNextArea => crate::cov::hit(crate::cov::Mark::CommitQueuedBehindZeroing),
                _ => {}
            }
            state.queued.push_back(QueuedCommit { record, valid, callback });
            assert!(state.queued.len() as u64 <= state.pending_count, "more commits queued than exceptions prepared");
            self.advance(&mut state)
        };
        self.perform(step);
    }

    /// Takes up queued commits until one needs metadata I/O (or none is left).
    fn advance(&self, state: &mut State) -> Step {
        state.check(self.layout, self.mutations);
        if state.phase != Phase::Idle {
            return Step::Nothing;
        }
        let per_area = self.layout.exceptions_per_area();
        while let Some(commit) = state.queued.pop_front() {
            if !commit.valid {
                crate::cov::hit(crate::cov::Mark::CommitOfFailedCopy);
                state.valid = false;
            }
            assert!(state.current_committed < per_area, "area {} overfull", state.current_area);
            assert!(state.pending_count > 0, "commit of an exception that was never prepared");
            let index = state.current_committed as usize;
            // The slot is free: past the last record, the area is zero.
            debug_assert_eq!(
                Record::decode(&state.area, index),
                Record { old_chunk: 0, new_chunk: 0 },
                "slot {index} of area {} in use",
                state.current_area
            );
            commit.record.encode(&mut state.area, index);
            // What the commit writes is what a load decodes.
            assert_eq!(Record::decode(&state.area, index), commit.record);
            state.current_committed += 1;
            state.callbacks.push(commit.callback);
            state.pending_count -= 1;

            let area_full = state.current_committed == per_area;
            // More copies are in flight and the area has room: let them join this batch.
            if state.pending_count != 0 && !area_full {
                continue;
            }
            if area_full && !self.mutations.has(Mutation::Z13ZeroNextAreaAfterFullOne) {
                // The next area must read as empty on disk before this one
                // says "full", or a reload would run on into stale records.
                crate::cov::hit(crate::cov::Mark::AreaFilled);
                state.phase = Phase::ZeroingNextArea;
                // The allocator has stepped over the next area already: zeroing it destroys no data.
                assert!(
                    self.mutations.has(Mutation::Z1NoSkipMetadataAfterLoad)
                        || self.mutations.has(Mutation::Z8LoadSkipsEveryOtherArea)
                        || state.next_free > self.layout.area_location(state.current_area + 1),
                    "area {} zeroed ahead of the allocator (chunk {})",
                    state.current_area + 1,
                    state.next_free
                );
                return Step::ZeroArea { chunk: self.layout.area_location(state.current_area + 1) };
            }
            return self.begin_area_write(state);
        }
        Step::Nothing
    }

    fn begin_area_write(&self, state: &mut State) -> Step {
        assert!(matches!(state.phase, Phase::Idle | Phase::ZeroingNextArea), "area write begun during {:?}", state.phase);
        assert!(state.current_committed > 0, "write of area {} with no record in it", state.current_area);
        if !state.valid {
            return self.finish_commit(state);
        }
        // The area written decodes to exactly the records committed to it (Z2
        // dropped those loaded, leaving a hole an end marker cuts short).
        debug_assert!(
            self.mutations.has(Mutation::Z2LastAreaNotKeptAfterLoad)
                || self.layout.decode_area(&state.area).records.len() == state.current_committed as usize,
            "area {} would not load back its {} records",
            state.current_area,
            state.current_committed
        );
        if state.callbacks.len() > 1 {
            crate::cov::hit(crate::cov::Mark::CommitBatched);
        }
        state.phase = Phase::WritingArea;
        state.check(self.layout, self.mutations);
        Step::WriteArea { chunk: self.layout.area_location(state.current_area), bytes: state.area.clone() }
    }

    fn finish_commit(&self, state: &mut State) -> Step {
        assert_ne!(state.phase, Phase::MergeIo, "commit finished during merge I/O");
        assert!(
            state.callbacks.len() <= state.current_committed as usize,
            "{} callbacks for {} records",
            state.callbacks.len(),
            state.current_committed
        );
        if state.current_committed == self.layout.exceptions_per_area() {
            state.current_committed = 0;
            state.current_area += 1;
            state.area.fill(0);
        }
        state.phase = Phase::Idle;
        debug_assert!(state.current_committed < self.layout.exceptions_per_area());
        let callbacks = std::mem::take(&mut state.callbacks);
        state.check(self.layout, self.mutations);
        Step::RunCallbacks { callbacks, valid: state.valid }
    }

    fn perform(self: &Arc<Self>, mut step: Step) {
        loop {
            match step {
                Step::Nothing => return,
                Step::ZeroArea { chunk } => {
                    // Only a metadata area is ever zeroed, never data.
                    debug_assert!(self.layout.is_metadata_chunk(chunk), "zeroing data chunk {chunk}");
                    let this = Arc::clone(self);
                    let zeros = vec![0; self.layout.chunk().bytes()];
                    let sector = self.layout.chunk().chunk_to_sector(chunk);
                    self.cow.write(sector, zeros, WriteFlags::PLAIN, Box::new(move |result| this.on_next_area_zeroed(result)));
                    return;
                }
                Step::WriteArea { chunk, bytes } => {
                    debug_assert!(self.layout.is_metadata_chunk(chunk), "area written over data chunk {chunk}");
                    assert_eq!(bytes.len(), self.layout.chunk().bytes(), "an area is one chunk");
                    let this = Arc::clone(self);
                    let sector = self.layout.chunk().chunk_to_sector(chunk);
                    let flags = if self.mutations.has(Mutation::Z7AreaWriteWithoutFlushFua) { WriteFlags::PLAIN } else { WriteFlags::PREFLUSH_FUA };
                    self.cow.write(sector, bytes, flags, Box::new(move |result| this.on_area_written(result)));
                    return;
                }
                Step::RunCallbacks { callbacks, valid } => {
                    // Every batch written (or failed) makes at least one record durable (or fail).
                    debug_assert!(!callbacks.is_empty(), "a batch with no record");
                    for callback in callbacks {
                        callback(valid);
                    }
                    let mut state = self.state.lock();
                    step = self.advance(&mut state);
                }
            }
        }
    }

    fn on_next_area_zeroed(self: &Arc<Self>, result: Result<(), IoError>) {
        let step = {
            let mut state = self.state.lock();
            assert_eq!(state.phase, Phase::ZeroingNextArea);
            assert_eq!(state.current_committed, self.layout.exceptions_per_area(), "area {} zeroed its successor while not full", state.current_area);
            match result {
                Err(error) if !self.mutations.has(Mutation::Z14ZeroAreaErrorSwallowed) => {
                    crate::cov::hit(crate::cov::Mark::NextAreaZeroingFailed);
                    log::warn!("invalidating snapshot: zeroing metadata area {} failed: {error}", state.current_area + 1);
                    state.valid = false;
                }
                _ => {}
            }
            if self.mutations.has(Mutation::Z13ZeroNextAreaAfterFullOne) {
                // Z13: the full area is already written; zeroing came last.
                self.finish_commit(&mut state)
            } else {
                self.begin_area_write(&mut state)
            }
        };
        self.perform(step);
    }

    fn on_area_written(self: &Arc<Self>, result: Result<(), IoError>) {
        let step = {
            let mut state = self.state.lock();
            assert_eq!(state.phase, Phase::WritingArea);
            assert!(state.current_committed > 0, "area {} written with no record in it", state.current_area);
            if let Err(error) = result {
                crate::cov::hit(crate::cov::Mark::AreaWriteFailed);
                log::warn!("invalidating snapshot: writing metadata area {} failed: {error}", state.current_area);
                state.valid = false;
            }
            let area_full = state.current_committed == self.layout.exceptions_per_area();
            if area_full && state.valid && self.mutations.has(Mutation::Z13ZeroNextAreaAfterFullOne) {
                // Z13: the next area is zeroed only now, after the full one says "full".
                state.phase = Phase::ZeroingNextArea;
                Step::ZeroArea { chunk: self.layout.area_location(state.current_area + 1) }
            } else {
                self.finish_commit(&mut state)
            }
        };
        self.perform(step);
    }

    /// Finds the newest run of records to merge: the last record of the
    /// current area and those before it whose origin and COW chunks both
    /// count down by one.
    pub fn prepare_merge(&self) -> MergeStep {
        let state = self.state.lock();
        state.check(self.layout, self.mutations);
        assert_eq!(state.phase, Phase::Idle, "merge while metadata I/O is in flight");
        assert!(state.queued.is_empty() && state.pending_count == 0, "merge while exceptions are pending");
        if state.current_committed == 0 {
            return if state.current_area == 0 { MergeStep::Done } else { MergeStep::NeedPreviousArea };
        }
        let last = Record::decode(&state.area, state.current_committed as usize - 1);
        let mut count = 1u32;
        while count < state.current_committed {
            let before = Record::decode(&state.area, (state.current_committed - 1 - count) as usize);
            let step = u64::from(count);
            if before.old_chunk != last.old_chunk.wrapping_sub(step) || before.new_chunk != last.new_chunk.wrapping_sub(step) {
                break;
            }
            count += 1;
        }
        assert!(count >= 1 && count <= state.current_committed, "a run of {count} of {} records", state.current_committed);
        MergeStep::Run(MergeRun { last_old_chunk: last.old_chunk, last_new_chunk: last.new_chunk, count })
    }

    /// Steps back to the previous (full) metadata area, reading it from disk.
    pub fn read_previous_area(self: &Arc<Self>, done: StoreDone) {
        let area = {
            let mut state = self.state.lock();
            assert_eq!(state.phase, Phase::Idle, "merge read while metadata I/O is in flight");
            assert!(state.current_committed == 0 && state.current_area > 0, "previous area read with records left");
            state.phase = Phase::MergeIo;
            state.current_area - 1
        };
        let this = Arc::clone(self);
        let chunk = self.layout.area_location(area);
        let sector = self.layout.chunk().chunk_to_sector(chunk);
        self.cow.read(
            sector,
            self.layout.chunk().sectors(),
            Box::new(move |result| {
                let outcome = {
                    let mut state = this.state.lock();
                    assert_eq!(state.phase, Phase::MergeIo, "merge read completed during {:?}", state.phase);
                    assert_eq!(state.current_committed, 0, "records left in area {} when stepping back", state.current_area);
                    state.phase = Phase::Idle;
                    match result {
                        Ok(bytes) => {
                            assert_eq!(bytes.len(), this.layout.chunk().bytes(), "area {area} read as {} bytes", bytes.len());
                            state.current_area = area;
                            state.area = bytes;
                            state.current_committed = this.layout.exceptions_per_area();
                            state.check(this.layout, this.mutations);
                            Ok(())
                        }
                        Err(error) => Err(StoreError::io(format!("reading metadata area {area} to merge"), error)),
                    }
                };
                done(outcome);
            }),
        );
    }

    /// Removes the newest `count` records (just merged into the origin) and
    /// writes the area with PREFLUSH|FUA. The caller must have flushed the
    /// origin first, or a crash could lose both the records and the merged data.
    pub fn commit_merge(self: &Arc<Self>, count: u32, done: StoreDone) {
        let (chunk, bytes) = {
            let mut state = self.state.lock();
            assert_eq!(state.phase, Phase::Idle, "merge commit while metadata I/O is in flight");
            assert!(count > 0 && count <= state.current_committed, "merge of {count} of {} records", state.current_committed);
            for offset in 0..count {
                let index = (state.current_committed - 1 - offset) as usize;
                clear_record(&mut state.area, index);
            }
            state.phase = Phase::MergeIo;
            state.check(self.layout, self.mutations);
            (self.layout.area_location(state.current_area), state.area.clone())
        };
        let this = Arc::clone(self);
        let sector = self.layout.chunk().chunk_to_sector(chunk);
        self.cow.write(
            sector,
            bytes,
            WriteFlags::PREFLUSH_FUA,
            Box::new(move |result| {
                let outcome = {
                    let mut state = this.state.lock();
                    assert_eq!(state.phase, Phase::MergeIo, "merge commit completed during {:?}", state.phase);
                    assert!(count <= state.current_committed, "merged {count} of {} records", state.current_committed);
                    state.phase = Phase::Idle;
                    match result {
                        Ok(()) => {
                            state.current_committed -= count;
                            // Only usage reads next_free now; give it the value it
                            // would have had had every exception committed in order.
                            state.next_free = this.layout.area_location(state.current_area) + u64::from(state.current_committed) + 1;
                            debug_assert!(!this.layout.is_metadata_chunk(state.next_free), "allocator at metadata chunk {}", state.next_free);
                            state.check(this.layout, this.mutations);
                            Ok(())
                        }
                        Err(error) => Err(StoreError::io(format!("writing metadata area {} after merging", state.current_area), error)),
                    }
                };
                done(outcome);
            }),
        );
    }

    /// Invalidates the snapshot: clears `valid` and rewrites the header with
    /// `valid = 0` — a plain write, as the stock kernel's, or with FUA under
    /// [`KernelPatches::Applied`], which also holds back what
    /// [`hold_until_header_written`](Self::hold_until_header_written) is
    /// given until the write completes (failed or not: the kernel only warns).
    /// `done` runs after those waiters. The header is built in its own
    /// buffer, never in the area buffer a commit may be writing.
    pub fn drop_snapshot(self: &Arc<Self>, done: Option<StoreDone>) {
        crate::cov::hit(crate::cov::Mark::HeaderInvalidated);
        let durable = self.kernel_patches == KernelPatches::Applied;
        {
            let mut state = self.state.lock();
            // A store is invalidated once: its snapshot stops asking after the first time.
            assert!(!state.header_in_flight, "the invalid header written twice at once");
            state.valid = false;
            state.header_in_flight = durable;
        }
        let chunk = self.layout.chunk();
        let header = DiskHeader::new(false, chunk).encode_chunk(chunk);
        assert_eq!(header.len(), chunk.bytes(), "the header is one chunk");
        // What the drop writes, a load reads as an invalid snapshot of this chunk size.
        debug_assert_eq!(
            DiskHeader::decode(&header),
            DiskHeader { magic: crate::format::SNAP_MAGIC, valid: 0, version: crate::format::DISK_VERSION, chunk_size: chunk.sectors() }
        );
        let flags = if durable { WriteFlags { fua: true, ..WriteFlags::PLAIN } } else { WriteFlags::PLAIN };
        let this = Arc::clone(self);
        self.cow.write(0, header, flags, Box::new(move |result| this.on_header_written(result, done)));
    }

    /// The invalid header's write completed: let go of what waited for it.
    fn on_header_written(&self, result: Result<(), IoError>, done: Option<StoreDone>) {
        let outcome = result.map_err(|error| {
            crate::cov::hit(crate::cov::Mark::HeaderInvalidationFailed);
            log::warn!("writing the invalidated header failed: {error}");
            StoreError::io("writing the invalidated header", error)
        });
        let waiters = {
            let mut state = self.state.lock();
            assert!(!state.valid, "the invalid header written for a valid store");
            assert!(state.header_in_flight || state.header_waiters.is_empty(), "waiters held for a stock header write");
            state.header_in_flight = false;
            std::mem::take(&mut state.header_waiters)
        };
        for waiter in waiters {
            waiter();
        }
        if let Some(done) = done {
            done(outcome);
        }
    }
}
