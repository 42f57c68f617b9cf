//! Family **edge**: what the edge families (haproxy, nginx, keepalived) share. It owns
//! the edge's keys ([`keys`]: WAF mode, certificate, rate limit and body size of each
//! exposure, a service's balance algorithm, `[certificates.<name>]`) and renders no file
//! itself. Here: the public routes derived from the services' `expose` entries, where
//! each instance of a service is reached, and whether the flows let one host reach
//! another. Nothing about a service is written twice in the site: hostnames, paths,
//! ports, health checks and hosts all come from the service itself.

pub mod keys;

use std::net::IpAddr;

use std::any::Any;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::{Fact, Val, exposure_subject};
use crate::model::values::PortSpec;
use crate::model::{At, Expose, HostId, Service, ServiceId, ServiceKind, Site};
pub use keys::{Certificate, Edge, ExposeEdge, edge};

/// The edge family: keys and shared routing, no files of its own.
pub struct EdgeFamily;

impl Family for EdgeFamily {
    fn name(&self) -> &'static str {
        "edge"
    }
    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::EdgeFile>())
    }
    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }
    fn lower(&self, _site: &Site, _out: &mut Lowering) {}

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let m = edge(site);
        let mut out = Vec::new();
        for (i, s) in site.services.iter().enumerate() {
            let id = ServiceId(i);
            out.push(Fact {
                category: "service",
                subject: s.name.clone(),
                field: "balance",
                value: m.balance(id).name().to_string().into(),
            });
            for e in &s.expose {
                let x = m.of(id, e);
                let subject = exposure_subject(site, id, e);
                let fact = |field, value: Val| Fact { category: "exposure", subject: subject.clone(), field, value };
                out.push(fact("waf", x.waf.name().to_string().into()));
                out.push(fact("tls", x.tls.as_ref().map(|t| t.value.clone()).unwrap_or_default().into()));
                out.push(fact(
                    "rate_limit",
                    x.rate_limit.map(|l| format!("{} burst {}", l.rate, l.burst)).unwrap_or_default().into(),
                ));
                out.push(fact("max_body", x.max_body.to_string().into()));
                out.push(fact("waf_exclusions", Val::many(&x.waf_exclusions)));
            }
        }
        for c in &m.certificates {
            let fact = |field, value: Val| Fact { category: "certificate", subject: c.name.clone(), field, value };
            out.push(fact("domains", Val::many(c.domains.iter().map(|d| d.value.as_str()))));
            out.push(fact("file", c.file.clone().into()));
            out.push(fact("acme", c.acme.to_string().into()));
        }
        out
    }
}

/// One public route: a hostname and path prefix served by a service.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    /// The service that serves it.
    pub service: ServiceId,
    /// Its `expose` entry.
    pub expose: &'a Expose,
    /// How the edge treats it.
    pub edge: &'a ExposeEdge,
    /// The service port it targets.
    pub port: PortSpec,
}

impl Route<'_> {
    /// A stable identifier for names in configs: `<service>-<index>`.
    pub fn id(&self, site: &Site) -> String {
        let s = site.service(self.service);
        format!("{}-{}", s.name, self.expose.index)
    }
}

/// Every route, sorted by hostname, then longest path first (so prefix matching in
/// HAProxy picks the most specific route).
pub fn routes(site: &Site) -> Vec<Route<'_>> {
    let mut out = Vec::new();
    let model = edge(site);
    for (i, s) in site.services.iter().enumerate() {
        for e in &s.expose {
            if let Some(p) = s.port(&e.port.value) {
                out.push(Route { service: ServiceId(i), expose: e, edge: model.of(ServiceId(i), e), port: p.spec });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.expose.hostname.value, std::cmp::Reverse(a.expose.path.value.len()), &a.expose.path.value).cmp(&(
            &b.expose.hostname.value,
            std::cmp::Reverse(b.expose.path.value.len()),
            &b.expose.path.value,
        ))
    });
    out
}

/// Services of a kind, in name order.
pub fn services_of(site: &Site, kind: ServiceKind) -> impl Iterator<Item = (ServiceId, &Service)> {
    site.services.iter().enumerate().filter(move |(_, s)| s.kind.value == kind).map(|(i, s)| (ServiceId(i), s))
}

/// The app-tier Nginx service running on a host, if any (the first by name).
pub fn proxy_on(site: &Site, host: HostId) -> Option<ServiceId> {
    let by_host = site.derived.proxy_by_host.get_or_init(|| {
        let mut v = vec![None; site.hosts.len()];
        for (id, s) in services_of(site, ServiceKind::Nginx) {
            for h in &s.hosts {
                v[h.value.0].get_or_insert(id);
            }
        }
        v
    });
    by_host.get(host.0).copied().flatten()
}

/// A host's main address (its first interface's), with where it is written.
pub fn host_address(site: &Site, host: HostId) -> Option<&At<IpAddr>> {
    site.host(host).interfaces.first().map(|i| &i.address)
}

/// The address `host` connects from to an address of one family (`v6`): its first
/// address of that family. HAProxy sets it as each server's `source` (never the floating
/// address), and the app-tier Nginx trusts exactly these, so an edge host that reaches
/// app hosts over both families is trusted at both of its addresses.
pub fn source_address(site: &Site, host: HostId, v6: bool) -> Option<&At<IpAddr>> {
    site.host(host).interfaces.iter().map(|i| &i.address).find(|a| a.value.is_ipv6() == v6)
}

/// Where the instance of `service` on `host` listens: its address on the first
/// non-internal docker network it is attached to (then any network), else the host's.
/// Also where the choice comes from: the network's definition (its `internal` flag), if
/// a network was chosen.
/// Only static addresses count: one the driver assigns (`"auto"`) is not known here.
pub fn instance_address(site: &Site, service: ServiceId, host: HostId) -> Option<(At<IpAddr>, Option<&Loc>)> {
    let s = site.service(service);
    let fixed: Vec<_> = s.networks.iter().filter_map(|(n, a)| a.value.map(|ip| (*n, ip, &a.loc))).collect();
    let net = fixed.iter().find(|(n, _, _)| !site.network(*n).internal).or_else(|| fixed.first());
    match net {
        Some((n, ip, loc)) => Some((At { value: *ip, loc: (*loc).clone() }, Some(&site.network(*n).loc))),
        None => host_address(site, host).map(|a| (a.clone(), None)),
    }
}

/// A named port of a service as a context value: where it is declared, or the service
/// (for a kind's default port); `default` when the service has no such port.
pub fn port_src(s: &Service, name: &str, default: u16) -> Src<u16> {
    match s.port(name) {
        Some(p) => Src::at(p.spec.port, "port", p.loc.as_ref().unwrap_or(&s.loc)),
        None => Src::at(default, "port (built-in)", &s.loc),
    }
}

/// Where a service's health timing comes from: its `health` table and `[defaults]`.
pub fn health_locs<'a>(site: &'a Site, s: &'a Service) -> Vec<&'a Loc> {
    let mut v: Vec<&Loc> = s.health.as_ref().and_then(|h| h.loc.as_ref()).into_iter().collect();
    v.extend(site.defaults.loc.as_ref());
    if v.is_empty() {
        v.push(&s.loc);
    }
    v
}

/// Where the edge sends a route's traffic for one host of the service: the Nginx on that
/// host when there is one, else the service itself. Returns `(target service, port)`.
pub fn edge_target(site: &Site, route: &Route, host: HostId) -> Option<(ServiceId, PortSpec)> {
    match proxy_on(site, host) {
        Some(ngx) => Some((ngx, site.service(ngx).port("http")?.spec)),
        None => Some((route.service, route.port)),
    }
}

/// How a route's path prefix matches, segment by segment: `/api/` matches `/api/…`, and
/// `/api` matches `/api` itself and `/api/…`, never `/apiary`. Returns the prefix to
/// match (always ending in `/`) and the exact path to match too, if any.
pub fn path_match(path: &str) -> (String, Option<String>) {
    if path.ends_with('/') { (path.to_string(), None) } else { (format!("{path}/"), Some(path.to_string())) }
}

/// The path under which the app-tier Nginx proxies a service's own health check, for the
/// edge; the edge never routes public requests there.
pub fn health_path(service: &str) -> String {
    format!("{HEALTH_PREFIX}{service}")
}

/// Prefix of [`health_path`].
pub const HEALTH_PREFIX: &str = "/.medianest/health/";

/// The certificate a route uses: the one it names, else the first that covers it.
pub fn certificate_for<'a>(site: &'a Site, r: &Route) -> Option<&'a Certificate> {
    let certs = &edge(site).certificates;
    match &r.edge.tls {
        Some(name) => certs.iter().find(|c| c.name == name.value),
        None => certs.iter().find(|c| c.covers(&r.expose.hostname.value)),
    }
}

/// Whether traffic from `from` (a host, or the internet when `None`) to `to` on `port`
/// is allowed by a flow (see [`crate::model::flows`]): only a host reaching itself needs
/// none, because each host's firewall drops what no flow allows, inside a zone too.
pub fn flow_allows(site: &Site, from: Option<HostId>, to: HostId, port: PortSpec) -> bool {
    site.flow_plan().allows(site, from, Some(to), port)
}

/// Reports, once for `svc`, two of its hosts that no flow lets talk on `port`: the edges'
/// traffic among themselves (ACME challenges, stick-table peers). One flow from the
/// service to itself opens every pair, so one pair is enough to report. `what` says
/// what needs the traffic, given the two hosts' names.
pub fn require_pair_flow(
    site: &Site,
    diags: &mut Diagnostics,
    svc: &Service,
    port: PortSpec,
    loc: &Loc,
    why: &str,
    what: impl FnOnce(&str, &str) -> String,
) {
    let pair = svc.hosts.iter().find_map(|from| {
        svc.hosts
            .iter()
            .find(|to| to.value != from.value && !flow_allows(site, Some(from.value), to.value, port))
            .map(|to| (from.value, to.value))
    });
    if let Some((from, to)) = pair {
        let endpoint = format!("service:{}", svc.name);
        missing_flow(diags, loc, &endpoint, &endpoint, port, why, &what(&site.host(from).name, &site.host(to).name));
    }
}

/// Whether `host` runs an edge HAProxy (and so serves the site's certificates).
pub fn serves_edge(site: &Site, host: HostId) -> bool {
    services_of(site, ServiceKind::Haproxy).any(|(_, s)| s.hosts.iter().any(|h| h.value == host))
}

/// Reports a missing flow with the TOML that would add it.
pub fn missing_flow(diags: &mut Diagnostics, loc: &Loc, from: &str, to: &str, port: PortSpec, why: &str, what: &str) {
    diags.push(
        Diagnostic::error("missing-flow", format!("{what}, but no flow allows {from} → {to} {port}"), loc.clone())
            .label("this needs the traffic")
            .help(format!(
                "add to the flows (e.g. site/policies/flows.toml):\n\n[[flows]]\nfrom = \"{from}\"\nto = \"{to}\"\nports = [\"{port}\"]\nwhy = \"{why}\"\n"
            )),
    );
}
