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
    println!("swarm: seeds 0..{seeds} on one core in {seconds:.2} s ({failures} with a violation)");
    println!("{:<28} {:>14} {:>14}", "", "total", "per second");
    for (name, count) in [("simulated disk requests", requests), ("workload operations", operations), ("world steps", steps)] {
        println!("{name:<28} {count:>14} {:>14.0}", count as f64 / seconds);
    }
    println!("{:<28} {:>14} {:>14.1}", "seeds", seeds, seeds as f64 / seconds);
}

/// A basic 4 KiB scenario whose workload copies `records` origin chunks,
/// flushing the origin after every fourth write.
fn records_scenario(records: u64) -> Scenario {
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

/// Crash-state exploration: distinct crash states checked per second on one
/// core, for `basic-cow` and as the number of records grows. Rows whose name
/// does not contain `filter` are skipped.
pub fn print_crash_states(filter: &str) {
    println!("{:<28} {:>8} {:>10} {:>10} {:>9} {:>12}", "scenario", "points", "states", "distinct", "seconds", "distinct/s");
    let measure = |name: &str, scenario: &Scenario| {
        if !name.contains(filter) {
            return;
        }
        let (seconds, (coverage, outcome)) = timed(|| explore(&scenario.run_config(1), &scenario.bounds()));
        assert!(outcome.is_ok(), "{name}: {}", outcome.unwrap_err());
        println!(
            "{name:<28} {:>8} {:>10} {:>10} {:>9.3} {:>12.0}",
            coverage.crash_points,
            coverage.states,
            coverage.distinct,
            seconds,
            coverage.distinct as f64 / seconds
        );
    };
    let basic = Scenario::load("basic-cow").expect("scenarios/basic-cow.toml");
    measure("basic-cow (seed 1)", &basic);
    for records in [4, 16, 64, 128] {
        measure(&format!("4 KiB, {records} records"), &records_scenario(records));
    }
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
    println!("crash images of a 64 MiB COW with 64 pending 4 KiB writes ({changeable} changeable sectors)");
    println!("{:<12} {:>16}", "built as", "images/s");
    println!("{:<12} {:>16.0}", "overlay", overlay_rate);
    println!("{:<12} {:>16.1}", "full copy", copy_rate);
    println!("overlay / full copy: {:.0}x   (checksum {checksum})", overlay_rate / copy_rate);
}
