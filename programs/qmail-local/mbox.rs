//! mbox: the mbox-file delivery of qmail-local (doc/qmail-local.8, DESCRIPTION).
//!
//! Open for append (created 0600), take an exclusive `flock` within 30 seconds (a timeout is
//! a temporary failure; any other locking error delivers unlocked, as upstream), remember
//! the end, write the `From ` line, Return-Path, Delivered-To and the message with every line
//! matching `>*From ` prefixed by `>`, make sure the last line ends in LF, add one empty
//! line, fsync. On any error the file is truncated back to where it ended (when locked) and
//! the delivery fails temporarily.

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use qmail::exit::Verdict;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to wait for the lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

enum Mbox {
    Locked(Flock<File>),
    Unlocked(File),
}

impl Mbox {
    fn file(&self) -> &File {
        match self {
            Mbox::Locked(f) => f,
            Mbox::Unlocked(f) => f,
        }
    }
}

/// Append `header` and the quoted `message` to the mbox at `path`.
pub fn deliver(path: &Path, header: &[u8], message: &mut impl Read) -> Result<(), Verdict> {
    let shown = path.display();
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Verdict::temp(format!("Unable to open {shown}: {e} (#4.2.1)")))?;
    let mbox = lock(file).map_err(|()| {
        Verdict::temp(format!("Timeout while locking {shown}: it is busy. (#4.2.1)"))
    })?;
    let mut f = mbox.file();
    let end = f
        .seek(SeekFrom::End(0))
        .map_err(|e| Verdict::temp(format!("Unable to seek in {shown}: {e} (#4.3.0)")))?;
    let result = (|| {
        let mut out = BufWriter::with_capacity(64 * 1024, f);
        out.write_all(header).map_err(Failure::Write)?;
        copy_quoted(message, &mut out)?;
        out.flush().map_err(Failure::Write)?;
        // a delivery reported done is on disk (doc/INTERNALS.md, "fsyncs per message")
        f.sync_all().map_err(Failure::Write)
    })();
    match result {
        Ok(()) => Ok(()),
        Err(failure) => {
            if matches!(mbox, Mbox::Locked(_)) {
                let _ = f.set_len(end);
                // no partial message left in the mbox after a crash (doc/INTERNALS.md,
                // "fsyncs per message")
                let _ = f.sync_all();
            }
            Err(match failure {
                Failure::Read(e) => Verdict::temp(format!("Unable to read message: {e} (#4.3.0)")),
                Failure::Write(e) => {
                    let code = match e.raw_os_error() {
                        Some(libc::EDQUOT) => "4.2.2",
                        Some(libc::ENOSPC) => "4.3.1",
                        _ => "4.3.0",
                    };
                    Verdict::temp(format!("Unable to write {shown}: {e} (#{code})"))
                }
            })
        }
    }
}

/// Take the exclusive lock, polling for up to [`LOCK_WAIT`]. `Err` only on timeout.
fn lock(file: File) -> Result<Mbox, ()> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(Mbox::Locked(locked)),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => {
                if Instant::now() >= deadline {
                    return Err(());
                }
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            // e.g. a file system without flock: deliver unlocked, as upstream
            Err((f, _)) => return Ok(Mbox::Unlocked(f)),
        }
    }
}

#[derive(Debug)]
enum Failure {
    Read(io::Error),
    Write(io::Error),
}

const FROM: &[u8] = b"From ";

/// Copy the message, prefixing `>` to each line that matches `>*From `, ending the last line
/// with LF, then one empty line. Memory stays bounded whatever the line lengths: at a line
/// start only the count of `>` and how much of `From ` matched are kept.
fn copy_quoted(input: &mut impl Read, out: &mut impl Write) -> Result<(), Failure> {
    let w = |out: &mut dyn Write, b: &[u8]| out.write_all(b).map_err(Failure::Write);
    let gts = |out: &mut dyn Write, n: u64| -> Result<(), Failure> {
        for _ in 0..n {
            out.write_all(b">").map_err(Failure::Write)?;
        }
        Ok(())
    };
    // at a line start: Some((count of '>', bytes of "From " matched)); inside a line: None
    let mut start: Option<(u64, usize)> = Some((0, 0));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match qmail::timeoutio::read(input, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Failure::Read(e)),
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match start {
                None => match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        w(out, &rest[..=i])?;
                        rest = &rest[i + 1..];
                        start = Some((0, 0));
                    }
                    None => {
                        w(out, rest)?;
                        rest = &[];
                    }
                },
                Some((n_gt, matched)) => {
                    let b = rest[0];
                    rest = &rest[1..];
                    if matched == 0 && b == b'>' {
                        start = Some((n_gt + 1, 0));
                    } else if b == FROM[matched] {
                        if matched + 1 == FROM.len() {
                            gts(out, n_gt + 1)?;
                            w(out, FROM)?;
                            start = None;
                        } else {
                            start = Some((n_gt, matched + 1));
                        }
                    } else {
                        gts(out, n_gt)?;
                        w(out, &FROM[..matched])?;
                        w(out, &[b])?;
                        start = if b == b'\n' { Some((0, 0)) } else { None };
                    }
                }
            }
        }
    }
    match start {
        Some((0, 0)) => {}
        Some((n_gt, matched)) => {
            gts(out, n_gt)?;
            w(out, &FROM[..matched])?;
            w(out, b"\n")?;
        }
        None => w(out, b"\n")?,
    }
    w(out, b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // one byte at a time, so every state is crossed at a read boundary
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.split_first() {
                    Some((&b, rest)) if !buf.is_empty() => {
                        buf[0] = b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        copy_quoted(&mut Slow(input), &mut out).unwrap();
        let mut fast = Vec::new();
        copy_quoted(&mut &input[..], &mut fast).unwrap();
        assert_eq!(out, fast);
        out
    }

    #[test]
    fn from_quoting() {
        let rows: &[(&[u8], &[u8])] = &[
            (b"", b"\n"),
            (b"a\n", b"a\n\n"),
            (b"a", b"a\n\n"),
            (b"From x\n", b">From x\n\n"),
            (b"a\nFrom x\nb\n", b"a\n>From x\nb\n\n"),
            (b">From x\n", b">>From x\n\n"),
            (b">>>From x\n", b">>>>From x\n\n"),
            (b"From\n", b"From\n\n"),
            (b"Fro", b"Fro\n\n"),
            (b">>", b">>\n\n"),
            (b">\n", b">\n\n"),
            (b"from x\n", b"from x\n\n"),
            (b" From x\n", b" From x\n\n"),
            (b"x From y\n", b"x From y\n\n"),
            (b"> From x\n", b"> From x\n\n"),
            (b"From From \n", b">From From \n\n"),
            (b"FrFrom \n", b"FrFrom \n\n"),
            (b"\n\nFrom \n", b"\n\n>From \n\n"),
            (b"a\0b\nFrom \0\n", b"a\0b\n>From \0\n\n"),
        ];
        for (input, want) in rows {
            assert_eq!(
                String::from_utf8_lossy(&quoted(input)),
                String::from_utf8_lossy(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // a huge line and many '>' stay bounded and intact
        let long = [vec![b'x'; 300_000], b"\n".to_vec()].concat();
        assert_eq!(quoted(&long), [long.clone(), b"\n".to_vec()].concat());
        let gts = [vec![b'>'; 100_000], b"From \n".to_vec()].concat();
        assert_eq!(quoted(&gts), [b">".to_vec(), gts.clone(), b"\n".to_vec()].concat());
    }
}
