//! `snapsim`: tools for dm-snapshot COW devices and the simulation harness.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sim::cli::{CliError, inspect, live, view};

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
            print_run(&sim::world::run_reporting(&config))
        }
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).format_timestamp(None).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("snapsim: error: {error}");
            ExitCode::FAILURE
        }
    }
}
