//! queue::scan: the messages waiting in the queue, as qmail-qread lists them and qmail-qstat
//! counts them (and `qmailctl queue` and `qmailctl stat`, which call the same functions).
//!
//! # What is a message in the queue
//!
//! A message is waiting when `todo/<id>` exists (committed by qmail-queue, not yet
//! preprocessed) or `info/<S>/<id>` exists (preprocessed by qmail-todo: its sender in info,
//! its recipients in `local/<S>/<id>` and `remote/<S>/<id>`). A message file `mess/<S>/<id>`
//! with neither is not waiting mail: it is a qmail-queue still writing (nothing is committed
//! before `todo/<id>` is linked), or debris of a crash (an injection that died, or a finished
//! message whose info was removed before its message file), which qmail-send removes at its
//! next start or sweep ([`super::leftover`]). It is neither listed nor counted. When both todo and info exist, preprocessing
//! was interrupted and is redone from todo: the message counts once, as not yet preprocessed.
//!
//! # Reading
//!
//! Only directory listings decide what is in the queue, so a directory that cannot be read
//! is an [`Error`]: the listing would be incomplete. A message that leaves the queue while it
//! is being read is skipped silently; one whose files cannot be read is [`Trouble`], reported
//! by the caller while the listing goes on. In a system installation `info/`, `local/`,
//! `remote/` and `bounce/` are mode 0700, owned by qmails: only root and qmails can read them.

use super::records::{self, Record};
use super::split_name;
use crate::auto::SPLIT;
use crate::date822::Utc;
use crate::safe::printable;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where a waiting message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `todo/<id>` exists: qmail-todo has not sorted its recipients yet.
    Todo,
    /// `info/<S>/<id>` exists and todo does not.
    Preprocessed,
}

/// A queue directory could not be listed, or the listing could not be written.
#[derive(Debug)]
pub enum Error {
    Dir { path: PathBuf, error: io::Error },
    Write(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Dir { path, error } => {
                write!(f, "unable to read {}: {error}", path.display())?;
                if error.kind() == io::ErrorKind::PermissionDenied {
                    write!(
                        f,
                        " (in a system installation only root and qmails may read the queue)"
                    )?;
                }
                Ok(())
            }
            Error::Write(e) => write!(f, "unable to write: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A message whose files could not be read: `file` (relative to the queue) and why.
#[derive(Debug)]
pub struct Trouble {
    pub id: u64,
    pub file: String,
    pub error: io::Error,
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trouble with #{}: unable to read {}: {}", self.id, self.file, self.error)
    }
}

/// The waiting messages of the queue `queue` (the `queue/` directory), sorted by id.
pub fn waiting(queue: &Path) -> Result<Vec<(u64, State)>, Error> {
    // todo first: a message preprocessed meanwhile is then seen in todo or in info, never
    // in neither
    let mut ids = BTreeMap::new();
    for id in dir_ids(&queue.join("todo"))? {
        ids.insert(id, State::Todo);
    }
    for s in 0..SPLIT {
        for id in dir_ids(&queue.join(format!("info/{s}")))? {
            ids.entry(id).or_insert(State::Preprocessed);
        }
    }
    Ok(ids.into_iter().collect())
}

/// The ids named in a directory (other names are not queue files and are ignored).
fn dir_ids(dir: &Path) -> Result<Vec<u64>, Error> {
    let fail = |error| Error::Dir { path: dir.to_path_buf(), error };
    let mut ids = Vec::new();
    for e in fs::read_dir(dir).map_err(fail)? {
        if let Some(id) = e.map_err(fail)?.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// qmail-qstat's two numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// every waiting message
    pub queued: usize,
    /// those not yet preprocessed
    pub todo: usize,
}

impl Counts {
    pub fn of(waiting: &[(u64, State)]) -> Counts {
        let todo = waiting.iter().filter(|(_, s)| *s == State::Todo).count();
        Counts { queued: waiting.len(), todo }
    }
}

impl fmt::Display for Counts {
    /// `messages in queue: N` and `messages in queue but not yet preprocessed: M`, each with
    /// its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "messages in queue: {}", self.queued)?;
        writeln!(f, "messages in queue but not yet preprocessed: {}", self.todo)
    }
}

/// Count the waiting messages.
pub fn count(queue: &Path) -> Result<Counts, Error> {
    Ok(Counts::of(&waiting(queue)?))
}

/// Which list a recipient is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Local,
    Remote,
    /// a recipient of a message not yet preprocessed: not sorted into local or remote yet
    Todo,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Local => "local",
            Channel::Remote => "remote",
            Channel::Todo => "todo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub channel: Channel,
    /// delivered (or bounced): marked `D` in its channel file
    pub done: bool,
    pub address: Vec<u8>,
}

/// A waiting message as qmail-qread shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub state: State,
    /// seconds since the epoch: when it was preprocessed (info's mtime) or committed (todo's)
    pub time: i64,
    /// bytes of the message file
    pub size: u64,
    pub sender: Vec<u8>,
    /// `bounce/<id>` exists: a bounce is being put together
    pub bouncing: bool,
    pub recipients: Vec<Recipient>,
}

/// Read message `id`. `Ok(None)` when it left the queue meanwhile.
pub fn read(queue: &Path, id: u64, state: State) -> Result<Option<Message>, Trouble> {
    if state == State::Todo {
        match read_todo(queue, id) {
            // preprocessed meanwhile
            Err(t) if t.error.kind() == io::ErrorKind::NotFound && t.file.starts_with("todo/") => {}
            other => return other,
        }
    }
    read_preprocessed(queue, id)
}

fn read_todo(queue: &Path, id: u64) -> Result<Option<Message>, Trouble> {
    let file = format!("todo/{id}");
    let (data, time) = read_file(queue, id, &file)?;
    let mut sender = None;
    let mut recipients = Vec::new();
    // a record cut short is not a recipient (todo is complete once linked; this is damage)
    for rec in records::all(&data) {
        match rec {
            Record::Sender(s) if sender.is_none() => sender = Some(s.to_vec()),
            Record::Recipient(a) => recipients.push(Recipient {
                channel: Channel::Todo,
                done: false,
                address: a.to_vec(),
            }),
            _ => {}
        }
    }
    let size = size(queue, id)?;
    Ok(Some(Message {
        id,
        state: State::Todo,
        time,
        size,
        sender: sender.unwrap_or_default(),
        bouncing: queue.join(format!("bounce/{id}")).exists(),
        recipients,
    }))
}

fn read_preprocessed(queue: &Path, id: u64) -> Result<Option<Message>, Trouble> {
    let info = split_name("info", id);
    let (data, time) = match read_file(queue, id, &info) {
        Err(t) if t.error.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let size = match size(queue, id) {
        // info goes before the message file when a message is done
        Err(t) if t.error.kind() == io::ErrorKind::NotFound && !queue.join(&info).exists() => {
            return Ok(None)
        }
        other => other?,
    };
    let mut recipients = Vec::new();
    for channel in [Channel::Local, Channel::Remote] {
        let file = split_name(channel.name(), id);
        let data = match read_file(queue, id, &file) {
            Ok((data, _)) => data,
            Err(t) if t.error.kind() == io::ErrorKind::NotFound => continue,
            Err(t) => return Err(t),
        };
        for rec in records::all(&data) {
            let (done, address) = match rec {
                Record::Recipient(a) => (false, a),
                Record::Done(a) => (true, a),
                _ => continue,
            };
            recipients.push(Recipient { channel, done, address: address.to_vec() });
        }
    }
    Ok(Some(Message {
        id,
        state: State::Preprocessed,
        time,
        size,
        sender: super::info_sender(&data),
        bouncing: queue.join(format!("bounce/{id}")).exists(),
        recipients,
    }))
}

/// A queue file's bytes and its mtime.
fn read_file(queue: &Path, id: u64, file: &str) -> Result<(Vec<u8>, i64), Trouble> {
    let trouble = |error| Trouble { id, file: file.to_string(), error };
    let mut f = fs::File::open(queue.join(file)).map_err(trouble)?;
    let time = f.metadata().map_err(trouble)?.mtime();
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(trouble)?;
    Ok((data, time))
}

/// The size of the message file.
fn size(queue: &Path, id: u64) -> Result<u64, Trouble> {
    let file = split_name("mess", id);
    match fs::metadata(queue.join(&file)) {
        Ok(m) => Ok(m.len()),
        Err(error) => Err(Trouble { id, file, error }),
    }
}

impl fmt::Display for Message {
    /// qmail-qread's lines: `d Mon yyyy hh:mm:ss GMT  #id  size  <sender> ` with ` bouncing`
    /// or ` not yet preprocessed` appended, then `[  done]\tchannel\taddress` per recipient.
    /// Bytes outside printable ASCII show as `_`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let date = Utc::from_unix(self.time).rfc822();
        let date = date.strip_suffix(" -0000").unwrap_or(&date);
        write!(f, "{date} GMT  #{}  {}  <{}> ", self.id, self.size, printable(&self.sender, '_'))?;
        if self.bouncing {
            f.write_str(" bouncing")?;
        }
        if self.state == State::Todo {
            f.write_str(" not yet preprocessed")?;
        }
        f.write_str("\n")?;
        for r in &self.recipients {
            let done = if r.done { "  done" } else { "" };
            writeln!(f, "{done}\t{}\t{}", r.channel.name(), printable(&r.address, '_'))?;
        }
        Ok(())
    }
}

/// Write the listing of every waiting message to `out`, passing each [`Trouble`] to
/// `trouble` and going on. Returns how many messages could not be read.
pub fn list(
    queue: &Path,
    out: &mut impl Write,
    mut trouble: impl FnMut(&Trouble),
) -> Result<usize, Error> {
    let mut troubles = 0;
    for (id, state) in waiting(queue)? {
        match read(queue, id, state) {
            Ok(Some(m)) => out.write_all(m.to_string().as_bytes()).map_err(Error::Write)?,
            Ok(None) => {}
            Err(t) => {
                troubles += 1;
                trouble(&t);
            }
        }
    }
    out.flush().map_err(Error::Write)?;
    Ok(troubles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(state: State, bouncing: bool, recipients: Vec<Recipient>) -> Message {
        Message {
            id: 457,
            state,
            time: 1_795_307_472,
            size: 1234,
            sender: b"joe@example.org".to_vec(),
            bouncing,
            recipients,
        }
    }

    fn rcpt(channel: Channel, done: bool, address: &[u8]) -> Recipient {
        Recipient { channel, done, address: address.to_vec() }
    }

    #[test]
    fn format() {
        let m = message(
            State::Preprocessed,
            false,
            vec![
                rcpt(Channel::Local, true, b"alice@example.org"),
                rcpt(Channel::Local, false, b"bob@example.org"),
                rcpt(Channel::Remote, false, b"carol@d.test"),
            ],
        );
        assert_eq!(
            m.to_string(),
            "22 Nov 2026 00:31:12 GMT  #457  1234  <joe@example.org> \n\
             \x20 done\tlocal\talice@example.org\n\
             \tlocal\tbob@example.org\n\
             \tremote\tcarol@d.test\n"
        );
        let mut m = message(State::Preprocessed, true, vec![]);
        m.sender = b"".to_vec();
        m.time = 0;
        assert_eq!(m.to_string(), "1 Jan 1970 00:00:00 GMT  #457  1234  <>  bouncing\n");
        let m = message(State::Todo, false, vec![rcpt(Channel::Todo, false, b"x\n\xff\t@y")]);
        assert_eq!(
            m.to_string(),
            "22 Nov 2026 00:31:12 GMT  #457  1234  <joe@example.org>  not yet preprocessed\n\
             \ttodo\tx___@y\n"
        );
    }

    #[test]
    fn counts() {
        let w = [(1, State::Todo), (2, State::Preprocessed), (3, State::Preprocessed)];
        let c = Counts::of(&w);
        assert_eq!(c, Counts { queued: 3, todo: 1 });
        assert_eq!(
            c.to_string(),
            "messages in queue: 3\nmessages in queue but not yet preprocessed: 1\n"
        );
    }

    /// A queue tree in a temporary directory.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let root =
                std::env::temp_dir().join(format!("qmail-scan-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for dir in ["mess", "info", "local", "remote"] {
                for s in 0..SPLIT {
                    fs::create_dir_all(root.join(format!("{dir}/{s}"))).unwrap();
                }
            }
            for dir in ["todo", "bounce"] {
                fs::create_dir_all(root.join(dir)).unwrap();
            }
            Tree(root)
        }

        fn put(&self, file: &str, data: &[u8]) {
            fs::write(self.0.join(file), data).unwrap();
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn what_is_waiting() {
        let t = Tree::new("waiting");
        // 24: preprocessed, one recipient done; 25: committed only; 26: both (interrupted
        // preprocessing); 27: debris (a message file alone); 28: preprocessed and bouncing
        for id in [24, 25, 26, 27, 28] {
            t.put(&split_name("mess", id), b"Subject: x\n\nbody\n");
        }
        t.put(&split_name("info", 24), b"Fa@b\0");
        t.put(&split_name("local", 24), b"Dl1@x\0Tl2@x\0");
        t.put(&split_name("remote", 24), b"Tr@d.test\0Tpartial");
        t.put("todo/25", b"u0\0p9\0Fs@t\0Tone@x\0Ttwo@y\0");
        t.put("todo/26", b"u0\0p9\0Fnew@t\0Tn@x\0");
        t.put(&split_name("info", 26), b"Fold@t\0");
        t.put(&split_name("info", 28), b"F\0");
        t.put("bounce/28", b"");
        t.put("todo/not-a-message", b"");
        let w = waiting(&t.0).unwrap();
        assert_eq!(
            w,
            [
                (24, State::Preprocessed),
                (25, State::Todo),
                (26, State::Todo),
                (28, State::Preprocessed)
            ]
        );
        assert_eq!(count(&t.0).unwrap(), Counts { queued: 4, todo: 2 });

        let m = read(&t.0, 24, State::Preprocessed).unwrap().unwrap();
        assert_eq!(m.sender, b"a@b");
        assert_eq!(m.size, 17);
        assert_eq!(
            m.recipients,
            [
                rcpt(Channel::Local, true, b"l1@x"),
                rcpt(Channel::Local, false, b"l2@x"),
                rcpt(Channel::Remote, false, b"r@d.test"),
            ]
        );
        let m = read(&t.0, 25, State::Todo).unwrap().unwrap();
        assert_eq!((m.sender.as_slice(), m.state), (&b"s@t"[..], State::Todo));
        assert_eq!(
            m.recipients,
            [rcpt(Channel::Todo, false, b"one@x"), rcpt(Channel::Todo, false, b"two@y")]
        );
        assert_eq!(read(&t.0, 26, State::Todo).unwrap().unwrap().sender, b"new@t");
        assert!(read(&t.0, 28, State::Preprocessed).unwrap().unwrap().bouncing);

        // preprocessed while we looked: read as such; gone: skipped
        fs::remove_file(t.0.join("todo/25")).unwrap();
        t.put(&split_name("info", 25), b"Fs@t\0");
        assert_eq!(read(&t.0, 25, State::Todo).unwrap().unwrap().state, State::Preprocessed);
        assert_eq!(read(&t.0, 29, State::Todo).unwrap(), None);
        assert_eq!(read(&t.0, 29, State::Preprocessed).unwrap(), None);
        // info without its message file is trouble, and the listing goes on
        fs::remove_file(t.0.join(split_name("mess", 28))).unwrap();
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let n = list(&t.0, &mut out, |tr| seen.push(tr.to_string())).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            seen,
            [format!(
                "trouble with #28: unable to read {}: No such file or directory (os error 2)",
                split_name("mess", 28)
            )]
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches(" GMT  #").count(), 3, "{out}");
        assert!(!out.contains("#27"), "{out}");

        // a directory that cannot be listed is an error, not an empty listing
        fs::remove_dir_all(t.0.join("todo")).unwrap();
        let e = waiting(&t.0).unwrap_err();
        assert!(e.to_string().starts_with("unable to read "), "{e}");
        assert!(e.to_string().contains("todo"), "{e}");
    }
}
