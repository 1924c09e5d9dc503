//! qmail-smtpd's dialogue with one client as the commands see it: the next command line, the
//! replies (refusals logged, and with SMTP550DISCONNECT ending the session), the timeout reply,
//! and how a command or the session ends (doc/qmail-smtpd.8).

use crate::config::Env;
use crate::io::{Io, IoError};
use crate::log::Log;
use qmail::smtp::{CommandReader, Input};
use std::fmt;
use std::time::Duration;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// the client said QUIT
    Quit,
    /// the client closed the connection
    Closed,
    /// the server ended it (after a final reply, if it could send one)
    Dropped,
}

/// What a command handler wants next.
pub enum Flow {
    Continue,
    End(End),
}

/// The client: its connection, the command reader, the log, and what a refusal needs to know
/// of it.
pub struct Conn<'a> {
    io: &'a mut Io,
    reader: CommandReader,
    log: Log,
    /// `TCPREMOTEIP`, for the log lines
    remote_ip: String,
    /// SMTP550DISCONNECT: a permanent refusal ends the session
    disconnect: bool,
}

impl<'a> Conn<'a> {
    pub fn new(io: &'a mut Io, log: Log, env: &Env) -> Self {
        Conn {
            io,
            reader: CommandReader::new(),
            log,
            remote_ip: env.remote_ip.clone(),
            disconnect: env.smtp550disconnect,
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The next command; `Err` ends the session (after the timeout reply, if it was one).
    pub fn next(&mut self) -> Result<Input, End> {
        loop {
            let (n, got) = self.reader.push(self.io.data());
            self.io.consume(n);
            if let Some(input) = got {
                return Ok(input);
            }
            self.fill()?;
        }
    }

    /// Read more client bytes; a timeout answers 451 and ends the session.
    pub fn fill(&mut self) -> Result<(), End> {
        match self.io.fill() {
            Ok(()) => Ok(()),
            Err(IoError::Timeout) => {
                self.log.at(3, format_args!("timeout from {}", self.remote_ip));
                self.io.reply(451, "timeout (#4.4.2)");
                Err(End::Dropped)
            }
            Err(IoError::Eof) => Err(End::Closed),
            Err(IoError::Broken) => Err(End::Dropped),
        }
    }

    /// One line of an AUTH exchange, without its line end: `None` when it was longer than
    /// `max` bytes (all of it read and thrown away); `Err` ends the session as [`Conn::next`]
    /// does. Bounded: at most `max` bytes are kept.
    pub fn auth_line(&mut self, max: usize) -> Result<Option<Vec<u8>>, End> {
        let mut lines = qmail::getln::Lines::skipping(max);
        loop {
            let (n, got) = lines.push(self.io.data());
            self.io.consume(n);
            match got {
                Some(qmail::getln::Got::Line) => return Ok(Some(lines.line().to_vec())),
                Some(qmail::getln::Got::TooLong) => return Ok(None),
                None => self.fill()?,
            }
        }
    }

    /// The client bytes read and not yet consumed (the message, in DATA).
    pub fn input(&self) -> &[u8] {
        self.io.data()
    }

    pub fn consume(&mut self, n: usize) {
        self.io.consume(n);
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.io.set_timeout(timeout);
    }

    /// Queue one reply line; CRLF is added.
    pub fn line(&mut self, text: impl fmt::Display) {
        self.io.line(text);
    }

    /// Queue a reply, its enhanced status code from its text ([`Io::reply`]).
    pub fn reply(&mut self, code: u16, text: &str) {
        self.io.reply(code, text);
    }

    /// Queue a reply with a given enhanced status code.
    pub fn reply_as(&mut self, code: u16, status: &str, text: &str) {
        self.io.reply_as(code, status, text);
    }

    /// Send every queued reply.
    pub fn flush(&mut self) -> Result<(), IoError> {
        self.io.flush()
    }

    /// Switch to TLS after STARTTLS's `220` (flushed here): what the client pipelined behind
    /// STARTTLS, in the reader or the read buffer, is thrown away ([`Io::start_tls`]).
    pub fn start_tls(
        &mut self,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<(), IoError> {
        self.io.flush()?;
        self.reader = CommandReader::new();
        self.io.start_tls(config)
    }

    /// `TLSv1.3 cipher ...` once the session runs over TLS.
    pub fn tls(&self) -> Option<String> {
        self.io.tls().map(|c| qmail::tls::describe(c))
    }

    /// A reply, and the session goes on.
    pub fn say(&mut self, code: u16, text: &str) -> Flow {
        self.io.reply(code, text);
        Flow::Continue
    }

    /// A policy rejection: the reply, then with SMTP550DISCONNECT the end of the session.
    pub fn refuse(&mut self, code: u16, text: &str) -> Flow {
        self.log.at(3, format_args!("{code} {text} ({})", self.remote_ip));
        self.io.reply(code, text);
        if self.disconnect && code >= 500 {
            return Flow::End(End::Dropped);
        }
        Flow::Continue
    }

    /// A control file could not be read: 421, and the session ends.
    pub fn control_failure(&mut self, e: qmail::control::ControlError) -> Flow {
        self.log.at(1, format_args!("fatal: {e}"));
        self.io.reply(421, "unable to read controls (#4.3.0)");
        Flow::End(End::Dropped)
    }
}
