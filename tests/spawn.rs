//! The delivery back end: qmail-clean's protocol, the spawners (qmail-lspawn, qmail-rspawn)
//! driven through their pipes as qmail-send drives them, and qmail-getpw.

use crate::harness::*;
use qmail::spawn::{Command, Report, ReportDecoder};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

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
        let (child, input, output) = spawn_piped(&mut sb.cmd("qmail-clean"));
        Clean { child, input, output }
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
    let mess = |id: u64| q.join(qmail::queue::split_name("mess", id));
    for f in ["intd/470", "intd/471", "todo/471", "todo/472"] {
        touch(&q.join(f));
    }
    touch(&mess(470));
    touch(&mess(471));
    let mut clean = Clean::start(&sb);
    assert_eq!(clean.ask(b"foop/470"), b'+');
    assert!(!q.join("intd/470").exists() && !mess(470).exists());
    assert_eq!(clean.ask(b"todo/471"), b'+');
    assert!(!q.join("intd/471").exists() && !q.join("todo/471").exists());
    assert!(mess(471).exists(), "todo/ leaves the message alone");
    // files already gone are fine
    assert_eq!(clean.ask(b"foop/470"), b'+');
    assert_eq!(clean.ask(b"todo/472"), b'+');
    assert!(!q.join("todo/472").exists());
    assert_eq!(clean.finish(), 0);
}

/// A finished message file goes to the pool of recycled files (`pid/free.m<inode>`, zeroed)
/// only when it is private (made by the queue service, mode 0640) and nobody else has it open;
/// one a delivery program still holds, or one of the one-shot qmail-queue (0644), is removed.
#[test]
fn clean_recycles_only_message_files_nobody_holds() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let sb = Sandbox::new();
    let q = sb.queue();
    let message = |id: u64, mode: u32| -> u64 {
        let path = q.join(qmail::queue::split_name("mess", id));
        touch(&path);
        fs::write(&path, b"Subject: private\n\nsecret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        fs::metadata(&path).unwrap().ino()
    };
    let free = message(480, 0o640);
    let held = message(481, 0o640);
    let public = message(482, 0o644);
    let holder = fs::File::open(q.join(qmail::queue::split_name("mess", 481))).unwrap();
    let mut clean = Clean::start(&sb);
    for id in [480, 481, 482] {
        assert_eq!(clean.ask(format!("foop/{id}").as_bytes()), b'+');
        assert!(!q.join(qmail::queue::split_name("mess", id)).exists());
    }
    let pooled = q.join(format!("pid/free.m{free}"));
    // emptied: not a byte of the message is left (its blocks are kept, reading as zeros)
    let left = fs::read(&pooled).expect("pooled");
    assert!(left.iter().all(|&b| b == 0), "pooled and emptied: {left:?}");
    assert!(!q.join(format!("pid/free.m{held}")).exists(), "held open: removed");
    assert!(!q.join(format!("pid/free.m{public}")).exists(), "readable by others: removed");
    // the holder still reads its own message
    let mut kept = String::new();
    std::io::Read::read_to_string(&mut &holder, &mut kept).unwrap();
    assert!(kept.ends_with("secret\n"), "{kept}");
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
    let mess = q.join(qmail::queue::split_name("mess", 9));
    touch(&mess);
    let mut clean = Clean::start(&sb);
    assert_eq!(clean.ask(b"foop/9"), b'!');
    fs::remove_dir_all(q.join("intd/9")).unwrap();
    assert_eq!(clean.ask(b"foop/9"), b'+');
    assert!(!mess.exists());
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
fn clean_sweeps_again_once_the_gap_has_passed() {
    // after the start, `pid/` is swept again when a request comes once the gap (a minute;
    // here none, through the test hook) has passed since the last sweep, the recycled files
    // left alone; within the gap, not at all
    for (gap, swept) in [(None, false), (Some("0"), true)] {
        let sb = Sandbox::new();
        let pid = sb.queue().join("pid");
        let mut cmd = sb.cmd("qmail-clean");
        if let Some(ms) = gap {
            cmd.env("QMAILCLEAN_TEST_SWEEPGAP", ms);
        }
        let (child, input, output) = spawn_piped(&mut cmd);
        let mut clean = Clean { child, input, output };
        // made after the start-up sweep: the reply to the first request proves it has run
        assert_eq!(clean.ask(b"todo/1"), b'+');
        let long_ago = SystemTime::now() - Duration::from_secs(37 * 3600);
        for name in ["debris", "free.77"] {
            touch(&pid.join(name));
            let f = fs::File::options().write(true).open(pid.join(name)).unwrap();
            f.set_times(fs::FileTimes::new().set_accessed(long_ago)).unwrap();
        }
        // the sweep comes after the request, before its reply
        assert_eq!(clean.ask(b"todo/2"), b'+');
        assert_eq!(!pid.join("debris").exists(), swept, "gap {gap:?}");
        assert!(pid.join("free.77").exists(), "a recycled file stays (gap {gap:?})");
        assert_eq!(clean.finish(), 0);
    }
}

#[test]
fn clean_without_a_queue_is_temporary() {
    let sb = Sandbox::new();
    fs::rename(sb.queue(), sb.home.join("queue.away")).unwrap();
    let out = sb.run("qmail-clean", &[], b"foop/1\0");
    assert_eq!(code(&out), 111);
    assert_eq!(out.stdout, b"");
}

// ---------------------------------------------------------------------------------------------
// the spawners

/// How long a test waits for one report.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running spawner, driven as qmail-send drives it.
struct Spawner {
    child: Guard,
    input: Option<ChildStdin>,
    reports: Receiver<Report>,
    handshake: [u8; 2],
}

impl Spawner {
    fn start(sb: &Sandbox, name: &str, args: &[&str]) -> Self {
        Self::start_cmd(sb.cmd(name).args(args))
    }

    fn start_cmd(cmd: &mut std::process::Command) -> Self {
        let (child, input, mut output) = spawn_piped(cmd);
        let input = Some(input);
        let mut handshake = [0u8; 2];
        output.read_exact(&mut handshake).unwrap();
        let (tx, reports) = mpsc::channel();
        std::thread::spawn(move || {
            let mut d = ReportDecoder::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                d.feed(&buf[..n]);
                while let Some(r) = d.next() {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            }
        });
        Spawner { child, input, reports, handshake }
    }

    fn send(&mut self, slot: u16, message: &str, sender: &str, recipient: &str) {
        let cmd = Command {
            slot,
            message: message.into(),
            sender: sender.into(),
            recipient: recipient.into(),
        };
        self.send_raw(&cmd.encode());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let input = self.input.as_mut().unwrap();
        input.write_all(bytes).unwrap();
        input.flush().unwrap();
    }

    fn report(&self) -> Report {
        self.reports.recv_timeout(PATIENCE).expect("a report in time")
    }

    /// One report, for `slot`, with `letter`, its text containing `needle`; the text.
    fn expect(&self, slot: u16, letter: u8, needle: &str) -> String {
        let r = self.report();
        let text = String::from_utf8_lossy(&r.text).into_owned();
        assert_eq!(
            (r.slot, r.letter as char),
            (slot, letter as char),
            "want slot {slot} {} containing {needle:?}, got {text:?}",
            letter as char
        );
        assert!(text.contains(needle), "report for slot {slot}: {text:?} lacks {needle:?}");
        text
    }

    fn no_report(&self, within: Duration) {
        if let Ok(r) = self.reports.recv_timeout(within) {
            panic!("unexpected report {r:?}");
        }
    }

    /// Close stdin; the exit code after all reports were read.
    fn finish(mut self) -> (i32, Vec<Report>) {
        self.input = None;
        let mut rest = Vec::new();
        while let Ok(r) = self.reports.recv_timeout(PATIENCE) {
            rest.push(r);
        }
        let status = self.child.0.wait().unwrap();
        (status.code().expect("an exit code"), rest)
    }
}

/// Queue a message with qmail-queue; its path relative to queue/mess.
fn inject(sb: &Sandbox, recipient: &str) -> String {
    let before: Vec<u64> = sb.todo().iter().map(|q| q.id).collect();
    let env = sb.tmp.path().join("envelope");
    fs::write(&env, format!("Fsender@example.net\0T{recipient}\0\0")).unwrap();
    let mut child = sb
        .cmd("qmail-queue")
        .stdin(Stdio::piped())
        .stdout(fs::File::open(&env).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Subject: spawn\n\nhello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out, "qmail-queue");
    let id = sb.todo().iter().map(|q| q.id).find(|id| !before.contains(id)).expect("new message");
    format!("{}/{id}", qmail::queue::split(id))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid/gid deliveries run as in the tests: nobody's when root, our own otherwise.
fn delivery_ids() -> (u32, u32) {
    if is_root() {
        (65534, 65534)
    } else {
        (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    }
}

/// A stand-in for qmail-local: prints its arguments and uid, reads the message, and exits as
/// its ext asks (`exit-N`, `crash`, `big`, `nul`, `sleep`).
const STAND_IN: &str = r#"#!/bin/sh
msg=$(cat)
echo "args: $*"
echo "uid: $(id -u)"
echo "msg: $msg" | head -1
case "$6" in
exit-*) exit "${6#exit-}" ;;
crash) kill -9 $$ ;;
big) head -c 10000 /dev/zero | tr '\0' y; exit 0 ;;
nul) printf 'before\0after'; exit 0 ;;
sleep) sleep 0.5; exit 0 ;;
esac
exit 0
"#;

/// A sandbox with the stand-in qmail-local, a home for the test user owned by it, and
/// users/assign: `t-*` → the test user, `root0` → uid 0.
fn local_sandbox() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let bin = sb.home.join("bin/qmail-local");
    fs::remove_file(&bin).unwrap();
    fs::write(&bin, STAND_IN).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = delivery_ids();
    let home = sb.tmp.path().join("t-home");
    fs::create_dir(&home).unwrap();
    nix::unistd::chown(&home, Some(uid.into()), Some(gid.into())).unwrap();
    let assign = format!("+t-:tuser:{uid}:{gid}:{}:-::\n=root0:r:0:0:/:::\n.\n", home.display());
    fs::write(sb.home.join("users/assign"), assign).unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    (sb, home)
}

#[test]
fn lspawn_handshake_and_end_of_input() {
    let (sb, _) = local_sandbox();
    let lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    assert_eq!(lspawn.handshake, [0xF4, 0x01]);
    assert_eq!(lspawn.finish(), (0, vec![]));
    let out = sb.run("qmail-lspawn", &[], b"");
    assert_eq!(code(&out), 100, "no aliasempty argument");
}

#[test]
fn lspawn_maps_every_exit_code() {
    let (sb, home) = local_sandbox();
    let mess = inject(&sb, "t-x@example.org");
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    let (uid, _) = delivery_ids();
    // success: the arguments of doc/qmail-lspawn.8, the message on stdin, the user's uid
    lspawn.send(7, &mess, "sender@example.net", "T-Exit-0@Example.org");
    let text = lspawn.expect(7, b'K', "args: -- tuser ");
    let want = format!(
        "args: -- tuser {} T-Exit-0 - Exit-0 Example.org sender@example.net ./Maildir/\nuid: {uid}\n",
        home.display()
    );
    assert!(text.starts_with(&want), "{text:?}\nwant {want:?}");
    assert!(text.contains("msg: Received: (qmail "), "{text}");
    let rows: &[(&str, u8, &str)] = &[
        ("exit-111", b'Z', "args: "),
        ("exit-71", b'Z', "args: "),
        ("exit-74", b'Z', "args: "),
        ("exit-75", b'Z', "args: "),
        ("exit-100", b'D', "args: "),
        ("exit-1", b'D', "args: "),
        ("exit-99", b'D', "args: "),
        ("exit-112", b'Z', "bug"),
        ("exit-113", b'Z', "root"),
        ("exit-115", b'Z', "NFS"),
        ("exit-116", b'Z', "alias"),
        ("exit-117", b'Z', "users/cdb"),
        ("exit-118", b'Z', "system"),
        ("exit-119", b'Z', "memory"),
        ("exit-120", b'Z', "qmail-local"),
        ("exit-121", b'Z', "qmail-getpw"),
        ("exit-126", b'D', "qmail-local"),
        ("exit-152", b'Z', "#4.4.3"),
        ("exit-160", b'D', "#5.1.1"),
        ("crash", b'Z', "crashed"),
    ];
    for (i, &(ext, letter, needle)) in rows.iter().enumerate() {
        let slot = i as u16 + 100;
        lspawn.send(slot, &mess, "s@x", &format!("t-{ext}@example.org"));
        lspawn.expect(slot, letter, needle);
    }
    // output is cut at 3000 bytes with a note, and at its first NUL
    lspawn.send(1, &mess, "s@x", "t-big@example.org");
    let text = lspawn.expect(1, b'K', "report too long");
    assert!(text.len() < 3200, "{}", text.len());
    lspawn.send(1, &mess, "s@x", "t-nul@example.org");
    assert!(lspawn.expect(1, b'K', "before").ends_with("before"));
    // an empty local part is delivered nowhere
    lspawn.send(2, &mess, "s@x", "@example.org");
    assert_eq!(lspawn.expect(2, b'K', ""), "");
    // uid 0 is refused, whoever we are
    lspawn.send(3, &mess, "s@x", "root0@example.org");
    lspawn.expect(3, b'Z', "root");
    assert_eq!(lspawn.finish(), (0, vec![]));
}

#[test]
fn lspawn_refuses_bad_commands() {
    let (sb, _) = local_sandbox();
    let mess = inject(&sb, "t-x@example.org");
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    lspawn.send(500, &mess, "s@x", "t-x@example.org");
    lspawn.expect(500, b'Z', "(#4.3.5)");
    lspawn.send(65000, &mess, "s@x", "t-x@example.org");
    lspawn.expect(65000, b'Z', "(#4.3.5)");
    for bad in ["", "/1/2", "1x/2", "1/../2", "1/2 "] {
        lspawn.send(4, bad, "s@x", "t-x@example.org");
        lspawn.expect(4, b'D', "(#5.3.5)");
    }
    lspawn.send(4, &mess, "s@x", "t-x.example.org");
    lspawn.expect(4, b'D', "(#5.1.3)");
    lspawn.send(4, "1/1", "s@x", "t-x@example.org");
    lspawn.expect(4, b'Z', "(#4.3.0)");
    // 100 bytes is a path still (a longer one mangles the stream: see below)
    lspawn.send(4, &"1".repeat(100), "s@x", "t-x@example.org");
    lspawn.expect(4, b'Z', "(#4.3.0)");
    // a directory is not a message; a file of another owner neither
    lspawn.send(4, "0", "s@x", "t-x@example.org");
    lspawn.expect(4, b'Z', "(#4.3.5)");
    if is_root() {
        let stranger = sb.queue().join("mess/0/24");
        fs::write(&stranger, b"x").unwrap();
        // the sandbox belongs to nobody (65534); daemon (1) is a stranger
        nix::unistd::chown(&stranger, Some(1.into()), None).unwrap();
        lspawn.send(4, "0/24", "s@x", "t-x@example.org");
        lspawn.expect(4, b'Z', "owner");
    }
    // a busy slot is refused at once, its delivery still reports once
    lspawn.send(5, &mess, "s@x", "t-sleep@example.org");
    lspawn.send(5, &mess, "s@x", "t-x@example.org");
    lspawn.expect(5, b'Z', "in use");
    lspawn.expect(5, b'K', "t-sleep");
    // the reload command is not answered
    lspawn.send_raw(&Command::reload().encode());
    lspawn.send(6, &mess, "s@x", "nohost");
    lspawn.expect(6, b'D', "(#5.1.3)");
    // neither is SIGHUP, which must not kill it
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lspawn.child.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    lspawn.no_report(Duration::from_millis(200));
    lspawn.send(6, &mess, "s@x", "t-x@example.org");
    lspawn.expect(6, b'K', "t-x");
    assert_eq!(lspawn.finish(), (0, vec![]));
}

#[test]
fn lspawn_runs_deliveries_in_parallel() {
    let (sb, _) = local_sandbox();
    let mess = inject(&sb, "t-x@example.org");
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    let start = Instant::now();
    let mut batch = Vec::new();
    for slot in 0..20u16 {
        let slot = slot * 20;
        lspawn.send(slot, &mess, "s@x", "t-sleep@example.org");
        batch.push(slot);
    }
    let mut got: Vec<u16> = (0..20)
        .map(|_| lspawn.report())
        .map(|r| {
            assert_eq!(r.letter, b'K', "{r:?}");
            r.slot
        })
        .collect();
    got.sort();
    assert_eq!(got, batch, "one report per command");
    assert!(start.elapsed() < Duration::from_secs(8), "20 × 0.5 s ran in parallel");
    // end of input while deliveries run: their reports come first, then exit 0
    lspawn.send(3, &mess, "s@x", "t-sleep@example.org");
    lspawn.send(4, &mess, "s@x", "t-sleep@example.org");
    let (code, rest) = lspawn.finish();
    assert_eq!(code, 0);
    let mut slots: Vec<u16> = rest.iter().map(|r| r.slot).collect();
    slots.sort();
    assert_eq!(slots, vec![3, 4]);
}

#[test]
fn lspawn_delivers_as_the_assigned_user() {
    if !is_root() {
        // switching users needs root; the non-root runs check that deliveries run as us
        return;
    }
    let (sb, _) = local_sandbox();
    let mess = inject(&sb, "t-x@example.org");
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    lspawn.send(0, &mess, "s@x", "t-who@example.org");
    lspawn.expect(0, b'K', "uid: 65534\n");
    assert_eq!(lspawn.finish(), (0, vec![]));
}

#[test]
fn lspawn_falls_back_to_the_alias_user() {
    let (sb, _) = local_sandbox();
    let mess = inject(&sb, "x@example.org");
    // the sandbox's alias directory belongs to its owner (us, or nobody when we are root,
    // never root): the delivery runs with the alias home and ext = the local part
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    lspawn.send(0, &mess, "s@x", "nosuchuser-x@example.org");
    let want = format!(" {}/alias nosuchuser-x - nosuchuser-x ", sb.home.display());
    lspawn.expect(0, b'K', &want);
    assert_eq!(lspawn.finish(), (0, vec![]));
}

// ---------------------------------------------------------------------------------------------
// qmail-lspawn's delivery workers, with the real qmail-local

/// The second delivery uid/gid of the worker tests (root only).
const OTHER_ID: u32 = 65533;

/// A sandbox with the real qmail-local and users `a-*` (the delivery uid) and, when root,
/// `b-*` (uid/gid [`OTHER_ID`]), each with a home, a Maildir and a `.qmail-default`; and
/// `c-*` (the delivery uid) whose home is missing. The homes of a and b.
fn worker_sandbox() -> (Sandbox, PathBuf, PathBuf) {
    let sb = Sandbox::new();
    let (uid, gid) = delivery_ids();
    let (other_uid, other_gid) = if is_root() { (OTHER_ID, OTHER_ID) } else { (uid, gid) };
    let make = |name: &str, uid: u32, gid: u32| {
        let home = sb.tmp.path().join(name);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(home.join("Maildir").join(sub)).unwrap();
        }
        fs::write(home.join(".qmail-default"), "./Maildir/\n").unwrap();
        fs::write(home.join(".qmail-prog"), "|tr '\\0' ' ' < /proc/$PPID/cmdline > parent\n")
            .unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(&home)
            .output()
            .unwrap();
        assert_ok(&out, "chown");
        home
    };
    let a = make("a-home", uid, gid);
    let b = make("b-home", other_uid, other_gid);
    let c = sb.tmp.path().join("c-home");
    let assign = format!(
        "+a-:auser:{uid}:{gid}:{}:-::\n+b-:buser:{other_uid}:{other_gid}:{}:-::\n+c-:cuser:{uid}:{gid}:{}:-::\n.\n",
        a.display(),
        b.display(),
        c.display()
    );
    fs::write(sb.home.join("users/assign"), assign).unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    (sb, a, b)
}

/// The delivery workers of `lspawn`: (pid, uid) each.
fn workers_of(lspawn: &Spawner) -> Vec<(i32, u32)> {
    let mut out: Vec<(i32, u32)> =
        descendants_of(lspawn.child.0.id(), &["qmail-local", "--worker"])
            .into_iter()
            .filter_map(|pid| {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                // a zombie has been killed but not yet reaped: not a worker any more
                if status.lines().any(|l| l.starts_with("State:") && l.contains('Z')) {
                    return None;
                }
                let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
                // real, effective, saved, file system: all the same, never 0
                let ids: Vec<u32> = uid.split_whitespace().map(|n| n.parse().unwrap()).collect();
                assert!(ids.iter().all(|&i| i == ids[0] && i != 0), "worker {pid} ids {ids:?}");
                Some((pid, ids[0]))
            })
            .collect();
    out.sort();
    out
}

#[test]
fn lspawn_keeps_one_worker_per_uid() {
    let (sb, a, b) = worker_sandbox();
    let mess = inject(&sb, "a-x@example.org");
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    let (uid, _) = delivery_ids();
    for slot in 0..3 {
        lspawn.send(slot, &mess, "s@x", &format!("a-{slot}@example.org"));
        lspawn.expect(slot, b'K', "did 1+0+0");
    }
    let first = workers_of(&lspawn);
    assert_eq!(first.iter().map(|w| w.1).collect::<Vec<_>>(), vec![uid], "{first:?}");
    lspawn.send(3, &mess, "s@x", "b-x@example.org");
    lspawn.expect(3, b'K', "did 1+0+0");
    let both = workers_of(&lspawn);
    if is_root() {
        assert_eq!(both.len(), 2, "one worker per uid: {both:?}");
        assert!(both.contains(&first[0]), "the first worker still serves its uid: {both:?}");
        assert!(both.iter().any(|w| w.1 == OTHER_ID), "{both:?}");
    } else {
        assert_eq!(both, first, "one uid, one worker");
    }
    // many deliveries in parallel, to both: still the same workers
    for slot in 10..40u16 {
        let who = if slot % 2 == 0 { "a" } else { "b" };
        lspawn.send(slot, &mess, "s@x", &format!("{who}-{slot}@example.org"));
    }
    for _ in 10..40 {
        let r = lspawn.report();
        assert_eq!(r.letter, b'K', "{r:?}");
    }
    assert_eq!(workers_of(&lspawn), both);
    assert_eq!(Sandbox::maildir_new(&a).len(), 18);
    assert_eq!(Sandbox::maildir_new(&b).len(), 16);
    assert_eq!(lspawn.finish(), (0, vec![]));
    // without qmail-lspawn its workers end
    assert!(wait_until(PATIENCE, || both
        .iter()
        .all(|w| !Path::new(&format!("/proc/{}", w.0)).exists()
            || fs::read_to_string(format!("/proc/{}/status", w.0))
                .is_ok_and(|s| s.contains("State:\tZ")))));
}

#[test]
fn lspawn_runs_programs_in_a_process_of_their_own() {
    let (sb, a, _) = worker_sandbox();
    let mess = inject(&sb, "a-prog@example.org");
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    lspawn.send(0, &mess, "s@x", "a-prog@example.org");
    lspawn.expect(0, b'K', "did 0+0+1");
    let parent = fs::read_to_string(a.join("parent")).unwrap();
    assert!(parent.contains("qmail-local -- auser "), "{parent}");
    assert!(!parent.contains("--worker"), "{parent}");
    // the worker was asked first, declined, and stays for the next Maildir delivery
    let workers = workers_of(&lspawn);
    assert_eq!(workers.len(), 1, "{workers:?}");
    lspawn.send(0, &mess, "s@x", "a-box@example.org");
    lspawn.expect(0, b'K', "did 1+0+0");
    assert_eq!(workers_of(&lspawn), workers);
    assert_eq!(lspawn.finish(), (0, vec![]));
}

#[test]
fn lspawn_retires_idle_and_used_up_workers() {
    require_test_hooks();
    let (sb, a, _) = worker_sandbox();
    let mess = inject(&sb, "a-x@example.org");
    // three deliveries each
    let mut cmd = sb.cmd("qmail-lspawn");
    cmd.arg("./Maildir/").env("QMAILLSPAWN_TEST_USES", "3");
    let mut lspawn = Spawner::start_cmd(&mut cmd);
    let mut generations = Vec::new();
    for _ in 0..3 {
        let mut pids = Vec::new();
        for slot in 0..3 {
            lspawn.send(slot, &mess, "s@x", "a-x@example.org");
            lspawn.expect(slot, b'K', "did 1+0+0");
            // after its third delivery it may already be gone
            pids.extend(workers_of(&lspawn).into_iter().map(|w| w.0));
        }
        // the third delivery was its last: it goes by itself
        assert!(
            wait_until(PATIENCE, || workers_of(&lspawn).is_empty()),
            "{:?}",
            workers_of(&lspawn)
        );
        pids.dedup();
        assert_eq!(pids.len(), 1, "one worker for three deliveries: {pids:?}");
        generations.push(pids[0]);
    }
    generations.dedup();
    assert_eq!(generations.len(), 3, "{generations:?}");
    assert_eq!(lspawn.finish(), (0, vec![]));
    // idle for 300 ms: it is told to go, and goes; the next delivery starts another (the
    // pid in a Maildir file's name is the delivering process's)
    let mut cmd = sb.cmd("qmail-lspawn");
    cmd.arg("./Maildir/").env("QMAILLSPAWN_TEST_IDLE", "300");
    let mut lspawn = Spawner::start_cmd(&mut cmd);
    let delivered_by = |slot: u16, lspawn: &mut Spawner| {
        let before = Sandbox::maildir_new(&a);
        lspawn.send(slot, &mess, "s@x", "a-x@example.org");
        lspawn.expect(slot, b'K', "did 1+0+0");
        let new: Vec<PathBuf> =
            Sandbox::maildir_new(&a).into_iter().filter(|f| !before.contains(f)).collect();
        let name = new[0].file_name().unwrap().to_string_lossy().into_owned();
        let pid = name.split_once('P').unwrap().1.split_once('Q').unwrap().0.to_string();
        pid.parse::<i32>().unwrap()
    };
    let first = delivered_by(0, &mut lspawn);
    assert!(wait_until(PATIENCE, || workers_of(&lspawn).is_empty()));
    let gone = wait_until(PATIENCE, || !Path::new(&format!("/proc/{first}")).exists());
    assert!(gone, "worker {first} exited and was reaped");
    let next = delivered_by(1, &mut lspawn);
    assert_ne!(first, next);
    assert_eq!(Sandbox::maildir_new(&a).len(), 11);
    assert_eq!(lspawn.finish(), (0, vec![]));
}

#[test]
fn lspawn_reports_a_killed_worker_as_temporary() {
    let (sb, a, _) = worker_sandbox();
    let mess = inject(&sb, "a-x@example.org");
    // a delivery to c, whose home is missing, hangs in control/dirmaker: kill its worker there
    let dirmaker = sb.tmp.path().join("dirmaker");
    fs::write(&dirmaker, "#!/bin/sh\nexec sleep 60\n").unwrap();
    fs::set_permissions(&dirmaker, fs::Permissions::from_mode(0o755)).unwrap();
    sb.control("dirmaker", &format!("{}\n", dirmaker.display()));
    let mut lspawn = Spawner::start(&sb, "qmail-lspawn", &["./Maildir/"]);
    lspawn.send(0, &mess, "s@x", "a-x@example.org");
    lspawn.expect(0, b'K', "did 1+0+0");
    let worker = workers_of(&lspawn)[0].0;
    lspawn.send(1, &mess, "s@x", "c-x@example.org");
    let sleeping = || descendants_of(worker as u32, &["sleep", "60"]);
    assert!(wait_until(PATIENCE, || !sleeping().is_empty()), "the dirmaker runs");
    let sleepers = sleeping();
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    kill(worker);
    lspawn.expect(1, b'Z', "Delivery worker crashed. (#4.3.0)");
    sleepers.into_iter().for_each(kill);
    // the next delivery has a new worker
    lspawn.send(2, &mess, "s@x", "a-y@example.org");
    lspawn.expect(2, b'K', "did 1+0+0");
    let now = workers_of(&lspawn);
    assert!(now.len() == 1 && now[0].0 != worker, "{now:?}");
    assert_eq!(Sandbox::maildir_new(&a).len(), 2);
    assert_eq!(lspawn.finish(), (0, vec![]));
}

#[test]
fn rspawn_runs_qmail_remote_and_checks_commands() {
    let sb = Sandbox::new();
    let tcpto = sb.queue().join("lock/tcpto");
    fs::write(&tcpto, [7u8; 1024]).unwrap();
    // no DNS: a route to a loopback port where nothing listens (tests/remote.rs has the rest)
    sb.control("smtproutes", "example.net:[127.0.0.1]\n");
    sb.control("remoteport", &format!("{}\n", crate::harness::free_port()));
    let mess = inject(&sb, "r@example.net");
    let mut rspawn = Spawner::start(&sb, "qmail-rspawn", &[]);
    assert_eq!(rspawn.handshake, [0xF4, 0x01]);
    assert_eq!(fs::read(&tcpto).unwrap(), vec![0u8; 1024], "lock/tcpto zeroed");
    rspawn.send(0, &mess, "s@x", "r@example.net");
    rspawn.expect(0, b'Z', "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)");
    rspawn.send(500, &mess, "s@x", "r@example.net");
    rspawn.expect(500, b'Z', "(#4.3.5)");
    rspawn.send(1, "x", "s@x", "r@example.net");
    rspawn.expect(1, b'D', "(#5.3.5)");
    rspawn.send(1, &mess, "s@x", "r.example.net");
    rspawn.expect(1, b'D', "(#5.1.3)");
    rspawn.send(1, "2/2", "s@x", "r@example.net");
    rspawn.expect(1, b'Z', "(#4.3.0)");
    rspawn.send_raw(&Command::reload().encode());
    rspawn.no_report(Duration::from_millis(200));
    assert_eq!(rspawn.finish(), (0, vec![]));
}

#[test]
fn spawner_exits_on_a_mangled_command() {
    let sb = Sandbox::new();
    let mut rspawn = Spawner::start(&sb, "qmail-rspawn", &[]);
    rspawn.send_raw(&[1, 0]);
    rspawn.send_raw(&[b'1'; 200]);
    let (code, rest) = rspawn.finish();
    assert_eq!((code, rest), (111, vec![]));
}

// ---------------------------------------------------------------------------------------------
// qmail-getpw

fn getpw(sb: &Sandbox, local: &str) -> (i32, Vec<String>) {
    let out = sb.run("qmail-getpw", &[local], b"");
    let fields = if out.stdout.is_empty() {
        vec![]
    } else {
        let body = out.stdout.strip_suffix(b"\0\0").expect("NUL-terminated fields, empty record");
        body.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect()
    };
    (code(&out), fields)
}

fn fields(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

#[test]
fn getpw_reads_users_cdb() {
    let sb = Sandbox::new();
    fs::write(
        sb.home.join("users/assign"),
        "=joe:joe:1000:100:/home/joe:::\n+list-:list:2000:200:/home/list:-:l-:\n.\n",
    )
    .unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    assert_eq!(getpw(&sb, "Joe"), (0, fields(&["joe", "1000", "100", "/home/joe", "", ""])));
    assert_eq!(
        getpw(&sb, "list-Owner"),
        (0, fields(&["list", "2000", "200", "/home/list", "-", "l-Owner"]))
    );
    // a corrupt database is a temporary failure
    fs::write(sb.home.join("users/cdb"), b"garbage").unwrap();
    assert_eq!(getpw(&sb, "joe"), (111, vec![]));
}

#[test]
fn getpw_falls_back_to_the_alias_user() {
    let sb = Sandbox::new();
    if nix::unistd::User::from_name("alias").unwrap().is_some() {
        // a system with a real alias user answers with it; the sandbox cannot test the rest
        return;
    }
    let alias = sb.home.join("alias");
    let meta = fs::metadata(&alias).unwrap();
    let owner = nix::unistd::User::from_uid(meta.uid().into())
        .unwrap()
        .map_or("alias".to_string(), |u| u.name);
    let (uid, gid) = (meta.uid().to_string(), meta.gid().to_string());
    let want = |ext: &str| fields(&[&owner, &uid, &gid, &alias.to_string_lossy(), "-", ext]);
    assert_eq!(getpw(&sb, "no-such-user"), (0, want("no-such-user")));
    assert_eq!(getpw(&sb, "Mixed-Case"), (0, want("Mixed-Case")));
    fs::rename(&alias, sb.home.join("alias.away")).unwrap();
    assert_eq!(getpw(&sb, "no-such-user"), (116, vec![]));
    let out = sb.run("qmail-getpw", &[], b"");
    assert_eq!((code(&out), out.stdout), (100, vec![]), "no argument");
}

/// A system account getpw accepts: uid ≠ 0, a lowercase name without `-` shorter than 32
/// bytes, a home it owns.
fn system_account() -> Option<(String, u32, u32, String)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, home, ..] = f[..] else { return None };
        let (uid, gid): (u32, u32) = (uid.parse().ok()?, gid.parse().ok()?);
        let ok = uid != 0
            && name.len() < 32
            && !name.contains('-')
            && name == name.to_ascii_lowercase()
            && fs::metadata(home).is_ok_and(|m| m.uid() == uid);
        // the lookup runs through NSS: the account must be visible there too
        let visible = nix::unistd::User::from_name(name).ok().flatten().is_some();
        (ok && visible).then(|| (name.to_string(), uid, gid, home.to_string()))
    })
}

#[test]
fn getpw_reads_passwd() {
    let sb = Sandbox::new();
    // needs an account in /etc/passwd that owns its home (most systems have one, e.g. a
    // service account); skipped where there is none
    let Some((name, uid, gid, home)) = system_account() else { return };
    let (uid, gid) = (uid.to_string(), gid.to_string());
    assert_eq!(getpw(&sb, &name), (0, fields(&[&name, &uid, &gid, &home, "", ""])));
    let upper = name.to_ascii_uppercase();
    assert_eq!(getpw(&sb, &upper), (0, fields(&[&name, &uid, &gid, &home, "", ""])));
    assert_eq!(
        getpw(&sb, &format!("{name}-Ext-More")),
        (0, fields(&[&name, &uid, &gid, &home, "-", "Ext-More"]))
    );
    // root's account is never one
    let (code, f) = getpw(&sb, "root");
    assert_eq!(code, 0);
    assert_eq!(f[5], "root", "root goes to the alias user: {f:?}");
}

#[test]
fn getpw_serves_lookups_on_one_process() {
    let sb = Sandbox::new();
    let home = sb.tmp.path().join("joe");
    fs::create_dir_all(&home).unwrap();
    let uid = nix::unistd::getuid().as_raw().max(100);
    let text = format!("=joe:joe:{uid}:{uid}:{}:::\n.\n", home.display());
    fs::write(sb.home.join("users/assign"), text).unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    // two requests, one answer each, in order
    let out = sb.run("qmail-getpw", &["-s"], b"joe\0example.org\x004096\0nosuch\0\0\0");
    assert_eq!(code(&out), 0, "EOF ends the service: {out:?}");
    let mut rest = &out.stdout[..];
    let mut answers = Vec::new();
    while !rest.is_empty() {
        match qmail::netstring::decode(rest, 1 << 20) {
            Ok(qmail::netstring::Decoded::Done(payload, tail)) => {
                answers.push(payload.to_vec());
                rest = tail;
            }
            other => panic!("not a netstring: {other:?} in {:?}", String::from_utf8_lossy(rest)),
        }
    }
    assert_eq!(answers.len(), 2);
    let expected = format!("000joe\0{uid}\0{uid}\0{}\0\0\0\0", home.display());
    assert_eq!(String::from_utf8_lossy(&answers[0]), expected);
    assert!(answers[1].starts_with(b"000"), "the alias user answers for an unknown local part");
    // malformed requests end the service with 111; nothing half-answered
    for bad in [&b"joe"[..], b"joe\0example.org", &[b'x'; 5000]] {
        let out = sb.run("qmail-getpw", &["-s"], bad);
        assert_eq!(code(&out), 111, "{:?}", String::from_utf8_lossy(&bad[..bad.len().min(20)]));
        assert!(out.stdout.is_empty());
    }
}
