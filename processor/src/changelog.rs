//! The state changelog topic (`topics.state`): what a processor taking over a partition reads to rebuild the
//! partition's dedup state quickly, instead of re-reading every output of the dedup window.
//!
//! Partition `p` of the changelog belongs to raw partition `p` and has one writer at a time: the partition's
//! owner. Each record is JSON (so `hookline tail hookline.state` shows it):
//!
//! ```json
//! {"v":1,"raw_topic":"hookline.raw","partition":3,
//!  "entries":[["stripe","evt_1",1764460800000]],
//!  "checkpoint":{"next_raw_offset":1234,"scan_from":{"hookline.events":880,"hookline.dlq":12},"changelog_next":0}}
//! ```
//!
//! - `entries`: dedup entries `[source, dedup key, expiry ms]` of records whose outputs are published;
//! - `checkpoint` (on the last record of each commit only): every raw record below `next_raw_offset` has its
//!   entry in this record or an earlier one, and every output of a later raw record lies at or after
//!   `scan_from` in its topic. `changelog_next` is meaningless here (it is the reader's own position).
//!
//! **Handoff.** Ownership records carry `owner` (the data folder's instance id, [`crate::store::Store::instance`]):
//! a *claim* (`{"owner":"…"}`) before the owner publishes anything of the partition, and a *release*
//! (`{"owner":"…","released":true}`) as the last record it writes, once its last outputs are acknowledged. A
//! new owner reads the changelog to its end before reading back the outputs; if the last ownership record is
//! another instance's claim, that instance may still be publishing, so the new owner waits for its release,
//! or for `session.timeout.ms` + the drain timeout if it died. A claim by the new owner's own instance needs
//! no wait: its RocksDB lock proves that process is gone.
//!
//! Why, on Apache Kafka too: the group's rebalance barrier only waits for members still in the group. A
//! member expelled after its session timeout while alive (cut off from the brokers, or paused) still has
//! outputs in flight when its partitions are handed on, and it finds out only from its own session timer;
//! its in-flight records either land before it stops (and are read back by the new owner) or die with it.
//! (It was first needed on Tansu 0.6.0, which has no barrier at all.) Kafka transactions would fence such a
//! member instead; until then, this wait is what keeps the `network-cut` chaos scenario free of duplicates.
//!
//! The owner writes its changelog records, and waits for them to be acknowledged, before it commits the raw
//! offset they cover: the committed offset never runs ahead of the changelog. Each entry is written once, in
//! the commit of its record (a new owner whose local store knows more than the changelog writes all of its
//! live entries first, a snapshot). The topic is created with `retention.ms` = the longest dedup window plus a
//! day, so a restore reads about the live entries; an entry always outlives its expiry there.

use serde::{Deserialize, Serialize};

use crate::store::{Checkpoint, Entry};

/// The changelog format version.
pub const VERSION: u32 = 1;

/// Most entries in one changelog record (about 100 bytes each, well under Kafka's 1 MB default).
pub const MAX_ENTRIES_PER_RECORD: usize = 5_000;

/// One changelog record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangelogRecord {
    /// Format version.
    pub v: u32,
    /// The raw topic the entries belong to.
    pub raw_topic: String,
    /// The raw partition.
    pub partition: i32,
    /// `[source, dedup key, expiry ms]`.
    #[serde(default)]
    pub entries: Vec<(String, String, i64)>,
    /// Present on the last record of a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// On ownership records only: the instance claiming or releasing the partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// On the release record: the owner publishes nothing more of this partition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl ChangelogRecord {
    /// The records of one commit: `entries` in chunks, the checkpoint on the last one.
    pub fn commit(raw_topic: &str, partition: i32, entries: &[Entry], checkpoint: Checkpoint) -> Vec<Vec<u8>> {
        let mut chunks: Vec<&[Entry]> = entries.chunks(MAX_ENTRIES_PER_RECORD).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let record = ChangelogRecord {
                    v: VERSION,
                    raw_topic: raw_topic.to_owned(),
                    partition,
                    entries: chunk.iter().map(|e| (e.source.clone(), e.dedup_key.clone(), e.expires_at_ms)).collect(),
                    checkpoint: (i == last).then(|| checkpoint.clone()),
                    owner: None,
                    released: false,
                };
                serde_json::to_vec(&record).unwrap_or_default()
            })
            .collect()
    }

    /// One record of entries without a checkpoint (a chunk of a snapshot).
    pub fn entries(raw_topic: &str, partition: i32, entries: &[Entry]) -> Vec<u8> {
        let record = ChangelogRecord {
            v: VERSION,
            raw_topic: raw_topic.to_owned(),
            partition,
            entries: entries.iter().map(|e| (e.source.clone(), e.dedup_key.clone(), e.expires_at_ms)).collect(),
            checkpoint: None,
            owner: None,
            released: false,
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// A claim (`released` false) or release record of `owner`.
    pub fn ownership(raw_topic: &str, partition: i32, owner: &str, released: bool) -> Vec<u8> {
        let record = ChangelogRecord {
            v: VERSION,
            raw_topic: raw_topic.to_owned(),
            partition,
            entries: Vec::new(),
            checkpoint: None,
            owner: Some(owner.to_owned()),
            released,
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// Reads a changelog record; `None` for a record of another version or garbage (skipped by readers).
    pub fn parse(bytes: &[u8]) -> Option<ChangelogRecord> {
        serde_json::from_slice::<ChangelogRecord>(bytes).ok().filter(|r| r.v == VERSION)
    }

    /// Its entries still live at `now_ms`.
    pub fn live_entries(&self, now_ms: i64) -> impl Iterator<Item = Entry> + '_ {
        self.entries.iter().filter(move |(_, _, expiry)| *expiry > now_ms).map(|(source, key, expiry)| Entry {
            source: source.clone(),
            dedup_key: key.clone(),
            expires_at_ms: *expiry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn ownership_records_name_their_owner_and_older_records_have_none() {
        let claim = ChangelogRecord::parse(&ChangelogRecord::ownership("raw", 2, "abc", false)).unwrap();
        assert_eq!((claim.owner.as_deref(), claim.released, claim.partition), (Some("abc"), false, 2));
        assert!(claim.entries.is_empty() && claim.checkpoint.is_none());
        let text = String::from_utf8(ChangelogRecord::ownership("raw", 2, "abc", true)).unwrap();
        assert_eq!(text, r#"{"v":1,"raw_topic":"raw","partition":2,"entries":[],"owner":"abc","released":true}"#);
        // A record of an earlier build, or an entries record: no owner, so no claim.
        let old = ChangelogRecord::parse(br#"{"v":1,"raw_topic":"raw","partition":2,"entries":[]}"#).unwrap();
        assert_eq!((old.owner, old.released), (None, false));
        let claim_text = String::from_utf8(ChangelogRecord::ownership("raw", 2, "abc", false)).unwrap();
        assert!(!claim_text.contains("released"), "{claim_text}");
    }

    #[test]
    fn a_commit_is_chunked_with_the_checkpoint_last() {
        let entries: Vec<Entry> = (0..(MAX_ENTRIES_PER_RECORD + 3))
            .map(|i| Entry { source: "shop".into(), dedup_key: format!("k{i}"), expires_at_ms: i as i64 })
            .collect();
        let checkpoint = Checkpoint {
            next_raw_offset: 99,
            scan_from: BTreeMap::from([("hookline.events".into(), 7)]),
            changelog_next: 0,
        };
        let records = ChangelogRecord::commit("hookline.raw", 3, &entries, checkpoint.clone());
        assert_eq!(records.len(), 2);
        let first = ChangelogRecord::parse(&records[0]).unwrap();
        let second = ChangelogRecord::parse(&records[1]).unwrap();
        assert_eq!((first.entries.len(), first.checkpoint), (MAX_ENTRIES_PER_RECORD, None));
        assert_eq!((second.entries.len(), second.checkpoint.clone()), (3, Some(checkpoint.clone())));
        assert_eq!(second.live_entries(MAX_ENTRIES_PER_RECORD as i64).count(), 2, "expired entries are skipped");

        let empty = ChangelogRecord::commit("hookline.raw", 3, &[], checkpoint.clone());
        assert_eq!(empty.len(), 1, "a commit without entries still records its checkpoint");
        assert_eq!(ChangelogRecord::parse(&empty[0]).unwrap().checkpoint, Some(checkpoint));
        assert_eq!(ChangelogRecord::parse(b"{\"v\":2,\"raw_topic\":\"x\",\"partition\":0}"), None);
        assert_eq!(ChangelogRecord::parse(b"garbage"), None);
    }
}
