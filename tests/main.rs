//! The integration tests: one binary, one module per area, each test in its own temporary
//! installation root running the real built programs (see harness/).

mod harness;

mod auth;
mod cdb;
mod ctl;
mod deliver;
mod digest;
mod imap;
mod imap_clients;
mod inject;
mod ldap;
mod ldap_deliver;
mod ldapadmin;
mod local;
mod local_ldap;
mod logins;
mod pbs;
mod pop3;
mod queue;
mod queuesvc;
mod remote;
mod showctl;
mod smmapd;
mod smtpauth;
mod smtpd;
mod spawn;
mod system;
mod tcpsrv;
mod verdict;
mod verify;
