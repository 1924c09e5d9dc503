//! Remote delivery: qmail-remote against a real DNS server (Debian's dnsmasq, started per
//! test on a loopback address of its own) and real receivers (Postfix's smtp-sink, this
//! project's qmail-smtpd under ucspi-tcp's tcpserver or `qmailctl run`'s listener, and small
//! scripted or hostile servers written here); qmail-rspawn and qmail-send through the whole
//! system; qmail-tcpto and qmail-tcpok.
//!
//! Every test takes its own block of loopback addresses (127.A.B.x, from the process id and a
//! counter), so tests run in parallel; receivers listen on the test's port, which the
//! sending root names in `control/remoteport`, and dnsmasq on port 5300 + n of the test's
//! first address, named in the resolv.conf file of `control/resolvconf`. `qmailctl run`'s
//! listener is on 127.0.0.1 and a free port of its own.

use crate::harness::*;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A block of loopback addresses for one test: `ip(n)` is 127.A.B.n.
struct Net {
    a: u8,
    b: u8,
    port: u16,
}

impl Net {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id() as usize;
        Net {
            a: (100 + pid % 100) as u8,
            b: ((pid / 100 + n * 7) % 250 + 1) as u8,
            port: free_port(),
        }
    }

    fn ip(&self, n: u8) -> String {
        format!("127.{}.{}.{n}", self.a, self.b)
    }

    fn addr(&self, n: u8) -> String {
        format!("{}:{}", self.ip(n), self.port)
    }
}

/// dnsmasq on `net.ip(1)` serving `records` (dnsmasq options such as `--mx-host=...`);
/// everything else under `.test` does not exist.
fn dnsmasq(net: &Net, records: &[String]) -> (Guard, u16) {
    let port = 5300 + u16::from(net.b);
    let mut cmd = Command::new("dnsmasq");
    cmd.args(["-C", "/dev/null", "--no-resolv", "--no-hosts", "--keep-in-foreground"])
        .args(["--bind-interfaces", "--pid-file=", "--local=/test/"])
        .arg(format!("--listen-address={}", net.ip(1)))
        .arg(format!("--port={port}"))
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = Guard(cmd.spawn().expect("dnsmasq must be installed"));
    // ready when it answers over TCP
    let addr: SocketAddr = format!("{}:{port}", net.ip(1)).parse().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "dnsmasq did not start on {addr}"
    );
    (guard, port)
}

/// A sending root: DNS at the test's dnsmasq, receivers on the test's port, short timeouts.
fn sender_root(sb: &Sandbox, net: &Net, dns_port: u16) {
    let conf = sb.home.join("control/resolv.conf.test");
    fs::write(
        &conf,
        format!("nameserver {}:{dns_port}\noptions timeout:2 attempts:2\n", net.ip(1)),
    )
    .unwrap();
    sb.control("resolvconf", &format!("{}\n", conf.display()));
    sb.control("remoteport", &format!("{}\n", net.port));
    sb.control("timeoutconnect", "2\n");
    sb.control("timeoutremote", "10\n");
}

/// Run qmail-remote directly with `message` on fd 0 (a file); its records with NUL as `|`.
fn remote(sb: &Sandbox, host: &str, sender: &str, rcpts: &[&str], message: &str) -> String {
    let out = remote_output(sb, host, sender, rcpts, message);
    assert_eq!(code(&out), 0, "qmail-remote always exits 0");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).replace('\0', "|")
}

fn remote_output(sb: &Sandbox, host: &str, sender: &str, rcpts: &[&str], message: &str) -> Output {
    let path = sb.tmp.path().join(format!("msg-{}", free_port()));
    fs::write(&path, message).unwrap();
    sb.cmd("qmail-remote")
        .arg(host)
        .arg(sender)
        .args(rcpts)
        .stdin(File::open(&path).unwrap())
        .output()
        .unwrap()
}

/// Postfix's smtp-sink on `addr` with extra options.
fn smtp_sink(addr: &str, opts: &[&str]) -> Guard {
    let mut cmd = Command::new("smtp-sink");
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    cmd.args(opts).arg(addr).arg("10").stdout(Stdio::null()).stderr(Stdio::null());
    let guard = Guard(cmd.spawn().expect("smtp-sink (postfix) must be installed"));
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "smtp-sink did not start on {addr}"
    );
    guard
}

// ---------------------------------------------------------------------------------------------
// A scripted receiver.

#[derive(Clone, Default)]
struct Script {
    /// Greeting line (default `220 scripted ESMTP`).
    greeting: Option<String>,
    /// RCPT addresses containing this get `550 no such user`.
    refuse: Option<String>,
    /// This many DATA commands (in all sessions) are answered `451 try later`.
    data_fails: usize,
    /// Offer STARTTLS; answer it with 220 and then these bytes (no TLS record; empty: a
    /// stall), and wait for the client to hang up.
    broken_tls: Option<&'static str>,
}

/// One message the scripted server took: the envelope and the bytes of DATA.
#[derive(Debug, Clone)]
struct Got {
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

struct Scripted {
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Got>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Scripted {
    fn start(addr: &str, script: Script) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s2, g2) = (stop.clone(), got.clone());
        let thread = std::thread::spawn(move || {
            let mut data_fails = script.data_fails;
            while !s2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                        session(conn, &script, &mut data_fails, &g2);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Scripted { stop, got, thread: Some(thread) }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn session(conn: TcpStream, script: &Script, data_fails: &mut usize, got: &Mutex<Vec<Got>>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let greeting = script.greeting.clone().unwrap_or_else(|| "220 scripted ESMTP".into());
    let _ = write!(w, "{greeting}\r\n");
    if !greeting.starts_with("220") {
        return;
    }
    let mut cur = Got { from: String::new(), to: Vec::new(), data: Vec::new() };
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            let tls = if script.broken_tls.is_some() { "250-STARTTLS\r\n" } else { "" };
            format!("250-scripted\r\n{tls}250-PIPELINING\r\n250 SIZE 10000000")
        } else if let (true, Some(after)) = (upper == "STARTTLS", script.broken_tls) {
            let _ = write!(w, "220 go ahead\r\n{after}");
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            return;
        } else if upper.starts_with("MAIL FROM:") {
            cur = Got { from: cmd[10..].to_string(), to: Vec::new(), data: Vec::new() };
            "250 ok".into()
        } else if upper.starts_with("RCPT TO:") {
            match &script.refuse {
                Some(bad) if cmd.contains(bad.as_str()) => "550 no such user".into(),
                _ => {
                    cur.to.push(cmd[8..].to_string());
                    "250 ok".into()
                }
            }
        } else if upper == "DATA" {
            if *data_fails > 0 {
                *data_fails -= 1;
                "451 try later".into()
            } else {
                let _ = w.write_all(b"354 go ahead\r\n");
                let mut data = Vec::new();
                let mut l = Vec::new();
                loop {
                    l.clear();
                    if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                cur.data = data;
                got.lock().unwrap().push(cur.clone());
                "250 accepted".into()
            }
        } else if upper == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n");
            return;
        } else {
            "250 ok".into()
        };
        let _ = write!(w, "{reply}\r\n");
    }
}

/// MX records for `domain`: (preference, exchange, address index) each.
fn mx_records(net: &Net, domain: &str, mxs: &[(u16, &str, u8)]) -> Vec<String> {
    let mut r = Vec::new();
    for (pref, host, n) in mxs {
        r.push(format!("--mx-host={domain},{host},{pref}"));
        r.push(format!("--host-record={host},{}", net.ip(*n)));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// qmail-remote on its own.

#[test]
fn delivers_to_an_mx_on_loopback_byte_exact() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let sb = Sandbox::new();
    sender_root(&sb, &net, dns_port);
    let server = Scripted::start(&net.addr(2), Script::default());
    let message = "Subject: hi\n\n.dot\nbare\rcr\nlast";
    let out = remote(&sb, "d.test", "s@example.org", &["u@d.test", "v@d.test"], message);
    let ip = net.ip(2);
    assert_eq!(out, format!("r|r|K{ip} accepted message.\nRemote host said: 250 accepted\n|"));
    let got = server.got();
    assert_eq!(got.len(), 1);
    let n = message.len();
    assert_eq!(got[0].from, format!("<s@example.org> SIZE={}", n + n / 32 + 1));
    assert_eq!(got[0].to, ["<u@d.test>", "<v@d.test>"]);
    assert_eq!(
        String::from_utf8_lossy(&got[0].data),
        "Subject: hi\r\n\r\n..dot\r\nbare\r\ncr\r\nlast\r\n",
        "LF to CRLF, dots doubled, a bare CR ends a line, a last line gets its CRLF"
    );
}

#[test]
fn smtp_sink_receives_and_literals_work() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let sb = Sandbox::new();
    sender_root(&sb, &net, dns_port);
    let _sink = smtp_sink(&net.addr(2), &[]);
    let ip = net.ip(2);
    let out = remote(&sb, "d.test", "s@example.org", &["u@d.test"], "Subject: x\n\nbody\n");
    assert!(
        out.starts_with(&format!("r|K{ip} accepted message.\nRemote host said: 250 ")),
        "{out}"
    );
    let out = remote(&sb, &format!("[{ip}]"), "", &["u@d.test"], "x\n");
    assert!(out.starts_with(&format!("r|K{ip} accepted message.")), "{out}");
}

#[test]
fn mx_fallback_when_the_first_refuses_connections() {
    let net = Net::new();
    let recs = mx_records(&net, "d.test", &[(10, "mx1.d.test", 2), (20, "mx2.d.test", 3)]);
    let (_dns, dns_port) = dnsmasq(&net, &recs);
    let sb = Sandbox::new();
    sender_root(&sb, &net, dns_port);
    // nothing listens on .2
    let _sink = smtp_sink(&net.addr(3), &[]);
    let out = remote(&sb, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(out.starts_with(&format!("r|K{} accepted message.", net.ip(3))), "{out}");
    // nothing anywhere: temporary
    drop(_sink);
    let out = remote(&sb, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(
        out.starts_with("ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"),
        "{out}"
    );
}

#[test]
fn a_4xx_greeting_sends_to_the_next_mx() {
    let net = Net::new();
    let recs = mx_records(&net, "d.test", &[(10, "mx1.d.test", 2), (20, "mx2.d.test", 3)]);
    let (_dns, dns_port) = dnsmasq(&net, &recs);
    let sb = Sandbox::new();
    sender_root(&sb, &net, dns_port);
    let _busy = smtp_sink(&net.addr(2), &["-r", "CONNECT"]);
    let good = Scripted::start(&net.addr(3), Script::default());
    let out = remote(&sb, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(out.starts_with(&format!("r|K{} accepted message.", net.ip(3))), "{out}");
    assert_eq!(good.got().len(), 1);
    // a 5xx greeting is permanent
    let net2 = Net::new();
    let _bad = Scripted::start(
        &net2.addr(2),
        Script { greeting: Some("554 go away".into()), ..Script::default() },
    );
    sb.control("remoteport", &format!("{}\n", net2.port));
    let out = remote(&sb, &format!("[{}]", net2.ip(2)), "s@example.org", &["u@d.test"], "x\n");
    assert!(
        out.starts_with(&format!("DConnected to {} but greeting failed.", net2.ip(2))),
        "{out}"
    );
}

#[test]
fn dns_answers_classified() {
    let net = Net::new();
    let mut recs = mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]);
    recs.push(format!("--host-record=amx.test,{}", net.ip(2)));
    recs.push("--cname=alias.test,d.test".into());
    recs.push("--mx-host=nowhere.test,gone.test,10".into());
    recs.push("--host-record=self.test,127.0.0.1".into());
    recs.push("--txt-record=empty.test,nothing here".into());
    let (_dns, dns_port) = dnsmasq(&net, &recs);
    let sb = Sandbox::new();
    sender_root(&sb, &net, dns_port);
    let server = Scripted::start(&net.addr(2), Script::default());
    let k = format!("r|K{} accepted message.", net.ip(2));
    // no MX: the A record; a CNAME is followed
    assert!(remote(&sb, "amx.test", "s@x", &["u@amx.test"], "x\n").starts_with(&k));
    assert!(remote(&sb, "alias.test", "s@x", &["u@alias.test"], "x\n").starts_with(&k));
    assert_eq!(server.got().len(), 2);
    let nx = remote(&sb, "nx.test", "s@x", &["u@nx.test"], "x\n");
    assert_eq!(nx, "DSorry, I couldn't find any host named nx.test. (#5.1.2)\n|");
    let none = remote(&sb, "nowhere.test", "s@x", &["u@nowhere.test"], "x\n");
    assert!(none.starts_with("DSorry, I couldn't find a mail exchanger or IP address"), "{none}");
    assert!(none.contains("(#5.4.4)"), "{none}");
    let empty = remote(&sb, "empty.test", "s@x", &["u@empty.test"], "x\n");
    assert!(empty.contains("(#5.4.4)"), "{empty}");
    let me = remote(&sb, "self.test", "s@x", &["u@self.test"], "x\n");
    assert!(me.starts_with("DSorry. Although I'm listed as a best-preference MX"), "{me}");
    assert!(me.contains("(#5.4.6)"), "{me}");
    // no DNS server: temporary
    let dead = Net::new();
    sender_root(&sb, &dead, 5300 + u16::from(dead.b));
    let soft = remote(&sb, "d.test", "s@x", &["u@d.test"], "x\n");
    assert!(soft.starts_with("ZSorry, I couldn't look up d.test just now"), "{soft}");
    assert!(soft.contains("(#4.1.2)"), "{soft}");
}

#[test]
fn smtproutes_override_dns() {
    let net = Net::new();
    let recs = mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]);
    let (_dns, dns_port) = dnsmasq(&net, &recs);
    let sb = Sandbox::new();
    sender_root(&sb, &net, dns_port);
    let routed = Scripted::start(&net.addr(3), Script::default());
    let other = Net::new();
    let other_port = Scripted::start(&other.addr(4), Script::default());
    // .2 (the MX) has no server: only the routes can deliver
    sb.control(
        "smtproutes",
        &format!(
            "d.test:[{}]\n.sub.test:mx.d.test\nx.test:[{}]:{}\n",
            net.ip(3),
            other.ip(4),
            other.port
        ),
    );
    let out = remote(&sb, "d.test", "s@x", &["u@d.test"], "x\n");
    assert!(out.starts_with(&format!("r|K{} accepted", net.ip(3))), "{out}");
    assert_eq!(routed.got().len(), 1);
    let out = remote(&sb, "x.test", "s@x", &["u@x.test"], "x\n");
    assert!(out.starts_with(&format!("r|K{} accepted", other.ip(4))), "relay:port: {out}");
    assert_eq!(other_port.got().len(), 1);
    // a route to a name: its address, no MX (nothing listens on .2: refused)
    let out = remote(&sb, "a.sub.test", "s@x", &["u@a.sub.test"], "x\n");
    assert!(out.contains(&format!("Connection to {} failed", net.ip(2))), "{out}");
    // an empty relay means "use MX records"; the empty key is the default route
    sb.control("smtproutes", &format!("d.test:\n:[{}]\n", net.ip(3)));
    let out = remote(&sb, "d.test", "s@x", &["u@d.test"], "x\n");
    assert!(out.starts_with("ZSorry, I wasn't able to establish"), "{out}");
    let out = remote(&sb, "elsewhere.example", "s@x", &["u@elsewhere.example"], "x\n");
    assert!(out.starts_with(&format!("r|K{} accepted", net.ip(3))), "{out}");
    // AUTH in a route is refused rather than ignored
    sb.control("smtproutes", "d.test:relay.test user secret\n");
    let out = remote(&sb, "d.test", "s@x", &["u@d.test"], "x\n");
    assert!(out.starts_with("Zsmtproutes asks for SMTP AUTH"), "{out}");
}

#[test]
fn usage_and_configuration_errors_are_records() {
    let sb = Sandbox::new();
    let out = remote_output(&sb, "d.test", "s@x", &[], "x\n");
    assert_eq!(code(&out), 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\0"
    );
    sb.control("outgoingip", "not-an-ip\n");
    let out = remote(&sb, "[127.0.0.1]", "s@x", &["u@x"], "x\n");
    assert!(out.starts_with("Zcontrol/outgoingip is not an address"), "{out}");
    fs::remove_file(sb.home.join("control/outgoingip")).unwrap();
    fs::remove_file(sb.home.join("control/me")).unwrap();
    let out = remote(&sb, "[127.0.0.1]", "s@x", &["u@x"], "x\n");
    assert!(out.starts_with("ZNeither control/helohost nor control/me exists."), "{out}");
    sb.control("me", "mx.example.org\n");
    let out = remote(&sb, "[127.0.0.1]", "s\r\n@x", &["u@x"], "x\n");
    assert_eq!(out, "DThe sender address holds a line break or NUL. (#5.1.7)\n|");
}

#[test]
fn outgoingip_is_the_source_address() {
    let net = Net::new();
    let listener = TcpListener::bind(net.addr(2)).unwrap();
    let sb = Sandbox::new();
    sender_root(&sb, &net, 1);
    sb.control("outgoingip", &format!("{}\n", net.ip(9)));
    let peer = std::thread::spawn(move || {
        let (mut c, from) = listener.accept().unwrap();
        let _ = c.write_all(b"554 no thanks\r\n");
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
        from.ip().to_string()
    });
    let out = remote(&sb, &format!("[{}]", net.ip(2)), "s@x", &["u@x"], "x\n");
    assert!(out.starts_with("DConnected to"), "{out}");
    assert_eq!(peer.join().unwrap(), net.ip(9));
}

// ---------------------------------------------------------------------------------------------
// Hostile peers: temporary failures, bounded memory.

/// Serve one connection on `addr` with `f`, on a thread.
fn one_peer(addr: &str, f: impl FnOnce(TcpStream) + Send + 'static) -> std::thread::JoinHandle<()> {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        if let Ok((c, _)) = listener.accept() {
            f(c)
        }
    })
}

/// The peak resident size (VmHWM) of a running process, in kB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_10_mb_reply_line_is_a_temporary_failure_in_bounded_memory() {
    let net = Net::new();
    let sb = Sandbox::new();
    sender_root(&sb, &net, 1);
    let sent = Arc::new(AtomicBool::new(false));
    let hang_up = Arc::new(AtomicBool::new(false));
    let (s2, h2) = (sent.clone(), hang_up.clone());
    let peer = one_peer(&net.addr(2), move |mut c| {
        let _ = c.write_all(b"220 hostile ESMTP\r\n");
        let mut line = [0u8; 256];
        let _ = c.read(&mut line);
        let _ = c.write_all(b"250 ");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
        s2.store(true, Ordering::SeqCst);
        // no line end: hold the connection until the test has measured
        while !h2.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let path = sb.tmp.path().join("msg");
    fs::write(&path, "x\n").unwrap();
    let child = sb
        .cmd("qmail-remote")
        .args([&format!("[{}]", net.ip(2)), "s@x", "u@x"])
        .stdin(File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(wait_until(LONG, || sent.load(Ordering::SeqCst)));
    // the last bytes are in flight: give the reader a moment to take them
    let mut peak = 0;
    wait_until(Duration::from_millis(300), || {
        peak = vm_hwm(pid).unwrap_or(0);
        false
    });
    hang_up.store(true, Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    peer.join().unwrap();
    assert!(peak > 0 && peak < 10 * 1024, "qmail-remote's peak resident size: {peak} kB");
    let text = String::from_utf8_lossy(&out.stdout).replace('\0', "|");
    assert!(
        text.starts_with(&format!("ZConnected to {} but connection died. (#4.4.2)", net.ip(2))),
        "{text}"
    );
}

#[test]
fn replies_without_crlf_and_closes_mid_data_are_temporary() {
    let net = Net::new();
    let sb = Sandbox::new();
    sender_root(&sb, &net, 1);
    sb.control("timeoutremote", "2\n");
    let target = format!("[{}]", net.ip(2));
    // a greeting without its line end, then the connection closes
    let p = one_peer(&net.addr(2), |mut c| {
        let _ = c.write_all(b"220 no line end");
    });
    let out = remote(&sb, &target, "s@x", &["u@x"], "x\n");
    p.join().unwrap();
    assert!(out.starts_with("ZConnected to"), "{out}");
    assert!(out.contains("connection died. (#4.4.2)"), "{out}");
    // an EHLO reply without its line end, and then silence: the read times out
    let p = one_peer(&net.addr(2), |mut c| {
        let _ = c.write_all(b"220 hi\r\n");
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"250 ok");
        let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = c.read(&mut buf);
    });
    let out = remote(&sb, &target, "s@x", &["u@x"], "x\n");
    p.join().unwrap();
    assert!(out.contains("connection died. (#4.4.2)"), "{out}");
    // the server closes in the middle of DATA
    let p = one_peer(&net.addr(2), |c| {
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        let _ = w.write_all(b"220 hi\r\n");
        let mut line = String::new();
        for reply in ["250 hi\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n"] {
            line.clear();
            let _ = r.read_line(&mut line);
            let _ = w.write_all(reply.as_bytes());
        }
        line.clear();
        let _ = r.read_line(&mut line);
    });
    let big = "a line of the message\n".repeat(200_000);
    let out = remote(&sb, &target, "s@x", &["u@x"], &big);
    p.join().unwrap();
    assert!(out.starts_with("r|ZConnected to"), "{out}");
    assert!(out.contains("connection died."), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The timeout table.

/// A listener on `addr` whose accept queue is full: further connects time out.
fn full_backlog(addr: &str) -> (socket2::Socket, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().unwrap();
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&addr.into()).unwrap();
    l.listen(0).unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        match s.connect_timeout(&addr.into(), Duration::from_millis(300)) {
            Ok(()) => held.push(s),
            Err(_) => return (l, held),
        }
    }
    panic!("the backlog of {addr} never filled");
}

#[test]
fn a_timed_out_host_enters_the_table_and_qmail_tcpok_clears_it() {
    let net = Net::new();
    let sb = Sandbox::new();
    sender_root(&sb, &net, 1);
    sb.control("timeoutconnect", "1\n");
    let (_listener, _held) = full_backlog(&net.addr(2));
    let ip = net.ip(2);
    let out = remote(&sb, &format!("[{ip}]"), "s@x", &["u@x"], "x\n");
    assert!(out.contains(&format!("Connection to {ip} timed out.")), "{out}");
    let shown = sb.run("qmail-tcpto", &[], b"");
    assert_ok(&shown, "qmail-tcpto");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.starts_with(&format!("{ip} timed out ")), "{text}");
    assert!(text.ends_with(" seconds ago; # recent timeouts: 1\n"), "{text}");
    // two recent timeouts: the host is skipped without a connection attempt
    let table = sb.queue().join("lock/tcpto");
    let mut bytes = fs::read(&table).unwrap();
    assert_eq!(bytes.len(), 1024);
    bytes[4] = 2;
    fs::write(&table, &bytes).unwrap();
    let out = remote(&sb, &format!("[{ip}]"), "s@x", &["u@x"], "x\n");
    assert!(out.contains(&format!("{ip} is in the timeout table")), "{out}");
    let ok = sb.run("qmail-tcpok", &[], b"");
    assert_ok(&ok, "qmail-tcpok");
    assert!(ok.stdout.is_empty());
    assert_eq!(fs::read(&table).unwrap(), vec![0u8; 1024]);
    let shown = sb.run("qmail-tcpto", &[], b"");
    assert_ok(&shown, "qmail-tcpto");
    assert!(shown.stdout.is_empty());
    // a table that cannot be opened is a fatal error for both tools
    fs::remove_file(&table).unwrap();
    assert_eq!(code(&sb.run("qmail-tcpto", &[], b"")), 111);
    assert_eq!(code(&sb.run("qmail-tcpok", &[], b"")), 111);
}

// ---------------------------------------------------------------------------------------------
// Through the whole system: qmail-send, qmail-rspawn, bounces, retries.

fn sandbox_with_sender(net: &Net, dns_port: u16) -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::for_delivery();
    sender_root(&sb, net, dns_port);
    let (uid, gid, home) = sb.user_home("snd");
    sb.assign(&[("snd", uid, gid, &home)]);
    (sb, home)
}

#[test]
fn a_5xx_on_one_of_three_recipients_bounces_only_that_one() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let (sb, home) = sandbox_with_sender(&net, dns_port);
    let server =
        Scripted::start(&net.addr(2), Script { refuse: Some("bad".into()), ..Script::default() });
    let run = sb.start();
    sb.inject(
        &["-fsnd@example.org", "a@d.test", "bad@d.test", "c@d.test"],
        "From: snd@example.org\nSubject: three\n\nhello\n",
    );
    assert!(
        wait_until(LONG, || Sandbox::maildir_new(&home).len() == 1),
        "no bounce; log:\n{}",
        run.log_text()
    );
    let bounce = fs::read_to_string(&Sandbox::maildir_new(&home)[0]).unwrap();
    assert!(bounce.contains("<bad@d.test>:"), "{bounce}");
    assert!(bounce.contains("Remote host said: 550 no such user"), "{bounce}");
    assert!(!bounce.contains("<a@d.test>:") && !bounce.contains("<c@d.test>:"), "{bounce}");
    let mut to: Vec<String> = server.got().iter().flat_map(|g| g.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["<a@d.test>", "<c@d.test>"]);
    assert!(
        wait_until(LONG, || sb.check_queue() == 0),
        "queue not empty; log:\n{}",
        run.log_text()
    );
}

#[test]
fn a_4xx_on_data_keeps_the_message_queued_until_the_retry() {
    use nix::sys::signal::Signal;
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let (sb, home) = sandbox_with_sender(&net, dns_port);
    let server = Scripted::start(&net.addr(2), Script { data_fails: 1, ..Script::default() });
    let run = sb.start();
    sb.inject(&["-fsnd@example.org", "later@d.test"], "Subject: retry\n\nagain\n");
    assert!(
        run.wait_log(LONG, |l| l.contains("deferral:") && l.contains("failed_on_DATA_command")),
        "no deferral; log:\n{}",
        run.log_text()
    );
    assert!(server.got().is_empty());
    assert_eq!(sb.check_queue(), 1, "still queued");
    run.signal(Signal::SIGALRM, &sb.home);
    assert!(wait_until(LONG, || server.got().len() == 1), "not retried; log:\n{}", run.log_text());
    assert!(wait_until(LONG, || sb.check_queue() == 0), "not done; log:\n{}", run.log_text());
    assert!(Sandbox::maildir_new(&home).is_empty(), "no bounce");
    assert_eq!(String::from_utf8_lossy(&server.got()[0].data).matches("again").count(), 1);
}

#[test]
fn end_to_end_smtp_in_relay_out_to_a_second_root() {
    let net = Net::new();
    let mut recs = mx_records(&net, "dest.test", &[(10, "mx.dest.test", 3)]);
    recs.push(format!("--host-record=in.test,{}", net.ip(2)));
    let (_dns, dns_port) = dnsmasq(&net, &recs);
    // the receiving root: dest.test is local; qmail-smtpd on .3
    let b = Sandbox::for_delivery();
    b.control("locals", "mx.example.org\nexample.org\ndest.test\n");
    let (uid, gid, home) = b.user_home("kim");
    b.assign(&[("kim", uid, gid, &home)]);
    // it offers STARTTLS, which the sending side takes (opportunistic)
    b.control("smtpcert", &server_pem(None, &["mx.dest.test"], false));
    let b_run = b.start();
    let _b_smtpd = tcpserver_smtpd(&b, &net.ip(3), net.port, &[]);
    // the sending root: SMTP in on .2 with RELAYCLIENT set, remote delivery out
    let a = Sandbox::for_delivery();
    sender_root(&a, &net, dns_port);
    let a_run = a.start();
    let _a_smtpd = tcpserver_smtpd(&a, &net.ip(2), net.port, &[("RELAYCLIENT", "")]);
    let out = Command::new("swaks")
        .args(["--server", &net.addr(2)])
        .args(["--from", "sender@example.org", "--to", "kim@dest.test", "--pipeline"])
        .args(["--header", "Subject: across", "--body", "hello across\n.dot line"])
        .output()
        .expect("swaks must be installed");
    assert_ok(&out, "swaks");
    let text = one_delivered(&home, &a_run, &b_run);
    assert!(
        text.starts_with("Return-Path: <sender@example.org>\nDelivered-To: kim@dest.test\n"),
        "{text}"
    );
    assert!(text.contains("Subject: across\n"), "{text}");
    assert!(text.contains("hello across\n.dot line"), "{text}");
    assert_eq!(text.matches("Received: from ").count(), 2, "one per qmail-smtpd: {text}");
    assert_eq!(text.matches(" encrypted SMTP\n").count(), 1, "the relayed hop: {text}");
    assert!(
        a_run.wait_log(LONG, |l| l.contains("success:")
            && l.contains("accepted_message")
            && l.contains("/TLS:_TLSv1.3_cipher_TLS13_")
            && l.contains("certificate_not_verified")),
        "log:\n{}",
        a_run.log_text()
    );
    assert!(wait_until(LONG, || a.check_queue() == 0));
}

/// Wait for the one message in `home`'s Maildir, sent by the root running `a_run` to the one
/// running `b_run` (both logs shown if it does not come); its text.
fn one_delivered(home: &std::path::Path, a_run: &Running, b_run: &Running) -> String {
    assert!(
        wait_until(LONG, || Sandbox::maildir_new(home).len() == 1),
        "not delivered; sending log:\n{}\nreceiving log:\n{}",
        a_run.log_text(),
        b_run.log_text()
    );
    fs::read_to_string(&Sandbox::maildir_new(home)[0]).unwrap()
}

/// qmail-smtpd of `sb` under `tcpserver -HRl0 ip port` (as nobody when root), ready.
fn tcpserver_smtpd(sb: &Sandbox, ip: &str, port: u16, env: &[(&str, &str)]) -> Guard {
    let mut cmd = Command::new("tcpserver");
    for k in
        ["TCPREMOTEIP", "TCPREMOTEHOST", "TCPLOCALIP", "TCPLOCALHOST", "RELAYCLIENT", "DATABYTES"]
    {
        cmd.env_remove(k);
    }
    cmd.env("QMAILHOME", &sb.home).env_remove("QMAILQUEUE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if is_root() {
        // the root belongs to nobody (Sandbox::for_delivery): so must the queued messages
        cmd.args(["-u", "65534", "-g", "65534"]);
    }
    cmd.args(["-HRl0", ip, &port.to_string()])
        .arg(bin("qmail-smtpd"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let guard = Guard(cmd.spawn().expect("tcpserver (ucspi-tcp) must be installed"));
    let addr = format!("{ip}:{port}");
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(&addr).is_ok()),
        "tcpserver did not start on {addr}"
    );
    guard
}

/// A route whose relay is a bare IPv4 address and port (`domain:127.0.0.1:PORT`, no DNS
/// involved) carries a message from one root to the SMTP listener of another; a relay that
/// only looks like an address keeps the message queued (#4.3.5) until the route is fixed.
#[test]
fn a_route_to_a_bare_address_and_port_reaches_a_second_root() {
    use nix::sys::signal::Signal;
    // the receiving root: route.test is local; qmailctl run's listener on 127.0.0.1
    let b = Sandbox::for_delivery();
    b.control("locals", "mx.example.org\nexample.org\nroute.test\n");
    let (uid, gid, home) = b.user_home("kim");
    b.assign(&[("kim", uid, gid, &home)]);
    let (b_run, port) = b.start_smtp();
    // the sending root, first with a relay that is no address (one number short)
    let a = Sandbox::for_delivery();
    a.control("smtproutes", &format!("route.test:127.0.0:{port}\n"));
    let a_run = a.start();
    a.inject(&["-fsnd@example.org", "kim@route.test"], "Subject: routed\n\nby address\n");
    assert!(
        a_run.wait_log(LONG, |l| l.contains("deferral:")
            && l.contains("bad_relay:_127.0.0:")
            && l.contains("(#4.3.5)")),
        "no deferral; log:\n{}",
        a_run.log_text()
    );
    assert_eq!(a.check_queue(), 1, "still queued");
    a.control("smtproutes", &format!("route.test:127.0.0.1:{port}\n"));
    a_run.signal(Signal::SIGALRM, &a.home);
    let text = one_delivered(&home, &a_run, &b_run);
    assert!(
        text.starts_with("Return-Path: <snd@example.org>\nDelivered-To: kim@route.test\n"),
        "{text}"
    );
    assert!(text.contains("Subject: routed\n") && text.ends_with("by address\n"), "{text}");
    assert!(
        a_run.wait_log(LONG, |l| l.contains("success:") && l.contains("127.0.0.1_accepted")),
        "log:\n{}",
        a_run.log_text()
    );
    assert!(wait_until(LONG, || a.check_queue() == 0), "log:\n{}", a_run.log_text());
    assert_eq!(a_run.count_log(|l| l.contains("failure:")), 0, "{}", a_run.log_text());
}

#[test]
fn qmail_rspawn_zeroes_the_table_at_start() {
    let sb = Sandbox::new();
    let table = sb.queue().join("lock/tcpto");
    let mut bytes = vec![0u8; 1024];
    bytes[..5].copy_from_slice(&[192, 0, 2, 1, 3]);
    fs::write(&table, &bytes).unwrap();
    // end of input at once: the handshake, then exit 0
    let out = sb.run("qmail-rspawn", &[], b"");
    assert_ok(&out, "qmail-rspawn");
    assert_eq!(out.stdout, 500u16.to_le_bytes());
    assert_eq!(fs::read(&table).unwrap(), vec![0u8; 1024]);
}

// ---------------------------------------------------------------------------------------------
// STARTTLS out: opportunistic, verified (control/tlsdestinations), refused, and the fallbacks.

/// A test CA made with rcgen: its certificate in PEM, and what signs.
struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn test_ca(name: &str) -> TestCa {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    TestCa { pem, issuer: rcgen::Issuer::new(params, key) }
}

/// A server certificate for `names` signed by `ca` (self-signed when `None`), valid now or
/// (with `expired`) only for a day a year ago: certificate and key in one PEM.
fn server_pem(ca: Option<&TestCa>, names: &[&str], expired: bool) -> String {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0].clone());
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    if expired {
        params.not_before = (now - 366 * day).into();
        params.not_after = (now - 365 * day).into();
    } else {
        params.not_before = (now - day).into();
        params.not_after = (now + 30 * day).into();
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// A receiving root whose qmail-smtpd (under tcpserver on `ip`) offers STARTTLS with `pem`
/// (none: no STARTTLS) and takes mail for d.test; it does not deliver.
fn tls_receiver(net: &Net, n: u8, pem: Option<&str>) -> (Sandbox, Guard) {
    let sb = Sandbox::for_delivery();
    sb.control("rcpthosts", "d.test\n");
    if let Some(pem) = pem {
        sb.control("smtpcert", pem);
    }
    let guard = tcpserver_smtpd(&sb, &net.ip(n), net.port, &[]);
    (sb, guard)
}

/// Write `pem` into the sending root's control directory as `name`; its path.
fn control_file(sb: &Sandbox, name: &str, pem: &str) -> String {
    let path = sb.home.join("control").join(name);
    fs::write(&path, pem).unwrap();
    path.display().to_string()
}

/// Opportunistic by default: the server offers STARTTLS, any certificate is taken, and the
/// success line and the receiver's Received line say TLS; under `control/tlsdestinations`
/// the certificate is checked against a CA file and the MX's name; `-` means plaintext.
#[test]
fn starttls_opportunistic_verified_and_off() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let ca = test_ca("Test CA");
    let (b, _smtpd) = tls_receiver(&net, 2, Some(&server_pem(Some(&ca), &["mx.d.test"], false)));
    let a = Sandbox::new();
    sender_root(&a, &net, dns_port);
    let ip = net.ip(2);
    // opportunistic
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: one\n\nx\n");
    assert!(
        out.starts_with(&format!("r|K{ip} accepted message.\nRemote host said: 250 ")),
        "{out}"
    );
    assert!(out.contains("\nTLS: TLSv1.3 cipher TLS13_"), "{out}");
    assert!(out.ends_with(", certificate not verified.\n|"), "{out}");
    let got = b.todo();
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0].mess);
    assert!(
        text.contains("with (TLSv1.3 cipher TLS13_") && text.contains("encrypted SMTP"),
        "{text}"
    );
    // verified against the CA file, by the MX's name
    let cafile = control_file(&a, "test-ca.pem", &ca.pem);
    a.control("tlsdestinations", &format!("# the test's domain\nd.test:{cafile}\n"));
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: two\n\nx\n");
    assert!(out.starts_with(&format!("r|K{ip} accepted message.")), "{out}");
    assert!(out.ends_with(", certificate verified.\n|"), "{out}");
    // the rule may name the server instead of the domain
    a.control("tlsdestinations", &format!(".d.test:{cafile}:5\n"));
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: three\n\nx\n");
    assert!(out.ends_with(", certificate verified.\n|"), "{out}");
    // no TLS for this destination
    a.control("tlsdestinations", "d.test:-\n*:\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: four\n\nx\n");
    assert!(out.starts_with(&format!("r|K{ip} accepted message.")), "{out}");
    assert!(!out.contains("TLS"), "{out}");
    let texts: Vec<String> =
        b.todo().iter().map(|q| String::from_utf8_lossy(&q.mess).into_owned()).collect();
    let four = texts.iter().find(|t| t.contains("Subject: four")).expect("four arrived");
    assert!(four.contains(" with SMTP\n"), "{four}");
    assert_eq!(b.todo().len(), 4);
    // the cipher suites qmail-remote offers: control/tlsremoteciphers
    a.control("tlsdestinations", &format!("d.test:{cafile}\n"));
    a.control("tlsremoteciphers", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: five\n\nx\n");
    assert!(
        out.contains("\nTLS: TLSv1.2 cipher TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, certificate verified.\n"),
        "{out}"
    );
    a.control("tlsremoteciphers", "TLS13_AES_256_GCM_SHA384 RC4-MD5\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(
        out.starts_with("Zcontrol/tlsremoteciphers: unknown cipher suite RC4-MD5")
            && out.ends_with("(#4.3.5)\n|"),
        "{out}"
    );
    fs::remove_file(a.home.join("control/tlsremoteciphers")).unwrap();
    assert_eq!(b.todo().len(), 5);
    // a broken rule is a temporary failure, never a silent downgrade
    a.control("tlsdestinations", "d.test /ca.pem\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(
        out.starts_with("Zcontrol/tlsdestinations: no colon in line") && out.contains("(#4.3.5)"),
        "{out}"
    );
    // an unreadable CA file too, naming it
    a.control("tlsdestinations", "d.test:/nonexistent/ca.pem\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(out.starts_with("ZUnable to set up TLS: unable to read /nonexistent/ca.pem"), "{out}");
    assert_eq!(b.todo().len(), 5);
}

/// A certificate that does not pass (another CA, another name, expired, self-signed against
/// the system store) or a server without STARTTLS: under `verify` the message stays queued
/// (Z, #4.7.5) and nothing is sent in plaintext.
#[test]
fn verified_tls_failures_defer_and_never_fall_back() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let ca = test_ca("Test CA");
    let other = test_ca("Other CA");
    let a = Sandbox::new();
    sender_root(&a, &net, dns_port);
    let cafile = control_file(&a, "test-ca.pem", &ca.pem);
    let rows: Vec<(&str, Option<String>, String, &str)> = vec![
        (
            "another CA",
            Some(server_pem(Some(&other), &["mx.d.test"], false)),
            format!("d.test:{cafile}"),
            "UnknownIssuer",
        ),
        (
            "another name",
            Some(server_pem(Some(&ca), &["mx.e.test"], false)),
            format!("d.test:{cafile}"),
            "not valid for name",
        ),
        (
            "expired",
            Some(server_pem(Some(&ca), &["mx.d.test"], true)),
            format!("d.test:{cafile}"),
            "certificate expired",
        ),
        (
            "self-signed, system store",
            Some(server_pem(None, &["mx.d.test"], false)),
            "d.test:".to_string(),
            "UnknownIssuer",
        ),
        ("no STARTTLS", None, format!("d.test:{cafile}"), "does not offer STARTTLS"),
    ];
    for (what, pem, rule, why) in rows {
        let (b, smtpd) = tls_receiver(&net, 2, pem.as_deref());
        a.control("tlsdestinations", &format!("{rule}\n"));
        let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: no\n\nx\n");
        assert!(
            out.starts_with("ZSorry, I couldn't make the TLS session control/tlsdestinations requires. (#4.7.5)\n"),
            "{what}: {out}"
        );
        assert!(out.contains(why), "{what}: wanted {why:?} in {out}");
        assert!(b.todo().is_empty(), "{what}: nothing sent");
        drop(smtpd);
    }
}

/// A verified destination whose first MX fails the check: the next MX takes the message.
#[test]
fn a_failed_tls_check_tries_the_next_mx() {
    let net = Net::new();
    let mxs = mx_records(&net, "d.test", &[(10, "mx1.d.test", 2), (20, "mx2.d.test", 3)]);
    let (_dns, dns_port) = dnsmasq(&net, &mxs);
    let ca = test_ca("Test CA");
    let (b1, _s1) = tls_receiver(&net, 2, Some(&server_pem(Some(&ca), &["wrong.d.test"], false)));
    let (b2, _s2) = tls_receiver(&net, 3, Some(&server_pem(Some(&ca), &["mx2.d.test"], false)));
    let a = Sandbox::new();
    sender_root(&a, &net, dns_port);
    let cafile = control_file(&a, "test-ca.pem", &ca.pem);
    a.control("tlsdestinations", &format!("d.test:{cafile}\n"));
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: next\n\nx\n");
    assert!(out.starts_with(&format!("r|K{} accepted message.", net.ip(3))), "{out}");
    assert!(out.ends_with(", certificate verified.\n|"), "{out}");
    assert!(b1.todo().is_empty());
    assert_eq!(b2.todo().len(), 1);
}

/// Opportunistic TLS whose handshake fails (the server answers 220 to STARTTLS and then
/// sends no TLS): the same server is tried again in plaintext, and the success says so.
/// Under `verify` the same server gets nothing.
#[test]
fn a_failed_opportunistic_handshake_is_retried_in_plaintext() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let garbage = Some("this is no TLS record\r\n");
    let server = Scripted::start(&net.addr(2), Script { broken_tls: garbage, ..Script::default() });
    let a = Sandbox::new();
    sender_root(&a, &net, dns_port);
    let ip = net.ip(2);
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: retry\n\nx\n");
    assert!(
        out.starts_with(&format!("r|K{ip} accepted message.\nRemote host said: 250 accepted\n")),
        "{out}"
    );
    assert!(out.contains(&format!("TLS handshake with {ip} failed: ")), "{out}");
    assert!(out.ends_with("Sent in plaintext after that.\n|"), "{out}");
    assert_eq!(server.got().len(), 1);
    // a server that stalls after its 220: the handshake times out (timeoutremote)
    a.control("timeoutremote", "1\n");
    let stalls =
        Scripted::start(&net.addr(3), Script { broken_tls: Some(""), ..Script::default() });
    let out = remote(&a, &format!("[{}]", net.ip(3)), "s@example.org", &["u@d.test"], "x\n");
    assert!(
        out.contains(&format!("TLS handshake with {} failed: timed out.\n", net.ip(3))),
        "{out}"
    );
    assert!(out.starts_with("r|K") && out.ends_with("Sent in plaintext after that.\n|"), "{out}");
    assert_eq!(stalls.got().len(), 1);
    a.control("timeoutremote", "10\n");
    a.control("tlsdestinations", "d.test:\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: retry\n\nx\n");
    assert!(out.starts_with("ZSorry, I couldn't make the TLS session"), "{out}");
    assert_eq!(server.got().len(), 1, "nothing more in plaintext");
}

/// qmail-remote's client certificate (`control/remotecert`) reaches the server: a Python
/// TLS server that requires one and checks it against the test CA.
#[test]
fn remotecert_is_the_client_certificate() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let ca = test_ca("Test CA");
    let a = Sandbox::new();
    sender_root(&a, &net, dns_port);
    let dir = a.tmp.path();
    fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    fs::write(dir.join("server.pem"), server_pem(Some(&ca), &["mx.d.test"], false)).unwrap();
    // a minimal SMTP server in Python that requires a client certificate from the test CA
    let script = r#"
import socket, ssl, sys
ip, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/server.pem")
ctx.load_verify_locations(d + "/ca.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
ls = socket.create_server((ip, port))
print("ready", flush=True)
c, _ = ls.accept()
f = c.makefile("rb")
def say(t): c.sendall(t.encode() + b"\r\n")
say("220 py ESMTP")
f.readline(); say("250-py\r\n250 STARTTLS")
f.readline(); say("220 go")
t = ctx.wrap_socket(c, server_side=True)
subject = dict(x[0] for x in t.getpeercert()["subject"])["commonName"]
f = t.makefile("rb")
def say(l): t.sendall(l.encode() + b"\r\n")
f.readline(); say("250 py")
f.readline(); say("250 ok")
f.readline(); say("250 ok")
f.readline(); say("354 go")
while f.readline() != b".\r\n": pass
say("250 client " + subject)
"#;
    let mut py = Command::new("python3")
        .args(["-c", script, &net.ip(2), &net.port.to_string(), dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(py.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready, "ready\n");
    control_file(&a, "remotecert", &server_pem(Some(&ca), &["client.example.org"], false));
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: cert\n\nx\n");
    let _ = py.wait();
    assert!(out.contains("Remote host said: 250 client client.example.org\n"), "{out}");
    // a remotecert that is no certificate: a temporary failure naming it
    control_file(&a, "remotecert", "junk\n");
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "x\n");
    assert!(
        out.starts_with("ZUnable to set up TLS: ") && out.contains("remotecert: no certificate"),
        "{out}"
    );
}

/// A private Postfix (Debian's) on `net.ip(n)` and the test's port, delivering d.test into a
/// Maildir, its smtpd offering STARTTLS with `pem` (certificate and key). Needs root, as
/// Postfix's master does. Stopped when dropped.
struct Postfix {
    dir: TempDir,
}

impl Postfix {
    fn start(net: &Net, n: u8, pem: &str) -> Self {
        assert!(is_root(), "running Postfix for this test needs root");
        let dir = TempDir::new("postfix");
        let d = dir.path();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in [
            "etc",
            "queue",
            "data",
            "mail/box/Maildir/cur",
            "mail/box/Maildir/new",
            "mail/box/Maildir/tmp",
        ] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let chown = |path: &str, who: &str| {
            let out = Command::new("chown").args(["-R", who]).arg(d.join(path)).output().unwrap();
            assert_ok(&out, "chown");
        };
        chown("mail", "65534:65534");
        chown("data", "postfix");
        fs::write(d.join("etc/tls.pem"), pem).unwrap();
        let master =
            fs::read_to_string("/etc/postfix/master.cf").expect("postfix must be installed");
        let listen = format!("{}:{}", net.ip(n), net.port);
        let master: String = master
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 8 && !l.starts_with(['#', ' ', '\t']) {
                    // no chroot; the SMTP service on the test's address
                    let name =
                        if f[0] == "smtp" && f[1] == "inet" { listen.as_str() } else { f[0] };
                    let chroot = if f[4] == "y" { "n" } else { f[4] };
                    format!("{name} {} {} {} {chroot} {}\n", f[1], f[2], f[3], f[5..].join(" "))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(d.join("etc/master.cf"), master).unwrap();
        let p = d.display();
        fs::write(
            d.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {p}/queue\n\
                 data_directory = {p}/data\nmail_owner = postfix\nsetgid_group = postdrop\n\
                 inet_interfaces = all\ninet_protocols = ipv4\nmyhostname = pf.d.test\n\
                 mydestination =\nlocal_recipient_maps =\nalias_maps =\nalias_database =\n\
                 virtual_mailbox_domains = d.test\nvirtual_mailbox_base = {p}/mail\n\
                 virtual_mailbox_maps = static:box/Maildir/\nvirtual_uid_maps = static:65534\n\
                 virtual_gid_maps = static:65534\nmynetworks = 127.0.0.0/8\n\
                 maillog_file = {p}/maillog\nmaillog_file_prefixes = {p}\n\
                 smtpd_tls_cert_file = {p}/etc/tls.pem\nsmtpd_tls_key_file = {p}/etc/tls.pem\n\
                 smtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\n"
            ),
        )
        .unwrap();
        let out =
            Command::new("postfix").arg("-c").arg(d.join("etc")).arg("start").output().unwrap();
        let pf = Postfix { dir };
        assert!(out.status.success(), "postfix start failed; log:\n{}", pf.log());
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect(&listen).is_ok()),
            "Postfix did not start on {listen}; log:\n{}",
            pf.log()
        );
        pf
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn maildir(&self) -> std::path::PathBuf {
        self.dir.path().join("mail/box")
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ =
            Command::new("postfix").arg("-c").arg(self.dir.path().join("etc")).arg("stop").output();
    }
}

/// qmail-remote to a real Postfix smtpd with TLS: opportunistic, then verified against the
/// test CA by the MX's name; Postfix's Received line records the TLS session.
#[test]
fn starttls_to_postfix() {
    let net = Net::new();
    let (_dns, dns_port) = dnsmasq(&net, &mx_records(&net, "d.test", &[(10, "mx.d.test", 2)]));
    let ca = test_ca("Test CA");
    let pf = Postfix::start(&net, 2, &server_pem(Some(&ca), &["mx.d.test"], false));
    let a = Sandbox::new();
    sender_root(&a, &net, dns_port);
    let ip = net.ip(2);
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: pf one\n\nx\n");
    assert!(out.starts_with(&format!("r|K{ip} accepted message.")), "{out}\n{}", pf.log());
    assert!(out.contains("\nTLS: TLSv1.3 cipher ") && out.ends_with("not verified.\n|"), "{out}");
    let cafile = control_file(&a, "test-ca.pem", &ca.pem);
    a.control("tlsdestinations", &format!("d.test:{cafile}\n"));
    let out = remote(&a, "d.test", "s@example.org", &["u@d.test"], "Subject: pf two\n\nx\n");
    assert!(out.ends_with(", certificate verified.\n|"), "{out}\n{}", pf.log());
    assert!(
        wait_until(LONG, || Sandbox::maildir_new(&pf.maildir()).len() == 2),
        "Postfix did not deliver; log:\n{}",
        pf.log()
    );
    for f in Sandbox::maildir_new(&pf.maildir()) {
        let text = fs::read_to_string(f).unwrap();
        assert!(text.contains("(using TLSv1.3 with cipher "), "{text}");
    }
}
