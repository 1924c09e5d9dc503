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
    std::thread::sleep(Duration::from_millis(2100));
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

/// The pids of the processes whose command line contains every one of `needles`.
fn pids_of(needles: &[&str]) -> Vec<i32> {
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

#[test]
fn sigkill_qmail_local_mid_batch_loses_nothing() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("judy");
    sb.assign(&[("judy", uid, gid, &home)]);
    let run = sb.start();
    let n = 500;
    let home_s = home.to_string_lossy().to_string();
    let mut killed = 0;
    for i in 0..n {
        inject(
            &sb,
            &["-f", "judy@example.org", "judy@example.org"],
            &format!("Subject: batch {i}\n\n{i}\n"),
        );
        if i % 10 == 0 {
            for pid in pids_of(&["qmail-local", &home_s]) {
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

#[test]
fn debris_of_crashed_injections_is_removed_after_36_hours() {
    let sb = Sandbox::for_delivery();
    // a message file and envelope left by a crashed qmail-queue: one old, one recent
    let old = sb.queue().join("mess/1/24");
    let recent = sb.queue().join("mess/2/25");
    for p in [&old, &recent] {
        fs::write(p, "Received: (qmail 1 invoked by uid 0); ...\n\nhalf a mess").unwrap();
    }
    fs::write(sb.queue().join("intd/24"), "u0\0p1\0").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(37 * 3600);
    let f = fs::File::options().write(true).open(&old).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(long_ago).set_modified(long_ago)).unwrap();
    drop(f);
    let run = sb.start();
    assert!(wait_until(LONG, || !old.exists()), "old debris kept; log:\n{}", run.log_text());
    assert!(!sb.queue().join("intd/24").exists());
    assert!(recent.exists(), "recent files are never touched (a live qmail-queue)");
}
