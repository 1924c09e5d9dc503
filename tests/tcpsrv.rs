//! qmail-tcpsrv and the tcprules library against ucspi-tcp: the environment contract, rules
//! cdbs written by the real `tcprules` and judged by the real `tcprulescheck`, the `-c` limit,
//! IPv6, SIGTERM, the verbose log and the exit codes (doc/qmail-tcpsrv.8); and `-W`, long-lived
//! qmail-smtpd workers: sessions on one worker that share nothing, the log, `-n`, a worker
//! killed in a session.

use crate::harness::{bin, is_root, wait_until, Guard, Sandbox, TempDir};
use qmail::tcprules;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// A running qmail-tcpsrv, its port and what it logs on stderr.
struct Server {
    child: Guard,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `qmail-tcpsrv -1 OPTIONS HOST 0 PROGRAM...`, with `env` added to its environment.
    fn start(opts: &[&str], host: &str, program: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin("qmail-tcpsrv"));
        cmd.arg("-1").args(opts).arg(host).arg("0").args(program);
        cmd.envs(env.iter().copied());
        Server::spawn(cmd)
    }

    /// Run `cmd` (a qmail-tcpsrv command line with `-1`).
    fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qmail-tcpsrv starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let child = Guard(child);
        let port = line.trim().parse().unwrap_or_else(|_| {
            std::thread::sleep(Duration::from_millis(200));
            panic!("no port on stdout: {line:?}; stderr: {:?}", log.lock().unwrap())
        });
        Server { child, port, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn wait_log(&self, pred: impl Fn(&str) -> bool) -> bool {
        wait_until(LIMIT, || self.log().iter().any(|l| pred(l)))
    }
}

/// Connect, send `input`, read until the server closes.
fn talk(addr: SocketAddr, input: &[u8]) -> (String, SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(input).unwrap();
    let mine = s.local_addr().unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    (String::from_utf8_lossy(&out).into_owned(), mine)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The `NAME=value` lines of `env` output, as (name, value).
fn env_of(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn var<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Print the environment, then what the client sent, then END.
const SHOW_ENV: &[&str] = &["/bin/sh", "-c", "env; read line; echo \"line=$line\"; echo END"];

#[test]
fn environment_contract() {
    let stale = [("TCPREMOTEHOST", "stale"), ("TCPREMOTEINFO", "stale"), ("TCPLOCALHOST", "stale")];
    let srv = Server::start(&[], "127.0.0.1", SHOW_ENV, &stale);
    let (out, me) = talk(local(srv.port), b"hello world\n");
    let env = env_of(&out);
    let port = srv.port.to_string();
    let client_port = me.port().to_string();
    let want = [
        ("PROTO", Some("TCP")),
        ("TCPLOCALIP", Some("127.0.0.1")),
        ("TCPLOCALPORT", Some(port.as_str())),
        ("TCPREMOTEIP", Some("127.0.0.1")),
        ("TCPREMOTEPORT", Some(client_port.as_str())),
        ("TCPLOCALHOST", None),
        ("TCPREMOTEHOST", None),
        ("TCPREMOTEINFO", None),
        ("line", Some("hello world")),
    ];
    for (name, value) in want {
        assert_eq!(var(&env, name), value, "{name} in\n{out}");
    }
    assert!(out.ends_with("END\n"), "{out}");

    let srv =
        Server::start(&["-l", "mx.example.org", "-HRhrpPoOdD"], "127.0.0.1", SHOW_ENV, &stale);
    let (out, _) = talk(local(srv.port), b"x\n");
    assert_eq!(var(&env_of(&out), "TCPLOCALHOST"), Some("mx.example.org"), "{out}");
    assert_eq!(var(&env_of(&out), "TCPREMOTEHOST"), None, "{out}");
}

/// Build `rules.cdb` from `text` with the real tcprules.
fn tcprules(dir: &Path, name: &str, text: &str) -> (PathBuf, std::process::Output) {
    let cdb = dir.join(format!("{name}.cdb"));
    let mut child = Command::new("tcprules")
        .arg(&cdb)
        .arg(dir.join(format!("{name}.tmp")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcprules (Debian package ucspi-tcp) runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    (cdb, child.wait_with_output().unwrap())
}

/// Every record of a cdb, in file order.
fn records(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    if std::fs::metadata(path).unwrap().len() == 2048 {
        // a header and nothing else, which the cdb crate will not open
        return Vec::new();
    }
    let db = ::cdb::CDB::open(path).unwrap();
    db.iter().map(|r| r.unwrap()).collect()
}

const RULES: &str = "# rules for the oracle
joe@127.0.0.9:allow,WHO=\"joe-ip\"
joe@=a.example.org:allow,WHO=\"joe-host\"
127.0.0.5:allow,WHO=\"five\",EMPTY=\"\"
127.0.0.5:allow,WHO=\"dup\"
127.0.0.6:deny
127.0.0.7:allow,A=\"1\",A=\"2\",TCPREMOTEIP=\"over\"
127.0.0.10-20:allow,WHO=\"range\"
127.0.1.:deny
127.0.2.:allow,WHO=/slash\"quote/
10.2-3.:allow,WHO=\"tenrange\"
10.:allow,WHO=\"ten\"
=exact.example.org:allow,WHO=\"exact-host\"
=.example.org:allow,WHO=\"suffix\"
=.org:deny
=:allow,WHO=\"has-host\"
a line without a colon is ignored
:allow,WHO=\"default\",RELAYCLIENT=\"\"
";

/// Our decision in tcprulescheck's words.
fn render(d: &tcprules::Decision) -> String {
    let mut out = match &d.rule {
        Some(key) => format!("rule {}:\n", String::from_utf8_lossy(key)),
        None => "default:\n".to_string(),
    };
    if d.deny {
        // tcprules writes D first and tcprulescheck stops there
        return out + "deny connection\n";
    }
    for change in &d.env {
        if let tcprules::EnvChange::Set(n, v) = change {
            let (n, v) = (String::from_utf8_lossy(n), String::from_utf8_lossy(v));
            out += &format!("set environment variable {n}={v}\n");
        }
    }
    out + "allow connection\n"
}

#[test]
fn rules_lookup_matches_tcprulescheck() {
    let dir = TempDir::new("tcprules-oracle");
    let (cdb, out) = tcprules(dir.path(), "rules", RULES);
    assert!(out.status.success(), "tcprules: {out:?}");
    let reader = qmail::cdb::Reader::open(&cdb).unwrap().unwrap();
    let ips = [
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.7",
        "127.0.0.9",
        "127.0.0.10",
        "127.0.0.15",
        "127.0.0.20",
        "127.0.0.21",
        "127.0.1.7",
        "127.0.2.1",
        "10.2.0.1",
        "10.3.1.1",
        "10.4.1.1",
        "192.0.2.1",
        "0.0.0.0",
    ];
    let hosts =
        [None, Some("exact.example.org"), Some("a.example.org"), Some("b.org"), Some("x.com")];
    let infos = [None, Some("joe"), Some("ann")];
    let mut checked = 0;
    for ip in ips {
        for host in hosts {
            for info in infos {
                let mut cmd = Command::new("tcprulescheck");
                cmd.arg(&cdb).env("TCPREMOTEIP", ip).env_remove("TCPREMOTEHOST");
                cmd.env_remove("TCPREMOTEINFO");
                if let Some(h) = host {
                    cmd.env("TCPREMOTEHOST", h);
                }
                if let Some(i) = info {
                    cmd.env("TCPREMOTEINFO", i);
                }
                let oracle = cmd.output().expect("tcprulescheck runs");
                let want = String::from_utf8_lossy(&oracle.stdout).into_owned();
                let ours = tcprules::lookup(
                    &reader,
                    ip.as_bytes(),
                    host.map(str::as_bytes),
                    info.map(str::as_bytes),
                )
                .unwrap();
                assert_eq!(render(&ours), want, "ip {ip} host {host:?} info {info:?}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, ips.len() * hosts.len() * infos.len());
    // no rules at all: tcprulescheck's "default:"
    let (empty, _) = tcprules(dir.path(), "empty", "# nothing\n");
    let reader = qmail::cdb::Reader::open(&empty).unwrap().unwrap();
    let d = tcprules::lookup(&reader, b"1.2.3.4", None, None).unwrap();
    assert_eq!(render(&d), "default:\nallow connection\n");
}

#[test]
fn compiler_writes_what_tcprules_writes() {
    let dir = TempDir::new("tcprules-compile");
    let texts = [
        RULES.to_string(),
        String::new(),
        "1.2.3.37-53:allow\n".into(),
        "1.2.3.-2:deny\n1.2.3.250-999:allow,X=\"y\"\n9-10:allow\n10.2-3.:deny\n".into(),
        "a:allow,X=\"1\",Y=/a\"b/,Z=..\n#c\n\n  \t\nnocolon\nb:deny,Q=xx \t\n".into(),
        "nul\0key:allow,V=\"x\0y\"\nlast:allow".into(),
        format!("{}:allow\n", "9".repeat(100_000)),
    ];
    for (i, text) in texts.iter().enumerate() {
        let (theirs, out) = tcprules(dir.path(), &format!("t{i}"), text);
        assert!(out.status.success(), "tcprules on text {i}: {out:?}");
        let ours = dir.path().join(format!("o{i}.cdb"));
        let compiled = tcprules::compile(text.as_bytes()).unwrap();
        tcprules::write_cdb(&compiled, &ours, &dir.path().join(format!("o{i}.tmp"))).unwrap();
        assert_eq!(records(&ours), records(&theirs), "text {i}:\n{text}");
        assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap(), "text {i}");
    }
    assert_eq!(records(&dir.path().join("t2.cdb")).len(), 17, "1.2.3.37-53 is 17 keys");
    // what tcprules refuses (exit 100, old cdb untouched), we refuse
    let bad = [
        "a: allow\n",
        "a:allowx\n",
        "a:allow,X\n",
        "a:allow,X=\"open\n",
        "a:allow,X=\"\"junk\n",
        "1.2.3.4:allow\r\n",
        "1.2.3.x-5:allow\n",
        "ok:allow\nbad:maybe\n",
    ];
    let (target, _) = tcprules(dir.path(), "keep", "old:allow\n");
    for text in bad {
        let (_, out) = tcprules(dir.path(), "keep", text);
        assert_eq!(out.status.code(), Some(100), "tcprules on {text:?}");
        let ours = tcprules::compile(text.as_bytes());
        assert!(matches!(&ours, Err(e) if e.code() == 100), "compile({text:?}) = {ours:?}");
    }
    assert_eq!(records(&target), [(b"old".to_vec(), Vec::new())]);
}

/// Connect from `source` (any 127/8 address) with the real tcpclient; what the server said.
fn from(source: &str, port: u16) -> String {
    let out = Command::new("tcpclient")
        .args(["-RHl0", "-T5", "-i", source, "127.0.0.1", &port.to_string()])
        .args(["/bin/sh", "-c", "cat <&6"])
        .output()
        .expect("tcpclient (Debian package ucspi-tcp) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rules_through_the_server() {
    let dir = TempDir::new("tcpsrv-rules");
    let (cdb, out) = tcprules(dir.path(), "rules", RULES);
    assert!(out.status.success(), "{out:?}");
    let marker = dir.path().join("ran");
    let program = format!("touch {}; env; echo END", marker.display());
    let srv = Server::start(
        &["-x", cdb.to_str().unwrap(), "-B", "220 banner\r\n"],
        "127.0.0.1",
        &["/bin/sh", "-c", &program],
        &[],
    );
    // (source, allowed, WHO, other variables)
    type Case<'a> = (&'a str, bool, Option<&'a str>, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("127.0.0.5", true, Some("five"), &[("EMPTY", "")]),
        ("127.0.0.6", false, None, &[]),
        ("127.0.0.7", true, None, &[("A", "2"), ("TCPREMOTEIP", "over")]),
        ("127.0.0.13", true, Some("range"), &[]),
        ("127.0.0.21", true, Some("default"), &[("RELAYCLIENT", "")]),
        ("127.0.1.200", false, None, &[]),
        ("127.0.2.9", true, Some("slash\"quote"), &[("TCPREMOTEIP", "127.0.2.9")]),
    ];
    for (source, allowed, who, extra) in cases {
        let _ = std::fs::remove_file(&marker);
        let out = from(source, srv.port);
        assert!(out.starts_with("220 banner\r\n"), "from {source}: {out:?}");
        let env = env_of(&out);
        if *allowed {
            assert_eq!(var(&env, "WHO"), *who, "from {source}: {out}");
            assert!(out.ends_with("END\n") && marker.exists(), "{source}: {out}");
        } else {
            assert_eq!(out, "220 banner\r\n", "denied {source}");
            assert!(!marker.exists(), "the program ran for denied {source}");
        }
        for (name, value) in *extra {
            assert_eq!(var(&env, name), Some(*value), "{name} from {source}: {out}");
        }
    }
}

#[test]
fn missing_rules_drop_unless_big_x() {
    let dir = TempDir::new("tcpsrv-norules");
    let rules = dir.path().join("absent.cdb");
    let rules = rules.to_str().unwrap();
    let srv = Server::start(&["-x", rules], "127.0.0.1", &["/bin/echo", "ran"], &[]);
    assert_eq!(talk(local(srv.port), b"").0, "");
    assert!(srv
        .wait_log(|l| l.starts_with("qmail-tcpsrv: warning: dropping connection, unable to read")));
    let srv = Server::start(&["-X", "-x", rules], "127.0.0.1", &["/bin/echo", "ran"], &[]);
    assert_eq!(talk(local(srv.port), b"").0, "ran\n");
    // a corrupt cdb drops too, even with -X
    let short = dir.path().join("short.cdb");
    std::fs::write(&short, b"short").unwrap();
    let srv = Server::start(
        &["-X", "-x", short.to_str().unwrap()],
        "127.0.0.1",
        &["/bin/echo", "ran"],
        &[],
    );
    assert_eq!(talk(local(srv.port), b"").0, "");
}

#[test]
fn verbose_log_lines() {
    let dir = TempDir::new("tcpsrv-log");
    let (cdb, _) = tcprules(dir.path(), "r", "127.0.0.66:deny\n:allow\n");
    let srv = Server::start(
        &["-v", "-c", "3", "-x", cdb.to_str().unwrap()],
        "127.0.0.1",
        &["/bin/sh", "-c", "exit 3"],
        &[],
    );
    let (_, me) = talk(local(srv.port), b"");
    assert!(srv.wait_log(|l| l.contains(" end ")), "{:?}", srv.log());
    from("127.0.0.66", srv.port);
    assert!(srv.wait_log(|l| l.contains(" deny ")), "{:?}", srv.log());
    assert!(wait_until(LIMIT, || srv.log().len() >= 8), "{:?}", srv.log());
    let log = srv.log();
    let pid = log
        .iter()
        .find_map(|l| l.strip_prefix("qmail-tcpsrv: pid "))
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no pid line: {log:?}"))
        .to_string();
    let p = srv.port;
    let c = me.port();
    let want = [
        "qmail-tcpsrv: status: 0/3".to_string(),
        "qmail-tcpsrv: status: 1/3".into(),
        format!("qmail-tcpsrv: pid {pid} from 127.0.0.1"),
        format!("qmail-tcpsrv: ok {pid} :127.0.0.1:{p} :127.0.0.1::{c}"),
        format!("qmail-tcpsrv: end {pid} status {}", 3 << 8),
        "qmail-tcpsrv: status: 0/3".into(),
        "qmail-tcpsrv: status: 1/3".into(),
    ];
    assert_eq!(log[..7], want, "full log: {log:#?}");
    assert!(
        log[7].starts_with(&format!("qmail-tcpsrv: deny 0 :127.0.0.1:{p} :127.0.0.66::")),
        "{log:#?}"
    );
    assert_eq!(log[8..], ["qmail-tcpsrv: status: 0/3"], "{log:#?}");
}

#[test]
fn limit_delays_and_never_exceeds() {
    let dir = TempDir::new("tcpsrv-limit");
    let trace = dir.path().join("trace");
    let program =
        format!("echo start >> {t}; sleep 0.2; echo end >> {t}; echo done", t = trace.display());
    let srv = Server::start(&["-c", "5", "-v"], "127.0.0.1", &["/bin/sh", "-c", &program], &[]);
    let port = srv.port;
    let clients: Vec<_> =
        (0..20).map(|_| std::thread::spawn(move || talk(local(port), b"").0)).collect();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(answers, vec!["done\n".to_string(); 20]);
    let text = std::fs::read_to_string(&trace).unwrap();
    let (mut running, mut most, mut starts) = (0i32, 0, 0);
    for line in text.lines() {
        match line {
            "start" => {
                running += 1;
                starts += 1;
            }
            _ => running -= 1,
        }
        most = most.max(running);
    }
    assert_eq!((starts, running), (20, 0), "{text}");
    assert_eq!(most, 5, "most children at once:\n{text}");
    // the server's own count agrees
    assert!(wait_until(LIMIT, || srv.log().iter().filter(|l| l.contains(" end ")).count() == 20));
    let counts: Vec<u32> = srv
        .log()
        .iter()
        .filter_map(|l| l.strip_prefix("qmail-tcpsrv: status: "))
        .filter_map(|s| s.strip_suffix("/5")?.parse().ok())
        .collect();
    assert!(counts.iter().all(|&n| n <= 5) && counts.contains(&5), "{counts:?}");
}

fn ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .is_ok_and(|t| t.lines().any(|l| l.starts_with("00000000000000000000000000000001")))
}

#[test]
fn ipv6_loopback_or_address_not_available() {
    if !ipv6_loopback() {
        let out =
            Command::new(bin("qmail-tcpsrv")).args(["::1", "0", "/bin/true"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(111), "no IPv6 on loopback here: {err}");
        assert!(err.contains("not available") || err.contains("not supported"), "{err}");
        return;
    }
    let srv = Server::start(&[], "::1", SHOW_ENV, &[]);
    let (out, me) = talk(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, srv.port)), b"six\n");
    let env = env_of(&out);
    assert_eq!(var(&env, "PROTO"), Some("TCP6"), "{out}");
    assert_eq!(var(&env, "TCPREMOTEIP"), Some("::1"), "{out}");
    assert_eq!(var(&env, "TCPLOCALIP"), Some("::1"), "{out}");
    assert_eq!(var(&env, "TCPREMOTEPORT"), Some(me.port().to_string().as_str()), "{out}");
}

#[test]
fn host_zero_takes_ipv4_and_ipv6_on_one_port() {
    let srv = Server::start(&[], "0", SHOW_ENV, &[]);
    let (out, _) = talk(local(srv.port), b"four\n");
    let env = env_of(&out);
    assert_eq!(var(&env, "PROTO"), Some("TCP"), "{out}");
    assert_eq!(var(&env, "TCPREMOTEIP"), Some("127.0.0.1"), "an IPv4 peer is shown as IPv4: {out}");
    assert_eq!(var(&env, "TCPLOCALIP"), Some("127.0.0.1"), "{out}");
    if ipv6_loopback() {
        let (out, _) = talk(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, srv.port)), b"6\n");
        assert_eq!(var(&env_of(&out), "PROTO"), Some("TCP6"), "{out}");
    }
}

#[test]
fn sigterm_exits_zero_and_sessions_go_on() {
    let srv = Server::start(
        &[],
        "127.0.0.1",
        &["/bin/sh", "-c", "echo hello; read x; echo \"bye $x\""],
        &[],
    );
    let mut s = TcpStream::connect(local(srv.port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    let mut guard = srv.child;
    assert_eq!(terminate(&mut guard), Some(0));
    assert!(TcpStream::connect(local(srv.port)).is_err(), "nobody listens after TERM");
    s.write_all(b"there\n").unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye there\n");
}

/// SIGTERM to the server: its exit code once it has exited.
fn terminate(server: &mut Guard) -> Option<i32> {
    let pid = nix::unistd::Pid::from_raw(server.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut status = None;
    assert!(wait_until(LIMIT, || {
        status = server.0.try_wait().unwrap();
        status.is_some()
    }));
    status.and_then(|s| s.code())
}

fn kill9(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn exit_codes() {
    let run = |args: &[&str]| {
        let out = Command::new(bin("qmail-tcpsrv")).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for args in [
        &[][..],
        &["0", "25"],
        &["-c", "0", "0", "25", "/bin/true"],
        &["-c", "many", "0", "25", "/bin/true"],
        &["-c"],
        &["-Z", "0", "25", "/bin/true"],
        &["-b", "-1", "0", "25", "/bin/true"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(100), "{args:?}: {err}");
        assert!(err.contains("qmail-tcpsrv: usage: "), "{args:?}: {err}");
    }
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, err) = run(&["127.0.0.1", &port, "/bin/true"]);
    assert_eq!(code, Some(111), "{err}");
    assert!(err.starts_with("qmail-tcpsrv: fatal: unable to bind"), "{err}");
    let (code, err) = run(&["-q", "127.0.0.1", &port, "/bin/true"]);
    assert_eq!((code, err.as_str()), (Some(111), ""), "-q is quiet");
    let (code, err) = run(&["127.0.0.1", "no-such-service-name", "/bin/true"]);
    assert_eq!(code, Some(111), "{err}");
    assert!(err.contains("unable to figure out port number for no-such-service-name"), "{err}");
}

#[test]
fn user_and_group_switch_after_bind() {
    let srv_args = ["-u", "65534", "-g", "65534"];
    if !is_root() {
        let out = Command::new(bin("qmail-tcpsrv"))
            .args(srv_args)
            .args(["127.0.0.1", "0", "/bin/true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(111), "not root: the switch fails");
        return;
    }
    let srv = Server::start(&srv_args, "127.0.0.1", &["/bin/sh", "-c", "id -u; id -g; id -G"], &[]);
    assert_eq!(talk(local(srv.port), b"").0, "65534\n65534\n65534\n");
    let envs = [("UID", "65534"), ("GID", "65534")];
    let srv = Server::start(&["-U"], "127.0.0.1", &["/bin/sh", "-c", "id -u"], &envs);
    assert_eq!(talk(local(srv.port), b"").0, "65534\n");
}

/// `qmail-tcpsrv -1 -W -v OPTS 127.0.0.1 0 bin/qmail-smtpd` on the sandbox `sb`, as nobody
/// when we are root, with the rules `rules` (tcprules text) and `env` added.
fn workers(sb: &Sandbox, opts: &[&str], rules: &str, env: &[(&str, &str)]) -> Server {
    let (cdb, out) = tcprules(sb.tmp.path(), "workers", rules);
    assert!(out.status.success(), "{out:?}");
    let mut cmd = Command::new(bin("qmail-tcpsrv"));
    cmd.args(["-1", "-W", "-v", "-x"]).arg(&cdb);
    if is_root() {
        cmd.args(["-u", "65534", "-g", "65534"]);
    }
    cmd.args(opts).args(["127.0.0.1", "0"]).arg(bin("qmail-smtpd"));
    cmd.env("QMAILHOME", &sb.home).env_remove("QMAILQUEUE");
    for name in ["RELAYCLIENT", "DATABYTES", "SMTPS", "LOGLEVEL", "SMTPAUTH", "AUTHREQUIRED"] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    Server::spawn(cmd)
}

/// One SMTP session from `source` (a 127/8 address): `commands` pipelined, then everything
/// the server said until it closed.
fn smtp_from(source: &str, port: u16, commands: &str) -> String {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket.connect(&local(port).into()).unwrap();
    let mut s = TcpStream::from(socket);
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(commands.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The pids of the `pid N from IP` lines, in order.
fn session_pids(srv: &Server) -> Vec<u32> {
    srv.log()
        .iter()
        .filter_map(|l| l.strip_prefix("qmail-tcpsrv: pid "))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect()
}

/// Whether process `pid` is gone (or a zombie).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| st.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

const RELAY_TRY: &str =
    "EHLO c.example\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@elsewhere.example>\r\nQUIT\r\n";

/// One worker (`-c 1`) serves every session in turn; a session's rules never reach the next:
/// RELAYCLIENT and DATABYTES set for 127.0.0.2 are gone for 127.0.0.1, and a variable of the
/// server's own environment that a rule changed is back to its value.
#[test]
fn worker_sessions_share_nothing() {
    let sb = Sandbox::new();
    sb.control("rcpthosts", "example.org\n");
    let rules = "127.0.0.2:allow,RELAYCLIENT=\"\",DATABYTES=\"1000\",LOGLEVEL=\"4\"\n:allow\n";
    let srv = workers(&sb, &["-c", "1"], rules, &[("DATABYTES", "2000")]);
    for round in 0..3 {
        let out = smtp_from("127.0.0.2", srv.port, RELAY_TRY);
        assert!(out.contains("250-SIZE 1000\r\n"), "round {round}: {out}");
        assert!(out.contains("\r\n250 2.1.5 ") || out.contains("\r\n250 "), "{out}");
        assert!(!out.contains("553"), "127.0.0.2 may relay: {out}");
        let out = smtp_from("127.0.0.1", srv.port, RELAY_TRY);
        assert!(out.contains("250-SIZE 2000\r\n"), "round {round}: {out}");
        assert!(out.contains("\r\n553 "), "127.0.0.1 may not relay after 127.0.0.2: {out}");
    }
    assert!(wait_until(LIMIT, || session_pids(&srv).len() == 6), "{:#?}", srv.log());
    let pids = session_pids(&srv);
    assert!(pids.iter().all(|&p| p == pids[0]), "one worker served all: {pids:?}");
    // LOGLEVEL=4 of 127.0.0.2's sessions logged; 127.0.0.1's did not
    let from_one = srv.log().iter().filter(|l| l.contains("connection from 127.0.0.1")).count();
    let from_two = srv.log().iter().filter(|l| l.contains("connection from 127.0.0.2")).count();
    assert_eq!((from_one, from_two), (0, 3), "{:#?}", srv.log());
}

/// A worker keeps the control files between sessions but sees every change at the next one,
/// as a process per connection would: rcpthosts written over in place, a greeting file made
/// and removed, rcpthosts.cdb made (it then replaces rcpthosts) and replaced.
#[test]
fn worker_sessions_see_control_changes() {
    let sb = Sandbox::new();
    sb.control("rcpthosts", "kept.example\n");
    let srv = workers(&sb, &["-c", "1"], ":allow\n", &[]);
    let rcpt = |domain: &str| {
        smtp_from(
            "127.0.0.1",
            srv.port,
            &format!("HELO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@{domain}>\r\nQUIT\r\n"),
        )
    };
    let accepted = |out: &str| out.starts_with("220 ") && !out.contains("\r\n553 ");
    for round in 0..2 {
        assert!(!accepted(&rcpt("new.example")), "round {round}: not in rcpthosts yet");
        assert!(accepted(&rcpt("kept.example")), "round {round}");
    }
    sb.control("rcpthosts", "kept.example\nnew.example\n");
    assert!(accepted(&rcpt("new.example")), "rcpthosts written over");
    sb.control("rcpthosts", "new.example\n");
    assert!(!accepted(&rcpt("kept.example")), "kept.example gone from rcpthosts");
    sb.control("smtpgreeting", "greetings.example hello");
    let out = rcpt("new.example");
    assert!(out.lines().next().is_some_and(|l| l.contains("greetings.example hello")), "{out}");
    std::fs::remove_file(sb.home.join("control/smtpgreeting")).unwrap();
    let out = rcpt("new.example");
    assert!(!out.contains("greetings.example"), "{out}");
    let newrcpthosts = |domains: &str| {
        let c = sb.home.join("control");
        let mut child = Command::new(bin("qmail-cdb"))
            .arg(c.join("rcpthosts.cdb"))
            .arg(c.join("rcpthosts.tmp"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(domains.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = newrcpthosts("cdb.example\n");
    assert!(out.status.success(), "{out:?}");
    assert!(accepted(&rcpt("cdb.example")) && !accepted(&rcpt("new.example")), "cdb made");
    newrcpthosts("other.example\n");
    assert!(accepted(&rcpt("other.example")) && !accepted(&rcpt("cdb.example")), "cdb replaced");
    assert!(wait_until(LIMIT, || session_pids(&srv).len() == 12), "{:#?}", srv.log());
    let pids = session_pids(&srv);
    assert!(pids.iter().all(|&p| p == pids[0]), "one worker served all: {pids:?}");
}

/// The verbose log of `-W` is the one of a program per connection, with the worker's pid;
/// `-n 2` replaces a worker after two sessions; a worker killed in a session loses that
/// connection only (the client sees it close, the log the signal), and the next one is served.
#[test]
fn worker_log_reuse_and_replacement() {
    let sb = Sandbox::new();
    let rules = "127.0.0.3:allow,550GREETING=\"go away\",SMTP550DISCONNECT=\"\"\n\
                 127.0.0.66:deny\n:allow\n";
    let srv = workers(&sb, &["-c", "1", "-n", "2"], rules, &[]);
    let p = srv.port;
    let quit = smtp_from("127.0.0.1", p, "QUIT\r\n");
    assert!(quit.starts_with("220 ") && quit.contains("\r\n221 "), "{quit}");
    // refused at the greeting and dropped: exit code 1
    let refused = smtp_from("127.0.0.3", p, "");
    assert!(refused.starts_with("554 "), "{refused}");
    assert_eq!(smtp_from("127.0.0.66", p, ""), "", "denied");
    let out = smtp_from("127.0.0.1", p, "QUIT\r\n");
    assert!(out.contains("\r\n221 "), "{out}");
    assert!(wait_until(LIMIT, || session_pids(&srv).len() == 3), "{:#?}", srv.log());
    let pids = session_pids(&srv);
    assert_eq!(pids[0], pids[1], "two sessions per worker: {pids:?}");
    assert_ne!(pids[1], pids[2], "-n 2: a new worker for the third: {pids:?}");
    assert!(wait_until(LIMIT, || gone(pids[0])), "the used-up worker {} ended", pids[0]);
    let log = srv.log();
    let lines: Vec<&str> = log
        .iter()
        .map(|l| l.as_str())
        .filter(|l| !l.contains(": status: ") && !l.starts_with("qmail-smtpd"))
        .collect();
    let (a, b) = (pids[0], pids[2]);
    assert_eq!(lines[0], format!("qmail-tcpsrv: pid {a} from 127.0.0.1"), "{log:#?}");
    assert!(lines[1].starts_with(&format!("qmail-tcpsrv: ok {a} :127.0.0.1:{p} :127.0.0.1::")));
    assert_eq!(lines[2], format!("qmail-tcpsrv: end {a} status 0"), "{log:#?}");
    assert_eq!(lines[3], format!("qmail-tcpsrv: pid {a} from 127.0.0.3"), "{log:#?}");
    assert_eq!(lines[5], format!("qmail-tcpsrv: end {a} status 256"), "{log:#?}");
    assert!(lines[6].starts_with("qmail-tcpsrv: deny 0 :127.0.0.1:"), "{log:#?}");
    assert_eq!(lines[7], format!("qmail-tcpsrv: pid {b} from 127.0.0.1"), "{log:#?}");
    assert!(wait_until(LIMIT, || srv
        .log()
        .iter()
        .any(|l| l.ends_with(&format!("end {b} status 0")))));

    // a worker killed in the middle of a session
    let mut s = TcpStream::connect(local(p)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut greeting = [0u8; 4];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220 ");
    assert!(wait_until(LIMIT, || session_pids(&srv).len() == 4), "{:#?}", srv.log());
    let victim = session_pids(&srv)[3];
    assert_eq!(victim, b, "the second worker serves its second session");
    kill9(victim);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("250 "), "{rest:?}");
    assert!(
        srv.wait_log(|l| l == format!("qmail-tcpsrv: end {victim} status 9")),
        "{:#?}",
        srv.log()
    );
    let out = smtp_from("127.0.0.1", p, "QUIT\r\n");
    assert!(out.starts_with("220 ") && out.contains("\r\n221 "), "after the kill: {out}");
    assert!(wait_until(LIMIT, || session_pids(&srv).len() == 5));
    assert!(!session_pids(&srv)[..4].contains(&session_pids(&srv)[4]), "a new worker");
}

/// A worker killed while idle is noticed at the next connection, which another worker
/// serves; SIGTERM ends qmail-tcpsrv with 0 and its idle workers after it.
#[test]
fn worker_dead_while_idle_and_sigterm() {
    let sb = Sandbox::new();
    let srv = workers(&sb, &["-c", "2"], ":allow\n", &[]);
    let p = srv.port;
    assert!(smtp_from("127.0.0.1", p, "QUIT\r\n").contains("\r\n221 "));
    assert!(wait_until(LIMIT, || srv.log().iter().any(|l| l.contains(" end "))));
    let first = session_pids(&srv)[0];
    kill9(first);
    let out = smtp_from("127.0.0.1", p, "QUIT\r\n");
    assert!(out.contains("\r\n221 "), "{out}");
    assert!(wait_until(LIMIT, || session_pids(&srv).len() == 2), "{:#?}", srv.log());
    let second = session_pids(&srv)[1];
    assert_ne!(first, second);
    let mut guard = srv.child;
    assert_eq!(terminate(&mut guard), Some(0));
    assert!(
        wait_until(LIMIT, || gone(second)),
        "the idle worker ends after qmail-tcpsrv: {:?}",
        std::fs::read_to_string(format!("/proc/{second}/status"))
    );
}

/// Workers never run as root: `-W` without a user switch, as root, is a fatal error.
#[test]
fn workers_refuse_root() {
    if !is_root() {
        return;
    }
    let out = Command::new(bin("qmail-tcpsrv"))
        .args(["-W", "127.0.0.1", "0"])
        .arg(bin("qmail-smtpd"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(111), "{err}");
    assert!(err.contains("never run as root"), "{err}");
}
