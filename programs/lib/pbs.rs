//! pbs: POP-before-SMTP's datagrams and its `control/pbsenv`, both ends (doc/pbsdbd.8,
//! doc/pbsadd.8, doc/pbscheck.8, doc/INTERNALS.md "POP-before-SMTP").
//!
//! pbsadd tells pbsdbd that an address has logged in (`A`), pbscheck asks whether it has
//! (`Q`), pbsdbd answers (`R`). One UDP datagram each, at most [`PACKET_MAX`] bytes:
//!
//! ```text
//! A (add):      'A' | alen=4 | addr[4] | slen | secret[slen] | env-block
//! Q (query):    'Q' | alen=4 | addr[4] | 0x00
//! R (response): 'R' | alen=4 | addr[4] | 'R' (may relay) or 'N' | env-block (only with 'R')
//! env-block:    count | count x ( len | NAME '=' VALUE )   len = |NAME|+1+|VALUE| <= 255
//! ```
//!
//! Sans-I/O: [`Packet::decode`] takes one datagram and gives a packet or says why not;
//! [`Packet::encode`] gives the bytes. The decoder is strict and bounded: a datagram over
//! [`PACKET_MAX`], an address length other than 4 (16 is reserved for IPv6 and unused), a
//! secret or an env-block entry that runs past the end ("overrun"), and bytes after the
//! last entry ("trailing garbage") are errors, and so is a `Q` of more than its 7 bytes or an
//! `N` answer with anything after the flag. A decoded packet encodes back to the same bytes.
//!
//! The shared secret is a [`Secret`] (at most 255 bytes, never shown by `Debug`), compared
//! in constant time ([`Add::authorized`]). `control/pbsenv` is [`EnvRules`]: which variables
//! pbsadd sends, and how pbscheck exports them (`NAME`, `NAME=NEW`, `NAME=NEW=PREFIX`).

use crate::control::{Control, ControlError};
use std::fmt;
use std::net::Ipv4Addr;
use subtle::ConstantTimeEq;

/// The UDP port when `control/pbsport` is absent.
pub const PORT: u16 = 2821;
/// The highest `control/pbsport` accepted (upstream's limit).
pub const PORT_MAX: u64 = 65000;
/// The largest datagram, sent or accepted.
pub const PACKET_MAX: usize = 1024;
/// The longest shared secret (its length travels in one byte).
pub const SECRET_MAX: usize = 255;
/// The most env-block entries and `control/pbsenv` lines (the count travels in one byte).
pub const ENV_MAX: usize = 255;
/// The longest env-block entry `NAME=VALUE` (its length travels in one byte).
pub const ENTRY_MAX: usize = 255;

/// The length byte of an IPv4 address.
const ALEN: u8 = 4;

/// Why a datagram is not a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// More than [`PACKET_MAX`] bytes.
    TooBig,
    /// Too short for its header, an address length other than 4, an unknown type, a `Q`
    /// of other than 7 bytes, an answer flag other than `R` and `N`.
    Bad,
    /// The secret or an env-block entry runs past the end of the datagram.
    Overrun,
    /// Bytes after the last env-block entry (or after an `N` answer's flag).
    TrailingGarbage,
    /// An env-block entry without `=`, with an empty name, or with a NUL byte.
    BadEntry,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketError::TooBig => "packet too big",
            PacketError::Bad => "bad packet",
            PacketError::Overrun => "environment would exceed packet size",
            PacketError::TrailingGarbage => "trailing garbage at end of packet",
            PacketError::BadEntry => "bad environment entry",
        })
    }
}

impl std::error::Error for PacketError {}

/// One datagram of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Add(Add),
    Query(Ipv4Addr),
    /// The answer for an address: `Some` with its env-block may relay, `None` may not.
    Response(Ipv4Addr, Option<EnvBlock>),
}

/// An `A` packet: `addr` has logged in; `env` is what pbscheck is to export for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Add {
    pub addr: Ipv4Addr,
    pub secret: Secret,
    pub env: EnvBlock,
}

impl Add {
    /// Whether the packet carries `secret`, compared in constant time.
    pub fn authorized(&self, secret: &Secret) -> bool {
        self.secret.matches(secret)
    }
}

impl fmt::Debug for Add {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Add").field("addr", &self.addr).field("env", &self.env).finish()
    }
}

impl Packet {
    /// One datagram, all of it.
    pub fn decode(buf: &[u8]) -> Result<Packet, PacketError> {
        if buf.len() > PACKET_MAX {
            return Err(PacketError::TooBig);
        }
        // upstream's first test: alen + 2 >= length is a bad packet
        let (&kind, rest) = buf.split_first().ok_or(PacketError::Bad)?;
        let (&alen, rest) = rest.split_first().ok_or(PacketError::Bad)?;
        if alen != ALEN || rest.len() <= usize::from(alen) {
            return Err(PacketError::Bad);
        }
        let (addr, rest) = rest.split_at(4);
        let addr = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
        match kind {
            b'A' => {
                let (&slen, rest) = rest.split_first().ok_or(PacketError::Bad)?;
                if rest.len() < usize::from(slen) {
                    return Err(PacketError::Overrun);
                }
                let (secret, rest) = rest.split_at(usize::from(slen));
                let env = EnvBlock::decode(rest)?;
                Ok(Packet::Add(Add { addr, secret: Secret(secret.to_vec()), env }))
            }
            b'Q' => match rest {
                [0] => Ok(Packet::Query(addr)),
                _ => Err(PacketError::Bad),
            },
            b'R' => match rest.split_first() {
                Some((b'R', env)) => Ok(Packet::Response(addr, Some(EnvBlock::decode(env)?))),
                Some((b'N', [])) => Ok(Packet::Response(addr, None)),
                Some((b'N', _)) => Err(PacketError::TrailingGarbage),
                _ => Err(PacketError::Bad),
            },
            _ => Err(PacketError::Bad),
        }
    }

    /// The datagram; [`PacketError::TooBig`] when it would exceed [`PACKET_MAX`].
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::with_capacity(64);
        match self {
            Packet::Add(add) => {
                header(&mut out, b'A', add.addr);
                // a Secret holds at most SECRET_MAX (255) bytes
                out.push(add.secret.0.len() as u8);
                out.extend_from_slice(&add.secret.0);
                add.env.encode_into(&mut out);
            }
            Packet::Query(addr) => {
                header(&mut out, b'Q', *addr);
                out.push(0);
            }
            Packet::Response(addr, env) => {
                header(&mut out, b'R', *addr);
                match env {
                    Some(env) => {
                        out.push(b'R');
                        env.encode_into(&mut out);
                    }
                    None => out.push(b'N'),
                }
            }
        }
        if out.len() > PACKET_MAX {
            return Err(PacketError::TooBig);
        }
        Ok(out)
    }
}

fn header(out: &mut Vec<u8>, kind: u8, addr: Ipv4Addr) {
    out.push(kind);
    out.push(ALEN);
    out.extend_from_slice(&addr.octets());
}

/// The shared secret of `control/pbssecret`: at most [`SECRET_MAX`] bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// `None` when longer than [`SECRET_MAX`].
    pub fn new(bytes: &[u8]) -> Option<Secret> {
        (bytes.len() <= SECRET_MAX).then(|| Secret(bytes.to_vec()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Equal length and equal bytes, in time that depends only on the lengths.
    pub fn matches(&self, other: &Secret) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(set, {} bytes)", self.0.len())
    }
}

/// Why an env-block or `control/pbsenv` cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// More than [`ENV_MAX`] entries or lines.
    TooMany,
    /// An entry `NAME=VALUE` longer than [`ENTRY_MAX`]; the name is given.
    TooLong(String),
    /// A pbsenv line with an empty name or an empty new name, or a NUL anywhere.
    BadLine(String),
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::TooMany => write!(f, "more than {ENV_MAX} environment entries"),
            EnvError::TooLong(name) => {
                write!(f, "variable {name} is longer than {ENTRY_MAX} bytes with its name")
            }
            EnvError::BadLine(line) => write!(f, "bad pbsenv line: {line}"),
        }
    }
}

impl std::error::Error for EnvError {}

/// The variables of an entry: at most [`ENV_MAX`] entries `NAME=VALUE` of at most
/// [`ENTRY_MAX`] bytes, each with a non-empty name and no NUL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvBlock {
    entries: Vec<Vec<u8>>,
}

impl EnvBlock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `name=value`.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), EnvError> {
        if !valid_name(name) || value.contains(&0) {
            return Err(EnvError::BadLine(String::from_utf8_lossy(name).into_owned()));
        }
        if name.len() + 1 + value.len() > ENTRY_MAX {
            return Err(EnvError::TooLong(String::from_utf8_lossy(name).into_owned()));
        }
        if self.entries.len() >= ENV_MAX {
            return Err(EnvError::TooMany);
        }
        self.entries.push([name, b"=", value].concat());
        Ok(())
    }

    /// The entries as (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|e| {
            // every entry has an '=' (push and decode check it)
            let eq = e.iter().position(|&b| b == b'=').unwrap_or(e.len());
            (&e[..eq], e.get(eq + 1..).unwrap_or_default())
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The encoded size: the count byte and a length byte per entry.
    pub fn encoded_len(&self) -> usize {
        1 + self.entries.iter().map(|e| 1 + e.len()).sum::<usize>()
    }

    /// The encoding (count, then length and bytes of each entry).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        // at most ENV_MAX entries of at most ENTRY_MAX bytes: both fit a byte
        out.push(self.entries.len() as u8);
        for e in &self.entries {
            out.push(e.len() as u8);
            out.extend_from_slice(e);
        }
    }

    /// An env-block that fills `buf` exactly.
    pub fn decode(buf: &[u8]) -> Result<EnvBlock, PacketError> {
        let (&count, mut rest) = buf.split_first().ok_or(PacketError::Overrun)?;
        let mut entries = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (&len, tail) = rest.split_first().ok_or(PacketError::Overrun)?;
            if tail.len() < usize::from(len) {
                return Err(PacketError::Overrun);
            }
            let (entry, tail) = tail.split_at(usize::from(len));
            let eq = entry.iter().position(|&b| b == b'=').ok_or(PacketError::BadEntry)?;
            if eq == 0 || entry.contains(&0) {
                return Err(PacketError::BadEntry);
            }
            entries.push(entry.to_vec());
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(PacketError::TrailingGarbage);
        }
        Ok(EnvBlock { entries })
    }
}

/// An environment variable name as pbsenv takes it: not empty, no `=`, no NUL.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'=') && !name.contains(&0)
}

/// `control/pbsenv`: one rule per line, at most [`ENV_MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvRules {
    rules: Vec<Rule>,
}

/// `NAME` (exported as is), `NAME=NEW` (exported as NEW) or `NAME=NEW=PREFIX` (exported as
/// NEW with PREFIX before the value; PREFIX is the rest of the line and may hold `=`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    name: Vec<u8>,
    new: Option<Vec<u8>>,
    prefix: Vec<u8>,
}

impl EnvRules {
    /// The lines of `control/pbsenv` (as [`crate::control::Control::list`] gives them).
    pub fn parse<S: AsRef<[u8]>>(lines: &[S]) -> Result<EnvRules, EnvError> {
        if lines.len() > ENV_MAX {
            return Err(EnvError::TooMany);
        }
        let rules = lines
            .iter()
            .map(|line| {
                let line = line.as_ref();
                let bad = || EnvError::BadLine(String::from_utf8_lossy(line).into_owned());
                let mut parts = line.splitn(3, |&b| b == b'=');
                let name = parts.next().unwrap_or_default();
                let new = parts.next();
                let prefix = parts.next().unwrap_or_default();
                if !valid_name(name) || new.is_some_and(|n| !valid_name(n)) || line.contains(&0) {
                    return Err(bad());
                }
                Ok(Rule {
                    name: name.to_vec(),
                    new: new.map(<[u8]>::to_vec),
                    prefix: prefix.to_vec(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(EnvRules { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// pbsadd's env-block: every listed variable with its value from `value` (empty when
    /// unset), in the order of the lines.
    pub fn block(
        &self,
        mut value: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<EnvBlock, EnvError> {
        let mut block = EnvBlock::new();
        for rule in &self.rules {
            block.push(&rule.name, &value(&rule.name).unwrap_or_default())?;
        }
        Ok(block)
    }

    /// pbscheck's exports: each entry of `block` whose name has a line here, under the name
    /// and with the value that line says. Entries without a line are left out: pbscheck
    /// exports nothing it was not told to (doc/DECISIONS.md, 33).
    pub fn rewrite(&self, block: &EnvBlock) -> Vec<(Vec<u8>, Vec<u8>)> {
        block
            .iter()
            .filter_map(|(name, value)| {
                let rule = self.rules.iter().find(|r| r.name == name)?;
                Some(match &rule.new {
                    None => (name.to_vec(), value.to_vec()),
                    Some(new) => (new.clone(), [&rule.prefix[..], value].concat()),
                })
            })
            .collect()
    }
}

/// Why the POP-before-SMTP control files cannot be used: a configuration error.
#[derive(Debug)]
pub enum ConfigError {
    Control(ControlError),
    /// `control/pbsport` over [`PORT_MAX`] (or 0).
    Port(u64),
    /// `control/pbsservers` absent or empty.
    NoServers,
    /// A line of `control/pbsservers`, or `control/pbsip`, that is no dotted IPv4 address.
    Address(String),
    /// `control/pbssecret` longer than [`SECRET_MAX`].
    SecretTooLong,
    Env(EnvError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Control(e) => e.fmt(f),
            ConfigError::Port(p) => write!(f, "control/pbsport: {p} is no port up to {PORT_MAX}"),
            ConfigError::NoServers => f.write_str("control/pbsservers lists no server"),
            ConfigError::Address(a) => write!(f, "{a:?} is no IPv4 address"),
            ConfigError::SecretTooLong => {
                write!(f, "control/pbssecret is longer than {SECRET_MAX} bytes")
            }
            ConfigError::Env(e) => write!(f, "control/pbsenv: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ControlError> for ConfigError {
    fn from(e: ControlError) -> Self {
        ConfigError::Control(e)
    }
}

/// `control/pbsport`, default [`PORT`].
pub fn port(control: &Control) -> Result<u16, ConfigError> {
    let port = control.int_or("pbsport", u64::from(PORT))?;
    match u16::try_from(port) {
        Ok(p) if p > 0 && port <= PORT_MAX => Ok(p),
        _ => Err(ConfigError::Port(port)),
    }
}

/// `control/pbsservers`: one dotted IPv4 address a line, at least one.
pub fn servers(control: &Control) -> Result<Vec<Ipv4Addr>, ConfigError> {
    let lines = control.list("pbsservers")?.unwrap_or_default();
    if lines.is_empty() {
        return Err(ConfigError::NoServers);
    }
    lines.iter().map(|l| ipv4(l.trim())).collect()
}

/// A dotted IPv4 address (four decimal numbers, as `TCPREMOTEIP` has it).
pub fn ipv4(text: &str) -> Result<Ipv4Addr, ConfigError> {
    text.parse().map_err(|_| ConfigError::Address(text.to_string()))
}

/// `control/pbssecret`: its first line as bytes, trailing blanks and CR removed; `None`
/// when absent or empty.
pub fn secret(control: &Control) -> Result<Option<Secret>, ConfigError> {
    let Some(data) = control.raw("pbssecret")? else { return Ok(None) };
    let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let end = line.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(0, |i| i + 1);
    match &line[..end] {
        [] => Ok(None),
        secret => Secret::new(secret).map(Some).ok_or(ConfigError::SecretTooLong),
    }
}

/// `control/pbsenv`: no rules when absent.
pub fn env_rules(control: &Control) -> Result<EnvRules, ConfigError> {
    let lines = control.list("pbsenv")?.unwrap_or_default();
    EnvRules::parse(&lines).map_err(ConfigError::Env)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes()).unwrap()
    }

    fn block(entries: &[(&str, &str)]) -> EnvBlock {
        let mut b = EnvBlock::new();
        for (n, v) in entries {
            b.push(n.as_bytes(), v.as_bytes()).unwrap();
        }
        b
    }

    #[test]
    fn packets_encode_byte_exactly_and_decode_back() {
        let add = Packet::Add(Add {
            addr: IP,
            secret: secret("pw"),
            env: block(&[("AUTHORIZED", ""), ("USER", "kim")]),
        });
        let rows: &[(Packet, &[u8])] = &[
            (add, b"A\x04\xc0\x00\x02\x07\x02pw\x02\x0bAUTHORIZED=\x08USER=kim"),
            (
                Packet::Add(Add { addr: IP, secret: secret(""), env: EnvBlock::new() }),
                b"A\x04\xc0\x00\x02\x07\x00\x00",
            ),
            (Packet::Query(IP), b"Q\x04\xc0\x00\x02\x07\x00"),
            (Packet::Response(IP, None), b"R\x04\xc0\x00\x02\x07N"),
            (Packet::Response(IP, Some(EnvBlock::new())), b"R\x04\xc0\x00\x02\x07R\x00"),
            (
                Packet::Response(IP, Some(block(&[("A", "b=c")]))),
                b"R\x04\xc0\x00\x02\x07R\x01\x05A=b=c",
            ),
        ];
        for (packet, bytes) in rows {
            assert_eq!(packet.encode().unwrap(), *bytes, "{packet:?}");
            assert_eq!(Packet::decode(bytes).as_ref(), Ok(packet), "{bytes:?}");
        }
    }

    #[test]
    fn hostile_datagrams_are_refused() {
        let rows: &[(&[u8], PacketError)] = &[
            (b"", PacketError::Bad),
            (b"Q", PacketError::Bad),
            (b"Q\x04\x01\x02\x03\x04", PacketError::Bad),
            (b"Q\x04\x01\x02\x03\x04\x00\x00", PacketError::Bad),
            (b"Q\x04\x01\x02\x03\x04\x01", PacketError::Bad),
            (b"Q\x10\x01\x02\x03\x04\x00", PacketError::Bad),
            (b"Q\x03\x01\x02\x03\x00", PacketError::Bad),
            (b"X\x04\x01\x02\x03\x04\x00", PacketError::Bad),
            (b"R\x04\x01\x02\x03\x04X", PacketError::Bad),
            (b"R\x04\x01\x02\x03\x04N\x00", PacketError::TrailingGarbage),
            (b"R\x04\x01\x02\x03\x04R", PacketError::Overrun),
            (b"R\x04\x01\x02\x03\x04R\x00\x00", PacketError::TrailingGarbage),
            (b"R\x04\x01\x02\x03\x04R\x01\x05A=b", PacketError::Overrun),
            (b"R\x04\x01\x02\x03\x04R\x02\x03A=b", PacketError::Overrun),
            (b"R\x04\x01\x02\x03\x04R\x01\x03Abc", PacketError::BadEntry),
            (b"R\x04\x01\x02\x03\x04R\x01\x03=bc", PacketError::BadEntry),
            (b"R\x04\x01\x02\x03\x04R\x01\x03A=\x00", PacketError::BadEntry),
            (b"A\x04\x01\x02\x03\x04", PacketError::Bad),
            (b"A\x04\x01\x02\x03\x04\x05pw", PacketError::Overrun),
            (b"A\x04\x01\x02\x03\x04\x02pw", PacketError::Overrun),
            (b"A\x04\x01\x02\x03\x04\x02pw\x00garbage", PacketError::TrailingGarbage),
            (b"A\x04\x01\x02\x03\x04\x02pw\x01\xffA=b", PacketError::Overrun),
            (b"A\x04\x01\x02\x03\x04\x02pw\xff\x03A=b", PacketError::Overrun),
        ];
        for (bytes, want) in rows {
            assert_eq!(Packet::decode(bytes), Err(*want), "{bytes:?}");
        }
        let mut big = b"R\x04\x01\x02\x03\x04N".to_vec();
        big.resize(PACKET_MAX + 1, 0);
        assert_eq!(Packet::decode(&big), Err(PacketError::TooBig));
    }

    /// The largest datagram is accepted; an env-block that would make one larger is not sent.
    #[test]
    fn the_size_limit_is_exact() {
        let mut env = EnvBlock::new();
        // 7 header + 1 count + 4 x (1 + 251) = 1016; then 1 + "W=12345" = 1024
        for i in 0..4 {
            env.push(format!("V{i}").as_bytes(), &[b'x'; 248]).unwrap();
        }
        env.push(b"W", b"12345").unwrap();
        assert_eq!(env.encoded_len(), 1 + 4 * 252 + 8);
        let at_max = Packet::Response(IP, Some(env.clone())).encode().unwrap();
        assert_eq!(at_max.len(), PACKET_MAX);
        assert_eq!(Packet::decode(&at_max), Ok(Packet::Response(IP, Some(env.clone()))));
        env.push(b"X", b"").unwrap();
        assert_eq!(Packet::Response(IP, Some(env)).encode(), Err(PacketError::TooBig));
    }

    /// Mutations of valid datagrams (a fixed pseudo-random sequence, so failures repeat):
    /// nothing panics, and whatever decodes encodes back to the same bytes.
    #[test]
    fn mutated_datagrams_decode_strictly_or_not_at_all() {
        let seeds: Vec<Vec<u8>> = vec![
            Packet::Add(Add {
                addr: IP,
                secret: secret("pw"),
                env: block(&[("A", "b"), ("C", "")]),
            })
            .encode()
            .unwrap(),
            Packet::Query(IP).encode().unwrap(),
            Packet::Response(IP, Some(block(&[("USER", "kim")]))).encode().unwrap(),
            Packet::Response(IP, None).encode().unwrap(),
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut decoded = 0;
        for round in 0..200_000 {
            let mut d = seeds[round % seeds.len()].clone();
            for _ in 0..=next() % 3 {
                let at = (next() as usize) % (d.len() + 1);
                match next() % 4 {
                    0 if at < d.len() => d[at] = next() as u8,
                    1 if at < d.len() => drop(d.remove(at)),
                    2 => d.insert(at, next() as u8),
                    _ => d.truncate(at),
                }
            }
            if let Ok(p) = Packet::decode(&d) {
                decoded += 1;
                assert_eq!(p.encode().as_ref(), Ok(&d), "{d:?}");
            }
        }
        assert!(decoded > 1000, "{decoded}");
    }

    #[test]
    fn env_blocks_are_bounded() {
        let mut b = EnvBlock::new();
        assert_eq!(b.push(b"N", &[b'v'; 253]), Ok(()));
        assert_eq!(b.push(b"N", &[b'v'; 254]), Err(EnvError::TooLong("N".into())));
        assert!(matches!(b.push(b"", b"v"), Err(EnvError::BadLine(_))));
        assert!(matches!(b.push(b"A=B", b"v"), Err(EnvError::BadLine(_))));
        assert!(matches!(b.push(b"A", b"v\0"), Err(EnvError::BadLine(_))));
        let mut b = EnvBlock::new();
        for _ in 0..ENV_MAX {
            b.push(b"A", b"").unwrap();
        }
        assert_eq!(b.push(b"A", b""), Err(EnvError::TooMany));
        assert_eq!(EnvBlock::decode(&b.encode()), Ok(b));
    }

    #[test]
    fn secrets_compare_whole() {
        let add = Add { addr: IP, secret: secret("right"), env: EnvBlock::new() };
        assert!(add.authorized(&secret("right")));
        for wrong in ["", "righ", "right ", "Right", "wrong"] {
            assert!(!add.authorized(&secret(wrong)), "{wrong:?}");
        }
        assert!(Secret::new(&[b's'; SECRET_MAX]).is_some());
        assert!(Secret::new(&[b's'; SECRET_MAX + 1]).is_none());
        assert_eq!(format!("{:?}", secret("hidden")), "Secret(set, 6 bytes)");
        assert!(!format!("{add:?}").contains("right"));
    }

    /// `control/pbssecret` as bytes (not made UTF-8), its first line without trailing
    /// blanks; the port's range; the servers as addresses.
    #[test]
    fn control_files() {
        let home = std::env::temp_dir().join(format!("qmail-pbs-{}", std::process::id()));
        let dir = home.join("control");
        std::fs::create_dir_all(&dir).unwrap();
        let control = Control::new(&home);
        let rows: &[(&[u8], Option<&[u8]>)] = &[
            (b"s3cret \xff\t\r\nsecond line\n", Some(b"s3cret \xff")),
            (b" lead", Some(b" lead")),
            (b"", None),
            (b" \r\n", None),
        ];
        for (data, want) in rows {
            std::fs::write(dir.join("pbssecret"), data).unwrap();
            let got = super::secret(&control).unwrap();
            assert_eq!(got, want.map(|w| Secret::new(w).unwrap()), "{data:?}");
        }
        std::fs::write(dir.join("pbssecret"), [b'x'; 256]).unwrap();
        assert!(matches!(super::secret(&control), Err(ConfigError::SecretTooLong)));
        std::fs::remove_file(dir.join("pbssecret")).unwrap();
        assert_eq!(super::secret(&control).unwrap(), None);
        assert_eq!(port(&control).unwrap(), PORT);
        for (text, want) in [("65000", Some(65000)), ("65001", None), ("0", None), ("1", Some(1))] {
            std::fs::write(dir.join("pbsport"), text).unwrap();
            assert_eq!(port(&control).ok(), want, "{text}");
        }
        assert!(matches!(servers(&control), Err(ConfigError::NoServers)));
        std::fs::write(dir.join("pbsservers"), "10.0.0.1\n\n10.0.0.2 \n").unwrap();
        let want = vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        assert_eq!(servers(&control).unwrap(), want);
        std::fs::write(dir.join("pbsservers"), "10.0.0.1\nmx.example\n").unwrap();
        assert!(matches!(servers(&control), Err(ConfigError::Address(a)) if a == "mx.example"));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn pbsenv_lines_send_and_rewrite() {
        let rules =
            EnvRules::parse(&["AUTHORIZED", "USER=AUTHUSER", "HOME=MAILDIR=/var/mail/", "E=N=a=b"])
                .unwrap();
        let vars = |name: &[u8]| match name {
            b"USER" => Some(b"kim".to_vec()),
            b"HOME" => Some(b"kim/Maildir".to_vec()),
            b"E" => Some(b"=v".to_vec()),
            _ => None,
        };
        let sent = rules.block(vars).unwrap();
        assert_eq!(
            sent.iter().collect::<Vec<_>>(),
            vec![
                (&b"AUTHORIZED"[..], &b""[..]),
                (b"USER", b"kim"),
                (b"HOME", b"kim/Maildir"),
                (b"E", b"=v")
            ]
        );
        let mut received = sent.clone();
        received.push(b"LD_PRELOAD", b"/tmp/evil.so").unwrap();
        let exported = rules.rewrite(&received);
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            ("AUTHORIZED", ""),
            ("AUTHUSER", "kim"),
            ("MAILDIR", "/var/mail/kim/Maildir"),
            ("N", "a=b=v"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(exported, want);
    }

    #[test]
    fn bad_pbsenv_is_refused() {
        for bad in ["=X", "A=", "A==P", "A\0B", ""] {
            assert!(matches!(EnvRules::parse(&[bad]), Err(EnvError::BadLine(_))), "{bad:?}");
        }
        let many: Vec<String> = (0..=ENV_MAX).map(|i| format!("V{i}")).collect();
        assert_eq!(EnvRules::parse(&many), Err(EnvError::TooMany));
        assert!(EnvRules::parse(&many[..ENV_MAX]).is_ok());
        let long = EnvRules::parse(&["L"]).unwrap();
        assert_eq!(long.block(|_| Some(vec![b'x'; 254])), Err(EnvError::TooLong("L".into())));
    }
}
