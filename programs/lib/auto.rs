//! auto: compile-time defaults (upstream's `auto_*.c`) and the installation root.
//!
//! `QMAIL_HOME` at build time changes [`HOME`]; `QMAILHOME` at run time overrides it, but only
//! when the process is not running setuid or setgid (real and effective ids equal), so a
//! setuid `qmail-queue` never takes its queue path from the environment.

use std::path::PathBuf;

/// The compile-time installation root.
pub const HOME: &str = match option_env!("QMAIL_HOME") {
    Some(home) => home,
    None => "/var/qmail",
};

/// Number of split directories under `queue/mess`, `info`, `local` and `remote` (upstream's
/// `conf-split`): `QMAIL_SPLIT` at build time, 1 to 1000; 1 when unset (upstream 23: one
/// directory's blocks shared by every message of a sync round, doc/DECISIONS.md 50). A queue
/// is made for one split; qmail-send refuses a queue made for another ([`check_split`]).
///
/// [`check_split`]: crate::queue::check_split
pub const SPLIT: u64 = match option_env!("QMAIL_SPLIT") {
    Some(s) => split_of(s),
    None => 1,
};

/// `QMAIL_SPLIT`'s value: decimal, 1 to 1000, or the build fails.
const fn split_of(s: &str) -> u64 {
    let b = s.as_bytes();
    assert!(!b.is_empty(), "QMAIL_SPLIT is empty");
    let mut n = 0u64;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "QMAIL_SPLIT is not a decimal number");
        n = n * 10 + (b[i] - b'0') as u64;
        assert!(n <= 1000, "QMAIL_SPLIT is above 1000");
        i += 1;
    }
    assert!(n >= 1, "QMAIL_SPLIT is 0");
    n
}

/// The qmail users, in upstream's `conf-users` order, and the two groups.
pub const USER_ALIAS: &str = "alias";
pub const USER_QMAILD: &str = "qmaild";
pub const USER_QMAILL: &str = "qmaill";
pub const USER_QMAILP: &str = "qmailp";
pub const USER_QMAILQ: &str = "qmailq";
pub const USER_QMAILR: &str = "qmailr";
pub const USER_QMAILS: &str = "qmails";
pub const GROUP_QMAIL: &str = "qmail";
pub const GROUP_NOFILES: &str = "nofiles";

/// True when the process runs setuid or setgid: the environment must not be trusted.
/// Asked the kernel once per process (four system calls that [`home`] made for every file it
/// named): a process started setuid or setgid stays one, and no program here changes only
/// its effective ids, so the answer cannot turn from false to true.
pub fn setugid() -> bool {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    static SETUGID: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SETUGID.get_or_init(|| getuid() != geteuid() || getgid() != getegid())
}

/// The installation root for this process: `QMAILHOME` when set, non-empty and the process is
/// not setuid/setgid; otherwise [`HOME`].
pub fn home() -> PathBuf {
    if !setugid() {
        if let Some(dir) = std::env::var_os("QMAILHOME") {
            if !dir.is_empty() {
                return PathBuf::from(dir);
            }
        }
    }
    PathBuf::from(HOME)
}

/// Every program of the package, as installed in `QMAILHOME/bin`.
pub const PROGRAMS: &[&str] = &[
    "auth_imap",
    "auth_pop",
    "auth_smtp",
    "qmail-cdb",
    "qmail-clean",
    "qmail-getpw",
    "qmail-inject",
    "qmail-ldaplookup",
    "qmail-local",
    "qmail-lspawn",
    "qmail-newu",
    "qmail-pop3d",
    "qmail-popup",
    "qmail-qread",
    "qmail-qstat",
    "qmail-queue",
    "qmail-quotawarn",
    "qmail-remote",
    "qmail-reply",
    "qmail-rspawn",
    "qmail-send",
    "qmail-showctl",
    "qmail-smtpd",
    "qmail-start",
    "qmail-tcpok",
    "qmail-tcpsrv",
    "qmail-tcpto",
    "qmail-todo",
    "qmail-verify",
    "qmailctl",
    "sendmail",
    "smmapd",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_settings() {
        assert_eq!((split_of("1"), split_of("23"), split_of("1000")), (1, 23, 1000));
        for bad in ["", "0", "1001", "99999999999999999999999", "2x", "-1", " 1", "+1"] {
            assert!(std::panic::catch_unwind(|| split_of(bad)).is_err(), "{bad:?}");
        }
    }
}
