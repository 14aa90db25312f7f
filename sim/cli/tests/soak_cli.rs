//! `snapsim soak` as a user runs it: it writes its JSON report and says
//! PASS on a clean run (the soak itself is tested in sim/tests/soak.rs).

#[test]
fn snapsim_soak_writes_its_report_and_says_pass() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let snapsim = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_snapsim")).args(args).output().unwrap();
    let output = snapsim(&["soak", "--seeds", "8", "--jobs", "2", "--report", report_path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report["seeds_run"], 8);
    assert_eq!(report["stopped_by"], "seeds");
}
