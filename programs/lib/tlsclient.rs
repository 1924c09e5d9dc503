//! tlsclient: TLS for qmail-remote's STARTTLS, on rustls (its `ring` provider): a client
//! configuration that either checks the server's certificate (chain to a trusted CA and the
//! server's name; doc/qmail-remote.8, "TLS") or takes any certificate (opportunistic TLS,
//! where the only other choice is plaintext), with an optional client certificate
//! (`control/remotecert`).
//!
//! The trusted CAs of a verified destination are either a PEM file named in
//! `control/tlsdestinations` or the system's trust store, read with `rustls-native-certs`
//! (Debian's `ca-certificates` in /etc/ssl/certs, so a CA the administrator adds with
//! update-ca-certificates counts, and security updates of the store need no rebuild; a
//! compiled-in list such as webpki-roots would freeze the set at build time).

use crate::tls::TlsError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Which certificates a client takes.
pub enum Trust {
    /// Any certificate (opportunistic TLS): the handshake still checks that the server holds
    /// the key of the certificate it shows, but not who issued it or whom it names.
    Any,
    /// A certificate for the server's name that chains to one of these CAs.
    Roots(RootCertStore),
}

/// The CAs in the PEM file `path`.
pub fn ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display();
    let data = std::fs::read(path).map_err(|e| TlsError(format!("unable to read {shown}: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{shown}: bad certificate: {e}")))?;
    roots(certs, &shown.to_string())
}

/// The system's trusted CAs (rustls-native-certs: SSL_CERT_FILE/SSL_CERT_DIR, else the
/// distribution's store).
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found.errors.first().map_or("none found".to_string(), |e| e.to_string());
        return Err(TlsError(format!("no trusted CA certificates in the system store: {why}")));
    }
    roots(found.certs, "the system trust store")
}

fn roots(certs: Vec<CertificateDer<'static>>, from: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError(format!("{from}: no usable CA certificate")));
    }
    Ok(store)
}

/// A client configuration: the cipher suites of `provider` (`qmail::tls::provider`) and the
/// protocol versions they need, `trust` for the server's certificate, `client` (a PEM file
/// with certificate chain and key, `control/remotecert`) when set.
pub fn client_config(
    provider: Arc<CryptoProvider>,
    trust: Trust,
    client: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let versions = crate::tls::versions(&provider);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError(format!("TLS settings: {e}")))?;
    let builder = match trust {
        Trust::Any => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        }
        Trust::Roots(store) => builder.with_root_certificates(store),
    };
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let (certs, key) = crate::tls::cert_and_key(pem)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                TlsError(format!("{}: certificate and key do not fit: {e}", pem.display()))
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: a DNS name, or an IP address when the
/// server was given as one.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string())
        .map_err(|_| TlsError(format!("{name} is not a name a certificate can carry")))
}

/// Takes any certificate; signatures in the handshake are still checked, so the server must
/// hold the certificate's key.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files() {
        assert!(server_name("mx.example.org").is_ok());
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad name").is_err());
        let dir = std::env::temp_dir().join(format!("qmail-tlsclient-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("ca.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap();
        assert!(ca_file(&junk).is_err());
        assert!(ca_file(&dir.join("none")).unwrap_err().0.contains("unable to read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
