//! Fuzz target: arbitrary bytes as the spawn protocol, both directions (qmail-send's commands
//! to a spawner, a spawner's reports to qmail-send), fed in arbitrary chunks.
//!
//! `cargo +nightly fuzz run spawn`. Nothing may panic; every decoded command re-encodes to
//! the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::spawn::{CommandDecoder, ReportDecoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |&b| usize::from(b).max(1));
    let mut commands = CommandDecoder::new();
    let mut reports = ReportDecoder::new();
    let mut wire = Vec::new();
    for chunk in data.chunks(split) {
        commands.feed(chunk);
        reports.feed(chunk);
        while let Ok(Some(c)) = commands.next() {
            wire.extend(c.encode());
        }
        while reports.next().is_some() {}
    }
    assert!(data.starts_with(&wire));
});
