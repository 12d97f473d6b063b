//! Home of conductor's examples and integration tests.

// The Rust snippets of the README and of docs/, compiled by `cargo test --doc`: what a
// newcomer copies must build. Blocks that start processes or need NATS are `no_run`.

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/api.md")]
struct ApiGuideDoctests;

#[cfg(doctest)]
#[doc = include_str!("../docs/distributed.md")]
struct DistributedModeDoctests;
