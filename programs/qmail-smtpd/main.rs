//! qmail-smtpd: placeholder, being written.
fn main() {}
