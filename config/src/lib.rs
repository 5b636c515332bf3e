//! # hookline config
//!
//! The configuration of both binaries, each from one TOML file with `HOOKLINE_`-prefixed environment
//! overrides, validated at startup: a mistake stops the binary and names its field.
//!
//! - [`ingress`]: the ingress's config (`deploy/ingress.example.toml`): server limits, Kafka, the sources and
//!   how each is verified (built into [`hookline_providers::verify::Verifier`]s).
//! - [`processor`]: the processor's config (`deploy/processor.example.toml`): topics, consumer, state and each
//!   source's pipeline.
//! - [`topics`]: the topics each config implies, and creating the missing ones.
//!
//! The binaries and the `hookline` CLI all read configs through this crate, so the CLI checks a config exactly
//! as the binary would without linking either binary.

pub mod ingress;
pub mod processor;
pub mod topics;

/// The raw topic, where the ingress writes and the processor reads, unless `topics.raw` says otherwise.
pub const DEFAULT_RAW_TOPIC: &str = "hookline.raw";

/// The partitions either binary creates the raw topic with when it is missing (`topics.raw_partitions`).
pub const DEFAULT_RAW_PARTITIONS: i32 = 12;
