//! `snapsim apply`: a workload's writes through a live snapshot onto real files.

use serde_json::json;

use crate::outcome::{Outcome, Verdict};
use crate::paths::check_regular_input;
use crate::{CliError, live};

/// Options of `snapsim apply`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim apply --origin origin.img --cow cow.img --chunk-size 8 workload.txt\n  \
                        snapsim apply --origin origin.img --cow cow.img vector.json --json")]
pub struct ApplyCommand {
    #[command(flatten)]
    pub apply: live::ApplyArgs,
    /// Print one JSON object (requests, failures, status, verdict) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Applies the workload; failed requests or a snapshot gone Invalid or Overflow fail it.
pub fn run(args: &ApplyCommand) -> Result<Outcome, CliError> {
    check_regular_input("the workload", &args.apply.workload)?;
    let applied = live::apply(&args.apply)?;
    let failure = applied.failure();
    let mut outcome = Outcome::new(
        Verdict::fail_if(failure.is_some()),
        json!({
            "requests": applied.requests, "failed": applied.failed, "first_failure": applied.first_failure,
            "status": applied.status, "error": failure,
        }),
    );
    outcome.lines.push(format!("applied {} requests, {} failed", applied.requests, applied.failed));
    outcome.lines.extend(applied.first_failure.as_ref().map(|f| format!("first failure: {f}")));
    outcome.lines.push(format!("status: {}", applied.status));
    outcome.detail = failure;
    Ok(outcome)
}
