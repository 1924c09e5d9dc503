//! ldap: the directory side of qmail-LDAP (doc/qmail-ldap.7), the only module that names
//! the `ldap3` crate.
//!
//! - [`Config`] is read from the `ldap*` control files (doc/qmail-ldap.7, CONTROL FILES); an absent
//!   `ldapserver` means LDAP is not configured (`Ok(None)`).
//! - [`Directory`] holds one connection, opened on first use and reused while it stays up:
//!   servers tried in `ldapserver` order, each with a connect-and-bind timeout
//!   ([`CONNECT_TIMEOUT`]); searches limited by `ldaptimeout` both on the server and here.
//! - [`Directory::lookup`] runs the candidate sequence of doc/qmail-ldap.7, LOOKUP ([`candidates`])
//!   with filters built by [`address_filter`] (values escaped per RFC 4515 by [`escape`]) and
//!   returns a typed [`Account`], `Ok(None)` when nothing matched, or an [`Error`] that says
//!   whether it is temporary ([`Error::is_temporary`]). An outage is never "nothing found": LDAP
//!   down, bind failure, timeout, referral and a missing base DN are all temporary
//!   (doc/DECISIONS.md, 2).
//! - Attribute values are decoded strictly (doc/qmail-ldap.7, ATTRIBUTES and FAILURES): a bad value
//!   is permanent, never guessed.
//! - [`Directory::add`], [`Directory::modify`], [`Directory::delete`] and
//!   [`Directory::bind_check`] change the directory and check passwords, for qmailctl user and
//!   qmail-ldaplookup -p; DN values are escaped per RFC 4514 by [`escape_dn`].
//!
//! One file per responsibility, each needing only those above it in this list:
//! `error` (the failure classes), `values` (attribute values and their checks), `filter`
//! (RFC 4515 escaping, address filters, the candidate sequence), `config` (the control files),
//! `connection` (the [`Directory`]: connect, bind, failover, search), `lookup` (the recipient
//! lookup and the typed [`Account`]) and `admin` (the write operations). Everything is used
//! through the names below.
//!
//! ldap3's sync connection runs a tokio runtime inside: a process that has opened a
//! [`Directory`] may `exec`, but must not `fork` and carry on.

mod admin;
mod config;
mod connection;
mod error;
mod filter;
mod lookup;
mod values;

pub use admin::{escape_dn, result_code, Change};
pub use config::{Config, CONNECT_TIMEOUT, DEFAULT_TIMEOUT};
pub use connection::{Directory, Entry};
pub use error::Error;
pub use filter::{
    address_filter, candidates, escape, uid_filter, Candidate, BREAK, CATCH_ALL, DASH_EXT_LEVELS,
};
pub use lookup::{decode, Account, Store, ACCOUNT_ATTRS};
pub use values::{
    check_path, check_program, check_user, decode_bool, decode_id, decode_int, AccountStatus,
    DeliveryMode, DotMode, ID_MAX, ID_MIN,
};
