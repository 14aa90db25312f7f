//! The persistent store's ordering rules, checked request by request.
//!
//! A [`ScriptedDevice`] holds every request until the test completes it, so
//! each test can say exactly what must (and must not) have been submitted or
//! acknowledged at each point: callbacks only after the PREFLUSH|FUA area
//! write, the next area zeroed before a full one is written, commits arriving
//! during metadata I/O taken up afterwards in order, loads that do not care in
//! which order their reads complete.

mod support;

use engine::format::{Layout, Record};
use engine::io::{IoOp, WriteFlags};
use engine::store::{LoadOutcome, Loaded, MergeStep, PersistentStore, StoreError};
use engine::sync::{Arc, Mutex};
use engine::testing::{ScriptedDevice, Slot, Submitted};
use engine::{ChunkSize, SECTOR_BYTES};
use support::*;

type Store = Arc<PersistentStore<ScriptedDevice>>;

/// Loads `image` on a scripted device, completing requests with `drive`.
fn load_with(
    image: Vec<u8>,
    chunk_sectors: u32,
    drive: impl Fn(&ScriptedDevice),
) -> (Arc<ScriptedDevice>, Result<Loaded<ScriptedDevice>, StoreError>) {
    let device = Arc::new(ScriptedDevice::new(image));
    let slot = Slot::new();
    PersistentStore::load(Arc::clone(&device), 512, config(chunk_sectors), slot.callback()).unwrap();
    drive(&device);
    assert!(device.in_flight().is_empty(), "load left I/O in flight");
    let result = slot.take().expect("load reported");
    (device, result)
}

/// Loads `image`, completing requests oldest first; the load must succeed.
fn reload(image: Vec<u8>, chunk_sectors: u32) -> (Arc<ScriptedDevice>, Loaded<ScriptedDevice>) {
    let (device, loaded) = load_with(image, chunk_sectors, |d| {
        d.drain_oldest_first();
    });
    (device, loaded.unwrap_or_else(|e| panic!("reload failed: {e}")))
}

fn new_store(chunk_sectors: u32, chunks: u64) -> (Arc<ScriptedDevice>, Store) {
    let bytes = vec![0u8; chunks as usize * chunk_sectors as usize * SECTOR_BYTES];
    let (device, loaded) = load_with(bytes, chunk_sectors, |d| {
        d.drain_oldest_first();
    });
    let loaded = loaded.unwrap();
    assert_eq!(loaded.outcome, LoadOutcome::New);
    (device, loaded.store)
}

/// Records every callback's verdict, in the order they ran.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<(u64, bool)>>>);

impl Acks {
    fn callback(&self, tag: u64) -> engine::store::CommitCallback {
        let log = Arc::clone(&self.0);
        Box::new(move |valid| log.lock().push((tag, valid)))
    }
    fn get(&self) -> Vec<(u64, bool)> {
        self.0.lock().clone()
    }
}

fn commit(store: &Store, acks: &Acks, old_chunk: u64) -> u64 {
    let new_chunk = store.prepare_exception().unwrap();
    store.commit_exception(Record { old_chunk, new_chunk }, true, acks.callback(old_chunk));
    new_chunk
}

/// Commits each origin chunk in turn, completing all I/O after each.
fn commit_each(store: &Store, device: &ScriptedDevice, acks: &Acks, old_chunks: impl IntoIterator<Item = u64>) {
    for old in old_chunks {
        commit(store, acks, old);
        device.drain_oldest_first();
    }
}

fn writes_since(device: &ScriptedDevice, start: usize) -> Vec<Submitted> {
    device.log()[start..].iter().filter(|s| s.op == IoOp::Write).cloned().collect()
}

#[test]
fn a_new_snapshot_writes_its_header_then_zeroes_the_first_area() {
    let mut image = vec![0xabu8; 64 * 8 * SECTOR_BYTES];
    image[..4].fill(0); // zero magic: a new COW, with stale bytes everywhere else
    let device = Arc::new(ScriptedDevice::new(image));
    let slot = Slot::new();
    PersistentStore::load(Arc::clone(&device), 512, config(8), slot.callback()).unwrap();
    assert!(device.complete_oldest(), "header read");
    let log = device.log();
    assert_eq!((log[1].op, log[1].sector, log[1].flags), (IoOp::Write, 0, WriteFlags::PLAIN), "header write");
    assert_eq!(device.in_flight().len(), 1, "area 0 is zeroed only after the header write completes");
    assert!(device.complete_oldest());
    let log = device.log();
    assert_eq!((log[2].op, log[2].sector, log[2].sectors), (IoOp::Write, 8, 8), "area 0 zeroed");
    device.drain_oldest_first();
    let loaded = slot.take().unwrap().unwrap();
    assert_eq!(loaded.store.usage().to_string(), "16/512 16");
    let contents = device.contents();
    assert_eq!(&contents[..16], &[0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
    assert!(contents[16..8 * SECTOR_BYTES * 2].iter().all(|&b| b == 0), "header chunk and area 0 zeroed");
}

#[test]
fn callbacks_run_only_after_the_preflush_fua_area_write_completes() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    let start = device.log().len();
    let new_chunk = commit(&store, &acks, 7);
    assert_eq!(new_chunk, 2);
    let writes = writes_since(&device, start);
    assert_eq!(writes.len(), 1);
    assert_eq!((writes[0].sector, writes[0].sectors, writes[0].flags), (8, 8, WriteFlags::PREFLUSH_FUA));
    assert!(acks.get().is_empty(), "acknowledged before the record was durable");
    device.drain_oldest_first();
    assert_eq!(acks.get(), vec![(7, true)]);
    let area = &device.contents()[8 * SECTOR_BYTES..16 * SECTOR_BYTES];
    assert_eq!(Record::decode(area, 0), Record { old_chunk: 7, new_chunk: 2 });
}

#[test]
fn commits_are_batched_while_other_exceptions_are_pending() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    let start = device.log().len();
    let chunks: Vec<u64> = (0..3).map(|_| store.prepare_exception().unwrap()).collect();
    assert_eq!(chunks, vec![2, 3, 4]);
    assert_eq!(store.pending_count(), 3);
    for (i, &new_chunk) in chunks.iter().enumerate().take(2) {
        store.commit_exception(Record { old_chunk: 10 + i as u64, new_chunk }, true, acks.callback(i as u64));
    }
    assert!(writes_since(&device, start).is_empty(), "no area write while copies are still in flight");
    store.commit_exception(Record { old_chunk: 12, new_chunk: 4 }, true, acks.callback(2));
    assert_eq!(writes_since(&device, start).len(), 1, "one area write for the whole batch");
    device.drain_oldest_first();
    assert_eq!(acks.get(), vec![(0, true), (1, true), (2, true)]);
    assert_eq!(store.pending_count(), 0);
}

#[test]
fn commits_arriving_during_an_area_write_wait_for_it_in_order() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    let start = device.log().len();
    commit(&store, &acks, 100);
    commit(&store, &acks, 101);
    commit(&store, &acks, 102);
    assert_eq!(writes_since(&device, start).len(), 1, "later commits queue behind the area write in flight");
    assert!(device.complete_oldest());
    assert_eq!(acks.get(), vec![(100, true)]);
    let writes = writes_since(&device, start);
    assert_eq!(writes.len(), 2, "the queued commits go out together next");
    device.drain_oldest_first();
    assert_eq!(acks.get(), vec![(100, true), (101, true), (102, true)]);
    let area = &device.contents()[8 * SECTOR_BYTES..16 * SECTOR_BYTES];
    let records: Vec<u64> = (0..3).map(|i| Record::decode(area, i).old_chunk).collect();
    assert_eq!(records, vec![100, 101, 102]);
}

#[test]
fn a_full_area_is_written_only_after_the_next_area_is_zeroed() {
    // 512-byte chunks: 32 records per area; area 1 lives at chunk 34 and is
    // pre-dirtied with a stale record that must never be loaded.
    let chunks = 100u64;
    let mut image = Image::new(1, chunks).record(1, 0, 999, 50).bytes;
    image[..4].fill(0);
    let (device, loaded) = reload(image, 1);
    let store = loaded.store;
    let acks = Acks::default();
    commit_each(&store, &device, &acks, 0..31);
    let start = device.log().len();
    commit(&store, &acks, 31);
    let writes = writes_since(&device, start);
    assert_eq!(writes.len(), 1, "only the zeroing of the next area is in flight");
    assert_eq!((writes[0].sector, writes[0].flags), (34, WriteFlags::PLAIN));
    assert!(device.complete_oldest());
    let writes = writes_since(&device, start);
    assert_eq!(writes.len(), 2);
    assert_eq!((writes[1].sector, writes[1].flags), (1, WriteFlags::PREFLUSH_FUA), "then the full area, with PREFLUSH");
    device.drain_oldest_first();
    assert_eq!(acks.get().len(), 32);
    assert_eq!(store.position(), (1, 0));
    assert_eq!(store.usage().metadata_sectors, 3, "header + areas 0 and 1");

    let (_device, reloaded) = reload(device.contents(), 1);
    assert_eq!(reloaded.exceptions.len(), 32);
    assert_eq!(reloaded.exceptions.lookup(999), None, "stale record in area 1 loaded");
    assert_eq!(reloaded.store.position(), (1, 0));
    assert_eq!(reloaded.store.next_free(), store.next_free());
}

#[test]
fn a_failed_zeroing_of_the_next_area_invalidates_and_skips_the_area_write() {
    let (device, store) = new_store(1, 100);
    let acks = Acks::default();
    commit_each(&store, &device, &acks, 0..31);
    let start = device.log().len();
    commit(&store, &acks, 31);
    let zeroing = device.in_flight()[0];
    device.complete(zeroing, true);
    assert!(writes_since(&device, start).len() == 1, "no area write after the zeroing failed");
    assert_eq!(acks.get().last(), Some(&(31, false)));
    assert!(!store.is_valid());
}

#[test]
fn a_failed_area_write_invalidates_and_reports_it_to_every_callback_of_the_batch() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    let first = store.prepare_exception().unwrap();
    let second = store.prepare_exception().unwrap();
    store.commit_exception(Record { old_chunk: 1, new_chunk: first }, true, acks.callback(1));
    store.commit_exception(Record { old_chunk: 2, new_chunk: second }, true, acks.callback(2));
    let write = device.in_flight()[0];
    device.complete(write, true);
    assert_eq!(acks.get(), vec![(1, false), (2, false)]);
    assert!(!store.is_valid());
    // Nothing more is written once invalid.
    let start = device.log().len();
    commit(&store, &acks, 3);
    assert!(writes_since(&device, start).is_empty());
    assert_eq!(acks.get().last(), Some(&(3, false)));
}

#[test]
fn a_failed_copy_invalidates_the_store() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    let start = device.log().len();
    let new_chunk = store.prepare_exception().unwrap();
    store.commit_exception(Record { old_chunk: 4, new_chunk }, false, acks.callback(4));
    assert!(writes_since(&device, start).is_empty(), "an invalid store writes no area");
    assert_eq!(acks.get(), vec![(4, false)]);
}

#[test]
fn allocation_skips_metadata_and_stops_with_enospc() {
    // 512-byte chunks, 40 chunks: header 0, area 0 at 1, area 1 at 34.
    let (_device, store) = new_store(1, 40);
    let layout = Layout::new(ChunkSize::from_sectors(1));
    let mut allocated = Vec::new();
    loop {
        match store.prepare_exception() {
            Ok(chunk) => allocated.push(chunk),
            Err(error) => {
                assert_eq!(error, StoreError::NoSpace { device_sectors: 40, next_free: 40 });
                break;
            }
        }
    }
    let expected: Vec<u64> = (2..40).filter(|&c| !layout.is_metadata_chunk(c)).collect();
    assert_eq!(allocated, expected);
    assert!(!allocated.contains(&34));
    assert_eq!(store.usage().sectors_allocated, 40);
}

/// Loads a kernel COW with read completions delivered by `drive`.
fn load_vector_with(name: &str, drive: impl Fn(&ScriptedDevice)) -> Loaded<ScriptedDevice> {
    let v = vector(name);
    let (_device, loaded) = load_with(v.cow, v.chunk_sectors, drive);
    loaded.unwrap()
}

#[test]
fn loading_does_not_depend_on_the_order_reads_complete_in() {
    let in_order = load_vector_with("multi-area-4k", |d| {
        d.drain_oldest_first();
    });
    let reversed = load_vector_with("multi-area-4k", |d| {
        d.drain_newest_first();
    });
    let shuffled = load_vector_with("multi-area-4k", |d| {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        loop {
            let in_flight = d.in_flight();
            if in_flight.is_empty() {
                break;
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            d.complete(in_flight[(state % in_flight.len() as u64) as usize], false);
        }
    });
    for other in [&reversed, &shuffled] {
        assert_eq!(other.exceptions, in_order.exceptions);
        assert_eq!(other.store.usage(), in_order.store.usage());
        assert_eq!(other.store.position(), in_order.store.position());
    }
    assert_eq!(in_order.store.usage().to_string(), "5632/8192 32");
}

#[test]
fn loading_reads_ahead_but_no_further_than_the_window() {
    let v = vector("multi-area-4k");
    let device = Arc::new(ScriptedDevice::new(v.cow));
    let done = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&done);
    PersistentStore::load(Arc::clone(&device), 512, config(8), Box::new(move |r| *flag.lock() = r.is_ok())).unwrap();
    assert!(device.complete_oldest(), "header");
    // 8192 sectors = 1024 chunks: areas at 1, 258, 515, 772 all fit.
    assert_eq!(device.in_flight().len(), 4, "every area inside the device is read ahead");
    device.drain_newest_first();
    assert!(*done.lock());
}

#[test]
fn a_read_error_on_a_needed_area_fails_the_load_after_all_reads_finish() {
    let v = vector("multi-area-4k");
    let device = Arc::new(ScriptedDevice::new(v.cow));
    let slot = Slot::new();
    PersistentStore::load(Arc::clone(&device), 512, config(8), slot.callback()).unwrap();
    device.complete_oldest();
    let reads = device.in_flight();
    device.complete(reads[1], true); // area 1 fails
    assert!(slot.is_empty());
    device.drain_oldest_first();
    let error = slot.take().unwrap().unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error}");
    assert!(error.to_string().contains("reading metadata area 1"), "{error}");
}

#[test]
fn merge_walks_runs_newest_first_and_clears_them_durably() {
    // 512-byte chunks: 32 records per area. 40 exceptions: origin chunks
    // 100..=139, all consecutive, so runs break only at area boundaries.
    let (device, store) = new_store(1, 100);
    let acks = Acks::default();
    commit_each(&store, &device, &acks, 100..140);
    assert_eq!(store.position(), (1, 8));
    let mut runs = Vec::new();
    loop {
        match store.prepare_merge() {
            MergeStep::Done => break,
            MergeStep::NeedPreviousArea => {
                let result = Arc::new(Mutex::new(None));
                let filler = Arc::clone(&result);
                store.read_previous_area(Box::new(move |r| *filler.lock() = Some(r)));
                device.drain_oldest_first();
                result.lock().take().unwrap().unwrap();
            }
            MergeStep::Run(run) => {
                runs.push((run.last_old_chunk, run.last_new_chunk, run.count));
                // Merge half the run at a time, as a merge limited in chunks would.
                let count = run.count.div_ceil(2);
                let start = device.log().len();
                let result = Arc::new(Mutex::new(None));
                let filler = Arc::clone(&result);
                store.commit_merge(count, Box::new(move |r| *filler.lock() = Some(r)));
                let writes = writes_since(&device, start);
                assert_eq!(writes.len(), 1);
                assert_eq!(writes[0].flags, WriteFlags::PREFLUSH_FUA);
                device.drain_oldest_first();
                result.lock().take().unwrap().unwrap();
                // What is on disk now is exactly what is left to merge.
                let (_d, reloaded) = reload(device.contents(), 1);
                let (area, committed) = store.position();
                assert_eq!(reloaded.exceptions.len(), area * 32 + u64::from(committed));
                assert_eq!(reloaded.store.usage().sectors_allocated, store.usage().sectors_allocated);
            }
        }
    }
    // Area 1 holds chunks 132..=139 (COW 35..=42); area 0 holds 100..=131 (COW 2..=33).
    assert_eq!(
        runs,
        vec![
            (139, 42, 8),
            (135, 38, 4),
            (133, 36, 2),
            (132, 35, 1),
            (131, 33, 32),
            (115, 17, 16),
            (107, 9, 8),
            (103, 5, 4),
            (101, 3, 2),
            (100, 2, 1)
        ]
    );
    assert_eq!(store.usage().to_string(), "2/100 2");
}

#[test]
fn drop_snapshot_writes_an_invalid_header() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    commit(&store, &acks, 5);
    device.drain_oldest_first();
    store.drop_snapshot(None);
    let log = device.log();
    let last = log.last().unwrap();
    assert_eq!((last.op, last.sector, last.flags), (IoOp::Write, 0, WriteFlags::PLAIN));
    device.drain_oldest_first();
    assert!(!store.is_valid());
    let (_d, reloaded) = reload(device.contents(), 8);
    assert_eq!(reloaded.outcome, LoadOutcome::Invalid);
}

#[test]
fn records_survive_reload_and_commits_continue_after_it() {
    let (device, store) = new_store(1, 200);
    let acks = Acks::default();
    commit_each(&store, &device, &acks, [9, 3, 7, 1000, 4]);
    let (device, reloaded) = reload(device.contents(), 1);
    assert_eq!(reloaded.exceptions.len(), 5);
    assert_eq!(reloaded.store.next_free(), store.next_free());
    let store = reloaded.store;
    commit_each(&store, &device, &acks, 50..80);
    let (_device, again) = reload(device.contents(), 1);
    assert_eq!(again.exceptions.len(), 35);
    for old in [9, 3, 7, 1000, 4, 50, 79] {
        assert!(again.exceptions.lookup(old).is_some(), "origin chunk {old} lost across reloads");
    }
    assert_eq!(again.store.position(), (1, 3));
}

#[test]
fn table_status_names_the_store_type() {
    let (_device, store) = new_store(8, 64);
    assert_eq!(store.table_status(), "P 8");
}

/// The smallest COW the store takes: a header, area 0 and one data chunk.
/// One chunk fewer is refused as too small; with exactly three, the one
/// data chunk is chunk 2, and a fourth exception finds no room.
#[test]
fn a_cow_of_three_chunks_loads_and_holds_one_exception() {
    let (_, store) = new_store(8, 3);
    assert_eq!(store.prepare_exception().unwrap(), 2);
    assert!(matches!(store.prepare_exception(), Err(StoreError::NoSpace { .. })));
    let (_, too_small) = load_with(vec![0u8; 2 * 8 * SECTOR_BYTES], 8, |d| {
        d.drain_oldest_first();
    });
    assert!(too_small.is_err(), "a COW of two chunks has no room for data");
}

/// A valid COW with no record yet, loaded again: the allocator starts at
/// the first data chunk (chunk 2), past the header and area 0.
#[test]
fn an_empty_cow_reloaded_allocates_its_first_data_chunk() {
    let (device, _) = new_store(8, 16);
    let (_, loaded) = reload(device.contents(), 8);
    assert_eq!(loaded.outcome, LoadOutcome::Valid);
    assert_eq!(loaded.store.prepare_exception().unwrap(), 2);
}

/// Table names parse to their store kinds, whatever their case, and
/// nothing else does.
#[test]
fn store_kinds_parse_from_their_table_names() {
    use engine::store::StoreKind;
    for (name, kind) in
        [("P", StoreKind::Persistent), ("p", StoreKind::Persistent), ("PO", StoreKind::PersistentOverflow), ("Po", StoreKind::PersistentOverflow)]
    {
        assert_eq!(StoreKind::parse(name), Some(kind), "{name}");
        assert_eq!(StoreKind::parse(kind.table_name()), Some(kind));
    }
    for name in ["N", "", "POO", "O"] {
        assert_eq!(StoreKind::parse(name), None, "{name}");
    }
}

/// The allocator's position as the store reports it: the first data chunk
/// of a new COW, then one further per exception.
#[test]
fn next_free_reports_where_the_allocator_stands() {
    let (_, store) = new_store(8, 16);
    assert_eq!(store.next_free(), 2);
    assert_eq!(store.prepare_exception().unwrap(), 2);
    assert_eq!(store.next_free(), 3);
}

/// Power loss drops the callbacks of commits not yet durable without calling
/// them, and forgets queued commits: what they captured (a bio waiting for
/// its exception, here a counter) is released at once.
#[test]
fn power_off_drops_waiting_and_queued_callbacks_uncalled() {
    let (device, store) = new_store(8, 64);
    let acks = Acks::default();
    let held = Arc::new(());
    let in_area = store.prepare_exception().unwrap();
    let witness = Arc::clone(&held);
    store.commit_exception(Record { old_chunk: 1, new_chunk: in_area }, true, Box::new(move |_| drop(witness)));
    // The area write is in flight; a second commit queues behind it.
    assert_eq!(device.in_flight().len(), 1);
    let queued = store.prepare_exception().unwrap();
    let witness = Arc::clone(&held);
    store.commit_exception(Record { old_chunk: 2, new_chunk: queued }, true, Box::new(move |_| drop(witness)));
    assert_eq!(Arc::strong_count(&held), 3);
    store.power_off();
    assert_eq!(Arc::strong_count(&held), 1, "power_off kept a callback");
    assert!(acks.get().is_empty());
}

/// A COW with 4 KiB logical blocks (a 4Kn disk): without a table chunk size
/// the store takes the default 16 KiB chunk, reads its header as one whole
/// block, and loads again after a commit.
#[test]
fn a_cow_of_4k_logical_blocks_loads_with_whole_block_reads() {
    use engine::io::{CompletionQueue, MemDevice};
    use engine::store::{StoreConfig, load_blocking};
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::zeroed(2048, &queue).with_logical_block_bytes(4096));
    let loaded = load_blocking(&queue, Arc::clone(&cow), 512, StoreConfig::default()).unwrap();
    assert_eq!(loaded.outcome, LoadOutcome::New);
    assert_eq!(loaded.store.chunk_size(), ChunkSize::from_sectors(32));
    let new_chunk = loaded.store.prepare_exception().unwrap();
    let slot = Slot::new();
    loaded.store.commit_exception(Record { old_chunk: 9, new_chunk }, true, slot.callback());
    queue.run_until_idle();
    assert_eq!(slot.take(), Some(true));
    let again = Arc::new(MemDevice::from_bytes(cow.contents(), &queue).with_logical_block_bytes(4096));
    let loaded = load_blocking(&queue, again, 512, StoreConfig::default()).unwrap();
    assert_eq!(loaded.outcome, LoadOutcome::Valid);
    assert_eq!(loaded.exceptions.len(), 1);
}

/// A logical block larger than the default chunk (64 KiB blocks, as on a
/// 64 KiB-page machine) makes the default chunk one block.
#[test]
fn a_cow_of_64k_logical_blocks_gets_a_one_block_default_chunk() {
    use engine::io::{CompletionQueue, MemDevice};
    use engine::store::{StoreConfig, load_blocking};
    let queue = CompletionQueue::new();
    let cow = Arc::new(MemDevice::zeroed(128 * 8, &queue).with_logical_block_bytes(65536));
    let loaded = load_blocking(&queue, cow, 512, StoreConfig::default()).unwrap();
    assert_eq!(loaded.store.chunk_size(), ChunkSize::from_sectors(128));
}

/// A COW of exactly one header read is read (its header could say
/// anything) and then refused as too small, through the load's completion;
/// only a device shorter than one header read is refused before any I/O.
#[test]
fn a_cow_of_one_header_read_is_read_then_refused() {
    let slot = Slot::new();
    let device = Arc::new(ScriptedDevice::new(vec![0; SECTOR_BYTES]));
    PersistentStore::load(Arc::clone(&device), 512, config(8), slot.callback()).expect("a one-sector COW is read, not refused at once");
    assert_eq!(device.log().len(), 1, "the header read");
    device.drain_oldest_first();
    let Some(Err(error)) = slot.take() else { panic!("a one-sector COW loaded") };
    assert!(matches!(error, StoreError::CowTooSmall { device_sectors: 1, .. }), "{error}");
}
