//! Fuzz target: arbitrary bytes as a tcprules text file, then lookups of a few peers in the
//! compiled records.
//!
//! `cargo +nightly fuzz run tcprules`. Nothing may panic; compiling is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = qmail::tcprules::compile(data) {
        for (key, value) in &records {
            let _ = qmail::tcprules::decode(key, value);
        }
    }
});
