//! The soak: swarm seeds on parallel workers for hours, every failure kept
//! with its replay command and, minimized, as a crash trace.
//!
//! Seeds are numbered from `seed_start`. Seed `seed_start + k` belongs to
//! shard `k % count`, so the shards of a CI matrix cover disjoint seeds and
//! together exactly the seeds one unsharded soak covers. Inside a shard,
//! workers take the shard's seeds in order from one counter and finish the
//! seed they hold when asked to stop, so a soak always covers a prefix of
//! its shard's seeds: the report names it, and `--seeds` makes it exact.
//!
//! The soak is the harness's own parallelism: workers each run whole worlds
//! (one seed, one thread), so a verdict never depends on how many there are.
//!
//! A seed whose run panics is a failure like any other (invariant `panic`,
//! the panic's message and place, the replay command), not the end of the
//! soak: the worker goes on with its next seed. The panic is not printed as
//! it happens; the report carries it, and the replay shows its backtrace.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // wall time and worker threads belong to the soak, not the engine

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine::zoo::Mutations;
use serde::Serialize;

use crate::crash_trace::CrashTrace;
use crate::marks::MarkCounts;
use crate::world::{Report, RunConfig, run};

/// This soak's part of the seed range: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole range.
    pub const ALL: Self = Self { index: 0, count: 1 };

    /// Parses `I/N` (0 ≤ I < N).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (index, count) = text.split_once('/').ok_or_else(|| format!("shard {text:?} is not I/N"))?;
        let index: u64 = index.trim().parse().map_err(|_| format!("shard index {index:?} is not a number"))?;
        let count: u64 = count.trim().parse().map_err(|_| format!("shard count {count:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: the index must be below the count"));
        }
        Ok(Self { index, count })
    }

    /// The `m`-th seed of this shard.
    pub fn seed(self, seed_start: u64, m: u64) -> u64 {
        seed_start.wrapping_add(self.index).wrapping_add(m.wrapping_mul(self.count))
    }

    /// How many of the first `seeds` seeds of the range are this shard's.
    pub fn seeds_of(self, seeds: u64) -> u64 {
        seeds.saturating_sub(self.index).div_ceil(self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How a soak runs. Every field but `run_seed` has the CLI flag that sets it.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The first seed of the range (`--seed-start`, default 0).
    pub seed_start: u64,
    /// Stop after the first `seeds` seeds of the range (`--seeds`).
    pub seeds: Option<u64>,
    /// Stop after this much wall time (`--duration`, e.g. `8h`, `10m`).
    pub duration: Option<Duration>,
    /// This soak's shard (`--shard I/N`, default the whole range).
    pub shard: Shard,
    /// Worker threads (`--jobs`, default one per core).
    pub jobs: usize,
    /// Historical bugs to re-create (`--mutation`; bug-zoo builds only).
    pub mutations: Mutations,
    /// Fail on the kernel behaviours K1 and K2 too (`--strict`).
    pub strict: bool,
    /// How the engine writes COW headers (`--kernel-patches`; default the stock kernel's).
    pub kernel_patches: engine::store::KernelPatches,
    /// The odds the seeds' knobs are drawn with (`--bias`, or a pilot's
    /// with `--directed`; default the plain swarm's).
    pub bias: crate::world::knobs::SwarmBias,
    /// Failures to minimize into crash traces (`--traces-max`, default 5):
    /// one per invariant first, then in seed order.
    pub traces_max: usize,
    /// Where minimized traces go (`--traces-dir`, default `crash-traces/`).
    pub traces_dir: PathBuf,
    /// Replays a minimization may spend per trace.
    pub minimize_budget: usize,
    /// Runs one seed: [`run`], the world itself, unless a test needs seeds
    /// that behave otherwise (one that panics, say). Minimization replays
    /// traces in the world itself.
    pub run_seed: fn(&RunConfig) -> Report,
    /// How often [`soak_checkpointed`] hands out the report so far (so that
    /// a killed soak keeps what it found). Default a minute.
    pub checkpoint_every: Duration,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            seed_start: 0,
            seeds: None,
            duration: None,
            shard: Shard::ALL,
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            mutations: Mutations::NONE,
            strict: false,
            kernel_patches: engine::store::KernelPatches::Stock,
            bias: crate::world::knobs::SwarmBias::default(),
            traces_max: 5,
            traces_dir: PathBuf::from("crash-traces"),
            minimize_budget: 400,
            run_seed: run,
            checkpoint_every: Duration::from_secs(60),
        }
    }
}

impl SoakConfig {
    /// The command that reruns one seed of this soak.
    pub fn replay_command(&self, seed: u64) -> String {
        run_config(self, seed).replay_command()
    }
}

/// One failing seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakFailure {
    pub seed: u64,
    /// The knobs the seed drew.
    pub knobs: String,
    /// The invariant broken, or a panic (written `I5` or `panic`).
    pub invariant: Cause,
    /// The violation; for a panic, where it happened and its message.
    pub message: String,
    pub replay: String,
    /// The minimized crash trace, when this failure was minimized (a panic
    /// never is: there is no verdict for a trace to keep).
    pub trace: Option<String>,
    /// The failure's signature key: its invariant and its message with
    /// every number blanked (`I5: record for chunk # precedes chunk #`).
    pub signature: String,
}

/// One bug, however many seeds found it: failures grouped by signature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signature {
    /// The invariant and the message with its numbers blanked.
    pub signature: String,
    pub invariant: Cause,
    /// The minimized trace's shape: its operations, numbers left out
    /// (`write origin, crash`); none when nothing was minimized.
    pub shape: Option<String>,
    /// Failing seeds with this signature.
    pub seeds: u64,
    pub first_seed: u64,
    /// The first seed's message and replay command.
    pub message: String,
    pub replay: String,
    /// The minimized crash trace of the first seed.
    pub trace: Option<String>,
}

/// The signature key of a failure: `invariant: message`, every word that
/// holds a digit (a sector, a chunk, a tagged value, a line number) blanked
/// to `#`, so that one bug found at different places reads the same.
pub fn signature_key(invariant: Cause, message: &str) -> String {
    let mut key = format!("{invariant}: ");
    let mut word = String::new();
    let flush = |word: &mut String, key: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            key.push('#');
        } else {
            key.push_str(word);
        }
        word.clear();
    };
    for c in message.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut key);
            key.push(c);
        }
    }
    flush(&mut word, &mut key);
    key
}

/// A trace's operations without their numbers, repeats counted:
/// `2× write origin, crash`.
fn ops_shape(ops: &str) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for line in ops.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()) {
        let op: Vec<&str> = line.split_whitespace().filter(|w| !w.chars().all(|c| c.is_ascii_digit())).collect();
        let op = op.join(" ");
        match runs.last_mut() {
            Some((last, count)) if *last == op => *count += 1,
            _ => runs.push((op, 1)),
        }
    }
    let operations: usize = runs.iter().map(|(_, n)| n).sum();
    let parts: Vec<String> = runs.iter().map(|(op, n)| if *n == 1 { op.clone() } else { format!("{n}× {op}") }).collect();
    match parts.len() {
        0 => "no operation".to_string(),
        1..=8 => parts.join(", "),
        _ => format!("{}, … ({operations} operations)", parts[..8].join(", ")),
    }
}

/// Why a seed failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub enum Cause {
    /// The oracle found this invariant broken.
    Broke(model::Invariant),
    /// The run panicked: a bug in the engine or the harness.
    Panic,
    /// A crash state judged whole and judged incrementally got different
    /// verdicts (`explore --judging both`): a bug in the harness.
    JudgesDisagree,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Broke(invariant) => f.write_str(invariant.id()),
            Self::Panic => f.write_str("panic"),
            Self::JudgesDisagree => f.write_str("judges-disagree"),
        }
    }
}

impl From<Cause> for String {
    fn from(cause: Cause) -> String {
        cause.to_string()
    }
}

impl PartialEq<crate::crash_trace::Verdict> for Cause {
    /// A trace's verdict names the invariant the seed broke.
    fn eq(&self, verdict: &crate::crash_trace::Verdict) -> bool {
        matches!((self, verdict), (Self::Broke(a), crate::crash_trace::Verdict::Broke(b)) if a == b)
    }
}

/// What a soak did: the machine-readable report (`--report`, JSON).
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub seed_start: u64,
    pub shard: String,
    pub jobs: usize,
    pub mutation: Option<String>,
    pub strict: bool,
    /// Which kernel the engine behaved as: `stock` or `applied` (`--kernel-patches`).
    pub kernel_patches: String,
    /// The odds the knobs were drawn with (`--bias`).
    pub bias: String,
    /// `seeds`, `duration` or `interrupt`.
    pub stopped_by: String,
    /// Seeds run: the shard's first `seeds_run` seeds, every one finished.
    pub seeds_run: u64,
    /// Wall time spent running seeds (not minimizing).
    pub seconds: f64,
    pub seeds_per_second: f64,
    /// Crashes survived and checked (each a crash image the engine reloaded).
    pub crash_states: u64,
    pub crash_states_per_second: f64,
    pub disk_requests: u64,
    pub operations: u64,
    /// One entry per bug: failures grouped by signature, in the order of
    /// their first seeds.
    pub signatures: Vec<Signature>,
    /// Every failing seed, in seed order (with its signature key).
    pub failures: Vec<SoakFailure>,
    /// Each coverage mark reached: hits, and the smallest seed that hit it.
    pub marks: BTreeMap<&'static str, MarkHits>,
}

/// One coverage mark over a soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarkHits {
    pub hits: u64,
    pub first_seed: u64,
}

impl SoakReport {
    /// The coverage marks as a table's counts (first hit: the smallest seed).
    pub fn mark_counts(&self) -> MarkCounts {
        let mut counts = MarkCounts::default();
        for (&name, mark) in &self.marks {
            counts.hits.insert(name, mark.hits);
            counts.first.insert(name, format!("seed {}", mark.first_seed));
        }
        counts
    }

    /// The human summary printed at the end.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "soak shard {} from seed {}: {} seeds in {:.1} s ({:.1} seeds/s), {} crash states ({:.1}/s), {} disk requests; stopped by {}; {} failure(s)\n",
            self.shard,
            self.seed_start,
            self.seeds_run,
            self.seconds,
            self.seeds_per_second,
            self.crash_states,
            self.crash_states_per_second,
            self.disk_requests,
            self.stopped_by,
            self.failures.len()
        );
        if !self.failures.is_empty() {
            text += &format!("{} failing seed(s), {} signature(s):\n", self.failures.len(), self.signatures.len());
        }
        for (index, signature) in self.signatures.iter().enumerate() {
            text += &format!("  [{}] {} seed(s), first seed {}: {}\n", index + 1, signature.seeds, signature.first_seed, signature.signature);
            text += &format!("    seed {}: {}\n", signature.first_seed, signature.message);
            if let Some(shape) = &signature.shape {
                text += &format!("    minimized to: {shape}\n");
            }
            text += &format!("    replay: {}\n", signature.replay);
            if let Some(trace) = &signature.trace {
                text += &format!("    trace: {trace}\n");
                let timeline = std::path::Path::new(trace).with_extension("html");
                if timeline.is_file() {
                    text += &format!("    timeline: {}\n", timeline.display());
                }
            }
        }
        text
    }
}

/// Counters the progress display reads while the soak runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub seeds_run: u64,
    /// Seeds the soak will run, when it stops on a seed count.
    pub seeds_total: Option<u64>,
    pub crash_states: u64,
    pub failures: u64,
    pub elapsed: Duration,
}

/// What a worker reports for each seed it ran.
struct SeedDone {
    crashes: u64,
    disk_requests: u64,
    operations: u64,
    /// The failure, with its run as an unminimized trace (kept from the
    /// run itself, so minimizing starts without running the seed again;
    /// none for a panic, whose run left no report).
    failure: Option<(SoakFailure, Option<CrashTrace>)>,
    seed: u64,
    marks: MarkCounts,
}

/// How often the progress callback hears from the soak.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the soak until its seeds are done, its duration is up or
/// `interrupt` is set; then minimizes failures into traces.
pub fn soak(config: &SoakConfig, interrupt: &AtomicBool, progress: &mut dyn FnMut(&Progress)) -> SoakReport {
    soak_checkpointed(config, interrupt, progress, &mut |_| {})
}

/// What the soak has counted so far.
struct Tally {
    totals: Progress,
    disk_requests: u64,
    operations: u64,
    marks: BTreeMap<&'static str, MarkHits>,
}

/// A worker: takes the shard's seeds in order from `next` and runs them
/// until `limit`, or until either flag of `stops` is set. Workers heed an
/// interrupt themselves, so a Ctrl-C stops them right after the seed in
/// hand, not after the next progress tick.
fn work(config: &SoakConfig, limit: Option<u64>, next: &AtomicU64, stops: [&AtomicBool; 2], sender: &mpsc::Sender<SeedDone>) {
    while !stops.iter().any(|flag| flag.load(Ordering::Relaxed)) {
        let m = next.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|limit| m >= limit) {
            break;
        }
        let seed = config.shard.seed(config.seed_start, m);
        if sender.send(soak_seed(config, seed)).is_err() {
            break;
        }
    }
}

/// Why the soak should stop now, if it should: an interrupt, or its time is up.
fn stop_reason(config: &SoakConfig, interrupt: &AtomicBool, elapsed: Duration) -> Option<&'static str> {
    if interrupt.load(Ordering::Relaxed) {
        Some("interrupt")
    } else if config.duration.is_some_and(|d| elapsed >= d) {
        Some("duration")
    } else {
        None
    }
}

/// The failures so far, in seed order, without their traces.
fn in_seed_order(failures: &[(SoakFailure, Option<CrashTrace>)]) -> Vec<SoakFailure> {
    let mut failures: Vec<SoakFailure> = failures.iter().map(|(failure, _)| failure.clone()).collect();
    failures.sort_by_key(|failure| failure.seed);
    failures
}

impl Tally {
    /// Counts one seed's figures and marks; returns its failure.
    fn add(&mut self, done: SeedDone) -> Option<(SoakFailure, Option<CrashTrace>)> {
        self.totals.seeds_run += 1;
        self.totals.crash_states += done.crashes;
        self.disk_requests += done.disk_requests;
        self.operations += done.operations;
        for (&name, &hits) in &done.marks.hits {
            let mark = self.marks.entry(name).or_insert(MarkHits { hits: 0, first_seed: done.seed });
            mark.hits += hits;
            mark.first_seed = mark.first_seed.min(done.seed);
        }
        self.totals.failures += u64::from(done.failure.is_some());
        done.failure
    }
}

/// [`soak`], handing `checkpoint` the report so far (failures unminimized,
/// stopped by `running`) every [`SoakConfig::checkpoint_every`].
pub fn soak_checkpointed(
    config: &SoakConfig,
    interrupt: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
    checkpoint: &mut dyn FnMut(&SoakReport),
) -> SoakReport {
    assert!(config.jobs > 0, "a soak needs at least one worker");
    assert!(config.shard.index < config.shard.count, "shard {} out of range", config.shard);
    let limit = config.seeds.map(|seeds| config.shard.seeds_of(seeds));
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (sender, receiver) = mpsc::channel::<SeedDone>();
    let mut tally = Tally { totals: Progress { seeds_total: limit, ..Progress::default() }, disk_requests: 0, operations: 0, marks: BTreeMap::new() };
    let mut failures = Vec::new();
    let mut stopped_by = "seeds";
    std::thread::scope(|scope| {
        for _ in 0..config.jobs {
            let sender = sender.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || work(config, limit, next, [stop, interrupt], &sender));
        }
        drop(sender);
        let (mut last_progress, mut last_checkpoint) = (Instant::now(), Instant::now());
        loop {
            match receiver.recv_timeout(PROGRESS_INTERVAL) {
                Ok(done) => failures.extend(tally.add(done)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let totals = &mut tally.totals;
            totals.elapsed = start.elapsed();
            if let (false, Some(why)) = (stop.load(Ordering::Relaxed), stop_reason(config, interrupt, totals.elapsed)) {
                stopped_by = why;
                stop.store(true, Ordering::Relaxed);
            }
            if last_progress.elapsed() >= PROGRESS_INTERVAL {
                progress(totals);
                last_progress = Instant::now();
            }
            if last_checkpoint.elapsed() >= config.checkpoint_every {
                checkpoint(&assemble(config, &tally, in_seed_order(&failures), &BTreeMap::new(), "running"));
                last_checkpoint = Instant::now();
            }
        }
    });
    let totals = &mut tally.totals;
    // The workers may have seen the interrupt and ended before the loop did.
    if stopped_by == "seeds" && interrupt.load(Ordering::Relaxed) && limit.is_none_or(|limit| totals.seeds_run < limit) {
        stopped_by = "interrupt";
    }
    progress(totals);
    totals.elapsed = start.elapsed();
    // Workers stop only between seeds, so the seeds run are exactly the
    // shard's first ones: a soak is resumable from `seeds_run`.
    let taken = next.load(Ordering::Relaxed).min(limit.unwrap_or(u64::MAX));
    assert_eq!(totals.seeds_run, taken, "every seed handed out was run to its end");
    failures.sort_by_key(|(f, _): &(SoakFailure, Option<CrashTrace>)| f.seed);
    let shapes = minimize_failures(config, &mut failures);
    let failures: Vec<SoakFailure> = failures.into_iter().map(|(failure, _)| failure).collect();
    assemble(config, &tally, failures, &shapes, stopped_by)
}

/// The report of `tally` and `failures` (in seed order).
fn assemble(config: &SoakConfig, tally: &Tally, failures: Vec<SoakFailure>, shapes: &BTreeMap<u64, String>, stopped_by: &str) -> SoakReport {
    let seconds = tally.totals.elapsed.as_secs_f64();
    let signatures = group_signatures(&failures, shapes);
    let per_second = |count: u64| count as f64 / seconds.max(1e-9);
    SoakReport {
        seed_start: config.seed_start,
        shard: config.shard.to_string(),
        jobs: config.jobs,
        mutation: config.mutations.id().map(str::to_string),
        strict: config.strict,
        kernel_patches: config.kernel_patches.name().to_string(),
        bias: config.bias.to_string(),
        stopped_by: stopped_by.to_string(),
        seeds_run: tally.totals.seeds_run,
        seconds,
        seeds_per_second: per_second(tally.totals.seeds_run),
        crash_states: tally.totals.crash_states,
        crash_states_per_second: per_second(tally.totals.crash_states),
        disk_requests: tally.disk_requests,
        operations: tally.operations,
        signatures,
        failures,
        marks: tally.marks.clone(),
    }
}

/// Groups `failures` (in seed order) by signature key; `shapes` gives the
/// minimized trace's shape of the failures that were minimized.
fn group_signatures(failures: &[SoakFailure], shapes: &BTreeMap<u64, String>) -> Vec<Signature> {
    let mut signatures: Vec<Signature> = Vec::new();
    for failure in failures {
        match signatures.iter_mut().find(|s| s.signature == failure.signature) {
            Some(signature) => {
                signature.seeds += 1;
                debug_assert!(signature.first_seed < failure.seed, "failures come in seed order");
            }
            None => signatures.push(Signature {
                signature: failure.signature.clone(),
                invariant: failure.invariant,
                shape: shapes.get(&failure.seed).cloned(),
                seeds: 1,
                first_seed: failure.seed,
                message: failure.message.clone(),
                replay: failure.replay.clone(),
                trace: failure.trace.clone(),
            }),
        }
    }
    debug_assert_eq!(signatures.iter().map(|s| s.seeds).sum::<u64>(), failures.len() as u64, "every failure in one signature");
    signatures
}

/// The run config of one soak seed.
fn run_config(config: &SoakConfig, seed: u64) -> RunConfig {
    let mut run_config = RunConfig::new(seed);
    run_config.bias = config.bias;
    run_config.mutations = config.mutations;
    run_config.strict = config.strict;
    run_config.kernel_patches = config.kernel_patches;
    run_config
}

/// Runs one seed; a panic in its run is the seed's failure.
fn soak_seed(config: &SoakConfig, seed: u64) -> SeedDone {
    let run_config = run_config(config, seed);
    let report = match crate::panics::catch(|| (config.run_seed)(&run_config)) {
        Ok(report) => report,
        Err(panic) => {
            let message = panic.to_string();
            let failure = SoakFailure {
                seed,
                knobs: run_config.knobs().to_string(),
                invariant: Cause::Panic,
                message,
                replay: run_config.replay_command(),
                trace: None,
                signature: String::new(),
            };
            let failure = SoakFailure { signature: signature_key(Cause::Panic, &failure.message), ..failure };
            let marks = MarkCounts::take(&format!("seed {seed}"));
            return SeedDone { crashes: 0, disk_requests: 0, operations: 0, failure: Some((failure, None)), seed, marks };
        }
    };
    let failure = report.failure.as_ref().map(|failure| SoakFailure {
        seed,
        knobs: report.knobs.to_string(),
        invariant: Cause::Broke(failure.violation.invariant),
        message: failure.violation.message.clone(),
        replay: report.replay_command(),
        trace: None,
        signature: signature_key(Cause::Broke(failure.violation.invariant), &failure.violation.message),
    });
    let failure = failure.map(|failure| (failure, Some(CrashTrace::from_run(&run_config, &report))));
    SeedDone {
        crashes: report.stats.crashes,
        disk_requests: report.stats.disk_requests,
        operations: report.stats.operations,
        failure,
        seed,
        marks: report.marks,
    }
}

/// Minimizes the first failure of each signature, up to `traces_max`
/// signatures in the order of their first seeds, and writes them as crash
/// traces; returns each minimized trace's shape by seed. Panics have no
/// trace and are passed over.
fn minimize_failures(config: &SoakConfig, failures: &mut [(SoakFailure, Option<CrashTrace>)]) -> BTreeMap<u64, String> {
    let mut signatures = std::collections::BTreeSet::new();
    let chosen: Vec<usize> = (0..failures.len())
        .filter(|&i| failures[i].1.is_some() && signatures.insert(failures[i].0.signature.clone()))
        .take(config.traces_max)
        .collect();
    let mut shapes = BTreeMap::new();
    for index in chosen {
        let (failure, Some(trace)) = &mut failures[index] else { continue };
        // A shorter run may panic instead of failing; the trace as run
        // still replays to its verdict, so it is kept unminimized.
        let trace = crate::panics::catch(|| trace.minimize(config.minimize_budget)).unwrap_or_else(|_| trace.clone());
        shapes.insert(failure.seed, ops_shape(&trace.shape.ops));
        failure.trace = Some(match write_new(&config.traces_dir, &trace.file_name(), |name| trace.to_text(name)) {
            Ok(path) => {
                // The minimized run's timeline beside it: the trace's name, `.html`.
                if let Ok(Ok(Some(mut timeline))) = crate::panics::catch(|| trace.replay_recording(true).map(|r| r.timeline)) {
                    timeline.title = format!("snapsim replay {}", path.display());
                    let page = path.with_extension("html");
                    let _ = page.file_name().map(|name| write_new(&config.traces_dir, &name.to_string_lossy(), |_| timeline.to_html()));
                }
                path.display().to_string()
            }
            Err(error) => format!("not written: {error}"),
        });
    }
    shapes
}

/// Writes a new file in `dir` named `name`, or `stem-N.ext` if that exists
/// (an earlier soak's trace is never replaced), through a temporary file
/// renamed into place (a full disk leaves no partial trace). `text` gets
/// the name chosen.
fn write_new(dir: &std::path::Path, name: &str, text: impl FnOnce(&str) -> String) -> std::io::Result<PathBuf> {
    let context = |path: &std::path::Path, e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| context(dir, e))?;
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, "toml"));
    let chosen = std::iter::once(name.to_string())
        .chain((2u32..).map(|n| format!("{stem}-{n}.{extension}")))
        .find(|candidate| std::fs::symlink_metadata(dir.join(candidate)).is_err())
        .expect("some number is free");
    let (path, temp) = (dir.join(&chosen), dir.join(format!(".{chosen}.{}.partial", std::process::id())));
    let written = std::fs::write(&temp, text(&chosen)).and_then(|()| std::fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(context(&path, e));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_trace_never_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_new(dir.path(), "t.toml", |name| name.to_string()).unwrap();
        let second = write_new(dir.path(), "t.toml", |name| name.to_string()).unwrap();
        assert_eq!(std::fs::read_to_string(first).unwrap(), "t.toml");
        assert_eq!(std::fs::read_to_string(second).unwrap(), "t-2.toml");
    }

    #[test]
    fn a_signature_blanks_every_number_and_keeps_the_words() {
        let i2 = Cause::Broke(model::Invariant::I2SnapshotView);
        let a = signature_key(i2, "snapshot 0 sector 8 holds O00000008, a value never legal there; legal: s000001s000");
        let b = signature_key(i2, "snapshot 1 sector 992 holds o00004s224, a value never legal there; legal: O00000992");
        assert_eq!(a, b);
        assert_eq!(a, "I2: snapshot # sector # holds #, a value never legal there; legal: #");
        assert_ne!(a, signature_key(Cause::Panic, "snapshot 0 sector 8 holds O00000008, a value never legal there; legal: s000001s000"));
    }

    #[test]
    fn a_shape_is_the_operations_without_their_numbers() {
        assert_eq!(ops_shape("write origin 0 8\nwrite origin 12 2   # part\ncrash\nread snapshot0 0 16\n"), "2× write origin, crash, read snapshot0");
        assert_eq!(ops_shape(""), "no operation");
    }
}
