//! Family **pfsense**: the firewall's `config.xml`, structured as pfSense's own (CE
//! 2.7, config version 23.3), and an operator script that installs it with a
//! confirm-or-revert timer. pfSense runs no medianest agent, so both are written under
//! `generated/firewall/<host>/` and applied by hand.
//!
//! Every pass rule comes from the flow compiler ([`Site::flow_plan`]): a grant becomes a
//! rule on the interface its packets arrive on (the source's zone), unless its source and
//! destination share a zone (then it never crosses pfSense), except when the destination
//! is the firewall itself. Grants from the internet become WAN port forwards to the edge
//! floating address (or the one host they reach) with their filter rules. Every
//! interface ends with a logged block rule; the administering zone (pfSense's LAN) alone
//! keeps pfSense's anti-lockout rule. The whole file is built once as a typed form
//! ([`Built`]), which the checks and the template both read. Templates:
//! `templates/pfsense/config.xml.j2`, `templates/pfsense/apply-config.sh.j2`.

pub mod keys;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::provenance::Src;
use super::{Family, Lowering, Part, edge, keepalived};
use crate::artifact::ArtifactMeta;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::flows::{Dest, Grant, Peer};
use crate::model::values::{PortSpec, Proto};
use crate::model::{Endpoint, HostId, HostKind, ServiceId, ServiceKind, Site, ZoneId};
use keys::{Firewall, WanAddress};

/// The config version pfSense CE 2.7.1/2.7.2 writes (its `latest_config`).
pub const CONFIG_VERSION: &str = "23.3";

/// Longest alias name pfSense accepts (`is_validaliasname`: shorter than 32).
pub const ALIAS_MAX: usize = 31;

/// The pfsense model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { services: BTreeMap::new(), built: std::sync::OnceLock::new() };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The pfsense family.
pub struct Pfsense;

/// One firewall's config, or why it cannot be built.
pub type Firewalled = (ServiceId, HostId, Result<Built, Vec<Diagnostic>>);

/// Every firewall's config, built once per site (see [`keys::Model::built`]).
pub fn built(site: &Site) -> &[Firewalled] {
    model(site)
        .built
        .get_or_init(|| firewalls(site).into_iter().map(|(id, fw, h)| (id, h, build(site, id, fw, h))).collect())
}

/// Where the firewall's files go (under `generated/`).
pub fn dir_of(host: &str) -> String {
    format!("firewall/{host}")
}

/// Context of `pfsense/config.xml.j2`: the whole file, typed.
#[derive(Serialize)]
pub struct Built {
    /// `<version>`.
    pub version: &'static str,
    /// Host name.
    pub hostname: Src<String>,
    /// Internal domain.
    pub domain: Src<String>,
    /// Web GUI port (kept open by the anti-lockout rule on the LAN).
    pub admin_port: Src<u16>,
    /// The WAN.
    pub wan: WanView,
    /// The zone interfaces, LAN first, then `opt1`, `opt2`, … in zone order.
    pub interfaces: Vec<IfaceView>,
    /// VLANs tagged on the trunk.
    pub vlans: Vec<VlanView>,
    /// Aliases, by name.
    pub aliases: Vec<AliasView>,
    /// Filter rules: per interface (LAN, opt…, WAN), passes in flow order, then the
    /// logged block.
    pub rules: Vec<RuleView>,
    /// WAN port forwards.
    pub nat: Vec<NatView>,
    /// Remote syslog.
    pub syslog: Option<SyslogView>,
    /// The Unbound resolver.
    pub unbound: UnboundView,
}

/// `<interfaces><wan>`.
#[derive(Serialize)]
pub struct WanView {
    /// OS name of the port.
    pub ifname: Src<String>,
    /// `dhcp` or the address.
    pub ipaddr: Src<String>,
    /// Prefix length (empty with DHCP).
    pub subnet: Src<String>,
    /// The upstream gateway of a static address.
    pub gateway: Option<Src<String>>,
}

/// `<interfaces><lan|optN>`.
#[derive(Serialize)]
pub struct IfaceView {
    /// `lan` or `optN`: what rules refer to.
    pub key: String,
    /// The zone, as pfSense shows it (upper case).
    pub descr: Src<String>,
    /// OS device: the trunk, a VLAN interface, or a port of its own.
    pub ifname: Src<String>,
    /// The zone gateway (the firewall's address in the zone).
    pub ipaddr: Src<String>,
    /// The zone's prefix length.
    pub subnet: Src<String>,
    /// Whether the zone is IPv6: pfSense then reads `ipaddrv6` and `subnetv6`.
    pub ipv6: bool,
    /// The zone.
    #[serde(skip)]
    pub zone: ZoneId,
}

/// `<vlans><vlan>`.
#[derive(Serialize)]
pub struct VlanView {
    /// The trunk port.
    pub parent: Src<String>,
    /// The zone's VLAN id.
    pub tag: Src<u16>,
    /// The zone.
    pub descr: Src<String>,
    /// The VLAN interface's OS name.
    pub vlanif: Src<String>,
}

/// `<aliases><alias>`.
#[derive(Serialize)]
pub struct AliasView {
    /// Name (letters, digits, `_`; at most 31).
    pub name: Src<String>,
    /// `host`, `network` or `port`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Entries, space-separated.
    pub address: Src<String>,
    /// What it stands for.
    pub descr: Src<String>,
    /// One description per entry, `||`-separated.
    pub detail: Src<String>,
    /// Entries, for the checks and tests.
    #[serde(skip)]
    pub entries: Vec<String>,
}

/// A rule's source or destination.
#[derive(Serialize, Clone)]
pub struct EndView {
    /// `<any/>`.
    pub any: bool,
    /// `<network>` (`wanip`).
    pub network: Option<String>,
    /// `<address>`: an address or an alias.
    pub address: Option<Src<String>>,
    /// `<port>`: a number or a port alias.
    pub port: Option<Src<String>>,
    /// `<not/>`.
    pub not: bool,
}

impl EndView {
    fn any() -> Self {
        EndView { any: true, network: None, address: None, port: None, not: false }
    }
    fn address(a: Src<String>) -> Self {
        EndView { any: false, network: None, address: Some(a), port: None, not: false }
    }
}

/// `<filter><rule>`.
#[derive(Serialize)]
pub struct RuleView {
    /// `pass` or `block`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Interface key.
    pub interface: String,
    /// `inet`.
    pub ipprotocol: &'static str,
    /// `tcp`, `udp`, `tcp/udp`, `icmp`, `carp`; none for any.
    pub protocol: Option<&'static str>,
    /// Source.
    pub source: EndView,
    /// Destination.
    pub destination: EndView,
    /// Logged.
    pub log: bool,
    /// The flow and its why.
    pub descr: Src<String>,
    /// Unique id, derived from the rule's content.
    pub tracker: u64,
    /// The NAT rule it belongs to.
    pub associated: Option<String>,
}

/// `<nat><rule>`: a WAN port forward.
#[derive(Serialize)]
pub struct NatView {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The WAN port.
    pub port: Src<u16>,
    /// Where it goes.
    pub target: Src<String>,
    /// The port there.
    pub local_port: Src<u16>,
    /// The flow and its why.
    pub descr: Src<String>,
    /// The id its filter rule carries.
    pub associated: String,
}

/// `<syslog>`.
#[derive(Serialize)]
pub struct SyslogView {
    /// `address:port`, at most three.
    pub servers: Vec<Src<String>>,
    /// Interface key the log leaves from.
    pub sourceip: String,
    /// `ipv4` or `ipv6`: the family of that interface's address, which pfSense sends from.
    pub ipproto: &'static str,
}

/// `<unbound>`.
#[derive(Serialize)]
pub struct UnboundView {
    /// Interface keys it answers on, comma-separated.
    pub active_interface: String,
    /// Domain overrides.
    pub overrides: Vec<OverrideView>,
}

/// `<unbound><domainoverrides>`.
#[derive(Serialize)]
pub struct OverrideView {
    /// The internal domain.
    pub domain: Src<String>,
    /// The authoritative server.
    pub ip: Src<String>,
    /// What it is.
    pub descr: Src<String>,
}

/// Context of `pfsense/apply-config.sh.j2`.
#[derive(Serialize)]
pub struct ApplyContext {
    /// The firewall.
    pub host: Src<String>,
    /// Minutes before an unconfirmed config is reverted.
    pub minutes: u32,
}

/// Minutes the operator has to confirm a new config.
pub const CONFIRM_MINUTES: u32 = 5;

/// A pfSense alias name from a site name: `<prefix>_<name>` with `-` as `_`.
pub fn alias_name(prefix: &str, name: &str) -> String {
    format!("{prefix}_{}", name.replace('-', "_"))
}

/// Whether pfSense accepts an alias name (`is_validaliasname`; prefixed names are never
/// an IP protocol or service name, nor `port`/`pass`).
pub fn valid_alias(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ALIAS_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.chars().all(|c| c == '_' || c.is_ascii_digit())
        && name != "port"
        && name != "pass"
}

/// The pfSense services with settings, and their firewall hosts.
fn firewalls(site: &Site) -> Vec<(ServiceId, &Firewall, HostId)> {
    let mut out = Vec::new();
    for (id, fw) in &model(site).services {
        for h in &site.service(*id).hosts {
            if site.host(h.value).kind.value == HostKind::Firewall {
                out.push((*id, fw, h.value));
            }
        }
    }
    out
}

/// Builds a firewall's config, or the reasons it cannot be.
pub fn build(site: &Site, svc: ServiceId, fw: &Firewall, host: HostId) -> Result<Built, Vec<Diagnostic>> {
    Builder {
        site,
        svc,
        fw,
        host,
        errors: Vec::new(),
        aliases: BTreeMap::new(),
        taken: BTreeMap::new(),
        dests: Default::default(),
    }
    .run()
}

struct Builder<'a> {
    site: &'a Site,
    svc: ServiceId,
    fw: &'a Firewall,
    host: HostId,
    errors: Vec<Diagnostic>,
    aliases: BTreeMap<String, AliasView>,
    /// Alias name → what it was derived from, to catch two site names that map to one.
    taken: BTreeMap<String, (String, Loc)>,
    /// What each destination endpoint became: many flows share one (36,000 flows to
    /// 10,000 services on the synthetic site).
    dests: std::collections::HashMap<Endpoint, Option<EndView>>,
}

fn hash_u64(parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Trackers of generated rules live above pfSense's own (`TRACKER_DEFAULT` 1000000000,
/// counting up) and below 2^32 (pf's `ridentifier`).
const TRACKER_BASE: u64 = 2_000_000_000;
const TRACKER_SPAN: u64 = 2_000_000_000;

impl<'a> Builder<'a> {
    fn err(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn fw_host(&self) -> &'a crate::model::Host {
        self.site.host(self.host)
    }

    /// Registers an alias; `None` (and an error) when its name is not one pfSense takes.
    fn alias(
        &mut self,
        prefix: &str,
        what: &str,
        site_name: &str,
        loc: &Loc,
        kind: &'static str,
        entries: Vec<(String, String, Vec<Loc>)>,
    ) -> Option<Src<String>> {
        let name = alias_name(prefix, site_name);
        if !valid_alias(&name) {
            self.err(
                Diagnostic::error(
                    "bad-name",
                    format!(
                        "{what} `{site_name}` becomes pfSense alias `{name}`, {} characters: pfSense accepts at most {ALIAS_MAX}",
                        name.len()
                    ),
                    loc.clone(),
                )
                .help(format!("shorten the name to at most {} characters", ALIAS_MAX - prefix.len() - 1)),
            );
            return None;
        }
        let desc = format!("{what} `{site_name}`");
        if let Some((other, at)) = self.taken.get(&name) {
            if *other == desc {
                let at = at.clone();
                return Some(Src::at(name, "pfSense alias", &at));
            }
            let (other, at) = (other.clone(), at.clone());
            self.err(
                Diagnostic::error(
                    "bad-name",
                    format!("{desc} and {other} both become pfSense alias `{name}`"),
                    loc.clone(),
                )
                .also(at, "this one too")
                .help("pfSense alias names have `_` for `-`: rename one of the two"),
            );
            return None;
        }
        self.taken.insert(name.clone(), (desc.clone(), loc.clone()));
        let mut entries = entries;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        let all_locs: Vec<Loc> = entries.iter().flat_map(|e| e.2.iter().cloned()).collect();
        let view = AliasView {
            name: Src::at(name.clone(), "pfSense alias", loc),
            kind,
            address: Src::of(
                entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join(" "),
                "alias entries",
                &all_locs,
            ),
            descr: Src::at(desc, "alias of", loc),
            detail: Src::of(
                entries.iter().map(|e| e.1.as_str()).collect::<Vec<_>>().join("||"),
                "alias entry names",
                &all_locs,
            ),
            entries: entries.iter().map(|e| e.0.clone()).collect(),
        };
        self.aliases.insert(name.clone(), view);
        Some(Src::at(name, "pfSense alias", loc))
    }

    /// The addresses of a set of hosts, as alias entries.
    fn host_entries(&self, hosts: impl IntoIterator<Item = (HostId, Loc)>) -> Vec<(String, String, Vec<Loc>)> {
        let mut out = Vec::new();
        for (h, member) in hosts {
            let host = self.site.host(h);
            for i in &host.interfaces {
                out.push((i.address.value.to_string(), host.name.clone(), vec![i.address.loc.clone(), member.clone()]));
            }
        }
        out
    }

    /// The alias (or address) a flow's destination endpoint becomes.
    fn dest_of(&mut self, e: &Endpoint, at: &Loc) -> Option<EndView> {
        if let Some(v) = self.dests.get(e) {
            return v.clone();
        }
        let v = self.dest_uncached(e, at);
        self.dests.insert(*e, v.clone());
        v
    }

    fn dest_uncached(&mut self, e: &Endpoint, at: &Loc) -> Option<EndView> {
        let site = self.site;
        let addr = match *e {
            Endpoint::Service(s) => {
                let svc = site.service(s);
                let entries = self.host_entries(svc.hosts.iter().map(|h| (h.value, h.loc.clone())));
                self.alias("svc", "service", &svc.name, &svc.loc, "host", entries)?
            }
            Endpoint::Host(h) => {
                let host = site.host(h);
                let entries = self.host_entries([(h, host.loc.clone())]);
                self.alias("host", "host", &host.name, &host.loc, "host", entries)?
            }
            Endpoint::Zone(z) => {
                let zone = site.zone(z);
                // The same machines as the flow plan's grants (never the firewall).
                let hosts: Vec<(HostId, Loc)> = crate::model::flows::zone_destinations(site, z)
                    .filter_map(|h| {
                        site.host(h).interfaces.iter().find(|x| x.zone.value == z).map(|x| (h, x.zone.loc.clone()))
                    })
                    .collect();
                let entries = self.host_entries(hosts);
                self.alias("hosts", "hosts of zone", &zone.name, &zone.loc, "host", entries)?
            }
            Endpoint::Internet => {
                let entries = site
                    .zones
                    .iter()
                    .filter_map(|z| z.cidr.as_ref().map(|c| (c.value.to_string(), z.name.clone(), vec![c.loc.clone()])))
                    .collect();
                let name = self.alias("site", "the site's networks", "networks", at, "network", entries)?;
                let mut v = EndView::address(name);
                v.not = true;
                return Some(v);
            }
        };
        Some(EndView::address(addr))
    }

    /// `net_<zone>`: a zone's network.
    fn net_of(&mut self, z: ZoneId) -> Option<Src<String>> {
        let zone = self.site.zone(z);
        let c = zone.cidr.as_ref()?;
        let entries = vec![(c.value.to_string(), zone.name.clone(), vec![c.loc.clone()])];
        self.alias("net", "network of zone", &zone.name, &zone.loc, "network", entries)
    }

    /// A rule's destination port: one number, or a port alias of several.
    fn port_of(&mut self, ports: &[(u16, Loc)], flow_loc: &Loc) -> Option<Src<String>> {
        match ports {
            [] => None,
            [(p, loc)] => Some(Src::at(p.to_string(), "port", loc)),
            many => {
                let nums: Vec<String> = many.iter().map(|(p, _)| p.to_string()).collect();
                let mut name = nums.join("_");
                if name.len() + 6 > ALIAS_MAX {
                    name = format!("{:012x}", hash_u64(&nums.iter().map(String::as_str).collect::<Vec<_>>()) >> 16);
                }
                let entries = many.iter().map(|(p, l)| (p.to_string(), format!("port {p}"), vec![l.clone()])).collect();
                let what = format!("ports {}", nums.join(" "));
                self.alias("ports", &what, &name, flow_loc, "port", entries)
            }
        }
    }

    fn run(mut self) -> Result<Built, Vec<Diagnostic>> {
        let site = self.site;
        let fw = self.fw;
        let host = self.fw_host();
        let svc = site.service(self.svc);
        // Interfaces: one per zone, the administering zone as LAN.
        let mut ifaces: Vec<IfaceView> = Vec::new();
        let mut vlans: Vec<VlanView> = Vec::new();
        let mut seen_names: BTreeMap<String, Loc> = BTreeMap::new();
        let mut opt = 0;
        let mut order: Vec<ZoneId> = (0..site.zones.len()).map(ZoneId).collect();
        if let Some(a) = &fw.admin_zone {
            order.sort_by_key(|z| *z != a.value);
        }
        for z in order {
            let zone = site.zone(z);
            let Some(i) = host.interfaces.iter().find(|i| i.zone.value == z) else {
                self.err(
                    Diagnostic::error(
                        "bad-placement",
                        format!(
                            "zone `{}` has no interface on firewall `{}`: no VLAN on the trunk or port carries it, so pfSense cannot route it",
                            zone.name, host.name
                        ),
                        zone.loc.clone(),
                    )
                    .also(host.loc.clone(), "the firewall")
                    .help(format!(
                        "add `{{ zone = \"{}\", address = \"<the zone gateway>\", name = \"vlan{}\" }}` to `{}`'s interfaces",
                        zone.name,
                        zone.vlan.as_ref().map(|v| v.value).unwrap_or(0),
                        host.name
                    )),
                );
                continue;
            };
            let Some(name) = &i.name else {
                self.err(
                    Diagnostic::error(
                        "missing-key",
                        format!("pfSense needs the OS name of `{}`'s interface in zone `{}`", host.name, zone.name),
                        i.zone.loc.clone(),
                    )
                    .help("add `name = \"vlan20\"` (a VLAN on the trunk) or the port's name, e.g. `igb2`"),
                );
                continue;
            };
            if let Some(first) = seen_names.insert(name.value.clone(), name.loc.clone()) {
                self.err(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` names two of `{}`'s interfaces", name.value, host.name),
                        name.loc.clone(),
                    )
                    .also(first, "first here")
                    .help("each zone needs its own port or VLAN interface"),
                );
            }
            if name.value == fw.wan.value {
                self.err(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` is the WAN port, and also `{}`'s interface in zone `{}`",
                            name.value, host.name, zone.name
                        ),
                        name.loc.clone(),
                    )
                    .also(fw.wan.loc.clone(), "the WAN port")
                    .help("the WAN is not a zone: give the zone another port or a VLAN on the trunk"),
                );
            }
            let is_vlan =
                name.value.strip_prefix("vlan").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_vlan {
                match (&fw.trunk, &zone.vlan) {
                    (None, _) => self.err(
                        Diagnostic::error(
                            "missing-key",
                            format!(
                                "`{}` is a VLAN interface of `{}`, and pfsense service `{}` names no trunk to tag it on",
                                name.value, host.name, svc.name
                            ),
                            name.loc.clone(),
                        )
                        .also(svc.loc.clone(), "the pfsense service")
                        .help("add `trunk = \"igb1\"` (the port that carries the VLANs) to the pfsense service"),
                    ),
                    (Some(_), None) => {} // the zone's missing VLAN id is the core's error
                    (Some(t), Some(tag)) => vlans.push(VlanView {
                        parent: Src::at(t.value.clone(), "trunk port", &t.loc),
                        tag: Src::at(tag.value, "VLAN id", &tag.loc),
                        descr: Src::at(zone.name.clone(), "zone", &zone.loc),
                        vlanif: Src::at(name.value.clone(), "interface name", &name.loc),
                    }),
                }
            }
            let gateway = zone.gateway.as_ref();
            if let Some(g) = gateway
                && g.value != i.address.value
            {
                self.err(
                    Diagnostic::error(
                        "bad-placement",
                        format!(
                            "the gateway of zone `{}` is `{}`, and firewall `{}` holds `{}` there",
                            zone.name, g.value, host.name, i.address.value
                        ),
                        i.address.loc.clone(),
                    )
                    .also(g.loc.clone(), "the zone's gateway")
                    .help("the firewall routes every zone: give it the zone's gateway address"),
                );
            }
            let key = if fw.admin_zone.as_ref().is_some_and(|a| a.value == z) {
                "lan".to_string()
            } else {
                opt += 1;
                format!("opt{opt}")
            };
            let Some(cidr) = &zone.cidr else { continue };
            ifaces.push(IfaceView {
                key,
                descr: Src::at(zone.name.to_uppercase().replace('-', "_"), "zone", &zone.loc),
                ifname: Src::at(name.value.clone(), "interface name", &name.loc),
                ipaddr: Src::at(i.address.value.to_string(), "firewall address", &i.address.loc),
                subnet: Src::at(cidr.value.prefix_len().to_string(), "zone prefix length", &cidr.loc),
                ipv6: matches!(cidr.value, ipnet::IpNet::V6(_)),
                zone: z,
            });
        }
        if let Some(t) = &fw.trunk
            && !host.interfaces.iter().any(|i| i.name.as_ref().is_some_and(|n| n.value == t.value))
            && vlans.is_empty()
        {
            self.err(
                Diagnostic::error(
                    "bad-placement",
                    format!(
                        "trunk `{}` carries no zone of `{}`: no interface is named `{}` or `vlan<N>`",
                        t.value, host.name, t.value
                    ),
                    t.loc.clone(),
                )
                .help("name the untagged zone's interface after the trunk, and the tagged ones `vlan<N>`"),
            );
        }
        let iface_of = |z: ZoneId| ifaces.iter().find(|i| i.zone == z).map(|i| i.key.clone());
        let plan = site.flow_plan();
        let me = self.host;
        let flow_why = |g: &Grant| {
            let f = &site.flows[g.flow];
            Src::at(
                format!(
                    "flow {}: {} to {}: {}",
                    g.flow + 1,
                    site.endpoint_name(&f.from.value),
                    site.endpoint_name(&f.to.value),
                    f.why
                ),
                "flow",
                &f.loc,
            )
        };
        let port_loc = |g: &Grant| {
            let f = &site.flows[g.flow];
            f.ports.iter().find(|p| p.value == g.port).map(|p| p.loc.clone()).unwrap_or_else(|| f.loc.clone())
        };

        // Anti-lockout, syslog and DNS: each relies on a flow.
        if let Some(a) = &fw.admin_zone {
            let gui = PortSpec { proto: Proto::Tcp, port: fw.admin_port.value };
            if !plan.into_host(me).any(|g| g.port == gui && g.from == Peer::Zone(a.value)) {
                self.err(
                    Diagnostic::error(
                        "missing-flow",
                        format!(
                            "pfSense's anti-lockout rule lets zone `{}` open {gui} on `{}`, and no flow allows it",
                            site.zone(a.value).name,
                            host.name
                        ),
                        a.loc.clone(),
                    )
                    .help(format!(
                        "add a flow from `zone:{}` to `service:{}` on `{gui}` with its why",
                        site.zone(a.value).name,
                        svc.name
                    )),
                );
            }
        }
        let mut syslog = None;
        if let Some(s) = &fw.syslog {
            let target = site.service(s.value);
            match target.port("syslog") {
                Some(p) if p.spec.proto == Proto::Udp => {
                    let mut servers = Vec::new();
                    let mut sourceip = String::new();
                    let mut ipproto = "ipv4";
                    for h in target.hosts.iter().take(3) {
                        let th = site.host(h.value);
                        if !plan.allows(site, Some(me), Some(h.value), p.spec) {
                            self.err(
                                Diagnostic::error(
                                    "missing-flow",
                                    format!(
                                        "pfSense sends its log to `{}` on {}, and no flow lets `{}` reach `{}` there",
                                        target.name, p.spec, host.name, th.name
                                    ),
                                    s.loc.clone(),
                                )
                                .help(format!(
                                    "add a flow from `host:{}` to `service:{}` on `{}` with its why",
                                    host.name, target.name, p.spec
                                )),
                            );
                        }
                        let Some(i) = th.interfaces.first() else { continue };
                        if sourceip.is_empty()
                            && let Some(k) = iface_of(i.zone.value)
                        {
                            sourceip = k;
                            ipproto = if i.address.value.is_ipv6() { "ipv6" } else { "ipv4" };
                        }
                        let mut locs = vec![&i.address.loc, &h.loc, &s.loc];
                        if let Some(l) = &p.loc {
                            locs.push(l);
                        }
                        servers.push(Src::of(super::socket_text(i.address.value, p.spec.port), "syslog server", locs));
                    }
                    syslog = Some(SyslogView { servers, sourceip, ipproto });
                }
                _ => self.err(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` has no UDP port named `syslog` for pfSense's remote log", target.name),
                        s.loc.clone(),
                    )
                    .also(target.loc.clone(), "the service")
                    .help("give the service `ports = { syslog = \"udp/5514\" }`, or point `syslog` at the service that has one"),
                ),
            }
        }
        let mut overrides = Vec::new();
        let dns = PortSpec { proto: Proto::Udp, port: 53 };
        for (_, p) in edge::services_of(site, ServiceKind::Powerdns) {
            for h in &p.hosts {
                let th = site.host(h.value);
                let Some(i) = th.interfaces.first() else { continue };
                if !plan.allows(site, Some(me), Some(h.value), dns) {
                    self.err(
                        Diagnostic::error(
                            "missing-flow",
                            format!(
                                "pfSense's resolver forwards `{}` to `{}` on {dns}, and no flow lets `{}` reach it",
                                site.settings.domain, th.name, host.name
                            ),
                            p.loc.clone(),
                        )
                        .help(format!(
                            "add a flow from `service:{}` to `service:{}` on `dns` and `dns-tcp` with its why",
                            svc.name, p.name
                        )),
                    );
                }
                overrides.push(OverrideView {
                    domain: Src::of(site.settings.domain.clone(), "domain", site.settings.loc.iter()),
                    ip: Src::of(i.address.value.to_string(), "DNS server address", [&i.address.loc, &h.loc]),
                    descr: Src::at(format!("authoritative {} on {}", p.name, th.name), "service", &p.loc),
                });
            }
        }

        // Pass rules per source interface, from the grants.
        let mut rules: Vec<RuleView> = Vec::new();
        let mut unbound_on: BTreeSet<String> = BTreeSet::new();
        // (interface key, flow, source) → ports by protocol, in grant order.
        type Group = BTreeMap<(usize, Peer), BTreeMap<Proto, Vec<(u16, Loc)>>>;
        let mut per_iface: BTreeMap<usize, Group> = BTreeMap::new();
        let mut internet: BTreeMap<PortSpec, (BTreeSet<HostId>, Vec<&Grant>)> = BTreeMap::new();
        for g in &plan.grants {
            match g.from {
                Peer::Internet => {
                    if let Dest::Host(d) = g.to {
                        let e = internet.entry(g.port).or_default();
                        e.0.insert(d);
                        e.1.push(g);
                    }
                    continue;
                }
                // The firewall's own traffic leaves by pfSense's implicit pass-out rules.
                Peer::Host(h) if h == me => continue,
                _ => {}
            }
            let src_zones: Vec<ZoneId> = match g.from {
                Peer::Zone(z) => vec![z],
                Peer::Host(h) => site.host_zones(h),
                Peer::Internet => continue,
            };
            if let Dest::Host(d) = g.to
                && d != me
                && site.host_zones(d).iter().all(|z| src_zones.contains(z))
            {
                continue; // the same VLAN: never crosses pfSense
            }
            if g.to == Dest::Host(me) && matches!(g.port, PortSpec { port: 53, .. }) {
                for z in &src_zones {
                    if let Some(k) = iface_of(*z) {
                        unbound_on.insert(k);
                    }
                }
            }
            for z in &src_zones {
                let Some(idx) = ifaces.iter().position(|i| i.zone == *z) else { continue };
                let ports = per_iface.entry(idx).or_default().entry((g.flow, g.from)).or_default();
                let v = ports.entry(g.port.proto).or_default();
                if !v.iter().any(|(p, _)| *p == g.port.port) {
                    v.push((g.port.port, port_loc(g)));
                }
            }
        }
        for (idx, groups) in &per_iface {
            let iface = &ifaces[*idx];
            let key = iface.key.clone();
            let zone = iface.zone;
            // A zone is one family, so is everything its interface passes: an `inet` rule
            // would never match an IPv6 packet.
            let ipprotocol = if iface.ipv6 { "inet6" } else { "inet" };
            // Flow order first: the order the site reads in (all are passes, so the order
            // changes nothing of what passes, only what a reader sees first).
            for ((flow, from), by_proto) in groups {
                let f = &site.flows[*flow];
                let source = match from {
                    Peer::Zone(z) => match self.net_of(*z) {
                        Some(a) => EndView::address(a),
                        None => continue,
                    },
                    Peer::Host(h) => {
                        let hh = site.host(*h);
                        let Some(i) = hh.interfaces.iter().find(|i| i.zone.value == zone) else { continue };
                        EndView::address(Src::at(i.address.value.to_string(), "host address", &i.address.loc))
                    }
                    Peer::Internet => continue,
                };
                let Some(dest) = self.dest_of(&f.to.value, &f.loc) else { continue };
                let g0 = Grant {
                    to: Dest::Internet,
                    port: PortSpec { proto: Proto::Tcp, port: 0 },
                    from: *from,
                    flow: *flow,
                };
                let descr = flow_why(&g0);
                // TCP and UDP on the same ports make one `tcp/udp` rule.
                let mut protos: Vec<(&'static str, Vec<(u16, Loc)>)> = Vec::new();
                let tcp = by_proto.get(&Proto::Tcp).cloned().unwrap_or_default();
                let udp = by_proto.get(&Proto::Udp).cloned().unwrap_or_default();
                let nums = |v: &Vec<(u16, Loc)>| v.iter().map(|x| x.0).collect::<BTreeSet<_>>();
                if !tcp.is_empty() && nums(&tcp) == nums(&udp) {
                    protos.push(("tcp/udp", tcp));
                } else {
                    if !tcp.is_empty() {
                        protos.push(("tcp", tcp));
                    }
                    if !udp.is_empty() {
                        protos.push(("udp", udp));
                    }
                }
                if by_proto.contains_key(&Proto::Vrrp) {
                    protos.push(("carp", Vec::new()));
                }
                if by_proto.contains_key(&Proto::Icmp) {
                    protos.push(("icmp", Vec::new()));
                }
                for (proto, mut ports) in protos {
                    ports.sort_by_key(|p| p.0);
                    let mut d = dest.clone();
                    d.port = self.port_of(&ports, &f.loc);
                    rules.push(RuleView {
                        kind: "pass",
                        interface: key.clone(),
                        ipprotocol,
                        protocol: Some(proto),
                        source: source.clone(),
                        destination: d,
                        log: false,
                        descr: descr.clone(),
                        tracker: 0,
                        associated: None,
                    });
                }
            }
        }

        // WAN: port forwards for the grants from the internet, with their filter rules.
        let mut nat = Vec::new();
        let mut wan_rules = Vec::new();
        for (port, (dests, grants)) in &internet {
            let g = grants[0];
            let f = &site.flows[g.flow];
            if !port.proto.has_ports() {
                self.err(
                    Diagnostic::error(
                        "bad-forward",
                        format!("pfSense forwards TCP and UDP ports from the WAN, not {port}"),
                        port_loc(g),
                    )
                    .help("publish a TCP or UDP port, or drop it from the flow"),
                );
                continue;
            }
            let names = dests.iter().map(|d| site.host(*d).name.as_str()).collect::<Vec<_>>().join(", ");
            let vip = keepalived::model(site).services.iter().find_map(|(k, v)| {
                let hosts: BTreeSet<HostId> = site.service(*k).hosts.iter().map(|h| h.value).collect();
                v.vip.as_ref().filter(|_| &hosts == dests).map(|a| (a, *k))
            });
            let target = match (vip, dests.len()) {
                (Some((a, k)), _) => {
                    let held = site.service(k).hosts.iter().all(|h| {
                        site.host(h.value)
                            .interfaces
                            .iter()
                            .any(|i| site.zone(i.zone.value).cidr.as_ref().is_some_and(|c| c.value.contains(&a.value)))
                    });
                    if !held {
                        self.err(
                            Diagnostic::error(
                                "bad-forward",
                                format!(
                                    "pfSense would forward {port} from the WAN to `{}`, an address no host of `{}` can hold",
                                    a.value, names
                                ),
                                a.loc.clone(),
                            )
                            .help("put the floating address in the zone of the hosts that hold it"),
                        );
                        continue;
                    }
                    // The WAN is IPv4: a port forward translates to an IPv4 address.
                    if a.value.is_ipv6() {
                        self.err(
                            Diagnostic::error(
                                "bad-forward",
                                format!(
                                    "pfSense would forward {port} from its IPv4 WAN to `{}`, an IPv6 address",
                                    a.value
                                ),
                                a.loc.clone(),
                            )
                            .help("give the edge pair a keepalived service with an IPv4 `vip` for the port forward"),
                        );
                        continue;
                    }
                    Src::of(a.value.to_string(), "floating address", [&a.loc, &f.loc])
                }
                (None, 1) => {
                    let d = *dests.iter().next().expect("one host");
                    if site.host(d).interfaces.is_empty() {
                        continue;
                    }
                    // The WAN is IPv4: the forward goes to the host's IPv4 address.
                    let Some(i) = site.host(d).interfaces.iter().find(|i| i.address.value.is_ipv4()) else {
                        self.err(
                            Diagnostic::error(
                                "bad-forward",
                                format!(
                                    "pfSense would forward {port} from its IPv4 WAN to `{}`, which has no IPv4 address",
                                    site.host(d).name
                                ),
                                f.to.loc.clone(),
                            )
                            .help("give the host an interface in an IPv4 zone"),
                        );
                        continue;
                    };
                    if d == me {
                        self.err(
                            Diagnostic::error(
                                "bad-forward",
                                format!(
                                    "a flow publishes {port} of the firewall `{}` itself to the internet",
                                    host.name
                                ),
                                f.to.loc.clone(),
                            )
                            .help(
                                "the firewall's own services are never published; publish the service of another host",
                            ),
                        );
                        continue;
                    }
                    Src::of(i.address.value.to_string(), "host address", [&i.address.loc, &f.to.loc])
                }
                (None, _) => {
                    self.err(
                        Diagnostic::error(
                            "bad-forward",
                            format!(
                                "pfSense would forward {port} from the WAN to {names}: a port forward goes to one address, and no keepalived floating address is held by exactly these hosts, so it would go to an address no host holds"
                            ),
                            f.to.loc.clone(),
                        )
                        .help("give the hosts a keepalived service with a `vip`, or publish one host"),
                    );
                    continue;
                }
            };
            let proto = if port.proto == Proto::Udp { "udp" } else { "tcp" };
            let ploc = port_loc(g);
            let id = format!(
                "nat_{:013x}",
                hash_u64(&[&host.name, proto, &port.port.to_string(), &target.value]) & 0x000f_ffff_ffff_ffff
            );
            let descr = flow_why(g);
            nat.push(NatView {
                protocol: proto,
                port: Src::at(port.port, "port", &ploc),
                target: target.clone(),
                local_port: Src::at(port.port, "port", &ploc),
                descr: descr.clone(),
                associated: id.clone(),
            });
            let mut dest = EndView::address(target);
            dest.port = Some(Src::at(port.port.to_string(), "port", &ploc));
            wan_rules.push(RuleView {
                kind: "pass",
                interface: "wan".into(),
                ipprotocol: "inet",
                protocol: Some(proto),
                source: EndView::any(),
                destination: dest,
                log: false,
                descr,
                tracker: 0,
                associated: Some(id),
            });
        }

        // Every interface ends with a logged block.
        let mut all = Vec::new();
        let mut keys: Vec<(String, String, Loc)> =
            ifaces.iter().map(|i| (i.key.clone(), i.descr.value.clone(), site.zone(i.zone).loc.clone())).collect();
        keys.push(("wan".into(), "WAN".into(), fw.wan.loc.clone()));
        // The pass rules by interface, in the order of `keys`, each interface's in the
        // order they were made (one stable sort: draining the list once per interface
        // moved every rule once per interface).
        let rank: BTreeMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.0.as_str(), i)).collect();
        rules.sort_by_key(|r| rank.get(r.interface.as_str()).copied().unwrap_or(usize::MAX));
        let mut rules = rules.into_iter().peekable();
        for (k, descr, dloc) in &keys {
            while let Some(r) = rules.next_if(|r| r.interface == *k) {
                all.push(r);
            }
            if k == "wan" {
                all.append(&mut wan_rules);
            }
            all.push(RuleView {
                kind: "block",
                interface: k.clone(),
                ipprotocol: "inet46",
                protocol: None,
                source: EndView::any(),
                destination: EndView::any(),
                log: true,
                descr: Src::at(format!("default deny on {descr}: not allowed by any flow"), "zone", dloc),
                tracker: 0,
                associated: None,
            });
        }
        // Trackers: from each rule's content, probing on a collision.
        let mut used = BTreeSet::new();
        for r in &mut all {
            let text = [
                r.kind,
                r.interface.as_str(),
                r.protocol.unwrap_or(""),
                &end_text(&r.source),
                &end_text(&r.destination),
                r.associated.as_deref().unwrap_or(""),
            ];
            let mut t = TRACKER_BASE + hash_u64(&text) % TRACKER_SPAN;
            while !used.insert(t) {
                t = TRACKER_BASE + (t - TRACKER_BASE + 1) % TRACKER_SPAN;
            }
            r.tracker = t;
        }

        let wan = WanView {
            ifname: Src::at(fw.wan.value.clone(), "WAN port", &fw.wan.loc),
            ipaddr: match &fw.wan_address {
                WanAddress::Dhcp(l) => Src::at("dhcp".to_string(), "WAN address", l),
                WanAddress::Static(a) => Src::at(a.value.0.to_string(), "WAN address", &a.loc),
            },
            subnet: match &fw.wan_address {
                WanAddress::Dhcp(l) => Src::at(String::new(), "WAN prefix length", l),
                WanAddress::Static(a) => Src::at(a.value.1.to_string(), "WAN prefix length", &a.loc),
            },
            gateway: fw.wan_gateway.as_ref().map(|g| Src::at(g.value.to_string(), "WAN gateway", &g.loc)),
        };
        let mut active: Vec<String> = ifaces.iter().map(|i| i.key.clone()).filter(|k| unbound_on.contains(k)).collect();
        active.push("lo0".into());
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(Built {
            version: CONFIG_VERSION,
            hostname: Src::at(host.name.clone(), "host", &host.loc),
            domain: Src::of(site.settings.domain.clone(), "domain", site.settings.loc.iter()),
            admin_port: Src::at(fw.admin_port.value, "web GUI port", &fw.admin_port.loc),
            wan,
            interfaces: ifaces,
            vlans,
            aliases: std::mem::take(&mut self.aliases).into_values().collect(),
            rules: all,
            nat,
            syslog,
            unbound: UnboundView { active_interface: active.join(","), overrides },
        })
    }
}

fn end_text(e: &EndView) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        e.any,
        e.network.as_deref().unwrap_or(""),
        e.address.as_ref().map(|a| a.value.as_str()).unwrap_or(""),
        e.port.as_ref().map(|a| a.value.as_str()).unwrap_or(""),
        e.not
    )
}

/// The addresses a site host owns, for tests and docs.
pub fn addresses(site: &Site, h: HostId) -> Vec<IpAddr> {
    crate::model::flows::host_addresses(site, h)
}

impl Family for Pfsense {
    fn name(&self) -> &'static str {
        "pfsense"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::PfsenseFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let mut out = Vec::new();
        for (id, fw) in &model(site).services {
            let subject = site.service(*id).name.clone();
            let mut put = |field: &'static str, value: String| {
                out.push(Fact { category: "service", subject: subject.clone(), field, value: value.into() })
            };
            put("wan", fw.wan.value.clone());
            put(
                "wan_address",
                match &fw.wan_address {
                    WanAddress::Dhcp(_) => "dhcp".into(),
                    WanAddress::Static(a) => format!("{}/{}", a.value.0, a.value.1),
                },
            );
            put("wan_gateway", fw.wan_gateway.as_ref().map(|g| g.value.to_string()).unwrap_or_default());
            put("trunk", fw.trunk.as_ref().map(|t| t.value.clone()).unwrap_or_default());
            put("syslog", fw.syslog.as_ref().map(|s| site.service(s.value).name.clone()).unwrap_or_default());
            put("admin_zone", fw.admin_zone.as_ref().map(|z| site.zone(z.value).name.clone()).unwrap_or_default());
            put("admin_port", fw.admin_port.value.to_string());
        }
        out
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for (id, h, built) in built(site) {
            let (id, h) = (*id, *h);
            let Ok(built) = built else { continue };
            let host = site.host(h);
            let dir = dir_of(&host.name);
            let svc = site.service(id);
            out.add(
                "pfsense/config.xml.j2",
                &built,
                ArtifactMeta::shared(self.name(), format!("{dir}/config.xml"), Vec::new()),
                Some(svc.loc.clone()),
            );
            let mut meta = ArtifactMeta::shared(self.name(), format!("{dir}/apply-config.sh"), Vec::new());
            meta.mode = 0o755;
            out.add(
                "pfsense/apply-config.sh.j2",
                &ApplyContext { host: Src::at(host.name.clone(), "host", &host.loc), minutes: CONFIRM_MINUTES },
                meta,
                Some(svc.loc.clone()),
            );
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        for (_, _, built) in built(site) {
            if let Err(errors) = built {
                for d in errors {
                    diags.push(d.clone());
                }
            }
        }
    }
}
