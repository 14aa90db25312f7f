//! The CI workflows (`.github/workflows/`) are valid YAML, every job has
//! steps, and they call the commands the README documents: CI runs
//! `.ci/run` (which runs the README's test command), and every `snapsim`
//! verb and knob the nightly uses is one the README explains. Nothing CI
//! runs can hang it: every job, test and suite has a time limit.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn workflow(name: &str) -> Value {
    let path = root().join(".github/workflows").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Every `run:` command of a workflow, with its job's name.
fn run_commands(workflow: &Value) -> Vec<(String, String)> {
    let jobs = workflow["jobs"].as_mapping().expect("a workflow has jobs");
    assert!(!jobs.is_empty());
    let mut commands = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap().to_string();
        let steps = job["steps"].as_sequence().unwrap_or_else(|| panic!("job {name} has no steps"));
        assert!(!steps.is_empty(), "job {name} has no steps");
        for step in steps {
            assert!(step.get("uses").is_some() || step.get("run").is_some(), "a step of {name} neither uses nor runs anything");
            if let Some(run) = step["run"].as_str() {
                commands.push((name.clone(), run.to_string()));
            }
        }
    }
    commands
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The commands of `.ci/run`, one per line (continued lines joined).
fn ci_run_commands() -> Vec<String> {
    let text = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let text = text.replace("\\\n", " ");
    text.lines().map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|line| !line.is_empty() && !line.starts_with('#')).collect()
}

#[test]
fn ci_runs_the_projects_ci_entry_point_which_runs_the_readmes_test_command() {
    let commands = run_commands(&workflow("ci.yml"));
    assert!(commands.iter().any(|(_, run)| run.trim() == "bash .ci/run"), "{commands:?}");
    assert!(readme().contains("cargo test --workspace\n"), "the README's test command moved");
    // `cargo test --workspace` in two parts: nextest (which can kill a hung
    // test) runs every test but the doc tests, cargo test the doc tests.
    let ci_run = ci_run_commands();
    let runs = |command: &str| ci_run.iter().any(|line| line.ends_with(command));
    assert!(runs("cargo nextest run --workspace --locked --profile ci"), ".ci/run no longer runs the test suite under nextest: {ci_run:#?}");
    assert!(runs("cargo test --workspace --locked --doc"), ".ci/run no longer runs the doc tests: {ci_run:#?}");
    assert!(ci_run.iter().any(|line| line == "cargo install cargo-nextest --locked"), ".ci/run no longer installs nextest where it is missing");
    assert!(on_triggers(&workflow("ci.yml")).contains(&"push".to_string()));
}

#[test]
fn nothing_ci_runs_can_hang_it() {
    for name in ["ci.yml", "nightly.yml"] {
        let workflow = workflow(name);
        for (job, settings) in workflow["jobs"].as_mapping().unwrap() {
            assert!(settings["timeout-minutes"].as_u64().is_some(), "job {job:?} of {name} has no timeout-minutes");
        }
    }
    // nextest kills a test still running after `terminate-after` periods.
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(root().join(".config/nextest.toml")).unwrap()).unwrap();
    let profiles = config["profile"].as_table().expect("nextest profiles");
    assert!(profiles.contains_key("ci"), "the profile .ci/run names");
    for (name, profile) in profiles {
        let Some(slow) = profile.get("slow-timeout") else {
            assert_ne!(name, "default", "the default nextest profile has no slow-timeout");
            continue;
        };
        let period = slow
            .get("period")
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("profile {name}: slow-timeout = {{ period, terminate-after }}"));
        let seconds: u64 = period.strip_suffix('s').and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("period {period:?} is not in seconds"));
        let periods =
            slow.get("terminate-after").and_then(toml::Value::as_integer).unwrap_or_else(|| panic!("profile {name}: a slow test is never killed"));
        assert!(periods > 0 && seconds * periods as u64 <= 20 * 60, "profile {name}: a hung test runs {periods} × {period}");
    }
    // Whatever .ci/run runs outside nextest runs under coreutils' timeout.
    let ci_run = ci_run_commands();
    assert!(
        ci_run.iter().any(|line| line.starts_with("timeout ") && line.ends_with(" \"$suite_timeout\" \"$@\"")),
        "bounded() no longer calls timeout: {ci_run:#?}"
    );
    for line in ci_run.iter().filter(|line| line.contains("cargo test")) {
        assert!(line.contains("bounded cargo test"), ".ci/run runs `{line}` without a time limit");
    }
    for suite in ["--test loom", "--test shuttle", "--doc"] {
        assert!(ci_run.iter().any(|line| line.contains("bounded cargo test") && line.ends_with(suite)), ".ci/run no longer runs `{suite}`");
    }
}

fn on_triggers(workflow: &Value) -> Vec<String> {
    // YAML 1.1 reads a bare `on` key as the boolean true.
    let on = workflow.get("on").or_else(|| workflow.get(Value::Bool(true))).expect("a workflow says when it runs");
    on.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect()
}

#[test]
fn the_nightly_runs_on_a_schedule_and_only_documented_commands() {
    let nightly = workflow("nightly.yml");
    assert!(on_triggers(&nightly).contains(&"schedule".to_string()));
    let readme = readme();
    let commands = run_commands(&nightly);
    let mut verbs = Vec::new();
    for (job, run) in &commands {
        let run = run.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(rest) = run.split("--bin snapsim -- ").nth(1) {
            let verb = rest.split_whitespace().next().unwrap();
            let documented = readme.contains(&format!("snapsim {verb}")) || readme.contains(&format!("--bin snapsim -- {verb}"));
            assert!(documented, "job {job} runs `snapsim {verb}`, which the README does not document");
            verbs.push(verb.to_string());
        }
        for knob in ["BOLERO_RANDOM_ITERATIONS", "PROPTEST_CASES", "LOOM_MAX_PREEMPTIONS", "SNAPSIM_SHUTTLE_ITERATIONS", "--shard", "--partition"] {
            if run.contains(knob) {
                assert!(readme.contains(knob), "job {job} uses {knob}, which the README does not document");
            }
        }
    }
    for verb in ["soak", "zoo", "bench"] {
        assert!(verbs.iter().any(|v| v == verb), "the nightly does not run snapsim {verb}");
    }
    assert!(commands.iter().any(|(_, run)| run.contains("cargo xtask interop")), "the nightly does not run the kernel interop test");
    assert!(readme.contains("cargo xtask interop"));
    assert!(commands.iter().any(|(_, run)| run.contains("cargo xtask kernel-crash")), "the nightly does not judge the kernel's crash states");
    assert!(readme.contains("cargo xtask kernel-crash"));
    assert!(
        commands.iter().any(|(_, run)| run.contains("cargo xtask kernel-crash --patches kernel-patches")),
        "the nightly does not judge the patched kernel"
    );
    assert!(commands.iter().any(|(_, run)| run.contains("cargo xtask kernel-mutants")), "the nightly does not run the kernel mutants");
    assert!(readme.contains("cargo xtask kernel-mutants"));
}
