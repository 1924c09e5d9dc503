//! qmail-inject: placeholder.
fn main() {}
