//! smmapd, the socket map daemon (doc/smmapd.8): every verdict (directory users, users/cdb,
//! the alias user, disabled, deleted, noaccess, unknown, not local, over quota, slapd down),
//! plus addressing with and without `-p`, upper-case keys, the user deny list (text and cdb),
//! the command line, and hostile clients (100 KB, not a netstring, half a netstring, pipelined
//! requests). Clients: Postfix's `postmap -q` (socketmap:inet and socketmap:unix) and raw
//! sockets for byte-exact replies; servers: ucspi-tcp's `tcpserver` (the stdio mode) and
//! smmapd's own `--listen` (`-U`, `-T`). smmapd refuses root, so it runs as nobody when the
//! tests run as root.

use crate::harness::slapd::{self, Slapd};
use crate::harness::*;
use std::fs;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NO_MAILBOX: &str = "Sorry, no mailbox here by that name. (#5.1.1)";
const DISABLED: &str = "Mailaddress is administratively disabled. (#5.2.1)";
const TEMPORARY: &str = "Temporary failure verifying the address. (#4.3.0)";

/// A sandbox whose directory is one `ou` of a slapd, with users in LDAP and in users/cdb.
struct Map {
    sb: Sandbox,
    ou: String,
}

impl Map {
    fn new(server: &Slapd, name: &str) -> Map {
        let ou = server.add_ou(&format!("sm-{name}"));
        let sb = Sandbox::for_delivery();
        server.point(&sb, &ou);
        // the postmap configuration directory (an empty main.cf is enough)
        fs::create_dir_all(sb.tmp.path().join("postfix")).unwrap();
        fs::write(sb.tmp.path().join("postfix/main.cf"), "").unwrap();
        Map { sb, ou }
    }

    /// A directory user `name@example.org` with a home and Maildir of its own, and `attrs`.
    fn ldap_user(&self, server: &Slapd, name: &str, attrs: &str) -> PathBuf {
        let (uid, gid, home) = self.sb.user_home(name);
        server.add(&format!(
            "dn: uid={name},{}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\ncn: {name}\n\
             sn: {name}\nuid: {name}\nmail: {name}@example.org\nqmailUID: {uid}\nqmailGID: {gid}\n\
             homeDirectory: {}\n{attrs}\n",
            self.ou,
            home.display()
        ));
        home
    }

    /// `joe`, a users/cdb user with a Maildir.
    fn cdb_user(&self) -> PathBuf {
        let (uid, gid, home) = self.sb.user_home("joe");
        self.sb.assign(&[("joe", uid, gid, &home)]);
        home
    }

    /// smmapd with `args`, as nobody when we are root.
    fn smmapd(&self, args: &[&str]) -> Command {
        let mut c = self.sb.cmd("smmapd");
        c.args(args).env_remove("SMMAPD_SERVICE");
        nobody(&mut c);
        c
    }

    /// One stdio session fed `input`.
    fn session(&self, args: &[&str], input: &[u8]) -> Output {
        run_with(&mut self.smmapd(args), input)
    }

    /// The replies of one stdio session to `keys`, pipelined.
    fn replies(&self, args: &[&str], keys: &[&str]) -> Vec<u8> {
        let input: Vec<u8> = keys.iter().flat_map(|k| request(k)).collect();
        let out = self.session(args, &input);
        assert_ok(&out, "smmapd");
        out.stdout
    }

    /// smmapd under `tcpserver` on a free loopback port, ready.
    fn tcpserver(&self, args: &[&str]) -> (Guard, u16) {
        let port = free_port();
        let mut cmd = Command::new("tcpserver");
        cmd.env("QMAILHOME", &self.sb.home).env_remove("SMMAPD_SERVICE");
        cmd.args(["-HRl0", "127.0.0.1", &port.to_string()])
            .arg(bin("smmapd"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        nobody(&mut cmd);
        let guard = Guard(cmd.spawn().expect("tcpserver (ucspi-tcp) must be installed"));
        let ready =
            wait_until(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(ready, "tcpserver did not start on port {port}");
        (guard, port)
    }

    /// smmapd under ucspi-unix's `unixserver` on a socket in `dir`, ready; the socket path.
    fn unixserver(&self, dir: &Path) -> (Guard, PathBuf) {
        let socket = dir.join("smmapd.sock");
        let mut cmd = Command::new("unixserver");
        cmd.env("QMAILHOME", &self.sb.home).env_remove("SMMAPD_SERVICE");
        cmd.args(["-q", "-m", "000"])
            .arg(&socket)
            .arg(bin("smmapd"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        nobody(&mut cmd);
        let guard = Guard(cmd.spawn().expect("unixserver (ucspi-unix) must be installed"));
        let ready = wait_until(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        assert!(ready, "unixserver did not start on {}", socket.display());
        (guard, socket)
    }

    /// `postmap -q key MAP`: (exit code, stdout, stderr).
    fn postmap(&self, key: &str, map: &str) -> (i32, String, String) {
        let out = Command::new("postmap")
            .arg("-c")
            .arg(self.sb.tmp.path().join("postfix"))
            .args(["-q", key, map])
            .output()
            .expect("postmap (postfix) must be installed");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (code(&out), text(&out.stdout), text(&out.stderr))
    }

    /// A directory nobody may write in (sockets, debug output).
    fn open_dir(&self, name: &str) -> PathBuf {
        let dir = self.sb.tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(self.sb.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }
}

fn nobody(cmd: &mut Command) {
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
}

/// The request for `key` (map name `smmap`).
fn request(key: &str) -> Vec<u8> {
    let payload = format!("smmap {key}");
    format!("{}:{payload},", payload.len()).into_bytes()
}

/// The reply `STATUS text` on the wire.
fn reply(payload: &str) -> Vec<u8> {
    format!("{}:{payload},", payload.len()).into_bytes()
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Send `bytes` on a fresh connection and read until the server closes it (or `limit`).
fn exchange(port: u16, bytes: &[u8], limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    (got, start.elapsed())
}

/// A Maildir++ folder `name` in `maildir`.
fn folder(maildir: &Path, name: &str) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(maildir.join(name).join(sub)).unwrap();
    }
}

#[test]
fn every_verdict_through_postmap_and_on_the_wire() {
    let s = slapd::shared();
    let m = Map::new(s, "verdicts");
    m.ldap_user(s, "ann", "mailAlternateAddress: ann.other@example.org");
    m.ldap_user(s, "off", "accountStatus: disabled");
    m.ldap_user(s, "gone", "accountStatus: deleted");
    m.ldap_user(s, "quiet", "accountStatus: noaccess");
    // one message and a count limit of one: the next message is over
    let full = m.ldap_user(s, "full", "mailQuotaSize: 100000\nmailQuotaCount: 1");
    fs::write(full.join("Maildir/new/1.2.host,S=10"), "0123456789").unwrap();
    m.cdb_user();
    let alias = m.sb.home.join("alias/.qmail-postmaster");
    fs::write(&alias, "&ann@example.org\n").unwrap();
    fs::set_permissions(&alias, fs::Permissions::from_mode(0o644)).unwrap();

    // byte-exact, all pipelined on one stdio session
    let rows: &[(&str, &str)] = &[
        ("ann@example.org", "OK ann@example.org"),
        ("Ann.Other@Example.ORG", "OK Ann.Other@Example.ORG"),
        ("joe@example.org", "OK joe@example.org"),
        ("JOE@EXAMPLE.ORG", "OK JOE@EXAMPLE.ORG"),
        ("postmaster@example.org", "OK postmaster@example.org"),
        ("quiet@example.org", "OK quiet@example.org"),
        ("off@example.org", &format!("NOTFOUND {DISABLED}")),
        ("gone@example.org", &format!("NOTFOUND {NO_MAILBOX}")),
        ("nobody-here@example.org", &format!("NOTFOUND {NO_MAILBOX}")),
        ("", &format!("NOTFOUND {NO_MAILBOX}")),
        ("x@elsewhere.net", "NOTFOUND Sorry, that domain is not delivered here. (#5.1.2)"),
        ("full@example.org", "TEMP Over quota"),
    ];
    let keys: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let want: Vec<u8> = rows.iter().flat_map(|r| reply(r.1)).collect();
    assert_eq!(show(&m.replies(&[], &keys)), show(&want));

    // Postfix's client under tcpserver
    let (_server, port) = m.tcpserver(&[]);
    let map = format!("socketmap:inet:127.0.0.1:{port}:smmap");
    for key in ["ann@example.org", "Ann.Other@Example.ORG", "joe@example.org", "quiet@example.org"]
    {
        let (code, out, err) = m.postmap(key, &map);
        assert_eq!((code, out.as_str()), (0, format!("{key}\n").as_str()), "{key}: {err}");
    }
    for key in ["off@example.org", "gone@example.org", "nobody-here@example.org", "x@elsewhere.net"]
    {
        let (code, out, err) = m.postmap(key, &map);
        assert_eq!((code, out.as_str()), (1, ""), "{key}: {err}");
    }
    let (code, out, err) = m.postmap("full@example.org", &map);
    assert!(code != 0 && out.is_empty(), "{code} {out}");
    assert!(err.contains("socketmap server temporary error: Over quota"), "{err}");
    // and the unix: form, smmapd under ucspi-unix's unixserver
    let (_unix, socket) = m.unixserver(&m.open_dir("unix"));
    let map = format!("socketmap:unix:{}:smmap", socket.display());
    let (code, out, err) = m.postmap("Ann.Other@Example.ORG", &map);
    assert_eq!((code, out.as_str()), (0, "Ann.Other@Example.ORG\n"), "{err}");
    let (code, out, err) = m.postmap("nobody-here@example.org", &map);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");

    // over quota as a permanent failure: the control file, overridden by -C
    m.sb.control("smmapdquotaperm", "1\n");
    assert_eq!(show(&m.replies(&[], &["full@example.org"])), show(&reply("PERM Over quota")));
    let conf = m.sb.tmp.path().join("smmapd.conf");
    fs::write(&conf, "# imapd.conf style\nlmtp_over_quota_perm_failure: 0\n").unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
    let conf = conf.to_str().unwrap();
    assert_eq!(
        show(&m.replies(&["-C", conf], &["full@example.org"])),
        show(&reply("TEMP Over quota"))
    );
}

#[test]
fn plus_addressing_with_and_without_p() {
    let s = slapd::shared();
    let m = Map::new(s, "plus");
    let ann = m.ldap_user(s, "ann", "");
    folder(&ann.join("Maildir"), ".Lists");
    let joe = m.cdb_user();
    folder(&joe.join("Maildir"), ".Lists");
    folder(&joe.join("Maildir"), ".a.b");
    fs::create_dir_all(joe.join("Maildir/.nocur")).unwrap();
    let ok = |k: &str| format!("OK {k}");
    let nf = format!("NOTFOUND {NO_MAILBOX}");
    let rows: Vec<(&str, String, String)> = vec![
        // key, without -p, with -p
        ("joe+Lists@example.org", ok("joe+Lists@example.org"), ok("joe+Lists@example.org")),
        ("JOE+Lists@EXAMPLE.ORG", ok("JOE+Lists@EXAMPLE.ORG"), ok("JOE+Lists@EXAMPLE.ORG")),
        ("joe+lists@example.org", nf.clone(), ok("joe+lists@example.org")),
        ("joe+a/b@example.org", ok("joe+a/b@example.org"), ok("joe+a/b@example.org")),
        ("joe+a@example.org", nf.clone(), ok("joe+a@example.org")),
        ("joe+nocur@example.org", nf.clone(), ok("joe+nocur@example.org")),
        ("joe+nope@example.org", nf.clone(), ok("joe+nope@example.org")),
        ("joe+.@example.org", nf.clone(), ok("joe+.@example.org")),
        ("joe+../x@example.org", nf.clone(), ok("joe+../x@example.org")),
        ("joe+@example.org", ok("joe+@example.org"), ok("joe+@example.org")),
        ("ann+Lists@example.org", ok("ann+Lists@example.org"), ok("ann+Lists@example.org")),
        ("ann+Other@example.org", nf.clone(), ok("ann+Other@example.org")),
        ("nobody-here+Lists@example.org", nf.clone(), nf.clone()),
        ("+Lists@example.org", nf.clone(), nf.clone()),
    ];
    let keys: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let without: Vec<u8> = rows.iter().flat_map(|r| reply(&r.1)).collect();
    let with: Vec<u8> = rows.iter().flat_map(|r| reply(&r.2)).collect();
    assert_eq!(show(&m.replies(&[], &keys)), show(&without), "without -p");
    assert_eq!(show(&m.replies(&["-p"], &keys)), show(&with), "with -p");

    let (_plain, port) = m.tcpserver(&[]);
    let (_skip, port_p) = m.tcpserver(&["-p"]);
    let inet = |p: u16| format!("socketmap:inet:127.0.0.1:{p}:smmap");
    assert_eq!(m.postmap("joe+Lists@example.org", &inet(port)).1, "joe+Lists@example.org\n");
    assert_eq!(m.postmap("joe+lists@example.org", &inet(port)).0, 1);
    assert_eq!(m.postmap("joe+lists@example.org", &inet(port_p)).1, "joe+lists@example.org\n");
}

#[test]
fn userdeny_text_file_and_cdb() {
    let s = slapd::shared();
    let m = Map::new(s, "deny");
    folder(&m.cdb_user().join("Maildir"), ".Lists");
    m.ldap_user(s, "ann", "");
    m.ldap_user(s, "bea", "");
    m.sb.control(
        "userdeny",
        "# address, version, services, message\n\
         joe@example.org\t2\tsmmap\tGone fishing\x07 today\n\
         ann@example.org\t1\t*,!smmap\n\
         bea@example.org\t1\tpop3,smm*\n\
         bad@example.org\t7\t*\n",
    );
    let blocked = "NOTFOUND Access to this service has been blocked";
    let rows: &[(&str, &str)] = &[
        ("joe@example.org", "NOTFOUND Gone fishing  today"),
        ("Joe+Lists@Example.ORG", "NOTFOUND Gone fishing  today"),
        ("ann@example.org", "OK ann@example.org"),
        ("bea@example.org", blocked),
    ];
    let keys: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let want: Vec<u8> = rows.iter().flat_map(|r| reply(r.1)).collect();
    assert_eq!(show(&m.replies(&[], &keys)), show(&want));

    // another service name
    let out = run_with(
        m.smmapd(&[]).env("SMMAPD_SERVICE", "imap"),
        &[request("joe@example.org"), request("ann@example.org")].concat(),
    );
    assert_eq!(show(&out.stdout), show(&[reply("OK joe@example.org"), reply(blocked)].concat()));

    // the cdb made by qmailctl cdb replaces the text file
    let out = m.sb.run("qmailctl", &["cdb", "--home", m.sb.home.to_str().unwrap()], b"");
    assert_ok(&out, "qmailctl cdb");
    assert!(m.sb.home.join("control/userdeny.cdb").exists());
    m.sb.control("userdeny", "");
    assert_eq!(show(&m.replies(&[], &keys)), show(&want), "from the cdb");
}

#[test]
fn slapd_down_is_temporary_never_notfound() {
    // a private slapd: stopping the shared one would fail the other tests
    let server = Slapd::new();
    let m = Map::new(&server, "outage");
    m.ldap_user(&server, "olga", "");
    m.sb.control("ldaptimeout", "2\n");
    assert_eq!(show(&m.replies(&[], &["olga@example.org"])), show(&reply("OK olga@example.org")));
    let (_server, port) = m.tcpserver(&[]);
    // hung: on a connection already bound the search times out (TIMEOUT); a new connection's
    // bind times out (TEMP, unreachable)
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let ask = |c: &mut TcpStream, key: &str| {
        c.write_all(&request(key)).unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        // a reply ends with the `,` after its announced length
        while let Ok(1) = c.read(&mut byte) {
            got.push(byte[0]);
            let text = show(&got);
            if let Some((len, rest)) = text.split_once(':') {
                if len.parse::<usize>().is_ok_and(|l| rest.len() == l + 1) {
                    break;
                }
            }
        }
        show(&got)
    };
    assert_eq!(ask(&mut c, "olga@example.org"), show(&reply("OK olga@example.org")));
    server.pause();
    let hung = ask(&mut c, "olga@example.org");
    let fresh = show(&m.replies(&[], &["nobody-here@example.org"]));
    server.resume();
    assert_eq!(hung, show(&reply(&format!("TIMEOUT {TEMPORARY}"))));
    assert_eq!(fresh, show(&reply(&format!("TEMP {TEMPORARY}"))));
    // stopped: unreachable
    server.stop();
    let out = m.replies(&[], &["olga@example.org", "nobody-here@example.org"]);
    let text = show(&out);
    // the client learns nothing about the directory: the reason is logged
    assert_eq!(text, show(&reply(&format!("TEMP {TEMPORARY}")).repeat(2)));
    let (code, out, err) =
        m.postmap("olga@example.org", &format!("socketmap:inet:127.0.0.1:{port}:x"));
    // postmap exits 1 both for "not found" and for a failed query: stderr tells them apart
    assert!(code != 0 && out.is_empty(), "{code}: {out} {err}");
    assert!(err.contains("socketmap server temporary error"), "{err}");
}

#[test]
fn hostile_clients_close_only_their_connection() {
    let s = slapd::shared();
    let m = Map::new(s, "hostile");
    m.cdb_user();
    m.sb.control("timeoutsmmapd", "1\n");
    let (_server, port) = m.tcpserver(&[]);
    let limit = Duration::from_secs(20);
    let joe = reply("OK joe@example.org");

    // 100 KB claimed and sent
    let mut big = b"102400:smmap ".to_vec();
    big.extend(std::iter::repeat(b'x').take(102_400 - 6));
    big.push(b',');
    let (got, _) = exchange(port, &big, limit);
    assert_eq!(show(&got), show(&reply("PERM Bad protocol (request too long)")));

    // not a netstring
    let (got, _) = exchange(port, b"GET / HTTP/1.0\r\n\r\n", limit);
    assert_eq!(show(&got), show(&reply("PERM Bad protocol (missing length)")));

    // no terminator, no key
    let (got, _) = exchange(port, b"5:m key;", limit);
    assert_eq!(show(&got), show(&reply("PERM Bad protocol (missing terminator)")));
    let (got, _) = exchange(port, &[&request("joe@example.org")[..], b"5:nokey,"].concat(), limit);
    assert_eq!(show(&got), show(&[&joe[..], &reply("PERM Bad protocol (missing key)")].concat()));

    // half a netstring, then silence: the read timeout (1 s here) ends it
    let (got, took) = exchange(port, b"23:smmap joe", limit);
    assert_eq!(show(&got), show(&reply("PERM Bad protocol (request size doesn't match length)")));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // silence from the start: closed without a reply
    let (got, took) = exchange(port, b"", limit);
    assert_eq!(show(&got), "");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "{took:?}");

    // pipelined requests on one connection, in one write; replies in order
    let keys = ["joe@example.org", "nobody-here@example.org", "JOE@example.org"];
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(&keys.iter().flat_map(|k| request(k)).collect::<Vec<u8>>()).unwrap();
    let want = [joe.clone(), reply(&format!("NOTFOUND {NO_MAILBOX}")), reply("OK JOE@example.org")]
        .concat();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(show(&got), show(&want));
    // the connection stays open for more
    s.write_all(&request("joe@example.org")).unwrap();
    let mut got = vec![0u8; joe.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(show(&got), show(&joe));
    drop(s);

    // the server still answers
    let (code, out, _) =
        m.postmap("joe@example.org", &format!("socketmap:inet:127.0.0.1:{port}:x"));
    assert_eq!((code, out.as_str()), (0, "joe@example.org\n"));
}

#[test]
fn command_line() {
    let s = slapd::shared();
    let m = Map::new(s, "options");
    m.cdb_user();
    for bad in
        [&["-U30"][..], &["-Dp"], &["extra"], &["-U"], &["-T", "x"], &["--listen", "nowhere"]]
    {
        let out = m.session(bad, b"");
        assert_eq!(code(&out), 64, "{bad:?}: {}", show(&out.stderr));
    }
    let out = m.session(&["-U"], b"");
    assert!(show(&out.stderr).starts_with("usage: smmapd [-C config] [-U uses] [-T timeout]"));
    // -U and -T are accepted and ignored in the stdio mode
    let out = m.session(&["-U", "3", "-T", "0", "-p"], &request("joe@example.org"));
    assert_eq!((code(&out), show(&out.stdout)), (0, show(&reply("OK joe@example.org"))));
    if is_root() {
        let out = run_with(m.sb.cmd("smmapd").env_remove("SMMAPD_SERVICE"), b"");
        assert_eq!(code(&out), 100, "{}", show(&out.stderr));
        assert!(show(&out.stderr).contains("refusing to run as root"));
    }
    // -D runs the configured command with the program, pid and service, quoted for the shell
    let dir = m.open_dir("debug");
    let file = dir.join("ran");
    m.sb.control("smmapddebugcommand", &format!("echo %s %d %s > {}\n", file.display()));
    let out =
        run_with(m.smmapd(&["-D"]).env("SMMAPD_SERVICE", "my map"), &request("joe@example.org"));
    assert_eq!(show(&out.stdout), show(&reply("OK joe@example.org")), "{}", show(&out.stderr));
    let ran = fs::read_to_string(&file).unwrap();
    let words: Vec<&str> = ran.split_whitespace().collect();
    assert!(words.len() == 4 && words[0].ends_with("smmapd"), "{ran}");
    assert!(words[1].parse::<u32>().is_ok() && words[2..] == ["my", "map"], "{ran}");
    // without -D nothing runs
    fs::remove_file(&file).unwrap();
    let _ = m.session(&[], &request("joe@example.org"));
    assert!(!file.exists());
}

/// smmapd listening by itself, its log collected.
struct Listening {
    _guard: Guard,
    log: Arc<Mutex<Vec<String>>>,
}

impl Listening {
    fn start(m: &Map, args: &[&str]) -> Listening {
        Listening::start_command(m.smmapd(args))
    }

    fn start_command(mut cmd: Command) -> Listening {
        let mut child = spawn(cmd.stderr(Stdio::piped()).stdout(Stdio::null()));
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        let l = Listening { _guard: Guard(child), log };
        assert!(
            wait_until(Duration::from_secs(10), || l
                .lines()
                .iter()
                .any(|x| x.contains("listening"))),
            "smmapd did not start listening: {:?}",
            l.lines()
        );
        l
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The pids of the sessions, in order.
    fn session_pids(&self) -> Vec<u32> {
        self.lines()
            .iter()
            .filter_map(|l| {
                l.strip_prefix("smmapd: pid ")?.strip_suffix(": connection")?.parse().ok()
            })
            .collect()
    }
}

#[test]
fn listening_workers_serve_uses_then_make_way_and_exit_when_idle() {
    let s = slapd::shared();
    let m = Map::new(s, "listen");
    m.cdb_user();
    let socket = m.open_dir("run").join("smmapd.sock");
    let listen = format!("unix:{}", socket.display());
    let l = Listening::start(&m, &["-U", "3", "-T", "1", "--listen", &listen]);
    let map = format!("socketmap:unix:{}:smmap", socket.display());
    for n in 1..=4 {
        let (code, out, err) = m.postmap("joe@example.org", &map);
        assert_eq!((code, out.as_str()), (0, "joe@example.org\n"), "query {n}: {err}");
    }
    assert!(wait_until(Duration::from_secs(10), || l.session_pids().len() == 4), "{:?}", l.lines());
    let pids = l.session_pids();
    assert!(pids[0] == pids[1] && pids[1] == pids[2], "{pids:?}");
    assert_ne!(pids[3], pids[0], "the fourth connection was served by a used-up worker");
    // -T 1: the second worker, idle, exits (within [1, 1] s plus the master's reaping)
    let second = pids[3];
    assert!(
        wait_until(Duration::from_secs(10), || !Path::new(&format!("/proc/{second}")).exists()),
        "the idle worker is still there: {:?}",
        l.lines()
    );
    // the log is read by another thread: the line may come after the process is gone
    let idle = format!("worker {second} accepts no more: idle");
    assert!(
        wait_until(Duration::from_secs(10), || l.lines().iter().any(|x| x.contains(&idle))),
        "{:?}",
        l.lines()
    );
    // and the next connection gets a fresh worker
    let (code, out, _) = m.postmap("nobody-here@example.org", &map);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(wait_until(Duration::from_secs(10), || l.session_pids().len() == 5));
    assert!(!pids.contains(&l.session_pids()[4]));

    // TCP too
    let port = free_port();
    let tcp = format!("tcp:127.0.0.1:{port}");
    let t = Listening::start(&m, &["--listen", &tcp]);
    let (code, out, err) =
        m.postmap("JOE@example.org", &format!("socketmap:inet:127.0.0.1:{port}:smmap"));
    assert_eq!((code, out.as_str()), (0, "JOE@example.org\n"), "{err}");
    // a worker whose master is gone stops accepting and exits (-T 60 has not run out)
    assert!(wait_until(Duration::from_secs(10), || t.session_pids().len() == 1));
    let worker = t.session_pids()[0];
    drop(t);
    assert!(
        wait_until(Duration::from_secs(10), || !Path::new(&format!("/proc/{worker}")).exists()),
        "the worker outlived its master"
    );
}

#[test]
fn a_replaced_program_serves_from_the_next_worker() {
    let s = slapd::shared();
    let m = Map::new(s, "upgrade");
    m.cdb_user();
    // a copy of smmapd that the test may replace, as an upgrade replaces the installed one
    let dir = m.open_dir("upgrade");
    let exe = dir.join("smmapd");
    fs::copy(bin("smmapd"), &exe).unwrap();
    let socket = dir.join("smmapd.sock");
    let mut cmd = m.smmapd(&["-U", "1", "--listen", &format!("unix:{}", socket.display())]);
    let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_os_string()).collect();
    let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> =
        cmd.get_envs().map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string()))).collect();
    cmd = Command::new(&exe);
    cmd.args(args);
    for (k, v) in envs {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    nobody(&mut cmd);
    let l = Listening::start_command(cmd);
    let map = format!("socketmap:unix:{}:smmap", socket.display());
    let (code, out, err) = m.postmap("joe@example.org", &map);
    assert_eq!((code, out.as_str()), (0, "joe@example.org\n"), "{err}");
    // replaced on disk (a new inode, the old one deleted), as cp to a temp name + mv does
    let tmp = dir.join("smmapd.new");
    fs::copy(bin("smmapd"), &tmp).unwrap();
    fs::rename(&tmp, &exe).unwrap();
    let (code, out, err) = m.postmap("joe@example.org", &map);
    assert_eq!((code, out.as_str()), (0, "joe@example.org\n"), "{err}\n{:?}", l.lines());
    assert!(!l.lines().iter().any(|x| x.contains("unable to start a worker")), "{:?}", l.lines());
}
