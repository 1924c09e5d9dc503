//! imapd's connection (doc/imapd.8): bytes from the client, plain or through TLS, with the
//! autologout timeout and SIGTERM watched while waiting; replies gathered in a buffer and
//! written when the server is about to wait for the client (or when the buffer is large), so
//! pipelined commands get their answers in one write.

use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Replies are written once this many bytes are waiting.
const FLUSH_AT: usize = 128 * 1024;

/// Why the connection cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// nothing from the client for the timeout
    Timeout,
    /// the client closed the connection
    Eof,
    /// a read, write or TLS error
    Broken,
    /// SIGTERM arrived
    Term,
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

/// The client connection.
pub struct Io {
    input: OwnedFd,
    output: OwnedFd,
    pub timeout: Duration,
    tls: Option<ServerConnection>,
    /// bytes from the client not yet taken (plaintext)
    pub inbuf: Vec<u8>,
    out: Vec<u8>,
    /// SIGTERM, blocked and read here
    term: Option<SignalFd>,
    /// bytes read and written, for the log
    pub read_total: u64,
    pub written_total: u64,
    /// `log/USER` telemetry, when on
    pub telemetry: Option<std::fs::File>,
    /// read a byte at a time (a login chain's first stage leaves the rest in the socket)
    pub bytewise: bool,
}

impl Io {
    pub fn new(input: OwnedFd, output: OwnedFd, timeout: Duration, watch_term: bool) -> Io {
        let term = watch_term.then(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            // blocked first, so that it waits in the signalfd instead of killing us
            set.thread_block().ok().and_then(|()| SignalFd::new(&set).ok())
        });
        Io {
            input,
            output,
            timeout,
            tls: None,
            inbuf: Vec::new(),
            out: Vec::new(),
            term: term.flatten(),
            read_total: 0,
            written_total: 0,
            telemetry: None,
            bytewise: false,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `TLSv1.3 cipher ...` once in TLS.
    pub fn tls_description(&self) -> Option<String> {
        self.tls.as_ref().map(|t| qmail::tls::describe(t))
    }

    /// Queue `bytes` for the client; written at the next [`Io::flush`] or when many wait.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Write everything queued, by the timeout.
    pub fn flush(&mut self) -> Result<(), IoError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        let out = std::mem::take(&mut self.out);
        self.written_total += out.len() as u64;
        telemetry(&mut self.telemetry, b'>', &out);
        let result = match self.tls.as_mut() {
            Some(tls) => {
                tls.writer().write_all(&out).map_err(|_| IoError::Broken)?;
                qmail::tls::push(tls, self.output.as_fd(), deadline).map_err(IoError::from)
            }
            None => write_all(self.output.as_fd(), &out, deadline),
        };
        self.out = out;
        self.out.clear();
        result
    }

    /// Flush, then wait (by the timeout, or `deadline` when sooner) for more bytes from the
    /// client and append them to [`Io::inbuf`]. `Ok(false)`: `deadline` passed first.
    pub fn fill_until(&mut self, deadline: Option<Instant>) -> Result<bool, IoError> {
        self.flush()?;
        let timeout_at = Instant::now() + self.timeout;
        let (until, ours) = match deadline {
            Some(d) if d < timeout_at => (d, true),
            _ => (timeout_at, false),
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(tls) = self.tls.as_mut() {
                match tls.reader().read(&mut buf) {
                    Ok(0) => return Err(IoError::Eof),
                    Ok(n) => return Ok(self.got(&buf[..n])),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(IoError::Eof),
                }
            }
            if !self.wait(until)? {
                return if ours { Ok(false) } else { Err(IoError::Timeout) };
            }
            match self.tls.as_mut() {
                Some(tls) => {
                    qmail::tls::pull(tls, self.input.as_fd(), self.output.as_fd(), until)?;
                    // a key update or other records rustls wants to answer
                    qmail::tls::push(tls, self.output.as_fd(), until)?;
                }
                None => {
                    let want = if self.bytewise { 1 } else { buf.len() };
                    let n = qmail::timeoutio::read_by(self.input.as_fd(), &mut buf[..want], until)?;
                    if n == 0 {
                        return Err(IoError::Eof);
                    }
                    return Ok(self.got(&buf[..n]));
                }
            }
        }
    }

    /// [`Io::fill_until`] with only the timeout.
    pub fn fill(&mut self) -> Result<(), IoError> {
        self.fill_until(None).map(|_| ())
    }

    fn got(&mut self, bytes: &[u8]) -> bool {
        self.read_total += bytes.len() as u64;
        telemetry(&mut self.telemetry, b'<', bytes);
        self.inbuf.extend_from_slice(bytes);
        true
    }

    /// Wait until the client's side is readable (`true`), `until` passes (`false`), or
    /// SIGTERM arrives.
    fn wait(&mut self, until: Instant) -> Result<bool, IoError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut fds = vec![PollFd::new(self.input.as_fd(), PollFlags::POLLIN)];
            if let Some(term) = &self.term {
                fds.push(PollFd::new(term.as_fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, qmail::timeoutio::poll_timeout(left)) {
                Ok(0) => continue,
                Ok(_) => {
                    let term = fds.get(1).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
                    if !term.is_empty() {
                        return Err(IoError::Term);
                    }
                    return Ok(true);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return Err(IoError::Broken),
            }
        }
    }

    /// The TLS handshake (after STARTTLS's OK, or at once with `-s`), by the timeout. Bytes
    /// the client sent in the clear after STARTTLS are dropped: nothing sent before the
    /// handshake counts as sent under TLS (RFC 3501 6.2.1).
    pub fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> Result<(), IoError> {
        self.flush()?;
        self.inbuf.clear();
        let tls = self.tls.insert(ServerConnection::new(config).map_err(|_| IoError::Broken)?);
        let deadline = Instant::now() + self.timeout;
        Ok(qmail::tls::handshake(tls, self.input.as_fd(), self.output.as_fd(), deadline)?)
    }

    /// After a TLS hand-off to a login chain: relay between the TLS session and `child` (the
    /// chain's end of a socket pair) until the chain is done ([`qmail::tls::relay`]); what
    /// the client sent behind its LOGIN goes first.
    pub fn relay(&mut self, child: std::os::unix::net::UnixStream) -> Result<(), IoError> {
        self.flush()?;
        let pending = std::mem::take(&mut self.inbuf);
        let input = std::fs::File::from(self.input.try_clone().map_err(|_| IoError::Broken)?);
        let output = std::fs::File::from(self.output.try_clone().map_err(|_| IoError::Broken)?);
        let Some(tls) = self.tls.as_mut() else { return Err(IoError::Broken) };
        Ok(qmail::tls::relay(tls, &input, &output, child, pending, self.timeout)?)
    }

    /// At the end: write what is queued and tell a TLS client (close_notify).
    pub fn close(&mut self) {
        let _ = self.flush();
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = qmail::tls::push(tls, self.output.as_fd(), Instant::now() + self.timeout);
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).map_err(|e| io::Error::other(format!("{e:?}")))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_all(
    fd: std::os::fd::BorrowedFd<'_>,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), IoError> {
    let mut done = 0;
    while done < bytes.len() {
        match qmail::timeoutio::write_by(fd, &bytes[done..], deadline)? {
            0 => return Err(IoError::Broken),
            n => done += n,
        }
    }
    Ok(())
}

/// Append `bytes` to the telemetry file with its `<EPOCH<` or `>EPOCH>` prefix (doc/imapd.8,
/// "log/USER"); a write error turns telemetry off.
fn telemetry(file: &mut Option<std::fs::File>, way: u8, bytes: &[u8]) {
    let Some(f) = file.as_mut() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let way = char::from(way);
    let mut record = format!("{way}{now}{way}").into_bytes();
    record.extend_from_slice(bytes);
    if f.write_all(&record).is_err() {
        *file = None;
    }
}
