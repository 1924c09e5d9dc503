//! The queue service (`qmail-queue --listen`): it queues what qmail-queue would, with the
//! caller named by the kernel; the same exit codes; hostile and vanishing clients; many
//! clients at once sharing their syncs (counted with strace); SIGKILL at each step; the
//! clients' fallback to qmail-queue; and 10,000 messages through SMTP with the service killed
//! again and again under load, none of the acknowledged ones lost.

use crate::harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use qmail::queue::wire;
use std::fs;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
const MSG: &[u8] = b"Subject: test\n\nhello\n";
const ENV: &[u8] = b"Fa@example.org\0Tb@example.org\0Tc@example.net\0\0";

/// A queue service on a sandbox, started directly (not by qmailctl run); killed with its
/// workers when dropped.
struct Svc {
    child: Option<Child>,
    sock: PathBuf,
    log: PathBuf,
}

impl Svc {
    fn start(sb: &Sandbox) -> Svc {
        Self::start_with(sb, &[], None)
    }

    /// With extra environment, and under `wrapper` (strace) when given.
    fn start_with(sb: &Sandbox, env: &[(&str, &str)], wrapper: Option<&[&str]>) -> Svc {
        use std::os::unix::process::CommandExt;
        let sock = sb.home.join(wire::SOCKET);
        let log = sb.tmp.path().join(format!("svc-{}.log", rand_tag()));
        // a killed service's last worker (one its master may have started just before it
        // died) holds the socket until it is gone: a new master would find it in use
        let old = || UnixStream::connect(&sock).is_ok();
        assert!(wait_until(LONG, || !old()), "the last service in this sandbox lingers");
        let mut cmd = sb.cmd("qmail-queue");
        if let Some(w) = wrapper {
            let mut c = Command::new(w[0]);
            c.args(&w[1..]).arg(bin("qmail-queue")).envs(cmd_env(&mut cmd));
            cmd = c;
        }
        cmd.args(["--listen", &format!("unix:{}", sock.display())])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .process_group(0);
        let child = cmd.spawn().unwrap();
        let svc = Svc { child: Some(child), sock, log };
        assert!(
            wait_until(LONG, || svc.master().is_some() && svc.sock.exists()),
            "the service did not come up: {}",
            svc.log_text()
        );
        // a connection makes the master start its worker; a bare connection reaches the
        // steps pid and mess, so with a pause there the test's own must be the first
        let early_pause =
            env.iter().any(|&(k, v)| k == "QMAILQUEUE_TEST_PAUSE" && matches!(v, "pid" | "mess"));
        if !early_pause {
            assert!(
                wait_until(LONG, || UnixStream::connect(&svc.sock).is_ok()
                    && svc.worker().is_some()),
                "no worker: {}",
                svc.log_text()
            );
        }
        svc
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The listener master's pid, from its log line.
    fn master(&self) -> Option<i32> {
        let text = self.log_text();
        let line = text.lines().find(|l| l.starts_with("qmail-queue: listening, pid "))?;
        line.rsplit(' ').next()?.parse().ok()
    }

    /// The pid of the worker accepting now (the latest "accepting" line of a live process).
    fn worker(&self) -> Option<i32> {
        let text = self.log_text();
        let pid: i32 = text
            .lines()
            .rev()
            .filter_map(|l| l.strip_prefix("qmail-queue: worker "))
            .find_map(|l| l.strip_suffix(" accepting"))?
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Once the worker has stopped itself at `step` (the pause hook), SIGKILL it: its pid.
    fn kill_paused_worker(&self, step: &str) -> i32 {
        let stopped = || self.worker().is_some_and(|p| proc_state(p) == Some('T'));
        assert!(wait_until(LONG, stopped), "never reached {step}: {}", self.log_text());
        let pid = self.worker().unwrap();
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        pid
    }

    /// Under `strace -f -c` counting the sync calls; the summary's path.
    fn start_traced(sb: &Sandbox) -> (Svc, PathBuf) {
        let trace = sb.tmp.path().join("strace");
        let trace_s = trace.to_string_lossy().into_owned();
        let strace = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,syncfs", "-o", &trace_s];
        (Svc::start_with(sb, &[], Some(&strace)), trace)
    }

    /// TERM to the master, and wait for the whole service to end.
    fn stop(mut self) {
        if let Some(master) = self.master() {
            let _ = kill(Pid::from_raw(master), Signal::SIGTERM);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// One message over the wire by hand: the greeting's pid and the answer's code.
    fn send(&self, message: &[u8], envelope: &[u8]) -> (u32, u8) {
        let stream = UnixStream::connect(&self.sock).unwrap();
        let pid = greeting(&stream);
        let mut w = wire::FrameWriter::new(&stream);
        let _ = w.write_all(message);
        let _ = w.finish();
        let _ = (&stream).write_all(envelope);
        (pid, answer(&stream).expect("an answer"))
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(-(c.id() as i32)), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn greeting(stream: &UnixStream) -> u32 {
    stream.set_read_timeout(Some(LONG)).unwrap();
    let payload = qmail::netstring::read(&mut BufReader::new(stream), wire::GREETING_MAX).unwrap();
    wire::parse_greeting(&payload).unwrap()
}

/// The service's answer, `None` when the connection ends without one.
fn answer(stream: &UnixStream) -> Option<u8> {
    stream.set_read_timeout(Some(LONG)).unwrap();
    let payload = qmail::netstring::read(&mut BufReader::new(stream), wire::ANSWER_MAX).ok()?;
    Some(wire::parse_answer(&payload)?.0)
}

/// The calls of `name` in an `strace -c` summary.
fn strace_calls(summary: &str, name: &str) -> usize {
    summary
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A one-shot qmail-queue run, for comparison: its exit code.
fn one_shot(sb: &Sandbox, message: &[u8], envelope: &[u8]) -> i32 {
    let (env_r, mut env_w) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut child = sb
        .cmd("qmail-queue")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(env_r)))
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    env_w.write_all(envelope).unwrap();
    drop(env_w);
    child.wait().unwrap().code().unwrap()
}

/// The queue holds exactly `n` committed messages and no debris.
/// The queue's `todo/` once it holds `n` messages: a message answered through the journal is
/// linked there by its round, just after the answer (doc/qmail-queue.8, SERVICE MODE).
fn queued(sb: &Sandbox, n: usize) -> Vec<crate::harness::Queued> {
    assert!(wait_until(LONG, || sb.todo().len() >= n), "{} queued, not {n}", sb.todo().len());
    sb.todo()
}

fn assert_clean(sb: &Sandbox, n: usize, what: &str) {
    assert_eq!(sb.todo().len(), n, "{what}: todo");
    assert_eq!(sb.files("mess").len(), n, "{what}: mess");
    assert_eq!(sb.files("intd").len(), n, "{what}: intd");
    assert!(sb.files("pid").is_empty(), "{what}: pid");
}

#[test]
fn queues_what_qmail_queue_would() {
    let sb = Sandbox::new();
    let svc = Svc::start(&sb);
    assert_eq!(one_shot(&sb, MSG, ENV), 0);
    let (pid, code) = svc.send(MSG, ENV);
    assert_eq!(code, 0);
    let todo = queued(&sb, 2);
    assert_eq!(todo.len(), 2);
    let by_pid = |p: &str| todo.iter().find(|m| m.records[1] == p).unwrap();
    let served = by_pid(&format!("p{pid}"));
    let other = todo.iter().find(|m| m.id != served.id).unwrap();
    // the same records but the pid, the same message after a Received line of the same form
    assert_eq!(served.records[0], other.records[0], "u from the peer credentials");
    assert_eq!(served.records[2..], other.records[2..]);
    let (rs, bs) = served.mess.split_at(served.mess.iter().position(|&b| b == b'\n').unwrap());
    let (ro, bo) = other.mess.split_at(other.mess.iter().position(|&b| b == b'\n').unwrap());
    assert_eq!(bs, bo);
    let shape = |r: &[u8]| {
        let r = String::from_utf8_lossy(r).into_owned();
        let (head, tail) = r.split_once(" invoked ").unwrap();
        (
            head.split(' ').take(2).collect::<Vec<_>>().join(" "),
            tail.split(';').next().map(str::to_string),
        )
    };
    assert_eq!(shape(rs), shape(ro));
    assert!(String::from_utf8_lossy(rs).starts_with(&format!("Received: (qmail {pid} invoked ")));
    // the queue files have the modes and owner of qmail-queue's, except that the service's
    // message file is not readable by others (0640: its inode may hold another message
    // later; doc/qmail-queue.8, SERVICE MODE)
    use std::os::unix::fs::MetadataExt;
    for (a, b) in [("mess", &served.id), ("todo", &served.id)] {
        let p = |id: u64| match a {
            "mess" => sb.queue().join(qmail::queue::split_name("mess", id)),
            _ => sb.queue().join(format!("todo/{id}")),
        };
        let (ms, mo) = (fs::metadata(p(*b)).unwrap(), fs::metadata(p(other.id)).unwrap());
        let others = if a == "mess" { 0o004 } else { 0 };
        assert_eq!(mo.mode() & others, others, "{a}: qmail-queue's is readable by others");
        let expected = (mo.mode() & !others, mo.uid(), mo.gid());
        assert_eq!((ms.mode(), ms.uid(), ms.gid()), expected, "{a}");
    }
    assert_clean(&sb, 2, "after both");
    svc.stop();
}

/// The caller is who the kernel says: a client running as another uid is recorded as that
/// uid, whatever it writes (the protocol has no field for it).
#[test]
fn the_caller_is_named_by_the_kernel() {
    if !is_root() {
        return;
    }
    let sb = Sandbox::new();
    let svc = Svc::start(&sb);
    use std::os::unix::process::CommandExt;
    for uid in [4242u32, 65534] {
        let mut cmd = sb.cmd("qmail-inject");
        cmd.args(["-f", "a@example.org", "b@example.org"]).uid(uid).gid(uid);
        // a forged From: and a forged Received line change nothing
        let msg =
            format!("From: root\nReceived: (qmail 1 invoked by uid 0)\nSubject: {uid}\n\nx\n");
        assert_ok(&run_with(&mut cmd, msg.as_bytes()), "qmail-inject");
    }
    let todo = queued(&sb, 2);
    let uids: Vec<&str> = todo.iter().map(|m| m.records[0].as_str()).collect();
    assert!(uids.contains(&"u4242") && uids.contains(&"u65534"), "{uids:?}");
    let m = todo.iter().find(|m| m.records[0] == "u4242").unwrap();
    assert!(
        m.text().starts_with("Received: (qmail ") && m.text().contains(" invoked by uid 4242); ")
    );
    // served by the service, not by a qmail-queue of their own
    let worker = svc.worker().unwrap();
    assert!(todo.iter().all(|m| m.records[1] == format!("p{worker}")), "{todo:?}");
}

#[test]
fn exit_codes_as_qmail_queue() {
    let sb = Sandbox::new();
    let svc = Svc::start(&sb);
    let rows = crate::queue::envelope_rows();
    let mut committed = 0;
    for (env, want, what) in rows {
        // the envelope ends the connection's input: a short one is a truncated envelope
        let stream = UnixStream::connect(&svc.sock).unwrap();
        greeting(&stream);
        let mut w = wire::FrameWriter::new(&stream);
        w.write_all(MSG).unwrap();
        w.finish().unwrap();
        (&stream).write_all(&env).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(answer(&stream).map(i32::from), Some(want), "{what}");
        assert_eq!(one_shot(&sb, MSG, &env), want, "{what}: one-shot");
        if want == 0 {
            committed += 2;
        }
        assert_clean(&sb, committed, what);
    }
}

/// Without the journal, a link into `todo/` that fails (made by the round's leader) fails
/// only its message, with qmail-queue's 66, a temporary failure; nothing is left behind, a
/// sync request is still served, and once `todo/` is back the service queues again.
#[test]
fn a_failed_link_is_temporary_and_leaves_nothing() {
    let sb = Sandbox::new();
    sb.control("queuejournal", "0\n");
    let svc = Svc::start(&sb);
    let q = sb.queue();
    let saved = q.join("todo.saved");
    fs::rename(q.join("todo"), &saved).unwrap();
    assert_eq!(svc.send(MSG, ENV).1, 66);
    assert!(!qmail::exit::queue_code(66, b"").unwrap_err().is_perm());
    let stream = UnixStream::connect(&svc.sock).unwrap();
    greeting(&stream);
    (&stream).write_all(&[wire::SYNC_REQUEST]).unwrap();
    assert_eq!(answer(&stream), Some(0), "a sync request needs no link");
    fs::rename(&saved, q.join("todo")).unwrap();
    assert_clean(&sb, 0, "after a failed link");
    assert_eq!(svc.send(MSG, ENV).1, 0);
    assert_clean(&sb, 1, "queued again");
}

/// Hostile framing and clients that go away: each is 54 (or no answer), nothing is left
/// behind, and the service goes on serving.
#[test]
fn hostile_and_vanishing_clients() {
    let sb = Sandbox::new();
    let svc = Svc::start(&sb);
    let too_long = format!("{}:", wire::CHUNK_MAX + 1);
    let rows: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "nothing"),
        (b"5:hel".to_vec(), "mid-chunk"),
        (b"5:hello".to_vec(), "no comma"),
        (b"5:hello;0:,Fa\0\0".to_vec(), "a bad comma"),
        (b"05:hello,0:,Fa\0\0".to_vec(), "a leading zero"),
        (too_long.into_bytes(), "a chunk too long"),
        (b"99999999999999999999:".to_vec(), "a huge length"),
        (b"garbage".to_vec(), "no netstring"),
        (b"5:hello,".to_vec(), "no end of message"),
        (b"5:hello,0:,".to_vec(), "no envelope"),
    ];
    for (input, what) in rows {
        let stream = UnixStream::connect(&svc.sock).unwrap();
        greeting(&stream);
        let _ = (&stream).write_all(&input);
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(answer(&stream), Some(54), "{what}");
        assert_clean(&sb, 0, what);
    }
    // a client that connects and closes at once, or after the greeting
    drop(UnixStream::connect(&svc.sock).unwrap());
    let s = UnixStream::connect(&svc.sock).unwrap();
    greeting(&s);
    drop(s);
    // a stalled client does not hold up the others
    let stalled = UnixStream::connect(&svc.sock).unwrap();
    greeting(&stalled);
    (&stalled).write_all(b"5:hel").unwrap();
    assert_eq!(svc.send(MSG, ENV).1, 0);
    drop(stalled);
    assert!(wait_until(LONG, || sb.files("mess").len() == 1), "the stalled client's files");
    assert_clean(&sb, 1, "after all");
}

/// The 24-hour limit (shortened by the test hook) answers a stalled client 52.
#[test]
fn a_stalled_client_times_out() {
    require_test_hooks();
    let sb = Sandbox::new();
    let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_DEATH", "1")], None);
    let stalled = UnixStream::connect(&svc.sock).unwrap();
    greeting(&stalled);
    (&stalled).write_all(b"5:hello,").unwrap();
    assert_eq!(answer(&stalled), Some(52));
    assert_clean(&sb, 0, "after the timeout");
}

/// Many clients at once: all committed, the rounds' syncs shared (fewer than messages) and
/// at most one journal sync a message (strace counts them: the one-shot mode makes 4 fsyncs
/// per message).
#[test]
fn concurrent_clients_share_their_syncs() {
    let sb = Sandbox::new();
    let (svc, trace) = Svc::start_traced(&sb);
    let n = 64;
    std::thread::scope(|s| {
        for i in 0..n {
            let svc = &svc;
            s.spawn(move || {
                let body = format!("Subject: {i}\n\n{}\n", "x".repeat(i * 100));
                assert_eq!(svc.send(body.as_bytes(), ENV).1, 0, "client {i}");
            });
        }
    });
    let todo = queued(&sb, n);
    assert_eq!(todo.len(), n);
    for m in &todo {
        let text = m.text();
        let i: usize =
            text.lines().nth(1).unwrap().strip_prefix("Subject: ").unwrap().parse().unwrap();
        assert!(text.ends_with(&format!("{}\n", "x".repeat(i * 100))), "message {i} whole");
    }
    assert_clean(&sb, n, "all");
    svc.stop();
    let summary = fs::read_to_string(&trace).unwrap();
    let count = |name: &str| strace_calls(&summary, name);
    // the rounds' syncs (syncfs, fsync of todo/) shared; the journal's (fdatasync) at most
    // one a message, and shared too when several records wait together
    let syncs = count("fsync") + count("syncfs");
    assert!(syncs >= 2, "no syncs at all?\n{summary}");
    assert!(syncs < 2 * n, "{syncs} syncs for {n} messages:\n{summary}");
    assert!(count("fdatasync") <= n, "journal syncs for {n} messages:\n{summary}");
}

/// Sync requests (`S` instead of a message, as qmail-todo and the delivery workers send):
/// each answered 0 after a round that started after it, never more syncs than requests
/// (strace counts the service's); anything after the byte is ignored and the connection ends.
#[test]
fn sync_requests_share_the_rounds() {
    use std::io::Read;
    let sb = Sandbox::new();
    let (svc, trace) = Svc::start_traced(&sb);
    let n = 48;
    std::thread::scope(|s| {
        for i in 0..n {
            let svc = &svc;
            s.spawn(move || {
                let mut stream = UnixStream::connect(&svc.sock).unwrap();
                greeting(&stream);
                // junk after the request is never read
                let junk: &[u8] = if i % 2 == 0 { b"" } else { b"5:hello,0:,Fa\0\0" };
                stream.write_all(&[&[wire::SYNC_REQUEST][..], junk].concat()).unwrap();
                assert_eq!(answer(&stream), Some(0), "request {i}");
                // the end, or a reset for the junk left unread
                let mut rest = Vec::new();
                stream.set_read_timeout(Some(LONG)).unwrap();
                match stream.read_to_end(&mut rest) {
                    Ok(_) => assert!(rest.is_empty(), "the connection ends after the answer"),
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
                }
            });
        }
    });
    // the library's client, through the service
    let queue = fs::File::open(sb.queue()).unwrap();
    qmail::queue::sync_fs(&sb.home, &queue).unwrap();
    assert_clean(&sb, 0, "no message from a sync request");
    svc.stop();
    let summary = fs::read_to_string(&trace).unwrap();
    let syncfs = strace_calls(&summary, "syncfs");
    assert!(syncfs >= 1, "no syncfs at all?\n{summary}");
    // no more syncs than requests (how many share one round depends on timing; the sharing
    // itself is the group's, unit-tested in programs/qmail-queue/group.rs)
    assert!(syncfs <= n + 1, "{syncfs} syncs for {} requests:\n{summary}", n + 1);
}

/// The client asks only for files on the queue's file system, and syncs by itself when no
/// service answers.
#[test]
fn sync_requests_only_for_the_queues_file_system() {
    let sb = Sandbox::new();
    let fake = FakeSyncService::start(&sb.home);
    // /dev/null is on another file system than the sandbox
    qmail::queue::sync_fs(&sb.home, &fs::File::open("/dev/null").unwrap()).unwrap();
    assert_eq!(fake.asked(), b"", "no request for another file system");
    qmail::queue::sync_fs(&sb.home, &fs::File::open(sb.queue()).unwrap()).unwrap();
    assert_eq!(fake.asked(), b"S");
    drop(fake);
    // no service: our own syncs
    qmail::queue::sync_fs(&sb.home, &fs::File::open(sb.queue()).unwrap()).unwrap();
}

/// The inode numbers of the queue's pool of recycled files (`pid/free.<inode>`, and
/// `pid/free.m<inode>` for message files).
fn queue_pool(sb: &Sandbox) -> std::collections::BTreeSet<u64> {
    let inode = |name: &str| {
        let n = name.strip_prefix("free.")?;
        n.strip_prefix('m').unwrap_or(n).parse().ok()
    };
    fs::read_dir(sb.queue().join("pid"))
        .unwrap()
        .filter_map(|e| inode(e.ok()?.file_name().to_str()?))
        .collect()
}

/// The files of finished messages are recycled: qmail-clean gives the envelope's inode (once
/// preprocessed) to `pid/free.<inode>`, and the service takes it for a later message, whose
/// id is then a recycled inode number; qmail-send gives `info` and `local` to
/// `bounce/free.<inode>` for qmail-todo; every message is still delivered whole.
#[test]
fn finished_messages_files_are_recycled() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("sue");
    sb.assign(&[("sue", uid, gid, &home)]);
    let run = sb.start();
    let pool = || queue_pool(&sb);
    for i in 0..3 {
        let pad = "x".repeat(3000);
        sb.inject(&["sue@example.org"], &format!("Subject: first {i}\n\n{pad}\nbody {i}\n"));
    }
    assert!(wait_until(LONG, || Sandbox::maildir_new(&home).len() == 3), "{}", run.log_text());
    // once the queue is empty the pool holds the envelopes not already taken again by a later
    // message of the three: at least the last one's (the message files are unlinked)
    assert!(wait_until(LONG, || sb.check_queue() == 0), "{}", run.log_text());
    assert!(!pool().is_empty(), "pool {:?}; {}", pool(), run.log_text());
    // qmail-send's info and local files went to its own pool, for qmail-todo
    let send_pool = || {
        fs::read_dir(sb.queue().join("bounce"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("free."))
            .count()
    };
    assert!(send_pool() >= 2, "{}", send_pool());
    let recycled = pool();
    for i in 0..3 {
        sb.inject(&["sue@example.org"], &format!("Subject: 2nd {i}\n\nbody {i}\n"));
    }
    assert!(wait_until(LONG, || Sandbox::maildir_new(&home).len() == 6), "{}", run.log_text());
    let ids: Vec<u64> = run
        .log_lines()
        .iter()
        .filter_map(|l| l.split("new msg ").nth(1)?.trim().parse().ok())
        .collect();
    assert_eq!(ids.len(), 6, "{}", run.log_text());
    // the first of them takes its message file from the pool (the others may find it empty:
    // each message needs two files and gives the envelope back only once preprocessed)
    assert!(
        recycled.contains(&ids[3]),
        "ids {ids:?}, pool {recycled:?}, now {:?}; {}",
        pool(),
        run.log_text()
    );
    let texts: Vec<String> =
        Sandbox::maildir_new(&home).iter().map(|p| fs::read_to_string(p).unwrap()).collect();
    for i in 0..3 {
        for (round, end) in
            [("first", format!("x\nbody {i}\n")), ("2nd", format!("\n\nbody {i}\n"))]
        {
            let subject = format!("Subject: {round} {i}\n");
            let found: Vec<&String> = texts.iter().filter(|t| t.contains(&subject)).collect();
            assert_eq!(found.len(), 1, "{subject}");
            assert!(found[0].ends_with(&end), "whole: {}", found[0]);
        }
    }
    assert!(wait_until(LONG, || sb.check_queue() == 0), "{}", run.log_text());
    assert!(send_pool() >= 2 && send_pool() <= 6, "{}", send_pool());
}

/// The queue service and qmail-todo make `control/queuepool` files of each kind ready at
/// start (qmail-todo twice as many, for `info` and a channel file), zeros of a message's and
/// an envelope's size, with the modes their uses need (message files private to the queue's
/// group, envelopes readable by qmail-send, qmail-send's own private): the first message takes
/// the lowest of them. A restart makes only what is missing.
#[test]
fn pool_files_are_made_ready_at_start() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("sue");
    sb.assign(&[("sue", uid, gid, &home)]);
    sb.control("queuepool", "3\n");
    let files = |dir: &str| -> Vec<(String, fs::Metadata)> {
        let mut v: Vec<_> = fs::read_dir(sb.queue().join(dir))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("free."))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap()))
            .collect();
        v.sort_by_key(|(n, _)| n.clone());
        v
    };
    let kinds = |dir: &str| {
        let f = files(dir);
        let messages = f.iter().filter(|(n, _)| n.starts_with("free.m")).count();
        (messages, f.len() - messages)
    };
    let ready = |run: &Running| {
        assert!(
            wait_until(LONG, || kinds("pid") == (3, 3) && kinds("bounce") == (0, 6)),
            "pid {:?}, bounce {:?}; {}",
            kinds("pid"),
            kinds("bounce"),
            run.log_text()
        )
    };
    let run = sb.start();
    ready(&run);
    for (dir, name, meta) in
        ["pid", "bounce"].iter().flat_map(|d| files(d).into_iter().map(move |(n, m)| (d, n, m)))
    {
        let (size, mode) = match (*dir, name.starts_with("free.m")) {
            ("pid", true) => (8192, 0o640),
            ("pid", false) => (4096, 0o644),
            _ => (4096, 0o600),
        };
        assert_eq!(name, format!("free.{}{}", if size == 8192 { "m" } else { "" }, meta.ino()));
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (size, mode), "{dir}/{name}");
        let data = fs::read(sb.queue().join(dir).join(&name)).unwrap();
        assert!(data.iter().all(|&b| b == 0), "{dir}/{name}");
    }
    let ready_messages: Vec<u64> =
        files("pid").iter().filter_map(|(n, _)| n.strip_prefix("free.m")?.parse().ok()).collect();
    sb.inject(&["sue@example.org"], "Subject: ready\n\nbody\n");
    assert!(wait_until(LONG, || Sandbox::maildir_new(&home).len() == 1), "{}", run.log_text());
    let text = fs::read_to_string(&Sandbox::maildir_new(&home)[0]).unwrap();
    assert!(text.ends_with("Subject: ready\n\nbody\n"), "{text}");
    let id: u64 = run
        .log_lines()
        .iter()
        .find_map(|l| l.split("new msg ").nth(1)?.trim().parse().ok())
        .expect("a new msg line");
    assert_eq!(Some(&id), ready_messages.iter().min(), "the lowest of {ready_messages:?} first");
    assert!(wait_until(LONG, || sb.check_queue() == 0), "{}", run.log_text());
    run.stop();
    // a restart tops the pools up to the count again, no further
    let a_message = files("pid").into_iter().find(|(n, _)| n.starts_with("free.m")).unwrap().0;
    fs::remove_file(sb.queue().join("pid").join(a_message)).unwrap();
    fs::remove_file(sb.queue().join("bounce").join(&files("bounce")[0].0)).unwrap();
    assert!(kinds("pid").0 < 3 && kinds("bounce").1 < 6);
    ready(&sb.start());
}

/// A message file goes back to the pool once delivered, unless somebody still has it open: a
/// program delivery that leaves a background process holding the message on its stdin keeps
/// its inode out of the pool for good (it is removed instead), so the process can never read
/// another message through it.
#[test]
fn a_message_a_program_still_holds_is_not_recycled() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::for_delivery();
    let (uid, gid, sue) = sb.user_home("sue");
    let (_, _, tom) = sb.user_home("tom");
    sb.assign(&[("sue", uid, gid, &sue), ("tom", uid, gid, &tom)]);
    let dot = sue.join(".qmail");
    // (a background command's stdin is /dev/null unless redirected from another descriptor)
    let program = "|exec 3<&0; sleep 120 <&3 >/dev/null 2>&1 & echo $! > held.pid\n";
    fs::write(&dot, format!("{program}./Maildir/\n")).unwrap();
    fs::set_permissions(&dot, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&dot, Some(uid), Some(gid)).unwrap();
    let run = sb.start();
    let pool = || queue_pool(&sb);
    let ids = || -> Vec<u64> {
        run.log_lines()
            .iter()
            .filter_map(|l| l.split("new msg ").nth(1)?.trim().parse().ok())
            .collect()
    };
    sb.inject(&["sue@example.org"], "Subject: held\n\nfor sue\n");
    assert!(wait_until(LONG, || Sandbox::maildir_new(&sue).len() == 1), "{}", run.log_text());
    assert!(wait_until(LONG, || sb.check_queue() == 0), "{}", run.log_text());
    let held = ids()[0];
    let sleeper: i32 = fs::read_to_string(sue.join("held.pid")).unwrap().trim().parse().unwrap();
    let stdin = fs::read_link(format!("/proc/{sleeper}/fd/0")).unwrap();
    assert!(stdin.to_string_lossy().contains("/mess/"), "it holds the message: {stdin:?}");
    sb.inject(&["tom@example.org"], "Subject: free\n\nfor tom\n");
    assert!(wait_until(LONG, || Sandbox::maildir_new(&tom).len() == 1), "{}", run.log_text());
    assert!(wait_until(LONG, || sb.check_queue() == 0), "{}", run.log_text());
    let free = ids()[1];
    let _ = kill(Pid::from_raw(sleeper), Signal::SIGKILL);
    let now = pool();
    assert!(!now.contains(&held), "a held message file was recycled: {held} in {now:?}");
    assert!(now.contains(&free), "a finished message file is recycled: {free} not in {now:?}");
}

/// SIGKILL of the service stopped at each step of the sequence: the client hears no answer
/// (a temporary failure to it), the queue holds only whole messages, and what is left is
/// debris qmail-send's sweep removes (no lock held); the next service queues again.
#[test]
fn sigkill_at_every_step() {
    require_test_hooks();
    let (body, env) = crate::queue::crash_message();
    let steps = ["pid", "mess", "body", "intd", "envelope", "fsync", "todo"];
    // each step with a new message file, then with a recycled one in the pool (locked under
    // its pool name, renamed straight to mess/S/id)
    for (step, recycled) in steps.iter().map(|s| (*s, false)).chain(steps.map(|s| (s, true))) {
        let sb = Sandbox::new();
        assert_eq!(one_shot(&sb, &body, &env), 0);
        let pooled = recycled.then(|| {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let owner = fs::metadata(sb.queue()).unwrap();
            let old = sb.queue().join("pid/old");
            fs::write(&old, [b'o'; 6000]).unwrap();
            fs::set_permissions(&old, fs::Permissions::from_mode(0o640)).unwrap();
            std::os::unix::fs::chown(&old, Some(owner.uid()), Some(owner.gid())).unwrap();
            let ino = fs::metadata(&old).unwrap().ino();
            fs::rename(&old, sb.queue().join(format!("pid/free.m{ino}"))).unwrap();
            ino
        });
        let step = if recycled { format!("{step} (recycled)") } else { step.to_string() };
        let pause = step.split(' ').next().unwrap();
        let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", pause)], None);
        let stream = UnixStream::connect(&svc.sock).unwrap();
        greeting(&stream);
        let (b2, e2, s2) = (body.clone(), env.clone(), stream.try_clone().unwrap());
        let writer = std::thread::spawn(move || {
            let mut w = wire::FrameWriter::new(&s2);
            let _ = w.write_all(&b2);
            let _ = w.finish();
            let _ = (&s2).write_all(&e2);
        });
        svc.kill_paused_worker(&step);
        assert_eq!(answer(&stream), None, "no answer after a kill at {step}");
        writer.join().unwrap();
        drop(svc);
        let want = if pause == "todo" { 2 } else { 1 };
        assert_eq!(
            crate::queue::assert_consistent(&sb, &body, 500),
            want,
            "after SIGKILL at {step}"
        );
        if let Some(ino) = pooled {
            // killed before its rename, the file is still the pool's; at the commit, it is
            // the message's
            let still = sb.queue().join(format!("pid/free.m{ino}")).exists();
            assert_eq!(still, pause == "pid", "{step}: the pool file");
            if pause == "todo" {
                assert!(sb.todo().iter().any(|q| q.id == ino), "{step}: the recycled inode");
            }
        }
        // what is left is debris, not a live injection, once the dead worker's descriptors
        // are all closed (its last thread may outlive the main one a little)
        let debris = || {
            sb.files("mess").iter().all(|f| {
                let left = qmail::queue::leftover(&sb.queue(), f.parse().unwrap()).unwrap();
                matches!(left, None | Some(qmail::queue::Leftover::Debris))
            })
        };
        assert!(
            wait_until(LONG, debris),
            "{step}: a live injection after the kill; locks:\n{}",
            fs::read_to_string("/proc/locks").unwrap_or_default()
        );
        let svc = Svc::start(&sb);
        assert_eq!(svc.send(&body, &env).1, 0);
        assert_eq!(sb.todo().len(), want + 1);
    }
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The clients (qmail-inject here) use the service when it answers, qmail-queue when the
/// socket is missing or stale, and the `QMAILQUEUE` program whenever it is set.
#[test]
fn clients_fall_back_and_honour_qmailqueue() {
    let sb = Sandbox::new();
    let inject = |env: &[(&str, &str)], subject: &str| {
        let mut cmd = sb.cmd("qmail-inject");
        cmd.args(["-f", "a@example.org", "b@example.org"]).envs(env.iter().copied());
        assert_ok(&run_with(&mut cmd, format!("Subject: {subject}\n\nx\n").as_bytes()), subject);
    };
    let pid_of = |subject: &str| -> String {
        let find = || {
            let has =
                |m: &crate::harness::Queued| m.text().contains(&format!("Subject: {subject}\n"));
            sb.todo().into_iter().find(has)
        };
        assert!(wait_until(LONG, || find().is_some()), "{subject} not queued");
        find().unwrap().records[1].clone()
    };
    // no socket
    inject(&[], "absent");
    // a stale socket: a file nobody listens on
    fs::create_dir_all(sb.home.join("run")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(sb.home.join(wire::SOCKET)).unwrap());
    inject(&[], "stale");
    let _ = fs::remove_file(sb.home.join(wire::SOCKET));
    let svc = Svc::start(&sb);
    let worker = format!("p{}", svc.worker().unwrap());
    inject(&[], "served");
    assert_eq!(pid_of("served"), worker);
    assert_ne!(pid_of("absent"), worker);
    assert_ne!(pid_of("stale"), worker);
    // QMAILQUEUE: the filter runs (and queues through qmail-queue itself)
    let script = sb.tmp.path().join("filter");
    let mark = sb.tmp.path().join("filtered");
    fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\nexec {}\n", mark.display(), bin("qmail-queue").display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    inject(&[("QMAILQUEUE", script.to_str().unwrap())], "filtered");
    assert!(mark.exists(), "QMAILQUEUE ran");
    assert_ne!(pid_of("filtered"), worker);
    // a service that is stopped (no greeting) makes the client run qmail-queue after a while
    let master = svc.master().unwrap();
    let w = svc.worker().unwrap();
    kill(Pid::from_raw(w), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(master), Signal::SIGSTOP).unwrap();
    inject(&[], "stopped");
    assert_ne!(pid_of("stopped"), worker);
    let _ = kill(Pid::from_raw(w), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(master), Signal::SIGCONT);
    assert_eq!(sb.todo().len(), 5);
}

/// A client whose service dies mid-message is told so: qmail-inject exits 111 (temporary),
/// nothing is queued.
#[test]
fn a_service_that_dies_mid_message_is_a_temporary_failure() {
    require_test_hooks();
    let sb = Sandbox::new();
    let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", "body")], None);
    let mut child = sb
        .cmd("qmail-inject")
        .args(["-f", "a@example.org", "b@example.org"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Subject: lost\n\nx\n").unwrap();
    svc.kill_paused_worker("body");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(111), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue service"), "{out:?}");
    assert!(sb.todo().is_empty());
}

/// A failed sync (the test hook's disk error) is a temporary failure, never a 250: the message
/// is answered 53 and removed, qmail-inject exits 111; the worker that saw it ends and a fresh
/// one serves the next client; a sync request gets 53 too, and the library's client then syncs
/// by itself.
#[test]
fn a_failed_sync_is_temporary_and_ends_the_worker() {
    require_test_hooks();
    let sb = Sandbox::new();
    sb.control("queuejournal", "0\n");
    let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", "fail:syncfs")], None);
    let (first, code) = svc.send(MSG, ENV);
    assert_eq!(code, 53);
    assert_clean(&sb, 0, "after a failed sync");
    assert!(
        wait_until(LONG, || svc
            .log_text()
            .contains("a sync of the queue failed; this worker ends")),
        "{}",
        svc.log_text()
    );
    let out =
        sb.run("qmail-inject", &["-f", "a@example.org", "b@example.org"], b"Subject: x\n\ny\n");
    assert_eq!(out.status.code(), Some(111), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sb.todo().is_empty());
    // the worker that served qmail-inject ends too; until it has, it may still accept (and
    // then drop) a connection: a lost service, which a client also takes as temporary
    assert!(wait_until(LONG, || svc.worker().is_none()), "{}", svc.log_text());
    let stream = UnixStream::connect(&svc.sock).unwrap();
    let next = greeting(&stream);
    assert_ne!(next, first, "a fresh worker");
    (&stream).write_all(&[wire::SYNC_REQUEST]).unwrap();
    assert_eq!(answer(&stream), Some(53));
    qmail::queue::sync_fs(&sb.home, &fs::File::open(sb.queue()).unwrap()).unwrap();
    assert_clean(&sb, 0, "at the end");
}

/// Refused where it would not run as the queue's owner: through a setuid bit, and as root on
/// a queue that belongs to root.
#[test]
fn refused_setuid_and_as_root() {
    if !is_root() {
        return;
    }
    let sb = Sandbox::new();
    let copy = sb.tmp.path().join("qmail-queue-setuid");
    fs::copy(bin("qmail-queue"), &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o4755)).unwrap();
    let sock = format!("unix:{}", sb.home.join(wire::SOCKET).display());
    let mut cmd = sb.cmd("qmail-queue");
    let out = run_with(Command::new(&copy).args(["--listen", &sock]).envs(cmd_env(&mut cmd)), b"");
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains("setuid"), "{out:?}");
    // root on a root-owned queue
    std::os::unix::fs::chown(sb.queue(), Some(0), Some(0)).unwrap();
    let out = sb.run("qmail-queue", &["--listen", &sock], b"");
    assert_eq!(out.status.code(), Some(111));
    assert!(String::from_utf8_lossy(&out.stderr).contains("as root"), "{out:?}");
    assert!(!sb.home.join(wire::SOCKET).exists());
}

/// The environment a sandbox command gets (QMAILHOME).
fn cmd_env(cmd: &mut Command) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    cmd.get_envs().filter_map(|(k, v)| Some((k.to_os_string(), v?.to_os_string()))).collect()
}

/// `qmailctl run` supervises the service: qmail-smtpd queues through it (its `qp` is the
/// service's), and a killed service is restarted.
#[test]
fn qmailctl_run_supervises_the_service() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("sue");
    sb.assign(&[("sue", uid, gid, &home)]);
    let (run, port) = sb.start_smtp();
    let worker = || service_pids(&sb).into_iter().find(|&(_, w)| w).map(|(p, _)| p);
    let send = |subject: &str| -> String {
        let script = format!(
            "import smtplib, sys\ns = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30)\n\
             code, text = s.mail('a@example.net')\ns.rcpt('sue@example.org')\n\
             code, text = s.data(b'Subject: {subject}\\r\\n\\r\\nx\\r\\n')\nprint(code, text.decode())\ns.quit()\n"
        );
        let out =
            Command::new("python3").args(["-c", &script, &port.to_string()]).output().unwrap();
        assert_ok(&out, "python3 smtplib");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let reply = send("one");
    let w = worker().unwrap_or_else(|| panic!("no service worker; log:\n{}", run.log_text()));
    assert!(reply.starts_with("250 ") && reply.contains(&format!(" qp {w}")), "{reply}");
    // kill the whole service: qmailctl run starts it again
    for (pid, _) in service_pids(&sb) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(
        run.wait_log(LONG, |l| l.contains("qmail-queue --listen exited")),
        "{}",
        run.log_text()
    );
    let reply = send("two");
    assert!(reply.starts_with("250 "), "{reply}");
    assert!(wait_until(LONG, || Sandbox::maildir_new(&home).len() == 2), "{}", run.log_text());
}

/// The processes of the queue service of `sb` (qmailctl run's): pid, and whether it is a
/// worker (else the master).
fn service_pids(sb: &Sandbox) -> Vec<(i32, bool)> {
    let home = format!("QMAILHOME={}\0", sb.home.display());
    pids_of(&["qmail-queue", "--listen"])
        .into_iter()
        .filter_map(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
            let env = String::from_utf8_lossy(&env);
            env.contains(&home).then(|| (pid, env.contains("QMAIL_LISTENER_WORKER=1")))
        })
        .collect()
}

/// The crash test: 10,000 messages through SMTP (many parallel sessions, one message
/// each), the service SIGKILLed again and again under load (its worker, and the whole
/// service, which qmailctl run restarts): every message acknowledged with 250 is delivered
/// at least once, and none is lost.
#[test]
fn sigkill_of_the_service_under_smtp_load_loses_nothing() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("lu");
    sb.assign(&[("lu", uid, gid, &home)]);
    let (run, port) = sb.start_smtp();
    let n = 10_000;
    let mut load = SmtpLoad::start(port, n, 16, &["lu@example.org"]);
    let mut kills = 0;
    let started = std::time::Instant::now();
    // a kill every 800 acknowledged messages: the worker alone, or (every third time) the
    // whole service
    let finished = wait_until(Duration::from_secs(900), || {
        if load.done() {
            return true;
        }
        if kills < 8 && load.acked() >= 800 * (kills + 1) {
            let whole = kills % 3 == 2;
            for (pid, worker) in service_pids(&sb) {
                if whole || worker {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            kills += 1;
        }
        false
    });
    assert!(finished, "the load did not finish");
    let acked = load.finish().acked;
    eprintln!("load sent in {:?}", started.elapsed());
    assert!(kills >= 3, "only {kills} kills: the load ended too soon");
    assert!(acked.len() > n * 9 / 10, "only {} of {n} acknowledged", acked.len());
    let mut seen = std::collections::BTreeSet::new();
    let all = wait_until(Duration::from_secs(300), || {
        if Sandbox::maildir_new(&home).len() < acked.len() {
            return false;
        }
        seen = load_delivered(&[&home]);
        seen.is_superset(&acked)
    });
    eprintln!("delivered after {:?}", started.elapsed());
    let missing: Vec<&usize> = acked.iter().filter(|i| !seen.contains(i)).take(20).collect();
    assert!(
        all,
        "{} acknowledged, {} delivered, missing e.g. {missing:?}; {kills} kills; log tail:\n{}",
        acked.len(),
        seen.len(),
        run.log_lines().iter().rev().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The service's journal file and its size, if there is one.
fn journal_len(sb: &Sandbox) -> Option<u64> {
    fs::metadata(sb.queue().join("journal")).ok().map(|m| m.len())
}

/// A record of the queue journal, as the service writes it (doc/INTERNALS.md, "The queue
/// journal"): for a journal a test makes by hand.
fn journal_record(seq: u64, covered: u64, id: u64, mess: &[u8], env: &[u8]) -> Vec<u8> {
    let mut out = b"qjournl1".to_vec();
    for n in [seq, covered, id] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(mess.len() as u32).to_le_bytes());
    out.extend_from_slice(&(env.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(mess);
    out.extend_from_slice(env);
    let crc = crc32fast::hash(&out);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Killed once a message was answered through the journal — before its round, after the
/// round's sync, after its link into `todo/` — the next worker queues it again from the
/// journal before it serves: at least once (twice when the link was there), whole, never
/// lost; what the dead worker left is debris.
#[test]
fn a_killed_service_queues_again_what_its_journal_answered() {
    require_test_hooks();
    for step in ["journal", "fsync", "todo"] {
        let sb = Sandbox::new();
        let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", step)], None);
        let stream = UnixStream::connect(&svc.sock).unwrap();
        greeting(&stream);
        let mut w = wire::FrameWriter::new(&stream);
        w.write_all(MSG).unwrap();
        w.finish().unwrap();
        (&stream).write_all(ENV).unwrap();
        assert_eq!(answer(&stream), Some(0), "{step}: answered once in the journal");
        let dead = svc.kill_paused_worker(step);
        drop(svc);
        // its socket and its lock on the journal go with its last descriptor
        let gone = || !matches!(proc_state(dead), Some(s) if s != 'Z');
        assert!(wait_until(LONG, gone), "{step}: the killed worker lingers");
        let before = sb.todo().len();
        assert_eq!(before, usize::from(step == "todo"), "{step}: in todo/ before the restart");
        let svc = Svc::start(&sb);
        let todo = queued(&sb, before + 1);
        assert_eq!(todo.len(), before + 1, "{step}: queued again, once");
        for m in &todo {
            assert!(
                m.text().ends_with("Subject: test\n\nhello\n"),
                "{step}: whole: {:?}",
                m.text()
            );
            assert_eq!(m.recipients(), ["b@example.org", "c@example.net"], "{step}");
        }
        assert!(svc.log_text().contains(" queued again as message "), "{}", svc.log_text());
        // the next message is served as usual, and nothing is queued again twice
        assert_eq!(svc.send(MSG, ENV).1, 0);
        queued(&sb, before + 2);
        svc.stop();
        let svc = Svc::start(&sb);
        assert_eq!(svc.send(MSG, ENV).1, 0);
        let todo = queued(&sb, before + 3);
        assert_eq!(todo.len(), before + 3, "{step}: nothing queued again after the marks");
    }
}

/// A service stopped after its rounds leaves nothing to queue again; a failed round after
/// the journal's answer ends the worker, and the next one queues the message from the
/// journal (the one-shot syncs, which the hook does not fail).
#[test]
fn a_round_that_fails_after_the_answer_is_made_good_from_the_journal() {
    require_test_hooks();
    let sb = Sandbox::new();
    let svc = Svc::start(&sb);
    for _ in 0..3 {
        assert_eq!(svc.send(MSG, ENV).1, 0);
    }
    queued(&sb, 3);
    svc.stop();
    let svc = Svc::start(&sb);
    assert!(!svc.log_text().contains("queued again"), "{}", svc.log_text());
    svc.stop();
    assert_eq!(sb.todo().len(), 3);

    let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", "fail:syncfs")], None);
    assert_eq!(svc.send(MSG, ENV).1, 0, "answered from the journal");
    assert!(
        wait_until(LONG, || svc.log_text().contains("this worker ends, the next queues it again")),
        "{}",
        svc.log_text()
    );
    // gone, so that the next connection is the next worker's
    assert!(wait_until(LONG, || svc.worker().is_none()), "{}", svc.log_text());
    // the next connection's worker queues it again before it serves (its own round fails
    // again: the hook; a client of that round is told 53)
    let stream = UnixStream::connect(&svc.sock).unwrap();
    greeting(&stream);
    drop(stream);
    let todo = queued(&sb, 4);
    assert_eq!(todo.len(), 4);
    assert!(svc.log_text().contains(" queued again as message "), "{}", svc.log_text());
}

/// A bug (a panic) after a message was answered through the journal ends the worker, and the
/// next one queues the message from the journal before it serves.
#[test]
fn a_bug_after_the_answer_is_made_good_from_the_journal() {
    require_test_hooks();
    let sb = Sandbox::new();
    let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", "panic:journal")], None);
    assert_eq!(svc.send(MSG, ENV).1, 0, "answered from the journal");
    let log = || svc.log_text();
    assert!(wait_until(LONG, || log().contains("a bug after a journal's answer")), "{}", log());
    assert!(wait_until(LONG, || svc.worker().is_none()), "{}", log());
    let stream = UnixStream::connect(&svc.sock).unwrap();
    greeting(&stream);
    drop(stream);
    let todo = queued(&sb, 1);
    assert!(todo[0].text().ends_with("Subject: test\n\nhello\n"), "{}", todo[0].text());
    assert!(log().contains(" queued again as message "), "{}", log());
}

/// A write of the journal that fails (the test hook's disk error) is a temporary failure,
/// never a 250: the message is answered 53, nothing is left or queued again, and the worker
/// ends (the kernel reports a write error once); a message too large for the journal still
/// goes by its round.
#[test]
fn a_failed_journal_write_is_temporary_and_ends_the_worker() {
    require_test_hooks();
    let sb = Sandbox::new();
    let svc = Svc::start_with(&sb, &[("QMAILQUEUE_TEST_PAUSE", "fail:journal")], None);
    assert_eq!(svc.send(MSG, ENV).1, 53);
    assert!(!qmail::exit::queue_code(53, b"").unwrap_err().is_perm());
    let log = || svc.log_text();
    assert!(wait_until(LONG, || log().contains("unable to write the journal")), "{}", log());
    assert!(wait_until(LONG, || svc.worker().is_none()), "{}", log());
    assert_clean(&sb, 0, "after a failed journal write");
    let big = format!("Subject: big\n\n{}\n", "y".repeat(40_000));
    assert_eq!(svc.send(big.as_bytes(), ENV).1, 0);
    assert_clean(&sb, 1, "a large message by its round");
    assert!(!log().contains("queued again"), "{}", log());
}

/// The journal is made at the size `control/queuejournal` asks (64 KiB at least), made again
/// when that changes, and removed for 0; with none a message is in `todo/` when answered.
/// A message of over a quarter of it goes by its round.
#[test]
fn the_journal_follows_control_queuejournal() {
    let sb = Sandbox::new();
    let svc = Svc::start(&sb);
    assert_eq!(journal_len(&sb), Some(64 * 1024));
    let big = format!("Subject: big\n\n{}\n", "y".repeat(40_000));
    assert_eq!(svc.send(big.as_bytes(), ENV).1, 0);
    assert_eq!(sb.todo().len(), 1, "a large message is in todo/ when answered");
    svc.stop();
    sb.control("queuejournal", "100\n");
    let svc = Svc::start(&sb);
    assert_eq!(journal_len(&sb), Some(100 * 1024));
    svc.stop();
    sb.control("queuejournal", "1\n");
    let svc = Svc::start(&sb);
    assert_eq!(journal_len(&sb), Some(64 * 1024), "the least");
    svc.stop();
    sb.control("queuejournal", "0\n");
    let svc = Svc::start(&sb);
    assert_eq!(journal_len(&sb), None, "removed");
    assert_eq!(svc.send(MSG, ENV).1, 0);
    assert_eq!(sb.todo().len(), 2, "without a journal a message is in todo/ when answered");
    assert!(!svc.log_text().contains("queued again"), "{}", svc.log_text());
}

/// A journal of garbage with intact records in it (hostile lengths, bad checksums, a record
/// cut short, old covered ones): only the intact records beyond the highest covered number
/// are queued again, marks are not messages, and the worker then serves.
#[test]
fn a_journal_of_garbage_queues_only_intact_uncovered_records() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let sb = Sandbox::new();
    let mut ring = vec![0u8; 64 * 1024];
    let mut x: u32 = 12345;
    for b in ring.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let env = b"u0\0p1\0Fa@example.org\0Tb@example.org\0";
    let mess = |s: &str| format!("Received: (qmail 1 invoked by uid 0); x\nSubject: {s}\n\nz\n");
    let mut put = |at: usize, r: Vec<u8>| ring[at..at + r.len()].copy_from_slice(&r);
    put(0, journal_record(5, 3, 77, mess("covered").as_bytes(), env));
    put(4096, journal_record(6, 5, 78, mess("wanted").as_bytes(), env));
    put(8192, journal_record(7, 5, 0, b"", b""));
    let mut torn = journal_record(8, 5, 79, mess("torn").as_bytes(), env);
    torn[60] ^= 0x40;
    put(12288, torn);
    let mut long = journal_record(9, 5, 80, mess("long").as_bytes(), env);
    long[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    put(16384, long);
    let cut = journal_record(10, 5, 81, mess("cut").as_bytes(), env);
    let at = ring.len() - cut.len() / 2;
    ring[at..].copy_from_slice(&cut[..cut.len() - cut.len() / 2]);
    let path = sb.queue().join("journal");
    fs::write(&path, &ring).unwrap();
    let owner = fs::metadata(sb.queue()).unwrap();
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let svc = Svc::start(&sb);
    let todo = queued(&sb, 1);
    assert_eq!(todo.len(), 1, "{}", svc.log_text());
    assert!(todo[0].text().contains("Subject: wanted\n"), "{}", todo[0].text());
    assert_eq!(todo[0].records[..2], ["u0", "p1"], "the envelope as it was");
    assert!(svc.log_text().contains("record 6 (message 78) queued again"), "{}", svc.log_text());
    assert_eq!(svc.send(MSG, ENV).1, 0);
    queued(&sb, 2);
}
