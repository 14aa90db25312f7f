//! The bug zoo: the kernel's historical dm-snapshot bugs, re-creatable on
//! purpose so that the harness can show it would have caught each one.
//!
//! Every mutation is compiled only with the `bug-zoo` cargo feature, which
//! no production build enables; without it [`Mutations::has`] is a constant
//! `false` and the mutated paths vanish. With it, a run switches mutations
//! on at run time through [`Mutations`] in the origin's configuration.
//!
//! Each variant re-creates one mistake as closely as the engine's structure
//! allows and names the kernel change that fixed it (SPEC §7).

/// One historical mistake, by its zoo id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// Z1: undoes CVE-2013-4299 "dm snapshot: fix data corruption": after a
    /// load, the allocator starts right after the highest chunk in use
    /// without skipping a metadata area, so an exact area fill hands out the
    /// next area's chunk as data.
    Z1NoSkipMetadataAfterLoad,
    /// Z2: undoes 2c945820 "dm snapshot: fix metadata corruption": the last,
    /// partial area read at load is not kept as the in-memory area, so the
    /// next commit rewrites that area with only the new records.
    Z2LastAreaNotKeptAfterLoad,
    /// Z3: undoes 230c83af "avoid snapshot space leak on crash": exceptions
    /// are committed in copy-completion order instead of allocation order.
    Z3CommitInCompletionOrder,
    /// Z4: undoes 61578dcd "header corruption race on invalidation": the
    /// header is built in the area buffer a commit may be writing. Not
    /// expressible here: the header has its own buffer and every area write
    /// carries its own copy of the area (see the zoo table).
    Z4HeaderInAreaBuffer,
    /// Z5: undoes 385277bf "hung bios when copy error occurs": a failed copy
    /// never reaches `commit_exception`, so the exception and the writes
    /// waiting on it are never completed.
    Z5CopyErrorSkipsCommit,
    /// Z6: undoes fcc42338 "flush merged data before committing metadata":
    /// the merge removes records from the COW without flushing the origin
    /// writes that merged them.
    Z6NoOriginFlushBeforeMergeCommit,
    /// Z7: undoes "use barrier when writing exception store": metadata areas
    /// are written without PREFLUSH|FUA, so a record can be acknowledged
    /// before it (or the copied data) is durable.
    Z7AreaWriteWithoutFlushFua,
    /// Z8: undoes the 2.4-era fix of "only every other area read": loading
    /// skips every other metadata area.
    Z8LoadSkipsEveryOtherArea,
    /// Z9: undoes cd45daff/a8d41b59 "track snapshot reads": an exception
    /// completes (and releases the origin writes held on it) without
    /// waiting for snapshot reads still reading that chunk from the origin.
    Z9NoWaitForTrackedReads,
    /// Z10: undoes 6d45d93e "sort by chunk size": snapshots are kept in
    /// creation order, so origin writes are split at the first snapshot's
    /// chunk size, not the smallest.
    Z10SnapshotsUnsorted,
    /// Z11: undoes 721b1d98 "excessive memory usage": no COW throttle; any
    /// number of copies may be in flight.
    Z11NoCowThrottle,
    /// Z12: undoes a6e50b40 / d136f2ef (full-chunk snapshot writes): a write
    /// covering a whole chunk is acknowledged once its data is written,
    /// before its exception is committed.
    Z12FullChunkWriteAckedBeforeCommit,
    /// Z13: undoes the ordering kept since 2.6.11: the next metadata area is
    /// zeroed after the full one is written instead of before, so a crash
    /// between the two leaves stale records after a full area.
    Z13ZeroNextAreaAfterFullOne,
    /// Z14: undoes the 2.6.24 fix: an error zeroing the next metadata area
    /// at an area boundary is ignored instead of invalidating the snapshot.
    Z14ZeroAreaErrorSwallowed,
    /// Z15: undoes 8a2d5286 (merge): a merge of a run of chunks waits for
    /// conflicting origin writes on the run's first chunk only.
    Z15MergeWaitsOnFirstChunkOnly,
    /// Z16: undoes 73dfd078 (merge): merging writes the snapshot's data into
    /// the origin without first copying the chunk into the origin's other
    /// snapshots.
    Z16MergeSkipsOtherSnapshots,
    /// Z17: undoes 76c44f6d "don't invalidate on snapshot write overflow":
    /// a full `PO` store invalidates the snapshot on a snapshot write.
    Z17OverflowInvalidatesPo,
    // The concurrency mutations: each opens a window between two lock holds
    // that a single-threaded run never enters. Only the thread-level model
    // checkers (the loom models and the shuttle suite) can catch them.
    /// Z18: undoes the re-lookup of `__find_pending_exception` after
    /// allocating (2.6-era "two exceptions for one chunk" race): an origin
    /// write decides a chunk needs an exception, drops the snapshot lock,
    /// and allocates one without looking again, so a second writer's
    /// pending exception for the same chunk is replaced.
    Z18PendingAllocationRace,
    /// Z19: undoes the atomicity of cd45daff's tracking: a snapshot read
    /// looks the chunk up, drops the lock and only then tracks itself, so an
    /// exception can complete (and release the origin write) in between.
    Z19ReadTrackedAfterUnlock,
    /// Z20: a lost wake-up in the 2019 COW throttle (`wait_for_in_progress`
    /// checks for room and queues itself under one lock): the room check is
    /// made before taking the queue lock, so a copy finishing in between
    /// wakes no one and the write waits forever.
    Z20ThrottleCheckOutsideQueueLock,
    /// Z21: a lost wake-up in commit batching: the one thread feeding the
    /// store stops in two steps (finds the queue empty, then clears its
    /// flag), so a commit queued in between is never fed to the store.
    Z21CommitFeederStopsInTwoSteps,
    // After the races, so that every id keeps its place.
    /// Z22: a porting mistake, not a kernel release: the allocator hands out
    /// chunks one after another without the `skip_metadata()` step of
    /// `persistent_prepare_exception`, so the chunk after a full area's worth
    /// of data is the next metadata area. The store's own assertion (the
    /// allocator never points at metadata) stops the engine: a panic, which
    /// the harness must report as a finding with its replay command.
    Z22NoSkipMetadataOnAllocation,
}

impl Mutation {
    pub const ALL: [Mutation; 22] = [
        Self::Z1NoSkipMetadataAfterLoad,
        Self::Z2LastAreaNotKeptAfterLoad,
        Self::Z3CommitInCompletionOrder,
        Self::Z4HeaderInAreaBuffer,
        Self::Z5CopyErrorSkipsCommit,
        Self::Z6NoOriginFlushBeforeMergeCommit,
        Self::Z7AreaWriteWithoutFlushFua,
        Self::Z8LoadSkipsEveryOtherArea,
        Self::Z9NoWaitForTrackedReads,
        Self::Z10SnapshotsUnsorted,
        Self::Z11NoCowThrottle,
        Self::Z12FullChunkWriteAckedBeforeCommit,
        Self::Z13ZeroNextAreaAfterFullOne,
        Self::Z14ZeroAreaErrorSwallowed,
        Self::Z15MergeWaitsOnFirstChunkOnly,
        Self::Z16MergeSkipsOtherSnapshots,
        Self::Z17OverflowInvalidatesPo,
        Self::Z18PendingAllocationRace,
        Self::Z19ReadTrackedAfterUnlock,
        Self::Z20ThrottleCheckOutsideQueueLock,
        Self::Z21CommitFeederStopsInTwoSteps,
        Self::Z22NoSkipMetadataOnAllocation,
    ];

    /// Whether this mutation is a race only several threads can show.
    pub fn is_concurrency(self) -> bool {
        (Self::Z18PendingAllocationRace..=Self::Z21CommitFeederStopsInTwoSteps).contains(&self)
    }

    /// The zoo id, `Z1` … `Z22`.
    pub fn id(self) -> &'static str {
        [
            "Z1", "Z2", "Z3", "Z4", "Z5", "Z6", "Z7", "Z8", "Z9", "Z10", "Z11", "Z12", "Z13", "Z14", "Z15", "Z16", "Z17", "Z18", "Z19", "Z20", "Z21",
            "Z22",
        ][self as usize]
    }

    /// The kernel change this mutation undoes.
    pub fn kernel_fix(self) -> &'static str {
        [
            "CVE-2013-4299 fix data corruption",
            "2c945820 fix metadata corruption",
            "230c83af avoid space leak on crash",
            "61578dcd header corruption race",
            "385277bf hung bios on copy error",
            "fcc42338 flush merged data first",
            "use barrier writing exception store",
            "2.4 only every other area read",
            "cd45daff/a8d41b59 track snapshot reads",
            "6d45d93e sort by chunk size",
            "721b1d98 excessive memory usage",
            "a6e50b40/d136f2ef full-chunk write",
            "2.6.11 zero next area first",
            "2.6.24 area-boundary write error",
            "8a2d5286 merge conflicting I/O",
            "73dfd078 merge COWs other snapshots",
            "76c44f6d no invalidate on PO overflow",
            "re-lookup after pending allocation",
            "cd45daff tracking under the lock",
            "wait_for_in_progress under its lock",
            "one commit feeder, stopped atomically",
            "(port) skip_metadata on allocation",
        ][self as usize]
    }

    /// What the mutation does, in a few words.
    pub fn summary(self) -> &'static str {
        [
            "no skip_metadata after load",
            "last partial area not kept after load",
            "commit in copy-completion order",
            "header built in the area buffer",
            "copy error skips commit_exception",
            "no origin flush before commit_merge",
            "area write without PREFLUSH/FUA",
            "load skips every other area",
            "no wait for tracked origin reads",
            "snapshots unsorted by chunk size",
            "no COW throttle",
            "full-chunk write acked before commit",
            "zero next area after the full one",
            "zeroing error swallowed at area boundary",
            "merge waits on a run's first chunk only",
            "merge skips COW into other snapshots",
            "PO invalidates on overflow",
            "lock dropped before allocating pending",
            "read tracked after the lock is dropped",
            "throttle room checked outside queue lock",
            "commit feeder stops in two steps",
            "no skip_metadata when allocating",
        ][self as usize]
    }

    /// Parses a zoo id (`Z3`).
    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.id().eq_ignore_ascii_case(id))
    }
}

/// The mutations switched on for a run (none, in every production build).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mutations {
    #[cfg(feature = "bug-zoo")]
    bits: u32,
}

impl Mutations {
    /// No mutation: the faithful engine.
    pub const NONE: Self = Self {
        #[cfg(feature = "bug-zoo")]
        bits: 0,
    };

    /// Only `mutation` (with the `bug-zoo` feature; none without it).
    pub fn only(mutation: Mutation) -> Self {
        #[cfg(feature = "bug-zoo")]
        {
            Self { bits: 1 << mutation as u32 }
        }
        #[cfg(not(feature = "bug-zoo"))]
        {
            let _ = mutation;
            Self::NONE
        }
    }

    /// Whether `mutation` is on. Always `false` without the `bug-zoo` feature.
    #[inline]
    pub fn has(self, mutation: Mutation) -> bool {
        #[cfg(feature = "bug-zoo")]
        {
            self.bits & (1 << mutation as u32) != 0
        }
        #[cfg(not(feature = "bug-zoo"))]
        {
            let _ = mutation;
            false
        }
    }

    /// The id (`Z3`) of the first mutation switched on, if any: what a
    /// replay line and a crash trace name.
    pub fn id(self) -> Option<&'static str> {
        Mutation::ALL.into_iter().find(|&m| self.has(m)).map(Mutation::id)
    }

    /// Whether this build can switch mutations on at all.
    pub const fn available() -> bool {
        cfg!(feature = "bug-zoo")
    }
}

#[cfg(test)]
mod tests {
    use super::{Mutation, Mutations};

    #[test]
    fn a_set_of_mutations_names_the_one_switched_on() {
        assert_eq!(Mutations::NONE.id(), None);
        let z3 = Mutations::only(Mutation::Z3CommitInCompletionOrder);
        // Without the bug-zoo feature no mutation can be switched on.
        assert_eq!(z3.id(), Mutations::available().then_some("Z3"));
    }
}
