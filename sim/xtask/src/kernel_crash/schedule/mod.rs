//! The schedule-following differential: our engine driven through a
//! workload in the kernel's own timing, its log compared with the kernel's
//! entry for entry.
//!
//! The order-free differential ([`super::differential`]) compares what
//! both wrote as multisets, because the order in which copies complete is
//! timing neither side fixes. Here the timing is taken from the kernel's
//! log instead. Our engine runs over devices that hold every write and
//! flush until the search completes it ([`held`]), driven by the guest's
//! operations one step at a time ([`driver`]). At every point the search
//! may complete any held request or let any writer take its next step;
//! after each move our log so far must equal the kernel's log so far:
//! marks, flushes, and every write byte for byte with its flags (header,
//! zeroing, commits and their batching, copies to the same COW chunks,
//! origin writes), plain writes in the order they completed. A
//! depth-first search with replay from the start finds a schedule under
//! which our engine writes exactly the kernel's log. Where the log cannot
//! pin a choice (plain writes logged together at a flush, completions with
//! no write of their own), the search tries each and counts the schedules
//! that match. Where none matches, it reports the furthest entry any
//! schedule reached: the kernel's entry there, and what ours logged
//! instead or why it could not go on.

mod driver;
mod held;

use serde::Serialize;
use sim::logwrites::{END_MARK, Entry, EntryKind, Log};

use super::workload::{Label, Workload};
use driver::Driver;
use engine::store::KernelPatches;
use held::{Disk, SharedDisk, lock};

/// How hard the search tries.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Runs from the start (one per backtrack) before the search gives up.
    pub replays: usize,
    /// Schedules counted after the first that matches (0: stop at the first).
    pub more_matches: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self { replays: 4_000, more_matches: 15 }
    }
}

/// What the search found for one workload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Following {
    pub workload: String,
    pub kernel_entries: usize,
    /// Schedules found under which our engine writes exactly the kernel's log.
    pub matching_schedules: usize,
    /// Whether every schedule was tried (else the count is a lower bound).
    pub exhausted: bool,
    pub replays: usize,
    /// Moves of the first matching schedule (completions and writer steps).
    pub moves: usize,
    /// Where no schedule matched: the furthest kernel entry reached, and why.
    pub divergence: Option<String>,
}

/// The differential's verdict on one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// A schedule of ours writes exactly the kernel's log.
    Follows,
    /// Every schedule was tried and none does: our engine cannot write this log.
    Diverges,
    /// The search ran out of budget before finding one: no verdict.
    Undecided,
}

impl Following {
    pub fn verdict(&self) -> Verdict {
        match (self.matching_schedules > 0, self.exhausted) {
            (true, _) => Verdict::Follows,
            (false, true) => Verdict::Diverges,
            (false, false) => Verdict::Undecided,
        }
    }
}

/// One move: complete a held request, or let a writer take a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// The device completes a held request: the log shows it.
    Complete(u64),
    /// The engine sees a completed request's completion.
    Deliver(u64),
    Step(usize),
}

/// What the kernel's log says of its commits, to refuse a schedule as soon
/// as it strays: its FUA writes in order, and for each COW chunk the
/// commit whose records first name it.
struct Commits {
    fua: Vec<Entry>,
    /// For each FUA write: whether it is a commit that filled its area (the
    /// store commits then even with exceptions in flight).
    full: Vec<bool>,
    /// COW chunk -> index (among `fua`) of the first commit recording it.
    batch: std::collections::BTreeMap<u64, usize>,
    /// COW chunk -> the first write the kernel logged to it (its sector and
    /// data): a copy's data names the origin chunk allocated there.
    first: std::collections::BTreeMap<u64, (u64, Vec<u8>)>,
    /// Sector -> the data of every write the kernel logged starting there, in log order.
    by_sector: std::collections::BTreeMap<u64, Vec<Vec<u8>>>,
    /// Operation -> the first entry whose data carries one of its labels:
    /// writers whose labels the kernel logged first are stepped first.
    first_label: std::collections::BTreeMap<u64, usize>,
}

impl Commits {
    fn of(workload: &Workload, kernel: &[Entry]) -> Self {
        let chunk = u64::from(workload.chunk_sectors);
        let layout = engine::format::Layout::new(engine::ChunkSize::from_sectors(workload.chunk_sectors));
        let mut out = Commits {
            fua: Vec::new(),
            full: Vec::new(),
            batch: std::collections::BTreeMap::new(),
            first: std::collections::BTreeMap::new(),
            by_sector: std::collections::BTreeMap::new(),
            first_label: std::collections::BTreeMap::new(),
        };
        for (i, e) in kernel.iter().enumerate() {
            if let Some(data) = e.data() {
                out.by_sector.entry(e.sector).or_default().push(data.to_vec());
                for label in data.chunks(512).filter_map(Label::parse).filter(|l| l.workload == workload.id && l.op > 0) {
                    out.first_label.entry(label.op).or_insert(i);
                }
            }
            if let (Some(data), Some(s)) = (e.data(), e.sector.checked_sub(workload.origin_sectors)) {
                out.first.entry(s / chunk).or_insert_with(|| (e.sector, data.to_vec()));
            }
        }
        for e in kernel.iter().filter(|e| e.flags.fua() && e.data().is_some()) {
            let index = out.fua.len();
            out.fua.push(e.clone());
            let c = e.sector.checked_sub(workload.origin_sectors).map(|s| s / chunk);
            let is_area = c.is_some_and(|c| c > 0 && layout.is_metadata_chunk(c));
            let records = if is_area { layout.decode_area(e.data().unwrap_or_default()).records } else { Vec::new() };
            out.full.push(records.len() as u64 == u64::from(layout.exceptions_per_area()));
            for r in records {
                out.batch.entry(r.new_chunk).or_insert(index);
            }
        }
        out
    }

    /// Why allocating COW chunk `chunk` after `submitted` FUA writes of
    /// ours cannot be the kernel's order, if it cannot: a commit before the
    /// one recording it, not forced by a full area, closed its batch only
    /// after this allocation, so the chunk would have joined it.
    fn early(&self, chunk: u64, submitted: usize) -> Option<String> {
        let batch = *self.batch.get(&chunk)?;
        let open = (0..batch).rev().find(|&j| !self.full[j])?;
        (submitted <= open).then(|| {
            format!("COW chunk {chunk} allocated before the kernel's commit {open} (FUA write {open}) closed its batch; the kernel records it in commit {batch}")
        })
    }
}

/// One run of our engine under construction.
struct Run<'a> {
    kernel: &'a [Entry],
    commits: &'a Commits,
    /// FUA writes and first COW writes already checked.
    checked_fua: usize,
    checked_first: usize,
    checked_submitted: usize,
    origin_sectors: u64,
    chunk_sectors: u64,
    disk: SharedDisk,
    driver: Driver,
    /// Entries of our log already checked against the kernel's.
    checked: usize,
}

/// Entries compared as dm-log-writes' flags say them: flush, FUA, mark, the data.
fn same_entry(a: &Entry, b: &Entry) -> bool {
    let kind = |e: &Entry| match &e.kind {
        EntryKind::Write { .. } => 0,
        EntryKind::Flush => 1,
        EntryKind::Mark(_) => 2,
        EntryKind::Discard => 3,
    };
    // An empty flush is a flush whatever else its flags say (dm core keeps a FUA bit on it).
    kind(a) == kind(b)
        && (kind(a) != 0 || a.flags.fua() == b.flags.fua())
        && a.mark_text() == b.mark_text()
        && (a.data().is_none() || (a.sector == b.sector && a.data() == b.data()))
}

/// The plain writes the kernel logged at the first flush (or the end) at or after `from`.
fn plain_block(kernel: &[Entry], from: usize) -> &[Entry] {
    let flush = (from..kernel.len()).find(|&i| matches!(kernel[i].kind, EntryKind::Flush) || kernel[i].mark_text() == Some(END_MARK));
    let Some(flush) = flush else { return &[] };
    let start = (from..flush).rev().take_while(|&i| kernel[i].data().is_some() && !kernel[i].flags.fua()).last().unwrap_or(flush);
    &kernel[start..flush]
}

impl<'a> Run<'a> {
    fn new(workload: &Workload, initial: &[u8], kernel: &'a [Entry], commits: &'a Commits, kernel_patches: KernelPatches) -> Self {
        let disk = Disk::new(Vec::new());
        let driver = Driver::new(workload, initial, kernel_patches, std::sync::Arc::clone(&disk));
        let (origin_sectors, chunk_sectors) = (workload.origin_sectors, u64::from(workload.chunk_sectors));
        let mut run =
            Self { kernel, commits, checked_fua: 0, checked_first: 0, checked_submitted: 0, origin_sectors, chunk_sectors, disk, driver, checked: 0 };
        run.settle();
        run
    }

    /// Completes reads and runs deferred work until neither is left.
    fn settle(&mut self) {
        loop {
            let read = lock(&self.disk).held.iter().find(|(_, r)| r.is_read()).map(|(id, _)| *id);
            match read {
                Some(id) => {
                    let done = lock(&self.disk).finish(id);
                    done();
                }
                None => {
                    if self.driver.settle() == 0 {
                        return;
                    }
                }
            }
        }
    }

    /// The moves possible now, the likeliest to match the kernel's next entry first.
    fn moves(&self) -> Vec<Move> {
        let disk = lock(&self.disk);
        let at = disk.entries.len();
        let block = plain_block(self.kernel, at);
        let mut fits = Vec::new();
        let mut rest = Vec::new();
        for (id, request) in &disk.held {
            let logs = request.logs();
            let fits_log = !logs.is_empty() && logs.iter().zip(&self.kernel[at.min(self.kernel.len())..]).all(|(a, b)| same_entry(a, b));
            let fits_block = request.unflushed().is_some_and(|e| block.get(disk.unflushed.len()).is_some_and(|k| same_entry(&e, k)));
            if fits_log || fits_block { fits.push(Move::Complete(*id)) } else { rest.push(Move::Complete(*id)) }
        }
        let delivers: Vec<Move> = disk.completed.iter().map(|(id, _)| Move::Deliver(*id)).collect();
        drop(disk);
        let mut ready = self.driver.ready();
        ready.sort_by_key(|&w| self.driver.op_of(w).and_then(|op| self.commits.first_label.get(&op).copied()).unwrap_or(usize::MAX));
        let steps = ready.into_iter().map(Move::Step);
        // dm core maps clones in the submitter's context, faster than
        // copies complete, and a waiter usually wakes before the next
        // completion: steps first, then completions seen, then what the
        // log shows next.
        steps.chain(delivers).chain(fits).chain(rest).collect()
    }

    fn apply(&mut self, m: Move) {
        match m {
            Move::Complete(id) => lock(&self.disk).complete(id),
            Move::Deliver(id) => {
                let done = lock(&self.disk).deliver(id);
                done();
            }
            Move::Step(w) => self.driver.step(w),
        }
        self.settle();
    }

    /// Why our log is no longer the kernel's, if it is not.
    fn mismatch(&mut self) -> Option<String> {
        if let Some(error) = self.driver.error() {
            return Some(error);
        }
        let disk = lock(&self.disk);
        // FUA writes as submitted, in the kernel's order of them.
        for i in self.checked_fua..disk.fua_submitted.len() {
            match self.commits.fua.get(i) {
                Some(k) if same_entry(&disk.fua_submitted[i], k) => {}
                Some(k) => {
                    return Some(format!("FUA write {i} submitted: the kernel's is {}, ours {}", describe(k), describe(&disk.fua_submitted[i])));
                }
                None => return Some(format!("ours submits FUA write {i} ({}), the kernel logs only {}", describe(&disk.fua_submitted[i]), i)),
            }
        }
        self.checked_fua = disk.fua_submitted.len();
        // Each write as submitted is the kernel's write to the same sector at the same turn.
        for (sector, data, nth) in &disk.submitted[self.checked_submitted..] {
            match self.commits.by_sector.get(sector).and_then(|writes| writes.get(*nth)) {
                Some(theirs) if theirs == data => {}
                Some(theirs) => {
                    let (k, o) = (describe(&Entry::write(*sector, theirs.clone(), 0)), describe(&Entry::write(*sector, data.clone(), 0)));
                    return Some(format!("write {} to sector {sector}: the kernel's is {k}, ours {o}", nth + 1));
                }
                None => {
                    return Some(format!(
                        "ours writes sector {sector} a {} time ({}); the kernel does not",
                        nth + 1,
                        describe(&Entry::write(*sector, data.clone(), 0))
                    ));
                }
            }
        }
        self.checked_submitted = disk.submitted.len();
        let mut queued: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
        for (sector, data) in self.driver.queued_origin_clones() {
            let turn = queued.entry(sector).or_insert(0);
            let nth = disk.per_sector.get(&sector).copied().unwrap_or(0) + *turn;
            *turn += 1;
            match self.commits.by_sector.get(&sector).and_then(|writes| writes.get(nth)) {
                Some(theirs) if theirs.as_slice() == data => {}
                Some(theirs) => {
                    let (k, o) = (describe(&Entry::write(sector, theirs.clone(), 0)), describe(&Entry::write(sector, data.to_vec(), 0)));
                    return Some(format!("writeback {} of origin sector {sector}: the kernel's is {k}, ours {o}", nth + 1));
                }
                None => return Some(format!("ours writes origin sector {sector} back a {} time; the kernel does not", nth + 1)),
            }
        }
        for (chunk, submitted, data) in &disk.first_writes[self.checked_first..] {
            // The kernel's first write to the chunk is ours: the same chunk allocated to the same origin chunk.
            let sector = self.origin_sectors + chunk * self.chunk_sectors;
            match self.commits.first.get(chunk) {
                Some((at, theirs)) if *at == sector && theirs == data => {}
                Some((at, theirs)) => {
                    let (k, o) = (describe(&Entry::write(*at, theirs.clone(), 0)), describe(&Entry::write(sector, data.clone(), 0)));
                    return Some(format!("the first write to COW chunk {chunk} is {k} in the kernel's log, ours {o}"));
                }
                None => return Some(format!("ours writes COW chunk {chunk}, which the kernel never writes")),
            }
            if let Some(why) = self.commits.early(*chunk, *submitted) {
                return Some(why);
            }
        }
        self.checked_first = disk.first_writes.len();
        for i in self.checked..disk.entries.len() {
            match self.kernel.get(i) {
                Some(k) if same_entry(&disk.entries[i], k) => {}
                Some(k) => return Some(format!("kernel entry {i} is {}, ours {}", describe(k), describe(&disk.entries[i]))),
                None => return Some(format!("ours logs entry {i} ({}) past the kernel's last", describe(&disk.entries[i]))),
            }
        }
        self.checked = disk.entries.len();
        // Each flush held (in the order submitted) covers the kernel's next
        // block of plain writes exactly; the plain writes completed since
        // the last of them begin the block after it.
        let mut at = disk.entries.len();
        for (_, request) in &disk.held {
            let Some(covered) = request.covered() else { continue };
            let block = plain_block(self.kernel, at);
            if covered.len() != block.len() || !covered.iter().zip(block).all(|(a, b)| same_entry(a, b)) {
                let first = covered.iter().zip(block).position(|(a, b)| !same_entry(a, b)).unwrap_or(covered.len().min(block.len()));
                let ours = covered.get(first).map_or("nothing more".to_string(), describe);
                let theirs = block.get(first).map_or("nothing more".to_string(), describe);
                return Some(format!(
                    "a flush submitted after {} plain write(s), the kernel's next after {} (from entry {at}): plain write {first} is {theirs} in the kernel's, {ours} in ours",
                    covered.len(),
                    block.len()
                ));
            }
            at = self.kernel_flush_after(at) + 1;
        }
        let block = plain_block(self.kernel, at);
        for (k, ours) in disk.unflushed.iter().enumerate() {
            if !block.get(k).is_some_and(|theirs| same_entry(ours, theirs)) {
                let theirs = block.get(k).map_or("no plain write".to_string(), describe);
                return Some(format!("plain write {k} before the kernel's flush after entry {at} is {theirs}, ours {}", describe(ours)));
            }
        }
        None
    }

    /// The kernel's first flush entry at or after `from` (its length if none).
    fn kernel_flush_after(&self, from: usize) -> usize {
        (from..self.kernel.len()).find(|&i| matches!(self.kernel[i].kind, EntryKind::Flush)).unwrap_or(self.kernel.len())
    }

    /// Every writer done and nothing held: the log as the guest leaves it.
    fn finished(&mut self) -> Option<bool> {
        let idle = {
            let disk = lock(&self.disk);
            disk.held.is_empty() && disk.completed.is_empty()
        };
        if !self.driver.done() || !idle {
            return None;
        }
        self.driver.finish();
        self.settle();
        let mut disk = lock(&self.disk);
        let unflushed = std::mem::take(&mut disk.unflushed);
        disk.entries.extend(unflushed);
        disk.entries.push(Entry::mark(END_MARK));
        let whole = disk.entries.len() == self.kernel.len() && disk.entries.iter().zip(self.kernel).all(|(a, b)| same_entry(a, b));
        Some(whole)
    }

    fn stuck(&self) -> String {
        let disk = lock(&self.disk);
        let at = disk.entries.len();
        let next = self.kernel.get(at).map_or("the end".to_string(), describe);
        let held: Vec<String> = disk.held.iter().map(|(_, r)| r.describe()).collect();
        drop(disk);
        let writers: Vec<String> = self.driver.ready().into_iter().map(|w| self.driver.next_step(w)).collect();
        format!("ours cannot log kernel entry {at} ({next}): nothing held but {held:?}, writers ready {writers:?}")
    }
}

impl Drop for Run<'_> {
    /// A run given up holds completions that hold the engine's targets,
    /// which hold the devices: dropped here, or every run searched stays in memory.
    fn drop(&mut self) {
        // The engine's own reference cycles (a store's waiting commit
        // callbacks hold their snapshot) may keep the disk alive: empty it.
        let emptied = std::mem::take(&mut *lock(&self.disk));
        drop(emptied);
        self.driver.finish();
        self.driver.forget();
    }
}

/// An entry as a reader wants it: where, how, and the label of its first sector.
fn describe(entry: &Entry) -> String {
    match entry.data() {
        Some(data) => {
            let label = Label::parse(&data[..512.min(data.len())])
                .map_or_else(|| if data.iter().all(|&b| b == 0) { "zeros".to_string() } else { "unlabelled".to_string() }, |l| format!("{l:?}"));
            format!("{entry} ({label})")
        }
        None => entry.to_string(),
    }
}

/// Searches for schedules under which our engine writes `kernel` exactly.
pub fn follow(workload: &Workload, initial: &[u8], kernel: &Log, kernel_patches: KernelPatches, budget: Budget) -> Following {
    let entries = &kernel.entries[..];
    let commits = Commits::of(workload, entries);
    let mut out = Following { workload: workload.name.clone(), kernel_entries: entries.len(), ..Following::default() };
    // Each level: the move taken and how many there were.
    let mut path: Vec<(usize, usize)> = Vec::new();
    let mut furthest: (usize, String) = (0, String::new());
    loop {
        out.replays += 1;
        let mut run = Run::new(workload, initial, entries, &commits, kernel_patches);
        for &(taken, count) in &path {
            let moves = run.moves();
            assert_eq!(moves.len(), count, "a replay offered other moves: our engine is not deterministic");
            run.apply(moves[taken]);
        }
        // A replay ends in the state its last move left: check it.
        let mut failed = false;
        if let Some(why) = run.mismatch() {
            let reached = lock(&run.disk).entries.len();
            if reached >= furthest.0 {
                furthest = (reached, why);
            }
            failed = true;
        }
        while !failed {
            if let Some(whole) = run.finished() {
                if whole {
                    out.matching_schedules += 1;
                    if out.matching_schedules == 1 {
                        out.moves = path.len();
                    }
                } else {
                    let reached = lock(&run.disk).entries.len();
                    furthest = furthest.max((reached, "ours ends with the log above, the kernel's goes on or differs at its end".to_string()));
                }
                break;
            }
            let moves = run.moves();
            if moves.is_empty() {
                let reached = lock(&run.disk).entries.len();
                if reached >= furthest.0 {
                    furthest = (reached, run.stuck());
                }
                break;
            }
            path.push((0, moves.len()));
            run.apply(moves[0]);
            if let Some(why) = run.mismatch() {
                let reached = lock(&run.disk).entries.len();
                if reached >= furthest.0 {
                    furthest = (reached, why);
                }
                failed = true;
            }
        }
        // Backtrack to the deepest level with a move left.
        while path.last().is_some_and(|&(taken, count)| taken + 1 >= count) {
            path.pop();
        }
        let Some(last) = path.last_mut() else {
            out.exhausted = true;
            break;
        };
        last.0 += 1;
        let enough = out.matching_schedules > budget.more_matches;
        if enough || out.replays >= budget.replays {
            break;
        }
    }
    if out.matching_schedules == 0 {
        let bounded = if out.exhausted { "every schedule tried" } else { "search bounded" };
        out.divergence = Some(format!("no schedule found ({bounded}, {} runs); furthest: {}", out.replays, furthest.1));
    }
    out
}
