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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use engine::io::{CompletionQueue, MemDevice, WriteFlags, run_until_done};
use engine::store::{LoadOutcome, StoreConfig, load_blocking};
use engine::sync::Arc;
use engine::target::{Origin, OriginConfig, OriginDevice};
use engine::{BlockDevice, SECTOR_BYTES};
use arbitrary::{Arbitrary, Unstructured};
use sim::hostile::{CowDescription, OpSequence};

/// Random inputs per target in a plain `cargo test` (on top of the corpus);
/// `BOLERO_RANDOM_ITERATIONS` overrides.
fn iterations() -> usize {
    std::env::var("BOLERO_RANDOM_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// Loads `bytes` as a COW and checks what must hold of any outcome.
/// Returns the table when the device loaded as a valid snapshot.
fn load_and_judge(bytes: &[u8]) -> Option<BTreeMap<u64, u64>> {
    let queue = CompletionQueue::new();
    let device_chunks_at = |chunk_sectors: u64| (bytes.len() / SECTOR_BYTES) as u64 / chunk_sectors;
    let cow = Arc::new(MemDevice::from_bytes(bytes.to_vec(), &queue));
    match load_blocking(&queue, cow, SECTOR_BYTES as u32, StoreConfig::default()) {
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
    let geometry = model::CowGeometry { chunk_sectors, origin_chunks: u64::MAX / 2 };
    Ok(model::cow::decode(bytes.as_slice(), geometry)?.table())
}

/// The fuzzer's bytes as a description (the usual structured-fuzzing
/// decoding: every byte string decodes, short ones to small values).
fn decode<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

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
        println!("{}: {} inputs, {} {}", self.name, self.inputs.load(Ordering::Relaxed), self.valid.load(Ordering::Relaxed), self.label);
    }
}

#[test]
fn load_arbitrary_cow_bytes() {
    static TALLY: Tally = Tally::new("load_arbitrary_cow_bytes", "loaded as valid snapshots");
    bolero::check!().with_iterations(iterations()).for_each(|bytes: &[u8]| {
        TALLY.count(load_and_judge(bytes).is_some());
    });
    TALLY.report();
}

#[test]
fn load_described_cow() {
    static DESCRIBED: Tally = Tally::new("load_described_cow", "loaded as valid snapshots and matched the model");
    bolero::check!().with_iterations(iterations()).for_each(|bytes: &[u8]| {
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
    });
    DESCRIBED.report();
}

#[test]
fn load_write_reload() {
    static TALLY: Tally = Tally::new("load_write_reload", "loaded, written and reloaded");
    bolero::check!().with_iterations(iterations()).for_each(|bytes: &[u8]| {
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
        let origin = Origin::new(origin_dev, queue.clone(), OriginConfig::default());
        let created = run_until_done(&queue, |done| origin.create_snapshot(Arc::clone(&cow), StoreConfig::default(), done).expect("loaded once, accepted again"));
        let snapshot = created.expect("load completed").expect("loaded once, loads again");
        let before: BTreeMap<u64, u64> = (0..origin_sectors / chunk_sectors).filter_map(|c| snapshot.lookup(c).map(|n| (c, n))).collect();
        let device = OriginDevice::new(Arc::clone(&origin));
        for chunk in 0..4 {
            let written = run_until_done(&queue, |done| device.write(chunk * chunk_sectors, vec![0xa5; SECTOR_BYTES], WriteFlags::PLAIN, done));
            assert!(written.is_some(), "an origin write never completed");
        }
        queue.run_until_idle();
        let reloaded = load_and_judge(&cow.contents());
        if snapshot.is_valid() {
            let Some(reloaded) = reloaded else {
                let queue = CompletionQueue::new();
                let again = load_blocking(&queue, Arc::new(MemDevice::from_bytes(cow.contents(), &queue)), SECTOR_BYTES as u32, StoreConfig::default());
                panic!("a snapshot still valid does not reload as valid: {:?}\n{description:?}", again.map(|l| l.outcome));
            };
            for (old, new) in &before {
                assert_eq!(reloaded.get(old), Some(new), "record for chunk {old} lost across write and reload");
            }
            for chunk in 0..4 {
                assert!(reloaded.contains_key(&chunk) || before.contains_key(&chunk), "origin chunk {chunk} was overwritten without an exception");
            }
        }
    });
    TALLY.report();
}

#[test]
fn engine_against_model_on_operation_sequences() {
    static TALLY: Tally = Tally::new("engine_against_model_on_operation_sequences", "judged clean by the oracle");
    let iterations = iterations() / 10;
    bolero::check!().with_iterations(iterations.max(20)).for_each(|bytes: &[u8]| {
        let Some(sequence) = decode::<OpSequence>(bytes) else { return };
        let report = sim::world::run(&sequence.run_config());
        TALLY.count(report.failure.is_none());
        if let Some(failure) = report.failure {
            panic!("{failure}\n{sequence:?}");
        }
    });
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
