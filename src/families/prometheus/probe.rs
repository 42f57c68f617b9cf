//! Blackbox probes: every public hostname the site exposes, fetched over HTTPS through
//! each edge host, from a `blackbox-exporter` service that Prometheus scrapes. What a
//! user would see: the TLS handshake with the hostname's certificate (its expiry is a
//! metric), HAProxy, Nginx and the application behind `/`.
//!
//! Each probe goes to an HAProxy host's own address with the hostname as SNI and `Host`
//! (one blackbox module per hostname), so no DNS view is needed and one edge host that
//! fails is seen even while the floating address hides it from users.

use std::collections::BTreeSet;

use crate::diag::Loc;
use crate::model::flows::{Peer, arrival};
use crate::model::values::{PortSpec, Proto};
use crate::model::{HostId, ServiceId, ServiceKind, Site};

use super::scrape::{Exporter, Job};

/// The HTTPS port probes connect to.
pub const HTTPS: PortSpec = PortSpec { proto: Proto::Tcp, port: 443 };

/// One probed hostname.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The hostname.
    pub hostname: String,
    /// Where it is exposed.
    pub locs: Vec<Loc>,
    /// The blackbox exporter that probes it: its service, host and `address:port`.
    pub exporter: (ServiceId, HostId, String),
    /// The edge hosts probed (HAProxy's), with the address the probe arrives at.
    pub targets: Vec<(ServiceId, HostId, usize)>,
    /// The flows the probe and its scrape rely on.
    pub flows: Vec<usize>,
}

/// The blackbox module of a hostname.
pub fn module(hostname: &str) -> String {
    format!("https-{hostname}")
}

/// Every hostname the site exposes, with where.
pub fn hostnames(site: &Site) -> Vec<(String, Vec<Loc>)> {
    let mut by: std::collections::BTreeMap<String, Vec<Loc>> = Default::default();
    for s in &site.services {
        for e in &s.expose {
            by.entry(e.hostname.value.clone()).or_default().push(e.hostname.loc.clone());
        }
    }
    by.into_iter().collect()
}

/// The probes of one Prometheus host, through the blackbox exporters it scrapes.
pub fn probes(site: &Site, jobs: &[Job]) -> Vec<Probe> {
    let plan = site.flow_plan();
    let names = hostnames(site);
    let mut out = Vec::new();
    for j in jobs.iter().filter(|j| j.exporter == Exporter::Blackbox) {
        let Some(t) = j.targets.first() else { continue };
        let bb_host = t.host;
        let addr = crate::families::socket_text(site.host(t.host).interfaces[t.interface].address.value, j.port.port);
        let mut targets = Vec::new();
        let mut flows: BTreeSet<usize> = j.flows.iter().copied().collect();
        for (id, s) in super::super::edge::services_of(site, ServiceKind::Haproxy) {
            for h in &s.hosts {
                let found: Vec<usize> =
                    plan.allowing(site, Some(bb_host), Some(h.value), HTTPS).map(|g| g.flow).collect();
                if found.is_empty() || site.host(h.value).interfaces.is_empty() {
                    continue;
                }
                flows.extend(found.into_iter().filter(|f| *f != usize::MAX));
                targets.push((id, h.value, arrival(site, h.value, Peer::Host(bb_host))));
            }
        }
        if targets.is_empty() {
            continue;
        }
        for (hostname, locs) in &names {
            out.push(Probe {
                hostname: hostname.clone(),
                locs: locs.clone(),
                exporter: (j.service, bb_host, addr.clone()),
                targets: targets.clone(),
                flows: flows.iter().copied().collect(),
            });
        }
    }
    out
}

/// The job name of a probe.
pub fn job_name(p: &Probe) -> String {
    format!("probe-{}", p.hostname)
}
