//! Fuzz target: arbitrary bytes as the login records of the auth programs — auth_smtp's
//! request (from qmail-smtpd, the client's base64), auth_pop's fd 3, auth_imap's fd 3, and a
//! `users/passwd` file (auth_pop and auth_imap read them as root).
//!
//! `cargo +nightly fuzz run auth`. Nothing may panic; a complete request followed by one more
//! byte is refused, an answer decodes to itself, and every users/passwd entry has a login and
//! a `{SCHEME}` value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qmail::auth::{checkpassword, courier, file, smtp};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(c)) = smtp::credentials(data) {
        assert!(smtp::credentials(&[data, b"x"].concat()).is_err());
        let answer = smtp::Answer::Ok(c.login.clone());
        if !c.login.is_empty() && c.login.len() <= qmail::auth::LOGIN_MAX && !c.login.contains(&0) {
            assert_eq!(smtp::Answer::decode(&answer.encode()), Some(answer));
        }
    }
    let _ = smtp::Answer::decode(data);
    let _ = checkpassword::credentials(data);
    let _ = courier::parse(data);
    if let Ok(entries) = file::parse(data) {
        for (login, value) in entries {
            assert!(!login.is_empty() && value.first() == Some(&b'{'));
        }
    }
});
