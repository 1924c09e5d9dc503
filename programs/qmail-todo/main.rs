//! qmail-todo: placeholder, being written.
fn main() {}
