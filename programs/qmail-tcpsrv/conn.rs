//! qmail-tcpsrv's per-connection work, in tcpserver's order: banner, TCP_NODELAY, local
//! address, `PROTO`/`TCPLOCAL*`, `TCPREMOTE*`, rules, the verbose `ok`/`deny` line, then the
//! program (with the socket on fds 0 and 1) or, on deny, the close. The thread then waits for
//! the program and logs its `end` line.

use crate::{Server, Slot};
use qmail::tcprules::{self, Decision, EnvChange};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the banner may take to leave; a client that never reads gives its slot back.
const BANNER_TIMEOUT: Duration = Duration::from_secs(60);

/// Serve one connection; `slot` is released when this returns.
pub fn serve(server: &Server, stream: TcpStream, slot: Slot) {
    let _slot = slot;
    let opts = &server.opts;
    let drop_conn = |why: String| server.warn(&format!("dropping connection, {why}"));
    if opts.nodelay {
        let _ = stream.set_nodelay(true);
    }
    if !opts.banner.is_empty() {
        let sent = stream
            .set_write_timeout(Some(BANNER_TIMEOUT))
            .and_then(|()| (&stream).write_all(&opts.banner))
            // the socket option would stay with the program
            .and_then(|()| stream.set_write_timeout(None));
        if let Err(e) = sent {
            return drop_conn(format!("unable to print banner: {e}"));
        }
    }
    let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(l), Ok(r)) => (canonical(l), canonical(r)),
        (Err(e), _) | (_, Err(e)) => {
            return drop_conn(format!("unable to get local address: {e}"));
        }
    };
    let local_ip = local.ip().to_string();
    let remote_ip = remote.ip().to_string();
    let mut env: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("PROTO", Some(if remote.is_ipv4() { "TCP" } else { "TCP6" }.into())),
        ("TCPLOCALIP", Some(local_ip.clone().into())),
        ("TCPLOCALPORT", Some(local.port().to_string().into())),
        ("TCPLOCALHOST", opts.local_host.clone()),
        ("TCPREMOTEIP", Some(remote_ip.clone().into())),
        ("TCPREMOTEPORT", Some(remote.port().to_string().into())),
        ("TCPREMOTEHOST", None),
        ("TCPREMOTEINFO", None),
    ];
    let decision = match rules(server, remote_ip.as_bytes()) {
        Ok(d) => d,
        Err(why) => return drop_conn(why),
    };
    let describe = |pid: u32| {
        let field = |v: &[u8]| qmail::safe::safecats(v);
        format!(
            "{} {pid} {}:{}:{} :{}::{}",
            if decision.deny { "deny" } else { "ok" },
            opts.local_host.as_deref().map(field).unwrap_or_default(),
            field(local_ip.as_bytes()),
            field(local.port().to_string().as_bytes()),
            field(remote_ip.as_bytes()),
            field(remote.port().to_string().as_bytes()),
        )
    };
    if decision.deny {
        // no process is made for a denied connection: pid 0, no pid and end lines
        server.verbose(&describe(0));
        return;
    }

    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    for (name, value) in env.drain(..) {
        match value {
            Some(v) => cmd.env(name, OsString::from_vec(v)),
            None => cmd.env_remove(name),
        };
    }
    for change in &decision.env {
        match change {
            EnvChange::Set(n, v) => cmd.env(OsStr::from_bytes(n), OsStr::from_bytes(v)),
            EnvChange::Unset(n) => cmd.env_remove(OsStr::from_bytes(n)),
        };
    }
    let output = match stream.try_clone() {
        Ok(s) => OwnedFd::from(s),
        Err(e) => return drop_conn(format!("unable to set up descriptors: {e}")),
    };
    cmd.stdin(Stdio::from(OwnedFd::from(stream))).stdout(Stdio::from(output));
    let spawned = cmd.spawn();
    // the Command holds our copies of the socket: close them now, or the client never sees EOF
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let program = opts.program.to_string_lossy();
            return drop_conn(format!("unable to run {program}: {e}"));
        }
    };
    let pid = child.id();
    server.verbose(&format!("pid {pid} from {remote_ip}"));
    server.verbose(&describe(pid));
    match child.wait() {
        Ok(status) => server.verbose(&format!("end {pid} status {}", status.into_raw())),
        Err(e) => server.warn(&format!("unable to wait for {pid}: {e}")),
    }
}

/// The rules' decision for `ip` (allow without `-x`); `Err` means drop the connection.
fn rules(server: &Server, ip: &[u8]) -> Result<Decision, String> {
    let opts = &server.opts;
    let Some(path) = &opts.rules else {
        return Ok(Decision::default());
    };
    let unable = |why: &dyn std::fmt::Display| format!("unable to read {}: {why}", path.display());
    match qmail::cdb::Reader::open(path) {
        Ok(Some(reader)) => tcprules::lookup(&reader, ip, None, None).map_err(|e| unable(&e)),
        Ok(None) if opts.allow_missing_rules => Ok(Decision::default()),
        Ok(None) => Err(unable(&"file does not exist")),
        Err(e) => Err(unable(&e)),
    }
}

/// An IPv4 peer seen through a dual-stack socket (`::ffff:1.2.3.4`) is an IPv4 peer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
