//! qmail-inject: complete a message's header and queue it.
//!
//! `qmail-inject [-nNaAhH] [-fsender] [-Fname] [recip ...]` reads a message on stdin, completes
//! its header (Date:, Message-ID:, From:, addresses qualified with defaulthost, defaultdomain
//! and plusdomain; Bcc:, Return-Path: and Content-Length: removed), picks the recipients
//! (`-a` arguments, `-h` header, `-H` both, `-A` (default) arguments if any, else header) and
//! the sender (`-f`, else the incoming Return-Path:, else the environment), and hands the
//! message to qmail-queue. The header is held (bounded: 64 KiB a field, 1 MiB in all); the
//! body is streamed. `-n` prints the message instead. See doc/qmail-inject.8.
//!
//! Exit codes: 0 queued (or printed); 100 usage, unparsable header or address, no recipients,
//! or a permanent refusal by qmail-queue; 111 temporary failure (unreadable control file, read
//! error, qmail-queue failing temporarily). Errors are printed as `qmail-inject: fatal: ...`.

#![forbid(unsafe_code)]

mod header;
mod token;

use header::{Completer, End, Flags, Generated};
use qmail::address::Address;
use qmail::control::Control;
use qmail::date822::{unix_now, Utc};
use qmail::envelope::Envelope;
use qmail::exit::Verdict;
use qmail::getopt::{Getopt, Opt};
use qmail::queue::Injection;
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;
use token::Qualify;

const USAGE: &str = "usage: qmail-inject [-nNaAhH] [-fsender] [-Fname] [recip ...]";

fn main() -> ExitCode {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(OsString::into_vec).collect();
    match Options::parse(&args).and_then(|opts| run(&opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(v) => {
            eprintln!("qmail-inject: fatal: {}", v.text());
            ExitCode::from(v.tool_code())
        }
    }
}

/// Where the recipients come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recipients {
    /// `-A`: the arguments if there are any, else the header
    Default,
    /// `-a`
    Args,
    /// `-h`
    Header,
    /// `-H`
    Both,
}

#[derive(Debug)]
struct Options {
    recipients: Recipients,
    queue: bool,
    sender: Option<Vec<u8>>,
    full_name: Option<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Options {
    /// getopt-style: bundled flags, `-fS` or `-f S`, `--` or the first non-option ends them.
    fn parse(args: &[Vec<u8>]) -> Result<Self, Verdict> {
        let mut o = Options {
            recipients: Recipients::Default,
            queue: true,
            sender: None,
            full_name: None,
            args: Vec::new(),
        };
        let mut opts = Getopt::new(args, "aAhHnNf:F:");
        for opt in opts.by_ref() {
            match opt {
                Opt::Flag(b'a') => o.recipients = Recipients::Args,
                Opt::Flag(b'A') => o.recipients = Recipients::Default,
                Opt::Flag(b'h') => o.recipients = Recipients::Header,
                Opt::Flag(b'H') => o.recipients = Recipients::Both,
                Opt::Flag(b'n') => o.queue = false,
                Opt::Flag(b'N') => o.queue = true,
                Opt::Value(b'f', v) => o.sender = Some(v),
                Opt::Value(_, v) => o.full_name = Some(v),
                Opt::Missing(c) => {
                    return Err(Verdict::perm(format!(
                        "option -{} needs a value; {USAGE}",
                        c as char
                    )))
                }
                Opt::Flag(c) | Opt::Unknown(c) => {
                    return Err(Verdict::perm(format!(
                        "unknown option -{}; {USAGE}",
                        String::from_utf8_lossy(&[c])
                    )))
                }
            }
        }
        let i = args.len() - opts.rest().len();
        o.args = args[i..].to_vec();
        Ok(o)
    }
}

/// An environment variable as bytes; set-but-empty counts as set, as upstream.
fn env(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name).map(OsString::into_vec)
}

fn first_env(names: &[&str]) -> Option<Vec<u8>> {
    names.iter().find_map(|n| env(n))
}

/// The completion settings: control files, overridden by the environment.
struct Settings {
    qualify: Qualify,
    idhost: String,
}

impl Settings {
    fn read(control: &Control) -> Result<Self, Verdict> {
        let value = |file: &str, var: &str| -> Result<Vec<u8>, Verdict> {
            if let Some(v) = env(var) {
                return Ok(v);
            }
            control
                .line_or_me(file, file)
                .map(String::into_bytes)
                .map_err(|e| Verdict::temp(e.to_string()))
        };
        let host = value("defaulthost", "QMAILDEFAULTHOST")?;
        let domain = value("defaultdomain", "QMAILDEFAULTDOMAIN")?;
        let plus = value("plusdomain", "QMAILPLUSDOMAIN")?;
        let idhost = value("idhost", "QMAILIDHOST")?;
        let qualify = Qualify::new(&host, &domain, &plus).map_err(|_| {
            Verdict::perm("unable to parse defaulthost, defaultdomain or plusdomain")
        })?;
        Ok(Settings { qualify, idhost: String::from_utf8_lossy(&idhost).into_owned() })
    }
}

/// Who the message is from, by the environment.
struct User {
    /// QMAILUSER, MAILUSER, USER, LOGNAME, else `anonymous`
    user: Vec<u8>,
    /// QMAILHOST, MAILHOST
    host: Option<Vec<u8>>,
    /// QMAILSUSER, else `user`
    return_user: Vec<u8>,
    /// QMAILSHOST, else `host`
    return_host: Option<Vec<u8>>,
    /// `-F`, else QMAILNAME, MAILNAME, NAME
    full_name: Option<Vec<u8>>,
}

impl User {
    fn from_env(opts: &Options) -> Self {
        let user = first_env(&["QMAILUSER", "MAILUSER", "USER", "LOGNAME"])
            .unwrap_or_else(|| b"anonymous".to_vec());
        let host = first_env(&["QMAILHOST", "MAILHOST"]);
        User {
            return_user: env("QMAILSUSER").unwrap_or_else(|| user.clone()),
            return_host: env("QMAILSHOST").or_else(|| host.clone()),
            full_name: opts
                .full_name
                .clone()
                .or_else(|| first_env(&["QMAILNAME", "MAILNAME", "NAME"])),
            user,
            host,
        }
    }
}

fn bad_address(arg: &[u8]) -> Verdict {
    Verdict::perm(format!(
        "unable to parse address: {}",
        String::from_utf8_lossy(&arg[..arg.len().min(200)])
    ))
}

/// A command-line address, qualified.
fn arg_address(arg: &[u8], qualify: &Qualify) -> Result<Vec<u8>, Verdict> {
    let mut toks = token::arg_address(arg).map_err(|_| bad_address(arg))?;
    qualify.rewrite(&mut toks);
    Ok(token::unquote(&toks))
}

fn run(opts: &Options) -> Result<(), Verdict> {
    let flags = Flags::parse(&env("QMAILINJECT").unwrap_or_default());
    let home = qmail::auto::home();
    let settings = Settings::read(&Control::new(&home))?;
    let qualify = &settings.qualify;
    let user = User::from_env(opts);
    let start = unix_now();
    let pid = std::process::id();

    let sender = match &opts.sender {
        // `<addr>` and `<>` as well as `addr`
        Some(s) => Some(match s.strip_prefix(b"<").and_then(|s| s.strip_suffix(b">")) {
            Some(inner) => arg_address(inner, qualify)?,
            None => arg_address(s, qualify)?,
        }),
        None => None,
    };
    let strategy = match opts.recipients {
        Recipients::Default if opts.args.is_empty() => Recipients::Header,
        Recipients::Default => Recipients::Args,
        r => r,
    };
    let mut recipients = Vec::new();
    if strategy != Recipients::Header {
        for a in &opts.args {
            recipients.push(arg_address(a, qualify)?);
        }
    }

    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut completer = Completer::new(qualify, flags, sender);
    let end = header::read(&mut input, |f| completer.field(f))?;

    let from = || {
        header::default_from(
            &user.user,
            user.host.as_deref(),
            user.full_name.as_deref(),
            flags.name_comment,
            qualify,
        )
    };
    let now = Utc::from_unix(start);
    let gen = Generated {
        date: now.rfc822(),
        message_id: format!("<{}.{pid}.qmail@{}>", now.stamp(), settings.idhost),
        from: &from,
    };
    let head = completer.finish(&gen)?;
    let sender = match completer.sender.take() {
        Some(s) => s,
        None => default_sender(&user, flags, start, pid, qualify)?,
    };
    if strategy != Recipients::Args {
        if completer.resent() {
            recipients.append(&mut completer.resent_recipients);
        } else {
            recipients.append(&mut completer.recipients);
        }
    }
    // `<>` in a header names nobody
    recipients.retain(|r| !r.is_empty());

    if !opts.queue {
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let write_err = |e: io::Error| Verdict::temp(format!("unable to write output: {e}"));
        out.write_all(b"Return-Path: <")
            .and_then(|()| out.write_all(&token::quote_address(&sender)))
            .and_then(|()| out.write_all(b">\n"))
            .and_then(|()| out.write_all(&head))
            .map_err(write_err)?;
        copy_body(&mut input, end, &mut out)?;
        return out.flush().map_err(write_err);
    }

    let envelope = envelope(sender, recipients)?;
    let mut inj = Injection::start(&home)?;
    let mut msg = inj.message();
    // the message writer remembers write errors; finish reports them
    let _ = msg.write_all(&head);
    copy_body(&mut input, end, &mut msg)?;
    inj.finish(&envelope)
}

/// The sender when neither `-f` nor Return-Path: gave one: QMAILSUSER@QMAILSHOST and their
/// fallbacks, with the VERP suffixes of the `m` and `r` flags.
fn default_sender(
    user: &User,
    flags: Flags,
    start: i64,
    pid: u32,
    qualify: &Qualify,
) -> Result<Vec<u8>, Verdict> {
    let mut local = user.return_user.clone();
    if flags.verp_message {
        local.extend_from_slice(format!("-{start}.{pid}").as_bytes());
    }
    if flags.verp_recipient {
        local.push(b'-');
    }
    let mut toks = vec![token::Token::Quote(local)];
    if let Some(host) = &user.return_host {
        toks.push(token::Token::Special(b'@'));
        toks.extend(token::tokenize(host).map_err(|_| bad_address(host))?);
    }
    qualify.rewrite(&mut toks);
    let mut sender = token::unquote(&toks);
    if flags.verp_recipient {
        sender.extend_from_slice(b"-@[]");
    }
    Ok(sender)
}

fn envelope(sender: Vec<u8>, recipients: Vec<Vec<u8>>) -> Result<Envelope, Verdict> {
    if recipients.is_empty() {
        return Err(Verdict::perm("no recipients"));
    }
    let addr = |a: Vec<u8>| {
        Address::new(a.clone()).map_err(|e| {
            Verdict::perm(format!(
                "invalid address ({e:?}): {}",
                String::from_utf8_lossy(&a[..a.len().min(200)]).escape_debug()
            ))
        })
    };
    let sender = addr(sender)?;
    let recipients = recipients.into_iter().map(addr).collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope::new(sender, recipients))
}

/// Stream the body: what the header reader saw of it, then the rest of the input. A last
/// line without LF gets one, as upstream.
fn copy_body<R: BufRead, W: Write>(input: &mut R, end: End, out: &mut W) -> Result<(), Verdict> {
    let write_err = |e: io::Error| Verdict::temp(format!("unable to write output: {e}"));
    let mut last = match end {
        End::Eof => return Ok(()),
        End::Blank => {
            out.write_all(b"\n").map_err(write_err)?;
            b'\n'
        }
        End::Body { line, complete } => {
            out.write_all(b"\n").and_then(|()| out.write_all(&line)).map_err(write_err)?;
            if complete {
                b'\n'
            } else {
                line.last().copied().unwrap_or(b'\n')
            }
        }
    };
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Verdict::temp(format!("read error: {e}"))),
        };
        let Some(&b) = buf.last() else { break };
        out.write_all(buf).map_err(write_err)?;
        last = b;
        let n = buf.len();
        input.consume(n);
    }
    if last != b'\n' {
        out.write_all(b"\n").map_err(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, Verdict> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        Options::parse(&args)
    }

    #[test]
    fn options() {
        let o = parse(&["-n", "-fjoe@x", "a@b"]).unwrap();
        assert!(!o.queue);
        assert_eq!(o.sender.as_deref(), Some(&b"joe@x"[..]));
        assert_eq!(o.args, vec![b"a@b".to_vec()]);
        let o = parse(&["-ahH", "-f", "s", "-F", "Joe", "--", "-x"]).unwrap();
        assert_eq!(o.recipients, Recipients::Both);
        assert_eq!(o.sender.as_deref(), Some(&b"s"[..]));
        assert_eq!(o.full_name.as_deref(), Some(&b"Joe"[..]));
        assert_eq!(o.args, vec![b"-x".to_vec()]);
        let o = parse(&["a", "-n"]).unwrap();
        assert!(o.queue);
        assert_eq!(o.args.len(), 2);
        let o = parse(&["-f", ""]).unwrap();
        assert_eq!(o.sender.as_deref(), Some(&b""[..]));
        for bad in [&["-x"][..], &["-f"], &["-nF"], &["-a-"]] {
            let err = parse(bad).unwrap_err();
            assert!(err.is_perm(), "{bad:?}");
            assert!(err.text().contains("usage"), "{bad:?}");
        }
    }

    #[test]
    fn body_copy() {
        let rows: &[(End, &str, &str)] = &[
            (End::Eof, "", ""),
            (End::Blank, "", "\n"),
            (End::Blank, "a\nb", "\na\nb\n"),
            (End::Blank, "a\n", "\na\n"),
            (End::Body { line: b"first\n".to_vec(), complete: true }, "x", "\nfirst\nx\n"),
            (End::Body { line: b"long".to_vec(), complete: false }, "er\n", "\nlonger\n"),
        ];
        for (end, rest, want) in rows {
            let end = match end {
                End::Eof => End::Eof,
                End::Blank => End::Blank,
                End::Body { line, complete } => {
                    End::Body { line: line.clone(), complete: *complete }
                }
            };
            let mut out = Vec::new();
            copy_body(&mut rest.as_bytes(), end, &mut out).unwrap();
            assert_eq!(String::from_utf8_lossy(&out), *want, "{rest:?}");
        }
    }
}
