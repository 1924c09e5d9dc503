//! pbscheck: let a client relay that logged in by POP or IMAP a moment ago
//! (doc/pbscheck.8).
//!
//! `pbscheck prog args...` runs in front of qmail-smtpd. With `NOPBS` set it execs `prog` at
//! once. Otherwise it asks one POP-before-SMTP daemon about `TCPREMOTEIP` (a `Q` datagram,
//! [`qmail::pbs`]) — first a pseudo-random server of `control/pbsservers`, then each in
//! order, waiting [`WAIT`] for each — and execs `prog`: after an `R` answer with
//! `RELAYCLIENT=""` and the answer's variables exported as `control/pbsenv` says; after an
//! `N` answer, or none at all, with the environment unchanged.
//!
//! Only answers from the servers asked, from their `pbsport`, about the address asked are
//! taken (doc/DECISIONS.md, 20); anything else is ignored while waiting. Only variables
//! `control/pbsenv` names are exported, so a forged answer cannot set, say, `QMAILQUEUE`.
//!
//! Exit codes: only when `prog` cannot be started, after an SMTP answer on stdout (the
//! client reads it) and a line on stderr: 1 with `554 ... (#5.3.5)` (no `prog`, control
//! files unreadable or invalid, `TCPREMOTEIP` missing or bad, too many pbsenv lines, exec
//! failure).

#![forbid(unsafe_code)]

use qmail::control::Control;
use qmail::pbs::{self, EnvRules, Packet, PACKET_MAX};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long each server is given to answer.
const WAIT: Duration = Duration::from_secs(1);

const EXIT_FATAL: u8 = 1;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((prog, rest)) = args.split_first() else {
        return fatal(
            "554 pop before smtp subprogram uncorrectly installed (#5.3.5)",
            "usage: pbscheck subprogram ...",
        );
    };
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    if std::env::var_os("NOPBS").is_none() {
        if let Err(exit) = check(&mut cmd) {
            return exit;
        }
    }
    let e = cmd.exec();
    fatal(
        "554 unable to start smtp daemon (#5.3.5)",
        &format!("pbscheck: unable to run {}: {e}", prog.to_string_lossy()),
    )
}

/// The SMTP answer for the client on stdout, the reason on stderr, exit 1.
fn fatal(answer: &str, log: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{answer}\r\n").as_bytes()).and_then(|()| out.flush());
    qmail::log::line(format_args!("{log}"));
    ExitCode::from(EXIT_FATAL)
}

/// Ask the servers; on a relay answer, add the environment to `cmd`.
fn check(cmd: &mut Command) -> Result<(), ExitCode> {
    let control = Control::here();
    let controls = |e: pbs::ConfigError| {
        let answer = match e {
            pbs::ConfigError::Env(pbs::EnvError::TooMany) => {
                "554 too many additional environments defined (#5.3.5)"
            }
            _ => "554 unable to read controls (#5.3.5)",
        };
        fatal(answer, &format!("pbscheck: {e}"))
    };
    let servers = pbs::servers(&control).map_err(controls)?;
    let port = pbs::port(&control).map_err(controls)?;
    let rules = pbs::env_rules(&control).map_err(controls)?;
    let Some(addr) = std::env::var("TCPREMOTEIP").ok().and_then(|ip| pbs::ipv4(&ip).ok()) else {
        return Err(fatal(
            "554 unable to read $TCPREMOTEIP (#5.3.5)",
            "pbscheck: unable to read $TCPREMOTEIP",
        ));
    };
    match ask(addr, &servers, port) {
        Ok(Some(env)) => export(cmd, &rules, &env),
        Ok(None) => {}
        Err(e) => qmail::log::line(format_args!("pbscheck: warning: {e}")),
    }
    Ok(())
}

/// The env-block of a relay answer, `None` for a no or no answer at all.
fn ask(addr: Ipv4Addr, servers: &[Ipv4Addr], port: u16) -> std::io::Result<Option<pbs::EnvBlock>> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let query = Packet::Query(addr).encode().unwrap_or_else(|_| unreachable!("a query is 7 bytes"));
    // upstream's order: one pseudo-random server first, then all of them in order
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
        ^ u64::from(std::process::id());
    let first = servers[(seed % servers.len() as u64) as usize];
    let mut asked: Vec<SocketAddr> = Vec::new();
    for server in std::iter::once(first).chain(servers.iter().copied()) {
        let to = SocketAddr::from((server, port));
        socket.send_to(&query, to)?;
        if !asked.contains(&to) {
            asked.push(to);
        }
        if let Some(answer) = wait(&socket, addr, &asked)? {
            return Ok(answer);
        }
    }
    qmail::log::line(format_args!("pbscheck: no response from server"));
    Ok(None)
}

/// Wait up to [`WAIT`] for an answer about `addr` from one of `asked`; others are ignored.
fn wait(
    socket: &UdpSocket,
    addr: Ipv4Addr,
    asked: &[SocketAddr],
) -> std::io::Result<Option<Option<pbs::EnvBlock>>> {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; PACKET_MAX + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        if !asked.contains(&from) {
            qmail::log::line(format_args!("pbscheck: warning: ignored a datagram from {from}"));
            continue;
        }
        match Packet::decode(&buf[..len]) {
            Ok(Packet::Response(about, env)) if about == addr => return Ok(Some(env)),
            _ => qmail::log::line(format_args!(
                "pbscheck: warning: ignored a bad answer from {from}"
            )),
        }
    }
}

/// `RELAYCLIENT=""` and the answer's variables, renamed and prefixed per pbsenv.
fn export(cmd: &mut Command, rules: &EnvRules, env: &pbs::EnvBlock) {
    cmd.env("RELAYCLIENT", "");
    for (name, value) in rules.rewrite(env) {
        cmd.env(OsStr::from_bytes(&name), OsStr::from_bytes(&value));
    }
}
