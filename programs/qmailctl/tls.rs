//! qmailctl tls-selfsigned: a self-signed certificate for qmail-smtpd's STARTTLS, for a demo or
//! a test: `control/smtpcert` with the certificate (for `me`, `localhost` and the domains of
//! `locals`) and its ECDSA P-256 key in one PEM file, made with rcgen (no openssl needed),
//! mode 0640 and the owner of `control/`. An existing file is kept unless `--force`.

use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Write `home/control/smtpcert`; `days` of validity.
pub fn selfsigned(home: &Path, days: u32, force: bool) -> Result<()> {
    let control = qmail::control::Control::new(home);
    let path = home.join("control/smtpcert");
    if path.exists() && !force {
        bail!("{} exists; --force replaces it", path.display());
    }
    let me = control.me().context("unable to read control/me")?.unwrap_or_default();
    let mut names = vec![me.clone(), "localhost".to_string()];
    for d in control.list("locals").context("unable to read control/locals")?.unwrap_or_default() {
        if !d.is_empty() && !names.contains(&d) {
            names.push(d);
        }
    }
    names.retain(|n| !n.is_empty());
    let mut params =
        rcgen::CertificateParams::new(names.clone()).context("unusable names for a certificate")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0].clone());
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(days) * 86_400)).into();
    let key = rcgen::KeyPair::generate().context("unable to make a key")?;
    let cert = params.self_signed(&key).context("unable to sign the certificate")?;
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    let tmp = home.join("control/smtpcert.tmp");
    let _ = fs::remove_file(&tmp);
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .with_context(|| format!("unable to create {}", tmp.display()))?;
        f.write_all(pem.as_bytes()).and_then(|()| f.sync_all())?;
    }
    if nix::unistd::geteuid().is_root() {
        let owner = fs::metadata(home.join("control")).context("unable to stat control/")?;
        nix::unistd::chown(
            &tmp,
            Some(nix::unistd::Uid::from_raw(owner.uid())),
            Some(nix::unistd::Gid::from_raw(owner.gid())),
        )
        .with_context(|| format!("unable to chown {}", tmp.display()))?;
    }
    fs::rename(&tmp, &path).with_context(|| format!("unable to write {}", path.display()))?;
    println!(
        "qmailctl: self-signed certificate for {} in {}, valid {days} days",
        names.join(", "),
        path.display()
    );
    Ok(())
}
