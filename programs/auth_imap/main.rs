//! auth_imap: a courier authlib module for the IMAP server (doc/auth_imap.8).
//!
//! `auth_imap [-d pbstool] nextprog [args...]`, in courier's chain of authentication
//! modules: the request on fd 3 (at most 1023 bytes, `service\nauthtype\nlogin\npassword\n`;
//! [`qmail::auth::courier`]).
//!
//! - `AUTHENTICATED` already set: an earlier module logged the user in; exec `nextprog`.
//! - A type other than `login`, or a login no backend knows: not ours. `AUTHENTICATED` is
//!   removed, fd 3 is made again (a pipe with the same bytes) and `nextprog` runs, the next
//!   module of the chain.
//! - Any other failure (wrong password, disabled, temporary, a request without its fields):
//!   exec the login program courier named in `AUTHARGC` and `AUTHARGV0`..., which tells the
//!   client; without them exit 111.
//! - Success: [`Start::exec`] as auth_pop does (the user's ids, home, environment, PBS tool),
//!   then `nextprog`.
//!
//! Security: as auth_pop (runs as root, never switches to uid 0, the password wiped and never
//! logged, the directory closed before anything starts).

#![forbid(unsafe_code)]

use qmail::auth::checkpassword::CheckExit;
use qmail::auth::courier::{self, INPUT_MAX};
use qmail::auth::start::{command_line, read_fd3, Start};
use qmail::auth::{self, Failure, Service};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const ME: &str = "auth_imap";
/// The most `AUTHARGV` entries taken.
const AUTHARGC_MAX: usize = 64;

fn main() -> ExitCode {
    // the unprivileged lookup child (doc/INTERNALS.md, "Logins")
    if let Some(code) = auth::split::child_mode() {
        return ExitCode::from(code);
    }
    ExitCode::from(run().code())
}

/// Returns only on failure: every other way ends in an exec.
fn run() -> CheckExit {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(OsStringExt::into_vec).collect();
    let Some((pbs, program)) = command_line(&args) else {
        return fail(CheckExit::Config, "usage: auth_imap [-d pbstool] nextprog [args...]");
    };
    if std::env::var_os("AUTHENTICATED").is_some_and(|a| !a.is_empty()) {
        return exec(&mut command(&program), "nextprog");
    }
    reap();
    let input = match read_fd3(INPUT_MAX) {
        Ok(input) => input,
        Err(why) => return failed(&why),
    };
    let Some(request) = courier::parse(&input) else {
        return failed("needed value missing on fd 3");
    };
    if request.authtype != b"login" {
        return next_module(&program, &input);
    }
    let login = match auth::split::authenticate(&qmail::auto::home(), Service::Imap, &request.creds)
    {
        Ok(login) => login,
        Err(Failure::NoSuchUser) => return next_module(&program, &input),
        Err(f) => {
            let who = &request.creds.login;
            return failed(&format!(
                "{}: {f}",
                qmail::safe::printable(&who[..who.len().min(64)], '?')
            ));
        }
    };
    drop(input);
    let Some(mailbox) = &login.mailbox else {
        // authenticate resolves the mailbox of every IMAP login
        return failed("no mailbox for the login");
    };
    let login_name = &request.creds.login;
    Start { me: ME, login: login_name, mailbox, pbs: pbs.as_deref(), program: &program }.exec()
}

/// Not ours: `nextprog` without `AUTHENTICATED`, with the request again on fd 3.
fn next_module(program: &[OsString], input: &[u8]) -> CheckExit {
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail(CheckExit::Temporary, &format!("unable to make a pipe: {e}")),
    };
    // at most 1023 bytes: the pipe holds them all, nobody needs to read first
    if let Err(e) = std::fs::File::from(w).write_all(input) {
        return fail(CheckExit::Temporary, &format!("unable to write the pipe: {e}"));
    }
    let mut cmd = command(program);
    cmd.env_remove("AUTHENTICATED");
    qmail::child::map_fds(&mut cmd, vec![(r, 3)]);
    exec(&mut cmd, "nextprog")
}

/// A failure the client must hear of: exec courier's login program (`AUTHARGC`,
/// `AUTHARGV0`...), or exit 111 without one.
fn failed(why: &str) -> CheckExit {
    log(why);
    let argc = std::env::var("AUTHARGC").ok().and_then(|n| n.trim().parse::<usize>().ok());
    let argv: Option<Vec<OsString>> = argc
        .filter(|&n| (1..=AUTHARGC_MAX).contains(&n))
        .and_then(|n| (0..n).map(|i| std::env::var_os(format!("AUTHARGV{i}"))).collect());
    match argv {
        Some(argv) => {
            let mut cmd = command(&argv);
            cmd.env_remove("AUTHENTICATED");
            exec(&mut cmd, "the login program")
        }
        None => CheckExit::Temporary,
    }
}

fn command(program: &[OsString]) -> Command {
    let mut cmd = Command::new(&program[0]);
    cmd.args(&program[1..]);
    cmd
}

fn exec(cmd: &mut Command, what: &str) -> CheckExit {
    let e = cmd.exec();
    fail(CheckExit::Exec, &format!("unable to run {what} {:?}: {e}", cmd.get_program()))
}

/// Reap children an earlier module of the chain may have left behind.
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

fn fail(code: CheckExit, why: &str) -> CheckExit {
    log(why);
    code
}

fn log(text: &str) {
    qmail::log::line(format_args!("{ME}: {text}"));
}
