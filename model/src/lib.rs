//! The reference model: origin and snapshots as sector versions, small enough
//! to be obviously right, against which the oracle judges every engine state.
//!
//! It starts with the one fact every later check leans on: the set of values a
//! crash may legally leave in a sector.

use std::collections::BTreeSet;

/// The values one sector may hold after a crash: its durable value, or any
/// value written to it since that has not been made durable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SectorVersions {
    durable: u64,
    since: BTreeSet<u64>,
}

impl SectorVersions {
    /// A sector whose durable content is the version `durable`.
    pub fn new(durable: u64) -> Self {
        Self { durable, since: BTreeSet::new() }
    }

    /// A write completed into the volatile cache.
    pub fn write(&mut self, version: u64) {
        self.since.insert(version);
    }

    /// The latest write became durable (a flush after it, or FUA).
    pub fn make_durable(&mut self, version: u64) {
        self.durable = version;
        self.since.clear();
    }

    /// Whether a crash may leave `version` in this sector.
    pub fn may_hold(&self, version: u64) -> bool {
        version == self.durable || self.since.contains(&version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflushed_writes_may_or_may_not_survive_flushed_ones_must() {
        let mut sector = SectorVersions::new(0);
        sector.write(1);
        sector.write(2);
        assert!(sector.may_hold(0) && sector.may_hold(1) && sector.may_hold(2));
        sector.make_durable(2);
        assert!(!sector.may_hold(0) && !sector.may_hold(1) && sector.may_hold(2));
    }
}
