//! qmail-verify: tell qmail-smtpd whether a recipient would be delivered, before the message
//! is accepted (`RCPTCHECK`, and the directory part of `SENDERCHECK`; doc/qmail-verify.8).
//!
//! `qmail-verify` with no arguments is qmail-smtpd's co-process, as upstream: started lazily
//! on the first check of a session with the requests on fd 0 and the answers on fd 1 (stderr
//! is the log), closed at DATA and at the end of the session. `qmail-verify --listen
//! unix:/path` is the long-lived service qmail-smtpd reaches through `control/verifysocket`,
//! so that a RCPT costs one lookup and not a process start (see doc/qmail-verify.8).
//!
//! Request: the address and a NUL. Answer, exactly one per request ([`qmail::verify::wire`]):
//! `K` deliverable (and every address of a domain not delivered here: qmail-smtpd asks only
//! for its `locals`); `D<text>\0` unknown, disabled, or over quota when
//! `control/rcptcheckquota` is `perm` (the default); `Z<text>\0` over quota when it is `temp`,
//! and every temporary failure (the directory down, an unreadable file:
//! doc/DECISIONS.md, 2 and 14).
//! The verdict is [`qmail::verify::Verifier`]'s: the lookup delivery makes, nothing else. A
//! request over [`REQUEST_MAX`] bytes is answered `D` (unknown) and read up to its NUL.
//!
//! Exit codes: 0 end of input; 1 a read or write error on the connection; 100 usage, run as
//! root, or control files unreadable before any answer; 111 the installation root or the
//! listening socket cannot be used.
//!
//! Security: it refuses to run as root (qmail-smtpd runs it as qmaild). Its answers are fixed
//! texts chosen by the verdict alone — never a path, a file name, a directory error or which
//! lookup step answered (upstream's CVE-2020-3811/3812 were such leaks). Nothing from a
//! request reaches a shell. It opens LDAP and never forks afterwards (ldap3 runs a runtime
//! inside).

#![forbid(unsafe_code)]

use qmail::control::{Control, ControlError};
use qmail::listener::{self, Conn, Listen, Options};
use qmail::rewrite::Rewriter;
use qmail::text0::Text0Error;
use qmail::verify::wire::{Answer, REQUEST_MAX};
use qmail::verify::{Verdict, Verifier, NO_MAILBOX};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The answer text of an over-quota mailbox with `rcptcheckquota` `temp`.
const OVER_QUOTA_TEMP: &str = "The users mailfolder is over the allowed quota (size). (#4.2.2)";
/// Sessions one service worker serves at once: one per qmail-smtpd session that asked.
const SESSIONS: usize = 256;
/// How long a connection may stay silent: longer than qmail-smtpd waits for its client
/// between two commands (`timeoutsmtpd`, 1200 s by default).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

const EXIT_IO: u8 = 1;
const EXIT_PERM: u8 = 100;
const EXIT_TEMP: u8 = 111;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let listen = match args.as_slice() {
        [] => None,
        [flag, spec] if flag == "--listen" => Some(spec.clone()),
        _ => {
            qmail::log::line(format_args!(
                "qmail-verify: usage: qmail-verify [--listen unix:/path]"
            ));
            return ExitCode::from(EXIT_PERM);
        }
    };
    if nix::unistd::geteuid().is_root() {
        qmail::log::line(format_args!("qmail-verify: refusing to run as root"));
        return ExitCode::from(EXIT_PERM);
    }
    let home = qmail::auto::home();
    if std::env::set_current_dir(&home).is_err() {
        qmail::log::line(format_args!("qmail-verify: unable to chdir to {}", home.display()));
        return ExitCode::from(EXIT_TEMP);
    }
    let policy = match Policy::load(&Control::new(&home)) {
        Ok(policy) => policy,
        Err(e) => {
            qmail::log::line(format_args!("qmail-verify: unable to read controls: {e}"));
            return ExitCode::from(EXIT_PERM);
        }
    };
    match listen {
        None => {
            let served = Conn::stdio(CONNECTION_TIMEOUT)
                .and_then(|conn| serve(conn, &mut Verifier::new(&home), policy));
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    qmail::log::line(format_args!("qmail-verify: {e}"));
                    ExitCode::from(EXIT_IO)
                }
            }
        }
        Some(spec) => service(&home, &spec, policy),
    }
}

/// `--listen`: the master of [`qmail::listener`], and its workers, each session on a thread
/// with a [`Verifier`] (and its directory connection) reused from session to session.
fn service(home: &Path, spec: &str, policy: Policy) -> ExitCode {
    let listen: Listen = match spec.parse() {
        Ok(listen) => listen,
        Err(e) => {
            qmail::log::line(format_args!(
                "qmail-verify: usage: qmail-verify [--listen unix:/path]: {e}"
            ));
            return ExitCode::from(EXIT_PERM);
        }
    };
    let options =
        Options { uses: 0, idle: Duration::ZERO, sessions: SESSIONS, timeout: CONNECTION_TIMEOUT };
    let served = listener::run(
        "qmail-verify",
        &listen,
        &options,
        || Verifier::new(home),
        |verifier, conn| {
            if let Err(e) = serve(conn, verifier, policy) {
                qmail::log::line(format_args!("qmail-verify: {e}"));
            }
        },
    );
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            qmail::log::line(format_args!("qmail-verify: unable to listen on {spec}: {e}"));
            ExitCode::from(EXIT_TEMP)
        }
    }
}

/// What the control files decide about the answers, read once at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `control/rcptcheckquota` is `temp`: over quota is `Z` (452 4.2.2), else `D` (552 5.2.2)
    pub quota_temporary: bool,
}

impl Policy {
    /// Read `rcptcheckquota`, and check that the routing files (`locals`, `virtualdomains`,
    /// `percenthack`) can be read now, so that a broken installation fails at the start.
    fn load(ctl: &Control) -> Result<Policy, String> {
        Rewriter::load(ctl).map_err(|e: ControlError| e.to_string())?;
        let mode = ctl.line("rcptcheckquota").map_err(|e| e.to_string())?;
        let quota_temporary = match mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("perm") => false,
            Some("temp") => true,
            Some(other) => return Err(format!("control/rcptcheckquota: unknown value {other}")),
        };
        Ok(Policy { quota_temporary })
    }

    /// The answer for a verdict, with the text a client may see
    /// ([`Verdict::client_text`]: delivery's fixed texts, a fixed one for every failure).
    fn answer(self, verdict: &Verdict) -> Answer {
        let text = verdict.client_text().as_bytes().to_vec();
        match verdict {
            Verdict::Deliverable | Verdict::NotLocal => Answer::Ok,
            Verdict::OverQuota(_) if self.quota_temporary => {
                Answer::Temporary(OVER_QUOTA_TEMP.as_bytes().to_vec())
            }
            Verdict::Temporary(_) => Answer::Temporary(text),
            Verdict::Unknown(_) | Verdict::NotPostable(_) | Verdict::OverQuota(_) => {
                Answer::Refused(text)
            }
        }
    }
}

/// Answer the requests of one connection until its end of input: the co-process's fds 0 and 1,
/// or one client of the service. `Err` is a read or write error.
pub fn serve<C: Read + Write>(conn: C, verifier: &mut Verifier, policy: Policy) -> io::Result<()> {
    let mut conn = BufReader::with_capacity(4096, conn);
    let mut request = Vec::with_capacity(256);
    loop {
        let answer = match qmail::text0::read_record(&mut conn, REQUEST_MAX, &mut request)? {
            // a partial request at the end is no request
            None | Some(Err(Text0Error::Truncated)) => return Ok(()),
            Some(Err(Text0Error::TooLong)) => {
                log(&request, "request too long");
                if !skip_record(&mut conn, &mut request)? {
                    return Ok(());
                }
                Answer::Refused(NO_MAILBOX.as_bytes().to_vec())
            }
            Some(Ok(())) => {
                let verdict = verifier.verdict(&request);
                if let Verdict::Temporary(why) = &verdict {
                    log(&request, why);
                }
                policy.answer(&verdict)
            }
        };
        let out = conn.get_mut();
        out.write_all(&answer.encode())?;
        out.flush()?;
    }
}

/// Read the rest of an over-long request, up to and including its NUL, [`REQUEST_MAX`]
/// bytes at a time into `scratch`; false at the end of input.
fn skip_record<R: BufRead>(input: &mut R, scratch: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        match qmail::text0::read_record(input, REQUEST_MAX, scratch)? {
            Some(Ok(())) => return Ok(true),
            Some(Err(Text0Error::TooLong)) => continue,
            None | Some(Err(Text0Error::Truncated)) => return Ok(false),
        }
    }
}

/// One log line on stderr: the address (its first 200 bytes, printable) and why.
fn log(address: &[u8], why: &str) {
    let shown = qmail::safe::printable(&address[..address.len().min(200)], '?');
    let why = qmail::safe::controls(why);
    qmail::log::line(format_args!("qmail-verify: {shown}: {why}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        use qmail::verify::{DISABLED, NO_HOST, OVER_QUOTA, TEMPORARY};
        let perm = Policy { quota_temporary: false };
        let temp = Policy { quota_temporary: true };
        let leak = "uid=joe,ou=people: two entries for /home/joe (#4.3.5)".to_string();
        let rows = [
            (perm, Verdict::Deliverable, Answer::Ok),
            (perm, Verdict::NotLocal, Answer::Ok),
            (perm, Verdict::Unknown(NO_HOST.into()), Answer::Refused(NO_HOST.into())),
            (perm, Verdict::Unknown(NO_MAILBOX.into()), Answer::Refused(NO_MAILBOX.into())),
            (perm, Verdict::NotPostable(DISABLED.into()), Answer::Refused(DISABLED.into())),
            (perm, Verdict::OverQuota(OVER_QUOTA.into()), Answer::Refused(OVER_QUOTA.into())),
            (
                temp,
                Verdict::OverQuota(OVER_QUOTA.into()),
                Answer::Temporary(OVER_QUOTA_TEMP.into()),
            ),
            (perm, Verdict::Temporary(leak.clone()), Answer::Temporary(TEMPORARY.into())),
        ];
        for (policy, verdict, want) in rows {
            assert_eq!(policy.answer(&verdict), want, "{verdict:?}");
        }
    }

    #[test]
    fn long_requests_are_skipped_to_their_end() {
        let mut input =
            io::Cursor::new([vec![b'a'; 3 * REQUEST_MAX], b"\0bb\0cc".to_vec()].concat());
        let mut scratch = Vec::new();
        assert!(skip_record(&mut input, &mut scratch).unwrap());
        assert_eq!(input.position() as usize, 3 * REQUEST_MAX + 1);
        assert!(skip_record(&mut input, &mut scratch).unwrap());
        assert!(!skip_record(&mut input, &mut scratch).unwrap());
    }
}
