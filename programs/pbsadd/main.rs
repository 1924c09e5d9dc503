//! pbsadd: tell the POP-before-SMTP daemons that this client has logged in (doc/pbsadd.8).
//!
//! `pbsadd [prog args...]`, run after a successful POP or IMAP login (as an element of the
//! program chain, or as the `-d` tool of an auth module). With `NOPBS` set it does nothing
//! but exec `prog`. Otherwise it sends one `A` datagram ([`qmail::pbs`]) with the address of
//! `TCPREMOTEIP`, `control/pbssecret` and the variables `control/pbsenv` names (empty when
//! unset) to every server of `control/pbsservers` on `control/pbsport`, expects no answer,
//! and execs `prog` (or exits 0 without one). Network errors are only logged.
//!
//! Exit codes: 0 sent (no `prog`); 1 `pbsadd: fatal: ...` and `prog` not started: control
//! files unreadable or invalid (no server, a bad address, a secret over 255 bytes, over 255
//! pbsenv lines), `TCPREMOTEIP` missing or no IPv4 address, `prog` cannot be run.

#![forbid(unsafe_code)]

use qmail::control::Control;
use qmail::pbs::{self, Add, EnvBlock, Packet, Secret};
use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const EXIT_FATAL: u8 = 1;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if std::env::var_os("NOPBS").is_none() {
        if let Err(e) = send() {
            return fatal(&e);
        }
    }
    match args.split_first() {
        None => ExitCode::SUCCESS,
        Some((prog, rest)) => {
            let e = Command::new(prog).args(rest).exec();
            fatal(&format!("unable to run {}: {e}", prog.to_string_lossy()))
        }
    }
}

fn fatal(text: &dyn std::fmt::Display) -> ExitCode {
    qmail::log::line(format_args!("pbsadd: fatal: {text}"));
    ExitCode::from(EXIT_FATAL)
}

/// Build the `A` datagram and send it to every server.
fn send() -> Result<(), String> {
    let control = Control::here();
    let text = |e: pbs::ConfigError| e.to_string();
    let servers = pbs::servers(&control).map_err(text)?;
    let port = pbs::port(&control).map_err(text)?;
    let secret = pbs::secret(&control).map_err(text)?.unwrap_or_else(|| {
        qmail::log::line(format_args!("pbsadd: warning: control/pbssecret is empty"));
        Secret::default()
    });
    let rules = pbs::env_rules(&control).map_err(text)?;
    let addr = remote_ip().ok_or("unable to read $TCPREMOTEIP")?;
    let env = match rules
        .block(|name| std::env::var_os(OsStr::from_bytes(name)).map(OsString::into_vec))
    {
        Ok(env) => env,
        Err(e) => {
            qmail::log::line(format_args!("pbsadd: warning: {e}: sending no environment"));
            EnvBlock::new()
        }
    };
    let datagram = datagram(addr, secret, env);
    let socket = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(s) => s,
        Err(e) => {
            qmail::log::line(format_args!("pbsadd: warning: unable to create UDP socket: {e}"));
            return Ok(());
        }
    };
    for server in servers {
        if let Err(e) = socket.send_to(&datagram, (server, port)) {
            qmail::log::line(format_args!("pbsadd: warning: unable to send to {server}: {e}"));
        }
    }
    Ok(())
}

/// `$TCPREMOTEIP` as a dotted IPv4 address.
fn remote_ip() -> Option<Ipv4Addr> {
    std::env::var("TCPREMOTEIP").ok().and_then(|ip| pbs::ipv4(&ip).ok())
}

/// The `A` datagram; without the env-block when it would make the datagram too big.
fn datagram(addr: Ipv4Addr, secret: Secret, env: EnvBlock) -> Vec<u8> {
    let add = Add { addr, secret, env };
    Packet::Add(add.clone()).encode().unwrap_or_else(|e| {
        qmail::log::line(format_args!("pbsadd: warning: {e}: sending no environment"));
        Packet::Add(Add { env: EnvBlock::new(), ..add })
            .encode()
            .unwrap_or_else(|_| unreachable!("an add without variables has at most 264 bytes"))
    })
}
