//! dns: the suite's one DNS client: MX and address lookups for qmail-remote, DNSBL and
//! sender-domain lookups for qmail-smtpd, through hickory-resolver on a small current-thread
//! tokio runtime that lives only inside the calling process (no threads: the process may
//! still fork and exec its children).
//!
//! # Configuration
//!
//! Each program keeps its own source, as its man page says:
//!
//! - qmail-remote, [`Config::from_resolv_conf`]: a file in resolv.conf format,
//!   `control/resolvconf` names it (doc/qmail-remote.8). Read from it: `nameserver` lines (at
//!   most [`MAX_SERVERS`]) and `options timeout:N attempts:N` (default 5 seconds and 2);
//!   `search`, `domain` and the other options are ignored (names are looked up as absolute
//!   names, as upstream's `dns.c` does). Extension: a `nameserver` value may carry a port, as
//!   `127.0.0.1:5353` or `[::1]:5353` (the C library ignores such a line). No `nameserver`
//!   line, or no file, means `127.0.0.1` port 53, as with the C library. Questions go over
//!   UDP with EDNS0, and again over TCP when the answer comes back truncated.
//! - qmail-smtpd, [`Config::dnscache`]: djbdns' `DNSCACHEIP` (`ip` or `ip:port`), else the
//!   first `nameserver` of `/etc/resolv.conf`, port 53; no resolver at all is a temporary
//!   failure of every lookup (doc/qmail-smtpd.8). Each question is tried twice with a
//!   3-second timeout, so no lookup blocks longer than 6 seconds; plain UDP without EDNS0,
//!   where a truncated answer is a temporary failure.
//!
//! `/etc/hosts` is never consulted; CNAME chains are followed.
//!
//! # Answers
//!
//! A name that does not exist (NXDOMAIN), or that cannot be a domain name at all, is
//! [`DnsError::Hard`]; any other failure (time-out, SERVFAIL, refusal, truncation where TCP
//! is not tried, an unreachable server) is [`DnsError::Soft`]; "exists, no records of that
//! type" is an empty answer. qmail-remote turns these into #5.1.2, #4.1.2 and, with no
//! address at all, #5.4.4; qmail-smtpd ignores every non-answer for a DNSBL and answers 421
//! to a soft failure of RETURNMXCHECK ([`Resolver::mail_domain_exists`]).

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The most name servers used from a resolv.conf file.
pub const MAX_SERVERS: usize = 8;

/// A lookup that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// Try again later.
    Soft(String),
    /// The name does not exist.
    Hard,
}

/// Whom to ask, how long to wait, how to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub servers: Vec<SocketAddr>,
    /// How long one try waits for its answer.
    pub timeout: Duration,
    /// Tries after the first one, made only when a try got no answer (a time-out, an I/O
    /// error). resolv.conf's `attempts:N` is taken as this number.
    pub retries: usize,
    pub transport: Transport,
}

/// How questions travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP with EDNS0; TCP when an answer is truncated.
    UdpThenTcp,
    /// UDP without EDNS0 (answers of at most 512 bytes); a truncated answer is soft.
    Udp,
}

impl Config {
    /// qmail-remote's configuration from resolv.conf text (see the module comment). Unknown
    /// lines are ignored.
    pub fn from_resolv_conf(text: &[u8]) -> Config {
        let mut conf = Config {
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
            retries: 2,
            transport: Transport::UdpThenTcp,
        };
        for line in text.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let mut words = line.split_ascii_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(addr) = words.next().and_then(server_addr) {
                        if conf.servers.len() < MAX_SERVERS {
                            conf.servers.push(addr);
                        }
                    }
                }
                Some("options") => {
                    for opt in words {
                        let num = |v: &str| v.parse::<u64>().ok();
                        if let Some(n) = opt.strip_prefix("timeout:").and_then(num) {
                            conf.timeout = Duration::from_secs(n.clamp(1, 30));
                        } else if let Some(n) = opt.strip_prefix("attempts:").and_then(num) {
                            conf.retries = n.clamp(1, 5) as usize;
                        }
                    }
                }
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            conf.servers.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        conf
    }

    /// qmail-smtpd's configuration: `DNSCACHEIP`, else the first `nameserver` of
    /// `/etc/resolv.conf`; `None` when there is no resolver to ask.
    pub fn dnscache() -> Option<Config> {
        let var = std::env::var_os("DNSCACHEIP").map(|v| v.to_string_lossy().into_owned());
        let resolv_conf = std::fs::read("/etc/resolv.conf").ok();
        let server = dnscache_server(var.as_deref(), resolv_conf.as_deref())?;
        Some(Config {
            servers: vec![server],
            timeout: Duration::from_secs(3),
            retries: 1,
            transport: Transport::Udp,
        })
    }
}

/// `IP` (port 53), `IPv4:port` or `[IPv6]:port`.
fn server_addr(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    word.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// The first word of `DNSCACHEIP` as `ip:port` or `ip` (port 53); else, when that is unset
/// or unusable, the first `nameserver` of resolv.conf that is an address (a `%zone` suffix
/// dropped), port 53.
fn dnscache_server(var: Option<&str>, resolv_conf: Option<&[u8]>) -> Option<SocketAddr> {
    if let Some(first) = var.map(|v| v.split_whitespace().next().unwrap_or("")) {
        if let Ok(sa) = first.parse::<SocketAddr>() {
            return Some(sa);
        }
        if let Ok(ip) = first.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, 53));
        }
    }
    let conf = std::str::from_utf8(resolv_conf?).ok()?;
    conf.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next())
            .flatten()
            .and_then(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// A resolver and the runtime it runs on.
pub struct Resolver {
    rt: tokio::runtime::Runtime,
    resolver: TokioResolver,
}

impl Resolver {
    pub fn new(conf: &Config) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut config = ResolverConfig::new();
        for &addr in &conf.servers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            if conf.transport == Transport::UdpThenTcp {
                config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = conf.timeout;
        opts.attempts = conf.retries;
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.edns0 = conf.transport == Transport::UdpThenTcp;
        opts.cache_size = 64;
        let resolver = {
            // the builder spawns nothing yet, but keep tokio's context around it
            let _guard = rt.enter();
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build()
        };
        Ok(Resolver { rt, resolver })
    }

    /// The MX records of `host` as (preference, exchange name without the final dot); empty
    /// when the name exists without MX records.
    pub fn mx(&self, host: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let name = fqdn(host)?;
        match self.rt.block_on(self.resolver.mx_lookup(name)) {
            Ok(found) => Ok(found
                .iter()
                .map(|mx| (mx.preference(), unroot(&mx.exchange().to_ascii())))
                .collect()),
            Err(e) => empty_or(e),
        }
    }

    /// The IPv4 addresses of `host`; empty when the name exists without any.
    pub fn ipv4(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = fqdn(host)?;
        match self.rt.block_on(self.resolver.ipv4_lookup(name)) {
            Ok(found) => Ok(found.iter().map(|a| IpAddr::V4(a.0)).collect()),
            Err(e) => empty_or(e),
        }
    }

    /// The IPv6 addresses of `host`; empty when the name exists without any.
    pub fn ipv6(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = fqdn(host)?;
        match self.rt.block_on(self.resolver.ipv6_lookup(name)) {
            Ok(found) => Ok(found.iter().map(|a| IpAddr::V6(a.0)).collect()),
            Err(e) => empty_or(e),
        }
    }

    /// The IPv4 addresses of `host`, then its IPv6 addresses; empty when the name exists
    /// without any. A soft failure of one family does not hide the other's addresses.
    pub fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let v4 = self.ipv4(host);
        if v4 == Err(DnsError::Hard) {
            return Err(DnsError::Hard);
        }
        match (v4, self.ipv6(host)) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                Ok(a)
            }
            (Ok(a), Err(e)) | (Err(e), Ok(a)) => {
                if a.is_empty() {
                    Err(e)
                } else {
                    Ok(a)
                }
            }
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Whether `domain` can receive mail: it has an MX record, else an A record, else an
    /// AAAA record, asked in that order until one is found. `Ok(false)` when none is (the name
    /// may not exist); a soft failure of any question with none found is soft.
    pub fn mail_domain_exists(&self, domain: &str) -> Result<bool, DnsError> {
        let mut soft = None;
        let questions: [&dyn Fn() -> Result<usize, DnsError>; 3] =
            [&|| self.mx(domain).map(|r| r.len()), &|| self.ipv4(domain).map(|r| r.len()), &|| {
                self.ipv6(domain).map(|r| r.len())
            }];
        for ask in questions {
            match ask() {
                Ok(0) | Err(DnsError::Hard) => {}
                Ok(_) => return Ok(true),
                Err(e) => soft = Some(e),
            }
        }
        soft.map_or(Ok(false), Err)
    }
}

/// The name under which a DNS block list `base` lists `ip`: `4.3.2.1.base`, or the 32 nibbles
/// in reverse for IPv6.
pub fn dnsbl_name(ip: IpAddr, base: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{base}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 15, byte >> 4));
            }
            s + base
        }
    }
}

/// `host` as an absolute name (no search list); a name that cannot be one does not exist.
fn fqdn(host: &str) -> Result<Name, DnsError> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(DnsError::Hard);
    }
    Name::from_ascii(format!("{host}.")).map_err(|_| DnsError::Hard)
}

fn unroot(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A failed lookup: "no records" with NOERROR is an empty answer, NXDOMAIN is hard, anything
/// else soft.
fn empty_or<T>(e: ResolveError) -> Result<Vec<T>, DnsError> {
    if let Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) = e.proto().map(|p| p.kind())
    {
        match *response_code {
            ResponseCode::NoError => return Ok(Vec::new()),
            ResponseCode::NXDomain => return Err(DnsError::Hard),
            _ => {}
        }
    }
    Err(DnsError::Soft(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Instant;

    #[test]
    fn resolv_conf() {
        let c = Config::from_resolv_conf(
            b"# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver  ::1\n\
              nameserver 127.0.0.9:5353\nnameserver [::1]:54\nnameserver bogus\n\
              nameserver 127.0.0.1:0\noptions ndots:2 timeout:3 attempts:4\n",
        );
        let want: Vec<SocketAddr> = ["192.0.2.1:53", "[::1]:53", "127.0.0.9:5353", "[::1]:54"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.servers, want);
        assert_eq!((c.timeout, c.retries), (Duration::from_secs(3), 4));
        assert_eq!(c.transport, Transport::UdpThenTcp);
        let d = Config::from_resolv_conf(b"");
        assert_eq!(d.servers, ["127.0.0.1:53".parse::<SocketAddr>().unwrap()]);
        assert_eq!((d.timeout, d.retries), (Duration::from_secs(5), 2));
        let e =
            Config::from_resolv_conf(b"options timeout:0 attempts:99999999999999999999\n\xff\xfe");
        assert_eq!((e.timeout, e.retries), (Duration::from_secs(1), 2));
        let many = b"nameserver 192.0.2.1\n".repeat(100);
        assert_eq!(Config::from_resolv_conf(&many).servers.len(), MAX_SERVERS);
    }

    #[test]
    fn dnscache() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let conf: &[u8] = b"search x\nnameserver 127.0.0.9:5353\nnameserver fe80::1%eth0\n";
        assert_eq!(
            dnscache_server(Some(" 192.0.2.9:5300 x"), Some(conf)),
            Some(sa("192.0.2.9:5300"))
        );
        assert_eq!(dnscache_server(Some("::1"), None), Some(sa("[::1]:53")));
        // unusable or unset: resolv.conf's first nameserver that is an address, port 53
        assert_eq!(dnscache_server(Some("bogus"), Some(conf)), Some(sa("[fe80::1]:53")));
        assert_eq!(
            dnscache_server(None, Some(b"nameserver 192.0.2.1\n")),
            Some(sa("192.0.2.1:53"))
        );
        assert_eq!(dnscache_server(None, Some(b"nameserver 192.0.2.1\xff\n")), None);
        assert_eq!(dnscache_server(None, Some(b"search x\n")), None);
        assert_eq!(dnscache_server(None, None), None);
    }

    #[test]
    fn names() {
        assert!(fqdn("example.com").is_ok());
        assert!(fqdn("example.com.").is_ok());
        assert_eq!(fqdn("").unwrap_err(), DnsError::Hard);
        assert_eq!(fqdn("a..b").unwrap_err(), DnsError::Hard);
        assert_eq!(fqdn(&"x".repeat(64)).unwrap_err(), DnsError::Hard);
        assert_eq!(fqdn(&"a.".repeat(200)).unwrap_err(), DnsError::Hard);
        assert_eq!(unroot("MX.Example.com."), "mx.example.com");
        let v4 = dnsbl_name("192.0.2.1".parse().unwrap(), "bl.example");
        assert_eq!(v4, "1.2.0.192.bl.example");
        let v6 = dnsbl_name("2001:db8::1".parse().unwrap(), "bl");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2.bl"), "{v6}");
    }

    /// A UDP server on loopback answering by name: `nx.` NXDOMAIN, `fail.` SERVFAIL,
    /// `tc.` truncated, `slow.` never, `a.` one A record (and nothing else), anything else
    /// NOERROR without records. Plain DNS, as qmail-smtpd asks.
    fn fake_server() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = &buf[..n];
                let (first, mut i) = (usize::from(q[12]), 12);
                let label = String::from_utf8_lossy(&q[13..13 + first]).into_owned();
                while q[i] != 0 {
                    i += 1 + usize::from(q[i]);
                }
                let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
                let mut r = q[..i + 5].to_vec();
                r[2] |= 0x80;
                r[3] = 0x80;
                match label.as_str() {
                    "nx" => r[3] |= 3,
                    "fail" => r[3] |= 2,
                    "tc" => r[2] |= 0x02,
                    "slow" => continue,
                    "a" if qtype == 1 => {
                        r[7] = 1;
                        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                        r.extend_from_slice(&[192, 0, 2, 7]);
                    }
                    _ => {}
                }
                let _ = sock.send_to(&r, from);
            }
        });
        addr
    }

    #[test]
    fn answers_are_classified() {
        let conf = Config {
            servers: vec![fake_server()],
            timeout: Duration::from_secs(1),
            retries: 1,
            transport: Transport::Udp,
        };
        let dns = Resolver::new(&conf).unwrap();
        assert_eq!(dns.ipv4("a.example"), Ok(vec![IpAddr::from([192, 0, 2, 7])]));
        assert_eq!(dns.ips("a.example"), Ok(vec![IpAddr::from([192, 0, 2, 7])]));
        assert_eq!(dns.ipv4("empty.example"), Ok(vec![]));
        assert_eq!(dns.mx("a.example"), Ok(vec![]));
        assert_eq!(dns.ipv4("nx.example"), Err(DnsError::Hard));
        assert_eq!(dns.ipv4(""), Err(DnsError::Hard));
        assert!(matches!(dns.ipv4("fail.example"), Err(DnsError::Soft(_))));
        assert!(matches!(dns.ipv4("tc.example"), Err(DnsError::Soft(_))));
        assert_eq!(dns.mail_domain_exists("a.example"), Ok(true));
        assert_eq!(dns.mail_domain_exists("empty.example"), Ok(false));
        assert_eq!(dns.mail_domain_exists("nx.example"), Ok(false));
        assert!(matches!(dns.mail_domain_exists("fail.example"), Err(DnsError::Soft(_))));
        // two tries of one second each, then a soft failure
        let start = Instant::now();
        assert!(matches!(dns.ipv4("slow.example"), Err(DnsError::Soft(_))));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(4), "{took:?}");
    }
}
