//! Time to detect: how long the harness takes to catch each historical
//! kernel bug re-created in the engine (`snapsim zoo`'s hunt, with its
//! default budget). Needs a build with `--features bug-zoo`.

use engine::zoo::{Mutation, Mutations};

use super::timed;
use crate::zoo::{Budget, Verdict, hunt};

/// Hunts every mutation hunted by runs (not the ones caught by the model
/// by construction, nor the thread races) and prints the times.
pub fn print() {
    if !Mutations::available() {
        super::say!("zoo time to detect: this build has no mutations (build with `--features bug-zoo`)");
        return;
    }
    let scenarios = crate::scenario::all_in(&crate::scenario::scenarios_dir()).unwrap_or_else(|e| panic!("scenarios: {e}"));
    let mut times = Vec::new();
    super::say!("{:<4} {:<14} {:>5} {:>9}", "id", "caught by", "runs", "seconds");
    for mutation in Mutation::ALL {
        let (seconds, found) = timed(|| hunt(mutation, &scenarios, Budget::default()));
        let caught_by = match &found.verdict {
            Verdict::Caught { invariant, .. } => invariant.id().to_string(),
            Verdict::Panicked { .. } => "assertion".to_string(),
            Verdict::ByConstruction { .. } | Verdict::ThreadsOnly { .. } => continue,
            Verdict::Survived => "SURVIVED".to_string(),
        };
        super::say!("{:<4} {:<14} {:>5} {:>9.3}", mutation.id(), caught_by, found.attempts, seconds);
        super::record(&format!("zoo.{}.seconds", mutation.id().to_lowercase()), seconds);
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        super::say!("zoo time to detect: median {median:.3} s, max {max:.3} s over {} mutations hunted by runs", times.len());
    }
}
