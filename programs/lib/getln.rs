//! getln: bounded lines from a byte stream, sans-I/O, and the `VERB argument` split of
//! command lines, for POP3 ([`crate::pop3`]) and SMTP ([`crate::smtp::CommandReader`], with
//! [`Lines::skipping`]).
//!
//! [`Lines::push`] takes bytes up to and including the first LF and says whether a line
//! ended; a CR before the LF is removed. A line longer than the limit is never stored: it is
//! reported as [`Got::TooLong`] as soon as the limit is passed (the rest of it is then the
//! caller's to refuse: the POP3 programs close the connection). The line is kept until the
//! next push and zeroed then, since it may hold a password.

/// What [`Lines::push`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Got {
    /// a line ended: [`Lines::line`] holds it, without its line end
    Line,
    /// the limit was passed; nothing is held
    TooLong,
}

/// A line being collected, at most `max` bytes (plus one for a CR the LF may follow).
#[derive(Debug)]
pub struct Lines {
    line: Vec<u8>,
    max: usize,
    done: bool,
    /// [`Lines::skipping`]: an over-long line is read to its LF before it is reported
    skip: bool,
    /// the current line passed the limit: its bytes are being thrown away
    overflow: bool,
}

impl Lines {
    /// Over-long lines are reported as soon as the limit is passed (POP3 then closes).
    pub fn new(max: usize) -> Self {
        Lines {
            line: Vec::with_capacity(128.min(max + 1)),
            max,
            done: false,
            skip: false,
            overflow: false,
        }
    }

    /// Over-long lines are read to their end, never stored, and reported there (SMTP answers
    /// and goes on with the next line).
    pub fn skipping(max: usize) -> Self {
        let mut lines = Lines::new(max);
        lines.skip = true;
        lines
    }

    /// Consume bytes of `input` up to and including the first LF: how many, and what ended
    /// (`None`: need more).
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Got>) {
        if std::mem::take(&mut self.done) {
            wipe(&mut self.line);
            self.line.clear();
        }
        let (chunk, used, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (&input[..i], i + 1, true),
            None => (input, input.len(), false),
        };
        if self.overflow || self.line.len() + chunk.len() > self.max + 1 {
            wipe(&mut self.line);
            self.line = Vec::new();
            if !self.skip {
                return (used, Some(Got::TooLong));
            }
            self.overflow = !complete;
            return (used, complete.then_some(Got::TooLong));
        }
        self.line.extend_from_slice(chunk);
        if !complete {
            return (used, None);
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.len() > self.max {
            wipe(&mut self.line);
            self.line.clear();
            return (used, Some(Got::TooLong));
        }
        self.done = true;
        (used, Some(Got::Line))
    }

    /// The line after [`Got::Line`], until the next push.
    pub fn line(&self) -> &[u8] {
        if self.done {
            &self.line
        } else {
            &[]
        }
    }

    /// Bytes of an unfinished line held.
    pub fn pending(&self) -> usize {
        if self.done {
            0
        } else {
            self.line.len()
        }
    }
}

impl Drop for Lines {
    /// The last line may hold a password: zeroed here too, not only at the next push.
    fn drop(&mut self) {
        wipe(&mut self.line);
    }
}

/// Split a command line at the first space: the verb, and the argument after the run of
/// spaces that follows it (possibly empty).
pub fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &line[line.len()..]),
    };
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    (verb, &rest[start..])
}

/// Overwrite `bytes` with zeros (a password, once it has been handed on).
pub fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = 0;
    }
    std::hint::black_box(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_reads_an_over_long_line_to_its_end() {
        let mut l = Lines::skipping(4);
        assert_eq!(l.push(b"abcdef"), (6, None), "over the limit, not yet ended");
        assert_eq!(l.pending(), 0, "nothing of it is kept");
        assert_eq!(l.push(b"gh"), (2, None));
        assert_eq!(l.push(b"ij\r\nnext\n"), (4, Some(Got::TooLong)));
        assert_eq!(l.push(b"next\n"), (5, Some(Got::Line)));
        assert_eq!(l.line(), b"next");
        assert_eq!(l.push(b"abcdefgh\n"), (9, Some(Got::TooLong)), "ended in one push");
        assert_eq!(l.push(b"abcd\r\n"), (6, Some(Got::Line)), "the CR is not counted");
        assert_eq!(l.line(), b"abcd");
    }

    #[test]
    fn lines_and_limits() {
        let mut l = Lines::new(4);
        assert_eq!(l.push(b"ab"), (2, None));
        assert_eq!(l.pending(), 2);
        assert_eq!(l.push(b"cd\r\nef"), (4, Some(Got::Line)));
        assert_eq!(l.line(), b"abcd");
        assert_eq!(l.pending(), 0);
        assert_eq!(l.push(b"abcde\n"), (6, Some(Got::TooLong)));
        assert_eq!(l.line(), b"");
        assert_eq!(l.push(b"abcd\r\n"), (6, Some(Got::Line)));
        assert_eq!(l.push(b"abcdef"), (6, Some(Got::TooLong)));
        assert_eq!(l.pending(), 0);
        assert_eq!(l.push(b"\n"), (1, Some(Got::Line)));
        assert_eq!(l.line(), b"");
    }

    #[test]
    fn verbs() {
        assert_eq!(split_verb(b"USER  joe x "), (&b"USER"[..], &b"joe x "[..]));
        assert_eq!(split_verb(b"QUIT"), (&b"QUIT"[..], &b""[..]));
        assert_eq!(split_verb(b"   "), (&b""[..], &b""[..]));
        assert_eq!(split_verb(b""), (&b""[..], &b""[..]));
    }
}
