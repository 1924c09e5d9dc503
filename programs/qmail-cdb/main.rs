//! qmail-cdb: turn a list (one key per line) into a cdb of keys with empty values.
//!
//! `qmail-cdb target.cdb tmpfile < list`, as for `control/locals.cdb` and
//! `control/rcpthosts.cdb` (doc/qmail-cdb.8). Each line is lowercased (ASCII) and loses its
//! trailing blanks, TABs, CR and LF; empty lines and lines starting with `#` are skipped;
//! leading blanks stay. The cdb is built in `tmpfile` (umask 033, so mode 0644), fsynced and
//! renamed onto `target.cdb`, whose directory is then fsynced: readers see the old database or
//! the whole new one. A line over 64 KiB is refused rather than read without bound.
//!
//! Exit 0 when `target.cdb` is in place; 111 on a usage error or any failure, with
//! `qmail-cdb: fatal: ...` on stderr, leaving the old `target.cdb` untouched and removing
//! `tmpfile`. See doc/qmail-cdb.8.

#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::stat::{umask, Mode};
use qmail::cdb::Writer;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The longest input line, newline included.
const MAX_LINE: usize = 64 * 1024;

#[derive(Parser)]
#[command(
    name = "qmail-cdb",
    version,
    about = "Build a cdb of lowercased keys from a list on standard input"
)]
struct Args {
    /// The database to replace, e.g. control/rcpthosts.cdb.
    target: PathBuf,
    /// The temporary file to build it in, on the same file system.
    tmpfile: PathBuf,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { qmail::exit::TEMP } else { 0 });
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qmail-cdb: fatal: {e:#}");
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

fn run(args: &Args) -> Result<()> {
    umask(Mode::from_bits_truncate(0o033));
    let tmp = &args.tmpfile;
    let mut writer = Writer::create(tmp, 0o644)
        .with_context(|| format!("unable to write to {}", tmp.display()))?;
    if let Err(e) = fill(&mut writer, io::stdin().lock(), tmp) {
        drop(writer);
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    writer
        .finish(&args.target)
        .with_context(|| format!("unable to move {} to {}", tmp.display(), args.target.display()))
}

/// Add one key per usable line of `input`.
fn fill(writer: &mut Writer, mut input: impl BufRead, tmp: &Path) -> Result<()> {
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        number += 1;
        line.clear();
        (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .context("unable to read from standard input")?;
        if line.is_empty() {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            bail!("line {number} of standard input is longer than {MAX_LINE} bytes");
        }
        if let Some(key) = key(&mut line) {
            writer
                .add(key, b"")
                .with_context(|| format!("unable to write to {}", tmp.display()))?;
        }
    }
}

/// The key of one input line, or `None` for an empty or comment line.
fn key(line: &mut [u8]) -> Option<&[u8]> {
    line.make_ascii_lowercase();
    let end =
        line.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).map_or(0, |i| i + 1);
    let key = &line[..end];
    (!key.is_empty() && key[0] != b'#').then_some(key)
}
