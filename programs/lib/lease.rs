//! lease: whether anybody else has a file open (doc/INTERNALS.md, "Recycled queue files").
//!
//! Linux grants a write lease (`fcntl(F_SETLEASE, F_WRLCK)`) only while the caller's open
//! file description is the inode's only one that reads or writes, in any process: a
//! descriptor kept by a background process, one passed over a socket and not yet received,
//! a mapping — each holds an open file description and refuses the lease. While the lease is
//! held, anybody who opens the file waits for it to be given up (up to the kernel's
//! lease-break time) and the holder is sent SIGIO: a process that takes leases blocks SIGIO
//! (qmail-clean does, at its start) and holds a lease only for a few system calls.
//!
//! This module and [`crate::child`] hold the project's `unsafe` code: here one `fcntl` call
//! on a descriptor the caller owns, with an integer argument.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// A write lease on a file, given up when dropped.
pub struct Lease<'a> {
    file: &'a File,
}

/// Take a write lease on `file`: `Ok` only when `file` is the only open file description of
/// its inode anywhere. An error when another exists (`EAGAIN`), when the caller neither owns
/// the file nor has `CAP_LEASE`, or when leases are off (`/proc/sys/fs/leases-enable`).
pub fn exclusive(file: &File) -> io::Result<Lease<'_>> {
    set(file, libc::F_WRLCK)?;
    Ok(Lease { file })
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = set(self.file, libc::F_UNLCK);
    }
}

fn set(file: &File, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETLEASE takes an integer argument and touches no memory of ours; the
    // descriptor is open for as long as `file` is borrowed.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, kind) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_only_for_the_only_open_file() {
        let path = std::env::temp_dir().join(format!("qmail-lease-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let open = || File::options().read(true).write(true).open(&path).unwrap();
        let mine = open();
        {
            let _lease = exclusive(&mine).expect("nobody else has it open");
        }
        // another open file description (a reader), even in this process, refuses it
        let reader = File::open(&path).unwrap();
        assert!(exclusive(&mine).is_err());
        drop(reader);
        let writer = open();
        assert!(exclusive(&mine).is_err());
        drop(writer);
        // a duplicated descriptor shares the description: still the only one
        let dup = mine.try_clone().unwrap();
        assert!(exclusive(&mine).is_ok());
        drop(dup);
        std::fs::remove_file(&path).unwrap();
    }
}
