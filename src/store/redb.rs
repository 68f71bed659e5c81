//! [`Redb`]: a node's durable state in one redb file (pure Rust, ACID, crash-safe).
//!
//! Layout (format 1), four tables:
//! - `meta`: `format` = `secure-gossip store 1`; `next_sequence` = u64 little-endian;
//! - `messages`: author (32 bytes) ‖ sequence (8, big-endian, so an author's messages are
//!   adjacent and ordered) → the envelope's protobuf encoding (`docs/PROTOCOL.md` §1);
//! - `authors`: author (32 bytes) → record: version 1, flags (bit 0: forgotten), newest
//!   (u64 LE), then the ids and the equivocated ids, each as a u32 LE count of ranges and
//!   that many inclusive `(start, end)` u64 LE pairs.
//!
//! Every open checks the whole file's integrity (redb's page checksums), so a file altered
//! since it was written is refused with a clear error instead of being trusted; commits are
//! two-phase, so a damaged last commit is an error too, never a quiet step back to the one
//! before. A new store is made under a temporary name and renamed into place once it holds
//! its format, so an empty or half-made file at `path` is always damage, never a new store.
//! A write that fails (a full disk) leaves redb's handle unusable: the next write opens the
//! file again. Envelopes are not verified again at start-up: they were verified before they
//! were written, and the file is this node's own (whoever can write it can also write the
//! node's key file).
//!
//! In debug builds redb's own debug assertions may panic on some damaged files where
//! release builds return [`StoreError::Corrupt`]; this crate's tests build redb without them.

use super::{Store, StoreError};
use crate::engine::{AuthorRecord, Changes, Snapshot};
use crate::envelope::Envelope;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const AUTHORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("authors");

/// The value of `meta`'s `format` key this version writes and reads.
const FORMAT: &[u8] = b"secure-gossip store 1";
const RECORD_VERSION: u8 = 1;

/// redb's page cache (its default is 1 GiB): the store is read once at start-up and then only
/// written, so the file is not also held in memory beside the engine's own state.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// A durable store in one redb file. Opening it takes an exclusive lock (`<file>.lock`
/// beside it, kept for the handle's life): a second process (or handle) gets
/// [`StoreError::InUse`].
pub struct Redb {
    /// `None` after a failed write, until the next write opens the file again.
    db: Option<Database>,
    path: PathBuf,
    /// An exclusive lock on `<path>.lock`, held for as long as this handle lives: redb's own
    /// lock goes with its handle (dropped after a failed write), and a new file is put in
    /// place only under this one.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Redb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redb").field("path", &self.path).finish()
    }
}

impl Redb {
    /// Opens the store at `path`, creating it if the file does not exist (or is empty). The
    /// whole file's integrity is checked; a truncated, altered or foreign file, or one open
    /// elsewhere, is a [`StoreError`] naming the file and what is wrong.
    pub fn open(path: impl AsRef<Path>) -> Result<Redb, StoreError> {
        let path = path.as_ref().to_path_buf();
        let lock = lock(&path)?;
        if !path.exists() {
            create(&path)?;
        }
        let store = Redb {
            db: Some(open_db(&path)?),
            path,
            _lock: lock,
        };
        store.check_format()?;
        Ok(store)
    }

    fn db(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            self.db = Some(open_db(&self.path)?);
        }
        Ok(self.db.as_ref().expect("opened above"))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses a file of another program or format.
    fn check_format(&self) -> Result<(), StoreError> {
        let db = self.db.as_ref().expect("open");
        let read = db.begin_read().map_err(|e| self.error(e.into()))?;
        let tables: Vec<String> = read
            .list_tables()
            .map_err(|e| self.error(e.into()))?
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        let foreign = |reason: String| StoreError::Foreign {
            path: self.path.clone(),
            reason,
        };
        let meta = read.open_table(META).map_err(|_| {
            foreign(format!(
                "a redb database without this crate's tables (it has: {})",
                tables.join(", ")
            ))
        })?;
        let format = meta
            .get("format")
            .map_err(|e| self.error(e.into()))?
            .map(|v| v.value().to_vec());
        match format {
            Some(f) if f == FORMAT => Ok(()),
            Some(f) => Err(foreign(format!(
                "store format {:?}, this version reads {:?}",
                String::from_utf8_lossy(&f),
                String::from_utf8_lossy(FORMAT)
            ))),
            None => Err(foreign("a redb database with no store format".into())),
        }
    }

    fn error(&self, e: redb::Error) -> StoreError {
        open_error(&self.path, e)
    }

    fn corrupt(&self, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    fn write(db: &Database, changes: &Changes) -> Result<(), redb::Error> {
        let mut write = db.begin_write()?;
        write.set_durability(Durability::Immediate)?;
        write.set_two_phase_commit(true);
        {
            let mut messages = write.open_table(MESSAGES)?;
            let mut authors = write.open_table(AUTHORS)?;
            let mut meta = write.open_table(META)?;
            if changes.replaces_everything() {
                messages.retain(|_, _| false)?;
                authors.retain(|_, _| false)?;
            }
            for id in changes.delete_messages() {
                messages.remove(id.to_bytes().as_slice())?;
            }
            for envelope in changes.put_messages() {
                messages.insert(
                    envelope.id().to_bytes().as_slice(),
                    envelope.encode().as_slice(),
                )?;
            }
            for author in changes.delete_authors() {
                authors.remove(author.as_bytes().as_slice())?;
            }
            for (author, record) in changes.put_authors() {
                authors.insert(
                    author.as_bytes().as_slice(),
                    encode_record(record).as_slice(),
                )?;
            }
            if let Some(next) = changes.next_sequence() {
                meta.insert("next_sequence", next.to_le_bytes().as_slice())?;
            }
        }
        write.commit()?;
        Ok(())
    }
}

impl Store for Redb {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let read = self.db()?.begin_read().map_err(|e| self.error(e.into()))?;
        let mut snapshot = Snapshot::default();
        let meta = read.open_table(META).map_err(|e| self.error(e.into()))?;
        if let Some(next) = meta
            .get("next_sequence")
            .map_err(|e| self.error(e.into()))?
        {
            let bytes: [u8; 8] = next
                .value()
                .try_into()
                .map_err(|_| self.corrupt("next_sequence is not 8 bytes".into()))?;
            snapshot.next_sequence = Some(u64::from_le_bytes(bytes));
        }
        let messages = read
            .open_table(MESSAGES)
            .map_err(|e| self.error(e.into()))?;
        for entry in messages.range(..).map_err(|e| self.error(e.into()))? {
            let (key, value) = entry.map_err(|e| self.error(e.into()))?;
            let envelope = Envelope::decode(value.value())
                .map_err(|e| self.corrupt(format!("message {}: {e}", hex(key.value()))))?;
            if envelope.id().to_bytes().as_slice() != key.value() {
                return Err(self.corrupt(format!(
                    "message {} is stored under another id",
                    hex(key.value())
                )));
            }
            snapshot.messages.push(envelope);
        }
        let authors = read.open_table(AUTHORS).map_err(|e| self.error(e.into()))?;
        for entry in authors.range(..).map_err(|e| self.error(e.into()))? {
            let (key, value) = entry.map_err(|e| self.error(e.into()))?;
            let author = <[u8; 32]>::try_from(key.value())
                .map(PublicKey::from_bytes)
                .map_err(|_| {
                    self.corrupt(format!("author key {} is not 32 bytes", hex(key.value())))
                })?;
            let record = decode_record(value.value())
                .map_err(|e| self.corrupt(format!("author {}: {e}", hex(key.value()))))?;
            snapshot.authors.push((author, record));
        }
        Ok(snapshot)
    }

    fn commit(&mut self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let result = Redb::write(self.db()?, changes);
        result.map_err(|e| {
            // redb keeps failing after an I/O error: a fresh handle for the next try.
            self.db = None;
            self.error(e)
        })
    }
}

/// Takes the exclusive lock beside `path` (`InUse` if another handle has it).
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            reason: format!("{}: {e}", Path::new(&name).display()),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io {
            path: path.to_path_buf(),
            reason: format!("locking {}: {e}", Path::new(&name).display()),
        }),
    }
}

/// Opens an existing store file, checking its integrity.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    Database::builder()
        .set_check_integrity_on_open(true)
        .set_cache_size(CACHE_BYTES)
        .open(path)
        .map_err(|e| open_error(path, e.into()))
}

/// Makes a new store at `path` (under the lock): written with its tables and format under a
/// temporary name, then renamed into place and the directory synced, so `path` never holds a
/// half-made file.
fn create(path: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let name = path.file_name().ok_or_else(|| StoreError::Io {
        path: path.to_path_buf(),
        reason: "not a file name".into(),
    })?;
    let mut temporary = name.to_os_string();
    temporary.push(".new");
    let temporary = path.with_file_name(temporary);
    let _ = std::fs::remove_file(&temporary);
    {
        let db = Database::create(&temporary).map_err(|e| open_error(path, e.into()))?;
        let made = (|| -> Result<(), redb::Error> {
            let mut write = db.begin_write()?;
            write.set_two_phase_commit(true);
            write.open_table(META)?.insert("format", FORMAT)?;
            write.open_table(MESSAGES)?;
            write.open_table(AUTHORS)?;
            write.commit()?;
            Ok(())
        })();
        made.map_err(|e| open_error(path, e))?;
    }
    std::fs::rename(&temporary, path).map_err(io)?;
    // The rename itself durable (directories can be synced on Unix).
    #[cfg(unix)]
    {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// What a redb error says about the file.
fn open_error(path: &Path, e: redb::Error) -> StoreError {
    let path = path.to_path_buf();
    match e {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::InUse { path }
        }
        redb::Error::Corrupted(reason) => StoreError::Corrupt { path, reason },
        redb::Error::UpgradeRequired(version) => StoreError::Foreign {
            path,
            reason: format!("a redb file of an older file format ({version})"),
        },
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Foreign {
                path,
                reason: format!("not a redb database ({io})"),
            }
        }
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupt {
                path,
                reason: format!("the file ends early ({io})"),
            }
        }
        other => StoreError::Io {
            path,
            reason: other.to_string(),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_record(record: &AuthorRecord) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(22 + 16 * (record.ids.range_count() + record.equivocated.range_count()));
    out.push(RECORD_VERSION);
    out.push(u8::from(record.forgotten));
    out.extend_from_slice(&record.newest.to_le_bytes());
    for set in [&record.ids, &record.equivocated] {
        out.extend_from_slice(&(set.range_count() as u32).to_le_bytes());
        for value in set.to_wire() {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

fn decode_record(bytes: &[u8]) -> Result<AuthorRecord, String> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(format!("record ends early ({} bytes)", bytes.len()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let version = take(1)?[0];
    if version != RECORD_VERSION {
        return Err(format!("record version {version}, this version reads 1"));
    }
    let flags = take(1)?[0];
    if flags > 1 {
        return Err(format!("unknown record flags {flags:#x}"));
    }
    let newest = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
    let mut sets = [RangeSet::new(), RangeSet::new()];
    for set in &mut sets {
        let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let len = count
            .checked_mul(16)
            .filter(|&len| len <= bytes.len())
            .ok_or_else(|| format!("record claims {count} ranges"))?;
        let values: Vec<u64> = take(len)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        *set = RangeSet::from_wire(&values).map_err(|e| format!("bad ranges: {e}"))?;
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the record", rest.len()));
    }
    let [ids, equivocated] = sets;
    Ok(AuthorRecord {
        ids,
        newest,
        equivocated,
        forgotten: flags == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_errors() {
        let mut record = AuthorRecord::new(RangeSet::from_range(3, 9), 1234);
        record.equivocated.insert(5);
        record.forgotten = true;
        let bytes = encode_record(&record);
        assert_eq!(decode_record(&bytes).unwrap(), record);
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_record(&huge).unwrap_err().contains("claims"));
        let mut long = bytes;
        long.push(0);
        assert!(decode_record(&long).is_err());
    }
}
