//! qmail-cdb: placeholder.
fn main() {}
