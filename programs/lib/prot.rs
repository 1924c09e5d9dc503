//! prot: give up root, for good. setgroups, setgid, setuid, then check that it took.
//!
//! A value of [`Unprivileged`] exists only after the switch succeeded and was verified, so
//! code that must not run as root can demand one. Switching to uid 0 is refused.

use nix::unistd::{getegid, geteuid, getgid, getuid, setgid, setgroups, setuid, Gid, Uid};
use std::fmt;

/// Proof that the process now runs as `uid`/`gid` (real and effective), not as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unprivileged {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ProtError {
    /// The target uid is 0.
    Root,
    /// A system call failed (errno) or the ids did not change.
    Failed(String),
}

impl fmt::Display for ProtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtError::Root => f.write_str("refusing to run as root"),
            ProtError::Failed(why) => write!(f, "unable to switch user: {why}"),
        }
    }
}

impl std::error::Error for ProtError {}

/// Switch to `uid`/`gid` with no supplementary groups but `gid`. When the process is not root
/// this only succeeds if it already runs as exactly `uid`/`gid` (single-user mode).
pub fn drop_to(uid: u32, gid: u32) -> Result<Unprivileged, ProtError> {
    if uid == 0 {
        return Err(ProtError::Root);
    }
    let fail = |what: &str, e: nix::Error| ProtError::Failed(format!("{what}: {e}"));
    if geteuid().is_root() {
        setgroups(&[Gid::from_raw(gid)]).map_err(|e| fail("setgroups", e))?;
        setgid(Gid::from_raw(gid)).map_err(|e| fail("setgid", e))?;
        setuid(Uid::from_raw(uid)).map_err(|e| fail("setuid", e))?;
    }
    current(uid, gid)
}

/// The proof for a process that already runs unprivileged as `uid`/`gid`.
pub fn current(uid: u32, gid: u32) -> Result<Unprivileged, ProtError> {
    let ids = (getuid().as_raw(), geteuid().as_raw(), getgid().as_raw(), getegid().as_raw());
    if ids != (uid, uid, gid, gid) {
        return Err(ProtError::Failed(format!(
            "running as uid {}/{} gid {}/{}, wanted {uid}/{gid}",
            ids.0, ids.1, ids.2, ids.3
        )));
    }
    if uid == 0 {
        return Err(ProtError::Root);
    }
    Ok(Unprivileged { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused() {
        assert_eq!(drop_to(0, 0), Err(ProtError::Root));
    }

    #[test]
    fn a_non_root_process_stays_itself() {
        if geteuid().is_root() {
            // dropping would change the test process itself; the integration tests cover it
            return;
        }
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        assert_eq!(drop_to(uid, gid), Ok(Unprivileged { uid, gid }));
        assert!(drop_to(uid + 1, gid).is_err());
    }
}
