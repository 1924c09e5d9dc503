//! queue::records: the records of the queue's files, one encoder and one decoder for every
//! program that writes or reads them (doc/INTERNALS.md, "The queue and its states").
//!
//! Each record is a tag byte, its value and a `\0`:
//!
//! - `intd/id` and `todo/id` (qmail-queue writes, qmail-todo and qmail-qread read): `u`uid,
//!   `p`pid, `F`sender, then `T`recipient for each recipient.
//! - `info/S/id` (qmail-todo writes, qmail-send and qmail-qread read): `F`sender.
//! - `local/S/id`, `remote/S/id` (qmail-todo writes, qmail-send reads and marks, qmail-qread
//!   reads): `T`recipient, which qmail-send overwrites in place with [`DONE`] once the
//!   recipient is finished.

use std::io::{self, Write};

/// The tag qmail-send writes over a `T` when a recipient is finished.
pub const DONE: u8 = b'D';

/// A record of a queue file, borrowed from the bytes before its `\0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// `u`: the real uid of qmail-queue's caller, decimal.
    Uid(&'a [u8]),
    /// `p`: qmail-queue's pid, decimal.
    Pid(&'a [u8]),
    /// `F`: the envelope sender.
    Sender(&'a [u8]),
    /// `T`: a recipient still to be delivered.
    Recipient(&'a [u8]),
    /// `D`: a recipient finished (delivered or bounced).
    Done(&'a [u8]),
}

impl<'a> Record<'a> {
    /// Decode one record (without its `\0`); `None` for an empty record or an unknown tag.
    pub fn parse(rec: &'a [u8]) -> Option<Record<'a>> {
        let (&tag, value) = rec.split_first()?;
        Some(match tag {
            b'u' => Record::Uid(value),
            b'p' => Record::Pid(value),
            b'F' => Record::Sender(value),
            b'T' => Record::Recipient(value),
            DONE => Record::Done(value),
            _ => return None,
        })
    }

    fn parts(self) -> (u8, &'a [u8]) {
        match self {
            Record::Uid(v) => (b'u', v),
            Record::Pid(v) => (b'p', v),
            Record::Sender(v) => (b'F', v),
            Record::Recipient(v) => (b'T', v),
            Record::Done(v) => (DONE, v),
        }
    }

    /// Write the record with its `\0`.
    pub fn write(self, out: &mut impl Write) -> io::Result<()> {
        let (tag, value) = self.parts();
        out.write_all(&[tag])?;
        out.write_all(value)?;
        out.write_all(&[0])
    }
}

/// The complete records of a file's contents, in order; a last record cut short (no `\0`)
/// is not one. Unknown tags are skipped.
pub fn all(data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    data.split_inclusive(|&b| b == 0)
        .filter_map(|r| r.strip_suffix(b"\0"))
        .filter_map(Record::parse)
}

/// The sender of an `info/S/id` file: its first record, `F`sender (a missing `\0` is
/// forgiven); empty when it is anything else.
pub fn info_sender(info: &[u8]) -> Vec<u8> {
    let first = info.split(|&b| b == 0).next().unwrap_or_default();
    match Record::parse(first) {
        Some(Record::Sender(s)) => s.to_vec(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_input() {
        let mut file = Vec::new();
        for r in [
            Record::Uid(b"0"),
            Record::Pid(b"123"),
            Record::Sender(b""),
            Record::Recipient(b"a@b"),
            Record::Done(b"c@d"),
        ] {
            r.write(&mut file).unwrap();
        }
        assert_eq!(file, b"u0\0p123\0F\0Ta@b\0Dc@d\0");
        let back: Vec<Record> = all(&file).collect();
        assert_eq!(back.len(), 5);
        assert_eq!(back[3], Record::Recipient(b"a@b"));
        // a cut record, an empty one and an unknown tag are not records
        let hostile = b"Ta@b\0\0Xjunk\0Tcut";
        assert_eq!(all(hostile).collect::<Vec<_>>(), vec![Record::Recipient(b"a@b")]);
        assert_eq!(Record::parse(b""), None);
    }

    #[test]
    fn senders() {
        assert_eq!(info_sender(b"Fa@b\0"), b"a@b");
        assert_eq!(info_sender(b"F\0"), b"");
        assert_eq!(info_sender(b""), b"");
        assert_eq!(info_sender(b"Fcut"), b"cut", "a missing NUL is forgiven");
        assert_eq!(info_sender(b"Ta@b\0"), b"");
    }
}
