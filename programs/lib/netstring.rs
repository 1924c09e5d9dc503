//! netstring: `<decimal length>:<bytes>,` (djb), sans-I/O and bounded.
//!
//! [`decode`] takes the bytes received so far and answers a payload and the rest, "need more",
//! or an error; the length is limited by the caller before anything is buffered.

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
    let mut len: usize = 0;
    let mut i = 0;
    loop {
        let Some(&c) = buf.get(i) else {
            return Ok(Decoded::NeedMore);
        };
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
            b':' if i > 0 => break,
            _ => return Err(NetstringError::Format),
        }
        i += 1;
    }
    let start = i + 1;
    let end = start + len;
    match buf.get(end) {
        None => Ok(Decoded::NeedMore),
        Some(b',') => Ok(Decoded::Done(&buf[start..end], &buf[end + 1..])),
        Some(_) => Err(NetstringError::Format),
    }
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
    fn round_trip() {
        for payload in [&b""[..], b"a", b"with\0nul,and:colon", &[0xff; 300]] {
            let enc = encode(payload);
            assert_eq!(decode(&enc, 1000), Ok(Done(payload, b"")));
        }
    }
}
