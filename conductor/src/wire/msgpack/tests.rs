//! The encoder against `rmp-serde`'s bytes, the decoder against both, and bytes
//! that another process could forge.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{append, from_slice};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sparse {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
    #[serde(flatten)]
    extra: BTreeMap<String, i64>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    New(i16),
    Tuple(u8, f32),
    Struct { w: u64, h: f64 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Tagged {
    A { x: char },
    B,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Point { x: u32, y: u32 },
    Size { w: u32, h: u32 },
    Text(String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pair(u8, String);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Wrapper(u64);

/// Our bytes are `rmp-serde`'s, and both decoders read them back.
fn same<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let mut ours = Vec::new();
    append(&value, &mut ours).unwrap();
    assert_eq!(ours, rmp_serde::to_vec_named(&value).unwrap(), "{value:?}");
    assert_eq!(from_slice::<T>(&ours).unwrap(), value);
    assert_eq!(rmp_serde::from_slice::<T>(&ours).unwrap(), value);
}

#[test]
fn every_shape_is_written_as_rmp_serde_writes_it_and_read_back() {
    for n in [
        0u64,
        1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        u32::MAX as u64,
        u64::MAX,
    ] {
        same(n);
    }
    for n in [
        0i64,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        i32::MIN as i64,
        i64::MIN,
        i64::MAX,
    ] {
        same(n);
    }
    same((
        1.5f32,
        -2.25f64,
        true,
        false,
        'é',
        (),
        Unit,
        Pair(3, "p".into()),
    ));
    same((i128::MIN, u128::MAX, Some(3u8), None::<u8>, Wrapper(9)));
    for len in [0, 31, 32, 255, 256, 65535, 65536] {
        same("s".repeat(len));
        same(serde_bytes::ByteBuf::from(vec![1u8; len]));
        same(vec![7u8; len]);
        same(
            (0..len as u64)
                .map(|k| (k, k % 3))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    same(vec![
        Shape::Unit,
        Shape::New(-9),
        Shape::Tuple(1, 0.5),
        Shape::Struct { w: 9, h: 1.0 },
    ]);
    same(vec![Tagged::A { x: 'q' }, Tagged::B]);
    same(vec![
        Untagged::Point { x: 1, y: 2 },
        Untagged::Size { w: 3, h: 4 },
        Untagged::Text("t".into()),
    ]);
    same(HashMap::from([((1u8, 2u16), "pair".to_string())]));
    same(serde_json::json!({"a": [1, -2.5, null, {"b": "c"}], "d": true}));
    same(Cow::<'static, str>::Borrowed("borrowed"));
    // Lengths known only at the end: flatten, and iterators without a size.
    for extra in [0, 3, 20] {
        same(Sparse {
            id: 1,
            note: None,
            extra: (0..extra).map(|k| (format!("k{k}"), -k)).collect(),
        });
    }
}

#[test]
fn sequences_of_unknown_length_get_their_smallest_header() {
    struct Unsized(usize);
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq((0..self.0).filter(|_| true))
        }
    }
    for len in [0, 15, 16, 70000] {
        let mut ours = Vec::new();
        append(&Unsized(len), &mut ours).unwrap();
        assert_eq!(
            ours,
            rmp_serde::to_vec_named(&(0..len).collect::<Vec<_>>()).unwrap()
        );
    }
}

#[test]
fn forged_bytes_are_refused_not_followed() {
    // Nested a thousand deep: refused, not a stack overflow.
    let deep = [vec![0x91u8; 1000], vec![0xc0]].concat();
    let error = from_slice::<serde_json::Value>(&deep)
        .unwrap_err()
        .to_string();
    assert!(error.contains("nest deeper"), "{error}");
    // A length of four billion with nothing behind it: refused, nothing reserved.
    let error = from_slice::<Vec<u64>>(&[0xdd, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(error.to_string().contains("ended"), "{error}");
    let error = from_slice::<String>(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']).unwrap_err();
    assert!(error.to_string().contains("ended"), "{error}");
    // Extension types, trailing bytes, invalid UTF-8, and an array longer than the
    // struct it should be.
    assert!(from_slice::<u8>(&[0xd4, 1, 2]).is_err());
    assert!(from_slice::<u8>(&[1, 2]).is_err());
    assert!(from_slice::<String>(&[0xa1, 0xff]).is_err());
    assert!(from_slice::<Pair>(&[0x93, 1, 0xa0, 2]).is_err());
}

#[test]
fn unknown_lengths_nest() {
    struct Unsized(Vec<Vec<u64>>);
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|inner| Inner(inner.clone())))
        }
    }
    struct Inner(Vec<u64>);
    impl Serialize for Inner {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().filter(|_| true))
        }
    }
    let value: Vec<Vec<u64>> = (0..20).map(|n| (0..n * 2).collect()).collect();
    let mut ours = Vec::new();
    append(&Unsized(value.clone()), &mut ours).unwrap();
    assert_eq!(ours, rmp_serde::to_vec_named(&value).unwrap());
    // Flattened structs inside a sequence, each with more than 15 entries.
    let many: Vec<Sparse> = (0..3)
        .map(|id| Sparse {
            id,
            note: Some("n".into()),
            extra: (0..20).map(|k| (format!("k{k}"), k)).collect(),
        })
        .collect();
    same(many);
}

#[test]
fn an_option_of_unit_and_an_endless_option_chain() {
    same(Some(Pair(1, "a".into())));
    // MessagePack has one nil: `Some(())` comes back as `None`, as in JSON.
    let mut bytes = Vec::new();
    append(&Some(()), &mut bytes).unwrap();
    assert_eq!(from_slice::<Option<()>>(&bytes).unwrap(), None);
    // A type that recurses through `Option` reads no byte per level: refused.
    #[derive(Debug, Deserialize)]
    struct Chain(#[allow(dead_code)] Option<Box<Chain>>);
    let error = from_slice::<Chain>(&[0x01]).unwrap_err();
    assert!(error.to_string().contains("nest deeper"), "{error}");
}
