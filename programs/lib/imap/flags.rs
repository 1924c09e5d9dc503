//! imap::flags: a message's system flags (RFC 3501 2.3.2) and the Maildir info letters that
//! store them (`cur/<base>:2,<letters>`).
//!
//! | letter | flag |
//! |---|---|
//! | `D` | `\Draft` |
//! | `F` | `\Flagged` |
//! | `R` | `\Answered` |
//! | `S` | `\Seen` |
//! | `T` | `\Deleted` |
//!
//! `\Recent` is not stored: it belongs to the session that first saw the message in `new/`.
//! Other letters (`P` passed, Dovecot's keyword letters `a`..`z`) are not IMAP flags here but
//! are kept on every rename: [`Info`] holds them, and whatever follows a further `,` in the
//! info part, untouched. Keywords are not supported (PERMANENTFLAGS has no `\*`), so a
//! client never sets a letter this server does not know.

use std::fmt;

/// A set of system flags, `\Recent` included (as a session's view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);
    pub const RECENT: Flags = Flags(32);

    /// The flags a client may store (all but `\Recent`).
    pub const STORABLE: Flags = Flags(31);

    /// Flags and names in the order they are written.
    const NAMES: [(Flags, &'static str); 6] = [
        (Flags::SEEN, "\\Seen"),
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::DRAFT, "\\Draft"),
        (Flags::RECENT, "\\Recent"),
    ];

    /// Maildir letters in ASCII order.
    const LETTERS: [(Flags, u8); 5] = [
        (Flags::DRAFT, b'D'),
        (Flags::FLAGGED, b'F'),
        (Flags::ANSWERED, b'R'),
        (Flags::SEEN, b'S'),
        (Flags::DELETED, b'T'),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub fn minus(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The flag named `name` (any case, with its backslash); `None` for keywords and
    /// unknown names.
    pub fn from_name(name: &[u8]) -> Option<Flags> {
        Flags::NAMES.iter().find(|(_, n)| n.as_bytes().eq_ignore_ascii_case(name)).map(|&(f, _)| f)
    }

    /// The flag of a Maildir info letter.
    pub fn from_letter(letter: u8) -> Option<Flags> {
        Flags::LETTERS.iter().find(|&&(_, l)| l == letter).map(|&(f, _)| f)
    }

    /// `(\Seen \Deleted)`: the parenthesised list as FETCH FLAGS writes it.
    pub fn write(self, out: &mut Vec<u8>) {
        out.push(b'(');
        let mut first = true;
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                if !first {
                    out.push(b' ');
                }
                first = false;
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.push(b')');
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// The info part of a `cur/` file name, read: the flags, the letters that are not IMAP flags,
/// and anything after a further `,`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub flags: Flags,
    /// letters kept as they are (`P`, keyword letters, anything unknown)
    other: String,
    /// `,...` after the letters, kept as it is
    rest: String,
}

impl Info {
    /// The info of a new file: `flags` and nothing else.
    pub fn with_flags(flags: Flags) -> Info {
        Info { flags: flags.minus(Flags::RECENT), ..Info::default() }
    }

    /// The info of `name` (a file name without directory): the part after `:2,`; a name
    /// without one (a `new/` file, or an experimental `:1,` info) has no flags.
    pub fn of(name: &str) -> Info {
        let Some((_, info)) = name.split_once(':') else { return Info::default() };
        let Some(letters) = info.strip_prefix("2,") else { return Info::default() };
        let (letters, rest) = match letters.find(',') {
            Some(i) => letters.split_at(i),
            None => (letters, ""),
        };
        let mut flags = Flags::empty();
        let mut other = String::new();
        for c in letters.chars() {
            match u8::try_from(c).ok().and_then(Flags::from_letter) {
                Some(f) => flags = flags.union(f),
                None => other.push(c),
            }
        }
        Info { flags: flags.minus(Flags::RECENT), other, rest: rest.to_string() }
    }

    /// The file name for `base` with this info: `<base>:2,<letters in ASCII order><rest>`.
    pub fn name(&self, base: &str) -> String {
        let mut letters: Vec<char> = Flags::LETTERS
            .iter()
            .filter(|(f, _)| self.flags.contains(*f))
            .map(|&(_, l)| char::from(l))
            .chain(self.other.chars())
            .collect();
        letters.sort_unstable();
        letters.dedup();
        let letters: String = letters.into_iter().collect();
        format!("{base}:2,{letters}{}", self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_and_keep_the_unknown() {
        let info = Info::of("123.M1P2.host,S=10:2,FPSa,extra");
        assert!(info.flags.contains(Flags::FLAGGED));
        assert!(info.flags.contains(Flags::SEEN));
        assert!(!info.flags.contains(Flags::DELETED));
        assert_eq!(info.name("123.M1P2.host,S=10"), "123.M1P2.host,S=10:2,FPSa,extra");
        let mut info = info;
        info.flags = info.flags.union(Flags::DELETED).union(Flags::DRAFT).minus(Flags::SEEN);
        assert_eq!(info.name("b"), "b:2,DFPTa,extra");
        assert_eq!(Info::of("b").name("b"), "b:2,");
        assert_eq!(Info::of("b:1,xyz").flags, Flags::empty());
        assert_eq!(Info::of("b:2,ü").name("b"), "b:2,ü");
    }

    #[test]
    fn names() {
        assert_eq!(Flags::from_name(b"\\SEEN"), Some(Flags::SEEN));
        assert_eq!(Flags::from_name(b"\\recent"), Some(Flags::RECENT));
        assert_eq!(Flags::from_name(b"$Forwarded"), None);
        assert_eq!(Flags::from_name(b"Seen"), None);
        let f = Flags::SEEN.union(Flags::DELETED).union(Flags::RECENT);
        assert_eq!(f.to_string(), "(\\Seen \\Deleted \\Recent)");
        assert_eq!(Flags::empty().to_string(), "()");
        assert!(!Flags::STORABLE.contains(Flags::RECENT));
    }
}
