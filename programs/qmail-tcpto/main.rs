//! qmail-tcpto: placeholder, being written.
fn main() {}
