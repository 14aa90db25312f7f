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
//! the other: the kernel's cross-device ordering would need a log per disk
//! and a model of two caches, which is not recorded here.) The guest job
//! (`interop/guest/jobs/record.sh`) writes labelled sectors (workload,
//! operation, target, sector), runs the writes of a batch at once, logs a
//! mark `opN` after each acknowledged operation (`failN` after a write a
//! full `PO` snapshot refused), and merges with a `snapshot-merge` target
//! after flushing both devices and marking `merging`. Its writes reach the
//! device as whole 4 KiB pages, through the guest's page cache.
//!
//! # Crash states
//!
//! One class at each mark ([`judge`] says why there and not inside an
//! operation), and during a merge one after every flush and FUA write
//! (the guest issues nothing then): what was logged before the point is durable; each sector of
//! the writes completed but not flushed holds its durable value or any
//! value written since, torn at sector granularity. A class is judged
//! whole (every combination) when its space is at most 2^12 states, else
//! as `explore` judges a point: every combination of the COW's metadata
//! sectors times each value index of the data sectors. The space a class
//! stands for is the product of every sector's candidate values.
//!
//! # The judge
//!
//! Each state's COW slice is loaded by our engine (I4: it must load) and
//! the views are checked through the labels (invariant ids of SPEC §5):
//! - an invalid snapshot only once the writes issued by then need more
//!   chunks than the COW holds (I9);
//! - every origin sector holds a label of its own sector, at least as new
//!   as the last flush of the origin requires (I3);
//! - an origin chunk holding a written label has an exception (I1: the
//!   copy was committed before the origin write) — unless the COW may have
//!   overflowed, where the kernel's plain `valid = 0` header write may be
//!   lost (K1, counted; a finding with `--strict`);
//! - every snapshot sector reads its initial label or a label written to
//!   the snapshot (I2), at least as new as the last snapshot flush requires (I3);
//! - during a merge, a chunk no longer recorded holds on the origin what the
//!   snapshot showed when the merge began, and a chunk still recorded is
//!   served from the COW as it was (I10).
//!
//! # Layout
//!
//! [`workload`] (the guest's operations, labels, translations of
//! `scenarios/`, random workloads), [`record`] (one boot), [`judge`] (the
//! classes and the judge), [`differential`] (our engine's write stream
//! against the kernel's), [`confirm`] (sampled states loaded in the kernel).

pub mod confirm;
pub mod differential;
pub mod judge;
pub mod record;
pub mod schedule;
pub mod workload;

use std::path::{Path, PathBuf};

use engine::store::KernelPatches;
use judge::{JudgeConfig, Judgement, judge_log};
use sim::logwrites::Log;
use workload::{Workload, random_workload, reused_cow_workloads, scenario_workloads};

use crate::vm;

/// Options of `cargo xtask kernel-crash`.
#[derive(Debug, Clone, clap::Args)]
pub struct KernelCrashArgs {
    /// Where images, logs and the report go (default `target/interop`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Random workloads with four parallel writers, besides the scenario translations.
    #[arg(long, default_value_t = 16)]
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
    /// Crash states per workload the kernel loads to confirm our status and
    /// view (spread over the log; every state with a finding is added); 0: none.
    #[arg(long, default_value_t = 4)]
    pub confirm_per_workload: usize,
    /// Print every entry of each recorded log (where it lands, its flags, the label it carries).
    #[arg(long)]
    pub print_log: bool,
    /// Make the kernel behaviours K1 (an invalidated snapshot back valid
    /// after a crash) and K3 (an earlier snapshot's records loaded by a new
    /// one) findings.
    #[arg(long)]
    pub strict: bool,
    /// Record with dm-snapshot.ko built from Debian's source of the same
    /// kernel with the `*.patch` files of DIR applied in name order
    /// (recordings and report under `OUT/patched`).
    #[arg(long, value_name = "DIR")]
    pub patches: Option<PathBuf>,
    /// Which kernel our engine behaves as in the write-stream differential:
    /// `stock`, or `applied` (the kernel-patches/ series). Default: `applied`
    /// with `--patches`, `stock` without.
    #[arg(long, value_name = "stock|applied", value_parser = parse_kernel_patches)]
    pub engine: Option<KernelPatches>,
}

fn parse_kernel_patches(text: &str) -> Result<KernelPatches, String> {
    KernelPatches::parse(text).ok_or_else(|| format!("{text:?} is neither `stock` nor `applied`"))
}

/// A recording kept in a directory: the log (`cow.img`), the disk before
/// (`initial.img`) and the disk the kernel left (`origin.img`).
struct Recording {
    log: Log,
    initial: Vec<u8>,
    final_disk: Vec<u8>,
    kernel_status: String,
}

fn load_recording(dir: &Path, workload: &Workload) -> Result<Recording, String> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    // The guest read its operations from the results disk: a recording of
    // another workload (the list changed since, numbering shifted) is refused.
    let script = workload.script().into_bytes();
    let recorded = read("results.img")?;
    if !recorded.starts_with(&script) || recorded.get(script.len()).is_some_and(|&b| b != 0) {
        return Err(format!(
            "{}: this recording is not of workload {:?} (its operations differ: the workload list changed since it was recorded); record it again",
            dir.display(),
            workload.name
        ));
    }
    let log = Log::parse(&read("cow.img")?).map_err(|e| format!("{}: {e}", dir.join("cow.img").display()))?;
    let kernel_status = std::fs::read_to_string(dir.join("status.txt")).unwrap_or_default().lines().next().unwrap_or("").to_string();
    Ok(Recording { log, initial: read("initial.img")?, final_disk: read("origin.img")?, kernel_status })
}

/// Prints a log entry by entry: where each write lands (origin sector, or
/// COW sector and chunk) and the label of its first sector.
fn print_log(workload: &Workload, log: &Log) {
    println!("log of {}:", workload.name);
    for (i, entry) in log.entries.iter().enumerate() {
        let place = match entry.data() {
            Some(_) if entry.sector < workload.origin_sectors => format!(" origin sector {}", entry.sector),
            Some(_) => {
                let cow = entry.sector - workload.origin_sectors;
                format!(" COW sector {cow} (chunk {})", cow / u64::from(workload.chunk_sectors))
            }
            None => String::new(),
        };
        let label = entry.data().and_then(|d| workload::Label::parse(&d[..512.min(d.len())])).map(|l| format!(" {l:?}")).unwrap_or_default();
        println!("{i:5} {entry}{place}{label}");
    }
}

/// Judges a recording; only the judging is timed.
fn judge_recording(workload: &Workload, recording: &Recording, config: JudgeConfig) -> Judgement {
    let started = std::time::Instant::now();
    let mut judgement = judge_log(workload, &recording.log, &recording.initial, Some(&recording.final_disk), config);
    judgement.kernel_status = recording.kernel_status.clone();
    judgement.seconds = started.elapsed().as_secs_f64();
    judgement
}

/// How each workload is judged and compared.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    /// Crash states per workload kept for the kernel to load.
    pub samples: usize,
    pub strict: bool,
    pub per_sector_states_max: u64,
    /// Which kernel our engine behaves as in the write-stream differential:
    /// the stock one, or the one with the kernel-patches/ series.
    pub kernel_patches: KernelPatches,
    /// Print each recorded log entry by entry before judging it.
    pub print_log: bool,
}

/// One workload recorded (or read back), judged and compared.
pub struct WorkloadRun {
    pub judgement: Judgement,
    /// The write-stream differential: single-writer workloads only (a
    /// parallel batch completes in an order neither side fixes).
    pub differential: Option<differential::Differential>,
    /// The schedule-following differential: every workload.
    pub following: Option<schedule::Following>,
}

/// Records `workload` in `dir` (with a machine), then judges the recording
/// kept there and compares our engine's write stream with the kernel's.
/// A recording that fails is a finding, not an error.
pub fn run_workload(machine: Option<&vm::Machine>, dir: &Path, workload: &Workload, pipeline: &Pipeline) -> Result<WorkloadRun, String> {
    if let Some(machine) = machine {
        if let Err(error) = record::record(machine, dir, workload) {
            let judgement =
                Judgement { workload: workload.name.clone(), findings: vec![format!("recording failed: {error}")], ..Judgement::default() };
            return Ok(WorkloadRun { judgement, differential: None, following: None });
        }
    }
    let recording = load_recording(dir, workload)?;
    if pipeline.print_log {
        print_log(workload, &recording.log);
    }
    let config = JudgeConfig { per_sector_states_max: pipeline.per_sector_states_max, strict: pipeline.strict, samples: pipeline.samples };
    let judgement = judge_recording(workload, &recording, config);
    let single_writer = workload.ops.iter().all(|op| !matches!(op, workload::GuestOp::Parallel(_)));
    let differential = single_writer.then(|| match differential::record_engine(workload, &recording.initial, pipeline.kernel_patches) {
        Ok(ours) => differential::compare(workload, &recording.initial, &recording.log, &ours),
        Err(error) => differential::Differential { workload: workload.name.clone(), divergences: vec![error], ..Default::default() },
    });
    let following = schedule::follow(workload, &recording.initial, &recording.log, pipeline.kernel_patches, schedule::Budget::default());
    Ok(WorkloadRun { judgement, differential, following: Some(following) })
}

/// The kernel loads every sampled state of `runs` in one boot.
pub fn confirm_runs(machine: &vm::Machine, dir: &Path, workloads: &[Workload], runs: &[WorkloadRun]) -> Result<Vec<confirm::Confirmation>, String> {
    let by_name = |name: &str| workloads.iter().find(|w| w.name == name);
    let samples: Vec<_> =
        runs.iter().flat_map(|r| r.judgement.samples.iter().filter_map(move |s| Some((by_name(&r.judgement.workload)?, s)))).collect();
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    confirm::confirm(machine, dir, &samples)
}

fn print_judgement(judgement: &Judgement) {
    println!(
        "{} {:<48} {:>6} entries {:>4} flush epochs {:>5} classes ({} complete) {:>8} states judged ({} distinct), space about 2^{:.1}, K1 {}, K3 {}, {} finding(s), {:.1} s{}",
        if judgement.findings.is_empty() { "PASS" } else { "FAIL" },
        judgement.workload,
        judgement.entries,
        judgement.flush_epochs,
        judgement.classes,
        judgement.classes_complete,
        judgement.states_judged,
        judgement.distinct_states,
        judgement.space_log2,
        judgement.kernel_behaviour_k1,
        judgement.kernel_behaviour_k3,
        judgement.findings.len(),
        judgement.seconds,
        if judgement.replay_matches_disk { "" } else { "; the replayed log differs from the disk" }
    );
    for finding in &judgement.findings {
        println!("    {finding}");
    }
}

fn print_differential(differential: &differential::Differential) {
    println!(
        "{} {:<48} {:>6} kernel entries {:>6} ours; {} metadata writes ({} commits, ours {}), {} COW data sectors, {} origin sectors compared; {} divergence(s)",
        if differential.divergences.is_empty() { "SAME" } else { "DIFF" },
        differential.workload,
        differential.kernel_entries,
        differential.engine_entries,
        differential.metadata_writes,
        differential.commits.0,
        differential.commits.1,
        differential.data_sectors,
        differential.origin_sectors,
        differential.divergences.len()
    );
    for divergence in &differential.divergences {
        println!("    {divergence}");
    }
}

fn print_following(following: &schedule::Following) {
    let count = if following.exhausted { format!("{}", following.matching_schedules) } else { format!("at least {}", following.matching_schedules) };
    println!(
        "{} {:<48} {:>6} kernel entries; {count} schedule(s) of ours write them exactly ({} moves; {} runs searched)",
        match following.verdict() {
            schedule::Verdict::Follows => "FOLLOWS",
            schedule::Verdict::Diverges => "DIVERGES",
            schedule::Verdict::Undecided => "UNDECIDED",
        },
        following.workload,
        following.kernel_entries,
        following.moves,
        following.replays
    );
    if let Some(divergence) = &following.divergence {
        println!("    {divergence}");
    }
}

/// The workloads of a run: the scenario translations, the reused-COW
/// workloads, and `runs` random ones; those whose name contains `only`.
fn workloads(args: &KernelCrashArgs) -> Vec<Workload> {
    let mut workloads = scenario_workloads();
    workloads.extend(reused_cow_workloads());
    workloads.push(workload::slow_cow());
    for run in 0..args.runs {
        // One in three ends with a merge, one in three fills a PO snapshot.
        workloads.push(random_workload(args.seed * 1000 + u64::from(run), 1000 + u64::from(run), run % 3 == 1, run % 3 == 2));
    }
    if let Some(only) = &args.only {
        workloads.retain(|w| w.name.contains(only.as_str()));
    }
    workloads
}

/// Records (unless `judge_only`) and judges every workload; prints a line
/// each and a summary, writes `kernel-crash.json`. Whether no finding was made.
pub fn run(args: &KernelCrashArgs) -> Result<bool, crate::TaskError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let base = args.out.clone().unwrap_or_else(|| root.join("target/interop"));
    let out = if args.patches.is_some() { base.join("patched") } else { base.clone() };
    let workloads = workloads(args);
    let needs_machine = !args.judge_only || args.confirm_per_workload > 0;
    let machine = if needs_machine { Some(vm::prepare(&base.join("cache"), args.patches.as_deref())?) } else { None };
    if let Some(machine) = &machine {
        println!("kernel: {} ({}), qemu TCG; {}; {} workloads", machine.release, machine.package, machine.module, workloads.len());
    }
    // With a patch series our engine behaves as the kernel with the kernel-patches/ series, unless told otherwise.
    let kernel_patches = args.engine.unwrap_or(if args.patches.is_some() { KernelPatches::Applied } else { KernelPatches::Stock });
    println!("write-stream differential against our engine with the kernel-patches series {}", kernel_patches.name());
    let pipeline = Pipeline {
        samples: args.confirm_per_workload,
        strict: args.strict,
        per_sector_states_max: args.per_sector_states_max,
        kernel_patches,
        print_log: args.print_log,
    };
    let recorder = machine.as_ref().filter(|_| !args.judge_only);
    let mut runs = Vec::new();
    for workload in &workloads {
        let dir = out.join("kernel-crash").join(format!("w{}", workload.id));
        let run = run_workload(recorder, &dir, workload, &pipeline)?;
        print_judgement(&run.judgement);
        if let Some(differential) = &run.differential {
            print_differential(differential);
        }
        if let Some(following) = &run.following {
            print_following(following);
        }
        runs.push(run);
    }
    let judgements: Vec<&Judgement> = runs.iter().map(|r| &r.judgement).collect();
    let differentials: Vec<&differential::Differential> = runs.iter().filter_map(|r| r.differential.as_ref()).collect();
    let states: u64 = judgements.iter().map(|j| j.states_judged).sum();
    let distinct: u64 = judgements.iter().map(|j| j.distinct_states).sum();
    let seconds: f64 = judgements.iter().map(|j| j.seconds).sum();
    let clean = judgements.iter().filter(|j| j.findings.is_empty()).count();
    let k1: u64 = judgements.iter().map(|j| j.kernel_behaviour_k1).sum();
    let k3: u64 = judgements.iter().map(|j| j.kernel_behaviour_k3).sum();
    println!(
        "{} workloads, {clean} without a finding, K1 in {k1} states, K3 in {k3}; {states} kernel crash states judged ({distinct} distinct) in {seconds:.1} s ({:.0} states/s, {:.0} distinct/s on one core)",
        judgements.len(),
        states as f64 / seconds.max(1e-9),
        distinct as f64 / seconds.max(1e-9)
    );
    let mut confirmations = Vec::new();
    if let Some(machine) = machine.as_ref().filter(|_| args.confirm_per_workload > 0) {
        confirmations = confirm_runs(machine, &out.join("kernel-crash").join("confirm"), &workloads, &runs)?;
        for c in confirmations.iter().filter(|c| !c.agree) {
            println!(
                "DIFFER {}: kernel {:?} view {}, ours {:?} view {}",
                c.state, c.kernel_status, c.kernel_view_md5, c.engine_status, c.engine_view_md5
            );
        }
        let agree = confirmations.iter().filter(|c| c.agree).count();
        println!(
            "the kernel confirms: {agree} of {} crash states loaded in one boot give our status line and view ({} invalid, {} valid)",
            confirmations.len(),
            confirmations.iter().filter(|c| c.engine_status == "Invalid").count(),
            confirmations.iter().filter(|c| c.engine_status != "Invalid").count()
        );
    }
    let confirmed = confirmations.iter().all(|c| c.agree);
    let same = differentials.iter().filter(|d| d.divergences.is_empty()).count();
    println!("write-stream differential: {same} of {} single-writer workloads issue the kernel's writes", differentials.len());
    let followings: Vec<&schedule::Following> = runs.iter().filter_map(|r| r.following.as_ref()).collect();
    let count = |v: schedule::Verdict| followings.iter().filter(|f| f.verdict() == v).count();
    println!(
        "schedule-following differential: {} of {} workloads written exactly as the kernel wrote them under the kernel's timing, {} diverge, {} undecided (search bounded)",
        count(schedule::Verdict::Follows),
        followings.len(),
        count(schedule::Verdict::Diverges),
        count(schedule::Verdict::Undecided)
    );
    let path = out.join("kernel-crash.json");
    let report = serde_json::json!({
        "kernel": machine.as_ref().map(|m| m.release.clone()),
        "module": machine.as_ref().map(|m| m.module.clone()),
        "engine_kernel_patches": kernel_patches.name(),
        "workloads": judgements,
        "states_judged": states,
        "kernel_behaviour_k1": k1,
        "kernel_behaviour_k3": k3,
        "distinct_states": distinct,
        "confirmations": confirmations,
        "differentials": differentials,
        "schedule_following": followings,
    });
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(&path, serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("report: {}", path.display());
    Ok(clean == judgements.len() && confirmed)
}

#[cfg(test)]
mod kernel_logs {
    //! Two logs the real kernel (Debian's 6.1) wrote, kept in
    //! `crash-traces/kernel/`, judged and compared on every test run:
    //! `basic-cow` passes the judge and our engine issues its writes;
    //! `overflow-p` holds the crash states where the kernel's invalidation
    //! is lost (K1, docs/KERNEL-FINDINGS.md), counted, and a finding when strict.
    use super::*;
    use crate::kernel_crash::judge::JudgeConfig;
    use crate::kernel_crash::workload::{Label, initial_image};

    /// A kept log (`NAME.log`, or gzipped `NAME.log.gz`) and the workload
    /// number its labels carry.
    fn kept_log(name: &str) -> (Log, u64) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crash-traces/kernel");
        let bytes = match std::fs::read(root.join(format!("{name}.log"))) {
            Ok(bytes) => bytes,
            Err(_) => {
                use std::io::Read;
                let gz = std::fs::read(root.join(format!("{name}.log.gz"))).expect("kept kernel log");
                let mut bytes = Vec::new();
                flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut bytes).expect("a gzipped log");
                bytes
            }
        };
        let log = Log::parse(&bytes).expect("a well-formed dm-log-writes log");
        let id = log.entries.iter().filter_map(|e| e.data()).flat_map(|d| d.chunks(512)).find_map(Label::parse).expect("a labelled write").workload;
        (log, id)
    }

    /// The scenario's translation with the workload number the log's labels carry.
    fn kept(name: &str) -> (Workload, Log) {
        let (log, id) = kept_log(name);
        let mut workload = workload::scenario_workloads()
            .into_iter()
            .chain(workload::reused_cow_workloads())
            .find(|w| w.name == name)
            .expect("the scenario translates, or names a reused-COW workload");
        workload.id = id;
        (workload, log)
    }

    fn config(strict: bool) -> JudgeConfig {
        JudgeConfig { per_sector_states_max: 1 << 16, strict, samples: 0 }
    }

    #[test]
    fn basic_cow_as_the_kernel_wrote_it_passes_and_our_engine_issues_its_writes() {
        let (workload, log) = kept("basic-cow");
        let initial = initial_image(&workload);
        let judgement = judge_log(&workload, &log, &initial, None, config(true));
        assert_eq!(judgement.findings, Vec::<String>::new());
        assert_eq!(judgement.kernel_behaviour_k1, 0);
        assert!(judgement.states_judged > 1000, "{} states", judgement.states_judged);
        let ours = differential::record_engine(&workload, &initial, KernelPatches::Stock).expect("our engine runs basic-cow");
        assert_eq!(differential::compare(&workload, &initial, &log, &ours).divergences, Vec::<String>::new());
    }

    /// Our engine, driven in the kernel's own timing, writes each kept log
    /// exactly: the stock kernel's as the stock port, the patched kernel's
    /// with the series applied.
    #[test]
    fn every_kept_log_is_followed_by_our_engine_in_the_kernels_timing() {
        // rewrite-same-chunks: one writer writes a page of the snapshot, then
        // the same page of the origin; each writeback takes its own device's page.
        for (name, kernel_patches) in
            [("basic-cow", KernelPatches::Stock), ("overflow-p", KernelPatches::Stock), ("rewrite-same-chunks", KernelPatches::Stock)]
        {
            let (workload, log) = kept(name);
            let following = schedule::follow(&workload, &initial_image(&workload), &log, kernel_patches, schedule::Budget::default());
            assert_eq!(following.verdict(), schedule::Verdict::Follows, "{name}: {:?}", following.divergence);
        }
        for (name, kernel_patches) in [("reused-cow-4096", KernelPatches::Stock), ("reused-cow-4096-patched", KernelPatches::Applied)] {
            let (log, id) = kept_log(name);
            let mut workload = workload::reused_cow_workloads().remove(0);
            workload.id = id;
            let following = schedule::follow(&workload, &initial_image(&workload), &log, kernel_patches, schedule::Budget::default());
            assert_eq!(following.verdict(), schedule::Verdict::Follows, "{name}: {:?}", following.divergence);
            // The stock log is not the patched kernel's, nor the reverse: the header writes differ.
            let other = if kernel_patches == KernelPatches::Stock { KernelPatches::Applied } else { KernelPatches::Stock };
            let crossed = schedule::follow(&workload, &initial_image(&workload), &log, other, schedule::Budget::default());
            assert_eq!(crossed.verdict(), schedule::Verdict::Diverges, "{name} with the engine {other:?}");
        }
    }

    /// Four writers at once, through the guest's page cache: a writer may
    /// open a device while another's close writes it back, and the kernel
    /// commits while clones of one page are still being mapped. Our engine,
    /// driven in the kernel's timing, writes these logs exactly.
    #[test]
    fn kept_logs_of_four_parallel_writers_are_followed() {
        for (seed, name) in [(1008, "random-1008-po-filled-again"), (1014, "random-1014-po-filled")] {
            let (log, id) = kept_log(name);
            let workload = workload::random_workload(seed, id, false, true);
            let following = schedule::follow(&workload, &initial_image(&workload), &log, KernelPatches::Stock, schedule::Budget::default());
            assert_eq!(following.verdict(), schedule::Verdict::Follows, "{name}: {:?}", following.divergence);
        }
    }

    /// A kernel that lets an origin write go before the commit of its
    /// chunk's copy (kernel mutant 03's order) writes a log no schedule of
    /// ours writes, and the search says so having tried them all.
    #[test]
    fn a_log_with_an_origin_write_before_its_commit_is_not_followed() {
        let (workload, mut log) = kept("basic-cow");
        let commit = log.entries.iter().position(|e| e.flags.fua() && e.data().is_some()).expect("a commit");
        let after = (commit..log.entries.len()).find(|&i| log.entries[i].data().is_some() && log.entries[i].sector < workload.origin_sectors);
        let origin = after.expect("an origin write after the first commit");
        let moved = log.entries.remove(origin);
        // Logged just before the commit's flush: completed before the commit was issued.
        log.entries.insert(commit - 1, moved);
        let following = schedule::follow(&workload, &initial_image(&workload), &log, KernelPatches::Stock, schedule::Budget::default());
        assert_eq!(following.verdict(), schedule::Verdict::Diverges, "{following:?}");
    }

    #[test]
    fn overflow_p_as_the_kernel_wrote_it_loses_its_invalidation_in_some_crash_states() {
        let (workload, log) = kept("overflow-p");
        let initial = initial_image(&workload);
        let judgement = judge_log(&workload, &log, &initial, None, config(false));
        assert_eq!(judgement.findings, Vec::<String>::new());
        assert!(judgement.kernel_behaviour_k1 > 0, "no crash state lost the invalid header");
        let strict = judge_log(&workload, &log, &initial, None, config(true));
        assert!(strict.findings.iter().any(|f| f.contains("K1 (I8)")), "{:?}", strict.findings);
    }

    /// A new snapshot on a COW an earlier snapshot used, wiped as lvcreate
    /// wipes it (the first 4 KiB): the stock kernel writes the header and
    /// zeroes area 0 as plain writes, so some crash states before the first
    /// commit load the earlier records (K3); with the kernel-patches series
    /// it zeroes area 0 first and writes the header with PREFLUSH, and no
    /// crash state does.
    #[test]
    fn a_reused_cow_loads_earlier_records_in_some_crash_states_unless_patched() {
        let (log, id) = kept_log("reused-cow-4096");
        let mut workload = workload::reused_cow_workloads().remove(0);
        assert_eq!(workload.name, "reused COW, 4096 B chunks, wiped by lvcreate");
        workload.id = id;
        let initial = initial_image(&workload);
        let judgement = judge_log(&workload, &log, &initial, None, config(false));
        assert_eq!(judgement.findings, Vec::<String>::new());
        assert!(judgement.kernel_behaviour_k3 > 0, "no crash state loaded the earlier records");
        let strict = judge_log(&workload, &log, &initial, None, config(true));
        assert!(strict.findings.iter().any(|f| f.contains("K3 (I4)") && f.contains("\"created\"")), "{:?}", strict.findings);

        let (patched, id) = kept_log("reused-cow-4096-patched");
        workload.id = id;
        let initial = initial_image(&workload);
        let judgement = judge_log(&workload, &patched, &initial, None, config(true));
        assert_eq!(judgement.findings, Vec::<String>::new());
        assert_eq!(judgement.kernel_behaviour_k3, 0);
        assert!(judgement.states_judged > 1000, "{} states", judgement.states_judged);
    }

    /// Four writers fill a `PO` snapshot of 1 KiB chunks; the batches after
    /// operation 13 run while the kernel holds their origin writes, so the
    /// marks of operations 14 to 25 are logged together and the splice
    /// after them holds the kernel's copies and its invalidation, caused by
    /// operations 18 and later. A judge that held those writes against the
    /// point at mark `op14` (operations up to 17 issued, which fit in the
    /// COW) reported the invalidation as too early (I9); it is a state of a
    /// later point, and the kernel's log passes.
    #[test]
    fn a_splice_after_several_marks_is_judged_by_the_operations_issued_by_the_last() {
        let (log, id) = kept_log("random-1008-po-filled");
        let workload = workload::random_workload(1008, id, false, true);
        assert_eq!(workload.name, "random, 4 writers, 1024 B chunks, PO filled (seed 1008)");
        let initial = initial_image(&workload);
        let judgement = judge_log(&workload, &log, &initial, None, config(false));
        assert_eq!(judgement.findings, Vec::<String>::new());
        assert!(judgement.states_judged > 10_000, "{} states", judgement.states_judged);
        let marks: Vec<&str> = log.entries.iter().filter_map(|e| e.mark_text()).collect();
        let run = marks.windows(12).any(|w| w[0] == "op14" && w[11] == "op25");
        assert!(run, "the log no longer holds the marks of three batches in a row");
    }
}
