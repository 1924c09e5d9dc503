//! passwd: `userPassword` schemes (doc/qmail-ldaplookup.8, doc/DECISIONS.md, 19): check a given
//! password against a stored value, and make new `{SSHA}` values.
//!
//! A stored value is `{SCHEME}rest`, the scheme name case-insensitive. Checked here:
//!
//! - `{SSHA}` base64(SHA1(pw ‖ salt) ‖ salt), `{SHA}` base64(SHA1(pw));
//! - `{SMD5}` base64(MD5(pw ‖ salt) ‖ salt), `{MD5}` base64(MD5(pw));
//! - `{CRYPT}` with a crypt(3) string of MD5-crypt (`$1$`), SHA-crypt (`$5$`, `$6$`) or
//!   bcrypt (`$2a$`, `$2b$`, `$2y$`).
//!
//! Anything else (no prefix, `{MD4}`, `{RMD160}`, `{NS-MTA-MD5}`, traditional DES crypt) is
//! [`Error::Unsupported`]: a caller that can ask the directory server instead (a bind as the
//! entry) does so. Digests are compared in constant time; an empty given password never
//! matches (doc/DECISIONS.md, 8), whatever is stored.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use md5::{Digest, Md5};
use sha1::Sha1;
use std::fmt;
use subtle::ConstantTimeEq;

/// Why a stored value cannot be checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The value has no `{scheme}` prefix (a crypt(3) string or clear text upstream).
    NoScheme,
    /// A scheme, or a crypt(3) format, this module does not compute.
    Unsupported(String),
    /// The value is damaged: not base64, too short, not a valid crypt(3) string.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoScheme => f.write_str("no {scheme} prefix"),
            Error::Unsupported(s) => write!(f, "scheme {s} not checked locally"),
            Error::Malformed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

/// Whether `given` is the password `stored` was made from. `Err` when the stored value
/// cannot be checked here (see [`Error`]); an empty `given` is always `Ok(false)`.
pub fn check(stored: &[u8], given: &[u8]) -> Result<bool, Error> {
    if given.is_empty() {
        return Ok(false);
    }
    let (scheme, rest) = split_scheme(stored)?;
    match scheme.as_str() {
        "SSHA" => salted(rest, given, 20, sha1),
        "SHA" => plain(rest, given, sha1),
        "SMD5" => salted(rest, given, 16, md5),
        "MD5" => plain(rest, given, md5),
        "CRYPT" => crypt(rest, given),
        _ => Err(Error::Unsupported(format!("{{{scheme}}}"))),
    }
}

/// `userPassword` as `{SSHA}`: base64(SHA1(password ‖ salt) ‖ salt).
pub fn ssha(password: &[u8], salt: &[u8]) -> String {
    let mut raw = sha1(&[password, salt].concat());
    raw.extend_from_slice(salt);
    format!("{{SSHA}}{}", BASE64.encode(&raw))
}

/// The upper-cased scheme name and the text after `}`.
fn split_scheme(stored: &[u8]) -> Result<(String, &[u8]), Error> {
    let end = stored.iter().position(|&b| b == b'}').filter(|_| stored.first() == Some(&b'{'));
    let Some(end) = end else {
        return Err(Error::NoScheme);
    };
    let scheme = String::from_utf8_lossy(&stored[1..end]).to_ascii_uppercase();
    Ok((scheme, &stored[end + 1..]))
}

fn sha1(data: &[u8]) -> Vec<u8> {
    Sha1::digest(data).to_vec()
}

fn md5(data: &[u8]) -> Vec<u8> {
    Md5::digest(data).to_vec()
}

/// base64(H(pw)), exactly one digest long.
fn plain(rest: &[u8], given: &[u8], h: fn(&[u8]) -> Vec<u8>) -> Result<bool, Error> {
    let raw = decode(rest)?;
    let digest = h(given);
    if raw.len() != digest.len() {
        return Err(Error::Malformed("stored digest has the wrong length"));
    }
    Ok(same(&digest, &raw))
}

/// base64(H(pw ‖ salt) ‖ salt): the salt is everything after the first `len` bytes.
fn salted(rest: &[u8], given: &[u8], len: usize, h: fn(&[u8]) -> Vec<u8>) -> Result<bool, Error> {
    let raw = decode(rest)?;
    if raw.len() < len {
        return Err(Error::Malformed("stored digest too short"));
    }
    let (digest, salt) = raw.split_at(len);
    Ok(same(&h(&[given, salt].concat()), digest))
}

/// The standard alphabet with `=` padding (RFC 4648), decoded strictly: a wrong length, a
/// byte outside the alphabet, misplaced padding or non-zero trailing bits are errors.
fn decode(rest: &[u8]) -> Result<Vec<u8>, Error> {
    BASE64.decode(rest).map_err(|_| Error::Malformed("value is not base64"))
}

/// `{CRYPT}`: recompute the crypt(3) string with the stored one as the setting (its format,
/// cost or rounds, salt) and compare the whole strings.
fn crypt(rest: &[u8], given: &[u8]) -> Result<bool, Error> {
    let stored =
        std::str::from_utf8(rest).map_err(|_| Error::Malformed("crypt value not ASCII"))?;
    // MD5-crypt and SHA-256-crypt are deprecated by pwhash for *new* passwords; checking
    // existing ones is what they are here for
    #[allow(deprecated)]
    let computed = match crypt_format(stored) {
        Some(CryptFormat::Md5) => pwhash::md5_crypt::hash_with(stored, given),
        Some(CryptFormat::Sha256) => pwhash::sha256_crypt::hash_with(stored, given),
        Some(CryptFormat::Sha512) => pwhash::sha512_crypt::hash_with(stored, given),
        Some(CryptFormat::Bcrypt) => pwhash::bcrypt::hash_with(stored, given),
        None => return Err(Error::Unsupported("{CRYPT} of this format".to_string())),
    };
    let computed = computed.map_err(|_| Error::Malformed("not a valid crypt(3) string"))?;
    Ok(same(computed.as_bytes(), stored.as_bytes()))
}

/// The crypt(3) formats computed here.
enum CryptFormat {
    Md5,
    Sha256,
    Sha512,
    Bcrypt,
}

fn crypt_format(stored: &str) -> Option<CryptFormat> {
    let id = stored.strip_prefix('$')?.split('$').next()?;
    match id {
        "1" => Some(CryptFormat::Md5),
        "5" => Some(CryptFormat::Sha256),
        "6" => Some(CryptFormat::Sha512),
        "2a" | "2b" | "2y" => Some(CryptFormat::Bcrypt),
        _ => None,
    }
}

/// Equal length and equal bytes, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &[u8] = b"a good password";

    /// Vectors made by slappasswd (OpenLDAP 2.5), `openssl passwd` and libxcrypt's crypt(3)
    /// (through perl), all for "a good password" unless said otherwise.
    const MATCHING: &[(&str, &[u8])] = &[
        ("{SSHA}dIIX0dq1DcICJFBJgXCeUa3AeGGtPpVA", PW),
        ("{SHA}+PY/+o41iAewg7IitdqgVx9OCq0=", PW),
        ("{SMD5}xCiXRWPrUvc/47xF84LfOQRqF4U=", PW),
        ("{MD5}Jl0K2Z4VjDBoVRpX/edWjQ==", PW),
        ("{CRYPT}$1$saltsalt$SyQdaSahdJZCS7SmuoMXU/", PW),
        ("{CRYPT}$5$saltsaltsalt$7K7eZIRflJR9g6flhuDvCyp9VcS7.UkyOAGjurnkbQ7", PW),
        ("{CRYPT}$5$rounds=1000$roundsalt$Ch4wlaDqSK0eyd067K/fZ/KwKOh4Lc28XldEXkq9pc6", PW),
        (
            "{CRYPT}$6$saltsaltsalt$abDOiEcluZJKA0dzsF3gl0E1.9xK7r3WePIpaPNHZhNlEXLyJch.s7Ifi7zRb\
             KWUvTnLaURc8p/1vxG2y9iia/",
            PW,
        ),
        (
            "{CRYPT}$6$wv9qeo9m$uAHy3kB6cT8p4HQp3219LKKBXigclsuorNXZtI2dZ6jH5LYRN5sZad91ft50jvjlA\
             Jz2zYQTXPv/y7wBcYggG1",
            PW,
        ),
        ("{CRYPT}$2b$05$abcdefghijklmnopqrstuudPLndKqNxTJdyGgy8u1tt1GUFSmbwZS", PW),
        ("{CRYPT}$2y$05$abcdefghijklmnopqrstuudPLndKqNxTJdyGgy8u1tt1GUFSmbwZS", PW),
        ("{CRYPT}$2a$04$abcdefghijklmnopqrstuuVCZTFhDi5NuemONALFTadaLO4m9MPr2", PW),
        // UTF-8 and arbitrary bytes
        ("{CRYPT}$5$abc$cgcp2e9c21faVh2fikKWNSIEdf8n1mYAJJcgUrG8di/", "pässwörd".as_bytes()),
        (
            "{CRYPT}$6$rounds=5000$binarysalt$o12DwHg.Jqns67vuAAL0Sjo75ohZrMt1R0mMvpRXzuhH3a1uake.\
             wTrU4Av0eh12/jn2K2aOZWlMRFu22WEEF.",
            b"\xffpw\xfe",
        ),
        // the well-known SHA-1 of "abc"
        ("{SHA}qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", b"abc"),
    ];

    #[test]
    fn known_vectors_match_and_near_misses_do_not() {
        for (stored, pw) in MATCHING {
            assert_eq!(check(stored.as_bytes(), pw), Ok(true), "{stored}");
            let mut wrong = pw.to_vec();
            wrong[0] ^= 0x20;
            assert_eq!(check(stored.as_bytes(), &wrong), Ok(false), "{stored} with a wrong pw");
            assert_eq!(check(stored.as_bytes(), &pw[1..]), Ok(false), "{stored} shortened");
            assert_eq!(check(stored.as_bytes(), b""), Ok(false), "{stored} with the empty pw");
        }
    }

    #[test]
    fn scheme_names_are_case_insensitive() {
        for (stored, pw) in MATCHING {
            let end = stored.find('}').unwrap();
            let lower = format!("{}{}", stored[..end].to_lowercase(), &stored[end..]);
            assert_eq!(check(lower.as_bytes(), pw), Ok(true), "{lower}");
        }
    }

    #[test]
    fn bcrypt_uses_the_first_72_bytes() {
        let stored = b"{CRYPT}$2b$04$abcdefghijklmnopqrstuubzadhGtS2zEF.gu0yd0opP6cVzb.e0i";
        assert_eq!(check(stored, &[b'x'; 80]), Ok(true));
        assert_eq!(check(stored, &[b'x'; 72]), Ok(true));
        assert_eq!(check(stored, &[b'x'; 71]), Ok(false));
    }

    /// The digests under the schemes: FIPS 180 and RFC 1321 example vectors, lengths around
    /// the padding boundary, and the NIST one-million-`a` message.
    #[test]
    fn digest_vectors() {
        let hex = |d: Vec<u8>| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let sha1_rows: &[(&[u8], &str)] = &[
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "a49b2446a02c645bf419f995b67091253a04a259",
            ),
            (&[b'a'; 55], "c1c8bbdc22796e28c0e15163d20899b65621d65a"),
            (&[b'a'; 56], "c2db330f6083854c99d4b5bfb6e8f29f201be699"),
            (&[b'a'; 64], "0098ba824b5c16427bd7a1122a5a442a25ec644d"),
        ];
        for (data, want) in sha1_rows {
            assert_eq!(hex(sha1(data)), *want, "{}", String::from_utf8_lossy(data));
        }
        assert_eq!(hex(sha1(&vec![b'a'; 1_000_000])), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }

    #[test]
    fn base64_vectors_and_strict_decoding() {
        let rows = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in rows {
            assert_eq!(BASE64.encode(plain), enc);
            assert_eq!(decode(enc.as_bytes()).as_deref(), Ok(plain.as_bytes()));
        }
        assert_eq!(BASE64.encode([0xfb, 0xff]), "+/8=");
        for bad in ["Zg=", "Zg===", "Z===", "Zm9v=Zm9", "Zh==", "Zm9=", "Zm 9", "Zm9\n", "Zg==Zg=="]
        {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ssha_round_trip() {
        let stored = ssha(b"secret", b"saltsalt");
        assert!(stored.starts_with("{SSHA}"));
        assert_eq!(check(stored.as_bytes(), b"secret"), Ok(true));
        assert_eq!(check(stored.as_bytes(), b"Secret"), Ok(false));
        assert_eq!(check(ssha(b"", b"salt").as_bytes(), b""), Ok(false));
    }

    #[test]
    fn what_is_not_checked_here() {
        let rows: &[(&[u8], Error)] = &[
            (b"plain", Error::NoScheme),
            (b"secret}", Error::NoScheme),
            (b"{MD4}x", Error::Unsupported("{MD4}".into())),
            (b"{rmd160}x", Error::Unsupported("{RMD160}".into())),
            (b"{CRYPT}abJnggxhB/yWI", Error::Unsupported("{CRYPT} of this format".into())),
            (b"{CRYPT}$7$x", Error::Unsupported("{CRYPT} of this format".into())),
            (b"{SSHA}!!!!", Error::Malformed("value is not base64")),
            (b"{SSHA}YWJj", Error::Malformed("stored digest too short")),
            (b"{SMD5}YWJj", Error::Malformed("stored digest too short")),
            (b"{SHA}YWJj", Error::Malformed("stored digest has the wrong length")),
            (b"{MD5}x", Error::Malformed("value is not base64")),
            (b"{CRYPT}$1$", Error::Malformed("not a valid crypt(3) string")),
            (
                b"{CRYPT}$2b$99$abcdefghijklmnopqrstuu",
                Error::Malformed("not a valid crypt(3) string"),
            ),
            (b"{CRYPT}\xff", Error::Malformed("crypt value not ASCII")),
        ];
        for (stored, want) in rows {
            assert_eq!(
                check(stored, b"x").as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(stored)
            );
        }
    }
}
