//! The queue: qmail-queue's exit-code table, the queue files it leaves, and crash safety
//! (SIGKILL at each step of the injection sequence); what qmail-qread (mailq, sendmail -bp,
//! qmailctl queue) and qmail-qstat (qmailctl stat) show of it.

use crate::harness::*;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running qmail-queue with its message and envelope pipes.
struct Qq {
    child: Guard,
    message: Option<std::process::ChildStdin>,
    envelope: Option<fs::File>,
}

fn spawn(mut cmd: Command) -> Qq {
    let (env_r, env_w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child: Child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::from(env_r))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(cmd);
    let message = child.stdin.take();
    Qq { child: Guard(child), message, envelope: Some(fs::File::from(env_w)) }
}

impl Qq {
    /// Feed both inputs from threads (either may block) and wait for the exit code.
    fn finish(mut self, message: &[u8], envelope: &[u8]) -> i32 {
        let (mut m, mut e) = (self.message.take().unwrap(), self.envelope.take().unwrap());
        let (md, ed) = (message.to_vec(), envelope.to_vec());
        let t1 = std::thread::spawn(move || {
            let _ = m.write_all(&md);
        });
        let t2 = std::thread::spawn(move || {
            let _ = e.write_all(&ed);
        });
        let status = self.child.0.wait().unwrap();
        t1.join().unwrap();
        t2.join().unwrap();
        status.code().unwrap_or_else(|| panic!("qmail-queue died: {status}"))
    }
}

fn qq(sb: &Sandbox, message: &[u8], envelope: &[u8]) -> i32 {
    spawn(sb.cmd("qmail-queue")).finish(message, envelope)
}

const MSG: &[u8] = b"Subject: test\n\nhello\n";
const ENV: &[u8] = b"Fa@example.org\0Tb@example.org\0Tc@example.net\0\0";

#[test]
fn queues_a_message() {
    let sb = Sandbox::new();
    assert_eq!(qq(&sb, MSG, ENV), 0);
    let todo = sb.todo();
    assert_eq!(todo.len(), 1, "{todo:?}");
    let m = &todo[0];
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(m.records[0], format!("u{uid}"));
    assert!(m.records[1].starts_with('p'));
    assert_eq!(m.sender(), "a@example.org");
    assert_eq!(m.recipients(), vec!["b@example.org", "c@example.net"]);
    let text = m.text();
    let (received, body) = text.split_once('\n').unwrap();
    assert!(received.starts_with("Received: (qmail "), "{received}");
    assert!(received.contains(&format!(" invoked by uid {uid}); ")), "{received}");
    assert!(received.ends_with(" -0000"), "{received}");
    assert_eq!(body.as_bytes(), MSG);
    // the message file's inode is its id, in split directory id mod SPLIT, same inode as todo
    use std::os::unix::fs::MetadataExt;
    let mess = sb.queue().join(qmail::queue::split_name("mess", m.id));
    assert_eq!(fs::metadata(&mess).unwrap().ino(), m.id);
    let intd = fs::metadata(sb.queue().join(format!("intd/{}", m.id))).unwrap();
    assert_eq!(intd.ino(), fs::metadata(sb.queue().join(format!("todo/{}", m.id))).unwrap().ino());
    assert!(sb.files("pid").is_empty());
}

#[test]
fn zero_recipients_and_binary_body() {
    let sb = Sandbox::new();
    let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    assert_eq!(qq(&sb, &body, b"F\0\0"), 0);
    let m = &sb.todo()[0];
    assert_eq!(m.sender(), "");
    assert!(m.recipients().is_empty());
    assert!(m.mess.ends_with(&body));
}

/// Envelopes and the exit code each one gets (also from the queue service, tests/queuesvc.rs).
pub fn envelope_rows() -> Vec<(Vec<u8>, i32, &'static str)> {
    let long = |tag: &str, n: usize| [tag.as_bytes(), &vec![b'x'; n], b"\0"].concat();
    vec![
        (b"".to_vec(), 54, "empty envelope"),
        (b"Fa@b".to_vec(), 54, "EOF in sender"),
        (b"Fa@b\0Tc@d\0".to_vec(), 54, "no final NUL"),
        (b"Xa@b\0\0".to_vec(), 91, "bad first byte"),
        (b"Fa@b\0Xc@d\0\0".to_vec(), 91, "bad recipient tag"),
        (long("F", 1003), 11, "sender too long"),
        ([b"Fa\0".as_slice(), &long("T", 1003), b"\0"].concat(), 11, "recipient too long"),
        ([b"Fa\0".as_slice(), &long("T", 1002), b"\0"].concat(), 0, "recipient at the limit"),
    ]
}

#[test]
fn envelope_errors() {
    let sb = Sandbox::new();
    let rows = envelope_rows();
    let mut committed = 0;
    for (env, want, what) in rows {
        assert_eq!(qq(&sb, MSG, &env), want, "{what}");
        if want == 0 {
            committed += 1;
        }
        // a failure leaves nothing behind: no todo entry, no debris
        assert_eq!(sb.todo().len(), committed, "{what}");
        assert_eq!(sb.files("mess").len(), committed, "{what}: mess");
        assert_eq!(sb.files("intd").len(), committed, "{what}: intd");
        assert!(sb.files("pid").is_empty(), "{what}: pid");
    }
}

#[test]
fn home_and_queue_problems() {
    let sb = Sandbox::new();
    // 61: no home
    let mut cmd = sb.cmd("qmail-queue");
    cmd.env("QMAILHOME", sb.tmp.path().join("nonexistent"));
    assert_eq!(spawn(cmd).finish(MSG, ENV), 61);
    // 62: no queue directory
    let bare = sb.tmp.path().join("bare");
    fs::create_dir(&bare).unwrap();
    let mut cmd = sb.cmd("qmail-queue");
    cmd.env("QMAILHOME", &bare);
    assert_eq!(spawn(cmd).finish(MSG, ENV), 62);
    // 63, 64, 65, 66: each directory of the sequence missing in turn
    for (dir, want) in [("pid", 63), ("mess", 64), ("intd", 65), ("todo", 66)] {
        let q = sb.queue();
        let saved = q.join(format!("{dir}.saved"));
        fs::rename(q.join(dir), &saved).unwrap();
        if dir == "mess" {
            fs::create_dir(q.join("mess")).unwrap(); // the split subdirectories are missing
        }
        assert_eq!(qq(&sb, MSG, ENV), want, "without {dir}/");
        if dir == "mess" {
            fs::remove_dir(q.join("mess")).unwrap();
        }
        fs::rename(&saved, q.join(dir)).unwrap();
        assert!(sb.todo().is_empty());
        assert!(sb.files("mess").is_empty(), "no debris after {want}");
        assert!(sb.files("pid").is_empty(), "no pid file after {want}");
        assert!(sb.files("intd").is_empty(), "no intd after {want}");
    }
    assert_eq!(qq(&sb, MSG, ENV), 0, "works again");
}

#[test]
fn read_and_write_errors() {
    let sb = Sandbox::new();
    // 54: the message cannot be read (fd 0 is a directory)
    let (env_r, env_w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child = sb
        .cmd("qmail-queue")
        .stdin(fs::File::open(sb.tmp.path()).unwrap())
        .stdout(Stdio::from(env_r))
        .spawn()
        .unwrap();
    // qmail-queue may have given up (and closed the pipe) before the envelope is written
    let _ = fs::File::from(env_w).write_all(ENV);
    assert_eq!(child.wait().unwrap().code(), Some(54));
    // 53: the disk is "full" (a 1-block file size limit; SIGXFSZ ignored so write fails)
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$0\"")
        .arg(bin("qmail-queue"))
        .env("QMAILHOME", &sb.home);
    let big = vec![b'x'; 100_000];
    assert_eq!(spawn(cmd).finish(&big, ENV), 53);
    assert!(sb.todo().is_empty());
    assert!(sb.files("mess").is_empty(), "a write error cleans up");
}

#[test]
fn timeout_and_bug() {
    require_test_hooks();
    let sb = Sandbox::new();
    // 52: the message never ends; the (shortened) 24-hour alarm fires
    let mut cmd = sb.cmd("qmail-queue");
    cmd.env("QMAILQUEUE_TEST_DEATH", "1");
    let mut q = spawn(cmd);
    let _hold = q.message.take();
    let status = q.child.0.wait().unwrap();
    assert_eq!(status.code(), Some(52));
    assert!(sb.todo().is_empty());
    // 81: an internal bug (a panic) is caught
    let mut cmd = sb.cmd("qmail-queue");
    cmd.env("QMAILQUEUE_TEST_PAUSE", "panic:intd");
    assert_eq!(spawn(cmd).finish(MSG, ENV), 81);
    assert!(sb.todo().is_empty());
}

#[test]
fn hooks_are_ignored_unless_asked() {
    // the test hooks only act on their own variables; an unrelated value changes nothing
    let sb = Sandbox::new();
    let mut cmd = sb.cmd("qmail-queue");
    cmd.env("QMAILQUEUE_TEST_PAUSE", "nonesuch");
    assert_eq!(spawn(cmd).finish(MSG, ENV), 0);
}

#[test]
fn trigger_is_pulled() {
    let sb = Sandbox::new();
    // a reader on the FIFO sees the poke
    use std::os::unix::fs::OpenOptionsExt;
    let mut fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(sb.queue().join("lock/trigger"))
        .unwrap();
    assert_eq!(qq(&sb, MSG, ENV), 0);
    let mut buf = [0u8; 8];
    use std::io::Read;
    assert_eq!(fifo.read(&mut buf).unwrap(), 1);
}

/// The state of the process `pid` from /proc ('T' when stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Check the queue invariant: every todo entry has its complete message and envelope.
pub fn assert_consistent(sb: &Sandbox, body: &[u8], recipients: usize) -> usize {
    let todo = sb.todo();
    for m in &todo {
        assert!(m.mess.ends_with(body), "todo/{} has its whole message", m.id);
        assert_eq!(m.recipients().len(), recipients, "todo/{} has its whole envelope", m.id);
        let intd = fs::read(sb.queue().join(format!("intd/{}", m.id))).unwrap();
        let todo_bytes = fs::read(sb.queue().join(format!("todo/{}", m.id))).unwrap();
        assert_eq!(intd, todo_bytes);
    }
    todo.len()
}

/// The message and envelope of the crash tests: a 200 kB body, 500 recipients.
pub fn crash_message() -> (Vec<u8>, Vec<u8>) {
    let body: Vec<u8> = b"Subject: crash\n\n".iter().copied().chain(vec![b'z'; 200_000]).collect();
    let mut env = b"Fsender@example.org\0".to_vec();
    for i in 0..500 {
        env.extend_from_slice(format!("Trcpt{i}@example.org\0").as_bytes());
    }
    env.push(0);
    (body, env)
}

#[test]
fn sigkill_at_every_step() {
    require_test_hooks();
    let (body, env) = crash_message();
    for step in ["pid", "mess", "body", "fsync", "intd", "envelope", "todo"] {
        let sb = Sandbox::new();
        // one message that exited 0 before the crash
        assert_eq!(qq(&sb, &body, &env), 0);
        let mut cmd = sb.cmd("qmail-queue");
        cmd.env("QMAILQUEUE_TEST_PAUSE", step);
        let mut q = spawn(cmd);
        let pid = q.child.0.id();
        let (mut m, mut e) = (q.message.take().unwrap(), q.envelope.take().unwrap());
        let (b2, e2) = (body.clone(), env.clone());
        let t1 = std::thread::spawn(move || {
            let _ = m.write_all(&b2);
        });
        let t2 = std::thread::spawn(move || {
            let _ = e.write_all(&e2);
        });
        assert!(
            wait_until(Duration::from_secs(20), || proc_state(pid) == Some('T')),
            "qmail-queue never reached step {step}"
        );
        q.child.0.kill().unwrap();
        q.child.0.wait().unwrap();
        t1.join().unwrap();
        t2.join().unwrap();
        let n = assert_consistent(&sb, &body, 500);
        let want = if step == "todo" { 2 } else { 1 };
        assert_eq!(n, want, "after SIGKILL at {step}");
        // and the queue still works
        assert_eq!(qq(&sb, &body, &env), 0);
        assert_eq!(assert_consistent(&sb, &body, 500), want + 1);
    }
}

#[test]
fn sigkill_mid_message_and_mid_envelope() {
    let sb = Sandbox::new();
    for cut in ["message", "envelope"] {
        let mut q = spawn(sb.cmd("qmail-queue"));
        let mut m = q.message.take().unwrap();
        m.write_all(b"Subject: partial\n\nsome of the body").unwrap();
        if cut == "envelope" {
            drop(m);
            let mut e = q.envelope.take().unwrap();
            e.write_all(b"Fa@b\0Tc@").unwrap();
            let queue = sb.queue();
            assert!(wait_until(Duration::from_secs(20), || dir_nonempty(&queue.join("intd"))));
            // killed while it waits for the rest of the envelope: its main thread is in
            // read(2) on the envelope pipe (fd 1, or a copy of it)
            let pid = q.child.0.id();
            let reading_envelope = || {
                let Ok(call) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/syscall")) else {
                    return false;
                };
                let mut words = call.split_whitespace();
                let (Some("0"), Some(fd)) = (words.next(), words.next()) else { return false };
                let Ok(fd) = u32::from_str_radix(fd.trim_start_matches("0x"), 16) else {
                    return false;
                };
                let link = |n: u32| fs::read_link(format!("/proc/{pid}/fd/{n}")).ok();
                link(fd).is_some() && link(fd) == link(1)
            };
            assert!(wait_until(Duration::from_secs(20), reading_envelope), "never read fd 1");
            q.child.0.kill().unwrap();
            q.child.0.wait().unwrap();
            drop(e);
        } else {
            let queue = sb.queue();
            assert!(wait_until(Duration::from_secs(20), || sb_mess_nonempty(&queue)));
            q.child.0.kill().unwrap();
            q.child.0.wait().unwrap();
            drop(m);
        }
        assert!(sb.todo().is_empty(), "nothing committed after a kill mid-{cut}");
    }
}

fn dir_nonempty(dir: &Path) -> bool {
    fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

fn sb_mess_nonempty(queue: &Path) -> bool {
    (0..qmail::auto::SPLIT).any(|i| dir_nonempty(&queue.join(format!("mess/{i}"))))
}

const LONG: Duration = Duration::from_secs(60);

/// The stdout of a listing that must succeed.
fn listing(out: &std::process::Output, what: &str) -> String {
    assert_ok(out, what);
    assert!(out.stderr.is_empty(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Every way to list the queue (qmail-qread, mailq, sendmail -bp, qmailctl queue) prints
/// `want`; both ways to count it (qmail-qstat, qmailctl stat) print `counts`.
fn assert_listed(sb: &Sandbox, want: &str, counts: &str) {
    use std::os::unix::process::CommandExt;
    let home = sb.home.to_str().unwrap();
    assert_eq!(listing(&sb.run("qmail-qread", &[], b""), "qmail-qread"), want);
    assert_eq!(listing(&sb.run("sendmail", &["-bp"], b""), "sendmail -bp"), want);
    assert_eq!(listing(&sb.run("qmailctl", &["queue", "--home", home], b""), "queue"), want);
    let mut mailq = sb.cmd("sendmail");
    mailq.arg0("mailq");
    assert_eq!(listing(&run_with(&mut mailq, b""), "mailq"), want);
    // through a link named mailq, with a QMAILHOME relative to the working directory
    let link = sb.tmp.path().join("mailq");
    if !link.exists() {
        std::os::unix::fs::symlink(bin("sendmail"), &link).unwrap();
    }
    let mut mailq = Command::new(&link);
    mailq.env("QMAILHOME", "home").current_dir(sb.tmp.path());
    assert_eq!(listing(&run_with(&mut mailq, b""), "mailq, relative QMAILHOME"), want);
    assert_eq!(listing(&sb.run("qmail-qstat", &[], b""), "qmail-qstat"), counts);
    assert_eq!(listing(&sb.run("qmailctl", &["stat", "--home", home], b""), "stat"), counts);
}

/// `d Mon yyyy hh:mm:ss GMT  #id  size  <sender> ` for message `id`, dated by `file`.
fn header(sb: &Sandbox, id: u64, file: &str, sender: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let time = fs::metadata(sb.queue().join(file)).unwrap().mtime();
    let date = qmail::date822::Utc::from_unix(time).rfc822().replace(" -0000", "");
    let size = fs::metadata(sb.queue().join(qmail::queue::split_name("mess", id))).unwrap().len();
    format!("{date} GMT  #{id}  {size}  <{sender}> ")
}

#[test]
fn mailq_and_qstat_show_deferred_mail_and_skip_debris() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, alice) = sb.user_home("alice");
    let (euid, egid, erin) = sb.user_home("erin");
    sb.assign(&[("alice", uid, gid, &alice), ("erin", euid, egid, &erin)]);
    // erin's delivery defers (Maildir/tmp is a file); far.test's host refuses connections
    let tmp = erin.join("Maildir/tmp");
    fs::remove_dir(&tmp).unwrap();
    fs::write(&tmp, "").unwrap();
    sb.control("smtproutes", &format!("far.test:[127.0.0.1]:{}\n", free_port()));
    assert_listed(&sb, "", "messages in queue: 0\nmessages in queue but not yet preprocessed: 0\n");

    let run = sb.start();
    sb.inject(
        &["-f", "frank@example.org", "alice@example.org", "erin@example.org", "bob@far.test"],
        "Subject: later\n\nbody\n",
    );
    let deferrals = || run.count_log(|l| l.contains(": deferral: "));
    assert!(wait_until(LONG, || deferrals() >= 2), "no deferrals; log:\n{}", run.log_text());
    let id: u64 = sb.files("info")[0].parse().unwrap();
    let want = format!(
        "{}\n  done\tlocal\talice@example.org\n\tlocal\terin@example.org\n\tremote\tbob@far.test\n",
        header(&sb, id, &qmail::queue::split_name("info", id), "frank@example.org")
    );
    // alice's delivery is marked done once its report is in
    let qread = || String::from_utf8_lossy(&sb.run("qmail-qread", &[], b"").stdout).into_owned();
    assert!(wait_until(LONG, || qread() == want), "{}\nwant:\n{want}", qread());
    let one = "messages in queue: 1\nmessages in queue but not yet preprocessed: 0\n";
    assert_listed(&sb, &want, one);

    // debris of a crash: a message file with neither info nor todo is not waiting mail
    let debris = sb.queue().join(qmail::queue::split_name("mess", 1));
    fs::write(&debris, "Received: (qmail 1 invoked by uid 0); ...\n\nhalf a mess").unwrap();
    assert_listed(&sb, &want, one);
    drop(run);

    // queued while nothing runs: committed, not yet preprocessed
    sb.inject(&["-f", "", "erin@example.org"], "Subject: waiting\n\nbody\n");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1);
    let tid = todo[0].id;
    let waiting = format!(
        "{} not yet preprocessed\n\ttodo\terin@example.org\n",
        header(&sb, tid, &format!("todo/{tid}"), "")
    );
    let both = if tid < id { waiting.clone() + &want } else { want.clone() + &waiting };
    assert_listed(
        &sb,
        &both,
        "messages in queue: 2\nmessages in queue but not yet preprocessed: 1\n",
    );
    assert!(debris.exists());
}

#[test]
fn an_unreadable_queue_is_an_error_not_an_empty_listing() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    fs::set_permissions(sb.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // todo/ readable (as by group qmail), info/0 not: as root, run as nobody; otherwise take
    // our own right away
    for dir in ["", "todo"] {
        fs::set_permissions(sb.queue().join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let info = sb.queue().join("info/0");
    fs::set_permissions(&info, fs::Permissions::from_mode(0o000)).unwrap();
    for prog in ["qmail-qread", "qmail-qstat"] {
        let mut cmd = sb.cmd(prog);
        if is_root() {
            cmd.uid(65534).gid(65534);
        }
        let out = run_with(&mut cmd, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 111, "{prog}: {err}");
        assert!(out.stdout.is_empty(), "{prog}: {}", String::from_utf8_lossy(&out.stdout));
        let want = format!("{prog}: fatal: unable to read {}: Permission denied", info.display());
        assert!(err.starts_with(&want), "{prog}: {err}");
        assert!(err.contains("only root and qmails may read the queue"), "{prog}: {err}");
    }
    fs::set_permissions(&info, fs::Permissions::from_mode(0o700)).unwrap();
}
