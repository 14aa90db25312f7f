//! `cargo xtask kernel-crash`: the real kernel's writes, recorded by
//! dm-log-writes under qemu, and every crash state of them judged by our
//! engine and a label model.
//!
//! # Recording
//!
//! One data disk holds the origin (sectors `0..origin`) and the COW
//! (`origin..origin+cow`) as two dm-linear slices over one `log-writes`
//! target, whose log is a second disk: origin and snapshot on one physical
//! volume, LVM's usual layout, so the log's flushes are exactly the
//! flushes both devices see. (With two disks a flush of one says nothing of
//! the other; the kernel's flush ordering would need a log per disk and a
//! model of two caches, which is not recorded here.) The guest job
//! (`interop/guest/jobs/record.sh`) writes labelled sectors (workload,
//! operation, target, sector) and logs a mark `opN` after each operation.
//!
//! # Crash states
//!
//! The log lists writes in the order they became durable (see
//! `sim::logwrites`): everything before a PREFLUSH entry was durable when
//! that flush completed; a FUA entry was durable when it completed. So the
//! log falls into flush groups: the entries after one PREFLUSH entry up to
//! and including the next. At any point inside a group, what the last
//! PREFLUSH entry and the group's FUA entries logged so far cover is
//! durable, and every other write of the group may or may not have reached
//! the media, sector by sector — the same disk contract `explore` applies
//! to our engine. Points of a group between two FUA entries share their
//! crash states: each such class is judged once, with the requirements of
//! the marks logged up to its last point.
//!
//! A class is judged as `explore` judges a point: by brute force when its
//! space is small, else per data sector (every combination of the COW's
//! metadata sectors' values, times each value index of the data sectors;
//! the soundness argument is ARCHITECTURE.md's). The space it stands for is
//! the product of every sector's candidate values.
//!
//! # The judge
//!
//! Each state's COW slice is loaded by our engine (I4: it must load) and
//! the views are checked through the labels:
//! - every origin sector holds a label of its own sector, of the initial
//!   contents or of a write to the origin (I1);
//! - an origin chunk holding any written label has an exception in the
//!   loaded table (I2: the snapshot's copy of it was committed first);
//! - every snapshot sector reads, through the table, its origin's initial
//!   label or a label written to the snapshot (I3, I5);
//! - after a completed flush of a device (its mark logged), every write
//!   acknowledged before the flush is visible on it (I1).

use std::path::{Path, PathBuf};
use std::time::Instant;

use engine::format::Layout;
use engine::io::CompletionQueue;
use engine::io::MemDevice;
use engine::store::{StoreConfig, StoreKind, load_blocking};
use engine::sync::Arc;
use engine::{ChunkSize, LoadOutcome};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sim::logwrites::Log;
use sim::scenario::{Scenario, all_in, scenarios_dir};
use sim::world::ScriptOp;

use crate::vm::{self, Disks, Machine};

/// Options of `cargo xtask kernel-crash`.
#[derive(Debug, Clone, clap::Args)]
pub struct KernelCrashArgs {
    /// Where images, logs and the report go (default `target/interop`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Random workloads with four parallel writers, besides the scenario translations.
    #[arg(long, default_value_t = 8)]
    pub runs: u32,
    /// Seed of the random workloads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only the workloads whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Judge an existing recording (a directory of a previous run) instead of booting.
    #[arg(long)]
    pub judge_only: bool,
    /// A class whose metadata combinations times data values exceed this is bounded.
    #[arg(long, default_value_t = 65_536)]
    pub per_sector_states_max: u64,
}

/// One operation of a guest workload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GuestOp {
    Write { snapshot: bool, sector: u64, sectors: u64 },
    Flush { snapshot: bool },
    Reload,
    /// Writes run at once (each its own operation).
    Parallel(Vec<(bool, u64, u64)>),
}

/// A workload the guest runs.
#[derive(Debug, Clone)]
struct Workload {
    name: String,
    id: u64,
    chunk_sectors: u32,
    origin_sectors: u64,
    cow_sectors: u64,
    ops: Vec<GuestOp>,
}

impl Workload {
    /// The guest's text: one operation a line.
    fn script(&self) -> String {
        let t = |snapshot: bool| if snapshot { "s" } else { "o" };
        let mut text = String::new();
        for op in &self.ops {
            match op {
                GuestOp::Write { snapshot, sector, sectors } => text.push_str(&format!("w {} {sector} {sectors}\n", t(*snapshot))),
                GuestOp::Flush { snapshot } => text.push_str(&format!("f {}\n", t(*snapshot))),
                GuestOp::Reload => text.push_str("r\n"),
                GuestOp::Parallel(writes) => {
                    text.push_str(&format!("P {}\n", writes.len()));
                    for (snapshot, sector, sectors) in writes {
                        text.push_str(&format!("w {} {sector} {sectors}\n", t(*snapshot)));
                    }
                }
            }
        }
        text
    }

    /// Every operation by its number (from 1, as the guest counts), with
    /// the writes each made: (op, snapshot, sector, sectors) and flushes.
    fn numbered(&self) -> Vec<(u64, GuestOp)> {
        let mut out = Vec::new();
        let mut n = 0;
        for op in &self.ops {
            match op {
                GuestOp::Parallel(writes) => {
                    for &(snapshot, sector, sectors) in writes {
                        n += 1;
                        out.push((n, GuestOp::Write { snapshot, sector, sectors }));
                    }
                }
                other => {
                    n += 1;
                    out.push((n, other.clone()));
                }
            }
        }
        out
    }
}

/// A sector's label, as the guest writes it and the initial image holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label {
    workload: u64,
    op: u64,
    snapshot: bool,
    sector: u64,
}

fn label_bytes(label: Label) -> Vec<u8> {
    let text = format!("snapsim-label w={} op={} t={} s={}", label.workload, label.op, if label.snapshot { "s" } else { "o" }, label.sector);
    let mut bytes = format!("{text:<511}\n").into_bytes();
    bytes.truncate(512);
    bytes
}

fn parse_label(bytes: &[u8]) -> Option<Label> {
    let text = std::str::from_utf8(bytes.get(..80)?).ok()?;
    let mut words = text.strip_prefix("snapsim-label ")?.split_whitespace();
    let mut field = |key: &str| words.next()?.strip_prefix(key).map(str::to_string);
    let workload = field("w=")?.parse().ok()?;
    let op = field("op=")?.parse().ok()?;
    let snapshot = match field("t=")?.as_str() {
        "s" => true,
        "o" => false,
        _ => return None,
    };
    let sector = field("s=")?.parse().ok()?;
    Some(Label { workload, op, snapshot, sector })
}

/// The scenarios the kernel can run as they are: one snapshot, `P`, no
/// faults, no merge, no user flags, no mixed chunk sizes.
fn scenario_workloads() -> Vec<Workload> {
    let mut out = Vec::new();
    for scenario in all_in(&scenarios_dir()).unwrap_or_default() {
        if let Some(workload) = translate(&scenario, 100 + out.len() as u64) {
            out.push(workload);
        }
    }
    out
}

fn translate(scenario: &Scenario, id: u64) -> Option<Workload> {
    let file = &scenario.file;
    let plain = file.snapshots == 1
        && file.store == "P"
        && file.faults.is_empty()
        && !file.stale_cow
        && file.mixed_chunk_sectors.is_empty()
        && scenario.injections.is_empty();
    if !plain {
        return None;
    }
    let mut ops = Vec::new();
    for op in &scenario.ops {
        match op {
            ScriptOp::Write { target, sector, sectors, flags } => {
                if flags.fua || flags.preflush {
                    return None;
                }
                ops.push(GuestOp::Write { snapshot: !matches!(target, model::event::Target::Origin), sector: *sector, sectors: *sectors });
            }
            ScriptOp::Flush { target } => ops.push(GuestOp::Flush { snapshot: !matches!(target, model::event::Target::Origin) }),
            ScriptOp::Reload => ops.push(GuestOp::Reload),
            ScriptOp::Read { .. } | ScriptOp::Wait => {}
            ScriptOp::Merge { .. } => return None,
        }
    }
    let chunk = u64::from(file.chunk_sectors);
    Some(Workload {
        name: scenario.name.clone(),
        id,
        chunk_sectors: file.chunk_sectors,
        origin_sectors: file.origin_chunks * chunk,
        cow_sectors: file.cow_chunks * chunk,
        ops,
    })
}

/// A random workload: batches of four writes at once (three in four to the
/// origin), a flush of one device every few batches.
fn random_workload(seed: u64, id: u64) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let chunk_sectors = [1u32, 2, 8, 32, 128][rng.random_range(0..5usize)];
    let chunk = u64::from(chunk_sectors);
    let origin_chunks = (2048 / chunk).clamp(16, 256);
    let origin_sectors = origin_chunks * chunk;
    let batches = rng.random_range(8..20);
    let mut ops = Vec::new();
    for batch in 0..batches {
        let writes = (0..4)
            .map(|_| {
                let sectors = rng.random_range(1..=chunk.min(16));
                let sector = rng.random_range(0..origin_sectors - sectors + 1);
                (rng.random_range(0..4) == 0, sector, sectors)
            })
            .collect();
        ops.push(GuestOp::Parallel(writes));
        if batch % 3 == 2 {
            ops.push(GuestOp::Flush { snapshot: rng.random_range(0..4) == 0 });
        }
    }
    // Room for every chunk twice over, and the metadata areas.
    let cow_chunks = 2 * origin_chunks + 8 + 2 * origin_chunks / 16;
    Workload { name: format!("random, 4 writers, {} B chunks (seed {seed})", chunk * 512), id, chunk_sectors, origin_sectors, cow_sectors: cow_chunks * chunk, ops }
}

/// The data disk before the workload: the origin slice labelled op 0, the COW zeroed.
fn initial_image(workload: &Workload) -> Vec<u8> {
    let mut image = Vec::with_capacity(((workload.origin_sectors + workload.cow_sectors) * 512) as usize);
    for sector in 0..workload.origin_sectors {
        image.extend(label_bytes(Label { workload: workload.id, op: 0, snapshot: false, sector }));
    }
    image.resize(((workload.origin_sectors + workload.cow_sectors) * 512) as usize, 0);
    image
}

const LOG_BYTES: u64 = 256 << 20;

fn record(machine: &Machine, dir: &Path, workload: &Workload) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let disks = Disks { dir: dir.to_path_buf() };
    let write = |path: PathBuf, bytes: &[u8]| std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()));
    write(disks.origin(), &initial_image(workload))?;
    write(dir.join("initial.img"), &initial_image(workload))?;
    let log = std::fs::File::create(disks.cow()).map_err(|e| format!("{}: {e}", disks.cow().display()))?;
    log.set_len(LOG_BYTES).map_err(|e| e.to_string())?;
    let mut script = workload.script().into_bytes();
    script.resize(script.len().div_ceil(512).max(1) * 512, 0);
    let script_sectors = script.len() / 512;
    script.resize(script.len().max(1 << 20), 0);
    write(disks.results(), &script)?;
    let args = format!(
        "osect={} csect={} chunk={} w={} wsect={script_sectors}",
        workload.origin_sectors, workload.cow_sectors, workload.chunk_sectors, workload.id
    );
    let boot = vm::boot(machine, &disks, "record", &args, None)?;
    std::fs::write(dir.join("status.txt"), format!("{}\n{}\n", boot.marker("STATUS").unwrap_or(""), boot.marker("LOGSTATUS").unwrap_or("")))
        .map_err(|e| e.to_string())?;
    Ok(())
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
    /// log2 of the crash states the classes stand for.
    pub space_log2: f64,
    pub findings: Vec<String>,
    pub replay_matches_disk: bool,
    pub kernel_status: String,
    pub seconds: f64,
}

/// The sectors of one crash class: durable image, and the candidate
/// values of each sector some non-durable write of the group touches.
struct Class {
    /// The mark the class's crash point is at.
    mark: String,
    durable: Vec<u8>,
    candidates: Vec<(u64, Vec<Vec<u8>>)>,
    requirements: Requirements,
}

/// What completed flushes require each view to show: per sector, the
/// smallest op number its label may carry.
#[derive(Clone, Default)]
struct Requirements {
    origin: Vec<u64>,
    snapshot: Vec<u64>,
}

fn sector(image: &[u8], s: u64) -> &[u8] {
    &image[s as usize * 512..(s as usize + 1) * 512]
}

/// The crash classes of a log: one at each mark (see the module doc).
fn classes(workload: &Workload, log: &Log, initial: &[u8]) -> Vec<Class> {
    let numbered = workload.numbered();
    let mut requirements = Requirements { origin: vec![0; workload.origin_sectors as usize], snapshot: vec![0; workload.origin_sectors as usize] };
    let mut out = Vec::new();
    let mut durable = initial.to_vec();
    let mut acknowledged = 0u64;
    for (m, entry) in log.entries.iter().enumerate() {
        let Some(text) = entry.mark_text() else {
            if let Some(data) = entry.data() {
                let at = entry.sector as usize * 512;
                if at + data.len() <= durable.len() {
                    durable[at..at + data.len()].copy_from_slice(data);
                }
            }
            continue;
        };
        if let Some(n) = text.strip_prefix("op").and_then(|n| n.parse::<u64>().ok()) {
            acknowledged = acknowledged.max(n);
            if let Some((_, GuestOp::Flush { snapshot })) = numbered.iter().find(|(k, _)| *k == n) {
                for (k, op) in &numbered {
                    if let GuestOp::Write { snapshot: target, sector, sectors } = op {
                        if *k < n && target == snapshot {
                            let required = if *snapshot { &mut requirements.snapshot } else { &mut requirements.origin };
                            for s in *sector..sector + sectors {
                                required[s as usize] = required[s as usize].max(*k);
                            }
                        }
                    }
                }
            }
        } else if text == sim::logwrites::END_MARK {
            acknowledged = u64::MAX;
        }
        // The writes completed but not flushed at the mark: the plain
        // entries of the first splice after it (the run of plain writes
        // just before the next PREFLUSH entry, or before the end mark).
        let next_flush = (m + 1..log.entries.len()).find(|&i| log.entries[i].flags.flush() || log.entries[i].mark_text() == Some(sim::logwrites::END_MARK));
        let plain = |i: usize| {
            let e = &log.entries[i];
            e.data().is_some() && !e.flags.fua() && !e.flags.flush()
        };
        let splice: Vec<usize> = match next_flush {
            Some(f) => (m + 1..f).rev().take_while(|&i| plain(i)).collect(),
            None => Vec::new(),
        };
        let mut candidates: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = std::collections::BTreeMap::new();
        for &i in splice.iter().rev() {
            let entry = &log.entries[i];
            let data = entry.data().unwrap_or_default();
            // A workload write of a later operation was not issued yet.
            let later = data.chunks(512).filter_map(parse_label).any(|l| l.workload == workload.id && l.op > acknowledged);
            if later {
                continue;
            }
            for (j, bytes) in data.chunks(512).enumerate() {
                let s = entry.sector + j as u64;
                if (s as usize + 1) * 512 > durable.len() {
                    continue;
                }
                let values = candidates.entry(s).or_insert_with(|| vec![sector(&durable, s).to_vec()]);
                if !values.iter().any(|v| v == bytes) {
                    values.push(bytes.to_vec());
                }
            }
        }
        let candidates = candidates.into_iter().filter(|(_, values)| values.len() > 1).collect();
        out.push(Class { mark: text.to_string(), durable: durable.clone(), candidates, requirements: requirements.clone() });
    }
    out
}

/// Judges one crash state of the data disk.
fn judge(workload: &Workload, image: &[u8], requirements: &Requirements) -> Result<(), String> {
    let origin = workload.origin_sectors;
    let chunk = u64::from(workload.chunk_sectors);
    let cow = image[origin as usize * 512..].to_vec();
    let queue = CompletionQueue::new();
    let device = Arc::new(MemDevice::from_bytes(cow, &queue));
    let config = StoreConfig { kind: StoreKind::Persistent, chunk_sectors: Some(workload.chunk_sectors), mutations: Default::default() };
    let loaded = load_blocking(&queue, Arc::clone(&device), 512, config).map_err(|e| format!("I4: our engine refuses the kernel's COW: {e}"))?;
    if loaded.outcome == LoadOutcome::Invalid {
        return Err("I7: the kernel's COW says the snapshot is invalid, and nothing here overflows it".into());
    }
    let table = &loaded.exceptions;
    let show = |bytes: &[u8]| parse_label(bytes).map_or_else(|| format!("unlabelled bytes {:?}", String::from_utf8_lossy(&bytes[..24])), |l| format!("{l:?}"));
    for s in 0..origin {
        let bytes = sector(image, s);
        let label = parse_label(bytes).filter(|l| l.workload == workload.id && !l.snapshot && l.sector == s);
        let Some(label) = label else { return Err(format!("I1: origin sector {s} holds {}", show(bytes))) };
        if label.op > 0 && table.lookup(s / chunk).is_none() {
            return Err(format!(
                "I2: origin chunk {} was overwritten (sector {s} holds op {}) but the snapshot has no exception for it: the snapshot lost that chunk",
                s / chunk,
                label.op
            ));
        }
        if label.op < requirements.origin[s as usize] {
            return Err(format!("I1: origin sector {s} holds op {} although op {} was flushed", label.op, requirements.origin[s as usize]));
        }
        let view = match table.lookup(s / chunk) {
            Some(new_chunk) => sector(&image[origin as usize * 512..], new_chunk * chunk + s % chunk),
            None => bytes,
        };
        let seen = parse_label(view).filter(|l| l.workload == workload.id && l.sector == s && (l.snapshot || l.op == 0));
        let Some(seen) = seen else { return Err(format!("I5: snapshot sector {s} reads {}", show(view))) };
        let seen_op = if seen.snapshot { seen.op } else { 0 };
        if seen_op < requirements.snapshot[s as usize] {
            return Err(format!("I1: snapshot sector {s} reads op {seen_op} although op {} was flushed", requirements.snapshot[s as usize]));
        }
    }
    Ok(())
}

/// Judges every class of a recording.
fn judge_recording(workload: &Workload, dir: &Path, per_sector_states_max: u64) -> Result<Judgement, String> {
    let started = Instant::now();
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let log = Log::parse(&read("cow.img")?).map_err(|e| format!("{}: {e}", dir.join("cow.img").display()))?;
    let initial = read("initial.img")?;
    let final_disk = read("origin.img")?;
    let mut replayed = initial.clone();
    for entry in &log.entries {
        if let Some(data) = entry.data() {
            let at = entry.sector as usize * 512;
            replayed[at..at + data.len()].copy_from_slice(data);
        }
    }
    let mut judgement = Judgement {
        workload: workload.name.clone(),
        entries: log.entries.len(),
        flush_epochs: log.entries.iter().filter(|e| e.flags.flush()).count(),
        replay_matches_disk: replayed == final_disk,
        kernel_status: std::fs::read_to_string(dir.join("status.txt")).unwrap_or_default().lines().next().unwrap_or("").to_string(),
        space_log2: f64::NEG_INFINITY,
        ..Judgement::default()
    };
    if !judgement.replay_matches_disk {
        judgement.findings.push("the log replayed over the initial disk differs from the disk the kernel left".into());
    }
    if log.entries.last().and_then(|e| e.mark_text()) != Some(sim::logwrites::END_MARK) {
        judgement.findings.push("the log does not end with the target's end mark: it is incomplete".into());
    }
    let chunk = u64::from(workload.chunk_sectors);
    let layout = Layout::new(ChunkSize::from_sectors(workload.chunk_sectors));
    let is_metadata = |s: u64| s >= workload.origin_sectors && {
        let cow_sector = s - workload.origin_sectors;
        cow_sector == 0 || (cow_sector / chunk != 0 && layout.is_metadata_chunk(cow_sector / chunk))
    };
    let mut space_log2 = f64::NEG_INFINITY;
    for class in classes(workload, &log, &initial) {
        judgement.classes += 1;
        let (metadata, data): (Vec<usize>, Vec<usize>) = (0..class.candidates.len()).partition(|&i| is_metadata(class.candidates[i].0));
        let class_log2: f64 = class.candidates.iter().map(|(_, v)| (v.len() as f64).log2()).sum();
        space_log2 = if space_log2 == f64::NEG_INFINITY { class_log2 } else { space_log2.max(class_log2) + (1.0 + (-(space_log2 - class_log2).abs()).exp2()).log2() };
        let metadata_states: f64 = metadata.iter().map(|&i| class.candidates[i].1.len() as f64).product();
        let values_max = data.iter().map(|&i| class.candidates[i].1.len()).max().unwrap_or(1);
        let whole = class_log2 <= 12.0;
        let states = if whole { class_log2.exp2() } else { metadata_states * values_max as f64 };
        let complete = states <= per_sector_states_max as f64;
        judgement.classes_complete += usize::from(complete);
        // Odometer over (metadata picks, data value index), or over every sector when whole.
        let digits: Vec<usize> = if whole { (0..class.candidates.len()).collect() } else { metadata.clone() };
        let mut picked = vec![0usize; digits.len()];
        let mut image = class.durable.clone();
        let mut judged_in_class = 0u64;
        'states: loop {
            let data_values: Vec<usize> = if whole { vec![0] } else { (0..values_max).collect() };
            for v in data_values {
                for (d, &i) in digits.iter().enumerate() {
                    let (s, values) = &class.candidates[i];
                    image[*s as usize * 512..(*s as usize + 1) * 512].copy_from_slice(&values[picked[d]]);
                }
                if !whole {
                    for &i in &data {
                        let (s, values) = &class.candidates[i];
                        image[*s as usize * 512..(*s as usize + 1) * 512].copy_from_slice(&values[v.min(values.len() - 1)]);
                    }
                }
                judged_in_class += 1;
                if let Err(finding) = judge(workload, &image, &class.requirements) {
                    judgement.findings.push(format!("crash at mark {:?}: {finding}", class.mark));
                    break 'states;
                }
                if !complete && judged_in_class >= per_sector_states_max {
                    break 'states;
                }
            }
            let Some(d) = (0..digits.len()).find(|&d| picked[d] + 1 < class.candidates[digits[d]].1.len()) else { break };
            picked[..d].iter_mut().for_each(|p| *p = 0);
            picked[d] += 1;
        }
        judgement.states_judged += judged_in_class;
    }
    judgement.space_log2 = space_log2;
    judgement.seconds = started.elapsed().as_secs_f64();
    Ok(judgement)
}

/// Records (unless `judge_only`) and judges every workload; prints a line
/// each and a summary, writes `kernel-crash.json`. Whether no finding was made.
pub fn run(args: &KernelCrashArgs) -> Result<bool, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let out = args.out.clone().unwrap_or_else(|| root.join("target/interop"));
    let mut workloads = scenario_workloads();
    for run in 0..args.runs {
        workloads.push(random_workload(args.seed * 1000 + u64::from(run), 1000 + u64::from(run)));
    }
    if let Some(only) = &args.only {
        workloads.retain(|w| w.name.contains(only.as_str()));
    }
    let machine = if args.judge_only { None } else { Some(vm::prepare(&out.join("cache"))?) };
    if let Some(machine) = &machine {
        println!("kernel: {} ({}), qemu TCG; {} workloads", machine.release, machine.package, workloads.len());
    }
    let mut judgements = Vec::new();
    for workload in &workloads {
        let dir = out.join("kernel-crash").join(format!("w{}", workload.id));
        if let Some(machine) = &machine {
            if let Err(error) = record(machine, &dir, workload) {
                println!("ERROR {}: {error}", workload.name);
                judgements.push(Judgement { workload: workload.name.clone(), findings: vec![format!("recording failed: {error}")], ..Judgement::default() });
                continue;
            }
        }
        let judgement = judge_recording(workload, &dir, args.per_sector_states_max)?;
        println!(
            "{} {:<48} {:>6} entries {:>4} flush epochs {:>5} classes ({} complete) {:>8} states judged, space about 2^{:.1}, {} finding(s), {:.1} s{}",
            if judgement.findings.is_empty() { "PASS" } else { "FAIL" },
            judgement.workload,
            judgement.entries,
            judgement.flush_epochs,
            judgement.classes,
            judgement.classes_complete,
            judgement.states_judged,
            judgement.space_log2,
            judgement.findings.len(),
            judgement.seconds,
            if judgement.replay_matches_disk { "" } else { "; the replayed log differs from the disk" }
        );
        for finding in &judgement.findings {
            println!("    {finding}");
        }
        judgements.push(judgement);
    }
    let states: u64 = judgements.iter().map(|j| j.states_judged).sum();
    let seconds: f64 = judgements.iter().map(|j| j.seconds).sum();
    let clean = judgements.iter().filter(|j| j.findings.is_empty()).count();
    println!(
        "{} workloads, {clean} without a finding; {states} kernel crash states judged in {seconds:.1} s ({:.0} states/s on one core)",
        judgements.len(),
        states as f64 / seconds.max(1e-9)
    );
    let path = out.join("kernel-crash.json");
    let report = serde_json::json!({ "kernel": machine.as_ref().map(|m| m.release.clone()), "workloads": judgements, "states_judged": states });
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(&path, serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    println!("report: {}", path.display());
    Ok(clean == judgements.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        let label = Label { workload: 7, op: 12, snapshot: true, sector: 4095 };
        let bytes = label_bytes(label);
        assert_eq!(bytes.len(), 512);
        assert_eq!(parse_label(&bytes), Some(label));
        assert_eq!(parse_label(&[0; 512]), None);
    }
}
