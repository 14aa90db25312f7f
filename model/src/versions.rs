//! The values one sector may legally hold, and how writes, flushes and
//! crashes change that set.
//!
//! A sector has a set of *settled* values and the values written since.
//! Submissions and acknowledgements are numbered on one sequence. A flush
//! acknowledged settles the sector on the writes acknowledged before the
//! flush was submitted — but only on those that may have been the last to
//! reach the media: a write is certainly older than another that was
//! submitted after it was acknowledged, and otherwise either may be last (a
//! write split at chunk boundaries completes piece by piece, so
//! acknowledgement order is not media order). A crash settles the sector on
//! any value it may hold.

/// Where a written value stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Submitted, not yet acknowledged (it may already be on the media).
    InFlight { op: u64 },
    /// Acknowledged at sequence number `acked`.
    Acked { acked: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    value: u64,
    submitted: u64,
    stage: Stage,
}

/// A value the sector may hold for certain-or-maybe, with when it was
/// submitted and acknowledged (0 for the snapshot-time value; a crash's
/// sequence number for values a crash may have left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settled {
    value: u64,
    submitted: u64,
    acked: u64,
}

/// The legal values of one sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorVersions {
    settled: Vec<Settled>,
    since: Vec<Written>,
}

impl SectorVersions {
    /// A sector that holds `value` for certain.
    pub fn new(value: u64) -> Self {
        Self { settled: vec![Settled { value, submitted: 0, acked: 0 }], since: Vec::new() }
    }

    /// Operation `op` submitted a write of `value` at sequence number `submitted`.
    pub fn write(&mut self, op: u64, value: u64, submitted: u64) {
        self.since.push(Written { value, submitted, stage: Stage::InFlight { op } });
    }

    /// Operation `op` was acknowledged (successfully) at sequence number `acked`.
    pub fn acked(&mut self, op: u64, acked: u64) {
        for written in &mut self.since {
            if written.stage == (Stage::InFlight { op }) {
                written.stage = Stage::Acked { acked };
            }
        }
    }

    /// A flush submitted at sequence number `covers` was acknowledged.
    pub fn flushed(&mut self, covers: u64) {
        let covered = self.since.iter().filter_map(|w| match w.stage {
            Stage::Acked { acked } if acked <= covers => Some(Settled { value: w.value, submitted: w.submitted, acked }),
            _ => None,
        });
        let pool: Vec<Settled> = self.settled.iter().copied().chain(covered).collect();
        if pool.len() == self.settled.len() {
            return;
        }
        // Last on the media: any value not certainly older than another, i.e.
        // acknowledged after every submission in the pool.
        let newest_submission = pool.iter().map(|v| v.submitted).max().unwrap_or(0);
        self.settled = pool.into_iter().filter(|v| v.acked > newest_submission || v.submitted == newest_submission).collect();
        self.since.retain(|w| !matches!(w.stage, Stage::Acked { acked } if acked <= covers));
        debug_assert!(!self.settled.is_empty(), "the newest submission is always a candidate");
    }

    /// Feeds `state` what a judge of this sector depends on: each value it
    /// may hold, settled or written since (and whether still in flight), in
    /// order. Sequence numbers are left out: after a crash they are one
    /// number for every value, and two crash points that oblige the same
    /// values must hash alike.
    pub fn hash_obligations<H: std::hash::Hasher>(&self, state: &mut H) {
        use std::hash::Hash;
        self.settled.len().hash(state);
        self.settled.iter().for_each(|s| s.value.hash(state));
        self.since.len().hash(state);
        self.since.iter().for_each(|w| (w.value, matches!(w.stage, Stage::InFlight { .. })).hash(state));
    }

    /// The write of `value`, carrying FUA, was acknowledged: it is on the
    /// media. Values certainly older (acknowledged before it was submitted)
    /// can never come back; every other value stays as possible as it was.
    pub fn fua_acked(&mut self, value: u64) {
        let Some(index) = self.since.iter().position(|w| w.value == value && matches!(w.stage, Stage::Acked { .. })) else {
            debug_assert!(false, "a FUA write is acknowledged before it is settled");
            return;
        };
        let written = self.since.remove(index);
        let Stage::Acked { acked } = written.stage else { unreachable!("found acknowledged") };
        let older = |done: u64| done <= written.submitted;
        self.settled.retain(|s| !older(s.acked));
        self.settled.push(Settled { value, submitted: written.submitted, acked });
        self.since.retain(|w| !matches!(w.stage, Stage::Acked { acked } if older(acked)));
        debug_assert!(self.may_hold(value), "a durable value is always possible");
    }

    /// Whether [`Self::crashed`] would change the sector: not once an earlier
    /// crash settled every value and nothing was written since. Its sequence
    /// numbers then decide nothing: every later write is submitted after
    /// both crashes, so either crash's number compares alike with it.
    pub fn crash_changes(&self) -> bool {
        !self.since.is_empty() || self.settled.iter().any(|s| s.submitted != 0)
    }

    /// Whether [`Self::flushed`] with `covers` would change the sector:
    /// only if a write it covers was acknowledged.
    pub fn flush_changes(&self, covers: u64) -> bool {
        self.since.iter().any(|w| matches!(w.stage, Stage::Acked { acked } if acked <= covers))
    }

    /// A crash at sequence number `at`: every value that may be on the media
    /// is now settled as possible.
    pub fn crashed(&mut self, at: u64) {
        for settled in &mut self.settled {
            settled.submitted = 0;
            settled.acked = at;
        }
        for written in self.since.drain(..) {
            if !self.settled.iter().any(|s| s.value == written.value) {
                self.settled.push(Settled { value: written.value, submitted: 0, acked: at });
            }
        }
        debug_assert!(!self.settled.is_empty());
    }

    /// Whether the sector may hold `value` now.
    pub fn may_hold(&self, value: u64) -> bool {
        self.settled.iter().any(|s| s.value == value) || self.since.iter().any(|w| w.value == value)
    }

    /// The newest submission among acknowledged writes: every value
    /// acknowledged before it was submitted is certainly overwritten.
    fn newest_acked_submission(&self) -> u64 {
        let acked_since = self.since.iter().filter(|w| matches!(w.stage, Stage::Acked { .. })).map(|w| w.submitted);
        self.settled.iter().map(|s| s.submitted).chain(acked_since).max().unwrap_or(0)
    }

    /// Values a read submitted now may return while nothing crashes: those
    /// `may_hold` allows, less any acknowledged before the newest
    /// acknowledged write was submitted (the cache serves that write or a
    /// newer one; only a crash can bring an older value back).
    pub fn live_values(&self) -> Vec<u64> {
        let newest = self.newest_acked_submission();
        let settled = self.settled.iter().filter(|s| s.acked > newest || s.submitted == newest).map(|s| s.value);
        let since = self.since.iter().filter(|w| match w.stage {
            Stage::InFlight { .. } => true,
            Stage::Acked { acked } => acked > newest || w.submitted == newest,
        });
        settled.chain(since.map(|w| w.value)).collect()
    }

    /// Every value the sector may hold.
    pub fn values(&self) -> Vec<u64> {
        self.settled.iter().map(|s| s.value).chain(self.since.iter().map(|w| w.value)).collect()
    }

    /// How many values the sector may hold.
    pub fn len(&self) -> usize {
        self.settled.len() + self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fua_write_survives_a_crash_and_buries_what_was_older() {
        let mut v = SectorVersions::new(1);
        v.write(1, 2, 1); // plain write of 2
        v.acked(1, 2);
        v.write(2, 3, 3); // FUA write of 3, submitted after 2 was acknowledged
        v.write(3, 4, 4); // a plain write of 4, in flight with it
        v.acked(2, 5);
        v.fua_acked(3);
        v.crashed(6);
        assert!(!v.may_hold(1) && !v.may_hold(2), "older values came back: {:?}", v.values());
        assert!(v.may_hold(3) && v.may_hold(4));
    }

    #[test]
    fn unflushed_writes_may_or_may_not_survive_flushed_ones_must() {
        let mut sector = SectorVersions::new(0);
        sector.write(1, 10, 1);
        sector.acked(1, 2);
        sector.write(2, 20, 3);
        assert!(sector.may_hold(0) && sector.may_hold(10) && sector.may_hold(20));
        sector.acked(2, 4);
        sector.flushed(5);
        assert!(!sector.may_hold(0) && !sector.may_hold(10) && sector.may_hold(20));
    }

    #[test]
    fn overlapping_writes_in_flight_together_may_land_in_either_order() {
        let mut sector = SectorVersions::new(0);
        sector.write(1, 10, 1);
        sector.write(2, 20, 2);
        sector.acked(2, 3);
        sector.acked(1, 4);
        sector.flushed(5);
        assert!(!sector.may_hold(0) && sector.may_hold(10) && sector.may_hold(20));
    }

    #[test]
    fn a_flush_covers_only_what_was_acknowledged_before_it_was_submitted() {
        let mut sector = SectorVersions::new(0);
        sector.write(1, 10, 1);
        sector.acked(1, 2);
        sector.write(2, 20, 3);
        sector.acked(2, 5);
        sector.flushed(4);
        assert!(!sector.may_hold(0) && sector.may_hold(10) && sector.may_hold(20));
    }

    #[test]
    fn a_value_settled_by_an_earlier_flush_may_still_be_last() {
        let mut sector = SectorVersions::new(0);
        sector.write(1, 10, 1);
        sector.write(2, 20, 2);
        sector.acked(2, 3);
        sector.flushed(4);
        sector.acked(1, 5);
        sector.flushed(6);
        assert!(!sector.may_hold(0) && sector.may_hold(10) && sector.may_hold(20));
    }

    #[test]
    fn a_live_read_sees_the_newest_acknowledged_write_or_one_in_flight() {
        let mut sector = SectorVersions::new(0);
        assert_eq!(sector.live_values(), vec![0]);
        sector.write(1, 10, 1);
        assert_eq!(sector.live_values(), vec![0, 10]);
        sector.acked(1, 2);
        assert_eq!(sector.live_values(), vec![10], "acknowledged: the old value is gone unless a crash comes");
        assert!(sector.may_hold(0));
        sector.write(2, 20, 3);
        sector.write(3, 30, 4);
        sector.acked(3, 5);
        sector.acked(2, 6);
        assert_eq!(sector.live_values(), vec![20, 30], "overlapping writes in flight together land in either order");
        sector.crashed(7);
        assert_eq!(sector.live_values(), vec![0, 10, 20, 30]);
    }

    #[test]
    fn a_crash_leaves_any_value_written_since() {
        let mut sector = SectorVersions::new(0);
        sector.write(1, 10, 1);
        sector.crashed(2);
        sector.flushed(100);
        assert!(sector.may_hold(0) && sector.may_hold(10));
        sector.write(2, 20, 101);
        sector.acked(2, 102);
        sector.flushed(103);
        assert!(!sector.may_hold(0) && !sector.may_hold(10) && sector.may_hold(20));
    }
}
