//! The events of a run, as the oracle consumes them and a trace records them.
//!
//! Events are what an observer of the block layer and the users can see:
//! user operations submitted and acknowledged, disk requests completed,
//! crashes, reloads and the engine's reported state. Values are 64-bit
//! hashes of sector contents, shared (`Arc`) so that keeping an event is cheap.

use std::sync::Arc;

/// What a user operation addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Origin,
    Snapshot(usize),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Origin => write!(f, "origin"),
            Self::Snapshot(k) => write!(f, "snapshot {k}"),
        }
    }
}

/// The flags a user write carries: `REQ_PREFLUSH` (every write acknowledged
/// before it was submitted is durable once it is acknowledged) and `REQ_FUA`
/// (its own data is durable once it is acknowledged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserFlags {
    pub preflush: bool,
    pub fua: bool,
}

impl UserFlags {
    pub const PLAIN: Self = Self { preflush: false, fua: false };
}

impl std::fmt::Display for UserFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.preflush {
            write!(f, " preflush")?;
        }
        if self.fua {
            write!(f, " fua")?;
        }
        Ok(())
    }
}

/// A disk request's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskOp {
    Read,
    Write { preflush: bool, fua: bool },
    Flush,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// User operation `op` writes `values` (one per sector) from `sector`.
    Write { op: u64, target: Target, sector: u64, values: Arc<[u64]>, flags: UserFlags },
    /// User operation `op` reads `sectors` sectors from `sector`.
    Read { op: u64, target: Target, sector: u64, sectors: u64 },
    /// User operation `op` flushes `target`.
    Flush { op: u64, target: Target },
    /// A write or flush was acknowledged.
    Ack { op: u64, ok: bool },
    /// A read completed: its values, and whether its snapshot was still valid then.
    ReadDone { op: u64, values: Option<Arc<[u64]>>, snapshot_valid: bool },
    /// Disk `disk` (0 the origin, `k + 1` snapshot `k`'s COW) completed a request.
    Disk { disk: usize, request: u64, op: DiskOp, sector: u64, sectors: u64, ok: bool },
    /// The engine ran one piece of deferred work.
    Deferred,
    /// The engine reports a snapshot's state; `quiescent` when nothing is in
    /// flight (a failed exception may still be waiting its turn otherwise).
    Status { snapshot: usize, valid: bool, overflowed: bool, quiescent: bool, copies_max: u32 },
    /// Snapshot `snapshot` was handed to snapshot-merge and its merge started
    /// (again, after a crash): from now on its view is the origin's future.
    MergeStart { snapshot: usize },
    /// The merge ended: every exception merged (`ok`) or stopped on an error.
    MergeDone { snapshot: usize, ok: bool },
    /// The machine crashed.
    Crash,
    /// A clean shutdown: everything acknowledged is in the disks' caches and
    /// the engine is rebuilt from them. Nothing is lost, so nothing that the
    /// machine wrote may come back older (a `valid = 0` header included).
    CleanReload,
    /// Loading snapshot `snapshot` after a crash failed on a media error; it
    /// will be activated again. The writes the failed load issued were its
    /// own (a new COW's header, area 0 zeroed), not the snapshot's.
    LoadFailed { snapshot: usize },
    /// The engine was rebuilt from the crash images; which snapshots loaded valid.
    Reloaded { valid: Vec<bool> },
}

impl Event {
    /// A fixed encoding as words, for hashing a trace.
    pub fn encode(&self, out: &mut impl FnMut(u64)) {
        let target = |t: &Target| match t {
            Target::Origin => 0,
            Target::Snapshot(k) => 1 + *k as u64,
        };
        match self {
            Self::Write { op, target: t, sector, values, flags } => {
                [1, *op, target(t), *sector, values.len() as u64].into_iter().for_each(&mut *out);
                values.iter().copied().for_each(&mut *out);
                // Plain writes encode as they always did: their trace hashes stay.
                if *flags != UserFlags::PLAIN {
                    out(14 + u64::from(flags.fua) + 2 * u64::from(flags.preflush));
                }
            }
            Self::Read { op, target: t, sector, sectors } => [2, *op, target(t), *sector, *sectors].into_iter().for_each(out),
            Self::Flush { op, target: t } => [3, *op, target(t)].into_iter().for_each(out),
            Self::Ack { op, ok } => [4, *op, u64::from(*ok)].into_iter().for_each(out),
            Self::ReadDone { op, values, snapshot_valid } => {
                [5, *op, u64::from(*snapshot_valid), values.as_ref().map_or(u64::MAX, |v| v.len() as u64)].into_iter().for_each(&mut *out);
                values.iter().flat_map(|v| v.iter()).copied().for_each(out);
            }
            Self::Disk { disk, request, op, sector, sectors, ok } => {
                let kind = match op {
                    DiskOp::Read => 0,
                    DiskOp::Write { preflush, fua } => 1 + u64::from(*fua) + 2 * u64::from(*preflush),
                    DiskOp::Flush => 5,
                };
                [6, *disk as u64, *request, kind, *sector, *sectors, u64::from(*ok)].into_iter().for_each(out);
            }
            Self::Deferred => out(7),
            Self::Status { snapshot, valid, overflowed, quiescent, copies_max } => {
                [8, *snapshot as u64, u64::from(*valid), u64::from(*overflowed), u64::from(*quiescent), u64::from(*copies_max)]
                    .into_iter()
                    .for_each(out)
            }
            Self::Crash => out(9),
            Self::CleanReload => out(13),
            Self::LoadFailed { snapshot } => [18, *snapshot as u64].into_iter().for_each(out),
            Self::MergeStart { snapshot } => [11, *snapshot as u64].into_iter().for_each(out),
            Self::MergeDone { snapshot, ok } => [12, *snapshot as u64, u64::from(*ok)].into_iter().for_each(out),
            Self::Reloaded { valid } => {
                out(10);
                valid.iter().map(|&v| u64::from(v)).for_each(out);
            }
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Write { op, target, sector, values, flags } => write!(f, "op {op}: write {target} {sector}+{}{flags}", values.len()),
            Self::Read { op, target, sector, sectors } => write!(f, "op {op}: read {target} {sector}+{sectors}"),
            Self::Flush { op, target } => write!(f, "op {op}: flush {target}"),
            Self::Ack { op, ok } => write!(f, "op {op}: {}", if *ok { "acknowledged" } else { "failed" }),
            Self::ReadDone { op, values, snapshot_valid } => {
                let outcome = if values.is_some() { "read done" } else { "read failed" };
                write!(f, "op {op}: {outcome}{}", if *snapshot_valid { "" } else { " (snapshot invalid by then)" })
            }
            // Named as the cause line and the timeline name requests: `W3 on
            // cow0` is request 3 of COW 0 in its boot, a write.
            Self::Disk { disk, request, op, sector, sectors, ok } => {
                let device = if *disk == 0 { "origin".to_string() } else { format!("cow{}", disk - 1) };
                let (letter, kind) = match op {
                    DiskOp::Read => ('R', "read".to_string()),
                    DiskOp::Write { preflush, fua } => {
                        ('W', format!("write{}{}", if *preflush { "+preflush" } else { "" }, if *fua { "+fua" } else { "" }))
                    }
                    DiskOp::Flush => ('F', "flush".to_string()),
                };
                write!(f, "{letter}{request} on {device}: {kind} {sector}+{sectors} {}", if *ok { "ok" } else { "ERROR" })
            }
            Self::Deferred => write!(f, "engine work"),
            Self::Status { snapshot, valid, overflowed, .. } => {
                let state = if !valid {
                    "Invalid"
                } else if *overflowed {
                    "Overflow"
                } else {
                    "valid"
                };
                write!(f, "snapshot {snapshot} is {state}")
            }
            Self::Crash => write!(f, "CRASH"),
            Self::CleanReload => write!(f, "CLEAN RELOAD"),
            Self::LoadFailed { snapshot } => write!(f, "loading snapshot {snapshot} FAILED (media error); activating it again"),
            Self::MergeStart { snapshot } => write!(f, "merge of snapshot {snapshot} starts"),
            Self::MergeDone { snapshot, ok } => write!(f, "merge of snapshot {snapshot} {}", if *ok { "complete" } else { "FAILED" }),
            Self::Reloaded { valid } => write!(f, "reloaded; snapshots valid: {valid:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events read in words in every failure's story: each names its target.
    #[test]
    fn events_read_as_words() {
        let write = Event::Write { op: 3, target: Target::Snapshot(1), sector: 8, values: Arc::from([1, 2]), flags: UserFlags::PLAIN };
        assert_eq!(write.to_string(), "op 3: write snapshot 1 8+2");
        assert_eq!(Event::Flush { op: 4, target: Target::Origin }.to_string(), "op 4: flush origin");
        assert_eq!(Event::Read { op: 5, target: Target::Snapshot(0), sector: 0, sectors: 16 }.to_string(), "op 5: read snapshot 0 0+16");
    }
}
