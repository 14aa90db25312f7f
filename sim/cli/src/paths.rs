//! Path safety for the verbs that write: never write where a command reads,
//! never write raw sectors into a compressed file, and never leave a
//! half-written output behind.
//!
//! Two names are the same file when they reach the same device and inode
//! (symlinks and hard links included); a path that does not exist yet is
//! no input's.

use std::path::{Path, PathBuf};

use super::CliError;

/// Compressed-file extensions a raw image is never written into.
const COMPRESSED_EXTENSIONS: [&str; 6] = ["gz", "xz", "zst", "bz2", "lz4", "zip"];
/// Leading bytes of compressed files: gzip, xz, zstd, bzip2.
const COMPRESSED_MAGICS: [&[u8]; 4] = [&[0x1f, 0x8b], &[0xfd, b'7', b'z', b'X', b'Z', 0], &[0x28, 0xb5, 0x2f, 0xfd], b"BZh"];

/// The (device, inode) of an existing path, following symlinks.
#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    let canonical = std::fs::canonicalize(path).ok()?;
    let mut hash = crate::trace::Fnv::new();
    hash.bytes(canonical.to_string_lossy().as_bytes());
    Some((0, hash.finish()))
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (file_id(a), file_id(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Refuses `output` (named by `flag`) when it is one of `inputs` (each with
/// its flag).
pub fn check_not_an_input(flag: &str, output: &Path, inputs: &[(&str, &Path)]) -> Result<(), CliError> {
    for (input_flag, input) in inputs {
        if same_file(output, input) {
            return Err(CliError::bad_input(format!(
                "{flag} {} is the same file as {input_flag} {}: refusing to write where this command reads",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Refuses to write raw sectors into a compressed file (by its extension,
/// or, for an existing file, by its first bytes).
pub fn check_not_compressed(flag: &str, path: &Path) -> Result<(), CliError> {
    let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    let by_name = COMPRESSED_EXTENSIONS.contains(&extension.as_str());
    let by_content = || {
        use std::io::Read;
        // Only a regular file's bytes are looked at: opening a FIFO would block.
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return false;
        }
        let mut head = [0u8; 6];
        let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
        COMPRESSED_MAGICS.iter().any(|magic| read >= magic.len() && head.starts_with(magic))
    };
    if by_name || by_content() {
        return Err(CliError::bad_input(format!(
            "{flag} {} is a compressed file: this command writes raw sectors, so decompress it to a copy first (zcat {0} > copy.img)",
            path.display()
        )));
    }
    Ok(())
}

/// An output file written beside its final name and renamed into place only
/// when [`AtomicOutput::commit`] is called: a refused or failed command
/// leaves an existing file untouched and no partial one behind.
#[derive(Debug)]
pub struct AtomicOutput {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
}

impl AtomicOutput {
    /// Creates the temporary file in `target`'s directory. `target` must be a
    /// regular file or not exist: a device or directory is refused.
    pub fn create(flag: &str, target: &Path) -> Result<Self, CliError> {
        if let Ok(meta) = std::fs::metadata(target) {
            if !meta.is_file() {
                return Err(CliError::bad_input(format!("{flag} {}: not a regular file (the output is written as a new file)", target.display())));
            }
        }
        let dir = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target.file_name().ok_or_else(|| CliError::bad_input(format!("{flag} {}: names no file", target.display())))?;
        let mut builder = tempfile::Builder::new();
        // A new output gets the mode any new file gets (0666 less the
        // umask), not the private 0600 of a temporary file.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| CliError::bad_input(format!("{flag} {}: cannot create a file in {}: {e}", target.display(), dir.display())))?;
        Ok(Self { target: target.to_path_buf(), temp })
    }

    /// The file to write.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.temp.as_file_mut()
    }

    /// Syncs the file and renames it over the target, which keeps its mode
    /// if it existed (a replaced file is not made more or less readable).
    pub fn commit(self) -> Result<(), CliError> {
        if let Ok(meta) = std::fs::metadata(&self.target) {
            self.temp
                .as_file()
                .set_permissions(meta.permissions())
                .map_err(|e| CliError::failed(format!("keeping the mode of {}: {e}", self.target.display())))?;
        }
        self.temp.as_file().sync_all().map_err(|e| CliError::failed(format!("writing {}: {e}", self.target.display())))?;
        self.temp.persist(&self.target).map_err(|e| CliError::failed(format!("renaming into {}: {}", self.target.display(), e.error)))?;
        Ok(())
    }
}

/// The directory a file path is written in (`.` for a bare name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses, before any work, an output file the command could write only
/// after it (`flag` names it): a directory or special file, a missing or
/// unwritable directory, or an existing file without `force`.
pub fn check_output(flag: &str, path: &Path, force: bool) -> Result<(), CliError> {
    let shown = path.display();
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(CliError::bad_input(format!("{flag} {shown}: is a directory, not a file")));
        }
        if !meta.is_file() {
            return Err(CliError::bad_input(format!("{flag} {shown}: not a regular file (the output is written as a new file)")));
        }
        if !force {
            return Err(CliError::bad_input(format!("{flag} {shown}: the file exists; pass --force to replace it")));
        }
    }
    if path.file_name().is_none() {
        return Err(CliError::bad_input(format!("{flag} {shown}: names no file")));
    }
    check_writable_dir(flag, path, &directory_of(path))
}

/// Refuses an output directory (`--export`) that is a file, or whose files
/// `names` exist without `force`, or that cannot be created or written.
pub fn check_output_dir(flag: &str, dir: &Path, names: &[&str], force: bool) -> Result<(), CliError> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(CliError::bad_input(format!("{flag} {shown}: is not a directory"))),
        Ok(_) => {
            for name in names {
                let path = dir.join(name);
                if std::fs::symlink_metadata(&path).is_ok() && !force {
                    return Err(CliError::bad_input(format!(
                        "{flag} {shown}: {} exists; pass --force to replace it, or name a new directory",
                        path.display()
                    )));
                }
            }
            check_writable_dir(flag, dir, dir)
        }
        Err(_) => check_writable_dir(flag, dir, &directory_of(dir)),
    }
}

/// Refuses `path` unless `dir` exists and takes a new file.
fn check_writable_dir(flag: &str, path: &Path, dir: &Path) -> Result<(), CliError> {
    if !dir.is_dir() {
        return Err(CliError::bad_input(format!("{flag} {}: the directory {} does not exist", path.display(), dir.display())));
    }
    tempfile::tempfile_in(dir)
        .map(drop)
        .map_err(|e| CliError::bad_input(format!("{flag} {}: cannot write in {}: {e}", path.display(), dir.display())))
}

/// Writes `bytes` to `path` through a temporary file renamed into place:
/// a full disk leaves the old file, or none, never a partial one.
pub fn write_atomic(flag: &str, path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut output = AtomicOutput::create(flag, path)?;
    std::io::Write::write_all(output.file(), bytes).map_err(|e| CliError::failed(format!("{flag} {}: {e}", path.display())))?;
    output.commit().map_err(|e| e.context(flag))
}

/// `dir/name`, or, if that exists, the first free `dir/stem-N.ext`: a new
/// trace never replaces an old one.
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    (2u32..)
        .map(|n| dir.join(if extension.is_empty() { format!("{stem}-{n}") } else { format!("{stem}-{n}.{extension}") }))
        .find(|path| std::fs::symlink_metadata(path).is_err())
        .expect("some number is free")
}

/// Refuses an input (`what` names it) that is not a regular file: opening
/// a FIFO for reading would block until a writer came, a directory reads
/// as an error far from its cause.
pub fn check_regular_input(what: &str, path: &Path) -> Result<(), CliError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(CliError::bad_input(format!("{what} {}: is a directory, not a regular file", path.display()))),
        Ok(meta) if !meta.is_file() => {
            Err(CliError::bad_input(format!("{what} {}: not a regular file (a pipe or device would block or mislead)", path.display())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_name_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "t.toml"), dir.path().join("t.toml"));
        std::fs::write(dir.path().join("t.toml"), "x").unwrap();
        std::fs::write(dir.path().join("t-2.toml"), "x").unwrap();
        assert_eq!(free_name(dir.path(), "t.toml"), dir.path().join("t-3.toml"));
    }

    #[test]
    fn a_replaced_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic("--out", &path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(check_output("--out", &path, false).unwrap_err().message.contains("pass --force"));
        assert!(check_output("--out", &path, true).is_ok());
        assert!(check_output("--out", &dir.path().join("no/x"), true).unwrap_err().message.contains("does not exist"));
    }

    #[test]
    fn links_to_one_file_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, link) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("link"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert!(same_file(&a, &link));
        assert!(!same_file(&a, &b));
        assert!(!same_file(&a, &dir.path().join("missing")));
        assert!(check_not_an_input("--out", &link, &[("--origin", &a)]).is_err());
    }

    #[test]
    fn compressed_files_are_known_by_name_and_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("x.img.gz");
        let disguised = dir.path().join("x.img");
        let raw = dir.path().join("raw.img");
        std::fs::write(&disguised, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
        std::fs::write(&raw, [0u8; 512]).unwrap();
        assert!(check_not_compressed("--cow", &named).is_err());
        assert!(check_not_compressed("--cow", &disguised).is_err());
        assert!(check_not_compressed("--cow", &raw).is_ok());
    }
}
