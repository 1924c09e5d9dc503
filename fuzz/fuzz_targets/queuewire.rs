//! Fuzz target: arbitrary bytes as a queue-service client's stream (the service's input), and
//! as a greeting or answer (the client's).
//!
//! `cargo +nightly fuzz run queuewire`. Nothing may panic; the message read out of the chunks
//! is never longer than the input, and the envelope reader takes the rest within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::queue::wire::{parse_answer, parse_greeting, Frames};
use std::io::Read;

fuzz_target!(|data: &[u8]| {
    let mut input = std::io::BufReader::with_capacity(13, data);
    let mut message = Vec::new();
    if Frames::new(&mut input).read_to_end(&mut message).is_ok() {
        assert!(message.len() <= data.len());
        let _ = qmail::envelope::Envelope::read(&mut input, 1000);
    }
    let _ = parse_greeting(data);
    if let Some((_, text)) = parse_answer(data) {
        assert!(text.len() <= qmail::exit::CUSTOM_TEXT_MAX);
    }
});
