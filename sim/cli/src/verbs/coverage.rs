//! `snapsim coverage`: every coverage mark the scenarios and the swarm reach.

use std::path::PathBuf;

use serde_json::json;

use crate::CliError;
use crate::outcome::{Out, Outcome, Verdict};
use crate::scenarios::Source;

/// Options of `snapsim coverage`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  snapsim coverage --seeds 200\n  snapsim coverage --require-all")]
pub struct CoverageArgs {
    /// Swarm seeds to run (0..N) besides exploring every scenario.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub seeds: u64,
    /// Only the swarm seeds: explore no scenario.
    #[arg(long)]
    pub no_scenarios: bool,
    /// Where the scenarios are read from; else SNAPSIM_SCENARIOS, else ./scenarios, else the built-in set.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Also print the marks each scenario reaches.
    #[arg(long)]
    pub per_scenario: bool,
    /// Exit 1 if any mark was never hit (the nightly's check).
    #[arg(long)]
    pub require_all: bool,
    /// Also measure the directed swarm against the plain one over this many seeds each (after a pilot of a fifth as many).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub directed: Option<u64>,
    /// Print one JSON object (every mark's hits, the verdict) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Surveys the marks and prints their table.
pub fn run(args: &CoverageArgs, _out: Out) -> Result<Outcome, CliError> {
    let scenarios = if args.no_scenarios { Vec::new() } else { Source::resolve(args.scenarios.as_deref())?.all()? };
    let (total, per_scenario) = sim::survey::survey(&scenarios, args.seeds);
    let missing = total.missing();
    let failed = args.require_all && !missing.is_empty();
    let mut outcome = Outcome::new(Verdict::fail_if(failed), json!({ "hits": total.hits, "missing": missing }));
    if args.per_scenario {
        for (name, counts) in &per_scenario {
            outcome.lines.push(format!("{name}: {}", counts.hits.keys().copied().collect::<Vec<_>>().join(" ")));
        }
    }
    outcome.lines.extend(total.table().lines().map(String::from));
    if let Some(seeds) = args.directed {
        outcome.lines.push(sim::survey::directed_swarm((seeds / 5).max(1), seeds).describe());
    }
    Ok(if failed { outcome.detail(format!("never hit: {}", missing.join(", "))) } else { outcome })
}
