//! qmail-local: deliver one message to one local address, as its `.qmail` file says.
//!
//! `qmail-local [-nN] [--] user homedir local dash ext domain sender aliasempty`, run by
//! qmail-lspawn as the recipient user with the message on fd 0 (a seekable file, re-read from
//! offset 0 for every instruction). Exits 0 when every instruction succeeded (stdout
//! `did F+W+P`, and `qp 0` when forwards were queued), 100 on a permanent failure, 111 on a
//! temporary one; the reason is printed on stdout and becomes the bounce or log text. `-n`
//! prints the delivery plan instead of delivering. See doc/qmail-local.8 and doc/dot-qmail.5.
//!
//! `qmail-local --worker` is qmail-lspawn's long-lived delivery worker for one uid ([`worker`]):
//! the same [`plan`] and [`deliver`] per request, minus programs, which it declines.
//!
//! A missing home directory is made by `control/dirmaker` when configured (qmail::dirmaker).
//!
//! Security: envelope values (sender, recipient, extension) reach programs only as
//! environment variables, never inside the command line; the `.qmail` text is the user's own
//! and is refused when others may write it (or the home directory).

#![forbid(unsafe_code)]

mod args;
mod delivery;
mod ldap;
mod mbox;
mod program;
mod worker;

use args::{Args, USAGE};
use delivery::Delivery;
use qmail::address::Address;
use qmail::dotqmail::{self, Instruction};
use qmail::exit::Verdict;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;

/// Permission bits that must not be set on the home directory or a `.qmail` file
/// (upstream's `conf-patrn`): writable by others.
const PATRN: u32 = 0o002;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if argv.len() == 1 && argv[0] == "--worker" {
        return worker::serve();
    }
    let Some(args) = Args::parse(argv) else {
        return finish(Err(Verdict::perm(USAGE)));
    };
    finish(run(&args))
}

/// Print the result and turn it into the exit code.
fn finish(result: Result<String, Verdict>) -> ExitCode {
    let (code, text) = render(result);
    let mut out = io::stdout().lock();
    let _ = out.write_all(&text).and_then(|()| out.flush());
    ExitCode::from(code)
}

/// The exit code and the text printed for a result: the report on success, the reason and a
/// newline on failure (a failing program has already said why; it leaves the text empty).
fn render(result: Result<String, Verdict>) -> (u8, Vec<u8>) {
    match result {
        Ok(text) => (0, text.into_bytes()),
        Err(v) if v.text().is_empty() => (v.tool_code(), Vec::new()),
        Err(v) => (v.tool_code(), format!("{}\n", v.text()).into_bytes()),
    }
}

/// A delivery as a process of its own: the plan, then (unless `-n`) the message on fd 0.
fn run(args: &Args) -> Result<String, Verdict> {
    let plan = plan(args)?;
    if args.plan_only {
        return Ok(plan.listing(&args.sender));
    }
    deliver(args, plan, open_message()?, None)
}

/// What a delivery will do, found before anything is delivered.
struct Plan {
    instructions: Vec<Instruction>,
    /// `DEFAULT`: the part of the address a `-default` file matched.
    default: Option<Vec<u8>>,
    /// The envelope sender of forwarded copies.
    new_sender: Vec<u8>,
    directory: ldap::Options,
    /// Warnings (sticky home in plan mode, the directory's unknown words): the report's start.
    text: String,
}

impl Plan {
    /// Whether the delivery needs a process of its own (a delivery worker declines it): it
    /// runs a program.
    fn needs_process(&self) -> bool {
        self.instructions.iter().any(|i| matches!(i, Instruction::Program(_)))
    }

    /// The `-n` listing.
    fn listing(&self, sender: &[u8]) -> String {
        let mut plan = self.text.clone();
        if self.directory.replies_to(sender) {
            plan.push_str("reply\n");
        }
        for i in &self.instructions {
            let (what, arg) = match i {
                Instruction::Program(p) => ("program", p.as_slice()),
                Instruction::Maildir(p) => ("maildir", p.as_slice()),
                Instruction::Mbox(p) => ("mbox", p.as_slice()),
                Instruction::Forward(a) => ("forward", a.as_bytes()),
            };
            plan.push_str(&format!("{what} {}\n", String::from_utf8_lossy(arg)));
        }
        plan
    }
}

/// Make the home if configured, enter it, check it, find the instructions (the `.qmail`
/// file, the directory's, or the default delivery).
fn plan(args: &Args) -> Result<Plan, Verdict> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let home = Path::new(OsStr::from_bytes(&args.home));
    if !args.plan_only {
        qmail::dirmaker::make_home(home, &args.aliasempty)?;
    }
    std::env::set_current_dir(home).map_err(|e| {
        Verdict::temp(format!("Unable to switch to {}: {e} (#4.3.0)", home.display()))
    })?;
    let mut text = String::new();
    check_home(args.plan_only, &mut text)?;
    let directory = ldap::Options::from_env()?;

    let dot = find_dotqmail(&args.dash, &args.ext, &directory)?;
    if dot.is_none() && !args.dash.is_empty() && !directory.uses_ldap() {
        return Err(Verdict::perm("Sorry, no mailbox here by that name. (#5.1.1)"));
    }
    let parse = |text: &[u8], forward_only| {
        dotqmail::parse(text, forward_only).map_err(|e| Verdict::temp(format!("Uh-oh: {e}")))
    };
    let (instructions, default, new_sender) = if directory.uses_ldap() {
        // the directory's instructions, then (in `both` mode) a non-empty .qmail file;
        // forwarded copies keep the envelope sender
        let (extra, default) = match dot {
            Some(d) if !d.text.is_empty() => (parse(&d.text, d.forward_only)?, d.default),
            Some(d) => (Vec::new(), d.default),
            None => (Vec::new(), None),
        };
        let list = directory.instructions(parse(&args.aliasempty, false)?, extra)?;
        (list, default, args.sender.clone())
    } else {
        let (text, forward_only, default) = match dot {
            Some(d) if !d.text.is_empty() => (d.text, d.forward_only, d.default),
            Some(d) => (args.aliasempty.clone(), false, d.default),
            None => (args.aliasempty.clone(), false, None),
        };
        (parse(&text, forward_only)?, default, new_sender(args)?)
    };
    for w in &directory.warnings {
        text.push_str(w);
        text.push('\n');
    }
    Ok(Plan { instructions, default, new_sender, directory, text })
}

/// Carry out `plan` for `message`. A delivery worker passes `collect`, which takes what
/// helper programs print and the Maildir files to commit with its batch; without it they
/// print on our stdout and each Maildir file is on disk before the next instruction.
fn deliver(
    args: &Args,
    plan: Plan,
    message: File,
    collect: Option<&delivery::Collect>,
) -> Result<String, Verdict> {
    let Plan { instructions, default, new_sender, directory, text } = plan;
    let d = Delivery::new(args, message, &new_sender, default, directory.quota.clone(), collect);
    if d.is_looping()? {
        return Err(Verdict::perm(
            "This message is looping: it already has my Delivered-To line. (#5.4.6)",
        ));
    }
    if directory.replies_to(&args.sender) {
        d.reply(&args.aliasempty)?;
    }
    let (mut files, mut programs) = (0u32, 0u32);
    let mut forwards: Vec<Address> = Vec::new();
    for i in instructions {
        match i {
            Instruction::Maildir(p) => {
                files += 1;
                d.maildir(&p)?;
            }
            Instruction::Mbox(p) => {
                files += 1;
                d.mbox(&p)?;
            }
            Instruction::Program(cmd) => {
                programs += 1;
                if d.program(&cmd)? == program::Outcome::Stop {
                    break;
                }
            }
            Instruction::Forward(a) => forwards.push(a),
        }
    }
    let mut report = text;
    report.push_str(&format!("did {files}+{}+{programs}\n", forwards.len()));
    if !forwards.is_empty() {
        d.forward(&new_sender, forwards)?;
        // upstream prints qmail-queue's pid; Injection does not expose it
        report.push_str("qp 0\n");
    }
    Ok(report)
}

/// The home directory must not be writable by others; a sticky home means the user is
/// editing the `.qmail` files (upstream's convention): try again later.
fn check_home(plan_only: bool, plan: &mut String) -> Result<(), Verdict> {
    let st = std::fs::metadata(".")
        .map_err(|e| Verdict::temp(format!("Unable to stat home directory: {e} (#4.3.0)")))?;
    if st.mode() & PATRN != 0 {
        return Err(Verdict::temp("Uh-oh: home directory is writable by others. (#4.7.0)"));
    }
    if st.mode() & 0o1000 != 0 {
        if !plan_only {
            return Err(Verdict::temp(
                "Home directory is sticky: user is editing his .qmail file. (#4.2.1)",
            ));
        }
        plan.push_str("warning: home directory is sticky\n");
    }
    Ok(())
}

/// The `.qmail` file found by the lookup sequence.
struct DotQmail {
    text: Vec<u8>,
    forward_only: bool,
    default: Option<Vec<u8>>,
}

/// Try the candidates of doc/qmail-local.8 in order. Missing (or not a regular file) goes on to the
/// next; a file that exists but cannot be read is a temporary failure.
fn find_dotqmail(
    dash: &[u8],
    ext: &[u8],
    directory: &ldap::Options,
) -> Result<Option<DotQmail>, Verdict> {
    if !directory.uses_dotqmail() {
        return Ok(None);
    }
    for c in dotqmail::candidates(dash, ext) {
        let name = OsStr::from_bytes(&c.name);
        let shown = String::from_utf8_lossy(&c.name);
        let temp = |e: io::Error| Verdict::temp(format!("Unable to read {shown}: {e} (#4.2.1)"));
        // O_NONBLOCK: a FIFO named like a .qmail file must not hang the delivery
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(name)
        {
            Ok(f) => f,
            Err(e) if qmail::file::is_missing(&e) => continue,
            Err(e) => return Err(temp(e)),
        };
        let st = file.metadata().map_err(temp)?;
        if !st.is_file() {
            continue;
        }
        if st.mode() & PATRN != 0 {
            return Err(Verdict::temp(format!("Uh-oh: {shown} is writable by others. (#4.7.0)")));
        }
        let mut text = Vec::new();
        file.take(dotqmail::MAX_FILE + 1).read_to_end(&mut text).map_err(temp)?;
        if text.len() as u64 > dotqmail::MAX_FILE {
            return Err(Verdict::temp(format!("Uh-oh: {shown} is too big. (#4.2.1)")));
        }
        return Ok(Some(DotQmail {
            text,
            forward_only: st.mode() & 0o100 != 0,
            default: c.default,
        }));
    }
    Ok(None)
}

fn exists(name: &[u8]) -> Result<bool, Verdict> {
    match std::fs::metadata(OsStr::from_bytes(name)) {
        Ok(_) => Ok(true),
        Err(e) if qmail::file::is_missing(&e) => Ok(false),
        Err(e) => Err(Verdict::temp(format!(
            "Unable to stat {}: {e} (#4.2.1)",
            String::from_utf8_lossy(name)
        ))),
    }
}

/// NEWSENDER (doc/dot-qmail.5, OWNER FILES): the `-owner` and `-owner-default` files may change the
/// sender of forwarded copies.
fn new_sender(args: &Args) -> Result<Vec<u8>, Verdict> {
    if args.sender.is_empty() || args.sender == b"#@[]" {
        return Ok(args.sender.clone());
    }
    let (owner, owner_default) = dotqmail::owner_names(&args.dash, &args.ext);
    let owner = exists(&owner)?;
    let owner_default = owner && exists(&owner_default)?;
    Ok(dotqmail::new_sender(&args.sender, &args.local, &args.domain, owner, owner_default))
}

/// The message on fd 0, which must be seekable.
fn open_message() -> Result<File, Verdict> {
    let fail = |e: io::Error| Verdict::temp(format!("Unable to read message: {e} (#4.3.0)"));
    let fd = io::stdin().as_fd().try_clone_to_owned().map_err(fail)?;
    let mut f = File::from(fd);
    f.seek(SeekFrom::Start(0)).map_err(fail)?;
    Ok(f)
}
