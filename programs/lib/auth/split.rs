//! auth::split: auth_pop and auth_imap run as root (they become the mailbox's owner), but the
//! directory and `users/passwd` lookups — BER from the network, files other users may write —
//! run in an unprivileged child, as qmail-lspawn has qmail-getpw look users up
//! (doc/INTERNALS.md, "Logins").
//!
//! The child is the same program run with [`LOOKUP_ARG`] and the service as its arguments,
//! as the user who reads the installation's control files: the owner of a single-user root,
//! qmaild (group nofiles, the readers of `ldappassword`) in a system installation, else
//! nobody. It reads `login\0password\0` on its standard input, runs
//! [`super::unprivileged`] and writes one answer ([`encode`]): `K` and the login's fields,
//! `N` (not found; `Ns`: the system's passwd may be asked), or `F`, a kind letter and the
//! text. Root reads at most [`ANSWER_MAX`] bytes of it and decodes them strictly; only the
//! system's passwd and shadow (simple colon-separated lines) are read as root.

use super::{Backend, Credentials, Failure, Login, Lookup1, Mailbox, Maildir, Service};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

/// The first argument that makes auth_pop or auth_imap the lookup child.
pub const LOOKUP_ARG: &str = "--lookup";
/// The most bytes of a request to the child (auth_imap's fd 3 takes 1023).
const REQUEST_MAX: usize = 4096;
/// The most bytes of the child's answer read.
pub const ANSWER_MAX: usize = 16 * 1024;

/// [`super::authenticate`] with steps 1 and 2 in an unprivileged child when running as root.
pub fn authenticate(home: &Path, service: Service, creds: &Credentials) -> Result<Login, Failure> {
    if !nix::unistd::geteuid().is_root() {
        return super::authenticate(home, service, creds);
    }
    match child(home, service, creds)? {
        Lookup1::Found(login) => Ok(login),
        Lookup1::NotFound { system: true } => super::system_step(service, creds),
        Lookup1::NotFound { system: false } => Err(Failure::NoSuchUser),
    }
}

/// When this process was started as the lookup child (its arguments are [`LOOKUP_ARG`] and
/// the service): answer the request and give the exit code. `None` for an ordinary start.
pub fn child_mode() -> Option<u8> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != LOOKUP_ARG {
        return None;
    }
    let service = args.next().unwrap_or_default();
    Some(serve(&crate::auto::home(), &service.to_string_lossy()))
}

/// The child's side: answer the one request on standard input; the exit code.
fn serve(home: &Path, service: &str) -> u8 {
    let service = match service {
        "pop" => Service::Pop,
        "imap" => Service::Imap,
        _ => return 1,
    };
    let mut input = Zeroizing::new(Vec::new());
    if std::io::stdin().take(REQUEST_MAX as u64 + 1).read_to_end(&mut input).is_err()
        || input.len() > REQUEST_MAX
    {
        return 111;
    }
    let Some(creds) = super::checkpassword::credentials(&input) else {
        return 111;
    };
    let answer = encode(&super::unprivileged(home, service, &creds));
    match std::io::stdout().write_all(&answer).and_then(|()| std::io::stdout().flush()) {
        Ok(()) => 0,
        Err(_) => 111,
    }
}

/// Who the child runs as.
fn lookup_ids(home: &Path) -> Result<(u32, u32), Failure> {
    use crate::queue::Installation;
    let by_name = |name: &str| {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .filter(|u| !u.uid.is_root())
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    };
    let ids = match crate::queue::installation(home) {
        Ok(Installation::Owned { uid, gid }) if uid != 0 => Some((uid, gid)),
        Ok(Installation::System) => by_name(crate::auto::USER_QMAILD).or_else(|| by_name("nobody")),
        _ => by_name("nobody"),
    };
    ids.ok_or_else(|| Failure::Config("no unprivileged user to look logins up as".into()))
}

/// Run the lookup child for `creds`.
fn child(home: &Path, service: Service, creds: &Credentials) -> Result<Lookup1, Failure> {
    let (uid, gid) = lookup_ids(home)?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Temporary(format!("unable to find my own program: {e}")))?;
    let name = if service == Service::Imap { "imap" } else { "pop" };
    let mut child = Command::new(exe)
        .args([LOOKUP_ARG, name])
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Failure::Temporary(format!("unable to start the lookup: {e}")))?;
    let request = Zeroizing::new([&creds.login[..], b"\0", &creds.password[..], b"\0"].concat());
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let _ = stdin.write_all(&request);
    drop(stdin);
    let mut answer = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("stdout was piped")
        .take(ANSWER_MAX as u64 + 1)
        .read_to_end(&mut answer);
    let status = child.wait();
    let ok = read.is_ok() && matches!(&status, Ok(s) if s.success()) && answer.len() <= ANSWER_MAX;
    if !ok {
        return Err(Failure::Temporary(format!("the lookup failed ({status:?})")));
    }
    decode(&answer).ok_or_else(|| Failure::Temporary("the lookup's answer is malformed".into()))?
}

/// The child's answer.
pub fn encode(result: &Result<Lookup1, Failure>) -> Vec<u8> {
    let mut out = Vec::new();
    let field = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend(b.iter().map(|&c| if c == 0 { b'?' } else { c }));
        out.push(0);
    };
    match result {
        Ok(Lookup1::Found(login)) => {
            out.push(b'K');
            field(&mut out, login.name.as_bytes());
            field(
                &mut out,
                match login.backend {
                    Backend::Directory => b"d",
                    Backend::File => b"f",
                    Backend::System => b"s",
                },
            );
            match &login.mailbox {
                None => field(&mut out, b"-"),
                Some(m) => {
                    field(&mut out, b"+");
                    field(&mut out, m.uid.to_string().as_bytes());
                    field(&mut out, m.gid.to_string().as_bytes());
                    field(&mut out, m.home.as_os_str().as_encoded_bytes());
                    match &m.maildir {
                        Maildir::Store(s) => field(&mut out, format!("S{s}").as_bytes()),
                        Maildir::DotQmail => field(&mut out, b"D"),
                        Maildir::Unset => field(&mut out, b"U"),
                    }
                    field(&mut out, m.quota.as_deref().unwrap_or("").as_bytes());
                    let size = m.size_max.map(|n| n.to_string()).unwrap_or_default();
                    field(&mut out, size.as_bytes());
                }
            }
        }
        Ok(Lookup1::NotFound { system }) => {
            out.extend_from_slice(if *system { b"Ns" } else { b"N" })
        }
        Err(f) => {
            let (kind, text) = match f {
                Failure::NoSuchUser => (b'n', ""),
                Failure::BadPassword => (b'p', ""),
                Failure::Disabled(t) => (b'd', t.as_str()),
                Failure::BadRecord(t) => (b'r', t.as_str()),
                Failure::Unreachable(t) => (b'u', t.as_str()),
                Failure::Config(t) => (b'c', t.as_str()),
                Failure::Temporary(t) => (b't', t.as_str()),
            };
            out.extend_from_slice(&[b'F', kind]);
            field(&mut out, text.as_bytes());
        }
    }
    out
}

/// [`encode`]'s bytes read back; `None` unless they are exactly one answer.
pub fn decode(bytes: &[u8]) -> Option<Result<Lookup1, Failure>> {
    match bytes {
        b"N" => return Some(Ok(Lookup1::NotFound { system: false })),
        b"Ns" => return Some(Ok(Lookup1::NotFound { system: true })),
        _ => {}
    }
    let (&first, rest) = bytes.split_first()?;
    let mut fields = rest.strip_suffix(b"\0")?.split(|&b| b == 0);
    let mut next = || fields.next().map(|f| String::from_utf8(f.to_vec()));
    let result = match first {
        b'F' => {
            let (&kind, text) = rest.split_first()?;
            let text = String::from_utf8(text.strip_suffix(b"\0")?.to_vec()).ok()?;
            if text.contains('\0') {
                return None;
            }
            Err(match kind {
                b'n' => Failure::NoSuchUser,
                b'p' => Failure::BadPassword,
                b'd' => Failure::Disabled(text),
                b'r' => Failure::BadRecord(text),
                b'u' => Failure::Unreachable(text),
                b'c' => Failure::Config(text),
                b't' => Failure::Temporary(text),
                _ => return None,
            })
        }
        b'K' => {
            let name = next()?.ok()?;
            let backend = match next()?.ok()?.as_str() {
                "d" => Backend::Directory,
                "f" => Backend::File,
                "s" => Backend::System,
                _ => return None,
            };
            let mailbox = match next()?.ok()?.as_str() {
                "-" => None,
                "+" => {
                    let uid: u32 = next()?.ok()?.parse().ok()?;
                    let gid: u32 = next()?.ok()?.parse().ok()?;
                    let home = PathBuf::from(next()?.ok()?);
                    let maildir = match next()?.ok()? {
                        m if m == "D" => Maildir::DotQmail,
                        m if m == "U" => Maildir::Unset,
                        m => Maildir::Store(m.strip_prefix('S')?.to_string()),
                    };
                    let quota = Some(next()?.ok()?).filter(|q| !q.is_empty());
                    let size = next()?.ok()?;
                    let size_max = if size.is_empty() { None } else { Some(size.parse().ok()?) };
                    // never uid 0, and the home absolute, whatever the child says
                    if uid == 0 || !home.is_absolute() {
                        return None;
                    }
                    Some(Mailbox { uid, gid, home, maildir, quota, size_max })
                }
                _ => return None,
            };
            if next().is_some() {
                return None;
            }
            Ok(Lookup1::Found(Login { name, backend, mailbox }))
        }
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let mailbox = Mailbox {
            uid: 1001,
            gid: 100,
            home: "/home/joe".into(),
            maildir: Maildir::Store("/var/mail/joe/Maildir/".into()),
            quota: Some("1000S,10C".into()),
            size_max: Some(5000),
        };
        let rows: Vec<Result<Lookup1, Failure>> = vec![
            Ok(Lookup1::Found(Login {
                name: "joe".into(),
                backend: Backend::Directory,
                mailbox: Some(mailbox.clone()),
            })),
            Ok(Lookup1::Found(Login {
                name: "kim".into(),
                backend: Backend::File,
                mailbox: Some(Mailbox {
                    maildir: Maildir::DotQmail,
                    quota: None,
                    size_max: None,
                    ..mailbox.clone()
                }),
            })),
            Ok(Lookup1::Found(Login {
                name: "x".into(),
                backend: Backend::System,
                mailbox: Some(Mailbox { maildir: Maildir::Unset, ..mailbox }),
            })),
            Ok(Lookup1::Found(Login { name: "s".into(), backend: Backend::File, mailbox: None })),
            Ok(Lookup1::NotFound { system: true }),
            Ok(Lookup1::NotFound { system: false }),
            Err(Failure::NoSuchUser),
            Err(Failure::BadPassword),
            Err(Failure::Disabled("accountStatus disabled".into())),
            Err(Failure::BadRecord("uid 0".into())),
            Err(Failure::Unreachable("timed out".into())),
            Err(Failure::Config("ldapserver".into())),
            Err(Failure::Temporary("two entries".into())),
        ];
        for r in rows {
            assert_eq!(decode(&encode(&r)), Some(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn hostile_answers_are_refused() {
        let good = encode(&Ok(Lookup1::Found(Login {
            name: "joe".into(),
            backend: Backend::Directory,
            mailbox: Some(Mailbox {
                uid: 1001,
                gid: 100,
                home: "/home/joe".into(),
                maildir: Maildir::Unset,
                quota: None,
                size_max: None,
            }),
        })));
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let extra = [&good[..], b"more\0"].concat();
        assert_eq!(decode(&extra), None);
        let root = String::from_utf8_lossy(&good).replace("\x001001\x00", "\x000\x00");
        assert_eq!(decode(root.as_bytes()), None, "uid 0");
        let relative = String::from_utf8_lossy(&good).replace("/home/joe", "home/joe");
        assert_eq!(decode(relative.as_bytes()), None, "a relative home");
        for junk in [&b""[..], b"X", b"Fz\0", b"F", b"Np", b"K\xff\0", b"Fd\xff\0"] {
            assert_eq!(decode(junk), None, "{junk:?}");
        }
        // NULs inside a text never split a field
        let f = encode(&Err(Failure::Temporary("a\0b".into())));
        assert_eq!(decode(&f), Some(Err(Failure::Temporary("a?b".into()))));
    }
}
