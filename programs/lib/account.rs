//! account: who a local recipient is delivered to, as qmail-getpw tells qmail-lspawn — the
//! record ([`Account`]: one encoder for qmail-getpw, one bounded decoder for qmail-lspawn, which
//! runs it as root) and the names of the environment records qmail-getpw passes on to
//! qmail-local ([`EnvName`], [`ALIASEMPTY`]). See doc/INTERNALS.md, "Between qmail-lspawn and
//! qmail-getpw".
//!
//! The record:
//!
//! ```text
//! user\0uid\0gid\0home\0dash\0ext\0  NAME=value\0 ...  \0
//! ```
//!
//! six fields, zero or more `NAME=value` records, an empty record, nothing after; at most
//! [`ANSWER_MAX`] bytes. The user is not empty, uid and gid are decimal `u32`s, the home is
//! absolute; every name is one of [`EnvName`] or [`ALIASEMPTY`] (whose value is not empty),
//! each at most once. Anything else is refused whole. A uid of 0 decodes: refusing it is the
//! caller's policy (qmail-lspawn's exit 113).
//!
//! `qmail-getpw -s` answers each request with a frame ([`frame`], [`read_frame`]): a netstring
//! whose payload is the three-digit exit code a one-shot run would have had, then what it
//! would have printed (the record, or a failure's report line), at most [`ANSWER_MAX`] bytes.

use crate::netstring;
use crate::users::Assignment;
use std::io::{self, BufRead};
use std::os::unix::ffi::OsStringExt;

/// The most bytes of qmail-getpw's answer: qmail-getpw writes no more, qmail-lspawn reads no
/// more.
pub const ANSWER_MAX: usize = 65536;

/// One answer of `qmail-getpw -s`: the exit code of a one-shot run (clamped to 0..=255) and
/// the bytes it prints.
pub fn frame(code: i32, answer: &[u8]) -> Vec<u8> {
    let mut payload = format!("{:03}", code.clamp(0, 255)).into_bytes();
    payload.extend_from_slice(answer);
    netstring::encode(&payload)
}

/// Read one answer of `qmail-getpw -s`: the exit code and the bytes; a frame that is not
/// three digits and at most [`ANSWER_MAX`] bytes is `InvalidData`.
pub fn read_frame(input: &mut impl BufRead) -> io::Result<(i32, Vec<u8>)> {
    let mut payload = netstring::read(input, ANSWER_MAX + 3)?;
    let code = match payload.get(..3) {
        Some(digits) if digits.iter().all(u8::is_ascii_digit) => {
            digits.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0'))
        }
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad frame")),
    };
    Ok((code, payload.split_off(3)))
}

/// The account a local part is delivered to: the six fields qmail-lspawn hands qmail-local,
/// and the records of the directory for qmail-local's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    pub dash: Vec<u8>,
    pub ext: Vec<u8>,
    /// qmail-local's environment, in the order written; each name at most once.
    pub env: Vec<(EnvName, Vec<u8>)>,
    /// `ALIASEMPTY`: the default delivery, replacing qmail-lspawn's `aliasempty` argument.
    pub aliasempty: Option<Vec<u8>>,
}

impl Account {
    /// An account without environment records (a classic lookup).
    pub fn plain(user: Vec<u8>, uid: u32, gid: u32, home: Vec<u8>) -> Self {
        Account {
            user,
            uid,
            gid,
            home,
            dash: Vec::new(),
            ext: Vec::new(),
            env: Vec::new(),
            aliasempty: None,
        }
    }

    /// The value of an environment record, if the account has it.
    pub fn var(&self, name: EnvName) -> Option<&[u8]> {
        self.env.iter().find(|(n, _)| *n == name).map(|(_, v)| &v[..])
    }

    /// qmail-getpw's answer: the six fields, `ALIASEMPTY` first, the environment records, the
    /// empty record.
    pub fn encode(&self) -> Vec<u8> {
        let (uid, gid) = (self.uid.to_string(), self.gid.to_string());
        let mut out = Vec::new();
        for field in
            [&self.user[..], uid.as_bytes(), gid.as_bytes(), &self.home, &self.dash, &self.ext]
        {
            out.extend_from_slice(field);
            out.push(0);
        }
        let aliasempty = self.aliasempty.iter().map(|v| (ALIASEMPTY, v));
        let env = self.env.iter().map(|(n, v)| (n.as_str(), v));
        for (name, value) in aliasempty.chain(env) {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value);
            out.push(0);
        }
        out.push(0);
        out
    }

    /// The whole answer as qmail-lspawn accepts it (see the module's header), or `None`.
    pub fn decode(answer: &[u8]) -> Option<Account> {
        if answer.len() > ANSWER_MAX {
            return None;
        }
        let mut fields = answer.split(|&b| b == 0);
        let mut six = [&b""[..]; 6];
        for field in &mut six {
            *field = fields.next()?;
        }
        let [user, uid, gid, home, dash, ext] = six;
        if user.is_empty() || home.first() != Some(&b'/') {
            return None;
        }
        let mut account = Account {
            user: user.to_vec(),
            uid: number(uid)?,
            gid: number(gid)?,
            home: home.to_vec(),
            dash: dash.to_vec(),
            ext: ext.to_vec(),
            env: Vec::new(),
            aliasempty: None,
        };
        loop {
            let record = fields.next()?;
            if record.is_empty() {
                break;
            }
            let eq = record.iter().position(|&b| b == b'=')?;
            let (name, value) = (&record[..eq], record[eq + 1..].to_vec());
            if name == ALIASEMPTY.as_bytes() {
                if account.aliasempty.is_some() || value.is_empty() {
                    return None;
                }
                account.aliasempty = Some(value);
                continue;
            }
            let name = EnvName::parse(name)?;
            if account.var(name).is_some() {
                return None;
            }
            account.env.push((name, value));
        }
        // the empty record ended the answer: only the split's empty tail may follow
        (fields.next() == Some(b"") && fields.next().is_none()).then_some(account)
    }
}

/// A users/cdb assignment (the users/assign view: UTF-8 text, the home a path) as the record.
impl From<Assignment> for Account {
    fn from(a: Assignment) -> Self {
        Account {
            dash: a.dash.into_bytes(),
            ext: a.ext.into_bytes(),
            ..Account::plain(a.user.into_bytes(), a.uid, a.gid, a.home.into_os_string().into_vec())
        }
    }
}

/// A decimal `u32`: digits only, no sign, no overflow.
fn number(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

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

    fn joe() -> Account {
        Account {
            dash: b"-".to_vec(),
            ext: b"x-y".to_vec(),
            ..Account::plain(b"joe".to_vec(), 1000, 100, b"/home/joe".to_vec())
        }
    }

    #[test]
    fn encoding() {
        let a = Account { ext: b"x".to_vec(), ..joe() };
        assert_eq!(a.encode(), b"joe\x001000\x00100\x00/home/joe\x00-\x00x\x00\x00");
        let a = Account {
            env: vec![(EnvName::Mode, b"reply".to_vec()), (EnvName::DotMode, b"both".to_vec())],
            aliasempty: Some(b"./Maildir/".to_vec()),
            ..a
        };
        assert_eq!(
            a.encode(),
            b"joe\x001000\x00100\x00/home/joe\x00-\x00x\x00ALIASEMPTY=./Maildir/\x00\
              QMAILMODE=reply\x00QMAILDOTMODE=both\x00\x00"
        );
        assert_eq!(Account::decode(&a.encode()), Some(a));
    }

    #[test]
    fn six_fields() {
        let six = |fields: &[u8]| Account::decode(&[fields, b"\0"].concat());
        assert_eq!(six(b"joe\x001000\x00100\x00/home/joe\x00-\x00x-y\x00"), Some(joe()));
        assert_eq!(six(b"r\x000\x000\x00/\x00\x00\x00").map(|a| a.uid), Some(0));
        for bad in [
            &b"\0"[..],
            b"joe\x001000\x00100\x00/home/joe\x00-\x00",
            b"\x001000\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x00-1\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x00+1\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x00\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x004294967296\x00100\x00/home/joe\x00-\x00x\x00",
            b"joe\x001000\x00x\x00/home/joe\x00-\x00x\x00",
            b"joe\x001000\x00100\x00home/joe\x00-\x00x\x00",
            b"joe\x001000\x00100\x00\x00-\x00x\x00",
        ] {
            assert_eq!(six(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // bounded: the whole answer is at most ANSWER_MAX bytes
        let home = |n| [b"joe\x001\x001\x00/".as_slice(), &vec![b'h'; n], b"\0\0\0\0"].concat();
        let fits = home(ANSWER_MAX - 13);
        assert_eq!(fits.len(), ANSWER_MAX);
        assert!(Account::decode(&fits).is_some());
        assert_eq!(Account::decode(&home(ANSWER_MAX - 12)), None);
    }

    #[test]
    fn whole_answers() {
        let six = b"joe\x001000\x00100\x00/home/joe\x00\x00\x00".to_vec();
        let with = |tail: &[u8]| [six.as_slice(), tail].concat();
        let plain = Account::plain(b"joe".to_vec(), 1000, 100, b"/home/joe".to_vec());
        assert_eq!(Account::decode(&with(b"\0")), Some(plain.clone()));
        let a = Account::decode(&with(
            b"QMAILMODE=reply:nolocal\0QMAILREPLYTEXT=a=b\nc\0ALIASEMPTY=./Maildir/\0\0",
        ))
        .unwrap();
        assert_eq!(
            (a.env, a.aliasempty),
            (
                vec![
                    (EnvName::Mode, b"reply:nolocal".to_vec()),
                    (EnvName::ReplyText, b"a=b\nc".to_vec()),
                ],
                Some(b"./Maildir/".to_vec())
            )
        );
        let a = Account::decode(&with(b"MAILDIRQUOTA=\0\0")).unwrap();
        assert_eq!(a.env, vec![(EnvName::MaildirQuota, Vec::new())]);
        for bad in [
            // the old six-field answer, no terminating record
            six.clone(),
            six[..six.len() - 1].to_vec(),
            with(b"\0\0"),
            with(b"\0junk"),
            with(b"QMAILMODE=x\0"),
            with(b"QMAILMODE=x"),
            with(b"PATH=/tmp\0\0"),
            with(b"LD_PRELOAD=/tmp/x.so\0\0"),
            with(b"qmailmode=x\0\0"),
            with(b"QMAILMODE\0\0"),
            with(b"=x\0\0"),
            with(b"QMAILMODE=a\0QMAILMODE=b\0\0"),
            with(b"ALIASEMPTY=./\0ALIASEMPTY=./\0\0"),
            with(b"ALIASEMPTY=\0\0"),
            b"joe\x000\x00\x00\x00".to_vec(),
            vec![0; 100],
            vec![],
        ] {
            assert_eq!(Account::decode(&bad), None, "{:?}", String::from_utf8_lossy(&bad));
        }
        // hostile: a huge number of records is linear and still refused on a duplicate
        let mut many = with(b"");
        for _ in 0..5_000 {
            many.extend_from_slice(b"QMAILMODE=x\0");
        }
        many.push(0);
        assert!(many.len() <= ANSWER_MAX);
        assert_eq!(Account::decode(&many), None);
        assert_eq!(Account::decode(&[b'x'; 100_000]), None);
    }

    #[test]
    fn frames() {
        let mut two = frame(0, b"joe\0");
        two.extend(frame(159, b"gone\n"));
        assert_eq!(two, b"7:000joe\0,8:159gone\n,");
        let mut input = &two[..];
        assert_eq!(read_frame(&mut input).unwrap(), (0, b"joe\0".to_vec()));
        assert_eq!(read_frame(&mut input).unwrap(), (159, b"gone\n".to_vec()));
        assert_eq!(read_frame(&mut input).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let full = frame(0, &[b'x'; ANSWER_MAX]);
        assert_eq!(read_frame(&mut &full[..]).unwrap().1.len(), ANSWER_MAX);
        for bad in [
            frame(0, &[b'x'; ANSWER_MAX + 1]),
            netstring::encode(b"12"),
            netstring::encode(b"+12x"),
            netstring::encode(b"x00"),
            b"3:000;".to_vec(),
        ] {
            let got = read_frame(&mut &bad[..]).unwrap_err();
            assert_eq!(got.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn assignments() {
        let a = Assignment {
            user: "joe".into(),
            uid: 1000,
            gid: 100,
            home: "/home/joe".into(),
            dash: "-".into(),
            ext: "x-y".into(),
        };
        assert_eq!(Account::from(a), joe());
    }

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
