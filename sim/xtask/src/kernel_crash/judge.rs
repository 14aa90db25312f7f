//! The kernel's crash states, from its dm-log-writes log: one class of
//! states at each mark, enumerated as `explore` enumerates ours, each
//! state loaded by our engine and judged through the labels.
//!
//! Why classes sit at marks: dm-log-writes holds a plain write until the
//! next PREFLUSH and then logs every write completed since just before
//! that flush (the "splice"); a FUA write is logged when it completes, a
//! mark when the message arrives. So everything logged before a mark was
//! durable when the mark was logged, and the writes that had completed
//! without being flushed are in the splice before the next flush, in the
//! order they completed. The guest issues an operation only after marking
//! the one before, so everything in the splice from the first workload
//! write of a later operation on completed after the mark and is left out.
//! The kernel's own writes for the next operation that completed before
//! its first workload write cannot be told apart, so they stay in (the
//! judge then allows what the operations that may have been issued
//! justify, see [`Workload::issued_max`]). A
//! point inside an operation would have to trust the kernel's ordering to
//! say which writes were issued; at a mark the log says it. The ordering
//! the snapshot depends on is still tested: a commit that completed after
//! an origin write was acknowledged is logged after that write's mark, so
//! at the mark the origin write is a candidate and the commit is not.

use engine::format::Layout;
use engine::io::{CompletionQueue, MemDevice};
use engine::store::{StoreConfig, load_blocking};
use engine::sync::Arc;
use engine::{ChunkSize, LoadOutcome};
use std::ops::ControlFlow;

use serde::Serialize;
use sim::crash_space::CrashSpace;
use sim::logwrites::{END_MARK, Log};

use super::workload::{GuestOp, Label, Workload, earlier_records};

/// How to judge.
#[derive(Debug, Clone, Copy)]
pub struct JudgeConfig {
    /// A class whose metadata combinations times data values exceed this
    /// is judged up to this many states and reported bounded.
    pub per_sector_states_max: u64,
    /// Whether the kernel behaviour K1 is a finding (it is counted otherwise).
    pub strict: bool,
    /// States kept for the kernel to load (besides every state with a
    /// finding and the first K1 state): the middle state of this many
    /// classes spread over the log.
    pub samples: usize,
}

/// A crash state kept for the kernel to load and compare with ours.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Where it comes from: workload, mark, state index in its class.
    pub name: String,
    /// The whole data disk: origin slice, then COW slice.
    pub image: Vec<u8>,
}

/// What one workload's judging found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Judgement {
    pub workload: String,
    pub entries: usize,
    pub flush_epochs: usize,
    pub classes: usize,
    pub classes_complete: usize,
    /// States built and judged (distinct within their class).
    pub states_judged: u64,
    /// Distinct disk states among them (by digest): a state two marks share counts once.
    pub distinct_states: u64,
    /// log2 of the crash states the classes stand for (data sectors judged
    /// one value index at a time stand for all their combinations).
    pub space_log2: f64,
    /// States where an invalidated snapshot came back valid over a changed
    /// origin: the kernel writes the invalid header without FUA (K1).
    pub kernel_behaviour_k1: u64,
    /// States where a new snapshot on a reused COW loaded an earlier
    /// snapshot's records from area 0: the kernel's header persisted
    /// without its zeroing of area 0 (K3).
    pub kernel_behaviour_k3: u64,
    pub findings: Vec<String>,
    pub replay_matches_disk: bool,
    pub kernel_status: String,
    pub seconds: f64,
    /// The states kept for the kernel (not in the report).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// The sectors of one crash class: durable image, and the candidate
/// values of each sector some non-durable write touches.
pub struct Class {
    /// The mark the class's crash point is at.
    pub mark: String,
    /// The last operation that may have been issued at this point.
    pub issued: u64,
    /// Whether the writes of the operations issued by then overflow the COW.
    pub may_overflow: bool,
    pub durable: Vec<u8>,
    /// The digest of `durable` (see [`sector_digest`]).
    pub durable_digest: u64,
    /// (sector, values): the durable value first, then each distinct value written since.
    pub candidates: Vec<(u64, Vec<Vec<u8>>)>,
    pub requirements: Requirements,
    /// Set once the guest started merging: what the merge must leave.
    pub merge: Option<std::sync::Arc<MergeExpect>>,
    /// Whether a commit (a FUA area write, after its PREFLUSH) was logged
    /// before the point: the new snapshot's header and zeroing are durable.
    pub committed: bool,
    /// On a reused COW: what an earlier snapshot left in area 0.
    pub earlier: Option<std::sync::Arc<EarlierArea>>,
}

/// Area 0 of a reused COW before the workload: the earlier snapshot's
/// records and the bytes that hold them.
pub struct EarlierArea {
    pub records: Vec<engine::format::Record>,
    /// Area 0 (COW chunk 1) of the initial disk.
    pub bytes: Vec<u8>,
}

impl EarlierArea {
    fn of(workload: &Workload, initial: &[u8]) -> Option<Self> {
        let records = earlier_records(workload);
        if records.is_empty() {
            return None;
        }
        let chunk_bytes = workload.chunk_sectors as usize * 512;
        let at = workload.origin_sectors as usize * 512 + chunk_bytes;
        Some(Self { records, bytes: initial[at..at + chunk_bytes].to_vec() })
    }

    /// The first earlier record a load took as an exception, while the
    /// state's area 0 still holds it as the earlier snapshot wrote it
    /// (not a record of the new snapshot that happens to be the same).
    fn loaded(&self, area0: &[u8], exceptions: &[Option<u64>]) -> Option<engine::format::Record> {
        debug_assert_eq!(area0.len(), self.bytes.len(), "area 0 is one chunk");
        self.records.iter().enumerate().find_map(|(index, record)| {
            let sector = index * engine::format::RECORD_BYTES / 512 * 512;
            let unchanged = area0[sector..sector + 512] == self.bytes[sector..sector + 512];
            let taken = exceptions.get(record.old_chunk as usize).copied().flatten() == Some(record.new_chunk);
            (unchanged && taken).then_some(*record)
        })
    }
}

/// What completed flushes require each view to show: per sector, the
/// smallest op number its label may carry.
#[derive(Clone, Default)]
pub struct Requirements {
    pub origin: Vec<u64>,
    pub snapshot: Vec<u64>,
}

/// A sector's contribution to a state's digest: the digest of a disk is
/// the XOR of its sectors' (index, bytes) hashes, so a state's digest is
/// its durable image's with each chosen value swapped in.
fn sector_digest(s: u64, bytes: &[u8]) -> u64 {
    let mut hash = sim::trace::Fnv::new();
    hash.u64(s);
    hash.bytes(bytes);
    hash.finish()
}

fn sector(image: &[u8], s: u64) -> &[u8] {
    &image[s as usize * 512..(s as usize + 1) * 512]
}

/// What a merge must leave, taken from the durable disk when the guest
/// marked `merging` (both devices were flushed just before).
pub struct MergeExpect {
    /// Per origin sector: the label the snapshot's view showed.
    pub view: Vec<Option<Label>>,
    /// Per origin sector: the label the origin held.
    pub origin: Vec<Option<Label>>,
}

impl MergeExpect {
    fn at(workload: &Workload, durable: &[u8]) -> Result<Self, String> {
        let origin_bytes = workload.origin_sectors as usize * 512;
        let chunk = u64::from(workload.chunk_sectors);
        let queue = CompletionQueue::new();
        let device = Arc::new(MemDevice::from_bytes(durable[origin_bytes..].to_vec(), &queue));
        let config = StoreConfig { kind: workload.store, chunk_sectors: Some(workload.chunk_sectors), ..StoreConfig::default() };
        let loaded = load_blocking(&queue, device, 512, config).map_err(|e| format!("I4: the COW the merge starts from does not load: {e}"))?;
        let origin: Vec<Option<Label>> = durable[..origin_bytes].chunks(512).map(Label::parse).collect();
        let view = (0..workload.origin_sectors)
            .map(|s| match loaded.exceptions.lookup(s / chunk) {
                Some(new_chunk) => Label::parse(sector(&durable[origin_bytes..], new_chunk * chunk + s % chunk)),
                None => origin[s as usize],
            })
            .collect();
        Ok(Self { view, origin })
    }
}

/// The crash classes of a log: one at each mark (see the module doc) and,
/// once the guest marked `merging`, one after every flush and FUA write
/// too: the guest issues nothing while the kernel merges, so every point is
/// a crash point whose issued writes the log knows. A findings list takes
/// what stops a class from being built.
pub fn classes(workload: &Workload, log: &Log, initial: &[u8], findings: &mut Vec<String>) -> Vec<Class> {
    let numbered = workload.numbered();
    let sectors = workload.origin_sectors as usize;
    let mut requirements = Requirements { origin: vec![0; sectors], snapshot: vec![0; sectors] };
    let mut out = Vec::new();
    let mut durable = initial.to_vec();
    let mut durable_digest = initial.chunks(512).enumerate().fold(0u64, |d, (s, bytes)| d ^ sector_digest(s as u64, bytes));
    let mut acknowledged = 0u64;
    let mut merge: Option<std::sync::Arc<MergeExpect>> = None;
    let earlier = EarlierArea::of(workload, initial).map(std::sync::Arc::new);
    let mut committed = false;
    // Operations that failed (writes to a full `PO` snapshot): a flush
    // requires nothing of them, and their labels may appear (a write across
    // chunks fails when one of them finds no room, after the others were written).
    let mut failed: Vec<u64> = Vec::new();
    for (m, entry) in log.entries.iter().enumerate() {
        let after_durable_write = m > 0 && (log.entries[m - 1].flags.flush() || log.entries[m - 1].flags.fua());
        if merge.is_some() && after_durable_write && entry.mark_text().is_none() {
            let issued = workload.issued_max(acknowledged);
            let at = Point { p: m, name: format!("merging, entry {m}"), acknowledged, issued, committed };
            out.push(class_at(workload, log, at, &durable, durable_digest, &requirements, merge.clone(), earlier.clone()));
        }
        committed |= entry.flags.fua() && entry.data().is_some();
        let Some(text) = entry.mark_text() else {
            if let Some(data) = entry.data() {
                let at = entry.sector as usize * 512;
                if at + data.len() <= durable.len() {
                    for (j, bytes) in data.chunks(512).enumerate() {
                        let s = entry.sector + j as u64;
                        durable_digest ^= sector_digest(s, sector(&durable, s)) ^ sector_digest(s, bytes);
                    }
                    durable[at..at + data.len()].copy_from_slice(data);
                }
            }
            continue;
        };
        if let Some(n) = text.strip_prefix("op").and_then(|n| n.parse::<u64>().ok()) {
            acknowledged = acknowledged.max(n);
            if let Some(GuestOp::Flush { snapshot }) = numbered.iter().find(|k| k.op == n).map(|k| &k.kind) {
                let required = if *snapshot { &mut requirements.snapshot } else { &mut requirements.origin };
                workload.flush_requirements(n, *snapshot, &failed, required);
            }
        } else if let Some(n) = text.strip_prefix("fail").and_then(|n| n.parse::<u64>().ok()) {
            acknowledged = acknowledged.max(n);
            failed.push(n);
        } else if text == END_MARK {
            acknowledged = u64::MAX;
        } else if text == "merging" {
            match MergeExpect::at(workload, &durable) {
                Ok(expect) => merge = Some(std::sync::Arc::new(expect)),
                Err(finding) => {
                    findings.push(format!("at mark \"merging\": {finding}"));
                    return out;
                }
            }
        }
        let issued = if acknowledged == u64::MAX { u64::MAX } else { workload.issued_max(acknowledged) };
        let at = Point { p: m, name: text.to_string(), acknowledged, issued, committed };
        out.push(class_at(workload, log, at, &durable, durable_digest, &requirements, merge.clone(), earlier.clone()));
    }
    out
}

/// The class of a crash just before entry `p`: what is logged before it is
/// durable; the writes of the splice before the next flush (or the end
/// mark) had completed without being flushed, up to the first workload
/// write of an operation not acknowledged yet.
/// Where a class sits: before log entry `p`, named `name`, with the
/// operations acknowledged and issued by then, and whether a commit was
/// logged before it.
struct Point {
    p: usize,
    name: String,
    acknowledged: u64,
    issued: u64,
    committed: bool,
}

#[allow(clippy::too_many_arguments)]
fn class_at(
    workload: &Workload,
    log: &Log,
    at: Point,
    durable: &[u8],
    durable_digest: u64,
    requirements: &Requirements,
    merge: Option<std::sync::Arc<MergeExpect>>,
    earlier: Option<std::sync::Arc<EarlierArea>>,
) -> Class {
    let Point { p, name, acknowledged, issued, committed } = at;
    let next_flush = (p..log.entries.len()).find(|&i| log.entries[i].flags.flush() || log.entries[i].mark_text() == Some(END_MARK));
    let plain = |i: usize| {
        let e = &log.entries[i];
        e.data().is_some() && !e.flags.fua() && !e.flags.flush()
    };
    let splice: Vec<usize> = match next_flush {
        Some(f) => (p..f).rev().take_while(|&i| plain(i)).collect(),
        None => Vec::new(),
    };
    let candidates = splice_candidates(workload, log, &splice, acknowledged, durable);
    // The splice is logged at the flush that ends it, after every mark
    // logged since `p`; its writes completed at any time before that flush.
    // The kernel's own writes in it (copies, commits, an invalidation)
    // carry no label saying which operation caused them, so any operation
    // issued by the last of those marks may have caused them: a state that
    // holds them is a crash state of that later point, and may overflow
    // as far as the operations issued by then allow. (Flushes end splices,
    // so no flush was acknowledged in between: the requirements are the same.)
    let issued = if candidates.is_empty() {
        issued
    } else {
        let last_marked = next_flush
            .map(|f| log.entries[p..f].iter().filter_map(|e| e.mark_text()).filter_map(marked_op).max().unwrap_or(acknowledged))
            .unwrap_or(acknowledged);
        issued.max(workload.issued_max(last_marked.max(acknowledged)))
    };
    debug_assert!(candidates.windows(2).all(|w| w[0].0 < w[1].0), "one candidate list per sector, in order");
    debug_assert!(candidates.iter().all(|(s, values)| values[0] == sector(durable, *s)), "the durable value comes first");
    Class {
        mark: name,
        issued,
        may_overflow: workload.overflows_by(issued),
        durable: durable.to_vec(),
        durable_digest,
        candidates,
        requirements: requirements.clone(),
        merge,
        committed,
        earlier,
    }
}

/// The sectors the plain writes of `splice` (log indices, newest first)
/// may leave, each with its durable value first and every distinct value
/// written since: the writes up to the first of a later operation than
/// `acknowledged` (the splice lists writes in the order they completed, so
/// nothing after that one was issued at the mark either).
fn splice_candidates(workload: &Workload, log: &Log, splice: &[usize], acknowledged: u64, durable: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
    let mut candidates: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = std::collections::BTreeMap::new();
    for &i in splice.iter().rev() {
        let entry = &log.entries[i];
        let data = entry.data().unwrap_or_default();
        if data.chunks(512).filter_map(Label::parse).any(|l| l.workload == workload.id && l.op > acknowledged) {
            break;
        }
        for (j, bytes) in data.chunks(512).enumerate() {
            let s = entry.sector + j as u64;
            if (s as usize + 1) * 512 > durable.len() {
                continue;
            }
            let values = candidates.entry(s).or_insert_with(|| vec![sector(durable, s).to_vec()]);
            if !values.iter().any(|v| v == bytes) {
                values.push(bytes.to_vec());
            }
        }
    }
    candidates.into_iter().filter(|(_, values)| values.len() > 1).collect()
}

/// The operation an `opN` or `failN` mark names.
fn marked_op(text: &str) -> Option<u64> {
    text.strip_prefix("op").or_else(|| text.strip_prefix("fail")).and_then(|n| n.parse::<u64>().ok())
}

/// A state that passed, and whether it did so only by K1 or K3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    Clean,
    KernelBehaviourK1,
    KernelBehaviourK3,
}

/// One crash state: the whole data disk, and the label of each of its
/// sectors (parsed once per value, not once per state).
pub struct State<'a> {
    pub image: &'a [u8],
    pub labels: &'a [Option<Label>],
}

/// The chunks of a COW that a load reads: the header and every metadata
/// area inside the device. Only these are copied into the device the
/// engine loads; the views read data chunks from the image directly.
pub fn metadata_chunks(workload: &Workload) -> Vec<u64> {
    let layout = Layout::new(ChunkSize::from_sectors(workload.chunk_sectors));
    (0..workload.cow_sectors / u64::from(workload.chunk_sectors)).filter(|&c| layout.is_metadata_chunk(c)).collect()
}

/// Judges one crash state of the data disk; a finding names its invariant (SPEC §5).
///
/// `buffer` is the device's memory, reused from state to state: its data
/// chunks stay zero (a load writes only the header and area 0), its
/// metadata chunks are copied from the state each time.
pub fn judge_state(
    workload: &Workload,
    state: &State<'_>,
    metadata: &[u64],
    class: &Class,
    strict: bool,
    buffer: &mut Vec<u8>,
) -> Result<Passed, String> {
    let (outcome, exceptions) = load_state(workload, state, metadata, buffer)?;
    if let (LoadOutcome::Valid, Some(earlier)) = (outcome, &class.earlier) {
        let chunk_bytes = workload.chunk_sectors as usize * 512;
        let cow = &state.image[workload.origin_sectors as usize * 512..];
        if let Some(record) = earlier.loaded(&cow[chunk_bytes..2 * chunk_bytes], &exceptions) {
            let what = format!(
                "the new snapshot loaded the earlier snapshot's record {} -> {} from area 0: its header persisted without the zeroing of area 0",
                record.old_chunk, record.new_chunk
            );
            if class.committed {
                return Err(format!("I4: {what}, after a commit whose PREFLUSH made the zeroing durable"));
            }
            if strict {
                return Err(format!("K3 (I4): {what}"));
            }
            return Ok(Passed::KernelBehaviourK3);
        }
    }
    if let Some(expect) = &class.merge {
        if outcome == LoadOutcome::Invalid {
            return Err("I10: the snapshot being merged loads invalid".into());
        }
        return judge_merging(workload, state, &exceptions, expect);
    }
    let invalid = outcome == LoadOutcome::Invalid;
    if invalid && !class.may_overflow {
        return Err(format!(
            "I9: the kernel's COW says the snapshot is invalid, but the writes of operations 1..={} fit in its {} data chunks",
            class.issued,
            workload.data_chunks()
        ));
    }
    let changed_without_exception = judge_origin(workload, state, class, &exceptions)?;
    if invalid {
        return Ok(Passed::Clean);
    }
    // The snapshot: an overwritten origin chunk must have its copy committed first.
    let mut passed = Passed::Clean;
    if let Some(c) = changed_without_exception.iter().position(|&changed| changed) {
        if !class.may_overflow || strict {
            let why = if class.may_overflow { "K1 (I8): an invalidated snapshot came back valid over a changed origin" } else { "I1" };
            return Err(format!("{why}: origin chunk {c} was overwritten but the snapshot has no exception for it: the snapshot lost that chunk"));
        }
        passed = Passed::KernelBehaviourK1;
    }
    judge_snapshot_view(workload, state, class, &exceptions, &changed_without_exception)?;
    Ok(passed)
}

/// Loads the state's COW with our engine, from its metadata chunks alone
/// (data chunks are never read at load): how it loaded, and each origin
/// chunk's exception. `buffer` is the device's memory, kept between states.
fn load_state(workload: &Workload, state: &State<'_>, metadata: &[u64], buffer: &mut Vec<u8>) -> Result<(LoadOutcome, Vec<Option<u64>>), String> {
    let origin = workload.origin_sectors;
    let chunk = u64::from(workload.chunk_sectors);
    let image = state.image;
    debug_assert_eq!(image.len() as u64, (origin + workload.cow_sectors) * 512, "the state is the whole data disk");
    debug_assert_eq!(state.labels.len() as u64, origin + workload.cow_sectors, "a label slot per sector");
    let cow = &image[origin as usize * 512..];
    let chunk_bytes = chunk as usize * 512;
    let mut device_bytes = std::mem::take(buffer);
    if device_bytes.len() != cow.len() {
        device_bytes = vec![0u8; cow.len()];
    }
    for &c in metadata {
        let at = c as usize * chunk_bytes;
        device_bytes[at..at + chunk_bytes].copy_from_slice(&cow[at..at + chunk_bytes]);
    }
    let queue = CompletionQueue::new();
    let device = Arc::new(MemDevice::from_bytes(device_bytes, &queue));
    let config = StoreConfig { kind: workload.store, chunk_sectors: Some(workload.chunk_sectors), ..StoreConfig::default() };
    let loaded = match load_blocking(&queue, Arc::clone(&device), 512, config) {
        Ok(loaded) => (loaded.outcome, (0..origin.div_ceil(chunk)).map(|c| loaded.exceptions.lookup(c)).collect()),
        Err(e) => return Err(format!("I4: our engine refuses the kernel's COW: {e}")),
    };
    // The store is dropped: the device is ours again, and so its buffer.
    if let Ok(device) = Arc::try_unwrap(device) {
        *buffer = device.into_bytes();
    }
    Ok(loaded)
}

/// A sector's label in words, or its first bytes when it has none.
fn show(bytes: &[u8]) -> String {
    Label::parse(bytes).map_or_else(|| format!("unlabelled bytes {:?}", String::from_utf8_lossy(&bytes[..24])), |l| format!("{l:?}"))
}

/// The origin: its own labels only, and what flushes promised (I3).
/// Returns which origin chunks changed with no exception to keep their
/// snapshot-time contents.
fn judge_origin(workload: &Workload, state: &State<'_>, class: &Class, exceptions: &[Option<u64>]) -> Result<Vec<bool>, String> {
    let (origin, chunk) = (workload.origin_sectors, u64::from(workload.chunk_sectors));
    let mut changed_without_exception = vec![false; origin.div_ceil(chunk) as usize];
    for s in 0..origin {
        let label = state.labels[s as usize].filter(|l| l.workload == workload.id && !l.snapshot && l.sector == s);
        let Some(label) = label else { return Err(format!("I3: origin sector {s} holds {}", show(sector(state.image, s)))) };
        if label.op < class.requirements.origin[s as usize] {
            return Err(format!("I3: origin sector {s} holds op {} although op {} was flushed", label.op, class.requirements.origin[s as usize]));
        }
        if label.op > 0 && exceptions[(s / chunk) as usize].is_none() {
            changed_without_exception[(s / chunk) as usize] = true;
        }
    }
    Ok(changed_without_exception)
}

/// The snapshot's view, chunk by chunk where the origin kept it or an
/// exception holds it: the snapshot's own labels or the snapshot-time
/// contents (I2), and what flushes promised (I3).
fn judge_snapshot_view(workload: &Workload, state: &State<'_>, class: &Class, exceptions: &[Option<u64>], changed: &[bool]) -> Result<(), String> {
    let (origin, chunk) = (workload.origin_sectors, u64::from(workload.chunk_sectors));
    for s in (0..origin).filter(|s| !changed[(s / chunk) as usize]) {
        let view = match exceptions[(s / chunk) as usize] {
            Some(new_chunk) => origin + new_chunk * chunk + s % chunk,
            None => s,
        };
        let seen = state.labels.get(view as usize).copied().flatten();
        let seen = seen.filter(|l| l.workload == workload.id && l.sector == s && (l.snapshot || l.op == 0));
        let Some(seen) = seen else { return Err(format!("I2: snapshot sector {s} reads {}", show(sector(state.image, view)))) };
        let seen_op = if seen.snapshot { seen.op } else { 0 };
        if seen_op < class.requirements.snapshot[s as usize] {
            return Err(format!("I3: snapshot sector {s} reads op {seen_op} although op {} was flushed", class.requirements.snapshot[s as usize]));
        }
    }
    Ok(())
}

/// Judges a crash state of a merge (I10): a chunk whose record is gone
/// holds, on the origin, what the snapshot showed when the merge began; a
/// chunk still recorded is served from the COW as the snapshot showed it,
/// while its origin sectors hold the old or the merged label, each.
fn judge_merging(workload: &Workload, state: &State<'_>, exceptions: &[Option<u64>], expect: &MergeExpect) -> Result<Passed, String> {
    let origin = workload.origin_sectors;
    let chunk = u64::from(workload.chunk_sectors);
    debug_assert_eq!(expect.view.len() as u64, origin, "a merge expectation per origin sector");
    for s in 0..origin {
        let (here, merged) = (state.labels[s as usize], expect.view[s as usize]);
        match exceptions[(s / chunk) as usize] {
            None if here != merged => {
                return Err(format!(
                    "I10: origin chunk {} is no longer recorded but sector {s} holds {here:?}, not the merged {merged:?}",
                    s / chunk
                ));
            }
            None => {}
            Some(new_chunk) => {
                let served = state.labels[(origin + new_chunk * chunk + s % chunk) as usize];
                if served != merged {
                    return Err(format!(
                        "I10: origin chunk {} is still recorded but its COW chunk serves {served:?} at sector {s}, not {merged:?}",
                        s / chunk
                    ));
                }
                if here != merged && here != expect.origin[s as usize] {
                    return Err(format!(
                        "I10: origin sector {s} holds {here:?}, neither its old {:?} nor the merged {merged:?}",
                        expect.origin[s as usize]
                    ));
                }
            }
        }
    }
    Ok(Passed::Clean)
}

/// Judges every class of a log. `final_disk`, when given, is the disk the
/// kernel left: the log replayed over `initial` must equal it.
pub fn judge_log(workload: &Workload, log: &Log, initial: &[u8], final_disk: Option<&[u8]>, config: JudgeConfig) -> Judgement {
    let mut judgement = start_judgement(workload, log, initial, final_disk);
    let mut buffer = Vec::new();
    let classes = classes(workload, log, initial, &mut judgement.findings);
    // Digests of every state judged: states met again at a later mark count once.
    let mut distinct = std::collections::BTreeSet::new();
    let sampled: Vec<usize> = match (config.samples, classes.len()) {
        (0, _) | (_, 0) => Vec::new(),
        (1, _) | (_, 1) => vec![classes.len() / 2],
        (k, n) => (0..k.min(n)).map(|i| i * (n - 1) / (k.min(n) - 1)).collect(),
    };
    for (class_index, class) in classes.into_iter().enumerate() {
        let plan = ClassPlan::new(workload, &class, config);
        judgement.classes += 1;
        judgement.space_log2 = log2_sum(judgement.space_log2, plan.log2);
        judgement.classes_complete += usize::from(plan.complete);
        // The middle of the enumeration mixes present, absent and torn writes.
        let sample_at = sampled.contains(&class_index).then(|| (plan.states.min(config.per_sector_states_max as f64) as u64).div_ceil(2).max(1));
        let judged = judge_class(workload, &class, &plan, config, sample_at, &mut judgement, &mut distinct, &mut buffer);
        judgement.states_judged += judged;
    }
    judgement.distinct_states = distinct.len() as u64;
    debug_assert!(judgement.distinct_states <= judgement.states_judged, "distinct states are states judged");
    judgement
}

/// A judgement with the log's own checks made: the log replayed over the
/// initial disk must give the disk the kernel left, and end with the
/// target's end mark.
fn start_judgement(workload: &Workload, log: &Log, initial: &[u8], final_disk: Option<&[u8]>) -> Judgement {
    let mut replayed = initial.to_vec();
    for entry in &log.entries {
        if let Some(data) = entry.data() {
            let at = entry.sector as usize * 512;
            if at + data.len() <= replayed.len() {
                replayed[at..at + data.len()].copy_from_slice(data);
            }
        }
    }
    let mut judgement = Judgement {
        workload: workload.name.clone(),
        entries: log.entries.len(),
        flush_epochs: log.entries.iter().filter(|e| e.flags.flush()).count(),
        replay_matches_disk: final_disk.is_none_or(|disk| disk == replayed),
        space_log2: f64::NEG_INFINITY,
        ..Judgement::default()
    };
    if !judgement.replay_matches_disk {
        judgement.findings.push("the log replayed over the initial disk differs from the disk the kernel left".into());
    }
    if log.entries.last().and_then(|e| e.mark_text()) != Some(END_MARK) {
        judgement.findings.push("the log does not end with the target's end mark: it is incomplete".into());
    }
    judgement
}

/// How one class's states are enumerated ([`CrashSpace`], the enumerator
/// `explore` uses too): small classes whole (every combination of every
/// sector); larger ones per data sector, every metadata combination times
/// each value index of the data sectors (the soundness argument is
/// ARCHITECTURE.md's).
struct ClassPlan {
    space: CrashSpace,
    whole: bool,
    /// log2 of the class's whole space; the states the plan judges.
    log2: f64,
    states: f64,
    complete: bool,
}

/// A class of at most this many states is judged whole (as `explore`'s default brute-force bound).
const WHOLE_MAX: u64 = 4096;

impl ClassPlan {
    fn new(workload: &Workload, class: &Class, config: JudgeConfig) -> Self {
        let chunk = u64::from(workload.chunk_sectors);
        let layout = Layout::new(ChunkSize::from_sectors(workload.chunk_sectors));
        let is_metadata = |s: u64| s >= workload.origin_sectors && layout.is_metadata_chunk((s - workload.origin_sectors) / chunk);
        let values = class.candidates.iter().map(|(_, values)| values.len()).collect();
        let space = CrashSpace::new(values, |i| is_metadata(class.candidates[i].0));
        let log2 = space.space().log2;
        let whole = space.space().at_most(WHOLE_MAX);
        let metadata_states: f64 = space.metadata().iter().map(|&i| space.values_of(i) as f64).product();
        let states = if whole { log2.exp2() } else { metadata_states * space.values_max() as f64 };
        let complete = states <= config.per_sector_states_max as f64;
        Self { space, whole, log2, states, complete }
    }

    /// Visits the plan's states (a value index per candidate) until `visit` breaks.
    fn visit(&self, mut visit: impl FnMut(&[usize]) -> ControlFlow<()>) {
        let _ = if self.whole { self.space.whole(visit) } else { self.space.per_data_sector(|state, _| visit(state)) };
    }
}

/// Judges the states of one class as `plan` says; returns how many. Stops
/// at the first finding, and at the state budget of an incomplete class.
#[allow(clippy::too_many_arguments)]
fn judge_class(
    workload: &Workload,
    class: &Class,
    plan: &ClassPlan,
    config: JudgeConfig,
    sample_at: Option<u64>,
    judgement: &mut Judgement,
    distinct: &mut std::collections::BTreeSet<u64>,
    buffer: &mut Vec<u8>,
) -> u64 {
    let metadata_chunks = metadata_chunks(workload);
    let mut image = class.durable.clone();
    let mut labels: Vec<Option<Label>> = image.chunks(512).map(Label::parse).collect();
    // What choosing value v of candidate i does to the state's digest.
    let deltas: Vec<Vec<u64>> =
        class.candidates.iter().map(|(s, values)| values.iter().map(|v| sector_digest(*s, &values[0]) ^ sector_digest(*s, v)).collect()).collect();
    let candidate_labels: Vec<Vec<Option<Label>>> =
        class.candidates.iter().map(|(_, values)| values.iter().map(|v| Label::parse(v)).collect()).collect();
    let mut judged = 0u64;
    plan.visit(|state| {
        for (i, &value) in state.iter().enumerate() {
            let (s, values) = &class.candidates[i];
            image[*s as usize * 512..(*s as usize + 1) * 512].copy_from_slice(&values[value]);
            labels[*s as usize] = candidate_labels[i][value];
        }
        judged += 1;
        distinct.insert(state.iter().enumerate().fold(class.durable_digest, |d, (i, &v)| d ^ deltas[i][v]));
        let verdict = judge_state(workload, &State { image: &image, labels: &labels }, &metadata_chunks, class, config.strict, buffer);
        let sample = sample_at == Some(judged);
        let stop = record_verdict(workload, class, verdict, &image, judged, sample, config, judgement)
            || (!plan.complete && judged >= config.per_sector_states_max);
        if stop { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    judged
}

/// Counts a state's verdict into `judgement`, keeping its image as a sample
/// when asked, when it failed, and for the first K1 and K3 states (the
/// kernel should load them valid, over the changed origin or the earlier
/// records). Returns whether it is a finding (the class stops there).
#[allow(clippy::too_many_arguments)]
fn record_verdict(
    workload: &Workload,
    class: &Class,
    verdict: Result<Passed, String>,
    image: &[u8],
    judged: u64,
    sample: bool,
    config: JudgeConfig,
    judgement: &mut Judgement,
) -> bool {
    let first_k1 = matches!(verdict, Ok(Passed::KernelBehaviourK1)) && judgement.kernel_behaviour_k1 == 0;
    let first_k3 = matches!(verdict, Ok(Passed::KernelBehaviourK3)) && judgement.kernel_behaviour_k3 == 0;
    if sample || verdict.is_err() || ((first_k1 || first_k3) && config.samples > 0) {
        let kind = if first_k1 {
            " (K1)"
        } else if first_k3 {
            " (K3)"
        } else {
            ""
        };
        let name = format!("{} at mark {:?}, state {judged}{kind}", workload.name, class.mark);
        judgement.samples.push(Sample { name, image: image.to_vec() });
    }
    match verdict {
        Ok(Passed::Clean) => false,
        Ok(Passed::KernelBehaviourK1) => {
            judgement.kernel_behaviour_k1 += 1;
            false
        }
        Ok(Passed::KernelBehaviourK3) => {
            judgement.kernel_behaviour_k3 += 1;
            false
        }
        Err(finding) => {
            judgement.findings.push(format!("crash at mark {:?}: {finding}", class.mark));
            true
        }
    }
}

/// log2(2^a + 2^b), with -inf as the empty sum.
fn log2_sum(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    a.max(b) + (1.0 + (-(a - b).abs()).exp2()).log2()
}

#[cfg(test)]
mod tests {
    //! Synthetic logs of one origin write and a flush, in the order the
    //! kernel logs it and in the order of a snapshot that acknowledges the
    //! origin write before its exception is committed.
    use engine::format::{DiskHeader, Record};
    use sim::logwrites::{Entry, EntryFlags};

    use super::*;
    use crate::kernel_crash::workload::initial_image;

    const CHUNK: u32 = 8;
    const ORIGIN: u64 = 64;

    fn workload() -> Workload {
        Workload {
            name: "one origin write".into(),
            id: 9,
            chunk_sectors: CHUNK,
            store: engine::store::StoreKind::Persistent,
            origin_sectors: ORIGIN,
            cow_sectors: 8 * 8,
            ops: vec![GuestOp::Write { snapshot: false, sector: 0, sectors: 2 }, GuestOp::Flush { snapshot: false }],
            reused_cow: false,
            slow_cow_ms: 0,
        }
    }

    fn labels(op: u64, from: u64, count: u64) -> Vec<u8> {
        (from..from + count).flat_map(|sector| Label { workload: 9, op, snapshot: false, sector }.bytes()).collect()
    }

    /// The writes of `w o 0 2`: the copy of origin chunk 0 to COW chunk 2,
    /// the header and zeroed area 0 of the new snapshot, the commit
    /// (PREFLUSH then FUA), the origin write.
    struct Writes {
        header: Entry,
        area_zero: Entry,
        copy: Entry,
        commit: Entry,
        origin: Entry,
    }

    fn writes() -> Writes {
        let chunk = ChunkSize::from_sectors(CHUNK);
        let mut area = vec![0u8; chunk.bytes()];
        Record { old_chunk: 0, new_chunk: 2 }.encode(&mut area, 0);
        let c = u64::from(CHUNK);
        Writes {
            header: Entry::write(ORIGIN, DiskHeader::new(true, chunk).encode_chunk(chunk), 0),
            area_zero: Entry::write(ORIGIN + c, vec![0; chunk.bytes()], 0),
            copy: Entry::write(ORIGIN + 2 * c, labels(0, 0, c), 0),
            commit: Entry::write(ORIGIN + c, area, EntryFlags::FUA),
            origin: Entry::write(0, labels(1, 0, 2), 0),
        }
    }

    fn judge(entries: Vec<Entry>) -> Judgement {
        let log = Log { sector_bytes: 512, entries };
        judge_log(&workload(), &log, &initial_image(&workload()), None, JudgeConfig { per_sector_states_max: 1 << 16, strict: false, samples: 2 })
    }

    #[test]
    fn the_kernels_order_passes_at_every_mark() {
        let w = writes();
        let judgement = judge(vec![
            Entry::mark("created"),
            // The commit's PREFLUSH logs the writes completed before it.
            w.header,
            w.area_zero,
            w.copy,
            Entry::flush(),
            w.commit,
            Entry::mark("op1"),
            w.origin,
            Entry::flush(),
            Entry::mark("op2"),
            Entry::mark(END_MARK),
        ]);
        assert_eq!(judgement.findings, Vec::<String>::new());
        assert_eq!(judgement.classes, 4);
        // At "created": header, zeroing and copy each present or not (2^3
        // whole); at op1 the origin write's two sectors (4).
        assert!(judgement.states_judged >= 12, "{judgement:?}");
    }

    #[test]
    fn an_origin_write_acknowledged_before_its_commit_is_found() {
        let w = writes();
        let judgement = judge(vec![
            Entry::mark("created"),
            Entry::mark("op1"),
            // The flush of op 2 logs the origin write with the snapshot's
            // writes; the commit completes after it.
            w.header,
            w.area_zero,
            w.copy,
            w.origin,
            Entry::flush(),
            w.commit,
            Entry::mark("op2"),
            Entry::mark(END_MARK),
        ]);
        assert!(judgement.findings.iter().any(|f| f.contains("op1") && f.contains("I1: origin chunk 0 was overwritten")), "{:?}", judgement.findings);
    }

    #[test]
    fn a_flushed_origin_write_that_is_lost_is_found() {
        let w = writes();
        let judgement = judge(vec![
            Entry::mark("created"),
            w.header,
            w.area_zero,
            w.copy,
            Entry::flush(),
            w.commit,
            Entry::mark("op1"),
            // The flush is logged without the origin write before it: the
            // write never reached the log, so the replayed disk lacks it.
            Entry::flush(),
            Entry::mark("op2"),
            Entry::mark(END_MARK),
        ]);
        assert!(
            judgement.findings.iter().any(|f| f.contains("op2") && f.contains("I3: origin sector 0 holds op 0 although op 1 was flushed")),
            "{:?}",
            judgement.findings
        );
    }
}
