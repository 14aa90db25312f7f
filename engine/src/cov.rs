//! Coverage marks: named situations that matter for crash consistency,
//! recorded when the engine reaches them, so that a run, an exploration or
//! a night's soak can say what it reached (rust-analyzer's `cov_mark`,
//! Antithesis' "sometimes" assertions).
//!
//! [`hit`] compiles to nothing unless the `coverage-marks` feature is on
//! (the simulation harness turns it on; a production build never does).
//! With it, each thread counts its own hits: the harness runs one world per
//! thread, takes the counts at the end of a run with [`take`], and never
//! lets them change what the run does.

/// A situation the engine can be in. Each says why it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    CommitBatched,
    CommitQueuedBehindAreaWrite,
    AreaFilled,
    CommitQueuedBehindZeroing,
    AreaWriteFailed,
    NextAreaZeroingFailed,
    CommitOfFailedCopy,
    HeaderInvalidated,
    HeaderInvalidationFailed,
    AllocationSkippedMetadata,
    AllocationNoSpace,
    LoadCreatedNewCow,
    LoadFoundInvalidHeader,
    LoadPartialLastArea,
    LoadAreaReadError,
    LoadStoppedAtFullAreaBoundary,
    OriginWriteWaitsForCommit,
    OriginWriteJoinsPendingException,
    OriginWriteSplit,
    SnapshotWriteWholeChunk,
    SnapshotWriteNeedsCopy,
    CopyClippedAtOriginEnd,
    ReadPastLastWholeChunk,
    ThrottleParked,
    CopyReadError,
    CopyWriteError,
    CopyFinishedOutOfOrder,
    ReadRacesCopy,
    CommitWaitsForTrackedRead,
    OriginWriteWaitsForInvalidSnapshotRead,
    OverflowRefusedWrite,
    OverflowWithCopiesInFlight,
    InvalidatedWithCommitsQueued,
    ReadOfInvalidSnapshot,
    MergeStarted,
    MergeRunOfSeveralChunks,
    MergeWriteWaitsForRun,
    MergeCopyError,
    MergeCommitFailed,
}

impl Mark {
    /// Every engine mark, in declaration order.
    pub const ALL: [Mark; 39] = [
        Mark::CommitBatched,
        Mark::CommitQueuedBehindAreaWrite,
        Mark::AreaFilled,
        Mark::CommitQueuedBehindZeroing,
        Mark::AreaWriteFailed,
        Mark::NextAreaZeroingFailed,
        Mark::CommitOfFailedCopy,
        Mark::HeaderInvalidated,
        Mark::HeaderInvalidationFailed,
        Mark::AllocationSkippedMetadata,
        Mark::AllocationNoSpace,
        Mark::LoadCreatedNewCow,
        Mark::LoadFoundInvalidHeader,
        Mark::LoadPartialLastArea,
        Mark::LoadAreaReadError,
        Mark::LoadStoppedAtFullAreaBoundary,
        Mark::OriginWriteWaitsForCommit,
        Mark::OriginWriteJoinsPendingException,
        Mark::OriginWriteSplit,
        Mark::SnapshotWriteWholeChunk,
        Mark::SnapshotWriteNeedsCopy,
        Mark::CopyClippedAtOriginEnd,
        Mark::ReadPastLastWholeChunk,
        Mark::ThrottleParked,
        Mark::CopyReadError,
        Mark::CopyWriteError,
        Mark::CopyFinishedOutOfOrder,
        Mark::ReadRacesCopy,
        Mark::CommitWaitsForTrackedRead,
        Mark::OriginWriteWaitsForInvalidSnapshotRead,
        Mark::OverflowRefusedWrite,
        Mark::OverflowWithCopiesInFlight,
        Mark::InvalidatedWithCommitsQueued,
        Mark::ReadOfInvalidSnapshot,
        Mark::MergeStarted,
        Mark::MergeRunOfSeveralChunks,
        Mark::MergeWriteWaitsForRun,
        Mark::MergeCopyError,
        Mark::MergeCommitFailed,
    ];

    /// The mark's name, as tables and scenario files write it.
    pub fn name(self) -> &'static str {
        self.describe().0
    }

    /// Why the situation matters, in one line.
    pub fn why(self) -> &'static str {
        self.describe().1
    }

    /// The mark called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Mark::CommitBatched => ("commit-batched", "several exceptions share one area write: a crash loses or keeps them together"),
            Mark::CommitQueuedBehindAreaWrite => {
                ("commit-queued-behind-area-write", "a commit arrives while the area is being written: it must wait, in order")
            }
            Mark::AreaFilled => ("area-filled", "an area fills: the next one is zeroed before the full one is written"),
            Mark::CommitQueuedBehindZeroing => {
                ("commit-queued-behind-zeroing", "a commit arrives while the next area is being zeroed: the window of Z13")
            }
            Mark::AreaWriteFailed => ("area-write-failed", "a metadata write fails: the snapshot must invalidate, never ack"),
            Mark::NextAreaZeroingFailed => ("next-area-zeroing-failed", "zeroing the next area fails: the full area must not be written (Z14)"),
            Mark::CommitOfFailedCopy => ("commit-of-failed-copy", "an exception whose copy failed reaches the store: it invalidates (Z5)"),
            Mark::HeaderInvalidated => ("header-invalidated", "the header's valid flag is cleared: the write a crash may lose (K1)"),
            Mark::HeaderInvalidationFailed => {
                ("header-invalidation-failed", "the invalid header cannot be written: the snapshot stays invalid in memory")
            }
            Mark::AllocationSkippedMetadata => ("allocation-skipped-metadata", "the allocator steps over a metadata area (Z1's chunk)"),
            Mark::AllocationNoSpace => ("allocation-no-space", "the COW is full: P invalidates, PO refuses the write"),
            Mark::LoadCreatedNewCow => ("load-created-new-cow", "a zero COW is formatted: header first, then area 0 zeroed"),
            Mark::LoadFoundInvalidHeader => ("load-found-invalid-header", "a COW whose header says invalid loads as Invalid (I8)"),
            Mark::LoadPartialLastArea => ("load-partial-last-area", "the last area is partly full: it must be kept for new records (Z2)"),
            Mark::LoadAreaReadError => ("load-area-read-error", "an area read fails during load: the load fails after all reads finish"),
            Mark::LoadStoppedAtFullAreaBoundary => {
                ("load-stopped-at-full-area-boundary", "the last area is exactly full: the load reads the zeroed next one (Z13)")
            }
            Mark::OriginWriteWaitsForCommit => {
                ("origin-write-waits-for-commit", "an origin write is held until every snapshot committed the chunk (I1)")
            }
            Mark::OriginWriteJoinsPendingException => {
                ("origin-write-joins-pending-exception", "a second write to a chunk being copied joins the pending exception")
            }
            Mark::OriginWriteSplit => ("origin-write-split", "an origin write is split at chunk boundaries (mixed chunk sizes)"),
            Mark::SnapshotWriteWholeChunk => ("snapshot-write-whole-chunk", "a snapshot write covers its chunk: no copy, the data goes to the COW"),
            Mark::SnapshotWriteNeedsCopy => ("snapshot-write-needs-copy", "a partial snapshot write copies the chunk first"),
            Mark::CopyClippedAtOriginEnd => {
                ("copy-clipped-at-origin-end", "the origin ends mid-chunk: the last chunk's copy stops at the origin's end")
            }
            Mark::ReadPastLastWholeChunk => {
                ("read-past-last-whole-chunk", "a snapshot read reaches the partial chunk past the origin's last whole one")
            }
            Mark::ThrottleParked => ("throttle-parked", "a write waits at the COW threshold (the 2019 throttle deadlock's shape)"),
            Mark::CopyReadError => ("copy-read-error", "a copy cannot read the origin: the exception fails, the snapshot invalidates"),
            Mark::CopyWriteError => ("copy-write-error", "a copy cannot write the COW: the exception fails, the snapshot invalidates"),
            Mark::CopyFinishedOutOfOrder => ("copy-finished-out-of-order", "a later copy finishes first: the sequencer holds it (Z3)"),
            Mark::ReadRacesCopy => ("read-races-copy", "a snapshot read hits a chunk whose copy is in flight (Z19)"),
            Mark::CommitWaitsForTrackedRead => ("commit-waits-for-tracked-read", "a commit waits for reads of the origin chunk to drain"),
            Mark::OriginWriteWaitsForInvalidSnapshotRead => (
                "origin-write-waits-for-invalid-snapshot-read",
                "with the kernel-patches series, an origin write waits for reads an invalidated snapshot still has in flight (K2)",
            ),
            Mark::OverflowRefusedWrite => ("overflow-refused-write", "a PO snapshot refuses a write for space and reports Overflow"),
            Mark::OverflowWithCopiesInFlight => ("overflow-with-copies-in-flight", "a PO snapshot fills while other copies are still in flight"),
            Mark::InvalidatedWithCommitsQueued => ("invalidated-with-commits-queued", "a snapshot invalidates while commits wait: each must fail"),
            Mark::ReadOfInvalidSnapshot => ("read-of-invalid-snapshot", "a read of an invalid snapshot must fail, never serve stale data (K2)"),
            Mark::MergeStarted => ("merge-started", "a merge begins: chunks go back to the origin"),
            Mark::MergeRunOfSeveralChunks => ("merge-run-of-several-chunks", "a merge copies a run of consecutive chunks at once"),
            Mark::MergeWriteWaitsForRun => ("merge-write-waits-for-run", "a write to a chunk being merged waits for the run (I10)"),
            Mark::MergeCopyError => ("merge-copy-error", "a merge copy fails: the merge stops, the records stay"),
            Mark::MergeCommitFailed => ("merge-commit-failed", "clearing merged records fails: the merge stops with the COW still protecting"),
        }
    }
}

/// Records that `mark`'s situation happened (nothing without the feature).
#[inline(always)]
pub fn hit(mark: Mark) {
    #[cfg(feature = "coverage-marks")]
    counting::hit(mark);
    #[cfg(not(feature = "coverage-marks"))]
    let _ = mark;
}

/// This thread's hits since the last `take`, one count per [`Mark::ALL`]
/// entry, and the counts reset. Without the feature, all zero.
pub fn take() -> [u64; Mark::ALL.len()] {
    #[cfg(feature = "coverage-marks")]
    return counting::take();
    #[cfg(not(feature = "coverage-marks"))]
    [0; Mark::ALL.len()]
}

/// Whether marks are counted in this build.
pub const fn counted() -> bool {
    cfg!(feature = "coverage-marks")
}

#[cfg(feature = "coverage-marks")]
mod counting {
    use std::cell::Cell;

    use super::Mark;

    std::thread_local! {
        static HITS: [Cell<u64>; Mark::ALL.len()] = const { [const { Cell::new(0) }; Mark::ALL.len()] };
    }

    pub fn hit(mark: Mark) {
        let index = mark as usize;
        debug_assert_eq!(Mark::ALL[index], mark, "ALL is in declaration order");
        HITS.with(|hits| hits[index].set(hits[index].get() + 1));
    }

    pub fn take() -> [u64; Mark::ALL.len()] {
        HITS.with(|hits| std::array::from_fn(|index| hits[index].replace(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mark_is_listed_once_in_order_with_a_unique_name_and_a_why() {
        for (index, mark) in Mark::ALL.into_iter().enumerate() {
            assert_eq!(mark as usize, index, "{mark:?} out of order in ALL");
            assert_eq!(Mark::parse(mark.name()), Some(mark));
            assert!(!mark.why().is_empty());
        }
    }
}
