//! Per-key order with parallelism, for the records of one raw partition. Pure bookkeeping, no I/O.
//!
//! Each admitted record belongs to lanes: its ordering key's, and its dedup key's (so two deliveries of one
//! webhook are never in flight together, even if their ordering keys differ). A lane is a FIFO in offset
//! order, and a record may start only when it is at the head of every lane it belongs to: records of one key
//! run one at a time in offset order, records of different keys run concurrently, up to `max_in_flight`.
//! The oldest unfinished record is always at the head of its lanes, so the scheduler cannot deadlock.
//!
//! A record marked *solo* (suspected of crashing the process) runs alone: it starts when nothing else runs,
//! and nothing starts while it runs.
//!
//! [`Scheduler::committable`] is the gap-free prefix: the offset below which every admitted record has
//! completed. Only that offset is ever committed, so a record completed out of order is never committed over
//! an unfinished one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// A lane: a hash of an ordering key or a dedup key. Two keys with the same hash share a lane, which only
/// costs concurrency.
pub type Lane = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
}

#[derive(Debug)]
struct Slot {
    lanes: Vec<Lane>,
    state: State,
    solo: bool,
}

/// The scheduler of one partition.
#[derive(Debug)]
pub struct Scheduler {
    max_in_flight: usize,
    max_buffered: usize,
    slots: BTreeMap<i64, Slot>,
    lanes: HashMap<Lane, VecDeque<i64>>,
    ready: BTreeSet<i64>,
    running: usize,
    solo_running: bool,
    next: i64,
}

impl Scheduler {
    /// A scheduler whose next record is at `start` (or later: offsets may skip).
    pub fn new(start: i64, max_in_flight: usize, max_buffered: usize) -> Self {
        Scheduler {
            max_in_flight: max_in_flight.max(1),
            max_buffered: max_buffered.max(1),
            slots: BTreeMap::new(),
            lanes: HashMap::new(),
            ready: BTreeSet::new(),
            running: 0,
            solo_running: false,
            next: start,
        }
    }

    /// Whether another record may be admitted (read ahead).
    pub fn has_room(&self) -> bool {
        self.slots.len() < self.max_buffered
    }

    #[cfg(test)]
    /// Admitted records not yet completed.
    pub fn buffered(&self) -> usize {
        self.slots.len()
    }

    /// Records running.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Admits the record at `offset` (greater than every offset admitted before) in `lanes`. The first record
    /// may come before the start given to [`Scheduler::new`] (the group resumes from its committed offset,
    /// which can be behind the checkpoint); the prefix then starts there.
    pub fn admit(&mut self, offset: i64, lanes: &[Lane], solo: bool) {
        let mut unique: Vec<Lane> = Vec::with_capacity(lanes.len());
        for lane in lanes {
            if !unique.contains(lane) {
                unique.push(*lane);
            }
        }
        for lane in &unique {
            self.lanes.entry(*lane).or_default().push_back(offset);
        }
        self.slots.insert(offset, Slot { lanes: unique, state: State::Waiting, solo });
        self.next = self.next.max(offset + 1);
        self.promote(offset);
    }

    /// Makes `offset` ready if it heads all of its lanes.
    fn promote(&mut self, offset: i64) {
        let Some(slot) = self.slots.get_mut(&offset) else {
            return;
        };
        if slot.state != State::Waiting {
            return;
        }
        let heads_all = slot.lanes.iter().all(|l| self.lanes.get(l).and_then(|q| q.front()) == Some(&offset));
        if heads_all {
            slot.state = State::Ready;
            self.ready.insert(offset);
        }
    }

    /// The next record to start, if the limits allow one: the oldest ready record.
    pub fn start_next(&mut self) -> Option<i64> {
        if self.running >= self.max_in_flight || self.solo_running {
            return None;
        }
        let offset = *self.ready.first()?;
        let slot = self.slots.get_mut(&offset)?;
        if slot.solo && self.running > 0 {
            return None;
        }
        self.ready.remove(&offset);
        slot.state = State::Running;
        self.running += 1;
        self.solo_running = slot.solo;
        Some(offset)
    }

    /// Records that `offset`, which was running, completed; the records it held back may become ready.
    pub fn complete(&mut self, offset: i64) {
        let Some(slot) = self.slots.remove(&offset) else {
            return;
        };
        debug_assert_eq!(slot.state, State::Running);
        self.running = self.running.saturating_sub(1);
        if slot.solo {
            self.solo_running = false;
        }
        for lane in &slot.lanes {
            let Some(queue) = self.lanes.get_mut(lane) else {
                continue;
            };
            if queue.front() == Some(&offset) {
                queue.pop_front();
            }
            match queue.front().copied() {
                Some(next) => self.promote(next),
                None => {
                    self.lanes.remove(lane);
                }
            }
        }
    }

    /// The offset below which every admitted record has completed.
    pub fn committable(&self) -> i64 {
        self.slots.keys().next().copied().unwrap_or(self.next)
    }

    /// The oldest record not completed, if any.
    pub fn oldest(&self) -> Option<i64> {
        self.slots.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Scheduler) -> Vec<i64> {
        std::iter::from_fn(|| s.start_next()).collect()
    }

    #[test]
    fn one_key_runs_in_order_and_other_keys_run_alongside() {
        let mut s = Scheduler::new(10, 8, 100);
        s.admit(10, &[1], false);
        s.admit(11, &[2], false);
        s.admit(12, &[1], false);
        s.admit(13, &[3], false);
        assert_eq!(drain(&mut s), vec![10, 11, 13], "12 waits behind 10, its key's earlier record");
        s.complete(11);
        assert_eq!(s.committable(), 10, "11 finished out of order: nothing past 10 is committable");
        assert_eq!(drain(&mut s), Vec::<i64>::new());
        s.complete(10);
        assert_eq!(s.committable(), 12);
        assert_eq!(drain(&mut s), vec![12]);
        s.complete(13);
        s.complete(12);
        assert_eq!(s.committable(), 14);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn a_record_waits_for_every_lane_it_is_in() {
        let mut s = Scheduler::new(0, 8, 100);
        s.admit(0, &[1, 100], false); // ordering key 1, dedup key 100
        s.admit(1, &[2, 100], false); // another ordering key, same webhook
        s.admit(2, &[2, 200], false);
        assert_eq!(drain(&mut s), vec![0]);
        s.complete(0);
        assert_eq!(drain(&mut s), vec![1]);
        s.complete(1);
        assert_eq!(drain(&mut s), vec![2]);
    }

    #[test]
    fn limits_in_flight_and_buffered() {
        let mut s = Scheduler::new(0, 2, 3);
        for o in 0..3 {
            s.admit(o, &[o as u64], false);
        }
        assert!(!s.has_room());
        assert_eq!(drain(&mut s), vec![0, 1]);
        assert_eq!(s.running(), 2);
        s.complete(1);
        assert!(s.has_room());
        assert_eq!(drain(&mut s), vec![2]);
    }

    #[test]
    fn a_solo_record_runs_alone() {
        let mut s = Scheduler::new(0, 8, 100);
        s.admit(0, &[1], false);
        s.admit(1, &[2], true);
        s.admit(2, &[3], false);
        assert_eq!(drain(&mut s), vec![0], "the suspect waits for the running record; the next waits behind it");
        s.complete(0);
        assert_eq!(drain(&mut s), vec![1]);
        assert_eq!(drain(&mut s), Vec::<i64>::new(), "nothing starts while the suspect runs");
        s.complete(1);
        assert_eq!(drain(&mut s), vec![2]);
    }

    #[test]
    fn offsets_may_skip_and_duplicate_lanes_count_once() {
        let mut s = Scheduler::new(0, 8, 100);
        s.admit(5, &[7, 7], false);
        s.admit(9, &[7], false);
        assert_eq!(drain(&mut s), vec![5]);
        s.complete(5);
        assert_eq!(s.committable(), 9);
        assert_eq!(drain(&mut s), vec![9]);
        s.complete(9);
        assert_eq!(s.committable(), 10);
    }

    #[test]
    fn random_schedules_keep_per_lane_order_and_a_gap_free_prefix() {
        // A small deterministic PRNG, so failures reproduce.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut s = Scheduler::new(0, 1 + (next() % 6) as usize, 1 + (next() % 20) as usize);
            let mut lanes_of = HashMap::new();
            let mut started: Vec<i64> = Vec::new();
            let mut running: Vec<i64> = Vec::new();
            let mut admitted = 0i64;
            let mut done = BTreeSet::new();
            while done.len() < 60 {
                if admitted < 60 && s.has_room() && next() % 2 == 0 {
                    let lanes = vec![next() % 5, 10 + next() % 5];
                    lanes_of.insert(admitted, lanes.clone());
                    s.admit(admitted, &lanes, next() % 10 == 0);
                    admitted += 1;
                }
                while let Some(o) = s.start_next() {
                    let shares_a_lane = |r: &i64| lanes_of[r].iter().any(|l| lanes_of[&o].contains(l));
                    assert!(!running.iter().any(shares_a_lane), "{o} started beside a record of its lane");
                    started.push(o);
                    running.push(o);
                }
                if !running.is_empty() && next() % 2 == 0 {
                    let o = running.swap_remove((next() % running.len() as u64) as usize);
                    s.complete(o);
                    done.insert(o);
                    let prefix = s.committable();
                    assert!((0..prefix).all(|p| done.contains(&p)), "prefix {prefix} covers an unfinished record");
                }
            }
            for lane in 0..15u64 {
                let order: Vec<i64> = started.iter().copied().filter(|o| lanes_of[o].contains(&lane)).collect();
                assert!(order.windows(2).all(|w| w[0] < w[1]), "lane {lane} started out of order: {order:?}");
            }
            assert_eq!(s.committable(), 60);
        }
    }
}
