//! `snapsim apply` and `snapsim merge`: a live snapshot over real files.
//!
//! `apply` loads (or creates) the snapshot on the COW, replays a workload's
//! writes through the snapshot-origin and snapshot targets one at a time,
//! and prints the snapshot's status line. `merge` hands the snapshot's
//! exceptions to a snapshot-merge target and merges them into the origin,
//! offline. Both write their devices: run them on copies, not on a device a
//! kernel has in use.
//!
//! Everything is checked before the first write: the workload (parsed and
//! bounded, every write inside the origin), the paths (origin and COW two
//! different files, neither compressed nor the workload itself) and, for
//! `merge`, the COW (it must hold a valid snapshot whose every exception
//! names a chunk of this origin). A refused command leaves both files as
//! they were.

use std::path::PathBuf;

use engine::io::{BlockDevice, CompletionQueue, FileDevice, OpenMode, WriteFlags, run_until_done};
use engine::store::{StoreConfig, StoreKind};
use engine::sync::Arc;
use engine::targets::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};

use super::CliError;
use super::devices::{check_device_path, check_not_same, open_read_only, read_header};
use super::paths::{check_not_an_input, check_not_compressed, same_file};
use super::workload::{self, Request, Target};

/// The devices and table arguments of a live snapshot.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// The origin device or file (written).
    #[arg(long)]
    pub origin: PathBuf,
    /// The COW device or file (written; `apply` makes a zeroed one a new snapshot, `merge` refuses it).
    #[arg(long)]
    pub cow: PathBuf,
    /// The table's chunk size in sectors (a COW header's overrides it).
    #[arg(long, value_name = "SECTORS")]
    pub chunk_size: Option<u32>,
    /// The store type: P or PO.
    #[arg(long, default_value = "P", value_parser = parse_store)]
    pub store: StoreKind,
    /// Most copies in flight before writes wait (0 = unlimited).
    #[arg(long, default_value_t = engine::targets::DEFAULT_COW_THRESHOLD)]
    pub cow_threshold: usize,
}

fn parse_store(name: &str) -> Result<StoreKind, String> {
    StoreKind::parse(name).ok_or_else(|| format!("unknown store type {name:?} (P or PO)"))
}

/// Options of `snapsim apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub live: LiveArgs,
    /// The workload: a text file of requests, or a vector's vector.json.
    pub workload: PathBuf,
}

/// A live snapshot over files.
pub struct Live {
    pub queue: Arc<CompletionQueue>,
    pub origin: Arc<Origin<FileDevice>>,
    pub snapshot: Arc<Snapshot<FileDevice>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("snapshot", &self.snapshot).finish()
    }
}

/// Refuses paths this command must not write: a compressed file, one file
/// named as both devices, a device that is also the workload.
fn check_paths(args: &LiveArgs, workload: Option<&PathBuf>) -> Result<(), CliError> {
    check_not_compressed("--origin", &args.origin)?;
    check_not_compressed("--cow", &args.cow)?;
    if same_file(&args.origin, &args.cow) {
        return Err(engine::StoreError::CowIsOrigin.into());
    }
    if let Some(workload) = workload {
        check_not_an_input("--origin", &args.origin, &[("the workload", workload)])?;
        check_not_an_input("--cow", &args.cow, &[("the workload", workload)])?;
    }
    Ok(())
}

/// Opens both devices read-write and loads (or creates) the snapshot.
pub fn open(args: &LiveArgs) -> Result<Live, CliError> {
    check_paths(args, None)?;
    let queue = CompletionQueue::new();
    let open = |path: &PathBuf| {
        check_device_path(path)?;
        FileDevice::open(path, OpenMode::ReadWrite, &queue).map_err(|e| CliError::bad_input(format!("cannot open {}: {e}", path.display())))
    };
    let origin_dev = Arc::new(open(&args.origin)?);
    let cow = Arc::new(open(&args.cow)?);
    let origin = Origin::new(origin_dev, queue.clone(), OriginConfig { cow_threshold: args.cow_threshold, ..OriginConfig::default() });
    let config = StoreConfig { kind: args.store, chunk_sectors: args.chunk_size, ..StoreConfig::default() };
    let mut refused = None;
    let created = run_until_done(&queue, |done| {
        if let Err(error) = origin.create_snapshot(cow, config, done) {
            refused = Some(error);
        }
    });
    let snapshot = match (refused, created) {
        (Some(error), _) => return Err(error.into()),
        (None, Some(result)) => result?,
        (None, None) => return Err(CliError::failed("loading the snapshot never completed")),
    };
    Ok(Live { queue, origin, snapshot })
}

/// Figures of an applied workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub requests: usize,
    pub failed: usize,
    pub first_failure: Option<String>,
    pub status: String,
}

impl Applied {
    /// Why this run is a failure on the data (exit 1), if it is: requests
    /// that failed, or a snapshot that went `Invalid` or `Overflow`.
    pub fn failure(&self) -> Option<String> {
        if self.failed > 0 {
            return Some(format!("{} of {} requests failed", self.failed, self.requests));
        }
        matches!(self.status.as_str(), "Invalid" | "Overflow").then(|| format!("the snapshot is {}", self.status))
    }
}

/// Replays `args.workload` through the live snapshot.
pub fn apply(args: &ApplyArgs) -> Result<Applied, CliError> {
    let requests = workload::load(&args.workload)?;
    check_paths(&args.live, Some(&args.workload))?;
    {
        let queue = CompletionQueue::new();
        let origin = open_read_only(&args.live.origin, &queue)?;
        workload::check_fits(&requests, origin.size_sectors()).map_err(|e| e.context(format!("workload {}", args.workload.display())))?;
    }
    let live = open(&args.live)?;
    let origin_device = OriginDevice::new(Arc::clone(&live.origin));
    let snapshot_device = SnapshotDevice::new(Arc::clone(&live.snapshot));
    let mut applied = Applied::default();
    for (index, request) in requests.iter().enumerate() {
        let result = match request {
            Request::Write { target, sector, sectors, tag } => {
                let data = workload::write_data(index, *sectors, tag.as_deref());
                run_until_done(&live.queue, |done| match target {
                    Target::Origin => origin_device.write(*sector, data, WriteFlags::PLAIN, done),
                    Target::Snapshot => snapshot_device.write(*sector, data, WriteFlags::PLAIN, done),
                })
            }
            Request::Flush { target } => run_until_done(&live.queue, |done| match target {
                Target::Origin => origin_device.flush(done),
                Target::Snapshot => snapshot_device.flush(done),
            }),
        };
        applied.requests += 1;
        match result {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                applied.failed += 1;
                applied.first_failure.get_or_insert_with(|| format!("request {}: {error}", index + 1));
            }
            None => return Err(CliError::failed(format!("request {} never completed", index + 1))),
        }
    }
    // Make everything durable, as a clean `dmsetup remove` would leave it.
    for device in [live.origin.device(), live.snapshot.cow()] {
        run_until_done(&live.queue, |done| device.flush(done))
            .ok_or_else(|| CliError::failed("flush never completed"))?
            .map_err(|e| CliError::failed(format!("flush failed: {e}")))?;
    }
    applied.status = live.snapshot.status();
    Ok(applied)
}

/// Figures of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub outcome: MergeOutcome,
    pub runs: u64,
    pub status: String,
}

/// Refuses a COW that cannot be merged into this origin, reading both
/// read-only: no snapshot on it (a zeroed COW would otherwise become a new,
/// empty snapshot), an invalid snapshot (the kernel refuses to merge it), or
/// an exception for a chunk past the origin's end.
fn check_mergeable(args: &LiveArgs) -> Result<(), CliError> {
    let queue = CompletionQueue::new();
    let origin = open_read_only(&args.origin, &queue)?;
    let cow = Arc::new(open_read_only(&args.cow, &queue)?);
    check_not_same(&args.origin, &origin, &args.cow, &cow)?;
    if read_header(&queue, &cow)?.magic == 0 {
        return Err(CliError::bad_input(format!("--cow {}: zero magic, no snapshot on it: nothing to merge", args.cow.display())));
    }
    let config = StoreConfig { kind: args.store, chunk_sectors: args.chunk_size, ..StoreConfig::default() };
    let loaded = engine::store::load_blocking(&queue, Arc::clone(&cow), origin.logical_block_bytes(), config)?;
    if loaded.outcome == engine::store::LoadOutcome::Invalid {
        // The data's state, not a wrong invocation: as `view` of it, exit 1.
        return Err(CliError::failed(format!("--cow {}: the snapshot is invalid: it cannot be merged (nothing was written)", args.cow.display())));
    }
    check_exceptions_fit(&args.cow, &args.origin, origin.size_sectors(), &loaded)
}

/// Refuses a COW with an exception for a chunk past the origin's end (a
/// chunk partly past it is served and merged clipped, as in the kernel):
/// the COW is another origin's snapshot, and `view` would drop, `merge`
/// would write past the end.
pub fn check_exceptions_fit(
    cow: &std::path::Path,
    origin: &std::path::Path,
    origin_sectors: u64,
    loaded: &engine::store::Loaded<crate::devices::Opened>,
) -> Result<(), CliError> {
    let origin_chunks = origin_sectors.div_ceil(u64::from(loaded.store.chunk_size().sectors()));
    if let Some((old_chunk, _)) = loaded.exceptions.iter().find(|&(old, _)| old >= origin_chunks) {
        return Err(CliError::bad_input(format!(
            "--cow {}: an exception for origin chunk {old_chunk}, past the end of the {origin_sectors}-sector origin {}: is this the snapshot of another origin?",
            cow.display(),
            origin.display()
        )));
    }
    Ok(())
}

/// Merges the snapshot on `args.cow` into `args.origin`.
pub fn merge(args: &LiveArgs) -> Result<Merged, CliError> {
    check_paths(args, None)?;
    check_mergeable(args)?;
    let live = open(args)?;
    let merging = live.origin.hand_over(&live.snapshot, Role::Merge);
    let outcome = run_until_done(&live.queue, |done| merging.start_merge(done)).ok_or_else(|| CliError::failed("the merge never completed"))?;
    Ok(Merged { outcome, runs: merging.runs_merged(), status: merging.status() })
}
