//! qmail-rspawn: run remote deliveries for qmail-send (doc/qmail-rspawn.8).
//!
//! `qmail-rspawn`, started by qmail-start (as `qmailr` in a multi-user installation; it
//! switches to no one), commands on stdin, reports on stdout, through the shared engine
//! [`qmail::spawner`]. Per delivery, on a thread of its own, it runs
//! `QMAILHOME/bin/qmail-remote DOMAIN SENDER RECIPIENT` (DOMAIN: the recipient after its last
//! `@`) with the message on stdin and stdout + stderr on one pipe, and turns the exit status
//! and the output into the one report qmail-send wants with
//! [`qmail::remote::rspawn_status`]. At start it zeroes `queue/lock/tcpto` (the table of
//! remote hosts that timed out), as upstream does, under the table's lock.
//!
//! Exit codes: 0 at end of input, after the last report; 111 cannot find the qmail home,
//! cannot enter `QMAILHOME/queue/mess`, stdout failed, stdin failed or carried a mangled
//! command.
//!
//! Security: no privileges; it reads only the fixed command format and qmail-remote's
//! records, whose size is bounded ([`OUTPUT_MAX`]).

#![forbid(unsafe_code)]

use qmail::auto;
use qmail::exit::{self, Outcome};
use qmail::spawner::{self, Deliverer, Delivery};
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

/// The most bytes of qmail-remote's output read (one recipient: a few KB at most).
const OUTPUT_MAX: usize = 64 * 1024;

fn main() -> ExitCode {
    let home = match std::path::absolute(auto::home()) {
        Ok(home) => home,
        Err(e) => return fatal(&format!("unable to find the qmail home: {e}")),
    };
    // a missing table stays missing; trouble with it is not worth stopping for
    let _ = qmail::tcpto::clear(&home.join("queue/lock/tcpto"), false);
    let owner = match spawner::enter_queue(&home) {
        Ok(owner) => owner,
        Err(e) => return fatal(&format!("unable to enter {}/queue/mess: {e}", home.display())),
    };
    match spawner::serve(Arc::new(Remote { home }), owner) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e.to_string()),
    }
}

fn fatal(why: &str) -> ExitCode {
    qmail::log::line(format_args!("qmail-rspawn: fatal: {why}"));
    ExitCode::from(exit::TEMP)
}

/// The remote deliverer.
struct Remote {
    /// Absolute: the process runs in `queue/mess`.
    home: PathBuf,
}

impl Deliverer for Remote {
    fn deliver(&self, d: Delivery) -> Outcome {
        let Delivery { mut message, sender, recipient, .. } = d;
        let domain = qmail::address::split(&recipient).1.unwrap_or_default();
        if message.seek(SeekFrom::Start(0)).is_err() {
            return Outcome::temp("Unable to rewind the message. (#4.3.0)\n");
        }
        let mut cmd = Command::new(self.home.join("bin/qmail-remote"));
        cmd.arg(OsStr::from_bytes(domain))
            .arg(OsStr::from_bytes(&sender))
            .arg(OsStr::from_bytes(&recipient))
            .env("QMAILHOME", &self.home)
            .current_dir(&self.home)
            .stdin(Stdio::from(message));
        match spawner::run_child(cmd, OUTPUT_MAX) {
            Ok(child) => qmail::remote::rspawn_status(child.status, &child.output),
            Err(_) => Outcome::temp("Unable to run qmail-remote. (#4.3.0)\n"),
        }
    }
}
