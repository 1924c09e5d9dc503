//! ldap::filter: the search filters of a recipient lookup (doc/qmail-ldap.7, LOOKUP): RFC 4515
//! escaping of assertion values, the filter for one address, and the candidate sequence of
//! catch-all probes. Pure functions; nothing here talks to a server.

/// The local part of catch-all entries (`LDAP_CATCH_ALL`).
pub const CATCH_ALL: &str = "catchall";
/// How many leading dash components the catch-all probing keeps (`DASH_EXT_LEVELS`).
pub const DASH_EXT_LEVELS: usize = 4;
/// The qmail user-extension delimiter.
pub const BREAK: char = '-';

/// RFC 4515 escaping of an assertion value: `*`, `(`, `)`, `\`, NUL, and every byte that is
/// not printable ASCII become `\xx`, so no input can change the filter's structure.
pub fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        match b {
            b'*' | b'(' | b')' | b'\\' => out.push_str(&format!("\\{b:02x}")),
            0x21..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:02x}")),
        }
    }
    out
}

/// The filter for one candidate address (doc/qmail-ldap.7, LOOKUP), already folded and escaped.
pub fn address_filter(address: &[u8], objectclass: Option<&str>) -> String {
    let v = escape(&address.to_ascii_lowercase());
    guarded(format!("(|(mail={v})(mailAlternateAddress={v}))"), objectclass)
}

/// The filter of a login (doc/auth_smtp.8, "The login"): `(uid=<login>)`, escaped, inside the
/// objectClass guard. The login is not folded: the server's matching rule for `uid` decides.
pub fn uid_filter(login: &[u8], objectclass: Option<&str>) -> String {
    guarded(format!("(uid={})", escape(login)), objectclass)
}

/// `core` inside the `ldapobjectclass` guard, when there is one.
fn guarded(core: String, objectclass: Option<&str>) -> String {
    match objectclass {
        Some(oc) => format!("(&(objectClass={oc}){core})"),
        None => core,
    }
}

/// One probe of the candidate sequence: the local part to search for, and the dash and ext
/// qmail-local gets when it matches (doc/qmail-ldap.7, LOOKUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub local: Vec<u8>,
    pub dash: &'static str,
    pub ext: Vec<u8>,
}

/// The candidate sequence of doc/qmail-ldap.7 (LOOKUP) for a local part: itself, then (with
/// `dash_ext`) `prefix-catchall` for each prefix ending before one of the first [`DASH_EXT_LEVELS`]
/// dashes, longest first, then `catchall`.
pub fn candidates(local: &[u8], dash_ext: bool) -> Vec<Candidate> {
    let mut out = vec![Candidate { local: local.to_vec(), dash: "", ext: Vec::new() }];
    if dash_ext {
        let dashes: Vec<usize> = local
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == BREAK as u8)
            .map(|(i, _)| i)
            .take(DASH_EXT_LEVELS)
            .collect();
        for &pos in dashes.iter().rev() {
            if pos == 0 {
                continue;
            }
            let mut probe = local[..=pos].to_vec();
            probe.extend_from_slice(CATCH_ALL.as_bytes());
            out.push(Candidate { local: probe, dash: "-", ext: local[pos + 1..].to_vec() });
        }
    }
    out.push(Candidate { local: CATCH_ALL.as_bytes().to_vec(), dash: "-", ext: local.to_vec() });
    // A local part that is itself a catch-all form is probed once.
    let mut seen = Vec::new();
    out.retain(|c| {
        let key = c.local.to_ascii_lowercase();
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        let rows: &[(&[u8], &str)] = &[
            (b"joe", "joe"),
            (b"*", "\\2a"),
            (b"(", "\\28"),
            (b")", "\\29"),
            (b"\\", "\\5c"),
            (b"\0", "\\00"),
            (b"a*)(uid=*", "a\\2a\\29\\28uid=\\2a"),
            (b"*)(|(mail=*", "\\2a\\29\\28|\\28mail=\\2a"),
            (b"\\2a", "\\5c2a"),
            (b"a b", "a\\20b"),
            (b"\xc3\xa9", "\\c3\\a9"),
            (b"\xff\n\r", "\\ff\\0a\\0d"),
            (b"", ""),
        ];
        for (input, want) in rows {
            assert_eq!(escape(input), *want, "escape({:?})", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn filters_parse_and_keep_their_structure() {
        let hostile: &[&[u8]] =
            &[b"*@example.org", b"a)(mail=*@x", b"\\@x", b"\0@x", b"((((@x", b"x\xff@y"];
        for h in hostile {
            let f = address_filter(h, None);
            // Exactly the two assertion parentheses pairs plus the OR.
            assert_eq!(f.matches('(').count(), 3, "{f}");
            assert_eq!(f.matches(')').count(), 3, "{f}");
            assert!(!f.contains('*'), "{f}");
        }
        assert_eq!(
            address_filter(b"Joe@Example.ORG", Some("qmailUser")),
            "(&(objectClass=qmailUser)(|(mail=joe@example.org)(mailAlternateAddress=joe@example.org)))"
        );
        for h in [&b"*"[..], b"a)(uid=*", b"x\\0", b"\0", b"*)(|(uid=*"] {
            let f = uid_filter(h, None);
            assert_eq!((f.matches('(').count(), f.matches(')').count()), (1, 1), "{f}");
            assert!(!f.contains('*'), "{f}");
        }
        assert_eq!(uid_filter(b"Joe", Some("qmailUser")), "(&(objectClass=qmailUser)(uid=Joe))");
        assert_eq!(uid_filter(b"a)(b\\\0", None), r"(uid=a\29\28b\5c\00)");
    }

    fn locals(c: &[Candidate]) -> Vec<String> {
        c.iter().map(|c| String::from_utf8_lossy(&c.local).into_owned()).collect()
    }

    #[test]
    fn candidate_table() {
        let rows: &[(&str, &[&str])] = &[
            ("joe", &["joe", "catchall"]),
            ("a-b", &["a-b", "a-catchall", "catchall"]),
            (
                "a-b-c-d-e-f",
                &[
                    "a-b-c-d-e-f",
                    "a-b-c-d-catchall",
                    "a-b-c-catchall",
                    "a-b-catchall",
                    "a-catchall",
                    "catchall",
                ],
            ),
            ("-a", &["-a", "catchall"]),
            ("a-", &["a-", "a-catchall", "catchall"]),
            ("catchall", &["catchall"]),
            ("", &["", "catchall"]),
        ];
        for (local, want) in rows {
            assert_eq!(locals(&candidates(local.as_bytes(), true)), *want, "{local}");
        }
        assert_eq!(locals(&candidates(b"a-b-c", false)), ["a-b-c", "catchall"]);
        let c = candidates(b"list-confirm-1f2e", true);
        assert_eq!((c[1].dash, c[1].ext.as_slice()), ("-", &b"1f2e"[..]));
        assert_eq!((c[2].dash, c[2].ext.as_slice()), ("-", &b"confirm-1f2e"[..]));
        assert_eq!((c[3].dash, c[3].ext.as_slice()), ("-", &b"list-confirm-1f2e"[..]));
        assert_eq!((c[0].dash, c[0].ext.as_slice()), ("", &b""[..]));
    }
}
