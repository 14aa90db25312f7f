//! One module per verb. Each parses nothing itself (clap did), checks its
//! inputs and every output path before any work, runs, and returns an
//! [`Outcome`](crate::outcome::Outcome); none prints its verdict or picks
//! an exit status.

pub mod apply;
pub mod bench;
pub mod coverage;
pub mod explore;
pub mod inspect;
pub mod merge;
pub mod replay;
pub mod run;
pub mod soak;
pub mod soak_progress;
pub mod view;
pub mod zoo;

use std::path::{Path, PathBuf};

use crate::CliError;
use crate::outcome::Outcome;
use crate::paths::{check_output_dir, free_name, write_atomic};

/// Where `--save-trace` writes.
pub const TRACES_DIR: &str = "crash-traces";

/// Refuses, before the run, a traces directory `--save-trace` could not write in.
pub fn check_traces_dir(save_trace: bool) -> Result<(), CliError> {
    if save_trace { check_output_dir("--save-trace", Path::new(TRACES_DIR), &[], true) } else { Ok(()) }
}

/// Writes `timeline` as an HTML page to `path`, if asked; a write that
/// fails is recorded on the outcome (a passing run becomes PARTIAL).
pub fn write_timeline(outcome: &mut Outcome, path: Option<&Path>, timeline: Option<&sim::timeline::Timeline>) {
    let Some(path) = path else { return };
    let Some(timeline) = timeline else {
        outcome.lines.push(format!("no timeline written to {}: nothing was recorded", path.display()));
        return;
    };
    match write_atomic("--timeline", path, timeline.to_html().as_bytes()) {
        Ok(()) => outcome.lines.push(format!(
            "timeline: {} ({} requests, {} crashes and reloads)",
            path.display(),
            timeline.bars.len(),
            timeline.markers.len()
        )),
        Err(error) => outcome.output_failed(&error),
    }
}

/// Minimizes a failing trace and writes it into `crash-traces/` under a
/// free name (an existing trace is never replaced).
pub fn save_trace(outcome: &mut Outcome, trace: &sim::crash_trace::CrashTrace) {
    let minimized = trace.minimize(400);
    let dir = PathBuf::from(TRACES_DIR);
    let written = std::fs::create_dir_all(&dir).map_err(|e| CliError::failed(format!("--save-trace {}: {e}", dir.display()))).and_then(|()| {
        let path = free_name(&dir, &minimized.file_name());
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        write_atomic("--save-trace", &path, minimized.to_text(&name).as_bytes()).map(|()| path)
    });
    match written {
        Ok(path) => {
            let ops = minimized.shape.ops.lines().count();
            outcome.after.push(format!("wrote {} ({ops} operations, {} crashes): {}", path.display(), minimized.crashes, minimized.post_mortem));
            outcome.after.push(format!("    replay it: snapsim replay {}", path.display()));
        }
        Err(error) => outcome.output_failed(&error),
    }
}
