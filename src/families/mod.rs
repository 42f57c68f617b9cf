//! Stage 4, **lower**: the [`Site`] → one [`RenderJob`] per file, family by family.
//!
//! An artifact family (docs, base, edge, haproxy, nginx, keepalived, nftables, delivery,
//! postgres, pfsense, dns, proxmox, pgbouncer, redis, prometheus, alertmanager, logship,
//! grafana, containers) is one folder here plus one folder under `templates/`. It owns its site keys (a `keys!` struct, typed into its own model
//! in [`Site::ext`]), its checks, its typed, documented template contexts (never raw
//! TOML) and its review facts, and says where each file goes, with what mode, owner and
//! apply actions. Adding a family means adding a folder and a line to [`FAMILIES`]; no
//! other family and no core module changes (ARCHITECTURE.md, "Adding a family").

pub mod acme;
pub mod alertmanager;
pub mod backups;
pub mod base;
pub mod containers;
pub mod delivery;
pub mod dns;
pub mod docs;
pub mod edge;
pub mod grafana;
pub mod haproxy;
pub mod keepalived;
pub mod logship;
pub mod minio;
pub mod nftables;
pub mod nginx;
pub mod pfsense;
pub mod pgbouncer;
pub mod postgres;
pub mod prometheus;
pub mod provenance;
pub mod proxmox;
pub mod redis;

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use minijinja::Value;
use serde::Serialize;

use crate::artifact::Trace;
use crate::diag::{Diagnostics, FileId, Loc};
use crate::load::RawSite;
use crate::load::keys::KeySet;
use crate::model::Site;
use crate::render::RenderJob;
use provenance::Depth;

/// A family's keys of one site file, as its own file-level type (downcast it).
pub type Part<'a> = (FileId, &'a (dyn Any + Send + Sync));

/// One artifact family.
pub trait Family: Sync {
    /// Short name, recorded in the manifest.
    fn name(&self) -> &'static str;
    /// The site keys this family owns: its file-level schema struct, e.g.
    /// `KeySet::of::<EdgeFile>()`. Unknown-key detection and the site reference read it.
    fn keys(&self) -> Option<KeySet> {
        None
    }
    /// Types this family's keys (each file's part, in file order) into its own model,
    /// stored in [`Site::ext`]; runs after the core entities are resolved.
    fn resolve(&self, _parts: &[Part], _site: &Site, _diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        None
    }
    /// Adds this family's render jobs for the site.
    fn lower(&self, site: &Site, out: &mut Lowering);
    /// Checks that only this family's output needs (certificates for the edge, flows a
    /// proxy relies on, …), run in the verify stage with all the others.
    fn verify(&self, _site: &Site, _diags: &mut Diagnostics) {}
    /// Facts this family's keys add to the entities of the semantic summary of
    /// `medianest diff` (an exposure's `waf`, a service's `balance`, its own entities):
    /// compared and formatted with the core's, so every key of a family is reviewed.
    /// Derived lines ("fw1 opens tcp/5432 from app to db") are facts of an entity of the
    /// family's own category, and read as added, removed or changed like the rest.
    fn facts(&self, _site: &Site) -> Vec<crate::model::facts::Fact> {
        Vec::new()
    }
    /// Adds jobs that describe the other families' files (the docs' host pages list what
    /// each host applies), after every family has lowered; `others` are their jobs.
    fn lower_after(&self, _site: &Site, _others: &[RenderJob], _out: &mut Lowering) {}
}

/// An address or network as allow-lists write it: `10.0.5.10` for one address,
/// `10.0.1.0/24` for a network.
pub fn net_text(net: ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() }
}

/// An address as the host part of `address:port` and of a URL: an IPv6 address in
/// brackets (`[fd00:20::10]`), since its own colons would otherwise read as a port
/// (nginx: `invalid port in upstream`, HAProxy: `invalid address`). Every family writes a
/// socket address or URL through this or [`socket_text`], never `format!("{a}:{p}")`.
pub fn host_text(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `address:port` as nginx, HAProxy, Prometheus and rsyslog read it: `10.0.2.10:8080`,
/// `[fd00:20::10]:8080`.
pub fn socket_text(a: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(a, port).to_string()
}

/// The sources the flow plan lets open `port` on `host`, for an allow-list (HAProxy's
/// stats ACL, Nginx `allow`, `pg_hba`): each address or network once, sorted, with the
/// flows and addresses it comes from; the internet is `0.0.0.0/0` and `::/0`. Reading
/// the plan, as the host firewall does, keeps every allow-list in step with it.
pub fn allowed_sources(
    site: &Site,
    host: crate::model::HostId,
    port: crate::model::values::PortSpec,
) -> Vec<provenance::Src<String>> {
    use crate::model::flows::{Peer, peer_locs, peer_networks};
    let mut nets: std::collections::BTreeMap<ipnet::IpNet, Vec<&Loc>> = Default::default();
    for g in site.flow_plan().into_host(host).filter(|g| g.port == port) {
        let f = &site.flows[g.flow];
        let locs = peer_locs(site, g.from, &f.from.loc);
        let found = match g.from {
            Peer::Internet => vec!["0.0.0.0/0".parse().expect("a network"), "::/0".parse().expect("a network")],
            p => peer_networks(site, p),
        };
        for n in found {
            nets.entry(n).or_default().extend(locs.iter().copied().chain([&f.loc]));
        }
    }
    nets.into_iter().map(|(n, l)| provenance::Src::of(net_text(n), "allowed source (a flow)", l)).collect()
}

/// The host's addresses that the flow plan's grants on `ports` arrive at, with the flows
/// that reach them: what a server listens on (`listen_addresses`, `bind`,
/// `local-address`), so it listens exactly where the host firewall lets clients in.
pub fn listen_addresses(
    site: &Site,
    host: crate::model::HostId,
    ports: &[crate::model::values::PortSpec],
) -> Vec<provenance::Src<String>> {
    listen_ips(site, host, ports).into_iter().map(|a| a.map(|ip| ip.to_string())).collect()
}

/// [`listen_addresses`] as addresses.
fn listen_ips(
    site: &Site,
    host: crate::model::HostId,
    ports: &[crate::model::values::PortSpec],
) -> Vec<provenance::Src<std::net::IpAddr>> {
    let h = site.host(host);
    let mut hit: std::collections::BTreeMap<usize, Vec<&Loc>> = Default::default();
    for g in site.flow_plan().into_host(host).filter(|g| ports.contains(&g.port)) {
        let i = crate::model::flows::arrival(site, host, g.from);
        if i < h.interfaces.len() {
            hit.entry(i).or_default().push(&site.flows[g.flow].loc);
        }
    }
    // A flow between two services of this host needs no grant (loopback passes every
    // firewall), but the client still connects to the address it is given: the one
    // this host reaches itself at.
    for (_, f) in site.flow_plan().local_to(host).filter(|(p, _)| ports.contains(p)) {
        let i = crate::model::flows::arrival(site, host, crate::model::flows::Peer::Host(host));
        if i < h.interfaces.len() {
            hit.entry(i).or_default().push(&site.flows[f].loc);
        }
    }
    hit.into_iter()
        .map(|(i, locs)| {
            let a = &h.interfaces[i].address;
            provenance::Src::of(a.value, "listen address (reached by a flow)", std::iter::once(&a.loc).chain(locs))
        })
        .collect()
}

/// The services of a built-in kind that a family configures: the kind resolved (a
/// misspelt kind is the core's error, not a family's) and at least one host.
pub fn configured(site: &Site, kind: crate::model::ServiceKind) -> impl Iterator<Item = crate::model::ServiceId> + '_ {
    site.services
        .iter()
        .enumerate()
        .filter(move |(_, s)| s.declared.kind_known && s.kind.value == kind && !s.hosts.is_empty())
        .map(|(i, _)| crate::model::ServiceId(i))
}

/// Where a server that takes one listen address listens on `host` for `port`: the one
/// address the flows to it arrive at ([`listen_addresses`]), every address when they
/// arrive at several (the host firewall still decides), or loopback when none does.
pub fn listen_one(
    site: &Site,
    host: crate::model::HostId,
    port: crate::model::values::PortSpec,
    loc: &Loc,
) -> provenance::Src<String> {
    let found = listen_ips(site, host, &[port]);
    let n = port.port;
    let v6 = site.host(host).interfaces.iter().any(|i| i.address.value.is_ipv6());
    match found.len() {
        0 => provenance::Src::at(format!("127.0.0.1:{n}"), "listen address (no flow reaches it)", loc),
        1 => found.into_iter().next().expect("one").map(|a| socket_text(a, n)),
        // `[::]` takes both families on Linux (net.ipv6.bindv6only is 0); `0.0.0.0`
        // would miss an IPv6 interface.
        _ if v6 => provenance::Src::at(format!("[::]:{n}"), "listen address (flows reach several)", loc),
        _ => provenance::Src::at(format!("0.0.0.0:{n}"), "listen address (flows reach several)", loc),
    }
}

/// A service's port by name (else its first), with where it is decided.
pub fn service_port<'a>(
    site: &'a Site,
    id: crate::model::ServiceId,
    name: &str,
) -> Option<(crate::model::values::PortSpec, &'a Loc)> {
    let svc = site.service(id);
    svc.port(name).or(svc.ports.first()).map(|p| (p.spec, p.loc.as_ref().unwrap_or(&svc.loc)))
}

/// Where a host holds a service's secret, as a file: `/run/medianest/secrets/<service>/<name>`
/// (a tmpfs the secrets delivery fills; never under `/etc`, never in `generated/`).
/// Configurations name this path (`routing_key_file`, `*_FILE`, `passfile`).
pub fn secret_file(service: &str, name: &str) -> String {
    format!("/run/medianest/secrets/{service}/{name}")
}

/// Debian's node exporter reads `*.prom` files here (its `--collector.textfile.directory`):
/// the agent's metrics (family delivery) and the backup jobs' (family backups).
pub const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// The PostgreSQL version of a service that names none (Debian 12's `postgresql`).
pub const DEFAULT_POSTGRES_VERSION: &str = "15";

/// The configured PostgreSQL version of a service: its `version`, or
/// [`DEFAULT_POSTGRES_VERSION`]. Here, not in the postgres family, because the backup
/// jobs and the bootstrap read it too, and the postgres family reads theirs.
pub fn postgres_version(site: &Site, id: crate::model::ServiceId) -> &str {
    site.service(id).version.as_deref().unwrap_or(DEFAULT_POSTGRES_VERSION)
}

/// The zone whose network holds a floating address.
pub fn vip_zone(site: &Site, vip: std::net::IpAddr) -> Option<crate::model::ZoneId> {
    site.zones.iter().position(|z| z.cidr.as_ref().is_some_and(|c| c.value.contains(&vip))).map(crate::model::ZoneId)
}

/// The checks of a VRRP floating address held by `hosts` (keepalived's edge pair, a
/// postgres service's `failover`): in a zone, not its network, broadcast or gateway
/// address, no host's address, and every host with a named interface in that zone
/// (keepalived binds it). Returns the zone, when there is one.
pub fn check_vip(
    site: &Site,
    vip: &crate::model::At<std::net::IpAddr>,
    hosts: &[crate::model::At<crate::model::HostId>],
    diags: &mut crate::diag::Diagnostics,
) -> Option<crate::model::ZoneId> {
    use crate::diag::Diagnostic;
    let Some(zone) = vip_zone(site, vip.value) else {
        diags.push(
            Diagnostic::error("address-outside-zone", format!("VIP `{}` is in no zone", vip.value), vip.loc.clone())
                .help("pick a free address in the zone the hosts share"),
        );
        return None;
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
                format!("VIP `{}` is the network or broadcast address of zone `{}`", vip.value, site.zone(zone).name),
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
    for h in hosts {
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
    Some(zone)
}

/// Every family, in the order their jobs are planned (output order is by path anyway).
pub const FAMILIES: &[&dyn Family] = &[
    &docs::Docs,
    &base::Base,
    &edge::EdgeFamily,
    &haproxy::Haproxy,
    &acme::Acme,
    &keepalived::Keepalived,
    &nginx::Nginx,
    &nftables::Nftables,
    &delivery::Delivery,
    &postgres::Postgres,
    &pfsense::Pfsense,
    &dns::Dns,
    &proxmox::Proxmox,
    &pgbouncer::Pgbouncer,
    &redis::Redis,
    &prometheus::Prometheus,
    &alertmanager::Alertmanager,
    &logship::Logship,
    &grafana::Grafana,
    &containers::Containers,
    &backups::Backups,
];

/// The jobs being collected from the families.
pub struct Lowering<'a> {
    /// Jobs so far.
    pub jobs: Vec<RenderJob>,
    /// How much provenance the jobs keep.
    pub depth: Depth,
    /// The site's file names, for `sources`.
    files: &'a [String],
}

/// A value converted once for many files, with its recording (see
/// [`Lowering::add_shared`]).
pub struct Shared {
    /// The converted value.
    pub value: Value,
    files: BTreeSet<FileId>,
    traces: Arc<[Trace]>,
}

impl<'a> Lowering<'a> {
    /// An empty lowering of `site`, keeping provenance at `depth`.
    pub fn new(site: &'a Site, depth: Depth) -> Self {
        Lowering { jobs: Vec::new(), depth, files: &site.files }
    }

    /// Converts a part of many files' contexts once, recording its provenance.
    pub fn share(&self, value: &impl Serialize) -> Shared {
        let (value, found) = provenance::record(self.depth, || Value::from(minijinja::value::Serde(value)));
        Shared { value, files: found.files, traces: found.traces.into() }
    }

    /// Adds a job rendering `template` with `context`. What the context's [`Src`]
    /// values record become the file's traces, and the site files they come from (and
    /// the file of `origin`, the entity it is rendered for) its `sources`.
    ///
    /// [`Src`]: provenance::Src
    pub fn add(
        &mut self,
        template: &'static str,
        context: &impl Serialize,
        meta: crate::artifact::ArtifactMeta,
        origin: Option<Loc>,
    ) {
        self.add_shared(template, context, &[], meta, origin);
    }

    /// [`Lowering::add`] for a context that holds parts converted once for many files
    /// ([`Lowering::share`]), whose provenance is added to the file's.
    pub fn add_shared(
        &mut self,
        template: &'static str,
        context: &impl Serialize,
        shared: &[&Shared],
        mut meta: crate::artifact::ArtifactMeta,
        origin: Option<Loc>,
    ) {
        let (context, mut found) = provenance::record(self.depth, || Value::from(minijinja::value::Serde(context)));
        found.files.extend(origin.iter().map(|l| l.file));
        meta.traces = vec![found.traces.into()];
        for s in shared {
            found.files.extend(s.files.iter().copied());
            if !s.traces.is_empty() {
                meta.traces.push(s.traces.clone());
            }
        }
        meta.sources = found.files.into_iter().filter_map(|f| self.files.get(f).cloned()).collect();
        self.jobs.push(RenderJob { template, context, meta, origin });
    }
}

/// A context converted once and rendered as several files (a docs page as Markdown and as
/// HTML), with `sources` set in it: the site files it comes from, as its files' manifest
/// `sources` list them, so the page says where it came from without listing it by hand.
pub struct Page {
    /// The converted context, with `sources`.
    pub value: Value,
    sources: Vec<String>,
    traces: Arc<[Trace]>,
}

impl Lowering<'_> {
    /// Converts `context` (recording its provenance, with the file of `origin`) into a
    /// [`Page`].
    pub fn page(&self, context: &impl Serialize, origin: Option<&Loc>) -> Page {
        let (value, mut found) = provenance::record(self.depth, || Value::from(minijinja::value::Serde(context)));
        found.files.extend(origin.map(|l| l.file));
        let sources: Vec<String> = found.files.into_iter().filter_map(|f| self.files.get(f).cloned()).collect();
        let value = minijinja::context! { sources => Value::from(sources.clone()), ..value };
        Page { value, sources, traces: found.traces.into() }
    }

    /// Adds a job rendering `template` with the page's context, and `extra` merged in.
    pub fn add_page(
        &mut self,
        template: &'static str,
        page: &Page,
        extra: Option<Value>,
        mut meta: crate::artifact::ArtifactMeta,
    ) {
        meta.traces = vec![page.traces.clone()];
        meta.sources = page.sources.clone();
        let context = match extra {
            Some(extra) => minijinja::context! { ..extra, ..page.value.clone() },
            None => page.value.clone(),
        };
        self.jobs.push(RenderJob { template, context, meta, origin: None });
    }
}

/// The parts of type `F` among a family's parts, in file order.
pub fn parts_of<'a, F: 'static>(parts: &[Part<'a>]) -> Vec<(FileId, &'a F)> {
    parts.iter().filter_map(|(f, p)| p.downcast_ref::<F>().map(|x| (*f, x))).collect()
}

/// A family's keys on services: `(file, service id, keys)` for every service of the site
/// that a part names (unknown names are the core's to report).
pub fn service_keys<'a, S>(
    site: &Site,
    files: &[(FileId, &'a crate::load::schema::Named<S>)],
) -> Vec<(FileId, crate::model::ServiceId, &'a S)> {
    use crate::resolve::cx::{Names, RefTo};
    let mut out = Vec::new();
    for (file, named) in files {
        for (name, keys) in named.iter() {
            if let Some(id) = site.id(RefTo::Service, name.get_ref()) {
                out.push((*file, crate::model::ServiceId(id), keys));
            }
        }
    }
    out
}

/// The facts every family adds to a site's entities, for the semantic review.
pub fn facts(site: &Site) -> Vec<crate::model::facts::Fact> {
    FAMILIES.iter().flat_map(|f| f.facts(site)).collect()
}

/// Every family's key set, in [`FAMILIES`] order (`None` for a family without keys):
/// what [`crate::load`] gives each family of every file.
pub fn key_sets() -> Vec<Option<KeySet>> {
    FAMILIES.iter().map(|f| f.keys()).collect()
}

/// Lets every family type its own keys into [`Site::ext`] (after core resolution).
pub fn resolve(raw: &RawSite, site: &mut Site, diags: &mut Diagnostics) {
    for (i, f) in FAMILIES.iter().enumerate() {
        let parts: Vec<Part> =
            raw.owned.get(i).into_iter().flatten().map(|(file, part)| (*file, part.as_ref())).collect();
        if let Some(model) = f.resolve(&parts, site, diags) {
            site.ext.insert(f.name(), model);
        }
    }
    // The backup jobs read keys no service lists, and a Swarm stack's secrets are
    // created from the manager's copy: the secrets delivery must know.
    let implied: Vec<crate::model::ImpliedSecret> = backups::secrets(site)
        .into_iter()
        .map(|(host, service, name, loc)| (host, service, name.to_string(), loc))
        .chain(containers::secrets(site))
        .map(|(host, service, name, loc)| crate::model::ImpliedSecret { name, host, service, loc: loc.clone() })
        .collect();
    site.secrets.implied = implied;
}

/// Runs every family's own checks (after the core checks of [`crate::verify`]).
pub fn verify(site: &Site, diags: &mut Diagnostics) {
    for family in FAMILIES {
        family.verify(site, diags);
    }
}

/// Lowers the site through every family, keeping provenance at `depth`.
pub fn lower(site: &Site, depth: Depth) -> Vec<RenderJob> {
    use rayon::prelude::*;
    // Families are independent: lower them on every core, collected in this fixed order.
    let per_family: Vec<Vec<RenderJob>> = FAMILIES
        .par_iter()
        .map(|f| {
            let mut l = Lowering::new(site, depth);
            f.lower(site, &mut l);
            l.jobs
        })
        .collect();
    let mut jobs: Vec<RenderJob> = per_family.into_iter().flatten().collect();
    let after: Vec<Vec<RenderJob>> = FAMILIES
        .par_iter()
        .map(|f| {
            let mut l = Lowering::new(site, depth);
            f.lower_after(site, &jobs, &mut l);
            l.jobs
        })
        .collect();
    jobs.extend(after.into_iter().flatten());
    jobs
}

/// The sorted, unique names of the site files that the locations come from.
pub fn sources_of<'a>(site: &Site, locs: impl IntoIterator<Item = &'a Loc>) -> Vec<String> {
    let set: BTreeSet<&str> = locs.into_iter().filter_map(|l| site.files.get(l.file).map(String::as_str)).collect();
    set.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_socket_addresses_are_bracketed() {
        let v4: std::net::IpAddr = "10.0.2.10".parse().unwrap();
        let v6: std::net::IpAddr = "fd00:20::10".parse().unwrap();
        assert_eq!(socket_text(v4, 8080), "10.0.2.10:8080");
        assert_eq!(socket_text(v6, 8086), "[fd00:20::10]:8086");
        assert_eq!(host_text(v4), "10.0.2.10");
        assert_eq!(host_text(v6), "[fd00:20::10]");
    }
}
