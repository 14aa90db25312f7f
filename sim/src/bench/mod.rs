//! The project's performance figures, measured in-process: `snapsim bench`
//! prints them all, and each `cargo bench -p sim --bench NAME` one group.
//!
//! - [`simulation`]: simulated requests per second (swarm), crash images as
//!   overlays vs full copies, distinct crash states checked per second.
//! - [`load`]: metadata load rate and the exception table's memory.
//! - [`targets`]: first-write throughput vs a plain copy; peak memory of a
//!   many-snapshot write burst under the COW throttle.
//! - [`zoo`]: time to detect each historical bug (bug-zoo builds only).
//!
//! Memory figures need a counting allocator installed by the binary
//! (`cap::Cap` in `snapsim` and the bench binaries); it reaches the
//! measurements as a [`MemoryProbe`].
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // wall time is what a benchmark measures

pub mod load;
pub mod simulation;
pub mod targets;
pub mod zoo;

/// What the binary's counting allocator (`cap::Cap`, installed as its
/// `#[global_allocator]`) says.
#[derive(Clone, Copy)]
pub struct MemoryProbe(&'static cap::Cap<std::alloc::System>);

impl MemoryProbe {
    pub fn new(allocator: &'static cap::Cap<std::alloc::System>) -> Self {
        Self(allocator)
    }

    /// Bytes allocated now.
    pub fn allocated(self) -> usize {
        self.0.allocated()
    }

    /// The most bytes ever allocated at once (a high-water mark).
    pub fn allocated_max(self) -> usize {
        self.0.max_allocated()
    }
}

impl std::fmt::Debug for MemoryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryProbe {{ allocated: {} }}", self.allocated())
    }
}

pub(crate) const MIB: u64 = 1 << 20;

/// Seconds `f` took, and its result.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = std::time::Instant::now();
    let result = f();
    (start.elapsed().as_secs_f64(), result)
}

/// Runs every group and prints its figures, in the order of
/// docs/PERFORMANCE.md. `dir` holds the files of the throughput runs. The
/// load runs first: its peak is read off the allocator's high-water mark,
/// which only a load that raises it can show.
pub fn run_all(memory: MemoryProbe, dir: &std::path::Path) {
    load::print(memory);
    println!();
    simulation::print_swarm(300);
    println!();
    // Plain against directed swarm on the five rarest coverage marks.
    println!("{}", crate::survey::directed_swarm(2_000, 10_000).describe());
    println!();
    simulation::print_crash_states("");
    println!();
    simulation::print_complete_vs_brute_force();
    println!();
    simulation::print_explore_all();
    println!();
    simulation::print_crash_images();
    println!();
    targets::print_throughput(dir);
    println!();
    targets::print_burst(memory);
    println!();
    zoo::print();
}
