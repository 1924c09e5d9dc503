//! queue: the queue's layout (doc/INTERNALS.md) and the client side of qmail-queue
//! (doc/qmail-queue.8).
//!
//! Layout: message id = inode number of `mess/S/id`, `S = id mod SPLIT`. `intd/` and `todo/`
//! are not split. [`Injection`] runs `bin/qmail-queue` (or the `QMAILQUEUE` stand-in) with the
//! message on its fd 0, the envelope on its fd 1 and a custom-error pipe on fd 4, and turns its
//! exit status into a [`Verdict`] through [`crate::exit::queue_status`]; without `QMAILQUEUE`
//! it hands the message to the queue service (`qmail-queue --listen`, [`wire`]) instead when
//! the service answers on its socket. [`scan`] says which messages are waiting (qmail-qread,
//! qmail-qstat).

pub mod journal;
pub mod pool;
pub mod records;
pub mod scan;
pub mod wire;

use crate::auto::SPLIT;
use crate::envelope::Envelope;
use crate::exit::{self, Verdict};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Who owns a queue directory in a system installation (single-user: the current user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Qmailq,
    Qmails,
    Qmailr,
}

/// A directory of the queue tree: path under `queue/`, owner, mode, split or not.
#[derive(Debug, Clone, Copy)]
pub struct Dir {
    pub path: &'static str,
    pub owner: Owner,
    pub mode: u32,
    pub split: bool,
}

/// Every directory of the queue tree, parents first (doc/INTERNALS.md, "Layout").
pub const DIRS: &[Dir] = &[
    Dir { path: "", owner: Owner::Qmailq, mode: 0o750, split: false },
    Dir { path: "pid", owner: Owner::Qmailq, mode: 0o700, split: false },
    Dir { path: "mess", owner: Owner::Qmailq, mode: 0o750, split: true },
    Dir { path: "intd", owner: Owner::Qmailq, mode: 0o700, split: false },
    Dir { path: "todo", owner: Owner::Qmailq, mode: 0o750, split: false },
    Dir { path: "info", owner: Owner::Qmails, mode: 0o700, split: true },
    Dir { path: "local", owner: Owner::Qmails, mode: 0o700, split: true },
    Dir { path: "remote", owner: Owner::Qmails, mode: 0o700, split: true },
    Dir { path: "bounce", owner: Owner::Qmails, mode: 0o700, split: false },
    Dir { path: "lock", owner: Owner::Qmailq, mode: 0o750, split: false },
];

/// Who runs an installation root, read from the owner of its `queue/` directory: the one rule
/// qmail-start, qmail-lspawn, qmail-queue and qmailctl share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installation {
    /// `queue/` belongs to qmailq: each program runs as its qmail user (`qmailctl init --users`).
    System,
    /// `queue/` belongs to another user, not root: that user plays every qmail user
    /// (`qmailctl init`, by that user or for `--owner`).
    Owned { uid: u32, gid: u32 },
    /// `queue/` belongs to root (an installation made by an older `qmailctl init`).
    Root,
}

/// The [`Installation`] of the root `home`.
pub fn installation(home: &Path) -> io::Result<Installation> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(home.join("queue"))?;
    let qmailq = nix::unistd::User::from_name(crate::auto::USER_QMAILQ).ok().flatten();
    Ok(match meta.uid() {
        0 => Installation::Root,
        uid if qmailq.is_some_and(|q| q.uid.as_raw() == uid) => Installation::System,
        uid => Installation::Owned { uid, gid: meta.gid() },
    })
}

/// The queue directory of an installation root.
#[derive(Debug, Clone)]
pub struct Queue {
    root: PathBuf,
}

impl Queue {
    pub fn new(home: &Path) -> Self {
        Queue { root: home.join("queue") }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `queue/<dir>/<id mod SPLIT>/<id>` for split directories.
    pub fn split_path(&self, dir: &str, id: u64) -> PathBuf {
        self.root.join(split_name(dir, id))
    }

    /// `queue/<dir>/<id>` for unsplit directories.
    pub fn flat_path(&self, dir: &str, id: u64) -> PathBuf {
        self.root.join(dir).join(id.to_string())
    }

    pub fn trigger_path(&self) -> PathBuf {
        self.root.join("lock/trigger")
    }
}

/// The split directory of message `id`: `id mod SPLIT` (always 0 unless built with
/// `QMAIL_SPLIT`).
#[allow(clippy::modulo_one)] // SPLIT is a build setting, 1 by default
pub fn split(id: u64) -> u64 {
    id % SPLIT
}

/// `<dir>/<id mod SPLIT>/<id>`, relative to the queue.
pub fn split_name(dir: &str, id: u64) -> String {
    format!("{dir}/{}/{id}", split(id))
}

/// Whether the queue at `queue` (a path, or "" for the current directory) was made for this
/// build's [`SPLIT`]: every split directory has its subdirectories `0` to `SPLIT - 1` and no
/// `SPLIT`. A queue made for another split would have messages this build never looks for
/// (upstream's `conf-split` has the same rule, unchecked). The error names what to do.
pub fn check_split(queue: &Path) -> Result<(), String> {
    for dir in DIRS.iter().filter(|d| d.split) {
        let sub = |i: u64| queue.join(dir.path).join(i.to_string());
        let found = if sub(SPLIT).exists() {
            format!("{}/{SPLIT} exists", dir.path)
        } else if !sub(SPLIT - 1).is_dir() {
            format!("{}/{} is missing", dir.path, SPLIT - 1)
        } else {
            continue;
        };
        return Err(format!(
            "{found}: the queue was made for another split than this build's {SPLIT} \
             (QMAIL_SPLIT), and some of its messages would never be seen; deliver them with \
             the build that made the queue, or stop the mail system and make the queue again \
             (doc/qmailctl.8, init)"
        ));
    }
    Ok(())
}

pub use records::info_sender;

/// What a message file without `todo/id` and without `info/S/id` is (doc/INTERNALS.md,
/// "Leftovers"). Such a file is never waiting mail: it will not be delivered as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// A qmail-queue is still writing it (it holds the injection lock): leave it alone.
    Injecting,
    /// Nobody will ever finish it: what a crashed or failed injection left, or a finished
    /// message whose `info/` was removed just before a crash. It may be removed now.
    Debris,
}

/// Take the injection lock on qmail-queue's new message file: an exclusive `flock`, taken
/// before the file gets its `mess/` name and held until qmail-queue exits (after the commit
/// point, or after removing its files). The lock ends with the process, whatever kills it.
pub fn lock_injection(file: File) -> io::Result<Flock<File>> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| io::Error::from(e))
}

/// Classify message `id` of the queue directory `queue`: `None` when it is queued (`todo/id`
/// or `info/S/id` exists) or already gone, else what kind of [`Leftover`] it is.
///
/// The order of the checks makes this safe while qmail-queue and qmail-todo run: the lock
/// first (a live injection holds it from before the file has its name until after `todo/id`
/// exists), then `todo/id`, then `info/S/id` (qmail-todo writes info before it removes
/// todo). Only qmail-send removes `info/S/id`, and it asks this question itself.
pub fn leftover(queue: &Path, id: u64) -> io::Result<Option<Leftover>> {
    let mess = match File::open(queue.join(split_name("mess", id))) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match Flock::lock(mess, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => {}
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(Some(Leftover::Injecting)),
        Err((_, e)) => return Err(e.into()),
    }
    if present(&queue.join(format!("todo/{id}")))? || present(&queue.join(split_name("info", id)))?
    {
        return Ok(None);
    }
    Ok(Some(Leftover::Debris))
}

/// Whether `path` exists; a failure other than "no such file" is an error, never "absent".
fn present(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Poke qmail-send: open the trigger FIFO without blocking, write one byte, close. Every error
/// is ignored (no reader is fine).
pub fn pull_trigger(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) =
        std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path)
    {
        let _ = f.write(&[0]);
    }
}

/// The program that queues mail: `$QMAILQUEUE` when set and non-empty (relative names resolve
/// against the installation root), else `bin/qmail-queue`.
pub fn program(home: &Path) -> PathBuf {
    match std::env::var_os("QMAILQUEUE") {
        Some(p) if !p.is_empty() => home.join(p),
        _ => home.join("bin/qmail-queue"),
    }
}

/// How long a client waits for the queue service's greeting before it runs qmail-queue
/// instead: the service may be between two workers (a worker that died is replaced after a
/// second) or busy with as many clients as it serves at once.
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);

/// A message being handed to qmail-queue: write the message with [`Injection::message`], then
/// [`Injection::finish`] with the envelope.
pub struct Injection {
    to: To,
    /// a write to qmail-queue failed: the result cannot be 0
    write_failed: bool,
}

/// Where an [`Injection`] goes.
enum To {
    /// a qmail-queue process (or the `QMAILQUEUE` stand-in)
    Exec {
        child: Child,
        message: Option<BufWriter<std::process::ChildStdin>>,
        envelope: File,
        custom: File,
    },
    /// the queue service, and the pid it greeted with
    Service { stream: wire::FrameWriter<UnixStream>, pid: u32 },
}

impl Injection {
    /// Start qmail-queue for the installation root `home`, in `home` as working directory.
    pub fn start(home: &Path) -> Result<Injection, Verdict> {
        Self::start_with_env(home, &[])
    }

    /// [`Injection::start`] with these variables added to qmail-queue's environment (for a
    /// `QMAILQUEUE` filter: qmail-smtpd's `SMTPAUTHUSER`).
    ///
    /// Without `QMAILQUEUE`, the queue service is tried first: a socket that is missing,
    /// refuses or does not greet within [`GREETING_TIMEOUT`] means `bin/qmail-queue` as
    /// before, never an error.
    pub fn start_with_env(home: &Path, env: &[(&str, &str)]) -> Result<Injection, Verdict> {
        if !filtered() {
            if let Some((stream, pid)) = connect(home) {
                let stream = wire::FrameWriter::new(stream);
                return Ok(Injection { to: To::Service { stream, pid }, write_failed: false });
            }
        }
        let fail = |_| Verdict::temp("Unable to run qq (#4.3.0)");
        let (env_r, env_w) = cloexec_pipe().map_err(fail)?;
        let (custom_r, custom_w) = cloexec_pipe().map_err(fail)?;
        let mut cmd = Command::new(program(home));
        cmd.current_dir(home).stdin(Stdio::piped()).stdout(Stdio::from(env_r));
        cmd.envs(env.iter().copied());
        crate::child::map_fds(&mut cmd, vec![(custom_w, 4)]);
        let mut child = cmd.spawn().map_err(|_| Verdict::temp("Unable to exec qq (#4.3.0)"))?;
        // the parent's copies of the child's ends close here, so EOF is seen
        drop(cmd);
        let stdin = child.stdin.take().expect("stdin was piped");
        let custom = File::from(custom_r);
        crate::timeoutio::set_nonblocking(&custom);
        let to = To::Exec {
            child,
            message: Some(BufWriter::with_capacity(64 * 1024, stdin)),
            envelope: File::from(env_w),
            custom,
        };
        Ok(Injection { to, write_failed: false })
    }

    /// The process id of the running qmail-queue (logged as `qp`); with the queue service,
    /// the id of the service process that queues the message (its greeting).
    pub fn pid(&self) -> u32 {
        match &self.to {
            To::Exec { child, .. } => child.id(),
            To::Service { pid, .. } => *pid,
        }
    }

    /// The message stream. Write errors are remembered (and end in a temporary verdict); a
    /// caller may keep writing, which keeps its own reading in step.
    pub fn message(&mut self) -> MessageWriter<'_> {
        MessageWriter { inj: self }
    }

    /// Give up on this message: close both inputs without an envelope (qmail-queue sees a
    /// truncated envelope, exits 54 and removes its files) and wait for it, leaving no zombie.
    /// The service sees the connection end inside the message and does the same.
    pub fn abort(self) {
        if let To::Exec { mut child, message, envelope, .. } = self.to {
            drop(message);
            drop(envelope);
            let _ = child.wait();
        }
    }

    /// Close the message, send the envelope, wait for qmail-queue and say how it went.
    pub fn finish(self, envelope: &Envelope) -> Result<(), Verdict> {
        let mut write_failed = self.write_failed;
        match self.to {
            To::Exec { mut child, message, envelope: mut env_pipe, custom } => {
                if let Some(mut w) = message {
                    write_failed |= w.flush().is_err();
                }
                write_failed |= env_pipe.write_all(&envelope.encode()).is_err();
                drop(env_pipe);
                let status =
                    child.wait().map_err(|_| Verdict::temp("Unable to wait for qq (#4.3.0)"))?;
                let mut text = Vec::new();
                let _ = (&custom).take(exit::CUSTOM_TEXT_MAX as u64).read_to_end(&mut text);
                exit::queue_status(status, &text)?;
            }
            To::Service { mut stream, .. } => {
                write_failed |= stream.finish_with(&envelope.encode()).is_err();
                // the answer comes even after a write failed (the service may have stopped
                // reading at an error); no answer means the service is gone: temporary
                let lost = || Verdict::temp("Lost the queue service (#4.3.0)");
                let mut input = BufReader::with_capacity(wire::ANSWER_MAX + 8, stream.get_mut());
                let payload =
                    crate::netstring::read(&mut input, wire::ANSWER_MAX).map_err(|_| lost())?;
                let (code, text) = wire::parse_answer(&payload).ok_or_else(lost)?;
                exit::queue_code(i32::from(code), text)?;
            }
        }
        if write_failed {
            return Err(Verdict::temp("Unable to write to qq (#4.3.0)"));
        }
        Ok(())
    }
}

/// Whether `QMAILQUEUE` names a program to run instead of qmail-queue.
fn filtered() -> bool {
    std::env::var_os("QMAILQUEUE").is_some_and(|p| !p.is_empty())
}

/// A connection to the queue service of `home` that has greeted, and the pid it named.
fn connect(home: &Path) -> Option<(UnixStream, u32)> {
    let stream = UnixStream::connect(home.join(wire::SOCKET)).ok()?;
    stream.set_read_timeout(Some(GREETING_TIMEOUT)).ok()?;
    // the service sends nothing after the greeting until the answer
    let mut input = BufReader::with_capacity(wire::GREETING_MAX + 8, &stream);
    let pid = wire::parse_greeting(&crate::netstring::read(&mut input, wire::GREETING_MAX).ok()?)?;
    // the answer takes as long as the disk does, as qmail-queue's exit would
    stream.set_read_timeout(None).ok()?;
    Some((stream, pid))
}

/// Make everything written so far to `file`'s file system durable, as `syncfs(2)` on `file`
/// would, sharing a round of the queue service's syncs (doc/INTERNALS.md, "Shared syncs")
/// when `file` is on the queue's file system and the service answers; else, and whenever the
/// service is missing, refuses, fails or goes away, with a `syncfs` of our own, whose result
/// is then the answer.
pub fn sync_fs(home: &Path, file: &File) -> io::Result<()> {
    if on_queue_fs(home, file) && synced_by_service(home) {
        return Ok(());
    }
    nix::unistd::syncfs(file.as_fd()).map_err(io::Error::from)
}

/// Whether `file` is on the file system of `home`'s queue (a `syncfs` there covers it).
fn on_queue_fs(home: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(home.join("queue"))) {
        (Ok(f), Ok(q)) => f.dev() == q.dev(),
        _ => false,
    }
}

/// Ask the queue service for a sync of the queue's file system ([`wire::SYNC_REQUEST`]):
/// true when it answered that one that started after the request has ended well.
fn synced_by_service(home: &Path) -> bool {
    let Some((mut stream, _)) = connect(home) else { return false };
    if stream.write_all(&[wire::SYNC_REQUEST]).is_err() {
        return false;
    }
    let mut input = BufReader::with_capacity(wire::ANSWER_MAX + 8, &stream);
    crate::netstring::read(&mut input, wire::ANSWER_MAX)
        .ok()
        .and_then(|payload| wire::parse_answer(&payload).map(|(code, _)| code == 0))
        .unwrap_or(false)
}

/// The message side of an [`Injection`].
pub struct MessageWriter<'a> {
    inj: &'a mut Injection,
}

impl Write for MessageWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.inj.write_failed {
            let written = match &mut self.inj.to {
                To::Exec { message: Some(w), .. } => w.write_all(buf),
                To::Exec { message: None, .. } => Ok(()),
                To::Service { stream, .. } => stream.write_all(buf),
            };
            if written.is_err() {
                self.inj.write_failed = true;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Queue `message` for `envelope` in one call.
pub fn inject(home: &Path, message: &[u8], envelope: &Envelope) -> Result<(), Verdict> {
    let mut inj = Injection::start(home)?;
    let _ = inj.message().write_all(message);
    inj.finish(envelope)
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_waits_for_the_child() {
        // a stand-in queue program that reads both inputs and fails on a missing envelope
        let dir = std::env::temp_dir().join(format!("qmail-abort-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let prog = dir.join("bin/qmail-queue");
        std::fs::write(&prog, "#!/bin/sh\ncat >/dev/null; cat <&1 >/dev/null; exit 54\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut inj = Injection::start(&dir).unwrap();
        let pid = inj.pid();
        let _ = inj.message().write_all(b"partial");
        inj.abort();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "qmail-queue reaped");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_queue_made_for_another_split_is_refused() {
        let dir = std::env::temp_dir().join(format!("qmail-split-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in DIRS {
            std::fs::create_dir_all(dir.join(d.path)).unwrap();
            for i in (0..SPLIT).filter(|_| d.split) {
                std::fs::create_dir_all(dir.join(d.path).join(i.to_string())).unwrap();
            }
        }
        assert_eq!(check_split(&dir), Ok(()));
        // one more (made for a larger split), then one fewer
        let extra = dir.join(format!("local/{SPLIT}"));
        std::fs::create_dir(&extra).unwrap();
        let e = check_split(&dir).unwrap_err();
        assert!(e.starts_with(&format!("local/{SPLIT} exists: ")), "{e}");
        std::fs::remove_dir(&extra).unwrap();
        let last = dir.join(format!("remote/{}", SPLIT - 1));
        std::fs::remove_dir(&last).unwrap();
        let e = check_split(&dir).unwrap_err();
        assert!(e.starts_with(&format!("remote/{} is missing: ", SPLIT - 1)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers() {
        let dir = std::env::temp_dir().join(format!("qmail-leftover-{}", std::process::id()));
        for sub in [format!("mess/{}", split(24)), format!("info/{}", split(24)), "todo".into()] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mess = dir.join(split_name("mess", 24));
        assert_eq!(leftover(&dir, 24).unwrap(), None, "gone");
        std::fs::write(&mess, "x").unwrap();
        assert_eq!(leftover(&dir, 24).unwrap(), Some(Leftover::Debris));
        // a live injection holds the lock
        let held = lock_injection(File::open(&mess).unwrap()).unwrap();
        assert_eq!(leftover(&dir, 24).unwrap(), Some(Leftover::Injecting));
        drop(held);
        assert_eq!(leftover(&dir, 24).unwrap(), Some(Leftover::Debris));
        // committed, or preprocessed: queued
        std::fs::write(dir.join("todo/24"), "").unwrap();
        assert_eq!(leftover(&dir, 24).unwrap(), None);
        std::fs::remove_file(dir.join("todo/24")).unwrap();
        std::fs::write(dir.join(split_name("info", 24)), "F\0").unwrap();
        assert_eq!(leftover(&dir, 24).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths() {
        let q = Queue::new(Path::new("/var/qmail"));
        let s = split(457);
        assert_eq!(q.split_path("mess", 457), Path::new(&format!("/var/qmail/queue/mess/{s}/457")));
        assert_eq!(q.flat_path("todo", 457), Path::new("/var/qmail/queue/todo/457"));
        assert_eq!(split_name("info", 23), format!("info/{}/23", split(23)));
    }
}
