//! sendmail: the sendmail interface, translated to qmail-inject.
//!
//! `sendmail [-t] [-fsender] [-Fname] [-bm|-bp|-bs] [-i -oi -v -m -e* -o* -x -B* -p* -E -J]
//! [--] [recip ...]` changes to the installation root (a relative QMAILHOME is passed on made
//! absolute) and execs `bin/qmail-inject -a` (or `-H` with `-t`: header recipients and
//! arguments) `[-f sender] -- recip ...`; `-F name` is passed as MAILNAME, and `-f S` also as
//! QMAILUSER/QMAILHOST so that a generated From: names S. `-bp`, or running as `mailq`, execs
//! `bin/qmail-qread`; `-bs` execs `bin/qmail-smtpd` on stdin/stdout, setting RELAYCLIENT,
//! DATABYTES, PROTO and the TCP* variables first when PROTO is unset. Envelope data goes to
//! the programs as arguments only, never through a shell. See doc/sendmail.8.
//!
//! Exit codes: 100 usage (an unknown option or `-b` mode, a missing value) or run as
//! `newaliases`; 111 when the root or a program cannot be reached; otherwise the exit code of
//! the program it became (qmail-inject: 0 queued, 100 permanent, 111 temporary).

#![forbid(unsafe_code)]

use qmail::getopt::{Getopt, Opt};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: sendmail [ -t ] [ -fsender ] [ -Fname ] [ -bp ] [ -bs ] [ arg ... ]";

fn main() -> ExitCode {
    let argv: Vec<Vec<u8>> = std::env::args_os().map(OsString::into_vec).collect();
    let name = argv
        .first()
        .map(|a| a.rsplit(|&b| b == b'/').next().unwrap_or(a).to_vec())
        .unwrap_or_default();
    let fail = |code: u8, text: &str| {
        eprintln!("sendmail: {text}");
        ExitCode::from(code)
    };
    if name == b"newaliases" {
        return fail(
            100,
            "fatal: there is no aliases file: aliases are .qmail files of the alias user",
        );
    }
    let home = qmail::auto::home();
    // the programs run inside the root, where a relative QMAILHOME names another directory
    let home = std::path::absolute(&home).unwrap_or(home);
    if let Err(e) = std::env::set_current_dir(&home) {
        return fail(111, &format!("fatal: unable to switch to {}: {e}", home.display()));
    }
    if std::env::var_os("QMAILHOME").is_some_and(|h| !h.is_empty()) {
        std::env::set_var("QMAILHOME", &home);
    }
    let action =
        if name == b"mailq" { Ok(Action::Mailq) } else { parse(argv.get(1..).unwrap_or_default()) };
    let err = match action {
        Err(()) => return fail(100, USAGE),
        Ok(Action::Mailq) => Command::new("bin/qmail-qread").exec(),
        Ok(Action::Smtpd) => smtpd().exec(),
        Ok(Action::Inject(inject)) => inject.command().exec(),
    };
    // exec only returns on failure
    fail(111, &format!("fatal: unable to run the program: {err}"))
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Mailq,
    Smtpd,
    Inject(Inject),
}

/// A qmail-inject run.
#[derive(Debug, PartialEq, Eq)]
struct Inject {
    /// `-t`
    header: bool,
    sender: Option<Vec<u8>>,
    full_name: Option<Vec<u8>>,
    recipients: Vec<Vec<u8>>,
}

/// getopt with upstream's option string `vimte:f:p:o:B:F:EJxb:`: `-bp` and `-bs` act at once,
/// as upstream; `-E` and `-J` swallow the rest of their argument.
fn parse(args: &[Vec<u8>]) -> Result<Action, ()> {
    let mut inject =
        Inject { header: false, sender: None, full_name: None, recipients: Vec::new() };
    let mut opts = Getopt::new(args, "vimtxEJe:f:p:o:B:F:b:");
    while let Some(opt) = opts.next() {
        match opt {
            Opt::Flag(b't') => inject.header = true,
            Opt::Flag(b'E' | b'J') => opts.skip_rest(),
            Opt::Flag(_) => {}
            Opt::Value(b'f', value) => inject.sender = Some(value),
            Opt::Value(b'F', value) => inject.full_name = Some(value),
            Opt::Value(b'b', value) => match value.first() {
                Some(b'm') => {}
                Some(b'p') => return Ok(Action::Mailq),
                Some(b's') => return Ok(Action::Smtpd),
                _ => return Err(()),
            },
            // -e (one error mode), -o (options), -p (protocol), -B (body type)
            Opt::Value(..) => {}
            Opt::Missing(_) | Opt::Unknown(_) => return Err(()),
        }
    }
    let i = args.len() - opts.rest().len();
    inject.recipients = args[i..].to_vec();
    Ok(Action::Inject(inject))
}

impl Inject {
    /// `bin/qmail-inject -a|-H [-f sender] -- recip ...`, with MAILNAME for `-F` and
    /// QMAILUSER/QMAILHOST for `-f`.
    fn command(&self) -> Command {
        let mut cmd = Command::new("bin/qmail-inject");
        cmd.arg(if self.header { "-H" } else { "-a" });
        if let Some(sender) = &self.sender {
            cmd.arg("-f").arg(OsStr::from_bytes(sender));
            let bare =
                sender.strip_prefix(b"<").and_then(|s| s.strip_suffix(b">")).unwrap_or(sender);
            match qmail::address::split(bare) {
                (user, Some(host)) => {
                    cmd.env("QMAILUSER", OsStr::from_bytes(user));
                    cmd.env("QMAILHOST", OsStr::from_bytes(host));
                }
                (user, None) if !user.is_empty() => {
                    cmd.env("QMAILUSER", OsStr::from_bytes(user));
                }
                (_, None) => {}
            }
        }
        if let Some(name) = &self.full_name {
            cmd.env("MAILNAME", OsStr::from_bytes(name));
        }
        cmd.arg("--");
        cmd.args(self.recipients.iter().map(|r| OsStr::from_bytes(r)));
        cmd
    }
}

/// `bin/qmail-smtpd` for `-bs`, with a local-client environment unless PROTO is set.
fn smtpd() -> Command {
    let mut cmd = Command::new("bin/qmail-smtpd");
    if std::env::var_os("PROTO").is_none() {
        cmd.envs([
            ("RELAYCLIENT", ""),
            ("DATABYTES", "0"),
            ("PROTO", "TCP"),
            ("TCPLOCALIP", "127.0.0.1"),
            ("TCPLOCALHOST", "localhost"),
            ("TCPREMOTEIP", "127.0.0.1"),
            ("TCPREMOTEHOST", "localhost"),
            ("TCPREMOTEINFO", "sendmail-bs"),
        ]);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Action, ()> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        parse(&args)
    }

    fn inject(header: bool, sender: Option<&str>, name: Option<&str>, r: &[&str]) -> Action {
        Action::Inject(Inject {
            header,
            sender: sender.map(|s| s.as_bytes().to_vec()),
            full_name: name.map(|s| s.as_bytes().to_vec()),
            recipients: r.iter().map(|s| s.as_bytes().to_vec()).collect(),
        })
    }

    #[test]
    fn options() {
        let rows: &[(&[&str], Result<Action, ()>)] = &[
            (&["a@b"], Ok(inject(false, None, None, &["a@b"]))),
            (&["-t"], Ok(inject(true, None, None, &[]))),
            (
                &["-oi", "-oem", "-i", "-f", "s@x", "-FJoe", "a"],
                Ok(inject(false, Some("s@x"), Some("Joe"), &["a"])),
            ),
            (&["-fs@x", "-bm", "--", "-a"], Ok(inject(false, Some("s@x"), None, &["-a"]))),
            (
                &["-oQ/var/spool", "-odb", "-B8BITMIME", "-p", "smtp", "-vx"],
                Ok(inject(false, None, None, &[])),
            ),
            (&["-Exyz", "-Jt", "a"], Ok(inject(false, None, None, &["a"]))),
            (&["-it", "a", "-t"], Ok(inject(true, None, None, &["a", "-t"]))),
            (&["-bp", "-x?"], Ok(Action::Mailq)),
            (&["-bs"], Ok(Action::Smtpd)),
            (&["-b", "s"], Ok(Action::Smtpd)),
            (&["-bz"], Err(())),
            (&["-b"], Err(())),
            (&["-q"], Err(())),
            (&["-f"], Err(())),
            (&["-tz"], Err(())),
        ];
        for (args, want) in rows {
            assert_eq!(&p(args), want, "{args:?}");
        }
    }

    #[test]
    fn command_line() {
        let Ok(Action::Inject(i)) = p(&["-t", "-f", "<joe@x.y>", "-F", "Joe", "a; rm -rf /"])
        else {
            panic!("parse");
        };
        let cmd = i.command();
        let args: Vec<&OsStr> = cmd.get_args().collect();
        assert_eq!(args, ["-H", "-f", "<joe@x.y>", "--", "a; rm -rf /"]);
        let envs: Vec<(&OsStr, Option<&OsStr>)> = cmd.get_envs().collect();
        assert!(envs.contains(&(OsStr::new("QMAILUSER"), Some(OsStr::new("joe")))));
        assert!(envs.contains(&(OsStr::new("QMAILHOST"), Some(OsStr::new("x.y")))));
        assert!(envs.contains(&(OsStr::new("MAILNAME"), Some(OsStr::new("Joe")))));
    }
}
