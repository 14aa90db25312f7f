//! `cargo xtask kernel-mutants`: how strong `kernel-crash` is against bugs
//! in the kernel's own C. Each patch of `sim/xtask/kernel-mutants/` plants
//! one plausible mistake in `dm-snap.c` or `dm-snap-persistent.c`; the
//! module is built from Debian's source with it (the same build as
//! `--patches`), a fast subset of kernel workloads is recorded and judged,
//! and the mutant is killed when the run differs from the stock module's
//! run on the same subset in a way the judge can name:
//!
//! - a finding (an invariant of SPEC §5 broken in a crash state, or a
//!   recording that failed);
//! - a K1 or K3 count that is zero in one run and not in the other;
//! - a write-stream divergence the stock run does not show;
//! - a workload whose log the schedule-following differential follows for
//!   the stock module and not for the mutant (our engine, in the kernel's
//!   own timing, cannot write what the mutant wrote);
//! - a crash state the kernel loads with another status line or view than
//!   our engine gives it.
//!
//! A mutant that survives and whose patch carries an `Equivalent:`
//! paragraph is reported equivalent; one that survives without it is a
//! survivor to kill with a new workload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::kernel_crash::{self, Pipeline, WorkloadRun, workload};
use crate::vm::{self, Machine};

/// Options of `cargo xtask kernel-mutants`.
#[derive(Debug, Clone, clap::Args)]
pub struct KernelMutantsArgs {
    /// Where recordings, the cache and the report go (default `target/interop`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the mutants whose file name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// The directory of mutant patches (default `sim/xtask/kernel-mutants`).
    #[arg(long, value_name = "DIR")]
    pub mutants: Option<PathBuf>,
}

/// One mutant's verdict, as `kernel-mutants.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MutantResult {
    pub name: String,
    /// What the mutant breaks (the patch's first paragraph).
    pub breaks: String,
    pub killed: bool,
    /// Every difference from the stock run, by kind: `finding`,
    /// `K-count`, `differential`, `confirmation`.
    pub killed_by: Vec<String>,
    /// The patch's `Equivalent:` argument, for a survivor that carries one.
    pub equivalent: Option<String>,
    pub seconds: f64,
    /// The built module's srcversion.
    pub srcversion: String,
}

/// The workloads every mutant runs: the scenario translations and extra
/// workloads that reach the code paths the mutants change (commits, full
/// areas, reloads over several areas, overflow of `P` and `PO`, merges,
/// copies in flight, a reused COW, parallel writers), small enough that one
/// mutant takes at most about 5 minutes on 2 cores under TCG.
pub fn subset() -> Vec<workload::Workload> {
    const NAMES: [&str; 4] = ["basic-cow", "multi-area", "overflow-po", "merge-multi-area"];
    let mut out: Vec<workload::Workload> = workload::scenario_workloads().into_iter().filter(|w| NAMES.contains(&w.name.as_str())).collect();
    out.extend(workload::reused_cow_workloads().into_iter().take(1));
    out.push(workload::reload_over_areas());
    // An origin write released before its commit is durable shows in the log.
    out.push(workload::slow_cow());
    // Four writers at once: marks fall while other writes' commits are
    // still in flight, the only crash points that see an origin write
    // released before its own commit is durable.
    out.push(workload::random_workload(1000, 1000, false, false));
    out
}

/// What one run of the subset showed, per workload, in the terms a mutant
/// is killed by.
#[derive(Debug, Clone, Default)]
struct Signature {
    findings: Vec<String>,
    k_counts: Vec<(String, bool, bool)>,
    divergences: BTreeSet<String>,
    /// Each workload's schedule-following verdict, and why it did not follow.
    following: Vec<(String, kernel_crash::schedule::Verdict, String)>,
    disagreements: Vec<String>,
}

fn signature(runs: &[WorkloadRun], disagreements: Vec<String>) -> Signature {
    let mut signature = Signature { disagreements, ..Signature::default() };
    for run in runs {
        let name = &run.judgement.workload;
        signature.findings.extend(run.judgement.findings.iter().map(|f| format!("{name}: {f}")));
        signature.k_counts.push((name.clone(), run.judgement.kernel_behaviour_k1 > 0, run.judgement.kernel_behaviour_k3 > 0));
        if let Some(differential) = &run.differential {
            signature.divergences.extend(differential.divergences.iter().map(|d| format!("{name}: {d}")));
        }
        if let Some(following) = &run.following {
            signature.following.push((name.clone(), following.verdict(), following.divergence.clone().unwrap_or_default()));
        }
    }
    signature
}

/// Records, judges and compares the subset on `machine`; confirms one
/// sampled state per workload (and every state with a finding) in the kernel.
fn run_subset(machine: &Machine, dir: &Path, workloads: &[workload::Workload]) -> Result<Signature, String> {
    let pipeline =
        Pipeline { samples: 1, strict: false, per_sector_states_max: 65_536, kernel_patches: engine::store::KernelPatches::Stock, print_log: false };
    let mut runs = Vec::new();
    for workload in workloads {
        let run = kernel_crash::run_workload(Some(machine), &dir.join(format!("w{}", workload.id)), workload, &pipeline)?;
        runs.push(run);
    }
    // Every state with a finding is a sample: a mutant with many findings
    // is killed already, and three a workload keep the confirming boot short.
    for run in &mut runs {
        run.judgement.samples.truncate(CONFIRMED_PER_WORKLOAD_MAX);
    }
    // The cap on a mutant's jobs is for recordings that hang; confirming
    // loads one state after another and may take longer.
    let confirmer = vm::Machine { job_seconds_max: machine.job_seconds_max.max(600), ..machine.clone() };
    let confirmations = kernel_crash::confirm_runs(&confirmer, &dir.join("confirm"), workloads, &runs)?;
    let disagreements =
        confirmations.iter().filter(|c| !c.agree).map(|c| format!("{}: kernel {} , ours {}", c.state, c.kernel_status, c.engine_status)).collect();
    Ok(signature(&runs, disagreements))
}

/// Why `mutant` differs from `stock`; empty if it does not.
fn kills(stock: &Signature, mutant: &Signature) -> Vec<String> {
    let mut why: Vec<String> = mutant.findings.iter().map(|f| format!("finding: {f}")).collect();
    for ((name, k1, k3), (_, stock_k1, stock_k3)) in mutant.k_counts.iter().zip(&stock.k_counts) {
        if k1 != stock_k1 || k3 != stock_k3 {
            why.push(format!(
                "K-count: {name}: K1 {} K3 {} where the stock module shows K1 {} K3 {}",
                *k1 as u8, *k3 as u8, *stock_k1 as u8, *stock_k3 as u8
            ));
        }
    }
    why.extend(mutant.divergences.difference(&stock.divergences).map(|d| format!("differential: {d}")));
    for ((name, verdict, reason), (_, stock_verdict, _)) in mutant.following.iter().zip(&stock.following) {
        if *stock_verdict == kernel_crash::schedule::Verdict::Follows && *verdict != kernel_crash::schedule::Verdict::Follows {
            why.push(format!("schedule-following: {name}: {verdict:?} where the stock module's log is followed: {reason}"));
        }
    }
    why.extend(mutant.disagreements.iter().map(|d| format!("confirmation: {d}")));
    why
}

/// The patch's first paragraph after its title, and its `Equivalent:` paragraph.
fn describe(patch: &str) -> (String, Option<String>) {
    let head = patch.split("\n--- ").next().unwrap_or("");
    let paragraphs: Vec<String> = head.split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|p| !p.is_empty()).collect();
    let breaks = paragraphs.get(1).cloned().unwrap_or_default();
    let equivalent = paragraphs.iter().find_map(|p| p.strip_prefix("Equivalent:").map(|e| e.trim().to_string()));
    (breaks, equivalent)
}

/// States a mutant's run has the kernel confirm per workload, at most.
const CONFIRMED_PER_WORKLOAD_MAX: usize = 3;

/// A mutant's recording still running after this long has hung (the stock
/// module's longest recording of the subset takes well under a minute
/// under TCG): the recording fails, a finding, and the mutant stays within
/// its 5 minutes. The boot that confirms sampled states is not capped.
const MUTANT_JOB_SECONDS_MAX: u64 = 90;

/// One mutant: its module built, the subset run, the verdict.
fn run_mutant(cache: &Path, out: &Path, patch: &Path, stock: &Signature, workloads: &[workload::Workload]) -> Result<MutantResult, crate::TaskError> {
    let started = Instant::now();
    let name = patch.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let text = std::fs::read_to_string(patch).map_err(|e| format!("{}: {e}", patch.display()))?;
    let (breaks, equivalent) = describe(&text);
    // The build takes a directory of patches: this one alone.
    let series = out.join("series").join(&name);
    std::fs::create_dir_all(&series).map_err(|e| format!("{}: {e}", series.display()))?;
    std::fs::copy(patch, series.join(patch.file_name().unwrap_or_default())).map_err(|e| format!("{}: {e}", patch.display()))?;
    let mut machine = vm::prepare(cache, Some(&series))?;
    machine.job_seconds_max = MUTANT_JOB_SECONDS_MAX;
    let signature = run_subset(&machine, &out.join(&name), workloads)?;
    let killed_by = kills(stock, &signature);
    let killed = !killed_by.is_empty();
    let equivalent = if killed { None } else { equivalent };
    Ok(MutantResult { name, breaks, killed, killed_by, equivalent, seconds: started.elapsed().as_secs_f64(), srcversion: machine.module.srcversion })
}

/// Runs the stock module, then every mutant, on the subset; prints a line
/// per mutant and the kill rate, writes `kernel-mutants.json`. Whether every
/// mutant not argued equivalent was killed.
pub fn run(args: &KernelMutantsArgs) -> Result<bool, crate::TaskError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let base = args.out.clone().unwrap_or_else(|| root.join("target/interop"));
    let dir = args.mutants.clone().unwrap_or_else(|| root.join("sim/xtask/kernel-mutants"));
    let mut patches: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| crate::TaskError::Input(format!("{}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .filter(|p| args.only.as_ref().is_none_or(|only| p.to_string_lossy().contains(only.as_str())))
        .collect();
    patches.sort();
    if patches.is_empty() {
        return Err(crate::TaskError::Input(format!("{}: no mutant patch (*.patch) to run", dir.display())));
    }
    let out = base.join("kernel-mutants");
    let workloads = subset();
    let started = Instant::now();
    let machine = vm::prepare(&base.join("cache"), None)?;
    println!("kernel: {} ({}), qemu TCG; {} workloads a mutant, {} mutants", machine.release, machine.package, workloads.len(), patches.len());
    let stock = run_subset(&machine, &out.join("stock"), &workloads)?;
    println!(
        "stock module: {} finding(s), {} divergence(s), {} disagreement(s), {:.0} s",
        stock.findings.len(),
        stock.divergences.len(),
        stock.disagreements.len(),
        started.elapsed().as_secs_f64()
    );
    let mut results = Vec::new();
    for patch in &patches {
        let result = run_mutant(&base.join("cache"), &out, patch, &stock, &workloads)?;
        let verdict = match (result.killed, &result.equivalent) {
            (true, _) => "KILLED",
            (false, Some(_)) => "EQUIVALENT",
            (false, None) => "SURVIVED",
        };
        println!("{verdict:<10} {:<36} {:>5.0} s  {}", result.name, result.seconds, result.killed_by.first().map_or("", String::as_str));
        results.push(result);
        // After every mutant: a run cut short keeps what it measured.
        write_report(&base, &machine, &workloads, &results)?;
    }
    let killed = results.iter().filter(|r| r.killed).count();
    let equivalent = results.iter().filter(|r| r.equivalent.is_some()).count();
    let survivors = results.len() - killed - equivalent;
    println!(
        "{killed} of {} non-equivalent mutants killed ({equivalent} equivalent, {survivors} survived) in {:.0} s",
        results.len() - equivalent,
        started.elapsed().as_secs_f64()
    );
    println!("report: {}", base.join("kernel-mutants.json").display());
    Ok(survivors == 0)
}

/// Writes `kernel-mutants.json` with the mutants run so far.
fn write_report(base: &Path, machine: &Machine, workloads: &[workload::Workload], results: &[MutantResult]) -> Result<(), String> {
    let path = base.join("kernel-mutants.json");
    let names: Vec<&str> = workloads.iter().map(|w| w.name.as_str()).collect();
    let report = serde_json::json!({ "kernel": machine.release, "workloads": names, "mutants": results });
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mutant_names_what_it_breaks_and_applies_as_a_patch() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel-mutants");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("the mutants directory") {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("a patch");
            let (breaks, _) = describe(&text);
            assert!(breaks.len() > 40, "{} does not say what it breaks", path.display());
            assert!(text.contains("\n--- a/drivers/md/") && text.contains("\n+++ b/drivers/md/"), "{} is not a patch of drivers/md", path.display());
            count += 1;
        }
        assert!(count >= 12, "{count} mutants");
    }

    #[test]
    fn the_subset_finds_every_workload_it_names() {
        let names: Vec<String> = subset().into_iter().map(|w| w.name).collect();
        assert_eq!(names.len(), 8, "{names:?}");
        assert!(names.iter().any(|n| n == "merge-multi-area"), "a merge reaches the merge mutants: {names:?}");
        assert!(subset().iter().any(|w| w.slow_cow_ms > 0), "a slowed COW shows an origin write released before its commit: {names:?}");
    }

    #[test]
    fn a_mutant_is_killed_only_by_what_the_stock_run_does_not_show() {
        let stock = Signature {
            k_counts: vec![("a".into(), true, false)],
            divergences: ["a: known".to_string()].into_iter().collect(),
            ..Signature::default()
        };
        let same = stock.clone();
        assert!(kills(&stock, &same).is_empty());
        let k3 = Signature { k_counts: vec![("a".into(), true, true)], ..stock.clone() };
        assert!(kills(&stock, &k3)[0].starts_with("K-count"));
        let diverged = Signature { divergences: ["a: known".to_string(), "a: new".to_string()].into_iter().collect(), ..stock.clone() };
        assert_eq!(kills(&stock, &diverged), vec!["differential: a: new".to_string()]);
        // Schedule-following: only a workload the stock module's log is followed on counts.
        use kernel_crash::schedule::Verdict;
        let stock =
            Signature { following: vec![("a".into(), Verdict::Follows, String::new()), ("b".into(), Verdict::Undecided, String::new())], ..stock };
        let unfollowed = Signature {
            following: vec![("a".into(), Verdict::Diverges, "why".into()), ("b".into(), Verdict::Undecided, String::new())],
            ..stock.clone()
        };
        assert_eq!(kills(&stock, &unfollowed), vec!["schedule-following: a: Diverges where the stock module's log is followed: why".to_string()]);
        let still_undecided = Signature {
            following: vec![("a".into(), Verdict::Follows, String::new()), ("b".into(), Verdict::Diverges, "x".into())],
            ..stock.clone()
        };
        assert!(kills(&stock, &still_undecided).is_empty());
    }
}
