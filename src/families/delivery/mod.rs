//! Family **delivery**: how each Linux host gets and keeps its configuration, when the
//! site has an `[agent]` table. Per host:
//!
//! - `bootstrap.sh` (in the host's folder, not applied by the agent): POSIX sh, idempotent;
//!   checks the OS, installs the packages the host's roles and services need (Debian's;
//!   PostgreSQL from PGDG when Debian lacks the version; on Docker and Swarm hosts Docker's
//!   engine and Compose v2 plugin from Docker's repository, [`DOCKER_PACKAGES`]: each
//!   repository's key pinned by fingerprint), creates the
//!   agent's directories and the container volume directories, applies the sysctl
//!   hardening, installs the `medianest` binary from a path or URL, writes the agent's
//!   configuration and systemd units, enables the timer and runs the first pull;
//! - the files the agent then keeps up to date itself: `/etc/medianest/agent.toml`,
//!   `/etc/medianest/allowed_signers`, the hardened `medianest-pull.service` and its
//!   timer (randomised delay; the agent's own lock keeps runs single), and
//!   `/etc/sysctl.d/90-medianest.conf`.
//!
//! Templates: `templates/delivery/`.

use serde::Serialize;

pub mod keys;

use std::any::Any;

use super::provenance::Src;
use super::{Family, Lowering, Part, edge};
use crate::artifact::{Apply, ArtifactMeta};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::{Fact, Val};
use crate::model::values::{PortSpec, Proto};
use crate::model::{HostId, Role, ServiceKind, Site};

/// The unit that delivers the applied secrets again at boot (`medianest pull --boot`).
pub const SECRETS_UNIT: &str = "medianest-secrets.service";
const SECRETS_UNIT_PATH: &str = "/etc/systemd/system/medianest-secrets.service";

/// The delivery family.
pub struct Delivery;

/// Context shared by every delivery template.
#[derive(Serialize, Clone)]
pub struct DeliveryContext {
    /// Site name.
    pub site: Src<String>,
    /// Host name.
    pub host: Src<String>,
    /// Repository URL.
    pub repository: Src<String>,
    /// Branch.
    pub branch: Src<String>,
    /// Drift policy.
    pub drift: Src<String>,
    /// Interval, e.g. `5m`.
    pub interval: Src<String>,
    /// Interval in seconds.
    pub interval_seconds: Src<u64>,
    /// Splay, e.g. `1m`.
    pub splay: Src<String>,
    /// Splay in seconds.
    pub splay_seconds: Src<u64>,
    /// Node exporter's textfile directory, when the host runs a node exporter: the agent
    /// writes its metrics there too.
    pub textfile_dir: Option<Src<String>>,
    /// Allowed signers' keys.
    pub signers: Vec<Src<String>>,
    /// Debian packages, sorted.
    pub packages: Vec<Src<String>>,
    /// Packages from the PostgreSQL project's repository (PGDG), sorted: installed after
    /// the repository is added with its pinned signing key. Empty when Debian has all.
    pub pgdg: Vec<Src<String>>,
    /// Packages from Docker's repository ([`DOCKER_PACKAGES`]), on Docker and Swarm
    /// hosts; empty elsewhere.
    pub docker: Vec<Src<String>>,
    /// The packages that need Debian's `contrib` component ([`CONTRIB`]), which a Debian
    /// 12 install does not enable: the bootstrap adds it before installing. Empty when
    /// `main` has all.
    pub contrib: Vec<Src<String>>,
    /// Directories to create.
    pub directories: Vec<DirView>,
    /// Certificates HAProxy serves on this host: a self-signed placeholder is made where
    /// none exists yet, so the first `haproxy -c` passes (family acme replaces it).
    pub placeholders: Vec<PlaceholderView>,
    /// Whether the host forwards IP (Docker).
    pub forwarding: Src<bool>,
    /// Whether the host binds addresses it may not hold yet (keepalived).
    pub nonlocal_bind: Src<bool>,
}

/// A certificate file the bootstrap makes a placeholder for.
#[derive(Serialize, Clone)]
pub struct PlaceholderView {
    /// The PEM file (chain and key).
    pub file: Src<String>,
    /// Its first domain (the subject).
    pub subject: Src<String>,
    /// `DNS:a,DNS:b`, the subject alternative names.
    pub names: Src<String>,
}

/// The certificates an edge host serves, as placeholders (none on other hosts).
fn placeholders(site: &Site, host: HostId) -> Vec<PlaceholderView> {
    if !edge::serves_edge(site, host) {
        return Vec::new();
    }
    edge::edge(site)
        .certificates
        .iter()
        .map(|c| PlaceholderView {
            file: Src::at(c.file.clone(), "certificate file", &c.loc),
            subject: Src::of(
                c.domains.first().map(|d| d.value.clone()).unwrap_or_default(),
                "certificate domain",
                c.domains.iter().map(|d| &d.loc).take(1),
            ),
            names: Src::of(
                c.domains.iter().map(|d| format!("DNS:{}", d.value)).collect::<Vec<_>>().join(","),
                "certificate domains",
                c.domains.iter().map(|d| &d.loc),
            ),
        })
        .collect()
}

/// A directory the bootstrap creates.
#[derive(Serialize, Clone)]
pub struct DirView {
    /// Absolute path.
    pub path: Src<String>,
    /// Octal mode without a leading zero, as `stat -c %a` prints it.
    pub mode: Src<String>,
    /// `uid:gid`.
    pub owner: Src<String>,
}

/// Where the agent's fetch goes: a site host named in the URL (by name, name in the
/// site domain, or address) or the internet, and the port its scheme uses. `None` for a
/// local path, which needs no network.
fn fetch_target(site: &Site, url: &str) -> Option<(Option<HostId>, PortSpec)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => 443,
        "ssh" => 22,
        _ => return None,
    };
    let authority = rest.split('/').next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // `[v6]:port`, `name:port` or a bare name.
    let (name, port) = match hostport.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((v6, tail)) => (v6, tail.strip_prefix(':')),
        None => match hostport.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (hostport, None),
        },
    };
    let port = port.and_then(|p| p.parse().ok()).unwrap_or(default);
    let local = format!(".{}", site.settings.domain);
    let host = site.hosts.iter().position(|h| {
        h.name == name
            || name.strip_suffix(&local) == Some(h.name.as_str())
            || h.interfaces.iter().any(|i| i.address.value.to_string() == name)
    });
    Some((host.map(HostId), PortSpec { proto: Proto::Tcp, port }))
}

/// The PostgreSQL major version Debian 12 ships; any other comes from PGDG.
const DEBIAN_POSTGRES: &str = super::postgres::DEFAULT_VERSION;

/// Docker's own packages on a Docker or Swarm host: the engine, its CLI and the Compose
/// v2 plugin (`docker compose`), from Docker's repository. Debian 12's `docker.io` is
/// engine 20.10 with no Compose v2 (its `docker-compose` is the Python 1.29, which
/// refuses the top-level `name` the Compose files carry), and the agent deploys with
/// `docker compose` and `docker stack`.
pub const DOCKER_PACKAGES: &[&str] = &["containerd.io", "docker-ce", "docker-ce-cli", "docker-compose-plugin"];

/// Packages that are in Debian's `contrib` component, or in `main` but depend on one
/// there (`sanoid` on `zfsutils-linux`): OpenZFS is CDDL-licensed, so Debian ships it
/// outside `main`.
pub const CONTRIB: &[&str] = &["sanoid", "zfs-dkms", "zfsutils-linux"];

/// A host's packages: Debian's, the PostgreSQL project's (PGDG) and Docker's.
pub struct Packages {
    /// From Debian's own components.
    pub debian: Vec<Src<String>>,
    /// From PGDG.
    pub pgdg: Vec<Src<String>>,
    /// From Docker's repository.
    pub docker: Vec<Src<String>>,
}

pub use super::TEXTFILE_DIR;

/// The packages a host needs, each with the roles and services that need it: those of
/// Debian's own components, of the PostgreSQL project's repository (PGDG) and of
/// Docker's ([`DOCKER_PACKAGES`]).
fn packages(site: &Site, host: crate::model::HostId) -> Packages {
    use std::collections::BTreeMap;
    let h = site.host(host);
    let mut p: BTreeMap<String, Vec<&Loc>> = BTreeMap::new();
    let mut pgdg: BTreeMap<String, Vec<&Loc>> = BTreeMap::new();
    let mut docker: BTreeMap<String, Vec<&Loc>> = BTreeMap::new();
    // nftables: every Linux host gets a host firewall (family nftables).
    for base in ["ca-certificates", "openssh-client", "nftables"] {
        p.entry(base.into()).or_default().push(&h.loc);
    }
    // rsyslog ships the logs (family logship); Debian's cloud images leave it out.
    if let Some(loc) = super::logship::input_loc(site) {
        p.entry("rsyslog".into()).or_default().push(loc);
    }
    for r in &h.roles {
        if matches!(r.value, Role::Docker | Role::SwarmManager | Role::SwarmWorker) {
            // The repository's key is fetched and checked with curl and gpg.
            for pkg in DOCKER_PACKAGES {
                docker.entry(pkg.to_string()).or_default().push(&r.loc);
            }
            for tool in ["curl", "gnupg"] {
                p.entry(tool.into()).or_default().push(&r.loc);
            }
        }
        if r.value == Role::Zfs && !h.has_role(Role::Proxmox) {
            // Debian's OpenZFS is a DKMS module: it builds against the kernel's headers.
            // (Proxmox VE ships ZFS in its kernel.)
            for pkg in ["zfsutils-linux", "zfs-dkms", "linux-headers-amd64"] {
                p.entry(pkg.into()).or_default().push(&r.loc);
            }
        }
        if let Some(pkg) = match r.value {
            Role::Docker | Role::SwarmManager | Role::SwarmWorker | Role::Zfs => None,
            Role::NfsServer => Some("nfs-kernel-server"),
            Role::Proxmox => None,
        } {
            p.entry(pkg.into()).or_default().push(&r.loc);
        }
    }
    // keepalived for a database failover address (family postgres decides the hosts).
    for (id, f) in super::postgres::failover::plans(site) {
        if f.holds(host) {
            p.entry("keepalived".into()).or_default().extend([&site.service(id).loc, &f.failover.loc]);
        }
    }
    // The backup jobs' tools (family backups).
    for (pkg, loc) in super::backups::packages(site, host) {
        p.entry(pkg.into()).or_default().push(loc);
    }
    for s in site.services_on(host) {
        let svc = site.service(s);
        if svc.kind.value == ServiceKind::Postgres {
            // The server of the site's version: Debian 12 has 15, PGDG the others. The
            // repository's key is fetched and checked with curl and gpg.
            let v = super::postgres_version(site, s);
            if v == DEBIAN_POSTGRES {
                p.entry(format!("postgresql-{v}")).or_default().push(&svc.loc);
            } else {
                pgdg.entry(format!("postgresql-{v}")).or_default().push(&svc.loc);
                for tool in ["curl", "gnupg"] {
                    p.entry(tool.into()).or_default().push(&svc.loc);
                }
            }
            continue;
        }
        if let Some(pkg) = svc.kind.value.info().package {
            p.entry(pkg.into()).or_default().push(&svc.loc);
        }
        if svc.kind.value == ServiceKind::Haproxy {
            // HAProxy logs to /dev/log in its chroot, a socket rsyslog makes (Debian's
            // 49-haproxy.conf); the bootstrap's placeholder certificates (openssl); the
            // ACME client.
            p.entry("rsyslog".into()).or_default().push(&svc.loc);
            p.entry("openssl".into()).or_default().push(&svc.loc);
            if let Some(c) = edge::edge(site).certificates.iter().find(|c| c.acme) {
                p.entry("lego".into()).or_default().extend([&svc.loc, &c.loc]);
            }
        }
        if svc.kind.value == ServiceKind::Keepalived {
            // The edge's track script asks HAProxy over HTTPS (family keepalived).
            p.entry("curl".into()).or_default().push(&svc.loc);
        }
        if svc.kind.value == ServiceKind::Powerdns {
            p.entry("pdns-backend-bind".into()).or_default().push(&svc.loc); // family dns: zones from files
        }
        if svc.kind.value == ServiceKind::Nginx {
            p.entry("libnginx-mod-http-modsecurity".into()).or_default().push(&svc.loc);
            p.entry("modsecurity-crs".into()).or_default().push(&svc.loc);
        }
    }
    // Docker mounts the NFS volumes of the host's containers with mount.nfs.
    for n in super::containers::model(site).nfs.values() {
        if let Some(locs) = super::containers::nfs_clients(site, &n.name).remove(&host) {
            p.entry("nfs-common".into()).or_default().extend(locs.into_iter().chain([&n.loc]));
        }
    }
    let list =
        |m: BTreeMap<String, Vec<&Loc>>| m.into_iter().map(|(pkg, locs)| Src::of(pkg, "package", locs)).collect();
    Packages { debian: list(p), pgdg: list(pgdg), docker: list(docker) }
}

impl Family for Delivery {
    fn name(&self) -> &'static str {
        "delivery"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::DeliveryFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        keys::resolve(parts, site, diags).map(|a| Box::new(a) as Box<dyn Any + Send + Sync>)
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let Some(a) = site.ext.get::<keys::AgentSettings>() else { return };
        let Some((target, port)) = fetch_target(site, &a.repository) else { return };
        // Every host's agent fetches the repository; a host no flow lets reach it never
        // gets another change, including the one that would fix its flows.
        let cut_off: Vec<&str> = site
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| h.kind.value.is_linux() && !site.flow_plan().allows(site, Some(HostId(*i)), target, port))
            .map(|(_, h)| h.name.as_str())
            .collect();
        if let Some(first) = cut_off.first() {
            let to = match target {
                Some(h) => format!("host:{}", site.host(h).name),
                None => "internet".to_string(),
            };
            diags.push(
                Diagnostic::error(
                    "missing-flow",
                    format!(
                        "the pull agent fetches `{}` ({to} {port}), but no flow lets {} reach it",
                        a.repository,
                        crate::diag::shortlist(&cut_off)
                    ),
                    a.repository_loc.clone(),
                )
                .label("every host fetches this")
                .help(format!(
                    "add a flow from each host's zone, e.g. for `{first}`:\n\n[[flows]]\nfrom = \"zone:{}\"\nto = \"{to}\"\nports = [\"{port}\"]\nwhy = \"medianest pull fetches the site repository\"\n",
                    site.host_zones(site.hosts.iter().position(|h| h.name == *first).map(HostId).unwrap_or(HostId(0)))
                        .first()
                        .map_or("…".to_string(), |z| site.zone(*z).name.clone())
                )),
            );
        }
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let Some(a) = site.ext.get::<keys::AgentSettings>() else { return Vec::new() };
        let fact = |field, value: Val| Fact { category: "agent", subject: "[agent]".into(), field, value };
        vec![
            fact("repository", a.repository.clone().into()),
            fact("branch", a.branch.clone().into()),
            fact("interval", a.interval.to_string().into()),
            fact("splay", a.splay.to_string().into()),
            fact("signers", Val::many(&a.signers)),
            fact("drift", a.drift.clone().into()),
        ]
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let Some(agent) = site.ext.get::<keys::AgentSettings>() else { return };
        for (i, h) in site.hosts.iter().enumerate().filter(|(_, h)| h.kind.value.is_linux()) {
            let id = crate::model::HostId(i);
            let on_host = site.services_on(id);
            let directories = on_host
                .iter()
                .map(|s| site.service(*s))
                .filter(|s| s.kind.value.info().container)
                .flat_map(|s| {
                    let owner = match &s.user {
                        Some(u) => Src::at(
                            if u.value.contains(':') { u.value.clone() } else { format!("{0}:{0}", u.value) },
                            "container user",
                            &u.loc,
                        ),
                        None => Src::at("0:0".to_string(), "container user (none written: root)", &s.loc),
                    };
                    // NFS volumes are mounted by Docker, not made here.
                    s.volumes.iter().filter(|v| !super::containers::is_nfs(site, &v.name)).map(move |v| DirView {
                        path: Src::of(super::containers::volume_dir(&s.name, &v.name), "volume", [&s.loc, &v.loc]),
                        mode: Src::at("750".to_string(), "volume directory mode (built-in)", &v.loc),
                        owner: owner.clone(),
                    })
                })
                .collect();
            let at = |v: String, what| Src::at(v, what, &agent.loc);
            // HAProxy, or PostgreSQL with failover, binds a floating address keepalived
            // may not have moved here yet.
            let failovers: Vec<_> = super::postgres::failover::plans(site).filter(|(_, f)| f.holds(id)).collect();
            let keepalived: Vec<&Loc> = edge::services_of(site, ServiceKind::Keepalived)
                .filter(|(_, s)| s.hosts.iter().any(|x| x.value == id))
                .map(|(_, s)| &s.loc)
                .chain(failovers.iter().map(|(_, f)| &f.failover.loc))
                .collect();
            let Packages { debian, pgdg, docker } = packages(site, id);
            let contrib: Vec<Src<String>> =
                debian.iter().filter(|p| CONTRIB.contains(&p.value.as_str())).cloned().collect();
            let ctx = DeliveryContext {
                site: Src::of(site.settings.name.clone(), "site name", &site.settings.loc),
                host: Src::at(h.name.clone(), "host", &h.loc),
                repository: at(agent.repository.clone(), "agent repository"),
                branch: at(agent.branch.clone(), "agent branch"),
                drift: at(agent.drift.clone(), "agent drift policy"),
                interval: at(agent.interval.to_string(), "agent interval"),
                interval_seconds: Src::at(agent.interval.0, "agent interval", &agent.loc),
                splay: at(agent.splay.to_string(), "agent splay"),
                splay_seconds: Src::at(agent.splay.0, "agent splay", &agent.loc),
                textfile_dir: site
                    .services_on(id)
                    .into_iter()
                    .map(|s| site.service(s))
                    .find(|s| s.kind.value == ServiceKind::NodeExporter)
                    .map(|s| Src::at(TEXTFILE_DIR.to_string(), "node exporter's textfile directory", &s.loc)),
                signers: agent.signers.iter().map(|k| at(k.clone(), "agent signer")).collect(),
                packages: debian,
                pgdg,
                contrib,
                docker,
                directories,
                placeholders: placeholders(site, id),
                forwarding: Src::of(
                    h.has_role(Role::Docker),
                    "IP forwarding (the docker role)",
                    h.roles.iter().map(|r| &r.loc).chain([&h.loc]),
                ),
                nonlocal_bind: Src::of(
                    !keepalived.is_empty(),
                    "non-local bind (keepalived on the host)",
                    keepalived.iter().copied().chain([&h.loc]),
                ),
            };
            let file = |target: &str, reload: Option<&str>, restart: Option<&str>| {
                let mut m = ArtifactMeta::host_file(self.name(), &h.name, target, 0o644, "root:root");
                m.apply = Some(Apply {
                    target: target.into(),
                    validate: None,
                    reload: reload.map(Into::into),
                    restart: restart.map(Into::into),
                    probe: None,
                    deploy: None,
                });
                m
            };
            let origin = Some(h.loc.clone());
            // agent.toml carries the branch into the manifest, which binds the tree to it.
            let mut conf = file("/etc/medianest/agent.toml", None, None);
            conf.branch = Some(agent.branch.clone());
            out.add("delivery/agent.toml.j2", &ctx, conf, origin.clone());
            out.add(
                "delivery/allowed_signers.j2",
                &ctx,
                file("/etc/medianest/allowed_signers", None, None),
                origin.clone(),
            );
            out.add(
                "delivery/medianest-pull.service.j2",
                &ctx,
                file("/etc/systemd/system/medianest-pull.service", Some("daemon-reload"), None),
                origin.clone(),
            );
            out.add(
                "delivery/medianest-pull.timer.j2",
                &ctx,
                file("/etc/systemd/system/medianest-pull.timer", Some("daemon-reload"), None),
                origin.clone(),
            );
            // Restarting it (which enables it) delivers nothing new while a pull holds
            // the lock: it says so and succeeds, and then delivers at every boot.
            out.add(
                "delivery/medianest-secrets.service.j2",
                &ctx,
                file(SECRETS_UNIT_PATH, Some("daemon-reload"), Some(SECRETS_UNIT)),
                origin.clone(),
            );
            out.add(
                "delivery/sysctl.conf.j2",
                &ctx,
                file("/etc/sysctl.d/90-medianest.conf", None, Some("systemd-sysctl.service")),
                origin.clone(),
            );
            let mut meta = ArtifactMeta::shared(self.name(), format!("hosts/{}/bootstrap.sh", h.name), Vec::new());
            meta.host = Some(h.name.clone());
            meta.mode = 0o755;
            out.add("delivery/bootstrap.sh.j2", &ctx, meta, origin);
        }
    }
}
