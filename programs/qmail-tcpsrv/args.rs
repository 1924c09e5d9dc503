//! qmail-tcpsrv's command line: tcpserver's getopt-style options, read by [`qmail::getopt`]
//! (clustered flags, `-c5` or `-c 5`, `--` ends the options, the first non-option starts the
//! arguments).

use qmail::getopt::{Getopt, Opt};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub const USAGE: &str = "usage: qmail-tcpsrv [ -1UWXpPhHrRoOdDqQv ] [ -c limit ] [ -x rules.cdb ] \
                         [ -B banner ] [ -g gid ] [ -u uid ] [ -b backlog ] [ -l localname ] \
                         [ -t timeout ] [ -n uses ] host port program [ arg ... ]";

/// `-n`'s default: the sessions a worker serves before it is replaced (Postfix's max_use).
pub const DEFAULT_USES: u32 = 100;

/// The most children `-c` may allow (tcpserver's qmail-ldap fork has the same bound).
pub const MAX_LIMIT: usize = 65000;

#[derive(Debug, Clone)]
pub struct Options {
    pub limit: usize,
    pub rules: Option<PathBuf>,
    pub allow_missing_rules: bool,
    pub banner: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub local_host: Option<Vec<u8>>,
    /// 0 quiet, 1 errors only, 2 verbose.
    pub verbosity: u8,
    pub print_port: bool,
    pub backlog: u32,
    pub nodelay: bool,
    /// `-W`: hand connections to long-lived workers of the program (doc/qmail-tcpsrv.8,
    /// WORKERS)
    pub workers: bool,
    /// `-n`: sessions per worker; 0 = no limit
    pub uses: u32,
    pub host: String,
    pub port: String,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Parse the arguments after argv\[0\]; `uid_env`/`gid_env` are `$UID`/`$GID` for `-U`.
/// `Err` holds the reason, for a usage message (exit 100).
pub fn parse(
    argv: &[OsString],
    uid_env: Option<&OsStr>,
    gid_env: Option<&OsStr>,
) -> Result<Options, String> {
    let mut o = Options {
        limit: 40,
        rules: None,
        allow_missing_rules: false,
        banner: Vec::new(),
        uid: 0,
        gid: 0,
        local_host: None,
        verbosity: 1,
        print_port: false,
        backlog: 20,
        nodelay: false,
        workers: false,
        uses: DEFAULT_USES,
        host: String::new(),
        port: String::new(),
        program: OsString::new(),
        args: Vec::new(),
    };
    let bytes: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let mut opts = Getopt::new(&bytes, "1UWXpPhHrRoOdDqQvc:x:B:g:u:b:l:t:n:");
    for opt in opts.by_ref() {
        match opt {
            Opt::Value(c, value) => option(&mut o, c, &value)?,
            Opt::Flag(b'1') => o.print_port = true,
            Opt::Flag(b'X') => o.allow_missing_rules = true,
            Opt::Flag(b'W') => o.workers = true,
            Opt::Flag(b'd') => o.nodelay = false,
            Opt::Flag(b'D') => o.nodelay = true,
            Opt::Flag(b'v') => o.verbosity = 2,
            Opt::Flag(b'Q') => o.verbosity = 1,
            Opt::Flag(b'q') => o.verbosity = 0,
            Opt::Flag(b'U') => {
                if let Some(uid) = uid_env {
                    o.uid = number(b'U', uid.as_bytes())?;
                }
                if let Some(gid) = gid_env {
                    o.gid = number(b'U', gid.as_bytes())?;
                }
            }
            // no DNS and no ident: -hHpPrRoO are accepted for compatibility, see the man page
            Opt::Flag(_) => {}
            Opt::Missing(c) => return Err(format!("option -{} needs a value", c as char)),
            Opt::Unknown(c) => {
                return Err(format!("unknown option -{}", String::from_utf8_lossy(&[c])))
            }
        }
    }
    let rest: Vec<OsString> =
        opts.rest().iter().map(|a| OsStr::from_bytes(a).to_os_string()).collect();
    let [host, port, program, args @ ..] = rest.as_slice() else {
        return Err("host, port and program are needed".into());
    };
    o.host = host.to_str().ok_or("the host is not text")?.to_string();
    o.port = port.to_str().ok_or("the port is not text")?.to_string();
    o.program = program.clone();
    o.args = args.to_vec();
    if o.limit == 0 {
        return Err("limit may not be set to 0".into());
    }
    if o.limit > MAX_LIMIT {
        return Err(format!("limit may not be above {MAX_LIMIT}"));
    }
    Ok(o)
}

fn option(o: &mut Options, opt: u8, value: &[u8]) -> Result<(), String> {
    match opt {
        b'c' => o.limit = number(opt, value)? as usize,
        b'x' => o.rules = Some(PathBuf::from(OsStr::from_bytes(value))),
        b'B' => o.banner = value.to_vec(),
        b'g' => o.gid = number(opt, value)?,
        b'u' => o.uid = number(opt, value)?,
        b'b' => o.backlog = number(opt, value)?,
        b'l' => o.local_host = Some(value.to_vec()),
        b'n' => o.uses = number(opt, value)?,
        // ident timeout: no ident lookups are made, but the value must still be a number
        b't' => {
            number(opt, value)?;
        }
        _ => unreachable!("option() is called for value options only"),
    }
    Ok(())
}

/// A decimal number that fits a u32.
fn number(opt: u8, value: &[u8]) -> Result<u32, String> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!("-{} wants a number, not {}", opt as char, String::from_utf8_lossy(value))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&argv, Some(OsStr::new("7")), None)
    }

    #[test]
    fn options() {
        let o = p(&["-vX1", "-c5", "-x", "r.cdb", "-B", "hi", "-l", "me", "0", "25", "prog", "-a"])
            .unwrap();
        assert_eq!((o.verbosity, o.allow_missing_rules, o.print_port, o.limit), (2, true, true, 5));
        assert_eq!(o.rules, Some(PathBuf::from("r.cdb")));
        assert_eq!((o.banner.as_slice(), o.local_host.as_deref()), (&b"hi"[..], Some(&b"me"[..])));
        assert_eq!(
            (o.host.as_str(), o.port.as_str(), o.program.to_str()),
            ("0", "25", Some("prog"))
        );
        assert_eq!(o.args, [OsString::from("-a")]);
        assert_eq!((o.workers, o.uses), (false, DEFAULT_USES));
        let o = p(&["-Wn", "7", "0", "25", "prog"]).unwrap();
        assert_eq!((o.workers, o.uses), (true, 7));
        let o = p(&["-U", "-HRD", "--", "-h", "smtp", "x"]).unwrap();
        assert_eq!((o.uid, o.gid, o.nodelay, o.host.as_str()), (7, 0, true, "-h"));
        for bad in [
            &["-c", "0", "0", "1", "x"][..],
            &["-c", "65001", "0", "1", "x"],
            &["-c", "x", "0", "1", "x"],
            &["-c", "-1", "0", "1", "x"],
            &["-c"],
            &["-Z", "0", "1", "x"],
            &["0", "1"],
            &[],
            &["-u", "99999999999", "0", "1", "x"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert_eq!(p(&["-vc"]).unwrap_err(), "option -c needs a value");
        assert_eq!(p(&["-vZ", "0", "1", "x"]).unwrap_err(), "unknown option -Z");
        assert_eq!(p(&["-c5x", "0", "1", "x"]).unwrap_err(), "-c wants a number, not 5x");
        let o = p(&["-qc", "7", "-", "1", "x"]).unwrap();
        assert_eq!((o.verbosity, o.limit, o.host.as_str()), (0, 7, "-"));
    }
}
