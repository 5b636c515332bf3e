//! # hookline providers
//!
//! What hookline knows of the webhook providers it receives from: how each one signs its requests and how
//! hookline verifies them ([`verify`], one module per signing scheme), and the keys a provider identifies a
//! webhook and its entity by ([`keys`]: dedup and ordering key selectors, read from headers or the body).
//!
//! The ingress verifies with it; the CLI's `send` and the tests sign with it, so what a sender makes is
//! exactly what the ingress accepts.

pub mod keys;
pub mod verify;
