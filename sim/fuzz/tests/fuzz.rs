//! Fuzz targets over hostile input, run by `cargo test` over the committed
//! corpus (`tests/__fuzz__/<target>/corpus/`) plus a few hundred random
//! inputs, and for long runs by `cargo bolero test` or with
//! `BOLERO_RANDOM_ITERATIONS` raised (see the README).
//!
//! The story: a COW device is untrusted. It may come from another kernel, a
//! dying disk or an attacker, and the loader is the first code to read it.
//! Each target states what must hold for *every* input: no panic, no hang, a
//! refusal that names what is wrong, and — when a device loads — a table
//! that agrees with the model's independent reading of the same bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::{Arbitrary, Unstructured};
use engine::io::{CompletionQueue, MemDevice, WriteFlags, run_until_done};
use engine::store::{LoadOutcome, StoreConfig, load_blocking};
use engine::sync::Arc;
use engine::targets::OriginConfig;
use engine::testing::Rig;
use engine::{BlockDevice, SECTOR_BYTES};
use sim::hostile::{CowDescription, OpSequence};

/// Random inputs per target in a plain `cargo test` (on top of the corpus);
/// `BOLERO_RANDOM_ITERATIONS` overrides.
fn iterations() -> usize {
    std::env::var("BOLERO_RANDOM_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// Counts the bytes each thread has allocated and not yet freed, and their
/// peak, so that a target can bound what loading a hostile COW costs.
struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note_allocation(delta: isize) {
    // `try_with`: allocations still happen while thread locals are torn down.
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes straight to the system allocator with the same
// arguments; the counting touches only thread-local cells.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            note_allocation(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(pointer, layout) };
        note_allocation(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            note_allocation(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the most bytes this thread had
/// allocated at once during it, beyond what it held before.
fn peak_bytes_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(before));
    let result = f();
    let peak = PEAK_BYTES.with(Cell::get);
    (result, (peak - before).max(0) as usize)
}

/// What loading a COW may allocate at most: a few times the device (its
/// metadata areas, the table of at most one record per chunk) plus a fixed
/// allowance — never anything scaled by a number the device claims.
fn load_bytes_max(device_bytes: usize) -> usize {
    4 * device_bytes + (256 << 10)
}

/// Loads `bytes` as a COW and checks what must hold of any outcome.
/// Returns the table when the device loaded as a valid snapshot.
fn load_and_judge(bytes: &[u8]) -> Option<BTreeMap<u64, u64>> {
    let queue = CompletionQueue::new();
    let device_chunks_at = |chunk_sectors: u64| (bytes.len() / SECTOR_BYTES) as u64 / chunk_sectors;
    let cow = Arc::new(MemDevice::from_bytes(bytes.to_vec(), &queue));
    let (loaded, peak) = peak_bytes_during(|| load_blocking(&queue, cow, SECTOR_BYTES as u32, StoreConfig::default()));
    let bound = load_bytes_max(bytes.len());
    assert!(peak <= bound, "loading a {}-byte COW allocated {peak} bytes at its peak (bound {bound})", bytes.len());
    LOAD_PEAK_BYTES_MAX.fetch_max(peak as u64, Ordering::Relaxed);
    match loaded {
        Err(error) => {
            let message = error.to_string();
            assert!(message.len() > 10, "a refusal must say what is wrong: {message:?}");
            None
        }
        Ok(loaded) => {
            let layout = loaded.store.layout();
            let device_chunks = device_chunks_at(u64::from(layout.chunk().sectors()));
            let mut table = BTreeMap::new();
            let mut cow_chunks = std::collections::BTreeSet::new();
            for (old, new) in loaded.exceptions.iter() {
                assert!(new < device_chunks, "loaded a record for COW chunk {new} past the device's {device_chunks} chunks");
                assert!(!layout.is_metadata_chunk(new) && new != 0, "loaded a record on metadata chunk {new}");
                assert!(cow_chunks.insert(new), "COW chunk {new} loaded twice");
                table.insert(old, new);
            }
            (loaded.outcome == LoadOutcome::Valid).then_some(table)
        }
    }
}

/// What the model's independent reader makes of the same bytes. The model
/// judges COWs the engine wrote, so it holds the header's valid field to 0
/// or 1; the kernel (and the engine) take any non-zero value as valid, so
/// such a field is read as 1 here.
fn model_table(bytes: &[u8], chunk_sectors: u32) -> Result<BTreeMap<u64, u64>, model::Violation> {
    let mut bytes = bytes.to_vec();
    if bytes.len() >= 8 && bytes[4..8] != [0; 4] {
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    }
    let geometry = model::CowGeometry { chunk_sectors, origin_chunks: model::CowGeometry::ORIGIN_UNKNOWN };
    Ok(model::cow::decode(bytes.as_slice(), geometry)?.table())
}

/// The fuzzer's bytes as a description (the usual structured-fuzzing
/// decoding: every byte string decodes, short ones to small values).
fn decode<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

/// Runs `body` on the one input named by `SNAPSIM_FUZZ_REPLAY`, when a
/// failure is being replayed (the test filter picks the target).
fn replayed(body: impl Fn(&[u8])) -> bool {
    let Some(path) = std::env::var_os("SNAPSIM_FUZZ_REPLAY") else { return false };
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read the input to replay, {}: {error}", Path::new(&path).display()));
    body(&bytes);
    true
}

/// `body` as a fuzz target runs it: an input that fails is saved under the
/// build's temporary directory, and the failure message ends with the one
/// command that replays it. (Bolero shrinks a failure before reporting it,
/// so the message it shows is the smallest input's.)
fn guarded(name: &'static str, body: impl Fn(&[u8])) -> impl Fn(&[u8]) {
    let last_input = std::env::var_os("SNAPSIM_FUZZ_LAST_INPUT");
    move |bytes: &[u8]| {
        // A failure that kills the process (out of memory, an abort) cannot
        // be caught; with this set, the input that was running is on disk.
        if let Some(path) = &last_input {
            std::fs::write(path, bytes).unwrap_or_else(|error| panic!("cannot keep the last input in {}: {error}", Path::new(path).display()));
        }
        let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(bytes))) else { return };
        let message =
            payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned())).unwrap_or_default();
        let mut hash = sim::trace::Fnv::new();
        hash.bytes(bytes);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures").join(name);
        let path = dir.join(format!("{:016x}", hash.finish()));
        let saved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes));
        let saved = match saved {
            Ok(()) => format!(
                "replay: SNAPSIM_FUZZ_REPLAY={} cargo test -p sim-fuzz --test fuzz -- --exact {name} --nocapture\n(once fixed, copy the input into sim/fuzz/tests/__fuzz__/{name}/corpus/)",
                path.display()
            ),
            Err(error) => format!("the failing input could not be saved to {}: {error}", path.display()),
        };
        panic!("{message}\n{saved}");
    }
}

/// The most bytes a load had allocated at once, over every input so far.
static LOAD_PEAK_BYTES_MAX: AtomicU64 = AtomicU64::new(0);

/// Inputs a target ran, and how many of them loaded as a valid snapshot.
struct Tally {
    name: &'static str,
    /// What the second count counts.
    label: &'static str,
    inputs: AtomicU64,
    valid: AtomicU64,
}

impl Tally {
    const fn new(name: &'static str, label: &'static str) -> Self {
        Self { name, label, inputs: AtomicU64::new(0), valid: AtomicU64::new(0) }
    }

    fn count(&self, valid: bool) {
        self.inputs.fetch_add(1, Ordering::Relaxed);
        self.valid.fetch_add(u64::from(valid), Ordering::Relaxed);
    }

    fn report(&self) {
        println!("largest allocation peak of a load so far: {} bytes", LOAD_PEAK_BYTES_MAX.load(Ordering::Relaxed));
        println!("{}: {} inputs, {} {}", self.name, self.inputs.load(Ordering::Relaxed), self.valid.load(Ordering::Relaxed), self.label);
    }
}

#[test]
fn load_arbitrary_cow_bytes() {
    static TALLY: Tally = Tally::new("load_arbitrary_cow_bytes", "loaded as valid snapshots");
    let body = |bytes: &[u8]| {
        TALLY.count(load_and_judge(bytes).is_some());
    };
    if replayed(body) {
        return;
    }
    bolero::check!().with_iterations(iterations()).for_each(guarded("load_arbitrary_cow_bytes", body));
    TALLY.report();
}

#[test]
fn load_described_cow() {
    static DESCRIBED: Tally = Tally::new("load_described_cow", "loaded as valid snapshots and matched the model");
    let body = |bytes: &[u8]| {
        let Some(description) = decode::<CowDescription>(bytes) else { return };
        let bytes = description.build();
        let loaded = load_and_judge(&bytes);
        DESCRIBED.count(loaded.is_some());
        if let Some(table) = loaded {
            // A device the engine accepts, the model reads the same way.
            let chunk_sectors = description.header.chunk_sectors.0;
            match model_table(&bytes, chunk_sectors) {
                Ok(model) => assert_eq!(table, model, "engine and model read different tables from {description:?}"),
                Err(violation) => panic!("the engine loaded a COW the model rejects ({violation}): {description:?}"),
            }
        }
    };
    if replayed(body) {
        return;
    }
    bolero::check!().with_iterations(iterations()).for_each(guarded("load_described_cow", body));
    DESCRIBED.report();
}

#[test]
fn load_write_reload() {
    static TALLY: Tally = Tally::new("load_write_reload", "loaded, written and reloaded");
    let body = |bytes: &[u8]| {
        let Some(description) = decode::<CowDescription>(bytes) else { return };
        let bytes = description.build();
        let loads = load_and_judge(&bytes).is_some();
        TALLY.count(loads);
        if !loads {
            return;
        }
        // It loads: write through an origin with it as a snapshot, then reload.
        let queue = CompletionQueue::new();
        let chunk_sectors = u64::from(description.layout_chunk().sectors());
        let origin_sectors = 8 * chunk_sectors;
        let origin_dev = Arc::new(MemDevice::zeroed(origin_sectors, &queue));
        let cow = Arc::new(MemDevice::from_bytes(bytes, &queue));
        let mut rig = Rig::new(&queue, origin_dev, OriginConfig::default());
        let k = rig.add_snapshot(Arc::clone(&cow), StoreConfig::default()).expect("loaded once, loads again");
        let snapshot = Arc::clone(&rig.snapshots[k]);
        let before: BTreeMap<u64, u64> = (0..origin_sectors / chunk_sectors).filter_map(|c| snapshot.lookup(c).map(|n| (c, n))).collect();
        let device = rig.origin_device();
        for chunk in 0..4 {
            let written = run_until_done(&queue, |done| device.write(chunk * chunk_sectors, vec![0xa5; SECTOR_BYTES], WriteFlags::PLAIN, done));
            assert!(written.is_some(), "an origin write never completed");
        }
        queue.run_until_idle();
        let reloaded = load_and_judge(&cow.contents());
        if snapshot.is_valid() {
            let Some(reloaded) = reloaded else {
                let queue = CompletionQueue::new();
                let again =
                    load_blocking(&queue, Arc::new(MemDevice::from_bytes(cow.contents(), &queue)), SECTOR_BYTES as u32, StoreConfig::default());
                panic!("a snapshot still valid does not reload as valid: {:?}\n{description:?}", again.map(|l| l.outcome));
            };
            for (old, new) in &before {
                assert_eq!(reloaded.get(old), Some(new), "record for chunk {old} lost across write and reload");
            }
            for chunk in 0..4 {
                assert!(reloaded.contains_key(&chunk) || before.contains_key(&chunk), "origin chunk {chunk} was overwritten without an exception");
            }
        }
    };
    if replayed(body) {
        return;
    }
    bolero::check!().with_iterations(iterations()).for_each(guarded("load_write_reload", body));
    TALLY.report();
}

#[test]
fn engine_against_model_on_operation_sequences() {
    static TALLY: Tally = Tally::new("engine_against_model_on_operation_sequences", "judged clean by the oracle");
    let iterations = iterations() / 10;
    let body = |bytes: &[u8]| {
        let Some(sequence) = decode::<OpSequence>(bytes) else { return };
        let mut config = sequence.run_config();
        // A replay shows every event of the run.
        config.keep_events = std::env::var_os("SNAPSIM_FUZZ_REPLAY").is_some();
        let report = sim::world::run(&config);
        TALLY.count(report.failure.is_none());
        for (step, event) in report.events.iter().enumerate() {
            println!("{step:5} {event}");
        }
        if let Some(failure) = report.failure {
            panic!("{failure}\n{sequence:?}");
        }
    };
    if replayed(body) {
        return;
    }
    bolero::check!().with_iterations(iterations.max(20)).for_each(guarded("engine_against_model_on_operation_sequences", body));
    TALLY.report();
}

/// Seeds the committed corpus: byte strings that decode to COW descriptions
/// loading as valid snapshots, so that a plain `cargo test` always reaches
/// past the header. Run by hand (`-- --ignored write_corpus`) after
/// changing the descriptions.
#[test]
#[ignore]
fn write_corpus() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/__fuzz__");
    let mut written = 0;
    while written < 12 {
        let len = rng.random_range(16..400usize);
        let bytes: Vec<u8> = (0..len).map(|i| if i < 12 { 0 } else { rng.random() }).collect();
        let Some(description) = decode::<CowDescription>(&bytes) else { continue };
        if load_and_judge(&description.build()).is_none() {
            continue;
        }
        for target in ["load_described_cow", "load_write_reload"] {
            let dir = root.join(target).join("corpus");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("valid-{written:02}")), &bytes).unwrap();
        }
        let image = description.build();
        if image.len() <= 64 * 1024 {
            let dir = root.join("load_arbitrary_cow_bytes").join("corpus");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("valid-image-{written:02}")), &image).unwrap();
        }
        written += 1;
    }
}

/// The story: a crash throws the machine away with I/O in flight. The
/// dropped requests' callbacks held the snapshots that held the disks that
/// held the callbacks, so every crash leaked the whole machine (about
/// 100 KiB here) and a million-input fuzz run died of memory exhaustion.
/// Now the world powers a machine off (`Origin::power_off`,
/// `SimDisk::power_off`) before dropping it: runs with crashes, faults and
/// merges free everything they allocate.
#[test]
fn runs_free_everything_they_allocate() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut runs_with_crashes = 0;
    for _ in 0..300 {
        let bytes: Vec<u8> = (0..rng.random_range(8..80usize)).map(|_| rng.random()).collect();
        let Some(sequence) = decode::<OpSequence>(&bytes) else { continue };
        let config = sequence.run_config();
        let before = LIVE_BYTES.with(Cell::get);
        let report = sim::world::run(&config);
        runs_with_crashes += usize::from(report.stats.crashes > 0);
        drop(report);
        let kept = LIVE_BYTES.with(Cell::get) - before;
        assert!(kept <= 0, "a run kept {kept} bytes after it ended: {sequence:?}");
    }
    assert!(runs_with_crashes > 50, "only {runs_with_crashes} runs crashed");
}
