//! worker: `qmail-local --worker`, a long-lived delivery worker started by qmail-lspawn as
//! one uid/gid (doc/qmail-local.8, "Worker mode"; doc/INTERNALS.md, "Delivery workers").
//!
//! Its socket is fd [`WORKER_FD`]; the wire format is [`qmail::localworker`]. Single-threaded,
//! one request at a time: set this delivery's directory environment (every [`EnvName`]
//! removed, the request's set), build the arguments through the same parser as the command
//! line, then the same [`crate::plan`] and [`crate::deliver`] as a process. A plan that runs a
//! program is declined before anything is delivered (`X`: qmail-lspawn runs qmail-local as a
//! process for it). The answer is the exit code and everything qmail-local would have
//! printed. It ends at the end of its socket; it refuses to run as root.

use crate::args::{Args, USAGE};
use qmail::account::EnvName;
use qmail::exit::{self, Verdict};
use qmail::localworker::{Answer, Request, WORKER_FD};
use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

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
    loop {
        let (fd, record) = match qmail::fdpass::recv(&sock) {
            Ok(Some(got)) => got,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fatal(&format!("unable to read a request: {e}")),
        };
        let Some(request) = Request::decode(&record) else {
            return fatal("bad request");
        };
        let answer = handle(request, File::from(fd));
        if let Err(e) = sock.write_all(&answer.encode()) {
            return fatal(&format!("unable to answer: {e}"));
        }
    }
}

fn fatal(why: &str) -> ExitCode {
    qmail::log::line(format_args!("qmail-local: fatal: worker: {why}"));
    ExitCode::from(exit::TEMP)
}

/// One delivery: the answer qmail-local as a process would have given, or "run me as a
/// process" for a plan with a program.
fn handle(request: Request, message: File) -> Answer {
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
    let said = RefCell::new(Vec::new());
    let result = match Args::parse(argv) {
        None => Err(Verdict::perm(USAGE)),
        Some(args) => match crate::plan(&args) {
            Ok(plan) if plan.needs_process() => {
                let _ = std::env::set_current_dir("/");
                return Answer::exec(id);
            }
            Ok(plan) => crate::deliver(&args, plan, message, Some(&said)),
            Err(v) => Err(v),
        },
    };
    let _ = std::env::set_current_dir("/");
    let (code, text) = crate::render(result);
    let mut all = said.into_inner();
    all.extend_from_slice(&text);
    Answer::done(id, code, all)
}
