//! POP-before-SMTP: the real pbsdbd on a free loopback UDP port, pbsadd and pbscheck against
//! it (with `/usr/bin/env` as the program, to see what it exports), forged datagrams sent
//! straight at the daemon, fake servers for pbscheck, and pbscheck in front of qmail-smtpd
//! under tcpserver with swaks as the client.

use crate::harness::{assert_ok, bin, code, is_root, wait_until, Guard, Sandbox};
use qmail::pbs::{Add, EnvBlock, Packet, Secret};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cret shared";
const LONG: Duration = Duration::from_secs(10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A loopback UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A sandbox whose pbs control files point at 127.0.0.1:`port`.
fn sandbox(port: u16) -> Sandbox {
    let sb = Sandbox::for_delivery();
    sb.control("pbsservers", "127.0.0.1\n");
    sb.control("pbsport", &format!("{port}\n"));
    sb.control("pbssecret", &format!("{SECRET}\n"));
    sb.control("pbsip", "127.0.0.1\n");
    sb.control("pbsenv", "PBSAUTH\nPBSUSER=AUTHUSER\nPBSDIR=MAILDIR=/var/mail/\n");
    sb
}

/// pbsdbd of `sb`; as nobody, who owns the delivery sandbox, when we are root (it refuses
/// to run as root).
fn pbsdbd(sb: &Sandbox) -> Command {
    let mut cmd = sb.cmd("pbsdbd");
    if is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    cmd
}

/// A running pbsdbd and its log.
struct Daemon {
    guard: Guard,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Start pbsdbd on `sb`'s controls; ready once it answers a query.
    fn start(sb: &Sandbox) -> Daemon {
        let port: u16 = std::fs::read_to_string(sb.home.join("control/pbsport"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut child = pbsdbd(sb).stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        let d = Daemon { guard: Guard(child), port, log };
        assert!(
            wait_until(LONG, || d.try_query(Ipv4Addr::new(192, 0, 2, 1)).is_some()),
            "pbsdbd does not answer; log:\n{}",
            d.log_text()
        );
        d
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait for a log line containing `what`.
    fn expect_log(&self, what: &str) {
        assert!(
            wait_until(LONG, || self.log.lock().unwrap().iter().any(|l| l.contains(what))),
            "no log line with {what:?}; log:\n{}",
            self.log_text()
        );
    }

    /// Send `datagram` from `from`.
    fn send_from(&self, from: Ipv4Addr, datagram: &[u8]) {
        let s = UdpSocket::bind((from, 0)).unwrap();
        s.send_to(datagram, (Ipv4Addr::LOCALHOST, self.port)).unwrap();
    }

    /// The daemon's answer about `addr`: `Some(None)` no, `Some(Some(env))` relay, `None`
    /// no answer within a second.
    fn try_query(&self, addr: Ipv4Addr) -> Option<Option<EnvBlock>> {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.send_to(&Packet::Query(addr).encode().unwrap(), (Ipv4Addr::LOCALHOST, self.port))
            .unwrap();
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = s.recv_from(&mut buf).ok()?;
            // a late answer to an earlier query, sent to a port since used again: not ours
            if from.port() != self.port {
                continue;
            }
            match Packet::decode(&buf[..n]) {
                Ok(Packet::Response(about, env)) if about == addr => return Some(env),
                Ok(Packet::Response(..)) => continue,
                other => panic!("a bad answer: {other:?}"),
            }
        }
    }

    fn query(&self, addr: Ipv4Addr) -> Option<EnvBlock> {
        self.try_query(addr).unwrap_or_else(|| panic!("no answer; log:\n{}", self.log_text()))
    }
}

/// HUP re-reads the controls: the new secret counts at once; a configuration that cannot be
/// used is logged and the old one kept.
#[test]
fn hup_rereads_the_control_files() {
    let sb = sandbox(free_udp_port());
    let d = Daemon::start(&sb);
    let hup = || {
        let pid = nix::unistd::Pid::from_raw(d.guard.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    };
    sb.control("pbssecret", "the new secret\n");
    hup();
    d.expect_log("pbsdbd: info: configuration reloaded");
    let one = Ipv4Addr::new(127, 0, 0, 11);
    d.send_from(CLIENT, &add_packet(one, SECRET, &[]));
    d.expect_log("no authorized add packet from 127.0.0.1:");
    assert_eq!(d.query(one), None, "the old secret no longer adds");
    d.send_from(CLIENT, &add_packet(one, "the new secret", &[]));
    d.expect_log("added 127.0.0.11");
    assert!(d.query(one).is_some());
    // no secret, a port elsewhere: the old configuration stays, with a warning
    std::fs::remove_file(sb.home.join("control/pbssecret")).unwrap();
    hup();
    d.expect_log("pbsdbd: warning: keeping the old configuration: control/pbssecret is missing");
    sb.control("pbssecret", "the new secret\n");
    sb.control("pbsport", &free_udp_port().to_string());
    hup();
    d.expect_log("pbsdbd: warning: still listening on 127.0.0.1:");
    let two = Ipv4Addr::new(127, 0, 0, 12);
    d.send_from(CLIENT, &add_packet(two, "the new secret", &[]));
    d.expect_log("added 127.0.0.12");
    assert!(d.query(two).is_some() && d.query(one).is_some());
}

/// An `A` datagram as pbsadd makes it.
fn add_packet(addr: Ipv4Addr, secret: &str, env: &[(&str, &str)]) -> Vec<u8> {
    let mut block = EnvBlock::new();
    for (n, v) in env {
        block.push(n.as_bytes(), v.as_bytes()).unwrap();
    }
    Packet::Add(Add { addr, secret: Secret::new(secret.as_bytes()).unwrap(), env: block })
        .encode()
        .unwrap()
}

/// Run pbsadd for `ip` with `env` (no program).
fn pbsadd(sb: &Sandbox, ip: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = sb.cmd("pbsadd");
    cmd.env("TCPREMOTEIP", ip).env_remove("NOPBS");
    for var in ["PBSAUTH", "PBSUSER", "PBSDIR"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    crate::harness::run_with(&mut cmd, b"")
}

/// Run `pbscheck /usr/bin/env` for `ip`; the exported variables (of those that matter).
fn pbscheck(sb: &Sandbox, ip: &str) -> (Output, Vec<String>) {
    let mut cmd = sb.cmd("pbscheck");
    cmd.arg("/usr/bin/env").env("TCPREMOTEIP", ip).env_remove("NOPBS");
    for var in ["RELAYCLIENT", "PBSAUTH", "PBSUSER", "PBSDIR", "AUTHUSER", "MAILDIR"] {
        cmd.env_remove(var);
    }
    let out = crate::harness::run_with(&mut cmd, b"");
    assert_ok(&out, "pbscheck /usr/bin/env");
    let vars = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            ["RELAYCLIENT=", "PBS", "AUTHUSER=", "MAILDIR="].iter().any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    (out, vars)
}

fn relays(sb: &Sandbox, ip: &str) -> bool {
    pbscheck(sb, ip).1.iter().any(|l| l == "RELAYCLIENT=")
}

#[test]
fn pbsdbd_refuses_to_start_without_a_secret() {
    let sb = sandbox(free_udp_port());
    for secret in [None, Some(""), Some("\n")] {
        match secret {
            None => std::fs::remove_file(sb.home.join("control/pbssecret")).unwrap(),
            Some(text) => sb.control("pbssecret", text),
        }
        let out = crate::harness::run_with(&mut pbsdbd(&sb), b"");
        assert_eq!(code(&out), 111, "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "pbsdbd: fatal: control/pbssecret is missing or empty: refusing to accept adds \
             without a secret\n"
        );
    }
    sb.control("pbssecret", &"x".repeat(256));
    let out = crate::harness::run_with(&mut pbsdbd(&sb), b"");
    assert_eq!(code(&out), 111);
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("pbsdbd: fatal: control/pbssecret is longer than 255 bytes"));
    sb.control("pbssecret", SECRET);
    for (name, value, says) in [
        ("pbsport", "65001", "pbsdbd: fatal: control/pbsport: 65001 is no port"),
        ("pbsport", "0", "pbsdbd: fatal: control/pbsport: 0 is no port"),
        ("pbsip", "localhost", "pbsdbd: fatal: control/pbsip: \"localhost\" is no IPv4"),
        ("pbsip", "192.0.2.1", "pbsdbd: fatal: unable to bind UDP socket 192.0.2.1:"),
    ] {
        let keep = std::fs::read_to_string(sb.home.join("control").join(name)).unwrap();
        sb.control(name, value);
        let out = crate::harness::run_with(&mut pbsdbd(&sb), b"");
        assert_eq!(code(&out), 111, "{name} {value}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(says), "{err}");
        sb.control(name, &keep);
    }
    let out = crate::harness::run_with(pbsdbd(&sb).arg("-x"), b"");
    assert_eq!(code(&out), 100);
    if is_root() {
        sb.control("pbsip", "127.0.0.1");
        let out = sb.run("pbsdbd", &[], b"");
        assert_eq!(code(&out), 111);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "pbsdbd: fatal: refusing to run as root: run it as an unprivileged user\n"
        );
    }
    assert_eq!(String::from_utf8_lossy(&out.stderr), "pbsdbd: usage: pbsdbd\n");
}

/// The whole path: pbsadd after a login, pbscheck for the same address relays and exports
/// the pbsenv variables (renamed, prefixed, unset ones empty); another address gets nothing.
#[test]
fn pbsadd_then_pbscheck_relays_with_the_pbsenv_variables() {
    let sb = sandbox(free_udp_port());
    let d = Daemon::start(&sb);
    assert!(!relays(&sb, "127.0.0.1"), "before any login");
    let out = pbsadd(&sb, "127.0.0.1", &[("PBSUSER", "kim"), ("PBSDIR", "kim/Maildir")]);
    assert_ok(&out, "pbsadd");
    assert_eq!(out.stdout, b"");
    d.expect_log("pbsdbd: info: added 127.0.0.1 (from 127.0.0.1:");
    let (check, mut vars) = pbscheck(&sb, "127.0.0.1");
    vars.sort();
    assert_eq!(
        vars,
        ["AUTHUSER=kim", "MAILDIR=/var/mail/kim/Maildir", "PBSAUTH=", "RELAYCLIENT="],
        "stderr: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (_, vars) = pbscheck(&sb, "127.0.0.2");
    assert!(vars.is_empty(), "{vars:?}");
    // the daemon's answers themselves
    let env = d.query(CLIENT).expect("relay");
    let entries: Vec<(String, String)> = env
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).into(), String::from_utf8_lossy(v).into()))
        .collect();
    let want = [("PBSAUTH", ""), ("PBSUSER", "kim"), ("PBSDIR", "kim/Maildir")];
    assert_eq!(entries, want.map(|(n, v)| (n.to_string(), v.to_string())));
    assert_eq!(d.query(Ipv4Addr::new(127, 0, 0, 2)), None);
}

#[test]
fn entries_expire_after_pbstimeout() {
    let sb = sandbox(free_udp_port());
    sb.control("pbstimeout", "1\n");
    let d = Daemon::start(&sb);
    let added = Instant::now();
    d.send_from(CLIENT, &add_packet(CLIENT, SECRET, &[]));
    assert!(d.query(CLIENT).is_some(), "just added; log:\n{}", d.log_text());
    assert!(
        wait_until(LONG, || !relays(&sb, "127.0.0.1")),
        "still relaying after {:?}",
        added.elapsed()
    );
    assert!(added.elapsed() >= Duration::from_secs(1), "expired early: {:?}", added.elapsed());
    assert_eq!(d.query(CLIENT), None);
    // a new login starts a new period
    assert_ok(&pbsadd(&sb, "127.0.0.1", &[]), "pbsadd");
    d.expect_log("pbsdbd: info: added 127.0.0.1");
    assert!(d.query(CLIENT).is_some());
}

#[test]
fn a_wrong_secret_adds_nothing() {
    let port = free_udp_port();
    let sb = sandbox(port);
    let d = Daemon::start(&sb);
    let other = sandbox(port);
    for wrong in ["s3cret share", "s3cret shared!", "S3cret shared", "x"] {
        other.control("pbssecret", wrong);
        assert_ok(&pbsadd(&other, "127.0.0.1", &[]), "pbsadd");
    }
    wait_until(LONG, || d.log_text().matches("no authorized add packet").count() == 4);
    assert_eq!(d.log_text().matches("no authorized add packet").count(), 4, "{}", d.log_text());
    assert_eq!(d.query(CLIENT), None);
    assert!(!relays(&sb, "127.0.0.1"));
}

/// Datagrams the daemon must drop, each with its warning, and nothing added by any.
#[test]
fn forged_packets_change_nothing() {
    let sb = sandbox(free_udp_port());
    let d = Daemon::start(&sb);
    let victim = Ipv4Addr::new(127, 0, 0, 9);
    let good = add_packet(victim, SECRET, &[("PBSUSER", "kim")]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let mut overrun = good.clone();
    let count_at = 7 + SECRET.len();
    overrun[count_at] = 2; // two entries announced, one there
    let mut long_entry = good.clone();
    long_entry[count_at + 1] = 200; // an entry longer than the rest
    let mut oversized = add_packet(victim, SECRET, &[]);
    oversized.resize(1025, 0);
    let mut secret_overrun = good[..7].to_vec();
    secret_overrun.push(200);
    secret_overrun.extend_from_slice(SECRET.as_bytes());
    let response = Packet::Response(victim, Some(EnvBlock::new())).encode().unwrap();
    let rows: &[(&[u8], &str)] = &[
        (&add_packet(victim, "not the secret", &[]), "no authorized add packet"),
        (&add_packet(victim, "", &[]), "no authorized add packet"),
        (&trailing, "trailing garbage at end of packet"),
        (&overrun, "environment would exceed packet size"),
        (&long_entry, "environment would exceed packet size"),
        (&secret_overrun, "environment would exceed packet size"),
        (&oversized, "packet too big"),
        (&response, "response received"),
        (b"R\x04\x7f\x00\x00\x09N", "response received"),
        (b"A\x10\x7f\x00\x00\x09", "bad packet"),
        (b"Z\x04\x7f\x00\x00\x09\x00", "bad packet"),
        (b"", "bad packet"),
    ];
    for (i, (datagram, warning)) in rows.iter().enumerate() {
        d.send_from(CLIENT, datagram);
        let want = format!("pbsdbd: warning: {warning} from 127.0.0.1:");
        assert!(
            wait_until(LONG, || d.log_text().matches(&want).count()
                >= rows[..=i].iter().filter(|(_, w)| w == warning).count()),
            "row {i}: no {want:?}; log:\n{}",
            d.log_text()
        );
        assert_eq!(d.query(victim), None, "row {i}");
    }
    // a query that is no query is not answered
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.send_to(b"Q\x04\x7f\x00\x00\x09\x00extra", ("127.0.0.1", d.port)).unwrap();
    assert!(s.recv_from(&mut [0u8; 64]).is_err(), "answered a bad query");
    // the genuine packet still works: the daemon lives and the forgeries were the only fault
    d.send_from(CLIENT, &good);
    let env = d.query(victim).expect("added");
    assert_eq!(env.iter().collect::<Vec<_>>(), [(&b"PBSUSER"[..], &b"kim"[..])]);
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}

/// An `A` datagram is valid wherever it comes from: replayed from another source, it adds
/// the address inside it again (for another pbstimeout), not its sender, and nothing else.
#[test]
fn a_replayed_add_re_adds_only_its_own_address() {
    let sb = sandbox(free_udp_port());
    let d = Daemon::start(&sb);
    let victim = Ipv4Addr::new(127, 0, 0, 9);
    let intruder = Ipv4Addr::new(127, 0, 0, 66);
    d.send_from(CLIENT, &add_packet(victim, SECRET, &[("PBSUSER", "kim")]));
    d.expect_log("added 127.0.0.9 (from 127.0.0.1:");
    let captured = add_packet(victim, SECRET, &[("PBSUSER", "kim")]);
    d.send_from(intruder, &captured);
    d.expect_log("added 127.0.0.9 (from 127.0.0.66:");
    assert!(d.query(victim).is_some());
    assert_eq!(d.query(intruder), None, "the sender of a replay gains nothing");
    // changing the address means knowing the secret: a replay with a guessed one fails
    d.send_from(intruder, &add_packet(intruder, "guess", &[]));
    d.expect_log("no authorized add packet from 127.0.0.66:");
    assert_eq!(d.query(intruder), None);
}

/// No server answers: pbscheck waits its second per try (first server, then each in
/// order) and runs the program with the environment unchanged.
#[test]
fn pbscheck_without_an_answer_runs_the_program_unchanged() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sb = sandbox(silent.local_addr().unwrap().port());
    let started = Instant::now();
    let (out, vars) = pbscheck(&sb, "127.0.0.1");
    assert!(vars.is_empty(), "{vars:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pbscheck: no response from server"));
    let mut buf = [0u8; 64];
    silent.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let (n, _) = silent.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"Q\x04\x7f\x00\x00\x01\x00", "the query");
}

/// A fake server that answers every query "relay" — from its own socket when `honest`, else
/// from another port — until dropped.
struct FakeServer {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeServer {
    fn start(honest: bool) -> FakeServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        std::thread::spawn(move || {
            let forger = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = [0u8; 64];
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(Packet::Query(addr)) = Packet::decode(&buf[..n]) else { continue };
                let mut env = EnvBlock::new();
                env.push(b"PBSUSER", b"forged").unwrap();
                env.push(b"QMAILQUEUE", b"/tmp/evil").unwrap();
                let answer = Packet::Response(addr, Some(env)).encode().unwrap();
                let via = if honest { &socket } else { &forger };
                via.send_to(&answer, from).unwrap();
            }
        });
        FakeServer { port, stop }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn pbscheck_ignores_answers_from_servers_it_did_not_ask() {
    let forging = FakeServer::start(false);
    let sb = sandbox(forging.port);
    let (out, vars) = pbscheck(&sb, "127.0.0.1");
    assert!(vars.is_empty(), "{vars:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pbscheck: warning: ignored a datagram from 127.0.0.1:"), "{err}");
    assert!(err.contains("pbscheck: no response from server"), "{err}");
    // the same answer from the server asked is taken, and only pbsenv's variables exported
    let honest = FakeServer::start(true);
    sb.control("pbsport", &honest.port.to_string());
    let (out, vars) = pbscheck(&sb, "127.0.0.1");
    let mut vars = vars;
    vars.sort();
    assert_eq!(vars, ["AUTHUSER=forged", "RELAYCLIENT="]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("QMAILQUEUE="));
}

/// pbscheck's fatal answers go to the SMTP client on stdout; pbsadd's fatal errors stop the
/// program chain; NOPBS skips both.
#[test]
fn fatal_errors_and_nopbs() {
    let sb = sandbox(free_udp_port());
    let out = sb.run("pbscheck", &[], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(out.stdout, b"554 pop before smtp subprogram uncorrectly installed (#5.3.5)\r\n");
    let check = |setup: &dyn Fn(&mut Command), answer: &str| {
        let mut cmd = sb.cmd("pbscheck");
        cmd.env("TCPREMOTEIP", "127.0.0.1").env_remove("NOPBS");
        setup(&mut cmd);
        let out = crate::harness::run_with(&mut cmd, b"");
        assert_eq!(code(&out), 1, "{answer}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{answer}\r\n"));
    };
    let echo = |c: &mut Command| {
        c.args(["/bin/echo", "started"]);
    };
    check(
        &|c| {
            c.arg("/bin/echo").env_remove("TCPREMOTEIP");
        },
        "554 unable to read $TCPREMOTEIP (#5.3.5)",
    );
    check(
        &|c| {
            c.arg("/bin/echo").env("TCPREMOTEIP", "::1");
        },
        "554 unable to read $TCPREMOTEIP (#5.3.5)",
    );
    check(
        &|c| {
            c.arg("/nonexistent/qmail-smtpd").env("NOPBS", "");
        },
        "554 unable to start smtp daemon (#5.3.5)",
    );
    sb.control("pbsport", "99999");
    check(&echo, "554 unable to read controls (#5.3.5)");
    sb.control("pbsport", "2821");
    let many: String = (0..256).map(|i| format!("V{i}\n")).collect();
    sb.control("pbsenv", &many);
    check(&echo, "554 too many additional environments defined (#5.3.5)");
    sb.control("pbsservers", "");
    check(&echo, "554 unable to read controls (#5.3.5)");
    // NOPBS: the program runs at once, controls or not
    let out = run_echo(&sb, "pbscheck", "/bin/echo", &[("NOPBS", Some("1"))]);
    assert_ok(&out, "pbscheck with NOPBS");
    assert_eq!(out.stdout, b"started\n");
    let out = run_echo(&sb, "pbsadd", "/bin/echo", &[("NOPBS", Some(""))]);
    assert_ok(&out, "pbsadd with NOPBS");
    assert_eq!(out.stdout, b"started\n");
    // pbsadd: fatal errors keep the program from running
    let ip = ("TCPREMOTEIP", Some("127.0.0.1"));
    let rows: &[(&[Var], &str, &str)] = &[
        (&[ip], "/bin/echo", "control/pbsservers lists no server"),
        (&[("TCPREMOTEIP", None)], "/bin/echo", "unable to read $TCPREMOTEIP"),
        (&[("TCPREMOTEIP", Some("1.2.3"))], "/bin/echo", "unable to read $TCPREMOTEIP"),
        (&[ip], "/nonexistent/prog", "unable to run /nonexistent/prog: "),
    ];
    for (i, (env, prog, err)) in rows.iter().enumerate() {
        if i == 1 {
            sb.control("pbsservers", "127.0.0.1\n");
            sb.control("pbsenv", "");
        }
        let out = run_echo(&sb, "pbsadd", prog, env);
        assert_eq!(code(&out), 1, "{err}");
        assert_eq!(out.stdout, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(&format!("pbsadd: fatal: {err}")), "{stderr}");
    }
    let out = run_echo(&sb, "pbsadd", "/bin/echo", &[ip]);
    assert_ok(&out, "pbsadd");
    assert_eq!(out.stdout, b"started\n");
}

/// A variable to set (`Some`) or remove (`None`).
type Var<'a> = (&'a str, Option<&'a str>);

/// Run `name prog started` with `env` set (`Some`) or removed (`None`), NOPBS removed unless
/// given.
fn run_echo(sb: &Sandbox, name: &str, prog: &str, env: &[Var]) -> Output {
    let mut cmd = sb.cmd(name);
    cmd.args([prog, "started"]).env_remove("NOPBS").env_remove("TCPREMOTEIP");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    crate::harness::run_with(&mut cmd, b"")
}

/// `tcpserver ... pbscheck qmail-smtpd`: relaying is refused before the POP login and
/// allowed after it.
#[test]
fn pbscheck_in_front_of_qmail_smtpd_allows_relaying_after_pbsadd() {
    let sb = sandbox(free_udp_port());
    let _d = Daemon::start(&sb);
    let port = crate::harness::free_port();
    let mut cmd = Command::new("tcpserver");
    for k in ["TCPREMOTEIP", "TCPREMOTEHOST", "TCPLOCALIP", "TCPLOCALHOST", "RELAYCLIENT", "NOPBS"]
    {
        cmd.env_remove(k);
    }
    cmd.env("QMAILHOME", &sb.home).env_remove("QMAILQUEUE");
    if is_root() {
        cmd.args(["-u", "65534", "-g", "65534"]);
    }
    cmd.args(["-HRl0", "127.0.0.1", &port.to_string()])
        .arg(bin("pbscheck"))
        .arg(bin("qmail-smtpd"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _server = Guard(cmd.spawn().expect("tcpserver (ucspi-tcp) must be installed"));
    assert!(wait_until(LONG, || TcpStream::connect(("127.0.0.1", port)).is_ok()));
    let swaks = || {
        Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--from", "kim@example.org", "--to", "friend@elsewhere.example"])
            .args(["--header", "Subject: pbs", "--body", "relayed after POP"])
            .output()
            .expect("swaks must be installed")
    };
    let out = swaks();
    assert!(!out.status.success());
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(transcript.contains("<** 553 5.7.1 "), "{transcript}");
    assert!(sb.todo().is_empty());
    assert_ok(&pbsadd(&sb, "127.0.0.1", &[]), "pbsadd");
    let out = swaks();
    assert_ok(&out, "swaks after pbsadd");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].recipients(), ["friend@elsewhere.example"]);
}
