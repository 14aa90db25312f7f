//! `snapsim merge`: a snapshot's COW merged back into its origin (offline snapshot-merge).

use serde_json::json;

use crate::outcome::{Outcome, Verdict};
use crate::{CliError, live};

/// Options of `snapsim merge`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim merge --origin origin.img --cow cow.img\n  snapsim merge --origin origin.img --cow cow.img --json")]
pub struct MergeCommand {
    #[command(flatten)]
    pub live: live::LiveArgs,
    /// Print one JSON object (runs merged, outcome, status, verdict) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Merges; a merge that does not complete fails.
pub fn run(args: &MergeCommand) -> Result<Outcome, CliError> {
    let merged = live::merge(&args.live)?;
    let complete = merged.outcome == engine::targets::MergeOutcome::Complete;
    let mut outcome = Outcome::new(
        Verdict::fail_if(!complete),
        json!({ "runs": merged.runs, "outcome": format!("{:?}", merged.outcome), "status": merged.status }),
    );
    outcome.lines.push(format!("merged {} runs: {:?}", merged.runs, merged.outcome));
    outcome.lines.push(format!("status: {}", merged.status));
    if !complete {
        outcome.detail = Some(format!("merge did not complete: {:?}", merged.outcome));
    }
    Ok(outcome)
}
