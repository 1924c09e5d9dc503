//! qmail-tcpsrv's per-connection work, in tcpserver's order: banner, TCP_NODELAY, local
//! address, `PROTO`/`TCPLOCAL*`, `TCPREMOTE*`, rules, the verbose `ok`/`deny` line, then the
//! program (with the socket on fds 0 and 1) or, with `-W`, a worker of it (workers.rs), or on
//! deny the close. The thread then waits for the program or the worker's answer and logs the
//! `end` line.

use crate::workers::{Pool, Worker};
use crate::{Server, Slot};
use qmail::tcprules::{self, Decision, EnvChange};
use std::ffi::OsStr;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
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
    // the ucspi-tcp variables, then the rules' changes in order
    let set = |name: &str, value: String| EnvChange::Set(name.into(), value.into_bytes());
    let unset = |name: &str| EnvChange::Unset(name.into());
    let mut env = vec![
        set("PROTO", if remote.is_ipv4() { "TCP" } else { "TCP6" }.into()),
        set("TCPLOCALIP", local_ip.clone()),
        set("TCPLOCALPORT", local.port().to_string()),
        match &opts.local_host {
            Some(name) => EnvChange::Set(b"TCPLOCALHOST".to_vec(), name.clone()),
            None => unset("TCPLOCALHOST"),
        },
        set("TCPREMOTEIP", remote_ip.clone()),
        set("TCPREMOTEPORT", remote.port().to_string()),
        unset("TCPREMOTEHOST"),
        unset("TCPREMOTEINFO"),
    ];
    env.extend(decision.env.iter().cloned());

    let session = match &server.pool {
        Some(pool) => pool.hand(stream, &env).map(|worker| Session::Worker(pool, worker)),
        None => spawn(server, stream, &env).map(Session::Program),
    };
    let session = match session {
        Ok(s) => s,
        Err(why) => return drop_conn(why),
    };
    let pid = session.pid();
    server.verbose(&format!("pid {pid} from {remote_ip}"));
    server.verbose(&describe(pid));
    match session.wait() {
        Ok(status) => server.verbose(&format!("end {pid} status {status}")),
        Err(why) => server.warn(&why),
    }
}

/// A connection being served: by the program run for it, or by a worker (`-W`).
enum Session<'a> {
    Program(Child),
    Worker(&'a Pool, Worker),
}

impl Session<'_> {
    fn pid(&self) -> u32 {
        match self {
            Session::Program(child) => child.id(),
            Session::Worker(_, worker) => worker.pid(),
        }
    }

    /// Wait for the end: the raw wait status (or the worker's answer in its form).
    fn wait(self) -> Result<i32, String> {
        match self {
            Session::Program(mut child) => {
                let pid = child.id();
                child
                    .wait()
                    .map(|status| status.into_raw())
                    .map_err(|e| format!("unable to wait for {pid}: {e}"))
            }
            Session::Worker(pool, worker) => Ok(pool.finish(worker)),
        }
    }
}

/// Run the program for one connection, the socket on its fds 0 and 1, with `env` applied.
fn spawn(server: &Server, stream: TcpStream, env: &[EnvChange]) -> Result<Child, String> {
    let opts = &server.opts;
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args);
    for change in env {
        match change {
            EnvChange::Set(n, v) => cmd.env(OsStr::from_bytes(n), OsStr::from_bytes(v)),
            EnvChange::Unset(n) => cmd.env_remove(OsStr::from_bytes(n)),
        };
    }
    let output = stream
        .try_clone()
        .map(OwnedFd::from)
        .map_err(|e| format!("unable to set up descriptors: {e}"))?;
    cmd.stdin(Stdio::from(OwnedFd::from(stream))).stdout(Stdio::from(output));
    let spawned = cmd.spawn();
    // the Command holds our copies of the socket: close them now, or the client never sees EOF
    drop(cmd);
    spawned.map_err(|e| format!("unable to run {}: {e}", opts.program.to_string_lossy()))
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
