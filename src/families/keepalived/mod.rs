//! Family **keepalived**: VRRP floating addresses, one `/etc/keepalived/keepalived.conf`
//! per host holding every instance the host takes part in:
//!
//! - the edge pair's, when the site gives a `keepalived` service a `vip`. Priority
//!   follows the order of the service's hosts (the first is preferred) and a recovered
//!   host never takes the address back (`nopreempt`: a fail-back would cut every open
//!   connection, WebSockets included, a second time); a track script drops a host whose
//!   HAProxy does not answer HTTPS on loopback (a process that lives but hangs counts as
//!   down), run as `nobody` ([`NOBODY`]);
//! - a database's, when a postgres service has `failover` (family postgres decides who
//!   may hold it, [`postgres::failover`], and renders the script run here): on the
//!   primary (priority 150) and each replica it may promote (10 less each), `nopreempt`
//!   (a recovered former primary never takes the address back), the failover script
//!   as track script and as `notify_master`/`notify_backup`/`notify_fault`, as root
//!   (it promotes and fences).
//!
//! Peers talk unicast over the interface in the VIP's zone. The router ids of every
//! instance in a zone must differ (checked here, the one family that sees them all).
//! Template: `templates/keepalived/keepalived.conf.j2`.

use serde::Serialize;

pub mod keys;

use std::any::Any;
use std::collections::BTreeMap;

use super::provenance::Src;
use super::{Family, Lowering, Part, edge, postgres};
use crate::artifact::ArtifactMeta;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::values::{PortSpec, Proto};
use crate::model::{At, HostId, ServiceKind, Site, ZoneId};

/// The keepalived model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { services: std::collections::BTreeMap::new() };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The keepalived family.
pub struct Keepalived;

/// Context of `keepalived/keepalived.conf.j2`: every VRRP instance of one host.
#[derive(Serialize)]
pub struct KeepalivedContext {
    /// Host name (router id).
    pub host: Src<String>,
    /// The track scripts the instances use.
    pub scripts: Vec<ScriptView>,
    /// The instances, the edge's first.
    pub instances: Vec<InstanceView>,
}

/// A `vrrp_script`.
#[derive(Serialize, Clone)]
pub struct ScriptView {
    /// Its name.
    pub name: Src<String>,
    /// What it runs.
    pub script: Src<String>,
    /// Why it exists (a comment).
    pub why: &'static str,
    /// Seconds between runs.
    pub interval: u8,
    /// Seconds before a run counts as failed.
    pub timeout: u8,
    /// Failures before the instance goes to FAULT.
    pub fall: u8,
    /// Successes before it may be elected again.
    pub rise: u8,
    /// Whether it counts as failed until it has succeeded once (a host proves it may hold
    /// the address before it can be elected).
    pub init_fail: bool,
}

/// One `vrrp_instance`.
#[derive(Serialize)]
pub struct InstanceView {
    /// Instance name (the service).
    pub instance: Src<String>,
    /// What the address is for (a comment).
    pub what: Src<String>,
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
    /// The track script, if any.
    pub track: Option<Src<String>>,
    /// The notify scripts (the database's failover script).
    pub notify: Option<NotifyView>,
}

/// `notify_master`, `notify_backup`, `notify_fault`.
#[derive(Serialize)]
pub struct NotifyView {
    /// On becoming MASTER.
    pub master: Src<String>,
    /// On becoming BACKUP.
    pub backup: Src<String>,
    /// On FAULT.
    pub fault: Src<String>,
}

/// How a script that needs no privilege runs: as `nobody` (which exists on every Debian
/// host), with no supplementary groups and no way to gain privileges back. util-linux's
/// `setpriv` (essential, always installed) drops them, as keepalived cannot: see the
/// template's `script_user`.
const NOBODY: &str = "/usr/bin/setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs";

/// The edge's track script: an HTTPS request to HAProxy on loopback, answered within
/// the script's timeout. Not a process check: a HAProxy that lives but hangs (stopped,
/// out of file descriptors, a frontend wedged) must give the address up. `-k`: the
/// request names no host, so the certificate's names cannot match, and on a first
/// deploy it may still be the self-signed placeholder.
fn https_answers(haproxy: &crate::model::Service) -> Src<String> {
    edge::port_src(haproxy, "https", 443)
        .map(|port| format!("{NOBODY} /usr/bin/curl -sk -o /dev/null --max-time 1 https://127.0.0.1:{port}/"))
}

/// One VRRP instance in a zone, for the router id check.
struct Claim<'a> {
    zone: crate::model::ZoneId,
    vrid: &'a crate::model::At<u8>,
    what: String,
}

/// Every VRRP instance of the site: the keepalived services' and the postgres
/// failovers'.
fn claims(site: &Site) -> Vec<Claim<'_>> {
    let mut out = Vec::new();
    for (id, svc) in edge::services_of(site, ServiceKind::Keepalived) {
        let Some(v) = model(site).services.get(&id) else { continue };
        let Some(zone) = v.vip.as_ref().and_then(|vip| vip_zone(site, vip.value)) else { continue };
        out.push(Claim { zone, vrid: &v.vrid, what: format!("keepalived service `{}`", svc.name) });
    }
    for (id, f) in &postgres::model(site).failover {
        let Some(zone) = vip_zone(site, f.vip.value) else { continue };
        out.push(Claim { zone, vrid: &f.vrid, what: format!("the failover of `{}`", site.service(*id).name) });
    }
    out
}

use super::vip_zone;

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
        // One keepalived.conf per host, with every instance it takes part in.
        let mut hosts: BTreeMap<HostId, (Vec<ScriptView>, Vec<InstanceView>, Loc)> = BTreeMap::new();
        let iface = |h: HostId, zone: ZoneId| site.host(h).interfaces.iter().find(|i| i.zone.value == zone);
        let name_of = |i: &crate::model::Interface| match &i.name {
            Some(n) => Src::at(n.value.clone(), "interface name", &n.loc),
            None => Src::at(String::new(), "interface name", &i.zone.loc),
        };
        // What every instance derives alike: the priority by the host's place (150, 140,
        // …), its own address, its peers' in the zone, the address with the zone's prefix.
        let shared = |i: usize,
                      h: &At<HostId>,
                      me: &crate::model::Interface,
                      all: &[At<HostId>],
                      zone: ZoneId,
                      vip: &At<std::net::IpAddr>,
                      why: &'static str| {
            let cidr = site.zone(zone).cidr.as_ref();
            let prefix = cidr.map(|c| c.value.prefix_len()).unwrap_or(32);
            (
                Src::at(150u16.saturating_sub(10 * i as u16).max(1), why, &h.loc),
                Src::at(me.address.value.to_string(), "host address", &me.address.loc),
                all.iter()
                    .filter(|o| o.value != h.value)
                    .filter_map(|o| iface(o.value, zone))
                    .map(|x| Src::at(x.address.value.to_string(), "peer address", &x.address.loc))
                    .collect::<Vec<_>>(),
                Src::of(
                    format!("{}/{prefix}", vip.value),
                    "floating address",
                    std::iter::once(&vip.loc).chain(cidr.map(|c| &c.loc)),
                ),
            )
        };
        let haproxy: Vec<_> = edge::services_of(site, ServiceKind::Haproxy).map(|(_, s)| s).collect();
        for (id, svc) in edge::services_of(site, ServiceKind::Keepalived) {
            let vrrp = model(site).of(site, id);
            let Some(vip) = &vrrp.vip else { continue };
            let Some(zone) = vip_zone(site, vip.value) else { continue };
            for (i, h) in svc.hosts.iter().enumerate() {
                let Some(me) = iface(h.value, zone) else { continue };
                let on_host: Vec<_> = haproxy.iter().filter(|s| s.hosts.iter().any(|x| x.value == h.value)).collect();
                let entry = hosts.entry(h.value).or_insert_with(|| (Vec::new(), Vec::new(), svc.loc.clone()));
                let track = (!on_host.is_empty()).then(|| {
                    let name =
                        Src::of("chk_haproxy".to_string(), "HAProxy on the host", on_host.iter().map(|s| &s.loc));
                    if !entry.0.iter().any(|s| s.name.value == "chk_haproxy") {
                        entry.0.push(ScriptView {
                            name: name.clone(),
                            script: https_answers(on_host[0]),
                            why: "The address leaves a host whose HAProxy does not answer HTTPS (hung counts as down).",
                            interval: 2,
                            timeout: 2,
                            fall: 2,
                            rise: 2,
                            init_fail: false,
                        });
                    }
                    name
                });
                let (priority, source, peers, vip) =
                    shared(i, h, me, &svc.hosts, zone, vip, "priority (the host's place in the service's hosts)");
                entry.1.push(InstanceView {
                    instance: Src::at(svc.name.replace('-', "_"), "service", &svc.loc),
                    what: Src::at(format!("the floating address of `{}`", svc.name), "service", &svc.loc),
                    interface: name_of(me),
                    vrid: Src::at(vrrp.vrid.value, "VRRP router id", &vrrp.vrid.loc),
                    priority,
                    source,
                    peers,
                    vip,
                    track,
                    notify: None,
                });
            }
        }
        // The database failovers (family postgres decides who may hold the address and
        // renders the script keepalived runs).
        for (id, plan) in postgres::failover::plans(site) {
            let svc = site.service(id);
            let f = plan.failover;
            let script = postgres::failover::SCRIPT;
            let run = |verb: &str| Src::at(format!("/bin/sh {script} {verb}"), "the failover script", &f.loc);
            for (i, h) in plan.candidates.iter().enumerate() {
                let Some(me) = iface(h.value, plan.zone) else { continue };
                let entry = hosts.entry(h.value).or_insert_with(|| (Vec::new(), Vec::new(), svc.loc.clone()));
                let name = Src::at(format!("chk_{}", svc.name.replace('-', "_")), "service", &svc.loc);
                entry.0.push(ScriptView {
                    name: name.clone(),
                    script: run("check"),
                    why: "Healthy only where PostgreSQL is the primary, or a standby that may be promoted while no other host is the primary.",
                    interval: 2,
                    timeout: 8,
                    fall: 2,
                    rise: 1,
                    init_fail: true,
                });
                let (priority, source, peers, vip) = shared(
                    i,
                    h,
                    me,
                    &plan.candidates,
                    plan.zone,
                    &f.vip,
                    "priority (the primary, then `promote` in the service's order)",
                );
                entry.1.push(InstanceView {
                    instance: Src::at(svc.name.replace('-', "_"), "service", &svc.loc),
                    what: Src::at(format!("the failover address of PostgreSQL `{}`", svc.name), "service", &svc.loc),
                    interface: name_of(me),
                    vrid: Src::at(f.vrid.value, "VRRP router id", &f.vrid.loc),
                    priority,
                    source,
                    peers,
                    vip,
                    track: Some(name),
                    notify: Some(NotifyView { master: run("master"), backup: run("backup"), fault: run("fault") }),
                });
            }
        }
        for (hid, (scripts, instances, origin)) in hosts {
            let host = site.host(hid);
            let ctx = KeepalivedContext { host: Src::at(host.name.clone(), "host", &host.loc), scripts, instances };
            let mut meta =
                ArtifactMeta::host_file(self.name(), &host.name, "/etc/keepalived/keepalived.conf", 0o644, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.validate = Some(crate::artifact::Validator::Keepalived);
                a.reload = Some("keepalived.service".into());
            }
            out.add("keepalived/keepalived.conf.j2", &ctx, meta, Some(origin));
        }
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        // Two instances with one router id on one segment take each other's
        // advertisements as their own (keepalived logs and ignores them, or worse).
        let all = claims(site);
        for (i, a) in all.iter().enumerate() {
            if let Some(b) = all[..i].iter().find(|b| b.zone == a.zone && b.vrid.value == a.vrid.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-vrid",
                        format!(
                            "{} uses VRRP router id {} in zone `{}`, as {} does",
                            a.what,
                            a.vrid.value,
                            site.zone(a.zone).name,
                            b.what
                        ),
                        a.vrid.loc.clone(),
                    )
                    .also(b.vrid.loc.clone(), "the other instance")
                    .help("give each VRRP instance of a zone its own `vrid` (1–255)"),
                );
            }
        }
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
            if super::check_vip(site, vip, &svc.hosts, diags).is_none() {
                continue;
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
