//! Family **grafana**: the provisioning of every Grafana container (a service whose image
//! is `grafana/grafana`). Templates: `templates/grafana/`. Per Grafana host, under
//! `/etc/medianest/grafana/`, which the container mounts read-only (`binds` in the site:
//! `provisioning` at `/etc/grafana/provisioning`, `dashboards` at [`MOUNTED`]):
//!
//! - `provisioning/datasources/medianest.yaml`: every Prometheus a flow from the Grafana
//!   service reaches on its `http` port, at the address the flow arrives at (the first
//!   is the default);
//! - `provisioning/dashboards/medianest.yaml`: the file provider, not editable in the UI;
//! - `dashboards/<uid>.json`, built from what the site runs: **fleet** (per host: the
//!   commit it applied, time since its last verified apply, drifted files, the agent's
//!   last result), **services** (up, scrape time, container restarts and CPU, per
//!   service), **edge** (HAProxy backends, request and 5xx rates, the probes and their
//!   certificates' days left) when there is an edge, **data** (replication lag,
//!   connections, Redis memory, each backup's age against the RPO) when there is a data
//!   tier.
//!
//! Grafana re-reads the dashboards every 30 s; data sources at its start. No validator:
//! Grafana is not packaged in Debian; the tests check the JSON's structure and send every
//! expression to a real Prometheus.

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering};
use crate::artifact::ArtifactMeta;
use crate::diag::Loc;
use crate::model::flows::{Peer, arrival};
use crate::model::{Endpoint, HostId, ServiceId, ServiceKind, Site};

/// Where the files go on the host.
pub const ROOT: &str = "/etc/medianest/grafana";
/// Where the container sees the dashboards.
pub const MOUNTED: &str = "/var/lib/medianest-dashboards";
/// Grafana's image repositories.
const IMAGES: &[&str] = &["grafana/grafana", "docker.io/grafana/grafana", "grafana/grafana-oss"];

/// The grafana family.
pub struct Grafana;

/// A data source.
#[derive(Serialize)]
pub struct Datasource {
    /// Name.
    pub name: Src<String>,
    /// uid, what dashboards name.
    pub uid: Src<String>,
    /// URL.
    pub url: Src<String>,
    /// Its scrape interval.
    pub interval: Src<String>,
}

/// Context of `grafana/datasource.yaml.j2`.
#[derive(Serialize)]
pub struct DatasourceContext {
    /// The host.
    pub host: Src<String>,
    /// The Grafana service.
    pub service: Src<String>,
    /// Data sources.
    pub datasources: Vec<Datasource>,
}

/// Context of `grafana/dashboards.yaml.j2`.
#[derive(Serialize)]
pub struct ProviderContext {
    /// The host.
    pub host: Src<String>,
    /// Where the container reads the dashboards.
    pub path: &'static str,
}

/// One query of a panel.
#[derive(Serialize, Clone)]
pub struct Target {
    /// Grafana's refId.
    pub r#ref: String,
    /// PromQL.
    pub expr: Src<String>,
    /// Legend.
    pub legend: String,
}

/// One panel.
#[derive(Serialize, Clone)]
pub struct Panel {
    /// `timeseries`, `stat` or `table`.
    pub kind: &'static str,
    /// Title.
    pub title: String,
    /// What it shows.
    pub description: String,
    /// Unit.
    pub unit: &'static str,
    /// A red threshold.
    pub threshold: Option<f64>,
    /// Queries.
    pub targets: Vec<Target>,
    /// Layout.
    pub width: u32,
    /// Layout.
    pub x: u32,
    /// Layout.
    pub y: u32,
}

/// A template variable.
#[derive(Serialize, Clone)]
pub struct Variable {
    /// Name.
    pub name: &'static str,
    /// Label.
    pub label: &'static str,
    /// Query.
    pub query: &'static str,
}

/// Context of `grafana/dashboard.json.j2`.
#[derive(Serialize)]
pub struct DashboardContext {
    /// uid.
    pub uid: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The data source's uid.
    pub datasource: Src<String>,
    /// Variables.
    pub variables: Vec<Variable>,
    /// Panels.
    pub panels: Vec<Panel>,
}

/// The Grafana services.
fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    site.services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.image.as_ref().is_some_and(|i| IMAGES.contains(&i.value.repository.as_str())))
        .map(|(i, _)| ServiceId(i))
}

/// The Prometheus data sources of Grafana on `host`: each host of a Prometheus service a
/// flow from `grafana` reaches on its `http` port.
fn datasources(site: &Site, grafana: ServiceId, host: HostId) -> Vec<Datasource> {
    let mut out = Vec::new();
    for f in &site.flows {
        let (Endpoint::Service(from), Endpoint::Service(to)) = (f.from.value, f.to.value) else { continue };
        let p = site.service(to);
        if from != grafana || !(p.declared.kind_known && p.kind.value == ServiceKind::Prometheus) {
            continue;
        }
        let Some((port, _)) = super::service_port(site, to, "http") else { continue };
        if !f.ports.iter().any(|x| x.value == port) {
            continue;
        }
        let interval = super::prometheus::model(site).scrape_interval(site, to);
        for ph in &p.hosts {
            let h = site.host(ph.value);
            if h.interfaces.is_empty() {
                continue;
            }
            let i = &h.interfaces[arrival(site, ph.value, Peer::Host(host))];
            let locs = [&f.loc, &i.address.loc];
            out.push(Datasource {
                name: Src::of(format!("Prometheus ({})", h.name), "prometheus host (a flow)", locs),
                uid: Src::of(format!("prometheus-{}", h.name), "prometheus host (a flow)", locs),
                url: Src::of(
                    format!("http://{}", super::socket_text(i.address.value, port.port)),
                    "prometheus address (a flow)",
                    locs,
                ),
                interval: Src::at(interval.value.to_string(), "scrape_interval", &interval.loc),
            });
        }
    }
    out
}

/// A query.
fn q(refid: &str, expr: String, legend: &str, locs: &[&Loc]) -> Target {
    Target { r#ref: refid.into(), expr: Src::of(expr, "dashboard query", locs.iter().copied()), legend: legend.into() }
}

/// A panel laid out in a two-column grid.
fn panel(
    n: usize,
    kind: &'static str,
    title: &str,
    description: &str,
    unit: &'static str,
    threshold: Option<f64>,
    targets: Vec<Target>,
) -> Panel {
    Panel {
        kind,
        title: title.into(),
        description: description.into(),
        unit,
        threshold,
        targets,
        width: 12,
        x: (n as u32 % 2) * 12,
        y: (n as u32 / 2) * 8,
    }
}

/// The dashboards of the site: fleet and services always, edge and data when they exist.
pub fn dashboards(site: &Site, datasource: &Src<String>, loc: &Loc) -> Vec<DashboardContext> {
    let l = [loc];
    let mut out = Vec::new();
    let dash =
        |uid: &str, title: &str, description: &str, variables: Vec<Variable>, panels: Vec<Panel>| DashboardContext {
            uid: uid.into(),
            title: title.into(),
            description: description.into(),
            datasource: datasource.clone(),
            variables,
            panels,
        };
    out.push(dash(
        "medianest-fleet",
        "MediaNest / Fleet",
        "Every host: the commit it runs, when it last applied a verified commit, drift and the agent's result.",
        Vec::new(),
        vec![
            panel(
                0,
                "table",
                "Applied commit",
                "The commit each host's pull agent applied last.",
                "none",
                None,
                vec![q("A", "max by (host, commit) (medianest_pull_applied_commit_info)".into(), "{{host}}", &l)],
            ),
            panel(
                1,
                "timeseries",
                "Since the last verified apply",
                "Seconds since each host last ended a run on a verified commit; AgentStale fires at three intervals.",
                "s",
                None,
                vec![q(
                    "A",
                    "time() - max by (host) (medianest_pull_last_success_timestamp_seconds)".into(),
                    "{{host}}",
                    &l,
                )],
            ),
            panel(
                2,
                "timeseries",
                "Drifted files",
                "Managed files changed on the host since the last apply.",
                "none",
                Some(1.0),
                vec![q("A", "max by (host) (medianest_pull_drift_files)".into(), "{{host}}", &l)],
            ),
            panel(
                3,
                "timeseries",
                "Agent result",
                "0 applied, 1 refused, 3 rolled back, 5 could not fetch.",
                "none",
                Some(1.0),
                vec![q("A", "max by (host) (medianest_pull_result)".into(), "{{host}}", &l)],
            ),
            panel(
                4,
                "stat",
                "Hosts up",
                "Node exporters answering.",
                "none",
                None,
                vec![q("A", "sum(up{job=~\".*node-exporter.*\"})".into(), "up", &l)],
            ),
        ],
    ));
    out.push(dash(
        "medianest-services",
        "MediaNest / Services",
        "Each service: whether its targets answer, how long a scrape takes, its containers' restarts and CPU.",
        vec![Variable { name: "service", label: "Service", query: "label_values(up, service)" }],
        vec![
            panel(
                0,
                "timeseries",
                "Up",
                "1 while the target answers Prometheus.",
                "none",
                None,
                vec![q("A", "up{service=~\"$service\"}".into(), "{{service}} on {{host}}", &l)],
            ),
            panel(
                1,
                "timeseries",
                "Scrape duration",
                "Time to read the target's metrics; slow targets are often overloaded.",
                "s",
                None,
                vec![q("A", "scrape_duration_seconds{service=~\"$service\"}".into(), "{{service}} on {{host}}", &l)],
            ),
            panel(
                2,
                "timeseries",
                "Container restarts (1 h)",
                "Starts of each container in the last hour, from cAdvisor.",
                "none",
                Some(3.0),
                vec![q(
                    "A",
                    "changes(container_start_time_seconds{name=~\".*($service).*\"}[1h])".into(),
                    "{{name}} on {{host}}",
                    &l,
                )],
            ),
            panel(
                3,
                "timeseries",
                "Container CPU",
                "CPU seconds per second used by each container.",
                "none",
                None,
                vec![q(
                    "A",
                    "sum by (host, name) (rate(container_cpu_usage_seconds_total{name=~\".*($service).*\"}[5m]))"
                        .into(),
                    "{{name}} on {{host}}",
                    &l,
                )],
            ),
        ],
    ));
    let has = |k: ServiceKind| {
        site.services.iter().any(|s| s.declared.kind_known && s.kind.value == k && !s.hosts.is_empty())
    };
    if has(ServiceKind::Haproxy) {
        out.push(dash(
            "medianest-edge",
            "MediaNest / Edge",
            "HAProxy's backends and responses, and the public hostnames as the blackbox probes see them.",
            Vec::new(),
            vec![
                panel(
                    0,
                    "timeseries",
                    "Active servers per backend",
                    "Servers passing their health check; 0 is HaproxyBackendDown.",
                    "none",
                    None,
                    vec![q(
                        "A",
                        "sum by (host, proxy) (haproxy_backend_active_servers)".into(),
                        "{{proxy}} on {{host}}",
                        &l,
                    )],
                ),
                panel(
                    1,
                    "timeseries",
                    "Requests",
                    "HTTP responses per second by backend.",
                    "reqps",
                    None,
                    vec![q(
                        "A",
                        "sum by (host, proxy) (rate(haproxy_backend_http_responses_total[5m]))".into(),
                        "{{proxy}} on {{host}}",
                        &l,
                    )],
                ),
                panel(
                    2,
                    "timeseries",
                    "5xx ratio",
                    "Share of server errors; HaproxyHigh5xxRatio fires above 5 %.",
                    "percentunit",
                    Some(0.05),
                    vec![q("A", "proxy:haproxy_http_5xx:ratio_rate5m".into(), "{{proxy}} on {{host}}", &l)],
                ),
                panel(
                    3,
                    "timeseries",
                    "Probes",
                    "1 while https://<hostname>/ answers 2xx through the edge host.",
                    "none",
                    None,
                    vec![q("A", "probe_success{job=~\"probe-.*\"}".into(), "{{hostname}} via {{host}}", &l)],
                ),
                panel(
                    4,
                    "timeseries",
                    "Certificate days left",
                    "Days until each hostname's certificate expires; CertificateExpiring warns at 14.",
                    "d",
                    Some(14.0),
                    vec![q(
                        "A",
                        "(probe_ssl_earliest_cert_expiry{job=~\"probe-.*\"} - time()) / 86400".into(),
                        "{{hostname}} via {{host}}",
                        &l,
                    )],
                ),
            ],
        ));
    }
    if has(ServiceKind::Postgres) || has(ServiceKind::Redis) || !site.backups.is_empty() {
        let rpo = site.recovery.rpo.value.0 as f64;
        let rl = [loc, &site.recovery.rpo.loc];
        out.push(dash(
            "medianest-data",
            "MediaNest / Data",
            "PostgreSQL replication and connections, Redis memory, and each backup's age against the recovery point objective.",
            Vec::new(),
            vec![
                panel(0, "timeseries", "Replication lag", "Seconds the replica replays behind its primary; beyond the RPO, failing over loses more than allowed.", "s", Some(rpo), vec![q("A", "max by (host) (pg_replication_lag_seconds)".into(), "{{host}}", &rl)]),
                panel(1, "timeseries", "Connections", "Server connections by state.", "none", None, vec![q("A", "sum by (host, state) (pg_stat_activity_count)".into(), "{{state}} on {{host}}", &l)]),
                panel(2, "timeseries", "Redis memory", "Used memory against maxmemory; at 1, writes fail.", "percentunit", Some(0.9), vec![q("A", "redis_memory_used_bytes / (redis_memory_max_bytes > 0)".into(), "{{host}}", &l)]),
                panel(3, "timeseries", "Backup age", "Seconds since each policy's last successful backup; the red line is the RPO.", "s", Some(rpo), vec![q("A", "time() - max by (policy) (medianest_backup_last_success_timestamp_seconds)".into(), "{{policy}}", &rl)]),
            ],
        ));
    }
    out
}

impl Family for Grafana {
    fn name(&self) -> &'static str {
        "grafana"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for g in services(site).collect::<Vec<_>>() {
            let svc = site.service(g);
            for h in &svc.hosts {
                let host = site.host(h.value);
                let sources = datasources(site, g, h.value);
                let Some(first) = sources.first() else { continue };
                let default = first.uid.clone();
                let hs = Src::at(host.name.clone(), "host", &host.loc);
                let file = |rel: &str| {
                    ArtifactMeta::host_file("grafana", &host.name, &format!("{ROOT}/{rel}"), 0o644, "root:root")
                };
                let ctx = DatasourceContext {
                    host: hs.clone(),
                    service: Src::at(svc.name.clone(), "service", &svc.loc),
                    datasources: sources,
                };
                out.add(
                    "grafana/datasource.yaml.j2",
                    &ctx,
                    file("provisioning/datasources/medianest.yaml"),
                    Some(svc.loc.clone()),
                );
                out.add(
                    "grafana/dashboards.yaml.j2",
                    &ProviderContext { host: hs, path: MOUNTED },
                    file("provisioning/dashboards/medianest.yaml"),
                    Some(svc.loc.clone()),
                );
                for d in dashboards(site, &default, &svc.loc) {
                    let target = format!("dashboards/{}.json", d.uid);
                    out.add("grafana/dashboard.json.j2", &d, file(&target), Some(svc.loc.clone()));
                }
            }
        }
    }
}
