//! The data the world writes and expects: sector contents, their hashes and labels, and stale COW images.

use std::sync::Arc;

use engine::SECTOR_BYTES;
use model::Oracle;

use crate::disk::Image;

/// The model's value for a sector's contents: a 64-bit hash of its words
/// in four independent lanes (so the multiplies overlap), folded at the
/// end. Fixed forever, like the trace hash; on the hot path of every read,
/// write and crash state.
pub fn sector_hash(bytes: &[u8]) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    debug_assert_eq!(bytes.len() % 32, 0, "sectors are hashed 32 bytes at a time");
    let mut lanes: [u64; 4] = [0xcbf2_9ce4_8422_2325, 0x6a09_e667_f3bc_c908, 0xbb67_ae85_84ca_a73b, 0x3c6e_f372_fe94_f82b];
    for block in bytes.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let word = u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
            *lane = (*lane ^ word).wrapping_mul(MULTIPLIER).rotate_left(29);
        }
    }
    let hash = lanes.iter().fold(bytes.len() as u64, |hash, &lane| (hash ^ lane).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31));
    hash ^ (hash >> 29)
}

pub(crate) fn sector_hashes(data: &[u8]) -> Vec<u64> {
    data.chunks(SECTOR_BYTES).map(sector_hash).collect()
}

/// A reused COW device of `sectors` sectors: its first `wiped` sectors
/// (header and first metadata area) zeroed, every later sector full of an
/// old snapshot's exception records, `(n, n + 2)` for the sector's `n`-th
/// record slot: well-formed on their own, wrong for any new snapshot.
///
/// The wipe matters: a new store's header and first-area zeroing are plain
/// writes in the kernel, so a crash could keep the header and lose the
/// zeroing; a stale first area would then load as records (kernel
/// behaviour K3, which [`Knobs::stale_area_zero`](crate::world::Knobs::stale_area_zero) lets scenarios reach by
/// wiping the header alone).
pub(super) fn stale_cow(sectors: u64, wiped: u64) -> Image {
    let mut bytes = vec![0u8; sectors as usize * SECTOR_BYTES];
    let stale = stale_sector();
    bytes.chunks_exact_mut(SECTOR_BYTES).skip(wiped as usize).for_each(|sector| sector.copy_from_slice(&stale));
    Image::from_bytes(bytes)
}

/// Every sector of a stale COW past its wipe: the record in slot `n` of the
/// sector is `(n, n + 2)`.
pub(super) fn stale_sector() -> [u8; SECTOR_BYTES] {
    let mut sector = [0u8; SECTOR_BYTES];
    for (n, record) in sector.chunks_exact_mut(16).enumerate() {
        record[..8].copy_from_slice(&(n as u64).to_le_bytes());
        record[8..].copy_from_slice(&(n as u64 + 2).to_le_bytes());
    }
    sector
}

/// A sector's first bytes, which name a tagged sector (`o00012s003.`).
fn head(bytes: &[u8]) -> [u8; 16] {
    let mut head = [0; 16];
    head.copy_from_slice(&bytes[..16]);
    head
}

/// Names each sector value of `data` (`values`, one per sector) after the
/// sector's first bytes, so that the oracle's messages can show them.
pub(crate) fn label_sectors(oracle: &mut Oracle, data: &[u8], values: &[u64]) {
    for (bytes, &value) in data.chunks(SECTOR_BYTES).zip(values) {
        oracle.label(value, head(bytes));
    }
}

/// The origin at snapshot time, `sectors` long, and each sector's value.
pub(crate) fn initial_origin(sectors: u64) -> (Vec<u8>, Arc<[u64]>) {
    let mut image = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
    (0..sectors).for_each(|s| image.extend_from_slice(&initial_sector(s)));
    let values = image.chunks(SECTOR_BYTES).map(sector_hash).collect();
    (image, values)
}

/// Origin sector `s` at snapshot time: `O<s:08>.` repeated.
pub fn initial_sector(sector: u64) -> Vec<u8> {
    repeat_to_sector(&format!("O{sector:08}."))
}

fn repeat_to_sector(unit: &str) -> Vec<u8> {
    let mut bytes = unit.repeat(SECTOR_BYTES / unit.len() + 1).into_bytes();
    bytes.truncate(SECTOR_BYTES);
    bytes
}

/// The data a write tagged `tag` carries: `<tag>s<j:03>.` repeated in sector `j`.
pub fn tagged(tag: &str, sectors: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
    for j in 0..sectors {
        data.extend_from_slice(&repeat_to_sector(&format!("{tag}s{j:03}.")));
    }
    data
}
