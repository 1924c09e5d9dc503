//! qmail-start: placeholder, being written.
fn main() {}
