//! route: where qmail-remote sends a message (doc/qmail-remote.8) — the pure part.
//!
//! - [`find_route`]: `control/smtproutes` lines `domain:relay[:port]`, looked up for the host,
//!   then each suffix of it starting at a `.`, then the empty key; the first matching line in
//!   file order wins. An empty relay means "no route, look up MX records" (for exceptions).
//!   The relay may be a name, an IPv4 address `192.0.2.1`, or an address literal
//!   `[192.0.2.1]` / `[2001:db8::1]` / `[IPv6:2001:db8::1]`. A relay of digits and dots that is
//!   not an IPv4 address, and an IPv6 address without brackets (it cannot be told from
//!   `host:port`), are bad routes: a temporary failure, never a DNS name.
//! - [`literal`]: a host `[IP]` (also `[IPv6:...]`) names its address directly.
//! - [`order`]: MX records by preference, lowest first, random among equal preferences.
//! - [`cap`]: MX records at or above the best preference of any of this host's own
//!   addresses are dropped (mail would loop back to us).
//!
//! Security: smtproutes is the administrator's; the host comes from the envelope and is only
//! compared and parsed here, never used to build a path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A route from smtproutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Send to this relay (a name, or an address), on this port when given.
    Relay { relay: Relay, port: Option<u16> },
    /// Look up MX records as if there were no route.
    Mx,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    Name(String),
    Ip(IpAddr),
}

/// A line of smtproutes that cannot be used: a temporary failure until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRoute(pub String);

/// The route for `host` (case-insensitive), if any.
pub fn find_route(routes: &[(String, String)], host: &str) -> Result<Option<Route>, BadRoute> {
    let host = host.to_ascii_lowercase();
    let mut keys = vec![host.as_str()];
    keys.extend(host.match_indices('.').map(|(i, _)| &host[i..]));
    keys.push("");
    for key in keys {
        if let Some((_, value)) = routes.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return parse_relay(value).map(Some);
        }
    }
    Ok(None)
}

/// `relay[:port]`; words after it (qmail-ldap's `user password` for SMTP AUTH) are refused,
/// since authenticating to a relay is not implemented.
fn parse_relay(value: &str) -> Result<Route, BadRoute> {
    let mut words = value.split_ascii_whitespace();
    let first = words.next().unwrap_or("");
    if words.next().is_some() {
        return Err(BadRoute(format!(
            "smtproutes asks for SMTP AUTH to {first}, which qmail-remote does not do"
        )));
    }
    if first.is_empty() {
        return Ok(Route::Mx);
    }
    let bad = || BadRoute(format!("smtproutes has a bad relay: {first}"));
    let (relay, port) = if let Some(rest) = first.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip = literal_ip(inside).ok_or_else(bad)?;
        (Relay::Ip(ip), after)
    } else {
        let (host, after) = first.split_at(first.find(':').unwrap_or(first.len()));
        if after.get(1..).is_some_and(|p| p.contains(':')) {
            // `2001:db8::1:25` is an address, or an address and a port: only brackets tell
            let v6 = |s: &str| s.parse::<Ipv6Addr>().is_ok();
            if v6(first) || first.rsplit_once(':').is_some_and(|(a, _)| v6(a)) {
                return Err(BadRoute(format!(
                    "smtproutes has a bad relay: {first} (write an IPv6 address in brackets, \
                     [2001:db8::1] or [2001:db8::1]:port)"
                )));
            }
            return Err(bad());
        }
        (bare_relay(host).ok_or_else(bad)?, after)
    };
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':').ok_or_else(bad)?;
            let port: u16 = digits.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(bad());
            }
            Some(port)
        }
    };
    Ok(Route::Relay { relay, port })
}

/// A relay without brackets: digits and dots only is an IPv4 address in dotted decimal (as
/// upstream's `dns_ip` reads it before asking the DNS), or nothing; anything else is a name.
/// Leading zeros are refused, since `010` reads as 8 to inet_aton and as 10 to upstream.
fn bare_relay(host: &str) -> Option<Relay> {
    if host.is_empty() {
        None
    } else if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        host.parse::<Ipv4Addr>().ok().map(|ip| Relay::Ip(IpAddr::V4(ip)))
    } else {
        Some(Relay::Name(host.to_ascii_lowercase()))
    }
}

/// The address of a host written `[IP]`; `None` when `host` is not a literal. `Err` when it
/// looks like one but is not an address.
pub fn literal(host: &str) -> Result<Option<IpAddr>, ()> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inside) => literal_ip(inside).map(Some).ok_or(()),
        None => Ok(None),
    }
}

fn literal_ip(inside: &str) -> Option<IpAddr> {
    let inside = match inside.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &inside[5..],
        _ => inside,
    };
    inside.parse().ok()
}

/// Sort MX records by preference, shuffling records of equal preference with `random`
/// (a source of random numbers).
pub fn order(mut mxs: Vec<(u16, String)>, mut random: impl FnMut() -> u64) -> Vec<(u16, String)> {
    // Fisher-Yates, then a stable sort by preference keeps equal ones in shuffled order
    for i in (1..mxs.len()).rev() {
        let j = (random() % (i as u64 + 1)) as usize;
        mxs.swap(i, j);
    }
    mxs.sort_by_key(|(pref, _)| *pref);
    mxs
}

/// A delivery target: an address and the preference of the MX it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pref: u32,
    pub ip: IpAddr,
    /// The server's name (MX, relay or host name), for the TLS policy and the certificate;
    /// `None` for an address literal or a relay given as an address.
    pub name: Option<String>,
}

/// Drop every target whose preference is not below the best preference of a target that is
/// this host (`is_me`). `None` when that leaves nothing although something was there: the
/// best MX is us.
pub fn cap(targets: Vec<Target>, is_me: impl Fn(&Target) -> bool) -> Option<Vec<Target>> {
    let Some(limit) = targets.iter().filter(|t| is_me(t)).map(|t| t.pref).min() else {
        return Some(targets);
    };
    let kept: Vec<Target> = targets.into_iter().filter(|t| t.pref < limit).collect();
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(lines: &[(&str, &str)]) -> Vec<(String, String)> {
        lines.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn relay(name: &str, port: Option<u16>) -> Option<Route> {
        Some(Route::Relay { relay: Relay::Name(name.into()), port })
    }

    #[test]
    fn route_lookup_order() {
        let r = routes(&[
            ("a.example.com", "relay-a:2525"),
            (".example.com", "relay-dot"),
            ("b.example.com", ""),
            ("", "default.example:26"),
        ]);
        assert_eq!(find_route(&r, "A.Example.COM"), Ok(relay("relay-a", Some(2525))));
        assert_eq!(find_route(&r, "x.y.example.com"), Ok(relay("relay-dot", None)));
        assert_eq!(find_route(&r, "b.example.com"), Ok(Some(Route::Mx)));
        assert_eq!(find_route(&r, "example.com"), Ok(relay("default.example", Some(26))));
        assert_eq!(find_route(&r, "other.org"), Ok(relay("default.example", Some(26))));
        assert_eq!(find_route(&routes(&[("x.org", "r")]), "other.org"), Ok(None));
        assert_eq!(find_route(&[], "other.org"), Ok(None));
        // the first matching line wins
        let dup = routes(&[("d.org", "first"), ("d.org", "second")]);
        assert_eq!(find_route(&dup, "d.org"), Ok(relay("first", None)));
    }

    /// Every form of relay, as `find_route` reads it from a line `d.org:<relay>`: `Ok` with
    /// the relay (`N` a name, `I` an address) and port, `Err` with a piece of the message.
    #[test]
    fn relay_forms() {
        enum Want {
            N(&'static str, Option<u16>),
            I(&'static str, Option<u16>),
            Mx,
            Bad(&'static str),
        }
        use Want::*;
        let table = [
            // names
            ("relay.example", N("relay.example", None)),
            ("Relay.Example:2525", N("relay.example", Some(2525))),
            ("localhost", N("localhost", None)),
            ("123.example", N("123.example", None)),
            ("0x7f.1", N("0x7f.1", None)),
            // IPv4 addresses, bare and bracketed
            ("127.0.0.1", I("127.0.0.1", None)),
            ("127.0.0.1:2525", I("127.0.0.1", Some(2525))),
            ("10.0.0.5", I("10.0.0.5", None)),
            ("255.255.255.255:65535", I("255.255.255.255", Some(65535))),
            ("[192.0.2.1]", I("192.0.2.1", None)),
            ("[192.0.2.1]:2525", I("192.0.2.1", Some(2525))),
            // IPv6 addresses: in brackets only
            ("[2001:db8::1]", I("2001:db8::1", None)),
            ("[2001:db8::1]:2525", I("2001:db8::1", Some(2525))),
            ("[IPv6:2001:db8::1]", I("2001:db8::1", None)),
            ("[ipv6:::1]:26", I("::1", Some(26))),
            ("[::ffff:192.0.2.1]", I("::ffff:192.0.2.1", None)),
            // no relay: MX records
            ("", Mx),
            ("  ", Mx),
            // digits and dots that are no IPv4 address: never a name for the DNS
            ("1.2.3", Bad("bad relay: 1.2.3")),
            ("1.2.3:25", Bad("bad relay: 1.2.3:25")),
            ("999.1.1.1", Bad("bad relay: 999.1.1.1")),
            ("1.2.3.4.5", Bad("bad relay")),
            ("1.2.3.4.", Bad("bad relay")),
            ("010.0.0.5", Bad("bad relay")),
            ("12345", Bad("bad relay")),
            ("...", Bad("bad relay")),
            // bare IPv6: cannot be told from host:port
            ("2001:db8::1", Bad("in brackets")),
            ("2001:db8::1:25", Bad("in brackets")),
            ("::1", Bad("in brackets")),
            ("::1:2525", Bad("in brackets")),
            // bad brackets, ports and the rest
            ("[1.2.3]", Bad("bad relay")),
            ("[999.1.1.1]", Bad("bad relay")),
            ("[relay.example]", Bad("bad relay")),
            ("[]", Bad("bad relay")),
            ("[::1", Bad("bad relay")),
            ("[::1]x", Bad("bad relay")),
            ("[::1]:", Bad("bad relay")),
            ("r:0", Bad("bad relay: r:0")),
            ("r:x", Bad("bad relay")),
            ("r:70000", Bad("bad relay")),
            ("r:", Bad("bad relay")),
            (":25", Bad("bad relay")),
            ("r:25:26", Bad("bad relay: r:25:26")),
            ("127.0.0.1:0", Bad("bad relay")),
            ("relay.example user secret", Bad("SMTP AUTH")),
        ];
        for (value, want) in table {
            let got = find_route(&routes(&[("d.org", value)]), "d.org");
            let ip = |s: &str| s.parse::<IpAddr>().unwrap();
            match want {
                N(name, port) => assert_eq!(got, Ok(relay(name, port)), "{value:?}"),
                I(addr, port) => assert_eq!(
                    got,
                    Ok(Some(Route::Relay { relay: Relay::Ip(ip(addr)), port })),
                    "{value:?}"
                ),
                Mx => assert_eq!(got, Ok(Some(Route::Mx)), "{value:?}"),
                Bad(text) => match got {
                    Err(BadRoute(message)) => {
                        assert!(message.contains(text), "{value:?}: {message}")
                    }
                    ok => panic!("{value:?}: {ok:?}, wanted a bad route saying {text:?}"),
                },
            }
        }
        // only an address that could be read two ways gets the hint about brackets
        let hint = |v: &str| find_route(&routes(&[("d.org", v)]), "d.org").unwrap_err().0;
        assert!(!hint("r:25:26").contains("brackets"));
    }

    #[test]
    fn literals() {
        assert_eq!(literal("[192.0.2.1]"), Ok(Some("192.0.2.1".parse().unwrap())));
        assert_eq!(literal("[IPv6:::1]"), Ok(Some("::1".parse().unwrap())));
        assert_eq!(literal("[::1]"), Ok(Some("::1".parse().unwrap())));
        assert_eq!(literal("example.com"), Ok(None));
        assert_eq!(literal("[example.com]"), Err(()));
        assert_eq!(literal("[]"), Err(()));
    }

    #[test]
    fn preferences_sorted_equal_ones_shuffled() {
        let mxs =
            vec![(20, "b".to_string()), (10, "a1".into()), (10, "a2".into()), (30, "c".into())];
        let mut seen = std::collections::HashSet::new();
        let mut n = 0u64;
        for seed in 0..64u64 {
            let got = order(mxs.clone(), || {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(seed | 1);
                n >> 11
            });
            let prefs: Vec<u16> = got.iter().map(|m| m.0).collect();
            assert_eq!(prefs, [10, 10, 20, 30]);
            seen.insert(got[0].1.clone());
        }
        assert_eq!(seen.len(), 2, "both equal-preference records come first sometimes");
    }

    #[test]
    fn our_own_address_caps_the_preference() {
        let t = |pref, ip: &str| Target { pref, ip: ip.parse().unwrap(), name: None };
        let all = vec![t(10, "192.0.2.1"), t(20, "127.0.0.1"), t(30, "192.0.2.3")];
        let me = |x: &Target| x.ip.is_loopback();
        assert_eq!(cap(all.clone(), me), Some(vec![t(10, "192.0.2.1")]));
        assert_eq!(cap(vec![t(10, "127.0.0.1"), t(20, "192.0.2.2")], me), None);
        assert_eq!(cap(all.clone(), |_| false), Some(all));
        assert_eq!(cap(vec![], me), Some(vec![]));
    }
}
