//! Chunk sizes: the unit of copy-on-write, validated as the kernel validates them.
//!
//! `dm_exception_store_set_chunk_size` accepts a chunk size (in 512-byte
//! sectors) only if it is a power of two, a multiple of the logical block size
//! of both the COW and the origin device, and no larger than `INT_MAX >> 9`
//! sectors — so 2^21 sectors (1 GiB) is the largest accepted and 2^22 is refused.

use crate::io::SECTOR_BYTES;

/// The default chunk size when neither the table nor the COW names one: 16 KiB.
pub const DEFAULT_CHUNK_SECTORS: u32 = 32;

/// The largest chunk size the kernel accepts, in sectors (1 GiB).
pub const MAX_CHUNK_SECTORS: u32 = 1 << 21;

/// Why a chunk size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkSizeError {
    #[error("chunk size is 0 sectors: it must be a power of two of at least 1 sector")]
    Zero,
    #[error("chunk size {sectors} sectors is not a power of two")]
    NotPowerOfTwo { sectors: u32 },
    #[error("chunk size {sectors} sectors is too large: the kernel accepts at most {max} sectors", max = MAX_CHUNK_SECTORS)]
    TooLarge { sectors: u32 },
    #[error(
        "chunk size {sectors} sectors ({bytes} bytes) is not a multiple of the {device} device's logical block size of {block_bytes} bytes",
        bytes = u64::from(*sectors) * SECTOR_BYTES as u64
    )]
    NotBlockMultiple { sectors: u32, device: &'static str, block_bytes: u32 },
}

/// A validated chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkSize {
    sectors: u32,
}

impl ChunkSize {
    /// Validates `sectors` against the logical block sizes (in bytes) of the
    /// COW and origin devices, in the kernel's order of checks.
    pub fn new(sectors: u32, cow_block_bytes: u32, origin_block_bytes: u32) -> Result<Self, ChunkSizeError> {
        if sectors == 0 {
            return Err(ChunkSizeError::Zero);
        }
        if !sectors.is_power_of_two() {
            return Err(ChunkSizeError::NotPowerOfTwo { sectors });
        }
        for (device, block_bytes) in [("COW", cow_block_bytes), ("origin", origin_block_bytes)] {
            let block_sectors = (block_bytes as usize / SECTOR_BYTES).max(1) as u32;
            if block_bytes as usize % SECTOR_BYTES != 0 || sectors % block_sectors != 0 {
                return Err(ChunkSizeError::NotBlockMultiple { sectors, device, block_bytes });
            }
        }
        if sectors > MAX_CHUNK_SECTORS {
            return Err(ChunkSizeError::TooLarge { sectors });
        }
        Ok(Self { sectors })
    }

    /// A chunk size known to be valid for 512-byte-block devices.
    ///
    /// # Panics
    /// If `sectors` is not a power of two in `1..=MAX_CHUNK_SECTORS`; use
    /// [`ChunkSize::new`] for untrusted values.
    pub fn from_sectors(sectors: u32) -> Self {
        match Self::new(sectors, SECTOR_BYTES as u32, SECTOR_BYTES as u32) {
            Ok(chunk) => chunk,
            Err(error) => panic!("ChunkSize::from_sectors({sectors}): {error}"),
        }
    }

    /// The chunk size in 512-byte sectors.
    pub fn sectors(self) -> u32 {
        self.sectors
    }

    /// The chunk size in bytes.
    pub fn bytes(self) -> usize {
        self.sectors as usize * SECTOR_BYTES
    }

    /// log2 of the chunk size in sectors.
    pub fn shift(self) -> u32 {
        self.sectors.trailing_zeros()
    }

    /// The first sector of `chunk`.
    pub fn chunk_to_sector(self, chunk: u64) -> u64 {
        chunk << self.shift()
    }

    /// The chunk holding `sector`.
    pub fn sector_to_chunk(self, sector: u64) -> u64 {
        sector >> self.shift()
    }

    /// How many whole chunks a device of `device_sectors` holds.
    pub fn chunks_in(self, device_sectors: u64) -> u64 {
        device_sectors >> self.shift()
    }
}

impl std::fmt::Display for ChunkSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sectors", self.sectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sectors: u32, cow_block: u32, origin_block: u32, expected: Result<u32, ChunkSizeError>) {
        let got = ChunkSize::new(sectors, cow_block, origin_block).map(ChunkSize::sectors);
        assert_eq!(got, expected, "chunk size {sectors} with blocks {cow_block}/{origin_block}");
    }

    #[test]
    fn accepts_powers_of_two_up_to_two_to_the_twenty_one() {
        for shift in 0..=21 {
            check(1 << shift, 512, 512, Ok(1 << shift));
        }
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        check(0, 512, 512, Err(ChunkSizeError::Zero));
        check(24, 512, 512, Err(ChunkSizeError::NotPowerOfTwo { sectors: 24 }));
        check(1 << 22, 512, 512, Err(ChunkSizeError::TooLarge { sectors: 1 << 22 }));
        check(4, 4096, 512, Err(ChunkSizeError::NotBlockMultiple { sectors: 4, device: "COW", block_bytes: 4096 }));
        check(4, 512, 4096, Err(ChunkSizeError::NotBlockMultiple { sectors: 4, device: "origin", block_bytes: 4096 }));
        check(8, 4096, 4096, Ok(8));
    }

    #[test]
    fn error_messages_name_the_value() {
        let message = ChunkSize::new(1 << 22, 512, 512).unwrap_err().to_string();
        assert!(message.contains("4194304"), "{message}");
        let message = ChunkSize::new(4, 4096, 512).unwrap_err().to_string();
        assert!(message.contains("COW") && message.contains("4096"), "{message}");
    }
}
