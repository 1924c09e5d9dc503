//! qmail-local: Maildir and mbox delivery, forwards through the real qmail-queue, programs and
//! their environment, hostile envelope values, program exit codes, the `.qmail` lookup with
//! extensions and `-default`, loop detection, every pre-check, and `control/dirmaker` for a
//! missing home. Each test runs the built qmail-local directly in a sandbox, with the message
//! in a file on fd 0 and a home directory (0755, owned by the current user) under the sandbox. Tests may run as root, which ignores
//! permission bits, so unwritable targets are made with regular files in the way.

use crate::harness::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MESSAGE: &[u8] = b"From: alice@example.com\nSubject: hi\n\nFrom the start\n>From here\nbye\n";

/// A sandbox with a user `joe` whose home is `<sandbox>/joe` holding an empty `Maildir/`.
struct Local {
    sb: Sandbox,
    home: PathBuf,
}

/// The eight arguments after the options, by name.
struct Call<'a> {
    local: &'a str,
    dash: &'a str,
    ext: &'a str,
    domain: &'a str,
    sender: &'a [u8],
    aliasempty: &'a str,
}

impl Default for Call<'_> {
    fn default() -> Self {
        Call {
            local: "joe",
            dash: "",
            ext: "",
            domain: "example.org",
            sender: b"alice@example.com",
            aliasempty: "./Maildir/",
        }
    }
}

impl Local {
    fn new() -> Self {
        let sb = Sandbox::new();
        let home = sb.tmp.path().join("joe");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        make_maildir(&home.join("Maildir"));
        Local { sb, home }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    /// Write `~/<name>` with mode 0644.
    fn file(&self, name: &str, content: &[u8]) {
        let p = self.path(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// A command for qmail-local with the message in a file on fd 0.
    fn cmd(&self, message: &[u8]) -> Command {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let msg = self.sb.tmp.path().join(format!("message-{n}"));
        fs::write(&msg, message).unwrap();
        let mut c = self.sb.cmd("qmail-local");
        c.stdin(fs::File::open(&msg).unwrap());
        c
    }

    fn run(&self, call: &Call, message: &[u8]) -> Output {
        self.run_cmd(self.cmd(message), call)
    }

    fn run_cmd(&self, mut cmd: Command, call: &Call) -> Output {
        cmd.arg("--")
            .arg("joe")
            .arg(&self.home)
            .args([call.local, call.dash, call.ext, call.domain])
            .arg(std::ffi::OsStr::from_bytes(call.sender))
            .arg(call.aliasempty);
        cmd.output().unwrap()
    }

    /// The files in `~/Maildir/<sub>`.
    fn maildir(&self, sub: &str) -> Vec<PathBuf> {
        list(&self.path("Maildir").join(sub))
    }
}

fn make_maildir(dir: &Path) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Assert the exit code and that stdout contains `needle`, printing everything otherwise.
fn assert_exit(out: &Output, want: i32, needle: &str) {
    assert!(
        code(out) == want && stdout(out).contains(needle),
        "want exit {want} with {needle:?}, got {}\nstdout:\n{}\nstderr:\n{}",
        code(out),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

const RP_DT: &[u8] = b"Return-Path: <alice@example.com>\nDelivered-To: joe@example.org\n";

#[test]
fn maildir_delivery_adds_return_path_and_delivered_to() {
    let l = Local::new();
    let out = l.run(&Call::default(), MESSAGE);
    assert_exit(&out, 0, "did 1+0+0\n");
    assert_eq!(stdout(&out), "did 1+0+0\n");
    let new = l.maildir("new");
    assert_eq!(new.len(), 1, "exactly one file in new/");
    let data = fs::read(&new[0]).unwrap();
    assert_eq!(String::from_utf8_lossy(&data), String::from_utf8_lossy(&[RP_DT, MESSAGE].concat()));
    let name = new[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!(",S={}", data.len())), "{name}");
    assert!(l.maildir("tmp").is_empty(), "nothing left in tmp/");
    let mode = fs::metadata(&new[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn null_sender_and_quoted_return_path() {
    let l = Local::new();
    assert_exit(&l.run(&Call { sender: b"", ..Call::default() }, MESSAGE), 0, "did 1+0+0");
    assert_exit(&l.run(&Call { sender: b"a b@c.d", ..Call::default() }, MESSAGE), 0, "did");
    let texts: Vec<String> = l
        .maildir("new")
        .iter()
        .map(|p| String::from_utf8_lossy(&fs::read(p).unwrap()).into())
        .collect();
    assert!(texts
        .iter()
        .any(|t| t.starts_with("Return-Path: <>\nDelivered-To: joe@example.org\n")));
    assert!(texts.iter().any(|t| t.starts_with("Return-Path: <\"a b\"@c.d>\n")), "{texts:?}");
}

#[test]
fn many_deliveries_get_distinct_names() {
    let l = Local::new();
    l.file(".qmail", b"./Maildir/\n./Maildir/\n./Maildir/\n");
    for _ in 0..5 {
        assert_exit(&l.run(&Call::default(), MESSAGE), 0, "did 3+0+0");
    }
    assert_eq!(l.maildir("new").len(), 15);
    assert!(l.maildir("tmp").is_empty());
}

#[test]
fn mbox_delivery_with_from_line_and_quoting() {
    let l = Local::new();
    l.file(".qmail", b"./Mailbox\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 0, "did 1+0+0");
    assert_exit(&l.run(&Call { sender: b"", ..Call::default() }, b"no newline at end"), 0, "did");
    let mbox = String::from_utf8(fs::read(l.path("Mailbox")).unwrap()).unwrap();
    let lines: Vec<&str> = mbox.split('\n').collect();
    let from = lines[0].strip_prefix("From alice@example.com ").expect("From_ line");
    // `Www Mmm DD HH:MM:SS YYYY`
    assert_eq!(from.len(), 24, "{from:?}");
    assert_eq!(
        &lines[1..10],
        &[
            "Return-Path: <alice@example.com>",
            "Delivered-To: joe@example.org",
            "From: alice@example.com",
            "Subject: hi",
            "",
            ">From the start",
            ">>From here",
            "bye",
            "",
        ]
    );
    assert!(lines[10].starts_with("From MAILER-DAEMON "), "{mbox}");
    assert_eq!(
        &lines[11..],
        &["Return-Path: <>", "Delivered-To: joe@example.org", "no newline at end", "", ""]
    );
    let mode = fs::metadata(l.path("Mailbox")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn mbox_that_cannot_be_opened_is_temporary() {
    let l = Local::new();
    l.file("plain", b"");
    l.file(".qmail", b"./plain/Mailbox\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "#4.2.1");
}

#[test]
fn forward_is_queued_with_delivered_to() {
    let l = Local::new();
    l.file(".qmail", b"&bob@example.net\n");
    let out = l.run(&Call::default(), MESSAGE);
    assert_exit(&out, 0, "did 0+1+0\nqp ");
    let todo = l.sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].sender(), "alice@example.com");
    assert_eq!(todo[0].recipients(), vec!["bob@example.net"]);
    let text = todo[0].text();
    let (received, rest) = text.split_once('\n').unwrap();
    assert!(received.starts_with("Received: (qmail "), "{text}");
    assert_eq!(rest.as_bytes(), [&b"Delivered-To: joe@example.org\n"[..], MESSAGE].concat());
    assert!(l.maildir("new").is_empty());
}

#[test]
fn several_forwards_are_one_bulk_message() {
    let l = Local::new();
    l.file(".qmail", b"bob@example.net\n# comment\n&carol@example.net\n./Maildir/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 0, "did 1+2+0\nqp ");
    let todo = l.sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].recipients(), vec!["bob@example.net", "carol@example.net"]);
    let text = todo[0].text();
    let rest = text.split_once('\n').unwrap().1;
    assert!(
        rest.starts_with("Delivered-To: joe@example.org\nPrecedence: bulk\nFrom: alice"),
        "{text}"
    );
    assert_eq!(l.maildir("new").len(), 1);
}

#[test]
fn owner_files_change_the_forwarding_sender() {
    let l = Local::new();
    let call = Call { local: "joe-list", dash: "-", ext: "list", ..Call::default() };
    l.file(".qmail-list", b"&member@example.net\n|printf '%s' \"$NEWSENDER\" > newsender\n");
    l.file(".qmail-list-owner", b"joe\n");
    assert_exit(&l.run(&call, MESSAGE), 0, "did 0+1+1");
    assert_eq!(fs::read_to_string(l.path("newsender")).unwrap(), "joe-list-owner@example.org");
    l.file(".qmail-list-owner-default", b"joe\n");
    assert_exit(&l.run(&call, MESSAGE), 0, "did 0+1+1");
    let want = "joe-list-owner-@example.org-@[]";
    assert_eq!(fs::read_to_string(l.path("newsender")).unwrap(), want);
    let mut senders: Vec<String> = l.sb.todo().iter().map(|m| m.sender().to_string()).collect();
    senders.sort();
    assert_eq!(senders, vec![want.to_string(), "joe-list-owner@example.org".to_string()]);
    // the null sender is never changed
    assert_exit(&l.run(&Call { sender: b"", ..call }, MESSAGE), 0, "did 0+1+1");
    assert_eq!(fs::read_to_string(l.path("newsender")).unwrap(), "");
}

#[test]
fn queue_verdicts_are_passed_on() {
    let l = Local::new();
    l.file(".qmail", b"&bob@example.net\n");
    for (qq_exit, want, status) in [(31, 100, "#5.3.0"), (53, 111, "#4.3.0")] {
        let script = l.sb.tmp.path().join(format!("qq-{qq_exit}"));
        fs::write(&script, format!("#!/bin/sh\ncat >/dev/null\nexit {qq_exit}\n")).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = l.cmd(MESSAGE);
        cmd.env("QMAILQUEUE", &script);
        assert_exit(&l.run_cmd(cmd, &Call::default()), want, status);
    }
}

/// The environment a program saw, from `env -0 > envout`.
fn program_env(l: &Local) -> Vec<(String, String)> {
    let raw = fs::read(l.path("envout")).unwrap();
    raw.split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let s = String::from_utf8_lossy(r);
            let (k, v) = s.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn program_gets_the_environment_and_the_message() {
    let l = Local::new();
    l.file(
        ".qmail-foo-default",
        b"|env -0 > envout\n|cat > got1\n|head -c 3 > /dev/null\n|cat > got2\n",
    );
    let call = Call {
        local: "joe-foo-Bar-baz",
        dash: "-",
        ext: "foo-Bar-baz",
        domain: "mail.example.org",
        ..Call::default()
    };
    let out = l.run(&call, MESSAGE);
    assert_exit(&out, 0, "did 0+0+4\n");
    let env = program_env(&l);
    let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let home = l.home.to_str().unwrap();
    let rows: &[(&str, &str)] = &[
        ("SENDER", "alice@example.com"),
        ("NEWSENDER", "alice@example.com"),
        ("RECIPIENT", "joe-foo-Bar-baz@mail.example.org"),
        ("USER", "joe"),
        ("HOME", home),
        ("HOST", "mail.example.org"),
        ("HOST2", "mail.example"),
        ("HOST3", "mail"),
        ("HOST4", "mail"),
        ("LOCAL", "joe-foo-Bar-baz"),
        ("EXT", "foo-Bar-baz"),
        ("EXT2", "Bar-baz"),
        ("EXT3", "baz"),
        ("EXT4", ""),
        ("DEFAULT", "Bar-baz"),
        ("DTLINE", "Delivered-To: joe-foo-Bar-baz@mail.example.org\n"),
        ("RPLINE", "Return-Path: <alice@example.com>\n"),
        ("PWD", home),
    ];
    for &(k, want) in rows {
        assert_eq!(get(k), Some(want), "{k} in {env:?}");
    }
    let ufline = get("UFLINE").unwrap();
    assert!(ufline.starts_with("From alice@example.com ") && ufline.ends_with('\n'), "{ufline:?}");
    // every program reads the message from the start, without added header lines
    assert_eq!(fs::read(l.path("got1")).unwrap(), MESSAGE);
    assert_eq!(fs::read(l.path("got2")).unwrap(), MESSAGE);
}

#[test]
fn default_is_unset_without_a_default_file() {
    let l = Local::new();
    l.file(".qmail-foo", b"|env -0 > envout\n");
    let call = Call { local: "joe-foo", dash: "-", ext: "foo", ..Call::default() };
    assert_exit(&l.run(&call, MESSAGE), 0, "did 0+0+1");
    assert!(!program_env(&l).iter().any(|(k, _)| k == "DEFAULT"));
}

#[test]
fn hostile_senders_reach_programs_only_as_values() {
    let l = Local::new();
    let trap = l.sb.tmp.path().join("pwned");
    l.file(
        ".qmail",
        b"|printf '%s' \"$SENDER\" > sender-out\n|printf '%s' \"$RPLINE\" > /dev/null\n",
    );
    let t = trap.display();
    let senders: Vec<String> = vec![
        format!("() {{ :;}}; touch {t}"),
        format!("$(touch {t})@example.com"),
        format!("`touch {t}`@example.com"),
        format!("a; touch {t}; b@example.com"),
        format!("a' ; touch {t}; '@example.com"),
        format!("a\" ; touch {t}; \"@example.com"),
        format!("a|touch {t}@example.com"),
        format!("a\ntouch {t}\n@example.com"),
        format!("-e touch {t}"),
    ];
    for sender in &senders {
        let out = l.run(&Call { sender: sender.as_bytes(), ..Call::default() }, MESSAGE);
        assert_exit(&out, 0, "did 0+0+2");
        assert_eq!(&fs::read_to_string(l.path("sender-out")).unwrap(), sender);
        assert!(!trap.exists(), "{sender:?} ran a command");
    }
    // the same through an extension and the local part
    let call =
        Call { local: "joe-$(touch pwned)", dash: "-", ext: "$(touch pwned)", ..Call::default() };
    l.file(".qmail-default", b"|printf '%s' \"$EXT$DEFAULT$LOCAL\" > ext-out\n");
    assert_exit(&l.run(&call, MESSAGE), 0, "did 0+0+1");
    assert_eq!(
        fs::read_to_string(l.path("ext-out")).unwrap(),
        "$(touch pwned)$(touch pwned)joe-$(touch pwned)"
    );
    assert!(!l.path("pwned").exists());
}

#[test]
fn program_exit_codes() {
    let rows: &[(&str, i32, usize)] = &[
        ("exit 0", 0, 1),
        ("exit 99", 0, 0),
        ("exit 100", 100, 0),
        ("exit 64", 100, 0),
        ("exit 65", 100, 0),
        ("exit 70", 100, 0),
        ("exit 76", 100, 0),
        ("exit 77", 100, 0),
        ("exit 78", 100, 0),
        ("exit 112", 100, 0),
        ("exit 111", 111, 0),
        ("exit 1", 111, 0),
        ("exit 75", 111, 0),
        ("kill -9 $$", 111, 0),
    ];
    for &(prog, want, delivered) in rows {
        let l = Local::new();
        l.file(".qmail", format!("|echo said {prog}; {prog}\n./Maildir/\n").as_bytes());
        let out = l.run(&Call::default(), MESSAGE);
        let said = format!("said {}", prog.trim_end_matches(" $$"));
        assert_exit(&out, want, &said);
        assert_eq!(l.maildir("new").len(), delivered, "{prog}");
    }
}

#[test]
fn exit_99_still_sends_the_forwards_seen_so_far() {
    let l = Local::new();
    l.file(".qmail", b"&bob@example.net\n|exit 99\n&carol@example.net\n./Maildir/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 0, "did 0+1+1\nqp ");
    let todo = l.sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].recipients(), vec!["bob@example.net"]);
    assert!(l.maildir("new").is_empty());
}

#[test]
fn a_failure_stops_and_queues_no_forward() {
    let l = Local::new();
    l.file(".qmail", b"&bob@example.net\n|exit 111\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "");
    assert!(l.sb.todo().is_empty());
}

#[test]
fn extension_lookup() {
    let l = Local::new();
    make_maildir(&l.path("exact"));
    make_maildir(&l.path("dotted"));
    make_maildir(&l.path("foo-default"));
    make_maildir(&l.path("default"));
    l.file(".qmail-foo", b"./exact/\n");
    l.file(".qmail-a:b", b"./dotted/\n");
    l.file(".qmail-foo-default", b"./foo-default/\n");
    l.file(".qmail-default", b"./default/\n");
    let rows: &[(&str, &str)] = &[
        ("foo", "exact"),
        ("FOO", "exact"),
        ("A.B", "dotted"),
        ("foo-x", "foo-default"),
        ("Foo-x-y", "foo-default"),
        ("bar", "default"),
        ("..", "default"),
        ("../joe/.qmail-foo", "default"),
    ];
    for &(ext, dir) in rows {
        let local = format!("joe-{ext}");
        let call = Call { local: &local, dash: "-", ext, ..Call::default() };
        let before = list(&l.path(dir).join("new")).len();
        assert_exit(&l.run(&call, MESSAGE), 0, "did 1+0+0");
        assert_eq!(list(&l.path(dir).join("new")).len(), before + 1, "ext {ext:?} goes to {dir}");
    }
}

#[test]
fn no_mailbox_by_that_name() {
    let l = Local::new();
    l.file(".qmail-foo", b"./Maildir/\n");
    let call = Call { local: "joe-bar", dash: "-", ext: "bar", ..Call::default() };
    assert_exit(&l.run(&call, MESSAGE), 100, "#5.1.1");
    assert!(l.maildir("new").is_empty());
}

#[test]
fn aliasempty_when_nothing_found_or_empty_file() {
    let l = Local::new();
    // no .qmail, empty dash: the default delivery
    assert_exit(&l.run(&Call::default(), MESSAGE), 0, "did 1+0+0");
    // a 0-byte .qmail-foo: the default delivery as well
    l.file(".qmail-foo", b"");
    let call = Call { local: "joe-foo", dash: "-", ext: "foo", ..Call::default() };
    assert_exit(&l.run(&call, MESSAGE), 0, "did 1+0+0");
    assert_eq!(l.maildir("new").len(), 2);
    // aliasempty may be any instruction text, several lines included
    let call = Call { aliasempty: "./Mailbox\n./Maildir/", ..Call::default() };
    assert_exit(&l.run(&call, MESSAGE), 0, "did 2+0+0");
    assert!(l.path("Mailbox").exists());
}

#[test]
fn non_regular_dotqmail_counts_as_missing() {
    let l = Local::new();
    nix::unistd::mkfifo(&l.path(".qmail-fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644))
        .unwrap();
    fs::create_dir(l.path(".qmail-dir")).unwrap();
    l.file(".qmail-default", b"./Maildir/\n");
    for ext in ["fifo", "dir"] {
        let local = format!("joe-{ext}");
        let call = Call { local: &local, dash: "-", ext, ..Call::default() };
        assert_exit(&l.run(&call, MESSAGE), 0, "did 1+0+0");
    }
}

#[test]
fn loop_detection() {
    let l = Local::new();
    let looping = [&b"Delivered-To: joe@example.org\n"[..], MESSAGE].concat();
    assert_exit(&l.run(&Call::default(), &looping), 100, "#5.4.6");
    assert!(l.maildir("new").is_empty());
    // another address, a different case, or the body: no loop
    for msg in [
        [&b"Delivered-To: bob@example.org\n"[..], MESSAGE].concat(),
        [&b"Delivered-To: JOE@example.org\n"[..], MESSAGE].concat(),
        [MESSAGE, b"Delivered-To: joe@example.org\n"].concat(),
    ] {
        assert_exit(&l.run(&Call::default(), &msg), 0, "did 1+0+0");
    }
}

#[test]
fn unusable_maildir_is_temporary_and_leaves_nothing_in_new() {
    let l = Local::new();
    // tmp/ is a regular file
    make_maildir(&l.path("broken"));
    fs::remove_dir(l.path("broken/tmp")).unwrap();
    l.file("broken/tmp", b"");
    l.file(".qmail", b"./broken/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "Unable to deliver to Maildir ./broken/");
    assert!(list(&l.path("broken/new")).is_empty());
    // a parent that is a regular file
    l.file("plain", b"");
    l.file(".qmail", b"./plain/Maildir/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "#4.2.1");
    // no Maildir at all
    l.file(".qmail", b"./nonesuch/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "#4.2.1");
}

#[test]
fn missing_home_is_temporary() {
    let l = Local::new();
    let mut cmd = l.cmd(MESSAGE);
    cmd.args(["--", "joe"]).arg(l.sb.tmp.path().join("nonesuch")).args([
        "joe",
        "",
        "",
        "example.org",
        "a@b",
        "./Maildir/",
    ]);
    assert_exit(&cmd.output().unwrap(), 111, "#4.3.0");
}

/// A home that does not exist yet under a parent the delivery user may write, and
/// `control/dirmaker` naming a script with `body`. As root, qmail-local runs as nobody (it
/// never runs a dirmaker as root). Returns the run's output and the home.
fn with_dirmaker(l: &Local, body: Option<&str>) -> (Output, PathBuf) {
    use std::os::unix::process::CommandExt;
    let parent = l.sb.tmp.path().join("homes");
    fs::create_dir(&parent).unwrap();
    fs::set_permissions(l.sb.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = l.sb.tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    if let Some(body) = body {
        let script = bin.join("mkhome");
        fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        // a name without a slash is searched in PATH
        l.sb.control("dirmaker", "mkhome\n");
    }
    let home = parent.join("newbie");
    let mut cmd = l.cmd(MESSAGE);
    cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
    if is_root() {
        std::os::unix::fs::chown(&parent, Some(65534), Some(65534)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    cmd.args(["--", "newbie"]).arg(&home).args([
        "newbie",
        "",
        "",
        "example.org",
        "a@b",
        "./Maildir/",
    ]);
    (cmd.output().unwrap(), home)
}

#[test]
fn dirmaker_creates_the_home_then_delivers() {
    let l = Local::new();
    // $1 the home, $2 the default delivery: the script makes both
    let (out, home) = with_dirmaker(
        &l,
        Some(
            r#"mkdir -m 700 -p "$1" && cd "$1" && mkdir -p "${2}new" "${2}cur" "${2}tmp" && echo "$2" >args"#,
        ),
    );
    assert_exit(&out, 0, "did 1+0+0");
    assert_eq!(fs::read_to_string(home.join("args")).unwrap(), "./Maildir/\n");
    assert_eq!(list(&home.join("Maildir/new")).len(), 1);
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(&home).unwrap().uid();
    assert_ne!(owner, 0, "the dirmaker ran as root");
}

#[test]
fn dirmaker_failures() {
    let rows = [
        ("exit 100", 100, "Permanent error in automatic homedir creation. (#5.3.0)"),
        ("exit 126", 100, "Permanent error in automatic homedir creation. (#5.3.0)"),
        ("exit 1", 111, "Temporary error in automatic homedir creation. (#4.3.0)"),
        ("kill -KILL $$", 111, "Automatic homedir creator crashed (#4.3.0)"),
    ];
    for (body, want, text) in rows {
        let l = Local::new();
        let (out, home) = with_dirmaker(&l, Some(body));
        assert_exit(&out, want, text);
        assert!(!home.exists(), "{body}: a home appeared");
    }
    // a program that cannot be started is temporary
    let l = Local::new();
    l.sb.control("dirmaker", "/nonexistent/mkhome\n");
    let (out, _) = with_dirmaker(&l, None);
    assert_exit(&out, 111, "Temporary error in automatic homedir creation. (#4.3.0)");
}

#[test]
fn without_dirmaker_a_missing_home_is_temporary() {
    let l = Local::new();
    let (out, home) = with_dirmaker(&l, None);
    assert_exit(&out, 111, "Unable to switch to");
    assert!(stdout(&out).contains("#4.3.0"));
    assert!(!home.exists());
}

#[test]
fn dirmaker_never_runs_as_root() {
    if !is_root() {
        return;
    }
    let l = Local::new();
    let script = l.sb.tmp.path().join("mkhome");
    fs::write(&script, "#!/bin/sh\nmkdir -p \"$1\"\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    l.sb.control("dirmaker", &format!("{}\n", script.display()));
    let home = l.sb.tmp.path().join("rootless");
    let mut cmd = l.cmd(MESSAGE);
    cmd.args(["--", "joe"]).arg(&home).args(["joe", "", "", "example.org", "a@b", "./Maildir/"]);
    assert_exit(&cmd.output().unwrap(), 111, "Temporary error in automatic homedir creation");
    assert!(!home.exists(), "the dirmaker ran as root");
}

#[test]
fn home_and_dotqmail_permissions() {
    let l = Local::new();
    fs::set_permissions(&l.home, fs::Permissions::from_mode(0o757)).unwrap();
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "writable");
    fs::set_permissions(&l.home, fs::Permissions::from_mode(0o1755)).unwrap();
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "sticky");
    fs::set_permissions(&l.home, fs::Permissions::from_mode(0o755)).unwrap();
    l.file(".qmail", b"./Maildir/\n");
    fs::set_permissions(l.path(".qmail"), fs::Permissions::from_mode(0o646)).unwrap();
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "writable");
    assert!(l.maildir("new").is_empty());
}

#[test]
fn bad_dotqmail_files_are_temporary_and_deliver_nothing() {
    let l = Local::new();
    let rows: &[(&[u8], u32, &str)] = &[
        (b"\n./Maildir/\n", 0o644, "blank"),
        (b"&bob@example.net\n./Maildir/\n", 0o744, "forward-only"),
        (b"&bob@example.net\n|cat\n", 0o744, "forward-only"),
        (b"./Maildir/\n+list\n|cat\n", 0o644, "forward-only"),
        (b"./Maildir/\n|a\0b\n", 0o644, "NUL"),
    ];
    for &(text, mode, needle) in rows {
        l.file(".qmail", text);
        fs::set_permissions(l.path(".qmail"), fs::Permissions::from_mode(mode)).unwrap();
        assert_exit(&l.run(&Call::default(), MESSAGE), 111, needle);
        assert!(l.maildir("new").is_empty());
        assert!(l.sb.todo().is_empty());
    }
    // a forward-only file with forwards only is fine
    l.file(".qmail", b"&bob@example.net\n");
    fs::set_permissions(l.path(".qmail"), fs::Permissions::from_mode(0o744)).unwrap();
    assert_exit(&l.run(&Call::default(), MESSAGE), 0, "did 0+1+0");
    // too big
    l.file(".qmail", &[b"# padding\n".repeat(110_000), b"./Maildir/\n".to_vec()].concat());
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "too big");
}

#[test]
fn plan_only() {
    let l = Local::new();
    l.file(".qmail", b"# c\n|cat\n./Maildir/\n./mbox\n&bob@example.net\nfred\n");
    let mut cmd = l.cmd(MESSAGE);
    cmd.arg("-n");
    let out = l.run_cmd(cmd, &Call::default());
    assert_exit(&out, 0, "");
    assert_eq!(
        stdout(&out),
        "program cat\nmaildir ./Maildir/\nmbox ./mbox\nforward bob@example.net\nforward fred\n"
    );
    assert!(l.maildir("new").is_empty());
}

#[test]
fn wrong_arguments_are_permanent() {
    let l = Local::new();
    let home = l.home.to_str().unwrap();
    let rows: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--", "joe", home, "joe", "", "", "example.org", "a@b"],
        vec!["--", "joe", home, "joe", "", "", "example.org", "a@b", "./Maildir/", "x"],
        vec!["--", "joe", "relative", "joe", "", "", "example.org", "a@b", "./Maildir/"],
        vec!["-x", "joe", home, "joe", "", "", "example.org", "a@b", "./Maildir/"],
    ];
    for args in rows {
        let mut cmd = l.cmd(MESSAGE);
        cmd.args(&args);
        assert_exit(&cmd.output().unwrap(), 100, "usage");
    }
    assert!(l.maildir("new").is_empty());
}

#[test]
fn automaildirmake_creates_a_missing_maildir() {
    let l = Local::new();
    l.file(".qmail", b"./Fresh/\n");
    // off (the default): a missing Maildir is a temporary failure
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "#4.2.1");
    assert!(!l.path("Fresh").exists());
    l.sb.control("automaildirmake", "1\n");
    let out = l.run(&Call::default(), MESSAGE);
    assert_exit(&out, 0, "did 1+0+0");
    assert_eq!(list(&l.path("Fresh/new")).len(), 1);
    for sub in ["", "tmp", "cur", "new"] {
        let mode = fs::metadata(l.path("Fresh").join(sub)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{sub}");
    }
    // something in the way: temporary, nothing delivered
    make_maildir(&l.path("Half"));
    fs::remove_dir(l.path("Half/cur")).unwrap();
    l.file("Half/cur", b"");
    l.file(".qmail", b"./Half/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "seems to be corrupted");
    assert!(list(&l.path("Half/new")).is_empty());
    // a missing parent is not created
    l.file(".qmail", b"./no/parent/\n");
    assert_exit(&l.run(&Call::default(), MESSAGE), 111, "#4.2.1");
}

// ---------------------------------------------------------------------------------------------
// the delivery worker: `qmail-local --worker`, driven as qmail-lspawn drives it

/// A running delivery worker of a sandbox, as nobody when running as root (it refuses root).
struct Worker {
    _child: Guard,
    sock: std::os::unix::net::UnixStream,
    next: u32,
}

impl Worker {
    fn start(sb: &Sandbox) -> Worker {
        use qmail::localworker::{Answer, Kind};
        use std::os::unix::process::CommandExt;
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut cmd = sb.cmd("qmail-local");
        cmd.arg("--worker").stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        if is_root() {
            cmd.uid(65534).gid(65534);
        }
        qmail::child::map_fds(&mut cmd, vec![(theirs.into(), 3)]);
        let child = Guard(cmd.spawn().unwrap());
        drop(cmd);
        let hello = Answer::read(&mut ours).unwrap().expect("a hello");
        assert_eq!(hello.kind, Kind::Hello);
        Worker { _child: child, sock: ours, next: 1 }
    }

    /// One request; the answer.
    fn deliver(
        &mut self,
        args: [&[u8]; 8],
        env: &[(qmail::account::EnvName, &str)],
        message: &Path,
    ) -> qmail::localworker::Answer {
        let id = self.send(args, env, message);
        let answer = self.answer();
        assert_eq!(answer.id, id);
        answer
    }

    /// Send one request, without waiting for its answer; its id.
    fn send(
        &mut self,
        args: [&[u8]; 8],
        env: &[(qmail::account::EnvName, &str)],
        message: &Path,
    ) -> u32 {
        let request = qmail::localworker::Request {
            id: self.next,
            args: args.map(<[u8]>::to_vec),
            env: env.iter().map(|(n, v)| (*n, v.as_bytes().to_vec())).collect(),
        };
        self.next += 1;
        let file = fs::File::open(message).unwrap();
        qmail::fdpass::send(&self.sock, &file, &request.encode().unwrap()).unwrap();
        request.id
    }

    /// The next answer.
    fn answer(&mut self) -> qmail::localworker::Answer {
        qmail::localworker::Answer::read(&mut self.sock).unwrap().expect("an answer")
    }
}

/// A [`Local`] whose home belongs to the delivery user (nobody when root).
fn local_for_worker() -> Local {
    let l = Local::new();
    if is_root() {
        let out = Command::new("chown").arg("-R").arg("65534:65534").arg(&l.home).output();
        assert_ok(&out.unwrap(), "chown");
    }
    l
}

/// What a delivery left: exit code, text, files in new/, the mbox's size, queued forwards.
fn outcome_of(l: &Local, code: i32, text: String) -> (i32, String, usize, u64, usize) {
    let mbox = fs::metadata(l.path("Mailbox")).map(|m| m.len()).unwrap_or(0);
    (code, text, l.maildir("new").len(), mbox, l.sb.todo().len())
}

#[test]
fn the_worker_answers_as_the_process_does() {
    use qmail::account::EnvName;
    use qmail::localworker::Kind;
    type Setup = fn(&Local);
    let none: Setup = |_| {};
    let big = [MESSAGE, &[b'x'; 3000][..]].concat();
    let looping = [&b"Delivered-To: joe@example.org\n"[..], MESSAGE].concat();
    // (what, .qmail files, dash, ext, aliasempty, environment, message)
    type Row<'a> = (&'a str, Setup, &'a str, &'a str, &'a str, Vec<(EnvName, &'a str)>, &'a [u8]);
    let rows: Vec<Row> = vec![
        ("maildir", none, "", "", "./Maildir/", vec![], MESSAGE),
        ("mbox", none, "", "", "./Mailbox", vec![], MESSAGE),
        (
            "forward and maildir",
            |l| l.file(".qmail-list", b"&bob@example.net\n./Maildir/\n"),
            "-",
            "list",
            "./Maildir/",
            vec![],
            MESSAGE,
        ),
        (
            "extension",
            |l| l.file(".qmail-x-default", b"./Mailbox\n"),
            "-",
            "x-y",
            "",
            vec![],
            MESSAGE,
        ),
        ("no such extension", none, "-", "nosuch", "./Maildir/", vec![], MESSAGE),
        ("looping", none, "", "", "./Maildir/", vec![], &looping),
        ("not a maildir", none, "", "", "./NoMaildir/", vec![], MESSAGE),
        (
            "bad .qmail",
            |l| l.file(".qmail", b"\n./Maildir/\n"),
            "",
            "",
            "./Maildir/",
            vec![],
            MESSAGE,
        ),
        (
            "within quota",
            none,
            "",
            "",
            "./Maildir/",
            vec![(EnvName::MaildirQuota, "100000S")],
            MESSAGE,
        ),
        ("over quota", none, "", "", "./Maildir/", vec![(EnvName::MaildirQuota, "1000S")], &big),
        ("bad quota", none, "", "", "./Maildir/", vec![(EnvName::MaildirQuota, "x")], MESSAGE),
        (
            "directory forwards",
            none,
            "",
            "",
            "./Maildir/",
            vec![(EnvName::DotMode, "ldaponly"), (EnvName::Forwards, "carol@example.net")],
            MESSAGE,
        ),
        ("bad dot-mode", none, "", "", "./Maildir/", vec![(EnvName::DotMode, "what")], MESSAGE),
    ];
    for (what, setup, dash, ext, aliasempty, env, message) in rows {
        let local = format!("joe{dash}{ext}");
        let args = |l: &Local| -> [Vec<u8>; 8] {
            [
                b"joe".to_vec(),
                l.home.as_os_str().as_bytes().to_vec(),
                local.as_bytes().to_vec(),
                dash.as_bytes().to_vec(),
                ext.as_bytes().to_vec(),
                b"example.org".to_vec(),
                b"alice@example.com".to_vec(),
                aliasempty.as_bytes().to_vec(),
            ]
        };
        // as a process
        let p = local_for_worker();
        setup(&p);
        let mut cmd = p.cmd(message);
        if is_root() {
            use std::os::unix::process::CommandExt;
            cmd.uid(65534).gid(65534);
        }
        for (name, value) in &env {
            cmd.env(name.as_str(), value);
        }
        let a = args(&p);
        cmd.arg("--").args(a.iter().map(|s| std::ffi::OsStr::from_bytes(s)));
        let out = cmd.output().unwrap();
        let by_process = outcome_of(&p, code(&out), stdout(&out));
        // through a worker
        let w = local_for_worker();
        setup(&w);
        let msg = w.sb.tmp.path().join("message");
        fs::write(&msg, message).unwrap();
        let mut worker = Worker::start(&w.sb);
        let a = args(&w);
        let answer = worker.deliver(std::array::from_fn(|i| &a[i][..]), &env, &msg);
        assert_eq!(answer.kind, Kind::Done, "{what}");
        let text = String::from_utf8_lossy(&answer.text).into_owned();
        let by_worker = outcome_of(&w, answer.code.into(), text);
        assert_eq!(by_worker, by_process, "{what}: worker, then process");
        assert!(w.maildir("tmp").is_empty(), "{what}: nothing left in tmp/");
    }
}

#[test]
fn the_worker_declines_programs_and_serves_one_request_after_another() {
    use qmail::account::EnvName;
    use qmail::localworker::Kind;
    let l = local_for_worker();
    l.file(".qmail-prog", b"./Maildir/\n|echo hello\n");
    let msg = l.sb.tmp.path().join("message");
    fs::write(&msg, MESSAGE).unwrap();
    let mut worker = Worker::start(&l.sb);
    let home = l.home.as_os_str().as_bytes().to_vec();
    let args = |local: &'static [u8], dash: &'static [u8], ext: &'static [u8]| -> [Vec<u8>; 8] {
        [
            b"joe".to_vec(),
            home.clone(),
            local.to_vec(),
            dash.to_vec(),
            ext.to_vec(),
            b"example.org".to_vec(),
            b"alice@example.com".to_vec(),
            b"./Maildir/".to_vec(),
        ]
    };
    let ask = |w: &mut Worker, a: &[Vec<u8>; 8], env: &[(EnvName, &str)]| {
        w.deliver(std::array::from_fn(|i| &a[i][..]), env, &msg)
    };
    // a program: declined before anything is delivered
    let a = ask(&mut worker, &args(b"joe-prog", b"-", b"prog"), &[]);
    assert_eq!((a.kind, a.text.len()), (Kind::Exec, 0));
    assert!(l.maildir("new").is_empty(), "nothing delivered before the decline");
    // so is a directory's delivery program; the environment of one request does not carry
    // over to the next
    let prog = [(EnvName::DotMode, "ldapwithprog"), (EnvName::DeliveryProgram, "/bin/true")];
    assert_eq!(ask(&mut worker, &args(b"joe", b"", b""), &prog).kind, Kind::Exec);
    for i in 1..=3 {
        let a = ask(&mut worker, &args(b"joe", b"", b""), &[]);
        assert_eq!((a.kind, a.code, &a.text[..]), (Kind::Done, 0, &b"did 1+0+0\n"[..]));
        assert_eq!(l.maildir("new").len(), i);
    }
    // the end of its socket ends it
    drop(worker.sock);
    let mut child = worker._child;
    assert!(child.0.wait().unwrap().success());
}

/// A worker for a fresh [`Local`] whose syncs go to a fake queue service: the local, a
/// message file, the fake and the worker.
fn worker_with_fake_syncs() -> (Local, PathBuf, FakeSyncService, Worker) {
    let l = local_for_worker();
    let msg = l.sb.tmp.path().join("message");
    fs::write(&msg, MESSAGE).unwrap();
    let fake = FakeSyncService::start(&l.sb.home);
    let worker = Worker::start(&l.sb);
    (l, msg, fake, worker)
}

/// qmail-local's eight arguments for a delivery to joe's `./Maildir/`, home `home`.
fn joe_to_maildir(home: &[u8]) -> [&[u8]; 8] {
    [b"joe", home, b"joe", b"", b"", b"example.org", b"alice@example.com", b"./Maildir/"]
}

/// The worker's two syncs (the data, then the `new/` entries) go to the queue service when it
/// answers on its socket; one that answers a failure is not trusted: the worker then syncs
/// by itself, and the delivery still succeeds.
#[test]
fn the_worker_shares_the_queue_services_syncs() {
    use qmail::localworker::Kind;
    let (l, msg, fake, mut worker) = worker_with_fake_syncs();
    let home = l.home.as_os_str().as_bytes().to_vec();
    let args = joe_to_maildir(&home);
    let a = worker.deliver(args, &[], &msg);
    assert_eq!((a.kind, a.code, &a.text[..]), (Kind::Done, 0, &b"did 1+0+0\n"[..]));
    assert_eq!(fake.asked(), b"SS", "the data's sync, then the new/ entry's");
    fake.answer(53);
    let a = worker.deliver(args, &[], &msg);
    assert_eq!((a.kind, a.code, &a.text[..]), (Kind::Done, 0, &b"did 1+0+0\n"[..]));
    assert_eq!(fake.asked(), b"SSSS");
    assert_eq!(l.maildir("new").len(), 2);
    assert!(l.maildir("tmp").is_empty());
    // two Maildirs on one file system: still one sync for the data, one for both new/ entries
    fake.answer(0);
    make_maildir(&l.path("Other"));
    l.file(".qmail-two", b"./Maildir/\n./Other/\n");
    if is_root() {
        let out = Command::new("chown").arg("-R").arg("65534:65534").arg(&l.home).output();
        assert_ok(&out.unwrap(), "chown");
    }
    let args: [&[u8]; 8] =
        [b"joe", &home, b"joe-two", b"-", b"two", b"example.org", b"alice@example.com", b""];
    let a = worker.deliver(args, &[], &msg);
    assert_eq!((a.kind, a.code, &a.text[..]), (Kind::Done, 0, &b"did 2+0+0\n"[..]));
    assert_eq!(fake.asked(), b"SSSSSS", "two more syncs, not three");
    assert_eq!(l.maildir("new").len(), 3);
    assert_eq!(list(&l.path("Other").join("new")).len(), 1);
}

/// The worker's pipeline: the requests that arrive while one batch's data is being synced
/// make the next batch, and one sync then makes the first batch's `new/` entries durable and
/// the next one's data: two batches, three syncs instead of four; no batch is answered
/// before the sync that followed its links.
#[test]
fn the_worker_syncs_one_batchs_links_with_the_next_ones_data() {
    use qmail::localworker::Kind;
    let (l, msg, fake, mut worker) = worker_with_fake_syncs();
    let home = l.home.as_os_str().as_bytes().to_vec();
    let args = joe_to_maildir(&home);
    fake.hold();
    let first = worker.send(args, &[], &msg);
    let first_sync = wait_until(std::time::Duration::from_secs(60), || fake.asked() == b"S");
    assert!(first_sync, "the first batch's data: {:?}", fake.asked());
    // two more while that sync is held: they wait on the socket for the next step
    let second = [worker.send(args, &[], &msg), worker.send(args, &[], &msg)];
    assert!(l.maildir("new").is_empty(), "nothing linked before its data's sync");
    // and a program, declined with them: it commits nothing, so it is answered before the
    // step that answers the first batch, not after its own batch's
    l.file(".qmail-prog", b"|echo hello\n");
    let mut prog = args;
    prog[2..5].copy_from_slice(&[b"joe-prog", b"-", b"prog"]);
    let declined = worker.send(prog, &[], &msg);
    fake.release();
    let a = worker.answer();
    assert_eq!((a.id, a.kind), (declined, Kind::Exec));
    let answers: Vec<_> = (0..3).map(|_| worker.answer()).collect();
    assert_eq!(answers[0].id, first, "the first batch is answered next");
    let mut rest = [answers[1].id, answers[2].id];
    rest.sort_unstable();
    assert_eq!(rest, second);
    for a in &answers {
        assert_eq!((a.kind, a.code, &a.text[..]), (Kind::Done, 0, &b"did 1+0+0\n"[..]));
    }
    assert_eq!(fake.asked(), b"SSS", "the second batch's data shared the first's links' sync");
    assert_eq!(l.maildir("new").len(), 3);
    assert!(l.maildir("tmp").is_empty());
    // the end of its input with a batch in hand (qmail-lspawn retiring it): that batch is
    // still committed and answered, then the worker ends
    fake.hold();
    let last = worker.send(args, &[], &msg);
    let data_sync = wait_until(std::time::Duration::from_secs(60), || fake.asked() == b"SSSS");
    assert!(data_sync, "the last batch's data: {:?}", fake.asked());
    worker.sock.shutdown(std::net::Shutdown::Write).unwrap();
    fake.release();
    let a = worker.answer();
    assert_eq!((a.id, a.kind, a.code), (last, Kind::Done, 0));
    assert_eq!(fake.asked(), b"SSSSS");
    assert_eq!(l.maildir("new").len(), 4);
    let mut child = worker._child;
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn the_worker_refuses_root() {
    if !is_root() {
        return;
    }
    let l = Local::new();
    let (_ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut cmd = l.sb.cmd("qmail-local");
    cmd.arg("--worker").stdin(std::process::Stdio::null());
    qmail::child::map_fds(&mut cmd, vec![(theirs.into(), 3)]);
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 111);
    assert!(String::from_utf8_lossy(&out.stderr).contains("root"), "{out:?}");
}
