//! Metadata load: how fast a COW's records become a usable exception
//! table, and what the table costs in memory.
//!
//! A COW holding 1,000,000 records with 4 KiB chunks (3,907 metadata areas)
//! sits on a sparse memory device (only metadata areas are stored; data
//! chunks read as zeros and are never read by a load). Two shapes:
//! - `random`: origin chunks scattered over a 64 GiB origin — no two records
//!   consecutive, the table's worst case;
//! - `sequential`: origin chunks in order — runs break only at area boundaries.
//!
//! Each shape is loaded `RUNS` times on one thread; the median is reported.
//! `table` is what the loaded store and table keep, `peak` the most the load
//! had allocated at once.

use std::collections::BTreeMap;

use engine::ChunkSize;
use engine::format::{DiskHeader, Layout, Record};
use engine::io::{BlockDevice, CompletionQueue, DeviceIdentity, IoDone, SECTOR_BYTES, WriteFlags};
use engine::store::{StoreConfig, load_blocking};
use engine::sync::Arc;

use super::{MemoryProbe, timed};

const RECORDS: u64 = 1_000_000;
const CHUNK_SECTORS: u32 = 8;
const RUNS: usize = 7;

/// A memory device that stores only the chunks written to it.
struct SparseDevice {
    chunks: BTreeMap<u64, Vec<u8>>,
    chunk: ChunkSize,
    size_sectors: u64,
    queue: Arc<CompletionQueue>,
}

impl BlockDevice for SparseDevice {
    fn size_sectors(&self) -> u64 {
        self.size_sectors
    }
    fn logical_block_bytes(&self) -> u32 {
        SECTOR_BYTES as u32
    }
    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity::Memory(u64::MAX)
    }
    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        let chunk = self.chunk.sector_to_chunk(sector);
        let offset = (sector - self.chunk.chunk_to_sector(chunk)) as usize * SECTOR_BYTES;
        let length = sectors as usize * SECTOR_BYTES;
        let bytes = match self.chunks.get(&chunk) {
            Some(stored) => stored[offset..offset + length].to_vec(),
            None => vec![0; length],
        };
        self.queue.defer(move || done(Ok(bytes)));
    }
    fn write(&self, _sector: u64, _data: Vec<u8>, _flags: WriteFlags, _done: IoDone<()>) {
        unreachable!("a load of a valid COW writes nothing");
    }
    fn flush(&self, done: IoDone<()>) {
        self.queue.defer(move || done(Ok(())));
    }
}

/// Lays out `RECORDS` records as the kernel would have committed them.
fn build_cow(queue: &Arc<CompletionQueue>, old_chunk: impl Fn(u64) -> u64) -> SparseDevice {
    let chunk = ChunkSize::from_sectors(CHUNK_SECTORS);
    let layout = Layout::new(chunk);
    let per_area = u64::from(layout.exceptions_per_area());
    let mut chunks = BTreeMap::new();
    chunks.insert(0, DiskHeader::new(true, chunk).encode_chunk(chunk));
    let mut next_free = 2;
    for i in 0..RECORDS {
        let (area, index) = (i / per_area, (i % per_area) as usize);
        let bytes = chunks.entry(layout.area_location(area)).or_insert_with(|| vec![0; chunk.bytes()]);
        Record { old_chunk: old_chunk(i), new_chunk: next_free }.encode(bytes, index);
        next_free = layout.skip_metadata(next_free + 1);
    }
    // The area after the last one holds the end marker (it is partial or zeroed).
    let last_area = RECORDS / per_area;
    chunks.entry(layout.area_location(last_area)).or_insert_with(|| vec![0; chunk.bytes()]);
    let size_sectors = chunk.chunk_to_sector(next_free + 1024);
    SparseDevice { chunks, chunk, size_sectors, queue: Arc::clone(queue) }
}

struct Measured {
    median_seconds: f64,
    table_bytes: usize,
    /// The allocator's high-water mark can only be read, not reset: a load's
    /// peak is known when it raised the mark.
    peak_bytes: Option<usize>,
    runs: usize,
}

fn measure(memory: MemoryProbe, name: &str, old_chunk: impl Fn(u64) -> u64) -> Measured {
    let queue = CompletionQueue::new();
    let cow = Arc::new(build_cow(&queue, old_chunk));
    let config = StoreConfig { chunk_sectors: Some(CHUNK_SECTORS), ..StoreConfig::default() };
    let mut seconds = Vec::new();
    let mut table_bytes = 0;
    let mut peak_bytes = None;
    let mut runs = 0;
    for _ in 0..RUNS {
        let before = memory.allocated();
        let mark_before = memory.allocated_max();
        let (elapsed, loaded) = timed(|| load_blocking(&queue, Arc::clone(&cow), 512, config).expect("bench COW loads"));
        seconds.push(elapsed);
        assert_eq!(loaded.exceptions.len(), RECORDS, "{name}");
        table_bytes = memory.allocated() - before;
        runs = loaded.exceptions.run_count();
        drop(loaded);
        if memory.allocated_max() > mark_before {
            peak_bytes = Some(memory.allocated_max() - before);
        }
    }
    seconds.sort_by(f64::total_cmp);
    Measured { median_seconds: seconds[RUNS / 2], table_bytes, peak_bytes, runs }
}

/// Loads a million-record COW of each shape and prints rate and memory.
pub fn print(memory: MemoryProbe) {
    let scatter = |i: u64| i.wrapping_mul(0x9E37_79B1) & ((1 << 24) - 1); // a bijection on 2^24 chunks
    super::say!("load benchmark: {RECORDS} records, {} KiB chunks, memory-backed COW, one thread, median of {RUNS}", CHUNK_SECTORS / 2);
    super::say!("{:<11} {:>10} {:>16} {:>10} {:>14} {:>14} {:>12}", "shape", "ms", "records/s", "runs", "table bytes", "bytes/record", "peak MiB");
    for (name, result) in [("random", measure(memory, "random", scatter)), ("sequential", measure(memory, "sequential", |i| i))] {
        let rate = RECORDS as f64 / result.median_seconds;
        let shape = if name == "random" { "scattered" } else { "sequential" };
        super::record(&format!("load.{shape}_records_per_s"), rate);
        super::record(&format!("load.{shape}_table_bytes_per_record"), result.table_bytes as f64 / RECORDS as f64);
        super::say!(
            "{:<11} {:>10.1} {:>16.0} {:>10} {:>14} {:>14.1} {:>12}",
            name,
            result.median_seconds * 1e3,
            rate,
            result.runs,
            result.table_bytes,
            result.table_bytes as f64 / RECORDS as f64,
            result.peak_bytes.map_or("n/a".to_string(), |b| format!("{:.1}", b as f64 / (1 << 20) as f64)),
        );
    }
}
