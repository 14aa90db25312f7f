//! An independent reader of the kernel's COW metadata, for judging.
//!
//! The oracle never asks the engine what its COW says: it reads the bytes
//! itself with this small decoder (header, then areas of 16-byte records up
//! to the first zero `new_chunk`, a full area followed by the next), and
//! checks I4 (well-formed) and I5 (allocation order, no leaked chunk) on
//! what it finds. It shares no code with the engine's loader on purpose.

use std::collections::BTreeMap;

use crate::invariant::{Invariant, Violation};

/// "SnAp" little-endian.
const MAGIC: u32 = 0x7041_6e53;
const SECTOR_BYTES: usize = 512;
const RECORD_BYTES: u64 = 16;

/// Read access to a device image, one 512-byte sector at a time.
pub trait SectorSource {
    fn sector_count(&self) -> u64;
    /// The 512 bytes of `sector` (`sector < sector_count()`).
    fn sector(&self, sector: u64) -> &[u8];
}

impl SectorSource for [u8] {
    fn sector_count(&self) -> u64 {
        (self.len() / SECTOR_BYTES) as u64
    }

    fn sector(&self, sector: u64) -> &[u8] {
        let start = sector as usize * SECTOR_BYTES;
        &self[start..start + SECTOR_BYTES]
    }
}

/// What the oracle knows about a COW device it is asked to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CowGeometry {
    pub chunk_sectors: u32,
    /// The origin's size in chunks, or [`Self::ORIGIN_UNKNOWN`].
    pub origin_chunks: u64,
}

impl CowGeometry {
    /// A COW read without its origin (as the kernel loads one): any origin
    /// chunk number is allowed in a record.
    pub const ORIGIN_UNKNOWN: u64 = u64::MAX;

    /// Records one metadata area holds (16 bytes each).
    pub fn records_per_area(self) -> u64 {
        u64::from(self.chunk_sectors) * SECTOR_BYTES as u64 / RECORD_BYTES
    }

    /// The chunk holding metadata area `area`.
    pub fn area_chunk(self, area: u64) -> u64 {
        1 + area * (self.records_per_area() + 1)
    }

    /// Whether `chunk` is the header or a metadata area.
    pub fn is_metadata(self, chunk: u64) -> bool {
        chunk == 0 || (chunk - 1) % (self.records_per_area() + 1) == 0
    }

    /// The `n`-th data chunk in allocation order (0-based).
    pub fn nth_data_chunk(self, n: u64) -> u64 {
        let per_area = self.records_per_area();
        2 + n + n / per_area
    }
}

/// What a COW's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CowState {
    /// Header all zero: never formatted (the engine formats it at load).
    Fresh,
    /// Header says invalid: the kernel loads no records.
    Invalid,
    /// Valid, with these records in on-disk order: `(old_chunk, new_chunk)`.
    Valid(Vec<(u64, u64)>),
}

impl CowState {
    /// Records (none unless valid).
    pub fn records(&self) -> &[(u64, u64)] {
        match self {
            Self::Valid(records) => records,
            _ => &[],
        }
    }

    /// `old_chunk → new_chunk`.
    pub fn table(&self) -> BTreeMap<u64, u64> {
        self.records().iter().copied().collect()
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from(u32_at(bytes, at)) | (u64::from(u32_at(bytes, at + 4)) << 32)
}

fn ill_formed(message: String) -> Violation {
    Violation::new(Invariant::I4MetadataWellFormed, message)
}

/// Reads and checks (I4) the metadata of `cow`.
pub fn decode(cow: &(impl SectorSource + ?Sized), geometry: CowGeometry) -> Result<CowState, Violation> {
    let header = cow.sector(0);
    let (magic, valid, version, chunk_size) = (u32_at(header, 0), u32_at(header, 4), u32_at(header, 8), u32_at(header, 12));
    if magic == 0 {
        return Ok(CowState::Fresh);
    }
    if magic != MAGIC {
        return Err(ill_formed(format!("header magic is {magic:#x}, not {MAGIC:#x}")));
    }
    if version != 1 {
        return Err(ill_formed(format!("header version is {version}, not 1")));
    }
    if chunk_size != geometry.chunk_sectors {
        return Err(ill_formed(format!("header chunk_size is {chunk_size} sectors, the snapshot's is {}", geometry.chunk_sectors)));
    }
    match valid {
        0 => return Ok(CowState::Invalid),
        1 => {}
        other => return Err(ill_formed(format!("header valid field is {other}, neither 0 nor 1"))),
    }
    let chunk_sectors = u64::from(geometry.chunk_sectors);
    let cow_chunks = cow.sector_count() / chunk_sectors;
    let per_area = geometry.records_per_area();
    let records_per_sector = SECTOR_BYTES as u64 / RECORD_BYTES;
    let mut records: Vec<(u64, u64)> = Vec::new();
    let mut area = 0;
    // Each record is checked alone as it is read; that no two records share
    // an origin or a COW chunk is checked once over all of them (a sort, not
    // a map insert per record), and the first bad record in disk order,
    // whichever check it fails, is the one reported.
    let stopped = 'read: loop {
        let area_chunk = geometry.area_chunk(area);
        if area_chunk >= cow_chunks {
            break 'read None;
        }
        for index in 0..per_area {
            let sector = cow.sector(area_chunk * chunk_sectors + index / records_per_sector);
            let at = ((index % records_per_sector) * RECORD_BYTES) as usize;
            let (old, new) = (u64_at(sector, at), u64_at(sector, at + 8));
            if new == 0 {
                break 'read None;
            }
            if let Some(violation) = record_alone(geometry, cow_chunks, records.len() as u64, (old, new)) {
                break 'read Some(violation);
            }
            records.push((old, new));
        }
        area += 1;
    };
    match (first_shared_chunk(&records, per_area), stopped) {
        (Some(violation), _) | (None, Some(violation)) => Err(violation),
        (None, None) => Ok(CowState::Valid(records)),
    }
}

/// Where record `n` (in disk order) sits, in words.
fn place(n: u64, per_area: u64, (old, new): (u64, u64)) -> String {
    format!("area {} record {} (origin chunk {old} → COW chunk {new})", n / per_area, n % per_area)
}

/// What is wrong with record `n` on its own (I4, I7), if anything.
fn record_alone(geometry: CowGeometry, cow_chunks: u64, n: u64, (old, new): (u64, u64)) -> Option<Violation> {
    let per_area = geometry.records_per_area();
    let place = || place(n, per_area, (old, new));
    if new >= cow_chunks {
        return Some(ill_formed(format!("{}: COW chunk beyond the {cow_chunks}-chunk device", place())));
    }
    if geometry.is_metadata(new) {
        // Well-formedness too (I4), but the cause is always the allocator
        // handing out a metadata chunk: name that.
        let what = if new == 0 { "the header".to_string() } else { format!("metadata area {}", (new - 1) / (per_area + 1)) };
        let message = format!("{}: the allocator gave out COW chunk {new}, {what}", place());
        return Some(Violation::new(Invariant::I7Allocation, message));
    }
    if geometry.origin_chunks != CowGeometry::ORIGIN_UNKNOWN && old >= geometry.origin_chunks {
        return Some(ill_formed(format!("{}: origin chunk beyond the {}-chunk origin", place(), geometry.origin_chunks)));
    }
    None
}

/// The first record in disk order that repeats an origin chunk or a COW
/// chunk of an earlier one (I4); a record repeating both is reported for
/// its origin chunk, as a reader checking in that order would.
fn first_shared_chunk(records: &[(u64, u64)], per_area: u64) -> Option<Violation> {
    // For one side of the records: the earliest record repeating a chunk of
    // an earlier one, and that earlier record.
    let first_repeat = |key: fn(&(u64, u64)) -> u64| -> Option<(usize, usize)> {
        let mut keyed: Vec<(u64, usize)> = records.iter().enumerate().map(|(n, r)| (key(r), n)).collect();
        keyed.sort_unstable();
        keyed.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| (w[1].1, w[0].1)).min()
    };
    let (by_old, by_new) = (first_repeat(|r| r.0), first_repeat(|r| r.1));
    let old_first = match (by_old, by_new) {
        (Some((a, _)), Some((b, _))) => a <= b,
        (old, _) => old.is_some(),
    };
    let (n, earlier) = if old_first { by_old? } else { by_new? };
    let (old, new) = records[n];
    let place = place(n as u64, per_area, (old, new));
    Some(ill_formed(if old_first {
        format!("{place}: origin chunk {old} already has record {earlier}")
    } else {
        format!("{place}: COW chunk {new} already used by record {earlier}")
    }))
}

/// I5: records sit in allocation order and leave no data chunk unreferenced.
///
/// The store allocates data chunks in order (skipping metadata areas) and
/// commits in allocation order, so the `n`-th record on disk must name the
/// `n`-th data chunk. A record ahead of its place means one committed out
/// of order — after a crash, the chunk it skipped is leaked.
pub fn check_allocation_order(records: &[(u64, u64)], geometry: CowGeometry) -> Result<(), Violation> {
    for (n, &(old, new)) in records.iter().enumerate() {
        let expected = geometry.nth_data_chunk(n as u64);
        if new != expected {
            let message = if new > expected {
                let skipped = records.iter().find(|&&(_, c)| c == expected).map(|&(o, _)| o);
                let order = match skipped {
                    Some(later) => format!("record for chunk {old} precedes chunk {later}"),
                    None => format!("COW chunk {expected} is referenced by no record (leaked)"),
                };
                format!("{order}: record {n} names COW chunk {new} where allocation order puts chunk {expected}")
            } else {
                format!("record {n} (origin chunk {old}) names COW chunk {new}, behind allocation position {expected}")
            };
            return Err(Violation::new(Invariant::I5InOrderCommit, message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEOMETRY: CowGeometry = CowGeometry { chunk_sectors: 1, origin_chunks: 100 };

    /// A 512-byte-chunk COW (32 records per area) with `records` in area 0 and on.
    fn cow(records: &[(u64, u64)], chunks: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; chunks * SECTOR_BYTES];
        bytes[..16].copy_from_slice(&[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
        for (i, &(old, new)) in records.iter().enumerate() {
            let area = i as u64 / 32;
            let at = GEOMETRY.area_chunk(area) as usize * SECTOR_BYTES + (i % 32) * 16;
            bytes[at..at + 8].copy_from_slice(&old.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&new.to_le_bytes());
        }
        bytes
    }

    fn check(records: &[(u64, u64)]) -> Result<(), String> {
        let bytes = cow(records, 80);
        let state = decode(bytes.as_slice(), GEOMETRY).map_err(|v| v.to_string())?;
        check_allocation_order(state.records(), GEOMETRY).map_err(|v| v.to_string())
    }

    #[test]
    fn in_order_records_across_an_area_boundary_pass() {
        let records: Vec<(u64, u64)> = (0..40).map(|n| (n + 50, GEOMETRY.nth_data_chunk(n))).collect();
        assert_eq!(records[32].1, 35, "area 1 sits at chunk 34");
        assert_eq!(check(&records), Ok(()));
    }

    #[test]
    fn out_of_order_commit_is_named() {
        let error = check(&[(412, 3), (409, 2)]).unwrap_err();
        assert!(error.starts_with("I4"), "origin chunks beyond the origin: {error}");
        let error = check(&[(41, 3), (40, 2)]).unwrap_err();
        assert_eq!(
            error,
            "I5 in-order commit: record for chunk 41 precedes chunk 40: record 0 names COW chunk 3 where allocation order puts chunk 2"
        );
    }

    #[test]
    fn a_gap_is_a_leak() {
        let error = check(&[(1, 2), (2, 4)]).unwrap_err();
        assert!(error.contains("COW chunk 3 is referenced by no record (leaked)"), "{error}");
    }

    #[test]
    fn ill_formed_metadata_is_named() {
        for (records, expected) in [
            (vec![(1, 2), (1, 3)], "origin chunk 1 already has record 0"),
            (vec![(1, 2), (2, 2)], "COW chunk 2 already used by record 0"),
            (vec![(1, 500)], "beyond the 80-chunk device"),
        ] {
            let bytes = cow(&records, 80);
            let error = decode(bytes.as_slice(), GEOMETRY).unwrap_err();
            assert_eq!(error.invariant, Invariant::I4MetadataWellFormed);
            assert!(error.message.contains(expected), "{error}");
        }
        for (records, expected) in [(vec![(1, 34)], "COW chunk 34, metadata area 1"), (vec![(2, 2), (1, 1)], "COW chunk 1, metadata area 0")] {
            let bytes = cow(&records, 80);
            let error = decode(bytes.as_slice(), GEOMETRY).unwrap_err();
            assert_eq!(error.invariant, Invariant::I7Allocation);
            assert!(error.message.contains(expected), "{error}");
        }
        // 1 KiB chunks: the device's size in chunks is its sectors halved.
        let geometry = CowGeometry { chunk_sectors: 2, origin_chunks: 100 };
        let mut bytes = vec![0u8; 80 * SECTOR_BYTES];
        bytes[..16].copy_from_slice(&[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
        let area0 = geometry.area_chunk(0) as usize * 2 * SECTOR_BYTES;
        bytes[area0..area0 + 8].copy_from_slice(&1u64.to_le_bytes());
        bytes[area0 + 8..area0 + 16].copy_from_slice(&45u64.to_le_bytes());
        let error = decode(bytes.as_slice(), geometry).unwrap_err();
        assert!(error.message.contains("beyond the 40-chunk device"), "{error}");
        let mut bytes = cow(&[], 4);
        bytes[0] = 0x54;
        assert!(decode(bytes.as_slice(), GEOMETRY).unwrap_err().message.contains("magic"));
        assert_eq!(decode(vec![0u8; 2048].as_slice(), GEOMETRY), Ok(CowState::Fresh));
    }

    /// The first bad record in disk order is the one named, whichever check
    /// it fails: a record that repeats both chunks is named for its origin
    /// chunk, a repeat before a record bad on its own wins, and after one loses.
    #[test]
    fn the_first_bad_record_in_disk_order_is_named() {
        for (records, expected) in [
            (vec![(1, 2), (1, 2)], "area 0 record 1 (origin chunk 1 → COW chunk 2): origin chunk 1 already has record 0"),
            (vec![(1, 2), (3, 4), (5, 4), (3, 6)], "area 0 record 2 (origin chunk 5 → COW chunk 4): COW chunk 4 already used by record 1"),
            (vec![(7, 2), (8, 3), (7, 4), (9, 500)], "area 0 record 2 (origin chunk 7 → COW chunk 4): origin chunk 7 already has record 0"),
            (vec![(7, 2), (9, 500), (7, 4)], "area 0 record 1 (origin chunk 9 → COW chunk 500): COW chunk beyond the 80-chunk device"),
            (vec![(7, 2), (8, 3), (8, 5), (8, 6)], "area 0 record 2 (origin chunk 8 → COW chunk 5): origin chunk 8 already has record 1"),
        ] {
            let bytes = cow(&records, 80);
            let error = decode(bytes.as_slice(), GEOMETRY).unwrap_err();
            assert_eq!(error.message, expected, "{records:?}");
        }
    }
}
