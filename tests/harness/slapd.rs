//! A real private slapd for the tests: a static `slapd.conf` in a temp dir (core, cosine,
//! nis, inetorgperson, then schema/qmail.schema; one mdb database for [`SUFFIX`]), checked
//! with `slaptest`, started on a free loopback port, fixtures loaded with `ldapadd`.
//!
//! slapd runs in the foreground (`-d 0`) under a small `sh` watchdog that kills it when the
//! test process is gone, so a crashed or aborted test run leaves no server behind even for
//! the shared instance (statics are never dropped); [`Slapd`]'s Drop kills it by the pid in
//! its pidfile, and the next run removes leftovers of dead runs ([`sweep`]). [`Slapd::stop`],
//! [`Slapd::start`] and [`Slapd::pause`] / [`Slapd::resume`] (SIGSTOP: a server that accepts
//! connections and never answers) serve the fault tests, which use a private instance; the
//! lookup tests share [`shared`] and each use their own `ou`.

use super::{free_port, TempDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ROOTDN: &str = "cn=admin,dc=example,dc=org";
pub const ROOTPW: &str = "secret";
const SLAPD: &str = "/usr/sbin/slapd";

/// The repository's schema directory.
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema")
}

/// Fails loudly when slapd or ldap-utils are not installed.
pub fn require_slapd() {
    for p in [
        SLAPD,
        "/usr/sbin/slaptest",
        "/usr/sbin/slapadd",
        "/usr/bin/ldapadd",
        "/usr/bin/ldapsearch",
    ] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: the LDAP tests need Debian's slapd and ldap-utils; run tests/run"
        );
    }
}

/// One slapd process with its configuration and database.
pub struct Slapd {
    pub dir: TempDir,
    pub port: u16,
    state: Mutex<State>,
}

struct State {
    pid: Option<i32>,
    /// The watchdog shell, reaped once slapd is gone.
    watchdog: Option<std::process::Child>,
    paused: bool,
}

/// The slapd shared by the tests of one binary, started on first use with the root entry.
pub fn shared() -> &'static Slapd {
    static SHARED: LazyLock<Slapd> = LazyLock::new(Slapd::new);
    &SHARED
}

impl Slapd {
    /// Configures, checks and starts a new slapd holding the root entry of [`SUFFIX`].
    pub fn new() -> Slapd {
        require_slapd();
        sweep();
        let dir = TempDir::new("slapd");
        let conf = slapd_conf(dir.path(), &schema_dir().join("qmail.schema"));
        fs::create_dir_all(dir.path().join("db")).unwrap();
        fs::write(dir.path().join("slapd.conf"), conf).unwrap();
        let out = Command::new("slaptest")
            .args(["-u", "-f"])
            .arg(dir.path().join("slapd.conf"))
            .output()
            .unwrap();
        assert!(out.status.success(), "slaptest: {}", String::from_utf8_lossy(&out.stderr));
        let slapd = Slapd {
            dir,
            port: free_port(),
            state: Mutex::new(State { pid: None, watchdog: None, paused: false }),
        };
        slapd.start();
        slapd.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
        ));
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}/", self.port)
    }

    /// The `ldapserver` line for this server.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("slapd.pid")
    }

    /// Starts slapd (again) on the same port and database and waits until it answers.
    pub fn start(&self) {
        let mut st = self.state.lock().unwrap();
        assert!(st.pid.is_none(), "slapd already running");
        let _ = fs::remove_file(self.pidfile());
        let conf = self.dir.path().join("slapd.conf");
        // The watchdog: slapd in the foreground, killed once the test process is gone.
        let script = format!(
            "{SLAPD} -d 0 -f '{}' -h '{}' >'{}' 2>&1 & s=$!\n\
             while kill -0 {} 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 1; done\n\
             kill -CONT $s 2>/dev/null; kill $s 2>/dev/null\n",
            conf.display(),
            self.url(),
            self.dir.path().join("slapd.log").display(),
            std::process::id()
        );
        st.watchdog = Some(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = read_pid(&self.pidfile()) {
                if self.answers() {
                    st.pid = Some(pid);
                    st.paused = false;
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not come up: {}",
                fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        Command::new("ldapsearch")
            .args(["-x", "-H", &self.url(), "-b", "", "-s", "base", "-o", "nettimeout=2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops slapd and waits until it is gone (its database stays).
    pub fn stop(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(pid) = st.pid.take() {
            kill(pid, "-CONT");
            kill(pid, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                kill(pid, "-KILL");
            }
        }
        if let Some(mut sh) = st.watchdog.take() {
            let _ = sh.kill();
            let _ = sh.wait();
        }
    }

    /// Freezes slapd (SIGSTOP): connections are accepted by the kernel and never answered.
    pub fn pause(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(pid) = st.pid {
            kill(pid, "-STOP");
            st.paused = true;
            // kill(2) only queues the signal: wait until every thread has stopped, or a
            // request sent right now might still be answered
            super::wait_until(Duration::from_secs(10), || all_stopped(pid));
        }
    }

    pub fn resume(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(pid) = st.pid {
            kill(pid, "-CONT");
            st.paused = false;
        }
    }

    /// Loads LDIF with ldapadd as the root DN; panics with ldapadd's output on failure.
    pub fn add(&self, ldif: &str) {
        let path = self.dir.path().join(format!("add-{}.ldif", unique()));
        fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &self.url(), "-D", ROOTDN, "-w", ROOTPW, "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ldapadd failed:\n{}{}\nLDIF:\n{ldif}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Points the `ldap*` control files of `sb` at this server, searching under `base`, bound
    /// as the root DN.
    pub fn point(&self, sb: &super::Sandbox, base: &str) {
        sb.control("ldapserver", &format!("{}\n", self.server()));
        sb.control("ldapbasedn", &format!("{base}\n"));
        sb.control("ldaplogin", &format!("{ROOTDN}\n"));
        sb.control("ldappassword", &format!("{ROOTPW}\n"));
    }

    /// Adds `ou=<name>,SUFFIX`, a subtree for one test.
    pub fn add_ou(&self, name: &str) -> String {
        let dn = format!("ou={name},{SUFFIX}");
        self.add(&format!("dn: {dn}\nobjectClass: organizationalUnit\nou: {name}\n"));
        dn
    }
}

impl Default for Slapd {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A static slapd.conf for one database under `dir`.
pub fn slapd_conf(dir: &Path, qmail_schema: &Path) -> String {
    format!(
        "modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/nis.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         include {}\n\
         pidfile {}\n\
         database mdb\n\
         maxsize 104857600\n\
         suffix \"{SUFFIX}\"\n\
         rootdn \"{ROOTDN}\"\n\
         rootpw {ROOTPW}\n\
         directory {}\n",
        qmail_schema.display(),
        dir.join("slapd.pid").display(),
        dir.join("db").display()
    )
}

fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Running and not a zombie.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in /proc/PID/task/*/stat).
fn all_stopped(pid: i32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|t| {
        fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(true)
    })
}

fn kill(pid: i32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).stderr(Stdio::null()).status();
}

/// Removes what earlier, dead test runs left: a slapd whose pidfile sits in a temp dir of a
/// test process that no longer exists is killed, and the dir removed.
fn sweep() {
    let Ok(rd) = fs::read_dir(std::env::temp_dir()) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("qmail-test-slapd-") else { continue };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        if let Some(pid) = read_pid(&e.path().join("slapd.pid")) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&name) {
                kill(pid, "-CONT");
                kill(pid, "-KILL");
            }
        }
        let _ = fs::remove_dir_all(e.path());
    }
}
