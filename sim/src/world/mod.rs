//! The deterministic world: the production engine on simulated disks.
//!
//! One root seed forks an independent ChaCha stream per component — knobs,
//! scheduler, workload, crash choices, and each disk's faults — so an extra
//! draw in one component never shifts another. The world owns time: a step
//! is one event — a workload operation submitted, one in-flight disk request
//! completed (which one, the scheduler picks), one piece of deferred engine
//! work run, or a crash. After a crash every disk is replaced by a crash
//! image and the engine is rebuilt from those images only, as after a
//! reboot; then the workload goes on.
//!
//! Every event goes to the [`model::Oracle`], which judges live reads and
//! reported state; after every reload the world has it read each COW image
//! (I4, I5) and compares the engine's loaded table with what the image says
//! (I6); at the end it reads back every snapshot and the origin (I1, I2,
//! I3) and requires every operation to have completed (I11).

pub mod knobs;
pub mod observer;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, Defer, IoDone, WriteFlags};
use engine::store::{StoreConfig, StoreKind};
use engine::target::{Origin, OriginConfig, OriginDevice, Snapshot, SnapshotDevice};
use model::{Allowances, CowState, DiskOp, Event, Invariant, Oracle, OracleConfig, SnapshotSpec, Target, Violation};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::disk::{FaultRates, Image, RequestKind, SimDisk};
use crate::trace::Fnv;
pub use knobs::Knobs;
pub use observer::Failure;
use observer::{Observer, Shared, lock};

/// An independent stream for `component` of the run with root `seed`.
pub fn stream(seed: u64, component: &str) -> ChaCha8Rng {
    let mut hash = Fnv::new();
    hash.u64(seed);
    hash.bytes(component.as_bytes());
    ChaCha8Rng::seed_from_u64(hash.finish())
}

/// How a run goes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub seed: u64,
    /// Steps after which a run that has not finished is a liveness failure.
    /// Default 2,000,000.
    pub max_steps: u64,
    /// Fail on the kernel behaviours the oracle otherwise counts (K1, K2).
    /// Default off; `SNAPSIM_STRICT=1` turns it on.
    pub strict: bool,
    /// Keep every event in the report (for trace files). Default off.
    pub keep_events: bool,
    /// Knobs to use instead of the ones the seed draws (a minimized run).
    pub knobs: Option<Knobs>,
}

impl RunConfig {
    pub fn new(seed: u64) -> Self {
        let strict = std::env::var_os("SNAPSIM_STRICT").is_some_and(|v| v != "0");
        Self { seed, max_steps: 2_000_000, strict, keep_events: false, knobs: None }
    }

    /// The knobs this run uses.
    pub fn knobs(&self) -> Knobs {
        self.knobs.clone().unwrap_or_else(|| Knobs::draw(&mut stream(self.seed, "knobs")))
    }
}

/// What happened in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub operations: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub disk_requests: u64,
    pub disk_errors: u64,
    pub deferred: u64,
    pub crashes: u64,
    pub sectors_checked: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub knobs: Knobs,
    pub stats: Stats,
    pub trace_hash: u64,
    pub failure: Option<Failure>,
    pub allowances: Allowances,
    /// Every event, when [`RunConfig::keep_events`] asked for them.
    pub events: Vec<Event>,
}

impl Report {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("snapsim run --seed {}", self.seed)
    }

    /// The `cargo test` form of the replay.
    pub fn replay_test_command(&self) -> String {
        format!("SEED={} cargo test -p sim --test world replay_seed -- --nocapture", self.seed)
    }
}

/// Deferred engine work, run by the world as events.
#[derive(Default)]
struct DeferQueue(Mutex<VecDeque<Box<dyn FnOnce() + Send>>>);

impl Defer for DeferQueue {
    fn defer(&self, work: Box<dyn FnOnce() + Send + 'static>) {
        lock(&self.0).push_back(work);
    }
}

/// Where a callback leaves its result for the world to pick up.
type Slot<T> = Arc<Mutex<Option<T>>>;

/// The engine as built on one set of disks (replaced at every crash).
struct Engine {
    disks: Vec<Arc<SimDisk>>,
    deferred: Arc<DeferQueue>,
    origin: Arc<OriginDevice<SimDisk>>,
    snapshots: Vec<Arc<SnapshotDevice<SimDisk>>>,
}

/// The model's value for a sector's contents: a 64-bit hash taken a word at
/// a time (fixed forever, like the trace hash, and eight times cheaper than
/// byte-wise FNV on the hot path of every read and write).
pub fn sector_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for word in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    hash
}

fn sector_hashes(data: &[u8]) -> Vec<u64> {
    data.chunks(SECTOR_BYTES).map(sector_hash).collect()
}

/// A sector's first bytes, which name a tagged sector (`o00012s003.`).
fn head(bytes: &[u8]) -> [u8; 16] {
    let mut head = [0; 16];
    head.copy_from_slice(&bytes[..16]);
    head
}

/// Origin sector `s` at snapshot time: `O<s:08>.` repeated.
pub fn initial_sector(sector: u64) -> Vec<u8> {
    repeat_to_sector(&format!("O{sector:08}."))
}

fn repeat_to_sector(unit: &str) -> Vec<u8> {
    let mut bytes = unit.repeat(SECTOR_BYTES / unit.len() + 1).into_bytes();
    bytes.truncate(SECTOR_BYTES);
    bytes
}

/// The data a write tagged `tag` carries: `<tag>s<j:03>.` repeated in sector `j`.
pub fn tagged(tag: &str, sectors: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
    for j in 0..sectors {
        data.extend_from_slice(&repeat_to_sector(&format!("{tag}s{j:03}.")));
    }
    data
}

struct World {
    knobs: Knobs,
    seed: u64,
    scheduler: ChaCha8Rng,
    workload: ChaCha8Rng,
    crash: ChaCha8Rng,
    shared: Shared,
    engine: Engine,
    stats: Stats,
    epoch: u64,
    /// The durable COW images at the last crash: their records must survive it.
    durable_cows: Vec<Option<Image>>,
}

/// Prints the seed and its knobs, then runs it (what `snapsim run` does).
pub fn run_reporting(config: &RunConfig) -> Report {
    println!("seed {}: {}", config.seed, config.knobs());
    run(config)
}

/// Runs the world for `config.seed`.
pub fn run(config: &RunConfig) -> Report {
    let seed = config.seed;
    let knobs = config.knobs();
    let origin_sectors = knobs.origin_sectors();
    let mut origin_image = Vec::with_capacity(origin_sectors as usize * SECTOR_BYTES);
    (0..origin_sectors).for_each(|s| origin_image.extend_from_slice(&initial_sector(s)));
    let initial: Arc<[u64]> = (0..origin_sectors).map(|s| sector_hash(&initial_sector(s))).collect();
    let spec = SnapshotSpec { chunk_sectors: knobs.chunk_sectors, overflow_store: knobs.store == StoreKind::PersistentOverflow };
    let mut oracle = Oracle::new(OracleConfig { initial: Arc::clone(&initial), snapshots: vec![spec; knobs.snapshots], strict: config.strict });
    for (sector, &value) in initial.iter().enumerate() {
        oracle.label(value, head(&initial_sector(sector as u64)));
    }
    let cow_sectors = knobs.cow_chunks * u64::from(knobs.chunk_sectors);
    let mut images = vec![Image::from_bytes(origin_image)];
    images.extend((0..knobs.snapshots).map(|_| Image::zeroed(cow_sectors)));
    let mut world = World {
        seed,
        scheduler: stream(seed, "scheduler"),
        workload: stream(seed, "workload"),
        crash: stream(seed, "crash"),
        engine: Engine { disks: Vec::new(), deferred: Arc::default(), origin: placeholder_origin(), snapshots: Vec::new() },
        durable_cows: vec![None; knobs.snapshots],
        knobs,
        shared: Arc::new(Mutex::new(Observer::new(oracle, config.keep_events))),
        stats: Stats::default(),
        epoch: 0,
    };
    world.boot(images);
    world.main_loop(config.max_steps);
    let mut observer = lock(&world.shared);
    let mut stats = world.stats.clone();
    stats.acknowledged = observer.counters.acknowledged;
    stats.failed = observer.counters.failed;
    stats.sectors_checked = observer.counters.sectors_checked;
    Report {
        seed,
        knobs: world.knobs.clone(),
        stats,
        trace_hash: observer.trace_hash(),
        failure: observer.failure.clone(),
        allowances: observer.oracle.allowances(),
        events: observer.take_log(),
    }
}

/// An origin device with no disk behind it, replaced at boot.
fn placeholder_origin() -> Arc<OriginDevice<SimDisk>> {
    let disk = Arc::new(SimDisk::new(u64::MAX, Image::zeroed(1), FaultRates::default(), 0));
    Arc::new(OriginDevice::new(Origin::new(disk, Arc::new(DeferQueue::default()), OriginConfig::default())))
}

impl World {
    fn emit(&self, event: Event) {
        lock(&self.shared).emit(event);
    }

    /// Emits a write, naming its values for messages.
    fn emit_write(&self, op: u64, target: Target, sector: u64, data: &[u8]) {
        let mut observer = lock(&self.shared);
        let values = sector_hashes(data);
        for (bytes, &value) in data.chunks(SECTOR_BYTES).zip(&values) {
            observer.oracle.label(value, head(bytes));
        }
        observer.emit(Event::Write { op, target, sector, values: Arc::from(values) });
    }

    fn fail(&self, invariant: Invariant, message: String) {
        lock(&self.shared).fail(Violation::new(invariant, message));
    }

    fn failed(&self) -> bool {
        lock(&self.shared).failure.is_some()
    }

    /// Builds the engine on disks holding `images`, loading every snapshot,
    /// and checks what it loaded against what the images say.
    fn boot(&mut self, images: Vec<Image>) {
        let disks: Vec<Arc<SimDisk>> = images
            .iter()
            .enumerate()
            .map(|(index, image)| {
                let seed = stream(self.seed, &format!("disk{index}-epoch{}", self.epoch)).random::<u64>();
                Arc::new(SimDisk::new(index as u64, image.clone(), FaultRates::default(), seed))
            })
            .collect();
        let deferred = Arc::new(DeferQueue::default());
        let origin = Origin::new(Arc::clone(&disks[0]), deferred.clone(), OriginConfig { cow_threshold: self.knobs.cow_threshold });
        self.engine = Engine { disks, deferred, origin: Arc::new(OriginDevice::new(Arc::clone(&origin))), snapshots: Vec::new() };
        let config = StoreConfig { kind: self.knobs.store, chunk_sectors: Some(self.knobs.chunk_sectors) };
        for index in 0..self.knobs.snapshots {
            let slot: Slot<Result<Arc<Snapshot<SimDisk>>, engine::StoreError>> = Arc::default();
            let filler = Arc::clone(&slot);
            let cow = Arc::clone(&self.engine.disks[index + 1]);
            if let Err(error) = origin.create_snapshot(cow, config, Box::new(move |r| *lock(&filler) = Some(r))) {
                return self.fail(Invariant::I6Reload, format!("snapshot {index} refused: {error}"));
            }
            while lock(&slot).is_none() {
                if !self.step_event() {
                    return self.fail(Invariant::I11Liveness, format!("loading snapshot {index} stalled"));
                }
            }
            match lock(&slot).take() {
                Some(Ok(snapshot)) => self.engine.snapshots.push(Arc::new(SnapshotDevice::new(snapshot))),
                Some(Err(error)) => {
                    let message = format!("snapshot {index} failed to load after {} crash(es): {error}", self.epoch);
                    return self.fail(Invariant::I6Reload, message);
                }
                None => unreachable!(),
            }
        }
        let valid = self.engine.snapshots.iter().map(|d| d.snapshot().is_valid()).collect();
        self.emit(Event::Reloaded { valid });
        for index in 0..self.knobs.snapshots {
            if let Err(violation) = self.check_loaded(index, &images[index + 1]) {
                return lock(&self.shared).fail(violation);
            }
        }
        for disk in &self.engine.disks {
            disk.set_faults(self.knobs.faults);
        }
    }

    /// I4/I5 on the COW image snapshot `k` was loaded from; I6: the engine
    /// loaded exactly its records, and every record durable before the
    /// crash is among them.
    fn check_loaded(&self, k: usize, image: &Image) -> Result<(), Violation> {
        let oracle = lock(&self.shared).oracle.clone();
        let state = oracle.check_cow(k, image)?;
        let snapshot = self.engine.snapshots[k].snapshot();
        let table = state.table();
        if matches!(state, CowState::Valid(_)) != snapshot.is_valid() && !matches!(state, CowState::Fresh) {
            let message = format!("snapshot {k}'s COW says {state:?} but the engine loaded it as valid={}", snapshot.is_valid());
            return Err(Violation::new(Invariant::I6Reload, message));
        }
        if snapshot.is_valid() {
            let origin_chunks = self.knobs.origin_chunks;
            for chunk in 0..origin_chunks {
                let (engine, disk) = (snapshot.lookup(chunk), table.get(&chunk).copied());
                if engine != disk {
                    let message = format!("snapshot {k} origin chunk {chunk}: the COW records {disk:?}, the engine loaded {engine:?}");
                    return Err(Violation::new(Invariant::I6Reload, message));
                }
            }
        }
        if let Some(durable) = &self.durable_cows[k] {
            let before = oracle.check_cow(k, durable)?;
            if let (CowState::Valid(before), CowState::Valid(_)) = (&before, &state) {
                if let Some(&(old, new)) = before.iter().find(|&&(old, new)| table.get(&old) != Some(&new)) {
                    let message = format!("snapshot {k}: the durable record origin chunk {old} → COW chunk {new} disappeared in the crash");
                    return Err(Violation::new(Invariant::I6Reload, message));
                }
            }
        }
        Ok(())
    }

    /// Runs one in-flight event, if there is one: a disk completion or deferred work.
    fn step_event(&mut self) -> bool {
        let counts: Vec<usize> = self.engine.disks.iter().map(|d| d.in_flight_count()).collect();
        let requests: usize = counts.iter().sum();
        let deferred_waiting = !lock(&self.engine.deferred.0).is_empty();
        let choices = requests + usize::from(deferred_waiting);
        if choices == 0 {
            return false;
        }
        let mut pick = self.scheduler.random_range(0..choices);
        if pick == requests {
            let work = lock(&self.engine.deferred.0).pop_front().expect("deferred work waiting");
            self.stats.deferred += 1;
            self.emit(Event::Deferred);
            work();
            return true;
        }
        let disk = counts.iter().position(|&count| if pick < count { true } else { pick -= count; false }).expect("pick within the requests");
        let id = self.engine.disks[disk].in_flight_id(pick).expect("request in flight");
        let completion = self.engine.disks[disk].complete(id);
        let info = completion.info;
        let op = match info.kind {
            RequestKind::Read => DiskOp::Read,
            RequestKind::Write { fua, preflush } => DiskOp::Write { preflush, fua },
            RequestKind::Flush => DiskOp::Flush,
        };
        self.stats.disk_requests += 1;
        self.stats.disk_errors += u64::from(!completion.ok);
        self.emit(Event::Disk { disk, request: info.id, op, sector: info.sector, sectors: info.sectors, ok: completion.ok });
        completion.run();
        true
    }

    fn main_loop(&mut self, max_steps: u64) {
        let operations = self.knobs.operations;
        let crash_chance = f64::from(self.knobs.crashes) / (operations as f64 * 4.0);
        let mut crashes_left = self.knobs.crashes;
        while !self.failed() {
            self.stats.steps += 1;
            lock(&self.shared).step = self.stats.steps;
            if self.stats.steps > max_steps {
                return self.fail(Invariant::I11Liveness, format!("the run did not finish within {max_steps} steps"));
            }
            if crashes_left > 0 && self.scheduler.random_bool(crash_chance) {
                crashes_left -= 1;
                self.crash();
                continue;
            }
            let can_submit = self.stats.operations < operations && lock(&self.shared).counters.in_flight < self.knobs.queue_depth;
            let busy = self.engine.disks.iter().any(|d| d.in_flight_count() > 0) || !lock(&self.engine.deferred.0).is_empty();
            if can_submit && (!busy || self.scheduler.random_bool(0.4)) {
                self.submit();
            } else if !self.step_event() {
                break;
            }
        }
        if self.failed() {
            return;
        }
        let stuck = lock(&self.shared).counters.in_flight;
        if stuck > 0 {
            return self.fail(Invariant::I11Liveness, format!("{stuck} operation(s) never completed, with nothing left in flight"));
        }
        self.report_status();
        self.read_back_everything();
    }

    fn report_status(&self) {
        for (snapshot, device) in self.engine.snapshots.iter().enumerate() {
            let s = device.snapshot();
            self.emit(Event::Status { snapshot, valid: s.is_valid(), overflowed: s.is_overflowed() });
        }
    }

    /// A crash: every disk becomes a crash image; the engine is rebuilt from them.
    fn crash(&mut self) {
        self.stats.crashes += 1;
        self.report_status();
        self.emit(Event::Crash);
        let crash = &mut self.crash;
        let images: Vec<Image> = self.engine.disks.iter().map(|disk| disk.crash_image(|_, n| crash.random_range(0..n))).collect();
        self.durable_cows = self.engine.disks[1..].iter().map(|disk| Some(disk.durable())).collect();
        {
            let mut observer = lock(&self.shared);
            for image in &images {
                observer.mix(image.delta_hash());
            }
            // The operations in flight died with the machine.
            observer.counters.in_flight = 0;
        }
        lock(&self.engine.deferred.0).clear();
        self.epoch += 1;
        self.boot(images);
    }

    fn submit(&mut self) {
        let op = self.stats.operations;
        self.stats.operations += 1;
        let mix = self.knobs.mix;
        let total = mix.origin_write + mix.snapshot_write + mix.snapshot_read + mix.flush;
        let mut roll = self.workload.random_range(0..total);
        let origin_sectors = self.knobs.origin_sectors();
        let sector = self.workload.random_range(0..origin_sectors);
        let sectors = self.workload.random_range(1..=16u64).min(origin_sectors - sector);
        let snapshot = self.workload.random_range(0..self.knobs.snapshots);
        lock(&self.shared).counters.in_flight += 1;
        let done = self.acknowledger(op);
        if roll < mix.origin_write {
            let data = tagged(&format!("o{op:05}"), sectors);
            self.emit_write(op, Target::Origin, sector, &data);
            return self.engine.origin.write(sector, data, WriteFlags::PLAIN, done);
        }
        roll -= mix.origin_write;
        let Some(device) = self.engine.snapshots.get(snapshot).cloned() else {
            // No snapshot could be loaded; the violation is already recorded.
            return;
        };
        let target = Target::Snapshot(snapshot);
        if roll < mix.snapshot_write {
            let data = tagged(&format!("s{snapshot}{op:05}"), sectors);
            self.emit_write(op, target, sector, &data);
            return device.write(sector, data, WriteFlags::PLAIN, done);
        }
        roll -= mix.snapshot_write;
        if roll < mix.snapshot_read {
            self.emit(Event::Read { op, target, sector, sectors });
            let checker = self.read_checker(op, Arc::clone(&device));
            return device.read(sector, sectors as u32, checker);
        }
        if self.workload.random_bool(0.5) {
            self.emit(Event::Flush { op, target: Target::Origin });
            self.engine.origin.flush(done)
        } else {
            self.emit(Event::Flush { op, target });
            device.flush(done)
        }
    }

    fn acknowledger(&self, op: u64) -> IoDone<()> {
        let shared = Arc::clone(&self.shared);
        Box::new(move |result| {
            let mut observer = lock(&shared);
            observer.counters.in_flight -= 1;
            let ok = result.is_ok();
            if ok {
                observer.counters.acknowledged += 1;
            } else {
                observer.counters.failed += 1;
            }
            observer.emit(Event::Ack { op, ok });
        })
    }

    /// Hands a snapshot read's result to the oracle.
    fn read_checker(&self, op: u64, device: Arc<SnapshotDevice<SimDisk>>) -> IoDone<Vec<u8>> {
        let shared = Arc::clone(&self.shared);
        Box::new(move |result| {
            let snapshot_valid = device.snapshot().is_valid();
            let mut observer = lock(&shared);
            observer.counters.in_flight -= 1;
            let values = match result {
                Ok(data) => {
                    observer.counters.acknowledged += 1;
                    observer.counters.sectors_checked += (data.len() / SECTOR_BYTES) as u64;
                    Some(Arc::from(sector_hashes(&data)))
                }
                Err(_) => {
                    observer.counters.failed += 1;
                    None
                }
            };
            observer.emit(Event::ReadDone { op, values, snapshot_valid });
        })
    }

    /// Reads `count` sectors from `device` to completion.
    fn read_now(&mut self, device: &dyn BlockDevice, sector: u64, count: u64) -> Option<Result<Vec<u8>, engine::IoError>> {
        let slot: Slot<Result<Vec<u8>, engine::IoError>> = Arc::default();
        let filler = Arc::clone(&slot);
        device.read(sector, count as u32, Box::new(move |r| *lock(&filler) = Some(r)));
        while lock(&slot).is_none() {
            if !self.step_event() {
                self.fail(Invariant::I11Liveness, "a final read never completed".into());
                return None;
            }
        }
        lock(&slot).take()
    }

    /// At the end: every sector of every judged snapshot and of the origin, checked.
    fn read_back_everything(&mut self) {
        let origin_sectors = self.knobs.origin_sectors();
        for (k, device) in self.engine.snapshots.clone().iter().enumerate() {
            if !device.snapshot().is_valid() || !lock(&self.shared).oracle.judges(k) {
                continue;
            }
            for sector in (0..origin_sectors).step_by(64) {
                let count = (origin_sectors - sector).min(64);
                let Some(result) = self.read_now(device.as_ref(), sector, count) else { return };
                if let Ok(data) = result {
                    let mut observer = lock(&self.shared);
                    observer.counters.sectors_checked += count;
                    for (j, bytes) in data.chunks(SECTOR_BYTES).enumerate() {
                        let value = sector_hash(bytes);
                        observer.mix(value);
                        if let Err(violation) = observer.oracle.check_view_sector(k, sector + j as u64, value, false, true) {
                            return observer.fail(violation);
                        }
                    }
                }
            }
        }
        let origin = Arc::clone(&self.engine.origin);
        for sector in (0..origin_sectors).step_by(64) {
            let count = (origin_sectors - sector).min(64);
            let Some(result) = self.read_now(origin.as_ref(), sector, count) else { return };
            if let Ok(data) = result {
                let mut observer = lock(&self.shared);
                for (j, bytes) in data.chunks(SECTOR_BYTES).enumerate() {
                    let value = sector_hash(bytes);
                    observer.mix(value);
                    if let Err(violation) = observer.oracle.check_origin_sector(sector + j as u64, value) {
                        return observer.fail(violation);
                    }
                }
            }
        }
    }
}

/// Every snapshot's loaded records, for tests that compare two loads.
pub fn loaded_records(snapshot: &Snapshot<SimDisk>, origin_chunks: u64) -> BTreeMap<u64, u64> {
    (0..origin_chunks).filter_map(|c| snapshot.lookup(c).map(|n| (c, n))).collect()
}
