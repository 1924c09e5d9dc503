//! Fuzz target: arbitrary client bytes through the sans-I/O IMAP command reader of imapd, and
//! every command it assembles through the typed view.
//!
//! `cargo +nightly fuzz run imap`. The first byte picks a chunk size, so the reader is also
//! fed its input in odd pieces, and the literal limit. Checked invariants: nothing panics;
//! every consumed count is within the input, and zero only with an event; the reader never
//! holds more than its command limit plus one byte; a command's tag is never empty; an
//! error's reply is one line; a typed FETCH, STORE, COPY or MOVE has a non-empty set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::imap::{Event, Limits, Reader, Request, Transfer};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let chunk = usize::from(first % 64) + 1;
    let mut limits = Limits::new(u32::from(first) * 16);
    limits.line = 512;
    limits.command = 4096;
    limits.depth = 8;

    let mut reader = Reader::new(limits);
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (n, event) = reader.push(rest);
            assert!(n <= rest.len());
            assert!(n > 0 || event.is_some());
            assert!(reader.pending() <= limits.command + 1);
            rest = &rest[n..];
            match event {
                Some(Event::Command(cmd)) => {
                    assert!(!cmd.tag.is_empty());
                    match Request::of(&cmd) {
                        Ok(
                            Request::Fetch { set, .. }
                            | Request::Store { set, .. }
                            | Request::Copy(Transfer { set, .. })
                            | Request::Move(Transfer { set, .. }),
                        ) => assert!(!set.ranges().is_empty()),
                        Ok(_) => {}
                        Err(kind) => assert!(!kind.text().is_empty()),
                    }
                }
                Some(Event::Error(error)) => {
                    let reply = error.response();
                    assert!(reply.ends_with(b"\r\n"));
                    assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
                }
                Some(Event::Continue) | None => {}
            }
        }
    }
});
