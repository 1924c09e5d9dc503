//! args: qmail-local's command line, `[-nN] [--] user homedir local dash ext domain sender
//! aliasempty` (doc/qmail-local.8), through the one getopt-style parser, qmail::getopt.

use qmail::getopt::{Getopt, Opt};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

pub const USAGE: &str =
    "usage: qmail-local [-nN] [--] user homedir local dash ext domain sender aliasempty (#5.3.5)";

/// The command line: eight byte strings after the options.
pub struct Args {
    pub plan_only: bool,
    pub user: Vec<u8>,
    pub home: Vec<u8>,
    pub local: Vec<u8>,
    pub dash: Vec<u8>,
    pub ext: Vec<u8>,
    pub domain: Vec<u8>,
    pub sender: Vec<u8>,
    pub aliasempty: Vec<u8>,
}

impl Args {
    pub fn parse(args: Vec<OsString>) -> Option<Args> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut plan_only = false;
        let mut opts = Getopt::new(&args, "nN");
        for opt in opts.by_ref() {
            match opt {
                Opt::Flag(b'n') => plan_only = true,
                Opt::Flag(b'N') => plan_only = false,
                _ => return None,
            }
        }
        let [user, home, local, dash, ext, domain, sender, aliasempty] = opts.rest() else {
            return None;
        };
        let b = |s: &Vec<u8>| s.clone();
        if !home.starts_with(b"/") {
            return None;
        }
        Some(Args {
            plan_only,
            user: b(user),
            home: b(home),
            local: b(local),
            dash: b(dash),
            ext: b(ext),
            domain: b(domain),
            sender: b(sender),
            aliasempty: b(aliasempty),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let p = |v: &[&str]| Args::parse(v.iter().map(OsString::from).collect());
        let eight = ["u", "/h", "l", "-", "e", "d", "s", "./Maildir/"];
        assert!(p(&eight).is_some());
        assert!(p(&[&["--"][..], &eight].concat()).is_some());
        assert!(p(&[&["-n", "--"][..], &eight].concat()).unwrap().plan_only);
        assert!(!p(&[&["-nN"][..], &eight].concat()).unwrap().plan_only);
        assert!(p(&[&["-x"][..], &eight].concat()).is_none());
        assert!(p(&eight[..7]).is_none());
        assert!(p(&[&eight[..], &["x"]].concat()).is_none());
        assert!(p(&["u", "h", "l", "-", "e", "d", "s", "a"]).is_none(), "relative home");
    }
}
