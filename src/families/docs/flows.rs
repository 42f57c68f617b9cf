//! `generated/docs/flows.md`: the flow plan ([`crate::model::flows`]) as a reviewer reads
//! it. A zone × zone matrix of what crosses pfSense (the diagonal is traffic inside a
//! zone, which only the host firewalls see), then, per host, every port it accepts and
//! from whom: exactly the accept rules of its `/etc/nftables.conf`, read from the same
//! grants. Template: `templates/docs/flows.md.j2`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::super::pfsense;
use super::super::provenance::Src;
use crate::diag::Loc;
use crate::model::flows::{Dest, Peer, egress_zone, port_locs};
use crate::model::values::PortSpec;
use crate::model::{HostId, Site, ZoneId};

/// Above this many filter rules (all firewalls together), the flows page links the
/// pfSense configurations instead of tabulating them: a page of tens of thousands of
/// rows helps no reviewer, and the synthetic site's would be most of the docs.
pub const PFSENSE_TABLE_MAX: usize = 1000;

/// A pfSense firewall's filter rules and aliases, as its `config.xml` holds them.
#[derive(Serialize)]
pub struct FirewallRules<'a> {
    /// The firewall host.
    pub host: Src<String>,
    /// Its `config.xml`, relative to the docs.
    pub link: String,
    /// Rules in evaluation order, with their interface's name.
    pub rules: Vec<RuleRow<'a>>,
    /// Its aliases.
    pub aliases: &'a [pfsense::AliasView],
}

/// One filter rule with the name of its interface (the zone, or WAN).
#[derive(Serialize)]
pub struct RuleRow<'a> {
    /// The interface as pfSense shows it.
    pub interface: Src<String>,
    /// The rule.
    pub rule: &'a pfsense::RuleView,
}

/// Every pfSense firewall's rules (empty above [`PFSENSE_TABLE_MAX`]).
pub fn pfsense_rules(site: &Site) -> (Vec<FirewallRules<'_>>, usize) {
    let built = pfsense::built(site);
    let total: usize = built.iter().filter_map(|(_, _, b)| b.as_ref().ok()).map(|b| b.rules.len()).sum();
    if total > PFSENSE_TABLE_MAX {
        return (Vec::new(), total);
    }
    let rules = built
        .iter()
        .filter_map(|(_, h, b)| Some((h, b.as_ref().ok()?)))
        .map(|(h, b)| {
            let host = site.host(*h);
            let name = |key: &str| match b.interfaces.iter().find(|i| i.key == key) {
                Some(i) => i.descr.clone(),
                None => Src::at(key.to_uppercase(), "interface", &host.loc),
            };
            FirewallRules {
                host: Src::at(host.name.clone(), "host", &host.loc),
                link: format!("../{}/config.xml", pfsense::dir_of(&host.name)),
                rules: b.rules.iter().map(|r| RuleRow { interface: name(&r.interface), rule: r }).collect(),
                aliases: &b.aliases,
            }
        })
        .collect();
    (rules, total)
}

/// Context of `docs/flows.md.j2`.
#[derive(Serialize)]
pub struct FlowsContext {
    /// Column heads: the zones by name, then `internet`.
    pub columns: Vec<Src<String>>,
    /// One row per source zone, then `internet`.
    pub rows: Vec<MatrixRow>,
    /// Per host, what it accepts.
    pub hosts: Vec<HostGrants>,
}

/// A row of the matrix.
#[derive(Serialize)]
pub struct MatrixRow {
    /// The source zone (or `internet`).
    pub from: Src<String>,
    /// One cell per column: the ports allowed, `·` for none.
    pub cells: Vec<Src<String>>,
}

/// What one host accepts.
#[derive(Serialize)]
pub struct HostGrants {
    /// The host.
    pub host: Src<String>,
    /// Its addresses.
    pub addresses: Src<String>,
    /// One line per flow and port.
    pub lines: Vec<GrantLine>,
}

/// One accepted port.
#[derive(Serialize)]
pub struct GrantLine {
    /// Protocol and port.
    pub port: Src<String>,
    /// Where from (hosts by name, a zone, the internet).
    pub from: Src<String>,
    /// The flow, as written.
    pub flow: Src<String>,
    /// Its why.
    pub why: Src<String>,
}

/// The zone a destination host receives on: its interface in the source's zone if it
/// has one (a neighbour), else its first (where its default route is).
fn ingress_zone(site: &Site, to: HostId, from: Option<ZoneId>) -> Option<ZoneId> {
    let ifaces = &site.host(to).interfaces;
    from.and_then(|z| ifaces.iter().find(|i| i.zone.value == z)).or(ifaces.first()).map(|i| i.zone.value)
}

/// Builds the flows page.
pub fn flows(site: &Site) -> FlowsContext {
    let plan = site.flow_plan();
    let internet = site.zones.len();
    // (source column, destination column) → ports, with the flows they come from.
    type Cell<'a> = (BTreeSet<PortSpec>, Vec<&'a Loc>);
    let mut cells: BTreeMap<(usize, usize), Cell> = BTreeMap::new();
    let mut per_host: BTreeMap<HostId, BTreeMap<(usize, PortSpec), BTreeSet<String>>> = BTreeMap::new();
    for g in &plan.grants {
        let dest_host = match g.to {
            Dest::Host(h) => Some(h),
            Dest::Internet => None,
        };
        let from_zone = match g.from {
            Peer::Zone(z) => Some(z),
            Peer::Host(h) => egress_zone(site, h, dest_host),
            Peer::Internet => None,
        };
        let to_zone = dest_host.and_then(|h| ingress_zone(site, h, from_zone));
        let col = |z: Option<ZoneId>| z.map_or(internet, |z| z.0);
        let cell = cells.entry((col(from_zone), col(to_zone))).or_default();
        cell.0.insert(g.port);
        cell.1.extend(port_locs(site, g.flow, g.port));
        if let Some(h) = dest_host {
            let from = match g.from {
                Peer::Host(x) => site.host(x).name.clone(),
                Peer::Zone(z) => format!("zone {}", site.zone(z).name),
                Peer::Internet => "internet".to_string(),
            };
            per_host.entry(h).or_default().entry((g.flow, g.port)).or_default().insert(from);
        }
    }
    // What the host firewall accepts from its own containers (a native service there).
    for h in (0..site.hosts.len()).map(HostId) {
        for (port, i) in crate::families::nftables::container_to_host(site, h) {
            let from = format!("containers of {}", site.host(h).name);
            per_host.entry(h).or_default().entry((i, port)).or_default().insert(from);
        }
    }
    let name = |c: usize| if c == internet { "internet".to_string() } else { site.zones[c].name.clone() };
    let zone_loc = |c: usize| if c == internet { None } else { Some(&site.zones[c].loc) };
    let columns = (0..=internet).map(|c| Src::of(name(c), "zone", zone_loc(c))).collect();
    let rows = (0..=internet)
        .map(|r| MatrixRow {
            from: Src::of(name(r), "zone", zone_loc(r)),
            cells: (0..=internet)
                .map(|c| match cells.get(&(r, c)) {
                    Some((ports, locs)) => {
                        let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
                        Src::of(ports.join(", "), "ports of the flows", locs.iter().copied())
                    }
                    None => Src::of("·".to_string(), "no flow", []),
                })
                .collect(),
        })
        .collect();
    let hosts = per_host
        .into_iter()
        .map(|(h, lines)| {
            let host = site.host(h);
            HostGrants {
                host: Src::at(host.name.clone(), "host", &host.loc),
                addresses: Src::of(
                    host.interfaces.iter().map(|i| i.address.value.to_string()).collect::<Vec<_>>().join(", "),
                    "host addresses",
                    host.interfaces.iter().map(|i| &i.address.loc),
                ),
                lines: lines
                    .into_iter()
                    .map(|((i, port), from)| {
                        let f = &site.flows[i];
                        GrantLine {
                            port: Src::of(port.to_string(), "port", port_locs(site, i, port)),
                            from: Src::at(from.into_iter().collect::<Vec<_>>().join(", "), "sources", &f.from.loc),
                            flow: Src::of(site.flow_name(f), "flow", [&f.from.loc, &f.to.loc]),
                            why: Src::at(f.why.clone(), "flow reason", &f.loc),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    FlowsContext { columns, rows, hosts }
}
