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

/// Following a recorded schedule reruns exactly the recorded run: the same
/// events, so the same trace hash, for swarm seeds of every kind.
#[test]
fn following_a_recorded_schedule_reruns_the_same_run() {
    use sim::world::{RunConfig, run};
    for seed in [1, 2, 3, 4, 42, 1000] {
        let mut recording = RunConfig::new(seed);
        recording.record_schedule = true;
        let recorded = run(&recording);
        let schedule = recorded.schedule.expect("a schedule was asked for");
        let text = sim::world::guide::to_text(&schedule);
        let mut guided = RunConfig::new(seed);
        guided.schedule = Some(sim::world::guide::parse(&text).unwrap());
        let again = run(&guided);
        assert_eq!(again.trace_hash, recorded.trace_hash, "seed {seed}: following its schedule ran another run");
        assert_eq!(again.failure.map(|f| f.violation.invariant), recorded.failure.map(|f| f.violation.invariant));
    }
}

/// The story this guards: a trace used to be the seed plus the workload,
/// and the seed's draws picked which request completed next by its index
/// among those in flight. Any change to the requests the engine issues (one
/// more read, a write split differently) moved every later draw, and an old
/// trace replayed another run, usually a passing one. A trace now keeps its
/// schedule in the workload's terms: the seed no longer decides the run…
#[test]
fn a_scheduled_trace_replays_the_same_run_whatever_its_seed() {
    let trace = CrashTrace::load(&traces_dir().join("i8-run-seed4-strict.toml")).unwrap();
    assert!(trace.schedule.is_some(), "the trace keeps its schedule");
    let recorded = trace.replay().unwrap();
    assert_eq!(recorded.verdict(), trace.verdict);
    for seed in [0, 99, 12_345] {
        let other = CrashTrace { seed, ..trace.clone() }.replay().unwrap();
        assert_eq!((other.verdict(), other.trace_hash), (recorded.verdict(), recorded.trace_hash), "seed {seed}");
    }
    let unscheduled = CrashTrace { seed: 99, schedule: None, ..trace.clone() }.replay().unwrap();
    assert_ne!(unscheduled.trace_hash, recorded.trace_hash, "without its schedule the seed decides the run");
}

/// …and where the engine changed, the replay goes on: a completion the
/// schedule names that is not in flight (a request the engine no longer
/// issues, or issues with other sectors) is replaced by the oldest request,
/// and the recorded failure still shows.
#[test]
fn a_schedule_naming_requests_the_engine_no_longer_issues_still_replays_the_failure() {
    let trace = CrashTrace::load(&traces_dir().join("i8-run-seed4-strict.toml")).unwrap();
    let schedule = trace.schedule.clone().unwrap();
    let words: Vec<&str> = schedule.split_whitespace().collect();
    let mut changed = 0;
    let perturbed: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            if word.starts_with('d') && i % 7 == 3 {
                changed += 1;
                "d2:w1000+1".to_string()
            } else {
                word.to_string()
            }
        })
        .collect();
    assert!(changed >= 3, "the schedule has completions to change");
    let replayed = CrashTrace { schedule: Some(perturbed.join(" ")), ..trace.clone() }.replay().unwrap();
    assert_eq!(replayed.verdict(), trace.verdict, "{changed} of its completions changed: {:?}", replayed.violation);
}
