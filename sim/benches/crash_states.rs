//! Exhaustive crash runs: distinct crash states checked per second on one
//! core, for the basic 4 KiB scenario and as the number of records grows.
//!
//! Run with `cargo bench -p sim --bench crash_states [-- NAME-FILTER]`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // wall time is what a benchmark measures

use std::path::Path;
use std::time::Instant;

use sim::explore::explore;
use sim::scenario::Scenario;

/// A basic 4 KiB scenario whose workload copies `records` origin chunks,
/// flushing the origin after every fourth write.
fn scenario(records: u64) -> Scenario {
    let mut ops = String::new();
    for i in 0..records {
        ops.push_str(&format!("write origin {} 2\n", i * 8));
        if i % 4 == 3 {
            ops.push_str("flush origin\n");
        }
    }
    let text = format!(
        "description = \"bench\"\nchunk_sectors = 8\norigin_chunks = {}\ncow_chunks = {}\nsnapshots = 1\nops = \"\"\"\n{ops}\"\"\"\n",
        records.max(8),
        records + 8
    );
    Scenario::parse("bench", Path::new("bench"), &text).expect("bench scenario parses")
}

fn measure(name: &str, scenario: &Scenario) {
    let start = Instant::now();
    let (coverage, outcome) = explore(&scenario.run_config(1), &scenario.bounds());
    let seconds = start.elapsed().as_secs_f64();
    assert!(outcome.is_ok(), "{name}: {}", outcome.unwrap_err());
    println!(
        "{name:<28} {:>8} {:>10} {:>10} {:>9.3} {:>12.0}",
        coverage.crash_points,
        coverage.states,
        coverage.distinct,
        seconds,
        coverage.distinct as f64 / seconds
    );
}

fn main() {
    // `cargo bench -p sim --bench crash_states -- basic` runs only the rows whose name contains `basic`.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    let measure = |name: &str, scenario: &Scenario| {
        if name.contains(&filter) {
            measure(name, scenario);
        }
    };
    println!("{:<28} {:>8} {:>10} {:>10} {:>9} {:>12}", "scenario", "points", "states", "distinct", "seconds", "distinct/s");
    let basic = Scenario::load("basic-cow").expect("scenarios/basic-cow.toml");
    measure("basic-cow (seed 1)", &basic);
    for records in [4, 16, 64, 128] {
        measure(&format!("4 KiB, {records} records"), &scenario(records));
    }
}
