//! tls: what TLS qmail-remote asks of a destination (doc/qmail-remote.8, "TLS").
//!
//! `control/tlsdestinations` holds one rule per line, `destination:policy`:
//!
//! - destination: a domain (that name exactly), `.domain` (every name below it), or `*`
//!   (everything). Looked up for the recipient domain qmail-remote was given, then for the
//!   name of the server it connects to (the MX, or the relay of `control/smtproutes`); the
//!   first name with a rule wins, an exact name before `.parent` rules (nearest first), `*`
//!   last.
//! - policy: empty — STARTTLS is required and the server's certificate must chain to the
//!   system's trusted CAs and carry the server's name; a path — the same with the CAs in
//!   that PEM file; `-` — no STARTTLS, plaintext. A trailing `:digits` (the verify depth of
//!   the qmail TLS patch) is accepted and ignored.
//!
//! Without a rule (or without the file) TLS is opportunistic: STARTTLS when the server
//! offers it, any certificate taken.

use std::path::PathBuf;

/// What a destination gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// STARTTLS when offered, no certificate check; a failed handshake is retried in
    /// plaintext.
    Opportunistic,
    /// No STARTTLS.
    Off,
    /// STARTTLS required, certificate checked: against the system store (`None`) or a CA file.
    Verify(Option<PathBuf>),
}

/// The most rules read; more is a configuration error.
const MAX_RULES: usize = 10_000;

/// The rules of `control/tlsdestinations`, lowercased destinations.
#[derive(Debug, Default)]
pub struct Rules(Vec<(String, Policy)>);

impl Rules {
    /// Parse the file's lines (comments and blank lines already dropped). A line without a
    /// colon or with an empty destination is an error naming it: a typo must not silently
    /// turn a verified destination into an opportunistic one.
    pub fn parse(lines: &[String]) -> Result<Rules, String> {
        if lines.len() > MAX_RULES {
            return Err(format!("more than {MAX_RULES} rules"));
        }
        let mut rules = Vec::with_capacity(lines.len());
        for line in lines {
            let Some((dest, value)) = line.split_once(':') else {
                return Err(format!("no colon in line {}", shown(line)));
            };
            let dest = dest.trim().to_ascii_lowercase();
            if dest.is_empty() || dest.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(format!("bad destination in line {}", shown(line)));
            }
            let value = strip_depth(value.trim());
            let policy = match value {
                "" => Policy::Verify(None),
                "-" => Policy::Off,
                path => Policy::Verify(Some(PathBuf::from(path))),
            };
            rules.push((dest, policy));
        }
        Ok(Rules(rules))
    }

    /// The policy for a message to `domain` through the server named `server` (when it has
    /// a name).
    pub fn find(&self, domain: &str, server: Option<&str>) -> Policy {
        for name in std::iter::once(domain).chain(server) {
            if let Some(p) = self.for_name(&name.to_ascii_lowercase()) {
                return p.clone();
            }
        }
        self.get("*").cloned().unwrap_or(Policy::Opportunistic)
    }

    fn for_name(&self, name: &str) -> Option<&Policy> {
        let name = name.trim_end_matches('.');
        if let Some(p) = self.get(name) {
            return Some(p);
        }
        let mut rest = name;
        while let Some(i) = rest.find('.') {
            if let Some(p) = self.get(&rest[i..]) {
                return Some(p);
            }
            rest = &rest[i + 1..];
        }
        None
    }

    fn get(&self, dest: &str) -> Option<&Policy> {
        self.0.iter().find(|(d, _)| d == dest).map(|(_, p)| p)
    }
}

/// `cafile:9` → `cafile`; a path that itself ends in `:digits` cannot be named.
fn strip_depth(value: &str) -> &str {
    match value.rsplit_once(':') {
        Some((path, depth)) if !depth.is_empty() && depth.bytes().all(|b| b.is_ascii_digit()) => {
            path.trim_end()
        }
        _ => value,
    }
}

/// A line for an error message: at most 80 characters.
fn shown(line: &str) -> String {
    let cut: String = line.chars().take(80).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[&str]) -> Rules {
        Rules::parse(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn lookups() {
        let r = rules(&[
            "Bank.Example:",
            ".corp.example:/etc/corp-ca.pem",
            "plain.example:-",
            "mx.relay.example:/ca.pem:3",
            "*:-",
        ]);
        let v = |p: &str| Policy::Verify(Some(PathBuf::from(p)));
        assert_eq!(r.find("bank.example", None), Policy::Verify(None));
        assert_eq!(r.find("BANK.EXAMPLE.", Some("mx.other")), Policy::Verify(None));
        assert_eq!(r.find("a.b.corp.example", None), v("/etc/corp-ca.pem"));
        assert_eq!(r.find("corp.example", None), Policy::Off, "only below it; * matches");
        assert_eq!(r.find("plain.example", None), Policy::Off);
        assert_eq!(r.find("x.example", Some("mx.relay.example")), v("/ca.pem"));
        assert_eq!(r.find("x.example", Some("mx1.corp.example")), v("/etc/corp-ca.pem"));
        assert_eq!(r.find("x.example", None), Policy::Off);
        let r = rules(&["a.example:", "example:-"]);
        assert_eq!(r.find("b.example", None), Policy::Opportunistic, "no rule, no *");
        assert_eq!(r.find("a.example", Some("mx.a.example")), Policy::Verify(None));
        // the domain's rule wins over the server's
        let r = rules(&["d.example:-", "mx.example:"]);
        assert_eq!(r.find("d.example", Some("mx.example")), Policy::Off);
        assert_eq!(Rules::default().find("d.example", Some("mx")), Policy::Opportunistic);
    }

    #[test]
    fn hostile_and_broken_lines() {
        let bad = |l: &str| Rules::parse(&[l.to_string()]).unwrap_err();
        assert!(bad("no colon here").contains("no colon"));
        assert!(bad(":/ca.pem").contains("bad destination"));
        assert!(bad("a b:").contains("bad destination"));
        assert!(bad("a\u{7}:").contains("bad destination"));
        let long = "x".repeat(100_000);
        assert!(bad(&long).len() < 200, "the error shows at most 80 characters");
        let many: Vec<String> = (0..=MAX_RULES).map(|i| format!("d{i}:")).collect();
        assert!(Rules::parse(&many).unwrap_err().contains("more than"));
        let r = rules(&["d:  /path/with:colon.pem  ", "e::7", "f:/ca:x"]);
        assert_eq!(r.find("d", None), Policy::Verify(Some("/path/with:colon.pem".into())));
        assert_eq!(r.find("e", None), Policy::Verify(None));
        assert_eq!(r.find("f", None), Policy::Verify(Some("/ca:x".into())));
        // deep names are walked without trouble
        let deep = "a.".repeat(5000) + "corp.example";
        assert_eq!(rules(&[".corp.example:-"]).find(&deep, None), Policy::Off);
    }
}
