//! auth::checkpassword: the checkpassword interface between qmail-popup and auth_pop
//! (doc/auth_pop.8): the login on fd 3, and the exit codes with the text qmail-popup shows
//! for each (`-ERR <text>`). Both ends use these definitions.
//!
//! fd 3 carries at most [`INPUT_MAX`] bytes, `login\0password\0`, optionally followed by more
//! NUL-ended data (qmail-popup's APOP timestamp), which is ignored.

use super::{Credentials, Failure};
use zeroize::Zeroizing;

/// The most bytes read from fd 3; more is exit 111.
pub const INPUT_MAX: usize = 512;

/// The login and password at the start of fd 3's data; `None` when either NUL is missing.
pub fn credentials(data: &[u8]) -> Option<Credentials> {
    let mut fields = data.split(|&b| b == 0);
    let login = fields.next()?;
    let password = fields.next()?;
    // the password field must have been ended by its NUL
    if login.len() + password.len() + 2 > data.len() {
        return None;
    }
    Some(Credentials { login: login.to_vec(), password: Zeroizing::new(password.to_vec()) })
}

/// auth_pop's exit codes (qmail-LDAP's checkpassword table). 0 is the sub-program's own
/// success; auth_pop execs it, so its status is the sub-program's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckExit {
    /// 1: a configuration error (control files, usage).
    Config,
    /// 2: the directory is unreachable or timed out.
    Unreachable,
    /// 3: unknown user, wrong or empty password.
    BadLogin,
    /// 4: `accountStatus` refuses the login.
    Disabled,
    /// 5: the cluster's mail host cannot be reached (not built: never used).
    MailHost,
    /// 6: the maildir is corrupted (not built: never used).
    Corrupted,
    /// 7: the sub-program could not be started.
    Exec,
    /// 8: out of memory.
    NoMemory,
    /// 25: a missing or illegal attribute (uid, gid, home, store).
    BadRecord,
    /// 61: `control/dirmaker` failed to make the home.
    Dirmaker,
    /// 62: the home does not exist and there is no dirmaker.
    NoHome,
    /// 111: any other temporary error.
    Temporary,
}

impl CheckExit {
    pub const ALL: [CheckExit; 12] = [
        CheckExit::Config,
        CheckExit::Unreachable,
        CheckExit::BadLogin,
        CheckExit::Disabled,
        CheckExit::MailHost,
        CheckExit::Corrupted,
        CheckExit::Exec,
        CheckExit::NoMemory,
        CheckExit::BadRecord,
        CheckExit::Dirmaker,
        CheckExit::NoHome,
        CheckExit::Temporary,
    ];

    pub fn code(self) -> u8 {
        match self {
            CheckExit::Config => 1,
            CheckExit::Unreachable => 2,
            CheckExit::BadLogin => 3,
            CheckExit::Disabled => 4,
            CheckExit::MailHost => 5,
            CheckExit::Corrupted => 6,
            CheckExit::Exec => 7,
            CheckExit::NoMemory => 8,
            CheckExit::BadRecord => 25,
            CheckExit::Dirmaker => 61,
            CheckExit::NoHome => 62,
            CheckExit::Temporary => 111,
        }
    }

    /// The exit code read back; any code not in the table is [`CheckExit::Temporary`].
    pub fn from_code(code: i32) -> CheckExit {
        CheckExit::ALL
            .into_iter()
            .find(|e| i32::from(e.code()) == code)
            .unwrap_or(CheckExit::Temporary)
    }

    /// What qmail-popup tells the client (`-ERR <text>`).
    pub fn text(self) -> &'static str {
        match self {
            CheckExit::Config => "error in server configuration",
            CheckExit::Unreachable => "unable to contact authorization server",
            CheckExit::BadLogin => "authorization failed",
            CheckExit::Disabled => "account disabled",
            CheckExit::MailHost => "mailhost is unreachable",
            CheckExit::Corrupted => "mailbox is corrupted",
            CheckExit::Exec => "unable to start subprogram",
            CheckExit::NoMemory => "out of memory",
            CheckExit::BadRecord => "user record incorrect",
            CheckExit::Dirmaker => "mailbox could not be created",
            CheckExit::NoHome => "the users mailbox does not exist",
            CheckExit::Temporary => "temporary error",
        }
    }

    /// The exit code of a failed login.
    pub fn of(failure: &Failure) -> CheckExit {
        match failure {
            Failure::NoSuchUser | Failure::BadPassword => CheckExit::BadLogin,
            Failure::Disabled(_) => CheckExit::Disabled,
            Failure::BadRecord(_) => CheckExit::BadRecord,
            Failure::Unreachable(_) => CheckExit::Unreachable,
            Failure::Config(_) => CheckExit::Config,
            Failure::Temporary(_) => CheckExit::Temporary,
        }
    }
}

impl From<CheckExit> for u8 {
    fn from(e: CheckExit) -> u8 {
        e.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd3_data() {
        let c = credentials(b"joe\0sesame\0<123.456@host>\0").unwrap();
        assert_eq!((c.login.as_slice(), c.password.as_slice()), (&b"joe"[..], &b"sesame"[..]));
        let c = credentials(b"joe\0\0").unwrap();
        assert_eq!(c.password.as_slice(), b"");
        for bad in [&b""[..], b"joe", b"joe\0", b"joe\0sesame"] {
            assert!(credentials(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn exit_table() {
        for e in CheckExit::ALL {
            assert_eq!(CheckExit::from_code(e.code().into()), e);
        }
        assert_eq!(CheckExit::from_code(0), CheckExit::Temporary);
        assert_eq!(CheckExit::from_code(99), CheckExit::Temporary);
        assert_eq!(CheckExit::of(&Failure::BadPassword).code(), 3);
        assert_eq!(CheckExit::of(&Failure::Unreachable(String::new())).code(), 2);
    }
}
