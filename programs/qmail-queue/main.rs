//! qmail-queue: placeholder.
fn main() {}
