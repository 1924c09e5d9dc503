//! Fuzz target: arbitrary bytes as a qmail-queue envelope (`F<sender>\0T<rcpt>\0...\0`).
//!
//! `cargo +nightly fuzz run envelope`. Nothing may panic; a decoded envelope re-encodes to a
//! prefix of the input (decoders reject or stop at trailing bytes, never invent any).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::envelope::Envelope;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    if let Ok(env) = Envelope::read(&mut input, 1000) {
        let encoded = env.encode();
        assert!(data.starts_with(&encoded));
    }
});
