//! imap::folders: (being written)
