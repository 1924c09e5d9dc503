//! qmail-local with the environment qmail-lspawn sets from a directory entry (doc/qmail-local.8,
//! "Directory (LDAP) environment"): dot modes, deliveryMode words and their combinations, forwards
//! into the real queue, directory programs and their refusal, the Maildir++ quota (under, warning,
//! over, a corrupt `maildirsize`), qmail-quotawarn's single warning and qmail-reply's
//! once-per-sender answer. The built qmail-local runs directly in a sandbox, as in local.rs.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const MESSAGE: &[u8] = b"From: alice@example.com\nSubject: hi\n\nhello\n";

struct Box_ {
    sb: Sandbox,
    home: PathBuf,
}

impl Box_ {
    fn new() -> Self {
        let sb = Sandbox::new();
        let home = sb.tmp.path().join("joe");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(home.join("Maildir").join(sub)).unwrap();
        }
        Box_ { sb, home }
    }

    fn run(&self, env: &[(&str, &str)], sender: &str, message: &[u8]) -> Output {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let msg = self.sb.tmp.path().join(format!("message-{n}"));
        fs::write(&msg, message).unwrap();
        let mut c = self.sb.cmd("qmail-local");
        c.stdin(fs::File::open(&msg).unwrap());
        for v in [
            "QMAILDOTMODE",
            "QMAILMODE",
            "QMAILFORWARDS",
            "QMAILDELIVERYPROGRAM",
            "QMAILREPLYTEXT",
            "MAILDIRQUOTA",
        ] {
            c.env_remove(v);
        }
        c.envs(env.iter().copied());
        c.arg("--").arg("joe").arg(&self.home);
        c.args(["joe", "", "", "example.org", sender, "./Maildir/"]);
        c.output().unwrap()
    }

    fn new_mail(&self) -> Vec<PathBuf> {
        list(&self.home.join("Maildir/new"))
    }

    fn dotqmail(&self, name: &str, text: &str) {
        let p = self.home.join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn expect(out: &Output, want: i32, needle: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        code(out) == want && stdout.contains(needle),
        "want exit {want} with {needle:?}, got {}\nstdout:\n{stdout}\nstderr:\n{}",
        code(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn delivery_modes_and_combinations() {
    let rows: &[(&str, usize, bool, bool)] = &[
        // mode, mails in Maildir, forward queued, program ran
        ("", 1, true, true),
        ("normal", 1, true, true),
        ("nolocal", 0, true, true),
        ("NOMBOX", 0, true, true),
        ("noforward", 1, false, true),
        ("noprogram", 1, true, false),
        ("nolocal:noforward", 0, false, true),
        ("noforward:noprogram", 1, false, false),
        ("nolocal:noforward:noprogram", 0, false, false),
        ("forwardonly", 0, true, false),
        ("local:forward:program:noreply:whatever", 1, true, true),
    ];
    for (mode, mails, forward, program) in rows {
        let b = Box_::new();
        let env = [
            ("QMAILDOTMODE", "ldapwithprog"),
            ("QMAILMODE", *mode),
            ("QMAILFORWARDS", "fwd1@example.net:fwd2@example.net"),
            ("QMAILDELIVERYPROGRAM", "/usr/bin/touch ran"),
        ];
        let out = b.run(&env, "alice@example.com", MESSAGE);
        expect(&out, 0, "did ");
        assert_eq!(b.new_mail().len(), *mails, "{mode}");
        let todo = b.sb.todo();
        assert_eq!(todo.len(), usize::from(*forward), "{mode}");
        if *forward {
            assert_eq!(todo[0].recipients(), ["fwd1@example.net", "fwd2@example.net"], "{mode}");
            assert_eq!(todo[0].sender(), "alice@example.com");
            assert!(todo[0].text().contains("Delivered-To: joe@example.org\nPrecedence: bulk\n"));
        }
        assert_eq!(b.home.join("ran").exists(), *program, "{mode}");
    }
}

#[test]
fn forwards_with_escaped_colons() {
    let b = Box_::new();
    let env = [("QMAILDOTMODE", "ldaponly"), ("QMAILFORWARDS", "odd\\:name@example.net")];
    expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did 1+1+0");
    assert_eq!(b.sb.todo()[0].recipients(), ["odd:name@example.net"]);
}

#[test]
fn directory_programs_and_their_refusal() {
    let rows: &[(&str, &str, i32, &str)] = &[
        ("ldaponly", "/usr/bin/touch ran", 0, "did 1+0+0"),
        ("ldapwithprog", "/usr/bin/touch ran", 0, "did 1+0+1"),
        ("both", "/usr/bin/touch ran", 0, "did 1+0+1"),
        ("ldapwithprog", "/usr/bin/touch ran; /usr/bin/touch evil", 100, "#5.3.5"),
        ("ldapwithprog", "/usr/bin/touch `echo evil`", 100, "#5.3.5"),
        ("ldapwithprog", "/usr/bin/touch $HOME/evil", 100, "#5.3.5"),
        ("ldapwithprog", "/usr/bin/touch ran > evil", 100, "#5.3.5"),
        ("ldapwithprog", "exit 100", 100, ""),
        ("ldapwithprog", "exit 111", 111, ""),
    ];
    for (dot, prog, want, needle) in rows {
        let b = Box_::new();
        let env = [("QMAILDOTMODE", *dot), ("QMAILDELIVERYPROGRAM", *prog)];
        let out = b.run(&env, "alice@example.com", MESSAGE);
        expect(&out, *want, needle);
        assert!(!b.home.join("evil").exists(), "{prog}");
        if *want != 0 {
            assert!(b.new_mail().is_empty(), "nothing delivered before the refusal: {prog}");
        }
    }
}

#[test]
fn dot_modes() {
    let rows: &[(Option<&str>, i32, usize, usize)] = &[
        // dot mode, exit, mails in Maildir, mails in ~/mbox (from .qmail)
        (None, 0, 0, 1),
        (Some("dotonly"), 0, 0, 1),
        (Some("DotOnly"), 0, 0, 1),
        (Some("ldaponly"), 0, 1, 0),
        (Some("ldapwithprog"), 0, 1, 0),
        (Some("both"), 0, 1, 1),
        (Some("Both"), 0, 1, 1),
        (Some("none"), 0, 1, 0),
        (Some("NONE"), 0, 1, 0),
        (Some("bogus"), 100, 0, 0),
    ];
    for (dot, want, mails, mbox) in rows {
        let b = Box_::new();
        b.dotqmail(".qmail", "./mbox\n");
        let mut env = vec![("QMAILFORWARDS", "fwd@example.net")];
        env.extend(dot.map(|d| ("QMAILDOTMODE", d)));
        let out = b.run(&env, "alice@example.com", MESSAGE);
        expect(&out, *want, if *want == 0 { "did" } else { "#5.3.5" });
        assert_eq!(b.new_mail().len(), *mails, "{dot:?}");
        let in_mbox = fs::read(b.home.join("mbox")).map(|m| usize::from(!m.is_empty()));
        assert_eq!(in_mbox.unwrap_or(0), *mbox, "{dot:?}");
        // forwards come from the directory only in the LDAP modes
        let ldap = matches!(
            dot.map(str::to_ascii_lowercase).as_deref(),
            Some("ldaponly" | "ldapwithprog" | "both" | "none")
        );
        assert_eq!(b.sb.todo().len(), usize::from(ldap), "{dot:?}");
    }
}

#[test]
fn ldap_modes_do_not_bounce_a_missing_extension_file() {
    let b = Box_::new();
    let mut c = b.sb.cmd("qmail-local");
    let msg = b.sb.tmp.path().join("m");
    fs::write(&msg, MESSAGE).unwrap();
    c.stdin(fs::File::open(&msg).unwrap()).env("QMAILDOTMODE", "both");
    c.arg("--").arg("joe").arg(&b.home);
    c.args(["joe-x", "-", "x", "example.org", "a@b", "./Maildir/"]);
    expect(&c.output().unwrap(), 0, "did 1+0+0");
}

/// The `<bytes> <count>` lines after the definition.
fn size_lines(b: &Box_) -> Vec<String> {
    fs::read_to_string(b.home.join("Maildir/maildirsize"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn warnings(b: &Box_) -> usize {
    b.new_mail().iter().filter(|p| p.to_string_lossy().contains("QUOTA_WARNING")).count()
}

#[test]
fn quota_under_warning_over() {
    let b = Box_::new();
    b.sb.control("quotawarning", "%HEADER%\nSubject: mailbox nearly full\n\nPlease clean up.\n");
    let size =
        MESSAGE.len() + "Return-Path: <alice@example.com>\nDelivered-To: joe@example.org\n".len();
    // room for exactly three messages
    let quota = format!("{}S,10C", 3 * size);
    let env = [("MAILDIRQUOTA", quota.as_str())];
    // 1 of 3: under, maildirsize created by recalculation, then one line added
    expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did 1+0+0");
    assert_eq!(warnings(&b), 0);
    let first = fs::read_to_string(b.home.join("Maildir/maildirsize")).unwrap();
    assert!(first.starts_with(&format!("{quota}\n")), "{first}");
    let lines = size_lines(&b).len();
    // 2 of 3 (66%): no warning; 3 of 3 (100%): warning
    expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did 1+0+0");
    assert_eq!(warnings(&b), 0);
    expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did 1+0+0");
    assert_eq!(warnings(&b), 1);
    assert_eq!(size_lines(&b).len(), lines + 2, "one line per delivery");
    assert_eq!(size_lines(&b).last().unwrap(), &format!("{size} 1"));
    let warning = fs::read_to_string(
        b.new_mail().into_iter().find(|p| p.to_string_lossy().contains("QUOTA_WARNING")).unwrap(),
    )
    .unwrap();
    assert!(warning.contains("Subject: mailbox nearly full\n"), "{warning}");
    assert!(warning.contains("Qmail-QuotaWarning: joe@example.org\n"), "{warning}");
    assert!(warning.contains("To: <joe@example.org>\n"), "{warning}");
    // 4 of 3: over quota, a permanent bounce, no line added, still one warning
    let before = fs::read(b.home.join("Maildir/maildirsize")).unwrap();
    let mails = b.new_mail().len();
    expect(&b.run(&env, "alice@example.com", MESSAGE), 100, "over the allowed quota");
    expect(&b.run(&env, "alice@example.com", MESSAGE), 100, "(#5.2.2)");
    assert_eq!(b.new_mail().len(), mails);
    assert!(list(&b.home.join("Maildir/tmp")).is_empty(), "no staged file left");
    assert_eq!(warnings(&b), 1, "one warning, not two");
    let after = fs::read(b.home.join("Maildir/maildirsize")).unwrap();
    // a recalculation may rewrite the file, but never counts the refused messages
    assert!(after == before || String::from_utf8_lossy(&after).lines().count() == 2);
}

#[test]
fn quota_without_quotawarning_control_file_warns_nobody() {
    let b = Box_::new();
    let env = [("MAILDIRQUOTA", "1C")];
    expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did 1+0+0");
    expect(&b.run(&env, "alice@example.com", MESSAGE), 100, "#5.2.2");
    assert_eq!(warnings(&b), 0);
}

#[test]
fn corrupt_maildirsize_is_recalculated() {
    let hostile: &[&[u8]] = &[
        b"1000000S\n-99999999 -999\n",
        b"1000000S\n9223372036854775807 1\n1 1\n",
        b"1000000S\n10 1\n20",
        b"1000000S\nrubbish\n",
        b"",
        b"\x00\x01\x02",
        &[b'9'; 6000],
        b"2S\n0 0\n",
    ];
    for h in hostile {
        let b = Box_::new();
        fs::write(b.home.join("Maildir/maildirsize"), h).unwrap();
        let env = [("MAILDIRQUOTA", "1000000S")];
        expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did 1+0+0");
        let text = fs::read_to_string(b.home.join("Maildir/maildirsize")).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("1000000S"), "{:?}", String::from_utf8_lossy(h));
        let total: i64 =
            lines.map(|l| l.split_whitespace().next().unwrap().parse::<i64>().unwrap()).sum();
        let size = fs::metadata(&b.new_mail()[0]).unwrap().len() as i64;
        assert_eq!(total, size, "{:?}: {text}", String::from_utf8_lossy(h));
    }
}

#[test]
fn reply_once_per_sender_never_to_lists_or_bounces() {
    let b = Box_::new();
    let env = [
        ("QMAILDOTMODE", "ldaponly"),
        ("QMAILMODE", "reply"),
        ("QMAILREPLYTEXT", "I am away until Monday."),
    ];
    expect(&b.run(&env, "alice@example.com", MESSAGE), 0, "did");
    let todo = b.sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].sender(), "");
    assert_eq!(todo[0].recipients(), ["alice@example.com"]);
    let text = todo[0].text();
    assert!(text.contains("To: <alice@example.com>\n"), "{text}");
    assert!(text.contains("Subject: [Auto-Reply] hi\n"), "{text}");
    assert!(text.contains("Precedence: junk\n"), "{text}");
    assert!(text.contains("I am away until Monday."), "{text}");
    // the same sender again: no second reply, but delivered
    expect(&b.run(&env, "Alice@Example.com", MESSAGE), 0, "did");
    assert_eq!(b.sb.todo().len(), 1);
    assert_eq!(b.new_mail().len(), 2);
    // a list, a robot, a bounce, MAILER-DAEMON: never answered
    let list = b"From: l@example.com\nList-Id: <l.example.com>\nSubject: x\n\nbody\n";
    let bulk = b"From: l@example.com\nPrecedence: bulk\n\nbody\n";
    expect(&b.run(&env, "bob@example.com", list), 0, "did");
    expect(&b.run(&env, "carol@example.com", bulk), 0, "did");
    expect(&b.run(&env, "", MESSAGE), 0, "did");
    expect(&b.run(&env, "MAILER-DAEMON@example.com", MESSAGE), 0, "did");
    expect(&b.run(&env, "list-request@example.com", MESSAGE), 0, "did");
    assert_eq!(b.sb.todo().len(), 1);
    // a changed text answers again
    let env2 = [env[0], env[1], ("QMAILREPLYTEXT", "Back on Tuesday.")];
    expect(&b.run(&env2, "alice@example.com", MESSAGE), 0, "did");
    assert_eq!(b.sb.todo().len(), 2);
    // another sender is answered
    expect(&b.run(&env, "dave@example.com", MESSAGE), 0, "did");
    assert_eq!(b.sb.todo().len(), 3);
}
