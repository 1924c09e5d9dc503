//! A minimal DNS stub resolver for RBL and RETURNMXCHECK: one UDP question to the resolver,
//! bounded by a timeout, answers counted by type.
//!
//! The resolver is `DNSCACHEIP` (djbdns' variable; `ip` or `ip:port`, for tests and for sites
//! that run a local cache), else the first `nameserver` of `/etc/resolv.conf`, port 53.
//! Each question is tried [`TRIES`] times with [`TIMEOUT`] each, so a lookup never blocks
//! longer than their product. A truncated answer, SERVFAIL, a timeout or no resolver at all is
//! a soft failure: RBL ignores it, RETURNMXCHECK answers 421.
//!
//! Security: answers are parsed with bounds checks only (no name decompression is needed:
//! names are skipped); the answer must come from the resolver asked (connected socket) and
//! carry the question's random id.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(3);
pub const TRIES: usize = 2;

pub const TYPE_A: u16 = 1;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;

/// The result of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// NXDOMAIN, or no record of the type asked
    NotFound,
    /// timeout, server failure, truncation, no resolver
    Soft,
}

/// The resolver to ask, if any.
pub fn resolver() -> Option<SocketAddr> {
    if let Some(v) = std::env::var_os("DNSCACHEIP") {
        let v = v.to_string_lossy().trim().to_string();
        let first = v.split_whitespace().next().unwrap_or("");
        if let Ok(sa) = first.parse::<SocketAddr>() {
            return Some(sa);
        }
        if let Ok(ip) = first.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, 53));
        }
    }
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next())
            .flatten()
            .and_then(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The rdata of every answer of type `qtype` for `name`.
pub fn query(name: &str, qtype: u16) -> Lookup<Vec<Vec<u8>>> {
    let Some(server) = resolver() else { return Lookup::Soft };
    let Some((id, packet)) = question(name, qtype) else { return Lookup::NotFound };
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let Ok(sock) = UdpSocket::bind(bind) else { return Lookup::Soft };
    if sock.connect(server).is_err() || sock.set_read_timeout(Some(TIMEOUT)).is_err() {
        return Lookup::Soft;
    }
    let mut buf = [0u8; 4096];
    for _ in 0..TRIES {
        if sock.send(&packet).is_err() {
            return Lookup::Soft;
        }
        // skip stray answers with the wrong id until the timeout
        let deadline = std::time::Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
                break;
            }
            let Ok(n) = sock.recv(&mut buf) else { break };
            if let Some(result) = answer(&buf[..n], id, qtype) {
                return result;
            }
        }
    }
    Lookup::Soft
}

/// Addresses of `name` (A records).
pub fn a(name: &str) -> Lookup<Vec<IpAddr>> {
    match query(name, TYPE_A) {
        Lookup::Found(rdata) => {
            let ips: Vec<IpAddr> = rdata
                .iter()
                .filter_map(|r| <[u8; 4]>::try_from(r.as_slice()).ok())
                .map(IpAddr::from)
                .collect();
            if ips.is_empty() {
                Lookup::NotFound
            } else {
                Lookup::Found(ips)
            }
        }
        Lookup::NotFound => Lookup::NotFound,
        Lookup::Soft => Lookup::Soft,
    }
}

/// Whether a domain can receive mail: an MX, else an A or AAAA record.
pub fn mail_domain_exists(domain: &str) -> Lookup<()> {
    let mut soft = false;
    for qtype in [TYPE_MX, TYPE_A, TYPE_AAAA] {
        match query(domain, qtype) {
            Lookup::Found(_) => return Lookup::Found(()),
            Lookup::NotFound => {}
            Lookup::Soft => soft = true,
        }
    }
    if soft {
        Lookup::Soft
    } else {
        Lookup::NotFound
    }
}

/// The RBL name of an IP under `base`: `4.3.2.1.base`, or the 32 nibbles for IPv6.
pub fn rbl_name(ip: IpAddr, base: &str) -> String {
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

/// A query packet and its id; `None` for a name that cannot be asked.
fn question(name: &str, qtype: u16) -> Option<(u16, Vec<u8>)> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let id = h.finish() as u16;
    let mut p = Vec::with_capacity(512);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&[0, 1]); // IN
    Some((id, p))
}

/// Parse an answer to question `id`; `None` when it is not one (ignore it).
fn answer(p: &[u8], id: u16, qtype: u16) -> Option<Lookup<Vec<Vec<u8>>>> {
    let be16 = |i: usize| p.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    if be16(0)? != id || p.get(2)? & 0x80 == 0 {
        return None;
    }
    if p[2] & 0x02 != 0 {
        return Some(Lookup::Soft); // truncated
    }
    match p.get(3)? & 0x0f {
        0 => {}
        3 => return Some(Lookup::NotFound),
        _ => return Some(Lookup::Soft),
    }
    let (qd, an) = (be16(4)?, be16(6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(p, i)? + 4;
    }
    let mut found = Vec::new();
    for _ in 0..an {
        i = skip_name(p, i)?;
        let (t, len) = (be16(i)?, usize::from(be16(i + 8)?));
        let rdata = p.get(i + 10..i + 10 + len)?;
        if t == qtype {
            found.push(rdata.to_vec());
        }
        i += 10 + len;
    }
    Some(if found.is_empty() { Lookup::NotFound } else { Lookup::Found(found) })
}

/// The offset after the name at `i`.
fn skip_name(p: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *p.get(i)?;
        match len {
            0 => return Some(i + 1),
            l if l & 0xc0 == 0xc0 => return Some(i + 2),
            l if l & 0xc0 == 0 => i += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(rbl_name("192.0.2.1".parse().unwrap(), "bl.example"), "1.2.0.192.bl.example");
        let v6 = rbl_name("2001:db8::1".parse().unwrap(), "bl");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2.bl"), "{v6}");
        assert!(question("a..b", TYPE_A).is_none());
        assert!(question(&"x".repeat(64), TYPE_A).is_none());
        let (id, q) = question("a.example", TYPE_MX).unwrap();
        assert_eq!(&q[..2], &id.to_be_bytes());
        assert_eq!(&q[12..], b"\x01a\x07example\x00\x00\x0f\x00\x01");
    }

    #[test]
    fn answers() {
        let (id, q) = question("x.example", TYPE_A).unwrap();
        let mut r = q.clone();
        r[2] |= 0x80;
        r[7] = 2; // two answers: a CNAME and an A
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 2]);
        assert_eq!(answer(&r, id, TYPE_A), Some(Lookup::Found(vec![vec![127, 0, 0, 2]])));
        assert_eq!(answer(&r, id.wrapping_add(1), TYPE_A), None);
        assert_eq!(answer(&r, id, TYPE_MX), Some(Lookup::NotFound));
        let mut nx = q.clone();
        nx[2] |= 0x80;
        nx[3] = 3;
        assert_eq!(answer(&nx, id, TYPE_A), Some(Lookup::NotFound));
        nx[3] = 2;
        assert_eq!(answer(&nx, id, TYPE_A), Some(Lookup::Soft));
        // truncated packets are never read out of bounds
        for n in 0..r.len() {
            let _ = answer(&r[..n], id, TYPE_A);
        }
    }
}
