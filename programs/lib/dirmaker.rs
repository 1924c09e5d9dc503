//! dirmaker: create a missing home directory with the program named in `control/dirmaker`
//! (doc/qmail-local.8, DESCRIPTION; doc/auth_pop.8, "After the login").
//!
//! Called by qmail-local before it changes to the home directory, and by auth_pop and
//! auth_imap when the change to the home failed. Only when `stat(home)` says
//! ENOENT and `control/dirmaker` names a program, that program runs directly (no shell; a
//! name without `/` is searched in `PATH`) with `$1` = the home directory and `$2` = the
//! default delivery (aliasempty), stdin, stdout and stderr on `/dev/null`. Exit 0: carry
//! on; exit 100 or 126: permanent failure; killed by a signal, any other exit, or no way to
//! start it: temporary failure. Without `control/dirmaker` nothing happens and the failing
//! chdir defers the message.
//!
//! Security: qmail-local already runs as the mailbox owner, so the program never gets more
//! than the user's own rights; as uid 0 it is refused (temporary failure), never run. The
//! home and the default delivery are arguments, never shell text.

use crate::exit::Verdict;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// The texts of doc/qmail-local.8 (upstream qmail-lspawn's exit codes 168, 167 and 169).
const PERMANENT: &str = "Permanent error in automatic homedir creation. (#5.3.0)";
const TEMPORARY: &str = "Temporary error in automatic homedir creation. (#4.3.0)";
const CRASHED: &str = "Automatic homedir creator crashed (#4.3.0)";

/// Run the configured dirmaker when `home` does not exist; `Ok` when there is nothing to do
/// or the program succeeded. `aliasempty` is its second argument (the default delivery).
pub fn make_home(home: &Path, aliasempty: &[u8]) -> Result<(), Verdict> {
    match std::fs::metadata(home) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        // present, or a failure chdir reports better
        _ => return Ok(()),
    }
    let Some(program) = configured()? else {
        return Ok(());
    };
    if nix::unistd::geteuid().is_root() {
        return Err(Verdict::temp(TEMPORARY));
    }
    let status = Command::new(&program)
        .arg(home)
        .arg(OsStr::from_bytes(aliasempty))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|_| Verdict::temp(TEMPORARY))?;
    verdict(status)
}

/// The program named in `control/dirmaker`, if any.
fn configured() -> Result<Option<String>, Verdict> {
    crate::control::Control::new(&crate::auto::home())
        .line("dirmaker")
        .map_err(|e| Verdict::temp(format!("Uh-oh: {e} (#4.3.0)")))
}

/// The dirmaker exit-status table.
fn verdict(status: ExitStatus) -> Result<(), Verdict> {
    match status.code() {
        Some(0) => Ok(()),
        Some(100 | 126) => Err(Verdict::perm(PERMANENT)),
        Some(_) => Err(Verdict::temp(TEMPORARY)),
        None if status.signal().is_some() => Err(Verdict::temp(CRASHED)),
        None => Err(Verdict::temp(TEMPORARY)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_table() {
        for code in 0..=255 {
            let got = verdict(ExitStatus::from_raw(code << 8));
            let want = match code {
                0 => Ok(()),
                100 | 126 => Err((true, PERMANENT)),
                _ => Err((false, TEMPORARY)),
            };
            let got = got.map_err(|v| (v.is_perm(), v.text().to_string()));
            assert_eq!(got, want.map_err(|(p, t)| (p, t.to_string())), "exit {code}");
        }
        let killed = verdict(ExitStatus::from_raw(9)).unwrap_err();
        assert!(!killed.is_perm());
        assert_eq!(killed.text(), CRASHED);
    }
}
