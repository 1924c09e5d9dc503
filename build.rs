//! build.rs: link libgcc's unwinder into the programs instead of loading libgcc_s.so.1.
//!
//! Rust's standard library links `-lgcc_s` on linux-gnu (for unwinding) unless the whole
//! build is static, so every program start loads one more shared library, resolves its
//! symbols and runs its constructor (`__cpu_indicator_init`, whose `cpuid`s trap on a virtual
//! machine): 0.1 ms of CPU of a start of 0.7 to 0.9 ms (bench/spawn.sh). Where gcc's static
//! unwinder `libgcc_eh.a` exists, this puts a linker script named `libgcc_s.a` containing
//! `INPUT(-lgcc_eh)` first on the library path, so that `-lgcc_s` links it in, as gcc's own
//! `-static-libgcc` does for C (and as a `crt-static` Rust build does). The programs stay
//! dynamically linked against glibc: a static glibc cannot look users up through NSS modules
//! (a lookup that misses /etc/passwd loads libnss_systemd and crashes), and several programs
//! do. Elsewhere, or without gcc, it does nothing.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" || static_crt {
        return;
    }
    // `cc -print-file-name=X` prints X's full path if the compiler has it, else X alone
    let found = Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .is_some_and(|path| path.starts_with('/'));
    if !found {
        return;
    }
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    if fs::write(out.join("libgcc_s.a"), "INPUT(-lgcc_eh)\n").is_ok() {
        println!("cargo::rustc-link-search=native={}", out.display());
    }
}
