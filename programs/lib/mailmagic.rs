//! mailmagic: the `%HEADER%` block of reply and warning texts (upstream `mailmagic.c`,
//! doc/qmail-reply.8, doc/qmail-quotawarn.8), shared by qmail-reply and qmail-quotawarn, and the
//! header scan of an incoming message.
//!
//! A text that starts with a `%HEADER%` line carries header fields up to the first empty line;
//! only `From:`, `Subject:`, `Content-Type:`, `Content-Transfer-Encoding:` and `X-...` pass
//! (with their continuation lines), everything else is dropped so the program keeps control of
//! `To:`, `Precedence:` and the rest. `%SUBJECT%` expands to the first line of the original
//! subject, cleaned of control characters and bounded, so a hostile subject cannot inject a
//! header line. Sans-I/O: bytes in, bytes out; [`read_header`] bounds what it reads.

use std::io::{self, BufRead};

/// The most header bytes read from an incoming message.
pub const MAX_HEADER: usize = 64 * 1024;
/// The longest subject copied into a reply.
pub const MAX_SUBJECT: usize = 200;

/// One header field: its lowercased name and its full text (lines ending in LF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub text: Vec<u8>,
}

/// Split `text` into the allowed fields of its `%HEADER%` block and the body.
pub fn split(text: &[u8]) -> (Vec<Field>, &[u8]) {
    let Some(rest) = text.strip_prefix(b"%HEADER%") else {
        return (Vec::new(), text);
    };
    let rest = rest.strip_prefix(b"\r").unwrap_or(rest);
    let Some(rest) = rest.strip_prefix(b"\n") else {
        return (Vec::new(), text);
    };
    let (fields, body) = fields(rest);
    let allowed = fields.into_iter().filter(|f| is_allowed(&f.name)).collect();
    (allowed, body)
}

fn is_allowed(name: &[u8]) -> bool {
    matches!(name, b"from" | b"subject" | b"content-type" | b"content-transfer-encoding")
        || name.starts_with(b"x-")
}

/// A line of a generated header: always written, or written unless the `%HEADER%` block
/// has a field of that (lowercase) name.
pub enum Line<'a> {
    Always(Vec<u8>),
    Unless(&'a [u8], Vec<u8>),
}

/// The header of a generated message: `lines` in order (each `Unless` dropped when the
/// template's `fields` has that field), then the template's fields.
pub fn header(lines: Vec<Line<'_>>, fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        match line {
            Line::Always(l) => out.extend_from_slice(&l),
            Line::Unless(name, l) if !fields.iter().any(|f| f.name == name) => {
                out.extend_from_slice(&l)
            }
            Line::Unless(..) => {}
        }
    }
    for f in fields {
        out.extend_from_slice(&f.text);
    }
    out
}

/// Parse header fields up to the first empty line (or the end); the rest is the body. A
/// line that is neither a field nor a continuation is dropped.
pub fn fields(data: &[u8]) -> (Vec<Field>, &[u8]) {
    let mut out: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let end = data[pos..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        pos = end;
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            break;
        }
        let mut text = bare.to_vec();
        text.push(b'\n');
        if matches!(bare[0], b' ' | b'\t') {
            if let Some(last) = out.last_mut() {
                last.text.extend_from_slice(&text);
            }
            continue;
        }
        match bare.iter().position(|&b| b == b':') {
            Some(i) if i > 0 && bare[..i].iter().all(|&b| b.is_ascii_graphic()) => {
                out.push(Field { name: bare[..i].to_ascii_lowercase(), text })
            }
            _ => {}
        }
    }
    (out, &data[pos.min(data.len())..])
}

/// The value of a field: after the colon, unfolded, trimmed.
pub fn value(f: &Field) -> Vec<u8> {
    let colon = f.text.iter().position(|&b| b == b':').map_or(f.text.len(), |i| i + 1);
    let v: Vec<u8> =
        f.text[colon..].iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
    v.trim_ascii().to_vec()
}

/// Read an incoming message's header, at most [`MAX_HEADER`] bytes (the rest is ignored).
pub fn read_header(r: &mut impl BufRead) -> io::Result<Vec<Field>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = io::Read::take(&mut *r, (MAX_HEADER - data.len()) as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 || line == b"\n" || line == b"\r\n" {
            break;
        }
        data.extend_from_slice(&line);
        if data.len() >= MAX_HEADER {
            break;
        }
    }
    Ok(fields(&data).0)
}

/// `%SUBJECT%`: the first line of the original subject, control characters removed, at most
/// [`MAX_SUBJECT`] bytes (cut at a character boundary); `Your Mail` when there is none.
pub fn subject(header: &[Field]) -> Vec<u8> {
    let Some(f) = header.iter().find(|f| f.name == b"subject") else {
        return b"Your Mail".to_vec();
    };
    let colon = f.text.iter().position(|&b| b == b':').map_or(0, |i| i + 1);
    let first = f.text[colon..].split(|&b| b == b'\n').next().unwrap_or_default();
    let clean: Vec<u8> = first.iter().copied().filter(|b| !b.is_ascii_control()).collect();
    let mut s = clean.trim_ascii().to_vec();
    if s.len() > MAX_SUBJECT {
        let mut cut = MAX_SUBJECT;
        while cut > 0 && (s[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() {
        b"Your Mail".to_vec()
    } else {
        s
    }
}

/// Replace every `%SUBJECT%` in `text` with `subject`.
pub fn expand(text: &[u8], subject: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"%SUBJECT%";
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(KEY) {
            out.extend_from_slice(subject);
            i += KEY.len();
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_defaults_give_way_to_template_fields() {
        let (fields, _) = split(b"%HEADER%\nSubject: mine\nTo: evil@x\n\nbody");
        let h = header(
            vec![
                Line::Unless(b"from", b"From: <d@x>\n".to_vec()),
                Line::Always(b"To: <t@x>\n".to_vec()),
                Line::Unless(b"subject", b"Subject: default\n".to_vec()),
            ],
            &fields,
        );
        assert_eq!(h, b"From: <d@x>\nTo: <t@x>\nSubject: mine\n");
    }

    #[test]
    fn header_blocks() {
        let text = b"%HEADER%\nFrom: Me <me@x>\nTo: evil@x\nSubject: Away\n  still away\nPrecedence: bulk\nX-Note: hi\nnot a field\n\nBody\n";
        let (f, body) = split(text);
        let names: Vec<&[u8]> = f.iter().map(|f| f.name.as_slice()).collect();
        assert_eq!(names, [&b"from"[..], b"subject", b"x-note"]);
        assert_eq!(f[1].text, b"Subject: Away\n  still away\n");
        assert_eq!(body, b"Body\n");
        let rows: &[&[u8]] = &[b"plain text\n", b"%HEADER% x\nFrom: a\n\nb", b"", b"%HEADER%"];
        for t in rows {
            assert_eq!(split(t), (Vec::new(), *t));
        }
        assert_eq!(split(b"%HEADER%\n").1, b"");
        assert_eq!(split(b"%HEADER%\nFrom: a\n").0.len(), 1);
    }

    #[test]
    fn subjects() {
        let rows: &[(&[u8], &[u8])] = &[
            (b"Subject: hello\n\n", b"hello"),
            (b"Subject: hello\n world\n\n", b"hello"),
            (b"Subject:\n\n", b"Your Mail"),
            (b"X: y\n\n", b"Your Mail"),
            (b"Subject: a\rBcc: x\n\n", b"aBcc: x"),
            (b"Subject: a\x00b\x1bc\n\n", b"abc"),
        ];
        for (h, want) in rows {
            let (f, _) = fields(h);
            assert_eq!(subject(&f), *want, "{:?}", String::from_utf8_lossy(h));
        }
        let long = format!("Subject: {}\n\n", "\u{e9}".repeat(300));
        let s = subject(&fields(long.as_bytes()).0);
        assert!(s.len() <= MAX_SUBJECT && std::str::from_utf8(&s).is_ok());
        assert_eq!(expand(b"Re: %SUBJECT% (%SUBJECT%)%SUBJ", b"x"), b"Re: x (x)%SUBJ");
    }

    #[test]
    fn bounded_header_read() {
        let mut big = b"X: ".to_vec();
        big.extend(vec![b'a'; 10 * MAX_HEADER]);
        let f = read_header(&mut &big[..]).unwrap();
        assert!(f.iter().map(|f| f.text.len()).sum::<usize>() <= MAX_HEADER + 1);
        let f = read_header(&mut &b"A: 1\nPrecedence: Bulk\r\n\r\nB: 2\n"[..]).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(value(&f[1]), b"Bulk");
    }
}
