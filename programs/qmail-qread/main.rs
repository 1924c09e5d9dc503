//! qmail-qread: list the messages waiting in the queue, with their recipients.
//!
//! `qmail-qread` (arguments are ignored; `mailq` and `sendmail -bp` run it) prints, for each
//! message in `QMAILHOME/queue`, `d Mon yyyy hh:mm:ss GMT  #id  size  <sender> ` (plus
//! ` bouncing` or ` not yet preprocessed`), then one `\tlocal\taddr`, `\tremote\taddr` or
//! `\ttodo\taddr` line per recipient, `  done` in front when it is delivered. What counts as a
//! message in the queue is [`qmail::queue::scan`]'s rule: a message file without info or todo
//! is never listed. See doc/qmail-qread.8.
//!
//! Exit codes: 0 listed; 111 `qmail-qread: fatal: ...` when a queue directory cannot be read
//! (in a system installation only root and qmails may read `info/`) or stdout fails, and after
//! a listing that left out a message whose files could not be read
//! (`qmail-qread: warning: trouble with #id: ...`).
//!
//! Security: no privileges; reads the queue with the caller's rights.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let queue = qmail::auto::home().join("queue");
    let mut out = std::io::stdout().lock();
    let listed = qmail::queue::scan::list(&queue, &mut out, |t| {
        qmail::log::line(format_args!("qmail-qread: warning: {t}"));
    });
    match listed {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(qmail::exit::TEMP),
        Err(e) => {
            qmail::log::line(format_args!("qmail-qread: fatal: {e}"));
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}
