//! digest: byte-exact values with fixed salts, values of OpenLDAP's slappasswd verified,
//! slappasswd's salted values reproduced byte for byte from their salts, and every failure.

use crate::harness::{bin, code};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::process::{Command, Output};

const SLAPPASSWD: &str = "/usr/sbin/slappasswd";
const PW: &str = "a good password";

fn digest(args: &[&str]) -> Output {
    Command::new(bin("digest")).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `slappasswd -h scheme [-c format] -s pw`: the value it prints.
fn slappasswd(scheme: &str, format: Option<&str>, pw: &str) -> String {
    let mut cmd = Command::new(SLAPPASSWD);
    cmd.args(["-h", scheme]);
    if let Some(f) = format {
        cmd.args(["-c", f]);
    }
    let out = cmd.args(["-s", pw]).output().expect("slappasswd (Debian's slapd) must be installed");
    assert!(out.status.success(), "slappasswd: {}", stderr(&out));
    stdout(&out).trim_end().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes whose crypt-alphabet base64 begins with `chars` (6 bits a character, the last
/// byte padded with zero bits).
fn crypt64_bytes(chars: &str) -> Vec<u8> {
    const ALPHABET: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let bits: Vec<bool> = chars
        .bytes()
        .flat_map(|c| {
            let v = ALPHABET.bytes().position(|a| a == c).unwrap();
            (0..6).rev().map(move |i| v >> i & 1 == 1)
        })
        .collect();
    bits.chunks(8)
        .map(|byte| {
            byte.iter().enumerate().fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << (7 - i)))
        })
        .collect()
}

const SALT_HEX: &str = "303132333435363738396162636465665859";

/// Every scheme from one fixed salt, in digest's order, byte for byte (the values were
/// computed independently with Python's hashlib and perl's crypt).
#[test]
fn fixed_salts_give_byte_exact_values() {
    let salt = SALT_HEX;
    let want = "{CRYPT}A1gvFC.bcp55I\n\
                {MD4}9KruXHYvpXpPZIKybfmw4Q==\n\
                {MD5}Jl0K2Z4VjDBoVRpX/edWjQ==\n\
                {NS-MTA-MD5}7da9af03e366d2b2046b7383c5a2203e30313233343536373839616263646566\n\
                {SMD5}Po1bjgYABuaYZ+uPZm479DAxMjM0NTY3ODlhYmNkZWZYWQ==\n\
                {SHA}+PY/+o41iAewg7IitdqgVx9OCq0=\n\
                {SSHA}CawCy3xvTTtRJgYJYGeHD+iFj8kwMTIzNDU2Nzg5YWJjZGVmWFk=\n\
                {RMD160}lHDZ5dldOMwyu3g9Gtf4RBqROG0=\n";
    for args in [
        vec!["-S", salt, PW],
        vec!["-c", "-s", "MDEyMzQ1Njc4OWFiY2RlZlhZ", PW],
        vec!["-S", "303132333435363738396162636465665859", "--", PW],
    ] {
        let out = digest(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{args:?}");
    }
    let out = digest(&["-5", "-t", "CRYPT", "-S", salt, PW]);
    assert_eq!(stdout(&out), "{CRYPT}$1$A12mAnEp$wHCv3zYe..kL6qJPbZPUX0\n");
    let out = digest(&["-f", "$6$rounds=1000$XXXXXXXXXXXXXXXX$", "-t", "crypt", "-S", salt, PW]);
    let value = stdout(&out);
    assert!(value.starts_with("{CRYPT}$6$rounds=1000$A12mAnEpBXQsCK3W$"), "{value}");
    assert_eq!(stdout(&digest(&["-v", PW, value.trim_end()])), "passwords are equal.\n");
}

/// The default salt is 18 random bytes: salted values differ from run to run and have the
/// lengths upstream's have; every value checks back, also blowfish's.
#[test]
fn random_salts_and_every_value_checks_back() {
    let one = stdout(&digest(&["-t", "ssha", PW]));
    let two = stdout(&digest(&["-t", "ssha", PW]));
    assert_ne!(one, two);
    assert_eq!(one.trim_end().len(), "{SSHA}".len() + 52, "{one}");
    let smd5 = stdout(&digest(&["-t", "smd5", PW]));
    assert_eq!(smd5.trim_end().len(), "{SMD5}".len() + 48, "{smd5}");
    for format in [&[][..], &["-5"], &["-b"]] {
        let mut args = format.to_vec();
        args.push(PW);
        let out = digest(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}{}", stdout(&out), stderr(&out));
        for line in stdout(&out).lines() {
            let ok = digest(&["-v", PW, line]);
            assert_eq!(stdout(&ok), "passwords are equal.\n", "{line}");
            // (traditional DES looks at the first 8 bytes only)
            let wrong = digest(&["-v", "A good password", line]);
            assert_eq!(stdout(&wrong), "passwords are NOT equal.\n", "{line}");
        }
    }
    assert!(stdout(&digest(&["-b", "-t", "crypt", PW])).starts_with("{CRYPT}$2a$07$"));
}

/// What slappasswd makes, digest verifies (bigcrypt too, which slappasswd's default
/// `{CRYPT}` is for passwords over 8 bytes); and from the salt in slappasswd's value digest
/// makes the very same value.
#[test]
fn slappasswd_values_verify_and_are_reproduced_byte_for_byte() {
    for pw in [PW, "x", "pässwörd with spaces"] {
        for (scheme, format) in [
            ("{SSHA}", None),
            ("{SHA}", None),
            ("{SMD5}", None),
            ("{MD5}", None),
            ("{CRYPT}", None),
            ("{CRYPT}", Some("%.2s")),
            ("{CRYPT}", Some("$1$%.8s")),
            ("{CRYPT}", Some("$5$%.16s")),
            ("{CRYPT}", Some("$6$%.16s")),
        ] {
            let value = slappasswd(scheme, format, pw);
            let out = digest(&["-v", pw, &value]);
            assert_eq!(stdout(&out), "passwords are equal.\n", "{value} of {pw:?}");
            let out = digest(&["-v", &format!("!{pw}"), &value]);
            assert_eq!(stdout(&out), "passwords are NOT equal.\n", "{value}");
            // the same value from digest, given slappasswd's salt
            let body = value.split_once('}').unwrap().1;
            let made = match (scheme, format) {
                ("{SSHA}", _) => {
                    let salt = &BASE64.decode(body).unwrap()[20..];
                    digest(&["-t", "ssha", "-S", &hex(salt), pw])
                }
                ("{SMD5}", _) => {
                    let salt = &BASE64.decode(body).unwrap()[16..];
                    digest(&["-t", "smd5", "-S", &hex(salt), pw])
                }
                ("{SHA}", _) => digest(&["-t", "sha", pw]),
                ("{MD5}", _) => digest(&["-t", "md5", pw]),
                // slappasswd's default salt is long: libxcrypt then makes bigcrypt, which
                // digest does not make, for passwords over 8 bytes
                (_, None) if body.len() > 13 => continue,
                (_, None | Some("%.2s")) => {
                    digest(&["-t", "crypt", "-S", &hex(&crypt64_bytes(&body[..2])), pw])
                }
                (_, Some("$1$%.8s")) => {
                    digest(&["-t", "crypt", "-5", "-S", &hex(&crypt64_bytes(&body[3..11])), pw])
                }
                (_, Some(f)) => {
                    let salt = &body[3..19];
                    let format = format!("{}XXXXXXXXXXXXXXXX$", &f[..3]);
                    digest(&["-t", "crypt", "-f", &format, "-S", &hex(&crypt64_bytes(salt)), pw])
                }
            };
            assert_eq!(stdout(&made), format!("{value}\n"), "{scheme} {format:?} of {pw:?}");
        }
    }
}

#[test]
fn failures_usage_and_bad_values() {
    // schemes that cannot be made from the salt: a line each, exit 1
    let rows: &[(&[&str], &str)] = &[
        (&["-t", "ssha", "-S", "010203"], "ssha failed.\n"),
        (&["-t", "SMD5", "-S", "010203"], "smd5 failed.\n"),
        (&["-t", "ns-mta-md5", "-S", "000102030405060708090a0b0c0d0e"], "ns-mta-md5 failed.\n"),
        (&["-t", "crypt", "-5", "-S", "0001020304"], "crypt failed.\n"),
        (&["-t", "crypt", "-f", "nox", "-S", "0001020304"], "crypt failed.\n"),
    ];
    for (args, want) in rows {
        let mut args = args.to_vec();
        args.push(PW);
        let out = digest(&args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert_eq!(stdout(&out), *want, "{args:?}");
    }
    let out = digest(&["-S", "010203", PW]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stdout(&out).lines().filter(|l| l.ends_with(" failed.")).collect::<Vec<_>>(),
        ["ns-mta-md5 failed.", "smd5 failed.", "ssha failed."]
    );
    assert!(stdout(&out).contains("{CRYPT}"), "DES needs 2 of the 3 bytes");
    // usage errors, bad salts and types: exit 1, nothing on stdout
    let usage: &[&[&str]] =
        &[&[], &["-v", PW], &["a", "b"], &["-x", PW], &["-t"], &["-v", "a", "b", "c"]];
    for args in usage {
        let out = digest(args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert_eq!(stdout(&out), "");
        assert!(stderr(&out).starts_with("digest: usage: digest "), "{args:?}: {}", stderr(&out));
    }
    let bad: &[(&[&str], &str)] = &[
        (&["-S", "abc", PW], "digest: bad hex salt\n"),
        (&["-S", "zz", PW], "digest: bad hex salt\n"),
        (&["-S", "+1", PW], "digest: bad hex salt\n"),
        (&["-s", "not base64!", PW], "digest: bad base64 salt\n"),
        (
            &["-t", "sha256", PW],
            "digest: unknown type sha256; valid types: crypt md4 md5 ns-mta-md5 smd5 sha ssha \
             rmd160\n",
        ),
    ];
    for (args, want) in bad {
        let out = digest(args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert_eq!(stderr(&out), *want);
        assert_eq!(stdout(&out), "");
    }
    // verify: damaged values are errors; unknown schemes, formats and empty passwords are
    // never equal
    for value in ["{SSHA}!!!!", "{SHA}YWJj", "{NS-MTA-MD5}abc", "{CRYPT}$1$"] {
        let out = digest(&["-v", PW, value]);
        assert_eq!(code(&out), 1, "{value}");
        assert_eq!(stderr(&out), "digest: cmp_password: illegal hashed password.\n", "{value}");
    }
    let ssha = stdout(&digest(&["-t", "ssha", ""]));
    for (pw, value) in [
        (PW, "{FOO}x"),
        (PW, "cleartext"),
        (PW, PW),
        ("", ssha.trim_end()),
        ("", "{MD5}1B2M2Y8AsgTpgAmY7PhCfg=="),
    ] {
        let out = digest(&["-v", pw, value]);
        assert_eq!(code(&out), 0, "{value}: {}", stderr(&out));
        assert_eq!(stdout(&out), "passwords are NOT equal.\n", "{pw:?} {value}");
    }
    // an unprefixed value is crypt(3), as upstream
    let out = digest(&["-v", PW, "abbhqjVkmU9p6"]);
    assert_eq!(stdout(&out), "passwords are equal.\n");
}

/// The real slapd accepts what digest makes: a simple bind with the password succeeds
/// against each value slapd knows (its `{CRYPT}` is the system's crypt(3)), and fails with
/// another password.
#[test]
fn slapd_binds_with_what_digest_makes() {
    use crate::harness::slapd;
    slapd::require_slapd();
    let d = slapd::shared();
    let base = d.add_ou("digest");
    let salt = "00112233445566778899aabbccddeeff0102";
    let made = [
        vec!["-t", "ssha", "-S", salt, PW],
        vec!["-t", "sha", PW],
        vec!["-t", "smd5", "-S", salt, PW],
        vec!["-t", "md5", PW],
        vec!["-t", "crypt", "-S", salt, PW],
        vec!["-t", "crypt", "-5", "-S", salt, PW],
        vec!["-t", "crypt", "-f", "$6$XXXXXXXXXXXXXXXX$", "-S", salt, PW],
    ];
    for (i, args) in made.iter().enumerate() {
        let value = stdout(&digest(args)).trim_end().to_string();
        assert!(value.starts_with('{'), "{args:?}: {value}");
        let dn = format!("uid=d{i},{base}");
        d.add(&format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: d{i}\ncn: d\nsn: d\nuserPassword: {value}\n"
        ));
        let bind = |pw: &str| {
            Command::new("ldapwhoami")
                .args(["-x", "-H", &d.url(), "-D", &dn, "-w", pw])
                .output()
                .expect("ldapwhoami (ldap-utils) must be installed")
        };
        let ok = bind(PW);
        assert!(ok.status.success(), "{value}: {}", stderr(&ok));
        assert_eq!(stdout(&ok), format!("dn:{dn}\n"));
        assert!(!bind("A good password").status.success(), "{value}");
    }
}
