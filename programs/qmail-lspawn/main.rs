//! qmail-lspawn: run local deliveries for qmail-send (doc/qmail-lspawn.8).
//!
//! `qmail-lspawn aliasempty`, started by qmail-start (as root in a multi-user installation),
//! commands on stdin, reports on stdout, through the shared engine [`qmail::spawner`]. Per
//! delivery, on a thread of its own:
//!
//! 1. split the recipient at its last `@` into LOCAL and DOMAIN; an empty LOCAL is a success
//!    with nothing delivered;
//! 2. find the account ([`lookup`]): run `QMAILHOME/bin/qmail-getpw LOCAL DOMAIN SIZE` (SIZE:
//!    the queued message's size in bytes) when root as the owner of a single-user installation
//!    (who owns its control files), else as `qmailp` (else `nobody`). qmail-getpw
//!    does the LDAP lookup and its checks (doc/qmail-getpw.8: status, `mailSizeMax`, `mailHost`,
//!    store, ids) and the classic one; its answer (read from the long-lived `qmail-getpw -s`
//!    in one frame, [`qmail::account::read_frame`]), at most [`qmail::account::ANSWER_MAX`]
//!    bytes, is
//!
//!    ```text
//!    user\0uid\0gid\0home\0dash\0ext\0  NAME=value\0 ...  \0
//!    ```
//!
//!    six fields, zero or more records, an empty record, nothing after, decoded by
//!    [`Account::decode`] (doc/INTERNALS.md). Only the names in [`EnvName`] are accepted (`QMAILDOTMODE`, `QMAILMODE`, `QMAILREPLYTEXT`,
//!    `QMAILFORWARDS`, `QMAILDELIVERYPROGRAM`, `MAILDIRQUOTA`, `QLDAPGROUP`, each at most
//!    once) plus `ALIASEMPTY`, which replaces the `aliasempty` argument for this delivery;
//!    anything else makes the whole answer bad (112, temporary). uid 0 is refused (113). When
//!    qmail-getpw fails, its exit code gives the letter through [`qmail::exit::getpw_status`]
//!    (LDAP outages 152–155 are always `Z`, doc/DECISIONS.md, 2) and a one-line text it printed, if
//!    any, replaces the table's fixed text;
//! 3. hand the delivery to the account's delivery worker ([`workers`]: one long-lived
//!    `qmail-local --worker` per uid/gid, never root), which answers with qmail-local's exit
//!    code and output, or declines (a program to run); a worker that dies is a temporary
//!    failure;
//! 4. when it declined (or there is no worker), run `QMAILHOME/bin/qmail-local -- user home
//!    LOCAL dash ext DOMAIN SENDER aliasempty` with the message on stdin and stdout + stderr on
//!    one pipe, as the account's uid/gid when root (supplementary groups dropped), as itself
//!    otherwise; the environment names above are removed from qmail-local's environment and
//!    set again from the answer only;
//! 5. turn the exit code and output (up to 3000 bytes, cut at the first NUL) into the report
//!    with [`qmail::exit::local_code`].
//!
//! The reload command and SIGHUP re-read the configuration (today: which user runs the
//! lookups) and retire the delivery workers.
//!
//! Exit codes: 0 at end of input, after the last report; 100 no `aliasempty` argument; 111
//! cannot enter `QMAILHOME/queue/mess`, stdout failed, stdin failed or carried a mangled
//! command.
//!
//! Security: root here parses only qmail-getpw's bounded answer (six fixed fields and
//! whitelisted `NAME=value` records) and the workers' bounded answers (an 8-byte head and at
//! most 3000 bytes of text); the lookup itself, LDAP included, runs unprivileged. No delivery runs as uid 0; the switch to the user happens in the
//! child through `std::process::Command` (setgroups, setgid, setuid), never by hand.

#![forbid(unsafe_code)]

mod workers;

use qmail::account::{Account, EnvName};
use qmail::auto;
use qmail::exit::{self, Outcome, Qlx};
use qmail::localworker::{Kind, Request};
use qmail::queue::Installation;
use qmail::spawner::{self, Deliverer, Delivery};
use std::ffi::{OsStr, OsString};
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::RwLock;
use workers::{Asked, Workers};

/// The most bytes of qmail-getpw's failure text used in a report.
const TEXT_MAX: usize = 1000;

fn main() -> ExitCode {
    let Some(aliasempty) = std::env::args_os().nth(1) else {
        qmail::log::line(format_args!("qmail-lspawn: usage: qmail-lspawn aliasempty"));
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
    qmail::log::line(format_args!("qmail-lspawn: fatal: {why}"));
    ExitCode::from(exit::TEMP)
}

/// Who runs a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunAs {
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
            RunAs::User { .. } => Err(Qlx::Root.report()),
            RunAs::Nobody => Err(Qlx::ExecPw.report()),
        }
    }
}

/// The user qmail-getpw runs as, when root: the owner of a single-user installation (who
/// owns its control files, `ldappassword` included), else `qmailp`, else `nobody`.
fn lookup_user(home: &Path) -> RunAs {
    if !nix::unistd::geteuid().is_root() {
        return RunAs::Myself;
    }
    if let Ok(Installation::Owned { uid, gid }) = qmail::queue::installation(home) {
        return RunAs::User { uid, gid };
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
    /// the lookup co-process, started on first use and after it died or a reload
    coproc: std::sync::Mutex<Option<CoProc>>,
    /// the delivery workers, one per uid/gid
    workers: Workers,
}

impl Local {
    fn new(home: PathBuf, aliasempty: OsString) -> Self {
        Local {
            getpw_as: RwLock::new(lookup_user(&home)),
            workers: Workers::new(home.clone()),
            home,
            aliasempty,
            coproc: std::sync::Mutex::new(None),
        }
    }

    /// Ask the lookup co-process (one request at a time); a co-process that fails is
    /// replaced and the request tried once more.
    fn ask(
        &self,
        run_as: RunAs,
        local: &[u8],
        domain: &[u8],
        size: u64,
    ) -> Result<(i32, Vec<u8>), Outcome> {
        let mut guard = self.coproc.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..2 {
            if guard.is_none() {
                *guard = Some(CoProc::start(&self.home, run_as)?);
            }
            let Some(cp) = guard.as_mut() else { break };
            match cp.request(local, domain, size) {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    qmail::log::line(format_args!(
                        "qmail-lspawn: the lookup process failed: {e}; starting another"
                    ));
                    if let Some(cp) = guard.take() {
                        cp.stop();
                    }
                }
            }
        }
        Err(Qlx::ExecPw.report())
    }

    fn run(&self, d: Delivery) -> Result<Outcome, Outcome> {
        let Delivery { mut message, sender, recipient, .. } = d;
        let (local, domain) = qmail::address::split(&recipient);
        let domain = domain.unwrap_or_default();
        if local.is_empty() {
            return Ok(Outcome::Success(Vec::new()));
        }
        let getpw_as = *self.getpw_as.read().unwrap_or_else(|p| p.into_inner());
        let size = message
            .metadata()
            .map_err(|_| Outcome::temp("Unable to stat the message. (#4.3.0)\n"))?
            .len();
        let account = lookup(self, getpw_as, local, domain, size)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            RunAs::User { uid: account.uid, gid: account.gid }
        } else {
            RunAs::Myself
        };
        let aliasempty = account.aliasempty.as_deref().unwrap_or(self.aliasempty.as_bytes());
        let args: [&[u8]; 8] = [
            &account.user,
            &account.home,
            local,
            &account.dash,
            &account.ext,
            domain,
            &sender,
            aliasempty,
        ];
        // first the account's delivery worker; qmail-local as a process when it declines
        let request = Request { id: 0, args: args.map(<[u8]>::to_vec), env: account.env.clone() };
        match self.workers.ask(run_as, request, &message) {
            Asked::Answer(a) if a.kind != Kind::Exec => {
                return Ok(report(i32::from(a.code), a.text, a.kind == Kind::Cut));
            }
            Asked::Answer(_) | Asked::NotSent => {}
            Asked::Died => return Ok(Outcome::temp("Delivery worker crashed. (#4.3.0)\n")),
        }
        message
            .seek(SeekFrom::Start(0))
            .map_err(|_| Outcome::temp("Unable to rewind the message. (#4.3.0)\n"))?;
        let mut cmd = Command::new(self.home.join("bin/qmail-local"));
        cmd.arg("--").args(args.map(OsStr::from_bytes)).stdin(Stdio::from(message));
        for name in EnvName::ALL {
            cmd.env_remove(name.as_str());
        }
        for (name, value) in &account.env {
            cmd.env(name.as_str(), OsStr::from_bytes(value));
        }
        run_as.apply(&mut cmd)?;
        // a missing or unexecutable qmail-local is a broken installation, not a property of
        // the message: always temporary (upstream bounces on a "permanent" errno)
        let child =
            spawner::run_child(cmd, exit::LOCAL_OUTPUT_MAX).map_err(|_| Qlx::ExecSoft.report())?;
        Ok(match child.status.code() {
            Some(code) => report(code, child.output, child.cut),
            None => exit::local_status(child.status, &child.output),
        })
    }
}

/// The report for qmail-local's exit `code` and `output` (from the process or its worker),
/// with a note when the output was cut.
fn report(code: i32, mut output: Vec<u8>, cut: bool) -> Outcome {
    if cut {
        output.extend_from_slice(b"\n(qmail-lspawn: report too long, cut after 3000 bytes)\n");
    }
    exit::local_code(code, &output)
}

impl Deliverer for Local {
    fn deliver(&self, d: Delivery) -> Outcome {
        self.run(d).unwrap_or_else(|failure| failure)
    }

    fn reload(&self) {
        self.workers.retire_all();
        *self.getpw_as.write().unwrap_or_else(|p| p.into_inner()) = lookup_user(&self.home);
        // the next lookup starts a fresh process with the new control files
        if let Some(cp) = self.coproc.lock().unwrap_or_else(|p| p.into_inner()).take() {
            cp.stop();
        }
    }
}

/// Find the account of `local@domain`: ask the lookup co-process and check its answer.
/// Err is the report to give.
fn lookup(
    local_deliverer: &Local,
    run_as: RunAs,
    local: &[u8],
    domain: &[u8],
    size: u64,
) -> Result<Account, Outcome> {
    let (code, answer) = local_deliverer.ask(run_as, local, domain, size)?;
    exit::getpw_code(code).map_err(|fixed| with_text(fixed, &answer))?;
    let account = Account::decode(&answer).ok_or_else(|| Qlx::Usage.report())?;
    if account.uid == 0 {
        return Err(Qlx::Root.report());
    }
    Ok(account)
}

/// The long-lived lookup process: `qmail-getpw -s`, unprivileged, one per qmail-lspawn. It
/// keeps its directory connection, so a delivery costs one lookup, not a process start.
struct CoProc {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl CoProc {
    fn start(home: &std::path::Path, run_as: RunAs) -> Result<CoProc, Outcome> {
        let mut cmd = Command::new(home.join("bin/qmail-getpw"));
        cmd.arg("-s")
            .env("QMAILHOME", home)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // stderr goes to our own (the log)
            .stderr(Stdio::inherit());
        run_as.apply(&mut cmd)?;
        let mut child = cmd.spawn().map_err(|_| Qlx::ExecPw.report())?;
        match (child.stdin.take(), child.stdout.take()) {
            (Some(input), Some(output)) => {
                Ok(CoProc { child, input, output: std::io::BufReader::new(output) })
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Qlx::ExecPw.report())
            }
        }
    }

    /// One request and its answer: (exit code of a one-shot run, its output).
    fn request(
        &mut self,
        local: &[u8],
        domain: &[u8],
        size: u64,
    ) -> std::io::Result<(i32, Vec<u8>)> {
        use std::io::Write;
        let mut req = Vec::with_capacity(local.len() + domain.len() + 24);
        for field in [local, domain, size.to_string().as_bytes()] {
            qmail::text0::push(&mut req, field);
        }
        self.input.write_all(&req)?;
        self.input.flush()?;
        qmail::account::read_frame(&mut self.output)
    }

    fn stop(mut self) {
        drop(self.input);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The report `fixed` with qmail-getpw's own text: its first line, bounded, printable; the
/// letter stays the one the exit code gave.
fn with_text(fixed: Outcome, text: &[u8]) -> Outcome {
    let line = text.split(|&b| b == b'\n' || b == 0).next().unwrap_or_default();
    let line = &line[..line.len().min(TEXT_MAX)];
    if line.is_empty() || !line.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return fixed;
    }
    let text = [line, b"\n"].concat();
    match fixed {
        Outcome::Temp(_) => Outcome::Temp(text),
        Outcome::Perm(_) => Outcome::Perm(text),
        // a failure never becomes a success
        Outcome::Success(_) => Qlx::Usage.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_texts_keep_their_letter() {
        let temp = exit::local_code(152, b"");
        let perm = exit::local_code(159, b"");
        assert_eq!(
            with_text(temp.clone(), b"LDAP down (#4.4.3)\n"),
            Outcome::temp("LDAP down (#4.4.3)\n")
        );
        assert_eq!(
            with_text(perm.clone(), b"gone (#5.2.1)\nmore"),
            Outcome::perm("gone (#5.2.1)\n")
        );
        assert_eq!(with_text(temp.clone(), b""), temp);
        assert_eq!(with_text(temp.clone(), b"\x1b[31m"), temp);
        let long = vec![b'a'; 5000];
        assert_eq!(with_text(perm.clone(), &long).text().len(), TEXT_MAX + 1);
        assert_eq!(with_text(Outcome::Success(vec![]), b"x").letter(), b'Z');
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
