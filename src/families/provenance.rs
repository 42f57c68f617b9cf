//! Provenance by construction: a template context holds every value that came from the
//! site as a [`Src`], which serializes as the plain value (templates see no difference)
//! and, while [`super::Lowering::add`] converts the context, records what it is, its
//! text and where in the site it was written. The file's manifest `sources` and the
//! per-line entities of `explain` are derived from those records, so a value a family
//! puts in a context is never missing from its provenance, and nothing is listed by hand.

use std::cell::RefCell;
use std::fmt::Display;

use serde::{Serialize, Serializer};

use crate::artifact::Trace;
use crate::diag::Loc;

thread_local! {
    /// The records of the context being converted on this thread, if any.
    static RECORDING: RefCell<Option<Vec<Trace>>> = const { RefCell::new(None) };
}

/// A site value in a template context: its value, what it is (`host address`), and the
/// places in the site it was computed from (one for a written value, several for a value
/// derived from several).
#[derive(Debug, Clone)]
pub struct Src<T> {
    /// The value.
    pub value: T,
    what: &'static str,
    locs: Vec<Loc>,
}

impl<T> Src<T> {
    /// A value written at `loc`.
    pub fn at(value: T, what: &'static str, loc: &Loc) -> Self {
        Src { value, what, locs: vec![loc.clone()] }
    }
    /// A value derived from the values written at `locs`.
    pub fn of<'a>(value: T, what: &'static str, locs: impl IntoIterator<Item = &'a Loc>) -> Self {
        Src { value, what, locs: locs.into_iter().cloned().collect() }
    }
}

impl<T: Serialize + Display> Serialize for Src<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RECORDING.with(|r| {
            if let Some(rec) = r.borrow_mut().as_mut() {
                let name = self.value.to_string();
                for loc in &self.locs {
                    rec.push(Trace { what: self.what, name: name.clone(), loc: loc.clone() });
                }
            }
        });
        self.value.serialize(s)
    }
}

/// Runs `f` (which converts a context) and returns what the [`Src`] values it serialized
/// recorded, sorted and unique.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<Trace>) {
    let outer = RECORDING.with(|r| r.borrow_mut().replace(Vec::new()));
    let out = f();
    let mut traces = RECORDING.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer)).unwrap_or_default();
    traces.sort_by(|a, b| {
        (a.loc.file, a.loc.span.start, a.what, &a.name).cmp(&(b.loc.file, b.loc.span.start, b.what, &b.name))
    });
    traces.dedup();
    (out, traces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Cx {
        host: Src<String>,
        port: Src<u16>,
        fixed: &'static str,
    }

    #[test]
    fn records_what_a_context_holds_and_serializes_plainly() {
        let cx = Cx {
            host: Src::at("db1".into(), "host", &Loc::new(2, 10..13)),
            port: Src::of(5432, "port", [&Loc::new(1, 5..9), &Loc::new(3, 0..4)]),
            fixed: "x",
        };
        let (json, traces) = record(|| serde_json::to_string(&cx).unwrap());
        assert_eq!(json, r#"{"host":"db1","port":5432,"fixed":"x"}"#);
        let got: Vec<(usize, &str, &str)> = traces.iter().map(|t| (t.loc.file, t.what, t.name.as_str())).collect();
        assert_eq!(got, [(1, "port", "5432"), (2, "host", "db1"), (3, "port", "5432")]);
        // Outside a recording nothing is kept.
        let (_, none) = record(|| ());
        assert!(none.is_empty());
    }
}
