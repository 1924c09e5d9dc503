//! qmail-newu: rebuild `users/cdb` from `users/assign`.
//!
//! `qmail-newu` takes no arguments. It reads `QMAILHOME/users/assign` (doc/qmail-newu.8, format in
//! doc/qmail-users.5) completely, and only when every line up to the `.` line is well formed
//! builds `users/cdb.tmp`, fsyncs it and renames it onto `users/cdb` (the record format and the
//! parser live in `qmail::users`). A bad file therefore never leaves `users/cdb.tmp` behind
//! and never replaces the old `users/cdb`.
//!
//! Exit 0 when the new `users/cdb` is in place; 111 on any failure, with
//! `qmail-newu: fatal: <reason>` on stderr (`bad format in users/assign line N: ...` for a
//! malformed file). Arguments are refused with 111 as well. See doc/qmail-newu.8.

#![forbid(unsafe_code)]

use qmail::cdb::Writer;
use qmail::users::{self, Assign};
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        eprintln!("qmail-newu: usage: qmail-newu");
        return ExitCode::from(qmail::exit::TEMP);
    }
    match run(&qmail::auto::home()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("qmail-newu: fatal: {reason}");
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}

fn run(home: &Path) -> Result<(), String> {
    let assign = File::open(home.join(users::ASSIGN))
        .map_err(|e| format!("unable to open {}: {e}", users::ASSIGN))?;
    let assign = users::parse(BufReader::new(assign)).map_err(|e| e.to_string())?;
    write(home, &assign).map_err(|e| {
        format!("unable to write {} and move it to {}: {e}", users::CDB_TMP, users::CDB)
    })
}

/// Build `users/cdb.tmp` and rename it onto `users/cdb`; on failure remove the temporary file.
fn write(home: &Path, assign: &Assign) -> io::Result<()> {
    let tmp = home.join(users::CDB_TMP);
    let mut writer = Writer::create(&tmp, 0o644)?;
    for (key, value) in assign.records() {
        if let Err(e) = writer.add(&key, &value) {
            drop(writer);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    writer.finish(&home.join(users::CDB))
}
