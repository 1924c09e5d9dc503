//! dotqmail: the `.qmail` file format (doc/dot-qmail.5) and the header
//! lines qmail-local writes (doc/qmail-local.8, DESCRIPTION).
//!
//! Sans-I/O: bytes in, typed values out. [`candidates`] is the lookup sequence for an
//! extension as a pure function (the caller opens the files); [`parse`] turns the text of a
//! `.qmail` file (or the default delivery, "aliasempty") into a list of [`Instruction`]s, and
//! refuses a file that qmail-local must not act on (first line blank, a NUL byte, file or
//! program lines in a forward-only file) before anything is delivered; [`return_path`],
//! [`delivered_to`] and [`crate::address::quote_local`] build the header lines. Files are bounded by
//! [`MAX_FILE`]; every error here is one the user can fix, so callers treat it as temporary.

use crate::address::{Address, AddressError};
use std::fmt;

/// The largest `.qmail` file qmail-local reads; a bigger one is a temporary failure.
pub const MAX_FILE: u64 = 1 << 20;

/// One line of a `.qmail` file, trailing spaces and tabs removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// Empty after stripping.
    Blank,
    /// `#...`
    Comment,
    /// `|command`: the command for `/bin/sh -c`, exactly as written.
    Program(&'a [u8]),
    /// `./path/` or `/path/`: a Maildir.
    Maildir(&'a [u8]),
    /// `./path` or `/path`: an mbox file.
    Mbox(&'a [u8]),
    /// `&address`, or a line that starts with nothing special: a forward.
    Forward(&'a [u8]),
    /// `+list`: forwards only from here on (undocumented upstream, kept).
    ForwardOnly,
    /// `+` followed by anything else: ignored, as upstream.
    Ignored,
}

/// Classify one line (without its newline).
pub fn parse_line(line: &[u8]) -> Line<'_> {
    let end = line.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(0, |i| i + 1);
    let line = &line[..end];
    match line.first() {
        None => Line::Blank,
        Some(b'#') => Line::Comment,
        Some(b'|') => Line::Program(&line[1..]),
        Some(b'.' | b'/') if line.ends_with(b"/") => Line::Maildir(line),
        Some(b'.' | b'/') => Line::Mbox(line),
        Some(b'+') if &line[1..] == b"list" => Line::ForwardOnly,
        Some(b'+') => Line::Ignored,
        Some(b'&') => Line::Forward(&line[1..]),
        Some(_) => Line::Forward(line),
    }
}

/// One delivery to make, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Program(Vec<u8>),
    Maildir(Vec<u8>),
    Mbox(Vec<u8>),
    Forward(Address),
}

/// Why a `.qmail` text cannot be used. Line numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DotError {
    FirstLineBlank,
    /// A NUL byte in a line that is not a comment: it cannot be passed to a program, a path or
    /// an envelope.
    Nul(usize),
    /// A file or program line in a file that is forward-only (owner-execute bit or `+list`).
    ForwardOnly(usize),
    /// `&` with nothing after it.
    EmptyForward(usize),
    /// A forward address longer than qmail-queue accepts.
    ForwardTooLong(usize),
}

impl fmt::Display for DotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DotError::FirstLineBlank => f.write_str("first line of .qmail file is blank (#4.2.1)"),
            DotError::Nul(n) => write!(f, "line {n} of .qmail file contains a NUL byte (#4.7.0)"),
            DotError::ForwardOnly(n) => write!(
                f,
                "line {n} of .qmail file is a file or program delivery, but the file is \
                 forward-only (x bit set or +list) (#4.7.0)"
            ),
            DotError::EmptyForward(n) => {
                write!(f, "line {n} of .qmail file forwards to an empty address (#4.7.0)")
            }
            DotError::ForwardTooLong(n) => {
                write!(f, "line {n} of .qmail file forwards to an address too long (#4.7.0)")
            }
        }
    }
}

impl std::error::Error for DotError {}

/// Parse a whole `.qmail` text (lines end in LF; the last one need not). `forward_only` is
/// the owner-execute bit of the file. Everything is checked before the caller delivers
/// anything, so a bad line never leaves the instructions above it half done.
pub fn parse(text: &[u8], forward_only: bool) -> Result<Vec<Instruction>, DotError> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut forward_only = forward_only;
    let mut out = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let line = parse_line(raw);
        if line == Line::Blank && n == 1 {
            return Err(DotError::FirstLineBlank);
        }
        if !matches!(line, Line::Blank | Line::Comment) && raw.contains(&0) {
            return Err(DotError::Nul(n));
        }
        match line {
            Line::Blank | Line::Comment | Line::Ignored => {}
            Line::ForwardOnly => forward_only = true,
            Line::Program(_) | Line::Maildir(_) | Line::Mbox(_) if forward_only => {
                return Err(DotError::ForwardOnly(n));
            }
            Line::Program(p) => out.push(Instruction::Program(p.to_vec())),
            Line::Maildir(p) => out.push(Instruction::Maildir(p.to_vec())),
            Line::Mbox(p) => out.push(Instruction::Mbox(p.to_vec())),
            Line::Forward([]) => return Err(DotError::EmptyForward(n)),
            Line::Forward(a) => match Address::new(a) {
                Ok(a) => out.push(Instruction::Forward(a)),
                Err(AddressError::TooLong) => return Err(DotError::ForwardTooLong(n)),
                Err(AddressError::Nul) => return Err(DotError::Nul(n)),
            },
        }
    }
    Ok(out)
}

/// The extension as it appears in file names: ASCII-lowercased, `.` replaced by `:` (so an
/// extension can never name `..` or a dot file of its own). Same length as `ext`.
pub fn safe_ext(ext: &[u8]) -> Vec<u8> {
    ext.iter().map(|&b| if b == b'.' { b':' } else { b.to_ascii_lowercase() }).collect()
}

/// A `.qmail` file name to try, and the value of `DEFAULT` if it is the one found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: Vec<u8>,
    pub default: Option<Vec<u8>>,
}

/// The lookup sequence for `dash` and `ext`, first to last: `.qmail<dash><safeext>`, then for
/// each `-` in the extension from the right `.qmail<dash><prefix-through-dash>default`, then
/// `.qmail<dash>default`. `DEFAULT` is the part of the (original) extension that `default`
/// stands for; an exact name that itself ends in `default` sets it too, as upstream.
///
/// The search stops at the first file that exists; a missing file (ENOENT) goes on to the
/// next name.
pub fn candidates(dash: &[u8], ext: &[u8]) -> Vec<Candidate> {
    let safe = safe_ext(ext);
    let name = |tail: &[&[u8]]| {
        let mut n = b".qmail".to_vec();
        n.extend_from_slice(dash);
        for t in tail {
            n.extend_from_slice(t);
        }
        n
    };
    let mut out = Vec::new();
    let exact_default =
        safe.ends_with(b"default").then(|| ext[ext.len() - b"default".len()..].to_vec());
    out.push(Candidate { name: name(&[&safe]), default: exact_default });
    for i in (0..=safe.len()).rev() {
        if i == 0 || safe[i - 1] == b'-' {
            out.push(Candidate {
                name: name(&[&safe[..i], b"default"]),
                default: Some(ext[i..].to_vec()),
            });
        }
    }
    out
}

/// The two files that change the forwarding sender (doc/dot-qmail.5, OWNER FILES):
/// `.qmail<dash><safeext>-owner` and `.qmail<dash><safeext>-owner-default`.
pub fn owner_names(dash: &[u8], ext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut base = b".qmail".to_vec();
    base.extend_from_slice(dash);
    base.extend_from_slice(&safe_ext(ext));
    let owner = [&base[..], b"-owner"].concat();
    let owner_default = [&base[..], b"-owner-default"].concat();
    (owner, owner_default)
}

/// The forwarding sender (`NEWSENDER`): the original sender, except that a non-empty sender
/// other than `#@[]` becomes `LOCAL-owner@DOMAIN` when an `-owner` file exists, and
/// `LOCAL-owner-@DOMAIN-@[]` (a VERP sender) when an `-owner-default` file exists as well.
pub fn new_sender(
    sender: &[u8],
    local: &[u8],
    domain: &[u8],
    owner: bool,
    owner_default: bool,
) -> Vec<u8> {
    if sender.is_empty() || sender == b"#@[]" || !owner {
        return sender.to_vec();
    }
    if owner_default {
        [local, b"-owner-@", domain, b"-@[]"].concat()
    } else {
        [local, b"-owner@", domain].concat()
    }
}

/// `Delivered-To: LOCAL@DOMAIN\n`, newlines in the address turned into `_`.
pub fn delivered_to(local: &[u8], domain: &[u8]) -> Vec<u8> {
    let addr: Vec<u8> = [local, b"@", domain]
        .concat()
        .into_iter()
        .map(|b| if b == b'\n' { b'_' } else { b })
        .collect();
    [b"Delivered-To: ", &addr[..], b"\n"].concat()
}

/// `Return-Path: <SENDER>\n` with the local part quoted when needed
/// ([`crate::address::quote_address`]) and newlines turned into `_`. The null sender gives
/// `Return-Path: <>`.
pub fn return_path(sender: &[u8]) -> Vec<u8> {
    let quoted = crate::address::quote_address(sender);
    let quoted: Vec<u8> = quoted.into_iter().map(|b| if b == b'\n' { b'_' } else { b }).collect();
    [b"Return-Path: <", &quoted[..], b">\n"].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let rows: &[(&[u8], Line)] = &[
            (b"", Line::Blank),
            (b" \t ", Line::Blank),
            (b"# a comment", Line::Comment),
            (b"#", Line::Comment),
            (b"|preline procmail", Line::Program(b"preline procmail")),
            (b"| echo $SENDER; rm -rf / `x` \t", Line::Program(b" echo $SENDER; rm -rf / `x`")),
            (b"|", Line::Program(b"")),
            (b"./Maildir/", Line::Maildir(b"./Maildir/")),
            (b"/var/mail/joe/  ", Line::Maildir(b"/var/mail/joe/")),
            (b"./Mailbox", Line::Mbox(b"./Mailbox")),
            (b"/var/spool/mail/joe", Line::Mbox(b"/var/spool/mail/joe")),
            (b".", Line::Mbox(b".")),
            (b"/", Line::Maildir(b"/")),
            (b"&joe@example.org", Line::Forward(b"joe@example.org")),
            (b"&", Line::Forward(b"")),
            (b"joe@example.org", Line::Forward(b"joe@example.org")),
            (b" joe", Line::Forward(b" joe")),
            (b"\0x", Line::Forward(b"\0x")),
            (b"+list", Line::ForwardOnly),
            (b"+list ", Line::ForwardOnly),
            (b"+lists", Line::Ignored),
            (b"+", Line::Ignored),
        ];
        for (raw, want) in rows {
            assert_eq!(&parse_line(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn whole_files() {
        let got = parse(b"# hi\n./Maildir/\n\n|cat\n&a@b\nc@d\n+junk\n./mbox", false).unwrap();
        assert_eq!(
            got,
            vec![
                Instruction::Maildir(b"./Maildir/".to_vec()),
                Instruction::Program(b"cat".to_vec()),
                Instruction::Forward(Address::new("a@b").unwrap()),
                Instruction::Forward(Address::new("c@d").unwrap()),
                Instruction::Mbox(b"./mbox".to_vec()),
            ]
        );
        assert_eq!(parse(b"", false), Err(DotError::FirstLineBlank));
        assert_eq!(parse(b"\n./Maildir/\n", false), Err(DotError::FirstLineBlank));
        assert_eq!(parse(b" \t\n", false), Err(DotError::FirstLineBlank));
        assert_eq!(parse(b"#\n\n\n", false), Ok(vec![]));
        assert_eq!(parse(b"#x\n|a\0b\n", false), Err(DotError::Nul(2)));
        assert_eq!(parse(b"# \0 in a comment is fine\n", false), Ok(vec![]));
        assert_eq!(parse(b"&a\0b\n", false), Err(DotError::Nul(1)));
        assert_eq!(parse(b"a@b\n&\n", false), Err(DotError::EmptyForward(2)));
        assert_eq!(parse(b"a@b\n|cat\n", true), Err(DotError::ForwardOnly(2)));
        assert_eq!(parse(b"a@b\n./Maildir/\n", true), Err(DotError::ForwardOnly(2)));
        assert_eq!(parse(b"./Maildir/\n+list\n./mbox\n", false), Err(DotError::ForwardOnly(3)));
        assert!(parse(b"a@b\n# ./Maildir/\n", true).is_ok());
        let long = [b"&".as_slice(), &[b'a'; 1003]].concat();
        assert_eq!(parse(&long, false), Err(DotError::ForwardTooLong(1)));
        // a huge program line is passed through whole
        let huge = [b"|".as_slice(), &[b';'; 200_000]].concat();
        assert_eq!(parse(&huge, false).unwrap(), vec![Instruction::Program(vec![b';'; 200_000])]);
    }

    fn names(dash: &str, ext: &str) -> Vec<(String, Option<String>)> {
        candidates(dash.as_bytes(), ext.as_bytes())
            .into_iter()
            .map(|c| {
                (
                    String::from_utf8(c.name).unwrap(),
                    c.default.map(|d| String::from_utf8(d).unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn lookup_sequence() {
        let d = |s: &str| Some(s.to_string());
        type Row<'a> = (&'a str, &'a str, &'a [(&'a str, Option<String>)]);
        let rows: &[Row] = &[
            ("", "", &[(".qmail", None), (".qmaildefault", d(""))]),
            ("-", "", &[(".qmail-", None), (".qmail-default", d(""))]),
            ("-", "a", &[(".qmail-a", None), (".qmail-default", d("a"))]),
            (
                "-",
                "a-",
                &[(".qmail-a-", None), (".qmail-a-default", d("")), (".qmail-default", d("a-"))],
            ),
            (
                "-",
                "Foo-Bar-baz",
                &[
                    (".qmail-foo-bar-baz", None),
                    (".qmail-foo-bar-default", d("baz")),
                    (".qmail-foo-default", d("Bar-baz")),
                    (".qmail-default", d("Foo-Bar-baz")),
                ],
            ),
            ("-", "x.y", &[(".qmail-x:y", None), (".qmail-default", d("x.y"))]),
            ("-", "../etc", &[(".qmail-::/etc", None), (".qmail-default", d("../etc"))]),
            (
                "-",
                "list-default",
                &[
                    (".qmail-list-default", d("default")),
                    (".qmail-list-default", d("default")),
                    (".qmail-default", d("list-default")),
                ],
            ),
            ("-joe-", "", &[(".qmail-joe-", None), (".qmail-joe-default", d(""))]),
        ];
        for (dash, ext, want) in rows {
            let want: Vec<(String, Option<String>)> =
                want.iter().map(|(n, d)| (n.to_string(), d.clone())).collect();
            assert_eq!(names(dash, ext), want, "dash {dash:?} ext {ext:?}");
        }
        // hostile: many dashes give one candidate per dash, all bounded by the input
        let ext = "-".repeat(1000);
        assert_eq!(candidates(b"-", ext.as_bytes()).len(), 1002);
        // bytes other than `.` and uppercase pass through; the default keeps the original
        let c = candidates(b"-", b"A\0\xff");
        assert_eq!(c[0].name, b".qmail-a\0\xff");
        assert_eq!(c[1].default.as_deref(), Some(&b"A\0\xff"[..]));
    }

    #[test]
    fn owner_and_new_sender() {
        assert_eq!(
            owner_names(b"-", b"List.x"),
            (b".qmail-list:x-owner".to_vec(), b".qmail-list:x-owner-default".to_vec())
        );
        let rows: &[(&str, bool, bool, &str)] = &[
            ("a@b", false, false, "a@b"),
            ("a@b", true, false, "joe-list-owner@example.org"),
            ("a@b", true, true, "joe-list-owner-@example.org-@[]"),
            ("a@b", false, true, "a@b"),
            ("", true, true, ""),
            ("#@[]", true, true, "#@[]"),
        ];
        for &(sender, o, od, want) in rows {
            let got = new_sender(sender.as_bytes(), b"joe-list", b"example.org", o, od);
            assert_eq!(String::from_utf8(got).unwrap(), want, "{sender} {o} {od}");
        }
    }

    #[test]
    fn header_lines() {
        let rows: &[(&[u8], &[u8])] = &[
            (b"", b"Return-Path: <>\n"),
            (b"joe@example.org", b"Return-Path: <joe@example.org>\n"),
            (b"#@[]", b"Return-Path: <#@[]>\n"),
            (b"noat", b"Return-Path: <noat>\n"),
            (b"@example.org", b"Return-Path: <\"\"@example.org>\n"),
            (b"a b@c", b"Return-Path: <\"a b\"@c>\n"),
            (b".a@c", b"Return-Path: <\".a\"@c>\n"),
            (b"a.@c", b"Return-Path: <\"a.\"@c>\n"),
            (b"a..b@c", b"Return-Path: <\"a..b\"@c>\n"),
            (b"a.b@c", b"Return-Path: <a.b@c>\n"),
            (b"x\"y\\z@c", b"Return-Path: <\"x\\\"y\\\\z\"@c>\n"),
            (b"a\nb@c", b"Return-Path: <\"a\\_b\"@c>\n"),
            (b"a@b@c", b"Return-Path: <\"a@b\"@c>\n"),
            (b"\xc3\xa9@c", b"Return-Path: <\"\xc3\xa9\"@c>\n"),
            (b"() { :;}; touch /tmp/x", b"Return-Path: <\"() { :;}; touch /tmp/x\">\n"),
            (b"!#$%&'*+-/=?^_`{|}~@c", b"Return-Path: <!#$%&'*+-/=?^_`{|}~@c>\n"),
        ];
        for (sender, want) in rows {
            assert_eq!(
                String::from_utf8_lossy(&return_path(sender)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(sender)
            );
        }
        assert_eq!(delivered_to(b"joe", b"example.org"), b"Delivered-To: joe@example.org\n");
        assert_eq!(delivered_to(b"j\noe", b"ex\n"), b"Delivered-To: j_oe@ex_\n");
    }
}
