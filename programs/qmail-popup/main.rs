//! qmail-popup: the POP3 authorization state; hands the login to a checkpassword program
//! (doc/qmail-popup.8).
//!
//! `qmail-popup hostname subprogram [args...]`, run once per connection by a TCP server
//! (qmail-tcpsrv, or ucspi-tcp's tcpserver) with the client on fds 0 and 1. It greets with
//! `+OK <pid.time@hostname>` (the bracketed part is the APOP timestamp), takes USER and PASS
//! (or APOP), and then, once per connection, runs `subprogram args...` with
//! `user\0password\0timestamp\0` on a pipe at fd 3 (the checkpassword interface: auth_pop,
//! which runs qmail-pop3d). The password is wiped from memory once written. Exit 0 of the
//! sub-program means it served the session: qmail-popup quits silently. Any other code
//! becomes `-ERR <text>` ([`qmail::pop3::auth_failure`]; doc/qmail-popup.8, EXIT CODES).
//!
//! TLS: STLS (RFC 2595) when there is a certificate (`SSLCERT`, else `control/smtpcert`), or
//! the whole session (`POP3S` set: implicit TLS, port 995). A TLS session cannot be handed
//! to another process, so under TLS the sub-program gets one end of a socket pair as its
//! fds 0 and 1 and qmail-popup relays between it and the client (conn.rs).
//!
//! Exit codes: 0 the session ended by QUIT, by the client, or was served by the sub-program;
//! 1 otherwise (usage, a failed authentication, timeout, a line too long, TLS failure).
//!
//! Security: runs as the TCP server's user; reads `control/timeoutpop3`, `control/smtpcert`
//! and `control/tlsciphers`; the sub-program is exec'd directly, never through a shell, and
//! the client's words reach it only as data on fd 3.

#![forbid(unsafe_code)]

mod conn;

use conn::{Conn, IoError};
use nix::fcntl::OFlag;
use qmail::auth::checkpassword::CheckExit;
use qmail::control::Control;
use qmail::pop3::{self, Input, Verb};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The timeout when `control/timeoutpop3` does not say (upstream's fixed 1200 seconds).
const DEFAULT_TIMEOUT: u64 = 1200;

/// What the environment and the control files say.
struct Config {
    home: PathBuf,
    timeout: Duration,
    /// `SSLCERT`, else `control/smtpcert` when it exists
    cert: Option<PathBuf>,
    /// `POP3S`: TLS from the first byte
    pop3s: bool,
    /// `POP3TLSREQUIRED`: no USER, PASS or APOP before STLS
    tls_required: bool,
}

impl Config {
    fn load() -> Config {
        let home = qmail::auto::home();
        let timeout = Control::new(&home)
            .int("timeoutpop3")
            .ok()
            .flatten()
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_TIMEOUT);
        let cert = match std::env::var_os("SSLCERT") {
            Some(p) if !p.is_empty() => Some(home.join(p)),
            _ => Some(home.join("control/smtpcert")).filter(|p| p.exists()),
        };
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        Config {
            home,
            timeout: Duration::from_secs(timeout),
            cert,
            pop3s: set("POP3S"),
            tls_required: set("POP3TLSREQUIRED"),
        }
    }

    /// The TLS configuration: the certificate file and `control/tlsciphers`, read now.
    fn tls(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
        let cert = self.cert.as_ref().ok_or("no certificate (control/smtpcert or SSLCERT)")?;
        qmail::tls::installation_config(&self.home, cert).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        let _ = std::io::stdout().write_all(b"-ERR usage: qmail-popup hostname subprogram\r\n");
        return ExitCode::from(1);
    }
    let config = Config::load();
    let Ok(mut conn) = Conn::stdio(config.timeout) else { return ExitCode::from(1) };
    let ok = session(&mut conn, &config, &args);
    conn.close();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn fatal(text: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().write_all(format!("qmail-popup: fatal: {text}\n").as_bytes());
}

/// The authorization state, then the hand-off; true when it ended well.
fn session(conn: &mut Conn, config: &Config, args: &[OsString]) -> bool {
    if config.pop3s {
        let tls = match config.tls() {
            Ok(tls) => tls,
            Err(e) => {
                fatal(format_args!("POP3S: {e}"));
                return false;
            }
        };
        if conn.start_tls(tls).is_err() {
            return false;
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let host = args[0].to_string_lossy();
    let stamp = format!("<{}.{now}@{host}>", std::process::id());
    if conn.send(format!("+OK {stamp}\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut user: Option<Vec<u8>> = None;
    loop {
        let cmd = match conn.next() {
            Ok(Input::Command(cmd)) => cmd,
            Ok(Input::TooLong) => {
                let _ = conn.send(b"-ERR line too long\r\n");
                return false;
            }
            Err(IoError::Eof) => return true,
            Err(_) => return false,
        };
        let clear = config.tls_required && !conn.is_tls();
        let answer: &[u8] = match cmd.verb {
            Verb::Quit => {
                let _ = conn.send(b"+OK \r\n");
                return true;
            }
            Verb::Noop => b"+OK \r\n",
            Verb::Capa => {
                let mut text = b"+OK capability list follows\r\nTOP\r\nUIDL\r\n".to_vec();
                if !clear {
                    text.extend_from_slice(b"USER\r\n");
                }
                if !conn.is_tls() && config.cert.is_some() {
                    text.extend_from_slice(b"STLS\r\n");
                }
                text.extend_from_slice(b"IMPLEMENTATION qmail-ldap-rs\r\n.\r\n");
                if conn.send(&text).is_err() {
                    return false;
                }
                continue;
            }
            Verb::Stls if conn.is_tls() || config.cert.is_none() => b"-ERR STLS not available\r\n",
            Verb::Stls => {
                let tls = match config.tls() {
                    Ok(tls) => tls,
                    Err(e) => {
                        fatal(format_args!("STLS: {e}"));
                        let _ = conn.send(b"-ERR TLS not available: configuration error\r\n");
                        continue;
                    }
                };
                if conn.send(b"+OK begin TLS negotiation\r\n").is_err()
                    || conn.start_tls(tls).is_err()
                {
                    return false;
                }
                // what was said in the clear is forgotten (RFC 2595)
                user = None;
                continue;
            }
            Verb::User | Verb::Pass | Verb::Apop if clear => b"-ERR TLS required: STLS first\r\n",
            Verb::User if cmd.arg.is_empty() => b"-ERR syntax error\r\n",
            Verb::User => {
                user = Some(cmd.arg);
                b"+OK \r\n"
            }
            Verb::Pass => match user.take() {
                None => b"-ERR USER first\r\n",
                Some(name) if !cmd.arg.is_empty() => {
                    return hand_off(conn, args, &name, cmd.arg, &stamp);
                }
                Some(name) => {
                    user = Some(name);
                    b"-ERR syntax error\r\n"
                }
            },
            Verb::Apop => {
                let mut parts = cmd.arg.splitn(2, |&b| b == b' ');
                let name = parts.next().unwrap_or_default().to_vec();
                let digest = parts.next().unwrap_or_default().to_vec();
                if name.is_empty() || digest.is_empty() {
                    b"-ERR syntax error\r\n"
                } else {
                    return hand_off(conn, args, &name, digest, &stamp);
                }
            }
            _ => b"-ERR authorization first\r\n",
        };
        if conn.send(answer).is_err() {
            return false;
        }
    }
}

/// Run the sub-program with `user\0password\0stamp\0` on fd 3 (the password wiped once
/// written), relay under TLS, and answer its exit code; true when it served the session.
fn hand_off(
    conn: &mut Conn,
    args: &[OsString],
    user: &[u8],
    mut password: Vec<u8>,
    stamp: &str,
) -> bool {
    let mut data = [user, b"\0", &password, b"\0", stamp.as_bytes(), b"\0"].concat();
    pop3::wipe(&mut password);
    let status = run(conn, args, &data);
    pop3::wipe(&mut data);
    let code = match status {
        Ok(status) => status.code(),
        Err(text) => {
            let _ = conn.send(format!("-ERR {text}\r\n").as_bytes());
            return false;
        }
    };
    if code == Some(0) {
        return true;
    }
    if code == Some(i32::from(CheckExit::BadLogin.code())) {
        // a wrong password waits before its answer, so that guessing is slow
        std::thread::sleep(bad_login_delay());
    }
    let _ = conn.send(format!("-ERR {}\r\n", pop3::auth_failure(code)).as_bytes());
    false
}

/// How long a refused login waits (doc/DECISIONS.md, 31; `QMAILPOPUP_TEST_DELAY` in the tests' build).
fn bad_login_delay() -> Duration {
    qmail::auth::refused_login_delay("QMAILPOPUP_TEST_DELAY")
}

/// Start the sub-program, write `data` to its fd 3, relay under TLS, wait for it.
fn run(
    conn: &mut Conn,
    args: &[OsString],
    data: &[u8],
) -> Result<std::process::ExitStatus, &'static str> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|_| "temporary error")?;
    let mut cmd = Command::new(&args[1]);
    cmd.args(&args[2..]);
    qmail::child::map_fds(&mut cmd, vec![(read, 3)]);
    let mut ours = None;
    if conn.is_tls() {
        let (a, b) = UnixStream::pair().map_err(|_| "temporary error")?;
        let b2 = b.try_clone().map_err(|_| "temporary error")?;
        cmd.stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(b)));
        cmd.stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(b2)));
        ours = Some(a);
    }
    let child = cmd.spawn();
    // the child's ends of the pipe and the socket pair close here
    drop(cmd);
    let mut child = child.map_err(|e| {
        fatal(format_args!("unable to run {}: {e}", args[1].to_string_lossy()));
        "unable to start subprogram"
    })?;
    // a sub-program that does not read its fd 3 gets EPIPE here, not us a signal
    let _ = std::fs::File::from(write).write_all(data);
    if let Some(ours) = ours {
        let _ = conn.relay(ours);
    }
    child.wait().map_err(|_| "temporary error")
}
