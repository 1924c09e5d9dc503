//! qmail-newu: placeholder.
fn main() {}
