//! qmailctl: placeholder.
fn main() {}
