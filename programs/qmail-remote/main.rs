//! qmail-remote: send one message to the mail server of one domain by SMTP (doc/qmail-remote.8).
//!
//! `qmail-remote host sender recip...`, no options, run by qmail-rspawn with the message (a
//! regular file) on fd 0. It picks the servers for `host` ([`route`]: `control/smtproutes`,
//! else MX records, else the host's own addresses, or an `[IP]` literal), skips addresses the
//! timeout table `queue/lock/tcpto` marks as dead, connects to each in turn within
//! `timeoutconnect` seconds (from `outgoingip` when set) until one takes the dialogue
//! ([`smtp`]), and reports on fd 1: a record per recipient (`r`, `h`, `s`), then one message
//! record (`K`, `Z`, `D`), each a letter, a text and a NUL ([`qmail::remote`]).
//!
//! Exit codes: always 0; every result, including a usage error (`D`, `#5.3.5`) and an
//! unreadable control file (`Z`, `#4.3.0`), is in the records. See doc/qmail-remote.8.
//!
//! Security: runs as qmailr with no privileges; everything the peer and the DNS send is
//! parsed by bounded parsers (replies: [`qmail::smtpreply`]; DNS: hickory-resolver), and
//! every read and write has a timeout. Envelope addresses holding CR, LF or NUL never reach
//! the wire.

#![forbid(unsafe_code)]

mod route;
mod smtp;
mod tls;

use qmail::control::Control;
use qmail::dns;
use qmail::tcpto;
use route::{Relay, Route, Target};
use smtp::{Out, Params, StartTls, Step};
use std::fs::File;
use std::io::Stdout;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tls::Policy;

use qmail::tlsclient::{self, Trust};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

/// The most bytes of `smtpclustercookie` used.
const COOKIE_MAX: usize = 32;

fn main() {
    let mut out = Out::new(std::io::stdout());
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(|a| a.as_bytes().to_vec()).collect();
    if args.len() < 3 {
        out.message(b'D', b"I (qmail-remote) was invoked improperly. (#5.3.5)\n");
        return;
    }
    let host = String::from_utf8_lossy(&args[0]).into_owned();
    if let Err((letter, text)) = run(&host, &args[1], &args[2..], &mut out) {
        out.message(letter, text.as_bytes());
    }
    if !out.message_done {
        out.message(b'Z', b"qmail-remote ended without a result. (#4.3.0)\n");
    }
}

/// A failure that ends the delivery: the message record's letter and text.
type Fail = (u8, String);

fn temp(text: impl Into<String>) -> Fail {
    (b'Z', text.into())
}

fn perm(text: impl Into<String>) -> Fail {
    (b'D', text.into())
}

/// What the control files say.
struct Config {
    helohost: String,
    routes: Vec<(String, String)>,
    connect: Duration,
    remote: Duration,
    outgoing: Option<IpAddr>,
    cookie: Option<Vec<u8>>,
    port: u16,
    resolvconf: PathBuf,
    /// `me` and `localiphost`, lowercased: MX names that are this host.
    my_names: Vec<String>,
    /// `control/tlsdestinations`.
    tls_rules: tls::Rules,
    /// `control/remotecert`, when it exists: the client certificate.
    remotecert: Option<PathBuf>,
    /// The cipher suites of `control/tlsremoteciphers`.
    ciphers: Arc<rustls::crypto::CryptoProvider>,
}

fn config(home: &Path) -> Result<Config, Fail> {
    let c = Control::new(home);
    let unreadable = |e: qmail::control::ControlError| temp(format!("{e}. (#4.3.0)\n"));
    let me = c.me().map_err(unreadable)?;
    let helohost = match c.line("helohost").map_err(unreadable)?.or_else(|| me.clone()) {
        Some(h) if h.bytes().all(|b| b.is_ascii_graphic()) => h,
        Some(_) => {
            return Err(temp("control/helohost holds a blank or a control character. (#4.3.5)\n"))
        }
        None => return Err(temp("Neither control/helohost nor control/me exists. (#4.3.5)\n")),
    };
    let seconds = |name: &str, default: u64| -> Result<Duration, Fail> {
        Ok(Duration::from_secs(c.int_or(name, default).map_err(unreadable)?.max(1)))
    };
    let outgoing = match c.line("outgoingip").map_err(unreadable)? {
        None => None,
        Some(ip) => match ip.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => None,
            Ok(ip) => Some(ip),
            Err(_) => {
                return Err(temp(format!("control/outgoingip is not an address: {ip}. (#4.3.5)\n")))
            }
        },
    };
    let port = match c.int("remoteport").map_err(unreadable)? {
        None => 25,
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => p,
            _ => return Err(temp("control/remoteport is not a port number. (#4.3.5)\n")),
        },
    };
    let cookie = c.line("smtpclustercookie").map_err(unreadable)?.map(|s| {
        let b = s.into_bytes();
        b[..b.len().min(COOKIE_MAX)].to_vec()
    });
    let tls_rules = match c.list("tlsdestinations").map_err(unreadable)? {
        None => tls::Rules::default(),
        Some(lines) => tls::Rules::parse(&lines)
            .map_err(|e| temp(format!("control/tlsdestinations: {e}. (#4.3.5)\n")))?,
    };
    let remotecert = Some(home.join("control/remotecert")).filter(|p| p.exists());
    let ciphers = c.raw("tlsremoteciphers").map_err(unreadable)?;
    let ciphers = qmail::tls::provider(
        ciphers.as_deref().map(String::from_utf8_lossy).as_deref(),
        "control/tlsremoteciphers",
    )
    .map_err(|e| temp(format!("{e}. (#4.3.5)\n")))?;
    let mut my_names: Vec<String> = me.iter().map(|m| m.to_ascii_lowercase()).collect();
    if let Some(l) = c.line("localiphost").map_err(unreadable)? {
        my_names.push(l.to_ascii_lowercase());
    }
    Ok(Config {
        helohost,
        routes: c.map("smtproutes").map_err(unreadable)?.unwrap_or_default(),
        connect: seconds("timeoutconnect", 60)?,
        remote: seconds("timeoutremote", 1200)?,
        outgoing,
        cookie,
        port,
        resolvconf: PathBuf::from(c.line_or("resolvconf", "/etc/resolv.conf").map_err(unreadable)?),
        my_names,
        tls_rules,
        remotecert,
        ciphers,
    })
}

fn run(
    host: &str,
    sender: &[u8],
    recipients: &[Vec<u8>],
    out: &mut Out<Stdout>,
) -> Result<(), Fail> {
    let home = qmail::auto::home();
    let cfg = config(&home)?;
    if !smtp::check_address(sender) {
        return Err(perm("The sender address holds a line break or NUL. (#5.1.7)\n"));
    }
    let message = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(|e| temp(format!("Unable to use the message: {e}. (#4.3.0)\n")))?;
    let size = message.metadata().map(|m| m.len()).unwrap_or(0);
    let (targets, port) = targets(host, &cfg)?;
    let table = home.join("queue/lock/tcpto");
    let params = Params {
        helohost: &cfg.helohost,
        sender,
        recipients,
        size,
        cookie: cfg.cookie.as_deref(),
        peer: String::new(),
        tls: None,
        note: b"",
    };
    let mut last: Vec<u8> = Vec::new();
    let mut tls_failed = false;
    let mut configs = Configs::default();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let pid = std::process::id();
    'targets: for target in targets {
        let dead = tcpto::with_locked(&table, false, |t| (false, t.is_dead(target.ip, now(), pid)))
            .unwrap_or(false);
        if dead {
            last =
                format!("{} is in the timeout table (see qmail-tcpto).\n", target.ip).into_bytes();
            continue;
        }
        let policy = cfg.tls_rules.find(host, target.name.as_deref());
        let starttls = configs.starttls(&cfg, &policy, &target)?;
        let mut tls = starttls.as_ref();
        let mut note = Vec::new();
        // a second round only in plaintext, after a failed opportunistic handshake
        loop {
            let addr = SocketAddr::new(target.ip, port);
            let stream = match connect(addr, cfg.outgoing, cfg.connect) {
                Ok(s) => {
                    let _ = tcpto::with_locked(&table, false, |t| (t.connected(target.ip), ()));
                    s
                }
                Err(Connect::Bind(e)) => {
                    return Err(temp(format!(
                        "Unable to bind to control/outgoingip: {e}. (#4.3.5)\n"
                    )))
                }
                Err(Connect::TimedOut) => {
                    let _ =
                        tcpto::with_locked(&table, false, |t| (t.timed_out(target.ip, now()), ()));
                    last = format!("Connection to {} timed out.\n", target.ip).into_bytes();
                    continue 'targets;
                }
                Err(Connect::Failed(e)) => {
                    last = format!("Connection to {} failed: {e}.\n", target.ip).into_bytes();
                    continue 'targets;
                }
            };
            let _ = stream.set_read_timeout(Some(cfg.remote));
            let _ = stream.set_write_timeout(Some(cfg.remote));
            let p = Params { peer: target.ip.to_string(), tls, note: &note, ..params };
            let rewound = message.try_clone().and_then(|mut m| {
                use std::io::Seek;
                m.seek(std::io::SeekFrom::Start(0))?;
                Ok(m)
            });
            let Ok(body) = rewound else {
                return Err(temp("Unable to rewind the message. (#4.3.0)\n"));
            };
            match smtp::deliver(stream, &p, std::io::BufReader::new(body), out) {
                Step::Done => return Ok(()),
                Step::Next(why) => {
                    (last, tls_failed) = (why, false);
                    continue 'targets;
                }
                Step::NoTls(why) => {
                    (last, tls_failed) = (why, true);
                    continue 'targets;
                }
                Step::Plaintext(why) => {
                    note = why;
                    note.extend_from_slice(b"Sent in plaintext after that.\n");
                    tls = None;
                }
            }
        }
    }
    let mut text = if tls_failed {
        b"Sorry, I couldn't make the TLS session control/tlsdestinations requires. (#4.7.5)\n"
            .to_vec()
    } else {
        b"Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n".to_vec()
    };
    text.extend_from_slice(&last);
    out.message(b'Z', &text);
    Ok(())
}

/// The TLS client configurations of this delivery, one per policy, made when first needed.
#[derive(Default)]
struct Configs(Vec<(Policy, Arc<ClientConfig>)>);

impl Configs {
    /// STARTTLS for `target` under `policy`: `None` when the policy says no TLS. A CA file or
    /// client certificate that cannot be used is a temporary failure naming the file.
    fn starttls(
        &mut self,
        cfg: &Config,
        policy: &Policy,
        target: &Target,
    ) -> Result<Option<StartTls>, Fail> {
        if *policy == Policy::Off {
            return Ok(None);
        }
        let config = match self.0.iter().find(|(p, _)| p == policy) {
            Some((_, c)) => c.clone(),
            None => {
                let trust = match policy {
                    Policy::Verify(None) => tlsclient::system_roots().map(Trust::Roots),
                    Policy::Verify(Some(file)) => tlsclient::ca_file(file).map(Trust::Roots),
                    _ => Ok(Trust::Any),
                };
                let provider = cfg.ciphers.clone();
                let config = trust
                    .and_then(|t| tlsclient::client_config(provider, t, cfg.remotecert.as_deref()))
                    .map_err(|e| temp(format!("Unable to set up TLS: {e}. (#4.3.0)\n")))?;
                self.0.push((policy.clone(), config.clone()));
                config
            }
        };
        let name = target
            .name
            .as_deref()
            .and_then(|n| tlsclient::server_name(n).ok())
            .unwrap_or_else(|| ServerName::IpAddress(target.ip.into()));
        let required = matches!(policy, Policy::Verify(_));
        Ok(Some(StartTls { config, name, required }))
    }
}

/// The addresses to try, in order, and the port.
fn targets(host: &str, cfg: &Config) -> Result<(Vec<Target>, u16), Fail> {
    let hard = || perm(format!("Sorry, I couldn't find any host named {host}. (#5.1.2)\n"));
    let soft =
        |why: &str| temp(format!("Sorry, I couldn't look up {host} just now ({why}). (#4.1.2)\n"));
    let none = || {
        perm(format!(
            "Sorry, I couldn't find a mail exchanger or IP address for {host}. (#5.4.4)\n"
        ))
    };
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(hard());
    }
    // an address literal: no DNS, no route
    match route::literal(host) {
        Ok(Some(ip)) => return finish(vec![Target { pref: 0, ip, name: None }], cfg.port, host),
        Ok(None) => {}
        Err(()) => return Err(hard()),
    }
    let route =
        route::find_route(&cfg.routes, host).map_err(|e| temp(format!("{}. (#4.3.5)\n", e.0)))?;
    if let Some(Route::Relay { relay, port }) = route {
        let port = port.unwrap_or(cfg.port);
        let (ips, name) = match relay {
            Relay::Ip(ip) => (vec![ip], None),
            Relay::Name(name) => {
                let dns = resolver(cfg)?;
                match dns.ips(&name) {
                    Ok(ips) => (ips, Some(name)),
                    Err(dns::DnsError::Hard) => {
                        return Err(perm(format!(
                        "Sorry, I couldn't find the relay {name} of control/smtproutes. (#5.1.2)\n"
                    )))
                    }
                    Err(dns::DnsError::Soft(e)) => return Err(soft(&e)),
                }
            }
        };
        if ips.is_empty() {
            return Err(none());
        }
        // a route is used as it is: no check for our own addresses
        let targets = ips.into_iter().map(|ip| Target { pref: 0, ip, name: name.clone() });
        return Ok((targets.collect(), port));
    }
    let dns = resolver(cfg)?;
    let mxs = match dns.mx(host) {
        Ok(m) => m,
        Err(dns::DnsError::Hard) => return Err(hard()),
        Err(dns::DnsError::Soft(e)) => return Err(soft(&e)),
    };
    let mut targets = Vec::new();
    if mxs.is_empty() {
        match dns.ips(host) {
            Ok(ips) => targets.extend(ips.into_iter().map(|ip| Target {
                pref: 0,
                ip,
                name: Some(host.to_string()),
            })),
            Err(dns::DnsError::Hard) => return Err(hard()),
            Err(dns::DnsError::Soft(e)) => return Err(soft(&e)),
        }
    } else {
        let random = random_source();
        let mut soft_error = None;
        for (pref, name) in route::order(mxs, random) {
            let pref = u32::from(pref);
            if cfg.my_names.contains(&name) {
                // this host by name: cap the preference whatever it resolves to
                let ip = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
                targets.push(Target { pref, ip, name: None });
                continue;
            }
            match dns.ips(&name) {
                Ok(ips) => targets.extend(ips.into_iter().map(|ip| Target {
                    pref,
                    ip,
                    name: Some(name.clone()),
                })),
                // an MX naming a host that does not exist is skipped, as upstream does
                Err(dns::DnsError::Hard) => {}
                Err(dns::DnsError::Soft(e)) => soft_error = Some(e),
            }
        }
        if targets.is_empty() {
            if let Some(e) = soft_error {
                return Err(soft(&e));
            }
        }
    }
    finish(targets, cfg.port, host)
}

/// Apply the "is it us" cap and refuse an empty list.
fn finish(targets: Vec<Target>, port: u16, host: &str) -> Result<(Vec<Target>, u16), Fail> {
    if targets.is_empty() {
        return Err(perm(format!(
            "Sorry, I couldn't find a mail exchanger or IP address for {host}. (#5.4.4)\n"
        )));
    }
    let mine = my_addresses();
    match route::cap(targets, |t| t.ip.is_unspecified() || mine.contains(&t.ip)) {
        Some(t) => Ok((t, port)),
        None => Err(perm(
            "Sorry. Although I'm listed as a best-preference MX or A for that host,\n\
             it isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\n",
        )),
    }
}

fn resolver(cfg: &Config) -> Result<dns::Resolver, Fail> {
    let text = match std::fs::read(&cfg.resolvconf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(temp(format!(
                "Unable to read {}: {e}. (#4.3.0)\n",
                cfg.resolvconf.display()
            )))
        }
    };
    let conf = dns::Config::from_resolv_conf(&text[..text.len().min(64 * 1024)]);
    dns::Resolver::new(&conf)
        .map_err(|e| temp(format!("Unable to start the resolver: {e}. (#4.3.0)\n")))
}

/// The addresses of this host's interfaces (upstream's `ipme`).
fn my_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// Random numbers for shuffling MX records of equal preference, from the kernel. Should
/// that fail (a kernel without getrandom(2) and without /dev/urandom), equal preferences keep
/// the DNS server's order.
fn random_source() -> impl FnMut() -> u64 {
    || getrandom::u64().unwrap_or(0)
}

enum Connect {
    TimedOut,
    Failed(std::io::Error),
    Bind(std::io::Error),
}

/// Connect to `addr` within `limit`, from `from` when it is of the same family.
fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
    limit: Duration,
) -> Result<std::net::TcpStream, Connect> {
    use socket2::{Domain, Socket, Type};
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(Connect::Failed)?;
    if let Some(ip) = from {
        if ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(&SocketAddr::new(ip, 0).into()).map_err(Connect::Bind)?;
        }
    }
    match socket.connect_timeout(&addr.into(), limit) {
        Ok(()) => Ok(socket.into()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Err(Connect::TimedOut)
        }
        Err(e) => Err(Connect::Failed(e)),
    }
}
