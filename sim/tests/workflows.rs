//! The CI workflows (`.github/workflows/`) are valid YAML, every job has
//! steps, and they call the commands the README documents: CI runs
//! `.ci/run` (which runs the README's test command), and every `snapsim`
//! verb and knob the nightly uses is one the README explains.

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

#[test]
fn ci_runs_the_projects_ci_entry_point_which_runs_the_readmes_test_command() {
    let commands = run_commands(&workflow("ci.yml"));
    assert!(commands.iter().any(|(_, run)| run.trim() == "bash .ci/run"), "{commands:?}");
    let ci_run = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(readme().contains("cargo test --workspace\n"), "the README's test command moved");
    assert!(ci_run.contains("cargo test --workspace"), ".ci/run no longer runs the README's test command");
    assert!(on_triggers(&workflow("ci.yml")).contains(&"push".to_string()));
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
}
