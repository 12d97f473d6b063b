//! Which structs of a job type may travel as arrays of their fields, not maps.
//!
//! Field names are most of a small job's bytes, and reading them back is most of its
//! decoding: W1's three-field job is 27 bytes with names and 9 without. But an array
//! is only safe where the reader asks for that struct by its fields: a struct inside
//! an untagged or internally tagged enum, `#[serde(flatten)]` or a
//! `serde_json::Value` is read through `deserialize_any`, where an array of the right
//! length can silently become the wrong variant. So the job type's `Deserialize` is
//! traced once (`serde-reflection`, which refuses `deserialize_any` and explores
//! every enum variant); only if nothing in it is read that way do its structs go as
//! arrays, and each only while the fields it writes are, in order, the fields its
//! reader expects. A struct that writes otherwise (`skip_serializing_if` skipping
//! one, a field renamed one way, `skip_deserializing`) falls back to names from then
//! on. The reader takes both layouts, so a fallback is always safe.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde_reflection::{ContainerFormat, Samples, Tracer, TracerConfig, VariantFormat};

/// Type graphs with more structs than this keep names: finding a struct is a scan.
const MOST_SHAPES: usize = 64;

/// The structs of one type that travel as arrays.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    shapes: Vec<Shape>,
    /// Counts fallbacks, so that an encoding that met one is done again.
    fallbacks: AtomicUsize,
}

/// A field its reader expects, and the address of the key its `Serialize` gives,
/// once seen (a key compared by its bytes for every job cost W1 a few percent).
#[derive(Debug)]
struct Field {
    name: String,
    seen_as: AtomicUsize,
}

/// One struct, or one struct variant of an enum, and the fields its reader expects.
#[derive(Debug)]
struct Shape {
    container: String,
    variant: Option<String>,
    fields: Vec<Field>,
    /// The addresses of the names its `Serialize` gives, once seen: the fast match.
    seen_as: AtomicUsize,
    seen_variant: AtomicUsize,
    /// Cleared when it wrote other fields than its reader expects.
    positional: AtomicBool,
}

impl Layout {
    /// Every struct keeps its field names.
    pub(crate) fn named() -> Layout {
        Layout::default()
    }

    /// The layout for values read as `T`: arrays for its structs if tracing `T`'s
    /// `Deserialize` proves it safe, names otherwise.
    pub(crate) fn of<T: DeserializeOwned>() -> Layout {
        match std::panic::catch_unwind(trace::<T>) {
            Ok(Some(registry)) => {
                let shapes = shapes(registry);
                match shapes.len() <= MOST_SHAPES {
                    true => Layout {
                        shapes,
                        fallbacks: AtomicUsize::new(0),
                    },
                    false => Layout::named(),
                }
            }
            _ => Layout::named(),
        }
    }

    /// The shape that `name` (with `variant`, for a struct variant) takes as an array
    /// of `len` fields, if it does.
    #[inline(always)]
    pub(super) fn positional(
        &self,
        name: &'static str,
        variant: Option<&'static str>,
        len: usize,
    ) -> Option<usize> {
        // A `Serialize` names its struct with a `&'static str`: once matched by
        // content, the same address and length are the same name.
        let same = |shape: &Shape| {
            shape.seen_as.load(Ordering::Relaxed) == name.as_ptr() as usize
                && shape.seen_variant.load(Ordering::Relaxed)
                    == variant.map_or(0, |variant| variant.as_ptr() as usize)
                && shape.container.len() == name.len()
                && shape.variant.as_ref().map(String::len) == variant.map(str::len)
        };
        let index = self.shapes.iter().position(same).or_else(|| {
            let index = self
                .shapes
                .iter()
                .position(|shape| shape.container == name && shape.variant.as_deref() == variant)?;
            let shape = &self.shapes[index];
            shape
                .seen_as
                .store(name.as_ptr() as usize, Ordering::Relaxed);
            let variant = variant.map_or(0, |variant| variant.as_ptr() as usize);
            shape.seen_variant.store(variant, Ordering::Relaxed);
            Some(index)
        })?;
        let shape = &self.shapes[index];
        (shape.positional.load(Ordering::Relaxed) && shape.fields.len() == len).then_some(index)
    }

    /// Whether field `at` of shape `index` is named `key`, as its reader expects.
    #[inline(always)]
    pub(super) fn expects(&self, index: usize, at: usize, key: &'static str) -> bool {
        let Some(field) = self.shapes[index].fields.get(at) else {
            return false;
        };
        if field.seen_as.load(Ordering::Relaxed) == key.as_ptr() as usize
            && field.name.len() == key.len()
        {
            return true;
        }
        let same = field.name == key;
        if same {
            field
                .seen_as
                .store(key.as_ptr() as usize, Ordering::Relaxed);
        }
        same
    }

    /// Whether `written` fields are all the fields shape `index` expects.
    pub(super) fn expects_all(&self, index: usize, written: usize) -> bool {
        self.shapes[index].fields.len() == written
    }

    /// Shape `index` wrote other fields than its reader expects: names from now on.
    pub(super) fn fall_back(&self, index: usize) {
        self.shapes[index]
            .positional
            .store(false, Ordering::Relaxed);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// How many fallbacks there were so far.
    pub(super) fn fallbacks(&self) -> usize {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// How many shapes it knows.
    pub(super) fn shapes(&self) -> usize {
        self.shapes.len()
    }

    /// How many shapes may still travel as arrays.
    #[cfg(test)]
    pub(super) fn positional_shapes(&self) -> usize {
        self.shapes
            .iter()
            .filter(|shape| shape.positional.load(Ordering::Relaxed))
            .count()
    }
}

/// Every container `T`'s `Deserialize` reads, with every variant of every enum
/// explored; `None` if any part is read through `deserialize_any`, or cannot be
/// followed.
///
/// `Tracer::trace_type` explores every variant of `T` itself when it is an enum; an
/// enum inside `T` has only the variants one pass met, and the registry then refuses
/// (`MissingVariants`): such a type keeps its names, for a variant not explored could
/// hide a `deserialize_any`.
fn trace<T: DeserializeOwned>() -> Option<serde_reflection::Registry> {
    let samples = Samples::new();
    let mut tracer = Tracer::new(TracerConfig::default());
    tracer.trace_type::<T>(&samples).ok()?;
    tracer.registry().ok()
}

fn shapes(registry: serde_reflection::Registry) -> Vec<Shape> {
    let shape =
        |container: &str, variant: Option<&str>, fields: &[serde_reflection::Named<_>]| Shape {
            container: container.to_string(),
            variant: variant.map(str::to_string),
            fields: fields
                .iter()
                .map(|field| Field {
                    name: field.name.clone(),
                    seen_as: AtomicUsize::new(0),
                })
                .collect(),
            seen_as: AtomicUsize::new(0),
            seen_variant: AtomicUsize::new(0),
            positional: AtomicBool::new(true),
        };
    let mut shapes = Vec::new();
    for (name, format) in &registry {
        match format {
            ContainerFormat::Struct(fields) => shapes.push(shape(name, None, fields)),
            ContainerFormat::Enum(variants) => {
                for variant in variants.values() {
                    if let VariantFormat::Struct(fields) = &variant.value {
                        shapes.push(shape(name, Some(&variant.name), fields));
                    }
                }
            }
            _ => {}
        }
    }
    shapes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    use serde::{Deserialize, Serialize};

    use super::Layout;
    use crate::wire::msgpack::{append, append_with, from_slice};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Job {
        n: u64,
        work_us: u64,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Step {
        Wait,
        Move { x: i32, y: i32 },
        Paint(Colour),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Colour {
        name: String,
        rgb: (u8, u8, u8),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Palette {
        colours: Vec<Colour>,
        by_name: BTreeMap<String, Colour>,
        first: Option<Box<Colour>>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plan {
        steps: Vec<Step>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Either {
        Point { x: u32, y: u32 },
        Size { w: u32, h: u32 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holds {
        either: Either,
        inner: Colour,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sparse {
        id: u32,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Lopsided {
        kept: u32,
        #[serde(skip_deserializing)]
        sent_only: u32,
        #[serde(rename(serialize = "out", deserialize = "in"), default)]
        renamed: u32,
    }

    /// Encodes with `layout`, reads back, and returns the bytes.
    fn through<T: Serialize + serde::de::DeserializeOwned + PartialEq + Debug>(
        layout: &Layout,
        value: &T,
    ) -> Vec<u8> {
        let mut bytes = vec![0xee];
        append_with(value, &mut bytes, layout).unwrap();
        assert_eq!(bytes[0], 0xee, "what came before is kept");
        bytes.remove(0);
        assert_eq!(&from_slice::<T>(&bytes).unwrap(), value);
        bytes
    }

    fn named<T: Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = Vec::new();
        append(value, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn plain_structs_go_as_arrays_as_rmp_serde_writes_them() {
        let layout = Layout::of::<Job>();
        let job = Job {
            n: 70_000,
            work_us: 0,
            payload: vec![],
        };
        let bytes = through(&layout, &job);
        assert_eq!(bytes, rmp_serde::to_vec(&job).unwrap());
        assert_eq!((bytes.len(), named(&job).len()), (9, 27));
    }

    #[test]
    fn structs_in_sequences_maps_options_and_an_outer_enum_go_as_arrays() {
        let layout = Layout::of::<Palette>();
        let colour = |name: &str| Colour {
            name: name.into(),
            rgb: (1, 2, 3),
        };
        let palette = Palette {
            colours: vec![colour("red"), colour("green")],
            by_name: [("sky".to_string(), colour("blue"))].into(),
            first: Some(Box::new(colour("black"))),
        };
        let bytes = through(&layout, &palette);
        assert_eq!(bytes, rmp_serde::to_vec(&palette).unwrap());
        // Every variant of an enum that is the job type itself is explored.
        let layout = Layout::of::<Step>();
        for step in [
            Step::Wait,
            Step::Move { x: -1, y: 2 },
            Step::Paint(colour("red")),
        ] {
            assert_eq!(through(&layout, &step), rmp_serde::to_vec(&step).unwrap());
        }
        assert_eq!(layout.fallbacks(), 0);
    }

    #[test]
    fn a_type_with_an_enum_inside_keeps_its_names() {
        // The tracer meets one variant of an inner enum: the others could hide a
        // `deserialize_any`.
        let layout = Layout::of::<Plan>();
        assert_eq!(layout.positional_shapes(), 0);
        let plan = Plan {
            steps: vec![Step::Wait, Step::Move { x: 1, y: 1 }],
        };
        assert_eq!(through(&layout, &plan), named(&plan));
    }

    #[test]
    fn a_recursive_type_is_traced_and_goes_as_arrays() {
        let layout = Layout::of::<Tree>();
        let leaf = |label: &str| Tree {
            label: label.into(),
            children: vec![],
        };
        let tree = Tree {
            label: "root".into(),
            children: vec![
                leaf("a"),
                Tree {
                    label: "b".into(),
                    children: vec![leaf("c")],
                },
            ],
        };
        assert_eq!(through(&layout, &tree), rmp_serde::to_vec(&tree).unwrap());
    }

    #[test]
    fn a_type_read_through_deserialize_any_keeps_every_name() {
        // An untagged enum could read an array of two as the wrong variant: the whole
        // type keeps its names, even the struct beside it.
        for layout in [
            Layout::of::<Holds>(),
            Layout::of::<serde_json::Value>(),
            Layout::of::<BTreeMap<String, serde_json::Value>>(),
        ] {
            assert_eq!(layout.positional_shapes(), 0);
        }
        let layout = Layout::of::<Holds>();
        let holds = Holds {
            either: Either::Size { w: 3, h: 4 },
            inner: Colour {
                name: "x".into(),
                rgb: (1, 2, 3),
            },
        };
        assert_eq!(through(&layout, &holds), named(&holds));
    }

    #[test]
    fn a_struct_that_skips_a_field_goes_with_names_then() {
        let layout = Layout::of::<Sparse>();
        let full = Sparse {
            id: 1,
            note: Some("n".into()),
        };
        let sparse = Sparse { id: 2, note: None };
        for _ in 0..2 {
            assert_eq!(through(&layout, &full), rmp_serde::to_vec(&full).unwrap());
            assert_eq!(through(&layout, &sparse), named(&sparse));
        }
        assert_eq!(layout.fallbacks(), 0, "told by the length it gives");
    }

    #[test]
    fn fields_written_in_another_order_fall_back_to_names_for_good() {
        /// Writes its fields in another order than it reads them: as an array, `a`
        /// and `b` would silently swap.
        #[derive(Debug, PartialEq, Deserialize)]
        struct Swapped {
            a: u32,
            b: u32,
        }
        impl Serialize for Swapped {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let mut state = s.serialize_struct("Swapped", 2)?;
                state.serialize_field("b", &self.b)?;
                state.serialize_field("a", &self.a)?;
                state.end()
            }
        }
        let layout = Layout::of::<Swapped>();
        assert_eq!(layout.positional_shapes(), 1);
        let value = Swapped { a: 1, b: 2 };
        assert_eq!(through(&layout, &value), named(&value));
        assert_eq!(layout.fallbacks(), 1);
        assert_eq!(through(&layout, &value), named(&value));
        assert_eq!((layout.fallbacks(), layout.positional_shapes()), (1, 0));
    }

    #[test]
    fn fields_written_otherwise_than_read_fall_back_to_names() {
        let layout = Layout::of::<Lopsided>();
        let value = Lopsided {
            kept: 1,
            sent_only: 2,
            renamed: 3,
        };
        let mut bytes = Vec::new();
        append_with(&value, &mut bytes, &layout).unwrap();
        assert_eq!(bytes, named(&value));
        // Read back as its reader reads names: what it skips or renames is lost, as
        // it would be without a layout.
        let back: Lopsided = from_slice(&bytes).unwrap();
        assert_eq!((back.kept, back.sent_only, back.renamed), (1, 0, 0));
    }

    #[test]
    fn a_deserialize_that_fails_or_panics_when_traced_keeps_names() {
        #[derive(Debug, PartialEq, Serialize)]
        struct Picky {
            n: u32,
        }
        impl<'de> Deserialize<'de> for Picky {
            fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                panic!("not in a test of tracing")
            }
        }
        assert_eq!(Layout::of::<Picky>().positional_shapes(), 0);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = "u32")]
        struct NonZero(u32);
        impl TryFrom<u32> for NonZero {
            type Error = &'static str;
            fn try_from(n: u32) -> Result<Self, Self::Error> {
                (n != 0).then_some(NonZero(n)).ok_or("zero")
            }
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct HasNonZero {
            n: NonZero,
        }
        assert_eq!(Layout::of::<HasNonZero>().positional_shapes(), 0);
    }
}
