//! qmail-send's link to qmail-todo (doc/INTERNALS.md, "qmail-send and qmail-todo"): the
//! bytes it writes (`S`, `H`, `X`) and the records it reads back. Losing qmail-todo is fatal
//! unless qmail-send has told it to finish (doc/INTERNALS.md, "Lost partners").

use crate::log::Log;
use qmail::todo::{Channels, Command, Decoder, Record, RecordError};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

pub struct Todo {
    to: File,
    from: File,
    records: Decoder,
    /// qmail-todo has finished (its `X`, or end of file after ours)
    done: bool,
}

impl Todo {
    pub fn new(to: File, from: File) -> Self {
        Todo { to, from, records: Decoder::new(), done: false }
    }

    /// The queue scan is complete: qmail-todo may start.
    pub fn start(&mut self) {
        self.send(Command::Start);
    }

    /// qmail-todo re-reads its control files.
    pub fn reload(&mut self) {
        self.send(Command::Reload);
    }

    /// qmail-todo finishes.
    pub fn exit(&mut self) {
        self.send(Command::Exit);
    }

    fn send(&mut self, command: Command) {
        let _ = self.to.write_all(&[command.byte()]);
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// The descriptor its records come on.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.from.as_fd()
    }

    /// Read qmail-todo's records: its log lines go to the log; the messages it has handed
    /// over come back with their channels. `exiting`: qmail-todo has been told to finish.
    pub fn read(&mut self, log: &mut Log, exiting: bool) -> Result<Vec<(Channels, u64)>, String> {
        let mut buf = [0u8; 16384];
        let n = match self.from.read(&mut buf) {
            Ok(0) => {
                if exiting {
                    self.done = true;
                    return Ok(Vec::new());
                }
                return Err("oh no! lost the qmail-todo connection".into());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Vec::new()),
            Err(e) => return Err(format!("reading from qmail-todo: {e}")),
        };
        self.records.feed(&buf[..n]);
        let mut handed = Vec::new();
        while let Some(record) = self.records.next() {
            match record {
                Ok(Record::Log(line)) => log.line(&String::from_utf8_lossy(&line)),
                Ok(Record::Exit) => self.done = true,
                Ok(Record::Done(channels, id)) => handed.push((channels, id)),
                Err(RecordError::TooLong) => {
                    log.line("warning: qmail-todo record too long, dropped")
                }
                Err(RecordError::Bad) => log.line("warning: bad record from qmail-todo"),
            }
        }
        Ok(handed)
    }
}
