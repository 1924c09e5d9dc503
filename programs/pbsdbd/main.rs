//! pbsdbd: POP-before-SMTP's daemon — remembers which addresses logged in recently
//! (doc/pbsdbd.8).
//!
//! `pbsdbd` takes no arguments. It reads `control/pbssecret` (required: doc/DECISIONS.md,
//! 20), `pbsip` (0.0.0.0), `pbsport` (2821), `pbscachesize` (1048576 bytes) and `pbstimeout`
//! (600 s), binds UDP `pbsip:pbsport` and serves forever: an `A` datagram carrying the
//! secret stores its address and env-block until `pbstimeout` seconds from now; a `Q` is
//! answered `R` (relay, with the env-block) or `N`, to the datagram's source. Everything
//! else is dropped with a warning ([`qmail::pbs`] says exactly what is refused). HUP
//! re-reads the control files (all but `pbsip` and `pbsport`, which need a restart); a
//! configuration that cannot be used then is logged and the old one kept.
//!
//! Exit codes: 100 usage (any argument); 111 `pbsdbd: fatal: ...` when it cannot start (run
//! as root, no or bad secret, unreadable or bad control files, the socket cannot be bound).
//!
//! Security: it refuses to run as root; run it as an unprivileged user (`setuidgid qmaild
//! pbsdbd`). Anyone who can send it datagrams can query it; only holders of the secret can
//! add. The secret travels in clear text in every `A` datagram, so the port belongs on a
//! network only the POP/IMAP and SMTP hosts reach (doc/pbsdbd.8, SECURITY).

#![forbid(unsafe_code)]

mod cache;

use cache::Cache;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use qmail::control::Control;
use qmail::pbs::{self, Packet, Secret, PACKET_MAX};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `control/pbscachesize` when absent; the value is kept between these bounds.
const CACHE_DEFAULT: u64 = 1 << 20;
const CACHE_MIN: u64 = 1024;
const CACHE_MAX: u64 = 1 << 30;
/// `control/pbstimeout` when absent, in seconds.
const TIMEOUT_DEFAULT: u64 = 600;

const EXIT_USAGE: u8 = 100;
const EXIT_TEMP: u8 = 111;

struct Config {
    secret: Secret,
    bind: SocketAddr,
    cache: usize,
    timeout: Duration,
}

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        qmail::log::line(format_args!("pbsdbd: usage: pbsdbd"));
        return ExitCode::from(EXIT_USAGE);
    }
    if nix::unistd::geteuid().is_root() {
        return fatal(&"refusing to run as root: run it as an unprivileged user");
    }
    let control = Control::here();
    let config = match load(&control) {
        Ok(c) => c,
        Err(e) => return fatal(&e),
    };
    let mut hup = SigSet::empty();
    hup.add(Signal::SIGHUP);
    let signals = match hup
        .thread_block()
        .and_then(|()| SignalFd::with_flags(&hup, SfdFlags::SFD_NONBLOCK))
    {
        Ok(fd) => fd,
        Err(e) => return fatal(&format!("unable to catch HUP: {e}")),
    };
    let socket = match UdpSocket::bind(config.bind).and_then(|s| {
        s.set_nonblocking(true)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => return fatal(&format!("unable to bind UDP socket {}: {e}", config.bind)),
    };
    qmail::log::line(format_args!("pbsdbd: info: listening on {}", config.bind));
    match serve(&socket, &signals, &control, config) {
        Ok(never) => match never {},
        Err(e) => fatal(&e),
    }
}

fn fatal(text: &dyn std::fmt::Display) -> ExitCode {
    qmail::log::line(format_args!("pbsdbd: fatal: {text}"));
    ExitCode::from(EXIT_TEMP)
}

fn load(control: &Control) -> Result<Config, String> {
    let text = |e: pbs::ConfigError| e.to_string();
    let secret = pbs::secret(control)
        .map_err(text)?
        .ok_or("control/pbssecret is missing or empty: refusing to accept adds without a secret")?;
    let ip = control.line_or("pbsip", "0.0.0.0").map_err(|e| e.to_string())?;
    let ip = pbs::ipv4(&ip).map_err(|e| format!("control/pbsip: {e}"))?;
    let port = pbs::port(control).map_err(text)?;
    let cache = control.int_or("pbscachesize", CACHE_DEFAULT).map_err(|e| e.to_string())?;
    let timeout = control.int_or("pbstimeout", TIMEOUT_DEFAULT).map_err(|e| e.to_string())?;
    Ok(Config {
        secret,
        bind: SocketAddr::from((ip, port)),
        // CACHE_MAX fits every usize of 32 bits or more
        cache: cache.clamp(CACHE_MIN, CACHE_MAX) as usize,
        timeout: Duration::from_secs(timeout),
    })
}

/// The loop: wait for datagrams or HUP; one datagram in, at most one out. Errors on one
/// datagram never end it; only a failing poll does.
fn serve(
    socket: &UdpSocket,
    signals: &SignalFd,
    control: &Control,
    mut config: Config,
) -> Result<std::convert::Infallible, String> {
    let mut cache = Cache::new(config.cache);
    // one byte more than the largest packet, so that a bigger datagram shows as too big
    let mut buf = [0u8; PACKET_MAX + 1];
    loop {
        let mut fds = [
            PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("unable to poll: {e}")),
        }
        let mut hup = false;
        while let Ok(Some(_)) = signals.read_signal() {
            hup = true;
        }
        if hup {
            config = reload(control, config, &mut cache);
        }
        loop {
            let (len, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    qmail::log::line(format_args!("pbsdbd: warning: unable to receive: {e}"));
                    break;
                }
            };
            if let Some(reply) = answer(&buf[..len], from, &config, &mut cache) {
                if let Err(e) = socket.send_to(&reply, from) {
                    qmail::log::line(format_args!("pbsdbd: warning: unable to answer {from}: {e}"));
                }
            }
        }
    }
}

/// HUP: the new configuration, or the old one when the new cannot be used. The socket
/// stays bound where it is; the cache keeps its entries (the oldest dropped if it shrank),
/// each with the expiry it was given.
fn reload(control: &Control, old: Config, cache: &mut Cache) -> Config {
    match load(control) {
        Ok(new) => {
            if new.bind != old.bind {
                qmail::log::line(format_args!(
                    "pbsdbd: warning: still listening on {}: pbsip and pbsport change at restart",
                    old.bind
                ));
            }
            cache.resize(new.cache);
            qmail::log::line(format_args!("pbsdbd: info: configuration reloaded"));
            Config { bind: old.bind, ..new }
        }
        Err(e) => {
            qmail::log::line(format_args!("pbsdbd: warning: keeping the old configuration: {e}"));
            old
        }
    }
}

/// What to do with one datagram from `from`: the reply to send, if any.
fn answer(
    datagram: &[u8],
    from: SocketAddr,
    config: &Config,
    cache: &mut Cache,
) -> Option<Vec<u8>> {
    let warn = |what: &dyn std::fmt::Display| {
        qmail::log::line(format_args!("pbsdbd: warning: {what} from {from}, dropped"));
    };
    let packet = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            warn(&e);
            return None;
        }
    };
    let now = Instant::now();
    match packet {
        Packet::Add(add) if !add.authorized(&config.secret) => {
            warn(&"no authorized add packet");
            None
        }
        Packet::Add(add) => {
            let addr: Ipv4Addr = add.addr;
            if cache.add(addr, add.env, now + config.timeout) {
                qmail::log::line(format_args!("pbsdbd: info: added {addr} (from {from})"));
            } else {
                warn(&format_args!("entry for {addr} bigger than the cache"));
            }
            None
        }
        Packet::Query(addr) => {
            let env = cache.get(addr, now).cloned();
            let reply = Packet::Response(addr, env).encode();
            if reply.is_err() {
                warn(&format_args!("answer for {addr} would exceed packet size"));
            }
            reply.ok()
        }
        Packet::Response(..) => {
            warn(&"response received");
            None
        }
    }
}
