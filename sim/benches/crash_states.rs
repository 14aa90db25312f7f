//! Crash-state exploration: distinct crash states checked per second.
//!
//! Run with `cargo bench -p sim --bench crash_states [-- NAME-FILTER]` (or
//! all figures: `snapsim bench`).

fn main() {
    // `-- basic` runs only the rows whose name contains `basic`.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-')).unwrap_or_default();
    sim::bench::simulation::print_crash_states(&filter);
    if filter.is_empty() {
        println!();
        sim::bench::simulation::print_complete_vs_brute_force();
        println!();
        sim::bench::simulation::print_explore_all();
    }
}
