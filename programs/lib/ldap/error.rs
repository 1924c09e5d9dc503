//! ldap::Error: why a directory lookup or change gave no answer, each failure classed as
//! temporary or permanent (doc/DECISIONS.md, 2) and mapped to qmail-getpw's exit code
//! (doc/qmail-getpw.8).

use crate::control::ControlError;
use crate::exit::{LdapExit, Qlx};
use std::fmt;

/// Why a lookup did not give an answer. Each variant knows its class.
#[derive(Debug)]
pub enum Error {
    /// A control file could not be read (temporary).
    Control(ControlError),
    /// A control file holds a value that cannot be used (temporary: an admin fixes it).
    Config(String),
    /// No server could be reached (temporary, qmail-lspawn 155).
    Unreachable(String),
    /// The bind was refused (temporary, 153).
    Credentials(String),
    /// The search or the bind ran out of time, or the server was busy (temporary, 154).
    Timeout,
    /// The server sent a referral instead of an answer (temporary, 152).
    Referral(Vec<String>),
    /// The search base does not exist (`noSuchObject`; temporary, 152).
    NoSuchBase(String),
    /// Any other LDAP failure (temporary, 152).
    Failure(String),
    /// More than one entry carries the address (156). Permanent at delivery, temporary at
    /// SMTP time (doc/DECISIONS.md, 10): [`Error::is_temporary`] says permanent, qmail-verify maps
    /// it.
    Ambiguous { address: String, dns: Vec<String> },
    /// A single-valued attribute holds several values (permanent, 156).
    TooMany { dn: String, attr: &'static str },
    /// A mandatory attribute is missing (permanent, 157).
    Missing { dn: String, attr: &'static str },
    /// An attribute value is not acceptable (permanent, 158).
    BadValue { dn: String, attr: &'static str, why: &'static str },
}

impl Error {
    /// Temporary: the message stays queued (Z, 4xx, exit 111).
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self,
            Error::Ambiguous { .. }
                | Error::TooMany { .. }
                | Error::Missing { .. }
                | Error::BadValue { .. }
        )
    }

    /// qmail-getpw's exit code for this failure, which qmail-lspawn reads (doc/qmail-getpw.8): a
    /// row of [`LdapExit`], or [`Qlx::Sys`] for an unusable control file.
    pub fn lspawn_code(&self) -> i32 {
        match self {
            Error::Control(_) | Error::Config(_) => Qlx::Sys.into(),
            Error::Credentials(_) => LdapExit::Credentials.into(),
            Error::Timeout => LdapExit::Timeout.into(),
            Error::Unreachable(_) => LdapExit::Unreachable.into(),
            Error::Referral(_) | Error::NoSuchBase(_) | Error::Failure(_) => {
                LdapExit::Failure.into()
            }
            Error::Ambiguous { .. } | Error::TooMany { .. } => LdapExit::Ambiguous.into(),
            Error::Missing { .. } => LdapExit::Missing.into(),
            Error::BadValue { .. } => LdapExit::BadValue.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Control(e) => write!(f, "{e} (#4.3.0)"),
            Error::Config(e) => write!(f, "{e} (#4.3.0)"),
            Error::Unreachable(e) => write!(f, "Unable to contact LDAP server: {e} (#4.4.3)"),
            Error::Credentials(e) => {
                write!(f, "Unable to login into LDAP server, bad credentials: {e} (#4.4.3)")
            }
            Error::Timeout => {
                f.write_str("Timeout while performing search on LDAP server. (#4.4.3)")
            }
            Error::Referral(refs) => write!(
                f,
                "Temporary failure in LDAP lookup: referral to {} (#4.4.3)",
                refs.join(" ")
            ),
            Error::NoSuchBase(base) => {
                write!(f, "Temporary failure in LDAP lookup: no such base DN \"{base}\" (#4.4.3)")
            }
            Error::Failure(e) => write!(f, "Temporary failure in LDAP lookup: {e} (#4.4.3)"),
            Error::Ambiguous { address, dns } => write!(
                f,
                "Too many results returned but needs to be unique: {address} is in {} (#5.3.5)",
                dns.join(" and ")
            ),
            Error::TooMany { dn, attr } => {
                write!(f, "LDAP attribute {attr} has several values in {dn} (#5.3.5)")
            }
            Error::Missing { dn, attr } => {
                write!(f, "LDAP attribute {attr} is not given but mandatory in {dn} (#5.3.5)")
            }
            Error::BadValue { dn, attr, why } => {
                write!(f, "Illegal value in LDAP attribute {attr} of {dn}: {why} (#5.3.5)")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<ControlError> for Error {
    fn from(e: ControlError) -> Self {
        Error::Control(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(Error::Timeout.is_temporary());
        assert!(Error::NoSuchBase("dc=x".into()).is_temporary());
        assert!(Error::Referral(vec![]).is_temporary());
        assert!(Error::Credentials("x".into()).is_temporary());
        let amb =
            Error::Ambiguous { address: "a@b".into(), dns: vec!["uid=1".into(), "uid=2".into()] };
        assert!(!amb.is_temporary());
        assert!(amb.to_string().contains("uid=1 and uid=2"));
        assert_eq!(amb.lspawn_code(), 156);
    }
}
