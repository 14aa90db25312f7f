//! `snapsim explore`: every crash state of a scenario within its bound.
//!
//! Each scenario stops at its first failure: its remaining seeds are
//! skipped (`--keep-going` explores them), so a broken engine gives every
//! scenario's verdict fast. A panic in a run (the engine's, or the
//! harness's) is that seed's failure, reported with its place, message and
//! replay command, and `explore all` goes on with the next scenario.
//!
//! Ctrl-C stops it at once with the summary of the runs finished so far and
//! exit 3 (PARTIAL), or 1 if one had already failed, as the soak does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use sim::scenario::Scenario;
use sim::soak::Cause;

use crate::CliError;
use crate::outcome::{Out, Outcome, Verdict};
use crate::paths::{check_not_an_input, check_output, check_output_dir};
use crate::scenarios::Source;
use crate::settings::{Strict, kernel_patches_note, mutations, parse_kernel_patches};

/// Options of `snapsim explore`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim explore basic-cow\n  snapsim explore all --json > explore.json\n  \
                        snapsim explore crash-during-commit --mutation Z3 --timeline z3.html --export z3-state")]
pub struct ExploreArgs {
    /// A scenario file, or the name of one (`basic-cow`); `all` for every one.
    pub scenario: String,
    /// Explore this seed only, instead of each of the scenario's `seeds`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// After a scenario's first failing seed, explore its remaining seeds
    /// too (each seed still stops at its first failing crash state).
    #[arg(long)]
    pub keep_going: bool,
    /// Where named scenarios are read from; else SNAPSIM_SCENARIOS, else ./scenarios, else the built-in set.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Override the scenario's bound on non-durable writes enumerated per crash point.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=sim::scenario::Limits::WRITES_MAX_MAX as u64))]
    pub writes_max: Option<u64>,
    /// Stop each run after this many distinct states (0: no limit); a stopped run is PARTIAL.
    #[arg(long, default_value_t = 0)]
    pub states_max: u64,
    /// Enumerate whole every crash point whose crash-state space holds at most this many states (0: never).
    #[arg(long, default_value_t = sim::explore::Bounds::default().brute_force_max, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub brute_force_max: u64,
    /// Judge whole, per data sector, every larger crash point that takes at most this many states (0: never).
    #[arg(long, default_value_t = sim::explore::Bounds::default().per_sector_states_max, value_parser = clap::value_parser!(u64).range(0..=1 << 24))]
    pub per_sector_max: u64,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2); SNAPSIM_STRICT=1 too.
    #[arg(long)]
    pub strict: bool,
    /// Which kernel the engine behaves as: `stock` (the default) or
    /// `applied` (the kernel with the kernel-patches/ series: closes K1
    /// and K3).
    #[arg(long, value_name = "stock|applied", value_parser = parse_kernel_patches)]
    pub kernel_patches: Option<engine::store::KernelPatches>,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    pub mutation: Option<String>,
    /// On failure, minimize the scenario and write it to `crash-traces/` (under a new name if one exists).
    #[arg(long)]
    pub save_trace: bool,
    /// On a crash-state failure, write its origin and COW images and the
    /// dmsetup tables that load them into this directory.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Write the run's I/O as an HTML timeline to this file (for a failing
    /// crash state: what persisted, what was lost, what the failure needs).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Replace an existing --timeline file or --export files.
    #[arg(long)]
    pub force: bool,
    /// How each crash state's final read-back is judged: `incremental`
    /// (against the first state of its crash point judged whole, reading
    /// again only what the state changed), `whole` (every sector of every
    /// device), or `both`, comparing the verdicts: a state they disagree on
    /// fails the run as a bug of the harness.
    #[arg(long, value_enum, default_value_t = Judging::Incremental)]
    pub judging: Judging,
    /// Print one JSON object (every run's counts, the verdict, the replay command) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--judging`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Judging {
    Incremental,
    Whole,
    Both,
}

impl ExploreArgs {
    /// The command that replays the exploration of `seed` of `path` with
    /// these options.
    fn replay_command(&self, path: &Path, seed: u64, strict: bool) -> String {
        let mut command = format!("snapsim explore {} --seed {seed}", path.display());
        let defaults = sim::explore::Bounds::default();
        let options = [
            self.writes_max.map(|w| format!("--writes-max {w}")),
            (self.states_max != 0).then(|| format!("--states-max {}", self.states_max)),
            (self.brute_force_max != defaults.brute_force_max).then(|| format!("--brute-force-max {}", self.brute_force_max)),
            (self.per_sector_max != defaults.per_sector_states_max).then(|| format!("--per-sector-max {}", self.per_sector_max)),
            strict.then(|| "--strict".to_string()),
            self.kernel_patches.map(|h| format!("--kernel-patches {}", h.name())),
            self.mutation.as_ref().map(|m| format!("--mutation {m}")),
            (self.judging == Judging::Whole).then(|| "--judging whole".to_string()),
            (self.judging == Judging::Both).then(|| "--judging both".to_string()),
        ];
        for option in options.into_iter().flatten() {
            command.push(' ');
            command.push_str(&option);
        }
        command
    }
}

/// A seed of a scenario that failed, and why.
#[derive(Debug, Clone)]
struct Failed {
    scenario: String,
    seed: u64,
    /// The invariant broken, or a panic.
    cause: Cause,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} seed {} failed {}", self.scenario, self.seed, self.cause)
    }
}

/// What the runs so far found; Ctrl-C prints it.
#[derive(Debug, Default)]
struct Progress {
    runs: Vec<Value>,
    failed: Vec<Failed>,
    partial: Vec<String>,
    /// The seeds of each failing scenario left unexplored after its failure.
    skipped: Vec<(String, Vec<u64>)>,
}

impl Progress {
    /// The outcome of the runs so far; `interrupted` when Ctrl-C cut it short.
    fn outcome(&self, states_max: u64, interrupted: bool) -> Outcome {
        let failed: Vec<String> = self.failed.iter().map(ToString::to_string).collect();
        let skipped: Vec<Value> = self.skipped.iter().map(|(scenario, seeds)| json!({ "scenario": scenario, "seeds": seeds })).collect();
        let body = json!({ "failed": failed, "skipped": skipped, "partial": self.partial, "runs": self.runs, "interrupted": interrupted });
        if !failed.is_empty() {
            Outcome::new(Verdict::Fail, body).detail(failed.join("; "))
        } else if interrupted {
            Outcome::new(Verdict::Partial, body).detail(format!("interrupted after {} run(s); none failed", self.runs.len()))
        } else if !self.partial.is_empty() {
            let why = format!("stopped at --states-max {states_max} before checking every state of {}", self.partial.join(", "));
            Outcome::new(Verdict::Partial, body).detail(why)
        } else {
            Outcome::new(Verdict::Pass, body)
        }
    }
}

/// The checked settings of one explore command.
struct Plan<'a> {
    args: &'a ExploreArgs,
    out: Out,
    mutations: engine::zoo::Mutations,
    strict: bool,
}

/// Explores the scenario (or all); outputs are checked before the first runs.
pub fn run(args: &ExploreArgs, out: Out) -> Result<Outcome, CliError> {
    let source = Source::resolve(args.scenarios.as_deref())?;
    let mut scenarios = if args.scenario == "all" { source.all()? } else { vec![source.load(&args.scenario)?] };
    let strict = Strict::resolve(args.strict)?;
    let plan = Plan { args, out, mutations: mutations(args.mutation.as_deref(), "--mutation")?, strict: strict.on() };
    check_outputs(args, &scenarios)?;
    // The flag overrides the scenarios' own `kernel_patches`, in their runs and in their traces.
    if let Some(kernel_patches) = args.kernel_patches {
        scenarios.iter_mut().for_each(|scenario| scenario.file.shape.kernel_patches = kernel_patches);
    }
    let note = args.kernel_patches.map(kernel_patches_note).unwrap_or_default();
    let from = if args.scenario == "all" { format!(" ({})", source.describe()) } else { String::new() };
    out.line(format!("explore: {} scenario(s){from}{note}{}", scenarios.len(), strict.note()));
    let progress = Arc::new(Mutex::new(Progress::default()));
    stop_on_interrupt(Arc::clone(&progress), args.states_max, out)?;
    let mut outcome = Outcome::new(Verdict::Pass, json!({}));
    for scenario in &scenarios {
        let explored = explore(&plan, scenario, &mut outcome);
        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        progress.runs.extend(explored.runs);
        progress.failed.extend(explored.failed);
        if explored.partial {
            progress.partial.push(scenario.name.clone());
        }
        if !explored.skipped.is_empty() {
            progress.skipped.push((scenario.name.clone(), explored.skipped));
        }
    }
    let progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
    let mut done = progress.outcome(args.states_max, false);
    // Only a crash-state failure has a timeline: not a panic.
    if let (Some(timeline), true) = (&args.timeline, outcome.body.get("first_failure").is_none()) {
        outcome.lines.push(format!("no timeline written to {}: no crash state failed", timeline.display()));
    }
    done.lines = std::mem::take(&mut outcome.lines);
    done.after = std::mem::take(&mut outcome.after);
    if let Value::Object(fields) = outcome.body {
        done.body.as_object_mut().expect("an object").extend(fields);
    }
    if outcome.verdict == Verdict::Partial && done.verdict == Verdict::Pass {
        done.verdict = Verdict::Partial;
        done.detail = outcome.detail;
    }
    Ok(done)
}

/// Ctrl-C prints the summary of the finished runs and exits at once: a
/// crash-state exploration can take minutes, and a user who stops it wants
/// what it found, not silence.
fn stop_on_interrupt(progress: Arc<Mutex<Progress>>, states_max: u64, out: Out) -> Result<(), CliError> {
    ctrlc::set_handler(move || {
        let progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = progress.outcome(states_max, true);
        std::process::exit(i32::from(outcome.print("explore", out)));
    })
    .map_err(|e| CliError::failed(format!("cannot catch Ctrl-C: {e}")))
}

/// Refuses, before anything runs, an output that could not be written or
/// that is one of the scenarios read.
fn check_outputs(args: &ExploreArgs, scenarios: &[Scenario]) -> Result<(), CliError> {
    if let Some(timeline) = &args.timeline {
        check_output("--timeline", timeline, args.force)?;
    }
    if let Some(dir) = &args.export {
        let snapshots = scenarios.iter().map(|s| s.knobs.snapshots).max().unwrap_or(1);
        check_output_dir("--export", dir, &export_names(snapshots).iter().map(String::as_str).collect::<Vec<_>>(), args.force)?;
    }
    super::check_traces_dir(args.save_trace)?;
    for scenario in scenarios {
        if let Some(timeline) = &args.timeline {
            check_not_an_input("--timeline", timeline, &[("the scenario", &scenario.path)])?;
        }
        if let Some(dir) = &args.export {
            for name in export_names(scenario.knobs.snapshots) {
                check_not_an_input("--export", &dir.join(name), &[("the scenario", &scenario.path)])?;
            }
        }
    }
    Ok(())
}

/// The files `--export` writes for a crash state with `snapshots` COWs.
fn export_names(snapshots: usize) -> Vec<String> {
    let mut names = vec!["origin.img".to_string()];
    names.extend((0..snapshots).map(|k| format!("cow{k}.img")));
    names.extend(["tables.txt", "load.sh", "README.txt"].map(String::from));
    names
}

/// One scenario's runs and what they found.
#[derive(Default)]
struct Explored {
    runs: Vec<Value>,
    failed: Vec<Failed>,
    /// Some run stopped at `--states-max`.
    partial: bool,
    /// The seeds not explored after the scenario's first failure.
    skipped: Vec<u64>,
}

/// How one seed's exploration ended.
enum SeedEnded {
    Passed,
    Partial,
    Failed(Cause),
}

/// Explores one scenario over each of its seeds (or `--seed`), stopping
/// at its first failure unless `--keep-going`, and prints the figures.
fn explore(plan: &Plan, scenario: &Scenario, outcome: &mut Outcome) -> Explored {
    let args = plan.args;
    let mut bounds = scenario.bounds();
    bounds.writes_max = args.writes_max.map_or(bounds.writes_max, |w| w as usize);
    bounds.states_max = args.states_max;
    bounds.brute_force_max = args.brute_force_max;
    bounds.per_sector_states_max = args.per_sector_max;
    bounds.incremental = args.judging == Judging::Incremental;
    bounds.check_incremental = args.judging == Judging::Both;
    let seeds = args.seed.map_or_else(|| scenario.file.seeds.clone(), |seed| vec![seed]);
    let mut explored = Explored::default();
    for (done, &seed) in seeds.iter().enumerate() {
        let (run, ended) = explore_seed(plan, scenario, &bounds, seed, outcome);
        explored.runs.push(run);
        match ended {
            SeedEnded::Passed => {}
            SeedEnded::Partial => explored.partial = true,
            SeedEnded::Failed(cause) => {
                explored.failed.push(Failed { scenario: scenario.name.clone(), seed, cause });
                if !args.keep_going {
                    explored.skipped = seeds[done + 1..].to_vec();
                    break;
                }
            }
        }
    }
    if let (Some(failed), false) = (explored.failed.first(), explored.skipped.is_empty()) {
        let list: Vec<String> = explored.skipped.iter().map(u64::to_string).collect();
        let line = format!(
            "{}: stopped at its first failure (seed {}); seed(s) {} not explored (--keep-going explores them)",
            scenario.name,
            failed.seed,
            list.join(", ")
        );
        // Printed with the summary, before the verdict line it explains.
        outcome.lines.push(line);
    }
    explored
}

/// Explores one seed of a scenario: its JSON run and how it ended. A
/// panic in the run is its failure, reported as a crash state's is.
fn explore_seed(plan: &Plan, scenario: &Scenario, bounds: &sim::explore::Bounds, seed: u64, outcome: &mut Outcome) -> (Value, SeedEnded) {
    let args = plan.args;
    let replay = args.replay_command(&scenario.path, seed, plan.strict);
    let mut config = scenario.run_config(seed);
    config.mutations = plan.mutations;
    config.strict = plan.strict;
    config.timeline = args.timeline.is_some();
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)] // a throughput figure for the user, not engine time
    let start = std::time::Instant::now();
    let explored = sim::explore::explore_catching(&config, bounds);
    #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
    let seconds = start.elapsed().as_secs_f64();
    let run = json!({ "scenario": scenario.name, "path": scenario.path.display().to_string(), "seed": seed, "replay": replay });
    let (coverage, result) = match explored {
        Ok(explored) => explored,
        Err(panic) => {
            plan.out.line(format!("{} seed {seed}: FAIL: {panic} ({seconds:.2} s)", scenario.name));
            plan.out.line(format!("replay: {replay}"));
            let fields = json!({ "verdict": Verdict::Fail, "invariant": Cause::Panic, "message": panic.to_string(), "panic": {
                "place": panic.place, "message": panic.message } });
            return (merged(run, fields), SeedEnded::Failed(Cause::Panic));
        }
    };
    plan.out.line(run_line(scenario, seed, &coverage, bounds, seconds));
    if !coverage.incremental_mismatches.is_empty() {
        return judges_disagree(plan, run, &coverage, &replay);
    }
    let failure = result.as_ref().err();
    let fields = json!({
        "verdict": if failure.is_some() { Verdict::Fail } else if coverage.truncated { Verdict::Partial } else { Verdict::Pass },
        "invariant": failure.map(|f| f.violation.invariant.id()), "message": failure.map(ToString::to_string),
        "cause": failure.and_then(|f| f.cause.as_ref()).map(ToString::to_string),
        "steps": coverage.steps, "crash_points": coverage.crash_points, "states": coverage.states, "distinct": coverage.distinct,
        "pending_max": coverage.pending_max, "writes_max": bounds.writes_max, "allowed_k3": coverage.allowed_k3,
        "complete": coverage.complete, "space": coverage.space.to_string(), "space_log2": coverage.space.log2, "covered": coverage.covered,
        "trace_hash": format!("{:016x}", coverage.trace_hash),
        "read_back": { "incremental": coverage.judging.incremental, "whole": coverage.judging.whole,
            "chunks_read_again": coverage.judging.chunks_read, "origin_sectors_read_again": coverage.judging.origin_sectors_read },
    });
    let run = merged(run, fields);
    match result {
        Err(failure) => {
            let cause = Cause::Broke(failure.violation.invariant);
            report_failure(plan, scenario, seed, &replay, failure, outcome);
            (run, SeedEnded::Failed(cause))
        }
        Ok(()) if coverage.truncated => (run, SeedEnded::Partial),
        Ok(()) => (run, SeedEnded::Passed),
    }
}

/// A seed whose crash states the whole and the incremental judge disagreed
/// on (`--judging both`): a bug of the harness, each state printed.
fn judges_disagree(plan: &Plan, run: Value, coverage: &sim::explore::Coverage, replay: &str) -> (Value, SeedEnded) {
    let mismatches = &coverage.incremental_mismatches;
    plan.out.line(format!("FAIL: the whole and the incremental judge disagree on {} crash state(s), a bug of the harness:", mismatches.len()));
    for mismatch in mismatches.iter().take(8) {
        plan.out.line(format!("  {mismatch}"));
    }
    plan.out.line(format!("replay: {replay}"));
    let fields = json!({ "verdict": Verdict::Fail, "invariant": sim::soak::Cause::JudgesDisagree, "message": mismatches.first(),
        "disagreements": mismatches.len() });
    (merged(run, fields), SeedEnded::Failed(sim::soak::Cause::JudgesDisagree))
}

/// `into` with the fields of `more` added (both JSON objects).
fn merged(mut into: Value, more: Value) -> Value {
    if let (Some(into), Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
    into
}

/// The figures line of one explored seed.
fn run_line(scenario: &Scenario, seed: u64, coverage: &sim::explore::Coverage, bounds: &sim::explore::Bounds, seconds: f64) -> String {
    let stopped = if coverage.truncated { format!("; stopped at --states-max {}", bounds.states_max) } else { String::new() };
    let k3 = if coverage.allowed_k3 > 0 { format!("; kernel behaviour K3 allowed in {} states", coverage.allowed_k3) } else { String::new() };
    format!(
        "{} seed {seed}: {} steps, {} crash points, {} states, {} distinct checked (at most {} non-durable writes at a point); {}{stopped}{k3}, trace hash {:016x}, {:.2} s, {:.0} states/s",
        scenario.name,
        coverage.steps,
        coverage.crash_points,
        coverage.states,
        coverage.distinct,
        coverage.pending_max,
        coverage.describe(bounds),
        coverage.trace_hash,
        seconds,
        coverage.distinct as f64 / seconds.max(1e-9)
    )
}

/// Prints a failing crash state and writes its timeline, export and trace
/// (the timeline and export only for the first failure: never overwritten).
fn report_failure(plan: &Plan, scenario: &Scenario, seed: u64, replay: &str, mut failure: sim::explore::CrashFailure, outcome: &mut Outcome) {
    let out = plan.out;
    let first = outcome.body.get("first_failure").is_none_or(|f| f.is_null());
    out.line(format!("{} seed {seed}: FAIL: {failure}", scenario.name));
    for event in &failure.violation.events {
        out.line(format!("  {event}"));
    }
    if let Some(cause) = &failure.cause {
        out.line(format!("{cause} ({} non-durable writes at the crash point, {} states judged)", cause.pending, cause.judged));
    }
    out.line(format!("replay: {replay}"));
    if !first {
        return;
    }
    outcome.body["first_failure"] = json!(format!("{} seed {seed}", scenario.name));
    if let Some(timeline) = &mut failure.timeline {
        timeline.title = replay.to_string();
    }
    super::write_timeline(outcome, plan.args.timeline.as_deref(), failure.timeline.as_deref());
    if let (Some(dir), Some(images)) = (&plan.args.export, &failure.images) {
        match export(dir, scenario, images, &failure.to_string()) {
            Ok(count) => outcome.lines.push(format!("exported the crash state: {count} files in {} (load.sh loads them in Linux)", dir.display())),
            Err(error) => outcome.output_failed(&error),
        }
    }
    if plan.args.save_trace {
        let trace = sim::crash_trace::CrashTrace::from_explore(scenario, seed, plan.mutations, plan.strict, &failure.violation);
        super::save_trace(outcome, &trace);
    }
}

/// Writes the crash state into a temporary directory beside `dir`, then
/// moves each file into `dir`: a full disk leaves no partial image.
fn export(dir: &Path, scenario: &Scenario, images: &[sim::disk::Image], what: &str) -> Result<usize, CliError> {
    let failed = |e: &dyn std::fmt::Display| CliError::failed(format!("--export {}: {e}", dir.display()));
    let parent =
        if dir.is_dir() { dir.to_path_buf() } else { dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf() };
    let staging = tempfile::Builder::new().prefix(".snapsim-export.").tempdir_in(&parent).map_err(|e| failed(&e))?;
    let written = sim::export::write_crash_state(staging.path(), &scenario.knobs, images, what).map_err(|e| failed(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
    for path in &written {
        let name = path.file_name().expect("export names its files");
        std::fs::rename(path, dir.join(name)).map_err(|e| failed(&e))?;
    }
    Ok(written.len())
}
