//! sendmail: placeholder.
fn main() {}
