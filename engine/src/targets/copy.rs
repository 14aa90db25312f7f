//! The copy engine (kcopyd's role): copy sectors from one device to another.
//!
//! A copy reads the source, then writes the destination with a plain write:
//! the data reaches the COW's volatile cache only, and becomes durable with
//! the PREFLUSH of the metadata write that commits its exception.

use crate::io::{BlockDevice, IoError, WriteFlags};
use crate::sync::Arc;

/// Why a copy failed (the kernel's `read_err` / `write_err`), with the
/// failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("reading the source: {0}")]
    Read(IoError),
    #[error("writing the target: {0}")]
    Write(IoError),
}

/// Receives the outcome of a copy.
pub type CopyDone = Box<dyn FnOnce(Result<(), CopyError>) + Send + 'static>;

/// Copies `sectors` sectors from `source` at `from` to `target` at `to`.
pub fn copy<S: BlockDevice, T: BlockDevice>(source: &Arc<S>, from: u64, target: &Arc<T>, to: u64, sectors: u32, done: CopyDone) {
    // Copies go between an origin and a COW, which a snapshot never lets be one device.
    debug_assert_ne!(source.identity(), target.identity(), "a copy within one device");
    let target = Arc::clone(target);
    source.read(
        from,
        sectors,
        Box::new(move |read| match read {
            Err(error) => {
                log::warn!("copy: {error}");
                done(Err(CopyError::Read(error)));
            }
            Ok(data) => {
                debug_assert_eq!(data.len(), sectors as usize * crate::io::SECTOR_BYTES, "a read returned other than the sectors asked for");
                target.write(
                    to,
                    data,
                    WriteFlags::PLAIN,
                    Box::new(move |written| {
                        if let Err(error) = &written {
                            log::warn!("copy: {error}");
                        }
                        done(written.map_err(CopyError::Write));
                    }),
                )
            }
        }),
    );
}
