//! smmapd's command line (doc/smmapd.8, OPTIONS) and settings: control files, overridden by
//! `-C file`.
//!
//! Options are separate arguments, as upstream: `-U 30`, never `-U30` or bundled `-Dp`;
//! anything else is a usage error (exit 64). The `-C` file holds `name: value` lines (blank and
//! `#` lines skipped), in the spirit of imapd.conf; a name is one of smmapd's control files, or
//! the imapd.conf name of the same setting.

use qmail::control::Control;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const USAGE: &str = "usage: smmapd [-C config] [-U uses] [-T timeout] [-D] [-p] \
                         [--listen unix:/path|tcp:host:port|fd:N]";

/// The largest `-C` file read.
const CONFIG_MAX: u64 = 64 << 10;

/// The command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-C`: a file of settings that override the control files.
    pub config: Option<PathBuf>,
    /// `-U`: connections served by one listening process before it exits (default 250).
    pub uses: u64,
    /// `-T`: seconds a listening process waits for a connection before it exits (default 60;
    /// 0 never).
    pub idle: u64,
    /// `-D`: run `smmapddebugcommand` before serving.
    pub debug: bool,
    /// `-p`: drop `+detail` instead of checking its folder.
    pub skip_plus: bool,
    /// `--listen`: accept connections on this socket instead of serving fds 0 and 1.
    pub listen: Option<Vec<u8>>,
}

impl Options {
    /// `None`: a usage error.
    pub fn parse(args: &[Vec<u8>]) -> Option<Options> {
        let mut opts = Options { uses: 250, idle: 60, ..Options::default() };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_slice() {
                b"-C" => opts.config = Some(PathBuf::from(os(it.next()?))),
                b"-U" => opts.uses = count(it.next()?)?,
                b"-T" => opts.idle = count(it.next()?)?,
                b"-D" => opts.debug = true,
                b"-p" => opts.skip_plus = true,
                b"--listen" => opts.listen = Some(it.next()?.clone()),
                _ => return None,
            }
        }
        Some(opts)
    }
}

fn os(arg: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(arg.to_vec())
}

/// A decimal count; negative clamps to 0 (as upstream); anything else is a usage error.
fn count(arg: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(arg).ok()?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if negative {
        return Some(0);
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// What smmapd reads once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `smmapdquotaperm` (imapd.conf: `lmtp_over_quota_perm_failure`): over quota is `PERM`.
    pub quota_perm: bool,
    /// `timeoutsmmapd`: the client read timeout (default 360 s).
    pub client_timeout: Duration,
    /// `smmapddebugcommand` (imapd.conf: `debug_command`): run by `-D`.
    pub debug_command: Option<String>,
}

/// The settings: (control file name, imapd.conf name).
const NAMES: &[(&str, &str)] = &[
    ("smmapddebugcommand", "debug_command"),
    ("smmapdquotaperm", "lmtp_over_quota_perm_failure"),
    ("timeoutsmmapd", "timeoutsmmapd"),
];

impl Settings {
    pub fn read(ctl: &Control, config: Option<&Path>) -> Result<Settings, String> {
        let file = match config {
            Some(path) => parse_file(path)?,
            None => Vec::new(),
        };
        let value = |name: &str| -> Result<Option<String>, String> {
            let alias = NAMES.iter().find(|(n, _)| *n == name).map_or(name, |(_, a)| a);
            if let Some((_, v)) = file.iter().rev().find(|(n, _)| n == name || n == alias) {
                return Ok(Some(v.clone()));
            }
            ctl.line(name).map_err(|e| e.to_string())
        };
        let quota_perm = value("smmapdquotaperm")?.is_some_and(|v| truth(&v));
        let client_timeout = match value("timeoutsmmapd")? {
            None => 360,
            Some(v) => leading_number(&v)
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("timeoutsmmapd: not a number of seconds: {v}"))?,
        };
        Ok(Settings {
            quota_perm,
            client_timeout: Duration::from_secs(client_timeout),
            debug_command: value("smmapddebugcommand")?,
        })
    }
}

/// The `name: value` lines of a `-C` file.
fn parse_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let what = |e: std::io::Error| format!("unable to read {}: {e}", path.display());
    let mut data = Vec::new();
    File::open(path).and_then(|f| f.take(CONFIG_MAX + 1).read_to_end(&mut data)).map_err(what)?;
    if data.len() as u64 > CONFIG_MAX {
        return Err(format!("{} is too big", path.display()));
    }
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&data).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            qmail::log::line(format_args!(
                "smmapd: warning: {}: ignoring {line:?}",
                path.display()
            ));
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if !NAMES.iter().any(|(n, a)| *n == name || *a == name) {
            qmail::log::line(format_args!(
                "smmapd: warning: {}: unknown setting {name}",
                path.display()
            ));
            continue;
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// A true value: a non-zero number, `yes`, `on` or `true` (imapd.conf's switches).
fn truth(v: &str) -> bool {
    leading_number(v).map_or_else(
        || ["yes", "on", "true", "t", "y"].iter().any(|t| v.eq_ignore_ascii_case(t)),
        |n| n != 0,
    )
}

fn leading_number(v: &str) -> Option<u64> {
    let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// `-D`: run `smmapddebugcommand` ([`qmail::listener::debug_command`]).
pub fn debug(settings: &Settings, service: &[u8]) {
    qmail::listener::debug_command(
        "smmapd",
        "smmapddebugcommand",
        settings.debug_command.as_deref(),
        service,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn command_lines() {
        let d = Options { uses: 250, idle: 60, ..Options::default() };
        assert_eq!(Options::parse(&args(&[])), Some(Options { ..d }));
        let o = Options::parse(&args(&["-C", "/etc/x", "-U", "30", "-T", "0", "-D", "-p"]));
        assert_eq!(
            o,
            Some(Options {
                config: Some("/etc/x".into()),
                uses: 30,
                idle: 0,
                debug: true,
                skip_plus: true,
                listen: None
            })
        );
        assert_eq!(Options::parse(&args(&["-U", "-5"])).map(|o| o.uses), Some(0));
        assert_eq!(
            Options::parse(&args(&["--listen", "unix:/s"])).and_then(|o| o.listen),
            Some(b"unix:/s".to_vec())
        );
        for bad in [
            &["-U30"][..],
            &["-Dp"],
            &["-U"],
            &["-U", "x"],
            &["-T", "1s"],
            &["-C"],
            &["extra"],
            &["-X"],
            &["--listen"],
            &["--"],
        ] {
            assert_eq!(Options::parse(&args(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn switches() {
        for t in ["1", "yes", "On", "true", "2"] {
            assert!(truth(t), "{t}");
        }
        for f in ["0", "no", "off", "", "false"] {
            assert!(!truth(f), "{f}");
        }
    }
}
