//! The flow compiler: the site's `[[flows]]` as who may open what on which machine.
//!
//! Every allow-list medianest writes (host firewalls, pfSense rules, HAProxy's stats ACL,
//! Nginx `allow` lines, `pg_hba`, listen addresses) reads this one form, so two artifacts
//! can never disagree about what is allowed. The form is a list of [`Grant`]s: "`from`
//! may open `port` on `to`, because of flow *n*". Endpoints are expanded to machines
//! here, once: a service becomes each of its hosts, a destination zone each host with an
//! interface in it except the firewall (in every zone; its own services are reached by
//! naming it); a source zone stays a zone (its network is the match, which also
//! covers machines the site does not list, like an operator's laptop).
//!
//! Traffic inside one zone is traffic: two hosts that share a VLAN never cross pfSense,
//! but each host's own firewall drops what no flow allows, so every connection needs a
//! flow whatever the zones. Only a host talking to itself (over loopback) needs none.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::values::PortSpec;
use super::{Endpoint, HostId, Site, ZoneId};
use crate::diag::Loc;

/// Who opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// One machine of the site, from any of its addresses.
    Host(HostId),
    /// Any address in a zone's network.
    Zone(ZoneId),
    /// Anything outside the site.
    Internet,
}

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dest {
    /// One machine of the site (any of its addresses).
    Host(HostId),
    /// Anything outside the site.
    Internet,
}

/// One permission: `from` may open `port` on `to`, because of `site.flows[flow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// The destination.
    pub to: Dest,
    /// The protocol and port.
    pub port: PortSpec,
    /// The source.
    pub from: Peer,
    /// Index of the flow in [`Site::flows`].
    pub flow: usize,
}

/// The compiled flows of a site (see [`Site::flow_plan`]).
#[derive(Debug, Default)]
pub struct Plan {
    /// Every grant, sorted by destination, port, source and flow; no duplicates.
    pub grants: Vec<Grant>,
    /// For each host (by id), the indexes of the grants whose destination it is.
    into: Vec<Vec<usize>>,
    /// For each host (by id), the indexes of the grants it may use as a source (its own,
    /// and its zones').
    out_of: Vec<Vec<usize>>,
    /// For each host (by id), the (port, flow) pairs of flows from it to itself (two of
    /// its services): no grant, since loopback passes, but a server still listens where
    /// the client connects.
    local: Vec<Vec<(PortSpec, usize)>>,
}

impl Plan {
    /// Compiles the site's flows. Endpoints that failed to resolve never reach here.
    pub fn compile(site: &Site) -> Plan {
        let mut set: BTreeSet<Grant> = BTreeSet::new();
        let mut local: Vec<BTreeSet<(PortSpec, usize)>> = vec![BTreeSet::new(); site.hosts.len()];
        for (i, f) in site.flows.iter().enumerate() {
            let sources: Vec<Peer> = match f.from.value {
                Endpoint::Service(s) => site.service(s).hosts.iter().map(|h| Peer::Host(h.value)).collect(),
                Endpoint::Host(h) => vec![Peer::Host(h)],
                Endpoint::Zone(z) => vec![Peer::Zone(z)],
                Endpoint::Internet => vec![Peer::Internet],
            };
            let dests: Vec<Dest> = match f.to.value {
                Endpoint::Service(s) => site.service(s).hosts.iter().map(|h| Dest::Host(h.value)).collect(),
                Endpoint::Host(h) => vec![Dest::Host(h)],
                Endpoint::Zone(z) => zone_destinations(site, z).map(Dest::Host).collect(),
                Endpoint::Internet => vec![Dest::Internet],
            };
            for &to in &dests {
                for &from in &sources {
                    // A host to itself goes over loopback, which every firewall passes.
                    if let (Peer::Host(a), Dest::Host(b)) = (from, to)
                        && a == b
                    {
                        local[a.0].extend(f.ports.iter().map(|p| (p.value, i)));
                        continue;
                    }
                    for p in &f.ports {
                        set.insert(Grant { to, port: p.value, from, flow: i });
                    }
                }
            }
        }
        let grants: Vec<Grant> = set.into_iter().collect();
        let mut into = vec![Vec::new(); site.hosts.len()];
        let mut out_of = vec![Vec::new(); site.hosts.len()];
        let mut zone_hosts: Vec<Vec<HostId>> = vec![Vec::new(); site.zones.len()];
        for h in (0..site.hosts.len()).map(HostId) {
            for z in site.host_zones(h) {
                zone_hosts[z.0].push(h);
            }
        }
        for (i, g) in grants.iter().enumerate() {
            if let Dest::Host(h) = g.to {
                into[h.0].push(i);
            }
            match g.from {
                Peer::Host(h) => out_of[h.0].push(i),
                Peer::Zone(z) => {
                    for h in &zone_hosts[z.0] {
                        out_of[h.0].push(i);
                    }
                }
                Peer::Internet => {}
            }
        }
        let local = local.into_iter().map(|l| l.into_iter().collect()).collect();
        Plan { grants, into, out_of, local }
    }

    /// The grants whose destination is `host`, sorted by port then source.
    pub fn into_host(&self, host: HostId) -> impl Iterator<Item = &Grant> {
        self.into.get(host.0).into_iter().flatten().map(|&i| &self.grants[i])
    }

    /// The (port, flow) pairs of flows between two services of `host` (see `local`).
    pub fn local_to(&self, host: HostId) -> impl Iterator<Item = (PortSpec, usize)> + '_ {
        self.local.get(host.0).into_iter().flatten().copied()
    }

    /// The grants `host` may use as a source (as itself or as a machine of one of its zones:
    /// whether that zone covers it depends on the destination, see [`egress_zone`]).
    pub fn out_of_host(&self, host: HostId) -> impl Iterator<Item = &Grant> {
        self.out_of.get(host.0).into_iter().flatten().map(|&i| &self.grants[i])
    }

    /// Whether `from` (a host, or the internet when `None`) may open `port` on `to` (a
    /// host, or the internet when `None`): a host always reaches itself; otherwise a
    /// grant must allow it, whatever the zones.
    pub fn allows(&self, site: &Site, from: Option<HostId>, to: Option<HostId>, port: PortSpec) -> bool {
        self.allowing(site, from, to, port).next().is_some()
    }

    /// Whether `from` may open any port at all on `to` (a host always reaches itself).
    pub fn reaches(&self, site: &Site, from: HostId, to: HostId) -> bool {
        from == to || self.into_host(to).any(|g| covers(site, g.from, Some(from), Some(to)))
    }

    /// The grants that let `from` open `port` on `to` (see [`Plan::allows`]); empty for
    /// a host talking to itself, which needs none.
    pub fn allowing<'a>(
        &'a self,
        site: &'a Site,
        from: Option<HostId>,
        to: Option<HostId>,
        port: PortSpec,
    ) -> Box<dyn Iterator<Item = &'a Grant> + 'a> {
        match (from, to) {
            (Some(a), Some(b)) if a == b => Box::new(std::iter::once(&SELF)),
            (_, Some(b)) => {
                Box::new(self.into_host(b).filter(move |g| g.port == port && covers(site, g.from, from, Some(b))))
            }
            (Some(a), None) => Box::new(
                self.out_of_host(a)
                    .filter(move |g| g.to == Dest::Internet && g.port == port && covers(site, g.from, from, None)),
            ),
            (None, None) => Box::new(std::iter::empty()),
        }
    }
}

/// The machines a destination zone stands for: those with an interface in it, except
/// the firewall. It has an address in every zone, and "operator SSH to the app hosts"
/// must not open the firewall's own SSH; its services are reached by naming it
/// (`service:pfsense`).
pub fn zone_destinations(site: &Site, z: ZoneId) -> impl Iterator<Item = HostId> + '_ {
    site.hosts
        .iter()
        .enumerate()
        .filter(move |(_, h)| h.kind.value.is_linux() && h.interfaces.iter().any(|x| x.zone.value == z))
        .map(|(id, _)| HostId(id))
}

/// Stands for "a host to itself" in [`Plan::allowing`].
static SELF: Grant = Grant {
    to: Dest::Internet,
    port: PortSpec { proto: super::values::Proto::Tcp, port: 0 },
    from: Peer::Internet,
    flow: usize::MAX,
};

/// Whether a source peer covers a machine (or the internet when `None`) opening a
/// connection to `to` (a host, or the internet).
fn covers(site: &Site, peer: Peer, from: Option<HostId>, to: Option<HostId>) -> bool {
    match (peer, from) {
        (Peer::Host(h), Some(f)) => h == f,
        (Peer::Zone(z), Some(f)) => egress_zone(site, f, to) == Some(z),
        (Peer::Internet, None) => true,
        _ => false,
    }
}

/// The zone whose address a host's packets to `to` carry: a machine in several zones
/// (the firewall) talks to a neighbour from its interface on their shared zone, and to
/// anything else through its first interface (where its default route is). So
/// `zone:management` covers the firewall only for what it reaches from its management
/// address, which is what the receiving firewall sees.
pub fn egress_zone(site: &Site, from: HostId, to: Option<HostId>) -> Option<ZoneId> {
    let ifaces = &site.host(from).interfaces;
    to.and_then(|t| {
        let theirs = site.host_zones(t);
        ifaces.iter().find(|i| theirs.contains(&i.zone.value))
    })
    .or(ifaces.first())
    .map(|i| i.zone.value)
}

/// The networks a peer's packets come from: a host's addresses (as /32 or /128), a
/// zone's network, or nothing for the internet (any address).
pub fn peer_networks(site: &Site, peer: Peer) -> Vec<IpNet> {
    match peer {
        Peer::Host(h) => site.host(h).interfaces.iter().map(|i| IpNet::from(i.address.value)).collect(),
        Peer::Zone(z) => site.zone(z).cidr.iter().map(|c| c.value).collect(),
        Peer::Internet => Vec::new(),
    }
}

/// The index of `host`'s interface that a connection from `from` arrives at: its
/// interface in the zone the source speaks from (see [`egress_zone`]), else its first
/// (anything routed comes in there).
pub fn arrival(site: &Site, host: HostId, from: Peer) -> usize {
    let zone = match from {
        Peer::Host(src) => egress_zone(site, src, Some(host)),
        Peer::Zone(z) => Some(z),
        Peer::Internet => None,
    };
    zone.and_then(|z| site.host(host).interfaces.iter().position(|x| x.zone.value == z)).unwrap_or(0)
}

/// Where a source's networks were written: a host's interface addresses or a zone's
/// network, then the flow's `from` (which is all there is for the internet).
pub fn peer_locs<'a>(site: &'a Site, p: Peer, from: &'a Loc) -> Vec<&'a Loc> {
    match p {
        Peer::Host(h) => site.host(h).interfaces.iter().map(|i| &i.address.loc).chain([from]).collect(),
        Peer::Zone(z) => site.zone(z).cidr.iter().map(|c| &c.loc).chain([from]).collect(),
        Peer::Internet => vec![from],
    }
}

/// Where a grant's port was written: in the flow, and, when the flow names the port of
/// its destination service (`ports = ["dns"]`), where that service declares it.
pub fn port_locs(site: &Site, flow: usize, port: PortSpec) -> Vec<&Loc> {
    let f = &site.flows[flow];
    let mut v: Vec<&Loc> = f.ports.iter().filter(|p| p.value == port).map(|p| &p.loc).collect();
    if let Endpoint::Service(s) = f.to.value {
        v.extend(site.service(s).ports.iter().filter(|p| p.spec == port).filter_map(|p| p.loc.as_ref()));
    }
    if v.is_empty() {
        v.push(&f.loc);
    }
    v
}

/// The addresses a destination host accepts connections on.
pub fn host_addresses(site: &Site, host: HostId) -> Vec<IpAddr> {
    site.host(host).interfaces.iter().map(|i| i.address.value).collect()
}
