//! Golden vectors: COW devices written by the real Linux 6.1 kernel must load
//! to exactly the snapshot the kernel served, with the kernel's status line,
//! and a COW written by this engine for the same records must match the
//! kernel's byte for byte in its header and every metadata area.

mod support;

use engine::format::{Layout, Record};
use engine::io::{CompletionQueue, MemDevice, run_until_done};
use engine::store::{LoadOutcome, StoreError, load_blocking};
use engine::sync::{Arc, Mutex};
use engine::{BlockDevice, ChunkSize, ExceptionTable, SECTOR_BYTES};
use support::*;

/// Loads the kernel's COW over the kernel's final origin and checks the view,
/// the status line and the records.
fn check_kernel_cow(name: &str) {
    let v = vector(name);
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::from_bytes(v.cow.clone(), &queue));
    let origin = MemDevice::from_bytes(v.origin_after.clone(), &queue);
    let loaded =
        load_blocking(&queue, cow, SECTOR_BYTES as u32, config(v.chunk_sectors)).unwrap_or_else(|e| panic!("{name}: kernel COW refused: {e}"));
    assert_eq!(loaded.store.chunk_size().sectors(), v.chunk_sectors, "{name}: chunk size");

    if v.status_after == "Invalid" {
        assert_eq!(loaded.outcome, LoadOutcome::Invalid, "{name}: header valid=0 must load as Invalid");
        let mut sink = Vec::new();
        let error = engine::view::export(&queue, &origin, &loaded, &mut sink).unwrap_err();
        assert!(matches!(error, engine::view::ViewError::Invalid), "{name}: {error}");
        return;
    }
    assert_eq!(loaded.outcome, LoadOutcome::Valid, "{name}");
    assert_eq!(loaded.store.usage().to_string(), v.status_after, "{name}: usage line vs dmsetup status");

    let expected_records = disk_records(&v.cow, v.chunk_sectors);
    assert_eq!(loaded.exceptions.len(), expected_records.len() as u64, "{name}: exception count");
    if v.merge {
        assert!(loaded.exceptions.is_empty(), "{name}: a merged COW must hold no records");
    }
    for record in &expected_records {
        assert_eq!(loaded.exceptions.lookup(record.old_chunk), Some(record.new_chunk), "{name}: {record:?}");
    }

    let mut view = Vec::new();
    let stats = engine::view::export(&queue, &origin, &loaded, &mut view).unwrap();
    assert_eq!(stats.chunks_from_cow, expected_records.len() as u64, "{name}");
    assert_eq!(view.len(), v.snapshot.len(), "{name}: view size");
    if let Some(sector) = (0..view.len() / SECTOR_BYTES)
        .find(|&s| view[s * SECTOR_BYTES..(s + 1) * SECTOR_BYTES] != v.snapshot[s * SECTOR_BYTES..(s + 1) * SECTOR_BYTES])
    {
        panic!(
            "{name}: view differs from the kernel's snapshot at sector {sector}: {:?} vs {:?}",
            String::from_utf8_lossy(&view[sector * SECTOR_BYTES..sector * SECTOR_BYTES + 20]),
            String::from_utf8_lossy(&v.snapshot[sector * SECTOR_BYTES..sector * SECTOR_BYTES + 20]),
        );
    }
}

#[test]
fn kernel_cow_basic_4k() {
    check_kernel_cow("basic-4k");
}

#[test]
fn kernel_cow_merge_4k() {
    check_kernel_cow("merge-4k");
}

#[test]
fn kernel_cow_multi_area_4k() {
    check_kernel_cow("multi-area-4k");
}

#[test]
fn kernel_cow_overflow_invalid() {
    check_kernel_cow("overflow-invalid");
}

/// Re-commits the kernel's records, in on-disk order and in batches of
/// `batch` (several copies in flight per area write), through a fresh store on
/// a zeroed COW, copying each record's data chunk; then compares the header
/// chunk and every metadata area with the kernel's image.
fn check_writer_fidelity(name: &str, batch: usize) {
    let v = vector(name);
    let chunk = ChunkSize::from_sectors(v.chunk_sectors);
    let layout = Layout::new(chunk);
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::zeroed((v.cow.len() / SECTOR_BYTES) as u64, &queue));
    let loaded = load_blocking(&queue, Arc::clone(&cow), SECTOR_BYTES as u32, config(v.chunk_sectors)).unwrap();
    assert_eq!(loaded.outcome, LoadOutcome::New);
    let store = loaded.store;
    let records = disk_records(&v.cow, v.chunk_sectors);
    let acknowledged = Arc::new(Mutex::new(0usize));
    let mut committed = 0;

    for group in records.chunks(batch) {
        let mut prepared = Vec::new();
        for record in group {
            let new_chunk = store.prepare_exception().unwrap();
            assert_eq!(new_chunk, record.new_chunk, "{name}: allocation order differs from the kernel's");
            let start = new_chunk as usize * chunk.bytes();
            let data = v.cow[start..start + chunk.bytes()].to_vec();
            let written = run_until_done(&queue, |done| cow.write(chunk.chunk_to_sector(new_chunk), data, engine::io::WriteFlags::PLAIN, done));
            written.unwrap().unwrap();
            prepared.push(*record);
        }
        for record in prepared {
            let acknowledged = Arc::clone(&acknowledged);
            store.commit_exception(
                record,
                true,
                Box::new(move |valid| {
                    assert!(valid);
                    *acknowledged.lock() += 1;
                }),
            );
        }
        queue.run_until_idle();
        committed += group.len();
        assert_eq!(*acknowledged.lock(), committed, "{name}: a batch's callbacks ran once its area write completed");
    }
    assert_eq!(*acknowledged.lock(), records.len(), "{name}: every commit acknowledged");

    if v.status_after == "Invalid" {
        // The kernel ran out of space, and invalidated the snapshot.
        assert!(matches!(store.prepare_exception(), Err(StoreError::NoSpace { .. })), "{name}: expected ENOSPC");
        let dropped = run_until_done(&queue, |done| store.drop_snapshot(Some(done)));
        dropped.unwrap().unwrap();
    } else {
        assert_eq!(store.usage().to_string(), v.status_after, "{name}: usage after re-commit");
    }

    let ours = cow.contents();
    let chunk_bytes = chunk.bytes();
    assert_eq!(&ours[..chunk_bytes], &v.cow[..chunk_bytes], "{name}: header chunk differs");
    let mut area = 0;
    while layout.area_location(area) * (chunk_bytes as u64) < ours.len() as u64 {
        let start = layout.area_location(area) as usize * chunk_bytes;
        assert!(ours[start..start + chunk_bytes] == v.cow[start..start + chunk_bytes], "{name}: metadata area {area} differs");
        area += 1;
    }

    // And the engine reads back what it wrote.
    if v.status_after != "Invalid" {
        let (_queue, reloaded) = load_image(ours, config(v.chunk_sectors));
        let reloaded = reloaded.unwrap();
        let expected = ExceptionTable::from_records(records.clone()).unwrap();
        assert_eq!(reloaded.exceptions, expected, "{name}: reload");
        assert_eq!(reloaded.store.usage(), store.usage(), "{name}: usage after reload");
    }
}

#[test]
fn writer_fidelity_one_commit_per_area_write() {
    for name in VECTORS {
        check_writer_fidelity(name, 1);
    }
}

#[test]
fn writer_fidelity_batched_commits() {
    for name in VECTORS {
        for batch in [3, 7, 64] {
            check_writer_fidelity(name, batch);
        }
    }
}

#[test]
fn records_are_in_allocation_order_on_kernel_cows() {
    // Since in-order completion (2018), the kernel commits in allocation order:
    // records' COW chunks ascend, skipping only metadata areas.
    for name in VECTORS {
        let v = vector(name);
        let layout = Layout::new(ChunkSize::from_sectors(v.chunk_sectors));
        let records: Vec<Record> = disk_records(&v.cow, v.chunk_sectors);
        let mut expected = 2;
        for record in records {
            assert_eq!(record.new_chunk, expected, "{name}");
            expected = layout.skip_metadata(expected + 1);
        }
    }
}
