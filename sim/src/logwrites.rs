//! The kernel's dm-log-writes log: its on-disk format, read and written.
//!
//! The `log-writes` target (drivers/md/dm-log-writes.c, documented in the
//! kernel's `Documentation/admin-guide/device-mapper/log-writes.rst`) copies
//! every write to its device onto a log device, in the order in which the
//! writes became durable, not the order they were issued:
//!
//! - a plain write is held back at completion, in completion order;
//! - a PREFLUSH takes, when it is *issued*, the writes completed so far, and
//!   at its own completion logs them, then itself: what a completed flush
//!   covers is exactly what the log holds before its entry;
//! - a FUA write is logged at its completion (it bypassed the cache);
//! - a mark (`dmsetup message DEV 0 mark TEXT`) is logged when it arrives:
//!   everything logged before it was durable then. Plain writes completed
//!   before the mark but not yet flushed come after it.
//!
//! # Format (little-endian)
//!
//! Unit: the device's logical block size (`sector_bytes`, 512 on the disks
//! used here). Block 0 is the superblock: magic `0x6a736677736872`, version
//! 1, the number of entries, `sector_bytes` (u64, u64, u64, u32). Then each
//! entry: one block starting with its header (sector, sectors, flags,
//! data length, four u64; sector and sectors in device blocks), a mark's
//! text after the header in the same block, then `sectors` blocks of data
//! for a write (none for a discard, a mark or an empty flush).
//!
//! The superblock's count is rewritten after every FUA or mark entry, and
//! at the target's removal (which logs a last mark, `dm-log-writes-end`).
//!
//! A log is input from outside: every malformed field is a [`LogError`]
//! naming the entry and the field, never a panic.

use std::fmt;

/// The superblock's magic number.
pub const MAGIC: u64 = 0x006a_7366_7773_6872;
/// The only log version.
pub const VERSION: u64 = 1;
/// Bytes of an entry's header.
pub const ENTRY_HEADER_BYTES: usize = 32;
/// The mark the target logs when it is removed.
pub const END_MARK: &str = "dm-log-writes-end";

/// An entry's flags, as the kernel stores them.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryFlags(pub u64);

impl EntryFlags {
    pub const FLUSH: u64 = 1 << 0;
    pub const FUA: u64 = 1 << 1;
    pub const DISCARD: u64 = 1 << 2;
    pub const MARK: u64 = 1 << 3;
    pub const METADATA: u64 = 1 << 4;
    const KNOWN: u64 = Self::FLUSH | Self::FUA | Self::DISCARD | Self::MARK | Self::METADATA;

    pub fn flush(self) -> bool {
        self.0 & Self::FLUSH != 0
    }
    pub fn fua(self) -> bool {
        self.0 & Self::FUA != 0
    }
    pub fn discard(self) -> bool {
        self.0 & Self::DISCARD != 0
    }
    pub fn mark(self) -> bool {
        self.0 & Self::MARK != 0
    }
    pub fn metadata(self) -> bool {
        self.0 & Self::METADATA != 0
    }
}

impl fmt::Debug for EntryFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for EntryFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(Self::FLUSH, "PREFLUSH"), (Self::FUA, "FUA"), (Self::DISCARD, "DISCARD"), (Self::MARK, "MARK"), (Self::METADATA, "META")];
        let set: Vec<&str> = names.iter().filter(|(bit, _)| self.0 & bit != 0).map(|(_, name)| *name).collect();
        if set.is_empty() { write!(f, "plain") } else { write!(f, "{}", set.join("|")) }
    }
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A write of `data` (a whole number of 512-byte sectors), possibly with
    /// PREFLUSH and FUA.
    Write { data: Vec<u8> },
    /// A flush without data.
    Flush,
    /// A discard of the entry's range (no data is logged).
    Discard,
    /// A mark, with its text.
    Mark(String),
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// First 512-byte sector written (0 for a mark or an empty flush).
    pub sector: u64,
    /// 512-byte sectors written or discarded.
    pub sectors: u64,
    pub flags: EntryFlags,
    pub kind: EntryKind,
}

impl Entry {
    /// A plain (or flagged) write of `data` at `sector`.
    pub fn write(sector: u64, data: Vec<u8>, flags: u64) -> Self {
        debug_assert_eq!(data.len() % 512, 0, "writes are whole sectors");
        Self { sector, sectors: (data.len() / 512) as u64, flags: EntryFlags(flags), kind: EntryKind::Write { data } }
    }

    /// An empty flush.
    pub fn flush() -> Self {
        Self { sector: 0, sectors: 0, flags: EntryFlags(EntryFlags::FLUSH), kind: EntryKind::Flush }
    }

    /// A mark.
    pub fn mark(text: &str) -> Self {
        Self { sector: 0, sectors: 0, flags: EntryFlags(EntryFlags::MARK), kind: EntryKind::Mark(text.to_string()) }
    }

    /// The mark's text, if this is a mark.
    pub fn mark_text(&self) -> Option<&str> {
        match &self.kind {
            EntryKind::Mark(text) => Some(text),
            _ => None,
        }
    }

    /// The written data, if this is a write.
    pub fn data(&self) -> Option<&[u8]> {
        match &self.kind {
            EntryKind::Write { data } => Some(data),
            _ => None,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EntryKind::Mark(text) => write!(f, "mark {text:?}"),
            EntryKind::Flush => write!(f, "flush"),
            EntryKind::Discard => write!(f, "discard {}+{}", self.sector, self.sectors),
            EntryKind::Write { .. } => write!(f, "write {}+{} {}", self.sector, self.sectors, self.flags),
        }
    }
}

/// A whole log: its block size and its entries, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub sector_bytes: u32,
    pub entries: Vec<Entry>,
}

/// Why a log could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the log is {bytes} bytes, shorter than its superblock (28 bytes)")]
    TooShort { bytes: usize },
    #[error("superblock magic is {found:#x}, not dm-log-writes' {MAGIC:#x}: not a dm-log-writes log")]
    BadMagic { found: u64 },
    #[error("log version {found}: only version {VERSION} exists")]
    BadVersion { found: u64 },
    #[error("superblock sector size {found}: must be a power of two from 512 to 4096")]
    BadSectorSize { found: u32 },
    #[error("the superblock counts {entries} entries, more than a {bytes}-byte log can hold")]
    TooManyEntries { entries: u64, bytes: usize },
    #[error("entry {index} at byte {offset}: {what} runs past the end of the {bytes}-byte log")]
    Truncated { index: u64, offset: u64, what: &'static str, bytes: usize },
    #[error("entry {index}: unknown flags {flags:#x}")]
    UnknownFlags { index: u64, flags: u64 },
    #[error("entry {index}: a mark of {length} bytes does not fit after its header in a {sector_bytes}-byte block")]
    MarkTooLong { index: u64, length: u64, sector_bytes: u32 },
    #[error("entry {index}: the mark's text is not UTF-8")]
    MarkNotText { index: u64 },
    #[error("entry {index}: {length} bytes of private data on an entry that is not a mark (this kernel logs none)")]
    UnexpectedData { index: u64, length: u64 },
    #[error("entry {index}: a mark or flush with {sectors} sectors")]
    SectorsOnEmptyEntry { index: u64, sectors: u64 },
    #[error("entry {index}: a write of zero sectors")]
    EmptyWrite { index: u64 },
    #[error("entry {index}: sector {sector} + {sectors} overflows")]
    RangeOverflow { index: u64, sector: u64, sectors: u64 },
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

impl Log {
    /// Reads a log from the bytes of its device.
    pub fn parse(bytes: &[u8]) -> Result<Self, LogError> {
        if bytes.len() < 28 {
            return Err(LogError::TooShort { bytes: bytes.len() });
        }
        let magic = u64_at(bytes, 0);
        if magic != MAGIC {
            return Err(LogError::BadMagic { found: magic });
        }
        let version = u64_at(bytes, 8);
        if version != VERSION {
            return Err(LogError::BadVersion { found: version });
        }
        let count = u64_at(bytes, 16);
        let sector_bytes = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
        if !(512..=4096).contains(&sector_bytes) || !sector_bytes.is_power_of_two() {
            return Err(LogError::BadSectorSize { found: sector_bytes });
        }
        let block = sector_bytes as usize;
        // Every entry takes at least one block after the superblock.
        if count > (bytes.len() / block).saturating_sub(1) as u64 {
            return Err(LogError::TooManyEntries { entries: count, bytes: bytes.len() });
        }
        let per_block = u64::from(sector_bytes / 512);
        let mut entries = Vec::with_capacity(count as usize);
        let mut offset = block;
        for index in 0..count {
            let entry_offset = offset as u64;
            let truncated = |what| LogError::Truncated { index, offset: entry_offset, what, bytes: bytes.len() };
            if offset + block > bytes.len() {
                return Err(truncated("its header block"));
            }
            let header = &bytes[offset..offset + block];
            let (sector, blocks, flags, length) = (u64_at(header, 0), u64_at(header, 8), EntryFlags(u64_at(header, 16)), u64_at(header, 24));
            if flags.0 & !EntryFlags::KNOWN != 0 {
                return Err(LogError::UnknownFlags { index, flags: flags.0 });
            }
            let (sector, sectors) = match (sector.checked_mul(per_block), blocks.checked_mul(per_block)) {
                (Some(s), Some(n)) if s.checked_add(n).is_some() => (s, n),
                _ => return Err(LogError::RangeOverflow { index, sector, sectors: blocks }),
            };
            offset += block;
            let kind = if flags.mark() {
                if length > (block - ENTRY_HEADER_BYTES) as u64 {
                    return Err(LogError::MarkTooLong { index, length, sector_bytes });
                }
                if blocks != 0 {
                    return Err(LogError::SectorsOnEmptyEntry { index, sectors: blocks });
                }
                let text = &header[ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + length as usize];
                EntryKind::Mark(String::from_utf8(text.to_vec()).map_err(|_| LogError::MarkNotText { index })?)
            } else if length != 0 {
                return Err(LogError::UnexpectedData { index, length });
            } else if flags.discard() {
                EntryKind::Discard
            } else if blocks == 0 {
                if !flags.flush() {
                    return Err(LogError::EmptyWrite { index });
                }
                EntryKind::Flush
            } else {
                let data_bytes = blocks.checked_mul(u64::from(sector_bytes)).filter(|&n| n <= (bytes.len() - offset) as u64);
                let Some(data_bytes) = data_bytes else { return Err(truncated("its data")) };
                let data = bytes[offset..offset + data_bytes as usize].to_vec();
                offset += data_bytes as usize;
                EntryKind::Write { data }
            };
            entries.push(Entry { sector, sectors, flags, kind });
        }
        debug_assert_eq!(entries.len() as u64, count);
        Ok(Self { sector_bytes, entries })
    }

    /// The log's bytes, as the kernel would lay them out (512-byte blocks
    /// only: the simulator's devices have no other).
    pub fn encode(&self) -> Vec<u8> {
        assert_eq!(self.sector_bytes, 512, "only 512-byte logs are written");
        let mut out = vec![0u8; 512];
        out[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out[24..28].copy_from_slice(&self.sector_bytes.to_le_bytes());
        for entry in &self.entries {
            let mut header = vec![0u8; 512];
            header[0..8].copy_from_slice(&entry.sector.to_le_bytes());
            header[8..16].copy_from_slice(&entry.sectors.to_le_bytes());
            header[16..24].copy_from_slice(&entry.flags.0.to_le_bytes());
            if let EntryKind::Mark(text) = &entry.kind {
                assert!(text.len() < 512 - ENTRY_HEADER_BYTES, "a mark fits in its block");
                header[24..32].copy_from_slice(&(text.len() as u64).to_le_bytes());
                header[32..32 + text.len()].copy_from_slice(text.as_bytes());
            }
            out.extend_from_slice(&header);
            if let EntryKind::Write { data } = &entry.kind {
                out.extend_from_slice(data);
            }
        }
        out
    }

    /// Indexes of the entries whose mark text is `text`.
    pub fn marks(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.entries.iter().enumerate().filter_map(|(i, e)| e.mark_text().map(|t| (i, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Log {
        Log {
            sector_bytes: 512,
            entries: vec![
                Entry::mark("start"),
                Entry::write(8, vec![1; 1024], 0),
                Entry::flush(),
                Entry::write(0, vec![2; 4096], EntryFlags::FLUSH | EntryFlags::FUA),
                Entry { sector: 64, sectors: 8, flags: EntryFlags(EntryFlags::DISCARD), kind: EntryKind::Discard },
                Entry::mark(END_MARK),
            ],
        }
    }

    #[test]
    fn encode_then_parse_is_the_same_log() {
        let log = sample();
        let bytes = log.encode();
        // superblock, 6 headers, 2 + 8 data sectors
        assert_eq!(bytes.len(), 512 * (1 + 6 + 2 + 8));
        assert_eq!(Log::parse(&bytes), Ok(log));
    }

    #[test]
    fn flags_print_as_the_kernel_names_them() {
        assert_eq!(EntryFlags(EntryFlags::FLUSH | EntryFlags::FUA).to_string(), "PREFLUSH|FUA");
        assert_eq!(EntryFlags(0).to_string(), "plain");
        assert_eq!(sample().entries[3].to_string(), "write 0+8 PREFLUSH|FUA");
    }

    /// Every malformed field is refused with the entry and field named.
    #[test]
    fn every_malformed_log_is_refused_by_name() {
        let good = sample().encode();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            edit(&mut bytes);
            Log::parse(&bytes).unwrap_err()
        };
        let header = |entry: usize| {
            512 * (1 + entry)
                + match entry {
                    0..=1 => 0,
                    2..=3 => 1024,
                    _ => 1024 + 4096,
                }
        };
        assert!(matches!(Log::parse(&good[..10]), Err(LogError::TooShort { bytes: 10 })));
        assert!(matches!(with(&|b| b[0] ^= 1), LogError::BadMagic { .. }));
        assert!(matches!(with(&|b| b[8] = 2), LogError::BadVersion { found: 2 }));
        assert!(matches!(with(&|b| b[24..28].copy_from_slice(&100u32.to_le_bytes())), LogError::BadSectorSize { found: 100 }));
        assert!(matches!(with(&|b| b[16..24].copy_from_slice(&u64::MAX.to_le_bytes())), LogError::TooManyEntries { .. }));
        assert!(matches!(with(&|b| b.truncate(512 * 8)), LogError::Truncated { index: 3, what: "its data", .. }));
        assert!(matches!(with(&|b| b[header(1) + 16] = 0x80), LogError::UnknownFlags { index: 1, flags: 0x80 }));
        assert!(matches!(
            with(&|b| b[header(0) + 24..header(0) + 32].copy_from_slice(&600u64.to_le_bytes())),
            LogError::MarkTooLong { index: 0, .. }
        ));
        assert!(matches!(with(&|b| b[header(0) + 32] = 0xff), LogError::MarkNotText { index: 0 }));
        assert!(matches!(with(&|b| b[header(1) + 24] = 5), LogError::UnexpectedData { index: 1, length: 5 }));
        assert!(matches!(with(&|b| b[header(0) + 8] = 1), LogError::SectorsOnEmptyEntry { index: 0, sectors: 1 }));
        assert!(matches!(with(&|b| b[header(1) + 8] = 0), LogError::EmptyWrite { index: 1 }));
        assert!(matches!(with(&|b| b[header(1)..header(1) + 8].copy_from_slice(&u64::MAX.to_le_bytes())), LogError::RangeOverflow { index: 1, .. }));
    }

    /// A 4 KiB-block log counts sectors in blocks: the reader gives them in
    /// 512-byte sectors.
    #[test]
    fn block_sized_units_become_sectors() {
        let mut bytes = vec![0u8; 4096 * 3];
        bytes[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        bytes[8..16].copy_from_slice(&VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&1u64.to_le_bytes());
        bytes[24..28].copy_from_slice(&4096u32.to_le_bytes());
        bytes[4096..4104].copy_from_slice(&3u64.to_le_bytes());
        bytes[4104..4112].copy_from_slice(&1u64.to_le_bytes());
        let log = Log::parse(&bytes).unwrap();
        assert_eq!((log.entries[0].sector, log.entries[0].sectors), (24, 8));
        assert_eq!(log.entries[0].data().map(<[u8]>::len), Some(4096));
    }
}
