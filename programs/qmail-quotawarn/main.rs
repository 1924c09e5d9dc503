//! qmail-quotawarn: placeholder, being written.
fn main() {}
