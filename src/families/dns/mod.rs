//! Family **dns**: the internal zones, served by PowerDNS (bind backend) on every host of
//! a `powerdns` service. Each such host gets the same zones:
//!
//! - **Forward zone** `[site] domain`: SOA (primary: the first powerdns host), one NS per
//!   powerdns host, and an A (AAAA for IPv6) record per host interface. A host's first
//!   interface is `<host>.<domain>`; each further one (the firewall's, one per zone) is
//!   `<host>-<zone>.<domain>`. A service is `<service>.<domain>`: a CNAME to its host
//!   when it runs on one, else the A/AAAA records of its hosts' first interfaces. A
//!   service named like its only host adds nothing (the host's name answers).
//! - **Reverse zones**, one per zone network: `in-addr.arpa` on octet boundaries
//!   (`ip6.arpa` on nibbles). A network that is not on a boundary (a /26, a /20) is served
//!   as the enclosing zone (its /24, its /16), shared by the networks in it: no RFC 2317
//!   delegation, since nothing above delegates these private ranges anyway. One PTR per
//!   host interface, to the name above.
//! - **Serials** are a hash of the zone's content (SHA-256 of its records → 32 bits),
//!   never the clock: an unchanged zone keeps its serial, a changed one gets another.
//!   They are not increasing, which only secondaries (zone transfers, RFC 1982 serial
//!   arithmetic) would notice; there are none (every powerdns host serves the same files
//!   and AXFR is off).
//!
//! `pdns.conf` listens on the host addresses the flow plan reaches on the `dns` ports,
//! and runs the web server and read-only API on the `api` port only when a flow reaches
//! it, open to exactly those sources. The API key is the service's one secret: PowerDNS
//! 4.7 reads `api-key` only inline, so `pdns.conf` includes `/run/medianest/powerdns/`,
//! a tmpfs where a script run as root before each start writes `api-key=…` from the file
//! the agent delivers (never under `/etc`, never in git). DNSSEC (`dnssec = true`, this
//! family's key) signs with keys in the bind backend's SQLite database on the host: a
//! systemd drop-in creates it and runs `pdnsutil secure-zone` (idempotent) for every
//! zone before each start. Templates: `templates/dns/`.

pub mod keys;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::provenance::Src;
use super::{Family, Lowering, Part, allowed_sources, edge};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;

use crate::model::values::{PortSpec, Proto};
use crate::model::{HostId, ServiceId, ServiceKind, Site};

/// Default TTL of every record (`$TTL`).
pub const TTL: u32 = 3600;
/// SOA refresh, retry, expire and minimum (negative-answer TTL), in seconds.
pub const SOA_TIMERS: [u32; 4] = [3600, 900, 1_209_600, 300];
/// Where the zone files go.
pub const ZONE_DIR: &str = "/etc/powerdns/zones";
/// The bind backend's DNSSEC database (keys and metadata), created on the host.
pub const DNSSEC_DB: &str = "/var/lib/powerdns/dnssec/bind-dnssec.sqlite3";
/// The directory `pdns.conf` includes (tmpfs), where [`RENDER`] writes `api-key=…`.
pub const SECRETS_DIR: &str = "/run/medianest/powerdns";
/// The script that renders the API key from the delivered secret before each start.
pub const RENDER: &str = "/etc/medianest/powerdns/render-secrets.sh";

/// The dns model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { dnssec: BTreeMap::new() };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The dns family.
pub struct Dns;

/// One resource record of a zone.
#[derive(Serialize)]
pub struct RecordView {
    /// Owner, relative to the zone (`dns1`, `10`).
    pub name: Src<String>,
    /// Type (`A`, `AAAA`, `CNAME`, `PTR`).
    pub rtype: &'static str,
    /// Data (an address, or an absolute name with its final dot).
    pub data: Src<String>,
}

/// Context of `dns/zone.zone.j2`.
#[derive(Serialize)]
pub struct ZoneContext {
    /// The zone's name, no final dot.
    pub zone: Src<String>,
    /// What the zone is for (the domain, or the networks a reverse zone covers).
    pub about: Src<String>,
    /// SOA primary name server (absolute, with the final dot).
    pub primary: Src<String>,
    /// SOA mailbox (`hostmaster.<domain>.`).
    pub hostmaster: Src<String>,
    /// SOA serial: a hash of everything else in the zone.
    pub serial: Src<u32>,
    /// Default TTL.
    pub ttl: u32,
    /// SOA refresh, retry, expire, minimum.
    pub timers: [u32; 4],
    /// NS targets (absolute).
    pub nameservers: Vec<Src<String>>,
    /// The records after SOA and NS.
    pub records: Vec<RecordView>,
    /// Where the zone comes from (`[site]`, or the zone networks).
    #[serde(skip)]
    pub locs: Vec<Loc>,
}

/// Context of `dns/named.conf.j2`.
#[derive(Serialize)]
pub struct NamedContext {
    /// The host.
    pub host: Src<String>,
    /// Each zone and its file.
    pub zones: Vec<NamedZone>,
}

/// One zone of `named.conf`.
#[derive(Serialize)]
pub struct NamedZone {
    /// Zone name.
    pub name: Src<String>,
    /// Absolute path of its file.
    pub file: Src<String>,
}

/// Context of `dns/pdns.conf.j2`.
#[derive(Serialize)]
pub struct PdnsContext {
    /// The host.
    pub host: Src<String>,
    /// The powerdns service.
    pub service: Src<String>,
    /// Addresses to listen on (the ones flows reach on the DNS ports).
    pub local_address: Vec<Src<String>>,
    /// Whether no flow reaches the DNS ports (then every interface address is listed).
    pub unreached: bool,
    /// The DNS port (UDP and TCP).
    pub local_port: Src<u16>,
    /// The web server and API, when a flow reaches the `api` port.
    pub webserver: Option<WebView>,
    /// The service's secrets (its API key, at most one).
    pub secrets: Vec<Src<String>>,
    /// The script that renders the key.
    pub render: &'static str,
    /// `named.conf` path.
    pub bind_config: &'static str,
    /// DNSSEC database path.
    pub dnssec_db: &'static str,
    /// The included directory.
    pub secrets_dir: &'static str,
    /// Whether the zones are signed.
    pub dnssec: Src<bool>,
}

/// The web server of `pdns.conf`.
#[derive(Serialize)]
pub struct WebView {
    /// Listen address.
    pub address: Src<String>,
    /// Port.
    pub port: Src<u16>,
    /// Sources the flows allow.
    pub allow_from: Vec<Src<String>>,
}

/// Context of `dns/dnssec.conf.j2` (the systemd drop-in) and `dns/render-secrets.sh.j2`.
#[derive(Serialize)]
pub struct UnitContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The API key's secret.
    pub secret: Option<Src<String>>,
    /// Where the secrets delivery puts it.
    pub delivered: Option<String>,
    /// The script that renders it.
    pub render: &'static str,
    /// Whether to sign.
    pub dnssec: Src<bool>,
    /// Zones to sign.
    pub zones: Vec<Src<String>>,
    /// The service's secrets.
    pub secrets: Vec<Src<String>>,
    /// DNSSEC database path.
    pub dnssec_db: &'static str,
    /// Its directory.
    pub dnssec_dir: &'static str,
    /// The included directory.
    pub secrets_dir: &'static str,
}

/// Whether `s` is a host name label (letters, digits, inner `-`, at most 63).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The name of interface `i` of host `h`: the host's name for its first interface,
/// `<host>-<zone>` for the others.
fn iface_label(site: &Site, h: HostId, i: usize) -> String {
    let host = site.host(h);
    if i == 0 { host.name.clone() } else { format!("{}-{}", host.name, site.zone(host.interfaces[i].zone.value).name) }
}

/// The powerdns services and their hosts (each host once, in site order).
fn powerdns(site: &Site) -> (Vec<ServiceId>, Vec<HostId>) {
    let services: Vec<ServiceId> = edge::services_of(site, ServiceKind::Powerdns).map(|(id, _)| id).collect();
    let mut hosts = Vec::new();
    for id in &services {
        for h in &site.service(*id).hosts {
            if !hosts.contains(&h.value) {
                hosts.push(h.value);
            }
        }
    }
    (services, hosts)
}

/// A service's port by name, with where it is written (the service for a kind default).
fn port<'a>(site: &'a Site, id: ServiceId, name: &str) -> Option<(PortSpec, &'a Loc)> {
    let svc = site.service(id);
    svc.ports.iter().find(|p| p.name == name).map(|p| (p.spec, p.loc.as_ref().unwrap_or(&svc.loc)))
}

/// The reverse zone of a network: its enclosing octet (nibble) boundary.
fn reverse_zone(net: ipnet::IpNet) -> String {
    match net {
        ipnet::IpNet::V4(n) => {
            let k = (n.prefix_len() / 8).max(1) as usize;
            let o = n.network().octets();
            let mut parts: Vec<String> = o[..k].iter().map(|x| x.to_string()).collect();
            parts.reverse();
            format!("{}.in-addr.arpa", parts.join("."))
        }
        ipnet::IpNet::V6(n) => {
            let k = (n.prefix_len() / 4).max(1) as usize;
            let mut parts: Vec<String> = nibbles(n.network().into())[..k].iter().map(|x| format!("{x:x}")).collect();
            parts.reverse();
            format!("{}.ip6.arpa", parts.join("."))
        }
    }
}

/// The 32 nibbles of an IPv6 address, most significant first.
fn nibbles(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V6(a) => a.octets().iter().flat_map(|b| [b >> 4, b & 15]).collect(),
        IpAddr::V4(_) => Vec::new(),
    }
}

/// The owner of an address's PTR relative to reverse zone `zone`, if it is inside.
fn ptr_owner(addr: IpAddr, zone: &str) -> Option<String> {
    let full = match addr {
        IpAddr::V4(a) => {
            let mut o: Vec<String> = a.octets().iter().map(|x| x.to_string()).collect();
            o.reverse();
            format!("{}.in-addr.arpa", o.join("."))
        }
        IpAddr::V6(_) => {
            let mut n: Vec<String> = nibbles(addr).iter().map(|x| format!("{x:x}")).collect();
            n.reverse();
            format!("{}.ip6.arpa", n.join("."))
        }
    };
    full.strip_suffix(zone).and_then(|r| r.strip_suffix('.')).map(str::to_string)
}

/// The serial of a zone: the first 32 bits of the SHA-256 of its text without the
/// serial (never 0).
fn serial(zone: &str, primary: &str, hostmaster: &str, ns: &[Src<String>], records: &[RecordView]) -> u32 {
    let mut h = Sha256::new();
    let mut line = |s: &str| {
        h.update(s.as_bytes());
        h.update(b"\n");
    };
    line(&format!("{zone} {primary} {hostmaster} {TTL} {SOA_TIMERS:?}"));
    for n in ns {
        line(&format!("NS {}", n.value));
    }
    for r in records {
        line(&format!("{} {} {}", r.name.value, r.rtype, r.data.value));
    }
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]).max(1)
}

/// Every zone the powerdns hosts serve, forward first, then reverse by name.
fn zones(site: &Site, ns_hosts: &[HostId]) -> Vec<ZoneContext> {
    let domain = &site.settings.domain;
    let nowhere = Loc::new(0, 0..0);
    let site_loc = site.settings.loc.as_ref().unwrap_or(&nowhere);
    let fqdn = |label: &str| format!("{label}.{domain}.");
    let Some(first) = ns_hosts.first() else { return Vec::new() };
    let primary = Src::of(
        fqdn(&site.host(*first).name),
        "SOA primary (the first powerdns host)",
        [&site.host(*first).loc, site_loc],
    );
    let hostmaster = Src::at(format!("hostmaster.{domain}."), "SOA mailbox (hostmaster@domain)", site_loc);
    let nameservers: Vec<Src<String>> = ns_hosts
        .iter()
        .map(|h| Src::of(fqdn(&site.host(*h).name), "name server (a powerdns host)", [&site.host(*h).loc]))
        .collect();

    // Forward records: every host interface, then every service.
    let mut records = Vec::new();
    let mut taken = BTreeSet::new();
    for (hi, host) in site.hosts.iter().enumerate() {
        for (i, iface) in host.interfaces.iter().enumerate() {
            let label = iface_label(site, HostId(hi), i);
            if !is_label(&label) || !taken.insert(label.clone()) {
                continue;
            }
            records.push(RecordView {
                name: Src::of(label, "host name", [&host.loc, &iface.zone.loc]),
                rtype: if iface.address.value.is_ipv4() { "A" } else { "AAAA" },
                data: Src::at(iface.address.value.to_string(), "host address", &iface.address.loc),
            });
        }
    }
    for svc in &site.services {
        let hosts: Vec<HostId> =
            svc.hosts.iter().map(|h| h.value).filter(|h| !site.host(*h).interfaces.is_empty()).collect();
        if hosts.is_empty() || taken.contains(&svc.name) {
            continue;
        }
        taken.insert(svc.name.clone());
        if let [h] = hosts[..] {
            records.push(RecordView {
                name: Src::at(svc.name.clone(), "service name", &svc.loc),
                rtype: "CNAME",
                data: Src::of(fqdn(&site.host(h).name), "the service's host", svc.hosts.iter().map(|x| &x.loc)),
            });
            continue;
        }
        for h in &svc.hosts {
            let Some(iface) = site.host(h.value).interfaces.first() else { continue };
            records.push(RecordView {
                name: Src::at(svc.name.clone(), "service name", &svc.loc),
                rtype: if iface.address.value.is_ipv4() { "A" } else { "AAAA" },
                data: Src::of(
                    iface.address.value.to_string(),
                    "address of a host of the service",
                    [&iface.address.loc, &h.loc],
                ),
            });
        }
    }
    let mut out = Vec::new();
    let forward_serial = serial(domain, &primary.value, &hostmaster.value, &nameservers, &records);
    out.push(ZoneContext {
        zone: Src::at(domain.clone(), "internal domain", site_loc),
        about: Src::at(format!("the internal domain {domain}"), "internal domain", site_loc),
        primary: primary.clone(),
        hostmaster: hostmaster.clone(),
        serial: Src::of(forward_serial, "zone serial (a hash of the records)", [site_loc]),
        ttl: TTL,
        timers: SOA_TIMERS,
        nameservers: nameservers.clone(),
        records,
        locs: vec![site_loc.clone()],
    });

    // Reverse zones: one per zone network (networks on one boundary share it).
    // By reverse zone: where its networks are written, the networks, the PTRs.
    type Reverse<'a> = (Vec<&'a Loc>, Vec<String>, Vec<RecordView>);
    let mut reverse: BTreeMap<String, Reverse> = BTreeMap::new();
    for z in &site.zones {
        if let Some(c) = &z.cidr {
            let e = reverse.entry(reverse_zone(c.value)).or_default();
            e.0.push(&c.loc);
            e.1.push(c.value.to_string());
        }
    }
    for (hi, host) in site.hosts.iter().enumerate() {
        for (i, iface) in host.interfaces.iter().enumerate() {
            let Some(c) = &site.zone(iface.zone.value).cidr else { continue };
            let label = iface_label(site, HostId(hi), i);
            if !is_label(&label) {
                continue;
            }
            let rz = reverse_zone(c.value);
            let Some(owner) = ptr_owner(iface.address.value, &rz) else { continue };
            if let Some(e) = reverse.get_mut(&rz) {
                if e.2.iter().any(|r| r.name.value == owner) {
                    continue;
                }
                e.2.push(RecordView {
                    name: Src::at(owner, "host address", &iface.address.loc),
                    rtype: "PTR",
                    data: Src::of(fqdn(&label), "host name", [&host.loc, &iface.zone.loc]),
                });
            }
        }
    }
    for (name, (locs, nets, records)) in reverse {
        let s = serial(&name, &primary.value, &hostmaster.value, &nameservers, &records);
        out.push(ZoneContext {
            zone: Src::of(name, "reverse zone of a zone network", locs.iter().copied()),
            about: Src::of(format!("the reverse of {}", nets.join(", ")), "zone network", locs.iter().copied()),
            primary: primary.clone(),
            hostmaster: hostmaster.clone(),
            serial: Src::of(s, "zone serial (a hash of the records)", locs.iter().copied()),
            ttl: TTL,
            timers: SOA_TIMERS,
            nameservers: nameservers.clone(),
            records,
            locs: locs.into_iter().cloned().collect(),
        });
    }
    out
}

impl Family for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::DnsFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        edge::services_of(site, ServiceKind::Powerdns)
            .map(|(id, s)| Fact {
                category: "service",
                subject: s.name.clone(),
                field: "dnssec",
                value: model(site).dnssec(site, id).value.to_string().into(),
            })
            .collect()
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let (services, ns_hosts) = powerdns(site);
        if ns_hosts.is_empty() || site.settings.domain.is_empty() {
            return;
        }
        let zones = zones(site, &ns_hosts);
        let file_of = |z: &ZoneContext| format!("{ZONE_DIR}/{}.zone", z.zone.value);
        for id in services {
            let svc = site.service(id);
            let dnssec = model(site).dnssec(site, id);
            let dnssec = Src::at(dnssec.value, "dnssec", &dnssec.loc);
            let secrets: Vec<Src<String>> =
                svc.secrets.iter().map(|s| Src::at(s.value.clone(), "secret name", &s.loc)).collect();
            let dns_ports: Vec<(PortSpec, &Loc)> =
                ["dns", "dns-tcp"].iter().filter_map(|n| port(site, id, n)).collect();
            let api = port(site, id, "api");
            for h in &svc.hosts {
                let hid = h.value;
                let host = site.host(hid);
                if host.interfaces.is_empty() {
                    continue;
                }
                let host_src = Src::at(host.name.clone(), "host", &host.loc);
                let mut local_address =
                    super::listen_addresses(site, hid, &dns_ports.iter().map(|p| p.0).collect::<Vec<_>>());
                let unreached = local_address.is_empty();
                if unreached {
                    local_address = host
                        .interfaces
                        .iter()
                        .map(|i| Src::at(i.address.value.to_string(), "host address", &i.address.loc))
                        .collect();
                }
                let local_port = dns_ports
                    .first()
                    .map(|(p, l)| Src::at(p.port, "DNS port", l))
                    .unwrap_or_else(|| Src::at(53, "DNS port", &svc.loc));
                let webserver = api.and_then(|(p, l)| {
                    let address = super::listen_addresses(site, hid, &[p]).into_iter().next()?;
                    let allow_from = allowed_sources(site, hid, p);
                    Some(WebView { address, port: Src::at(p.port, "API port", l), allow_from })
                });
                let ctx = PdnsContext {
                    host: host_src.clone(),
                    service: Src::at(svc.name.clone(), "service", &svc.loc),
                    local_address,
                    unreached,
                    local_port,
                    webserver,
                    secrets: secrets.clone(),
                    render: RENDER,
                    bind_config: "/etc/powerdns/named.conf",
                    dnssec_db: DNSSEC_DB,
                    secrets_dir: SECRETS_DIR,
                    dnssec: dnssec.clone(),
                };
                let file = |target: &str, mode: u32, owner: &str, validate: bool| {
                    let mut meta = ArtifactMeta::host_file(self.name(), &host.name, target, mode, owner);
                    if let Some(a) = meta.apply.as_mut() {
                        a.validate = validate.then_some(Validator::Pdns);
                        a.reload = Some("pdns.service".into());
                    }
                    meta
                };
                let origin = Some(svc.loc.clone());
                out.add(
                    "dns/pdns.conf.j2",
                    &ctx,
                    file("/etc/powerdns/pdns.conf", 0o640, "root:pdns", true),
                    origin.clone(),
                );
                let named = NamedContext {
                    host: host_src.clone(),
                    zones: zones
                        .iter()
                        .map(|z| NamedZone { name: z.zone.clone(), file: Src::of(file_of(z), "zone file", &z.locs) })
                        .collect(),
                };
                out.add(
                    "dns/named.conf.j2",
                    &named,
                    file("/etc/powerdns/named.conf", 0o644, "root:root", true),
                    origin.clone(),
                );
                for z in &zones {
                    out.add("dns/zone.zone.j2", z, file(&file_of(z), 0o644, "root:root", true), origin.clone());
                }
                let unit = UnitContext {
                    host: host_src,
                    service: Src::at(svc.name.clone(), "service", &svc.loc),
                    secret: secrets.first().cloned(),
                    delivered: svc.secrets.first().map(|s| super::secret_file(&svc.name, &s.value)),
                    render: RENDER,
                    dnssec: dnssec.clone(),
                    zones: zones.iter().map(|z| z.zone.clone()).collect(),
                    secrets: secrets.clone(),
                    dnssec_db: DNSSEC_DB,
                    dnssec_dir: DNSSEC_DB.rsplit_once('/').map(|x| x.0).unwrap_or("/"),
                    secrets_dir: SECRETS_DIR,
                };
                // The API key from the delivered secret, rendered by root before each
                // start into the directory pdns.conf includes (which must exist).
                let mut render = file(RENDER, 0o750, "root:root", false);
                if let Some(a) = render.apply.as_mut() {
                    a.reload = None;
                    a.restart = Some("pdns.service".into());
                }
                out.add("dns/render-secrets.sh.j2", &unit, render, origin.clone());
                // ExecStartPre runs at each start, so the drop-in needs a restart (a
                // reload runs none), after systemd reads it.
                let mut dropin = file("/etc/systemd/system/pdns.service.d/medianest.conf", 0o644, "root:root", false);
                if let Some(a) = dropin.apply.as_mut() {
                    a.reload = Some("daemon-reload".into());
                    a.restart = Some("pdns.service".into());
                }
                out.add("dns/dnssec.conf.j2", &unit, dropin, origin.clone());
            }
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let (services, ns_hosts) = powerdns(site);
        if ns_hosts.is_empty() {
            return;
        }
        // The rendered `api-key.conf` holds one key: a second secret would be delivered
        // and never read.
        for id in &services {
            let svc = site.service(*id);
            if let Some(extra) = svc.secrets.get(1) {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "PowerDNS service `{}` lists {} secrets, but PowerDNS reads one: its API key",
                            svc.name,
                            svc.secrets.len()
                        ),
                        extra.loc.clone(),
                    )
                    .also(svc.secrets[0].loc.clone(), "the API key")
                    .help("list only the API key's secret in `secrets`"),
                );
            }
        }
        let domain = &site.settings.domain;
        let too_long = |label: &str| label.len() + 1 + domain.len() > 253;
        // Every name in the forward zone, and what holds it.
        let mut names: BTreeMap<String, (String, Loc)> = BTreeMap::new();
        for (hi, host) in site.hosts.iter().enumerate() {
            for (i, iface) in host.interfaces.iter().enumerate() {
                let label = iface_label(site, HostId(hi), i);
                let what = if i == 0 {
                    format!("host `{}`", host.name)
                } else {
                    format!("`{}`'s interface in zone `{}`", host.name, site.zone(iface.zone.value).name)
                };
                let loc = if i == 0 { host.loc.clone() } else { iface.zone.loc.clone() };
                if !is_label(&label) || too_long(&label) {
                    diags.push(
                        Diagnostic::error(
                            "bad-name",
                            format!(
                                "`{label}.{domain}`, the DNS name of `{}`'s interface in zone `{}`, is not a valid host name",
                                host.name,
                                site.zone(iface.zone.value).name
                            ),
                            loc,
                        )
                        .help(
                            "a further interface is named `<host>-<zone>`: it must be a DNS label (letters, digits \
                             and `-`, at most 63 characters) and the whole name at most 253; rename the zone or the host",
                        ),
                    );
                    continue;
                }
                if let Some((other, at)) = names.get(&label) {
                    diags.push(
                        Diagnostic::error(
                            "duplicate-name",
                            format!("`{label}.{domain}` would name both {what} and {other}"),
                            loc,
                        )
                        .also(at.clone(), "the other one")
                        .help(
                            "every host interface gets its own DNS name (`<host>`, then `<host>-<zone>`): rename one",
                        ),
                    );
                    continue;
                }
                names.insert(label, (what, loc));
            }
        }
        for svc in &site.services {
            if svc.hosts.is_empty() {
                continue;
            }
            if too_long(&svc.name) {
                diags.push(
                    Diagnostic::error(
                        "bad-name",
                        format!("`{}.{domain}`, the DNS name of service `{}`, is longer than 253", svc.name, svc.name),
                        svc.loc.clone(),
                    )
                    .help("use a shorter service name or `[site] domain`"),
                );
                continue;
            }
            // A service named like its only host is that host's name already.
            let same_host = svc.hosts.len() == 1 && site.host(svc.hosts[0].value).name == svc.name;
            if let Some((other, at)) = names.get(&svc.name)
                && !same_host
            {
                diags.push(
                    Diagnostic::error(
                        "duplicate-name",
                        format!("`{}.{domain}` would name both service `{}` and {other}", svc.name, svc.name),
                        svc.loc.clone(),
                    )
                    .also(at.clone(), "the other one")
                    .help("rename the service or the host: both are names in the internal zone"),
                );
            }
        }
        // PowerDNS has one port for UDP and TCP.
        for id in services {
            let (Some((u, _)), Some((t, at))) = (port(site, id, "dns"), port(site, id, "dns-tcp")) else { continue };
            if u.port != t.port || u.proto != Proto::Udp || t.proto != Proto::Tcp {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "PowerDNS serves UDP and TCP on one port, and `{}` sets `dns = \"{u}\"` and `dns-tcp = \"{t}\"`",
                            site.service(id).name
                        ),
                        at.clone(),
                    )
                    .help("give `dns` (udp) and `dns-tcp` (tcp) the same port"),
                );
            }
        }
    }
}
