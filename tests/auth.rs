//! The login programs against a real slapd and real files: auth_smtp's answers (every row of
//! its table in doc/auth_smtp.8) for directory users, `users/passwd` users, hostile login
//! names, malformed and over-long requests, the directory stopped or frozen; auth_pop's exit
//! codes (doc/auth_pop.8) and the environment, directory and uid its sub-program runs with;
//! auth_imap's hand-over to the next module. Running as root (as CI does), auth_smtp runs as
//! nobody, as qmaild would, and auth_pop and auth_imap as root, as under qmail-popup.

use crate::harness::slapd::{self, Slapd};
use crate::harness::*;
use crate::ldap_deliver::Dir;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use qmail::auth::smtp::{login_request, plain_request, Answer};
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const PW: &str = "sesame";

fn b64(s: &[u8]) -> Vec<u8> {
    BASE64.encode(s).into_bytes()
}

/// `userPassword` of [`PW`] as `{SSHA}`.
fn ssha(pw: &str) -> String {
    qmail::passwd::ssha(pw.as_bytes(), b"saltsalt")
}

/// Run `cmd` as nobody when running as root.
fn unprivileged(cmd: &mut Command) -> &mut Command {
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

/// auth_smtp on `sb` with `request` on stdin.
fn smtp(sb: &Sandbox, request: &[u8]) -> Output {
    let mut cmd = sb.cmd("auth_smtp");
    run_with(unprivileged(&mut cmd), request)
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\\0")
}

/// auth_smtp's answer to an AUTH LOGIN with `user` and `pw`, checked to come with exit 0.
fn login(sb: &Sandbox, user: &[u8], pw: &[u8]) -> Answer {
    answer(&smtp(sb, &login_request(&b64(user), &b64(pw))))
}

/// The answer of a run that must have given one.
fn answer(out: &Output) -> Answer {
    assert_eq!(code(out), 0, "stdout {}\nstderr {}", show(&out.stdout), show(&out.stderr));
    Answer::decode(&out.stdout).unwrap_or_else(|| panic!("not an answer: {}", show(&out.stdout)))
}

/// A run that must have failed temporarily: no answer, exit 111.
fn temporary(out: &Output) {
    assert_eq!(code(out), 111, "stdout {}\nstderr {}", show(&out.stdout), show(&out.stderr));
    assert!(out.stdout.is_empty(), "answered {}", show(&out.stdout));
}

fn ok(name: &str) -> Answer {
    Answer::Ok(name.as_bytes().to_vec())
}

/// A directory of users with passwords: `ann` (active), `nop` (nopop), and `noacc`, `dis`,
/// `del`, `odd` (noaccess, disabled, deleted, an unknown word).
fn people(s: &Slapd, name: &str) -> Dir {
    let d = Dir::on(s, name);
    let pw = format!("userPassword: {}", ssha(PW));
    d.user(s, "ann", &pw);
    for (user, status) in [
        ("nop", "nopop"),
        ("noacc", "noaccess"),
        ("dis", "disabled"),
        ("del", "deleted"),
        ("odd", "frozen"),
    ] {
        d.user(s, user, &format!("{pw}\naccountStatus: {status}"));
    }
    d
}

#[test]
fn auth_smtp_directory_users() {
    let s = slapd::shared();
    let d = people(s, "as-dir");
    let sb = &d.sb;
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    // the directory matches uid without regard to case; K names the entry's uid
    assert_eq!(login(sb, b"ANN", PW.as_bytes()), ok("ann"));
    let plain = plain_request(&b64(format!("\0ann\0{PW}").as_bytes()));
    assert_eq!(answer(&smtp(sb, &plain)), ok("ann"));
    let plain = plain_request(&b64(format!("someone\0ann\0{PW}").as_bytes()));
    assert_eq!(answer(&smtp(sb, &plain)), ok("ann"), "the authzid is ignored");
    assert_eq!(login(sb, b"ann", b"wrong"), Answer::Failed);
    assert_eq!(login(sb, b"ann", b""), Answer::Failed, "empty password");
    assert_eq!(login(sb, b"nobody-here", PW.as_bytes()), Answer::Failed, "unknown user");
    assert_eq!(login(sb, b"nop", PW.as_bytes()), ok("nop"), "nopop allows SMTP AUTH");
    for user in ["noacc", "dis", "del", "odd"] {
        assert_eq!(login(sb, user.as_bytes(), PW.as_bytes()), Answer::Disabled, "{user}");
        // the status is told only to who knows the password
        assert_eq!(login(sb, user.as_bytes(), b"wrong"), Answer::Failed, "{user}");
    }
    assert_eq!(Answer::Disabled.encode(), b"Ddisabled\0");
}

#[test]
fn auth_smtp_hostile_login_names() {
    let s = slapd::shared();
    let d = people(s, "as-hostile");
    let sb = &d.sb;
    for name in [&b"*"[..], b"a*", b"*)(uid=*", b")(", b"ann)(uid=*", b"ann\0", b"\0", b"ann\\"] {
        assert_eq!(login(sb, name, PW.as_bytes()), Answer::Failed, "{}", show(name));
    }
    // a PLAIN response can carry no NUL in the login; more NULs go to the password
    let plain = plain_request(&b64(format!("\0ann\0{PW}\0x").as_bytes()));
    assert_eq!(answer(&smtp(sb, &plain)), Answer::Failed);
}

#[test]
fn auth_smtp_malformed_requests() {
    let sb = Sandbox::for_delivery();
    for req in [
        &b"login\0am9l!\0c2VzYW1l\0"[..],
        b"login\0am9\0c2VzYW1l\0",
        b"cram-md5\0x\0",
        b"plain\0am9l\0",
        b"login\0am9l\0c2VzYW1l\0extra",
        b"login\0am9l\0",
        b"",
    ] {
        assert_eq!(answer(&smtp(&sb, req)), Answer::Malformed, "{}", show(req));
    }
    // a 1 MB base64 line: refused without reading it all in, and read to its end
    let big = login_request(&vec![b'A'; 1 << 20], &b64(PW.as_bytes()));
    assert_eq!(answer(&smtp(&sb, &big)), Answer::Malformed);
    // arguments are a configuration error
    let mut cmd = sb.cmd("auth_smtp");
    cmd.arg("-x");
    temporary(&run_with(unprivileged(&mut cmd), &login_request(b"am9l", b"c2VzYW1l")));
}

#[test]
fn auth_smtp_users_passwd() {
    let sb = Sandbox::for_delivery();
    let file = sb.home.join("users/passwd");
    fs::write(&file, format!("# test\njoe:{}\nbob:{{SHA}}broken\n", ssha(PW))).unwrap();
    assert_eq!(login(&sb, b"joe", PW.as_bytes()), ok("joe"));
    assert_eq!(login(&sb, b"joe", b"wrong"), Answer::Failed);
    assert_eq!(login(&sb, b"JOE", PW.as_bytes()), Answer::Failed, "matched exactly");
    assert_eq!(login(&sb, b"ann", PW.as_bytes()), Answer::Failed);
    assert_eq!(login(&sb, b"bob", PW.as_bytes()), Answer::Malformed, "a damaged value");
    // the system's passwd is never used for SMTP AUTH
    assert_eq!(login(&sb, b"root", PW.as_bytes()), Answer::Failed);
    // a malformed line spoils the file: temporary
    fs::write(&file, format!("joe:{}\nbroken line\n", ssha(PW))).unwrap();
    temporary(&smtp(&sb, &login_request(&b64(b"joe"), &b64(PW.as_bytes()))));
}

#[test]
fn auth_smtp_directory_then_users_passwd() {
    let s = slapd::shared();
    let d = people(s, "as-chain");
    let sb = &d.sb;
    fs::write(
        sb.home.join("users/passwd"),
        format!("joe:{}\nann:{}\n", ssha("filepw"), ssha("filepw")),
    )
    .unwrap();
    assert_eq!(login(sb, b"joe", b"filepw"), ok("joe"), "not in the directory");
    assert_eq!(login(sb, b"ann", b"filepw"), Answer::Failed, "a directory password is final");
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    sb.control("ldaplocaldelivery", "0\n");
    assert_eq!(login(sb, b"joe", b"filepw"), Answer::Failed, "no local fallback");
}

#[test]
fn auth_smtp_rebind_and_schemes() {
    let s = slapd::shared();
    let d = Dir::on(s, "as-rebind");
    let sb = &d.sb;
    d.user(s, "ssha", &format!("userPassword: {}", ssha(PW)));
    // a scheme only the server checks: a bind as the entry decides
    d.user(s, "clear", &format!("userPassword: {PW}"));
    d.user(s, "broken", "userPassword: {SSHA}!!notbase64");
    d.user(s, "none", "");
    assert_eq!(login(sb, b"ssha", PW.as_bytes()), ok("ssha"));
    assert_eq!(login(sb, b"clear", PW.as_bytes()), ok("clear"));
    assert_eq!(login(sb, b"clear", b"wrong"), Answer::Failed);
    assert_eq!(login(sb, b"broken", PW.as_bytes()), Answer::Malformed);
    assert_eq!(login(sb, b"none", PW.as_bytes()), Answer::Failed);
    sb.control("ldaprebind", "1\n");
    assert_eq!(login(sb, b"ssha", PW.as_bytes()), ok("ssha"));
    assert_eq!(login(sb, b"ssha", b"wrong"), Answer::Failed);
    assert_eq!(login(sb, b"broken", PW.as_bytes()), Answer::Failed, "the server decides");
    assert_eq!(login(sb, b"ssha", b""), Answer::Failed, "never an anonymous bind");
}

#[test]
fn auth_smtp_two_entries_are_temporary() {
    let s = slapd::shared();
    let d = Dir::on(s, "as-two");
    let sb = &d.sb;
    d.user(s, "twin", &format!("userPassword: {}", ssha(PW)));
    s.add(&format!(
        "dn: cn=other,{}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\ncn: other\n\
         sn: other\nuid: twin\nmail: other@example.org\nuserPassword: {}\n",
        d.ou,
        ssha(PW)
    ));
    temporary(&smtp(sb, &login_request(&b64(b"twin"), &b64(PW.as_bytes()))));
}

#[test]
fn auth_smtp_directory_down_is_temporary() {
    let sb = Sandbox::for_delivery();
    sb.control("ldapserver", &format!("127.0.0.1:{}\n", free_port()));
    sb.control("ldapbasedn", "dc=example,dc=org\n");
    let out = smtp(&sb, &login_request(&b64(b"ann"), &b64(PW.as_bytes())));
    temporary(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"), "{}", show(&out.stderr));
    // an empty password fails before anything is looked up
    assert_eq!(login(&sb, b"ann", b""), Answer::Failed);
}

#[test]
fn auth_smtp_slapd_stopped_and_frozen() {
    // a private slapd: stopping or freezing the shared one would stall the other tests
    let server = Slapd::new();
    let d = people(&server, "as-fault");
    let sb = &d.sb;
    sb.control("ldaptimeout", "1\n");
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    server.pause();
    let started = std::time::Instant::now();
    let out = smtp(sb, &login_request(&b64(b"ann"), &b64(PW.as_bytes())));
    server.resume();
    temporary(&out);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    server.stop();
    temporary(&smtp(sb, &login_request(&b64(b"ann"), &b64(PW.as_bytes()))));
    server.start();
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
}

/// What the sub-program of [`pop`] prints: its directory, ids, whether fd 3 is open, and the
/// variables auth_pop sets, sorted.
const SHOW: &str = "echo cwd=$(pwd); echo ids=$(id -u):$(id -g); \
    if [ -e /proc/self/fd/3 ]; then echo fd3=open; else echo fd3=closed; fi; \
    env | grep -E '^(USER|AUTHENTICATED|HOME|MAILDIR|MAILDIRQUOTA|DATASIZE)=' | sort";

/// auth_pop on `sb` with `fd3` on fd 3 (a pipe), `args`, and `MAILDIR=stale` in its
/// environment (removed unless the login sets it).
fn pop_with(sb: &Sandbox, fd3: &[u8], args: &[&str], env: &[(&str, &str)]) -> Output {
    with_fd3(sb, "auth_pop", fd3, args, env)
}

/// `prog` on `sb` with `fd3` on fd 3 (a pipe), `args`, `env`, and `MAILDIR=stale`.
fn with_fd3(sb: &Sandbox, prog: &str, fd3: &[u8], args: &[&str], env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = sb.cmd(prog);
    cmd.args(args).env("MAILDIR", "stale").env_remove("NOPBS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    qmail::child::map_fds(&mut cmd, vec![(r, 3)]);
    let writer = {
        let fd3 = fd3.to_vec();
        std::thread::spawn(move || {
            let _ = fs::File::from(w).write_all(&fd3);
        })
    };
    let out = run_with(&mut cmd, b"");
    writer.join().unwrap();
    out
}

/// auth_pop running [`SHOW`] for `user` with `pw`.
fn pop(sb: &Sandbox, user: &str, pw: &str) -> Output {
    pop_with(sb, format!("{user}\0{pw}\0").as_bytes(), &["/bin/sh", "-c", SHOW], &[])
}

/// The exit code of auth_pop for `user` and `pw`, with its stderr for the message.
fn pop_code(sb: &Sandbox, user: &str, pw: &str) -> i32 {
    let out = pop(sb, user, pw);
    eprintln!("{user}: {}", String::from_utf8_lossy(&out.stderr));
    code(&out)
}

/// The lines the sub-program printed, after checking it ran (exit 0).
fn shown(out: &Output) -> Vec<String> {
    assert_eq!(code(out), 0, "stdout {}\nstderr {}", show(&out.stdout), show(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn ids() -> String {
    if is_root() {
        "65534:65534".to_string()
    } else {
        format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid())
    }
}

#[test]
fn auth_pop_directory_login_environment() {
    let s = slapd::shared();
    let d = people(s, "ap-env");
    let sb = &d.sb;
    let pw = format!("userPassword: {}", ssha(PW));
    let store = sb.tmp.path().join("homes/ann/Maildir/");
    let kim = d.user(
        s,
        "kim",
        &format!(
            "{pw}\nmailMessageStore: {}/\nmailQuotaSize: 1000\nmailQuotaCount: 10\nmailSizeMax: 5000",
            store.display().to_string().trim_end_matches('/')
        ),
    );
    let ann = sb.tmp.path().join("homes/ann");
    let want = |home: &std::path::Path, user: &str, extra: &[&str]| {
        let mut env: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        env.extend([
            format!("AUTHENTICATED={user}"),
            format!("HOME={}", home.display()),
            format!("USER={user}"),
        ]);
        env.sort();
        let mut v = vec![format!("cwd={}", home.display()), format!("ids={}", ids())];
        v.push("fd3=closed".to_string());
        v.extend(env);
        v
    };
    assert_eq!(shown(&pop(sb, "ann", PW)), want(&ann, "ann", &[]), "MAILDIR removed");
    // the login as typed
    assert_eq!(shown(&pop(sb, "Ann", PW)), want(&ann, "Ann", &[]));
    let maildir = format!("MAILDIR={}/", store.display().to_string().trim_end_matches('/'));
    assert_eq!(
        shown(&pop(sb, "kim", PW)),
        want(&kim, "kim", &["DATASIZE=5000", &maildir, "MAILDIRQUOTA=1000S,10C"])
    );
    // the APOP timestamp after the password is ignored
    let out =
        pop_with(sb, format!("ann\0{PW}\0<1.2@host>\0").as_bytes(), &["/bin/sh", "-c", SHOW], &[]);
    assert_eq!(shown(&out), want(&ann, "ann", &[]));
}

#[test]
fn auth_pop_exit_codes() {
    let s = slapd::shared();
    let d = people(s, "ap-codes");
    let sb = &d.sb;
    let pw = format!("userPassword: {}", ssha(PW));
    // 3: unknown, wrong, empty; hostile names find nobody
    for (user, pass) in
        [("ghost", PW), ("ann", "wrong"), ("ann", ""), ("*", PW), (")(", PW), ("a*)(uid=*", PW)]
    {
        assert_eq!(pop_code(sb, user, pass), 3, "{user}/{pass}");
    }
    // 4: every status but active refuses POP3, nopop included
    for user in ["nop", "noacc", "dis", "del", "odd"] {
        assert_eq!(pop_code(sb, user, PW), 4, "{user}");
    }
    // 25: uid 0, an id out of range, no ids, forward-only
    let home = sb.tmp.path().join("homes/ann");
    let h = home.display();
    for (user, attrs) in [
        ("root0", format!("qmailUID: 0\nqmailGID: 0\nhomeDirectory: {h}")),
        ("big", format!("qmailUID: 70000\nqmailGID: 100\nhomeDirectory: {h}")),
        ("noids", format!("homeDirectory: {h}")),
        ("fwd", "mailForwardingAddress: x@example.net".to_string()),
    ] {
        s.add(&d.entry(user, &format!("{pw}\n{attrs}")));
        assert_eq!(pop_code(sb, user, PW), 25, "{user}");
    }
    // 62: no home
    let (uid, gid, _) = sb.user_home("gone");
    s.add(&d.entry(
        "gone",
        &format!("{pw}\nqmailUID: {uid}\nqmailGID: {gid}\nhomeDirectory: /nonexistent/gone"),
    ));
    assert_eq!(pop_code(sb, "gone", PW), 62);
    // control/dirmaker makes a missing home, as the user, with the maildir or the
    // sub-program's last argument; its failure is 61
    let (_, _, parent) = sb.user_home("parent");
    let made = parent.join("made");
    s.add(&d.entry(
        "made",
        &format!("{pw}\nqmailUID: {uid}\nqmailGID: {gid}\nhomeDirectory: {}", made.display()),
    ));
    let maker = sb.tmp.path().join("dirmaker");
    fs::write(&maker, "#!/bin/sh\nmkdir \"$1\" && echo \"$2 $(id -u)\" > \"$1/made\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&maker, fs::Permissions::from_mode(0o755)).unwrap();
    sb.control("dirmaker", &format!("{}\n", maker.display()));
    let out = pop_with(
        sb,
        format!("made\0{PW}\0").as_bytes(),
        &["/bin/sh", "-c", "pwd", "./Maildir/"],
        &[],
    );
    assert_eq!(shown(&out), [made.display().to_string()]);
    assert_eq!(fs::read_to_string(made.join("made")).unwrap(), format!("./Maildir/ {uid}\n"));
    assert_eq!(pop_code(sb, "gone", PW), 61, "the dirmaker cannot make /nonexistent/gone");
    fs::write(&maker, "#!/bin/sh\nexit 0\n").unwrap();
    assert_eq!(pop_code(sb, "gone", PW), 62, "a dirmaker that makes nothing");
    fs::remove_file(sb.home.join("control/dirmaker")).unwrap();
    // 7: the sub-program cannot be started
    let out = pop_with(sb, format!("ann\0{PW}\0").as_bytes(), &["/nonexistent/prog"], &[]);
    assert_eq!(code(&out), 7, "{}", show(&out.stderr));
    // 1: usage
    for args in [&[][..], &["-d"], &["-d", "/bin/true"], &["-z", "/bin/true"]] {
        let out = pop_with(sb, format!("ann\0{PW}\0").as_bytes(), args, &[]);
        assert_eq!(code(&out), 1, "{args:?}");
    }
    // 111: more than 512 bytes on fd 3, or not both fields
    let long = format!("ann\0{PW}\0{}\0", "x".repeat(600));
    let out = pop_with(sb, long.as_bytes(), &["/bin/true"], &[]);
    assert_eq!(code(&out), 111, "{}", show(&out.stderr));
    let exact = format!("ann\0{PW}\0{}", "x".repeat(512 - 4 - PW.len() - 1));
    assert_eq!(exact.len(), 512);
    assert_eq!(code(&pop_with(sb, exact.as_bytes(), &["/bin/true"], &[])), 0, "512 bytes are fine");
    for bad in [&b"ann"[..], b"ann\0sesame", b""] {
        assert_eq!(code(&pop_with(sb, bad, &["/bin/true"], &[])), 111, "{}", show(bad));
    }
    // 2: the directory down
    sb.control("ldapserver", &format!("127.0.0.1:{}\n", free_port()));
    assert_eq!(pop_code(sb, "ann", PW), 2);
}

#[test]
fn auth_pop_pbs_tool() {
    let s = slapd::shared();
    let d = people(s, "ap-pbs");
    let sb = &d.sb;
    let ann = sb.tmp.path().join("homes/ann");
    let tool = sb.tmp.path().join("pbs-tool");
    fs::write(
        &tool,
        "#!/bin/sh\nread x && echo stdin-readable >> \"$HOME/pbs-ran\"\n\
         if [ -e /proc/self/fd/3 ]; then echo fd3 >> \"$HOME/pbs-ran\"; fi\n\
         echo \"$USER $(id -u) $TCPREMOTEIP\" >> \"$HOME/pbs-ran\"\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let t = tool.to_str().unwrap();
    let fd3 = format!("ann\0{PW}\0");
    let env = [("TCPREMOTEIP", "192.0.2.1")];
    let out = pop_with(sb, fd3.as_bytes(), &["-d", t, "/bin/sh", "-c", "echo sub"], &env);
    assert_eq!(shown(&out), ["sub"], "the tool's failure changes nothing");
    let uid = ids().split(':').next().unwrap().to_string();
    assert_eq!(fs::read_to_string(ann.join("pbs-ran")).unwrap(), format!("ann {uid} 192.0.2.1\n"));
    fs::remove_file(ann.join("pbs-ran")).unwrap();
    let env = [("NOPBS", "1")];
    let out = pop_with(sb, fd3.as_bytes(), &["-d", t, "/bin/sh", "-c", "echo sub"], &env);
    assert_eq!(shown(&out), ["sub"]);
    assert!(!ann.join("pbs-ran").exists(), "NOPBS skips the tool");
    // not run for a failed login
    let out = pop_with(sb, b"ann\0wrong\0", &["-d", t, "/bin/true"], &[]);
    assert_eq!(code(&out), 3);
    assert!(!ann.join("pbs-ran").exists());
}

#[test]
fn auth_pop_users_passwd_login() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, joe) = sb.user_home("joe");
    sb.assign(&[("joe", uid, gid, &joe), ("toor", 0, 0, &joe)]);
    fs::write(
        sb.home.join("users/passwd"),
        format!("joe:{}\ntoor:{}\nlost:{}\n", ssha(PW), ssha(PW), ssha(PW)),
    )
    .unwrap();
    fs::write(joe.join(".qmail"), "# mine\n&x@example.net\n./Maildir/\n").unwrap();
    std::os::unix::fs::chown(joe.join(".qmail"), Some(uid), Some(gid)).unwrap();
    let out = pop(&sb, "joe", PW);
    assert_eq!(
        shown(&out),
        [
            format!("cwd={}", joe.display()),
            format!("ids={}", ids()),
            "fd3=closed".to_string(),
            "AUTHENTICATED=joe".to_string(),
            format!("HOME={}", joe.display()),
            "MAILDIR=./Maildir/".to_string(),
            "USER=joe".to_string(),
        ]
    );
    assert_eq!(pop_code(&sb, "joe", "wrong"), 3);
    if is_root() {
        assert_eq!(pop_code(&sb, "toor", PW), 25, "uid 0 is refused");
    }
    // a login without a mailbox (only the alias user would take its mail)
    assert_eq!(pop_code(&sb, "lost", PW), 25);
    // 1: a malformed users/passwd, an unreadable control file
    fs::write(sb.home.join("users/passwd"), format!("joe:{}\nbroken\n", ssha(PW))).unwrap();
    assert_eq!(pop_code(&sb, "joe", PW), 1);
    fs::write(sb.home.join("users/passwd"), format!("joe:{}\n", ssha(PW))).unwrap();
    assert_eq!(pop_code(&sb, "joe", PW), 0);
    fs::create_dir(sb.home.join("control/ldapserver")).unwrap();
    assert_eq!(pop_code(&sb, "joe", PW), 1, "control/ldapserver is a directory");
}

#[test]
fn auth_pop_slapd_frozen_past_ldaptimeout() {
    let server = Slapd::new();
    let d = people(&server, "ap-frozen");
    let sb = &d.sb;
    sb.control("ldaptimeout", "1\n");
    assert_eq!(pop_code(sb, "ann", PW), 0);
    server.pause();
    let code = pop_code(sb, "ann", PW);
    server.resume();
    assert_eq!(code, 2);
    server.stop();
    assert_eq!(pop_code(sb, "ann", PW), 2);
    server.start();
    assert_eq!(pop_code(sb, "ann", PW), 0);
}

#[test]
fn qmailctl_passwd_sets_a_users_passwd_login() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::for_delivery();
    let file = sb.home.join("users/passwd");
    fs::write(&file, "# kept\nann:{SHA}x\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let set = |login: &str, pw: &str| {
        sb.run("qmailctl", &["passwd", login, "--password-stdin"], format!("{pw}\n").as_bytes())
    };
    assert_ok(&set("joe", "first"), "qmailctl passwd");
    assert_ok(&set("joe", "second"), "qmailctl passwd");
    let text = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(&lines[..2], ["# kept", "ann:{SHA}x"]);
    assert!(lines[2].starts_with("joe:{SSHA}"), "{text}");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644, "mode kept");
    assert_eq!(login(&sb, b"joe", b"second"), ok("joe"));
    assert_eq!(login(&sb, b"joe", b"first"), Answer::Failed);
    // refused: an empty password, a bad login name, no password at all
    assert_eq!(code(&set("joe", "")), 111);
    assert_eq!(code(&set("jo/e", "x")), 111);
    assert_eq!(code(&sb.run("qmailctl", &["passwd", "joe"], b"")), 111);
    assert_eq!(fs::read_to_string(&file).unwrap(), text, "unchanged by refusals");
    // a new file: 0640
    fs::remove_file(&file).unwrap();
    assert_ok(&set("bob", "pw"), "qmailctl passwd");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(login(&sb, b"bob", b"pw"), ok("bob"), "readable by auth_smtp's user");
}

/// auth_imap's request for `user` and `pw`.
fn imap_request(user: &str, pw: &str) -> Vec<u8> {
    format!("imap\nlogin\n{user}\n{pw}\n").into_bytes()
}

/// The next module of the chain: says so, shows fd 3 and whether AUTHENTICATED is set.
const NEXT: &str = "echo next; cat <&3; echo \"A=${AUTHENTICATED-unset}\"";

/// Courier's login program, as `AUTHARGC`/`AUTHARGV*`.
const FAILED: [(&str, &str); 4] = [
    ("AUTHARGC", "3"),
    ("AUTHARGV0", "/bin/sh"),
    ("AUTHARGV1", "-c"),
    ("AUTHARGV2", "echo login-failed A=${AUTHENTICATED-unset}"),
];

#[test]
fn auth_imap_chain() {
    let s = slapd::shared();
    let d = people(s, "ai-chain");
    let sb = &d.sb;
    let ann = sb.tmp.path().join("homes/ann");
    let imap =
        |fd3: &[u8], args: &[&str], env: &[(&str, &str)]| with_fd3(sb, "auth_imap", fd3, args, env);
    // success: the user's ids, home and environment
    let out = imap(&imap_request("ann", PW), &["/bin/sh", "-c", SHOW], &[]);
    let mut want = vec![
        format!("cwd={}", ann.display()),
        format!("ids={}", ids()),
        "fd3=closed".to_string(),
        "AUTHENTICATED=ann".to_string(),
        format!("HOME={}", ann.display()),
        "USER=ann".to_string(),
    ];
    want[3..].sort();
    assert_eq!(shown(&out), want);
    // already authenticated by an earlier module: straight on, fd 3 unread
    let out = imap(b"", &["/bin/sh", "-c", "echo A=$AUTHENTICATED"], &[("AUTHENTICATED", "bob")]);
    assert_eq!(shown(&out), ["A=bob"]);
    // not ours: an unknown login, another type; the next module gets the same request
    let unknown = imap_request("ghost", PW);
    let out = imap(&unknown, &["/bin/sh", "-c", NEXT], &[("AUTHENTICATED", "")]);
    let want = format!("next\n{}A=unset\n", String::from_utf8_lossy(&unknown));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{}", show(&out.stderr));
    let cram = b"imap\ncram-md5\nchallenge\nresponse\n";
    let out = imap(cram, &["/bin/sh", "-c", NEXT], &[]);
    let want = format!("next\n{}A=unset\n", String::from_utf8_lossy(cram));
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // ours and failed: courier's login program tells the client; without one, 111
    for (user, pw) in [("ann", "wrong"), ("ann", ""), ("dis", PW), ("nop", PW)] {
        let out = imap(&imap_request(user, pw), &["/bin/false"], &FAILED);
        assert_eq!(shown(&out), ["login-failed A=unset"], "{user}");
        let out = imap(&imap_request(user, pw), &["/bin/false"], &[]);
        assert_eq!(code(&out), 111, "{user}");
    }
    let out = imap(b"imap\nlogin\nann\n", &["/bin/false"], &FAILED);
    assert_eq!(shown(&out), ["login-failed A=unset"], "needed value missing");
    let out = imap(&[b'x'; 1024], &["/bin/false"], &[]);
    assert_eq!(code(&out), 111, "more than 1023 bytes");
    // the directory down: a failure, not "unknown"
    sb.control("ldapserver", &format!("127.0.0.1:{}\n", free_port()));
    let out = imap(&imap_request("ann", PW), &["/bin/sh", "-c", NEXT], &FAILED);
    assert_eq!(shown(&out), ["login-failed A=unset"]);
}
