//! netstring: `<decimal length>:<bytes>,` (djb), sans-I/O and bounded.
//!
//! [`decode`] takes the bytes received so far and answers a payload and the rest, "need more",
//! or an error; the length is limited by the caller before anything is buffered. [`read`] takes
//! one netstring from a blocking reader, with the same checks and the same limit.

use std::io::{self, BufRead, Read};

/// The outcome of decoding a buffer that may hold only part of a netstring.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole netstring: its payload and the bytes after it.
    Done(&'a [u8], &'a [u8]),
    /// Not enough bytes yet.
    NeedMore,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NetstringError {
    /// Not a digit where a digit or `:` was due, a leading zero, or no `,` after the payload.
    Format,
    /// The announced length exceeds the caller's limit.
    TooLong,
}

/// Encode `payload` as a netstring.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

/// Decode the netstring at the start of `buf`, refusing lengths over `max`.
pub fn decode(buf: &[u8], max: usize) -> Result<Decoded<'_>, NetstringError> {
    let Some((len, start)) = header(buf, max)? else {
        return Ok(Decoded::NeedMore);
    };
    let end = start + len;
    match buf.get(end) {
        None => Ok(Decoded::NeedMore),
        Some(b',') => Ok(Decoded::Done(&buf[start..end], &buf[end + 1..])),
        Some(_) => Err(NetstringError::Format),
    }
}

/// The length announced at the start of `buf` and where the payload starts, or `None` when
/// the `:` has not come yet.
fn header(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, NetstringError> {
    let mut len: usize = 0;
    for (i, &c) in buf.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if i == 1 && buf[0] == b'0' {
                    return Err(NetstringError::Format);
                }
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(c - b'0')))
                    .filter(|&l| l <= max)
                    .ok_or(NetstringError::TooLong)?;
            }
            b':' if i > 0 => return Ok(Some((len, i + 1))),
            _ => return Err(NetstringError::Format),
        }
    }
    Ok(None)
}

/// Read one netstring from `input`, refusing lengths over `max`, and answer its payload.
/// Nothing past the `,` is consumed. A malformed or too long netstring is `InvalidData`, an
/// end of input inside it `UnexpectedEof`.
pub fn read(input: &mut impl BufRead, max: usize) -> io::Result<Vec<u8>> {
    let len = read_header(input, max)?;
    let mut payload = vec![0; len];
    input.read_exact(&mut payload)?;
    read_comma(input)?;
    Ok(payload)
}

/// Read the `<length>:` of a netstring from `input`, refusing lengths over `max`, and answer
/// the length; the payload and its `,` are the caller's to read (a streaming reader that
/// copies the payload through: the queue service's message chunks). Errors as [`read`].
pub fn read_header(input: &mut impl BufRead, max: usize) -> io::Result<usize> {
    // the digits of max, and the colon
    let header_max = max.checked_ilog10().unwrap_or(0) as usize + 2;
    let mut head = Vec::with_capacity(header_max);
    input.take(header_max as u64).read_until(b':', &mut head)?;
    match header(&head, max).map_err(invalid)? {
        Some((len, start)) if start == head.len() => Ok(len),
        _ if head.len() < header_max && head.last() != Some(&b':') => {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
        _ => Err(invalid(NetstringError::Format)),
    }
}

/// The `,` that ends a netstring's payload, read from `input`.
pub fn read_comma(input: &mut impl BufRead) -> io::Result<()> {
    let mut comma = [0u8];
    input.read_exact(&mut comma)?;
    match comma {
        [b','] => Ok(()),
        _ => Err(invalid(NetstringError::Format)),
    }
}

fn invalid(e: NetstringError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decoded::*;
    use NetstringError::*;

    #[test]
    fn table() {
        let rows: &[(&[u8], usize, Result<Decoded, NetstringError>)] = &[
            (b"0:,", 10, Ok(Done(b"", b""))),
            (b"5:hello,rest", 10, Ok(Done(b"hello", b"rest"))),
            (b"5:hel", 10, Ok(NeedMore)),
            (b"5:hello", 10, Ok(NeedMore)),
            (b"", 10, Ok(NeedMore)),
            (b"12", 100, Ok(NeedMore)),
            (b"5:hello;", 10, Err(Format)),
            (b":x,", 10, Err(Format)),
            (b"05:hello,", 10, Err(Format)),
            (b"a:", 10, Err(Format)),
            (b"-1:", 10, Err(Format)),
            (b"11:hello world,", 10, Err(TooLong)),
            (b"99999999999999999999999999:", usize::MAX, Err(TooLong)),
        ];
        for (input, max, want) in rows {
            assert_eq!(&decode(input, *max), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn reading() {
        let read_all = |mut input: &[u8], max| {
            let got = read(&mut input, max).map_err(|e| e.kind());
            (got, input.to_vec())
        };
        let eof = Err(io::ErrorKind::UnexpectedEof);
        let invalid = Err(io::ErrorKind::InvalidData);
        type Row<'a> = (&'a [u8], usize, Result<&'a [u8], io::ErrorKind>, &'a [u8]);
        let rows: &[Row] = &[
            (b"0:,", 10, Ok(b""), b""),
            (b"5:hello,rest", 10, Ok(b"hello"), b"rest"),
            (b"10:0123456789,", 10, Ok(b"0123456789"), b""),
            (b"5:hel", 10, eof, b""),
            (b"", 10, eof, b""),
            (b"12", 100, eof, b""),
            (b"5:hello;", 10, invalid, b""),
            (b":x,", 10, invalid, b"x,"),
            (b"05:hello,", 10, invalid, b"hello,"),
            (b"11:hello world,", 10, invalid, b"hello world,"),
            (b"100:", 10, invalid, b":"),
            (b"99999999999999999999999999:", usize::MAX, invalid, b"99999:"),
        ];
        for (input, max, want, rest) in rows {
            let want = want.map(<[u8]>::to_vec);
            let got = read_all(input, *max);
            assert_eq!(got, (want, rest.to_vec()), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn round_trip() {
        for payload in [&b""[..], b"a", b"with\0nul,and:colon", &[0xff; 300]] {
            let enc = encode(payload);
            assert_eq!(decode(&enc, 1000), Ok(Done(payload, b"")));
            assert_eq!(read(&mut &enc[..], payload.len()).unwrap(), payload);
        }
    }
}
