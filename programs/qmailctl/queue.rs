//! qmailctl stat, queue, cdb: look at the queue (as qmail-qstat and qmail-qread, through the
//! same [`qmail::queue::scan`]), rebuild the databases (users/cdb, the control cdbs, and the
//! qmail-tcpsrv rules control/tcp.smtp.cdb).

use anyhow::{Context, Result};
use std::fs;
use std::path::Path;
use std::process::Command;

/// `qmail-qstat`'s two lines (the same library function).
pub fn stat(home: &Path) -> Result<()> {
    let counts = qmail::queue::scan::count(&home.join("queue"))?;
    print!("{counts}");
    Ok(())
}

/// `qmail-qread`'s listing (the same library function): one line per message, then its
/// recipients. A message that cannot be read is a warning, and the run fails at the end.
pub fn list(home: &Path) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let troubles = qmail::queue::scan::list(&home.join("queue"), &mut out, |t| {
        qmail::log::line(format_args!("qmailctl: warning: {t}"));
    })?;
    anyhow::ensure!(troubles == 0, "{troubles} message(s) could not be read");
    Ok(())
}

/// Rebuild users/cdb and every control cdb from its text source.
pub fn cdb(home: &Path) -> Result<()> {
    let bin = home.join("bin");
    let status = Command::new(bin.join("qmail-newu"))
        .env("QMAILHOME", home)
        .status()
        .context("unable to run qmail-newu")?;
    anyhow::ensure!(status.success(), "qmail-newu failed: {status}");
    println!("users/cdb rebuilt");
    let control = home.join("control");
    for name in ["locals", "rcpthosts", "morercpthosts"] {
        let text = control.join(name);
        let target = control.join(format!("{name}.cdb"));
        // morercpthosts.cdb is always built (qmail-newmrh); the others only replace an
        // existing cdb, since a cdb replaces its text file entirely
        if !text.exists() || (name != "morercpthosts" && !target.exists()) {
            continue;
        }
        let input =
            fs::File::open(&text).with_context(|| format!("unable to read {}", text.display()))?;
        let status = Command::new(bin.join("qmail-cdb"))
            .arg(&target)
            .arg(control.join(format!("{name}.tmp")))
            .stdin(input)
            .status()
            .context("unable to run qmail-cdb")?;
        anyhow::ensure!(status.success(), "qmail-cdb {name} failed: {status}");
        println!("control/{name}.cdb rebuilt");
    }
    let deny = control.join(qmail::userdeny::TEXT);
    if deny.exists() {
        let text = fs::read(&deny).with_context(|| format!("unable to read {}", deny.display()))?;
        qmail::userdeny::write_cdb(
            &text,
            &control.join(qmail::userdeny::CDB),
            &control.join("userdeny.tmp"),
        )
        .context("unable to write control/userdeny.cdb")?;
        println!("control/userdeny.cdb rebuilt");
    }
    let rules = control.join("tcp.smtp");
    if rules.exists() {
        let text = fs::File::open(&rules)
            .with_context(|| format!("unable to read {}", rules.display()))?;
        let records = qmail::tcprules::compile(text).context("control/tcp.smtp")?;
        qmail::tcprules::write_cdb(
            &records,
            &control.join("tcp.smtp.cdb"),
            &control.join("tcp.smtp.tmp"),
        )
        .context("unable to write control/tcp.smtp.cdb")?;
        println!("control/tcp.smtp.cdb rebuilt");
    }
    Ok(())
}
