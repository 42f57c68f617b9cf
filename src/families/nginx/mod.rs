//! Family **nginx**: the app-tier reverse proxy with ModSecurity, on every host that runs
//! an `nginx` service. `nginx.conf` holds the shared settings (real client addresses from
//! the edge hosts only, rate-limit zones, gzip, ModSecurity with the OWASP CRS, one
//! upstream per service instance on the host); one vhost file per public hostname routes
//! its paths to those upstreams with the proxy headers, WebSocket upgrades, body size,
//! rate limit and WAF mode (`block`, `detect`, `off`, rule exclusions) of each exposure.
//! Includes are relative to `nginx.conf`, so `nginx -t -c <dir>/nginx.conf` checks the
//! generated tree where it lies. Templates: `templates/nginx/`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::edge::keys::WafMode;
use super::edge::{self, Route};
use super::{Family, Lowering, sources_of};
use crate::artifact::{ArtifactMeta, Trace};
use crate::model::{HealthCheck, HostId, ServiceKind, Site};

/// The nginx family.
pub struct Nginx;

/// Context of `nginx/nginx.conf.j2`.
#[derive(Serialize)]
pub struct NginxContext {
    /// Host name.
    pub host: String,
    /// Edge host addresses trusted for `X-Forwarded-For`.
    pub real_ip_from: Vec<String>,
    /// `limit_req_zone`s.
    pub rate_zones: Vec<ZoneView>,
    /// Upstreams: the local instance of each service this host routes to.
    pub upstreams: Vec<UpstreamView>,
    /// Address and port of the default server.
    pub listen: String,
}

/// A rate-limit zone.
#[derive(Serialize)]
pub struct ZoneView {
    /// Zone name.
    pub name: String,
    /// Rate, e.g. `100r/m`.
    pub rate: String,
}

/// An upstream.
#[derive(Serialize)]
pub struct UpstreamView {
    /// Name (the service).
    pub name: String,
    /// `address:port` of the local instance.
    pub server: String,
}

/// Context of `nginx/vhost.conf.j2`.
#[derive(Serialize)]
pub struct VhostContext {
    /// Public hostname.
    pub hostname: String,
    /// `address:port`.
    pub listen: String,
    /// Locations, most specific first.
    pub locations: Vec<LocationView>,
    /// Health-check locations for the edge, one per service with an HTTP health check.
    pub health: Vec<HealthView>,
    /// Edge addresses allowed to use them.
    pub edge: Vec<String>,
}

/// A health-check location.
#[derive(Serialize)]
pub struct HealthView {
    /// The location (`/.medianest/health/<service>`).
    pub location: String,
    /// Upstream name.
    pub upstream: String,
    /// The service's health path.
    pub path: String,
}

/// A location.
#[derive(Serialize)]
pub struct LocationView {
    /// Path prefix.
    pub path: String,
    /// Upstream name.
    pub upstream: String,
    /// WebSocket upgrade.
    pub websocket: bool,
    /// `on`, `detect` or `off`.
    pub waf: String,
    /// CRS rule ids removed here.
    pub exclusions: Vec<u32>,
    /// Rate-limit zone and burst.
    pub limit: Option<(String, u32)>,
    /// `client_max_body_size`.
    pub max_body: String,
}

fn served_on<'a>(site: &Site, routes: &'a [Route<'a>], host: HostId) -> Vec<&'a Route<'a>> {
    if edge::proxy_on(site, host).is_none() {
        return Vec::new();
    }
    routes.iter().filter(|r| site.service(r.service).hosts.iter().any(|h| h.value == host)).collect()
}

impl Family for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let routes = edge::routes(site);
        let mut edge_addrs: Vec<String> = edge::services_of(site, ServiceKind::Haproxy)
            .flat_map(|(_, s)| s.hosts.iter().filter_map(|h| edge::host_address(site, h.value)))
            .map(|a| a.to_string())
            .collect();
        edge_addrs.sort();
        edge_addrs.dedup();
        for (id, svc) in edge::services_of(site, ServiceKind::Nginx) {
            let port = svc.port("http").map(|p| p.spec.port).unwrap_or(80);
            for h in &svc.hosts {
                let host = site.host(h.value);
                let Some(addr) = host.primary_address() else { continue };
                let listen = format!("{addr}:{port}");
                let mine = served_on(site, &routes, h.value);
                let mut locs: Vec<&crate::diag::Loc> = vec![&svc.loc, &host.loc];
                locs.extend(mine.iter().map(|r| &site.service(r.service).loc));
                let sources = sources_of(site, locs);
                let traces: Vec<Trace> = mine
                    .iter()
                    .map(|r| site.service(r.service))
                    .map(|s| Trace { what: "service", name: s.name.clone(), loc: s.loc.clone() })
                    .chain([Trace { what: "host", name: host.name.clone(), loc: host.loc.clone() }])
                    .collect();
                let mut upstreams: BTreeMap<String, String> = BTreeMap::new();
                for r in &mine {
                    let s = site.service(r.service);
                    if let Some(a) = edge::instance_address(site, r.service, h.value) {
                        upstreams.insert(s.name.clone(), format!("{a}:{}", r.port.port));
                    }
                }
                let ctx = NginxContext {
                    host: host.name.clone(),
                    real_ip_from: edge_addrs.clone(),
                    rate_zones: mine
                        .iter()
                        .filter_map(|r| Some(ZoneView { name: r.id(site), rate: r.edge.rate_limit?.rate.to_string() }))
                        .collect(),
                    upstreams: upstreams.into_iter().map(|(name, server)| UpstreamView { name, server }).collect(),
                    listen: listen.clone(),
                };
                let meta = |path: &str| {
                    let mut m =
                        ArtifactMeta::host_file(self.name(), &host.name, path, 0o644, "root:root", sources.clone())
                            .traced(traces.clone());
                    if let Some(a) = m.apply.as_mut() {
                        a.validate = Some("nginx".into());
                        a.reload = Some("nginx.service".into());
                    }
                    m
                };
                out.add("nginx/nginx.conf.j2", &ctx, meta("/etc/nginx/nginx.conf"), Some(site.service(id).loc.clone()));
                let mut by_host: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
                for r in &mine {
                    by_host.entry(r.expose.hostname.value.as_str()).or_default().push(r);
                }
                for (hostname, rs) in by_host {
                    let ctx = VhostContext {
                        hostname: hostname.to_string(),
                        listen: listen.clone(),
                        locations: rs
                            .iter()
                            .map(|r| LocationView {
                                path: r.expose.path.value.clone(),
                                upstream: site.service(r.service).name.clone(),
                                websocket: r.expose.websocket,
                                waf: match r.edge.waf {
                                    WafMode::Block => "on".into(),
                                    WafMode::Detect => "detect".into(),
                                    WafMode::Off => "off".into(),
                                },
                                exclusions: r.edge.waf_exclusions.clone(),
                                limit: r.edge.rate_limit.map(|l| (r.id(site), l.burst)),
                                max_body: r.edge.max_body.to_string(),
                            })
                            .collect(),
                        health: {
                            let mut seen = std::collections::BTreeSet::new();
                            rs.iter()
                                .filter(|r| seen.insert(r.service))
                                .filter_map(|r| {
                                    let s = site.service(r.service);
                                    match s.health.as_ref().map(|h| &h.check) {
                                        Some(HealthCheck::Http { path, .. }) => Some(HealthView {
                                            location: edge::health_path(&s.name),
                                            upstream: s.name.clone(),
                                            path: path.clone(),
                                        }),
                                        _ => None,
                                    }
                                })
                                .collect()
                        },
                        edge: edge_addrs.clone(),
                    };
                    out.add(
                        "nginx/vhost.conf.j2",
                        &ctx,
                        meta(&format!("/etc/nginx/medianest/{hostname}.conf")),
                        Some(svc.loc.clone()),
                    );
                }
            }
        }
    }
}
