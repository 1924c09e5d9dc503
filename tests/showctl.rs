//! qmail-showctl: the report for a root with values, defaults, secrets, obsolete and unknown
//! files and broken ones; secrets never shown; exit codes.

use crate::harness::*;
use std::fs;
use std::time::{Duration, SystemTime};

/// Run qmail-showctl on `sb` and return its exit code and standard output.
fn showctl(sb: &Sandbox) -> (i32, String) {
    let out = sb.run("qmail-showctl", &[], b"");
    (code(&out), String::from_utf8(out.stdout).expect("UTF-8 output"))
}

/// The block of `name`: from its line after an empty line up to the next empty line.
fn block<'a>(out: &'a str, name: &str) -> &'a str {
    let start = out
        .find(&format!("\n\n{name}:"))
        .unwrap_or_else(|| panic!("no block for {name} in:\n{out}"))
        + 2;
    let end = out[start..].find("\n\n").map_or(out.len(), |i| start + i + 1);
    &out[start..end]
}

fn expect_block(out: &str, name: &str, want: &str) {
    assert_eq!(block(out, name), want, "block of {name}; whole output:\n{out}");
}

/// The block of `name` when a directory stands where the file should be.
fn a_directory(name: &str) -> String {
    format!("{name}: Oops! unable to read control/{name}: Is a directory (os error 21).\n")
}

#[test]
fn report_shows_values_defaults_secrets_and_problems() {
    let sb = Sandbox::new();
    sb.control("ldappassword", "s3cret-LDAP\n");
    sb.control("pbssecret", "pbs-Secret-42 \n");
    sb.control("concurrencyremote", "42\n");
    sb.control("databytes", "unlimited\n");
    sb.control("badmailfrom", "# spammers\n@spam.example\n\nbad@x.example  \n");
    sb.control("virtualdomains", "virt.example:alice\nno colon\n");
    sb.control("helohost", "helo\x01host\tname\n");
    sb.control("tarpitdelay", "5\n");
    sb.control("frobnicate", "x\n");
    sb.control("rcpthosts.cdb", "junk");
    sb.control("rcpthosts.tmp", "");
    fs::create_dir(sb.home.join("control/bouncefrom")).unwrap();

    let (rc, out) = showctl(&sb);
    assert_eq!(rc, 0, "{out}");

    let (home, split) = (sb.home.display(), qmail::auto::SPLIT);
    let head = format!(
        "qmail home directory: {home}.\n\
         compiled-in home directory: /var/qmail (QMAILHOME overrides it).\n\
         user-ext delimiter: -.\n\
         paternalism (in decimal): 2.\n\
         silent concurrency limit: 500.\n\
         subdirectory split: {split}.\n\
         user names: alias, qmaild, qmaill, qmailp, qmailq, qmailr, qmails.\n\
         group names: qmail, nofiles.\n\
         me: My name is mx.example.org.\n\
         ldapserver: No ldap server: LDAP lookups are off.\n\n"
    );
    assert!(out.starts_with(&head), "want the header\n{head}\ngot:\n{out}");

    expect_block(&out, "me", "me: mx.example.org\n");
    expect_block(&out, "locals", "locals:\n  mx.example.org\n  example.org\n");
    expect_block(&out, "concurrencyremote", "concurrencyremote: 42\n");
    expect_block(
        &out,
        "concurrencylocal",
        "concurrencylocal: (Default.) simultaneous local deliveries: 100.\n",
    );
    expect_block(
        &out,
        "databytes",
        "databytes: (No number in this file, so the default applies.) \
         largest message qmail-smtpd accepts: 0 (unlimited).\n",
    );
    expect_block(&out, "badmailfrom", "badmailfrom:\n  @spam.example\n  bad@x.example\n");
    expect_block(
        &out,
        "virtualdomains",
        "virtualdomains:\n  virt.example:alice\n  no colon (ignored: no colon)\n",
    );
    expect_block(&out, "helohost", "helohost: helo?host?name\n");
    expect_block(&out, "ldappassword", "ldappassword: (set, 11 bytes)\n");
    expect_block(&out, "pbssecret", "pbssecret: (set, 13 bytes)\n");
    expect_block(
        &out,
        "ldapgrouppassword",
        "ldapgrouppassword: (Default.) bind password for qmail-group (not implemented yet: \
         ignored): empty.\n",
    );
    expect_block(&out, "rcpthosts", "rcpthosts: Oops! control/rcpthosts.cdb is a corrupt cdb.\n");
    expect_block(&out, "bouncefrom", &a_directory("bouncefrom"));
    assert!(!out.contains("s3cret") && !out.contains("pbs-Secret"), "a secret shown:\n{out}");
    for k in qmail::control::KNOWN {
        block(&out, k.name);
    }

    let tail = "\n\nfrobnicate: I have no idea what this file does.\n\
                rcpthosts.tmp: A temporary file of a cdb rebuild; remove it unless one is running.\n\
                tarpitdelay: No longer used, please remove.\n";
    assert!(out.ends_with(tail), "want the tail\n{tail}\ngot:\n{out}");
}

#[test]
fn cdb_variants_and_freshness() {
    let sb = Sandbox::new();
    let control = sb.home.join("control");
    let build = |name: &str| {
        let out = run_with(
            std::process::Command::new(bin("qmail-cdb"))
                .arg(control.join(format!("{name}.cdb")))
                .arg(control.join(format!("{name}.tmp"))),
            b"mx.example.org\n",
        );
        assert_ok(&out, "qmail-cdb");
    };
    build("locals");
    build("rcpthosts");
    sb.control("morercpthosts", "more.example\n");
    build("morercpthosts");
    // rcpthosts and morercpthosts changed after their cdbs were built
    let later = SystemTime::now() + Duration::from_secs(60);
    for name in ["rcpthosts", "morercpthosts"] {
        fs::File::options()
            .write(true)
            .open(control.join(name))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    sb.control("badmailfrom.cdb", "");

    let (rc, out) = showctl(&sb);
    assert_eq!(rc, 0, "{out}");
    expect_block(&out, "locals", "locals: locals.cdb replaces this file.\n");
    expect_block(
        &out,
        "rcpthosts",
        "rcpthosts: Oops! rcpthosts.cdb replaces this file but is older than it: \
         rebuild it with qmail-cdb.\n",
    );
    expect_block(
        &out,
        "morercpthosts.cdb",
        "morercpthosts.cdb: Oops! A valid cdb, but older than morercpthosts: rebuild it.\n",
    );
    let tail =
        "\n\nbadmailfrom.cdb: Not used: only locals.cdb and rcpthosts.cdb replace their lists.\n";
    assert!(out.ends_with(tail), "want the tail\n{tail}\ngot:\n{out}");
}

#[test]
fn missing_me_is_reported_and_unreadable_me_exits_111() {
    let sb = Sandbox::new();
    fs::remove_file(sb.home.join("control/me")).unwrap();
    let (rc, out) = showctl(&sb);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("\nme: Oops! control/me is missing or empty; it is required.\n"), "{out}");
    expect_block(&out, "me", "me: (Default.) this host's fully-qualified name: none (required).\n");

    fs::create_dir(sb.home.join("control/me")).unwrap();
    let (rc, out) = showctl(&sb);
    assert_eq!(rc, 111, "{out}");
    expect_block(&out, "me", &a_directory("me"));
    assert!(out.contains("\ntimeoutsmtpd: "), "the report goes on:\n{out}");
}

#[test]
fn no_home_or_no_control_exits_111() {
    let sb = Sandbox::new();
    let out =
        run_with(sb.cmd("qmail-showctl").env("QMAILHOME", sb.tmp.path().join("nonesuch")), b"");
    assert_eq!(code(&out), 111);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("qmail-showctl: fatal: unable to enter "), "{err}");

    fs::remove_dir_all(sb.home.join("control")).unwrap();
    let out = sb.run("qmail-showctl", &[], b"");
    assert_eq!(code(&out), 111);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unable to read ") && err.contains("/control"), "{err}");
}

#[test]
fn usage_error_exits_100() {
    let sb = Sandbox::new();
    assert_eq!(code(&sb.run("qmail-showctl", &["--bogus"], b"")), 100);
    assert_eq!(code(&sb.run("qmail-showctl", &["extra"], b"")), 100);
    assert_eq!(code(&sb.run("qmail-showctl", &["--help"], b"")), 0);
}

/// The certificate files are shown as their certificate's subject, names and dates, never
/// their contents (no key); broken and unreadable ones are one `Oops!` line; a cipher list
/// with an unknown name is an `Oops!` naming it.
#[test]
fn certificates_are_described_and_keys_never_shown() {
    let sb = Sandbox::new();
    let home = sb.home.to_str().unwrap().to_string();
    let out = sb.run("qmailctl", &["tls-selfsigned", "--home", &home, "--days", "30"], b"");
    assert_ok(&out, "qmailctl tls-selfsigned");
    sb.control("remotecert", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n");
    sb.control("tlsciphers", "TLS13_AES_256_GCM_SHA384 HIGH:!aNULL\n");

    let (rc, out) = showctl(&sb);
    assert_eq!(rc, 0, "{out}");
    let smtpcert = block(&out, "smtpcert");
    let lines: Vec<&str> = smtpcert.lines().collect();
    assert_eq!(lines.len(), 5, "{smtpcert}");
    assert_eq!(lines[0], "smtpcert: 1 certificate and a private key.");
    assert_eq!(lines[1], "  subject: CN=mx.example.org");
    assert_eq!(lines[2], "  subjectAltName: DNS:mx.example.org, DNS:localhost, DNS:example.org");
    assert!(lines[3].starts_with("  not before: ") && lines[3].ends_with(" -0000"), "{smtpcert}");
    assert!(lines[4].starts_with("  not after: ") && !lines[4].contains("EXPIRED"), "{smtpcert}");
    // nothing of the key: not its marker, not a line of its base64
    let pem = fs::read_to_string(sb.home.join("control/smtpcert")).unwrap();
    let key = pem.split("-----BEGIN PRIVATE KEY-----").nth(1).expect("a PKCS#8 key");
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    for line in key.lines().filter(|l| l.len() > 16 && !l.starts_with("-----")) {
        assert!(!out.contains(line), "a line of the key shown:\n{out}");
    }
    expect_block(
        &out,
        "remotecert",
        "remotecert: Oops! control/remotecert: a PEM section is broken.\n",
    );
    expect_block(
        &out,
        "tlsciphers",
        "tlsciphers: Oops! control/tlsciphers: unknown cipher suite HIGH \
         (rustls names, such as TLS13_AES_256_GCM_SHA384).\n",
    );

    fs::remove_file(sb.home.join("control/remotecert")).unwrap();
    fs::create_dir(sb.home.join("control/remotecert")).unwrap();
    sb.control("tlsciphers", "TLS13_AES_256_GCM_SHA384\n");
    let (rc, out) = showctl(&sb);
    assert_eq!(rc, 0, "{out}");
    expect_block(&out, "remotecert", &a_directory("remotecert"));
    expect_block(&out, "tlsciphers", "tlsciphers:\n  TLS13_AES_256_GCM_SHA384\n");
    expect_block(
        &out,
        "tlsdheparams",
        "tlsdheparams: (Default.) DHE parameters (never read: rustls has no finite-field DHE): \
         none.\n",
    );
}
