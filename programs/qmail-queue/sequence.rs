//! The on-disk sequence of one injection, shared by the one-shot mode and the service: pid
//! file → link into `mess/S/id` → Received line + message → `intd/id` → link into `todo/id`.
//! Which syncs come between the steps is the caller's (doc/INTERNALS.md, "fsyncs per
//! message"): the one-shot mode syncs each file itself, the service syncs a group at a time.

use crate::Pause;
use nix::fcntl::Flock;
use qmail::auto;
use qmail::envelope::{self, EnvelopeError};
use qmail::exit::QueueExit;
use qmail::queue::pool::{Kind, Taker};
use qmail::queue::records::Record;
use qmail::queue::split_name;
use qmail::received::Invoked;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// I/O buffer size for the message and the envelope (recipients are streamed, never held).
pub const BUF: usize = 64 * 1024;

/// Files made so far, removed if the commit point is not reached.
#[derive(Default)]
struct Debris {
    pidfile: Option<PathBuf>,
    mess: Option<PathBuf>,
    intd: Option<PathBuf>,
}

impl Debris {
    fn clean(&mut self, code: QueueExit) -> QueueExit {
        for path in [self.intd.take(), self.mess.take(), self.pidfile.take()].into_iter().flatten()
        {
            let _ = fs::remove_file(path);
        }
        code
    }
}

/// One message on its way into the queue, in the queue directory (the working directory).
/// Every method that fails has removed the files made so far; the injection lock on the
/// message file ends when this is dropped.
pub struct Message {
    debris: Debris,
    file: Flock<File>,
    id: u64,
    mess: PathBuf,
    envelope: Option<File>,
}

impl Message {
    /// Steps 1 and 2: a unique pid file `pid/<pid>.<unixtime>.<seq>` (the first of `seqs`
    /// that is free), locked (the injection lock: taken before the file gets its mess/ name
    /// and held until the message is committed or its files removed, so qmail-send can tell
    /// a live injection from the debris of a dead one, qmail::queue::leftover); its inode
    /// number is the message id; linked into `mess/S/id`, the pid name dropped.
    /// With a `pool` (the service's), a recycled message file is taken first: its pool name
    /// already tells its inode number, so it is locked there and renamed straight to
    /// `mess/S/id`, without a pid file name (doc/INTERNALS.md, "Recycled queue files").
    pub fn begin(
        pid: u32,
        seqs: impl IntoIterator<Item = u64>,
        pool: Option<&Taker>,
        pause: &Pause,
    ) -> Result<Message, QueueExit> {
        if let Some(message) = pool.and_then(|p| Self::recycled(p, pause)) {
            return Ok(message);
        }
        let mut debris = Debris::default();
        let (pidfile, file) = make_pidfile(pid, seqs, pool)?;
        debris.pidfile = Some(pidfile.clone());
        let file =
            qmail::queue::lock_injection(file).map_err(|_| debris.clean(QueueExit::PidFile))?;
        let id = file.metadata().map_err(|_| debris.clean(QueueExit::PidFile))?.ino();
        pause.at("pid");
        let mess = PathBuf::from(split_name("mess", id));
        fs::hard_link(&pidfile, &mess).map_err(|_| debris.clean(QueueExit::LinkMess))?;
        debris.mess = Some(mess.clone());
        fs::remove_file(&pidfile).map_err(|_| debris.clean(QueueExit::PidFile))?;
        debris.pidfile = None;
        pause.at("mess");
        Ok(Message { debris, file, id, mess, envelope: None })
    }

    /// Steps 1 and 2 with a recycled message file from `pool`: made private, locked under
    /// its pool name, renamed to `mess/S/id` (never over anything). `None` when the pool has
    /// none or a step before the rename fails (the file then stays in the pool); after it, a
    /// failure removes `mess/S/id` as for any message ([`Message::fail`]).
    fn recycled(pool: &Taker, pause: &Pause) -> Option<Message> {
        let (from, file) = pool.open(Kind::Message)?;
        make_private(&file).ok()?;
        let file = qmail::queue::lock_injection(file).ok()?;
        let id = file.metadata().ok()?.ino();
        pause.at("pid");
        let mess = PathBuf::from(split_name("mess", id));
        let flags = nix::fcntl::RenameFlags::RENAME_NOREPLACE;
        let at = nix::fcntl::AT_FDCWD;
        nix::fcntl::renameat2(at, &from, at, &mess, flags).ok()?;
        pause.at("mess");
        let debris = Debris { mess: Some(mess.clone()), ..Debris::default() };
        Some(Message { debris, file, id, mess, envelope: None })
    }

    /// Step 3: the Received line and all of `input` into the message file: a read error is 54
    /// (52 when it timed out), a write error 53.
    pub fn write_message(
        &mut self,
        received: &[u8],
        input: &mut impl Read,
    ) -> Result<(), QueueExit> {
        copy_message(&self.file, received, input).map_err(|e| self.fail(e))
    }

    /// The message file and its `mess/S` entry made durable: no committed todo/id may name a
    /// short message or none (doc/INTERNALS.md, "fsyncs per message").
    pub fn sync_message(&mut self) -> Result<(), QueueExit> {
        let dir = self.mess.parent().unwrap_or(Path::new("mess")).to_path_buf();
        self.file
            .sync_all()
            .and_then(|()| qmail::file::fsync_dir(&dir))
            .map_err(|_| self.fail(QueueExit::WriteError))
    }

    /// Step 4: `intd/id` with the `u`, `p`, `F`, `T`... records, the envelope streamed from
    /// `input`. The file stays open for [`Message::sync_envelope`].
    pub fn write_envelope(
        &mut self,
        input: &mut impl BufRead,
        uid: u32,
        pid: u32,
        pool: Option<&Taker>,
        pause: &Pause,
    ) -> Result<(), QueueExit> {
        let intd = PathBuf::from(format!("intd/{}", self.id));
        let file = match pool.and_then(|p| p.take(&intd, Kind::Small)) {
            Some(f) => f,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&intd)
                .map_err(|_| self.fail(QueueExit::CreateIntd))?,
        };
        self.debris.intd = Some(intd);
        pause.at("intd");
        copy_envelope(&file, input, uid, pid).map_err(|e| self.fail(e))?;
        self.envelope = Some(file);
        Ok(())
    }

    /// The inode todo/id will name made durable: no torn recipient list after the commit
    /// (doc/INTERNALS.md, "fsyncs per message"); the intd/ name itself needs no sync.
    pub fn sync_envelope(&mut self) -> Result<(), QueueExit> {
        let synced = self.envelope.take().map_or(Ok(()), |f| f.sync_all());
        synced.map_err(|_| self.fail(QueueExit::WriteError))
    }

    /// Step 5, the commit point: link `intd/id` into `todo/id`, then make that link durable
    /// with `sync_todo` before the caller answers 0 (doc/INTERNALS.md, "fsyncs per
    /// message"). `pause` runs between the two (the test hook's "todo" step).
    pub fn commit(
        mut self,
        pause: &Pause,
        sync_todo: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), QueueExit> {
        drop(self.envelope.take());
        if link_todo(self.id).is_err() {
            return self.committed(Ok(()), Some(false));
        }
        pause.at("todo");
        let synced = sync_todo();
        self.committed(synced, Some(true))
    }

    /// How a commit went, and the answer: `link` is what became of the link into `todo/id`
    /// (`Some(true)` made, `Some(false)` failed, `None` never tried), `synced` how the syncs
    /// after it went. Step 5 above, and the queue service's, whose round's leader makes the
    /// link ([`link_todo`]) and syncs `todo/` for everyone (doc/INTERNALS.md, "The queue
    /// service").
    pub fn committed(
        mut self,
        synced: io::Result<()>,
        link: Option<bool>,
    ) -> Result<(), QueueExit> {
        match (synced, link) {
            (Ok(()), Some(true)) => Ok(()),
            (Ok(()), _) => Err(self.fail(QueueExit::LinkTodo)),
            (Err(_), made) => {
                if made == Some(true) {
                    // committed but perhaps not durable: the caller must not take this as
                    // success
                    let _ = fs::remove_file(format!("todo/{}", self.id));
                }
                Err(self.fail(QueueExit::WriteError))
            }
        }
    }

    /// The message file's and the envelope's bytes as written (read back through the
    /// descriptors that wrote them: the page cache), for the queue journal; `None` when
    /// together they are over `limit` bytes, or cannot be read back.
    pub fn contents(&self, limit: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        use std::os::unix::fs::FileExt;
        let read = |f: &File, room: usize| -> Option<Vec<u8>> {
            let len = usize::try_from(f.metadata().ok()?.len()).ok()?;
            if len > room {
                return None;
            }
            let mut bytes = vec![0; len];
            f.read_exact_at(&mut bytes, 0).ok()?;
            Some(bytes)
        };
        let mess = read(&self.file, limit)?;
        let env = read(self.envelope.as_ref()?, limit - mess.len())?;
        Some((mess, env))
    }

    /// The message id (the inode number of its file).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Remove the files made so far and answer `code`.
    pub fn fail(&mut self, code: QueueExit) -> QueueExit {
        self.debris.clean(code)
    }
}

/// A message the queue journal held and the queue perhaps did not: queued again as a new
/// message from the message file's and the envelope's bytes (the Received line and the `u`,
/// `p` records included, as they were), with the one-shot mode's syncs (doc/INTERNALS.md,
/// "The queue journal").
pub fn requeue(
    pid: u32,
    seqs: impl IntoIterator<Item = u64>,
    mess: &[u8],
    env: &[u8],
    pause: &Pause,
) -> Result<u64, QueueExit> {
    let mut msg = Message::begin(pid, seqs, None, pause)?;
    msg.write_message(b"", &mut &mess[..])?;
    msg.sync_message()?;
    let intd = PathBuf::from(format!("intd/{}", msg.id));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&intd)
        .map_err(|_| msg.fail(QueueExit::CreateIntd))?;
    msg.debris.intd = Some(intd);
    (&file).write_all(env).map_err(|_| msg.fail(QueueExit::WriteError))?;
    msg.envelope = Some(file);
    msg.sync_envelope()?;
    let id = msg.id;
    msg.commit(pause, || qmail::file::fsync_dir(Path::new("todo")))?;
    Ok(id)
}

/// Step 5's link: `intd/id` into `todo/id`, the commit point once `todo/` is synced.
pub fn link_todo(id: u64) -> io::Result<()> {
    fs::hard_link(format!("intd/{id}"), format!("todo/{id}"))
}

/// `pid/<pid>.<unixtime>.<seq>` made with O_EXCL, for the first nine of `seqs` at most.
///
/// With a pool (the queue service) the message file is mode 0640 in the service's group
/// (qmail's users share it; others never had access through `mess/`, mode 0750): once the
/// message is finished its inode may be recycled for another one, and a delivery program
/// that kept an `O_PATH` descriptor to it must not be able to open it again
/// (doc/INTERNALS.md, "Recycled queue files"). The one-shot mode runs setuid without a
/// group of its own and keeps upstream's 0644; qmail-clean recycles only private ones.
fn make_pidfile(
    pid: u32,
    seqs: impl IntoIterator<Item = u64>,
    pool: Option<&Taker>,
) -> Result<(PathBuf, File), QueueExit> {
    let now = qmail::date822::unix_now();
    let mode = if pool.is_some() { 0o640 } else { 0o644 };
    for seq in seqs.into_iter().take(9) {
        let path = PathBuf::from(format!("pid/{pid}.{now}.{seq}"));
        // readable too: the service reads the message back for its journal
        match OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return Err(QueueExit::PidFile),
        }
    }
    Err(QueueExit::PidFile)
}

/// A recycled file made a private message file: mode 0640, in our group.
fn make_private(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // the service's group: the same for the whole process
    static EGID: std::sync::OnceLock<nix::unistd::Gid> = std::sync::OnceLock::new();
    let meta = file.metadata()?;
    let gid = *EGID.get_or_init(nix::unistd::getegid);
    if meta.gid() != gid.as_raw() {
        nix::unistd::fchown(file, None, Some(gid)).map_err(io::Error::from)?;
    }
    if meta.mode() & 0o777 != 0o640 {
        file.set_permissions(fs::Permissions::from_mode(0o640))?;
    }
    Ok(())
}

/// How the Received line names the caller, by the name of its uid.
pub fn invoked(uid: u32) -> Invoked {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) if u.name == auto::USER_ALIAS => Invoked::Alias,
        Ok(Some(u)) if u.name == auto::USER_QMAILD => Invoked::Network,
        Ok(Some(u)) if u.name == auto::USER_QMAILS => Invoked::Bounce,
        _ => Invoked::Uid(uid),
    }
}

/// A failed read: 52 when it timed out, else 54.
fn read_error(e: &io::Error) -> QueueExit {
    match e.kind() {
        io::ErrorKind::TimedOut => QueueExit::Timeout,
        _ => QueueExit::ReadError,
    }
}

/// Copy the Received line and all of `input` into the message file.
fn copy_message(file: &File, received: &[u8], input: &mut impl Read) -> Result<(), QueueExit> {
    thread_local! {
        // the read buffer, made (and zeroed) once per thread: the service copies one message
        // after another on each of its threads
        static READ: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; BUF]);
    }
    let mut out = BufWriter::with_capacity(BUF, file);
    out.write_all(received).map_err(|_| QueueExit::WriteError)?;
    READ.with_borrow_mut(|buf| loop {
        let n = match qmail::timeoutio::read(input, buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) => return Err(read_error(&e)),
        };
        out.write_all(&buf[..n]).map_err(|_| QueueExit::WriteError)?;
    })?;
    out.flush().map_err(|_| QueueExit::WriteError)?;
    // a recycled file's old content ends here (doc/INTERNALS.md, "Recycled queue files")
    qmail::queue::pool::cut_here(file).map_err(|_| QueueExit::WriteError)
}

/// Stream the envelope from `input` into the intd file as `u`, `p`, `F`, `T`... records.
fn copy_envelope(
    file: &File,
    input: &mut impl BufRead,
    uid: u32,
    pid: u32,
) -> Result<(), QueueExit> {
    let mut reader = envelope::Reader::new(input);
    let mut out = BufWriter::with_capacity(BUF, file);
    let werr = |_| QueueExit::WriteError;
    let eerr = |e: EnvelopeError| match e {
        EnvelopeError::Io(e) => read_error(&e),
        e => e.exit(),
    };
    Record::Uid(uid.to_string().as_bytes()).write(&mut out).map_err(werr)?;
    Record::Pid(pid.to_string().as_bytes()).write(&mut out).map_err(werr)?;
    let sender = reader.sender().map_err(eerr)?;
    Record::Sender(sender.as_bytes()).write(&mut out).map_err(werr)?;
    while let Some(r) = reader.recipient().map_err(eerr)? {
        Record::Recipient(r.as_bytes()).write(&mut out).map_err(werr)?;
    }
    out.flush().map_err(werr)?;
    qmail::queue::pool::cut_here(file).map_err(werr)
}
