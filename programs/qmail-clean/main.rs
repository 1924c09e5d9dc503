//! qmail-clean: placeholder, being written.
fn main() {}
