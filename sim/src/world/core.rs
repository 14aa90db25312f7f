//! The world itself: the engine on simulated disks, one event per step.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, Defer, IoDone, WriteFlags};
use engine::store::{StoreConfig, StoreKind};
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use engine::zoo::Mutations;
use model::{CowState, DiskOp, Event, Invariant, Oracle, OracleConfig, SnapshotSpec, Target, UserFlags, Violation};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

mod verbs;

use super::observer::{Observer, Shared, lock};
use super::{Injection, Knobs, Report, RunConfig, ScriptOp, Stats, stream};
use crate::disk::{FaultRates, Image, RequestKind, SimDisk};

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

/// A machine that is replaced (a crash) or whose run ends loses its power:
/// requests in flight and deferred work are dropped undelivered, which also
/// breaks the cycles they close (a callback holds a snapshot that holds its
/// disk that holds the callback).
impl Drop for Engine {
    fn drop(&mut self) {
        self.origin.origin().power_off();
        for device in &self.snapshots {
            device.snapshot().power_off();
        }
        for disk in &self.disks {
            disk.power_off();
        }
        let deferred = std::mem::take(&mut *lock(&self.deferred.0));
        drop(deferred);
    }
}

/// The model's value for a sector's contents: a 64-bit hash of its words
/// in four independent lanes (so the multiplies overlap), folded at the
/// end. Fixed forever, like the trace hash; on the hot path of every read,
/// write and crash state.
pub fn sector_hash(bytes: &[u8]) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    debug_assert_eq!(bytes.len() % 32, 0, "sectors are hashed 32 bytes at a time");
    let mut lanes: [u64; 4] = [0xcbf2_9ce4_8422_2325, 0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b];
    for block in bytes.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let word = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
            *lane = (*lane ^ word).wrapping_mul(MULTIPLIER).rotate_left(29);
        }
    }
    let hash = lanes.iter().fold(bytes.len() as u64, |hash, &lane| (hash ^ lane).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31));
    hash ^ (hash >> 29)
}

pub(crate) fn sector_hashes(data: &[u8]) -> Vec<u64> {
    data.chunks(SECTOR_BYTES).map(sector_hash).collect()
}

/// A reused COW device of `sectors` sectors: its first `wiped` sectors
/// (header and first metadata area) zeroed, every later sector full of an
/// old snapshot's exception records, `(n, n + 2)` for the sector's `n`-th
/// record slot: well-formed on their own, wrong for any new snapshot.
///
/// The wipe matters: a new store's header and first-area zeroing are plain
/// writes in the kernel, so a crash could keep the header and lose the
/// zeroing; a stale first area would then load as records (kernel
/// behaviour K3, which [`Knobs::stale_area_zero`] lets scenarios reach by
/// wiping the header alone).
fn stale_cow(sectors: u64, wiped: u64) -> Image {
    let mut bytes = vec![0u8; sectors as usize * SECTOR_BYTES];
    let stale = stale_sector();
    bytes.chunks_exact_mut(SECTOR_BYTES).skip(wiped as usize).for_each(|sector| sector.copy_from_slice(&stale));
    Image::from_bytes(bytes)
}

/// Every sector of a stale COW past its wipe: the record in slot `n` of the
/// sector is `(n, n + 2)`.
fn stale_sector() -> [u8; SECTOR_BYTES] {
    let mut sector = [0u8; SECTOR_BYTES];
    for (n, record) in sector.chunks_exact_mut(16).enumerate() {
        record[..8].copy_from_slice(&(n as u64).to_le_bytes());
        record[8..].copy_from_slice(&(n as u64 + 2).to_le_bytes());
    }
    sector
}

/// A sector's first bytes, which name a tagged sector (`o00012s003.`).
fn head(bytes: &[u8]) -> [u8; 16] {
    let mut head = [0; 16];
    head.copy_from_slice(&bytes[..16]);
    head
}

/// Names each sector value of `data` (`values`, one per sector) after the
/// sector's first bytes, so that the oracle's messages can show them.
pub(crate) fn label_sectors(oracle: &mut Oracle, data: &[u8], values: &[u64]) {
    for (bytes, &value) in data.chunks(SECTOR_BYTES).zip(values) {
        oracle.label(value, head(bytes));
    }
}

/// The origin at snapshot time, `sectors` long, and each sector's value.
pub(crate) fn initial_origin(sectors: u64) -> (Vec<u8>, Arc<[u64]>) {
    let mut image = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
    (0..sectors).for_each(|s| image.extend_from_slice(&initial_sector(s)));
    let values = image.chunks(SECTOR_BYTES).map(sector_hash).collect();
    (image, values)
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

/// The simulated machine: disks, engine, workload and observer.
pub struct World {
    seed: u64,
    pub(crate) knobs: Knobs,
    scheduler: ChaCha8Rng,
    workload: ChaCha8Rng,
    crash: ChaCha8Rng,
    /// Draws random writes' PREFLUSH and FUA flags.
    flags: ChaCha8Rng,
    shared: Shared,
    engine: Engine,
    stats: Stats,
    epoch: u64,
    /// The durable COW images at the last crash: their records must survive it.
    durable_cows: Vec<Option<Image>>,
    images: Vec<Image>,
    script: Option<VecDeque<ScriptOp>>,
    injections: Vec<Injection>,
    /// The snapshot handed to snapshot-merge, and how its merge ended.
    merging: Option<(usize, Slot<MergeOutcome>)>,
    /// Merge runs whose status line has been judged (see [`World::judge_merge_step`]).
    merge_runs_judged: u64,
    /// Whether the main loop ends by reading everything back.
    read_back_at_end: bool,
    mutations: Mutations,
    /// Every operation run, as a script that replays the workload.
    ops: Vec<ScriptOp>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("seed", &self.seed).field("stats", &self.stats).finish()
    }
}

/// An origin device with no disk behind it, replaced at boot.
/// A COW image's decoded state, and that of the durable image before the
/// crash (when its records must survive), or the violation decoding found.
type Decoded = Result<(CowState, Option<Result<CowState, Violation>>), Violation>;

fn placeholder_origin() -> Arc<OriginDevice<SimDisk>> {
    let disk = Arc::new(SimDisk::new(u64::MAX, Image::zeroed(1), FaultRates::default(), 0));
    Arc::new(OriginDevice::new(Origin::new(disk, Arc::new(DeferQueue::default()), OriginConfig::default())))
}

impl CrashPoint {
    /// Whether `sector` of disk `disk` (0 the origin, `k + 1` COW `k`) is
    /// metadata a reload reads: a COW's header sector (the first of its
    /// header chunk, the only one the loader and the model read) or a
    /// sector of one of its metadata areas. Every other sector is data, seen
    /// only through the values a read returns, or never read at all (the
    /// rest of the header chunk).
    pub fn is_metadata(&self, disk: usize, sector: u64) -> bool {
        disk > 0 && {
            let geometry = self.oracle.geometry(disk - 1);
            let chunk = sector / u64::from(geometry.chunk_sectors);
            sector == 0 || (chunk != 0 && geometry.is_metadata(chunk))
        }
    }
}

/// How a crash state was judged, when no invariant broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Reloaded and checked.
    Checked,
    /// Kernel behaviour K3 (a stale area 0 under a fresh header): allowed
    /// and counted, not judged further; `--strict` makes it an I4 failure.
    AllowedK3,
}

/// Everything needed to judge one crash state later, taken at a crash point.
#[derive(Debug, Clone)]
pub struct CrashPoint {
    seed: u64,
    knobs: Knobs,
    oracle: Oracle,
    durable_cows: Vec<Option<Image>>,
    merging: Option<usize>,
    epoch: u64,
    mutations: Mutations,
    /// Each snapshot's completed (committed) exceptions at the crash point.
    committed: Vec<u64>,
}

impl World {
    /// A world for `config`, not yet booted.
    pub fn new(config: &RunConfig) -> Self {
        let seed = config.seed;
        let knobs = config.knobs();
        let (origin_image, initial) = initial_origin(knobs.origin_sectors());
        let specs = (0..knobs.snapshots)
            .map(|k| SnapshotSpec { chunk_sectors: knobs.snapshot_chunk_sectors(k), overflow_store: knobs.store == StoreKind::PersistentOverflow })
            .collect();
        let mut oracle = Oracle::new(OracleConfig {
            initial: Arc::clone(&initial),
            snapshots: specs,
            strict: config.strict,
            cow_threshold: knobs.cow_threshold as u32,
        });
        label_sectors(&mut oracle, &origin_image, &initial);
        let cow_sectors = knobs.cow_chunks * u64::from(knobs.chunk_sectors);
        let mut images = vec![Image::from_bytes(origin_image)];
        // A reused COW keeps its stale records past the wipe: the header and
        // area 0, or the header alone (`stale_area_zero`).
        let wiped = if knobs.stale_area_zero { 1 } else { 2 } * u64::from(knobs.chunk_sectors);
        images.extend((0..knobs.snapshots).map(|_| if knobs.stale_cow { stale_cow(cow_sectors, wiped) } else { Image::zeroed(cow_sectors) }));
        let mut world = Self::unbooted(seed, "", knobs, Observer::new(oracle, config.keep_events), config.mutations);
        world.images = images;
        world.script = config.script.clone().map(VecDeque::from);
        world.injections = config.injections.clone();
        world
    }

    /// A world with no disks yet, no workload and nothing run. Its random
    /// streams are the seed's, named with `streams` appended.
    fn unbooted(seed: u64, streams: &str, knobs: Knobs, observer: Observer, mutations: Mutations) -> Self {
        Self {
            seed,
            scheduler: stream(seed, &format!("scheduler{streams}")),
            workload: stream(seed, &format!("workload{streams}")),
            crash: stream(seed, "crash"),
            flags: stream(seed, &format!("flags{streams}")),
            engine: Engine { disks: Vec::new(), deferred: Arc::default(), origin: placeholder_origin(), snapshots: Vec::new() },
            durable_cows: vec![None; knobs.snapshots],
            knobs,
            shared: Arc::new(Mutex::new(observer)),
            stats: Stats::default(),
            epoch: 0,
            images: Vec::new(),
            script: None,
            injections: Vec::new(),
            merging: None,
            merge_runs_judged: 0,
            read_back_at_end: true,
            mutations,
            ops: Vec::new(),
        }
    }

    /// Boots on the initial images and arms the scripted faults.
    pub fn start(&mut self) {
        let images = std::mem::take(&mut self.images);
        self.boot_on(images);
        for injection in &self.injections {
            match *injection {
                Injection::Latent { disk, sector, sectors } => self.engine.disks[disk].inject_latent(sector..sector + sectors),
                Injection::FailWrites { disk, sector, sectors, count } => self.engine.disks[disk].fail_writes(sector..sector + sectors, count),
            }
        }
    }

    /// The run's outcome so far.
    pub fn report(&self) -> Report {
        let mut observer = lock(&self.shared);
        let mut stats = self.stats.clone();
        stats.acknowledged = observer.counters.acknowledged;
        stats.failed = observer.counters.failed;
        stats.sectors_checked = observer.counters.sectors_checked;
        Report {
            seed: self.seed,
            knobs: self.knobs.clone(),
            stats,
            trace_hash: observer.trace_hash(),
            failure: observer.failure.clone(),
            allowances: observer.oracle.allowances(),
            events: observer.take_log(),
            ops: self.ops.clone(),
            replay: String::new(),
            replay_test: String::new(),
        }
    }

    /// The disks as they are now (origin first).
    pub fn disks(&self) -> &[Arc<SimDisk>] {
        &self.engine.disks
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn emit(&self, event: Event) {
        lock(&self.shared).emit(event);
    }

    /// Emits a write, naming its values for messages.
    fn emit_write(&self, op: u64, target: Target, sector: u64, data: &[u8], flags: UserFlags) {
        let values: Arc<[u64]> = Arc::from(sector_hashes(data));
        let mut observer = lock(&self.shared);
        label_sectors(&mut observer.oracle, data, &values);
        observer.emit(Event::Write { op, target, sector, values, flags });
    }

    fn fail(&self, invariant: Invariant, message: String) {
        lock(&self.shared).fail(Violation::new(invariant, message));
    }

    pub fn failed(&self) -> bool {
        lock(&self.shared).failure.is_some()
    }

    /// Builds the engine on disks holding `images`, loading every snapshot,
    /// and checks what it loaded against what the images say.
    fn boot_on(&mut self, images: Vec<Image>) {
        // What the COW images say, read before the disks take them over.
        let decoded: Vec<Decoded> = (0..self.knobs.snapshots).map(|k| self.decode_cows(k, &images[k + 1])).collect();
        // The model's verdict on the disks comes first: an engine refusing
        // to load ill-formed metadata is a symptom, not the cause.
        if let Some(Err(violation)) = decoded.iter().find(|d| d.is_err()) {
            return lock(&self.shared).fail(violation.clone());
        }
        let disks: Vec<Arc<SimDisk>> = images
            .into_iter()
            .enumerate()
            .map(|(index, image)| {
                let seed = stream(self.seed, &format!("disk{index}-epoch{}", self.epoch)).random::<u64>();
                Arc::new(SimDisk::new(index as u64, image, FaultRates::default(), seed))
            })
            .collect();
        let deferred = Arc::new(DeferQueue::default());
        let origin =
            Origin::new(Arc::clone(&disks[0]), deferred.clone(), OriginConfig { cow_threshold: self.knobs.cow_threshold, mutations: self.mutations });
        self.engine = Engine { disks, deferred, origin: Arc::new(OriginDevice::new(Arc::clone(&origin))), snapshots: Vec::new() };
        for index in 0..self.knobs.snapshots {
            let config =
                StoreConfig { kind: self.knobs.store, chunk_sectors: Some(self.knobs.snapshot_chunk_sectors(index)), ..StoreConfig::default() };
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
        for (index, decoded) in decoded.into_iter().enumerate() {
            if let Err(violation) = self.check_loaded(index, decoded) {
                return lock(&self.shared).fail(violation);
            }
        }
        if let Some((k, _)) = self.merging {
            self.start_merge(k);
        }
        for disk in &self.engine.disks {
            disk.set_faults(self.knobs.faults);
        }
    }

    /// I4/I5 on the COW image snapshot `k` is about to load from, and on
    /// the durable image before the crash (whose records must survive).
    fn decode_cows(&self, k: usize, image: &Image) -> Decoded {
        let merging = self.merging.as_ref().is_some_and(|(m, _)| *m == k);
        // Both images are read under one lock, not a copy of the oracle.
        let observer = lock(&self.shared);
        let state = observer.oracle.check_cow(k, image)?;
        let before = self.durable_cows[k].as_ref().filter(|_| !merging).map(|durable| observer.oracle.check_cow(k, durable));
        Ok((state, before))
    }

    /// I6: the engine loaded exactly the records of the image it loaded
    /// from, and every record durable before the crash is among them.
    fn check_loaded(&self, k: usize, decoded: Decoded) -> Result<(), Violation> {
        let (state, before) = decoded?;
        let snapshot = self.engine.snapshots[k].snapshot();
        let table = state.table();
        if matches!(state, CowState::Valid(_)) != snapshot.is_valid() && !matches!(state, CowState::Fresh) {
            let message = format!("snapshot {k}'s COW says {state:?} but the engine loaded it as valid={}", snapshot.is_valid());
            return Err(Violation::new(Invariant::I6Reload, message));
        }
        if snapshot.is_valid() {
            let origin_chunks = self.knobs.origin_sectors() / u64::from(self.knobs.snapshot_chunk_sectors(k));
            for chunk in 0..origin_chunks {
                let (engine, disk) = (snapshot.lookup(chunk), table.get(&chunk).copied());
                if engine != disk {
                    let message = format!("snapshot {k} origin chunk {chunk}: the COW records {disk:?}, the engine loaded {engine:?}");
                    return Err(Violation::new(Invariant::I6Reload, message));
                }
            }
        }
        if let Some(before) = before {
            let before = before?;
            if let (CowState::Valid(before), CowState::Valid(_)) = (&before, &state) {
                if let Some(&(old, new)) = before.iter().find(|&&(old, new)| table.get(&old) != Some(&new)) {
                    let message = format!("snapshot {k}: the durable record origin chunk {old} → COW chunk {new} disappeared in the crash");
                    return Err(Violation::new(Invariant::I6Reload, message));
                }
            }
        }
        Ok(())
    }

    /// Whether anything is in flight: disk requests or deferred engine work.
    fn busy(&self) -> bool {
        self.engine.disks.iter().any(|d| d.in_flight_count() > 0) || !lock(&self.engine.deferred.0).is_empty()
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
        let disk = counts
            .iter()
            .position(|&count| {
                if pick < count {
                    true
                } else {
                    pick -= count;
                    false
                }
            })
            .expect("pick within the requests");
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

    /// Runs until the workload is done and nothing is in flight (or a
    /// violation). `at_crash_point` sees the world between every two steps;
    /// returning `false` stops the run there.
    pub fn main_loop(&mut self, max_steps: u64, at_crash_point: &mut dyn FnMut(&World) -> bool) {
        let operations = self.knobs.operations;
        let crash_chance = (f64::from(self.knobs.crashes) / (operations.max(1) as f64 * 4.0)).min(1.0);
        let mut crashes_left = self.knobs.crashes;
        while !self.failed() {
            if !at_crash_point(self) {
                return;
            }
            self.stats.steps += 1;
            lock(&self.shared).step = self.stats.steps;
            if self.stats.steps > max_steps {
                return self.fail(Invariant::I11Liveness, format!("the run did not finish within {max_steps} steps"));
            }
            if crashes_left > 0 && self.scheduler.random_bool(crash_chance) {
                crashes_left -= 1;
                self.crash_seeded();
                continue;
            }
            let room = lock(&self.shared).counters.in_flight < self.knobs.queue_depth;
            let busy = self.busy();
            let next = match &mut self.script {
                Some(script) => match script.front().copied() {
                    Some(op) if op.needs_quiet() && (busy || lock(&self.shared).counters.in_flight > 0) => None,
                    Some(op) if room && (!busy || op.needs_quiet() || self.scheduler.random_bool(0.4)) => script.pop_front(),
                    _ => None,
                },
                None if self.stats.operations < operations && room && (!busy || self.scheduler.random_bool(0.4)) => Some(self.random_op()),
                None => None,
            };
            match next {
                Some(op) => self.run_op(op),
                None if !self.step_event() => break,
                None => {}
            }
            self.judge_merge_step();
        }
        if self.failed() {
            return;
        }
        let stuck = lock(&self.shared).counters.in_flight;
        if stuck > 0 {
            return self.fail(Invariant::I11Liveness, format!("{stuck} operation(s) never completed, with nothing left in flight"));
        }
        if let Some((k, outcome)) = &self.merging {
            if lock(outcome).is_none() {
                return self.fail(Invariant::I11Liveness, format!("the merge of snapshot {k} never finished"));
            }
        }
        self.report_status();
        if self.read_back_at_end {
            self.read_back_everything();
        }
    }

    /// Reports every snapshot's state; at quiescence also checks its
    /// status line against its COW (I14).
    fn report_status(&self) {
        let quiescent = !self.busy() && lock(&self.shared).counters.in_flight == 0;
        for event in self.statuses(quiescent) {
            let Event::Status { snapshot: k, valid, overflowed, .. } = event else { unreachable!("statuses yields status events") };
            self.emit(event);
            if quiescent && !self.failed() {
                let line = self.engine.snapshots[k].snapshot().status();
                let checked =
                    self.engine.disks[k + 1].with_cached(|cow| lock(&self.shared).oracle.check_status_line(k, valid, overflowed, &line, cow));
                if let Err(violation) = checked {
                    return lock(&self.shared).fail(violation);
                }
            }
        }
    }

    /// Each snapshot's reported state, as events.
    fn statuses(&self, quiescent: bool) -> impl Iterator<Item = Event> + '_ {
        self.engine.snapshots.iter().enumerate().map(move |(snapshot, device)| {
            let s = device.snapshot();
            Event::Status { snapshot, valid: s.is_valid(), overflowed: s.is_overflowed(), quiescent, copies_max: s.copies_in_flight().1 as u32 }
        })
    }

    /// A crash: every disk becomes a crash image; the engine is rebuilt from them.
    fn crash_seeded(&mut self) {
        let crash = &mut self.crash;
        let images: Vec<Image> = self.engine.disks.iter().map(|disk| disk.crash_image(|_, n| crash.random_range(0..n))).collect();
        self.reboot(images, false);
    }

    /// Stops the machine and boots it on `images`.
    fn reboot(&mut self, images: Vec<Image>, clean: bool) {
        let durable = self.engine.disks[1..].iter().map(|disk| Some(disk.durable())).collect();
        self.reboot_keeping(images, durable, clean);
    }

    /// Stops the machine and boots it on `images`; every record of
    /// `must_keep` (one COW image per snapshot) must load again. A `clean`
    /// reboot (a scripted reload) loses nothing: the oracle is told so.
    fn reboot_keeping(&mut self, images: Vec<Image>, must_keep: Vec<Option<Image>>, clean: bool) {
        self.stats.crashes += 1;
        self.report_status();
        self.emit(if clean { Event::CleanReload } else { Event::Crash });
        self.durable_cows = must_keep;
        {
            let mut observer = lock(&self.shared);
            if observer.traces() {
                for image in &images {
                    observer.mix(image.delta_hash());
                }
            }
            // The operations in flight died with the machine.
            observer.counters.in_flight = 0;
        }
        lock(&self.engine.deferred.0).clear();
        self.epoch += 1;
        self.boot_on(images);
    }

    /// The next operation of the random workload.
    fn random_op(&mut self) -> ScriptOp {
        let mix = self.knobs.mix;
        let total = mix.origin_write + mix.snapshot_write + mix.snapshot_read + mix.flush;
        let roll = self.workload.random_range(0..total);
        let origin_sectors = self.knobs.origin_sectors();
        let sector = self.workload.random_range(0..origin_sectors);
        let sectors = self.workload.random_range(1..=16u64).min(origin_sectors - sector);
        let snapshot = self.workload.random_range(0..self.knobs.snapshots);
        if roll < mix.origin_write {
            ScriptOp::Write { target: Target::Origin, sector, sectors, flags: self.draw_flags() }
        } else if roll < mix.origin_write + mix.snapshot_write {
            ScriptOp::Write { target: Target::Snapshot(snapshot), sector, sectors, flags: self.draw_flags() }
        } else if roll < mix.origin_write + mix.snapshot_write + mix.snapshot_read {
            ScriptOp::Read { snapshot, sector, sectors }
        } else if self.workload.random_bool(0.5) {
            ScriptOp::Flush { target: Target::Origin }
        } else {
            ScriptOp::Flush { target: Target::Snapshot(snapshot) }
        }
    }

    /// A random write's flags, from a stream of their own (so that seeds
    /// whose knobs draw no flags run exactly as before flags existed).
    fn draw_flags(&mut self) -> UserFlags {
        let (fua, preflush) = (self.knobs.fua_per_mille, self.knobs.preflush_per_mille);
        if fua == 0 && preflush == 0 {
            return UserFlags::PLAIN;
        }
        UserFlags { fua: self.flags.random_range(0..1000) < fua, preflush: self.flags.random_range(0..1000) < preflush }
    }

    fn run_op(&mut self, op: ScriptOp) {
        self.ops.push(op);
        match op {
            ScriptOp::Wait => {}
            ScriptOp::Reload => {
                let images = self.engine.disks.iter().map(|d| d.cached()).collect();
                self.reboot(images, true);
            }
            ScriptOp::Crash => self.crash_seeded(),
            ScriptOp::Merge { snapshot } => {
                if snapshot < self.engine.snapshots.len() && self.merging.is_none() {
                    self.merging = Some((snapshot, Arc::default()));
                    self.start_merge(snapshot);
                }
            }
            ScriptOp::Write { .. } | ScriptOp::Read { .. } | ScriptOp::Flush { .. } => self.submit(op),
        }
    }

    /// Hands snapshot `k` to snapshot-merge and starts the merge.
    /// After every merge step (a run merged and its records cleared), the
    /// merging snapshot's status line must be the kernel's for what its COW
    /// holds, as at quiescence, but with the previous area's read possibly
    /// still in flight (either metadata size at an area boundary).
    fn judge_merge_step(&mut self) {
        let Some((k, _)) = &self.merging else { return };
        let k = *k;
        let Some(device) = self.engine.snapshots.get(k) else { return };
        let snapshot = device.snapshot();
        let runs = snapshot.runs_merged();
        if runs == self.merge_runs_judged || self.failed() {
            return;
        }
        self.merge_runs_judged = runs;
        let (valid, overflowed, line) = (snapshot.is_valid(), snapshot.is_overflowed(), snapshot.status());
        let checked =
            self.engine.disks[k + 1].with_cached(|cow| lock(&self.shared).oracle.check_merge_step_status_line(k, valid, overflowed, &line, cow));
        if let Err(violation) = checked {
            lock(&self.shared).fail(violation);
        }
    }

    fn start_merge(&mut self, k: usize) {
        let Some((_, outcome)) = &self.merging else { return };
        let outcome = Arc::clone(outcome);
        *lock(&outcome) = None;
        let source = Arc::clone(self.engine.snapshots[k].snapshot());
        let merging = self.engine.origin.origin().hand_over(&source, Role::Merge);
        self.merge_runs_judged = 0;
        self.engine.snapshots[k] = Arc::new(SnapshotDevice::new(Arc::clone(&merging)));
        self.emit(Event::MergeStart { snapshot: k });
        let shared = Arc::clone(&self.shared);
        merging.start_merge(Box::new(move |result| {
            let ok = result == MergeOutcome::Complete;
            *lock(&outcome) = Some(result);
            lock(&shared).emit(Event::MergeDone { snapshot: k, ok });
        }));
    }

    fn submit(&mut self, script_op: ScriptOp) {
        let op = self.stats.operations;
        self.stats.operations += 1;
        lock(&self.shared).counters.in_flight += 1;
        let device = |world: &Self, k: usize| world.engine.snapshots.get(k).cloned();
        // Once snapshot-merge is loaded, it serves the origin's device node
        // (the kernel swaps the origin's table for it): writes meant for the
        // origin arrive through the merge target.
        let script_op = match (script_op, &self.merging) {
            (ScriptOp::Write { target: Target::Origin, sector, sectors, flags }, Some((k, _))) => {
                ScriptOp::Write { target: Target::Snapshot(*k), sector, sectors, flags }
            }
            (op, _) => op,
        };
        match script_op {
            ScriptOp::Write { target: Target::Origin, sector, sectors, flags } => {
                let data = tagged(&format!("o{op:05}"), sectors);
                self.emit_write(op, Target::Origin, sector, &data, flags);
                self.engine.origin.write(sector, data, engine_flags(flags), self.acknowledger(op));
            }
            ScriptOp::Write { target: Target::Snapshot(k), sector, sectors, flags } => {
                let Some(device) = device(self, k) else { return self.fail(Invariant::I6Reload, format!("snapshot {k} is not loaded")) };
                let data = tagged(&format!("s{k}{op:05}"), sectors);
                self.emit_write(op, Target::Snapshot(k), sector, &data, flags);
                device.write(sector, data, engine_flags(flags), self.acknowledger(op));
            }
            ScriptOp::Read { snapshot, sector, sectors } => {
                let Some(device) = device(self, snapshot) else {
                    return self.fail(Invariant::I6Reload, format!("snapshot {snapshot} is not loaded"));
                };
                self.emit(Event::Read { op, target: Target::Snapshot(snapshot), sector, sectors });
                let checker = self.read_checker(op, Arc::clone(&device));
                device.read(sector, sectors as u32, checker);
            }
            ScriptOp::Flush { target } => {
                self.emit(Event::Flush { op, target });
                match target {
                    Target::Origin => self.engine.origin.flush(self.acknowledger(op)),
                    Target::Snapshot(k) => match device(self, k) {
                        Some(device) => device.flush(self.acknowledger(op)),
                        None => self.fail(Invariant::I6Reload, format!("snapshot {k} is not loaded")),
                    },
                }
            }
            ScriptOp::Wait | ScriptOp::Reload | ScriptOp::Merge { .. } | ScriptOp::Crash => unreachable!("not a submission"),
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
        for (k, device) in self.engine.snapshots.clone().iter().enumerate() {
            if !device.snapshot().is_valid() || !lock(&self.shared).oracle.judges(k) {
                continue;
            }
            if !self.read_back(device.as_ref(), true, |oracle, sector, value| oracle.check_view_sector(k, sector, value, false, true)) {
                return;
            }
        }
        let origin = Arc::clone(&self.engine.origin);
        self.read_back(origin.as_ref(), false, |oracle, sector, value| oracle.check_origin_sector(sector, value));
    }

    /// Reads all of `device` in 64-sector pieces and has `check` judge each
    /// sector; `false` once a read stalled or a sector failed its check.
    fn read_back(&mut self, device: &dyn BlockDevice, count_checked: bool, check: impl Fn(&mut Oracle, u64, u64) -> Result<(), Violation>) -> bool {
        let origin_sectors = self.knobs.origin_sectors();
        for sector in (0..origin_sectors).step_by(64) {
            let count = (origin_sectors - sector).min(64);
            let Some(result) = self.read_now(device, sector, count) else { return false };
            if let Ok(data) = result {
                let mut observer = lock(&self.shared);
                if count_checked {
                    observer.counters.sectors_checked += count;
                }
                for (j, bytes) in data.chunks(SECTOR_BYTES).enumerate() {
                    let value = sector_hash(bytes);
                    observer.mix(value);
                    if let Err(violation) = check(&mut observer.oracle, sector + j as u64, value) {
                        observer.fail(violation);
                        return false;
                    }
                }
            }
        }
        true
    }

    /// What a crash right now would need judging: the oracle as the crash
    /// leaves it, and the durable COW images.
    pub fn crash_point(&self) -> Result<CrashPoint, Violation> {
        let mut oracle = lock(&self.shared).oracle.clone();
        for status in self.statuses(false) {
            oracle.apply(&status)?;
        }
        oracle.apply(&Event::Crash)?;
        Ok(CrashPoint {
            seed: self.seed,
            knobs: self.knobs.clone(),
            oracle,
            durable_cows: self.engine.disks[1..].iter().map(|d| Some(d.durable())).collect(),
            merging: self.merging.as_ref().map(|(k, _)| *k),
            epoch: self.epoch + 1,
            mutations: self.mutations,
            committed: self.engine.snapshots.iter().map(|d| d.snapshot().exception_count()).collect(),
        })
    }

    /// Judges one crash state: boots on `images` as a reboot would, checks
    /// the load (I4–I6), makes one more exception and reloads cleanly (I6,
    /// I7), lets a merge in progress finish (I10), and reads everything back
    /// (I1–I3).
    pub fn check_crash_state(point: &CrashPoint, images: Vec<Image>) -> Result<Judged, Violation> {
        if let Some(k) = Self::stale_area_zero_revived(point, &images) {
            // Only before the first commit: its PREFLUSH makes the zeroing durable.
            if point.committed.get(k).is_some_and(|&n| n > 0) {
                let message = format!(
                    "snapshot {k}'s COW shows a stale area 0 although {} exception(s) were committed: the first commit's PREFLUSH did not make the zeroing of area 0 durable",
                    point.committed[k]
                );
                return Err(Violation::new(Invariant::I4MetadataWellFormed, message));
            }
            let message = format!(
                "snapshot {k}'s COW holds a valid header over a stale area 0 (kernel behaviour K3: a new snapshot's header and the zeroing of its first area are plain writes, and a crash before the first commit kept the one and lost the other)"
            );
            return if point.oracle.strict() { Err(Violation::new(Invariant::I4MetadataWellFormed, message)) } else { Ok(Judged::AllowedK3) };
        }
        let mut knobs = point.knobs.clone();
        knobs.faults = FaultRates::default();
        knobs.crashes = 0;
        let mut world = Self::unbooted(point.seed, "-after-crash", knobs, Observer::quiet(point.oracle.clone()), point.mutations);
        world.durable_cows = point.durable_cows.clone();
        world.epoch = point.epoch;
        world.merging = point.merging.map(|k| (k, Arc::default()));
        world.read_back_at_end = false;
        let loaded_from: Vec<Option<Image>> = images[1..].iter().cloned().map(Some).collect();
        world.boot_on(images);
        if !world.failed() && world.merging.is_none() {
            world.script = Some(world.probe().into_iter().collect());
            world.main_loop(1_000_000, &mut |_| true);
            if !world.failed() {
                let images = world.engine.disks.iter().map(|d| d.cached()).collect();
                world.reboot_keeping(images, loaded_from, false);
            }
        }
        if !world.failed() {
            world.script = Some(VecDeque::new());
            world.read_back_at_end = true;
            world.main_loop(1_000_000, &mut |_| true);
        }
        let failure = lock(&world.shared).failure.clone();
        failure.map_or(Ok(Judged::Checked), |f| Err(f.violation))
    }

    /// K3: the snapshot whose COW image, over a reused device whose area 0
    /// was never wiped, has a valid header while some sector of area 0
    /// still holds the old snapshot's records (the zeroing was lost).
    fn stale_area_zero_revived(point: &CrashPoint, images: &[Image]) -> Option<usize> {
        if !(point.knobs.stale_cow && point.knobs.stale_area_zero) {
            return None;
        }
        let stale = stale_sector();
        (0..point.knobs.snapshots).find(|&k| {
            let image = &images[k + 1];
            let chunk = u64::from(point.knobs.snapshot_chunk_sectors(k));
            let header = image.sector(0);
            let header_written = header[..4] == engine::format::SNAP_MAGIC.to_le_bytes() && header[4..8] == 1u32.to_le_bytes();
            header_written && (chunk..2 * chunk).any(|sector| image.sector(sector) == &stale[..])
        })
    }

    /// After a reload: one origin write to a chunk no valid snapshot has
    /// copied yet, so that the store allocates and commits once more.
    fn probe(&self) -> Option<ScriptOp> {
        let chunk_sectors = u64::from(self.knobs.chunk_sectors);
        let copied = |chunk: u64| {
            self.engine.snapshots.iter().filter(|d| d.snapshot().is_valid()).any(|d| {
                let small = u64::from(d.snapshot().chunk_size().sectors());
                (chunk * chunk_sectors / small..(chunk + 1) * chunk_sectors / small).any(|c| d.snapshot().lookup(c).is_some())
            })
        };
        let chunk = (0..self.knobs.origin_chunks).find(|&c| !copied(c))?;
        Some(ScriptOp::Write { target: Target::Origin, sector: chunk * chunk_sectors, sectors: 1, flags: UserFlags::PLAIN })
    }
}

/// The engine's flags for a user write's.
fn engine_flags(flags: UserFlags) -> WriteFlags {
    WriteFlags { preflush: flags.preflush, fua: flags.fua }
}
