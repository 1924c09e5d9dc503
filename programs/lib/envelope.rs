//! envelope: qmail-queue's envelope format, `F<sender>\0` then `T<recipient>\0`... then `\0`.
//!
//! Reading is bounded and maps each failure to qmail-queue's exit code: EOF before the final
//! NUL is 54, an address over 1002 bytes is 11, a record that does not start with `F` (first)
//! or `T` (after) is 91. Zero recipients is a valid envelope.

use crate::address::{Address, MAX_LEN};
use crate::exit::QueueExit;
use crate::text0::{self, Text0Error};
use std::io::{self, BufRead};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Address,
    pub recipients: Vec<Address>,
}

/// Why an envelope could not be read, with the qmail-queue exit code each one means.
#[derive(Debug)]
pub enum EnvelopeError {
    Truncated,
    TooLong,
    Format,
    Io(io::Error),
}

impl EnvelopeError {
    pub fn exit(&self) -> QueueExit {
        match self {
            EnvelopeError::Truncated | EnvelopeError::Io(_) => QueueExit::ReadError,
            EnvelopeError::TooLong => QueueExit::AddressTooLong,
            EnvelopeError::Format => QueueExit::EnvelopeFormat,
        }
    }
}

impl From<io::Error> for EnvelopeError {
    fn from(e: io::Error) -> Self {
        EnvelopeError::Io(e)
    }
}

impl Envelope {
    pub fn new(sender: Address, recipients: Vec<Address>) -> Self {
        Envelope { sender, recipients }
    }

    /// The wire form, final NUL included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        push_tagged(&mut out, b'F', &self.sender);
        for r in &self.recipients {
            push_tagged(&mut out, b'T', r);
        }
        out.push(0);
        out
    }

    /// Read a whole envelope from `input`, stopping at its final NUL (trailing bytes are not
    /// read). `max_recipients` bounds memory; past it the envelope is a format error. Programs
    /// that must not hold every recipient (qmail-queue) use [`Reader`] instead.
    pub fn read<R: BufRead>(input: &mut R, max_recipients: usize) -> Result<Self, EnvelopeError> {
        let mut reader = Reader::new(input);
        let sender = reader.sender()?;
        let mut recipients = Vec::new();
        while let Some(r) = reader.recipient()? {
            if recipients.len() == max_recipients {
                return Err(EnvelopeError::Format);
            }
            recipients.push(r);
        }
        Ok(Envelope { sender, recipients })
    }
}

/// A streaming envelope reader: [`Reader::sender`] once, then [`Reader::recipient`] until it
/// answers `None` (the final NUL). Memory stays at one address.
pub struct Reader<'a, R> {
    input: &'a mut R,
    rec: Vec<u8>,
}

impl<'a, R: BufRead> Reader<'a, R> {
    pub fn new(input: &'a mut R) -> Self {
        Reader { input, rec: Vec::with_capacity(MAX_LEN + 2) }
    }

    pub fn sender(&mut self) -> Result<Address, EnvelopeError> {
        match self.next()? {
            Record::Addr(b'F') => Address::new(&self.rec[1..]).map_err(|_| EnvelopeError::TooLong),
            Record::TooLong(b'F') => Err(EnvelopeError::TooLong),
            Record::Eof => Err(EnvelopeError::Truncated),
            _ => Err(EnvelopeError::Format),
        }
    }

    pub fn recipient(&mut self) -> Result<Option<Address>, EnvelopeError> {
        match self.next()? {
            Record::End => Ok(None),
            Record::Addr(b'T') => {
                Address::new(&self.rec[1..]).map(Some).map_err(|_| EnvelopeError::TooLong)
            }
            Record::TooLong(b'T') => Err(EnvelopeError::TooLong),
            Record::Eof => Err(EnvelopeError::Truncated),
            _ => Err(EnvelopeError::Format),
        }
    }

    fn next(&mut self) -> Result<Record, EnvelopeError> {
        // the tag byte plus an address of at most MAX_LEN bytes
        Ok(match text0::read_record(self.input, MAX_LEN + 1, &mut self.rec)? {
            None | Some(Err(Text0Error::Truncated)) => Record::Eof,
            Some(Err(Text0Error::TooLong)) => {
                Record::TooLong(self.rec.first().copied().unwrap_or(0))
            }
            Some(Ok(())) => match self.rec.first() {
                None => Record::End,
                Some(&tag) => Record::Addr(tag),
            },
        })
    }
}

fn push_tagged(out: &mut Vec<u8>, tag: u8, addr: &Address) {
    out.push(tag);
    text0::push(out, addr.as_bytes());
}

enum Record {
    /// EOF before a record was complete.
    Eof,
    /// The empty record that ends the envelope.
    End,
    /// A record `<tag><address>`.
    Addr(u8),
    /// A record with this tag, too long to be an address.
    TooLong(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &[u8]) -> Result<Envelope, u8> {
        Envelope::read(&mut io::BufReader::with_capacity(7, data), 100).map_err(|e| e.exit().code())
    }

    fn addr(s: &str) -> Address {
        Address::new(s).unwrap()
    }

    #[test]
    fn table() {
        let long = [b"T".as_slice(), &[b'x'; 1003], b"\0\0"].concat();
        let limit = [b"Fa\0T".as_slice(), &[b'x'; 1002], b"\0\0"].concat();
        let rows: &[(&[u8], Result<usize, u8>)] = &[
            (b"Fa@b\0Tc@d\0\0", Ok(1)),
            (b"F\0\0", Ok(0)),
            (b"Fa@b\0Tc@d\0Te@f\0\0trailing", Ok(2)),
            (b"", Err(54)),
            (b"Fa@b", Err(54)),
            (b"Fa@b\0", Err(54)),
            (b"Fa@b\0Tc@d\0", Err(54)),
            (b"Fa@b\0Tc", Err(54)),
            (b"Xa@b\0\0", Err(91)),
            (b"\0", Err(91)),
            (b"Fa@b\0Fc@d\0\0", Err(91)),
            (b"Fa@b\0xc@d\0\0", Err(91)),
            (&long[..], Err(91)),
            (&[b"Fa\0".as_slice(), &long].concat(), Err(11)),
            (&limit, Ok(1)),
        ];
        for (input, want) in rows {
            let got = parse(input).map(|e| e.recipients.len());
            assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(&input[..input.len().min(40)]));
        }
    }

    #[test]
    fn too_many_recipients_is_a_format_error() {
        let mut data = b"Fa\0".to_vec();
        for _ in 0..101 {
            data.extend_from_slice(b"Tb\0");
        }
        data.push(0);
        assert_eq!(parse(&data), Err(91));
    }

    #[test]
    fn round_trip() {
        let env = Envelope::new(addr(""), vec![addr("a@b"), addr("c")]);
        assert_eq!(env.encode(), b"F\0Ta@b\0Tc\0\0");
        assert_eq!(parse(&env.encode()), Ok(env));
    }
}
