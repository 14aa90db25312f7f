//! `snapsim run`: one seed of the deterministic simulation.

use std::path::PathBuf;

use serde_json::json;

use crate::CliError;
use crate::outcome::{Out, Outcome, Verdict};
use crate::paths::check_output;
use crate::settings::{Strict, kernel_patches_note, mutations, parse_bias, parse_kernel_patches};

/// Options of `snapsim run`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim run --seed 7\n  snapsim run --seed 4 --strict --timeline seed4.html --save-trace")]
pub struct RunArgs {
    /// The root seed: it draws the knobs and every choice of the run.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Steps after which an unfinished run is a liveness failure (at least 1).
    #[arg(long, default_value_t = sim::world::RunConfig::MAX_STEPS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: u64,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2); SNAPSIM_STRICT=1 too.
    #[arg(long)]
    pub strict: bool,
    /// Which kernel the engine behaves as: `stock` (the default) or
    /// `applied` (the kernel with the kernel-patches/ series: closes K1
    /// and K3).
    #[arg(long, value_name = "stock|applied", value_parser = parse_kernel_patches)]
    pub kernel_patches: Option<engine::store::KernelPatches>,
    /// On failure, minimize the run and write it to `crash-traces/` (under a new name if one exists).
    #[arg(long)]
    pub save_trace: bool,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    pub mutation: Option<String>,
    /// Draw the knobs with these odds (what a directed soak's replay line carries).
    #[arg(long, value_parser = parse_bias)]
    pub bias: Option<sim::world::knobs::SwarmBias>,
    /// Write the run's I/O as an HTML timeline to this file (for a failing
    /// crash state: what persisted, what was lost, what the failure needs).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Replace an existing --timeline file.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object (verdict, invariant, counts, trace hash, replay command) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the seed; outputs are checked before it runs.
pub fn run(args: &RunArgs, out: Out) -> Result<Outcome, CliError> {
    if let Some(timeline) = &args.timeline {
        check_output("--timeline", timeline, args.force)?;
    }
    super::check_traces_dir(args.save_trace)?;
    let strict = Strict::resolve(args.strict)?;
    let mut config = sim::world::RunConfig::new(args.seed);
    config.max_steps = args.max_steps;
    config.strict = strict.on();
    config.kernel_patches = args.kernel_patches.unwrap_or_default();
    config.mutations = mutations(args.mutation.as_deref(), "--mutation")?;
    config.bias = args.bias.unwrap_or_default();
    // Always recorded: a failure after a crash is explained by the writes
    // of that crash's state it needs, which the timeline keeps.
    config.timeline = true;
    out.line(settings_line(&config, strict));
    let mut report = sim::world::run(&config);
    let cause = sim::cause::explain_run(&mut report);
    if let Some(timeline) = &mut report.timeline {
        timeline.title = report.replay.clone();
    }
    let mut outcome = outcome(&report);
    if let (Some(cause), Some(crash)) = (&cause, &report.last_crash) {
        let at = outcome.after.len().saturating_sub(2);
        outcome.after.insert(at, format!("{cause} (in the state the crash at step {} left)", crash.step));
    }
    super::write_timeline(&mut outcome, args.timeline.as_deref(), report.timeline.as_ref());
    if outcome.verdict == Verdict::Fail && args.save_trace {
        super::save_trace(&mut outcome, &sim::crash_trace::CrashTrace::from_run(&config, &report));
    }
    Ok(outcome)
}

/// The line that opens a run: its seed, knobs and every setting that is not the default.
pub fn settings_line(config: &sim::world::RunConfig, strict: Strict) -> String {
    format!("seed {}: {}{}{}", config.seed, config.knobs(), kernel_patches_note(config.kernel_patches), strict.note())
}

/// A run's summary, verdict and JSON object.
pub fn outcome(report: &sim::world::Report) -> Outcome {
    let failure = report.failure.as_ref();
    let s = &report.stats;
    let mut outcome = Outcome::new(
        Verdict::fail_if(failure.is_some()),
        json!({
            "seed": report.seed,
            "knobs": report.knobs.to_string(),
            "invariant": failure.map(|f| f.violation.invariant.id()),
            "message": failure.map(ToString::to_string),
            "stats": report.stats,
            "kernel_behaviours_allowed": report.allowances.to_string(),
            "trace_hash": format!("{:016x}", report.trace_hash),
            "replay": report.replay_command(),
            "replay_test": report.replay_test_command(),
        }),
    );
    outcome.lines.push(format!(
        "steps {}, operations {} ({} acknowledged, {} failed), disk requests {} ({} errors), deferred {}, crashes {}, sectors checked {}",
        s.steps, s.operations, s.acknowledged, s.failed, s.disk_requests, s.disk_errors, s.deferred, s.crashes, s.sectors_checked
    ));
    outcome.lines.push(format!("kernel behaviours allowed: {}", report.allowances));
    outcome.lines.push(format!("trace hash {:016x}", report.trace_hash));
    if let Some(failure) = failure {
        outcome.detail = Some(failure.to_string());
        outcome.after.push("events before it:".to_string());
        outcome.after.extend(failure.violation.events.iter().map(|event| format!("  {event}")));
        outcome.after.push(format!("replay: {}", report.replay_command()));
        outcome.after.push(format!("    or: {}", report.replay_test_command()));
    }
    outcome
}
