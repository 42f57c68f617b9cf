//! Reading a file's core keys piece by piece, so that one wrong-typed value costs only
//! itself. serde stops at the first error of what it deserializes; given the whole file
//! that dropped every entity in it (a datetime `rto` made `[site]`, defined above it,
//! "missing", and a bad flag on a docker network made every zone of the file
//! "unknown"). Here each named entity, each flow and guard-rail, and each singleton table
//! is deserialized on its own, and a value of the wrong type is reported (its TOML type
//! and the type the key takes, by name), taken out, and the rest of the piece read
//! again.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::keys::{Describe, Shape};
use super::schema::RawFile;
use crate::diag::{Diagnostic, Diagnostics, FileId, Loc};

/// What reading the pieces found: the keys, and the keys taken out for a wrong type
/// (resolve does not call those missing: they were written, and reported).
#[derive(Default)]
pub struct Pieces {
    /// The core keys that read.
    pub file: RawFile,
    /// Names of keys taken out of this file for a wrong type.
    pub removed: Vec<String>,
}

/// Reads the core keys of `doc` piece by piece.
pub fn core_keys(file: FileId, doc: &Spanned<DeTable>, diags: &mut Diagnostics) -> Pieces {
    let mut out = Pieces::default();
    for (k, v) in doc.get_ref().iter() {
        let Some(field) = RawFile::TABLE.field(k.get_ref()) else { continue };
        // Each piece is a one-key document.
        let pieces: Vec<DeTable> = match ((field.shape)(), v.get_ref()) {
            (Shape::Named(_), DeValue::Table(t)) => t
                .iter()
                .map(|(ek, ev)| {
                    let mut inner = DeTable::new();
                    inner.insert(ek.clone(), ev.clone());
                    one(k, DeValue::Table(inner), v.span())
                })
                .collect(),
            (Shape::List(_), DeValue::Array(items)) => items
                .iter()
                .map(|it| {
                    let mut arr = DeArray::new();
                    arr.push(it.clone());
                    one(k, DeValue::Array(arr), v.span())
                })
                .collect(),
            _ => vec![one(k, v.get_ref().clone(), v.span())],
        };
        for piece in pieces {
            let deser = |t: DeTable| RawFile::deserialize(toml::de::Deserializer::from(Spanned::new(doc.span(), t)));
            if let Some(part) = read(file, piece, RawFile::shape(), &deser, &mut out.removed, diags) {
                out.file.absorb(part);
            }
        }
    }
    out
}

fn one<'i>(k: &Spanned<toml::de::DeString<'i>>, v: DeValue<'i>, span: Range<usize>) -> DeTable<'i> {
    let mut t = DeTable::new();
    t.insert(k.clone(), Spanned::new(span, v));
    t
}

/// Deserializes one piece with `deser`, taking out each value of the wrong type (at
/// most 64) and reading the rest again. `root` is the piece's schema, for the name of
/// the type a key takes and for what is an entity: a whole entity (a named table's entry,
/// an array item) is never taken out, only values inside one.
pub fn read<'i, T>(
    file: FileId,
    mut piece: DeTable<'i>,
    root: Shape,
    deser: &dyn Fn(DeTable<'i>) -> Result<T, toml::de::Error>,
    removed: &mut Vec<String>,
    diags: &mut Diagnostics,
) -> Option<T> {
    for _ in 0..64 {
        let e = match deser(piece.clone()) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let entity_depth = |p: &[String]| match root.child(&p[0]) {
            Some(Shape::Table(_)) => 1,
            _ => 2,
        };
        let path = e.span().and_then(|at| locate(&piece, &at)).filter(|p| p.len() > entity_depth(p));
        let Some(path) = path else {
            super::wrong_type(file, &e, diags);
            return None;
        };
        let (value, value_span) = value_at(&piece, &path)?;
        let expected = root.at(&path).map(|s| s.describe()).unwrap_or_else(|| "another type".into());
        let key = path.iter().rev().find(|s| !s.starts_with('#')).cloned().unwrap_or_default();
        diags.push(
            Diagnostic::error(
                "wrong-type",
                format!("`{}` is {}, but it takes {}", shown(&path), toml_type(value), article(&expected)),
                Loc::new(file, value_span),
            )
            .help("see the key in SITE-REFERENCE.md; the rest of the file is read as written"),
        );
        remove(&mut piece, &path);
        removed.push(key);
    }
    None
}

/// The key path (`#i` for array items) of the deepest value whose span holds `at`.
/// Tables are searched whatever their own span says: a table made by a `[a.b]` header
/// spans only the header, not the keys under it.
fn locate(t: &DeTable, at: &Range<usize>) -> Option<Vec<String>> {
    fn contains(s: Range<usize>, at: &Range<usize>) -> bool {
        s.start <= at.start && at.end <= s.end
    }
    fn in_value(v: &Spanned<DeValue>, at: &Range<usize>, path: &mut Vec<String>) -> bool {
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    path.push(k.get_ref().to_string());
                    if in_value(v, at, path) {
                        return true;
                    }
                    path.pop();
                }
            }
            DeValue::Array(items) => {
                for (i, it) in items.iter().enumerate() {
                    path.push(format!("#{i}"));
                    if in_value(it, at, path) {
                        return true;
                    }
                    path.pop();
                }
            }
            _ => {}
        }
        contains(v.span(), at)
    }
    for (k, v) in t.iter() {
        let mut path = vec![k.get_ref().to_string()];
        if in_value(v, at, &mut path) {
            return Some(path);
        }
    }
    None
}

fn value_at<'a, 'i>(t: &'a DeTable<'i>, path: &[String]) -> Option<(&'a DeValue<'i>, Range<usize>)> {
    let (first, rest) = path.split_first()?;
    let mut v = t.get(first.as_str())?;
    for seg in rest {
        v = match (v.get_ref(), seg.strip_prefix('#')) {
            (DeValue::Table(t), None) => t.get(seg.as_str())?,
            (DeValue::Array(a), Some(i)) => a.get(i.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some((v.get_ref(), v.span()))
}

/// Takes the value at `path` out of the piece (an array item is taken out of its array).
fn remove(t: &mut DeTable, path: &[String]) {
    fn in_value(v: &mut DeValue, path: &[String]) {
        let Some((seg, rest)) = path.split_first() else { return };
        match (v, seg.strip_prefix('#')) {
            (DeValue::Table(t), None) if rest.is_empty() => {
                t.remove(seg.as_str());
            }
            (DeValue::Table(t), None) => {
                if let Some(x) = t.get_mut(seg.as_str()) {
                    in_value(x.get_mut(), rest);
                }
            }
            (DeValue::Array(a), Some(i)) => {
                let Ok(i) = i.parse::<usize>() else { return };
                if rest.is_empty() {
                    let mut kept = DeArray::new();
                    for (j, it) in a.iter().enumerate() {
                        if j != i {
                            kept.push(it.clone());
                        }
                    }
                    *a = kept;
                } else if let Some(x) = a.get_mut(i) {
                    in_value(x.get_mut(), rest);
                }
            }
            _ => {}
        }
    }
    let Some((first, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        t.remove(first.as_str());
    } else if let Some(v) = t.get_mut(first.as_str()) {
        in_value(v.get_mut(), rest);
    }
}

/// `services.web.expose[0].path`, as a user writes it.
fn shown(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg.strip_prefix('#') {
            Some(i) => s.push_str(&format!("[{i}]")),
            None if s.is_empty() => s.push_str(seg),
            None => {
                s.push('.');
                s.push_str(seg);
            }
        }
    }
    s
}

/// The TOML type of a value, with its article: what a user wrote.
fn toml_type(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn article(t: &str) -> String {
    match t.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {t}"),
        _ => format!("a {t}"),
    }
}
