//! The differential test's workloads, runs and comparisons.

use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::store::StoreKind;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use snapsim::inspect::{InspectArgs, report};
use snapsim::live::{ApplyArgs, LiveArgs, apply, merge};
use snapsim::view::{ViewArgs, run as view};

use crate::vm::{self, Boot, Disks, Machine};

/// Options of `cargo xtask interop`.
#[derive(Debug, Clone, clap::Args)]
pub struct InteropArgs {
    /// Where images, logs and the report go (default `target/interop`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the workloads (ours, and the kernel's writers).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Kernel workloads run to the end.
    #[arg(long, default_value_t = 2)]
    pub clean_runs: u32,
    /// Kernel workloads killed mid-way (a power cut).
    #[arg(long, default_value_t = 3)]
    pub killed_runs: u32,
    /// Boot dm-snapshot.ko built from Debian's source of the same kernel
    /// with the `*.patch` files of DIR applied in name order (results under `OUT/patched`).
    #[arg(long, value_name = "DIR")]
    pub patches: Option<PathBuf>,
}

/// The origin's size: 4 MiB.
const ORIGIN_SECTORS: u64 = 8192;

/// One comparison, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    pub direction: &'static str,
    pub chunk_bytes: u64,
    pub store: String,
    pub engine_status: String,
    pub kernel_status: String,
    /// `identical`, `both unreadable`, or where they differ.
    pub view: String,
    /// For merges: whether the merged origin equals the view.
    pub merge: Option<String>,
    pub seconds: f64,
    pub pass: bool,
}

/// An engine → kernel workload.
struct EngineCase {
    name: &'static str,
    chunk_sectors: u32,
    store: StoreKind,
    cow_sectors: u64,
    /// Writes to the origin and the snapshot, in sectors.
    writes: usize,
    origin_share: f64,
    engine_merge: bool,
    kernel_merge: bool,
}

fn engine_cases() -> Vec<EngineCase> {
    let case = |name, chunk_sectors, store, cow_sectors, writes, kernel_merge| EngineCase {
        name,
        chunk_sectors,
        store,
        cow_sectors,
        writes,
        origin_share: 0.7,
        engine_merge: false,
        kernel_merge,
    };
    let roomy = 2 * ORIGIN_SECTORS;
    vec![
        // 32 records per 512-byte area: 400 writes fill about ten areas.
        case("512 B chunks, many areas, kernel merge", 1, StoreKind::Persistent, roomy, 400, true),
        case("4 KiB chunks, kernel merge", 8, StoreKind::Persistent, roomy, 300, true),
        case("16 KiB chunks, kernel merge", 32, StoreKind::Persistent, roomy, 200, true),
        case("64 KiB chunks, kernel merge", 128, StoreKind::Persistent, roomy, 100, true),
        EngineCase { origin_share: 0.0, ..case("PO: snapshot writes overflow the COW", 8, StoreKind::PersistentOverflow, 256, 200, false) },
        EngineCase { origin_share: 1.0, ..case("P: origin writes overflow, snapshot invalidated", 8, StoreKind::Persistent, 256, 200, false) },
        EngineCase { engine_merge: true, ..case("merged by our engine, then loaded", 16, StoreKind::Persistent, roomy, 200, false) },
    ]
}

/// The origin's first contents: a pattern no write repeats.
fn origin_image(seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..ORIGIN_SECTORS * 512).map(|_| rng.random::<u8>()).collect()
}

fn write_disks(dir: &Path, seed: u64, cow_sectors: u64) -> Result<Disks, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let disks = Disks { dir: dir.to_path_buf() };
    let write = |path: PathBuf, bytes: Vec<u8>| std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()));
    write(disks.origin(), origin_image(seed))?;
    write(disks.cow(), vec![0; cow_sectors as usize * 512])?;
    write(disks.results(), vec![0; ORIGIN_SECTORS as usize * 512])?;
    Ok(disks)
}

/// Our engine's status line and view of the COW on `disks` (read-only).
fn engine_side(disks: &Disks, view_path: &Path) -> Result<(String, Option<Vec<u8>>), String> {
    let inspected = report(&InspectArgs { cow: disks.cow(), chunk_size: None, records: false, json: false }).map_err(|e| e.message)?;
    let status = inspected.status.unwrap_or_else(|| format!("refused: {}", inspected.error.unwrap_or_default()));
    let viewed = view(&ViewArgs { origin: disks.origin(), cow: disks.cow(), out: view_path.to_path_buf(), chunk_size: None });
    let bytes = match viewed {
        Ok(_) => Some(std::fs::read(view_path).map_err(|e| format!("{}: {e}", view_path.display()))?),
        Err(_) => None,
    };
    Ok((status, bytes))
}

/// The kernel's status (after the target name) from `0 N snapshot A/B C`.
fn kernel_status(boot: &Boot) -> String {
    let line = boot.marker("STATUS").unwrap_or("no status line");
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() >= 4 && words[2].starts_with("snapshot") { words[3..].join(" ") } else { line.to_string() }
}

/// Compares our view with what the kernel copied to the results disk.
fn compare_views(ours: Option<&[u8]>, boot: &Boot, results: &Path) -> Result<(String, bool), String> {
    let kernel_readable = boot.marker("VIEW") == Some("ok");
    match (ours, kernel_readable) {
        (None, false) => Ok(("both unreadable".to_string(), true)),
        (Some(_), false) => Ok(("the kernel could not read a view we serve".to_string(), false)),
        (None, true) => Ok(("we refuse a view the kernel serves".to_string(), false)),
        (Some(ours), true) => {
            let kernel = std::fs::read(results).map_err(|e| format!("{}: {e}", results.display()))?;
            Ok(differ("view", ours, &kernel[..ours.len().min(kernel.len())]))
        }
    }
}

fn differ(what: &str, ours: &[u8], theirs: &[u8]) -> (String, bool) {
    if ours == theirs {
        return ("identical".to_string(), true);
    }
    let at = ours.iter().zip(theirs).position(|(a, b)| a != b).unwrap_or(ours.len().min(theirs.len()));
    (format!("{what} differs from sector {} on", at / 512), false)
}

/// Writes a workload file of random writes for `snapsim apply`.
fn workload(case: &EngineCase, seed: u64, path: &Path) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text = String::new();
    for _ in 0..case.writes {
        let target = if rng.random_bool(case.origin_share) { "origin" } else { "snapshot" };
        let sectors = rng.random_range(1..=16u64);
        let sector = rng.random_range(0..ORIGIN_SECTORS - sectors);
        text += &format!("write {target} {sector} {sectors}\n");
        if rng.random_ratio(1, 16) {
            text += "flush origin\n";
        }
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_engine_case(machine: &Machine, out: &Path, case: &EngineCase, seed: u64) -> Result<Row, String> {
    let dir = out.join(case.name.replace([' ', ':', ',', '>'], "-").to_lowercase());
    let disks = write_disks(&dir, seed, case.cow_sectors)?;
    let workload_path = dir.join("workload.txt");
    workload(case, seed, &workload_path)?;
    let live = LiveArgs {
        origin: disks.origin(),
        cow: disks.cow(),
        chunk_size: Some(case.chunk_sectors),
        store: case.store,
        cow_threshold: engine::targets::DEFAULT_COW_THRESHOLD,
    };
    apply(&ApplyArgs { live: live.clone(), workload: workload_path }).map_err(|e| e.message)?;
    if case.engine_merge {
        let merged = merge(&live).map_err(|e| e.message)?;
        if merged.outcome != engine::targets::MergeOutcome::Complete {
            return Err(format!("{}: our merge did not complete: {:?}", case.name, merged.outcome));
        }
    }
    let (engine_status, ours) = engine_side(&disks, &dir.join("engine-view.img"))?;
    let store = if case.store == StoreKind::Persistent { "P" } else { "PO" };
    let args = format!("chunk={} store={store} merge={}", case.chunk_sectors, u8::from(case.kernel_merge));
    let boot = vm::boot(machine, &disks, "view", &args, None)?;
    let kernel_status = kernel_status(&boot);
    let (view, view_pass) = compare_views(ours.as_deref(), &boot, &disks.results())?;
    let mut pass = view_pass && kernel_status == engine_status;
    let merge = if case.kernel_merge {
        let merged = std::fs::read(disks.origin()).map_err(|e| e.to_string())?;
        let (text, ok) = match (&ours, boot.marker("MERGED")) {
            (Some(ours), Some(_)) => differ("merged origin", ours, &merged),
            (_, None) => ("the kernel's merge did not finish".to_string(), false),
            (None, _) => ("no view of ours to compare".to_string(), false),
        };
        pass &= ok;
        Some(text)
    } else {
        None
    };
    Ok(Row {
        workload: case.name.to_string(),
        direction: "engine → kernel",
        chunk_bytes: u64::from(case.chunk_sectors) * 512,
        store: store.to_string(),
        engine_status,
        kernel_status,
        view,
        merge,
        seconds: boot.seconds,
        pass,
    })
}

/// Runs a kernel workload (killed `kill_after` into its writes, if set)
/// and compares; also returns how long its writes ran.
fn run_kernel_case(
    machine: &Machine,
    out: &Path,
    name: &str,
    seed: u64,
    chunk_sectors: u32,
    kill_after: Option<Duration>,
) -> Result<(Row, f64), String> {
    let dir = out.join(format!("kernel-{seed}"));
    // Room for every chunk: the snapshot never overflows.
    let disks = write_disks(&dir, seed, 2 * ORIGIN_SECTORS + 64 * u64::from(chunk_sectors))?;
    let args = format!("chunk={chunk_sectors} store=P writers=4 writes=150 seed={seed}");
    let wrote = vm::boot(machine, &disks, "write", &args, kill_after)?;
    // A kill that came too late leaves a clean run: still compared, and named so.
    let name = if kill_after.is_some() && !wrote.killed { format!("{name}, but it finished first") } else { name.to_string() };
    // Our engine reads what the disks hold now; then the kernel reloads it.
    let (engine_status, ours) = engine_side(&disks, &dir.join("engine-view.img"))?;
    let boot = vm::boot(machine, &disks, "view", &format!("chunk={chunk_sectors} store=P merge=0"), None)?;
    let kernel_status = kernel_status(&boot);
    let (view, view_pass) = compare_views(ours.as_deref(), &boot, &disks.results())?;
    let row = Row {
        workload: name,
        direction: "kernel → engine",
        chunk_bytes: u64::from(chunk_sectors) * 512,
        store: "P".to_string(),
        pass: view_pass && kernel_status == engine_status,
        engine_status,
        kernel_status,
        view,
        merge: None,
        seconds: wrote.seconds + boot.seconds,
    };
    Ok((row, wrote.writing_seconds.unwrap_or(0.0)))
}

/// How long dm-delay holds the origin's reads in the K2 workload: long
/// enough that the snapshot read is still in flight when the origin write
/// comes, under TCG.
const K2_READ_DELAY_MS: u32 = 1500;

/// Kernel behaviour K2 on the kernel itself (guest job `k2.sh`): a snapshot
/// read held in flight by dm-delay while the snapshot is invalidated and the
/// chunk it reads is written through the origin. The snapshot's promise
/// (I13) is that the read returns the old data. The stock kernel lets the
/// write pass the invalid snapshot, so the read returns the new data: K2,
/// allowed for the stock module as our stock engine allows it. A module
/// built from a patch series is held to the promise, as our engine is with
/// the series applied.
fn run_k2_case(machine: &Machine, out: &Path, seed: u64) -> Result<Row, String> {
    let dir = out.join("kernel-k2");
    let disks = write_disks(&dir, seed, 64)?;
    let boot = vm::boot(machine, &disks, "k2", &format!("delay_ms={K2_READ_DELAY_MS}"), None)?;
    let stock = machine.module.patches.is_empty();
    let (read, write_first) = match boot.marker("K2") {
        Some(line) => {
            let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or("?").to_string();
            (field("read="), field("write_first="))
        }
        None => return Err(format!("the k2 job printed no result: {:?}", boot.markers)),
    };
    let invalid = boot.marker("STATUS") == Some("0 8192 snapshot Invalid");
    let pass = invalid && (read == "old" || (read == "new" && stock));
    let view = match (read.as_str(), write_first.as_str()) {
        ("new", _) if stock => "K2: the read returned the origin write's data (the stock kernel's behaviour, allowed)".to_string(),
        ("new", _) => "I13: the read returned the origin write's data".to_string(),
        ("old", "no") => "the write waited for the read; the read returned the old data".to_string(),
        ("old", _) => "the read returned the old data".to_string(),
        (other, _) => format!("the read returned neither the old nor the new data ({other})"),
    };
    Ok(Row {
        workload: format!("K2: origin write after invalidation, snapshot read in flight (reads held {K2_READ_DELAY_MS} ms)"),
        direction: "kernel, timed",
        chunk_bytes: 4096,
        store: "P".to_string(),
        engine_status: if stock { "old, or new (K2)" } else { "old" }.to_string(),
        kernel_status: if invalid {
            format!("Invalid, read {read}")
        } else {
            format!("{}, read {read}", boot.marker("STATUS").unwrap_or("no status"))
        },
        view,
        merge: None,
        seconds: boot.seconds,
        pass,
    })
}

/// Runs every workload; prints the table and writes `report.json`.
/// Returns whether every comparison passed.
pub fn run(args: &InteropArgs) -> Result<bool, crate::TaskError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let base = args.out.clone().unwrap_or_else(|| root.join("target/interop"));
    let machine = vm::prepare(&base.join("cache"), args.patches.as_deref())?;
    let out = if args.patches.is_some() { base.join("patched") } else { base };
    println!("kernel: {} ({}), qemu TCG; {}", machine.release, machine.package, machine.module);
    let mut rows = Vec::new();
    let mut print = |row: Row| {
        println!(
            "{:<5} {:<16} {:<50} {:>6} {:<3} ours {:<16} kernel {:<16} view {}{}",
            if row.pass { "PASS" } else { "FAIL" },
            row.direction,
            row.workload,
            row.chunk_bytes,
            row.store,
            row.engine_status,
            row.kernel_status,
            row.view,
            row.merge.as_ref().map_or(String::new(), |m| format!(", merge: {m}"))
        );
        rows.push(row);
    };
    print(run_k2_case(&machine, &out, args.seed * 1000 + 200)?);
    for (index, case) in engine_cases().iter().enumerate() {
        print(run_engine_case(&machine, &out, case, args.seed * 1000 + index as u64)?);
    }
    // Clean runs first: how long their writes take sets where kills land
    // (from a twentieth of the way to four fifths).
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut writing_seconds: f64 = 2.0;
    for run in 0..args.clean_runs + args.killed_runs {
        let chunk_sectors = [8u32, 2, 16][run as usize % 3];
        let seed = args.seed * 1000 + 100 + u64::from(run);
        let (name, kill) = if run < args.clean_runs {
            (format!("4 writers, run to the end (seed {seed})"), None)
        } else {
            let delay = Duration::from_secs_f64(writing_seconds * rng.random_range(0.05..0.8));
            (format!("4 writers, killed {} ms into its writes (seed {seed})", delay.as_millis()), Some(delay))
        };
        let (row, seconds) = run_kernel_case(&machine, &out, &name, seed, chunk_sectors, kill)?;
        if kill.is_none() {
            writing_seconds = if run == 0 { seconds } else { writing_seconds.min(seconds) };
        }
        print(row);
    }
    let passed = rows.iter().filter(|r| r.pass).count();
    println!("{passed} of {} comparisons passed", rows.len());
    let report = serde_json::json!({ "kernel": machine.release, "package": machine.package, "module": machine.module, "rows": rows });
    let path = out.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n")
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("report: {}", path.display());
    Ok(passed == rows.len())
}
