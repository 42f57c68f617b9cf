//! What the edge families (haproxy, nginx, keepalived) share: the public routes derived
//! from the services' `expose` entries, where each instance of a service is reached,
//! and whether the flows let one host reach another. Nothing about a service is written
//! twice in the site: hostnames, paths, ports, health checks and hosts all come from the
//! service itself.

use std::net::IpAddr;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::values::PortSpec;
use crate::model::{Certificate, Endpoint, Expose, HostId, Service, ServiceId, ServiceKind, Site};

/// One public route: a hostname and path prefix served by a service.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    /// The service that serves it.
    pub service: ServiceId,
    /// Its `expose` entry.
    pub expose: &'a Expose,
    /// The service port it targets.
    pub port: PortSpec,
}

impl Route<'_> {
    /// A stable identifier for names in configs: `<service>-<index>`.
    pub fn id(&self, site: &Site) -> String {
        let s = site.service(self.service);
        let i = s.expose.iter().position(|e| std::ptr::eq(e, self.expose)).unwrap_or(0);
        format!("{}-{i}", s.name)
    }
}

/// Every route, sorted by hostname, then longest path first (so prefix matching in
/// HAProxy picks the most specific route).
pub fn routes(site: &Site) -> Vec<Route<'_>> {
    let mut out = Vec::new();
    for (i, s) in site.services.iter().enumerate() {
        for e in &s.expose {
            if let Some(p) = s.port(&e.port.value) {
                out.push(Route { service: ServiceId(i), expose: e, port: p.spec });
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

/// A host's main address.
pub fn host_address(site: &Site, host: HostId) -> Option<IpAddr> {
    site.host(host).primary_address()
}

/// Where the instance of `service` on `host` listens: its address on the first
/// non-internal docker network it is attached to (then any network), else the host's.
pub fn instance_address(site: &Site, service: ServiceId, host: HostId) -> Option<IpAddr> {
    let s = site.service(service);
    let net = s.networks.iter().find(|(n, _)| !site.network(*n).internal).or_else(|| s.networks.first());
    match net {
        Some((_, addr)) => Some(addr.value),
        None => host_address(site, host),
    }
}

/// Where the edge sends a route's traffic for one host of the service: the Nginx on that
/// host when there is one, else the service itself. Returns `(target service, port)`.
pub fn edge_target(site: &Site, route: &Route, host: HostId) -> Option<(ServiceId, PortSpec)> {
    match proxy_on(site, host) {
        Some(ngx) => Some((ngx, site.service(ngx).port("http")?.spec)),
        None => Some((route.service, route.port)),
    }
}

/// The path under which the app-tier Nginx proxies a service's own health check, for the
/// edge; the edge never routes public requests there.
pub fn health_path(service: &str) -> String {
    format!("{HEALTH_PREFIX}{service}")
}

/// Prefix of [`health_path`].
pub const HEALTH_PREFIX: &str = "/.medianest/health/";

/// The certificate an exposure uses: the one it names, else the first that covers it.
pub fn certificate_for<'a>(site: &'a Site, e: &Expose) -> Option<&'a Certificate> {
    match &e.tls {
        Some(name) => site.certificates.iter().find(|c| c.name == name.value),
        None => site.certificates.iter().find(|c| c.covers(&e.hostname.value)),
    }
}

fn covers_host(site: &Site, e: &Endpoint, h: HostId) -> bool {
    match e {
        Endpoint::Service(s) => site.service(*s).hosts.iter().any(|x| x.value == h),
        Endpoint::Host(x) => *x == h,
        Endpoint::Zone(z) => site.host(h).interfaces.iter().any(|i| i.zone.value == *z),
        Endpoint::Internet => false,
    }
}

/// Whether traffic from `from` (a host, or the internet when `None`) to `to` on `port`
/// is allowed: the same host, hosts that share a zone (the firewall never sees it), or a
/// declared flow.
pub fn flow_allows(site: &Site, from: Option<HostId>, to: HostId, port: PortSpec) -> bool {
    if let Some(f) = from {
        if f == to {
            return true;
        }
        let fz = site.host_zones(f);
        if site.host_zones(to).iter().any(|z| fz.contains(z)) {
            return true;
        }
    }
    site.flows_on_port(port).any(|fl| {
        let from_ok = match from {
            Some(h) => covers_host(site, &fl.from.value, h),
            None => fl.from.value == Endpoint::Internet,
        };
        from_ok && covers_host(site, &fl.to.value, to)
    })
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
