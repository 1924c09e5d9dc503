//! qmail-getpw: find the user a recipient is delivered to (doc/qmail-getpw.8,
//! doc/qmail-ldap.7).
//!
//! `qmail-getpw local [domain [size]]`, run by qmail-lspawn unprivileged (as `qmailp`, else
//! `nobody`, when qmail-lspawn is root; as qmail-lspawn's own user otherwise). `size` is the
//! size of the queued message in bytes (for `mailSizeMax`).
//!
//! The lookup itself is [`qmail::recipient`] (shared with the verifiers, so that qmail-verify
//! and smmapd always agree with delivery); this program prints its answer. In short: with a
//! `domain` and `control/ldapserver` present, `local@domain` is first looked up in the
//! directory ([`qmail::ldap`]). A hit is checked in the order of doc/qmail-getpw.8: `accountStatus`
//! (`disabled` exit 159, `deleted` 160; `active`, `noaccess` and unknown words deliver,
//! doc/DECISIONS.md, 12), `mailSizeMax` (a larger message: 150), `mailHost` (with `ldapcluster` 1,
//! a host other than `me` or a line of `ldapclusterhosts`: 162, temporary — cluster forwarding
//! is not built yet), the mail store (neither `homeDirectory` nor `mailMessageStore`: a
//! forward-only account delivered as the alias user), the user name (`uid`) and the ids
//! (`qmailUID`/`qmailGID`, else `ldapuid`/`ldapgid`; 0 or outside 100..65535: 113, temporary),
//! then the environment for qmail-local. Nothing found: with `ldaplocaldelivery` 1 (the
//! default) the classic lookup below on `local` alone; with 0 the alias user straight away. A
//! directory failure is never "nothing found": 152–155 (temporary) or 156–158 (permanent).
//!
//! The classic lookup, in this order:
//!
//! 1. `QMAILHOME/users/cdb` (made by qmail-newu from `users/assign`): an exact or wildcard
//!    assignment, its fields printed as they are;
//! 2. the passwd database: the longest candidate that is all of `local` or the part before a
//!    `-`, under 32 bytes, lowercased, naming an account with uid ≠ 0 whose home exists and
//!    belongs to it; dash `-` and ext = the rest (both empty when all of `local` matched);
//! 3. the alias user (`alias` in passwd; with no such account, the owner of `QMAILHOME/alias`,
//!    with that directory as home), dash `-`, ext = all of `local`.
//!
//! The answer on stdout (at most [`ANSWER_MAX`] bytes; qmail-lspawn refuses more):
//!
//! ```text
//! user\0uid\0gid\0home\0dash\0ext\0  NAME=value\0 ...  \0
//! ```
//!
//! six fields, then zero or more `NAME=value` records, then an empty record. The names are
//! the environment qmail-local gets — `QMAILDOTMODE`, `QMAILMODE`, `QMAILREPLYTEXT`,
//! `QMAILFORWARDS`, `QMAILDELIVERYPROGRAM` (values joined by `:`, a literal `:` written `\:`),
//! `MAILDIRQUOTA`, `QLDAPGROUP` — and `ALIASEMPTY`, which is not exported but replaces
//! qmail-lspawn's default delivery (an entry with both `homeDirectory` and
//! `mailMessageStore`). A classic lookup has no records.
//!
//! Exit codes ([`qmail::exit::getpw_status`] reads them): 0 found; 100 no argument; 111
//! `users/cdb` unreadable or corrupt, or stdout failed; 113 refused uid or gid; 115 temporary
//! error looking at a home directory; 116 no alias user; 118 passwd temporarily unavailable or
//! an unreadable LDAP control file; 150 message larger than `mailSizeMax`; 152–155 LDAP
//! failure, bad credentials, timeout, server unreachable; 156–158 ambiguous entry, missing or
//! illegal attribute; 159 account disabled; 160 account deleted; 162 mailbox on another
//! cluster host. For 113 and 150–162 the report text (one line) is on stdout instead of an
//! answer; qmail-lspawn keeps the letter its table gives the code and uses that text.
//!
//! Security: this is the unprivileged half of the user lookup; it trusts nothing it reads and
//! qmail-lspawn checks its answer again (bounded, uid ≠ 0, known names only). It does not
//! change users itself: qmail-lspawn starts it as the lookup user. It opens LDAP and never
//! forks afterwards (ldap3 runs a runtime inside).

#![forbid(unsafe_code)]

use qmail::account::ANSWER_MAX;
use qmail::exit;
use qmail::recipient::{Failure, Lookup};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

/// The longest field of a served request (an address part or a size).
const REQUEST_MAX: usize = 2048;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && args[0] == "-s" {
        return serve();
    }
    let Some(local) = args.first() else {
        eprintln!("qmail-getpw: usage: qmail-getpw local [domain [size]] | qmail-getpw -s");
        return ExitCode::from(exit::PERM);
    };
    let domain = args.get(1).map(|d| d.as_bytes());
    // an unreadable size is no size: mailSizeMax is then not checked here
    let size = args.get(2).and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok());
    let mut lookup = Lookup::new(&qmail::auto::home());
    let (code, bytes) = answer(&mut lookup, local.as_bytes(), domain, size);
    if !bytes.is_empty() && write_out(&bytes).is_err() && code == 0 {
        return ExitCode::from(exit::TEMP);
    }
    // the codes are all below 256
    ExitCode::from(u8::try_from(code).unwrap_or(exit::TEMP))
}

/// One lookup as (exit code, bytes for stdout): the answer on success, else the report line
/// (best effort: the code alone still classifies it).
fn answer(
    lookup: &mut Lookup,
    local: &[u8],
    domain: Option<&[u8]>,
    size: Option<u64>,
) -> (i32, Vec<u8>) {
    let result = lookup.find(local, domain, size).and_then(|found| {
        let answer = found.account.encode();
        if answer.len() > ANSWER_MAX {
            return Err(Failure::report(
                exit::LdapExit::BadValue,
                format!("The directory's answer is over {ANSWER_MAX} bytes. (#5.3.5)"),
            ));
        }
        Ok(answer)
    });
    match result {
        Ok(answer) => (0, answer),
        Err(f) => {
            eprintln!("qmail-getpw: {}", f.why);
            (f.code, f.line())
        }
    }
}

/// `qmail-getpw -s`: serve lookups for qmail-lspawn over stdin/stdout, keeping the directory
/// connection open. Request: `local\0domain\0size\0` (an empty domain or size: none).
/// Answer: a frame ([`qmail::account::frame`]): a netstring holding the three-digit exit code
/// of a one-shot run and its stdout.
/// Exit 0 at EOF, 111 on a malformed request or a write error.
fn serve() -> ExitCode {
    let mut lookup = Lookup::new(&qmail::auto::home());
    let mut input = io::stdin().lock();
    let mut out = io::stdout().lock();
    let mut rec = Vec::new();
    loop {
        let mut fields: Vec<Vec<u8>> = Vec::with_capacity(3);
        for i in 0..3 {
            match qmail::text0::read_record(&mut input, REQUEST_MAX, &mut rec) {
                Ok(None) if i == 0 => return ExitCode::SUCCESS,
                Ok(Some(Ok(()))) => fields.push(std::mem::take(&mut rec)),
                _ => {
                    eprintln!("qmail-getpw: malformed request");
                    return ExitCode::from(exit::TEMP);
                }
            }
        }
        let domain = (!fields[1].is_empty()).then_some(&fields[1][..]);
        let size = std::str::from_utf8(&fields[2]).ok().and_then(|s| s.parse::<u64>().ok());
        let (code, bytes) = answer(&mut lookup, &fields[0], domain, size);
        let framed = qmail::account::frame(code, &bytes);
        if out.write_all(&framed).and_then(|()| out.flush()).is_err() {
            return ExitCode::from(exit::TEMP);
        }
    }
}

fn write_out(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush())
}
