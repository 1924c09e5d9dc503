//! qmailctl run, doqueue, reload: run the mail system in the foreground and signal it.
//!
//! `run` creates the installation root when it is missing (with a demo user), then starts
//! `bin/qmail-start <control/defaultdelivery>` (which becomes qmail-send) and, unless
//! `--listen off`, `bin/qmail-tcpsrv` running `bin/qmail-smtpd` on the listen address. The
//! log goes to stdout. A child that dies is restarted (after a second); Ctrl-C or TERM stops
//! both cleanly (qmail-send finishes its running deliveries) and `run` returns when they have
//! exited. qmail-send's pid is kept in `run/qmail-send.pid` for `doqueue` and `reload`.
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

/// What to run besides delivery.
pub struct Listen(pub Option<String>);

/// One supervised child.
struct Kid {
    name: &'static str,
    pid: Option<Pid>,
    /// when it may be started again after dying
    restart_at: Option<Instant>,
}

/// Run the mail system until TERM or Ctrl-C.
pub fn run(home: &Path, listen: &Listen) -> Result<()> {
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

    let mut kids = vec![Kid { name: "qmail-send", pid: None, restart_at: Some(Instant::now()) }];
    if listen.0.is_some() {
        kids.push(Kid { name: "qmail-tcpsrv", pid: None, restart_at: Some(Instant::now()) });
    }
    let verify = verify_socket(home)?;
    if verify.is_some() {
        kids.push(Kid { name: "qmail-verify", pid: None, restart_at: Some(Instant::now()) });
    }
    let mut stopping = false;
    loop {
        if !stopping {
            for kid in kids.iter_mut() {
                if kid.pid.is_none() && kid.restart_at.is_some_and(|t| Instant::now() >= t) {
                    let pid = start(home, kid.name, &aliasempty, listen, verify.as_ref())?;
                    kid.pid = Some(pid);
                    kid.restart_at = None;
                    if kid.name == "qmail-send" {
                        fs::write(pid_file(home), format!("{pid}\n"))
                            .context("unable to write run/qmail-send.pid")?;
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
        // reap every child that ended (our two, and nothing else: they are our only children)
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(pid) = status.pid() else { break };
                    if let Some(kid) = kids.iter_mut().find(|k| k.pid == Some(pid)) {
                        kid.pid = None;
                        if !stopping {
                            eprintln!("qmailctl: {} exited ({status:?}); restarting it", kid.name);
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
fn start(
    home: &Path,
    name: &str,
    aliasempty: &str,
    listen: &Listen,
    verify: Option<&OwnedFd>,
) -> Result<Pid> {
    let bin = home.join("bin");
    let mut cmd = match name {
        "qmail-verify" => {
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
            c
        }
        "qmail-send" => {
            let mut c = Command::new(bin.join("qmail-start"));
            c.arg(aliasempty);
            c
        }
        _ => {
            let addr = listen.0.as_deref().unwrap_or("127.0.0.1:2525");
            let (host, port) = addr
                .rsplit_once(':')
                .with_context(|| format!("--listen {addr}: expected host:port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let me = qmail::control::Control::new(home).me().ok().flatten().unwrap_or_default();
            let mut c = Command::new(bin.join("qmail-tcpsrv"));
            c.args(["-v", "-R", "-H"]);
            if !me.is_empty() {
                c.args(["-l", &me]);
            }
            if let Some((uid, gid)) = owner(home) {
                c.args(["-u", &uid.to_string(), "-g", &gid.to_string()]);
            }
            let rules = home.join("control/tcp.smtp.cdb");
            if rules.exists() {
                c.arg("-x").arg(&rules);
            }
            c.args([host, port]).arg(bin.join("qmail-smtpd"));
            c.stderr(Stdio::from(std::io::stdout().as_fd().try_clone_to_owned()?));
            c
        }
    };
    cmd.env("QMAILHOME", home);
    let child = cmd.spawn().with_context(|| format!("unable to start {name}"))?;
    // reaped by waitpid in the loop above
    Ok(Pid::from_raw(child.id() as i32))
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
