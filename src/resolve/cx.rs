//! A resolution context for one site file: typing raw values (with the error and hint
//! when a value is wrong) and resolving references to other entities with "did you
//! mean". Core resolution and every family's own keys go through it, so a bad value reads
//! the same wherever it is written.

use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, FileId, Loc, did_you_mean, shortlist};
use crate::load::schema::Str;
use crate::model::values::{self, ValueError};
use crate::model::*;

/// Name → id lookups for references: the index while core entities are resolved, the
/// resolved [`Site`] afterwards (when families resolve their keys).
pub trait Names {
    /// The id of `name` in the table of `to`.
    fn id(&self, to: RefTo, name: &str) -> Option<usize>;
    /// Every name in that table, sorted (for hints).
    fn names(&self, to: RefTo) -> Vec<&str>;
    /// Whether `key` was written in `file` but taken out for a wrong type (reported
    /// already, so it is not also "missing").
    fn wrong_typed(&self, _file: FileId, _key: &str) -> bool {
        false
    }
}

impl Names for Site {
    fn id(&self, to: RefTo, name: &str) -> Option<usize> {
        fn find<T>(v: &[T], key: impl Fn(&T) -> &str, name: &str) -> Option<usize> {
            v.binary_search_by(|x| key(x).cmp(name)).ok()
        }
        match to {
            RefTo::Zone => find(&self.zones, |z| &z.name, name),
            RefTo::Network => find(&self.docker_networks, |n| &n.name, name),
            RefTo::Host => find(&self.hosts, |h| &h.name, name),
            RefTo::Service => find(&self.services, |s| &s.name, name),
        }
    }
    fn names(&self, to: RefTo) -> Vec<&str> {
        match to {
            RefTo::Zone => self.zones.iter().map(|x| x.name.as_str()).collect(),
            RefTo::Network => self.docker_networks.iter().map(|x| x.name.as_str()).collect(),
            RefTo::Host => self.hosts.iter().map(|x| x.name.as_str()).collect(),
            RefTo::Service => self.services.iter().map(|x| x.name.as_str()).collect(),
        }
    }
}

/// Resolution context for one file.
pub struct Cx<'a, 'd> {
    /// The file being resolved.
    pub file: FileId,
    /// Name lookups.
    pub names: &'a dyn Names,
    /// Where problems go.
    pub diags: &'d mut Diagnostics,
}

/// What a reference points at.
#[derive(Clone, Copy)]
pub enum RefTo {
    /// `[zones.<name>]`.
    Zone,
    /// `[docker_networks.<name>]`.
    Network,
    /// `[hosts.<name>]`.
    Host,
    /// `[services.<name>]`.
    Service,
}

impl RefTo {
    /// The top-level table.
    pub fn table(self) -> &'static str {
        match self {
            RefTo::Zone => "zones",
            RefTo::Network => "docker_networks",
            RefTo::Host => "hosts",
            RefTo::Service => "services",
        }
    }
    /// What it is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            RefTo::Zone => "zone",
            RefTo::Network => "docker network",
            RefTo::Host => "host",
            RefTo::Service => "service",
        }
    }
}

impl<'a, 'd> Cx<'a, 'd> {
    /// A context for `file`, resolving names through `names`.
    pub fn new(file: FileId, names: &'a dyn Names, diags: &'d mut Diagnostics) -> Self {
        Cx { file, names, diags }
    }
}

impl Cx<'_, '_> {
    /// A location in this file.
    pub fn loc(&self, span: std::ops::Range<usize>) -> Loc {
        Loc::new(self.file, span)
    }

    /// Reports a family's key written on a service of another kind (`key` only applies
    /// to `kind`), at the key's value.
    pub fn not_for_kind(&mut self, key: &str, kind: &str, svc: &crate::model::Service, span: std::ops::Range<usize>) {
        let loc = self.loc(span);
        self.diags.push(
            Diagnostic::error(
                "bad-value",
                format!(
                    "`{key}` only applies to {kind}, and `{}` is a `{}` service",
                    svc.name,
                    svc.kind.value.info().name
                ),
                loc,
            )
            .help(format!("remove `{key}`")),
        );
    }

    /// Reports a bad value.
    pub fn bad(&mut self, loc: Loc, e: ValueError) {
        self.diags.push(Diagnostic::error(e.code, e.message, loc).help(e.help));
    }

    /// Types a string value; reports and returns `None` when it is invalid.
    pub fn value<T>(&mut self, v: &Str, parse: impl Fn(&str) -> Result<T, ValueError>) -> Option<At<T>> {
        let loc = self.loc(v.span());
        match parse(v.get_ref()) {
            Ok(value) => Some(At { value, loc }),
            Err(e) => {
                self.bad(loc, e);
                None
            }
        }
    }

    /// Reports a missing required key; returns the value when present.
    pub fn required<'v, T>(&mut self, v: &'v Option<T>, at: &Loc, key: &str, table: &str) -> Option<&'v T> {
        if v.is_none() && !self.names.wrong_typed(self.file, key) {
            self.diags.push(
                Diagnostic::error("missing-key", format!("`{table}` has no `{key}`"), at.clone())
                    .label(format!("`{key}` is required here"))
                    .help(format!("add `{key} = ...`; see the site reference in SITE-REFERENCE.md")),
            );
        }
        v.as_ref()
    }

    /// An optional free-text value.
    pub fn opt_text(&mut self, v: &Option<Str>) -> Option<String> {
        v.as_ref().and_then(|v| self.value(v, values::text)).map(|a| a.value)
    }

    /// An integer in `min..=max`.
    pub fn int<T: TryFrom<i64>>(&mut self, v: &Spanned<i64>, min: i64, max: i64, what: &str) -> Option<At<T>> {
        let loc = self.loc(v.span());
        let n = *v.get_ref();
        if n < min || n > max {
            self.bad(
                loc,
                ValueError {
                    code: "bad-value",
                    message: format!("{what} {n} is out of range"),
                    help: format!("use a value from {min} to {max}"),
                },
            );
            return None;
        }
        T::try_from(n).ok().map(|value| At { value, loc })
    }

    /// A CPU count (a positive number up to 1024).
    pub fn cpus(&mut self, v: &Spanned<f64>) -> Option<f64> {
        let n = *v.get_ref();
        if !(n > 0.0 && n <= 1024.0) {
            let loc = self.loc(v.span());
            self.bad(
                loc,
                ValueError {
                    code: "bad-value",
                    message: format!("{n} CPUs is out of range"),
                    help: "use a positive number such as `0.5` or `2.0`".into(),
                },
            );
            return None;
        }
        Some(n)
    }

    /// One word of a fixed vocabulary, with "did you mean".
    pub fn vocabulary<T: Copy>(&mut self, v: &Str, what: &str, all: &[(&str, T)]) -> Option<At<T>> {
        let loc = self.loc(v.span());
        match all.iter().find(|(n, _)| n == v.get_ref()) {
            Some((_, k)) => Some(At { value: *k, loc }),
            None => {
                let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
                let help = match did_you_mean(v.get_ref(), names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        format!("use one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
                    }
                };
                self.diags.push(
                    Diagnostic::error(
                        "unknown-value",
                        format!("unknown {what} `{}`", values::printable(v.get_ref())),
                        loc,
                    )
                    .help(help),
                );
                None
            }
        }
    }

    /// Resolves a name to an id, with "did you mean" when it is unknown.
    pub fn reference(&mut self, to: RefTo, name: &str, loc: Loc) -> Option<usize> {
        if let Some(i) = self.names.id(to, name) {
            return Some(i);
        }
        let keys = self.names.names(to);
        // A look-alike letter from another script reads as a known name: say which one.
        let foreign = name
            .chars()
            .find(|c| !c.is_ascii())
            .map(|c| format!(" (`{c}` is {}, not ASCII)", values::code_point(c)))
            .unwrap_or_default();
        let mut d = Diagnostic::error(
            "unknown-reference",
            format!("unknown {} `{}`{foreign}", to.what(), values::printable(name)),
            loc,
        )
        .label(format!("no such {}", to.what()));
        d = match did_you_mean(name, keys.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None if keys.is_empty() => {
                d.help(format!("define it under `[{}.{}]`", to.table(), values::printable(name)))
            }
            None => d.help(format!(
                "{}s are defined under `[{}.<name>]`; known: {}",
                to.what(),
                to.table(),
                shortlist(&keys)
            )),
        };
        self.diags.push(d);
        None
    }

    /// Resolves a name written as a string value.
    pub fn reference_str(&mut self, to: RefTo, v: &Str) -> Option<At<usize>> {
        let loc = self.loc(v.span());
        self.reference(to, v.get_ref(), loc.clone()).map(|value| At { value, loc })
    }

    /// Parses `service:x`, `host:x`, `zone:x` or `internet`.
    pub fn endpoint(&mut self, v: &Str, allowed: &[&str]) -> Option<At<Endpoint>> {
        let loc = self.loc(v.span());
        let s = v.get_ref().as_str();
        if s == "internet" && allowed.contains(&"internet") {
            return Some(At { value: Endpoint::Internet, loc });
        }
        let parsed = s.split_once(':').filter(|(k, _)| allowed.contains(k));
        let Some((kind, name)) = parsed else {
            let forms: Vec<String> = allowed
                .iter()
                .map(|k| if *k == "internet" { "`internet`".to_string() } else { format!("`{k}:<name>`") })
                .collect();
            let mut help = format!("write {}", forms.join(" or "));
            if allowed.contains(&"service") && self.names.id(RefTo::Service, s).is_some() {
                help = format!("did you mean `service:{s}`?");
            } else if allowed.contains(&"zone") && self.names.id(RefTo::Zone, s).is_some() {
                help = format!("did you mean `zone:{s}`?");
            } else if allowed.contains(&"host") && self.names.id(RefTo::Host, s).is_some() {
                help = format!("did you mean `host:{s}`?");
            }
            self.diags.push(
                Diagnostic::error("bad-endpoint", format!("`{}` is not an endpoint", values::printable(s)), loc)
                    .help(help),
            );
            return None;
        };
        let name_loc = Loc::new(self.file, v.span().start + kind.len() + 2..v.span().end - 1);
        let value = match kind {
            "service" => Endpoint::Service(ServiceId(self.reference(RefTo::Service, name, name_loc)?)),
            "host" => Endpoint::Host(HostId(self.reference(RefTo::Host, name, name_loc)?)),
            _ => Endpoint::Zone(ZoneId(self.reference(RefTo::Zone, name, name_loc)?)),
        };
        Some(At { value, loc })
    }
}
