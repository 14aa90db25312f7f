//! `snapsim replay`: runs a crash trace (or a seed) again and checks it
//! gives its recorded verdict.

use std::path::PathBuf;

use serde_json::json;

use crate::CliError;
use crate::outcome::{Out, Outcome, Verdict};
use crate::paths::{check_not_an_input, check_output, check_regular_input};
use crate::settings::{Strict, mutations};

/// Options of `snapsim replay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim replay crash-traces/fail-run-seed4-strict.toml\n  snapsim replay --seed 4 --timeline seed4.html")]
pub struct ReplayArgs {
    /// A crash-trace file (`crash-traces/….toml`).
    #[arg(required_unless_present = "seed", conflicts_with = "seed")]
    pub trace: Option<PathBuf>,
    /// Replay `snapsim run --seed N` instead (with its default options).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the run's I/O as an HTML timeline to this file (for a failing
    /// crash state: what persisted, what was lost, what the failure needs).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Replace an existing --timeline file.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object (recorded and replayed verdicts, replay command) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Replays the trace or seed.
pub fn run(args: &ReplayArgs, out: Out) -> Result<Outcome, CliError> {
    if let Some(timeline) = &args.timeline {
        check_output("--timeline", timeline, args.force)?;
    }
    let Some(path) = &args.trace else {
        let seed = args.seed.expect("clap requires a trace without --seed");
        let mut config = sim::world::RunConfig::new(seed);
        let strict = Strict::resolve(false)?;
        config.strict = strict.on();
        config.timeline = args.timeline.is_some();
        out.line(super::run::settings_line(&config, strict));
        let report = sim::world::run(&config);
        let mut outcome = super::run::outcome(&report);
        super::write_timeline(&mut outcome, args.timeline.as_deref(), report.timeline.as_ref());
        return Ok(outcome);
    };
    check_regular_input("the trace", path)?;
    if let Some(timeline) = &args.timeline {
        check_not_an_input("--timeline", timeline, &[("the trace", path)])?;
    }
    let trace = sim::crash_trace::CrashTrace::load(path).map_err(CliError::bad_input)?;
    // Checked before running; the id came from the trace, not from a flag.
    mutations(trace.mutation.as_deref(), &format!("{}: its mutation", path.display()))?;
    out.line(format!("{}: {} (recorded verdict {})", path.display(), trace.post_mortem, trace.verdict));
    let mut replayed = trace.replay_recording(args.timeline.is_some()).map_err(CliError::bad_input)?;
    if let Some(timeline) = &mut replayed.timeline {
        timeline.title = format!("snapsim replay {}", path.display());
    }
    let matches = replayed.verdict() == trace.verdict;
    let mut outcome = Outcome::new(
        Verdict::fail_if(!matches),
        json!({
            "trace": path.display().to_string(), "recorded": trace.verdict, "replayed": replayed.verdict(),
            "invariant": replayed.violation.as_ref().map(|v| v.invariant.id()),
            "message": replayed.violation.as_ref().map(ToString::to_string), "cause": replayed.cause, "steps": replayed.steps,
            "trace_hash": format!("{:016x}", replayed.trace_hash), "replay": format!("snapsim replay {}", path.display()),
        }),
    );
    outcome.lines.push(match &replayed.violation {
        Some(violation) => format!("replayed: {violation}"),
        None => "replayed: pass".to_string(),
    });
    outcome.lines.extend(replayed.cause.clone());
    outcome.lines.push(format!("trace hash {:016x}", replayed.trace_hash));
    outcome.detail = Some(if matches {
        format!("{} as recorded", trace.verdict)
    } else {
        format!("recorded verdict {}, replay gave {}", trace.verdict, replayed.verdict())
    });
    super::write_timeline(&mut outcome, args.timeline.as_deref(), replayed.timeline.as_ref());
    Ok(outcome)
}
