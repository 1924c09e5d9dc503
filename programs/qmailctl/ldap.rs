//! qmailctl ldap-init and qmailctl user: provisioning the directory (doc/qmail-ldap.7,
//! doc/qmailctl.8).
//!
//! `ldap-init` writes a slapd.conf (the stock schemas, qmail.schema, one mdb database, access
//! rules that hide `userPassword`), the qmail schema and a base DIT LDIF (the suffix entry and
//! `ou=people`) into a directory, or with `--print` prints that LDIF for an existing
//! directory; both set the `ldap*` control files of the installation root.
//!
//! `user add|mod|del|show ADDRESS` find and change one `qmailUser` entry through
//! [`qmail::ldap`], bound as `ldaplogin`/`ldappassword` or `--bind-dn`/`--bind-password-file`.
//! Filter values are escaped per RFC 4515 ([`ldap::address_filter`]), DN values per RFC 4514
//! ([`ldap::escape_dn`]); passwords are stored as `{SSHA}` with an 8-byte random salt and are
//! never printed. An address already carried by another entry is refused, since delivery
//! would then fail as ambiguous.

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use qmail::control::Control;
use qmail::ldap::{self, Change, Config, Directory};
use std::fs;
use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::HomeArg;

/// The qmail schema as shipped, written next to the generated slapd.conf.
const QMAIL_SCHEMA: &str = include_str!("../../schema/qmail.schema");

/// Where Debian's slapd keeps the stock schemas and modules.
const SCHEMA_DIR: &str = "/etc/ldap/schema";
const MODULE_DIR: &str = "/usr/lib/ldap";

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

// ---------------------------------------------------------------------------------------------
// Options

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

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// The directory's suffix, e.g. dc=example,dc=org (its first RDN: dc, o or ou).
    #[arg(long, value_name = "DN")]
    pub suffix: String,
    /// Write slapd.conf, qmail.schema, base.ldif and db/ into this new or empty directory.
    #[arg(long, value_name = "DIR", required_unless_present = "print", conflicts_with = "print")]
    pub dir: Option<PathBuf>,
    /// Print the base DIT LDIF for an existing directory instead (bind with --rootdn and
    /// --rootpw-file as its administrator).
    #[arg(long)]
    pub print: bool,
    /// The LDAP server for control/ldapserver.
    #[arg(long, value_name = "HOST[:PORT]", default_value = "127.0.0.1")]
    pub server: String,
    /// The administrator DN; default: cn=admin under the suffix.
    #[arg(long, value_name = "DN")]
    pub rootdn: Option<String>,
    /// Read the administrator password from this file; default: a new random one.
    #[arg(long, value_name = "FILE")]
    pub rootpw_file: Option<PathBuf>,
    /// control/ldapmessagestore: the directory under which mailboxes are made.
    #[arg(long, value_name = "DIR")]
    pub message_store: Option<String>,
    /// control/ldapuid: the uid of entries without qmailUID.
    #[arg(long, value_name = "N")]
    pub uid: Option<u32>,
    /// control/ldapgid: the gid of entries without qmailGID.
    #[arg(long, value_name = "N")]
    pub gid: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// ldap-init

pub fn init(args: &InitArgs) -> Result<()> {
    let home = args.home.resolve();
    let control = home.join("control");
    ensure!(control.is_dir(), "{} is not an installation root (run qmailctl init)", home.display());
    let suffix = args.suffix.trim();
    let class_lines = suffix_entry(suffix)?;
    let rootdn = args.rootdn.clone().unwrap_or_else(|| format!("cn=admin,{suffix}"));
    check_value("--rootdn", &rootdn)?;
    check_value("--server", &args.server)?;
    let password = match &args.rootpw_file {
        Some(f) => read_secret(f)?,
        None if args.print => bail!("--print needs --rootpw-file: the existing administrator's"),
        None => BASE64.encode(random(18)?),
    };
    let ldif = format!(
        "dn: {suffix}\n{class_lines}\n\
         dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people\n"
    );
    if let Some(dir) = &args.dir {
        write_server(dir, suffix, &rootdn, &password, &ldif, &args.server)?;
    } else {
        print!("{ldif}");
    }
    let store = match &args.message_store {
        Some(s) => {
            ensure!(s.starts_with('/'), "--message-store must be an absolute path");
            ldap::check_path(s).map_err(|w| anyhow::anyhow!("--message-store: {w}"))?;
            Some(if s.ends_with('/') { s.clone() } else { format!("{s}/") })
        }
        None => None,
    };
    let mut files = vec![
        ("ldapserver", args.server.clone(), 0o644),
        ("ldapbasedn", suffix.to_string(), 0o644),
        ("ldaplogin", rootdn.clone(), 0o644),
        ("ldappassword", password, 0o640),
    ];
    if let Some(s) = store {
        files.push(("ldapmessagestore", s, 0o644));
    }
    for (name, id) in [("ldapuid", args.uid), ("ldapgid", args.gid)] {
        if let Some(id) = id {
            ldap::decode_id(&id.to_string())
                .map_err(|w| anyhow::anyhow!("--{}: {w}", &name[4..]))?;
            files.push((name, id.to_string(), 0o644));
        }
    }
    let owner = fs::metadata(&control).context("unable to stat control/")?;
    let group = readers_group(&home).unwrap_or(owner.gid());
    for (name, value, mode) in files {
        let path = control.join(name);
        write_private(&path, format!("{value}\n").as_bytes(), mode)?;
        // control/ belongs to the installation's owner; so do the files. The group is the
        // one whose members read ldappassword: qmail-getpw (qmailp) and qmail-verify
        // (qmaild) in a system installation, the owner's otherwise.
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(
                &path,
                Some(nix::unistd::Uid::from_raw(owner.uid())),
                Some(nix::unistd::Gid::from_raw(group)),
            )
            .with_context(|| format!("unable to chown {}", path.display()))?;
        }
    }
    eprintln!(
        "qmailctl: control/ldapserver, ldapbasedn, ldaplogin, ldappassword set in {}",
        home.display()
    );
    Ok(())
}

/// The suffix entry's object classes and naming attribute, from its first RDN.
fn suffix_entry(suffix: &str) -> Result<String> {
    check_value("--suffix", suffix)?;
    let first = split_rdn(suffix);
    let Some((attr, value)) = first.split_once('=') else {
        bail!("--suffix {suffix}: not a DN");
    };
    ensure!(!value.contains('\\') && !value.is_empty(), "--suffix {suffix}: unsupported RDN");
    let lines = match attr.trim().to_ascii_lowercase().as_str() {
        "dc" => {
            format!("objectClass: dcObject\nobjectClass: organization\ndc: {value}\no: {value}\n")
        }
        "o" => format!("objectClass: organization\no: {value}\n"),
        "ou" => format!("objectClass: organizationalUnit\nou: {value}\n"),
        a => bail!("--suffix {suffix}: the first RDN must be dc=, o= or ou=, not {a}="),
    };
    Ok(lines)
}

/// The first RDN of a DN (up to the first unescaped comma).
fn split_rdn(dn: &str) -> &str {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => return &dn[..i],
            _ => escaped = false,
        }
    }
    dn
}

fn write_server(
    dir: &Path,
    suffix: &str,
    rootdn: &str,
    password: &str,
    ldif: &str,
    server: &str,
) -> Result<()> {
    if dir.exists() {
        let mut rd =
            fs::read_dir(dir).with_context(|| format!("unable to read {}", dir.display()))?;
        ensure!(rd.next().is_none(), "{} is not empty", dir.display());
    }
    let dir = std::path::absolute(dir).context("unable to resolve --dir")?;
    fs::create_dir_all(dir.join("db"))
        .with_context(|| format!("unable to create {}/db", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("unable to set the mode of {}", dir.display()))?;
    let schema = dir.join("qmail.schema");
    write_private(&schema, QMAIL_SCHEMA.as_bytes(), 0o644)?;
    let rootpw = qmail::passwd::ssha(password.as_bytes(), &random(8)?);
    let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let conf = format!(
        "# slapd.conf for qmail-ldap-rs, written by qmailctl ldap-init.\n\
         modulepath {MODULE_DIR}\n\
         moduleload back_mdb\n\
         include {SCHEMA_DIR}/core.schema\n\
         include {SCHEMA_DIR}/cosine.schema\n\
         include {SCHEMA_DIR}/nis.schema\n\
         include {SCHEMA_DIR}/inetorgperson.schema\n\
         include \"{schema}\"\n\
         pidfile \"{pid}\"\n\
         argsfile \"{args}\"\n\
         \n\
         database mdb\n\
         maxsize 1073741824\n\
         suffix \"{suffix}\"\n\
         rootdn \"{rootdn}\"\n\
         rootpw {rootpw}\n\
         directory \"{db}\"\n\
         index objectClass eq\n\
         index mail,mailAlternateAddress,uid eq\n\
         \n\
         # Passwords: a user may change its own, anyone may bind with one, nobody reads them.\n\
         access to attrs=userPassword\n\
         \tby self write\n\
         \tby anonymous auth\n\
         \tby * none\n\
         access to *\n\
         \tby self read\n\
         \tby users read\n\
         \tby * none\n",
        schema = q(&schema.display().to_string()),
        pid = q(&dir.join("slapd.pid").display().to_string()),
        args = q(&dir.join("slapd.args").display().to_string()),
        suffix = q(suffix),
        rootdn = q(rootdn),
        db = q(&dir.join("db").display().to_string()),
    );
    write_private(&dir.join("slapd.conf"), conf.as_bytes(), 0o600)?;
    write_private(&dir.join("base.ldif"), ldif.as_bytes(), 0o644)?;
    eprintln!(
        "qmailctl: wrote {0}/slapd.conf and {0}/base.ldif; load with\n  \
         slapadd -f {0}/slapd.conf -l {0}/base.ldif\nthen start\n  \
         slapd -f {0}/slapd.conf -h ldap://{server}/",
        dir.display()
    );
    Ok(())
}

/// Writes a file created with `mode` (never readable by others in between).
fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp-qmailctl");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("unable to create {}", tmp.display()))?;
    f.write_all(data).with_context(|| format!("unable to write {}", tmp.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("unable to set the mode of {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("unable to sync {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("unable to rename to {}", path.display()))
}

/// `n` random bytes from the kernel (getrandom(2), or /dev/urandom on old kernels).
fn random(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("unable to get random bytes: {e}"))?;
    Ok(buf)
}

/// The first line of a file or of standard input (`-`), without its newline.
fn read_secret(path: &Path) -> Result<String> {
    let mut line = String::new();
    if path == Path::new("-") {
        std::io::stdin().lock().read_line(&mut line).context("unable to read standard input")?;
    } else {
        let text = fs::read_to_string(path)
            .with_context(|| format!("unable to read {}", path.display()))?;
        line = text.lines().next().unwrap_or_default().to_string();
    }
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    ensure!(!line.is_empty(), "empty password in {}", path.display());
    Ok(line)
}

/// A value for an LDIF line or a control file: no control characters (no line breaks).
fn check_value(what: &str, value: &str) -> Result<()> {
    ensure!(!value.chars().any(char::is_control), "{what}: control characters are not allowed");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// user

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
    let pw = match (&set.password, set.password_stdin) {
        (Some(p), _) => p.clone(),
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

/// In a system installation (the queue belongs to qmailq), the group of the unprivileged
/// readers of `ldappassword`: `nofiles`, the group of qmailp (qmail-getpw) and qmaild
/// (qmail-verify, smmapd's usual user aside). `None` for a single-user installation.
fn readers_group(home: &Path) -> Option<u32> {
    if qmail::queue::installation(home).ok()? != qmail::queue::Installation::System {
        return None;
    }
    let group = nix::unistd::Group::from_name(qmail::auto::GROUP_NOFILES).ok().flatten()?;
    Some(group.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert!(suffix_entry("dc=example,dc=org").unwrap().contains("dc: example\n"));
        assert!(suffix_entry("o=Firm").unwrap().contains("objectClass: organization\n"));
        assert!(suffix_entry("ou=mail,dc=x").unwrap().contains("ou: mail\n"));
        assert!(suffix_entry("cn=x,dc=y").is_err());
        assert!(suffix_entry("dc=a\nb").is_err());
        assert!(suffix_entry("nonsense").is_err());
        assert_eq!(split_rdn("dc=a\\,b,dc=c"), "dc=a\\,b");
    }

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
