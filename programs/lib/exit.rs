//! exit: every exit-code contract, written once and read by both ends.
//!
//! - qmail-queue's table ([`QueueExit`]): the program exits with `code()`, and every caller
//!   (qmail-smtpd, qmail-inject, qmail-local forwards, qmail-send bounces) turns the wait status
//!   into a [`Verdict`] with [`queue_status`].
//! - The tools' plain contract: 0 success, [`PERM`] 100 permanent, [`TEMP`] 111 temporary.
//! - Local delivery (doc/qmail-lspawn.8): qmail-local's and qmail-lspawn's own codes ([`Qlx`])
//!   and qmail-ldap's 150–169 ([`LdapExit`]) become a spawn report ([`Outcome`]) through
//!   [`local_status`]; qmail-getpw's exit codes become one through [`getpw_status`].

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
/// (upstream's `qlx.h`): qmail-lspawn reports them for a delivery that never reached
/// qmail-local, and qmail-getpw exits with some of them ([`getpw_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Qlx {
    /// Internal bug, bad lookup data, or the switch to the user failed.
    Usage = 112,
    /// The user's uid is 0.
    Root = 113,
    /// A temporary error looking at the home directory (NFS).
    Nfs = 115,
    /// No alias user.
    NoAlias = 116,
    /// `users/cdb` cannot be read.
    Cdb = 117,
    /// A temporary system failure (passwd unavailable).
    Sys = 118,
    /// Out of memory.
    NoMem = 119,
    /// qmail-local cannot be run, temporarily.
    ExecSoft = 120,
    /// qmail-getpw cannot be run.
    ExecPw = 121,
    /// qmail-local cannot be run, permanently.
    ExecHard = 126,
}

impl Qlx {
    pub const ALL: [Qlx; 10] = [
        Qlx::Usage,
        Qlx::Root,
        Qlx::Nfs,
        Qlx::NoAlias,
        Qlx::Cdb,
        Qlx::Sys,
        Qlx::NoMem,
        Qlx::ExecSoft,
        Qlx::ExecPw,
        Qlx::ExecHard,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The row of an exit status, if it is one of this table.
    pub fn from_code(code: i32) -> Option<Qlx> {
        Qlx::ALL.into_iter().find(|q| i32::from(q.code()) == code)
    }

    /// The report qmail-lspawn gives for this code.
    pub fn report(self) -> Outcome {
        let t = |s: &str| Outcome::temp(s);
        match self {
            Qlx::Usage => t("Internal qmail-lspawn bug or bad user data. (#4.3.0)\n"),
            Qlx::Root => t("Refusing to deliver as root. (#4.3.0)\n"),
            Qlx::Nfs => t("Temporary error looking up the user, possibly NFS. (#4.3.0)\n"),
            Qlx::NoAlias => t("Unable to find the alias user. (#4.3.0)\n"),
            Qlx::Cdb => t("Unable to read users/cdb. (#4.3.0)\n"),
            Qlx::Sys => t("Temporary system failure looking up the user. (#4.3.0)\n"),
            Qlx::NoMem => t("Out of memory in qmail-lspawn. (#4.3.0)\n"),
            Qlx::ExecSoft => t("Unable to run qmail-local. (#4.3.0)\n"),
            Qlx::ExecPw => t("Unable to run qmail-getpw. (#4.3.0)\n"),
            Qlx::ExecHard => Outcome::perm("Unable to run qmail-local. (#5.3.0)\n"),
        }
    }
}

impl From<Qlx> for i32 {
    fn from(q: Qlx) -> i32 {
        q.code().into()
    }
}

/// qmail-ldap's exit codes 150–169: the directory's answers and failures, with which
/// qmail-getpw exits (through [`crate::recipient::Failure`]) and which qmail-lspawn turns into
/// its report ([`getpw_code`], [`local_code`]); the verifiers read them too. See
/// doc/qmail-getpw.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LdapExit {
    /// The message is larger than `mailSizeMax`.
    TooBig = 150,
    /// Any other LDAP failure (a referral, a missing search base, ...).
    Failure = 152,
    /// The bind was refused.
    Credentials = 153,
    /// The search or the bind ran out of time.
    Timeout = 154,
    /// No server could be reached.
    Unreachable = 155,
    /// More than one entry carries the address.
    Ambiguous = 156,
    /// A mandatory attribute is missing.
    Missing = 157,
    /// An attribute holds an illegal value.
    BadValue = 158,
    /// `accountStatus: disabled`.
    Disabled = 159,
    /// `accountStatus: deleted`.
    Deleted = 160,
    /// The mailbox is on another cluster host: temporary.
    ClusterTemp = 162,
    /// Forwarding to the cluster host failed for good.
    ClusterPerm = 163,
    /// The home directory maker failed, temporarily.
    DirMakerTemp = 167,
    /// The home directory maker failed for good.
    DirMakerPerm = 168,
    /// The home directory maker crashed.
    DirMakerCrash = 169,
}

impl LdapExit {
    pub const ALL: [LdapExit; 15] = [
        LdapExit::TooBig,
        LdapExit::Failure,
        LdapExit::Credentials,
        LdapExit::Timeout,
        LdapExit::Unreachable,
        LdapExit::Ambiguous,
        LdapExit::Missing,
        LdapExit::BadValue,
        LdapExit::Disabled,
        LdapExit::Deleted,
        LdapExit::ClusterTemp,
        LdapExit::ClusterPerm,
        LdapExit::DirMakerTemp,
        LdapExit::DirMakerPerm,
        LdapExit::DirMakerCrash,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The row of an exit status, if it is one of this table.
    pub fn from_code(code: i32) -> Option<LdapExit> {
        LdapExit::ALL.into_iter().find(|l| i32::from(l.code()) == code)
    }

    /// Whether qmail-getpw exits with this code (the others are qmail-lspawn's and
    /// qmail-local's).
    pub fn from_getpw(self) -> bool {
        !matches!(
            self,
            LdapExit::ClusterPerm
                | LdapExit::DirMakerTemp
                | LdapExit::DirMakerPerm
                | LdapExit::DirMakerCrash
        )
    }

    /// The report qmail-lspawn gives for this code (its fixed text).
    pub fn report(self) -> Outcome {
        let t = |s: &str| Outcome::temp(s);
        let p = |s: &str| Outcome::perm(s);
        match self {
            LdapExit::TooBig => p("The message is larger than the mailbox accepts. (#5.2.3)\n"),
            LdapExit::Failure => t("Temporary LDAP failure. (#4.4.3)\n"),
            LdapExit::Credentials => t("LDAP bind failed: bad credentials. (#4.4.3)\n"),
            LdapExit::Timeout => t("LDAP search timed out. (#4.4.3)\n"),
            LdapExit::Unreachable => t("LDAP server unreachable. (#4.4.3)\n"),
            LdapExit::Ambiguous => p("Ambiguous LDAP result: more than one entry. (#5.3.5)\n"),
            LdapExit::Missing => p("A mandatory LDAP attribute is missing. (#5.3.5)\n"),
            LdapExit::BadValue => p("An LDAP attribute holds an illegal value. (#5.3.5)\n"),
            LdapExit::Disabled => p("This mailbox is administratively disabled. (#5.2.1)\n"),
            LdapExit::Deleted => p("Sorry, no mailbox here by that name. (#5.1.1)\n"),
            LdapExit::ClusterTemp => {
                t("Temporary failure forwarding to the cluster host. (#4.4.4)\n")
            }
            LdapExit::ClusterPerm => {
                p("Permanent failure forwarding to the cluster host. (#5.4.4)\n")
            }
            LdapExit::DirMakerTemp => {
                t("Temporary failure creating the home directory. (#4.3.0)\n")
            }
            LdapExit::DirMakerPerm => p("Unable to create the home directory. (#5.3.0)\n"),
            LdapExit::DirMakerCrash => t("The home directory maker crashed. (#4.3.0)\n"),
        }
    }
}

impl From<LdapExit> for i32 {
    fn from(l: LdapExit) -> i32 {
        l.code().into()
    }
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

/// The same mapping from a plain exit code: qmail-local's 0 / 100 / 111 (and the sysexits
/// that mean "try again") with its output, then the rows of [`Qlx`] and [`LdapExit`] with
/// their fixed texts; any other code is permanent, with the output.
pub fn local_code(code: i32, output: &[u8]) -> Outcome {
    let output = match output.iter().position(|&b| b == 0) {
        Some(i) => &output[..i],
        None => output,
    };
    match code {
        0 => Outcome::Success(output.to_vec()),
        111 | 71 | 74 | 75 => Outcome::temp(output),
        _ => match (Qlx::from_code(code), LdapExit::from_code(code)) {
            (Some(q), _) => q.report(),
            (None, Some(l)) => l.report(),
            (None, None) => Outcome::perm(output),
        },
    }
}

/// qmail-getpw's exit codes: 0 found (its answer on stdout), [`PERM`] 100 no argument,
/// [`TEMP`] 111 `users/cdb` unreadable or corrupt, [`Qlx::Root`] 113 refused uid/gid,
/// [`Qlx::Nfs`] 115 temporary stat error, [`Qlx::NoAlias`] 116 no alias user, [`Qlx::Sys`] 118
/// passwd or an LDAP control file temporarily unavailable, and the rows of [`LdapExit`] it
/// exits with ([`LdapExit::from_getpw`]: 150, 152–160, 162). Any other code is "cannot run
/// qmail-getpw" (`Z`): an unknown code never bounces.
/// qmail-lspawn turns a failure into its report here; `Ok` means "parse the output".
pub fn getpw_status(status: ExitStatus) -> Result<(), Outcome> {
    match status.code() {
        Some(code) => getpw_code(code),
        None => Err(Qlx::ExecPw.report()),
    }
}

/// The same mapping from a plain exit code.
pub fn getpw_code(code: i32) -> Result<(), Outcome> {
    use Qlx::*;
    match code {
        0 => return Ok(()),
        111 => return Err(Cdb.report()),
        100 => return Err(Usage.report()),
        _ => {}
    }
    if let Some(q @ (Root | Nfs | NoAlias | Sys | NoMem)) = Qlx::from_code(code) {
        return Err(q.report());
    }
    match LdapExit::from_code(code) {
        Some(l) if l.from_getpw() => Err(l.report()),
        _ => Err(ExecPw.report()),
    }
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
    fn the_tables_round_trip() {
        for q in Qlx::ALL {
            assert_eq!(Qlx::from_code(q.into()), Some(q));
            assert_eq!(local_code(q.into(), b"out"), q.report());
        }
        for l in LdapExit::ALL {
            assert_eq!(LdapExit::from_code(l.into()), Some(l));
            assert_eq!(local_code(l.into(), b"out"), l.report());
            assert_eq!(getpw_code(l.into()).is_err_and(|o| o == l.report()), l.from_getpw());
        }
        assert_eq!((Qlx::from_code(0), LdapExit::from_code(161)), (None, None));
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
            (111, Qlx::Cdb.into()),
            (100, Qlx::Usage.into()),
            (115, Qlx::Nfs.into()),
            (116, Qlx::NoAlias.into()),
            (118, Qlx::Sys.into()),
            (119, Qlx::NoMem.into()),
            (113, Qlx::Root.into()),
            (1, Qlx::ExecPw.into()),
            (112, Qlx::ExecPw.into()),
            (126, Qlx::ExecPw.into()),
            (151, Qlx::ExecPw.into()),
            (161, Qlx::ExecPw.into()),
            (163, Qlx::ExecPw.into()),
            (167, Qlx::ExecPw.into()),
            (255, Qlx::ExecPw.into()),
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
        assert_eq!(crashed, local_code(Qlx::ExecPw.into(), b""));
    }
}
