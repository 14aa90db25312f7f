//! Fuzz targets over hostile input live in `tests/fuzz.rs`; this crate only
//! gives them a package of their own (see Cargo.toml), so that
//! `cargo bolero test -p sim-fuzz` instruments nothing else.

#![forbid(unsafe_code)]

// `cargo bolero test NAME` also builds this library's (empty) unit-test
// binary with coverage instrumentation; bolero brings the fuzzer runtime
// that instrumentation links against.
#[cfg(test)]
use bolero as _;
