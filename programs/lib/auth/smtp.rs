//! auth::smtp: what qmail-smtpd and auth_smtp say to each other (doc/auth_smtp.8, "The
//! protocol"): one request on auth_smtp's standard input, one answer on its standard
//! output, then its exit. Both ends use these functions; neither encodes by hand.
//!
//! Request, fields ended by NUL, the client's base64 as the client sent it:
//!
//! ```text
//! login\0<base64 user>\0<base64 password>\0
//! plain\0<base64 of authzid NUL authcid NUL password>\0
//! ```
//!
//! Answer, with exit 0:
//!
//! | Bytes | Meaning | qmail-smtpd |
//! |---|---|---|
//! | `K<name>\0` | password right; `name` is the account's name | 235, relaying allowed |
//! | `D` | unknown user, wrong or empty password | 535 5.7.8 |
//! | `Ddisabled\0` | password right, but `accountStatus` refuses SMTP AUTH | 535 5.7.8, "account disabled" (doc/DECISIONS.md, 13) |
//! | `Z` | the request is malformed: bad base64, a missing field, too long; or the account's record is broken | 501 5.5.2 |
//!
//! Anything else — no output, an exit other than 0, bytes that are not one of these — is a
//! temporary failure (454 4.3.0): the directory down or slow, several entries, an unreadable
//! control file.

use super::{Credentials, LOGIN_MAX};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::process::ExitStatus;
use zeroize::Zeroizing;

/// The longest request, NULs included: RFC 4954's 12288-byte line for each base64 field and
/// room for the rest. auth_smtp answers `Z` to a longer one.
pub const REQUEST_MAX: usize = 2 * 12288 + 16;

/// The request for `AUTH LOGIN`: the two base64 lines the client sent.
pub fn login_request(user_b64: &[u8], password_b64: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new([b"login\0", user_b64, b"\0", password_b64, b"\0"].concat())
}

/// The request for `AUTH PLAIN`: the base64 response the client sent.
pub fn plain_request(response_b64: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new([b"plain\0", response_b64, b"\0"].concat())
}

/// Bytes that are not a request (the answer is `Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The credentials in the start of `buf` (sans-I/O): `Ok(None)` while the request is
/// incomplete; [`Malformed`] for an unknown mechanism, bad base64, a PLAIN response without
/// its two NULs, bytes after the request, or more than [`REQUEST_MAX`] bytes.
pub fn credentials(buf: &[u8]) -> Result<Option<Credentials>, Malformed> {
    let Some(nul) = buf.iter().take(REQUEST_MAX).position(|&b| b == 0) else {
        return incomplete(buf);
    };
    let fields = match &buf[..nul] {
        m if m.eq_ignore_ascii_case(b"login") => 2,
        m if m.eq_ignore_ascii_case(b"plain") => 1,
        _ => return Err(Malformed("unknown mechanism")),
    };
    let rest = &buf[nul + 1..];
    let mut parts = Vec::with_capacity(fields);
    let mut at = 0;
    for _ in 0..fields {
        let Some(end) = rest[at..].iter().position(|&b| b == 0) else {
            return incomplete(buf);
        };
        parts.push(&rest[at..at + end]);
        at += end + 1;
    }
    if at != rest.len() {
        return Err(Malformed("bytes after the request"));
    }
    let decoded: Vec<Zeroizing<Vec<u8>>> = parts
        .iter()
        .map(|p| BASE64.decode(p).map(Zeroizing::new))
        .collect::<Result<_, _>>()
        .map_err(|_| Malformed("bad base64"))?;
    let creds = match decoded.as_slice() {
        [user, password] => Credentials { login: user.to_vec(), password: password.clone() },
        [response] => {
            // authzid NUL authcid NUL password; the authzid is ignored
            let mut it = response.splitn(3, |&b| b == 0);
            let (Some(_authzid), Some(authcid), Some(password)) = (it.next(), it.next(), it.next())
            else {
                return Err(Malformed("PLAIN response without two NULs"));
            };
            Credentials { login: authcid.to_vec(), password: Zeroizing::new(password.to_vec()) }
        }
        _ => return Err(Malformed("wrong number of fields")),
    };
    Ok(Some(creds))
}

fn incomplete(buf: &[u8]) -> Result<Option<Credentials>, Malformed> {
    if buf.len() >= REQUEST_MAX {
        Err(Malformed("request too long"))
    } else {
        Ok(None)
    }
}

/// The text after `D` for a disabled account.
const DISABLED: &[u8] = b"disabled";

/// One answer of auth_smtp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `K<name>\0`: authenticated as `name` (not empty, no NUL, at most [`LOGIN_MAX`] bytes).
    Ok(Vec<u8>),
    /// `D`: authentication failed.
    Failed,
    /// `Ddisabled\0`: the password is right, the account may not use SMTP AUTH.
    Disabled,
    /// `Z`: the request (or the account's record) is malformed.
    Malformed,
}

impl Answer {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Answer::Ok(name) => [b"K", &name[..], b"\0"].concat(),
            Answer::Failed => b"D".to_vec(),
            Answer::Disabled => [b"D", DISABLED, b"\0"].concat(),
            Answer::Malformed => b"Z".to_vec(),
        }
    }

    /// auth_smtp's whole output as an answer; `None` (a temporary failure) for anything
    /// that is not exactly one answer.
    pub fn decode(output: &[u8]) -> Option<Answer> {
        match output {
            b"D" => Some(Answer::Failed),
            b"Z" => Some(Answer::Malformed),
            [b'D', rest @ ..] if rest.strip_suffix(b"\0") == Some(DISABLED) => {
                Some(Answer::Disabled)
            }
            [b'K', rest @ ..] => {
                let name = rest.strip_suffix(b"\0")?;
                let ok = !name.is_empty() && name.len() <= LOGIN_MAX && !name.contains(&0);
                ok.then(|| Answer::Ok(name.to_vec()))
            }
            _ => None,
        }
    }

    /// What qmail-smtpd makes of auth_smtp's run: the answer when it exited 0 with one,
    /// else `None` (temporary failure, 454).
    pub fn of_run(status: ExitStatus, output: &[u8]) -> Option<Answer> {
        if status.success() {
            Answer::decode(output)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> Vec<u8> {
        BASE64.encode(s).into_bytes()
    }

    fn parsed(req: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let c = credentials(req).unwrap().unwrap();
        (c.login, c.password.to_vec())
    }

    #[test]
    fn requests_both_ends() {
        let req = login_request(&b64(b"joe"), &b64(b"sesame"));
        assert_eq!(&req[..], b"login\0am9l\0c2VzYW1l\0");
        assert_eq!(parsed(&req), (b"joe".to_vec(), b"sesame".to_vec()));
        let req = plain_request(&b64(b"admin\0joe\0se\0same"));
        assert_eq!(parsed(&req), (b"joe".to_vec(), b"se\0same".to_vec()));
        assert_eq!(parsed(&plain_request(&b64(b"\0joe\0pw"))), (b"joe".to_vec(), b"pw".to_vec()));
        assert_eq!(parsed(b"LOGIN\0am9l\0\0"), (b"joe".to_vec(), b"".to_vec()));
    }

    #[test]
    fn incomplete_and_malformed() {
        for part in [&b""[..], b"log", b"login", b"login\0", b"login\0am9l\0c2Vz", b"plain\0AAA"] {
            assert!(credentials(part).unwrap().is_none(), "{part:?}");
        }
        let rows: &[(&[u8], &str)] = &[
            (b"cram-md5\0x\0", "unknown mechanism"),
            (b"login\0am9l\0c2VzYW1l\0x", "bytes after the request"),
            (b"login\0am9l!\0c2VzYW1l\0", "bad base64"),
            (b"login\0am9\0c2VzYW1l\0", "bad base64"),
            (b"plain\0am9l\0", "PLAIN response without two NULs"),
        ];
        for (req, why) in rows {
            assert_eq!(credentials(req).unwrap_err(), Malformed(why), "{req:?}");
        }
        let long = [&b"login\0"[..], &vec![b'A'; REQUEST_MAX]].concat();
        assert_eq!(credentials(&long).unwrap_err(), Malformed("request too long"));
        let no_nul = vec![b'A'; REQUEST_MAX];
        assert_eq!(credentials(&no_nul).unwrap_err(), Malformed("request too long"));
    }

    #[test]
    fn answers_both_ends() {
        for a in [Answer::Ok(b"joe".to_vec()), Answer::Failed, Answer::Disabled, Answer::Malformed]
        {
            assert_eq!(Answer::decode(&a.encode()), Some(a.clone()), "{a:?}");
        }
        assert_eq!(Answer::Disabled.encode(), b"Ddisabled\0");
        for bad in [&b""[..], b"K", b"K\0", b"Kjoe", b"Kjoe\0x", b"Dx\0", b"DD", b"Zx", b"X"] {
            assert_eq!(Answer::decode(bad), None, "{bad:?}");
        }
    }
}
