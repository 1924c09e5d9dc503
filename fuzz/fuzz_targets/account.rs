//! Fuzz target: arbitrary bytes as qmail-getpw's answer (qmail-lspawn decodes it as root).
//!
//! `cargo +nightly fuzz run account`. Nothing may panic; a decoded account encodes to an
//! answer that decodes to the same account.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::account::Account;

fuzz_target!(|data: &[u8]| {
    if let Some(account) = Account::decode(data) {
        let again = account.encode();
        assert_eq!(Account::decode(&again).as_ref(), Some(&account));
    }
});
