//! Simulation speed: swarm runs of seeds 0..N on one core, counting the
//! simulated disk requests processed per second of wall time.
//!
//! Run with `cargo bench -p sim --bench swarm`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // wall time is what a benchmark measures

use std::time::Instant;

use sim::world::{RunConfig, run};

fn main() {
    let seeds = 300u64;
    let start = Instant::now();
    let (mut requests, mut operations, mut steps, mut failures) = (0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let report = run(&RunConfig::new(seed));
        requests += report.stats.disk_requests;
        operations += report.stats.operations;
        steps += report.stats.steps;
        failures += u64::from(report.failure.is_some());
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("swarm: seeds 0..{seeds} on one core in {seconds:.2} s ({failures} with a violation)");
    println!("{:<28} {:>14} {:>14}", "", "total", "per second");
    for (name, count) in [("simulated disk requests", requests), ("workload operations", operations), ("world steps", steps)] {
        println!("{name:<28} {count:>14} {:>14.0}", count as f64 / seconds);
    }
    println!("{:<28} {:>14} {:>14.1}", "seeds", seeds, seeds as f64 / seconds);
}
