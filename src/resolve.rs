//! Stage 2, **resolve**: [`RawSite`] → [`Site`].
//!
//! Types every raw value (addresses, CIDRs, ports, durations, sizes, names, images),
//! resolves names to typed ids with "did you mean" hints, applies `[defaults]` and the
//! built-in kind defaults, and reports duplicates across files. Problems are collected;
//! an entity with a bad field is still built (with the field left out) so that the
//! checks in `verify` can run on everything else in the same pass.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics, FileId, Loc, did_you_mean};
use crate::load::RawSite;
use crate::load::schema::*;
use crate::model::values::{self, Duration, Image, NameKind, PortSpec, Size, ValueError};
use crate::model::*;

/// Builds the typed site. Returns it even when there were errors, for `verify` to use.
pub fn resolve(raw: &RawSite, file_names: &[String], diags: &mut Diagnostics) -> Site {
    let index = Index::build(raw, diags);
    let mut site = Site { files: file_names.to_vec(), ..Site::default() };

    singletons(raw, &index, &mut site, diags);

    for (name, (file, loc, z)) in &index.zones {
        let mut cx = Cx { file: *file, index: &index, diags };
        site.zones.push(cx.zone(name, loc.clone(), z));
    }
    for (name, (file, loc, n)) in &index.networks {
        let mut cx = Cx { file: *file, index: &index, diags };
        site.docker_networks.push(cx.network(name, loc.clone(), n));
    }
    for (name, (file, loc, h)) in &index.hosts {
        let mut cx = Cx { file: *file, index: &index, diags };
        site.hosts.push(cx.host(name, loc.clone(), h));
    }
    for (name, (file, loc, s)) in &index.services {
        let mut cx = Cx { file: *file, index: &index, diags };
        let svc = cx.service(name, loc.clone(), s, &site.defaults);
        site.services.push(svc);
    }
    for (file, parsed) in &raw.files {
        for f in &parsed.flows {
            let mut cx = Cx { file: *file, index: &index, diags };
            if let Some(flow) = cx.flow(f, &site) {
                site.flows.push(flow);
            }
        }
        for g in &parsed.guardrails {
            let mut cx = Cx { file: *file, index: &index, diags };
            if let Some(rail) = cx.guardrail(g) {
                site.guardrails.push(rail);
            }
        }
    }
    for (name, (file, loc, b)) in &index.backups {
        let mut cx = Cx { file: *file, index: &index, diags };
        if let Some(backup) = cx.backup(name, loc.clone(), b, &site.defaults) {
            site.backups.push(backup);
        }
    }
    for (name, (file, loc, c)) in &index.certificates {
        let mut cx = Cx { file: *file, index: &index, diags };
        if let Some(cert) = cx.certificate(name, loc.clone(), c) {
            site.certificates.push(cert);
        }
    }
    // The model lives until the build is written: give back the vectors' growth slack
    // (a few MB on a 10,000-service site).
    site.zones.shrink_to_fit();
    site.docker_networks.shrink_to_fit();
    site.hosts.shrink_to_fit();
    site.services.shrink_to_fit();
    site.flows.shrink_to_fit();
    site.guardrails.shrink_to_fit();
    site.backups.shrink_to_fit();
    site.certificates.shrink_to_fit();
    site
}

type Entry<'a, T> = (FileId, Loc, &'a T);

/// Every named entity of the site, sorted by name, with the position that becomes its id.
struct Index<'a> {
    zones: BTreeMap<String, Entry<'a, RawZone>>,
    networks: BTreeMap<String, Entry<'a, RawDockerNetwork>>,
    hosts: BTreeMap<String, Entry<'a, RawHost>>,
    services: BTreeMap<String, Entry<'a, RawService>>,
    backups: BTreeMap<String, Entry<'a, RawBackup>>,
    certificates: BTreeMap<String, Entry<'a, RawCertificate>>,
    /// Id (position in name order) of every zone, network, host and service name, so
    /// that resolving a reference is one lookup, not a scan of every name.
    ids: [std::collections::HashMap<String, usize>; 4],
}

impl<'a> Index<'a> {
    fn build(raw: &'a RawSite, diags: &mut Diagnostics) -> Self {
        fn collect<'a, T>(
            raw: &'a RawSite,
            table: &str,
            kind: NameKind,
            get: impl Fn(&'a RawFile) -> &'a Named<T>,
            diags: &mut Diagnostics,
        ) -> BTreeMap<String, Entry<'a, T>> {
            let mut out: BTreeMap<String, Entry<'a, T>> = BTreeMap::new();
            for (file, parsed) in &raw.files {
                for (key, value) in get(parsed) {
                    let loc = Loc::new(*file, key.span());
                    if let Err(e) = values::name(key.get_ref(), kind) {
                        diags.push(Diagnostic::error("bad-name", e.message, loc.clone()).help(e.help));
                    }
                    if let Some((_, first, _)) = out.get(key.get_ref()) {
                        diags.push(
                            Diagnostic::error(
                                "duplicate-name",
                                format!("`{}` is defined twice in `{table}`", key.get_ref()),
                                loc,
                            )
                            .label("second definition")
                            .also(first.clone(), "first defined here")
                            .help("names are unique per table; rename one or merge the two definitions"),
                        );
                        continue;
                    }
                    out.insert(key.get_ref().clone(), (*file, loc, value));
                }
            }
            out
        }
        let mut index = Index {
            zones: collect(raw, "zones", NameKind::Ident, |f| &f.zones, diags),
            networks: collect(raw, "docker_networks", NameKind::Ident, |f| &f.docker_networks, diags),
            hosts: collect(raw, "hosts", NameKind::Label, |f| &f.hosts, diags),
            services: collect(raw, "services", NameKind::Label, |f| &f.services, diags),
            backups: collect(raw, "backups", NameKind::Ident, |f| &f.backups, diags),
            certificates: collect(raw, "certificates", NameKind::Ident, |f| &f.certificates, diags),
            ids: Default::default(),
        };
        fn ids<T>(m: &BTreeMap<String, T>) -> std::collections::HashMap<String, usize> {
            m.keys().enumerate().map(|(i, k)| (k.clone(), i)).collect()
        }
        index.ids = [ids(&index.zones), ids(&index.networks), ids(&index.hosts), ids(&index.services)];
        index
    }
}

/// Reads `[site]`, `[recovery]` and `[defaults]`, each defined once.
fn singletons(raw: &RawSite, index: &Index, site: &mut Site, diags: &mut Diagnostics) {
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
            let mut cx = Cx { file, index, diags };
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
            let mut cx = Cx { file, index, diags };
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
    if let Some((file, a)) = once(raw, "agent", |f| &f.agent, diags) {
        let mut cx = Cx { file, index, diags };
        site.agent = cx.agent(a);
    }
    if let Some((file, d)) = once(raw, "defaults", |f| &f.defaults, diags) {
        let mut cx = Cx { file, index, diags };
        site.defaults = cx.defaults(d.get_ref());
    }
}

/// Resolution context for one file.
struct Cx<'a, 'd> {
    file: FileId,
    index: &'a Index<'a>,
    diags: &'d mut Diagnostics,
}

/// What a reference points at.
#[derive(Clone, Copy)]
enum RefTo {
    Zone,
    Network,
    Host,
    Service,
}

impl RefTo {
    fn table(self) -> &'static str {
        match self {
            RefTo::Zone => "zones",
            RefTo::Network => "docker_networks",
            RefTo::Host => "hosts",
            RefTo::Service => "services",
        }
    }
    fn what(self) -> &'static str {
        match self {
            RefTo::Zone => "zone",
            RefTo::Network => "docker network",
            RefTo::Host => "host",
            RefTo::Service => "service",
        }
    }
}

impl Cx<'_, '_> {
    fn loc(&self, span: std::ops::Range<usize>) -> Loc {
        Loc::new(self.file, span)
    }

    fn bad(&mut self, loc: Loc, e: ValueError) {
        self.diags.push(Diagnostic::error("bad-value", e.message, loc).help(e.help));
    }

    /// Types a string value; reports and returns `None` when it is invalid.
    fn value<T>(&mut self, v: &Str, parse: impl Fn(&str) -> Result<T, ValueError>) -> Option<At<T>> {
        let loc = self.loc(v.span());
        match parse(v.get_ref()) {
            Ok(value) => Some(At { value, loc }),
            Err(e) => {
                self.bad(loc, e);
                None
            }
        }
    }

    fn required<'v, T>(&mut self, v: &'v Option<T>, at: &Loc, key: &str, table: &str) -> Option<&'v T> {
        if v.is_none() {
            self.diags.push(
                Diagnostic::error("missing-key", format!("`{table}` has no `{key}`"), at.clone())
                    .label(format!("`{key}` is required here"))
                    .help(format!("add `{key} = ...`; see the site reference in README.md")),
            );
        }
        v.as_ref()
    }

    fn opt_text(&mut self, v: &Option<Str>) -> Option<String> {
        v.as_ref().and_then(|v| self.value(v, values::text)).map(|a| a.value)
    }

    fn int<T: TryFrom<i64>>(&mut self, v: &Spanned<i64>, min: i64, max: i64, what: &str) -> Option<At<T>> {
        let loc = self.loc(v.span());
        let n = *v.get_ref();
        if n < min || n > max {
            self.bad(
                loc,
                ValueError {
                    message: format!("{what} {n} is out of range"),
                    help: format!("use a value from {min} to {max}"),
                },
            );
            return None;
        }
        T::try_from(n).ok().map(|value| At { value, loc })
    }

    fn cpus(&mut self, v: &Spanned<f64>) -> Option<f64> {
        let n = *v.get_ref();
        if !(n > 0.0 && n <= 1024.0) {
            let loc = self.loc(v.span());
            self.bad(
                loc,
                ValueError {
                    message: format!("{n} CPUs is out of range"),
                    help: "use a positive number such as `0.5` or `2.0`".into(),
                },
            );
            return None;
        }
        Some(n)
    }

    fn vocabulary<T: Copy>(&mut self, v: &Str, what: &str, all: &[(&str, T)]) -> Option<At<T>> {
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
    fn reference(&mut self, to: RefTo, name: &str, loc: Loc) -> Option<usize> {
        if let Some(i) = self.index.ids[to as usize].get(name) {
            return Some(*i);
        }
        let keys: Vec<&str> = match to {
            RefTo::Zone => self.index.zones.keys().map(String::as_str).collect(),
            RefTo::Network => self.index.networks.keys().map(String::as_str).collect(),
            RefTo::Host => self.index.hosts.keys().map(String::as_str).collect(),
            RefTo::Service => self.index.services.keys().map(String::as_str).collect(),
        };
        if let Some(i) = keys.iter().position(|k| *k == name) {
            return Some(i);
        }
        let mut d =
            Diagnostic::error("unknown-reference", format!("unknown {} `{}`", to.what(), values::printable(name)), loc)
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

    fn reference_str(&mut self, to: RefTo, v: &Str) -> Option<At<usize>> {
        let loc = self.loc(v.span());
        self.reference(to, v.get_ref(), loc.clone()).map(|value| At { value, loc })
    }

    /// Parses `service:x`, `host:x`, `zone:x` or `internet`.
    fn endpoint(&mut self, v: &Str, allowed: &[&str]) -> Option<At<Endpoint>> {
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
            if allowed.contains(&"service") && self.index.services.contains_key(s) {
                help = format!("did you mean `service:{s}`?");
            } else if allowed.contains(&"zone") && self.index.zones.contains_key(s) {
                help = format!("did you mean `zone:{s}`?");
            } else if allowed.contains(&"host") && self.index.hosts.contains_key(s) {
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

    fn defaults(&mut self, d: &RawDefaults) -> Defaults {
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
    fn timing(
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
        if let Some(v) = interval.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            *i = v.value;
        }
        if let Some(v) = timeout.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            *t = v.value;
        }
        if let Some(v) = retries.as_ref().and_then(|v| self.int(v, 1, 100, "retries")) {
            *r = v.value;
        }
        if let Some(v) = start.as_ref().and_then(|v| self.value(v, Duration::parse)) {
            *s = v.value;
        }
    }

    fn resources(&mut self, r: &RawResources, base: &Resources) -> Resources {
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

    fn zone(&mut self, name: &str, loc: Loc, z: &RawZone) -> Zone {
        let t = format!("[zones.{name}]");
        let vlan = self.required(&z.vlan, &loc, "vlan", &t).and_then(|v| self.int(v, 1, 4094, "VLAN id"));
        let cidr = self.required(&z.cidr, &loc, "cidr", &t).and_then(|v| self.value(v, values::cidr));
        Zone {
            name: name.to_string(),
            vlan,
            cidr,
            gateway: z.gateway.as_ref().and_then(|v| self.value(v, values::address)),
            description: self.opt_text(&z.description),
            loc,
        }
    }

    fn network(&mut self, name: &str, loc: Loc, n: &RawDockerNetwork) -> DockerNetwork {
        let t = format!("[docker_networks.{name}]");
        let cidr = self.required(&n.cidr, &loc, "cidr", &t).and_then(|v| self.value(v, values::cidr));
        let driver = n
            .driver
            .as_ref()
            .and_then(|v| {
                self.vocabulary(v, "network driver", &[("bridge", NetDriver::Bridge), ("overlay", NetDriver::Overlay)])
            })
            .map(|a| a.value)
            .unwrap_or(NetDriver::Bridge);
        DockerNetwork {
            name: name.to_string(),
            cidr,
            gateway: n.gateway.as_ref().and_then(|v| self.value(v, values::address)),
            internal: n.internal.as_ref().map(|b| *b.get_ref()).unwrap_or(false),
            driver,
            encrypted: n.encrypted.as_ref().map(|b| *b.get_ref()).unwrap_or(false),
            description: self.opt_text(&n.description),
            loc,
        }
    }

    fn host(&mut self, name: &str, loc: Loc, h: &RawHost) -> Host {
        let t = format!("[hosts.{name}]");
        let kind = self
            .required(&h.kind, &loc, "kind", &t)
            .and_then(|v| self.vocabulary(v, "host kind", HostKind::ALL))
            .unwrap_or(At { value: HostKind::Physical, loc: loc.clone() });
        let on =
            h.on.as_ref()
                .and_then(|v| self.reference_str(RefTo::Host, v))
                .map(|a| At { value: HostId(a.value), loc: a.loc });
        let os =
            h.os.as_ref()
                .and_then(|v| self.value(v, |s| values::name(s, NameKind::Ident).or_else(|_| values::dns_name(s))))
                .map(|a| a.value);
        let roles = h.roles.iter().filter_map(|r| self.vocabulary(r, "host role", Role::ALL)).collect();
        let mut interfaces = Vec::new();
        for i in &h.interfaces {
            let iloc = self.loc(i.span());
            let i = i.get_ref();
            let zone =
                self.required(&i.zone, &iloc, "zone", "interface").and_then(|v| self.reference_str(RefTo::Zone, v));
            let address =
                self.required(&i.address, &iloc, "address", "interface").and_then(|v| self.value(v, values::address));
            let iname =
                i.name.as_ref().and_then(|v| self.value(v, |s| values::name(s, NameKind::Ident))).map(|a| a.value);
            if let (Some(zone), Some(address)) = (zone, address) {
                interfaces.push(Interface {
                    zone: At { value: ZoneId(zone.value), loc: zone.loc },
                    address,
                    name: iname,
                });
            }
        }
        let resources = h.resources.as_ref().map(|r| {
            let r = r.get_ref();
            HostResources {
                cpus: r.cpus.as_ref().and_then(|v| self.int(v, 1, 4096, "CPU count")).map(|a| a.value),
                memory: r.memory.as_ref().and_then(|v| self.value(v, Size::parse)).map(|a| a.value),
                disk: r.disk.as_ref().and_then(|v| self.value(v, Size::parse)).map(|a| a.value),
            }
        });
        Host {
            name: name.to_string(),
            kind,
            on,
            os,
            roles,
            interfaces,
            resources,
            description: self.opt_text(&h.description),
            interfaces_declared: !h.interfaces.is_empty(),
            loc,
        }
    }

    fn service(&mut self, name: &str, loc: Loc, s: &RawService, defaults: &Defaults) -> Service {
        let kind_written = s.kind.is_some();
        let kind = match &s.kind {
            Some(k) => {
                let all: Vec<(&str, ServiceKind)> = kinds::KINDS.iter().map(|k| (k.name, k.kind)).collect();
                self.vocabulary(k, "service kind", &all)
            }
            None => None,
        };
        let kind_known = kind.is_some() || !kind_written;
        let kind = kind.unwrap_or(At { value: ServiceKind::Container, loc: loc.clone() });
        let info = kind.value.info();
        let image = s.image.as_ref().and_then(|v| self.value(v, Image::parse));
        if s.image.is_none() && info.container && kind_known {
            self.diags.push(
                Diagnostic::error("missing-key", format!("container service `{name}` has no image"), loc.clone())
                    .help("add `image = \"registry/repository:tag\"` with a pinned tag"),
            );
        }
        let hosts: Vec<At<HostId>> = s
            .hosts
            .iter()
            .filter_map(|h| self.reference_str(RefTo::Host, h))
            .map(|a| At { value: HostId(a.value), loc: a.loc })
            .collect();
        let primary = s
            .primary
            .as_ref()
            .and_then(|v| self.reference_str(RefTo::Host, v))
            .map(|a| At { value: HostId(a.value), loc: a.loc });
        let replicas =
            s.replicas.as_ref().and_then(|v| self.int(v, 1, 1000, "replica count")).map(|a| a.value).unwrap_or(1);
        let version = s.version.as_ref().and_then(|v| {
            let text = match v.get_ref() {
                IntOrStr::Int(n) => n.to_string(),
                IntOrStr::Str(s) => s.clone(),
            };
            let loc = self.loc(v.span());
            let ok = !text.is_empty()
                && text.len() <= 32
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                self.bad(
                    loc,
                    ValueError {
                        message: format!("`{}` is not a version", values::printable(&text)),
                        help: "write a version such as `16` or `\"2.8.1\"`".into(),
                    },
                );
                return None;
            }
            Some(text)
        });

        let mut ports = Vec::new();
        let mut port_errors = false;
        if s.ports.is_empty() {
            for (n, spec) in kind.value.default_ports() {
                ports.push(Port { name: n, spec, loc: None });
            }
        }
        for (pname, pval) in &s.ports {
            let ploc = self.loc(pname.span());
            if let Err(e) = values::name(pname.get_ref(), NameKind::Ident) {
                self.bad(ploc.clone(), e);
                port_errors = true;
                continue;
            }
            let vloc = self.loc(pval.span());
            let spec = match pval.get_ref() {
                IntOrStr::Int(n) => PortSpec::parse_int(*n),
                IntOrStr::Str(st) => PortSpec::parse_str(st).unwrap_or_else(|| {
                    Err(ValueError {
                        message: format!("`{}` is not a port", values::printable(st)),
                        help: "write a number (`4000`) or `tcp/N` / `udp/N`".into(),
                    })
                }),
            };
            match spec {
                Ok(spec) => ports.push(Port {
                    name: pname.get_ref().clone(),
                    spec,
                    loc: Some(Loc::new(self.file, ploc.span.start..vloc.span.end)),
                }),
                Err(e) => {
                    self.bad(vloc, e);
                    port_errors = true;
                }
            }
        }

        let mut networks = Vec::new();
        for (nname, addr) in &s.networks {
            let nloc = self.loc(nname.span());
            let net = self.reference(RefTo::Network, nname.get_ref(), nloc);
            let addr = self.value(addr, values::address);
            if let (Some(net), Some(addr)) = (net, addr) {
                networks.push((NetId(net), addr));
            }
        }

        let user = s.user.as_ref().and_then(|v| self.value(v, values::user));
        let health = self.health(s, &ports, port_errors, defaults, kind.value);
        let resources = match &s.resources {
            Some(r) => self.resources(r.get_ref(), &defaults.resources),
            None => defaults.resources.clone(),
        };
        let secrets = s.secrets.iter().filter_map(|v| self.value(v, |x| values::name(x, NameKind::Secret))).collect();
        let mut env = Vec::new();
        for (k, v) in &s.env {
            let kloc = self.loc(k.span());
            let key = match values::name(k.get_ref(), NameKind::Env) {
                Ok(key) => At { value: key, loc: kloc },
                Err(e) => {
                    self.bad(kloc, e);
                    continue;
                }
            };
            if let Some(val) = self.value(v, values::text) {
                env.push((key, val));
            }
        }
        let mut volumes = Vec::new();
        for (vname, target) in &s.volumes {
            let vloc = self.loc(vname.span());
            if let Err(e) = values::name(vname.get_ref(), NameKind::Ident) {
                self.bad(vloc.clone(), e);
            }
            if let Some(t) = self.value(target, values::abs_path) {
                volumes.push(Volume { name: vname.get_ref().clone(), target: t.value, loc: vloc });
            }
        }
        let tmpfs = s.tmpfs.iter().filter_map(|v| self.value(v, values::abs_path)).collect();
        let mut expose = Vec::new();
        for e in &s.expose {
            let eloc = self.loc(e.span());
            let e = e.get_ref();
            let hostname =
                self.required(&e.hostname, &eloc, "hostname", "expose").and_then(|v| self.value(v, values::dns_name));
            let path = match &e.path {
                Some(p) => self.value(p, values::abs_path),
                None => Some(At { value: "/".to_string(), loc: eloc.clone() }),
            };
            let port = match &e.port {
                Some(p) => Some(At { value: p.get_ref().clone(), loc: self.loc(p.span()) }),
                None => ports.first().map(|p| At { value: p.name.clone(), loc: eloc.clone() }),
            };
            let port = match port {
                Some(p) => Some(p),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            "expose-without-port",
                            format!("service `{name}` is exposed but listens on no port"),
                            eloc.clone(),
                        )
                        .help("declare the port it serves on, e.g. `ports = { http = 8080 }`"),
                    );
                    None
                }
            };
            let waf = e
                .waf
                .as_ref()
                .and_then(|v| {
                    self.vocabulary(
                        v,
                        "WAF mode",
                        &[("off", WafMode::Off), ("detect", WafMode::Detect), ("block", WafMode::Block)],
                    )
                })
                .map(|a| a.value)
                .unwrap_or(WafMode::Block);
            let tls = e.tls.as_ref().map(|t| At { value: t.get_ref().clone(), loc: self.loc(t.span()) });
            if let Some(t) = &tls
                && !self.index.certificates.contains_key(&t.value)
            {
                let names: Vec<&str> = self.index.certificates.keys().map(String::as_str).collect();
                let d = Diagnostic::error(
                    "unknown-reference",
                    format!("unknown certificate `{}`", values::printable(&t.value)),
                    t.loc.clone(),
                )
                .label("no such certificate");
                let d = match did_you_mean(&t.value, names.iter().copied()) {
                    Some(x) => d.help(format!("did you mean `{x}`?")),
                    None => d.help(format!(
                        "declare it: `[certificates.{}]` with `domains` and `file`",
                        values::printable(&t.value)
                    )),
                };
                self.diags.push(d);
            }
            let rate_limit = e.rate_limit.as_ref().and_then(|r| {
                let rloc = self.loc(r.span());
                let r = r.get_ref();
                let rate =
                    self.required(&r.rate, &rloc, "rate", "rate_limit").and_then(|v| self.value(v, parse_rate))?;
                let burst = match &r.burst {
                    Some(b) => self.int(b, 0, 100_000, "burst")?.value,
                    None => 0,
                };
                Some(RateLimit { rate: rate.value, burst })
            });
            let max_body = match &e.max_body {
                Some(v) => self.value(v, Size::parse).map(|a| a.value),
                None => Some(Size(1 << 20)),
            };
            let waf_exclusions: Vec<u32> = e
                .waf_exclusions
                .iter()
                .filter_map(|id| self.int::<u32>(id, 1, 9_999_999, "rule id"))
                .map(|a| a.value)
                .collect();
            if let (Some(hostname), Some(path), Some(port), Some(max_body)) = (hostname, path, port, max_body) {
                expose.push(Expose {
                    hostname,
                    path,
                    port,
                    websocket: e.websocket.as_ref().is_some_and(|b| *b.get_ref()),
                    waf,
                    tls,
                    rate_limit,
                    max_body,
                    waf_exclusions,
                    loc: eloc,
                });
            }
        }
        let depends_on = s
            .depends_on
            .iter()
            .filter_map(|d| self.reference_str(RefTo::Service, d))
            .map(|a| At { value: ServiceId(a.value), loc: a.loc })
            .collect();
        let cap_add = s
            .cap_add
            .iter()
            .filter_map(|v| {
                self.value(v, |c| {
                    let ok = !c.is_empty() && c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_');
                    if ok {
                        Ok(c.to_string())
                    } else {
                        Err(ValueError {
                            message: format!("`{}` is not a capability", values::printable(c)),
                            help: "write it as in capabilities(7) without `CAP_`, e.g. `NET_BIND_SERVICE`".into(),
                        })
                    }
                })
            })
            .collect();
        let read_only = match &s.read_only {
            Some(b) => At { value: *b.get_ref(), loc: self.loc(b.span()) },
            None => At { value: true, loc: loc.clone() },
        };
        let stateful = match &s.stateful {
            Some(b) => *b.get_ref(),
            None => info.stateful || !volumes.is_empty(),
        };
        let mut exceptions = Vec::new();
        for (k, reason) in &s.exceptions {
            let kloc = self.loc(k.span());
            match ExceptionKind::ALL.iter().find(|(n, _)| n == k.get_ref()) {
                Some((_, kind)) => {
                    if let Some(r) = self.value(reason, values::text) {
                        exceptions.push(Exception { kind: *kind, reason: r });
                    }
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
        Service {
            name: name.to_string(),
            kind,
            image,
            hosts,
            primary,
            replicas,
            version,
            ports,
            networks,
            user,
            health,
            resources,
            secrets,
            env,
            volumes,
            tmpfs,
            expose,
            depends_on,
            cap_add,
            read_only,
            stateful,
            exceptions,
            balance: s
                .balance
                .as_ref()
                .and_then(|v| {
                    self.vocabulary(
                        v,
                        "balance algorithm",
                        &[
                            ("roundrobin", Balance::Roundrobin),
                            ("leastconn", Balance::Leastconn),
                            ("source", Balance::Source),
                        ],
                    )
                })
                .map(|a| a.value)
                .unwrap_or(Balance::Roundrobin),
            vip: s.vip.as_ref().and_then(|v| self.value(v, values::address)),
            vrid: s
                .vrid
                .as_ref()
                .and_then(|v| self.int::<u8>(v, 1, 255, "VRRP router id"))
                .map(|a| a.value)
                .unwrap_or(51),
            description: self.opt_text(&s.description),
            declared: Declared { kind_known, health: s.health.is_some(), hosts: !s.hosts.is_empty() },
            loc,
        }
    }

    fn health(
        &mut self,
        s: &RawService,
        ports: &[Port],
        port_errors: bool,
        defaults: &Defaults,
        kind: ServiceKind,
    ) -> Option<Health> {
        let mut h = Health {
            check: HealthCheck::Exec(Vec::new()),
            interval: defaults.health_interval,
            timeout: defaults.health_timeout,
            retries: defaults.health_retries,
            start_period: defaults.health_start_period,
            loc: None,
        };
        let Some(raw) = &s.health else {
            // Native kinds are checked on their first port; containers must say how.
            if kind.info().container {
                return None;
            }
            // A TCP connect says nothing about a UDP-only service, and an appliance is
            // watched by its own means.
            if kind == ServiceKind::Pfsense {
                return None;
            }
            let tcp = ports.iter().find(|p| p.spec.proto == values::Proto::Tcp)?;
            h.check = HealthCheck::Tcp { port: tcp.name.clone() };
            return Some(h);
        };
        let hloc = self.loc(raw.span());
        h.loc = Some(hloc.clone());
        let r = raw.get_ref();
        self.timing(
            &r.interval,
            &r.timeout,
            &r.retries,
            &r.start_period,
            &mut h.interval,
            &mut h.timeout,
            &mut h.retries,
            &mut h.start_period,
        );
        let port = match &r.port {
            Some(p) => {
                let ploc = self.loc(p.span());
                if ports.iter().any(|x| &x.name == p.get_ref()) {
                    Some(p.get_ref().clone())
                } else {
                    let names: Vec<&str> = ports.iter().map(|x| x.name.as_str()).collect();
                    let mut d = Diagnostic::error(
                        "unknown-port",
                        format!("the service has no port named `{}`", values::printable(p.get_ref())),
                        ploc,
                    );
                    d = match did_you_mean(p.get_ref(), names.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if names.is_empty() => d.help("declare it in `ports`, e.g. `ports = { http = 8080 }`"),
                        None => d.help(format!("its ports are {}", shortlist(&names))),
                    };
                    self.diags.push(d);
                    None
                }
            }
            None => ports.first().map(|p| p.name.clone()),
        };
        // A port that failed to parse was reported already; do not report it as missing.
        let port = if port.is_none() && port_errors { return None } else { port };
        let forms = [r.http.is_some(), r.tcp.is_some(), r.exec.is_some()].iter().filter(|b| **b).count();
        if forms != 1 {
            self.diags.push(
                Diagnostic::error(
                    "bad-health",
                    "a health check needs exactly one of `http`, `tcp` or `exec`",
                    hloc.clone(),
                )
                .help("e.g. `health = { http = \"/api/health\" }`"),
            );
            return None;
        }
        h.check = if let Some(path) = &r.http {
            let path = self.value(path, values::abs_path)?.value;
            let status = match &r.status {
                Some(st) => self.int(st, 100, 599, "HTTP status")?.value,
                None => 200,
            };
            HealthCheck::Http { path, port: port.or_else(|| self.no_port(&hloc))?, status }
        } else if r.tcp.is_some() {
            HealthCheck::Tcp { port: port.or_else(|| self.no_port(&hloc))? }
        } else {
            let argv = r.exec.as_ref()?;
            let words: Vec<String> =
                argv.get_ref().iter().filter_map(|w| self.value(w, values::word)).map(|a| a.value).collect();
            if words.len() != argv.get_ref().len() {
                return None;
            }
            if words.is_empty() {
                let loc = self.loc(argv.span());
                self.bad(
                    loc,
                    ValueError {
                        message: "empty health command".into(),
                        help: "write the command as a list, e.g. `exec = [\"pg_isready\", \"-q\"]`".into(),
                    },
                );
                return None;
            }
            HealthCheck::Exec(words)
        };
        Some(h)
    }

    fn no_port(&mut self, loc: &Loc) -> Option<String> {
        self.diags.push(
            Diagnostic::error(
                "unknown-port",
                "the health check needs a port but the service declares none",
                loc.clone(),
            )
            .help("declare one in `ports`"),
        );
        None
    }

    fn flow(&mut self, f: &Spanned<RawFlow>, site: &Site) -> Option<Flow> {
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

    fn guardrail(&mut self, g: &Spanned<RawGuardrail>) -> Option<Guardrail> {
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

    fn agent(&mut self, a: &Spanned<RawAgent>) -> Option<AgentSettings> {
        let loc = self.loc(a.span());
        let a = a.get_ref();
        let repository =
            self.required(&a.repository, &loc, "repository", "[agent]").and_then(|v| self.value(v, repository_url));
        let branch = match &a.branch {
            Some(b) => self.value(b, |s| {
                values::name(s, NameKind::Ident).or_else(|_| values::abs_path(&format!("/{s}")).map(|_| s.to_string()))
            }),
            None => Some(At { value: "main".to_string(), loc: loc.clone() }),
        };
        let interval = a
            .interval
            .as_ref()
            .map(|v| self.value(v, Duration::parse))
            .unwrap_or(Some(At { value: Duration(300), loc: loc.clone() }));
        let splay = a
            .splay
            .as_ref()
            .map(|v| self.value(v, Duration::parse))
            .unwrap_or(Some(At { value: Duration(60), loc: loc.clone() }));
        let drift = match &a.drift {
            Some(v) => self
                .vocabulary(v, "drift policy", &[("enforce", "enforce"), ("report", "report")])
                .map(|x| x.value.to_string()),
            None => Some("enforce".to_string()),
        };
        if a.signers.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    "missing-key",
                    "`[agent]` lists no signers, so hosts would apply unsigned commits",
                    loc.clone(),
                )
                .help("add `signers = [\"ssh-ed25519 AAAA… ci@site\"]`: the public key CI signs rendered commits with"),
            );
        }
        let signers: Vec<String> =
            a.signers.iter().filter_map(|v| self.value(v, signer_key)).map(|x| x.value).collect();
        Some(AgentSettings {
            repository: repository?.value,
            branch: branch?.value,
            interval: interval?.value,
            splay: splay?.value,
            signers,
            drift: drift?,
            loc,
        })
    }

    fn certificate(&mut self, name: &str, loc: Loc, c: &RawCertificate) -> Option<Certificate> {
        let t = format!("[certificates.{name}]");
        if c.domains.is_empty() {
            self.diags.push(
                Diagnostic::error("missing-key", format!("certificate `{name}` covers no domain"), loc.clone())
                    .help("add `domains = [\"media.example.org\"]`"),
            );
        }
        let domains = c
            .domains
            .iter()
            .filter_map(|d| {
                self.value(d, |x| values::dns_name(x.strip_prefix("*.").unwrap_or(x)).map(|_| x.to_string()))
            })
            .collect();
        let file = self.required(&c.file, &loc, "file", &t).and_then(|v| self.value(v, values::abs_path))?;
        Some(Certificate {
            name: name.to_string(),
            loc,
            domains,
            file: file.value,
            acme: c.acme.as_ref().is_some_and(|b| *b.get_ref()),
        })
    }

    fn backup(&mut self, name: &str, loc: Loc, b: &RawBackup, defaults: &Defaults) -> Option<Backup> {
        let t = format!("[backups.{name}]");
        let service =
            self.required(&b.service, &loc, "service", &t).and_then(|v| self.reference_str(RefTo::Service, v));
        let method = self
            .required(&b.method, &loc, "method", &t)
            .and_then(|v| self.vocabulary(v, "backup method", BackupMethod::ALL));
        let every = self.required(&b.every, &loc, "every", &t).and_then(|v| self.value(v, Duration::parse));
        let target = self.required(&b.target, &loc, "target", &t).and_then(|v| self.endpoint(v, &["service", "host"]));
        let retention = b
            .retention
            .as_ref()
            .and_then(|v| self.value(v, Duration::parse))
            .map(|a| a.value)
            .unwrap_or(defaults.backup_retention);
        Some(Backup {
            name: name.to_string(),
            service: service.map(|a| At { value: ServiceId(a.value), loc: a.loc })?,
            method: method?.value,
            every: every?,
            continuous: b.continuous.as_ref().is_some_and(|c| *c.get_ref()),
            target: target?,
            retention,
            verify_restore: b.verify_restore.as_ref().is_some_and(|c| *c.get_ref()),
            loc,
        })
    }
}

/// A repository URL hosts can fetch: `https://`, `ssh://`, `file://` or an absolute path,
/// of plain URL characters.
fn repository_url(s: &str) -> Result<String, ValueError> {
    let ok_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || ":/._~@+-".contains(c));
    let ok_scheme = ["https://", "ssh://", "file://", "/"].iter().any(|p| s.starts_with(p));
    if !ok_chars || !ok_scheme || s.len() > 300 {
        return Err(ValueError {
            message: format!("`{}` is not a repository URL hosts can fetch", values::printable(s)),
            help: "write `https://host/path.git`, `ssh://git@host/path.git`, `file:///path` or an absolute path".into(),
        });
    }
    Ok(s.to_string())
}

/// An SSH public key line for `allowed_signers`: `<type> <base64> [comment]`.
fn signer_key(s: &str) -> Result<String, ValueError> {
    let bad = |why: &str| ValueError {
        message: format!("`{}` is not an SSH public key: {why}", values::printable(s)),
        help: "paste the line of the `.pub` file, e.g. `ssh-ed25519 AAAAC3Nza… ci@medianest`".into(),
    };
    let mut parts = s.split(' ');
    let kind = parts.next().unwrap_or("");
    if !["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa", "sk-ssh-ed25519@openssh.com"]
        .contains(&kind)
    {
        return Err(bad("unknown key type"));
    }
    let b64 = parts.next().unwrap_or("");
    if b64.len() < 16 || !b64.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)) {
        return Err(bad("the key is not base64"));
    }
    let comment: Vec<&str> = parts.collect();
    if comment.len() > 1
        || !comment.iter().all(|c| c.chars().all(|ch| ch.is_ascii_alphanumeric() || "@._-".contains(ch)))
    {
        return Err(bad("the comment must be one word"));
    }
    Ok(s.to_string())
}

/// `<n>r/s` or `<n>r/m`.
fn parse_rate(s: &str) -> Result<Rate, ValueError> {
    let bad = || ValueError {
        message: format!("`{}` is not a request rate", values::printable(s)),
        help: "write requests per second or minute, e.g. `10r/s` or `100r/m`".into(),
    };
    let (n, per) = s.split_once("r/").ok_or_else(bad)?;
    let count: u32 = n.parse().map_err(|_| bad())?;
    let per_seconds = match per {
        "s" => 1,
        "m" => 60,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(bad());
    }
    Ok(Rate { count, per_seconds })
}

/// Up to eight names in backticks, for hints.
pub fn shortlist(names: &[&str]) -> String {
    let mut v: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
    if names.len() > 8 {
        v.push(format!("… ({} more)", names.len() - 8));
    }
    v.join(", ")
}
