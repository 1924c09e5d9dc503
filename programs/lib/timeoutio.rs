//! timeoutio: reading and writing file descriptors the way the programs need it: reads that
//! are retried after a signal (EINTR), and non-blocking descriptors for poll loops.

use std::io::{self, Read};
use std::os::fd::AsFd;

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
    use std::io::Write;

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
}
