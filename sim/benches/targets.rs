//! First-write throughput vs a plain copy, and burst memory under the COW
//! throttle (see `sim::bench::targets`). Files go under `SNAPSIM_BENCH_DIR`
//! (default: the build's temporary directory).
//!
//! Run with `cargo bench -p sim --bench targets` (or all figures: `snapsim bench`).

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() {
    let base = std::env::var("SNAPSIM_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    let dir = tempfile::Builder::new().prefix("snapsim-bench").tempdir_in(base).expect("a temporary directory for the bench files");
    sim::bench::targets::print_throughput(dir.path());
    println!();
    sim::bench::targets::print_burst(sim::bench::MemoryProbe::new(&ALLOCATOR));
}
