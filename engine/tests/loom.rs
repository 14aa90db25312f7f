//! Loom models of the engine's concurrent building blocks, run through the
//! engine's own `sync` facade switched to loom's types.
//!
//! Each model builds a tiny origin with one snapshot over in-memory devices,
//! then lets two threads race on it. Both threads (and the main thread, after
//! joining them) run queued completions, as softirqs would, so copies,
//! commits and completions run concurrently too. Loom explores every
//! interleaving of the engine's lock and atomic operations within a
//! preemption bound, and each model states what must hold in all of them.
//!
//! | model | building block | the race it closes |
//! |---|---|---|
//! | `one_exception_per_chunk` | pending-exception allocation | two writers, one chunk (Z18) |
//! | `tracked_read_holds_back_origin_write` | tracked-read waiting | read vs. completing exception (Z19) |
//! | `throttle_wakes_every_parked_write` | the COW throttle | lost wake-up at the limit (Z20) |
//! | `commits_fed_in_order_by_one_thread` | sequencer + commit feeding | lost commit (Z21) |
//! | `store_batches_commits_from_two_threads` | the store's commit batching | pending count and callbacks |
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p engine --features bug-zoo --release --test loom`
//! (`.ci/run` does). Bounds: `LOOM_MAX_PREEMPTIONS` (default here 3) and
//! loom's other `LOOM_*` variables; the nightly soak raises the bound to 4.
//! Each model's mutation test runs the same model on the engine with one
//! concurrency mutation of the bug zoo switched on, and requires loom to find
//! the interleaving that breaks it.
#![cfg(loom)]
#![allow(clippy::disallowed_methods)] // the models, not the engine, own these threads

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::io::{BlockDevice, CompletionQueue, IoDone, MemDevice, WriteFlags, run_until_done};
use engine::store::{PersistentStore, StoreConfig};
use engine::sync::Arc;
use engine::targets::{Origin, OriginConfig, OriginDevice, Snapshot, SnapshotDevice};
use engine::zoo::{Mutation, Mutations};

const CHUNK_SECTORS: u32 = 8;
const CHUNK_BYTES: usize = CHUNK_SECTORS as usize * 512;

/// Executions explored by the last model run (for the figures in the report).
static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);

/// Runs `model` under loom with this suite's default bound.
fn check(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    EXECUTIONS.store(0, Ordering::SeqCst);
    builder.check(move || {
        EXECUTIONS.fetch_add(1, Ordering::SeqCst);
        model();
    });
    println!("{name}: {} executions, preemption bound {:?}", EXECUTIONS.load(Ordering::SeqCst), builder.preemption_bound);
}

/// Runs `model` with `mutation` on and requires loom to find a failing interleaving.
fn check_caught(mutation: Mutation, model: impl Fn(Mutations) + Sync + Send + 'static) {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(mutation.id(), move || model(Mutations::only(mutation)));
    }));
    assert!(caught.is_err(), "{} ({}) survived its loom model", mutation.id(), mutation.summary());
    println!("{} caught after {} executions", mutation.id(), EXECUTIONS.load(Ordering::SeqCst));
}

/// A chunk's worth of `byte`.
fn chunk_of(byte: u8) -> Vec<u8> {
    vec![byte; CHUNK_BYTES]
}

/// An origin of `chunks` chunks (chunk `c` filled with byte `c + 1`) and one snapshot.
struct Rig {
    queue: Arc<CompletionQueue>,
    origin: Arc<Origin<MemDevice>>,
    snapshot: Arc<Snapshot<MemDevice>>,
    origin_device: Arc<OriginDevice<MemDevice>>,
    snapshot_device: Arc<SnapshotDevice<MemDevice>>,
}

fn rig(chunks: u8, cow_threshold: usize, mutations: Mutations) -> Rig {
    let queue = CompletionQueue::new();
    let bytes: Vec<u8> = (0..chunks).flat_map(|c| chunk_of(c + 1)).collect();
    let origin_dev = Arc::new(MemDevice::from_bytes(bytes, &queue));
    let cow = Arc::new(MemDevice::zeroed(u64::from(CHUNK_SECTORS) * (u64::from(chunks) + 4), &queue));
    let mut built = engine::testing::Rig::new(&queue, origin_dev, OriginConfig { cow_threshold, mutations, ..OriginConfig::default() });
    let config = StoreConfig { chunk_sectors: Some(CHUNK_SECTORS), ..StoreConfig::default() };
    let k = built.add_snapshot(cow, config).expect("snapshot created");
    let (origin, snapshot) = (Arc::clone(&built.origin), Arc::clone(&built.snapshots[k]));
    let origin_device = Arc::new(built.origin_device());
    let snapshot_device = Arc::new(built.snapshot_device(k));
    Rig { queue, origin, snapshot, origin_device, snapshot_device }
}

/// Where completions report: plain std locks, which are no scheduling points.
type Outcomes<T> = Arc<StdMutex<Vec<T>>>;

fn record<T: Send + 'static>(outcomes: &Outcomes<T>) -> IoDone<T> {
    let outcomes = Arc::clone(outcomes);
    Box::new(move |result| outcomes.lock().unwrap().push(result.expect("I/O failed")))
}

impl Rig {
    /// Runs the two racing threads, then the main thread drains what is left.
    fn race(&self, first: impl FnOnce() + Send + 'static, second: impl FnOnce() + Send + 'static) {
        let spawn = |work: Box<dyn FnOnce() + Send>| {
            let queue = Arc::clone(&self.queue);
            loom::thread::spawn(move || {
                work();
                queue.run_until_idle();
            })
        };
        let a = spawn(Box::new(first));
        let b = spawn(Box::new(second));
        a.join().unwrap();
        b.join().unwrap();
        self.queue.run_until_idle();
    }

    fn origin_write(&self, chunk: u64, byte: u8, acks: &Outcomes<()>) -> impl FnOnce() + Send + 'static {
        let (device, done) = (Arc::clone(&self.origin_device), record(acks));
        move || device.write(chunk * u64::from(CHUNK_SECTORS), chunk_of(byte), WriteFlags::PLAIN, done)
    }

    fn read(&self, device: &dyn BlockDevice, chunk: u64) -> Vec<u8> {
        run_until_done(&self.queue, |done| device.read(chunk * u64::from(CHUNK_SECTORS), CHUNK_SECTORS, done))
            .expect("read completed")
            .expect("read succeeded")
    }

    /// What every model requires once all is drained: nothing pending, nothing parked.
    fn assert_quiet(&self) {
        assert_eq!(self.snapshot.pending_count(), 0, "a pending exception never completed");
        assert_eq!(self.origin.throttled_writes(), 0, "a write is parked with no copy left to wake it");
        assert_eq!(self.snapshot.store().pending_count(), 0, "the store waits for a commit that never came");
        assert!(self.snapshot.is_valid());
    }
}

fn one_exception_per_chunk(mutations: Mutations) {
    let rig = rig(1, 0, mutations);
    let acks: Outcomes<()> = Arc::default();
    rig.race(rig.origin_write(0, 0xa1, &acks), rig.origin_write(0, 0xb2, &acks));
    assert_eq!(acks.lock().unwrap().len(), 2, "an origin write was never acknowledged");
    rig.assert_quiet();
    assert_eq!(rig.snapshot.exception_count(), 1, "one chunk, one exception");
    assert_eq!(rig.read(rig.snapshot_device.as_ref(), 0), chunk_of(1), "the snapshot lost its chunk");
    let now = rig.read(rig.origin_device.as_ref(), 0);
    assert!(now == chunk_of(0xa1) || now == chunk_of(0xb2), "the origin holds neither write");
}

fn tracked_read_holds_back_origin_write(mutations: Mutations) {
    let rig = rig(1, 0, mutations);
    let acks: Outcomes<()> = Arc::default();
    let reads: Outcomes<Vec<u8>> = Arc::default();
    let (device, done) = (Arc::clone(&rig.snapshot_device), record(&reads));
    let read = move || device.read(0, CHUNK_SECTORS, done);
    rig.race(rig.origin_write(0, 0xa1, &acks), read);
    assert_eq!(acks.lock().unwrap().len(), 1);
    let reads = reads.lock().unwrap();
    assert_eq!(reads.len(), 1);
    assert!(reads[0] == chunk_of(1), "a snapshot read saw byte {:#x}, written to the origin after the snapshot", reads[0][0]);
    rig.assert_quiet();
}

fn throttle_wakes_every_parked_write(mutations: Mutations) {
    let rig = rig(2, 1, mutations);
    let acks: Outcomes<()> = Arc::default();
    rig.race(rig.origin_write(0, 0xa1, &acks), rig.origin_write(1, 0xb2, &acks));
    let acked = acks.lock().unwrap().len();
    assert_eq!(
        acked,
        2,
        "a throttled write was never woken: parked {}, copies {:?}, pending {}, queue {}",
        rig.origin.throttled_writes(),
        rig.snapshot.copies_in_flight(),
        rig.snapshot.pending_count(),
        rig.queue.len()
    );
    rig.assert_quiet();
    let (_, most) = rig.snapshot.copies_in_flight();
    assert!(most <= 1, "{most} exceptions in progress at once over a threshold of 1");
}

fn commits_fed_in_order_by_one_thread(mutations: Mutations) {
    let rig = rig(2, 0, mutations);
    let acks: Outcomes<()> = Arc::default();
    rig.race(rig.origin_write(0, 0xa1, &acks), rig.origin_write(1, 0xb2, &acks));
    assert_eq!(acks.lock().unwrap().len(), 2, "an exception's commit was never fed to the store");
    rig.assert_quiet();
    assert_eq!(rig.snapshot.exception_count(), 2);
    for chunk in 0..2u8 {
        assert_eq!(rig.read(rig.snapshot_device.as_ref(), u64::from(chunk)), chunk_of(chunk + 1));
    }
}

/// The store alone: two threads prepare and commit one exception each while
/// the metadata writes complete on whichever thread runs them.
fn store_batches_commits_from_two_threads() {
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::zeroed(u64::from(CHUNK_SECTORS) * 8, &queue));
    let config = StoreConfig { chunk_sectors: Some(CHUNK_SECTORS), ..StoreConfig::default() };
    let loaded = run_until_done(&queue, |done| PersistentStore::load(cow, 512, config, done).expect("store accepted"));
    let store = loaded.expect("load completed").expect("store loaded").store;
    let committed: Outcomes<(u64, bool)> = Arc::default();
    let threads: Vec<_> = (0..2u64)
        .map(|old_chunk| {
            let (store, queue, committed) = (Arc::clone(&store), Arc::clone(&queue), Arc::clone(&committed));
            loom::thread::spawn(move || {
                let new_chunk = store.prepare_exception().expect("room for one exception");
                let record = engine::format::Record { old_chunk, new_chunk };
                store.commit_exception(record, true, Box::new(move |valid| committed.lock().unwrap().push((old_chunk, valid))));
                queue.run_until_idle();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    queue.run_until_idle();
    let mut committed = committed.lock().unwrap().clone();
    committed.sort();
    assert_eq!(committed, vec![(0, true), (1, true)], "every commit's callback runs exactly once, valid");
    assert_eq!(store.pending_count(), 0);
    assert_eq!(store.position(), (0, 2), "both records in area 0");
    let area = run_until_done(&queue, |done| store.cow().read(u64::from(CHUNK_SECTORS), CHUNK_SECTORS, done)).unwrap().unwrap();
    let mut on_disk: Vec<u64> = (0..2).map(|i| engine::format::Record::decode(&area, i).old_chunk).collect();
    on_disk.sort();
    assert_eq!(on_disk, vec![0, 1], "both records durable in area 0");
}

#[test]
fn one_exception_per_chunk_is_allocated() {
    check("one_exception_per_chunk", || one_exception_per_chunk(Mutations::NONE));
}

#[test]
fn tracked_read_holds_back_the_origin_write() {
    check("tracked_read_holds_back_origin_write", || tracked_read_holds_back_origin_write(Mutations::NONE));
}

#[test]
fn throttle_wakes_every_parked_write_model() {
    check("throttle_wakes_every_parked_write", || throttle_wakes_every_parked_write(Mutations::NONE));
}

#[test]
fn commits_are_fed_in_order_by_one_thread() {
    check("commits_fed_in_order_by_one_thread", || commits_fed_in_order_by_one_thread(Mutations::NONE));
}

#[test]
fn store_batches_commits_from_two_threads_model() {
    check("store_batches_commits_from_two_threads", store_batches_commits_from_two_threads);
}

#[test]
fn z18_pending_allocation_race_is_caught() {
    check_caught(Mutation::Z18PendingAllocationRace, one_exception_per_chunk);
}

#[test]
fn z19_read_tracked_after_unlock_is_caught() {
    check_caught(Mutation::Z19ReadTrackedAfterUnlock, tracked_read_holds_back_origin_write);
}

#[test]
fn z20_throttle_check_outside_queue_lock_is_caught() {
    check_caught(Mutation::Z20ThrottleCheckOutsideQueueLock, throttle_wakes_every_parked_write);
}

#[test]
fn z21_commit_feeder_stopping_in_two_steps_is_caught() {
    check_caught(Mutation::Z21CommitFeederStopsInTwoSteps, commits_fed_in_order_by_one_thread);
}
