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
//! Prometheus endpoint listens on the host's address and admits only the monitoring
//! zones. Templates: `templates/haproxy/`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::edge::{self, Route};
use super::{Family, Lowering, sources_of};
use crate::artifact::{ArtifactMeta, Trace};
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{HealthCheck, ServiceKind, Site};

/// The haproxy family.
pub struct Haproxy;

/// Where the certificate list lives on the edge hosts.
pub const CRT_LIST: &str = "/etc/haproxy/crt-list.txt";

/// Context of `haproxy/haproxy.cfg.j2`.
#[derive(Serialize)]
pub struct HaproxyContext {
    /// Host name.
    pub host: String,
    /// Port of the HTTP frontend.
    pub http_port: u16,
    /// Port of the HTTPS frontend.
    pub https_port: u16,
    /// Stats / Prometheus listener `address:port`.
    pub stats_bind: String,
    /// Source address of connections to the servers (the host's own).
    pub source: String,
    /// Networks allowed to read the stats endpoint.
    pub stats_allow: Vec<String>,
    /// Path of the crt-list.
    pub crt_list: String,
    /// Whether ACME challenges are passed to a local client.
    pub acme: bool,
    /// Routes, most specific first.
    pub routes: Vec<RouteView>,
    /// Backends, by name.
    pub backends: Vec<BackendView>,
}

/// A route in the HTTPS frontend.
#[derive(Serialize)]
pub struct RouteView {
    /// ACL name.
    pub acl: String,
    /// Hostname.
    pub hostname: String,
    /// Path prefix (`/` matches everything).
    pub path: String,
    /// Backend name.
    pub backend: String,
    /// Rate limit, if any.
    pub limit: Option<LimitView>,
}

/// A stick-table rate limit.
#[derive(Serialize)]
pub struct LimitView {
    /// Table (a backend holding only the stick table).
    pub table: String,
    /// Period, e.g. `1m`.
    pub period: String,
    /// Requests allowed in the period (rate plus burst).
    pub max: u32,
}

/// A backend: one per exposed service.
#[derive(Serialize)]
pub struct BackendView {
    /// Name (`be_<service>`).
    pub name: String,
    /// `roundrobin`, `leastconn` or `source`.
    pub balance: String,
    /// HTTP health check, if the service declares one.
    pub http_check: Option<HttpCheckView>,
    /// Whether any route to it carries WebSockets.
    pub websocket: bool,
    /// Health-check interval in seconds (the service's `health.interval`).
    pub inter: u64,
    /// Failed checks before a server is taken out (`health.retries`).
    pub fall: u32,
    /// Servers.
    pub servers: Vec<ServerView>,
}

/// `option httpchk` settings.
#[derive(Serialize)]
pub struct HttpCheckView {
    /// Path.
    pub path: String,
    /// Host header.
    pub host: String,
    /// Expected status.
    pub status: u16,
}

/// A server line.
#[derive(Serialize)]
pub struct ServerView {
    /// Name (the host).
    pub name: String,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
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
    pub file: String,
    /// SNI names.
    pub domains: Vec<String>,
}

fn port(site: &Site, svc: crate::model::ServiceId, name: &str) -> Option<u16> {
    site.service(svc).port(name).map(|p| p.spec.port)
}

/// The networks of the zones Prometheus runs in.
fn monitoring_networks(site: &Site) -> Vec<String> {
    let mut nets: Vec<String> = edge::services_of(site, ServiceKind::Prometheus)
        .flat_map(|(id, _)| site.service_zones(id))
        .filter_map(|z| site.zone(z).cidr.as_ref().map(|c| c.value.to_string()))
        .collect();
    nets.sort();
    nets.dedup();
    nets
}

fn backends(site: &Site, routes: &[Route]) -> Vec<BackendView> {
    let mut by_service: BTreeMap<String, BackendView> = BTreeMap::new();
    for r in routes {
        let s = site.service(r.service);
        let name = format!("be_{}", s.name);
        let entry = by_service.entry(name.clone()).or_insert_with(|| BackendView {
            name,
            balance: edge::edge(site).balance(r.service).name().to_string(),
            http_check: match s.health.as_ref().map(|h| &h.check) {
                Some(HealthCheck::Http { path, status, .. }) => {
                    // Through an Nginx, the check goes to the path Nginx keeps for this
                    // service's health, so path routing cannot send it elsewhere.
                    let via_proxy = s.hosts.iter().any(|h| edge::proxy_on(site, h.value).is_some());
                    let path = if via_proxy { edge::health_path(&s.name) } else { path.clone() };
                    Some(HttpCheckView { path, host: r.expose.hostname.value.clone(), status: *status })
                }
                _ => None,
            },
            websocket: false,
            inter: s.health.as_ref().map(|h| h.interval.0).unwrap_or(5),
            fall: s.health.as_ref().map(|h| h.retries).unwrap_or(3),
            servers: s
                .hosts
                .iter()
                .filter_map(|h| {
                    let (target, p) = edge::edge_target(site, r, h.value)?;
                    Some(ServerView {
                        name: site.host(h.value).name.clone(),
                        address: edge::instance_address(site, target, h.value)?.to_string(),
                        port: p.port,
                    })
                })
                .collect(),
        });
        entry.websocket |= r.expose.websocket;
    }
    by_service.into_values().collect()
}

impl Family for Haproxy {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let routes = edge::routes(site);
        let mut certs: Vec<CrtView> = edge::edge(site)
            .certificates
            .iter()
            .map(|c| CrtView { file: c.file.clone(), domains: c.domains.iter().map(|d| d.value.clone()).collect() })
            .collect();
        certs.sort_by(|a, b| a.file.cmp(&b.file));
        let route_views = |site: &Site| -> Vec<RouteView> {
            routes
                .iter()
                .map(|r| {
                    let id = r.id(site);
                    RouteView {
                        acl: format!("route_{id}"),
                        hostname: r.expose.hostname.value.clone(),
                        path: r.expose.path.value.clone(),
                        backend: format!("be_{}", site.service(r.service).name),
                        limit: r.edge.rate_limit.map(|l| LimitView {
                            table: format!("st_{id}"),
                            period: if l.rate.per_seconds == 1 { "1s".into() } else { "1m".into() },
                            max: l.rate.count + l.burst,
                        }),
                    }
                })
                .collect()
        };
        let mut locs: Vec<&crate::diag::Loc> =
            site.services.iter().filter(|s| !s.expose.is_empty()).map(|s| &s.loc).collect();
        locs.extend(edge::edge(site).certificates.iter().map(|c| &c.loc));
        for (id, svc) in edge::services_of(site, ServiceKind::Haproxy) {
            let mut svc_locs = locs.clone();
            svc_locs.push(&svc.loc);
            let sources = sources_of(site, svc_locs);
            let traces: Vec<Trace> = site
                .services
                .iter()
                .filter(|s| !s.expose.is_empty())
                .map(|s| Trace { what: "service", name: s.name.clone(), loc: s.loc.clone() })
                .chain(site.hosts.iter().map(|h| Trace { what: "host", name: h.name.clone(), loc: h.loc.clone() }))
                .chain(edge::edge(site).certificates.iter().map(|c| Trace {
                    what: "certificate",
                    name: c.file.clone(),
                    loc: c.loc.clone(),
                }))
                .collect();
            for h in &svc.hosts {
                let host = site.host(h.value);
                let Some(addr) = host.primary_address() else { continue };
                let ctx = HaproxyContext {
                    host: host.name.clone(),
                    http_port: port(site, id, "http").unwrap_or(80),
                    https_port: port(site, id, "https").unwrap_or(443),
                    stats_bind: format!("{}:{}", addr, port(site, id, "stats").unwrap_or(8404)),
                    source: addr.to_string(),
                    stats_allow: monitoring_networks(site),
                    crt_list: CRT_LIST.into(),
                    acme: edge::edge(site).certificates.iter().any(|c| c.acme),
                    routes: route_views(site),
                    backends: backends(site, &routes),
                };
                let mut meta = ArtifactMeta::host_file(
                    self.name(),
                    &host.name,
                    "/etc/haproxy/haproxy.cfg",
                    0o644,
                    "root:root",
                    sources.clone(),
                )
                .traced(traces.clone());
                set_actions(&mut meta);
                out.add("haproxy/haproxy.cfg.j2", &ctx, meta, Some(svc.loc.clone()));
                let mut meta =
                    ArtifactMeta::host_file(self.name(), &host.name, CRT_LIST, 0o644, "root:root", sources.clone())
                        .traced(traces.clone());
                set_actions(&mut meta);
                out.add(
                    "haproxy/crt-list.txt.j2",
                    &CrtListContext {
                        certificates: certs
                            .iter()
                            .map(|c| CrtView { file: c.file.clone(), domains: c.domains.clone() })
                            .collect(),
                    },
                    meta,
                    Some(svc.loc.clone()),
                );
            }
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let edges: Vec<_> = edge::services_of(site, ServiceKind::Haproxy).collect();
        let routes = edge::routes(site);
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

fn set_actions(meta: &mut ArtifactMeta) {
    if let Some(a) = meta.apply.as_mut() {
        a.validate = Some("haproxy".into());
        a.reload = Some("haproxy.service".into());
    }
}
