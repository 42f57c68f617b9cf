//! Family **proxmox**: `/etc/network/interfaces` for every host with the `proxmox`
//! role, in the ifupdown2 syntax Proxmox VE 8 writes itself: loopback, the physical
//! uplink NIC (`inet manual`, a key of this family: `[proxmox.<host>].uplink`), and one
//! VLAN-aware Linux bridge holding the host's address in its zone, with the zone's
//! gateway, bridged to the uplink and allowing every zone's VLAN id, so a VM joins a zone
//! by its network device's VLAN tag. The bridge is the host interface's `name` (Proxmox
//! names bridges `vmbr<N>`), `vmbr0` when it has none.
//!
//! Applied by the agent: validated with ifupdown2's own parser (`ifup -a -s -i`),
//! reloaded with `networking.service` (ifupdown2's unit reloads with `ifreload -a`), and
//! a change that cuts the host off its repository is rolled back (`Probe::Refetch`).
//! Template: `templates/proxmox/interfaces.j2`.

pub mod keys;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Probe, Validator};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::{Host, HostId, Interface, Role, Site};

/// The proxmox model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { nodes: BTreeMap::new(), written: BTreeMap::new() };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The proxmox family.
pub struct Proxmox;

/// Context of `proxmox/interfaces.j2`.
#[derive(Serialize)]
pub struct InterfacesContext {
    /// The host.
    pub host: Src<String>,
    /// The physical uplink NIC (the bridge's port).
    pub uplink: Src<String>,
    /// The bridge holding the host's address (`vmbr0`).
    pub bridge: Src<String>,
    /// `inet` or `inet6`, after the host's address.
    pub method: Src<String>,
    /// The host's address with its zone's prefix length.
    pub address: Src<String>,
    /// The zone's gateway.
    pub gateway: Option<Src<String>>,
    /// Every zone's VLAN id, ascending: the tags the bridge lets VMs use.
    pub vids: Vec<Src<u16>>,
    /// The zone of the host's address (the bridge's comment in the GUI).
    pub zone: Src<String>,
}

/// The hosts with the `proxmox` role, with where the role is written.
fn nodes(site: &Site) -> impl Iterator<Item = (HostId, &Host, &Loc)> {
    site.hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.roles.iter().find(|r| r.value == Role::Proxmox).map(|r| (HostId(i), h, &r.loc)))
}

/// The bridge of a host's interface: its `name`, or `vmbr0`.
fn bridge(i: &Interface) -> Src<String> {
    match &i.name {
        Some(n) => Src::at(n.value.clone(), "interface name (the bridge)", &n.loc),
        None => Src::at("vmbr0".to_string(), "bridge (default `vmbr0`)", &i.zone.loc),
    }
}

/// Whether `s` is a bridge name Proxmox VE manages: `vmbr<N>`, 0 ≤ N ≤ 4094.
fn is_proxmox_bridge(s: &str) -> bool {
    s.strip_prefix("vmbr").is_some_and(|n| {
        !n.is_empty() && (n == "0" || !n.starts_with('0')) && n.parse::<u16>().is_ok_and(|v| v <= 4094)
    })
}

impl Family for Proxmox {
    fn name(&self) -> &'static str {
        "proxmox"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::ProxmoxFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        model(site)
            .nodes
            .iter()
            .map(|(id, n)| Fact {
                category: "proxmox",
                subject: site.host(*id).name.clone(),
                field: "uplink",
                value: n.uplink.value.clone().into(),
            })
            .collect()
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let m = model(site);
        for (id, host, role) in nodes(site) {
            if !m.written.contains_key(&id) {
                diags.push(keys::missing_uplink(&host.name, role.clone()).label("a Proxmox VE host"));
            }
            let Some(first) = host.interfaces.first() else {
                diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("Proxmox VE host `{}` has no interface, so no management address", host.name),
                        role.clone(),
                    )
                    .help("add `interfaces = [{ zone = \"<zone>\", address = \"<address>\", name = \"vmbr0\" }]`"),
                );
                continue;
            };
            if let Some(second) = host.interfaces.get(1) {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "Proxmox VE host `{}` has {} interfaces; its `/etc/network/interfaces` holds one bridge",
                            host.name,
                            host.interfaces.len()
                        ),
                        second.zone.loc.clone(),
                    )
                    .label("a second interface")
                    .help(
                        "keep the management interface only: VMs reach the other zones through the bridge's VLAN tags",
                    ),
                );
            }
            if let Some(n) = &first.name
                && !is_proxmox_bridge(&n.value)
            {
                diags.push(
                    Diagnostic::error(
                        "bad-name",
                        format!("`{}` is not a Proxmox VE bridge name", n.value),
                        n.loc.clone(),
                    )
                    .label("the management bridge of a Proxmox VE host")
                    .help("name it `vmbr0` (Proxmox VE manages bridges named `vmbr<N>`, N at most 4094); the physical NIC is `[proxmox.<host>].uplink`"),
                );
            }
            if let Some(node) = m.nodes.get(&id)
                && bridge(first).value == node.uplink.value
            {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("the uplink of `{}` is its bridge, `{}`", host.name, node.uplink.value),
                        node.uplink.loc.clone(),
                    )
                    .help("the uplink is the physical NIC the bridge is bridged to, e.g. `eno1`"),
                );
            }
        }
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let m = model(site);
        let mut vlans: Vec<(u16, &Loc)> =
            site.zones.iter().filter_map(|z| z.vlan.as_ref()).map(|v| (v.value, &v.loc)).collect();
        vlans.sort_by_key(|v| v.0);
        vlans.dedup_by_key(|v| v.0);
        for (id, host, _) in nodes(site) {
            let (Some(node), Some(iface)) = (m.nodes.get(&id), host.interfaces.first()) else { continue };
            let zone = site.zone(iface.zone.value);
            let Some(cidr) = &zone.cidr else { continue };
            let addr = iface.address.value;
            let ctx = InterfacesContext {
                host: Src::at(host.name.clone(), "host", &host.loc),
                uplink: Src::at(node.uplink.value.clone(), "uplink NIC", &node.uplink.loc),
                bridge: bridge(iface),
                method: Src::at(
                    if addr.is_ipv4() { "inet" } else { "inet6" }.to_string(),
                    "address family",
                    &iface.address.loc,
                ),
                address: Src::of(
                    format!("{addr}/{}", cidr.value.prefix_len()),
                    "host address with the zone's prefix length",
                    [&iface.address.loc, &cidr.loc],
                ),
                gateway: zone.gateway.as_ref().map(|g| Src::at(g.value.to_string(), "zone gateway", &g.loc)),
                vids: vlans.iter().map(|(v, l)| Src::at(*v, "zone VLAN id", l)).collect(),
                zone: Src::at(zone.name.clone(), "zone", &iface.zone.loc),
            };
            let mut meta =
                ArtifactMeta::host_file(self.name(), &host.name, "/etc/network/interfaces", 0o644, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.validate = Some(Validator::Ifupdown2);
                a.reload = Some("networking.service".into());
                // A bridge change that cut the host off its repository would also keep
                // the fixing commit away: the agent checks, and restores the old file.
                a.probe = Some(Probe::Refetch);
            }
            out.add("proxmox/interfaces.j2", &ctx, meta, Some(host.loc.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names() {
        for ok in ["vmbr0", "vmbr1", "vmbr4094"] {
            assert!(is_proxmox_bridge(ok), "{ok}");
        }
        for bad in ["vmbr", "vmbr01", "vmbr4095", "br0", "eno1", "vmbr-1"] {
            assert!(!is_proxmox_bridge(bad), "{bad}");
        }
        assert!(keys::nic_name("enp3s0f0").is_ok());
        for bad in ["", "0eth", "eno1.10", "a-name-of-16-chr", "eno 1", "eno1#"] {
            assert!(keys::nic_name(bad).is_err(), "{bad:?}");
        }
    }
}
