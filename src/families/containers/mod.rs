//! Family **containers**: the site's container services (those with an `image`: kind
//! `container`, and `minio`), run by Docker Compose on plain Docker hosts and by Swarm on
//! Swarm members. Templates: `templates/containers/`.
//!
//! **Compose**, one file per Docker host that is not a Swarm member:
//! `/etc/medianest/compose/compose.yaml` (0640 root:root), project `<site name>`. It
//! holds every container service placed on the host, the bridges they attach to (ipam
//! subnet and gateway, `internal`), their volumes (local, or NFS: `driver_opts` type
//! `nfs`, `addr=` the server's address facing this host), and their secrets as the files
//! the agent decrypts, `/run/medianest/secrets/<service>/<name>` (0400; never in git). A local
//! volume is the host directory `/srv/medianest/<service>/<volume>` that the bootstrap
//! makes, owned by the container's user, bind-mounted (a new named volume would belong
//! to root, which a non-root container cannot write). Each
//! service gets the full hardening: `read_only`, `tmpfs` entries
//! `<path>:size=<tmpfs_size>,mode=1777,noexec,nosuid,nodev`, `cap_drop: [ALL]` plus the
//! declared `cap_add`, `security_opt: [no-new-privileges:true, apparmor=docker-default]`,
//! its non-root `user`, `pids_limit` (the service's `resources.pids`), a `healthcheck`,
//! `logging` json-file rotated at `[containers] log_max_size` × `log_max_file`,
//! `deploy.resources` limits and reservations (Compose v2 applies them), `restart`
//! (`[defaults.container]`), `depends_on` on the services of the same file (with
//! `condition: service_healthy`: a dependency on another host or a native service is
//! not Compose's to wait for), static `ipv4_address`es, and published ports. Only an
//! exception with its reason relaxes a default: `read_only` drops `read_only: true`,
//! `root_user` allows uid 0, `health` drops the health check, `cap_add` allows the
//! capabilities.
//!
//! **Published ports**: every port of the service that a flow reaches on the host is
//! published on the host addresses those flows arrive at ([`super::listen_addresses`]),
//! host port = container port, so the host firewall's `published` chain (which matches
//! `ct original proto-dst`, the port the client asked for) and the flows agree by
//! construction. A `publish` entry adds a bind address (`127.0.0.1` for a local client).
//!
//! **Health checks**: `http` → `CMD-SHELL` `wget -q -O /dev/null URL || curl -fsS -o
//! /dev/null URL` on `127.0.0.1` (the image needs `/bin/sh` and wget or curl: busybox
//! and Alpine images have wget, Debian- and Ubuntu-based ones usually curl; the check
//! passes on any status below 400); `tcp` → `nc -z` or bash's `/dev/tcp`; `exec` →
//! `CMD` with the argv as written (no shell), the form for an image that has none of
//! these.
//!
//! **Swarm**: the services placed on Swarm members go to one stack,
//! `/etc/medianest/stacks/<site name>.yml` on the first Swarm manager by name. Version
//! `3.8`, which `docker stack config` checks; only keys Swarm honours are written:
//!
//! | key | Compose | Swarm stack |
//! | --- | --- | --- |
//! | `read_only`, `user`, `cap_drop`/`cap_add`, `healthcheck`, `logging`, `command` | written | written (cap_* need engine ≥ 20.10) |
//! | `security_opt` (no-new-privileges, AppArmor) | written | not written: Swarm ignores it (the engine's default AppArmor profile still applies) |
//! | `restart` | `[defaults.container] restart` | `deploy.restart_policy` (`unless-stopped`/`always` → `any`) |
//! | `pids_limit` | written | not written: the v3 schema has no pids limit |
//! | `tmpfs` | `size`, `mode`, `noexec`, `nosuid`, `nodev` | a `tmpfs` mount with its `size` only (Swarm takes no mount flags) |
//! | `depends_on`, `container_name` | `depends_on` written | not written: Swarm ignores them |
//! | static `ipv4_address` | written | refused: overlays assign addresses (`networks = { x = "auto" }`) |
//! | published ports | on the flows' host addresses | `mode: host` on every address of the node (no bind address in Swarm; the host firewall filters) |
//! | secrets | `file:` `/run/medianest/secrets/<service>/<name>` (one key per service's copy, mounted at `/run/secrets/<name>`); a `medianest.secrets` label with their versions, so a rotation recreates the container | `file:` the manager's copy (only the manager holds it), `name: <stack>_<name>_<version>`: Swarm secrets are immutable, so a rotation is a new secret the services move to; `external: true` when the site does not deliver secrets |
//! | placement | the host's own file | `node.hostname == h` for one host; `node.hostname != x` for every other Swarm host for several |
//! | updates | — | `update_config`/`rollback_config`: parallelism 1, `start-first` for stateless services, `stop-first` for stateful ones, rollback on failure |
//!
//! Placement by exclusion needs no node labels, and holds while the swarm holds only the
//! site's Swarm hosts (a node joined by hand would be eligible).
//!
//! **NFS volumes** (`[nfs_volumes.<name>]`): the server gets
//! `/etc/exports.d/medianest.exports`, one line per export listing exactly the hosts of
//! the services that mount it (their address facing the server), `rw,sync,
//! no_subtree_check,root_squash,sec=sys`. A flow tcp/2049 from each client host to the
//! server must exist.
//!
//! Also `docs/images.txt`: every image with its pin, sorted, one per line.
//!
//! **Deploy** (the agent, `medianest pull`): a Compose file is validated staged with
//! `docker compose -f … config -q` and a stack with `docker stack config -c`
//! ([`Validator::Compose`], [`Validator::Stack`]); after the swap the agent runs
//! `docker compose -f … up -d --remove-orphans` / `docker stack deploy --prune
//! --with-registry-auth -c … <stack>` ([`Deploy`]) and polls until every container runs
//! healthy / every service runs its replicas; else it restores the previous file and
//! deploys it again. The exports reload `nfs-server.service` (`exportfs -r`).

pub mod checks;
pub mod keys;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Deploy, Validator};
use crate::diag::{Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::{Fact, Val};
use crate::model::flows::{Peer, arrival};
use crate::model::values::Proto;
use crate::model::{At, ExceptionKind, HealthCheck, HostId, NetDriver, Role, ServiceId, ServiceKind, Site};

/// The Compose file on a Docker host.
pub const COMPOSE: &str = "/etc/medianest/compose/compose.yaml";
/// The folder of the stack files on the Swarm manager.
pub const STACKS_DIR: &str = "/etc/medianest/stacks";
/// The NFS exports on an NFS server.
pub const EXPORTS: &str = "/etc/exports.d/medianest.exports";
/// The image list.
pub const IMAGES: &str = "docs/images.txt";
/// NFS mount options of the volumes (NFSv4.2, hard mounts: an app never sees a short
/// write when the server restarts).
pub const NFS_OPTIONS: &str = "nfsvers=4.2,rw,hard,noatime";
/// Export options.
pub const EXPORT_OPTIONS: &str = "rw,sync,no_subtree_check,root_squash,sec=sys";

/// Where a container's local volume lives on its host: made by the bootstrap (family
/// delivery), owned by the container's user, bind-mounted by Compose and Swarm.
pub fn volume_dir(service: &str, volume: &str) -> String {
    format!("/srv/medianest/{service}/{volume}")
}

/// Whether a volume is shared over NFS (else it is a local directory).
pub fn is_nfs(site: &Site, volume: &str) -> bool {
    model(site).nfs.contains_key(volume)
}

/// The containers family.
pub struct Containers;

/// The family's model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: std::sync::OnceLock<keys::Model> = std::sync::OnceLock::new();
    site.ext.get::<keys::Model>().unwrap_or_else(|| EMPTY.get_or_init(keys::Model::default))
}

/// The container services this family runs: a container kind with an image and hosts.
pub fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    site.services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.declared.kind_known && s.kind.value.info().container && s.image.is_some())
        .filter(|(_, s)| !s.hosts.is_empty())
        .map(|(i, _)| ServiceId(i))
}

/// Whether a host is a Swarm member.
pub fn is_swarm(site: &Site, h: HostId) -> bool {
    site.host(h).in_swarm()
}

/// Whether a service runs on Swarm (all its hosts are Swarm members; a mix is an error).
pub fn on_swarm(site: &Site, id: ServiceId) -> bool {
    site.on_swarm(id)
}

/// The secrets the Swarm manager holds for the stack, beyond any service there: each
/// Swarm service's, which `docker stack deploy` creates in Swarm's store from the
/// manager's copy (the workers' containers read them from the store, never from a
/// host file).
pub fn secrets(site: &Site) -> Vec<(HostId, ServiceId, String, &Loc)> {
    let Some(m) = manager(site) else { return Vec::new() };
    let mut out = Vec::new();
    for id in (0..site.services.len()).map(ServiceId).filter(|id| site.on_swarm(*id)) {
        for x in &site.service(id).secrets {
            out.push((m, id, x.value.clone(), &x.loc));
        }
    }
    out
}

/// The Swarm manager that holds the stack: the first by name.
pub fn manager(site: &Site) -> Option<HostId> {
    site.hosts.iter().position(|h| h.has_role(Role::SwarmManager)).map(HostId)
}

/// The Compose project and the stack name: the site's name.
fn project(site: &Site) -> Src<String> {
    let name = if site.settings.name.is_empty() { "medianest".to_string() } else { site.settings.name.clone() };
    Src::of(name, "site name (project)", site.settings.loc.iter())
}

/// A service's log size.
fn log_max_size(site: &Site) -> Src<String> {
    match &model(site).log_max_size {
        Some(v) => Src::at(v.value.to_string(), "log_max_size", &v.loc),
        None => Src::of(keys::DEFAULT_LOG_MAX_SIZE.to_string(), "log_max_size", None),
    }
}

/// A service's rotated log files.
fn log_max_file(site: &Site) -> Src<String> {
    match &model(site).log_max_file {
        Some(v) => Src::at(v.value.to_string(), "log_max_file", &v.loc),
        None => Src::of(keys::DEFAULT_LOG_MAX_FILE.to_string(), "log_max_file", None),
    }
}

/// A health check in Compose's terms.
#[derive(Serialize)]
pub struct HealthView {
    /// `test`: `CMD-SHELL` or `CMD` and the argv.
    pub test: Vec<Src<String>>,
    /// Interval.
    pub interval: Src<String>,
    /// Timeout.
    pub timeout: Src<String>,
    /// Retries.
    pub retries: Src<u32>,
    /// Start period.
    pub start_period: Src<String>,
}

/// A network attachment.
#[derive(Serialize)]
pub struct Attach {
    /// Network name.
    pub name: Src<String>,
    /// Static address (bridges only).
    pub ipv4_address: Option<Src<String>>,
}

/// A published port.
#[derive(Serialize)]
pub struct PortView {
    /// Port number (container and host).
    pub port: Src<u16>,
    /// `tcp` or `udp`.
    pub protocol: Src<String>,
    /// Host address (Compose only).
    pub host_ip: Option<Src<String>>,
}

/// A volume or bind mount.
#[derive(Serialize)]
pub struct MountView {
    /// `volume` or `bind`.
    pub kind: &'static str,
    /// Volume name or host path.
    pub source: Src<String>,
    /// Path in the container.
    pub target: Src<String>,
    /// Read-only.
    pub read_only: bool,
}

/// A dependency in the same Compose file.
#[derive(Serialize)]
pub struct DependsView {
    /// The service.
    pub name: Src<String>,
    /// `service_healthy`, or `service_started` for one without a health check (its
    /// exception), which would never become healthy.
    pub condition: &'static str,
}

/// One container service as both templates write it.
#[derive(Serialize)]
pub struct ServiceView {
    /// Name.
    pub name: Src<String>,
    /// Image with its pin.
    pub image: Src<String>,
    /// argv replacing the image's `CMD`.
    pub command: Vec<Src<String>>,
    /// In the host's network namespace (`network_mode: host`; no networks, no ports).
    pub host_network: Option<Src<bool>>,
    /// Container user.
    pub user: Option<Src<String>>,
    /// Why it runs as root (an exception).
    pub root_reason: Option<Src<String>>,
    /// Read-only root.
    pub read_only: bool,
    /// Why the root is writable (an exception).
    pub read_only_reason: Option<Src<String>>,
    /// tmpfs paths.
    pub tmpfs: Vec<Src<String>>,
    /// tmpfs size as Docker writes it (`64m`) and in bytes (Swarm).
    pub tmpfs_size: Src<String>,
    /// tmpfs size in bytes.
    pub tmpfs_bytes: Src<u64>,
    /// Added capabilities.
    pub cap_add: Vec<Src<String>>,
    /// Why capabilities are added (an exception).
    pub cap_reason: Option<Src<String>>,
    /// Health check.
    pub health: Option<HealthView>,
    /// Why there is none (an exception).
    pub health_reason: Option<Src<String>>,
    /// Environment.
    pub env: Vec<(Src<String>, Src<String>)>,
    /// Secret names.
    pub secrets: Vec<Src<String>>,
    /// Compose: the versions of its delivered secrets (`<name>=<version>,…`), as a
    /// label. A rotated file does not reach a running container (Compose bind-mounts
    /// the file it was given), so the label changes and `up -d` recreates it.
    pub secrets_version: Option<Src<String>>,
    /// Networks.
    pub networks: Vec<Attach>,
    /// Volumes and bind mounts.
    pub mounts: Vec<MountView>,
    /// Published ports.
    pub ports: Vec<PortView>,
    /// Dependencies in the same file, with the condition Compose waits for.
    pub depends_on: Vec<DependsView>,
    /// Dependencies elsewhere (a comment).
    pub depends_elsewhere: Vec<Src<String>>,
    /// CPU limit.
    pub cpus: Src<String>,
    /// Memory limit.
    pub memory: Src<String>,
    /// CPU reservation.
    pub reserve_cpus: Src<String>,
    /// Memory reservation.
    pub reserve_memory: Src<String>,
    /// Pids limit.
    pub pids: Src<u32>,
    /// Restart policy (Compose).
    pub restart: Src<String>,
    /// Swarm only: replicas.
    pub replicas: Src<u32>,
    /// Swarm only: placement constraints.
    pub constraints: Vec<Src<String>>,
    /// Swarm only: `start-first` or `stop-first`.
    pub update_order: Src<String>,
    /// Swarm only: restart condition.
    pub restart_condition: Src<String>,
}

/// A network as the top level declares it.
#[derive(Serialize)]
pub struct NetworkView {
    /// Name.
    pub name: Src<String>,
    /// `bridge` or `overlay`.
    pub driver: Src<String>,
    /// No outside route.
    pub internal: Src<bool>,
    /// Encrypted overlay.
    pub encrypted: Src<bool>,
    /// Subnet.
    pub subnet: Option<Src<String>>,
    /// Gateway.
    pub gateway: Option<Src<String>>,
}

/// A volume as the top level declares it.
#[derive(Serialize)]
pub struct VolumeView {
    /// Name.
    pub name: Src<String>,
    /// NFS: `addr=…,nfsvers=…`.
    pub nfs_options: Option<Src<String>>,
    /// NFS: `:<export>`.
    pub nfs_device: Option<Src<String>>,
}

/// Context of `containers/compose.yaml.j2` and `containers/stack.yml.j2`.
#[derive(Serialize)]
pub struct FileContext {
    /// The host (Compose) or the manager (stack).
    pub host: Src<String>,
    /// Project or stack name.
    pub project: Src<String>,
    /// Services, by name.
    pub services: Vec<ServiceView>,
    /// Networks, by name.
    pub networks: Vec<NetworkView>,
    /// Volumes, by name.
    pub volumes: Vec<VolumeView>,
    /// A stack's secrets, by name.
    pub secrets: Vec<StackSecretView>,
    /// A Compose file's secrets: each service's copy, `<service>.<name>`, read from the
    /// file the agent delivers (`/run/medianest/secrets/<service>/<name>`).
    pub secret_files: Vec<SecretFileView>,
    /// json-file `max-size`.
    pub log_max_size: Src<String>,
    /// json-file `max-file`.
    pub log_max_file: Src<String>,
}

/// An exception's reason, if written.
fn reason(site: &Site, id: ServiceId, k: ExceptionKind) -> Option<Src<String>> {
    site.service(id).exception(k).map(|e| Src::at(e.reason.value.clone(), "exception reason", &e.reason.loc))
}

/// CPUs as Docker writes them.
fn cpus(c: f64) -> String {
    format!("{c}")
}

/// The health check of a service in Compose's terms.
fn health(site: &Site, id: ServiceId) -> Option<HealthView> {
    let s = site.service(id);
    let h = s.health.as_ref()?;
    let loc = h.loc.as_ref().unwrap_or(&s.loc);
    let port = |name: &str| s.port(name).map(|p| p.spec.port).unwrap_or(0);
    let test: Vec<String> = match &h.check {
        // MinIO's image has neither wget nor curl (since RELEASE.2023-11-01) and serves
        // HTTPS: its own `mc ready` asks the cluster health endpoint, trusting the CA;
        // mc needs a writable config directory (the /tmp tmpfs, [`minio_tmpfs`]).
        HealthCheck::Http { port: p, .. } if s.kind.value == ServiceKind::Minio => {
            let url = format!("https://127.0.0.1:{}", port(p));
            vec![
                "CMD-SHELL".into(),
                format!(
                    "MC_HOST_health={url} SSL_CERT_FILE={} mc --config-dir /tmp/.mc ready health",
                    super::minio::CA_IN_CERTS
                ),
            ]
        }
        HealthCheck::Http { path, port: p, .. } => {
            let url = format!("http://127.0.0.1:{}{path}", port(p));
            vec!["CMD-SHELL".into(), format!("wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url}")]
        }
        HealthCheck::Tcp { port: p } => {
            let n = port(p);
            vec!["CMD-SHELL".into(), format!("nc -z 127.0.0.1 {n} || bash -c 'exec 3<>/dev/tcp/127.0.0.1/{n}'")]
        }
        HealthCheck::Exec(argv) => std::iter::once("CMD".to_string()).chain(argv.iter().cloned()).collect(),
    };
    let d = site.defaults.loc.iter().chain([loc]);
    Some(HealthView {
        test: test.into_iter().map(|t| Src::at(t, "health check", loc)).collect(),
        // Compose and Swarm read Go durations: `24h`, never `1d`.
        interval: Src::of(h.interval.go(), "health interval", d.clone()),
        timeout: Src::of(h.timeout.go(), "health timeout", d.clone()),
        retries: Src::of(h.retries, "health retries", d.clone()),
        start_period: Src::of(h.start_period.go(), "health start period", d),
    })
}

/// MinIO's command, when the site writes none (it may not: [`checks`]): the server on
/// its data directory (its first volume's mount point, else the image's `/data`), its
/// API and console ports, and the certificate directory, so it serves HTTPS. `None` for
/// any other kind.
fn minio_command(site: &Site, id: ServiceId) -> Option<Vec<Src<String>>> {
    let s = site.service(id);
    if s.kind.value != ServiceKind::Minio {
        return None;
    }
    let data = s.volumes.first().map_or(Src::at(super::minio::DEFAULT_DATA.to_string(), "MinIO data", &s.loc), |v| {
        Src::at(v.target.clone(), "MinIO data (its first volume)", &v.loc)
    });
    let port = |name: &str| {
        super::service_port(site, id, name)
            .map(|(p, l)| Src::at(format!(":{}", p.port), "MinIO port", l))
            .unwrap_or_else(|| Src::at(String::new(), "MinIO port", &s.loc))
    };
    let word = |w: &str| Src::at(w.to_string(), "MinIO command", &s.loc);
    Some(vec![
        word("server"),
        data,
        word("--address"),
        port("api"),
        word("--console-address"),
        port("console"),
        word("--certs-dir"),
        word(super::minio::CERTS_DIR),
    ])
}

/// The tmpfs MinIO's health check writes mc's configuration to, when the service has
/// no `/tmp` of its own (its root is read-only).
fn minio_tmpfs(site: &Site, id: ServiceId) -> Option<Src<String>> {
    let s = site.service(id);
    let health = matches!(s.health.as_ref().map(|h| &h.check), Some(HealthCheck::Http { .. }));
    (s.kind.value == ServiceKind::Minio && health && s.read_only.value && !s.tmpfs.iter().any(|t| t.value == "/tmp"))
        .then(|| Src::at("/tmp".to_string(), "tmpfs (mc's configuration, for the health check)", &s.loc))
}

/// The ports of a service published on `host`: each port a flow reaches, on the
/// addresses the flows arrive at, then the `publish` entries. Swarm has no bind address:
/// one entry per port.
fn ports(site: &Site, id: ServiceId, host: Option<HostId>) -> Vec<PortView> {
    let s = site.service(id);
    let mut out: BTreeMap<(u16, Proto, String), (Vec<&Loc>, &Loc)> = BTreeMap::new();
    let hosts: Vec<HostId> = match host {
        Some(h) => vec![h],
        None => s.hosts.iter().map(|h| h.value).collect(),
    };
    for p in s.ports.iter().filter(|p| p.spec.proto.has_ports()) {
        let ploc = p.loc.as_ref().unwrap_or(&s.loc);
        for &h in &hosts {
            for g in site.flow_plan().into_host(h).filter(|g| g.port == p.spec) {
                let bind = if host.is_some() {
                    let i = arrival(site, h, g.from);
                    site.host(h).interfaces.get(i).map(|x| x.address.value.to_string()).unwrap_or_default()
                } else {
                    String::new()
                };
                let e = out.entry((p.spec.port, p.spec.proto, bind)).or_insert((Vec::new(), ploc));
                e.0.push(&site.flows[g.flow].loc);
            }
        }
    }
    for p in model(site).publish.get(&id).into_iter().flatten() {
        let bind = if host.is_some() { p.bind.value.to_string() } else { String::new() };
        out.entry((p.spec.port, p.spec.proto, bind)).or_insert((Vec::new(), &p.loc)).0.push(&p.bind.loc);
    }
    out.into_iter()
        .map(|((port, proto, bind), (locs, ploc))| PortView {
            port: Src::at(port, "published port", ploc),
            protocol: Src::at(proto.to_string(), "protocol", ploc),
            host_ip: (!bind.is_empty()).then(|| Src::of(bind, "published on (reached by a flow)", locs)),
        })
        .collect()
}

/// The restart condition of a Swarm service for a Compose restart policy.
fn restart_condition(restart: &str) -> &'static str {
    match restart {
        "no" => "none",
        "on-failure" => "on-failure",
        _ => "any",
    }
}

/// One service as a file on `host` (Compose) or in the stack (`None`) writes it.
fn service_view(site: &Site, id: ServiceId, host: Option<HostId>, here: &BTreeSet<ServiceId>) -> ServiceView {
    let s = site.service(id);
    let m = model(site);
    let d = &site.defaults;
    let dl = d.loc.as_ref();
    let sl = &s.loc;
    let image = s.image.as_ref().map(|i| Src::at(i.value.to_string(), "image", &i.loc));
    let mut mounts = Vec::new();
    for v in &s.volumes {
        // An NFS volume is Docker's; a local one is the directory the bootstrap makes,
        // owned by the container's user (a fresh named volume would be root's).
        let nfs = m.nfs.contains_key(&v.name);
        mounts.push(MountView {
            kind: if nfs { "volume" } else { "bind" },
            source: if nfs {
                Src::at(v.name.clone(), "volume", &v.loc)
            } else {
                Src::of(volume_dir(&s.name, &v.name), "volume directory", [sl, &v.loc])
            },
            target: Src::at(v.target.clone(), "mount point", &v.loc),
            read_only: false,
        });
    }
    if s.kind.value == ServiceKind::Minio {
        mounts.push(MountView {
            kind: "bind",
            source: Src::at(super::minio::TLS_DIR.to_string(), "MinIO's certificate (issued on the host)", sl),
            target: Src::at(super::minio::CERTS_DIR.to_string(), "MinIO's --certs-dir", sl),
            read_only: true,
        });
    }
    for b in m.binds.get(&id).into_iter().flatten() {
        mounts.push(MountView {
            kind: "bind",
            source: Src::at(b.source.value.clone(), "bind source", &b.source.loc),
            target: Src::at(b.target.value.clone(), "bind target", &b.target.loc),
            read_only: !b.writable,
        });
    }
    let networks = s
        .networks
        .iter()
        .map(|(n, a)| {
            let net = site.network(*n);
            Attach {
                name: Src::at(net.name.clone(), "docker network", &net.loc),
                ipv4_address: a
                    .value
                    .filter(|_| net.driver == NetDriver::Bridge)
                    .map(|ip| Src::at(ip.to_string(), "static address", &a.loc)),
            }
        })
        .collect();
    // Swarm placement: the host itself, or every other Swarm host excluded.
    let constraints = if s.hosts.len() == 1 {
        let h = site.host(s.hosts[0].value);
        vec![Src::at(format!("node.hostname == {}", h.name), "placement", &s.hosts[0].loc)]
    } else {
        let mine: BTreeSet<HostId> = s.hosts.iter().map(|h| h.value).collect();
        let locs: Vec<&Loc> = s.hosts.iter().map(|h| &h.loc).collect();
        (0..site.hosts.len())
            .map(HostId)
            .filter(|h| is_swarm(site, *h) && !mine.contains(h))
            .map(|h| Src::of(format!("node.hostname != {}", site.host(h).name), "placement", locs.iter().copied()))
            .collect()
    };
    let (depends_on, depends_elsewhere) = s.depends_on.iter().partition::<Vec<_>, _>(|x| here.contains(&x.value));
    let dep = |v: Vec<&crate::model::At<ServiceId>>| -> Vec<Src<String>> {
        v.into_iter().map(|x| Src::at(site.service(x.value).name.clone(), "dependency", &x.loc)).collect()
    };
    ServiceView {
        name: Src::at(s.name.clone(), "service", sl),
        image: image.unwrap_or_else(|| Src::at(String::new(), "image", sl)),
        command: m
            .command
            .get(&id)
            .map(|c| c.value.iter().map(|a| Src::at(a.clone(), "command", &c.loc)).collect())
            .or_else(|| minio_command(site, id))
            .unwrap_or_default(),
        user: s.user.as_ref().map(|u| Src::at(u.value.clone(), "user", &u.loc)),
        root_reason: reason(site, id, ExceptionKind::RootUser),
        read_only: s.read_only.value,
        read_only_reason: reason(site, id, ExceptionKind::ReadOnly).filter(|_| !s.read_only.value),
        tmpfs: s.tmpfs.iter().map(|t| Src::at(t.value.clone(), "tmpfs", &t.loc)).chain(minio_tmpfs(site, id)).collect(),
        tmpfs_size: Src::of(d.tmpfs_size.to_string(), "tmpfs_size", dl),
        tmpfs_bytes: Src::of(d.tmpfs_size.0, "tmpfs_size", dl),
        cap_add: s.cap_add.iter().map(|c| Src::at(c.value.clone(), "cap_add", &c.loc)).collect(),
        cap_reason: reason(site, id, ExceptionKind::CapAdd).filter(|_| !s.cap_add.is_empty()),
        health: health(site, id),
        health_reason: reason(site, id, ExceptionKind::Health).filter(|_| s.health.is_none()),
        env: s
            .env
            .iter()
            .map(|(k, v)| (Src::at(k.value.clone(), "env", &k.loc), Src::at(v.value.clone(), "env value", &v.loc)))
            .collect(),
        secrets: s.secrets.iter().map(|x| Src::at(x.value.clone(), "secret", &x.loc)).collect(),
        secrets_version: secrets_version(site, id, host.is_some()),
        networks,
        mounts,
        ports: if m.host_network.contains_key(&id) { Vec::new() } else { ports(site, id, host) },
        host_network: m.host_network.get(&id).map(|l| Src::at(true, "host_network", l)),
        depends_on: depends_on
            .into_iter()
            .map(|x| DependsView {
                name: Src::at(site.service(x.value).name.clone(), "dependency", &x.loc),
                condition: if site.service(x.value).health.is_some() { "service_healthy" } else { "service_started" },
            })
            .collect(),
        depends_elsewhere: dep(depends_elsewhere),
        cpus: Src::of(cpus(s.resources.cpus), "cpus", dl.into_iter().chain([sl])),
        memory: Src::of(s.resources.memory.to_string(), "memory", dl.into_iter().chain([sl])),
        reserve_cpus: Src::of(cpus(s.resources.reserve_cpus), "reserve_cpus", dl.into_iter().chain([sl])),
        reserve_memory: Src::of(s.resources.reserve_memory.to_string(), "reserve_memory", dl.into_iter().chain([sl])),
        pids: Src::of(s.resources.pids, "pids limit", dl.into_iter().chain([sl])),
        restart: Src::of(d.restart.clone(), "restart", dl),
        replicas: Src::at(s.replicas, "replicas", sl),
        constraints,
        update_order: Src::at(if s.stateful { "stop-first" } else { "start-first" }.into(), "update order", sl),
        restart_condition: Src::of(restart_condition(&d.restart).into(), "restart", dl),
    }
}

/// The file of the services `ids` (on `host` for Compose, `None` for the stack).
fn file_context(site: &Site, owner: HostId, ids: &[ServiceId], compose: bool) -> FileContext {
    let here: BTreeSet<ServiceId> = ids.iter().copied().collect();
    let m = model(site);
    let mut networks: BTreeMap<String, NetworkView> = BTreeMap::new();
    let mut volumes: BTreeMap<String, VolumeView> = BTreeMap::new();
    let mut secrets: BTreeMap<String, StackSecretView> = BTreeMap::new();
    let mut secret_files: Vec<SecretFileView> = Vec::new();
    for &id in ids {
        let s = site.service(id);
        for (n, _) in &s.networks {
            let net = site.network(*n);
            networks.entry(net.name.clone()).or_insert_with(|| NetworkView {
                name: Src::at(net.name.clone(), "docker network", &net.loc),
                driver: Src::at(
                    match net.driver {
                        NetDriver::Bridge => "bridge",
                        NetDriver::Overlay => "overlay",
                    }
                    .into(),
                    "network driver",
                    &net.loc,
                ),
                internal: Src::at(net.internal, "internal", &net.loc),
                encrypted: Src::at(net.encrypted, "encrypted", &net.loc),
                subnet: net.cidr.as_ref().map(|c| Src::at(c.value.to_string(), "subnet", &c.loc)),
                gateway: net.gateway.as_ref().map(|g| Src::at(g.value.to_string(), "gateway", &g.loc)),
            });
        }
        for v in s.volumes.iter().filter(|v| m.nfs.contains_key(&v.name)) {
            volumes.entry(v.name.clone()).or_insert_with(|| {
                let nfs = m.nfs.get(&v.name).and_then(|n| {
                    let server = site.host(n.server.value);
                    let i = arrival(site, n.server.value, Peer::Host(owner));
                    let addr = server.interfaces.get(i)?;
                    Some((
                        Src::of(
                            format!("addr={},{NFS_OPTIONS}", addr.address.value),
                            "NFS server address",
                            [&n.server.loc, &addr.address.loc],
                        ),
                        Src::at(format!(":{}", n.export.value), "NFS export", &n.export.loc),
                    ))
                });
                let (nfs_options, nfs_device) = nfs.map(|(a, b)| (Some(a), Some(b))).unwrap_or((None, None));
                VolumeView { name: Src::at(v.name.clone(), "volume", &v.loc), nfs_options, nfs_device }
            });
        }
        for x in &s.secrets {
            secrets.entry(x.value.clone()).or_insert_with(|| stack_secret(site, &s.name, x));
            secret_files.push(SecretFileView {
                key: Src::at(format!("{}.{}", s.name, x.value), "secret (per service)", &x.loc),
                file: Src::at(super::secret_file(&s.name, &x.value), "secret file (delivered by the agent)", &x.loc),
            });
        }
    }
    let h = site.host(owner);
    FileContext {
        host: Src::at(h.name.clone(), "host", &h.loc),
        project: project(site),
        services: ids.iter().map(|&id| service_view(site, id, compose.then_some(owner), &here)).collect(),
        networks: networks.into_values().collect(),
        volumes: volumes.into_values().collect(),
        secrets: secrets.into_values().collect(),
        secret_files,
        log_max_size: log_max_size(site),
        log_max_file: log_max_file(site),
    }
}

/// A Compose service's secret versions (see [`ServiceView::secrets_version`]).
fn secrets_version(site: &Site, id: ServiceId, compose: bool) -> Option<Src<String>> {
    let s = site.service(id);
    if !compose || s.secrets.is_empty() || !site.delivers_secrets() {
        return None;
    }
    let versions: Vec<String> = s
        .secrets
        .iter()
        .map(|x| format!("{}={}", x.value, site.secrets.version(&x.value).unwrap_or_else(|| "missing".into())))
        .collect();
    let locs = s
        .secrets
        .iter()
        .map(|x| &x.loc)
        .chain(s.secrets.iter().filter_map(|x| site.secrets.file(&x.value).map(|f| &f.loc)));
    Some(Src::of(versions.join(","), "secret versions (ciphertext hashes)", locs))
}

/// A secret at the top of a stack file.
#[derive(Debug, Serialize)]
pub struct StackSecretView {
    /// Its key under `secrets:`.
    pub key: Src<String>,
    /// The manager's copy, which `docker stack deploy` reads into Swarm's store (`None`
    /// when the site does not deliver secrets: the operator creates it, `external`).
    pub file: Option<Src<String>>,
    /// Its name in Swarm's store: `<stack>_<name>_<version>`. Swarm secrets are
    /// immutable, so a rotated secret is a new one, and the services follow it.
    pub name: Option<Src<String>>,
}

/// The stack's entry for secret `x` of Swarm service `service` (the first that lists it).
fn stack_secret(site: &Site, service: &str, x: &At<String>) -> StackSecretView {
    let version = site.delivers_secrets().then(|| site.secrets.version(&x.value)).flatten();
    StackSecretView {
        key: Src::at(x.value.clone(), "secret", &x.loc),
        file: version
            .is_some()
            .then(|| Src::at(super::secret_file(service, &x.value), "secret file (delivered by the agent)", &x.loc)),
        name: version.map(|v| {
            let f = site.secrets.file(&x.value).map(|f| &f.loc).unwrap_or(&x.loc);
            Src::of(format!("{}_{}_{v}", project(site).value, x.value), "secret version (ciphertext hash)", [&x.loc, f])
        }),
    }
}

/// One secret file of a Compose file.
#[derive(Debug, Serialize)]
pub struct SecretFileView {
    /// Its key under `secrets:` (`<service>.<name>`).
    pub key: Src<String>,
    /// The file the agent delivers.
    pub file: Src<String>,
}

/// One export line.
#[derive(Serialize)]
pub struct ExportView {
    /// Exported directory.
    pub export: Src<String>,
    /// Volume name.
    pub volume: Src<String>,
    /// Client addresses.
    pub clients: Vec<Src<String>>,
    /// Export options.
    pub options: &'static str,
}

/// Context of `containers/exports.j2`.
#[derive(Serialize)]
pub struct ExportsContext {
    /// The server.
    pub host: Src<String>,
    /// Its exports.
    pub exports: Vec<ExportView>,
}

/// The hosts that mount an NFS volume, with where they come from.
pub fn nfs_clients<'a>(site: &'a Site, volume: &str) -> BTreeMap<HostId, Vec<&'a Loc>> {
    let mut out: BTreeMap<HostId, Vec<&Loc>> = BTreeMap::new();
    for id in services(site) {
        let s = site.service(id);
        if let Some(v) = s.volumes.iter().find(|v| v.name == volume) {
            for h in &s.hosts {
                out.entry(h.value).or_default().extend([&h.loc, &v.loc]);
            }
        }
    }
    out
}

/// The exports of every NFS server.
fn exports(site: &Site) -> BTreeMap<HostId, Vec<ExportView>> {
    let mut out: BTreeMap<HostId, Vec<ExportView>> = BTreeMap::new();
    for n in model(site).nfs.values() {
        let clients = nfs_clients(site, &n.name)
            .into_iter()
            .filter_map(|(c, locs)| {
                let zone = crate::model::flows::egress_zone(site, c, Some(n.server.value))?;
                let iface = site.host(c).interfaces.iter().find(|x| x.zone.value == zone)?;
                Some(Src::of(
                    iface.address.value.to_string(),
                    "NFS client (a service that mounts the volume)",
                    locs.into_iter().chain([&iface.address.loc]),
                ))
            })
            .collect::<Vec<_>>();
        out.entry(n.server.value).or_default().push(ExportView {
            export: Src::at(n.export.value.clone(), "NFS export", &n.export.loc),
            volume: Src::at(n.name.clone(), "NFS volume", &n.loc),
            clients,
            options: EXPORT_OPTIONS,
        });
    }
    out
}

/// Context of `containers/images.txt.j2`.
#[derive(Serialize)]
pub struct ImagesContext {
    /// Every image, sorted, once.
    pub images: Vec<Src<String>>,
}

impl Family for Containers {
    fn name(&self) -> &'static str {
        "containers"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::ContainersFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        checks::verify(site, diags);
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let all: Vec<ServiceId> = services(site).collect();
        if all.is_empty() && model(site).nfs.is_empty() {
            return;
        }
        // Compose: per Docker host outside the swarm.
        let mut per_host: BTreeMap<HostId, Vec<ServiceId>> = BTreeMap::new();
        let mut swarm = Vec::new();
        for &id in &all {
            if on_swarm(site, id) {
                swarm.push(id);
                continue;
            }
            for h in &site.service(id).hosts {
                if !is_swarm(site, h.value) {
                    per_host.entry(h.value).or_default().push(id);
                }
            }
        }
        for (h, ids) in &per_host {
            let ctx = file_context(site, *h, ids, true);
            let host = site.host(*h);
            let mut meta = ArtifactMeta::host_file(self.name(), &host.name, COMPOSE, 0o640, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.validate = Some(Validator::Compose);
                a.deploy = Some(Deploy::Compose);
            }
            out.add("containers/compose.yaml.j2", &ctx, meta, Some(host.loc.clone()));
        }
        if let (Some(mgr), false) = (manager(site), swarm.is_empty()) {
            let ctx = file_context(site, mgr, &swarm, false);
            let host = site.host(mgr);
            let target = format!("{STACKS_DIR}/{}.yml", ctx.project.value);
            let mut meta = ArtifactMeta::host_file(self.name(), &host.name, &target, 0o640, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.validate = Some(Validator::Stack);
                a.deploy = Some(Deploy::Stack);
            }
            out.add("containers/stack.yml.j2", &ctx, meta, Some(host.loc.clone()));
        }
        for (h, exports) in exports(site) {
            let host = site.host(h);
            let ctx = ExportsContext { host: Src::at(host.name.clone(), "host", &host.loc), exports };
            let mut meta = ArtifactMeta::host_file(self.name(), &host.name, EXPORTS, 0o644, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                // nfs-server.service reloads with `exportfs -r`.
                a.reload = Some("nfs-server.service".into());
            }
            out.add("containers/exports.j2", &ctx, meta, Some(host.loc.clone()));
        }
        let mut images: BTreeMap<String, Vec<&Loc>> = BTreeMap::new();
        for &id in &all {
            if let Some(i) = &site.service(id).image {
                images.entry(i.value.to_string()).or_default().push(&i.loc);
            }
        }
        if !images.is_empty() {
            let ctx = ImagesContext { images: images.into_iter().map(|(i, l)| Src::of(i, "image", l)).collect() };
            out.add(
                "containers/images.txt.j2",
                &ctx,
                ArtifactMeta::shared(self.name(), IMAGES.into(), Vec::new()),
                None,
            );
        }
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let m = model(site);
        let mut v = Vec::new();
        let cfg = |field: &'static str, value: String| Fact {
            category: "containers",
            subject: "[containers]".into(),
            field,
            value: value.into(),
        };
        v.push(cfg("log_max_size", log_max_size(site).value));
        v.push(cfg("log_max_file", log_max_file(site).value));
        for n in m.nfs.values() {
            let clients = nfs_clients(site, &n.name).into_keys().map(|h| site.host(h).name.clone());
            let fact = |field: &'static str, value: Val| Fact {
                category: "nfs volume",
                subject: n.name.clone(),
                field,
                value,
            };
            v.push(fact("server", site.host(n.server.value).name.clone().into()));
            v.push(fact("export", n.export.value.clone().into()));
            v.push(fact("clients", Val::many(clients)));
        }
        for id in services(site) {
            let subject = site.service(id).name.clone();
            let fact =
                |field: &'static str, value: Val| Fact { category: "service", subject: subject.clone(), field, value };
            let publish = m.publish.get(&id).into_iter().flatten().map(|p| format!("{} on {}", p.port, p.bind.value));
            v.push(fact("publish", Val::many(publish)));
            let binds = m.binds.get(&id).into_iter().flatten().map(|b| {
                format!(
                    "{} → {} ({})",
                    b.source.value,
                    b.target.value,
                    if b.writable { "writable" } else { "read-only" }
                )
            });
            v.push(fact("binds", Val::many(binds)));
            let command = m.command.get(&id).map(|c| c.value.join(" ")).unwrap_or_default();
            v.push(fact("command", command.into()));
            v.push(fact("host_network", m.host_network.contains_key(&id).to_string().into()));
            let target = if on_swarm(site, id) { "swarm stack" } else { "compose" };
            v.push(fact("runs on", target.to_string().into()));
        }
        v
    }
}
