//! Crashes and reloads: what a restart may lose, and which snapshots may
//! load valid again after it (I8, K1).

use super::Oracle;
use crate::invariant::{Invariant, Violation};

impl Oracle {
    /// The machine crashed: every unflushed write may or may not have
    /// reached the media, nothing in flight completes, and an invalidated
    /// snapshot's `valid = 0` header may be lost (K1). Checks nothing; what
    /// is read back afterwards is judged by I1–I3.
    pub(super) fn on_crash(&mut self) {
        self.restart(true);
    }

    /// A clean shutdown and rebuild: judged as a crash that lost nothing,
    /// except that it cannot have lost an invalidated snapshot's header (I8
    /// on the reload that follows). Checks nothing itself.
    pub(super) fn on_clean_reload(&mut self) {
        self.restart(false);
    }

    /// A new epoch after a crash (`crashed`) or a clean reload: pending
    /// operations are dropped and every sector settles on what it may hold.
    fn restart(&mut self, crashed: bool) {
        self.epoch += 1;
        self.seq += 1;
        let at = self.seq;
        self.pending.clear();
        self.origin.crashed(at);
        for state in &mut self.snapshots {
            state.view.crashed(at);
            // A failed exception that never completed left no record:
            // the snapshot may load valid, and consistent.
            state.must_invalidate = false;
            state.invalid_header_may_be_lost |= crashed;
        }
        debug_assert!(
            self.origin_values.values().all(|&epoch| epoch < self.epoch),
            "origin values written before a restart date from earlier epochs"
        );
    }

    /// The snapshots brought back valid by a crash since the last call,
    /// with durable headers: their views must be read now, before a write
    /// (the world's next exception, say) can invalidate them again and
    /// hide what the crash left. Empty with stock headers.
    pub fn take_revived(&mut self) -> Vec<usize> {
        let revived: Vec<usize> = (0..self.snapshots.len()).filter(|&k| self.snapshots[k].revived_to_read).collect();
        for &k in &revived {
            self.snapshots[k].revived_to_read = false;
        }
        debug_assert!(revived.is_empty() || self.config.kernel_patches_applied, "snapshots revived to be read with stock headers");
        revived
    }

    /// Loading snapshot `k` failed and will be tried again: a COW write
    /// that failed during it was the load's own, which no exception waits
    /// for, so it obliges no invalidation (I8). The errors stay seen.
    pub(super) fn on_load_failed(&mut self, k: usize) {
        let state = &mut self.snapshots[k];
        debug_assert!(!state.must_invalidate || state.io_error_seen, "an obligation to invalidate without an error seen");
        state.must_invalidate = false;
    }

    /// The engine was rebuilt and snapshot `k` loaded valid iff `valid[k]`:
    /// an invalidated snapshot may come back valid only if a crash or a
    /// failed COW write could have lost its header (I8), and then only as
    /// kernel behaviour K1 (counted, or an I8 violation when strict). With
    /// durable headers a crash alone revives a snapshot whose view nothing
    /// has changed since: judged on from here, as if never invalidated.
    /// Starts a new load epoch for the sticky states I8 and I9 judge.
    pub(super) fn on_reloaded(&mut self, valid: &[bool]) -> Result<(), Violation> {
        self.origin_error_seen = false;
        for (k, &valid) in valid.iter().enumerate() {
            let durable = self.config.kernel_patches_applied;
            let state = &mut self.snapshots[k];
            if valid && state.ever_invalid && !state.revived {
                if !state.invalid_header_may_be_lost && !state.header_write_failed {
                    let message = format!(
                        "snapshot {k} was invalidated, then loaded valid after a clean reload: no crash and no failed COW write could have lost its valid=0 header"
                    );
                    return Err(Violation::new(Invariant::I8Invalidation, message));
                }
                if durable && !state.header_write_failed {
                    // The FUA header write was in flight at the crash, and no
                    // origin write got past the snapshot while it was: the
                    // view is what it was, and what it reads is judged (I2).
                    state.ever_invalid = false;
                    state.invalid_header_may_be_lost = false;
                    state.revived_to_read = true;
                } else if self.config.strict && !durable {
                    let message = format!(
                        "snapshot {k} was invalidated before a crash but loaded valid after it (kernel behaviour K1: the valid=0 header is a plain write and origin writes went ahead)"
                    );
                    return Err(Violation::new(Invariant::I8Invalidation, message));
                } else {
                    state.revived = true;
                    self.allowances.revived_invalid += 1;
                }
            }
            debug_assert!(!state.revived || state.ever_invalid, "only an invalidated snapshot can be revived");
            debug_assert!(!state.revived_to_read || durable, "a snapshot revived to be read with stock headers");
            state.origin_written = false;
            state.io_error_seen = false;
            state.valid_at_load = valid;
            state.invalid_since_load = false;
            state.overflowed_since_load = false;
            state.must_overflow = false;
            state.header_write_failed = false;
            state.merge_failed = false;
        }
        Ok(())
    }
}
