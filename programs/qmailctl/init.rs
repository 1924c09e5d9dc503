//! qmailctl init: create a complete installation root.
//!
//! Single-user mode (the default): everything belongs to the invoking user, `bin/` holds
//! symbolic links to the built programs, and the system works without root. Run by root, a
//! single-user root goes to `--owner`, by default `nobody` (a root-owned root would make root
//! the alias user, and nothing is delivered as root). System mode
//! (`--users`, root only): the qmail users and groups are created when missing, the programs
//! are copied into `bin/` (qmail-queue setuid qmailq, mode 04711), and the queue tree gets the
//! owners and modes of doc/INTERNALS.md, "Layout". An existing root is left exactly as it is.

use crate::InitArgs;
use anyhow::{bail, Context, Result};
use nix::unistd::{chown, Gid, Group, Uid, User};
use qmail::auto::{self, SPLIT};
use qmail::queue::{Owner, DIRS};
use std::fs;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What `init` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Existing,
}

/// The ids a system installation uses.
struct Ids {
    qmail: Gid,
    nofiles: Gid,
    alias: Uid,
    qmailq: Uid,
    qmails: Uid,
    qmailr: Uid,
}

pub fn init(args: &InitArgs) -> Result<Outcome> {
    let home = args.home.resolve();
    if home.join("control/me").exists() || home.join("queue").exists() {
        println!("qmailctl: {} is already an installation root; nothing changed", home.display());
        return Ok(Outcome::Existing);
    }
    if args.owner.is_some() && !Uid::effective().is_root() {
        bail!("--owner needs root");
    }
    let owner = match &args.owner {
        Some(o) => Some(o.clone()),
        None if Uid::effective().is_root() && !args.users => Some(default_owner()?),
        None => None,
    };
    let ids = if args.users {
        if !Uid::effective().is_root() {
            bail!("--users needs root");
        }
        Some(create_users(&home)?)
    } else {
        None
    };
    let me = host_name(args.domain.as_deref())?;
    // the root itself may exist already (an empty directory made for it)
    fs::create_dir_all(&home).with_context(|| format!("unable to create {}", home.display()))?;
    set_mode(&home, 0o755)?;
    for sub in ["bin", "control", "users", "doc", "run"] {
        mkdir(&home.join(sub), 0o755)?;
    }
    write_controls(&home, &me, args.domain.as_deref())?;
    write_users(&home)?;
    make_alias(&home, ids.as_ref())?;
    make_queue(&home, ids.as_ref())?;
    install_programs(&home, ids.as_ref())?;
    if let Some(owner) = &owner {
        give_to(&home, owner)?;
    }
    println!("qmailctl: created installation root {} for {me}", home.display());
    Ok(Outcome::Created)
}

/// Run by root without `--users` or `--owner`: a root-owned single-user root would make root
/// the alias user, and nothing is ever delivered as root, so the root goes to `nobody`.
fn default_owner() -> Result<String> {
    const NOBODY: &str = "nobody";
    if User::from_name(NOBODY)?.is_none() {
        bail!(
            "running as root, a single-user installation needs an owner that is not root, and \
             there is no user {NOBODY}: use --owner USER, or --users for a system installation"
        );
    }
    println!(
        "qmailctl: running as root: the installation goes to {NOBODY} (choose with --owner \
         USER, or --users for a system installation)"
    );
    Ok(NOBODY.to_string())
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("unable to create {}", path.display()))?;
    // the umask must not weaken or strengthen the modes the queue relies on
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("unable to set mode of {}", path.display()))
}

fn own(path: &Path, uid: Uid, gid: Gid) -> Result<()> {
    chown(path, Some(uid), Some(gid)).with_context(|| format!("unable to chown {}", path.display()))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    fs::write(path, data).with_context(|| format!("unable to write {}", path.display()))?;
    set_mode(path, mode)
}

/// `me`: the host name, qualified with the domain when it has no dot.
fn host_name(domain: Option<&str>) -> Result<String> {
    let host = nix::unistd::gethostname().context("unable to get the host name")?;
    let host = host.to_string_lossy().trim().to_ascii_lowercase();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    Ok(match domain {
        Some(d) if !host.contains('.') => format!("{host}.{}", d.to_ascii_lowercase()),
        _ => host,
    })
}

fn write_controls(home: &Path, me: &str, domain: Option<&str>) -> Result<()> {
    let control = home.join("control");
    let domain = domain.map(str::to_ascii_lowercase);
    let mut hosts = vec![me.to_string()];
    if let Some(d) = &domain {
        if d != me {
            hosts.push(d.clone());
        }
    }
    let list = hosts.join("\n") + "\n";
    write_file(&control.join("me"), format!("{me}\n").as_bytes(), 0o644)?;
    write_file(&control.join("locals"), list.as_bytes(), 0o644)?;
    write_file(&control.join("rcpthosts"), list.as_bytes(), 0o644)?;
    let dd = domain.as_deref().unwrap_or(me);
    write_file(&control.join("defaultdomain"), format!("{dd}\n").as_bytes(), 0o644)?;
    // the defaults shipped in the source tree's control/ directory
    write_file(
        &control.join("defaultdelivery"),
        include_bytes!("../../control/defaultdelivery"),
        0o644,
    )?;
    Ok(())
}

fn write_users(home: &Path) -> Result<()> {
    write_file(&home.join("users/assign"), b".\n", 0o644)
}

/// The alias user's home, with a Maildir for postmaster, mailer-daemon and root.
fn make_alias(home: &Path, ids: Option<&Ids>) -> Result<()> {
    let alias = home.join("alias");
    mkdir(&alias, 0o2755)?;
    let maildir = alias.join("Maildir");
    let mut made = vec![alias.clone(), maildir.clone()];
    mkdir(&maildir, 0o700)?;
    for sub in ["cur", "new", "tmp"] {
        mkdir(&maildir.join(sub), 0o700)?;
        made.push(maildir.join(sub));
    }
    for name in [".qmail-postmaster", ".qmail-mailer-daemon", ".qmail-root"] {
        write_file(&alias.join(name), b"./Maildir/\n", 0o644)?;
        made.push(alias.join(name));
    }
    if let Some(ids) = ids {
        for path in made {
            own(&path, ids.alias, ids.nofiles)?;
        }
    }
    Ok(())
}

fn make_queue(home: &Path, ids: Option<&Ids>) -> Result<()> {
    let queue = home.join("queue");
    for dir in DIRS {
        let path = queue.join(dir.path);
        mkdir(&path, dir.mode)?;
        let mut paths = vec![path.clone()];
        if dir.split {
            for i in 0..SPLIT {
                let sub = path.join(i.to_string());
                mkdir(&sub, dir.mode)?;
                paths.push(sub);
            }
        }
        if let Some(ids) = ids {
            let uid = owner_uid(ids, dir.owner);
            for p in paths {
                own(&p, uid, ids.qmail)?;
            }
        }
    }
    let lock = queue.join("lock");
    write_file(&lock.join("tcpto"), &[0u8; 1024], 0o644)?;
    write_file(&lock.join("sendmutex"), b"", 0o600)?;
    let trigger = lock.join("trigger");
    nix::unistd::mkfifo(&trigger, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .with_context(|| format!("unable to make the FIFO {}", trigger.display()))?;
    set_mode(&trigger, 0o622)?;
    if let Some(ids) = ids {
        own(&lock.join("tcpto"), ids.qmailr, ids.qmail)?;
        own(&lock.join("sendmutex"), ids.qmails, ids.qmail)?;
        own(&trigger, ids.qmails, ids.qmail)?;
    }
    Ok(())
}

fn owner_uid(ids: &Ids, owner: Owner) -> Uid {
    match owner {
        Owner::Qmailq => ids.qmailq,
        Owner::Qmails => ids.qmails,
        Owner::Qmailr => ids.qmailr,
    }
}

/// The directory holding the running qmailctl, where its sibling programs were built.
fn build_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("unable to find the qmailctl program")?;
    let exe = fs::canonicalize(&exe).unwrap_or(exe);
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn install_programs(home: &Path, ids: Option<&Ids>) -> Result<()> {
    let from = build_dir()?;
    for name in auto::PROGRAMS {
        let src = from.join(name);
        let dst = home.join("bin").join(name);
        if !src.exists() {
            bail!("{} is missing: build the whole package first (cargo build)", src.display());
        }
        match ids {
            None => {
                symlink(&src, &dst).with_context(|| format!("unable to link {}", dst.display()))?
            }
            Some(ids) => {
                install_stripped(&src, &dst)?;
                if *name == "qmail-queue" {
                    own(&dst, ids.qmailq, ids.qmail)?;
                    set_mode(&dst, 0o4711)?;
                } else {
                    set_mode(&dst, 0o755)?;
                }
            }
        }
    }
    Ok(())
}

/// Copy the program `src` to `dst` without its debug information (the build tree keeps it,
/// for profiling): a release program is about 17 MB with it and under 1 MB without. A file
/// that cannot be rewritten as ELF is copied as it is, with a warning.
fn install_stripped(src: &Path, dst: &Path) -> Result<()> {
    let data = fs::read(src).with_context(|| format!("unable to read {}", src.display()))?;
    let out = match strip_debug(&data) {
        Ok(out) => out,
        Err(e) => {
            eprintln!(
                "qmailctl: warning: {} copied with its debug information: {e}",
                src.display()
            );
            data
        }
    };
    fs::write(dst, out).with_context(|| format!("unable to write {}", dst.display()))
}

/// An ELF file without its debug sections (`strip --strip-debug`: the symbols stay).
fn strip_debug(elf: &[u8]) -> Result<Vec<u8>, object::build::Error> {
    let mut builder = object::build::elf::Builder::read(elf)?;
    for section in builder.sections.iter_mut() {
        let name = section.name.as_slice();
        if name.starts_with(b".debug_") || name.starts_with(b".zdebug_") {
            section.delete = true;
        }
    }
    let mut out = Vec::with_capacity(elf.len() / 4);
    builder.write(&mut out)?;
    Ok(out)
}

/// Create the groups qmail and nofiles and the eight qmail users when missing.
fn create_users(home: &Path) -> Result<Ids> {
    for group in [auto::GROUP_QMAIL, auto::GROUP_NOFILES] {
        if Group::from_name(group)?.is_none() {
            run("groupadd", &["--system", group])?;
        }
    }
    let users: &[(&str, &str, PathBuf)] = &[
        (auto::USER_ALIAS, auto::GROUP_NOFILES, home.join("alias")),
        (auto::USER_QMAILD, auto::GROUP_NOFILES, home.to_path_buf()),
        (auto::USER_QMAILL, auto::GROUP_NOFILES, home.to_path_buf()),
        (auto::USER_QMAILP, auto::GROUP_NOFILES, home.to_path_buf()),
        (auto::USER_QMAILQ, auto::GROUP_QMAIL, home.to_path_buf()),
        (auto::USER_QMAILR, auto::GROUP_QMAIL, home.to_path_buf()),
        (auto::USER_QMAILS, auto::GROUP_QMAIL, home.to_path_buf()),
    ];
    for (user, group, dir) in users {
        if User::from_name(user)?.is_none() {
            let dir = dir.to_string_lossy();
            run(
                "useradd",
                &[
                    "--system",
                    "--gid",
                    group,
                    "--home-dir",
                    &dir,
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                ],
            )?;
        }
    }
    let uid = |name: &str| -> Result<Uid> {
        Ok(User::from_name(name)?.with_context(|| format!("no user {name}"))?.uid)
    };
    let gid = |name: &str| -> Result<Gid> {
        Ok(Group::from_name(name)?.with_context(|| format!("no group {name}"))?.gid)
    };
    Ok(Ids {
        qmail: gid(auto::GROUP_QMAIL)?,
        nofiles: gid(auto::GROUP_NOFILES)?,
        alias: uid(auto::USER_ALIAS)?,
        qmailq: uid(auto::USER_QMAILQ)?,
        qmails: uid(auto::USER_QMAILS)?,
        qmailr: uid(auto::USER_QMAILR)?,
    })
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("unable to run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed: {status}", args.join(" "));
    }
    Ok(())
}

/// Single-user mode for another user: chown every file and directory under `home` (symbolic
/// links themselves are left alone) to `owner`.
fn give_to(home: &Path, owner: &str) -> Result<()> {
    let user = User::from_name(owner)?.with_context(|| format!("no user {owner}"))?;
    if user.uid.is_root() {
        bail!("the owner must not be root");
    }
    fn walk(p: &Path, uid: Uid, gid: Gid) -> Result<()> {
        let meta =
            fs::symlink_metadata(p).with_context(|| format!("unable to stat {}", p.display()))?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        own(p, uid, gid)?;
        if meta.is_dir() {
            for e in fs::read_dir(p).with_context(|| format!("unable to read {}", p.display()))? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(home, user.uid, user.gid)
}

/// A demo user for the embedded default: `demo`, with a Maildir under the root, owned by the
/// root's owner (the invoking user, or the `--owner`), in users/assign and users/cdb.
pub fn demo_user(home: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(home.join("queue")).context("unable to stat queue/")?;
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        bail!(
            "the demo user cannot be root: run as a normal user, or as root with a `nobody` user"
        );
    }
    let demo = home.join("demo");
    for sub in ["", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"] {
        let p = demo.join(sub);
        mkdir(&p, if sub.is_empty() { 0o755 } else { 0o700 })?;
        own(&p, Uid::from_raw(uid), Gid::from_raw(gid))?;
    }
    let assign = format!("=demo:demo:{uid}:{gid}:{}:::\n.\n", demo.display());
    write_file(&home.join("users/assign"), assign.as_bytes(), 0o644)?;
    let status = std::process::Command::new(home.join("bin/qmail-newu"))
        .env("QMAILHOME", home)
        .status()
        .context("unable to run qmail-newu")?;
    if !status.success() {
        bail!("qmail-newu failed: {status}");
    }
    println!("qmailctl: demo user demo@localhost delivers to {}/Maildir/", demo.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripped_programs_are_smaller_and_still_run() {
        // this test program, built with debug information, stripped and run
        let me = std::env::current_exe().unwrap();
        let data = fs::read(&me).unwrap();
        let stripped = strip_debug(&data).unwrap();
        assert!(stripped.len() < data.len(), "{} >= {}", stripped.len(), data.len());
        let parsed = object::read::File::parse(stripped.as_slice()).unwrap();
        use object::{Object, ObjectSection};
        assert!(parsed.sections().all(|s| !s.name().unwrap_or("").starts_with(".debug_")));
        let dir = std::env::temp_dir().join(format!("qmailctl-strip-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("stripped");
        install_stripped(&me, &copy).unwrap();
        set_mode(&copy, 0o755).unwrap();
        let out = std::process::Command::new(&copy).args(["--list", "--exact", "nothing"]).output();
        fs::remove_dir_all(&dir).unwrap();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // not ELF: an error, never a damaged copy
        assert!(strip_debug(b"#!/bin/sh\necho hi\n").is_err());
    }
}
