//! qmail-showctl: describe this installation's compile-time settings and control files.
//!
//! `qmail-showctl` (no arguments) enters the installation root ([`qmail::auto::home`]) and prints
//! the compile-time settings, then one block per file of [`control::KNOWN`] (its value, or
//! `(Default.)` with the default and meaning), then a line for every other file in `control/`.
//! Secrets (`ldappassword`, `pbssecret`, ...) are shown as `(set, N bytes)`, never their value
//! (doc/DECISIONS.md, 7); the certificate files (`smtpcert`, `remotecert`) as their
//! certificate's subject, names and dates ([`cert`]); control characters in values are shown
//! as `?`.
//!
//! Exit 0; 111 when the root or `control/` cannot be entered, when `me` or `ldapserver` exists
//! but cannot be read, or when standard output fails; 100 on a usage error. See
//! doc/qmail-showctl.8.

#![forbid(unsafe_code)]

mod cert;

use anyhow::{Context, Result};
use clap::Parser;
use qmail::auto;
use qmail::cdb::{self, CdbError};
use qmail::control::{self, Control, ControlError, Kind, Known};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "qmail-showctl",
    version,
    about = "Show the compile-time settings and control files of a qmail-ldap-rs installation"
)]
struct Args {}

/// Permission bits a home directory or `.qmail` file must not have (qmail-local's `conf-patrn`).
const PATERNALISM: u32 = 0o002;

/// The user-ext delimiter (`conf-break`).
const BREAK: char = '-';

/// List files whose `.cdb` variant replaces them entirely (doc/qmail-control.5, "Formats").
const CDB_VARIANTS: &[&str] = &["locals", "rcpthosts"];

/// PEM files with a certificate and its key: shown as the certificate's subject, names and
/// dates, never their contents ([`cert`]).
const CERTIFICATES: &[&str] = &["remotecert", "smtpcert"];

/// Cipher lists, checked as qmail-smtpd reads them ([`qmail::tls::provider`]).
const CIPHER_LISTS: &[&str] = &["tlsciphers"];

fn main() -> ExitCode {
    if let Err(e) = Args::try_parse() {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { qmail::exit::PERM } else { 0 });
    }
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(qmail::exit::TEMP),
        Err(e) => {
            eprintln!("qmail-showctl: fatal: {e:#}");
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

/// Print the report; `Ok(false)` when `me` or `ldapserver` is unreadable.
fn run() -> Result<bool> {
    let home = auto::home();
    let mut out = header(&home);
    std::env::set_current_dir(&home)
        .with_context(|| format!("unable to enter {}", home.display()))?;
    let mut names: Vec<String> = std::fs::read_dir("control")
        .and_then(|dir| {
            dir.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
        })
        .with_context(|| format!("unable to read {}/control", home.display()))?;
    names.sort();
    let c = Control::new(Path::new("."));

    let mut ok = true;
    for name in ["me", "ldapserver"] {
        if let Err(e) = c.raw(name) {
            eprintln!("qmail-showctl: {e}");
            ok = false;
        }
    }
    summary(&c, &mut out);
    for k in control::KNOWN {
        out.push('\n');
        out.push_str(&block(&c, k));
    }
    out.push('\n');
    for name in &names {
        if let Some(line) = other(name) {
            let _ = writeln!(out, "{}: {line}", show(name));
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("unable to write to standard output")?;
    Ok(ok)
}

/// The compile-time settings.
fn header(home: &Path) -> String {
    let mut out = format!("qmail home directory: {}.\n", show(&home.to_string_lossy()));
    if home != Path::new(auto::HOME) {
        let _ =
            writeln!(out, "compiled-in home directory: {} (QMAILHOME overrides it).", auto::HOME);
    }
    let users = [
        auto::USER_ALIAS,
        auto::USER_QMAILD,
        auto::USER_QMAILL,
        auto::USER_QMAILP,
        auto::USER_QMAILQ,
        auto::USER_QMAILR,
        auto::USER_QMAILS,
    ];
    let _ = write!(
        out,
        "user-ext delimiter: {BREAK}.\n\
         paternalism (in decimal): {PATERNALISM}.\n\
         silent concurrency limit: {}.\n\
         subdirectory split: {}.\n\
         user names: {}.\n\
         group names: {}, {}.\n",
        qmail::spawn::LIMIT,
        auto::SPLIT,
        users.join(", "),
        auto::GROUP_QMAIL,
        auto::GROUP_NOFILES,
    );
    out
}

/// `me` and `ldapserver` in a sentence each, as upstream.
fn summary(c: &Control, out: &mut String) {
    match c.me() {
        Ok(Some(me)) => _ = writeln!(out, "me: My name is {}.", show(&me)),
        Ok(None) => out.push_str("me: Oops! control/me is missing or empty; it is required.\n"),
        Err(e) => _ = writeln!(out, "me: Oops! {e}."),
    }
    match c.list("ldapserver") {
        Ok(Some(servers)) if !servers.is_empty() => {
            _ = writeln!(out, "ldapserver: My ldap server is {}.", show(&servers.join(" ")))
        }
        Ok(_) => out.push_str("ldapserver: No ldap server: LDAP lookups are off.\n"),
        Err(e) => _ = writeln!(out, "ldapserver: Oops! {e}."),
    }
}

/// The block of one known file, ending in a newline.
fn block(c: &Control, k: &Known) -> String {
    let name = k.name;
    // the default applies: the file is absent, or holds no value
    let default = |why: &str| {
        let why = if c.path(name).exists() { why } else { "Default." };
        format!("{name}: ({why}) {}: {}.\n", k.meaning, k.default)
    };
    let oops = |e: ControlError| format!("{name}: Oops! {e}.\n");
    if CDB_VARIANTS.contains(&name) {
        if let Some(text) = variant(c, name) {
            return format!("{name}: {text}\n");
        }
    }
    if CERTIFICATES.contains(&name) {
        return match c.raw(name) {
            Ok(Some(data)) => cert::block(name, &data, qmail::date822::unix_now()),
            Ok(None) => default("Default."),
            Err(e) => oops(e),
        };
    }
    if CIPHER_LISTS.contains(&name) {
        if let Ok(Some(data)) = c.raw(name) {
            let list = String::from_utf8_lossy(&data);
            if let Err(e) = qmail::tls::provider(Some(&list), &format!("control/{name}")) {
                return format!("{name}: Oops! {}.\n", show(&e.to_string()));
            }
        }
    }
    if k.secret {
        return match c.raw(name) {
            Ok(Some(data)) if !first_line(&data).is_empty() => {
                format!("{name}: (set, {} bytes)\n", first_line(&data).len())
            }
            Ok(_) => default("Empty, so the default applies."),
            Err(e) => oops(e),
        };
    }
    match k.kind {
        Kind::Line => match c.line(name) {
            Ok(Some(v)) => format!("{name}: {}\n", show(&v)),
            Ok(None) => default("Empty, so the default applies."),
            Err(e) => oops(e),
        },
        Kind::Int => match c.int(name) {
            Ok(Some(n)) => format!("{name}: {n}\n"),
            Ok(None) => default("No number in this file, so the default applies."),
            Err(e) => oops(e),
        },
        Kind::List | Kind::Map => match c.list(name) {
            Ok(Some(lines)) if !lines.is_empty() => {
                let mut out = format!("{name}:\n");
                for l in lines {
                    let note = if k.kind == Kind::Map && !l.contains(':') {
                        " (ignored: no colon)"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "  {}{note}", show(&l));
                }
                out
            }
            Ok(Some(_)) => format!("{name}: (No entries.)\n"),
            Ok(None) => default("Default."),
            Err(e) => oops(e),
        },
        Kind::Raw => match c.raw(name) {
            Ok(Some(data)) if data.is_empty() => format!("{name}: (Empty.)\n"),
            Ok(Some(data)) => {
                let mut out = format!("{name}:\n");
                let text = String::from_utf8_lossy(&data);
                for l in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
                    let _ = writeln!(out, "  {}", show(l.strip_suffix('\r').unwrap_or(l)));
                }
                out
            }
            Ok(None) => default("Default."),
            Err(e) => oops(e),
        },
        Kind::Cdb => cdb_block(c, k),
    }
}

/// The block of a cdb file: valid, corrupt, or older than its text source.
fn cdb_block(c: &Control, k: &Known) -> String {
    let name = k.name;
    match cdb::Reader::open(&c.path(name)) {
        Ok(None) => format!("{name}: (Default.) {}: {}.\n", k.meaning, k.default),
        Ok(Some(_)) => {
            let source = name.strip_suffix(".cdb").filter(|s| control::known(s).is_some());
            match source.filter(|s| older(c, name, s)) {
                Some(s) => format!("{name}: Oops! A valid cdb, but older than {s}: rebuild it.\n"),
                None => format!("{name}: A valid cdb.\n"),
            }
        }
        Err(e) => format!("{name}: Oops! {}.\n", cdb_problem(name, e)),
    }
}

/// What `name.cdb` does to the list `name` when it exists: it replaces it.
fn variant(c: &Control, name: &str) -> Option<String> {
    let cdb_name = format!("{name}.cdb");
    match cdb::Reader::open(&c.path(&cdb_name)) {
        Ok(None) => None,
        Ok(Some(_)) if older(c, &cdb_name, name) => Some(format!(
            "Oops! {cdb_name} replaces this file but is older than it: rebuild it with qmail-cdb."
        )),
        Ok(Some(_)) => Some(format!("{cdb_name} replaces this file.")),
        Err(e) => Some(format!("Oops! {}.", cdb_problem(&cdb_name, e))),
    }
}

fn cdb_problem(name: &str, e: CdbError) -> String {
    match e {
        CdbError::Corrupt => format!("control/{name} is a corrupt cdb"),
        CdbError::Io(e) => format!("unable to read control/{name}: {e}"),
    }
}

/// True when `cdb` was last changed before its text `source` (which exists).
fn older(c: &Control, cdb: &str, source: &str) -> bool {
    let mtime = |n: &str| std::fs::metadata(c.path(n)).and_then(|m| m.modified()).ok();
    matches!((mtime(cdb), mtime(source)), (Some(a), Some(b)) if a < b)
}

/// The line for a file of `control/` that [`control::KNOWN`] lacks; `None` for known files
/// and the cdb variants already shown in their list's block.
fn other(name: &str) -> Option<&'static str> {
    if control::known(name).is_some() {
        return None;
    }
    if control::OBSOLETE.contains(&name) {
        return Some("No longer used, please remove.");
    }
    if let Some(base) = name.strip_suffix(".cdb") {
        if CDB_VARIANTS.contains(&base) {
            return None;
        }
        if control::known(base).is_some() {
            return Some("Not used: only locals.cdb and rcpthosts.cdb replace their lists.");
        }
    }
    if let Some(base) = name.strip_suffix(".tmp") {
        let cdb = format!("{base}.cdb");
        if control::known(base).is_some() || control::known(&cdb).is_some() {
            return Some("A temporary file of a cdb rebuild; remove it unless one is running.");
        }
    }
    Some("I have no idea what this file does.")
}

/// The first line of a file without trailing blanks, as the readers use it.
fn first_line(data: &[u8]) -> &[u8] {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(b"");
    let end = line.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(0, |i| i + 1);
    &line[..end]
}

/// `text` with every control character replaced by `?`.
fn show(text: &str) -> String {
    text.chars().map(|ch| if ch.is_control() { '?' } else { ch }).collect()
}
