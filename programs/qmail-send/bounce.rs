//! qmail-send's bounces (doc/qmail-send.8, "Bounces"): the QSBMF paragraphs appended per permanent
//! failure, and the bounce message injected when a message completes.

use qmail::address::Address;
use qmail::control::{self, Control};
use qmail::date822::Utc;
use qmail::envelope::Envelope;
use qmail::exit::Verdict;
use qmail::queue::Injection;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The control files that shape bounces (re-read on HUP).
pub struct BounceConf {
    pub from: String,
    pub host: String,
    pub doubleto: String,
    pub doublehost: String,
    pub maxbytes: u64,
    pub custom: Vec<u8>,
}

impl BounceConf {
    pub fn load(c: &Control) -> control::Result<Self> {
        let mut custom = c.raw("custombouncetext")?.unwrap_or_default();
        if !custom.is_empty() && !custom.ends_with(b"\n") {
            custom.push(b'\n');
        }
        Ok(BounceConf {
            from: c.line_or("bouncefrom", "MAILER-DAEMON")?,
            host: c.line_or_me("bouncehost", "bouncehost")?,
            doubleto: c.line_or("doublebounceto", "postmaster")?,
            doublehost: c.line_or_me("doublebouncehost", "doublebouncehost")?,
            maxbytes: c.int_or("bouncemaxbytes", 0)?,
            custom,
        })
    }
}

/// Append one recipient paragraph to `bounce/<id>`: `<recipient>:`, the report (an empty line
/// inside it becomes `/`), an empty line. Durable when it returns: the file is fsynced, and
/// `bounce/` too when this made the file. The caller marks the recipient `D` only after this,
/// and that mark is not synced: were the paragraph not on disk first, a crash could keep the
/// mark and lose the failure report (doc/INTERNALS.md, "fsyncs per message").
pub fn append(path: &Path, recipient: &[u8], report: &[u8]) -> io::Result<()> {
    let mut para = Vec::with_capacity(recipient.len() + report.len() + 8);
    para.push(b'<');
    para.extend(recipient.iter().map(|&b| if b == b'\n' { b'_' } else { b }));
    para.extend_from_slice(b">:\n");
    let mut prev_nl = true;
    for &b in report {
        if b == b'\n' && prev_nl {
            para.push(b'/');
        }
        para.push(b);
        prev_nl = b == b'\n';
    }
    if !para.ends_with(b"\n") {
        para.push(b'\n');
    }
    para.push(b'\n');
    let (mut f, made) = match OpenOptions::new().append(true).open(path) {
        Ok(f) => (f, false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            (OpenOptions::new().append(true).create(true).mode(0o600).open(path)?, true)
        }
        Err(e) => return Err(e),
    };
    f.write_all(&para)?;
    f.sync_all()?;
    if made {
        qmail::file::fsync_dir(qmail::file::parent_of(path))?;
    }
    Ok(())
}

/// Who gets the bounce of a message from `sender`: `None` for a triple bounce (discard).
pub fn route(sender: &[u8], conf: &BounceConf) -> Option<(Vec<u8>, Vec<u8>)> {
    if sender == b"#@[]" {
        return None;
    }
    if sender.is_empty() {
        let to = format!("{}@{}", conf.doubleto, conf.doublehost).into_bytes();
        return Some((b"#@[]".to_vec(), to));
    }
    if let Some(stripped) = sender.strip_suffix(b"-@[]") {
        return Some((Vec::new(), stripped.to_vec()));
    }
    Some((Vec::new(), sender.to_vec()))
}

/// Inject the bounce for message `id`: paragraphs from `bounce_path`, then the original from
/// `mess_path`. Returns the bounce's qmail-queue pid.
pub fn inject(
    home: &Path,
    conf: &BounceConf,
    sender: &[u8],
    bounce_path: &Path,
    mess_path: &Path,
) -> Result<u32, Verdict> {
    let tmp = |e: io::Error| Verdict::temp(format!("unable to read for the bounce: {e} (#4.3.0)"));
    let (bsender, brcpt) = route(sender, conf).ok_or_else(|| Verdict::perm("triple bounce"))?;
    let double = sender.is_empty();
    let mut paragraphs = Vec::new();
    File::open(bounce_path).and_then(|mut f| f.read_to_end(&mut paragraphs)).map_err(tmp)?;
    let mess = File::open(mess_path).map_err(tmp)?;

    let mut inj = Injection::start(home)?;
    let qp = inj.pid();
    let mut w = inj.message();
    let mut head = String::new();
    head.push_str(&format!("Date: {}\n", Utc::now().rfc822()));
    head.push_str(&format!("From: {}@{}\n", quote_local(conf.from.as_bytes()), conf.host));
    head.push_str(&format!("To: {}\n", quote_address(&brcpt)));
    head.push_str("Subject: failure notice\n\n");
    head.push_str(&format!("Hi. This is the qmail-send program at {}.\n", conf.host));
    if double {
        head.push_str(
            "I tried to deliver a bounce message to this address, but the bounce bounced!\n",
        );
    } else {
        head.push_str(
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n",
        );
        head.push_str("This is a permanent error; I've given up. Sorry it didn't work out.\n");
    }
    let _ = w.write_all(head.as_bytes());
    let _ = w.write_all(&conf.custom);
    let _ = w.write_all(b"\n");
    let _ = w.write_all(&paragraphs);
    let _ = w.write_all(if double {
        b"--- Below this line is the original bounce.\n\n".as_slice()
    } else {
        b"--- Below this line is a copy of the message.\n\n".as_slice()
    });
    let _ = w.write_all(b"Return-Path: <");
    let _ = w.write_all(sender);
    let _ = w.write_all(b">\n");
    let copied = if conf.maxbytes > 0 {
        io::copy(&mut mess.take(conf.maxbytes), &mut w)
    } else {
        io::copy(&mut &mess, &mut w)
    };
    copied.map_err(tmp)?;
    if conf.maxbytes > 0
        && std::fs::metadata(mess_path).map(|m| m.len() > conf.maxbytes).unwrap_or(false)
    {
        let _ = w.write_all(b"\n\n--- Rest of message truncated.\n");
    }
    let env_sender = Address::new(bsender).map_err(|_| Verdict::perm("bad bounce sender"))?;
    let rcpt = Address::new(brcpt).map_err(|_| Verdict::perm("bounce recipient too long"))?;
    inj.finish(&Envelope::new(env_sender, vec![rcpt]))?;
    Ok(qp)
}

fn quote_local(local: &[u8]) -> String {
    String::from_utf8_lossy(&qmail::address::quote_local(local)).into_owned()
}

fn quote_address(addr: &[u8]) -> String {
    String::from_utf8_lossy(&qmail::address::quote_address(addr)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> BounceConf {
        BounceConf {
            from: "MAILER-DAEMON".into(),
            host: "mx.example".into(),
            doubleto: "postmaster".into(),
            doublehost: "mx.example".into(),
            maxbytes: 0,
            custom: Vec::new(),
        }
    }

    #[test]
    fn routing() {
        let c = conf();
        assert_eq!(route(b"#@[]", &c), None);
        assert_eq!(route(b"", &c), Some((b"#@[]".to_vec(), b"postmaster@mx.example".to_vec())));
        assert_eq!(route(b"list-@host-@[]", &c), Some((vec![], b"list-@host".to_vec())));
        assert_eq!(route(b"a@b", &c), Some((vec![], b"a@b".to_vec())));
    }

    #[test]
    fn paragraphs() {
        let dir = std::env::temp_dir().join(format!("qmail-bounce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b");
        append(&p, b"a@b", b"Sorry, no mailbox here by that name. (#5.1.1)").unwrap();
        append(&p, b"x\ny@z", b"line one\n\nline three\n").unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"<a@b>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n<x_y@z>:\nline one\n/\nline three\n\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_local(b"MAILER-DAEMON"), "MAILER-DAEMON");
        assert_eq!(quote_local(b""), "\"\"");
        assert_eq!(quote_local(b"a b"), "\"a b\"");
        assert_eq!(quote_local(b"a\"b"), "\"a\\\"b\"");
        assert_eq!(quote_local(b".a"), "\".a\"");
        assert_eq!(quote_address(b"a b@c"), "\"a b\"@c");
    }
}
