//! qmail-start: wire up and start the delivery processes (doc/qmail-start.8).
//!
//! `qmail-start [aliasempty [logger [args...]]]`. Starts qmail-lspawn (with `aliasempty`,
//! default `./Mailbox`), qmail-rspawn, two qmail-clean, qmail-todo and the optional logger,
//! connected by pipes, then becomes qmail-send (exec), so that TERM to this process is TERM
//! to qmail-send. The log goes to the logger's stdin, else to this process's stdout. Programs
//! are run from `QMAILHOME/bin`.
//!
//! Run as root with the qmail users present (a system installation), each program gets its
//! user: qmail-lspawn stays root, qmail-rspawn runs as qmailr, qmail-clean as qmailq,
//! qmail-send and qmail-todo as qmails, the logger as qmaill. Run as root on a single-user
//! installation owned by another user (`qmailctl init --owner`), everything but qmail-lspawn
//! runs as that owner. Otherwise everything runs as the invoking user. Exit 111 on any set-up
//! failure.

#![forbid(unsafe_code)]

use nix::unistd::{Group, User};
use qmail::auto;
use qmail::queue::Installation;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    // start() only returns on failure: on success this process has become qmail-send
    let Err(err) = start();
    qmail::log::line(format_args!("qmail-start: fatal: {err}"));
    ExitCode::from(qmail::exit::TEMP)
}

/// The uid/gid a program runs as, when switching.
type Ids = Option<(u32, u32)>;

struct Users {
    root: Ids,
    qmailr: Ids,
    qmailq: Ids,
    qmails: Ids,
    qmaill: Ids,
}

/// Who runs what, decided by the owner of `queue/`: qmailq means a system installation
/// (each program its qmail user); another user means a single-user installation started by
/// root (that owner for everything but qmail-lspawn); root, or not being root, means
/// everything runs as we do.
fn users(home: &Path) -> Users {
    let none = Users { root: None, qmailr: None, qmailq: None, qmails: None, qmaill: None };
    if !nix::unistd::geteuid().is_root() {
        return none;
    }
    match qmail::queue::installation(home) {
        Ok(Installation::Owned { uid, gid }) => {
            let owner = Some((uid, gid));
            return Users {
                root: None,
                qmailr: owner,
                qmailq: owner,
                qmails: owner,
                qmaill: owner,
            };
        }
        Ok(Installation::System) => {}
        Ok(Installation::Root) | Err(_) => return none,
    }
    let gid = |g: &str| Group::from_name(g).ok().flatten().map(|g| g.gid.as_raw());
    let uid = |u: &str| User::from_name(u).ok().flatten().map(|u| u.uid.as_raw());
    let (Some(qmail), Some(nofiles)) = (gid(auto::GROUP_QMAIL), gid(auto::GROUP_NOFILES)) else {
        return none;
    };
    match (
        uid(auto::USER_QMAILR),
        uid(auto::USER_QMAILQ),
        uid(auto::USER_QMAILS),
        uid(auto::USER_QMAILL),
    ) {
        (Some(r), Some(q), Some(s), Some(l)) => Users {
            root: Some((0, qmail)),
            qmailr: Some((r, qmail)),
            qmailq: Some((q, qmail)),
            qmails: Some((s, qmail)),
            qmaill: Some((l, nofiles)),
        },
        _ => none,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("unable to create a pipe: {e}"))
}

fn program(bin: &Path, name: &str, ids: Ids) -> Command {
    let mut cmd = Command::new(bin.join(name));
    cmd.current_dir("/");
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, String> {
    fd.try_clone().map_err(|e| format!("unable to dup: {e}"))
}

fn spawn(mut cmd: Command, what: &str) -> Result<(), String> {
    cmd.spawn().map(drop).map_err(|e| format!("unable to start {what}: {e}"))
}

/// A value that cannot exist: `start` never returns `Ok`.
enum Never {}

fn start() -> Result<Never, String> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let home = auto::home();
    let bin: PathBuf = home.join("bin");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let aliasempty = args.first().cloned().unwrap_or_else(|| "./Mailbox".to_string());
    let users = users(&home);

    // the log: a logger's stdin, or our stdout
    let log: OwnedFd = match args.get(1) {
        Some(logger) => {
            let (r, w) = pipe()?;
            let mut cmd = Command::new(logger);
            cmd.args(&args[2..]).stdin(Stdio::from(r)).current_dir("/");
            if let Some((uid, gid)) = users.qmaill {
                cmd.uid(uid).gid(gid);
            }
            spawn(cmd, logger)?;
            w
        }
        None => {
            use std::os::fd::AsFd;
            std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("unable to dup stdout: {e}"))?
        }
    };

    let (l_cmd_r, l_cmd_w) = pipe()?;
    let (l_rep_r, l_rep_w) = pipe()?;
    let (r_cmd_r, r_cmd_w) = pipe()?;
    let (r_rep_r, r_rep_w) = pipe()?;
    let (c_req_r, c_req_w) = pipe()?;
    let (c_rep_r, c_rep_w) = pipe()?;
    let (t_in_r, t_in_w) = pipe()?;
    let (t_out_r, t_out_w) = pipe()?;
    let (c2_req_r, c2_req_w) = pipe()?;
    let (c2_rep_r, c2_rep_w) = pipe()?;

    let mut cmd = program(&bin, "qmail-lspawn", users.root);
    cmd.arg(&aliasempty)
        .stdin(Stdio::from(l_cmd_r))
        .stdout(Stdio::from(l_rep_w))
        .stderr(Stdio::from(dup(&log)?));
    spawn(cmd, "qmail-lspawn")?;

    let mut cmd = program(&bin, "qmail-rspawn", users.qmailr);
    cmd.stdin(Stdio::from(r_cmd_r)).stdout(Stdio::from(r_rep_w)).stderr(Stdio::from(dup(&log)?));
    spawn(cmd, "qmail-rspawn")?;

    let mut cmd = program(&bin, "qmail-clean", users.qmailq);
    cmd.stdin(Stdio::from(c_req_r)).stdout(Stdio::from(c_rep_w)).stderr(Stdio::from(dup(&log)?));
    spawn(cmd, "qmail-clean")?;

    let mut cmd = program(&bin, "qmail-clean", users.qmailq);
    cmd.stdin(Stdio::from(c2_req_r)).stdout(Stdio::from(c2_rep_w)).stderr(Stdio::from(dup(&log)?));
    spawn(cmd, "the second qmail-clean")?;

    let mut cmd = program(&bin, "qmail-todo", users.qmails);
    cmd.stdin(Stdio::from(t_in_r)).stdout(Stdio::from(t_out_w)).stderr(Stdio::from(c2_req_w));
    qmail::child::map_fds(&mut cmd, vec![(c2_rep_r, 3)]);
    spawn(cmd, "qmail-todo")?;

    // finally become qmail-send
    let mut cmd = program(&bin, "qmail-send", users.qmails);
    cmd.stdin(Stdio::from(log)).stdout(Stdio::from(l_cmd_w)).stderr(Stdio::from(l_rep_r));
    qmail::child::map_fds(
        &mut cmd,
        vec![(r_cmd_w, 3), (r_rep_r, 4), (c_req_w, 5), (c_rep_r, 6), (t_in_w, 7), (t_out_r, 8)],
    );
    Err(format!("unable to start qmail-send: {}", cmd.exec()))
}
