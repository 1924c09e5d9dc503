//! qmail-showctl's block for a PEM certificate file (`smtpcert`, `remotecert`): how many
//! certificates, whether a private key is there, and of the first certificate (the server's
//! own) the subject, the subjectAltName DNS names and addresses, the validity dates, and
//! `EXPIRED` once past (doc/qmail-showctl.8).
//!
//! Never key material: of the key only its presence is said, and no parser's error text is
//! repeated for the PEM sections (one could quote a section's marker); a broken file is one
//! `Oops!` line.

use std::fmt::Write as _;
use x509_parser::extensions::GeneralName;

/// The most subjectAltName entries listed; the rest are counted.
const MAX_NAMES: usize = 20;

/// The block for `control/<name>` holding `data`, at `now` (seconds since the epoch); it ends
/// in a newline.
pub fn block(name: &str, data: &[u8], now: i64) -> String {
    let oops = |why: &str| format!("{name}: Oops! control/{name}: {why}.\n");
    let mut certs = Vec::new();
    let mut key = false;
    for item in rustls_pemfile::read_all(&mut &data[..]) {
        match item {
            Ok(rustls_pemfile::Item::X509Certificate(der)) => certs.push(der),
            Ok(
                rustls_pemfile::Item::Pkcs1Key(_)
                | rustls_pemfile::Item::Pkcs8Key(_)
                | rustls_pemfile::Item::Sec1Key(_),
            ) => key = true,
            Ok(_) => {}
            Err(_) => return oops("a PEM section is broken"),
        }
    }
    let Some(first) = certs.first() else { return oops("no certificate in it") };
    let cert = match x509_parser::parse_x509_certificate(first) {
        Ok((_, cert)) => cert,
        Err(e) => return oops(&format!("the first certificate cannot be parsed ({e})")),
    };
    let count = match certs.len() {
        1 => "1 certificate".to_string(),
        n => format!("{n} certificates (a chain)"),
    };
    let mut out = if key {
        format!("{name}: {count} and a private key.\n")
    } else {
        format!("{name}: Oops! {count} but no private key.\n")
    };
    let _ = writeln!(out, "  subject: {}", show(&cert.subject().to_string()));
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => alt_names(&san.value.general_names),
        Ok(None) => "none".to_string(),
        Err(e) => format!("Oops! unreadable ({e})"),
    };
    let _ = writeln!(out, "  subjectAltName: {names}");
    let validity = cert.validity();
    let (from, until) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    let late = if now < from { " (NOT YET VALID)" } else { "" };
    let _ = writeln!(out, "  not before: {}{late}", date(from));
    let expired = if now > until { " (EXPIRED)" } else { "" };
    let _ = writeln!(out, "  not after: {}{expired}", date(until));
    out
}

/// `DNS:mx.example.org, IP:127.0.0.1`: the DNS names and addresses; other kinds counted.
fn alt_names(names: &[GeneralName<'_>]) -> String {
    let mut shown = Vec::new();
    let mut other = 0;
    for n in names {
        match n {
            GeneralName::DNSName(d) => shown.push(format!("DNS:{}", show(d))),
            GeneralName::IPAddress(ip) => shown.push(format!("IP:{}", address(ip))),
            _ => other += 1,
        }
    }
    let more = shown.len().saturating_sub(MAX_NAMES);
    shown.truncate(MAX_NAMES);
    if more > 0 {
        shown.push(format!("and {more} more"));
    }
    if other > 0 {
        shown.push(format!("{other} of other kinds"));
    }
    if shown.is_empty() {
        return "none".to_string();
    }
    shown.join(", ")
}

/// An address as encoded in the certificate: 4 or 16 bytes.
fn address(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(b).to_string()
        }
        n => format!("(bad, {n} bytes)"),
    }
}

fn date(secs: i64) -> String {
    qmail::date822::Utc::from_unix(secs).rfc822()
}

/// `text` with every control character replaced by `?`.
fn show(text: &str) -> String {
    text.chars().map(|ch| if ch.is_control() { '?' } else { ch }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PEM file with a certificate for `names` (and 127.0.0.1), valid from `from` to `until`
    /// (seconds since the epoch), and its key when `with_key`; also the key's PEM.
    fn pem(names: &[&str], from: i64, until: i64, with_key: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        let at = |s: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64);
        params.not_before = at(from).into();
        params.not_after = at(until).into();
        let cert = params.self_signed(&key).unwrap();
        let key_pem = key.serialize_pem();
        let file = if with_key { format!("{}{key_pem}", cert.pem()) } else { cert.pem() };
        (file, key_pem)
    }

    const JAN_2025: i64 = 1_735_689_600;
    const JAN_2026: i64 = 1_767_225_600;

    #[test]
    fn a_certificate_and_its_key() {
        let (file, key) = pem(&["mx.example.org", "localhost"], JAN_2025, JAN_2026, true);
        let got = block("smtpcert", file.as_bytes(), JAN_2025 + 86400);
        assert_eq!(
            got,
            "smtpcert: 1 certificate and a private key.\n\
             \x20 subject: CN=mx.example.org\n\
             \x20 subjectAltName: DNS:mx.example.org, DNS:localhost, IP:127.0.0.1\n\
             \x20 not before: 1 Jan 2025 00:00:00 -0000\n\
             \x20 not after: 1 Jan 2026 00:00:00 -0000\n"
        );
        let body: String =
            key.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().concat();
        assert!(!got.contains("PRIVATE KEY") && !got.contains(&body[..40]), "{got}");
    }

    #[test]
    fn expired_not_yet_valid_and_keyless() {
        let (file, _) = pem(&["old.example"], JAN_2025, JAN_2026, false);
        let got = block("remotecert", file.as_bytes(), JAN_2026 + 1);
        assert!(got.starts_with("remotecert: Oops! 1 certificate but no private key.\n"), "{got}");
        assert!(got.ends_with("  not after: 1 Jan 2026 00:00:00 -0000 (EXPIRED)\n"), "{got}");
        let got = block("remotecert", file.as_bytes(), JAN_2025 - 1);
        assert!(got.contains("  not before: 1 Jan 2025 00:00:00 -0000 (NOT YET VALID)\n"), "{got}");
        let chain = format!("{file}{file}");
        let got = block("smtpcert", chain.as_bytes(), JAN_2025);
        assert!(got.starts_with("smtpcert: Oops! 2 certificates (a chain) but"), "{got}");
    }

    #[test]
    fn broken_files_are_one_line() {
        let (_, key) = pem(&["x.example"], JAN_2025, JAN_2026, true);
        let broken_key = key.replace("-----END", "-----BEGIN");
        let bad_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let rows: &[(&str, &str)] = &[
            ("", "smtpcert: Oops! control/smtpcert: no certificate in it.\n"),
            ("not a pem file\n", "smtpcert: Oops! control/smtpcert: no certificate in it.\n"),
            (&key, "smtpcert: Oops! control/smtpcert: no certificate in it.\n"),
            (&broken_key, "smtpcert: Oops! control/smtpcert: a PEM section is broken.\n"),
        ];
        for &(input, want) in rows {
            assert_eq!(block("smtpcert", input.as_bytes(), JAN_2025), want, "{input}");
        }
        let got = block("smtpcert", bad_der.as_bytes(), JAN_2025);
        assert!(
            got.starts_with("smtpcert: Oops! control/smtpcert: the first certificate cannot be")
                && got.lines().count() == 1,
            "{got}"
        );
    }
}
