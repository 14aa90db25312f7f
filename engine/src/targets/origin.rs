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
use crate::store::{KernelPatches, LoadOutcome, Loaded, PersistentStore, StoreConfig, StoreError};
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
    /// How the snapshots' stores write their headers: the stock kernel's
    /// way (the default) or the kernel-patches/ series' (see [`KernelPatches`]).
    /// Like the threshold, a setting of the whole target type in the kernel.
    pub kernel_patches: KernelPatches,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self { cow_threshold: DEFAULT_COW_THRESHOLD, mutations: crate::zoo::Mutations::NONE, kernel_patches: KernelPatches::Stock }
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
        let minimum = snapshots.iter().map(|s| s.chunk.sectors()).min();
        // Sorted largest first: the smallest is the last.
        debug_assert_eq!(minimum, snapshots.last().map(|s| s.chunk.sectors()), "snapshots out of chunk-size order");
        minimum
    }

    /// Creates a snapshot (the `snapshot` table line, then resume): loads or
    /// initialises the store on `cow`, writing headers as this origin's
    /// [`OriginConfig::kernel_patches`] says, and registers the snapshot, active.
    /// Refused at once if `cow` is the origin or the chunk size is invalid.
    pub fn create_snapshot(self: &Arc<Self>, cow: Arc<D>, config: StoreConfig, done: SnapshotCreated<D>) -> Result<(), StoreError> {
        crate::view::check_distinct(self.dev.as_ref(), cow.as_ref())?;
        let origin = Arc::clone(self);
        let config = StoreConfig { mutations: self.config.mutations, ..config };
        PersistentStore::load_with_kernel_patches(
            cow,
            self.dev.logical_block_bytes(),
            config,
            self.config.kernel_patches,
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
        // An invalid COW's records are not read.
        debug_assert!(loaded.outcome != LoadOutcome::Invalid || loaded.exceptions.is_empty(), "an invalid COW loaded exceptions");
        let state = State::new(Arc::clone(&loaded.store), loaded.exceptions, loaded.outcome != LoadOutcome::Invalid, false);
        let (cow, chunk, kind) = (Arc::clone(loaded.store.cow()), loaded.store.chunk_size(), loaded.store.kind());
        self.insert(Snapshot::new(self, cow, chunk, kind, role, self.dev.size_sectors(), state))
    }

    fn insert(&self, snapshot: Snapshot<D>) -> Arc<Snapshot<D>> {
        assert!(std::ptr::eq(snapshot.origin.as_ptr(), self), "a snapshot registered with another origin");
        assert!(Arc::ptr_eq(&snapshot.origin_dev, &self.dev), "a snapshot of another origin device");
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
        let mut snapshots = self.snapshots.lock();
        let before = snapshots.len();
        snapshots.retain(|s| !Arc::ptr_eq(s, snapshot));
        assert!(before - snapshots.len() <= 1, "a snapshot registered twice");
    }

    /// Hands a snapshot's exception store and table over to a new target on
    /// the same COW (a table reload, or the switch to snapshot-merge): the
    /// source stops serving, the new target takes its place. The source must
    /// be quiet (suspended): no exception pending.
    pub fn hand_over(self: &Arc<Self>, source: &Arc<Snapshot<D>>, role: Role) -> Arc<Snapshot<D>> {
        assert!(std::ptr::eq(source.origin.as_ptr(), Arc::as_ptr(self)), "handover of another origin's snapshot");
        let state = source.state.lock().hand_over();
        self.remove(source);
        self.insert(source.successor(self, role, state))
    }

    fn has_room(&self) -> bool {
        let threshold = self.config.cow_threshold;
        // Z11: no throttle at all.
        if threshold == 0 || self.config.mutations.has(Mutation::Z11NoCowThrottle) {
            return true;
        }
        let admitting = self.admitting.load(Ordering::SeqCst);
        self.snapshots.lock().iter().all(|s| s.exceptions_in_progress() + admitting < threshold)
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
                crate::cov::hit(crate::cov::Mark::ThrottleParked);
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
        assert!(bio.sectors() > 0, "an empty origin write at sector {}", bio.sector);
        debug_assert!(bio.sector + bio.sectors() <= self.dev.size_sectors(), "origin write beyond the origin, unchecked");
        self.admit(Parked::Origin(bio));
    }

    /// A write to a snapshot, one piece within its chunk.
    pub(super) fn submit_snapshot_write(self: &Arc<Self>, snapshot: &Arc<Snapshot<D>>, bio: WriteBio) {
        assert!(Arc::ptr_eq(&snapshot.origin_dev, &self.dev), "a write to another origin's snapshot");
        let chunk = snapshot.chunk;
        assert_eq!(chunk.sector_to_chunk(bio.sector), chunk.sector_to_chunk(bio.sector + bio.sectors() - 1), "a snapshot write piece spans chunks");
        self.admit(Parked::Snapshot(Arc::clone(snapshot), bio));
    }

    /// Retries an origin write whose exception has completed. Like the
    /// kernel's resubmitted bio, it passes the throttle again: a snapshot
    /// created meanwhile may need a new copy for it.
    pub(super) fn retry(self: &Arc<Self>, bio: WriteBio) {
        debug_assert!(bio.sector + bio.sectors() <= self.dev.size_sectors(), "origin write beyond the origin, unchecked");
        self.admit(Parked::Origin(bio));
    }

    /// The kernel's `do_origin`: make the exceptions the write needs, or, if
    /// none is needed, write the origin.
    pub(super) fn do_origin(self: &Arc<Self>, bio: WriteBio) {
        let snapshots = self.snapshots();
        let (must_wait, bio) = origin_write(&snapshots, bio.sector, Some(bio));
        // A write that must wait is held on an exception; one that comes back needs none.
        assert_ne!(must_wait, bio.is_some(), "an origin write both held and returned");
        if let Some(bio) = bio {
            self.dev.write(bio.sector, bio.data, bio.flags, bio.done);
        }
    }

    /// Triggers exceptions in every non-merging snapshot for the origin
    /// extent `sector .. sector + sectors` (a merge about to overwrite it);
    /// returns whether any is pending and must be waited for.
    pub(super) fn write_extent(&self, sector: u64, sectors: u64) -> bool {
        assert!(sectors > 0, "an empty extent at sector {sector}");
        let snapshots = self.snapshots();
        let step = u64::from(self.minimum_chunk_sectors().unwrap_or(1));
        assert!(step.is_power_of_two(), "split at {step} sectors");
        // The extent is a merging snapshot's run, so it starts on a chunk of
        // every snapshot (Z10: unless the first snapshot's chunk is larger).
        debug_assert!(
            self.config.mutations.has(Mutation::Z10SnapshotsUnsorted) || sector % step == 0,
            "extent at sector {sector} is not chunk-aligned"
        );
        let mut must_wait = false;
        let mut offset = 0;
        while offset < sectors {
            must_wait |= origin_write(&snapshots, sector + offset, None).0;
            offset += step;
        }
        must_wait
    }

    /// A snapshot's durable invalid header has been written: a merge that
    /// found it in flight (in [`Origin::write_extent`]) waits for this as
    /// for an exception, so it is counted as one.
    pub(super) fn header_written(&self) {
        self.exception_done();
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

    /// How many pending exceptions have completed so far (and durable
    /// invalid headers been written: what a merge waits for).
    pub(super) fn exceptions_done_count(&self) -> u64 {
        self.exceptions_done.lock().0
    }

    /// Calls `waiter` once the count of completed exceptions differs from
    /// `seen` (at once, through `defer`, if it already does).
    pub(super) fn when_exception_done(&self, seen: u64, waiter: DoneWaiter) {
        let mut done = self.exceptions_done.lock();
        assert!(done.0 >= seen, "the completed-exception count went back from {seen} to {}", done.0);
        if done.0 != seen {
            drop(done);
            self.defer.defer(waiter);
        } else {
            done.1.push(waiter);
        }
    }
}

/// The kernel's `__origin_write` over `snapshots` for the chunk(s) holding
/// `sector`: returns whether any exception is pending or invalid header in
/// flight (must be waited for), and the bio back if it was not queued on one.
fn origin_write<D: BlockDevice>(snapshots: &[Arc<Snapshot<D>>], sector: u64, mut bio: Option<WriteBio>) -> (bool, Option<WriteBio>) {
    assert!(bio.as_ref().is_none_or(|b| b.sector == sector), "origin write preserved at another sector");
    let mut must_wait = false;
    let mut start_last: Option<(Arc<Snapshot<D>>, u64)> = None;
    for snapshot in snapshots {
        // A merging snapshot has effectively been deleted: no new exceptions.
        if snapshot.role == Role::Merge {
            continue;
        }
        let start_now = {
            let mut state = snapshot.state.lock();
            // Its durable invalid header is in flight: the kernel's writer
            // would block on the snapshot's lock until it has completed.
            if snapshot.hold_for_header(&state, &mut bio) {
                must_wait = true;
                continue;
            }
            // With the kernel-patches series, not past reads an invalid snapshot still has in flight (K2).
            if snapshot.hold_for_tracked_io(&mut state, sector, &mut bio) {
                must_wait = true;
                continue;
            }
            let Some(chunk) = snapshot.chunk_to_preserve(&state, sector) else {
                continue;
            };
            if snapshot.mutations.has(Mutation::Z18PendingAllocationRace) && !snapshot.has_pending(&state, chunk) {
                // Z18: the lock is dropped between deciding that the chunk
                // needs an exception and allocating it, and the allocation
                // does not look again: another writer's exception for the
                // chunk, made meanwhile, is replaced.
                drop(state);
                state = snapshot.state.lock();
                snapshot.forget_pending(&mut state, chunk);
            }
            if !snapshot.allocate_pending(&mut state, chunk, false) {
                // No room: a `P` store has just been invalidated, and the
                // write that found it full waits for the header too.
                must_wait |= snapshot.hold_for_header(&state, &mut bio);
                continue;
            }
            must_wait = true;
            let parked = bio.take().map(|write| snapshot.park_origin_write(&mut state, chunk, write)).is_some();
            let first = snapshot.claim_copy(&mut state, chunk);
            if parked && first {
                // The write waits on the copy started last.
                start_last = Some((Arc::clone(snapshot), chunk));
            }
            (first && !parked).then_some(chunk)
        };
        if let Some(chunk) = start_now {
            snapshot.start_copy(chunk);
        }
    }
    // The copy started last is the one the write waits on.
    assert!(start_last.is_none() || bio.is_none(), "copy started for a write that was not held");
    assert!(start_last.is_none() || must_wait, "a write held on a copy it does not wait for");
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
