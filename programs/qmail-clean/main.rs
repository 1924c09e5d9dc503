//! qmail-clean: remove a message's queue files on request (spec pipeline §2.13).
//!
//! Run by qmail-start as qmailq, one for qmail-send and one for qmail-todo, with requests on
//! stdin and replies on stdout; no arguments. It works in `QMAILHOME/queue`.
//!
//! - Request: `foop/<id>` or `todo/<id>` followed by `\0`, 6 to 99 bytes before the `\0`,
//!   digits only after the prefix. `foop/<id>` unlinks `intd/<id>` and `mess/<id mod 23>/<id>`;
//!   `todo/<id>` unlinks `intd/<id>` and `todo/<id>`. A file that is already gone is fine.
//! - Reply, one byte, flushed at once: `+` done, `!` an unlink failed (other than ENOENT),
//!   `x` bad request.
//! - At start and about every 30 requests it also removes `pid/*` files not accessed for 36
//!   hours (left behind by a qmail-queue that died).
//!
//! Exit codes: 0 at end of input; 111 when it cannot enter the queue, read its input or write
//! a reply.
//!
//! Security: it only ever unlinks names it builds itself from a decimal id, so a request can
//! name no other file. A request longer than the limit is skipped to its `\0` without being
//! stored.

use qmail::{auto, exit};
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The longest request, without its `\0`.
const MAX_REQUEST: usize = 99;
/// The shortest request, without its `\0` (`foop/` and one digit).
const MIN_REQUEST: usize = 6;
/// A `pid/` file not accessed for this long is debris (upstream's OSSIFIED).
const OSSIFIED: Duration = Duration::from_secs(129_600);
/// Requests between two sweeps of `pid/`.
const SWEEP_EVERY: u32 = 30;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            qmail::log::line(format_args!("qmail-clean: fatal: {why}"));
            ExitCode::from(exit::TEMP)
        }
    }
}

fn run() -> Result<(), String> {
    let queue = auto::home().join("queue");
    std::env::set_current_dir(&queue)
        .map_err(|e| format!("unable to switch to {}: {e}", queue.display()))?;
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut requests = Requests::default();
    sweep_pid(Path::new("pid"), SystemTime::now());
    let mut until_sweep = SWEEP_EVERY;
    let mut buf = [0u8; 4096];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("unable to read requests: {e}")),
        };
        for &byte in &buf[..n] {
            let Some(request) = requests.push(byte) else { continue };
            let reply = match request {
                Some(req) => req.carry_out(),
                None => b'x',
            };
            output
                .write_all(&[reply])
                .and_then(|()| output.flush())
                .map_err(|e| format!("unable to write a reply: {e}"))?;
            until_sweep -= 1;
            if until_sweep == 0 {
                sweep_pid(Path::new("pid"), SystemTime::now());
                until_sweep = SWEEP_EVERY;
            }
        }
    }
}

/// A valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// `foop/<id>`: the message was never fully queued, or is done.
    Foop(u64),
    /// `todo/<id>`: the envelope was preprocessed.
    Todo(u64),
}

impl Request {
    /// Parse the bytes before the `\0`.
    fn parse(raw: &[u8]) -> Option<Request> {
        if !(MIN_REQUEST..=MAX_REQUEST).contains(&raw.len()) {
            return None;
        }
        let (prefix, digits) = raw.split_at(5);
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // all digits, at most 94 of them: only overflow can fail
        let id: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        match prefix {
            b"foop/" => Some(Request::Foop(id)),
            b"todo/" => Some(Request::Todo(id)),
            _ => None,
        }
    }

    /// The files to remove, relative to the queue.
    fn files(self) -> [PathBuf; 2] {
        match self {
            Request::Foop(id) => {
                [format!("intd/{id}").into(), format!("mess/{}/{id}", id % auto::SPLIT).into()]
            }
            Request::Todo(id) => [format!("intd/{id}").into(), format!("todo/{id}").into()],
        }
    }

    /// Unlink the files; the reply byte.
    fn carry_out(self) -> u8 {
        for file in self.files() {
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(_) => return b'!',
            }
        }
        b'+'
    }
}

/// Splits the input into requests, storing at most [`MAX_REQUEST`] + 1 bytes of one.
#[derive(Debug, Default)]
struct Requests {
    buf: Vec<u8>,
    /// the current request is too long: drop bytes until its `\0`
    overlong: bool,
}

impl Requests {
    /// Take one byte; at a `\0`, the request it ends (`None` inside: a bad request).
    fn push(&mut self, byte: u8) -> Option<Option<Request>> {
        if byte != 0 {
            if self.buf.len() > MAX_REQUEST {
                self.overlong = true;
            } else {
                self.buf.push(byte);
            }
            return None;
        }
        let request = if self.overlong { None } else { Request::parse(&self.buf) };
        self.buf.clear();
        self.overlong = false;
        Some(request)
    }
}

/// Remove the files in `pid/` last accessed more than [`OSSIFIED`] before `now`. Failures
/// are left for the next sweep.
fn sweep_pid(dir: &Path, now: SystemTime) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let old =
            meta.accessed().ok().and_then(|a| a.checked_add(OSSIFIED)).is_some_and(|t| t < now);
        if old {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8]) -> Vec<Option<Request>> {
        let mut r = Requests::default();
        input.iter().filter_map(|&b| r.push(b)).collect()
    }

    #[test]
    fn requests() {
        use Request::*;
        let rows: &[(&[u8], Option<Request>)] = &[
            (b"foop/1", Some(Foop(1))),
            (b"todo/457", Some(Todo(457))),
            (b"foop/0457", Some(Foop(457))),
            (b"foop/", None),
            (b"todo/", None),
            (b"foop", None),
            (b"", None),
            (b"fooq/1", None),
            (b"FOOP/1", None),
            (b"foop/1a", None),
            (b"foop/-1", None),
            (b"foop/+1", None),
            (b"foop/1 ", None),
            (b"foop/../1", None),
            (b"todo/1/2", None),
            (b"foop/18446744073709551615", Some(Foop(u64::MAX))),
            (b"foop/18446744073709551616", None),
        ];
        for (raw, want) in rows {
            assert_eq!(&Request::parse(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
        assert_eq!(Foop(470).files(), [PathBuf::from("intd/470"), PathBuf::from("mess/10/470")]);
        assert_eq!(Todo(470).files(), [PathBuf::from("intd/470"), PathBuf::from("todo/470")]);
    }

    #[test]
    fn lengths() {
        // 99 bytes before the NUL is the most; the digits themselves overflow a u64 though
        let zeros = |n: usize| [b"todo/".as_slice(), &vec![b'0'; n - 6], b"7"].concat();
        assert_eq!(Request::parse(&zeros(99)), Some(Request::Todo(7)));
        assert_eq!(Request::parse(&zeros(100)), None);
    }

    #[test]
    fn hostile_streams() {
        let long = [vec![b'1'; 100_000], vec![0]].concat();
        let input = [b"foop/1\0".as_slice(), &long, b"todo/2\0\0\0", b"todo/3"].concat();
        let got = split(&input);
        assert_eq!(got, vec![Some(Request::Foop(1)), None, Some(Request::Todo(2)), None, None]);
        let mut r = Requests::default();
        for _ in 0..1_000_000 {
            r.push(b'9');
        }
        assert!(r.buf.len() <= MAX_REQUEST + 1);
    }
}
