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
//! origin writes), plain writes in the order they completed. A search
//! with replay from the start ([`search`]) finds a schedule under which
//! our engine writes exactly the kernel's log. Where the log cannot
//! pin a choice (plain writes logged together at a flush, completions with
//! no write of their own), the search tries each and counts the schedules
//! that match. Where none matches, it reports the furthest entry any
//! schedule reached: the kernel's entry there, and what ours logged
//! instead or why it could not go on.

mod driver;
mod held;
mod search;

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
    /// Chunk (of origin and snapshot) -> the COW chunk the kernel allocated to it.
    allocated_to: std::collections::BTreeMap<u64, u64>,
    /// COW chunk -> the first write the kernel logged to it (its sector and
    /// data): a copy's data names the origin chunk allocated there.
    first: std::collections::BTreeMap<u64, (u64, Vec<u8>)>,
    /// Sector -> the data of every write the kernel logged starting there, in log order.
    by_sector: std::collections::BTreeMap<u64, Vec<Vec<u8>>>,
    /// Operation -> the first entry whose data carries one of its labels:
    /// writers whose labels the kernel logged first are stepped first.
    first_label: std::collections::BTreeMap<u64, usize>,
    /// Operation -> the first entry, after the operation began, that
    /// allocates a COW chunk for a chunk its pages cover: writers whose
    /// chunks the kernel allocated first are stepped first.
    first_allocation: std::collections::BTreeMap<u64, usize>,
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
            first_allocation: std::collections::BTreeMap::new(),
            allocated_to: std::collections::BTreeMap::new(),
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
        out.first_allocation = first_allocations(workload, kernel);
        let chunk_of = |data: &[u8]| first_sector_label(data).map(|l| l.sector / chunk);
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
        for (&cow, (_, data)) in &out.first {
            if let (true, Some(c)) = (out.batch.contains_key(&cow), chunk_of(data)) {
                out.allocated_to.entry(c).or_insert(cow);
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

/// Operation -> the first kernel entry after the operation began (the mark
/// before it) that is the first write to a COW chunk whose data is of a
/// chunk the operation's pages cover.
fn first_allocations(workload: &Workload, kernel: &[Entry]) -> std::collections::BTreeMap<u64, usize> {
    let chunk = u64::from(workload.chunk_sectors);
    let mark = |text: &str| kernel.iter().position(|e| e.mark_text() == Some(text));
    let began = |op: u64| if op == 1 { mark("created") } else { mark(&format!("op{}", op - 1)).or_else(|| mark(&format!("fail{}", op - 1))) };
    // Each write operation: the chunks its pages cover, and where its batch began.
    let mut spans: Vec<(u64, std::ops::Range<u64>, usize)> = Vec::new();
    let mut op = 0;
    for guest_op in &workload.ops {
        let writes: Vec<(u64, u64)> = match guest_op {
            super::workload::GuestOp::Write { sector, sectors, .. } => vec![(*sector, *sectors)],
            super::workload::GuestOp::Parallel(writes) => writes.iter().map(|&(_, sector, sectors)| (sector, sectors)).collect(),
            _ => vec![(0, 0)],
        };
        let first = op + 1;
        for (sector, sectors) in writes {
            op += 1;
            if sectors > 0 {
                let pages = workload.blocks(sector, sectors);
                spans.push((op, pages.start / chunk..pages.end.div_ceil(chunk), began(first).unwrap_or(usize::MAX)));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = std::collections::BTreeMap::new();
    for (i, e) in kernel.iter().enumerate() {
        let (Some(data), Some(s)) = (e.data(), e.sector.checked_sub(workload.origin_sectors)) else { continue };
        let Some(label) = first_sector_label(data) else { continue };
        if !seen.insert(s / chunk) {
            continue;
        }
        for (op, chunks, began) in &spans {
            if *began < i && chunks.contains(&(label.sector / chunk)) {
                out.entry(*op).or_insert(i);
            }
        }
    }
    out
}

/// One run of our engine under construction.
struct Run<'a> {
    kernel: &'a [Entry],
    commits: &'a Commits,
    /// FUA writes and first COW writes already checked.
    checked_fua: usize,
    checked_first: usize,
    checked_submitted: usize,
    /// Origin clones mapped and checked, and how many of them each sector had.
    checked_mapped: usize,
    mapped_per_sector: std::collections::BTreeMap<u64, usize>,
    /// Writes laid over the cache and checked.
    checked_composed: usize,
    /// Writebacks begun and checked.
    checked_writebacks: usize,
    /// The guest's page, in sectors.
    block_sectors: u64,
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
        let mut run = Self {
            kernel,
            commits,
            checked_fua: 0,
            checked_first: 0,
            checked_submitted: 0,
            checked_mapped: 0,
            mapped_per_sector: std::collections::BTreeMap::new(),
            checked_composed: 0,
            checked_writebacks: 0,
            block_sectors: workload.block_sectors(),
            origin_sectors,
            chunk_sectors,
            disk,
            driver,
            checked: 0,
        };
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
        // The commit the kernel issues next records these chunks: while one
        // of them is not allocated yet, a completion would close the batch early.
        let next_commit = disk.fua_submitted.len();
        let allocated: std::collections::BTreeSet<u64> = disk.first_writes.iter().map(|(c, _, _)| *c).collect();
        let batch_open = next_commit >= self.commits.fua.len() || self.commits.batch.iter().any(|(c, &j)| j == next_commit && !allocated.contains(c));
        drop(disk);
        let mut ready = self.driver.ready();
        // Writers whose chunks the kernel allocated first, or whose labels
        // it logged first, step first.
        ready.sort_by_key(|&w| {
            let op = self.driver.op_of(w);
            let label = op.and_then(|op| self.commits.first_label.get(&op).copied()).unwrap_or(usize::MAX);
            let allocation = op.and_then(|op| self.commits.first_allocation.get(&op).copied()).unwrap_or(usize::MAX);
            (allocation.min(label), label)
        });
        let steps: Vec<Move> = ready.into_iter().map(Move::Step).collect();
        if !batch_open {
            // Every chunk of the kernel's next commit is allocated: the
            // completions that close its batch come before anything else
            // is allocated.
            return fits.into_iter().chain(delivers).chain(steps).chain(rest).collect();
        }
        // dm core maps clones in the submitter's context, faster than
        // copies complete, and a waiter usually wakes before the next
        // completion: steps first, then completions seen, then what the
        // log shows next.
        steps.into_iter().chain(delivers).chain(fits).chain(rest).collect()
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
        let shared = std::sync::Arc::clone(&self.disk);
        let disk = lock(&shared);
        self.submitted_writes(&disk).or_else(|| self.origin_writebacks()).or_else(|| self.allocations(&disk)).or_else(|| self.logged_entries(&disk))
    }

    /// FUA writes as submitted, in the kernel's order of them; each write as
    /// submitted is the kernel's write to the same sector at the same turn.
    fn submitted_writes(&mut self, disk: &Disk) -> Option<String> {
        for i in self.checked_fua..disk.fua_submitted.len() {
            let ours = &disk.fua_submitted[i];
            match self.commits.fua.get(i) {
                Some(k) if same_entry(ours, k) => {}
                Some(k) => {
                    let records = self.record_difference(k, ours);
                    return Some(format!("FUA write {i} submitted: the kernel's is {}, ours {}{records}", describe(k), describe(ours)));
                }
                None => return Some(format!("ours submits FUA write {i} ({}), the kernel logs only {}", describe(ours), i)),
            }
        }
        self.checked_fua = disk.fua_submitted.len();
        for (sector, data, nth) in &disk.submitted[self.checked_submitted..] {
            match self.commits.by_sector.get(sector).and_then(|writes| writes.get(*nth)) {
                Some(theirs) if theirs == data => {}
                Some(theirs) => {
                    let (k, o) = (describe(&Entry::write(*sector, theirs.clone(), 0)), describe(&Entry::write(*sector, data.clone(), 0)));
                    return Some(format!("write {} to sector {sector}: the kernel's is {k}, ours {o}", nth + 1));
                }
                None => {
                    let ours = describe(&Entry::write(*sector, data.clone(), 0));
                    return Some(format!("ours writes sector {sector} a {} time ({ours}); the kernel does not", nth + 1));
                }
            }
        }
        self.checked_submitted = disk.submitted.len();
        None
    }

    /// Where two commits to the same area differ: the records only one of them holds.
    fn record_difference(&self, theirs: &Entry, ours: &Entry) -> String {
        let layout = engine::format::Layout::new(engine::ChunkSize::from_sectors(self.chunk_sectors as u32));
        let records = |e: &Entry| -> std::collections::BTreeSet<(u64, u64)> {
            layout.decode_area(e.data().unwrap_or_default()).records.iter().map(|r| (r.old_chunk, r.new_chunk)).collect()
        };
        let (k, o) = (records(theirs), records(ours));
        if theirs.sector != ours.sector || k == o {
            return String::new();
        }
        let only = |a: &std::collections::BTreeSet<(u64, u64)>, b: &std::collections::BTreeSet<(u64, u64)>| {
            a.difference(b).map(|(old, new)| format!("{old}->{new}")).collect::<Vec<_>>().join(" ")
        };
        format!("; records only in the kernel's: [{}], only in ours: [{}]", only(&k, &o), only(&o, &k))
    }

    /// Each origin clone as mapped (its page taken as the kernel took it),
    /// then those of pages taken and not mapped yet, is the kernel's write
    /// to its sector at the same turn; each write laid over a page since
    /// can still be.
    fn origin_writebacks(&mut self) -> Option<String> {
        for (sector, data) in &self.driver.mapped_origin_clones()[self.checked_mapped..] {
            let nth = self.mapped_per_sector.entry(*sector).or_insert(0);
            let theirs = self.commits.by_sector.get(sector).and_then(|writes| writes.get(*nth));
            *nth += 1;
            if theirs != Some(data) {
                return Some(writeback_difference(*sector, *nth - 1, theirs.map(Vec::as_slice), data, " as mapped"));
            }
        }
        self.checked_mapped = self.driver.mapped_origin_clones().len();
        let mut queued: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
        for (sector, data) in self.driver.queued_origin_clones() {
            let turn = queued.entry(sector).or_insert(0);
            let nth = self.mapped_per_sector.get(&sector).copied().unwrap_or(0) + *turn;
            *turn += 1;
            let theirs = self.commits.by_sector.get(&sector).and_then(|writes| writes.get(nth));
            if theirs.map(Vec::as_slice) != Some(data) {
                return Some(writeback_difference(sector, nth, theirs.map(Vec::as_slice), data, ""));
            }
        }
        if let Some(why) = self.early_compose(&queued) {
            return Some(why);
        }
        self.checked_composed = self.driver.composed().len();
        None
    }

    /// Each writeback begun allocates in the kernel's order; the kernel's
    /// first write to each COW chunk is ours (the same chunk allocated to
    /// the same origin chunk), and not before the commit that closed the
    /// batch before its own.
    fn allocations(&mut self, disk: &Disk) -> Option<String> {
        let has: std::collections::BTreeSet<u64> =
            disk.first_writes.iter().filter_map(|(_, _, data)| first_sector_label(data).map(|l| l.sector / self.chunk_sectors)).collect();
        for writeback in &self.driver.writebacks()[self.checked_writebacks..] {
            if let Some(why) = self.allocation_order(writeback, &has) {
                return Some(why);
            }
        }
        self.checked_writebacks = self.driver.writebacks().len();
        for (chunk, submitted, data) in &disk.first_writes[self.checked_first..] {
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
        None
    }

    /// Our log so far is the kernel's; each flush held (in the order
    /// submitted) covers the kernel's next block of plain writes exactly,
    /// and the plain writes completed since the last of them begin the
    /// block after it.
    fn logged_entries(&mut self, disk: &Disk) -> Option<String> {
        for i in self.checked..disk.entries.len() {
            match self.kernel.get(i) {
                Some(k) if same_entry(&disk.entries[i], k) => {}
                Some(k) => return Some(format!("kernel entry {i} is {}, ours {}", describe(k), describe(&disk.entries[i]))),
                None => return Some(format!("ours logs entry {i} ({}) past the kernel's last", describe(&disk.entries[i]))),
            }
        }
        self.checked = disk.entries.len();
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

    /// Why a write laid over an origin page since the last check cannot be
    /// the kernel's, if it cannot: the page's next writeback in the kernel's
    /// log carries, at one of its sectors, neither its label nor that of a
    /// write not laid yet that may still cover it. (`queued`: clones of
    /// pages taken and not mapped yet, per sector; they precede it.)
    fn early_compose(&self, queued: &std::collections::BTreeMap<u64, usize>) -> Option<String> {
        let pending = self.driver.to_compose();
        for write in &self.driver.composed()[self.checked_composed..] {
            if write.snapshot {
                continue;
            }
            for s in write.sector..write.sector + write.sectors {
                let page = s / self.block_sectors * self.block_sectors;
                let start = page.max(s / self.chunk_sectors * self.chunk_sectors);
                let turn = self.mapped_per_sector.get(&start).copied().unwrap_or(0) + queued.get(&start).copied().unwrap_or(0);
                let theirs = self.commits.by_sector.get(&start).and_then(|writes| writes.get(turn));
                let label = theirs.and_then(|data| data.get(((s - start) * 512) as usize..).and_then(Label::parse));
                let fits = label.is_some_and(|l| {
                    l.op == write.op || pending.iter().any(|p| p.op == l.op && !p.snapshot && (p.sector..p.sector + p.sectors).contains(&s))
                });
                if !fits {
                    let carries = label.map_or_else(|| "no label of this workload".to_string(), |l| format!("op {}'s label", l.op));
                    return Some(format!(
                        "op {} lays its label over origin sector {s} before writeback {} of sector {start}, which carries {carries} there in the kernel's log",
                        write.op,
                        turn + 1
                    ));
                }
            }
        }
        None
    }

    /// Why a writeback just begun cannot allocate as the kernel did, if it
    /// cannot: it takes its pages in page order, so the chunks it will be
    /// the first to write (none ours has, none the other device may write
    /// first) get COW chunks in that order; the kernel gave them others.
    fn allocation_order(&self, writeback: &driver::Writeback, has: &std::collections::BTreeSet<u64>) -> Option<String> {
        let chunk = self.chunk_sectors;
        let elsewhere = |c: u64| writeback.elsewhere.iter().any(|r| r.start < (c + 1) * chunk && c * chunk < r.end);
        let mut last: Option<(u64, u64)> = None;
        for &(page, sectors) in &writeback.pages {
            for c in page / chunk..(page + sectors).div_ceil(chunk) {
                if has.contains(&c) || elsewhere(c) {
                    continue;
                }
                let Some(&cow) = self.commits.allocated_to.get(&c) else { continue };
                if let Some((before, before_cow)) = last.filter(|&(_, before_cow)| before_cow > cow) {
                    let device = if writeback.snapshot { "snapshot" } else { "origin" };
                    return Some(format!(
                        "a writeback of the {device} takes chunk {before} before chunk {c}; the kernel gave them COW chunks {before_cow} and {cow}"
                    ));
                }
                last = Some((c, cow));
            }
        }
        None
    }

    /// How many of the kernel's entries our log has matched.
    fn logged(&self) -> usize {
        lock(&self.disk).entries.len()
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

/// Why our `nth` writeback (from 0) of origin `sector` is not the kernel's (`theirs`, if it has one).
fn writeback_difference(sector: u64, nth: usize, theirs: Option<&[u8]>, ours: &[u8], how: &str) -> String {
    match theirs {
        Some(theirs) => {
            let (k, o) = (describe(&Entry::write(sector, theirs.to_vec(), 0)), describe(&Entry::write(sector, ours.to_vec(), 0)));
            let differ = first_difference(sector, theirs, ours);
            format!("writeback {} of origin sector {sector}{how}: the kernel's is {k}, ours {o}{differ}", nth + 1)
        }
        None => format!("ours writes origin sector {sector} back a {} time; the kernel does not", nth + 1),
    }
}

/// Where two writes to `sector` first differ, and what each carries there.
fn first_difference(sector: u64, theirs: &[u8], ours: &[u8]) -> String {
    let label = |data: &[u8]| Label::parse(data).map_or_else(|| "unlabelled".to_string(), |l| format!("op {}'s label", l.op));
    let differs = theirs.chunks(512).zip(ours.chunks(512)).position(|(a, b)| a != b);
    differs.map_or_else(String::new, |k| {
        let (a, b) = (&theirs[k * 512..][..512], &ours[k * 512..][..512]);
        format!("; they differ first at sector {}: the kernel's carries {}, ours {}", sector + k as u64, label(a), label(b))
    })
}

/// The label of a write's first sector, if it carries one.
fn first_sector_label(data: &[u8]) -> Option<Label> {
    Label::parse(&data[..512.min(data.len())])
}

/// An entry as a reader wants it: where, how, and the label of its first sector.
fn describe(entry: &Entry) -> String {
    match entry.data() {
        Some(data) => {
            let label = first_sector_label(data)
                .map_or_else(|| if data.iter().all(|&b| b == 0) { "zeros".to_string() } else { "unlabelled".to_string() }, |l| format!("{l:?}"));
            format!("{entry} ({label})")
        }
        None => entry.to_string(),
    }
}

/// Searches for schedules under which our engine writes `kernel` exactly.
pub fn follow(workload: &Workload, initial: &[u8], kernel: &Log, kernel_patches: KernelPatches, budget: Budget) -> Following {
    search::follow(workload, initial, kernel, kernel_patches, budget)
}
