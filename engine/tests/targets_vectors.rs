//! The kernel's workloads replayed through the engine's targets: each
//! vector's writes are applied, through a live snapshot, to a copy of the
//! origin the kernel started from and an empty COW. The snapshot must read
//! as the kernel's snapshot did, the origin must end as the kernel's did,
//! the COW must hold the kernel's records, and the status line must match.

mod support;

use std::collections::BTreeSet;

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, CompletionQueue, MemDevice, WriteFlags, run_until_done};
use engine::sync::{Arc, Mutex};
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use engine::testing::Rig;
use support::*;

struct World {
    queue: Arc<CompletionQueue>,
    origin: Arc<Origin<MemDevice>>,
    cow: Arc<MemDevice>,
    snapshot: Arc<Snapshot<MemDevice>>,
}

fn create(origin_image: Vec<u8>, cow_sectors: u64, chunk_sectors: u32) -> World {
    let queue = CompletionQueue::new();
    let origin_dev = Arc::new(MemDevice::from_bytes(origin_image, &queue));
    let mut rig = Rig::new(&queue, origin_dev, OriginConfig::default());
    let k = rig.add_snapshot(Arc::new(MemDevice::zeroed(cow_sectors, &queue)), config(chunk_sectors)).expect("the snapshot loads");
    World { queue, origin: Arc::clone(&rig.origin), cow: Arc::clone(&rig.cows[k]), snapshot: Arc::clone(&rig.snapshots[k]) }
}

fn read_all<D: BlockDevice>(queue: &CompletionQueue, device: &D) -> Result<Vec<u8>, engine::IoError> {
    let sectors = device.size_sectors();
    let mut bytes = Vec::new();
    let mut sector = 0;
    while sector < sectors {
        let n = (sectors - sector).min(256) as u32;
        bytes.extend(run_until_done(queue, |done| device.read(sector, n, done)).unwrap()?);
        sector += u64::from(n);
    }
    Ok(bytes)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().min(b.len()) / SECTOR_BYTES).find(|&s| a[s * SECTOR_BYTES..(s + 1) * SECTOR_BYTES] != b[s * SECTOR_BYTES..(s + 1) * SECTOR_BYTES])
}

fn check_replay(name: &str) {
    let v = vector(name);
    let world = create(origin_before(name), (v.cow.len() / SECTOR_BYTES) as u64, v.chunk_sectors);
    let origin_device = OriginDevice::new(Arc::clone(&world.origin));
    let snapshot_device = SnapshotDevice::new(Arc::clone(&world.snapshot));
    let failures = Arc::new(Mutex::new(0usize));
    for write in vector_writes(name) {
        let failed = Arc::clone(&failures);
        let done: engine::io::IoDone<()> = Box::new(move |result| {
            if result.is_err() {
                *failed.lock() += 1;
            }
        });
        match write.device.as_str() {
            "origin" => origin_device.write(write.sector, write.data, WriteFlags::PLAIN, done),
            "snap" => snapshot_device.write(write.sector, write.data, WriteFlags::PLAIN, done),
            other => panic!("unknown device {other}"),
        }
        world.queue.run_until_idle();
    }
    assert_eq!(world.snapshot.status(), v.status_before_merge, "{name}: status after the workload");

    let origin_after = read_all(&world.queue, world.origin.device().as_ref()).unwrap();

    if v.status_before_merge == "Invalid" {
        assert!(*failures.lock() == 0, "{name}: origin writes must not fail when a snapshot overflows");
        assert!(read_all(&world.queue, &snapshot_device).is_err(), "{name}: reads of an invalid snapshot fail");
        assert_eq!(first_difference(&origin_after, &v.origin_after), None, "{name}: origin differs");
        // The header says invalid, as the kernel's does.
        let header = &world.cow.contents()[..16];
        assert_eq!(header, &v.cow[..16], "{name}: header");
        return;
    }
    assert_eq!(*failures.lock(), 0, "{name}: writes failed");
    let ours: BTreeSet<_> = disk_records(&world.cow.contents(), v.chunk_sectors).into_iter().map(|r| r.old_chunk).collect();

    if v.merge {
        let view = read_all(&world.queue, &snapshot_device).unwrap();
        assert_eq!(first_difference(&view, &v.snapshot), None, "{name}: snapshot view before the merge");
        let merging = world.origin.hand_over(&world.snapshot, Role::Merge);
        let outcome = run_until_done(&world.queue, |done| merging.start_merge(done)).unwrap();
        assert_eq!(outcome, MergeOutcome::Complete, "{name}");
        assert_eq!(merging.status(), v.status_after, "{name}: status after the merge");
        assert_eq!(merging.exception_count(), 0);
        assert!(disk_records(&world.cow.contents(), v.chunk_sectors).is_empty(), "{name}: records left after the merge");
        let merged = read_all(&world.queue, world.origin.device().as_ref()).unwrap();
        assert_eq!(first_difference(&merged, &v.origin_after), None, "{name}: merged origin differs from the kernel's");
        assert_eq!(first_difference(&merged, &v.snapshot), None, "{name}: merged origin differs from the snapshot");
        assert!(!ours.is_empty());
        return;
    }

    let view = read_all(&world.queue, &snapshot_device).unwrap();
    if let Some(sector) = first_difference(&view, &v.snapshot) {
        panic!(
            "{name}: snapshot view differs at sector {sector}: {:?} vs {:?}",
            String::from_utf8_lossy(&view[sector * 512..sector * 512 + 24]),
            String::from_utf8_lossy(&v.snapshot[sector * 512..sector * 512 + 24])
        );
    }
    if let Some(sector) = first_difference(&origin_after, &v.origin_after) {
        panic!("{name}: origin differs at sector {sector}");
    }
    let kernel: BTreeSet<_> = disk_records(&v.cow, v.chunk_sectors).into_iter().map(|r| r.old_chunk).collect();
    assert_eq!(ours, kernel, "{name}: the set of exceptions differs from the kernel's");
    // Applied one write at a time, the engine allocates exactly as the kernel did.
    assert!(
        disk_records(&world.cow.contents(), v.chunk_sectors) == disk_records(&v.cow, v.chunk_sectors),
        "{name}: records differ from the kernel's in order or COW chunk"
    );
    assert_eq!(world.snapshot.status(), v.status_after, "{name}: status line");
}

#[test]
fn replay_basic_4k() {
    check_replay("basic-4k");
}

#[test]
fn replay_multi_area_4k() {
    check_replay("multi-area-4k");
}

#[test]
fn replay_overflow_invalid() {
    check_replay("overflow-invalid");
}

#[test]
fn replay_merge_4k() {
    check_replay("merge-4k");
}
