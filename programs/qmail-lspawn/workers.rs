//! workers: qmail-lspawn's delivery workers, one long-lived `qmail-local --worker` per
//! (uid, gid) it delivers for (doc/qmail-lspawn.8, "Delivery workers"; doc/INTERNALS.md,
//! "Delivery workers"; wire format [`qmail::localworker`]).
//!
//! A worker is started on first use with `std::process::Command` as that uid/gid
//! (supplementary groups dropped; never uid 0), its socket on fd 3, stdin and stdout on
//! `/dev/null`, stderr ours (the log). It must greet within [`HELLO_WAIT`]; one that does not
//! (a broken or foreign `qmail-local`) is stopped, and that uid/gid delivers with a process
//! per delivery for [`DOWN_FOR`]. Delivery threads send requests under one lock, each with
//! its own id; a reader thread per worker hands each answer to the thread that waits for it.
//!
//! Retirement: after [`USES`] requests, after [`IDLE`] without one, and at a reload, the
//! worker leaves the table and its socket is shut for writing: it answers what it has, sees
//! the end, exits, and the reader thread reaps it. A worker that dies or answers nonsense
//! fails every request it holds (temporary: qmail-send retries, at least once, never a
//! bounce); the next delivery starts another. Root reads only the bounded answers of
//! [`Answer::read`].

use crate::RunAs;
use nix::poll::PollFlags;
use qmail::account::EnvName;
use qmail::localworker::{Answer, Kind, Request, IDLE, USES, WORKER_FD};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a new worker has to greet.
const HELLO_WAIT: Duration = Duration::from_secs(10);

/// How long a uid/gid whose worker would not start delivers with a process each time.
const DOWN_FOR: Duration = Duration::from_secs(60);

/// A worker's key: the uid and gid it runs as.
type Key = (u32, u32);

/// How a request to a worker ended.
pub enum Asked {
    /// The worker's answer: the exit code and text of qmail-local (`Done`, `Cut`) or `Exec`.
    Answer(Answer),
    /// The worker died or broke before it answered: the delivery may or may not have
    /// happened (a temporary failure: retried, at least once).
    Died,
    /// Nothing was sent (no worker, or the request does not fit): run qmail-local.
    NotSent,
}

/// Limits, shortened by the tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    uses: u32,
}

impl Limits {
    #[cfg(feature = "test-hooks")]
    fn from_env() -> Limits {
        // test-only: QMAILLSPAWN_TEST_IDLE (milliseconds) and QMAILLSPAWN_TEST_USES
        let num = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Limits {
            idle: num("QMAILLSPAWN_TEST_IDLE").map_or(IDLE, Duration::from_millis),
            uses: num("QMAILLSPAWN_TEST_USES").map_or(USES, |n| n.clamp(1, u32::MAX.into()) as u32),
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    fn from_env() -> Limits {
        Limits { idle: IDLE, uses: USES }
    }
}

/// The table of running workers.
pub struct Workers {
    home: PathBuf,
    limits: Limits,
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    running: HashMap<Key, Arc<Worker>>,
    /// uid/gid whose worker would not start, until when
    down: HashMap<Key, Instant>,
}

/// One running worker, shared by the delivery threads and its reader thread.
struct Worker {
    pid: u32,
    send: Mutex<SendSide>,
    /// the threads waiting for an answer, by request id
    waiting: Mutex<HashMap<u32, mpsc::Sender<Answer>>>,
    last_use: Mutex<Instant>,
    /// false once retired: nothing more is sent (changed under the `send` lock; read without
    /// it by the reader thread, which must never wait for a sender blocked on a full socket)
    open: AtomicBool,
}

struct SendSide {
    sock: UnixStream,
    next_id: u32,
    sent: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workers {
    pub fn new(home: PathBuf) -> Workers {
        Workers { home, limits: Limits::from_env(), table: Arc::default() }
    }

    /// Ask the worker of `run_as` (started if needed) to deliver `request` (its id is set
    /// here) of the open `message`.
    pub fn ask(&self, run_as: RunAs, mut request: Request, message: &File) -> Asked {
        let key = match run_as {
            RunAs::User { uid, gid } if uid != 0 => (uid, gid),
            RunAs::Myself => (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()),
            _ => return Asked::NotSent,
        };
        let Some(worker) = self.worker(key, run_as) else { return Asked::NotSent };
        let (tx, rx) = mpsc::channel();
        {
            let mut send = lock(&worker.send);
            if !worker.open.load(Ordering::SeqCst) {
                return Asked::NotSent;
            }
            request.id = send.next_id;
            send.next_id = send.next_id.wrapping_add(1);
            let Some(record) = request.encode() else { return Asked::NotSent };
            lock(&worker.waiting).insert(request.id, tx);
            if qmail::fdpass::send(&send.sock, message, &record).is_err() {
                // not sent: nothing was delivered (a record too long, or a dead worker,
                // which its reader thread sees too)
                lock(&worker.waiting).remove(&request.id);
                return Asked::NotSent;
            }
            *lock(&worker.last_use) = Instant::now();
            send.sent += 1;
            if send.sent >= self.limits.uses {
                retire(&self.table, key, &worker, &mut send);
            }
        }
        match rx.recv() {
            Ok(answer) => Asked::Answer(answer),
            Err(_) => Asked::Died,
        }
    }

    /// Retire every worker (a reload: the next deliveries start fresh ones, with a
    /// possibly new qmail-local).
    pub fn retire_all(&self) {
        let workers: Vec<(Key, Arc<Worker>)> =
            lock(&self.table).running.iter().map(|(k, w)| (*k, Arc::clone(w))).collect();
        for (key, worker) in workers {
            retire(&self.table, key, &worker, &mut lock(&worker.send));
        }
        lock(&self.table).down.clear();
    }

    /// The running worker of `key`, started if there is none; `None` when it cannot start.
    fn worker(&self, key: Key, run_as: RunAs) -> Option<Arc<Worker>> {
        let mut table = lock(&self.table);
        if let Some(w) = table.running.get(&key) {
            return Some(Arc::clone(w));
        }
        if table.down.get(&key).is_some_and(|until| Instant::now() < *until) {
            return None;
        }
        match self.start(run_as) {
            Ok((worker, child, input)) => {
                table.down.remove(&key);
                table.running.insert(key, Arc::clone(&worker));
                let (shared, limits) = (Arc::clone(&self.table), self.limits);
                let reader = Arc::clone(&worker);
                let started = std::thread::Builder::new()
                    .name(format!("worker {}", worker.pid))
                    .spawn(move || read_answers(&shared, key, &reader, input, child, limits));
                if started.is_err() {
                    // dropping the worker closes its socket, which ends it
                    table.running.remove(&key);
                    return None;
                }
                Some(worker)
            }
            Err(e) => {
                qmail::log::line(format_args!(
                    "qmail-lspawn: no delivery worker for uid {} gid {}: {e}; running qmail-local for each delivery",
                    key.0, key.1
                ));
                table.down.insert(key, Instant::now() + DOWN_FOR);
                None
            }
        }
    }

    /// Start `qmail-local --worker` as `run_as` and wait for its hello.
    fn start(&self, run_as: RunAs) -> io::Result<(Arc<Worker>, Child, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut cmd = Command::new(self.home.join("bin/qmail-local"));
        cmd.arg("--worker")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for name in EnvName::ALL {
            cmd.env_remove(name.as_str());
        }
        run_as.apply(&mut cmd).map_err(|_| io::Error::other("refused user"))?;
        qmail::child::map_fds(&mut cmd, vec![(OwnedFd::from(theirs), WORKER_FD)]);
        let mut child = cmd.spawn()?;
        // the Command holds the worker's end: without dropping it, no end of file is seen
        drop(cmd);
        let mut input = ours.try_clone()?;
        let hello =
            qmail::timeoutio::wait(input.as_fd(), PollFlags::POLLIN, Instant::now() + HELLO_WAIT)
                .and_then(|()| Answer::read(&mut input));
        match hello {
            Ok(Some(a)) if a.kind == Kind::Hello => {}
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "no greeting".to_string(),
                };
                return Err(io::Error::other(why));
            }
        }
        let worker = Worker {
            pid: child.id(),
            send: Mutex::new(SendSide { sock: ours, next_id: 1, sent: 0 }),
            waiting: Mutex::default(),
            last_use: Mutex::new(Instant::now()),
            open: AtomicBool::new(true),
        };
        Ok((Arc::new(worker), child, input))
    }
}

/// Take `worker` out of the table (if it is still the one there) and shut its socket for
/// writing: it answers what it holds, then ends.
fn retire(table: &Mutex<Table>, key: Key, worker: &Arc<Worker>, send: &mut SendSide) {
    {
        let mut table = lock(table);
        if table.running.get(&key).is_some_and(|w| Arc::ptr_eq(w, worker)) {
            table.running.remove(&key);
        }
    }
    if worker.open.swap(false, Ordering::SeqCst) {
        let _ = send.sock.shutdown(Shutdown::Write);
    }
}

/// The reader thread of one worker: hand out its answers until its end; retire it when idle;
/// then fail what is still waiting and reap it.
fn read_answers(
    table: &Mutex<Table>,
    key: Key,
    worker: &Arc<Worker>,
    mut input: UnixStream,
    mut child: Child,
    limits: Limits,
) {
    let broken = loop {
        // while idle, wait until the idle limit; otherwise for an answer or the end
        let idle_from = {
            let open = worker.open.load(Ordering::SeqCst);
            let idle = open && lock(&worker.waiting).is_empty();
            idle.then(|| *lock(&worker.last_use))
        };
        let deadline = idle_from.map_or(Instant::now() + limits.idle, |t| t + limits.idle);
        if let Err(e) = qmail::timeoutio::wait(input.as_fd(), PollFlags::POLLIN, deadline) {
            if e.kind() != io::ErrorKind::TimedOut {
                break true;
            }
            // idle: no request outstanding, so no sender can be blocked on a full socket
            let mut send = lock(&worker.send);
            let idle = lock(&worker.waiting).is_empty();
            if idle && lock(&worker.last_use).elapsed() >= limits.idle {
                retire(table, key, worker, &mut send);
            }
            continue;
        }
        match Answer::read(&mut input) {
            Ok(None) => break false,
            Ok(Some(answer)) => {
                let waiter = lock(&worker.waiting).remove(&answer.id);
                match (answer.kind, waiter) {
                    (Kind::Hello, _) | (_, None) => break true,
                    (_, Some(tx)) => {
                        let _ = tx.send(answer);
                    }
                }
            }
            Err(_) => break true,
        }
    };
    if broken {
        // killed first: a sender blocked on its full socket then fails at once
        qmail::log::line(format_args!(
            "qmail-lspawn: delivery worker {} broke its protocol; stopped",
            worker.pid
        ));
        let _ = child.kill();
    }
    retire(table, key, worker, &mut lock(&worker.send));
    // every thread still waiting sees its channel close: a temporary failure
    lock(&worker.waiting).clear();
    let _ = child.wait();
}
