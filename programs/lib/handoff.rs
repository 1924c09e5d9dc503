//! handoff: the worker protocol of `qmail-tcpsrv -W` (doc/qmail-tcpsrv.8, WORKERS), both ends.
//!
//! qmail-tcpsrv starts its program as a long-lived worker: the variable [`WORKER_ENV`] set,
//! and one end of a Unix stream socket pair on fd 0. Per session it sends, with
//! [`crate::fdpass`], the accepted TCP socket and the session's environment changes (the
//! ucspi-tcp variables, then the rules' ones, in order) as a record of NUL-terminated entries,
//! `+NAME=value` to set and `-NAME` to unset — the rules cdb's own format without its `D`.
//! The worker acknowledges it with one byte (`+`) before it says anything to the client — until
//! then qmail-tcpsrv keeps its copy of the socket and can give the connection to another worker
//! if this one died — then serves the session with its process environment reset to what it
//! was at its start ([`Environment`]) and those changes applied, closes the socket, and answers
//! one byte: the session's exit code, as a program run per connection would have exited. End of
//! file on the socket, at either end, ends the worker.
//!
//! The receiving side is strict: a record that is not a run of well-formed entries (a name
//! that is empty or holds `=`, an entry of another kind, an unterminated tail) is refused.

use crate::tcprules::EnvChange;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Set (to `1`) in a worker's environment at its start: the program serves sessions handed
/// over on fd 0 instead of one connection on fds 0 and 1.
pub const WORKER_ENV: &str = "TCPSRV_WORKER";

/// A session's environment changes, encoded and small enough to send.
pub struct Record(Vec<u8>);

impl Record {
    /// `Err` when the changes do not fit in a message ([`crate::fdpass::RECORD_MAX`]).
    pub fn new(changes: &[EnvChange]) -> Result<Record, String> {
        let record = encode(changes);
        if record.len() > crate::fdpass::RECORD_MAX {
            return Err(format!(
                "the environment ({} bytes) is too large for a worker",
                record.len()
            ));
        }
        Ok(Record(record))
    }
}

/// The record of `changes`: `+NAME=value\0` and `-NAME\0` entries, in order.
pub fn encode(changes: &[EnvChange]) -> Vec<u8> {
    let mut out = Vec::new();
    for change in changes {
        match change {
            EnvChange::Set(name, value) => {
                out.push(b'+');
                out.extend_from_slice(name);
                out.push(b'=');
                out.extend_from_slice(value);
            }
            EnvChange::Unset(name) => {
                out.push(b'-');
                out.extend_from_slice(name);
            }
        }
        out.push(0);
    }
    out
}

/// The changes of a record, or `None` when it is not one ([`encode`]'s output only).
pub fn decode(record: &[u8]) -> Option<Vec<EnvChange>> {
    let Some(body) = record.strip_suffix(&[0]) else {
        return record.is_empty().then(Vec::new);
    };
    let valid = |name: &[u8]| !name.is_empty() && !name.contains(&b'=');
    body.split(|&c| c == 0)
        .map(|entry| match entry.split_first()? {
            (b'+', var) => {
                let eq = var.iter().position(|&c| c == b'=')?;
                let (name, value) = (&var[..eq], &var[eq + 1..]);
                valid(name).then(|| EnvChange::Set(name.to_vec(), value.to_vec()))
            }
            (b'-', name) => valid(name).then(|| EnvChange::Unset(name.to_vec())),
            _ => None,
        })
        .collect()
}

/// The byte a worker sends as soon as it holds a session, before it says anything to the
/// client.
const TAKEN: u8 = b'+';

/// How long a worker may take to acknowledge a session.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// qmail-tcpsrv: hand the session `socket` with its `record` to the worker on `worker`, and
/// wait (at most [`TAKE_TIMEOUT`]) until it has taken it. `Err`: the worker did not take it
/// (it died, or hangs) and has not spoken to the client, so the caller, which still holds
/// the socket, can give it to another.
pub fn send(worker: &UnixStream, socket: &impl AsFd, record: &Record) -> io::Result<()> {
    crate::fdpass::send(worker, socket, &record.0)?;
    let mut byte = [0u8; 1];
    match crate::timeoutio::read_by(worker.as_fd(), &mut byte, Instant::now() + TAKE_TIMEOUT)? {
        1 if byte[0] == TAKEN => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the worker did not take it")),
    }
}

/// qmail-tcpsrv: the worker's answer after a session, its exit code; `None` when the worker
/// is gone (end of file or an error: it died during the session).
pub fn answer_of(mut worker: &UnixStream) -> Option<u8> {
    let mut byte = [0u8; 1];
    loop {
        match worker.read(&mut byte) {
            Ok(1) => return Some(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            _ => return None,
        }
    }
}

/// The worker: the next session's socket and environment changes, acknowledged; `Ok(None)`
/// when qmail-tcpsrv has closed its end (no more sessions).
pub fn receive(from: &UnixStream) -> io::Result<Option<(OwnedFd, Vec<EnvChange>)>> {
    let Some((fd, record)) = crate::fdpass::recv(from)? else { return Ok(None) };
    let changes = decode(&record).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "not a record of environment changes")
    })?;
    let mut from = from;
    from.write_all(&[TAKEN])?;
    Ok(Some((fd, changes)))
}

/// The worker: answer the session's exit code.
pub fn answer(mut to: &UnixStream, code: u8) -> io::Result<()> {
    to.write_all(&[code])
}

/// A worker's process environment as it was at its start, to begin every session from.
///
/// Changing the environment is only sound while no other thread of the process reads it:
/// [`Environment::session`] is for a single-threaded worker between sessions (it checks).
pub struct Environment(HashMap<OsString, OsString>);

impl Environment {
    /// The environment now, without [`WORKER_ENV`] (removed from the process too, so that
    /// no session and no child sees it).
    pub fn snapshot() -> Environment {
        std::env::remove_var(WORKER_ENV);
        Environment(std::env::vars_os().collect())
    }

    /// Reset the process environment to the snapshot, then apply `changes` in order. `Err`
    /// when another thread runs in this process: the environment is left alone.
    pub fn session(&self, changes: &[EnvChange]) -> Result<(), String> {
        let threads = threads();
        if threads != 1 {
            return Err(format!("{threads} threads run: the environment cannot be changed"));
        }
        // one pass over the environment (a lookup by name scans all of it each time)
        let now: HashMap<OsString, OsString> = std::env::vars_os().collect();
        for name in now.keys() {
            if !self.0.contains_key(name) {
                std::env::remove_var(name);
            }
        }
        for (name, value) in &self.0 {
            if now.get(name) != Some(value) {
                std::env::set_var(name, value);
            }
        }
        for change in changes {
            // names are never empty and hold neither `=` nor NUL, values no NUL (decode)
            match change {
                EnvChange::Set(n, v) => {
                    std::env::set_var(OsStr::from_bytes(n), OsStr::from_bytes(v))
                }
                EnvChange::Unset(n) => std::env::remove_var(OsStr::from_bytes(n)),
            }
        }
        Ok(())
    }
}

/// The threads of this process (`num_threads` in `/proc/self/stat`); 0 when that cannot be
/// read. The file is opened once and read again from its start at each call (procfs makes
/// its content anew for each read): one system call, where listing `/proc/self/task` took
/// five, twice a session.
pub fn threads() -> usize {
    use std::os::unix::fs::FileExt;
    static STAT: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let Some(file) = STAT.get_or_init(|| std::fs::File::open("/proc/self/stat").ok()) else {
        return 0;
    };
    let mut buf = [0u8; 4096];
    match file.read_at(&mut buf, 0) {
        Ok(n) => num_threads(&buf[..n]).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Field 20 of a `/proc/PID/stat` line, `num_threads`: the 18th after the command name, which
/// is in parentheses and may itself hold spaces and parentheses (so the last `)` ends it).
fn num_threads(stat: &[u8]) -> Option<usize> {
    let end = stat.iter().rposition(|&b| b == b')')?;
    let field = stat[end + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty()).nth(17)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: &str, v: &str) -> EnvChange {
        EnvChange::Set(n.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn unset(n: &str) -> EnvChange {
        EnvChange::Unset(n.as_bytes().to_vec())
    }

    #[test]
    fn the_thread_count_comes_from_the_stat_line() {
        let line = b"4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 99 1000";
        assert_eq!(num_threads(line), Some(3));
        assert_eq!(num_threads(b"4242 (qmail-smtpd) S 1"), None);
        assert_eq!(num_threads(b"no parenthesis at all"), None);
        assert_eq!(num_threads(b""), None);
        // this process's own line (other tests start and end threads meanwhile)
        assert!(threads() >= 1);
    }

    #[test]
    fn records_round_trip() {
        let changes = vec![
            set("PROTO", "TCP"),
            set("RELAYCLIENT", ""),
            unset("TCPREMOTEHOST"),
            set("X", "a=b"),
        ];
        let record = encode(&changes);
        assert_eq!(record, b"+PROTO=TCP\0+RELAYCLIENT=\0-TCPREMOTEHOST\0+X=a=b\0");
        assert_eq!(decode(&record), Some(changes));
        assert_eq!(decode(b""), Some(Vec::new()));
    }

    #[test]
    fn hostile_records_are_refused() {
        for bad in [
            &b"+A=1"[..],
            b"\0",
            b"D\0",
            b"+A\0",
            b"+=x\0",
            b"-\0",
            b"-A=B\0",
            b"+A=1\0\0",
            b"+A=1\0junk",
            b"xA=1\0",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sessions_and_answers_cross() {
        let (tcpsrv, worker) = UnixStream::pair().unwrap();
        let (client, _) = UnixStream::pair().unwrap();
        let taker = std::thread::spawn(move || {
            let (_, changes) = receive(&worker).unwrap().unwrap();
            (worker, changes)
        });
        send(&tcpsrv, &client, &Record::new(&[set("A", "1"), unset("B")]).unwrap()).unwrap();
        let (worker, changes) = taker.join().unwrap();
        assert_eq!(changes, [set("A", "1"), unset("B")]);
        answer(&worker, 1).unwrap();
        assert_eq!(answer_of(&tcpsrv), Some(1));
        // a record that is not one is refused, and not acknowledged
        crate::fdpass::send(&tcpsrv, &client, b"D\0").unwrap();
        assert!(receive(&worker).is_err());
        drop(worker);
        assert_eq!(answer_of(&tcpsrv), None);
        // a worker that is gone does not take a session
        assert!(send(&tcpsrv, &client, &Record::new(&[]).unwrap()).is_err());
        let huge = set("X", &"x".repeat(crate::fdpass::RECORD_MAX));
        assert!(Record::new(&[huge]).is_err());
    }
}
