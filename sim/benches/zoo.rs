//! Time to detect each historical kernel bug (see `sim::bench::zoo`).
//!
//! Run with `cargo bench -p sim --features bug-zoo --bench zoo`.

fn main() {
    sim::bench::zoo::print();
}
