//! Disk images as overlays over a shared base.
//!
//! A crash image differs from the durable image in at most the sectors that
//! were written but not made durable, and the durable image differs from the
//! device's starting contents in the sectors written since. So an image is a
//! shared, immutable base plus a small map of the sectors that differ: a
//! crash image of a 64 MiB COW with 64 pending writes is a few kilobytes,
//! not 64 MiB.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::SECTOR_BYTES;

/// One sector's contents, shared between the write that carried it, the
/// cache, and every image that holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sector {
    data: Arc<[u8]>,
    offset: usize,
}

impl std::fmt::Debug for Sector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.bytes();
        let shown = String::from_utf8_lossy(&bytes[..16.min(bytes.len())]).into_owned();
        write!(f, "Sector({shown:?}…)")
    }
}

impl Sector {
    /// Sector `index` of a multi-sector buffer.
    pub fn of(data: &Arc<[u8]>, index: usize) -> Self {
        assert!((index + 1) * SECTOR_BYTES <= data.len(), "sector {index} outside a {}-byte buffer", data.len());
        Self { data: Arc::clone(data), offset: index * SECTOR_BYTES }
    }

    /// A sector holding `bytes` (exactly 512 of them).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        assert_eq!(bytes.len(), SECTOR_BYTES);
        Self { data: Arc::from(bytes), offset: 0 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[self.offset..self.offset + SECTOR_BYTES]
    }
}

/// Every byte of an all-zero base.
static ZERO_SECTOR: [u8; SECTOR_BYTES] = [0; SECTOR_BYTES];

/// A device's contents: a shared base (empty for an all-zero one, so a
/// large zeroed device costs nothing) and the sectors that differ from it.
#[derive(Clone, Debug)]
pub struct Image {
    base: Arc<Vec<u8>>,
    overlay: BTreeMap<u64, Sector>,
    sectors: u64,
}

impl Image {
    /// An image holding `bytes` (a whole number of sectors).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        assert_eq!(bytes.len() % SECTOR_BYTES, 0, "an image is whole sectors");
        let sectors = (bytes.len() / SECTOR_BYTES) as u64;
        Self { base: Arc::new(bytes), overlay: BTreeMap::new(), sectors }
    }

    /// A zeroed image of `sectors` sectors.
    pub fn zeroed(sectors: u64) -> Self {
        Self { base: Arc::new(Vec::new()), overlay: BTreeMap::new(), sectors }
    }

    /// The sectors that differ from the base (or were set to its value).
    pub fn overlay(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.overlay.iter().map(|(&sector, data)| (sector, data.bytes()))
    }

    /// Sector `sector` of the base.
    pub fn base_sector(&self, sector: u64) -> &[u8] {
        if self.base.is_empty() {
            return &ZERO_SECTOR;
        }
        let start = sector as usize * SECTOR_BYTES;
        &self.base[start..start + SECTOR_BYTES]
    }

    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Sectors that differ from the base.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// The contents of `sector`.
    pub fn sector(&self, sector: u64) -> &[u8] {
        match self.overlay.get(&sector) {
            Some(data) => data.bytes(),
            None => self.base_sector(sector),
        }
    }

    /// Replaces `sector`.
    pub fn set(&mut self, sector: u64, data: Sector) {
        assert!(sector < self.sectors, "sector {sector} beyond a {}-sector image", self.sectors);
        self.overlay.insert(sector, data);
    }

    /// `count` sectors from `sector`, as one buffer.
    pub fn read(&self, sector: u64, count: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(count as usize * SECTOR_BYTES);
        for s in sector..sector + count {
            bytes.extend_from_slice(self.sector(s));
        }
        bytes
    }

    /// The whole image as one buffer (a full copy).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = if self.base.is_empty() { vec![0; self.sectors as usize * SECTOR_BYTES] } else { self.base.as_ref().clone() };
        for (&sector, data) in &self.overlay {
            let start = sector as usize * SECTOR_BYTES;
            bytes[start..start + SECTOR_BYTES].copy_from_slice(data.bytes());
        }
        bytes
    }

    /// Folds the overlay into a new base, when it has grown past `limit` sectors.
    pub fn compact(&mut self, limit: usize) {
        if self.overlay.len() > limit {
            *self = Self::from_bytes(self.to_bytes());
        }
    }

    /// A hash of how the image differs from its base: equal for equal images
    /// over the same base, and cheap (it reads only the overlay).
    pub fn delta_hash(&self) -> u64 {
        let mut hash = crate::trace::Fnv::new();
        for (&sector, data) in &self.overlay {
            if data.bytes() != self.base_sector(sector) {
                hash.u64(sector);
                hash.bytes(data.bytes());
            }
        }
        hash.finish()
    }

    /// A hash of the contents, equal for equal images however they are built.
    pub fn content_hash(&self) -> u64 {
        let mut hash = crate::trace::Fnv::new();
        for sector in 0..self.sectors {
            hash.bytes(self.sector(sector));
        }
        hash.finish()
    }
}

impl model::SectorSource for Image {
    fn sector_count(&self) -> u64 {
        self.sectors
    }

    fn sector(&self, sector: u64) -> &[u8] {
        Image::sector(self, sector)
    }
}
