//! `snapsim inspect` and `snapsim view` on the kernel's golden vectors, run as
//! a user would run them: the status line must be the kernel's, the view the
//! kernel's snapshot, and bad input a clear error with a non-zero exit.

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SNAPSIM_VECTORS") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/linux-6.1");
    assert!(dir.is_dir(), "golden vectors not found at {} (set SNAPSIM_VECTORS)", dir.display());
    dir
}

/// Runs `snapsim view` on a vector's final origin and COW, writing `out`.
fn view(name: &str, out: &std::path::Path) -> (bool, String, String) {
    let dir = vectors_dir().join(name);
    let origin = dir.join("origin.after.img.gz");
    let cow = dir.join("cow.img.gz");
    snapsim(&["view", "--origin", origin.to_str().unwrap(), "--cow", cow.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

fn snapsim(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_snapsim")).args(args).output().expect("snapsim runs");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into(), String::from_utf8_lossy(&output.stderr).into())
}

/// The vector's expected status after the target name, from its console log.
fn expected_status(name: &str) -> String {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(vectors_dir().join(name).join("vector.json")).unwrap()).unwrap();
    let tag = if meta["merge"].as_bool().unwrap() { "@@MERGE1 " } else { "@@STATUS1 " };
    let line = meta["console"].as_array().unwrap().iter().find_map(|l| l.as_str()?.strip_prefix(tag)).unwrap();
    line.splitn(4, ' ').nth(3).unwrap().to_string()
}

fn check_inspect(name: &str) {
    let cow = vectors_dir().join(name).join("cow.img.gz");
    let (ok, stdout, stderr) = snapsim(&["inspect", cow.to_str().unwrap()]);
    assert!(ok, "{name}: {stderr}");
    let status = stdout.lines().find_map(|l| l.strip_prefix("status:")).map(str::trim).unwrap_or_default();
    assert_eq!(status, expected_status(name), "{name}:\n{stdout}");

    let (ok, stdout, _) = snapsim(&["inspect", "--json", cow.to_str().unwrap()]);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["status"], expected_status(name).as_str(), "{name}");
    assert_eq!(report["chunk_sectors"], 8, "{name}");
}

#[test]
fn inspect_prints_the_kernels_status_line_for_every_vector() {
    for name in ["basic-4k", "merge-4k", "multi-area-4k", "overflow-invalid"] {
        check_inspect(name);
    }
}

#[test]
fn inspect_records_dumps_one_json_line_per_record() {
    let cow = vectors_dir().join("multi-area-4k/cow.img.gz");
    let (ok, stdout, stderr) = snapsim(&["inspect", "--records", cow.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 700);
    assert_eq!(lines[0], serde_json::json!({"area": 0, "index": 0, "old_chunk": 505, "new_chunk": 2}));
    assert_eq!(lines[699]["area"], 2);
    assert_eq!(lines[699]["new_chunk"], 703);
}

#[test]
fn view_writes_the_kernels_snapshot() {
    let out_dir = tempfile::tempdir().unwrap();
    for name in ["basic-4k", "merge-4k", "multi-area-4k"] {
        let dir = vectors_dir().join(name);
        let out = out_dir.path().join(format!("{name}.img"));
        let (ok, _, stderr) = view(name, &out);
        assert!(ok, "{name}: {stderr}");
        let mut expected = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join("snapshot.img.gz")).unwrap()).read_to_end(&mut expected).unwrap();
        assert!(std::fs::read(&out).unwrap() == expected, "{name}: view differs from the kernel's snapshot");
    }
}

#[test]
fn view_of_an_invalid_snapshot_fails_as_the_kernel_does() {
    let out = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = view("overflow-invalid", &out.path().join("v.img"));
    assert!(!ok);
    assert!(stderr.contains("the snapshot is invalid"), "{stderr}");
}

#[test]
fn a_cow_that_is_its_own_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 64 * 4096]).unwrap();
    let p = path.to_str().unwrap();
    let out = dir.path().join("out.img");
    let (ok, _, stderr) = snapsim(&["view", "--origin", p, "--cow", p, "--out", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("the COW device is the origin device"), "{stderr}");
}

#[test]
fn inspect_of_something_that_is_not_a_cow_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.img");
    std::fs::write(&path, [0xa5u8; 8192]).unwrap();
    let (ok, stdout, stderr) = snapsim(&["inspect", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.contains("refused"), "{stdout}");
    assert!(stderr.contains("magic is 0xa5a5a5a5"), "{stderr}");
    let (ok, stdout, _) = snapsim(&["inspect", dir.path().join("missing").to_str().unwrap()]);
    assert!(!ok && stdout.is_empty());
}

#[test]
fn inspect_of_a_zeroed_device_reports_a_new_cow_without_writing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.img");
    std::fs::write(&path, vec![0u8; 64 * 4096]).unwrap();
    let (ok, stdout, stderr) = snapsim(&["inspect", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("state:            new"), "{stdout}");
    assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0), "inspect wrote to the device");
}

fn gunzip_to(source: &std::path::Path, target: &std::path::Path) {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(source).unwrap()).read_to_end(&mut bytes).unwrap();
    std::fs::write(target, bytes).unwrap();
}

/// Replays a vector's workload with `snapsim apply` onto files, then checks
/// the view (or, for a merge vector, merges and checks the origin).
fn check_apply(name: &str) {
    let dir = vectors_dir().join(name);
    let work = tempfile::tempdir().unwrap();
    let (origin, cow, view_out) = (work.path().join("origin.img"), work.path().join("cow.img"), work.path().join("view.img"));
    gunzip_to(&dir.join("origin.before.img.gz"), &origin);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("vector.json")).unwrap()).unwrap();
    let cow_sectors = meta["cow_sectors"].as_u64().unwrap();
    std::fs::write(&cow, vec![0u8; cow_sectors as usize * 512]).unwrap();
    let (o, c) = (origin.to_str().unwrap(), cow.to_str().unwrap());
    let (ok, stdout, stderr) = snapsim(&["apply", "--origin", o, "--cow", c, "--chunk-size", "8", dir.join("vector.json").to_str().unwrap()]);
    let status_before_merge = {
        let line = meta["console"].as_array().unwrap().iter().find_map(|l| l.as_str()?.strip_prefix("@@STATUS1 ")).unwrap();
        line.splitn(4, ' ').nth(3).unwrap().to_string()
    };
    // A snapshot lost to overflow is a failure on the data: exit 1, status printed.
    assert_eq!(ok, status_before_merge != "Invalid", "{name}: {stderr}");
    assert!(stdout.contains(&format!("status: {status_before_merge}")), "{name}: {stdout}");
    let expect = |file: &str| {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join(file)).unwrap()).read_to_end(&mut bytes).unwrap();
        bytes
    };
    if meta["merge"].as_bool().unwrap() {
        let (ok, stdout, stderr) = snapsim(&["merge", "--origin", o, "--cow", c]);
        assert!(ok, "{name}: {stderr}");
        assert!(stdout.contains(&format!("status: {}", expected_status(name))), "{name}: {stdout}");
        assert!(std::fs::read(&origin).unwrap() == expect("origin.after.img.gz"), "{name}: merged origin differs from the kernel's");
        return;
    }
    assert!(std::fs::read(&origin).unwrap() == expect("origin.after.img.gz"), "{name}: origin differs from the kernel's");
    if status_before_merge == "Invalid" {
        return;
    }
    let (ok, _, stderr) = snapsim(&["view", "--origin", o, "--cow", c, "--out", view_out.to_str().unwrap()]);
    assert!(ok, "{name}: {stderr}");
    assert!(std::fs::read(&view_out).unwrap() == expect("snapshot.img.gz"), "{name}: view differs from the kernel's snapshot");
}

#[test]
fn apply_and_merge_reproduce_the_kernels_runs_on_files() {
    for name in ["basic-4k", "merge-4k", "multi-area-4k", "overflow-invalid"] {
        check_apply(name);
    }
}

#[test]
fn apply_reads_the_text_workload_form() {
    let work = tempfile::tempdir().unwrap();
    let (origin, cow, workload) = (work.path().join("o.img"), work.path().join("c.img"), work.path().join("w.txt"));
    std::fs::write(&origin, vec![7u8; 64 * 4096]).unwrap();
    std::fs::write(&cow, vec![0u8; 32 * 4096]).unwrap();
    std::fs::write(&workload, "write origin 0 8 new.\nwrite snapshot 64 2\nflush origin\n").unwrap();
    let (o, c) = (origin.to_str().unwrap(), cow.to_str().unwrap());
    let (ok, stdout, stderr) = snapsim(&["apply", "--origin", o, "--cow", c, "--chunk-size", "8", workload.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("applied 3 requests, 0 failed") && stdout.contains("status: 32/256 16"), "{stdout}");
    assert_eq!(&std::fs::read(&origin).unwrap()[..8], b"new.new.");
}

/// A failing run draws its timeline (a lane per device, its crashes, the
/// failing one marked), and a timeline is never written over the trace it
/// replays.
#[test]
fn a_failing_run_writes_its_timeline_and_never_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("run4.html");
    let (ok, stdout, _) = snapsim(&["run", "--seed", "4", "--strict", "--timeline", page.to_str().unwrap()]);
    assert!(!ok, "seed 4 --strict fails (K1)");
    assert!(stdout.contains("timeline: "), "{stdout}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("class=\"lane\"").count(), 3, "origin and two COWs");
    assert!(html.contains("id=\"crash-marker\"") && html.contains("I8 invalidation"));
    let trace = dir.path().join("trace.toml");
    let original = std::fs::read(repo_root().join("crash-traces/i8-run-seed4-strict.toml")).unwrap();
    std::fs::write(&trace, &original).unwrap();
    let outcome = std::process::Command::new(env!("CARGO_BIN_EXE_snapsim"))
        .args(["replay", trace.to_str().unwrap(), "--timeline", trace.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(outcome.status.code(), Some(2), "{}", String::from_utf8_lossy(&outcome.stderr));
    assert_eq!(std::fs::read(&trace).unwrap(), original, "the refused input is unchanged");
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
