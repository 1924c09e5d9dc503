//! qmail-showctl: placeholder, being written.
fn main() {}
