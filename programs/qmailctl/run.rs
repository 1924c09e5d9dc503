//! qmailctl run, doqueue, reload: run the delivery system in the foreground and signal it.
//!
//! `run` starts `bin/qmail-start <control/defaultdelivery>` (which becomes qmail-send) with
//! the log on stdout, records its pid in `run/qmail-send.pid`, and turns Ctrl-C or TERM into
//! a clean TERM of qmail-send; it returns when qmail-send has exited.

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use std::fs;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn pid_file(home: &Path) -> PathBuf {
    home.join("run/qmail-send.pid")
}

/// Run qmail-start until qmail-send exits.
pub fn run(home: &Path) -> Result<()> {
    let aliasempty = qmail::control::Control::new(home)
        .line("defaultdelivery")
        .context("unable to read control/defaultdelivery")?
        .unwrap_or_else(|| "./Maildir/".to_string());
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().context("unable to block signals")?;
    let signals = SignalFd::with_flags(&mask, nix::sys::signalfd::SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    let mut child = Command::new(home.join("bin/qmail-start"))
        .arg(&aliasempty)
        .env("QMAILHOME", home)
        .spawn()
        .with_context(|| format!("unable to run {}/bin/qmail-start", home.display()))?;
    let pid = child.id();
    fs::create_dir_all(home.join("run")).context("unable to create run/")?;
    fs::write(pid_file(home), format!("{pid}\n")).context("unable to write run/qmail-send.pid")?;

    // a thread waits for the child and says so through a pipe
    let (done_r, done_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        drop(done_w);
        status
    });
    let mut done = fs::File::from(done_r);
    let mut termed = false;
    loop {
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(done.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
        let (sig, exited) = (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false));
        if sig {
            while let Ok(Some(_)) = signals.read_signal() {}
            if !termed {
                termed = true;
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        if exited {
            let _ = done.read(&mut [0u8; 1]);
            break;
        }
    }
    let status = waiter.join().map_err(|_| anyhow::anyhow!("waiter thread failed"))??;
    let _ = fs::remove_file(pid_file(home));
    if !status.success() {
        bail!("qmail-send exited with {status}");
    }
    Ok(())
}

/// Send `sig` to the running qmail-send.
pub fn signal(home: &Path, sig: Signal) -> Result<()> {
    let path = pid_file(home);
    let text = fs::read_to_string(&path)
        .with_context(|| format!("unable to read {}: is qmailctl run running?", path.display()))?;
    let pid: i32 = text.trim().parse().with_context(|| format!("bad pid in {}", path.display()))?;
    kill(Pid::from_raw(pid), sig)
        .with_context(|| format!("unable to signal qmail-send (pid {pid})"))?;
    Ok(())
}
