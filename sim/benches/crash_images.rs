//! Crash images: overlays over a shared base against full copies.
//!
//! A 64 MiB COW with 64 pending (completed, not durable) 4 KiB writes: each
//! crash image picks, per changed sector, the durable value or a written one.
//! Built as an overlay it shares the 64 MiB base; built as a full copy it
//! duplicates it. Both are timed over the same choices.
//!
//! Run with `cargo bench -p sim --bench crash_images`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // wall time is what a benchmark measures

use std::time::Instant;

use engine::io::{BlockDevice, WriteFlags};
use rand::{RngExt, SeedableRng};
use sim::disk::{FaultRates, Image, SimDisk};

fn main() {
    let sectors = 64 * 2048; // 64 MiB
    // A used device (not all zero, which an image represents without a buffer).
    let disk = SimDisk::new(1, Image::from_bytes(vec![0x5a; sectors as usize * 512]), FaultRates::default(), 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    for i in 0..64u64 {
        let sector = rng.random_range(0..sectors / 8) * 8;
        disk.write(sector, vec![i as u8 + 1; 4096], WriteFlags::PLAIN, Box::new(|r| r.expect("write")));
    }
    for request in disk.in_flight() {
        disk.complete(request.id).run();
    }
    let changeable = disk.crash_candidates().len();

    let overlays = 2000;
    let start = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..overlays {
        let image = disk.crash_image(|_, n| rng.random_range(0..n));
        checksum = checksum.wrapping_add(image.overlay_len() as u64);
    }
    let overlay_rate = overlays as f64 / start.elapsed().as_secs_f64();

    let copies = 20;
    let start = Instant::now();
    for _ in 0..copies {
        let image = disk.crash_image(|_, n| rng.random_range(0..n)).to_bytes();
        checksum = checksum.wrapping_add(image[0] as u64);
    }
    let copy_rate = copies as f64 / start.elapsed().as_secs_f64();

    println!("crash images of a 64 MiB COW with 64 pending 4 KiB writes ({changeable} changeable sectors)");
    println!("{:<12} {:>16}", "built as", "images/s");
    println!("{:<12} {:>16.0}", "overlay", overlay_rate);
    println!("{:<12} {:>16.1}", "full copy", copy_rate);
    println!("overlay / full copy: {:.0}x   (checksum {checksum})", overlay_rate / copy_rate);
}
