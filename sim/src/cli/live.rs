//! `snapsim apply` and `snapsim merge`: a live snapshot over real files.
//!
//! `apply` loads (or creates) the snapshot on the COW, replays a workload's
//! writes through the snapshot-origin and snapshot targets one at a time,
//! and prints the snapshot's status line. `merge` hands the snapshot's
//! exceptions to a snapshot-merge target and merges them into the origin,
//! offline. Both write their devices: run them on copies, not on a device a
//! kernel has in use.

use std::path::PathBuf;

use engine::io::{BlockDevice, CompletionQueue, FileDevice, OpenMode, WriteFlags, run_until_done};
use engine::store::{StoreConfig, StoreKind};
use engine::sync::Arc;
use engine::target::{MergeOutcome, Origin, OriginConfig, OriginDevice, Role, Snapshot, SnapshotDevice};

use super::CliError;
use super::workload::{self, Request, Target};

/// The devices and table arguments of a live snapshot.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// The origin device or file (written).
    #[arg(long)]
    pub origin: PathBuf,
    /// The COW device or file (written; a zeroed one becomes a new snapshot).
    #[arg(long)]
    pub cow: PathBuf,
    /// The table's chunk size in sectors (a COW header's overrides it).
    #[arg(long, value_name = "SECTORS")]
    pub chunk_size: Option<u32>,
    /// The store type: P or PO.
    #[arg(long, default_value = "P", value_parser = parse_store)]
    pub store: StoreKind,
    /// Most copies in flight before writes wait (0 = unlimited).
    #[arg(long, default_value_t = engine::target::DEFAULT_COW_THRESHOLD)]
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

/// Opens both devices read-write and loads (or creates) the snapshot.
pub fn open(args: &LiveArgs) -> Result<Live, CliError> {
    let queue = CompletionQueue::new();
    let open = |path: &PathBuf| {
        FileDevice::open(path, OpenMode::ReadWrite, &queue).map_err(|e| CliError::new(format!("cannot open {}: {e}", path.display())))
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
        (None, None) => return Err(CliError::new("loading the snapshot never completed")),
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

/// Replays `args.workload` through the live snapshot.
pub fn apply(args: &ApplyArgs) -> Result<Applied, CliError> {
    let requests = workload::load(&args.workload)?;
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
            None => return Err(CliError::new(format!("request {} never completed", index + 1))),
        }
    }
    // Make everything durable, as a clean `dmsetup remove` would leave it.
    for device in [live.origin.device(), live.snapshot.cow()] {
        run_until_done(&live.queue, |done| device.flush(done))
            .ok_or_else(|| CliError::new("flush never completed"))?
            .map_err(|e| CliError::new(format!("flush failed: {e}")))?;
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

/// Merges the snapshot on `args.cow` into `args.origin`.
pub fn merge(args: &LiveArgs) -> Result<Merged, CliError> {
    let live = open(args)?;
    let merging = live.origin.hand_over(&live.snapshot, Role::Merge);
    let outcome = run_until_done(&live.queue, |done| merging.start_merge(done)).ok_or_else(|| CliError::new("the merge never completed"))?;
    Ok(Merged { outcome, runs: merging.runs_merged(), status: merging.status() })
}
