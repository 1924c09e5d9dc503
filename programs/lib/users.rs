//! users: the fixed user assignments of `users/assign` and their database `users/cdb`
//! (doc/qmail-users.5, upstream `qmail-newu.c`, `qmail-lspawn.c`, `qmail-users(5)`).
//!
//! - [`parse`] reads `users/assign` (bytes in, records out, every line bounded). qmail-newu
//!   turns the result into `users/cdb` with [`Assign::records`].
//! - [`lookup`] finds the assignment of a local part in `users/cdb`, as qmail-lspawn and
//!   qmail-verify do: the exact key first, then wildcard prefixes from the longest down.
//!
//! The database format is upstream's, so a `users/cdb` made by either side works with the
//! other:
//!
//! - exact line `=local:...`: key `!` + lowercase(local) + `\0`;
//! - wildcard line `+prefix:...`: key `!` + lowercase(prefix), no `\0`;
//! - value: user, uid, gid, home, dash and ext (or pre) joined by `\0`, no trailing `\0`;
//! - key `` (empty), written last: the distinct last characters of the non-empty wildcard
//!   prefixes ("wildchars"); lookups only try a prefix ending in one of them.
//!
//! Parse, don't validate: an [`Assignment`] has numeric uid and gid; a line whose uid or gid is
//! not a decimal number is a format error here, where upstream stores it verbatim and reads 0.
//! Policy (uid 0 is never delivered to, the home must exist) stays with the programs that
//! switch to the user.

use crate::cdb::{CdbError, Reader};
use std::fmt;
use std::io::{self, BufRead, Read};
use std::path::PathBuf;

/// The text file, relative to the installation root.
pub const ASSIGN: &str = "users/assign";
/// The database made from it by qmail-newu.
pub const CDB: &str = "users/cdb";
/// The temporary file qmail-newu builds before renaming it onto [`CDB`].
pub const CDB_TMP: &str = "users/cdb.tmp";

/// The longest line of `users/assign`, newline included.
pub const MAX_LINE: usize = 64 * 1024;

/// Where a local part is delivered: the fields of an assign line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The user the delivery runs as (used for logs and `$USER`).
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// `-` to put between the user's `.qmail` and the extension, or empty.
    pub dash: String,
    /// The extension: `ext` of an exact line, `pre` + rest of the local part for a wildcard.
    pub ext: String,
}

/// One line of `users/assign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `=local:...`: exactly this local part (stored lowercased).
    Exact { local: String, to: Assignment },
    /// `+prefix:...`: every local part starting with `prefix` (stored lowercased).
    Wildcard { prefix: String, to: Assignment },
}

/// A parsed `users/assign`: its lines in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assign {
    pub lines: Vec<Line>,
}

/// Why `users/assign` cannot be used.
#[derive(Debug)]
pub enum AssignError {
    /// Line `line` (counting from 1) is malformed.
    Format {
        line: usize,
        reason: &'static str,
    },
    Io(io::Error),
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssignError::Format { line, reason } => {
                write!(f, "bad format in {ASSIGN} line {line}: {reason}")
            }
            AssignError::Io(e) => write!(f, "unable to read {ASSIGN}: {e}"),
        }
    }
}

impl std::error::Error for AssignError {}

/// Read `users/assign` from `input` up to its `.` line.
///
/// Bad format: a line longer than [`MAX_LINE`], containing NUL or invalid UTF-8, not starting
/// with `=` or `+`, without a `:` after the local part or prefix, with fewer than six fields
/// after it, or with a uid or gid that is not a decimal `u32`; and end of input before the
/// `.` line (a last line without newline counts as cut off, as upstream). Anything after the
/// sixth field's `:` and anything after the `.` line is ignored.
pub fn parse(mut input: impl BufRead) -> Result<Assign, AssignError> {
    let mut assign = Assign::default();
    let mut buf = Vec::new();
    let mut number = 0usize;
    loop {
        number += 1;
        buf.clear();
        // one byte over the limit tells a long line from one that just fits
        (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(AssignError::Io)?;
        let format = |reason| AssignError::Format { line: number, reason };
        if buf.first() == Some(&b'.') {
            return Ok(assign);
        }
        if buf.len() > MAX_LINE {
            return Err(format("line too long"));
        }
        if buf.last() != Some(&b'\n') {
            return Err(format("end of file before the \".\" line"));
        }
        assign.lines.push(parse_line(&buf).map_err(format)?);
    }
}

/// One line, newline included.
pub fn parse_line(line: &[u8]) -> Result<Line, &'static str> {
    if line.contains(&0) {
        return Err("NUL byte");
    }
    let line = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
    let (kind, rest) = match line.as_bytes().first() {
        Some(b'=') => (b'=', &line[1..]),
        Some(b'+') => (b'+', &line[1..]),
        _ => return Err("line does not start with = or +"),
    };
    let (name, fields) = rest.split_once(':').ok_or("no colon")?;
    // six fields, each ended by a colon; what follows the sixth colon is ignored
    let parts: Vec<&str> = fields.splitn(7, ':').collect();
    let [user, uid, gid, home, dash, ext, _ignored] = parts[..] else {
        return Err("fewer than 7 colons");
    };
    let to = Assignment {
        user: user.to_string(),
        uid: number(uid).ok_or("uid is not a number")?,
        gid: number(gid).ok_or("gid is not a number")?,
        home: PathBuf::from(home),
        dash: dash.to_string(),
        ext: ext.to_string(),
    };
    let name = name.to_ascii_lowercase();
    Ok(if kind == b'+' {
        Line::Wildcard { prefix: name, to }
    } else {
        Line::Exact { local: name, to }
    })
}

impl Assign {
    /// The cdb records of `users/cdb`, in file order, the wildchars record last.
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut wildchars = Vec::new();
        let mut records = Vec::with_capacity(self.lines.len() + 1);
        for line in &self.lines {
            let (key, to) = match line {
                Line::Exact { local, to } => (exact_key(local), to),
                Line::Wildcard { prefix, to } => {
                    if let Some(&last) = prefix.as_bytes().last() {
                        if !wildchars.contains(&last) {
                            wildchars.push(last);
                        }
                    }
                    (wild_key(prefix.as_bytes()), to)
                }
            };
            records.push((key, encode(to)));
        }
        records.push((Vec::new(), wildchars));
        records
    }
}

fn exact_key(local: &str) -> Vec<u8> {
    let mut key = wild_key(local.as_bytes());
    key.push(0);
    key
}

fn wild_key(prefix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 2);
    key.push(b'!');
    key.extend(prefix.iter().map(u8::to_ascii_lowercase));
    key
}

fn encode(to: &Assignment) -> Vec<u8> {
    let (uid, gid) = (to.uid.to_string(), to.gid.to_string());
    let fields: [&[u8]; 6] = [
        to.user.as_bytes(),
        uid.as_bytes(),
        gid.as_bytes(),
        to.home.as_os_str().as_encoded_bytes(),
        to.dash.as_bytes(),
        to.ext.as_bytes(),
    ];
    fields.join(&0)
}

/// A decimal `u32`: digits only, no sign, no blanks, no overflow.
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Why `users/cdb` could not be searched: a temporary failure for the caller.
#[derive(Debug)]
pub enum LookupError {
    Cdb(CdbError),
    /// The database has no wildchars record: it was not made by qmail-newu.
    NoWildchars,
    /// A value is not six `\0`-separated fields with numeric uid and gid in UTF-8.
    BadRecord,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::Cdb(e) => write!(f, "unable to read {CDB}: {e}"),
            LookupError::NoWildchars => write!(f, "{CDB} has no wildchars record"),
            LookupError::BadRecord => write!(f, "{CDB} holds a malformed record"),
        }
    }
}

impl std::error::Error for LookupError {}

impl From<CdbError> for LookupError {
    fn from(e: CdbError) -> Self {
        LookupError::Cdb(e)
    }
}

/// The assignment of `local` in `users/cdb`, or `None` when no line covers it.
///
/// Case-insensitive, as upstream: the key is `!` + lowercase(local) + `\0`; failing that, for
/// i = len(local) down to 0, the prefix key `!` + lowercase(local[..i]), tried only when i is
/// 0 (the catch-all `+:` line) or the prefix's last character is a wildchar. A wildcard hit
/// appends the unmatched rest of `local`, in its original case, to `ext`. A local part with a
/// NUL byte has no assignment.
pub fn lookup(reader: &Reader, local: &str) -> Result<Option<Assignment>, LookupError> {
    if local.contains('\0') {
        return Ok(None);
    }
    let wildchars = reader.get(b"")?.ok_or(LookupError::NoWildchars)?;
    let key = exact_key(local);
    if let Some(value) = reader.get(&key)? {
        return decode(&value, b"").map(Some);
    }
    let key = &key[..key.len() - 1];
    for i in (1..=key.len()).rev() {
        let last = key[i - 1];
        if i > 1 && !wildchars.iter().any(|w| w.to_ascii_lowercase() == last) {
            continue;
        }
        if let Some(value) = reader.get(&key[..i])? {
            return decode(&value, &local.as_bytes()[i - 1..]).map(Some);
        }
    }
    Ok(None)
}

/// A stored value, with `rest` appended to its ext field.
fn decode(value: &[u8], rest: &[u8]) -> Result<Assignment, LookupError> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| LookupError::BadRecord);
    let number =
        |b: &[u8]| std::str::from_utf8(b).ok().and_then(number).ok_or(LookupError::BadRecord);
    let fields: Vec<&[u8]> = value.split(|&b| b == 0).collect();
    let [user, uid, gid, home, dash, ext] = fields[..] else {
        return Err(LookupError::BadRecord);
    };
    Ok(Assignment {
        user: text(user)?,
        uid: number(uid)?,
        gid: number(gid)?,
        home: PathBuf::from(text(home)?),
        dash: text(dash)?,
        ext: text(&[ext, rest].concat())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::Writer;
    use std::fs;
    use std::path::Path;

    fn to(user: &str, uid: u32, home: &str, dash: &str, ext: &str) -> Assignment {
        Assignment {
            user: user.into(),
            uid,
            gid: uid + 1,
            home: home.into(),
            dash: dash.into(),
            ext: ext.into(),
        }
    }

    fn format_error(input: &[u8]) -> (usize, &'static str) {
        match parse(input) {
            Err(AssignError::Format { line, reason }) => (line, reason),
            other => panic!("{:?}: expected a format error, got {other:?}", input),
        }
    }

    #[test]
    fn good_files() {
        let rows: &[(&[u8], Vec<Line>)] = &[
            (b".\n", vec![]),
            (b".", vec![]),
            (b".anything\ngarbage without colon\n", vec![]),
            (
                b"=Joe:joe:1000:1001:/home/joe:::\n.\n",
                vec![Line::Exact { local: "joe".into(), to: to("joe", 1000, "/home/joe", "", "") }],
            ),
            (
                b"+Ab-:alias:7:8:/var/qmail/alias:-:pre:ignored\r\n.\n",
                vec![Line::Wildcard {
                    prefix: "ab-".into(),
                    to: to("alias", 7, "/var/qmail/alias", "-", "pre"),
                }],
            ),
            (
                b"+:alias:7:8:/a:-::\n=:u:0:1:/:::\n.\n",
                vec![
                    Line::Wildcard { prefix: "".into(), to: to("alias", 7, "/a", "-", "") },
                    Line::Exact { local: "".into(), to: to("u", 0, "/", "", "") },
                ],
            ),
        ];
        for (input, want) in rows {
            let got = parse(*input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&got.lines, want, "{input:?}");
        }
    }

    #[test]
    fn hostile_files() {
        let long = [b"=a:b:1:2:/".as_slice(), &[b'x'; MAX_LINE], b":::\n.\n"].concat();
        let rows: &[(&[u8], usize, &str)] = &[
            (b"", 1, "end of file"),
            (b"\n", 1, "does not start"),
            (b"=joe:joe:1:2:/h:::\n", 2, "end of file"),
            (b"=joe:joe:1:2:/h:::\n.", 0, ""),
            (b"=joe:joe:1:2:/h:::", 1, "end of file"),
            (b"=joe:joe:1:2:/h::\n.\n", 1, "fewer than 7"),
            (b"=joe\n.\n", 1, "no colon"),
            (b":joe:1:2:/h:::\n.\n", 1, "does not start"),
            (b"joe:joe:1:2:/h:::\n.\n", 1, "does not start"),
            (b"=jo\0e:joe:1:2:/h:::\n.\n", 1, "NUL"),
            (b"=joe:joe:1:2:/h:::\0\n.\n", 1, "NUL"),
            (b"=joe:joe:x:2:/h:::\n.\n", 1, "uid"),
            (b"=joe:joe::2:/h:::\n.\n", 1, "uid"),
            (b"=joe:joe:-1:2:/h:::\n.\n", 1, "uid"),
            (b"=joe:joe:+1:2:/h:::\n.\n", 1, "uid"),
            (b"=joe:joe: 1:2:/h:::\n.\n", 1, "uid"),
            (b"=joe:joe:4294967296:2:/h:::\n.\n", 1, "uid"),
            (b"=joe:joe:1:2x:/h:::\n.\n", 1, "gid"),
            (b"=j\xffe:joe:1:2:/h:::\n.\n", 1, "UTF-8"),
            (b"=a:a:1:2:/:::\n=b:b:1:2:/::\n.\n", 2, "fewer than 7"),
            (&long, 1, "too long"),
        ];
        for &(input, line, reason) in rows {
            if line == 0 {
                assert!(parse(input).is_ok(), "{input:?}");
                continue;
            }
            let (got_line, got_reason) = format_error(input);
            assert_eq!(got_line, line, "{input:?}: {got_reason}");
            assert!(got_reason.contains(reason), "{input:?}: {got_reason} lacks {reason}");
        }
        // a line that just fits is fine
        let fits = [b"=a:b:1:2:/".as_slice(), &[b'x'; MAX_LINE - 14], b":::\n.\n"].concat();
        assert_eq!(parse(fits.as_slice()).unwrap().lines.len(), 1);
        assert!(parse(&[b'='; 10 * MAX_LINE][..]).is_err());
    }

    #[test]
    fn records_are_upstreams_format() {
        let assign = parse(
            &b"=Joe:joe:1:2:/h/joe:-:x:\n+Ab-:alias:7:8:/a:-:pre:\n+B-:b:1:1:/b:::\n+:c:1:1:/c:::\n+qX:q:1:1:/q:::\n.\n"[..],
        )
        .unwrap();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"!joe\0", b"joe\x001\x002\x00/h/joe\x00-\x00x"),
            (b"!ab-", b"alias\x007\x008\x00/a\x00-\x00pre"),
            (b"!b-", b"b\x001\x001\x00/b\x00\x00"),
            (b"!", b"c\x001\x001\x00/c\x00\x00"),
            (b"!qx", b"q\x001\x001\x00/q\x00\x00"),
            (b"", b"-x"),
        ];
        let got = assign.records();
        let got: Vec<(&[u8], &[u8])> = got.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(got, want);
    }

    fn db(dir: &Path, records: &[(Vec<u8>, Vec<u8>)]) -> Reader {
        let target = dir.join("cdb");
        let mut w = Writer::create(&dir.join("cdb.tmp"), 0o644).unwrap();
        for (k, v) in records {
            w.add(k, v).unwrap();
        }
        w.finish(&target).unwrap();
        Reader::open(&target).unwrap().unwrap()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qmail-users-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lookup_order() {
        let d = tempdir("lookup");
        let assign = parse(
            &b"\
=joe:joe:1000:1000:/home/joe:::
=joe:second:1:1:/nope:::
+joe-:joe:1000:1000:/home/joe:-::
+joe-list-:list:2000:2000:/home/list:-:l-:
+ab:ab:3:3:/ab:-:x:
+:alias:7:7:/var/qmail/alias:-::
=Mixed:mixed:4:4:/m:::
.
"[..],
        )
        .unwrap();
        let r = db(&d, &assign.records());
        type Row<'a> = Option<(&'a str, u32, &'a str)>;
        let row = |user, uid, ext| Some((user, uid, ext));
        let rows: &[(&str, Row)] = &[
            // exact beats every wildcard, the first duplicate wins
            ("joe", row("joe", 1000, "")),
            ("JOE", row("joe", 1000, "")),
            ("mixed", row("mixed", 4, "")),
            ("MiXeD", row("mixed", 4, "")),
            // wildcards: longest prefix, rest appended in its original case
            ("joe-", row("joe", 1000, "")),
            ("joe-foo", row("joe", 1000, "foo")),
            ("Joe-Foo", row("joe", 1000, "Foo")),
            ("joe-list-", row("list", 2000, "l-")),
            ("joe-list-x-y", row("list", 2000, "l-x-y")),
            ("joe-lis", row("joe", 1000, "lis")),
            ("ab", row("ab", 3, "x")),
            ("abc", row("ab", 3, "xc")),
            // the catch-all gets the whole local part
            ("nobody", row("alias", 7, "nobody")),
            ("joex", row("alias", 7, "joex")),
            ("", row("alias", 7, "")),
            ("a\0b", None),
        ];
        for (local, want) in rows {
            let got = lookup(&r, local).unwrap();
            let got = got.as_ref().map(|a| (a.user.as_str(), a.uid, a.ext.as_str()));
            assert_eq!(&got, want, "{local:?}");
        }
        let joe = lookup(&r, "joe-x").unwrap().unwrap();
        assert_eq!(
            joe,
            Assignment {
                user: "joe".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/joe".into(),
                dash: "-".into(),
                ext: "x".into(),
            }
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prefixes_need_a_wildchar() {
        let d = tempdir("wild");
        // wildcard `+ab` stored, but the wildchars record does not name `b`: never tried
        let records = vec![
            (b"!ab".to_vec(), b"ab\x003\x003\x00/ab\x00-\x00".to_vec()),
            (Vec::new(), b"-".to_vec()),
        ];
        let r = db(&d, &records);
        assert_eq!(lookup(&r, "abc").unwrap(), None);
        // an upstream-made database with an uppercase wildchar still matches
        let records = vec![
            (b"!ab".to_vec(), b"ab\x003\x003\x00/ab\x00-\x00".to_vec()),
            (Vec::new(), b"B".to_vec()),
        ];
        let r = db(&d, &records);
        assert_eq!(lookup(&r, "abc").unwrap().unwrap().ext, "c");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hostile_databases() {
        let d = tempdir("hostile");
        let r = db(&d, &[]);
        assert!(matches!(lookup(&r, "joe"), Err(LookupError::NoWildchars)));
        let v = |v: &[u8]| vec![(b"!joe\0".to_vec(), v.to_vec()), (vec![], vec![])];
        for bad in [
            &b""[..],
            b"joe\x001\x002\x00/h\x00",
            b"joe\x001\x002\x00/h\x00\x00\x00",
            b"joe\x00x\x002\x00/h\x00\x00",
            b"joe\x001\x00\x00/h\x00\x00",
            b"joe\x0099999999999\x002\x00/h\x00\x00",
            b"j\xffe\x001\x002\x00/h\x00\x00",
        ] {
            let r = db(&d, &v(bad));
            assert!(matches!(lookup(&r, "joe"), Err(LookupError::BadRecord)), "{bad:?}");
        }
        let r = db(&d, &v(b"joe\x001\x002\x00/h\x00\x00"));
        assert_eq!(lookup(&r, "joe").unwrap().unwrap().uid, 1);
        assert_eq!(lookup(&r, "other").unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
