//! qmail-pop3d's view of the Maildir (doc/qmail-pop3d.8, DESCRIPTION): the old files of
//! `tmp/` removed, the messages of `new/` and `cur/` in delivery order, and what QUIT does.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One message of the session.
#[derive(Debug, Clone)]
pub struct Message {
    /// `new/NAME` or `cur/NAME`, relative to the Maildir (the working directory)
    pub path: String,
    /// `,S=<n>` from the name, else the file's size
    pub size: u64,
    pub deleted: bool,
}

/// The messages of `new/` and `cur/`: no dot files, none delivered at `now` or later (a
/// delivery in this second may still be on its way), ordered by delivery time (the leading
/// number of the name, else the modification time), then by name.
pub fn scan(now: SystemTime) -> io::Result<Vec<Message>> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut found: Vec<(u64, Message)> = Vec::new();
    for dir in ["new", "cur"] {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let bytes = name.as_bytes();
            if bytes.first() == Some(&b'.') {
                continue;
            }
            // a name that is not UTF-8 cannot be a UIDL or a path we print: left alone
            let Some(text) = name.to_str() else { continue };
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => Some(m),
                Ok(_) => continue,
                Err(_) => None,
            };
            let time = match delivery_time(bytes) {
                Some(t) => t,
                None => match &meta {
                    Some(m) => m.mtime().max(0) as u64,
                    None => continue,
                },
            };
            if time >= now {
                continue;
            }
            let size = match qmail::quota::size_from_name(bytes) {
                Some(s) => s,
                None => match &meta {
                    Some(m) => m.len(),
                    None => continue,
                },
            };
            found.push((time, Message { path: format!("{dir}/{text}"), size, deleted: false }));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path[4..].cmp(&b.1.path[4..])));
    Ok(found.into_iter().map(|(_, m)| m).collect())
}

/// The leading decimal number of a Maildir name when a `.` follows it (`1733300000.M...`).
fn delivery_time(name: &[u8]) -> Option<u64> {
    let (n, rest) = qmail::pop3::leading_number(name)?;
    if rest.first() == Some(&b'.') {
        n
    } else {
        None
    }
}

/// What QUIT did.
#[derive(Debug, Default)]
pub struct Quit {
    /// some deleted message could not be unlinked
    pub unlink_failed: bool,
    pub removed: u64,
    pub removed_bytes: u64,
}

/// QUIT: unlink the deleted messages, move the others still in `new/` to `cur/NAME:2,`
/// (a failed move is left for the next session, as upstream), and with a quota account for
/// the removals in `maildirsize`.
pub fn quit(messages: &[Message], quota: Option<&qmail::quota::Quota>) -> Quit {
    let mut done = Quit::default();
    for m in messages {
        if m.deleted {
            match fs::remove_file(&m.path) {
                Ok(()) => {
                    done.removed += 1;
                    done.removed_bytes = done.removed_bytes.saturating_add(m.size);
                }
                // gone already (another session): it is removed all the same
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => done.unlink_failed = true,
            }
        } else if let Some(name) = m.path.strip_prefix("new/") {
            let _ = fs::rename(&m.path, format!("cur/{name}:2,"));
        }
    }
    if done.removed > 0 && quota.is_some() {
        if let Ok(here) = std::env::current_dir() {
            // best effort: a maildirsize that missed a removal is corrected when it is
            // recalculated (it overstates the usage meanwhile)
            let _ = qmail::quota::remove(
                &qmail::quota::root(Path::new(&here)),
                done.removed_bytes,
                done.removed,
            );
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_times() {
        assert_eq!(delivery_time(b"1733300000.M1P2.host,S=5"), Some(1733300000));
        assert_eq!(delivery_time(b"1733300000"), None);
        assert_eq!(delivery_time(b"abc.def"), None);
        assert_eq!(delivery_time(b"99999999999999999999999.x"), None);
    }
}
