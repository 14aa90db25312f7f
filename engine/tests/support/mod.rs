//! Shared helpers for the engine's integration tests: the kernel's golden
//! vectors and small COW images built by hand.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use engine::format::{DiskHeader, Layout, Record};
use engine::io::{CompletionQueue, MemDevice};
use engine::store::{Loaded, StoreConfig, StoreError, load_blocking};
use engine::sync::Arc;
use engine::{ChunkSize, SECTOR_BYTES};

/// The folder of vectors written by Linux 6.1: `$SNAPSIM_VECTORS`, or
/// `../shared/vectors/linux-6.1` beside the repository.
pub fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SNAPSIM_VECTORS") {
        return PathBuf::from(dir);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = repo.join("../shared/vectors/linux-6.1");
    assert!(dir.is_dir(), "golden vectors not found at {} (set SNAPSIM_VECTORS)", dir.display());
    dir
}

pub fn gunzip(path: &std::path::Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut bytes).unwrap();
    bytes
}

/// One kernel-written vector.
pub struct Vector {
    pub name: String,
    pub chunk_sectors: u32,
    pub merge: bool,
    pub cow: Vec<u8>,
    pub origin_after: Vec<u8>,
    pub snapshot: Vec<u8>,
    /// The status of the COW as left on disk, after the target name
    /// (`488/2048 16` or `Invalid`): `@@STATUS1`, or for a merge vector
    /// `@@MERGE1` (the COW was merged after `@@STATUS1` was taken).
    pub status_after: String,
    /// `@@STATUS1` after the target name, whatever the vector.
    pub status_before_merge: String,
}

pub fn vector(name: &str) -> Vector {
    let dir = vectors_dir().join(name);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("vector.json")).unwrap()).unwrap();
    let status = |tag: &str| -> Option<String> {
        let line = meta["console"].as_array()?.iter().filter_map(|line| line.as_str()).find_map(|line| line.strip_prefix(tag))?;
        // "0 4096 snapshot 488/2048 16" -> "488/2048 16"
        Some(line.splitn(4, ' ').nth(3)?.to_string())
    };
    let merge = meta["merge"].as_bool().unwrap();
    let status_before_merge = status("@@STATUS1 ").expect("vector has a @@STATUS1 line");
    let status_after = if merge { status("@@MERGE1 ").expect("merge vector has a @@MERGE1 line") } else { status_before_merge.clone() };
    Vector {
        name: name.to_string(),
        chunk_sectors: meta["chunk_sectors"].as_u64().unwrap() as u32,
        merge,
        cow: gunzip(&dir.join("cow.img.gz")),
        origin_after: gunzip(&dir.join("origin.after.img.gz")),
        snapshot: gunzip(&dir.join("snapshot.img.gz")),
        status_after,
        status_before_merge,
    }
}

/// One write of a vector's workload.
pub struct VectorWrite {
    /// `origin` or `snap`.
    pub device: String,
    pub sector: u64,
    pub data: Vec<u8>,
}

/// The vector's writes, with their data: write `k`'s sector `j` holds the
/// tag `w<k:05>s<j:04>.` repeated (and cut at 512 bytes).
pub fn vector_writes(name: &str) -> Vec<VectorWrite> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(vectors_dir().join(name).join("vector.json")).unwrap()).unwrap();
    let writes = meta["writes"].as_array().unwrap();
    writes
        .iter()
        .enumerate()
        .map(|(k, write)| {
            let sectors = write["sectors"].as_u64().unwrap() as usize;
            let mut data = Vec::with_capacity(sectors * SECTOR_BYTES);
            for j in 0..sectors {
                let tag = format!("w{k:05}s{j:04}.");
                data.extend(tag.as_bytes().iter().copied().cycle().take(SECTOR_BYTES));
            }
            VectorWrite { device: write["device"].as_str().unwrap().to_string(), sector: write["sector"].as_u64().unwrap(), data }
        })
        .collect()
}

pub fn origin_before(name: &str) -> Vec<u8> {
    gunzip(&vectors_dir().join(name).join("origin.before.img.gz"))
}

pub const VECTORS: [&str; 4] = ["basic-4k", "merge-4k", "multi-area-4k", "overflow-invalid"];

/// Loads a COW image held in memory.
pub fn load_image(image: Vec<u8>, config: StoreConfig) -> (Arc<CompletionQueue>, Result<Loaded<MemDevice>, StoreError>) {
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::from_bytes(image, &queue));
    let loaded = load_blocking(&queue, cow, SECTOR_BYTES as u32, config);
    (queue, loaded)
}

pub fn config(chunk_sectors: u32) -> StoreConfig {
    StoreConfig { chunk_sectors: Some(chunk_sectors), ..StoreConfig::default() }
}

/// The records of a COW image, area by area in on-disk order (no validation).
pub fn disk_records(image: &[u8], chunk_sectors: u32) -> Vec<Record> {
    let layout = Layout::new(ChunkSize::from_sectors(chunk_sectors));
    let chunk_bytes = layout.chunk().bytes();
    let mut records = Vec::new();
    for area in 0.. {
        let start = layout.area_location(area) as usize * chunk_bytes;
        if start + chunk_bytes > image.len() {
            break;
        }
        let decoded = layout.decode_area(&image[start..start + chunk_bytes]);
        records.extend(decoded.records);
        if !decoded.full {
            break;
        }
    }
    records
}

/// A COW image builder: a header and hand-placed records.
pub struct Image {
    pub bytes: Vec<u8>,
    pub layout: Layout,
}

impl Image {
    /// A valid, empty COW of `chunks` chunks of `chunk_sectors`.
    pub fn new(chunk_sectors: u32, chunks: u64) -> Self {
        let chunk = ChunkSize::from_sectors(chunk_sectors);
        let mut bytes = vec![0u8; chunks as usize * chunk.bytes()];
        let header = DiskHeader::new(true, chunk).encode_chunk(chunk);
        bytes[..header.len()].copy_from_slice(&header);
        Self { bytes, layout: Layout::new(chunk) }
    }

    pub fn header_field(mut self, index: usize, value: u32) -> Self {
        self.bytes[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
        self
    }

    /// Puts `record` at `index` of metadata area `area`.
    pub fn record(mut self, area: u64, index: usize, old_chunk: u64, new_chunk: u64) -> Self {
        let chunk_bytes = self.layout.chunk().bytes();
        let start = self.layout.area_location(area) as usize * chunk_bytes;
        Record { old_chunk, new_chunk }.encode(&mut self.bytes[start..start + chunk_bytes], index);
        self
    }

    /// Fills area `area` completely with valid records for the chunks it describes.
    pub fn full_area(mut self, area: u64) -> Self {
        let per_area = self.layout.exceptions_per_area() as u64;
        for index in 0..per_area {
            let new_chunk = self.layout.area_location(area) + 1 + index;
            self = self.record(area, index as usize, 1_000 + area * per_area + index, new_chunk);
        }
        self
    }

    pub fn truncate_sectors(mut self, sectors: usize) -> Self {
        self.bytes.truncate(sectors * SECTOR_BYTES);
        self
    }
}
