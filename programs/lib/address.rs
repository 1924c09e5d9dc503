//! address: an envelope address as qmail carries it: bytes, no NUL, at most [`MAX_LEN`] bytes.
//!
//! The sender may be empty (the null sender `<>`); `#@[]` is the double-bounce sender. An
//! address without `@` is completed later (qmail-send adds `envnoathost`). Domains compare
//! case-insensitively; local parts are kept as given.

use std::fmt;

/// The longest address qmail-queue accepts (a NUL must come within 1003 bytes of `F`/`T`).
pub const MAX_LEN: usize = 1002;

#[derive(Debug, PartialEq, Eq)]
pub enum AddressError {
    TooLong,
    Nul,
}

/// An address that cannot be invalid: no NUL, at most [`MAX_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(Vec<u8>);

impl Address {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, AddressError> {
        let bytes = bytes.into();
        if bytes.len() > MAX_LEN {
            return Err(AddressError::TooLong);
        }
        if bytes.contains(&0) {
            return Err(AddressError::Nul);
        }
        Ok(Address(bytes))
    }

    /// The null sender.
    pub fn null() -> Self {
        Address(Vec::new())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_null(&self) -> bool {
        self.0.is_empty()
    }

    /// The double-bounce sender `#@[]`.
    pub fn is_double_bounce(&self) -> bool {
        self.0 == b"#@[]"
    }

    /// Local part and domain, as [`split`] gives them.
    pub fn split(&self) -> (&[u8], Option<&[u8]>) {
        split(&self.0)
    }

    /// The domain, lowercased (ASCII), if there is an `@`.
    pub fn domain_lower(&self) -> Option<Vec<u8>> {
        self.split().1.map(|d| d.to_ascii_lowercase())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{self}>")
    }
}

/// Local part and domain of `addr`, split at the last `@`; `None` for the domain when there is
/// no `@` (all of `addr` is then the local part). The `@` itself is at `local.len()`.
pub fn split(addr: &[u8]) -> (&[u8], Option<&[u8]>) {
    match addr.iter().rposition(|&b| b == b'@') {
        Some(i) => (&addr[..i], Some(&addr[i + 1..])),
        None => (addr, None),
    }
}

/// True when a local part must be quoted (RFC 821/5321): empty, a byte outside the atom
/// characters, a leading or trailing dot, or two dots in a row.
pub fn needs_quoting(local: &[u8]) -> bool {
    let atom = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-./=?^_`{|}~".contains(&b);
    local.is_empty()
        || !local.iter().all(|&b| atom(b))
        || local.starts_with(b".")
        || local.ends_with(b".")
        || local.windows(2).any(|w| w == b"..")
}

/// A local part as it is written in an address: quoted (with `\` before CR, LF, `"` and `\`)
/// when [`needs_quoting`] says so.
pub fn quote_local(local: &[u8]) -> Vec<u8> {
    if !needs_quoting(local) {
        return local.to_vec();
    }
    let mut out = Vec::with_capacity(local.len() * 2 + 2);
    out.push(b'"');
    for &b in local {
        if matches!(b, b'\r' | b'\n' | b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// An address with its local part (up to the last `@`) quoted when needed and the domain as
/// it is; the empty address stays empty.
pub fn quote_address(addr: &[u8]) -> Vec<u8> {
    if addr.is_empty() {
        return Vec::new();
    }
    match split(addr) {
        (local, Some(_)) => [&quote_local(local)[..], &addr[local.len()..]].concat(),
        (local, None) => quote_local(local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction() {
        assert!(Address::new("a@b").is_ok());
        assert!(Address::new("").unwrap().is_null());
        assert!(Address::new("#@[]").unwrap().is_double_bounce());
        assert_eq!(Address::new(vec![b'a'; MAX_LEN]).map(|a| a.as_bytes().len()), Ok(MAX_LEN));
        assert_eq!(Address::new(vec![b'a'; MAX_LEN + 1]), Err(AddressError::TooLong));
        assert_eq!(Address::new(b"a\0b".to_vec()), Err(AddressError::Nul));
    }

    #[test]
    fn quoting() {
        let rows: &[(&[u8], &[u8])] = &[
            (b"joe@example.org", b"joe@example.org"),
            (b"MAILER-DAEMON", b"MAILER-DAEMON"),
            (b"a b@c", b"\"a b\"@c"),
            (b"a\"b@c", b"\"a\\\"b\"@c"),
            (b".a@c", b"\".a\"@c"),
            (b"a.@c", b"\"a.\"@c"),
            (b"a..b@c", b"\"a..b\"@c"),
            (b"a\r\nb@c", b"\"a\\\r\\\nb\"@c"),
            (b"@c", b"\"\"@c"),
            (b"x@y@c", b"\"x@y\"@c"),
            (b"\xff@c", b"\"\xff\"@c"),
            (b"", b""),
        ];
        for (addr, want) in rows {
            assert_eq!(quote_address(addr), *want, "{:?}", String::from_utf8_lossy(addr));
        }
        assert_eq!(quote_local(b""), b"\"\"");
    }

    #[test]
    fn split_at_last_at() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("user@example.com", "user", Some("example.com")),
            ("a@b@c", "a@b", Some("c")),
            ("noat", "noat", None),
            ("@x", "", Some("x")),
            ("x@", "x", Some("")),
        ];
        for &(addr, local, domain) in rows {
            let a = Address::new(addr).unwrap();
            assert_eq!(a.split(), (local.as_bytes(), domain.map(str::as_bytes)), "{addr}");
            assert_eq!(a.split(), split(addr.as_bytes()));
        }
        let a = Address::new("Joe@Example.COM").unwrap();
        assert_eq!(a.domain_lower().as_deref(), Some(&b"example.com"[..]));
    }
}
