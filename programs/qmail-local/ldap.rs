//! ldap: what qmail-lspawn's directory lookup asks of this delivery (spec pipeline §5.6) —
//! the one seam where LDAP behaviour joins qmail-local.
//!
//! qmail-lspawn passes the directory's answer in the environment (`QMAILDOTMODE`,
//! `QMAILMODE`, `QMAILFORWARDS`, `QMAILDELIVERYPROGRAM`, `QMAILREPLYTEXT`, `MAILDIRQUOTA`,
//! `QLDAPGROUP`). None of it is read yet: [`Options::from_env`] gives the behaviour of a
//! plain qmail-local (dot-mode `dotonly`: `.qmail` files only). When LDAP support lands, this
//! is where the environment is parsed (an invalid dot-mode is a permanent failure,
//! `#5.3.5`), where the instruction text is composed from LDAP values and `.qmail` text, and
//! where quota settings for Maildir delivery come from.

use qmail::exit::Verdict;

/// Delivery options set by the directory. Empty until LDAP support lands.
#[derive(Debug, Default)]
pub struct Options {}

impl Options {
    /// Read the options from the environment.
    pub fn from_env() -> Result<Options, Verdict> {
        Ok(Options {})
    }

    /// Whether `.qmail` files are consulted at all (false for the `ldaponly` and
    /// `ldapwithprog` dot-modes).
    pub fn uses_dotqmail(&self) -> bool {
        true
    }
}
