//! Every trace in `crash-traces/` replays to its recorded verdict.
//!
//! A trace is a minimized failing run (see `sim::crash_trace`). Traces made
//! with a bug-zoo mutation prove the harness still catches that bug; traces
//! made with `strict` record a kernel behaviour the oracle otherwise allows.

use sim::crash_trace::{CrashTrace, traces_dir, valid_verdict};

#[test]
fn every_crash_trace_replays_to_its_recorded_verdict() {
    let mut paths: Vec<_> = std::fs::read_dir(traces_dir())
        .expect("crash-traces/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let trace = CrashTrace::load(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(valid_verdict(&trace.verdict), "{name}: verdict {:?} names no invariant", trace.verdict);
        match trace.replay() {
            Ok(replayed) if replayed.verdict() == trace.verdict => println!("{name}: {} as recorded ({} steps)", trace.verdict, replayed.steps),
            Ok(replayed) => failures.push(format!(
                "{name}: recorded {}, replay gave {} ({:?})",
                trace.verdict,
                replayed.verdict(),
                replayed.violation.map(|v| v.to_string())
            )),
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    println!("{} crash traces replayed", paths.len());
    assert!(failures.is_empty(), "crash traces that no longer give their verdict:\n{}", failures.join("\n"));
}
