//! qmail-qstat: count the messages waiting in the queue.
//!
//! `qmail-qstat` (arguments are ignored) prints `messages in queue: N` and
//! `messages in queue but not yet preprocessed: M` for `QMAILHOME/queue`. N counts the
//! messages with `info/S/id` or `todo/id` ([`qmail::queue::scan`]'s rule: a message file with
//! neither is not waiting mail), M those with `todo/id`. See doc/qmail-qstat.8.
//!
//! Exit codes: 0 printed; 111 `qmail-qstat: fatal: ...` when a queue directory cannot be read
//! (in a system installation only root and qmails may read `info/`) or stdout fails.
//!
//! Security: no privileges; reads directory listings only, with the caller's rights.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let queue = qmail::auto::home().join("queue");
    let counted = qmail::queue::scan::count(&queue).and_then(|counts| {
        let mut out = std::io::stdout().lock();
        out.write_all(counts.to_string().as_bytes())
            .and_then(|()| out.flush())
            .map_err(qmail::queue::scan::Error::Write)
    });
    match counted {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            qmail::log::line(format_args!("qmail-qstat: fatal: {e}"));
            ExitCode::from(qmail::exit::TEMP)
        }
    }
}
