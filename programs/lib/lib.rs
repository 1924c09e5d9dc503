//! qmail: the shared library of qmail-ldap-rs.
//!
//! # Layout
//!
//! Two groups of modules; the first never imports the second.
//!
//! - General support: [`cdb`], [`child`], [`date822`], [`getln`] (bounded lines, the `VERB
//!   argument` split), [`dns`] (the DNS client of
//!   qmail-remote and qmail-smtpd, on hickory-resolver), [`file`](mod@file), [`getopt`],
//!   [`netstring`], [`passwd`] (`userPassword` schemes: check a password, make a value of each
//!   scheme; the digests are RustCrypto's `sha1`, `md-5`, `md4` and `ripemd` crates, crypt(3)
//!   the `pwhash` crate, base64 the `base64` crate's strict standard engine), [`prot`], [`text0`], [`timeoutio`] (reads and writes by a deadline,
//!   reads retried after EINTR, non-blocking descriptors, poll timeouts).
//! - Mail support: [`auto`], [`exit`], [`control`], [`address`], [`envelope`], [`queue`]
//!   (with [`queue::scan`]: which messages are waiting, for qmail-qread and qmail-qstat),
//!   [`clean`] (qmail-clean's requests and replies, both ends), [`todo`](mod@todo) (qmail-send's
//!   commands to qmail-todo and its records back, both ends), [`account`] (the account
//!   qmail-getpw tells qmail-lspawn about, both ends), [`localworker`] (qmail-lspawn's
//!   requests to its delivery workers, `qmail-local --worker`, and their answers, both ends),
//!   [`received`], [`rewrite`], [`log`], [`safe`] (every sanitizer of untrusted text, one per
//!   destination), [`spawn`], [`spawner`] (the engine of qmail-lspawn
//!   and qmail-rspawn), [`users`], [`maildir`] (crash-safe Maildir delivery), [`dirmaker`] (`control/dirmaker`
//!   making a missing home, for qmail-local and the auth programs), [`dotqmail`]
//!   (the `.qmail` format, its lookup sequence, qmail-local's header lines), [`tcprules`]
//!   (ucspi-tcp's access rules: the text format, its compiler, the rules cdb lookup), [`smtp`]
//!   (the sans-I/O SMTP server parsers: command lines, MAIL/RCPT paths, the DATA decoder),
//!   [`smtpreply`] (the sans-I/O reader of SMTP replies, for qmail-remote), [`socketmap`]
//!   (the sans-I/O Sendmail/Postfix socket map protocol, for smmapd), [`pop3`] (the sans-I/O
//!   POP3 parts of qmail-popup and qmail-pop3d: command lines, message numbers, the RETR/TOP
//!   transfer, the checkpassword exit codes), [`imap`] (imapd's library: the sans-I/O
//!   IMAP4rev1 command reader with literals and LITERAL+, bounded, and its typed view;
//!   `imap::flags`, `imap::folders` (the Maildir++ namespace), `imap::uidlist` (a folder's
//!   UIDs in a Dovecot-compatible `dovecot-uidlist`), `imap::message` (MIME structure,
//!   ENVELOPE, BODYSTRUCTURE, sections), `imap::search`, `imap::date`, `imap::write`),
//!   [`quota`] (Maildir++ quotas), [`remote`]
//!   (qmail-remote's output records and qmail-rspawn's reading of them), [`tcpto`] (the
//!   table of remote hosts that timed out, `queue/lock/tcpto`), [`ldap`] (the directory:
//!   configuration, connection, RFC 4515 filters, the recipient lookup, the typed account,
//!   qmailctl's write operations; the only module that names `ldap3`), [`recipient`] (who a
//!   local recipient is delivered to: directory, users/cdb, passwd, alias — qmail-getpw's
//!   lookup), [`verify`] (the verdict on a recipient at SMTP time, from the same lookup, for
//!   qmail-verify and smmapd), [`listener`] (a master and generations of worker processes
//!   serving a Unix or TCP socket, for smmapd and qmail-verify's service mode), [`handoff`]
//!   (the worker protocol of `qmail-tcpsrv -W`: a session's socket and environment to a
//!   long-lived qmail-smtpd, its exit code back; both ends), [`userdeny`]
//!   (per-user service blocks in Cyrus's record format, for smmapd), [`auth`] (the login
//!   core of auth_smtp, auth_pop and auth_imap — the directory, `users/passwd`, the system's
//!   passwd — and their wire formats), [`pbs`](mod@pbs) (POP-before-SMTP's datagrams,
//!   secret and `pbsenv`, for pbsadd, pbscheck and pbsdbd).
//!
//! Code used by one program lives in that program's directory; it moves here when a second
//! program needs it or when it parses untrusted input.
//!
//! # Security model
//!
//! qmail's: only `qmail-queue` may be setuid (to `qmailq`); only `qmail-start` and
//! `qmail-lspawn` run as root; root code parses nothing complicated; user lookups run in an
//! unprivileged child; nothing delivers as uid 0. [`auto::home`] honours `QMAILHOME` only when
//! the process is not setuid or setgid, so a setuid `qmail-queue` never takes its queue path
//! from the environment. The project's `unsafe` code is in [`child`] and [`lease`] alone: the
//! file descriptor set-up between `fork` and `exec`, taking ownership of a descriptor
//! received over a Unix socket ([`fdpass`]), and the `fcntl` that takes a file lease.
//!
//! # Exit codes
//!
//! Exit codes are a protocol. Each contract is written once, in [`exit`], and used both by the
//! program that exits and by the program that reads the status: qmail-queue's table
//! ([`exit::QueueExit`], mapped to a D/Z verdict by [`exit::queue_status`]), qmail-lspawn's
//! codes ([`exit::Qlx`]) and qmail-ldap's 150–169 ([`exit::LdapExit`]), both read by
//! [`exit::local_status`] and [`exit::getpw_status`], and the plain 0 / 100 / 111 of the tools
//! ([`exit::PERM`], [`exit::TEMP`]).

#![deny(unsafe_code)]

pub mod account;
pub mod address;
pub mod auth;
pub mod auto;
pub mod cdb;
#[allow(unsafe_code)] // the audited exception: see the module
pub mod child;
pub mod clean;
pub mod control;
pub mod date822;
pub mod dirmaker;
pub mod dns;
pub mod dotqmail;
pub mod envelope;
pub mod exit;
pub mod fdpass;
pub mod file;
pub mod getln;
pub mod getopt;
pub mod handoff;
pub mod imap;
pub mod ldap;
#[allow(unsafe_code)] // the audited exception: see the module
pub mod lease;
pub mod listener;
pub mod localworker;
pub mod log;
pub mod maildir;
pub mod mailmagic;
pub mod netstring;
pub mod parked;
pub mod passwd;
pub mod pbs;
pub mod pop3;
pub mod prot;
pub mod queue;
pub mod quota;
pub mod received;
pub mod recipient;
pub mod remote;
pub mod rewrite;
pub mod safe;
pub mod smtp;
pub mod smtpreply;
pub mod socketmap;
pub mod spare;
pub mod spawn;
pub mod spawner;
pub mod tcprules;
pub mod tcpto;
pub mod text0;
pub mod timeoutio;
pub mod tls;
pub mod tlsclient;
pub mod todo;
pub mod userdeny;
pub mod users;
pub mod verify;
