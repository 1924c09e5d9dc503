//! LDAP: the schema in both formats loads into a real slapd; the recipient lookup of
//! `qmail::ldap` against a real slapd (exact, alternate, case, catch-alls, ambiguity, filter
//! injection); faults are temporary (server stopped, frozen, wrong password, missing base DN)
//! and a dead first server fails over to the second.

use crate::harness::slapd::{self, Slapd, ROOTDN, ROOTPW, SUFFIX};
use crate::harness::TempDir;
use qmail::ldap::{Account, Config, Directory, Error};
use std::fs;
use std::process::Command;
use std::sync::LazyLock;
use std::time::Duration;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schema_loads_from_slapd_conf() {
    slapd::require_slapd();
    let tmp = TempDir::new("schema-conf");
    fs::create_dir_all(tmp.path().join("db")).unwrap();
    let conf = tmp.path().join("slapd.conf");
    fs::write(&conf, slapd::slapd_conf(tmp.path(), &slapd::schema_dir().join("qmail.schema")))
        .unwrap();
    run(Command::new("slaptest").args(["-u", "-f"]).arg(&conf));
    // The example DIT is valid under the schema.
    run(Command::new("slapadd")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(slapd::schema_dir().join("example.ldif")));
}

#[test]
fn schema_loads_as_cn_config() {
    slapd::require_slapd();
    let tmp = TempDir::new("schema-cnconfig");
    let (cfg, db) = (tmp.path().join("slapd.d"), tmp.path().join("db"));
    fs::create_dir_all(&cfg).unwrap();
    fs::create_dir_all(&db).unwrap();
    let ldif = format!(
        "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n\n\
         dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\n\
         olcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n\n\
         dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
         include: file:///etc/ldap/schema/core.ldif\n\n\
         include: file:///etc/ldap/schema/cosine.ldif\n\n\
         include: file:///etc/ldap/schema/nis.ldif\n\n\
         include: file:///etc/ldap/schema/inetorgperson.ldif\n\n\
         include: file://{}\n\n\
         dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\n\
         objectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\nolcSuffix: {SUFFIX}\n\
         olcRootDN: {ROOTDN}\nolcDbDirectory: {}\n",
        slapd::schema_dir().join("qmail.ldif").display(),
        db.display()
    );
    let config = tmp.path().join("config.ldif");
    fs::write(&config, ldif).unwrap();
    run(Command::new("slapadd").args(["-n0", "-F"]).arg(&cfg).arg("-l").arg(&config));
    run(Command::new("slaptest").args(["-u", "-F"]).arg(&cfg));
    assert!(cfg.join("cn=config/cn=schema/cn={4}qmail.ldif").exists());
    run(Command::new("slapadd")
        .args(["-n1", "-F"])
        .arg(&cfg)
        .arg("-l")
        .arg(slapd::schema_dir().join("example.ldif")));
}

/// The lookup fixtures, in `ou=lookup` of the shared slapd: domain lk.example with a user,
/// a prefix catch-all, the domain catch-all and two entries sharing an address; domain
/// other.example with one user and no catch-all.
static LOOKUP: LazyLock<String> = LazyLock::new(|| {
    let s = slapd::shared();
    let ou = s.add_ou("lookup");
    let person = |rdn: &str, attrs: &str| {
        format!(
            "dn: {rdn},{ou}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\ncn: x\nsn: x\n{attrs}\n"
        )
    };
    let ldif = [
        person(
            "uid=joe",
            "uid: joe\nmail: joe@lk.example\nmailAlternateAddress: joe.alias@lk.example\n\
             homeDirectory: /home/joe\nmailMessageStore: ./Maildir/\nqmailUID: 2000\n\
             qmailGID: 2001\nmailQuotaSize: 1000\ndeliveryMode: NoForward\n\
             deliveryMode: reply\nmailReplyText: away\naccountStatus: noaccess\nmailSizeMax: 0",
        ),
        person("uid=list", "uid: list\nmail: list-catchall@lk.example\nhomeDirectory: /home/list"),
        person("uid=catchall", "uid: catchall\nmail: catchall@lk.example\nhomeDirectory: /home/c"),
        person(
            "uid=dup1",
            "uid: dup1\nmail: dup1@lk.example\nmailAlternateAddress: dup@lk.example",
        ),
        person(
            "uid=dup2",
            "uid: dup2\nmail: dup2@lk.example\nmailAlternateAddress: dup@lk.example",
        ),
        person("uid=a", "uid: a\nmail: a@other.example\nmailForwardingAddress: x@y.example"),
        person("uid=bad", "uid: bad\nmail: bad@other.example\nqmailUID: 99"),
    ]
    .join("\n");
    s.add(&ldif);
    ou
});

fn directory(servers: &[&str], base: &str) -> Directory {
    let mut cfg = Config::new(servers, base);
    cfg.login = ROOTDN.to_string();
    cfg.password = ROOTPW.to_string();
    cfg.alias_domains = vec![("alias.example".into(), "lk.example".into())];
    cfg.default_quota_count = 7;
    Directory::new(cfg)
}

fn lookup(address: &[u8]) -> Result<Option<Account>, Error> {
    let mut dir = directory(&[&slapd::shared().server()], &LOOKUP);
    dir.lookup(address)
}

fn found(address: &str) -> (String, &'static str, String) {
    match lookup(address.as_bytes()) {
        Ok(Some(a)) => {
            let uid = a.dn.split(',').next().unwrap_or_default().to_string();
            (uid, a.dash, String::from_utf8_lossy(&a.ext).into_owned())
        }
        other => panic!("{address}: expected an entry, got {other:?}"),
    }
}

#[test]
fn lookup_table() {
    let rows: &[(&str, &str, &str, &str)] = &[
        ("joe@lk.example", "uid=joe", "", ""),
        ("joe.alias@lk.example", "uid=joe", "", ""),
        ("JOE@LK.Example", "uid=joe", "", ""),
        ("joe@alias.example", "uid=joe", "", ""),
        ("list-foo@lk.example", "uid=list", "-", "foo"),
        ("List-Foo-Bar@lk.example", "uid=list", "-", "Foo-Bar"),
        ("list@lk.example", "uid=catchall", "-", "list"),
        ("nobody@lk.example", "uid=catchall", "-", "nobody"),
        ("x-y-z@lk.example", "uid=catchall", "-", "x-y-z"),
    ];
    for (address, dn, dash, ext) in rows {
        let want = (dn.to_string(), *dash, ext.to_string());
        assert_eq!(found(address), want, "{address}");
    }
}

#[test]
fn account_is_typed() {
    let a = lookup(b"joe@lk.example").unwrap().unwrap();
    assert_eq!(a.user.as_deref(), Some("joe"));
    assert_eq!((a.uid, a.gid), (Some(2000), Some(2001)));
    assert_eq!(a.home.as_deref(), Some("/home/joe"));
    assert_eq!(a.store.as_deref(), Some("./Maildir/"));
    assert_eq!(a.status, qmail::ldap::AccountStatus::NoAccess);
    assert!(a.status.deliverable());
    assert!(a.mode.noforward && a.mode.reply && !a.mode.nolocal);
    assert_eq!(a.mode.env().as_deref(), Some("noforward:reply"));
    assert_eq!(a.reply_text.as_deref(), Some("away"));
    assert_eq!((a.quota_size, a.quota_count, a.size_max), (1000, 7, None));
    assert_eq!(a.maildir_quota().as_deref(), Some("1000S,7C"));
    assert_eq!(a.dot_mode, qmail::ldap::DotMode::LdapOnly);
    let fwd = lookup(b"a@other.example").unwrap().unwrap();
    assert_eq!(fwd.forwards, ["x@y.example"]);
    assert_eq!(fwd.store(None).unwrap(), qmail::ldap::Store::ForwardOnly);
    match lookup(b"bad@other.example") {
        Err(e @ Error::BadValue { attr: "qmailUID", .. }) => assert!(!e.is_temporary()),
        other => panic!("expected a bad qmailUID, got {other:?}"),
    }
}

#[test]
fn two_entries_are_ambiguous() {
    match lookup(b"dup@lk.example") {
        Err(Error::Ambiguous { dns, .. }) => {
            assert_eq!(dns.len(), 2, "{dns:?}");
            assert!(dns.iter().any(|d| d.starts_with("uid=dup1")), "{dns:?}");
            assert!(dns.iter().any(|d| d.starts_with("uid=dup2")), "{dns:?}");
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
}

#[test]
fn nothing_found_is_none() {
    for address in ["nobody@other.example", "nobody@nowhere.example", "no-at-sign"] {
        assert!(matches!(lookup(address.as_bytes()), Ok(None)), "{address}");
    }
}

#[test]
fn hostile_local_parts_find_nothing() {
    let hostile: &[&[u8]] = &[
        b"*@other.example",
        b"a*@other.example",
        b"(@other.example",
        b")@other.example",
        b"\\@other.example",
        b"a\\2a@other.example",
        b"\0@other.example",
        b"a\0@other.example",
        b"*)(mail=*@other.example",
        b"a@other.example)(|(mail=*@other.example",
        b"\xff@other.example",
    ];
    for address in hostile {
        let r = lookup(address);
        assert!(matches!(r, Ok(None)), "{:?}: {r:?}", String::from_utf8_lossy(address));
    }
}

#[test]
fn missing_base_dn_is_temporary() {
    let mut dir = directory(&[&slapd::shared().server()], &format!("ou=nonexistent,{SUFFIX}"));
    match dir.lookup(b"joe@lk.example") {
        Err(e @ Error::NoSuchBase(_)) => assert!(e.is_temporary()),
        other => panic!("expected NoSuchBase, got {other:?}"),
    }
}

#[test]
fn wrong_password_is_temporary() {
    let mut cfg = Config::new(&[&slapd::shared().server()], &LOOKUP);
    cfg.login = ROOTDN.to_string();
    cfg.password = "wrong".to_string();
    match Directory::new(cfg).lookup(b"joe@lk.example") {
        Err(e @ Error::Credentials(_)) => assert!(e.is_temporary()),
        other => panic!("expected Credentials, got {other:?}"),
    }
}

#[test]
fn dead_first_server_fails_over() {
    let dead = format!("127.0.0.1:{}", crate::harness::free_port());
    let mut dir = directory(&[&dead, &slapd::shared().server()], &LOOKUP);
    let a = dir.lookup(b"joe@lk.example").unwrap().unwrap();
    assert!(a.dn.starts_with("uid=joe"));
    // Only dead servers: temporary.
    let mut dir = directory(&[&dead], &LOOKUP);
    match dir.lookup(b"joe@lk.example") {
        Err(e @ Error::Unreachable(_)) => assert!(e.is_temporary()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[test]
fn stopped_and_frozen_server_are_temporary() {
    let s = Slapd::new();
    let ou = s.add_ou("faults");
    s.add(&format!(
        "dn: uid=joe,{ou}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\ncn: x\nsn: x\n\
         uid: joe\nmail: joe@lk.example\nhomeDirectory: /home/joe\n"
    ));
    let mut cfg = Config::new(&[&s.server()], &ou);
    cfg.search_timeout = Duration::from_secs(1);
    cfg.connect_timeout = Duration::from_secs(1);
    let mut dir = Directory::new(cfg.clone());
    assert!(dir.lookup(b"joe@lk.example").unwrap().is_some());

    // Frozen mid-run: the open connection's search times out, and no catch-all is tried.
    s.pause();
    match dir.lookup(b"joe@lk.example") {
        Err(e @ Error::Timeout) => assert!(e.is_temporary()),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // A new connection to a frozen server: the bind times out.
    match Directory::new(cfg.clone()).lookup(b"joe@lk.example") {
        Err(e) => assert!(e.is_temporary(), "{e}"),
        other => panic!("expected a temporary failure, got {other:?}"),
    }
    s.resume();

    // Stopped: temporary; back again: found, also on the directory that saw the failures.
    s.stop();
    match dir.lookup(b"joe@lk.example") {
        Err(e) => assert!(e.is_temporary(), "{e}"),
        other => panic!("expected a temporary failure, got {other:?}"),
    }
    s.start();
    assert!(dir.lookup(b"joe@lk.example").unwrap().is_some());
}
