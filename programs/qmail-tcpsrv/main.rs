//! qmail-tcpsrv: placeholder, being written.
fn main() {}
