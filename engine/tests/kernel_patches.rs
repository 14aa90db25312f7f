//! The two ways a store writes its headers ([`KernelPatches`]), checked
//! request by request on [`ScriptedDevice`]s.
//!
//! - Stock: the kernel's order and flags, which K1 and K3 come from.
//! - Applied (the kernel-patches/ series): a new snapshot zeroes area 0
//!   before writing its header with PREFLUSH; the invalidated header is
//!   written with FUA, and no origin write passes the snapshot before that
//!   write has completed — the write that overflowed the store, writes
//!   issued meanwhile, and writes a failed exception releases.

use std::collections::BTreeMap;

use engine::SECTOR_BYTES;
use engine::io::{BlockDevice, CompletionQueue, IoDone, IoOp, WriteFlags};
use engine::store::{KernelPatches, PersistentStore, StoreConfig, StoreKind};
use engine::sync::{Arc, Mutex};
use engine::targets::{Origin, OriginConfig, OriginDevice, Snapshot};
use engine::testing::{ScriptedDevice, Slot, Submitted};

const CHUNK: u32 = 8;
const PREFLUSH: WriteFlags = WriteFlags { preflush: true, fua: false };
const FUA: WriteFlags = WriteFlags { preflush: false, fua: true };

fn writes(device: &ScriptedDevice) -> Vec<Submitted> {
    device.log().into_iter().filter(|s| s.op == IoOp::Write).collect()
}

/// Creates a store on a zeroed COW of `chunks` chunks, completing requests oldest first.
fn new_store(kernel_patches: KernelPatches, chunks: u64) -> (Arc<ScriptedDevice>, Arc<PersistentStore<ScriptedDevice>>) {
    let device = Arc::new(ScriptedDevice::new(vec![0; (chunks * u64::from(CHUNK)) as usize * SECTOR_BYTES]));
    let slot = Slot::new();
    let config = StoreConfig { chunk_sectors: Some(CHUNK), ..StoreConfig::default() };
    PersistentStore::load_with_kernel_patches(Arc::clone(&device), 512, config, kernel_patches, slot.callback()).unwrap();
    device.drain_oldest_first();
    (device, slot.take().expect("the load reported").expect("a new store").store)
}

#[test]
fn applied_a_new_snapshot_zeroes_area_0_before_writing_its_header_with_preflush() {
    let mut image = vec![0xab; 64 * CHUNK as usize * SECTOR_BYTES];
    image[..4].fill(0);
    let device = Arc::new(ScriptedDevice::new(image));
    let config = StoreConfig { chunk_sectors: Some(CHUNK), ..StoreConfig::default() };
    let slot = Slot::new();
    PersistentStore::load_with_kernel_patches(Arc::clone(&device), 512, config, KernelPatches::Applied, slot.callback()).unwrap();
    // A COW whose magic is zero is new; the rest of it holds old bytes.
    device.complete(0, false);
    assert!(slot.is_empty());
    let zeroing = writes(&device);
    assert_eq!(zeroing.len(), 1, "one write at a time");
    assert_eq!((zeroing[0].sector, zeroing[0].sectors, zeroing[0].flags), (u64::from(CHUNK), u64::from(CHUNK), WriteFlags::PLAIN), "area 0 first");
    assert!(device.complete_oldest());
    let header = writes(&device);
    assert_eq!(header.len(), 2, "the header only once area 0 is zeroed");
    assert_eq!((header[1].sector, header[1].flags), (0, PREFLUSH), "the header with PREFLUSH: the zeroing is durable before it can be");
    assert!(device.complete_oldest());
    let loaded = slot.take().expect("the load reported").expect("a new store");
    assert_eq!(loaded.store.kernel_patches(), KernelPatches::Applied);
    assert!(device.contents()[CHUNK as usize * SECTOR_BYTES..2 * CHUNK as usize * SECTOR_BYTES].iter().all(|&b| b == 0), "area 0 zeroed");
}

#[test]
fn stock_a_new_snapshot_writes_its_header_then_zeroes_area_0_both_plain() {
    let (device, store) = new_store(KernelPatches::Stock, 64);
    let done: Vec<(u64, WriteFlags)> = writes(&device).iter().map(|w| (w.sector, w.flags)).collect();
    assert_eq!(done, vec![(0, WriteFlags::PLAIN), (u64::from(CHUNK), WriteFlags::PLAIN)]);
    assert_eq!(store.kernel_patches(), KernelPatches::Stock);
}

#[test]
fn applied_the_invalid_header_is_written_with_fua_and_holds_waiters_until_it_completes() {
    let (device, store) = new_store(KernelPatches::Applied, 64);
    let ran = Arc::new(Mutex::new(0));
    assert!(!store.hold_until_header_written(|| unreachable!("no header in flight")), "nothing held before the drop");
    let dropped = Slot::new();
    store.drop_snapshot(Some(dropped.callback()));
    let header = writes(&device).pop().unwrap();
    assert_eq!((header.sector, header.flags), (0, FUA));
    assert!(store.header_in_flight());
    let counter = Arc::clone(&ran);
    assert!(store.hold_until_header_written(|| Some(Box::new(move || *counter.lock() += 1))));
    assert_eq!(*ran.lock(), 0, "a waiter ran before the header was written");
    assert!(device.complete_oldest());
    assert_eq!(*ran.lock(), 1, "the waiter runs once the header is written");
    assert!(dropped.take().expect("the drop reported").is_ok());
    assert!(!store.header_in_flight() && !store.hold_until_header_written(|| unreachable!("the header is written")));
}

#[test]
fn applied_a_failed_invalid_header_write_still_lets_its_waiters_go() {
    let (device, store) = new_store(KernelPatches::Applied, 64);
    let ran = Arc::new(Mutex::new(false));
    store.drop_snapshot(None);
    let counter = Arc::clone(&ran);
    assert!(store.hold_until_header_written(|| Some(Box::new(move || *counter.lock() = true))));
    let header = writes(&device).pop().unwrap();
    device.complete(header.id, true);
    assert!(*ran.lock(), "the kernel warns and goes on: nothing waits forever");
    assert!(!store.header_in_flight() && !store.is_valid());
}

#[test]
fn stock_the_invalid_header_is_plain_and_holds_nothing() {
    let (device, store) = new_store(KernelPatches::Stock, 64);
    store.drop_snapshot(None);
    assert_eq!(writes(&device).pop().unwrap().flags, WriteFlags::PLAIN);
    assert!(!store.header_in_flight());
    assert!(!store.hold_until_header_written(|| unreachable!("stock holds nothing")));
}

/// An origin of 8 chunks and one `P` snapshot on a COW of `cow_chunks`.
struct Targets {
    queue: Arc<CompletionQueue>,
    origin_dev: Arc<ScriptedDevice>,
    cow: Arc<ScriptedDevice>,
    origin: Arc<Origin<ScriptedDevice>>,
    snapshot: Arc<Snapshot<ScriptedDevice>>,
    outcomes: Arc<Mutex<BTreeMap<u64, bool>>>,
}

impl Targets {
    fn new(kernel_patches: KernelPatches, cow_chunks: u64) -> Self {
        let queue = CompletionQueue::new();
        let origin_dev = Arc::new(ScriptedDevice::new(vec![0x11; 8 * CHUNK as usize * SECTOR_BYTES]));
        let cow = Arc::new(ScriptedDevice::new(vec![0; (cow_chunks * u64::from(CHUNK)) as usize * SECTOR_BYTES]));
        let origin = Origin::new(Arc::clone(&origin_dev), queue.clone(), OriginConfig { kernel_patches, ..OriginConfig::default() });
        let slot = Slot::new();
        let config = StoreConfig { kind: StoreKind::Persistent, chunk_sectors: Some(CHUNK), ..StoreConfig::default() };
        origin.create_snapshot(Arc::clone(&cow), config, slot.callback()).unwrap();
        settle(&queue, &[&cow, &origin_dev]);
        let snapshot = slot.take().expect("created").expect("loads");
        Targets { queue, origin_dev, cow, origin, snapshot, outcomes: Arc::default() }
    }

    /// Writes origin chunk `chunk`; its outcome is recorded under `chunk`.
    fn write_chunk(&self, chunk: u64) {
        let outcomes = Arc::clone(&self.outcomes);
        let done: IoDone<()> = Box::new(move |result| {
            assert!(outcomes.lock().insert(chunk, result.is_ok()).is_none(), "chunk {chunk}'s write completed twice");
        });
        let sector = chunk * u64::from(CHUNK);
        OriginDevice::new(Arc::clone(&self.origin)).write(sector, vec![0x22; 2 * SECTOR_BYTES], WriteFlags::PLAIN, done);
        self.queue.run_until_idle();
    }

    fn settle(&self) {
        settle(&self.queue, &[&self.cow, &self.origin_dev]);
    }

    /// The origin sectors written so far (copies only read the origin).
    fn origin_writes(&self) -> Vec<u64> {
        writes(&self.origin_dev).iter().map(|w| w.sector).collect()
    }

    /// The COW's write of the invalid header, if it is in flight.
    fn header_in_flight(&self) -> Option<Submitted> {
        let in_flight = self.cow.in_flight();
        writes(&self.cow).into_iter().rev().find(|w| w.sector == 0 && in_flight.contains(&w.id))
    }
}

/// Completes requests, oldest first on each device, until nothing is in flight.
fn settle(queue: &CompletionQueue, devices: &[&ScriptedDevice]) {
    loop {
        queue.run_until_idle();
        if !devices.iter().any(|device| device.complete_oldest()) {
            queue.run_until_idle();
            if devices.iter().all(|device| device.in_flight().is_empty()) {
                return;
            }
        }
    }
}

/// Fills the 3 data chunks of a 5-chunk COW, then overflows it with chunk 3.
fn overflow(kernel_patches: KernelPatches) -> Targets {
    let targets = Targets::new(kernel_patches, 5);
    for chunk in 0..3 {
        targets.write_chunk(chunk);
    }
    targets.settle();
    assert_eq!(targets.snapshot.exception_count(), 3);
    targets.write_chunk(3);
    assert!(!targets.snapshot.is_valid(), "a full P store invalidates");
    targets
}

#[test]
fn applied_the_write_that_overflows_a_p_store_waits_for_the_invalid_header() {
    let targets = overflow(KernelPatches::Applied);
    let header = targets.header_in_flight().expect("the invalid header is being written");
    assert_eq!(header.flags, FUA);
    targets.write_chunk(4);
    assert!(!targets.origin_writes().contains(&24) && !targets.origin_writes().contains(&32), "an origin write passed before the header");
    targets.cow.complete(header.id, false);
    targets.queue.run_until_idle();
    assert!(targets.origin_writes().contains(&24) && targets.origin_writes().contains(&32), "held writes retried");
    targets.settle();
    assert_eq!(targets.outcomes.lock().values().filter(|&&ok| ok).count(), 5, "every origin write succeeded");
}

#[test]
fn applied_a_failed_invalid_header_write_releases_the_held_origin_writes() {
    let targets = overflow(KernelPatches::Applied);
    let header = targets.header_in_flight().expect("the invalid header is being written");
    targets.cow.complete(header.id, true);
    targets.settle();
    assert!(targets.origin_writes().contains(&24), "a write held forever");
    assert_eq!(targets.outcomes.lock().get(&3), Some(&true));
}

#[test]
fn stock_the_write_that_overflows_a_p_store_goes_ahead_at_once() {
    let targets = overflow(KernelPatches::Stock);
    let header = targets.header_in_flight().expect("the invalid header is being written");
    assert_eq!(header.flags, WriteFlags::PLAIN);
    assert!(targets.origin_writes().contains(&24), "K1: the origin write is issued beside the plain header");
    targets.settle();
}

#[test]
fn applied_origin_writes_a_failed_copy_releases_wait_for_the_invalid_header() {
    let targets = Targets::new(KernelPatches::Applied, 16);
    targets.write_chunk(2);
    // The copy reads the origin, then writes the COW: that write fails.
    targets.origin_dev.complete_oldest();
    targets.queue.run_until_idle();
    let copy = writes(&targets.cow).pop().expect("the copy's COW write");
    assert_eq!(copy.sector, 2 * u64::from(CHUNK), "chunk 2 copied into the first data chunk");
    targets.cow.complete(copy.id, true);
    targets.queue.run_until_idle();
    assert!(!targets.snapshot.is_valid(), "a failed copy invalidates");
    let header = targets.header_in_flight().expect("the invalid header is being written");
    assert!(!targets.origin_writes().contains(&16), "the released write passed before the header");
    targets.cow.complete(header.id, false);
    targets.settle();
    assert_eq!(targets.origin_writes(), vec![16], "released once the header is written");
    assert_eq!(targets.outcomes.lock().get(&2), Some(&true));
}
