//! The bug zoo: the kernel's historical dm-snapshot bugs, re-creatable on
//! purpose so that the harness can show it would have caught each one.
//!
//! Every mutation is compiled only with the `bug-zoo` cargo feature, which
//! no production build enables; without it [`Mutations::has`] is a constant
//! `false` and the mutated paths vanish. With it, a run switches mutations
//! on at run time through [`Mutations`] in the origin's configuration.

/// One historical mistake (SPEC §7), by its zoo id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// Z3: undoes 230c83af "avoid snapshot space leak on crash": exceptions
    /// are committed in copy-completion order instead of allocation order.
    Z3CommitInCompletionOrder,
}

impl Mutation {
    pub const ALL: [Mutation; 1] = [Mutation::Z3CommitInCompletionOrder];

    /// The zoo id, `Z1` … `Z17`.
    pub fn id(self) -> &'static str {
        match self {
            Self::Z3CommitInCompletionOrder => "Z3",
        }
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

    /// Whether this build can switch mutations on at all.
    pub const fn available() -> bool {
        cfg!(feature = "bug-zoo")
    }
}
