//! userdeny: per-user service blocks in Cyrus's `user_deny.db` record format (doc/smmapd.8, USER
//! DENY LIST), for smmapd.
//!
//! A record is `<version> TAB <wildmat list> [TAB <message>]`, keyed by the address without
//! its `+detail`, lowercased. The sources, under `QMAILHOME/control`:
//!
//! - `userdeny.cdb` (built by `qmailctl cdb` from `userdeny`): key = address, value = record;
//!   when present it replaces the text file entirely, as `locals.cdb` replaces `locals`;
//! - `userdeny`: lines `address TAB record`; `#` lines and lines without a TAB are skipped; the
//!   first line with the address (ASCII case-insensitive) is the record.
//!
//! Versions 1 (no message field) and 2 (message after the second TAB) are understood; any other
//! version makes the record void (the user is allowed). The list is split at commas; a pattern
//! may start with `!` (negated). As upstream, the patterns are tried from the LAST to the first
//! and the first that matches the service name decides: a negated one allows, another one
//! denies, none allows. So `*,!imap` blocks every service but imap. Patterns are INN/Cyrus
//! wildmats: `*`, `?`, `[set]` (`[^set]` negated, `a-z` ranges), `\x` a literal `x`. The
//! message defaults to [`DEFAULT_MESSAGE`]; control characters in it become spaces.

use crate::cdb::{Reader, Writer};
use crate::control::Control;
use std::fmt;
use std::io;
use std::path::Path;

/// The message of a block without its own.
pub const DEFAULT_MESSAGE: &str = "Access to this service has been blocked";

/// The text source and its compiled form, under `control/`.
pub const TEXT: &str = "userdeny";
pub const CDB: &str = "userdeny.cdb";

/// The user deny database could not be read (callers log it and allow: upstream fails open).
#[derive(Debug)]
pub struct DenyError(pub String);

impl fmt::Display for DenyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DenyError {}

/// Why `address` may not use `service`: `Some(message)` when blocked.
pub fn denied(ctl: &Control, address: &[u8], service: &[u8]) -> Result<Option<String>, DenyError> {
    Ok(record(ctl, &address.to_ascii_lowercase())?.and_then(|r| decide(&r, service)))
}

/// The record of `key` (lowercased already): from the cdb when there is one, else the text.
fn record(ctl: &Control, key: &[u8]) -> Result<Option<Vec<u8>>, DenyError> {
    let cdb = Reader::open(&ctl.path(CDB))
        .map_err(|e| DenyError(format!("unable to read control/{CDB}: {e}")))?;
    if let Some(cdb) = cdb {
        return cdb.get(key).map_err(|e| DenyError(format!("unable to read control/{CDB}: {e}")));
    }
    let Some(text) = ctl.raw(TEXT).map_err(|e| DenyError(e.to_string()))? else {
        return Ok(None);
    };
    let record = entries(&text).find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, r)| r.to_vec());
    Ok(record)
}

/// The `(address, record)` lines of the text file, in order.
pub fn entries(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&b| b == b'\n').filter(|l| !l.starts_with(b"#")).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let tab = line.iter().position(|&b| b == b'\t')?;
        Some((&line[..tab], &line[tab + 1..]))
    })
}

/// Compile the text file into `target` (built in `tmp`, mode 0644): key = the address
/// lowercased, value = its record; the first line of an address wins, as in the text file.
pub fn write_cdb(text: &[u8], target: &Path, tmp: &Path) -> io::Result<()> {
    let mut w = Writer::create(tmp, 0o644)?;
    for (address, record) in entries(text) {
        w.add(&address.to_ascii_lowercase(), record)?;
    }
    w.finish(target)
}

/// The verdict of one record on `service`: `Some(message)` when it blocks it.
pub fn decide(record: &[u8], service: &[u8]) -> Option<String> {
    let mut fields = record.splitn(3, |&b| b == b'\t');
    let version = fields.next()?;
    let list = fields.next()?;
    let message = match version {
        b"1" => None,
        b"2" => fields.next().filter(|m| !m.is_empty()),
        _ => return None,
    };
    for pattern in list.split(|&b| b == b',').rev() {
        let (negated, pattern) = match pattern.strip_prefix(b"!") {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if wildmat(service, pattern) {
            if negated {
                return None;
            }
            let text = message.map_or_else(
                || DEFAULT_MESSAGE.to_string(),
                |m| String::from_utf8_lossy(m).into_owned(),
            );
            return Some(text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect());
        }
    }
    None
}

/// Whether `text` matches the wildmat `pattern` (`*`, `?`, `[set]`, `\x`). Linear backtracking
/// on the last `*` only: time is bounded by `text.len() * pattern.len()`.
pub fn wildmat(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    // where to resume after the last `*`: the pattern after it, the text it has eaten up to
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() && pattern[p] == b'*' {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if p == pattern.len() && t == text.len() {
            return true;
        }
        if let (Some(&c), true) = (text.get(t), p < pattern.len()) {
            if let Some(next) = one(pattern, p, c) {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// If the single-character matcher at `pattern[p]` matches `c`: the position after it.
fn one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match set(pattern, p + 1, c) {
            Some((matched, next)) => matched.then_some(next),
            // no closing `]`: a literal `[`
            None => (c == b'[').then_some(p + 1),
        },
        x => (x == c).then_some(p + 1),
    }
}

/// The set starting at `pattern[i]` (after `[`): whether it holds `c`, and the position after
/// its `]`; `None` when it never closes.
fn set(pattern: &[u8], mut i: usize, c: u8) -> Option<(bool, usize)> {
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &x = pattern.get(i)?;
        if x == b']' && !first {
            return Some((hit != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&y| y != b']') {
            hit |= (x..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildmats() {
        let rows: &[(&str, &str, bool)] = &[
            ("smmap", "smmap", true),
            ("smmap", "*", true),
            ("smmap", "sm*", true),
            ("smmap", "*map", true),
            ("smmap", "s?map", true),
            ("smmap", "s??map", false),
            ("smmap", "imap", false),
            ("smmap", "", false),
            ("", "", true),
            ("", "*", true),
            ("smmap", "[rs]mmap", true),
            ("smmap", "[^s]mmap", false),
            ("smmap", "[a-z]mmap", true),
            ("smmap", "[A-Z]mmap", false),
            ("smmap", "sm\\map", true),
            ("a*b", "a\\*b", true),
            ("axb", "a\\*b", false),
            ("[x", "[x", true),
            ("]", "[]]", true),
            ("smmap", "*m*a*p", true),
            ("smmap", "*m*a*q", false),
        ];
        for (text, pat, want) in rows {
            assert_eq!(wildmat(text.as_bytes(), pat.as_bytes()), *want, "{text} ~ {pat}");
        }
        // hostile: many stars stay polynomial
        let text = vec![b'a'; 2000];
        let pat = [b"*a".repeat(100), b"b".to_vec()].concat();
        assert!(!wildmat(&text, &pat));
    }

    #[test]
    fn records() {
        let blocked = Some(DEFAULT_MESSAGE.to_string());
        let rows: &[(&str, Option<String>)] = &[
            ("1\tsmmap", blocked.clone()),
            ("1\t*", blocked.clone()),
            ("1\timap,pop3", None),
            ("1\tsmmap\tignored in version 1", blocked.clone()),
            ("2\tsmmap\tGone fishing", Some("Gone fishing".into())),
            ("2\tsmmap\tbad\x07text\nhere", Some("bad text here".into())),
            ("2\tsmmap\t", blocked.clone()),
            ("2\tsmmap", blocked.clone()),
            // right to left: the last matching pattern decides
            ("1\t*,!smmap", None),
            ("1\t!smmap,*", blocked.clone()),
            ("1\timap,!sm*,smmap", blocked.clone()),
            ("3\tsmmap", None),
            ("0\tsmmap", None),
            ("x\tsmmap", None),
            ("", None),
            ("1", None),
        ];
        for (record, want) in rows {
            assert_eq!(&decide(record.as_bytes(), b"smmap"), want, "{record:?}");
        }
    }

    #[test]
    fn compiled() {
        let dir = std::env::temp_dir().join(format!("userdeny-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("control")).unwrap();
        let ctl = Control::new(&dir);
        let text = b"Bob@Example.org\t2\tsmmap\tfrom the text\n";
        std::fs::write(ctl.path(TEXT), text).unwrap();
        let from_text = denied(&ctl, b"bob@example.ORG", b"smmap").unwrap();
        assert_eq!(from_text.as_deref(), Some("from the text"));
        write_cdb(
            b"bob@example.org\t1\tsmmap\nbob@example.org\t1\timap\n",
            &ctl.path(CDB),
            &ctl.path("userdeny.tmp"),
        )
        .unwrap();
        // the cdb replaces the text
        let from_cdb = denied(&ctl, b"BOB@example.org", b"smmap").unwrap();
        assert_eq!(from_cdb.as_deref(), Some(DEFAULT_MESSAGE));
        assert_eq!(denied(&ctl, b"ann@example.org", b"smmap").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn text_file() {
        let text =
            b"# comment\nno tab here\nbob@example.org\t1\timap\nBOB@example.org\t1\tsmmap\r\n";
        let all: Vec<_> = entries(text).collect();
        assert_eq!(
            all,
            vec![
                (&b"bob@example.org"[..], &b"1\timap"[..]),
                (&b"BOB@example.org"[..], &b"1\tsmmap"[..])
            ]
        );
    }
}
