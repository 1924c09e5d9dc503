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

/// Number of split directories under `queue/mess`, `info`, `local` and `remote` (`conf-split`).
pub const SPLIT: u64 = 23;

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
pub fn setugid() -> bool {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    getuid() != geteuid() || getgid() != getegid()
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
