//! qmail-queue: put one message into the queue, crash-safely.
//!
//! Takes no arguments and prints nothing. Reads the message on fd 0 and, after storing it, the
//! envelope on fd 1 (`F<sender>\0`, `T<recipient>\0`..., `\0`). Installed setuid qmailq
//! (04711) in a system installation: it then ignores `QMAILHOME` and reads nothing but its two
//! inputs. The exit code is the protocol (doc/qmail-queue.8, [`qmail::exit::QueueExit`]):
//! 0 queued, 11 address too long, 52 timeout, 53 write error or disk full, 54 read error,
//! 61/62 no home/queue, 63 pid file, 64 link into mess, 65 intd, 66 link into todo, 81 bug,
//! 91 envelope format error.
//!
//! The sequence (doc/qmail-queue.8): pid file → link into `mess/S/id` (id = inode) → Received
//! line + message, fsync → fsync `mess/S` → `intd/id` with `u`, `p`, `F`, `T` records, fsync →
//! link into `todo/id` (the commit point) → fsync `todo/` → poke `lock/trigger` → exit 0.
//! From the pid file's creation to the exit it holds an exclusive `flock` on the message file
//! (the injection lock), which tells qmail-send a live injection from a dead one.
//! Run by root without the setuid bit on a queue owned by another user, it first becomes the
//! queue's owner (exit 62 if it cannot), so that what it queues can be delivered.
//! Unlike upstream, every failure before the commit point removes the files made so far
//! (upstream leaves some for qmail-send's 36-hour cleanup); the 24-hour timeout exits without
//! cleanup, and the lock ending with the process lets qmail-send's next sweep remove them.

#![forbid(unsafe_code)]

use nix::unistd::{getpid, getuid, User};
use qmail::auto;
use qmail::date822::Utc;
use qmail::envelope::{self, EnvelopeError};
use qmail::exit::QueueExit;
use qmail::file::fsync_dir;
use qmail::queue::records::Record;
use qmail::queue::split_name;
use qmail::received::{self, Invoked};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// qmail-queue gives up after a day ("DEATH").
const DEATH: Duration = Duration::from_secs(86400);

/// I/O buffer size for the message and the envelope (recipients are streamed, never held).
const BUF: usize = 64 * 1024;

fn main() -> ExitCode {
    // qmail-queue prints nothing, not even a panic message: a panic is exit 81
    std::panic::set_hook(Box::new(|_| {}));
    let death = Pause::from_env().death().unwrap_or(DEATH);
    std::thread::spawn(move || {
        std::thread::sleep(death);
        // no cleanup here: the injection lock ends with the process, and qmail-send's sweep
        // removes what is left
        std::process::exit(i32::from(QueueExit::Timeout.code()));
    });
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o033));
    let code = match std::panic::catch_unwind(run) {
        Ok(Ok(())) => QueueExit::Queued,
        Ok(Err(code)) => code,
        Err(_) => QueueExit::Bug,
    };
    ExitCode::from(code.code())
}

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

fn run() -> Result<(), QueueExit> {
    let pause = Pause::from_env();
    std::env::set_current_dir(auto::home()).map_err(|_| QueueExit::NoHome)?;
    std::env::set_current_dir("queue").map_err(|_| QueueExit::NoQueueDir)?;
    let pid = getpid().as_raw() as u32;
    let uid = getuid().as_raw();
    become_queue_owner()?;
    let mut debris = Debris::default();

    // 1. a unique pid file; its inode number is the message id. The injection lock is taken
    //    before the file gets its mess/ name and held until exit, so qmail-send can tell this
    //    live injection from the debris of a dead one (qmail::queue::leftover)
    let (pidfile, file) = make_pidfile(pid)?;
    debris.pidfile = Some(pidfile.clone());
    let file = qmail::queue::lock_injection(file).map_err(|_| debris.clean(QueueExit::PidFile))?;
    let id = file.metadata().map_err(|_| debris.clean(QueueExit::PidFile))?.ino();
    pause.at("pid");

    // 2. link it into mess/S/id, then drop the pid name
    let mess = PathBuf::from(split_name("mess", id));
    fs::hard_link(&pidfile, &mess).map_err(|_| debris.clean(QueueExit::LinkMess))?;
    debris.mess = Some(mess.clone());
    fs::remove_file(&pidfile).map_err(|_| debris.clean(QueueExit::PidFile))?;
    debris.pidfile = None;
    pause.at("mess");

    // 3. the Received line and the message, made durable with the directory entry: no
    //    committed todo/id may name a short message or none (doc/INTERNALS.md, "fsyncs per
    //    message")
    let line = received::queue_line(pid, invoked(uid), &Utc::now());
    write_message(&file, line.as_bytes()).map_err(|e| debris.clean(e))?;
    pause.at("body");
    file.sync_all().map_err(|_| debris.clean(QueueExit::WriteError))?;
    fsync_dir(mess.parent().unwrap_or(Path::new("mess")))
        .map_err(|_| debris.clean(QueueExit::WriteError))?;
    pause.at("fsync");

    // 4. the envelope into intd/id
    let intd = PathBuf::from(format!("intd/{id}"));
    let env_file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&intd)
        .map_err(|_| debris.clean(QueueExit::CreateIntd))?;
    debris.intd = Some(intd.clone());
    pause.at("intd");
    write_envelope(&env_file, uid, pid).map_err(|e| debris.clean(e))?;
    // the inode todo/id will name: no torn recipient list after the commit (doc/INTERNALS.md,
    // "fsyncs per message"); the intd/ name itself needs no sync
    env_file.sync_all().map_err(|_| debris.clean(QueueExit::WriteError))?;
    drop(env_file);
    pause.at("envelope");

    // 5. the commit point: link into todo/, and make that link durable before exit 0, which
    //    the caller turns into its 250 (doc/INTERNALS.md, "fsyncs per message")
    let todo = format!("todo/{id}");
    fs::hard_link(&intd, &todo).map_err(|_| debris.clean(QueueExit::LinkTodo))?;
    pause.at("todo");
    if fsync_dir(Path::new("todo")).is_err() {
        // committed but perhaps not durable: the caller must not take this as success
        let _ = fs::remove_file(&todo);
        return Err(debris.clean(QueueExit::WriteError));
    }

    qmail::queue::pull_trigger(Path::new("lock/trigger"));
    Ok(())
}

/// Run by root (not through the setuid bit) on a queue that belongs to someone else (a
/// system installation's qmailq, or the owner of a `qmailctl init --owner` root): become that
/// owner first, so the queued files are the queue owner's, as qmail-send and qmail-clean
/// need. Files made by root there would never be delivered ("message has wrong owner").
/// Failing to switch is exit 62 with a line on stderr saying why.
fn become_queue_owner() -> Result<(), QueueExit> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let meta = fs::metadata(".").map_err(|_| QueueExit::NoQueueDir)?;
    if meta.uid() == 0 {
        return Ok(());
    }
    qmail::prot::drop_to(meta.uid(), meta.gid()).map(drop).map_err(|e| {
        let _ = writeln!(
            io::stderr(),
            "qmail-queue: running as root, unable to become the queue's owner (uid {}): {e}",
            meta.uid()
        );
        QueueExit::NoQueueDir
    })
}

/// `pid/<pid>.<unixtime>.<seq>` made with O_EXCL, seq 1 to 9.
fn make_pidfile(pid: u32) -> Result<(PathBuf, File), QueueExit> {
    let now = qmail::date822::unix_now();
    for seq in 1..=9 {
        let path = PathBuf::from(format!("pid/{pid}.{now}.{seq}"));
        match OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => return Err(QueueExit::PidFile),
        }
    }
    Err(QueueExit::PidFile)
}

/// How the Received line names the caller, by the name of its real uid.
fn invoked(uid: u32) -> Invoked {
    match User::from_uid(uid.into()) {
        Ok(Some(u)) if u.name == auto::USER_ALIAS => Invoked::Alias,
        Ok(Some(u)) if u.name == auto::USER_QMAILD => Invoked::Network,
        Ok(Some(u)) if u.name == auto::USER_QMAILS => Invoked::Bounce,
        _ => Invoked::Uid(uid),
    }
}

/// Copy the Received line and all of fd 0 into the message file: a read error is 54, a write
/// error 53.
fn write_message(file: &File, received: &[u8]) -> Result<(), QueueExit> {
    let mut out = BufWriter::with_capacity(BUF, file);
    out.write_all(received).map_err(|_| QueueExit::WriteError)?;
    let mut input = io::stdin().lock();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match qmail::timeoutio::read(&mut input, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return Err(QueueExit::ReadError),
        };
        out.write_all(&buf[..n]).map_err(|_| QueueExit::WriteError)?;
    }
    out.flush().map_err(|_| QueueExit::WriteError)
}

/// Stream the envelope from fd 1 into the intd file as `u`, `p`, `F`, `T`... records.
fn write_envelope(file: &File, uid: u32, pid: u32) -> Result<(), QueueExit> {
    let fd1 = io::stdout().as_fd().try_clone_to_owned().map_err(|_| QueueExit::ReadError)?;
    let mut input = BufReader::with_capacity(BUF, File::from(fd1));
    let mut reader = envelope::Reader::new(&mut input);
    let mut out = BufWriter::with_capacity(BUF, file);
    let werr = |_| QueueExit::WriteError;
    let eerr = |e: EnvelopeError| e.exit();
    Record::Uid(uid.to_string().as_bytes()).write(&mut out).map_err(werr)?;
    Record::Pid(pid.to_string().as_bytes()).write(&mut out).map_err(werr)?;
    let sender = reader.sender().map_err(eerr)?;
    Record::Sender(sender.as_bytes()).write(&mut out).map_err(werr)?;
    while let Some(r) = reader.recipient().map_err(eerr)? {
        Record::Recipient(r.as_bytes()).write(&mut out).map_err(werr)?;
    }
    out.flush().map_err(werr)
}

/// Test-only hooks, compiled in only with the cargo feature `test-hooks` (tests/run turns it
/// on; an installed build has none) and honoured only when not running setuid/setgid:
/// `QMAILQUEUE_TEST_PAUSE=<step>` makes qmail-queue stop itself (SIGSTOP) at that step so a
/// test can kill it there, `QMAILQUEUE_TEST_PAUSE=panic:<step>` makes it panic there (exit 81),
/// and `QMAILQUEUE_TEST_DEATH=<seconds>` shortens the 24-hour timeout. Steps: pid, mess, body,
/// fsync, intd, envelope, todo.
struct Pause(Option<String>);

impl Pause {
    #[cfg(feature = "test-hooks")]
    fn from_env() -> Self {
        if auto::setugid() {
            return Pause(None);
        }
        Pause(std::env::var("QMAILQUEUE_TEST_PAUSE").ok())
    }

    #[cfg(not(feature = "test-hooks"))]
    fn from_env() -> Self {
        Pause(None)
    }

    fn at(&self, step: &str) {
        match self.0.as_deref() {
            Some(s) if s == step => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
            }
            Some(s) if s.strip_prefix("panic:") == Some(step) => panic!("test panic at {step}"),
            _ => {}
        }
    }

    #[cfg(feature = "test-hooks")]
    fn death(&self) -> Option<Duration> {
        if auto::setugid() {
            return None;
        }
        let secs = std::env::var("QMAILQUEUE_TEST_DEATH").ok()?.parse().ok()?;
        Some(Duration::from_secs(secs))
    }

    #[cfg(not(feature = "test-hooks"))]
    fn death(&self) -> Option<Duration> {
        None
    }
}
