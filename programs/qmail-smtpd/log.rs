//! qmail-smtpd's log: one line per event on stderr, by `LOGLEVEL` (doc/qmail-smtpd.8).

use std::fmt;
use std::io::{self, Write};

/// The `LOGLEVEL` log: `qmail-smtpd PID: text` on stderr, for levels up to the one set
/// (1 fatal, 2 accounting, 3 errors and options, 4 verbose).
#[derive(Debug, Clone, Copy)]
pub struct Log {
    level: u8,
    pid: u32,
}

impl Log {
    pub fn new(level: u8) -> Self {
        Log { level: level.min(4), pid: std::process::id() }
    }

    pub fn at(&self, level: u8, text: fmt::Arguments<'_>) {
        if level <= self.level {
            // one line each: client-chosen bytes cannot forge or break log lines
            let text = qmail::safe::printable(text.to_string().as_bytes(), '?');
            let _ =
                io::stderr().write_all(format!("qmail-smtpd {}: {text}\n", self.pid).as_bytes());
        }
    }
}
