//! qmail-getpw: placeholder, being written.
fn main() {}
