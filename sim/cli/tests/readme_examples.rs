//! Every `snapsim` example the README shows, run as it is written.
//!
//! The README's `sh` blocks are read here, not copied: each line that runs
//! `snapsim` (typed as `snapsim …` or `cargo run … --bin snapsim -- …`) is
//! an example, and a block that is a small script (a variable, a loop, a
//! pipe) is one example run whole by `sh -e`. [`EXAMPLES`] says what each
//! must do: its exit code, the files it leaves, and the bounds under which
//! the long ones run here (a soak of seconds instead of hours, a few
//! scenarios instead of all). An example the table does not know, or an
//! entry the README no longer shows, fails the test: the README cannot
//! drift from what the binary does.
//!
//! What the README claims an example prints is checked too: the comment
//! lines right under it that show output (`# verdict: …`, `# the failure
//! needs: …`, `# NAME seed N: FAIL: …`) and a trailing `# status: …` must
//! appear in its output (` … ` stands for any text). Commands of other tools in the same blocks (`cargo test`, `cargo
//! xtask`, which needs root and a VM) are not run here.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one example must do.
struct Example {
    /// The command as the README writes it (after `cargo run … --` is read
    /// as `snapsim`, without its trailing comment), or a script block's
    /// first line.
    readme: &'static str,
    /// Exit code.
    exit: i32,
    /// Text replaced before the run: placeholders, and bounds for the long ones.
    replace: &'static [(&'static str, &'static str)],
    /// Only these scenarios are found (`SNAPSIM_SCENARIOS`): for examples over every scenario.
    few_scenarios: bool,
    /// Files (or directories) the example leaves in its directory.
    leaves: &'static [&'static str],
    /// What the README's prose says it prints, in order.
    prints: &'static [&'static str],
}

const fn run(readme: &'static str, exit: i32) -> Example {
    Example { readme, exit, replace: &[], few_scenarios: false, leaves: &[], prints: &[] }
}

/// Placeholders of the real-file examples: a COW and origin the kernel
/// wrote (the `basic-4k` vector) and its workload.
const FILES: &[(&str, &str)] = &[
    ("[--store PO]", "--store PO"),
    ("[--cow-threshold N]", "--cow-threshold 4"),
    ("ORIGIN", "origin-example.img"),
    ("COW", "cow-example.img"),
    ("WORKLOAD", "../shared/vectors/linux-6.1/basic-4k/vector.json"),
];

const EXAMPLES: &[Example] = &[
    run("snapsim run --seed 42", 0),
    run("snapsim explore basic-cow", 0),
    Example { few_scenarios: true, ..run("snapsim explore all", 0) },
    Example { leaves: &["crash-traces/i8-run-seed4-strict-2.toml"], ..run("snapsim run --seed 4 --strict --save-trace", 1) },
    run("snapsim replay crash-traces/i8-run-seed3-strict.toml", 0),
    run("snapsim explore basic-cow --mutation Z3", 1),
    Example { few_scenarios: true, replace: &[("zoo", "zoo --only Z3 --only Z22 --swarm-seeds 2")], ..run("snapsim zoo", 0) },
    Example { leaves: &["z7.html", "z7/load.sh"], ..run("snapsim explore basic-cow --mutation Z7 --timeline z7.html --export z7/", 1) },
    Example { leaves: &["run4.html"], ..run("snapsim run --seed 4 --strict --timeline run4.html", 1) },
    Example { leaves: &["i5.html"], ..run("snapsim replay crash-traces/i5-explore-seed1-z3.toml --timeline i5.html", 0) },
    Example { replace: FILES, ..run("snapsim inspect COW", 0) },
    Example { replace: FILES, ..run("snapsim inspect --records COW", 0) },
    Example { replace: FILES, ..run("snapsim inspect --json COW", 0) },
    Example { replace: FILES, leaves: &["snap.img"], ..run("snapsim view --origin ORIGIN --cow COW --out snap.img", 0) },
    Example { replace: FILES, ..run("snapsim apply --origin ORIGIN --cow COW --chunk-size 8 [--store PO] [--cow-threshold N] WORKLOAD", 0) },
    Example { replace: FILES, ..run("snapsim merge --origin ORIGIN --cow COW", 0) },
    Example { leaves: &["origin.img", "cow.img"], ..run("V=../shared/vectors/linux-6.1/merge-4k", 0) },
    Example {
        prints: &["488/2048 16", "5632/8192 32", "16/4096 16", "Invalid"],
        ..run("for v in basic-4k multi-area-4k merge-4k overflow-invalid; do", 0)
    },
    // Minutes of measurement: here its help; run as written by
    // `the_readme_bench_example_runs_as_written`, which the nightly runs.
    Example { replace: &[("bench", "bench --help")], ..run("snapsim bench", 0) },
    Example { replace: &[("8h", "2s")], leaves: &["soak-report.json"], ..run("snapsim soak --duration 8h", 0) },
    Example { replace: &[("5h", "2s")], leaves: &["soak-report-2.json"], ..run("snapsim soak --duration 5h --shard 2/4 --seed-start 4294967296", 0) },
    Example { few_scenarios: true, replace: &[("coverage", "coverage --seeds 20")], ..run("snapsim coverage", 0) },
    Example { few_scenarios: true, ..run("snapsim coverage --per-scenario --seeds 0", 0) },
    Example { replace: &[("1h", "2s"), ("2000", "20")], leaves: &["soak-report-3.json"], ..run("snapsim soak --duration 1h --directed 2000", 0) },
    Example { replace: &[("10000", "50")], ..run("snapsim coverage --no-scenarios --seeds 0 --directed 10000", 0) },
];

/// The scenarios `few_scenarios` examples see.
const FEW: [&str; 2] = ["basic-cow", "area-boundary"];

/// One example found in the README: its key, the text to run, and the output it claims.
struct Found {
    key: String,
    script: String,
    claims: Vec<String>,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> PathBuf {
    match std::env::var_os("SNAPSIM_VECTORS") {
        Some(vectors) => PathBuf::from(vectors).join("../.."),
        None => repo().join("../shared"),
    }
}

/// `cargo run [options] --bin snapsim -- ARGS` read as `snapsim ARGS`.
fn as_snapsim(line: &str) -> String {
    match (line.find("cargo run"), line.find("--bin snapsim -- ")) {
        (Some(start), Some(bin)) => format!("{}snapsim {}", &line[..start], &line[bin + "--bin snapsim -- ".len()..]),
        _ => line.to_string(),
    }
}

/// A line without its trailing `#` comment, and the comment.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    match line.find(" # ").or_else(|| line.find("  #")) {
        Some(at) => (line[..at].trim_end(), Some(line[at..].trim_start().trim_start_matches('#').trim())),
        None => (line.trim_end(), None),
    }
}

/// Every example of the README's `sh` blocks.
fn found() -> Vec<Found> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut examples = Vec::new();
    for block in readme.split("```sh\n").skip(1).map(|rest| rest.split("```").next().unwrap()) {
        let lines: Vec<String> = block.lines().map(as_snapsim).collect();
        if !lines.iter().any(|l| l.contains("snapsim ")) {
            continue;
        }
        let is_script = lines.iter().any(|l| l.contains('$') || l.starts_with("for ") || l.contains(" | "));
        if is_script {
            let claims = lines.iter().filter_map(|l| split_comment(l).1).filter(|c| c.starts_with("status:")).map(str::to_string).collect();
            examples.push(Found { key: lines[0].clone(), script: lines.join("\n"), claims });
            continue;
        }
        for (i, line) in lines.iter().enumerate() {
            let (command, comment) = split_comment(line);
            if !command.starts_with("snapsim ") {
                continue;
            }
            let mut claims: Vec<String> = comment.filter(|c| c.starts_with("status:")).map(str::to_string).into_iter().collect();
            let below = lines[i + 1..].iter().map_while(|l| l.strip_prefix("# "));
            claims.extend(below.filter(|c| is_output(c)).map(str::to_string));
            examples.push(Found { key: command.to_string(), script: command.to_string(), claims });
        }
    }
    examples
}

/// Whether a comment under an example shows its output (rather than describing it).
fn is_output(comment: &str) -> bool {
    comment.starts_with("verdict:") || comment.starts_with("the failure needs:") || comment.contains(": FAIL: ")
}

/// A directory laid out as a checkout beside `../shared`: the scenarios and
/// crash traces copied (examples write traces), `snapsim` on the PATH, the
/// placeholders' files, and a directory of a few scenarios.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("checkout");
    let sh = |script: &str| {
        let status = Command::new("sh").arg("-ec").arg(script).current_dir(&dir).status().unwrap();
        assert!(status.success(), "{script}");
    };
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::os::unix::fs::symlink(shared().canonicalize().expect("../shared beside the checkout"), root.path().join("shared")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_snapsim"), dir.join("bin/snapsim")).unwrap();
    let repo = repo();
    sh(&format!("cp -r '{0}/scenarios' '{0}/crash-traces' .", repo.display()));
    sh("V=../shared/vectors/linux-6.1/basic-4k; zcat $V/cow.img.gz > cow-example.img; zcat $V/origin.before.img.gz > origin-example.img");
    std::fs::create_dir(dir.join("few")).unwrap();
    for name in FEW {
        std::fs::copy(dir.join(format!("scenarios/{name}.toml")), dir.join(format!("few/{name}.toml"))).unwrap();
    }
    (root, dir)
}

/// Whether `output` shows `claim`, where ` … ` in the claim stands for any text.
fn shows(output: &str, claim: &str) -> bool {
    let mut rest = output;
    for piece in claim.split(" … ").map(|p| p.trim_end_matches(" …").trim_end_matches('…')) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn every_readme_example_runs_as_written() {
    let (_root, dir) = workspace();
    let found = found();
    for entry in EXAMPLES {
        assert!(found.iter().any(|f| f.key == entry.readme), "the README no longer shows {:?}: update EXAMPLES", entry.readme);
    }
    let path = format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    for example in &found {
        let entry = EXAMPLES.iter().find(|e| e.readme == example.key);
        let entry = entry.unwrap_or_else(|| panic!("README example {:?} is not in EXAMPLES: say what it must do", example.key));
        let script = entry.replace.iter().fold(example.script.clone(), |script, (from, to)| script.replace(from, to));
        let mut command = Command::new("sh");
        command.arg(if example.script.contains('\n') { "-ec" } else { "-c" }).arg(&script).current_dir(&dir);
        command.env("PATH", &path).env_remove("SNAPSIM_STRICT").env_remove("SNAPSIM_SCENARIOS");
        if entry.few_scenarios {
            command.env("SNAPSIM_SCENARIOS", "few");
        }
        let output = command.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let uncaught = text.lines().any(|line| line.starts_with("thread '") && line.contains("' panicked at "));
        assert!(!uncaught, "{script}: a panic is a bug:\n{text}");
        assert_eq!(output.status.code(), Some(entry.exit), "{script}:\n{text}");
        for claim in example.claims.iter().map(String::as_str).chain(entry.prints.iter().copied()) {
            assert!(shows(&text, claim), "{script}: the README says it prints {claim:?}; it printed:\n{text}");
        }
        for file in entry.leaves {
            assert!(dir.join(file).exists(), "{script}: left no {file}:\n{text}");
        }
        println!("ran {script:?}: exit {}, {} claim(s) shown", entry.exit, example.claims.len());
    }
    let claims: usize = found.iter().map(|f| f.claims.len()).sum();
    println!("{} README examples run, {claims} claims of output checked", found.len());
    assert_eq!(found.len(), EXAMPLES.len(), "each entry of EXAMPLES is one README example");
    assert!(claims >= 5, "the README's shown outputs are checked: {claims}");
}

/// The README's bench example, as written: every group of the bench
/// measured and printed. Minutes of work, so not in the default run; the
/// nightly runs it with the zoo built in:
/// `cargo test --release -p snapsim --features bug-zoo --test readme_examples -- --ignored`.
#[test]
#[ignore = "minutes of measurement: the nightly runs it"]
fn the_readme_bench_example_runs_as_written() {
    let (_root, dir) = workspace();
    let example = found().into_iter().find(|f| f.key == "snapsim bench").expect("the README shows the bench");
    let path = format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("sh").arg("-c").arg(&example.script).current_dir(&dir).env("PATH", path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{}:\n{text}", example.script);
    for group in [
        "load benchmark:",
        "swarm: seeds",
        "directed swarm:",
        "cost per distinct state",
        "explore all:",
        "crash images of",
        "first-write throughput:",
        "burst memory:",
        "zoo time to detect",
    ] {
        assert!(text.contains(group), "the bench printed no {group:?}:\n{text}");
    }
    assert!(text.contains("verdict: PASS"), "{text}");
}
