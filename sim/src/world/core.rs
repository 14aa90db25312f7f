//! The world itself: the simulated machine (the engine on simulated disks) and its construction; its jobs are in the submodules.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use engine::io::Defer;
use engine::store::{KernelPatches, StoreKind};
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, SnapshotDevice};
use engine::zoo::Mutations;
use model::{Event, Invariant, Oracle, OracleConfig, SnapshotSpec, Target, UserFlags, Violation};
use rand_chacha::ChaCha8Rng;

mod boot;
mod crash;
mod data;
mod incremental;
mod readback;
mod report;
mod schedule;
mod status;
mod tables;
mod verbs;
mod workload;

pub use crash::{CrashPoint, Judged};
use data::stale_cow;
pub(crate) use data::{initial_origin, label_sectors, sector_hashes};
pub use data::{initial_sector, sector_hash, tagged};
pub use incremental::{Incremental, IncrementalStats};
pub use report::{LastCrash, Report, Stats};

use super::config::{Injection, RunConfig, stream};
use super::knobs::Knobs;
use super::observer::{Observer, Shared, lock};
use super::script::ScriptOp;
use crate::disk::{FaultRates, Image, SimDisk};

/// What the oracle read in each snapshot's durable COW image (none where
/// no record must survive), shared by every state of a crash point.
type DurableDecoded = Arc<[Option<Result<model::CowState, Violation>>]>;

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
    /// What the oracle read in `durable_cows`, where already known (a crash
    /// point reads its durable images once for all its states).
    durable_decoded: Option<DurableDecoded>,
    /// Each snapshot's (valid, Overflow) when its state was last reported:
    /// a change is reported after the step that made it.
    last_reported: Vec<(bool, bool)>,
    /// Clean reloads the random workload has done (a reused COW's, see `due_op`).
    swarm_reloads: usize,
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
    /// How the engine writes COW headers (stock, or the kernel-patches/ series').
    kernel_patches: KernelPatches,
    /// Every operation run, as a script that replays the workload.
    ops: Vec<ScriptOp>,
    /// The disk requests so far, when a timeline was asked for.
    timeline: Option<crate::timeline::Recorder>,
    /// The last seeded crash, kept when a timeline was asked for: what a
    /// failure after it may be explained by.
    last_crash: Option<Box<LastCrash>>,
    /// The schedule being followed instead of the seed's draws.
    guide: Option<VecDeque<super::guide::Decision>>,
    /// The schedule so far, when asked to record it.
    recorded: Option<Vec<super::guide::Decision>>,
    /// Every write completed, as (disk, first sector, sectors), when asked:
    /// what a crash state's judge changed besides the crash, and what the
    /// recorded run wrote between two crash points.
    written: Option<Vec<(usize, u64, u64)>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("seed", &self.seed).field("stats", &self.stats).finish()
    }
}

/// An origin device with no disk behind it, replaced at boot.
fn placeholder_origin() -> Arc<OriginDevice<SimDisk>> {
    let disk = Arc::new(SimDisk::new(u64::MAX, Image::zeroed(1), FaultRates::default(), 0));
    Arc::new(OriginDevice::new(Origin::new(disk, Arc::new(DeferQueue::default()), OriginConfig::default())))
}

impl World {
    /// A world for `config`, not yet booted.
    pub fn new(config: &RunConfig) -> Self {
        let seed = config.seed;
        let knobs = config.knobs();
        let (origin_image, initial) = initial_origin(knobs.origin_sectors());
        let specs = (0..knobs.snapshots)
            .map(|k| SnapshotSpec {
                chunk_sectors: knobs.snapshot_chunk_sectors(k),
                overflow_store: knobs.store == StoreKind::PersistentOverflow,
                cow_sectors: knobs.cow_sectors(),
            })
            .collect();
        let mut oracle = Oracle::new(OracleConfig {
            initial: Arc::clone(&initial),
            snapshots: specs,
            strict: config.strict,
            cow_threshold: knobs.cow_threshold as u32,
            kernel_patches_applied: config.kernel_patches == KernelPatches::Applied,
        });
        label_sectors(&mut oracle, &origin_image, &initial);
        let cow_sectors = knobs.cow_sectors();
        let mut images = vec![Image::from_bytes(origin_image)];
        // A reused COW keeps its stale records past the wipe: the header and
        // area 0, or the header alone (`stale_area_zero`).
        let wiped = if knobs.stale_area_zero { 1 } else { 2 } * u64::from(knobs.chunk_sectors);
        images.extend((0..knobs.snapshots).map(|_| if knobs.stale_cow { stale_cow(cow_sectors, wiped) } else { Image::zeroed(cow_sectors) }));
        let mut world = Self::unbooted(seed, "", knobs, Observer::new(oracle, config.keep_events), (config.mutations, config.kernel_patches));
        world.images = images;
        world.script = config.script.clone().map(VecDeque::from);
        world.injections = config.injections.clone();
        world.timeline = config.timeline.then(crate::timeline::Recorder::default);
        world.guide = config.schedule.clone();
        world.recorded = config.record_schedule.then(Vec::new);
        world
    }

    /// A world with no disks yet, no workload and nothing run. Its random
    /// streams are the seed's, named with `streams` appended.
    fn unbooted(seed: u64, streams: &str, knobs: Knobs, observer: Observer, (mutations, kernel_patches): (Mutations, KernelPatches)) -> Self {
        Self {
            seed,
            scheduler: stream(seed, &format!("scheduler{streams}")),
            workload: stream(seed, &format!("workload{streams}")),
            crash: stream(seed, "crash"),
            flags: stream(seed, &format!("flags{streams}")),
            engine: Engine { disks: Vec::new(), deferred: Arc::default(), origin: placeholder_origin(), snapshots: Vec::new() },
            durable_cows: vec![None; knobs.snapshots],
            durable_decoded: None,
            last_reported: Vec::new(),
            swarm_reloads: 0,
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
            kernel_patches,
            ops: Vec::new(),
            timeline: None,
            last_crash: None,
            guide: None,
            recorded: None,
            written: None,
        }
    }

    /// Boots on the initial images and arms the scripted faults.
    pub fn start(&mut self) {
        let images = std::mem::take(&mut self.images);
        self.boot_on(images);
        for injection in &self.injections {
            let (Injection::Latent { disk, sector, sectors } | Injection::FailWrites { disk, sector, sectors, .. }) = *injection;
            if disk > 0 {
                let chunk_sectors = u64::from(self.knobs.snapshot_chunk_sectors(disk - 1));
                let layout = engine::format::Layout::new(engine::ChunkSize::from_sectors(chunk_sectors as u32));
                if (sector / chunk_sectors..=(sector + sectors.max(1) - 1) / chunk_sectors).any(|c| c == 0 || layout.is_metadata_chunk(c)) {
                    crate::marks::hit(crate::marks::WorldMark::FaultOnMetadataArea);
                }
            }
            match *injection {
                Injection::Latent { disk, sector, sectors } => self.engine.disks[disk].inject_latent(sector..sector + sectors),
                Injection::FailWrites { disk, sector, sectors, count, skip } => {
                    self.engine.disks[disk].fail_writes_after(sector..sector + sectors, count, skip)
                }
            }
        }
    }

    /// The run's outcome so far.
    pub fn report(&self) -> Report {
        // Before the observer's lock: the timeline takes it too.
        let timeline = self.timeline();
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
            marks: Default::default(),
            timeline,
            schedule: self.recorded.clone(),
            last_crash: self.last_crash.clone(),
        }
    }

    /// The schedule recorded so far, when asked for.
    pub fn schedule(&self) -> Option<&[super::guide::Decision]> {
        self.recorded.as_deref()
    }

    /// The run's I/O so far, when a timeline was asked for; a failure found
    /// so far is written on it.
    pub fn timeline(&self) -> Option<crate::timeline::Timeline> {
        let recorder = self.timeline.as_ref()?;
        let mut timeline = recorder.timeline(&format!("snapsim seed {}", self.seed), self.knobs.snapshots);
        if let Some(failure) = &lock(&self.shared).failure {
            timeline.set_failure(&failure.violation.to_string(), &failure.violation.message);
            // The run's last crash made the state the failure was found in.
            if let Some(crash) = timeline.markers.iter_mut().rev().find(|m| m.label == "crash") {
                crash.failing = true;
            }
        }
        Some(timeline)
    }

    /// The boot the running disks belong to, on the timeline.
    pub fn timeline_boot(&self) -> Option<u64> {
        self.timeline.as_ref().map(crate::timeline::Recorder::boot)
    }

    /// Takes the requests the disks submitted since the last tick and
    /// advances the timeline's clock.
    pub(super) fn timeline_tick(&mut self) {
        if let Some(recorder) = &mut self.timeline {
            recorder.collect(&self.engine.disks);
            recorder.tick();
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
}
