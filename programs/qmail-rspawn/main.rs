//! qmail-rspawn: placeholder, being written.
fn main() {}
