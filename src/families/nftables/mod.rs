//! Family **nftables**: a host firewall for every Linux host, `/etc/nftables.conf`,
//! read from the flow plan ([`crate::model::flows`]) like every other allow-list.
//!
//! Input is dropped unless a flow lets its source open that port on this host (inside a
//! zone too: pfSense never sees that traffic, so this is the only filter there), and the
//! drops are logged, rate-limited. Output is not filtered here: pfSense filters what
//! leaves a zone, and each receiver filters what arrives.
//!
//! The ruleset is one table, `inet medianest`, replaced atomically (`table … delete
//! table … table { … }` in one transaction) and never `flush ruleset`: Docker keeps its
//! own tables beside it on the same hooks. Docker forwards a published container port
//! after rewriting its destination, so that traffic never reaches `input`; a `forward`
//! chain applies the same grants to the port the client asked for (`ct original
//! proto-dst`). Template: `templates/nftables/nftables.conf.j2`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering};
use crate::artifact::{ArtifactMeta, Probe, Validator};
use crate::diag::Loc;
use crate::model::facts::{Fact, Val};
use crate::model::flows::{Peer, peer_locs, peer_networks, port_locs};
use crate::model::values::{PortSpec, Proto};
use crate::model::{HostId, Role, Site};

/// The nftables family.
pub struct Nftables;

/// Context of `nftables/nftables.conf.j2`.
#[derive(Serialize)]
pub struct NftContext {
    /// The host.
    pub host: Src<String>,
    /// What may reach this host, one entry per flow and port.
    pub rules: Vec<RuleView>,
    /// Whether Docker publishes container ports here (then the `forward` chain filters
    /// them).
    pub docker: Src<bool>,
    /// The Docker networks of this host's containers, which reach the host's own ports
    /// (traffic inside one machine).
    pub container_networks: Vec<Src<String>>,
    /// Flows from a container on this host to a port of this host (Grafana to Prometheus
    /// on one machine): accepted from Docker's bridges, where such a container's packets
    /// come in whatever its network (a Compose default network has no declared subnet).
    pub local: Vec<LocalView>,
    /// The zones' IPv4 networks: "from the internet" means from none of them (pfSense
    /// forwards public traffic with its source address kept).
    pub site_v4: Vec<Src<String>>,
    /// The zones' IPv6 networks.
    pub site_v6: Vec<Src<String>>,
}

/// One accepted kind of connection: a flow's port, from its sources.
#[derive(Serialize)]
pub struct RuleView {
    /// The flow, as its endpoints are written (`service:pgbouncer → service:postgres`).
    pub flow: Src<String>,
    /// The flow's reason.
    pub why: Src<String>,
    /// The nft match of the protocol and port for IPv4 sources (`tcp dport 5432`).
    pub m4: Src<String>,
    /// The same for IPv6 sources (ICMP differs).
    pub m6: Src<String>,
    /// The match of a published container port, on the port the client asked for
    /// before Docker rewrote it (TCP and UDP only).
    pub published: Option<Src<String>>,
    /// From anywhere (a flow from the internet).
    pub any: bool,
    /// IPv4 source networks.
    pub v4: Vec<Src<String>>,
    /// IPv6 source networks.
    pub v6: Vec<Src<String>>,
}

/// A local flow from this host's containers.
#[derive(Serialize)]
pub struct LocalView {
    /// The flow, as its endpoints are written.
    pub flow: Src<String>,
    /// The flow's reason.
    pub why: Src<String>,
    /// The nft match of its protocol and port.
    pub m: Src<String>,
}

/// The flows from a container on a Docker host to a port of the host itself (a native
/// service there): (port, flow). Container to container stays on Docker's networks.
pub fn container_to_host(site: &Site, host: HostId) -> Vec<(PortSpec, usize)> {
    use crate::model::Endpoint;
    if !site.host(host).has_role(Role::Docker) {
        return Vec::new();
    }
    let container = |e: Endpoint| matches!(e, Endpoint::Service(s) if site.service(s).image.is_some());
    site.flow_plan()
        .local_to(host)
        .filter(|&(port, i)| {
            let f = &site.flows[i];
            port.proto.has_ports() && container(f.from.value) && !container(f.to.value)
        })
        .collect()
}

/// The accepts of [`container_to_host`].
fn local(site: &Site, host: HostId) -> Vec<LocalView> {
    container_to_host(site, host)
        .into_iter()
        .map(|(port, i)| {
            let f = &site.flows[i];
            LocalView {
                flow: Src::of(site.flow_name(f), "flow", [&f.from.loc, &f.to.loc]),
                why: Src::at(f.why.clone(), "flow reason", &f.loc),
                m: Src::of(proto_match(port, false), "protocol and port", port_locs(site, i, port)),
            }
        })
        .collect()
}

/// The rules of one host: its grants grouped by flow and port, in site order.
fn rules(site: &Site, host: HostId) -> Vec<RuleView> {
    let mut by_flow: BTreeMap<(usize, PortSpec), BTreeSet<Peer>> = BTreeMap::new();
    for g in site.flow_plan().into_host(host) {
        by_flow.entry((g.flow, g.port)).or_default().insert(g.from);
    }
    by_flow
        .into_iter()
        .map(|((i, port), peers)| {
            let f = &site.flows[i];
            let port_locs = port_locs(site, i, port);
            let mut v4 = BTreeMap::<String, Vec<&Loc>>::new();
            let mut v6 = BTreeMap::<String, Vec<&Loc>>::new();
            for p in &peers {
                let locs = peer_locs(site, *p, &f.from.loc);
                for net in peer_networks(site, *p) {
                    let text =
                        if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() };
                    let side = if net.addr().is_ipv4() { &mut v4 } else { &mut v6 };
                    side.entry(text).or_default().extend(locs.iter().copied());
                }
            }
            let srcs = |m: BTreeMap<String, Vec<&Loc>>| -> Vec<Src<String>> {
                m.into_iter().map(|(n, l)| Src::of(n, "source network", l)).collect()
            };
            RuleView {
                flow: Src::of(site.flow_name(f), "flow", [&f.from.loc, &f.to.loc]),
                why: Src::at(f.why.clone(), "flow reason", &f.loc),
                m4: Src::of(proto_match(port, false), "protocol and port", port_locs.iter().copied()),
                m6: Src::of(proto_match(port, true), "protocol and port", port_locs.iter().copied()),
                published: port.proto.has_ports().then(|| {
                    Src::of(
                        format!("meta l4proto {} ct original proto-dst {}", port.proto, port.port),
                        "protocol and port",
                        port_locs.iter().copied(),
                    )
                }),
                any: peers.contains(&Peer::Internet),
                v4: srcs(v4),
                v6: srcs(v6),
            }
        })
        .collect()
}

/// The nft match of a protocol and port, for one address family.
fn proto_match(p: PortSpec, v6: bool) -> String {
    match p.proto {
        Proto::Tcp | Proto::Udp => format!("{} dport {}", p.proto, p.port),
        Proto::Vrrp => "meta l4proto vrrp".into(),
        Proto::Icmp if v6 => "icmpv6 type echo-request".into(),
        Proto::Icmp => "icmp type echo-request".into(),
    }
}

impl Family for Nftables {
    fn name(&self) -> &'static str {
        "nftables"
    }

    /// What each host's firewall accepts (`tcp/5432 from db2`), so a review sees where a
    /// new flow opens a port, and a port opened to more sources reads as a relaxation.
    fn facts(&self, site: &Site) -> Vec<Fact> {
        let mut out = Vec::new();
        for (i, h) in site.hosts.iter().enumerate().filter(|(_, h)| h.kind.value.is_linux()) {
            let mut by_port: BTreeMap<PortSpec, BTreeSet<String>> = BTreeMap::new();
            for g in site.flow_plan().into_host(HostId(i)) {
                by_port.entry(g.port).or_default().insert(match g.from {
                    Peer::Host(x) => site.host(x).name.clone(),
                    Peer::Zone(z) => format!("zone {}", site.zone(z).name),
                    Peer::Internet => "internet".to_string(),
                });
            }
            let lines =
                by_port.into_iter().flat_map(|(p, from)| from.into_iter().map(move |f| format!("{p} from {f}")));
            out.push(Fact { category: "firewall", subject: h.name.clone(), field: "accepts", value: Val::many(lines) });
        }
        out
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for (i, h) in site.hosts.iter().enumerate().filter(|(_, h)| h.kind.value.is_linux()) {
            let id = HostId(i);
            let mut nets = BTreeMap::<String, Vec<&Loc>>::new();
            for s in site.services_on(id) {
                for (net, _) in &site.service(s).networks {
                    if let Some(c) = &site.network(*net).cidr {
                        nets.entry(c.value.to_string()).or_default().push(&c.loc);
                    }
                }
            }
            let (mut site_v4, mut site_v6) = (Vec::new(), Vec::new());
            for c in site.zones.iter().filter_map(|z| z.cidr.as_ref()) {
                let side = if c.value.addr().is_ipv4() { &mut site_v4 } else { &mut site_v6 };
                side.push(Src::at(c.value.to_string(), "zone network", &c.loc));
            }
            let docker: Vec<&Loc> = h.roles.iter().filter(|r| r.value == Role::Docker).map(|r| &r.loc).collect();
            let ctx = NftContext {
                host: Src::at(h.name.clone(), "host", &h.loc),
                rules: rules(site, id),
                local: local(site, id),
                docker: Src::of(!docker.is_empty(), "docker role", docker),
                container_networks: nets.into_iter().map(|(n, l)| Src::of(n, "docker network", l)).collect(),
                site_v4,
                site_v6,
            };
            let mut meta = ArtifactMeta::host_file(self.name(), &h.name, "/etc/nftables.conf", 0o755, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.validate = Some(Validator::Nft);
                a.reload = Some("nftables.service".into());
                // A ruleset that cut the host off its repository would also block the
                // commit that fixes it: the agent checks, and restores the old rules.
                a.probe = Some(Probe::Refetch);
            }
            out.add("nftables/nftables.conf.j2", &ctx, meta, Some(h.loc.clone()));
        }
    }
}
