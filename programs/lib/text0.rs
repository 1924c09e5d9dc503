//! text0: NUL-terminated records (`bytes\0`), the format of envelopes, `intd` files, the spawn
//! protocol and qmail-verify. Reading is bounded: a record longer than the limit is an error,
//! never an allocation the peer chose.

use std::io::{self, BufRead};

/// Why a record could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Text0Error {
    /// EOF before the terminating NUL (the partial record is dropped).
    Truncated,
    /// No NUL within the limit.
    TooLong,
}

/// Read one record of at most `max` bytes (the NUL not counted) into `out`, without the NUL.
/// `Ok(None)` at a clean EOF (no byte read); `Ok(Some(Err(..)))` for a bad record; `Err` for an
/// I/O error. After `TooLong`, `out` holds the first `max` bytes of the record.
pub fn read_record<R: BufRead>(
    input: &mut R,
    max: usize,
    out: &mut Vec<u8>,
) -> io::Result<Option<Result<(), Text0Error>>> {
    out.clear();
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if out.is_empty() { None } else { Some(Err(Text0Error::Truncated)) });
        }
        let room = max - out.len();
        match buf.iter().take(room + 1).position(|&b| b == 0) {
            Some(i) => {
                out.extend_from_slice(&buf[..i]);
                input.consume(i + 1);
                return Ok(Some(Ok(())));
            }
            None if buf.len() > room => {
                // keep what fits, so the caller can still see the record's first bytes
                out.extend_from_slice(&buf[..room]);
                input.consume(room);
                return Ok(Some(Err(Text0Error::TooLong)));
            }
            None => {
                let n = buf.len();
                out.extend_from_slice(buf);
                input.consume(n);
            }
        }
    }
}

/// Split a complete byte string into its NUL-terminated records. Trailing bytes without a NUL
/// are an error (decoders reject trailing bytes).
pub fn split(data: &[u8]) -> Result<Vec<&[u8]>, Text0Error> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let i = rest.iter().position(|&b| b == 0).ok_or(Text0Error::Truncated)?;
        records.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    Ok(records)
}

/// Append `record` and its NUL to `out`. The record must not contain a NUL (callers hold
/// typed values that cannot).
pub fn push(out: &mut Vec<u8>, record: &[u8]) {
    debug_assert!(!record.contains(&0));
    out.extend_from_slice(record);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8], max: usize) -> Vec<Result<Vec<u8>, Text0Error>> {
        let mut input = io::BufReader::with_capacity(3, data);
        let mut out = Vec::new();
        let mut got = Vec::new();
        while let Some(r) = read_record(&mut input, max, &mut out).unwrap() {
            let stop = r.is_err();
            got.push(r.map(|()| out.clone()));
            if stop {
                break;
            }
        }
        got
    }

    #[test]
    fn records() {
        let ok = |s: &[u8]| Ok(s.to_vec());
        assert_eq!(all(b"", 5), vec![]);
        assert_eq!(all(b"ab\0\0cde\0", 5), vec![ok(b"ab"), ok(b""), ok(b"cde")]);
        assert_eq!(all(b"abcde\0", 5), vec![ok(b"abcde")]);
        assert_eq!(all(b"abcdef\0", 5), vec![Err(Text0Error::TooLong)]);
        assert_eq!(all(b"ab\0cd", 5), vec![ok(b"ab"), Err(Text0Error::Truncated)]);
        // a long record without a NUL stops at the limit, not at EOF
        let huge = vec![b'x'; 100_000];
        assert_eq!(all(&huge, 1002), vec![Err(Text0Error::TooLong)]);
    }

    #[test]
    fn split_and_push() {
        let mut buf = Vec::new();
        push(&mut buf, b"Fa@b");
        push(&mut buf, b"");
        assert_eq!(buf, b"Fa@b\0\0");
        assert_eq!(split(&buf), Ok(vec![&b"Fa@b"[..], b""]));
        assert_eq!(split(b"x\0y"), Err(Text0Error::Truncated));
        assert_eq!(split(b""), Ok(vec![]));
    }
}
