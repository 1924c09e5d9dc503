//! fdpass: hand an open descriptor and a small record to another process over a Unix stream
//! socket (`SCM_RIGHTS`), for long-lived workers that serve connections another process
//! accepted (a session's socket and its environment).
//!
//! One message is one `sendmsg`: a 4-byte big-endian length, then the record (at most
//! [`RECORD_MAX`] bytes), with exactly one descriptor attached. The receiver reads the whole
//! message with one `recvmsg` into a buffer of the largest size, so a message is never split
//! on a stream socket of this size; anything else — no descriptor, more than one, a length
//! that does not match, a truncated message — is refused, and stray descriptors are closed.

use nix::cmsg_space;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// The largest record sent with a descriptor (a session's environment).
pub const RECORD_MAX: usize = 16 * 1024;

/// Send `fd` and `record` over the connected Unix stream socket `sock`.
pub fn send(sock: &impl AsFd, fd: &impl AsFd, record: &[u8]) -> io::Result<()> {
    if record.len() > RECORD_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "record too long"));
    }
    let len = (record.len() as u32).to_be_bytes();
    let iov = [IoSlice::new(&len), IoSlice::new(record)];
    let fds = [fd.as_fd().as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(sock.as_fd().as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(io::Error::from)?;
    if sent != 4 + record.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Receive one descriptor and its record from `sock`; `Ok(None)` at the end of input.
pub fn recv(sock: &impl AsFd) -> io::Result<Option<(OwnedFd, Vec<u8>)>> {
    let mut buf = vec![0u8; 4 + RECORD_MAX + 1];
    let mut cspace = cmsg_space!([RawFd; 4]);
    let (n, truncated, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut cspace),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = c {
                fds.extend(received.into_iter().map(crate::child::received_fd));
            }
        }
        let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (msg.bytes, truncated, fds)
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidData, why.to_string()));
    if truncated || fds.len() != 1 || n < 4 {
        return bad("not one descriptor with a record");
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > RECORD_MAX || n != 4 + len {
        return bad("record length does not match");
    }
    buf.truncate(n);
    buf.drain(..4);
    let fd = fds.into_iter().next().expect("one descriptor");
    Ok(Some((fd, buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_and_its_record_cross() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut x, y) = UnixStream::pair().unwrap();
        send(&a, &y, b"TCPREMOTEIP=127.0.0.1\0RELAYCLIENT=\0").unwrap();
        drop(y);
        let (fd, record) = recv(&b).unwrap().unwrap();
        assert_eq!(record, b"TCPREMOTEIP=127.0.0.1\0RELAYCLIENT=\0");
        let mut got = UnixStream::from(fd);
        x.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        got.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // several in a row, an empty record, then the end
        for i in 0..3 {
            let (_, y) = UnixStream::pair().unwrap();
            send(&a, &y, if i == 1 { b"" } else { b"r" }).unwrap();
        }
        for i in 0..3 {
            let (_, r) = recv(&b).unwrap().unwrap();
            assert_eq!(r, if i == 1 { &b""[..] } else { &b"r"[..] });
        }
        drop(a);
        assert!(recv(&b).unwrap().is_none());
    }

    #[test]
    fn hostile_messages_are_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        // bytes without a descriptor
        a.write_all(b"\0\0\0\x01x").unwrap();
        assert!(recv(&b).is_err());
        // a length that does not match
        let (_, y) = UnixStream::pair().unwrap();
        let len = 9u32.to_be_bytes();
        let iov = [IoSlice::new(&len), IoSlice::new(b"abc")];
        let fds = [y.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(recv(&b).is_err());
        // too long to send
        let (_, y) = UnixStream::pair().unwrap();
        assert!(send(&a, &y, &vec![b'x'; RECORD_MAX + 1]).is_err());
    }
}
