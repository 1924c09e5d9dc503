//! LDAP administration against the real shared slapd: qmail-ldaplookup's output, exit codes
//! and password check; `qmailctl user add|mod|del|show`; `qmailctl ldap-init`'s slapd.conf
//! and LDIF; hostile values in filters and DNs.

use crate::harness::slapd::{self, ROOTDN, ROOTPW};
use crate::harness::{code, Sandbox};
use std::process::Output;

/// An installation whose LDAP control files point at the shared slapd, under a fresh `ou`.
fn setup(ou: &str) -> (Sandbox, String) {
    let s = Sandbox::new();
    let d = slapd::shared();
    let base = d.add_ou(ou);
    s.control("ldapserver", &format!("{}\n", d.server()));
    s.control("ldapbasedn", &format!("{base}\n"));
    s.control("ldaplogin", &format!("{ROOTDN}\n"));
    s.control("ldappassword", &format!("{ROOTPW}\n"));
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
fn ldaplookup_prints_entry_and_delivery() {
    let (s, base) = setup("lookup1");
    slapd::shared().add(&format!(
        "dn: uid=joe,{base}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\nuid: joe\n\
         cn: Joe\nsn: User\nmail: joe@lookup1.org\nmailAlternateAddress: jo@lookup1.org\n\
         userPassword: {}\nmailMessageStore: /var/mail/joe/Maildir/\nhomeDirectory: /var/mail/joe\n\
         qmailUID: 2000\nqmailGID: 2000\nmailQuotaSize: 1000000\ndeliveryMode: noforward\n\
         mailForwardingAddress: other@example.net\n",
        qmail::ldap::ssha(b"pw", b"salt")
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
