//! State-machine tests: the engine against the simplest possible model of
//! what its users see, with proptest's shrinking.
//!
//! The model is a byte-free picture of the volumes: one label per sector of
//! the origin and of each snapshot's view. A snapshot's view is a copy of
//! the origin taken when it is created; origin writes never touch it;
//! merging it makes the origin equal to it. Proptest draws sequences of
//! writes (some with PREFLUSH or FUA), flushes, reads, snapshot creations
//! (chunk sizes 512 B to 4 KiB), clean reloads and merges, runs them on the engine over memory devices, and
//! after every step reads every volume back and compares. A failing
//! sequence is shrunk to a minimal one and its seed kept in
//! `tests/proptest-regressions/` (committed), so every later run replays it
//! first.
//!
//! Where the world and its oracle (`tests/world.rs`, the fuzz targets) test
//! the engine under faults, crashes and reordering, this test keeps the
//! disks perfect and asks only the user's question — does every volume read
//! back as it should — over long sequences that the shrinker turns into a
//! story a person can read. The zoo tests below show it catching historical
//! bugs that need a reload or a merge, with their minimal sequences.

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, CompletionQueue, MemDevice, WriteFlags};
use engine::store::StoreConfig;
use engine::sync::Arc;
use engine::targets::{MergeOutcome, OriginConfig, OriginDevice, Role, SnapshotDevice};
use engine::testing::Rig;
use engine::zoo::{Mutation, Mutations};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestError, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

/// Sectors of the origin (and of every snapshot's view).
const ORIGIN_SECTORS: u64 = 64;
/// Snapshots alive at once, at most.
const SNAPSHOTS_MAX: usize = 3;
/// Longest write or read, in sectors.
const EXTENT_SECTORS_MAX: u64 = 16;
/// Where proptest keeps the seeds of failing sequences (relative to `sim/`),
/// one file for the faithful engine and one per zoo mutation.
const REGRESSIONS_DIR: &str = "tests/proptest-regressions";

/// One step a user takes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    WriteOrigin {
        sector: u64,
        sectors: u64,
        label: u64,
        flags: Flags,
    },
    WriteSnapshot {
        snapshot: usize,
        sector: u64,
        sectors: u64,
        label: u64,
        flags: Flags,
    },
    /// An empty flush of the origin (`None`) or of a snapshot.
    Flush {
        snapshot: Option<usize>,
    },
    Read {
        snapshot: Option<usize>,
        sector: u64,
        sectors: u64,
    },
    /// A new snapshot of the origin as it is now, with chunks of `1 << chunk_shift` sectors.
    CreateSnapshot {
        chunk_shift: u32,
    },
    /// Every device closed cleanly and loaded again.
    Reload,
    /// Snapshot-merge of this snapshot, run to completion; then it is removed.
    Merge {
        snapshot: usize,
    },
}

/// A write's REQ_PREFLUSH and REQ_FUA: they change what survives a crash,
/// never what a volume reads back, so the model ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flags {
    preflush: bool,
    fua: bool,
}

/// Mostly plain writes; the rest with PREFLUSH, FUA or both.
fn flags() -> impl Strategy<Value = Flags> {
    prop_oneof![
        5 => Just(Flags { preflush: false, fua: false }),
        1 => Just(Flags { preflush: false, fua: true }),
        1 => Just(Flags { preflush: true, fua: false }),
        1 => Just(Flags { preflush: true, fua: true }),
    ]
}

/// The model: a label per sector of every volume.
#[derive(Clone)]
struct Volumes {
    origin: Vec<u64>,
    /// Each snapshot's chunk size (sectors) and view.
    snapshots: Vec<(u32, Vec<u64>)>,
    next_label: u64,
}

/// Short, for the regression files' comments: the sectors that differ
/// from the origin's first contents.
impl std::fmt::Debug for Volumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let changed = |volume: &[u64]| volume.iter().enumerate().filter(|&(s, &l)| l != initial_label(s as u64)).count();
        let views: Vec<(u32, usize)> = self.snapshots.iter().map(|(chunk, view)| (*chunk, changed(view))).collect();
        write!(f, "Volumes {{ origin sectors changed: {}, snapshots (chunk sectors, sectors changed): {views:?} }}", changed(&self.origin))
    }
}

impl Volumes {
    fn write(volume: &mut [u64], sector: u64, sectors: u64, label: u64) {
        for at in sector..sector + sectors {
            volume[at as usize] = label + at;
        }
    }
}

/// The origin's first contents: a label per sector that no write uses.
fn initial_label(sector: u64) -> u64 {
    (1 << 40) + sector
}

/// A sector's bytes for a label (the label, repeated).
fn sector_bytes(label: u64) -> Vec<u8> {
    label.to_le_bytes().repeat(SECTOR_BYTES / 8)
}

fn extent() -> impl Strategy<Value = (u64, u64)> {
    (0..ORIGIN_SECTORS).prop_flat_map(|sector| (Just(sector), 1..=EXTENT_SECTORS_MAX.min(ORIGIN_SECTORS - sector)))
}

impl ReferenceStateMachine for Volumes {
    type State = Self;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Self> {
        Just(Self { origin: (0..ORIGIN_SECTORS).map(initial_label).collect(), snapshots: Vec::new(), next_label: 1 << 20 }).boxed()
    }

    fn transitions(state: &Self) -> BoxedStrategy<Step> {
        let label = state.next_label;
        let snapshots = state.snapshots.len();
        let any_snapshot = 0..snapshots.max(1);
        prop_oneof![
            3 => (extent(), flags()).prop_map(move |((sector, sectors), flags)| Step::WriteOrigin { sector, sectors, label, flags }),
            3 => (any_snapshot.clone(), extent(), flags())
                .prop_map(move |(snapshot, (sector, sectors), flags)| Step::WriteSnapshot { snapshot, sector, sectors, label, flags }),
            1 => proptest::option::of(any_snapshot.clone()).prop_map(|snapshot| Step::Flush { snapshot }),
            2 => (proptest::option::of(any_snapshot.clone()), extent()).prop_map(|(snapshot, (sector, sectors))| Step::Read { snapshot, sector, sectors }),
            2 => (0u32..=3).prop_map(|chunk_shift| Step::CreateSnapshot { chunk_shift }),
            1 => Just(Step::Reload),
            1 => any_snapshot.prop_map(|snapshot| Step::Merge { snapshot }),
        ]
        .boxed()
    }

    fn preconditions(state: &Self, step: &Step) -> bool {
        let live = state.snapshots.len();
        match *step {
            Step::WriteSnapshot { snapshot, .. } | Step::Merge { snapshot } => snapshot < live,
            Step::Read { snapshot, .. } | Step::Flush { snapshot } => snapshot.is_none_or(|k| k < live),
            Step::CreateSnapshot { .. } => live < SNAPSHOTS_MAX,
            Step::WriteOrigin { .. } | Step::Reload => true,
        }
    }

    fn apply(mut state: Self, step: &Step) -> Self {
        match *step {
            Step::WriteOrigin { sector, sectors, label, .. } => {
                Self::write(&mut state.origin, sector, sectors, label);
                state.next_label += 1 << 8;
            }
            Step::WriteSnapshot { snapshot, sector, sectors, label, .. } => {
                Self::write(&mut state.snapshots[snapshot].1, sector, sectors, label);
                state.next_label += 1 << 8;
            }
            Step::CreateSnapshot { chunk_shift } => {
                let view = state.origin.clone();
                state.snapshots.push((1 << chunk_shift, view));
            }
            Step::Merge { snapshot } => {
                let (_, view) = state.snapshots.remove(snapshot);
                state.origin = view;
            }
            Step::Read { .. } | Step::Flush { .. } | Step::Reload => {}
        }
        state
    }
}

/// The engine on memory devices: an origin and its live snapshots, built
/// with the engine's test rig.
struct Engine {
    mutations: Mutations,
    origin_dev: Arc<MemDevice>,
    /// The live snapshots, in creation order (the model's order).
    rig: Rig<MemDevice>,
    /// Each live snapshot's device face, in the rig's order.
    devices: Vec<SnapshotDevice<MemDevice>>,
}

impl Engine {
    fn new(mutations: Mutations) -> Self {
        Self::on_origin(mutations, (0..ORIGIN_SECTORS).flat_map(|s| sector_bytes(initial_label(s))).collect())
    }

    fn on_origin(mutations: Mutations, bytes: Vec<u8>) -> Self {
        let queue = CompletionQueue::new();
        let origin_dev = Arc::new(MemDevice::from_bytes(bytes, &queue));
        let rig = Rig::new(&queue, Arc::clone(&origin_dev), OriginConfig { mutations, ..OriginConfig::default() });
        Self { mutations, origin_dev, rig, devices: Vec::new() }
    }

    /// Loads (or creates) the snapshot on `cow` with `chunk_sectors`.
    fn attach(&mut self, cow: Arc<MemDevice>, chunk_sectors: u32) {
        let config = StoreConfig { chunk_sectors: Some(chunk_sectors), ..StoreConfig::default() };
        let k = self.rig.add_snapshot(cow, config).unwrap_or_else(|error| panic!("the snapshot failed to load: {error}"));
        assert!(self.rig.snapshots[k].is_valid(), "a snapshot loaded invalid: {}", self.rig.snapshots[k].status());
        self.devices.push(self.rig.snapshot_device(k));
    }

    fn write(&self, device: &dyn BlockDevice, sector: u64, sectors: u64, label: u64, flags: Flags) {
        let data: Vec<u8> = (sector..sector + sectors).flat_map(|at| sector_bytes(label + at)).collect();
        let flags = WriteFlags { preflush: flags.preflush, fua: flags.fua };
        let result = self.rig.wait(|done| device.write(sector, data, flags, done));
        result.unwrap_or_else(|error| panic!("a write failed on perfect disks: {error}"));
    }

    fn flush(&self, device: &dyn BlockDevice) {
        let result = self.rig.wait(|done| device.flush(done));
        result.unwrap_or_else(|error| panic!("a flush failed on perfect disks: {error}"));
    }

    /// The labels `device` holds over an extent.
    fn read(&self, device: &dyn BlockDevice, sector: u64, sectors: u64) -> Vec<u64> {
        let result = self.rig.wait(|done| device.read(sector, sectors as u32, done));
        let bytes = result.unwrap_or_else(|error| panic!("a read failed on perfect disks: {error}"));
        bytes.chunks(SECTOR_BYTES).map(|s| u64::from_le_bytes(s[..8].try_into().expect("a sector holds 8 bytes"))).collect()
    }

    fn origin_device(&self) -> OriginDevice<MemDevice> {
        self.rig.origin_device()
    }

    /// Closes everything cleanly and loads it again from the devices' bytes.
    fn reload(&mut self) {
        self.rig.queue.run_until_idle();
        let fresh = Self::on_origin(self.mutations, self.origin_dev.contents());
        let cows: Vec<(Vec<u8>, u32)> =
            self.rig.cows.iter().zip(&self.rig.snapshots).map(|(cow, snapshot)| (cow.contents(), snapshot.chunk_size().sectors())).collect();
        *self = fresh;
        for (bytes, chunk_sectors) in cows {
            let cow = Arc::new(MemDevice::from_bytes(bytes, &self.rig.queue));
            self.attach(cow, chunk_sectors);
        }
    }

    fn merge(&mut self, k: usize) {
        self.rig.cows.remove(k);
        self.devices.remove(k);
        let snapshot = self.rig.snapshots.remove(k);
        let merging = self.rig.origin.hand_over(&snapshot, Role::Merge);
        let outcome = self.rig.wait(|done| merging.start_merge(done));
        assert_eq!(outcome, MergeOutcome::Complete, "the merge of snapshot {k} did not complete on perfect disks");
        self.rig.queue.run_until_idle();
        self.rig.origin.remove(&merging);
    }
}

/// Runs the engine against [`Volumes`]; `Z` is a zoo mutation's index plus
/// one (0 for the faithful engine).
struct EngineTest<const Z: usize>;

impl<const Z: usize> EngineTest<Z> {
    fn mutations() -> Mutations {
        match Z {
            0 => Mutations::NONE,
            z => Mutations::only(Mutation::ALL[z - 1]),
        }
    }
}

impl<const Z: usize> StateMachineTest for EngineTest<Z> {
    type SystemUnderTest = Engine;
    type Reference = Volumes;

    fn init_test(_: &Volumes) -> Engine {
        Engine::new(Self::mutations())
    }

    fn apply(mut engine: Engine, model: &Volumes, step: Step) -> Engine {
        match step {
            Step::WriteOrigin { sector, sectors, label, flags } => engine.write(&engine.origin_device(), sector, sectors, label, flags),
            Step::WriteSnapshot { snapshot, sector, sectors, label, flags } => engine.write(&engine.devices[snapshot], sector, sectors, label, flags),
            Step::Flush { snapshot: None } => engine.flush(&engine.origin_device()),
            Step::Flush { snapshot: Some(k) } => engine.flush(&engine.devices[k]),
            Step::Read { snapshot, sector, sectors } => {
                let (seen, expected) = match snapshot {
                    None => (engine.read(&engine.origin_device(), sector, sectors), &model.origin),
                    Some(k) => (engine.read(&engine.devices[k], sector, sectors), &model.snapshots[k].1),
                };
                let expected = &expected[sector as usize..(sector + sectors) as usize];
                assert_eq!(seen, expected, "read of {snapshot:?} at {sector}+{sectors}");
            }
            Step::CreateSnapshot { chunk_shift } => {
                let chunk_sectors = 1u32 << chunk_shift;
                // Room for every origin chunk, the header and the metadata areas.
                let cow_sectors = 2 * ORIGIN_SECTORS + 8 * u64::from(chunk_sectors);
                let cow = Arc::new(MemDevice::zeroed(cow_sectors, &engine.rig.queue));
                engine.attach(cow, chunk_sectors);
            }
            Step::Reload => engine.reload(),
            Step::Merge { snapshot } => engine.merge(snapshot),
        }
        engine
    }

    /// Every volume reads back exactly as the model says.
    fn check_invariants(engine: &Engine, model: &Volumes) {
        assert_eq!(engine.devices.len(), model.snapshots.len());
        let origin = engine.read(&engine.origin_device(), 0, ORIGIN_SECTORS);
        assert!(origin == model.origin, "the origin differs from the model at sectors {:?}", differing(&origin, &model.origin));
        for (k, (device, (_, view))) in engine.devices.iter().zip(&model.snapshots).enumerate() {
            assert!(device.snapshot().is_valid(), "snapshot {k} went invalid on perfect disks: {}", device.snapshot().status());
            let seen = engine.read(device, 0, ORIGIN_SECTORS);
            assert!(seen == *view, "snapshot {k} differs from the model at sectors {:?}", differing(&seen, view));
        }
    }
}

fn differing(seen: &[u64], expected: &[u64]) -> Vec<usize> {
    seen.iter().zip(expected).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect()
}

/// Test cases per run (default 256; `PROPTEST_CASES` overrides), with
/// failures kept in `file` under [`REGRESSIONS_DIR`].
fn config(file: &str) -> Config {
    let path: &'static str = Box::leak(format!("{REGRESSIONS_DIR}/{file}").into_boxed_str());
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(path))),
        ..Config::default()
    }
}

/// Runs `EngineTest<Z>` over sequences of up to `steps` steps; returns the
/// minimal failing sequence, if any.
fn run<const Z: usize>(steps: usize) -> Result<(), (String, Vec<Step>)> {
    let file = match Z {
        0 => "state_machine.txt".to_string(),
        z => format!("state_machine-{}.txt", Mutation::ALL[z - 1].id()),
    };
    let config = config(&file);
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(&Volumes::sequential_strategy(1..steps), |(initial, steps, seen)| {
        EngineTest::<Z>::test_sequential(config.clone(), initial, steps, seen);
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, (_, steps, _))) => Err((reason.to_string(), steps)),
        Err(TestError::Abort(reason)) => panic!("proptest gave up: {reason}"),
    }
}

#[test]
fn engine_matches_the_volumes_model() {
    if let Err((reason, steps)) = run::<0>(40) {
        panic!("the engine and the model disagree: {reason}\nminimal sequence ({} steps):\n{steps:#?}", steps.len());
    }
}

/// Runs the mutated engine and requires a failure, shrunk to at most
/// `steps_max` steps.
fn check_caught<const Z: usize>(steps_max: usize) {
    let mutation = Mutation::ALL[Z - 1];
    match run::<Z>(40) {
        Ok(()) => panic!("the state machine missed {mutation:?}"),
        Err((reason, steps)) => {
            println!("{mutation:?} caught, minimal sequence of {} steps: {steps:?}\n{reason}", steps.len());
            assert!(steps.len() <= steps_max, "{mutation:?}: the shrunk sequence still has {} steps: {steps:#?}", steps.len());
        }
    }
}

/// Z2: the partial last area is not kept at load, so the next commit
/// rewrites it with only the new records — a reload, a snapshot write and
/// another reload lose the first records.
#[test]
fn catches_z2_last_area_dropped_at_load() {
    check_caught::<{ Mutation::Z2LastAreaNotKeptAfterLoad as usize + 1 }>(8);
}

/// Z10: snapshots kept in creation order, so an origin write is split at
/// the first snapshot's chunk size, not the smallest.
#[test]
fn catches_z10_snapshots_unsorted() {
    check_caught::<{ Mutation::Z10SnapshotsUnsorted as usize + 1 }>(8);
}

/// Z16: the merge overwrites origin chunks that a younger snapshot still
/// needs, without copying them into it first.
#[test]
fn catches_z16_merge_without_preserving_other_snapshots() {
    // Its committed seed shrinks to nine steps since writes draw flags too.
    check_caught::<{ Mutation::Z16MergeSkipsOtherSnapshots as usize + 1 }>(10);
}
