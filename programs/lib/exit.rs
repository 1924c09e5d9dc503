//! exit: every exit-code contract, written once and read by both ends.
//!
//! - qmail-queue's table ([`QueueExit`]): the program exits with `code()`, and every caller
//!   (qmail-smtpd, qmail-inject, qmail-local forwards, qmail-send bounces) turns the wait status
//!   into a [`Verdict`] with [`queue_status`].
//! - The tools' plain contract: 0 success, [`PERM`] 100 permanent, [`TEMP`] 111 temporary.

use std::fmt;
use std::process::ExitStatus;

/// Permanent failure of a tool (qmail-inject, qmail-local, ...).
pub const PERM: u8 = 100;
/// Temporary failure of a tool.
pub const TEMP: u8 = 111;

/// A failure, told apart where it happens: `Temp` is retried (4xx, `Z`), `Perm` bounces (5xx,
/// `D`). The text carries its enhanced status code, e.g. `... (#4.3.0)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Temp(String),
    Perm(String),
}

impl Verdict {
    pub fn temp(text: impl Into<String>) -> Self {
        Verdict::Temp(text.into())
    }

    pub fn perm(text: impl Into<String>) -> Self {
        Verdict::Perm(text.into())
    }

    pub fn is_perm(&self) -> bool {
        matches!(self, Verdict::Perm(_))
    }

    pub fn text(&self) -> &str {
        match self {
            Verdict::Temp(t) | Verdict::Perm(t) => t,
        }
    }

    /// The report letter of the spawn and qmail-remote protocols: `D` permanent, `Z` temporary.
    pub fn letter(&self) -> u8 {
        match self {
            Verdict::Temp(_) => b'Z',
            Verdict::Perm(_) => b'D',
        }
    }

    /// The tool exit code: 100 permanent, 111 temporary.
    pub fn tool_code(&self) -> u8 {
        match self {
            Verdict::Temp(_) => TEMP,
            Verdict::Perm(_) => PERM,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for Verdict {}

/// qmail-queue's exit codes (spec pipeline §1.4). Filters standing in through `QMAILQUEUE`
/// may use the filter-only rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum QueueExit {
    Queued = 0,
    AddressTooLong = 11,
    /// filters only
    PermRefused = 31,
    NoMem = 51,
    Timeout = 52,
    WriteError = 53,
    ReadError = 54,
    ConfigError = 55,
    /// filters only
    Network = 56,
    NoHome = 61,
    NoQueueDir = 62,
    PidFile = 63,
    LinkMess = 64,
    CreateIntd = 65,
    LinkTodo = 66,
    /// filters only
    TempRefused = 71,
    /// filters only
    ConnectTimeout = 72,
    /// filters only
    ConnectRejected = 73,
    /// filters only
    TalkFailed = 74,
    Bug = 81,
    /// filters only: the text is on fd 4
    Custom = 82,
    EnvelopeFormat = 91,
}

impl QueueExit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Exit code a caller of qmail-queue reports when the exec itself failed.
pub const QUEUE_EXEC_FAILED: i32 = 120;

/// The most bytes of custom error text a caller reads from fd 4.
pub const CUSTOM_TEXT_MAX: usize = 255;

/// Turn the wait status of qmail-queue (or its `QMAILQUEUE` stand-in) into a verdict, as
/// upstream's `qmail_close` does. `custom` is what the program wrote on fd 4 (only used with
/// exit 82).
pub fn queue_status(status: ExitStatus, custom: &[u8]) -> Result<(), Verdict> {
    match status.code() {
        Some(code) => queue_code(code, custom),
        None => Err(Verdict::temp("Unable to run qq: crashed (#4.3.0)")),
    }
}

/// The same mapping from a plain exit code.
pub fn queue_code(code: i32, custom: &[u8]) -> Result<(), Verdict> {
    let t = |s: &str| Err(Verdict::temp(s));
    let p = |s: &str| Err(Verdict::perm(s));
    match code {
        0 => Ok(()),
        11 | 115 => p("Envelope address too long for qq (#5.1.3)"),
        31 => p("Mail server permanently rejected message (#5.3.0)"),
        51 => t("Out of memory in qq (#4.3.0)"),
        52 => t("Timeout in qq (#4.3.0)"),
        53 => t("Write error or disk full in qq (#4.3.0)"),
        54 => t("Unable to read message or envelope in qq (#4.3.0)"),
        55 => t("Unable to read a configuration file in qq (#4.3.0)"),
        56 => t("Network problem in qq (#4.3.0)"),
        61 => t("Unable to chdir to qmail home in qq (#4.3.0)"),
        62 => t("Unable to chdir to queue in qq (#4.3.0)"),
        63 => t("Trouble with pid file in qq (#4.3.0)"),
        64 => t("Trouble linking message into queue in qq (#4.3.0)"),
        65 => t("Trouble creating envelope file in qq (#4.3.0)"),
        66 => t("Trouble linking envelope into todo in qq (#4.3.0)"),
        71 => t("Mail server temporarily rejected message (#4.3.0)"),
        72 => t("Connection to mail server timed out (#4.4.1)"),
        73 => t("Connection to mail server rejected (#4.4.1)"),
        74 => t("Communication with mail server failed (#4.4.2)"),
        81 | 91 => t("Internal bug in qq (#4.3.0)"),
        82 => custom_text(custom),
        QUEUE_EXEC_FAILED => t("Unable to exec qq (#4.3.0)"),
        11..=40 => p("Permanent qq error (#5.3.0)"),
        _ => t("Temporary qq error (#4.3.0)"),
    }
}

fn custom_text(custom: &[u8]) -> Result<(), Verdict> {
    let custom = &custom[..custom.len().min(CUSTOM_TEXT_MAX)];
    if custom.len() > 2 {
        let text = String::from_utf8_lossy(&custom[1..]).trim_end().to_string();
        match custom[0] {
            b'D' => return Err(Verdict::Perm(text)),
            b'Z' => return Err(Verdict::Temp(text)),
            _ => {}
        }
    }
    Err(Verdict::temp("Temporary qq error (#4.3.0)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_queue_table() {
        let rows: &[(i32, Option<bool>, &str)] = &[
            (0, None, ""),
            (11, Some(true), "#5.1.3"),
            (115, Some(true), "#5.1.3"),
            (31, Some(true), "#5.3.0"),
            (12, Some(true), "#5.3.0"),
            (40, Some(true), "#5.3.0"),
            (51, Some(false), "#4.3.0"),
            (52, Some(false), "#4.3.0"),
            (53, Some(false), "#4.3.0"),
            (54, Some(false), "#4.3.0"),
            (55, Some(false), "#4.3.0"),
            (56, Some(false), "#4.3.0"),
            (61, Some(false), "#4.3.0"),
            (62, Some(false), "#4.3.0"),
            (63, Some(false), "#4.3.0"),
            (64, Some(false), "#4.3.0"),
            (65, Some(false), "#4.3.0"),
            (66, Some(false), "#4.3.0"),
            (71, Some(false), "#4.3.0"),
            (72, Some(false), "#4.4.1"),
            (73, Some(false), "#4.4.1"),
            (74, Some(false), "#4.4.2"),
            (81, Some(false), "Internal bug"),
            (91, Some(false), "Internal bug"),
            (120, Some(false), "exec"),
            (1, Some(false), "#4.3.0"),
            (99, Some(false), "#4.3.0"),
            (255, Some(false), "#4.3.0"),
        ];
        for &(code, perm, needle) in rows {
            let got = queue_code(code, b"");
            match perm {
                None => assert_eq!(got, Ok(()), "code {code}"),
                Some(perm) => {
                    let v = got.expect_err("failure");
                    assert_eq!(v.is_perm(), perm, "code {code}: {v}");
                    assert!(v.text().contains(needle), "code {code}: {v}");
                }
            }
        }
    }

    #[test]
    fn custom_text_on_fd4() {
        assert_eq!(
            queue_code(82, b"Dvirus found (#5.7.1)\n"),
            Err(Verdict::perm("virus found (#5.7.1)"))
        );
        assert_eq!(queue_code(82, b"Zbusy"), Err(Verdict::temp("busy")));
        // too short, wrong letter, or none at all: a temporary error
        for bad in [&b""[..], b"D", b"Dx", b"Xhello"] {
            assert!(!queue_code(82, bad).expect_err("failure").is_perm());
        }
        // only 255 bytes are used
        let long = [b"D".as_slice(), &[b'a'; 1000]].concat();
        assert_eq!(queue_code(82, &long).expect_err("f").text().len(), 254);
    }

    #[test]
    fn codes_match_the_table() {
        assert_eq!(QueueExit::AddressTooLong.code(), 11);
        assert_eq!(QueueExit::EnvelopeFormat.code(), 91);
        assert_eq!(QueueExit::Custom.code(), 82);
    }
}
