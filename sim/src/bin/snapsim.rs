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
