//! Crash images for a real kernel: a failing crash state's origin and COW
//! images, and the device-mapper tables that load them.
//!
//! `snapsim explore … --export DIR` writes, for the state that broke an
//! invariant, `origin.img` and `cowK.img` (whole devices, sector for
//! sector), `tables.txt` (one `dmsetup` table per device, with the loop
//! devices left as `$ORIGIN` and `$COWK`), `load.sh` (attaches the images
//! to loop devices and creates the devices, read-only copies first so the
//! images stay as exported) and `README.txt` saying what broke. Loading them
//! in Linux shows what the kernel makes of the very state our engine was
//! judged on.

use std::path::{Path, PathBuf};

use crate::disk::Image;
use crate::world::Knobs;

/// Writes `images` (origin first, then each COW) of a crash state of a run
/// on `knobs` into `dir`, with the tables and script that load them;
/// returns the files written. `what` is the one-line post-mortem.
pub fn write_crash_state(dir: &Path, knobs: &Knobs, images: &[Image], what: &str) -> std::io::Result<Vec<PathBuf>> {
    assert_eq!(images.len(), knobs.snapshots + 1, "an origin image and one COW image per snapshot");
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        written.push(path);
        Ok(())
    };
    write("origin.img", &images[0].to_bytes())?;
    for (k, image) in images[1..].iter().enumerate() {
        write(&format!("cow{k}.img"), &image.to_bytes())?;
    }
    let tables = tables(knobs);
    write("tables.txt", tables.join("\n").as_bytes())?;
    write("load.sh", load_script(knobs).as_bytes())?;
    let readme = format!(
        "A crash state that broke an invariant in the simulation:\n  {what}\n\n\
         origin.img and cowK.img are the devices as the crash left them.\n\
         tables.txt holds the device-mapper tables (snapshot-origin over the origin, one\n\
         persistent snapshot per COW, store {store}); `sudo sh load.sh` attaches copies of\n\
         the images to loop devices and creates snapsim-origin and snapsim-snapK, then\n\
         prints each device's `dmsetup status` line. Our engine's reading of each COW:\n\
         `snapsim inspect cowK.img`.\n",
        store = knobs.store.table_name(),
    );
    write("README.txt", readme.as_bytes())?;
    Ok(written)
}

/// One table per device: the origin's, then each snapshot's.
fn tables(knobs: &Knobs) -> Vec<String> {
    let sectors = knobs.origin_sectors();
    let mut tables = vec![format!("snapsim-origin: 0 {sectors} snapshot-origin $ORIGIN")];
    for k in 0..knobs.snapshots {
        let chunk = knobs.snapshot_chunk_sectors(k);
        tables.push(format!("snapsim-snap{k}: 0 {sectors} snapshot $ORIGIN $COW{k} {} {chunk}", knobs.store.table_name()));
    }
    tables
}

/// A shell script that loads the exported state on loop devices.
fn load_script(knobs: &Knobs) -> String {
    let mut script = String::from(
        "#!/bin/sh\n# Loads this crash state in the running kernel (needs root and dm-snapshot).\n\
         # The images are copied first: the kernel writes to what it loads.\nset -eu\ncd \"$(dirname \"$0\")\"\n\
         work=$(mktemp -d)\ncp origin.img \"$work/\"\nORIGIN=$(losetup --find --show \"$work/origin.img\")\n",
    );
    for k in 0..knobs.snapshots {
        script += &format!("cp cow{k}.img \"$work/\"\nCOW{k}=$(losetup --find --show \"$work/cow{k}.img\")\n");
    }
    // Snapshots are created before the origin takes writes, as the kernel's
    // own activation order has it; the origin device needs no snapshot to exist.
    for k in 0..knobs.snapshots {
        let chunk = knobs.snapshot_chunk_sectors(k);
        script += &format!(
            "echo \"0 {} snapshot $ORIGIN $COW{k} {} {chunk}\" | dmsetup create snapsim-snap{k}\n",
            knobs.origin_sectors(),
            knobs.store.table_name()
        );
    }
    script += &format!("echo \"0 {} snapshot-origin $ORIGIN\" | dmsetup create snapsim-origin\n", knobs.origin_sectors());
    script += "dmsetup status | grep '^snapsim-'\necho \"loop devices: $ORIGIN; images in $work\"\n";
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_state_holds_every_image_and_a_table_per_device() {
        let knobs = Knobs::plain(8, 16, 32, 2);
        let images: Vec<Image> = [16 * 8, 32 * 8, 32 * 8].into_iter().map(Image::zeroed).collect();
        let dir = tempfile::tempdir().unwrap();
        let written = write_crash_state(dir.path(), &knobs, &images, "I5 …").unwrap();
        let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["origin.img", "cow0.img", "cow1.img", "tables.txt", "load.sh", "README.txt"]);
        assert_eq!(std::fs::metadata(dir.path().join("cow1.img")).unwrap().len(), 32 * 8 * 512);
        let tables = std::fs::read_to_string(dir.path().join("tables.txt")).unwrap();
        assert!(tables.contains("snapsim-snap1: 0 128 snapshot $ORIGIN $COW1 P 8"), "{tables}");
        assert!(std::fs::read_to_string(dir.path().join("load.sh")).unwrap().contains("dmsetup create snapsim-origin"));
    }
}
