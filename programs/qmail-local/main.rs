//! qmail-local: placeholder, being written.
fn main() {}
