//! digest: make `userPassword` values of every scheme, or check a password against one
//! (doc/digest.8).
//!
//! ```text
//! digest [-c] [-b | -5 | -f cryptformat] [-s base64salt] [-S hexsalt] [-t type] password
//! digest -v password hashedpassword
//! ```
//!
//! Create mode prints one line per scheme (`{CRYPT}`, `{MD4}`, `{MD5}`, `{NS-MTA-MD5}`,
//! `{SMD5}`, `{SHA}`, `{SSHA}`, `{RMD160}`, or only `-t`'s), `<type> failed.` for one that
//! cannot be made from the salt; the encodings are [`qmail::passwd::make`]'s. Verify mode
//! prints `passwords are equal.` or `passwords are NOT equal.`; a value without a prefix is a
//! crypt(3) string, as upstream.
//!
//! Exit codes: 0 made, or compared (equal or not); 1 a usage error, a bad salt or type, a
//! scheme that could not be made, or a hashed value that cannot be compared.

#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use qmail::getopt::{Getopt, Opt};
use qmail::passwd::{self, Error, Scheme};
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

/// Salt bytes read from the system's random source when neither `-s` nor `-S` is given.
const SALT_DEFAULT: usize = 18;
/// The crypt formats of `-5`, `-b` and the default (traditional DES).
const FORMAT_MD5: &str = "$1$XXXXXXXX$";
const FORMAT_BLOWFISH: &str = "$2a$07$XXXXXXXXXXXXXXXXXXXXXXXX";
const FORMAT_DES: &str = "XX";

const USAGE: &str = "usage: digest [-c] [-b | -5 | -f cryptformat] [-s base64salt] \
                     [-S hexsalt] [-t type] password\n       digest -v password hashedpassword";

fn main() -> ExitCode {
    let args: Vec<Vec<u8>> = std::env::args_os().skip(1).map(OsStringExt::into_vec).collect();
    match run(&args) {
        Ok(code) => code,
        Err(text) => {
            let _ = writeln!(std::io::stderr(), "digest: {text}");
            ExitCode::from(1)
        }
    }
}

struct Options {
    verify: bool,
    format: String,
    salt: Option<Vec<u8>>,
    schemes: Vec<Scheme>,
}

fn run(args: &[Vec<u8>]) -> Result<ExitCode, String> {
    let mut o = Options {
        verify: false,
        format: FORMAT_DES.into(),
        salt: None,
        schemes: Scheme::ALL.to_vec(),
    };
    let mut opts = Getopt::new(args, "cvb5f:s:S:t:");
    for opt in opts.by_ref() {
        match opt {
            Opt::Flag(b'c') => o.verify = false,
            Opt::Flag(b'v') => o.verify = true,
            Opt::Flag(b'5') => o.format = FORMAT_MD5.into(),
            Opt::Flag(b'b') => o.format = FORMAT_BLOWFISH.into(),
            Opt::Value(b'f', f) => {
                o.format = String::from_utf8(f).map_err(|_| "bad crypt format".to_string())?
            }
            Opt::Value(b's', s) => {
                o.salt = Some(BASE64.decode(&s).map_err(|_| "bad base64 salt".to_string())?)
            }
            Opt::Value(b'S', s) => o.salt = Some(unhex(&s).ok_or("bad hex salt")?),
            Opt::Value(b't', t) => {
                let t = String::from_utf8_lossy(&t);
                let scheme = Scheme::from_prefix(&t).ok_or_else(|| {
                    let names: Vec<String> = Scheme::ALL.iter().map(|s| s.name()).collect();
                    format!("unknown type {t}; valid types: {}", names.join(" "))
                })?;
                o.schemes = vec![scheme];
            }
            _ => return Err(USAGE.into()),
        }
    }
    match (o.verify, opts.rest()) {
        (false, [password]) => create(&o, password),
        (true, [password, hashed]) => Ok(verify(password, hashed)?),
        _ => Err(USAGE.into()),
    }
}

/// One line per scheme; exit 1 when one could not be made.
fn create(o: &Options, password: &[u8]) -> Result<ExitCode, String> {
    let salt = match &o.salt {
        Some(s) => s.clone(),
        None => {
            let mut s = vec![0u8; SALT_DEFAULT];
            getrandom::fill(&mut s).map_err(|e| format!("unable to read random bytes: {e}"))?;
            s
        }
    };
    let mut out = String::new();
    let mut failed = false;
    for scheme in &o.schemes {
        match passwd::make(*scheme, password, &salt, &o.format) {
            Ok(value) => out.push_str(&value),
            Err(_) => {
                failed = true;
                out.push_str(&format!("{} failed.", scheme.name()));
            }
        }
        out.push('\n');
    }
    std::io::stdout().write_all(out.as_bytes()).map_err(|e| format!("unable to write: {e}"))?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn verify(password: &[u8], hashed: &[u8]) -> Result<ExitCode, String> {
    let verdict = match passwd::check(hashed, password) {
        Err(Error::NoScheme) => passwd::check_crypt(hashed, password),
        other => other,
    };
    let equal = match verdict {
        Ok(equal) => equal,
        // upstream crypt(3)s the whole value of an unknown scheme or format: never equal
        Err(Error::Unsupported(_)) => false,
        Err(_) => return Err("cmp_password: illegal hashed password.".into()),
    };
    println!("passwords are {}equal.", if equal { "" } else { "NOT " });
    Ok(ExitCode::SUCCESS)
}

/// Hex digits, two per byte, either case.
fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    text.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect()
}
