//! Metadata load rate and exception-table memory (see `sim::bench::load`).
//!
//! Run with `cargo bench -p sim --bench load` (or all figures: `snapsim bench`).

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn main() {
    sim::bench::load::print(sim::bench::MemoryProbe::new(&ALLOCATOR));
}
