//! A fast hasher for digests that only ever meet digests of the same process: the oracle's obligations, a crash point's judgement key.
//!
//! `std`'s `DefaultHasher` (SipHash) defends hash tables against chosen
//! keys, which a digest compared for equality does not need; it cost more
//! than the rest of a crash state's comparison with its reference. This is
//! a 128-bit multiply-and-fold mixer over 64-bit words (as wyhash does):
//! fixed, deterministic, and as good at telling two states apart as a
//! 64-bit digest can be for data no one chose to collide.

use std::hash::Hasher;

/// The mixer's constants (the first two of wyhash's).
const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;

/// The high and low halves of `a * b`, folded.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// See the module doc.
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Self(K0)
    }
}

impl Hasher for Digest {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        // The length too: "ab" then "c" is not "a" then "bc".
        self.write_u64(bytes.len() as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = fold(self.0 ^ word, K1);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn write_u8(&mut self, byte: u8) {
        self.write_u64(u64::from(byte));
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn finish(&self) -> u64 {
        fold(self.0, K0 ^ K1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn digest(value: impl Hash) -> u64 {
        let mut hasher = Digest::default();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn equal_values_digest_alike_and_near_ones_apart() {
        assert_eq!(digest((1u64, vec![2u64, 3])), digest((1u64, vec![2u64, 3])));
        let near = [digest((1u64, 2u64)), digest((2u64, 1u64)), digest((1u64, 3u64)), digest([1u64, 2, 0]), digest("ab"), digest("ba")];
        let distinct: std::collections::BTreeSet<u64> = near.iter().copied().collect();
        assert_eq!(distinct.len(), near.len(), "{near:x?}");
        assert_ne!(digest(("ab", "c")), digest(("a", "bc")));
    }
}
