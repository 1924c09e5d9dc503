//! The test harness: sandboxes (a fresh installation root per test, made by the real
//! `qmailctl init`), a runner for the built programs, queue inspection, and Drop guards for
//! child processes. Failures print expected and actual in full.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        let tmp = TempDir::new("home");
        let home = tmp.path().join("home");
        let out = Command::new(bin("qmailctl"))
            .args(["init", "--home"])
            .arg(&home)
            .args(["--domain", "example.org"])
            .env_remove("QMAILHOME")
            .output()
            .unwrap();
        assert_ok(&out, "qmailctl init");
        // a fixed `me` so that tests do not depend on the machine's name
        fs::write(home.join("control/me"), "mx.example.org\n").unwrap();
        fs::write(home.join("control/locals"), "mx.example.org\nexample.org\n").unwrap();
        Sandbox { tmp, home }
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
        let mess = fs::read(queue.join(format!("mess/{}/{id}", id % 23))).unwrap();
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

/// Run a prepared command, feeding `stdin` from a thread so large inputs cannot deadlock.
pub fn run_with(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("unable to run {cmd:?}: {e}"));
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
