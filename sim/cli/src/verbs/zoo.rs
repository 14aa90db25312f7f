//! `snapsim zoo`: re-injects each historical kernel bug and hunts it.

use std::path::PathBuf;

use engine::zoo::Mutation;
use serde_json::{Value, json};
use sim::zoo::Verdict as Hunt;

use crate::CliError;
use crate::outcome::{Out, Outcome, Verdict};
use crate::scenarios::Source;

/// Options of `snapsim zoo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples (a build with --features bug-zoo):\n  snapsim zoo\n  snapsim zoo --only Z3,Z7 --json")]
pub struct ZooArgs {
    /// Swarm seeds tried (from 0) once the scenarios have not caught a mutation.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub swarm_seeds: u64,
    /// Hunt only these mutations (`Z3,Z7`); all by default.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Ignore which scenarios the zoo table aims at each mutation: explore them in name order.
    #[arg(long)]
    pub blind: bool,
    /// Skip the scenarios: swarm seeds only.
    #[arg(long)]
    pub swarm_only: bool,
    /// Where the scenarios are read from; else SNAPSIM_SCENARIOS, else ./scenarios, else the built-in set.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Print one JSON object (every mutation's row and the verdict) on stdout; the table goes to stderr.
    #[arg(long)]
    pub json: bool,
}

/// Hunts every mutation and prints the zoo table; fails if one survives or
/// is caught by an invariant its row does not list.
pub fn run(args: &ZooArgs, out: Out) -> Result<Outcome, CliError> {
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
            .map(|id| Mutation::parse(id).ok_or_else(|| CliError::bad_input(format!("--only: unknown mutation {id:?} (Z1..Z22)"))))
            .collect::<Result<_, _>>()?
    };
    if args.swarm_only && args.swarm_seeds == 0 {
        return Err(CliError::bad_input("--swarm-only with --swarm-seeds 0 hunts nothing"));
    }
    let scenarios = if args.swarm_only { Vec::new() } else { Source::resolve(args.scenarios.as_deref())?.all()? };
    let budget = sim::zoo::Budget { swarm_seeds: args.swarm_seeds, scenarios: !args.swarm_only };
    out.line(format!("{:<4} {:<40} {:<38} {:<14} {:>5} {:>8}  replay", "id", "mutation", "kernel fix", "caught by", "runs", "seconds"));
    let (mut times, mut wrong, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for mutation in mutations {
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)] // time to detection is a figure for the user
        let start = std::time::Instant::now();
        let hunt = if args.blind { sim::zoo::hunt_blind(mutation, &scenarios, budget) } else { sim::zoo::hunt(mutation, &scenarios, budget) };
        #[allow(clippy::disallowed_methods, clippy::disallowed_types)]
        let seconds = start.elapsed().as_secs_f64();
        let row = row(out, mutation, &hunt, seconds);
        if !matches!(hunt.verdict, Hunt::ByConstruction { .. } | Hunt::ThreadsOnly { .. }) {
            times.push(seconds);
        }
        if !hunt.caught_rightly() {
            wrong.push(format!("{} {}", mutation.id(), row["caught_by"].as_str().unwrap_or_default()));
        }
        rows.push(row);
    }
    let mut outcome = Outcome::new(Verdict::fail_if(!wrong.is_empty()), json!({ "mutations": rows, "wrong": wrong }));
    times.sort_by(f64::total_cmp);
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        outcome.lines.push(format!("time to detection: median {median:.2} s, max {max:.2} s over {} hunted mutations", times.len()));
    }
    Ok(if wrong.is_empty() {
        outcome.detail("every mutation caught by an invariant its row lists")
    } else {
        outcome.detail(format!("survived or caught by an unlisted invariant: {}", wrong.join(", ")))
    })
}

/// Prints one mutation's row of the table; returns it as JSON.
fn row(out: Out, mutation: Mutation, hunt: &sim::zoo::Hunt, seconds: f64) -> Value {
    let (caught_by, replay) = match &hunt.verdict {
        Hunt::Caught { invariant, replay, .. } => (invariant.id().to_string(), replay.clone()),
        Hunt::Panicked { replay, .. } => ("assertion".to_string(), replay.clone()),
        Hunt::ByConstruction { invariant, reason, .. } => (format!("{} (model)", invariant.id()), format!("by construction: {reason}")),
        Hunt::ThreadsOnly { threads } => (
            "threads".to_string(),
            format!(
                "single-threaded runs cannot race; caught by loom model {} and shuttle case {} (see ARCHITECTURE.md)",
                threads.loom_model, threads.shuttle_case
            ),
        ),
        Hunt::Survived => ("SURVIVED".to_string(), String::new()),
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
        Hunt::Caught { message, .. } | Hunt::ByConstruction { message, .. } => Some(message.clone()),
        Hunt::Panicked { panic, .. } => Some(panic.to_string()),
        _ => None,
    };
    if let Some(message) = &message {
        out.line(format!("     {message}"));
    }
    json!({
        "id": mutation.id(), "summary": mutation.summary(), "kernel_fix": mutation.kernel_fix(), "caught_by": caught_by,
        "caught_rightly": hunt.caught_rightly(), "runs": hunt.attempts, "seconds": seconds, "replay": replay, "message": message,
    })
}
