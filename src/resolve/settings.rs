//! The site-wide tables, each defined once: `[site]`, `[recovery]`, `[defaults]` (and
//! the timing and resource blocks that services share with the defaults), `[agent]`.

use toml::Spanned;

use super::cx::Cx;
use super::index::Index;
use crate::diag::{Diagnostic, Diagnostics, FileId, Loc};
use crate::load::RawSite;
use crate::load::schema::*;
use crate::model::values::{self, Duration, NameKind, Size};
use crate::model::*;

/// Reads `[site]`, `[recovery]` and `[defaults]`, each defined once.
pub(super) fn singletons(raw: &RawSite, index: &Index, site: &mut Site, diags: &mut Diagnostics) {
    fn once<'a, T>(
        raw: &'a RawSite,
        table: &str,
        get: impl Fn(&'a RawFile) -> &'a Option<Spanned<T>>,
        diags: &mut Diagnostics,
    ) -> Option<(FileId, &'a Spanned<T>)> {
        let mut first: Option<(FileId, &'a Spanned<T>)> = None;
        for (file, parsed) in &raw.files {
            if let Some(v) = get(parsed) {
                match first {
                    None => first = Some((*file, v)),
                    Some((f0, v0)) => diags.push(
                        Diagnostic::error(
                            "duplicate-name",
                            format!("`[{table}]` is defined twice"),
                            Loc::new(*file, v.span()),
                        )
                        .also(Loc::new(f0, v0.span()), "first defined here")
                        .help(format!("keep one `[{table}]` table for the whole site")),
                    ),
                }
            }
        }
        first
    }
    let nothing_loaded = raw.files.is_empty();
    match once(raw, "site", |f| &f.site, diags) {
        Some((file, s)) => {
            let mut cx = Cx::new(file, index, diags);
            let loc = cx.loc(s.span());
            site.settings.loc = Some(loc.clone());
            let s = s.get_ref();
            site.settings.name = cx
                .required(&s.name, &loc, "name", "[site]")
                .and_then(|v| cx.value(v, |x| values::name(x, NameKind::Ident)))
                .map(|a| a.value)
                .unwrap_or_default();
            site.settings.domain = cx
                .required(&s.domain, &loc, "domain", "[site]")
                .and_then(|v| cx.value(v, values::dns_name))
                .map(|a| a.value)
                .unwrap_or_default();
            site.settings.public_domain =
                s.public_domain.as_ref().and_then(|v| cx.value(v, values::dns_name)).map(|a| a.value);
            site.settings.description = cx.opt_text(&s.description);
        }
        None if !nothing_loaded => diags.push(
            Diagnostic::error_nowhere("missing-table", "no site file defines `[site]`")
                .help("add `[site]` with `name` and `domain` to `site/site.toml`"),
        ),
        None => {}
    }
    match once(raw, "recovery", |f| &f.recovery, diags) {
        Some((file, r)) => {
            let mut cx = Cx::new(file, index, diags);
            let loc = cx.loc(r.span());
            let r = r.get_ref();
            if let Some(v) = cx.required(&r.rto, &loc, "rto", "[recovery]").and_then(|v| cx.value(v, Duration::parse)) {
                site.recovery.rto = v;
            }
            if let Some(v) = cx.required(&r.rpo, &loc, "rpo", "[recovery]").and_then(|v| cx.value(v, Duration::parse)) {
                site.recovery.rpo = v;
            }
        }
        None if !nothing_loaded => diags.push(
            Diagnostic::error_nowhere("missing-table", "no site file defines `[recovery]`")
                .help("add `[recovery]` with `rto = \"4h\"` and `rpo = \"1h\"` (your targets) to `site/site.toml`"),
        ),
        None => {}
    }
    if let Some((file, t)) = once(raw, "secrets", |f| &f.secrets, diags) {
        let mut cx = Cx::new(file, index, diags);
        site.secrets.loc = Some(cx.loc(t.span()));
        let written = &t.get_ref().recovery;
        site.secrets.recovery = written.iter().filter_map(|v| cx.value(v, values::recovery_key)).collect();
        site.secrets.recovery_invalid = site.secrets.recovery.len() != written.len();
    }
    site.secrets.files = raw
        .secrets
        .iter()
        .map(|f| {
            let name = f.rel.strip_suffix(".age").filter(|n| values::name(n, NameKind::Secret).is_ok());
            CipherFile {
                rel: f.rel.clone(),
                name: name.map(str::to_string),
                loc: Loc::new(f.file, 0..0),
                header: crate::secrets::Header::parse(&f.bytes),
                bytes: f.bytes.clone(),
            }
        })
        .collect();
    if let Some((file, d)) = once(raw, "defaults", |f| &f.defaults, diags) {
        let mut cx = Cx::new(file, index, diags);
        site.defaults = cx.defaults(d.get_ref());
        site.defaults.loc = Some(Loc::new(file, d.span()));
    }
}

impl Cx<'_, '_> {
    pub(super) fn defaults(&mut self, d: &RawDefaults) -> Defaults {
        let mut out = Defaults::default();
        if let Some(c) = &d.container {
            let c = c.get_ref();
            if let Some(r) = &c.restart {
                let all = [("unless-stopped", ()), ("on-failure", ()), ("always", ()), ("no", ())];
                if self.vocabulary(r, "restart policy", &all).is_some() {
                    out.restart = r.get_ref().clone();
                }
            }
            if let Some(v) = c.pids_limit.as_ref().and_then(|v| self.int(v, 1, 1 << 22, "pids limit")) {
                out.pids_limit = v.value;
            }
            if let Some(v) = c.tmpfs_size.as_ref().and_then(|v| self.value(v, Size::parse)) {
                out.tmpfs_size = v.value;
            }
        }
        if let Some(h) = &d.health {
            let h = h.get_ref();
            self.timing(
                &h.interval,
                &h.timeout,
                &h.retries,
                &h.start_period,
                &mut out.health_interval,
                &mut out.health_timeout,
                &mut out.health_retries,
                &mut out.health_start_period,
            );
        }
        if let Some(r) = &d.resources {
            out.resources = self.resources(r.get_ref(), &out.resources);
        }
        if let Some(v) = d.backup_retention.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            out.backup_retention = v.value;
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn timing(
        &mut self,
        interval: &Option<Str>,
        timeout: &Option<Str>,
        retries: &Option<Spanned<i64>>,
        start: &Option<Str>,
        i: &mut Duration,
        t: &mut Duration,
        r: &mut u32,
        s: &mut Duration,
    ) {
        // Each timing is HAProxy's `inter` (and a container health check's), whose
        // timers hold at most 2^31 - 1 ms.
        let timer = || Duration::within(&values::HAPROXY_TIMER);
        if let Some(v) = interval.as_ref().and_then(|v| self.value(v, timer())) {
            *i = v.value;
        }
        if let Some(v) = timeout.as_ref().and_then(|v| self.value(v, timer())) {
            *t = v.value;
        }
        if let Some(v) = retries.as_ref().and_then(|v| self.int(v, 1, 100, "retries")) {
            *r = v.value;
        }
        if let Some(v) = start.as_ref().and_then(|v| self.value(v, timer())) {
            *s = v.value;
        }
    }

    pub(super) fn resources(&mut self, r: &RawResources, base: &Resources) -> Resources {
        let mut out = base.clone();
        if let Some(v) = r.cpus.as_ref().and_then(|v| self.cpus(v)) {
            out.cpus = v;
        }
        if let Some(v) = r.reserve_cpus.as_ref().and_then(|v| self.cpus(v)) {
            out.reserve_cpus = v;
        }
        if let Some(v) = r.memory.as_ref().and_then(|v| self.value(v, Size::parse)) {
            out.memory = v.value;
        }
        if let Some(v) = r.reserve_memory.as_ref().and_then(|v| self.value(v, Size::parse)) {
            out.reserve_memory = v.value;
        }
        if let Some(v) = r.pids.as_ref().and_then(|v| self.int(v, 1, 1 << 22, "pids limit")) {
            out.pids = v.value;
        }
        out
    }
}
