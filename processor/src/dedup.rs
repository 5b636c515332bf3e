//! The dedup store: which webhooks this processor has already turned into an output, in RocksDB.
//!
//! Layout (format version [`FORMAT_VERSION`], checked at open):
//! - column family `dedup`: key = source, `0x00`, dedup key; value = expiry (ms since the epoch, i64
//!   big-endian) then first-seen time (same encoding). An entry whose expiry has passed counts as absent, and
//!   a compaction filter deletes it, so the store stays bounded by the dedup window.
//! - column family `default`: `meta/version`, and `checkpoint/{topic}/{partition}` = the next raw offset
//!   whose outputs are not yet reflected here (i64 big-endian).
//!
//! Invariant: a dedup key is written, together with its partition's checkpoint, in one `WriteBatch` after the
//! record's output was acknowledged by Kafka, so a key present here always has a published output.
//!
//! Calls block on disk I/O: callers run them off the async workers ([`tokio::task::spawn_blocking`]).

use std::path::Path;
use std::sync::Arc;

use rocksdb::{compaction_filter::Decision, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const CF_DEDUP: &str = "dedup";
const VERSION_KEY: &[u8] = b"meta/version";

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error (disk full, read-only folder, corruption…).
    #[error("dedup store: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The folder holds a store of another format version.
    #[error("dedup store at {path} has format version {found}; this build reads version {FORMAT_VERSION}")]
    Version {
        /// The folder.
        path: String,
        /// The version found.
        found: String,
    },
    /// The store is not set up as expected (a bug).
    #[error("dedup store: column family `{0}` is missing")]
    MissingColumnFamily(&'static str),
}

/// One webhook to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Source name.
    pub source: String,
    /// Dedup key.
    pub dedup_key: String,
    /// When the ingress received it (ms).
    pub seen_at_ms: i64,
    /// When to forget it (ms).
    pub expires_at_ms: i64,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct DedupStore {
    db: Arc<DB>,
}

impl std::fmt::Debug for DedupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupStore").field("path", &self.db.path()).finish()
    }
}

fn dedup_key(source: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source.len() + 1 + key.len());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn expiry_of(value: &[u8]) -> Option<i64> {
    value.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes)
}

fn checkpoint_key(topic: &str, partition: i32) -> Vec<u8> {
    format!("checkpoint/{topic}/{partition}").into_bytes()
}

impl DedupStore {
    /// Opens (or creates) the store in `dir`. Fails if another process holds it, or if it has another format.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_keep_log_file_num(4);
        let mut dedup_opts = Options::default();
        dedup_opts.set_compaction_filter("hookline-dedup-expiry", |_level: u32, _key: &[u8], value: &[u8]| {
            match expiry_of(value) {
                Some(expiry) if expiry <= hookline_runtime::now_ms() => Decision::Remove,
                _ => Decision::Keep,
            }
        });
        // Dedup lookups are point reads of mostly-absent keys: a bloom filter answers those without disk reads.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        dedup_opts.set_block_based_table_factory(&table);
        let cfs = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, Options::default()),
            ColumnFamilyDescriptor::new(CF_DEDUP, dedup_opts),
        ];
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)?;
        match db.get(VERSION_KEY)? {
            None => db.put(VERSION_KEY, FORMAT_VERSION.to_string())?,
            Some(v) if v == FORMAT_VERSION.to_string().as_bytes() => {}
            Some(v) => {
                return Err(StoreError::Version {
                    path: dir.display().to_string(),
                    found: String::from_utf8_lossy(&v).into_owned(),
                })
            }
        }
        Ok(DedupStore { db: Arc::new(db) })
    }

    /// Whether an unexpired entry exists for this webhook.
    pub fn contains(&self, source: &str, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        let cf = self.db.cf_handle(CF_DEDUP).ok_or(StoreError::MissingColumnFamily(CF_DEDUP))?;
        Ok(self
            .db
            .get_pinned_cf(cf, dedup_key(source, key))?
            .and_then(|v| expiry_of(&v))
            .is_some_and(|expiry| expiry > now_ms))
    }

    /// Writes entries and the partition checkpoint atomically (one `WriteBatch`, one WAL write).
    pub fn record(&self, entries: &[Entry], checkpoint: (&str, i32, i64)) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_DEDUP).ok_or(StoreError::MissingColumnFamily(CF_DEDUP))?;
        let mut batch = WriteBatch::default();
        for e in entries {
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&e.expires_at_ms.to_be_bytes());
            value[8..].copy_from_slice(&e.seen_at_ms.to_be_bytes());
            batch.put_cf(cf, dedup_key(&e.source, &e.dedup_key), value);
        }
        let (topic, partition, next_offset) = checkpoint;
        batch.put(checkpoint_key(topic, partition), next_offset.to_be_bytes());
        self.db.write_opt(batch, &WriteOptions::default())?;
        Ok(())
    }

    /// The partition's checkpoint: the next raw offset not yet reflected here.
    pub fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        Ok(self
            .db
            .get(checkpoint_key(topic, partition))?
            .and_then(|v| v.as_slice().try_into().ok().map(i64::from_be_bytes)))
    }

    /// Runs a full compaction of the dedup entries (drops expired ones now rather than eventually).
    pub fn compact(&self) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_DEDUP).ok_or(StoreError::MissingColumnFamily(CF_DEDUP))?;
        self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Flushes memtables and the WAL to disk (on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, key: &str, expires_at_ms: i64) -> Entry {
        Entry { source: source.into(), dedup_key: key.into(), seen_at_ms: 1, expires_at_ms }
    }

    #[test]
    fn entries_are_namespaced_by_source_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupStore::open(dir.path()).unwrap();
        store.record(&[entry("stripe", "evt_1", 1_000)], ("raw", 3, 8)).unwrap();
        assert!(store.contains("stripe", "evt_1", 999).unwrap());
        assert!(!store.contains("stripe", "evt_1", 1_000).unwrap(), "expired at its expiry");
        assert!(!store.contains("github", "evt_1", 999).unwrap(), "another source's key is another key");
        assert!(!store.contains("stripe", "evt_2", 999).unwrap());
        assert_eq!(store.checkpoint("raw", 3).unwrap(), Some(8));
        assert_eq!(store.checkpoint("raw", 4).unwrap(), None);
    }

    #[test]
    fn state_survives_reopening_and_one_process_holds_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DedupStore::open(dir.path()).unwrap();
            store.record(&[entry("s", "k", i64::MAX)], ("raw", 0, 1)).unwrap();
            assert!(DedupStore::open(dir.path()).is_err(), "RocksDB's lock keeps a second opener out");
        }
        let store = DedupStore::open(dir.path()).unwrap();
        assert!(store.contains("s", "k", 0).unwrap());
        assert_eq!(store.checkpoint("raw", 0).unwrap(), Some(1));
    }

    #[test]
    fn compaction_removes_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = DedupStore::open(dir.path()).unwrap();
        let now = hookline_runtime::now_ms();
        store.record(&[entry("s", "old", now - 1), entry("s", "live", now + 3_600_000)], ("raw", 0, 2)).unwrap();
        store.flush().unwrap();
        store.compact().unwrap();
        let cf = store.db.cf_handle(CF_DEDUP).unwrap();
        assert!(store.db.get_cf(cf, dedup_key("s", "old")).unwrap().is_none(), "expired entry physically removed");
        assert!(store.db.get_cf(cf, dedup_key("s", "live")).unwrap().is_some());
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DedupStore::open(dir.path()).unwrap();
            store.db.put(VERSION_KEY, b"99").unwrap();
        }
        let err = DedupStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
    }
}
