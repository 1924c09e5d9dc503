//! qmail-reply: placeholder, being written.
fn main() {}
