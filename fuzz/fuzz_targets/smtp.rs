//! Fuzz target: arbitrary client bytes through qmail-smtpd's sans-I/O parsers.
//!
//! `cargo +nightly fuzz run smtp`. The first byte picks a chunk size, so the parsers are also
//! fed their input in odd pieces. Checked invariants: nothing panics; the command reader holds
//! at most `MAX_LINE + 1` bytes; every consumed count is within the input; the DATA decoder
//! emits at most `databytes` bytes and ends a message only on `CRLF.CRLF` (or `.CRLF` at the
//! very start), so no smuggling sequence can end DATA.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::smtp::{self, CommandReader, DataDecoder, Input, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let chunk = usize::from(first % 64) + 1;

    // command lines, and every MAIL/RCPT argument through the path parser
    let mut reader = CommandReader::new();
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (n, got) = reader.push(rest);
            assert!(n > 0 && n <= rest.len());
            assert!(reader.pending() <= smtp::MAX_LINE + 1);
            rest = &rest[n..];
            if let Some(Input::Command(cmd)) = got {
                for kw in [&b"from:"[..], b"to:"] {
                    if let Ok(mut path) = smtp::parse_path(&cmd.arg, kw) {
                        assert!(path.addr.len() <= smtp::MAX_ADDRESS);
                        assert!(!path.addr.contains(&0));
                        let _ = path.ambiguous();
                        let _ = smtp::size_param(&path.params);
                        let _ = path.replace_local_ip(b"localhost", |ip| ip.is_loopback());
                        assert!(path.addr.len() <= smtp::MAX_ADDRESS);
                    }
                }
            }
        }
    }

    // the DATA decoder with a small databytes limit
    let limit = u64::from(first);
    let mut decoder = DataDecoder::new(limit);
    let mut out = Vec::new();
    let mut used = 0;
    for piece in data.chunks(chunk) {
        let (n, step) = decoder.push(piece, &mut out);
        assert!(n <= piece.len());
        used += n;
        match step {
            Step::NeedMore => assert_eq!(n, piece.len()),
            Step::End(_) => {
                let end = &data[..used];
                assert!(end == b".\r\n" || end.ends_with(b"\r\n.\r\n"));
                break;
            }
            Step::Fatal(_) => break,
        }
    }
    if limit > 0 {
        assert!(out.len() as u64 <= limit);
    }
});
