//! The `snapsim` verbs that work on real devices: `inspect`, `view`, `apply`, `merge`.

pub mod devices;
pub mod inspect;
pub mod live;
pub mod view;
pub mod workload;

/// A failure of a command, with the message the user sees.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<engine::StoreError> for CliError {
    fn from(error: engine::StoreError) -> Self {
        Self(error.to_string())
    }
}
