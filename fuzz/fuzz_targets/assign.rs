//! Fuzz target: arbitrary bytes as users/assign (qmail-newu's input).
//!
//! `cargo +nightly fuzz run assign`. Nothing may panic; a parsed file yields records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(assign) = qmail::users::parse(data) {
        let _ = assign.records();
    }
});
