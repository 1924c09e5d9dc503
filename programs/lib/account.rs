//! account: who a local recipient is delivered to, as qmail-getpw tells qmail-lspawn — the
//! names of the environment records qmail-getpw passes on to qmail-local ([`EnvName`],
//! [`ALIASEMPTY`]). See doc/INTERNALS.md, "Between qmail-lspawn and qmail-getpw".

/// An environment variable the directory sets for qmail-local through qmail-getpw's answer;
/// qmail-lspawn accepts these names and no others (besides [`ALIASEMPTY`]), removes them all
/// from qmail-local's environment and sets again those the answer holds. See doc/qmail-getpw.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvName {
    /// `QMAILDOTMODE`: which sources of instructions count (`dotonly`, `ldaponly`, ...).
    DotMode,
    /// `QMAILMODE`: the deliveryMode words, `:`-separated.
    Mode,
    /// `QMAILREPLYTEXT`: the text qmail-reply answers with.
    ReplyText,
    /// `QMAILFORWARDS`: the forwarding addresses, joined by `:` (a literal `:` written `\:`).
    Forwards,
    /// `QMAILDELIVERYPROGRAM`: the delivery programs, joined as the forwards.
    DeliveryProgram,
    /// `MAILDIRQUOTA`: the Maildir++ quota.
    MaildirQuota,
    /// `QLDAPGROUP`: the DN of a group entry.
    Group,
}

/// Not exported to qmail-local: the account's default delivery, which replaces qmail-lspawn's
/// `aliasempty` argument for this delivery.
pub const ALIASEMPTY: &str = "ALIASEMPTY";

impl EnvName {
    pub const ALL: [EnvName; 7] = [
        EnvName::DotMode,
        EnvName::Mode,
        EnvName::ReplyText,
        EnvName::Forwards,
        EnvName::DeliveryProgram,
        EnvName::MaildirQuota,
        EnvName::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvName::DotMode => "QMAILDOTMODE",
            EnvName::Mode => "QMAILMODE",
            EnvName::ReplyText => "QMAILREPLYTEXT",
            EnvName::Forwards => "QMAILFORWARDS",
            EnvName::DeliveryProgram => "QMAILDELIVERYPROGRAM",
            EnvName::MaildirQuota => "MAILDIRQUOTA",
            EnvName::Group => "QLDAPGROUP",
        }
    }

    /// The name spelt exactly so (names are case-sensitive), if it is one of the table.
    pub fn parse(name: &[u8]) -> Option<EnvName> {
        EnvName::ALL.into_iter().find(|n| n.as_str().as_bytes() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in EnvName::ALL {
            assert_eq!(EnvName::parse(n.as_str().as_bytes()), Some(n));
        }
        for bad in [&b"qmailmode"[..], b"ALIASEMPTY", b"PATH", b"", b"QMAILMODE\0"] {
            assert_eq!(EnvName::parse(bad), None);
        }
    }
}
