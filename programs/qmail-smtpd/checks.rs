//! qmail-smtpd's checks: the relay decision (doc/qmail-smtpd.8, "Relaying"), local IP addresses
//! (for `box@[IP]`), the sender checks that need no directory, the attachment signatures of
//! REJECTEXEC, and the seams for the features that come with their own issues (SMTP AUTH,
//! POP-before-SMTP). The directory checks (RCPTCHECK, SENDERCHECK) ask qmail-verify: verify.rs.
//!
//! Security: the relay decision fails closed. Without `rcpthosts` only `locals` are accepted;
//! a control file that cannot be read is a temporary failure, never an "allowed".

use crate::config::{Config, Env};
use qmail::control::{ControlError, DomainSet};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a recipient's domain is one this host accepts mail for without RELAYCLIENT: no
/// `@` (completed locally later), a `locals` domain (unless NOLOCAL), or the domain or one of
/// its `.suffix`es in `rcpthosts` / `morercpthosts.cdb`.
pub fn rcpt_allowed(cfg: &Config, env: &Env, addr: &[u8]) -> Result<bool, ControlError> {
    let (_, Some(domain)) = qmail::address::split(addr) else { return Ok(true) };
    let domain = String::from_utf8_lossy(domain).to_ascii_lowercase();
    if !env.nolocal && cfg.locals.contains(&domain)? {
        return Ok(true);
    }
    for set in [&cfg.rcpthosts, &cfg.morercpthosts].into_iter().flatten() {
        if suffix_match(set, &domain)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `domain` itself, or any `.suffix` of it (`.example.org` for `a.example.org`), in `set`.
fn suffix_match(set: &DomainSet, domain: &str) -> Result<bool, ControlError> {
    if domain.is_empty() {
        return Ok(false);
    }
    if set.contains(domain)? {
        return Ok(true);
    }
    for (i, _) in domain.match_indices('.') {
        if set.contains(&domain[i..])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The domain of `addr` (after its last `@`) is in `locals`: the addresses RCPTCHECK and
/// SENDERCHECK verify. An address without `@` is not.
pub fn domain_is_local(cfg: &Config, addr: &[u8]) -> Result<bool, ControlError> {
    let (_, Some(domain)) = qmail::address::split(addr) else { return Ok(false) };
    cfg.locals.contains(&String::from_utf8_lossy(domain).to_ascii_lowercase())
}

/// The sender domain is local (in `locals`) or accepted (in rcpthosts): for SENDERCHECK LOOSE.
pub fn domain_is_ours(cfg: &Config, domain: &[u8]) -> Result<bool, ControlError> {
    let domain = String::from_utf8_lossy(domain).to_ascii_lowercase();
    if cfg.locals.contains(&domain)? {
        return Ok(true);
    }
    for set in [&cfg.rcpthosts, &cfg.morercpthosts].into_iter().flatten() {
        if suffix_match(set, &domain)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The sender is plausible (SANITYCHECK): an `@`, a non-empty local part and domain, and a
/// dot in the domain.
pub fn sane_sender(addr: &[u8]) -> bool {
    let (local, Some(domain)) = qmail::address::split(addr) else { return false };
    !local.is_empty() && !domain.is_empty() && domain.contains(&b'.')
}

/// The addresses of this host, for `box@[IP]` (doc/qmail-smtpd.8, "Addresses"): loopback, the
/// unspecified address, `TCPLOCALIP`, and every address the kernel routes locally
/// (`/proc/net/fib_trie` LOCAL entries and `/proc/net/if_inet6`). Read once, when first needed.
pub struct LocalIps {
    env_ip: Option<IpAddr>,
    ips: Option<HashSet<IpAddr>>,
}

impl LocalIps {
    pub fn new(env_ip: Option<IpAddr>) -> Self {
        LocalIps { env_ip, ips: None }
    }

    pub fn contains(&mut self, ip: IpAddr) -> bool {
        if ip.is_loopback() || ip.is_unspecified() || Some(ip) == self.env_ip {
            return true;
        }
        self.ips.get_or_insert_with(kernel_local_ips).contains(&ip)
    }
}

fn kernel_local_ips() -> HashSet<IpAddr> {
    let mut ips = HashSet::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<Ipv4Addr> = None;
        for line in trie.lines() {
            let t = line.trim();
            if let Some(ip) = t.strip_prefix("|-- ") {
                last = ip.parse().ok();
            } else if t.ends_with("host LOCAL") {
                if let Some(ip) = last {
                    ips.insert(IpAddr::V4(ip));
                }
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next() else { continue };
            if let Ok(n) = u128::from_str_radix(hex, 16) {
                if hex.len() == 32 {
                    ips.insert(IpAddr::V6(Ipv6Addr::from(n)));
                }
            }
        }
    }
    ips
}

/// REJECTEXEC: looks at the first bytes of every line that follows an empty line (the start
/// of the body and of every MIME part's content) and matches them against `signatures`
/// (`*` matches any one byte). Memory: one prefix of the longest signature.
pub struct ExecCheck<'a> {
    signatures: &'a [Vec<u8>],
    longest: usize,
    /// the previous line was empty (or this is the first line)
    after_blank: bool,
    /// the current line's length so far
    pos: usize,
    prefix: Vec<u8>,
    hit: bool,
}

impl<'a> ExecCheck<'a> {
    pub fn new(signatures: &'a [Vec<u8>]) -> Self {
        let longest = signatures.iter().map(Vec::len).max().unwrap_or(0);
        ExecCheck {
            signatures,
            longest,
            after_blank: false,
            pos: 0,
            prefix: Vec::with_capacity(longest),
            hit: false,
        }
    }

    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Scan decoded message bytes (lines end in LF).
    pub fn scan(&mut self, bytes: &[u8]) {
        if self.signatures.is_empty() || self.hit {
            return;
        }
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
                continue;
            }
            if self.after_blank && self.prefix.len() < self.longest {
                self.prefix.push(b);
            }
            self.pos += 1;
        }
    }

    fn end_line(&mut self) {
        if self.after_blank && !self.prefix.is_empty() {
            let p = &self.prefix;
            self.hit |= self.signatures.iter().any(|sig| {
                !sig.is_empty()
                    && p.len() >= sig.len()
                    && sig.iter().zip(p.iter()).all(|(&s, &c)| s == b'*' || s == c)
            });
        }
        self.after_blank = self.pos == 0;
        self.pos = 0;
        self.prefix.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanity() {
        for (addr, want) in [
            ("a@b.c", true),
            ("a@b", false),
            ("@b.c", false),
            ("a@", false),
            ("ab.c", false),
            ("", false),
        ] {
            assert_eq!(sane_sender(addr.as_bytes()), want, "{addr}");
        }
    }

    #[test]
    fn exec_signatures() {
        let sigs = vec![b"TVqQ*AMAAAA".to_vec()];
        let rows: &[(&[u8], bool)] = &[
            (b"Subject: x\n\nTVqQAAMAAAAEAAAA\n", true),
            (b"Subject: x\n\nhello\n\n--b\nContent-Type: x\n\nTVqQxAMAAAAE\n", true),
            (b"Subject: x\n\nhello TVqQAAMAAAAE\n", false),
            (b"Subject: x\n\nhello\nTVqQAAMAAAAE\n", false),
            (b"Subject: x\n\nTVqQ\n", false),
        ];
        for (msg, want) in rows {
            let mut c = ExecCheck::new(&sigs);
            for piece in msg.chunks(3) {
                c.scan(piece);
            }
            assert_eq!(c.hit(), *want, "{:?}", String::from_utf8_lossy(msg));
        }
    }
}
