//! qmail-ldaplookup: show a directory entry and what delivery would do with it.
//!
//! `qmail-ldaplookup [-d level] [-D binddn -w bindpw] -u uid [-p password]`,
//! `... -m address` (the candidate sequence of delivery, catch-alls included) or
//! `... -f filter` (an administrator's literal filter). Prints each search, then each entry's
//! attributes in upstream's order (never `userPassword`), then a "Delivery:" block computed
//! by the same decoding qmail-lspawn uses. `-p` checks a password: `{SSHA}`, `{SHA}`,
//! `{SMD5}`, `{MD5}` and `{CRYPT}` (MD5-crypt, SHA-crypt, bcrypt) locally with
//! `qmail::passwd`, any other scheme (and every scheme with `ldaprebind`) by binding as the
//! entry.
//!
//! Exit 0 found (and, with `-p`, the password matched); 1 the password did not match;
//! 100 usage error, nothing found, or the entry cannot be delivered to as it stands (bad or
//! ambiguous values); 111 LDAP trouble (unreachable, bind refused, timeout, no such base) or
//! no LDAP configured. See doc/qmail-ldaplookup.8.

#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::Parser;
use qmail::control::Control;
use qmail::ldap::{self, Account, Candidate, Config, Directory, Store};
use qmail::safe::controls;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "qmail-ldaplookup",
    version,
    about = "Show a qmail-LDAP directory entry and what delivery would do with it"
)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["uid", "mail", "filter"])))]
struct Args {
    /// Look the entry up by its uid attribute.
    #[arg(short = 'u', value_name = "uid")]
    uid: Option<String>,
    /// Look a recipient address up exactly as delivery does (mail, mailAlternateAddress,
    /// catch-alls).
    #[arg(short = 'm', value_name = "address")]
    mail: Option<String>,
    /// Search with a literal LDAP filter (an administrator's filter, not escaped).
    #[arg(short = 'f', value_name = "ldapfilter")]
    filter: Option<String>,
    /// Check this password against the entry found with -u or -m.
    #[arg(short = 'p', value_name = "password", conflicts_with = "filter")]
    password: Option<String>,
    /// Debug level: anything but 0 reports the servers, base and bind DN on stderr.
    #[arg(short = 'd', value_name = "level", default_value_t = 0)]
    debug: u32,
    /// Bind as this DN instead of control/ldaplogin.
    #[arg(short = 'D', value_name = "binddn", requires = "bindpw")]
    binddn: Option<String>,
    /// The password for -D.
    #[arg(short = 'w', value_name = "bindpw", requires = "binddn")]
    bindpw: Option<String>,
}

/// How a run ended, decided in one place ([`main`]).
enum Outcome {
    Found,
    WrongPassword,
    NotFound,
}

/// A failure that is the entry's, not the directory's: permanent (exit 100).
#[derive(Debug)]
struct EntryProblem(ldap::Error);

impl std::fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for EntryProblem {}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { qmail::exit::PERM } else { 0 });
        }
    };
    match run(&args) {
        Ok(Outcome::Found) => ExitCode::SUCCESS,
        Ok(Outcome::WrongPassword) => ExitCode::from(1),
        Ok(Outcome::NotFound) => {
            eprintln!("qmail-ldaplookup: no entry found");
            ExitCode::from(qmail::exit::PERM)
        }
        Err(e) => {
            eprintln!("qmail-ldaplookup: fatal: {e:#}");
            let permanent = e.chain().any(|c| c.is::<EntryProblem>());
            ExitCode::from(if permanent { qmail::exit::PERM } else { qmail::exit::TEMP })
        }
    }
}

fn run(args: &Args) -> Result<Outcome> {
    let home = qmail::auto::home();
    let ctl = Control::new(&home);
    let mut cfg =
        Config::read(&ctl).context("unable to read the LDAP control files")?.with_context(
            || format!("LDAP is not configured: no {}", ctl.path("ldapserver").display()),
        )?;
    if let (Some(dn), Some(pw)) = (&args.binddn, &args.bindpw) {
        cfg.login = dn.clone();
        cfg.password = pw.clone();
    }
    if args.debug > 0 {
        eprintln!(
            "qmail-ldaplookup: servers {}; base \"{}\"; bind as \"{}\"{}",
            cfg.servers.join(" "),
            cfg.base,
            cfg.login,
            if cfg.rebind { "; rebind mode" } else { "" }
        );
    }
    let mut dir = Directory::new(cfg);
    let mut attrs: Vec<&str> = ldap::ACCOUNT_ATTRS.to_vec();
    attrs.push("mailAlternateAddress");
    if args.password.is_some() {
        attrs.push("userPassword");
    }
    let searches: Vec<(String, Candidate)> = if let Some(uid) = &args.uid {
        let filter = ldap::uid_filter(uid.as_bytes(), dir.config().objectclass.as_deref());
        vec![(filter, plain(uid.as_bytes()))]
    } else if let Some(mail) = &args.mail {
        mail_searches(mail, dir.config())?
    } else if let Some(filter) = &args.filter {
        vec![(filter.clone(), plain(b""))]
    } else {
        bail!("one of -u, -m, -f is required");
    };
    let mut out = String::new();
    for (filter, cand) in searches {
        out.push_str(&format!(
            "Searching ldap for: {}\nunder dn: {}\n",
            controls(&filter),
            controls(&dir.config().base)
        ));
        let entries =
            dir.search(&filter, &attrs).with_context(|| format!("search {}", controls(&filter)))?;
        match entries.len() {
            0 => {
                out.push_str("No entries found.\n\n");
                continue;
            }
            1 => out.push_str("Found 1 entry:\n\n"),
            n => out.push_str(&format!("Found {n} entries:\n\n")),
        }
        let unique = entries.len() == 1;
        if !unique && args.filter.is_none() {
            out.push_str("Uh-oh: multiple entries found but should be unique!\n\n");
        }
        let mut problem = None;
        for entry in &entries {
            print_entry(&mut out, entry);
            match ldap::decode(entry, &cand, dir.config()) {
                Ok(acct) => print_delivery(&mut out, &acct, dir.config(), &ctl),
                Err(e) => {
                    out.push_str(&format!("Delivery: impossible: {}\n", controls(&e.to_string())));
                    problem.get_or_insert(e);
                }
            }
            out.push_str("\n\n");
        }
        emit(&out)?;
        if !unique && args.filter.is_none() {
            let dns = entries.iter().map(|e| e.dn.clone()).collect();
            let address = args.mail.clone().or(args.uid.clone()).unwrap_or_default();
            return Err(EntryProblem(ldap::Error::Ambiguous { address, dns }).into());
        }
        if let Some(e) = problem {
            return Err(EntryProblem(e).into());
        }
        if let (Some(pw), [entry]) = (&args.password, entries.as_slice()) {
            return check(&dir, entry, pw);
        }
        return Ok(Outcome::Found);
    }
    emit(&out)?;
    Ok(Outcome::NotFound)
}

/// The `-p` check: the schemes of `qmail::passwd` compared here, anything else (or rebind
/// mode) by a bind as the entry. Prints upstream's verdict line. A directory failure is an
/// error (111).
fn check(dir: &Directory, entry: &ldap::Entry, pw: &str) -> Result<Outcome> {
    let local = match stored_password(entry) {
        Some(s) if !dir.config().rebind => qmail::passwd::check(&s, pw.as_bytes()).ok(),
        _ => None,
    };
    let ok = match local {
        _ if pw.is_empty() => false,
        Some(v) => v,
        None => dir.bind_check(&entry.dn, pw).context("bind as the entry")?,
    };
    if ok {
        emit("PASSWORD COMPARE was successful.\n")?;
        Ok(Outcome::Found)
    } else {
        let why = if pw.is_empty() { "empty password" } else { "password mismatch" };
        emit(&format!("PASSWORD COMPARE was NOT successful.\n\terror was: {why}\n"))?;
        Ok(Outcome::WrongPassword)
    }
}

/// The entry's first `userPassword` value, text or binary.
fn stored_password(entry: &ldap::Entry) -> Option<Vec<u8>> {
    let is_pw = |k: &String| k.eq_ignore_ascii_case("userPassword");
    let text = entry.attrs.iter().find(|(k, _)| is_pw(k)).and_then(|(_, v)| v.first());
    let binary = entry.bin_attrs.iter().find(|(k, _)| is_pw(k)).and_then(|(_, v)| v.first());
    text.map(|t| t.as_bytes().to_vec()).or_else(|| binary.cloned())
}

/// Writes to standard output; a failure (a closed pipe, a full disk) is an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("unable to write output")
}

/// A candidate with neither dash nor extension (a `-u` or `-f` search).
fn plain(local: &[u8]) -> Candidate {
    Candidate { local: local.to_vec(), dash: "", ext: Vec::new() }
}

/// The filters delivery tries for `address` (doc/qmail-ldap.7, LOOKUP), alias domains applied.
fn mail_searches(address: &str, cfg: &Config) -> Result<Vec<(String, Candidate)>> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        bail!("{}: an address needs an @domain", controls(address));
    };
    let domain = domain.to_ascii_lowercase();
    let domain = cfg
        .alias_domains
        .iter()
        .find(|(alias, _)| *alias == domain)
        .map_or(domain.clone(), |(_, real)| real.clone());
    Ok(ldap::candidates(local.as_bytes(), cfg.dash_ext)
        .into_iter()
        .map(|cand| {
            let mut probe = cand.local.clone();
            probe.push(b'@');
            probe.extend_from_slice(domain.as_bytes());
            (ldap::address_filter(&probe, cfg.objectclass.as_deref()), cand)
        })
        .collect())
}

/// The entry's attributes in upstream's order; every value, `userPassword` never.
fn print_entry(out: &mut String, entry: &ldap::Entry) {
    let values = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.iter().map(|s| controls(s)))
            .collect();
        if entry.bin_attrs.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            v.push("(not UTF-8)".to_string());
        }
        v
    };
    out.push_str(&format!("dn: {}\n{}\n", controls(&entry.dn), "-".repeat(72)));
    let mut line = |name: &str, undefined: Option<&str>| {
        let v = values(name);
        if v.is_empty() {
            if let Some(u) = undefined {
                out.push_str(&format!("{name}: {u}\n"));
            }
        }
        for val in v {
            out.push_str(&format!("{name}: {val}\n"));
        }
    };
    line("objectClass", None);
    line("mail", Some("undefined"));
    line("mailAlternateAddress", None);
    line("uid", Some("undefined (forward only account required)"));
    line("accountStatus", Some("undefined -> active"));
    line("mailHost", Some("undefined"));
    line("homeDirectory", Some("undefined"));
    line("mailMessageStore", Some("undefined"));
    line("qmailDotMode", Some("undefined"));
    line("qmailUID", Some("undefined"));
    line("qmailGID", Some("undefined"));
    line("mailQuotaSize", Some("undefined"));
    line("mailQuotaCount", Some("undefined"));
    line("mailSizeMax", Some("undefined"));
    line("deliveryMode", None);
    line("mailForwardingAddress", None);
    line("deliveryProgramPath", None);
    let reply = values("mailReplyText");
    if reply.is_empty() {
        out.push_str("mailReplyText: undefined\n");
    }
    for r in reply {
        out.push_str(&format!("mailReplyText:\n=== begin ===\n{r}\n=== end ===\n"));
    }
}

/// What qmail-lspawn and qmail-local would do with the decoded account.
fn print_delivery(out: &mut String, a: &Account, cfg: &Config, ctl: &Control) {
    use ldap::AccountStatus as S;
    out.push_str("\nDelivery:\n");
    let status = match &a.status {
        S::Active => "active: mail is delivered".to_string(),
        S::NoAccess => "noaccess: mail is delivered; no POP, IMAP or SMTP AUTH login".to_string(),
        S::NoPop => "nopop: mail is delivered; no POP or IMAP login".to_string(),
        S::Disabled => "disabled: mail bounces (administratively disabled, #5.2.1)".to_string(),
        S::Deleted => "deleted: mail bounces as for an unknown user (#5.1.1)".to_string(),
        S::Unknown(w) => format!("{}: unknown status, treated as noaccess", controls(w)),
    };
    out.push_str(&format!("  status: {status}\n"));
    if let Some(h) = &a.mail_host {
        let clustered = ctl.int_or("ldapcluster", 0).unwrap_or(0) != 0;
        let what = match qmail::recipient::ours(ctl, h) {
            Ok(true) if clustered => "this host: delivered here",
            Ok(true) => "ignored (ldapcluster is 0): delivered here",
            Ok(false) => {
                "another cluster host: mail waits in the queue (#4.4.4), forwarding to cluster \
                 hosts is not built yet"
            }
            Err(_) => "unknown: a control file cannot be read (delivery defers)",
        };
        out.push_str(&format!("  mail host: {} ({what})\n", controls(h)));
    }
    let id = |v: Option<u32>| v.map_or("none (refused)".to_string(), |n| n.to_string());
    out.push_str(&format!(
        "  user: {}, uid {}, gid {}\n",
        a.user.as_deref().unwrap_or("none"),
        id(a.uid),
        id(a.gid)
    ));
    let store = match a.store(cfg.message_store.as_deref()) {
        Ok(Store::Mailbox { home, aliasempty }) => format!(
            "home {home}, default delivery {}",
            aliasempty.as_deref().unwrap_or("./Maildir/ (qmail-local's default)")
        ),
        Ok(Store::ForwardOnly) => "none: forward-only account, delivered as the alias user".into(),
        Err(e) => format!("impossible: {}", controls(&e.to_string())),
    };
    out.push_str(&format!("  message store: {store}\n"));
    out.push_str(&format!("  dot mode: {}\n", a.dot_mode.as_str()));
    let mut mode = Vec::new();
    mode.push(if a.mode.nolocal { "no local delivery" } else { "local delivery" });
    mode.push(if a.mode.noforward { "no forwards" } else { "forwards" });
    mode.push(if a.mode.noprogram { "no programs" } else { "programs" });
    if a.mode.reply {
        mode.push("automatic reply");
    }
    let unknown: Vec<String> =
        a.mode.unknown.iter().map(|w| format!("unknown {}", controls(w))).collect();
    mode.extend(unknown.iter().map(String::as_str));
    out.push_str(&format!("  delivery mode: {}\n", mode.join(", ")));
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(|s| controls(s)).collect::<Vec<_>>().join(", ")
        }
    };
    out.push_str(&format!("  forwards: {}\n", list(&a.forwards)));
    out.push_str(&format!("  programs: {}\n", list(&a.programs)));
    let quota = match (a.quota_size, a.quota_count) {
        (0, 0) => "unlimited".to_string(),
        (s, c) => format!(
            "{} bytes, {} messages",
            if s == 0 { "unlimited".to_string() } else { s.to_string() },
            if c == 0 { "unlimited".to_string() } else { c.to_string() }
        ),
    };
    out.push_str(&format!("  quota: {quota}\n"));
    let max = a.size_max.map_or("unlimited".to_string(), |n| format!("{n} bytes"));
    out.push_str(&format!("  message size limit: {max}\n"));
    if a.mode.reply {
        out.push_str(&format!(
            "  automatic reply: {}\n",
            if a.reply_text.is_some() { "with the text above" } else { "no text: none sent" }
        ));
    }
}
