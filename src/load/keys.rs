//! What keys a site file may hold, described at run time from the schema types
//! themselves, and who owns them.
//!
//! Every schema struct is written inside [`keys!`](crate::keys), which keeps the struct
//! as it is (serde derives, doc comments) and adds a [`Table`]: its fields with their
//! doc comments and value [`Shape`]s. That one description answers three questions, so
//! they can never disagree with the types: which keys exist at a path (unknown-key
//! detection and "did you mean"), what the site reference says about each key
//! (`medianest schema`), and which keys an artifact family claims.
//!
//! The core schema ([`super::schema::RawFile`]) holds only core entities. A family
//! describes its own keys as a file-level struct of the same form (e.g. `services` →
//! `balance`, `expose` → `waf`); [`KeySet`] carries that table and how to deserialize
//! it. Loading gives each family a copy of every file pruned to the keys it claims, so
//! a family's types are apart from the core's and from every other family's.

use std::any::Any;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::schema::{IntOrStr, Str};

/// A table of keys: a schema struct.
#[derive(Debug)]
pub struct Table {
    /// The Rust type (`RawService`), for reference anchors.
    pub name: &'static str,
    /// Its doc comment, one entry per line.
    pub doc: &'static [&'static str],
    /// Its keys, in declaration order.
    pub fields: &'static [Field],
}

/// One key of a [`Table`].
#[derive(Debug)]
pub struct Field {
    /// The key as written in TOML.
    pub name: &'static str,
    /// Its doc comment, one entry per line (may hold empty entries for other attributes).
    pub doc: &'static [&'static str],
    /// What value it takes.
    pub shape: fn() -> Shape,
}

impl Field {
    /// The doc comment as one line of text.
    pub fn text(&self) -> String {
        doc_text(self.doc)
    }
}

impl Table {
    /// The doc comment as one line of text.
    pub fn text(&self) -> String {
        doc_text(self.doc)
    }
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A key's name from its field's: a raw identifier (`r#for`, a key that is a Rust
/// keyword) without its `r#`.
pub const fn key_name(field: &'static str) -> &'static str {
    match field.as_bytes() {
        [b'r', b'#', ..] => field.split_at(2).1,
        _ => field,
    }
}

fn doc_text(doc: &[&str]) -> String {
    doc.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The shape of a value.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A string, integer, float, boolean, …: named for the reference.
    Scalar(&'static str),
    /// A table with fixed keys.
    Table(&'static Table),
    /// An array.
    List(fn() -> Shape),
    /// A table whose keys are names the site chooses (`[hosts.<name>]`, `ports`).
    Named(fn() -> Shape),
}

impl Shape {
    /// The type as the reference shows it.
    pub fn describe(&self) -> String {
        match self {
            Shape::Scalar(s) => s.to_string(),
            Shape::Table(t) => format!("table ({})", t.name),
            Shape::List(f) => format!("array of {}", f().describe()),
            Shape::Named(f) => format!("table of name → {}", f().describe()),
        }
    }

    /// The shape one step down: a key of a table, a name of a named table, `#<i>` of an
    /// array.
    pub fn child(&self, seg: &str) -> Option<Shape> {
        match self {
            Shape::Table(t) => t.field(seg).map(|f| (f.shape)()),
            Shape::Named(f) => Some(f()),
            Shape::List(f) if seg.starts_with('#') => Some(f()),
            _ => None,
        }
    }

    /// The shape at `path` below this one.
    pub fn at(&self, path: &[String]) -> Option<Shape> {
        let mut s = *self;
        for seg in path {
            s = s.child(seg)?;
        }
        Some(s)
    }
}

/// A type that describes its TOML shape.
pub trait Describe {
    /// Its shape.
    fn shape() -> Shape;
}

macro_rules! scalar {
    ($($t:ty => $name:literal),*) => {$(
        impl Describe for $t {
            fn shape() -> Shape {
                Shape::Scalar($name)
            }
        }
    )*};
}
scalar!(String => "string", i64 => "integer", f64 => "number", bool => "boolean", IntOrStr => "integer or string");

impl<T: Describe> Describe for Spanned<T> {
    fn shape() -> Shape {
        T::shape()
    }
}
impl<T: Describe> Describe for Option<T> {
    fn shape() -> Shape {
        T::shape()
    }
}
impl<T: Describe> Describe for Vec<T> {
    fn shape() -> Shape {
        Shape::List(T::shape)
    }
}
impl<T: Describe> Describe for IndexMap<Str, T> {
    fn shape() -> Shape {
        Shape::Named(T::shape)
    }
}

/// Declares a schema struct: the struct exactly as written (derives, serde attributes,
/// doc comments), plus its [`Table`] (`<Type>::TABLE`) and [`Describe`].
#[macro_export]
macro_rules! keys {
    ($(#[$($sattr:tt)*])* pub struct $name:ident { $( $(#[$($fattr:tt)*])* pub $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$($sattr)*])*
        pub struct $name { $( $(#[$($fattr)*])* pub $field: $ty ),* }

        impl $name {
            /// The keys of this table, with their docs and shapes.
            pub const TABLE: $crate::load::keys::Table = $crate::load::keys::Table {
                name: stringify!($name),
                doc: &[$($crate::doc_line!($($sattr)*)),*],
                fields: &[$(
                    $crate::load::keys::Field {
                        name: $crate::load::keys::key_name(stringify!($field)),
                        doc: &[$($crate::doc_line!($($fattr)*)),*],
                        shape: <$ty as $crate::load::keys::Describe>::shape,
                    }
                ),*],
            };
        }

        impl $crate::load::keys::Describe for $name {
            fn shape() -> $crate::load::keys::Shape {
                $crate::load::keys::Shape::Table(&$name::TABLE)
            }
        }
    };
}

/// The text of a `doc` attribute; `""` for any other attribute.
#[macro_export]
#[doc(hidden)]
macro_rules! doc_line {
    (doc = $s:literal) => {
        $s
    };
    ($($other:tt)*) => {
        ""
    };
}

/// Deserializes a file pruned to a family's keys into its typed keys.
pub type Parse = for<'i> fn(Spanned<DeTable<'i>>) -> Result<Box<dyn Any + Send + Sync>, toml::de::Error>;

/// A family's own keys: the file-level table it claims and how to read it.
#[derive(Clone, Copy)]
pub struct KeySet {
    /// The file-level table (top-level keys, and the core tables it extends).
    pub table: &'static Table,
    /// Deserializes a file pruned to these keys.
    pub parse: Parse,
}

impl KeySet {
    /// The key set of the file-level schema struct `T`.
    pub fn of<T: DeserializeOwned + Describe + Send + Sync + 'static>() -> KeySet {
        fn parse<'i, T: DeserializeOwned + Send + Sync + 'static>(
            doc: Spanned<DeTable<'i>>,
        ) -> Result<Box<dyn Any + Send + Sync>, toml::de::Error> {
            T::deserialize(toml::de::Deserializer::from(doc)).map(|v| Box::new(v) as Box<dyn Any + Send + Sync>)
        }
        let table = match T::shape() {
            Shape::Table(t) => t,
            _ => &EMPTY,
        };
        KeySet { table, parse: parse::<T> }
    }
}

static EMPTY: Table = Table { name: "", doc: &[], fields: &[] };

/// The keys the tables at `path` accept, from the core root and every owner: `None`
/// when the value there is not a table of fixed keys (a named table, a scalar, or a
/// path nobody knows).
pub fn known_at(core: Shape, owners: &[KeySet], path: &[String]) -> Option<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut any = false;
    for root in std::iter::once(core).chain(owners.iter().map(|k| Shape::Table(k.table))) {
        if let Some(Shape::Table(t)) = root.at(path) {
            any = true;
            out.extend(t.fields.iter().map(|f| f.name).filter(|n| !out.contains(n)).collect::<Vec<_>>());
        }
    }
    any.then_some(out)
}

/// A copy of `table` (at shape `shape`) that keeps only the keys `shape` knows: what
/// one family reads of a file. `None` when nothing is left.
pub fn prune<'i>(table: &DeTable<'i>, shape: Shape) -> Option<DeTable<'i>> {
    let mut out = DeTable::new();
    for (k, v) in table.iter() {
        let Some(child) = shape.child(k.get_ref()) else { continue };
        let kept = match (child, v.get_ref()) {
            (Shape::Scalar(_), value) => Some(value.clone()),
            (s @ (Shape::Table(_) | Shape::Named(_)), DeValue::Table(t)) => prune(t, s).map(DeValue::Table),
            (Shape::List(item), DeValue::Array(items)) => {
                let mut arr = DeArray::new();
                let mut any = false;
                for it in items.iter() {
                    // Keep every position, so index `i` here is index `i` in the core's array.
                    let pruned = match (item(), it.get_ref()) {
                        (s @ (Shape::Table(_) | Shape::Named(_)), DeValue::Table(t)) => {
                            prune(t, s).map(DeValue::Table).unwrap_or_else(|| DeValue::Table(DeTable::new()))
                        }
                        (_, other) => other.clone(),
                    };
                    any |= !matches!(&pruned, DeValue::Table(t) if t.is_empty());
                    arr.push(Spanned::new(it.span(), pruned));
                }
                // An empty list of values is the owner's own key, written empty (its
                // owner says whether that is allowed); an empty list of tables holds none
                // of its keys.
                let own_empty = items.is_empty() && matches!(item(), Shape::Scalar(_));
                (any || own_empty).then_some(DeValue::Array(arr))
            }
            // A value of the wrong type: keep it, so the family reports it.
            (_, value) => Some(value.clone()),
        };
        if let Some(value) = kept {
            out.insert(k.clone(), Spanned::new(v.span(), value));
        }
    }
    (!out.is_empty()).then_some(out)
}
