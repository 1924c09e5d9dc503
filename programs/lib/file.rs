//! file: durable file updates. Write a temporary file, fsync it, rename it over the target,
//! fsync the directory, so a reader sees either the old file or the whole new one, and the
//! new one survives a crash once the call returns.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Errors that mean "no such file" for a lookup of a name (a `.qmail` file, a Maildir
/// folder): ENOENT, and names that cannot exist (a path component that is not a directory,
/// too long, a symlink loop). Anything else (EACCES, EIO) is not an answer.
pub fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP)
    )
}

/// Remove `path`; one that is already gone (ENOENT) is fine.
pub fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// fsync a directory, making its entries (new links, renames) durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Create (or truncate) `tmp` with `mode`, let `fill` write it, fsync, rename onto `target`,
/// fsync the target's directory. On failure the temporary file is removed.
pub fn replace_with(
    target: &Path,
    tmp: &Path,
    mode: u32,
    fill: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<()> {
    let result = (|| {
        let file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(tmp)?;
        fill(&file)?;
        file.sync_all()?;
        fs::rename(tmp, target)?;
        fsync_dir(parent_of(target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// What changes when a file or directory is written, replaced or renamed over: its device
/// and inode, size, modification and change time (one `stat` tells). Kept files are read
/// again when it differs (control::Cache, cdb::Kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of what `m` describes.
    pub fn of(m: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn replace_and_fail() {
        let dir = std::env::temp_dir().join(format!("qmail-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("t");
        let tmp = dir.join("t.tmp");
        replace_with(&target, &tmp, 0o644, |mut f| f.write_all(b"one")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"one");
        let err = replace_with(&target, &tmp, 0o644, |_| Err(io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(fs::read(&target).unwrap(), b"one", "old content kept");
        assert!(!tmp.exists(), "temporary file removed");
        fs::remove_dir_all(&dir).unwrap();
    }
}
