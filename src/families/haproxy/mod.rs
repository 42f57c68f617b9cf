//! Family **haproxy**: the edge load balancer, one `haproxy.cfg` (and the `crt-list` of
//! certificates it serves) per host that runs a `haproxy` service.
//!
//! Frontends: HTTP on the `http` port redirects to HTTPS (except ACME challenges when a
//! certificate is renewed by ACME); HTTPS on the `https` port terminates TLS 1.2+ with SNI
//! from the certificate declarations, adds HSTS and security headers, applies per-route
//! rate limits (stick tables) and routes by hostname and path prefix. One backend per
//! exposed service, with one server per host of the service (the Nginx on that host when
//! there is one), health-checked with the service's own health declaration and
//! `init-addr last,libc,none` so that a missing DNS name never fails the load. A stats and
//! Prometheus endpoint listens on the host's address and admits exactly the sources the
//! flows let reach its port (the flow plan, as the host firewall reads it). Templates: `templates/haproxy/`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::edge::{self, Route};
use super::provenance::Src;
use super::{Family, Lowering};
use crate::artifact::ArtifactMeta;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::values::{PortSpec, Proto};
use crate::model::{HealthCheck, ServiceKind, Site};

/// The haproxy family.
pub struct Haproxy;

/// Where the certificate list lives on the edge hosts.
pub const CRT_LIST: &str = "/etc/haproxy/crt-list.txt";

/// Context of `haproxy/haproxy.cfg.j2`.
#[derive(Serialize)]
pub struct HaproxyContext {
    /// Host name.
    pub host: Src<String>,
    /// Port of the HTTP frontend.
    pub http_port: Src<u16>,
    /// Port of the HTTPS frontend.
    pub https_port: Src<u16>,
    /// Stats / Prometheus listener `address:port`.
    pub stats_bind: Src<String>,
    /// Source address of connections to IPv4 servers (the host's own IPv4 address).
    pub source4: Option<Src<String>>,
    /// Source address of connections to IPv6 servers (the host's own IPv6 address).
    pub source6: Option<Src<String>>,
    /// Whether the host has an IPv6 address: the public frontends then bind `[::]:<port>
    /// v4v6` (both families), not `:<port>` (IPv4 only).
    pub dual: Src<bool>,
    /// Sources allowed to read the stats endpoint: those of the flows to its port.
    pub stats_allow: Vec<Src<String>>,
    /// Path of the crt-list.
    pub crt_list: String,
    /// Whether a certificate is obtained by ACME (traced to every certificate: turning it
    /// off changes this file too).
    pub acme: Src<bool>,
    /// Where ACME challenges go: `address:port` of every edge host's ACME client.
    pub acme_servers: Vec<Src<String>>,
    /// The edge hosts sharing the stick tables (the rate limits), this one included;
    /// empty when no route has a rate limit.
    pub peers: Vec<PeerView>,
    /// Routes ([`RouteView`]s), most specific first. Routes and backends are the same on
    /// every edge host: converted, and their provenance recorded, once for all.
    pub routes: minijinja::Value,
    /// Backends ([`BackendView`]s), by name.
    pub backends: minijinja::Value,
}

/// A `peer` of the `peers` section.
#[derive(Serialize)]
pub struct PeerView {
    /// The host's name (the local one is `localpeer`).
    pub name: Src<String>,
    /// `address:port`.
    pub address: Src<String>,
}

/// A route in the HTTPS frontend.
#[derive(Serialize)]
pub struct RouteView {
    /// ACL name.
    pub acl: Src<String>,
    /// Hostname.
    pub hostname: Src<String>,
    /// Path prefix (`/` matches everything).
    pub path: Src<String>,
    /// The prefix matched, ending in `/` (see [`edge::path_match`]).
    pub path_prefix: Src<String>,
    /// The path matched exactly too, when the prefix was written without a final `/`.
    pub path_exact: Option<Src<String>>,
    /// Backend name.
    pub backend: Src<String>,
    /// Rate limit, if any.
    pub limit: Option<LimitView>,
}

/// A stick-table rate limit.
#[derive(Serialize)]
pub struct LimitView {
    /// Table (a backend holding only the stick table).
    pub table: Src<String>,
    /// Period, e.g. `1m`.
    pub period: Src<String>,
    /// Requests allowed in the period (rate plus burst).
    pub max: Src<u32>,
}

/// A backend: one per exposed service.
#[derive(Serialize)]
pub struct BackendView {
    /// Name (`be_<service>`).
    pub name: Src<String>,
    /// `roundrobin`, `leastconn` or `source`.
    pub balance: Src<String>,
    /// HTTP health check, if the service declares one.
    pub http_check: Option<HttpCheckView>,
    /// Whether any route to it carries WebSockets.
    pub websocket: bool,
    /// Health-check interval in seconds (the service's `health.interval`).
    pub inter: Src<u64>,
    /// How often a server that is down is checked: the interval, at most 5 s (so a
    /// recovered host is back within seconds even with a long interval).
    pub downinter: Src<u64>,
    /// Failed checks before a server is taken out (`health.retries`).
    pub fall: Src<u32>,
    /// Servers.
    pub servers: Vec<ServerView>,
}

/// `option httpchk` settings.
#[derive(Serialize)]
pub struct HttpCheckView {
    /// Path.
    pub path: Src<String>,
    /// Host header.
    pub host: Src<String>,
    /// Expected status.
    pub status: Src<u16>,
}

/// A server line.
#[derive(Serialize)]
pub struct ServerView {
    /// Name (the host).
    pub name: Src<String>,
    /// Address, as the host part of `address:port` (IPv6 in brackets).
    pub address: Src<String>,
    /// Whether the address is IPv6: the server's `source` is the host's of that family.
    pub ipv6: bool,
    /// Port.
    pub port: Src<u16>,
}

/// Context of `haproxy/crt-list.txt.j2`.
#[derive(Serialize)]
pub struct CrtListContext {
    /// One line per certificate.
    pub certificates: Vec<CrtView>,
}

/// A crt-list line.
#[derive(Serialize)]
pub struct CrtView {
    /// PEM file.
    pub file: Src<String>,
    /// SNI names.
    pub domains: Vec<Src<String>>,
}

fn backends(site: &Site, routes: &[Route]) -> Vec<BackendView> {
    let mut by_service: BTreeMap<String, BackendView> = BTreeMap::new();
    for r in routes {
        let s = site.service(r.service);
        let name = format!("be_{}", s.name);
        let timing = edge::health_locs(site, s);
        let entry = by_service.entry(name.clone()).or_insert_with(|| BackendView {
            name: Src::at(name, "backend of service", &s.loc),
            balance: Src::at(edge::edge(site).balance(r.service).name().to_string(), "balance algorithm", &s.loc),
            http_check: match s.health.as_ref().map(|h| (h, &h.check)) {
                Some((h, HealthCheck::Http { path, status, .. })) => {
                    // Through an Nginx, the check goes to the path Nginx keeps for this
                    // service's health, so path routing cannot send it elsewhere.
                    let via_proxy = s.hosts.iter().any(|h| edge::proxy_on(site, h.value).is_some());
                    let path = if via_proxy { edge::health_path(&s.name) } else { path.clone() };
                    let at = h.loc.as_ref().unwrap_or(&s.loc);
                    Some(HttpCheckView {
                        path: Src::at(path, "health check path", at),
                        host: Src::at(r.expose.hostname.value.clone(), "exposed hostname", &r.expose.hostname.loc),
                        status: Src::at(*status, "expected health status", at),
                    })
                }
                _ => None,
            },
            websocket: false,
            inter: Src::of(s.health.as_ref().map(|h| h.interval.0).unwrap_or(5), "health interval", timing.clone()),
            downinter: Src::of(
                s.health.as_ref().map(|h| h.interval.0).unwrap_or(5).min(5),
                "health interval (at most 5 s while down)",
                timing.clone(),
            ),
            fall: Src::of(s.health.as_ref().map(|h| h.retries).unwrap_or(3), "health retries", timing),
            servers: s
                .hosts
                .iter()
                .filter_map(|h| {
                    let (target, p) = edge::edge_target(site, r, h.value)?;
                    let (address, network) = edge::instance_address(site, target, h.value)?;
                    let host = site.host(h.value);
                    let tsvc = site.service(target);
                    let port_loc =
                        tsvc.ports.iter().find(|x| x.spec == p).and_then(|x| x.loc.as_ref()).unwrap_or(&tsvc.loc);
                    Some(ServerView {
                        name: Src::of(host.name.clone(), "host", [&host.loc, &h.loc]),
                        ipv6: address.value.is_ipv6(),
                        address: Src::of(
                            super::host_text(address.value),
                            "address",
                            std::iter::once(&address.loc).chain(network),
                        ),
                        port: Src::at(p.port, "port", port_loc),
                    })
                })
                .collect(),
        });
        entry.websocket |= r.expose.websocket;
    }
    by_service.into_values().collect()
}

fn route_views(site: &Site, routes: &[Route]) -> Vec<RouteView> {
    routes
        .iter()
        .map(|r| {
            let id = r.id(site);
            let e = r.expose;
            RouteView {
                acl: Src::at(format!("route_{id}"), "exposure", &e.loc),
                hostname: Src::at(e.hostname.value.clone(), "exposed hostname", &e.hostname.loc),
                path: Src::at(e.path.value.clone(), "exposed path", &e.path.loc),
                path_prefix: Src::at(edge::path_match(&e.path.value).0, "exposed path", &e.path.loc),
                path_exact: edge::path_match(&e.path.value).1.map(|p| Src::at(p, "exposed path", &e.path.loc)),
                backend: Src::at(
                    format!("be_{}", site.service(r.service).name),
                    "backend of service",
                    &site.service(r.service).loc,
                ),
                limit: r.edge.rate_limit.map(|l| LimitView {
                    table: Src::at(format!("st_{id}"), "rate limit of exposure", &e.loc),
                    period: Src::at(
                        if l.rate.per_seconds == 1 { "1s".into() } else { "1m".into() },
                        "rate limit period",
                        &e.loc,
                    ),
                    max: Src::at(l.rate.count + l.burst, "rate limit (rate + burst)", &e.loc),
                }),
            }
        })
        .collect()
}

fn crt_views(site: &Site) -> Vec<CrtView> {
    let mut certs: Vec<CrtView> = edge::edge(site)
        .certificates
        .iter()
        .map(|c| CrtView {
            file: Src::at(c.file.clone(), "certificate file", &c.loc),
            domains: c.domains.iter().map(|d| Src::at(d.value.clone(), "certificate domain", &d.loc)).collect(),
        })
        .collect();
    certs.sort_by(|a, b| a.file.value.cmp(&b.file.value));
    certs
}

impl Family for Haproxy {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let routes = edge::routes(site);
        // The same on every edge host: converted, and recorded, once.
        let route_list = out.share(&route_views(site, &routes));
        let backend_list = out.share(&backends(site, &routes));
        for (_, svc) in edge::services_of(site, ServiceKind::Haproxy) {
            for h in &svc.hosts {
                let host = site.host(h.value);
                let Some(addr) = edge::host_address(site, h.value) else { continue };
                let stats = edge::port_src(svc, "stats", 8404);
                let ctx = HaproxyContext {
                    host: Src::at(host.name.clone(), "host", &host.loc),
                    http_port: edge::port_src(svc, "http", 80),
                    https_port: edge::port_src(svc, "https", 443),
                    stats_bind: Src::of(
                        super::socket_text(addr.value, stats.value),
                        "stats listener (host address and port)",
                        [&addr.loc, stats_loc(svc)],
                    ),
                    source4: edge::source_address(site, h.value, false)
                        .map(|a| Src::at(super::host_text(a.value), "host address", &a.loc)),
                    source6: edge::source_address(site, h.value, true)
                        .map(|a| Src::at(super::host_text(a.value), "host address", &a.loc)),
                    dual: Src::at(
                        host.interfaces.iter().any(|i| i.address.value.is_ipv6()),
                        "host addresses (an IPv6 one makes the listeners dual-stack)",
                        &host.loc,
                    ),
                    stats_allow: super::allowed_sources(
                        site,
                        h.value,
                        svc.port("stats").map_or(PortSpec { proto: Proto::Tcp, port: 8404 }, |p| p.spec),
                    ),
                    crt_list: CRT_LIST.into(),
                    acme: {
                        let certs = &edge::edge(site).certificates;
                        Src::of(certs.iter().any(|c| c.acme), "ACME", certs.iter().map(|c| &c.loc))
                    },
                    acme_servers: acme_servers(site, svc),
                    peers: peers(site, svc, &routes),
                    routes: route_list.value.clone(),
                    backends: backend_list.value.clone(),
                };
                let mut meta =
                    ArtifactMeta::host_file(self.name(), &host.name, "/etc/haproxy/haproxy.cfg", 0o644, "root:root");
                set_actions(&mut meta);
                out.add_shared(
                    "haproxy/haproxy.cfg.j2",
                    &ctx,
                    &[&route_list, &backend_list],
                    meta,
                    Some(svc.loc.clone()),
                );
                let mut meta = ArtifactMeta::host_file(self.name(), &host.name, CRT_LIST, 0o644, "root:root");
                set_actions(&mut meta);
                out.add(
                    "haproxy/crt-list.txt.j2",
                    &CrtListContext { certificates: crt_views(site) },
                    meta,
                    Some(svc.loc.clone()),
                );
            }
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let edges: Vec<_> = edge::services_of(site, ServiceKind::Haproxy).collect();
        let routes = edge::routes(site);
        // (edge host, server host, family) already reported.
        let mut no_family = std::collections::BTreeSet::new();
        for r in &routes {
            let e = r.expose;
            match edge::certificate_for(site, r) {
                None if r.edge.tls.is_none() => diags.push(
                    Diagnostic::error("missing-certificate", format!("no certificate covers `{}`", e.hostname.value), e.hostname.loc.clone())
                        .help(format!(
                            "declare one (the PEM file is provisioned on the edge hosts, never in git):\n\n[certificates.{}]\ndomains = [\"{}\"]\nfile = \"/etc/haproxy/certs/{}.pem\"\n",
                            e.hostname.value.split('.').next().unwrap_or("site"),
                            e.hostname.value,
                            e.hostname.value
                        )),
                ),
                Some(c) if !c.covers(&e.hostname.value) => diags.push(
                    Diagnostic::error("missing-certificate", format!("certificate `{}` does not cover `{}`", c.name, e.hostname.value), r.edge.tls.as_ref().map(|t| t.loc.clone()).unwrap_or(e.loc.clone()))
                        .also(c.loc.clone(), "certificate defined here")
                        .help(format!("add `\"{}\"` to its `domains`, or name another certificate", e.hostname.value)),
                ),
                _ => {}
            }
            if edges.is_empty() {
                diags.push(
                    Diagnostic::error(
                        "no-edge",
                        format!(
                            "`{}{}` is exposed, but no `haproxy` service publishes it",
                            e.hostname.value, e.path.value
                        ),
                        e.loc.clone(),
                    )
                    .help("add an edge service: `[services.haproxy]` with `kind = \"haproxy\"` and the DMZ hosts"),
                );
                continue;
            }
            // The edge must reach every server of the route.
            for (eid, esvc) in &edges {
                for eh in &esvc.hosts {
                    for h in &site.service(r.service).hosts {
                        let Some((target, p)) = edge::edge_target(site, r, h.value) else { continue };
                        // A server is reached over its address's family: the edge host
                        // needs an address of that family to connect from.
                        if let Some((a, _)) = edge::instance_address(site, target, h.value)
                            && edge::source_address(site, eh.value, a.value.is_ipv6()).is_none()
                            && no_family.insert((eh.value, h.value, a.value.is_ipv6()))
                        {
                            let (edge_host, host) = (site.host(eh.value), site.host(h.value));
                            let family = if a.value.is_ipv6() { "IPv6" } else { "IPv4" };
                            diags.push(
                                Diagnostic::error(
                                    "bad-placement",
                                    format!(
                                        "edge host `{}` has no {family} address, so HAProxy cannot reach `{}` on `{}` at {}",
                                        edge_host.name,
                                        site.service(target).name,
                                        host.name,
                                        a.value
                                    ),
                                    a.loc.clone(),
                                )
                                .also(edge_host.loc.clone(), "this edge host connects from its own address")
                                .help(format!(
                                    "give `{}` an interface in a zone whose `cidr` is {family}, or reach `{}` at an address of the other family",
                                    edge_host.name, host.name
                                )),
                            );
                        }
                        if !edge::flow_allows(site, Some(eh.value), h.value, p) {
                            edge::missing_flow(
                                diags,
                                &e.loc,
                                &format!("service:{}", site.service(*eid).name),
                                &format!("service:{}", site.service(target).name),
                                p,
                                "the edge forwards the exposed routes",
                                &format!(
                                    "`{}{}` is served through `{}` on `{}`",
                                    e.hostname.value,
                                    e.path.value,
                                    site.service(target).name,
                                    site.host(h.value).name
                                ),
                            );
                        }
                    }
                }
            }
        }
        for (eid, esvc) in &edges {
            if let Some(limit) = routes.iter().find(|r| r.edge.rate_limit.is_some())
                && let Some(peers) = site.service(*eid).port("peers").map(|p| p.spec)
            {
                let e = limit.expose;
                edge::require_pair_flow(
                    site,
                    diags,
                    esvc,
                    peers,
                    &e.loc,
                    "the edges share their stick tables (rate limits) as HAProxy peers",
                    |from, to| {
                        format!(
                            "`{}{}` is rate-limited on every host of `{}` with shared counts (`{from}` sends them to `{to}`)",
                            e.hostname.value, e.path.value, esvc.name
                        )
                    },
                );
            }
            let https = site.service(*eid).port("https").map(|p| p.spec);
            for eh in &esvc.hosts {
                if let Some(p) = https
                    && !routes.is_empty()
                    && !edge::flow_allows(site, None, eh.value, p)
                {
                    edge::missing_flow(
                        diags,
                        &esvc.loc,
                        "internet",
                        &format!("service:{}", esvc.name),
                        p,
                        "public HTTPS",
                        &format!("`{}` publishes the exposed routes", esvc.name),
                    );
                }
                let Some(stats) = site.service(*eid).port("stats").map(|p| p.spec) else { continue };
                for (pid, prom) in edge::services_of(site, ServiceKind::Prometheus) {
                    for ph in &prom.hosts {
                        if !edge::flow_allows(site, Some(ph.value), eh.value, stats) {
                            edge::missing_flow(
                                diags,
                                &esvc.loc,
                                &format!("service:{}", site.service(pid).name),
                                &format!("service:{}", esvc.name),
                                stats,
                                "Prometheus scrapes the HAProxy stats endpoint",
                                &format!("`{}` serves its metrics on {stats}", esvc.name),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The ACME clients behind the `acme` backend: every host of the edge service, on its
/// address and the service's `acme` port (none when no certificate uses ACME).
fn acme_servers(site: &Site, svc: &crate::model::Service) -> Vec<Src<String>> {
    let acme: Vec<&Loc> = edge::edge(site).certificates.iter().filter(|c| c.acme).map(|c| &c.loc).collect();
    if acme.is_empty() {
        return Vec::new();
    }
    let port = edge::port_src(svc, "acme", 8888);
    svc.hosts
        .iter()
        .filter_map(|h| edge::host_address(site, h.value))
        .map(|a| {
            Src::of(
                super::socket_text(a.value, port.value),
                "ACME client (edge address and `acme` port)",
                [&a.loc].into_iter().chain(acme.iter().copied()),
            )
        })
        .collect()
}

/// The `peers` of an edge service: every host on its address and `peers` port, when a
/// route has a rate limit. One host alone still lists itself: its tables then survive a
/// reload (the new process learns them from the old one).
fn peers(site: &Site, svc: &crate::model::Service, routes: &[edge::Route]) -> Vec<PeerView> {
    let limits: Vec<&Loc> = routes.iter().filter(|r| r.edge.rate_limit.is_some()).map(|r| &r.expose.loc).collect();
    if limits.is_empty() {
        return Vec::new();
    }
    let port = edge::port_src(svc, "peers", 10000);
    svc.hosts
        .iter()
        .filter_map(|h| {
            let a = edge::host_address(site, h.value)?;
            let host = site.host(h.value);
            Some(PeerView {
                name: Src::at(host.name.clone(), "host", &host.loc),
                address: Src::of(
                    super::socket_text(a.value, port.value),
                    "peer (edge address and `peers` port)",
                    [&a.loc].into_iter().chain(limits.iter().copied()),
                ),
            })
        })
        .collect()
}

fn stats_loc(s: &crate::model::Service) -> &Loc {
    s.port("stats").and_then(|p| p.loc.as_ref()).unwrap_or(&s.loc)
}

fn set_actions(meta: &mut ArtifactMeta) {
    if let Some(a) = meta.apply.as_mut() {
        a.validate = Some(crate::artifact::Validator::Haproxy);
        a.reload = Some("haproxy.service".into());
    }
}
