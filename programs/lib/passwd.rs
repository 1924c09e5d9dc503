//! passwd: `userPassword` schemes (doc/qmail-ldaplookup.8, doc/digest.8, doc/DECISIONS.md,
//! 19): check a given password against a stored value, and make new values of every scheme.
//!
//! A stored value is `{SCHEME}rest`, the scheme name case-insensitive. Checked here:
//!
//! - `{SSHA}` base64(SHA1(pw ‖ salt) ‖ salt), `{SHA}` base64(SHA1(pw));
//! - `{SMD5}` base64(MD5(pw ‖ salt) ‖ salt), `{MD5}` base64(MD5(pw));
//! - `{MD4}` base64(MD4(pw)), `{RMD160}` base64(RIPEMD-160(pw));
//! - `{NS-MTA-MD5}` exactly 64 characters: hex(MD5(S ‖ `Y` ‖ pw ‖ 0xF7 ‖ S)) ‖ S, where S is
//!   the 32-character salt (Netscape Messaging Server's scheme);
//! - `{CRYPT}` with a crypt(3) string: traditional DES (13 characters), bigcrypt (2 + 11k
//!   characters, what libxcrypt and so slappasswd make of a long DES salt), BSDi (`_`),
//!   MD5-crypt (`$1$`), SHA-crypt (`$5$`, `$6$`), `$sha1$` or bcrypt (`$2a$`, `$2b$`, `$2y$`).
//!
//! A value without a prefix is [`Error::NoScheme`] and another scheme
//! [`Error::Unsupported`]: a caller that can ask the directory server instead (a bind as the
//! entry) does so, and digest(8) treats an unprefixed value as a crypt(3) string as upstream
//! ([`check_crypt`]). Base64 is the standard alphabet with `=` padding, hex lower-case, and
//! every comparison is of whole encodings in constant time. An empty given password never
//! matches (doc/DECISIONS.md, 8), whatever is stored.
//!
//! [`make`] encodes a password in each [`Scheme`] from given salt bytes, byte for byte as
//! upstream's digest does; crypt(3) salts are drawn from the salt bytes in the crypt alphabet
//! (`./0-9A-Za-z`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use md4::Md4;
use md5::{Digest, Md5};
use ripemd::Ripemd160;
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
    match Scheme::from_prefix(&scheme) {
        Some(Scheme::Ssha) => salted(rest, given, 20, sha1),
        Some(Scheme::Sha) => plain(rest, given, sha1),
        Some(Scheme::Smd5) => salted(rest, given, 16, md5),
        Some(Scheme::Md5) => plain(rest, given, md5),
        Some(Scheme::Md4) => plain(rest, given, md4),
        Some(Scheme::Rmd160) => plain(rest, given, rmd160),
        Some(Scheme::NsMtaMd5) => ns_mta_md5_check(rest, given),
        Some(Scheme::Crypt) => check_crypt(rest, given),
        None => Err(Error::Unsupported(format!("{{{scheme}}}"))),
    }
}

/// Whether `given` is the password of the crypt(3) string `stored` (the text after
/// `{CRYPT}`, or a value without a prefix, which upstream takes as one). An empty `given`
/// is always `Ok(false)`.
pub fn check_crypt(stored: &[u8], given: &[u8]) -> Result<bool, Error> {
    if given.is_empty() {
        return Ok(false);
    }
    crypt(stored, given)
}

/// The `userPassword` schemes, in the order digest(8) prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Crypt,
    Md4,
    Md5,
    NsMtaMd5,
    Smd5,
    Sha,
    Ssha,
    Rmd160,
}

impl Scheme {
    pub const ALL: [Scheme; 8] = [
        Scheme::Crypt,
        Scheme::Md4,
        Scheme::Md5,
        Scheme::NsMtaMd5,
        Scheme::Smd5,
        Scheme::Sha,
        Scheme::Ssha,
        Scheme::Rmd160,
    ];

    /// The name in the prefix, upper-case: `NS-MTA-MD5` of `{NS-MTA-MD5}`.
    pub fn prefix(self) -> &'static str {
        match self {
            Scheme::Crypt => "CRYPT",
            Scheme::Md4 => "MD4",
            Scheme::Md5 => "MD5",
            Scheme::NsMtaMd5 => "NS-MTA-MD5",
            Scheme::Smd5 => "SMD5",
            Scheme::Sha => "SHA",
            Scheme::Ssha => "SSHA",
            Scheme::Rmd160 => "RMD160",
        }
    }

    /// The name digest's `-t` takes: the prefix's name in lower case.
    pub fn name(self) -> String {
        self.prefix().to_ascii_lowercase()
    }

    /// The scheme of a name, without regard to case.
    pub fn from_prefix(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.prefix().eq_ignore_ascii_case(name))
    }
}

/// Why [`make`] cannot encode a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MakeError {
    /// The salt is too short for the scheme: `{SMD5}` and `{SSHA}` need 4 bytes,
    /// `{NS-MTA-MD5}` 16, a crypt format with k `X` at least 3k/4.
    ShortSalt,
    /// The crypt format has no `X`, or the crypt library refuses the setting made from it.
    BadCryptFormat,
}

/// `password` in `scheme`, with its prefix, from `salt` (the salted schemes and crypt) and
/// `crypt_format` (crypt only: a literal prefix, then a run of `X` each replaced by a salt
/// character, then anything; the characters are the first k of `salt` in base64 with the
/// crypt alphabet).
pub fn make(
    scheme: Scheme,
    password: &[u8],
    salt: &[u8],
    crypt_format: &str,
) -> Result<String, MakeError> {
    let encoded = match scheme {
        Scheme::Crypt => make_crypt(password, salt, crypt_format)?,
        Scheme::Md4 => BASE64.encode(md4(password)),
        Scheme::Md5 => BASE64.encode(md5(password)),
        Scheme::Sha => BASE64.encode(sha1(password)),
        Scheme::Rmd160 => BASE64.encode(rmd160(password)),
        Scheme::Smd5 | Scheme::Ssha => {
            if salt.len() < 4 {
                return Err(MakeError::ShortSalt);
            }
            salted_value(if scheme == Scheme::Smd5 { md5 } else { sha1 }, password, salt)
        }
        Scheme::NsMtaMd5 => {
            let salt = salt.get(..16).ok_or(MakeError::ShortSalt)?;
            ns_mta_md5(hex(salt).as_bytes(), password)
        }
    };
    Ok(format!("{{{}}}{encoded}", scheme.prefix()))
}

/// `{CRYPT}`'s text: crypt(3) of the format with its `X` run replaced by salt characters.
fn make_crypt(password: &[u8], salt: &[u8], format: &str) -> Result<String, MakeError> {
    let start = format.find('X').ok_or(MakeError::BadCryptFormat)?;
    let run = format[start..].bytes().take_while(|&b| b == b'X').count();
    // upstream's test: k base64 characters need 3k/4 salt bytes
    if run * 3 > salt.len() * 4 {
        return Err(MakeError::ShortSalt);
    }
    let chars: String = crypt64(salt).chars().take(run).collect();
    let setting = format!("{}{chars}{}", &format[..start], &format[start + run..]);
    pwhash::unix::crypt(password, &setting).map_err(|_| MakeError::BadCryptFormat)
}

/// The crypt alphabet, in base64's order of values.
const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `bytes` in base64 (RFC 4648's bit order, no padding) with the crypt alphabet.
fn crypt64(bytes: &[u8]) -> String {
    BASE64
        .encode(bytes)
        .bytes()
        .take_while(|&b| b != b'=')
        .map(|b| {
            // the standard alphabet's value of each character
            let v = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'+' => 62,
                _ => 63,
            };
            char::from(CRYPT64[usize::from(v)])
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// hex(MD5(S ‖ `Y` ‖ pw ‖ 0xF7 ‖ S)) ‖ S.
fn ns_mta_md5(s: &[u8], password: &[u8]) -> String {
    let digest = md5(&[s, b"Y", password, b"\xf7", s].concat());
    format!("{}{}", hex(&digest), String::from_utf8_lossy(s))
}

/// `{NS-MTA-MD5}`: exactly 64 characters, the salt the last 32.
fn ns_mta_md5_check(rest: &[u8], given: &[u8]) -> Result<bool, Error> {
    if rest.len() != 64 {
        return Err(Error::Malformed("NS-MTA-MD5 value is not 64 characters"));
    }
    Ok(same(ns_mta_md5(&rest[32..], given).as_bytes(), rest))
}

/// `userPassword` as `{SSHA}`: base64(SHA1(password ‖ salt) ‖ salt), any salt length.
pub fn ssha(password: &[u8], salt: &[u8]) -> String {
    format!("{{SSHA}}{}", salted_value(sha1, password, salt))
}

/// base64(H(password ‖ salt) ‖ salt).
fn salted_value(h: fn(&[u8]) -> Vec<u8>, password: &[u8], salt: &[u8]) -> String {
    let mut raw = h(&[password, salt].concat());
    raw.extend_from_slice(salt);
    BASE64.encode(raw)
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

fn md4(data: &[u8]) -> Vec<u8> {
    Md4::digest(data).to_vec()
}

fn rmd160(data: &[u8]) -> Vec<u8> {
    Ripemd160::digest(data).to_vec()
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
    let computed = match crypt_format(stored) {
        Some(CryptFormat::Big) => bigcrypt(given, stored),
        Some(CryptFormat::Library) => pwhash::unix::crypt(given, stored),
        None => return Err(Error::Unsupported("{CRYPT} of this format".to_string())),
    };
    let computed = computed.map_err(|_| Error::Malformed("not a valid crypt(3) string"))?;
    Ok(same(computed.as_bytes(), stored.as_bytes()))
}

/// How a crypt(3) string is computed here.
enum CryptFormat {
    /// By pwhash: `$id$` of MD5-crypt, SHA-crypt, SHA1-crypt and bcrypt, BSDi's `_`, and
    /// traditional DES (13 characters of the crypt alphabet).
    Library,
    /// bigcrypt: 2 + 11k characters of the crypt alphabet, k >= 2.
    Big,
}

fn crypt_format(stored: &str) -> Option<CryptFormat> {
    let des = |s: &str| s.bytes().all(|b| CRYPT64.contains(&b));
    match stored.strip_prefix('$') {
        Some(rest) => {
            matches!(rest.split('$').next(), Some("1" | "5" | "6" | "sha1" | "2a" | "2b" | "2y"))
                .then_some(CryptFormat::Library)
        }
        None if stored.starts_with('_') => Some(CryptFormat::Library),
        None if stored.len() == 13 && des(stored) => Some(CryptFormat::Library),
        None if stored.len() > 13 && (stored.len() - 2) % 11 == 0 && des(stored) => {
            Some(CryptFormat::Big)
        }
        None => None,
    }
}

/// The most 8-byte segments bigcrypt takes (libxcrypt's limit: 128 bytes).
const BIGCRYPT_SEGMENTS: usize = 16;

/// bigcrypt (HP-UX; what libxcrypt makes of a DES setting longer than 13 characters, and
/// so slappasswd's default `{CRYPT}` for passwords over 8 bytes): the 2 salt characters,
/// then the 11 hash characters of DES crypt of each 8-byte segment of the password, each
/// segment salted with the first 2 hash characters of the one before.
fn bigcrypt(given: &[u8], stored: &str) -> pwhash::Result<String> {
    let mut out = stored[..2].to_string();
    let mut salt = out.clone();
    for segment in given.chunks(8).take(BIGCRYPT_SEGMENTS) {
        // DES is deprecated for new passwords; checking existing ones is what it is here for
        #[allow(deprecated)]
        let hashed = pwhash::unix_crypt::hash_with(&salt, segment)?;
        out.push_str(&hashed[2..]);
        salt = hashed[2..4].to_string();
    }
    Ok(out)
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
        // RFC 1320's MD4 and the RIPEMD-160 authors' vector of "abc"
        ("{MD4}pEgBeq8h2FJfwQroeqZynQ==", b"abc"),
        ("{RMD160}jrII9+BdmHqbBEqOmMawh/FaC/w=", b"abc"),
        // openssl dgst -md4 / -rmd160
        ("{MD4}9KruXHYvpXpPZIKybfmw4Q==", PW),
        ("{RMD160}lHDZ5dldOMwyu3g9Gtf4RBqROG0=", PW),
        // Python's hashlib: md5(S + "Y" + pw + "\xf7" + S)
        ("{NS-MTA-MD5}3e58c84a48d50b43afebbefd72c1dad30123456789abcdef0123456789abcdef", PW),
        // perl's crypt (glibc): traditional DES uses the first 8 bytes, and BSDi
        ("{CRYPT}abbhqjVkmU9p6", PW),
        ("{CRYPT}./WOGJZgm/qXU", PW),
        ("{CRYPT}_J9..abcdymyBwloz47c", PW),
        // bigcrypt, as libxcrypt makes it for slappasswd's default {CRYPT}
        ("{CRYPT}r0TGW5tj6jf3wCpUSJjoRJ0k", PW),
        ("{CRYPT}ab1iBa.N.U2C6JI06ws2gRbQNEGUVMgiZVU", b"12345678abcdefgh12"),
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

    /// Traditional DES crypt looks at the first 8 bytes only (crypt(3)'s own limit).
    #[test]
    fn des_crypt_uses_the_first_8_bytes() {
        assert_eq!(check(b"{CRYPT}abbhqjVkmU9p6", b"a good pXXXX"), Ok(true));
        assert_eq!(check(b"{CRYPT}abbhqjVkmU9p6", b"a good "), Ok(false));
        assert_eq!(check_crypt(b"abbhqjVkmU9p6", PW), Ok(true));
        assert_eq!(check_crypt(b"abbhqjVkmU9p6", b""), Ok(false));
    }

    /// Each scheme made with fixed salts: byte-exact values (computed independently with
    /// Python's hashlib and perl's crypt), each checked back.
    #[test]
    fn make_is_byte_exact_and_checks_back() {
        let salt = b"0123456789abcdefXY";
        let rows: &[(Scheme, &str, &str)] = &[
            (Scheme::Crypt, "XX", "{CRYPT}A1gvFC.bcp55I"),
            (Scheme::Crypt, "$1$XXXXXXXX$", "{CRYPT}$1$A12mAnEp$wHCv3zYe..kL6qJPbZPUX0"),
            (Scheme::Md4, "", "{MD4}9KruXHYvpXpPZIKybfmw4Q=="),
            (Scheme::Md5, "", "{MD5}Jl0K2Z4VjDBoVRpX/edWjQ=="),
            (
                Scheme::NsMtaMd5,
                "",
                "{NS-MTA-MD5}7da9af03e366d2b2046b7383c5a2203e303132333435363738396162636465\
                 66",
            ),
            (Scheme::Smd5, "", "{SMD5}Po1bjgYABuaYZ+uPZm479DAxMjM0NTY3ODlhYmNkZWZYWQ=="),
            (Scheme::Sha, "", "{SHA}+PY/+o41iAewg7IitdqgVx9OCq0="),
            (Scheme::Ssha, "", "{SSHA}CawCy3xvTTtRJgYJYGeHD+iFj8kwMTIzNDU2Nzg5YWJjZGVmWFk="),
            (Scheme::Rmd160, "", "{RMD160}lHDZ5dldOMwyu3g9Gtf4RBqROG0="),
        ];
        for (scheme, format, want) in rows {
            let made = make(*scheme, PW, salt, format).unwrap();
            assert_eq!(&made, want, "{scheme:?}");
            assert_eq!(check(made.as_bytes(), PW), Ok(true), "{made}");
        }
    }

    #[test]
    fn make_refuses_short_salts_and_bad_formats() {
        assert_eq!(make(Scheme::Ssha, PW, b"abc", ""), Err(MakeError::ShortSalt));
        assert_eq!(make(Scheme::Smd5, PW, b"abc", ""), Err(MakeError::ShortSalt));
        assert!(make(Scheme::Ssha, PW, b"abcd", "").is_ok());
        assert_eq!(make(Scheme::NsMtaMd5, PW, &[7; 15], ""), Err(MakeError::ShortSalt));
        assert!(make(Scheme::NsMtaMd5, PW, &[7; 16], "").is_ok());
        // k X need 3k/4 bytes: 8 X need 6
        assert_eq!(make(Scheme::Crypt, PW, &[7; 5], "$1$XXXXXXXX$"), Err(MakeError::ShortSalt));
        assert!(make(Scheme::Crypt, PW, &[7; 6], "$1$XXXXXXXX$").is_ok());
        assert_eq!(make(Scheme::Crypt, PW, &[7; 6], "$1$"), Err(MakeError::BadCryptFormat));
        assert_eq!(make(Scheme::Crypt, PW, &[7; 6], "$9$XX"), Err(MakeError::BadCryptFormat));
        assert_eq!(make(Scheme::Md5, PW, b"", ""), Ok("{MD5}Jl0K2Z4VjDBoVRpX/edWjQ==".into()));
    }

    #[test]
    fn crypt64_is_base64_in_the_crypt_alphabet() {
        assert_eq!(crypt64(b""), "");
        assert_eq!(crypt64(&[0, 0, 0]), "....");
        assert_eq!(crypt64(&[0xff, 0xff, 0xff]), "zzzz");
        // base64 "+/8=" is values 62 63 60: 'y' 'z' 'w'
        assert_eq!(crypt64(&[0xfb, 0xff]), "yzw");
        assert_eq!(crypt64(b"0123"), "A12mAk");
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
            (b"{KERBEROS}x", Error::Unsupported("{KERBEROS}".into())),
            (b"{SASL}kim@EXAMPLE.ORG", Error::Unsupported("{SASL}".into())),
            (b"{MD4}x", Error::Malformed("value is not base64")),
            (b"{rmd160}YWJj", Error::Malformed("stored digest has the wrong length")),
            (b"{NS-MTA-MD5}abc", Error::Malformed("NS-MTA-MD5 value is not 64 characters")),
            (b"{CRYPT}abJnggxhB/yW", Error::Unsupported("{CRYPT} of this format".into())),
            (b"{CRYPT}abJnggxhB/yWabc", Error::Unsupported("{CRYPT} of this format".into())),
            (b"{CRYPT}abJnggxhB/yW!", Error::Unsupported("{CRYPT} of this format".into())),
            (b"{CRYPT}", Error::Unsupported("{CRYPT} of this format".into())),
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
