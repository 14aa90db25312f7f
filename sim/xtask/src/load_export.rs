//! `cargo xtask load-export DIR`: a crash state `snapsim explore --export`
//! wrote, loaded by the real kernel under qemu, its status line and view
//! printed beside our engine's.
//!
//! Each snapshot of the state is one sample of the kernel-crash confirm
//! job: the origin image and that snapshot's COW side by side on a scratch
//! disk (the exported files are never written), loaded with the table
//! `tables.txt` gives it; the kernel prints `dmsetup status` and the md5
//! of the snapshot's view, and our engine loads the same bytes.

use std::path::{Path, PathBuf};

use engine::store::StoreKind;

use crate::kernel_crash::confirm::confirm;
use crate::kernel_crash::judge::Sample;
use crate::kernel_crash::workload::Workload;
use crate::vm;

#[derive(Debug, clap::Args)]
pub struct LoadExportArgs {
    /// A directory `snapsim explore --export` wrote.
    pub dir: PathBuf,
    /// Where the scratch disks and the kernel's cache go (default `target/interop`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Load the state with dm-snapshot.ko built from Debian's source of the
    /// same kernel with the `*.patch` files of DIR applied in name order.
    #[arg(long, value_name = "DIR")]
    pub patches: Option<PathBuf>,
}

/// One snapshot of the exported state: its table's chunk size and store.
fn snapshots(dir: &Path) -> Result<Vec<(usize, u32, StoreKind)>, String> {
    let path = dir.join("tables.txt");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (not a directory `snapsim explore --export` wrote?)", path.display()))?;
    let mut found = Vec::new();
    for line in text.lines().filter(|l| l.contains(" snapshot $ORIGIN ")) {
        // `snapsim-snapK: 0 SECTORS snapshot $ORIGIN $COWK STORE CHUNK`
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("{}: cannot read the table line {line:?}", path.display());
        let k = words[0].trim_start_matches("snapsim-snap").trim_end_matches(':').parse().map_err(|_| bad())?;
        let store = StoreKind::parse(words.get(6).ok_or_else(bad)?).ok_or_else(bad)?;
        let chunk = words.get(7).ok_or_else(bad)?.parse().map_err(|_| bad())?;
        found.push((k, chunk, store));
    }
    if found.is_empty() {
        return Err(format!("{}: no snapshot table", path.display()));
    }
    Ok(found)
}

pub fn run(args: &LoadExportArgs) -> Result<bool, crate::TaskError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().map_err(|e| e.to_string())?;
    let out = args.out.clone().unwrap_or_else(|| root.join("target/interop"));
    let read = |name: &str| std::fs::read(args.dir.join(name)).map_err(|e| format!("{}: {e}", args.dir.join(name).display()));
    let origin = read("origin.img")?;
    let mut pairs = Vec::new();
    for (k, chunk_sectors, store) in snapshots(&args.dir)? {
        let cow = read(&format!("cow{k}.img"))?;
        let workload = Workload {
            name: format!("cow{k}"),
            id: k as u64,
            chunk_sectors,
            store,
            origin_sectors: origin.len() as u64 / 512,
            cow_sectors: cow.len() as u64 / 512,
            ops: Vec::new(),
            reused_cow: false,
            slow_cow_ms: 0,
        };
        let sample = Sample { name: format!("snapshot {k} ({} {chunk_sectors})", store.table_name()), image: [origin.as_slice(), &cow].concat() };
        pairs.push((workload, sample));
    }
    let machine = vm::prepare(&out.join("cache"), args.patches.as_deref())?;
    println!(
        "kernel: {} ({}), qemu TCG; {}; {} snapshot(s) of {}",
        machine.release,
        machine.package,
        machine.module,
        pairs.len(),
        args.dir.display()
    );
    let samples: Vec<(&Workload, &Sample)> = pairs.iter().map(|(w, s)| (w, s)).collect();
    let confirmations = confirm(&machine, &out.join("load-export"), &samples)?;
    let mut all_agree = true;
    for c in &confirmations {
        println!("{}:", c.state);
        println!("  status  kernel: {:<28} ours: {}", c.kernel_status, c.engine_status);
        println!("  view    kernel: {:<28} ours: {}", c.kernel_view_md5, c.engine_view_md5);
        println!("  {}", if c.agree { "the kernel and our engine agree" } else { "DIFFERENT" });
        all_agree &= c.agree;
    }
    println!("verdict: {}", if all_agree { "PASS (the kernel loads the exported state as our engine does)" } else { "FAIL" });
    Ok(all_agree)
}
