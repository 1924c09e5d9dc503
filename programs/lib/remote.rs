//! remote: qmail-remote's output protocol (doc/qmail-remote.8, "Output"), written by qmail-remote
//! and read by qmail-rspawn, which turns it into one spawn report (doc/qmail-rspawn.8).
//!
//! The output is zero or more recipient reports (`r` accepted, `h` permanently rejected, `s`
//! temporarily rejected), then one message report (`K` accepted, `Z` temporary failure, `D`
//! permanent failure), each a letter, a text and a NUL. [`record`] makes one (a NUL inside
//! the text becomes `?`, so a text can never end a record early); [`rspawn_status`] is
//! qmail-rspawn's translation, upstream's `report()` in qmail-rspawn.c.

use crate::exit::Outcome;
use std::process::ExitStatus;

/// One record: `letter`, `text` with NULs made `?`, a NUL.
pub fn record(letter: u8, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(letter);
    out.extend(text.iter().map(|&b| if b == 0 { b'?' } else { b }));
    out.push(0);
    out
}

/// qmail-rspawn's report from qmail-remote's wait status and output.
pub fn rspawn_status(status: ExitStatus, output: &[u8]) -> Outcome {
    rspawn_code(status.code(), output)
}

/// The same from the exit code (`None`: killed by a signal).
///
/// - crashed: `Z`; exit 111: `Z`; any other nonzero exit: `D`; no output: `Z`;
/// - `res` is the first message report's letter (none: permanent); the letter given is `res`,
///   unless the first record is `s` (then `Z`) or `h` (then `D`);
/// - the text is the first record's; when the next record is a message report and `res` is
///   not better than the letter given, its text follows.
pub fn rspawn_code(code: Option<i32>, output: &[u8]) -> Outcome {
    match code {
        None => return Outcome::temp("qmail-remote crashed. (#4.3.0)\n"),
        Some(0) => {}
        Some(111) => return Outcome::temp("Unable to run qmail-remote. (#4.3.0)\n"),
        Some(_) => return Outcome::perm("Unable to run qmail-remote. (#5.3.0)\n"),
    }
    if output.is_empty() {
        return Outcome::temp("qmail-remote produced no output. (#4.3.0)\n");
    }
    // ranks: 1 success, 0 temporary, -1 permanent
    let records: Vec<&[u8]> = output.split(|&b| b == 0).collect();
    // a last piece without its NUL is not a record
    let complete = &records[..records.len() - 1];
    let res = complete
        .iter()
        .find_map(|r| match r.first() {
            Some(b'K') => Some(1),
            Some(b'Z') => Some(0),
            Some(b'D') => Some(-1),
            _ => None,
        })
        .unwrap_or(-1);
    let given = match output[0] {
        b's' => 0,
        b'h' => -1,
        _ => res,
    };
    let first = records[0];
    let mut text = first.get(1..).unwrap_or(b"").to_vec();
    if res <= given {
        if let Some(next) = complete.get(1) {
            if matches!(next.first(), Some(b'K' | b'Z' | b'D')) {
                text.extend_from_slice(&next[1..]);
            }
        }
    }
    match given {
        1 => Outcome::Success(text),
        0 => Outcome::Temp(text),
        _ => Outcome::Perm(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(code: Option<i32>, out: &[u8]) -> (u8, String) {
        let o = rspawn_code(code, out);
        (o.letter(), String::from_utf8_lossy(o.text()).into_owned())
    }

    #[test]
    fn records_cannot_be_cut_short() {
        assert_eq!(record(b'K', b"a\0b"), b"Ka?b\0");
        assert_eq!(record(b'r', b""), b"r\0");
    }

    #[test]
    fn every_row_of_the_translation() {
        let rows: &[(Option<i32>, &[u8], u8, &str)] = &[
            (None, b"r\0K1.2.3.4 ok\0", b'Z', "crashed"),
            (Some(111), b"", b'Z', "Unable to run"),
            (Some(1), b"", b'D', "Unable to run"),
            (Some(100), b"r\0K\0", b'D', "Unable to run"),
            (Some(0), b"", b'Z', "no output"),
            (Some(0), b"r\0K1.2.3.4 accepted message.\n\0", b'K', "1.2.3.4 accepted message.\n"),
            (Some(0), b"ZNo route. (#4.4.1)\n\0", b'Z', "No route. (#4.4.1)\n"),
            (Some(0), b"DNo host. (#5.1.2)\n\0", b'D', "No host. (#5.1.2)\n"),
            (
                Some(0),
                b"h1.2.3.4 says no.\n\0DGiving up.\n\0",
                b'D',
                "1.2.3.4 says no.\nGiving up.\n",
            ),
            (Some(0), b"s1.2.3.4 later.\n\0DGiving up.\n\0", b'Z', "1.2.3.4 later.\nGiving up.\n"),
            // a temporary rejection of the recipient but a message report K (another
            // recipient took it): the recipient's own answer wins, K's text is not added
            (Some(0), b"s1.2.3.4 later.\n\0K1.2.3.4 ok\n\0", b'Z', "1.2.3.4 later.\n"),
            (Some(0), b"r\0ZConnection died.\n\0", b'Z', "Connection died.\n"),
            (Some(0), b"r\0", b'D', ""),
            (Some(0), b"Kincomplete", b'D', "incomplete"),
            (Some(0), b"x\0Ktext\0", b'K', "text"),
            (Some(0), b"\0", b'D', ""),
        ];
        for &(code, out, letter, text) in rows {
            let (got_letter, got_text) = t(code, out);
            let what = format!("{code:?} {:?}: {got_text:?}", String::from_utf8_lossy(out));
            assert_eq!(got_letter, letter, "{what}");
            // fixed texts of the spawner are matched by a word, qmail-remote's exactly
            if code == Some(0) && !out.is_empty() {
                assert_eq!(got_text, text, "{what}");
            } else {
                assert!(got_text.contains(text), "{what}");
            }
        }
    }
}
