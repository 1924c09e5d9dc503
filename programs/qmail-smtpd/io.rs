//! qmail-smtpd's connection to its client: fds 0 and 1 (or a worker's socket), non-blocking,
//! a bounded read buffer, the reply buffer and the per-read timeout, and the reply format with
//! its enhanced status code (doc/qmail-smtpd.8).

use crate::config;
use qmail::spare::Spare;
use qmail::timeoutio;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Why a read or write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    Timeout,
    /// end of input from the client
    Eof,
    /// a read or write error; the client is gone
    Broken,
}

/// The client connection: a bounded read buffer, the reply buffer, the per-read timeout.
/// Replies are held until the next read (or an explicit flush): that is PIPELINING.
pub struct Io {
    input: File,
    output: File,
    timeout: Duration,
    buf: Spare,
    start: usize,
    end: usize,
    out: Vec<u8>,
    /// after STARTTLS: every byte goes through this
    tls: Option<rustls::ServerConnection>,
}

/// The read buffer: the most client bytes held at once.
pub const READ_BUF: usize = 64 * 1024;

impl Io {
    /// fd 0 and fd 1 (duplicated, so that std's own buffers are out of the way).
    pub fn stdio() -> io::Result<Io> {
        let input = io::stdin().as_fd().try_clone_to_owned()?;
        let output = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Io::new(input, output))
    }

    /// A session's socket (a worker's, handed over by qmail-tcpsrv).
    pub fn socket(socket: OwnedFd) -> io::Result<Io> {
        let output = socket.try_clone()?;
        Ok(Io::new(socket, output))
    }

    /// The client on `input` and `output`, made non-blocking: every wait is a poll with the
    /// timeout.
    fn new(input: OwnedFd, output: OwnedFd) -> Io {
        let (input, output) = (File::from(input), File::from(output));
        timeoutio::set_nonblocking(&input);
        timeoutio::set_nonblocking(&output);
        Io {
            input,
            output,
            timeout: Duration::from_secs(config::DEFAULT_TIMEOUT),
            buf: Spare::sized(READ_BUF),
            start: 0,
            end: 0,
            out: Vec::with_capacity(4096),
            tls: None,
        }
    }

    /// The TLS connection, once STARTTLS has succeeded.
    pub fn tls(&self) -> Option<&rustls::ServerConnection> {
        self.tls.as_ref()
    }

    /// STARTTLS, after its `220` was flushed: everything the client sent after the STARTTLS
    /// line and before the handshake is thrown away (it was not protected: the
    /// CVE-2011-0411 class of command injection), then the handshake runs, by the timeout.
    pub fn start_tls(
        &mut self,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<(), IoError> {
        self.start = 0;
        self.end = 0;
        self.out.clear();
        let mut conn = rustls::ServerConnection::new(config).map_err(|_| IoError::Broken)?;
        let deadline = Instant::now() + self.timeout;
        let done =
            qmail::tls::handshake(&mut conn, self.input.as_fd(), self.output.as_fd(), deadline);
        self.tls = Some(conn);
        done.map_err(io_error)
    }

    /// At the end of a session over TLS: tell the client (close_notify), by the timeout.
    pub fn close(&mut self) {
        if let Some(conn) = self.tls.as_mut() {
            conn.send_close_notify();
            let _ = self.push_tls(Instant::now() + self.timeout);
        }
    }

    /// Read and process TLS records from the client, by `deadline`.
    fn pull_tls(&mut self, deadline: Instant) -> Result<(), IoError> {
        let conn = self.tls.as_mut().ok_or(IoError::Broken)?;
        qmail::tls::pull(conn, self.input.as_fd(), self.output.as_fd(), deadline).map_err(io_error)
    }

    /// Write whatever TLS records are pending, by `deadline`.
    fn push_tls(&mut self, deadline: Instant) -> Result<(), IoError> {
        match self.tls.as_mut() {
            Some(conn) => qmail::tls::push(conn, self.output.as_fd(), deadline).map_err(io_error),
            None => Ok(()),
        }
    }

    /// Write `bytes` to the client as they are, by `deadline`.
    fn write_raw(&self, bytes: &[u8], deadline: Instant) -> Result<(), IoError> {
        let mut done = 0;
        while done < bytes.len() {
            match timeoutio::write_nonblocking_by(self.output.as_fd(), &bytes[done..], deadline) {
                Ok(0) => return Err(IoError::Broken),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(IoError::Timeout),
                Err(_) => return Err(IoError::Broken),
            }
        }
        Ok(())
    }

    /// The timeout of every read and of every flush from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The client bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Flush the replies, then wait (at most the timeout) for more client bytes.
    pub fn fill(&mut self) -> Result<(), IoError> {
        self.flush()?;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            // the caller consumes what it can before asking for more; a full buffer is a bug
            // in the caller, handled by making room
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let deadline = Instant::now() + self.timeout;
        if self.tls.is_some() {
            return self.fill_tls(deadline);
        }
        match timeoutio::read_by(self.input.as_fd(), &mut self.buf[self.end..], deadline) {
            Ok(0) => Err(IoError::Eof),
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(IoError::Timeout),
            Err(_) => Err(IoError::Broken),
        }
    }

    /// [`Io::fill`] through TLS: plaintext rustls has ready, else more records from the client.
    fn fill_tls(&mut self, deadline: Instant) -> Result<(), IoError> {
        loop {
            let conn = self.tls.as_mut().ok_or(IoError::Broken)?;
            match io::Read::read(&mut conn.reader(), &mut self.buf[self.end..]) {
                Ok(0) => return Err(IoError::Eof),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pull_tls(deadline)?,
                Err(_) => return Err(IoError::Eof),
            }
        }
    }

    /// Queue one reply line; CRLF is added.
    pub fn line(&mut self, text: impl fmt::Display) {
        let _ = write!(self.out, "{text}\r\n");
    }

    /// Queue a reply: `CODE X.Y.Z text` (RFC 2034; the enhanced code is the text's own
    /// `(#X.Y.Z)` when it has one, else the class default). 3xx replies carry none.
    pub fn reply(&mut self, code: u16, text: &str) {
        match enhanced(code, text) {
            Some(status) => self.line(format_args!("{code} {status} {text}")),
            None => self.line(format_args!("{code} {text}")),
        }
    }

    /// Queue a reply with a given enhanced status code (`250 2.1.5 ok`).
    pub fn reply_as(&mut self, code: u16, status: &str, text: &str) {
        self.line(format_args!("{code} {status} {text}"));
    }

    /// Send every queued reply, waiting at most the timeout.
    pub fn flush(&mut self) -> Result<(), IoError> {
        let deadline = Instant::now() + self.timeout;
        if self.tls.is_some() {
            let mut done = 0;
            while done < self.out.len() {
                let conn = self.tls.as_mut().ok_or(IoError::Broken)?;
                let n = conn.writer().write(&self.out[done..]).map_err(|_| IoError::Broken)?;
                done += n;
                self.push_tls(deadline)?;
                if n == 0 && done < self.out.len() {
                    return Err(IoError::Broken);
                }
            }
            self.out.clear();
            return self.push_tls(deadline);
        }
        let result = self.write_raw(&self.out, deadline);
        // on a timeout the replies stay queued, as before the timeout reply
        if result != Err(IoError::Timeout) {
            self.out.clear();
        }
        result
    }
}

/// The enhanced status code of a reply: the last `(#X.Y.Z)` in `text`, else `2.0.0`,
/// `4.0.0` or `5.0.0` by the reply's class; `None` for 1xx/3xx.
pub fn enhanced(code: u16, text: &str) -> Option<String> {
    let class = code / 100;
    if !matches!(class, 2 | 4 | 5) {
        return None;
    }
    let found = text.rmatch_indices("(#").find_map(|(i, _)| {
        let rest = &text[i + 2..];
        let end = rest.find(')')?;
        let code = &rest[..end];
        let parts: Vec<&str> = code.split('.').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| code.to_string())
    });
    Some(found.unwrap_or_else(|| format!("{class}.0.0")))
}

/// An I/O error of the TLS layer as the session sees it.
fn io_error(e: io::Error) -> IoError {
    match e.kind() {
        io::ErrorKind::TimedOut => IoError::Timeout,
        io::ErrorKind::UnexpectedEof => IoError::Eof,
        _ => IoError::Broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes() {
        let rows: &[(u16, &str, Option<&str>)] = &[
            (250, "ok", Some("2.0.0")),
            (553, "sorry (#5.7.1)", Some("5.7.1")),
            (451, "a (#4.3.0) b (#4.4.2)", Some("4.4.2")),
            (451, "broken (#4.x.0)", Some("4.0.0")),
            (354, "go ahead", None),
            (221, "bye (#", Some("2.0.0")),
        ];
        for &(code, text, want) in rows {
            assert_eq!(enhanced(code, text).as_deref(), want, "{text}");
        }
    }
}
