//! qmailctl run, doqueue, reload: run the mail system in the foreground and signal it.
//!
//! `run` creates the installation root when it is missing (with a demo user), then starts
//! `bin/qmail-start <control/defaultdelivery>` (which becomes qmail-send) and the SMTP
//! listeners, each a `bin/qmail-tcpsrv` running `bin/qmail-smtpd`: SMTP on `--listen`; and,
//! when `control/smtpcert` exists, SMTPS (implicit TLS: `SMTPS` set) on `--smtps` and
//! submission (port 587's rules: `AUTHREQUIRED=1`, `SMTPAUTH=TLSREQUIRED`) on `--submission`.
//! POP3 on `--pop3` (and POP3S, `POP3S` set, on `--pop3s` with the certificate) is
//! `bin/qmail-popup <me> bin/auth_pop bin/qmail-pop3d ./Maildir/` under qmail-tcpsrv, as root
//! on a system installation (auth_pop becomes the user), else as the root's owner.
//! Each may be `off`; a TLS listener asked for without a certificate is an error. The log goes
//! to stdout, and qmailctl's own lines name the listener they are about. A child that dies is
//! restarted (after a second); Ctrl-C or TERM stops them all cleanly (qmail-send finishes its
//! running deliveries) and `run` returns when they have exited. qmail-send's pid is kept in
//! `run/qmail-send.pid` for `doqueue` and `reload`. See doc/qmailctl.8.
//!
//! With `control/verifysocket` present, `run` also binds that Unix socket (relative names
//! under the root) and supervises `bin/qmail-verify --listen fd:3` on it, as the SMTP
//! server's user: the socket stays with `run`, so a restarted qmail-verify loses no client.

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn pid_file(home: &Path) -> PathBuf {
    home.join("run/qmail-send.pid")
}

/// The SMTPS listener's address when `--smtps` is not given and there is a certificate.
pub const SMTPS_DEFAULT: &str = "127.0.0.1:4465";
/// The submission listener's address when `--submission` is not given and there is a
/// certificate.
pub const SUBMISSION_DEFAULT: &str = "127.0.0.1:5587";
/// The POP3S listener's address when `--pop3s` is not given and there is a certificate.
pub const POP3S_DEFAULT: &str = "127.0.0.1:1995";
/// The IMAPS listener's address when `--imaps` is not given and there is a certificate.
pub const IMAPS_DEFAULT: &str = "127.0.0.1:1993";

/// The kinds of SMTP listener: what qmail-smtpd's environment says about the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// plain SMTP, STARTTLS offered when there is a certificate
    Smtp,
    /// implicit TLS (`SMTPS`), port 465's way
    Smtps,
    /// message submission, port 587's way: `AUTHREQUIRED=1`, `SMTPAUTH=TLSREQUIRED`
    Submission,
    /// POP3 (qmail-popup), STLS offered when there is a certificate
    Pop3,
    /// POP3 with implicit TLS (`POP3S`), port 995's way
    Pop3s,
    /// IMAP (imapd), STARTTLS offered when there is a certificate
    Imap,
    /// IMAP with implicit TLS (`imapd -s`), port 993's way
    Imaps,
}

impl Port {
    /// The name in qmailctl's log lines.
    pub fn name(self) -> &'static str {
        match self {
            Port::Smtp => "SMTP",
            Port::Smtps => "SMTPS",
            Port::Submission => "submission",
            Port::Pop3 => "POP3",
            Port::Pop3s => "POP3S",
            Port::Imap => "IMAP",
            Port::Imaps => "IMAPS",
        }
    }
}

/// One SMTP listener: its kind and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: Port,
    /// `host:port` as given
    pub addr: String,
    /// the host, without the brackets of `[::1]:25`
    host: String,
    /// the port: a number or a service name, as qmail-tcpsrv takes it
    service: String,
}

impl Listener {
    /// A listener of kind `port` on `addr`, `host:port`.
    fn new(port: Port, addr: &str) -> Result<Listener> {
        let (host, service) = addr
            .rsplit_once(':')
            .filter(|(h, s)| !h.is_empty() && !s.is_empty())
            .with_context(|| format!("{} listener {addr}: expected host:port", port.name()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Listener { port, addr: addr.to_string(), host, service: service.to_string() })
    }
}

/// The SMTP listeners to run, from the options: `--listen` (`None`: off), `--smtps` and
/// `--submission` (`None`: not given). The TLS listeners need `control/smtpcert`: not given,
/// they run on their defaults when it exists and not otherwise; given without it, they are
/// an error. The second value is a line for the log when they are left out for want of one.
pub fn listeners(
    home: &Path,
    listen: Option<&str>,
    smtps: Option<&str>,
    submission: Option<&str>,
) -> Result<(Vec<Listener>, Option<String>)> {
    let cert = home.join("control/smtpcert").exists();
    let mut out = Vec::new();
    if let Some(addr) = listen {
        out.push(Listener::new(Port::Smtp, addr)?);
    }
    for (port, given, default) in
        [(Port::Smtps, smtps, SMTPS_DEFAULT), (Port::Submission, submission, SUBMISSION_DEFAULT)]
    {
        out.extend(tls_listener(home, port, given, default)?);
    }
    let note = (!cert && smtps.is_none() && submission.is_none()).then(|| {
        "qmailctl: no control/smtpcert: no SMTPS or submission listener \
         (qmailctl tls-selfsigned makes a certificate)"
            .to_string()
    });
    Ok((out, note))
}

/// The POP3 listeners to run: `--pop3` (`None`: off) and `--pop3s` (`None`: not given; on
/// its default when `control/smtpcert` exists, an error when asked for without it), and a
/// line for the log when POP3S is left out for want of a certificate.
pub fn pop3_listeners(
    home: &Path,
    pop3: Option<&str>,
    pop3s: Option<&str>,
) -> Result<(Vec<Listener>, Option<String>)> {
    mailbox_listeners(home, (Port::Pop3, pop3), (Port::Pop3s, pop3s, POP3S_DEFAULT), "STLS")
}

/// The IMAP listeners, as [`pop3_listeners`]: `--imap` and `--imaps`.
pub fn imap_listeners(
    home: &Path,
    imap: Option<&str>,
    imaps: Option<&str>,
) -> Result<(Vec<Listener>, Option<String>)> {
    mailbox_listeners(home, (Port::Imap, imap), (Port::Imaps, imaps, IMAPS_DEFAULT), "STARTTLS")
}

/// A plain listener (its kind and address, `None`: off) and its implicit-TLS twin (kind,
/// address given or not, default), and the log line when the twin is left out.
fn mailbox_listeners(
    home: &Path,
    (plain, plain_addr): (Port, Option<&str>),
    (tls, tls_addr, default): (Port, Option<&str>, &str),
    starttls: &str,
) -> Result<(Vec<Listener>, Option<String>)> {
    let cert = home.join("control/smtpcert").exists();
    let mut out = Vec::new();
    if let Some(addr) = plain_addr {
        out.push(Listener::new(plain, addr)?);
    }
    out.extend(tls_listener(home, tls, tls_addr, default)?);
    let note = (!cert && tls_addr.is_none()).then(|| {
        format!("qmailctl: no control/smtpcert: no {} listener, no {starttls}", tls.name())
    });
    Ok((out, note))
}

/// A TLS listener of kind `port`: `given` by an option (`None`: not given, then on `default`
/// when `control/smtpcert` exists), `off`, or an error when asked for without a certificate.
fn tls_listener(
    home: &Path,
    port: Port,
    given: Option<&str>,
    default: &str,
) -> Result<Option<Listener>> {
    let cert = home.join("control/smtpcert");
    let addr = match given {
        Some("off") => return Ok(None),
        Some(addr) if !cert.exists() => bail!(
            "{} on {addr} needs a certificate in {}: qmailctl tls-selfsigned makes one",
            port.name(),
            cert.display()
        ),
        Some(addr) => addr,
        None if !cert.exists() => return Ok(None),
        None => default,
    };
    Listener::new(port, addr).map(Some)
}

/// What one supervised child is.
enum Job {
    Send,
    Verify,
    Listen(Listener),
}

/// One supervised child.
struct Kid {
    job: Job,
    pid: Option<Pid>,
    /// when it may be started again after dying
    restart_at: Option<Instant>,
}

impl Kid {
    fn new(job: Job) -> Kid {
        Kid { job, pid: None, restart_at: Some(Instant::now()) }
    }

    /// The name in the log: `qmail-send`, `qmail-tcpsrv (SMTPS on 127.0.0.1:4465)`.
    fn name(&self) -> String {
        match &self.job {
            Job::Send => "qmail-send".to_string(),
            Job::Verify => "qmail-verify".to_string(),
            Job::Listen(l) => format!("qmail-tcpsrv ({} on {})", l.port.name(), l.addr),
        }
    }
}

/// Run the mail system until TERM or Ctrl-C.
pub fn run(home: &Path, listeners: &[Listener]) -> Result<()> {
    let aliasempty = qmail::control::Control::new(home)
        .line("defaultdelivery")
        .context("unable to read control/defaultdelivery")?
        .unwrap_or_else(|| "./Maildir/".to_string());
    let mut mask = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        mask.add(s);
    }
    mask.thread_block().context("unable to block signals")?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK).context("signalfd")?;
    fs::create_dir_all(home.join("run")).context("unable to create run/")?;

    let mut kids = vec![Kid::new(Job::Send)];
    kids.extend(listeners.iter().map(|l| Kid::new(Job::Listen(l.clone()))));
    let verify = verify_socket(home)?;
    if verify.is_some() {
        kids.push(Kid::new(Job::Verify));
    }
    let mut stopping = false;
    loop {
        if !stopping {
            for kid in kids.iter_mut() {
                if kid.pid.is_none() && kid.restart_at.is_some_and(|t| Instant::now() >= t) {
                    let pid = start(home, &kid.job, &aliasempty, verify.as_ref())?;
                    kid.pid = Some(pid);
                    kid.restart_at = None;
                    match &kid.job {
                        Job::Send => fs::write(pid_file(home), format!("{pid}\n"))
                            .context("unable to write run/qmail-send.pid")?,
                        Job::Listen(_) => println!("qmailctl: started {} as pid {pid}", kid.name()),
                        Job::Verify => {}
                    }
                }
            }
        }
        if stopping && kids.iter().all(|k| k.pid.is_none()) {
            break;
        }
        let wait = kids
            .iter()
            .filter_map(|k| k.restart_at)
            .map(|t| t.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, qmail::timeoutio::poll_timeout(wait)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => bail!("poll: {e}"),
        }
        while let Ok(Some(info)) = signals.read_signal() {
            let sig = Signal::try_from(info.ssi_signo as i32).ok();
            if matches!(sig, Some(Signal::SIGINT | Signal::SIGTERM)) && !stopping {
                stopping = true;
                for kid in &kids {
                    if let Some(pid) = kid.pid {
                        let _ = kill(pid, Signal::SIGTERM);
                    }
                }
            }
        }
        // reap every child that ended (ours, and nothing else: they are our only children)
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { break };
                    if let Some(kid) = kids.iter_mut().find(|k| k.pid == Some(pid)) {
                        kid.pid = None;
                        if !stopping {
                            println!("qmailctl: {} exited ({status:?}); restarting it", kid.name());
                            kid.restart_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
    }
    let _ = fs::remove_file(pid_file(home));
    Ok(())
}

/// The socket of `control/verifysocket`, bound, when the file exists.
fn verify_socket(home: &Path) -> Result<Option<OwnedFd>> {
    let Some(path) = qmail::control::Control::new(home)
        .line("verifysocket")
        .context("unable to read control/verifysocket")?
    else {
        return Ok(None);
    };
    let path = home.join(path);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("unable to create {}", dir.display()))?;
    }
    let socket = qmail::listener::bind(&qmail::listener::Listen::Unix(path.clone()))
        .with_context(|| format!("unable to listen on {}", path.display()))?;
    Ok(Some(socket))
}

/// Start one supervised program; its output goes to our stdout.
fn start(home: &Path, job: &Job, aliasempty: &str, verify: Option<&OwnedFd>) -> Result<Pid> {
    let bin = home.join("bin");
    let (name, mut cmd) = match job {
        Job::Verify => {
            let mut c = Command::new(bin.join("qmail-verify"));
            c.args(["--listen", "fd:3"]);
            if let Some(socket) = verify {
                qmail::child::map_fds(&mut c, vec![(socket.try_clone()?, 3)]);
            }
            if let Some((uid, gid)) = owner(home) {
                use std::os::unix::process::CommandExt;
                c.uid(uid).gid(gid);
            }
            c.stderr(Stdio::from(std::io::stdout().as_fd().try_clone_to_owned()?));
            ("qmail-verify", c)
        }
        Job::Send => {
            let mut c = Command::new(bin.join("qmail-start"));
            c.arg(aliasempty);
            ("qmail-start", c)
        }
        Job::Listen(l) => ("qmail-tcpsrv", tcpsrv(home, l)?),
    };
    cmd.env("QMAILHOME", home);
    let child = cmd.spawn().with_context(|| format!("unable to start {name}"))?;
    // reaped by waitpid in the loop above
    Ok(Pid::from_raw(child.id() as i32))
}

/// `bin/qmail-tcpsrv` running `bin/qmail-smtpd` for one SMTP listener, with the environment
/// of its kind (every SMTP listener takes the rules of `control/tcp.smtp.cdb`) and, when not
/// root, as workers (`-W`), or
/// `bin/qmail-popup <me> bin/auth_pop bin/qmail-pop3d ./Maildir/` for a POP3 one.
fn tcpsrv(home: &Path, l: &Listener) -> Result<Command> {
    let bin = home.join("bin");
    let me = qmail::control::Control::new(home).me().ok().flatten().unwrap_or_default();
    // the mailbox servers (POP3, IMAP) log users in and become them
    let pop3 = matches!(l.port, Port::Pop3 | Port::Pop3s | Port::Imap | Port::Imaps);
    let mut c = Command::new(bin.join("qmail-tcpsrv"));
    c.args(["-v", "-R", "-H"]);
    if !me.is_empty() {
        c.args(["-l", &me]);
    }
    // POP3 runs as root on a system installation: auth_pop becomes the user who logged in
    let mut uid = nix::unistd::geteuid().as_raw();
    match owner(home) {
        Some((u, gid)) if !pop3 || !is_system(home) => {
            c.args(["-u", &u.to_string(), "-g", &gid.to_string()]);
            uid = u;
        }
        _ => {}
    }
    // SMTP: long-lived qmail-smtpd workers, one session after another, unless they would run
    // as root (a root-owned installation), which qmail-tcpsrv refuses
    if !pop3 && uid != 0 {
        c.arg("-W");
    }
    let rules = home.join("control/tcp.smtp.cdb");
    if rules.exists() && !pop3 {
        c.arg("-x").arg(&rules);
    }
    c.args([&l.host, &l.service]);
    match l.port {
        Port::Pop3 | Port::Pop3s => {
            let host = if me.is_empty() { "localhost" } else { me.as_str() };
            c.arg(bin.join("qmail-popup")).arg(host).arg(bin.join("auth_pop"));
            c.arg(bin.join("qmail-pop3d")).arg("./Maildir/");
        }
        Port::Imap | Port::Imaps => {
            c.arg(bin.join("imapd"));
            if l.port == Port::Imaps {
                c.arg("-s");
            } else if is_loopback(&l.host) {
                // plaintext LOGIN on a loopback address, as POP3's USER/PASS on it
                c.args(["-p", "2"]);
            }
        }
        _ => {
            c.arg(bin.join("qmail-smtpd"));
        }
    }
    // what the kind of port means to qmail-smtpd and qmail-popup (an SMTPS or POP3S in
    // qmailctl's own environment would make every listener speak TLS first)
    match l.port {
        Port::Smtp | Port::Pop3 | Port::Imap | Port::Imaps => {
            c.env_remove("SMTPS").env_remove("POP3S")
        }
        Port::Smtps => c.env("SMTPS", "1"),
        Port::Submission => {
            c.env_remove("SMTPS").env("AUTHREQUIRED", "1").env("SMTPAUTH", "TLSREQUIRED")
        }
        Port::Pop3s => c.env("POP3S", "1"),
    };
    c.stderr(Stdio::from(std::io::stdout().as_fd().try_clone_to_owned()?));
    Ok(c)
}

/// Whether `host` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A system installation (qmail's users), where POP3 must start as root.
fn is_system(home: &Path) -> bool {
    matches!(qmail::queue::installation(home), Ok(qmail::queue::Installation::System))
}

/// Running as root, the owner of a single-user root (qmailctl init --owner) runs the SMTP
/// server; a system installation's smtpd runs as qmaild.
fn owner(home: &Path) -> Option<(u32, u32)> {
    use qmail::queue::Installation;
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    match qmail::queue::installation(home).ok()? {
        Installation::System => {
            let qmaild = nix::unistd::User::from_name(qmail::auto::USER_QMAILD).ok().flatten()?;
            Some((qmaild.uid.as_raw(), qmaild.gid.as_raw()))
        }
        Installation::Owned { uid, gid } => Some((uid, gid)),
        Installation::Root => None,
    }
}

/// Send `sig` to the running qmail-send, once it is ready for it.
pub fn signal(home: &Path, sig: Signal) -> Result<()> {
    let path = pid_file(home);
    let text = fs::read_to_string(&path)
        .with_context(|| format!("unable to read {}: is qmailctl run running?", path.display()))?;
    let pid: i32 = text.trim().parse().with_context(|| format!("bad pid in {}", path.display()))?;
    // qmail-send takes ALRM and HUP from a signalfd, blocking them; until it does (qmail-start
    // still setting up, or qmail-send just started) they would kill it, so wait for that
    let deadline = Instant::now() + Duration::from_secs(10);
    while !blocks(pid, sig) {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("qmail-send (pid {pid}) is not running: is qmailctl run running?");
        }
        if Instant::now() >= deadline {
            bail!("qmail-send (pid {pid}) is not ready for signals; try again in a moment");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(pid), sig)
        .with_context(|| format!("unable to signal qmail-send (pid {pid})"))?;
    Ok(())
}

/// Whether process `pid` blocks `sig` (the `SigBlk` mask of /proc/PID/status).
fn blocks(pid: i32, sig: Signal) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig as i32 - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_follow_the_options_and_the_certificate() {
        let dir = std::env::temp_dir().join(format!("qmailctl-listeners-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("control")).unwrap();
        let addrs = |list: &[Listener]| -> Vec<String> {
            list.iter().map(|l| format!("{} {}", l.port.name(), l.addr)).collect()
        };
        // no certificate: SMTP only, and a note; TLS listeners asked for are an error
        let (got, note) = listeners(&dir, Some("127.0.0.1:25"), None, None).unwrap();
        assert_eq!(addrs(&got), ["SMTP 127.0.0.1:25"]);
        assert!(note.unwrap().contains("no control/smtpcert"));
        let (got, note) = listeners(&dir, None, Some("off"), Some("off")).unwrap();
        assert!(got.is_empty() && note.is_none());
        let e = listeners(&dir, None, None, Some("127.0.0.1:587")).unwrap_err().to_string();
        assert!(e.starts_with("submission on 127.0.0.1:587 needs a certificate in "), "{e}");
        let (got, note) = pop3_listeners(&dir, Some("127.0.0.1:110"), None).unwrap();
        assert_eq!(addrs(&got), ["POP3 127.0.0.1:110"]);
        assert!(note.unwrap().contains("no POP3S"));
        let e = pop3_listeners(&dir, None, Some("127.0.0.1:995")).unwrap_err().to_string();
        assert!(e.starts_with("POP3S on 127.0.0.1:995 needs a certificate in "), "{e}");
        // a certificate: the defaults, unless moved or off
        fs::write(dir.join("control/smtpcert"), "").unwrap();
        let (got, note) = listeners(&dir, Some("127.0.0.1:25"), None, None).unwrap();
        assert_eq!(
            addrs(&got),
            ["SMTP 127.0.0.1:25", "SMTPS 127.0.0.1:4465", "submission 127.0.0.1:5587"]
        );
        assert!(note.is_none());
        let (got, _) = listeners(&dir, None, Some("[::1]:465"), Some("off")).unwrap();
        assert_eq!(addrs(&got), ["SMTPS [::1]:465"]);
        assert_eq!((got[0].host.as_str(), got[0].service.as_str()), ("::1", "465"));
        let (got, note) = pop3_listeners(&dir, Some("127.0.0.1:110"), None).unwrap();
        assert_eq!(addrs(&got), ["POP3 127.0.0.1:110", "POP3S 127.0.0.1:1995"]);
        assert!(note.is_none());
        let (got, _) = pop3_listeners(&dir, None, Some("[::1]:995")).unwrap();
        assert_eq!(addrs(&got), ["POP3S [::1]:995"]);
        for bad in ["465", ":465", "host:", ""] {
            let e = listeners(&dir, None, Some(bad), Some("off")).unwrap_err().to_string();
            assert!(e.contains("expected host:port"), "{bad}: {e}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
