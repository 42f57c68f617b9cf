//! Family **nginx**: the app-tier reverse proxy with ModSecurity, on every host that runs
//! an `nginx` service. `nginx.conf` holds the shared settings (real client addresses from
//! the edge hosts only, rate-limit zones, gzip, ModSecurity with the OWASP CRS, one
//! upstream per service instance on the host); one vhost file per public hostname routes
//! its paths to those upstreams with the proxy headers, WebSocket upgrades, body size,
//! rate limit and WAF mode (`block`, `detect`, `off`, rule exclusions) of each exposure.
//! Includes are relative to `nginx.conf`, so `nginx -t -c <dir>/nginx.conf` checks the
//! generated tree where it lies. Templates: `templates/nginx/`.

pub mod keys;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::edge::keys::WafMode;
use super::edge::{self, Route};
use super::provenance::Src;
use super::{Family, Lowering};
use crate::artifact::ArtifactMeta;
use crate::diag::{Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::values::{PortSpec, Proto};
use crate::model::{HealthCheck, HostId, ServiceKind, Site};

/// The nginx model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { crs: BTreeMap::new() };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The nginx family.
pub struct Nginx;

/// Context of `nginx/nginx.conf.j2`.
#[derive(Serialize)]
pub struct NginxContext {
    /// Host name.
    pub host: Src<String>,
    /// Edge host addresses trusted for `X-Forwarded-For`: those HAProxy connects from, of
    /// both families.
    pub real_ip_from: Vec<Src<String>>,
    /// `limit_req_zone`s.
    pub rate_zones: Vec<ZoneView>,
    /// Upstreams: the local instance of each service this host routes to.
    pub upstreams: Vec<UpstreamView>,
    /// Address and port of the default server.
    pub listen: Src<String>,
    /// Where `stub_status` answers (loopback), when an Nginx exporter runs on the host.
    pub stub_status: Option<Src<String>>,
    /// The Core Rule Set's paranoia level.
    pub paranoia: Src<u16>,
    /// Inbound anomaly threshold.
    pub inbound_threshold: Src<u16>,
    /// Outbound anomaly threshold.
    pub outbound_threshold: Src<u16>,
}

/// Where the Nginx exporter reads the counters: its default `--nginx.scrape-uri`,
/// `http://127.0.0.1:8080/stub_status`, on loopback only (the exporter runs in the
/// host's network, `host_network`).
pub const STUB_STATUS: &str = "127.0.0.1:8080";

/// `stub_status` for the Nginx exporter on `host`, traced to it, if one runs there.
fn stub_status(site: &Site, host: crate::model::HostId) -> Option<Src<String>> {
    use super::prometheus::scrape::{Exporter, exporter};
    site.services_on(host)
        .into_iter()
        .find(|&s| exporter(site, s) == Exporter::Nginx)
        .map(|s| Src::at(STUB_STATUS.to_string(), "stub_status for the Nginx exporter", &site.service(s).loc))
}

/// A rate-limit zone.
#[derive(Serialize)]
pub struct ZoneView {
    /// Zone name.
    pub name: Src<String>,
    /// Rate, e.g. `100r/m`.
    pub rate: Src<String>,
}

/// An upstream.
#[derive(Serialize)]
pub struct UpstreamView {
    /// Name (the service).
    pub name: Src<String>,
    /// `address:port` of the local instance.
    pub server: Src<String>,
}

/// Context of `nginx/vhost.conf.j2`.
#[derive(Serialize)]
pub struct VhostContext {
    /// Public hostname.
    pub hostname: Src<String>,
    /// `address:port`.
    pub listen: Src<String>,
    /// Locations, most specific first.
    pub locations: Vec<LocationView>,
    /// Health-check locations for the edge, one per service with an HTTP health check.
    pub health: Vec<HealthView>,
    /// Sources allowed to use them: those of the flows to this host's HTTP port (the edge).
    pub edge: Vec<Src<String>>,
}

/// A health-check location.
#[derive(Serialize)]
pub struct HealthView {
    /// The location (`/.medianest/health/<service>`).
    pub location: Src<String>,
    /// Upstream name.
    pub upstream: Src<String>,
    /// The service's health path.
    pub path: Src<String>,
}

/// A location.
#[derive(Serialize)]
pub struct LocationView {
    /// Path prefix.
    pub path: Src<String>,
    /// The `location` arguments that match it by segment (see [`edge::path_match`]):
    /// `/api/`, or `= /api` and `/api/`.
    pub matches: Vec<Src<String>>,
    /// Upstream name.
    pub upstream: Src<String>,
    /// WebSocket upgrade.
    pub websocket: Src<bool>,
    /// `on`, `detect` or `off`.
    pub waf: Src<String>,
    /// CRS rule ids removed here.
    pub exclusions: Vec<Src<u32>>,
    /// Rate-limit zone and burst.
    pub limit: Option<(Src<String>, Src<u32>)>,
    /// `client_max_body_size`.
    pub max_body: Src<String>,
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

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::NginxFile>())
    }

    fn resolve(
        &self,
        parts: &[super::Part],
        site: &Site,
        diags: &mut Diagnostics,
    ) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let mut v = Vec::new();
        for (id, svc) in edge::services_of(site, ServiceKind::Nginx) {
            let crs = model(site).crs(site, id);
            for (field, value) in [
                ("waf_paranoia", crs.paranoia.value),
                ("waf_inbound_threshold", crs.inbound.value),
                ("waf_outbound_threshold", crs.outbound.value),
            ] {
                v.push(Fact { category: "service", subject: svc.name.clone(), field, value: value.to_string().into() });
            }
        }
        v
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let routes = edge::routes(site);
        let mut edge_addrs: BTreeMap<String, Vec<&Loc>> = BTreeMap::new();
        for (_, s) in edge::services_of(site, ServiceKind::Haproxy) {
            // The addresses HAProxy connects from: one per family the host has.
            for h in &s.hosts {
                for a in [false, true].into_iter().filter_map(|v6| edge::source_address(site, h.value, v6)) {
                    edge_addrs.entry(a.value.to_string()).or_default().extend([&a.loc, &h.loc]);
                }
            }
        }
        let edge_addrs: Vec<Src<String>> =
            edge_addrs.into_iter().map(|(a, locs)| Src::of(a, "edge host address", locs)).collect();
        for (id, svc) in edge::services_of(site, ServiceKind::Nginx) {
            let crs = model(site).crs(site, id);
            let port = edge::port_src(svc, "http", 80);
            for h in &svc.hosts {
                let host = site.host(h.value);
                let Some(addr) = edge::host_address(site, h.value) else { continue };
                let listen = Src::of(
                    super::socket_text(addr.value, port.value),
                    "listen address (host address and port)",
                    [&addr.loc, svc.port("http").and_then(|p| p.loc.as_ref()).unwrap_or(&svc.loc)],
                );
                let mine = served_on(site, &routes, h.value);
                let mut upstreams: BTreeMap<String, UpstreamView> = BTreeMap::new();
                for r in &mine {
                    let s = site.service(r.service);
                    if let Some((a, network)) = edge::instance_address(site, r.service, h.value) {
                        let port_loc = s.port(&r.expose.port.value).and_then(|p| p.loc.as_ref()).unwrap_or(&s.loc);
                        upstreams.insert(
                            s.name.clone(),
                            UpstreamView {
                                name: Src::at(s.name.clone(), "service", &s.loc),
                                server: Src::of(
                                    super::socket_text(a.value, r.port.port),
                                    "service address and port",
                                    [&a.loc, port_loc].into_iter().chain(network),
                                ),
                            },
                        );
                    }
                }
                let ctx = NginxContext {
                    host: Src::at(host.name.clone(), "host", &host.loc),
                    real_ip_from: edge_addrs.clone(),
                    rate_zones: mine
                        .iter()
                        .filter_map(|r| {
                            let l = r.edge.rate_limit?;
                            Some(ZoneView {
                                name: Src::at(r.id(site), "rate limit of exposure", &r.expose.loc),
                                rate: Src::at(l.rate.to_string(), "rate limit", &r.expose.loc),
                            })
                        })
                        .collect(),
                    upstreams: upstreams.into_values().collect(),
                    listen: listen.clone(),
                    stub_status: stub_status(site, h.value),
                    paranoia: Src::at(crs.paranoia.value, "waf_paranoia", &crs.paranoia.loc),
                    inbound_threshold: Src::at(crs.inbound.value, "waf_inbound_threshold", &crs.inbound.loc),
                    outbound_threshold: Src::at(crs.outbound.value, "waf_outbound_threshold", &crs.outbound.loc),
                };
                let meta = |path: &str| {
                    let mut m = ArtifactMeta::host_file(self.name(), &host.name, path, 0o644, "root:root");
                    if let Some(a) = m.apply.as_mut() {
                        a.validate = Some(crate::artifact::Validator::Nginx);
                        a.reload = Some("nginx.service".into());
                    }
                    m
                };
                out.add("nginx/nginx.conf.j2", &ctx, meta("/etc/nginx/nginx.conf"), Some(svc.loc.clone()));
                let mut by_host: BTreeMap<&str, Vec<&Route>> = BTreeMap::new();
                for r in &mine {
                    by_host.entry(r.expose.hostname.value.as_str()).or_default().push(r);
                }
                for (hostname, rs) in by_host {
                    let ctx = VhostContext {
                        hostname: Src::of(
                            hostname.to_string(),
                            "exposed hostname",
                            rs.iter().map(|r| &r.expose.hostname.loc),
                        ),
                        listen: listen.clone(),
                        locations: rs.iter().map(|r| location(site, r)).collect(),
                        health: {
                            let mut seen = std::collections::BTreeSet::new();
                            rs.iter()
                                .filter(|r| seen.insert(r.service))
                                .filter_map(|r| {
                                    let s = site.service(r.service);
                                    let h = s.health.as_ref()?;
                                    let HealthCheck::Http { path, .. } = &h.check else { return None };
                                    let at = h.loc.as_ref().unwrap_or(&s.loc);
                                    Some(HealthView {
                                        location: Src::at(
                                            edge::health_path(&s.name),
                                            "health check of service",
                                            &s.loc,
                                        ),
                                        upstream: Src::at(s.name.clone(), "service", &s.loc),
                                        path: Src::at(path.clone(), "health check path", at),
                                    })
                                })
                                .collect()
                        },
                        edge: super::allowed_sources(
                            site,
                            h.value,
                            svc.port("http").map_or(PortSpec { proto: Proto::Tcp, port: 80 }, |p| p.spec),
                        ),
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

/// One `location` of a vhost: everything from the exposure and the edge's keys of it.
fn location(site: &Site, r: &Route) -> LocationView {
    let (e, x) = (r.expose, r.edge);
    let s = site.service(r.service);
    LocationView {
        path: Src::at(e.path.value.clone(), "exposed path", &e.path.loc),
        matches: {
            let (prefix, exact) = edge::path_match(&e.path.value);
            exact
                .map(|x| Src::at(format!("= {x}"), "exposed path", &e.path.loc))
                .into_iter()
                .chain([Src::at(prefix, "exposed path", &e.path.loc)])
                .collect()
        },
        upstream: Src::at(s.name.clone(), "service", &s.loc),
        websocket: Src::at(e.websocket, "websocket", &e.loc),
        waf: Src::at(
            match x.waf {
                WafMode::Block => "on".into(),
                WafMode::Detect => "detect".into(),
                WafMode::Off => "off".into(),
            },
            "WAF mode",
            &e.loc,
        ),
        exclusions: x.waf_exclusions.iter().map(|id| Src::at(*id, "WAF rule excluded", &e.loc)).collect(),
        limit: x.rate_limit.map(|l| {
            (Src::at(r.id(site), "rate limit of exposure", &e.loc), Src::at(l.burst, "rate limit burst", &e.loc))
        }),
        max_body: Src::at(x.max_body.nginx(), "largest request body", &e.loc),
    }
}
