//! received: the trace lines qmail programs prepend to messages.

use crate::date822::Utc;

/// How the caller of qmail-queue is described in its Received line (by real uid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invoked {
    /// the alias user
    Alias,
    /// qmaild (qmail-smtpd)
    Network,
    /// qmails (bounces)
    Bounce,
    /// anybody else
    Uid(u32),
}

/// `Received: (qmail PID invoked HOW); DATE\n`, exactly as qmail-queue writes it.
pub fn queue_line(pid: u32, invoked: Invoked, date: &Utc) -> String {
    let how = match invoked {
        Invoked::Alias => "by alias".to_string(),
        Invoked::Network => "from network".to_string(),
        Invoked::Bounce => "for bounce".to_string(),
        Invoked::Uid(uid) => format!("by uid {uid}"),
    };
    format!("Received: (qmail {pid} invoked {how}); {}\n", date.rfc822())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_layout() {
        let d = Utc::from_unix(1_795_307_472);
        assert_eq!(
            queue_line(4711, Invoked::Uid(1000), &d),
            "Received: (qmail 4711 invoked by uid 1000); 22 Nov 2026 00:31:12 -0000\n"
        );
        assert_eq!(
            queue_line(1, Invoked::Network, &Utc::from_unix(0)),
            "Received: (qmail 1 invoked from network); 1 Jan 1970 00:00:00 -0000\n"
        );
        assert!(queue_line(1, Invoked::Alias, &d).contains("invoked by alias);"));
        assert!(queue_line(1, Invoked::Bounce, &d).contains("invoked for bounce);"));
    }
}
