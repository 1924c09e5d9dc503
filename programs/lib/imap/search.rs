//! imap::search: (being written)
