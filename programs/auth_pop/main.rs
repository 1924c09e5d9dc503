//! auth_pop: the checkpassword program of the POP3 service (doc/auth_pop.8).
//!
//! `auth_pop [-d pbstool] subprogram [args...]`, run by qmail-popup as root: the login on fd 3
//! (at most 512 bytes, `login\0password\0`, more NUL-ended data ignored;
//! [`qmail::auth::checkpassword`]). The login is decided by [`qmail::auth::authenticate`] for
//! [`Service::Pop`]; on success [`Start::exec`] becomes the user, changes to the home, sets
//! `USER`, `AUTHENTICATED`, `HOME`, `MAILDIR`, `MAILDIRQUOTA`, `DATASIZE`, runs the PBS tool
//! and execs the sub-program. Otherwise it exits with a code of the checkpassword table
//! ([`CheckExit`]: 1 configuration, 2 directory unreachable or slow, 3 no such user or wrong
//! password, 4 account disabled, 7 sub-program not started, 25 user record incorrect, 61
//! dirmaker failed, 62 no home, 111 anything else temporary), which qmail-popup turns into its `-ERR` text.
//!
//! Security: runs as root and switches to the mailbox owner, never to uid 0 nor (for a
//! directory entry) to an id outside 100..65535. The directory and `users/passwd` lookups
//! run in an unprivileged child, this program with `--lookup` ([`qmail::auth::split`]). The password is wiped after use and never
//! logged. The directory connection is closed before anything is started.

#![forbid(unsafe_code)]

use qmail::auth::checkpassword::{self, CheckExit, INPUT_MAX};
use qmail::auth::start::{command_line, read_fd3, Start};
use qmail::auth::{self, Service};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

const ME: &str = "auth_pop";

fn main() -> ExitCode {
    // the unprivileged lookup child (doc/INTERNALS.md, "Logins")
    if let Some(code) = auth::split::child_mode() {
        return ExitCode::from(code);
    }
    ExitCode::from(run().code())
}

/// Returns only on failure: success execs the sub-program.
fn run() -> CheckExit {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(OsStringExt::into_vec).collect();
    let Some((pbs, program)) = command_line(&args) else {
        return fail(CheckExit::Config, "usage: auth_pop [-d pbstool] subprogram [args...]");
    };
    let input = match read_fd3(INPUT_MAX) {
        Ok(input) => input,
        Err(why) => return fail(CheckExit::Temporary, &why),
    };
    let Some(creds) = checkpassword::credentials(&input) else {
        return fail(CheckExit::Temporary, "fd 3 lacks the login or the password");
    };
    drop(input);
    let login = match auth::split::authenticate(&qmail::auto::home(), Service::Pop, &creds) {
        Ok(login) => login,
        Err(f) => {
            let code = CheckExit::of(&f);
            if code != CheckExit::BadLogin {
                let who = qmail::safe::printable(&creds.login[..creds.login.len().min(64)], '?');
                log(&format!("{who}: {f}"));
            }
            return code;
        }
    };
    let Some(mailbox) = &login.mailbox else {
        // authenticate resolves the mailbox of every POP3 login
        return fail(CheckExit::Temporary, "no mailbox for the login");
    };
    drop(creds.password);
    Start { me: ME, login: &creds.login, mailbox, pbs: pbs.as_deref(), program: &program }.exec()
}

fn fail(code: CheckExit, why: &str) -> CheckExit {
    log(why);
    code
}

fn log(text: &str) {
    qmail::log::line(format_args!("{ME}: {text}"));
}
