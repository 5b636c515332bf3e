//! The local state store: a RocksDB cache of the dedup state, per raw partition. The source of truth is the
//! compacted changelog topic ([`crate::changelog`]); this folder can be deleted at any time and is rebuilt
//! from it ([`crate::restore`]).
//!
//! Layout (format version [`FORMAT_VERSION`], checked at open, with the raw topic the folder belongs to):
//! - column family `dedup`: key = raw partition (u32 big-endian), source, `0x00`, dedup key; value = expiry
//!   (ms since the epoch, i64 big-endian). An entry whose expiry has passed counts as absent, and a compaction
//!   filter deletes it, so the store stays bounded by the dedup windows.
//! - column family `expiry`: key = raw partition, expiry, source, `0x00`, dedup key: the entries in order of
//!   expiry, so the owner finds the expired ones to tombstone in the changelog ([`Store::expired`]).
//! - column family `default`:
//!   - `meta/version`, `meta/raw_topic`, `meta/instance`;
//!   - `changelog/{partition}`: the next changelog offset this cache has not applied (i64 big-endian);
//!   - `started/{partition}`: the highest raw offset whose processing started (i64 big-endian), written before
//!     each batch of records runs and deleted by the commit that covers it: every record from the committed
//!     offset up to it is a crash suspect if the process dies first ([`Marks`]);
//!   - `running/{partition}/{offset}` (offset i64 big-endian): a crash suspect being tried alone, with the
//!     number of times it was (u32).
//!
//! Invariant: only committed state is written here ([`Store::apply`] after the transaction that wrote it to
//! the changelog committed, or read back from the changelog read_committed), so the cache never knows
//! something the changelog does not. Entries are namespaced by raw partition because deduplication is per
//! partition: a redelivery has the same ordering key, hence the same partition.
//!
//! A failed write (a full or read-only disk) leaves RocksDB refusing every later write until it is reopened,
//! even once there is room again. [`Store::recover`] reopens it (the WAL replays what was acknowledged); the
//! partition workers call it between retries of a failed call, so a processor whose disk filled up carries
//! on by itself once space is freed, without skipping the records it could not record meanwhile.
//!
//! Every call blocks on disk I/O: callers run them off the async workers ([`tokio::task::spawn_blocking`]).
//! Writes are not fsynced: they survive a crash of the process (the OS has them); after a crash of the
//! machine, the changelog position stored with them is lost with them, so the cache re-reads what it missed.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use crate::changelog::Change;
use rocksdb::{compaction_filter::Decision, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;

const CF_DEDUP: &str = "dedup";
const CF_EXPIRY: &str = "expiry";
const VERSION_KEY: &[u8] = b"meta/version";
const RAW_TOPIC_KEY: &[u8] = b"meta/raw_topic";
/// Written by [`Store::recover`] to learn whether the database accepts writes again.
const PROBE_KEY: &[u8] = b"meta/probe";
/// This data folder's random instance id (see [`Store::instance`]).
const INSTANCE_KEY: &[u8] = b"meta/instance";

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error (disk full, read-only folder, corruption…).
    #[error("state store: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The folder holds a store of another format version.
    #[error("state store at {path} has format version {found}; this build reads version {FORMAT_VERSION}: move it away (the processor rebuilds this cache from the state changelog)")]
    Version {
        /// The folder.
        path: String,
        /// The version found.
        found: String,
    },
    /// The folder belongs to another raw topic.
    #[error("state store at {path} belongs to raw topic `{found}`, not `{expected}`: use one folder per raw topic")]
    OtherTopic {
        /// The folder.
        path: String,
        /// The raw topic it was made for.
        found: String,
        /// The configured raw topic.
        expected: String,
    },
    /// The database is closed: reopening it after a failed write failed too (the disk is still full).
    #[error("state store at {path} is closed after a failed write; reopening it failed: {reason}")]
    Closed {
        /// The folder.
        path: String,
        /// Why the last reopen failed.
        reason: String,
    },
    /// A stored value cannot be read.
    #[error("state store: corrupt {what}: {detail}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why.
        detail: String,
    },
}

/// An expired entry found by [`Store::expired`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Source name.
    pub source: String,
    /// Dedup key.
    pub dedup_key: String,
    /// The entry was written again with a later expiry: only its old index entry is to be removed.
    pub stale: bool,
    /// The index entry.
    index_key: Vec<u8>,
}

/// Positions that [`Store::apply`] records with a partition's changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    /// The next changelog offset the cache has not applied.
    pub changelog: Option<i64>,
    /// Every raw record below this offset is committed.
    pub raw: Option<i64>,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    instance: String,
    dir: PathBuf,
    /// `None` between closing a failed database and reopening it.
    db: RwLock<Option<DB>>,
    /// Why the last reopen failed.
    closed_because: Mutex<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.dir).finish()
    }
}

/// The open database, held for one call (a reopen waits for the calls in progress).
struct Db<'a>(RwLockReadGuard<'a, Option<DB>>);

impl Deref for Db<'_> {
    type Target = DB;

    fn deref(&self) -> &DB {
        // `Store::db` hands out a `Db` only when the database is open.
        self.0.as_ref().unwrap_or_else(|| unreachable!("Db is made only for an open database"))
    }
}

fn open_db(dir: &Path) -> Result<DB, StoreError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_keep_log_file_num(4);
    db_opts.set_max_total_wal_size(64 << 20);
    // Memtables of all column families together stay under 32 MB (RocksDB's default is 64 MB per memtable,
    // two per family): behind a backlog of a million webhooks they held over 200 MB. Flushes are cheap here.
    db_opts.set_db_write_buffer_size(32 << 20);
    let mut dedup_opts = Options::default();
    dedup_opts.set_compaction_filter(
        "hookline-dedup-expiry",
        |_level: u32, _key: &[u8], value: &[u8]| match expiry_of(value) {
            Some(expiry) if expiry <= hookline_runtime::now_ms() => Decision::Remove,
            _ => Decision::Keep,
        },
    );
    // Dedup lookups are point reads of mostly-absent keys: a bloom filter answers those without disk reads.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    dedup_opts.set_block_based_table_factory(&table);
    dedup_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Index entries of partitions this process no longer owns are never swept; the filter drops them a week
    // after their expiry (the owner of the time has tombstoned the entry long before).
    let mut expiry_opts = Options::default();
    expiry_opts.set_compaction_filter("hookline-expiry-index", |_level: u32, key: &[u8], _value: &[u8]| {
        match key.get(4..12).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes) {
            Some(expiry) if expiry <= hookline_runtime::now_ms() - 7 * 24 * 3600 * 1000 => Decision::Remove,
            _ => Decision::Keep,
        }
    });
    let cfs = vec![
        ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, Options::default()),
        ColumnFamilyDescriptor::new(CF_DEDUP, dedup_opts),
        ColumnFamilyDescriptor::new(CF_EXPIRY, expiry_opts),
    ];
    Ok(DB::open_cf_descriptors(&db_opts, dir, cfs)?)
}

fn dedup_cf(db: &DB) -> Result<&rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(CF_DEDUP)
        .ok_or_else(|| StoreError::Corrupt { what: "column families".into(), detail: "`dedup` is missing".into() })
}

fn expiry_cf(db: &DB) -> Result<&rocksdb::ColumnFamily, StoreError> {
    db.cf_handle(CF_EXPIRY)
        .ok_or_else(|| StoreError::Corrupt { what: "column families".into(), detail: "`expiry` is missing".into() })
}

fn expiry_index_key(partition: i32, expires_at_ms: i64, source: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + source.len() + 1 + key.len());
    k.extend_from_slice(&partition_prefix(partition));
    k.extend_from_slice(&expires_at_ms.to_be_bytes());
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn changelog_key(partition: i32) -> Vec<u8> {
    format!("changelog/{partition}").into_bytes()
}

fn partition_prefix(partition: i32) -> [u8; 4] {
    u32::try_from(partition).unwrap_or(0).to_be_bytes()
}

fn dedup_key(partition: i32, source: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + source.len() + 1 + key.len());
    k.extend_from_slice(&partition_prefix(partition));
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn expiry_of(value: &[u8]) -> Option<i64> {
    value.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes)
}

fn running_prefix(partition: i32) -> Vec<u8> {
    format!("running/{partition}/").into_bytes()
}

fn started_key(partition: i32) -> Vec<u8> {
    format!("started/{partition}").into_bytes()
}

fn running_key(partition: i32, offset: i64) -> Vec<u8> {
    let mut k = running_prefix(partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// A partition's crash marks ([`Store::marks`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// Every record from the committed offset up to this one had started.
    pub started: Option<i64>,
    /// Suspects tried alone: offset → attempts.
    pub solo: BTreeMap<i64, u32>,
}

impl Marks {
    /// How many times the record at `offset` was tried alone, if it is a crash suspect.
    pub fn suspect(&self, offset: i64) -> Option<u32> {
        match self.solo.get(&offset) {
            Some(attempts) => Some(*attempts),
            None => self.started.is_some_and(|upto| offset <= upto).then_some(0),
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` for `raw_topic`. Fails if another process holds it, or if it has
    /// another format or another raw topic.
    pub fn open(dir: &Path, raw_topic: &str) -> Result<Self, StoreError> {
        let db = open_db(dir)?;
        let path = dir.display().to_string();
        match db.get(VERSION_KEY)? {
            None => db.put(VERSION_KEY, FORMAT_VERSION.to_string())?,
            Some(v) if v == FORMAT_VERSION.to_string().as_bytes() => {}
            Some(v) => return Err(StoreError::Version { path, found: String::from_utf8_lossy(&v).into_owned() }),
        }
        match db.get(RAW_TOPIC_KEY)? {
            None => db.put(RAW_TOPIC_KEY, raw_topic)?,
            Some(t) if t == raw_topic.as_bytes() => {}
            Some(t) => {
                return Err(StoreError::OtherTopic {
                    path,
                    found: String::from_utf8_lossy(&t).into_owned(),
                    expected: raw_topic.to_owned(),
                })
            }
        }
        let instance = match db.get(INSTANCE_KEY)? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = format!("{:016x}{:016x}", fastrand::u64(..), hookline_runtime::now_ms());
                db.put(INSTANCE_KEY, &id)?;
                id
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                instance,
                dir: dir.to_owned(),
                db: RwLock::new(Some(db)),
                closed_because: Mutex::new(String::new()),
            }),
        })
    }

    /// This data folder's id, made when the folder was created. At most one process has the folder open (the
    /// RocksDB lock), so a partition claimed under this id by a process that is gone is not being worked on.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    fn db(&self) -> Result<Db<'_>, StoreError> {
        let guard = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_some() {
            return Ok(Db(guard));
        }
        Err(StoreError::Closed {
            path: self.inner.dir.display().to_string(),
            reason: self.inner.closed_because.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        })
    }

    /// After a failed call: if the database no longer accepts writes, closes and reopens it. `Ok` when it
    /// accepts writes again (the failed call can be retried), else why not.
    pub fn recover(&self) -> Result<(), StoreError> {
        if let Ok(db) = self.db() {
            if db.put(PROBE_KEY, b"").is_ok() {
                return Ok(());
            }
        }
        let mut slot = self.inner.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            // Another worker may have reopened it while this one waited for the lock.
            if db.put(PROBE_KEY, b"").is_ok() {
                return Ok(());
            }
        }
        // Close first: RocksDB's lock file allows one open instance per folder, this process's included.
        *slot = None;
        match open_db(&self.inner.dir).and_then(|db| db.put(PROBE_KEY, b"").map(|()| db).map_err(StoreError::from)) {
            Ok(db) => {
                *slot = Some(db);
                tracing::info!(path = %self.inner.dir.display(), "state store reopened after a failed write");
                Ok(())
            }
            Err(e) => {
                *self.inner.closed_because.lock().unwrap_or_else(PoisonError::into_inner) = e.to_string();
                Err(e)
            }
        }
    }

    /// Whether an unexpired entry exists for this webhook in `partition`.
    pub fn contains(&self, partition: i32, source: &str, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self.contains_all(partition, &[(source.to_owned(), key.to_owned())], now_ms)?[0])
    }

    /// For each (source, dedup key) of `partition`, whether it has an unexpired entry: one batched lookup.
    pub fn contains_all(
        &self,
        partition: i32,
        keys: &[(String, String)],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let db = self.db()?;
        let encoded: Vec<Vec<u8>> = keys.iter().map(|(source, key)| dedup_key(partition, source, key)).collect();
        let mut out = Vec::with_capacity(keys.len());
        for value in db.batched_multi_get_cf(dedup_cf(&db)?, &encoded, false) {
            out.push(value?.and_then(|v| expiry_of(&v)).is_some_and(|expiry| expiry > now_ms));
        }
        Ok(out)
    }

    /// Writes committed changes of `partition` in one batch: entries put or deleted, with their expiry index;
    /// `expired` index entries swept ([`Store::expired`]); the changelog offset this cache has now applied up
    /// to (`changelog_next`), and the raw offset every record below which is committed (its crash marks
    /// are forgotten).
    pub fn apply(
        &self,
        partition: i32,
        changes: &[Change],
        expired: &[Expired],
        next: Positions,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        let (dedup, expiry) = (dedup_cf(&db)?, expiry_cf(&db)?);
        let mut batch = WriteBatch::default();
        for change in changes {
            match change {
                Change::Put(e) => {
                    batch.put_cf(dedup, dedup_key(partition, &e.source, &e.dedup_key), e.expires_at_ms.to_be_bytes());
                    batch.put_cf(expiry, expiry_index_key(partition, e.expires_at_ms, &e.source, &e.dedup_key), []);
                }
                Change::Delete { source, dedup_key: key } => batch.delete_cf(dedup, dedup_key(partition, source, key)),
            }
        }
        for e in expired {
            batch.delete_cf(expiry, &e.index_key);
        }
        if let Some(next) = next.changelog {
            batch.put(changelog_key(partition), next.to_be_bytes());
        }
        if let Some(next) = next.raw {
            // The worker is paused while its work commits: everything it started is below `next`.
            batch.delete(started_key(partition));
            batch.delete_range(running_key(partition, 0), running_key(partition, next));
        }
        db.write(batch)?;
        Ok(())
    }

    /// The next changelog offset of `partition` this cache has not applied (0 when it knows nothing).
    pub fn changelog_next(&self, partition: i32) -> Result<i64, StoreError> {
        let value = self.db()?.get(changelog_key(partition))?;
        Ok(value.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map_or(0, i64::from_be_bytes))
    }

    /// Up to `limit` entries of `partition` whose expiry has passed by `now_ms`, in order of expiry: the owner
    /// writes their tombstones to the changelog, then [`Store::apply`]s the deletions. An index entry whose
    /// entry was written again since (a later expiry) is listed with `stale` set: only the index entry goes.
    pub fn expired(&self, partition: i32, now_ms: i64, limit: usize) -> Result<Vec<Expired>, StoreError> {
        let db = self.db()?;
        let (dedup, expiry) = (dedup_cf(&db)?, expiry_cf(&db)?);
        let prefix = partition_prefix(partition);
        let mut out = Vec::new();
        for item in db.iterator_cf(expiry, IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, _) = item?;
            let Some(rest) = k.strip_prefix(&prefix[..]) else {
                break;
            };
            let Some(at) = rest.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(i64::from_be_bytes) else {
                continue;
            };
            if at > now_ms || out.len() >= limit {
                break;
            }
            let name = &rest[8..];
            let Some(split) = name.iter().position(|b| *b == 0) else {
                continue;
            };
            let (source, key) = (String::from_utf8_lossy(&name[..split]), String::from_utf8_lossy(&name[split + 1..]));
            let current = db.get_pinned_cf(dedup, dedup_key(partition, &source, &key))?.and_then(|v| expiry_of(&v));
            out.push(Expired {
                source: source.into_owned(),
                dedup_key: key.into_owned(),
                stale: current.is_some_and(|c| c > now_ms),
                index_key: k.to_vec(),
            });
        }
        Ok(out)
    }

    /// Records that the records of `partition` up to offset `upto` are starting: if the process dies before
    /// a commit covers them, they are crash suspects ([`Store::marks`]).
    pub fn started(&self, partition: i32, upto: i64) -> Result<(), StoreError> {
        self.db()?.put(started_key(partition), upto.to_be_bytes())?;
        Ok(())
    }

    /// Marks a crash suspect as being tried alone, for the `solo_attempts`-th time.
    pub fn mark_running(&self, partition: i32, offset: i64, solo_attempts: u32) -> Result<(), StoreError> {
        self.db()?.put(running_key(partition, offset), solo_attempts.to_be_bytes())?;
        Ok(())
    }

    /// Forgets a suspect's solo mark: it completed, so it did not crash the process.
    pub fn unmark_running(&self, partition: i32, offset: i64) -> Result<(), StoreError> {
        self.db()?.delete(running_key(partition, offset))?;
        Ok(())
    }

    /// Puts `partition`'s started mark back as it was at its worker's start (`found`), once the worker stopped
    /// cleanly: the records it started since did not crash the process, while the mark it found is evidence
    /// of an earlier crash and stays. Solo marks stay: each counts an attempt.
    pub fn forget_uncrashed(&self, partition: i32, found: &Marks) -> Result<(), StoreError> {
        let db = self.db()?;
        match found.started {
            Some(upto) => db.put(started_key(partition), upto.to_be_bytes())?,
            None => db.delete(started_key(partition))?,
        }
        Ok(())
    }

    /// What the previous worker of `partition` on this machine left: the records it started and no commit
    /// covered, which were in progress if it died.
    pub fn marks(&self, partition: i32) -> Result<Marks, StoreError> {
        let db = self.db()?;
        let started = match db.get(started_key(partition))? {
            Some(v) => Some(
                <[u8; 8]>::try_from(&v[..])
                    .map(i64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt { what: "started mark".into(), detail: format!("{v:?}") })?,
            ),
            None => None,
        };
        let prefix = running_prefix(partition);
        let mut solo = BTreeMap::new();
        for item in db.iterator(IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item?;
            let Some(offset) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let (Ok(offset), Ok(attempts)) = (<[u8; 8]>::try_from(offset), <[u8; 4]>::try_from(&v[..])) else {
                return Err(StoreError::Corrupt { what: "running mark".into(), detail: format!("{k:?}") });
            };
            solo.insert(i64::from_be_bytes(offset), u32::from_be_bytes(attempts));
        }
        Ok(Marks { started, solo })
    }

    #[cfg(test)]
    /// Runs a full compaction of the dedup entries (drops expired ones now rather than eventually).
    pub fn compact(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        db.compact_range_cf(dedup_cf(&db)?, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Approximate bytes on disk and in memory, and approximate live entries.
    pub fn size(&self) -> Result<(u64, u64), StoreError> {
        let db = self.db()?;
        let cf = dedup_cf(&db)?;
        let sst = db.property_int_value_cf(cf, "rocksdb.total-sst-files-size")?.unwrap_or(0);
        let mem = db.property_int_value_cf(cf, "rocksdb.cur-size-all-mem-tables")?.unwrap_or(0);
        let keys = db.property_int_value_cf(cf, "rocksdb.estimate-num-keys")?.unwrap_or(0);
        Ok((sst + mem, keys))
    }

    /// Flushes memtables and the WAL to disk (on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        db.flush_wal(true)?;
        db.flush()?;
        db.flush_cf(dedup_cf(&db)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::Entry;

    fn put(source: &str, key: &str, expires_at_ms: i64) -> Change {
        Change::Put(Entry { source: source.into(), dedup_key: key.into(), expires_at_ms })
    }

    fn raw(next: i64) -> Positions {
        Positions { changelog: None, raw: Some(next) }
    }

    #[test]
    fn entries_are_namespaced_by_partition_and_source_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        let at = Positions { changelog: Some(8), raw: None };
        store.apply(3, &[put("stripe", "evt_1", 1_000)], &[], at).unwrap();
        assert!(store.contains(3, "stripe", "evt_1", 999).unwrap());
        assert!(!store.contains(3, "stripe", "evt_1", 1_000).unwrap(), "expired at its expiry");
        assert!(!store.contains(3, "github", "evt_1", 999).unwrap(), "another source's key is another key");
        assert!(!store.contains(4, "stripe", "evt_1", 999).unwrap(), "another partition's state is separate");
        assert_eq!((store.changelog_next(3).unwrap(), store.changelog_next(4).unwrap()), (8, 0));
        let gone = Change::Delete { source: "stripe".into(), dedup_key: "evt_1".into() };
        store.apply(3, &[gone], &[], Positions::default()).unwrap();
        assert!(!store.contains(3, "stripe", "evt_1", 0).unwrap(), "a tombstone deletes");
        assert_eq!(store.changelog_next(3).unwrap(), 8, "no position given, none changed");
    }

    #[test]
    fn expired_entries_are_listed_in_expiry_order_and_rewritten_ones_only_lose_their_old_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        let changes = [put("s", "b", 20), put("s", "a", 10), put("s", "late", 500), put("s", "again", 15)];
        store.apply(1, &changes, &[], Positions::default()).unwrap();
        store.apply(1, &[put("s", "again", 900)], &[], Positions::default()).unwrap();
        store.apply(2, &[put("s", "other", 5)], &[], Positions::default()).unwrap();
        let expired = store.expired(1, 100, 10).unwrap();
        let listed: Vec<(&str, bool)> = expired.iter().map(|e| (e.dedup_key.as_str(), e.stale)).collect();
        assert_eq!(listed, vec![("a", false), ("again", true), ("b", false)]);
        assert_eq!(store.expired(1, 100, 2).unwrap().len(), 2, "at most `limit`");
        let deletes: Vec<Change> = expired
            .iter()
            .filter(|e| !e.stale)
            .map(|e| Change::Delete { source: e.source.clone(), dedup_key: e.dedup_key.clone() })
            .collect();
        store.apply(1, &deletes, &expired, Positions::default()).unwrap();
        assert!(store.expired(1, 100, 10).unwrap().is_empty());
        assert!(store.contains(1, "s", "again", 100).unwrap(), "the rewritten entry stays");
        assert_eq!(store.expired(1, 1_000, 10).unwrap().len(), 2, "late and again, at their own expiry");
    }

    #[test]
    fn state_survives_reopening_and_one_process_holds_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), "raw").unwrap();
            store.apply(0, &[put("s", "k", i64::MAX)], &[], Positions { changelog: Some(1), raw: None }).unwrap();
            assert!(Store::open(dir.path(), "raw").is_err(), "RocksDB's lock keeps a second opener out");
        }
        let store = Store::open(dir.path(), "raw").unwrap();
        assert!(store.contains(0, "s", "k", 0).unwrap());
        assert_eq!(store.changelog_next(0).unwrap(), 1);
        drop(store);
        let err = Store::open(dir.path(), "other.raw").unwrap_err().to_string();
        assert!(err.contains("belongs to raw topic `raw`"), "{err}");
    }

    #[test]
    fn a_closed_store_answers_closed_and_recover_reopens_it_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        store.apply(0, &[put("s", "k", i64::MAX)], &[], Positions::default()).unwrap();
        store.recover().unwrap();
        assert!(store.contains(0, "s", "k", 0).unwrap(), "recovering a healthy store changes nothing");
        // As after a failed write whose reopen failed too (the disk still full).
        *store.inner.db.write().unwrap() = None;
        *store.inner.closed_because.lock().unwrap() = "No space left on device".into();
        let err = store.contains(0, "s", "k", 0).unwrap_err().to_string();
        assert!(err.contains("closed after a failed write") && err.contains("No space left"), "{err}");
        store.recover().unwrap();
        assert!(store.contains(0, "s", "k", 0).unwrap(), "the reopened store has its entries");
        store.mark_running(0, 5, 0).unwrap();
        assert_eq!(store.marks(0).unwrap().solo.len(), 1);
    }

    /// Regression: a worker that stopped cleanly left the marks of the records it had started, and the next
    /// worker on this machine retried them alone as crash suspects.
    #[test]
    fn a_clean_stop_puts_the_marks_back_as_the_worker_found_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        // The previous worker died with records up to 13 started, 12 tried alone twice.
        store.started(1, 13).unwrap();
        store.mark_running(1, 12, 2).unwrap();
        store.started(2, 10).unwrap();
        let found = store.marks(1).unwrap();
        assert_eq!(found.suspect(11), Some(0));
        assert_eq!(found.suspect(12), Some(2));
        assert_eq!(found.suspect(14), None);
        // This worker tries 11 alone, then runs past the suspects, then stops cleanly.
        store.mark_running(1, 11, 1).unwrap();
        store.started(1, 40).unwrap();
        store.forget_uncrashed(1, &found).unwrap();
        let left = store.marks(1).unwrap();
        assert_eq!(left.started, Some(13), "the crash evidence it found stays");
        assert_eq!(left.solo, BTreeMap::from([(11, 1), (12, 2)]), "solo attempts stay");
        assert_eq!(store.marks(2).unwrap().started, Some(10), "other partitions untouched");
        // A worker that found nothing leaves nothing.
        store.forget_uncrashed(2, &Marks::default()).unwrap();
        assert_eq!(store.marks(2).unwrap(), Marks::default());
    }

    #[test]
    fn crash_marks_are_kept_until_a_commit_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        store.started(1, 9).unwrap();
        for offset in [5, 6, 9] {
            store.mark_running(1, offset, 1).unwrap();
        }
        store.started(2, 5).unwrap();
        store.apply(1, &[], &[], Positions::default()).unwrap();
        assert_eq!(store.marks(1).unwrap().started, Some(9), "a commit of no records covers none");
        store.apply(1, &[], &[], raw(7)).unwrap();
        let left = store.marks(1).unwrap();
        assert_eq!(left.solo, BTreeMap::from([(9, 1)]), "offsets below the commit are done");
        assert_eq!(left.started, None, "the worker is paused during a commit: all it started is covered");
        store.unmark_running(1, 9).unwrap();
        assert_eq!(store.marks(1).unwrap(), Marks::default());
        assert_eq!(store.marks(2).unwrap().started, Some(5), "other partitions untouched");
    }

    #[test]
    fn lookups_in_a_batch_answer_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        store.apply(0, &[put("s", "a", 100), put("s", "c", 50)], &[], Positions::default()).unwrap();
        let keys = |ks: &[&str]| ks.iter().map(|k| ("s".to_owned(), (*k).to_owned())).collect::<Vec<_>>();
        assert_eq!(store.contains_all(0, &keys(&["c", "a", "b", "a"]), 60).unwrap(), [false, true, false, true]);
        assert!(store.contains_all(1, &keys(&["a"]), 60).unwrap() == [false], "another partition's state");
        assert!(store.contains_all(0, &[], 60).unwrap().is_empty());
    }

    #[test]
    fn compaction_removes_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "raw").unwrap();
        let now = hookline_runtime::now_ms();
        store
            .apply(0, &[put("s", "old", now - 1), put("s", "live", now + 3_600_000)], &[], Positions::default())
            .unwrap();
        store.flush().unwrap();
        store.compact().unwrap();
        let db = store.db().unwrap();
        let cf = dedup_cf(&db).unwrap();
        assert!(db.get_cf(cf, dedup_key(0, "s", "old")).unwrap().is_none(), "expired entry physically removed");
        assert!(db.get_cf(cf, dedup_key(0, "s", "live")).unwrap().is_some());
        assert_eq!(store.expired(0, now, 10).unwrap().len(), 1, "its index entry stays until its tombstone is written");
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), "raw").unwrap();
            store.db().unwrap().put(VERSION_KEY, b"99").unwrap();
        }
        let err = Store::open(dir.path(), "raw").unwrap_err().to_string();
        assert!(err.contains("format version 99"), "{err}");
    }
}
