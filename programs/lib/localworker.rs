//! localworker: the wire format between qmail-lspawn and its delivery workers,
//! `qmail-local --worker` (doc/INTERNALS.md, "Delivery workers"; doc/qmail-local.8).
//!
//! The worker finds its end of a Unix stream socket on fd [`WORKER_FD`]. It first writes a
//! hello (an [`Answer`] of kind [`Kind::Hello`]). Then, per delivery, qmail-lspawn sends
//! the message's open descriptor and one record with [`crate::fdpass`]; the record is text0:
//!
//! ```text
//! id\0 user\0 home\0 local\0 dash\0 ext\0 domain\0 sender\0 aliasempty\0 NAME=value\0 ...
//! ```
//!
//! nine fixed fields (`id` decimal, the other eight qmail-local's arguments) and zero or more
//! environment records whose names are [`EnvName`]s, each at most once. The worker answers
//! each request, in any order, with a fixed 8-byte head and a text:
//!
//! ```text
//! id (4 bytes BE)  kind (1 byte)  exit code (1 byte)  text length (2 bytes BE)  text
//! ```
//!
//! Kinds: `H` hello (id 0, code 0, no text), `D` done: the exit code and the text
//! qmail-local would have exited with and printed, `C` the same with the text cut at
//! [`LOCAL_OUTPUT_MAX`], `X` "run me as a process" (code 0, no text). The text is at most
//! [`LOCAL_OUTPUT_MAX`] bytes. Root reads only this head and that many bytes.

use crate::account::EnvName;
use crate::exit::LOCAL_OUTPUT_MAX;
use std::io::{self, Read};
use std::time::Duration;

/// The worker's descriptor of its socket.
pub const WORKER_FD: i32 = 3;

/// A worker unused this long is told to go (its socket closed).
pub const IDLE: Duration = Duration::from_secs(60);

/// A worker is replaced after this many deliveries.
pub const USES: u32 = 1000;

/// One delivery asked of a worker: qmail-local's arguments and this delivery's directory
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    /// user, home, local, dash, ext, domain, sender, aliasempty: qmail-local's arguments.
    pub args: [Vec<u8>; 8],
    pub env: Vec<(EnvName, Vec<u8>)>,
}

impl Request {
    /// The record; `None` when a field holds a NUL (no argument can).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let id = self.id.to_string();
        let env = self.env.iter().map(|(n, v)| [n.as_str().as_bytes(), b"=", v].concat());
        let fields: Vec<Vec<u8>> =
            std::iter::once(id.into_bytes()).chain(self.args.iter().cloned()).chain(env).collect();
        if fields.iter().any(|f| f.contains(&0)) {
            return None;
        }
        for f in &fields {
            crate::text0::push(&mut out, f);
        }
        Some(out)
    }

    /// Decode a record: nine fields, then only whitelisted names, each once; nothing after
    /// the last NUL.
    pub fn decode(record: &[u8]) -> Option<Request> {
        let fields = crate::text0::split(record).ok()?;
        if fields.len() < 9 {
            return None;
        }
        let id = std::str::from_utf8(fields[0]).ok()?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id: u32 = id.parse().ok()?;
        let args: [Vec<u8>; 8] = std::array::from_fn(|i| fields[i + 1].to_vec());
        let mut env: Vec<(EnvName, Vec<u8>)> = Vec::new();
        for f in &fields[9..] {
            let eq = f.iter().position(|&b| b == b'=')?;
            let name = EnvName::parse(&f[..eq])?;
            if env.iter().any(|(n, _)| *n == name) {
                return None;
            }
            env.push((name, f[eq + 1..].to_vec()));
        }
        Some(Request { id, args, env })
    }
}

/// What an answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The worker is up (the first answer, id 0).
    Hello,
    /// Delivered (or failed): exit code and text.
    Done,
    /// As `Done`, the text cut at [`LOCAL_OUTPUT_MAX`].
    Cut,
    /// Not delivered: run qmail-local as a process for this one.
    Exec,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Hello => b'H',
            Kind::Done => b'D',
            Kind::Cut => b'C',
            Kind::Exec => b'X',
        }
    }

    fn parse(b: u8) -> Option<Kind> {
        [Kind::Hello, Kind::Done, Kind::Cut, Kind::Exec].into_iter().find(|k| k.byte() == b)
    }
}

/// A worker's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: u32,
    pub kind: Kind,
    pub code: u8,
    /// At most [`LOCAL_OUTPUT_MAX`] bytes.
    pub text: Vec<u8>,
}

impl Answer {
    /// The answer for qmail-local's exit `code` and everything it printed, cut to the limit.
    pub fn done(id: u32, code: u8, mut text: Vec<u8>) -> Answer {
        let kind = if text.len() > LOCAL_OUTPUT_MAX { Kind::Cut } else { Kind::Done };
        text.truncate(LOCAL_OUTPUT_MAX);
        Answer { id, kind, code, text }
    }

    pub fn exec(id: u32) -> Answer {
        Answer { id, kind: Kind::Exec, code: 0, text: Vec::new() }
    }

    pub fn hello() -> Answer {
        Answer { id: 0, kind: Kind::Hello, code: 0, text: Vec::new() }
    }

    pub fn encode(&self) -> Vec<u8> {
        let text = &self.text[..self.text.len().min(LOCAL_OUTPUT_MAX)];
        let mut out = Vec::with_capacity(8 + text.len());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.kind.byte());
        out.push(self.code);
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text);
        out
    }

    /// Read one answer; `Ok(None)` at a clean end of input. A bad head (unknown kind, a text
    /// over the limit) or an end in the middle is an error.
    pub fn read(input: &mut impl Read) -> io::Result<Option<Answer>> {
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            match input.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = Kind::parse(head[4]).ok_or_else(|| bad("unknown answer kind"))?;
        let len = usize::from(u16::from_be_bytes([head[6], head[7]]));
        if len > LOCAL_OUTPUT_MAX {
            return Err(bad("answer text too long"));
        }
        let mut text = vec![0u8; len];
        input.read_exact(&mut text)?;
        Ok(Some(Answer { id, kind, code: head[5], text }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            id: 42,
            args: [
                b"joe".to_vec(),
                b"/home/joe".to_vec(),
                b"joe-x".to_vec(),
                b"-".to_vec(),
                b"x".to_vec(),
                b"example.org".to_vec(),
                b"".to_vec(),
                b"./Maildir/".to_vec(),
            ],
            env: vec![(EnvName::MaildirQuota, b"1000S".to_vec()), (EnvName::Mode, b"".to_vec())],
        }
    }

    #[test]
    fn requests_round_trip() {
        let r = request();
        assert_eq!(Request::decode(&r.encode().unwrap()), Some(r.clone()));
        let mut plain = r.clone();
        plain.env.clear();
        assert_eq!(Request::decode(&plain.encode().unwrap()), Some(plain));
        let mut nul = r;
        nul.args[6] = b"a\0b".to_vec();
        assert_eq!(nul.encode(), None);
    }

    #[test]
    fn hostile_requests_are_refused() {
        let good = request().encode().unwrap();
        let rows: &[&[u8]] = &[
            b"",
            b"1\0a\0b\0c\0d\0e\0f\0g\0",
            b"x\0a\0/h\0c\0d\0e\0f\0g\0h\0",
            b"\0a\0/h\0c\0d\0e\0f\0g\0h\0",
            b"-1\0a\0/h\0c\0d\0e\0f\0g\0h\0",
            b"99999999999\0a\0/h\0c\0d\0e\0f\0g\0h\0",
            b"1\0a\0/h\0c\0d\0e\0f\0g\0h\0PATH=/x\0",
            b"1\0a\0/h\0c\0d\0e\0f\0g\0h\0MAILDIRQUOTA\0",
            b"1\0a\0/h\0c\0d\0e\0f\0g\0h\0QMAILMODE=a\0QMAILMODE=b\0",
            b"1\0a\0/h\0c\0d\0e\0f\0g\0h\0qmailmode=a\0",
            b"1\0a\0/h\0c\0d\0e\0f\0g\0h",
        ];
        for row in rows {
            assert_eq!(Request::decode(row), None, "{:?}", String::from_utf8_lossy(row));
        }
        assert!(Request::decode(&good).is_some());
        assert!(Request::decode(&good[..good.len() - 1]).is_none(), "no final NUL");
    }

    #[test]
    fn answers_round_trip_and_are_bounded() {
        let answers = [
            Answer::hello(),
            Answer::exec(7),
            Answer::done(8, 111, b"Unable to deliver. (#4.3.0)\n".to_vec()),
            Answer::done(u32::MAX, 0, b"did 1+0+0\n".to_vec()),
        ];
        let mut wire = Vec::new();
        for a in &answers {
            wire.extend(a.encode());
        }
        let mut r = &wire[..];
        for a in &answers {
            assert_eq!(Answer::read(&mut r).unwrap().as_ref(), Some(a));
        }
        assert_eq!(Answer::read(&mut r).unwrap(), None);
        let long = Answer::done(1, 0, vec![b'x'; 10_000]);
        assert_eq!((long.kind, long.text.len()), (Kind::Cut, LOCAL_OUTPUT_MAX));
    }

    #[test]
    fn hostile_answers_are_refused() {
        let rows: &[&[u8]] = &[
            b"\0\0\0\x01Q\0\0\0",
            b"\0\0\0\x01D\0\x0b\xb9",
            b"\0\0\0\x01D\0\0\x05abc",
            b"\0\0\0",
            b"\0\0\0\x01D\0\xff\xff",
        ];
        for row in rows {
            assert!(Answer::read(&mut &row[..]).is_err(), "{row:?}");
        }
    }
}
