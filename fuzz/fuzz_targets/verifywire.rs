//! Fuzz target: arbitrary bytes as qmail-verify's answers (qmail-smtpd's input).
//!
//! `cargo +nightly fuzz run verifywire`. Nothing may panic; answers are decoded one after the
//! other as qmail-smtpd reads them, each taking at least one byte and a bounded text, and
//! every decoded answer encodes back to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::verify::wire::{Answer, TEXT_MAX};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((answer, used))) = Answer::decode(rest) {
        assert!(used > 0 && used <= rest.len() && used <= TEXT_MAX + 2);
        assert_eq!(answer.encode(), &rest[..used]);
        rest = &rest[used..];
    }
});
