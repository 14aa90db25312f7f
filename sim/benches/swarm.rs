//! Simulation speed: swarm runs of seeds 0..300 on one core, counting the
//! simulated disk requests processed per second of wall time.
//!
//! Run with `cargo bench -p sim --bench swarm` (or all figures: `snapsim bench`).

fn main() {
    sim::bench::simulation::print_swarm(300);
}
