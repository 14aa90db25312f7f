//! Swarm testing: the seed draws the run's knobs, so every seed explores a
//! different configuration, and the run prints them first.

use engine::store::StoreKind;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::disk::FaultRates;

/// Relative weights of the operations the workload submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub origin_write: u32,
    pub snapshot_write: u32,
    pub snapshot_read: u32,
    pub flush: u32,
}

/// Everything a seed decides about a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    pub chunk_sectors: u32,
    /// The origin's whole chunks of `chunk_sectors`; see `origin_tail_sectors`.
    pub origin_chunks: u64,
    /// Each COW's whole chunks of `chunk_sectors`; see `cow_tail_sectors`.
    pub cow_chunks: u64,
    /// Sectors of the origin past its last whole chunk (0 to `chunk_sectors - 1`):
    /// an origin that ends mid-chunk, as real ones do. The last chunk's copy
    /// is clipped at the origin's end.
    pub origin_tail_sectors: u64,
    /// Sectors of each COW past its last whole chunk, which the store never
    /// uses (the kernel counts whole chunks only).
    pub cow_tail_sectors: u64,
    pub snapshots: usize,
    pub store: StoreKind,
    pub mix: Mix,
    pub faults: FaultRates,
    pub queue_depth: usize,
    pub cow_threshold: usize,
    pub crashes: u32,
    pub operations: u64,
    /// Each snapshot's chunk size when they differ (each at most
    /// `chunk_sectors`); empty when every snapshot uses `chunk_sectors`.
    pub mixed_chunk_sectors: Vec<u32>,
    /// The COW devices are reused: past their header and first metadata
    /// area (which are wiped) they hold an old snapshot's records.
    pub stale_cow: bool,
    /// With `stale_cow`, only the header is wiped: area 0 holds stale
    /// records too, so crash states can reach kernel behaviour K3.
    /// Drawn by the swarm only in runs with no crash (a live crash into K3
    /// would load garbage), which then reload cleanly before the first
    /// commit and halfway through.
    pub stale_area_zero: bool,
    /// Random writes carrying REQ_FUA, and REQ_PREFLUSH, per thousand.
    pub fua_per_mille: u32,
    pub preflush_per_mille: u32,
    /// The random workload hands snapshot 0 to snapshot-merge once this
    /// many operations have been submitted (and the machine is quiet), then
    /// goes on writing through the merge. None: no merge.
    pub merge_after: Option<u64>,
}

impl Knobs {
    /// A quiet machine for tests written with the world's verbs: `snapshots`
    /// `P` snapshots of `chunk_sectors`-sector chunks on a COW of
    /// `cow_chunks` chunks each, over an origin of `origin_chunks` chunks;
    /// no faults, no random operations, no crashes but the ones asked for,
    /// 64 requests in flight at most, the kernel's copy throttle.
    pub fn plain(chunk_sectors: u32, origin_chunks: u64, cow_chunks: u64, snapshots: usize) -> Self {
        Knobs {
            chunk_sectors,
            origin_chunks,
            cow_chunks,
            origin_tail_sectors: 0,
            cow_tail_sectors: 0,
            snapshots,
            store: StoreKind::Persistent,
            mix: Mix { origin_write: 1, snapshot_write: 0, snapshot_read: 0, flush: 0 },
            faults: FaultRates::default(),
            queue_depth: 64,
            cow_threshold: engine::targets::DEFAULT_COW_THRESHOLD,
            crashes: 0,
            operations: 0,
            mixed_chunk_sectors: Vec::new(),
            stale_cow: false,
            stale_area_zero: false,
            fua_per_mille: 0,
            preflush_per_mille: 0,
            merge_after: None,
        }
    }

    /// Snapshot `k`'s chunk size in sectors.
    pub fn snapshot_chunk_sectors(&self, k: usize) -> u32 {
        self.mixed_chunk_sectors.get(k).copied().unwrap_or(self.chunk_sectors)
    }

    /// Sectors of the origin.
    pub fn origin_sectors(&self) -> u64 {
        self.origin_chunks * u64::from(self.chunk_sectors) + self.origin_tail_sectors
    }

    /// Sectors of each COW.
    pub fn cow_sectors(&self) -> u64 {
        self.cow_chunks * u64::from(self.chunk_sectors) + self.cow_tail_sectors
    }

    /// Whether a device ends mid-chunk (for the largest chunk size).
    pub fn irregular(&self) -> bool {
        self.origin_tail_sectors + self.cow_tail_sectors > 0
    }

    /// Draws the knobs from the run's `knobs` stream.
    pub fn draw(rng: &mut ChaCha8Rng) -> Self {
        Self::draw_biased(rng, &SwarmBias::default())
    }

    /// Draws the knobs with the yes/no features at `bias`'s odds (the
    /// directed swarm). Every draw takes the same values from the stream
    /// whatever the odds, so the plain bias draws exactly [`Self::draw`]'s knobs.
    pub fn draw_biased(rng: &mut ChaCha8Rng, bias: &SwarmBias) -> Self {
        let mut knobs = Self::draw_before_merges(rng, bias);
        // Drawn after every other knob, so that those stay what they were.
        knobs.merge_after = rng.random_bool(0.2).then(|| rng.random_range(1..knobs.operations));
        knobs.draw_geometry(rng);
        knobs.draw_stale_area_zero(rng);
        knobs
    }

    /// Drawn after everything else: in half the seeds that reuse COWs and
    /// never crash, area 0 is stale too (only the header wiped, as a 4 KiB
    /// wipe leaves it under 4 KiB chunks), and the run reloads cleanly
    /// before its first commit and halfway through, where a new snapshot
    /// that did not zero area 0 would load the earlier snapshot's records.
    /// (A live crash before the first commit may load them legitimately:
    /// K3, which only `explore` judges.)
    fn draw_stale_area_zero(&mut self, rng: &mut ChaCha8Rng) {
        if self.stale_cow && self.crashes == 0 && rng.random_bool(0.5) {
            self.stale_area_zero = true;
        }
    }

    /// Devices as irregular as real ones, drawn last (every earlier knob
    /// stays what it was): in about one seed in three whose chunks are
    /// over a sector, an origin that ends mid-chunk (a last chunk of one
    /// sector in a quarter of them; under mixed chunk sizes, sometimes an
    /// origin shorter than one chunk of the largest snapshot), and a COW
    /// that ends mid-chunk, as a COW sized in extents or bytes does.
    fn draw_geometry(&mut self, rng: &mut ChaCha8Rng) {
        let chunk = u64::from(self.chunk_sectors);
        if chunk == 1 || !rng.random_bool(Self::IRREGULAR_ODDS) {
            return;
        }
        self.origin_tail_sectors = if rng.random_bool(0.25) { 1 } else { rng.random_range(1..chunk) };
        if !self.mixed_chunk_sectors.is_empty() && rng.random_bool(0.2) {
            self.origin_chunks = 0;
        }
        self.cow_tail_sectors = if rng.random_bool(0.5) { rng.random_range(1..chunk) } else { 0 };
        debug_assert!(self.origin_sectors() > 0 && self.origin_tail_sectors < chunk, "an irregular origin has at least one sector");
        debug_assert!(self.cow_tail_sectors < chunk, "a COW's tail is less than a chunk");
    }

    /// The odds that a seed whose chunks are over a sector draws an irregular geometry.
    pub const IRREGULAR_ODDS: f64 = 0.35;

    fn draw_before_merges(rng: &mut ChaCha8Rng, bias: &SwarmBias) -> Self {
        let odds = |p: f64| p.clamp(SwarmBias::ODDS_MIN, 1.0 - SwarmBias::ODDS_MIN);
        let chunk_sectors = 1u32 << rng.random_range(0..=4u32);
        let origin_chunks = rng.random_range(16..=96u64);
        // Sometimes too small, so that P invalidates and PO overflows.
        let cow_chunks = if rng.random_bool(odds(bias.odds[0])) { rng.random_range(4..=24u64) } else { origin_chunks * 2 + 16 };
        let faulty = rng.random_bool(odds(bias.odds[1]));
        let rate = |rng: &mut ChaCha8Rng| if faulty { rng.random_range(0..=20u32) as f64 / 1000.0 } else { 0.0 };
        let snapshots = rng.random_range(1..=3usize);
        let bits = chunk_sectors.trailing_zeros();
        let mixed_chunk_sectors = if snapshots > 1 && bits > 0 && rng.random_bool(odds(bias.odds[2])) {
            (0..snapshots).map(|_| 1 << rng.random_range(0..=bits)).collect()
        } else {
            Vec::new()
        };
        Knobs {
            chunk_sectors,
            mixed_chunk_sectors,
            origin_chunks,
            cow_chunks,
            origin_tail_sectors: 0,
            cow_tail_sectors: 0,
            snapshots,
            store: if rng.random_bool(1.0 - odds(bias.odds[3])) { StoreKind::Persistent } else { StoreKind::PersistentOverflow },
            mix: Mix {
                origin_write: rng.random_range(1..=10),
                snapshot_write: rng.random_range(0..=5),
                snapshot_read: rng.random_range(1..=8),
                flush: rng.random_range(0..=2),
            },
            faults: FaultRates { read_error: rate(rng), write_error: rate(rng), flush_error: rate(rng) },
            queue_depth: rng.random_range(1..=16usize),
            cow_threshold: [0, 1, 2, 4, 2048][rng.random_range(0..5usize)],
            crashes: rng.random_range(0..=3u32),
            operations: rng.random_range(100..=600u64),
            stale_cow: rng.random_bool(odds(bias.odds[4])),
            stale_area_zero: false,
            // Drawn last, so that every earlier knob stays what it was.
            fua_per_mille: [0, 0, 50, 300][rng.random_range(0..4usize)],
            preflush_per_mille: [0, 0, 30, 200][rng.random_range(0..4usize)],
            merge_after: None,
        }
    }
}

/// The odds the swarm draws its yes/no knob features with: the plain
/// swarm's by default; the directed swarm shifts them toward the features
/// of the seeds that reached the rarest coverage marks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwarmBias {
    /// One per [`SwarmBias::FEATURES`] entry.
    pub odds: [f64; 5],
}

impl Default for SwarmBias {
    fn default() -> Self {
        Self { odds: [0.2, 0.25, 0.3, 0.5, 0.2] }
    }
}

impl std::fmt::Display for SwarmBias {
    /// As `--bias` takes it: the odds in [`SwarmBias::FEATURES`] order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let odds: Vec<String> = self.odds.iter().map(|p| format!("{p}")).collect();
        f.write_str(&odds.join(","))
    }
}

impl std::str::FromStr for SwarmBias {
    type Err = String;

    /// Five odds, comma-separated, each from `ODDS_MIN` to `1 - ODDS_MIN`.
    fn from_str(text: &str) -> Result<Self, String> {
        let odds: Vec<f64> =
            text.split(',').map(|p| p.trim().parse::<f64>().map_err(|_| format!("{p:?} is not a number"))).collect::<Result<_, _>>()?;
        let odds: [f64; 5] =
            odds.try_into().map_err(|odds: Vec<f64>| format!("{} odds: one per feature ({}) is needed", odds.len(), Self::FEATURES.join(", ")))?;
        if let Some(bad) = odds.iter().find(|p| !(Self::ODDS_MIN..=1.0 - Self::ODDS_MIN).contains(*p)) {
            return Err(format!("odds {bad}: must be {}..={}", Self::ODDS_MIN, 1.0 - Self::ODDS_MIN));
        }
        Ok(Self { odds })
    }
}

impl SwarmBias {
    /// The features, in `odds` order.
    pub const FEATURES: [&str; 5] = ["small-cow", "faulty", "mixed-chunk-sizes", "po-store", "stale-cow"];
    /// No feature is ever certain or impossible: a draw always takes one value from the stream.
    pub const ODDS_MIN: f64 = 0.05;
}

impl Knobs {
    /// Which of [`SwarmBias::FEATURES`] these knobs have.
    pub fn features(&self) -> [bool; 5] {
        [
            // The small COW's draw: 4 to 24 chunks (an ample one has at least 48).
            self.cow_chunks <= 24,
            self.faults.read_error + self.faults.write_error + self.faults.flush_error > 0.0,
            !self.mixed_chunk_sectors.is_empty(),
            self.store == StoreKind::PersistentOverflow,
            self.stale_cow,
        ]
    }
}

/// A device's sectors past its last whole chunk, as the knobs line says them.
fn tail(sectors: u64) -> String {
    if sectors == 0 { String::new() } else { format!(" + {sectors} sector(s)") }
}

impl std::fmt::Display for Knobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.mix;
        write!(
            f,
            "chunk {} sectors{}, origin {} chunks{}, {} snapshot(s) of {} chunks{}, store {}, mix origin-write {} / snapshot-write {} / snapshot-read {} / flush {}, faults read {} write {} flush {}, queue depth {}, cow threshold {}, crashes {}, {} operations{}{}",
            self.chunk_sectors,
            if self.mixed_chunk_sectors.is_empty() { String::new() } else { format!(" (snapshots {:?})", self.mixed_chunk_sectors) },
            self.origin_chunks,
            tail(self.origin_tail_sectors),
            self.snapshots,
            self.cow_chunks,
            tail(self.cow_tail_sectors),
            self.store.table_name(),
            m.origin_write,
            m.snapshot_write,
            m.snapshot_read,
            m.flush,
            self.faults.read_error,
            self.faults.write_error,
            self.faults.flush_error,
            self.queue_depth,
            self.cow_threshold,
            self.crashes,
            self.operations,
            match (self.stale_cow, self.stale_area_zero) {
                (true, true) => ", stale COW (area 0 too)",
                (true, false) => ", stale COW",
                _ => "",
            },
            if self.fua_per_mille + self.preflush_per_mille > 0 {
                format!(", writes with FUA {}‰ and PREFLUSH {}‰", self.fua_per_mille, self.preflush_per_mille)
            } else {
                String::new()
            }
        )?;
        if let Some(after) = self.merge_after {
            write!(f, ", merges snapshot 0 after {after} operations")?;
        }
        Ok(())
    }
}
