//! Fuzz target: arbitrary bytes as one POP-before-SMTP datagram (pbsdbd's and pbscheck's
//! input).
//!
//! `cargo +nightly fuzz run pbs`. Nothing may panic; a datagram over the size limit is never
//! a packet; every decoded packet encodes back to exactly the bytes it came from, and its
//! env-block entries are bounded and have a name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::pbs::{EnvBlock, Packet, ENTRY_MAX, PACKET_MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::decode(data) else { return };
    assert!(data.len() <= PACKET_MAX);
    assert_eq!(packet.encode().as_deref(), Ok(data));
    let env = match &packet {
        Packet::Add(add) => Some(&add.env),
        Packet::Response(_, env) => env.as_ref(),
        Packet::Query(_) => None,
    };
    if let Some(env) = env {
        for (name, value) in env.iter() {
            assert!(!name.is_empty() && name.len() + 1 + value.len() <= ENTRY_MAX);
        }
        assert_eq!(EnvBlock::decode(&env.encode()).as_ref(), Ok(env));
    }
});
