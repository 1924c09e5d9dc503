//! auth::courier: the courier authlib module interface of auth_imap (doc/auth_imap.8): at most
//! [`INPUT_MAX`] bytes on fd 3, `service\nauthtype\nlogin\npassword\n`.

use super::Credentials;
use zeroize::Zeroizing;

/// The most bytes read from fd 3.
pub const INPUT_MAX: usize = 1023;

/// One request.
#[derive(Debug)]
pub struct Request {
    pub service: Vec<u8>,
    /// `login` is the only type checked here; others go to the next module.
    pub authtype: Vec<u8>,
    /// The login and password (of a `login` request; empty for another type).
    pub creds: Credentials,
}

/// The request in fd 3's data: `None` when service or authtype is missing. A `login` request
/// also needs its login and password lines.
pub fn parse(data: &[u8]) -> Option<Request> {
    let mut lines = data.split(|&b| b == b'\n');
    let service = lines.next()?.to_vec();
    let authtype = lines.next()?.to_vec();
    if service.is_empty() || authtype.is_empty() {
        return None;
    }
    let mut creds = Credentials { login: Vec::new(), password: Zeroizing::new(Vec::new()) };
    if authtype == b"login" {
        let login = lines.next()?;
        let password = lines.next()?;
        // the password line must have been ended by its newline
        if service.len() + authtype.len() + login.len() + password.len() + 4 > data.len() {
            return None;
        }
        creds = Credentials { login: login.to_vec(), password: Zeroizing::new(password.to_vec()) };
    }
    Some(Request { service, authtype, creds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let r = parse(b"imap\nlogin\njoe\nsesame\n").unwrap();
        assert_eq!((r.service.as_slice(), r.authtype.as_slice()), (&b"imap"[..], &b"login"[..]));
        assert_eq!(
            (r.creds.login.as_slice(), r.creds.password.as_slice()),
            (&b"joe"[..], &b"sesame"[..])
        );
        let r = parse(b"imap\ncram-md5\nchallenge\nresponse\n").unwrap();
        assert_eq!(r.authtype, b"cram-md5");
        assert!(r.creds.login.is_empty());
        for bad in [
            &b""[..],
            b"imap",
            b"imap\n",
            b"\nlogin\n",
            b"imap\nlogin\njoe\n",
            b"imap\nlogin\njoe\npw",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
