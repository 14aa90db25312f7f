//! `snapsim`: tools for dm-snapshot COW devices and the simulation harness.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use snapsim::{CliError, ErrorKind, inspect, live, view};

// Counts allocations for `snapsim bench`'s memory figures (a wrapper over
// the system allocator; the count is two atomic adds per call).
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[derive(Debug, Parser)]
#[command(
    name = "snapsim",
    version,
    about = "Inspect, view and simulate Linux dm-snapshot COW devices",
    after_help = "Exit status: 0 checked and passed; 1 a violation found, or an operation on a real file failed on the data; \
                  2 bad invocation or bad input (nothing written); 3 PARTIAL: stopped before everything asked was checked."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a COW device holds: header, areas, records, and its `dmsetup status` usage line.
    Inspect(inspect::InspectArgs),
    /// Write the snapshot's view (origin remapped through the COW) to a file.
    View(view::ViewArgs),
    /// Replay a workload's writes through a live snapshot onto real origin and COW files.
    Apply(ApplyCommand),
    /// Merge a snapshot's COW back into its origin (offline snapshot-merge).
    Merge(MergeCommand),
    /// Run the deterministic simulation for one seed: knobs, summary, verdict, trace hash.
    Run(RunArgs),
    /// Run a scenario and check every crash state within its bound; print the counts.
    Explore(ExploreArgs),
    /// Replay a crash trace (or a seed) and check it gives its recorded verdict.
    Replay(ReplayArgs),
    /// Re-inject each historical kernel bug (Z1–Z21) and hunt it; needs `--features bug-zoo`.
    Zoo(ZooArgs),
    /// Run swarm seeds on parallel workers for a duration (the nightly soak); report every failure.
    Soak(SoakArgs),
    /// Explore every scenario and run swarm seeds; print each coverage mark: hits, first hit, why.
    Coverage(CoverageArgs),
    /// Measure the project's performance figures (docs/PERFORMANCE.md) and print them.
    Bench(BenchArgs),
}

impl Command {
    /// Whether the verb was asked for one JSON object on stdout.
    fn json(&self) -> bool {
        match self {
            Command::Apply(args) => args.json,
            Command::Merge(args) => args.json,
            Command::Run(args) => args.json,
            Command::Explore(args) => args.json,
            Command::Replay(args) => args.json,
            Command::Zoo(args) => args.json,
            Command::Inspect(_) | Command::View(_) | Command::Soak(_) | Command::Bench(_) | Command::Coverage(_) => false,
        }
    }
}

/// Where a verb's human-readable lines go: stdout, or stderr when stdout
/// carries the one JSON object `--json` asked for.
#[derive(Debug, Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn line(self, text: impl std::fmt::Display) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// Prints the JSON object (only under `--json`).
    fn object(self, value: &serde_json::Value) {
        if self.json {
            println!("{value}");
        }
    }
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Where the throughput runs put their files (512 MiB at most); the system's temporary directory by default.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Measures and prints every figure. Its files live in a temporary
/// directory that is removed at the end, and on Ctrl-C too.
fn bench(args: &BenchArgs) -> Result<(), CliError> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    if !base.is_dir() {
        return Err(CliError::bad_input(format!("--dir {}: not a directory", base.display())));
    }
    let dir = tempfile::Builder::new()
        .prefix("snapsim-bench")
        .tempdir_in(&base)
        .map_err(|e| CliError::bad_input(format!("--dir {}: cannot create a directory in it: {e}", base.display())))?;
    let path = dir.path().to_path_buf();
    let removed = path.clone();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_dir_all(&removed);
        eprintln!("snapsim: bench interrupted: removed {}; verdict: PARTIAL", removed.display());
        std::process::exit(i32::from(ErrorKind::Partial.exit_code()));
    })
    .map_err(|e| CliError::failed(format!("cannot catch Ctrl-C: {e}")))?;
    sim::bench::run_all(sim::bench::MemoryProbe::new(&ALLOCATOR), &path);
    Ok(())
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    /// Wall time to run for (`8h`, `10m`, `90s`); without it (and without --seeds), 10 minutes.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "seeds")]
    duration: Option<std::time::Duration>,
    /// Stop after the first N seeds of the range instead (exact, for comparing runs).
    #[arg(long)]
    seeds: Option<u64>,
    /// Worker threads; one per core by default.
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only shard I of N: seeds whose offset from --seed-start is I modulo N.
    #[arg(long, value_parser = sim::soak::Shard::parse, default_value = "0/1")]
    shard: sim::soak::Shard,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    seed_start: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "soak-report.json")]
    report: std::path::PathBuf,
    /// Where minimized failures are written as crash traces.
    #[arg(long, default_value = "crash-traces")]
    traces_dir: std::path::PathBuf,
    /// Failures to minimize into traces (one per invariant first).
    #[arg(long, default_value_t = 5)]
    traces_max: usize,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2).
    #[arg(long)]
    strict: bool,
    /// How the engine writes COW headers: `stock` (the stock kernel's, the
    /// default) or `durable` (the kernel with the kernel-patches/ series:
    /// closes K1 and K3).
    #[arg(long, value_name = "stock|durable", value_parser = parse_header_writes)]
    header_writes: Option<engine::store::HeaderWrites>,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    mutation: Option<String>,
    /// Draw the knobs with these odds (five, comma-separated: small-cow, faulty, mixed-chunk-sizes, po-store, stale-cow).
    #[arg(long, value_parser = parse_bias, conflicts_with = "directed")]
    bias: Option<sim::world::knobs::SwarmBias>,
    /// The directed swarm: a pilot of this many plain seeds finds the rarest coverage marks, and the soak draws its knobs toward them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    directed: Option<u64>,
}

fn parse_bias(text: &str) -> Result<sim::world::knobs::SwarmBias, String> {
    text.parse()
}

fn parse_header_writes(text: &str) -> Result<engine::store::HeaderWrites, String> {
    engine::store::HeaderWrites::parse(text).ok_or_else(|| format!("{text:?} is neither stock nor durable"))
}

/// What a settings line adds for `header_writes`: nothing for the stock
/// kernel's, so that the default runs print what they always have.
fn header_writes_note(header_writes: engine::store::HeaderWrites) -> String {
    match header_writes {
        engine::store::HeaderWrites::Stock => String::new(),
        engine::store::HeaderWrites::Durable => "; header writes durable (the kernel-patches/ series)".to_string(),
    }
}

/// Refuses a path the soak could write only at its end: the report's
/// directory must exist and take a new file, the traces directory must not
/// be a file. Checked before the first seed runs, not after the last.
fn check_soak_outputs(args: &SoakArgs) -> Result<(), CliError> {
    if args.report.is_dir() {
        return Err(CliError::bad_input(format!("--report {}: is a directory", args.report.display())));
    }
    let dir = match args.report.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    tempfile::tempfile_in(&dir)
        .map_err(|e| CliError::bad_input(format!("--report {}: cannot write in {}: {e}", args.report.display(), dir.display())))?;
    if args.traces_dir.exists() && !args.traces_dir.is_dir() {
        return Err(CliError::bad_input(format!("--traces-dir {}: is not a directory", args.traces_dir.display())));
    }
    Ok(())
}

/// The nightly soak: progress on stderr, the summary on stdout, the JSON
/// report on disk; a failure (or a stop with failures) is the exit status.
#[derive(Debug, clap::Args)]
struct CoverageArgs {
    /// Swarm seeds to run (0..N) besides exploring every scenario.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    seeds: u64,
    /// Only the swarm seeds: explore no scenario.
    #[arg(long)]
    no_scenarios: bool,
    /// Also print the marks each scenario reaches.
    #[arg(long)]
    per_scenario: bool,
    /// Exit 1 if any mark was never hit (the nightly's check).
    #[arg(long)]
    require_all: bool,
    /// Also measure the directed swarm against the plain one over this many seeds each (after a pilot of a fifth as many).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    directed: Option<u64>,
}

/// `snapsim coverage`: what the scenarios and the swarm reach.
fn coverage(args: &CoverageArgs) -> Result<(), CliError> {
    let scenarios =
        if args.no_scenarios { Vec::new() } else { sim::scenario::all_in(&sim::scenario::scenarios_dir()).map_err(CliError::bad_input)? };
    let (total, per_scenario) = sim::marks::survey(&scenarios, args.seeds);
    if args.per_scenario {
        for (name, counts) in &per_scenario {
            println!("{name}: {}", counts.hits.keys().copied().collect::<Vec<_>>().join(" "));
        }
    }
    print!("{}", total.table());
    if let Some(seeds) = args.directed {
        println!("{}", sim::marks::directed_swarm((seeds / 5).max(1), seeds).describe());
    }
    let missing = total.missing();
    if args.require_all && !missing.is_empty() {
        println!("verdict: FAIL: never hit: {}", missing.join(", "));
        return Err(CliError::failed(format!("{} coverage mark(s) never hit: {}", missing.len(), missing.join(", "))).reported());
    }
    println!("verdict: PASS");
    Ok(())
}

fn soak(args: &SoakArgs) -> Result<(), CliError> {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};
    if args.jobs == Some(0) {
        return Err(CliError::bad_input("--jobs 0: at least one worker"));
    }
    if args.seeds == Some(0) {
        return Err(CliError::bad_input("--seeds 0: at least one seed"));
    }
    if args.duration.is_some_and(|d| d.is_zero()) {
        return Err(CliError::bad_input("--duration 0s: a soak needs some time"));
    }
    check_soak_outputs(args)?;
    let mut config = sim::soak::SoakConfig {
        seed_start: args.seed_start,
        seeds: args.seeds,
        duration: args.duration,
        shard: args.shard,
        mutations: mutations(args.mutation.as_deref())?,
        strict: args.strict,
        header_writes: args.header_writes.unwrap_or_default(),
        traces_max: args.traces_max,
        traces_dir: args.traces_dir.clone(),
        bias: args.bias.unwrap_or_default(),
        ..sim::soak::SoakConfig::default()
    };
    if let Some(pilot) = args.directed {
        let (rarest, bias) = sim::marks::pilot_bias(pilot);
        println!("directed: the pilot's {pilot} seeds reached [{}] least; knobs drawn with --bias {bias}", rarest.join(", "));
        config.bias = bias;
    }
    if let Some(jobs) = args.jobs {
        config.jobs = jobs;
    }
    if config.duration.is_none() && config.seeds.is_none() {
        config.duration = Some(std::time::Duration::from_secs(600));
    }
    // Ctrl-C stops the workers between seeds; the summary and report follow.
    let interrupt = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&interrupt);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).map_err(|e| CliError::failed(format!("cannot catch Ctrl-C: {e}")))?;
    let length = match (config.seeds, config.duration) {
        (Some(seeds), _) => config.shard.seeds_of(seeds),
        (None, Some(duration)) => duration.as_secs().max(1),
        (None, None) => unreachable!("a duration was set above"),
    };
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .map_err(|e| CliError::failed(e.to_string()))?
            .progress_chars("=> "),
    );
    let plain = !std::io::stderr().is_terminal();
    let mut last_plain = std::time::Duration::ZERO;
    println!(
        "soak: shard {} from seed {}, {} workers, {}{}",
        config.shard,
        config.seed_start,
        config.jobs,
        match (config.seeds, config.duration) {
            (Some(seeds), _) => format!("the first {seeds} seeds of the range"),
            (None, Some(duration)) => format!("for {}", humantime::format_duration(duration)),
            (None, None) => unreachable!(),
        },
        header_writes_note(config.header_writes)
    );
    let report = sim::soak::soak(&config, &interrupt, &mut |p| {
        let seconds = p.elapsed.as_secs_f64().max(1e-9);
        let message = format!(
            "{} seeds ({:.1}/s), {} crash states ({:.1}/s), {} failures",
            p.seeds_run,
            p.seeds_run as f64 / seconds,
            p.crash_states,
            p.crash_states as f64 / seconds,
            p.failures
        );
        bar.set_position(if p.seeds_total.is_some() { p.seeds_run } else { p.elapsed.as_secs() });
        bar.set_message(message.clone());
        // Without a terminal (CI logs) the bar is hidden: a line a minute instead.
        if plain && p.elapsed >= last_plain + std::time::Duration::from_secs(60) {
            last_plain = p.elapsed;
            eprintln!("[{}] {message}", humantime::format_duration(std::time::Duration::from_secs(p.elapsed.as_secs())));
        }
    });
    bar.finish_and_clear();
    print!("{}", report.summary());
    print!("{}", report.mark_counts().table());
    let verdict = if !report.failures.is_empty() {
        "FAIL"
    } else if report.stopped_by == "interrupt" {
        "PARTIAL"
    } else {
        "PASS"
    };
    let mut value = serde_json::to_value(&report).map_err(|e| CliError::failed(e.to_string()))?;
    value["verdict"] = json!(verdict);
    let text = serde_json::to_string_pretty(&value).map_err(|e| CliError::failed(e.to_string()))?;
    std::fs::write(&args.report, text + "\n").map_err(|e| CliError::failed(format!("{}: {e}", args.report.display())))?;
    println!("report: {}", args.report.display());
    match verdict {
        "PASS" => {
            println!("verdict: PASS");
            Ok(())
        }
        "PARTIAL" => {
            println!("verdict: PARTIAL (stopped by an interrupt after {} seeds; none failed)", report.seeds_run);
            Err(CliError::partial(format!("interrupted after {} seeds", report.seeds_run)).reported())
        }
        _ => {
            println!("verdict: FAIL ({} failing seed(s))", report.failures.len());
            Err(CliError::failed(format!("{} failing seed(s)", report.failures.len())).reported())
        }
    }
}

#[derive(Debug, clap::Args)]
struct ZooArgs {
    /// Swarm seeds tried (from 0) once the scenarios have not caught a mutation.
    #[arg(long, default_value_t = 200)]
    swarm_seeds: u64,
    /// Hunt only these mutations (`Z3,Z7`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Ignore which scenarios the zoo table aims at each mutation: explore them in name order.
    #[arg(long)]
    blind: bool,
    /// Skip the scenarios: swarm seeds only.
    #[arg(long)]
    swarm_only: bool,
    /// Print one JSON object (every mutation's row and the verdict) on stdout; the table goes to stderr.
    #[arg(long)]
    json: bool,
}

/// Hunts every mutation and prints the zoo table; fails if one survives or
/// is caught by an invariant its row does not list.
fn zoo(args: &ZooArgs) -> Result<(), CliError> {
    use engine::zoo::Mutation;
    use sim::zoo::Verdict;
    let out = Out { json: args.json };
    if !engine::zoo::Mutations::available() {
        return Err(CliError::bad_input(
            "this build has no mutations: run it with `cargo run --release -p snapsim --features bug-zoo --bin snapsim -- zoo`",
        ));
    }
    let mutations: Vec<Mutation> = if args.only.is_empty() {
        Mutation::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|id| Mutation::parse(id).ok_or_else(|| CliError::bad_input(format!("--only: unknown mutation {id:?} (Z1..Z21)"))))
            .collect::<Result<_, _>>()?
    };
    if args.swarm_only && args.swarm_seeds == 0 {
        return Err(CliError::bad_input("--swarm-only with --swarm-seeds 0 hunts nothing"));
    }
    let scenarios = sim::scenario::all_in(&sim::scenario::scenarios_dir()).map_err(CliError::bad_input)?;
    let budget = sim::zoo::Budget { swarm_seeds: args.swarm_seeds, scenarios: !args.swarm_only };
    out.line(format!("{:<4} {:<40} {:<38} {:<14} {:>5} {:>8}  replay", "id", "mutation", "kernel fix", "caught by", "runs", "seconds"));
    let mut times = Vec::new();
    let mut wrong = Vec::new();
    let mut rows = Vec::new();
    for mutation in mutations {
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)] // time to detection is a figure for the user
        let start = std::time::Instant::now();
        let hunt = if args.blind { sim::zoo::hunt_blind(mutation, &scenarios, budget) } else { sim::zoo::hunt(mutation, &scenarios, budget) };
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
        let seconds = start.elapsed().as_secs_f64();
        let (caught_by, replay) = match &hunt.verdict {
            Verdict::Caught { invariant, replay, .. } => (invariant.id().to_string(), replay.clone()),
            Verdict::ByConstruction { invariant, reason, .. } => (format!("{} (model)", invariant.id()), format!("by construction: {reason}")),
            Verdict::ThreadsOnly { threads } => (
                "threads".to_string(),
                format!(
                    "single-threaded runs cannot race; caught by loom model {} and shuttle case {} (see ARCHITECTURE.md)",
                    threads.loom_model, threads.shuttle_case
                ),
            ),
            Verdict::Survived => ("SURVIVED".to_string(), String::new()),
        };
        out.line(format!(
            "{:<4} {:<40} {:<38} {:<14} {:>5} {:>8.2}  {replay}",
            mutation.id(),
            mutation.summary(),
            mutation.kernel_fix(),
            caught_by,
            hunt.attempts,
            seconds
        ));
        let message = match &hunt.verdict {
            Verdict::Caught { message, .. } | Verdict::ByConstruction { message, .. } => Some(message.clone()),
            _ => None,
        };
        if let Some(message) = &message {
            out.line(format!("     {message}"));
        }
        if !matches!(hunt.verdict, Verdict::ByConstruction { .. } | Verdict::ThreadsOnly { .. }) {
            times.push(seconds);
        }
        let rightly = hunt.caught_rightly();
        if !rightly {
            wrong.push(format!("{} {}", mutation.id(), caught_by));
        }
        rows.push(json!({
            "id": mutation.id(), "summary": mutation.summary(), "kernel_fix": mutation.kernel_fix(), "caught_by": caught_by,
            "caught_rightly": rightly, "runs": hunt.attempts, "seconds": seconds, "replay": replay, "message": message,
        }));
    }
    times.sort_by(f64::total_cmp);
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        out.line(format!("time to detection: median {median:.2} s, max {max:.2} s over {} hunted mutations", times.len()));
    }
    let verdict = if wrong.is_empty() { "PASS" } else { "FAIL" };
    out.object(&json!({ "command": "zoo", "verdict": verdict, "mutations": rows, "wrong": wrong }));
    if wrong.is_empty() {
        out.line("verdict: PASS: every mutation caught by an invariant its row lists");
        Ok(())
    } else {
        out.line(format!("verdict: FAIL: survived or caught by an unlisted invariant: {}", wrong.join(", ")));
        Err(CliError::failed(format!("survived or caught by an unlisted invariant: {}", wrong.join(", "))).reported())
    }
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A crash-trace file (`crash-traces/….toml`).
    #[arg(required_unless_present = "seed", conflicts_with = "seed")]
    trace: Option<std::path::PathBuf>,
    /// Replay `snapsim run --seed N` instead (with its default options).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the run's I/O as an HTML timeline to this file (for a failing
    /// crash state: what persisted, what was lost, what the failure needs).
    #[arg(long, value_name = "FILE")]
    timeline: Option<std::path::PathBuf>,
    /// Print one JSON object (recorded and replayed verdicts, replay command) on stdout.
    #[arg(long)]
    json: bool,
}

/// Writes `timeline` as an HTML page to `path`, if asked.
fn write_timeline(out: Out, path: Option<&std::path::Path>, timeline: Option<&sim::timeline::Timeline>) -> Result<(), CliError> {
    let Some(path) = path else { return Ok(()) };
    let Some(timeline) = timeline else {
        out.line(format!("no timeline written to {}: nothing was recorded", path.display()));
        return Ok(());
    };
    std::fs::write(path, timeline.to_html()).map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
    out.line(format!("timeline: {} ({} requests, {} crashes and reloads)", path.display(), timeline.bars.len(), timeline.markers.len()));
    Ok(())
}

/// Minimizes a failing trace and writes it into `crash-traces/`.
fn save_trace(out: Out, trace: &sim::crash_trace::CrashTrace) -> Result<(), CliError> {
    out.line("minimizing …");
    let minimized = trace.minimize(400);
    let dir = std::path::PathBuf::from("crash-traces");
    let path = minimized.write(&dir).map_err(CliError::failed)?;
    let ops = minimized.shape.ops.lines().count();
    out.line(format!("wrote {} ({ops} operations, {} crashes): {}", path.display(), minimized.crashes, minimized.post_mortem));
    Ok(())
}

#[derive(Debug, clap::Args)]
struct ExploreArgs {
    /// A scenario file, or the name of one in `scenarios/` (`basic-cow`); `all` for every one.
    scenario: String,
    /// Override the scenario's bound on non-durable writes enumerated per crash point (0..=16).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=sim::scenario::Limits::WRITES_MAX_MAX as u64))]
    writes_max: Option<u64>,
    /// Stop each run after this many distinct states (0: no limit); a stopped run is PARTIAL.
    #[arg(long, default_value_t = 0)]
    states_max: u64,
    /// Enumerate whole every crash point whose crash-state space holds at most this many states (0: never).
    #[arg(long, default_value_t = sim::explore::Bounds::default().brute_force_max, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    brute_force_max: u64,
    /// Judge whole, per data sector, every larger crash point that takes at most this many states (0: never).
    #[arg(long, default_value_t = sim::explore::Bounds::default().per_sector_states_max, value_parser = clap::value_parser!(u64).range(0..=1 << 24))]
    per_sector_max: u64,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2).
    #[arg(long)]
    strict: bool,
    /// How the engine writes COW headers: `stock` (the stock kernel's, the
    /// default) or `durable` (the kernel with the kernel-patches/ series:
    /// closes K1 and K3).
    #[arg(long, value_name = "stock|durable", value_parser = parse_header_writes)]
    header_writes: Option<engine::store::HeaderWrites>,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    mutation: Option<String>,
    /// On failure, minimize the scenario and write it to `crash-traces/`.
    #[arg(long)]
    save_trace: bool,
    /// On a crash-state failure, write its origin and COW images and the
    /// dmsetup tables that load them into this directory.
    #[arg(long, value_name = "DIR")]
    export: Option<std::path::PathBuf>,
    /// Write the run's I/O as an HTML timeline to this file (for a failing
    /// crash state: what persisted, what was lost, what the failure needs).
    #[arg(long, value_name = "FILE")]
    timeline: Option<std::path::PathBuf>,
    /// Print one JSON object (every run's counts, the verdict, the replay command) on stdout.
    #[arg(long)]
    json: bool,
}

impl ExploreArgs {
    /// The command that replays the exploration of `path` with these options.
    fn replay_command(&self, path: &std::path::Path) -> String {
        let mut command = format!("snapsim explore {}", path.display());
        if let Some(writes_max) = self.writes_max {
            command.push_str(&format!(" --writes-max {writes_max}"));
        }
        if self.states_max != 0 {
            command.push_str(&format!(" --states-max {}", self.states_max));
        }
        if self.brute_force_max != sim::explore::Bounds::default().brute_force_max {
            command.push_str(&format!(" --brute-force-max {}", self.brute_force_max));
        }
        if self.per_sector_max != sim::explore::Bounds::default().per_sector_states_max {
            command.push_str(&format!(" --per-sector-max {}", self.per_sector_max));
        }
        if self.strict {
            command.push_str(" --strict");
        }
        if let Some(header_writes) = self.header_writes {
            command.push_str(&format!(" --header-writes {}", header_writes.name()));
        }
        if let Some(mutation) = &self.mutation {
            command.push_str(&format!(" --mutation {mutation}"));
        }
        command
    }
}

/// The mutations a command line asks for (a usage error if this build cannot make them).
fn mutations(id: Option<&str>) -> Result<engine::zoo::Mutations, CliError> {
    sim::crash_trace::mutations_of(id).map_err(|e| CliError::bad_input(format!("--mutation: {e}")))
}

/// How one scenario's exploration ended.
enum Explored {
    Passed,
    Partial,
    Failed(String),
}

/// Explores one scenario over each of its seeds and prints the figures.
fn explore(
    out: Out,
    scenario: &sim::scenario::Scenario,
    args: &ExploreArgs,
    mutations: engine::zoo::Mutations,
    runs: &mut Vec<serde_json::Value>,
) -> Result<Explored, CliError> {
    let mut bounds = scenario.bounds();
    bounds.writes_max = args.writes_max.map_or(bounds.writes_max, |w| w as usize);
    bounds.states_max = args.states_max;
    bounds.brute_force_max = args.brute_force_max;
    bounds.per_sector_states_max = args.per_sector_max;
    let replay = args.replay_command(&scenario.path);
    let mut partial = false;
    for &seed in &scenario.file.seeds {
        let mut config = scenario.run_config(seed);
        config.mutations = mutations;
        config.strict |= args.strict;
        config.timeline = args.timeline.is_some();
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)] // a throughput figure for the user, not engine time
        let start = std::time::Instant::now();
        let (coverage, outcome) = sim::explore::explore(&config, &bounds);
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
        let seconds = start.elapsed().as_secs_f64();
        out.line(format!(
            "{} seed {seed}: {} steps, {} crash points, {} states, {} distinct checked (at most {} non-durable writes at a point); {}{}, trace hash {:016x}, {:.2} s, {:.0} states/s",
            scenario.name,
            coverage.steps,
            coverage.crash_points,
            coverage.states,
            coverage.distinct,
            coverage.pending_max,
            coverage.describe(&bounds),
            if coverage.truncated { format!("; stopped at --states-max {}", bounds.states_max) } else { String::new() }
                + &if coverage.allowed_k3 > 0 { format!("; kernel behaviour K3 allowed in {} states", coverage.allowed_k3) } else { String::new() },
            coverage.trace_hash,
            seconds,
            coverage.distinct as f64 / seconds.max(1e-9)
        ));
        let failure = outcome.as_ref().err();
        runs.push(json!({
            "scenario": scenario.name, "path": scenario.path.display().to_string(), "seed": seed,
            "verdict": if failure.is_some() { "FAIL" } else if coverage.truncated { "PARTIAL" } else { "PASS" },
            "invariant": failure.map(|f| f.violation.invariant.id()), "message": failure.map(ToString::to_string),
            "cause": failure.and_then(|f| f.cause.as_ref()).map(ToString::to_string),
            "steps": coverage.steps, "crash_points": coverage.crash_points, "states": coverage.states, "distinct": coverage.distinct,
            "pending_max": coverage.pending_max, "writes_max": bounds.writes_max, "allowed_k3": coverage.allowed_k3,
            "complete": coverage.complete, "space": coverage.space.to_string(), "space_log2": coverage.space.log2, "covered": coverage.covered, "trace_hash": format!("{:016x}", coverage.trace_hash),
            "replay": replay,
        }));
        partial |= coverage.truncated;
        if let Err(mut failure) = outcome {
            out.line(format!("verdict: FAIL: {failure}"));
            for event in &failure.violation.events {
                out.line(format!("  {event}"));
            }
            if let Some(cause) = &failure.cause {
                out.line(format!("{cause} ({} non-durable writes at the crash point, {} states judged)", cause.pending, cause.judged));
            }
            out.line(format!("replay: {replay}"));
            if let Some(timeline) = &mut failure.timeline {
                timeline.title = format!(
                    "snapsim explore {} seed {seed}{}",
                    scenario.name,
                    sim::crash_trace::mutation_id(mutations).map_or(String::new(), |m| format!(" --mutation {m}"))
                );
            }
            write_timeline(out, args.timeline.as_deref(), failure.timeline.as_deref())?;
            if let (Some(dir), Some(images)) = (&args.export, &failure.images) {
                let written = sim::export::write_crash_state(dir, &scenario.knobs, images, &failure.to_string())
                    .map_err(|e| CliError::failed(e.to_string()))?;
                out.line(format!("exported the crash state: {} files in {} (load.sh loads them in Linux)", written.len(), dir.display()));
            }
            if args.save_trace {
                save_trace(out, &sim::crash_trace::CrashTrace::from_explore(scenario, seed, mutations, config.strict, &failure.violation))?;
            }
            return Ok(Explored::Failed(format!("{} seed {seed} failed {}", scenario.name, failure.violation.invariant.id())));
        }
    }
    Ok(if partial { Explored::Partial } else { Explored::Passed })
}

fn explore_command(args: &ExploreArgs) -> Result<(), CliError> {
    let out = Out { json: args.json };
    let mutations = mutations(args.mutation.as_deref())?;
    let mut scenarios = if args.scenario == "all" {
        sim::scenario::all_in(&sim::scenario::scenarios_dir()).map_err(CliError::bad_input)?
    } else {
        vec![sim::scenario::Scenario::load(&args.scenario).map_err(CliError::bad_input)?]
    };
    // The flag overrides the scenarios' own `header_writes`, in their runs and in their traces.
    if let Some(header_writes) = args.header_writes {
        scenarios.iter_mut().for_each(|scenario| scenario.file.shape.header_writes = header_writes);
        out.line(format!("explore: {} scenario(s){}", scenarios.len(), header_writes_note(header_writes)));
    }
    // Never write where this command reads: checked before anything runs.
    for scenario in &scenarios {
        if let Some(timeline) = &args.timeline {
            snapsim::paths::check_not_an_input("--timeline", timeline, &[("the scenario", &scenario.path)])?;
        }
        if let Some(dir) = &args.export {
            for name in ["origin.img", "tables.txt", "load.sh", "README.txt"] {
                snapsim::paths::check_not_an_input("--export", &dir.join(name), &[("the scenario", &scenario.path)])?;
            }
        }
    }
    let (mut failed, mut partial, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for scenario in &scenarios {
        match explore(out, scenario, args, mutations, &mut runs)? {
            Explored::Passed => {}
            Explored::Partial => partial.push(scenario.name.clone()),
            Explored::Failed(why) => failed.push(why),
        }
    }
    let (verdict, error) = if !failed.is_empty() {
        (format!("FAIL ({})", failed.join("; ")), Some(CliError::failed(format!("{} scenario(s) failed", failed.len()))))
    } else if !partial.is_empty() {
        let why = format!("stopped at --states-max {} before checking every state of {}", args.states_max, partial.join(", "));
        (format!("PARTIAL ({why})"), Some(CliError::partial(why)))
    } else {
        ("PASS".to_string(), None)
    };
    out.line(format!("verdict: {verdict}"));
    let word = error.as_ref().map_or("PASS", |e| e.kind.verdict());
    out.object(&json!({ "command": "explore", "verdict": word, "failed": failed, "partial": partial, "runs": runs }));
    error.map_or(Ok(()), |e| Err(e.reported()))
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The root seed: it draws the knobs and every choice of the run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Steps after which an unfinished run is a liveness failure (at least 1).
    #[arg(long, default_value_t = sim::world::RunConfig::MAX_STEPS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: u64,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2).
    #[arg(long)]
    strict: bool,
    /// How the engine writes COW headers: `stock` (the stock kernel's, the
    /// default) or `durable` (the kernel with the kernel-patches/ series:
    /// closes K1 and K3).
    #[arg(long, value_name = "stock|durable", value_parser = parse_header_writes)]
    header_writes: Option<engine::store::HeaderWrites>,
    /// On failure, minimize the run and write it to `crash-traces/`.
    #[arg(long)]
    save_trace: bool,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    mutation: Option<String>,
    /// Draw the knobs with these odds (what a directed soak's replay line carries).
    #[arg(long, value_parser = parse_bias)]
    bias: Option<sim::world::knobs::SwarmBias>,
    /// Write the run's I/O as an HTML timeline to this file (for a failing
    /// crash state: what persisted, what was lost, what the failure needs).
    #[arg(long, value_name = "FILE")]
    timeline: Option<std::path::PathBuf>,
    /// Print one JSON object (verdict, invariant, counts, trace hash, replay command) on stdout.
    #[arg(long)]
    json: bool,
}

/// The JSON object of a run.
fn run_json(report: &sim::world::Report) -> serde_json::Value {
    let failure = report.failure.as_ref();
    json!({
        "command": "run",
        "seed": report.seed,
        "knobs": report.knobs.to_string(),
        "verdict": if failure.is_some() { "FAIL" } else { "PASS" },
        "invariant": failure.map(|f| f.violation.invariant.id()),
        "message": failure.map(ToString::to_string),
        "stats": report.stats,
        "kernel_behaviours_allowed": report.allowances.to_string(),
        "trace_hash": format!("{:016x}", report.trace_hash),
        "replay": report.replay_command(),
        "replay_test": report.replay_test_command(),
    })
}

/// Prints a run's summary and verdict; a failure becomes the exit status.
fn print_run(out: Out, report: &sim::world::Report) -> Result<(), CliError> {
    let s = &report.stats;
    out.line(format!(
        "steps {}, operations {} ({} acknowledged, {} failed), disk requests {} ({} errors), deferred {}, crashes {}, sectors checked {}",
        s.steps, s.operations, s.acknowledged, s.failed, s.disk_requests, s.disk_errors, s.deferred, s.crashes, s.sectors_checked
    ));
    out.line(format!("kernel behaviours allowed: {}", report.allowances));
    out.line(format!("trace hash {:016x}", report.trace_hash));
    out.object(&run_json(report));
    match &report.failure {
        None => {
            out.line("verdict: PASS");
            Ok(())
        }
        Some(failure) => {
            out.line(format!("verdict: FAIL: {failure}"));
            out.line("events before it:");
            for event in &failure.violation.events {
                out.line(format!("  {event}"));
            }
            out.line(format!("replay: {}", report.replay_command()));
            out.line(format!("    or: {}", report.replay_test_command()));
            Err(CliError::failed(format!("seed {} failed {}", report.seed, failure.violation.invariant.id())).reported())
        }
    }
}

/// Runs one seed as `config` says and prints it.
fn run_seed(out: Out, config: &sim::world::RunConfig) -> (sim::world::Report, Result<(), CliError>) {
    out.line(format!("seed {}: {}{}", config.seed, config.knobs(), header_writes_note(config.header_writes)));
    let report = sim::world::run(config);
    let verdict = print_run(out, &report);
    (report, verdict)
}

fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let out = Out { json: args.json };
    if let Some(seed) = args.seed {
        let mut config = sim::world::RunConfig::new(seed);
        config.timeline = args.timeline.is_some();
        let (report, verdict) = run_seed(out, &config);
        write_timeline(out, args.timeline.as_deref(), report.timeline.as_ref())?;
        return verdict;
    }
    let path = args.trace.expect("clap requires a trace without --seed");
    let trace = sim::crash_trace::CrashTrace::load(&path).map_err(CliError::bad_input)?;
    if let Some(timeline) = &args.timeline {
        snapsim::paths::check_not_an_input("--timeline", timeline, &[("the trace", &path)])?;
    }
    // Checked before running: a trace asking for a mutation this build lacks is a usage error.
    mutations(trace.mutation.as_deref())?;
    out.line(format!("{}: {} (recorded verdict {})", path.display(), trace.post_mortem, trace.verdict));
    let mut replayed = trace.replay_recording(args.timeline.is_some()).map_err(CliError::bad_input)?;
    if let Some(timeline) = &mut replayed.timeline {
        timeline.title = format!("snapsim replay {}", path.display());
    }
    write_timeline(out, args.timeline.as_deref(), replayed.timeline.as_ref())?;
    match &replayed.violation {
        Some(violation) => out.line(format!("replayed: {violation}")),
        None => out.line("replayed: pass"),
    }
    if let Some(cause) = &replayed.cause {
        out.line(cause.clone());
    }
    out.line(format!("trace hash {:016x}", replayed.trace_hash));
    let matches = replayed.verdict() == trace.verdict;
    out.object(&json!({
        "command": "replay", "trace": path.display().to_string(), "verdict": if matches { "PASS" } else { "FAIL" },
        "recorded": trace.verdict, "replayed": replayed.verdict(), "invariant": replayed.violation.as_ref().map(|v| v.invariant.id()),
        "message": replayed.violation.as_ref().map(ToString::to_string), "cause": replayed.cause, "steps": replayed.steps,
        "trace_hash": format!("{:016x}", replayed.trace_hash), "replay": format!("snapsim replay {}", path.display()),
    }));
    if matches {
        out.line(format!("verdict: PASS: {} as recorded", trace.verdict));
        Ok(())
    } else {
        out.line(format!("verdict: FAIL: recorded verdict {}, replay gave {}", trace.verdict, replayed.verdict()));
        Err(CliError::failed(format!("{}: recorded verdict {}, replay gave {}", path.display(), trace.verdict, replayed.verdict())).reported())
    }
}

#[derive(Debug, clap::Args)]
struct ApplyCommand {
    #[command(flatten)]
    apply: live::ApplyArgs,
    /// Print one JSON object (requests, failures, status, verdict) on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct MergeCommand {
    #[command(flatten)]
    live: live::LiveArgs,
    /// Print one JSON object (runs merged, outcome, status, verdict) on stdout.
    #[arg(long)]
    json: bool,
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Inspect(args) => {
            if args.records {
                let stdout = std::io::stdout();
                inspect::dump_records(&args, &mut stdout.lock())?;
                return Ok(());
            }
            let report = inspect::report(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::failed(e.to_string()))?);
            } else {
                print!("{}", inspect::render(&report));
            }
            if report.state == "error" {
                let kind = report.error_kind.unwrap_or(ErrorKind::BadInput);
                let message = format!("{}: {}", report.path, report.error.unwrap_or_default());
                return Err(CliError { kind, message, reported: true });
            }
            Ok(())
        }
        Command::Apply(ApplyCommand { apply: args, json }) => {
            let out = Out { json };
            let applied = live::apply(&args)?;
            out.line(format!("applied {} requests, {} failed", applied.requests, applied.failed));
            if let Some(failure) = &applied.first_failure {
                out.line(format!("first failure: {failure}"));
            }
            out.line(format!("status: {}", applied.status));
            let failure = applied.failure();
            out.object(&json!({
                "command": "apply", "verdict": if failure.is_some() { "FAIL" } else { "PASS" }, "requests": applied.requests,
                "failed": applied.failed, "first_failure": applied.first_failure, "status": applied.status, "error": failure,
            }));
            match failure {
                None => Ok(()),
                Some(why) => Err(CliError::failed(why).reported()),
            }
        }
        Command::Merge(MergeCommand { live: args, json }) => {
            let out = Out { json };
            let merged = live::merge(&args)?;
            out.line(format!("merged {} runs: {:?}", merged.runs, merged.outcome));
            out.line(format!("status: {}", merged.status));
            let complete = merged.outcome == engine::targets::MergeOutcome::Complete;
            out.object(&json!({
                "command": "merge", "verdict": if complete { "PASS" } else { "FAIL" }, "runs": merged.runs,
                "outcome": format!("{:?}", merged.outcome), "status": merged.status,
            }));
            if complete { Ok(()) } else { Err(CliError::failed(format!("merge did not complete: {:?}", merged.outcome)).reported()) }
        }
        Command::Run(args) => {
            let out = Out { json: args.json };
            let mut config = sim::world::RunConfig::new(args.seed);
            config.max_steps = args.max_steps;
            config.strict |= args.strict;
            config.header_writes = args.header_writes.unwrap_or_default();
            config.mutations = mutations(args.mutation.as_deref())?;
            config.bias = args.bias.unwrap_or_default();
            config.timeline = args.timeline.is_some();
            let (mut report, verdict) = run_seed(out, &config);
            if let Some(timeline) = &mut report.timeline {
                timeline.title = report.replay.clone();
            }
            write_timeline(out, args.timeline.as_deref(), report.timeline.as_ref())?;
            if verdict.is_err() && args.save_trace {
                save_trace(out, &sim::crash_trace::CrashTrace::from_run(&config, &report))?;
            }
            verdict
        }
        Command::Replay(args) => replay(args),
        Command::Explore(args) => explore_command(&args),
        Command::Zoo(args) => zoo(&args),
        Command::Soak(args) => soak(&args),
        Command::Bench(args) => bench(&args),
        Command::Coverage(args) => coverage(&args),
        Command::View(args) => {
            let stats = view::run(&args)?;
            eprintln!(
                "wrote {}: {} chunks, {} from the COW, {} from the origin",
                args.out.display(),
                stats.chunks,
                stats.chunks_from_cow,
                stats.chunks - stats.chunks_from_cow
            );
            Ok(())
        }
    }
}

/// Like every Unix filter, end quietly when the reader goes away (`snapsim
/// explore all | head`) instead of panicking on the next write: Rust starts
/// programs with SIGPIPE ignored, this gives it back its default.
#[allow(unsafe_code)] // the binary's one unsafe call; the libraries forbid it
fn end_quietly_when_the_reader_goes() {
    // SAFETY: restoring a signal's default disposition, before any thread
    // starts, touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    end_quietly_when_the_reader_goes();
    let cli = Cli::parse();
    // Simulated runs fail disks on purpose; the engine's warnings about them
    // would drown the report (RUST_LOG still shows them).
    let simulated = matches!(
        cli.command,
        Command::Run(_) | Command::Explore(_) | Command::Replay(_) | Command::Zoo(_) | Command::Soak(_) | Command::Bench(_) | Command::Coverage(_)
    );
    let default_filter = if simulated { "off" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter)).format_timestamp(None).init();
    let json = cli.command.json();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Under --json a refused command still prints its one object.
            if json && !error.reported {
                println!("{}", json!({ "verdict": error.kind.verdict(), "error": error.message }));
            }
            eprintln!("snapsim: error: {error}");
            ExitCode::from(error.kind.exit_code())
        }
    }
}
