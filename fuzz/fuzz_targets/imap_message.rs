//! Fuzz target: arbitrary bytes as a stored message through imapd's FETCH side: the MIME
//! scan, ENVELOPE, BODYSTRUCTURE and every kind of section, whole and partial.
//!
//! `cargo +nightly fuzz run imap_message`. The first byte picks a partial origin and
//! length. Checked invariants: nothing panics; RFC822.SIZE is the length of the message
//! converted to CRLF, and BODY[] sends exactly that; every literal holds the octets its
//! count announces; a partial is the slice of the whole section; parentheses of BODYSTRUCTURE
//! and ENVELOPE balance outside strings and literals.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::imap::message::{write_section, Section, SectionText, Structure};
use qmail::imap::write::Crlf;
use std::io::Cursor;

/// The octets of what write_section wrote: a literal's, checked against its count, or none
/// for `""`.
fn literal(written: &[u8]) -> Vec<u8> {
    if written == b"\"\"" {
        return Vec::new();
    }
    let close = written.iter().position(|&b| b == b'}').expect("a literal");
    let n: usize = std::str::from_utf8(&written[1..close]).unwrap().parse().unwrap();
    let bytes = &written[close + 3..];
    assert_eq!(bytes.len(), n);
    bytes.to_vec()
}

/// Parentheses balance, skipping quoted strings and literals.
fn balanced(out: &[u8]) -> bool {
    let (mut depth, mut i) = (0i64, 0);
    while i < out.len() {
        match out[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'"' => {
                i += 1;
                while out[i] != b'"' {
                    i += if out[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => {
                let close = i + out[i..].iter().position(|&b| b == b'}').unwrap();
                let n: usize = std::str::from_utf8(&out[i + 1..close]).unwrap().parse().unwrap();
                i = close + 2 + n;
            }
            _ => {}
        }
        if depth < 0 {
            return false;
        }
        i += 1;
    }
    depth == 0
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, message)) = data.split_first() else { return };
    let s = Structure::scan(message).unwrap();
    let mut whole = Vec::new();
    Crlf::new().convert(message, &mut whole);
    assert_eq!(s.size(), whole.len() as u64);

    let mut out = Vec::new();
    s.envelope(&mut out);
    assert!(balanced(&out));
    for extensible in [false, true] {
        out.clear();
        s.body_structure(extensible, &mut out);
        assert!(balanced(&out));
    }

    let fields = vec![b"Subject".to_vec(), b"content-type".to_vec()];
    let texts = [
        SectionText::Full,
        SectionText::Header,
        SectionText::Text,
        SectionText::Mime,
        SectionText::HeaderFields { not: false, fields: fields.clone() },
        SectionText::HeaderFields { not: true, fields },
    ];
    let parts: [&[u32]; 5] = [&[], &[1], &[2], &[1, 1], &[2, 1, 3]];
    for part in parts {
        for text in &texts {
            let section = Section { part: part.to_vec(), text: text.clone() };
            let mut file = Cursor::new(message);
            let mut out = Vec::new();
            write_section(&s, &mut file, &section, None, &mut out).unwrap();
            let full = literal(&out);
            if part.is_empty() && *text == SectionText::Full {
                assert_eq!(full, whole);
            }
            let origin = u32::from(first & 0x0f) * 7;
            let length = u32::from(first >> 4) + 1;
            out.clear();
            write_section(&s, &mut file, &section, Some((origin, length)), &mut out).unwrap();
            let lo = (origin as usize).min(full.len());
            let hi = (lo + length as usize).min(full.len());
            assert_eq!(literal(&out), &full[lo..hi]);
        }
    }
});
