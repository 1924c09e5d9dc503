//! imapd with real IMAP clients, each in its own sandbox: mbsync (isync) syncing a
//! 1,000-message account both ways, offlineimap pulling two folders, mutt (in batch, under
//! util-linux's `script` for its terminal) copying and flagging a folder, and fetchmail
//! fetching into an MDA and expunging. A missing client fails its test loudly (tests/run
//! installs them).

use crate::harness::imap::{Imapd, PASS, USER};
use crate::harness::{assert_ok, run_with};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Make a Maildir++ folder `.name` in the user's Maildir, owned by the user.
fn make_folder(imapd: &Imapd, name: &str) -> PathBuf {
    let dir = imapd.maildir().join(format!(".{name}"));
    for sub in ["", "cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
        std::os::unix::fs::chown(dir.join(sub), Some(imapd.uid), Some(imapd.gid)).unwrap();
    }
    let marker = dir.join("maildirfolder");
    fs::write(&marker, "").unwrap();
    std::os::unix::fs::chown(&marker, Some(imapd.uid), Some(imapd.gid)).unwrap();
    dir
}

/// The messages of the Maildir `dir` (`new/` and `cur/`): file path -> content.
fn messages(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["new", "cur"] {
        let Ok(d) = fs::read_dir(dir.join(sub)) else { continue };
        for e in d.flatten() {
            out.insert(e.path(), fs::read(e.path()).unwrap());
        }
    }
    out
}

/// The file names under `dir`, recursively, relative to it (sorted), skipping `skip` names.
fn listing(dir: &Path, skip: &[&str]) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if skip.contains(&name.as_str()) {
                continue;
            }
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, skip, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, skip, &mut out);
    out.sort();
    out
}

/// A message's Maildir flags (the letters after `:2,`).
fn flags_of(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    name.split_once(":2,").map(|(_, f)| f.to_string()).unwrap_or_default()
}

/// The one message of `all` that is `text` but for mbsync's `X-TUID:`.
fn find<'a>(all: &'a BTreeMap<PathBuf, Vec<u8>>, text: &str) -> &'a PathBuf {
    let hits: Vec<_> =
        all.iter().filter(|(_, t)| without_tuid(t) == text.as_bytes()).map(|(p, _)| p).collect();
    assert_eq!(hits.len(), 1, "copies of {text:?}");
    hits[0]
}

/// Run `cmd` (a client), failing loudly when it is not installed.
fn client(cmd: &mut Command, what: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    assert!(
        Command::new("sh")
            .args(["-c", "command -v \"$1\" >/dev/null", "sh", &program])
            .status()
            .unwrap()
            .success(),
        "{program} is not installed: run tests/run (it installs the clients)"
    );
    let out = run_with(cmd, b"");
    assert_ok(&out, what);
    out
}

/// `text` without mbsync's `X-TUID:` header line (it adds one to every message it
/// propagates, to find the copy again should the store not tell its UID).
fn without_tuid(text: &[u8]) -> Vec<u8> {
    let end = text.windows(2).position(|w| w == b"\n\n").map_or(text.len(), |p| p + 1);
    let (head, body) = text.split_at(end);
    let mut out = Vec::with_capacity(text.len());
    for line in head.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"X-TUID: ") {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

/// `text` with CR LF line ends made LF (APPEND stores what the client sent: CR LF).
fn unix(text: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(text).replace("\r\n", "\n").into_bytes()
}

/// A message numbered `i` of folder `tag`, with LF line ends; every 97th is large.
fn message(tag: &str, i: usize) -> String {
    let mut body = format!(
        "From: sender{i}@example.net\nTo: {USER}@example.org\nSubject: {tag} {i}\n\
         Message-ID: <{tag}.{i}@example.net>\nDate: Mon, 1 Jan 2024 12:00:00 +0000\n\n\
         Message {i} of {tag}.\n.\n..leading dots\nFrom the start of a line\n"
    );
    if i % 97 == 0 {
        for n in 0..2000 {
            body.push_str(&format!("line {n} of a large message, {tag} {i}\n"));
        }
    }
    body
}

// ---------------------------------------------------------------------------------------
// mbsync

/// The mbsync set-up: an rc file and a local Maildir store under the sandbox.
struct Mbsync {
    rc: PathBuf,
    local: PathBuf,
    home: PathBuf,
}

impl Mbsync {
    fn new(imapd: &Imapd) -> Mbsync {
        let base = imapd.sb.tmp.path().join("mbsync");
        let local = base.join("local");
        fs::create_dir_all(&local).unwrap();
        let passfile = base.join("pass");
        fs::write(&passfile, PASS).unwrap();
        let rc = base.join("mbsyncrc");
        fs::write(
            &rc,
            format!(
                "IMAPAccount acct\nHost 127.0.0.1\nPort {port}\nUser {USER}\n\
                 PassCmd \"cat {pass}\"\nSSLType None\nAuthMechs LOGIN\n\n\
                 IMAPStore remote\nAccount acct\nPath INBOX.\n\n\
                 MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
                 Channel ch\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n\
                 SyncState *\nExpunge None\n",
                port = imapd.port,
                pass = passfile.display(),
                local = local.display(),
            ),
        )
        .unwrap();
        Mbsync { rc, local, home: base }
    }

    /// One `mbsync -V -c rc -a` with `extra` options; its output (stdout and stderr).
    fn run(&self, extra: &[&str]) -> String {
        let out = client(
            Command::new("mbsync")
                .arg("-V")
                .args(extra)
                .arg("-c")
                .arg(&self.rc)
                .arg("-a")
                .env("HOME", &self.home),
            "mbsync",
        );
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

#[test]
fn imap_mbsync_syncs_1000_messages_both_ways() {
    let imapd = Imapd::new(&["-p", "2"]);
    let maildir = imapd.maildir();
    for i in 0..1000 {
        imapd.put(&maildir, &message("inbox", i));
    }
    let archive = make_folder(&imapd, "Archive");
    for i in 0..5 {
        imapd.put(&archive, &message("archive", i));
    }
    let m = Mbsync::new(&imapd);

    // 1: everything arrives locally, byte for byte (LF line ends, as they were delivered)
    let out1 = m.run(&[]);
    let local_inbox = messages(&m.local.join("INBOX"));
    assert_eq!(local_inbox.len(), 1000, "mbsync:\n{out1}");
    let local_archive = messages(&m.local.join("Archive"));
    assert_eq!(local_archive.len(), 5, "mbsync:\n{out1}");
    let mut stored: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for t in local_inbox.values() {
        *stored.entry(without_tuid(t)).or_default() += 1;
    }
    for i in 0..1000 {
        let text = message("inbox", i);
        assert_eq!(stored.get(text.as_bytes()), Some(&1), "inbox {i} not stored once as sent");
    }
    for i in 0..5 {
        let text = message("archive", i);
        assert!(local_archive.values().any(|t| without_tuid(t) == text.as_bytes()), "archive {i}");
    }

    // 2: a local message goes up, a remote flag comes down
    let new_text = message("local", 1);
    fs::write(m.local.join("INBOX/new/1700000000.local1.host"), &new_text).unwrap();
    let mut c = imapd.login();
    c.ok("a1", "SELECT INBOX");
    let u = c.ok("a2", "UID SEARCH HEADER Message-ID <inbox.42@example.net>");
    assert_eq!(u.len(), 1, "{u:?}");
    let uid = u[0].strip_prefix("* SEARCH ").expect("one UID").trim().to_string();
    c.ok("a3", &format!("UID STORE {uid} +FLAGS (\\Flagged)"));
    c.ok("a4", "LOGOUT");
    // -Dn: the IMAP exchange, to see the APPENDUID (mbsync then needs no X-TUID search)
    let out2 = m.run(&["-Dn"]);
    let server = messages(&maildir);
    let up: Vec<_> = server.values().filter(|t| without_tuid(t) == new_text.as_bytes()).collect();
    // once, as sent, with LF line ends like every Maildir message (APPEND takes CR LF)
    assert_eq!(up.len(), 1, "the local message on the server, once, unchanged; mbsync:\n{out2}");
    assert!(out2.contains("OK [APPENDUID "), "no APPENDUID; mbsync:\n{out2}");
    assert_eq!(server.len(), 1001);
    let local_inbox = messages(&m.local.join("INBOX"));
    assert_eq!(local_inbox.len(), 1001);
    let flagged = find(&local_inbox, &message("inbox", 42));
    assert!(flags_of(flagged).contains('F'), "{flagged:?}; mbsync:\n{out2}");
    find(&local_inbox, &new_text);

    // 3: nothing to do on either side
    let skip = ["dovecot-uidlist", "dovecot-uidlist.lock", ".mbsyncstate", ".mbsyncstate.lock"];
    let before = (listing(&maildir, &skip), listing(&m.local, &skip));
    let out3 = m.run(&["-Dn"]);
    let after = (listing(&maildir, &skip), listing(&m.local, &skip));
    assert_eq!(before, after, "mbsync changed files on its third run:\n{out3}");
    // and asks for nothing but the lists of UIDs and flags
    for line in out3.lines().filter_map(|l| l.strip_prefix(">>> ")) {
        let command = line.split_once(' ').map_or(line, |(_, c)| c);
        assert!(
            ["LOGIN ", "NAMESPACE", "LIST ", "SELECT ", "LOGOUT"]
                .iter()
                .any(|c| command.starts_with(c))
                || command.starts_with("UID FETCH") && command.ends_with("(UID FLAGS)"),
            "mbsync's third run sent {command:?}:\n{out3}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// offlineimap

#[test]
fn imap_offlineimap_pulls_two_folders() {
    let imapd = Imapd::new(&["-p", "2"]);
    let maildir = imapd.maildir();
    for i in 0..30 {
        imapd.put(&maildir, &message("inbox", i));
    }
    let sent = make_folder(&imapd, "Sent");
    for i in 0..20 {
        imapd.put(&sent, &message("sent", i));
    }
    // one seen message in cur/, to see its flag arrive
    let seen = message("seen", 0);
    let name = imapd.put(&maildir, &seen);
    let cur = maildir.join("cur").join(format!("{name}:2,S"));
    fs::rename(maildir.join("new").join(&name), &cur).unwrap();

    let base = imapd.sb.tmp.path().join("offlineimap");
    let local = base.join("local");
    fs::create_dir_all(&local).unwrap();
    fs::write(base.join("pass"), PASS).unwrap();
    let rc = base.join("offlineimaprc");
    fs::write(
        &rc,
        format!(
            "[general]\naccounts = test\nmetadata = {base}/meta\n\n\
             [Account test]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {local}\nsep = .\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = {USER}\nremotepassfile = {base}/pass\nssl = no\nstarttls = no\n\
             auth_mechanisms = PLAIN, LOGIN\n",
            base = base.display(),
            local = local.display(),
            port = imapd.port,
        ),
    )
    .unwrap();
    let out = client(
        Command::new("offlineimap")
            .arg("-c")
            .arg(&rc)
            .args(["-o", "-u", "basic"])
            .env("HOME", &base),
        "offlineimap",
    );
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!said.contains("ERROR"), "offlineimap:\n{said}");
    let inbox = messages(&local.join("INBOX"));
    assert_eq!(inbox.len(), 31, "{:?}; offlineimap:\n{said}", listing(&local, &[]));
    for i in 0..30 {
        find(&inbox, &message("inbox", i));
    }
    assert_eq!(flags_of(find(&inbox, &seen)), "S");
    let local_sent = messages(&local.join("INBOX.Sent"));
    assert_eq!(local_sent.len(), 20, "{:?}; offlineimap:\n{said}", listing(&local, &[]));
    for i in 0..20 {
        find(&local_sent, &message("sent", i));
    }
    // the server's messages are all still there
    assert_eq!(messages(&maildir).len(), 31);
    assert_eq!(messages(&sent).len(), 20);
}

// ---------------------------------------------------------------------------------------
// mutt

#[test]
fn imap_mutt_copies_a_folder() {
    let imapd = Imapd::new(&["-p", "2"]);
    let maildir = imapd.maildir();
    for i in 0..10 {
        imapd.put(&maildir, &message("inbox", i));
    }
    let saved = make_folder(&imapd, "Saved");
    let base = imapd.sb.tmp.path().join("mutt");
    fs::create_dir_all(&base).unwrap();
    let rc = base.join("muttrc");
    fs::write(
        &rc,
        format!(
            "set imap_user={USER}\nset imap_pass=\"{PASS}\"\n\
             set folder=imap://127.0.0.1:{port}/\nset spoolfile=+INBOX\n\
             set ssl_starttls=no\nset ssl_force_tls=no\nset imap_authenticators=\"login\"\n\
             set quit=yes\nset move=no\nset confirmappend=no\nset confirmcreate=no\n\
             set record=\nset header_cache=\nset mail_check=0\nset timeout=0\n",
            port = imapd.port,
        ),
    )
    .unwrap();
    let mutt = format!(
        "mutt -n -F {rc} -f imap://127.0.0.1:{port}/INBOX -e 'push \"<tag-pattern>~A<enter>\
         <tag-prefix><copy-message>=INBOX.Saved<enter><tag-prefix><flag-message><quit>\"'",
        rc = rc.display(),
        port = imapd.port,
    );
    let out = client(
        Command::new("script")
            .args(["-qec", &mutt, "/dev/null"])
            .env("HOME", &base)
            .env("TERM", "vt100"),
        "mutt",
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let copies = messages(&saved);
    assert_eq!(copies.len(), 10, "mutt:\n{said}");
    for i in 0..10 {
        let text = message("inbox", i);
        assert_eq!(
            copies.values().filter(|t| unix(t) == text.as_bytes()).count(),
            1,
            "inbox {i} in INBOX.Saved; mutt:\n{said}"
        );
    }
    // the originals stay, flagged (mutt's STOREs when it leaves)
    let originals = messages(&maildir);
    assert_eq!(originals.len(), 10, "mutt:\n{said}");
    for path in originals.keys() {
        assert!(flags_of(path).contains('F'), "{path:?} not flagged; mutt:\n{said}");
    }
}

// ---------------------------------------------------------------------------------------
// fetchmail

#[test]
fn imap_fetchmail_fetches_and_expunges() {
    let imapd = Imapd::new(&["-p", "2"]);
    let maildir = imapd.maildir();
    for i in 0..20 {
        imapd.put(&maildir, &message("inbox", i));
    }
    let base = imapd.sb.tmp.path().join("fetchmail");
    let got = base.join("got");
    fs::create_dir_all(&got).unwrap();
    let rc = base.join("fetchmailrc");
    // each message into a file of its own, named by the MDA shell's pid; no STARTTLS
    // (`sslproto ''`: fetchmail tries it even when not offered)
    fs::write(
        &rc,
        format!(
            "set no bouncemail\nset invisible\n\
             poll 127.0.0.1 service {port} protocol IMAP auth password\n\
             \x20 user \"{USER}\" there with password \"{PASS}\" is root here\n\
             \x20 folder INBOX sslproto ''\n\
             \x20 mda \"sh -c 'cat > {got}/msg.$$'\"\n",
            port = imapd.port,
            got = got.display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    let out = client(
        Command::new("fetchmail")
            .arg("-f")
            .arg(&rc)
            .args(["--nosyslog", "--nodetach", "-v"])
            .env("HOME", &base)
            .env("FETCHMAILHOME", &base),
        "fetchmail",
    );
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let fetched: Vec<Vec<u8>> =
        fs::read_dir(&got).unwrap().map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    assert_eq!(fetched.len(), 20, "fetchmail:\n{said}");
    for i in 0..20 {
        let text = message("inbox", i);
        assert_eq!(
            fetched.iter().filter(|t| **t == text.as_bytes()).count(),
            1,
            "inbox {i} not fetched exactly as sent; fetchmail:\n{said}"
        );
    }
    // fetchmail deletes what it fetched: STORE \Deleted and EXPUNGE
    assert!(messages(&maildir).is_empty(), "left on the server; fetchmail:\n{said}");
}
