//! Every trace in `crash-traces/` replays to its recorded verdict.
//!
//! A trace is a minimized failing run (see `sim::crash_trace`). Traces made
//! with a bug-zoo mutation prove the harness still catches that bug; traces
//! made with `strict` record a kernel behaviour the oracle otherwise allows.

use sim::crash_trace::{CrashTrace, Verdict, traces_dir};
use sim::shape::FileProblem;

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

/// A trace reads back as it was written (one run-shape type in both
/// directions), and a wrong field is refused naming the file, its line and why.
#[test]
fn a_trace_reads_back_as_written_and_a_wrong_field_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let any = std::fs::read_dir(traces_dir()).unwrap().filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.extension().is_some_and(|e| e == "toml"));
    let trace = CrashTrace::load(&any.expect("a kept trace")).unwrap();
    let path = trace.write(dir.path()).unwrap();
    assert_eq!(CrashTrace::load(&path).unwrap(), trace);
    assert_ne!(trace.verdict, Verdict::Pass, "kept traces record failures");

    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replace(&format!("chunk_sectors = {}", trace.shape.chunk_sectors), "chunk_sectors = 3");
    std::fs::write(&path, &bad).unwrap();
    let error = CrashTrace::load(&path).unwrap_err();
    let line = bad.lines().position(|l| l == "chunk_sectors = 3").unwrap() + 1;
    assert_eq!(error.line, Some(line));
    assert!(matches!(error.problem, FileProblem::Field(ref f) if f.field == "chunk_sectors"), "{error}");
    assert!(error.to_string().ends_with(&format!(":{line}: chunk_sectors = 3: not a power of two")), "{error}");

    std::fs::write(&path, text.replace("verdict = ", "verdict_typo = ")).unwrap();
    let error = CrashTrace::load(&path).unwrap_err();
    assert!(matches!(error.problem, FileProblem::Syntax(_)), "{error}");
    assert!(error.to_string().contains("verdict_typo") || error.to_string().contains("missing field `verdict`"), "{error}");

    std::fs::write(&path, format!("colour = 1\n{text}")).unwrap();
    let error = CrashTrace::load(&path).unwrap_err();
    assert!(matches!(error.problem, FileProblem::Syntax(_)), "{error}");
    assert!(error.to_string().contains("colour"), "an unknown field is named: {error}");
}
