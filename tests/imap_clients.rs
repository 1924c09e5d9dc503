//! imapd with real IMAP clients (being written).
