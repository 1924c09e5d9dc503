//! tls: TLS for the servers, on rustls (its `ring` provider): the server configuration from
//! one PEM file holding the certificate chain and the private key (qmail-smtpd's
//! `control/smtpcert`, or `SSLCERT`), and the protocol words for the Received line.
//!
//! The file is read when it is needed (a STARTTLS), so a replaced certificate needs no
//! restart. Nothing here logs key material: an error names the file and what is wrong.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Why a certificate file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A server configuration from `pem`: the certificates (the server's first, then its chain)
/// and one private key, in any order in the file.
pub fn server_config(pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let shown = pem.display();
    let (certs, key) = cert_and_key(pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("{shown}: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(format!("{shown}: certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_errors_that_name_them() {
        let dir = std::env::temp_dir().join(format!("qmail-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = server_config(&dir.join("none.pem")).unwrap_err();
        assert!(
            missing.0.contains("none.pem") && missing.0.contains("unable to read"),
            "{missing}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        assert!(server_config(&empty).unwrap_err().0.contains("no certificate"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
