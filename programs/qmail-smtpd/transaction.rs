//! qmail-smtpd's mail transaction: the sender and recipients MAIL and RCPT gather for DATA, and
//! the relaying that applies to them (doc/qmail-smtpd.8, "Relaying").

use qmail::address::Address;

/// One transaction, from MAIL to the end of DATA (or RSET, HELO, EHLO, the next MAIL).
pub struct Transaction {
    /// RELAYCLIENT as the session has it: what relaying starts as in every transaction
    initial_relay: Option<Vec<u8>>,
    /// RELAYCLIENT as it applies now (relaymailfrom may switch it on for one transaction):
    /// `Some` lets the client relay, and is appended to every recipient
    relay: Option<Vec<u8>>,
    /// the sender (MAIL seen)
    sender: Option<Address>,
    rcpts: Vec<Address>,
    /// the login name of a successful AUTH: for the rest of the session
    auth_user: Option<String>,
}

impl Transaction {
    pub fn new(relay: Option<Vec<u8>>) -> Self {
        Transaction {
            initial_relay: relay.clone(),
            relay,
            sender: None,
            rcpts: Vec::new(),
            auth_user: None,
        }
    }

    /// A successful AUTH as `user`: the client may relay from now on, in this transaction
    /// and every later one, whatever resets them, until the session ends.
    pub fn authenticated(&mut self, user: String) {
        self.auth_user = Some(user);
        self.initial_relay.get_or_insert_with(Vec::new);
        self.relay.get_or_insert_with(Vec::new);
    }

    /// The login name of a successful AUTH.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// End the transaction; relaying goes back to RELAYCLIENT's initial value.
    pub fn reset(&mut self) {
        self.sender = None;
        self.rcpts = Vec::new();
        self.relay = self.initial_relay.clone();
    }

    /// End the transaction as [`Transaction::reset`] does, giving back its recipients.
    pub fn end(&mut self) -> Vec<Address> {
        let rcpts = std::mem::take(&mut self.rcpts);
        self.reset();
        rcpts
    }

    pub fn sender(&self) -> Option<&Address> {
        self.sender.as_ref()
    }

    pub fn set_sender(&mut self, sender: Address) {
        self.sender = Some(sender);
    }

    pub fn rcpts(&self) -> &[Address] {
        &self.rcpts
    }

    pub fn add_rcpt(&mut self, rcpt: Address) {
        self.rcpts.push(rcpt);
    }

    /// What is appended to every recipient when the client may relay; `None` when it may not.
    pub fn relay(&self) -> Option<&[u8]> {
        self.relay.as_deref()
    }

    /// Let the client relay in this transaction (relaymailfrom), if it may not already.
    pub fn relay_once(&mut self) {
        self.relay.get_or_insert_with(Vec::new);
    }
}
