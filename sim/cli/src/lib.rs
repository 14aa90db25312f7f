//! The `snapsim` command line: the verbs that work on real devices (`inspect`, `view`, `apply`,
//! `merge`) and the rule every verb's exit status keeps.
//!
//! # Exit status
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | everything that was asked was checked, and it passed |
//! | 1 | a violation was found, or an operation on a real file failed on the data (an I/O error, requests that failed, a snapshot that went `Invalid` or `Overflow`, a merge that did not complete) |
//! | 2 | a bad invocation or a bad input file, named with the field and value; nothing was written |
//! | 3 | `PARTIAL`: no violation in what was checked, but not everything that was asked was checked (a state limit, an interrupt) |
//!
//! A panic is a bug in any case.

pub mod devices;
pub mod inspect;
pub use sim::limits;
pub mod live;
pub mod outcome;
pub mod paths;
pub mod scenarios;
pub mod settings;
pub mod verbs;
pub mod view;
pub mod workload;

/// What kind of failure a command met; it decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorKind {
    /// Exit 1: a violation, or a real-file operation that failed on the data.
    Failed,
    /// Exit 2: the invocation or an input file is wrong.
    BadInput,
    /// Exit 3: stopped before everything asked was checked; nothing failed.
    Partial,
}

impl ErrorKind {
    /// The process exit status of this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::BadInput => 2,
            ErrorKind::Partial => 3,
        }
    }

    /// The verdict word a JSON report carries for this kind.
    pub fn verdict(self) -> &'static str {
        match self {
            ErrorKind::Failed => "FAIL",
            ErrorKind::BadInput => "BAD INPUT",
            ErrorKind::Partial => "PARTIAL",
        }
    }
}

/// A failure of a command, with the message the user sees.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CliError {
    /// A violation, or a real-file operation that failed (exit 1).
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self { kind: ErrorKind::Failed, message: message.to_string() }
    }

    /// A bad invocation or input file (exit 2).
    pub fn bad_input(message: impl std::fmt::Display) -> Self {
        Self { kind: ErrorKind::BadInput, message: message.to_string() }
    }

    /// A run that stopped before checking everything (exit 3).
    pub fn partial(message: impl std::fmt::Display) -> Self {
        Self { kind: ErrorKind::Partial, message: message.to_string() }
    }

    /// Prefixes the message with what it is about (a path, a field).
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<engine::StoreError> for CliError {
    /// A COW the engine refuses is bad input; an I/O error on it is a failure
    /// of the operation on the data.
    fn from(error: engine::StoreError) -> Self {
        use engine::StoreError;
        match error {
            StoreError::Io { .. } | StoreError::Stalled | StoreError::NoSpace { .. } => Self::failed(error.to_string()),
            _ => Self::bad_input(error.to_string()),
        }
    }
}
