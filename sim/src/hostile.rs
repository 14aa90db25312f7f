//! Hostile input, described: `arbitrary`-derived descriptions of COW devices
//! and of operation sequences, for the fuzz targets and property tests.
//!
//! Raw bytes find little: almost every random COW dies at the magic number.
//! So a fuzzer's bytes are decoded into *descriptions* whose fields are
//! bounded newtypes — a claimed chunk size that is mostly a valid power of
//! two and sometimes absurd, records that are mostly plausible data chunks
//! and sometimes past the end, on a metadata area or a duplicate — and a
//! description builds the bytes. Every generated value means something to
//! the loader, so the fuzzer spends its time past the header.

use arbitrary::{Arbitrary, Result, Unstructured};
use engine::ChunkSize;
use engine::SECTOR_BYTES;
use engine::format::{DISK_VERSION, DiskHeader, Layout, Record, SNAP_MAGIC};
use model::{Target, UserFlags};

use engine::store::StoreKind;

use crate::disk::FaultRates;
use crate::world::knobs::Mix;
use crate::world::{Knobs, RunConfig, ScriptOp};

/// Chunk sectors the image is laid out with when the header claims an
/// absurd size: the claim is written, the device stays small.
const FALLBACK_CHUNK_SECTORS: u32 = 8;

/// A chunk size as a header may claim it: a valid power of two from 512 B
/// to 64 KiB nine times in ten, else zero, a non-power of two, or huge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedChunkSectors(pub u32);

impl<'a> Arbitrary<'a> for ClaimedChunkSectors {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self(match u.int_in_range(0u8..=19)? {
            0 => 0,
            1 => u.int_in_range(3u32..=1000)? | 1,
            2 => 1 << u.int_in_range(8u32..=31)?,
            _ => 1 << u.int_in_range(0u32..=7)?,
        }))
    }
}

/// A header field that is right most of the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Field {
    Right,
    Zero,
    Other(u32),
}

/// The header: magic, valid flag, version and claimed chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub struct HeaderDescription {
    pub magic: Field,
    /// `Right` is 1 (valid), `Zero` marks the snapshot invalidated.
    pub valid: Field,
    pub version: Field,
    pub chunk_sectors: ClaimedChunkSectors,
}

/// One record slot of a metadata area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum RecordDescription {
    /// Origin chunk `old` in the `slot`-th data chunk: a plausible record.
    Data { old: u8, slot: u8 },
    /// A COW chunk `beyond` chunks past the end of the device.
    PastEnd { old: u8, beyond: u16 },
    /// A COW chunk that is metadata area `area` (0 = the first).
    OnMetadata { old: u8, area: u8 },
    /// The same origin chunk as the `of`-th record so far (a cycle in the table).
    DuplicateOld { of: u8, slot: u8 },
    /// The same COW chunk as the `of`-th record so far.
    DuplicateNew { of: u8, old: u8 },
    /// Whatever 16 bytes say.
    Raw { old: u64, new: u64 },
    /// The end marker: a zero COW chunk.
    End,
}

/// A whole COW device: header, device size, and the records of its first areas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowDescription {
    pub header: HeaderDescription,
    /// The device size in chunks (2 to 64: smaller than a snapshot needs, up to several areas).
    pub device_chunks: u64,
    /// Records per area, area 0 first (each area at most 32 records long).
    pub areas: Vec<Vec<RecordDescription>>,
    /// Sectors of trailing garbage past the last whole chunk.
    pub partial_sectors: u8,
}

impl<'a> Arbitrary<'a> for CowDescription {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let header = HeaderDescription::arbitrary(u)?;
        let device_chunks = u.int_in_range(2u64..=64)?;
        let area_count = u.int_in_range(0usize..=4)?;
        let mut areas = Vec::with_capacity(area_count);
        for _ in 0..area_count {
            let records = u.int_in_range(0usize..=32)?;
            areas.push((0..records).map(|_| RecordDescription::arbitrary(u)).collect::<Result<Vec<_>>>()?);
        }
        let partial_sectors = u.int_in_range(0u8..=3)?;
        Ok(Self { header, device_chunks, areas, partial_sectors })
    }
}

impl CowDescription {
    /// The chunk size the image is laid out with: the claimed one when it
    /// is valid for 512-byte blocks, else a fallback.
    pub fn layout_chunk(&self) -> ChunkSize {
        ChunkSize::new(self.header.chunk_sectors.0, SECTOR_BYTES as u32, SECTOR_BYTES as u32)
            .ok()
            .filter(|c| c.sectors() <= 128)
            .unwrap_or_else(|| ChunkSize::new(FALLBACK_CHUNK_SECTORS, SECTOR_BYTES as u32, SECTOR_BYTES as u32).expect("fallback is valid"))
    }

    /// The device's bytes.
    pub fn build(&self) -> Vec<u8> {
        let chunk = self.layout_chunk();
        let layout = Layout::new(chunk);
        let chunk_bytes = chunk.bytes();
        let mut bytes = vec![0u8; self.device_chunks as usize * chunk_bytes + usize::from(self.partial_sectors) * SECTOR_BYTES];
        let field = |f: Field, right: u32| match f {
            Field::Right => right,
            Field::Zero => 0,
            Field::Other(v) => v,
        };
        let header = DiskHeader {
            magic: field(self.header.magic, SNAP_MAGIC),
            valid: field(self.header.valid, 1),
            version: field(self.header.version, DISK_VERSION),
            chunk_size: self.header.chunk_sectors.0,
        };
        bytes[..16].copy_from_slice(&header.encode_chunk(chunk)[..16]);
        // Plausible records point inside the device; a device too small for
        // any data chunk gets the first chunk past its end.
        let mut data_chunks: Vec<u64> = (1..self.device_chunks).filter(|&c| !layout.is_metadata_chunk(c)).collect();
        if data_chunks.is_empty() {
            data_chunks.push(self.device_chunks);
        }
        let mut placed: Vec<Record> = Vec::new();
        for (area, records) in self.areas.iter().enumerate() {
            let at = layout.area_location(area as u64);
            if at >= self.device_chunks {
                break;
            }
            let area_bytes = &mut bytes[at as usize * chunk_bytes..][..chunk_bytes];
            for (index, description) in records.iter().enumerate().take(layout.exceptions_per_area() as usize) {
                let nth_data = |slot: u8| data_chunks[usize::from(slot) % data_chunks.len()];
                let earlier = |of: u8| placed.get(usize::from(of) % placed.len().max(1)).copied();
                let record = match *description {
                    RecordDescription::Data { old, slot } => Record { old_chunk: u64::from(old), new_chunk: nth_data(slot) },
                    RecordDescription::PastEnd { old, beyond } => {
                        Record { old_chunk: u64::from(old), new_chunk: self.device_chunks + u64::from(beyond) }
                    }
                    RecordDescription::OnMetadata { old, area } => {
                        Record { old_chunk: u64::from(old), new_chunk: layout.area_location(u64::from(area % 4)) }
                    }
                    RecordDescription::DuplicateOld { of, slot } => {
                        let old_chunk = earlier(of).map_or(0, |r| r.old_chunk);
                        Record { old_chunk, new_chunk: nth_data(slot) }
                    }
                    RecordDescription::DuplicateNew { of, old } => {
                        let new_chunk = earlier(of).map_or(2, |r| r.new_chunk);
                        Record { old_chunk: u64::from(old), new_chunk }
                    }
                    RecordDescription::Raw { old, new } => Record { old_chunk: old, new_chunk: new },
                    RecordDescription::End => Record { old_chunk: 0, new_chunk: 0 },
                };
                record.encode(area_bytes, index);
                placed.push(record);
            }
        }
        bytes
    }
}

/// An origin chunk number a workload may touch (bounded to the world's origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginChunk(pub u64);

/// The origin chunks an operation sequence works over.
pub const OP_ORIGIN_CHUNKS: u64 = 16;
/// The chunk size of the operation worlds, in sectors.
pub const OP_CHUNK_SECTORS: u64 = 8;
/// Snapshots in the operation worlds.
pub const OP_SNAPSHOTS: usize = 2;

impl<'a> Arbitrary<'a> for OriginChunk {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Self(u.int_in_range(0..=OP_ORIGIN_CHUNKS - 1)?))
    }
}

/// Where in a chunk an operation starts and how long it is, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub sectors: u64,
}

impl<'a> Arbitrary<'a> for Extent {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        if u.ratio(1u8, 3)? {
            return Ok(Self { offset: 0, sectors: OP_CHUNK_SECTORS });
        }
        let offset = u.int_in_range(0..=OP_CHUNK_SECTORS - 1)?;
        let sectors = u.int_in_range(1..=2 * OP_CHUNK_SECTORS - offset)?;
        Ok(Self { offset, sectors })
    }
}

/// One operation of a sequence: writes, reads, flushes, waits, crashes
/// (a reload of what survives), merges and faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum OpDescription {
    WriteOrigin {
        chunk: OriginChunk,
        extent: Extent,
    },
    WriteSnapshot {
        snapshot: bool,
        chunk: OriginChunk,
        extent: Extent,
    },
    ReadSnapshot {
        snapshot: bool,
        chunk: OriginChunk,
        extent: Extent,
    },
    Flush {
        origin: bool,
        snapshot: bool,
    },
    Wait,
    /// A clean reload (every disk kept as its cache shows it).
    Reload,
    Merge {
        snapshot: bool,
    },
}

impl OpDescription {
    /// The world's operation.
    pub fn script(self) -> ScriptOp {
        let k = |second: bool| usize::from(second);
        let sector = |chunk: OriginChunk, extent: Extent| (chunk.0 * OP_CHUNK_SECTORS + extent.offset).min(OP_ORIGIN_CHUNKS * OP_CHUNK_SECTORS - 1);
        let length = |chunk: OriginChunk, extent: Extent| extent.sectors.min(OP_ORIGIN_CHUNKS * OP_CHUNK_SECTORS - sector(chunk, extent)).max(1);
        match self {
            Self::WriteOrigin { chunk, extent } => {
                ScriptOp::Write { target: Target::Origin, sector: sector(chunk, extent), sectors: length(chunk, extent), flags: UserFlags::PLAIN }
            }
            Self::WriteSnapshot { snapshot, chunk, extent } => ScriptOp::Write {
                target: Target::Snapshot(k(snapshot)),
                sector: sector(chunk, extent),
                sectors: length(chunk, extent),
                flags: UserFlags::PLAIN,
            },
            Self::ReadSnapshot { snapshot, chunk, extent } => {
                ScriptOp::Read { snapshot: k(snapshot), sector: sector(chunk, extent), sectors: length(chunk, extent) }
            }
            Self::Flush { origin: true, .. } => ScriptOp::Flush { target: Target::Origin },
            Self::Flush { snapshot, .. } => ScriptOp::Flush { target: Target::Snapshot(k(snapshot)) },
            Self::Wait => ScriptOp::Wait,
            Self::Reload => ScriptOp::Reload,
            Self::Merge { snapshot } => ScriptOp::Merge { snapshot: k(snapshot) },
        }
    }
}

/// A sequence of at most 24 operations, with the seed that picks crash
/// points, completion orders and faults around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSequence {
    pub seed: u64,
    /// Fault rates, in thousandths (0 to 30 each).
    pub faults_per_mille: u8,
    /// Crashes the world injects at points the seed picks (0 to 2).
    pub crashes: u8,
    pub ops: Vec<OpDescription>,
}

impl<'a> Arbitrary<'a> for OpSequence {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let seed = u.arbitrary()?;
        let faults_per_mille = u.int_in_range(0u8..=30)?;
        let crashes = u.int_in_range(0u8..=2)?;
        let count = u.int_in_range(1usize..=24)?;
        let ops = (0..count).map(|_| OpDescription::arbitrary(u)).collect::<Result<Vec<_>>>()?;
        Ok(Self { seed, faults_per_mille, crashes, ops })
    }
}

impl OpSequence {
    /// The world that runs this sequence: two snapshots of a 16-chunk
    /// origin, the operations as its script, faults and crashes as drawn.
    pub fn run_config(&self) -> RunConfig {
        let rate = f64::from(self.faults_per_mille) / 1000.0;
        let knobs = Knobs {
            chunk_sectors: OP_CHUNK_SECTORS as u32,
            origin_chunks: OP_ORIGIN_CHUNKS,
            cow_chunks: OP_ORIGIN_CHUNKS * 2 + 8,
            origin_tail_sectors: 0,
            cow_tail_sectors: 0,
            snapshots: OP_SNAPSHOTS,
            store: StoreKind::Persistent,
            mix: Mix { origin_write: 1, snapshot_write: 1, snapshot_read: 1, flush: 1 },
            faults: FaultRates { read_error: rate, write_error: rate, flush_error: rate },
            queue_depth: 4,
            cow_threshold: 4,
            crashes: u32::from(self.crashes),
            operations: self.ops.len() as u64,
            mixed_chunk_sectors: Vec::new(),
            stale_cow: false,
            stale_area_zero: false,
            fua_per_mille: 0,
            preflush_per_mille: 0,
            merge_after: None,
        };
        let mut config = RunConfig::new(self.seed);
        config.knobs = Some(knobs);
        config.script = Some(self.ops.iter().map(|op| op.script()).collect());
        config.max_steps = 200_000;
        config
    }
}
