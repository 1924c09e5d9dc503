//! Fuzz target: arbitrary bytes as qmail-todo's records to qmail-send (qmail::todo), fed in
//! arbitrary chunks.
//!
//! `cargo +nightly fuzz run todo`. Nothing may panic; every decoded record re-encodes to bytes
//! that decode to the same record (if within the limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::todo::{Decoder, MAX_RECORD};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |&b| usize::from(b).max(1));
    let mut records = Decoder::new();
    for chunk in data.chunks(split) {
        records.feed(chunk);
        while let Some(r) = records.next() {
            let Ok(r) = r else { continue };
            let wire = r.encode();
            if wire.len() > MAX_RECORD + 1 {
                continue; // a log line of the limit without its newline: it gains one
            }
            let mut again = Decoder::new();
            again.feed(&wire);
            assert_eq!(again.next(), Some(Ok(r)));
            assert_eq!(again.next(), None);
        }
    }
});
