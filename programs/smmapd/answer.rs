//! smmapd's answer to one key: userdeny, then the verdict of [`qmail::verify`] (the lookup
//! delivery makes), then the `+detail` folder — doc/smmapd.8, DESCRIPTION, in upstream's order.
//!
//! The key is `local@domain`, split at the LAST `@`; the detail starts at the FIRST `+` of the
//! local part. The local part (without the detail) and the domain are lowercased for the
//! lookups; the detail never is; the `OK` value is the key exactly as received. Two extension
//! characters meet here: `+` is the seed's (Cyrus) plus addressing, handled below; `-` is
//! qmail's, handled by the verdict's own lookup (`joe-list@` finds `joe` and his
//! `.qmail-list`).

use qmail::control::Control;
use qmail::log;
use qmail::socketmap::Status;
use qmail::userdeny;
use qmail::verify::{self, Verdict, Verifier};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The reply text of an over-quota mailbox (Cyrus's com_err string).
pub const OVER_QUOTA: &str = "Over quota";
/// The reply text of a domain this host does not deliver.
pub const NOT_LOCAL: &str = "Sorry, that domain is not delivered here. (#5.1.2)";
/// The reply text when a folder cannot be checked.
pub const IO_ERROR: &str = "System I/O error";

/// What answers keys: the verifier (its directory connection kept between requests) and the
/// settings that shape the reply.
pub struct Answerer {
    pub verifier: Verifier,
    pub control: Control,
    /// `-p`: drop the detail instead of checking its folder.
    pub skip_plus: bool,
    /// Over quota is `PERM` rather than `TEMP`.
    pub quota_perm: bool,
    /// The service name for userdeny (`SMMAPD_SERVICE`, default `smmap`).
    pub service: Vec<u8>,
}

/// A key taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Key<'a> {
    /// `local@domain` without the detail, lowercased.
    base: Vec<u8>,
    /// What follows the first `+` of the local part, as received; `None` without a `+`.
    detail: Option<&'a [u8]>,
}

impl<'a> Key<'a> {
    fn split(key: &'a [u8]) -> Self {
        let (local, domain) = qmail::address::split(key);
        let (user, detail) = match local.iter().position(|&b| b == b'+') {
            Some(plus) => (&local[..plus], Some(&local[plus + 1..])),
            None => (local, None),
        };
        let mut base = user.to_ascii_lowercase();
        if let Some(domain) = domain {
            base.push(b'@');
            base.extend(domain.to_ascii_lowercase());
        }
        Key { base, detail }
    }
}

impl Answerer {
    /// The reply to `key`.
    pub fn answer(&mut self, key: &[u8]) -> (Status, Vec<u8>) {
        if key.is_empty() {
            return (Status::NotFound, verify::NO_MAILBOX.into());
        }
        let Key { base, detail } = Key::split(key);
        match userdeny::denied(&self.control, &base, &self.service) {
            Ok(Some(message)) => return (Status::NotFound, message.into_bytes()),
            Ok(None) => {}
            // upstream fails open: a broken deny list does not stop mail
            Err(e) => qmail::log::line(format_args!("smmapd: warning: {e}: allowing")),
        }
        let folder = detail.filter(|d| !self.skip_plus && !d.is_empty());
        let checked = self.verifier.detailed(&base, folder.is_some());
        if let (Some(detail), Verdict::Deliverable | Verdict::OverQuota(_)) =
            (folder, &checked.verdict)
        {
            match checked.maildir.as_deref().map(|m| folder_exists(m, detail)) {
                Some(Ok(true)) => {}
                None | Some(Ok(false)) => return (Status::NotFound, verify::NO_MAILBOX.into()),
                Some(Err(e)) => {
                    qmail::log::line(format_args!(
                        "smmapd: warning: unable to check a folder: {e}"
                    ));
                    return (Status::Temp, IO_ERROR.into());
                }
            }
        }
        match checked.verdict {
            Verdict::Deliverable => (Status::Ok, key.to_vec()),
            Verdict::Unknown(text) | Verdict::NotPostable(text) => {
                (Status::NotFound, text.into_bytes())
            }
            Verdict::NotLocal => (Status::NotFound, NOT_LOCAL.into()),
            Verdict::OverQuota(_) if self.quota_perm => (Status::Perm, OVER_QUOTA.into()),
            Verdict::OverQuota(_) => (Status::Temp, OVER_QUOTA.into()),
            // the reason names entries and files: for the log only
            ref v @ Verdict::Temporary(ref reason) => {
                log::line(format_args!(
                    "smmapd: pid {}: {}: {reason}",
                    std::process::id(),
                    qmail::safe::log(key)
                ));
                let status = if checked.timed_out { Status::Timeout } else { Status::Temp };
                (status, v.client_text().into())
            }
        }
    }
}

/// The Maildir++ folder name of a detail: `.` and the hierarchy levels joined by `.`
/// (`a/b` → `.a.b`); `None` for an empty level, or a name that could leave the Maildir.
fn folder_name(detail: &[u8]) -> Option<Vec<u8>> {
    if detail.split(|&b| b == b'/').any(<[u8]>::is_empty) || detail.contains(&0) {
        return None;
    }
    let mut name = vec![b'.'];
    name.extend(detail.iter().map(|&b| if b == b'/' { b'.' } else { b }));
    // `.` + `.` is the parent directory
    (name != b"..").then_some(name)
}

/// Whether the folder of `detail` exists in `maildir` (exact case, with its `cur/`). A folder
/// the process may not search is given the benefit of the doubt, as [`qmail::verify`] does:
/// delivery decides.
fn folder_exists(maildir: &Path, detail: &[u8]) -> io::Result<bool> {
    let Some(name) = folder_name(detail) else { return Ok(false) };
    match std::fs::metadata(maildir.join(OsStr::from_bytes(&name)).join("cur")) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(true),
        Err(e) if qmail::file::is_missing(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("bob@example.org", "bob@example.org", None),
            ("Bob@Example.ORG", "bob@example.org", None),
            ("bob+Lists@example.org", "bob@example.org", Some("Lists")),
            ("BOB+a/B@EXAMPLE.org", "bob@example.org", Some("a/B")),
            ("bob+x+y@example.org", "bob@example.org", Some("x+y")),
            ("bob+@example.org", "bob@example.org", Some("")),
            ("a@b@example.org", "a@b@example.org", None),
            ("a+x@b@Example.org", "a@example.org", Some("x@b")),
            ("nodomain", "nodomain", None),
            ("+shared@example.org", "@example.org", Some("shared")),
            ("joe-list@example.org", "joe-list@example.org", None),
        ];
        for (key, base, detail) in rows {
            let k = Key::split(key.as_bytes());
            assert_eq!(k.base, base.as_bytes(), "{key}");
            assert_eq!(k.detail, detail.map(str::as_bytes), "{key}");
        }
    }

    #[test]
    fn folder_names() {
        let rows: &[(&str, Option<&str>)] = &[
            ("Lists", Some(".Lists")),
            ("a/b", Some(".a.b")),
            ("a.b", Some(".a.b")),
            (".", None),
            ("..", Some("...")),
            ("../../etc", Some(".......etc")),
            ("a//b", None),
            ("/a", None),
            ("a/", None),
            ("", None),
            ("a\0b", None),
        ];
        for (detail, want) in rows {
            let got = folder_name(detail.as_bytes());
            assert_eq!(got.as_deref(), want.map(str::as_bytes), "{detail:?}");
        }
    }

    #[test]
    fn folders_on_disk() {
        let dir = std::env::temp_dir().join(format!("smmapd-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".Lists/cur")).unwrap();
        std::fs::create_dir_all(dir.join(".a.b/cur")).unwrap();
        std::fs::create_dir_all(dir.join(".nocur")).unwrap();
        assert!(folder_exists(&dir, b"Lists").unwrap());
        assert!(!folder_exists(&dir, b"lists").unwrap());
        assert!(folder_exists(&dir, b"a/b").unwrap());
        assert!(!folder_exists(&dir, b"nocur").unwrap());
        assert!(!folder_exists(&dir, b".").unwrap());
        assert!(!folder_exists(&dir, &[b'x'; 300]).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
