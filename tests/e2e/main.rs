//! End-to-end tests: real Apache Kafka (or `KAFKA_BROKERS`), real ingress and processor, HTTP requests
//! signed as the providers sign them, and assertions on what is on the topics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attacks;
mod chaos;
mod cli;
mod cli_reprocess;
mod cli_send;
mod ingress;
mod observability;
mod pipeline;
mod processor;
mod traces;
mod transform;

use std::time::Duration;

/// How long a topic reader waits for more records once it has what it expects.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);
/// How long a topic reader waits at most.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);
