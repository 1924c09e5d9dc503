//! child: hand extra file descriptors to a child process.
//!
//! `std::process::Command` sets up fds 0–2; qmail's protocols also use fixed higher numbers
//! (fd 4 for a queue filter's custom error text, fds 1–8 between qmail-start's children). This
//! module holds the project's `unsafe` code (with [`crate::lease`]'s one `fcntl`): a
//! `pre_exec` hook that only calls the async-signal-safe `fcntl` and `dup2` and allocates
//! nothing, and [`inherited`], which takes ownership of a descriptor received by protocol.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Lowest fd used to park the sources before they are moved into place, so that a source
/// never collides with another mapping's target.
const PARK: RawFd = 100;

/// Arrange for the child of `cmd` to find each `(source, target)` source at fd `target`
/// (targets ≥ 3; use `Command::stdin` and friends for 0–2). The sources stay open in the
/// parent until `cmd` is dropped; each is closed-on-exec in the parent's other children.
pub fn map_fds(cmd: &mut Command, fds: Vec<(OwnedFd, RawFd)>) {
    let pairs: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
    // SAFETY: the closure runs in the forked child before exec. It calls only fcntl and dup2
    // (async-signal-safe), touches no lock and allocates nothing: `pairs` is moved in and only
    // read; `parked` is a fixed-size array on the stack.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fds;
            let mut parked = [0 as RawFd; 16];
            if pairs.len() > parked.len() {
                return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
            }
            for (i, (src, _)) in pairs.iter().enumerate() {
                let p = libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, PARK);
                if p < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                parked[i] = p;
            }
            for (i, (_, target)) in pairs.iter().enumerate() {
                // dup2 clears close-on-exec on the target
                if libc::dup2(parked[i], *target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Take ownership of a descriptor a parent handed over by protocol (qmail-send's fds 3–8,
/// qmail-todo's fd 3). `None` when `fd` is not open.
pub fn inherited(fd: RawFd) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open (EBADF if not).
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above), was given to this process by its parent
    // for exactly this use, and nothing else in the process owns it: each program calls
    // `inherited` once per protocol descriptor, at start.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Own a descriptor that `recvmsg` has just installed in this process (an `SCM_RIGHTS`
/// message, [`crate::fdpass::recv`]).
pub(crate) fn received_fd(fd: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the kernel installed `fd` in this process for the message just received and
    // handed its number to us alone: no other owner exists, and it is open.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
