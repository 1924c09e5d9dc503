//! clean: the protocol between qmail-clean and its two clients, qmail-send and qmail-todo
//! (doc/qmail-clean.8). Both ends use this module.
//!
//! - Request: `foop/<id>` or `todo/<id>` followed by `\0`, 6 to 99 bytes before the `\0`,
//!   digits only after the prefix. `foop/<id>` removes `intd/<id>` and `mess/<id mod SPLIT>/<id>`;
//!   `todo/<id>` removes `intd/<id>` and `todo/<id>`.
//! - Reply, one byte: `+` done, `!` an unlink failed (other than "no such file"), `x` bad
//!   request.
//!
//! A client that loses qmail-clean (a write fails, or the reply is end of file) gets
//! [`CleanError::Lost`]: the caller must treat it as fatal and exit, so that its supervisor
//! restarts the whole set (a message can never be finished without qmail-clean).

use crate::queue::split_name;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// The longest request, without its `\0`.
pub const MAX_REQUEST: usize = 99;
/// The shortest request, without its `\0` (`foop/` and one digit).
pub const MIN_REQUEST: usize = 6;
/// The most requests a client sends before it reads their replies
/// ([`Client::requests`]): 256 replies always fit a pipe, so qmail-clean never waits for
/// the client to read while the client waits for it to read.
pub const BATCH: usize = 256;

/// A valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `foop/<id>`: the message was never fully queued, or is done.
    Foop(u64),
    /// `todo/<id>`: the envelope was preprocessed.
    Todo(u64),
}

impl Request {
    /// Parse the bytes before the `\0`.
    pub fn parse(raw: &[u8]) -> Option<Request> {
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

    /// The request on the wire, with its `\0`.
    pub fn encode(self) -> Vec<u8> {
        match self {
            Request::Foop(id) => format!("foop/{id}\0"),
            Request::Todo(id) => format!("todo/{id}\0"),
        }
        .into_bytes()
    }

    /// The files to remove, relative to the queue: a name, then the inode's last name (which
    /// qmail-clean may recycle, doc/INTERNALS.md "Recycled queue files").
    pub fn files(self) -> [PathBuf; 2] {
        match self {
            Request::Foop(id) => [format!("intd/{id}").into(), split_name("mess", id).into()],
            Request::Todo(id) => [format!("intd/{id}").into(), format!("todo/{id}").into()],
        }
    }
}

/// Splits qmail-clean's input into requests, storing at most [`MAX_REQUEST`] + 1 bytes of one.
#[derive(Debug, Default)]
pub struct Requests {
    buf: Vec<u8>,
    /// the current request is too long: drop bytes until its `\0`
    overlong: bool,
}

impl Requests {
    /// Take one byte; at a `\0`, the request it ends (`None` inside: a bad request).
    pub fn push(&mut self, byte: u8) -> Option<Option<Request>> {
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

/// Why a request was not carried out.
#[derive(Debug)]
pub enum CleanError {
    /// qmail-clean is gone: fatal for the client.
    Lost(String),
    /// qmail-clean answered, but did not remove the files (`!`) or refused the request (`x`):
    /// try again later.
    Refused(Request, u8),
}

impl std::fmt::Display for CleanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CleanError::Lost(why) => write!(f, "lost the qmail-clean connection: {why}"),
            CleanError::Refused(req, reply) => {
                let req = String::from_utf8_lossy(&req.encode()).trim_end_matches('\0').to_string();
                write!(f, "qmail-clean answered {} to {req}", char::from(*reply))
            }
        }
    }
}

/// The client end: requests on `to`, replies from `from`.
pub struct Client {
    to: File,
    from: File,
}

impl Client {
    pub fn new(to: File, from: File) -> Self {
        Client { to, from }
    }

    /// Send one request and wait for its reply.
    pub fn request(&mut self, request: Request) -> Result<(), CleanError> {
        self.requests(&[request]).pop().unwrap_or_else(|| Err(CleanError::Lost("no reply".into())))
    }

    /// Send `requests` [`BATCH`] at a time, each batch at once, and read its replies, in order:
    /// qmail-clean carries out a batch at one wake-up and answers it at once, and so does the
    /// caller read it (bounded, so that neither side ever waits on a full pipe while the other
    /// does). A lost qmail-clean fails the request it happened at and every one after it.
    pub fn requests(&mut self, requests: &[Request]) -> Vec<Result<(), CleanError>> {
        let mut results = Vec::with_capacity(requests.len());
        let mut lost: Option<String> = None;
        for batch in requests.chunks(BATCH) {
            if lost.is_none() {
                let wire: Vec<u8> = batch.iter().flat_map(|r| r.encode()).collect();
                if let Err(e) = self.to.write_all(&wire) {
                    lost = Some(e.to_string());
                }
            }
            let mut replies = Vec::with_capacity(batch.len());
            let mut buf = [0u8; BATCH];
            while replies.len() < batch.len() && lost.is_none() {
                let want = batch.len() - replies.len();
                match crate::timeoutio::read(&mut self.from, &mut buf[..want]) {
                    Ok(0) => lost = Some("end of file".to_string()),
                    Ok(n) => replies.extend_from_slice(&buf[..n]),
                    Err(e) => lost = Some(e.to_string()),
                }
            }
            let mut replies = replies.into_iter();
            results.extend(batch.iter().map(|&request| match replies.next() {
                Some(b'+') => Ok(()),
                Some(b) => Err(CleanError::Refused(request, b)),
                None => Err(CleanError::Lost(lost.clone().unwrap_or_default())),
            }));
        }
        results
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
        assert_eq!(Foop(470).files(), [PathBuf::from("intd/470"), split_name("mess", 470).into()]);
        assert_eq!(Todo(470).files(), [PathBuf::from("intd/470"), PathBuf::from("todo/470")]);
        for r in [Foop(0), Todo(470), Foop(u64::MAX)] {
            let wire = r.encode();
            assert_eq!(split(&wire), vec![Some(r)], "encode and parse agree");
        }
    }

    /// A batch is sent at once and its replies read in order; a qmail-clean that goes away
    /// fails the request it happened at and every one after it.
    #[test]
    fn a_batch_of_requests_and_its_replies() {
        use std::io::Read;
        let (req_r, req_w) = nix::unistd::pipe().unwrap();
        let (rep_r, rep_w) = nix::unistd::pipe().unwrap();
        let clean = std::thread::spawn(move || {
            let (mut input, mut output) = (File::from(req_r), File::from(rep_w));
            let mut got = Vec::new();
            let mut parser = Requests::default();
            let mut buf = [0u8; 64];
            while got.len() < 3 {
                let n = input.read(&mut buf).unwrap();
                got.extend(buf[..n].iter().filter_map(|&b| parser.push(b)).flatten());
            }
            // two replies in two writes, then gone before the third
            output.write_all(b"+").unwrap();
            output.write_all(b"!").unwrap();
            got
        });
        let mut client = Client::new(File::from(req_w), File::from(rep_r));
        let batch = [Request::Todo(1), Request::Foop(2), Request::Todo(3)];
        let replies = client.requests(&batch);
        assert_eq!(clean.join().unwrap(), batch, "sent in order");
        assert!(replies[0].is_ok());
        assert!(matches!(replies[1], Err(CleanError::Refused(Request::Foop(2), b'!'))));
        assert!(matches!(&replies[2], Err(CleanError::Lost(why)) if why == "end of file"));
        // and a single request to a qmail-clean that is gone
        assert!(matches!(client.request(Request::Foop(4)), Err(CleanError::Lost(_))));
    }

    /// More requests than a batch holds go [`BATCH`] at a time: the client reads each batch's
    /// replies before it sends the next, so a qmail-clean that answers as it reads never
    /// blocks on a full pipe, however many requests there are.
    #[test]
    fn many_requests_go_a_batch_at_a_time() {
        use std::io::Read;
        let (req_r, req_w) = nix::unistd::pipe().unwrap();
        let (rep_r, rep_w) = nix::unistd::pipe().unwrap();
        let n: u64 = 100_000;
        let clean = std::thread::spawn(move || {
            let (mut input, mut output) = (File::from(req_r), File::from(rep_w));
            let mut parser = Requests::default();
            let mut buf = [0u8; 4096];
            let mut seen = 0u64;
            loop {
                let got = input.read(&mut buf).unwrap();
                if got == 0 {
                    return seen;
                }
                let mut replies = Vec::new();
                for r in buf[..got].iter().filter_map(|&b| parser.push(b)) {
                    seen += 1;
                    replies.push(if r == Some(Request::Foop(seen)) { b'+' } else { b'x' });
                }
                output.write_all(&replies).unwrap();
            }
        });
        let mut client = Client::new(File::from(req_w), File::from(rep_r));
        let batch: Vec<_> = (1..=n).map(Request::Foop).collect();
        let replies = client.requests(&batch);
        drop(client);
        assert_eq!(clean.join().unwrap(), n);
        assert!(replies.iter().all(Result::is_ok), "in order, each answered");
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

    #[test]
    fn a_lost_peer_is_told_apart_from_a_refusal() {
        let pipe = || {
            let (r, w) = nix::unistd::pipe().unwrap();
            (File::from(r), File::from(w))
        };
        // the peer answers `!`, then goes away
        let (req_r, req_w) = pipe();
        let (rep_r, mut rep_w) = pipe();
        rep_w.write_all(b"!").unwrap();
        drop(rep_w);
        let mut client = Client::new(req_w, rep_r);
        assert!(matches!(client.request(Request::Foop(1)), Err(CleanError::Refused(_, b'!'))));
        assert!(matches!(client.request(Request::Foop(2)), Err(CleanError::Lost(_))));
        // nobody reads the requests any more: a write fails (EPIPE, SIGPIPE is ignored)
        drop(req_r);
        assert!(matches!(client.request(Request::Todo(3)), Err(CleanError::Lost(_))));
    }
}
