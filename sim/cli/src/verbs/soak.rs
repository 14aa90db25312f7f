//! `snapsim soak`: swarm seeds on parallel workers for a duration (the
//! nightly). The report is written atomically every `--report-every` and at
//! the end, so a killed or interrupted soak keeps what it found.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::CliError;
use crate::outcome::{Out, Outcome, Verdict};
use crate::paths::{check_output, write_atomic};
use crate::settings::{Strict, kernel_patches_note, mutations, parse_bias, parse_kernel_patches};

/// The most worker threads a soak starts: more is a typo, not a machine.
pub const JOBS_MAX: u64 = 1024;

/// Options of `snapsim soak`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim soak --duration 10m\n  snapsim soak --seeds 1000 --jobs 2 --report soak.json --force")]
pub struct SoakArgs {
    /// Wall time to run for (`8h`, `10m`, `90s`); without it (and without --seeds), 10 minutes.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "seeds")]
    pub duration: Option<std::time::Duration>,
    /// Stop after the first N seeds of the range instead (exact, for comparing runs).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Worker threads (1..=1024); one per core by default.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=JOBS_MAX))]
    pub jobs: Option<u64>,
    /// Run only shard I of N: seeds whose offset from --seed-start is I modulo N.
    #[arg(long, value_parser = sim::soak::Shard::parse, default_value = "0/1")]
    pub shard: sim::soak::Shard,
    /// The first seed of the range.
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// Where the JSON report goes (rewritten whole every --report-every, never left partial)
    /// [default: soak-report.json, or the first free soak-report-N.json: a default never replaces an old report].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// How often the report so far is written while the soak runs.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    pub report_every: std::time::Duration,
    /// Replace an existing file named by --report.
    #[arg(long)]
    pub force: bool,
    /// Where minimized failures are written as crash traces (never over an existing one).
    #[arg(long, default_value = "crash-traces")]
    pub traces_dir: PathBuf,
    /// Failures to minimize into traces (one per invariant first).
    #[arg(long, default_value_t = 5)]
    pub traces_max: usize,
    /// Fail on the kernel behaviours the oracle otherwise allows and counts (K1, K2); SNAPSIM_STRICT=1 too.
    #[arg(long)]
    pub strict: bool,
    /// Which kernel the engine behaves as: `stock` (the default) or
    /// `applied` (the kernel with the kernel-patches/ series: closes K1
    /// and K3).
    #[arg(long, value_name = "stock|applied", value_parser = parse_kernel_patches)]
    pub kernel_patches: Option<engine::store::KernelPatches>,
    /// Re-create a historical kernel bug in the engine (`Z3`); needs a build with `--features bug-zoo`.
    #[arg(long)]
    pub mutation: Option<String>,
    /// Draw the knobs with these odds (five, comma-separated: small-cow, faulty, mixed-chunk-sizes, po-store, stale-cow).
    #[arg(long, value_parser = parse_bias, conflicts_with = "directed")]
    pub bias: Option<sim::world::knobs::SwarmBias>,
    /// The directed swarm: a pilot of this many plain seeds finds the rarest coverage marks, and the soak draws its knobs toward them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub directed: Option<u64>,
}

/// The report's path: the one named, else the first free default name.
fn report_path(args: &SoakArgs) -> PathBuf {
    args.report.clone().unwrap_or_else(|| crate::paths::free_name(std::path::Path::new(""), "soak-report.json"))
}

/// Checks every option and output, before the first seed runs.
fn config(args: &SoakArgs, strict: Strict, report_path: &std::path::Path) -> Result<sim::soak::SoakConfig, CliError> {
    if args.seeds == Some(0) {
        return Err(CliError::bad_input("--seeds 0: at least one seed"));
    }
    if args.duration.is_some_and(|d| d.is_zero()) {
        return Err(CliError::bad_input("--duration 0s: a soak needs some time"));
    }
    if args.report_every.is_zero() {
        return Err(CliError::bad_input("--report-every 0s: give the report some time between writes"));
    }
    check_output("--report", report_path, args.force)?;
    if args.traces_dir.exists() && !args.traces_dir.is_dir() {
        return Err(CliError::bad_input(format!("--traces-dir {}: is not a directory", args.traces_dir.display())));
    }
    let mut config = sim::soak::SoakConfig {
        seed_start: args.seed_start,
        seeds: args.seeds,
        duration: args.duration,
        shard: args.shard,
        mutations: mutations(args.mutation.as_deref(), "--mutation")?,
        strict: strict.on(),
        kernel_patches: args.kernel_patches.unwrap_or_default(),
        traces_max: args.traces_max,
        traces_dir: args.traces_dir.clone(),
        bias: args.bias.unwrap_or_default(),
        checkpoint_every: args.report_every,
        ..sim::soak::SoakConfig::default()
    };
    if let Some(jobs) = args.jobs {
        config.jobs = usize::try_from(jobs).expect("at most JOBS_MAX");
    }
    if config.duration.is_none() && config.seeds.is_none() {
        config.duration = Some(std::time::Duration::from_secs(600));
    }
    Ok(config)
}

/// The report as JSON text, with the verdict it would end with now.
fn report_text(report: &sim::soak::SoakReport, verdict: Verdict) -> Result<String, CliError> {
    let mut value = serde_json::to_value(report).map_err(|e| CliError::failed(e.to_string()))?;
    value["verdict"] = serde_json::json!(verdict);
    serde_json::to_string_pretty(&value).map(|text| text + "\n").map_err(|e| CliError::failed(e.to_string()))
}

/// Runs the soak; progress on stderr, the summary and verdict on stdout.
pub fn run(args: &SoakArgs, out: Out) -> Result<Outcome, CliError> {
    let strict = Strict::resolve(args.strict)?;
    let report_path = report_path(args);
    let mut config = config(args, strict, &report_path)?;
    if let Some(pilot) = args.directed {
        let (rarest, bias) = sim::survey::pilot_bias(pilot);
        out.line(format!("directed: the pilot's {pilot} seeds reached [{}] least; knobs drawn with --bias {bias}", rarest.join(", ")));
        config.bias = bias;
    }
    // Ctrl-C stops the workers between seeds; the summary and report follow.
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupt);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)).map_err(|e| CliError::failed(format!("cannot catch Ctrl-C: {e}")))?;
    let what = match (config.seeds, config.duration) {
        (Some(seeds), _) => format!("the first {seeds} seeds of the range"),
        (None, Some(duration)) => format!("for {}", humantime::format_duration(duration)),
        (None, None) => unreachable!("a duration was set above"),
    };
    let note = kernel_patches_note(config.kernel_patches);
    out.line(format!("soak: shard {} from seed {}, {} workers, {what}{note}{}", config.shard, config.seed_start, config.jobs, strict.note()));
    let mut progress = super::soak_progress::Display::new(&config)?;
    let mut checkpoint = |report: &sim::soak::SoakReport| {
        let verdict = if report.failures.is_empty() { Verdict::Partial } else { Verdict::Fail };
        // A checkpoint that cannot be written is retried at the next one; the final write reports.
        let _ = report_text(report, verdict).and_then(|text| write_atomic("--report", &report_path, text.as_bytes()));
    };
    let report = sim::soak::soak_checkpointed(&config, &interrupt, &mut |p| progress.show(p), &mut checkpoint);
    progress.finish();
    let mut outcome = outcome(&report);
    match report_text(&report, outcome.verdict).and_then(|text| write_atomic("--report", &report_path, text.as_bytes())) {
        Ok(()) => outcome.lines.push(format!("report: {}", report_path.display())),
        Err(error) => outcome.output_failed(&error),
    }
    Ok(outcome)
}

/// The verdict of a finished soak, with its summary lines.
fn outcome(report: &sim::soak::SoakReport) -> Outcome {
    let body = serde_json::json!({ "seeds_run": report.seeds_run, "stopped_by": report.stopped_by, "failures": report.failures.len() });
    let mut outcome = if !report.failures.is_empty() {
        Outcome::new(Verdict::Fail, body).detail(format!("{} failing seed(s)", report.failures.len()))
    } else if report.stopped_by == "interrupt" {
        Outcome::new(Verdict::Partial, body).detail(format!("stopped by an interrupt after {} seeds; none failed", report.seeds_run))
    } else {
        Outcome::new(Verdict::Pass, body)
    };
    outcome.lines.extend(report.summary().lines().map(String::from));
    outcome.lines.extend(report.mark_counts().table().lines().map(String::from));
    outcome
}
