//! maildir: crash-safe delivery into a Maildir (doc/qmail-local.8, DESCRIPTION).
//!
//! The sequence: create `tmp/NAME` exclusively (mode 0600), write the header lines and the
//! message, fsync, close → link to `new/NAME,S=<size>` → unlink `tmp/NAME` → fsync `new/`.
//! A reader never sees a partial file in `new/`: the link is made only after the data is on
//! disk, and once [`deliver`] returns `Ok` the new entry survives a crash. On any failure the
//! temporary file (and a link that could not be made durable) is removed.
//!
//! [`stage`] and [`Staged::commit`] split the sequence at the point where quota accounting
//! (doc/qmail-local.8, MAILDIRQUOTA) needs to act: the file is written and its size known, but not
//! yet in `new/`. Dropping a [`Staged`] without committing removes the temporary file.
//!
//! [`stage_unsynced`] and [`commit_batch`] split it for a batch (qmail-local's delivery
//! worker): the files of several deliveries are written without their fsync, then one
//! `syncfs` per file system makes all their data durable, each is linked into `new/`, and one
//! more `syncfs` per file system makes the links durable: the same order and the same guarantee,
//! with two rounds of syncs for the whole batch instead of two per message. [`step`] lets
//! batches follow each other in a pipeline, one round of syncs per batch: the sync that makes
//! one batch's links durable also makes the next one's data durable.
//!
//! Names are `SECONDS.MmicrosPpidQseq.HOST`: the sequence number makes them unique for any
//! number of deliveries from one process in one second; `/` and `:` in the host name are
//! written as `\057` and `\072`, as the Maildir convention asks.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many names are tried when `tmp/NAME` already exists.
const TRIES: u32 = 3;

/// The step that failed; every one is temporary (the message stays queued).
#[derive(Debug)]
pub enum MaildirError {
    /// `tmp/` or `new/` is missing or not a directory: not a Maildir (yet).
    NotMaildir(PathBuf, io::Error),
    /// No unused name in `tmp/` after a few tries.
    NoName,
    /// Creating or writing `tmp/NAME` failed (full disk, quota, I/O error).
    Write(io::Error),
    /// Reading the message failed.
    Read(io::Error),
    /// Linking into `new/` or making it durable failed.
    Link(io::Error),
}

impl MaildirError {
    /// The enhanced status code: `4.2.2` for a full mailbox or disk quota, `4.3.1` for a full
    /// file system, `4.2.1` for a missing Maildir, `4.3.0` otherwise.
    pub fn status(&self) -> &'static str {
        let io = match self {
            MaildirError::NotMaildir(..) => return "4.2.1",
            MaildirError::NoName => return "4.3.0",
            MaildirError::Write(e) | MaildirError::Read(e) | MaildirError::Link(e) => e,
        };
        match io.raw_os_error() {
            Some(libc::EDQUOT) => "4.2.2",
            Some(libc::ENOSPC) => "4.3.1",
            _ => "4.3.0",
        }
    }
}

impl fmt::Display for MaildirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildirError::NotMaildir(p, e) => write!(f, "no {}: {e}", p.display()),
            MaildirError::NoName => f.write_str("no unique file name in tmp/"),
            MaildirError::Write(e) => write!(f, "unable to write to tmp/: {e}"),
            MaildirError::Read(e) => write!(f, "unable to read message: {e}"),
            MaildirError::Link(e) => write!(f, "unable to link into new/: {e}"),
        }
    }
}

impl std::error::Error for MaildirError {}

/// Create the Maildir `maildir` where it is missing: the directory itself and its `tmp/`,
/// `cur/` and `new/`, mode 0700 (upstream's AUTOMAILDIRMAKE). The parent must exist; an
/// existing part that is not a directory is an error ("corrupted").
pub fn make(maildir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o700);
    for dir in
        [maildir.to_path_buf(), maildir.join("tmp"), maildir.join("cur"), maildir.join("new")]
    {
        match builder.create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::metadata(&dir)?.is_dir() {
                    return Err(io::Error::other(format!("{} is not a directory", dir.display())));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deliver `header` followed by `message` into `maildir`; the path of the new file.
pub fn deliver(
    maildir: &Path,
    header: &[u8],
    message: &mut impl Read,
) -> Result<PathBuf, MaildirError> {
    stage(maildir, header, message)?.commit()
}

/// A message written to `tmp/` (and fsynced, unless staged for a batch), not yet in `new/`.
#[derive(Debug)]
pub struct Staged {
    maildir: PathBuf,
    name: String,
    size: u64,
    done: bool,
    /// Still open and not yet synced: a file of [`stage_unsynced`].
    file: Option<File>,
}

/// Write `header` and `message` to a new file in `maildir/tmp`, fsync and close it.
pub fn stage(
    maildir: &Path,
    header: &[u8],
    message: &mut impl Read,
) -> Result<Staged, MaildirError> {
    stage_with(maildir, header, message, true)
}

/// Write `header` and `message` to a new file in `maildir/tmp` and keep it open, unsynced,
/// for [`commit_batch`]. A relative `maildir` is taken from the current directory now (the
/// batch is committed after other deliveries changed it).
pub fn stage_unsynced(
    maildir: &Path,
    header: &[u8],
    message: &mut impl Read,
) -> Result<Staged, MaildirError> {
    let absolute = std::path::absolute(maildir)
        .map_err(|e| MaildirError::NotMaildir(maildir.to_path_buf(), e))?;
    let mut staged = stage_with(maildir, header, message, false)?;
    staged.maildir = absolute;
    Ok(staged)
}

fn stage_with(
    maildir: &Path,
    header: &[u8],
    message: &mut impl Read,
    sync: bool,
) -> Result<Staged, MaildirError> {
    for sub in ["tmp", "new"] {
        let dir = maildir.join(sub);
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(MaildirError::NotMaildir(dir, io::Error::other("not a directory")))
            }
            Err(e) => return Err(MaildirError::NotMaildir(dir, e)),
        }
    }
    let (file, name) = create_tmp(maildir)?;
    // from here on the Staged value owns the file and removes it on failure
    let mut staged =
        Staged { maildir: maildir.to_path_buf(), name, size: 0, done: false, file: None };
    let (size, file) = write_all(file, header, message, sync)?;
    (staged.size, staged.file) = (size, file);
    Ok(staged)
}

/// Make the files of [`stage_unsynced`] durable and link each into `new/`: one `syncfs` per
/// file system, the links, then one more `syncfs` per file system for all their `new/`
/// entries (one covers every directory there, however many Maildirs the batch went to);
/// then the temporary names go. On the file system of `home`'s queue, both are rounds of the
/// queue service's syncs when it runs ([`crate::queue::sync_fs`]): two `syncfs` shared with
/// everybody per batch. One result per file, in order: `Ok` only once its data and its
/// `new/` entry are on disk; a failed one is removed (its temporary file, and a link that
/// could not be made durable). Two [`step`]s.
pub fn commit_batch(home: &Path, staged: Vec<Staged>) -> Vec<Result<PathBuf, MaildirError>> {
    let (_, linked) = step(home, Linked::default(), staged);
    step(home, linked, Vec::new()).0
}

/// A batch of [`stage_unsynced`] files whose data is durable and which are linked into
/// `new/`, the links not yet durable: the next [`step`]'s syncs make them so.
#[derive(Default)]
pub struct Linked {
    staged: Vec<Staged>,
    /// per file: its data durable and its link made, or why not
    results: Vec<Result<(), MaildirError>>,
    /// per file: its name in `new/`, once linked
    targets: Vec<Option<PathBuf>>,
    /// per file: its file system (none for a file staged already synced)
    devs: Vec<Option<u64>>,
}

impl Linked {
    /// Whether the batch has no file.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }
}

/// One step of committing batches in a pipeline (qmail-local's delivery worker): one sync per
/// file system that either `linked` (the batch before, its files linked into `new/`) or
/// `staged` (the next, written unsynced) is on, shared by both: it makes `linked`'s links
/// durable, whose results (as [`commit_batch`]'s) it returns, and `staged`'s data, which it
/// then links into `new/` for the step after. Syncs are [`crate::queue::sync_fs`]'s, so on the
/// queue's file system a round of the queue service's: under load a batch costs one round,
/// not two. A sync begun after the call covers both: the links were made before it, the
/// files written before it.
pub fn step(
    home: &Path,
    linked: Linked,
    staged: Vec<Staged>,
) -> (Vec<Result<PathBuf, MaildirError>>, Linked) {
    // one sync per file system, through the first file there that opens (a `new/` that is
    // gone fails only its own file, not the file system's other ones); a file staged already
    // synced (no file system known) has its own `new/` synced
    let mut synced: Vec<(u64, Result<(), io::ErrorKind>)> = Vec::new();
    let mut sync = |dev: Option<u64>, through: Through| -> Result<(), io::ErrorKind> {
        if let Some((_, r)) = synced.iter().find(|(d, _)| Some(*d) == dev) {
            return *r;
        }
        let opened;
        let file = match through {
            Through::File(f) => f,
            Through::Dir(dir) => {
                opened = File::open(dir).map_err(|e| e.kind())?;
                &opened
            }
        };
        let r = crate::queue::sync_fs(home, file).map_err(|e| e.kind());
        if let Some(dev) = dev {
            synced.push((dev, r));
        }
        r
    };
    // the data of the next batch: its file systems first, each file's own descriptor
    let mut staged = staged;
    let mut next = Linked {
        results: Vec::with_capacity(staged.len()),
        targets: Vec::with_capacity(staged.len()),
        devs: Vec::with_capacity(staged.len()),
        staged: Vec::new(),
    };
    let mut files: Vec<Option<File>> = Vec::with_capacity(staged.len());
    for s in &mut staged {
        let file = s.file.take();
        let dev = match file.as_ref().map(|f| f.metadata().map(|m| m.dev())) {
            None => None,
            Some(Ok(dev)) => Some(dev),
            Some(Err(e)) => {
                next.results.push(Err(MaildirError::Write(e)));
                next.devs.push(None);
                files.push(None);
                continue;
            }
        };
        next.results.push(Ok(()));
        next.devs.push(dev);
        files.push(file);
    }
    // the links of the batch before: one sync per file system of theirs (a link is on its
    // file's file system; a file staged already synced has its own new/ synced)
    let mut dir_sync = Vec::with_capacity(linked.staged.len());
    for ((s, target), dev) in linked.staged.iter().zip(&linked.targets).zip(&linked.devs) {
        dir_sync.push(target.as_ref().map(|_| sync(*dev, Through::Dir(s.maildir.join("new")))));
    }
    // the data of the next batch, then the close (a close error is a write error)
    for ((file, dev), r) in files.iter_mut().zip(&next.devs).zip(&mut next.results) {
        let Some(f) = file.take() else { continue };
        let synced = sync(*dev, Through::File(&f));
        let closed = nix::unistd::close(f).map_err(io::Error::from);
        *r = match (synced, closed) {
            (Err(kind), _) => Err(MaildirError::Write(kind.into())),
            (_, Err(e)) => Err(MaildirError::Write(e)),
            _ => Ok(()),
        };
    }
    // the next batch's links
    for (s, r) in staged.iter().zip(next.results.iter_mut()) {
        let target = s.maildir.join("new").join(s.base());
        let made = r.is_ok() && {
            match fs::hard_link(s.tmp_path(), &target) {
                Ok(()) => true,
                Err(e) => {
                    *r = Err(MaildirError::Link(e));
                    false
                }
            }
        };
        next.targets.push(made.then_some(target));
    }
    next.staged = staged;
    (finish(linked, dir_sync), next)
}

/// What a [`step`] syncs a file system through: one of its files, or a directory to open.
enum Through<'a> {
    File(&'a File),
    Dir(PathBuf),
}

/// The results of a linked batch once its links' syncs are known (`dir`, per file).
fn finish(
    linked: Linked,
    dir: Vec<Option<Result<(), io::ErrorKind>>>,
) -> Vec<Result<PathBuf, MaildirError>> {
    let Linked { staged, results, targets, .. } = linked;
    let mut out = Vec::with_capacity(staged.len());
    for (((mut s, target), r), dir) in staged.into_iter().zip(targets).zip(results).zip(dir) {
        out.push(match (r, target, dir) {
            (Err(e), _, _) => Err(e),
            (Ok(()), Some(t), Some(Err(kind))) => {
                // not durable: take it back, the delivery is retried
                let _ = fs::remove_file(&t);
                Err(MaildirError::Link(kind.into()))
            }
            (Ok(()), Some(t), _) => {
                s.done = true;
                let _ = fs::remove_file(s.tmp_path());
                Ok(t)
            }
            (Ok(()), None, _) => Err(MaildirError::Link(io::Error::other("not linked"))),
        });
    }
    out
}

impl Staged {
    /// The size of the file as written (header lines included).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The temporary file.
    pub fn tmp_path(&self) -> PathBuf {
        self.maildir.join("tmp").join(&self.name)
    }

    /// The base name it will have: `NAME,S=<size>`.
    pub fn base(&self) -> String {
        format!("{},S={}", self.name, self.size)
    }

    /// Link into `new/NAME,S=<size>`, unlink the temporary file, fsync `new/`.
    pub fn commit(self) -> Result<PathBuf, MaildirError> {
        self.commit_into("new", "")
    }

    /// Link into `<sub>/NAME,S=<size><info>` (imapd's APPEND: `cur/` with `:2,` and the
    /// flags), unlink the temporary file, fsync `<sub>/`.
    pub fn commit_into(mut self, sub: &str, info: &str) -> Result<PathBuf, MaildirError> {
        let target = self.maildir.join(sub).join(format!("{}{info}", self.base()));
        fs::hard_link(self.tmp_path(), &target).map_err(MaildirError::Link)?;
        // the new name is on disk before the delivery is reported done (doc/INTERNALS.md,
        // "fsyncs per message"); the tmp/ name goes after, unsynced: a crash leaves a stray file
        if let Err(e) = crate::file::fsync_dir(&self.maildir.join(sub)) {
            // not durable: take it back, the delivery is retried
            let _ = fs::remove_file(&target);
            return Err(MaildirError::Link(e));
        }
        self.done = true;
        let _ = fs::remove_file(self.tmp_path());
        Ok(target)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(self.tmp_path());
        }
    }
}

/// The size of [`write_all`]'s buffer.
const COPY_BUF: usize = 64 * 1024;

/// Write `header` and then `message`; then fsync and close (`sync`), or hand the file back
/// unsynced. The number of bytes written.
fn write_all(
    file: File,
    header: &[u8],
    message: &mut impl Read,
    sync: bool,
) -> Result<(u64, Option<File>), MaildirError> {
    // a delivery worker makes one delivery after another: the buffer is kept for the next
    let size = copy(&file, header, message, &mut crate::spare::Spare::sized(COPY_BUF))?;
    if !sync {
        return Ok((size, Some(file)));
    }
    // the data before the link: no empty or short file in new/ (doc/INTERNALS.md, "fsyncs per
    // message")
    file.sync_all().map_err(MaildirError::Write)?;
    // close explicitly: a close error (NFS) is a write error
    nix::unistd::close(file).map_err(|e| MaildirError::Write(e.into()))?;
    Ok((size, None))
}

/// `header`, then `message` to its end, into `out` through `buf` (filled up before each write,
/// so a short message with its header is one write).
fn copy(
    mut out: &File,
    header: &[u8],
    message: &mut impl Read,
    buf: &mut [u8],
) -> Result<u64, MaildirError> {
    let mut fill = 0;
    if header.len() <= buf.len() / 2 {
        buf[..header.len()].copy_from_slice(header);
        fill = header.len();
    } else {
        out.write_all(header).map_err(MaildirError::Write)?;
    }
    let mut size = header.len() as u64;
    loop {
        let n = match crate::timeoutio::read(message, &mut buf[fill..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(MaildirError::Read(e)),
        };
        size += n as u64;
        fill += n;
        if fill == buf.len() {
            out.write_all(buf).map_err(MaildirError::Write)?;
            fill = 0;
        }
    }
    out.write_all(&buf[..fill]).map_err(MaildirError::Write)?;
    Ok(size)
}

/// Create `tmp/NAME` exclusively, trying a few fresh names if one is taken.
fn create_tmp(maildir: &Path) -> Result<(File, String), MaildirError> {
    for _ in 0..TRIES {
        let name = unique_name();
        let path = maildir.join("tmp").join(&name);
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(f) => return Ok((f, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(MaildirError::Write(e)),
        }
    }
    Err(MaildirError::NoName)
}

/// Files in `tmp/` last read longer ago than this are left over from a dead delivery.
pub const TMP_AGE: Duration = Duration::from_secs(36 * 3600);

/// Remove the files of `maildir/tmp/` not read for [`TMP_AGE`] (best effort, as upstream;
/// qmail-pop3d and imapd do it when a session opens a folder).
pub fn clean_tmp(maildir: &Path, now: SystemTime) {
    let Ok(list) = fs::read_dir(maildir.join("tmp")) else { return };
    let limit = now.checked_sub(TMP_AGE).and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    let Some(limit) = limit else { return };
    for entry in list.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && (meta.atime().max(0) as u64) < limit.as_secs() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A new name, `SECONDS.MmicrosPpidQseq.HOST`, different on every call in this process.
pub fn unique_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    // asked once per process, as a process per delivery did (a delivery worker makes many)
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_string());
        safe_host(&host)
    });
    format!("{}.M{}P{}Q{}.{}", now.as_secs(), now.subsec_micros(), std::process::id(), seq, host)
}

/// A host name fit for a Maildir file name: at most 64 bytes, `/` as `\057`, `:` as `\072`.
pub fn safe_host(host: &str) -> String {
    let mut out = String::new();
    for c in host.chars().take(64) {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            c if c.is_control() => out.push('_'),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn tempdir(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let d =
            std::env::temp_dir().join(format!("qmail-maildir-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn make(dir: &Path) {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn delivers_once_with_size() {
        let d = tempdir("ok");
        let md = d.join("Maildir");
        make(&md);
        let path = deliver(&md, b"Return-Path: <a@b>\n", &mut &b"Subject: x\n\nhi\n"[..]).unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(data, b"Return-Path: <a@b>\nSubject: x\n\nhi\n");
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.ends_with(&format!(",S={}", data.len())), "{name}");
        assert_eq!(entries(&md.join("new")), vec![name]);
        assert!(entries(&md.join("tmp")).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    /// A reader that hands out its bytes a few at a time, as a pipe may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn long_headers_and_messages_cross_the_buffer_whole() {
        let d = tempdir("long");
        let md = d.join("Maildir");
        make(&md);
        // headers short and longer than half the buffer, messages around its size, read in
        // small and odd pieces: every file holds exactly header then message, and the same
        // thread's buffer serves each delivery in turn
        let body: Vec<u8> = (0..3 * COPY_BUF + 17).map(|i| (i % 251) as u8).collect();
        for (hlen, blen, piece) in [
            (20, 0, 7),
            (20, COPY_BUF - 20, 4096),
            (20, COPY_BUF - 19, 65536),
            (COPY_BUF / 2 + 1, COPY_BUF, 1000),
            (COPY_BUF * 2, 5, 3),
            (100, body.len(), 65536),
        ] {
            let header = vec![b'h'; hlen];
            let message = &body[..blen];
            let path = deliver(&md, &header, &mut Trickle(message, piece)).unwrap();
            let data = fs::read(&path).unwrap();
            assert_eq!(data.len(), hlen + blen, "{hlen} {blen} {piece}");
            assert!(data[..hlen] == header[..] && data[hlen..] == message[..]);
            fs::remove_file(&path).unwrap();
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failures_leave_nothing() {
        let d = tempdir("fail");
        // not a Maildir at all
        let err = deliver(&d.join("none"), b"", &mut &b"x"[..]).unwrap_err();
        assert!(matches!(err, MaildirError::NotMaildir(..)), "{err}");
        assert_eq!(err.status(), "4.2.1");
        // tmp is a regular file
        let md = d.join("md1");
        fs::create_dir_all(md.join("new")).unwrap();
        fs::write(md.join("tmp"), b"").unwrap();
        assert!(matches!(deliver(&md, b"", &mut &b"x"[..]), Err(MaildirError::NotMaildir(..))));
        // the message cannot be read: the tmp file is removed, nothing in new/
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let md = d.join("md2");
        make(&md);
        assert!(matches!(deliver(&md, b"h\n", &mut Broken), Err(MaildirError::Read(_))));
        assert!(entries(&md.join("tmp")).is_empty());
        assert!(entries(&md.join("new")).is_empty());
        // a staged message dropped without commit is removed
        let staged = stage(&md, b"", &mut &b"abc"[..]).unwrap();
        assert_eq!(staged.size(), 3);
        assert!(staged.tmp_path().exists());
        drop(staged);
        assert!(entries(&md.join("tmp")).is_empty());
        // new/ vanishes between stage and commit: the link fails, tmp is cleaned up
        let staged = stage(&md, b"", &mut &b"abc"[..]).unwrap();
        fs::remove_dir(md.join("new")).unwrap();
        assert!(matches!(staged.commit(), Err(MaildirError::Link(_))));
        assert!(entries(&md.join("tmp")).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn names_are_unique_and_safe() {
        let names: HashSet<String> = (0..10_000).map(|_| unique_name()).collect();
        assert_eq!(names.len(), 10_000);
        let rows: &[(&str, &str)] = &[
            ("mx.example.org", "mx.example.org"),
            ("a/b:c", "a\\057b\\072c"),
            ("", "localhost"),
            ("a\nb", "a_b"),
        ];
        for &(host, want) in rows {
            assert_eq!(safe_host(host), want);
        }
        assert_eq!(safe_host(&"x".repeat(300)).len(), 64);
    }

    #[test]
    fn many_deliveries_in_one_second() {
        let d = tempdir("many");
        let md = d.join("Maildir");
        make(&md);
        for i in 0..200 {
            deliver(&md, b"", &mut format!("{i}\n").as_bytes()).unwrap();
        }
        assert_eq!(entries(&md.join("new")).len(), 200);
        assert!(entries(&md.join("tmp")).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_batch_commits_each_file_or_removes_it() {
        let a = tempdir("batch-a");
        let b = tempdir("batch-b");
        make(&a);
        make(&b);
        let mut staged = Vec::new();
        for (dir, body) in [(&a, "one"), (&b, "two"), (&a, "three")] {
            let s = stage_unsynced(dir, b"H: x\n", &mut body.as_bytes()).unwrap();
            assert!(s.file.is_some(), "kept open, unsynced");
            staged.push(s);
        }
        // one that cannot be linked: its new/ is gone
        let c = tempdir("batch-c");
        make(&c);
        staged.push(stage_unsynced(&c, b"", &mut &b"four"[..]).unwrap());
        fs::remove_dir(c.join("new")).unwrap();
        let results = commit_batch(Path::new("/nonexistent"), staged);
        assert_eq!(results.len(), 4);
        let paths: Vec<&PathBuf> = results[..3].iter().map(|r| r.as_ref().unwrap()).collect();
        assert_eq!(fs::read(paths[0]).unwrap(), b"H: x\none");
        assert_eq!(fs::read(paths[1]).unwrap(), b"H: x\ntwo");
        assert!(paths[2].starts_with(a.join("new")));
        assert!(matches!(results[3], Err(MaildirError::Link(_))), "{:?}", results[3]);
        assert_eq!(entries(&a.join("new")).len(), 2);
        for dir in [&a, &b, &c] {
            assert!(entries(&dir.join("tmp")).is_empty(), "tmp/ of {} emptied", dir.display());
        }
        assert!(commit_batch(Path::new("/nonexistent"), Vec::new()).is_empty());
        for dir in [a, b, c] {
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn steps_answer_each_batch_after_the_next_ones_sync() {
        let a = tempdir("step-a");
        make(&a);
        let home = Path::new("/nonexistent");
        let batch = |bodies: &[&str]| -> Vec<Staged> {
            bodies.iter().map(|b| stage_unsynced(&a, b"", &mut b.as_bytes()).unwrap()).collect()
        };
        // the first step: no batch before, so no results; the first batch is linked
        let (done, linked) = step(home, Linked::default(), batch(&["one", "two"]));
        assert!(done.is_empty());
        assert_eq!(entries(&a.join("new")).len(), 2, "linked");
        assert_eq!(entries(&a.join("tmp")).len(), 2, "temporary names kept until the results");
        // the second: the first batch's results, the second linked; one of it cannot be
        let second = batch(&["three", "four"]);
        fs::remove_file(second[1].tmp_path()).unwrap();
        let (done, linked) = step(home, linked, second);
        assert_eq!(done.len(), 2);
        let mut got: Vec<Vec<u8>> =
            done.iter().map(|r| fs::read(r.as_ref().unwrap()).unwrap()).collect();
        got.sort();
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(entries(&a.join("new")).len(), 3);
        assert_eq!(entries(&a.join("tmp")).len(), 1, "the second batch's file that was linked");
        // the last: nothing new, the second batch's results
        let (done, linked) = step(home, linked, Vec::new());
        assert!(linked.is_empty());
        assert_eq!(done.len(), 2);
        assert_eq!(fs::read(done[0].as_ref().unwrap()).unwrap(), b"three");
        assert!(matches!(done[1], Err(MaildirError::Link(_))), "{:?}", done[1]);
        assert_eq!(entries(&a.join("new")).len(), 3);
        assert!(entries(&a.join("tmp")).is_empty());
        fs::remove_dir_all(a).unwrap();
    }

    #[test]
    fn a_step_fails_only_the_file_whose_new_is_gone() {
        let (a, b) = (tempdir("gone-a"), tempdir("gone-b"));
        make(&a);
        make(&b);
        let home = Path::new("/nonexistent");
        let staged = |dir: &Path| vec![stage_unsynced(dir, b"", &mut &b"x"[..]).unwrap()];
        let (_, linked) = step(home, Linked::default(), staged(&a));
        // a's new/ goes before the step that would make its link durable
        fs::rename(a.join("new"), a.join("gone")).unwrap();
        let (done, linked) = step(home, linked, staged(&b));
        assert!(matches!(done[..], [Err(MaildirError::Link(_))]), "{done:?}");
        let (done, _) = step(home, linked, Vec::new());
        assert!(done[0].as_ref().unwrap().starts_with(b.join("new")), "{done:?}");
        for dir in [a, b] {
            fs::remove_dir_all(dir).unwrap();
        }
    }
}
