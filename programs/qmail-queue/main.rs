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
//!
//! `qmail-queue --listen ADDR` is the queue service (doc/qmail-queue.8, SERVICE MODE;
//! [`service`]): the same sequence for one client after another on a Unix socket, the syncs
//! of the messages that are ready together shared (group commit).

#![forbid(unsafe_code)]

mod group;
mod journal;
mod sequence;
mod service;

use nix::unistd::{getpid, getuid};
use qmail::auto;
use qmail::date822::Utc;
use qmail::exit::QueueExit;
use qmail::received;
use sequence::{Message, BUF};
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// qmail-queue gives up after a day ("DEATH").
const DEATH: Duration = Duration::from_secs(86400);

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--listen") {
        return service::main(&args[1..]);
    }
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

/// One message from fd 0, its envelope from fd 1, each file synced as it is written.
fn run() -> Result<(), QueueExit> {
    let pause = Pause::from_env();
    enter_queue()?;
    let pid = getpid().as_raw() as u32;
    let uid = getuid().as_raw();
    become_queue_owner()?;

    let mut msg = Message::begin(pid, 1..=9, None, &pause)?;
    let line = received::queue_line(pid, sequence::invoked(uid), &Utc::now());
    msg.write_message(line.as_bytes(), &mut io::stdin().lock())?;
    pause.at("body");
    msg.sync_message()?;
    pause.at("fsync");
    let fd1 = io::stdout().as_fd().try_clone_to_owned().map_err(|_| QueueExit::ReadError);
    let fd1 = fd1.map_err(|e| msg.fail(e))?;
    let mut envelope = BufReader::with_capacity(BUF, File::from(fd1));
    msg.write_envelope(&mut envelope, uid, pid, None, &pause)?;
    msg.sync_envelope()?;
    pause.at("envelope");
    msg.commit(&pause, || qmail::file::fsync_dir(Path::new("todo")))?;
    qmail::queue::pull_trigger(Path::new("lock/trigger"));
    Ok(())
}

/// Change to the installation root's `queue/`: exit 61 without the root, 62 without the queue.
fn enter_queue() -> Result<(), QueueExit> {
    std::env::set_current_dir(auto::home()).map_err(|_| QueueExit::NoHome)?;
    std::env::set_current_dir("queue").map_err(|_| QueueExit::NoQueueDir)
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

    /// No hooks (the queue journal's replay at a worker's start).
    fn none() -> Self {
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

    /// Whether the test hook makes `step` fail as the disk would (`fail:step`; the service's
    /// `syncfs`, and `journal`: its journal's writes).
    fn fails(&self, step: &str) -> bool {
        self.0.as_deref().and_then(|s| s.strip_prefix("fail:")) == Some(step)
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
