//! Metadata load rate and exception-table memory (see `sim::bench::load`).
//!
//! Run with `cargo bench -p sim --bench load` (or all figures: `snapsim bench`).

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const MEMORY: sim::bench::MemoryProbe = sim::bench::MemoryProbe { allocated: || ALLOCATOR.allocated(), allocated_max: || ALLOCATOR.max_allocated() };

fn main() {
    sim::bench::load::print(MEMORY);
}
