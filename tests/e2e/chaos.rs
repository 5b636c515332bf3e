//! The short versions of `make chaos`'s scenarios that run in `make test`: the invariant checker over real
//! processes being killed or frozen, a broker of a three-node cluster killed, a processor cut off from the
//! cluster, a duplicate storm and poison mixed into the stream (see `tests/src/chaos.rs`).

use hookline_e2e::chaos::{self, Scale};

async fn passes(name: &str) {
    let row = chaos::run(name, Scale::Short).await.unwrap_or_else(|e| panic!("{name} could not run: {e:#}"));
    eprintln!("{}\n{}\n{}\n{}", chaos::TABLE_HEADER, chaos::row_line(&row), row.notes.join("\n"), row.figures);
    assert!(row.passed(), "{name}:\n{}", row.explain());
    assert!(row.report.accepted > 0 && row.report.events > 0, "{name} sent nothing: {row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_processor_killed_9_three_times_during_load() {
    passes("processor-kill-9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_processor_frozen_longer_than_its_session_is_fenced_and_publishes_nothing_visible() {
    passes("processor-frozen").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_broker_of_three_killed_9_loses_nothing_and_processing_goes_on_without_it() {
    passes("broker-kill-9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_processor_killed_for_good_hands_its_partitions_to_the_group_after_its_session() {
    passes("processor-gone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_processor_cut_off_longer_than_its_session_publishes_nothing_twice() {
    passes("network-cut").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_duplicate_storm_with_a_processor_kill() {
    passes("duplicate-storm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_poison_mixed_into_the_stream() {
    passes("poison-mix").await;
}

/// Needs root (it mounts a small tmpfs as the data folder); `make test` runs as root in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_full_data_folder_stops_the_processor_until_there_is_room_again() {
    assert!(
        chaos::can_mount(),
        "this test mounts a tmpfs as the processor's data folder and needs root; run `make test` as root"
    );
    passes("state-disk-full").await;
}

/// Processors joining and leaving during load: each revocation commits the open transaction before the
/// partitions move, and the next owner starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_processors_joining_and_leaving_publish_nothing_twice() {
    passes("processors-join-leave").await;
}

/// HAProxy in front of two ingresses, three brokers, three processors: an ingress, a processor and a broker
/// killed -9 in turn during load (`tests/src/ha.rs`); prints what senders and data teams saw of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_ha_topology_survives_an_ingress_a_processor_and_a_broker_killed_behind_a_load_balancer() {
    passes("ha-topology").await;
}
