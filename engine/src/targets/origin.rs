//! The snapshot-origin target and the registry of an origin's snapshots.
//!
//! A write to the origin must first preserve the chunk's old contents in
//! every valid, active snapshot that has no exception for it yet
//! (`__origin_write`). The write is held on one of the pending exceptions it
//! needs — the one started last, to give the others a head start — and
//! retried when that one completes, until no snapshot needs anything.
//!
//! Snapshots are kept sorted by chunk size, largest first (the kernel's
//! 6d45d93e "sort by chunk size"), and origin writes are split at the
//! smallest chunk size, so that one write never spans two chunks of any
//! snapshot.
//!
//! The COW throttle: while any snapshot has `cow_threshold` copies in
//! flight, new writes that may need copies wait in a FIFO (the kernel's
//! `wait_for_in_progress`), before any exception is allocated for them. They
//! are admitted again, in order, as copies finish. Nothing blocks: a waiting
//! write is data in a queue, not a parked thread.
//!
//! Lock order: the throttle queue, then the snapshot list, then a
//! snapshot's state, then its store. An admitted write holds an admission
//! slot until it is mapped, so the bound holds under concurrent writers
//! (the loom model `throttle_wakes_every_parked_write` checks the bound
//! and the wake-up).

use std::collections::VecDeque;

use super::bio::{WriteBio, next_target_identity, split_write};
use super::snapshot::{Role, Snapshot, State};
use crate::io::{BlockDevice, Defer, DeviceIdentity, IoDone, IoOp, WriteFlags};
use crate::store::{LoadOutcome, Loaded, PersistentStore, StoreConfig, StoreError};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex};
use crate::zoo::Mutation;

/// The kernel's default `snapshot_cow_threshold`.
pub const DEFAULT_COW_THRESHOLD: usize = 2048;

/// Settings of an origin and its snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginConfig {
    /// Most exceptions in progress (copying or committing) per snapshot
    /// before new writes wait; 0 = unlimited.
    pub cow_threshold: usize,
    /// Historical bugs to re-create (only with the `bug-zoo` feature).
    pub mutations: crate::zoo::Mutations,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self { cow_threshold: DEFAULT_COW_THRESHOLD, mutations: crate::zoo::Mutations::NONE }
    }
}

/// A write waiting for the throttle to admit it.
enum Parked<D: BlockDevice> {
    Origin(WriteBio),
    Snapshot(Arc<Snapshot<D>>, WriteBio),
}

/// Receives a newly created snapshot, or why it could not be created.
pub type SnapshotCreated<D> = Box<dyn FnOnce(Result<Arc<Snapshot<D>>, StoreError>) + Send + 'static>;

/// Callbacks waiting for any pending exception of this origin to complete.
type DoneWaiter = Box<dyn FnOnce() + Send + 'static>;

/// An origin device with its snapshots.
pub struct Origin<D: BlockDevice> {
    pub(super) dev: Arc<D>,
    pub(super) defer: Arc<dyn Defer>,
    config: OriginConfig,
    /// Sorted by chunk size, largest first.
    snapshots: Mutex<Vec<Arc<Snapshot<D>>>>,
    parked: Mutex<VecDeque<Parked<D>>>,
    /// Admitted writes not yet mapped: each may still start one copy per snapshot.
    admitting: AtomicUsize,
    /// How many pending exceptions have completed, and who waits for the next.
    exceptions_done: Mutex<(u64, Vec<DoneWaiter>)>,
}

impl<D: BlockDevice> std::fmt::Debug for Origin<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin").field("snapshots", &self.snapshots.lock().len()).field("config", &self.config).finish()
    }
}

impl<D: BlockDevice> Origin<D> {
    /// An origin on `dev`; `defer` runs work that must not run inside a caller.
    pub fn new(dev: Arc<D>, defer: Arc<dyn Defer>, config: OriginConfig) -> Arc<Self> {
        Arc::new(Self {
            dev,
            defer,
            config,
            snapshots: Mutex::new(Vec::new()),
            parked: Mutex::new(VecDeque::new()),
            admitting: AtomicUsize::new(0),
            exceptions_done: Mutex::new((0, Vec::new())),
        })
    }

    pub fn device(&self) -> &Arc<D> {
        &self.dev
    }

    pub fn config(&self) -> OriginConfig {
        self.config
    }

    /// The snapshots, largest chunk size first.
    pub fn snapshots(&self) -> Vec<Arc<Snapshot<D>>> {
        self.snapshots.lock().clone()
    }

    /// Power loss: writes parked at the throttle, waiters for exceptions and
    /// the in-flight state of every snapshot are dropped without completing
    /// (see [`Snapshot::power_off`]). The kernel never needs this — a machine
    /// that loses power loses its memory — but a host that throws a machine
    /// away and goes on (the simulator's crashes) must, or the closures that
    /// hold the targets keep them alive. The targets must not be used
    /// afterwards.
    pub fn power_off(&self) {
        let parked = std::mem::take(&mut *self.parked.lock());
        let waiters = std::mem::take(&mut self.exceptions_done.lock().1);
        let snapshots = self.snapshots();
        drop((parked, waiters));
        for snapshot in snapshots {
            snapshot.power_off();
        }
    }

    /// Writes waiting for the COW throttle.
    pub fn throttled_writes(&self) -> usize {
        self.parked.lock().len()
    }

    /// The smallest chunk size of the snapshots, in sectors (origin writes split there).
    pub fn minimum_chunk_sectors(&self) -> Option<u32> {
        let snapshots = self.snapshots.lock();
        if self.config.mutations.has(Mutation::Z10SnapshotsUnsorted) {
            // Z10: whatever chunk size the first snapshot created has.
            return snapshots.first().map(|s| s.chunk.sectors());
        }
        snapshots.iter().map(|s| s.chunk.sectors()).min()
    }

    /// Creates a snapshot (the `snapshot` table line, then resume): loads or
    /// initialises the store on `cow` and registers the snapshot, active.
    /// Refused at once if `cow` is the origin or the chunk size is invalid.
    pub fn create_snapshot(self: &Arc<Self>, cow: Arc<D>, config: StoreConfig, done: SnapshotCreated<D>) -> Result<(), StoreError> {
        crate::view::check_distinct(self.dev.as_ref(), cow.as_ref())?;
        let origin = Arc::clone(self);
        let config = StoreConfig { mutations: self.config.mutations, ..config };
        PersistentStore::load(
            cow,
            self.dev.logical_block_bytes(),
            config,
            Box::new(move |loaded| {
                done(loaded.map(|loaded| origin.register(loaded, Role::Snapshot)));
            }),
        )
    }

    /// Builds and registers a snapshot from a loaded store.
    pub fn register(self: &Arc<Self>, loaded: Loaded<D>, role: Role) -> Arc<Snapshot<D>> {
        if loaded.outcome == LoadOutcome::Invalid {
            log::warn!("snapshot is marked invalid");
        }
        let state = State::new(Arc::clone(&loaded.store), loaded.exceptions, loaded.outcome != LoadOutcome::Invalid, false);
        self.insert(Snapshot {
            origin: Arc::downgrade(self),
            origin_dev: Arc::clone(&self.dev),
            cow: Arc::clone(loaded.store.cow()),
            chunk: loaded.store.chunk_size(),
            kind: loaded.store.kind(),
            role,
            target_sectors: self.dev.size_sectors(),
            copies_in_flight: AtomicUsize::new(0),
            copies_in_flight_max: AtomicUsize::new(0),
            defer: Arc::clone(&self.defer),
            state: Mutex::new(state),
            mutations: self.config.mutations,
        })
    }

    fn insert(&self, snapshot: Snapshot<D>) -> Arc<Snapshot<D>> {
        let snapshot = Arc::new(snapshot);
        let mut snapshots = self.snapshots.lock();
        let unsorted = self.config.mutations.has(Mutation::Z10SnapshotsUnsorted);
        let at = if unsorted { snapshots.len() } else { snapshots.iter().position(|s| s.chunk < snapshot.chunk).unwrap_or(snapshots.len()) };
        snapshots.insert(at, Arc::clone(&snapshot));
        debug_assert!(unsorted || snapshots.windows(2).all(|w| w[0].chunk >= w[1].chunk));
        snapshot
    }

    /// Removes a snapshot (its table is unloaded). Exceptions in flight still finish.
    pub fn remove(&self, snapshot: &Arc<Snapshot<D>>) {
        self.snapshots.lock().retain(|s| !Arc::ptr_eq(s, snapshot));
    }

    /// Hands a snapshot's exception store and table over to a new target on
    /// the same COW (a table reload, or the switch to snapshot-merge): the
    /// source stops serving, the new target takes its place. The source must
    /// be quiet (suspended): no exception pending.
    pub fn hand_over(self: &Arc<Self>, source: &Arc<Snapshot<D>>, role: Role) -> Arc<Snapshot<D>> {
        let state = {
            let mut from = source.state.lock();
            assert!(from.pending.is_empty(), "handover from a snapshot with exceptions pending");
            let state = State::new(Arc::clone(&from.store), std::mem::take(&mut from.complete), from.valid, from.overflowed);
            // The source receives no further I/O.
            from.valid = false;
            state
        };
        self.remove(source);
        self.insert(Snapshot {
            origin: Arc::downgrade(self),
            origin_dev: Arc::clone(&self.dev),
            cow: Arc::clone(&source.cow),
            chunk: source.chunk,
            kind: source.kind,
            role,
            target_sectors: source.target_sectors,
            copies_in_flight: AtomicUsize::new(0),
            copies_in_flight_max: AtomicUsize::new(0),
            defer: Arc::clone(&self.defer),
            state: Mutex::new(state),
            mutations: self.config.mutations,
        })
    }

    fn has_room(&self) -> bool {
        let threshold = self.config.cow_threshold;
        // Z11: no throttle at all.
        if threshold == 0 || self.config.mutations.has(Mutation::Z11NoCowThrottle) {
            return true;
        }
        let admitting = self.admitting.load(Ordering::SeqCst);
        self.snapshots.lock().iter().all(|s| s.copies_in_flight.load(Ordering::SeqCst) + admitting < threshold)
    }

    /// Runs `parked` now, or queues it behind the writes already waiting.
    ///
    /// The room check and the queueing happen under the queue's lock, and
    /// `unpark` checks under the same lock after a copy finishes, so no copy
    /// finishing in between goes unnoticed (a lost wake-up). An admitted
    /// write counts against every snapshot's room until it is mapped (it
    /// starts at most one copy in each), so two writers cannot both take
    /// the last free slot: the bound is exact under any number of threads.
    fn admit(self: &Arc<Self>, parked: Parked<D>) {
        // Z20: the room is judged before the queue lock is taken.
        let early_room = self.config.mutations.has(Mutation::Z20ThrottleCheckOutsideQueueLock).then(|| self.has_room());
        {
            let mut queue = self.parked.lock();
            if !queue.is_empty() || !early_room.unwrap_or_else(|| self.has_room()) {
                return queue.push_back(parked);
            }
            self.admitting.fetch_add(1, Ordering::SeqCst);
        }
        self.run_admitted(parked);
        self.unpark();
    }

    /// Maps a write that holds an admission slot, then gives the slot back.
    fn run_admitted(self: &Arc<Self>, parked: Parked<D>) {
        match parked {
            Parked::Origin(bio) => self.do_origin(bio),
            Parked::Snapshot(snapshot, bio) => snapshot.write_admitted(bio),
        }
        let before = self.admitting.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "an admission slot given back twice");
    }

    /// Admits waiting writes, in order, while the throttle has room.
    pub(super) fn unpark(self: &Arc<Self>) {
        loop {
            let next = {
                let mut queue = self.parked.lock();
                if queue.front().is_some() && self.has_room() {
                    self.admitting.fetch_add(1, Ordering::SeqCst);
                    queue.pop_front()
                } else {
                    None
                }
            };
            match next {
                Some(parked) => self.run_admitted(parked),
                None => return,
            }
        }
    }

    /// A write to the origin, one piece within the smallest chunk.
    pub(super) fn submit_origin_write(self: &Arc<Self>, bio: WriteBio) {
        self.admit(Parked::Origin(bio));
    }

    /// A write to a snapshot, one piece within its chunk.
    pub(super) fn submit_snapshot_write(self: &Arc<Self>, snapshot: &Arc<Snapshot<D>>, bio: WriteBio) {
        self.admit(Parked::Snapshot(Arc::clone(snapshot), bio));
    }

    /// Retries an origin write whose exception has completed. Like the
    /// kernel's resubmitted bio, it passes the throttle again: a snapshot
    /// created meanwhile may need a new copy for it.
    pub(super) fn retry(self: &Arc<Self>, bio: WriteBio) {
        self.admit(Parked::Origin(bio));
    }

    /// The kernel's `do_origin`: make the exceptions the write needs, or, if
    /// none is needed, write the origin.
    pub(super) fn do_origin(self: &Arc<Self>, bio: WriteBio) {
        let snapshots = self.snapshots();
        let (_, bio) = origin_write(&snapshots, bio.sector, Some(bio));
        if let Some(bio) = bio {
            self.dev.write(bio.sector, bio.data, bio.flags, bio.done);
        }
    }

    /// Triggers exceptions in every non-merging snapshot for the origin
    /// extent `sector .. sector + sectors` (a merge about to overwrite it);
    /// returns whether any is pending and must be waited for.
    pub(super) fn write_extent(&self, sector: u64, sectors: u64) -> bool {
        let snapshots = self.snapshots();
        let step = u64::from(self.minimum_chunk_sectors().unwrap_or(1));
        let mut must_wait = false;
        let mut offset = 0;
        while offset < sectors {
            must_wait |= origin_write(&snapshots, sector + offset, None).0;
            offset += step;
        }
        must_wait
    }

    /// A pending exception of one of this origin's snapshots has completed.
    pub(super) fn exception_done(&self) {
        let waiters = {
            let mut done = self.exceptions_done.lock();
            done.0 += 1;
            std::mem::take(&mut done.1)
        };
        for waiter in waiters {
            waiter();
        }
    }

    /// How many pending exceptions have completed so far.
    pub(super) fn exceptions_done_count(&self) -> u64 {
        self.exceptions_done.lock().0
    }

    /// Calls `waiter` once the count of completed exceptions differs from
    /// `seen` (at once, through `defer`, if it already does).
    pub(super) fn when_exception_done(&self, seen: u64, waiter: DoneWaiter) {
        let mut done = self.exceptions_done.lock();
        if done.0 != seen {
            drop(done);
            self.defer.defer(waiter);
        } else {
            done.1.push(waiter);
        }
    }
}

/// The kernel's `__origin_write` over `snapshots` for the chunk(s) holding
/// `sector`: returns whether any exception is pending (must be waited for),
/// and the bio back if it was not queued on one.
fn origin_write<D: BlockDevice>(snapshots: &[Arc<Snapshot<D>>], sector: u64, mut bio: Option<WriteBio>) -> (bool, Option<WriteBio>) {
    let mut must_wait = false;
    let mut start_last: Option<(Arc<Snapshot<D>>, u64)> = None;
    for snapshot in snapshots {
        // A merging snapshot has effectively been deleted: no new exceptions.
        if snapshot.role == Role::Merge {
            continue;
        }
        let start_now = {
            let mut state = snapshot.state.lock();
            if !state.valid || !state.active || sector >= snapshot.target_sectors {
                continue;
            }
            let chunk = snapshot.chunk.sector_to_chunk(sector);
            if state.complete.lookup(chunk).is_some() {
                continue;
            }
            if snapshot.mutations.has(Mutation::Z18PendingAllocationRace) && !state.pending.contains_key(&chunk) {
                // Z18: the lock is dropped between deciding that the chunk
                // needs an exception and allocating it, and the allocation
                // does not look again: another writer's exception for the
                // chunk, made meanwhile, is replaced.
                drop(state);
                state = snapshot.state.lock();
                state.pending.remove(&chunk);
            }
            if !snapshot.allocate_pending(&mut state, chunk, false) {
                continue;
            }
            must_wait = true;
            let pending = state.pending.get_mut(&chunk).expect("just allocated");
            let mut start_now = false;
            if let Some(write) = bio.take() {
                pending.origin_bios.push(write);
                if !pending.started {
                    pending.started = true;
                    start_last = Some((Arc::clone(snapshot), chunk));
                }
            }
            if !pending.started {
                pending.started = true;
                start_now = true;
            }
            start_now.then_some(chunk)
        };
        if let Some(chunk) = start_now {
            snapshot.start_copy(chunk);
        }
    }
    if let Some((snapshot, chunk)) = start_last {
        snapshot.start_copy(chunk);
    }
    (must_wait, bio)
}

/// The snapshot-origin target as a block device: reads and flushes pass
/// through; writes first preserve what the snapshots need.
#[derive(Debug)]
pub struct OriginDevice<D: BlockDevice> {
    origin: Arc<Origin<D>>,
    identity: DeviceIdentity,
}

impl<D: BlockDevice> OriginDevice<D> {
    pub fn new(origin: Arc<Origin<D>>) -> Self {
        Self { origin, identity: next_target_identity() }
    }

    pub fn origin(&self) -> &Arc<Origin<D>> {
        &self.origin
    }
}

impl<D: BlockDevice> BlockDevice for OriginDevice<D> {
    fn size_sectors(&self) -> u64 {
        self.origin.dev.size_sectors()
    }

    fn logical_block_bytes(&self) -> u32 {
        self.origin.dev.logical_block_bytes()
    }

    fn identity(&self) -> DeviceIdentity {
        self.identity
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        self.origin.dev.read(sector, sectors, done);
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        let origin = &self.origin;
        if let Err(error) = crate::io::check_request(IoOp::Write, sector, data.len(), self.size_sectors()) {
            return origin.defer.defer(Box::new(move || done(Err(error))));
        }
        let Some(boundary) = origin.minimum_chunk_sectors() else {
            return origin.dev.write(sector, data, flags, done);
        };
        split_write(sector, data, flags, u64::from(boundary), done, |bio| origin.submit_origin_write(bio));
    }

    fn flush(&self, done: IoDone<()>) {
        self.origin.dev.flush(done);
    }
}
