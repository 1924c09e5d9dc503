//! LDAP administration against the real shared slapd: qmail-ldaplookup's output, exit codes
//! and password check; `qmailctl user add|mod|del|show` (`mod` also moving the mailbox and
//! changing its ids); `qmailctl ldap-init`'s slapd.conf and LDIF; hostile values in filters
//! and DNs.

use crate::harness::slapd::{self, ROOTDN, ROOTPW};
use crate::harness::{code, Sandbox};
use std::process::Output;

/// An installation whose LDAP control files point at the shared slapd, under a fresh `ou`.
fn setup(ou: &str) -> (Sandbox, String) {
    let s = Sandbox::new();
    let d = slapd::shared();
    let base = d.add_ou(ou);
    d.point(&s, &base);
    (s, base)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn ldaplookup_checks_every_local_password_scheme() {
    let (s, base) = setup("schemes");
    // "a good password" in each scheme (slappasswd, openssl passwd, libxcrypt)
    let rows = [
        ("smd5", "{SMD5}xCiXRWPrUvc/47xF84LfOQRqF4U="),
        ("md5", "{md5}Jl0K2Z4VjDBoVRpX/edWjQ=="),
        ("sha", "{SHA}+PY/+o41iAewg7IitdqgVx9OCq0="),
        ("md5crypt", "{CRYPT}$1$saltsalt$SyQdaSahdJZCS7SmuoMXU/"),
        ("sha256crypt", "{crypt}$5$saltsaltsalt$7K7eZIRflJR9g6flhuDvCyp9VcS7.UkyOAGjurnkbQ7"),
        (
            "sha512crypt",
            "{CRYPT}$6$saltsaltsalt$abDOiEcluZJKA0dzsF3gl0E1.9xK7r3WePIpaPNHZhNlEXLyJch.s7Ifi7zRb\
             KWUvTnLaURc8p/1vxG2y9iia/",
        ),
        ("bcrypt", "{CRYPT}$2y$05$abcdefghijklmnopqrstuudPLndKqNxTJdyGgy8u1tt1GUFSmbwZS"),
    ];
    for (uid, stored) in rows {
        slapd::shared().add(&format!(
            "dn: uid={uid},{base}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\n\
             uid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@schemes.org\nuserPassword: {stored}\n"
        ));
        let out = s.run("qmail-ldaplookup", &["-u", uid, "-p", "a good password"], b"");
        assert_eq!(code(&out), 0, "{uid}: {}", show(&out));
        assert!(text(&out).ends_with("PASSWORD COMPARE was successful.\n"), "{}", show(&out));
        let out = s.run("qmail-ldaplookup", &["-u", uid, "-p", "a good passwore"], b"");
        assert_eq!(code(&out), 1, "{uid}: {}", show(&out));
        assert!(text(&out).contains("error was: password mismatch\n"), "{}", show(&out));
        let out = s.run("qmail-ldaplookup", &["-u", uid, "-p", ""], b"");
        assert_eq!(code(&out), 1, "{uid}: {}", show(&out));
        assert!(text(&out).contains("error was: empty password\n"), "{}", show(&out));
    }
}

#[test]
fn ldaplookup_prints_entry_and_delivery() {
    let (s, base) = setup("lookup1");
    slapd::shared().add(&format!(
        "dn: uid=joe,{base}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\nuid: joe\n\
         cn: Joe\nsn: User\nmail: joe@lookup1.org\nmailAlternateAddress: jo@lookup1.org\n\
         userPassword: {}\nmailMessageStore: /var/mail/joe/Maildir/\nhomeDirectory: /var/mail/joe\n\
         qmailUID: 2000\nqmailGID: 2000\nmailQuotaSize: 1000000\ndeliveryMode: noforward\n\
         mailForwardingAddress: other@example.net\n",
        qmail::passwd::ssha(b"pw", b"salt")
    ));
    let out = s.run("qmail-ldaplookup", &["-m", "JO@lookup1.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let want = format!(
        "Searching ldap for: (|(mail=jo@lookup1.org)(mailAlternateAddress=jo@lookup1.org))\n\
         under dn: {base}\n\
         Found 1 entry:\n\
         \n\
         dn: uid=joe,{base}\n\
         {}\n\
         objectClass: inetOrgPerson\n\
         objectClass: qmailUser\n\
         mail: joe@lookup1.org\n\
         mailAlternateAddress: jo@lookup1.org\n\
         uid: joe\n\
         accountStatus: undefined -> active\n\
         mailHost: undefined\n\
         homeDirectory: /var/mail/joe\n\
         mailMessageStore: /var/mail/joe/Maildir/\n\
         qmailDotMode: undefined\n\
         qmailUID: 2000\n\
         qmailGID: 2000\n\
         mailQuotaSize: 1000000\n\
         mailQuotaCount: undefined\n\
         mailSizeMax: undefined\n\
         deliveryMode: noforward\n\
         mailForwardingAddress: other@example.net\n\
         mailReplyText: undefined\n\
         \n\
         Delivery:\n  \
         status: active: mail is delivered\n  \
         user: joe, uid 2000, gid 2000\n  \
         message store: home /var/mail/joe, default delivery /var/mail/joe/Maildir/\n  \
         dot mode: ldaponly\n  \
         delivery mode: local delivery, no forwards, programs\n  \
         forwards: other@example.net\n  \
         programs: none\n  \
         quota: 1000000 bytes, unlimited messages\n  \
         message size limit: unlimited\n\
         \n\n",
        "-".repeat(72)
    );
    assert_eq!(text(&out), want, "{}", show(&out));
    assert!(!text(&out).to_lowercase().contains("password"));

    // -u, and the password check right and wrong.
    let out = s.run("qmail-ldaplookup", &["-u", "joe", "-p", "pw"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(text(&out).ends_with("PASSWORD COMPARE was successful.\n"), "{}", show(&out));
    assert!(!text(&out).contains("{SSHA}"), "{}", show(&out));
    let out = s.run("qmail-ldaplookup", &["-u", "joe", "-p", "wrong"], b"");
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert!(text(&out).contains("PASSWORD COMPARE was NOT successful.\n"), "{}", show(&out));
    let out = s.run("qmail-ldaplookup", &["-u", "joe", "-p", ""], b"");
    assert_eq!(code(&out), 1, "{}", show(&out));

    // Nothing found: 100, after the whole candidate sequence.
    let out = s.run("qmail-ldaplookup", &["-m", "nobody-x@lookup1.org"], b"");
    assert_eq!(code(&out), 100, "{}", show(&out));
    assert_eq!(text(&out).matches("No entries found.").count(), 3, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no entry found"), "{}", show(&out));

    // Usage errors: 100.
    for args in [&["-u", "a", "-m", "b@c"][..], &[][..], &["-D", "cn=x", "-u", "joe"][..]] {
        let out = s.run("qmail-ldaplookup", args, b"");
        assert_eq!(code(&out), 100, "{args:?}: {}", show(&out));
    }
}

#[test]
fn ldaplookup_ldap_trouble_is_111() {
    let (s, _) = setup("lookup2");
    // Wrong bind password.
    let out = s.run("qmail-ldaplookup", &["-D", ROOTDN, "-w", "wrong", "-u", "joe"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));
    assert!(!show(&out).contains("wrong"), "{}", show(&out));
    // A base that does not exist.
    s.control("ldapbasedn", "ou=missing,dc=example,dc=org\n");
    let out = s.run("qmail-ldaplookup", &["-u", "joe"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));
    // No LDAP configured.
    std::fs::remove_file(s.home.join("control/ldapserver")).unwrap();
    let out = s.run("qmail-ldaplookup", &["-u", "joe"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not configured"), "{}", show(&out));
}

#[test]
fn ldaplookup_hostile_values_neither_inject_nor_crash() {
    let (s, base) = setup("lookup3");
    slapd::shared().add(&format!(
        "dn: uid=victim,{base}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\nuid: victim\n\
         cn: V\nsn: V\nmail: victim@lookup3.org\nmailMessageStore: /var/mail/v/\n"
    ));
    for hostile in ["*", "*)(uid=*", "victim)(|(uid=*", "\\2a", "x\u{1}y", "((((", ")"] {
        let out = s.run("qmail-ldaplookup", &["-u", hostile], b"");
        assert_eq!(code(&out), 100, "{hostile:?}: {}", show(&out));
        assert!(!text(&out).contains("dn: uid=victim"), "{hostile:?}: {}", show(&out));
        let addr = format!("{hostile}@lookup3.org");
        let out = s.run("qmail-ldaplookup", &["-m", &addr], b"");
        assert_eq!(code(&out), 100, "{hostile:?}: {}", show(&out));
        assert!(!text(&out).contains("dn: uid=victim"), "{hostile:?}: {}", show(&out));
    }
}

fn ctl(s: &Sandbox, args: &[&str], stdin: &[u8]) -> Output {
    let home = s.home.to_str().unwrap().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--home", home.as_str()]);
    s.run("qmailctl", &all, stdin)
}

#[test]
fn user_add_then_lookup_mod_show_del() {
    let (s, base) = setup("users1");
    s.control("ldapmessagestore", "/var/mail/vhosts/\n");
    s.control("ldapuid", "2000\n");
    s.control("ldapgid", "2001\n");
    let out = ctl(
        &s,
        &[
            "user",
            "add",
            "Ann@users1.org",
            "--alias",
            "ann.a@users1.org",
            "--quota-size",
            "5000000",
            "--quota-count",
            "100",
            "--password-stdin",
        ],
        b"s3cret\n",
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(text(&out), format!("qmailctl: added uid=ann,{base}\n"));

    let out = s.run("qmail-ldaplookup", &["-m", "ann.a@users1.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let got = text(&out);
    // objectClass values come back in no fixed order (the add sends a set).
    assert!(got.contains("\nobjectClass: inetOrgPerson\n"), "{}", show(&out));
    assert!(got.contains("\nobjectClass: qmailUser\n"), "{}", show(&out));
    let entry = got.split_once("\nmail: ").map_or("", |x| x.1);
    let want = "ann@users1.org\n\
                mailAlternateAddress: ann.a@users1.org\n\
                uid: ann\n\
                accountStatus: undefined -> active\n\
                mailHost: undefined\n\
                homeDirectory: /var/mail/vhosts/ann\n\
                mailMessageStore: /var/mail/vhosts/ann/Maildir/\n\
                qmailDotMode: undefined\n\
                qmailUID: 2000\n\
                qmailGID: 2001\n\
                mailQuotaSize: 5000000\n\
                mailQuotaCount: 100\n\
                mailSizeMax: undefined\n\
                mailReplyText: undefined\n\
                \n\
                Delivery:\n  \
                status: active: mail is delivered\n  \
                user: ann, uid 2000, gid 2001\n  \
                message store: home /var/mail/vhosts/ann, default delivery /var/mail/vhosts/ann/Maildir/\n  \
                dot mode: ldaponly\n  \
                delivery mode: local delivery, forwards, programs\n  \
                forwards: none\n  \
                programs: none\n  \
                quota: 5000000 bytes, 100 messages\n  \
                message size limit: unlimited\n\n\n";
    assert_eq!(entry, want, "{}", show(&out));

    // The stored password is {SSHA}: right and wrong.
    let out = s.run("qmail-ldaplookup", &["-u", "ann", "-p", "s3cret"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(text(&out).contains("PASSWORD COMPARE was successful."), "{}", show(&out));
    let out = s.run("qmail-ldaplookup", &["-u", "ann", "-p", "s3cre"], b"");
    assert_eq!(code(&out), 1, "{}", show(&out));
    // The directory agrees: a bind as the entry works with it.
    let out = std::process::Command::new("ldapwhoami")
        .args([
            "-x",
            "-H",
            &slapd::shared().url(),
            "-D",
            &format!("uid=ann,{base}"),
            "-w",
            "s3cret",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));

    // The same address twice is refused, also as an alias of someone else.
    let out = ctl(&s, &["user", "add", "ann@users1.org", "--uid", "ann2"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already an address"), "{}", show(&out));
    let out = ctl(&s, &["user", "add", "bob@users1.org", "--alias", "ANN.A@users1.org"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));

    // mod: status, delivery mode, forwards, aliases, password.
    let out = ctl(
        &s,
        &[
            "user",
            "mod",
            "ann@users1.org",
            "--status",
            "disabled",
            "--delivery-mode",
            "noforward",
            "--add-forward",
            "boss@example.net",
            "--add-alias",
            "a@users1.org",
            "--del-alias",
            "ann.a@users1.org",
            "--password",
            "new pw",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = ctl(&s, &["user", "show", "a@users1.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(
        text(&out),
        format!(
            "dn: uid=ann,{base}\n\
             objectClass: inetOrgPerson\n\
             objectClass: qmailUser\n\
             uid: ann\n\
             cn: ann\n\
             mail: ann@users1.org\n\
             mailAlternateAddress: a@users1.org\n\
             accountStatus: disabled\n\
             homeDirectory: /var/mail/vhosts/ann\n\
             mailMessageStore: /var/mail/vhosts/ann/Maildir/\n\
             qmailUID: 2000\n\
             qmailGID: 2001\n\
             mailQuotaSize: 5000000\n\
             mailQuotaCount: 100\n\
             mailForwardingAddress: boss@example.net\n\
             deliveryMode: noforward\n\
             userPassword: (set)\n"
        )
    );
    let out = s.run("qmail-ldaplookup", &["-m", "a@users1.org", "-p", "new pw"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(text(&out).contains("status: disabled: mail bounces"), "{}", show(&out));
    let out = s.run("qmail-ldaplookup", &["-m", "ann.a@users1.org"], b"");
    assert_eq!(code(&out), 100, "{}", show(&out));
    let out = ctl(&s, &["user", "mod", "a@users1.org", "--clear-delivery-mode"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(!text(&ctl(&s, &["user", "show", "a@users1.org"], b"")).contains("deliveryMode"));
    // Bad values are refused before anything is sent.
    for args in [
        &["user", "mod", "a@users1.org", "--status", "frozen"][..],
        &["user", "mod", "a@users1.org", "--delivery-mode", "bogus"][..],
        &["user", "mod", "a@users1.org"][..],
        &["user", "mod", "nobody@users1.org", "--status", "active"][..],
    ] {
        let out = ctl(&s, args, b"");
        assert_ne!(code(&out), 0, "{args:?}: {}", show(&out));
    }

    // A forward-only entry.
    let out = ctl(&s, &["user", "add", "fwd@users1.org", "--forward", "x@example.net"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = s.run("qmail-ldaplookup", &["-m", "fwd@users1.org"], b"");
    assert!(text(&out).contains("message store: none: forward-only"), "{}", show(&out));

    // del
    let out = ctl(&s, &["user", "del", "ann@users1.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = s.run("qmail-ldaplookup", &["-u", "ann"], b"");
    assert_eq!(code(&out), 100, "{}", show(&out));
    let out = ctl(&s, &["user", "del", "ann@users1.org"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no entry has"), "{}", show(&out));
}

#[test]
fn user_mod_moves_the_mailbox_and_changes_the_ids() {
    use std::os::unix::fs::MetadataExt;
    let (s, base) = setup("users3");
    let mail = s.tmp.path().join("mail");
    s.control("ldapmessagestore", &format!("{}/\n", mail.display()));
    s.control("ldapuid", "2000\n");
    s.control("ldapgid", "2001\n");
    let (uid, gid) = if crate::harness::is_root() {
        (4321, 4322)
    } else {
        (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    };
    let out = ctl(&s, &["user", "add", "mo@users3.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let moved = s.tmp.path().join("moved/mo");
    let (home, store) = (moved.display().to_string(), format!("{}/Mail/", moved.display()));
    let (u, g) = (uid.to_string(), gid.to_string());
    let args = [
        "user",
        "mod",
        "mo@users3.org",
        "--home-dir",
        &home,
        "--store",
        &store,
        "--qmail-uid",
        &u,
        "--qmail-gid",
        &g,
        "--create-home",
    ];
    let out = ctl(&s, &args, b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(
        text(&out),
        format!("qmailctl: modified uid=mo,{base}\nqmailctl: created {home}\n"),
        "{}",
        show(&out)
    );
    let shown = text(&ctl(&s, &["user", "show", "mo@users3.org"], b""));
    for line in [
        format!("homeDirectory: {home}\n"),
        format!("mailMessageStore: {store}\n"),
        format!("qmailUID: {uid}\n"),
        format!("qmailGID: {gid}\n"),
    ] {
        assert!(shown.contains(&line), "no {line:?} in\n{shown}");
    }
    for sub in ["", "Mail", "Mail/new", "Mail/cur", "Mail/tmp"] {
        let meta = std::fs::metadata(moved.join(sub)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{sub}");
    }
    let out = s.run("qmail-ldaplookup", &["-m", "mo@users3.org"], b"");
    assert!(text(&out).contains(&format!("user: mo, uid {uid}, gid {gid}\n")), "{}", show(&out));

    // Bad values are refused and change nothing.
    for args in [
        &["--qmail-uid", "0"][..],
        &["--qmail-gid", "70000"][..],
        &["--qmail-uid", "99"][..],
        &["--home-dir", "relative/mo"][..],
        &["--home-dir", "/a b"][..],
        &["--store", "/x;rm -rf /"][..],
        &["--store", "../../etc/"][..],
    ] {
        let all: Vec<&str> = ["user", "mod", "mo@users3.org"].iter().chain(args).copied().collect();
        let out = ctl(&s, &all, b"");
        assert_eq!(code(&out), 111, "{args:?}: {}", show(&out));
    }
    assert_eq!(text(&ctl(&s, &["user", "show", "mo@users3.org"], b"")), shown);

    // --create-home alone needs a home to create.
    let out = ctl(&s, &["user", "add", "fw@users3.org", "--forward", "x@example.net"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = ctl(&s, &["user", "mod", "fw@users3.org", "--create-home"], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no homeDirectory"), "{}", show(&out));
}

#[test]
fn user_hostile_values_neither_inject_nor_crash() {
    let (s, base) = setup("users2");
    s.control("ldapuid", "2000\n");
    s.control("ldapgid", "2000\n");
    slapd::shared().add(&format!(
        "dn: uid=victim,{base}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\nuid: victim\n\
         cn: V\nsn: V\nmail: victim@users2.org\nmailMessageStore: /var/mail/v/\n"
    ));
    // DN metacharacters: refused in a uid, escaped (RFC 4514) where allowed.
    let out = ctl(
        &s,
        &["user", "add", "odd@users2.org", "--uid", "x,ou=evil+cn=a", "--store", "/v/o/"],
        b"",
    );
    assert_eq!(code(&out), 111, "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("uid"), "{}", show(&out));
    let out = ctl(
        &s,
        &["user", "add", "odd@users2.org", "--uid", "#odd", "--name", "A, B+C", "--store", "/v/o/"],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(text(&out), format!("qmailctl: added uid=\\23odd,{base}\n"));
    let out = ctl(&s, &["user", "show", "odd@users2.org"], b"");
    assert!(text(&out).contains("uid: #odd\ncn: A, B+C\n"), "{}", show(&out));
    // Filter metacharacters in addresses find nothing and touch nothing.
    for hostile in
        ["*@users2.org", "*)(uid=*@users2.org", "victim)(|(mail=*@users2.org", "\\2a@users2.org"]
    {
        for sub in [&["user", "show", hostile][..], &["user", "del", hostile][..]] {
            let out = ctl(&s, sub, b"");
            assert_eq!(code(&out), 111, "{sub:?}: {}", show(&out));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("no entry has"),
                "{}",
                show(&out)
            );
        }
        let out = ctl(&s, &["user", "mod", hostile, "--status", "deleted"], b"");
        assert_eq!(code(&out), 111, "{}", show(&out));
    }
    let out = ctl(&s, &["user", "show", "victim@users2.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(!text(&out).contains("accountStatus"), "{}", show(&out));
    // Line breaks never reach LDIF or the directory.
    let out = ctl(
        &s,
        &["user", "add", "nl@users2.org", "--name", "a\nmail: victim@users2.org", "--store", "/x/"],
        b"",
    );
    assert_eq!(code(&out), 111, "{}", show(&out));
}

#[test]
fn ldap_init_writes_a_server_that_slaptest_accepts_and_ldif_that_loads() {
    let s = Sandbox::new();
    let dir = s.tmp.path().join("slapd");
    let out = ctl(
        &s,
        &[
            "ldap-init",
            "--suffix",
            "dc=init,dc=test",
            "--dir",
            dir.to_str().unwrap(),
            "--server",
            "127.0.0.1:3899",
            "--message-store",
            "/var/mail/vhosts",
            "--uid",
            "2000",
            "--gid",
            "2000",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    let c = |n: &str| std::fs::read_to_string(s.home.join("control").join(n)).unwrap();
    assert_eq!(c("ldapserver"), "127.0.0.1:3899\n");
    assert_eq!(c("ldapbasedn"), "dc=init,dc=test\n");
    assert_eq!(c("ldaplogin"), "cn=admin,dc=init,dc=test\n");
    assert_eq!(c("ldapmessagestore"), "/var/mail/vhosts/\n");
    assert_eq!(c("ldapuid"), "2000\n");
    assert!(c("ldappassword").trim().len() >= 20);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.home.join("control/ldappassword")).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "ldappassword is world-readable");
    let conf = dir.join("slapd.conf");
    let conf_text = std::fs::read_to_string(&conf).unwrap();
    assert!(conf_text.contains("rootpw {SSHA}"), "{conf_text}");
    assert!(!conf_text.contains(c("ldappassword").trim()), "the password in clear");
    for cmd in [
        std::process::Command::new("slaptest").args(["-u", "-f"]).arg(&conf).output().unwrap(),
        std::process::Command::new("slapadd")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(dir.join("base.ldif"))
            .output()
            .unwrap(),
    ] {
        assert!(cmd.status.success(), "{}", show(&cmd));
    }
    // A non-empty directory is refused.
    let out = ctl(&s, &["ldap-init", "--suffix", "dc=x", "--dir", dir.to_str().unwrap()], b"");
    assert_eq!(code(&out), 111, "{}", show(&out));

    // --print: the LDIF for an existing directory loads into the shared slapd, and users
    // then go under its ou=people.
    let pwfile = s.tmp.path().join("rootpw");
    std::fs::write(&pwfile, format!("{ROOTPW}\n")).unwrap();
    let d = slapd::shared();
    let suffix = "ou=printed,dc=example,dc=org";
    let out = ctl(
        &s,
        &[
            "ldap-init",
            "--print",
            "--suffix",
            suffix,
            "--server",
            &d.server(),
            "--rootdn",
            ROOTDN,
            "--rootpw-file",
            pwfile.to_str().unwrap(),
            "--uid",
            "2000",
            "--gid",
            "2000",
            "--message-store",
            "/var/mail/vhosts",
        ],
        b"",
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(
        text(&out),
        format!(
            "dn: {suffix}\nobjectClass: organizationalUnit\nou: printed\n\n\
             dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people\n"
        )
    );
    d.add(&text(&out));
    assert_eq!(c("ldappassword"), format!("{ROOTPW}\n"));
    let out = ctl(&s, &["user", "add", "new@printed.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(text(&out), format!("qmailctl: added uid=new,ou=people,{suffix}\n"));
    let out = s.run("qmail-ldaplookup", &["-m", "new@printed.org"], b"");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(text(&out).contains("user: new, uid 2000, gid 2000\n"), "{}", show(&out));
}
