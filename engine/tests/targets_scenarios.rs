//! Target scenarios, each named for the behaviour it pins down.
//!
//! A [`Rig`] holds an origin and its snapshots on scripted devices, so a
//! scenario chooses the order completions arrive in and which ones fail;
//! `settle` delivers everything outstanding (oldest first unless told
//! otherwise) until the world is quiet.

mod support;

use std::collections::BTreeMap;

use engine::SECTOR_BYTES;
use engine::format::Record;
use engine::io::{BlockDevice, CompletionQueue, IoDone, IoOp, WriteFlags};
use engine::store::{LoadOutcome, StoreConfig, StoreKind};
use engine::sync::{Arc, Mutex};
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use engine::testing::{ScriptedDevice, Slot, Submitted};
use support::disk_records;

/// How `settle` picks the next completion.
#[derive(Clone, Copy)]
enum Order {
    Oldest,
    Newest,
    Shuffled(u64),
}

/// Decides, from the device index and the request, whether a request fails.
type FailWhen = Box<dyn Fn(usize, &Submitted) -> bool>;

struct Rig {
    queue: Arc<CompletionQueue>,
    origin_dev: Arc<ScriptedDevice>,
    origin: Arc<Origin<ScriptedDevice>>,
    cows: Vec<Arc<ScriptedDevice>>,
    snapshots: Vec<Arc<Snapshot<ScriptedDevice>>>,
    order: Order,
    /// Requests (device index, request id) to fail when they come up.
    fail: Vec<(usize, u64)>,
    /// Fails every request for which this says so (device index, request).
    fail_when: Option<FailWhen>,
    /// Outcomes of user I/O, by tag.
    outcomes: Arc<Mutex<BTreeMap<String, Result<(), String>>>>,
}

/// Origin sector `s` initially holds `O<s:08>.` repeated.
fn origin_image(sectors: u64) -> Vec<u8> {
    (0..sectors).flat_map(|s| format!("O{s:08}.").into_bytes().into_iter().cycle().take(SECTOR_BYTES)).collect()
}

fn pattern(tag: &str, sectors: u64) -> Vec<u8> {
    tag.as_bytes().iter().copied().cycle().take(sectors as usize * SECTOR_BYTES).collect()
}

impl Rig {
    fn new(origin_sectors: u64, threshold: usize) -> Self {
        let queue = CompletionQueue::new();
        let origin_dev = Arc::new(ScriptedDevice::new(origin_image(origin_sectors)));
        let origin = Origin::new(Arc::clone(&origin_dev), queue.clone(), OriginConfig { cow_threshold: threshold, ..OriginConfig::default() });
        Rig {
            queue,
            origin_dev,
            origin,
            cows: Vec::new(),
            snapshots: Vec::new(),
            order: Order::Oldest,
            fail: Vec::new(),
            fail_when: None,
            outcomes: Default::default(),
        }
    }

    fn devices(&self) -> Vec<Arc<ScriptedDevice>> {
        std::iter::once(Arc::clone(&self.origin_dev)).chain(self.cows.iter().cloned()).collect()
    }

    /// Delivers completions until nothing is in flight anywhere.
    fn settle(&mut self) {
        let mut state = match self.order {
            Order::Shuffled(seed) => seed | 1,
            _ => 1,
        };
        loop {
            self.queue.run_until_idle();
            let in_flight: Vec<(usize, u64)> =
                self.devices().iter().enumerate().flat_map(|(d, dev)| dev.in_flight().into_iter().map(move |id| (d, id))).collect();
            if in_flight.is_empty() {
                return;
            }
            let pick = match self.order {
                Order::Oldest => *in_flight.iter().min_by_key(|(d, id)| (*id, *d)).unwrap(),
                Order::Newest => *in_flight.iter().max_by_key(|(d, id)| (*id, *d)).unwrap(),
                Order::Shuffled(_) => {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    in_flight[(state % in_flight.len() as u64) as usize]
                }
            };
            let request = self.devices()[pick.0].log().into_iter().find(|r| r.id == pick.1).expect("logged");
            let fail = self.fail.contains(&pick) || self.fail_when.as_ref().is_some_and(|f| f(pick.0, &request));
            self.devices()[pick.0].complete(pick.1, fail);
            for snapshot in &self.snapshots {
                let (now, _) = snapshot.copies_in_flight();
                let threshold = self.origin.config().cow_threshold;
                assert!(threshold == 0 || now <= threshold, "throttle exceeded: {now} copies in flight > {threshold}");
            }
        }
    }

    fn add_snapshot(&mut self, cow_chunks: u64, chunk_sectors: u32, kind: StoreKind) -> usize {
        let cow = Arc::new(ScriptedDevice::new(vec![0; (cow_chunks * u64::from(chunk_sectors)) as usize * SECTOR_BYTES]));
        self.cows.push(Arc::clone(&cow));
        let slot = Slot::new();
        let config = StoreConfig { kind, chunk_sectors: Some(chunk_sectors), ..StoreConfig::default() };
        self.origin.create_snapshot(cow, config, slot.callback()).unwrap();
        self.settle();
        let snapshot = slot.take().expect("snapshot created").expect("snapshot loads");
        self.snapshots.push(snapshot);
        self.snapshots.len() - 1
    }

    fn recorder(&self, tag: &str) -> IoDone<()> {
        let outcomes = Arc::clone(&self.outcomes);
        let tag = tag.to_string();
        Box::new(move |result| {
            let previous = outcomes.lock().insert(tag.clone(), result.map_err(|e| e.to_string()));
            assert!(previous.is_none(), "{tag} completed twice");
        })
    }

    fn write_origin(&self, sector: u64, sectors: u64, tag: &str) {
        OriginDevice::new(Arc::clone(&self.origin)).write(sector, pattern(tag, sectors), WriteFlags::PLAIN, self.recorder(tag));
    }

    fn write_snapshot(&self, index: usize, sector: u64, sectors: u64, tag: &str) {
        SnapshotDevice::new(Arc::clone(&self.snapshots[index])).write(sector, pattern(tag, sectors), WriteFlags::PLAIN, self.recorder(tag));
    }

    fn read<D: BlockDevice>(&mut self, device: &D, sector: u64, sectors: u32) -> Result<Vec<u8>, String> {
        let slot = Slot::new();
        device.read(sector, sectors, slot.callback());
        self.settle();
        slot.take().expect("read completed").map_err(|e| e.to_string())
    }

    fn read_snapshot(&mut self, index: usize, sector: u64, sectors: u32) -> Result<Vec<u8>, String> {
        let device = SnapshotDevice::new(Arc::clone(&self.snapshots[index]));
        self.read(&device, sector, sectors)
    }

    fn read_origin(&mut self, sector: u64, sectors: u32) -> Vec<u8> {
        let device = Arc::clone(&self.origin_dev);
        self.read(device.as_ref(), sector, sectors).unwrap()
    }

    fn outcome(&self, tag: &str) -> Result<(), String> {
        self.outcomes.lock().get(tag).cloned().unwrap_or_else(|| panic!("{tag} never completed"))
    }
}

#[test]
fn origin_writes_do_not_affect_the_snapshot() {
    let mut rig = Rig::new(256, 0);
    rig.add_snapshot(64, 8, StoreKind::Persistent);
    rig.write_origin(10, 3, "new-a.");
    rig.write_origin(64, 16, "new-b.");
    rig.settle();
    assert_eq!(rig.read_snapshot(0, 0, 256).unwrap(), origin_image(256));
    assert_eq!(rig.read_origin(10, 3), pattern("new-a.", 3));
    assert_eq!(rig.outcome("new-a."), Ok(()));
    assert_eq!(rig.snapshots[0].exception_count(), 3, "chunks 1, 8 and 9");
    assert_eq!(rig.snapshots[0].run_count(), 2, "chunk 1 alone; chunks 8 and 9 consecutive on both devices");
}

#[test]
fn snapshot_writes_do_not_affect_the_origin() {
    let mut rig = Rig::new(256, 0);
    rig.add_snapshot(64, 8, StoreKind::Persistent);
    rig.write_snapshot(0, 5, 2, "snap-partial.");
    rig.write_snapshot(0, 32, 8, "snap-full.");
    rig.settle();
    assert_eq!(rig.read_origin(0, 256), origin_image(256));
    let view = rig.read_snapshot(0, 0, 256).unwrap();
    let mut expected = origin_image(256);
    expected[5 * 512..7 * 512].copy_from_slice(&pattern("snap-partial.", 2));
    expected[32 * 512..40 * 512].copy_from_slice(&pattern("snap-full.", 8));
    assert!(view == expected);
}

#[test]
fn sixteen_snapshots_with_mixed_chunk_sizes_each_keep_their_moment() {
    // Snapshot i is taken after round i of origin writes; each must read as
    // the origin did at that moment, whatever its chunk size.
    let sectors = 512u64;
    let mut rig = Rig::new(sectors, 0);
    rig.order = Order::Shuffled(7);
    let mut moments = Vec::new();
    let mut seed = 0x1234_5678u64;
    for round in 0..16 {
        let chunk_sectors = 1u32 << (round % 8);
        rig.add_snapshot(sectors / u64::from(chunk_sectors) * 2 + 8, chunk_sectors, StoreKind::Persistent);
        moments.push(rig.read_origin(0, sectors as u32));
        for write in 0..6 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let sector = (seed >> 33) % (sectors - 8);
            let length = 1 + (seed >> 20) % 8;
            rig.write_origin(sector, length, &format!("r{round}w{write}."));
        }
        rig.settle();
    }
    let sizes: Vec<u32> = rig.origin.snapshots().iter().map(|s| s.chunk_size().sectors()).collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "snapshots sorted largest chunk first: {sizes:?}");
    for (index, moment) in moments.iter().enumerate() {
        let view = rig.read_snapshot(index, 0, sectors as u32).unwrap();
        assert!(view == *moment, "snapshot {index} ({} sectors per chunk) lost its moment", rig.snapshots[index].chunk_size().sectors());
        assert!(rig.snapshots[index].is_valid());
    }
}

#[test]
fn copies_completing_in_reverse_order_still_commit_in_allocation_order() {
    let mut rig = Rig::new(512, 0);
    rig.add_snapshot(128, 8, StoreKind::Persistent);
    rig.order = Order::Newest;
    let chunks = [40u64, 3, 17, 60, 8, 33, 21, 50];
    for (i, chunk) in chunks.iter().enumerate() {
        rig.write_origin(chunk * 8, 8, &format!("w{i}."));
    }
    rig.settle();
    let records = disk_records(&rig.cows[0].contents(), 8);
    let expected: Vec<Record> = chunks.iter().enumerate().map(|(i, &old_chunk)| Record { old_chunk, new_chunk: 2 + i as u64 }).collect();
    assert_eq!(records, expected, "records must be in allocation order");
    for (i, _) in chunks.iter().enumerate() {
        assert_eq!(rig.outcome(&format!("w{i}.")), Ok(()));
    }
}

#[test]
fn a_cow_filling_up_under_p_invalidates_the_snapshot() {
    // 8 chunks: header, area 0, six data chunks.
    let mut rig = Rig::new(256, 0);
    rig.add_snapshot(8, 8, StoreKind::Persistent);
    for i in 0..10u64 {
        rig.write_origin(i * 8, 8, &format!("o{i}."));
        rig.settle();
    }
    for i in 0..10u64 {
        assert_eq!(rig.outcome(&format!("o{i}.")), Ok(()), "origin writes never fail for a snapshot's sake");
    }
    assert_eq!(rig.snapshots[0].status(), "Invalid");
    assert!(rig.read_snapshot(0, 0, 8).is_err());
    let (_q, reloaded) = support::load_image(rig.cows[0].contents(), support::config(8));
    assert_eq!(reloaded.unwrap().outcome, LoadOutcome::Invalid, "header valid=0 on disk");
}

#[test]
fn a_cow_filling_up_under_po_overflows_but_keeps_serving() {
    let mut rig = Rig::new(256, 0);
    rig.add_snapshot(8, 8, StoreKind::PersistentOverflow);
    for i in 0..8u64 {
        rig.write_snapshot(0, i * 8, 8, &format!("s{i}."));
        rig.settle();
    }
    for i in 0..6u64 {
        assert_eq!(rig.outcome(&format!("s{i}.")), Ok(()));
    }
    assert!(rig.outcome("s6.").unwrap_err().contains("overflowed"), "{:?}", rig.outcome("s6."));
    assert_eq!(rig.snapshots[0].status(), "Overflow");
    // Reads are still served: written chunks from the COW, others from the origin.
    assert_eq!(rig.read_snapshot(0, 0, 8).unwrap(), pattern("s0.", 8));
    assert_eq!(rig.read_snapshot(0, 6 * 8, 8).unwrap(), rig.read_origin(48, 8));
    // The header stays valid.
    let (_q, reloaded) = support::load_image(
        rig.cows[0].contents(),
        StoreConfig { kind: StoreKind::PersistentOverflow, chunk_sectors: Some(8), ..StoreConfig::default() },
    );
    let reloaded = reloaded.unwrap();
    assert_eq!(reloaded.outcome, LoadOutcome::Valid);
    assert_eq!(reloaded.exceptions.len(), 6);
}

#[test]
fn an_injected_copy_error_invalidates_the_snapshot_and_every_bio_completes() {
    let mut rig = Rig::new(256, 0);
    rig.add_snapshot(64, 8, StoreKind::Persistent);
    let before = rig.cows[0].log().len() as u64;
    rig.write_origin(0, 8, "o0.");
    rig.write_snapshot(0, 16, 4, "s2.");
    rig.write_origin(16, 8, "o2.");
    // Fail the first COW write (the copy of chunk 0) when it comes up.
    rig.fail.push((1, before));
    rig.settle();
    let outcomes = rig.outcomes.lock().clone();
    assert_eq!(outcomes.len(), 3, "every bio completed: {outcomes:?}");
    assert_eq!(outcomes["o0."], Ok(()), "the origin write still happens");
    assert_eq!(outcomes["o2."], Ok(()));
    assert!(outcomes["s2."].is_err(), "snapshot writes fail once invalid");
    assert_eq!(rig.snapshots[0].status(), "Invalid");
    assert_eq!(rig.read_origin(0, 8), pattern("o0.", 8));
    assert_eq!(rig.cows[0].log().iter().filter(|s| s.op == IoOp::Write && s.sector == 0).count(), 2, "header, then its invalidation");
}

#[test]
fn merge_with_concurrent_writes_ends_with_origin_equal_to_the_snapshot_view() {
    let mut rig = Rig::new(512, 0);
    rig.add_snapshot(64, 4, StoreKind::Persistent);
    rig.add_snapshot(200, 1, StoreKind::Persistent);
    for i in 0..24u64 {
        rig.write_origin((i * 37) % 500, 3, &format!("o{i}."));
    }
    rig.write_snapshot(0, 100, 8, "s-a.");
    rig.settle();
    let other_before = rig.read_snapshot(1, 0, 512).unwrap();
    let merging = rig.origin.hand_over(&rig.snapshots[0], Role::Merge);
    let merge_device = SnapshotDevice::new(Arc::clone(&merging));
    let mut expected = rig.read(&merge_device, 0, 512).unwrap();
    rig.order = Order::Shuffled(99);
    let outcome = Slot::new();
    merging.start_merge(outcome.callback());
    for i in 0..12u64 {
        let sector = (i * 41 + 3) % 500;
        let tag = format!("m{i}.");
        merge_device.write(sector, pattern(&tag, 4), WriteFlags::PLAIN, rig.recorder(&tag));
        expected[sector as usize * 512..(sector as usize + 4) * 512].copy_from_slice(&pattern(&tag, 4));
    }
    rig.settle();
    assert_eq!(outcome.take(), Some(MergeOutcome::Complete));
    assert_eq!(merging.exception_count(), 0);
    assert!(merging.runs_merged() > 0);
    for i in 0..12u64 {
        assert_eq!(rig.outcome(&format!("m{i}.")), Ok(()));
    }
    assert!(rig.read_origin(0, 512) == expected, "origin after the merge differs from the snapshot view plus the writes");
    let other_after = rig.read_snapshot(1, 0, 512).unwrap();
    let differing: Vec<usize> = (0..512).filter(|&s| other_after[s * 512..(s + 1) * 512] != other_before[s * 512..(s + 1) * 512]).collect();
    assert!(
        differing.is_empty(),
        "the other snapshot lost its view at sectors {differing:?}: now {:?}, was {:?}",
        differing.first().map(|&s| String::from_utf8_lossy(&other_after[s * 512..s * 512 + 12]).to_string()),
        differing.first().map(|&s| String::from_utf8_lossy(&other_before[s * 512..s * 512 + 12]).to_string())
    );
    assert!(disk_records(&rig.cows[0].contents(), 4).is_empty());
}

#[test]
fn the_throttle_is_never_exceeded_and_every_write_completes() {
    let mut rig = Rig::new(2048, 4);
    rig.add_snapshot(600, 1, StoreKind::Persistent);
    rig.add_snapshot(300, 4, StoreKind::Persistent);
    rig.order = Order::Shuffled(3);
    for i in 0..200u64 {
        rig.write_origin(i * 7 % 2000, 2, &format!("t{i}."));
    }
    assert!(rig.origin.throttled_writes() > 0, "writes beyond the threshold wait");
    rig.settle();
    for i in 0..200u64 {
        assert_eq!(rig.outcome(&format!("t{i}.")), Ok(()));
    }
    for snapshot in &rig.snapshots {
        let (now, max) = snapshot.copies_in_flight();
        assert_eq!(now, 0);
        assert!(max <= 4 && max > 1, "copies in flight peaked at {max}");
    }
    assert_eq!(rig.read_snapshot(0, 0, 2048).unwrap(), origin_image(2048));
}

#[test]
fn a_merge_whose_origin_flush_fails_stops_with_merge_failed() {
    let mut rig = Rig::new(256, 0);
    rig.add_snapshot(64, 8, StoreKind::Persistent);
    for i in 0..4u64 {
        rig.write_origin(i * 8, 8, &format!("o{i}."));
    }
    rig.settle();
    let merging = rig.origin.hand_over(&rig.snapshots[0], Role::Merge);
    rig.fail_when = Some(Box::new(|device, request| device == 0 && request.op == IoOp::Flush));
    let outcome = Slot::new();
    merging.start_merge(outcome.callback());
    rig.settle();
    let outcome = outcome.take();
    assert!(matches!(&outcome, Some(MergeOutcome::Failed(why)) if why.contains("flushing the origin")), "{outcome:?}");
    assert_eq!(merging.status(), "Merge failed");
    // The records were not cleared: the COW still protects every chunk.
    assert_eq!(disk_records(&rig.cows[0].contents(), 8).len(), 4);
}
