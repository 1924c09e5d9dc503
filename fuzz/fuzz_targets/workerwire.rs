//! Fuzz target: arbitrary bytes as what the long-lived workers' peers read — a delivery
//! worker's answers (read by qmail-lspawn, as root), a delivery request's record (read by
//! `qmail-local --worker`), and a session's environment record (read by a qmail-smtpd worker
//! of `qmail-tcpsrv -W`).
//!
//! `cargo +nightly fuzz run workerwire`. Nothing may panic; an answer's text stays within
//! the limit, and a decoded request encodes to a record that decodes to it again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::localworker::{Answer, Request};

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    while let Ok(Some(answer)) = Answer::read(&mut input) {
        assert!(answer.text.len() <= qmail::exit::LOCAL_OUTPUT_MAX);
    }
    if let Some(request) = Request::decode(data) {
        let again = request.encode().and_then(|record| Request::decode(&record));
        assert_eq!(again, Some(request));
    }
    let _ = qmail::handoff::decode(data);
});
