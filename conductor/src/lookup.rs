//! Named lookup tables that the master holds once and every worker reads.
//!
//! The master keeps keys and values as encoded bytes: it never needs their types,
//! and a lookup from a worker is answered without decoding anything. The typed API
//! on either side ([`crate::ConductorHandle::lookup`], [`crate::Worker::lookup`])
//! encodes keys and decodes values (`wire/value.rs`), so a key is found by the
//! same bytes it was stored with: `&str` and `String` are the same key, and so are
//! integers of the same value up to 64 bits wide (`i128` and `u128` travel as 16
//! bytes).

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::Error;

type Table = HashMap<Vec<u8>, Vec<u8>>;

/// Told of every value set after the run starts, to keep it where a restarted master
/// finds it again (the distributed mode's bucket).
pub(crate) type KeepWrite = Box<dyn Fn(&str, &[u8], &[u8]) + Send + Sync>;

/// The master's lookup tables, shared by the run loop and every handle.
#[derive(Default)]
pub(crate) struct LookupStore {
    tables: RwLock<HashMap<String, Table>>,
    keep: std::sync::OnceLock<KeepWrite>,
}

impl LookupStore {
    /// The encoded value under `key`; an error names a table that does not exist.
    pub fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        match tables.get(table) {
            Some(entries) => Ok(entries.get(key).cloned()),
            None => Err(format!("no lookup table named `{table}`")),
        }
    }

    /// Stores a value, creating the table if needed (as the seed's `setLookupValue`).
    pub fn set(&self, table: &str, key: Vec<u8>, value: Vec<u8>) {
        if let Some(keep) = self.keep.get() {
            keep(table, &key, &value);
        }
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        tables
            .entry(table.to_string())
            .or_default()
            .insert(key, value);
    }

    /// From now on, every value set is also given to `keep`.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub fn keep_writes(&self, keep: KeepWrite) {
        let _ = self.keep.set(keep);
    }

    pub fn insert_table(&self, table: String, entries: Table) {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        tables.insert(table, entries);
    }

    pub fn entries(&self, table: &str) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        tables.get(table).map(|entries| {
            entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    pub fn table_names(&self) -> Vec<String> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = tables.keys().cloned().collect();
        names.sort();
        names
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, Error> {
    crate::wire::value::to_vec(value).map_err(|e| Error::codec(what, e))
}

/// Encodes one table entry.
pub(crate) fn encode_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
    key: &K,
    value: &V,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    Ok((
        encode("a lookup key", key)?,
        encode("a lookup value", value)?,
    ))
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, Error> {
    crate::wire::value::from_slice(bytes).map_err(|e| Error::codec(what, e))
}

/// A lookup reply on the wire: a marker byte, then the value when there is one.
pub(crate) fn encode_reply(value: Option<Vec<u8>>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(mut bytes) => {
            bytes.insert(0, 1);
            bytes
        }
    }
}

pub(crate) fn decode_reply(reply: &[u8]) -> Result<Option<&[u8]>, Error> {
    match reply.split_first() {
        Some((0, _)) => Ok(None),
        Some((1, value)) => Ok(Some(value)),
        _ => Err(Error::codec("a lookup reply", "unknown marker")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_bytes() {
        let store = LookupStore::default();
        store.set(
            "fruits",
            encode("key", "a").unwrap(),
            encode("value", "apple").unwrap(),
        );
        let raw = store
            .get("fruits", &encode("key", &"a".to_string()).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(decode::<String>("value", &raw).unwrap(), "apple");
        assert_eq!(
            store.get("fruits", &encode("key", "zz").unwrap()).unwrap(),
            None
        );
        assert!(store
            .get("veggies", b"x")
            .unwrap_err()
            .contains("no lookup table named `veggies`"));
    }

    #[test]
    fn replies_tell_missing_from_empty() {
        assert_eq!(decode_reply(&encode_reply(None)).unwrap(), None);
        assert_eq!(
            decode_reply(&encode_reply(Some(vec![]))).unwrap(),
            Some(&[][..])
        );
        assert_eq!(
            decode_reply(&encode_reply(Some(vec![7]))).unwrap(),
            Some(&[7][..])
        );
    }
}
