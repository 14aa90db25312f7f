//! The kernel's on-disk COW format, as pure functions over byte buffers.
//!
//! ```text
//! chunk 0                      header: magic, valid, version, chunk_size (LE u32s), rest zero
//! chunk 1                      metadata area 0: exceptions_per_area records
//! chunks 2 ..= E+1             data chunks described by area 0
//! chunk 1 + (E+1)              metadata area 1
//! ...                          area n sits at chunk 1 + n*(E+1)
//! ```
//!
//! `E = exceptions_per_area = chunk_bytes / 16`. A record is
//! `{old_chunk: u64, new_chunk: u64}` little-endian: origin chunk `old_chunk`
//! was copied to COW chunk `new_chunk`. Within an area the records end at the
//! first one whose `new_chunk` is 0 (the header's chunk, so never a real target).
//! A full area is followed by the next one; a partial area is the last.

use crate::chunk::ChunkSize;

/// "SnAp", little-endian.
pub const SNAP_MAGIC: u32 = 0x7041_6e53;

/// The only on-disk version there has ever been.
pub const DISK_VERSION: u32 = 1;

/// Chunks before the first metadata area: the header.
pub const HEADER_CHUNKS: u64 = 1;

/// Bytes in one on-disk record.
pub const RECORD_BYTES: usize = 16;

/// Bytes of the header that carry fields; the rest of chunk 0 is zero.
pub const HEADER_BYTES: usize = 16;

/// The header fields exactly as found on disk (not yet validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskHeader {
    pub magic: u32,
    pub valid: u32,
    pub version: u32,
    pub chunk_size: u32,
}

impl DiskHeader {
    /// Decodes the header from the start of chunk 0.
    ///
    /// # Panics
    /// If `bytes` is shorter than [`HEADER_BYTES`] (callers read a whole sector at least).
    pub fn decode(bytes: &[u8]) -> Self {
        assert!(bytes.len() >= HEADER_BYTES, "header buffer of {} bytes", bytes.len());
        let field = |index: usize| {
            let at = index * 4;
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Self { magic: field(0), valid: field(1), version: field(2), chunk_size: field(3) }
    }

    /// The header the store writes for a snapshot with these properties.
    pub fn new(valid: bool, chunk: ChunkSize) -> Self {
        Self { magic: SNAP_MAGIC, valid: u32::from(valid), version: DISK_VERSION, chunk_size: chunk.sectors() }
    }

    /// Encodes into a whole header chunk: fields first, zeros after, as the
    /// kernel clears its header buffer before filling it.
    pub fn encode_chunk(&self, chunk: ChunkSize) -> Vec<u8> {
        let mut bytes = vec![0u8; chunk.bytes()];
        for (index, value) in [self.magic, self.valid, self.version, self.chunk_size].into_iter().enumerate() {
            bytes[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }
}

/// One exception: origin chunk `old_chunk` lives in COW chunk `new_chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    pub old_chunk: u64,
    pub new_chunk: u64,
}

impl Record {
    /// The record at `index` of an area buffer.
    pub fn decode(area: &[u8], index: usize) -> Self {
        let at = index * RECORD_BYTES;
        let word = |offset: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&area[at + offset..at + offset + 8]);
            u64::from_le_bytes(raw)
        };
        Self { old_chunk: word(0), new_chunk: word(8) }
    }

    /// Stores the record at `index` of an area buffer.
    pub fn encode(&self, area: &mut [u8], index: usize) {
        let at = index * RECORD_BYTES;
        area[at..at + 8].copy_from_slice(&self.old_chunk.to_le_bytes());
        area[at + 8..at + 16].copy_from_slice(&self.new_chunk.to_le_bytes());
    }

    /// Whether this is the end marker (`new_chunk == 0`).
    pub fn is_end_marker(&self) -> bool {
        self.new_chunk == 0
    }
}

/// Clears the record at `index` (both fields zero), as merging does.
pub fn clear_record(area: &mut [u8], index: usize) {
    area[index * RECORD_BYTES..(index + 1) * RECORD_BYTES].fill(0);
}

/// The records in use in one area and whether the area is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaRecords {
    /// Records before the end marker (all of them if the area is full).
    pub records: Vec<Record>,
    /// True when no end marker was found: the next area follows.
    pub full: bool,
}

/// Where metadata lives for a given chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    chunk: ChunkSize,
}

impl Layout {
    pub fn new(chunk: ChunkSize) -> Self {
        Self { chunk }
    }

    pub fn chunk(&self) -> ChunkSize {
        self.chunk
    }

    /// Records per metadata area: one chunk's worth of 16-byte records.
    pub fn exceptions_per_area(&self) -> u32 {
        (self.chunk.bytes() / RECORD_BYTES) as u32
    }

    /// Distance in chunks between two metadata areas.
    pub fn stride(&self) -> u64 {
        u64::from(self.exceptions_per_area()) + 1
    }

    /// The chunk holding metadata area `area` (saturates far past any device).
    pub fn area_location(&self, area: u64) -> u64 {
        area.saturating_mul(self.stride()).saturating_add(HEADER_CHUNKS)
    }

    /// Whether `chunk` is the header or a metadata area.
    pub fn is_metadata_chunk(&self, chunk: u64) -> bool {
        chunk < HEADER_CHUNKS || (chunk - HEADER_CHUNKS) % self.stride() == 0
    }

    /// The kernel's `skip_metadata`: if `next_free` has landed on a metadata
    /// area, step over it.
    pub fn skip_metadata(&self, next_free: u64) -> u64 {
        if next_free % self.stride() == HEADER_CHUNKS { next_free + 1 } else { next_free }
    }

    /// Scans an area buffer the way the kernel's loader does: records up to
    /// the first end marker.
    pub fn decode_area(&self, area: &[u8]) -> AreaRecords {
        assert_eq!(area.len(), self.chunk.bytes(), "area buffer is not one chunk");
        let per_area = self.exceptions_per_area() as usize;
        let mut records = Vec::new();
        for index in 0..per_area {
            let record = Record::decode(area, index);
            if record.is_end_marker() {
                return AreaRecords { records, full: false };
            }
            records.push(record);
        }
        AreaRecords { records, full: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(sectors: u32) -> Layout {
        Layout::new(ChunkSize::from_sectors(sectors))
    }

    #[test]
    fn header_round_trips_and_matches_the_kernel_bytes() {
        let chunk = ChunkSize::from_sectors(8);
        let bytes = DiskHeader::new(true, chunk).encode_chunk(chunk);
        assert_eq!(&bytes[..16], &[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        assert!(bytes[16..].iter().all(|&b| b == 0));
        assert_eq!(bytes.len(), 4096);
        assert_eq!(&bytes[..4], b"SnAp");
        let header = DiskHeader::decode(&bytes);
        assert_eq!(header, DiskHeader { magic: SNAP_MAGIC, valid: 1, version: 1, chunk_size: 8 });
    }

    #[test]
    fn area_locations_follow_the_kernel_formula() {
        // 4 KiB chunks: 256 records per area, areas every 257 chunks after the header.
        let l = layout(8);
        assert_eq!(l.exceptions_per_area(), 256);
        assert_eq!([l.area_location(0), l.area_location(1), l.area_location(2)], [1, 258, 515]);
        // 512-byte chunks: 32 records per area.
        let l = layout(1);
        assert_eq!(l.exceptions_per_area(), 32);
        assert_eq!([l.area_location(0), l.area_location(1)], [1, 34]);
    }

    #[test]
    fn metadata_chunks_are_the_header_and_every_area() {
        let l = layout(1);
        let metadata: Vec<u64> = (0..80).filter(|&c| l.is_metadata_chunk(c)).collect();
        assert_eq!(metadata, vec![0, 1, 34, 67]);
    }

    #[test]
    fn skip_metadata_steps_over_areas_only() {
        let l = layout(1);
        assert_eq!(l.skip_metadata(2), 2);
        assert_eq!(l.skip_metadata(33), 33);
        assert_eq!(l.skip_metadata(34), 35);
        assert_eq!(l.skip_metadata(67), 68);
        // Allocation never lands on metadata.
        let mut next = 2;
        for _ in 0..500 {
            assert!(!l.is_metadata_chunk(next));
            next = l.skip_metadata(next + 1);
        }
    }

    #[test]
    fn areas_end_at_the_first_zero_new_chunk() {
        let l = layout(1);
        let mut area = vec![0u8; 512];
        Record { old_chunk: 9, new_chunk: 2 }.encode(&mut area, 0);
        Record { old_chunk: 0, new_chunk: 3 }.encode(&mut area, 1);
        // A stale record after the end marker is not part of the area.
        Record { old_chunk: 5, new_chunk: 5 }.encode(&mut area, 3);
        let decoded = l.decode_area(&area);
        assert!(!decoded.full);
        assert_eq!(decoded.records, vec![Record { old_chunk: 9, new_chunk: 2 }, Record { old_chunk: 0, new_chunk: 3 }]);
        for index in 0..32 {
            Record { old_chunk: index as u64, new_chunk: 2 + index as u64 }.encode(&mut area, index);
        }
        assert!(l.decode_area(&area).full);
        clear_record(&mut area, 31);
        assert_eq!(l.decode_area(&area).records.len(), 31);
    }
}
