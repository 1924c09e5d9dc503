//! qmail-smtpd as a worker of `qmail-tcpsrv -W` (doc/qmail-smtpd.8, WORKER MODE): one session
//! after another, each handed over with its environment ([`qmail::handoff`]), until
//! qmail-tcpsrv closes the socket.
//!
//! Nothing of a session reaches the next: the process environment is reset to the worker's
//! start and the session's changes applied before it begins ([`handoff::Environment`]); the
//! session reads the environment afresh, and the control files through a cache that drops
//! whatever changed since the last session ([`qmail::control::Cache`]), and changes directory
//! to the installation root first, as a process run per connection does; its state (the connection,
//! TLS, the transaction, the verifier, the resolver) lives in values dropped at its end; every
//! child (qmail-queue, qmail-verify, auth_smtp) is waited for before the answer. The process
//! sets no signal disposition, umask or other process-wide state. The worker runs one thread:
//! a second one (which could read the environment while it changes) ends it instead.

use crate::io::Io;
use qmail::handoff::{self, Environment};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

/// Serve sessions until qmail-tcpsrv closes the socket (exit 0); 111 when the worker cannot
/// go on (its socket or a record is broken, or it runs more than one thread).
pub fn run() -> ExitCode {
    let env = Environment::snapshot();
    let log = crate::log::Log::new(1);
    let fail = |why: &dyn std::fmt::Display| {
        log.at(1, format_args!("worker: fatal: {why}"));
        ExitCode::from(qmail::exit::TEMP)
    };
    let control = match control() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    // the control files, read again only where they changed (doc/qmail-smtpd.8, CONTROL FILES)
    let controls = qmail::control::Cache::default();
    loop {
        let (socket, changes) = match handoff::receive(&control) {
            Ok(Some(session)) => session,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fail(&format!("unable to receive a session: {e}")),
        };
        // a failure here drops the client's socket: it sees the connection close
        if let Err(why) = env.session(&changes) {
            return fail(&why);
        }
        let code = match Io::socket(socket) {
            Ok(io) => crate::serve(io, &controls),
            Err(_) => 1,
        };
        reap_children();
        let threads = handoff::threads();
        if threads != 1 {
            return fail(&format!("{threads} threads after a session"));
        }
        if handoff::answer(&control, code).is_err() {
            // qmail-tcpsrv is gone
            return ExitCode::SUCCESS;
        }
    }
}

/// The socket to qmail-tcpsrv, moved off fd 0 to a close-on-exec descriptor (no child holds
/// it, so qmail-tcpsrv's end of file is never delayed); fd 0 becomes /dev/null.
fn control() -> std::io::Result<UnixStream> {
    let socket = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    socket.local_addr().map_err(|e| {
        std::io::Error::new(e.kind(), format!("fd 0 is not a Unix socket from qmail-tcpsrv: {e}"))
    })?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    Ok(socket)
}

/// Wait for every child left (a qmail-queue whose session ended in the middle of DATA exits
/// at the end of its input), so none outlives its session.
fn reap_children() {
    use nix::sys::wait::waitpid;
    loop {
        match waitpid(None::<nix::unistd::Pid>, None) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}
