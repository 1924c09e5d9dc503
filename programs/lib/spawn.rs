//! spawn: the protocol between qmail-send and its spawners, qmail-lspawn and qmail-rspawn
//! (doc/INTERNALS.md, "The spawn protocol"), with qmail-ldap's two-byte little-endian slot numbers.
//!
//! - Handshake: the spawner writes its slot limit as 2 bytes LE.
//! - Command (send → spawner): slot (2 bytes LE), `S/ID\0`, `SENDER\0`, `RECIPIENT\0`. The
//!   slot [`RELOAD`] (`EF BE`) with three empty strings asks qmail-lspawn to re-read its
//!   control files; it gets no reply.
//! - Report (spawner → send): slot (2 bytes LE), one letter `K`/`Z`/`D` (or `L`, a log line
//!   while the delivery goes on), free text, `\0`.
//!
//! Both decoders are sans-I/O and bounded: feed them bytes, take whole frames out.

/// The slot number of the reload command.
pub const RELOAD: u16 = 0xBEEF;

/// The slot limit the spawners announce (qmail-ldap's default).
pub const LIMIT: u16 = 500;

/// The longest message path (`S/ID`) in a command.
pub const MAX_MESSAGE: usize = 100;

/// The longest address in a command (qmail-queue's limit plus room for a virtual-domain
/// prefix).
pub const MAX_ADDRESS: usize = 2048;

/// The longest report text qmail-send keeps.
pub const MAX_REPORT: usize = 10000;

/// One delivery request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub slot: u16,
    /// `S/ID`, relative to `queue/mess`.
    pub message: Vec<u8>,
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            2 + self.message.len() + self.sender.len() + self.recipient.len() + 3,
        );
        out.extend_from_slice(&self.slot.to_le_bytes());
        for field in [&self.message, &self.sender, &self.recipient] {
            crate::text0::push(&mut out, field);
        }
        out
    }

    pub fn is_reload(&self) -> bool {
        self.slot == RELOAD
    }

    /// The reload command.
    pub fn reload() -> Self {
        Command { slot: RELOAD, message: Vec::new(), sender: Vec::new(), recipient: Vec::new() }
    }
}

/// One delivery result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub slot: u16,
    /// `K` success, `Z` temporary, `D` permanent, `L` log line (slot stays busy).
    pub letter: u8,
    pub text: Vec<u8>,
}

impl Report {
    /// The wire form; NUL bytes in the text are cut there (they would end the record).
    pub fn encode(&self) -> Vec<u8> {
        let text = match self.text.iter().position(|&b| b == 0) {
            Some(i) => &self.text[..i],
            None => &self.text[..],
        };
        let mut out = Vec::with_capacity(text.len() + 4);
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.push(self.letter);
        out.extend_from_slice(text);
        out.push(0);
        out
    }
}

/// A field exceeded its limit: the peer is broken, the stream cannot be trusted further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mangled;

/// Decodes commands from a byte stream.
#[derive(Debug, Default)]
pub struct CommandDecoder {
    buf: Vec<u8>,
}

impl CommandDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole command, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Command>, Mangled> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let mut fields: [&[u8]; 3] = [&[], &[], &[]];
        let mut pos = 2;
        for (i, limit) in [MAX_MESSAGE, MAX_ADDRESS, MAX_ADDRESS].into_iter().enumerate() {
            let rest = &self.buf[pos..];
            match rest.iter().take(limit + 1).position(|&b| b == 0) {
                Some(n) => {
                    fields[i] = &rest[..n];
                    pos += n + 1;
                }
                None if rest.len() > limit => return Err(Mangled),
                None => return Ok(None),
            }
        }
        let cmd = Command {
            slot: u16::from_le_bytes([self.buf[0], self.buf[1]]),
            message: fields[0].to_vec(),
            sender: fields[1].to_vec(),
            recipient: fields[2].to_vec(),
        };
        self.buf.drain(..pos);
        Ok(Some(cmd))
    }
}

/// Decodes reports from a byte stream; texts longer than [`MAX_REPORT`] are cut (the rest of
/// the record is skipped), as qmail-send does.
#[derive(Debug, Default)]
pub struct ReportDecoder {
    buf: Vec<u8>,
    /// skipping the tail of an over-long report
    skipping: bool,
}

impl ReportDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.skipping {
            if let Some(i) = data.iter().position(|&b| b == 0) {
                self.skipping = false;
                self.buf.extend_from_slice(&data[i + 1..]);
            }
        } else {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next whole report, `None` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Report> {
        if self.buf.len() < 3 {
            return None;
        }
        let slot = u16::from_le_bytes([self.buf[0], self.buf[1]]);
        let letter = self.buf[2];
        let body = &self.buf[3..];
        match body.iter().take(MAX_REPORT + 1).position(|&b| b == 0) {
            Some(n) => {
                let text = body[..n].to_vec();
                self.buf.drain(..3 + n + 1);
                Some(Report { slot, letter, text })
            }
            None if body.len() > MAX_REPORT => {
                let text = body[..MAX_REPORT].to_vec();
                let rest = self.buf.split_off(3 + MAX_REPORT);
                self.buf.clear();
                self.skipping = true;
                self.feed(&rest);
                Some(Report { slot, letter, text })
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(slot: u16, m: &str, s: &str, r: &str) -> Command {
        Command { slot, message: m.into(), sender: s.into(), recipient: r.into() }
    }

    #[test]
    fn commands_round_trip_byte_by_byte() {
        let cmds = [cmd(0, "20/457", "a@b", "c@d"), cmd(499, "1/1", "", "x@y"), Command::reload()];
        let wire: Vec<u8> = cmds.iter().flat_map(Command::encode).collect();
        assert_eq!(&wire[..2], &[0, 0]);
        assert_eq!(&cmds[2].encode(), &[0xEF, 0xBE, 0, 0, 0]);
        let mut d = CommandDecoder::new();
        let mut got = Vec::new();
        for b in wire {
            d.feed(&[b]);
            while let Some(c) = d.next().unwrap() {
                got.push(c);
            }
        }
        assert_eq!(got, cmds);
        assert!(got[2].is_reload());
    }

    #[test]
    fn hostile_commands() {
        let mut d = CommandDecoder::new();
        d.feed(&[1, 0]);
        d.feed(&[b'9'; 101]);
        assert_eq!(d.next(), Err(Mangled));
        let mut d = CommandDecoder::new();
        d.feed(&[1, 0, b'1', 0]);
        d.feed(&vec![b'a'; MAX_ADDRESS + 1]);
        assert_eq!(d.next(), Err(Mangled));
        let mut d = CommandDecoder::new();
        d.feed(&[1]);
        assert_eq!(d.next(), Ok(None));
    }

    #[test]
    fn reports() {
        let r = Report { slot: 258, letter: b'K', text: b"did 1+0+0\n".to_vec() };
        let wire = r.encode();
        assert_eq!(&wire[..3], &[2, 1, b'K']);
        let mut d = ReportDecoder::new();
        d.feed(&wire[..4]);
        assert_eq!(d.next(), None);
        d.feed(&wire[4..]);
        assert_eq!(d.next(), Some(r));
        // a NUL inside the text ends it
        let r = Report { slot: 1, letter: b'D', text: b"a\0b".to_vec() };
        assert_eq!(r.encode(), vec![1, 0, b'D', b'a', 0]);
    }

    #[test]
    fn long_reports_are_cut() {
        let mut d = ReportDecoder::new();
        let mut wire = vec![7, 0, b'Z'];
        wire.extend(vec![b'x'; 50_000]);
        wire.push(0);
        wire.extend(Report { slot: 8, letter: b'K', text: b"ok".to_vec() }.encode());
        for chunk in wire.chunks(999) {
            d.feed(chunk);
        }
        let first = d.next().unwrap();
        assert_eq!((first.slot, first.letter, first.text.len()), (7, b'Z', MAX_REPORT));
        assert_eq!(d.next(), Some(Report { slot: 8, letter: b'K', text: b"ok".to_vec() }));
        assert_eq!(d.next(), None);
    }
}
