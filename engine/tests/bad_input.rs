//! Hostile and broken COW devices: each is refused with an error that names
//! what is wrong, never a panic and never a silently wrong snapshot.
//!
//! One `check` helper loads an image and compares the exact error; each case
//! below is a small fixture.

mod support;

use engine::chunk::ChunkSizeError;
use engine::exception_table::TableError;
use engine::io::{CompletionQueue, MemDevice};
use engine::store::{LoadOutcome, StoreConfig, StoreError, load_blocking};
use engine::sync::Arc;
use support::*;

/// Loads `image` with `config` and expects `expected`; the message must
/// contain every fragment of `mentions`.
fn check(image: Vec<u8>, config: StoreConfig, expected: StoreError, mentions: &[&str]) {
    let (_queue, loaded) = load_image(image, config);
    let error = match loaded {
        Ok(loaded) => panic!("expected {expected:?}, but the COW loaded as {:?}", loaded.outcome),
        Err(error) => error,
    };
    assert_eq!(error, expected);
    let message = error.to_string();
    for fragment in mentions {
        assert!(message.contains(fragment), "message {message:?} does not mention {fragment:?}");
    }
}

const MAGIC: usize = 0;
const VALID: usize = 1;
const VERSION: usize = 2;
const CHUNK_SIZE: usize = 3;

#[test]
fn wrong_magic() {
    let image = Image::new(8, 64).header_field(MAGIC, 0x1234_5678).bytes;
    check(image, config(8), StoreError::BadMagic { found: 0x1234_5678 }, &["0x12345678", "SnAp"]);
}

#[test]
fn unsupported_version() {
    let image = Image::new(8, 64).header_field(VERSION, 2).bytes;
    check(image, config(8), StoreError::UnsupportedVersion { found: 2 }, &["version is 2"]);
}

#[test]
fn header_chunk_size_zero() {
    let image = Image::new(8, 64).header_field(CHUNK_SIZE, 0).bytes;
    check(image, config(8), StoreError::HeaderChunkSize { value: 0, source: ChunkSizeError::Zero }, &["COW header", "0 sectors"]);
}

#[test]
fn header_chunk_size_not_a_power_of_two() {
    let image = Image::new(8, 64).header_field(CHUNK_SIZE, 24).bytes;
    let source = ChunkSizeError::NotPowerOfTwo { sectors: 24 };
    check(image, config(8), StoreError::HeaderChunkSize { value: 24, source }, &["24 sectors is not a power of two"]);
}

#[test]
fn header_chunk_size_two_to_the_twenty_two() {
    let image = Image::new(8, 64).header_field(CHUNK_SIZE, 1 << 22).bytes;
    let source = ChunkSizeError::TooLarge { sectors: 1 << 22 };
    check(image, config(8), StoreError::HeaderChunkSize { value: 1 << 22, source }, &["4194304", "too large"]);
}

#[test]
fn header_chunk_size_not_a_multiple_of_the_logical_block() {
    let queue = CompletionQueue::new();
    let image = Image::new(8, 64).header_field(CHUNK_SIZE, 4).bytes;
    let cow = Arc::new(MemDevice::from_bytes(image, &queue).with_logical_block_bytes(4096));
    let error = load_blocking(&queue, cow, 512, config(8)).unwrap_err();
    let source = ChunkSizeError::NotBlockMultiple { sectors: 4, device: "COW", block_bytes: 4096 };
    assert_eq!(error, StoreError::HeaderChunkSize { value: 4, source });
    assert!(error.to_string().contains("logical block size of 4096 bytes"), "{error}");
}

#[test]
fn table_chunk_size_is_checked_before_any_io() {
    for (sectors, source) in
        [(0, ChunkSizeError::Zero), (12, ChunkSizeError::NotPowerOfTwo { sectors: 12 }), (1 << 22, ChunkSizeError::TooLarge { sectors: 1 << 22 })]
    {
        check(Image::new(8, 64).bytes, config(sectors), StoreError::TableChunkSize(source), &["table"]);
    }
    // The origin's block size counts too.
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::zeroed(512, &queue));
    let error = load_blocking(&queue, cow, 4096, config(4)).unwrap_err();
    let source = ChunkSizeError::NotBlockMultiple { sectors: 4, device: "origin", block_bytes: 4096 };
    assert_eq!(error, StoreError::TableChunkSize(source));
}

#[test]
fn record_outside_the_cow() {
    let image = Image::new(8, 64).record(0, 0, 5, 2).record(0, 1, 6, 64).bytes;
    let expected = StoreError::RecordOutsideCow { area: 0, index: 1, old_chunk: 6, new_chunk: 64, device_chunks: 64 };
    check(image, config(8), expected, &["record 1 of metadata area 0", "COW chunk 64", "64 chunks"]);
}

#[test]
fn record_on_a_metadata_area() {
    // 512-byte chunks: 32 records per area, areas at chunks 1, 34, 67.
    let image = Image::new(1, 100).record(0, 0, 7, 34).bytes;
    let expected = StoreError::RecordOnMetadata { area: 0, index: 0, old_chunk: 7, new_chunk: 34 };
    check(image, config(1), expected, &["COW chunk 34", "metadata"]);
    let image = Image::new(1, 100).record(0, 0, 7, 1).bytes;
    let expected = StoreError::RecordOnMetadata { area: 0, index: 0, old_chunk: 7, new_chunk: 1 };
    check(image, config(1), expected, &["COW chunk 1"]);
}

#[test]
fn a_record_can_never_point_at_the_header() {
    // COW chunk 0 is the header, and new_chunk == 0 is the end-of-area marker,
    // so such a record ends the area: what follows it is not loaded.
    let image = Image::new(8, 64).record(0, 0, 5, 2).record(0, 1, 9, 0).record(0, 2, 6, 3).bytes;
    let (_queue, loaded) = load_image(image, config(8));
    let loaded = loaded.unwrap();
    assert_eq!(loaded.exceptions.len(), 1);
    assert_eq!(loaded.exceptions.lookup(9), None);
    assert_eq!(loaded.exceptions.lookup(6), None);
    assert_eq!(loaded.store.position(), (0, 1), "the next record overwrites the end marker");
}

#[test]
fn duplicate_origin_chunk() {
    let image = Image::new(8, 64).record(0, 0, 5, 2).record(0, 1, 5, 3).bytes;
    let duplicate = TableError::DuplicateOldChunk { old_chunk: 5, first_new: 2, second_new: 3 };
    check(image, config(8), StoreError::DuplicateOldChunk(duplicate), &["origin chunk 5", "COW chunks 2 and 3"]);
}

#[test]
fn duplicate_cow_chunk() {
    let image = Image::new(8, 64).record(0, 0, 5, 2).record(0, 1, 6, 2).bytes;
    let expected = StoreError::DuplicateNewChunk { new_chunk: 2, first_old: 5, second_old: 6 };
    check(image, config(8), expected, &["COW chunk 2", "origin chunks 5 and 6"]);
}

#[test]
fn duplicates_across_areas_are_found_too() {
    let image = Image::new(1, 100).full_area(0).record(1, 0, 1_000, 35).bytes;
    let duplicate = TableError::DuplicateOldChunk { old_chunk: 1_000, first_new: 2, second_new: 35 };
    check(image, config(1), StoreError::DuplicateOldChunk(duplicate), &["origin chunk 1000"]);
}

#[test]
fn truncated_device_cuts_off_the_next_area() {
    // Area 0 is full, so area 1 (chunk 34) must exist; the device ends at chunk 34.
    let image = Image::new(1, 100).full_area(0).truncate_sectors(34).bytes;
    let expected = StoreError::AreaBeyondDevice { area: 1, chunk: 34, device_chunks: 34 };
    check(image, config(1), expected, &["metadata area 1", "beyond the end", "truncated"]);
}

#[test]
fn truncated_device_cuts_off_a_data_chunk() {
    let image = Image::new(8, 64).record(0, 0, 5, 2).record(0, 1, 6, 40).truncate_sectors(30 * 8).bytes;
    let expected = StoreError::RecordOutsideCow { area: 0, index: 1, old_chunk: 6, new_chunk: 40, device_chunks: 30 };
    check(image, config(8), expected, &["beyond the end of the COW device (30 chunks)"]);
}

#[test]
fn cow_smaller_than_three_chunks() {
    // A valid header on a two-chunk device.
    let image = Image::new(8, 2).bytes;
    let expected = StoreError::CowTooSmall { device_sectors: 16, chunk_sectors: 8, chunks: 2 };
    check(image, config(8), expected, &["16 sectors hold 2 chunks of 8 sectors", "at least 3"]);
    // A new (zeroed) COW of 2.5 chunks is refused before anything is written.
    let image = vec![0; 20 * 512];
    let expected = StoreError::CowTooSmall { device_sectors: 20, chunk_sectors: 8, chunks: 2 };
    check(image, config(8), expected, &[]);
    // A device smaller than one block cannot even hold a header.
    let expected = StoreError::CowTooSmall { device_sectors: 0, chunk_sectors: 8, chunks: 0 };
    check(Vec::new(), config(8), expected, &[]);
}

#[test]
fn header_chunk_size_overrides_the_table_but_must_fit_the_device() {
    // The header says 64-sector chunks; the device holds only 2 of them.
    let image = Image::new(8, 16).header_field(CHUNK_SIZE, 64).bytes;
    let expected = StoreError::CowTooSmall { device_sectors: 128, chunk_sectors: 64, chunks: 2 };
    check(image, config(8), expected, &[]);
}

#[test]
fn header_chunk_size_overrides_the_table_with_a_warning() {
    let image = Image::new(16, 64).record(0, 0, 3, 2).bytes;
    let (_queue, loaded) = load_image(image, config(8));
    let loaded = loaded.unwrap();
    assert_eq!(loaded.store.chunk_size().sectors(), 16);
    assert_eq!(loaded.chunk_size_override, Some((8, 16)));
    assert_eq!(loaded.exceptions.lookup(3), Some(2));
    // With no table chunk size, the header's is simply taken.
    let image = Image::new(16, 64).bytes;
    let (_queue, loaded) = load_image(image, StoreConfig::default());
    let loaded = loaded.unwrap();
    assert_eq!((loaded.store.chunk_size().sectors(), loaded.chunk_size_override), (16, None));
}

#[test]
fn invalid_header_loads_as_invalid_without_reading_records() {
    // Garbage where the records would be is never looked at.
    let image = Image::new(8, 64).header_field(VALID, 0).record(0, 0, 5, 999).bytes;
    let (_queue, loaded) = load_image(image, config(8));
    let loaded = loaded.unwrap();
    assert_eq!(loaded.outcome, LoadOutcome::Invalid);
    assert!(!loaded.store.is_valid());
    assert!(loaded.exceptions.is_empty());
}

#[test]
fn cow_path_equal_to_origin_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("volume.img");
    std::fs::write(&path, Image::new(8, 64).bytes).unwrap();
    let queue = CompletionQueue::new();
    let open = |p: &std::path::Path| engine::io::FileDevice::open(p, engine::io::OpenMode::ReadOnly, &queue).unwrap();
    let origin = open(&path);
    // The same file through another path is the same storage.
    let alias = dir.path().join("alias.img");
    std::fs::hard_link(&path, &alias).unwrap();
    let cow = open(&alias);
    assert_eq!(engine::view::check_distinct(&origin, &cow), Err(StoreError::CowIsOrigin));
    assert!(StoreError::CowIsOrigin.to_string().contains("the COW device is the origin device"));
    let other = dir.path().join("other.img");
    std::fs::write(&other, Image::new(8, 64).bytes).unwrap();
    assert_eq!(engine::view::check_distinct(&origin, &open(&other)), Ok(()));
}

#[test]
fn hostile_chunk_size_claims_cost_memory_bounded_by_the_device() {
    // A 1 GiB chunk size is valid, but a small device cannot hold three such
    // chunks, so nothing chunk-sized is allocated before the load is refused.
    let image = Image::new(8, 64).header_field(CHUNK_SIZE, 1 << 21).bytes;
    let expected = StoreError::CowTooSmall { device_sectors: 512, chunk_sectors: 1 << 21, chunks: 0 };
    check(image, config(8), expected, &[]);
}
