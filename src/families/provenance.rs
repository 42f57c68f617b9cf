//! Provenance by construction: a template context holds every value that came from the
//! site as a [`Src`], which serializes as the plain value (templates see no difference)
//! and, while [`super::Lowering::add`] converts the context, records what it is, its
//! text and where in the site it was written. The file's manifest `sources` and the
//! per-line entities of `explain` are derived from those records, so a value a family
//! puts in a context is never missing from its provenance, and nothing is listed by hand.
//!
//! Recording has two depths ([`Depth`]): `build` and `check` need only which site files
//! a file comes from (a small set per file), while `explain` and the coverage tests need
//! every value's text and place. Keeping the text of every value of a 10,000-service
//! site cost a build about 60 ms and 50 MB, for nothing it writes.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Display;

use serde::{Serialize, Serializer};

use crate::artifact::Trace;
use crate::diag::{FileId, Loc};

/// How much a recording keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Depth {
    /// The site files the values come from: what the manifest's `sources` need.
    #[default]
    Files,
    /// Also each value's text, what it is and its place: what `explain` needs.
    Traces,
}

/// What a recording found.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// The site files the recorded values come from, sorted.
    pub files: BTreeSet<FileId>,
    /// The values, in the order they were serialized (only at [`Depth::Traces`]).
    pub traces: Vec<Trace>,
}

struct Recording {
    depth: Depth,
    found: Recorded,
}

thread_local! {
    /// The recording of the context being converted on this thread, if any.
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// A site value in a template context: its value, what it is (`host address`), and the
/// places in the site it was computed from (one for a written value, several for a value
/// derived from several).
#[derive(Debug, Clone)]
pub struct Src<T> {
    /// The value.
    pub value: T,
    what: &'static str,
    /// Where it was written; most values have one place, so it is not in `more` (which
    /// then does not allocate: contexts hold hundreds of thousands of these).
    first: Option<Loc>,
    more: Vec<Loc>,
}

impl<T> Src<T> {
    /// A value written at `loc`.
    pub fn at(value: T, what: &'static str, loc: &Loc) -> Self {
        Src { value, what, first: Some(loc.clone()), more: Vec::new() }
    }
    /// A value derived from the values written at `locs`.
    pub fn of<'a>(value: T, what: &'static str, locs: impl IntoIterator<Item = &'a Loc>) -> Self {
        let mut locs = locs.into_iter().cloned();
        Src { value, what, first: locs.next(), more: locs.collect() }
    }
    /// The same provenance for a value computed from this one (`10.0.1.5` → `10.0.1.5/32`).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Src<U> {
        Src { value: f(self.value), what: self.what, first: self.first, more: self.more }
    }
}

impl<T: Serialize + Display> Serialize for Src<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RECORDING.with(|r| {
            if let Some(rec) = r.borrow_mut().as_mut()
                && let Some(first) = &self.first
            {
                rec.found.files.insert(first.file);
                rec.found.files.extend(self.more.iter().map(|l| l.file));
                if rec.depth == Depth::Traces {
                    let name = self.value.to_string();
                    for loc in &self.more {
                        rec.found.traces.push(Trace { what: self.what, name: name.clone(), loc: loc.clone() });
                    }
                    rec.found.traces.push(Trace { what: self.what, name, loc: first.clone() });
                }
            }
        });
        self.value.serialize(s)
    }
}

/// Runs `f` (which converts a context) and returns what the [`Src`] values it serialized
/// recorded at `depth`. Traces keep the order they were serialized in (a fixed order:
/// the context's); a value held twice is recorded twice, and readers de-duplicate.
pub fn record<R>(depth: Depth, f: impl FnOnce() -> R) -> (R, Recorded) {
    let outer = RECORDING.with(|r| r.borrow_mut().replace(Recording { depth, found: Recorded::default() }));
    let out = f();
    let inner = RECORDING.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
    let mut found = inner.map(|r| r.found).unwrap_or_default();
    found.traces.shrink_to_fit();
    (out, found)
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
        let (json, found) = record(Depth::Traces, || serde_json::to_string(&cx).unwrap());
        assert_eq!(json, r#"{"host":"db1","port":5432,"fixed":"x"}"#);
        let got: Vec<(usize, &str, &str)> =
            found.traces.iter().map(|t| (t.loc.file, t.what, t.name.as_str())).collect();
        assert_eq!(got, [(2, "host", "db1"), (3, "port", "5432"), (1, "port", "5432")]);
        assert_eq!(found.files.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        // At file depth only the files are kept.
        let (_, files) = record(Depth::Files, || serde_json::to_string(&cx).unwrap());
        assert!(files.traces.is_empty());
        assert_eq!(files.files.len(), 3);
        // Outside a recording nothing is kept.
        let (_, none) = record(Depth::Traces, || ());
        assert!(none.traces.is_empty() && none.files.is_empty());
    }
}
