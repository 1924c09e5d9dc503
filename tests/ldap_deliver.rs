//! Delivery with LDAP end to end: qmailctl run on a sandbox whose `control/ldap*` point at the
//! shared slapd (each test in its own `ou`), messages queued by qmail-inject, qmail-lspawn
//! running qmail-getpw's directory lookup and qmail-local with the entry's environment.
//! Users, aliases, forward-only accounts, delivery modes, auto-replies, quota, `mailSizeMax`
//! and `accountStatus`; `control/dirmaker` making a missing home; faults (slapd stopped
//! mid-run, slapd slower than `ldaptimeout`, a wrong bind password, a base DN that does not
//! exist) keep the mail queued; as root, the entry's uid/gid is used and uid 0 or
//! out-of-range ids are refused.

use crate::harness::slapd::{self, Slapd, ROOTPW};
use crate::harness::*;
use nix::sys::signal::Signal;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A sandbox whose directory is one `ou` of a slapd (also used by the verdict tests).
pub struct Dir {
    pub sb: Sandbox,
    pub ou: String,
}

impl Dir {
    /// A sandbox on the shared slapd, in `ou=ld-<name>`.
    pub fn new(name: &str) -> Dir {
        Dir::on(slapd::shared(), name)
    }

    pub fn on(server: &Slapd, name: &str) -> Dir {
        let ou = server.add_ou(&format!("ld-{name}"));
        let sb = Sandbox::for_delivery();
        server.point(&sb, &ou);
        Dir { sb, ou }
    }

    /// The LDIF of `uid=<name>` with `mail: <name>@example.org` and `attrs`.
    pub fn entry(&self, name: &str, attrs: &str) -> String {
        format!(
            "dn: uid={name},{}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\ncn: {name}\n\
             sn: {name}\nuid: {name}\nmail: {name}@example.org\n{attrs}\n",
            self.ou
        )
    }

    /// A user with a home of its own (a Maildir in it) and `attrs`; returns the home.
    pub fn user(&self, server: &Slapd, name: &str, attrs: &str) -> PathBuf {
        let (uid, gid, home) = self.sb.user_home(name);
        server.add(&self.entry(
            name,
            &format!(
                "qmailUID: {uid}\nqmailGID: {gid}\nhomeDirectory: {}\n{attrs}",
                home.display()
            ),
        ));
        home
    }

    pub fn inject(&self, from: &str, to: &str, message: &str) {
        self.sb.inject(&["-f", from, to], message);
    }
}

fn wait_files(dir: &Path, n: usize) -> bool {
    wait_until(LONG, || Sandbox::maildir_new(dir).len() >= n)
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned()
}

/// Every message queued so far has been dealt with: as many `end msg` lines as `new msg`
/// lines, and at least `n` of them.
fn settled(run: &Running, n: usize) -> bool {
    wait_until(LONG, || {
        let new = run.count_log(|l| l.starts_with("new msg "));
        let end = run.count_log(|l| l.starts_with("end msg "));
        end >= n && new == end
    })
}

/// The bounce in `home`'s Maildir that mentions `text`.
fn bounce_with(home: &Path, text: &str) -> bool {
    wait_until(LONG, || {
        Sandbox::maildir_new(home).iter().any(|p| {
            let b = read(p);
            b.contains("Subject: failure notice\n") && b.contains(text)
        })
    })
}

#[test]
fn user_and_alternate_address_to_maildir() {
    let s = slapd::shared();
    let d = Dir::new("user");
    let home = d.user(
        s,
        "ann",
        "mailMessageStore: ./Maildir/\nmailAlternateAddress: ann.other@example.org",
    );
    let run = d.sb.start();
    d.inject("x@example.net", "ann@example.org", "Subject: one\n\nto the address\n");
    assert!(wait_files(&home, 1), "no delivery; log:\n{}", run.log_text());
    let text = read(&Sandbox::maildir_new(&home)[0]);
    assert!(text.contains("Delivered-To: ann@example.org\n"), "{text}");
    assert!(text.ends_with("to the address\n"), "{text}");
    d.inject("x@example.net", "Ann.Other@example.org", "Subject: two\n\nto the alias\n");
    assert!(wait_files(&home, 2), "no delivery to the alias; log:\n{}", run.log_text());
    assert!(
        Sandbox::maildir_new(&home).iter().any(|p| read(p).ends_with("to the alias\n")),
        "the alias landed elsewhere"
    );
    let (uid, _, _) = d.sb.user_home("ann");
    for f in Sandbox::maildir_new(&home) {
        assert_eq!(fs::metadata(&f).unwrap().uid(), uid);
    }
    assert!(settled(&run, 2), "{}", run.log_text());
    drop(run);
    assert_eq!(d.sb.check_queue(), 0);
}

#[test]
fn forward_only_nolocal_and_noforward() {
    let s = slapd::shared();
    let d = Dir::new("modes");
    let target = d.user(s, "tara", "");
    // forward-only: neither homeDirectory nor mailMessageStore
    s.add(&d.entry("fwd", "mailForwardingAddress: tara@example.org"));
    let nolocal =
        d.user(s, "nol", "deliveryMode: nolocal\nmailForwardingAddress: tara@example.org");
    let noforward =
        d.user(s, "nof", "deliveryMode: noforward\nmailForwardingAddress: tara@example.org");
    let run = d.sb.start();
    d.inject("x@example.net", "fwd@example.org", "Subject: f\n\nforward only\n");
    d.inject("x@example.net", "nol@example.org", "Subject: n\n\nno local\n");
    d.inject("x@example.net", "nof@example.org", "Subject: g\n\nno forward\n");
    assert!(wait_files(&target, 2), "forwards missing; log:\n{}", run.log_text());
    assert!(wait_files(&noforward, 1), "noforward not delivered; log:\n{}", run.log_text());
    assert!(settled(&run, 5), "{}", run.log_text());
    let got: Vec<String> = Sandbox::maildir_new(&target).iter().map(|p| read(p)).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|m| m.ends_with("forward only\n")), "{got:?}");
    assert!(got.iter().any(|m| m.ends_with("no local\n")), "{got:?}");
    assert!(Sandbox::maildir_new(&nolocal).is_empty(), "nolocal delivered locally");
    let kept = Sandbox::maildir_new(&noforward);
    assert_eq!(kept.len(), 1);
    assert!(read(&kept[0]).ends_with("no forward\n"));
}

#[test]
fn reply_once_per_sender() {
    let s = slapd::shared();
    let d = Dir::new("reply");
    let away = d.user(s, "away", "deliveryMode: reply\nmailReplyText: I am away.");
    let sender = d.user(s, "pat", "");
    let run = d.sb.start();
    d.inject("pat@example.org", "away@example.org", "Subject: first\n\nhello\n");
    assert!(wait_files(&away, 1), "not delivered; log:\n{}", run.log_text());
    assert!(wait_files(&sender, 1), "no auto-reply; log:\n{}", run.log_text());
    let reply = read(&Sandbox::maildir_new(&sender)[0]);
    assert!(reply.contains("I am away."), "{reply}");
    d.inject("pat@example.org", "away@example.org", "Subject: second\n\nhello again\n");
    assert!(wait_files(&away, 2), "not delivered; log:\n{}", run.log_text());
    assert!(settled(&run, 3), "{}", run.log_text());
    assert_eq!(Sandbox::maildir_new(&sender).len(), 1, "a second auto-reply to the same sender");
}

#[test]
fn quota_warning_then_bounce() {
    let s = slapd::shared();
    let d = Dir::new("quota");
    d.sb.control("quotawarning", "%HEADER%\nSubject: mailbox nearly full\n\nPlease clean up.\n");
    // about 10.5 kB per message: the first fills 42%, the second 84% (a warning), the
    // third would pass 100% (a bounce)
    let full = d.user(s, "full", "mailQuotaSize: 25000\nmailQuotaCount: 100");
    let sender = d.user(s, "sam", "");
    let body = "x".repeat(70);
    let message = format!("Subject: big\n\n{}", format!("{body}\n").repeat(145));
    let warnings = || {
        Sandbox::maildir_new(&full)
            .iter()
            .filter(|p| read(p).contains("Subject: mailbox nearly full"))
            .count()
    };
    let run = d.sb.start();
    d.inject("sam@example.org", "full@example.org", &message);
    assert!(wait_files(&full, 1), "not delivered; log:\n{}", run.log_text());
    assert!(settled(&run, 1), "{}", run.log_text());
    assert_eq!(warnings(), 0, "a warning at 42%");
    d.inject("sam@example.org", "full@example.org", &message);
    assert!(wait_files(&full, 3), "no second delivery and warning; log:\n{}", run.log_text());
    assert_eq!(warnings(), 1);
    d.inject("sam@example.org", "full@example.org", &message);
    assert!(
        bounce_with(&sender, "over the allowed quota"),
        "no quota bounce; log:\n{}",
        run.log_text()
    );
    assert!(settled(&run, 4), "{}", run.log_text());
    assert_eq!(Sandbox::maildir_new(&full).len(), 3, "delivered over quota");
    assert_eq!(warnings(), 1, "one warning, not two");
    let bounce = Sandbox::maildir_new(&sender).into_iter().map(|p| read(&p)).collect::<String>();
    assert!(bounce.contains("#5.2.2"), "{bounce}");
}

#[test]
fn size_limit_and_account_status() {
    let s = slapd::shared();
    let d = Dir::new("status");
    let small = d.user(s, "small", "mailSizeMax: 500");
    let off = d.user(s, "off", "accountStatus: disabled");
    let gone = d.user(s, "gone", "accountStatus: deleted");
    let quiet = d.user(s, "quiet", "accountStatus: noaccess");
    let sender = d.user(s, "sue", "");
    let run = d.sb.start();
    d.inject("sue@example.org", "small@example.org", "Subject: tiny\n\nok\n");
    assert!(wait_files(&small, 1), "small message refused; log:\n{}", run.log_text());
    let big = format!("Subject: big\n\n{}", "y".repeat(2000));
    d.inject("sue@example.org", "small@example.org", &big);
    assert!(bounce_with(&sender, "#5.2.3"), "no size bounce; log:\n{}", run.log_text());
    d.inject("sue@example.org", "off@example.org", "Subject: off\n\nbody\n");
    assert!(bounce_with(&sender, "#5.2.1"), "no disabled bounce; log:\n{}", run.log_text());
    assert!(bounce_with(&sender, "administratively disabled"));
    d.inject("sue@example.org", "gone@example.org", "Subject: gone\n\nbody\n");
    assert!(bounce_with(&sender, "#5.1.1"), "no deleted bounce; log:\n{}", run.log_text());
    d.inject("sue@example.org", "quiet@example.org", "Subject: quiet\n\nstill mail\n");
    assert!(wait_files(&quiet, 1), "noaccess not delivered; log:\n{}", run.log_text());
    assert!(settled(&run, 8), "{}", run.log_text());
    assert_eq!(Sandbox::maildir_new(&small).len(), 1, "the big message was delivered");
    assert!(Sandbox::maildir_new(&off).is_empty() && Sandbox::maildir_new(&gone).is_empty());
}

#[test]
fn slapd_stopped_mid_run_keeps_mail_queued() {
    // a private slapd: stopping the shared one would fail the other tests
    let server = Slapd::new();
    let d = Dir::on(&server, "outage");
    let home = d.user(&server, "olga", "");
    let run = d.sb.start();
    d.inject("x@example.net", "olga@example.org", "Subject: before\n\nbefore\n");
    assert!(wait_files(&home, 1), "not delivered; log:\n{}", run.log_text());
    server.stop();
    d.inject("x@example.net", "olga@example.org", "Subject: during\n\nduring\n");
    d.inject("x@example.net", "nobody-here@example.org", "Subject: unknown\n\nduring\n");
    assert!(
        wait_until(LONG, || run.count_log(|l| l.contains(": deferral: ")) >= 2),
        "no deferrals; log:\n{}",
        run.log_text()
    );
    assert!(run.count_log(|l| l.contains(": deferral: ") && l.contains("#4.4.3")) >= 2);
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0, "an outage bounced");
    assert_eq!(Sandbox::maildir_new(&home).len(), 1);
    assert!(d.sb.check_queue() >= 2, "the messages left the queue");
    server.start();
    run.signal(Signal::SIGALRM, &d.sb.home);
    assert!(wait_files(&home, 2), "not delivered after slapd came back; log:\n{}", run.log_text());
    // Maildir names need not sort in delivery order
    assert!(Sandbox::maildir_new(&home).iter().any(|p| read(p).contains("during")));
}

#[test]
fn wrong_bind_password_defers() {
    let s = slapd::shared();
    let d = Dir::new("badbind");
    let home = d.user(s, "walt", "");
    d.sb.control("ldappassword", "wrong\n");
    let run = d.sb.start();
    d.inject("x@example.net", "walt@example.org", "Subject: w\n\nwaiting\n");
    assert!(
        run.wait_log(LONG, |l| l.contains(": deferral: ") && l.contains("#4.4.3")),
        "no deferral; log:\n{}",
        run.log_text()
    );
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0, "a bind failure bounced");
    assert!(Sandbox::maildir_new(&home).is_empty());
    d.sb.control("ldappassword", &format!("{ROOTPW}\n"));
    run.signal(Signal::SIGALRM, &d.sb.home);
    assert!(wait_files(&home, 1), "not delivered after the fix; log:\n{}", run.log_text());
}

#[test]
fn slapd_slower_than_ldaptimeout_defers() {
    // a private slapd: freezing the shared one would stall the other tests
    let server = Slapd::new();
    let d = Dir::on(&server, "slow");
    d.sb.control("ldaptimeout", "1\n");
    let home = d.user(&server, "sly", "");
    let run = d.sb.start();
    // a first delivery opens the lookup's connection, so the frozen server is met by the
    // search (ldaptimeout), not by the connect/bind timeout
    d.inject("x@example.net", "sly@example.org", "Subject: before\n\nbefore\n");
    assert!(wait_files(&home, 1), "not delivered; log:\n{}", run.log_text());
    server.pause();
    d.inject("x@example.net", "sly@example.org", "Subject: slow\n\nwhile frozen\n");
    let deferred = run.wait_log(LONG, |l| l.contains(": deferral: ") && l.contains("#4.4.3"));
    server.resume();
    assert!(deferred, "no deferral; log:\n{}", run.log_text());
    assert!(
        run.count_log(|l| l.contains(": deferral: Timeout_while_performing_search")) >= 1,
        "{}",
        run.log_text()
    );
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0, "a timeout bounced");
    assert_eq!(Sandbox::maildir_new(&home).len(), 1);
    run.signal(Signal::SIGALRM, &d.sb.home);
    assert!(wait_files(&home, 2), "not delivered after resume; log:\n{}", run.log_text());
    assert!(settled(&run, 2), "{}", run.log_text());
    assert_eq!(Sandbox::maildir_new(&home).len(), 2, "delivered more than once");
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0);
}

#[test]
fn missing_base_dn_defers() {
    let s = slapd::shared();
    let d = Dir::new("nobase");
    let home = d.user(s, "nell", "");
    d.sb.control("ldapbasedn", "ou=nowhere,dc=example,dc=org\n");
    let run = d.sb.start();
    d.inject("x@example.net", "nell@example.org", "Subject: n\n\nno base\n");
    assert!(
        run.wait_log(LONG, |l| l.contains(": deferral: ") && l.contains("#4.4.3")),
        "no deferral; log:\n{}",
        run.log_text()
    );
    assert!(run.count_log(|l| l.contains(": deferral: ") && l.contains("ou=nowhere")) >= 1);
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0, "a missing base DN bounced");
    assert!(Sandbox::maildir_new(&home).is_empty());
    d.sb.control("ldapbasedn", &format!("{}\n", d.ou));
    run.signal(Signal::SIGALRM, &d.sb.home);
    assert!(wait_files(&home, 1), "not delivered after the fix; log:\n{}", run.log_text());
    assert!(settled(&run, 1), "{}", run.log_text());
    assert_eq!(Sandbox::maildir_new(&home).len(), 1);
}

#[test]
fn dirmaker_creates_a_missing_home() {
    let s = slapd::shared();
    let d = Dir::new("dirmaker");
    // the parent belongs to the entry's ids; the home itself does not exist yet
    let (uid, gid, parent) = d.sb.user_home("homes");
    let home = parent.join("nina");
    let script = d.sb.tmp.path().join("mkhome");
    fs::write(
        &script,
        "#!/bin/sh\nmkdir -m 700 -p \"$1\" && cd \"$1\" && mkdir -p \"${2}new\" \"${2}cur\" \"${2}tmp\"\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    d.sb.control("dirmaker", &format!("{}\n", script.display()));
    s.add(&d.entry(
        "nina",
        &format!("qmailUID: {uid}\nqmailGID: {gid}\nhomeDirectory: {}", home.display()),
    ));
    let run = d.sb.start();
    d.inject("x@example.net", "nina@example.org", "Subject: new\n\nfirst mail\n");
    assert!(wait_files(&home, 1), "not delivered; log:\n{}", run.log_text());
    assert!(read(&Sandbox::maildir_new(&home)[0]).ends_with("first mail\n"));
    assert_eq!(fs::metadata(&home).unwrap().uid(), uid, "home not made by the mailbox owner");
    assert!(settled(&run, 1), "{}", run.log_text());
}

#[test]
fn as_root_the_entry_ids_are_used_and_bad_ones_refused() {
    if !is_root() {
        return;
    }
    let s = slapd::shared();
    let d = Dir::new("ids");
    // a home belonging to the entry's own ids
    let (uid, gid) = (4321, 4322);
    let (_, _, home) = d.sb.user_home("ida");
    for sub in ["", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"] {
        std::os::unix::fs::chown(home.join(sub), Some(uid), Some(gid)).unwrap();
    }
    s.add(&d.entry(
        "ida",
        &format!("qmailUID: {uid}\nqmailGID: {gid}\nhomeDirectory: {}", home.display()),
    ));
    let (_, _, rhome) = d.sb.user_home("rooty");
    s.add(
        &d.entry("rooty", &format!("qmailUID: 0\nqmailGID: 0\nhomeDirectory: {}", rhome.display())),
    );
    let (_, _, lhome) = d.sb.user_home("low");
    s.add(&d.entry(
        "low",
        &format!("qmailUID: 99\nqmailGID: 4322\nhomeDirectory: {}", lhome.display()),
    ));
    let (_, _, hhome) = d.sb.user_home("high");
    s.add(&d.entry(
        "high",
        &format!("qmailUID: 70000\nqmailGID: 4322\nhomeDirectory: {}", hhome.display()),
    ));
    let run = d.sb.start();
    d.inject("x@example.net", "ida@example.org", "Subject: ids\n\nbody\n");
    assert!(wait_files(&home, 1), "not delivered; log:\n{}", run.log_text());
    let meta = fs::metadata(&Sandbox::maildir_new(&home)[0]).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "not delivered as the entry's ids");
    for to in ["rooty@example.org", "low@example.org", "high@example.org"] {
        d.inject("x@example.net", to, "Subject: refused\n\nbody\n");
    }
    assert!(
        wait_until(LONG, || run.count_log(|l| l.contains(": deferral: ")) >= 3),
        "no deferrals; log:\n{}",
        run.log_text()
    );
    assert!(run.count_log(|l| l.contains(": deferral: ") && l.contains("qmailUID")) >= 3);
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0, "a refused id bounced");
    for h in [&rhome, &lhome, &hhome] {
        assert!(Sandbox::maildir_new(h).is_empty(), "delivered to {}", h.display());
    }
}

#[test]
fn not_found_falls_back_and_other_cluster_hosts_wait() {
    let s = slapd::shared();
    let d = Dir::new("fallback");
    // not in the directory: users/assign decides (ldaplocaldelivery defaults to 1)
    let (uid, gid, local) = d.sb.user_home("cal");
    d.sb.assign(&[("cal", uid, gid, &local)]);
    let away = d.user(s, "far", "mailHost: other.example.org");
    let here = d.user(s, "near", "mailHost: MX.example.org");
    d.sb.control("ldapcluster", "1\n");
    let run = d.sb.start();
    d.inject("x@example.net", "cal@example.org", "Subject: c\n\nclassic\n");
    d.inject("x@example.net", "near@example.org", "Subject: n\n\nhere\n");
    d.inject("x@example.net", "far@example.org", "Subject: f\n\nelsewhere\n");
    assert!(wait_files(&local, 1), "no fallback delivery; log:\n{}", run.log_text());
    assert!(wait_files(&here, 1), "mailHost = me not delivered; log:\n{}", run.log_text());
    assert!(
        run.wait_log(LONG, |l| l.contains(": deferral: ") && l.contains("#4.4.4")),
        "no deferral for another cluster host; log:\n{}",
        run.log_text()
    );
    assert!(Sandbox::maildir_new(&away).is_empty());
    assert_eq!(run.count_log(|l| l.contains(": failure: ")), 0);
    // qmail-ldaplookup says what delivery does with each mailHost
    let shown = |addr: &str| {
        let out = d.sb.run("qmail-ldaplookup", &["-m", addr], b"");
        assert_ok(&out, "qmail-ldaplookup");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let far = shown("far@example.org");
    assert!(
        far.contains("mail host: other.example.org (another cluster host: mail waits"),
        "{far}"
    );
    let near = shown("near@example.org");
    assert!(near.contains("mail host: MX.example.org (this host: delivered here)"), "{near}");
    d.sb.control("ldapcluster", "0\n");
    let far = shown("far@example.org");
    assert!(far.contains("(ignored (ldapcluster is 0): delivered here)"), "{far}");
}
