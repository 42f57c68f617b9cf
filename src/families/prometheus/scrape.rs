//! The scrape jobs of a Prometheus host, read from the flows: a flow from a Prometheus
//! service to another service is a scrape of each of its ports, on every host of that
//! service, at the address the connection arrives at. So a target exists exactly when
//! the host firewalls, pfSense and the flow matrix let the scrape through, and a flow
//! removed takes its job away in the same change.

use std::collections::BTreeMap;

use crate::diag::Loc;
use crate::model::flows::{Peer, arrival};
use crate::model::values::{PortSpec, Proto};
use crate::model::{Endpoint, HostId, ServiceId, ServiceKind, Site};

/// What a target exports, for the baseline rules that read its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exporter {
    /// Prometheus node exporter: the host itself.
    Node,
    /// cAdvisor: containers.
    Cadvisor,
    /// postgres_exporter.
    Postgres,
    /// redis_exporter.
    Redis,
    /// nginx-prometheus-exporter.
    Nginx,
    /// HAProxy's built-in exporter on its stats port.
    Haproxy,
    /// Alertmanager's own metrics.
    Alertmanager,
    /// The blackbox exporter: its own metrics (its probes are jobs of their own).
    Blackbox,
    /// Anything else: only `up` is known.
    Other,
}

/// Images whose metrics the baseline rules know, by repository.
const KNOWN_IMAGES: &[(&str, Exporter)] = &[
    ("gcr.io/cadvisor/cadvisor", Exporter::Cadvisor),
    ("prometheuscommunity/postgres-exporter", Exporter::Postgres),
    ("quay.io/prometheuscommunity/postgres-exporter", Exporter::Postgres),
    ("oliver006/redis_exporter", Exporter::Redis),
    ("nginx/nginx-prometheus-exporter", Exporter::Nginx),
];

/// What a service exports.
pub fn exporter(site: &Site, id: ServiceId) -> Exporter {
    let s = site.service(id);
    match s.kind.value {
        ServiceKind::NodeExporter => Exporter::Node,
        ServiceKind::Haproxy => Exporter::Haproxy,
        ServiceKind::Alertmanager => Exporter::Alertmanager,
        ServiceKind::BlackboxExporter => Exporter::Blackbox,
        _ => s
            .image
            .as_ref()
            .and_then(|i| KNOWN_IMAGES.iter().find(|(r, _)| *r == i.value.repository))
            .map(|(_, e)| *e)
            .unwrap_or(Exporter::Other),
    }
}

/// One scraped endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host.
    pub host: HostId,
    /// Index of its interface the scrape arrives at.
    pub interface: usize,
}

/// One scrape job: a port of a service.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job name: the service, with `-<port>` when several of its ports are scraped.
    pub name: String,
    /// The scraped service.
    pub service: ServiceId,
    /// Its port's name.
    pub port_name: String,
    /// The port.
    pub port: PortSpec,
    /// Targets, by host.
    pub targets: Vec<Target>,
    /// The flows it comes from.
    pub flows: Vec<usize>,
    /// What the service exports.
    pub exporter: Exporter,
}

impl Job {
    /// Where the job is decided: its flows.
    pub fn locs<'a>(&self, site: &'a Site) -> impl Iterator<Item = &'a Loc> + use<'a, '_> {
        self.flows.iter().map(move |&f| &site.flows[f].loc)
    }
}

/// The jobs of Prometheus service `prom` on its host `on`, sorted by name.
pub fn jobs(site: &Site, prom: ServiceId, on: HostId) -> Vec<Job> {
    let mut by: BTreeMap<(ServiceId, String), Job> = BTreeMap::new();
    for (i, f) in site.flows.iter().enumerate() {
        let (Endpoint::Service(from), Endpoint::Service(to)) = (f.from.value, f.to.value) else { continue };
        if from != prom || to == prom {
            continue;
        }
        let svc = site.service(to);
        for p in f.ports.iter().map(|p| p.value).filter(|p| p.proto == Proto::Tcp) {
            let port_name =
                svc.ports.iter().find(|x| x.spec == p).map(|x| x.name.clone()).unwrap_or_else(|| p.port.to_string());
            let job = by.entry((to, port_name.clone())).or_insert_with(|| Job {
                name: String::new(),
                service: to,
                port_name,
                port: p,
                targets: svc
                    .hosts
                    .iter()
                    .filter(|h| !site.host(h.value).interfaces.is_empty())
                    .map(|h| Target { host: h.value, interface: arrival(site, h.value, Peer::Host(on)) })
                    .collect(),
                flows: Vec::new(),
                exporter: exporter(site, to),
            });
            if !job.flows.contains(&i) {
                job.flows.push(i);
            }
        }
    }
    let mut ports_of: BTreeMap<ServiceId, usize> = BTreeMap::new();
    for (s, _) in by.keys() {
        *ports_of.entry(*s).or_default() += 1;
    }
    let mut out: Vec<Job> = by
        .into_values()
        .map(|mut j| {
            let svc = &site.service(j.service).name;
            j.name = if ports_of[&j.service] > 1 { format!("{svc}-{}", j.port_name) } else { svc.clone() };
            j
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
