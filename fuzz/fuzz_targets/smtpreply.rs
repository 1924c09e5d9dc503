//! Fuzz target: arbitrary server bytes through qmail-remote's sans-I/O reply reader.
//!
//! `cargo +nightly fuzz run smtpreply`. The first byte picks a chunk size, so the reader is
//! also fed its input in odd pieces. Checked invariants: nothing panics; every push consumes
//! at least one byte and no more than it was given; every reply's text is at most
//! `MAX_TEXT` bytes and holds no CR or NUL; a code is 0 (malformed) or within 200..=599.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::smtpreply::{ReplyReader, MAX_TEXT};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let chunk = usize::from(first % 64) + 1;
    let mut reader = ReplyReader::new();
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (n, got) = reader.push(rest);
            assert!(n > 0 && n <= rest.len());
            rest = &rest[n..];
            if let Some(reply) = got {
                assert!(reply.text.len() <= MAX_TEXT);
                assert!(!reply.text.contains(&b'\r') && !reply.text.contains(&0));
                assert!(reply.code == 0 || (200..=599).contains(&reply.code));
                assert!(matches!(reply.class(), 2..=5));
            }
        }
    }
});
