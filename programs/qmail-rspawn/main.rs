//! qmail-rspawn: run remote deliveries for qmail-send (spec pipeline §3, §3.7) — for now a
//! stand-in that keeps every remote message queued.
//!
//! `qmail-rspawn`, started by qmail-start (as `qmailr` in a multi-user installation), commands
//! on stdin, reports on stdout, through the shared engine [`qmail::spawner`]: the handshake,
//! the checks of every command and their immediate replies are the real ones. At start it
//! zeroes `queue/lock/tcpto` (the remote-host timeout table), as upstream does. Every valid
//! delivery is answered `Z` "Remote delivery is not available yet; the message stays queued.
//! (#4.3.0)" until qmail-remote exists.
//!
//! Exit codes: 0 at end of input, after the last report; 111 cannot enter
//! `QMAILHOME/queue/mess`, stdout failed, stdin failed or carried a mangled command.
//!
//! Security: no privileges, no child processes yet; it reads only the fixed command format.

use qmail::auto;
use qmail::exit::{self, Outcome};
use qmail::spawner::{self, Deliverer, Delivery};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// The size of `lock/tcpto` (spec §4.5).
const TCPTO_SIZE: usize = 1024;

fn main() -> ExitCode {
    let home = auto::home();
    zero_tcpto(&home.join("queue/lock/tcpto"));
    let owner = match spawner::enter_queue(&home) {
        Ok(owner) => owner,
        Err(e) => return fatal(&format!("unable to enter {}/queue/mess: {e}", home.display())),
    };
    match spawner::serve(Arc::new(Remote), owner) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e.to_string()),
    }
}

fn fatal(why: &str) -> ExitCode {
    eprintln!("qmail-rspawn: fatal: {why}");
    ExitCode::from(exit::TEMP)
}

/// Forget every remote host's timeouts: overwrite the table with zeros. The file is not
/// created when missing, and a failure is ignored (upstream's `tcpto_clean`).
fn zero_tcpto(path: &Path) {
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.write_all(&[0u8; TCPTO_SIZE]);
    }
}

/// The remote deliverer, for now: everything stays queued.
struct Remote;

impl Deliverer for Remote {
    fn deliver(&self, _delivery: Delivery) -> Outcome {
        Outcome::temp("Remote delivery is not available yet; the message stays queued. (#4.3.0)\n")
    }
}
