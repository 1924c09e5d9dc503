//! worker: `qmail-local --worker`, a long-lived delivery worker started by qmail-lspawn as
//! one uid/gid (doc/qmail-local.8, "Worker mode"; doc/INTERNALS.md, "Delivery workers").
//!
//! Its socket is fd [`WORKER_FD`]; the wire format is [`qmail::localworker`]. Single-threaded.
//! It takes every request waiting (at most [`BATCH`]) and carries each out in turn: set this
//! delivery's directory environment (every [`EnvName`] removed, the request's set: the
//! process environment is the delivery's, as a process's would be), build the arguments
//! through the same parser as the command line, then the same [`crate::plan`] and
//! [`crate::deliver`] as a process, with a [`Collect`] that takes the helpers' output and
//! the Maildir files, written but not synced. A plan that runs a program is declined before
//! anything is delivered and answered at once, before the batch's step (`X`: qmail-lspawn
//! runs qmail-local as a process for it). Then the batch's Maildir files are committed
//! together, in a pipeline of steps ([`maildir::step`]): one sync makes the batch before's
//! links into `new/` durable and this batch's data, this
//! batch is linked, and the batch before answered: the exit code and everything qmail-local
//! would have printed. While a batch is pending, the worker takes only the requests already
//! waiting, none at all when there are none: that step then ends the batch alone, as two
//! syncs in a row, the same as for a lone delivery. No answer goes out before its files and
//! their `new/` entries are on disk. It ends at the end of its socket, once it has answered
//! what it holds; it refuses to run as root.

use crate::args::{Args, USAGE};
use crate::delivery::Collect;
use qmail::account::EnvName;
use qmail::exit::{self, Verdict};
use qmail::localworker::{Answer, Request, WORKER_FD};
use qmail::maildir;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

/// The most requests taken together into one batch.
const BATCH: usize = 64;

pub fn serve() -> ExitCode {
    if nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root() {
        return fatal("a delivery worker never runs as root");
    }
    let Some(fd) = qmail::child::inherited(WORKER_FD) else {
        return fatal("no socket on fd 3");
    };
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // the programs it starts (helpers, qmail-queue) must not inherit the socket
    if fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
        return fatal("unable to set close-on-exec on the socket");
    }
    let mut sock = UnixStream::from(fd);
    let _ = std::env::set_current_dir("/");
    if let Err(e) = sock.write_all(&Answer::hello().encode()) {
        return fatal(&format!("unable to greet: {e}"));
    }
    // the batch before this one, its files linked, answered after the next step's sync
    let mut pending: Option<(Pending, maildir::Linked)> = None;
    loop {
        // every request waiting, up to BATCH: their Maildir files share one step; with a
        // batch pending, only those already waiting (none: the step just ends that batch)
        let mut batch = Vec::new();
        let mut end = false;
        while batch.len() < BATCH && ((batch.is_empty() && pending.is_none()) || waiting(&sock)) {
            match qmail::fdpass::recv(&sock) {
                Ok(Some(got)) => batch.push(got),
                Ok(None) => {
                    end = true;
                    break;
                }
                Err(e) => return fatal(&format!("unable to read a request: {e}")),
            }
        }
        let mut handled = Vec::with_capacity(batch.len());
        for (fd, record) in batch {
            let Some(request) = Request::decode(&record) else {
                return fatal("bad request");
            };
            handled.push(handle(request, File::from(fd)));
        }
        let (declined, next, files) = split(handled);
        // the declined go to a process at once: nothing of theirs waits for a sync
        if let Err(e) = answer(&mut sock, declined) {
            return e;
        }
        let (before, linked) = pending.take().unzip();
        let (done, linked) = maildir::step(&qmail::auto::home(), linked.unwrap_or_default(), files);
        if let Err(e) = answer(&mut sock, before.map(|b| b.answer(done)).unwrap_or_default()) {
            return e;
        }
        if !next.answers.is_empty() {
            pending = Some((next, linked));
        }
        if end && pending.is_none() {
            return ExitCode::SUCCESS;
        }
    }
}

/// Send `answers`; `Err` is the exit code when the socket fails.
fn answer(sock: &mut UnixStream, answers: Vec<Answer>) -> Result<(), ExitCode> {
    for answer in answers {
        sock.write_all(&answer.encode()).map_err(|e| fatal(&format!("unable to answer: {e}")))?;
    }
    Ok(())
}

/// Is another request waiting on `sock` (or its end)?
fn waiting(sock: &UnixStream) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

fn fatal(why: &str) -> ExitCode {
    qmail::log::line(format_args!("qmail-local: fatal: worker: {why}"));
    ExitCode::from(exit::TEMP)
}

/// One request, carried out up to its batch commit.
enum Handled {
    /// Declined: run qmail-local as a process.
    Exec(u32),
    /// qmail-local's result, with what the delivery collected (helpers' output, Maildir
    /// files still to commit).
    Ran { id: u32, result: Result<String, Verdict>, collect: Collect },
}

/// One delivery up to the commit of its Maildir files: the result qmail-local as a process
/// would have had, or "run me as a process" for a plan with a program.
fn handle(request: Request, message: File) -> Handled {
    let Request { id, args, env } = request;
    for name in EnvName::ALL {
        std::env::remove_var(name.as_str());
    }
    for (name, value) in &env {
        std::env::set_var(name.as_str(), OsStr::from_bytes(value));
    }
    let argv = std::iter::once(b"--".to_vec())
        .chain(args)
        .map(|a| std::ffi::OsString::from(OsStr::from_bytes(&a)))
        .collect();
    let collect = Collect::default();
    let result = match Args::parse(argv) {
        None => Err(Verdict::perm(USAGE)),
        Some(args) => match crate::plan(&args) {
            Ok(plan) if plan.needs_process() => {
                let _ = std::env::set_current_dir("/");
                return Handled::Exec(id);
            }
            Ok(plan) => crate::deliver(&args, plan, message, Some(&collect)),
            Err(v) => Err(v),
        },
    };
    let _ = std::env::set_current_dir("/");
    Handled::Ran { id, result, collect }
}

/// qmail-local's result for a request, with what it said.
type Ran = (Result<String, Verdict>, Vec<u8>);

/// A batch carried out up to its commit: what its answers need once its Maildir files are
/// committed (a step after its own).
struct Pending {
    /// per request that ran: its id, and what it ran to
    answers: Vec<(u32, Ran)>,
    /// per request that ran: how many of the batch's Maildir files are its
    counts: Vec<usize>,
}

/// A batch's requests, split into the declined ones (answered at once: they commit
/// nothing), what the other answers need, and the Maildir files of every successful
/// delivery, to commit together; a failed one's files are dropped (removed) uncommitted.
fn split(handled: Vec<Handled>) -> (Vec<Answer>, Pending, Vec<maildir::Staged>) {
    let mut declined = Vec::new();
    let mut files = Vec::new();
    let mut answers = Vec::with_capacity(handled.len());
    let mut counts = Vec::with_capacity(handled.len());
    for h in handled {
        match h {
            Handled::Exec(id) => declined.push(Answer::exec(id)),
            Handled::Ran { id, result, collect } => {
                let staged = collect.staged.into_inner();
                counts.push(if result.is_ok() { staged.len() } else { 0 });
                if result.is_ok() {
                    files.extend(staged);
                }
                answers.push((id, (result, collect.said.into_inner())));
            }
        }
    }
    (declined, Pending { answers, counts }, files)
}

impl Pending {
    /// The answers, given the results of the batch's files (`committed`, in order): a
    /// delivery whose file did not commit is a temporary failure.
    fn answer(self, committed: Vec<Result<PathBuf, maildir::MaildirError>>) -> Vec<Answer> {
        let mut committed = committed.into_iter();
        let mut counts = self.counts.into_iter();
        self.answers
            .into_iter()
            .map(|(id, (mut result, mut said))| {
                for r in committed.by_ref().take(counts.next().unwrap_or(0)) {
                    if let (Ok(_), Err(e)) = (&result, r) {
                        result = Err(Verdict::temp(format!(
                            "Unable to deliver to Maildir: {e} (#{})",
                            e.status()
                        )));
                    }
                }
                let (code, text) = crate::render(result);
                said.extend_from_slice(&text);
                Answer::done(id, code, said)
            })
            .collect()
    }
}
