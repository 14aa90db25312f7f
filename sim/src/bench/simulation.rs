//! Simulation speed: swarm requests per second, crash images, crash states.

use std::path::Path;

use engine::io::{BlockDevice, WriteFlags};
use rand::{RngExt, SeedableRng};

use super::timed;
use crate::disk::{FaultRates, Image, SimDisk};
use crate::explore::explore;
use crate::scenario::Scenario;
use crate::world::{RunConfig, run};

/// Swarm runs of seeds `0..seeds` on one core: simulated disk requests,
/// workload operations and world steps per second of wall time.
pub fn print_swarm(seeds: u64) {
    let (seconds, (requests, operations, steps, failures)) = timed(|| {
        let (mut requests, mut operations, mut steps, mut failures) = (0u64, 0u64, 0u64, 0u64);
        for seed in 0..seeds {
            let report = run(&RunConfig::new(seed));
            requests += report.stats.disk_requests;
            operations += report.stats.operations;
            steps += report.stats.steps;
            failures += u64::from(report.failure.is_some());
        }
        (requests, operations, steps, failures)
    });
    super::say!("swarm: seeds 0..{seeds} on one core in {seconds:.2} s ({failures} with a violation)");
    super::say!("{:<28} {:>14} {:>14}", "", "total", "per second");
    for (name, key, count) in
        [("simulated disk requests", "requests", requests), ("workload operations", "operations", operations), ("world steps", "steps", steps)]
    {
        super::say!("{name:<28} {count:>14} {:>14.0}", count as f64 / seconds);
        super::record(&format!("swarm.{key}_per_s"), count as f64 / seconds);
    }
    super::record("swarm.seeds_per_s", seeds as f64 / seconds);
    super::say!("{:<28} {:>14} {:>14.1}", "seeds", seeds, seeds as f64 / seconds);
}

/// A basic scenario of 1 KiB chunks (64 records per metadata area) whose
/// workload copies `records` origin chunks, flushing the origin after every
/// fourth write.
fn records_scenario(records: u64) -> Scenario {
    let mut ops = String::new();
    for i in 0..records {
        ops.push_str(&format!("write origin {} 2\n", i * 2));
        if i % 4 == 3 {
            ops.push_str("flush origin\n");
        }
    }
    let text = format!(
        "description = \"bench\"\nchunk_sectors = 2\norigin_chunks = {}\ncow_chunks = {}\nsnapshots = 1\nops = \"\"\"\n{ops}\"\"\"\n",
        records.max(8),
        records + records / 64 + 8
    );
    Scenario::parse("bench", Path::new("bench"), &text).expect("bench scenario parses")
}

/// Crash-state exploration: distinct crash states checked per second on one
/// core, for `basic-cow` and as the number of records grows, and the cost
/// per state at 1,024 records against 16. Rows whose name does not contain
/// `filter` are skipped. Rows past 128 records judge the last
/// [`SAMPLE_POINTS`] crash points of the run, where the COW holds its
/// records, up to [`SAMPLE_STATES`] distinct states (the rate, not a whole
/// exploration).
pub fn print_crash_states(filter: &str) {
    super::say!("{:<28} {:>8} {:>10} {:>10} {:>9} {:>12}", "scenario", "points", "states", "distinct", "seconds", "distinct/s");
    let measure = |name: &str, key: &str, scenario: &Scenario, states_max: u64| -> Option<f64> {
        if !name.contains(filter) {
            return None;
        }
        let mut bounds = crate::explore::Bounds { states_max, ..scenario.bounds() };
        if states_max != 0 {
            // Sampled rows judge the run's last crash points, where the COW
            // holds all its records, not its first: a pass judging nothing counts them.
            let (run_seconds, (all, _)) = timed(|| explore(&scenario.run_config(1), &crate::explore::Bounds { skip_points: u64::MAX, ..bounds }));
            bounds.skip_points = all.crash_points.saturating_sub(SAMPLE_POINTS);
            super::say!("{name}: the run alone, judging nothing: {run_seconds:.3} s, {} crash points", all.crash_points);
        }
        let (seconds, (coverage, outcome)) = timed(|| explore(&scenario.run_config(1), &bounds));
        assert!(outcome.is_ok(), "{name}: {}", outcome.unwrap_err());
        let rate = coverage.distinct as f64 / seconds;
        super::record(&format!("crash_states.{key}.distinct_per_s"), rate);
        super::say!("{name:<28} {:>8} {:>10} {:>10} {:>9.3} {:>12.0}", coverage.crash_points, coverage.states, coverage.distinct, seconds, rate);
        Some(rate)
    };
    let basic = Scenario::load("basic-cow").expect("scenarios/basic-cow.toml");
    measure("basic-cow (seed 1)", "basic_cow", &basic, 0);
    let mut rates = Vec::new();
    for records in [4, 16, 64, 128, 1024] {
        let states_max = if records > 128 { SAMPLE_STATES } else { 0 };
        let sampled = if states_max == 0 { String::new() } else { format!(", last {SAMPLE_POINTS} points") };
        let key = format!("records_{records}");
        rates.push((records, measure(&format!("1 KiB, {records} records{sampled}"), &key, &records_scenario(records), states_max)));
    }
    let rate_of = |n: u64| rates.iter().find(|(records, _)| *records == n).and_then(|(_, rate)| *rate);
    if let (Some(small), Some(large)) = (rate_of(16), rate_of(1024)) {
        super::say!("cost per distinct state, 1,024 records against 16: {:.1}x", small / large);
        super::record("crash_states.cost_1024_over_16", small / large);
    }
}

/// Distinct states sampled by the rows past 128 records, at most.
pub const SAMPLE_STATES: u64 = 4_000;

/// The crash points at the end of the run the rows past 128 records judge.
pub const SAMPLE_POINTS: u64 = 40;

/// The complete modes side by side on scenarios small enough for both:
/// brute force (every state of every point built and judged) against
/// judging per data sector, with their verdicts, the states each built,
/// and the crash states each covered per second.
pub fn print_complete_vs_brute_force() {
    use crate::explore::Bounds;
    super::say!("{:<22} {:<16} {:>8} {:>10} {:>9} {:>12} {:>16}", "scenario", "mode", "verdict", "distinct", "seconds", "distinct/s", "covered/s");
    for name in ["basic-cow", "copy-error", "overflow-p", "merge-overflowed", "merge-invalidated", "po-fills-in-flight", "stale-area-zero"] {
        let scenario = Scenario::load(name).expect("a scenario of scenarios/");
        let brute = Bounds { brute_force_max: 1 << 18, per_sector_states_max: 0, ..scenario.bounds() };
        let per_sector = Bounds { brute_force_max: 0, ..scenario.bounds() };
        for (mode, bounds) in [("brute force", brute), ("per data sector", per_sector)] {
            let (seconds, (coverage, outcome)) = timed(|| explore(&scenario.run_config(1), &bounds));
            let verdict = match &outcome {
                Ok(()) if coverage.complete => "pass".to_string(),
                Ok(()) => "bounded".to_string(),
                Err(failure) => failure.violation.invariant.id().to_string(),
            };
            let covered = coverage.space.exact.map_or(f64::INFINITY, |space| space as f64) / seconds;
            super::say!(
                "{name:<22} {mode:<16} {verdict:>8} {:>10} {:>9.3} {:>12.0} {:>16.3e}",
                coverage.distinct,
                seconds,
                coverage.distinct as f64 / seconds,
                covered
            );
        }
    }
}

/// `explore` over every scenario of `scenarios/` and each of its seeds, on
/// one core: whether each is complete, and the slowest and total time.
pub fn print_explore_all() {
    let scenarios = crate::scenario::all_in(&crate::scenario::scenarios_dir()).expect("scenarios/ loads");
    let (mut total, mut slowest, mut complete, mut runs) = (0.0f64, (0.0f64, String::new()), 0, 0);
    for scenario in &scenarios {
        for &seed in &scenario.file.seeds {
            let (seconds, (coverage, outcome)) = timed(|| explore(&scenario.run_config(seed), &scenario.bounds()));
            assert!(outcome.is_ok(), "{} seed {seed}: {}", scenario.name, outcome.unwrap_err());
            total += seconds;
            runs += 1;
            complete += usize::from(coverage.complete);
            if seconds > slowest.0 {
                slowest = (seconds, format!("{} seed {seed}", scenario.name));
            }
        }
    }
    super::record("explore_all.seconds", total);
    super::record("explore_all.runs", f64::from(runs));
    super::record("explore_all.slowest_seconds", slowest.0);
    super::say!(
        "explore all: {} scenarios, {runs} runs, {complete} complete, {total:.1} s on one core; slowest {} in {:.1} s",
        scenarios.len(),
        slowest.1,
        slowest.0
    );
}

/// Crash images of a 64 MiB COW with 64 pending 4 KiB writes, built as
/// overlays over the shared base and as full copies, over the same choices.
pub fn print_crash_images() {
    let sectors = 64 * 2048; // 64 MiB
    // A used device (not all zero, which an image represents without a buffer).
    let disk = SimDisk::new(1, Image::from_bytes(vec![0x5a; sectors as usize * 512]), FaultRates::default(), 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    for i in 0..64u64 {
        let sector = rng.random_range(0..sectors / 8) * 8;
        disk.write(sector, vec![i as u8 + 1; 4096], WriteFlags::PLAIN, Box::new(|r| r.expect("write")));
    }
    for request in disk.in_flight() {
        disk.complete(request.id).run();
    }
    let changeable = disk.crash_candidates().len();
    let mut checksum = 0u64;
    let overlays = 2000;
    let (overlay_seconds, ()) = timed(|| {
        for _ in 0..overlays {
            checksum = checksum.wrapping_add(disk.crash_image(|_, n| rng.random_range(0..n)).overlay_len() as u64);
        }
    });
    let copies = 20;
    let (copy_seconds, ()) = timed(|| {
        for _ in 0..copies {
            checksum = checksum.wrapping_add(u64::from(disk.crash_image(|_, n| rng.random_range(0..n)).to_bytes()[0]));
        }
    });
    let (overlay_rate, copy_rate) = (overlays as f64 / overlay_seconds, copies as f64 / copy_seconds);
    super::say!("crash images of a 64 MiB COW with 64 pending 4 KiB writes ({changeable} changeable sectors)");
    super::say!("{:<12} {:>16}", "built as", "images/s");
    super::say!("{:<12} {:>16.0}", "overlay", overlay_rate);
    super::say!("{:<12} {:>16.1}", "full copy", copy_rate);
    super::say!("overlay / full copy: {:.0}x   (checksum {checksum})", overlay_rate / copy_rate);
    super::record("crash_images.overlay_per_s", overlay_rate);
    super::record("crash_images.full_copy_per_s", copy_rate);
}
