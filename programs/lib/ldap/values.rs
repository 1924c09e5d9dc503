//! ldap::values: the words and numbers of a qmailUser entry (doc/qmail-ldap.7, ATTRIBUTES),
//! decoded strictly: `accountStatus`, `qmailDotMode`, `deliveryMode`, integers, ids and
//! Booleans, and the checks on user names, paths and programs. No I/O; delivery's decoding
//! and qmailctl's checks of what it writes share them.

/// Accepted range of `qmailUID` and `qmailGID` (`UID_MIN..=UID_MAX`).
pub const ID_MIN: u32 = 100;
pub const ID_MAX: u32 = 65535;

/// `accountStatus` (doc/DECISIONS.md, 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    /// `active` or absent.
    Active,
    /// Mail is delivered; POP/IMAP/SMTP-AUTH logins are refused.
    NoAccess,
    /// The old `nopop`: active, but no POP/IMAP login.
    NoPop,
    /// Bounces ("administratively disabled", #5.2.1) and is refused at RCPT.
    Disabled,
    /// Bounces as an unknown user (#5.1.1).
    Deleted,
    /// An unknown word, kept for the log; treated as [`AccountStatus::NoAccess`].
    Unknown(String),
}

impl AccountStatus {
    pub fn parse(value: &str) -> AccountStatus {
        match value.to_ascii_lowercase().as_str() {
            "active" => AccountStatus::Active,
            "noaccess" => AccountStatus::NoAccess,
            "nopop" => AccountStatus::NoPop,
            "disabled" => AccountStatus::Disabled,
            "deleted" => AccountStatus::Deleted,
            _ => AccountStatus::Unknown(value.to_string()),
        }
    }

    /// Mail to the account is delivered (and accepted at RCPT).
    pub fn deliverable(&self) -> bool {
        !matches!(self, AccountStatus::Disabled | AccountStatus::Deleted)
    }

    /// POP3 and IMAP logins are allowed.
    pub fn mailbox_login(&self) -> bool {
        matches!(self, AccountStatus::Active)
    }

    /// SMTP AUTH is allowed.
    pub fn smtp_auth(&self) -> bool {
        matches!(self, AccountStatus::Active | AccountStatus::NoPop)
    }
}

/// `qmailDotMode` (doc/qmail-local.8, QMAILDOTMODE; doc/DECISIONS.md, 11): case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotMode {
    LdapOnly,
    LdapWithProg,
    DotOnly,
    Both,
    /// No .qmail files at all, LDAP instructions only.
    None,
}

impl DotMode {
    pub fn parse(value: &str) -> Option<DotMode> {
        match value.to_ascii_lowercase().as_str() {
            "ldaponly" => Some(DotMode::LdapOnly),
            "ldapwithprog" => Some(DotMode::LdapWithProg),
            "dotonly" => Some(DotMode::DotOnly),
            "both" => Some(DotMode::Both),
            "none" => Some(DotMode::None),
            _ => None,
        }
    }

    /// The word in `QMAILDOTMODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            DotMode::LdapOnly => "ldaponly",
            DotMode::LdapWithProg => "ldapwithprog",
            DotMode::DotOnly => "dotonly",
            DotMode::Both => "both",
            DotMode::None => "none",
        }
    }
}

/// `deliveryMode` values (doc/qmail-local.8, QMAILMODE): switches, lowercased; unknown words kept
/// for a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryMode {
    pub nolocal: bool,
    pub noforward: bool,
    pub noprogram: bool,
    pub reply: bool,
    /// Every value, lowercased, in directory order (for `QMAILMODE`).
    pub words: Vec<String>,
    /// Values that mean nothing (logged as "undefined mail delivery mode").
    pub unknown: Vec<String>,
}

impl DeliveryMode {
    pub fn parse<S: AsRef<str>>(values: &[S]) -> DeliveryMode {
        let mut m = DeliveryMode::default();
        for v in values {
            let w = v.as_ref().trim().to_ascii_lowercase();
            match w.as_str() {
                "nolocal" | "nombox" => m.nolocal = true,
                "noforward" => m.noforward = true,
                "noprogram" => m.noprogram = true,
                "reply" => m.reply = true,
                "local" | "forward" | "program" | "noreply" => {}
                _ => m.unknown.push(w.clone()),
            }
            m.words.push(w);
        }
        m
    }

    /// `QMAILMODE`: the words joined by `:`, or `None` when the attribute was absent.
    pub fn env(&self) -> Option<String> {
        (!self.words.is_empty()).then(|| self.words.join(":"))
    }
}

/// An unsigned decimal integer, digits only (no sign, no blanks, no trailing junk).
pub fn decode_int(value: &str) -> Result<u64, &'static str> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number");
    }
    value.parse().map_err(|_| "number too big")
}

/// A uid or gid in `ID_MIN..=ID_MAX`.
pub fn decode_id(value: &str) -> Result<u32, &'static str> {
    let n = decode_int(value)?;
    u32::try_from(n).ok().filter(|n| (ID_MIN..=ID_MAX).contains(n)).ok_or("id out of range")
}

/// A Boolean: `TRUE`/`1` or `FALSE`/`0`, any case.
pub fn decode_bool(value: &str) -> Result<bool, &'static str> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("not a Boolean"),
    }
}

/// A user name: letters, digits, `@ _ . # -`, not starting with `-`.
pub fn check_user(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.starts_with('-') {
        return Err("bad user name");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_.#-".contains(&b)) {
        return Err("bad character in user name");
    }
    Ok(())
}

/// A path: letters, digits, `@ _ . # - / : =`, not starting with `-`, no `..` component
/// followed by `/`.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.starts_with('-') {
        return Err("bad path");
    }
    if !path.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_.#-/:=".contains(&b)) {
        return Err("bad character in path");
    }
    if path.starts_with("../") || path.contains("/../") {
        return Err("path climbs with ..");
    }
    Ok(())
}

/// A program line: the path characters plus blanks, LF, `" ' + ,`, and no shell
/// metacharacter (`RESTRICT_PROG`).
pub fn check_program(prog: &str) -> Result<(), &'static str> {
    if prog.is_empty() || prog.starts_with('-') {
        return Err("bad program");
    }
    if !prog.bytes().all(|b| b.is_ascii_alphanumeric() || b"@_.#-/:= \t\n\"'+,".contains(&b)) {
        return Err("shell metacharacter or bad character in program");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        for ok in [("0", 0), ("100", 100), ("18446744073709551615", u64::MAX)] {
            assert_eq!(decode_int(ok.0), Ok(ok.1));
        }
        for bad in ["", " 1", "1 ", "+1", "-1", "1x", "0x10", "1e3", "18446744073709551616", "١"] {
            assert!(decode_int(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode_id("100"), Ok(100));
        assert_eq!(decode_id("65535"), Ok(65535));
        for bad in ["99", "0", "65536", "4294967396", "abc"] {
            assert!(decode_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans_and_words() {
        assert_eq!(decode_bool("TRUE"), Ok(true));
        assert_eq!(decode_bool("1"), Ok(true));
        assert_eq!(decode_bool("false"), Ok(false));
        assert!(decode_bool("yes").is_err());
        assert_eq!(AccountStatus::parse("Disabled"), AccountStatus::Disabled);
        assert_eq!(AccountStatus::parse("nopop"), AccountStatus::NoPop);
        assert!(AccountStatus::parse("NOACCESS").deliverable());
        assert!(!AccountStatus::parse("NOACCESS").mailbox_login());
        assert!(!AccountStatus::parse("deleted").deliverable());
        let odd = AccountStatus::parse("frozen");
        assert_eq!(odd, AccountStatus::Unknown("frozen".into()));
        assert!(odd.deliverable() && !odd.mailbox_login() && !odd.smtp_auth());
        assert_eq!(DotMode::parse("LdapWithProg"), Some(DotMode::LdapWithProg));
        assert_eq!(DotMode::parse("NONE"), Some(DotMode::None));
        assert_eq!(DotMode::parse("ldap only"), None);
        let m = DeliveryMode::parse(&["NoLocal", "reply", "bogus"]);
        assert!(m.nolocal && m.reply && !m.noforward);
        assert_eq!(m.unknown, ["bogus"]);
        assert_eq!(m.env().as_deref(), Some("nolocal:reply:bogus"));
        assert_eq!(DeliveryMode::parse::<&str>(&[]).env(), None);
    }

    #[test]
    fn sanity_checks() {
        assert!(check_user("joe.user@x").is_ok());
        for bad in ["", "-joe", "jo e", "joe/x", "jöe", "joe\0"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("/home/vmail/joe/Maildir/").is_ok());
        assert!(check_path("./Maildir/").is_ok());
        assert!(check_path("a..b/c").is_ok());
        for bad in ["", "-x", "../x", "/a/../b", "/a b", "/a;b", "/a\nb", "/é"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_program("/usr/bin/procmail -d joe").is_ok());
        for bad in ["/bin/rm -rf ~", "a|b", "a;b", "$(x)", "`x`", "a>b", "a&b", "a*"] {
            assert!(check_program(bad).is_err(), "{bad:?}");
        }
    }
}
