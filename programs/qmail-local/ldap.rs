//! ldap: what qmail-lspawn's directory lookup asks of this delivery (doc/qmail-local.8,
//! "Directory (LDAP) environment") — the one seam where LDAP behaviour joins qmail-local.
//!
//! qmail-lspawn passes the directory's answer in the environment: `QMAILDOTMODE` (which
//! sources of instructions count), `QMAILMODE` (deliveryMode words, `:`-separated),
//! `QMAILFORWARDS` and `QMAILDELIVERYPROGRAM` (values joined by `:`, a literal `:` written
//! `\:`), `QMAILREPLYTEXT` (read by qmail-reply itself) and `MAILDIRQUOTA`. Every word is
//! case-insensitive. Without `QMAILDOTMODE` (or with `dotonly`) qmail-local behaves as plain
//! qmail and ignores the LDAP variables, except the quota, which belongs to the account.
//!
//! `none` means "no `.qmail` files at all, LDAP instructions only" (doc/DECISIONS.md, 11; upstream
//! bounced it): it behaves as `ldaponly`. An unknown dot-mode is a permanent failure
//! (`#5.3.5`). Programs from the directory are refused (`#5.3.5`) when they hold characters
//! outside the path set plus space, TAB, LF, `" ' + , \`, and — unless `control/ldaprestrictprog`
//! is `0` — when they hold a shell metacharacter (doc/qmail-local.8, `RESTRICT_PROG`).

use qmail::account::EnvName;
use qmail::address::Address;
use qmail::dotqmail::Instruction;
use qmail::exit::Verdict;
use qmail::quota::Quota;

/// Which instruction sources count (doc/qmail-local.8, QMAILDOTMODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotMode {
    /// `.qmail` files only; LDAP values ignored (also the mode without `QMAILDOTMODE`).
    DotOnly,
    /// LDAP forwards and the default mailbox; no programs, no `.qmail`.
    LdapOnly,
    /// As `LdapOnly`, plus the directory's programs.
    LdapWithProg,
    /// LDAP first, then the `.qmail` file; programs allowed.
    Both,
    /// `none`: LDAP instructions only, never a `.qmail` file (same as `LdapOnly`).
    None,
}

impl DotMode {
    fn parse(word: &[u8]) -> Option<DotMode> {
        Some(match word.to_ascii_lowercase().as_slice() {
            b"dotonly" => DotMode::DotOnly,
            b"ldaponly" => DotMode::LdapOnly,
            b"ldapwithprog" => DotMode::LdapWithProg,
            b"both" => DotMode::Both,
            b"none" => DotMode::None,
            _ => return None,
        })
    }
}

/// The deliveryMode words that change anything (doc/qmail-local.8, QMAILMODE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    pub nolocal: bool,
    pub noforward: bool,
    pub noprogram: bool,
    pub reply: bool,
}

impl Mode {
    /// Parse `QMAILMODE`; unknown words come back as warnings.
    fn parse(value: &[u8], warnings: &mut Vec<String>) -> Mode {
        let mut m = Mode::default();
        for word in split_escaped(value) {
            match word.to_ascii_lowercase().as_slice() {
                b"nolocal" | b"nombox" => m.nolocal = true,
                b"noforward" => m.noforward = true,
                b"noprogram" => m.noprogram = true,
                b"forwardonly" => (m.nolocal, m.noprogram) = (true, true),
                b"reply" => m.reply = true,
                b"" | b"normal" | b"local" | b"forward" | b"program" | b"noreply" => {}
                _ => warnings.push(format!(
                    "warning: undefined mail delivery mode {:?} ignored",
                    String::from_utf8_lossy(&word)
                )),
            }
        }
        m
    }

    /// Does this mode let `i` run?
    pub fn allows(&self, i: &Instruction) -> bool {
        match i {
            Instruction::Maildir(_) | Instruction::Mbox(_) => !self.nolocal,
            Instruction::Forward(_) => !self.noforward,
            Instruction::Program(_) => !self.noprogram,
        }
    }
}

/// Delivery options set by the directory.
#[derive(Debug)]
pub struct Options {
    pub dot: DotMode,
    pub mode: Mode,
    forwards: Vec<Vec<u8>>,
    programs: Vec<Vec<u8>>,
    /// `QMAILREPLYTEXT` is set (and not empty).
    pub reply_text: bool,
    pub quota: Option<Quota>,
    /// Refuse shell metacharacters in the directory's programs.
    pub restrict_programs: bool,
    /// Unknown deliveryMode words, reported with the result.
    pub warnings: Vec<String>,
}

impl Options {
    /// Read the options from the environment (and `control/ldaprestrictprog`).
    pub fn from_env() -> Result<Options, Verdict> {
        use std::os::unix::ffi::OsStringExt;
        let restrict = qmail::control::Control::new(&qmail::auto::home())
            .int_or("ldaprestrictprog", 1)
            .map_err(|e| Verdict::temp(format!("Uh-oh: {e} (#4.3.0)")))?;
        Options::from_vars(|name| std::env::var_os(name).map(|v| v.into_vec()), restrict != 0)
    }

    /// Build the options from a variable lookup (the environment, or a table in tests).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<Vec<u8>>,
        restrict_programs: bool,
    ) -> Result<Options, Verdict> {
        let quota = match var(EnvName::MaildirQuota.as_str()) {
            Some(q) => Quota::parse(&q).map_err(|_| {
                Verdict::temp(format!(
                    "Uh-oh: invalid MAILDIRQUOTA {:?}. (#4.3.5)",
                    String::from_utf8_lossy(&q)
                ))
            })?,
            None => None,
        };
        let dot = match var(EnvName::DotMode.as_str()) {
            None => DotMode::DotOnly,
            Some(w) => DotMode::parse(&w).ok_or_else(|| {
                Verdict::perm(format!(
                    "Non valid dot-mode found: {:?}. (#5.3.5)",
                    String::from_utf8_lossy(&w)
                ))
            })?,
        };
        let mut warnings = Vec::new();
        let list = |name| var(name).map(|v| split_escaped(&v)).unwrap_or_default();
        let (mode, forwards, programs, reply_text) = if dot == DotMode::DotOnly {
            (Mode::default(), Vec::new(), Vec::new(), false)
        } else {
            (
                Mode::parse(&var(EnvName::Mode.as_str()).unwrap_or_default(), &mut warnings),
                list(EnvName::Forwards.as_str()),
                list(EnvName::DeliveryProgram.as_str()),
                var(EnvName::ReplyText.as_str()).is_some_and(|t| !t.is_empty()),
            )
        };
        Ok(Options {
            dot,
            mode,
            forwards,
            programs,
            reply_text,
            quota,
            restrict_programs,
            warnings,
        })
    }

    /// Whether `.qmail` files are consulted at all.
    pub fn uses_dotqmail(&self) -> bool {
        matches!(self.dot, DotMode::DotOnly | DotMode::Both)
    }

    /// Whether the directory's instructions are used.
    pub fn uses_ldap(&self) -> bool {
        self.dot != DotMode::DotOnly
    }

    /// Whether the directory's programs run.
    fn programs_allowed(&self) -> bool {
        matches!(self.dot, DotMode::LdapWithProg | DotMode::Both) && !self.mode.noprogram
    }

    /// Should qmail-reply run (deliveryMode `reply`, a reply text, a sender to answer)?
    pub fn replies_to(&self, sender: &[u8]) -> bool {
        self.uses_ldap() && self.mode.reply && self.reply_text && !sender.is_empty()
    }

    /// The instruction list of an LDAP dot-mode, in upstream's order: the directory's programs,
    /// its forwards, the default delivery (already parsed), then — in `both` mode — the
    /// `.qmail` file's instructions; everything filtered by the deliveryMode.
    pub fn instructions(
        &self,
        default: Vec<Instruction>,
        dotqmail: Vec<Instruction>,
    ) -> Result<Vec<Instruction>, Verdict> {
        let mut out = Vec::new();
        if self.programs_allowed() {
            for p in &self.programs {
                check_program(p, self.restrict_programs)?;
                out.push(Instruction::Program(p.clone()));
            }
        }
        if !self.mode.noforward {
            for f in &self.forwards {
                let bad = || {
                    Verdict::perm(format!(
                        "Illegal forwarding address {:?} in the directory. (#5.3.5)",
                        String::from_utf8_lossy(f)
                    ))
                };
                let f = f.strip_prefix(b"&").unwrap_or(f);
                if f.is_empty() || f.iter().any(|&b| b == b'\n' || b == b'\r') {
                    return Err(bad());
                }
                out.push(Instruction::Forward(Address::new(f.to_vec()).map_err(|_| bad())?));
            }
        }
        out.extend(default);
        out.retain(|i| self.mode.allows(i));
        if self.dot == DotMode::Both {
            out.extend(dotqmail.into_iter().filter(|i| self.mode.allows(i)));
        }
        Ok(out)
    }
}

/// Split a joined multi-value attribute at unescaped `:`; `\:` is a literal colon, any other
/// backslash stays as it is. Empty values are dropped.
pub fn split_escaped(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < value.len() {
        match (value[i], value.get(i + 1)) {
            (b'\\', Some(b':')) => {
                cur.push(b':');
                i += 2;
                continue;
            }
            (b':', _) => out.push(std::mem::take(&mut cur)),
            (b, _) => cur.push(b),
        }
        i += 1;
    }
    out.push(cur);
    out.retain(|v| !v.is_empty());
    out
}

/// doc/qmail-local.8: a program from the directory may hold letters, digits, `@ _ . # - / : =`,
/// space, TAB, LF, `" ' + , \`; with `restrict` no shell metacharacter either (the
/// metacharacters are outside that set anyway, so `restrict` = false lets them through).
pub fn check_program(p: &[u8], restrict: bool) -> Result<(), Verdict> {
    const META: &[u8] = b"!$%&()*;<>?[]^`{|}~";
    let plain = |b: u8| {
        b.is_ascii_alphanumeric()
            || b"@_.#-/:= \t\n\"'+,\\".contains(&b)
            || (!restrict && META.contains(&b))
    };
    if p.is_empty() || p.first() == Some(&b'-') || !p.iter().all(|&b| plain(b)) {
        return Err(Verdict::perm(format!(
            "Illegal delivery program {:?} in the directory. (#5.3.5)",
            String::from_utf8_lossy(p)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    type Vars<'a> = &'a [(&'a str, &'a str)];
    type DotRow<'a> = (Option<&'a str>, Option<(bool, bool)>);

    fn opts(vars: &[(&str, &str)]) -> Result<Options, Verdict> {
        let map: HashMap<String, Vec<u8>> =
            vars.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
        Options::from_vars(|k| map.get(k).cloned(), true)
    }

    fn plan(o: &Options) -> Vec<String> {
        let default = vec![Instruction::Maildir(b"./Maildir/".to_vec())];
        let dot = vec![
            Instruction::Program(b"dotprog".to_vec()),
            Instruction::Forward(Address::new(b"dot@x".to_vec()).unwrap()),
            Instruction::Mbox(b"./mbox".to_vec()),
        ];
        o.instructions(default, dot)
            .unwrap()
            .iter()
            .map(|i| match i {
                Instruction::Program(p) => format!("|{}", String::from_utf8_lossy(p)),
                Instruction::Maildir(p) | Instruction::Mbox(p) => {
                    String::from_utf8_lossy(p).into_owned()
                }
                Instruction::Forward(a) => format!("&{}", String::from_utf8_lossy(a.as_bytes())),
            })
            .collect()
    }

    #[test]
    fn splitting() {
        let rows: &[(&str, &[&str])] = &[
            ("", &[]),
            ("a", &["a"]),
            ("a:b", &["a", "b"]),
            ("a\\:b:c", &["a:b", "c"]),
            ("a::b:", &["a", "b"]),
            ("\\", &["\\"]),
            ("a\\b", &["a\\b"]),
            ("a\\\\:b", &["a\\:b"]),
            (":::", &[]),
        ];
        for (v, want) in rows {
            let got = split_escaped(v.as_bytes());
            let want: Vec<Vec<u8>> = want.iter().map(|s| s.as_bytes().to_vec()).collect();
            assert_eq!(got, want, "{v:?}");
        }
    }

    #[test]
    fn dot_modes() {
        let rows: &[DotRow] = &[
            (None, Some((true, false))),
            (Some("dotonly"), Some((true, false))),
            (Some("DotOnly"), Some((true, false))),
            (Some("ldaponly"), Some((false, true))),
            (Some("LDAPONLY"), Some((false, true))),
            (Some("ldapwithprog"), Some((false, true))),
            (Some("both"), Some((true, true))),
            (Some("BOTH"), Some((true, true))),
            (Some("none"), Some((false, true))),
            (Some("None"), Some((false, true))),
            (Some(""), None),
            (Some("ldap only"), None),
            (Some("bothx"), None),
            (Some("both\n"), None),
        ];
        for (dm, want) in rows {
            let vars: Vec<(&str, &str)> = dm.iter().map(|d| ("QMAILDOTMODE", *d)).collect();
            match (opts(&vars), want) {
                (Ok(o), Some((dot, ldap))) => {
                    assert_eq!((o.uses_dotqmail(), o.uses_ldap()), (*dot, *ldap), "{dm:?}")
                }
                (Err(v), None) => assert!(v.is_perm() && v.text().contains("#5.3.5"), "{dm:?}"),
                (got, _) => panic!("{dm:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn instruction_lists() {
        let base = [("QMAILFORWARDS", "a@x:b@y"), ("QMAILDELIVERYPROGRAM", "/bin/prog arg")];
        let rows: &[(&str, &str, &[&str])] = &[
            ("ldaponly", "", &["&a@x", "&b@y", "./Maildir/"]),
            ("ldapwithprog", "", &["|/bin/prog arg", "&a@x", "&b@y", "./Maildir/"]),
            ("none", "", &["&a@x", "&b@y", "./Maildir/"]),
            (
                "both",
                "",
                &["|/bin/prog arg", "&a@x", "&b@y", "./Maildir/", "|dotprog", "&dot@x", "./mbox"],
            ),
            ("both", "nolocal", &["|/bin/prog arg", "&a@x", "&b@y", "|dotprog", "&dot@x"]),
            ("both", "NOMBOX", &["|/bin/prog arg", "&a@x", "&b@y", "|dotprog", "&dot@x"]),
            ("both", "noforward", &["|/bin/prog arg", "./Maildir/", "|dotprog", "./mbox"]),
            ("both", "noprogram", &["&a@x", "&b@y", "./Maildir/", "&dot@x", "./mbox"]),
            ("both", "nolocal:noforward:noprogram", &[]),
            ("both", "forwardonly", &["&a@x", "&b@y", "&dot@x"]),
            (
                "both",
                "normal:local:forward:program:noreply:bogus",
                &["|/bin/prog arg", "&a@x", "&b@y", "./Maildir/", "|dotprog", "&dot@x", "./mbox"],
            ),
            ("ldapwithprog", "NoLocal:NoForward", &["|/bin/prog arg"]),
            ("dotonly", "nolocal", &["./Maildir/"]),
        ];
        for (dm, mode, want) in rows {
            let mut vars = base.to_vec();
            vars.push(("QMAILDOTMODE", dm));
            vars.push(("QMAILMODE", mode));
            let o = opts(&vars).unwrap();
            let got = plan(&o);
            if *dm == "dotonly" {
                // dotonly: the caller uses the .qmail text; the directory adds nothing
                assert!(!o.uses_ldap());
                continue;
            }
            assert_eq!(got, *want, "{dm} {mode}");
        }
        let o = opts(&[("QMAILDOTMODE", "both"), ("QMAILMODE", "bogus:reply")]).unwrap();
        assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
        assert!(o.mode.reply);
    }

    #[test]
    fn replies() {
        let rows: &[(Vars, &[u8], bool)] = &[
            (
                &[("QMAILDOTMODE", "ldaponly"), ("QMAILMODE", "reply"), ("QMAILREPLYTEXT", "t")],
                b"a@b",
                true,
            ),
            (
                &[("QMAILDOTMODE", "ldaponly"), ("QMAILMODE", "REPLY"), ("QMAILREPLYTEXT", "t")],
                b"a@b",
                true,
            ),
            (
                &[("QMAILDOTMODE", "ldaponly"), ("QMAILMODE", "reply"), ("QMAILREPLYTEXT", "t")],
                b"",
                false,
            ),
            (&[("QMAILDOTMODE", "ldaponly"), ("QMAILMODE", "reply")], b"a@b", false),
            (
                &[("QMAILDOTMODE", "ldaponly"), ("QMAILMODE", "reply"), ("QMAILREPLYTEXT", "")],
                b"a@b",
                false,
            ),
            (&[("QMAILDOTMODE", "ldaponly"), ("QMAILREPLYTEXT", "t")], b"a@b", false),
            (
                &[("QMAILDOTMODE", "dotonly"), ("QMAILMODE", "reply"), ("QMAILREPLYTEXT", "t")],
                b"a@b",
                false,
            ),
            (&[("QMAILMODE", "reply"), ("QMAILREPLYTEXT", "t")], b"a@b", false),
        ];
        for (vars, sender, want) in rows {
            assert_eq!(opts(vars).unwrap().replies_to(sender), *want, "{vars:?}");
        }
    }

    #[test]
    fn programs() {
        let rows: &[(&str, bool, bool)] = &[
            ("/usr/bin/procmail -d joe", true, true),
            ("/bin/x \"a b\" 'c' +d,e \\f", true, true),
            ("/bin/x; rm -rf /", true, false),
            ("/bin/x; rm -rf /", false, true),
            ("/bin/x | y", true, false),
            ("/bin/x `id`", true, false),
            ("/bin/x $(id)", true, false),
            ("/bin/x > /etc/passwd", true, false),
            ("/bin/x && y", true, false),
            ("/bin/x\x00y", false, false),
            ("/bin/x\ry", false, false),
            ("/bin/\u{e9}", false, false),
            ("-rf", false, false),
            ("", false, false),
        ];
        for (p, restrict, ok) in rows {
            assert_eq!(check_program(p.as_bytes(), *restrict).is_ok(), *ok, "{p:?} {restrict}");
        }
        let o = opts(&[("QMAILDOTMODE", "ldapwithprog"), ("QMAILDELIVERYPROGRAM", "/bin/a;b")])
            .unwrap();
        assert!(o.instructions(vec![], vec![]).unwrap_err().is_perm());
        // not run at all in ldaponly, so not refused either
        let o =
            opts(&[("QMAILDOTMODE", "ldaponly"), ("QMAILDELIVERYPROGRAM", "/bin/a;b")]).unwrap();
        assert!(o.instructions(vec![], vec![]).unwrap().is_empty());
    }

    #[test]
    fn forwards() {
        for (f, ok) in [("a@b", true), ("&a@b", true), ("&", false), ("a\nb@c", false)] {
            let o = opts(&[("QMAILDOTMODE", "ldaponly"), ("QMAILFORWARDS", f)]).unwrap();
            assert_eq!(o.instructions(vec![], vec![]).is_ok(), ok, "{f:?}");
        }
        let long = "x".repeat(5000);
        let o = opts(&[("QMAILDOTMODE", "ldaponly"), ("QMAILFORWARDS", &long)]).unwrap();
        assert!(o.instructions(vec![], vec![]).unwrap_err().is_perm());
    }

    #[test]
    fn quotas() {
        assert!(opts(&[("MAILDIRQUOTA", "1000S")]).unwrap().quota.is_some());
        assert!(opts(&[("MAILDIRQUOTA", "")]).unwrap().quota.is_none());
        assert!(!opts(&[("MAILDIRQUOTA", "lots")]).unwrap_err().is_perm());
    }
}
