//! program: the `|command` delivery of qmail-local (doc/dot-qmail.5).
//!
//! Runs `/bin/sh -c COMMAND` with the command exactly as written in the `.qmail` file, in the
//! home directory, the message on stdin from offset 0, stdout and stderr shared with
//! qmail-local (so the program's words reach the log or the bounce). Envelope values are
//! passed only as environment variables. Exit codes: 0 ok; 99 ok and skip the remaining
//! instructions; 64, 65, 70, 76, 77, 78, 100, 112 permanent; anything else, or a crash,
//! temporary.

use qmail::exit::Verdict;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

/// What to do after a program succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// Exit 99: skip the following instructions (forwards seen so far are still sent).
    Stop,
}

/// Run `command` with `message` (positioned at 0) on its stdin and `env` added to the
/// environment.
pub fn run(command: &[u8], message: File, env: &[(&str, Vec<u8>)]) -> Result<Outcome, Verdict> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(OsStr::from_bytes(command)).stdin(Stdio::from(message));
    for (k, v) in env {
        cmd.env(k, OsStr::from_bytes(v));
    }
    let status =
        cmd.status().map_err(|e| Verdict::temp(format!("Unable to run /bin/sh: {e} (#4.3.0)")))?;
    outcome(status)
}

/// The program exit-code table.
pub fn outcome(status: ExitStatus) -> Result<Outcome, Verdict> {
    match status.code() {
        Some(0) => Ok(Outcome::Continue),
        Some(99) => Ok(Outcome::Stop),
        Some(64 | 65 | 70 | 76 | 77 | 78 | 100 | 112) => Err(Verdict::perm("")),
        Some(_) => Err(Verdict::temp("")),
        None => Err(Verdict::temp(format!(
            "Uh-oh: program crashed (signal {}). (#4.3.0)",
            status.signal().unwrap_or(0)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_table() {
        for code in 0..=255 {
            let got = outcome(ExitStatus::from_raw(code << 8));
            let want = match code {
                0 => Ok(Outcome::Continue),
                99 => Ok(Outcome::Stop),
                64 | 65 | 70 | 76 | 77 | 78 | 100 | 112 => Err(true),
                _ => Err(false),
            };
            assert_eq!(got.map_err(|v| v.is_perm()), want, "exit {code}");
        }
        // killed by SIGKILL
        assert!(!outcome(ExitStatus::from_raw(9)).unwrap_err().is_perm());
    }
}
