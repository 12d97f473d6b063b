//! The caller's values as bytes: jobs, outputs, lookup values, messages and replies.
//!
//! They travel as MessagePack with field names (`msgpack/`; a job's structs go as arrays
//! where its [`Layout`](super::layout::Layout) allows), a self-describing format:
//! every shape serde can describe round-trips (but for MessagePack's one nil:
//! `Some(None)` and `Some(())` come back as `None`), including `skip_serializing_if`,
//! `flatten`, internally tagged and untagged enums, `serde_json::Value`, maps with
//! non-string keys and 128-bit integers. Postcard, which carries our own control
//! messages, is a little faster but breaks on all of those (`bench/results/formats.md`).

use std::any::type_name;
use std::fmt::Display;

use serde::{Deserialize, Serialize};

/// Appends `value` to `out`; on an error, `out` may hold part of it.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    super::msgpack::append(value, out).map_err(|e| encode_error::<T>(&e))
}

/// Appends `value` to `out`, its structs as arrays where `layout` allows
/// ([`Layout`](super::layout::Layout)); on an error, `out` may hold part of it.
pub(crate) fn write_with<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    layout: &super::layout::Layout,
) -> Result<(), String> {
    super::msgpack::append_with(value, out, layout).map_err(|e| encode_error::<T>(&e))
}

/// `value` as bytes of its own.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    write(value, &mut out)?;
    Ok(out)
}

/// Reads a `T` back, or says why the bytes are not one.
pub(crate) fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, String> {
    super::msgpack::from_slice(bytes).map_err(|e| {
        let hint = match hint(&e.to_string()) {
            "" => SAME_SHAPE,
            hint => hint,
        };
        format!("could not decode it as `{}`: {e}{hint}", type_name::<T>())
    })
}

fn encode_error<T: ?Sized>(e: &impl Display) -> String {
    let hint = hint(&e.to_string());
    format!("could not encode `{}`: {e}{hint}", type_name::<T>())
}

const SAME_SHAPE: &str = "; the sender's and the receiver's types must have the same \
     serde shape (the same type on both sides, and the same version of the program)";

/// What to do about the errors users meet, by what the error says.
fn hint(error: &str) -> &'static str {
    if error.contains("i128") || error.contains("u128") {
        // serde buffers these shapes in a value type that has no 128-bit integers.
        "; a 128-bit integer cannot sit inside `#[serde(flatten)]`, an untagged or an \
         internally tagged enum: store it as a string or as two u64 halves"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_one_value_are_the_same_bytes() {
        // Lookup keys are compared as bytes.
        assert_eq!(to_vec(&5u32).unwrap(), to_vec(&5u64).unwrap());
        assert_eq!(to_vec(&300i64).unwrap(), to_vec(&300u16).unwrap());
        assert_eq!(to_vec(&-7i8).unwrap(), to_vec(&-7i64).unwrap());
        assert_eq!(to_vec("k").unwrap(), to_vec(&"k".to_string()).unwrap());
    }

    #[test]
    fn a_wrong_type_says_which_and_why() {
        let bytes = to_vec(&"text").unwrap();
        let error = from_slice::<u64>(&bytes).unwrap_err();
        assert!(error.contains("`u64`"), "{error}");
        assert!(error.contains("same serde shape"), "{error}");
    }
}
