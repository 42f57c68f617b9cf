//! Family **docs**: the Markdown inventory a reviewer reads in a pull request.
//!
//! `generated/docs/inventory.md` lists the recovery targets, the defaults in force,
//! zones with VLANs and CIDRs, docker networks, hosts with addresses and placement,
//! services with images, ports and resources, flows with their reasons, guard-rails and
//! backups. Template: `templates/docs/inventory.md.j2`.

use serde::Serialize;

use super::{Family, Lowering};
use crate::artifact::ArtifactMeta;
use crate::model::{Endpoint, HealthCheck, Site};

/// The docs family.
pub struct Docs;

/// Context of `docs/inventory.md.j2`.
#[derive(Serialize)]
pub struct InventoryContext {
    /// `[site]`.
    pub site: SiteView,
    /// RTO and RPO, e.g. `4h`.
    pub rto: String,
    /// RPO.
    pub rpo: String,
    /// Defaults in force, as `(name, value)` rows.
    pub defaults: Vec<(String, String)>,
    /// Zones, by name.
    pub zones: Vec<ZoneView>,
    /// Docker networks, by name.
    pub networks: Vec<NetworkView>,
    /// Hosts, by name.
    pub hosts: Vec<HostView>,
    /// Services, by name.
    pub services: Vec<ServiceView>,
    /// Flows, in site order.
    pub flows: Vec<FlowView>,
    /// Guard-rails, in site order.
    pub guardrails: Vec<FlowView>,
    /// Backups, by name.
    pub backups: Vec<BackupView>,
}

/// `[site]` for the docs.
#[derive(Serialize)]
pub struct SiteView {
    /// Name.
    pub name: String,
    /// Internal domain.
    pub domain: String,
    /// Public domain or empty.
    pub public_domain: String,
    /// Description or empty.
    pub description: String,
}

/// A zone row.
#[derive(Serialize)]
pub struct ZoneView {
    /// Name.
    pub name: String,
    /// VLAN id.
    pub vlan: String,
    /// CIDR.
    pub cidr: String,
    /// Gateway or empty.
    pub gateway: String,
    /// Description or empty.
    pub description: String,
}

/// A docker network row.
#[derive(Serialize)]
pub struct NetworkView {
    /// Name.
    pub name: String,
    /// Subnet.
    pub cidr: String,
    /// `bridge` or `overlay`.
    pub driver: String,
    /// Whether internal.
    pub internal: bool,
    /// Static attachments, `service address`.
    pub members: Vec<String>,
}

/// A host row.
#[derive(Serialize)]
pub struct HostView {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Hypervisor or empty.
    pub on: String,
    /// OS or empty.
    pub os: String,
    /// Roles.
    pub roles: Vec<String>,
    /// `zone address` per interface.
    pub addresses: Vec<String>,
    /// Services on it.
    pub services: Vec<String>,
}

/// A service row.
#[derive(Serialize)]
pub struct ServiceView {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Image or `native`.
    pub image: String,
    /// Hosts (primary first for postgres).
    pub hosts: Vec<String>,
    /// `name proto/port`.
    pub ports: Vec<String>,
    /// Health check, one line.
    pub health: String,
    /// `cpus / memory (reserved cpus / memory)`.
    pub resources: String,
    /// Public URLs.
    pub exposed: Vec<String>,
    /// Secret names.
    pub secrets: Vec<String>,
    /// Backups covering it.
    pub backups: Vec<String>,
    /// Description or empty.
    pub description: String,
}

/// A flow or guard-rail row.
#[derive(Serialize)]
pub struct FlowView {
    /// Source.
    pub from: String,
    /// Destination.
    pub to: String,
    /// Ports.
    pub ports: Vec<String>,
    /// Reason.
    pub why: String,
}

/// A backup row.
#[derive(Serialize)]
pub struct BackupView {
    /// Name.
    pub name: String,
    /// Service.
    pub service: String,
    /// Method.
    pub method: String,
    /// Interval (and continuous archiving).
    pub every: String,
    /// Target.
    pub target: String,
    /// Retention.
    pub retention: String,
    /// Restore test.
    pub verify_restore: bool,
}

impl Family for Docs {
    fn name(&self) -> &'static str {
        "docs"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let ctx = inventory(site);
        out.add(
            "docs/inventory.md.j2",
            &ctx,
            ArtifactMeta::shared(self.name(), "docs/inventory.md".into(), site.files.clone())
                .traced(super::all_traces(site)),
            None,
        );
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

/// Builds the inventory context.
pub fn inventory(site: &Site) -> InventoryContext {
    let d = &site.defaults;
    let defaults = vec![
        ("container restart policy".into(), d.restart.clone()),
        ("container pids limit".into(), d.pids_limit.to_string()),
        ("tmpfs size".into(), d.tmpfs_size.to_string()),
        ("container root filesystem".into(), "read-only".into()),
        ("container capabilities".into(), "all dropped".into()),
        ("no-new-privileges".into(), "on".into()),
        (
            "health check".into(),
            format!(
                "every {}, timeout {}, {} retries, start period {}",
                d.health_interval, d.health_timeout, d.health_retries, d.health_start_period
            ),
        ),
        (
            "resources".into(),
            format!(
                "{} CPUs / {} (reserved {} CPUs / {}), {} pids",
                d.resources.cpus,
                d.resources.memory,
                d.resources.reserve_cpus,
                d.resources.reserve_memory,
                d.resources.pids
            ),
        ),
        ("backup retention".into(), d.backup_retention.to_string()),
    ];
    let zones = site
        .zones
        .iter()
        .map(|z| ZoneView {
            name: z.name.clone(),
            vlan: z.vlan.as_ref().map(|v| v.value.to_string()).unwrap_or_default(),
            cidr: z.cidr.as_ref().map(|c| c.value.to_string()).unwrap_or_default(),
            gateway: z.gateway.as_ref().map(|g| g.value.to_string()).unwrap_or_default(),
            description: opt(&z.description),
        })
        .collect();
    let networks = site
        .docker_networks
        .iter()
        .enumerate()
        .map(|(i, n)| NetworkView {
            name: n.name.clone(),
            cidr: n.cidr.as_ref().map(|c| c.value.to_string()).unwrap_or_default(),
            driver: match n.driver {
                crate::model::NetDriver::Bridge => "bridge".into(),
                crate::model::NetDriver::Overlay => {
                    if n.encrypted {
                        "overlay (encrypted)".into()
                    } else {
                        "overlay".into()
                    }
                }
            },
            internal: n.internal,
            members: site
                .services
                .iter()
                .flat_map(|s| {
                    s.networks.iter().filter(|(id, _)| id.0 == i).map(move |(_, a)| format!("{} {}", s.name, a.value))
                })
                .collect(),
        })
        .collect();
    let hosts = site
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| HostView {
            name: h.name.clone(),
            kind: h.kind.value.name().into(),
            on: h.on.as_ref().map(|o| site.host(o.value).name.clone()).unwrap_or_default(),
            os: opt(&h.os),
            roles: h.roles.iter().map(|r| r.value.name().to_string()).collect(),
            addresses: h
                .interfaces
                .iter()
                .map(|i| format!("{} {}", site.zone(i.zone.value).name, i.address.value))
                .collect(),
            services: site
                .services_on(crate::model::HostId(i))
                .into_iter()
                .map(|s| site.service(s).name.clone())
                .collect(),
        })
        .collect();
    let mut backups_of: Vec<Vec<String>> = vec![Vec::new(); site.services.len()];
    for b in &site.backups {
        backups_of[b.service.value.0].push(b.name.clone());
    }
    let services = site
        .services
        .iter()
        .zip(backups_of)
        .enumerate()
        .map(|(i, (s, backups))| {
            let id = crate::model::ServiceId(i);
            let mut hosts: Vec<String> = s.hosts.iter().map(|h| site.host(h.value).name.clone()).collect();
            if let Some(p) = super::postgres::model(site).primary.get(&id) {
                let pn = &site.host(p.value).name;
                hosts = hosts.into_iter().map(|h| if &h == pn { format!("{h} (primary)") } else { h }).collect();
            }
            if s.replicas > 1 {
                hosts.push(format!("{} replicas", s.replicas));
            }
            let r = &s.resources;
            ServiceView {
                name: s.name.clone(),
                kind: s.kind.value.info().name.into(),
                image: s.image.as_ref().map(|i| i.value.to_string()).unwrap_or_else(|| {
                    s.kind.value.info().package.map(|p| format!("native ({p})")).unwrap_or_else(|| "appliance".into())
                }),
                hosts,
                ports: s.ports.iter().map(|p| format!("{} {}", p.name, p.spec)).collect(),
                health: match s.health.as_ref().map(|h| &h.check) {
                    Some(HealthCheck::Http { path, port, .. }) => format!("GET {path} on {port}"),
                    Some(HealthCheck::Tcp { port }) => format!("TCP connect to {port}"),
                    Some(HealthCheck::Exec(argv)) => argv.join(" "),
                    None => "none".into(),
                },
                resources: if s.kind.value.info().container {
                    format!("{} CPUs / {} (reserved {} / {})", r.cpus, r.memory, r.reserve_cpus, r.reserve_memory)
                } else {
                    "host".into()
                },
                exposed: s
                    .expose
                    .iter()
                    .map(|e| {
                        let waf = super::edge::edge(site).of(id, e).waf;
                        format!("https://{}{} ({}, WAF {:?})", e.hostname.value, e.path.value, e.port.value, waf)
                            .to_lowercase()
                    })
                    .collect(),
                secrets: s.secrets.iter().map(|x| x.value.clone()).collect(),
                backups,
                description: opt(&s.description),
            }
        })
        .collect();
    let flows = site
        .flows
        .iter()
        .map(|f| FlowView {
            from: site.endpoint_name(&f.from.value),
            to: site.endpoint_name(&f.to.value),
            ports: f.ports.iter().map(|p| p.value.to_string()).collect(),
            why: f.why.clone(),
        })
        .collect();
    let zone_ep =
        |z: Option<crate::model::ZoneId>| site.endpoint_name(&z.map(Endpoint::Zone).unwrap_or(Endpoint::Internet));
    let guardrails = site
        .guardrails
        .iter()
        .map(|g| FlowView { from: zone_ep(g.from), to: zone_ep(g.to), ports: vec![], why: g.why.clone() })
        .collect();
    let backups = site
        .backups
        .iter()
        .map(|b| BackupView {
            name: b.name.clone(),
            service: site.service(b.service.value).name.clone(),
            method: b.method.name().into(),
            every: if b.continuous { format!("{} + continuous", b.every.value) } else { b.every.value.to_string() },
            target: site.endpoint_name(&b.target.value),
            retention: b.retention.to_string(),
            verify_restore: b.verify_restore,
        })
        .collect();
    InventoryContext {
        site: SiteView {
            name: site.settings.name.clone(),
            domain: site.settings.domain.clone(),
            public_domain: opt(&site.settings.public_domain),
            description: opt(&site.settings.description),
        },
        rto: site.recovery.rto.value.to_string(),
        rpo: site.recovery.rpo.value.to_string(),
        defaults,
        zones,
        networks,
        hosts,
        services,
        flows,
        guardrails,
        backups,
    }
}
