//! qmail-tcpsrv's sockets: the port argument, binding the host argument, accepting.
//!
//! Host `0` or empty binds `[::]` (which on Linux also takes IPv4, unless
//! net.ipv6.bindv6only is set) and `0.0.0.0` on the same port; if one of the two cannot be
//! bound because the other already covers it, or the machine has no IPv6, one socket is
//! enough. An address literal binds that address; a name binds every address it resolves to,
//! all on the same port.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::time::Duration;

/// A port number, or a name from /etc/services (tcp).
pub fn port(text: &str) -> Result<u16, String> {
    let unknown = || format!("unable to figure out port number for {text}");
    if !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit()) {
        return text.parse().map_err(|_| unknown());
    }
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    services
        .lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            let name = words.next()?;
            let (number, proto) = words.next()?.split_once('/')?;
            let named = name == text || words.any(|alias| alias == text);
            (named && proto == "tcp").then(|| number.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(unknown)
}

/// Bind and listen; every listener is non-blocking (see [`accept`]).
pub fn bind(host: &str, port: u16, backlog: u32) -> Result<Vec<TcpListener>, String> {
    let listeners = match host {
        "" | "0" => bind_any(port, backlog)?,
        _ => {
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => (host, port)
                    .to_socket_addrs()
                    .map_err(|e| format!("unable to figure out IP address for {host}: {e}"))?
                    .collect(),
            };
            bind_all(&addrs, backlog)?
        }
    };
    for l in &listeners {
        l.set_nonblocking(true).map_err(|e| format!("unable to listen: {e}"))?;
    }
    Ok(listeners)
}

fn bind_any(port: u16, backlog: u32) -> Result<Vec<TcpListener>, String> {
    let six = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let v6 = match listen_on(six, backlog) {
        Ok(l) => l,
        // no IPv6 here: IPv4 only
        Err(e)
            if matches!(e.kind(), ErrorKind::AddrNotAvailable | ErrorKind::Unsupported)
                || e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT) =>
        {
            return bind_all(&[SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)], backlog);
        }
        Err(e) => return Err(format!("unable to bind: {e}")),
    };
    let port = v6.local_addr().map_err(|e| format!("unable to get local address: {e}"))?.port();
    match listen_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port), backlog) {
        Ok(v4) => Ok(vec![v6, v4]),
        // the IPv6 socket is dual-stack and already takes IPv4
        Err(e) if e.kind() == ErrorKind::AddrInUse => Ok(vec![v6]),
        Err(e) => Err(format!("unable to bind 0.0.0.0: {e}")),
    }
}

/// One listening socket with the `-b` backlog (SO_REUSEADDR, as std and tcpserver set it).
fn listen_on(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Bind every address on one port (the first one's, when the port is 0).
fn bind_all(addrs: &[SocketAddr], backlog: u32) -> Result<Vec<TcpListener>, String> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    for addr in addrs {
        let mut addr = *addr;
        if let Some(first) = listeners.first().and_then(|l| l.local_addr().ok()) {
            addr.set_port(first.port());
        }
        if listeners.iter().any(|l| l.local_addr().ok() == Some(addr)) {
            continue;
        }
        listeners
            .push(listen_on(addr, backlog).map_err(|e| format!("unable to bind {addr}: {e}"))?);
    }
    if listeners.is_empty() {
        return Err("no IP address to bind".into());
    }
    Ok(listeners)
}

/// Wait for and accept the next connection on any listener; `next` rotates which listener is
/// tried first. Transient failures (a client gone before the accept, no fds left) are retried:
/// the latter after a pause, so the loop never spins.
pub fn accept(listeners: &[TcpListener], next: &mut usize) -> TcpStream {
    loop {
        let mut fds: Vec<PollFd> =
            listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)).collect();
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        let ready: Vec<bool> =
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        for k in 0..listeners.len() {
            let i = (*next + k) % listeners.len();
            if !ready[i] {
                continue;
            }
            match listeners[i].accept() {
                Ok((stream, _)) => {
                    *next = i + 1;
                    // accepted sockets do not inherit O_NONBLOCK on Linux; make sure
                    let _ = stream.set_nonblocking(false);
                    return stream;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
