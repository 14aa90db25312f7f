//! The invariants of SPEC §5, by id, and the violation the oracle reports.

/// An invariant the oracle checks; failures are named by these ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    I1AckedOriginWrite,
    I2SnapshotView,
    I3FlushedWrites,
    I4MetadataWellFormed,
    I5InOrderCommit,
    I6Reload,
    I7Allocation,
    I8Invalidation,
    I9Overflow,
    I10Merge,
    I11Liveness,
    I12Bounds,
    I13ConflictingReads,
    I14Status,
    I15Availability,
}

impl Invariant {
    pub const ALL: [Invariant; 15] = [
        Self::I1AckedOriginWrite,
        Self::I2SnapshotView,
        Self::I3FlushedWrites,
        Self::I4MetadataWellFormed,
        Self::I5InOrderCommit,
        Self::I6Reload,
        Self::I7Allocation,
        Self::I8Invalidation,
        Self::I9Overflow,
        Self::I10Merge,
        Self::I11Liveness,
        Self::I12Bounds,
        Self::I13ConflictingReads,
        Self::I14Status,
        Self::I15Availability,
    ];

    /// The short id, `I1` … `I15`.
    pub fn id(self) -> &'static str {
        ["I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8", "I9", "I10", "I11", "I12", "I13", "I14", "I15"][self as usize]
    }

    /// The invariant's name as SPEC §5 gives it.
    pub fn name(self) -> &'static str {
        [
            "acked origin write",
            "snapshot view",
            "flushed writes",
            "metadata well-formed",
            "in-order commit",
            "reload",
            "allocation",
            "invalidation",
            "overflow",
            "merge",
            "liveness",
            "bounds",
            "conflicting reads",
            "status",
            "availability",
        ][self as usize]
    }

    /// Parses `I5` (or `I5 in-order commit`).
    pub fn parse(text: &str) -> Option<Self> {
        let id = text.split_whitespace().next()?;
        Self::ALL.into_iter().find(|i| i.id().eq_ignore_ascii_case(id))
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.id(), self.name())
    }
}

/// An invariant seen broken: which, what exactly, and the events that led there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub message: String,
    /// The last events before the violation, oldest first.
    pub events: Vec<String>,
}

impl Violation {
    pub fn new(invariant: Invariant, message: impl Into<String>) -> Self {
        Self { invariant, message: message.into(), events: Vec::new() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_line_up_with_the_spec() {
        assert_eq!(Invariant::I5InOrderCommit.to_string(), "I5 in-order commit");
        assert_eq!(Invariant::I14Status.id(), "I14");
        for invariant in Invariant::ALL {
            assert_eq!(Invariant::parse(invariant.id()), Some(invariant));
        }
        assert_eq!(Invariant::parse("I10 merge"), Some(Invariant::I10Merge));
        assert_eq!(Invariant::parse("I15"), Some(Invariant::I15Availability));
        assert_eq!(Invariant::parse("I16"), None);
    }
}
