//! qmail-tcpok: placeholder, being written.
fn main() {}
