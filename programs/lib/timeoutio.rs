//! timeoutio: reading and writing file descriptors the way the programs need it: reads and
//! writes that give up at a deadline (qmail-smtpd's client, qmail-verify's answers, the
//! connections of [`crate::listener`]), reads that are retried after a signal (EINTR),
//! non-blocking descriptors and poll timeouts for event loops.
//!
//! A deadline that passes is [`io::ErrorKind::TimedOut`]; EINTR and a spurious `EAGAIN` on a
//! non-blocking descriptor are waited out, never returned.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Wait until `fd` is ready for `events` (`POLLIN`, `POLLOUT`) or `deadline` passes.
pub fn wait(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, poll_timeout(left)) {
            Ok(0) => return Err(timed_out()),
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One read from `fd`, waiting for bytes at most until `deadline`: `Ok(0)` is end of file.
pub fn read_by(fd: BorrowedFd<'_>, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        wait(fd, PollFlags::POLLIN, deadline)?;
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// One write to `fd`, waiting for room at most until `deadline`: the bytes written.
pub fn write_by(fd: BorrowedFd<'_>, buf: &[u8], deadline: Instant) -> io::Result<usize> {
    loop {
        wait(fd, PollFlags::POLLOUT, deadline)?;
        match nix::unistd::write(fd, buf) {
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// [`write_by`] for a non-blocking descriptor: the write is tried first, and poll waits
/// only when there is no room. A client that reads its replies costs one system call a
/// write instead of two. On a blocking descriptor this could wait past `deadline`: use
/// [`write_by`] there.
pub fn write_nonblocking_by(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    deadline: Instant,
) -> io::Result<usize> {
    match nix::unistd::write(fd, buf) {
        Err(Errno::EINTR | Errno::EAGAIN) => write_by(fd, buf, deadline),
        r => r.map_err(io::Error::from),
    }
}

/// A poll timeout of `d`, cut to the longest poll can take.
pub fn poll_timeout(d: Duration) -> PollTimeout {
    PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// One `read`, repeated while a signal interrupts it: `Ok(0)` is end of file.
pub fn read(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Set `O_NONBLOCK` on `fd`, so that reads and writes return `WouldBlock` instead of waiting;
/// the caller waits with poll. Best effort: a failure leaves the descriptor blocking.
pub fn set_nonblocking(fd: &impl AsFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd.as_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};

    #[test]
    fn nonblocking_reads_would_block() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (mut r, mut w) = (File::from(r), File::from(w));
        set_nonblocking(&r);
        let mut buf = [0u8; 4];
        assert_eq!(read(&mut r, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        w.write_all(b"ab").unwrap();
        assert_eq!(read(&mut r, &mut buf).unwrap(), 2);
        drop(w);
        assert_eq!(read(&mut r, &mut buf).unwrap(), 0);
    }

    #[test]
    fn nonblocking_writes_go_at_once_or_wait_for_room() {
        let (r, w) = nix::unistd::pipe().unwrap();
        set_nonblocking(&w);
        let soon = || Instant::now() + Duration::from_millis(30);
        assert_eq!(write_nonblocking_by(w.as_fd(), b"abc", soon()).unwrap(), 3);
        let mut r = File::from(r);
        while write_nonblocking_by(w.as_fd(), &[0; 4096], soon()).is_ok() {}
        // room made while the writer waits: the write goes through
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = [0u8; 8192];
                r.read_exact(&mut buf).unwrap();
            });
            let later = Instant::now() + Duration::from_secs(60);
            assert_eq!(write_nonblocking_by(w.as_fd(), b"x", later).unwrap(), 1);
        });
    }

    #[test]
    fn deadlines() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let soon = || Instant::now() + Duration::from_millis(30);
        let mut buf = [0u8; 4];
        let e = read_by(r.as_fd(), &mut buf, soon()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(write_by(w.as_fd(), b"abc", soon()).unwrap(), 3);
        assert_eq!(read_by(r.as_fd(), &mut buf, soon()).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        // a full pipe: the writer times out
        set_nonblocking(&w);
        while write_by(w.as_fd(), &[0; 4096], soon()).is_ok() {}
        let e = write_by(w.as_fd(), b"x", soon()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = write_nonblocking_by(w.as_fd(), b"x", soon()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // a deadline already gone, even with bytes waiting
        assert_eq!(
            wait(r.as_fd(), PollFlags::POLLIN, Instant::now()).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        drop(w);
        while read_by(r.as_fd(), &mut buf, soon()).unwrap() > 0 {}
        assert_eq!(poll_timeout(Duration::from_secs(u64::MAX)), PollTimeout::MAX);
    }
}
