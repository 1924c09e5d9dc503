//! auth::file: `users/passwd`, the logins of an installation without a directory
//! (doc/qmail-users.5, "users/passwd"; doc/DECISIONS.md, 28).
//!
//! One `login:{SCHEME}value` line per login. Empty lines and lines starting with `#` are
//! skipped. The login is a user name as delivery checks names (letters, digits, `@ _ . # -`,
//! not starting with `-`) and is matched exactly; the value is a `userPassword` value
//! ([`crate::passwd`]), so it starts with `{`. The file is at most [`MAX_FILE`] bytes, each
//! line at most [`MAX_LINE`]. A line that breaks the format makes the whole file unusable (a
//! configuration error: no login is decided on a file half understood). A login listed twice
//! takes its first line. qmailctl passwd writes the file ([`set`]).

use super::Failure;
use crate::ldap::check_user;
use std::fmt;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// The file, relative to the installation root.
pub const PASSWD: &str = "users/passwd";
/// The largest file read.
pub const MAX_FILE: u64 = 1 << 20;
/// The longest line, newline excluded.
pub const MAX_LINE: usize = 1024;

/// A line that breaks the format (counting from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatError {
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PASSWD} line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for FormatError {}

/// One line's login and stored value.
pub type Entry<'a> = (&'a [u8], &'a [u8]);

/// The entries of the file's text, in file order.
pub fn parse(text: &[u8]) -> Result<Vec<Entry<'_>>, FormatError> {
    let mut out = Vec::new();
    for (i, line) in lines(text).enumerate() {
        if let Some(entry) = parse_line(line).map_err(|why| FormatError { line: i + 1, why })? {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The lines of `text`, without their newlines (a last line may lack one).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|&b| b == b'\n').filter(move |_| !text.is_empty())
}

/// One line: `None` for a comment or an empty line.
fn parse_line(line: &[u8]) -> Result<Option<Entry<'_>>, &'static str> {
    if line.len() > MAX_LINE {
        return Err("line too long");
    }
    if line.is_empty() || line[0] == b'#' {
        return Ok(None);
    }
    let colon = line.iter().position(|&b| b == b':').ok_or("no colon")?;
    let (login, value) = (&line[..colon], &line[colon + 1..]);
    let name = std::str::from_utf8(login).map_err(|_| "login not UTF-8")?;
    check_user(name).map_err(|_| "bad login name")?;
    if value.first() != Some(&b'{') {
        return Err("password value without {SCHEME}");
    }
    if value.iter().any(|&b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("blank or control character in the password value");
    }
    Ok(Some((login, value)))
}

/// The stored value of `login` in `home`'s `users/passwd`; `Ok(None)` when the file or the
/// login is not there. Unreadable, too big or malformed is a configuration error.
pub fn find(home: &Path, login: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, Failure> {
    let path = home.join(PASSWD);
    let Some(text) = read(&path)? else { return Ok(None) };
    let entries = parse(&text).map_err(|e| Failure::Config(e.to_string()))?;
    Ok(entries.iter().find(|(l, _)| *l == login).map(|(_, v)| Zeroizing::new(v.to_vec())))
}

/// The file's bytes, at most [`MAX_FILE`]; `None` when it does not exist.
fn read(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, Failure> {
    let unreadable = |e: std::io::Error| Failure::Config(format!("unable to read {PASSWD}: {e}"));
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if crate::file::is_missing(&e) => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    let mut text = Zeroizing::new(Vec::new());
    file.take(MAX_FILE + 1).read_to_end(&mut text).map_err(unreadable)?;
    if text.len() as u64 > MAX_FILE {
        return Err(Failure::Config(format!("{PASSWD} is over {MAX_FILE} bytes")));
    }
    Ok(Some(text))
}

/// The file's text with `login`'s password set to `value`: its first line replaced (further
/// lines of the same login removed), or a line appended; comments and other lines kept.
pub fn set(text: &[u8], login: &str, value: &str) -> Result<Vec<u8>, FormatError> {
    let new = format!("{login}:{value}");
    if let Err(why) = parse_line(new.as_bytes()) {
        return Err(FormatError { line: 0, why });
    }
    parse(text)?;
    let mut out = Vec::with_capacity(text.len() + new.len() + 1);
    let mut done = false;
    for line in lines(text) {
        let mine = parse_line(line).ok().flatten().is_some_and(|(l, _)| l == login.as_bytes());
        if mine && done {
            continue;
        }
        out.extend_from_slice(if mine { new.as_bytes() } else { line });
        out.push(b'\n');
        done |= mine;
    }
    if !done {
        out.extend_from_slice(new.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_comments() {
        let text = b"# logins\n\njoe:{SSHA}abc=\nann@x.org:{CRYPT}$6$s$h\njoe:{SHA}second\n";
        let e = parse(text).unwrap();
        let e: Vec<(&str, &str)> = e
            .iter()
            .map(|(l, v)| (std::str::from_utf8(l).unwrap(), std::str::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            e,
            [("joe", "{SSHA}abc="), ("ann@x.org", "{CRYPT}$6$s$h"), ("joe", "{SHA}second")]
        );
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"joe:{SHA}x").unwrap().len(), 1, "a last line without newline");
    }

    #[test]
    fn bad_lines_spoil_the_file() {
        let rows: &[(&[u8], &str)] = &[
            (b"joe\n", "no colon"),
            (b"-joe:{SHA}x\n", "bad login name"),
            (b"jo e:{SHA}x\n", "bad login name"),
            (b":{SHA}x\n", "bad login name"),
            (b"joe:plain\n", "password value without {SCHEME}"),
            (b"joe:\n", "password value without {SCHEME}"),
            (b"joe:{SHA}x y\n", "blank or control character in the password value"),
            (b"joe:{SHA}x\r\n", "blank or control character in the password value"),
            (b"j\xffe:{SHA}x\n", "login not UTF-8"),
        ];
        for (text, why) in rows {
            let text = [&b"ok:{SHA}x\n"[..], text].concat();
            assert_eq!(parse(&text), Err(FormatError { line: 2, why }), "{text:?}");
        }
        let long = [b"joe:{SHA}".to_vec(), vec![b'a'; MAX_LINE]].concat();
        assert_eq!(parse(&long).unwrap_err().why, "line too long");
    }

    #[test]
    fn setting_replaces_or_appends() {
        let text = b"# c\njoe:{SHA}old\nann:{SHA}a\njoe:{SHA}older\n";
        let out = set(text, "joe", "{SSHA}new").unwrap();
        assert_eq!(out, b"# c\njoe:{SSHA}new\nann:{SHA}a\n");
        let out = set(b"# c", "bob", "{SSHA}b").unwrap();
        assert_eq!(out, b"# c\nbob:{SSHA}b\n");
        assert_eq!(set(b"", "bob", "{SSHA}b").unwrap(), b"bob:{SSHA}b\n");
        assert!(set(b"", "-bob", "{SSHA}b").is_err());
        assert!(set(b"", "bob", "{SSHA}b\nroot:{SHA}x").is_err());
        assert!(set(b"broken\n", "bob", "{SSHA}b").is_err());
    }
}
