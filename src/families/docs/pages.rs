//! The pages beyond the inventory: the network plan, one page per host (with the files it
//! applies, read from the other families' jobs), the service catalogue and one runbook
//! per service. Templates: `templates/docs/{network,host,hosts,services,runbook,runbooks}.md.j2`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::super::provenance::Src;
use super::inventory::{HostView, InventoryContext, ServiceView};
use crate::model::{ExceptionKind, HostId, ServiceId, ServiceKind, Site};
use crate::render::RenderJob;

/// A row of the address plan.
#[derive(Serialize)]
pub struct AddressRow {
    /// The address.
    pub address: Src<String>,
    /// What holds it: a host's interface, a gateway, a floating address.
    pub holder: Src<String>,
    /// Zone.
    pub zone: Src<String>,
    /// Interface name or role.
    pub what: Src<String>,
}

/// The addresses of the site, zone by zone, sorted by address.
pub fn addresses(site: &Site) -> Vec<AddressRow> {
    let mut rows: Vec<(u8, std::net::IpAddr, AddressRow)> = Vec::new();
    for z in &site.zones {
        if let Some(g) = &z.gateway {
            let zone = Src::at(z.name.clone(), "zone", &z.loc);
            rows.push((
                0,
                g.value,
                AddressRow {
                    address: Src::at(g.value.to_string(), "zone gateway", &g.loc),
                    holder: Src::at("gateway".into(), "zone gateway", &g.loc),
                    zone,
                    what: Src::at("gateway".into(), "zone gateway", &g.loc),
                },
            ));
        }
    }
    for h in &site.hosts {
        for i in &h.interfaces {
            let z = site.zone(i.zone.value);
            rows.push((
                1,
                i.address.value,
                AddressRow {
                    address: Src::at(i.address.value.to_string(), "interface address", &i.address.loc),
                    holder: Src::at(h.name.clone(), "host", &h.loc),
                    zone: Src::at(z.name.clone(), "zone", &i.zone.loc),
                    what: match &i.name {
                        Some(n) => Src::at(n.value.clone(), "interface name", &n.loc),
                        None => Src::at(String::new(), "interface name", &h.loc),
                    },
                },
            ));
        }
    }
    for (vip, svc, zone) in vips(site) {
        let s = site.service(svc);
        rows.push((
            2,
            vip.value,
            AddressRow {
                address: Src::at(vip.value.to_string(), "floating address", &vip.loc),
                holder: Src::at(s.name.clone(), "service", &s.loc),
                zone: Src::of(zone.unwrap_or_default(), "zone", [&vip.loc]),
                what: Src::at("VRRP floating address".into(), "floating address", &vip.loc),
            },
        ));
    }
    rows.sort_by_key(|a| (a.1, a.0));
    rows.into_iter().map(|r| r.2).collect()
}

/// Every keepalived floating address: `(vip, its service, the zone that holds it)`.
pub fn vips(site: &Site) -> Vec<(crate::model::At<std::net::IpAddr>, ServiceId, Option<String>)> {
    let m = crate::families::keepalived::model(site);
    m.services
        .iter()
        .filter_map(|(id, v)| {
            let vip = v.vip.clone()?;
            let zone = site
                .zones
                .iter()
                .find(|z| z.cidr.as_ref().is_some_and(|c| c.value.contains(&vip.value)))
                .map(|z| z.name.clone());
            Some((vip, *id, zone))
        })
        .collect()
}

/// A file a host applies, as its page lists it.
#[derive(Serialize)]
pub struct FileRow {
    /// Absolute path on the host, from the entity it is rendered for (a file that only
    /// some value makes exist, a restore test, is a line of the page that value writes).
    pub target: Src<String>,
    /// Path under `generated/`.
    pub path: String,
    /// Family that writes it.
    pub family: String,
    /// Validator, or empty.
    pub validate: String,
    /// What runs after the swap: `reload x`, `restart y`, `compose up`.
    pub then: String,
    /// The service it is rendered for, or empty.
    pub service: Src<String>,
}

/// The files each host applies, from the other families' jobs, by host name.
pub fn files_by_host(site: &Site, jobs: &[RenderJob]) -> BTreeMap<String, Vec<FileRow>> {
    let by_loc: BTreeMap<(usize, usize, usize), ServiceId> = site
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.loc.file, s.loc.span.start, s.loc.span.end), ServiceId(i)))
        .collect();
    let mut out: BTreeMap<String, Vec<FileRow>> = BTreeMap::new();
    for j in jobs {
        let (Some(host), Some(apply)) = (&j.meta.host, &j.meta.apply) else { continue };
        let svc = j.origin.as_ref().and_then(|o| by_loc.get(&(o.file, o.span.start, o.span.end)));
        let mut then = Vec::new();
        then.extend(apply.reload.as_ref().map(|u| format!("reload {u}")));
        then.extend(apply.restart.as_ref().map(|u| format!("restart {u}")));
        then.extend(apply.deploy.map(|d| {
            format!(
                "deploy ({})",
                serde_json::to_value(d).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            )
        }));
        then.extend(apply.probe.map(|_| "check the repository is still reachable".to_string()));
        out.entry(host.clone()).or_default().push(FileRow {
            target: Src::of(apply.target.clone(), "a file the host applies", j.origin.iter()),
            path: j.meta.path.clone(),
            family: j.meta.family.to_string(),
            validate: apply.validate.map(|v| v.name().to_string()).unwrap_or_default(),
            then: then.join(", "),
            service: match svc {
                Some(id) => Src::at(site.service(*id).name.clone(), "service", &site.service(*id).loc),
                None => Src::of(String::new(), "no service", []),
            },
        });
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.target.value.cmp(&b.target.value));
    }
    out
}

/// A secret a host holds, as its page lists it: never a value.
#[derive(Serialize)]
pub struct SecretRow {
    /// The secret's name.
    pub name: Src<String>,
    /// Where the agent decrypts it: one file per service.
    pub files: Vec<Src<String>>,
    /// Its version (the start of the ciphertext's SHA-256), or `missing`.
    pub version: Src<String>,
}

/// The secrets each host holds, by host index (empty when the site does not deliver
/// secrets): the same needs the delivery and the recipients checks read.
pub fn secrets_by_host(site: &Site) -> Vec<Vec<SecretRow>> {
    let mut out: Vec<Vec<SecretRow>> = site.hosts.iter().map(|_| Vec::new()).collect();
    if !site.delivers_secrets() {
        return out;
    }
    for (name, need) in site.secret_needs() {
        let file = site.secrets.file(name);
        for h in &need.hosts {
            let services = need.services_on(site, *h);
            let locs = || services.iter().map(|s| &site.service(*s).loc);
            out[h.0].push(SecretRow {
                name: Src::of(name.to_string(), "secret", locs().chain([need.first])),
                files: services
                    .iter()
                    .map(|s| {
                        let svc = site.service(*s);
                        Src::at(super::super::secret_file(&svc.name, name), "delivered secret", &svc.loc)
                    })
                    .collect(),
                version: Src::of(
                    site.secrets.version(name).unwrap_or_else(|| "missing".into()),
                    "ciphertext version",
                    file.map(|f| &f.loc),
                ),
            });
        }
    }
    out
}

/// Context of `docs/host.md.j2`.
#[derive(Serialize)]
pub struct HostPage<'a> {
    /// The host.
    pub host: &'a HostView,
    /// Its description.
    pub description: Src<String>,
    /// Its VMs (a hypervisor).
    pub vms: Vec<Src<String>>,
    /// A hypervisor's share of the site's VMs: `3 of the site's 10 VMs` (it reads every
    /// VM's placement, so moving one away changes this page too).
    pub share: Option<Src<String>>,
    /// The files it applies.
    pub files: &'a [FileRow],
    /// The secrets it holds.
    pub secrets: &'a [SecretRow],
    /// The certificates it serves (an edge host), and how each gets there.
    pub certificates: Vec<CertificateRow>,
    /// `../` to `generated/`.
    pub up: &'static str,
}

/// A certificate an edge host serves.
#[derive(Serialize)]
pub struct CertificateRow {
    /// Its name.
    pub name: Src<String>,
    /// The PEM file.
    pub file: Src<String>,
    /// How it gets there: by ACME (and from which directory), or by the operator.
    pub how: Src<String>,
}

/// The certificates host `h` serves: every certificate, on the hosts of a haproxy service.
pub fn certificates_of(site: &Site, h: HostId) -> Vec<CertificateRow> {
    use crate::families::edge;
    if !edge::serves_edge(site, h) {
        return Vec::new();
    }
    edge::edge(site)
        .certificates
        .iter()
        .map(|c| CertificateRow {
            name: Src::at(c.name.clone(), "certificate", &c.loc),
            file: Src::at(c.file.clone(), "certificate file", &c.loc),
            how: if c.acme {
                Src::of(
                    format!(
                        "ACME from {}, renewed by {}.timer (daily)",
                        c.acme_directory.value,
                        crate::families::acme::unit(&c.name)
                    ),
                    "ACME",
                    [&c.loc, &c.acme_directory.loc],
                )
            } else {
                Src::at("provisioned by the operator".to_string(), "no ACME", &c.loc)
            },
        })
        .collect()
}

/// A hypervisor's share of the site's VMs, traced to every VM's `on`.
pub fn vm_share(site: &Site, h: HostId, vms: usize) -> Option<Src<String>> {
    if site.host(h).kind.value != crate::model::HostKind::Hypervisor {
        return None;
    }
    let placed: Vec<&crate::diag::Loc> = site.hosts.iter().filter_map(|x| x.on.as_ref().map(|o| &o.loc)).collect();
    Some(Src::of(format!("{vms} of the site's {} VMs", placed.len()), "VM placement", placed))
}

/// The VMs of each host, by host.
pub fn vms(site: &Site) -> Vec<Vec<Src<String>>> {
    let mut v: Vec<Vec<Src<String>>> = site.hosts.iter().map(|_| Vec::new()).collect();
    for h in &site.hosts {
        if let Some(on) = &h.on {
            v[on.value.0].push(Src::at(h.name.clone(), "VM", &on.loc));
        }
    }
    v
}

/// One hardening line of a service.
#[derive(Serialize)]
pub struct Hardening {
    /// What.
    pub what: Src<String>,
    /// The reason, for an exception.
    pub why: Src<String>,
}

/// A service's hardening, every exception with its reason.
pub fn hardening(site: &Site, id: ServiceId) -> Vec<Hardening> {
    let s = site.service(id);
    if !s.kind.value.info().container {
        return vec![Hardening {
            what: Src::at("native service: the host's systemd unit and firewall".into(), "service kind", &s.kind.loc),
            why: Src::of(String::new(), "", []),
        }];
    }
    let mut v = Vec::new();
    let none = || Src::of(String::new(), "", []);
    v.push(Hardening {
        what: Src::at(
            if s.read_only.value { "read-only root filesystem".into() } else { "writable root filesystem".into() },
            "read_only",
            &s.read_only.loc,
        ),
        why: none(),
    });
    v.push(Hardening {
        what: match &s.user {
            Some(u) => Src::at(format!("runs as {}", u.value), "user", &u.loc),
            None => Src::at("runs as the image's user".into(), "user", &s.loc),
        },
        why: none(),
    });
    let caps: Vec<&str> = s.cap_add.iter().map(|c| c.value.as_str()).collect();
    v.push(Hardening {
        what: Src::of(
            if caps.is_empty() {
                "all capabilities dropped".into()
            } else {
                format!("all capabilities dropped but {}", caps.join(", "))
            },
            "cap_add",
            s.cap_add.iter().map(|c| &c.loc).chain([&s.loc]),
        ),
        why: none(),
    });
    for e in &s.exceptions {
        let what = match e.kind {
            ExceptionKind::CapAdd => "exception: added capabilities",
            ExceptionKind::ReadOnly => "exception: writable root filesystem",
            ExceptionKind::RootUser => "exception: runs as root",
            ExceptionKind::Health => "exception: no health check",
        };
        v.push(Hardening {
            what: Src::at(format!("{what} (`{}`)", e.kind.key()), "exception", &e.reason.loc),
            why: Src::at(e.reason.value.clone(), "exception reason", &e.reason.loc),
        });
    }
    v
}

/// A service's section of the catalogue.
#[derive(Serialize)]
pub struct ServiceEntry<'a> {
    /// The inventory row.
    #[serde(flatten)]
    pub row: &'a ServiceView,
    /// Hardening.
    pub hardening: Vec<Hardening>,
    /// Whether it keeps state.
    pub stateful: bool,
}

/// Context of `docs/services.md.j2`.
#[derive(Serialize)]
pub struct ServicesPage<'a> {
    /// Site name.
    pub site: &'a Src<String>,
    /// Services.
    pub services: Vec<ServiceEntry<'a>>,
}

/// Builds the catalogue.
pub fn services<'a>(site: &Site, inv: &'a InventoryContext) -> ServicesPage<'a> {
    ServicesPage {
        site: &inv.site.name,
        services: inv
            .services
            .iter()
            .enumerate()
            .map(|(i, row)| ServiceEntry {
                row,
                hardening: hardening(site, ServiceId(i)),
                stateful: site.services[i].stateful,
            })
            .collect(),
    }
}

/// One command of a runbook.
#[derive(Serialize)]
pub struct Command {
    /// What it does.
    pub what: &'static str,
    /// The command.
    pub run: Src<String>,
}

/// Context of `docs/runbook.md.j2`.
#[derive(Serialize)]
pub struct RunbookPage<'a> {
    /// The service.
    pub service: Src<String>,
    /// Its catalogue row.
    pub row: &'a ServiceView,
    /// Its hosts.
    pub hosts: Vec<Src<String>>,
    /// Start, stop, reload, logs, state.
    pub commands: Vec<Command>,
    /// Files of the service, on its hosts.
    pub files: Vec<(String, &'a FileRow)>,
    /// PostgreSQL: the primary and replicas.
    pub postgres: Option<Postgres>,
    /// Its recovery (policies and restore steps).
    pub recovery: Option<&'a super::recovery::ServiceRecovery>,
    /// Its alerts.
    pub alerts: Vec<crate::families::prometheus::RunbookAlert>,
}

/// Failover facts of a PostgreSQL service.
#[derive(Serialize)]
pub struct Postgres {
    /// The primary host.
    pub primary: Src<String>,
    /// The replicas.
    pub replicas: Vec<Src<String>>,
    /// The major version (Debian's cluster `<version>/main`).
    pub version: Src<String>,
    /// Its automated failover, when it has one.
    pub failover: Option<FailoverDoc>,
}

/// The automated failover of a PostgreSQL service, for its runbook.
#[derive(Serialize)]
pub struct FailoverDoc {
    /// The floating address.
    pub vip: Src<String>,
    /// The VRRP router id.
    pub vrid: Src<u8>,
    /// The hosts that may hold the address, the primary first.
    pub candidates: Vec<Src<String>>,
    /// The failover script.
    pub script: &'static str,
    /// The replica bootstrap (the failback).
    pub replica_init: &'static str,
}

/// The commands that operate a service on its host.
pub fn commands(site: &Site, id: ServiceId, files: &[(String, &FileRow)]) -> Vec<Command> {
    let s = site.service(id);
    let at = |v: String| Src::at(v, "service", &s.loc);
    let mut units: Vec<String> = Vec::new();
    for (_, f) in files {
        for part in f.then.split(", ") {
            if let Some(u) = part.strip_prefix("reload ").or(part.strip_prefix("restart "))
                && !units.contains(&u.to_string())
            {
                units.push(u.to_string());
            }
        }
    }
    if s.kind.value == ServiceKind::Pfsense {
        // An appliance: no agent and no systemd; its configuration is installed by hand.
        let fw = s.hosts.first().map(|h| site.host(h.value).name.clone()).unwrap_or_default();
        return vec![
            Command {
                what: "copy its configuration over",
                run: at(format!("scp -r generated/firewall/{fw} admin@{fw}:/root/medianest")),
            },
            Command {
                what: "apply it (then confirm within 5 minutes, or it reverts)",
                run: at("sh /root/medianest/apply-config.sh".into()),
            },
            Command { what: "confirm", run: at("sh /root/medianest/apply-config.sh confirm".into()) },
            Command { what: "logs", run: at("tail -f /var/log/filter.log".into()) },
            Command { what: "state", run: at("pfctl -s info".into()) },
        ];
    }
    if s.kind.value.info().container {
        let compose = files.iter().find(|(_, f)| f.then.contains("deploy")).map(|(_, f)| f.target.value.clone());
        let file = compose.unwrap_or_else(|| "<its compose file>".into());
        vec![
            Command { what: "start", run: at(format!("docker compose -f {file} up -d {}", s.name)) },
            Command { what: "stop", run: at(format!("docker compose -f {file} stop {}", s.name)) },
            Command {
                what: "reload (recreate with its current configuration)",
                run: at(format!("docker compose -f {file} up -d --force-recreate {}", s.name)),
            },
            Command { what: "logs", run: at(format!("docker compose -f {file} logs --since 1h {}", s.name)) },
            Command { what: "state", run: at(format!("docker compose -f {file} ps {}", s.name)) },
        ]
    } else {
        let unit = units.first().cloned().unwrap_or_else(|| {
            s.kind.value.info().package.map(|p| format!("{p}.service")).unwrap_or_else(|| format!("{}.service", s.name))
        });
        let run = |v: String| Src::at(v, "service kind", &s.kind.loc);
        vec![
            Command { what: "start", run: run(format!("systemctl start {unit}")) },
            Command { what: "stop", run: run(format!("systemctl stop {unit}")) },
            Command { what: "reload", run: run(format!("systemctl reload-or-restart {unit}")) },
            Command { what: "logs", run: run(format!("journalctl -u {unit} --since -1h")) },
            Command { what: "state", run: run(format!("systemctl status {unit}")) },
        ]
    }
}

/// The failover facts of a PostgreSQL service.
pub fn postgres(site: &Site, id: ServiceId) -> Option<Postgres> {
    let s = site.service(id);
    if s.kind.value != ServiceKind::Postgres {
        return None;
    }
    let primary = crate::families::postgres::model(site).primary.get(&id);
    let first = s.hosts.first()?;
    let p = primary.map(|p| p.value).unwrap_or(first.value);
    Some(Postgres {
        primary: match primary {
            Some(at) => Src::at(site.host(at.value).name.clone(), "primary host", &at.loc),
            None => Src::at(site.host(first.value).name.clone(), "host of the service", &first.loc),
        },
        replicas: s
            .hosts
            .iter()
            .filter(|h| h.value != p)
            .map(|h| Src::at(site.host(h.value).name.clone(), "replica host", &h.loc))
            .collect(),
        version: Src::at(crate::families::postgres::version(site, id).to_string(), "PostgreSQL version", &s.loc),
        failover: crate::families::postgres::failover::plan(site, id).map(|f| FailoverDoc {
            vip: Src::at(f.vip().value.to_string(), "the failover floating address", &f.vip().loc),
            vrid: Src::at(f.failover.vrid.value, "VRRP router id", &f.failover.vrid.loc),
            candidates: f
                .candidates
                .iter()
                .map(|c| Src::at(site.host(c.value).name.clone(), "may hold the address", &c.loc))
                .collect(),
            script: crate::families::postgres::failover::SCRIPT,
            replica_init: crate::families::postgres::REPLICA_INIT,
        }),
    })
}

/// The files of a service: those rendered for it on each of its hosts, and for a
/// container the Compose file that deploys it there.
pub fn service_files<'a>(
    site: &Site,
    id: ServiceId,
    files: &'a BTreeMap<String, Vec<FileRow>>,
) -> Vec<(String, &'a FileRow)> {
    let s = site.service(id);
    let mut v = Vec::new();
    for h in &s.hosts {
        let name = &site.host(h.value).name;
        for f in files.get(name).into_iter().flatten() {
            let compose = s.kind.value.info().container && f.then.starts_with("deploy");
            if f.service.value == s.name || compose {
                v.push((name.clone(), f));
            }
        }
    }
    v
}

/// The services a host runs, as ids.
pub fn on_host(site: &Site, h: HostId) -> Vec<ServiceId> {
    site.services_on(h)
}
