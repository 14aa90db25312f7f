//! The production device over real files: positional I/O, bounds, read-only
//! refusal, and the whole store (create, commit, reload) on a file.

mod support;

use engine::format::Record;
use engine::io::{BlockDevice, CompletionQueue, FileDevice, IoErrorKind, OpenMode, WriteFlags, run_until_done};
use engine::store::{LoadOutcome, load_blocking};
use engine::sync::{Arc, Mutex};
use support::*;

fn file_of(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn reads_writes_and_flushes_by_sector() {
    let dir = tempfile::tempdir().unwrap();
    // 4.5 sectors: the trailing half sector is not part of the device.
    let path = file_of(&dir, "dev.img", &vec![0u8; 4 * 512 + 256]);
    let queue = CompletionQueue::new();
    let device = FileDevice::open(&path, OpenMode::ReadWrite, &queue).unwrap();
    assert_eq!(device.size_sectors(), 4);
    let write = run_until_done(&queue, |done| device.write(1, vec![0x5a; 1024], WriteFlags::PREFLUSH_FUA, done));
    write.unwrap().unwrap();
    run_until_done(&queue, |done| device.flush(done)).unwrap().unwrap();
    let read = run_until_done(&queue, |done| device.read(0, 4, done)).unwrap().unwrap();
    assert!(read[..512].iter().all(|&b| b == 0));
    assert!(read[512..1536].iter().all(|&b| b == 0x5a));
    assert_eq!(&std::fs::read(&path).unwrap()[512..1536], &vec![0x5a; 1024][..]);

    let past_end = run_until_done(&queue, |done| device.read(3, 2, done)).unwrap().unwrap_err();
    assert_eq!(past_end.kind, IoErrorKind::OutOfRange { device_sectors: 4 });
}

#[test]
fn a_read_only_device_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, "ro.img", &[0u8; 2048]);
    let queue = CompletionQueue::new();
    let device = FileDevice::open(&path, OpenMode::ReadOnly, &queue).unwrap();
    let error = run_until_done(&queue, |done| device.write(0, vec![1; 512], WriteFlags::PLAIN, done)).unwrap().unwrap_err();
    assert_eq!(error.kind, IoErrorKind::ReadOnly);
    assert_eq!((error.sector, error.sectors), (0, 1), "the error names the refused sectors");
    assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn the_store_creates_commits_and_reloads_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, "cow.img", &vec![0u8; 128 * 4096]);
    let queue = CompletionQueue::new();
    let open = || Arc::new(FileDevice::open(&path, OpenMode::ReadWrite, &queue).unwrap());
    let loaded = load_blocking(&queue, open(), 512, config(8)).unwrap();
    assert_eq!(loaded.outcome, LoadOutcome::New);
    let store = loaded.store;
    let acked = Arc::new(Mutex::new(0));
    for old_chunk in [40, 41, 42, 7] {
        let new_chunk = store.prepare_exception().unwrap();
        let acked = Arc::clone(&acked);
        store.commit_exception(
            Record { old_chunk, new_chunk },
            true,
            Box::new(move |valid| {
                assert!(valid);
                *acked.lock() += 1;
            }),
        );
    }
    queue.run_until_idle();
    assert_eq!(*acked.lock(), 4);
    drop(store);

    let reloaded = load_blocking(&queue, open(), 512, config(8)).unwrap();
    assert_eq!(reloaded.outcome, LoadOutcome::Valid);
    assert_eq!(reloaded.exceptions.run_count(), 2, "40..=42 form one run");
    assert_eq!(reloaded.exceptions.lookup(41), Some(3));
    assert_eq!(reloaded.store.usage().to_string(), "48/1024 16");
}

#[test]
fn a_kernel_cow_loads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let v = vector("multi-area-4k");
    let path = file_of(&dir, "cow.img", &v.cow);
    let queue = CompletionQueue::new();
    let cow = Arc::new(FileDevice::open(&path, OpenMode::ReadOnly, &queue).unwrap());
    let loaded = load_blocking(&queue, cow, 512, config(8)).unwrap();
    assert_eq!(loaded.store.usage().to_string(), v.status_after);
}
