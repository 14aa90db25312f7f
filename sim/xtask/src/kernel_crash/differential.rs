//! The write-stream differential: a single-writer scripted workload run by
//! our engine over a device that records its writes as dm-log-writes would
//! have logged them, compared with the kernel's log of the same workload.
//!
//! The recorder ([`Recording`]) lays origin and COW side by side as the
//! guest's data disk does and logs as dm-log-writes does: a plain write
//! waits for the next flush, which logs every write completed before it was
//! submitted and then itself; a FUA write is logged when it completes; a
//! PREFLUSH write becomes an empty flush and then the write (dm core splits
//! it so above the log); a mark is logged at once.
//!
//! What is compared ([`compare`]):
//! - **metadata writes** (header and metadata areas), in order, byte for
//!   byte, with their flags (PREFLUSH read as "an empty flush just before");
//! - **data copies and origin writes** as multisets of (sector, bytes):
//!   their order between two flushes is the order writes complete in, which
//!   neither side promises;
//! - **the rules both must respect**, checked in each stream: the next area
//!   is zeroed before a full area is written; a chunk's copy is logged before
//!   the commit whose record points at it; an origin write is logged after
//!   the commit of its chunk's record;
//! - **the disks both leave**, the log replayed over the initial disk.
//!
//! Every divergence names its entry in both streams.

use std::collections::BTreeMap;
use std::sync::Mutex;

use engine::ChunkSize;
use engine::format::Layout;
use engine::io::{BlockDevice, CompletionQueue, DeviceIdentity, IoDone, MemDevice, WriteFlags, run_until_done};
use engine::store::{KernelPatches, StoreConfig};
use engine::sync::Arc;
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use serde::Serialize;
use sim::logwrites::{END_MARK, Entry, EntryFlags, Log};

use super::workload::{GuestOp, Label, Workload};

/// The log being written, and the plain writes completed since the last flush.
#[derive(Default)]
struct Recorder {
    entries: Vec<Entry>,
    unflushed: Vec<Entry>,
}

/// One device (origin or COW) of the recorded data disk, at `base`.
struct Recording {
    inner: MemDevice,
    base: u64,
    recorder: std::sync::Arc<Mutex<Recorder>>,
}

fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BlockDevice for Recording {
    fn size_sectors(&self) -> u64 {
        self.inner.size_sectors()
    }

    fn logical_block_bytes(&self) -> u32 {
        self.inner.logical_block_bytes()
    }

    fn identity(&self) -> DeviceIdentity {
        self.inner.identity()
    }

    fn read(&self, sector: u64, sectors: u32, done: IoDone<Vec<u8>>) {
        self.inner.read(sector, sectors, done);
    }

    fn write(&self, sector: u64, data: Vec<u8>, flags: WriteFlags, done: IoDone<()>) {
        let recorder = std::sync::Arc::clone(&self.recorder);
        // A PREFLUSH covers the writes completed before it was submitted.
        let covered = if flags.preflush { Some(std::mem::take(&mut lock(&recorder).unflushed)) } else { None };
        let entry = Entry::write(self.base + sector, data.clone(), if flags.fua { EntryFlags::FUA } else { 0 });
        self.inner.write(
            sector,
            data,
            flags,
            Box::new(move |result| {
                if result.is_ok() {
                    let mut log = lock(&recorder);
                    if let Some(covered) = covered {
                        log.entries.extend(covered);
                        log.entries.push(Entry::flush());
                    }
                    if flags.fua {
                        log.entries.push(entry);
                    } else {
                        log.unflushed.push(entry);
                    }
                }
                done(result);
            }),
        );
    }

    fn flush(&self, done: IoDone<()>) {
        let recorder = std::sync::Arc::clone(&self.recorder);
        let covered = std::mem::take(&mut lock(&recorder).unflushed);
        self.inner.flush(Box::new(move |result| {
            if result.is_ok() {
                let mut log = lock(&recorder);
                log.entries.extend(covered);
                log.entries.push(Entry::flush());
            }
            done(result);
        }));
    }
}

fn mark(recorder: &Mutex<Recorder>, text: &str) {
    lock(recorder).entries.push(Entry::mark(text));
}

type Live = (Arc<Origin<Recording>>, Arc<Snapshot<Recording>>);

fn create(
    queue: &Arc<CompletionQueue>,
    origin: &Arc<Recording>,
    cow: &Arc<Recording>,
    workload: &Workload,
    kernel_patches: KernelPatches,
) -> Result<Live, String> {
    let target = Origin::new(Arc::clone(origin), queue.clone(), OriginConfig { kernel_patches, ..OriginConfig::default() });
    let config = StoreConfig { kind: workload.store, chunk_sectors: Some(workload.chunk_sectors), ..StoreConfig::default() };
    let mut refused = None;
    let created = run_until_done(queue, |done| {
        if let Err(error) = target.create_snapshot(Arc::clone(cow), config, done) {
            refused = Some(error);
        }
    });
    match (refused, created) {
        (Some(error), _) => Err(format!("our engine refuses the snapshot: {error}")),
        (None, Some(Ok(snapshot))) => Ok((target, snapshot)),
        (None, Some(Err(error))) => Err(format!("our engine cannot load the snapshot: {error}")),
        (None, None) => Err("loading the snapshot never completed".into()),
    }
}

/// Writes sectors `sector..sector+sectors` as the guest's writes reach the
/// kernel in its logs: through the page cache, whose writeback at close
/// sends the whole blocks they touch (4 KiB pages, or single sectors on a
/// device that ends on an odd sector: [`Workload::block_sectors`]), read
/// first through the same device (busybox dd's oflag=direct does not take
/// effect in the guest).
fn page_write(
    queue: &Arc<CompletionQueue>,
    device: &impl BlockDevice,
    sector: u64,
    sectors: u64,
    blocks: std::ops::Range<u64>,
    labels: impl Fn(u64) -> Vec<u8>,
) -> Option<Result<(), engine::io::IoError>> {
    debug_assert!(blocks.end <= device.size_sectors(), "the blocks lie on the device");
    let (first, end) = (blocks.start, blocks.end);
    let mut data = match run_until_done(queue, |done| device.read(first, (end - first) as u32, done))? {
        Ok(data) => data,
        Err(error) => return Some(Err(error)),
    };
    for s in sector..sector + sectors {
        let at = ((s - first) * 512) as usize;
        data[at..at + 512].copy_from_slice(&labels(s));
    }
    run_until_done(queue, |done| device.write(first, data, WriteFlags::PLAIN, done))
}

/// Runs `workload` (no parallel batches) through our engine over the
/// recorder, as the guest's `record` job runs it through the kernel; the
/// engine writes headers as `kernel_patches` says (the stock kernel, or the
/// kernel with the kernel-patches/ series).
pub fn record_engine(workload: &Workload, initial: &[u8], kernel_patches: KernelPatches) -> Result<Log, String> {
    let origin_bytes = workload.origin_sectors as usize * 512;
    let queue = CompletionQueue::new();
    let recorder = std::sync::Arc::new(Mutex::new(Recorder::default()));
    let device = |bytes: &[u8], base: u64| {
        Arc::new(Recording { inner: MemDevice::from_bytes(bytes.to_vec(), &queue), base, recorder: std::sync::Arc::clone(&recorder) })
    };
    let origin = device(&initial[..origin_bytes], 0);
    let cow = device(&initial[origin_bytes..], workload.origin_sectors);
    mark(&recorder, "start");
    let (mut target, mut snapshot) = create(&queue, &origin, &cow, workload, kernel_patches)?;
    mark(&recorder, "created");
    for n in workload.numbered() {
        let result = match n.kind {
            GuestOp::Write { snapshot: to_snapshot, sector, sectors } => {
                let labels = |s: u64| Label { workload: workload.id, op: n.op, snapshot: to_snapshot, sector: s }.bytes();
                let blocks = workload.blocks(sector, sectors);
                if to_snapshot {
                    page_write(&queue, &SnapshotDevice::new(Arc::clone(&snapshot)), sector, sectors, blocks, labels)
                } else {
                    page_write(&queue, &OriginDevice::new(Arc::clone(&target)), sector, sectors, blocks, labels)
                }
            }
            GuestOp::Flush { snapshot: to_snapshot } => {
                if to_snapshot {
                    let device = SnapshotDevice::new(Arc::clone(&snapshot));
                    run_until_done(&queue, |done| device.flush(done))
                } else {
                    let device = OriginDevice::new(Arc::clone(&target));
                    run_until_done(&queue, |done| device.flush(done))
                }
            }
            GuestOp::Reload => {
                target.remove(&snapshot);
                (target, snapshot) = create(&queue, &origin, &cow, workload, kernel_patches)?;
                Some(Ok(()))
            }
            GuestOp::Merge => {
                // As the guest: both devices flushed, the targets removed,
                // the mark, then the snapshot handed to a merging target.
                for flushed in [
                    run_until_done(&queue, |done| OriginDevice::new(Arc::clone(&target)).flush(done)),
                    run_until_done(&queue, |done| SnapshotDevice::new(Arc::clone(&snapshot)).flush(done)),
                ] {
                    match flushed {
                        Some(Ok(())) => {}
                        Some(Err(error)) => return Err(format!("flushing before the merge failed in our engine: {error}")),
                        None => return Err("a flush before the merge never completed in our engine".into()),
                    }
                }
                mark(&recorder, "merging");
                let merging = target.hand_over(&snapshot, Role::Merge);
                match run_until_done(&queue, |done| merging.start_merge(done)) {
                    Some(MergeOutcome::Complete) => Some(Ok(())),
                    Some(outcome) => return Err(format!("our engine's merge ended {outcome:?}")),
                    None => return Err("our engine's merge never completed".into()),
                }
            }
            GuestOp::Parallel(_) => unreachable!("numbered() splits batches"),
        };
        match result {
            Some(Ok(())) => mark(&recorder, &format!("op{}", n.op)),
            // A write to a full PO snapshot fails; the guest marks it and goes on, so do we.
            Some(Err(_)) if matches!(n.kind, GuestOp::Write { snapshot: true, .. }) => mark(&recorder, &format!("fail{}", n.op)),
            Some(Err(error)) => return Err(format!("op {} failed in our engine: {error}", n.op)),
            None => return Err(format!("op {} never completed in our engine", n.op)),
        }
    }
    drop((target, snapshot));
    let mut log = lock(&recorder);
    // The target's destructor logs what was never flushed, then its end mark.
    let unflushed = std::mem::take(&mut log.unflushed);
    log.entries.extend(unflushed);
    log.entries.push(Entry::mark(END_MARK));
    Ok(Log { sector_bytes: 512, entries: std::mem::take(&mut log.entries) })
}

/// Where on the data disk a write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    Origin,
    Header,
    Area(u64),
    Data,
}

/// What the differential found for one workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Differential {
    pub workload: String,
    pub kernel_entries: usize,
    pub engine_entries: usize,
    pub metadata_writes: usize,
    /// Commits (area writes carrying records) of the kernel and ours.
    pub commits: (usize, usize),
    pub data_sectors: usize,
    pub origin_sectors: usize,
    pub divergences: Vec<String>,
}

/// A header, zeroing or commit write.
struct MetadataWrite {
    entry: usize,
    region: Region,
    flags: &'static str,
    data: Vec<u8>,
}

#[derive(Default)]
struct Metadata {
    /// Header writes and area zeroings, in order.
    plain: Vec<MetadataWrite>,
    /// Area writes carrying records.
    commits: Vec<MetadataWrite>,
    /// Each record the first time a commit carries it: (entry, old chunk, new chunk).
    records: Vec<(usize, u64, u64)>,
}

struct Stream<'a> {
    name: &'a str,
    log: &'a Log,
}

/// Compares the kernel's log with ours (see the module doc).
pub fn compare(workload: &Workload, initial: &[u8], kernel: &Log, engine: &Log) -> Differential {
    let chunk = u64::from(workload.chunk_sectors);
    let layout = Layout::new(ChunkSize::from_sectors(workload.chunk_sectors));
    let region = |sector: u64| {
        if sector < workload.origin_sectors {
            return Region::Origin;
        }
        let c = (sector - workload.origin_sectors) / chunk;
        if c == 0 {
            Region::Header
        } else if layout.is_metadata_chunk(c) {
            Region::Area((c - 1) / layout.stride())
        } else {
            Region::Data
        }
    };
    let streams = [Stream { name: "kernel", log: kernel }, Stream { name: "ours", log: engine }];
    let mut out = Differential {
        workload: workload.name.clone(),
        kernel_entries: kernel.entries.len(),
        engine_entries: engine.entries.len(),
        ..Differential::default()
    };
    // Metadata writes: the header's and the zeroing of areas in order,
    // byte for byte, with their flags; commits as the records they add, in
    // order (how many exceptions one commit carries follows the order
    // copies complete in, which neither side fixes).
    let flags = |preflush: bool, fua: bool| match (preflush, fua) {
        (true, true) => "PREFLUSH|FUA",
        (true, false) => "PREFLUSH",
        (false, true) => "FUA",
        (false, false) => "plain",
    };
    let metadata = |log: &Log| -> Metadata {
        let mut out = Metadata::default();
        let mut seen = std::collections::BTreeSet::new();
        for (i, e) in log.entries.iter().enumerate() {
            let Some(data) = e.data() else { continue };
            let preflush = i > 0 && log.entries[i - 1].flags.flush() && log.entries[i - 1].data().is_none();
            let write = MetadataWrite { entry: i, region: region(e.sector), flags: flags(preflush, e.flags.fua()), data: data.to_vec() };
            match write.region {
                Region::Header => out.plain.push(write),
                Region::Area(_) if !e.flags.fua() && !preflush && data.iter().all(|&b| b == 0) => out.plain.push(write),
                Region::Area(_) => {
                    for record in layout.decode_area(data).records {
                        if seen.insert((record.old_chunk, record.new_chunk)) {
                            out.records.push((i, record.old_chunk, record.new_chunk));
                        }
                    }
                    out.commits.push(write);
                }
                _ => {}
            }
        }
        out
    };
    let (theirs, ours) = (metadata(kernel), metadata(engine));
    out.metadata_writes = theirs.plain.len() + theirs.commits.len();
    out.commits = (theirs.commits.len(), ours.commits.len());
    for k in 0..theirs.plain.len().max(ours.plain.len()) {
        let describe = |w: &MetadataWrite| format!("entry {} ({:?}, {})", w.entry, w.region, w.flags);
        match (theirs.plain.get(k), ours.plain.get(k)) {
            (Some(t), Some(o)) if (t.region, t.flags, &t.data) == (o.region, o.flags, &o.data) => {}
            (Some(t), Some(o)) => out.divergences.push(format!("header or zeroing write {k}: kernel {} against our {}", describe(t), describe(o))),
            (Some(t), None) => out.divergences.push(format!("header or zeroing write {k}: kernel {} has no counterpart in ours", describe(t))),
            (None, Some(o)) => out.divergences.push(format!("header or zeroing write {k}: our {} has no counterpart in the kernel's", describe(o))),
            (None, None) => {}
        }
    }
    for (name, side) in [("kernel", &theirs), ("ours", &ours)] {
        for commit in side.commits.iter().filter(|c| c.flags != "PREFLUSH|FUA") {
            out.divergences
                .push(format!("{name}: entry {} writes {:?} with records as {}, not PREFLUSH|FUA", commit.entry, commit.region, commit.flags));
        }
    }
    for k in 0..theirs.records.len().max(ours.records.len()) {
        let (t, o) = (theirs.records.get(k), ours.records.get(k));
        if t.map(|r| (r.1, r.2)) != o.map(|r| (r.1, r.2)) {
            let show = |r: Option<&(usize, u64, u64)>| r.map_or("none".to_string(), |r| format!("{} -> {} (entry {})", r.1, r.2, r.0));
            out.divergences.push(format!("record {k} committed: kernel {}, ours {}", show(t), show(o)));
            break;
        }
    }
    // Data copies and origin writes: multisets of (sector, bytes), sector by sector.
    let sectors = |log: &Log, wanted: Region| -> BTreeMap<(u64, Vec<u8>), Vec<usize>> {
        let mut map: BTreeMap<(u64, Vec<u8>), Vec<usize>> = BTreeMap::new();
        for (i, e) in log.entries.iter().enumerate() {
            let Some(data) = e.data() else { continue };
            for (j, bytes) in data.chunks(512).enumerate() {
                let s = e.sector + j as u64;
                if region(s) == wanted {
                    map.entry((s, bytes.to_vec())).or_default().push(i);
                }
            }
        }
        map
    };
    for (wanted, what) in [(Region::Data, "COW data"), (Region::Origin, "origin")] {
        let (t, o) = (sectors(kernel, wanted), sectors(engine, wanted));
        let count: usize = t.values().map(Vec::len).sum();
        if wanted == Region::Data {
            out.data_sectors = count;
        } else {
            out.origin_sectors = count;
        }
        for key in t.keys().chain(o.keys()).collect::<std::collections::BTreeSet<_>>() {
            let (tk, ok) = (t.get(key).map_or(0, Vec::len), o.get(key).map_or(0, Vec::len));
            if tk != ok {
                let show = Label::parse(&key.1).map_or_else(|| "unlabelled bytes".to_string(), |l| format!("{l:?}"));
                out.divergences.push(format!(
                    "{what} sector {} holding {show}: written {tk} time(s) by the kernel (entries {:?}), {ok} by ours (entries {:?})",
                    key.0,
                    t.get(key).cloned().unwrap_or_default(),
                    o.get(key).cloned().unwrap_or_default()
                ));
            }
        }
    }
    for stream in &streams {
        out.divergences.extend(rules(workload, stream, &region, &layout).into_iter().map(|v| format!("{}: {v}", stream.name)));
    }
    // The disks both leave.
    let replay = |log: &Log| {
        let mut disk = initial.to_vec();
        for e in &log.entries {
            if let Some(data) = e.data() {
                let at = e.sector as usize * 512;
                if at + data.len() <= disk.len() {
                    disk[at..at + data.len()].copy_from_slice(data);
                }
            }
        }
        disk
    };
    let (t, o) = (replay(kernel), replay(engine));
    if let Some(s) = t.chunks(512).zip(o.chunks(512)).position(|(a, b)| a != b) {
        out.divergences.push(format!("the disks differ from sector {s} ({:?}) on", region(s as u64)));
    }
    out
}

/// The ordering rules one stream must respect.
fn rules(workload: &Workload, stream: &Stream<'_>, region: &dyn Fn(u64) -> Region, layout: &Layout) -> Vec<String> {
    let chunk = u64::from(workload.chunk_sectors);
    let per_area = layout.exceptions_per_area() as usize;
    let mut out = Vec::new();
    let entries = &stream.log.entries;
    // Commits: FUA area writes, with their records.
    let mut committed_old: BTreeMap<u64, usize> = BTreeMap::new();
    let mut committed_new: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let (Some(data), Region::Area(area)) = (e.data(), region(e.sector)) else { continue };
        let records = layout.decode_area(data);
        if e.flags.fua() {
            for r in &records.records {
                committed_old.entry(r.old_chunk).or_insert(i);
                committed_new.entry(r.new_chunk).or_insert(i);
            }
        }
        if records.records.len() == per_area {
            let next = layout.area_location(area + 1);
            let zeroed = entries[..i]
                .iter()
                .any(|z| z.data().is_some_and(|d| d.iter().all(|&b| b == 0)) && z.sector == workload.origin_sectors + next * chunk);
            let inside = (next + 1) * chunk <= workload.cow_sectors;
            if inside && !zeroed {
                out.push(format!("entry {i} writes area {area} full before area {} is zeroed", area + 1));
            }
        }
    }
    let data_chunk = |e: &Entry| (e.data().is_some() && region(e.sector) == Region::Data).then(|| (e.sector - workload.origin_sectors) / chunk);
    for (&c, &commit) in &committed_new {
        if !entries[..commit].iter().any(|e| data_chunk(e) == Some(c)) {
            out.push(format!("entry {commit} commits COW chunk {c} before any copy to it is logged"));
        }
    }
    for (i, e) in entries.iter().enumerate() {
        let Some(data) = e.data() else { continue };
        for (j, bytes) in data.chunks(512).enumerate() {
            let s = e.sector + j as u64;
            let changed = region(s) == Region::Origin && Label::parse(bytes).is_some_and(|l| l.op > 0);
            if let Some(&commit) = committed_old.get(&(s / chunk)).filter(|&&commit| changed && i < commit) {
                out.push(format!("entry {i} writes origin sector {s} before entry {commit} commits the copy of its chunk"));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! Our engine's stream compared with itself, then with copies of it
    //! that break one thing each: every break is a divergence.
    use super::*;
    use crate::kernel_crash::workload::{initial_image, scenario_workloads};

    fn basic_cow() -> (Workload, Vec<u8>, Log) {
        let workload = scenario_workloads().into_iter().find(|w| w.name == "basic-cow").expect("scenarios/basic-cow.toml translates");
        let initial = initial_image(&workload);
        let log = record_engine(&workload, &initial, KernelPatches::Stock).expect("our engine runs basic-cow");
        (workload, initial, log)
    }

    fn divergences(edit: impl Fn(&mut Vec<Entry>)) -> Vec<String> {
        let (workload, initial, ours) = basic_cow();
        let mut kernel = ours.clone();
        edit(&mut kernel.entries);
        compare(&workload, &initial, &kernel, &ours).divergences
    }

    fn commit_index(entries: &[Entry]) -> usize {
        entries.iter().position(|e| e.flags.fua()).expect("a commit")
    }

    #[test]
    fn a_stream_is_the_same_as_itself_and_logs_like_dm_log_writes() {
        let (workload, _, log) = basic_cow();
        assert_eq!(divergences(|_| {}), Vec::<String>::new());
        // Marks for start, creation, every operation and the end.
        assert_eq!(log.entries.iter().filter(|e| e.mark_text().is_some()).count(), 2 + workload.numbered().len() + 1);
        // Every commit is an empty flush then a FUA write, as dm core splits it.
        let commit = commit_index(&log.entries);
        assert!(log.entries[commit - 1].flags.flush() && log.entries[commit - 1].data().is_none());
    }

    #[test]
    fn our_engine_passes_the_kernel_judge_on_every_scenario_translation() {
        let config = crate::kernel_crash::judge::JudgeConfig { per_sector_states_max: 1 << 12, strict: false, samples: 0 };
        let mut judged = 0;
        for workload in scenario_workloads() {
            let initial = initial_image(&workload);
            let log = record_engine(&workload, &initial, KernelPatches::Stock).expect("our engine runs the workload");
            let judgement = crate::kernel_crash::judge::judge_log(&workload, &log, &initial, None, config);
            assert_eq!(judgement.findings, Vec::<String>::new(), "{}", workload.name);
            judged += judgement.states_judged;
        }
        assert!(judged > 1000, "{judged} states");
    }

    #[test]
    fn a_merge_that_clears_a_record_before_its_copy_is_durable_is_found() {
        let workload = scenario_workloads().into_iter().find(|w| w.name == "merge-crash").expect("merge-crash translates");
        let initial = initial_image(&workload);
        let mut log = record_engine(&workload, &initial, KernelPatches::Stock).expect("our engine merges");
        let config = crate::kernel_crash::judge::JudgeConfig { per_sector_states_max: 1 << 12, strict: false, samples: 0 };
        let clean = crate::kernel_crash::judge::judge_log(&workload, &log, &initial, None, config);
        assert_eq!(clean.findings, Vec::<String>::new());
        assert!(clean.classes > workload.numbered().len() + 3, "the merge adds crash points: {} classes", clean.classes);
        // Log the first merge commit (its flush and FUA write) before the
        // copies to the origin it covers: a record cleared first.
        let merging = log.entries.iter().position(|e| e.mark_text() == Some("merging")).expect("the merging mark");
        let commit = (merging..log.entries.len()).find(|&i| log.entries[i].flags.fua()).expect("a merge commit");
        let first_copy = (merging..commit)
            .find(|&i| log.entries[i].data().is_some_and(|_| log.entries[i].sector < workload.origin_sectors))
            .expect("a copy to the origin");
        let moved: Vec<Entry> = log.entries.drain(commit - 1..=commit).collect();
        for (k, entry) in moved.into_iter().enumerate() {
            log.entries.insert(first_copy + k, entry);
        }
        let broken = crate::kernel_crash::judge::judge_log(&workload, &log, &initial, None, config);
        assert!(broken.findings.iter().any(|f| f.contains("I10")), "{:?}", broken.findings);
    }

    #[test]
    fn a_commit_without_flags_diverges() {
        let found = divergences(|entries| {
            let commit = commit_index(entries);
            entries[commit].flags = EntryFlags(0);
        });
        assert!(found.iter().any(|d| d.contains("not PREFLUSH|FUA")), "{found:?}");
    }

    #[test]
    fn a_record_for_another_chunk_diverges() {
        let found = divergences(|entries| {
            let commit = commit_index(entries);
            let sector = entries[commit].sector;
            let mut data = entries[commit].data().expect("data").to_vec();
            data[0] ^= 1; // old_chunk of the first record
            entries[commit] = Entry::write(sector, data, EntryFlags::FUA);
        });
        assert!(found.iter().any(|d| d.starts_with("record 0 committed")), "{found:?}");
    }

    #[test]
    fn an_origin_write_logged_before_its_commit_breaks_a_rule() {
        let found = divergences(|entries| {
            let commit = commit_index(entries);
            let origin = entries.iter().position(|e| e.data().is_some() && e.sector < 64).expect("an origin write");
            let moved = entries.remove(origin);
            entries.insert(commit - 1, moved);
        });
        assert!(found.iter().any(|d| d.starts_with("kernel: ") && d.contains("before entry") && d.contains("commits the copy")), "{found:?}");
    }

    #[test]
    fn a_lost_copy_diverges() {
        let found = divergences(|entries| {
            let copy = entries.iter().position(|e| e.data().is_some() && e.sector >= 64 + 16).expect("a copy");
            entries.remove(copy);
        });
        assert!(found.iter().any(|d| d.starts_with("COW data sector")), "{found:?}");
        assert!(found.iter().any(|d| d.contains("before any copy")), "{found:?}");
    }
}
