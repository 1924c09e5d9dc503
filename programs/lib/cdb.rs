//! cdb: djb's constant databases, read and written through the `cdb` crate.
//!
//! The crate maps the file and trusts its header; on an empty file it is unsound. So the
//! [`Reader`] reads the 2048-byte header itself first: a file under 2048 bytes, or a header
//! whose tables point outside the file, is [`CdbError::Corrupt`] (a temporary failure for the
//! caller, never a panic); a header with no slots is an empty database that the crate never
//! sees. The [`Writer`] builds into a temporary file, fsyncs, renames and fsyncs the directory.

use crate::file::Stamp;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The size of a cdb header: 256 (position, slots) pairs of little-endian u32.
pub const HEADER: usize = 2048;

#[derive(Debug)]
pub enum CdbError {
    /// The file is not a valid cdb (too short, header out of bounds, truncated record).
    Corrupt,
    Io(io::Error),
}

impl std::fmt::Display for CdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CdbError::Corrupt => f.write_str("corrupt cdb file"),
            CdbError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CdbError {}

impl From<io::Error> for CdbError {
    fn from(e: io::Error) -> Self {
        CdbError::Io(e)
    }
}

/// An open cdb.
pub struct Reader {
    /// `None` for a database without records.
    db: Option<cdb::CDB>,
}

/// A cdb kept open between lookups by a long-lived process: opened again only when the file
/// at its path changed ([`Stamp`]: another inode, size, modification or change time), which
/// one `stat` per lookup tells. A database replaced by a rename (qmail-newu, qmail-cdb)
/// counts from the next lookup on, as when each lookup opened it.
#[derive(Default)]
pub struct Kept {
    open: Option<(Stamp, Reader)>,
}

impl Kept {
    /// The database at `path` as [`Reader::open`] gives it: `Ok(None)` when there is none.
    pub fn get(&mut self, path: &Path) -> Result<Option<&Reader>, CdbError> {
        let stamp = match std::fs::metadata(path) {
            Ok(m) => Stamp::of(&m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.open = None;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if !matches!(&self.open, Some((kept, _)) if *kept == stamp) {
            // stamped before it is opened: a change in between shows at the next lookup
            self.open = None;
            match Reader::open(path)? {
                Some(reader) => self.open = Some((stamp, reader)),
                None => return Ok(None),
            }
        }
        Ok(self.open.as_ref().map(|(_, reader)| reader))
    }
}

impl Reader {
    /// Open `path`: `Ok(None)` when it does not exist (absent is data), `Err` when it is
    /// unreadable or corrupt.
    pub fn open(path: &Path) -> Result<Option<Reader>, CdbError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        if size < HEADER as u64 || size > u64::from(u32::MAX) {
            return Err(CdbError::Corrupt);
        }
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header)?;
        let mut any = false;
        for pair in header.chunks_exact(8) {
            let pos = u64::from(u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]));
            let slots = u64::from(u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]));
            if slots == 0 {
                continue;
            }
            // every table lies after the header and inside the file
            if pos < HEADER as u64 || pos + slots * 8 > size {
                return Err(CdbError::Corrupt);
            }
            any = true;
        }
        if !any {
            return Ok(Some(Reader { db: None }));
        }
        let db = cdb::CDB::open(path).map_err(|_| CdbError::Corrupt)?;
        Ok(Some(Reader { db: Some(db) }))
    }

    /// The first value stored under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, CdbError> {
        match &self.db {
            None => Ok(None),
            Some(db) => db.find(key).next().transpose().map_err(|_| CdbError::Corrupt),
        }
    }

    /// True when `key` is present.
    pub fn contains(&self, key: &[u8]) -> Result<bool, CdbError> {
        Ok(self.get(key)?.is_some())
    }

    /// Every value stored under `key`, in file order.
    pub fn get_all(&self, key: &[u8]) -> Result<Vec<Vec<u8>>, CdbError> {
        match &self.db {
            None => Ok(Vec::new()),
            Some(db) => db.find(key).collect::<Result<_, _>>().map_err(|_| CdbError::Corrupt),
        }
    }
}

/// Builds a cdb in a temporary file; [`Writer::finish`] makes it durable under its name.
pub struct Writer {
    make: cdb::CDBMake,
    file: File,
    tmp: std::path::PathBuf,
}

impl Writer {
    /// Create (or truncate) the temporary file `tmp` with `mode` (before umask).
    pub fn create(tmp: &Path, mode: u32) -> io::Result<Writer> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(tmp)?;
        let make = cdb::CDBMake::new(file.try_clone()?)?;
        Ok(Writer { make, file, tmp: tmp.to_path_buf() })
    }

    pub fn add(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.make.add(key, value)
    }

    /// Finish the database, fsync it, rename it onto `target` and fsync the directory.
    pub fn finish(self, target: &Path) -> io::Result<()> {
        let Writer { make, file, tmp } = self;
        let result = (|| {
            make.finish()?;
            file.sync_all()?;
            std::fs::rename(&tmp, target)?;
            crate::file::fsync_dir(crate::file::parent_of(target))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qmail-cdb-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(dir: &Path, records: &[(&[u8], &[u8])]) -> PathBuf {
        let target = dir.join("x.cdb");
        let mut w = Writer::create(&dir.join("x.tmp"), 0o644).unwrap();
        for (k, v) in records {
            w.add(k, v).unwrap();
        }
        w.finish(&target).unwrap();
        target
    }

    #[test]
    fn a_kept_database_is_opened_again_only_when_it_changed() {
        let d = dir("kept");
        let path = d.join("x.cdb");
        let mut kept = Kept::default();
        assert!(kept.get(&path).unwrap().is_none(), "none yet");
        write(&d, &[(b"k", b"1")]);
        assert_eq!(kept.get(&path).unwrap().unwrap().get(b"k").unwrap(), Some(b"1".to_vec()));
        // unchanged: the same reader, not opened again
        let first = kept.get(&path).unwrap().unwrap() as *const Reader;
        assert_eq!(kept.get(&path).unwrap().unwrap() as *const Reader, first);
        // replaced by a rename, as qmail-newu does: the new one from the next lookup on
        write(&d, &[(b"k", b"2")]);
        assert_eq!(kept.get(&path).unwrap().unwrap().get(b"k").unwrap(), Some(b"2".to_vec()));
        // removed: none, and a corrupt one is an error, not the old one
        fs::remove_file(&path).unwrap();
        assert!(kept.get(&path).unwrap().is_none());
        fs::write(&path, b"short").unwrap();
        assert!(matches!(kept.get(&path), Err(CdbError::Corrupt)));
        write(&d, &[(b"k", b"3")]);
        assert_eq!(kept.get(&path).unwrap().unwrap().get(b"k").unwrap(), Some(b"3".to_vec()));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn round_trip() {
        let d = dir("rt");
        let path = write(&d, &[(b"one", b"1"), (b"two", b"2"), (b"one", b"uno"), (b"", b"empty")]);
        let r = Reader::open(&path).unwrap().unwrap();
        assert_eq!(r.get(b"one").unwrap(), Some(b"1".to_vec()));
        assert_eq!(r.get_all(b"one").unwrap(), vec![b"1".to_vec(), b"uno".to_vec()]);
        assert_eq!(r.get(b"").unwrap(), Some(b"empty".to_vec()));
        assert!(!r.contains(b"three").unwrap());
        assert!(!d.join("x.tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_and_absent() {
        let d = dir("empty");
        let path = write(&d, &[]);
        assert_eq!(fs::metadata(&path).unwrap().len(), 2048);
        let r = Reader::open(&path).unwrap().unwrap();
        assert_eq!(r.get(b"x").unwrap(), None);
        assert!(Reader::open(&d.join("absent.cdb")).unwrap().is_none());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hostile_files_are_corrupt_not_panics() {
        let d = dir("hostile");
        let good = fs::read(write(&d, &[(b"key", b"value"), (b"k2", b"v2")])).unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; 1],
            vec![0; 2047],
            good[..2050].to_vec(),
            good[..good.len() - 1].to_vec(),
        ];
        // header tables pointing past the end, before the header, with huge slot counts
        for (pos, slots) in [(u32::MAX, 1u32), (0, 1), (2048, u32::MAX), (u32::MAX - 4, 2)] {
            let mut bad = good.clone();
            for i in 0..256 {
                bad[i * 8..i * 8 + 4].copy_from_slice(&pos.to_le_bytes());
                bad[i * 8 + 4..i * 8 + 8].copy_from_slice(&slots.to_le_bytes());
            }
            cases.push(bad);
        }
        // records whose slots point anywhere, with any lengths
        let table = u32::from_le_bytes(good[0..4].try_into().unwrap()) as usize;
        for v in [u32::MAX, u32::MAX - 7, 2048, 0x7fff_ffff] {
            let mut bad = good.clone();
            for off in (table..bad.len() - 3).step_by(4) {
                bad[off..off + 4].copy_from_slice(&v.to_le_bytes());
            }
            cases.push(bad);
            let mut bad = good.clone();
            bad[2048..2056].copy_from_slice(&[0xff; 8]);
            cases.push(bad);
        }
        for (i, case) in cases.iter().enumerate() {
            let path = d.join(format!("h{i}.cdb"));
            fs::write(&path, case).unwrap();
            if let Ok(Some(r)) = Reader::open(&path) {
                for key in [&b"key"[..], b"k2", b"", b"zzz"] {
                    let _ = r.get(key);
                    let _ = r.get_all(key);
                }
            }
        }
        for short in [0usize, 1, 2047] {
            let path = d.join(format!("s{short}.cdb"));
            fs::write(&path, vec![0; short]).unwrap();
            assert!(matches!(Reader::open(&path), Err(CdbError::Corrupt)), "{short} bytes");
        }
        fs::remove_dir_all(&d).unwrap();
    }
}
