//! qmail-send's log (doc/qmail-send.8, "Log"): descriptor 0, written one whole line at a time.

use std::fs::File;
use std::io::Write;

pub struct Log(File);

impl Log {
    pub fn new(file: File) -> Self {
        Log(file)
    }

    /// Write `line` and a newline; a log that cannot be written is no reason to stop.
    pub fn line(&mut self, line: &str) {
        let _ = self.0.write_all(format!("{line}\n").as_bytes());
    }
}
