//! dns: MX and address lookups for qmail-remote, through hickory-resolver on a small
//! current-thread tokio runtime that lives only inside this process.
//!
//! The name servers come from a file in resolv.conf format: `control/resolvconf` names it,
//! default `/etc/resolv.conf`. Read from it: `nameserver` lines (at most [`MAX_SERVERS`]) and
//! `options timeout:N attempts:N`; `search`, `domain` and the other options are ignored
//! (qmail-remote looks up fully qualified names only, as upstream's `dns.c` does). Extension:
//! a `nameserver` value may carry a port, as `127.0.0.1:5353` or `[::1]:5353` (resolv.conf
//! itself cannot; the C library ignores such a line). No `nameserver` line, or no file, means
//! `127.0.0.1` port 53, as with the C library.
//!
//! Answers are classified for qmail-remote: a name that does not exist is [`DnsError::Hard`]
//! (NXDOMAIN); any other failure (time-out, SERVFAIL, refusal, an unreachable server) is
//! [`DnsError::Soft`]; "exists, no records of that type" is an empty answer. CNAME chains are
//! followed by the resolver. `/etc/hosts` is not consulted.

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The most name servers used from the file.
pub const MAX_SERVERS: usize = 8;

/// A lookup that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// Try again later.
    Soft(String),
    /// The name does not exist.
    Hard,
}

/// What is used of a resolv.conf file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: usize,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf { servers: Vec::new(), timeout: Duration::from_secs(5), attempts: 2 }
    }
}

/// Parse resolv.conf text (see the module comment). Unknown lines are ignored.
pub fn parse_resolv_conf(text: &[u8]) -> ResolvConf {
    let mut conf = ResolvConf::default();
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
                        conf.attempts = n.clamp(1, 5) as usize;
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

/// `IP` (port 53), `IPv4:port` or `[IPv6]:port`.
fn server_addr(word: &str) -> Option<SocketAddr> {
    if let Ok(ip) = word.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    word.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// A resolver and the runtime it runs on.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: TokioResolver,
}

impl Dns {
    pub fn new(conf: &ResolvConf) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut config = ResolverConfig::new();
        for &addr in &conf.servers {
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = conf.timeout;
        opts.attempts = conf.attempts;
        opts.ndots = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.edns0 = true;
        opts.cache_size = 64;
        let resolver = {
            // the builder spawns nothing yet, but keep tokio's context around it
            let _guard = rt.enter();
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build()
        };
        Ok(Dns { rt, resolver })
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

    /// The IPv4 addresses of `host`, then its IPv6 addresses; empty when the name exists
    /// without any. A soft failure of one family does not hide the other's addresses.
    pub fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = fqdn(host)?;
        let v4 = match self.rt.block_on(self.resolver.ipv4_lookup(name.clone())) {
            Ok(found) => Ok(found.iter().map(|a| IpAddr::V4(a.0)).collect::<Vec<_>>()),
            Err(e) => empty_or(e),
        };
        if v4 == Err(DnsError::Hard) {
            return Err(DnsError::Hard);
        }
        let v6 = match self.rt.block_on(self.resolver.ipv6_lookup(name)) {
            Ok(found) => Ok(found.iter().map(|a| IpAddr::V6(a.0)).collect::<Vec<_>>()),
            Err(e) => empty_or(e),
        };
        match (v4, v6) {
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

    #[test]
    fn resolv_conf() {
        let c = parse_resolv_conf(
            b"# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver  ::1\n\
              nameserver 127.0.0.9:5353\nnameserver [::1]:54\nnameserver bogus\n\
              nameserver 127.0.0.1:0\noptions ndots:2 timeout:3 attempts:4\n",
        );
        let want: Vec<SocketAddr> = ["192.0.2.1:53", "[::1]:53", "127.0.0.9:5353", "[::1]:54"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.servers, want);
        assert_eq!((c.timeout, c.attempts), (Duration::from_secs(3), 4));
        let d = parse_resolv_conf(b"");
        assert_eq!(d.servers, ["127.0.0.1:53".parse::<SocketAddr>().unwrap()]);
        let e = parse_resolv_conf(b"options timeout:0 attempts:99999999999999999999\n\xff\xfe");
        assert_eq!((e.timeout, e.attempts), (Duration::from_secs(1), 2));
        let many = b"nameserver 192.0.2.1\n".repeat(100);
        assert_eq!(parse_resolv_conf(&many).servers.len(), MAX_SERVERS);
    }

    #[test]
    fn names() {
        assert!(fqdn("example.com").is_ok());
        assert!(fqdn("example.com.").is_ok());
        assert_eq!(fqdn("").unwrap_err(), DnsError::Hard);
        assert_eq!(fqdn(&"a.".repeat(200)).unwrap_err(), DnsError::Hard);
        assert_eq!(unroot("MX.Example.com."), "mx.example.com");
    }
}
