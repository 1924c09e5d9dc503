//! smmapd: the Sendmail/Postfix socket map daemon — is this recipient deliverable here, now?
//!
//! `smmapd [-C config] [-U uses] [-T timeout] [-D] [-p] [--listen unix:/path|tcp:host:port|fd:N]`
//!
//! Answers socketmap requests (`<len>:<map> <address>,`, [`qmail::socketmap`]) with
//! `OK <address>`, `NOTFOUND <why>`, `TEMP <why>`, `TIMEOUT <why>` or `PERM <why>`, from the
//! verdict delivery itself would reach ([`qmail::verify`]: `locals`/`virtualdomains`, LDAP with
//! its catch-alls, `users/cdb`, passwd, the alias user, `accountStatus`, the Maildir++ quota),
//! after the user deny list ([`qmail::userdeny`]) and with the seed's plus addressing
//! (`answer.rs`). Requests are pipelined; replies are flushed before the next read; a protocol
//! error is answered `PERM Bad protocol (...)` and ends that connection only; a client silent
//! for `timeoutsmmapd` seconds (360) is dropped.
//!
//! Wiring: by default one connection on fd 0 (read) and fd 1 (write), as run by ucspi-tcp's
//! `tcpserver`, `unixserver`, inetd or qmail-tcpsrv; `-U` and `-T` are then accepted and
//! ignored. With `--listen`, smmapd accepts connections itself.
//!
//! Settings come from `QMAILHOME/control` (`smmapdquotaperm`, `timeoutsmmapd`,
//! `smmapddebugcommand`, `userdeny`, `userdeny.cdb`), overridden by `-C file` (lines
//! `name: value`). The service name for the deny list is `$SMMAPD_SERVICE`, default `smmap`.
//!
//! Security: refuses to run as root (the lookups need no privilege; run it as a user that may
//! search the Maildirs for the `+detail` check). Request data never reaches a shell.
//!
//! Exit codes: 0 the session or the listener ended normally; 64 usage; 100 run as root;
//! 111 a configuration that cannot be read, or a socket that cannot be set up. See
//! doc/smmapd.8.

#![forbid(unsafe_code)]

mod answer;
mod config;

use answer::Answerer;
use config::{Options, Settings};
use nix::poll::PollFlags;
use qmail::control::Control;
use qmail::listener::{self, Conn, Listen};
use qmail::socketmap::{self, Parsed, Status};
use qmail::verify::Verifier;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// sysexits' EX_USAGE, as upstream.
const EX_USAGE: u8 = 64;
/// Refused to run as root.
const EX_ROOT: u8 = 100;
/// Sessions one listening worker serves at the same time, each with its own directory
/// connection.
const SESSIONS: usize = 32;

fn main() -> ExitCode {
    let args: Vec<Vec<u8>> = {
        use std::os::unix::ffi::OsStringExt;
        std::env::args_os().skip(1).map(|a| a.into_vec()).collect()
    };
    let Some(opts) = Options::parse(&args) else {
        qmail::log::line(format_args!("{}", config::USAGE));
        return ExitCode::from(EX_USAGE);
    };
    if nix::unistd::geteuid().is_root() {
        qmail::log::line(format_args!("smmapd: fatal: refusing to run as root"));
        return ExitCode::from(EX_ROOT);
    }
    let home = qmail::auto::home();
    let control = Control::new(&home);
    let settings = match Settings::read(&control, opts.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            qmail::log::line(format_args!("smmapd: fatal: {e}"));
            return ExitCode::from(qmail::exit::TEMP);
        }
    };
    let service = std::env::var_os("SMMAPD_SERVICE")
        .map(std::os::unix::ffi::OsStringExt::into_vec)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| b"smmap".to_vec());
    let listen = match opts.listen.as_deref().map(std::str::from_utf8) {
        None => None,
        Some(Ok(text)) => match text.parse::<Listen>() {
            Ok(listen) => Some(listen),
            Err(e) => {
                qmail::log::line(format_args!("smmapd: fatal: --listen {e}"));
                return ExitCode::from(EX_USAGE);
            }
        },
        Some(Err(_)) => {
            qmail::log::line(format_args!("{}", config::USAGE));
            return ExitCode::from(EX_USAGE);
        }
    };
    // the debugger attaches to the process that serves: in listening mode, each worker
    if opts.debug && (listen.is_none() || listener::is_worker()) {
        config::debug(&settings, &service);
    }
    let answerer = || Answerer {
        verifier: Verifier::new(&home),
        control: control.clone(),
        skip_plus: opts.skip_plus,
        quota_perm: settings.quota_perm,
        service: service.clone(),
    };
    let Some(listen) = listen else {
        let mut conn = match Conn::stdio(settings.client_timeout) {
            Ok(conn) => conn,
            Err(e) => {
                qmail::log::line(format_args!("smmapd: fatal: unable to use fds 0 and 1: {e}"));
                return ExitCode::from(qmail::exit::TEMP);
            }
        };
        if session(&mut answerer(), &mut conn) == End::ProtocolError {
            linger(&mut conn);
        }
        return ExitCode::SUCCESS;
    };
    let options = listener::Options {
        // upstream: a worker exits once `uses` connections are done, and -U 0 means one
        uses: u32::try_from(opts.uses).unwrap_or(u32::MAX).max(1),
        idle: Duration::from_secs(opts.idle),
        sessions: SESSIONS,
        timeout: settings.client_timeout,
    };
    let handle = |a: &mut Answerer, conn: &mut Conn| {
        session(a, conn);
    };
    match listener::run("smmapd", &listen, &options, answerer, handle) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            qmail::log::line(format_args!("smmapd: fatal: unable to listen: {e}"));
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed the connection (or went silent) between requests.
    Closed,
    /// A malformed request was answered `PERM` (the rest of the input is unread).
    ProtocolError,
    /// Reading or writing failed.
    Failed,
}

/// Serve one connection: parse, answer, reply; pipelined requests are answered in order and
/// the replies flushed before the next read. A read timeout is an end of input.
pub fn session(answerer: &mut Answerer, conn: &mut (impl Read + Write)) -> End {
    let pid = std::process::id();
    qmail::log::line(format_args!("smmapd: pid {pid}: connection"));
    let mut buf: Vec<u8> = Vec::with_capacity(socketmap::FRAME_MAX);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match socketmap::parse(&buf) {
            Ok(Parsed::Request(request, used)) => {
                let (status, text) = answerer.answer(request.key);
                qmail::log::line(format_args!(
                    "smmapd: pid {pid}: {} {}",
                    qmail::safe::log(request.key),
                    status.word()
                ));
                out.extend(socketmap::reply(status, &text));
                buf.drain(..used);
                continue;
            }
            Ok(Parsed::NeedMore) => {}
            Err(e) => return refuse(conn, &mut out, e),
        }
        // buf holds less than one request (FRAME_MAX): the read below keeps it bounded
        if conn.write_all(&out).and_then(|()| conn.flush()).is_err() {
            return End::Failed;
        }
        out.clear();
        let n = match conn.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                qmail::log::line(format_args!("smmapd: pid {pid}: client timed out"));
                0
            }
            Err(e) => {
                qmail::log::line(format_args!("smmapd: pid {pid}: read failed: {e}"));
                return End::Failed;
            }
        };
        if n == 0 {
            return match socketmap::at_end(&buf) {
                Ok(()) => End::Closed,
                Err(e) => refuse(conn, &mut out, e),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Answer a protocol error with `PERM` (after the replies still pending) and give up.
fn refuse(conn: &mut impl Write, out: &mut Vec<u8>, e: socketmap::ProtocolError) -> End {
    qmail::log::line(format_args!("smmapd: pid {}: {}", std::process::id(), e.text()));
    out.extend(socketmap::reply(Status::Perm, e.text().as_bytes()));
    let _ = conn.write_all(out).and_then(|()| conn.flush());
    End::ProtocolError
}

/// After a protocol error on fds 0/1: end the output (a socket gets its FIN now) and swallow
/// what the client is still sending for a moment (at most 2 s, 4 MiB), so that exiting with
/// unread input does not reset the connection before the client has read the `PERM` reply.
fn linger(conn: &mut Conn) {
    let _ = nix::sys::socket::shutdown(io::stdout().as_raw_fd(), nix::sys::socket::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut sink = [0u8; 8192];
    let mut left: usize = 4 << 20;
    while left > 0 {
        if qmail::timeoutio::wait(io::stdin().as_fd(), PollFlags::POLLIN, deadline).is_err() {
            break;
        }
        match conn.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
