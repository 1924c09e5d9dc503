//! imapd under ucspi-tcp's tcpserver for the IMAP tests: a sandbox with one `users/passwd`
//! user (no directory needed) and a raw IMAP client for byte-exact checks.

use super::{assert_ok, bin, free_port, run_with, tcpserver_ready, Guard, Sandbox};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const USER: &str = "joe";
pub const PASS: &str = "joe's pass";

/// A sandbox, its user's home and tcpserver running imapd on a free port.
pub struct Imapd {
    pub sb: Sandbox,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub port: u16,
    pub server: Option<Guard>,
}

impl Imapd {
    /// A sandbox with `joe` (users/assign + users/passwd) and imapd started with `args`
    /// (plaintext LOGIN allowed unless `args` say otherwise: pass `-p 2`).
    pub fn new(args: &[&str]) -> Imapd {
        let sb = Sandbox::new();
        let (uid, gid, home) = sb.user_home(USER);
        sb.assign(&[(USER, uid, gid, &home)]);
        let root = sb.home.to_str().unwrap().to_string();
        let out = sb.run(
            "qmailctl",
            &["passwd", "--home", &root, USER, "--password-stdin"],
            format!("{PASS}\n").as_bytes(),
        );
        assert_ok(&out, "qmailctl passwd");
        let mut imapd = Imapd { sb, home, uid, gid, port: 0, server: None };
        imapd.serve(args, &[]);
        imapd
    }

    /// (Re)start tcpserver running imapd with `args` and `env`.
    pub fn serve(&mut self, args: &[&str], env: &[(&str, &str)]) {
        self.server = None;
        let port = free_port();
        let mut cmd = Command::new("tcpserver");
        for k in ["AUTHENTICATED", "MAILDIR", "MAILDIRQUOTA", "SSLCERT", "IMAPLOGINTAG"] {
            cmd.env_remove(k);
        }
        cmd.env("QMAILHOME", &self.sb.home).env("IMAPD_TEST_DELAY", "100");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["-HRl0", "127.0.0.1", &port.to_string()]).arg(bin("imapd")).args(args);
        self.server = Some(tcpserver_ready(&mut cmd, port));
        self.port = port;
    }

    pub fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }

    /// Deliver a message into `folder` (a Maildir) the way delivery does: `tmp/`, then a
    /// link into `new/`, owned by the user. Returns the file name.
    pub fn put(&self, folder: &Path, text: &str) -> String {
        let name = qmail::maildir::unique_name();
        let tmp = folder.join("tmp").join(&name);
        fs::write(&tmp, text).unwrap();
        std::os::unix::fs::chown(&tmp, Some(self.uid), Some(self.gid)).unwrap();
        let target = format!("{name},S={}", text.len());
        fs::rename(&tmp, folder.join("new").join(&target)).unwrap();
        target
    }

    /// Run a Python script with the port, user and password as its arguments; its stdout
    /// (the script's failures fail the test, with its stderr).
    pub fn python(&self, script: &str) -> String {
        let out = run_with(
            Command::new("python3").args(["-c", script, &self.port.to_string(), USER, PASS]),
            b"",
        );
        assert_ok(&out, "python3");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The pid of this test's imapd (of its only session): the process named imapd whose
    /// environment holds this sandbox's QMAILHOME.
    pub fn pid(&self) -> i32 {
        let home = self.sb.home.to_str().unwrap().to_string();
        super::pids_of(&["imapd"])
            .into_iter()
            .find(|&p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "imapd")
                    && fs::read(format!("/proc/{p}/environ"))
                        .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&home))
            })
            .expect("this test's imapd")
    }

    /// A command for `program` run as the user (through setpriv when the tests run as root),
    /// with this sandbox's QMAILHOME.
    pub fn as_user(&self, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        if super::is_root() {
            cmd.args([
                &format!("--reuid={}", self.uid),
                &format!("--regid={}", self.gid),
                "--clear-groups",
            ]);
        }
        cmd.arg(program).env("QMAILHOME", &self.sb.home);
        cmd
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Connect and LOGIN.
    pub fn login(&self) -> Client {
        let mut c = self.connect();
        let greeting = c.line();
        assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
        c.ok("a0", &format!("LOGIN {USER} \"{PASS}\""));
        c
    }
}

/// A raw IMAP client.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }

    /// One line without CRLF ("" at the end of input).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Send `tag command` and read up to the tagged reply; (untagged lines, tagged line).
    /// Literals in the answer are read whole and kept inline.
    pub fn cmd(&mut self, tag: &str, command: &str) -> (Vec<String>, String) {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until(tag)
    }

    /// Read lines up to the one tagged `tag`.
    pub fn until(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let mut l = self.line();
            assert!(!l.is_empty(), "connection closed before {tag}: {untagged:?}");
            // a literal: read its bytes and the rest of the line
            while let Some(n) = literal_size(&l) {
                let mut buf = vec![0u8; n];
                self.r.read_exact(&mut buf).unwrap();
                l.push_str(&String::from_utf8_lossy(&buf));
                l.push_str(&self.line());
            }
            if l.starts_with(&format!("{tag} ")) {
                return (untagged, l);
            }
            untagged.push(l);
        }
    }

    /// `cmd`, asserting a tagged OK; the untagged lines.
    pub fn ok(&mut self, tag: &str, command: &str) -> Vec<String> {
        let (u, t) = self.cmd(tag, command);
        assert!(t.starts_with(&format!("{tag} OK")), "{command}: {t} after {u:?}");
        u
    }
}

/// `{n}` at the end of a line.
fn literal_size(line: &str) -> Option<usize> {
    let open = line.rfind('{')?;
    line[open + 1..].strip_suffix('}')?.parse().ok()
}
