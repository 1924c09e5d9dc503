//! qmail-popup's connection to its client (doc/qmail-popup.8, doc/INTERNALS.md "POP3"):
//! command lines read by the timeout, plain or through TLS, and after a successful TLS
//! hand-off the relay between the TLS session and the sub-program's socket pair.
//!
//! In plain text no byte past the current command line is read: the line is found by
//! peeking at the socket (`MSG_PEEK`), and only its own bytes are taken, so what the client
//! sent after PASS is still in the socket for qmail-pop3d (on a pipe, which cannot be peeked
//! at, a byte at a time). Bytes a client sends after STLS before the handshake reach the TLS
//! layer as they are and fail it: nothing sent in the clear can be taken for a command sent
//! under TLS.

use qmail::pop3::{Input, LineReader, MAX_LINE};
use qmail::timeoutio;
use rustls::ServerConnection;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a read or write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    Timeout,
    /// end of input from the client
    Eof,
    /// a read, write or TLS error; the client is gone
    Broken,
}

impl From<io::Error> for IoError {
    fn from(e: io::Error) -> IoError {
        match e.kind() {
            io::ErrorKind::TimedOut => IoError::Timeout,
            io::ErrorKind::UnexpectedEof => IoError::Eof,
            _ => IoError::Broken,
        }
    }
}

/// The client on fds 0 and 1.
pub struct Conn {
    /// fd 0, as a socket (for `peek`)
    input: TcpStream,
    /// fd 0 again, for reads (`recv` fails on a pipe, `read` does not)
    reads: File,
    output: File,
    pub timeout: Duration,
    tls: Option<ServerConnection>,
    /// decrypted bytes not yet taken by the line reader (TLS only)
    plain: Vec<u8>,
    reader: LineReader,
}

impl Conn {
    /// fds 0 and 1, duplicated (close-on-exec: the sub-program gets the originals or the
    /// socket pair, never these).
    pub fn stdio(timeout: Duration) -> io::Result<Conn> {
        let input = TcpStream::from(io::stdin().as_fd().try_clone_to_owned()?);
        let reads = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        Ok(Conn {
            input,
            reads,
            output,
            timeout,
            tls: None,
            plain: Vec::new(),
            reader: LineReader::new(),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The next command line, or [`Input::TooLong`].
    pub fn next(&mut self) -> Result<Input, IoError> {
        let deadline = Instant::now() + self.timeout;
        if self.tls.is_some() {
            loop {
                if !self.plain.is_empty() {
                    let (n, got) = self.reader.push(&self.plain);
                    self.plain.drain(..n);
                    if let Some(input) = got {
                        return Ok(input);
                    }
                }
                self.pull_plain(deadline)?;
            }
        }
        let mut buf = [0u8; MAX_LINE + 2];
        loop {
            timeoutio::wait(self.input.as_fd(), nix::poll::PollFlags::POLLIN, deadline)?;
            let (n, taken) = match self.input.peek(&mut buf) {
                Ok(n) => (n, false),
                Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                    (timeoutio::read(&mut (&self.reads), &mut buf[..1])?, true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(IoError::Eof);
            }
            let (used, got) = self.reader.push(&buf[..n]);
            if !taken {
                // exactly the bytes of this line: they are in the socket, the read is whole
                (&self.reads).read_exact(&mut buf[..used])?;
            }
            if let Some(input) = got {
                return Ok(input);
            }
        }
    }

    /// Send `bytes`, by the timeout.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        let deadline = Instant::now() + self.timeout;
        match self.tls.as_mut() {
            Some(tls) => {
                tls.writer().write_all(bytes).map_err(|_| IoError::Broken)?;
                self.push_tls(deadline)
            }
            None => self.write_raw(bytes, deadline),
        }
    }

    /// The TLS handshake (STLS after its `+OK`, or at once for POP3S), by the timeout.
    pub fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), IoError> {
        self.reader = LineReader::new();
        self.plain.clear();
        let tls = self.tls.insert(ServerConnection::new(config).map_err(|_| IoError::Broken)?);
        let deadline = Instant::now() + self.timeout;
        Ok(qmail::tls::handshake(tls, self.input.as_fd(), self.output.as_fd(), deadline)?)
    }

    /// At the end: tell a TLS client (close_notify), by the timeout.
    pub fn close(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.push_tls(Instant::now() + self.timeout);
        }
    }

    /// More plaintext into `plain`: what rustls has, else records from the client first.
    fn pull_plain(&mut self, deadline: Instant) -> Result<(), IoError> {
        let mut buf = [0u8; 4096];
        loop {
            let tls = self.tls.as_mut().ok_or(IoError::Broken)?;
            match tls.reader().read(&mut buf) {
                Ok(0) => return Err(IoError::Eof),
                Ok(n) => {
                    self.plain.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pull_tls(deadline)?,
                Err(_) => return Err(IoError::Eof),
            }
        }
    }

    /// Read TLS records from the client, by `deadline`, and process them.
    fn pull_tls(&mut self, deadline: Instant) -> Result<(), IoError> {
        let tls = self.tls.as_mut().ok_or(IoError::Broken)?;
        Ok(qmail::tls::pull(tls, self.input.as_fd(), self.output.as_fd(), deadline)?)
    }

    /// Write the pending TLS records, by `deadline`.
    fn push_tls(&mut self, deadline: Instant) -> Result<(), IoError> {
        match self.tls.as_mut() {
            Some(tls) => Ok(qmail::tls::push(tls, self.output.as_fd(), deadline)?),
            None => Ok(()),
        }
    }

    fn write_raw(&self, bytes: &[u8], deadline: Instant) -> Result<(), IoError> {
        let mut done = 0;
        while done < bytes.len() {
            match timeoutio::write_by(self.output.as_fd(), &bytes[done..], deadline)? {
                0 => return Err(IoError::Broken),
                n => done += n,
            }
        }
        Ok(())
    }

    /// After a TLS hand-off: carry bytes between the TLS session and `child` (the
    /// sub-program's end is its fds 0 and 1) until the sub-program closes its end, the client
    /// goes, or nothing moves for the timeout ([`qmail::tls::relay`]). What the client sent
    /// after its PASS line goes first.
    pub fn relay(&mut self, child: UnixStream) -> Result<(), IoError> {
        let pending = std::mem::take(&mut self.plain);
        let Some(tls) = self.tls.as_mut() else { return Err(IoError::Broken) };
        qmail::tls::relay(tls, &self.reads, &self.output, child, pending, self.timeout)
            .map_err(IoError::from)
    }
}
