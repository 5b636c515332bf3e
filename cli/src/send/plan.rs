//! The order deliveries are sent in, decided up front from the seed: which webhooks are sent stale, which are
//! delivered twice, which pairs of one entity are swapped. The same seed gives the same plan.

use std::time::Duration;

/// One request to make (retries after 429/503 aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The webhook's number.
    pub webhook: usize,
    /// A provider's redelivery of a webhook already sent (same id and body, fresh signature).
    pub duplicate: bool,
    /// Signed with a timestamp an hour old: the ingress must refuse it with 401.
    pub stale: bool,
}

/// The deliveries in sending order, and what was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In sending order.
    pub deliveries: Vec<Delivery>,
    /// Redeliveries planned.
    pub duplicates: usize,
    /// Webhooks sent stale.
    pub stale: usize,
    /// Pairs of one entity's webhooks sent in swapped order.
    pub swapped: usize,
}

/// Shares of webhooks (each from 0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    /// Delivered a second time.
    pub duplicate: f64,
    /// Swapped with the next webhook of the same entity.
    pub reorder: f64,
    /// Signed an hour ago.
    pub stale: f64,
}

/// How far ahead a webhook's swap partner (the next webhook of its entity) is looked for.
const SWAP_WINDOW: usize = 64;

/// Plans the delivery of webhooks whose entities are `entities` (one per webhook, in webhook order).
///
/// A stale webhook is sent once (its redelivery would be refused the same way); a duplicate follows its first
/// delivery a few places later, as a provider's retry does.
pub fn plan(entities: &[String], shares: Shares, rng: &mut fastrand::Rng) -> Plan {
    let n = entities.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Reorder: webhook i swaps places with the next webhook of its entity; each webhook takes part once.
    let mut taken = vec![false; n];
    let mut swapped = 0;
    for i in 0..n {
        if taken[order[i]] || rng.f64() >= shares.reorder {
            continue;
        }
        // The next webhook of the entity among the few that follow (entities come in short runs): linear in n.
        let next =
            (i + 1..n.min(i + 1 + SWAP_WINDOW)).find(|&j| entities[order[j]] == entities[order[i]] && !taken[order[j]]);
        if let Some(j) = next {
            taken[order[i]] = true;
            taken[order[j]] = true;
            order.swap(i, j);
            swapped += 1;
        }
    }
    let stale: Vec<bool> = (0..n).map(|_| rng.f64() < shares.stale).collect();
    // A duplicate goes 1 to 8 deliveries after its webhook's first delivery, as a provider retry soon after.
    // One pass (a million webhooks plan in linear time): duplicates wait in `due` until their turn.
    let duplicated: Vec<bool> = stale.iter().map(|&is_stale| !is_stale && rng.f64() < shares.duplicate).collect();
    let mut deliveries: Vec<Delivery> = Vec::with_capacity(n + n / 2);
    let mut due: std::collections::VecDeque<(usize, usize)> = std::collections::VecDeque::new();
    let mut duplicates = 0;
    for &w in &order {
        deliveries.push(Delivery { webhook: w, duplicate: false, stale: stale[w] });
        if duplicated[w] {
            let at = deliveries.len() + rng.usize(0..8);
            let i = due.iter().position(|(when, _)| *when > at).unwrap_or(due.len());
            due.insert(i, (at, w));
            duplicates += 1;
        }
        while due.front().is_some_and(|(when, _)| *when <= deliveries.len()) {
            if let Some((_, d)) = due.pop_front() {
                deliveries.push(Delivery { webhook: d, duplicate: true, stale: false });
            }
        }
    }
    deliveries.extend(due.into_iter().map(|(_, d)| Delivery { webhook: d, duplicate: true, stale: false }));
    Plan { deliveries, duplicates, stale: stale.iter().filter(|s| **s).count(), swapped }
}

/// The tick period for `rate` requests per second (`None`: as fast as concurrency allows).
pub fn period(rate: Option<f64>) -> Option<Duration> {
    rate.filter(|r| r.is_finite() && *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r))
}

/// How long `requests` take at `rate` per second when nothing else limits them (the first goes at once).
pub fn expected_duration(requests: usize, rate: Option<f64>) -> Duration {
    match period(rate) {
        Some(p) => p.saturating_mul(u32::try_from(requests.saturating_sub(1)).unwrap_or(u32::MAX)),
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("e{}", i / 4)).collect()
    }

    const NONE: Shares = Shares { duplicate: 0.0, reorder: 0.0, stale: 0.0 };

    #[test]
    fn without_shares_every_webhook_is_sent_once_in_order() {
        let p = plan(&entities(10), NONE, &mut fastrand::Rng::with_seed(1));
        assert_eq!(p.deliveries.iter().map(|d| d.webhook).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert_eq!((p.duplicates, p.stale, p.swapped), (0, 0, 0));
    }

    #[test]
    fn duplicates_follow_their_first_delivery_and_stale_ones_are_not_duplicated() {
        let shares = Shares { duplicate: 1.0, ..NONE };
        let p = plan(&entities(20), shares, &mut fastrand::Rng::with_seed(2));
        assert_eq!((p.duplicates, p.deliveries.len()), (20, 40));
        for w in 0..20 {
            let first = p.deliveries.iter().position(|d| d.webhook == w && !d.duplicate).unwrap();
            let dup = p.deliveries.iter().position(|d| d.webhook == w && d.duplicate).unwrap();
            assert!(first < dup, "webhook {w}");
        }
        let p = plan(&entities(20), Shares { duplicate: 1.0, stale: 1.0, ..NONE }, &mut fastrand::Rng::with_seed(2));
        assert_eq!((p.duplicates, p.stale, p.deliveries.len()), (0, 20, 20));
        assert!(p.deliveries.iter().all(|d| d.stale));
    }

    #[test]
    fn reorder_swaps_webhooks_of_one_entity_only() {
        let e = entities(40);
        let p = plan(&e, Shares { reorder: 1.0, ..NONE }, &mut fastrand::Rng::with_seed(3));
        assert_eq!(p.swapped, 20, "every webhook is in one swapped pair");
        let order: Vec<usize> = p.deliveries.iter().map(|d| d.webhook).collect();
        assert_eq!(&order[..4], &[1, 0, 3, 2]);
        for (pos, w) in order.iter().enumerate() {
            assert_eq!(e[*w], e[pos], "a webhook stays among its entity's places");
        }
        let unique: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        assert_eq!(plan(&unique, Shares { reorder: 1.0, ..NONE }, &mut fastrand::Rng::with_seed(3)).swapped, 0);
    }

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        let shares = Shares { duplicate: 0.3, reorder: 0.3, stale: 0.2 };
        let a = plan(&entities(100), shares, &mut fastrand::Rng::with_seed(9));
        let b = plan(&entities(100), shares, &mut fastrand::Rng::with_seed(9));
        assert_eq!(a, b);
        assert!(a.duplicates > 10 && a.stale > 5 && a.swapped > 5, "{a:?}");
    }

    #[test]
    fn pacing_math() {
        assert_eq!(period(None), None);
        assert_eq!(period(Some(0.0)), None);
        assert_eq!(period(Some(4.0)), Some(Duration::from_millis(250)));
        assert_eq!(period(Some(1000.0)), Some(Duration::from_millis(1)));
        assert_eq!(expected_duration(1, Some(10.0)), Duration::ZERO);
        assert_eq!(expected_duration(11, Some(10.0)), Duration::from_secs(1));
        assert_eq!(expected_duration(100, None), Duration::ZERO);
    }
}
