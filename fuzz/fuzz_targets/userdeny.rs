//! Fuzz target: arbitrary bytes as a user deny record and a service name (smmapd's
//! `control/userdeny`, Cyrus's record format).
//!
//! `cargo +nightly fuzz run userdeny`. Nothing may panic; a message, when there is one, has
//! no control characters left. The first byte splits the input into record and service.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::userdeny;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let (record, service) = rest.split_at(usize::from(cut).min(rest.len()));
    if let Some(message) = userdeny::decide(record, service) {
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
    let _ = userdeny::entries(record).count();
});
