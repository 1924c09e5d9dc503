//! qmail-send: placeholder, being written.
fn main() {}
