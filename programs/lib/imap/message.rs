//! imap::message: (being written)
