//! pool: queue files recycled instead of freed (doc/INTERNALS.md, "Recycled queue files").
//!
//! On a file system without a journal, ext4 skips every inode freed in the last minute when
//! it looks for a free one, so each create walks past all the queue files deleted lately;
//! reusing them skips the allocator. qmail-clean gives a preprocessed envelope to the queue
//! owner's pool ([`Giver::give`]: `todo/id` renamed to `pid/free.<inode>`; never a message
//! file, whose descriptor a delivery program may keep open) and qmail-send its finished
//! `info` and channel files to its own (`bounce/`), while they are not full; the queue
//! service and qmail-todo take one ([`Taker::take`]: renamed to the name they need, written
//! over and cut, [`cut_here`]) before they create a file. The renames never replace
//! anything, and a file in a pool has no other name, so it is nobody's: a crash anywhere
//! leaves at worst a pool file, which qmail-clean's `pid/` sweep removes once it is old.

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

/// The queue owner's pool, relative to the queue (the pid files' directory): envelopes,
/// given by qmail-clean, taken by the queue service for pid files and envelopes.
pub const QUEUE: &str = "pid";

/// qmail-send's pool, relative to the queue (`bounce/`, whose other files are named by a
/// decimal id only): `info`, `local` and `remote` files, given by qmail-send when it removes
/// them, taken by qmail-todo when it writes a message's.
pub const SEND: &str = "bounce";

/// The beginning of a pool file's name; the rest is its inode number.
pub const PREFIX: &str = "free.";

/// The most files a pool holds (counted again after every [`COUNT_EVERY`] files given).
pub const MAX: usize = 4096;

/// Files given between two counts of a pool.
const COUNT_EVERY: u32 = 64;

/// The most names a taker keeps from one reading of `pid/`.
const BATCH: usize = 256;

/// The most pool names a taker reads at once to choose its [`BATCH`] from.
const SCAN: usize = 2 * MAX;

/// Whether `name` (an entry of `pid/`) is a pool file's.
pub fn is_pooled(name: &[u8]) -> bool {
    pooled_inode(name).is_some()
}

/// The inode number a pool file's `name` carries; `None` for any other name.
fn pooled_inode(name: &[u8]) -> Option<u64> {
    let n = name.strip_prefix(PREFIX.as_bytes())?;
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// The giving side of pool `dir`: retires the last names of queue files into it while it
/// holds fewer than [`MAX`] files.
pub struct Giver {
    dir: &'static str,
    /// files given since the pool was last counted (`None`: never counted)
    since: Option<u32>,
    full: bool,
}

/// Empty a finished message file for its next use: every block reads as zeros and its pages
/// leave the page cache (a pipe that holds them by `splice` keeps them as they are, out of the
/// file), while the file keeps its blocks (`FALLOC_FL_ZERO_RANGE` marks them unwritten), so
/// the next message is written over them instead of freeing them (a discard each, on a file
/// system mounted with `discard`) and allocating again (bench/README.md, "Recycled message
/// files"). Where the file system cannot zero a range, the file is cut to nothing instead.
fn empty(file: &File, meta: &fs::Metadata) -> io::Result<()> {
    use nix::fcntl::FallocateFlags as F;
    let block = meta.blksize().max(1);
    let len = meta.len().div_ceil(block) * block;
    if len == 0 {
        return Ok(());
    }
    let len = i64::try_from(len).map_err(io::Error::other)?;
    let flags = F::FALLOC_FL_ZERO_RANGE | F::FALLOC_FL_KEEP_SIZE;
    match nix::fcntl::fallocate(file, flags, 0, len) {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP) => file.set_len(0),
        Err(e) => Err(e.into()),
    }
}

impl Giver {
    pub fn new(dir: &'static str) -> Giver {
        Giver { dir, since: None, full: false }
    }

    /// Retire `path`, a message file's last name (`mess/S/id`): into the pool only when
    /// nobody else can ever read what it will hold next — made by the queue service (no
    /// access for others: a delivery program cannot reopen it through a descriptor it kept
    /// with `O_PATH`), no other name, and no other open file description anywhere (a write
    /// lease, [`crate::lease`]: a delivery program may keep the message on its stdin in a
    /// background process) — and emptied under that lease ([`empty`]: its pages leave the
    /// page cache, so even a pipe that holds them by `splice` keeps only this message). Else,
    /// and on any failure, removed as before.
    pub fn give_message(&mut self, path: &Path) -> io::Result<()> {
        if self.has_room() {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc_nofollow() | nix::fcntl::OFlag::O_NONBLOCK.bits())
                .open(path);
            if let Ok(file) = opened {
                if let Ok(m) = file.metadata() {
                    let private = m.is_file() && m.nlink() == 1 && m.mode() & 0o007 == 0;
                    if private {
                        if let Ok(_lease) = crate::lease::exclusive(&file) {
                            if empty(&file, &m).is_ok() && self.pool(path, &m) {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
        crate::file::remove_if_present(path)
    }

    /// Retire `path`, the last name of a queue file of this pool's owner: into the pool
    /// (renamed to `<dir>/free.<inode>`) unless it is full, else (and whenever the rename
    /// fails) removed. A name already gone is fine.
    pub fn give(&mut self, path: &Path) -> io::Result<()> {
        if self.has_room() {
            match fs::symlink_metadata(path) {
                Ok(m) if m.is_file() && m.nlink() == 1 && self.pool(path, &m) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        crate::file::remove_if_present(path)
    }

    /// Whether the pool takes another file (counted again after every [`COUNT_EVERY`]).
    fn has_room(&mut self) -> bool {
        if !matches!(self.since, Some(n) if n < COUNT_EVERY) {
            self.full = count(self.dir) >= MAX;
            self.since = Some(0);
        }
        !self.full
    }

    /// Rename `path` (whose inode `m` describes) into the pool, never over anything: whether
    /// it went.
    fn pool(&mut self, path: &Path, m: &fs::Metadata) -> bool {
        let to = Path::new(self.dir).join(format!("{PREFIX}{}", m.ino()));
        let went = renameat2(AT_FDCWD, path, AT_FDCWD, &to, RenameFlags::RENAME_NOREPLACE).is_ok();
        if went {
            self.since = self.since.map(|n| n + 1);
        }
        went
    }
}

/// The files in pool `dir`.
fn count(dir: &str) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| is_pooled(e.file_name().as_bytes()))
        .count()
}

/// The taking side of pool `dir`, shared by the threads of a process: names of pool files
/// read from the directory, handed out one at a time.
pub struct Taker {
    dir: &'static str,
    state: Mutex<Names>,
}

#[derive(Default)]
struct Names {
    names: Vec<OsString>,
    /// the modification time of `pid/` when it was last read and held no pool file: it is
    /// read again only once it changed
    empty_at: Option<SystemTime>,
}

impl Taker {
    pub fn new(dir: &'static str) -> Taker {
        Taker { dir, state: Mutex::new(Names::default()) }
    }

    /// A pool file renamed to `target` (which must not exist) and opened for writing at its
    /// start; `None` when the pool has none (the caller then creates the file). Its old
    /// content is still there: the caller writes from the start and then cuts the file where
    /// it stopped ([`cut_here`]), so the blocks are overwritten in place instead of freed and
    /// allocated again.
    pub fn take(&self, target: &Path) -> Option<File> {
        loop {
            let name = self.next()?;
            let from = Path::new(self.dir).join(&name);
            match renameat2(AT_FDCWD, &from, AT_FDCWD, target, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => {}
                // another thread or process took it
                Err(Errno::ENOENT) => continue,
                Err(_) => return None,
            }
            let opened = OpenOptions::new().write(true).custom_flags(libc_nofollow()).open(target);
            return match opened {
                Ok(f) => Some(f),
                Err(_) => {
                    let _ = fs::remove_file(target);
                    None
                }
            };
        }
    }

    fn next(&self) -> Option<OsString> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = s.names.pop() {
            return Some(name);
        }
        let changed = fs::metadata(self.dir).and_then(|m| m.modified()).ok();
        if changed.is_some() && changed == s.empty_at {
            return None;
        }
        // the lowest inode numbers first: the files a sync round rewrites then share
        // inode-table blocks (16 inodes to a 4 KiB block on ext4), and the round writes
        // fewer of them (doc/INTERNALS.md, "Recycled queue files")
        let mut found: Vec<(u64, OsString)> = fs::read_dir(self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let ino = pooled_inode(name.as_bytes())?;
                Some((ino, name))
            })
            .take(SCAN)
            .collect();
        found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        let first = found.len().saturating_sub(BATCH);
        s.names = found.drain(first..).map(|(_, name)| name).collect();
        s.empty_at = if s.names.is_empty() { changed } else { None };
        s.names.pop()
    }
}

/// End `file` where its offset is (what was written to it from its start): the end of a
/// recycled file's old content goes. Every file written after [`Taker::take`] must end so
/// before anyone may read it; for a new file it changes nothing.
pub fn cut_here(file: &File) -> io::Result<()> {
    use std::io::Seek;
    let end = (&mut &*file).stream_position()?;
    file.set_len(end)
}

/// O_NOFOLLOW: a pool file is a plain file of the queue owner; never follow a link.
fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_inode_numbers_are_taken_first() {
        let dir = std::env::temp_dir().join(format!("qmail-pool-order-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // each file holds its own name; names that are not a pool file's are never taken
        for name in [
            "free.30",
            "free.5",
            "free.100",
            "free.7",
            "free.x",
            "123",
            "free.99999999999999999999",
        ] {
            fs::write(dir.join(name), name).unwrap();
        }
        let pool = Taker::new(Box::leak(dir.to_str().unwrap().to_owned().into_boxed_str()));
        let mut taken = Vec::new();
        for i in 0..5 {
            let target = dir.join(format!("taken{i}"));
            match pool.take(&target) {
                Some(_) => taken.push(fs::read_to_string(&target).unwrap()),
                None => break,
            }
        }
        assert_eq!(taken, ["free.5", "free.7", "free.30", "free.100"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reused_file_is_cut_where_its_new_content_ends() {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("qmail-pool-cut-{}", std::process::id()));
        fs::write(&path, "an old and longer content\n").unwrap();
        let mut f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(b"new\n").unwrap();
        cut_here(&f).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
        // a fresh file is left as written
        let mut f = File::create(&path).unwrap();
        f.write_all(b"fresh\n").unwrap();
        cut_here(&f).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fresh\n");
        fs::remove_file(&path).unwrap();
    }

    /// A process that kept a finished message's pages in a pipe (`splice`, then closed the
    /// file) still reads that message after its file held another one: emptying takes the
    /// pages out of the file, and the next message is written to new ones.
    #[test]
    fn a_spliced_message_stays_what_it_was_when_its_file_is_reused() {
        use nix::fcntl::{splice, SpliceFFlags};
        use std::io::{Read, Write};
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("qmail-pool-splice-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("pool")).unwrap();
        let message = dir.join("message");
        let secret: Vec<u8> =
            b"Subject: for sue\n\n".iter().chain(&[b's'; 6000]).copied().collect();
        fs::write(&message, &secret).unwrap();
        fs::set_permissions(&message, fs::Permissions::from_mode(0o640)).unwrap();
        let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
        {
            let file = File::open(&message).unwrap();
            let moved = splice(&file, None, &pipe_w, None, secret.len(), SpliceFFlags::empty());
            assert_eq!(moved.unwrap(), secret.len());
        }
        let ino = fs::metadata(&message).unwrap().ino();
        let pool: &'static str = Box::leak(format!("{}/pool", dir.display()).into_boxed_str());
        Giver::new(pool).give_message(&message).unwrap();
        assert!(dir.join(format!("pool/free.{ino}")).exists(), "recycled");
        let next = dir.join("next");
        let mut f = Taker::new(pool).take(&next).expect("the pooled file");
        f.write_all(&[b't'; 5000]).unwrap();
        cut_here(&f).unwrap();
        drop(f);
        assert_eq!(fs::read(&next).unwrap(), [b't'; 5000]);
        drop(pipe_w);
        let mut held = Vec::new();
        File::from(pipe_r).read_to_end(&mut held).unwrap();
        assert!(held == secret, "the pipe's pages changed: {:?}", &held[..40]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pool_names() {
        assert!(is_pooled(b"free.123"));
        for bad in [&b"free."[..], b"free.12x", b"free", b"123.456.1", b"free.-1", b"xfree.1"] {
            assert!(!is_pooled(bad), "{bad:?}");
        }
    }
}
