//! The whole delivery pipeline: qmailctl run (qmail-start, qmail-send, qmail-todo,
//! qmail-clean, qmail-lspawn, qmail-local) with messages queued by qmail-inject: Maildir,
//! mbox, forward and program deliveries, bounces, retries, lifetime, signals and crashes.

use crate::harness::*;
use nix::sys::signal::Signal;
use std::fs;
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn inject(sb: &Sandbox, args: &[&str], message: &str) {
    sb.inject(args, message);
}

fn wait_files(dir: &Path, n: usize) -> bool {
    wait_until(LONG, || Sandbox::maildir_new(dir).len() >= n)
}

#[test]
fn maildir_delivery_end_to_end() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("alice");
    sb.assign(&[("alice", uid, gid, &home)]);
    let run = sb.start();
    inject(&sb, &["-f", "sender@example.net", "alice@example.org"], "Subject: hi\n\nhello alice\n");
    assert!(wait_files(&home, 1), "no delivery; log:\n{}", run.log_text());
    let files = Sandbox::maildir_new(&home);
    assert_eq!(files.len(), 1);
    let text = fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.starts_with("Return-Path: <sender@example.net>\nDelivered-To: alice@example.org\n"),
        "{text}"
    );
    assert!(text.contains("Subject: hi\n") && text.ends_with("hello alice\n"), "{text}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&files[0]).unwrap().uid(), uid, "delivered as the user's uid");
    // the file shows in new/ a moment before qmail-local removes its tmp/ link
    assert!(run.wait_log(LONG, |l| l.starts_with("end msg ")), "{}", run.log_text());
    assert!(fs::read_dir(home.join("Maildir/tmp")).unwrap().next().is_none(), "tmp/ is empty");
    let status = run.stop();
    assert!(status.success(), "qmailctl run: {status}");
    assert_eq!(sb.check_queue(), 0);
}

#[test]
fn mbox_forward_and_program_deliveries() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("bob");
    let (cuid, cgid, chome) = sb.user_home("carol");
    sb.assign(&[("bob", uid, gid, &home), ("carol", cuid, cgid, &chome)]);
    let out = home.join("program.out");
    fs::write(
        home.join(".qmail"),
        format!("./mbox\n&carol@example.org\n|echo \"$SENDER $RECIPIENT\" > {}\n", out.display()),
    )
    .unwrap();
    std::os::unix::fs::chown(home.join(".qmail"), Some(uid), Some(gid)).unwrap();
    let run = sb.start();
    inject(
        &sb,
        &["-f", "() { :;}; touch /tmp/qmail-shellshock", "bob@example.org"],
        "Subject: multi\n\nbody\n",
    );
    assert!(wait_files(&chome, 1), "forward not delivered; log:\n{}", run.log_text());
    assert!(
        wait_until(LONG, || out.exists() && fs::read_to_string(&out).unwrap().contains("bob@")),
        "{}",
        run.log_text()
    );
    let mbox = fs::read_to_string(home.join("mbox")).unwrap();
    assert!(mbox.starts_with("From "), "{mbox}");
    assert!(mbox.contains("Delivered-To: bob@example.org\n"), "{mbox}");
    let forwarded = fs::read_to_string(&Sandbox::maildir_new(&chome)[0]).unwrap();
    assert!(forwarded.contains("Delivered-To: carol@example.org\n"), "{forwarded}");
    assert!(forwarded.contains("Delivered-To: bob@example.org\n"), "{forwarded}");
    let said = fs::read_to_string(&out).unwrap();
    // qmail-inject qualifies the sender with defaulthost; the value arrives intact
    assert_eq!(said, "() { :;}; touch /tmp/qmail-shellshock@mx.example.org bob@example.org\n");
    assert!(!Path::new("/tmp/qmail-shellshock").exists(), "the sender reached a shell");
}

#[test]
fn unknown_user_bounces_and_double_bounce_goes_to_postmaster() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("dave");
    sb.assign(&[("dave", uid, gid, &home)]);
    let run = sb.start();
    inject(&sb, &["-f", "dave@example.org", "nosuchuser@example.org"], "Subject: lost\n\nbody\n");
    assert!(wait_files(&home, 1), "no bounce; log:\n{}", run.log_text());
    let bounce = fs::read_to_string(&Sandbox::maildir_new(&home)[0]).unwrap();
    assert!(bounce.contains("Return-Path: <>\n"), "{bounce}");
    assert!(bounce.contains("Subject: failure notice\n"), "{bounce}");
    assert!(bounce.contains("Hi. This is the qmail-send program at "), "{bounce}");
    assert!(bounce.contains("<nosuchuser@example.org>:\n"), "{bounce}");
    assert!(bounce.contains("#5.1.1"), "{bounce}");
    assert!(bounce.contains("--- Below this line is a copy of the message.\n"), "{bounce}");
    assert!(bounce.contains("Subject: lost\n"), "{bounce}");

    // a null-sender message that fails: a double bounce to postmaster, in the alias Maildir
    inject(&sb, &["-f", "", "nosuchuser2@example.org"], "Subject: null\n\nbody\n");
    let alias = sb.home.join("alias");
    assert!(wait_files(&alias, 1), "no double bounce; log:\n{}", run.log_text());
    let db = fs::read_to_string(&Sandbox::maildir_new(&alias)[0]).unwrap();
    assert!(db.contains("Return-Path: <#@[]>\n"), "{db}");
    assert!(db.contains("Delivered-To: "), "{db}");
    assert!(db.contains("<nosuchuser2@example.org>:\n"), "{db}");
    assert!(run.wait_log(LONG, |l| l.starts_with("end msg ")), "{}", run.log_text());
    drop(run);
}

#[test]
fn temporary_failure_retries_and_lifetime_expires() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("erin");
    let (fuid, fgid, fhome) = sb.user_home("frank");
    sb.assign(&[("erin", uid, gid, &home), ("frank", fuid, fgid, &fhome)]);
    // a broken Maildir: tmp is a file
    let tmp = home.join("Maildir/tmp");
    fs::remove_dir(&tmp).unwrap();
    fs::write(&tmp, "").unwrap();
    let run = sb.start();
    inject(&sb, &["-f", "frank@example.org", "erin@example.org"], "Subject: retry\n\nbody\n");
    assert!(run.wait_log(LONG, |l| l.contains(": deferral: ")), "{}", run.log_text());
    assert!(Sandbox::maildir_new(&home).is_empty());
    // repaired, and retried now (ALRM)
    fs::remove_file(&tmp).unwrap();
    fs::create_dir(&tmp).unwrap();
    std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).unwrap();
    let out = sb.run("qmailctl", &["doqueue", "--home", sb.home.to_str().unwrap()], b"");
    assert_ok(&out, "qmailctl doqueue");
    assert!(wait_files(&home, 1), "not delivered after ALRM; log:\n{}", run.log_text());

    // queuelifetime: a deferral after expiry becomes a bounce
    sb.control("queuelifetime", "1\n");
    drop(run);
    fs::remove_dir(&tmp).unwrap();
    fs::write(&tmp, "").unwrap();
    let run = sb.start();
    inject(&sb, &["-f", "frank@example.org", "erin@example.org"], "Subject: expire\n\nbody\n");
    assert!(run.wait_log(LONG, |l| l.contains(": deferral: ")), "{}", run.log_text());
    // wait until the message is older than its 1-second lifetime (by its info file's mtime,
    // which is how qmail-send dates it)
    let expired = || {
        let ids = sb.files("info");
        let Some(id) = ids.first().and_then(|n| n.parse::<u64>().ok()) else { return false };
        let info = sb.queue().join(qmail::queue::split_name("info", id));
        use std::os::unix::fs::MetadataExt;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        fs::metadata(info).is_ok_and(|m| m.mtime() + 1 < now.as_secs() as i64)
    };
    assert!(wait_until(LONG, expired), "{}", run.log_text());
    run.signal(Signal::SIGALRM, &sb.home);
    assert!(wait_files(&fhome, 1), "no bounce after expiry; log:\n{}", run.log_text());
    let b = fs::read_to_string(&Sandbox::maildir_new(&fhome)[0]).unwrap();
    assert!(b.contains("in the queue too long"), "{b}");
}

#[test]
fn hup_rereads_routing_and_term_exits_cleanly() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("gina");
    sb.assign(&[("gina", uid, gid, &home)]);
    let run = sb.start();
    sb.control("virtualdomains", "virt.example:gina\n");
    let out = sb.run("qmailctl", &["reload", "--home", sb.home.to_str().unwrap()], b"");
    assert_ok(&out, "qmailctl reload");
    assert!(
        run.wait_log(LONG, |l| l.contains("qmail-todo reread control files")),
        "{}",
        run.log_text()
    );
    inject(&sb, &["-f", "gina@example.org", "x@virt.example"], "Subject: v\n\nbody\n");
    assert!(
        run.wait_log(LONG, |l| l.contains("to local gina-x@virt.example")),
        "virtualdomains not applied after HUP:\n{}",
        run.log_text()
    );
    let status = run.stop();
    assert!(status.success());
}

#[test]
fn root_deliveries_switch_users_and_refuse_uid_0() {
    if !nix::unistd::geteuid().is_root() {
        // CI runs as root; as a normal user deliveries run as that user (covered elsewhere)
        return;
    }
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("hal");
    let root_home = sb.tmp.path().join("homes/roothome");
    fs::create_dir_all(root_home.join("Maildir/new")).unwrap();
    sb.assign(&[("hal", uid, gid, &home), ("toor", 0, 0, &root_home)]);
    let run = sb.start();
    inject(
        &sb,
        &["-f", "hal@example.org", "toor@example.org", "hal@example.org"],
        "Subject: r\n\nbody\n",
    );
    assert!(wait_files(&home, 1), "{}", run.log_text());
    assert!(
        run.wait_log(LONG, |l| l.contains(": deferral: ") && l.contains("root")),
        "{}",
        run.log_text()
    );
    assert!(fs::read_dir(root_home.join("Maildir/new")).unwrap().next().is_none());
}

#[test]
fn sigkill_qmail_send_mid_batch_loses_nothing() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("ivan");
    sb.assign(&[("ivan", uid, gid, &home)]);
    let run = sb.start();
    let n = 500;
    for i in 0..n {
        inject(
            &sb,
            &["-f", "ivan@example.org", "ivan@example.org"],
            &format!("Subject: batch {i}\n\n{i}\n"),
        );
        if i == n / 2 {
            run.signal(Signal::SIGKILL, &sb.home);
        }
    }
    drop(run);
    let run = sb.start();
    // duplicates are allowed (at-least-once); wait for every distinct message
    let distinct = || {
        let mut seen = std::collections::HashSet::new();
        for f in Sandbox::maildir_new(&home) {
            let text = fs::read_to_string(f).unwrap_or_default();
            if let Some(s) = text.lines().find(|l| l.starts_with("Subject: batch ")) {
                seen.insert(s.to_string());
            }
        }
        seen.len()
    };
    assert!(
        wait_until(Duration::from_secs(120), || distinct() >= n),
        "only {} of {n} delivered; log tail:\n{}",
        distinct(),
        run.log_lines().iter().rev().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(distinct(), n, "every message delivered at least once");
    // what a crash left deferred is retried now rather than at its scheduled time
    let empty = wait_until(LONG, || {
        run.signal(Signal::SIGALRM, &sb.home);
        sb.check_queue() == 0
    });
    let listing = sb.run("qmailctl", &["queue", "--home", sb.home.to_str().unwrap()], b"");
    assert!(
        empty,
        "queue not empty:\n{}\nlog tail:\n{}",
        String::from_utf8_lossy(&listing.stdout),
        run.log_lines().iter().rev().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    drop(run);
}

#[test]
fn sigkill_qmail_local_mid_batch_loses_nothing() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("judy");
    sb.assign(&[("judy", uid, gid, &home)]);
    let run = sb.start();
    let n = 500;
    let mut killed = 0;
    for i in 0..n {
        inject(
            &sb,
            &["-f", "judy@example.org", "judy@example.org"],
            &format!("Subject: batch {i}\n\n{i}\n"),
        );
        if i % 10 == 0 {
            // qmail-local as a process, or the delivery worker (`qmail-local --worker`)
            for pid in descendants_of(run.pid(), &["qmail-local"]) {
                if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).is_ok()
                {
                    killed += 1;
                }
            }
        }
    }
    let complete = |text: &str| {
        let i = text.lines().find_map(|l| l.strip_prefix("Subject: batch "))?.to_string();
        text.ends_with(&format!("\n\n{i}\n")).then_some(i)
    };
    let distinct = || {
        let mut seen = std::collections::HashSet::new();
        for f in Sandbox::maildir_new(&home) {
            let text = fs::read_to_string(&f).unwrap_or_default();
            // never a partial file in new/
            assert!(
                complete(&text).is_some(),
                "partial message in new/: {}: {text:?}",
                f.display()
            );
            seen.insert(complete(&text));
        }
        seen.len()
    };
    // killed deliveries were deferred: retry them now, until everything is there
    assert!(
        wait_until(Duration::from_secs(120), || {
            run.signal(Signal::SIGALRM, &sb.home);
            distinct() >= n
        }),
        "only {} of {n} delivered after {killed} kills; log tail:\n{}",
        distinct(),
        run.log_lines().iter().rev().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(wait_until(LONG, || sb.check_queue() == 0), "queue not empty");
    assert!(
        killed > 0 && run.count_log(|l| l.contains(": deferral: ")) > 0,
        "a killed qmail-local is a deferral"
    );
}

/// A qmail-queue of `sb` stopped (SIGSTOP) at `step`, its message written; the guard and
/// the envelope pipe that lets it finish.
fn paused_injection(sb: &Sandbox, step: &str, message: &[u8]) -> (Guard, fs::File) {
    require_test_hooks();
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let (env_r, env_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = sb.cmd("qmail-queue");
    cmd.env("QMAILQUEUE_TEST_PAUSE", step)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::from(env_r))
        .stderr(std::process::Stdio::null());
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut input = child.stdin.take().unwrap();
    input.write_all(message).unwrap();
    drop(input);
    let pid = child.id();
    let stopped = || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| st.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('T')))
            .unwrap_or(false)
    };
    assert!(wait_until(LONG, stopped), "qmail-queue never reached {step}");
    (Guard(child), fs::File::from(env_w))
}

/// What a crash leaves is never shown as queued mail: at qmail-send's start, a message file
/// with neither todo nor info that no live qmail-queue holds is removed at once, however
/// recent (a finished message whose info was removed just before a SIGKILL, a dead
/// injection's message and envelope); a live injection's files are kept, and it completes.
#[test]
fn leftovers_are_removed_at_start_and_live_injections_kept() {
    use std::io::Write;
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("lou");
    sb.assign(&[("lou", uid, gid, &home)]);
    let (live, mut envelope) = paused_injection(&sb, "body", b"Subject: live\n\nstill here\n");
    let live_files = sb.files("mess");
    assert_eq!(live_files.len(), 1, "the live injection's message file");
    // recent leftovers: a finished message (no intd), a dead injection (with its intd)
    let finished = sb.queue().join(qmail::queue::split_name("mess", 24));
    let dead = sb.queue().join(qmail::queue::split_name("mess", 25));
    for p in [&finished, &dead] {
        fs::write(p, "Received: (qmail 1 invoked by uid 0); ...\n\nhalf a mess").unwrap();
    }
    fs::write(sb.queue().join("intd/25"), "u0\0p1\0").unwrap();
    let listing = || {
        let out = sb.run("qmailctl", &["queue", "--home", sb.home.to_str().unwrap()], b"");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = sb.start();
    // a message queued after the start is delivered after the start-up sweep has finished
    inject(&sb, &["-f", "lou@example.org", "lou@example.org"], "Subject: after\n\nbody\n");
    assert!(wait_files(&home, 1), "{}", run.log_text());
    assert!(run.wait_log(LONG, |l| l.starts_with("end msg ")), "{}", run.log_text());
    assert!(!finished.exists() && !dead.exists(), "leftovers kept; log:\n{}", run.log_text());
    assert!(!sb.queue().join("intd/25").exists());
    assert!(run.count_log(|l| l.contains("removing leftover msg 24")) == 1, "{}", run.log_text());
    assert!(!listing().contains("#24") && !listing().contains("#25"), "{}", listing());
    assert_eq!(sb.files("mess"), live_files, "the live injection's file is kept");
    // the live injection goes on and is delivered
    let mut guard = live;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard.0.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    envelope.write_all(b"Flou@example.org\0Tlou@example.org\0\0").unwrap();
    drop(envelope);
    assert_eq!(guard.0.wait().unwrap().code(), Some(0), "the paused qmail-queue completes");
    assert!(wait_files(&home, 2), "{}", run.log_text());
    assert!(wait_until(LONG, || sb.check_queue() == 0), "{}", listing());
}

/// Kill every process of `sb` running `program` (by its path under the root's bin/).
fn kill_program(sb: &Sandbox, program: &str) -> usize {
    let path = sb.home.join("bin").join(program).to_string_lossy().into_owned();
    let mut killed = 0;
    for pid in pids_of(&[&path]) {
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).split('\0').next() != Some(path.as_str()) {
            continue;
        }
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// `qmailctl doqueue` (ALRM to qmail-send once it is ready for it: it may be restarting), at
/// most every 200 ms.
fn nudge(sb: &Sandbox, last: &mut std::time::Instant) {
    if last.elapsed() < Duration::from_millis(200) {
        return;
    }
    *last = std::time::Instant::now();
    let _ = sb.run("qmailctl", &["doqueue", "--home", sb.home.to_str().unwrap()], b"");
}

/// The distinct `Subject: batch N` messages in a Maildir.
fn distinct_batch(home: &Path) -> usize {
    let mut seen = std::collections::HashSet::new();
    for f in Sandbox::maildir_new(home) {
        let text = fs::read_to_string(f).unwrap_or_default();
        if let Some(s) = text.lines().find(|l| l.starts_with("Subject: batch ")) {
            seen.insert(s.to_string());
        }
    }
    seen.len()
}

/// A queue made for another split (here a subdirectory beyond this build's, as a build with a
/// larger `QMAIL_SPLIT` makes) would hide its messages there: qmail-send refuses it with an
/// alert naming what it found, and never gets as far as scheduling.
#[test]
fn a_queue_made_for_another_split_is_refused() {
    let sb = Sandbox::for_delivery();
    let extra = format!("info/{}", qmail::auto::SPLIT);
    fs::create_dir(sb.queue().join(&extra)).unwrap();
    let run = sb.launch(&[&["--listen", "off"][..], OTHER_LISTENERS_OFF].concat());
    let said = format!("alert: qmail-send: {extra} exists: the queue was made for another split");
    assert!(run.wait_log(LONG, |l| l.starts_with(&said)), "want {said}; log:\n{}", run.log_text());
    assert_eq!(run.count_log(|l| l.starts_with("status: local")), 0, "{}", run.log_text());
}

/// Under load (messages for a local user and for a second root over SMTP), SIGKILL every
/// `partner` process of the delivery set: qmail-send notices, exits, and `qmailctl run`
/// restarts the whole set; every message is delivered, none stuck, the queue ends empty.
fn losing_a_partner_loses_nothing(partner: &str) {
    let rx = Sandbox::for_delivery();
    rx.control("locals", "mx.example.org\nexample.org\ndest.test\n");
    rx.control("rcpthosts", "dest.test\n");
    let (ruid, rgid, rhome) = rx.user_home("rae");
    rx.assign(&[("rae", ruid, rgid, &rhome)]);
    let (rx_run, port) = rx.start_smtp();
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("kai");
    sb.assign(&[("kai", uid, gid, &home)]);
    sb.control("smtproutes", &format!("dest.test:[127.0.0.1]:{port}\n"));
    let run = sb.start();
    let pid_before = fs::read_to_string(sb.home.join("run/qmail-send.pid")).unwrap();
    let n = 200;
    let mut killed = 0;
    for i in 0..n {
        inject(
            &sb,
            &["-f", "kai@example.org", "kai@example.org", "rae@dest.test"],
            &format!("Subject: batch {i}\n\n{i}\n"),
        );
        if i == n / 2 {
            killed = kill_program(&sb, partner);
        }
    }
    assert!(killed > 0, "no {partner} found to kill");
    let mut last = std::time::Instant::now();
    let all = wait_until(Duration::from_secs(120), || {
        nudge(&sb, &mut last);
        distinct_batch(&home) >= n && distinct_batch(&rhome) >= n
    });
    let tail = |r: &Running| r.log_lines().iter().rev().take(30).cloned().collect::<Vec<_>>();
    assert!(
        all,
        "after killing {partner}: {} local and {} remote of {n}; log tail:\n{}\nreceiver:\n{}",
        distinct_batch(&home),
        distinct_batch(&rhome),
        tail(&run).join("\n"),
        tail(&rx_run).join("\n")
    );
    let empty = wait_until(LONG, || {
        nudge(&sb, &mut last);
        sb.check_queue() == 0 && rx.check_queue() == 0
    });
    assert!(empty, "queue not empty after killing {partner}; log tail:\n{}", tail(&run).join("\n"));
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0, "{}", run.log_text());
    // the set was restarted: a new qmail-send
    let pid_after = fs::read_to_string(sb.home.join("run/qmail-send.pid")).unwrap();
    assert_ne!(pid_before, pid_after, "qmail-send was not restarted after losing {partner}");
    assert!(
        run.wait_log(LONG, |l| l.starts_with("alert: qmail-send: ") || partner == "qmail-send"),
        "qmail-send said why it exited; log:\n{}",
        run.log_text()
    );
}

#[test]
fn losing_qmail_clean_restarts_the_set() {
    losing_a_partner_loses_nothing("qmail-clean");
}

#[test]
fn losing_qmail_todo_restarts_the_set() {
    losing_a_partner_loses_nothing("qmail-todo");
}

#[test]
fn losing_qmail_lspawn_restarts_the_set() {
    losing_a_partner_loses_nothing("qmail-lspawn");
}

#[test]
fn losing_qmail_rspawn_restarts_the_set() {
    losing_a_partner_loses_nothing("qmail-rspawn");
}

#[test]
fn losing_qmail_send_restarts_the_set() {
    losing_a_partner_loses_nothing("qmail-send");
}

/// Root runs qmail-inject in an installation given to nobody: the queued files are the
/// queue owner's, and the message is delivered (not deferred for a week as "wrong owner").
#[test]
fn root_injecting_into_an_owned_root_is_delivered() {
    if !is_root() {
        return; // the case only exists for root; CI runs as root
    }
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("ray");
    sb.assign(&[("ray", uid, gid, &home)]);
    let out = sb.run(
        "qmail-inject",
        &["-f", "root@example.org", "ray@example.org"],
        b"Subject: r\n\nx\n",
    );
    assert_ok(&out, "qmail-inject as root");
    use std::os::unix::fs::MetadataExt;
    for q in sb.todo() {
        let meta = fs::metadata(sb.queue().join(qmail::queue::split_name("mess", q.id))).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "the message file is the owner's");
        assert!(q.text().contains("invoked by uid 0"), "the Received line names the caller");
    }
    let run = sb.start();
    assert!(wait_files(&home, 1), "not delivered; log:\n{}", run.log_text());
    assert_eq!(run.count_log(|l| l.contains("wrong owner")), 0, "{}", run.log_text());
}
