//! The workloads the guest runs, in the words the judge needs: operations
//! numbered as the guest numbers them, grouped into the batches that run
//! at once, the labels every written sector carries, and what the
//! operations promise (flush requirements, when the COW overflows).

use engine::ChunkSize;
use engine::format::{Layout, Record};
use engine::store::StoreKind;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::scenario::{Scenario, all_in, scenarios_dir};
use sim::world::ScriptOp;

/// Sectors in a page of the guest's page cache: its writes reach the
/// device as the whole pages they touch (see `record.sh`).
pub const PAGE_SECTORS: u64 = 8;

/// One operation of a guest workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOp {
    Write {
        snapshot: bool,
        sector: u64,
        sectors: u64,
    },
    Flush {
        snapshot: bool,
    },
    Reload,
    /// Both devices flushed, then the snapshot merged into the origin by a
    /// `snapshot-merge` target until it is empty (always the last operation).
    Merge,
    /// Writes run at once (each its own operation).
    Parallel(Vec<(bool, u64, u64)>),
}

/// One numbered operation: the guest counts operations from 1, and the
/// writes of a parallel batch share their batch number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedOp {
    pub op: u64,
    pub batch: usize,
    /// Never `Parallel`: a batch is split into its writes.
    pub kind: GuestOp,
}

/// A workload the guest runs.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    /// Written into every label, so a sector of another workload is told apart.
    pub id: u64,
    pub chunk_sectors: u32,
    /// The store type of the snapshot's table.
    pub store: StoreKind,
    pub origin_sectors: u64,
    pub cow_sectors: u64,
    pub ops: Vec<GuestOp>,
    /// The COW is reused: an earlier snapshot of this origin left its
    /// records in area 0 and its copies in the data chunks, and only the
    /// first 4 KiB were zeroed since, as `lvcreate` does (see [`reused_cow`]).
    pub reused_cow: bool,
    /// Writes and flushes to the COW are held this long by a dm-delay
    /// target under the COW's slice (0: none), so that an origin write the
    /// kernel issues before a commit is durable completes, and is logged,
    /// before the commit's flush reaches the log.
    pub slow_cow_ms: u32,
}

/// What `lvcreate` zeroes of a new snapshot's COW: its first 4 KiB, and
/// nothing else (lvm2's `wipe_lv` with no `zero_sectors` given).
pub const LVCREATE_WIPE_BYTES: usize = 4096;

/// Added to a workload's number in the labels an earlier snapshot left on
/// a reused COW: they are never a label this workload may show.
pub const EARLIER_USER: u64 = 1_000_000;

impl Workload {
    /// The guest's text: one operation a line (see `record.sh`).
    pub fn script(&self) -> String {
        let t = |snapshot: bool| if snapshot { "s" } else { "o" };
        let mut text = String::new();
        for op in &self.ops {
            match op {
                GuestOp::Write { snapshot, sector, sectors } => text.push_str(&format!("w {} {sector} {sectors}\n", t(*snapshot))),
                GuestOp::Flush { snapshot } => text.push_str(&format!("f {}\n", t(*snapshot))),
                GuestOp::Reload => text.push_str("r\n"),
                GuestOp::Merge => text.push_str("m\n"),
                GuestOp::Parallel(writes) => {
                    text.push_str(&format!("P {}\n", writes.len()));
                    for (snapshot, sector, sectors) in writes {
                        text.push_str(&format!("w {} {sector} {sectors}\n", t(*snapshot)));
                    }
                }
            }
        }
        text
    }

    /// Every operation by its number, with its batch.
    pub fn numbered(&self) -> Vec<NumberedOp> {
        let mut out = Vec::new();
        let mut op = 0;
        for (batch, guest_op) in self.ops.iter().enumerate() {
            match guest_op {
                GuestOp::Parallel(writes) => {
                    for &(snapshot, sector, sectors) in writes {
                        op += 1;
                        out.push(NumberedOp { op, batch, kind: GuestOp::Write { snapshot, sector, sectors } });
                    }
                }
                other => {
                    op += 1;
                    out.push(NumberedOp { op, batch, kind: other.clone() });
                }
            }
        }
        debug_assert!(out.iter().all(|n| !matches!(n.kind, GuestOp::Parallel(_))), "a batch is split into its writes");
        out
    }

    /// The last operation that may have been issued while the guest waited
    /// for operation `acknowledged` to be marked: every operation of the
    /// batch after it (the guest issues a batch whole, and one batch at a time).
    pub fn issued_max(&self, acknowledged: u64) -> u64 {
        let numbered = self.numbered();
        let Some(next) = numbered.iter().find(|n| n.op > acknowledged) else { return acknowledged };
        numbered.iter().filter(|n| n.batch == next.batch).map(|n| n.op).max().unwrap_or(acknowledged)
    }

    /// Data chunks the COW has room for: those after the header and first
    /// area that are not metadata areas (the kernel's `prepare_exception`
    /// refuses a chunk once `next_free` reaches the device's end).
    pub fn data_chunks(&self) -> u64 {
        let chunk = u64::from(self.chunk_sectors);
        let layout = Layout::new(ChunkSize::from_sectors(self.chunk_sectors));
        (2..self.cow_sectors / chunk).filter(|&c| !layout.is_metadata_chunk(c)).count() as u64
    }

    /// The guest's block size on the origin and snapshot devices, in
    /// sectors: the largest power of two up to a page that divides the
    /// device's size, as the kernel's `set_init_blocksize()` picks it. The
    /// page cache reads and writes back whole blocks: 4 KiB pages on a
    /// device whose size is a multiple of 4 KiB, single sectors (each its
    /// own bio) on one that ends on an odd sector.
    pub fn block_sectors(&self) -> u64 {
        let mut block = 1;
        while block < PAGE_SECTORS && self.origin_sectors % (block * 2) == 0 {
            block *= 2;
        }
        debug_assert!(block.is_power_of_two() && self.origin_sectors % block == 0, "a block divides the device");
        block
    }

    /// The whole blocks ([`Self::block_sectors`]) of the origin or snapshot
    /// device that sectors `sector..sector + sectors` touch: what the
    /// guest's page cache reads in and writes back for them.
    pub fn blocks(&self, sector: u64, sectors: u64) -> std::ops::Range<u64> {
        let block = self.block_sectors();
        let end = ((sector + sectors).div_ceil(block) * block).min(self.origin_sectors);
        debug_assert!(sectors > 0 && sector < end, "a write touches at least one block");
        sector / block * block..end
    }

    /// Whether the writes of operations `1..=issued` need more exceptions
    /// than the COW holds: only then may a snapshot be invalidated. Each
    /// write counts the chunks of the whole pages it reaches the device as.
    pub fn overflows_by(&self, issued: u64) -> bool {
        let chunk = u64::from(self.chunk_sectors);
        let mut chunks = std::collections::BTreeSet::new();
        for n in self.numbered().iter().filter(|n| n.op <= issued) {
            if let GuestOp::Write { sector, sectors, .. } = n.kind {
                let blocks = self.blocks(sector, sectors);
                chunks.extend(blocks.start / chunk..=(blocks.end - 1) / chunk);
            }
        }
        chunks.len() as u64 > self.data_chunks()
    }

    /// What a completed flush of a device (operation `flush`) requires of
    /// each of its sectors: the smallest operation number whose label may
    /// be found there. The writes of one batch run at once, so any of the
    /// last batch that wrote a sector may be the one that stays.
    /// Writes in `failed` never happened and require nothing.
    pub fn flush_requirements(&self, flush: u64, snapshot: bool, failed: &[u64], required: &mut [u64]) {
        let numbered = self.numbered();
        let Some(flushed) = numbered.iter().find(|n| n.op == flush) else { return };
        let mut last: Vec<Option<(usize, u64)>> = vec![None; required.len()];
        for n in numbered.iter().filter(|n| n.batch < flushed.batch && !failed.contains(&n.op)) {
            if let GuestOp::Write { snapshot: target, sector, sectors } = n.kind {
                if target != snapshot {
                    continue;
                }
                for s in sector..sector + sectors {
                    let slot = &mut last[s as usize];
                    // Numbers grow with batches: a later batch replaces, one
                    // of the same batch keeps the smaller number.
                    *slot = match *slot {
                        Some((batch, op)) if batch == n.batch => Some((batch, op.min(n.op))),
                        _ => Some((n.batch, n.op)),
                    };
                }
            }
        }
        for (s, slot) in last.iter().enumerate() {
            if let Some((_, op)) = slot {
                required[s] = required[s].max(*op);
            }
        }
    }
}

/// A sector's label, as the guest writes it and the initial image holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub workload: u64,
    pub op: u64,
    pub snapshot: bool,
    pub sector: u64,
}

impl Label {
    /// The 512 bytes the guest's awk prints: the text padded with spaces and a newline.
    pub fn bytes(self) -> Vec<u8> {
        let text = format!("snapsim-label w={} op={} t={} s={}", self.workload, self.op, if self.snapshot { "s" } else { "o" }, self.sector);
        let mut bytes = format!("{text:<511}\n").into_bytes();
        bytes.truncate(512);
        debug_assert_eq!(bytes.len(), 512, "a label is one sector");
        bytes
    }

    /// The label a sector holds, if it holds one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes.get(..80)?).ok()?;
        let mut words = text.strip_prefix("snapsim-label ")?.split_whitespace();
        let mut field = |key: &str| words.next()?.strip_prefix(key).map(str::to_string);
        let workload = field("w=")?.parse().ok()?;
        let op = field("op=")?.parse().ok()?;
        let snapshot = match field("t=")?.as_str() {
            "s" => true,
            "o" => false,
            _ => return None,
        };
        let sector = field("s=")?.parse().ok()?;
        Some(Self { workload, op, snapshot, sector })
    }
}

/// The scenarios the kernel can run as they are: one snapshot, `P`, no
/// faults, no user flags, no mixed chunk sizes, a merge only as the last operation.
///
/// Each is numbered from its scenario's name (10,000 to 909,999), not its
/// place in the list, so that a new scenario leaves every other workload's
/// number, labels and recording directory as they were.
pub fn scenario_workloads() -> Vec<Workload> {
    let mut out: Vec<Workload> = Vec::new();
    for scenario in all_in(&scenarios_dir()).unwrap_or_default() {
        let mut id = name_number(&scenario.name);
        while out.iter().any(|w| w.id == id) {
            id = 10_000 + (id - 10_000 + 1) % 900_000;
        }
        if let Some(workload) = translate(&scenario, id) {
            out.push(workload);
        }
    }
    out
}

/// A workload number from a scenario's name (FNV-1a), in 10,000..910,000:
/// clear of the random (1,000+), reused-COW (200+) and other fixed numbers,
/// and of [`EARLIER_USER`] and above.
fn name_number(name: &str) -> u64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    10_000 + hash % 900_000
}

/// A scenario in the guest's words, or `None` if the kernel cannot run it
/// under this recording (faults, several snapshots, user flags, operations
/// after a merge).
pub fn translate(scenario: &Scenario, id: u64) -> Option<Workload> {
    let file = &scenario.file.shape;
    let store = file.store;
    let plain =
        file.snapshots == 1 && file.faults.is_empty() && !file.stale_cow && file.mixed_chunk_sectors.is_empty() && scenario.injections.is_empty();
    if !plain {
        return None;
    }
    let mut ops = Vec::new();
    for op in &scenario.ops {
        if ops.last() == Some(&GuestOp::Merge) && !matches!(op, ScriptOp::Wait | ScriptOp::Read { .. } | ScriptOp::Status) {
            return None;
        }
        match op {
            ScriptOp::Write { target, sector, sectors, flags } => {
                if flags.fua || flags.preflush {
                    return None;
                }
                ops.push(GuestOp::Write { snapshot: !matches!(target, model::event::Target::Origin), sector: *sector, sectors: *sectors });
            }
            ScriptOp::Flush { target } => ops.push(GuestOp::Flush { snapshot: !matches!(target, model::event::Target::Origin) }),
            ScriptOp::Reload => ops.push(GuestOp::Reload),
            // The guest takes no status between operations; the judge reads it at marks.
            ScriptOp::Read { .. } | ScriptOp::Wait | ScriptOp::Status => {}
            ScriptOp::Merge { .. } => ops.push(GuestOp::Merge),
            // A power cut is what the recording's crash states stand for, not an operation.
            ScriptOp::Crash => return None,
        }
    }
    Some(Workload {
        name: scenario.name.clone(),
        id,
        chunk_sectors: file.chunk_sectors,
        store,
        origin_sectors: file.origin_sectors(),
        cow_sectors: file.cow_sectors(),
        ops,
        reused_cow: false,
        slow_cow_ms: 0,
    })
}

/// A random workload: batches of four writes at once (three in four to the
/// origin), a flush of one device every few batches; chunk sizes 512 B to
/// 64 KiB, room for every chunk twice over, so several metadata areas fill;
/// with `merge`, the snapshot is merged at the end; with `overflow`, the
/// store is `PO` and the COW holds a quarter of the chunks, so that it
/// fills: snapshot writes then fail, origin writes invalidate it.
pub fn random_workload(seed: u64, id: u64, merge: bool, overflow: bool) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let chunk_sectors = [1u32, 2, 8, 32, 128][rng.random_range(0..5usize)];
    let chunk = u64::from(chunk_sectors);
    let origin_chunks = (2048 / chunk).clamp(16, 256);
    let origin_sectors = origin_chunks * chunk;
    let batches = rng.random_range(16..32);
    let mut ops = Vec::new();
    for batch in 0..batches {
        let writes = (0..4)
            .map(|_| {
                let sectors = rng.random_range(1..=chunk.min(16));
                let sector = rng.random_range(0..origin_sectors - sectors + 1);
                (rng.random_range(0..4) == 0, sector, sectors)
            })
            .collect();
        ops.push(GuestOp::Parallel(writes));
        if batch % 3 == 2 {
            ops.push(GuestOp::Flush { snapshot: rng.random_range(0..4) == 0 });
        }
    }
    if merge {
        ops.push(GuestOp::Merge);
    }
    let cow_chunks = if overflow { 2 + origin_chunks / 4 + 1 } else { 2 * origin_chunks + 8 + 2 * origin_chunks / 16 };
    let what = match (merge, overflow) {
        (true, _) => ", merged",
        (false, true) => ", PO filled",
        (false, false) => "",
    };
    Workload {
        name: format!("random, 4 writers, {} B chunks{what} (seed {seed})", chunk * 512),
        id,
        chunk_sectors,
        store: if overflow { StoreKind::PersistentOverflow } else { StoreKind::Persistent },
        origin_sectors,
        cow_sectors: cow_chunks * chunk,
        ops,
        reused_cow: false,
        slow_cow_ms: 0,
    }
}

/// Workloads on a reused COW, which can show K3: an earlier snapshot of
/// the origin left its records in area 0, `lvcreate` zeroed the first 4
/// KiB for a new one (chunks of 4 KiB and more, the sizes lvm2 allows, so
/// area 0 survives), and the new snapshot's header and zeroing of area 0
/// are plain writes until its first commit. The crash states at mark
/// `created` (and, after a reload, at the marks before the first commit)
/// are the ones that may keep the header and lose the zeroing.
pub fn reused_cow_workloads() -> Vec<Workload> {
    let write = |snapshot, sector, sectors| GuestOp::Write { snapshot, sector, sectors };
    let flush = |snapshot| GuestOp::Flush { snapshot };
    let workload = |id: u64, chunk_sectors: u32, origin_chunks: u64, ops: Vec<GuestOp>| {
        let chunk = u64::from(chunk_sectors);
        let layout = Layout::new(ChunkSize::from_sectors(chunk_sectors));
        // Room for the earlier snapshot's chunks, area 1 and a few more.
        let cow_chunks = 2 + origin_chunks.min(u64::from(layout.exceptions_per_area())) + 1 + 16;
        Workload {
            name: format!("reused COW, {} B chunks, wiped by lvcreate", chunk * 512),
            id,
            chunk_sectors,
            store: StoreKind::Persistent,
            origin_sectors: origin_chunks * chunk,
            cow_sectors: cow_chunks * chunk,
            ops,
            reused_cow: true,
            slow_cow_ms: 0,
        }
    };
    vec![
        // Area 0 full: 256 records of 4 KiB chunks.
        workload(
            200,
            8,
            256,
            vec![write(false, 0, 8), write(true, 100, 4), flush(false), write(false, 1000, 8), GuestOp::Reload, write(false, 2000, 16), flush(true)],
        ),
        // A reload before the first commit: the header and the zeroing are still in the cache.
        workload(201, 16, 128, vec![GuestOp::Reload, write(false, 0, 16), write(false, 520, 8), flush(false), write(true, 2040, 8)]),
        // 64 KiB chunks: the wipe zeroes only the first 4 KiB of the header chunk.
        workload(202, 128, 32, vec![write(false, 130, 4), write(true, 700, 8), flush(true), write(false, 4000, 8), flush(false)]),
    ]
}

/// Origin writes that fill four metadata areas of 1 KiB chunks (64
/// records an area), a reload, then writes over the same chunks and a few
/// new ones: a load that misses an area (or misplaces one) shows as chunks
/// copied twice. Not one of `kernel-crash`'s workloads: `kernel-mutants`
/// runs it.
pub fn reload_over_areas() -> Workload {
    let mut ops: Vec<GuestOp> = (0..50).map(|page| GuestOp::Write { snapshot: false, sector: page * 16, sectors: 8 }).collect();
    ops.push(GuestOp::Flush { snapshot: false });
    ops.push(GuestOp::Reload);
    ops.extend((0..50).map(|page| GuestOp::Write { snapshot: false, sector: page * 16 + 4, sectors: 4 }));
    ops.push(GuestOp::Write { snapshot: false, sector: 900, sectors: 8 });
    ops.push(GuestOp::Flush { snapshot: false });
    Workload {
        name: "reload over four areas, 1024 B chunks".into(),
        id: 300,
        chunk_sectors: 2,
        store: StoreKind::Persistent,
        origin_sectors: 1024,
        cow_sectors: 2 * 300,
        ops,
        reused_cow: false,
        slow_cow_ms: 0,
    }
}

/// `basic-cow` with the COW's writes and flushes held 50 ms: a kernel that
/// releases an origin write before the commit of its chunk's record is
/// durable has that write logged inside the commit's flush (see
/// [`Workload::slow_cow_ms`]), where the judge and both differentials see it.
pub fn slow_cow() -> Workload {
    let mut workload = scenario_workloads().into_iter().find(|w| w.name == "basic-cow").expect("scenarios/basic-cow.toml translates");
    workload.name = "basic-cow, COW writes held 50 ms".into();
    workload.id = 301;
    workload.slow_cow_ms = 50;
    workload
}

/// The records an earlier snapshot left in area 0 of a reused COW, in
/// their order there: one per origin chunk (as many as area 0 holds), the
/// last origin chunk first, each in the next data chunk from chunk 2 on.
/// Empty unless the workload reuses its COW.
pub fn earlier_records(workload: &Workload) -> Vec<Record> {
    if !workload.reused_cow {
        return Vec::new();
    }
    let chunk = u64::from(workload.chunk_sectors);
    let layout = Layout::new(ChunkSize::from_sectors(workload.chunk_sectors));
    let origin_chunks = workload.origin_sectors / chunk;
    let count = origin_chunks.min(u64::from(layout.exceptions_per_area()));
    let records: Vec<Record> = (0..count).map(|i| Record { old_chunk: origin_chunks - 1 - i, new_chunk: 2 + i }).collect();
    // Area 0's records name the data chunks between it and area 1.
    debug_assert!(records.iter().all(|r| !layout.is_metadata_chunk(r.new_chunk)), "an earlier record on a metadata chunk");
    debug_assert!(records.iter().all(|r| (r.new_chunk + 1) * chunk <= workload.cow_sectors), "an earlier record beyond the COW");
    records
}

/// The COW slice of a reused COW as `lvcreate` leaves it: the earlier
/// snapshot's header (valid, its chunk size), its records in area 0 and
/// its copies of the origin (labelled as the earlier user's) in the data
/// chunks; then the first 4 KiB zeroed.
fn reused_cow(workload: &Workload) -> Vec<u8> {
    let chunk = ChunkSize::from_sectors(workload.chunk_sectors);
    let sectors = u64::from(workload.chunk_sectors);
    let mut cow = vec![0u8; workload.cow_sectors as usize * 512];
    cow[..chunk.bytes()].copy_from_slice(&engine::format::DiskHeader::new(true, chunk).encode_chunk(chunk));
    let records = earlier_records(workload);
    let area = chunk.bytes();
    for (index, record) in records.iter().enumerate() {
        record.encode(&mut cow[area..area + chunk.bytes()], index);
        for j in 0..sectors {
            let label = Label { workload: workload.id + EARLIER_USER, op: 0, snapshot: false, sector: record.old_chunk * sectors + j };
            let at = ((record.new_chunk * sectors + j) * 512) as usize;
            cow[at..at + 512].copy_from_slice(&label.bytes());
        }
    }
    cow[..LVCREATE_WIPE_BYTES].fill(0);
    // The wipe leaves area 0 whole: the chunks are at least 4 KiB.
    assert!(chunk.bytes() >= LVCREATE_WIPE_BYTES, "lvm2 makes no chunk under 4 KiB");
    cow
}

/// The data disk before the workload: the origin slice labelled op 0, the
/// COW zeroed (or as an earlier snapshot and `lvcreate` left it).
pub fn initial_image(workload: &Workload) -> Vec<u8> {
    let bytes = ((workload.origin_sectors + workload.cow_sectors) * 512) as usize;
    let mut image = Vec::with_capacity(bytes);
    for sector in 0..workload.origin_sectors {
        image.extend(Label { workload: workload.id, op: 0, snapshot: false, sector }.bytes());
    }
    if workload.reused_cow {
        image.extend(reused_cow(workload));
    }
    image.resize(bytes, 0);
    debug_assert_eq!(image.len(), bytes, "the disk holds origin and COW");
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_workloads_are_numbered_by_name_uniquely() {
        let workloads = scenario_workloads();
        let ids: std::collections::BTreeSet<u64> = workloads.iter().map(|w| w.id).collect();
        assert_eq!(ids.len(), workloads.len(), "two translations share a number");
        assert!(ids.iter().all(|id| (10_000..910_000).contains(id)), "{ids:?}");
        let basic = workloads.iter().find(|w| w.name == "basic-cow").expect("basic-cow translates");
        assert_eq!(basic.id, name_number("basic-cow"), "a scenario's number depends on its name alone");
    }

    fn workload(ops: Vec<GuestOp>) -> Workload {
        Workload {
            name: "t".into(),
            id: 1,
            chunk_sectors: 8,
            store: StoreKind::Persistent,
            origin_sectors: 64,
            cow_sectors: 40,
            ops,
            reused_cow: false,
            slow_cow_ms: 0,
        }
    }

    #[test]
    fn labels_round_trip() {
        let label = Label { workload: 7, op: 12, snapshot: true, sector: 4095 };
        let bytes = label.bytes();
        assert_eq!(bytes.len(), 512);
        assert_eq!(Label::parse(&bytes), Some(label));
        assert_eq!(Label::parse(&[0; 512]), None);
    }

    #[test]
    fn a_flush_requires_any_write_of_the_last_batch_that_wrote_a_sector() {
        let w = workload(vec![
            GuestOp::Write { snapshot: false, sector: 0, sectors: 2 },
            GuestOp::Parallel(vec![(false, 1, 1), (false, 1, 2), (true, 1, 1)]),
            GuestOp::Flush { snapshot: false },
        ]);
        let mut required = vec![0; 64];
        w.flush_requirements(5, false, &[], &mut required);
        // Sector 0: op 1 alone; sector 1: op 2 or op 3 (one batch); sector 2: op 3.
        assert_eq!(&required[..4], &[1, 2, 3, 0]);
    }

    #[test]
    fn a_cow_overflows_only_when_the_issued_writes_need_more_chunks_than_it_holds() {
        // 5 chunks: header, area 0, three data chunks.
        let w = workload((0..4).map(|c| GuestOp::Write { snapshot: false, sector: c * 8, sectors: 1 }).collect());
        assert_eq!(w.data_chunks(), 3);
        assert!(!w.overflows_by(3));
        assert!(w.overflows_by(4));
        assert_eq!(w.issued_max(3), 4);
    }
}
