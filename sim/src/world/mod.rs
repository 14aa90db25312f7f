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
//! The verdict, until the reference model judges runs fully: a snapshot
//! sector may only ever read as the origin held it when the snapshot was
//! taken, or as a value written to that snapshot sector (I2), before and
//! after any crash; every load after a crash succeeds; and once the
//! workload ends, every operation completes (I11).

pub mod knobs;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, Defer, IoDone, WriteFlags};
use engine::store::StoreConfig;
use engine::target::{Origin, OriginConfig, OriginDevice, Snapshot, SnapshotDevice};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::disk::{FaultRates, Image, RequestKind, SimDisk};
use crate::trace::Fnv;
pub use knobs::Knobs;

/// An independent stream for `component` of the run with root `seed`.
pub fn stream(seed: u64, component: &str) -> ChaCha8Rng {
    let mut hash = Fnv::new();
    hash.u64(seed);
    hash.bytes(component.as_bytes());
    ChaCha8Rng::seed_from_u64(hash.finish())
}

/// How long a run may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunConfig {
    pub seed: u64,
    /// Steps after which a run that has not finished is a liveness failure.
    pub max_steps: u64,
}

impl RunConfig {
    pub fn new(seed: u64) -> Self {
        Self { seed, max_steps: 2_000_000 }
    }
}

/// An invariant the run saw broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub step: u64,
    pub invariant: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at step {}: {}", self.invariant, self.step, self.message)
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
    pub violation: Option<Violation>,
}

impl Report {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!("snapsim run --seed {}", self.seed)
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| panic!("world lock poisoned: {poisoned}"))
}

/// What user-operation callbacks share with the world.
#[derive(Default)]
struct Shared {
    step: u64,
    in_flight: usize,
    acknowledged: u64,
    failed: u64,
    sectors_checked: u64,
    violation: Option<Violation>,
    /// Hashes of values written to each (snapshot, sector).
    written: BTreeMap<(usize, u64), BTreeSet<u64>>,
    /// Snapshots invalidated before a crash that loaded as valid after it.
    revived: BTreeSet<usize>,
    /// Set while checking a read that completed after its snapshot was invalidated.
    raced_invalidation: BTreeSet<usize>,
    trace: Fnv,
}

impl Shared {
    fn violate(&mut self, invariant: &'static str, message: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { step: self.step, invariant, message });
        }
    }
}

/// The engine as built on one set of disks (replaced at every crash).
struct Engine {
    disks: Vec<Arc<SimDisk>>,
    deferred: Arc<DeferQueue>,
    origin: Arc<OriginDevice<SimDisk>>,
    snapshots: Vec<Arc<SnapshotDevice<SimDisk>>>,
}

fn sector_hash(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    hash.bytes(bytes);
    hash.finish()
}

/// Origin sector `s` at snapshot time: `O<s:08>.` repeated.
fn initial_sector(sector: u64) -> Vec<u8> {
    format!("O{sector:08}.").into_bytes().into_iter().cycle().take(SECTOR_BYTES).collect()
}

fn tagged(tag: &str, sectors: u64) -> Vec<u8> {
    (0..sectors).flat_map(|j| format!("{tag}s{j:03}.").into_bytes().into_iter().cycle().take(SECTOR_BYTES)).collect()
}

struct World {
    seed: u64,
    knobs: Knobs,
    scheduler: ChaCha8Rng,
    workload: ChaCha8Rng,
    crash: ChaCha8Rng,
    shared: Arc<Mutex<Shared>>,
    engine: Engine,
    stats: Stats,
    epoch: u64,
    /// Hash of each origin sector at snapshot time, shared with every read check.
    initial_hashes: Arc<[u64]>,
    /// Snapshots that were invalid when some crash struck.
    invalid_before_crash: BTreeSet<usize>,
    show_events: bool,
}

/// Runs the world for `config.seed`.
pub fn run(config: &RunConfig) -> Report {
    let seed = config.seed;
    let knobs = Knobs::draw(&mut stream(seed, "knobs"));
    let origin_sectors = knobs.origin_chunks * u64::from(knobs.chunk_sectors);
    let origin_image: Vec<u8> = (0..origin_sectors).flat_map(initial_sector).collect();
    let initial_hashes: Arc<[u64]> = (0..origin_sectors).map(|s| sector_hash(&initial_sector(s))).collect();
    let cow_sectors = knobs.cow_chunks * u64::from(knobs.chunk_sectors);
    let mut images = vec![Image::from_bytes(origin_image)];
    images.extend((0..knobs.snapshots).map(|_| Image::zeroed(cow_sectors)));
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let mut world = World {
        seed,
        scheduler: stream(seed, "scheduler"),
        workload: stream(seed, "workload"),
        crash: stream(seed, "crash"),
        engine: Engine { disks: Vec::new(), deferred: Arc::default(), origin: placeholder_origin(), snapshots: Vec::new() },
        knobs,
        shared,
        stats: Stats::default(),
        epoch: 0,
        initial_hashes,
        invalid_before_crash: BTreeSet::new(),
        show_events: std::env::var_os("SNAPSIM_EVENTS").is_some(),
    };
    world.boot(images);
    world.main_loop(config.max_steps);
    let shared = lock(&world.shared);
    let mut stats = world.stats.clone();
    stats.acknowledged = shared.acknowledged;
    stats.failed = shared.failed;
    stats.sectors_checked = shared.sectors_checked;
    Report { seed, knobs: world.knobs.clone(), stats, trace_hash: shared.trace.finish(), violation: shared.violation.clone() }
}

/// An origin device with no disk behind it, replaced at boot.
fn placeholder_origin() -> Arc<OriginDevice<SimDisk>> {
    let disk = Arc::new(SimDisk::new(u64::MAX, Image::zeroed(1), FaultRates::default(), 0));
    Arc::new(OriginDevice::new(Origin::new(disk, Arc::new(DeferQueue::default()), OriginConfig::default())))
}

impl World {
    fn trace(&self, values: &[u64]) {
        let mut shared = lock(&self.shared);
        for &value in values {
            shared.trace.u64(value);
        }
    }

    /// Prints an event when `SNAPSIM_EVENTS` is set (for reading a failing run).
    fn show(&self, event: impl FnOnce() -> String) {
        if self.show_events {
            eprintln!("step {:>6}: {}", self.stats.steps, event());
        }
    }

    fn violated(&self) -> bool {
        lock(&self.shared).violation.is_some()
    }

    /// Builds the engine on disks holding `images`, loading every snapshot.
    fn boot(&mut self, images: Vec<Image>) {
        let disks: Vec<Arc<SimDisk>> = images
            .into_iter()
            .enumerate()
            .map(|(index, image)| {
                let seed = stream(self.seed, &format!("disk{index}-epoch{}", self.epoch)).random::<u64>();
                Arc::new(SimDisk::new(index as u64, image, FaultRates::default(), seed))
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
                return lock(&self.shared).violate("I6 reload", format!("snapshot {index} refused: {error}"));
            }
            while lock(&slot).is_none() {
                if !self.step_event() {
                    return lock(&self.shared).violate("I11 liveness", format!("loading snapshot {index} stalled"));
                }
            }
            match lock(&slot).take() {
                Some(Ok(snapshot)) => self.engine.snapshots.push(Arc::new(SnapshotDevice::new(snapshot))),
                Some(Err(error)) => {
                    return lock(&self.shared).violate("I6 reload", format!("snapshot {index} failed to load after {} crash(es): {error}", self.epoch));
                }
                None => unreachable!(),
            }
        }
        // A snapshot invalidated before a crash that loads valid again: its
        // invalid header never became durable (the kernel writes it without
        // FUA and releases the origin writes at once).
        for (index, device) in self.engine.snapshots.iter().enumerate() {
            if self.invalid_before_crash.contains(&index) && device.snapshot().is_valid() {
                lock(&self.shared).revived.insert(index);
            }
        }
        for disk in &self.engine.disks {
            disk.set_faults(self.knobs.faults);
        }
    }

    /// Runs one in-flight event, if there is one: a disk completion or deferred work.
    fn step_event(&mut self) -> bool {
        let mut events: Vec<(usize, u64)> = Vec::new();
        for (index, disk) in self.engine.disks.iter().enumerate() {
            events.extend(disk.in_flight().into_iter().map(|r| (index, r.id)));
        }
        let deferred_waiting = !lock(&self.engine.deferred.0).is_empty();
        let choices = events.len() + usize::from(deferred_waiting);
        if choices == 0 {
            return false;
        }
        let pick = self.scheduler.random_range(0..choices);
        if pick == events.len() {
            let work = lock(&self.engine.deferred.0).pop_front().expect("deferred work waiting");
            self.stats.deferred += 1;
            self.trace(&[1]);
            work();
        } else {
            let (disk, id) = events[pick];
            let completion = self.engine.disks[disk].complete(id);
            let info = completion.info;
            let kind = match info.kind {
                RequestKind::Read => 0,
                RequestKind::Write { fua, preflush } => 1 + u64::from(fua) + 2 * u64::from(preflush),
                RequestKind::Flush => 5,
            };
            self.show(|| format!("disk {disk} completes {:?} ok={}", info, completion.ok));
            self.stats.disk_requests += 1;
            self.stats.disk_errors += u64::from(!completion.ok);
            self.trace(&[2, disk as u64, info.id, kind, info.sector, info.sectors, u64::from(completion.ok)]);
            completion.run();
        }
        true
    }

    fn main_loop(&mut self, max_steps: u64) {
        let operations = self.knobs.operations;
        let crash_chance = f64::from(self.knobs.crashes) / (operations as f64 * 4.0);
        let mut crashes_left = self.knobs.crashes;
        while !self.violated() {
            self.stats.steps += 1;
            lock(&self.shared).step = self.stats.steps;
            if self.stats.steps > max_steps {
                let message = format!("the run did not finish within {max_steps} steps");
                return lock(&self.shared).violate("I11 liveness", message);
            }
            if crashes_left > 0 && self.scheduler.random_bool(crash_chance) {
                crashes_left -= 1;
                self.crash();
                continue;
            }
            let can_submit = self.stats.operations < operations && lock(&self.shared).in_flight < self.knobs.queue_depth;
            let busy = self.engine.disks.iter().any(|d| d.in_flight_count() > 0) || !lock(&self.engine.deferred.0).is_empty();
            if can_submit && (!busy || self.scheduler.random_bool(0.4)) {
                self.submit();
            } else if !self.step_event() {
                break;
            }
        }
        if self.violated() {
            return;
        }
        if lock(&self.shared).in_flight > 0 {
            let message = format!("{} operation(s) never completed, with nothing left in flight", lock(&self.shared).in_flight);
            return lock(&self.shared).violate("I11 liveness", message);
        }
        self.read_back_everything();
    }

    /// A crash: every disk becomes a crash image; the engine is rebuilt from them.
    fn crash(&mut self) {
        self.stats.crashes += 1;
        let invalid: Vec<usize> =
            self.engine.snapshots.iter().enumerate().filter(|(_, d)| !d.snapshot().is_valid()).map(|(i, _)| i).collect();
        self.invalid_before_crash.extend(invalid);
        let crash = &mut self.crash;
        let images: Vec<Image> = self.engine.disks.iter().map(|disk| disk.crash_image(|_, n| crash.random_range(0..n))).collect();
        {
            let mut shared = lock(&self.shared);
            shared.trace.u64(3);
            for image in &images {
                shared.trace.u64(image.content_hash());
            }
            // The operations in flight died with the machine.
            shared.in_flight = 0;
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
        let origin_sectors = self.knobs.origin_chunks * u64::from(self.knobs.chunk_sectors);
        let sector = self.workload.random_range(0..origin_sectors);
        let sectors = self.workload.random_range(1..=16u64).min(origin_sectors - sector);
        let snapshot = self.workload.random_range(0..self.knobs.snapshots);
        lock(&self.shared).in_flight += 1;
        let done = self.acknowledger(op);
        if roll < mix.origin_write {
            self.show(|| format!("op {op}: origin write {sector}+{sectors}"));
            self.trace(&[10, op, sector, sectors]);
            return self.engine.origin.write(sector, tagged(&format!("o{op:05}"), sectors), WriteFlags::PLAIN, done);
        }
        roll -= mix.origin_write;
        let Some(device) = self.engine.snapshots.get(snapshot).cloned() else {
            // No snapshot could be loaded; the violation is already recorded.
            return;
        };
        if roll < mix.snapshot_write {
            self.show(|| format!("op {op}: snapshot {snapshot} write {sector}+{sectors}"));
            self.trace(&[11, op, snapshot as u64, sector, sectors]);
            let data = tagged(&format!("s{snapshot}{op:05}"), sectors);
            {
                let mut shared = lock(&self.shared);
                for j in 0..sectors {
                    let hash = sector_hash(&data[j as usize * SECTOR_BYTES..(j as usize + 1) * SECTOR_BYTES]);
                    shared.written.entry((snapshot, sector + j)).or_default().insert(hash);
                }
            }
            return device.write(sector, data, WriteFlags::PLAIN, done);
        }
        roll -= mix.snapshot_write;
        if roll < mix.snapshot_read {
            self.show(|| format!("op {op}: snapshot {snapshot} read {sector}+{sectors}"));
            self.trace(&[12, op, snapshot as u64, sector, sectors]);
            let checker = self.read_checker(op, snapshot, sector, Arc::clone(&device));
            return device.read(sector, sectors as u32, checker);
        }
        self.trace(&[13, op]);
        if self.workload.random_bool(0.5) { self.engine.origin.flush(done) } else { device.flush(done) }
    }

    fn acknowledger(&self, op: u64) -> IoDone<()> {
        let shared = Arc::clone(&self.shared);
        Box::new(move |result| {
            let mut shared = lock(&shared);
            shared.in_flight -= 1;
            let ok = result.is_ok();
            if ok {
                shared.acknowledged += 1;
            } else {
                shared.failed += 1;
            }
            shared.trace.u64(20);
            shared.trace.u64(op);
            shared.trace.u64(u64::from(ok));
        })
    }

    /// Checks a snapshot read: each sector the snapshot-time origin or a value written to it.
    fn read_checker(&self, op: u64, snapshot: usize, sector: u64, device: Arc<SnapshotDevice<SimDisk>>) -> IoDone<Vec<u8>> {
        let shared = Arc::clone(&self.shared);
        let initial = Arc::clone(&self.initial_hashes);
        Box::new(move |result| {
            let invalidated_meanwhile = !device.snapshot().is_valid();
            let mut shared = lock(&shared);
            shared.in_flight -= 1;
            shared.trace.u64(21);
            shared.trace.u64(op);
            let Ok(data) = result else {
                shared.failed += 1;
                return;
            };
            shared.acknowledged += 1;
            if invalidated_meanwhile {
                shared.raced_invalidation.insert(snapshot);
            }
            check_sectors(&mut shared, &initial, snapshot, sector, &data);
            shared.raced_invalidation.remove(&snapshot);
        })
    }

    /// At the end: every sector of every snapshot, checked.
    fn read_back_everything(&mut self) {
        let origin_sectors = self.knobs.origin_chunks * u64::from(self.knobs.chunk_sectors);
        for (index, device) in self.engine.snapshots.clone().iter().enumerate() {
            if !device.snapshot().is_valid() {
                continue;
            }
            let mut sector = 0;
            while sector < origin_sectors && !self.violated() {
                let count = (origin_sectors - sector).min(64);
                let slot: Slot<Result<Vec<u8>, engine::IoError>> = Arc::default();
                let filler = Arc::clone(&slot);
                device.read(sector, count as u32, Box::new(move |r| *lock(&filler) = Some(r)));
                while lock(&slot).is_none() {
                    if !self.step_event() {
                        return lock(&self.shared).violate("I11 liveness", "a final read never completed".into());
                    }
                }
                if let Some(Ok(data)) = lock(&slot).take() {
                    let mut shared = lock(&self.shared);
                    shared.trace.u64(sector_hash(&data));
                    check_sectors(&mut shared, &self.initial_hashes, index, sector, &data);
                }
                sector += count;
            }
        }
    }
}

fn check_sectors(shared: &mut Shared, initial: &[u64], snapshot: usize, sector: u64, data: &[u8]) {
    for (j, bytes) in data.chunks(SECTOR_BYTES).enumerate() {
        let at = sector + j as u64;
        let hash = sector_hash(bytes);
        shared.trace.u64(hash);
        shared.sectors_checked += 1;
        let written = shared.written.get(&(snapshot, at)).is_some_and(|w| w.contains(&hash));
        if hash != initial[at as usize] && !written {
            let seen = String::from_utf8_lossy(&bytes[..16]).into_owned();
            if shared.raced_invalidation.contains(&snapshot) {
                let message = format!(
                    "a read of snapshot {snapshot} served from the origin returned sector {at} as {seen:?}, written to the origin \
                     after the snapshot: the snapshot was invalidated while the read was in flight, and a failed exception \
                     releases origin writes without waiting for tracked reads"
                );
                shared.violate("I13 conflicting reads", message);
            } else if shared.revived.contains(&snapshot) {
                let message = format!(
                    "snapshot {snapshot} was invalidated before a crash but loaded as valid after it (its valid=0 header, a plain write, \
                     was not durable while origin writes went ahead); sector {at} now reads {seen:?}"
                );
                shared.violate("I8 invalidation", message);
            } else {
                let message = format!(
                    "snapshot {snapshot} sector {at} reads {seen:?}, neither the origin when the snapshot was taken nor a value written to the snapshot"
                );
                shared.violate("I2 snapshot view", message);
            }
        }
    }
}
