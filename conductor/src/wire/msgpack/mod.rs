//! MessagePack for the caller's values, written and read in place.
//!
//! Why our own and not `rmp-serde`'s: jobs are encoded on the master's thread and
//! decoded on the workers' job threads, one after another, and with field names
//! every small job is a dozen tiny reads and writes. `rmp-serde` makes each a call
//! through `std::io::Write` or its generic reader; here each is a store into spare
//! capacity or a load from a slice. With W1's tiny jobs, `rmp-serde` cost 20% of the
//! whole run's throughput; these cost about 8% against postcard, which cannot carry
//! half of serde's shapes (`bench/results/formats.md`). The bytes are
//! `rmp_serde::to_vec_named`'s (a test pins that), so other MessagePack tools read them.
//!
//! - [`encode`]: a value appended to a `Vec<u8>`;
//! - [`decode`]: a value read from a slice, strings borrowed.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

pub(crate) use decode::from_slice;
pub(crate) use encode::{append, append_with};
