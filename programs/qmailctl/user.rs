//! qmailctl user: adding, changing, deleting and showing a mail user in the directory
//! (doc/qmail-ldap.7, doc/qmailctl.8).
//!
//! `user add|mod|del|show ADDRESS` find and change one `qmailUser` entry through
//! [`qmail::ldap`], bound as `ldaplogin`/`ldappassword` or `--bind-dn`/`--bind-password-file`.
//! Filter values are escaped per RFC 4515 ([`ldap::address_filter`]), DN values per RFC 4514
//! ([`ldap::escape_dn`]); passwords are stored as `{SSHA}` with an 8-byte random salt and are
//! never printed. An address already carried by another entry is refused, since delivery
//! would then fail as ambiguous.

use anyhow::{bail, ensure, Context, Result};
use qmail::control::Control;
use qmail::ldap::{self, Change, Config, Directory};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::ldapinit::{check_value, random, read_secret};
use crate::HomeArg;

/// What `qmailctl user show` and the duplicate checks read.
const SHOW_ATTRS: &[&str] = &[
    "objectClass",
    "uid",
    "cn",
    "mail",
    "mailAlternateAddress",
    "accountStatus",
    "homeDirectory",
    "mailMessageStore",
    "qmailUID",
    "qmailGID",
    "mailQuotaSize",
    "mailQuotaCount",
    "mailForwardingAddress",
    "deliveryMode",
    "userPassword",
];

#[derive(clap::Args)]
pub struct Bind {
    #[command(flatten)]
    pub home: HomeArg,
    /// Bind as this DN instead of control/ldaplogin.
    #[arg(long, value_name = "DN", requires = "bind_password_file")]
    pub bind_dn: Option<String>,
    /// Read the bind password from the first line of this file (`-`: standard input).
    #[arg(long, value_name = "FILE", requires = "bind_dn")]
    pub bind_password_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum UserCmd {
    /// Create an entry (inetOrgPerson + qmailUser) for a new address.
    Add(AddArgs),
    /// Change an entry found by one of its addresses.
    Mod(ModArgs),
    /// Delete an entry found by one of its addresses.
    Del(Target),
    /// Print an entry found by one of its addresses (never its password).
    Show(Target),
}

#[derive(clap::Args)]
pub struct Target {
    /// The entry's mail or mailAlternateAddress.
    pub address: String,
    #[command(flatten)]
    pub bind: Bind,
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// The primary address (mail).
    pub address: String,
    #[command(flatten)]
    pub bind: Bind,
    /// The login name (uid); default: the local part, lowercased.
    #[arg(long)]
    pub uid: Option<String>,
    /// The full name (cn); default: the uid.
    #[arg(long)]
    pub name: Option<String>,
    /// The parent entry; default: ou=people under ldapbasedn when it exists, else ldapbasedn.
    #[arg(long, value_name = "DN")]
    pub parent: Option<String>,
    #[command(flatten)]
    pub mailbox: Mailbox,
    /// An alternate address (mailAlternateAddress); repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub alias: Vec<String>,
    /// Forward to this address (mailForwardingAddress); repeatable. Without --home-dir and
    /// --store, the entry is forward-only.
    #[arg(long, value_name = "ADDRESS")]
    pub forward: Vec<String>,
    #[command(flatten)]
    pub set: Settings,
}

#[derive(clap::Args)]
pub struct ModArgs {
    /// The entry's mail or mailAlternateAddress.
    pub address: String,
    #[command(flatten)]
    pub bind: Bind,
    /// Add an alternate address; repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub add_alias: Vec<String>,
    /// Remove an alternate address; repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub del_alias: Vec<String>,
    /// Add a forwarding address; repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub add_forward: Vec<String>,
    /// Remove a forwarding address; repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub del_forward: Vec<String>,
    /// Remove every deliveryMode value (normal delivery).
    #[arg(long, conflicts_with = "delivery_mode")]
    pub clear_delivery_mode: bool,
    #[command(flatten)]
    pub mailbox: Mailbox,
    #[command(flatten)]
    pub set: Settings,
}

/// Where the mail goes and as whom: `add` and `mod` take these.
#[derive(clap::Args)]
pub struct Mailbox {
    /// The home directory (add: default ldapmessagestore + uid, none for a forward-only
    /// entry).
    #[arg(long, value_name = "DIR")]
    pub home_dir: Option<String>,
    /// The maildir (mailMessageStore; add: default the home + /Maildir/).
    #[arg(long, value_name = "PATH")]
    pub store: Option<String>,
    /// qmailUID (add: default control/ldapuid).
    #[arg(long, value_name = "N")]
    pub qmail_uid: Option<u32>,
    /// qmailGID (add: default control/ldapgid).
    #[arg(long, value_name = "N")]
    pub qmail_gid: Option<u32>,
    /// Create the home and its Maildir, owned by the entry's ids (needs root for other ids).
    #[arg(long)]
    pub create_home: bool,
}

/// Settings both `add` and `mod` take.
#[derive(clap::Args)]
pub struct Settings {
    /// Read the new password from the first line of standard input (stored as {SSHA}).
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// The new password (visible to other local users in ps; prefer --password-stdin).
    #[arg(long)]
    pub password: Option<String>,
    /// mailQuotaSize in bytes (0: unlimited).
    #[arg(long, value_name = "BYTES")]
    pub quota_size: Option<u64>,
    /// mailQuotaCount in messages (0: unlimited).
    #[arg(long, value_name = "N")]
    pub quota_count: Option<u64>,
    /// deliveryMode (nolocal, noforward, noprogram, reply; repeatable; replaces the values).
    #[arg(long, value_name = "MODE")]
    pub delivery_mode: Vec<String>,
    /// accountStatus: active, noaccess, nopop, disabled or deleted.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
}

pub fn user(cmd: &UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add(a) => add(a),
        UserCmd::Mod(m) => modify(m),
        UserCmd::Del(t) => {
            let mut dir = connect(&t.bind)?;
            let entry = find(&mut dir, &t.address)?;
            dir.delete(&entry.dn).context("unable to delete the entry")?;
            println!("qmailctl: deleted {}", entry.dn);
            Ok(())
        }
        UserCmd::Show(t) => {
            let mut dir = connect(&t.bind)?;
            let entry = find(&mut dir, &t.address)?;
            print!("{}", render(&entry));
            Ok(())
        }
    }
}

/// The directory, bound as the control files or the options say.
fn connect(bind: &Bind) -> Result<Directory> {
    let home = bind.home.resolve();
    let ctl = Control::new(&home);
    let mut cfg =
        Config::read(&ctl).context("unable to read the LDAP control files")?.with_context(
            || format!("LDAP is not configured in {} (run qmailctl ldap-init)", home.display()),
        )?;
    if let (Some(dn), Some(f)) = (&bind.bind_dn, &bind.bind_password_file) {
        cfg.login = dn.clone();
        cfg.password = read_secret(f)?;
    }
    Ok(Directory::new(cfg))
}

/// The one entry carrying `address` (mail or mailAlternateAddress).
fn find(dir: &mut Directory, address: &str) -> Result<ldap::Entry> {
    let address = check_address("address", address)?;
    let filter = ldap::address_filter(address.as_bytes(), None);
    let mut found = dir.search(&filter, SHOW_ATTRS).context("unable to search the directory")?;
    match found.len() {
        0 => bail!("no entry has the address {address}"),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "several entries have the address {address}: {}",
            found.iter().map(|e| e.dn.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Refuses an address some entry other than `except` already carries.
fn ensure_free(dir: &mut Directory, address: &str, except: Option<&str>) -> Result<()> {
    let filter = ldap::address_filter(address.as_bytes(), None);
    let found = dir.search(&filter, &["mail"]).context("unable to search the directory")?;
    if let Some(other) = found.iter().find(|e| Some(e.dn.as_str()) != except) {
        bail!("{address} is already an address of {}", other.dn);
    }
    Ok(())
}

/// An address: `local@domain`, lowercased, printable, no blanks.
fn check_address(what: &str, address: &str) -> Result<String> {
    let a = address.trim().to_ascii_lowercase();
    let ok = a.rsplit_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && a.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80);
    ensure!(ok, "{what} {address:?} is not an address of the form local@domain");
    Ok(a)
}

/// A forwarding target: an address, or a local name (no blanks or control characters).
fn check_forward(f: &str) -> Result<String> {
    let ok = !f.is_empty() && f.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80);
    ensure!(ok, "forwarding address {f:?} is empty or holds blanks or control characters");
    Ok(f.to_string())
}

fn check_modes(modes: &[String]) -> Result<Vec<String>> {
    modes
        .iter()
        .map(|m| {
            let w = m.trim().to_ascii_lowercase();
            match w.as_str() {
                "nolocal" | "noforward" | "noprogram" | "reply" | "local" | "forward"
                | "program" | "noreply" => Ok(w),
                _ => bail!("unknown delivery mode {m:?} (nolocal, noforward, noprogram, reply)"),
            }
        })
        .collect()
}

fn check_status(s: &str) -> Result<String> {
    let w = s.trim().to_ascii_lowercase();
    ensure!(
        ["active", "noaccess", "nopop", "disabled", "deleted"].contains(&w.as_str()),
        "unknown account status {s:?} (active, noaccess, nopop, disabled, deleted)"
    );
    Ok(w)
}

/// An absolute home directory in the path alphabet, without a trailing `/`.
fn check_home(home: &str) -> Result<String> {
    let h = home.trim_end_matches('/');
    ensure!(h.starts_with('/'), "the home directory {home} is not absolute");
    ldap::check_path(h).map_err(|w| anyhow::anyhow!("home directory {h:?}: {w}"))?;
    Ok(h.to_string())
}

/// A mailMessageStore value in the path alphabet.
fn check_store(store: &str) -> Result<String> {
    ldap::check_path(store).map_err(|w| anyhow::anyhow!("store {store:?}: {w}"))?;
    Ok(store.to_string())
}

/// A qmailUID or qmailGID that delivery accepts (in range, never root).
fn check_id(id: u32) -> Result<u32> {
    ldap::decode_id(&id.to_string()).map_err(|w| anyhow::anyhow!("id {id}: {w}"))
}

/// The `{SSHA}` value for the password the settings name, if any.
fn password(set: &Settings) -> Result<Option<String>> {
    new_password(set.password.as_deref(), set.password_stdin)
}

/// The `{SSHA}` value of a new password given on the command line or (`stdin`) as the first
/// line of standard input; `None` when neither is given. Empty passwords and control
/// characters are refused.
pub fn new_password(given: Option<&str>, stdin: bool) -> Result<Option<String>> {
    let pw = match (given, stdin) {
        (Some(p), _) => p.to_string(),
        (None, true) => read_secret(Path::new("-"))?,
        (None, false) => return Ok(None),
    };
    ensure!(!pw.is_empty(), "empty passwords are not allowed");
    ensure!(!pw.chars().any(char::is_control), "the password holds control characters");
    Ok(Some(qmail::passwd::ssha(pw.as_bytes(), &random(8)?)))
}

fn add(a: &AddArgs) -> Result<()> {
    let mail = check_address("address", &a.address)?;
    let local = mail.rsplit_once('@').map_or(mail.as_str(), |(l, _)| l);
    let uid = a.uid.clone().unwrap_or_else(|| local.to_string());
    ldap::check_user(&uid).map_err(|w| anyhow::anyhow!("uid {uid:?}: {w}"))?;
    let aliases = a.alias.iter().map(|x| check_address("alias", x)).collect::<Result<Vec<_>>>()?;
    let forwards = a.forward.iter().map(|f| check_forward(f)).collect::<Result<Vec<_>>>()?;
    let name = a.name.clone().unwrap_or_else(|| uid.clone());
    check_value("--name", &name)?;
    let mut dir = connect(&a.bind)?;
    let cfg = dir.config().clone();
    // the mailbox: explicit, else under ldapmessagestore; none for a forward-only entry
    let mb = &a.mailbox;
    let forward_only = !forwards.is_empty() && mb.home_dir.is_none() && mb.store.is_none();
    let (home, store) = if forward_only {
        (None, None)
    } else {
        let home = match (&mb.home_dir, &cfg.message_store) {
            (Some(h), _) => Some(check_home(h)?),
            (None, Some(prefix)) => Some(check_home(&format!("{prefix}{uid}"))?),
            (None, None) if mb.store.is_some() => None,
            (None, None) => bail!(
                "no mailbox: give --home-dir or --store, or set control/ldapmessagestore \
                 (qmailctl ldap-init --message-store)"
            ),
        };
        let store = mb.store.clone().or_else(|| home.as_ref().map(|h| format!("{h}/Maildir/")));
        (home, store.map(|s| check_store(&s)).transpose()?)
    };
    let ids = if forward_only {
        (mb.qmail_uid, mb.qmail_gid)
    } else {
        let uid_n = mb.qmail_uid.or(cfg.default_uid).context(
            "no uid for the mailbox: give --qmail-uid or set control/ldapuid (ldap-init --uid)",
        )?;
        let gid_n = mb.qmail_gid.or(cfg.default_gid).context(
            "no gid for the mailbox: give --qmail-gid or set control/ldapgid (ldap-init --gid)",
        )?;
        (Some(uid_n), Some(gid_n))
    };
    for id in [ids.0, ids.1].into_iter().flatten() {
        check_id(id)?;
    }
    for addr in std::iter::once(&mail).chain(&aliases) {
        ensure_free(&mut dir, addr, None)?;
    }
    let parent = match &a.parent {
        Some(p) => p.clone(),
        None => {
            let people = format!("ou=people,{}", cfg.base);
            if dir.exists(&people).context("unable to search the directory")? {
                people
            } else {
                cfg.base.clone()
            }
        }
    };
    check_value("--parent", &parent)?;
    let dn = format!("uid={},{parent}", ldap::escape_dn(&uid));
    let one = |v: Option<String>| v.into_iter().collect::<Vec<_>>();
    let mut attrs: Vec<(String, Vec<String>)> = vec![
        ("objectClass".into(), vec!["inetOrgPerson".into(), "qmailUser".into()]),
        ("uid".into(), vec![uid.clone()]),
        ("cn".into(), vec![name.clone()]),
        ("sn".into(), vec![name.rsplit(' ').next().unwrap_or(&name).to_string()]),
        ("mail".into(), vec![mail.clone()]),
        ("mailAlternateAddress".into(), aliases),
        ("mailForwardingAddress".into(), forwards),
        ("homeDirectory".into(), one(home.clone())),
        ("mailMessageStore".into(), one(store.clone())),
        ("qmailUID".into(), one(ids.0.map(|n| n.to_string()))),
        ("qmailGID".into(), one(ids.1.map(|n| n.to_string()))),
        ("userPassword".into(), one(password(&a.set)?)),
    ];
    attrs.extend(settings(&a.set)?.into_iter().filter_map(|c| match c {
        Change::Replace(attr, v) => Some((attr, v)),
        _ => None,
    }));
    let attrs: Vec<(&str, Vec<String>)> =
        attrs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    dir.add(&dn, &attrs).context("unable to add the entry")?;
    if mb.create_home {
        if let (Some(h), Some(s), Some(u), Some(g)) = (&home, &store, ids.0, ids.1) {
            make_mailbox(Path::new(h), s, u, g)?;
        }
    }
    println!("qmailctl: added {dn}");
    Ok(())
}

/// The quota, delivery mode and status changes the settings ask for.
fn settings(set: &Settings) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    if let Some(q) = set.quota_size {
        out.push(Change::Replace("mailQuotaSize".into(), vec![q.to_string()]));
    }
    if let Some(q) = set.quota_count {
        out.push(Change::Replace("mailQuotaCount".into(), vec![q.to_string()]));
    }
    if !set.delivery_mode.is_empty() {
        out.push(Change::Replace("deliveryMode".into(), check_modes(&set.delivery_mode)?));
    }
    if let Some(s) = &set.status {
        out.push(Change::Replace("accountStatus".into(), vec![check_status(s)?]));
    }
    Ok(out)
}

/// Creates `home` and the maildir `store` (when it lies inside the home or is absolute),
/// owned by the entry's ids.
fn make_mailbox(home: &Path, store: &str, uid: u32, gid: u32) -> Result<()> {
    let maildir = if store.starts_with('/') { PathBuf::from(store) } else { home.join(store) };
    let mut dirs = vec![home.to_path_buf()];
    for sub in ["", "cur", "new", "tmp"] {
        dirs.push(maildir.join(sub));
    }
    for d in dirs {
        if !d.exists() {
            fs::create_dir_all(&d).with_context(|| format!("unable to create {}", d.display()))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("unable to set the mode of {}", d.display()))?;
        }
        nix::unistd::chown(
            &d,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .with_context(|| format!("unable to give {} to {uid}:{gid}", d.display()))?;
    }
    Ok(())
}

fn modify(m: &ModArgs) -> Result<()> {
    let mut dir = connect(&m.bind)?;
    let entry = find(&mut dir, &m.address)?;
    let mut changes = settings(&m.set)?;
    if m.clear_delivery_mode {
        changes.push(Change::Replace("deliveryMode".into(), Vec::new()));
    }
    if let Some(pw) = password(&m.set)? {
        changes.push(Change::Replace("userPassword".into(), vec![pw]));
    }
    changes.extend(mailbox_changes(&m.mailbox)?);
    let add_alias =
        m.add_alias.iter().map(|x| check_address("alias", x)).collect::<Result<Vec<_>>>()?;
    for a in &add_alias {
        ensure_free(&mut dir, a, Some(&entry.dn))?;
    }
    let lists = [
        ("mailAlternateAddress", add_alias, true),
        (
            "mailAlternateAddress",
            m.del_alias.iter().map(|x| check_address("alias", x)).collect::<Result<_>>()?,
            false,
        ),
        (
            "mailForwardingAddress",
            m.add_forward.iter().map(|f| check_forward(f)).collect::<Result<_>>()?,
            true,
        ),
        (
            "mailForwardingAddress",
            m.del_forward.iter().map(|f| check_forward(f)).collect::<Result<_>>()?,
            false,
        ),
    ];
    for (attr, values, adding) in lists {
        if !values.is_empty() {
            changes.push(if adding {
                Change::Add(attr.into(), values)
            } else {
                Change::Delete(attr.into(), values)
            });
        }
    }
    ensure!(
        !changes.is_empty() || m.mailbox.create_home,
        "nothing to change: give at least one option"
    );
    if !changes.is_empty() {
        dir.modify(&entry.dn, &changes).context("unable to modify the entry")?;
        println!("qmailctl: modified {}", entry.dn);
    }
    if m.mailbox.create_home {
        create_home_of(&m.mailbox, &entry, dir.config())?;
    }
    Ok(())
}

/// The homeDirectory, mailMessageStore, qmailUID and qmailGID changes `mod` asks for.
fn mailbox_changes(mb: &Mailbox) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    if let Some(h) = &mb.home_dir {
        out.push(Change::Replace("homeDirectory".into(), vec![check_home(h)?]));
    }
    if let Some(s) = &mb.store {
        out.push(Change::Replace("mailMessageStore".into(), vec![check_store(s)?]));
    }
    if let Some(id) = mb.qmail_uid {
        out.push(Change::Replace("qmailUID".into(), vec![check_id(id)?.to_string()]));
    }
    if let Some(id) = mb.qmail_gid {
        out.push(Change::Replace("qmailGID".into(), vec![check_id(id)?.to_string()]));
    }
    Ok(out)
}

/// `mod --create-home`: the mailbox as the entry now stands (the new values, else the
/// entry's, else the defaults), created as [`make_mailbox`] does for `add`.
fn create_home_of(mb: &Mailbox, entry: &ldap::Entry, cfg: &Config) -> Result<()> {
    let home = match &mb.home_dir {
        Some(h) => check_home(h)?,
        None => first(entry, "homeDirectory").context("the entry has no homeDirectory")?,
    };
    let store = mb
        .store
        .clone()
        .or_else(|| first(entry, "mailMessageStore"))
        .unwrap_or_else(|| format!("{home}/Maildir/"));
    let id = |new: Option<u32>, attr: &str, default: Option<u32>| -> Result<u32> {
        if let Some(n) = new {
            return Ok(n);
        }
        let stored = first(entry, attr).map(|v| ldap::decode_id(&v)).transpose();
        let stored = stored.map_err(|w| anyhow::anyhow!("{attr} of {}: {w}", entry.dn))?;
        stored.or(default).with_context(|| format!("no {attr} for the mailbox"))
    };
    let uid = id(mb.qmail_uid, "qmailUID", cfg.default_uid)?;
    let gid = id(mb.qmail_gid, "qmailGID", cfg.default_gid)?;
    make_mailbox(Path::new(&home), &store, uid, gid)?;
    println!("qmailctl: created {home}");
    Ok(())
}

/// The first value of `attr` in `entry`.
fn first(entry: &ldap::Entry, attr: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

/// An entry as `qmailctl user show` prints it: the DN, then the attributes in a fixed order,
/// each attribute's values sorted, `userPassword` as `(set)`; control characters as `?`.
fn render(entry: &ldap::Entry) -> String {
    let clean =
        |s: &str| s.chars().map(|c| if c.is_control() { '?' } else { c }).collect::<String>();
    let mut out = format!("dn: {}\n", clean(&entry.dn));
    for attr in SHOW_ATTRS {
        let values = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
            .flat_map(|(_, v)| v.iter())
            .collect::<Vec<_>>();
        // sets have no order; print them in one
        let mut values = values;
        values.sort();
        let binary = entry.bin_attrs.keys().any(|k| k.eq_ignore_ascii_case(attr));
        if *attr == "userPassword" {
            if !values.is_empty() || binary {
                out.push_str("userPassword: (set)\n");
            }
            continue;
        }
        for v in values {
            out.push_str(&format!("{attr}: {}\n", clean(v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(check_address("a", "Joe@Example.ORG").unwrap(), "joe@example.org");
        for bad in ["joe", "@x", "x@", "jo e@x", "a@b\nmail: c@d", ""] {
            assert!(check_address("a", bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_modes(&["NoLocal".into()]).unwrap(), ["nolocal"]);
        assert!(check_modes(&["bogus".into()]).is_err());
        assert!(check_status("Disabled").is_ok());
        assert!(check_status("frozen").is_err());
    }
}
