//! socketmap: the Sendmail/Postfix socket map protocol (doc/smmapd.8, PROTOCOL), sans-I/O and
//! bounded.
//!
//! A request is a netstring (`<decimal length>:<payload>,`) whose payload is
//! `<mapname> SP <key>`, split at the first space (the key keeps any further spaces). A reply
//! is a netstring whose payload is `<STATUS> SP <text>`: `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT`
//! or `PERM`. [`parse`] takes the bytes received so far and answers a request and how many
//! bytes it used, "need more", or a [`ProtocolError`] whose [`ProtocolError::text`] is the
//! exact `Bad protocol (...)` reason upstream smmapd sends. [`at_end`] classifies what is left
//! when the client stops sending (end of file or read timeout).
//!
//! Bounds: a length over [`REQUEST_MAX`] or more than [`DIGITS_MAX`] digits is refused before
//! a byte of the payload is buffered, so a caller that reads only while [`parse`] says
//! [`Parsed::NeedMore`] never holds more than [`FRAME_MAX`] bytes of one request. Nothing is
//! allocated from the claimed length.

/// The longest request payload (upstream's MAXREQUEST, which upstream declares but never
/// checks).
pub const REQUEST_MAX: usize = 1024;

/// The most digits a length may have (leading zeros included).
pub const DIGITS_MAX: usize = 10;

/// The most bytes one request occupies on the wire: digits, `:`, payload, `,`.
pub const FRAME_MAX: usize = DIGITS_MAX + 1 + REQUEST_MAX + 1;

/// The longest reply text sent: Postfix refuses replies over 100000 bytes.
pub const TEXT_MAX: usize = 4096;

/// One request: the map name (ignored by smmapd) and the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub map: &'a [u8],
    pub key: &'a [u8],
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request, and the number of bytes it occupied (drop them from the buffer).
    Request(Request<'a>, usize),
    /// Not enough bytes yet.
    NeedMore,
}

/// A malformed request: answered `PERM` with [`ProtocolError::text`], then the connection is
/// closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// No digits, or something other than `:` after them.
    MissingLength,
    /// A length over [`REQUEST_MAX`], or more than [`DIGITS_MAX`] digits.
    TooLong,
    /// The input ended before the announced number of bytes arrived.
    SizeMismatch,
    /// The byte after the payload is not `,` (or the input ended there).
    MissingTerminator,
    /// The payload has no space between map name and key.
    MissingKey,
}

impl ProtocolError {
    /// The reply text (after `PERM `).
    pub fn text(self) -> &'static str {
        match self {
            ProtocolError::MissingLength => "Bad protocol (missing length)",
            ProtocolError::TooLong => "Bad protocol (request too long)",
            ProtocolError::SizeMismatch => "Bad protocol (request size doesn't match length)",
            ProtocolError::MissingTerminator => "Bad protocol (missing terminator)",
            ProtocolError::MissingKey => "Bad protocol (missing key)",
        }
    }
}

/// Parse the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, ProtocolError> {
    let Some((len, start)) = length(buf)? else { return Ok(Parsed::NeedMore) };
    // start + len + 1 <= FRAME_MAX: no overflow
    let end = start + len;
    match buf.get(end) {
        None => Ok(Parsed::NeedMore),
        Some(b',') => {
            let payload = &buf[start..end];
            let space = payload.iter().position(|&b| b == b' ').ok_or(ProtocolError::MissingKey)?;
            let request = Request { map: &payload[..space], key: &payload[space + 1..] };
            Ok(Parsed::Request(request, end + 1))
        }
        Some(_) => Err(ProtocolError::MissingTerminator),
    }
}

/// The client stopped sending (end of file, or the read timed out) with `rest` unparsed:
/// `Ok` when nothing was left (a normal end), else what was wrong with the partial request.
pub fn at_end(rest: &[u8]) -> Result<(), ProtocolError> {
    if rest.is_empty() {
        return Ok(());
    }
    match parse(rest)? {
        Parsed::Request(..) => Ok(()),
        Parsed::NeedMore => match length(rest)? {
            None => Err(ProtocolError::MissingLength),
            Some((len, start)) if rest.len() < start + len => Err(ProtocolError::SizeMismatch),
            Some(_) => Err(ProtocolError::MissingTerminator),
        },
    }
}

/// The announced length and where the payload starts; `None` while the `:` has not arrived.
fn length(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut len: usize = 0;
    for (i, &c) in buf.iter().enumerate() {
        match c {
            b':' if i > 0 => return Ok(Some((len, i + 1))),
            b'0'..=b'9' if i < DIGITS_MAX => {
                len = len * 10 + usize::from(c - b'0');
                if len > REQUEST_MAX {
                    return Err(ProtocolError::TooLong);
                }
            }
            b'0'..=b'9' => return Err(ProtocolError::TooLong),
            _ => return Err(ProtocolError::MissingLength),
        }
    }
    Ok(None)
}

/// The status word of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Found; the text is the value.
    Ok,
    /// Not found (Postfix rejects the recipient).
    NotFound,
    /// Temporary failure (Postfix defers).
    Temp,
    /// A timeout on the server side (Postfix: as `TEMP`).
    Timeout,
    /// Permanent failure (Postfix: a configuration error, still a deferral).
    Perm,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOTFOUND",
            Status::Temp => "TEMP",
            Status::Timeout => "TIMEOUT",
            Status::Perm => "PERM",
        }
    }
}

/// A reply on the wire: `<len>:<STATUS> <text>,`. The space is always there (`9:NOTFOUND ,`
/// for an empty text). The text is cut at [`TEXT_MAX`] bytes, and control characters in a
/// status other than `OK` become spaces (the `OK` value is the key as received).
pub fn reply(status: Status, text: &[u8]) -> Vec<u8> {
    let text = &text[..text.len().min(TEXT_MAX)];
    let mut payload = Vec::with_capacity(status.word().len() + 1 + text.len());
    payload.extend_from_slice(status.word().as_bytes());
    payload.push(b' ');
    if status == Status::Ok {
        payload.extend_from_slice(text);
    } else {
        payload.extend(text.iter().map(|&b| if b.is_ascii_control() { b' ' } else { b }));
    }
    crate::netstring::encode(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolError::*;

    fn req<'a>(map: &'a [u8], key: &'a [u8], used: usize) -> Result<Parsed<'a>, ProtocolError> {
        Ok(Parsed::Request(Request { map, key }, used))
    }

    #[test]
    fn requests() {
        let rows: &[(&[u8], Result<Parsed, ProtocolError>)] = &[
            (b"23:cyrus alice@example.org,", req(b"cyrus", b"alice@example.org", 27)),
            (b"6:cyrus ,", req(b"cyrus", b"", 9)),
            (b"7:a b c d,", req(b"a", b"b c d", 10)),
            (b"2: k,", req(b"", b"k", 5)),
            (b"5:m key,5:m k2,", req(b"m", b"key", 8)),
            (b"005:m key,", req(b"m", b"key", 10)),
            (b"", Ok(Parsed::NeedMore)),
            (b"2", Ok(Parsed::NeedMore)),
            (b"23:", Ok(Parsed::NeedMore)),
            (b"23:cyrus alice", Ok(Parsed::NeedMore)),
            (b"23:cyrus alice@example.org", Ok(Parsed::NeedMore)),
            // the errors of doc/smmapd.8, PROTOCOL
            (b"23:cyrus alice@example.org;", Err(MissingTerminator)),
            (b"23:cyrus alice@example.org\n", Err(MissingTerminator)),
            (b":cyrus x,", Err(MissingLength)),
            (b"x:cyrus x,", Err(MissingLength)),
            (b"5x:a b c,", Err(MissingLength)),
            (b"-5:a b c,", Err(MissingLength)),
            (b" 5:a b c,", Err(MissingLength)),
            (b"GET / HTTP/1.0\r\n\r\n", Err(MissingLength)),
            (b"5:abcde,", Err(MissingKey)),
            (b"0:,", Err(MissingKey)),
            // hostile lengths: refused before any payload is buffered
            (b"1025:", Err(TooLong)),
            (b"1025", Err(TooLong)),
            (b"102400:smmap xxxx", Err(TooLong)),
            (b"99999999999999999999999999999999:", Err(TooLong)),
            (b"00000000001:", Err(TooLong)),
            (b"0000000001:", Ok(Parsed::NeedMore)),
        ];
        for (input, want) in rows {
            assert_eq!(&parse(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn the_longest_request() {
        let mut big = b"1024:m ".to_vec();
        big.extend(std::iter::repeat(b'k').take(1022));
        assert_eq!(parse(&big), Ok(Parsed::NeedMore));
        big.push(b',');
        let Ok(Parsed::Request(r, used)) = parse(&big) else { panic!("{:?}", parse(&big)) };
        assert_eq!((r.key.len(), used), (1022, big.len()));
    }

    #[test]
    fn ends() {
        let rows: &[(&[u8], Result<(), ProtocolError>)] = &[
            (b"", Ok(())),
            (b"5", Err(MissingLength)),
            (b"23:cyrus", Err(SizeMismatch)),
            (b"23:", Err(SizeMismatch)),
            (b"5:m key", Err(MissingTerminator)),
            (b"5:m key.", Err(MissingTerminator)),
            (b"abc", Err(MissingLength)),
            (b"5:nokey,", Err(MissingKey)),
            (b"99999999999", Err(TooLong)),
        ];
        for (input, want) in rows {
            assert_eq!(&at_end(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn replies() {
        let rows: &[(Status, &[u8], &[u8])] = &[
            (Status::Ok, b"alice@example.org", b"20:OK alice@example.org,"),
            (Status::NotFound, b"Mailbox does not exist", b"31:NOTFOUND Mailbox does not exist,"),
            (Status::NotFound, b"", b"9:NOTFOUND ,"),
            (
                Status::NotFound,
                b"Access to this service has been blocked",
                b"48:NOTFOUND Access to this service has been blocked,",
            ),
            (Status::Temp, b"Over quota", b"15:TEMP Over quota,"),
            (Status::Perm, b"Over quota", b"15:PERM Over quota,"),
            (Status::Perm, b"Permission denied", b"22:PERM Permission denied,"),
            (Status::Timeout, b"x", b"9:TIMEOUT x,"),
            (Status::Temp, b"a\nb\0c", b"10:TEMP a b c,"),
            (Status::Ok, b"A+B@x", b"8:OK A+B@x,"),
        ];
        for (status, text, want) in rows {
            assert_eq!(reply(*status, text), want.to_vec(), "{:?}", String::from_utf8_lossy(want));
        }
        for e in [MissingTerminator, MissingLength, MissingKey, SizeMismatch] {
            let wire = reply(Status::Perm, e.text().as_bytes());
            let want: &[u8] = match e {
                MissingTerminator => b"38:PERM Bad protocol (missing terminator),",
                MissingLength => b"34:PERM Bad protocol (missing length),",
                MissingKey => b"31:PERM Bad protocol (missing key),",
                _ => b"53:PERM Bad protocol (request size doesn't match length),",
            };
            assert_eq!(wire, want.to_vec());
        }
        let long = reply(Status::Temp, &[b'x'; 100_000]);
        assert_eq!(long.len(), "4101:TEMP ,".len() + TEXT_MAX);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded() {
        let mut seed: u32 = 12345;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            let n = (seed % 40) as usize;
            for _ in 0..n {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let b = b"0123456789:, ab"[(seed >> 16) as usize % 15];
                buf.push(b);
            }
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if let Ok(Parsed::Request(r, used)) = parse(&buf) {
                assert!(used <= buf.len() && used <= FRAME_MAX);
                assert!(r.key.len() < REQUEST_MAX);
            }
            let _ = at_end(&buf);
        }
    }
}
