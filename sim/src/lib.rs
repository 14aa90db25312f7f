//! The simulation harness and the tools behind the `snapsim` command.
//!
//! - [`cli`]: the verbs of `snapsim` that work on real COW devices (`inspect`, `view`).

pub mod cli;
