//! Addressing: VLAN ids unique, networks that do not overlap, gateways and addresses
//! inside their networks and unique.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::*;

pub(super) fn addressing(site: &Site, diags: &mut Diagnostics) {
    // VLAN ids are unique.
    let mut vlans: BTreeMap<u16, &Zone> = BTreeMap::new();
    for z in &site.zones {
        let Some(v) = &z.vlan else { continue };
        if let Some(first) = vlans.get(&v.value) {
            diags.push(
                Diagnostic::error(
                    "duplicate-vlan",
                    format!("VLAN {} is used by zones `{}` and `{}`", v.value, first.name, z.name),
                    v.loc.clone(),
                )
                .also(first.vlan.as_ref().map(|x| x.loc.clone()).unwrap_or(first.loc.clone()), "first used here")
                .help("give each zone its own VLAN id"),
            );
        } else {
            vlans.insert(v.value, z);
        }
    }
    // No two networks (zones or docker networks) overlap.
    let mut nets: Vec<(String, &At<ipnet::IpNet>)> = Vec::new();
    for z in &site.zones {
        if let Some(c) = &z.cidr {
            nets.push((format!("zone `{}`", z.name), c));
        }
    }
    for n in &site.docker_networks {
        if let Some(c) = &n.cidr {
            nets.push((format!("docker network `{}`", n.name), c));
        }
    }
    for (i, (an, a)) in nets.iter().enumerate() {
        for (bn, b) in &nets[i + 1..] {
            if a.value.contains(&b.value.network()) || b.value.contains(&a.value.network()) {
                diags.push(
                    Diagnostic::error(
                        "overlapping-cidr",
                        format!("{bn} ({}) overlaps {an} ({})", b.value, a.value),
                        b.loc.clone(),
                    )
                    .also(a.loc.clone(), format!("{an} is defined here"))
                    .help("give each network its own address range"),
                );
            }
        }
    }
    // Gateways lie inside their networks.
    for z in &site.zones {
        if let (Some(c), Some(g)) = (&z.cidr, &z.gateway) {
            inside(site, diags, &g.value, &g.loc, c, &format!("zone `{}`", z.name), "gateway");
        }
    }
    for n in &site.docker_networks {
        if let (Some(c), Some(g)) = (&n.cidr, &n.gateway) {
            inside(site, diags, &g.value, &g.loc, c, &format!("docker network `{}`", n.name), "gateway");
        }
    }
    // Host addresses: inside their zone, unique, not the gateway (unless the host is the firewall).
    let mut seen: BTreeMap<IpAddr, (&str, &Loc)> = BTreeMap::new();
    for h in &site.hosts {
        for i in &h.interfaces {
            let z = site.zone(i.zone.value);
            if let Some(c) = &z.cidr
                && !inside(site, diags, &i.address.value, &i.address.loc, c, &format!("zone `{}`", z.name), "address")
            {
                continue;
            }
            if let Some(g) = &z.gateway
                && g.value == i.address.value
                && h.kind.value != HostKind::Firewall
            {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("`{}` is the gateway of zone `{}`", i.address.value, z.name),
                        i.address.loc.clone(),
                    )
                    .also(g.loc.clone(), "the zone's gateway")
                    .help("only the firewall host may hold the gateway address; pick a free address"),
                );
                continue;
            }
            if let Some((other, loc)) = seen.get(&i.address.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("address `{}` is used by `{other}` and `{}`", i.address.value, h.name),
                        i.address.loc.clone(),
                    )
                    .also((*loc).clone(), format!("already used by `{other}`"))
                    .help("every interface needs its own address"),
                );
            } else {
                seen.insert(i.address.value, (&h.name, &i.address.loc));
            }
        }
    }
    // Docker network attachments: inside the network, unique per network, not the gateway.
    let mut attached: BTreeMap<(NetId, IpAddr), (&str, &Loc)> = BTreeMap::new();
    for s in &site.services {
        for (net, at) in &s.networks {
            // `"auto"`: the driver assigns it, nothing to check.
            let Some(ip) = at.value else { continue };
            let addr = &At { value: ip, loc: at.loc.clone() };
            let n = site.network(*net);
            if let Some(c) = &n.cidr
                && !inside(site, diags, &addr.value, &addr.loc, c, &format!("docker network `{}`", n.name), "address")
            {
                continue;
            }
            if n.gateway.as_ref().is_some_and(|g| g.value == addr.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("`{}` is the gateway of docker network `{}`", addr.value, n.name),
                        addr.loc.clone(),
                    )
                    .help("pick a free address in the network"),
                );
            }
            if let Some((other, loc)) = attached.get(&(*net, addr.value)) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!(
                            "address `{}` on docker network `{}` is used by `{other}` and `{}`",
                            addr.value, n.name, s.name
                        ),
                        addr.loc.clone(),
                    )
                    .also((*loc).clone(), format!("already used by `{other}`"))
                    .help("every container needs its own address on a network"),
                );
            } else {
                attached.insert((*net, ip), (&s.name, &at.loc));
            }
        }
    }
}

/// Reports `addr` outside `net`; returns whether it is inside. The hint names the zone
/// that does hold the address, when one does (an interface put in the wrong zone).
pub(super) fn inside(
    site: &Site,
    diags: &mut Diagnostics,
    addr: &IpAddr,
    loc: &Loc,
    net: &At<ipnet::IpNet>,
    owner: &str,
    what: &str,
) -> bool {
    let n = net.value;
    if !n.contains(addr) {
        diags.push(
            Diagnostic::error("address-outside-zone", format!("{what} `{addr}` is outside {owner} ({n})"), loc.clone())
                .also(net.loc.clone(), format!("{owner} is {n}"))
                .help(
                    match site
                        .zones
                        .iter()
                        .find(|z| owner.starts_with("zone ") && z.cidr.as_ref().is_some_and(|c| c.value.contains(addr)))
                    {
                        Some(z) => format!(
                            "use an address in {n}, or move it to zone `{}` ({}), which holds `{addr}`",
                            z.name,
                            z.cidr.as_ref().map(|c| c.value.to_string()).unwrap_or_default()
                        ),
                        None if owner.starts_with("zone ") => {
                            format!("use an address in {n}; no zone of the site holds `{addr}`")
                        }
                        None => format!("use an address in {n}"),
                    },
                ),
        );
        return false;
    }
    let is_v4_edge = matches!((addr, n), (IpAddr::V4(_), ipnet::IpNet::V4(v4)) if v4.prefix_len() < 31 && (*addr == IpAddr::V4(v4.network()) || *addr == IpAddr::V4(v4.broadcast())));
    if is_v4_edge {
        diags.push(
            Diagnostic::error(
                "address-outside-zone",
                format!("{what} `{addr}` is the network or broadcast address of {owner}"),
                loc.clone(),
            )
            .help("use a host address between the first and the last"),
        );
        return false;
    }
    true
}
