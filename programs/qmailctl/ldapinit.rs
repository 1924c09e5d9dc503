//! qmailctl ldap-init: a new directory for an installation (doc/qmail-ldap.7, doc/qmailctl.8).
//!
//! `ldap-init` writes a slapd.conf (the stock schemas, qmail.schema, one mdb database, access
//! rules that hide `userPassword`), the qmail schema and a base DIT LDIF (the suffix entry and
//! `ou=people`) into a directory, or with `--print` prints that LDIF for an existing
//! directory; both set the `ldap*` control files of the installation root.
//!
//! Also the three helpers qmailctl user shares: a secret read from a file or standard input,
//! random bytes, and the check that a value fits on one LDIF or control file line.

use anyhow::{anyhow, bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use qmail::ldap;
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
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<()> {
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

/// In a system installation (the queue belongs to qmailq), the group of the unprivileged
/// readers of `ldappassword`: `nofiles`, the group of qmailp (qmail-getpw) and qmaild
/// (qmail-verify, smmapd's usual user aside). `None` for a single-user installation.
pub fn readers_group(home: &Path) -> Option<u32> {
    if qmail::queue::installation(home).ok()? != qmail::queue::Installation::System {
        return None;
    }
    let group = nix::unistd::Group::from_name(qmail::auto::GROUP_NOFILES).ok().flatten()?;
    Some(group.gid.as_raw())
}

/// `n` random bytes from the kernel (getrandom(2), or /dev/urandom on old kernels).
pub fn random(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| anyhow!("unable to get random bytes: {e}"))?;
    Ok(buf)
}

/// The first line of a file or of standard input (`-`), without its newline.
pub fn read_secret(path: &Path) -> Result<String> {
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
pub fn check_value(what: &str, value: &str) -> Result<()> {
    ensure!(!value.chars().any(char::is_control), "{what}: control characters are not allowed");
    Ok(())
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
}
