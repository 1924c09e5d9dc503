//! wire: the queue service's protocol (doc/qmail-queue.8, SERVICE MODE; doc/INTERNALS.md,
//! "Wire formats between programs"), both ends.
//!
//! One message per connection on a Unix stream socket:
//!
//! 1. the service greets: a netstring holding its process id in decimal (`5:31337,`), the
//!    `qp` its callers log;
//! 2. the client sends the message as netstrings of 1 to [`CHUNK_MAX`] bytes each, and an
//!    empty one (`0:,`) after the last;
//! 3. the client sends the envelope exactly as qmail-queue reads it on fd 1
//!    (`F<sender>\0T<recipient>\0`...`\0`);
//! 4. the service answers with a netstring holding qmail-queue's exit code in decimal,
//!    optionally followed by a NUL and the custom error text of exit 82 (at most
//!    [`CUSTOM_TEXT_MAX`] bytes), and closes.
//!
//! Instead of step 2 a client may send the single byte [`SYNC_REQUEST`]: a request for a
//! sync of the queue's file system (no message). The service answers `1:0,` once a `syncfs`
//! that started after it read the byte has ended, sharing the round with the messages and
//! the other requests waiting at that moment (a code other than 0 means it failed), and
//! closes. qmail-todo and the delivery workers make their files durable this way
//! ([`crate::queue::sync_fs`]), so that the whole system shares one stream of syncs.
//!
//! Everything the service reads is bounded: a chunk header of at most 6 bytes, a chunk of at
//! most [`CHUNK_MAX`] bytes copied straight through, then the envelope reader's limits.

use crate::exit::CUSTOM_TEXT_MAX;
use crate::netstring;
use std::io::{self, BufRead, Read, Write};

/// The service's socket, relative to the installation root.
pub const SOCKET: &str = "run/qmail-queue.sock";

/// The byte a client sends instead of a message to ask for a sync of the queue's file
/// system. No netstring starts with it.
pub const SYNC_REQUEST: u8 = b'S';

/// The most bytes of message in one chunk.
pub const CHUNK_MAX: usize = 64 * 1024;

/// The most bytes of a greeting's payload (a process id).
pub const GREETING_MAX: usize = 10;

/// The most bytes of an answer's payload: a code, a NUL and the custom text.
pub const ANSWER_MAX: usize = 4 + CUSTOM_TEXT_MAX;

/// The greeting: the serving process's id.
pub fn greeting(pid: u32) -> Vec<u8> {
    netstring::encode(pid.to_string().as_bytes())
}

/// The process id of a greeting's payload.
pub fn parse_greeting(payload: &[u8]) -> Option<u32> {
    decimal(payload)
}

/// The answer: exit code `code`, and `custom` text when there is any.
pub fn answer(code: u8, custom: &[u8]) -> Vec<u8> {
    let mut payload = code.to_string().into_bytes();
    if !custom.is_empty() {
        payload.push(0);
        payload.extend_from_slice(&custom[..custom.len().min(CUSTOM_TEXT_MAX)]);
    }
    netstring::encode(&payload)
}

/// The exit code and custom text of an answer's payload.
pub fn parse_answer(payload: &[u8]) -> Option<(u8, &[u8])> {
    let (code, custom) = match payload.iter().position(|&b| b == 0) {
        Some(nul) => (&payload[..nul], &payload[nul + 1..]),
        None => (payload, &payload[payload.len()..]),
    };
    let code = u8::try_from(decimal(code)?).ok()?;
    (custom.len() <= CUSTOM_TEXT_MAX).then_some((code, custom))
}

/// A decimal number without sign or leading zero, as this protocol writes them.
fn decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok().filter(|_| digits.iter().all(u8::is_ascii_digit))
}

/// The service's side of step 2: the message chunks read as one stream. `Ok(0)` after the
/// empty chunk; an end of input before it is `UnexpectedEof`, a malformed or oversized chunk
/// header `InvalidData`. The envelope is then read from the same input.
pub struct Frames<'a, R> {
    input: &'a mut R,
    /// bytes of the current chunk still to come
    left: usize,
    done: bool,
}

impl<'a, R: BufRead> Frames<'a, R> {
    pub fn new(input: &'a mut R) -> Self {
        Frames { input, left: 0, done: false }
    }
}

impl<R: BufRead> Read for Frames<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            self.left = netstring::read_header(self.input, CHUNK_MAX)?;
            if self.left == 0 {
                netstring::read_comma(self.input)?;
                self.done = true;
                return Ok(0);
            }
        }
        let avail = self.input.fill_buf()?;
        if avail.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = avail.len().min(self.left).min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.input.consume(n);
        self.left -= n;
        if self.left == 0 {
            netstring::read_comma(self.input)?;
        }
        Ok(n)
    }
}

/// The client's side of step 2: what is written goes out in chunks of [`CHUNK_MAX`] bytes;
/// [`FrameWriter::finish`] sends the rest and the empty chunk.
pub struct FrameWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W) -> Self {
        FrameWriter { out, buf: Vec::with_capacity(CHUNK_MAX) }
    }

    /// Send what is buffered and the empty chunk that ends the message.
    pub fn finish(&mut self) -> io::Result<()> {
        self.finish_with(b"")
    }

    /// [`FrameWriter::finish`] and then `trailer` (the envelope), in one write: the service
    /// reads the end of the message and the envelope at one wake-up, not three.
    pub fn finish_with(&mut self, trailer: &[u8]) -> io::Result<()> {
        let mut last = if self.buf.is_empty() {
            Vec::with_capacity(3 + trailer.len())
        } else {
            netstring::encode(&self.buf)
        };
        self.buf.clear();
        last.extend_from_slice(b"0:,");
        last.extend_from_slice(trailer);
        self.out.write_all(&last)
    }

    /// The underlying writer (for the envelope, after [`FrameWriter::finish`]).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn emit(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let frame = netstring::encode(&self.buf);
            self.buf.clear();
            self.out.write_all(&frame)?;
        }
        Ok(())
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_MAX - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_MAX {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message a service reads from `input`, and what is left for the envelope.
    fn frames(input: &[u8]) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut input = io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        let r = Frames::new(&mut input).read_to_end(&mut out).map(|_| out);
        let mut rest = Vec::new();
        input.read_to_end(&mut rest).unwrap();
        (r, rest)
    }

    #[test]
    fn chunks_round_trip() {
        for len in [0, 1, CHUNK_MAX - 1, CHUNK_MAX, CHUNK_MAX + 1, 3 * CHUNK_MAX + 17] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut w = FrameWriter::new(Vec::new());
            // odd write sizes, as callers write
            let mut with = FrameWriter::new(Vec::new());
            for piece in body.chunks(1000) {
                w.write_all(piece).unwrap();
                with.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            let mut wire = w.out;
            wire.extend_from_slice(b"Fa\0\0");
            // the envelope sent with the end of the message is the same bytes
            with.finish_with(b"Fa\0\0").unwrap();
            assert_eq!(with.out, wire, "{len}");
            let (got, rest) = frames(&wire);
            assert_eq!(got.unwrap(), body, "{len}");
            assert_eq!(rest, b"Fa\0\0");
        }
    }

    #[test]
    fn hostile_chunks() {
        let eof = io::ErrorKind::UnexpectedEof;
        let invalid = io::ErrorKind::InvalidData;
        let too_long = format!("{}:", CHUNK_MAX + 1);
        let rows: &[(&[u8], io::ErrorKind)] = &[
            (b"", eof),
            (b"5:hel", eof),
            (b"5:hello", eof),
            (b"5:hello,", eof),
            (b"5:hello,0:", eof),
            (b"5:hello;0:,", invalid),
            (b"0:;", invalid),
            (b"05:hello,0:,", invalid),
            (b"-1:x,0:,", invalid),
            (b":x,0:,", invalid),
            (b"x", invalid),
            (too_long.as_bytes(), invalid),
            (b"99999999999999999999:", invalid),
            (b"1234567", invalid),
        ];
        for (input, want) in rows {
            let (got, _) = frames(input);
            assert_eq!(got.unwrap_err().kind(), *want, "{:?}", String::from_utf8_lossy(input));
        }
        // at the limit is fine
        let mut ok = format!("{CHUNK_MAX}:").into_bytes();
        ok.extend(vec![b'x'; CHUNK_MAX]);
        ok.extend_from_slice(b",0:,");
        assert_eq!(frames(&ok).0.unwrap().len(), CHUNK_MAX);
    }

    #[test]
    fn greetings_and_answers() {
        assert_eq!(greeting(31337), b"5:31337,");
        assert_eq!(parse_greeting(b"31337"), Some(31337));
        for bad in [&b""[..], b"0x1", b"01", b"-1", b"+1", b"99999999999", b"4294967296", b"1 "] {
            assert_eq!(parse_greeting(bad), None, "{bad:?}");
        }
        assert_eq!(answer(0, b""), b"1:0,");
        assert_eq!(answer(82, b"Dno thanks"), b"13:82\0Dno thanks,");
        assert_eq!(parse_answer(b"0"), Some((0, &b""[..])));
        assert_eq!(parse_answer(b"82\0Dno thanks"), Some((82, &b"Dno thanks"[..])));
        assert_eq!(parse_answer(b"256"), None);
        assert_eq!(parse_answer(b""), None);
        assert_eq!(parse_answer(b"\0x"), None);
        let long = [b"82\0".as_slice(), &[b'x'; CUSTOM_TEXT_MAX + 1]].concat();
        assert_eq!(parse_answer(&long), None);
        // an answer's text is cut to the limit when made
        let made = answer(82, &[b'x'; 1000]);
        let payload = netstring::read(&mut &made[..], ANSWER_MAX).unwrap();
        assert_eq!(parse_answer(&payload).unwrap().1.len(), CUSTOM_TEXT_MAX);
    }
}
