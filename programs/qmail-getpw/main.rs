//! qmail-getpw: find the user a local part is delivered to (spec tools §9, pipeline §3.6).
//!
//! `qmail-getpw local`, run by qmail-lspawn unprivileged (as `qmailp`, else `nobody`, when
//! qmail-lspawn is root; as qmail-lspawn's own user otherwise). Looks `local` up in this order:
//!
//! 1. `QMAILHOME/users/cdb` (made by qmail-newu from `users/assign`): an exact or wildcard
//!    assignment, its fields printed as they are;
//! 2. the passwd database: the longest candidate that is all of `local` or the part before a
//!    `-`, under 32 bytes, lowercased, naming an account with uid ≠ 0 whose home exists and
//!    belongs to it; dash `-` and ext = the rest (both empty when all of `local` matched);
//! 3. the alias user (`alias` in passwd; with no such account, the owner of `QMAILHOME/alias`,
//!    with that directory as home), dash `-`, ext = all of `local`.
//!
//! Prints `user\0uid\0gid\0home\0dash\0ext\0` on stdout.
//!
//! Exit codes ([`qmail::exit::getpw_status`] reads them): 0 found; 100 no argument; 111
//! `users/cdb` unreadable or corrupt, or stdout failed; 115 temporary error looking at a home
//! directory; 116 no alias user; 118 passwd temporarily unavailable.
//!
//! Security: this is the unprivileged half of the user lookup; it trusts nothing it reads and
//! qmail-lspawn checks its answer again (six bounded fields, uid ≠ 0). It does not change
//! users itself: qmail-lspawn starts it as the lookup user.

use qmail::cdb::Reader;
use qmail::exit::{self, qlx};
use qmail::{auto, users};
use std::ffi::OsString;
use std::io::{self, ErrorKind, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

/// User names are shorter than this (upstream's GETPW_USERLEN).
const USERLEN: usize = 32;

/// The answer: the six fields qmail-lspawn reads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    user: Vec<u8>,
    uid: u32,
    gid: u32,
    home: Vec<u8>,
    dash: Vec<u8>,
    ext: Vec<u8>,
}

/// A failure: the exit code and a line for stderr.
struct Failure(i32, String);

fn main() -> ExitCode {
    let Some(local) = std::env::args_os().nth(1) else {
        eprintln!("qmail-getpw: usage: qmail-getpw local");
        return ExitCode::from(exit::PERM);
    };
    let result = find(&auto::home(), local.as_bytes()).and_then(|found| {
        io::stdout()
            .lock()
            .write_all(&found.encode())
            .and_then(|()| io::stdout().flush())
            .map_err(|e| Failure(exit::TEMP.into(), format!("unable to write: {e}")))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, why)) => {
            eprintln!("qmail-getpw: {why}");
            // the codes are all below 256
            ExitCode::from(u8::try_from(code).unwrap_or(exit::TEMP))
        }
    }
}

impl Found {
    fn encode(&self) -> Vec<u8> {
        let (uid, gid) = (self.uid.to_string(), self.gid.to_string());
        let mut out = Vec::new();
        for field in
            [&self.user[..], uid.as_bytes(), gid.as_bytes(), &self.home, &self.dash, &self.ext]
        {
            out.extend_from_slice(field);
            out.push(0);
        }
        out
    }
}

fn find(home: &Path, local: &[u8]) -> Result<Found, Failure> {
    if let Some(found) = assigned(home, local)? {
        return Ok(found);
    }
    if let Some(found) = system_user(local)? {
        return Ok(found);
    }
    alias(home, local)
}

/// Step 1: `users/cdb`. Absent is no assignment; unreadable or corrupt is exit 111.
fn assigned(home: &Path, local: &[u8]) -> Result<Option<Found>, Failure> {
    let cdb = |e: &dyn std::fmt::Display| Failure(exit::TEMP.into(), format!("{e}"));
    let Some(reader) = Reader::open(&home.join(users::CDB))
        .map_err(|e| cdb(&format!("unable to read {}: {e}", users::CDB)))?
    else {
        return Ok(None);
    };
    // users/assign is UTF-8 (qmail-newu refuses anything else), so a local part that is not
    // has no exact entry; it skips the wildcards too rather than match a mangled copy
    let Ok(local) = std::str::from_utf8(local) else { return Ok(None) };
    let Some(a) = users::lookup(&reader, local).map_err(|e| cdb(&e))? else { return Ok(None) };
    Ok(Some(Found {
        user: a.user.into_bytes(),
        uid: a.uid,
        gid: a.gid,
        home: a.home.into_os_string().into_vec(),
        dash: a.dash.into_bytes(),
        ext: a.ext.into_bytes(),
    }))
}

/// Step 2: the passwd database, longest candidate first.
fn system_user(local: &[u8]) -> Result<Option<Found>, Failure> {
    for (name, rest) in candidates(local) {
        let Ok(name) = std::str::from_utf8(&name) else { continue };
        let Some(pw) = passwd(name)? else { continue };
        if pw.uid.is_root() || !owns_home(pw.uid.as_raw(), &pw.dir)? {
            continue;
        }
        let (dash, ext) = match rest {
            Some(rest) => (b"-".to_vec(), rest.to_vec()),
            None => (Vec::new(), Vec::new()),
        };
        return Ok(Some(Found {
            user: pw.name.into_bytes(),
            uid: pw.uid.as_raw(),
            gid: pw.gid.as_raw(),
            home: pw.dir.into_os_string().into_vec(),
            dash,
            ext,
        }));
    }
    Ok(None)
}

/// The user name candidates of `local`, longest first: all of it (rest `None`), then each part
/// before a `-` (rest: what follows that `-`); non-empty, under [`USERLEN`] bytes,
/// lowercased.
fn candidates(local: &[u8]) -> Vec<(Vec<u8>, Option<&[u8]>)> {
    let whole = std::iter::once((local, None));
    let cuts = (0..local.len())
        .rev()
        .filter(|&i| local[i] == b'-')
        .map(|i| (&local[..i], Some(&local[i + 1..])));
    whole
        .chain(cuts)
        .filter(|(name, _)| !name.is_empty() && name.len() < USERLEN)
        .map(|(name, rest)| (name.to_ascii_lowercase(), rest))
        .collect()
}

/// The passwd entry of `name`; a lookup error is temporary (118).
fn passwd(name: &str) -> Result<Option<nix::unistd::User>, Failure> {
    nix::unistd::User::from_name(name)
        .map_err(|e| Failure(qlx::SYS, format!("unable to look up {name} in passwd: {e}")))
}

/// Whether `dir` exists and belongs to `uid`. A missing or inaccessible directory is a no; a
/// temporary error (NFS, I/O) is exit 115.
fn owns_home(uid: u32, dir: &Path) -> Result<bool, Failure> {
    match std::fs::metadata(dir) {
        Ok(meta) => Ok(meta.uid() == uid),
        Err(e) if permanent(&e) => Ok(false),
        Err(e) => Err(Failure(qlx::NFS, format!("unable to stat {}: {e}", dir.display()))),
    }
}

/// The stat errors that mean "no such home" rather than "try again".
fn permanent(e: &io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOTDIR | libc::EACCES | libc::ELOOP | libc::ENAMETOOLONG)
        )
}

/// Step 3: the alias user, with dash `-` and ext = all of `local`.
fn alias(home: &Path, local: &[u8]) -> Result<Found, Failure> {
    let (user, uid, gid, dir) = match passwd(auto::USER_ALIAS)? {
        Some(pw) => (pw.name, pw.uid.as_raw(), pw.gid.as_raw(), pw.dir.into_os_string()),
        None => {
            let dir = home.join("alias");
            let meta = std::fs::metadata(&dir).map_err(|e| {
                let code = if permanent(&e) { qlx::NOALIAS } else { qlx::NFS };
                Failure(code, format!("no alias user and unable to stat {}: {e}", dir.display()))
            })?;
            // name the owner as passwd does; an owner without an entry is still "alias"
            let user = nix::unistd::User::from_uid(meta.uid().into())
                .ok()
                .flatten()
                .map_or_else(|| auto::USER_ALIAS.to_string(), |pw| pw.name);
            (user, meta.uid(), meta.gid(), OsString::from(dir))
        }
    };
    Ok(Found {
        user: user.into_bytes(),
        uid,
        gid,
        home: dir.into_vec(),
        dash: b"-".to_vec(),
        ext: local.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_longest_first() {
        type Row<'a> = (&'a [u8], Vec<(&'a [u8], Option<&'a [u8]>)>);
        let rows: Vec<Row> = vec![
            (b"joe", vec![(b"joe", None)]),
            (
                b"Joe-Foo-Bar",
                vec![
                    (b"joe-foo-bar", None),
                    (b"joe-foo", Some(b"Bar")),
                    (b"joe", Some(b"Foo-Bar")),
                ],
            ),
            (b"-x", vec![(b"-x", None)]),
            (b"x-", vec![(b"x-", None), (b"x", Some(b""))]),
            (b"", vec![]),
            (b"--", vec![(b"--", None), (b"-", Some(b""))]),
        ];
        for (local, want) in rows {
            let got = candidates(local);
            let got: Vec<(&[u8], Option<&[u8]>)> =
                got.iter().map(|(n, r)| (n.as_slice(), *r)).collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(local));
        }
    }

    #[test]
    fn long_names_are_skipped() {
        let long = [vec![b'a'; 40], b"-b".to_vec()].concat();
        assert_eq!(candidates(&long), vec![]);
        let fits = [vec![b'a'; 31], b"-b".to_vec()].concat();
        assert_eq!(candidates(&fits), vec![(vec![b'a'; 31], Some(&b"b"[..]))]);
        // hostile: many dashes stay linear in output size per candidate count
        let dashes = vec![b'-'; 100_000];
        assert_eq!(candidates(&dashes).len(), 31);
    }

    #[test]
    fn encoding() {
        let f = Found {
            user: b"joe".to_vec(),
            uid: 1000,
            gid: 100,
            home: b"/home/joe".to_vec(),
            dash: b"-".to_vec(),
            ext: b"x".to_vec(),
        };
        assert_eq!(f.encode(), b"joe\x001000\x00100\x00/home/joe\x00-\x00x\x00");
    }
}
