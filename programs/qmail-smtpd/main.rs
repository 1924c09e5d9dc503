//! qmail-smtpd: receive mail over SMTP and queue it (doc/qmail-smtpd.8, the qmail-LDAP form).
//!
//! Run once per connection by a TCP server (qmail-tcpsrv, or ucspi-tcp's tcpserver) as
//! qmaild, with the client on fd 0 and the answers going to fd 1; takes no arguments; reads
//! `QMAILHOME/control/*` and the environment (`TCPREMOTEIP`, `RELAYCLIENT`, ...) once at the
//! start; queues each message through `bin/qmail-queue` (or `QMAILQUEUE`), streaming it.
//! Or, with `TCPSRV_WORKER` set, a long-lived worker of `qmail-tcpsrv -W` serving one session
//! after another, each exactly as a process of its own would (worker.rs).
//! See doc/qmail-smtpd.8 for every reply, control file and variable.
//!
//! Exit codes: 0 the session ended by QUIT or by the client closing the connection; 1 the
//! server ended it (timeout, bare LF/CR in DATA, header line too long, unreadable control
//! file, greeting refusal, I/O error). tcpserver only logs the status.
//!
//! Security: nothing here runs a shell or interpolates envelope data into a command (the
//! children are qmail-queue and, for RCPTCHECK/SENDERCHECK, qmail-verify, exec'd directly;
//! addresses reach qmail-verify as data on its pipe: verify.rs). Every input is bounded while it streams: command
//! lines ([`qmail::smtp::MAX_LINE`]), addresses, recipients per message
//! ([`envelope::MAX_RECIPIENTS`]), header lines and `databytes`; the message body is never held
//! in memory. Only `CRLF.CRLF` ends DATA; a bare LF or CR there ends the session.

#![forbid(unsafe_code)]

mod auth;
mod checks;
mod config;
mod conn;
mod data;
mod envelope;
mod io;
mod log;
mod session;
mod transaction;
mod verify;
mod worker;

use conn::End;
use io::Io;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os(qmail::handoff::WORKER_ENV).is_some() {
        return worker::run();
    }
    let Ok(io) = Io::stdio() else { return ExitCode::from(1) };
    ExitCode::from(serve(io, &qmail::control::Cache::default()))
}

/// Serve one session on `io` and close the connection; the exit code. `controls` keeps the
/// control files between the sessions of a worker.
fn serve(mut io: Io, controls: &qmail::control::Cache) -> u8 {
    let end = session::run(&mut io, controls);
    let _ = io.flush();
    io.close();
    match end {
        End::Quit | End::Closed => 0,
        End::Dropped => 1,
    }
}
