//! qmail-cdb and qmail-newu: the built programs against Debian's tinycdb (`cdb`) in both
//! directions, the list rules of qmail-cdb, and users/assign to users/cdb to
//! `qmail::users::lookup`, including bad files that must leave the old database alone.

use crate::harness::*;
use qmail::cdb::Reader;
use qmail::users;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// tinycdb's `cdb`; missing it is a failure of the test set-up, never a reason to skip.
fn tinycdb() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = Path::new(dir).join("cdb");
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "the `cdb` command (Debian package tinycdb) is missing: run tests/run, which installs \
         it (or apt-get install tinycdb)"
    );
}

fn tiny(args: &[&str], dir: &Path, stdin: &[u8]) -> Output {
    run_with(Command::new(tinycdb()).args(args).current_dir(dir), stdin)
}

/// tinycdb's native dump of `records`: `+klen,dlen:key->data` lines, then a blank line.
fn dump(records: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        out.extend(format!("+{},{}:", k.len(), v.len()).bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(b"->");
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn assert_code(out: &Output, want: i32, what: &str) {
    assert_eq!(
        code(out),
        want,
        "{what}\nstdout:\n{}\nstderr:\n{}",
        show(&out.stdout),
        show(&out.stderr)
    );
}

#[test]
fn qmail_cdb_applies_the_list_rules() {
    let sb = Sandbox::new();
    let dir = sb.tmp.path();
    let input = b"Example.ORG \t \r\n\
                  # a comment\n\
                  \n\
                  \r\n\
                  \x20\x20\t\n\
                  mx.example.org\n\
                  #Not.A.Key\n\
                  \x20Leading.Blank\n\
                  dup.example\n\
                  DUP.example\n\
                  a#b\n\
                  last.example";
    let out = sb.run("qmail-cdb", &["t.cdb", "t.tmp"], input);
    assert_ok(&out, "qmail-cdb");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "silent");
    let target = dir.join("t.cdb");
    assert!(!dir.join("t.tmp").exists(), "tmpfile renamed away");
    assert_eq!(mode(&target), 0o644, "mode {:o}", mode(&target));

    let keys: &[&[u8]] = &[
        b"example.org",
        b"mx.example.org",
        b" leading.blank",
        b"dup.example",
        b"dup.example",
        b"a#b",
        b"last.example",
    ];
    let records: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (*k, &b""[..])).collect();
    let out = tiny(&["-d", "t.cdb"], dir, b"");
    assert_ok(&out, "cdb -d");
    assert_eq!(show(&out.stdout), show(&dump(&records)), "tinycdb dump of qmail-cdb's output");
    for key in keys {
        let key = std::str::from_utf8(key).unwrap();
        let out = tiny(&["-q", "t.cdb", key], dir, b"");
        assert_ok(&out, &format!("cdb -q {key:?}"));
        assert!(out.stdout.is_empty(), "{key:?}: empty value");
    }
    for absent in ["Example.ORG", "# a comment", "#not.a.key", "", "leading.blank", "example.org "]
    {
        let out = tiny(&["-q", "t.cdb", absent], dir, b"");
        assert_code(&out, 100, &format!("cdb -q {absent:?} finds nothing"));
    }

    // the library sees the same
    let r = Reader::open(&target).unwrap().unwrap();
    assert_eq!(r.get_all(b"dup.example").unwrap().len(), 2);
    assert!(r.contains(b"example.org").unwrap());
    assert!(!r.contains(b"").unwrap());
}

#[test]
fn qmail_cdb_replaces_atomically_and_fails_cleanly() {
    let sb = Sandbox::new();
    let dir = sb.tmp.path();
    let target = dir.join("t.cdb");
    assert_ok(&sb.run("qmail-cdb", &["t.cdb", "t.tmp"], b"one\n"), "first");
    assert_ok(&sb.run("qmail-cdb", &["t.cdb", "t.tmp"], b"two\n"), "second");
    let out = tiny(&["-d", "t.cdb"], dir, b"");
    assert_eq!(show(&out.stdout), show(&dump(&[(b"two", b"")])));

    // an empty list is an empty database
    assert_ok(&sb.run("qmail-cdb", &["e.cdb", "e.tmp"], b""), "empty");
    assert_eq!(fs::metadata(dir.join("e.cdb")).unwrap().len(), 2048);
    assert_eq!(show(&tiny(&["-d", "e.cdb"], dir, b"").stdout), "\n");

    // a line over 64 KiB: fatal, tmpfile removed, old target intact
    let before = fs::read(&target).unwrap();
    let mut long = b"ok\n".to_vec();
    long.extend(vec![b'x'; 64 * 1024 + 1]);
    long.push(b'\n');
    let out = sb.run("qmail-cdb", &["t.cdb", "t.tmp"], &long);
    assert_code(&out, 111, "long line");
    let err = show(&out.stderr);
    assert!(err.starts_with("qmail-cdb: fatal: line 2 "), "stderr: {err}");
    assert!(!dir.join("t.tmp").exists(), "tmpfile removed");
    assert_eq!(fs::read(&target).unwrap(), before, "old target intact");

    // a line of exactly 64 KiB (newline included) is fine
    let mut fits = vec![b'y'; 64 * 1024 - 1];
    fits.push(b'\n');
    assert_ok(&sb.run("qmail-cdb", &["f.cdb", "f.tmp"], &fits), "64 KiB");

    // an unwritable tmpfile
    let out = sb.run("qmail-cdb", &["t.cdb", "no/such/dir/t.tmp"], b"x\n");
    assert_code(&out, 111, "unwritable tmpfile");
    assert!(show(&out.stderr).starts_with("qmail-cdb: fatal: unable to write to "));
    assert_eq!(fs::read(&target).unwrap(), before, "old target intact");

    // a rename onto a directory fails; the tmpfile is removed
    fs::create_dir(dir.join("d.cdb")).unwrap();
    let out = sb.run("qmail-cdb", &["d.cdb", "d.tmp"], b"x\n");
    assert_code(&out, 111, "target is a directory");
    assert!(show(&out.stderr).starts_with("qmail-cdb: fatal: unable to move d.tmp to d.cdb"));
    assert!(!dir.join("d.tmp").exists());
}

#[test]
fn qmail_cdb_wrong_argument_count_is_111() {
    let sb = Sandbox::new();
    for args in [&[][..], &["t.cdb"], &["t.cdb", "t.tmp", "extra"]] {
        let out = sb.run("qmail-cdb", args, b"x\n");
        assert_code(&out, 111, &format!("qmail-cdb {args:?}"));
        assert!(
            show(&out.stderr).contains("Usage: qmail-cdb"),
            "usage on stderr: {}",
            show(&out.stderr)
        );
        assert!(!sb.tmp.path().join("t.cdb").exists());
    }
}

#[test]
fn tinycdb_databases_read_through_the_library() {
    let dir = TempDir::new("tinycdb");
    let records: &[(&[u8], &[u8])] = &[
        (b"one", b"1"),
        (b"two", b"2"),
        (b"one", b"uno"),
        (b"", b"empty key"),
        (b"nul\0key", b"nul\0value\nwith newline"),
        (b"no value", b""),
    ];
    let out = tiny(&["-c", "t.cdb"], dir.path(), &dump(records));
    assert_ok(&out, "cdb -c");
    let r = Reader::open(&dir.path().join("t.cdb")).unwrap().unwrap();
    assert_eq!(r.get(b"one").unwrap(), Some(b"1".to_vec()), "first of duplicates");
    assert_eq!(
        r.get_all(b"one").unwrap(),
        vec![b"1".to_vec(), b"uno".to_vec()],
        "duplicates in file order"
    );
    for (k, v) in records.iter().filter(|(k, _)| *k != b"one") {
        assert_eq!(r.get(k).unwrap().as_deref(), Some(*v), "key {:?}", show(k));
    }
    assert_eq!(r.get(b"three").unwrap(), None);
    assert_eq!(r.get(b"on").unwrap(), None);

    // many keys: every hash table used
    let keys: Vec<String> = (0..2000).map(|i| format!("key{i}")).collect();
    let many: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (k.as_bytes(), k.as_bytes())).collect();
    assert_ok(&tiny(&["-c", "m.cdb"], dir.path(), &dump(&many)), "cdb -c");
    let r = Reader::open(&dir.path().join("m.cdb")).unwrap().unwrap();
    for k in &keys {
        assert_eq!(r.get(k.as_bytes()).unwrap().as_deref(), Some(k.as_bytes()));
    }

    // an empty database
    assert_ok(&tiny(&["-c", "e.cdb"], dir.path(), b"\n"), "cdb -c empty");
    assert_eq!(fs::metadata(dir.path().join("e.cdb")).unwrap().len(), 2048);
    let r = Reader::open(&dir.path().join("e.cdb")).unwrap().unwrap();
    assert_eq!(r.get(b"").unwrap(), None);
    assert_eq!(r.get(b"one").unwrap(), None);
}

const ASSIGN: &str = "\
=joe:joe:1000:1001:/home/joe:::
=Joe:shadowed:1:1:/nowhere:::
+joe-:joe:1000:1001:/home/joe:-::
+joe-list-:lists:2000:2001:/var/lists:-:l-:
+:alias:7790:2108:/var/qmail/alias:-::
.
";

fn lookup(home: &Path, local: &str) -> Option<(String, u32, u32, String, String, String)> {
    let r = Reader::open(&home.join(users::CDB)).unwrap().unwrap();
    users::lookup(&r, local)
        .unwrap()
        .map(|a| (a.user, a.uid, a.gid, a.home.display().to_string(), a.dash, a.ext))
}

#[test]
fn qmail_newu_builds_users_cdb() {
    let sb = Sandbox::new();
    let h = &sb.home;
    fs::write(h.join(users::ASSIGN), ASSIGN).unwrap();
    let out = sb.run("qmail-newu", &[], b"");
    assert_ok(&out, "qmail-newu");
    assert!(out.stderr.is_empty(), "silent");
    assert!(!h.join(users::CDB_TMP).exists());
    assert_eq!(mode(&h.join(users::CDB)) & 0o044, 0o044, "readable");

    // upstream's record format, as tinycdb sees it
    let out = tiny(&["-d", "users/cdb"], h, b"");
    assert_ok(&out, "cdb -d users/cdb");
    let want: &[(&[u8], &[u8])] = &[
        (b"!joe\0", b"joe\x001000\x001001\x00/home/joe\x00\x00"),
        (b"!joe\0", b"shadowed\x001\x001\x00/nowhere\x00\x00"),
        (b"!joe-", b"joe\x001000\x001001\x00/home/joe\x00-\x00"),
        (b"!joe-list-", b"lists\x002000\x002001\x00/var/lists\x00-\x00l-"),
        (b"!", b"alias\x007790\x002108\x00/var/qmail/alias\x00-\x00"),
        (b"", b"-"),
    ];
    assert_eq!(show(&out.stdout), show(&dump(want)));

    let row = |user: &str, uid, gid, home: &str, dash: &str, ext: &str| {
        Some((user.to_string(), uid, gid, home.to_string(), dash.to_string(), ext.to_string()))
    };
    let joe = |dash: &str, ext: &str| row("joe", 1000, 1001, "/home/joe", dash, ext);
    let cases = [
        ("joe", joe("", "")),
        ("JOE", joe("", "")),
        ("joe-", joe("-", "")),
        ("joe-news", joe("-", "news")),
        ("Joe-News", joe("-", "News")),
        ("joe-list-qmail", row("lists", 2000, 2001, "/var/lists", "-", "l-qmail")),
        ("nobody", row("alias", 7790, 2108, "/var/qmail/alias", "-", "nobody")),
        ("joel", row("alias", 7790, 2108, "/var/qmail/alias", "-", "joel")),
    ];
    for (local, want) in cases {
        assert_eq!(lookup(h, local), want, "lookup {local:?}");
    }

    // without a catch-all, unknown local parts have no assignment
    fs::write(h.join(users::ASSIGN), "=joe:joe:1:2:/h:::\n.\n").unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    assert_eq!(lookup(h, "nobody"), None);
    assert_eq!(lookup(h, "joe-x"), None);
    assert_eq!(lookup(h, "joe").unwrap().0, "joe");

    // the installed default (just ".") makes an empty assignment table
    fs::write(h.join(users::ASSIGN), ".\n").unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    assert_eq!(lookup(h, "joe"), None);
}

#[test]
fn qmail_newu_refuses_bad_files() {
    let sb = Sandbox::new();
    let h = &sb.home;
    fs::write(h.join(users::ASSIGN), ASSIGN).unwrap();
    assert_ok(&sb.run("qmail-newu", &[], b""), "qmail-newu");
    let good = fs::read(h.join(users::CDB)).unwrap();

    let bad: &[(&[u8], &str)] = &[
        (b"", "line 1: end of file"),
        (b"=joe:joe:1000:1001:/home/joe:::\n", "line 2: end of file"),
        (b"=joe:joe:1000:1001:/home/joe:::", "line 1: end of file"),
        (b"=joe:joe:1000:1001:/home/joe::\n.\n", "line 1: fewer than 7"),
        (b"=joe\n.\n", "line 1: no colon"),
        (b":joe:1:2:/h:::\n.\n", "line 1: line does not start"),
        (b"joe:joe:1:2:/h:::\n.\n", "line 1: line does not start"),
        (b"=jo\0e:joe:1:2:/h:::\n.\n", "line 1: NUL"),
        (b"=joe:joe:root:2:/h:::\n.\n", "line 1: uid is not a number"),
        (b"=joe:joe:1:-2:/h:::\n.\n", "line 1: gid is not a number"),
        (b"\n.\n", "line 1: line does not start"),
    ];
    let mut long = b"=a:a:1:1:/".to_vec();
    long.extend(vec![b'x'; 70_000]);
    long.extend(b":::\n.\n");
    for (input, reason) in bad.iter().copied().chain([(&long[..], "line 1: line too long")]) {
        fs::write(h.join(users::ASSIGN), input).unwrap();
        let out = sb.run("qmail-newu", &[], b"");
        assert_code(&out, 111, &format!("assign {:?}", show(input)));
        let want = format!("qmail-newu: fatal: bad format in users/assign {reason}");
        assert!(
            show(&out.stderr).starts_with(&want),
            "assign {:?}\nexpected: {want}\nactual:   {}",
            show(input),
            show(&out.stderr)
        );
        assert!(!h.join(users::CDB_TMP).exists(), "no users/cdb.tmp left");
        assert_eq!(fs::read(h.join(users::CDB)).unwrap(), good, "old users/cdb");
    }

    // a missing assign file and an argument are failures too
    fs::remove_file(h.join(users::ASSIGN)).unwrap();
    let out = sb.run("qmail-newu", &[], b"");
    assert_code(&out, 111, "no users/assign");
    assert!(show(&out.stderr).starts_with("qmail-newu: fatal: unable to open users/assign"));
    fs::write(h.join(users::ASSIGN), ".\n").unwrap();
    assert_code(&sb.run("qmail-newu", &["users"], b""), 111, "an argument");
    assert_eq!(fs::read(h.join(users::CDB)).unwrap(), good, "old users/cdb");
}
