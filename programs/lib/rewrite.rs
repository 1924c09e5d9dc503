//! rewrite: the local/remote decision for a recipient (doc/qmail-todo.8), shared by
//! qmail-todo (which routes) and qmail-send (which strips virtual-domain prefixes in bounces).
//!
//! 1. No `@`: append `@envnoathost`.
//! 2. Percent hack: while the domain is in `percenthack` and the local part has a `%`, the
//!    last `%` becomes the `@`.
//! 3. Domain in `locals` (or `locals.cdb`): local, unchanged.
//! 4. `virtualdomains`: whole address, domain, each `.suffix`, then the empty key; a hit with
//!    a prefix is local as `prefix-address`; a hit with an empty prefix is remote.
//! 5. Otherwise remote.

use crate::control::{self, Control, DomainSet};
use std::collections::{HashMap, HashSet};

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local(Vec<u8>),
    Remote(Vec<u8>),
}

/// The routing tables, read from control files at start and on HUP.
pub struct Rewriter {
    envnoathost: String,
    percenthack: HashSet<String>,
    locals: DomainSet,
    /// lowercased key → prefix; duplicate keys: the last line wins
    virtualdomains: HashMap<String, String>,
}

impl Rewriter {
    pub fn load(c: &Control) -> control::Result<Self> {
        let percenthack = c.list("percenthack")?.unwrap_or_default();
        let virtualdomains = c.map("virtualdomains")?.unwrap_or_default();
        Ok(Rewriter {
            envnoathost: c.line_or_me("envnoathost", "envnoathost")?,
            percenthack: percenthack.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            locals: c.locals()?,
            virtualdomains: virtualdomains
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        })
    }

    /// Route one recipient.
    pub fn route(&self, addr: &[u8]) -> control::Result<Route> {
        let mut addr = addr.to_vec();
        if !addr.contains(&b'@') {
            addr.push(b'@');
            addr.extend_from_slice(self.envnoathost.as_bytes());
        }
        // the percent hack, bounded by the number of % signs
        loop {
            let (local, domain) = crate::address::split(&addr);
            let (at, domain) = (local.len(), lower(domain.unwrap_or_default()));
            if !self.percenthack.contains(&domain) {
                break;
            }
            match addr[..at].iter().rposition(|&b| b == b'%') {
                Some(p) => {
                    addr.truncate(at);
                    addr[p] = b'@';
                }
                None => break,
            }
        }
        let domain = lower(crate::address::split(&addr).1.unwrap_or_default());
        if self.locals.contains(&domain)? {
            return Ok(Route::Local(addr));
        }
        match self.virtual_prefix(&addr, &domain) {
            Some(prefix) if !prefix.is_empty() => {
                let mut local = prefix.as_bytes().to_vec();
                local.push(b'-');
                local.extend_from_slice(&addr);
                Ok(Route::Local(local))
            }
            _ => Ok(Route::Remote(addr)),
        }
    }

    fn virtual_prefix(&self, addr: &[u8], domain: &str) -> Option<&String> {
        if self.virtualdomains.is_empty() {
            return None;
        }
        let whole = lower(addr);
        if let Some(p) = self.virtualdomains.get(&whole) {
            return Some(p);
        }
        if let Some(p) = self.virtualdomains.get(domain) {
            return Some(p);
        }
        for (i, c) in domain.char_indices() {
            if c == '.' {
                if let Some(p) = self.virtualdomains.get(&domain[i..]) {
                    return Some(p);
                }
            }
        }
        self.virtualdomains.get("")
    }

    /// Undo a virtual-domain prefix for a bounce: `prefix-user@dom` → `user@dom` when `dom`
    /// maps to `prefix`.
    pub fn strip_prefix(&self, addr: &[u8]) -> Vec<u8> {
        let (_, Some(domain)) = crate::address::split(addr) else { return addr.to_vec() };
        let domain = lower(domain);
        if let Some(prefix) = self.virtualdomains.get(&domain) {
            let p = prefix.as_bytes();
            if !p.is_empty() && addr.len() > p.len() && addr.starts_with(p) && addr[p.len()] == b'-'
            {
                return addr[p.len() + 1..].to_vec();
            }
        }
        addr.to_vec()
    }
}

/// A domain or address as the control files list it: text, lowercase.
fn lower(domain: &[u8]) -> String {
    String::from_utf8_lossy(domain).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rewriter(files: &[(&str, &str)]) -> Rewriter {
        let home = std::env::temp_dir().join(format!(
            "qmail-rewrite-{}-{}",
            std::process::id(),
            files.len() * 1000 + files.iter().map(|f| f.1.len()).sum::<usize>()
        ));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(home.join("control")).unwrap();
        for (n, d) in files {
            fs::write(home.join("control").join(n), d).unwrap();
        }
        let r = Rewriter::load(&Control::new(&home)).unwrap();
        fs::remove_dir_all(&home).unwrap();
        r
    }

    #[test]
    fn routes() {
        let r = rewriter(&[
            ("me", "mx.example.org\n"),
            ("locals", "example.org\nmx.example.org\n"),
            ("percenthack", "relay.example.org\n"),
            (
                "virtualdomains",
                "virt.example:vu\nalice@other.example:al\n.sub.example:sv\nnone.example:\nvirt.example:v2\n",
            ),
        ]);
        let l = |s: &str| Ok(Route::Local(s.as_bytes().to_vec()));
        let rm = |s: &str| Ok(Route::Remote(s.as_bytes().to_vec()));
        let rows: &[(&str, control::Result<Route>)] = &[
            ("joe@example.org", l("joe@example.org")),
            ("joe@EXAMPLE.org", l("joe@EXAMPLE.org")),
            ("joe", l("joe@mx.example.org")),
            ("joe@elsewhere.net", rm("joe@elsewhere.net")),
            ("a%b.net@relay.example.org", rm("a@b.net")),
            ("a%example.org@relay.example.org", l("a@example.org")),
            ("x@virt.example", l("v2-x@virt.example")),
            ("alice@other.example", l("al-alice@other.example")),
            ("bob@other.example", rm("bob@other.example")),
            ("x@a.sub.example", l("sv-x@a.sub.example")),
            ("x@none.example", rm("x@none.example")),
        ];
        for (input, want) in rows {
            let got = r.route(input.as_bytes());
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{input}");
        }
        assert_eq!(r.strip_prefix(b"v2-x@virt.example"), b"x@virt.example");
        assert_eq!(r.strip_prefix(b"x@virt.example"), b"x@virt.example");
        assert_eq!(r.strip_prefix(b"noat"), b"noat");
    }

    #[test]
    fn catch_all_virtual_domain_and_hostile_input() {
        let r = rewriter(&[("me", "mx.example.org\n"), ("virtualdomains", ":catch\n")]);
        assert_eq!(r.route(b"a@b.c").unwrap(), Route::Local(b"catch-a@b.c".to_vec()));
        let long = vec![b'%'; 5000];
        assert!(r.route(&long).is_ok());
        assert!(r.route(b"@\xff\x00").is_ok());
    }
}
