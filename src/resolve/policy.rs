//! Flows, guard-rails and backup policies.

use toml::Spanned;

use super::cx::{Cx, RefTo};
use crate::diag::shortlist;
use crate::diag::{Diagnostic, Loc};
use crate::load::schema::*;
use crate::model::values::{self, Duration, PortSpec, ValueError};
use crate::model::*;

impl Cx<'_, '_> {
    pub(super) fn flow(&mut self, f: &Spanned<RawFlow>, site: &Site) -> Option<Flow> {
        let loc = self.loc(f.span());
        let f = f.get_ref();
        let all = ["service", "host", "zone", "internet"];
        let from = self.required(&f.from, &loc, "from", "[[flows]]").and_then(|v| self.endpoint(v, &all));
        let to = self.required(&f.to, &loc, "to", "[[flows]]").and_then(|v| self.endpoint(v, &all));
        let why = self.required(&f.why, &loc, "why", "[[flows]]").and_then(|v| self.value(v, values::text));
        if let Some(w) = &why
            && w.value.trim().is_empty()
        {
            self.diags.push(
                Diagnostic::error("missing-why", "a flow needs a reason", w.loc.clone())
                    .help("say what needs this traffic, e.g. `why = \"application database\"`"),
            );
        }
        if f.ports.is_empty() {
            self.diags.push(
                Diagnostic::error("missing-key", "a flow needs at least one port", loc.clone())
                    .help("add `ports = [\"tcp/5432\"]`"),
            );
        }
        let mut ports = Vec::new();
        for p in &f.ports {
            let ploc = self.loc(p.span());
            let spec = match p.get_ref() {
                IntOrStr::Int(n) => PortSpec::parse_int(*n),
                IntOrStr::Str(s) => match PortSpec::parse_str(s) {
                    Some(r) => r,
                    // A bare name is a named port of the target service.
                    None => match to.as_ref().map(|t| t.value) {
                        Some(Endpoint::Service(id)) => match site.service(id).port(s) {
                            Some(port) => Ok(port.spec),
                            None => Err(ValueError {
                                code: "bad-value",
                                message: format!(
                                    "service `{}` has no port named `{}`",
                                    site.service(id).name,
                                    values::printable(s)
                                ),
                                help: format!(
                                    "its ports are {}",
                                    shortlist(
                                        &site.service(id).ports.iter().map(|p| p.name.as_str()).collect::<Vec<_>>()
                                    )
                                ),
                            }),
                        },
                        _ => Err(ValueError {
                            code: "bad-value",
                            message: format!("`{}` is not a port", values::printable(s)),
                            help: "write `tcp/N`, `udp/N` or a number; port names only work when `to` is a service"
                                .into(),
                        }),
                    },
                },
            };
            match spec {
                Ok(spec) => ports.push(At { value: spec, loc: ploc }),
                Err(e) => self.bad(ploc, e),
            }
        }
        Some(Flow { from: from?, to: to?, ports, why: why?.value, loc })
    }

    pub(super) fn guardrail(&mut self, g: &Spanned<RawGuardrail>) -> Option<Guardrail> {
        let loc = self.loc(g.span());
        let g = g.get_ref();
        let why = self.required(&g.why, &loc, "why", "[[guardrails]]").and_then(|v| self.value(v, values::text));
        let deny = self.required(&g.deny, &loc, "deny", "[[guardrails]]")?;
        let dloc = self.loc(deny.span());
        let deny = deny.get_ref();
        let zone_of = |cx: &mut Self, v: &Option<Str>, key: &str| -> Option<Option<ZoneId>> {
            let v = cx.required(v, &dloc, key, "guardrails.deny")?;
            match cx.endpoint(v, &["zone", "internet"])?.value {
                Endpoint::Zone(z) => Some(Some(z)),
                _ => Some(None),
            }
        };
        let from = zone_of(self, &deny.from, "from");
        let to = zone_of(self, &deny.to, "to");
        Some(Guardrail { from: from?, to: to?, why: why?.value, loc })
    }

    pub(super) fn backup(&mut self, name: &str, loc: Loc, b: &RawBackup, defaults: &Defaults) -> Option<Backup> {
        let t = format!("[backups.{name}]");
        let service =
            self.required(&b.service, &loc, "service", &t).and_then(|v| self.reference_str(RefTo::Service, v));
        let method = self
            .required(&b.method, &loc, "method", &t)
            .and_then(|v| self.vocabulary(v, "backup method", BackupMethod::ALL));
        // `every` is the job timer's `OnUnitActiveSec=` when no calendar fits it.
        let every = self
            .required(&b.every, &loc, "every", &t)
            .and_then(|v| self.value(v, Duration::within(&values::SYSTEMD_TIMESPAN)));
        let target = self.required(&b.target, &loc, "target", &t).and_then(|v| self.endpoint(v, &["service", "host"]));
        let retention = b
            .retention
            .as_ref()
            .and_then(|v| self.value(v, Duration::parse))
            .unwrap_or(At { value: defaults.backup_retention, loc: loc.clone() });
        // pgBackRest keeps a pg-basebackup policy's full backups this long, in days.
        if method.as_ref().is_some_and(|m| m.value == BackupMethod::PgBasebackup)
            && let Err(e) = values::PGBACKREST_RETENTION.check(retention.value, &retention.value.to_string())
        {
            self.bad(retention.loc.clone(), e);
        }
        let retention = retention.value;
        Some(Backup {
            name: name.to_string(),
            service: service.map(|a| At { value: ServiceId(a.value), loc: a.loc })?,
            method: method?.value,
            every: every?,
            continuous: b.continuous.as_ref().is_some_and(|c| *c.get_ref()),
            target: target?,
            retention,
            verify_restore: b.verify_restore.as_ref().is_some_and(|c| *c.get_ref()),
            restore_time: b.restore_time.as_ref().and_then(|v| self.value(v, Duration::parse)),
            loc,
        })
    }
}
