//! The guest's side of a run: the `record` job's operations issued to our
//! engine as the guest issues them to the kernel, one step at a time so
//! that the search can put device completions between any two steps.
//!
//! A write goes through the guest's page cache, one per device: the pages
//! it touches are read through the target if the cache lacks them, the
//! labels laid over the cached pages, and the device closed. A close that
//! finds itself the only opener writes every dirty page back and waits for
//! it while still counted open (the kernel's `blkdev_put` syncs early, before
//! it takes the open mutex), then drops its count; the close that drops it
//! to none writes back what was dirtied meanwhile and drops the cache, with
//! the device's opens held off (its mutex). So a writer may open the device
//! while another's writeback runs: it finds the pages cached, and what it
//! lays over a page not yet written back goes out with that page. Dirty
//! pages go out in page order, each page taken as it is when its turn comes
//! (and made clean), as clones of at most one chunk mapped one after the
//! other as dm core maps them (a copy may complete between two clones). So
//! the writers of a batch share pages, and a page written back carries every
//! label laid over it by then. A failed writeback is not the
//! writer's failure (nothing reports it to `dd`); the next fsync of that
//! device reports it and issues no flush. A write whose page read fails
//! (an invalid snapshot) fails. The writes of a batch are writers of their
//! own, in any interleaving; the batch's marks follow when every writer is
//! done, in operation order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use engine::io::{BlockDevice, CompletionQueue, IoDone, WriteFlags};
use engine::store::{KernelPatches, StoreConfig};
use engine::sync::Arc;
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use sim::logwrites::Entry;

use super::held::{HeldDevice, SharedDisk, lock};
use crate::kernel_crash::workload::{GuestOp, Label, Workload};

/// One step of a writer.
#[derive(Debug, Clone)]
enum Step {
    Mark(String),
    Create,
    Remove,
    /// Open the device and read the pages a write touches that the cache lacks (then [`Step::Compose`]).
    Write {
        op: u64,
        snapshot: bool,
        sector: u64,
        sectors: u64,
    },
    /// Lay the labels over the cached pages (then [`Step::Close`]).
    Compose {
        op: u64,
        snapshot: bool,
        sector: u64,
        sectors: u64,
    },
    /// Close the device: a close that finds itself the only opener writes
    /// the dirty pages back first (then [`Step::Release`]).
    Close {
        op: u64,
        snapshot: bool,
    },
    /// Drop this writer's count of openers; the last writes back what was
    /// dirtied since and drops the cache (then [`Step::DropCache`]).
    Release {
        op: u64,
        snapshot: bool,
    },
    /// The last close's writeback done: the cache dropped, opens let in.
    DropCache {
        snapshot: bool,
    },
    Flush {
        op: u64,
        snapshot: bool,
    },
    /// The guest's fsync before a merge: a failed writeback it reports is
    /// noted, not the merge's failure.
    FlushBeforeMerge {
        op: u64,
        snapshot: bool,
    },
    StartMerge,
    /// Writers of their own, one per write; waits for all of them.
    Batch(Vec<(u64, bool, u64, u64)>),
    /// `opN`, or `failN` after a snapshot write our engine refused.
    Done(u64),
}

/// A writer: its steps, what it waits for, and the clones it still has to map.
struct Writer {
    steps: VecDeque<Step>,
    wait: Option<Wait>,
    clones: VecDeque<PageClone>,
    /// The page whose clones it is mapping (device, first sector), as it
    /// was when its turn came.
    taken: Option<((bool, u64), Vec<u8>)>,
}

/// A piece of a dirty page's writeback: at most one chunk.
#[derive(Debug, Clone, Copy)]
struct PageClone {
    snapshot: bool,
    /// The page it is part of.
    page: u64,
    sector: u64,
    sectors: u64,
    op: u64,
}

impl Writer {
    fn new(steps: VecDeque<Step>) -> Self {
        Self { steps, wait: None, clones: VecDeque::new(), taken: None }
    }

    /// The data of `clone` if its page has been taken.
    fn taken_data(&self, clone: &PageClone) -> Option<&[u8]> {
        let ((_, page), data) = self.taken.as_ref().filter(|(taken, _)| *taken == (clone.snapshot, clone.page))?;
        Some(&data[((clone.sector - page) * 512) as usize..][..(clone.sectors * 512) as usize])
    }
}

enum Wait {
    /// Set by a completion.
    Flag(std::sync::Arc<Mutex<bool>>),
    /// Writers that must have finished.
    Writers(Vec<usize>),
}

/// What the engine handed back: pages read, operations that failed, the
/// snapshot created, what went wrong outside the workload's terms.
#[derive(Default)]
struct Outcomes {
    /// Pages read for each operation, until composed.
    pages: BTreeMap<u64, Vec<u8>>,
    failed: BTreeMap<u64, bool>,
    created: Option<Arc<Snapshot<HeldDevice>>>,
    /// An operation our engine failed where the guest's did not fail, or a load that failed.
    error: Option<String>,
    /// Clones of each operation queued or in flight, and the flag set when none is.
    in_flight: BTreeMap<u64, (usize, std::sync::Arc<Mutex<bool>>)>,
    /// A writeback to the device (origin, snapshot) failed and no fsync has reported it yet.
    unreported: [bool; 2],
}

/// One device's page cache in the guest.
#[derive(Default)]
struct PageCache {
    pages: BTreeMap<u64, Vec<u8>>,
    dirty: std::collections::BTreeSet<u64>,
    openers: usize,
    /// The last close's writeback runs: opens wait (the open mutex).
    closing: bool,
}

impl Outcomes {
    /// One clone of `op` done or skipped: the writer's wait ends with the last.
    fn clone_done(&mut self, op: u64) {
        let (left, flag) = self.in_flight.get_mut(&op).expect("a clone of an operation in flight");
        *left -= 1;
        if *left == 0 {
            set(flag);
        }
    }
}

pub struct Driver {
    workload: Workload,
    kernel_patches: KernelPatches,
    queue: Arc<CompletionQueue>,
    disk: SharedDisk,
    origin_dev: Arc<HeldDevice>,
    cow_dev: Arc<HeldDevice>,
    target: Option<Arc<Origin<HeldDevice>>>,
    snapshot: Option<Arc<Snapshot<HeldDevice>>>,
    writers: Vec<Writer>,
    outcomes: std::sync::Arc<Mutex<Outcomes>>,
    /// The origin's and the snapshot's page caches.
    caches: [PageCache; 2],
    /// Every origin clone mapped, in the order mapped: its sector and data.
    mapped_origin: Vec<(u64, Vec<u8>)>,
    /// Every write laid over the cache, in the order laid.
    composed: Vec<PageWrite>,
    /// Every writeback begun: its device, the pages it takes in order, and
    /// the chunks the other device's writers may still write.
    writebacks: Vec<Writeback>,
}

/// A writeback as begun: the dirty pages it takes, in the order it takes them.
#[derive(Debug, Clone)]
pub struct Writeback {
    pub snapshot: bool,
    /// Each page's first sector and length in sectors.
    pub pages: Vec<(u64, u64)>,
    /// Sectors the other device's cache, clones or writers not yet laid may still write.
    pub elsewhere: Vec<std::ops::Range<u64>>,
}

/// A guest write as laid over a page cache: operation, device, sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageWrite {
    pub op: u64,
    pub snapshot: bool,
    pub sector: u64,
    pub sectors: u64,
}

fn flag() -> std::sync::Arc<Mutex<bool>> {
    std::sync::Arc::new(Mutex::new(false))
}

fn set(flag: &Mutex<bool>) {
    *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
}

fn is_set(flag: &Mutex<bool>) -> bool {
    *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The guest's steps for `workload` (see `record.sh`).
fn script(workload: &Workload) -> VecDeque<Step> {
    let mut steps = VecDeque::from([Step::Mark("start".into()), Step::Create, Step::Mark("created".into())]);
    let mut op = 0;
    for guest_op in &workload.ops {
        op += 1;
        match guest_op {
            GuestOp::Write { snapshot, sector, sectors } => {
                steps.extend([Step::Write { op, snapshot: *snapshot, sector: *sector, sectors: *sectors }, Step::Done(op)]);
            }
            GuestOp::Flush { snapshot } => steps.extend([Step::Flush { op, snapshot: *snapshot }, Step::Done(op)]),
            GuestOp::Reload => steps.extend([Step::Remove, Step::Create, Step::Done(op)]),
            GuestOp::Merge => steps.extend([
                Step::FlushBeforeMerge { op, snapshot: false },
                Step::FlushBeforeMerge { op, snapshot: true },
                Step::Mark("merging".into()),
                Step::StartMerge,
                Step::Done(op),
            ]),
            GuestOp::Parallel(writes) => {
                let first = op;
                let batch: Vec<(u64, bool, u64, u64)> =
                    writes.iter().enumerate().map(|(k, &(snapshot, sector, sectors))| (first + k as u64, snapshot, sector, sectors)).collect();
                op += writes.len() as u64 - 1;
                steps.push_back(Step::Batch(batch));
                steps.extend((first..=op).map(Step::Done));
            }
        }
    }
    steps
}

impl Driver {
    pub fn new(workload: &Workload, initial: &[u8], kernel_patches: KernelPatches, disk: SharedDisk) -> Self {
        let origin_sectors = workload.origin_sectors;
        {
            let mut held = lock(&disk);
            held.image = initial.to_vec();
            held.cow = (origin_sectors, u64::from(workload.chunk_sectors));
        }
        let device = |base: u64, sectors: u64, id: u64| Arc::new(HeldDevice { disk: std::sync::Arc::clone(&disk), base, sectors, id });
        Self {
            workload: workload.clone(),
            kernel_patches,
            queue: CompletionQueue::new(),
            origin_dev: device(0, origin_sectors, 1),
            cow_dev: device(origin_sectors, workload.cow_sectors, 2),
            disk,
            target: None,
            snapshot: None,
            writers: vec![Writer::new(script(workload))],
            outcomes: std::sync::Arc::default(),
            caches: Default::default(),
            mapped_origin: Vec::new(),
            composed: Vec::new(),
            writebacks: Vec::new(),
        }
    }

    fn outcomes(&self) -> std::sync::MutexGuard<'_, Outcomes> {
        self.outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What went wrong outside the workload's terms, if anything.
    pub fn error(&self) -> Option<String> {
        self.outcomes().error.clone()
    }

    /// Runs the engine's deferred work until none is left.
    pub fn settle(&self) -> usize {
        self.queue.run_until_idle()
    }

    /// Writers that can take a step now.
    pub fn ready(&self) -> Vec<usize> {
        (0..self.writers.len()).filter(|&w| self.is_ready(w)).collect()
    }

    fn is_ready(&self, w: usize) -> bool {
        let writer = &self.writers[w];
        if !writer.clones.is_empty() {
            return true;
        }
        let waiting = match &writer.wait {
            None => false,
            Some(Wait::Flag(flag)) => !is_set(flag),
            Some(Wait::Writers(ids)) => ids.iter().any(|&id| !self.finished(id)),
        };
        let held_off = matches!(writer.steps.front(), Some(Step::Write { snapshot, .. }) if self.caches[usize::from(*snapshot)].closing);
        !waiting && !held_off && !writer.steps.is_empty()
    }

    fn finished(&self, w: usize) -> bool {
        let writer = &self.writers[w];
        let waiting = match &writer.wait {
            None => false,
            Some(Wait::Flag(flag)) => !is_set(flag),
            Some(Wait::Writers(ids)) => ids.iter().any(|&id| !self.finished(id)),
        };
        writer.steps.is_empty() && writer.clones.is_empty() && !waiting
    }

    /// Every writer has finished.
    pub fn done(&self) -> bool {
        (0..self.writers.len()).all(|w| self.finished(w))
    }

    /// Every writeback begun so far, in the order begun.
    pub fn writebacks(&self) -> &[Writeback] {
        &self.writebacks
    }

    /// Sectors of the device (`snapshot`) its cache's dirty pages, its
    /// queued clones and its writers not yet laid over the cache may write.
    fn may_write(&self, snapshot: bool) -> Vec<std::ops::Range<u64>> {
        let cache = &self.caches[usize::from(snapshot)];
        let dirty = cache.dirty.iter().map(|p| *p..*p + (cache.pages[p].len() / 512) as u64);
        let clones = self.writers.iter().flat_map(|w| w.clones.iter()).filter(|c| c.snapshot == snapshot).map(|c| c.sector..c.sector + c.sectors);
        let pending = self.to_compose().into_iter().filter(|p| p.snapshot == snapshot).map(|p| self.workload.blocks(p.sector, p.sectors));
        dirty.chain(clones).chain(pending).collect()
    }

    /// Every write laid over a page cache so far, in the order laid.
    pub fn composed(&self) -> &[PageWrite] {
        &self.composed
    }

    /// The writes of writers that have not laid them over the cache yet.
    pub fn to_compose(&self) -> Vec<PageWrite> {
        let pending = |w: &Writer| match w.steps.front() {
            Some(&Step::Write { op, snapshot, sector, sectors } | &Step::Compose { op, snapshot, sector, sectors }) => {
                Some(PageWrite { op, snapshot, sector, sectors })
            }
            _ => None,
        };
        self.writers.iter().filter_map(pending).collect()
    }

    /// Every origin clone mapped so far, in the order mapped.
    pub fn mapped_origin_clones(&self) -> &[(u64, Vec<u8>)] {
        &self.mapped_origin
    }

    /// Origin clones of pages taken for writeback and not mapped yet, in
    /// the order they will be: their sectors and data are known before they
    /// are issued, so a writeback the kernel did not do is refused at once.
    /// (A page not taken yet may still change.)
    pub fn queued_origin_clones(&self) -> Vec<(u64, &[u8])> {
        let mut out = Vec::new();
        for w in &self.writers {
            out.extend(w.clones.iter().filter(|c| !c.snapshot).filter_map(|c| Some((c.sector, w.taken_data(c)?))));
        }
        out
    }

    /// The operation writer `w` works on next, if its next step names one.
    pub fn op_of(&self, w: usize) -> Option<u64> {
        let writer = &self.writers[w];
        if let Some(clone) = writer.clones.front() {
            return Some(clone.op);
        }
        match writer.steps.front()? {
            Step::Write { op, .. }
            | Step::Compose { op, .. }
            | Step::Close { op, .. }
            | Step::Release { op, .. }
            | Step::Flush { op, .. }
            | Step::FlushBeforeMerge { op, .. }
            | Step::Done(op) => Some(*op),
            _ => None,
        }
    }

    /// What writer `w` would do next, for a report.
    pub fn next_step(&self, w: usize) -> String {
        let writer = &self.writers[w];
        match writer.clones.front() {
            Some(PageClone { snapshot, sector, sectors, op, .. }) => {
                format!("op {op}: map a clone of {sectors} sectors at {} sector {sector}", if *snapshot { "snapshot" } else { "origin" })
            }
            None => format!("{:?}", writer.steps.front()),
        }
    }

    /// Writer `w` takes its next step.
    pub fn step(&mut self, w: usize) {
        debug_assert!(self.is_ready(w), "writer {w} stepped while it waits");
        if let Some(clone) = self.writers[w].clones.pop_front() {
            return self.map_clone(w, clone);
        }
        self.writers[w].wait = None;
        let step = self.writers[w].steps.pop_front().expect("a ready writer has a step");
        match step {
            Step::Mark(text) => lock(&self.disk).entries.push(Entry::mark(&text)),
            Step::Create => self.create(w),
            Step::Remove => {
                let snapshot = self.snapshot();
                self.snapshot = None;
                self.target.take().expect("a target to remove").remove(&snapshot);
            }
            Step::Write { op, snapshot, sector, sectors } => self.read_pages(w, op, snapshot, sector, sectors),
            Step::Compose { op, snapshot, sector, sectors } => self.compose(w, op, snapshot, sector, sectors),
            Step::Close { op, snapshot } => self.close(w, op, snapshot),
            Step::Release { op, snapshot } => self.release(w, op, snapshot),
            Step::DropCache { snapshot } => {
                let cache = &mut self.caches[usize::from(snapshot)];
                debug_assert!(cache.closing && cache.openers == 0 && cache.dirty.is_empty(), "the cache dropped with the device open or dirty");
                *cache = PageCache::default();
            }
            Step::Flush { op, snapshot } => self.flush(w, op, snapshot, true),
            Step::FlushBeforeMerge { op, snapshot } => self.flush(w, op, snapshot, false),
            Step::StartMerge => self.start_merge(w),
            Step::Batch(writes) => {
                let first = self.writers.len();
                for (op, snapshot, sector, sectors) in writes {
                    let steps = VecDeque::from([Step::Write { op, snapshot, sector, sectors }]);
                    self.writers.push(Writer::new(steps));
                }
                self.writers[w].wait = Some(Wait::Writers((first..self.writers.len()).collect()));
            }
            Step::Done(op) => {
                let failed = self.outcomes().failed.get(&op).copied();
                let text = match failed {
                    Some(true) => format!("fail{op}"),
                    _ => format!("op{op}"),
                };
                lock(&self.disk).entries.push(Entry::mark(&text));
            }
        }
    }

    fn wait_on(&mut self, w: usize) -> std::sync::Arc<Mutex<bool>> {
        let done = flag();
        self.writers[w].wait = Some(Wait::Flag(std::sync::Arc::clone(&done)));
        done
    }

    fn create(&mut self, w: usize) {
        let target = Origin::new(
            Arc::clone(&self.origin_dev),
            self.queue.clone(),
            OriginConfig { kernel_patches: self.kernel_patches, ..OriginConfig::default() },
        );
        let config = StoreConfig { kind: self.workload.store, chunk_sectors: Some(self.workload.chunk_sectors), ..StoreConfig::default() };
        let done = self.wait_on(w);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        let refused = target.create_snapshot(
            Arc::clone(&self.cow_dev),
            config,
            Box::new(move |result| {
                let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    Ok(snapshot) => outcomes.created = Some(snapshot),
                    Err(error) => outcomes.error = Some(format!("our engine cannot load the snapshot: {error}")),
                }
                set(&done);
            }),
        );
        if let Err(error) = refused {
            self.outcomes().error = Some(format!("our engine refuses the snapshot: {error}"));
        }
        // The snapshot is picked up when the next step needs it.
        self.target = Some(target);
    }

    /// The snapshot created last, once its creation has completed.
    fn snapshot(&mut self) -> Arc<Snapshot<HeldDevice>> {
        let created = self.outcomes().created.take();
        if let Some(created) = created {
            self.snapshot = Some(created);
        }
        self.snapshot.clone().expect("a step that needs the snapshot before it was created")
    }

    fn device(&mut self, snapshot: bool) -> Box<dyn BlockDevice> {
        if snapshot {
            Box::new(SnapshotDevice::new(self.snapshot()))
        } else {
            let _ = self.snapshot();
            Box::new(OriginDevice::new(Arc::clone(self.target.as_ref().expect("a target"))))
        }
    }

    fn read_pages(&mut self, w: usize, op: u64, snapshot: bool, sector: u64, sectors: u64) {
        let block = self.workload.block_sectors();
        let std::ops::Range { start: first, end } = self.workload.blocks(sector, sectors);
        self.caches[usize::from(snapshot)].openers += 1;
        self.writers[w].steps.push_front(Step::Compose { op, snapshot, sector, sectors });
        let cached = (first..end).step_by(block as usize).all(|p| self.caches[usize::from(snapshot)].pages.contains_key(&p));
        if cached {
            return;
        }
        let device = self.device(snapshot);
        let done = self.wait_on(w);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        device.read(
            first,
            (end - first) as u32,
            Box::new(move |result| {
                let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    Ok(data) => {
                        outcomes.pages.insert(op, data);
                    }
                    // An invalid snapshot fails the read, and the guest's write with it.
                    Err(_) => {
                        outcomes.failed.insert(op, true);
                    }
                }
                set(&done);
            }),
        );
    }

    /// Lays the labels of `op` over the cached pages (reading in what the cache lacked).
    fn compose(&mut self, w: usize, op: u64, snapshot: bool, sector: u64, sectors: u64) {
        let block = self.workload.block_sectors();
        let std::ops::Range { start: first, end } = self.workload.blocks(sector, sectors);
        self.writers[w].steps.push_front(Step::Close { op, snapshot });
        let read = self.outcomes().pages.remove(&op);
        let cache = &mut self.caches[usize::from(snapshot)];
        if let Some(data) = read {
            for (k, page) in (first..end).step_by(block as usize).enumerate() {
                let bytes = data[k * block as usize * 512..][..((end - page).min(block) * 512) as usize].to_vec();
                cache.pages.entry(page).or_insert(bytes);
            }
        }
        if !(first..end).step_by(block as usize).all(|p| cache.pages.contains_key(&p)) {
            return; // the read failed: the write fails, nothing is dirtied
        }
        for s in sector..(sector + sectors).min(end) {
            let page = s / block * block;
            let at = ((s - page) * 512) as usize;
            let label = Label { workload: self.workload.id, op, snapshot, sector: s }.bytes();
            cache.pages.get_mut(&page).expect("a cached page")[at..at + 512].copy_from_slice(&label);
            cache.dirty.insert(page);
        }
        self.composed.push(PageWrite { op, snapshot, sector, sectors });
    }

    /// Closes the device. A close that finds itself the only opener writes
    /// every dirty page back and waits for it, still counted open (then
    /// [`Step::Release`]); any other drops its count at once.
    fn close(&mut self, w: usize, op: u64, snapshot: bool) {
        let cache = &mut self.caches[usize::from(snapshot)];
        assert!(cache.openers > 0, "op {op} closes a device nobody opened");
        if cache.openers > 1 {
            cache.openers -= 1;
            return;
        }
        self.writers[w].steps.push_front(Step::Release { op, snapshot });
        self.write_back(w, op, snapshot);
    }

    /// Drops the count of a close that synced early. The last opener gone,
    /// what was dirtied since is written back with opens held off, and the
    /// cache dropped ([`Step::DropCache`]).
    fn release(&mut self, w: usize, op: u64, snapshot: bool) {
        let cache = &mut self.caches[usize::from(snapshot)];
        assert!(cache.openers > 0 && !cache.closing, "op {op} releases a device nobody holds");
        cache.openers -= 1;
        if cache.openers > 0 {
            return;
        }
        cache.closing = true;
        self.writers[w].steps.push_front(Step::DropCache { snapshot });
        self.write_back(w, op, snapshot);
    }

    /// Queues the writeback of the pages dirty now, as clones of at most
    /// one chunk, and makes writer `w` wait for them. Each page is taken as
    /// it is when its first clone is mapped.
    fn write_back(&mut self, w: usize, op: u64, snapshot: bool) {
        let chunk = u64::from(self.workload.chunk_sectors);
        let cache = &self.caches[usize::from(snapshot)];
        let mut clones = VecDeque::new();
        for &page in &cache.dirty {
            let end = page + (cache.pages[&page].len() / 512) as u64;
            let mut at = page;
            while at < end {
                let stop = ((at / chunk + 1) * chunk).min(end);
                clones.push_back(PageClone { snapshot, page, sector: at, sectors: stop - at, op });
                at = stop;
            }
        }
        if clones.is_empty() {
            return;
        }
        let pages = cache.dirty.iter().map(|p| (*p, (cache.pages[p].len() / 512) as u64)).collect();
        let elsewhere = self.may_write(!snapshot);
        self.writebacks.push(Writeback { snapshot, pages, elsewhere });
        let done = self.wait_on(w);
        self.outcomes().in_flight.insert(op, (clones.len(), done));
        debug_assert!(self.writers[w].clones.is_empty(), "a writeback queued over another");
        self.writers[w].clones = clones;
        // A page taken by an earlier writeback is not this one's.
        self.writers[w].taken = None;
    }

    /// Maps the next clone of writer `w`'s writeback; the first of a page
    /// takes the page as it is now and makes it clean, a page already made
    /// clean is skipped.
    fn map_clone(&mut self, w: usize, clone: PageClone) {
        let PageClone { snapshot, page, sector, op, .. } = clone;
        if self.writers[w].taken_data(&clone).is_none() {
            let cache = &mut self.caches[usize::from(snapshot)];
            if !cache.dirty.remove(&page) {
                self.writers[w].taken = None;
                return self.outcomes().clone_done(op);
            }
            self.writers[w].taken = Some(((snapshot, page), cache.pages[&page].clone()));
        }
        let data = self.writers[w].taken_data(&clone).expect("the page taken").to_vec();
        if !snapshot {
            self.mapped_origin.push((sector, data.clone()));
        }
        let device = self.device(snapshot);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        let done: IoDone<()> = Box::new(move |result| {
            let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(error) = result {
                // A full PO snapshot refuses a snapshot write; nothing tells the
                // writer, the device's next fsync reports it.
                if !snapshot {
                    outcomes.error.get_or_insert(format!("op {op}: an origin write failed in our engine: {error}"));
                }
                outcomes.unreported[usize::from(snapshot)] = true;
            }
            outcomes.clone_done(op);
        });
        device.write(sector, data, WriteFlags::PLAIN, done);
    }

    fn flush(&mut self, w: usize, op: u64, snapshot: bool, fails_op: bool) {
        let unreported = std::mem::take(&mut self.outcomes().unreported[usize::from(snapshot)]);
        if unreported {
            // fsync reports the failed writeback and issues no flush.
            if fails_op {
                self.outcomes().failed.insert(op, true);
            }
            return;
        }
        let device = self.device(snapshot);
        let done = self.wait_on(w);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        device.flush(Box::new(move |result| {
            if let Err(error) = result {
                let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                outcomes.error.get_or_insert(format!("op {op}: a flush failed in our engine: {error}"));
            }
            set(&done);
        }));
    }

    /// As the guest: the targets removed, a merging target on the COW.
    fn start_merge(&mut self, w: usize) {
        let snapshot = self.snapshot();
        let target = Arc::clone(self.target.as_ref().expect("a target"));
        let merging = target.hand_over(&snapshot, Role::Merge);
        self.snapshot = Some(Arc::clone(&merging));
        let done = self.wait_on(w);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        merging.start_merge(Box::new(move |outcome| {
            if outcome != MergeOutcome::Complete {
                let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                outcomes.error.get_or_insert(format!("our engine's merge ended {outcome:?}"));
            }
            set(&done);
        }));
    }

    /// Drops everything a run given up still holds: the engine's deferred
    /// work, the writers' clones, what the engine handed back.
    pub fn forget(&mut self) {
        while self.queue.run_one() {}
        self.writers.clear();
        *self.outcomes() = Outcomes::default();
    }

    /// Drops the targets at the end of the run, as the guest removes them.
    pub fn finish(&mut self) {
        self.snapshot = None;
        self.target = None;
        let _ = self.outcomes().created.take();
    }
}
