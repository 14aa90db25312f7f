//! The guest's side of a run: the `record` job's operations issued to our
//! engine as the guest issues them to the kernel, one step at a time so
//! that the search can put device completions between any two steps.
//!
//! A write goes through the page cache as in the guest: the pages it
//! touches are read through the target, the labels laid over them, and the
//! pages written back as clones of at most one chunk, mapped one after the
//! other as dm core maps them (a copy may complete between two clones).
//! The writes of a batch are writers of their own, in any interleaving; the
//! batch's marks follow when every writer is done, in operation order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use engine::io::{BlockDevice, CompletionQueue, IoDone, WriteFlags};
use engine::store::{KernelPatches, StoreConfig};
use engine::sync::Arc;
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};
use sim::logwrites::Entry;

use super::held::{HeldDevice, SharedDisk, lock};
use crate::kernel_crash::workload::{GuestOp, Label, PAGE_SECTORS, Workload};

/// One step of a writer.
#[derive(Debug, Clone)]
enum Step {
    Mark(String),
    Create,
    Remove,
    /// Read the pages a write touches (then [`Step::Compose`]).
    Write { op: u64, snapshot: bool, sector: u64, sectors: u64 },
    /// Lay the labels over the pages read and queue the clones.
    Compose { op: u64, snapshot: bool, sector: u64, sectors: u64 },
    Flush { op: u64, snapshot: bool },
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
    clones: VecDeque<(bool, u64, Vec<u8>, u64)>,
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
    pages: Option<Vec<u8>>,
    failed: BTreeMap<u64, bool>,
    created: Option<Arc<Snapshot<HeldDevice>>>,
    /// An operation our engine failed where the guest's did not fail, or a load that failed.
    error: Option<String>,
    /// Clones of each operation still in flight, and the flag set when none is.
    in_flight: BTreeMap<u64, (usize, std::sync::Arc<Mutex<bool>>)>,
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
                Step::Flush { op, snapshot: false },
                Step::Flush { op, snapshot: true },
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
            writers: vec![Writer { steps: script(workload), wait: None, clones: VecDeque::new() }],
            outcomes: std::sync::Arc::default(),
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
        !waiting && !writer.steps.is_empty()
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

    /// What writer `w` would do next, for a report.
    pub fn next_step(&self, w: usize) -> String {
        let writer = &self.writers[w];
        match writer.clones.front() {
            Some((snapshot, sector, data, op)) => {
                format!("op {op}: map a clone of {} sectors at {} sector {sector}", data.len() / 512, if *snapshot { "snapshot" } else { "origin" })
            }
            None => format!("{:?}", writer.steps.front()),
        }
    }

    /// Writer `w` takes its next step.
    pub fn step(&mut self, w: usize) {
        debug_assert!(self.is_ready(w), "writer {w} stepped while it waits");
        if let Some((snapshot, sector, data, op)) = self.writers[w].clones.pop_front() {
            return self.map_clone(snapshot, sector, data, op);
        }
        self.writers[w].wait = None;
        let step = self.writers[w].steps.pop_front().expect("a ready writer has a step");
        match step {
            Step::Mark(text) => lock(&self.disk).entries.push(Entry::mark(&text)),
            Step::Create => self.create(w),
            Step::Remove => {
                let (target, snapshot) = (self.target.take().expect("a target to remove"), self.snapshot.take().expect("a snapshot"));
                target.remove(&snapshot);
            }
            Step::Write { op, snapshot, sector, sectors } => self.read_pages(w, op, snapshot, sector, sectors),
            Step::Compose { op, snapshot, sector, sectors } => self.compose(w, op, snapshot, sector, sectors),
            Step::Flush { op, snapshot } => self.flush(w, op, snapshot),
            Step::StartMerge => self.start_merge(w),
            Step::Batch(writes) => {
                let first = self.writers.len();
                for (op, snapshot, sector, sectors) in writes {
                    let steps = VecDeque::from([Step::Write { op, snapshot, sector, sectors }]);
                    self.writers.push(Writer { steps, wait: None, clones: VecDeque::new() });
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
        let (first, end) = pages(sector, sectors, self.workload.origin_sectors);
        let device = self.device(snapshot);
        let done = self.wait_on(w);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        device.read(
            first,
            (end - first) as u32,
            Box::new(move |result| {
                let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    Ok(data) => outcomes.pages = Some(data),
                    Err(error) => outcomes.error = Some(format!("op {op}: reading its pages failed in our engine: {error}")),
                }
                set(&done);
            }),
        );
        self.writers[w].steps.push_front(Step::Compose { op, snapshot, sector, sectors });
    }

    fn compose(&mut self, w: usize, op: u64, snapshot: bool, sector: u64, sectors: u64) {
        let (first, _) = pages(sector, sectors, self.workload.origin_sectors);
        let Some(mut data) = self.outcomes().pages.take() else {
            return; // the read failed: the error is reported
        };
        for s in sector..sector + sectors {
            let at = ((s - first) * 512) as usize;
            data[at..at + 512].copy_from_slice(&Label { workload: self.workload.id, op, snapshot, sector: s }.bytes());
        }
        // dm core maps a bio as clones of at most one chunk, one after the other.
        let chunk = u64::from(self.workload.chunk_sectors);
        let mut at = first;
        let mut clones = VecDeque::new();
        while at < first + (data.len() / 512) as u64 {
            let end = ((at / chunk + 1) * chunk).min(first + (data.len() / 512) as u64);
            let bytes = data[((at - first) * 512) as usize..((end - first) * 512) as usize].to_vec();
            clones.push_back((snapshot, at, bytes, op));
            at = end;
        }
        // Once its clones are mapped, the writer waits for them all.
        let done = self.wait_on(w);
        self.outcomes().in_flight.insert(op, (clones.len(), done));
        self.writers[w].clones = clones;
    }

    fn map_clone(&mut self, snapshot: bool, sector: u64, data: Vec<u8>, op: u64) {
        let device = self.device(snapshot);
        let outcomes = std::sync::Arc::clone(&self.outcomes);
        let done: IoDone<()> = Box::new(move |result| {
            let mut outcomes = outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(error) = result {
                // A full PO snapshot refuses a snapshot write: the guest marks it failed.
                if !snapshot {
                    outcomes.error.get_or_insert(format!("op {op}: an origin write failed in our engine: {error}"));
                }
                outcomes.failed.insert(op, true);
            }
            let (left, flag) = outcomes.in_flight.get_mut(&op).expect("a clone of an operation in flight");
            *left -= 1;
            if *left == 0 {
                set(flag);
            }
        });
        device.write(sector, data, WriteFlags::PLAIN, done);
    }

    fn flush(&mut self, w: usize, op: u64, snapshot: bool) {
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

    /// Drops the targets at the end of the run, as the guest removes them.
    pub fn finish(&mut self) {
        self.snapshot = None;
        self.target = None;
        let _ = self.outcomes().created.take();
    }
}

/// The pages of the guest's page cache that sectors `sector..+sectors` touch, within a device of `device_sectors`.
fn pages(sector: u64, sectors: u64, device_sectors: u64) -> (u64, u64) {
    let first = sector / PAGE_SECTORS * PAGE_SECTORS;
    let end = ((sector + sectors).div_ceil(PAGE_SECTORS) * PAGE_SECTORS).min(device_sectors);
    (first, end)
}
