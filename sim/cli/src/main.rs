//! `snapsim`: tools for dm-snapshot COW devices and the simulation harness.
//!
//! This file parses, validates the environment, dispatches to a verb (one
//! module each, under `verbs/`), prints its [`Outcome`] and maps its verdict
//! to the exit status, in one place.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use snapsim::outcome::{Out, Outcome, error_object, print_error};
use snapsim::verbs::{apply, bench, coverage, explore, merge, replay, run, soak, zoo};
use snapsim::{CliError, inspect, settings};

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
                  2 bad invocation or bad input (nothing written); 3 PARTIAL: stopped before everything asked was checked or written.\n\
                  Environment: SNAPSIM_STRICT=0|1|true|false (as --strict); SNAPSIM_SCENARIOS=DIR (as --scenarios)."
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
    View(snapsim::verbs::view::ViewCommand),
    /// Replay a workload's writes through a live snapshot onto real origin and COW files.
    Apply(apply::ApplyCommand),
    /// Merge a snapshot's COW back into its origin (offline snapshot-merge).
    Merge(merge::MergeCommand),
    /// Run the deterministic simulation for one seed: knobs, summary, verdict, trace hash.
    Run(run::RunArgs),
    /// Run a scenario and check every crash state within its bound; print the counts.
    Explore(explore::ExploreArgs),
    /// Replay a crash trace (or a seed) and check it gives its recorded verdict.
    Replay(replay::ReplayArgs),
    /// Re-inject each historical kernel bug (Z1–Z22) and hunt it; needs `--features bug-zoo`.
    Zoo(zoo::ZooArgs),
    /// Run swarm seeds on parallel workers for a duration (the nightly soak); report every failure.
    Soak(soak::SoakArgs),
    /// Explore every scenario and run swarm seeds; print each coverage mark: hits, first hit, why.
    Coverage(coverage::CoverageArgs),
    /// Measure the project's performance figures (docs/PERFORMANCE.md) and print them.
    Bench(bench::BenchArgs),
}

impl Command {
    /// The verb's name, as typed and as the JSON object's `command`.
    fn name(&self) -> &'static str {
        match self {
            Command::Inspect(_) => "inspect",
            Command::View(_) => "view",
            Command::Apply(_) => "apply",
            Command::Merge(_) => "merge",
            Command::Run(_) => "run",
            Command::Explore(_) => "explore",
            Command::Replay(_) => "replay",
            Command::Zoo(_) => "zoo",
            Command::Soak(_) => "soak",
            Command::Coverage(_) => "coverage",
            Command::Bench(_) => "bench",
        }
    }

    /// Whether stdout carries one JSON object.
    fn json(&self) -> bool {
        match self {
            Command::Inspect(args) => args.json,
            Command::Apply(args) => args.json,
            Command::Merge(args) => args.json,
            Command::Run(args) => args.json,
            Command::Explore(args) => args.json,
            Command::Replay(args) => args.json,
            Command::Zoo(args) => args.json,
            Command::Coverage(args) => args.json,
            Command::Bench(args) => args.json,
            Command::View(_) | Command::Soak(_) => false,
        }
    }

    /// Runs the verb.
    fn run(&self, out: Out) -> Result<Outcome, CliError> {
        match self {
            Command::Inspect(args) => snapsim::verbs::inspect::run(args),
            Command::View(args) => snapsim::verbs::view::run(args),
            Command::Apply(args) => apply::run(args),
            Command::Merge(args) => merge::run(args),
            Command::Run(args) => run::run(args, out),
            Command::Explore(args) => explore::run(args, out),
            Command::Replay(args) => replay::run(args, out),
            Command::Zoo(args) => zoo::run(args, out),
            Command::Soak(args) => soak::run(args, out),
            Command::Coverage(args) => coverage::run(args, out),
            Command::Bench(args) => bench::run(args, out, sim::bench::MemoryProbe::new(&ALLOCATOR)),
        }
    }
}

/// Like every Unix filter, end quietly when the reader goes away (`snapsim
/// explore all | head`) instead of panicking on the next write: Rust starts
/// programs with SIGPIPE ignored, this gives it back its default.
#[allow(unsafe_code)] // with the variable below, the binary's only unsafe calls; the libraries forbid it
fn end_quietly_when_the_reader_goes() {
    // SAFETY: restoring a signal's default disposition, before any thread
    // starts, touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses `SNAPSIM_STRICT` strictly and writes it back as `1` or `0`: the
/// simulation library reads it too, and would take `false` for strict.
#[allow(unsafe_code)]
fn settle_strict_variable() -> Result<(), CliError> {
    let Some(value) = std::env::var_os(settings::STRICT_VARIABLE) else { return Ok(()) };
    let on = settings::parse_bool_variable(settings::STRICT_VARIABLE, &value.to_string_lossy())?;
    // SAFETY: called from `main` before any thread starts (no Ctrl-C
    // handler, worker or logger thread yet), so nothing reads the
    // environment concurrently.
    unsafe {
        std::env::set_var(settings::STRICT_VARIABLE, if on { "1" } else { "0" });
    }
    Ok(())
}

/// Parses the command line; under `--json`, a refusal by clap is still one
/// JSON object on stdout (its message on stderr, as always).
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|error| {
        use clap::error::ErrorKind;
        let asked_json = std::env::args_os().any(|arg| arg == "--json");
        if asked_json && !matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            let message = error.render().to_string();
            let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
            println!("{}", error_object(None, &CliError::bad_input(first)));
        }
        let _ = error.print();
        ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
    })
}

fn main() -> ExitCode {
    end_quietly_when_the_reader_goes();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let (name, out) = (cli.command.name(), Out { json: cli.command.json() });
    if let Err(error) = settle_strict_variable() {
        return ExitCode::from(print_error(Some(name), &error, out));
    }
    // Simulated runs fail disks on purpose; the engine's warnings about them
    // would drown the report (RUST_LOG still shows them).
    let real = matches!(cli.command, Command::Inspect(_) | Command::View(_) | Command::Apply(_) | Command::Merge(_));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(if real { "warn" } else { "off" })).format_timestamp(None).init();
    ExitCode::from(match cli.command.run(out) {
        Ok(outcome) => outcome.print(name, out),
        Err(error) => print_error(Some(name), &error, out),
    })
}
