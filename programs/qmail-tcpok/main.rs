//! qmail-tcpok: forget every remote host's timeouts (doc/qmail-tcpok.8).
//!
//! `qmail-tcpok`, no arguments: overwrites `QMAILHOME/queue/lock/tcpto` with 1024 NUL bytes
//! under its exclusive lock, so qmail-remote tries every host again at once. Prints nothing.
//! The file is not created when it is missing (qmailctl init makes it).
//!
//! Exit codes: 0 done; 111 `qmail-tcpok: fatal: ...` when the table cannot be opened,
//! locked or written.
//!
//! Security: no privileges; run it as root or as the queue owner.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let path = qmail::auto::home().join("queue/lock/tcpto");
    match qmail::tcpto::clear(&path, false) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmail-tcpok: fatal: unable to clear {}: {e}", path.display());
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}
