//! qmailctl passwd: set a login's password in `users/passwd`, the logins of the auth programs
//! without a directory (doc/qmailctl.8, "passwd"; doc/qmail-users.5, "USERS/PASSWD").
//!
//! The password becomes `{SSHA}` with an 8-byte random salt. The file is rewritten through a
//! temporary file created with its final mode and renamed into place; an existing file keeps
//! its mode, owner and group, a new one is 0640, owned by the owner of `users/`, in the group
//! of the unprivileged readers of `ldappassword` (`nofiles` in a system installation: qmaild
//! runs auth_smtp), else the group of `users/`.

use crate::ldapinit::{readers_group, write_private};
use crate::user::new_password;
use crate::HomeArg;
use anyhow::{Context, Result};
use qmail::auth::file::{self, PASSWD};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[derive(clap::Args)]
pub struct PasswdArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// The login name (letters, digits, `@ _ . # -`, not starting with `-`).
    pub login: String,
    /// Read the new password from the first line of standard input (stored as {SSHA}).
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// The new password (visible to other local users in ps; prefer --password-stdin).
    #[arg(long)]
    pub password: Option<String>,
}

pub fn passwd(a: &PasswdArgs) -> Result<()> {
    let home = a.home.resolve();
    qmail::ldap::check_user(&a.login).map_err(|w| anyhow::anyhow!("login {:?}: {w}", a.login))?;
    let value = new_password(a.password.as_deref(), a.password_stdin)?
        .context("give the password with --password-stdin (or --password)")?;
    let path = home.join(PASSWD);
    let users = fs::metadata(home.join("users")).context("unable to stat users/")?;
    let (old, meta) = match fs::File::open(&path) {
        Ok(f) => {
            let meta = f.metadata().with_context(|| format!("unable to stat {PASSWD}"))?;
            let mut text = Vec::new();
            f.take(file::MAX_FILE + 1)
                .read_to_end(&mut text)
                .with_context(|| format!("unable to read {PASSWD}"))?;
            anyhow::ensure!(text.len() as u64 <= file::MAX_FILE, "{PASSWD} is too big");
            (text, Some(meta))
        }
        Err(e) if qmail::file::is_missing(&e) => (Vec::new(), None),
        Err(e) => return Err(e).with_context(|| format!("unable to read {PASSWD}")),
    };
    let new = file::set(&old, &a.login, &value).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mode, uid, gid) = match &meta {
        Some(m) => (m.permissions().mode() & 0o7777, m.uid(), m.gid()),
        None => (0o640, users.uid(), readers_group(&home).unwrap_or(users.gid())),
    };
    write_private(&path, &new, mode)?;
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .with_context(|| format!("unable to chown {}", path.display()))?;
    }
    println!("qmailctl: password of {} set in {}", a.login, path.display());
    Ok(())
}
