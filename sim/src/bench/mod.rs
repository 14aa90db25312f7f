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

thread_local! {
    /// The figures measured so far on this thread, by stable name.
    static FIGURES: std::cell::RefCell<std::collections::BTreeMap<String, f64>> = const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
    /// Whether the human tables go to standard error (under `--json`,
    /// standard output holds the one JSON object).
    static TABLES_TO_STDERR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Records one figure under a stable name (`swarm.requests_per_s`): what
/// `snapsim bench --json` prints, so that a script can compare runs.
pub(crate) fn record(name: &str, value: f64) {
    FIGURES.with(|figures| figures.borrow_mut().insert(name.to_string(), value));
}

/// The figures recorded on this thread since the last call.
pub fn take_figures() -> std::collections::BTreeMap<String, f64> {
    FIGURES.with(|figures| std::mem::take(&mut *figures.borrow_mut()))
}

/// Sends the human tables to standard error (`true`) or standard output.
pub fn tables_to_stderr(yes: bool) {
    TABLES_TO_STDERR.with(|flag| flag.set(yes));
}

/// One line of a human table, where [`tables_to_stderr`] says.
pub(crate) fn say_line(line: &str) {
    if TABLES_TO_STDERR.with(std::cell::Cell::get) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// `println!` for the bench's tables: see [`say_line`].
macro_rules! say {
    () => {
        $crate::bench::say_line("")
    };
    ($($arg:tt)*) => {
        $crate::bench::say_line(&format!($($arg)*))
    };
}
pub(crate) use say;

pub mod load;
pub mod simulation;
pub mod targets;
pub mod zoo;

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
    say!();
    simulation::print_swarm(300);
    say!();
    // Plain against directed swarm on the five rarest coverage marks.
    say!("{}", crate::survey::directed_swarm(2_000, 10_000).describe());
    say!();
    simulation::print_crash_states("");
    say!();
    simulation::print_complete_vs_brute_force();
    say!();
    simulation::print_explore_all();
    say!();
    simulation::print_crash_images();
    say!();
    targets::print_throughput(dir);
    say!();
    targets::print_burst(memory);
    say!();
    zoo::print();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `snapsim bench --json` prints are a contract with the
    /// scripts that compare runs: a quick slice of the bench records them.
    #[test]
    fn figures_are_recorded_under_stable_names() {
        let _ = take_figures();
        tables_to_stderr(true);
        simulation::print_swarm(2);
        simulation::print_crash_states("basic-cow");
        tables_to_stderr(false);
        let figures = take_figures();
        for name in
            ["swarm.requests_per_s", "swarm.operations_per_s", "swarm.steps_per_s", "swarm.seeds_per_s", "crash_states.basic_cow.distinct_per_s"]
        {
            assert!(figures.get(name).is_some_and(|rate| *rate > 0.0), "{name} missing or zero: {figures:?}");
        }
        assert!(take_figures().is_empty(), "taken once");
    }
}
