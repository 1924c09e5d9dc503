//! The test harness: sandboxes (a fresh installation root per test, made by the real
//! `qmailctl init`), a runner for the built programs, queue inspection, and Drop guards for
//! child processes. Failures print expected and actual in full.

#![allow(dead_code)]

pub mod imap;
pub mod slapd;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Fail loudly unless qmail-queue's test hooks are compiled in (`QMAILQUEUE_TEST_PAUSE`, ...):
/// they exist only with the cargo feature `test-hooks`, which tests/run turns on.
pub fn require_test_hooks() {
    if !cfg!(feature = "test-hooks") {
        panic!("this test needs qmail-queue's test hooks: run tests/run (cargo test --features test-hooks)");
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The directory holding the built programs.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_qmailctl")).parent().unwrap().to_path_buf()
}

/// The built program `name`.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("qmail-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An installation root made by `qmailctl init --domain example.org`.
pub struct Sandbox {
    pub tmp: TempDir,
    pub home: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        Self::make(false)
    }

    /// A root for the delivery tests. Running as root (as CI does) it belongs to nobody
    /// (`qmailctl init --owner nobody`), who then plays every qmail user, while qmail-lspawn
    /// stays root and switches to each recipient's uid; mail is injected as nobody too
    /// ([`Sandbox::inject`]).
    pub fn for_delivery() -> Self {
        Self::make(true)
    }

    fn make(owned: bool) -> Self {
        let tmp = TempDir::new("home");
        let home = tmp.path().join("home");
        let mut cmd = Command::new(bin("qmailctl"));
        cmd.args(["init", "--home"])
            .arg(&home)
            .args(["--domain", "example.org"])
            .env_remove("QMAILHOME");
        if is_root() {
            // as root, init gives a single-user root to nobody, with or without --owner
            if owned {
                cmd.args(["--owner", "nobody"]);
            }
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = cmd.output().unwrap();
        assert_ok(&out, "qmailctl init");
        // a fixed `me` so that tests do not depend on the machine's name
        fs::write(home.join("control/me"), "mx.example.org\n").unwrap();
        fs::write(home.join("control/locals"), "mx.example.org\nexample.org\n").unwrap();
        // no queue files made ready at start (hundreds of them, and a sync, for each of the
        // suite's installations; tests that count the queue's files expect only their own):
        // queuesvc::pool_files_are_made_ready_at_start sets it
        fs::write(home.join("control/queuepool"), "0\n").unwrap();
        // the least queue journal (64 KiB: a few writes for each installation); messages of
        // over 16 KiB go by their round, so the suite takes both ways
        fs::write(home.join("control/queuejournal"), "64\n").unwrap();
        Sandbox { tmp, home }
    }

    /// Queue a message with qmail-inject, as nobody when running as root.
    pub fn inject(&self, args: &[&str], message: &str) {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.cmd("qmail-inject");
        cmd.args(args);
        if is_root() {
            cmd.uid(65534).gid(65534);
        }
        let out = run_with(&mut cmd, message.as_bytes());
        assert_ok(&out, "qmail-inject");
    }

    /// A command for the built program `name`, with `QMAILHOME` set to this root.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("QMAILHOME", &self.home).env_remove("QMAILQUEUE").current_dir(self.tmp.path());
        for var in [
            "QMAILUSER",
            "QMAILHOST",
            "QMAILNAME",
            "MAILUSER",
            "MAILHOST",
            "MAILNAME",
            "QMAILSUSER",
            "QMAILSHOST",
            "QMAILINJECT",
            "QMAILDEFAULTDOMAIN",
            "QMAILDEFAULTHOST",
            "QMAILIDHOST",
            "QMAILPLUSDOMAIN",
            "QMAILMFTFILE",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Run `name` with `args`, feeding `stdin`, and collect its output.
    pub fn run(&self, name: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_with(self.cmd(name).args(args), stdin)
    }

    /// Write `control/<name>`.
    pub fn control(&self, name: &str, content: &str) {
        fs::write(self.home.join("control").join(name), content).unwrap();
    }

    pub fn queue(&self) -> PathBuf {
        self.home.join("queue")
    }

    /// Every message committed to `todo/`, sorted by id.
    pub fn todo(&self) -> Vec<Queued> {
        let mut ids: Vec<u64> = fs::read_dir(self.queue().join("todo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
            .collect();
        ids.sort();
        ids.into_iter().map(|id| Queued::read(&self.queue(), id)).collect()
    }

    /// The names of the files under `queue/<dir>` (recursively for split directories).
    pub fn files(&self, dir: &str) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.queue().join(dir), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
}

/// A committed message: id, body and the records of its `todo` envelope file.
#[derive(Debug)]
pub struct Queued {
    pub id: u64,
    pub mess: Vec<u8>,
    pub records: Vec<String>,
}

impl Queued {
    pub fn read(queue: &Path, id: u64) -> Self {
        let mess = fs::read(queue.join(qmail::queue::split_name("mess", id))).unwrap();
        let todo = fs::read(queue.join(format!("todo/{id}"))).unwrap();
        assert_eq!(todo.last(), Some(&0), "todo/{id} ends with NUL");
        let records = todo[..todo.len() - 1]
            .split(|&b| b == 0)
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect();
        Queued { id, mess, records }
    }

    pub fn sender(&self) -> &str {
        self.records.iter().find_map(|r| r.strip_prefix('F')).expect("an F record")
    }

    pub fn recipients(&self) -> Vec<&str> {
        self.records.iter().filter_map(|r| r.strip_prefix('T')).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.mess).into_owned()
    }
}

/// Start `cmd`. A program a test has just copied may still be open for writing in a child
/// that another test's thread forked meanwhile (until that child's exec closes it), and
/// executing it then fails with ETXTBSY: tried again until that child is gone (10 s at most).
pub fn spawn(cmd: &mut Command) -> std::process::Child {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) => {
                assert!(Instant::now() < deadline, "unable to run {cmd:?}: {e}");
                std::thread::yield_now();
            }
            spawned => return spawned.unwrap_or_else(|e| panic!("unable to run {cmd:?}: {e}")),
        }
    }
}

/// Run a prepared command, feeding `stdin` from a thread so large inputs cannot deadlock.
pub fn run_with(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Assert a successful exit, printing everything the program said otherwise.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The exit code, or a panic naming the signal.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal: {}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A child process killed and reaped on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` with its stdin and stdout on pipes (stderr inherited); the child is killed
/// and reaped when the guard drops.
pub fn spawn_piped(
    cmd: &mut Command,
) -> (Guard, std::process::ChildStdin, std::process::ChildStdout) {
    let mut child =
        spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()));
    let input = child.stdin.take().unwrap();
    let output = child.stdout.take().unwrap();
    (Guard(child), input, output)
}

/// The pids of the processes whose command line contains every one of `needles`.
pub fn pids_of(needles: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if needles.iter().all(|n| cmd.contains(n)) {
            out.push(pid);
        }
    }
    out
}

/// The pids of the descendants of `root` whose command line contains every one of `needles`
/// (the processes of one test's mail system, not a parallel test's).
pub fn descendants_of(root: u32, needles: &[&str]) -> Vec<i32> {
    let parent = |pid: i32| -> Option<i32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces and parentheses
        stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
    };
    pids_of(needles)
        .into_iter()
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..64 {
                match parent(p) {
                    Some(pp) if pp == root as i32 => return true,
                    Some(pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Poll `cond` until it holds or `limit` passes; false on timeout.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The mail system (`qmailctl run`) running on a sandbox, with its log collected. Dropping it
/// stops qmail-send with TERM (and kills the whole process group if that takes too long).
pub struct Running {
    child: Option<Child>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// `qmailctl run`'s options that turn off every listener but SMTP's (`--listen`), so that
/// parallel tests do not fight over their default ports.
pub const OTHER_LISTENERS_OFF: &[&str] =
    &["--smtps", "off", "--submission", "off", "--pop3", "off", "--pop3s", "off"];

impl Sandbox {
    /// Start `qmailctl run` on this root, without the SMTP and POP3 listeners.
    pub fn start(&self) -> Running {
        self.start_with(&[&["--listen", "off"][..], OTHER_LISTENERS_OFF].concat())
    }

    /// Start `qmailctl run` with the SMTP listener on a free loopback port; returns the port.
    pub fn start_smtp(&self) -> (Running, u16) {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let run = self.start_with(&[&["--listen", &addr][..], OTHER_LISTENERS_OFF].concat());
        assert!(
            wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(&addr).is_ok()),
            "the SMTP listener did not come up; log:\n{}",
            run.log_text()
        );
        (run, port)
    }

    /// Start `qmailctl run` on this root with the options `extra`, once qmail-send runs.
    pub fn start_with(&self, extra: &[&str]) -> Running {
        let r = self.launch(extra);
        assert!(
            r.wait_log(Duration::from_secs(30), |l| l.starts_with("status: local")),
            "qmail-send did not start; log:\n{}",
            r.log_text()
        );
        // qmailctl run writes qmail-send's pid after starting it: qmail-send may have logged
        // before that write, so wait for the file too (tests signal through it)
        let pidfile = self.home.join("run/qmail-send.pid");
        assert!(
            wait_until(Duration::from_secs(30), || fs::read_to_string(&pidfile)
                .is_ok_and(|t| t.trim().parse::<u32>().is_ok())),
            "no run/qmail-send.pid; log:\n{}",
            r.log_text()
        );
        r
    }

    /// Start `qmailctl run` on this root with the options `extra` (the IMAP listeners off
    /// unless given) and return at once, its log being collected.
    pub fn launch(&self, extra: &[&str]) -> Running {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        // the IMAP listeners stay off unless a test asks for them (fixed default ports)
        let mut extra = extra.to_vec();
        for option in ["--imap", "--imaps"] {
            if !extra.contains(&option) {
                extra.extend([option, "off"]);
            }
        }
        let mut child = self
            .cmd("qmailctl")
            .arg("run")
            .args(&extra)
            .arg("--home")
            .arg(&self.home)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let l2 = log.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        Running { child: Some(child), log, reader: Some(reader) }
    }

    /// Make a home directory for a delivery user and return (uid, gid, path). Running as root
    /// it belongs to nobody (65534), so deliveries really switch users; otherwise to us.
    pub fn user_home(&self, name: &str) -> (u32, u32, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.tmp.path().join("homes").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(self.tmp.path().join("homes"), fs::Permissions::from_mode(0o755))
            .unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let (uid, gid) = if nix::unistd::geteuid().is_root() {
            (65534, 65534)
        } else {
            (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
        };
        for sub in ["", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        }
        (uid, gid, dir)
    }

    /// Assign local parts to users (`users/assign` + qmail-newu). Each entry is
    /// `(local, uid, gid, home)` with an exact match.
    pub fn assign(&self, entries: &[(&str, u32, u32, &Path)]) {
        let mut text = String::new();
        for (local, uid, gid, home) in entries {
            text.push_str(&format!("={local}:{local}:{uid}:{gid}:{}:::\n", home.display()));
        }
        text.push_str(".\n");
        fs::write(self.home.join("users/assign"), text).unwrap();
        let out = self.run("qmail-newu", &[], b"");
        assert_ok(&out, "qmail-newu");
    }

    /// The files in a Maildir's new/.
    pub fn maildir_new(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir.join("Maildir/new"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Check the queue tree: every todo entry has its message; every info has its message;
    /// every channel file has its info; nothing in pid/ or intd/ without a message. Returns the
    /// number of messages still queued (mess files).
    pub fn check_queue(&self) -> usize {
        let q = self.queue();
        let ids = |dir: &str| -> Vec<u64> {
            let mut out = Vec::new();
            let d = q.join(dir);
            for e in fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    for f in fs::read_dir(e.path()).unwrap().flatten() {
                        out.push(f.file_name().to_string_lossy().parse().unwrap());
                    }
                } else {
                    out.push(e.file_name().to_string_lossy().parse().unwrap());
                }
            }
            out
        };
        let mess: std::collections::HashSet<u64> = ids("mess").into_iter().collect();
        let info: std::collections::HashSet<u64> = ids("info").into_iter().collect();
        for id in ids("todo") {
            assert!(mess.contains(&id), "todo/{id} without its message");
        }
        for id in &info {
            assert!(mess.contains(id), "info of {id} without its message");
        }
        for chan in ["local", "remote"] {
            for id in ids(chan) {
                assert!(info.contains(&id), "{chan}/{id} without info");
            }
        }
        mess.len()
    }
}

impl Running {
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Wait until some log line satisfies `pred`.
    pub fn wait_log(&self, limit: Duration, mut pred: impl FnMut(&str) -> bool) -> bool {
        wait_until(limit, || self.log.lock().unwrap().iter().any(|l| pred(l)))
    }

    /// Count the log lines satisfying `pred`.
    pub fn count_log(&self, mut pred: impl FnMut(&str) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|l| pred(l)).count()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Send a signal to qmail-send (through `qmailctl` for TERM and INT).
    pub fn signal(&self, sig: nix::sys::signal::Signal, home: &Path) {
        let pid: i32 =
            fs::read_to_string(home.join("run/qmail-send.pid")).unwrap().trim().parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
    }

    /// Stop with TERM and wait; returns the exit status of qmailctl run.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.stop_inner().expect("qmailctl run stopped")
    }

    fn stop_inner(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // the rest of the group (spawners, cleaners) exits on EOF; make sure of it
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Start `cmd` (a `tcpserver ... 127.0.0.1 PORT program...` command line) with stdin and
/// stdout on /dev/null, and wait until it accepts on 127.0.0.1:`port`.
pub fn tcpserver_ready(cmd: &mut Command, port: u16) -> Guard {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    let guard = Guard(cmd.spawn().expect("tcpserver (ucspi-tcp) must be installed"));
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "tcpserver did not start on port {port}"
    );
    guard
}

/// The SMTP load of issue 16's crash tests (tests/fixtures/smtp_load.py): `messages` messages
/// `Subject: load-N`, one per connection, `sessions` at a time, recipients in turn; what the
/// client says is collected as it comes.
pub struct SmtpLoad {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// What an [`SmtpLoad`] ended with.
pub struct LoadResult {
    /// the N of every message acknowledged with 250
    pub acked: std::collections::BTreeSet<usize>,
    /// the messages not acknowledged (a session a kill ended, a refusal), with the error
    pub failed: Vec<String>,
}

impl SmtpLoad {
    pub fn start(port: u16, messages: usize, sessions: usize, rcpts: &[&str]) -> Self {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_load.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([port.to_string(), messages.to_string(), sessions.to_string()])
            .arg(rcpts.join(","))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let out = child.stdout.take().expect("piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        SmtpLoad { child, lines, reader: Some(reader) }
    }

    /// How many messages were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.starts_with("ok "))
            .count()
    }

    /// Whether the client has sent everything.
    pub fn done(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Wait for the client's end (it exits once every message was tried) and read the result.
    pub fn finish(mut self) -> LoadResult {
        let status = self.child.wait().expect("wait for the load client");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()));
        assert!(status.success() && lines.last().map(String::as_str) == Some("done"), "{lines:?}");
        LoadResult {
            acked: lines.iter().filter_map(|l| l.strip_prefix("ok ")?.parse().ok()).collect(),
            failed: lines.into_iter().filter(|l| l.starts_with("fail ")).collect(),
        }
    }
}

impl Drop for SmtpLoad {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The load messages in the Maildirs of `homes`, by N; panics on a file that is not a whole
/// load message (a partial delivery).
pub fn load_delivered(homes: &[&Path]) -> std::collections::BTreeSet<usize> {
    let mut seen = std::collections::BTreeSet::new();
    for home in homes {
        for file in Sandbox::maildir_new(home) {
            let text = fs::read_to_string(&file).unwrap_or_default();
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: load-")?.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("not a load message: {}: {text:?}", file.display()));
            assert!(text.ends_with(&format!("\n\nmessage {n}\n")), "partial: {text:?}");
            seen.insert(n);
        }
    }
    seen
}

/// A stand-in for the queue service that only answers sync requests: bound on `home`'s
/// socket, it greets, reads the request byte, remembers it and answers `code` (0 or a
/// failure), for every connection until dropped.
pub struct FakeSyncService {
    sock: PathBuf,
    asked: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    code: std::sync::Arc<std::sync::atomic::AtomicU8>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// while true, a request is recorded but not answered ([`FakeSyncService::hold`])
    held: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSyncService {
    pub fn start(home: &Path) -> FakeSyncService {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicBool, AtomicU8};
        let sock = home.join(qmail::queue::wire::SOCKET);
        fs::create_dir_all(sock.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let code = std::sync::Arc::new(AtomicU8::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let held = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (a, c, s, h) = (asked.clone(), code.clone(), stop.clone(), held.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = conn.write_all(b"1:7,");
                let mut byte = [0u8];
                if conn.read_exact(&mut byte).is_ok() {
                    a.lock().unwrap().push(byte[0]);
                    let (lock, cv) = &*h;
                    drop(cv.wait_while(lock.lock().unwrap(), |held| *held).unwrap());
                    let _ =
                        conn.write_all(&qmail::queue::wire::answer(c.load(Ordering::SeqCst), b""));
                }
            }
        });
        FakeSyncService { sock, asked, code, stop, held, thread: Some(thread) }
    }

    /// Record the requests from now on but answer none until [`FakeSyncService::release`].
    pub fn hold(&self) {
        *self.held.0.lock().unwrap() = true;
    }

    /// Answer the request held, and those after it.
    pub fn release(&self) {
        *self.held.0.lock().unwrap() = false;
        self.held.1.notify_all();
    }

    /// The request bytes received so far.
    pub fn asked(&self) -> Vec<u8> {
        self.asked.lock().unwrap().clone()
    }

    /// Answer `code` from now on.
    pub fn answer(&self, code: u8) {
        self.code.store(code, Ordering::SeqCst);
    }
}

impl Drop for FakeSyncService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release();
        let _ = std::os::unix::net::UnixStream::connect(&self.sock);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.sock);
    }
}
