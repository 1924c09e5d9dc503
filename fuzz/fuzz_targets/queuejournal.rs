//! Fuzz target: arbitrary bytes as the queue journal a service worker reads at start.
//!
//! `cargo +nightly fuzz run queuejournal`. Nothing may panic; every record found lies within
//! the input, decodes again to itself, and encodes to the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::queue::journal::{decode, encode, found, scan, HEAD};

fuzz_target!(|data: &[u8]| {
    let records = scan(data);
    for (at, r) in records.values() {
        let (again, _) = decode(&data[*at..]).expect("a record found decodes");
        assert_eq!(&again, r);
        let end = at + HEAD + r.mess.len() + r.env.len();
        assert!(end <= data.len());
        let bytes = encode(r.seq, r.covered, r.id, &r.mess, &r.env);
        assert_eq!(&bytes[..end - at], &data[*at..end]);
    }
    let f = found(&records, data.len() as u64);
    assert!(f.uncovered.iter().all(|r| r.id != 0));
});
