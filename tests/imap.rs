//! IMAP tests (being written).
