//! The snapshot view written out (`snapsim view`), at the edges the golden
//! vectors do not reach: an origin that ends inside a chunk, and a snapshot
//! invalidated after it loaded; and target identities that never collide
//! with the identities of the devices under them.

use engine::io::{BlockDevice, CompletionQueue, DeviceIdentity, MemDevice};
use engine::store::{StoreConfig, load_blocking};
use engine::sync::Arc;
use engine::view::{ViewError, export};

/// A new COW of 8-sector chunks over an origin of `origin_sectors` sectors
/// (each sector filled with its number), loaded.
fn setup(origin_sectors: u64) -> (Arc<CompletionQueue>, MemDevice, engine::store::Loaded<MemDevice>) {
    let queue = CompletionQueue::new();
    let bytes: Vec<u8> = (0..origin_sectors).flat_map(|s| std::iter::repeat_n(s as u8, 512)).collect();
    let origin = MemDevice::from_bytes(bytes, &queue);
    let cow = Arc::new(MemDevice::zeroed(8 * 16, &queue));
    let config = StoreConfig { chunk_sectors: Some(8), ..StoreConfig::default() };
    let loaded = load_blocking(&queue, cow, 512, config).unwrap();
    (queue, origin, loaded)
}

#[test]
fn an_origin_ending_inside_a_chunk_is_written_to_its_last_sector() {
    let (queue, origin, loaded) = setup(20);
    let mut view = Vec::new();
    let stats = export(&queue, &origin, &loaded, &mut view).unwrap();
    assert_eq!(view.len(), 20 * 512, "the view is exactly the origin's size");
    assert_eq!(stats.chunks, 3);
    assert!(view.chunks(512).enumerate().all(|(s, sector)| sector.iter().all(|&b| b == s as u8)), "every sector is the origin's");
}

#[test]
fn a_snapshot_invalidated_after_its_load_is_not_written() {
    let (queue, origin, loaded) = setup(16);
    loaded.store.drop_snapshot(None);
    queue.run_until_idle();
    let mut view = Vec::new();
    assert!(matches!(export(&queue, &origin, &loaded, &mut view), Err(ViewError::Invalid)));
    assert!(view.is_empty(), "nothing written for an invalid snapshot");
}

#[test]
fn target_identities_never_equal_a_device_s() {
    let queue = CompletionQueue::new();
    let devices: Vec<DeviceIdentity> = (0..8).map(|_| MemDevice::zeroed(8, &queue).identity()).collect();
    for _ in 0..8 {
        let target = engine::targets::bio::next_target_identity();
        assert!(!devices.contains(&target), "target identity {target:?} is a memory device's");
        assert!(matches!(target, DeviceIdentity::Memory(n) if n >= 1 << 48), "{target:?} outside the targets' range");
    }
}
