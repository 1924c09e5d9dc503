//! qmail-lspawn: placeholder, being written.
fn main() {}
