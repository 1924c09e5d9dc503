//! qmail-remote: placeholder, being written.
fn main() {}
