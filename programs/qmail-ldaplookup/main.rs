//! qmail-ldaplookup: placeholder, being written.
fn main() {}
