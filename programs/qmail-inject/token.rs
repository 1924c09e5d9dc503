//! token: RFC 822 address lists for qmail-inject, as upstream's token822 reads them.
//!
//! Sans-I/O: bytes in, tokens out; [`addrlist`] walks a header field's address list, hands
//! every address to a callback (which qualifies it and notes it as a recipient), and returns
//! the field's tokens with the rewritten addresses; [`render`] writes them back as a header
//! field folded at commas. The parser is lenient where upstream is (two words in a row are two
//! addresses, a group may lack its `;`) and refuses what cannot be read: unbalanced quotes,
//! comments, literals or angle brackets, a stray `)`, `]` or `>`, and a group inside a group.
//! It never recurses, so hostile nesting cannot exhaust the stack; its input is bounded by the
//! caller (one header field).

/// One lexical token. Strings hold their content without delimiters or backslashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Atom(Vec<u8>),
    Quote(Vec<u8>),
    Literal(Vec<u8>),
    Comment(Vec<u8>),
    /// One of `. , @ < > : ;`
    Special(u8),
}

use Token::{Atom, Comment, Literal, Quote, Special};

/// The text cannot be read as an address list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unparsable;

/// The line length header fields are folded to.
const LINE_LEN: usize = 80;

fn is_special(b: u8) -> bool {
    matches!(b, b'.' | b',' | b'@' | b'<' | b'>' | b':' | b';')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_atom_byte(b: u8) -> bool {
    !is_space(b) && !is_special(b) && !matches!(b, b'(' | b'[' | b'"')
}

/// Split `s` into tokens. Whitespace (including the line breaks of folded fields) separates
/// tokens and is dropped.
pub fn tokenize(s: &[u8]) -> Result<Vec<Token>, Unparsable> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if is_space(b) {
            i += 1;
        } else if is_special(b) {
            out.push(Special(b));
            i += 1;
        } else {
            match b {
                b')' | b']' => return Err(Unparsable),
                b'(' => {
                    let (text, next) = delimited(s, i + 1, b'(', b')')?;
                    out.push(Comment(text));
                    i = next;
                }
                b'"' => {
                    let (text, next) = delimited(s, i + 1, 0, b'"')?;
                    out.push(Quote(text));
                    i = next;
                }
                b'[' => {
                    let (text, next) = delimited(s, i + 1, 0, b']')?;
                    out.push(Literal(text));
                    i = next;
                }
                _ => {
                    let mut text = Vec::new();
                    while i < s.len() && is_atom_byte(s[i]) {
                        if s[i] == b'\\' {
                            i += 1;
                            if i == s.len() {
                                break;
                            }
                        }
                        text.push(s[i]);
                        i += 1;
                    }
                    // an atom that could not be written back as one is a quoted string
                    let plain = text.iter().all(|&c| {
                        (33..=126).contains(&c) && is_atom_byte(c) && !b")]\\".contains(&c)
                    });
                    out.push(if plain { Atom(text) } else { Quote(text) });
                }
            }
        }
    }
    Ok(out)
}

/// The content of a quoted string, comment or literal starting at `i` (after its opening
/// delimiter), and the index after its closing one. `open` nests (comments only; 0 = none).
fn delimited(s: &[u8], mut i: usize, open: u8, close: u8) -> Result<(Vec<u8>, usize), Unparsable> {
    let mut text = Vec::new();
    let mut level = 1usize;
    loop {
        let &b = s.get(i).ok_or(Unparsable)?;
        i += 1;
        if b == b'\\' {
            let &next = s.get(i).ok_or(Unparsable)?;
            i += 1;
            text.push(next);
            continue;
        }
        if b == close {
            level -= 1;
            if level == 0 {
                return Ok((text, i));
            }
        } else if open != 0 && b == open {
            level += 1;
        }
        // nested comment delimiters are kept (and escaped when written back)
        text.push(b);
    }
}

/// Walk an address list, replacing each address with `rw(address)`. Returns the tokens of
/// the whole list. Display names, group names and comments are kept; comments inside an
/// address move after it; two addresses in a row without a comma get one.
pub fn addrlist(
    toks: Vec<Token>,
    rw: &mut dyn FnMut(Vec<Token>) -> Vec<Token>,
) -> Result<Vec<Token>, Unparsable> {
    let mut out = Vec::with_capacity(toks.len());
    let mut elem = Vec::new();
    let mut in_angle = false;
    let mut in_group = false;
    for t in toks {
        match (&t, in_angle) {
            (Special(b'<'), true) | (Special(b'>'), false) => return Err(Unparsable),
            (Special(b'<'), false) => {
                in_angle = true;
                elem.push(t);
            }
            (Special(b'>'), true) => {
                in_angle = false;
                elem.push(t);
            }
            (Special(b','), false) => {
                element(&mut out, std::mem::take(&mut elem), rw);
                out.push(t);
            }
            (Special(b';'), false) => {
                element(&mut out, std::mem::take(&mut elem), rw);
                out.push(t);
                in_group = false;
            }
            (Special(b':'), false) => {
                if in_group {
                    return Err(Unparsable);
                }
                // the group's name
                out.append(&mut elem);
                out.push(t);
                in_group = true;
            }
            _ => elem.push(t),
        }
    }
    if in_angle {
        return Err(Unparsable);
    }
    element(&mut out, elem, rw);
    Ok(out)
}

/// One element of a list (between commas): `phrase <addr>` or bare addresses. Angle brackets
/// are balanced here (checked by [`addrlist`]).
fn element(out: &mut Vec<Token>, elem: Vec<Token>, rw: &mut dyn FnMut(Vec<Token>) -> Vec<Token>) {
    // tokens since the last route address: a display name if a `<` follows
    let mut pending = Vec::new();
    let mut emitted = false;
    let mut iter = elem.into_iter();
    while let Some(t) = iter.next() {
        if t != Special(b'<') {
            pending.push(t);
            continue;
        }
        // `<a> b <c>`: upstream reads two addresses here, and so do we
        if emitted {
            out.push(Special(b','));
        }
        out.append(&mut pending);
        let mut addr = Vec::new();
        let mut comments = Vec::new();
        for t in iter.by_ref() {
            match t {
                Special(b'>') => break,
                Comment(_) => comments.push(t),
                _ => addr.push(t),
            }
        }
        out.push(Special(b'<'));
        out.extend(rw(addr));
        out.push(Special(b'>'));
        out.extend(comments);
        emitted = true;
    }
    bare(out, pending, emitted, rw);
}

/// Bare addresses: a new address starts wherever a word follows a word.
fn bare(
    out: &mut Vec<Token>,
    elem: Vec<Token>,
    mut emitted: bool,
    rw: &mut dyn FnMut(Vec<Token>) -> Vec<Token>,
) {
    let mut addr = Vec::new();
    let mut comments = Vec::new();
    let mut prev_word = false;
    let mut flush = |out: &mut Vec<Token>, addr: &mut Vec<Token>, comments: &mut Vec<Token>| {
        if !addr.is_empty() {
            if emitted {
                out.push(Special(b','));
            }
            out.extend(rw(std::mem::take(addr)));
            emitted = true;
        }
        out.append(comments);
    };
    for t in elem {
        match t {
            Comment(_) => comments.push(t),
            Atom(_) | Quote(_) | Literal(_) => {
                if prev_word {
                    flush(out, &mut addr, &mut comments);
                }
                addr.push(t);
                prev_word = true;
            }
            Special(_) => {
                addr.push(t);
                prev_word = false;
            }
        }
    }
    flush(out, &mut addr, &mut comments);
}

/// How addresses are completed: `@defaulthost` when there is no `@`, `.plusdomain` for a
/// host ending in `+`, `.defaultdomain` for a host without a dot.
#[derive(Debug, Clone)]
pub struct Qualify {
    host: Vec<Token>,
    domain: Vec<Token>,
    plus: Vec<Token>,
}

impl Qualify {
    pub fn new(
        defaulthost: &[u8],
        defaultdomain: &[u8],
        plusdomain: &[u8],
    ) -> Result<Self, Unparsable> {
        let with = |prefix: &[u8], s: &[u8]| tokenize(&[prefix, s].concat());
        Ok(Qualify {
            host: with(b"@", defaulthost)?,
            domain: with(b".", defaultdomain)?,
            plus: with(b".", plusdomain)?,
        })
    }

    /// Upstream's `rwgeneric`: strip a source route and a trailing `.` or `@`, then qualify.
    /// `<>` and `<x@[]>` are left alone.
    pub fn rewrite(&self, addr: &mut Vec<Token>) {
        if addr.is_empty() || addr.ends_with(&[Special(b'@'), Literal(Vec::new())]) {
            return;
        }
        if addr[0] == Special(b'@') {
            match addr.iter().position(|t| *t == Special(b':')) {
                Some(colon) => drop(addr.drain(..=colon)),
                None => addr.clear(),
            }
        }
        for extra in [b'.', b'@'] {
            if addr.last() == Some(&Special(extra)) {
                addr.pop();
            }
        }
        if addr.is_empty() {
            return;
        }
        if !addr.contains(&Special(b'@')) {
            addr.extend(self.host.iter().cloned());
        }
        if let Some(Atom(last)) = addr.last_mut() {
            if last.last() == Some(&b'+') {
                last.pop();
                addr.extend(self.plus.iter().cloned());
            }
        }
        let qualified = addr
            .iter()
            .rev()
            .take_while(|t| **t != Special(b'@'))
            .any(|t| matches!(t, Special(b'.') | Literal(_)));
        if !qualified {
            addr.extend(self.domain.iter().cloned());
        }
    }
}

/// The address as an envelope carries it: quotes and comments gone, literals in brackets.
pub fn unquote(addr: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in addr {
        match t {
            Atom(s) | Quote(s) => out.extend_from_slice(s),
            Literal(s) => {
                out.push(b'[');
                out.extend_from_slice(s);
                out.push(b']');
            }
            Special(c) => out.push(*c),
            Comment(_) => {}
        }
    }
    out
}

/// A command-line or `-f` address as tokens, as upstream's `quote2` then parse: the part
/// before the last `@` is one word, the part after it is tokenized.
pub fn arg_address(arg: &[u8]) -> Result<Vec<Token>, Unparsable> {
    let (local, domain) = qmail::address::split(arg);
    let mut toks = Vec::new();
    if !local.is_empty() {
        toks.push(if needs_quotes(local) { Quote(local.to_vec()) } else { Atom(local.to_vec()) });
    }
    if let Some(domain) = domain {
        toks.push(Special(b'@'));
        toks.extend(tokenize(domain)?);
    }
    Ok(toks)
}

pub use qmail::address::needs_quoting as needs_quotes;

pub use qmail::address::quote_address;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Comma,
    Colon,
    Left,
    Other,
}

fn kind(t: &Token) -> Kind {
    match t {
        Atom(_) | Quote(_) | Literal(_) | Comment(_) => Kind::Word,
        Special(b',') => Kind::Comma,
        Special(b':') => Kind::Colon,
        Special(b'<') => Kind::Left,
        Special(_) => Kind::Other,
    }
}

/// Upstream's spacing: after `:` and `,`, before `<`, and between two words.
fn needs_space(before: Kind, next: Kind) -> bool {
    match before {
        Kind::Colon | Kind::Comma => true,
        _ if next == Kind::Left => true,
        Kind::Word => next == Kind::Word,
        _ => false,
    }
}

fn push_token(out: &mut Vec<u8>, t: &Token) {
    let (open, s, close) = match t {
        Special(c) => {
            out.push(*c);
            return;
        }
        Atom(s) => {
            out.extend_from_slice(s);
            return;
        }
        Quote(s) => (b'"', s, b'"'),
        Literal(s) => (b'[', s, b']'),
        Comment(s) => (b'(', s, b')'),
    };
    out.push(open);
    for &b in s {
        if matches!(b, b'"' | b'[' | b']' | b'(' | b')' | b'\\' | b'\r' | b'\n') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(close);
}

/// A header field `name` (through its colon) followed by `toks`, folded after commas so that
/// lines stay within 80 bytes where the addresses allow, continuation lines indented by two
/// spaces, ending in LF.
pub fn render(name: &[u8], toks: &[Token]) -> Vec<u8> {
    // segments end after each comma
    let mut segments: Vec<Vec<u8>> = vec![name.to_vec()];
    let mut last = Kind::Colon;
    for t in toks {
        let k = kind(t);
        let seg = segments.last_mut().expect("segments is never empty");
        if needs_space(last, k) {
            seg.push(b' ');
        }
        push_token(seg, t);
        if k == Kind::Comma {
            segments.push(Vec::new());
        }
        last = k;
    }
    let mut out = Vec::new();
    let mut line = 0;
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 && line + seg.len() > LINE_LEN {
            out.extend_from_slice(b"\n ");
            line = 1;
        }
        out.extend_from_slice(seg);
        line += seg.len();
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Qualify {
        Qualify::new(b"mx.example.org", b"example.org", b"plus.example.org").unwrap()
    }

    /// Rewrite a field value; the recipients seen and the rendered field.
    fn run(value: &str) -> Result<(Vec<String>, String), Unparsable> {
        let qualify = q();
        let mut seen = Vec::new();
        let toks = tokenize(value.as_bytes())?;
        let out = addrlist(toks, &mut |mut a| {
            qualify.rewrite(&mut a);
            seen.push(String::from_utf8_lossy(&unquote(&a)).into_owned());
            a
        })?;
        Ok((seen, String::from_utf8_lossy(&render(b"To:", &out)).into_owned()))
    }

    #[test]
    fn address_lists() {
        let rows: &[(&str, &[&str], &str)] = &[
            ("a@b.c", &["a@b.c"], "To: a@b.c\n"),
            ("joe", &["joe@mx.example.org"], "To: joe@mx.example.org\n"),
            ("joe@host", &["joe@host.example.org"], "To: joe@host.example.org\n"),
            ("joe@host+", &["joe@host.plus.example.org"], "To: joe@host.plus.example.org\n"),
            ("joe+@h.x", &["joe+@h.x"], "To: joe+@h.x\n"),
            ("joe@[1.2.3.4]", &["joe@[1.2.3.4]"], "To: joe@[1.2.3.4]\n"),
            ("x@[]", &["x@[]"], "To: x@[]\n"),
            ("a@b.c, d@e.f", &["a@b.c", "d@e.f"], "To: a@b.c, d@e.f\n"),
            ("Joe Smith <joe@x.y>", &["joe@x.y"], "To: Joe Smith <joe@x.y>\n"),
            (
                "\"Smith, Joe\" <joe>",
                &["joe@mx.example.org"],
                "To: \"Smith, Joe\" <joe@mx.example.org>\n",
            ),
            ("joe@x.y (Joe Smith)", &["joe@x.y"], "To: joe@x.y (Joe Smith)\n"),
            ("joe (the (nested) one) @x.y", &["joe@x.y"], "To: joe@x.y (the \\(nested\\) one)\n"),
            (
                "friends: a@b.c, d@e.f;, g@h.i",
                &["a@b.c", "d@e.f", "g@h.i"],
                "To: friends: a@b.c, d@e.f;, g@h.i\n",
            ),
            ("undisclosed-recipients: ;", &[], "To: undisclosed-recipients: ;\n"),
            ("list: a@b.c", &["a@b.c"], "To: list: a@b.c\n"),
            ("a@b.c\n  ,\n\td@e.f\n", &["a@b.c", "d@e.f"], "To: a@b.c, d@e.f\n"),
            (
                "John Smith",
                &["John@mx.example.org", "Smith@mx.example.org"],
                "To: John@mx.example.org, Smith@mx.example.org\n",
            ),
            ("<@route,@r2:joe@x.y>", &["joe@x.y"], "To: <joe@x.y>\n"),
            ("<>", &[""], "To: <>\n"),
            ("a@b.c.", &["a@b.c"], "To: a@b.c\n"),
            ("a@", &["a@mx.example.org"], "To: a@mx.example.org\n"),
            ("\"joe q\"@x.y", &["joe q@x.y"], "To: \"joe q\"@x.y\n"),
            ("j\\\"o@x.y", &["j\"o@x.y"], "To: \"j\\\"o\"@x.y\n"),
            ("", &[], "To:\n"),
            (",,,", &[], "To: , , ,\n"),
            ("<a@b.c> <d@e.f>", &["a@b.c", "d@e.f"], "To: <a@b.c>, <d@e.f>\n"),
            ("<a@b.c> d@e.f", &["a@b.c", "d@e.f"], "To: <a@b.c>, d@e.f\n"),
        ];
        for &(value, rcpts, rendered) in rows {
            let (seen, text) = run(value).unwrap_or_else(|_| panic!("{value:?} unparsable"));
            assert_eq!(seen, rcpts, "{value:?}");
            assert_eq!(text, rendered, "{value:?}");
        }
    }

    #[test]
    fn unparsable_lists() {
        let long_open = "(".repeat(100_000);
        let rows: &[&str] = &[
            "\"unterminated",
            "(unterminated",
            "[unterminated",
            ")a",
            "]a",
            "a@b>",
            "<a@b",
            "<a<b>>",
            "g: h: a@b;",
            "\"q\\",
            &long_open,
        ];
        for value in rows {
            assert_eq!(run(value), Err(Unparsable), "{:?}", &value[..value.len().min(40)]);
        }
    }

    #[test]
    fn hostile_bytes_do_not_panic() {
        let mut nasty: Vec<Vec<u8>> = vec![
            vec![0; 1000],
            (0..=255).collect(),
            b"<<<<>>>>".repeat(1000),
            b"<a>".repeat(20_000),
            b"a:".repeat(1000),
            b";;;;".repeat(1000),
            b"@:@:@:".repeat(1000),
            b"\\".repeat(999),
            b"a b c d e f ".repeat(5000),
        ];
        nasty.push([b"\"".as_slice(), &[0xff; 100], b"\"@x"].concat());
        let qualify = q();
        for value in nasty {
            if let Ok(toks) = tokenize(&value) {
                let _ = addrlist(toks, &mut |mut a| {
                    qualify.rewrite(&mut a);
                    let _ = unquote(&a);
                    a
                })
                .map(|out| render(b"To:", &out));
            }
        }
    }

    #[test]
    fn eight_bit_and_control_atoms_become_quoted() {
        assert_eq!(tokenize(b"a\x01b").unwrap(), vec![Quote(b"a\x01b".to_vec())]);
        assert_eq!(tokenize("Jörg".as_bytes()).unwrap(), vec![Quote("Jörg".into())]);
        assert_eq!(tokenize(b"a\0b").unwrap(), vec![Quote(b"a\0b".to_vec())]);
    }

    #[test]
    fn folding_keeps_lines_short() {
        let list: Vec<String> = (0..20).map(|i| format!("user{i}@example.com")).collect();
        let (_, text) = run(&list.join(", ")).unwrap();
        for line in text.lines() {
            assert!(line.len() <= LINE_LEN, "{line:?}");
        }
        assert!(text.contains(",\n  user"), "{text}");
        // one address longer than a line still comes out whole
        let long = format!("{}@example.com", "x".repeat(200));
        let (_, text) = run(&long).unwrap();
        assert_eq!(text, format!("To: {long}\n"));
    }

    #[test]
    fn arguments_and_quoting() {
        let qualify = q();
        let rows: &[(&str, &str)] = &[
            ("joe", "joe@mx.example.org"),
            ("joe@host", "joe@host.example.org"),
            ("Joe Smith@x.y", "Joe Smith@x.y"),
            ("joe@host+", "joe@host.plus.example.org"),
            ("", ""),
            ("a@b@c.d", "a@b@c.d"),
        ];
        for &(arg, want) in rows {
            let mut a = arg_address(arg.as_bytes()).unwrap();
            qualify.rewrite(&mut a);
            assert_eq!(String::from_utf8_lossy(&unquote(&a)), want, "{arg:?}");
        }
        assert_eq!(arg_address(b"a@(b"), Err(Unparsable));
        assert_eq!(quote_address(b"joe@x.y"), b"joe@x.y");
        assert_eq!(quote_address(b"joe q@x.y"), b"\"joe q\"@x.y");
        assert_eq!(quote_address(b"a\"b"), b"\"a\\\"b\"");
        assert_eq!(quote_address(b""), b"");
    }
}
