//! pool: queue files recycled instead of freed (doc/INTERNALS.md, "Recycled queue files").
//!
//! On a file system without a journal, ext4 skips every inode freed in the last minute when
//! it looks for a free one, so each create walks past all the queue files deleted lately;
//! reusing them skips the allocator. qmail-clean gives a preprocessed envelope to the queue
//! owner's pool ([`Giver::give`]: `todo/id` renamed to `pid/free.<inode>`), and a finished
//! message file only when nobody can read its next message through it
//! ([`Giver::give_message`]: `pid/free.m<inode>`), and qmail-send its finished
//! `info` and channel files to its own (`bounce/`), while they are not full; the queue
//! service and qmail-todo take one of the kind they need ([`Taker::take`]: renamed to the
//! name they need, or [`Taker::open`] for a message file; written over and cut,
//! [`cut_here`]) before they create a file. The renames never replace
//! anything, and a file in a pool has no other name, so it is nobody's: a crash anywhere
//! leaves at worst a pool file, which qmail-clean's `pid/` sweep removes once it is old.

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The queue owner's pool, relative to the queue (the pid files' directory): envelopes,
/// given by qmail-clean, taken by the queue service for pid files and envelopes.
pub const QUEUE: &str = "pid";

/// qmail-send's pool, relative to the queue (`bounce/`, whose other files are named by a
/// decimal id only): `info`, `local` and `remote` files, given by qmail-send when it removes
/// them, taken by qmail-todo when it writes a message's.
pub const SEND: &str = "bounce";

/// The beginning of a pool file's name; the rest is its inode number, after [`MESSAGE`] for
/// a finished message file.
pub const PREFIX: &str = "free.";

/// After [`PREFIX`] in a finished message file's pool name (`free.m<inode>`): such a file
/// keeps a message's blocks, the others (envelopes, `info` and channel files) one block or
/// none, so each goes back to the use it came from (bench/README.md, "Pool files by kind").
const MESSAGE: &str = "m";

/// What a pool file was and will be used for: its blocks fit that use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// a message file (`mess/S/id`)
    Message,
    /// an envelope, `info` or channel file: a line or two
    Small,
}

impl Kind {
    /// This kind's place in a taker's per-kind lists.
    fn slot(self) -> usize {
        match self {
            Kind::Message => 0,
            Kind::Small => 1,
        }
    }
}

/// The most files a pool holds (a giver counts it again once the room it last counted is
/// used up: `Giver::has_room`).
pub const MAX: usize = 4096;

/// Files removed instead of given between two counts of a full pool.
const COUNT_EVERY: u32 = 64;

/// The most names of each kind a taker keeps from one reading of `pid/`.
const BATCH: usize = 256;

/// Takes of a kind that the other kind serves after a reading of the pool found none of it.
const DRY: u32 = 64;

/// The most pool names a taker reads at once to choose its [`BATCH`] from.
const SCAN: usize = 2 * MAX;

/// Whether `name` (an entry of `pid/`) is a pool file's.
pub fn is_pooled(name: &[u8]) -> bool {
    pooled(name).is_some()
}

/// The inode number and kind a pool file's `name` carries; `None` for any other name.
fn pooled(name: &[u8]) -> Option<(u64, Kind)> {
    let n = name.strip_prefix(PREFIX.as_bytes())?;
    let (n, kind) = match n.strip_prefix(MESSAGE.as_bytes()) {
        Some(n) => (n, Kind::Message),
        None => (n, Kind::Small),
    };
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(n).ok()?.parse().ok()?, kind))
}

/// The pool name of a file of `kind` whose inode is `ino`.
fn pool_name(ino: u64, kind: Kind) -> String {
    match kind {
        Kind::Message => format!("{PREFIX}{MESSAGE}{ino}"),
        Kind::Small => format!("{PREFIX}{ino}"),
    }
}

/// The giving side of pool `dir`: retires the last names of queue files into it while it
/// holds fewer than [`MAX`] files.
pub struct Giver {
    dir: &'static str,
    /// files it may still give before it counts the pool again
    room: u32,
    /// files it removes instead before it counts a full pool again
    refused: u32,
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
        Giver { dir, room: 0, refused: 0 }
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
                            if empty(&file, &m).is_ok() && self.pool(path, &m, Kind::Message) {
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
                Ok(m) if m.is_file() && m.nlink() == 1 && self.pool(path, &m, Kind::Small) => {
                    return Ok(())
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        crate::file::remove_if_present(path)
    }

    /// Whether the pool takes another file. A count of `n` files lets this giver give half
    /// of the `MAX - n` the pool has room for before it counts again (another giver of the
    /// same pool may give the other half; takers only make more room): a pool of a thousand
    /// is read once in about 1,500 files given, not once in 64. A full pool is counted
    /// again after [`COUNT_EVERY`] files removed instead.
    fn has_room(&mut self) -> bool {
        if self.room > 0 {
            return true;
        }
        if self.refused > 0 {
            self.refused -= 1;
            return false;
        }
        let held = count(Path::new(self.dir), None);
        match MAX.checked_sub(held) {
            Some(free) if free > 0 => {
                self.room = u32::try_from(free.div_ceil(2)).unwrap_or(u32::MAX);
                true
            }
            _ => {
                self.refused = COUNT_EVERY;
                false
            }
        }
    }

    /// Rename `path` (whose inode `m` describes, a file of `kind`) into the pool, never over
    /// anything: whether it went.
    fn pool(&mut self, path: &Path, m: &fs::Metadata, kind: Kind) -> bool {
        let to = Path::new(self.dir).join(pool_name(m.ino(), kind));
        let went = renameat2(AT_FDCWD, path, AT_FDCWD, &to, RenameFlags::RENAME_NOREPLACE).is_ok();
        if went {
            self.room = self.room.saturating_sub(1);
        }
        went
    }
}

/// The files in pool `dir`, of `kind` only when given (none when it cannot be read).
fn count(dir: &Path, kind: Option<Kind>) -> usize {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            pooled(e.file_name().as_bytes()).is_some_and(|(_, k)| kind.is_none() || kind == Some(k))
        })
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
    /// by kind ([`Kind::Message`] first), each with its highest inode number first
    names: [Vec<OsString>; 2],
    /// the modification time of `pid/` when it was last read and held no pool file: it is
    /// read again only once it changed
    empty_at: Option<SystemTime>,
    /// by kind: takes left that the other kind serves before the pool is read again for this
    /// one, after a reading found none of it
    dry: [u32; 2],
}

impl Taker {
    pub fn new(dir: &'static str) -> Taker {
        Taker { dir, state: Mutex::new(Names::default()) }
    }

    /// A pool file renamed to `target` (which must not exist) and opened for writing at its
    /// start, one of `kind` while the pool has one (else of the other kind: a reused inode
    /// still skips the allocator); `None` when the pool has none (the caller then creates the
    /// file). Its old content is still there: the caller writes from the start and then cuts
    /// the file where it stopped ([`cut_here`]), so the blocks are overwritten in place
    /// instead of freed and allocated again; a file of the same kind has about as many.
    pub fn take(&self, target: &Path, kind: Kind) -> Option<File> {
        loop {
            let name = self.next(kind)?;
            let from = Path::new(self.dir).join(&name);
            match renameat2(AT_FDCWD, &from, AT_FDCWD, target, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => {}
                // another thread or process took it
                Err(Errno::ENOENT) => continue,
                Err(_) => return None,
            }
            // readable too: the queue service reads what it wrote back for its journal
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc_nofollow())
                .open(target);
            return match opened {
                Ok(f) => Some(f),
                Err(_) => {
                    let _ = fs::remove_file(target);
                    None
                }
            };
        }
    }

    /// A pool file of `kind` (else of the other kind, as [`Taker::take`]) opened for writing
    /// (and reading) at its start, still under its pool name, which is returned with it: the queue service
    /// locks a message file and renames it straight to `mess/S/<inode>` (no pid file name in
    /// between). `None` when the pool has none.
    pub fn open(&self, kind: Kind) -> Option<(PathBuf, File)> {
        loop {
            let from = Path::new(self.dir).join(self.next(kind)?);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc_nofollow())
                .open(&from)
            {
                Ok(f) => return Some((from, f)),
                // another process took it (or the sweep removed it)
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => return None,
            }
        }
    }

    fn next(&self, kind: Kind) -> Option<OsString> {
        let (want, other) = (kind.slot(), 1 - kind.slot());
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = s.names[want].pop() {
            return Some(name);
        }
        // the last reading found none of this kind: the other kind's for a while, without
        // reading a directory of thousands again for each
        if s.dry[want] > 0 {
            s.dry[want] -= 1;
            if let Some(name) = s.names[other].pop() {
                return Some(name);
            }
        }
        let changed = fs::metadata(self.dir).and_then(|m| m.modified()).ok();
        if changed.is_some() && changed == s.empty_at {
            return None;
        }
        // the lowest inode numbers first: the files a sync round rewrites then share
        // inode-table blocks (16 inodes to a 4 KiB block on ext4), and the round writes
        // fewer of them (doc/INTERNALS.md, "Recycled queue files")
        let mut found: [Vec<(u64, OsString)>; 2] = Default::default();
        let pooled = fs::read_dir(self.dir).into_iter().flatten().filter_map(|e| {
            let name = e.ok()?.file_name();
            let (ino, k) = pooled(name.as_bytes())?;
            Some((ino, k, name))
        });
        for (ino, k, name) in pooled.take(SCAN) {
            found[k.slot()].push((ino, name));
        }
        for (names, mut found) in s.names.iter_mut().zip(found) {
            found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
            let first = found.len().saturating_sub(BATCH);
            *names = found.drain(first..).map(|(_, name)| name).collect();
        }
        let none = s.names.iter().all(Vec::is_empty);
        s.empty_at = if none { changed } else { None };
        if s.names[want].is_empty() {
            s.dry[want] = DRY;
        }
        match s.names[want].pop() {
            Some(name) => Some(name),
            None => s.names[other].pop(),
        }
    }
}

/// How many files of each kind the queue service keeps ready in its pool, and half of what
/// qmail-todo keeps in qmail-send's (`control/queuepool` overrides it; doc/INTERNALS.md,
/// "Recycled queue files").
pub const READY: usize = 512;

impl Kind {
    /// The bytes of zeros a file made for the pool of this kind holds ([`fill`]): a message
    /// of a few KiB, or an envelope's or `info` file's line.
    fn made_size(self) -> usize {
        match self {
            Kind::Message => 8192,
            Kind::Small => 4096,
        }
    }
}

/// Make new files for pool `dir` until it holds `want` of `kind`, one after another: each an
/// unnamed file (`O_TMPFILE`) of `mode` (the mode the files of that use are made with, which
/// a taker keeps) written full of zeros, then linked in under its pool name. Made in a row,
/// their inode numbers and their blocks follow each other, and as the takers hand out the
/// lowest inode numbers first, the files one sync round rewrites are mostly neighbours: their
/// inode-table blocks go out as a few long requests, where files retired as messages came
/// lie scattered, a request each (bench/README.md, "Queue files made ready in a row"). A
/// crash in between leaves no name behind. Returns how many it made; where the file system
/// has no `O_TMPFILE` it makes none (the pool then fills as files are retired).
pub fn fill(dir: &Path, kind: Kind, want: usize, mode: u32) -> io::Result<usize> {
    use std::io::Write;
    let have = count(dir, Some(kind));
    let zeros = vec![0u8; kind.made_size()];
    let mut made = 0;
    while have + made < want {
        let opened = OpenOptions::new()
            .write(true)
            .mode(mode)
            .custom_flags(nix::fcntl::OFlag::O_TMPFILE.bits())
            .open(dir);
        let mut file = match opened {
            Ok(f) => f,
            // no O_TMPFILE here (EOPNOTSUPP; an old kernel: EISDIR)
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => break,
            Err(e) => return Err(e),
        };
        file.write_all(&zeros)?;
        let name = dir.join(pool_name(file.metadata()?.ino(), kind));
        let unnamed = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        nix::unistd::linkat(
            AT_FDCWD,
            unnamed.as_str(),
            AT_FDCWD,
            &name,
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )?;
        made += 1;
    }
    Ok(made)
}

/// [`fill`] pool `dir` with each `(kind, want, mode)` of `wanted`, then, when it made any,
/// sync the file system once through a descriptor of its own (a write error of these files
/// is then also reported to the next sync of every other descriptor opened before, as it
/// should be). Returns how many files it made.
///
/// All under an exclusive `flock` of the directory above `dir` (the queue), which the other
/// pool's maker takes too: the blocks of files written without a sync are allocated when the
/// sync writes them, in the order they were written, so two makers at once would interleave
/// their files block by block and no round's writes would be neighbours. Without the lock
/// (it could not be had) the files are made all the same.
pub fn make_ready(dir: &Path, wanted: &[(Kind, usize, u32)]) -> io::Result<usize> {
    use nix::fcntl::{Flock, FlockArg};
    let _turn =
        File::open(dir.join("..")).ok().and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    let mut made = 0;
    for &(kind, want, mode) in wanted {
        made += fill(dir, kind, want, mode)?;
    }
    if made > 0 {
        nix::unistd::syncfs(File::open(dir)?)?;
    }
    Ok(made)
}

/// The number of files of each kind `control/queuepool` asks a pool to keep ready, [`READY`]
/// unless set, at most half of [`MAX`]; an unreadable file or a number out of range is an
/// error (the callers log it and keep [`READY`]).
pub fn ready_count(control: &crate::control::Control) -> crate::control::Result<usize> {
    let n = control.int_or("queuepool", READY as u64)?;
    Ok(usize::try_from(n).unwrap_or(MAX).min(MAX / 2))
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

    /// A new, empty directory for test `name` under the temporary directory.
    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qmail-pool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_lowest_inode_numbers_are_taken_first() {
        let dir = fresh_dir("order");
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
            match pool.take(&target, Kind::Small) {
                Some(_) => taken.push(fs::read_to_string(&target).unwrap()),
                None => break,
            }
        }
        assert_eq!(taken, ["free.5", "free.7", "free.30", "free.100"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A message file goes back to holding a message and a small file to a small use, while
    /// the pool has one of the kind; then the other kind serves.
    #[test]
    fn each_kind_is_taken_for_its_own_use_first() {
        let dir = fresh_dir("kinds");
        for name in ["free.30", "free.5", "free.100", "free.m40", "free.m7", "free.m", "free.mx"] {
            fs::write(dir.join(name), name).unwrap();
        }
        let pool = Taker::new(Box::leak(dir.to_str().unwrap().to_owned().into_boxed_str()));
        let mut taken = Vec::new();
        let order = [Kind::Message, Kind::Small, Kind::Message, Kind::Message, Kind::Small];
        for (i, kind) in order.into_iter().chain([Kind::Small]).enumerate() {
            let target = dir.join(format!("taken{i}"));
            match pool.take(&target, kind) {
                Some(_) => taken.push(fs::read_to_string(&target).unwrap()),
                None => break,
            }
        }
        assert_eq!(taken, ["free.m7", "free.5", "free.m40", "free.30", "free.100"]);
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
        assert!(dir.join(format!("pool/free.m{ino}")).exists(), "recycled as a message file");
        let next = dir.join("next");
        let mut f = Taker::new(pool).take(&next, Kind::Message).expect("the pooled file");
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

    /// A giver fills the pool up to `MAX` and no further, counting it again only when the
    /// room it counted is used up; a full pool is counted again after `COUNT_EVERY` files
    /// removed instead, and takes files again once it has room.
    #[test]
    fn a_giver_counts_the_pool_only_when_its_room_is_used_up() {
        let dir = fresh_dir("giver");
        let pool: &'static str = Box::leak(dir.join("pool").to_str().unwrap().into());
        fs::create_dir(pool).unwrap();
        // names count, whatever the files hold
        for i in 0..MAX - 4 {
            fs::write(Path::new(pool).join(format!("free.{}", 1_000_000 + i)), "").unwrap();
        }
        let mut giver = Giver::new(pool);
        let mut give = |n: usize| {
            let path = dir.join(format!("file{n}"));
            fs::write(&path, "x").unwrap();
            giver.give(&path).unwrap();
            assert!(!path.exists(), "given or removed");
        };
        let held = || count(Path::new(pool), None);
        // room for 4: half of it given before a count, then half of what is left, ...
        for n in 0..4 {
            give(n);
        }
        assert_eq!(held(), MAX, "filled to the bound");
        // full: removed, and counted again only after COUNT_EVERY of them
        give(4);
        assert_eq!(held(), MAX);
        for i in 0..8 {
            fs::remove_file(Path::new(pool).join(format!("free.{}", 1_000_000 + i))).unwrap();
        }
        for n in 0..COUNT_EVERY as usize {
            give(5 + n);
            assert_eq!(held(), MAX - 8, "not counted yet");
        }
        give(100);
        assert_eq!(held(), MAX - 7, "counted again: room");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `fill` makes what a pool lacks of a kind, zeros of the kind's size with the mode
    /// asked, each under its pool name; the other kind and other names do not count.
    #[test]
    fn fill_makes_what_the_pool_lacks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir("fill");
        for name in ["free.m5", "free.7", "123", "free.x"] {
            fs::write(dir.join(name), name).unwrap();
        }
        assert_eq!(fill(&dir, Kind::Message, 3, 0o640).unwrap(), 2);
        assert_eq!(fill(&dir, Kind::Message, 3, 0o640).unwrap(), 0);
        assert_eq!(make_ready(&dir, &[(Kind::Small, 4, 0o600), (Kind::Message, 1, 0)]).unwrap(), 3);
        let mut made = [0, 0];
        for e in fs::read_dir(&dir).unwrap() {
            let (name, meta) = (e.as_ref().unwrap().file_name(), e.unwrap().metadata().unwrap());
            let Some((ino, kind)) = pooled(name.as_bytes()) else { continue };
            if ["free.m5", "free.7"].contains(&name.to_str().unwrap()) {
                continue;
            }
            made[kind.slot()] += 1;
            assert_eq!(ino, meta.ino(), "{name:?}");
            let mode = if kind == Kind::Message { 0o640 } else { 0o600 };
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{name:?}");
            let data = fs::read(dir.join(&name)).unwrap();
            assert_eq!(data, vec![0; kind.made_size()], "{name:?}");
        }
        assert_eq!(made, [2, 3]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 9, "no other name left behind");
        assert!(fill(&dir.join("missing"), Kind::Small, 1, 0o600).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `control/queuepool`: the default when missing or without digits (as every number in
    /// the control files), capped at half the pool's bound, and an error (which the callers
    /// log) when it is out of range.
    #[test]
    fn ready_count_reads_queuepool() {
        let home = fresh_dir("ready");
        fs::create_dir_all(home.join("control")).unwrap();
        let control = crate::control::Control::new(&home);
        assert_eq!(ready_count(&control).unwrap(), READY);
        for (text, want) in [
            ("0\n", Some(0)),
            ("7\n", Some(7)),
            ("99999\n", Some(MAX / 2)),
            ("many\n", Some(READY)),
            ("9999999999\n", None),
        ] {
            fs::write(home.join("control/queuepool"), text).unwrap();
            assert_eq!(ready_count(&control).ok(), want, "{text:?}");
        }
        fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn pool_names() {
        assert_eq!(pooled(b"free.123"), Some((123, Kind::Small)));
        assert_eq!(pooled(b"free.m123"), Some((123, Kind::Message)));
        assert_eq!(pool_name(123, Kind::Message), "free.m123");
        assert_eq!(pool_name(123, Kind::Small), "free.123");
        for bad in [
            &b"free."[..],
            b"free.12x",
            b"free",
            b"123.456.1",
            b"free.-1",
            b"xfree.1",
            b"free.m",
            b"free.mm1",
            b"free.m-1",
            b"free.1m",
            b"free.M1",
        ] {
            assert!(!is_pooled(bad), "{bad:?}");
        }
    }
}
