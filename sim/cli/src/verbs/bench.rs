//! `snapsim bench`: the project's performance figures.

use std::path::PathBuf;

use serde_json::json;

use crate::outcome::{Out, Outcome, Verdict};
use crate::{CliError, ErrorKind};

/// Options of `snapsim bench`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  snapsim bench\n  snapsim bench --dir /var/tmp\n  snapsim bench --json > figures.json   # every figure under a stable name; the tables go to stderr"
)]
pub struct BenchArgs {
    /// Print every figure as one JSON object under stable names
    /// (`crash_states.basic_cow.distinct_per_s`, `swarm.requests_per_s`, …);
    /// the human tables go to standard error.
    #[arg(long)]
    pub json: bool,
    /// Where the throughput runs put their files (512 MiB at most); the system's temporary directory by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Measures and prints every figure. Its files live in a temporary
/// directory that is removed at the end, and on Ctrl-C too.
pub fn run(args: &BenchArgs, _out: Out, probe: sim::bench::MemoryProbe) -> Result<Outcome, CliError> {
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
    sim::bench::tables_to_stderr(args.json);
    let _ = sim::bench::take_figures();
    sim::bench::run_all(probe, &path);
    let figures = sim::bench::take_figures();
    Ok(Outcome::new(Verdict::Pass, json!({ "figures": figures })))
}
