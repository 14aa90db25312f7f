//! snapshot-merge: copying a snapshot's exceptions back into the origin.
//!
//! The merge walks the store's records newest first, a run of consecutive
//! chunks at a time (`prepare_merge`). For each run it:
//! 1. makes every other snapshot preserve the origin extent it is about to
//!    overwrite, and waits for those exceptions (the kernel's 73dfd078);
//! 2. marks the run as merging — writes to those chunks now wait — and waits
//!    until no write remapped to the COW is in flight on *any* chunk of the
//!    run (8a2d5286: not just the first);
//! 3. copies the run from the COW to the origin;
//! 4. **flushes the origin** (fcc42338), so that the merged data is durable
//!    before the records that protect it disappear;
//! 5. clears the records with a PREFLUSH|FUA area write (`commit_merge`),
//!    forgets the exceptions, releases the writes that waited, and goes on.
//!
//! Any error stops the merge with `Merge failed`; I/O goes on as before.

use super::bio::WriteBio;
use super::copy::copy;
use super::snapshot::{Role, Snapshot};
use crate::io::{BlockDevice, IoError, IoErrorKind, IoOp};
use crate::store::MergeStep;
use crate::sync::Arc;
use crate::zoo::Mutation;

/// How a merge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Every exception was merged: the origin now reads as the snapshot did.
    Complete,
    /// The merge stopped on an error (status `Merge failed`).
    Failed(String),
    /// The snapshot was invalid; nothing was merged.
    Invalid,
}

/// Called once when the merge stops.
pub type MergeDone = Box<dyn FnOnce(MergeOutcome) + Send + 'static>;

/// The run being merged.
#[derive(Debug, Clone, Copy)]
struct Run {
    old_start: u64,
    new_start: u64,
    count: u32,
}

/// Merge bookkeeping inside the snapshot's state.
#[derive(Default)]
pub(super) struct MergeState {
    pub(super) running: bool,
    pub(super) failed: bool,
    /// Chunks `first .. first + count` are being merged: writes to them wait.
    pub(super) first_chunk: u64,
    pub(super) chunks: u64,
    /// Writes to merging chunks, released when their run is merged.
    pub(super) queued: Vec<WriteBio>,
    run: Option<Run>,
    done: Option<MergeDone>,
    /// Runs merged so far.
    pub(super) runs_merged: u64,
}

impl MergeState {
    /// Checks what holds of the merge's bookkeeping between its steps.
    pub(super) fn check(&self) {
        // A merge runs from `start_merge` until it hands its outcome to `done`.
        assert_eq!(self.running, self.done.is_some(), "merge running = {} with a listener = {}", self.running, self.done.is_some());
        assert!(self.run.is_none() || self.running, "run {:?} merging with the merge stopped", self.run);
        // Writes are held back exactly while a run merges, on chunks of that run.
        assert_eq!(self.run.is_some(), self.chunks > 0, "{} chunks held back for run {:?}", self.chunks, self.run);
        if let Some(run) = self.run {
            assert_eq!(self.first_chunk, run.old_start, "chunks held back from {} for the run at {}", self.first_chunk, run.old_start);
            // All of the run (Z15: its first chunk only).
            assert!(self.chunks <= u64::from(run.count), "{} chunks held back for a run of {}", self.chunks, run.count);
        }
        assert!(self.chunks > 0 || self.queued.is_empty(), "{} writes held back with no run merging", self.queued.len());
    }
}

impl<D: BlockDevice> Snapshot<D> {
    /// Starts merging this snapshot-merge target into its origin; `done`
    /// hears how it ended.
    pub fn start_merge(self: &Arc<Self>, done: MergeDone) {
        assert_eq!(self.role, Role::Merge, "only a snapshot-merge target merges");
        {
            let mut state = self.state.lock();
            assert!(!state.merge.running, "merge already running");
            assert_eq!(state.merge.chunks, 0, "chunks held back before the merge started");
            state.merge.running = true;
            crate::cov::hit(crate::cov::Mark::MergeStarted);
            state.merge.done = Some(done);
            state.merge.check();
        }
        self.merge_next();
    }

    /// Runs merged so far.
    pub fn runs_merged(&self) -> u64 {
        self.state.lock().merge.runs_merged
    }

    fn merge_stop(self: &Arc<Self>, outcome: MergeOutcome) {
        let (done, queued) = {
            let mut state = self.state.lock();
            assert!(state.merge.running, "a merge stopped that was not running");
            assert!(state.merge.done.is_some(), "a merge stopped twice");
            state.merge.running = false;
            state.merge.run = None;
            let queued = if matches!(outcome, MergeOutcome::Failed(_)) {
                state.merge.failed = true;
                state.merge.first_chunk = 0;
                state.merge.chunks = 0;
                std::mem::take(&mut state.merge.queued)
            } else {
                Vec::new()
            };
            let done = state.merge.done.take();
            state.merge.check();
            (done, queued)
        };
        for bio in queued {
            let error = IoError::new(IoOp::Write, bio.sector, bio.sectors(), IoErrorKind::MergeFailed);
            bio.fail(error);
        }
        if let MergeOutcome::Failed(why) = &outcome {
            log::error!("merge failed: {why}");
        }
        if let Some(done) = done {
            done(outcome);
        }
    }

    /// The kernel's `snapshot_merge_next_chunks`.
    fn merge_next(self: &Arc<Self>) {
        let store = {
            let state = self.state.lock();
            assert!(state.merge.run.is_none(), "the next run prepared while one is merging");
            state.merge.check();
            let Some(store) = state.merge_store() else {
                drop(state);
                return self.merge_stop(MergeOutcome::Invalid);
            };
            Arc::clone(store)
        };
        match store.prepare_merge() {
            MergeStep::Done => self.merge_stop(MergeOutcome::Complete),
            MergeStep::NeedPreviousArea => {
                let this = Arc::clone(self);
                store.read_previous_area(Box::new(move |result| match result {
                    Ok(()) => this.merge_next(),
                    Err(error) => this.merge_stop(MergeOutcome::Failed(error.to_string())),
                }));
            }
            MergeStep::Run(run) => {
                assert!(run.count > 0, "a merge run of no chunks");
                if run.count > 1 {
                    crate::cov::hit(crate::cov::Mark::MergeRunOfSeveralChunks);
                }
                // A run lies within one metadata area.
                assert!(run.count <= store.layout().exceptions_per_area(), "a run of {} records", run.count);
                let count = u64::from(run.count);
                let run = Run { old_start: run.last_old_chunk + 1 - count, new_start: run.last_new_chunk + 1 - count, count: run.count };
                self.merge_preserve_elsewhere(run);
            }
        }
    }

    /// Step 1: other snapshots preserve the extent first.
    fn merge_preserve_elsewhere(self: &Arc<Self>, run: Run) {
        let Some(origin) = self.origin.upgrade() else {
            return self.merge_stop(MergeOutcome::Failed("the origin is gone".into()));
        };
        let seen = origin.exceptions_done_count();
        let sector = self.chunk.chunk_to_sector(run.old_start);
        let sectors = u64::from(run.count) * u64::from(self.chunk.sectors());
        // Z16: the other snapshots are not asked to preserve the extent.
        if !self.mutations.has(Mutation::Z16MergeSkipsOtherSnapshots) && origin.write_extent(sector, sectors) {
            let this = Arc::clone(self);
            origin.when_exception_done(seen, Box::new(move || this.merge_preserve_elsewhere(run)));
            return;
        }
        {
            let mut state = self.state.lock();
            assert!(state.merge.run.is_none(), "run at origin chunk {} started while another is merging", run.old_start);
            state.merge.first_chunk = run.old_start;
            // Z15: only the run's first chunk holds writes back.
            state.merge.chunks = if self.mutations.has(Mutation::Z15MergeWaitsOnFirstChunkOnly) { 1 } else { u64::from(run.count) };
            state.merge.run = Some(run);
            state.merge.check();
        }
        self.merge_drained();
    }

    /// Step 2: wait until no tracked write is in flight on any chunk of the run.
    pub(super) fn merge_drained(self: &Arc<Self>) {
        let run = {
            let mut state = self.state.lock();
            let Some(run) = state.merge.run else { return };
            // The chunks whose writes are held back (all of the run; only its first under Z15).
            state.merge.check();
            let busy = state.first_tracked(run.old_start..run.old_start + state.merge.chunks);
            if let Some(chunk) = busy {
                state.wait_for_merge(chunk);
                return;
            }
            run
        };
        // Step 3: one copy for the whole run, clipped at the origin's end.
        let from = self.chunk.chunk_to_sector(run.new_start);
        let to = self.chunk.chunk_to_sector(run.old_start);
        let sectors = (u64::from(run.count) * u64::from(self.chunk.sectors())).min(self.origin_dev.size_sectors().saturating_sub(to));
        let this = Arc::clone(self);
        copy(
            &self.cow,
            from,
            &self.origin_dev,
            to,
            sectors as u32,
            Box::new(move |result| match result {
                Err(error) => {
                    crate::cov::hit(crate::cov::Mark::MergeCopyError);
                    this.merge_stop(MergeOutcome::Failed(format!("copying run at origin chunk {}: {error}", run.old_start)))
                }
                Ok(()) => this.merge_flush_origin(run),
            }),
        );
    }

    /// Step 4: the merged data must be durable before its records go.
    fn merge_flush_origin(self: &Arc<Self>, run: Run) {
        if self.mutations.has(Mutation::Z6NoOriginFlushBeforeMergeCommit) {
            // Z6: the records go while the merged data may sit in a volatile cache.
            return self.merge_commit(run);
        }
        let this = Arc::clone(self);
        self.origin_dev.flush(Box::new(move |result| match result {
            Err(error) => this.merge_stop(MergeOutcome::Failed(format!("flushing the origin after merging: {error}"))),
            Ok(()) => this.merge_commit(run),
        }));
    }

    /// Step 5: clear the records, forget the exceptions, release the waiting writes.
    fn merge_commit(self: &Arc<Self>, run: Run) {
        let store = self.store();
        let this = Arc::clone(self);
        store.commit_merge(
            run.count,
            Box::new(move |result| {
                if let Err(error) = result {
                    crate::cov::hit(crate::cov::Mark::MergeCommitFailed);
                    return this.merge_stop(MergeOutcome::Failed(error.to_string()));
                }
                let released = {
                    let mut state = this.state.lock();
                    assert_eq!(state.merge.first_chunk, run.old_start, "the run committed is not the run held back");
                    // The run drained before its copy, and new writes to it wait in the queue (Z15: only its first chunk).
                    debug_assert!(
                        this.mutations.has(Mutation::Z15MergeWaitsOnFirstChunkOnly)
                            || state.first_tracked(run.old_start..run.old_start + u64::from(run.count)).is_none(),
                        "run at origin chunk {} merged with writes to it in flight",
                        run.old_start
                    );
                    for chunk in (run.old_start..run.old_start + u64::from(run.count)).rev() {
                        if state.forget_merged(chunk).is_none() {
                            drop(state);
                            return this.merge_stop(MergeOutcome::Failed(format!(
                                "corruption detected: exception for origin chunk {chunk} is on disk but not in memory"
                            )));
                        }
                    }
                    state.merge.first_chunk = 0;
                    state.merge.chunks = 0;
                    state.merge.run = None;
                    state.merge.runs_merged += 1;
                    let released = std::mem::take(&mut state.merge.queued);
                    state.merge.check();
                    released
                };
                for bio in released {
                    this.merge_map_write(bio);
                }
                this.merge_next();
            }),
        );
    }

    /// A write to the snapshot-merge target (the kernel's `snapshot_merge_map`).
    pub(super) fn merge_map_write(self: &Arc<Self>, bio: WriteBio) {
        let chunk = self.chunk.sector_to_chunk(bio.sector);
        assert_eq!(self.role, Role::Merge, "a merge write to a snapshot that is not merging");
        let mut state = self.state.lock();
        let remapped = state.merge_remap(chunk);
        if let Some(new_chunk) = remapped {
            let merging = chunk >= state.merge.first_chunk && chunk < state.merge.first_chunk + state.merge.chunks;
            if merging {
                crate::cov::hit(crate::cov::Mark::MergeWriteWaitsForRun);
                state.merge.queued.push(bio);
                state.merge.check();
                return;
            }
            state.track_write(chunk);
            drop(state);
            let sector = self.chunk.chunk_to_sector(new_chunk) + (bio.sector & u64::from(self.chunk.sectors() - 1));
            let this = Arc::clone(self);
            let done = bio.done;
            return self.cow.write(
                sector,
                bio.data,
                bio.flags,
                Box::new(move |result| {
                    this.untrack(chunk);
                    done(result);
                }),
            );
        }
        drop(state);
        // No exception (or an invalid merging snapshot): write the origin,
        // which may make exceptions in the other snapshots.
        match self.origin.upgrade() {
            Some(origin) => origin.do_origin(bio),
            None => self.origin_dev.write(bio.sector, bio.data, bio.flags, bio.done),
        }
    }
}
