//! auth::start: what auth_pop and auth_imap do after a successful login (doc/auth_pop.8,
//! "After the login"): become the user, change to the home, set the environment, run the
//! POP-before-SMTP tool, and exec the sub-program.
//!
//! Order: setgroups/setgid/setuid to the mailbox's ids ([`crate::prot::drop_to`]: uid 0 is
//! refused; a process that is not root must already run as exactly those ids), `chdir` to
//! the home (missing: made by `control/dirmaker` ([`crate::dirmaker`]; failed: exit 61), or
//! exit 62), `MAILDIR` from `.qmail` when the backend says so (read as the
//! user), the PBS tool (`-d`, unless `NOPBS` is set: stdin and stdout on `/dev/null`, fd 3
//! closed, waited for, its failure logged and ignored), then exec. The directory connection
//! is closed before (ldap3 runs a runtime inside; nothing forks while it is open).

use super::checkpassword::CheckExit;
use super::{system, Mailbox, Maildir};
use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// One successful login, ready to start its sub-program.
pub struct Start<'a> {
    /// The program's name, for the log.
    pub me: &'a str,
    /// The login as typed (`USER`, `AUTHENTICATED`).
    pub login: &'a [u8],
    pub mailbox: &'a Mailbox,
    /// `-d`: the POP-before-SMTP tool.
    pub pbs: Option<&'a OsStr>,
    /// The sub-program and its arguments (not empty).
    pub program: &'a [OsString],
}

impl Start<'_> {
    /// Become the user, set up and exec the sub-program; returns only on failure, with the
    /// exit code (the reason is logged).
    pub fn exec(&self) -> CheckExit {
        let m = self.mailbox;
        if let Err(e) = crate::prot::drop_to(m.uid, m.gid) {
            let code = match e {
                crate::prot::ProtError::Root => CheckExit::BadRecord,
                _ => CheckExit::Temporary,
            };
            return self.fail(code, &format!("uid {} gid {}: {e}", m.uid, m.gid));
        }
        if let Err(code) = self.home() {
            return code;
        }
        let env = self.environment();
        if let Some(tool) = self.pbs.filter(|_| std::env::var_os("NOPBS").is_none()) {
            self.pbs_tool(tool, &env);
        }
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..]);
        apply(&mut cmd, &env);
        let e = cmd.exec();
        self.fail(CheckExit::Exec, &format!("unable to run {:?}: {e}", self.program[0]))
    }

    /// Change to the home; a missing one is made by `control/dirmaker` when configured
    /// (failed: 61), else exit 62.
    fn home(&self) -> Result<(), CheckExit> {
        let home = &self.mailbox.home;
        let chdir = || std::env::set_current_dir(home);
        let e = match chdir() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() != ErrorKind::NotFound => e,
            Err(_) => {
                // the second argument: the maildir, else the sub-program's last argument
                let second = match &self.mailbox.maildir {
                    Maildir::Store(s) => s.as_bytes().to_vec(),
                    _ => self.program.last().map(|a| a.as_bytes().to_vec()).unwrap_or_default(),
                };
                if let Err(v) = crate::dirmaker::make_home(home, &second) {
                    return Err(self.fail(CheckExit::Dirmaker, v.text()));
                }
                match chdir() {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        let why = format!("{} does not exist (control/dirmaker)", home.display());
                        return Err(self.fail(CheckExit::NoHome, &why));
                    }
                    Err(e) => e,
                }
            }
        };
        Err(self.fail(CheckExit::Temporary, &format!("unable to chdir to {}: {e}", home.display())))
    }

    /// The variables set (`Some`) and removed (`None`) for the sub-program.
    fn environment(&self) -> Vec<(&'static str, Option<OsString>)> {
        let m = self.mailbox;
        let login = OsString::from_vec(self.login.to_vec());
        let maildir = match &m.maildir {
            Maildir::Store(s) => Some(OsString::from(s)),
            Maildir::DotQmail => system::dot_qmail_maildir(&m.home).map(OsString::from_vec),
            Maildir::Unset => None,
        };
        vec![
            ("USER", Some(login.clone())),
            ("AUTHENTICATED", Some(login)),
            ("HOME", Some(m.home.clone().into_os_string())),
            ("MAILDIR", maildir),
            ("MAILDIRQUOTA", m.quota.clone().map(OsString::from)),
            ("DATASIZE", m.size_max.map(|n| OsString::from(n.to_string()))),
        ]
    }

    /// Run the PBS tool and wait for it; a failure is logged and changes nothing.
    fn pbs_tool(&self, tool: &OsStr, env: &[(&'static str, Option<OsString>)]) {
        let mut cmd = Command::new(tool);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        apply(&mut cmd, env);
        // fd 3 is closed by now: the program dropped it after reading the login
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => self.log(&format!("{}: {s}", String::from_utf8_lossy(tool.as_bytes()))),
            Err(e) => self.log(&format!("unable to run {}: {e}", tool.to_string_lossy())),
        }
    }

    fn fail(&self, code: CheckExit, why: &str) -> CheckExit {
        self.log(why);
        code
    }

    fn log(&self, why: &str) {
        crate::log::line(format_args!("{}: {why}", self.me));
    }
}

fn apply(cmd: &mut Command, env: &[(&'static str, Option<OsString>)]) {
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
}

/// The command line of auth_pop and auth_imap, `[-d pbstool] program [args...]`: the tool
/// and the program with its arguments; `None` for a usage error. The options end at the
/// program's name, so its own options are its own.
pub fn command_line(args: &[Vec<u8>]) -> Option<(Option<OsString>, Vec<OsString>)> {
    use crate::getopt::{Getopt, Opt};
    let mut opts = Getopt::new(args, "d:");
    let mut pbs = None;
    for opt in opts.by_ref() {
        match opt {
            Opt::Value(b'd', tool) => pbs = Some(OsString::from_vec(tool)),
            _ => return None,
        }
    }
    let program: Vec<OsString> =
        opts.rest().iter().map(|a| OsString::from_vec(a.clone())).collect();
    (!program.is_empty()).then_some((pbs, program))
}

/// Read the login on fd 3: at most `max` bytes to its end, then close it. `Err`: fd 3 is not
/// open, cannot be read, or holds more than `max` bytes.
pub fn read_fd3(max: usize) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let fd = crate::child::inherited(3).ok_or("fd 3 is not open")?;
    let mut input = std::fs::File::from(fd);
    // room for one byte more than allowed, allocated once: no copy is left behind
    let mut buf = zeroize::Zeroizing::new(vec![0u8; max + 1]);
    let mut len = 0;
    while len < buf.len() {
        match crate::timeoutio::read(&mut input, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(format!("unable to read fd 3: {e}")),
        }
    }
    if len > max {
        return Err(format!("more than {max} bytes on fd 3"));
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn command_lines() {
        let (pbs, prog) =
            command_line(&args(&["-d", "pbsadd", "qmail-pop3d", "-x", "./Maildir/"])).unwrap();
        assert_eq!(pbs, Some(OsString::from("pbsadd")));
        assert_eq!(prog, ["qmail-pop3d", "-x", "./Maildir/"]);
        let (pbs, prog) = command_line(&args(&["qmail-pop3d", "-d", "x"])).unwrap();
        assert_eq!((pbs, prog.len()), (None, 3));
        for bad in [&[][..], &["-d"], &["-d", "pbsadd"], &["-x", "prog"]] {
            assert!(command_line(&args(bad)).is_none(), "{bad:?}");
        }
    }
}
