//! qmailctl: the administrator's front door to a qmail-ldap-rs installation.
//!
//! `qmailctl init [--home DIR] [--domain D] [--users]` creates a complete installation root;
//! `qmailctl up [--home DIR]` creates one when missing and starts the mail system on it;
//! `qmailctl ldap-init` and `qmailctl user add|mod|del|show` provision the LDAP directory;
//! `qmailctl passwd` sets a password in users/passwd.
//! Exit 0 on success, 100 on a usage error, 111 on any failure. See doc/qmailctl.8.

#![forbid(unsafe_code)]

mod init;
mod ldapinit;
mod passwd;
mod queue;
mod run;
mod tls;
mod user;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "qmailctl", version, about = "Control a qmail-ldap-rs installation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an installation root: control files, queue tree, users/, alias/, bin/.
    Init(InitArgs),
    /// The same as run.
    Up(RunArgs),
    /// Run the mail system in the foreground (creating the root, with a demo user, when
    /// missing): delivery, the SMTP listeners and POP3 (SMTPS, submission and POP3S too with
    /// a certificate), log on stdout; Ctrl-C stops it.
    Run(RunArgs),
    /// Count the messages in the queue (as qmail-qstat).
    Stat(HomeArg),
    /// List the messages in the queue with their recipients (as qmail-qread).
    Queue(HomeArg),
    /// Retry every queued message now (ALRM to qmail-send).
    Doqueue(HomeArg),
    /// Make qmail-send re-read its control files (HUP).
    Reload(HomeArg),
    /// Rebuild users/cdb and the control cdbs from their text sources.
    Cdb(HomeArg),
    /// Write a slapd configuration and base DIT for a new directory (or print the LDIF for an
    /// existing one) and set the ldap* control files.
    LdapInit(Box<ldapinit::InitArgs>),
    /// Add, change, delete or show a mail user in the directory.
    #[command(subcommand)]
    User(Box<user::UserCmd>),
    /// Set a login's password in users/passwd (logins without a directory).
    Passwd(passwd::PasswdArgs),
    /// Make a self-signed certificate for qmail-smtpd's STARTTLS in control/smtpcert.
    TlsSelfsigned(TlsArgs),
}

#[derive(clap::Args)]
pub struct TlsArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace an existing control/smtpcert.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct HomeArg {
    /// The installation root (default: $QMAILHOME, else the compiled-in /var/qmail).
    #[arg(long)]
    pub home: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Where qmail-tcpsrv listens for SMTP (host:port), or `off`.
    #[arg(long, default_value = "127.0.0.1:2525")]
    pub listen: String,
    /// Where it listens for SMTPS, implicit TLS as on port 465 (host:port), or `off`; default
    /// 127.0.0.1:4465 when control/smtpcert exists.
    #[arg(long, value_name = "ADDR")]
    pub smtps: Option<String>,
    /// Where it listens for submission, as on port 587: STARTTLS, and MAIL only after
    /// authentication (host:port), or `off`; default 127.0.0.1:5587 when control/smtpcert
    /// exists.
    #[arg(long, value_name = "ADDR")]
    pub submission: Option<String>,
    /// Where it listens for POP3 (qmail-popup, auth_pop, qmail-pop3d; STLS with a
    /// certificate) (host:port), or `off`.
    #[arg(long, default_value = "127.0.0.1:1110", value_name = "ADDR")]
    pub pop3: String,
    /// Where it listens for POP3S, implicit TLS as on port 995 (host:port), or `off`;
    /// default 127.0.0.1:1995 when control/smtpcert exists.
    #[arg(long, value_name = "ADDR")]
    pub pop3s: Option<String>,
    /// Where it listens for IMAP (imapd; STARTTLS with a certificate, plaintext LOGIN on a
    /// loopback address) (host:port), or `off`.
    #[arg(long, default_value = "127.0.0.1:1143", value_name = "ADDR")]
    pub imap: String,
    /// Where it listens for IMAPS, implicit TLS as on port 993 (host:port), or `off`;
    /// default 127.0.0.1:1993 when control/smtpcert exists.
    #[arg(long, value_name = "ADDR")]
    pub imaps: Option<String>,
}

#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// The mail domain: added to locals, rcpthosts and defaultdomain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Create the qmail system users and groups and install with their ownerships (root only).
    #[arg(long)]
    pub users: bool,
    /// Root only, without --users: give the whole installation to this user, who then plays
    /// every qmail user (qmail-start runs everything but qmail-lspawn as the owner of queue/).
    /// Run by root without --users or --owner, init gives the root to `nobody`.
    #[arg(long, conflicts_with = "users")]
    pub owner: Option<String>,
}

impl HomeArg {
    pub fn resolve(&self) -> PathBuf {
        let home = self.home.clone().unwrap_or_else(qmail::auto::home);
        std::path::absolute(&home).unwrap_or(home)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { qmail::exit::PERM } else { 0 });
        }
    };
    let result = match cli.command {
        Cmd::Init(args) => init::init(&args).map(|_| ()),
        Cmd::Up(args) | Cmd::Run(args) => up(&args),
        Cmd::Stat(home) => queue::stat(&home.resolve()),
        Cmd::Queue(home) => queue::list(&home.resolve()),
        Cmd::Doqueue(home) => run::signal(&home.resolve(), nix::sys::signal::Signal::SIGALRM),
        Cmd::Reload(home) => run::signal(&home.resolve(), nix::sys::signal::Signal::SIGHUP),
        Cmd::Cdb(home) => queue::cdb(&home.resolve()),
        Cmd::LdapInit(args) => ldapinit::init(&args),
        Cmd::User(cmd) => user::user(&cmd),
        Cmd::Passwd(args) => passwd::passwd(&args),
        Cmd::TlsSelfsigned(args) => tls::selfsigned(&args.home.resolve(), args.days, args.force),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmailctl: fatal: {e:#}");
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

/// Create the root with a demo user when it is missing, then run the mail system.
fn up(args: &RunArgs) -> anyhow::Result<()> {
    let home = args.home.resolve();
    if !home.join("control/me").exists() {
        // as root, init gives the new root to nobody
        let init_args = InitArgs {
            home: HomeArg { home: Some(home.clone()) },
            domain: Some("localhost".to_string()),
            users: false,
            owner: None,
        };
        init::init(&init_args)?;
        init::demo_user(&home)?;
    }
    let (listeners, note) = run::listeners(
        &home,
        Some(args.listen.as_str()).filter(|a| *a != "off"),
        args.smtps.as_deref(),
        args.submission.as_deref(),
    )?;
    let (pop3, pop3_note) = run::pop3_listeners(
        &home,
        Some(args.pop3.as_str()).filter(|a| *a != "off"),
        args.pop3s.as_deref(),
    )?;
    let (imap, imap_note) = run::imap_listeners(
        &home,
        Some(args.imap.as_str()).filter(|a| *a != "off"),
        args.imaps.as_deref(),
    )?;
    let listeners: Vec<run::Listener> = listeners.into_iter().chain(pop3).chain(imap).collect();
    if !listeners.is_empty() {
        let demo = home.join("demo/Maildir/new");
        let demo = if demo.is_dir() {
            format!("; mail for demo@localhost lands in {}", demo.display())
        } else {
            String::new()
        };
        let on: Vec<String> =
            listeners.iter().map(|l| format!("{} on {}", l.port.name(), l.addr)).collect();
        println!(
            "qmailctl: mail system in {}; {}{demo}; Ctrl-C stops it",
            home.display(),
            on.join(", ")
        );
    }
    for note in [note, pop3_note, imap_note].into_iter().flatten() {
        println!("{note}");
    }
    run::run(&home, &listeners)
}
