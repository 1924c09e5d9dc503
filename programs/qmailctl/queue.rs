//! qmailctl stat, queue, cdb: look at the queue, rebuild the databases (users/cdb, the
//! control cdbs, and the qmail-tcpsrv rules control/tcp.smtp.cdb).

use anyhow::{Context, Result};
use qmail::auto::SPLIT;
use qmail::date822::Utc;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// `qmail-qstat`'s two lines.
pub fn stat(home: &Path) -> Result<()> {
    let q = home.join("queue");
    fs::metadata(&q).with_context(|| format!("unable to read {}", q.display()))?;
    println!("messages in queue: {}", count_files(&q.join("mess")));
    println!("messages in queue but not yet preprocessed: {}", count_files(&q.join("todo")));
    Ok(())
}

fn printable(b: &[u8]) -> String {
    b.iter().map(|&c| if (32..127).contains(&c) { c as char } else { '_' }).collect()
}

/// `qmail-qread`'s listing: one line per message, then its recipients.
pub fn list(home: &Path) -> Result<()> {
    let q = home.join("queue");
    let mut ids = Vec::new();
    for s in 0..SPLIT {
        let Ok(rd) = fs::read_dir(q.join(format!("mess/{s}"))) else { continue };
        ids.extend(rd.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok()));
    }
    ids.sort_unstable();
    for id in ids {
        let s = id % SPLIT;
        let info = q.join(format!("info/{s}/{id}"));
        let (meta, sender) = match (fs::metadata(&info), fs::read(&info)) {
            (Ok(m), Ok(data)) => (m, qmail::queue::info_sender(&data)),
            _ => {
                let todo = if q.join(format!("todo/{id}")).exists() {
                    " (not yet preprocessed)"
                } else {
                    ""
                };
                println!("#{id}{todo}");
                continue;
            }
        };
        let size = fs::metadata(q.join(format!("mess/{s}/{id}"))).map(|m| m.len()).unwrap_or(0);
        let bouncing = if q.join(format!("bounce/{id}")).exists() { " bouncing" } else { "" };
        let date = Utc::from_unix(meta.mtime()).rfc822().replace(" -0000", "");
        println!("{date} GMT  #{id}  {size}  <{}> {bouncing}", printable(&sender));
        for chan in ["local", "remote"] {
            let Ok(data) = fs::read(q.join(format!("{chan}/{s}/{id}"))) else { continue };
            for rec in data.split(|&b| b == 0).filter(|r| !r.is_empty()) {
                let done = if rec[0] == b'D' { "  done" } else { "" };
                println!("{done}\t{chan}\t{}", printable(&rec[1..]));
            }
        }
    }
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
