//! ldap::admin: changing the directory, for qmailctl user and qmail-ldaplookup -p: RFC 4514
//! escaping of DN values, adding, modifying and deleting entries, checking that an entry
//! exists, and a password check by binding as the entry. A refused change is an
//! [`Error::Failure`] naming the operation, the DN and the LDAP result code, which
//! [`result_code`] reads back.

use super::connection::{connect, Directory};
use super::error::Error;
use ldap3::Scope;

/// RFC 4514 escaping of an attribute value inside a DN: `, + " \ < > ;` and `=` anywhere, a
/// leading `#` or blank, a trailing blank and NUL become `\xx` (hex), as do control
/// characters, so no value can add an RDN or change the DN's structure.
pub fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ')
            || c.is_control();
        if special {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One change of [`Directory::modify`]: attribute name and its new values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set the attribute to exactly these values (none: remove it).
    Replace(String, Vec<String>),
    /// Add these values.
    Add(String, Vec<String>),
    /// Remove these values (none: the whole attribute).
    Delete(String, Vec<String>),
}

impl Directory {
    /// Adds an entry; attributes with no values are left out.
    pub fn add(&mut self, dn: &str, attrs: &[(&str, Vec<String>)]) -> Result<(), Error> {
        let attrs: Vec<(String, std::collections::HashSet<String>)> = attrs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(a, v)| (a.to_string(), v.iter().cloned().collect()))
            .collect();
        let timeout = self.config().search_timeout;
        let res = self.connection()?.with_timeout(timeout).add(dn, attrs);
        self.write_result("add", dn, res)
    }

    /// Applies `changes` to one entry in one operation.
    pub fn modify(&mut self, dn: &str, changes: &[Change]) -> Result<(), Error> {
        use std::collections::HashSet;
        let set = |v: &[String]| v.iter().cloned().collect::<HashSet<String>>();
        let mods: Vec<ldap3::Mod<String>> = changes
            .iter()
            .map(|c| match c {
                Change::Replace(a, v) => ldap3::Mod::Replace(a.clone(), set(v)),
                Change::Add(a, v) => ldap3::Mod::Add(a.clone(), set(v)),
                Change::Delete(a, v) => ldap3::Mod::Delete(a.clone(), set(v)),
            })
            .collect();
        let timeout = self.config().search_timeout;
        let res = self.connection()?.with_timeout(timeout).modify(dn, mods);
        self.write_result("modify", dn, res)
    }

    /// Deletes one (leaf) entry.
    pub fn delete(&mut self, dn: &str) -> Result<(), Error> {
        let timeout = self.config().search_timeout;
        let res = self.connection()?.with_timeout(timeout).delete(dn);
        self.write_result("delete", dn, res)
    }

    /// Whether `password` binds as `dn`, on a fresh connection of its own (the directory
    /// checks the password, any scheme it knows). `Ok(false)`: invalid credentials; an empty
    /// password is refused without asking (an LDAP empty password is an anonymous bind).
    pub fn bind_check(&self, dn: &str, password: &str) -> Result<bool, Error> {
        if password.is_empty() {
            return Ok(false);
        }
        let mut cfg = self.config().clone();
        cfg.login = dn.to_string();
        cfg.password = password.to_string();
        let mut last = Error::Unreachable("no server in control/ldapserver".to_string());
        for url in &cfg.servers {
            match connect(url, &cfg) {
                Ok(mut c) => {
                    let _ = c.unbind();
                    return Ok(true);
                }
                Err(Error::Credentials(_)) => return Ok(false),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Whether the entry `dn` exists (a base search; `noSuchObject` is `Ok(false)`).
    pub fn exists(&mut self, dn: &str) -> Result<bool, Error> {
        let timeout = self.config().search_timeout;
        let res = self.connection()?.with_timeout(timeout).search(
            dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["1.1"],
        );
        let res = match res {
            Ok(r) => r.1,
            Err(e) => return Err(self.failed(e)),
        };
        match res.rc {
            0 => Ok(true),
            32 => Ok(false),
            3 | 51 => Err(Error::Timeout),
            10 => Err(Error::Referral(res.refs)),
            rc => Err(Error::Failure(format!("search: result code {rc} {}", res.text))),
        }
    }

    fn write_result(
        &mut self,
        op: &str,
        dn: &str,
        res: ldap3::result::Result<ldap3::LdapResult>,
    ) -> Result<(), Error> {
        let res = match res {
            Ok(r) => r,
            Err(e) => return Err(self.failed(e)),
        };
        match res.rc {
            0 => Ok(()),
            3 | 51 => Err(Error::Timeout),
            10 => Err(Error::Referral(res.refs)),
            rc => {
                let what = match rc {
                    16 => "no such attribute or value",
                    19 | 21 => "a value is not allowed",
                    20 => "the value is already there",
                    32 => "no such entry",
                    34 => "invalid DN",
                    50 => "insufficient access rights",
                    64 | 65 | 67 => "the schema does not allow it",
                    66 => "the entry has children",
                    68 => "the entry already exists",
                    _ => "refused",
                };
                let text =
                    if res.text.is_empty() { String::new() } else { format!(": {}", res.text) };
                Err(Error::Failure(format!("{op} {dn}: {what} (result code {rc}){text}")))
            }
        }
    }
}

/// The LDAP result code inside a write failure of [`Directory::add`], [`Directory::modify`]
/// or [`Directory::delete`], for callers that act on one (68: already exists, 32: no such
/// entry).
pub fn result_code(e: &Error) -> Option<u32> {
    let Error::Failure(text) = e else { return None };
    let start = text.rfind("(result code ")? + "(result code ".len();
    text[start..].split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_escaping() {
        let rows = [
            ("joe", "joe"),
            ("a,b", "a\\2cb"),
            ("a+b=c", "a\\2bb\\3dc"),
            ("\"x\"", "\\22x\\22"),
            ("back\\slash", "back\\5cslash"),
            ("<a>;", "\\3ca\\3e\\3b"),
            ("#lead", "\\23lead"),
            ("in#side", "in#side"),
            (" sp ", "\\20sp\\20"),
            ("nul\0", "nul\\00"),
            ("x,ou=evil,dc=example", "x\\2cou\\3devil\\2cdc\\3dexample"),
            ("é", "é"),
        ];
        for (input, want) in rows {
            assert_eq!(escape_dn(input), want, "{input:?}");
        }
    }

    #[test]
    fn result_codes() {
        let e = Error::Failure("add uid=x: the entry already exists (result code 68): x".into());
        assert_eq!(result_code(&e), Some(68));
        assert_eq!(result_code(&Error::Timeout), None);
    }
}
