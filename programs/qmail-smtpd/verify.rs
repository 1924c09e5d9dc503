//! qmail-smtpd's client of qmail-verify, for RCPTCHECK and the directory part of SENDERCHECK
//! (doc/qmail-verify.8; doc/qmail-smtpd.8, "Recipient verification").
//!
//! The verifier is reached lazily, at the first address of the session that needs it: the
//! service named by `control/verifysocket` (a Unix socket, `qmail-verify --listen`), connected
//! once per session; if there is none or it cannot be reached, the co-process
//! `QMAILHOME/bin/qmail-verify` as upstream, closed at DATA and at the end of the session and
//! started again at the next check. One question at a time: `address\0`, then `K`, or `D`/`Z`
//! with a text and a NUL ([`qmail::verify::wire`]), within [`TIMEOUT`].
//!
//! An outage is never a refusal (doc/DECISIONS.md, 2 and 14): no answer, end of file, a timeout or
//! bytes that are not an answer give [`Reply::Unavailable`], and the verifier is not asked
//! again in this session.
//!
//! Security: the address goes to the verifier as data on a pipe or socket, never through a
//! shell or a command line; the answer is bounded ([`qmail::verify::wire::TEXT_MAX`]) and its
//! text made printable before it reaches the client.

use qmail::verify::wire::Answer;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one question may take (upstream's 30 s).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Why there was no answer, when it was the timeout.
const TIMED_OUT: &str = "timeout";

/// How long a closed co-process gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What the verifier said about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `K`
    Deliverable,
    /// `D`: the text, printable
    Refused(String),
    /// `Z`: the text, printable
    Temporary(String),
    /// no answer; why, for the log
    Unavailable(String),
}

/// The connection to the verifier.
enum Link {
    /// not asked yet, or the co-process was closed at DATA
    Idle,
    Service(UnixStream),
    Coprocess {
        child: Child,
        input: ChildStdin,
        output: ChildStdout,
    },
    /// failed in this session: not asked again
    Broken,
}

/// The verifier of one session.
pub struct Client {
    home: PathBuf,
    socket: Option<PathBuf>,
    socket_tried: bool,
    link: Link,
}

impl Client {
    /// `socket` is `control/verifysocket` as read (relative names are under `home`).
    pub fn new(home: &Path, socket: Option<&str>) -> Self {
        Client {
            home: home.to_path_buf(),
            socket: socket.filter(|s| !s.is_empty()).map(|s| home.join(s)),
            socket_tried: false,
            link: Link::Idle,
        }
    }

    /// Ask about `address`.
    pub fn ask(&mut self, address: &[u8]) -> Reply {
        if address.contains(&0) {
            return Reply::Refused(qmail::verify::NO_MAILBOX.into());
        }
        if let Link::Broken = self.link {
            return Reply::Unavailable("the verifier failed earlier in this session".into());
        }
        if let Link::Idle = self.link {
            match self.open() {
                Ok(link) => self.link = link,
                Err(why) => {
                    self.link = Link::Broken;
                    return Reply::Unavailable(why);
                }
            }
        }
        let mut result = self.exchange(address);
        if let (Err(why), Link::Service(_), Some(path)) = (&result, &self.link, &self.socket) {
            // the service may have closed a connection left idle: one fresh connection
            if why != TIMED_OUT {
                if let Some(stream) = connect(path) {
                    self.link = Link::Service(stream);
                    result = self.exchange(address);
                }
            }
        }
        match result {
            Ok(Answer::Ok) => Reply::Deliverable,
            Ok(Answer::Refused(text)) => {
                Reply::Refused(printable(&text, qmail::verify::NO_MAILBOX))
            }
            Ok(Answer::Temporary(text)) => {
                Reply::Temporary(printable(&text, qmail::verify::TEMPORARY))
            }
            Err(why) => {
                self.close();
                self.link = Link::Broken;
                Reply::Unavailable(why)
            }
        }
    }

    /// One question on the current link.
    fn exchange(&mut self, address: &[u8]) -> Result<Answer, String> {
        let deadline = Instant::now() + TIMEOUT;
        match &mut self.link {
            Link::Service(stream) => {
                let mut reader = &*stream;
                let mut writer = &*stream;
                exchange(&mut writer, &mut reader, address, deadline)
            }
            Link::Coprocess { input, output, .. } => exchange(input, output, address, deadline),
            Link::Idle | Link::Broken => Err("no verifier".to_string()),
        }
    }

    /// At DATA: the co-process goes (it is started again at the next check); the service
    /// connection stays.
    pub fn close_coprocess(&mut self) {
        if let Link::Coprocess { .. } = self.link {
            self.close();
        }
    }

    /// The service if it is configured and answers the connection, else the co-process.
    fn open(&mut self) -> Result<Link, String> {
        if let Some(path) = self.socket.as_ref().filter(|_| !self.socket_tried) {
            self.socket_tried = true;
            if let Some(stream) = connect(path) {
                return Ok(Link::Service(stream));
            }
        }
        let program = self.home.join("bin/qmail-verify");
        let mut child = Command::new(&program)
            .current_dir(&self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("unable to run {}: {e}", program.display()))?;
        match (child.stdin.take(), child.stdout.take()) {
            (Some(input), Some(output)) => Ok(Link::Coprocess { child, input, output }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err("unable to talk to qmail-verify".into())
            }
        }
    }

    /// Close the connection: the co-process sees end of input and exits (or is killed after
    /// [`EXIT_GRACE`]), and is reaped.
    fn close(&mut self) {
        if let Link::Coprocess { mut child, input, output } =
            std::mem::replace(&mut self.link, Link::Idle)
        {
            drop(input);
            drop(output);
            let deadline = Instant::now() + EXIT_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// A connection to the service, with the write timeout set.
fn connect(path: &Path) -> Option<UnixStream> {
    let stream = UnixStream::connect(path).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    Some(stream)
}

/// One question and its answer, by `deadline`. `Err` says why there is no answer.
fn exchange<W: Write, R: AsFd>(
    w: &mut W,
    r: &mut R,
    address: &[u8],
    deadline: Instant,
) -> Result<Answer, String> {
    w.write_all(&qmail::verify::wire::request(address))
        .and_then(|()| w.flush())
        .map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = match qmail::timeoutio::read_by(r.as_fd(), &mut chunk, deadline) {
            Ok(0) => return Err("end of file".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(TIMED_OUT.into()),
            Err(e) => return Err(format!("read: {e}")),
        };
        got.extend_from_slice(&chunk[..n]);
        match Answer::decode(&got) {
            Ok(Some((answer, used))) if used == got.len() => return Ok(answer),
            Ok(Some(_)) => return Err("bytes after the answer".into()),
            Ok(None) => continue,
            Err(_) => return Err("not an answer".into()),
        }
    }
}

/// An answer text for the client: printable ASCII (anything else becomes `?`), or `default`
/// when empty.
fn printable(text: &[u8], default: &str) -> String {
    if text.is_empty() {
        return default.to_string();
    }
    qmail::safe::printable(text, '?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges() {
        let rows: &[(&[u8], Result<Answer, String>)] = &[
            (b"K", Ok(Answer::Ok)),
            (b"Dno (#5.1.1)\0", Ok(Answer::Refused(b"no (#5.1.1)".to_vec()))),
            (b"Z\0", Ok(Answer::Temporary(Vec::new()))),
            (b"", Err("end of file".into())),
            (b"Dno", Err("end of file".into())),
            (b"KK", Err("bytes after the answer".into())),
            (b"?", Err("not an answer".into())),
        ];
        for (answer, want) in rows {
            let (mut ours, mut theirs) = UnixStream::pair().unwrap();
            theirs.write_all(answer).unwrap();
            theirs.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reader = ours.try_clone().unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let got = exchange(&mut ours, &mut reader, b"a@b", deadline);
            assert_eq!(&got, want, "{answer:?}");
        }
    }

    #[test]
    fn silence_is_a_timeout() {
        let (mut ours, _theirs) = UnixStream::pair().unwrap();
        let mut reader = ours.try_clone().unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(exchange(&mut ours, &mut reader, b"a@b", deadline), Err("timeout".into()));
    }

    #[test]
    fn texts_are_printable() {
        assert_eq!(printable(b"a\r\nb\x7f", "d"), "a??b?");
        assert_eq!(printable(b"", "d"), "d");
    }
}
