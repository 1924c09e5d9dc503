//! qmail-queue tests
