//! A service's hardening: added capabilities and the written exceptions to the
//! container defaults (checked against what they relax in `verify/hardening.rs`).

use super::cx::Cx;
use crate::diag::{Diagnostic, did_you_mean, shortlist};
use crate::load::schema::*;
use crate::model::values::{self, ValueError};
use crate::model::*;

impl Cx<'_, '_> {
    /// Capabilities added back after `cap_drop = ["ALL"]`, as in capabilities(7).
    pub(super) fn capabilities(&mut self, s: &RawService) -> Vec<At<String>> {
        s.cap_add
            .iter()
            .filter_map(|v| {
                self.value(v, |c| {
                    let ok = !c.is_empty() && c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_');
                    if ok {
                        Ok(c.to_string())
                    } else {
                        Err(ValueError {
                            code: "bad-value",
                            message: format!("`{}` is not a capability", values::printable(c)),
                            help: "write it as in capabilities(7) without `CAP_`, e.g. `NET_BIND_SERVICE`".into(),
                        })
                    }
                })
            })
            .collect()
    }

    /// The written exceptions, each to a hardening default that exists.
    pub(super) fn exceptions(&mut self, s: &RawService) -> Vec<Exception> {
        let mut exceptions = Vec::new();
        for (k, reason) in &s.exceptions {
            let kloc = self.loc(k.span());
            match ExceptionKind::ALL.iter().find(|(n, _)| n == k.get_ref()) {
                Some((_, kind)) => {
                    // A reason that fails its check is reported there; the exception still
                    // stands, so the default it relaxes is not reported missing as well.
                    let r = self
                        .value(reason, values::text)
                        .unwrap_or_else(|| At { value: reason.get_ref().clone(), loc: self.loc(reason.span()) });
                    exceptions.push(Exception { kind: *kind, reason: r });
                }
                None => {
                    let names: Vec<&str> = ExceptionKind::ALL.iter().map(|(n, _)| *n).collect();
                    let help = match did_you_mean(k.get_ref(), names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("exceptions can be written for {}", shortlist(&names)),
                    };
                    self.diags.push(
                        Diagnostic::error(
                            "unknown-exception",
                            format!(
                                "`{}` is not a hardening default that can be relaxed",
                                values::printable(k.get_ref())
                            ),
                            kloc,
                        )
                        .help(help),
                    );
                }
            }
        }
        exceptions
    }
}
