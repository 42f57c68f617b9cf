//! Family **prometheus**: Prometheus 2 (Debian's `prometheus`) on every host of a
//! `prometheus` service. Templates: `templates/prometheus/`. Per host:
//!
//! - **`/etc/prometheus/prometheus.yml`**: one scrape job per port that a flow from the
//!   service reaches ([`scrape`]), each target labelled `host`, `zone`, `service` and
//!   `role` (the host's roles), its path and scheme from `metrics.<port>` (this family's
//!   key on the scraped service); Prometheus itself; the Alertmanagers a flow reaches on
//!   their `http` port. Validated with `promtool check config` (which also checks the
//!   rule files), then a reload.
//! - **`/etc/prometheus/rules/medianest.yml`**: the baseline rules ([`rules`]) and the
//!   site's own (`rules`, PromQL checked at compile time), every alert with `severity`
//!   and a `runbook_url`; same validation and reload.
//! - **`/etc/default/prometheus`**: the retention and the listen address (the address
//!   the flows to the `http` port arrive at, as the host firewall opens it), read by
//!   Debian's unit at start, so a change restarts prometheus.service.
//!
//! And, for the docs family, each service's alerts ([`runbook_alerts`]): its runbook page
//! `generated/docs/runbooks/<service>.md`, where every `runbook_url` points, explains
//! what each means and where to look first.
//!
//! Checks: a service that exports metrics (a node exporter, a known exporter image, or
//! one writing `metrics`) that a Prometheus service cannot reach is a missing flow, and
//! so is an Alertmanager it cannot reach; the retention must cover the longest backup
//! window, so the backup-age alerts always have their samples.

pub mod keys;
pub mod probe;
pub mod rules;
pub mod scrape;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::{Diagnostic, Diagnostics};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::values::{Duration, PortSpec};
use crate::model::{HostId, ServiceId, ServiceKind, Site};
use rules::Group;
use scrape::{Exporter, Job};

/// The configuration file.
pub const CONF: &str = "/etc/prometheus/prometheus.yml";
/// The rules file (`rule_files` names it relative to [`CONF`]).
pub const RULES: &str = "/etc/prometheus/rules/medianest.yml";
/// The unit's environment file.
pub const DEFAULTS: &str = "/etc/default/prometheus";
/// The unit.
pub const UNIT: &str = "prometheus.service";
/// Where the runbook pages go in `generated/` (written by the docs family).
pub const RUNBOOKS: &str = "docs/runbooks";

/// The blackbox exporter's configuration.
pub const BLACKBOX: &str = "/etc/prometheus/blackbox.yml";
/// Its unit.
pub const BLACKBOX_UNIT: &str = "prometheus-blackbox-exporter.service";

/// The prometheus family.
pub struct Prometheus;

/// One blackbox module.
#[derive(Serialize)]
pub struct ModuleView {
    /// Module name.
    pub name: Src<String>,
    /// The hostname it sends.
    pub hostname: Src<String>,
}

/// Context of `prometheus/blackbox.yml.j2`.
#[derive(Serialize)]
pub struct BlackboxContext {
    /// The host.
    pub host: Src<String>,
    /// Modules, by hostname.
    pub modules: Vec<ModuleView>,
}

/// One target of a job, as `prometheus.yml` writes it.
#[derive(Serialize)]
pub struct TargetView {
    /// `address:port`.
    pub address: Src<String>,
    /// Labels.
    pub host: Src<String>,
    /// The zone of the interface the scrape arrives at.
    pub zone: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The host's roles, comma-separated (empty: none).
    pub role: Src<String>,
    /// The public hostname a probe fetches (probe jobs only).
    pub hostname: Option<Src<String>>,
}

/// How a probe job reaches its blackbox exporter.
#[derive(Serialize)]
pub struct ProbeView {
    /// The blackbox module.
    pub module: Src<String>,
    /// The exporter's `address:port`.
    pub exporter: Src<String>,
}

/// One scrape job.
#[derive(Serialize)]
pub struct JobView {
    /// Job name.
    pub name: Src<String>,
    /// Metrics path.
    pub path: Src<String>,
    /// Scheme.
    pub scheme: Src<String>,
    /// The CA the scrape trusts over HTTPS (MinIO's: the site's MinIO CA).
    pub ca_file: Option<&'static str>,
    /// Targets.
    pub targets: Vec<TargetView>,
    /// Set for a blackbox probe job: targets are URLs, scraped through the exporter.
    pub probe: Option<ProbeView>,
}

/// Context of `prometheus/prometheus.yml.j2`.
#[derive(Serialize)]
pub struct ConfContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// Scrape and evaluation interval.
    pub interval: Src<String>,
    /// Alertmanagers, `address:port`.
    pub alertmanagers: Vec<Src<String>>,
    /// Jobs, Prometheus's own first.
    pub jobs: Vec<JobView>,
}

/// Context of `prometheus/rules.yml.j2`.
#[derive(Serialize)]
pub struct RulesContext {
    /// The host.
    pub host: Src<String>,
    /// Rule groups.
    pub groups: Vec<Group>,
}

/// Context of `prometheus/default.j2`.
#[derive(Serialize)]
pub struct DefaultsContext {
    /// The host.
    pub host: Src<String>,
    /// `--storage.tsdb.retention.time`.
    pub retention: Src<String>,
    /// `--web.listen-address`.
    pub listen: Src<String>,
}

/// One alert of a runbook page.
#[derive(Serialize, Clone)]
pub struct RunbookAlert {
    /// Alert name.
    pub alert: String,
    /// Severity.
    pub severity: String,
    /// Summary template.
    pub summary: String,
    /// What it means (text of the baseline, traced to what brings the rule).
    pub description: Src<String>,
    /// PromQL, one per job it watches.
    pub exprs: Vec<Src<String>>,
}

/// The prometheus services this family configures (a known kind, at least one host).
pub fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    super::configured(site, ServiceKind::Prometheus)
}

/// The prometheus model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: std::sync::OnceLock<keys::Model> = std::sync::OnceLock::new();
    site.ext.get::<keys::Model>().unwrap_or_else(|| EMPTY.get_or_init(keys::Model::default))
}

/// The `http` port of a service of a built-in kind.
fn http_port(site: &Site, id: ServiceId) -> Option<PortSpec> {
    super::service_port(site, id, "http").map(|(p, _)| p)
}

/// Where Prometheus on `host` listens ([`super::listen_one`]).
fn listen(site: &Site, prom: ServiceId, host: HostId) -> Src<String> {
    let port = http_port(site, prom).unwrap_or(PortSpec { proto: crate::model::values::Proto::Tcp, port: 9090 });
    super::listen_one(site, host, port, &site.service(prom).loc)
}

/// The alert rules of Prometheus `prom` on a host, over its jobs and probes.
pub fn groups(site: &Site, prom: ServiceId, jobs: &[Job], probes: &[probe::Probe]) -> Vec<Group> {
    let m = model(site);
    let interval = m.scrape_interval(site, prom).value;
    let mut g = rules::baseline(site, jobs, interval);
    g.extend(rules::probes(site, probes, interval));
    g.extend(rules::custom(site, m.rules.get(&prom).map(Vec::as_slice).unwrap_or(&[])));
    rules::with_runbooks(&mut g, &m.runbooks(site, prom).value);
    g
}

/// A job as `prometheus.yml` writes it.
fn job_view(site: &Site, j: &Job) -> JobView {
    let svc = site.service(j.service);
    let scrape = model(site).scrape(site, j.service, &j.port_name);
    let targets = j
        .targets
        .iter()
        .map(|t| {
            let h = site.host(t.host);
            let iface = &h.interfaces[t.interface];
            let roles: Vec<&str> = h.roles.iter().map(|r| r.value.name()).collect();
            TargetView {
                address: Src::of(
                    super::socket_text(iface.address.value, j.port.port),
                    "scrape target (a flow)",
                    j.locs(site).chain([&iface.address.loc]),
                ),
                host: Src::at(h.name.clone(), "host", &h.loc),
                zone: Src::at(site.zone(iface.zone.value).name.clone(), "zone", &iface.zone.loc),
                service: Src::at(svc.name.clone(), "service", &svc.loc),
                role: Src::of(roles.join(","), "host roles", h.roles.iter().map(|r| &r.loc).chain([&h.loc])),
                hostname: None,
            }
        })
        .collect();
    JobView {
        name: Src::of(j.name.clone(), "scrape job (a flow)", j.locs(site)),
        path: Src::at(scrape.path.value, "metrics path", &scrape.path.loc),
        scheme: Src::at(scrape.scheme.value.to_string(), "metrics scheme", &scrape.scheme.loc),
        ca_file: (svc.kind.value == ServiceKind::Minio && scrape.scheme.value == "https")
            .then_some(super::minio::CA_FILE),
        targets,
        probe: None,
    }
}

/// A probe as `prometheus.yml` writes it: one target per edge host, the URL of its own
/// address, with the hostname in the labels (the module sends it as SNI and `Host`).
fn probe_view(site: &Site, p: &probe::Probe) -> JobView {
    let flows = || p.flows.iter().map(|&f| &site.flows[f].loc);
    let targets = p
        .targets
        .iter()
        .map(|&(svc, host, iface)| {
            let h = site.host(host);
            let i = &h.interfaces[iface];
            let s = site.service(svc);
            TargetView {
                address: Src::of(
                    format!("https://{}/", super::host_text(i.address.value)),
                    "probe target (a flow)",
                    flows().chain([&i.address.loc]),
                ),
                host: Src::at(h.name.clone(), "host", &h.loc),
                zone: Src::at(site.zone(i.zone.value).name.clone(), "zone", &i.zone.loc),
                service: Src::at(s.name.clone(), "service", &s.loc),
                role: Src::of(
                    h.roles.iter().map(|r| r.value.name()).collect::<Vec<_>>().join(","),
                    "host roles",
                    h.roles.iter().map(|r| &r.loc).chain([&h.loc]),
                ),
                hostname: Some(Src::of(p.hostname.clone(), "exposed hostname", &p.locs)),
            }
        })
        .collect();
    JobView {
        name: Src::of(probe::job_name(p), "probe of an exposed hostname", &p.locs),
        path: Src::of("/probe".into(), "blackbox exporter", &p.locs),
        scheme: Src::of("http".into(), "blackbox exporter", &p.locs),
        ca_file: None,
        targets,
        probe: Some(ProbeView {
            module: Src::of(probe::module(&p.hostname), "exposed hostname", &p.locs),
            exporter: Src::of(p.exporter.2.clone(), "blackbox exporter (a flow)", flows()),
        }),
    }
}

/// Lowers one Prometheus host.
fn lower_host(site: &Site, prom: ServiceId, host: HostId, out: &mut Lowering) {
    let svc = site.service(prom);
    let h = site.host(host);
    let m = model(site);
    let jobs = scrape::jobs(site, prom, host);
    let probes = probe::probes(site, &jobs);
    let listen = listen(site, prom, host);
    let own = JobView {
        name: Src::at(svc.name.clone(), "service", &svc.loc),
        path: Src::at("/metrics".into(), "Prometheus's own metrics", &svc.loc),
        scheme: Src::at("http".into(), "Prometheus's own metrics", &svc.loc),
        ca_file: None,
        targets: vec![TargetView {
            address: listen.clone(),
            host: Src::at(h.name.clone(), "host", &h.loc),
            zone: Src::at(
                h.interfaces.first().map(|i| site.zone(i.zone.value).name.clone()).unwrap_or_default(),
                "zone",
                &h.loc,
            ),
            service: Src::at(svc.name.clone(), "service", &svc.loc),
            role: Src::of(
                h.roles.iter().map(|r| r.value.name()).collect::<Vec<_>>().join(","),
                "host roles",
                h.roles.iter().map(|r| &r.loc).chain([&h.loc]),
            ),
            hostname: None,
        }],
        probe: None,
    };
    let alertmanagers = jobs
        .iter()
        .filter(|j| j.exporter == Exporter::Alertmanager && Some(j.port) == http_port(site, j.service))
        .flat_map(|j| job_view(site, j).targets.into_iter().map(|t| t.address))
        .collect();
    let interval = m.scrape_interval(site, prom);
    let ctx = ConfContext {
        host: Src::at(h.name.clone(), "host", &h.loc),
        service: Src::at(svc.name.clone(), "service", &svc.loc),
        interval: Src::at(interval.value.to_string(), "scrape_interval", &interval.loc),
        alertmanagers,
        jobs: std::iter::once(own)
            .chain(jobs.iter().map(|j| job_view(site, j)))
            .chain(probes.iter().map(|p| probe_view(site, p)))
            .collect(),
    };
    let validated = |target: &str, mode| {
        let mut meta = ArtifactMeta::host_file("prometheus", &h.name, target, mode, "root:root");
        if let Some(a) = meta.apply.as_mut() {
            a.validate = Some(Validator::Promtool);
            a.reload = Some(UNIT.into());
        }
        meta
    };
    out.add("prometheus/prometheus.yml.j2", &ctx, validated(CONF, 0o644), Some(svc.loc.clone()));
    let rules =
        RulesContext { host: Src::at(h.name.clone(), "host", &h.loc), groups: groups(site, prom, &jobs, &probes) };
    out.add("prometheus/rules.yml.j2", &rules, validated(RULES, 0o644), Some(svc.loc.clone()));
    let retention = m.retention(site, prom);
    let defaults = DefaultsContext {
        host: Src::at(h.name.clone(), "host", &h.loc),
        retention: Src::at(retention.value.to_string(), "retention", &retention.loc),
        listen,
    };
    let mut meta = ArtifactMeta::host_file("prometheus", &h.name, DEFAULTS, 0o644, "root:root");
    if let Some(a) = meta.apply.as_mut() {
        a.restart = Some(UNIT.into());
    }
    out.add("prometheus/default.j2", &defaults, meta, Some(svc.loc.clone()));
}

/// The alerts of every service, over every Prometheus host's rules, by service: what
/// the service's runbook page (written by the docs family at
/// `docs/runbooks/<service>.md`, where every `runbook_url` points) explains.
pub fn runbook_alerts(site: &Site) -> BTreeMap<ServiceId, Vec<RunbookAlert>> {
    let mut all = Vec::new();
    for prom in services(site).collect::<Vec<_>>() {
        for h in &site.service(prom).hosts {
            if !site.host(h.value).interfaces.is_empty() {
                let jobs = scrape::jobs(site, prom, h.value);
                all.extend(groups(site, prom, &jobs, &probe::probes(site, &jobs)));
            }
        }
    }
    let mut pages: BTreeMap<String, BTreeMap<String, RunbookAlert>> = BTreeMap::new();
    for r in all.into_iter().flat_map(|g| g.rules) {
        let Some(alert) = r.alert.clone() else { continue };
        for service in &r.services {
            let page = pages.entry(service.clone()).or_default();
            let a = page.entry(alert.clone()).or_insert_with(|| RunbookAlert {
                alert: alert.clone(),
                severity: r.severity.clone().unwrap_or_default(),
                summary: r.summary.clone().unwrap_or_default(),
                description: r
                    .expr
                    .clone()
                    .map(|_| r.description.clone().unwrap_or_else(|| "A rule of the site (see its `rules`).".into())),
                exprs: Vec::new(),
            });
            if !a.exprs.iter().any(|e| e.value == r.expr.value) {
                a.exprs.push(r.expr.clone());
            }
        }
    }
    pages
        .into_iter()
        .filter_map(|(service, alerts)| {
            let id = crate::resolve::cx::Names::id(site, crate::resolve::cx::RefTo::Service, &service)?;
            Some((ServiceId(id), alerts.into_values().collect()))
        })
        .collect()
}

/// `/etc/prometheus/blackbox.yml` on every host of a blackbox exporter.
fn lower_blackbox(site: &Site, out: &mut Lowering) {
    let names = probe::hostnames(site);
    for (_, s) in super::edge::services_of(site, ServiceKind::BlackboxExporter) {
        for h in &s.hosts {
            let host = site.host(h.value);
            if host.interfaces.is_empty() {
                continue;
            }
            let ctx = BlackboxContext {
                host: Src::at(host.name.clone(), "host", &host.loc),
                modules: names
                    .iter()
                    .map(|(n, locs)| ModuleView {
                        name: Src::of(probe::module(n), "exposed hostname", locs),
                        hostname: Src::of(n.clone(), "exposed hostname", locs),
                    })
                    .collect(),
            };
            let mut meta = ArtifactMeta::host_file("prometheus", &host.name, BLACKBOX, 0o644, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.validate = Some(Validator::Blackbox);
                a.reload = Some(BLACKBOX_UNIT.into());
            }
            out.add("prometheus/blackbox.yml.j2", &ctx, meta, Some(s.loc.clone()));
        }
    }
}

/// The ports on which a service exports metrics by declaration: the first port of a
/// node exporter or a known exporter image, and every port written in `metrics`.
fn exported_ports(site: &Site, id: ServiceId) -> Vec<(PortSpec, &crate::diag::Loc)> {
    let svc = site.service(id);
    let m = model(site);
    let mut v: Vec<(PortSpec, &crate::diag::Loc)> = m
        .metrics
        .iter()
        .filter(|((s, _), _)| *s == id)
        .filter_map(|((_, port), sc)| svc.port(port).map(|p| (p.spec, &sc.path.loc)))
        .collect();
    if v.is_empty()
        && !matches!(scrape::exporter(site, id), Exporter::Other | Exporter::Haproxy | Exporter::Alertmanager)
    {
        v.extend(svc.ports.first().map(|p| (p.spec, p.loc.as_ref().unwrap_or(&svc.loc))));
    }
    v
}

impl Family for Prometheus {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::PrometheusFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for prom in services(site).collect::<Vec<_>>() {
            for h in &site.service(prom).hosts {
                if !site.host(h.value).interfaces.is_empty() {
                    lower_host(site, prom, h.value, out);
                }
            }
        }
        lower_blackbox(site, out);
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let m = model(site);
        let mut v = Vec::new();
        for prom in services(site) {
            let svc = site.service(prom);
            let fact = |category, subject: String, field, value: String| Fact {
                category,
                subject,
                field,
                value: value.into(),
            };
            v.push(fact("service", svc.name.clone(), "retention", m.retention(site, prom).value.to_string()));
            v.push(fact(
                "service",
                svc.name.clone(),
                "scrape_interval",
                m.scrape_interval(site, prom).value.to_string(),
            ));
            v.push(fact("service", svc.name.clone(), "runbooks", m.runbooks(site, prom).value));
            let Some(first) = svc.hosts.first() else { continue };
            let jobs = scrape::jobs(site, prom, first.value);
            for j in &jobs {
                let view = job_view(site, j);
                let targets: Vec<String> = view.targets.iter().map(|t| t.address.value.clone()).collect();
                let subject = format!("{} {}", svc.name, j.name);
                v.push(fact("scrape job", subject.clone(), "targets", targets.join(", ")));
                v.push(fact("scrape job", subject, "path", format!("{}://…{}", view.scheme.value, view.path.value)));
            }
            for r in groups(site, prom, &jobs, &probe::probes(site, &jobs)).iter().flat_map(|g| g.rules.iter()) {
                let Some(alert) = &r.alert else { continue };
                let subject = format!("{alert} ({})", r.services.join(", "));
                let value = format!(
                    "{} for {}: {}",
                    r.severity.as_deref().unwrap_or(""),
                    r.for_.as_deref().unwrap_or("0s"),
                    r.expr.value
                );
                v.push(fact("alert", subject, "rule", value));
            }
        }
        v
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let m = model(site);
        let plan = site.flow_plan();
        let exporters: Vec<(ServiceId, Vec<(PortSpec, &crate::diag::Loc)>)> = (0..site.services.len())
            .map(ServiceId)
            .map(|id| (id, exported_ports(site, id)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        for prom in services(site) {
            let p = site.service(prom);
            // Every declared exporter is scraped from every Prometheus host.
            for (id, ports) in &exporters {
                let t = site.service(*id);
                for &(port, loc) in ports {
                    let missed = t
                        .hosts
                        .iter()
                        .any(|th| p.hosts.iter().any(|ph| !plan.allows(site, Some(ph.value), Some(th.value), port)));
                    if missed {
                        super::edge::missing_flow(
                            diags,
                            loc,
                            &format!("service:{}", p.name),
                            &format!("service:{}", t.name),
                            port,
                            &format!("Prometheus scrapes the {} metrics", t.name),
                            &format!("`{}` exports metrics on {port} that `{}` should scrape", t.name, p.name),
                        );
                    }
                }
            }
            // Every Alertmanager receives the alerts.
            for (i, a) in site.services.iter().enumerate() {
                if !(a.declared.kind_known && a.kind.value == ServiceKind::Alertmanager) {
                    continue;
                }
                let Some(port) = http_port(site, ServiceId(i)) else { continue };
                let reached = a
                    .hosts
                    .iter()
                    .all(|ah| p.hosts.iter().all(|ph| plan.allows(site, Some(ph.value), Some(ah.value), port)))
                    && site.flows.iter().any(|f| {
                        f.from.value == crate::model::Endpoint::Service(prom)
                            && f.to.value == crate::model::Endpoint::Service(ServiceId(i))
                            && f.ports.iter().any(|x| x.value == port)
                    });
                if !reached {
                    super::edge::missing_flow(
                        diags,
                        &p.loc,
                        &format!("service:{}", p.name),
                        &format!("service:{}", a.name),
                        port,
                        "Prometheus sends firing alerts to Alertmanager",
                        &format!("`{}` sends its alerts to `{}`", p.name, a.name),
                    );
                }
            }
            // The retention covers the longest backup window the alerts read.
            let retention = m.retention(site, prom);
            let rpo = &site.recovery.rpo;
            let (window, wloc) = site
                .backups
                .iter()
                .map(|b| {
                    let w = if b.continuous {
                        b.every.value.0.saturating_add(rpo.value.0)
                    } else {
                        rpo.value.0.max(b.every.value.0)
                    };
                    (w, &b.every.loc)
                })
                .chain([(rpo.value.0, &rpo.loc)])
                .max_by_key(|(w, _)| *w)
                .expect("the RPO is always there");
            if retention.value.0 < window {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` keeps {} of samples, less than the {} a backup-age alert looks back",
                            p.name,
                            retention.value,
                            Duration(window)
                        ),
                        retention.loc.clone(),
                    )
                    .also(wloc.clone(), "this backup window")
                    .help(format!("set `retention` to at least `{}`", Duration(window))),
                );
            }
            // Site rules do not reuse an alert name.
            let Some(first) = p.hosts.first().filter(|_| m.rules.contains_key(&prom)) else { continue };
            let base =
                rules::baseline(site, &scrape::jobs(site, prom, first.value), m.scrape_interval(site, prom).value);
            let taken: std::collections::BTreeSet<&str> = rules::names(&base).collect();
            let mut seen: BTreeMap<&str, &crate::diag::Loc> = BTreeMap::new();
            for r in m.rules.get(&prom).into_iter().flatten() {
                if taken.contains(r.alert.value.as_str()) {
                    keys::duplicate_alert(diags, r, None);
                } else if let Some(o) = seen.get(r.alert.value.as_str()) {
                    keys::duplicate_alert(diags, r, Some(o));
                } else {
                    seen.insert(&r.alert.value, &r.alert.loc);
                }
            }
        }
        // A blackbox exporter probes the public hostnames through the edge: it needs 443.
        if !probe::hostnames(site).is_empty() {
            let edges: Vec<HostId> = super::edge::services_of(site, ServiceKind::Haproxy)
                .flat_map(|(_, s)| s.hosts.iter().map(|h| h.value))
                .collect();
            for (_, b) in super::edge::services_of(site, ServiceKind::BlackboxExporter) {
                for bh in &b.hosts {
                    if let Some(e) = edges.iter().find(|e| !plan.allows(site, Some(bh.value), Some(**e), probe::HTTPS))
                    {
                        let haproxy = super::edge::services_of(site, ServiceKind::Haproxy)
                            .find(|(_, s)| s.hosts.iter().any(|h| h.value == *e))
                            .map(|(_, s)| s.name.clone())
                            .unwrap_or_default();
                        super::edge::missing_flow(
                            diags,
                            &b.loc,
                            &format!("service:{}", b.name),
                            &format!("service:{haproxy}"),
                            probe::HTTPS,
                            "the blackbox exporter probes every public hostname through each edge host",
                            &format!("`{}` probes the public hostnames through `{}`", b.name, site.host(*e).name),
                        );
                    }
                }
            }
        }
        // `metrics` on a service no Prometheus scrapes at all says nothing.
        if services(site).next().is_none() {
            for (id, loc) in &m.declared_targets {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` says how its metrics are scraped, but the site has no Prometheus service",
                            site.service(*id).name
                        ),
                        loc.clone(),
                    )
                    .help("add a `kind = \"prometheus\"` service, or remove `metrics`"),
                );
            }
        }
    }
}
