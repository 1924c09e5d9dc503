//! tcprules: ucspi-tcp's access rules — the text format, its compiler, and the cdb lookup.
//!
//! The text format is tcprules'(1): one `address:instructions` per line, `#` lines, blank
//! lines and lines without a colon ignored, trailing spaces and tabs trimmed. Instructions are
//! `allow` or `deny` followed by any number of `,VAR=<q>value<q>`, where `<q>` is any one byte
//! that also closes the value. A plain IP address (no `=`, no `@`) may hold one range:
//! `1.2.3.37-53` becomes 17 keys, `10.2-3.` two prefix keys; the upper bound is capped at 255.
//!
//! [`compile`] turns the text into the records tcprules writes: the address as key, the data a
//! run of NUL-terminated records, `D` for deny and `+VAR=value` per variable, in line order.
//! [`write_cdb`] stores them atomically. [`lookup`] asks a rules cdb about a peer in the order
//! of rules.c (ucspi-tcp 0.88), [`keys`] being that order on its own:
//!
//! 1. `INFO@IP`, 2. `INFO@=HOST`, 3. `IP`, 4. `=HOST`, 5. the IP cut after each `.` (and, for
//!    IPv6, after each `:`), longest first, 6. `=` + each host suffix starting at a dot,
//!    longest first, 7. `=` alone (peers with a host name), 8. the empty key; no key: allow.
//!
//! IPv6: the key is the address as `TCPREMOTEIP` shows it (RFC 5952, lower case, `::1`), and
//! its prefixes end at each `:` (at least two bytes long), as in the ucspi-tcp IPv6 patch; so
//! `2001:db8:` covers `2001:db8::1` and `2001:db8:5::7`. Because an IPv6 address contains
//! colons, the address of a rule ends at the first colon followed by `allow` or `deny` (the
//! IPv6 patch's rule): `::1:allow` is a rule for `::1`. For every line upstream tcprules
//! accepts the result is the same; upstream refuses such lines.
//!
//! Differences from upstream tcprules, all on input it would not be given in practice: a line
//! longer than [`MAX_LINE`] bytes is an error rather than read whole; the qmail-ldap fork's
//! `-VAR` record (unset) is understood by [`decode`] but never written.

use crate::cdb::{self, CdbError};
use std::fmt;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// The longest line [`compile`] reads, newline included.
pub const MAX_LINE: usize = 1 << 20;

/// One compiled rule: the key (an address form) and its data.
pub type Record = (Vec<u8>, Vec<u8>);

#[derive(Debug)]
pub enum CompileError {
    /// tcprules' "unable to parse this line": the 1-based line number and the trimmed line.
    Parse {
        line: usize,
        text: Vec<u8>,
    },
    /// A line longer than [`MAX_LINE`].
    TooLong {
        line: usize,
    },
    Io(io::Error),
}

impl CompileError {
    /// tcprules' exit code: 100 for bad input, 111 for I/O trouble.
    pub fn code(&self) -> u8 {
        match self {
            CompileError::Parse { .. } | CompileError::TooLong { .. } => crate::exit::PERM,
            CompileError::Io(_) => crate::exit::TEMP,
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Parse { line, text } => {
                write!(f, "unable to parse line {line}: {}", String::from_utf8_lossy(text))
            }
            CompileError::TooLong { line } => {
                write!(f, "line {line} is longer than {MAX_LINE} bytes")
            }
            CompileError::Io(e) => write!(f, "unable to read input: {e}"),
        }
    }
}

impl std::error::Error for CompileError {}

/// Compile rules text into records, in file order.
pub fn compile(input: impl Read) -> Result<Vec<Record>, CompileError> {
    let mut input = io::BufReader::new(input);
    let mut records = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let limit = MAX_LINE as u64 + 1;
        (&mut input).take(limit).read_until(b'\n', &mut line).map_err(CompileError::Io)?;
        if line.is_empty() {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(CompileError::TooLong { line: number });
        }
        compile_line(&line, &mut records)
            .map_err(|text| CompileError::Parse { line: number, text })?;
    }
    Ok(records)
}

/// Compile one line (with or without its newline), appending its records. `Err` holds the
/// trimmed line.
fn compile_line(line: &[u8], records: &mut Vec<Record>) -> Result<(), Vec<u8>> {
    if line.first().is_some_and(|&c| c == b'#' || c == b'\n') {
        return Ok(());
    }
    let end = line.iter().rposition(|c| !b"\n \t".contains(c)).map_or(0, |i| i + 1);
    let line = &line[..end];
    let bad = || line.to_vec();
    if !line.contains(&b':') {
        return Ok(());
    }
    // the address ends at the first colon followed by allow or deny (IPv6 addresses hold colons)
    let colon = (0..line.len())
        .find(|&i| {
            line[i] == b':'
                && (line[i + 1..].starts_with(b"allow") || line[i + 1..].starts_with(b"deny"))
        })
        .ok_or_else(bad)?;
    let address = &line[..colon];
    let mut rest = &line[colon + 1..];
    let mut data = Vec::new();
    if let Some(r) = rest.strip_prefix(b"deny") {
        data.extend_from_slice(b"D\0");
        rest = r;
    } else if let Some(r) = rest.strip_prefix(b"allow") {
        rest = r;
    }
    while let Some(r) = rest.strip_prefix(b",") {
        // ,NAME=<q>value<q>
        let eq = r.iter().position(|&c| c == b'=').ok_or_else(bad)?;
        let (&quote, after) = r[eq + 1..].split_first().ok_or_else(bad)?;
        let close = after.iter().position(|&c| c == quote).ok_or_else(bad)?;
        data.push(b'+');
        data.extend_from_slice(&r[..=eq]);
        data.extend_from_slice(&after[..close]);
        data.push(0);
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    expand(address, &data, records).ok_or_else(bad)
}

/// Add the records of one address, expanding a range in a plain IP address. `None` when a
/// range bound is not a number.
fn expand(address: &[u8], data: &[u8], records: &mut Vec<Record>) -> Option<()> {
    let plain = !address.contains(&b'=') && !address.contains(&b'@');
    let Some(dash) = address.iter().position(|&c| c == b'-').filter(|_| plain) else {
        records.push((address.to_vec(), data.to_vec()));
        return Some(());
    };
    let left = address[..dash].iter().rposition(|&c| c == b'.').map_or(0, |i| i + 1);
    let right =
        address[dash + 1..].iter().position(|&c| c == b'.').map_or(address.len(), |i| dash + 1 + i);
    let bottom = number(&address[left..dash])?;
    let top = number(&address[dash + 1..right])?.min(255);
    for n in bottom..=top {
        let mut key = address[..left].to_vec();
        key.extend_from_slice(n.to_string().as_bytes());
        key.extend_from_slice(&address[right..]);
        records.push((key, data.to_vec()));
    }
    Some(())
}

/// A range bound as tcprules reads it: decimal digits only, empty is 0, and (like djb's
/// scan_ulong on a 64-bit machine) arithmetic wraps.
fn number(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n.wrapping_mul(10).wrapping_add(u64::from(c - b'0')))
    })
}

/// Store `records` as the cdb `target`, built in `tmp` (same filesystem) and renamed.
pub fn write_cdb(records: &[Record], target: &Path, tmp: &Path) -> io::Result<()> {
    let mut writer = cdb::Writer::create(tmp, 0o644)?;
    for (key, data) in records {
        writer.add(key, data)?;
    }
    writer.finish(target)
}

/// The keys to try for a peer, in order. `ip` is the address as `TCPREMOTEIP` shows it;
/// `host` and `info` are `TCPREMOTEHOST` and `TCPREMOTEINFO` when known.
pub fn keys(ip: &[u8], host: Option<&[u8]>, info: Option<&[u8]>) -> Vec<Vec<u8>> {
    let cat = |parts: &[&[u8]]| parts.concat();
    let mut keys = Vec::new();
    if let Some(info) = info {
        keys.push(cat(&[info, b"@", ip]));
        if let Some(host) = host {
            keys.push(cat(&[info, b"@=", host]));
        }
    }
    keys.push(ip.to_vec());
    if let Some(host) = host {
        keys.push(cat(&[b"=", host]));
    }
    for len in (1..=ip.len()).rev() {
        let last = ip[len - 1];
        if last == b'.' || (last == b':' && len > 1) {
            keys.push(ip[..len].to_vec());
        }
    }
    if let Some(host) = host {
        for (i, _) in host.iter().enumerate().filter(|(_, &c)| c == b'.') {
            keys.push(cat(&[b"=", &host[i..]]));
        }
        keys.push(b"=".to_vec());
    }
    keys.push(Vec::new());
    keys
}

/// What a rule says about a peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The key that matched; `None` when no rule did (the default: allow).
    pub rule: Option<Vec<u8>>,
    pub deny: bool,
    /// Environment changes, to apply in order after the `TCP*` variables.
    pub env: Vec<EnvChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    /// `+NAME=value`. The name is never empty and never holds `=` or NUL.
    Set(Vec<u8>, Vec<u8>),
    /// `-NAME` (the qmail-ldap fork's unset).
    Unset(Vec<u8>),
}

/// Decode a rule's data the way tcpserver does: NUL-terminated records (an unterminated tail
/// is ignored), `D` deny, `+NAME=value` set (ignored without `=` or with an empty name),
/// `-NAME` unset, anything else ignored.
pub fn decode(key: &[u8], data: &[u8]) -> Decision {
    let mut decision = Decision { rule: Some(key.to_vec()), ..Decision::default() };
    let mut records = data.split(|&c| c == 0);
    // the piece after the last NUL is not a record
    let _ = records.next_back();
    for record in records {
        match record.split_first() {
            Some((b'D', _)) => decision.deny = true,
            Some((b'+', var)) => {
                if let Some(eq) = var.iter().position(|&c| c == b'=').filter(|&eq| eq > 0) {
                    let change = EnvChange::Set(var[..eq].to_vec(), var[eq + 1..].to_vec());
                    decision.env.push(change);
                }
            }
            Some((b'-', name)) if !name.is_empty() && !name.contains(&b'=') => {
                decision.env.push(EnvChange::Unset(name.to_vec()));
            }
            _ => {}
        }
    }
    decision
}

/// Ask the rules cdb about a peer: the first key of [`keys`] present decides.
pub fn lookup(
    rules: &cdb::Reader,
    ip: &[u8],
    host: Option<&[u8]>,
    info: Option<&[u8]>,
) -> Result<Decision, CdbError> {
    for key in keys(ip, host, info) {
        if let Some(data) = rules.get(&key)? {
            return Ok(decode(&key, &data));
        }
    }
    Ok(Decision::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(text: &[u8]) -> Result<Vec<(String, String)>, String> {
        let show = |b: &[u8]| String::from_utf8_lossy(b).replace('\0', "|");
        compile(text)
            .map(|r| r.iter().map(|(k, v)| (show(k), show(v))).collect())
            .map_err(|e| e.to_string())
    }

    fn rec(pairs: &[(&str, &str)]) -> Result<Vec<(String, String)>, String> {
        Ok(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn compiler_table() {
        type Case<'a> = (&'a [u8], &'a [(&'a str, &'a str)]);
        let ok: &[Case] = &[
            (b"", &[]),
            (b"# comment\n\n   \nno colon here\n", &[]),
            (b"1.2.3.4:allow\n", &[("1.2.3.4", "")]),
            (b"1.2.3.4:allow", &[("1.2.3.4", "")]),
            (b"1.2.3.4:allow \t \n", &[("1.2.3.4", "")]),
            (b"x:deny,A=\"b\"\n", &[("x", "D|+A=b|")]),
            (b":allow,RELAYCLIENT=\"\"\n", &[("", "+RELAYCLIENT=|")]),
            (b"1.2.3.4:allow,X=\"1\",Y=/a\"b/\n", &[("1.2.3.4", "+X=1|+Y=a\"b|")]),
            (b"1:allow,=\"\"\n", &[("1", "+=|")]),
            (b"1:allow,A=xyzx\n", &[("1", "+A=yz|")]),
            (b"1:allow,A=B=\"cB\n", &[("1", "+A==\"c|")]),
            (b"1:deny,X=\"a,b:c\"\n", &[("1", "D|+X=a,b:c|")]),
            (b"::1:allow\n", &[("::1", "")]),
            (b"2001:db8::/x:deny\n", &[("2001:db8::/x", "D|")]),
            (b"=:allow\n:deny\n", &[("=", ""), ("", "D|")]),
            (b"joe@=host.example:allow\n", &[("joe@=host.example", "")]),
            (
                b"1.2.3.4-6:allow,R=\"1\"\n",
                &[("1.2.3.4", "+R=1|"), ("1.2.3.5", "+R=1|"), ("1.2.3.6", "+R=1|")],
            ),
            (b"10.2-3.:deny\n", &[("10.2.", "D|"), ("10.3.", "D|")]),
            (b"1.2.3.-1:allow\n", &[("1.2.3.0", ""), ("1.2.3.1", "")]),
            (b"1.2.3.254-999:allow\n", &[("1.2.3.254", ""), ("1.2.3.255", "")]),
            (b"1.2.3.9-5:allow\n", &[]),
            (b"1-2:allow\n", &[("1", ""), ("2", "")]),
            (b"=a-b.example:allow\n", &[("=a-b.example", "")]),
            (b"a-b@1.2.3.4:allow\n", &[("a-b@1.2.3.4", "")]),
            (b"a\0b:allow,V=\"x\0y\"\n", &[("a|b", "+V=x|y|")]),
            (b" #x:allow\n", &[(" #x", "")]),
        ];
        for (text, want) in ok {
            assert_eq!(compiled(text), rec(want), "input {:?}", String::from_utf8_lossy(text));
        }
        let bad: &[&[u8]] = &[
            b"a: allow\n",
            b"a:allowx\n",
            b"a:permit\n",
            b"a:\n",
            b"a:allow,X\n",
            b"a:allow,X=\n",
            b"a:allow,X=\"open\n",
            b"a:allow,X=\"\"junk\n",
            b"a:allow,\n",
            b"a:deny X\n",
            b"1.2.3.4:allow\r\n",
            b"1.2.3.x-5:allow\n",
            b"1.2.3.4-y:allow\n",
            b"1.2.3.4-5-6:allow\n",
            b"2001:db8::1-5:allow\n",
            b"a:b:c\n",
            b"a:allow\r:deny\n",
            b"1:allow,A=B=\"c\"\n",
        ];
        for text in bad {
            let got = compile(*text);
            assert!(
                matches!(got, Err(CompileError::Parse { line: 1, .. })),
                "input {:?} gave {got:?}",
                String::from_utf8_lossy(text)
            );
        }
        let err = compile(&b"1:allow\n2:allow\nthree:nope\n"[..]).unwrap_err();
        assert_eq!(err.to_string(), "unable to parse line 3: three:nope");
        assert_eq!(err.code(), 100);
    }

    #[test]
    fn huge_lines_are_bounded() {
        let mut long = vec![b'1'; MAX_LINE - 7];
        long.extend_from_slice(b":allow\n");
        assert_eq!(compile(&long[..]).unwrap().len(), 1);
        let mut huge = vec![b'1'; MAX_LINE * 3];
        huge.extend_from_slice(b":allow\n");
        assert!(matches!(compile(&huge[..]), Err(CompileError::TooLong { line: 1 })));
        // a range never yields more than 256 keys however wide
        let wide = b"1.2.3.0-99999999999999999999999999:allow\n";
        assert!(compile(&wide[..]).unwrap().len() <= 256);
    }

    #[test]
    fn key_order() {
        let show = |k: Vec<Vec<u8>>| {
            k.into_iter().map(|k| String::from_utf8(k).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(
            show(keys(b"10.1.2.3", Some(b"mx.example.org"), Some(b"joe"))),
            [
                "joe@10.1.2.3",
                "joe@=mx.example.org",
                "10.1.2.3",
                "=mx.example.org",
                "10.1.2.",
                "10.1.",
                "10.",
                "=.example.org",
                "=.org",
                "=",
                ""
            ]
        );
        assert_eq!(
            show(keys(b"10.1.2.3", None, None)),
            ["10.1.2.3", "10.1.2.", "10.1.", "10.", ""]
        );
        assert_eq!(
            show(keys(b"1.2.3.4", None, Some(b"i"))),
            ["i@1.2.3.4", "1.2.3.4", "1.2.3.", "1.2.", "1.", ""]
        );
        assert_eq!(
            show(keys(b"2001:db8::1", None, None)),
            ["2001:db8::1", "2001:db8::", "2001:db8:", "2001:", ""]
        );
        assert_eq!(show(keys(b"::1", None, None)), ["::1", "::", ""]);
        assert_eq!(show(keys(b"", Some(b"."), None)), ["", "=.", "=.", "=", ""]);
    }

    #[test]
    fn decode_table() {
        let set = |n: &str, v: &str| EnvChange::Set(n.into(), v.into());
        let cases: &[(&[u8], bool, Vec<EnvChange>)] = &[
            (b"", false, vec![]),
            (b"D\0", true, vec![]),
            (b"D", false, vec![]),
            (b"+A=1\0+B=\0+A=2\0", false, vec![set("A", "1"), set("B", ""), set("A", "2")]),
            (b"+A=1\0+B=2", false, vec![set("A", "1")]),
            (b"+NOEQ\0+=x\0?junk\0\0D\0", true, vec![]),
            (b"+A=b=c\0-A\0-\0", false, vec![set("A", "b=c"), EnvChange::Unset(b"A".to_vec())]),
        ];
        for (data, deny, env) in cases {
            let d = decode(b"k", data);
            assert_eq!((d.deny, &d.env), (*deny, env), "data {data:?}");
            assert_eq!(d.rule.as_deref(), Some(&b"k"[..]));
        }
    }

    #[test]
    fn lookup_through_a_cdb() {
        let dir = std::env::temp_dir().join(format!("qmail-tcprules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = b"10.1.2.3:allow,WHO=\"exact\"\n10.1.:deny\n10.:allow,WHO=\"ten\"\n:allow,WHO=\"all\"\n";
        let records = compile(&text[..]).unwrap();
        write_cdb(&records, &dir.join("r.cdb"), &dir.join("r.tmp")).unwrap();
        let reader = cdb::Reader::open(&dir.join("r.cdb")).unwrap().unwrap();
        let who = |ip: &str| {
            let d = lookup(&reader, ip.as_bytes(), None, None).unwrap();
            let value = d.env.iter().find_map(|c| match c {
                EnvChange::Set(n, v) if n == b"WHO" => {
                    Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => None,
            });
            (d.deny, value)
        };
        assert_eq!(who("10.1.2.3"), (false, Some("exact".into())));
        assert_eq!(who("10.1.2.4"), (true, None));
        assert_eq!(who("10.2.0.1"), (false, Some("ten".into())));
        assert_eq!(who("192.0.2.1"), (false, Some("all".into())));
        write_cdb(&[], &dir.join("e.cdb"), &dir.join("e.tmp")).unwrap();
        let empty = cdb::Reader::open(&dir.join("e.cdb")).unwrap().unwrap();
        assert_eq!(lookup(&empty, b"1.2.3.4", None, None).unwrap(), Decision::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
