//! qmailctl init: the installation root it makes, and leaving an existing one alone.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

#[test]
fn init_makes_a_complete_root() {
    let sb = Sandbox::new();
    let h = &sb.home;
    for dir in ["bin", "control", "queue", "users", "alias", "doc"] {
        assert!(h.join(dir).is_dir(), "{dir}");
    }
    let mode = |p: &str| fs::metadata(h.join(p)).unwrap().permissions().mode() & 0o7777;
    for (path, want) in [
        ("queue", 0o750),
        ("queue/pid", 0o700),
        ("queue/mess", 0o750),
        ("queue/mess/0", 0o750),
        ("queue/intd", 0o700),
        ("queue/todo", 0o750),
        ("queue/local/0", 0o700),
        ("queue/remote/0", 0o700),
        ("queue/bounce", 0o700),
        ("queue/lock", 0o750),
        ("queue/lock/tcpto", 0o644),
        ("queue/lock/sendmutex", 0o600),
        ("queue/lock/trigger", 0o622),
    ] {
        assert_eq!(mode(path), want, "mode of {path}: {:o}", mode(path));
    }
    let last = qmail::auto::SPLIT - 1;
    assert_eq!(mode(&format!("queue/mess/{last}")), 0o750);
    assert_eq!(mode(&format!("queue/info/{last}")), 0o700);
    assert!(!h.join(format!("queue/mess/{}", qmail::auto::SPLIT)).exists());
    assert!(fs::metadata(h.join("queue/lock/trigger")).unwrap().file_type().is_fifo());
    assert_eq!(fs::read(h.join("queue/lock/tcpto")).unwrap(), vec![0u8; 1024]);
    for prog in ["qmail-queue", "qmail-inject", "sendmail", "qmail-cdb", "qmail-newu", "qmailctl"] {
        assert!(h.join("bin").join(prog).exists(), "bin/{prog}");
    }
    assert_eq!(fs::read_to_string(h.join("users/assign")).unwrap(), ".\n");
}

#[test]
fn init_writes_sensible_controls() {
    let tmp = TempDir::new("ctl");
    let home = tmp.path().join("root");
    let out =
        sb_cmd().args(["init", "--domain", "Example.NET", "--home"]).arg(&home).output().unwrap();
    assert_ok(&out, "init");
    let read = |n: &str| fs::read_to_string(home.join("control").join(n)).unwrap();
    let me = read("me");
    assert!(me.ends_with('\n') && me.trim().contains('.'), "me is a FQDN: {me:?}");
    assert!(read("locals").lines().any(|l| l == "example.net"));
    assert!(read("locals").lines().any(|l| l == me.trim()));
    assert_eq!(read("rcpthosts"), read("locals"));
    assert_eq!(read("defaultdomain"), "example.net\n");
}

#[test]
fn init_on_an_existing_root_changes_nothing() {
    let sb = Sandbox::new();
    sb.control("me", "changed.example\n");
    fs::remove_file(sb.home.join("control/locals")).unwrap();
    let out = sb_cmd().args(["init", "--home"]).arg(&sb.home).output().unwrap();
    assert_ok(&out, "second init");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));
    assert_eq!(fs::read_to_string(sb.home.join("control/me")).unwrap(), "changed.example\n");
    assert!(!sb.home.join("control/locals").exists());
}

#[test]
fn usage_errors_exit_100() {
    let out = sb_cmd().args(["init", "--bogus"]).output().unwrap();
    assert_eq!(code(&out), 100);
    let out = sb_cmd().arg("frobnicate").output().unwrap();
    assert_eq!(code(&out), 100);
}

fn sb_cmd() -> std::process::Command {
    let mut c = std::process::Command::new(bin("qmailctl"));
    c.env_remove("QMAILHOME");
    c
}

#[test]
fn every_program_has_a_man_page_with_exit_codes() {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc");
    for prog in qmail::auto::PROGRAMS {
        let page = doc.join(format!("{prog}.8"));
        let text = fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let has = text.contains(".SH EXIT CODES") || text.contains(".SH \"EXIT CODES\"");
        assert!(has, "{} has no EXIT CODES section", page.display());
    }
}

#[test]
fn qmail_control_5_lists_every_known_file() {
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/qmail-control.5");
    let text = fs::read_to_string(page).unwrap();
    for k in qmail::control::KNOWN {
        assert!(text.contains(&format!(".B {}\n", k.name)), "qmail-control.5 lacks {}", k.name);
    }
}
