//! Family **logship**: every Linux host ships its logs to the service that writes
//! `log_input` (the reference site's Logstash). Templates: `templates/logship/`.
//!
//! The shipper is **rsyslog**, Debian's own syslog daemon (priority `important`, so on
//! every Debian host already, and packaged in Debian 12 unlike Filebeat, Fluent Bit or
//! Vector): journald forwards every message to it, `imfile` reads Docker's json-file
//! container logs, and `omfwd` sends RFC 5424 over TCP with a disk-assisted queue, so a
//! receiver that is down loses nothing. It has a check mode (`rsyslogd -N1`), which the
//! agent runs on the staged file before it restarts rsyslog.service.
//!
//! Per Linux host, **`/etc/rsyslog.d/60-medianest.conf`**: one forwarding action per
//! host of the receiving service (the others as failovers), at the address a flow lets
//! this host reach, each message marked `class="operational"` or `class="security"`
//! (auth and authpriv, the host firewall's drops, the pull agent) in its structured
//! data. On each receiving host, the two index lifecycle policies that keep them
//! (`log_retention`, `security_log_retention`): **`/etc/medianest/elasticsearch/ilm/
//! medianest-{operational,security}.json`**, in the body `PUT _ilm/policy/<name>` takes.
//!
//! Checks: a Linux host that no flow lets reach a receiver on its log port is a missing
//! flow (its logs would queue for ever); the receiver's host ships over loopback.

pub mod keys;

use std::any::Any;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::Diagnostics;
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::flows::{Peer, arrival};
use crate::model::values::Duration;
use crate::model::{At, HostId, ServiceId, Site};

/// The forwarding configuration.
pub const CONF: &str = "/etc/rsyslog.d/60-medianest.conf";
/// HAProxy's logs, on an edge host: before Debian's `49-haproxy.conf`, which writes them
/// to `/var/log/haproxy.log` and then stops them, so they would never reach [`CONF`].
pub const HAPROXY_CONF: &str = "/etc/rsyslog.d/48-medianest-haproxy.conf";
/// The unit.
pub const UNIT: &str = "rsyslog.service";
/// Where the lifecycle policies go on the receiving host.
pub const ILM_DIR: &str = "/etc/medianest/elasticsearch/ilm";

/// The logship family.
pub struct Logship;

/// Context of `logship/rsyslog.conf.j2`.
#[derive(Serialize)]
pub struct ConfContext {
    /// The host.
    pub host: Src<String>,
    /// The receiving service.
    pub receiver: Src<String>,
    /// Its addresses, as this host reaches them (first the primary).
    pub targets: Vec<Src<String>>,
    /// The port.
    pub port: Src<u16>,
    /// Read Docker's container logs.
    pub docker: bool,
    /// Retentions, for the comment.
    pub retention: Src<String>,
    /// Security retention.
    pub security_retention: Src<String>,
}

/// Context of `logship/ilm.json.j2`.
#[derive(Serialize)]
pub struct IlmContext {
    /// What the policy is for.
    pub comment: String,
    /// Delete after.
    pub keep: Src<String>,
}

fn model(site: &Site) -> Option<&keys::Model> {
    site.ext.get::<keys::Model>()
}

/// The first receiver (a site has one logging service; more would each get the logs).
fn receiver(site: &Site) -> Option<(ServiceId, &keys::Receiver)> {
    model(site).and_then(|m| m.receivers.iter().next()).map(|(id, r)| (*id, r))
}

/// Where the site names its log input, when it ships logs at all (the bootstrap then
/// installs rsyslog on every Linux host).
pub fn input_loc(site: &Site) -> Option<&crate::diag::Loc> {
    receiver(site).map(|(_, r)| &r.port.loc)
}

/// Where `host` sends its logs: each host of the receiver, at the address the
/// connection arrives at (loopback for itself).
fn targets(site: &Site, host: HostId, recv: ServiceId, r: &keys::Receiver) -> Vec<Src<String>> {
    site.service(recv)
        .hosts
        .iter()
        .filter(|rh| !site.host(rh.value).interfaces.is_empty())
        .map(|rh| {
            if rh.value == host {
                return Src::at("127.0.0.1".to_string(), "log receiver (this host)", &rh.loc);
            }
            let h = site.host(rh.value);
            let i = &h.interfaces[arrival(site, rh.value, Peer::Host(host))];
            Src::of(i.address.value.to_string(), "log receiver (a flow)", [&i.address.loc, &r.port.loc])
        })
        .collect()
}

/// The hosts that ship logs: every Linux host with an address.
fn shippers(site: &Site) -> impl Iterator<Item = HostId> + '_ {
    (0..site.hosts.len()).map(HostId).filter(|h| {
        let host = site.host(*h);
        host.kind.value.is_linux() && !host.interfaces.is_empty()
    })
}

/// Context of `logship/haproxy.conf.j2`.
#[derive(Serialize)]
pub struct HaproxyLogContext {
    /// The host.
    pub host: Src<String>,
    /// The haproxy service on it.
    pub haproxy: Src<String>,
}

impl Family for Logship {
    fn name(&self) -> &'static str {
        "logship"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::LogshipFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let Some((recv, r)) = receiver(site) else { return };
        let svc = site.service(recv);
        let ret = Src::at(r.retention.value.to_string(), "log_retention", &r.retention.loc);
        let sec = Src::at(r.security_retention.value.to_string(), "security_log_retention", &r.security_retention.loc);
        for h in shippers(site).collect::<Vec<_>>() {
            let host = site.host(h);
            let ctx = ConfContext {
                host: Src::at(host.name.clone(), "host", &host.loc),
                receiver: Src::at(svc.name.clone(), "service", &svc.loc),
                targets: targets(site, h, recv, r),
                port: Src::at(r.port.value.port, "log_input", &r.port.loc),
                docker: host.has_role(crate::model::Role::Docker)
                    || host.has_role(crate::model::Role::SwarmManager)
                    || host.has_role(crate::model::Role::SwarmWorker),
                retention: ret.clone(),
                security_retention: sec.clone(),
            };
            // Checked together by rsyslog's parser, then rsyslog restarts.
            let rsyslog_file = |target: &str| {
                let mut meta = ArtifactMeta::host_file("logship", &host.name, target, 0o644, "root:root");
                if let Some(a) = meta.apply.as_mut() {
                    a.validate = Some(Validator::Rsyslog);
                    a.restart = Some(UNIT.into());
                }
                meta
            };
            out.add("logship/rsyslog.conf.j2", &ctx, rsyslog_file(CONF), Some(r.port.loc.clone()));
            if let Some((_, edge)) = super::edge::services_of(site, crate::model::ServiceKind::Haproxy)
                .find(|(_, s)| s.hosts.iter().any(|x| x.value == h))
            {
                let ctx = HaproxyLogContext {
                    host: Src::at(host.name.clone(), "host", &host.loc),
                    haproxy: Src::at(edge.name.clone(), "service", &edge.loc),
                };
                out.add("logship/haproxy.conf.j2", &ctx, rsyslog_file(HAPROXY_CONF), Some(r.port.loc.clone()));
            }
        }
        for rh in &svc.hosts {
            let host = site.host(rh.value);
            // Elasticsearch reads `14d`, never `2w`.
            let min_age = |d: &At<Duration>, what| Src::at(d.value.elasticsearch(), what, &d.loc);
            for (class, keep, what) in [
                (
                    "operational",
                    min_age(&r.retention, "log_retention"),
                    "operational logs: services, containers, the system",
                ),
                (
                    "security",
                    min_age(&r.security_retention, "security_log_retention"),
                    "security logs: sign-ins, privilege, firewall drops, the pull agent",
                ),
            ] {
                let ctx = IlmContext {
                    comment: format!(
                        "medianest-{class}: {what}. Generated by medianest from site/; apply with PUT _ilm/policy/medianest-{class}"
                    ),
                    keep,
                };
                let target = format!("{ILM_DIR}/medianest-{class}.json");
                let meta = ArtifactMeta::host_file("logship", &host.name, &target, 0o644, "root:root");
                out.add("logship/ilm.json.j2", &ctx, meta, Some(r.port.loc.clone()));
            }
        }
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let Some((recv, r)) = receiver(site) else { return Vec::new() };
        let subject = site.service(recv).name.clone();
        let fact = |field: &'static str, value: String| Fact {
            category: "service",
            subject: subject.clone(),
            field,
            value: value.into(),
        };
        vec![
            fact("log_input", r.port.value.to_string()),
            fact("log_retention", r.retention.value.to_string()),
            fact("security_log_retention", r.security_retention.value.to_string()),
        ]
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let Some((recv, r)) = receiver(site) else { return };
        let svc = site.service(recv);
        let plan = site.flow_plan();
        for h in shippers(site) {
            let reached = svc.hosts.iter().any(|rh| plan.allows(site, Some(h), Some(rh.value), r.port.value));
            if !reached {
                let zone =
                    site.host(h).interfaces.first().map(|i| site.zone(i.zone.value).name.clone()).unwrap_or_default();
                super::edge::missing_flow(
                    diags,
                    &r.port.loc,
                    &format!("zone:{zone}"),
                    &format!("service:{}", svc.name),
                    r.port.value,
                    "every host ships its logs to the logging service",
                    &format!("`{}` ships its logs to `{}`", site.host(h).name, svc.name),
                );
            }
        }
    }
}
