//! qmail-pop3d: serve one Maildir over POP3, the transaction state (doc/qmail-pop3d.8).
//!
//! `qmail-pop3d maildir`, run by a checkpassword program (auth_pop) that qmail-popup started,
//! as the user, in the home directory, with the client on fds 0 and 1. `MAILDIR`, when set
//! and not empty, overrides the argument. Its `+OK` is the answer to the client's PASS.
//! Deletions happen only at QUIT; a session that ends any other way (end of input, timeout,
//! an over-long line) changes nothing. Messages are streamed from their files through a fixed
//! buffer, whatever their size.
//!
//! Exit code: always 0 (as upstream): every failure has been told to the client as `-ERR`,
//! and qmail-popup would print a second error for any other code.
//!
//! Security: runs as the user, reads only `control/timeoutpop3` of the installation; names
//! only files it listed in `new/` and `cur/`; every command line is bounded
//! ([`qmail::pop3::MAX_LINE`]).

#![forbid(unsafe_code)]

mod maildir;

use maildir::Message;
use qmail::pop3::{self, Input, LineReader, Transfer, Verb};
use qmail::timeoutio;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// The timeout when `control/timeoutpop3` does not say (upstream's fixed 1200 seconds).
const DEFAULT_TIMEOUT: u64 = 1200;
/// The output buffer is sent when it holds this much; the file is read in pieces this big.
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let Ok(mut io) = Io::stdio() else { return ExitCode::SUCCESS };
    let log = Log::new();
    let _ = session(&mut io, &log);
    let _ = io.flush();
    log.at(2, format_args!("logout {} bytes transferred", io.sent));
    ExitCode::SUCCESS
}

/// Why the session stopped early.
#[derive(Debug)]
enum Stop {
    /// end of input, timeout, a write failure: nothing more to say
    Gone,
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Stop {
        Stop::Gone
    }
}

fn session(io: &mut Io, log: &Log) -> Result<(), Stop> {
    let dir = std::env::var_os("MAILDIR")
        .filter(|d| !d.is_empty())
        .or_else(|| std::env::args_os().nth(1).filter(|d| !d.is_empty()));
    let timeout = qmail::control::Control::new(&qmail::auto::home())
        .int("timeoutpop3")
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .unwrap_or(DEFAULT_TIMEOUT);
    io.timeout = Duration::from_secs(timeout);
    if !dir.is_some_and(|d| std::env::set_current_dir(d).is_ok()) {
        io.line("-ERR this user has no $HOME/Maildir");
        return Ok(());
    }
    let now = SystemTime::now();
    qmail::maildir::clean_tmp(std::path::Path::new("."), now);
    let Ok(mut messages) = maildir::scan(now) else {
        io.line("-ERR unable to scan $HOME/Maildir");
        return Ok(());
    };
    log.at(2, format_args!("login"));
    io.line("+OK ");
    let mut last = 0usize;
    let mut reader = LineReader::new();
    loop {
        let cmd = match io.next(&mut reader)? {
            Input::Command(cmd) => cmd,
            Input::TooLong => {
                io.line("-ERR line too long");
                return Ok(());
            }
        };
        match cmd.verb {
            Verb::Quit => {
                let quota = std::env::var("MAILDIRQUOTA").ok();
                let quota = quota.and_then(|q| qmail::quota::Quota::parse(q.as_bytes()).ok());
                let done = maildir::quit(&messages, quota.flatten().as_ref());
                if done.unlink_failed {
                    io.line("-ERR unable to unlink all deleted messages");
                } else {
                    io.line("+OK ");
                }
                return Ok(());
            }
            Verb::Noop => io.line("+OK "),
            Verb::Capa => io.line(
                "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n\
                 IMPLEMENTATION qmail-ldap-rs\r\n.",
            ),
            Verb::Stat => {
                let live = messages.iter().filter(|m| !m.deleted);
                let (n, bytes) =
                    live.fold((0u64, 0u64), |(n, b), m| (n + 1, b.saturating_add(m.size)));
                io.line(format_args!("+OK {n} {bytes}"));
            }
            Verb::List | Verb::Uidl => {
                let field = |m: &Message| -> String {
                    if cmd.verb == Verb::List {
                        m.size.to_string()
                    } else {
                        String::from_utf8_lossy(pop3::uid(m.path.as_bytes())).into_owned()
                    }
                };
                if cmd.arg.is_empty() {
                    io.line("+OK ");
                    for (i, m) in messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                        io.line(format_args!("{} {}", i + 1, field(m)));
                        io.flush_if_full()?;
                    }
                    io.line(".");
                } else if let Some((i, _)) = number(io, &messages, &cmd.arg) {
                    io.line(format_args!("+OK {} {}", i + 1, field(&messages[i])));
                }
            }
            Verb::Retr | Verb::Top => {
                let Some((i, rest)) = number(io, &messages, &cmd.arg) else { continue };
                let lines = if cmd.verb == Verb::Top { pop3::top_lines(rest) } else { None };
                let Ok(file) = File::open(&messages[i].path) else {
                    io.line("-ERR unable to open that message");
                    continue;
                };
                io.line(format_args!("+OK {} octets", messages[i].size));
                io.send_message(file, lines)?;
            }
            Verb::Dele => {
                if let Some((i, _)) = number(io, &messages, &cmd.arg) {
                    messages[i].deleted = true;
                    last = last.max(i + 1);
                    io.line("+OK ");
                }
            }
            Verb::Rset => {
                for m in messages.iter_mut() {
                    m.deleted = false;
                }
                last = 0;
                io.line("+OK ");
            }
            Verb::Last => io.line(format_args!("+OK {last}")),
            _ => io.line("-ERR unimplemented"),
        }
    }
}

/// The message a command names, not deleted: its index and the rest of the argument; or the
/// `-ERR` answer is queued and `None` returned.
fn number<'a>(io: &mut Io, messages: &[Message], arg: &'a [u8]) -> Option<(usize, &'a [u8])> {
    match pop3::message_number(arg, messages.len()) {
        Ok((i, _)) if messages[i].deleted => {
            io.line("-ERR already deleted");
            None
        }
        Ok(found) => Some(found),
        Err(e) => {
            io.line(format_args!("-ERR {}", e.text()));
            None
        }
    }
}

/// The client: fds 0 and 1, non-blocking, every wait a poll with the timeout; the answers
/// are buffered and sent before each read.
struct Io {
    input: File,
    output: File,
    timeout: Duration,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    /// bytes sent, for the log
    sent: u64,
}

impl Io {
    fn stdio() -> io::Result<Io> {
        let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        timeoutio::set_nonblocking(&input);
        timeoutio::set_nonblocking(&output);
        Ok(Io {
            input,
            output,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT),
            buf: vec![0; 4096].into_boxed_slice(),
            start: 0,
            end: 0,
            out: Vec::with_capacity(2 * CHUNK + 16),
            sent: 0,
        })
    }

    /// Queue one answer line; CRLF is added.
    fn line(&mut self, text: impl std::fmt::Display) {
        let _ = write!(self.out, "{text}\r\n");
    }

    /// The next command line: answers are sent first, then the client waited for.
    fn next(&mut self, reader: &mut LineReader) -> Result<Input, Stop> {
        loop {
            if self.start < self.end {
                let (n, got) = reader.push(&self.buf[self.start..self.end]);
                self.start += n;
                if let Some(input) = got {
                    return Ok(input);
                }
            }
            self.flush()?;
            let deadline = Instant::now() + self.timeout;
            match timeoutio::read_by(self.input.as_fd(), &mut self.buf, deadline)? {
                0 => return Err(Stop::Gone),
                n => (self.start, self.end) = (0, n),
            }
        }
    }

    /// Send what is queued once it is a chunk or more.
    fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.out.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Send everything queued, by the timeout.
    fn flush(&mut self) -> Result<(), Stop> {
        let deadline = Instant::now() + self.timeout;
        let mut done = 0;
        while done < self.out.len() {
            match timeoutio::write_nonblocking_by(self.output.as_fd(), &self.out[done..], deadline)?
            {
                0 => return Err(Stop::Gone),
                n => done += n,
            }
        }
        self.sent += done as u64;
        self.out.clear();
        Ok(())
    }

    /// A message file as POP3 sends it ([`Transfer`]), a chunk at a time. A read error ends
    /// the session (the client sees no terminator and knows the message is incomplete).
    fn send_message(&mut self, mut file: File, lines: Option<u64>) -> Result<(), Stop> {
        let mut transfer = Transfer::new(lines);
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = timeoutio::read(&mut file, &mut chunk)?;
            if n == 0 || !transfer.push(&chunk[..n], &mut self.out) {
                break;
            }
            self.flush_if_full()?;
        }
        transfer.finish(&mut self.out);
        Ok(())
    }
}

/// The `POP3_LOGLEVEL` log on stderr: 2 and up, the accounting lines
/// `acct: pid <pid>: <host>:<ip>:<info> <user> login` and `... logout <n> bytes transferred`.
struct Log {
    level: u8,
    prefix: String,
}

impl Log {
    fn new() -> Log {
        let level = std::env::var("POP3_LOGLEVEL").ok().and_then(|l| l.trim().parse().ok());
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let prefix = format!(
            "acct: pid {}: {}:{}:{} {}",
            std::process::id(),
            var("TCPREMOTEHOST"),
            var("TCPREMOTEIP"),
            var("TCPREMOTEINFO"),
            var("USER")
        );
        Log { level: level.unwrap_or(0), prefix }
    }

    fn at(&self, level: u8, text: std::fmt::Arguments<'_>) {
        if level <= self.level {
            // one line each: client-chosen bytes cannot forge or break log lines
            let line = format!("{} {text}", self.prefix);
            let line = qmail::safe::printable(line.as_bytes(), '?');
            let _ = io::stderr().write_all(format!("qmail-pop3d: {line}\n").as_bytes());
        }
    }
}
