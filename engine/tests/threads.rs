//! The same engine under real threads over real files: several writer
//! threads hit the origin while reader threads read the snapshot and a
//! snapshot writer writes it. Whichever thread is waiting runs whatever
//! completion is queued (as softirqs would). At the end the snapshot still
//! reads as the origin did when it was taken, and every write landed.
#![allow(clippy::disallowed_methods)] // the test, not the engine, owns these threads

use engine::io::{BlockDevice, CompletionQueue, FileDevice, IoDone, OpenMode, WriteFlags};
use engine::store::StoreConfig;
use engine::sync::Arc;
use engine::targets::OriginConfig;
use engine::testing::{Rig, Slot};

const CHUNK_SECTORS: u64 = 8;
const CHUNKS: u64 = 256;

/// Submits with `start` and runs queued completions until this request's own has run.
fn wait<T: Send + 'static>(queue: &CompletionQueue, start: impl FnOnce(IoDone<T>)) -> T {
    let slot = Slot::new();
    start(slot.callback());
    loop {
        if let Some(result) = slot.take() {
            return result.expect("I/O failed");
        }
        if !queue.run_one() {
            std::thread::yield_now();
        }
    }
}

fn chunk_data(tag: &str) -> Vec<u8> {
    tag.as_bytes().iter().copied().cycle().take(CHUNK_SECTORS as usize * 512).collect()
}

#[test]
fn writers_readers_and_snapshot_writes_on_threads_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let initial: Vec<u8> = (0..CHUNKS).flat_map(|c| chunk_data(&format!("orig{c:04}."))).collect();
    std::fs::write(dir.path().join("origin"), &initial).unwrap();
    std::fs::write(dir.path().join("cow"), vec![0u8; (CHUNKS * 2 + 16) as usize * 4096]).unwrap();
    let queue = CompletionQueue::new();
    let open = |name: &str| Arc::new(FileDevice::open(&dir.path().join(name), OpenMode::ReadWrite, &queue).unwrap());
    let mut rig = Rig::new(&queue, open("origin"), OriginConfig { cow_threshold: 16, ..OriginConfig::default() });
    let config = StoreConfig { chunk_sectors: Some(CHUNK_SECTORS as u32), ..StoreConfig::default() };
    let k = rig.add_snapshot(open("cow"), config).expect("snapshot created");
    let (origin, snapshot) = (Arc::clone(&rig.origin), Arc::clone(&rig.snapshots[k]));
    let origin_device = Arc::new(rig.origin_device());
    let snapshot_device = Arc::new(rig.snapshot_device(k));

    std::thread::scope(|scope| {
        for writer in 0..4u64 {
            let (queue, device) = (Arc::clone(&queue), Arc::clone(&origin_device));
            scope.spawn(move || {
                // Chunks 0..192, each written by one writer, in a scattered order.
                for i in 0..48u64 {
                    let chunk = (i * 37 + writer * 11) % 48 * 4 + writer;
                    let data = chunk_data(&format!("new{chunk:04}."));
                    wait(&queue, |done| device.write(chunk * CHUNK_SECTORS, data, WriteFlags::PLAIN, done));
                }
            });
        }
        for reader in 0..2u64 {
            let (queue, device) = (Arc::clone(&queue), Arc::clone(&snapshot_device));
            scope.spawn(move || {
                for i in 0..96u64 {
                    let chunk = (i * 7 + reader) % 192;
                    let data = wait(&queue, |done| device.read(chunk * CHUNK_SECTORS, CHUNK_SECTORS as u32, done));
                    assert_eq!(data, chunk_data(&format!("orig{chunk:04}.")), "snapshot read of chunk {chunk} saw new data");
                }
            });
        }
        let (queue, device) = (Arc::clone(&queue), Arc::clone(&snapshot_device));
        scope.spawn(move || {
            for chunk in 200..232u64 {
                let data = chunk_data(&format!("snap{chunk:04}."));
                wait(&queue, |done| device.write(chunk * CHUNK_SECTORS, data, WriteFlags::PLAIN, done));
            }
        });
    });
    queue.run_until_idle();

    assert!(snapshot.is_valid());
    let (in_flight, max) = snapshot.copies_in_flight();
    assert_eq!(in_flight, 0);
    assert!(max <= 16 + 4, "copies in flight peaked at {max}");
    for chunk in 0..CHUNKS {
        let view = wait(&queue, |done| snapshot_device.read(chunk * CHUNK_SECTORS, CHUNK_SECTORS as u32, done));
        let expected = if (200..232).contains(&chunk) { format!("snap{chunk:04}.") } else { format!("orig{chunk:04}.") };
        assert_eq!(view, chunk_data(&expected), "snapshot chunk {chunk}");
        let now = wait(&queue, |done| origin.device().read(chunk * CHUNK_SECTORS, CHUNK_SECTORS as u32, done));
        let expected = if chunk < 192 { format!("new{chunk:04}.") } else { format!("orig{chunk:04}.") };
        assert_eq!(now, chunk_data(&expected), "origin chunk {chunk}");
    }
    assert_eq!(snapshot.exception_count(), 192 + 32);
}
