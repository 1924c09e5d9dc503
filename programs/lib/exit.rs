//! exit: every exit-code contract, written once and read by both ends.
//!
//! - qmail-queue's table ([`QueueExit`]): the program exits with `code()`, and every caller
//!   (qmail-smtpd, qmail-inject, qmail-local forwards, qmail-send bounces) turns the wait status
//!   into a [`Verdict`] with [`queue_status`].
//! - The tools' plain contract: 0 success, [`PERM`] 100 permanent, [`TEMP`] 111 temporary.
//! - Local delivery (doc/qmail-lspawn.8): qmail-local's and qmail-lspawn's own codes ([`qlx`])
//!   become a spawn report ([`Outcome`]) through [`local_status`]; qmail-getpw's exit codes
//!   become one through [`getpw_status`].

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

/// qmail-queue's exit codes (doc/qmail-queue.8, EXIT CODES). Filters standing in through
/// `QMAILQUEUE` may use the filter-only rows.
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

/// The result of one delivery, as a spawner reports it to qmail-send: the letter and the text
/// of a [`crate::spawn::Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `K`: delivered.
    Success(Vec<u8>),
    /// `Z`: try again later.
    Temp(Vec<u8>),
    /// `D`: bounce.
    Perm(Vec<u8>),
}

impl Outcome {
    pub fn temp(text: impl Into<Vec<u8>>) -> Self {
        Outcome::Temp(text.into())
    }

    pub fn perm(text: impl Into<Vec<u8>>) -> Self {
        Outcome::Perm(text.into())
    }

    /// `K`, `Z` or `D`.
    pub fn letter(&self) -> u8 {
        match self {
            Outcome::Success(_) => b'K',
            Outcome::Temp(_) => b'Z',
            Outcome::Perm(_) => b'D',
        }
    }

    pub fn text(&self) -> &[u8] {
        match self {
            Outcome::Success(t) | Outcome::Temp(t) | Outcome::Perm(t) => t,
        }
    }

    pub fn into_text(self) -> Vec<u8> {
        match self {
            Outcome::Success(t) | Outcome::Temp(t) | Outcome::Perm(t) => t,
        }
    }
}

/// The exit codes of qmail-lspawn's delivery children beyond qmail-local's 0 / 100 / 111
/// (upstream's `qlx.h` and qmail-ldap's additions).
pub mod qlx {
    /// Internal bug, bad lookup data, or the switch to the user failed.
    pub const USAGE: i32 = 112;
    /// The user's uid is 0.
    pub const ROOT: i32 = 113;
    /// A temporary error looking at the home directory (NFS).
    pub const NFS: i32 = 115;
    /// No alias user.
    pub const NOALIAS: i32 = 116;
    /// `users/cdb` cannot be read.
    pub const CDB: i32 = 117;
    /// A temporary system failure (passwd unavailable).
    pub const SYS: i32 = 118;
    /// Out of memory.
    pub const NOMEM: i32 = 119;
    /// qmail-local cannot be run, temporarily.
    pub const EXECSOFT: i32 = 120;
    /// qmail-getpw cannot be run.
    pub const EXECPW: i32 = 121;
    /// qmail-local cannot be run, permanently.
    pub const EXECHARD: i32 = 126;
}

/// The most bytes of a child's output put into a report (doc/qmail-lspawn.8).
pub const LOCAL_OUTPUT_MAX: usize = 3000;

/// Turn the wait status and collected output of a qmail-lspawn delivery child into the
/// report, per the table of doc/qmail-lspawn.8. The output is cut at its first NUL.
pub fn local_status(status: ExitStatus, output: &[u8]) -> Outcome {
    match status.code() {
        Some(code) => local_code(code, output),
        None => Outcome::temp("Delivery program crashed. (#4.3.0)\n"),
    }
}

/// The same mapping from a plain exit code.
pub fn local_code(code: i32, output: &[u8]) -> Outcome {
    let output = match output.iter().position(|&b| b == 0) {
        Some(i) => &output[..i],
        None => output,
    };
    let t = |s: &str| Outcome::temp(s);
    let p = |s: &str| Outcome::perm(s);
    match code {
        0 => Outcome::Success(output.to_vec()),
        111 | 71 | 74 | 75 => Outcome::temp(output),
        qlx::USAGE => t("Internal qmail-lspawn bug or bad user data. (#4.3.0)\n"),
        qlx::ROOT => t("Refusing to deliver as root. (#4.3.0)\n"),
        qlx::NFS => t("Temporary error looking up the user, possibly NFS. (#4.3.0)\n"),
        qlx::NOALIAS => t("Unable to find the alias user. (#4.3.0)\n"),
        qlx::CDB => t("Unable to read users/cdb. (#4.3.0)\n"),
        qlx::SYS => t("Temporary system failure looking up the user. (#4.3.0)\n"),
        qlx::NOMEM => t("Out of memory in qmail-lspawn. (#4.3.0)\n"),
        qlx::EXECSOFT => t("Unable to run qmail-local. (#4.3.0)\n"),
        qlx::EXECPW => t("Unable to run qmail-getpw. (#4.3.0)\n"),
        qlx::EXECHARD => p("Unable to run qmail-local. (#5.3.0)\n"),
        150 => p("The message is larger than the mailbox accepts. (#5.2.3)\n"),
        152 => t("Temporary LDAP failure. (#4.4.3)\n"),
        153 => t("LDAP bind failed: bad credentials. (#4.4.3)\n"),
        154 => t("LDAP search timed out. (#4.4.3)\n"),
        155 => t("LDAP server unreachable. (#4.4.3)\n"),
        156 => p("Ambiguous LDAP result: more than one entry. (#5.3.5)\n"),
        157 => p("A mandatory LDAP attribute is missing. (#5.3.5)\n"),
        158 => p("An LDAP attribute holds an illegal value. (#5.3.5)\n"),
        159 => p("This mailbox is administratively disabled. (#5.2.1)\n"),
        160 => p("Sorry, no mailbox here by that name. (#5.1.1)\n"),
        162 => t("Temporary failure forwarding to the cluster host. (#4.4.4)\n"),
        163 => p("Permanent failure forwarding to the cluster host. (#5.4.4)\n"),
        167 => t("Temporary failure creating the home directory. (#4.3.0)\n"),
        168 => p("Unable to create the home directory. (#5.3.0)\n"),
        169 => t("The home directory maker crashed. (#4.3.0)\n"),
        _ => Outcome::perm(output),
    }
}

/// qmail-getpw's exit codes: 0 found (its answer on stdout), [`PERM`] 100 no argument,
/// [`TEMP`] 111 `users/cdb` unreadable or corrupt, [`qlx::ROOT`] 113 refused uid/gid,
/// [`qlx::NFS`] 115 temporary stat error, [`qlx::NOALIAS`] 116 no alias user, [`qlx::SYS`] 118
/// passwd or an LDAP control file temporarily unavailable, and the LDAP rows of
/// [`local_code`]: 150, 152–160, 162. Any other code is "cannot run qmail-getpw" (`Z`): an
/// unknown code never bounces.
/// qmail-lspawn turns a failure into its report here; `Ok` means "parse the output".
pub fn getpw_status(status: ExitStatus) -> Result<(), Outcome> {
    match status.code() {
        Some(code) => getpw_code(code),
        None => Err(local_code(qlx::EXECPW, b"")),
    }
}

/// The same mapping from a plain exit code.
pub fn getpw_code(code: i32) -> Result<(), Outcome> {
    let qlx = match code {
        0 => return Ok(()),
        111 => qlx::CDB,
        100 => qlx::USAGE,
        qlx::ROOT | qlx::NFS | qlx::NOALIAS | qlx::SYS | qlx::NOMEM => code,
        150 | 152..=160 | 162 => code,
        _ => qlx::EXECPW,
    };
    Err(local_code(qlx, b""))
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

    #[test]
    fn every_row_of_the_local_table() {
        // (code, letter, text or "" for the child's output)
        let rows: &[(i32, u8, &str)] = &[
            (0, b'K', ""),
            (111, b'Z', ""),
            (71, b'Z', ""),
            (74, b'Z', ""),
            (75, b'Z', ""),
            (100, b'D', ""),
            (1, b'D', ""),
            (2, b'D', ""),
            (99, b'D', ""),
            (110, b'D', ""),
            (114, b'D', ""),
            (122, b'D', ""),
            (255, b'D', ""),
            (112, b'Z', "bug"),
            (113, b'Z', "root"),
            (115, b'Z', "NFS"),
            (116, b'Z', "alias user"),
            (117, b'Z', "users/cdb"),
            (118, b'Z', "system failure"),
            (119, b'Z', "memory"),
            (120, b'Z', "qmail-local"),
            (121, b'Z', "qmail-getpw"),
            (126, b'D', "qmail-local"),
            (150, b'D', "#5.2.3"),
            (152, b'Z', "#4.4.3"),
            (153, b'Z', "#4.4.3"),
            (154, b'Z', "#4.4.3"),
            (155, b'Z', "#4.4.3"),
            (156, b'D', "#5.3.5"),
            (157, b'D', "#5.3.5"),
            (158, b'D', "#5.3.5"),
            (159, b'D', "#5.2.1"),
            (160, b'D', "#5.1.1"),
            (162, b'Z', "#4.4.4"),
            (163, b'D', "#5.4.4"),
            (167, b'Z', "home"),
            (168, b'D', "#5.3.0"),
            (169, b'Z', "crashed"),
        ];
        let output = b"did 1+0+0\n\0hidden";
        for &(code, letter, needle) in rows {
            let got = local_code(code, output);
            assert_eq!(got.letter(), letter, "code {code}: {got:?}");
            let text = String::from_utf8_lossy(got.text()).into_owned();
            if needle.is_empty() {
                assert_eq!(text, "did 1+0+0\n", "code {code}: the output up to its NUL");
            } else {
                assert!(text.contains(needle), "code {code}: {text}");
                assert!(text.contains("(#"), "code {code}: {text} has a status code");
            }
        }
    }

    #[test]
    fn local_status_of_a_crash() {
        use std::os::unix::process::ExitStatusExt;
        let crashed = local_status(ExitStatus::from_raw(9), b"did 1+0+0\n");
        assert_eq!(crashed.letter(), b'Z');
        assert!(String::from_utf8_lossy(crashed.text()).contains("crashed"));
        let exited = local_status(ExitStatus::from_raw(111 << 8), b"busy");
        assert_eq!(exited, Outcome::temp("busy"));
        let ok = local_status(ExitStatus::from_raw(0), b"");
        assert_eq!(ok, Outcome::Success(Vec::new()));
    }

    #[test]
    fn every_row_of_the_getpw_table() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(getpw_code(0), Ok(()));
        let rows: &[(i32, i32)] = &[
            (111, qlx::CDB),
            (100, qlx::USAGE),
            (115, qlx::NFS),
            (116, qlx::NOALIAS),
            (118, qlx::SYS),
            (119, qlx::NOMEM),
            (113, qlx::ROOT),
            (1, qlx::EXECPW),
            (112, qlx::EXECPW),
            (126, qlx::EXECPW),
            (151, qlx::EXECPW),
            (161, qlx::EXECPW),
            (163, qlx::EXECPW),
            (167, qlx::EXECPW),
            (255, qlx::EXECPW),
        ];
        for &(code, want) in rows {
            let got = getpw_code(code).expect_err("a failure");
            assert_eq!(got, local_code(want, b""), "getpw exit {code}");
            assert_eq!(got.letter(), b'Z', "a lookup failure never bounces");
        }
        // the directory's answers: outages and refusals wait, definite answers bounce
        let ldap: &[(i32, u8)] = &[
            (150, b'D'),
            (152, b'Z'),
            (153, b'Z'),
            (154, b'Z'),
            (155, b'Z'),
            (156, b'D'),
            (157, b'D'),
            (158, b'D'),
            (159, b'D'),
            (160, b'D'),
            (162, b'Z'),
        ];
        for &(code, letter) in ldap {
            let got = getpw_code(code).expect_err("a failure");
            assert_eq!(got, local_code(code, b""), "getpw exit {code}");
            assert_eq!(got.letter(), letter, "getpw exit {code}");
        }
        let crashed = getpw_status(ExitStatus::from_raw(11)).expect_err("a failure");
        assert_eq!(crashed, local_code(qlx::EXECPW, b""));
    }
}
