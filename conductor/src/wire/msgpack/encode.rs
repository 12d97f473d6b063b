//! A MessagePack encoder for serde that appends to a `Vec<u8>`: structs as maps with
//! their field names (or as arrays of their fields, where a [`Layout`] allows), and
//! integers in their smallest form, as `rmp-serde` writes them.

use std::fmt;

use serde::ser::{self, Serialize};

use crate::wire::layout::Layout;

/// `value` appended to `out` as MessagePack, structs as maps with field names.
pub(crate) fn append<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    value.serialize(&mut Encoder { out, layout: None })
}

/// `value` appended to `out`, its structs as arrays where `layout` allows. A struct
/// that turns out to write other fields than its reader expects falls back to names,
/// and the value is written again (its `Serialize` runs twice, once per fallback).
pub(crate) fn append_with<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    layout: &Layout,
) -> Result<(), EncodeError> {
    let start = out.len();
    let mut tries = 0;
    loop {
        let fallbacks = layout.fallbacks();
        let result = value.serialize(&mut Encoder {
            out,
            layout: Some(layout),
        });
        if layout.fallbacks() == fallbacks {
            return result;
        }
        out.truncate(start);
        // Each try turns one more struct to names; past that many, names throughout.
        tries += 1;
        if tries > layout.shapes() {
            return append(value, out);
        }
    }
}

/// Why a value could not be encoded: its `Serialize` said so.
#[derive(Debug)]
pub(crate) struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    /// Which structs go as arrays; none without one.
    layout: Option<&'a Layout>,
}

/// The error that stops an encoding whose struct fell back to names.
fn fell_back() -> EncodeError {
    EncodeError("a struct wrote other fields than its reader expects".into())
}

impl Encoder<'_> {
    #[inline(always)]
    fn uint(&mut self, v: u64) {
        if v < 128 {
            self.out.push(v as u8);
        } else if v < 256 {
            self.out.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 65536 {
            self.prefixed(0xcd, &(v as u16).to_be_bytes());
        } else if v < 1 << 32 {
            self.prefixed(0xce, &(v as u32).to_be_bytes());
        } else {
            self.prefixed(0xcf, &v.to_be_bytes());
        }
    }

    #[inline]
    fn sint(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.out.push(v as u8);
        } else if v >= -128 {
            self.out.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= -32768 {
            self.prefixed(0xd1, &(v as i16).to_be_bytes());
        } else if v >= -(1 << 31) {
            self.prefixed(0xd2, &(v as i32).to_be_bytes());
        } else {
            self.prefixed(0xd3, &v.to_be_bytes());
        }
    }

    #[inline]
    fn prefixed<const N: usize>(&mut self, marker: u8, bytes: &[u8; N]) {
        self.out.push(marker);
        self.out.extend_from_slice(bytes);
    }

    /// A length in the smallest of its marker's forms: the fixed form below
    /// `fix_max` (marker `fix | len`), else 8 (when the type has it), 16 or 32 bits.
    #[inline]
    fn len(
        &mut self,
        len: usize,
        fix: u8,
        fix_max: usize,
        markers: [u8; 3],
    ) -> Result<(), EncodeError> {
        if len < fix_max {
            self.out.push(fix | len as u8);
        } else if len < 256 && markers[0] != 0 {
            self.out.extend_from_slice(&[markers[0], len as u8]);
        } else if len < 65536 {
            self.prefixed(markers[1], &(len as u16).to_be_bytes());
        } else {
            let len = u32::try_from(len).map_err(|_| {
                EncodeError(format!("a length of {len} is over MessagePack's 2^32"))
            })?;
            self.prefixed(markers[2], &len.to_be_bytes());
        }
        Ok(())
    }

    #[inline(always)]
    fn str(&mut self, v: &str) -> Result<(), EncodeError> {
        // Field names, the commonest strings, take the short form.
        if v.len() < 32 {
            self.out.reserve(1 + v.len());
            self.out.push(0xa0 | v.len() as u8);
        } else {
            self.len(v.len(), 0xa0, 32, [0xd9, 0xda, 0xdb])?;
        }
        put(self.out, v.as_bytes());
        Ok(())
    }

    fn array_len(&mut self, len: usize) -> Result<(), EncodeError> {
        self.len(len, 0x90, 16, [0, 0xdc, 0xdd])
    }

    fn map_len(&mut self, len: usize) -> Result<(), EncodeError> {
        self.len(len, 0x80, 16, [0, 0xde, 0xdf])
    }

    /// A sequence or map whose length comes only at its end: a 32-bit header now,
    /// made the smallest one by [`Compound::end`].
    fn compound(&mut self, len: Option<usize>, map: bool) -> Result<Compound<'_>, EncodeError> {
        let counting = match len {
            Some(len) if map => self.map_len(len).map(|()| None)?,
            Some(len) => self.array_len(len).map(|()| None)?,
            None => {
                let at = self.out.len();
                self.out.extend_from_slice(&[0; 5]);
                Some(Counting { at, count: 0, map })
            }
        };
        Ok(Compound {
            encoder: Encoder {
                out: self.out,
                layout: self.layout,
            },
            counting,
            positional: None,
        })
    }

    /// A struct (or struct variant) of `len` fields: an array where the layout has it
    /// so, else a map of field names.
    #[inline(always)]
    fn structure(
        &mut self,
        name: &'static str,
        variant: Option<&'static str>,
        len: usize,
    ) -> Result<Compound<'_>, EncodeError> {
        let shape = self
            .layout
            .and_then(|layout| layout.positional(name, variant, len));
        let Some(shape) = shape else {
            return self.compound(Some(len), true);
        };
        self.array_len(len)?;
        Ok(Compound {
            encoder: Encoder {
                out: self.out,
                layout: self.layout,
            },
            counting: None,
            positional: Some((shape, 0)),
        })
    }
}

/// Appends `data`. A `memcpy` call for each short string (field names, mostly) was a
/// tenth of the master's time with tiny jobs; short ones are copied here in
/// fixed-size pieces, which compile to plain moves.
#[inline(always)]
fn put(out: &mut Vec<u8>, data: &[u8]) {
    if data.len() > 16 {
        out.extend_from_slice(data);
        return;
    }
    out.reserve(16);
    let mut rest = data;
    while let Some((piece, tail)) = rest.split_first_chunk::<8>() {
        out.extend_from_slice(piece);
        rest = tail;
    }
    if let Some((piece, tail)) = rest.split_first_chunk::<4>() {
        out.extend_from_slice(piece);
        rest = tail;
    }
    if let Some((piece, tail)) = rest.split_first_chunk::<2>() {
        out.extend_from_slice(piece);
        rest = tail;
    }
    if let Some(&byte) = rest.first() {
        out.push(byte);
    }
}

struct Counting {
    at: usize,
    count: usize,
    map: bool,
}

/// The encoder inside a sequence, map, tuple or struct.
struct Compound<'a> {
    encoder: Encoder<'a>,
    counting: Option<Counting>,
    /// For a struct written as an array: its shape in the layout, and the next field.
    positional: Option<(usize, usize)>,
}

impl Compound<'_> {
    #[inline(always)]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        if let Some(counting) = &mut self.counting {
            counting.count += 1;
        }
        value.serialize(&mut Encoder {
            out: self.encoder.out,
            layout: self.encoder.layout,
        })
    }

    #[inline(always)]
    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        let Some((shape, at)) = &mut self.positional else {
            self.encoder.str(key)?;
            return self.element(value);
        };
        let layout = self.encoder.layout.ok_or_else(fell_back)?;
        if !layout.expects(*shape, *at, key) {
            layout.fall_back(*shape);
            return Err(fell_back());
        }
        *at += 1;
        self.element(value)
    }

    /// A field left out (`skip_serializing_if`): an array would shift the others.
    fn skip(&mut self) -> Result<(), EncodeError> {
        match (self.positional, self.encoder.layout) {
            (Some((shape, _)), Some(layout)) => {
                layout.fall_back(shape);
                Err(fell_back())
            }
            _ => Ok(()),
        }
    }

    #[inline]
    fn end(self) -> Result<(), EncodeError> {
        if let (Some((shape, at)), Some(layout)) = (self.positional, self.encoder.layout) {
            if !layout.expects_all(shape, at) {
                layout.fall_back(shape);
                return Err(fell_back());
            }
        }
        let Some(Counting { at, count, map }) = self.counting else {
            return Ok(());
        };
        let mut header = Vec::with_capacity(5);
        let mut encoder = Encoder {
            out: &mut header,
            layout: None,
        };
        if map {
            encoder.map_len(count)?;
        } else {
            encoder.array_len(count)?;
        }
        // The body moves back over the room the header does not need.
        let out = self.encoder.out;
        out.copy_within(at + 5.., at + header.len());
        out.truncate(out.len() - (5 - header.len()));
        out[at..at + header.len()].copy_from_slice(&header);
        Ok(())
    }
}

impl<'a> ser::Serializer for &'a mut Encoder<'_> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }

    // Every integer takes its smallest form, whatever its type: `5u8` and `5u64`
    // are the same bytes (lookup keys compare bytes).
    integers! {
        serialize_i8(i8) => sint, serialize_i16(i16) => sint, serialize_i32(i32) => sint,
        serialize_i64(i64) => sint, serialize_u8(u8) => uint, serialize_u16(u16) => uint,
        serialize_u32(u32) => uint, serialize_u64(u64) => uint,
    }

    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), EncodeError> {
        self.serialize_bytes(&v.to_be_bytes())
    }

    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), EncodeError> {
        self.serialize_bytes(&v.to_be_bytes())
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.prefixed(0xca, &v.to_be_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.prefixed(0xcb, &v.to_be_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.str(v)
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        self.len(v.len(), 0, 0, [0xc4, 0xc5, 0xc6])?;
        self.out.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.out.push(0x90);
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        if name == "_ExtStruct" {
            return Err(EncodeError(
                "MessagePack extension types (`rmp_serde::ext`) cannot travel".into(),
            ));
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(0x81);
        self.str(variant)?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        self.compound(len, false)
    }

    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, EncodeError> {
        self.compound(Some(len), false)
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.compound(Some(len), false)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.out.push(0x81);
        self.str(variant)?;
        self.compound(Some(len), false)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>, EncodeError> {
        self.compound(len, true)
    }

    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'a>, EncodeError> {
        self.structure(name, None, len)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, EncodeError> {
        self.out.push(0x81);
        self.str(variant)?;
        self.structure(name, Some(variant), len)
    }
}

// Sequences, tuples and tuple structs and variants are all arrays of elements.
elements! {
    ser::SerializeSeq => serialize_element,
    ser::SerializeTuple => serialize_element,
    ser::SerializeTupleStruct => serialize_field,
    ser::SerializeTupleVariant => serialize_field,
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        // A map's entry counts once, at its key.
        self.element(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut Encoder {
            out: self.encoder.out,
            layout: self.encoder.layout,
        })
    }

    #[inline]
    fn end(self) -> Result<(), EncodeError> {
        Compound::end(self)
    }
}

// Structs and struct variants are maps of field names to values, or arrays of values
// where the layout allows.
fields! {
    ser::SerializeStruct,
    ser::SerializeStructVariant,
}

macro_rules! integers {
    ($($method:ident($ty:ty) => $form:ident,)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<(), EncodeError> {
            self.$form(v.into());
            Ok(())
        }
    )*};
}
use integers;

macro_rules! elements {
    ($($trait:path => $method:ident,)*) => {$(
        impl $trait for Compound<'_> {
            type Ok = ();
            type Error = EncodeError;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
                self.element(value)
            }

            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                Compound::end(self)
            }
        }
    )*};
}
use elements;

macro_rules! fields {
    ($($trait:path,)*) => {$(
        impl $trait for Compound<'_> {
            type Ok = ();
            type Error = EncodeError;

            #[inline(always)]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), EncodeError> {
                self.field(key, value)
            }

            #[inline]
            fn skip_field(&mut self, _key: &'static str) -> Result<(), EncodeError> {
                self.skip()
            }

            #[inline]
            fn end(self) -> Result<(), EncodeError> {
                Compound::end(self)
            }
        }
    )*};
}
use fields;
