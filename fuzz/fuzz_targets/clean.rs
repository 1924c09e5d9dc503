//! Fuzz target: arbitrary bytes as qmail-clean's request stream, fed byte by byte as
//! qmail-clean reads it.
//!
//! `cargo +nightly fuzz run clean`. Nothing may panic; a request that parses re-encodes to
//! the bytes it came from, up to leading zeros of the id, and names only files under intd/,
//! todo/ and mess/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::clean::{Request, Requests};

fuzz_target!(|data: &[u8]| {
    let mut requests = Requests::default();
    for &b in data {
        if let Some(Some(r)) = requests.push(b) {
            let wire = r.encode();
            assert_eq!(Request::parse(&wire[..wire.len() - 1]), Some(r));
            for f in r.files() {
                let f = f.to_string_lossy().into_owned();
                assert!(!f.contains(".."), "{f}");
                assert!(f.starts_with("intd/") || f.starts_with("todo/") || f.starts_with("mess/"));
            }
        }
    }
});
