//! The verdict (`qmail::verify`, behind qmail-verify and smmapd) agrees with delivery: for a
//! table of tricky addresses — directory users, alternate addresses, case, catch-alls,
//! forward-only entries, account states, quota, users/cdb with and without extension files,
//! the alias user's `.qmail` files, a virtual domain, filter metacharacters — the verdict is
//! computed first, then each address is delivered for real (qmail-inject, qmail-send,
//! qmail-lspawn, qmail-getpw, qmail-local) and the first delivery attempt's result compared:
//! deliverable ↔ success, unknown / not postable / over quota ↔ failure (a bounce), temporary
//! ↔ deferral. The one deliberate difference: an address two entries claim bounces at
//! delivery but is a temporary failure at SMTP time (doc/DECISIONS.md, 10).

use crate::harness::slapd;
use crate::harness::*;
use crate::ldap_deliver::Dir;
use qmail::verify::{Verdict, Verifier};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// What delivery did on its first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Success,
    Failure,
    Deferral,
}

fn expected(v: &Verdict) -> Delivery {
    match v {
        Verdict::Deliverable => Delivery::Success,
        Verdict::Unknown(_) | Verdict::NotPostable(_) | Verdict::OverQuota(_) => Delivery::Failure,
        Verdict::Temporary(_) => Delivery::Deferral,
        Verdict::NotLocal => panic!("a remote address in the table"),
    }
}

/// Write `text` to `path`, owned by the delivery user (`uid`), mode 0644.
fn owned_file(path: &Path, text: &str, uid: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// A Maildir under `dir`, owned by `uid`.
fn owned_maildir(dir: &Path, uid: u32) {
    for sub in ["", "cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
        std::os::unix::fs::chown(dir.join(sub), Some(uid), Some(uid)).unwrap();
    }
}

#[test]
fn verdict_agrees_with_delivery() {
    let s = slapd::shared();
    let d = Dir::new("verdict");
    let sb = &d.sb;
    sb.control("locals", "mx.example.org\nexample.org\ncatch.example.org\n");
    sb.control("virtualdomains", "virt.example.org:virt\n");
    // directory entries
    d.user(s, "ann", "mailAlternateAddress: ann.other@example.org");
    d.user(s, "quiet", "accountStatus: noaccess");
    d.user(s, "off", "accountStatus: disabled");
    d.user(s, "gone", "accountStatus: deleted");
    let full = d.user(s, "full", "mailQuotaSize: 100");
    let (uid, _, _) = sb.user_home("full");
    owned_file(&full.join("Maildir/cur/1.2.host,S=5000:2,S"), &"x".repeat(5000), uid);
    let (_, _, root0) = sb.user_home("root0");
    s.add(
        &d.entry("root0", &format!("qmailUID: 0\nqmailGID: 0\nhomeDirectory: {}", root0.display())),
    );
    s.add(&d.entry("fwd", "mailForwardingAddress: ann@example.org"));
    d.user(s, "list", "mail: list-catchall@example.org");
    let catch = d.user(s, "catcher", "mail: catchall@catch.example.org");
    d.user(s, "dup1", "mailAlternateAddress: twice@example.org");
    d.user(s, "dup2", "mailAlternateAddress: twice@example.org");
    // users/cdb: an exact assignment and a wildcard one with one extension file
    let (cuid, cgid, carl) = sb.user_home("carl");
    let (_, _, dave) = sb.user_home("dave");
    fs::write(
        sb.home.join("users/assign"),
        format!(
            "=carl:carl:{cuid}:{cgid}:{}:::\n+dave-:dave:{cuid}:{cgid}:{}:-::\n.\n",
            carl.display(),
            dave.display()
        ),
    )
    .unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    owned_file(&dave.join(".qmail-news"), "./Maildir/\n", cuid);
    // the alias user: postmaster, lists-*, and the virtual domain's catch-all
    let alias = sb.home.join("alias");
    let auid = std::fs::metadata(&alias).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    owned_maildir(&alias.join("Maildir"), auid);
    for name in [".qmail-postmaster", ".qmail-lists-default", ".qmail-virt-default"] {
        owned_file(&alias.join(name), "./Maildir/\n", auid);
    }

    let table: &[(&str, Option<Delivery>)] = &[
        ("ann@example.org", Some(Delivery::Success)),
        ("ann.other@example.org", Some(Delivery::Success)),
        ("ANN@Example.ORG", Some(Delivery::Success)),
        ("ann-ext@example.org", Some(Delivery::Failure)),
        ("quiet@example.org", Some(Delivery::Success)),
        ("off@example.org", Some(Delivery::Failure)),
        ("gone@example.org", Some(Delivery::Failure)),
        ("full@example.org", Some(Delivery::Failure)),
        ("root0@example.org", Some(Delivery::Deferral)),
        ("fwd@example.org", Some(Delivery::Success)),
        ("list-anything@example.org", Some(Delivery::Success)),
        ("list-a-b-c@example.org", Some(Delivery::Success)),
        ("whoever@catch.example.org", Some(Delivery::Success)),
        ("carl@example.org", Some(Delivery::Success)),
        ("carl-x@example.org", Some(Delivery::Failure)),
        ("dave-news@example.org", Some(Delivery::Success)),
        ("dave-sports@example.org", Some(Delivery::Failure)),
        ("postmaster@example.org", Some(Delivery::Success)),
        ("PostMaster@example.org", Some(Delivery::Success)),
        ("postmaster-x@example.org", Some(Delivery::Failure)),
        ("lists-anything@example.org", Some(Delivery::Success)),
        ("joe@virt.example.org", Some(Delivery::Success)),
        ("nobody-here@example.org", Some(Delivery::Failure)),
        ("a*b@example.org", Some(Delivery::Failure)),
        ("(x)@example.org", Some(Delivery::Failure)),
        ("back\\slash@example.org", Some(Delivery::Failure)),
        // doc/DECISIONS.md, 10: the verdict waits, delivery bounces
        ("twice@example.org", None),
    ];
    // verdicts first: the deliveries below change nothing they depend on
    let mut verifier = Verifier::new(&sb.home);
    let verdicts: Vec<Verdict> =
        table.iter().map(|(a, _)| verifier.verdict(a.as_bytes())).collect();

    let run = sb.start();
    let mut mismatches = Vec::new();
    for ((address, want), verdict) in table.iter().zip(&verdicts) {
        sb.inject(&["-f", "", address], "Subject: verdict\n\nbody\n");
        let mut line = None;
        assert!(
            wait_until(Duration::from_secs(30), || {
                line = result_of(&run, address);
                line.is_some()
            }),
            "no result for {address}; log:\n{}",
            run.log_text()
        );
        let line = line.unwrap_or_default();
        let got = if line.contains(": success: ") {
            Delivery::Success
        } else if line.contains(": failure: ") {
            Delivery::Failure
        } else {
            Delivery::Deferral
        };
        if Some(got) != *want && (want.is_some() || got != Delivery::Failure) {
            mismatches.push(format!("{address}: delivery {got:?}, table {want:?}: {line}"));
        }
        match want {
            Some(_) if expected(verdict) != got => mismatches
                .push(format!("{address}: verdict {verdict:?} but delivery {got:?}: {line}")),
            None => assert!(
                matches!(verdict, Verdict::Temporary(_)),
                "{address}: an ambiguous address must wait at SMTP time, got {verdict:?}"
            ),
            _ => {}
        }
    }
    assert!(mismatches.is_empty(), "{}\nlog:\n{}", mismatches.join("\n"), run.log_text());
    assert_eq!(Sandbox::maildir_new(&catch).len(), 1);
}

/// The result line of the delivery to `address` (or to its virtual-domain form), if any.
fn result_of(run: &Running, address: &str) -> Option<String> {
    let lines = run.log_lines();
    let virt = format!("virt-{address}");
    let num = lines.iter().rev().find_map(|l| {
        let rest = l.strip_prefix("starting delivery ")?;
        let (num, tail) = rest.split_once(": ")?;
        let to = tail.rsplit_once(" to local ")?.1;
        (to == address || to == virt).then(|| num.to_string())
    })?;
    let prefix = format!("delivery {num}: ");
    lines.into_iter().find(|l| l.starts_with(&prefix) && !l.starts_with(&format!("{prefix}log: ")))
}
