//! qmail-todo: preprocess new messages for qmail-send (qmail-ldap's EXTERNAL_TODO).
//!
//! Started by qmail-start. fd 0: one-byte commands from qmail-send, fd 1: records to
//! qmail-send (both in `qmail::todo`); fd 2 to its own qmail-clean, fd 3 from its replies.
//! Watches `queue/lock/trigger` and scans `queue/todo/` (doc/qmail-todo.8), so a deep delivery queue never delays new mail.
//! Exit 0 after `X` or when qmail-send goes away; 111 on a start-up failure or when its
//! qmail-clean is gone (qmail-send then loses qmail-todo and exits, and the set is restarted).

#![forbid(unsafe_code)]

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use qmail::clean::{self, CleanError, Client};
use qmail::control::Control;
use qmail::queue::pool::{self, Kind, Taker};
use qmail::queue::records::Record as QueueRecord;
use qmail::queue::split_name;
use qmail::rewrite::{Rewriter, Route};
use qmail::safe::log as safe;
use qmail::text0::{self, Text0Error};
use qmail::todo::{Channels, Command, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Rescan `todo/` at least this often, even without a trigger.
const RESCAN: Duration = Duration::from_secs(1500);

/// The most messages preprocessed between two syncs of the queue.
const BATCH: usize = 256;

/// The longest envelope record: a tag and an address.
const MAX_RECORD: usize = 1 + qmail::address::MAX_LEN;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            qmail::log::line(format_args!("qmail-todo: fatal: {e}"));
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

struct Todo {
    /// the installation root (for the queue service's socket)
    home: PathBuf,
    /// qmail-send's finished channel and info files, reused
    pool: Taker,
    /// the queue directory, for syncfs
    queue: File,
    control: Control,
    rewriter: Rewriter,
    out: File,
    cleaner: Client,
}

fn run() -> Result<(), String> {
    let home = qmail::auto::home();
    // absolute: the queue service's socket is found from the queue directory
    let home = std::path::absolute(&home).unwrap_or(home);
    let control = Control::new(&home);
    std::env::set_current_dir(home.join("queue"))
        .map_err(|e| format!("unable to enter queue: {e}"))?;
    let rewriter = Rewriter::load(&control).map_err(|e| e.to_string())?;
    let out = dup(io::stdout().as_fd())?;
    let clean_w = dup(io::stderr().as_fd())?;
    let clean_r = File::from(qmail::child::inherited(3).ok_or("fd 3 is not open")?);
    let queue = File::open(".").map_err(|e| format!("unable to open the queue: {e}"))?;
    let cleaner = Client::new(clean_w, clean_r);
    // qmail-send's pool made ready in a row while qmail-send scans the queue, two files for
    // each message's `info` and channel file (doc/INTERNALS.md, "Recycled queue files"); a
    // failure costs only speed, and is logged once qmail-send listens
    let count = pool::ready_count(&control);
    let want = 2 * *count.as_ref().unwrap_or(&pool::READY);
    let ready = pool::make_ready(Path::new(pool::SEND), &[(Kind::Small, want, 0o600)]);
    let pool = Taker::new(qmail::queue::pool::SEND);
    let mut todo = Todo { home, pool, queue, control, rewriter, out, cleaner };
    let input = dup(io::stdin().as_fd())?;

    // wait for qmail-send's go-ahead: it has finished scanning the queue
    loop {
        match read_command(&input) {
            Some(Some(Command::Start)) => break,
            Some(Some(Command::Exit)) | None => return todo.finish(),
            Some(_) => {}
        }
    }
    if let Err(e) = count {
        todo.log(&format!("control/queuepool: {e}"));
    }
    if let Err(e) = ready {
        todo.log(&format!("unable to make pool files ready: {e}"));
    }
    let mut trigger = open_trigger();
    let mut next_scan = Instant::now();
    loop {
        if Instant::now() >= next_scan {
            match todo.scan(&input)? {
                Flow::Go => {}
                Flow::Stop => return todo.finish(),
            }
            next_scan = Instant::now() + RESCAN;
        }
        let wait = next_scan.saturating_duration_since(Instant::now());
        let mut fds = vec![PollFd::new(input.as_fd(), PollFlags::POLLIN)];
        if let Some(t) = &trigger {
            fds.push(PollFd::new(t.as_fd(), PollFlags::POLLIN));
        }
        let n = match poll(&mut fds, qmail::timeoutio::poll_timeout(wait)) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        };
        if n == 0 {
            continue;
        }
        let input_ready = fds[0].any().unwrap_or(false);
        let trigger_ready = fds.get(1).and_then(|f| f.any()).unwrap_or(false);
        drop(fds);
        if input_ready && todo.command(&input) == Flow::Stop {
            return todo.finish();
        }
        if trigger_ready {
            // drain and reopen, so the next poke wakes us again (a writer that keeps the FIFO
            // open would otherwise keep its bytes there and wake us for ever)
            if let Some(t) = trigger.take() {
                let mut f = File::from(t);
                let mut buf = [0u8; 512];
                while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
            }
            trigger = open_trigger();
            next_scan = Instant::now();
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

impl Todo {
    /// Act on one command byte from qmail-send.
    fn command(&mut self, input: &File) -> Flow {
        match read_command(input) {
            None | Some(Some(Command::Exit)) => Flow::Stop,
            Some(Some(Command::Reload)) => {
                match Rewriter::load(&self.control) {
                    Ok(r) => {
                        self.rewriter = r;
                        self.log("status: qmail-todo reread control files");
                    }
                    Err(e) => self.log(&format!("alert: unable to reread controls: {e}")),
                }
                Flow::Go
            }
            Some(_) => Flow::Go,
        }
    }

    /// Preprocess every entry of `todo/`, oldest id first, staying responsive to qmail-send.
    fn scan(&mut self, input: &File) -> Result<Flow, String> {
        let mut ids: Vec<u64> = match fs::read_dir("todo") {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(digits))
                .collect(),
            Err(e) => {
                self.log(&format!("warning: unable to scan todo: {e}"));
                return Ok(Flow::Go);
            }
        };
        ids.sort_unstable();
        for batch in ids.chunks(BATCH) {
            let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
                && self.command(input) == Flow::Stop
            {
                return Ok(Flow::Stop);
            }
            let mut done = Vec::with_capacity(batch.len());
            for &id in batch {
                match self.prepare(id) {
                    Ok(kind) => done.push((id, kind)),
                    Err(e) => self.log(&format!(
                        "warning: trouble with todo/{id}: {e}; will try again later"
                    )),
                }
            }
            if done.is_empty() {
                continue;
            }
            // one sync makes every file and directory entry of the batch durable before any
            // todo/id goes (doc/INTERNALS.md, "fsyncs per message"), shared with the queue
            // service's when it runs ("Shared syncs")
            if let Err(e) = qmail::queue::sync_fs(&self.home, &self.queue) {
                self.log(&format!("warning: unable to sync the queue: {e}; will try again later"));
                continue;
            }
            // todo/id and intd/id go, the batch's requests sent at once; losing qmail-clean
            // is fatal (qmail-send then loses us and the whole set is restarted)
            let requests: Vec<_> = done.iter().map(|&(id, _)| clean::Request::Todo(id)).collect();
            let replies = self.cleaner.requests(&requests);
            for ((id, kind), reply) in done.into_iter().zip(replies) {
                match reply {
                    Ok(()) => self.send(Record::Done(kind, id)),
                    Err(e @ CleanError::Lost(_)) => return Err(format!("oh no! {e}")),
                    Err(e) => self.log(&format!(
                        "warning: trouble with todo/{id}: {e}; will try again later"
                    )),
                }
            }
        }
        Ok(Flow::Go)
    }

    /// Preprocessing, first half (doc/qmail-todo.8): write info, local and remote for `id` (not yet durable) and say
    /// which channels it uses. The caller syncs the batch, then has todo removed and tells
    /// qmail-send. Any failure leaves todo in place and the whole step is redone later.
    fn prepare(&mut self, id: u64) -> Result<Channels, String> {
        let todo = File::open(format!("todo/{id}")).map_err(|e| format!("open: {e}"))?;
        let size = fs::metadata(split_name("mess", id)).map_err(|e| format!("mess: {e}"))?.len();
        let (info, local, remote) =
            (split_name("info", id), split_name("local", id), split_name("remote", id));
        for p in [&local, &remote, &info] {
            qmail::file::remove_if_present(Path::new(p))
                .map_err(|e| format!("unable to remove {p}: {e}"))?;
        }
        let mut info_f = create(&self.pool, &info)?;
        self.log(&format!("new msg {id}"));

        let mut input = BufReader::new(todo);
        let mut rec = Vec::new();
        let (mut uid, mut pid) = (String::new(), String::new());
        let mut local_f: Option<BufWriter<File>> = None;
        let mut remote_f: Option<BufWriter<File>> = None;
        let mut sender_seen = false;
        loop {
            match text0::read_record(&mut input, MAX_RECORD, &mut rec)
                .map_err(|e| format!("read: {e}"))?
            {
                None => break,
                Some(Err(Text0Error::Truncated)) => return Err("truncated envelope".into()),
                Some(Err(Text0Error::TooLong)) => return Err("envelope record too long".into()),
                Some(Ok(())) => {}
            }
            match QueueRecord::parse(&rec) {
                Some(QueueRecord::Uid(u)) => uid = safe(u),
                Some(QueueRecord::Pid(p)) => pid = safe(p),
                Some(QueueRecord::Sender(s)) if !sender_seen => {
                    sender_seen = true;
                    QueueRecord::Sender(s).write(&mut info_f).map_err(werr)?;
                    self.log(&format!(
                        "info msg {id}: bytes {size} from <{}> qp {pid} uid {uid}",
                        safe(s)
                    ));
                }
                Some(QueueRecord::Recipient(r)) => {
                    let route = self.rewriter.route(r).map_err(|e| e.to_string())?;
                    let (file, path, addr) = match &route {
                        Route::Local(a) => (&mut local_f, &local, a),
                        Route::Remote(a) => (&mut remote_f, &remote, a),
                    };
                    if file.is_none() {
                        *file = Some(BufWriter::new(create(&self.pool, path)?));
                    }
                    let w = file.as_mut().expect("just created");
                    QueueRecord::Recipient(addr).write(w).map_err(werr)?;
                }
                _ => return Err("unknown envelope record".into()),
            }
        }
        if !sender_seen {
            return Err("envelope without sender".into());
        }
        let kind = Channels::of(local_f.is_some(), remote_f.is_some());
        // a recycled file's old content ends where ours does (doc/INTERNALS.md, "Recycled
        // queue files")
        for w in [local_f, remote_f].into_iter().flatten() {
            let f = w.into_inner().map_err(|e| werr(e.into_error()))?;
            pool::cut_here(&f).map_err(werr)?;
        }
        pool::cut_here(&info_f).map_err(werr)?;
        Ok(kind)
    }

    fn log(&mut self, line: &str) {
        self.send(Record::Log(line.as_bytes().to_vec()));
    }

    fn send(&mut self, record: Record) {
        // if qmail-send is gone, the next read of fd 0 sees EOF and we exit
        let _ = self.out.write_all(&record.encode());
    }

    fn finish(mut self) -> Result<(), String> {
        self.send(Record::Exit);
        Ok(())
    }
}

fn werr(e: io::Error) -> String {
    format!("write: {e}")
}

/// A new `info`, `local` or `remote` file: a recycled one from `pool` when there is one.
fn create(pool: &Taker, path: &str) -> Result<File, String> {
    if let Some(f) = pool.take(Path::new(path), Kind::Small) {
        return Ok(f);
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("unable to create {path}: {e}"))
}

fn digits(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

fn dup(fd: std::os::fd::BorrowedFd<'_>) -> Result<File, String> {
    fd.try_clone_to_owned().map(File::from).map_err(|e| format!("dup: {e}"))
}

/// The next command byte from qmail-send (`Some(None)`: not a command); `None` at end of file.
fn read_command(input: &File) -> Option<Option<Command>> {
    let mut b = [0u8; 1];
    match qmail::timeoutio::read(&mut &*input, &mut b) {
        Ok(1) => Some(Command::parse(b[0])),
        _ => None,
    }
}

/// The trigger FIFO, opened for reading without blocking (`None` if it cannot be opened: the
/// periodic rescan still runs).
fn open_trigger() -> Option<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("lock/trigger")
        .ok()
        .map(OwnedFd::from)
}
