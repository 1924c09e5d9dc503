//! pbsdbd: POP-before-SMTP's daemon — remembers which addresses logged in recently
//! (doc/pbsdbd.8).
//!
//! `pbsdbd` takes no arguments. It reads `control/pbssecret` (required: doc/DECISIONS.md,
//! 20), `pbsip` (0.0.0.0), `pbsport` (2821), `pbscachesize` (1048576 bytes) and `pbstimeout`
//! (600 s) once, binds UDP `pbsip:pbsport` and serves forever: an `A` datagram carrying the
//! secret stores its address and env-block until `pbstimeout` seconds from now; a `Q` is
//! answered `R` (relay, with the env-block) or `N`, to the datagram's source. Everything
//! else is dropped with a warning ([`qmail::pbs`] says exactly what is refused).
//!
//! Exit codes: 100 usage (any argument); 111 `pbsdbd: fatal: ...` when it cannot start (no
//! or bad secret, unreadable or bad control files, the socket cannot be bound).
//!
//! Security: run it as an unprivileged user (`setuidgid qmaild pbsdbd`); it needs no
//! privilege. Anyone who can send it datagrams can query it; only holders of the secret can
//! add. The secret travels in clear text in every `A` datagram, so the port belongs on a
//! network only the POP/IMAP and SMTP hosts reach (doc/pbsdbd.8, SECURITY).

#![forbid(unsafe_code)]

mod cache;

use cache::Cache;
use qmail::control::Control;
use qmail::pbs::{self, Packet, Secret, PACKET_MAX};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
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
    let config = match load(&Control::here()) {
        Ok(c) => c,
        Err(e) => return fatal(&e),
    };
    let socket = match UdpSocket::bind(config.bind) {
        Ok(s) => s,
        Err(e) => return fatal(&format!("unable to bind UDP socket {}: {e}", config.bind)),
    };
    qmail::log::line(format_args!("pbsdbd: info: listening on {}", config.bind));
    serve(&socket, &config)
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

/// The loop: one datagram in, at most one out. Errors on one datagram never end it.
fn serve(socket: &UdpSocket, config: &Config) -> ExitCode {
    let mut cache = Cache::new(config.cache);
    // one byte more than the largest packet, so that a bigger datagram shows as too big
    let mut buf = [0u8; PACKET_MAX + 1];
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                qmail::log::line(format_args!("pbsdbd: warning: unable to receive: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if let Some(reply) = answer(&buf[..len], from, config, &mut cache) {
            if let Err(e) = socket.send_to(&reply, from) {
                qmail::log::line(format_args!("pbsdbd: warning: unable to answer {from}: {e}"));
            }
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
