//! Family **keepalived**: a VRRP floating address for the edge pair, when the site gives
//! a `keepalived` service a `vip`. Priority follows the order of the service's hosts (the
//! first is preferred), peers talk unicast over the interface in the VIP's zone, and a
//! track script drops a host whose HAProxy is not running. Template:
//! `templates/keepalived/keepalived.conf.j2`.

use serde::Serialize;

pub mod keys;

use std::any::Any;

use super::provenance::Src;
use super::{Family, Lowering, Part, edge};
use crate::artifact::ArtifactMeta;
use crate::diag::{Diagnostic, Diagnostics};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::values::{PortSpec, Proto};
use crate::model::{ServiceKind, Site, ZoneId};

/// The keepalived model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { services: std::collections::BTreeMap::new() };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The keepalived family.
pub struct Keepalived;

/// Context of `keepalived/keepalived.conf.j2`.
#[derive(Serialize)]
pub struct KeepalivedContext {
    /// Host name (router id).
    pub host: Src<String>,
    /// Instance name (the service).
    pub instance: Src<String>,
    /// OS interface in the VIP's zone.
    pub interface: Src<String>,
    /// VRRP router id.
    pub vrid: Src<u8>,
    /// Priority: 150 for the first host, 10 less for each next one.
    pub priority: Src<u16>,
    /// This host's address on that interface.
    pub source: Src<String>,
    /// The other hosts' addresses.
    pub peers: Vec<Src<String>>,
    /// The floating address with the zone's prefix length.
    pub vip: Src<String>,
    /// Whether HAProxy runs on the host (then it is tracked).
    pub track_haproxy: Src<bool>,
}

fn vip_zone(site: &Site, vip: std::net::IpAddr) -> Option<ZoneId> {
    site.zones.iter().position(|z| z.cidr.as_ref().is_some_and(|c| c.value.contains(&vip))).map(ZoneId)
}

impl Family for Keepalived {
    fn name(&self) -> &'static str {
        "keepalived"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::KeepalivedFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let mut out = Vec::new();
        for (id, v) in &model(site).services {
            let subject = site.service(*id).name.clone();
            let vip = v.vip.as_ref().map(|a| a.value.to_string()).unwrap_or_default();
            out.push(Fact { category: "service", subject: subject.clone(), field: "vip", value: vip.into() });
            out.push(Fact { category: "service", subject, field: "vrid", value: v.vrid.value.to_string().into() });
        }
        out
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for (id, svc) in edge::services_of(site, ServiceKind::Keepalived) {
            let vrrp = model(site).of(site, id);
            let Some(vip) = &vrrp.vip else { continue };
            let Some(zone) = vip_zone(site, vip.value) else { continue };
            let cidr = site.zone(zone).cidr.as_ref();
            let prefix = site.zone(zone).cidr.as_ref().map(|c| c.value.prefix_len()).unwrap_or(32);
            let iface = |h: crate::model::HostId| site.host(h).interfaces.iter().find(|i| i.zone.value == zone);
            let haproxy: Vec<_> = edge::services_of(site, ServiceKind::Haproxy).map(|(_, s)| s).collect();
            for (i, h) in svc.hosts.iter().enumerate() {
                let host = site.host(h.value);
                let Some(me) = iface(h.value) else { continue };
                let on_host: Vec<_> = haproxy.iter().filter(|s| s.hosts.iter().any(|x| x.value == h.value)).collect();
                let ctx = KeepalivedContext {
                    host: Src::at(host.name.clone(), "host", &host.loc),
                    instance: Src::at(svc.name.replace('-', "_"), "service", &svc.loc),
                    interface: match &me.name {
                        Some(n) => Src::at(n.value.clone(), "interface name", &n.loc),
                        None => Src::at(String::new(), "interface name", &me.zone.loc),
                    },
                    vrid: Src::at(vrrp.vrid.value, "VRRP router id", &vrrp.vrid.loc),
                    priority: Src::at(
                        150u16.saturating_sub(10 * i as u16).max(1),
                        "priority (the host's place in the service's hosts)",
                        &h.loc,
                    ),
                    source: Src::at(me.address.value.to_string(), "host address", &me.address.loc),
                    peers: svc
                        .hosts
                        .iter()
                        .filter(|o| o.value != h.value)
                        .filter_map(|o| iface(o.value))
                        .map(|x| Src::at(x.address.value.to_string(), "peer address", &x.address.loc))
                        .collect(),
                    vip: Src::of(
                        format!("{}/{prefix}", vip.value),
                        "floating address",
                        std::iter::once(&vip.loc).chain(cidr.map(|c| &c.loc)),
                    ),
                    track_haproxy: Src::of(!on_host.is_empty(), "HAProxy on the host", on_host.iter().map(|s| &s.loc)),
                };
                let mut meta = ArtifactMeta::host_file(
                    self.name(),
                    &host.name,
                    "/etc/keepalived/keepalived.conf",
                    0o644,
                    "root:root",
                );
                if let Some(a) = meta.apply.as_mut() {
                    a.validate = Some(crate::artifact::Validator::Keepalived);
                    a.reload = Some("keepalived.service".into());
                }
                out.add("keepalived/keepalived.conf.j2", &ctx, meta, Some(svc.loc.clone()));
            }
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        for (id, svc) in edge::services_of(site, ServiceKind::Keepalived) {
            // One host has no peer to fail over to, and keepalived refuses the empty
            // `unicast_peer {}` it would get.
            if svc.hosts.len() == 1 {
                diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!("keepalived service `{}` runs on one host: a floating address needs a peer", svc.name),
                        svc.hosts[0].loc.clone(),
                    )
                    .help("list the second host of the pair in `hosts`, or drop the keepalived service"),
                );
            }
            let vrrp = model(site).of(site, id);
            let Some(vip) = &vrrp.vip else {
                diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("keepalived service `{}` has no floating address", svc.name),
                        svc.loc.clone(),
                    )
                    .help("add `vip = \"<free address in the hosts' zone>\"`"),
                );
                continue;
            };
            let Some(zone) = vip_zone(site, vip.value) else {
                diags.push(
                    Diagnostic::error(
                        "address-outside-zone",
                        format!("VIP `{}` is in no zone", vip.value),
                        vip.loc.clone(),
                    )
                    .help("pick a free address in the zone the hosts share"),
                );
                continue;
            };
            let edge_of_zone = site.zone(zone).cidr.as_ref().is_some_and(|c| match (c.value, vip.value) {
                (ipnet::IpNet::V4(n), std::net::IpAddr::V4(a)) => a == n.network() || a == n.broadcast(),
                (ipnet::IpNet::V6(n), std::net::IpAddr::V6(a)) => a == n.network(),
                _ => false,
            });
            if edge_of_zone {
                diags.push(
                    Diagnostic::error(
                        "address-outside-zone",
                        format!(
                            "VIP `{}` is the network or broadcast address of zone `{}`",
                            vip.value,
                            site.zone(zone).name
                        ),
                        vip.loc.clone(),
                    )
                    .help("use a host address between the first and the last"),
                );
            }
            if let Some(h) = site.hosts.iter().find(|h| h.interfaces.iter().any(|i| i.address.value == vip.value)) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("VIP `{}` is already the address of `{}`", vip.value, h.name),
                        vip.loc.clone(),
                    )
                    .help("the floating address must be free"),
                );
            }
            if site.zone(zone).gateway.as_ref().is_some_and(|g| g.value == vip.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("VIP `{}` is the zone's gateway", vip.value),
                        vip.loc.clone(),
                    )
                    .help("pick a free address"),
                );
            }
            for h in &svc.hosts {
                let host = site.host(h.value);
                match host.interfaces.iter().find(|i| i.zone.value == zone) {
                    None => diags.push(
                        Diagnostic::error(
                            "bad-placement",
                            format!(
                                "`{}` has no interface in zone `{}`, where VIP `{}` lives",
                                host.name,
                                site.zone(zone).name,
                                vip.value
                            ),
                            h.loc.clone(),
                        )
                        .help("run keepalived only on hosts in the VIP's zone"),
                    ),
                    Some(i) if i.name.is_none() => diags.push(
                        Diagnostic::error(
                            "missing-key",
                            format!(
                                "keepalived needs the OS name of `{}`'s interface in zone `{}`",
                                host.name,
                                site.zone(zone).name
                            ),
                            i.zone.loc.clone(),
                        )
                        .help("add `name = \"ens18\"` (the interface name) to that interface"),
                    ),
                    _ => {}
                }
            }
            // The pair talks VRRP (unicast, IP protocol 112) to each other; each host's
            // firewall drops it unless a flow allows it, and then both would take the VIP.
            let vrrp = PortSpec { proto: Proto::Vrrp, port: 0 };
            let need = svc.hosts.iter().find_map(|a| {
                svc.hosts.iter().find(|b| a.value != b.value && !edge::flow_allows(site, Some(a.value), b.value, vrrp))
            });
            if need.is_some() {
                edge::missing_flow(
                    diags,
                    &svc.loc,
                    &format!("service:{}", svc.name),
                    &format!("service:{}", svc.name),
                    vrrp,
                    "VRRP advertisements between the keepalived pair",
                    &format!("keepalived service `{}` elects its master over VRRP", svc.name),
                );
            }
        }
    }
}
