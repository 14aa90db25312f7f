//! `snapsim`: tools for dm-snapshot COW devices and the simulation harness.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sim::cli::{CliError, inspect, live, view};

// Counts allocations for `snapsim bench`'s memory figures (a wrapper over
// the system allocator; the count is two atomic adds per call).
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[derive(Debug, Parser)]
#[command(name = "snapsim", version, about = "Inspect, view and simulate Linux dm-snapshot COW devices")]
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
    Apply(live::ApplyArgs),
    /// Merge a snapshot's COW back into its origin (offline snapshot-merge).
    Merge(live::LiveArgs),
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
    /// Measure the project's performance figures (docs/PERFORMANCE.md) and print them.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Where the throughput runs put their files (512 MiB at most); the system's temporary directory by default.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn bench(args: &BenchArgs) -> Result<(), CliError> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new().prefix("snapsim-bench").tempdir_in(&base).map_err(|e| CliError::new(format!("{}: {e}", base.display())))?;
    sim::bench::run_all(sim::bench::MemoryProbe::new(&ALLOCATOR), dir.path());
    Ok(())
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    /// Wall time to run for (`8h`, `10m`, `90s`); without it (and without --seeds), 10 minutes.
    #[arg(long, value_parser = humantime::parse_duration)]
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
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    mutation: Option<String>,
}

/// The nightly soak: progress on stderr, the summary on stdout, the JSON
/// report on disk; a failure (or a stop with failures) is the exit status.
fn soak(args: &SoakArgs) -> Result<(), CliError> {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut config = sim::soak::SoakConfig {
        seed_start: args.seed_start,
        seeds: args.seeds,
        duration: args.duration,
        shard: args.shard,
        mutations: mutations(args.mutation.as_deref())?,
        strict: args.strict,
        traces_max: args.traces_max,
        traces_dir: args.traces_dir.clone(),
        ..sim::soak::SoakConfig::default()
    };
    if let Some(jobs) = args.jobs {
        config.jobs = jobs.max(1);
    }
    if config.duration.is_none() && config.seeds.is_none() {
        config.duration = Some(std::time::Duration::from_secs(600));
    }
    // Ctrl-C stops the workers between seeds; the summary and report follow.
    let interrupt = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&interrupt);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).map_err(|e| CliError::new(format!("cannot catch Ctrl-C: {e}")))?;
    let length = match (config.seeds, config.duration) {
        (Some(seeds), _) => config.shard.seeds_of(seeds),
        (None, Some(duration)) => duration.as_secs().max(1),
        (None, None) => unreachable!("a duration was set above"),
    };
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .map_err(|e| CliError::new(e.to_string()))?
            .progress_chars("=> "),
    );
    let plain = !std::io::stderr().is_terminal();
    let mut last_plain = std::time::Duration::ZERO;
    println!(
        "soak: shard {} from seed {}, {} workers, {}",
        config.shard,
        config.seed_start,
        config.jobs,
        match (config.seeds, config.duration) {
            (Some(seeds), _) => format!("the first {seeds} seeds of the range"),
            (None, Some(duration)) => format!("for {}", humantime::format_duration(duration)),
            (None, None) => unreachable!(),
        }
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
    let json = serde_json::to_string_pretty(&report).map_err(|e| CliError::new(e.to_string()))?;
    std::fs::write(&args.report, json + "\n").map_err(|e| CliError::new(format!("{}: {e}", args.report.display())))?;
    println!("report: {}", args.report.display());
    if report.failures.is_empty() {
        println!("verdict: PASS");
        Ok(())
    } else {
        Err(CliError::new(format!("{} failing seed(s)", report.failures.len())))
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
}

/// Hunts every mutation and prints the zoo table; fails if one survives or
/// is caught by an invariant its row does not list.
fn zoo(args: &ZooArgs) -> Result<(), CliError> {
    use engine::zoo::Mutation;
    use sim::zoo::Verdict;
    if !engine::zoo::Mutations::available() {
        return Err(CliError::new("this build has no mutations: run it with `cargo run --release -p sim --features bug-zoo --bin snapsim -- zoo`"));
    }
    let mutations: Vec<Mutation> = if args.only.is_empty() {
        Mutation::ALL.to_vec()
    } else {
        args.only.iter().map(|id| Mutation::parse(id).ok_or_else(|| CliError::new(format!("unknown mutation {id:?}")))).collect::<Result<_, _>>()?
    };
    let scenarios = sim::scenario::all_in(&sim::scenario::scenarios_dir()).map_err(CliError::new)?;
    let budget = sim::zoo::Budget { swarm_seeds: args.swarm_seeds, scenarios: !args.swarm_only };
    println!("{:<4} {:<40} {:<38} {:<14} {:>5} {:>8}  replay", "id", "mutation", "kernel fix", "caught by", "runs", "seconds");
    let mut times = Vec::new();
    let mut wrong = Vec::new();
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
                format!("single-threaded runs cannot race; caught by loom model {} and shuttle case {} (see ARCHITECTURE.md)", threads.loom_model, threads.shuttle_case),
            ),
            Verdict::Survived => ("SURVIVED".to_string(), String::new()),
        };
        println!("{:<4} {:<40} {:<38} {:<14} {:>5} {:>8.2}  {replay}", mutation.id(), mutation.summary(), mutation.kernel_fix(), caught_by, hunt.attempts, seconds);
        if let Verdict::Caught { message, .. } | Verdict::ByConstruction { message, .. } = &hunt.verdict {
            println!("     {message}");
        }
        if !matches!(hunt.verdict, Verdict::ByConstruction { .. } | Verdict::ThreadsOnly { .. }) {
            times.push(seconds);
        }
        if !hunt.caught_rightly() {
            wrong.push(format!("{} {}", mutation.id(), caught_by));
        }
    }
    times.sort_by(f64::total_cmp);
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        println!("time to detection: median {median:.2} s, max {max:.2} s over {} hunted mutations", times.len());
    }
    if wrong.is_empty() {
        println!("verdict: every mutation caught by an invariant its row lists");
        Ok(())
    } else {
        Err(CliError::new(format!("survived or caught by an unlisted invariant: {}", wrong.join(", "))))
    }
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// A crash-trace file (`crash-traces/….toml`).
    #[arg(required_unless_present = "seed")]
    trace: Option<std::path::PathBuf>,
    /// Replay `snapsim run --seed N` instead.
    #[arg(long)]
    seed: Option<u64>,
}

/// Minimizes a failing trace and writes it into `crash-traces/`.
fn save_trace(trace: &sim::crash_trace::CrashTrace) -> Result<(), CliError> {
    println!("minimizing …");
    let minimized = trace.minimize(400);
    let dir = std::path::PathBuf::from("crash-traces");
    let path = minimized.write(&dir).map_err(CliError::new)?;
    let ops = minimized.ops.lines().count();
    println!("wrote {} ({ops} operations, {} crashes): {}", path.display(), minimized.crashes, minimized.post_mortem);
    Ok(())
}

#[derive(Debug, clap::Args)]
struct ExploreArgs {
    /// A scenario file, or the name of one in `scenarios/` (`basic-cow`); `all` for every one.
    scenario: String,
    /// Override the scenario's bound on non-durable writes enumerated per crash point.
    #[arg(long)]
    writes_max: Option<usize>,
    /// Stop each run after this many distinct states (0: no limit).
    #[arg(long, default_value_t = 0)]
    states_max: u64,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    mutation: Option<String>,
    /// On failure, minimize the scenario and write it to `crash-traces/`.
    #[arg(long)]
    save_trace: bool,
}

/// The mutations a command line asks for.
fn mutations(id: Option<&str>) -> Result<engine::zoo::Mutations, CliError> {
    sim::crash_trace::mutations_of(id).map_err(CliError::new)
}

/// Explores one scenario over each of its seeds and prints the figures.
fn explore(scenario: &sim::scenario::Scenario, args: &ExploreArgs) -> Result<(), CliError> {
    let mut bounds = scenario.bounds();
    bounds.writes_max = args.writes_max.unwrap_or(bounds.writes_max);
    bounds.states_max = args.states_max;
    let mutations = mutations(args.mutation.as_deref())?;
    for &seed in &scenario.file.seeds {
        let mut config = scenario.run_config(seed);
        config.mutations = mutations;
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)] // a throughput figure for the user, not engine time
        let start = std::time::Instant::now();
        let (coverage, outcome) = sim::explore::explore(&config, &bounds);
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{} seed {seed}: {} steps, {} crash points, {} states, {} distinct checked (at most {} non-durable writes at a point; bound {}), {:.2} s, {:.0} states/s",
            scenario.name,
            coverage.steps,
            coverage.crash_points,
            coverage.states,
            coverage.distinct,
            coverage.pending_max,
            bounds.writes_max,
            seconds,
            coverage.distinct as f64 / seconds.max(1e-9)
        );
        if let Err(failure) = outcome {
            println!("verdict: FAIL: {failure}");
            for event in &failure.violation.events {
                println!("  {event}");
            }
            let mutation = args.mutation.as_ref().map_or(String::new(), |m| format!(" --mutation {m}"));
            println!("replay: snapsim explore {}{mutation}", scenario.path.display());
            if args.save_trace {
                save_trace(&sim::crash_trace::CrashTrace::from_explore(scenario, seed, mutations, false, &failure.violation))?;
            }
            return Err(CliError::new(format!("{} seed {seed} failed {}", scenario.name, failure.violation.invariant.id())));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The root seed: it draws the knobs and every choice of the run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Steps after which an unfinished run is a liveness failure.
    #[arg(long, default_value_t = 2_000_000)]
    max_steps: u64,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2).
    #[arg(long)]
    strict: bool,
    /// On failure, minimize the run and write it to `crash-traces/`.
    #[arg(long)]
    save_trace: bool,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    mutation: Option<String>,
}

/// Prints a run's summary and verdict; a failure becomes the exit status.
fn print_run(report: &sim::world::Report) -> Result<(), CliError> {
    let s = &report.stats;
    println!(
        "steps {}, operations {} ({} acknowledged, {} failed), disk requests {} ({} errors), deferred {}, crashes {}, sectors checked {}",
        s.steps, s.operations, s.acknowledged, s.failed, s.disk_requests, s.disk_errors, s.deferred, s.crashes, s.sectors_checked
    );
    println!("kernel behaviours allowed: {}", report.allowances);
    println!("trace hash {:016x}", report.trace_hash);
    match &report.failure {
        None => {
            println!("verdict: PASS");
            Ok(())
        }
        Some(failure) => {
            println!("verdict: FAIL: {failure}");
            println!("events before it:");
            for event in &failure.violation.events {
                println!("  {event}");
            }
            println!("replay: {}", report.replay_command());
            println!("    or: {}", report.replay_test_command());
            Err(CliError::new(format!("seed {} failed {}", report.seed, failure.violation.invariant.id())))
        }
    }
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
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| CliError::new(e.to_string()))?);
            } else {
                print!("{}", inspect::render(&report));
            }
            if report.state == "error" {
                return Err(CliError::new(format!("{}: {}", report.path, report.error.unwrap_or_default())));
            }
            Ok(())
        }
        Command::Apply(args) => {
            let applied = live::apply(&args)?;
            println!("applied {} requests, {} failed", applied.requests, applied.failed);
            if let Some(failure) = &applied.first_failure {
                println!("first failure: {failure}");
            }
            println!("status: {}", applied.status);
            Ok(())
        }
        Command::Merge(args) => {
            let merged = live::merge(&args)?;
            println!("merged {} runs: {:?}", merged.runs, merged.outcome);
            println!("status: {}", merged.status);
            match merged.outcome {
                engine::target::MergeOutcome::Complete => Ok(()),
                other => Err(CliError::new(format!("merge did not complete: {other:?}"))),
            }
        }
        Command::Run(args) => {
            let mut config = sim::world::RunConfig::new(args.seed);
            config.max_steps = args.max_steps;
            config.strict |= args.strict;
            config.mutations = mutations(args.mutation.as_deref())?;
            let report = sim::world::run_reporting(&config);
            let verdict = print_run(&report);
            if verdict.is_err() && args.save_trace {
                save_trace(&sim::crash_trace::CrashTrace::from_run(&config, &report))?;
            }
            verdict
        }
        Command::Replay(args) => {
            if let Some(seed) = args.seed {
                return print_run(&sim::world::run_reporting(&sim::world::RunConfig::new(seed)));
            }
            let path = args.trace.expect("clap requires a trace without --seed");
            let trace = sim::crash_trace::CrashTrace::load(&path).map_err(CliError::new)?;
            println!("{}: {} (recorded verdict {})", path.display(), trace.post_mortem, trace.verdict);
            let replayed = trace.replay().map_err(CliError::new)?;
            match &replayed.violation {
                Some(violation) => println!("replayed: {violation}"),
                None => println!("replayed: pass"),
            }
            if replayed.verdict() == trace.verdict {
                println!("verdict: {} as recorded", trace.verdict);
                Ok(())
            } else {
                Err(CliError::new(format!("{}: recorded verdict {}, replay gave {}", path.display(), trace.verdict, replayed.verdict())))
            }
        }
        Command::Explore(args) => {
            let scenarios = if args.scenario == "all" {
                sim::scenario::all_in(&sim::scenario::scenarios_dir()).map_err(CliError::new)?
            } else {
                vec![sim::scenario::Scenario::load(&args.scenario).map_err(CliError::new)?]
            };
            let mut failed = Vec::new();
            for scenario in &scenarios {
                if let Err(error) = explore(scenario, &args) {
                    failed.push(error.to_string());
                }
            }
            println!("verdict: {}", if failed.is_empty() { "PASS".to_string() } else { format!("FAIL ({})", failed.join("; ")) });
            if failed.is_empty() { Ok(()) } else { Err(CliError::new(format!("{} scenario(s) failed", failed.len()))) }
        }
        Command::Zoo(args) => zoo(&args),
        Command::Soak(args) => soak(&args),
        Command::Bench(args) => bench(&args),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Simulated runs fail disks on purpose; the engine's warnings about them
    // would drown the report (RUST_LOG still shows them).
    let simulated = matches!(cli.command, Command::Run(_) | Command::Explore(_) | Command::Replay(_) | Command::Zoo(_) | Command::Soak(_) | Command::Bench(_));
    let default_filter = if simulated { "off" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter)).format_timestamp(None).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("snapsim: error: {error}");
            ExitCode::FAILURE
        }
    }
}
