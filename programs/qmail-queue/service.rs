//! The queue service: `qmail-queue --listen ADDR` (doc/qmail-queue.8, SERVICE MODE).
//!
//! A [`qmail::listener`] master and one long-lived worker (no use limit, no idle end) serving
//! up to [`SESSIONS`] clients at once, a thread each, one message per connection in the wire
//! format of [`qmail::queue::wire`]. Each message goes through the same steps as in the
//! one-shot mode ([`crate::sequence`]), the caller identified by the socket's peer
//! credentials (SO_PEERCRED), never by anything it sends. The syncs are shared: a message
//! and its envelope are written without a sync, then one `syncfs` of the queue's file
//! system for every message ready at that moment makes them and their `mess/` entries
//! durable, then the thread that ran it links each of them into `todo/` and syncs `todo/`
//! once for all, then the answers, then the trigger once for the group ([`crate::group`]).
//! A client may send a sync request instead of a message ([`wire::SYNC_REQUEST`]): it joins
//! the next `syncfs` round (doc/INTERNALS.md, "Shared syncs"). A failed sync ends the worker
//! after its answers. Pid files and envelopes are taken from the pool of recycled files when
//! it has any ([`qmail::queue::pool`]).
//!
//! Runs only as the queue's owner: refused setuid/setgid (the setuid bit must not let anyone
//! start a service as qmailq), and as root it first becomes the owner, or refuses.

use crate::group::Group;
use crate::journal::{self, Journal};
use crate::sequence::{self, Message, BUF};
use crate::{Pause, DEATH};
use qmail::date822::Utc;
use qmail::exit::QueueExit;
use qmail::listener::{self, Conn, Listen, Options};
use qmail::queue::pool::Taker;
use qmail::queue::wire;
use qmail::received::{self, Invoked};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Clients served at the same time; more wait in the socket's backlog (and run qmail-queue
/// themselves when the greeting does not come in time).
const SESSIONS: usize = 128;

/// A client that sends nothing for this long is answered 52 (qmail-queue has only its 24-hour
/// limit; the service's slots are worth more than a process). Longer than any SMTP timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(3600);

/// The longest a `syncfs` round waits after the last one ended, gathering more messages and
/// sync requests, while the recent rounds served several callers each; it begins sooner once
/// as many messages have joined it as the busiest of the last four rounds carried, and a
/// lone client's calls wait for nothing ([`crate::group`]; doc/DECISIONS.md 49: 4 ms rather
/// than 2 cut the disk writes per message by a fifth; doc/INTERNALS.md, "Shared syncs").
const SYNC_GAP: Duration = Duration::from_millis(4);

/// Names remembered for the Received line, by uid.
const INVOKED_MAX: usize = 4096;

/// `qmail-queue --listen ADDR`: check who we are, then serve until TERM.
pub fn main(args: &[std::ffi::OsString]) -> ExitCode {
    let usage = || {
        let _ = writeln!(io::stderr(), "usage: qmail-queue --listen unix:/path|fd:N");
        ExitCode::from(100)
    };
    let [addr] = args else { return usage() };
    let Some(listen) = addr.to_str().and_then(|a| a.parse::<Listen>().ok()) else {
        return usage();
    };
    if matches!(listen, Listen::Tcp(_)) {
        return usage();
    }
    if qmail::auto::setugid() {
        return refuse("refusing to serve through the setuid or setgid bit");
    }
    let home = qmail::auto::home();
    // a relative socket path is under the installation root, as clients look for it
    let listen = match listen {
        Listen::Unix(p) if p.is_relative() => Listen::Unix(home.join(p)),
        other => other,
    };
    if let Err(code) = crate::enter_queue().and_then(|()| crate::become_queue_owner()) {
        return refuse(&format!("unable to enter the queue as its owner (exit {})", code.code()));
    }
    if nix::unistd::geteuid().is_root() {
        return refuse("refusing to serve as root (the queue belongs to root)");
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o033));
    make_ready(&home);
    let pause = Pause::from_env();
    let death = pause.death().unwrap_or(DEATH);
    let mut service = match Service::new(pause, death) {
        Ok(s) => s,
        Err(e) => return refuse(&format!("unable to open the queue's directories: {e}")),
    };
    if listener::is_worker() {
        match start_journal(&home, &service) {
            Ok(journal) => service.journal = journal,
            // what the journal holds must be in the queue before anything new is: the master
            // starts another worker later, and clients run qmail-queue meanwhile
            Err(e) => return refuse(&format!("journal: {e}")),
        }
    }
    std::panic::set_hook(Box::new(|info| {
        qmail::log::line(format_args!("qmail-queue: bug: {info}"));
    }));
    let opts = Options {
        uses: 0,
        idle: Duration::ZERO,
        sessions: SESSIONS,
        timeout: READ_TIMEOUT.min(death),
    };
    match listener::run("qmail-queue", &listen, &opts, || (), |_, conn| service.serve(conn)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => refuse(&format!("unable to listen: {e}")),
    }
}

/// Files for the pool made ready in a row before the first message (`control/queuepool` of
/// each kind; doc/INTERNALS.md, "Recycled queue files"): message files private to the
/// service's group as [`sequence`] makes them, envelopes readable as qmail-todo reads them.
/// A failure costs only the speed: logged, and the service goes on.
fn make_ready(home: &std::path::Path) {
    use qmail::queue::pool::{self, Kind};
    let want = pool::ready_count(&qmail::control::Control::new(home)).unwrap_or_else(|e| {
        qmail::log::line(format_args!("qmail-queue: control/queuepool: {e}"));
        pool::READY
    });
    let wanted = [(Kind::Message, want, 0o640), (Kind::Small, want, 0o644)];
    if let Err(e) = pool::make_ready(std::path::Path::new(pool::QUEUE), &wanted) {
        qmail::log::line(format_args!("qmail-queue: unable to make pool files ready: {e}"));
    }
}

/// A worker's journal (doc/INTERNALS.md, "The queue journal"): opened (made when missing)
/// and locked; what it holds beyond the last mark queued again, each with the one-shot mode's
/// syncs; then marked covered, and made again when `control/queuejournal` asks for another
/// size. `Ok(None)` when the journal is off or cannot be made (logged): each message is then
/// answered after its round. `Err` when a journal exists but what it holds cannot be queued:
/// the worker must not serve.
fn start_journal(home: &Path, service: &Service) -> Result<Option<Journal>, String> {
    let kib = journal::wanted_kib(&qmail::control::Control::new(home)).unwrap_or_else(|e| {
        qmail::log::line(format_args!("qmail-queue: control/queuejournal: {e}"));
        journal::DEFAULT_KIB
    });
    let (journal, found) =
        Journal::open(kib).map_err(|e| format!("unable to read queue/{}: {e}", journal::NAME))?;
    let Some(journal) = journal else { return Ok(None) };
    let seqs = || std::iter::repeat_with(|| service.seq.fetch_add(1, Ordering::Relaxed));
    for r in &found.uncovered {
        let id = sequence::requeue(service.pid, seqs(), &r.mess, &r.env, &Pause::none()).map_err(
            |code| format!("unable to queue record {} again (exit {})", r.seq, code.code()),
        )?;
        qmail::log::line(format_args!(
            "qmail-queue: journal: record {} (message {}) queued again as message {id}",
            r.seq, r.id
        ));
    }
    if !found.uncovered.is_empty() {
        qmail::queue::pull_trigger(Path::new("lock/trigger"));
    }
    let mut journal =
        journal.settle(kib).map_err(|e| format!("unable to mark queue/{}: {e}", journal::NAME))?;
    if service.pause.fails("journal") {
        journal.as_mut().map(Journal::fail_writes);
    }
    Ok(journal)
}

fn refuse(why: &str) -> ExitCode {
    qmail::log::line(format_args!("qmail-queue: --listen: {why}"));
    ExitCode::from(111)
}

/// What the threads of a worker share.
struct Service {
    pid: u32,
    pause: Pause,
    death: Duration,
    /// pid file sequence numbers: unique within the process
    seq: AtomicU64,
    /// the queue directory: `syncfs` makes every file of the queue's file system durable
    queue: File,
    todo: File,
    /// makes messages, envelopes and their `mess/` entries durable, then links them into
    /// `todo/` and makes the links durable
    files: Group<Arc<Link>>,
    /// recycled files for pid files and envelopes
    pool: Taker,
    invoked: Mutex<HashMap<u32, Invoked>>,
    /// the queue journal: a message that fits is answered once it is there, before its round
    journal: Option<Journal>,
}

impl Service {
    fn new(pause: Pause, death: Duration) -> io::Result<Service> {
        Ok(Service {
            pid: std::process::id(),
            pause,
            death,
            seq: AtomicU64::new(1),
            queue: File::open(".")?,
            todo: File::open("todo")?,
            files: Group::with_gap(SYNC_GAP),
            pool: Taker::new(qmail::queue::pool::QUEUE),
            invoked: Mutex::new(HashMap::new()),
            journal: None,
        })
    }

    /// One connection: greet, queue one message or serve one sync request, answer with the
    /// exit code.
    fn serve(&self, conn: &mut Conn) {
        let uid = match peer_uid(&conn.read_fd()) {
            Ok(uid) => uid,
            Err(e) => {
                qmail::log::line(format_args!("qmail-queue: no peer credentials: {e}"));
                return;
            }
        };
        if conn.write_all(&wire::greeting(self.pid)).is_err() {
            return;
        }
        let mut first = [0u8];
        let code = match conn.read(&mut first) {
            // no message at all: as qmail-queue's input ending before the envelope
            Ok(0) => Some(QueueExit::ReadError),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Some(QueueExit::Timeout),
            Err(_) => Some(QueueExit::ReadError),
            Ok(_) => self.serve_one(conn, first[0], uid),
        };
        // a client that is gone does not hear it; its message is not committed unless 0
        // (None: answered already, once its record was in the journal)
        if let Some(code) = code {
            let _ = conn.write_all(&wire::answer(code.code(), b""));
        }
        if self.files.failed() || self.journal.as_ref().is_some_and(Journal::failed) {
            // a write error is reported once, to the sync that found it: every later answer
            // of this process could hide it, so a fresh worker (which sees only later errors)
            // takes over, and until then nobody is told 0 (doc/qmail-queue.8, SERVICE MODE)
            qmail::log::line(format_args!(
                "qmail-queue: a sync of the queue failed; this worker ends (its clients' messages \
                 are not queued; they try again)"
            ));
            std::process::exit(111);
        }
    }

    /// What the client's first byte starts: a sync request, or a message. The answer, or
    /// `None` when the client has it already.
    fn serve_one(&self, conn: &mut Conn, first: u8, uid: u32) -> Option<QueueExit> {
        if first == wire::SYNC_REQUEST {
            // a sync for the client's own files: a round that begins from now on, paced as
            // the messages' (leading it, this thread also makes the links of the messages
            // that joined it)
            let link = |jobs| self.link(jobs);
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.files.paced_round(None, || self.sync(), link, |n| self.pull(n))
            }));
            return Some(match round {
                Ok(Ok(())) => QueueExit::Queued,
                Ok(Err(_)) => QueueExit::WriteError,
                Err(_) => QueueExit::Bug,
            });
        }
        let answered = std::cell::Cell::new(false);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.queue_one(conn, first, uid, &answered)
        })) {
            Ok(Ok(())) if answered.get() => None,
            Ok(Ok(())) => Some(QueueExit::Queued),
            Ok(Err(code)) => Some(code),
            Err(_) if answered.get() => {
                // answered 0 through the journal, then a bug: the next worker queues the
                // message again from the journal, at once rather than at some later start
                qmail::log::line(format_args!(
                    "qmail-queue: a bug after a journal's answer; this worker ends, the next \
                     queues the message again from the journal"
                ));
                std::process::exit(111);
            }
            Err(_) => Some(QueueExit::Bug),
        }
    }

    /// One `syncfs` of the queue's file system, logged when it fails.
    fn sync(&self) -> io::Result<()> {
        let synced = if self.pause.fails("syncfs") {
            Err(nix::errno::Errno::EIO)
        } else {
            nix::unistd::syncfs(self.queue.as_fd())
        };
        synced.map_err(|e| {
            let e = io::Error::from(e);
            qmail::log::line(format_args!("qmail-queue: unable to sync the queue: {e}"));
            e
        })
    }

    /// The sequence of the one-shot mode with the syncs of a group. `first` is the first byte
    /// the client sent. `answered` is set once the client has its 0 (its record in the
    /// journal, before its round).
    fn queue_one(
        &self,
        conn: &mut Conn,
        first: u8,
        uid: u32,
        answered: &std::cell::Cell<bool>,
    ) -> Result<(), QueueExit> {
        let pause = &self.pause;
        let first = [first];
        let rest = Dying { conn, death: Instant::now() + self.death };
        let mut input = BufReader::with_capacity(BUF, (&first[..]).chain(rest));
        let seqs = std::iter::repeat_with(|| self.seq.fetch_add(1, Ordering::Relaxed));
        let mut msg = Message::begin(self.pid, seqs, Some(&self.pool), pause)?;
        let line = received::queue_line(self.pid, self.invoked(uid), &Utc::now());
        msg.write_message(line.as_bytes(), &mut wire::Frames::new(&mut input))?;
        pause.at("body");
        msg.write_envelope(&mut input, uid, self.pid, Some(&self.pool), pause)?;
        pause.at("envelope");
        let seq = self.log(&mut msg)?;
        if seq.is_some() {
            // durable in the journal: the answer need not wait for the round
            let _ = input.get_mut().get_mut().1.conn.write_all(&wire::answer(0, b""));
            answered.set(true);
            pause.at("journal");
        }
        let job = Arc::new(Link { id: msg.id(), seq, made: OnceLock::new() });
        let link = |jobs| self.link(jobs);
        let round =
            self.files.paced_round(Some(Arc::clone(&job)), || self.sync(), link, |n| self.pull(n));
        let id = msg.id();
        match (msg.committed(round, job.made.get().copied()), seq) {
            (Ok(()), _) => Ok(()),
            (Err(code), None) => Err(code),
            (Err(code), Some(seq)) => {
                // answered 0 already: the journal keeps it, and the next worker queues it
                // again from there; this one must not go on as if its round were fine
                qmail::log::line(format_args!(
                    "qmail-queue: message {id} (journal record {seq}) was not committed (exit \
                     {}); this worker ends, the next queues it again from the journal",
                    code.code()
                ));
                std::process::exit(111);
            }
        }
    }

    /// The message's record into the journal, when there is one and the message fits: its
    /// sequence number once it is durable. A journal that fails fails the message (53) and,
    /// after the answer, the worker ([`Service::serve`]).
    fn log(&self, msg: &mut sequence::Message) -> Result<Option<u64>, QueueExit> {
        let Some(journal) = &self.journal else { return Ok(None) };
        let Some((mess, env)) = msg.contents(journal.max_record()) else { return Ok(None) };
        journal.log(msg.id(), &mess, &env).map_err(|_| msg.fail(QueueExit::WriteError))
    }

    /// The end of a round whose `syncfs` has ended, by the thread that ran it: each message's
    /// link into `todo/` (a failed link fails only its message), then one fsync of `todo/`
    /// for every link made. A failed fsync fails the round.
    fn link(&self, jobs: Vec<Arc<Link>>) -> io::Result<()> {
        self.pause.at("fsync");
        let mut made = 0;
        for job in &jobs {
            let ok = sequence::link_todo(job.id).is_ok();
            made += usize::from(ok);
            let _ = job.made.set(ok);
        }
        self.pause.at("todo");
        if made == 0 {
            return Ok(());
        }
        self.todo.sync_all()?;
        if let Some(journal) = &self.journal {
            let logged = jobs.iter().filter(|j| j.made.get() == Some(&true));
            let seqs: Vec<u64> = logged.filter_map(|j| j.seq).collect();
            if !seqs.is_empty() {
                // a mark that fails has failed the journal: the worker ends after its answer
                let _ = journal.cover(&seqs);
            }
        }
        Ok(())
    }

    /// After a round that served `n` messages: qmail-send's trigger, once for all of them.
    fn pull(&self, n: usize) {
        if n > 0 {
            qmail::queue::pull_trigger(Path::new("lock/trigger"));
        }
    }

    /// How the Received line names `uid`, looked up once per uid.
    fn invoked(&self, uid: u32) -> Invoked {
        let mut cache = self.invoked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&known) = cache.get(&uid) {
            return known;
        }
        if cache.len() >= INVOKED_MAX {
            cache.clear();
        }
        *cache.entry(uid).or_insert_with(|| sequence::invoked(uid))
    }
}

/// A message's link into `todo/`, made by the thread that runs its round ([`Service::link`]).
struct Link {
    id: u64,
    /// its record in the journal, if it has one
    seq: Option<u64>,
    /// whether the link was made; unset until then (a round that failed before it)
    made: OnceLock<bool>,
}

/// The uid of the process at the other end of a Unix socket, from the kernel.
fn peer_uid(fd: &impl AsFd) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(cred.uid())
}

/// A client connection that times out at its 24-hour limit as qmail-queue does (and after
/// each read's own timeout).
struct Dying<'a> {
    conn: &'a mut Conn,
    death: Instant,
}

impl Read for Dying<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() >= self.death {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "24 hours"));
        }
        self.conn.read(buf)
    }
}
