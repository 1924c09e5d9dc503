//! Fuzz target: arbitrary client bytes through the sans-I/O POP3 parsers of qmail-popup and
//! qmail-pop3d, and arbitrary message files through the RETR/TOP transfer.
//!
//! `cargo +nightly fuzz run pop3`. The first byte picks a chunk size, so the parsers are also
//! fed their input in odd pieces. Checked invariants: nothing panics; the line reader holds at
//! most `MAX_LINE + 1` bytes and every consumed count is within the input; a message number
//! is always below the count it was checked against; the transfer never emits more than twice
//! its input plus the terminator, every LF it emits follows a CR, it ends in `\r\n.\r\n`, and
//! no line of its output is a lone `.` before the terminator (no early end of a message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::pop3::{self, Input, LineReader, Transfer};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let chunk = usize::from(first % 64) + 1;

    let mut reader = LineReader::new();
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (n, got) = reader.push(rest);
            assert!(n > 0 && n <= rest.len());
            assert!(reader.pending() <= pop3::MAX_LINE + 1);
            rest = &rest[n..];
            if let Some(Input::Command(cmd)) = got {
                assert!(cmd.arg.len() <= pop3::MAX_LINE);
                let count = usize::from(first);
                if let Ok((i, rest)) = pop3::message_number(&cmd.arg, count) {
                    assert!(i < count);
                    let _ = pop3::top_lines(rest);
                }
                let _ = pop3::uid(&cmd.arg);
            }
        }
    }

    let lines = (first & 0x80 != 0).then_some(u64::from(first & 0x0f));
    let mut transfer = Transfer::new(lines);
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        if !transfer.push(piece, &mut out) {
            break;
        }
    }
    transfer.finish(&mut out);
    assert!(out.len() <= 2 * data.len() + 7);
    assert!(out.ends_with(b"\r\n.\r\n"));
    let body = &out[..out.len() - 3];
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && body[i - 1] == b'\r');
        }
    }
    assert!(!body.starts_with(b".\r\n"));
    assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
});
