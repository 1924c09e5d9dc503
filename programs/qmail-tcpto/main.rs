//! qmail-tcpto: print the table of remote hosts that timed out (doc/qmail-tcpto.8).
//!
//! `qmail-tcpto`, no arguments: reads `QMAILHOME/queue/lock/tcpto` under its exclusive lock
//! and prints, for each record with a count of at least 1,
//! `IP timed out N seconds ago; # recent timeouts: C`. Run it as root or as the queue owner
//! (the lock needs write access). A table written by upstream qmail reads the same.
//!
//! Exit codes: 0 printed; 111 `qmail-tcpto: fatal: ...` when the table cannot be opened,
//! locked or read, or stdout fails.
//!
//! Security: no privileges; the file's bytes are decoded by [`qmail::tcpto::Table`], which
//! accepts any content.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = qmail::auto::home().join("queue/lock/tcpto");
    let entries = match qmail::tcpto::with_locked(&path, false, |t| (false, t.entries())) {
        Ok(e) => e,
        Err(e) => return fatal(&format!("unable to read {}: {e}", path.display())),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut text = String::new();
    for e in entries {
        let ago = now.saturating_sub(u64::from(e.when));
        text.push_str(&format!(
            "{} timed out {ago} seconds ago; # recent timeouts: {}\n",
            e.ip, e.count
        ));
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&format!("unable to write: {e}")),
    }
}

fn fatal(why: &str) -> ExitCode {
    eprintln!("qmail-tcpto: fatal: {why}");
    ExitCode::from(qmail::exit::TEMP)
}
