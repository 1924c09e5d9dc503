//! todo: the protocol between qmail-send and qmail-todo (doc/INTERNALS.md, "The delivery
//! processes"; doc/qmail-todo.8). Both ends use this module.
//!
//! - Command (send → todo), one byte: `S` start (the queue scan is done), `H` re-read the
//!   control files, `X` finish. Other bytes are ignored.
//! - Record (todo → send), ended by `\0`: `D` with `L`, `R`, `B` or `X` and the decimal id
//!   (the message is preprocessed: schedule it for local, remote, both or completion); `L` and
//!   a log line ending in `\n`; `X` (qmail-todo is finishing).
//!
//! The record decoder is sans-I/O and bounded: it keeps at most [`MAX_RECORD`] + 1 bytes of
//! one record, and a longer record is skipped up to its `\0` and reported once.

/// The longest record qmail-send accepts, without its `\0`.
pub const MAX_RECORD: usize = 10000;

/// A command from qmail-send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `S`: the queue scan is complete, start preprocessing.
    Start,
    /// `H`: re-read the control files.
    Reload,
    /// `X`: finish.
    Exit,
}

impl Command {
    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Command::Start => b'S',
            Command::Reload => b'H',
            Command::Exit => b'X',
        }
    }

    /// The command a byte stands for (`None`: not a command, to be ignored).
    pub fn parse(byte: u8) -> Option<Command> {
        match byte {
            b'S' => Some(Command::Start),
            b'H' => Some(Command::Reload),
            b'X' => Some(Command::Exit),
            _ => None,
        }
    }
}

/// The channels a preprocessed message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// `L`
    Local,
    /// `R`
    Remote,
    /// `B`
    Both,
    /// `X`: no recipient at all; the message only needs completing.
    Neither,
}

impl Channels {
    /// From whether the message has local and remote recipients.
    pub fn of(local: bool, remote: bool) -> Channels {
        match (local, remote) {
            (true, true) => Channels::Both,
            (true, false) => Channels::Local,
            (false, true) => Channels::Remote,
            (false, false) => Channels::Neither,
        }
    }

    fn letter(self) -> u8 {
        match self {
            Channels::Local => b'L',
            Channels::Remote => b'R',
            Channels::Both => b'B',
            Channels::Neither => b'X',
        }
    }
}

/// A record from qmail-todo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `D<L|R|B|X><id>`: message `id` is preprocessed.
    Done(Channels, u64),
    /// `L<line>\n`: a line for qmail-send's log, without its trailing newlines.
    Log(Vec<u8>),
    /// `X`: qmail-todo is finishing.
    Exit,
}

impl Record {
    /// The record on the wire, with its `\0`. A NUL inside a log line would end the record:
    /// the line is cut there.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Record::Done(channels, id) => {
                out.push(b'D');
                out.push(channels.letter());
                out.extend_from_slice(id.to_string().as_bytes());
            }
            Record::Log(line) => {
                let end = line.iter().position(|&b| b == 0).unwrap_or(line.len());
                out.reserve(line.len() + 3);
                out.push(b'L');
                out.extend_from_slice(&line[..end]);
                out.push(b'\n');
            }
            Record::Exit => out.push(b'X'),
        }
        out.push(0);
        out
    }

    /// Parse the bytes before the `\0`.
    pub fn parse(raw: &[u8]) -> Option<Record> {
        match raw.split_first()? {
            (b'L', line) => {
                let end = line.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
                Some(Record::Log(line[..end].to_vec()))
            }
            (b'X', []) => Some(Record::Exit),
            (b'D', rest) => {
                let (&letter, digits) = rest.split_first()?;
                let channels = match letter {
                    b'L' => Channels::Local,
                    b'R' => Channels::Remote,
                    b'B' => Channels::Both,
                    b'X' => Channels::Neither,
                    _ => return None,
                };
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                // all digits: only overflow can fail
                let id = std::str::from_utf8(digits).ok()?.parse().ok()?;
                Some(Record::Done(channels, id))
            }
            _ => None,
        }
    }
}

/// Why the decoder gave no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The record is not one of the three kinds.
    Bad,
    /// The record exceeded [`MAX_RECORD`]; it was skipped.
    TooLong,
}

/// Splits qmail-todo's output into records.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// the current record is too long: drop bytes until its `\0`
    overlong: bool,
    /// records ended, in order, not yet taken
    ready: std::collections::VecDeque<Result<Record, RecordError>>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        for &byte in data {
            if byte != 0 {
                if self.buf.len() < MAX_RECORD {
                    self.buf.push(byte);
                } else if !self.overlong {
                    self.overlong = true;
                    self.buf.clear();
                    self.ready.push_back(Err(RecordError::TooLong));
                }
                continue;
            }
            if !self.overlong {
                self.ready.push_back(Record::parse(&self.buf).ok_or(RecordError::Bad));
            }
            self.buf.clear();
            self.overlong = false;
        }
    }

    /// The next record ended so far, `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Record, RecordError>> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> Vec<Result<Record, RecordError>> {
        let mut d = Decoder::new();
        d.feed(input);
        std::iter::from_fn(|| d.next()).collect()
    }

    #[test]
    fn commands() {
        for c in [Command::Start, Command::Reload, Command::Exit] {
            assert_eq!(Command::parse(c.byte()), Some(c));
        }
        assert_eq!(Command::parse(b's'), None);
        assert_eq!(Command::parse(0), None);
    }

    #[test]
    fn records() {
        use Channels::*;
        use Record::*;
        let rows: &[(&[u8], Option<Record>)] = &[
            (b"DL457", Some(Done(Local, 457))),
            (b"DR1", Some(Done(Remote, 1))),
            (b"DB0", Some(Done(Both, 0))),
            (b"DX18446744073709551615", Some(Done(Neither, u64::MAX))),
            (b"DX18446744073709551616", None),
            (b"DL", None),
            (b"D", None),
            (b"DQ1", None),
            (b"DL+1", None),
            (b"DL-1", None),
            (b"DL1 ", None),
            (b"X", Some(Exit)),
            (b"Xjunk", None),
            (b"Lnew msg 457\n", Some(Log(b"new msg 457".to_vec()))),
            (b"Lno newline", Some(Log(b"no newline".to_vec()))),
            (b"L\n\n", Some(Log(Vec::new()))),
            (b"L", Some(Log(Vec::new()))),
            (b"", None),
            (b"Q", None),
        ];
        for (raw, want) in rows {
            assert_eq!(&Record::parse(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let records = [
            Record::Done(Channels::Both, 12),
            Record::Log(b"status: qmail-todo reread control files".to_vec()),
            Record::Done(Channels::Neither, 0),
            Record::Exit,
        ];
        let wire: Vec<u8> = records.iter().flat_map(Record::encode).collect();
        assert_eq!(&wire[..5], b"DB12\0");
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            got.extend(std::iter::from_fn(|| d.next()));
        }
        assert_eq!(got, records.map(Ok));
        assert_eq!(Channels::of(true, false), Channels::Local);
        assert_eq!(Channels::of(false, false), Channels::Neither);
    }

    #[test]
    fn a_nul_cannot_end_a_log_line_early() {
        let wire = Record::Log(b"a\0DL1".to_vec()).encode();
        assert_eq!(wire, b"La\n\0");
    }

    #[test]
    fn hostile_streams() {
        let long = [b"L".as_slice(), &vec![b'x'; 100_000], b"\0"].concat();
        let input = [b"DL1\0".as_slice(), &long, b"X\0\0DZ9\0DR2"].concat();
        let got = decode(&input);
        assert_eq!(
            got,
            vec![
                Ok(Record::Done(Channels::Local, 1)),
                Err(RecordError::TooLong),
                Ok(Record::Exit),
                Err(RecordError::Bad),
                Err(RecordError::Bad),
            ]
        );
        // the longest record passes, one byte more does not
        let at = |n: usize| [b"L".as_slice(), &vec![b'y'; n - 1], b"\0"].concat();
        assert!(matches!(decode(&at(MAX_RECORD))[..], [Ok(Record::Log(_))]));
        assert_eq!(decode(&at(MAX_RECORD + 1)), vec![Err(RecordError::TooLong)]);
        let mut d = Decoder::new();
        for _ in 0..1_000_000 {
            d.feed(b"9");
        }
        assert!(d.buf.len() <= MAX_RECORD);
        assert_eq!(d.ready.len(), 1);
    }
}
