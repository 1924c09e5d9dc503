//! auth::system: the last backend of POP3 and IMAP logins, the system's passwd and shadow
//! (doc/auth_pop.8, "The system's passwd"), and the maildir named in a `.qmail` file.
//!
//! The account comes from passwd (`getpwnam`); its hash from passwd's second field, or, when
//! that is `x`, from `/etc/shadow` (read as a file, at most [`SHADOW_MAX`] bytes), and is
//! checked with crypt(3)'s algorithms (DES, MD5, SHA-256/512 crypt, bcrypt; the pwhash crate).
//! A locked or empty hash (`*`, `!...`, nothing) never matches; uid 0 is refused.

use super::{Backend, Credentials, Failure, Login, Mailbox, Maildir};
use crate::ldap::check_user;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// The shadow file.
pub const SHADOW: &str = "/etc/shadow";
/// The largest shadow file read.
pub const SHADOW_MAX: u64 = 16 << 20;
/// How much of a `.qmail` file is read for its maildir line.
pub const DOT_QMAIL_MAX: u64 = 64 * 1024;

/// The passwd login of `creds`; `Ok(None)` when passwd has no such user.
pub fn login(creds: &Credentials) -> Result<Option<Login>, Failure> {
    let Ok(name) = std::str::from_utf8(&creds.login) else { return Ok(None) };
    if check_user(name).is_err() {
        return Ok(None);
    }
    let pw = nix::unistd::User::from_name(name)
        .map_err(|e| Failure::Temporary(format!("unable to look up {name} in passwd: {e}")))?;
    let Some(pw) = pw else { return Ok(None) };
    let field = pw.passwd.to_string_lossy().into_owned();
    let hash = if field == "x" {
        let shadow = read_shadow(Path::new(SHADOW))?;
        match shadow_hash(&shadow, name) {
            Some(h) => Zeroizing::new(h.to_string()),
            None => return Ok(None),
        }
    } else {
        Zeroizing::new(field)
    };
    if !matches(&hash, &creds.password) {
        return Err(Failure::BadPassword);
    }
    if pw.uid.is_root() {
        return Err(Failure::BadRecord(format!("{name} has uid 0")));
    }
    let mailbox = Mailbox {
        uid: pw.uid.as_raw(),
        gid: pw.gid.as_raw(),
        home: pw.dir,
        maildir: Maildir::DotQmail,
        quota: None,
        size_max: None,
    };
    Ok(Some(Login { name: pw.name, backend: Backend::System, mailbox: Some(mailbox) }))
}

/// Whether `password` matches a crypt(3) `hash`; locked and empty hashes never do.
pub fn matches(hash: &str, password: &[u8]) -> bool {
    if password.is_empty() || hash.is_empty() || hash.starts_with(['*', '!']) {
        return false;
    }
    pwhash::unix::verify(password, hash)
}

fn read_shadow(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let fail = |e: std::io::Error| Failure::Temporary(format!("unable to read {SHADOW}: {e}"));
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut text = Zeroizing::new(Vec::new());
    file.take(SHADOW_MAX).read_to_end(&mut text).map_err(fail)?;
    Ok(Zeroizing::new(String::from_utf8_lossy(&text).into_owned()))
}

/// The hash field of `name`'s line in shadow's text (`name:hash:...`).
pub fn shadow_hash<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.next()).flatten()
    })
}

/// The maildir of a `.qmail` file's text: its first line that starts with `.` or `/` and ends
/// with `/` (doc/dot-qmail.5: a maildir delivery line).
pub fn maildir_line(text: &[u8]) -> Option<&[u8]> {
    text.split(|&b| b == b'\n')
        .find(|l| matches!(l.first(), Some(b'.' | b'/')) && l.ends_with(b"/"))
}

/// `MAILDIR` from `home/.qmail` ([`maildir_line`]); read by the user once the process runs
/// as the user, at most [`DOT_QMAIL_MAX`] bytes. No file, no line, or unreadable: `None`.
pub fn dot_qmail_maildir(home: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(home.join(".qmail")).ok()?;
    let mut text = Vec::new();
    file.take(DOT_QMAIL_MAX).read_to_end(&mut text).ok()?;
    maildir_line(&text).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_lines() {
        let text = "root:!:19000:0:99999:7:::\njoe:$6$salt$hash:19000::::::\njo:x:1\n";
        assert_eq!(shadow_hash(text, "joe"), Some("$6$salt$hash"));
        assert_eq!(shadow_hash(text, "jo"), Some("x"));
        assert_eq!(shadow_hash(text, "j"), None);
        assert_eq!(shadow_hash(text, "root"), Some("!"));
        assert_eq!(shadow_hash("", "joe"), None);
    }

    #[test]
    fn crypt_hashes() {
        let h = pwhash::sha512_crypt::hash_with("$6$abcdefgh", "sesame").unwrap();
        assert!(matches(&h, b"sesame"));
        assert!(!matches(&h, b"sesamE"));
        assert!(!matches(&h, b""));
        assert!(!matches(&format!("!{h}"), b"sesame"), "a locked account");
        assert!(!matches("*", b"*"));
        assert!(!matches("", b""));
        #[allow(deprecated)] // old hashes are what this backend meets
        let md5 = pwhash::md5_crypt::hash_with("$1$saltsalt", "x").unwrap();
        assert!(matches(&md5, b"x"));
    }

    #[test]
    fn dot_qmail_maildir_lines() {
        assert_eq!(maildir_line(b"./Maildir/\n"), Some(&b"./Maildir/"[..]));
        assert_eq!(
            maildir_line(b"# c\n&joe@x\n|prog\n./Mailbox\n/var/m/joe/\n"),
            Some(&b"/var/m/joe/"[..])
        );
        assert_eq!(maildir_line(b"./Mailbox\n"), None);
        assert_eq!(maildir_line(b""), None);
    }
}
