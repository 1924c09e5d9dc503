//! The delivery back end: qmail-clean's protocol, the spawners (qmail-lspawn, qmail-rspawn)
//! driven through their pipes as qmail-send drives them, and qmail-getpw.

use crate::harness::*;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, SystemTime};

// ---------------------------------------------------------------------------------------------
// qmail-clean

/// A running qmail-clean.
struct Clean {
    child: Guard,
    input: ChildStdin,
    output: ChildStdout,
}

impl Clean {
    fn start(sb: &Sandbox) -> Self {
        let mut child = sb
            .cmd("qmail-clean")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        Clean { child: Guard(child), input, output }
    }

    /// Send one request (the `\0` is added) and read the one-byte reply.
    fn ask(&mut self, request: &[u8]) -> u8 {
        self.input.write_all(&[request, b"\0"].concat()).unwrap();
        self.input.flush().unwrap();
        let mut reply = [0u8; 1];
        self.output.read_exact(&mut reply).unwrap();
        reply[0]
    }

    /// Close stdin and wait for the exit code; nothing more may be said.
    fn finish(self) -> i32 {
        let Clean { mut child, input, mut output } = self;
        drop(input);
        let mut rest = Vec::new();
        output.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"", "no output after the last reply");
        child.0.wait().unwrap().code().expect("an exit code")
    }
}

fn touch(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"x").unwrap();
}

#[test]
fn clean_removes_queue_files() {
    let sb = Sandbox::new();
    let q = sb.queue();
    for f in ["intd/470", "mess/10/470", "intd/471", "todo/471", "todo/472", "mess/11/471"] {
        touch(&q.join(f));
    }
    let mut clean = Clean::start(&sb);
    assert_eq!(clean.ask(b"foop/470"), b'+');
    assert!(!q.join("intd/470").exists() && !q.join("mess/10/470").exists());
    assert_eq!(clean.ask(b"todo/471"), b'+');
    assert!(!q.join("intd/471").exists() && !q.join("todo/471").exists());
    assert!(q.join("mess/11/471").exists(), "todo/ leaves the message alone");
    // files already gone are fine
    assert_eq!(clean.ask(b"foop/470"), b'+');
    assert_eq!(clean.ask(b"todo/472"), b'+');
    assert!(!q.join("todo/472").exists());
    assert_eq!(clean.finish(), 0);
}

#[test]
fn clean_refuses_bad_requests() {
    let sb = Sandbox::new();
    let q = sb.queue();
    touch(&q.join("todo/5"));
    let mut clean = Clean::start(&sb);
    let long = [b"todo/".as_slice(), &[b'0'; 94], b"5"].concat();
    for bad in [
        &b""[..],
        b"foop/",
        b"todo",
        b"info/5",
        b"todo/5x",
        b"todo/../todo/5",
        b"todo/ 5",
        b"todo/99999999999999999999999",
        &long,
        &[b'9'; 70_000],
    ] {
        assert_eq!(
            clean.ask(bad),
            b'x',
            "{:?}",
            String::from_utf8_lossy(&bad[..bad.len().min(40)])
        );
    }
    assert!(q.join("todo/5").exists());
    // 99 bytes is still a request
    assert_eq!(clean.ask(&long[1..]), b'x', "odo/... is not a prefix");
    let fits = [b"todo/".as_slice(), &[b'0'; 93], b"5"].concat();
    assert_eq!(fits.len(), 99);
    assert_eq!(clean.ask(&fits), b'+');
    assert!(!q.join("todo/5").exists());
    assert_eq!(clean.finish(), 0);
}

#[test]
fn clean_reports_failed_unlinks() {
    let sb = Sandbox::new();
    let q = sb.queue();
    // a non-empty directory cannot be unlinked, not even by root
    touch(&q.join("intd/9/inside"));
    touch(&q.join("mess/9/9"));
    let mut clean = Clean::start(&sb);
    assert_eq!(clean.ask(b"foop/9"), b'!');
    fs::remove_dir_all(q.join("intd/9")).unwrap();
    assert_eq!(clean.ask(b"foop/9"), b'+');
    assert!(!q.join("mess/9/9").exists());
    assert_eq!(clean.finish(), 0);
}

#[test]
fn clean_sweeps_old_pid_files() {
    let sb = Sandbox::new();
    let pid = sb.queue().join("pid");
    touch(&pid.join("old"));
    touch(&pid.join("new"));
    let long_ago = SystemTime::now() - Duration::from_secs(37 * 3600);
    let f = fs::File::options().write(true).open(pid.join("old")).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(long_ago)).unwrap();
    drop(f);
    let clean = Clean::start(&sb);
    assert!(wait_until(Duration::from_secs(10), || !pid.join("old").exists()));
    assert!(pid.join("new").exists());
    assert_eq!(clean.finish(), 0);
}

#[test]
fn clean_without_a_queue_is_temporary() {
    let sb = Sandbox::new();
    fs::rename(sb.queue(), sb.home.join("queue.away")).unwrap();
    let out = sb.run("qmail-clean", &[], b"foop/1\0");
    assert_eq!(code(&out), 111);
    assert_eq!(out.stdout, b"");
}
