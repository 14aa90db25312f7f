//! Crash images: overlays over a shared base against full copies.
//!
//! Run with `cargo bench -p sim --bench crash_images` (or all figures: `snapsim bench`).

fn main() {
    sim::bench::simulation::print_crash_images();
}
