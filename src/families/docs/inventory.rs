//! `generated/docs/inventory.md`: the whole site on one page. It lists the recovery targets, the defaults in force,
//! zones with VLANs and CIDRs, docker networks, hosts with addresses and placement,
//! services with images, ports and resources, flows with their reasons, guard-rails and
//! backups. Template: `templates/docs/inventory.md.j2`.

use serde::Serialize;

use super::super::provenance::Src;
use crate::diag::Loc;
use crate::model::{Endpoint, HealthCheck, Site};

/// Context of `docs/inventory.md.j2`.
#[derive(Serialize)]
pub struct InventoryContext {
    /// `[site]`.
    pub site: SiteView,
    /// RTO and RPO, e.g. `4h`.
    pub rto: Src<String>,
    /// RPO.
    pub rpo: Src<String>,
    /// Defaults in force, as `(name, value)` rows.
    pub defaults: Vec<(&'static str, Src<String>)>,
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
    /// Who holds each secret, by name (empty when the site does not deliver secrets).
    pub secrets: Vec<SecretView>,
}

/// Who holds a secret: never its value.
#[derive(Serialize)]
pub struct SecretView {
    /// Name.
    pub name: Src<String>,
    /// The hosts it is encrypted to and delivered on.
    pub hosts: Vec<Src<String>>,
    /// The services that read it.
    pub services: Vec<Src<String>>,
    /// Its version (the start of the ciphertext's SHA-256), or `missing`.
    pub version: Src<String>,
}

/// The secrets' holders, from the needs the delivery reads.
fn secrets(site: &Site) -> Vec<SecretView> {
    if !site.delivers_secrets() {
        return Vec::new();
    }
    let needs = site.secret_needs();
    needs
        .iter()
        .map(|(name, need)| {
            let services: Vec<_> = need.all_services().into_iter().map(|s| site.service(s)).collect();
            SecretView {
                name: Src::at(name.to_string(), "secret", need.first),
                hosts: need
                    .hosts
                    .iter()
                    .map(|h| Src::at(site.host(*h).name.clone(), "host", &site.host(*h).loc))
                    .collect(),
                services: services.iter().map(|s| Src::at(s.name.clone(), "service", &s.loc)).collect(),
                version: Src::of(
                    site.secrets.version(name).unwrap_or_else(|| "missing".into()),
                    "ciphertext version",
                    site.secrets.file(name).map(|f| &f.loc),
                ),
            }
        })
        .collect()
}

/// `[site]` for the docs.
#[derive(Serialize)]
pub struct SiteView {
    /// Name.
    pub name: Src<String>,
    /// Internal domain.
    pub domain: Src<String>,
    /// Public domain or empty.
    pub public_domain: Src<String>,
    /// Description or empty.
    pub description: Src<String>,
}

/// A zone row.
#[derive(Serialize)]
pub struct ZoneView {
    /// Name.
    pub name: Src<String>,
    /// VLAN id.
    pub vlan: Src<String>,
    /// CIDR.
    pub cidr: Src<String>,
    /// Gateway or empty.
    pub gateway: Src<String>,
    /// Description or empty.
    pub description: Src<String>,
}

/// A docker network row.
#[derive(Serialize)]
pub struct NetworkView {
    /// Name.
    pub name: Src<String>,
    /// Subnet.
    pub cidr: Src<String>,
    /// `bridge` or `overlay`.
    pub driver: Src<String>,
    /// Whether internal.
    pub internal: Src<bool>,
    /// Static attachments, `service address`.
    pub members: Vec<Src<String>>,
}

/// A host row.
#[derive(Serialize)]
pub struct HostView {
    /// Name.
    pub name: Src<String>,
    /// Kind.
    pub kind: Src<String>,
    /// Hypervisor or empty.
    pub on: Src<String>,
    /// OS or empty.
    pub os: Src<String>,
    /// Roles.
    pub roles: Vec<Src<String>>,
    /// `zone address` per interface.
    pub addresses: Vec<Src<String>>,
    /// Services on it.
    pub services: Vec<Src<String>>,
}

/// A service row.
#[derive(Serialize)]
pub struct ServiceView {
    /// Name.
    pub name: Src<String>,
    /// Kind.
    pub kind: Src<String>,
    /// Image or `native`.
    pub image: Src<String>,
    /// Hosts (primary first for postgres).
    pub hosts: Vec<Src<String>>,
    /// `name proto/port`.
    pub ports: Vec<Src<String>>,
    /// Health check, one line.
    pub health: Src<String>,
    /// `cpus / memory (reserved cpus / memory)`.
    pub resources: Src<String>,
    /// Public URLs.
    pub exposed: Vec<Src<String>>,
    /// Secret names.
    pub secrets: Vec<Src<String>>,
    /// Backups covering it.
    pub backups: Vec<Src<String>>,
    /// Description or empty.
    pub description: Src<String>,
}

/// A flow or guard-rail row.
#[derive(Serialize)]
pub struct FlowView {
    /// Source.
    pub from: Src<String>,
    /// Destination.
    pub to: Src<String>,
    /// Ports.
    pub ports: Vec<Src<String>>,
    /// Reason.
    pub why: Src<String>,
}

/// A backup row.
#[derive(Serialize)]
pub struct BackupView {
    /// Name.
    pub name: Src<String>,
    /// Service.
    pub service: Src<String>,
    /// Method.
    pub method: Src<String>,
    /// Interval (and continuous archiving).
    pub every: Src<String>,
    /// Target.
    pub target: Src<String>,
    /// Retention.
    pub retention: Src<String>,
    /// Restore test.
    pub verify_restore: Src<bool>,
}

/// An optional free text of an entity, empty when not written.
pub fn opt(s: &Option<String>, what: &'static str, loc: &Loc) -> Src<String> {
    Src::at(s.clone().unwrap_or_default(), what, loc)
}

/// Builds the inventory context.
pub fn inventory(site: &Site) -> InventoryContext {
    let d = &site.defaults;
    let dflt = |v: String, what| Src::of(v, what, &d.loc);
    let fixed = |v: &str| Src::of(v.to_string(), "built-in hardening", []);
    let defaults = vec![
        ("container restart policy", dflt(d.restart.clone(), "default restart policy")),
        ("container pids limit", dflt(d.pids_limit.to_string(), "default pids limit")),
        ("tmpfs size", dflt(d.tmpfs_size.to_string(), "default tmpfs size")),
        ("container root filesystem", fixed("read-only")),
        ("container capabilities", fixed("all dropped")),
        ("no-new-privileges", fixed("on")),
        (
            "health check",
            dflt(
                format!(
                    "every {}, timeout {}, {} retries, start period {}",
                    d.health_interval, d.health_timeout, d.health_retries, d.health_start_period
                ),
                "default health timing",
            ),
        ),
        (
            "resources",
            dflt(
                format!(
                    "{} CPUs / {} (reserved {} CPUs / {}), {} pids",
                    d.resources.cpus,
                    d.resources.memory,
                    d.resources.reserve_cpus,
                    d.resources.reserve_memory,
                    d.resources.pids
                ),
                "default resources",
            ),
        ),
        ("backup retention", dflt(d.backup_retention.to_string(), "default backup retention")),
    ];
    let zones = site
        .zones
        .iter()
        .map(|z| {
            let at = |v: Option<(String, &Loc)>, what| match v {
                Some((v, l)) => Src::at(v, what, l),
                None => Src::at(String::new(), what, &z.loc),
            };
            ZoneView {
                name: Src::at(z.name.clone(), "zone", &z.loc),
                vlan: at(z.vlan.as_ref().map(|v| (v.value.to_string(), &v.loc)), "VLAN id"),
                cidr: at(z.cidr.as_ref().map(|v| (v.value.to_string(), &v.loc)), "zone network"),
                gateway: at(z.gateway.as_ref().map(|v| (v.value.to_string(), &v.loc)), "zone gateway"),
                description: opt(&z.description, "zone description", &z.loc),
            }
        })
        .collect();
    let networks = site
        .docker_networks
        .iter()
        .enumerate()
        .map(|(i, n)| NetworkView {
            name: Src::at(n.name.clone(), "docker network", &n.loc),
            cidr: match &n.cidr {
                Some(c) => Src::at(c.value.to_string(), "docker network subnet", &c.loc),
                None => Src::at(String::new(), "docker network subnet", &n.loc),
            },
            driver: Src::at(
                match n.driver {
                    crate::model::NetDriver::Bridge => "bridge".into(),
                    crate::model::NetDriver::Overlay if n.encrypted => "overlay (encrypted)".into(),
                    crate::model::NetDriver::Overlay => "overlay".into(),
                },
                "docker network driver",
                &n.loc,
            ),
            internal: Src::at(n.internal, "docker network internal", &n.loc),
            members: site
                .services
                .iter()
                .flat_map(|s| {
                    s.networks.iter().filter(|(id, _)| id.0 == i).map(move |(_, a)| {
                        let addr = a.value.map(|ip| ip.to_string()).unwrap_or_else(|| "auto".into());
                        Src::of(format!("{} {addr}", s.name), "network attachment", [&s.loc, &a.loc])
                    })
                })
                .collect(),
        })
        .collect();
    let hosts = site
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| HostView {
            name: Src::at(h.name.clone(), "host", &h.loc),
            kind: Src::at(h.kind.value.name().into(), "host kind", &h.kind.loc),
            on: match &h.on {
                Some(o) => Src::at(site.host(o.value).name.clone(), "hypervisor", &o.loc),
                None => Src::at(String::new(), "hypervisor", &h.loc),
            },
            os: opt(&h.os, "operating system", &h.loc),
            roles: h.roles.iter().map(|r| Src::at(r.value.name().to_string(), "host role", &r.loc)).collect(),
            addresses: h
                .interfaces
                .iter()
                .map(|i| {
                    Src::of(
                        format!("{} {}", site.zone(i.zone.value).name, i.address.value),
                        "interface",
                        [&i.zone.loc, &i.address.loc],
                    )
                })
                .collect(),
            services: site
                .services_on(crate::model::HostId(i))
                .into_iter()
                .map(|s| {
                    let s = site.service(s);
                    Src::at(s.name.clone(), "service", &s.loc)
                })
                .collect(),
        })
        .collect();
    let mut backups_of: Vec<Vec<Src<String>>> = vec![Vec::new(); site.services.len()];
    for b in &site.backups {
        backups_of[b.service.value.0].push(Src::of(b.name.clone(), "backup", [&b.loc, &b.service.loc]));
    }
    let services = site
        .services
        .iter()
        .zip(backups_of)
        .enumerate()
        .map(|(i, (s, backups))| {
            let id = crate::model::ServiceId(i);
            let at = |v: String, what| Src::at(v, what, &s.loc);
            let primary = crate::families::postgres::model(site).primary.get(&id);
            let mut hosts: Vec<Src<String>> = s
                .hosts
                .iter()
                .map(|h| {
                    let name = &site.host(h.value).name;
                    match primary {
                        Some(p) if p.value == h.value => {
                            Src::of(format!("{name} (primary)"), "primary host", [&h.loc, &p.loc])
                        }
                        _ => Src::at(name.clone(), "host of the service", &h.loc),
                    }
                })
                .collect();
            if s.replicas > 1 {
                hosts.push(at(format!("{} replicas", s.replicas), "replicas"));
            }
            let r = &s.resources;
            ServiceView {
                name: at(s.name.clone(), "service"),
                kind: Src::at(s.kind.value.info().name.into(), "service kind", &s.kind.loc),
                image: match &s.image {
                    Some(img) => Src::at(img.value.to_string(), "image", &img.loc),
                    None => Src::at(
                        s.kind
                            .value
                            .info()
                            .package
                            .map(|p| format!("native ({p})"))
                            .unwrap_or_else(|| "appliance".into()),
                        "service kind",
                        &s.kind.loc,
                    ),
                },
                hosts,
                ports: s
                    .ports
                    .iter()
                    .map(|p| Src::at(format!("{} {}", p.name, p.spec), "port", p.loc.as_ref().unwrap_or(&s.kind.loc)))
                    .collect(),
                health: Src::of(
                    match s.health.as_ref().map(|h| &h.check) {
                        Some(HealthCheck::Http { path, port, .. }) => format!("GET {path} on {port}"),
                        Some(HealthCheck::Tcp { port }) => format!("TCP connect to {port}"),
                        Some(HealthCheck::Exec(argv)) => argv.join(" "),
                        None => "none".into(),
                    },
                    "health check",
                    [s.health.as_ref().and_then(|h| h.loc.as_ref()).unwrap_or(&s.loc)],
                ),
                resources: if s.kind.value.info().container {
                    Src::of(
                        format!("{} CPUs / {} (reserved {} / {})", r.cpus, r.memory, r.reserve_cpus, r.reserve_memory),
                        "resources",
                        std::iter::once(&s.loc).chain(&d.loc),
                    )
                } else {
                    at("host".into(), "resources (a native service uses the host's)")
                },
                exposed: s
                    .expose
                    .iter()
                    .map(|e| {
                        let waf = crate::families::edge::edge(site).of(id, e).waf;
                        Src::at(
                            format!("https://{}{} ({}, WAF {:?})", e.hostname.value, e.path.value, e.port.value, waf)
                                .to_lowercase(),
                            "exposure",
                            &e.loc,
                        )
                    })
                    .collect(),
                secrets: s.secrets.iter().map(|x| Src::at(x.value.clone(), "secret name", &x.loc)).collect(),
                backups,
                description: opt(&s.description, "service description", &s.loc),
            }
        })
        .collect();
    let flows = site
        .flows
        .iter()
        .map(|f| FlowView {
            from: Src::at(site.endpoint_name(&f.from.value), "flow source", &f.from.loc),
            to: Src::at(site.endpoint_name(&f.to.value), "flow destination", &f.to.loc),
            ports: f.ports.iter().map(|p| Src::at(p.value.to_string(), "flow port", &p.loc)).collect(),
            why: Src::at(f.why.clone(), "flow reason", &f.loc),
        })
        .collect();
    let zone_ep =
        |z: Option<crate::model::ZoneId>| site.endpoint_name(&z.map(Endpoint::Zone).unwrap_or(Endpoint::Internet));
    let guardrails = site
        .guardrails
        .iter()
        .map(|g| FlowView {
            from: Src::at(zone_ep(g.from), "guard-rail source", &g.loc),
            to: Src::at(zone_ep(g.to), "guard-rail destination", &g.loc),
            ports: vec![],
            why: Src::at(g.why.clone(), "guard-rail reason", &g.loc),
        })
        .collect();
    let backups = site
        .backups
        .iter()
        .map(|b| {
            let at = |v: String, what| Src::at(v, what, &b.loc);
            BackupView {
                name: at(b.name.clone(), "backup"),
                service: Src::at(site.service(b.service.value).name.clone(), "backed-up service", &b.service.loc),
                method: at(b.method.name().into(), "backup method"),
                every: Src::at(
                    if b.continuous { format!("{} + continuous", b.every.value) } else { b.every.value.to_string() },
                    "backup interval",
                    &b.every.loc,
                ),
                target: Src::at(site.endpoint_name(&b.target.value), "backup target", &b.target.loc),
                retention: Src::of(b.retention.to_string(), "backup retention", std::iter::once(&b.loc).chain(&d.loc)),
                verify_restore: Src::at(b.verify_restore, "restore test", &b.loc),
            }
        })
        .collect();
    let settings = site.settings.loc.as_ref();
    let st = |v: String, what| Src::of(v, what, settings);
    InventoryContext {
        site: SiteView {
            name: st(site.settings.name.clone(), "site name"),
            domain: st(site.settings.domain.clone(), "site domain"),
            public_domain: st(site.settings.public_domain.clone().unwrap_or_default(), "public domain"),
            description: st(site.settings.description.clone().unwrap_or_default(), "site description"),
        },
        rto: Src::at(site.recovery.rto.value.to_string(), "RTO", &site.recovery.rto.loc),
        rpo: Src::at(site.recovery.rpo.value.to_string(), "RPO", &site.recovery.rpo.loc),
        defaults,
        zones,
        networks,
        hosts,
        services,
        flows,
        guardrails,
        backups,
        secrets: secrets(site),
    }
}
