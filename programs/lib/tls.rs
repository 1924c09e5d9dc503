//! tls: TLS on rustls (its `ring` provider): the cipher suites a control file allows
//! (qmail-smtpd's `control/tlsciphers`), the server configuration from one PEM file holding the
//! certificate chain and the private key (qmail-smtpd's `control/smtpcert`, or `SSLCERT`), and
//! the protocol words for the Received line; and the server side driven over file
//! descriptors by a deadline ([`handshake`], [`pull`], [`push`]), for qmail-popup.
//!
//! The files are read when they are needed (a STARTTLS), so a replaced certificate needs no
//! restart. Nothing here logs key material: an error names the file and what is wrong.
//!
//! A cipher list names rustls cipher suites, not OpenSSL cipher strings (doc/DECISIONS.md, 24;
//! doc/qmail-control.5, tlsciphers): words separated by colons, commas or white space, in the
//! order of preference; `compat`, `default`, nothing or no file at all mean rustls' defaults.
//! The protocol versions follow the suites: a list of TLS 1.2 suites only turns TLS 1.3 off.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Why a certificate file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The longest name of an unknown suite an error message repeats.
const SHOWN_NAME: usize = 64;

/// The crypto provider for a cipher list: `ciphers` is the content of the control file `file`
/// (`None`: there is none). An unknown word is an error naming the file and the word.
pub fn provider(ciphers: Option<&str>, file: &str) -> Result<Arc<CryptoProvider>, TlsError> {
    let default = rustls::crypto::ring::default_provider();
    let words: Vec<&str> = ciphers
        .unwrap_or("")
        .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let keyword = |w: &str| w.eq_ignore_ascii_case("compat") || w.eq_ignore_ascii_case("default");
    match words.as_slice() {
        [] => return Ok(Arc::new(default)),
        [word] if keyword(word) => return Ok(Arc::new(default)),
        _ => {}
    }
    let mut suites: Vec<SupportedCipherSuite> = Vec::new();
    for word in words {
        if keyword(word) {
            return Err(TlsError(format!("{file}: {word} stands alone, not in a list")));
        }
        let suite = suite(word).ok_or_else(|| {
            TlsError(format!(
                "{file}: unknown cipher suite {} (rustls names, such as TLS13_AES_256_GCM_SHA384)",
                shown(word)
            ))
        })?;
        if !suites.contains(&suite) {
            suites.push(suite);
        }
    }
    Ok(Arc::new(CryptoProvider { cipher_suites: suites, ..default }))
}

/// The protocol versions `provider` has cipher suites for, newest first.
pub fn versions(provider: &CryptoProvider) -> Vec<&'static SupportedProtocolVersion> {
    [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .filter(|v| provider.cipher_suites.iter().any(|s| s.version() == *v))
        .collect()
}

/// The suite of the ring provider called `name`: its rustls name, or for TLS 1.3 its IANA
/// name (`TLS_AES_256_GCM_SHA384`, as OpenSSL calls it too), in any case.
fn suite(name: &str) -> Option<SupportedCipherSuite> {
    rustls::crypto::ring::ALL_CIPHER_SUITES.iter().copied().find(|s| {
        let rustls_name = s.suite().as_str().unwrap_or("");
        let iana = rustls_name.strip_prefix("TLS13_").map(|rest| format!("TLS_{rest}"));
        rustls_name.eq_ignore_ascii_case(name)
            || iana.is_some_and(|iana| iana.eq_ignore_ascii_case(name))
    })
}

/// A word from a control file as an error message may repeat it: bounded, no control
/// characters.
fn shown(word: &str) -> String {
    let mut out: String =
        word.chars().take(SHOWN_NAME).map(|c| if c.is_control() { '?' } else { c }).collect();
    if word.chars().nth(SHOWN_NAME).is_some() {
        out.push_str("...");
    }
    out
}

/// A server configuration from `pem` (the certificates, the server's first, then its chain,
/// and one private key, in any order in the file) with the cipher suites of `provider` and
/// the protocol versions they need. A list of TLS 1.2 suites none of which can be used with
/// the key (ECDSA suites and an RSA key, say) is an error too: no handshake could succeed.
pub fn server_config(
    pem: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let shown = pem.display();
    let (certs, key) = cert_and_key(pem)?;
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError(format!("{shown}: bad private key: {e}")))?;
    let algorithm = signing.algorithm();
    if !provider.cipher_suites.iter().any(|s| s.usable_for_signature_algorithm(algorithm)) {
        return Err(TlsError(format!(
            "{shown}: none of the allowed cipher suites fits its {algorithm:?} key"
        )));
    }
    let versions = versions(&provider);
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError(format!("{shown}: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("{shown}: certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}

/// The server configuration of an installation: the certificate file `cert` with the cipher
/// suites of `home`'s `control/tlsciphers`, both read now (at each STARTTLS, or when an
/// implicit-TLS session starts), for qmail-smtpd, qmail-popup and imapd.
pub fn installation_config(home: &Path, cert: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let ciphers = crate::control::Control::new(home)
        .raw("tlsciphers")
        .map_err(|e| TlsError(e.to_string()))?;
    let ciphers = ciphers.map(|data| String::from_utf8_lossy(&data).into_owned());
    server_config(cert, provider(ciphers.as_deref(), "control/tlsciphers")?)
}

/// The certificates (the first is the holder's, then its chain) and the one private key of
/// the PEM file `pem`, in any order in the file.
pub fn cert_and_key(
    pem: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let shown = pem.display();
    let data = std::fs::read(pem).map_err(|e| TlsError(format!("unable to read {shown}: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{shown}: bad certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{shown}: no certificate")));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| TlsError(format!("{shown}: bad private key: {e}")))?
        .ok_or_else(|| TlsError(format!("{shown}: no private key")))?;
    Ok((certs, key))
}

/// `TLSv1.3 cipher TLS13_AES_256_GCM_SHA384` for an established connection: the protocol
/// version and cipher suite names as rustls has them.
pub fn describe(conn: &rustls::CommonState) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    match conn.negotiated_cipher_suite() {
        Some(s) => format!("{version} cipher {:?}", s.suite()),
        None => version,
    }
}

/// Read TLS records from `input` (one read, waiting at most until `deadline`) and process
/// them. End of input is `UnexpectedEof`; a TLS error sends the alert rustls prepared to
/// `output` (best effort) and is `InvalidData`.
pub fn pull(
    conn: &mut rustls::ServerConnection,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    deadline: Instant,
) -> io::Result<()> {
    let mut raw = [0u8; 16 * 1024];
    let n = crate::timeoutio::read_by(input, &mut raw, deadline)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut fed = &raw[..n];
    while !fed.is_empty() {
        conn.read_tls(&mut fed)?;
        if let Err(e) = conn.process_new_packets() {
            let _ = push(conn, output, deadline);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    Ok(())
}

/// Write every TLS record `conn` has for the peer to `output`, by `deadline`.
pub fn push(
    conn: &mut rustls::ServerConnection,
    output: BorrowedFd<'_>,
    deadline: Instant,
) -> io::Result<()> {
    while conn.wants_write() {
        let mut records = Vec::new();
        conn.write_tls(&mut records)?;
        let mut done = 0;
        while done < records.len() {
            match crate::timeoutio::write_by(output, &records[done..], deadline)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => done += n,
            }
        }
    }
    Ok(())
}

/// Run the server side of the handshake over `input` and `output` to its end, by
/// `deadline`.
pub fn handshake(
    conn: &mut rustls::ServerConnection,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    deadline: Instant,
) -> io::Result<()> {
    while conn.is_handshaking() {
        if conn.wants_write() {
            push(conn, output, deadline)?;
        } else {
            pull(conn, input, output, deadline)?;
        }
    }
    push(conn, output, deadline)
}

/// Plaintext held for the relay's way to the sub-program, at most.
const RELAY_BUF: usize = 64 * 1024;

/// After a TLS hand-off (qmail-popup, and imapd's login chain): carry bytes between the TLS
/// session `tls` on the client's descriptors (`input` read, `output` written) and `child`
/// (a sub-program's end of a socket pair, its fds 0 and 1), `pending` (plaintext already
/// decrypted) first, until the sub-program closes its end (`Ok`), the client goes or
/// nothing moves for `timeout` (`TimedOut`), or a TLS error. Both ways are bounded: the
/// client is read only while fewer than 64 KiB wait for the sub-program, and the sub-program
/// only while no TLS records wait for the client. An end of input from the client is passed
/// on as a shutdown of the pair's writing side.
pub fn relay(
    tls: &mut rustls::ServerConnection,
    input: &std::fs::File,
    output: &std::fs::File,
    mut child: std::os::unix::net::UnixStream,
    pending: Vec<u8>,
    timeout: std::time::Duration,
) -> io::Result<()> {
    use nix::poll::{PollFd, PollFlags};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let mut to_child = pending;
    crate::timeoutio::set_nonblocking(input);
    crate::timeoutio::set_nonblocking(output);
    crate::timeoutio::set_nonblocking(&child);
    let mut buf = vec![0u8; 16 * 1024];
    let (mut client_done, mut net_eof, mut child_shut) = (false, false, false);
    loop {
        // plaintext from the client, while there is room for it
        while to_child.len() < RELAY_BUF && !client_done {
            match tls.reader().read(&mut buf) {
                Ok(0) => client_done = true,
                Ok(n) => to_child.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => client_done = true,
            }
        }
        if !to_child.is_empty() {
            match child.write(&to_child) {
                Ok(n) => drop(to_child.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(()),
            }
        }
        if client_done && to_child.is_empty() && !child_shut {
            let _ = child.shutdown(std::net::Shutdown::Write);
            child_shut = true;
        }
        if !tls.wants_write() {
            match child.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => tls.writer().write_all(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(()),
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut &*output) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let none = PollFlags::empty();
        let net_in = if !net_eof && to_child.len() < RELAY_BUF { PollFlags::POLLIN } else { none };
        let net_out = if tls.wants_write() { PollFlags::POLLOUT } else { none };
        let child_in = if tls.wants_write() { none } else { PollFlags::POLLIN };
        let child_out = if to_child.is_empty() { none } else { PollFlags::POLLOUT };
        let mut fds = [
            PollFd::new(input.as_fd(), net_in),
            PollFd::new(output.as_fd(), net_out),
            PollFd::new(child.as_fd(), child_in | child_out),
        ];
        match nix::poll::poll(&mut fds, crate::timeoutio::poll_timeout(timeout)) {
            Ok(0) => return Err(io::ErrorKind::TimedOut.into()),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready = fds[0].revents().unwrap_or(none);
        if !net_in.is_empty() && !ready.is_empty() {
            match tls.read_tls(&mut &*input) {
                Ok(0) => net_eof = true,
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = tls.write_tls(&mut &*output);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => net_eof = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ProtocolVersion;

    const FILE: &str = "control/tlsciphers";

    struct Tmp(std::path::PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("qmail-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    /// A self-signed ECDSA P-256 certificate for `localhost` and its key in one PEM file;
    /// also the certificate, for a client to trust.
    fn selfsigned(dir: &Path) -> (std::path::PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = dir.join("cert.pem");
        std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        (pem, cert.der().clone())
    }

    fn names(ciphers: Option<&str>) -> Result<Vec<String>, TlsError> {
        let p = provider(ciphers, FILE)?;
        Ok(p.cipher_suites.iter().map(|s| s.suite().as_str().unwrap().to_string()).collect())
    }

    fn all() -> Vec<String> {
        rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite().as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn cipher_lists() {
        let rows: &[(Option<&str>, &[&str])] = &[
            (Some("TLS13_AES_256_GCM_SHA384\n"), &["TLS13_AES_256_GCM_SHA384"]),
            (
                Some(
                    ":,: tls13_aes_128_gcm_sha256,\t\r\nTLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384::,",
                ),
                &["TLS13_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
            ),
            // the IANA (and OpenSSL) names of the TLS 1.3 suites; duplicates count once
            (
                Some("TLS_CHACHA20_POLY1305_SHA256 TLS13_CHACHA20_POLY1305_SHA256"),
                &["TLS13_CHACHA20_POLY1305_SHA256"],
            ),
        ];
        for &(input, want) in rows {
            assert_eq!(names(input).unwrap(), want, "{input:?}");
        }
        for default in [None, Some(""), Some(" \n\t:,"), Some("compat\n"), Some(" DEFAULT ")] {
            assert_eq!(names(default).unwrap(), all(), "{default:?}");
        }
    }

    #[test]
    fn hostile_cipher_lists_are_errors_naming_the_file_and_the_word() {
        let long = "A".repeat(1 << 20);
        let rows: &[(&str, &str)] = &[
            ("HIGH:!aNULL:!MD5", "unknown cipher suite HIGH "),
            ("TLS13_AES_256_GCM_SHA384 ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
            ("nonesuch, neither", "unknown cipher suite nonesuch "),
            ("TLS\u{1b}[31m", "unknown cipher suite TLS?[31m "),
            ("compat:TLS13_AES_256_GCM_SHA384", "compat stands alone"),
            (&long, "unknown cipher suite AAAA"),
        ];
        for &(input, want) in rows {
            let e = provider(Some(input), FILE).unwrap_err().0;
            assert!(e.starts_with("control/tlsciphers: ") && e.contains(want), "{e}");
            assert!(e.len() < 200, "bounded: {} bytes", e.len());
        }
    }

    #[test]
    fn protocol_versions_follow_the_suites() {
        let v = |list: Option<&str>| -> Vec<ProtocolVersion> {
            versions(&provider(list, FILE).unwrap()).iter().map(|v| v.version).collect()
        };
        use ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(v(None), [TLSv1_3, TLSv1_2]);
        assert_eq!(v(Some("TLS13_AES_128_GCM_SHA256")), [TLSv1_3]);
        assert_eq!(v(Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")), [TLSv1_2]);
    }

    /// A handshake in memory between a default rustls client and a server limited to
    /// `ciphers`; the version and suite agreed.
    fn handshake(ciphers: &str) -> Result<(ProtocolVersion, String), TlsError> {
        let dir = tmp("handshake");
        let (pem, der) = selfsigned(&dir.0);
        let server = server_config(&pem, provider(Some(ciphers), FILE)?)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut wire.as_slice()).unwrap();
            s.process_new_packets().map_err(|e| TlsError(format!("server: {e}")))?;
            let mut wire = Vec::new();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut wire.as_slice()).unwrap();
            c.process_new_packets().map_err(|e| TlsError(format!("client: {e}")))?;
        }
        let suite = s.negotiated_cipher_suite().unwrap().suite().as_str().unwrap().to_string();
        Ok((s.protocol_version().unwrap(), suite))
    }

    #[test]
    fn one_version_only_still_shakes_hands() {
        assert_eq!(
            handshake("TLS13_CHACHA20_POLY1305_SHA256").unwrap(),
            (ProtocolVersion::TLSv1_3, "TLS13_CHACHA20_POLY1305_SHA256".to_string())
        );
        assert_eq!(
            handshake("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256").unwrap(),
            (ProtocolVersion::TLSv1_2, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".to_string())
        );
    }

    #[test]
    fn suites_that_do_not_fit_the_key_are_an_error() {
        let dir = tmp("keyfit");
        let (pem, _) = selfsigned(&dir.0);
        let rsa_only =
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384";
        let e = server_config(&pem, provider(Some(rsa_only), FILE).unwrap()).unwrap_err();
        assert!(e.0.contains("cert.pem") && e.0.contains("fits its ECDSA key"), "{e}");
        // with a TLS 1.3 suite beside them, TLS 1.3 carries the ECDSA key
        let mixed = format!("{rsa_only} TLS13_AES_128_GCM_SHA256");
        assert!(server_config(&pem, provider(Some(&mixed), FILE).unwrap()).is_ok());
    }

    #[test]
    fn unusable_files_are_errors_that_name_them() {
        let dir = tmp("files");
        let default = || provider(None, FILE).unwrap();
        let missing = server_config(&dir.0.join("none.pem"), default()).unwrap_err();
        assert!(
            missing.0.contains("none.pem") && missing.0.contains("unable to read"),
            "{missing}"
        );
        let empty = dir.0.join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        assert!(server_config(&empty, default()).unwrap_err().0.contains("no certificate"));
    }
}
