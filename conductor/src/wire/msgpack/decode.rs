//! A MessagePack decoder for serde that reads a byte slice in place.
//!
//! It reads what `encode.rs` writes (and any MessagePack without extension types):
//! strings and byte strings are borrowed from the input, and nesting (arrays, maps,
//! options, newtypes) is bounded, so bytes from another process can be refused but
//! never overflow the stack.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

/// How deep arrays and maps may nest; past it the bytes are refused.
const MAX_DEPTH: u32 = 256;

/// Reads one `T` that fills `bytes` exactly.
pub(crate) fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let mut decoder = Decoder {
        input: bytes,
        depth: 0,
    };
    let value = T::deserialize(&mut decoder)?;
    match decoder.input.len() {
        0 => Ok(value),
        extra => Err(DecodeError(format!(
            "{extra} bytes left over after the value"
        ))),
    }
}

/// Why bytes are not the value asked for.
#[derive(Debug)]
pub(crate) struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

struct Decoder<'de> {
    input: &'de [u8],
    depth: u32,
}

/// What a marker byte starts.
enum Item<'de> {
    Nil,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(&'de [u8]),
    Bin(&'de [u8]),
    Array(usize),
    Map(usize),
}

impl<'de> Decoder<'de> {
    fn peek(&self) -> Result<u8> {
        self.input.first().copied().ok_or_else(ended)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.input.len() < n {
            return Err(ended());
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// A length of 1, 2 or 4 bytes.
    #[inline]
    fn len(&mut self, width: usize) -> Result<usize> {
        Ok(match width {
            1 => self.array::<1>()?[0] as usize,
            2 => u16::from_be_bytes(self.array()?) as usize,
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    #[inline]
    fn item(&mut self) -> Result<Item<'de>> {
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00..=0x7f => Item::Uint(marker.into()),
            0x80..=0x8f => Item::Map((marker & 0x0f).into()),
            0x90..=0x9f => Item::Array((marker & 0x0f).into()),
            0xa0..=0xbf => Item::Str(self.take((marker & 0x1f).into())?),
            0xc0 => Item::Nil,
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                Item::Bin(self.take(len)?)
            }
            0xca => Item::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Item::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Item::Uint(self.array::<1>()?[0].into()),
            0xcd => Item::Uint(u16::from_be_bytes(self.array()?).into()),
            0xce => Item::Uint(u32::from_be_bytes(self.array()?).into()),
            0xcf => Item::Uint(u64::from_be_bytes(self.array()?)),
            0xd0 => Item::Int((self.array::<1>()?[0] as i8).into()),
            0xd1 => Item::Int(i16::from_be_bytes(self.array()?).into()),
            0xd2 => Item::Int(i32::from_be_bytes(self.array()?).into()),
            0xd3 => Item::Int(i64::from_be_bytes(self.array()?)),
            0xd9..=0xdb => {
                let len = self.len(1 << (marker - 0xd9))?;
                Item::Str(self.take(len)?)
            }
            0xdc | 0xdd => Item::Array(self.len(2 << (marker - 0xdc))?),
            0xde | 0xdf => Item::Map(self.len(2 << (marker - 0xde))?),
            0xe0..=0xff => Item::Int((marker as i8).into()),
            0xc1 | 0xc7..=0xc9 | 0xd4..=0xd8 => {
                return Err(DecodeError(format!(
                    "MessagePack marker 0x{marker:02x} (an extension type) is not supported"
                )))
            }
        })
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= MAX_DEPTH {
            return Err(DecodeError(format!(
                "arrays and maps nest deeper than {MAX_DEPTH}"
            )));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    #[inline]
    fn visit<V: Visitor<'de>>(&mut self, item: Item<'de>, visitor: V) -> Result<V::Value> {
        match item {
            Item::Nil => visitor.visit_unit(),
            Item::Bool(v) => visitor.visit_bool(v),
            Item::Uint(v) => visitor.visit_u64(v),
            Item::Int(v) => visitor.visit_i64(v),
            Item::F32(v) => visitor.visit_f32(v),
            Item::F64(v) => visitor.visit_f64(v),
            Item::Str(bytes) => visitor.visit_borrowed_str(utf8(bytes)?),
            Item::Bin(bytes) => visitor.visit_borrowed_bytes(bytes),
            Item::Array(len) => self.nested(|d| {
                let mut elements = Elements {
                    decoder: d,
                    left: len,
                };
                let value = visitor.visit_seq(&mut elements)?;
                elements.all_read(value, "array elements")
            }),
            Item::Map(len) => self.nested(|d| {
                let mut entries = Elements {
                    decoder: d,
                    left: len,
                };
                let value = visitor.visit_map(&mut entries)?;
                entries.all_read(value, "map entries")
            }),
        }
    }
}

#[inline]
fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| DecodeError(format!("a string is not UTF-8: {e}")))
}

fn ended() -> DecodeError {
    DecodeError("the bytes ended inside a value".into())
}

/// The elements of an array, or the entries of a map.
struct Elements<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    left: usize,
}

impl Elements<'_, '_> {
    /// A visitor that stopped early (a struct with fewer fields than the array) read
    /// another shape than the one written.
    fn all_read<T>(&self, value: T, what: &str) -> Result<T> {
        match self.left {
            0 => Ok(value),
            left => Err(DecodeError(format!("{left} {what} were left unread"))),
        }
    }
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Every element takes a byte at least: a forged length cannot make a
        // collection reserve more than the input could fill.
        Some(self.left.min(self.decoder.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.decoder)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.decoder.input.len() / 2))
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = DecodeError;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let item = self.item()?;
        self.visit(item, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == 0xc0 {
            self.input = &self.input[1..];
            visitor.visit_none()
        } else {
            // Counted as a level: `struct L(Option<Box<L>>)` reads no byte per level.
            self.nested(|d| visitor.visit_some(d))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        // A unit struct is written as an empty array.
        match self.peek()? {
            0xc0 | 0x90 => {
                self.input = &self.input[1..];
                visitor.visit_unit()
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|d| visitor.visit_newtype_struct(d))
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.item()? {
            Item::Bin(bytes) if bytes.len() == 16 => {
                visitor.visit_i128(i128::from_be_bytes(bytes.try_into().expect("16 bytes")))
            }
            item => self.visit(item, visitor),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.item()? {
            Item::Bin(bytes) if bytes.len() == 16 => {
                visitor.visit_u128(u128::from_be_bytes(bytes.try_into().expect("16 bytes")))
            }
            item => self.visit(item, visitor),
        }
    }

    /// Field names are most of what a small job's decoding reads: an ASCII name
    /// skips the UTF-8 decoder.
    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(&marker @ 0xa0..=0xbf) = self.input.first() {
            let len = usize::from(marker & 0x1f);
            if let Some(name) = self.input.get(1..1 + len).filter(|name| name.is_ascii()) {
                self.input = &self.input[1 + len..];
                // SAFETY: ASCII is UTF-8.
                return visitor.visit_borrowed_str(unsafe { std::str::from_utf8_unchecked(name) });
            }
        }
        match self.item()? {
            Item::Str(bytes) if bytes.is_ascii() => {
                // SAFETY: ASCII is UTF-8.
                visitor.visit_borrowed_str(unsafe { std::str::from_utf8_unchecked(bytes) })
            }
            item => self.visit(item, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        // A unit variant is its name; any other is a map of one entry, name to content.
        match self.peek()? {
            0x81 => {
                self.input = &self.input[1..];
                self.nested(|d| visitor.visit_enum(Variant { decoder: d }))
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                let Item::Str(name) = self.item()? else {
                    unreachable!("a string marker")
                };
                visitor.visit_enum(utf8(name)?.into_deserializer())
            }
            // An index instead of a name, as some encoders write.
            0x00..=0x7f | 0xcc..=0xcf => match self.item()? {
                Item::Uint(index) => {
                    let index = u32::try_from(index)
                        .map_err(|_| DecodeError(format!("no enum variant has index {index}")))?;
                    visitor.visit_enum(index.into_deserializer())
                }
                _ => unreachable!("an unsigned integer marker"),
            },
            marker => Err(DecodeError(format!(
                "expected an enum (a name, or a map of one entry), found marker 0x{marker:02x}"
            ))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    // The shapes of small jobs take a short way past the general dispatch.
    fast_uint! {
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.peek()? {
            marker @ 0x80..=0x8f => {
                self.input = &self.input[1..];
                self.visit(Item::Map((marker & 0x0f).into()), visitor)
            }
            // A struct the layout sends as an array (`wire/layout.rs`).
            marker @ 0x90..=0x9f => {
                self.input = &self.input[1..];
                self.visit(Item::Array((marker & 0x0f).into()), visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf unit seq tuple tuple_struct map
    }
}

/// Integer methods whose small values (one byte, below 128) are read at once.
macro_rules! fast_uint {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match self.input.first() {
                Some(&small @ 0x00..=0x7f) => {
                    self.input = &self.input[1..];
                    visitor.visit_u64(small.into())
                }
                _ => self.deserialize_any(visitor),
            }
        }
    )*};
}
use fast_uint;

/// A variant written as a map of one entry: its name, then its content.
struct Variant<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = DecodeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self)> {
        let name = seed.deserialize(&mut *self.decoder)?;
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<()> {
        de::IgnoredAny::deserialize(&mut *self.decoder).map(drop)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.decoder)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_any(&mut *self.decoder, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_any(&mut *self.decoder, visitor)
    }
}
