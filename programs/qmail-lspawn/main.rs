//! qmail-lspawn: run local deliveries for qmail-send (spec pipeline §3, §3.6).
//!
//! `qmail-lspawn aliasempty`, started by qmail-start (as root in a multi-user installation),
//! commands on stdin, reports on stdout, through the shared engine [`qmail::spawner`]. Per
//! delivery, on a thread of its own:
//!
//! 1. split the recipient at its last `@` into LOCAL and DOMAIN; an empty LOCAL is a success
//!    with nothing delivered;
//! 2. find the account ([`lookup`], the one seam the LDAP lookup will replace): run
//!    `QMAILHOME/bin/qmail-getpw LOCAL` as `qmailp` (else `nobody`) when root, read its six
//!    fields (bounded), refuse uid 0;
//! 3. run `QMAILHOME/bin/qmail-local -- user home LOCAL dash ext DOMAIN SENDER aliasempty` with
//!    the message on stdin and stdout + stderr on one pipe, as the account's uid/gid when root
//!    (supplementary groups dropped), as itself otherwise;
//! 4. turn its exit status and output (up to 3000 bytes, cut at the first NUL) into the report
//!    with [`qmail::exit::local_status`].
//!
//! The reload command and SIGHUP re-read the configuration (today: which user runs the
//! lookups).
//!
//! Exit codes: 0 at end of input, after the last report; 100 no `aliasempty` argument; 111
//! cannot enter `QMAILHOME/queue/mess`, stdout failed, stdin failed or carried a mangled
//! command.
//!
//! Security: root here parses only the six fixed fields of qmail-getpw's answer; the lookup
//! itself runs unprivileged. No delivery runs as uid 0; the switch to the user happens in the
//! child through `std::process::Command` (setgroups, setgid, setuid), never by hand.

use qmail::auto;
use qmail::exit::{self, qlx, Outcome};
use qmail::spawner::{self, Deliverer, Delivery};
use std::ffi::{OsStr, OsString};
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::RwLock;

/// The most bytes of qmail-getpw's answer read.
const GETPW_MAX: usize = 4096;

fn main() -> ExitCode {
    let Some(aliasempty) = std::env::args_os().nth(1) else {
        eprintln!("qmail-lspawn: usage: qmail-lspawn aliasempty");
        return ExitCode::from(exit::PERM);
    };
    let home = match std::path::absolute(auto::home()) {
        Ok(home) => home,
        Err(e) => return fatal(&format!("unable to find the qmail home: {e}")),
    };
    let owner = match spawner::enter_queue(&home) {
        Ok(owner) => owner,
        Err(e) => return fatal(&format!("unable to enter {}/queue/mess: {e}", home.display())),
    };
    let local = Local::new(home, aliasempty);
    match spawner::serve(std::sync::Arc::new(local), owner) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e.to_string()),
    }
}

fn fatal(why: &str) -> ExitCode {
    eprintln!("qmail-lspawn: fatal: {why}");
    ExitCode::from(exit::TEMP)
}

/// Who runs a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAs {
    /// Not root: everything runs as this process's own user.
    Myself,
    /// Root: switch to this uid/gid (never 0).
    User { uid: u32, gid: u32 },
    /// Root, but no user to switch to: refuse.
    Nobody,
}

impl RunAs {
    /// Switch the child of `cmd` to `uid`/`gid` when root; Err(report) when impossible.
    fn apply(self, cmd: &mut Command) -> Result<(), Outcome> {
        match self {
            RunAs::Myself => Ok(()),
            RunAs::User { uid, gid } if uid != 0 => {
                cmd.uid(uid).gid(gid);
                Ok(())
            }
            RunAs::User { .. } => Err(exit::local_code(qlx::ROOT, b"")),
            RunAs::Nobody => Err(exit::local_code(qlx::EXECPW, b"")),
        }
    }
}

/// The user qmail-getpw runs as: `qmailp`, else `nobody`, when root.
fn lookup_user() -> RunAs {
    if !nix::unistd::geteuid().is_root() {
        return RunAs::Myself;
    }
    for name in [auto::USER_QMAILP, "nobody"] {
        if let Ok(Some(pw)) = nix::unistd::User::from_name(name) {
            if !pw.uid.is_root() {
                return RunAs::User { uid: pw.uid.as_raw(), gid: pw.gid.as_raw() };
            }
        }
    }
    RunAs::Nobody
}

/// The local deliverer.
struct Local {
    home: PathBuf,
    aliasempty: OsString,
    getpw_as: RwLock<RunAs>,
}

impl Local {
    fn new(home: PathBuf, aliasempty: OsString) -> Self {
        Local { home, aliasempty, getpw_as: RwLock::new(lookup_user()) }
    }

    fn run(&self, d: Delivery) -> Result<Outcome, Outcome> {
        let Delivery { mut message, sender, recipient, .. } = d;
        let (local, domain) = spawner::split_at_last_at(&recipient);
        if local.is_empty() {
            return Ok(Outcome::Success(Vec::new()));
        }
        let getpw_as = *self.getpw_as.read().unwrap_or_else(|p| p.into_inner());
        let account = lookup(&self.home, getpw_as, local)?;
        message
            .seek(SeekFrom::Start(0))
            .map_err(|_| Outcome::temp("Unable to rewind the message. (#4.3.0)\n"))?;
        let mut cmd = Command::new(self.home.join("bin/qmail-local"));
        cmd.arg("--")
            .arg(&account.user)
            .arg(&account.home)
            .arg(OsStr::from_bytes(local))
            .arg(&account.dash)
            .arg(&account.ext)
            .arg(OsStr::from_bytes(domain))
            .arg(OsStr::from_bytes(&sender))
            .arg(&self.aliasempty)
            .stdin(Stdio::from(message));
        if nix::unistd::geteuid().is_root() {
            RunAs::User { uid: account.uid, gid: account.gid }.apply(&mut cmd)?;
        }
        // a missing or unexecutable qmail-local is a broken installation, not a property of
        // the message: always temporary (upstream bounces on a "permanent" errno)
        let child = spawner::run_child(cmd, exit::LOCAL_OUTPUT_MAX)
            .map_err(|_| exit::local_code(qlx::EXECSOFT, b""))?;
        let mut output = child.output;
        if child.cut {
            output.extend_from_slice(b"\n(qmail-lspawn: report too long, cut after 3000 bytes)\n");
        }
        Ok(exit::local_status(child.status, &output))
    }
}

impl Deliverer for Local {
    fn deliver(&self, d: Delivery) -> Outcome {
        self.run(d).unwrap_or_else(|failure| failure)
    }

    fn reload(&self) {
        *self.getpw_as.write().unwrap_or_else(|p| p.into_inner()) = lookup_user();
    }
}

/// The account a local part is delivered to: the six fields of qmail-getpw, uid not 0.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    user: OsString,
    uid: u32,
    gid: u32,
    /// absolute
    home: OsString,
    dash: OsString,
    ext: OsString,
}

/// Find the account of `local` (the seam the LDAP lookup replaces): run qmail-getpw as
/// `run_as` and check its answer. Err is the report to give: temporary for every failure.
fn lookup(home: &std::path::Path, run_as: RunAs, local: &[u8]) -> Result<Account, Outcome> {
    let mut cmd = Command::new(home.join("bin/qmail-getpw"));
    cmd.arg(OsStr::from_bytes(local))
        .env("QMAILHOME", home)
        .current_dir("/")
        .stdin(Stdio::null())
        // stderr goes to our own (the log); only stdout is the answer
        .stderr(Stdio::inherit());
    run_as.apply(&mut cmd)?;
    let answer = run_answer(cmd)?;
    let account = parse_account(&answer).ok_or_else(|| exit::local_code(qlx::USAGE, b""))?;
    if account.uid == 0 {
        return Err(exit::local_code(qlx::ROOT, b""));
    }
    Ok(account)
}

/// Run qmail-getpw, its stdout bounded; its exit status mapped by [`exit::getpw_status`].
fn run_answer(mut cmd: Command) -> Result<Vec<u8>, Outcome> {
    use std::io::Read;
    let mut child =
        cmd.stdout(Stdio::piped()).spawn().map_err(|_| exit::local_code(qlx::EXECPW, b""))?;
    let mut answer = Vec::new();
    let read = match child.stdout.take() {
        Some(out) => out.take(GETPW_MAX as u64 + 1).read_to_end(&mut answer).is_ok(),
        None => false,
    };
    // stdout is closed now: a child still writing gets EPIPE and ends
    let status = child.wait().map_err(|_| exit::local_code(qlx::EXECPW, b""))?;
    exit::getpw_status(status)?;
    if !read || answer.len() > GETPW_MAX {
        return Err(exit::local_code(qlx::USAGE, b""));
    }
    Ok(answer)
}

/// Six NUL-terminated fields, nothing after: user (non-empty), uid and gid (decimal u32), home
/// (absolute), dash, ext.
fn parse_account(answer: &[u8]) -> Option<Account> {
    let body = answer.strip_suffix(b"\0")?;
    let fields: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    let [user, uid, gid, home, dash, ext] = fields[..] else { return None };
    let number = |b: &[u8]| -> Option<u32> {
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(b).ok()?.parse().ok()
    };
    if user.is_empty() || home.first() != Some(&b'/') {
        return None;
    }
    let os = |b: &[u8]| OsString::from_vec(b.to_vec());
    Some(Account {
        user: os(user),
        uid: number(uid)?,
        gid: number(gid)?,
        home: os(home),
        dash: os(dash),
        ext: os(ext),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let good = parse_account(b"joe\x001000\x00100\x00/home/joe\x00-\x00x-y\x00").unwrap();
        assert_eq!(
            good,
            Account {
                user: "joe".into(),
                uid: 1000,
                gid: 100,
                home: "/home/joe".into(),
                dash: "-".into(),
                ext: "x-y".into(),
            }
        );
        assert_eq!(parse_account(b"r\x000\x000\x00/\x00\x00\x00").unwrap().uid, 0);
        for bad in [
            &b""[..],
            b"\0",
            b"joe\x001000\x00100\x00/home/joe\x00-\x00x-y",
            b"joe\x001000\x00100\x00/home/joe\x00-\x00x-y\x00\x00",
            b"joe\x001000\x00100\x00/home/joe\x00-\x00",
            b"\x001000\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x00-1\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x00+1\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x00\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x004294967296\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x001000\x00x\x00/home/joe\x00-\x00x\x00",
            b"joe\x001000\x00100\x00home/joe\x00-\x00x\x00",
            b"joe\x001000\x00100\x00\x00-\x00x\x00",
        ] {
            assert_eq!(parse_account(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"joe\x001\x001\x00/".as_slice(), &vec![b'h'; 100_000], b"\0\0\0"].concat();
        assert!(parse_account(&long).is_some(), "the caller bounds the answer, not the parser");
    }

    #[test]
    fn run_as_never_root() {
        let mut cmd = Command::new("/bin/true");
        assert_eq!(RunAs::User { uid: 0, gid: 5 }.apply(&mut cmd).unwrap_err().letter(), b'Z');
        assert_eq!(RunAs::Nobody.apply(&mut cmd).unwrap_err().letter(), b'Z');
        assert!(RunAs::Myself.apply(&mut cmd).is_ok());
        assert!(RunAs::User { uid: 7, gid: 7 }.apply(&mut cmd).is_ok());
    }
}
