//! The resolved site: typed, cross-referenced, defaults applied.
//!
//! [`Site`] is what every later stage reads. Entities live in vectors sorted by name and
//! refer to each other by typed index ([`ZoneId`], [`HostId`], …), so a reference can
//! never dangle once `resolve` has succeeded. Every entity and every field a check may
//! complain about keeps its source location ([`Loc`]).

pub mod facts;
pub mod flows;
pub mod kinds;
pub mod values;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::diag::Loc;
pub use kinds::{HostKind, Role, ServiceKind};
use values::{Duration, Image, PortSpec, Size};

/// A value and where it was written.
#[derive(Debug, Clone)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub loc: Loc,
}

macro_rules! id_type {
    ($($(#[$m:meta])* $name:ident),*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub usize);
    )*};
}
id_type!(
    /// Index into [`Site::zones`].
    ZoneId,
    /// Index into [`Site::docker_networks`].
    NetId,
    /// Index into [`Site::hosts`].
    HostId,
    /// Index into [`Site::services`].
    ServiceId
);

/// The whole site.
#[derive(Debug, Default)]
pub struct Site {
    /// `[site]`.
    pub settings: SiteSettings,
    /// `[recovery]`.
    pub recovery: Recovery,
    /// `[defaults]`, with built-in values where the site sets none.
    pub defaults: Defaults,
    /// Zones, sorted by name.
    pub zones: Vec<Zone>,
    /// Docker networks, sorted by name.
    pub docker_networks: Vec<DockerNetwork>,
    /// Hosts, sorted by name.
    pub hosts: Vec<Host>,
    /// Services, sorted by name.
    pub services: Vec<Service>,
    /// Flows, in file order then declaration order.
    pub flows: Vec<Flow>,
    /// Guard-rails, in file order then declaration order.
    pub guardrails: Vec<Guardrail>,
    /// Backup policies, sorted by name.
    pub backups: Vec<Backup>,
    /// `[secrets]` and the ciphertexts under `site/secrets/`.
    pub secrets: Secrets,
    /// Repository-relative names of the site files, sorted.
    pub files: Vec<String>,
    /// The architecture decision records (`site/adr/*.md`), in path order.
    pub adrs: Vec<Adr>,
    /// What each artifact family resolved of its own keys (see [`Ext`]).
    pub ext: Ext,
    /// Lookups derived from the fields above, built on first use. The site does not
    /// change once resolved, and families ask the same questions once per route and
    /// host: answering each by a scan made them quadratic on large sites.
    pub derived: Derived,
}

/// The artifact families' own models, one per family that has keys: typed by the
/// family (`site.ext.get::<families::edge::Edge>()`), so the core model never names a
/// family's keys.
#[derive(Default)]
pub struct Ext(Vec<(&'static str, Box<dyn std::any::Any + Send + Sync>)>);

impl Ext {
    /// Stores a family's model.
    pub fn insert(&mut self, family: &'static str, model: Box<dyn std::any::Any + Send + Sync>) {
        self.0.push((family, model));
    }
    /// A family's model, if it resolved one.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.0.iter().find_map(|(_, m)| m.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for Ext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(n, _)| n)).finish()
    }
}

/// Indexes over a resolved [`Site`] (see [`Site::derived`]). Built on first use, so
/// nothing may use them before `resolve` has finished the site.
#[derive(Debug, Default)]
pub struct Derived {
    /// The flows that list each port, as indexes into [`Site::flows`], in site order.
    pub flows_by_port: std::sync::OnceLock<std::collections::HashMap<values::PortSpec, Vec<usize>>>,
    /// For each host (by id), the services placed on it, in name order.
    pub services_by_host: std::sync::OnceLock<Vec<Vec<ServiceId>>>,
    /// For each host (by id), its app-tier Nginx service, the first by name (built and
    /// read by `families::edge::proxy_on`).
    pub proxy_by_host: std::sync::OnceLock<Vec<Option<ServiceId>>>,
    /// The compiled flows (see [`Site::flow_plan`]).
    pub flow_plan: std::sync::OnceLock<flows::Plan>,
}

impl Site {
    /// A zone by id.
    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[id.0]
    }
    /// The flows that list `port`, in site order.
    pub fn flows_on_port(&self, port: values::PortSpec) -> impl Iterator<Item = &Flow> {
        let index = self.derived.flows_by_port.get_or_init(|| {
            let mut m: std::collections::HashMap<values::PortSpec, Vec<usize>> = Default::default();
            for (i, f) in self.flows.iter().enumerate() {
                for p in &f.ports {
                    let v = m.entry(p.value).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            }
            m
        });
        index.get(&port).into_iter().flatten().map(|&i| &self.flows[i])
    }
    /// The site's flows compiled to grants: the one source of every allow-list.
    pub fn flow_plan(&self) -> &flows::Plan {
        self.derived.flow_plan.get_or_init(|| flows::Plan::compile(self))
    }
    /// A host by id.
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[id.0]
    }
    /// A service by id.
    pub fn service(&self, id: ServiceId) -> &Service {
        &self.services[id.0]
    }
    /// Whether the site delivers its secrets (it declares `[secrets]` or holds
    /// ciphertexts); otherwise secrets are names the operator provisions by hand.
    pub fn delivers_secrets(&self) -> bool {
        self.secrets.loc.is_some() || !self.secrets.files.is_empty()
    }

    /// Whether a service runs on Swarm: a container whose hosts are all Swarm members
    /// (a mix is an error of the containers family).
    pub fn on_swarm(&self, id: ServiceId) -> bool {
        let s = self.service(id);
        s.kind.value.info().container
            && s.image.is_some()
            && !s.hosts.is_empty()
            && s.hosts.iter().all(|h| self.host(h.value).in_swarm())
    }

    /// Who needs each secret, by name: the services that list it and the Linux hosts
    /// they run on (each service's copy is its own file on each of its hosts; a Swarm
    /// service's containers read theirs from Swarm's store, so its hosts hold none: the
    /// manager's copy is implied by the containers family), and what
    /// the families' files imply ([`Secrets::implied`]).
    pub fn secret_needs(&self) -> std::collections::BTreeMap<&str, SecretNeed<'_>> {
        let mut out: std::collections::BTreeMap<&str, SecretNeed> = Default::default();
        for (i, s) in self.services.iter().enumerate() {
            for x in &s.secrets {
                let need = out.entry(x.value.as_str()).or_insert_with(|| SecretNeed {
                    first: &x.loc,
                    services: Vec::new(),
                    hosts: Default::default(),
                    implied: Vec::new(),
                });
                need.services.push(ServiceId(i));
                if self.on_swarm(ServiceId(i)) {
                    continue;
                }
                need.hosts.extend(s.hosts.iter().map(|h| h.value).filter(|h| self.host(*h).kind.value.is_linux()));
            }
        }
        for x in &self.secrets.implied {
            let need = out.entry(x.name.as_str()).or_insert_with(|| SecretNeed {
                first: &x.loc,
                services: Vec::new(),
                hosts: Default::default(),
                implied: Vec::new(),
            });
            need.hosts.insert(x.host);
            need.implied.push((x.host, x.service));
        }
        out
    }

    /// The recipients a secret must be encrypted to: the host keys of `need` (hosts
    /// without one are reported by the checks) and the recovery keys.
    pub fn secret_recipients(&self, need: &SecretNeed) -> Vec<crate::secrets::Recipient> {
        let mut r: Vec<_> = need
            .hosts
            .iter()
            .filter_map(|h| self.host(*h).ssh_host_key.as_ref().map(|k| k.value.clone()))
            .chain(self.secrets.recovery.iter().map(|k| k.value.clone()))
            .collect();
        r.sort();
        r.dedup();
        r
    }

    /// A docker network by id.
    pub fn network(&self, id: NetId) -> &DockerNetwork {
        &self.docker_networks[id.0]
    }

    /// Zones a host has an interface in, sorted and unique.
    pub fn host_zones(&self, h: HostId) -> Vec<ZoneId> {
        let mut z: Vec<ZoneId> = self.host(h).interfaces.iter().map(|i| i.zone.value).collect();
        z.sort();
        z.dedup();
        z
    }

    /// Zones a service runs in (the zones of its hosts), sorted and unique.
    pub fn service_zones(&self, s: ServiceId) -> Vec<ZoneId> {
        let mut z: Vec<ZoneId> = self.service(s).hosts.iter().flat_map(|h| self.host_zones(h.value)).collect();
        z.sort();
        z.dedup();
        z
    }

    /// Services that run on a host, sorted by name.
    pub fn services_on(&self, h: HostId) -> Vec<ServiceId> {
        let by_host = self.derived.services_by_host.get_or_init(|| {
            let mut v: Vec<Vec<ServiceId>> = vec![Vec::new(); self.hosts.len()];
            for (i, s) in self.services.iter().enumerate() {
                for x in &s.hosts {
                    let on = &mut v[x.value.0];
                    if on.last() != Some(&ServiceId(i)) {
                        on.push(ServiceId(i));
                    }
                }
            }
            v
        });
        by_host.get(h.0).cloned().unwrap_or_default()
    }

    /// The name of an endpoint, as written in the site (`service:postgres`).
    pub fn endpoint_name(&self, e: &Endpoint) -> String {
        match e {
            Endpoint::Service(s) => format!("service:{}", self.service(*s).name),
            Endpoint::Host(h) => format!("host:{}", self.host(*h).name),
            Endpoint::Zone(z) => format!("zone:{}", self.zone(*z).name),
            Endpoint::Internet => "internet".to_string(),
        }
    }

    /// A flow as its endpoints are written (`service:pgbouncer → service:postgres`).
    pub fn flow_name(&self, f: &Flow) -> String {
        format!("{} → {}", self.endpoint_name(&f.from.value), self.endpoint_name(&f.to.value))
    }

    /// The zones of each machine behind an endpoint (one set per host of a service; a
    /// zone is its own set; `None` stands for the internet). Traffic between two machines
    /// that share a zone stays on that VLAN and crosses no zone boundary.
    pub fn endpoint_zone_sets(&self, e: &Endpoint) -> Vec<Vec<Option<ZoneId>>> {
        let of_host = |h: HostId| self.host_zones(h).into_iter().map(Some).collect::<Vec<_>>();
        match e {
            Endpoint::Service(s) => self.service(*s).hosts.iter().map(|h| of_host(h.value)).collect(),
            Endpoint::Host(h) => vec![of_host(*h)],
            Endpoint::Zone(z) => vec![vec![Some(*z)]],
            Endpoint::Internet => vec![vec![None]],
        }
    }
}

/// `[site]`.
#[derive(Debug, Default)]
pub struct SiteSettings {
    /// Site identifier.
    pub name: String,
    /// Internal DNS domain.
    pub domain: String,
    /// Public DNS domain.
    pub public_domain: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Where `[site]` is defined.
    pub loc: Option<Loc>,
}

/// Who needs a secret (see [`Site::secret_needs`]).
#[derive(Debug, Clone)]
pub struct SecretNeed<'a> {
    /// The first place a service lists it.
    pub first: &'a Loc,
    /// The services that list it, in name order.
    pub services: Vec<ServiceId>,
    /// The Linux hosts those services run on.
    pub hosts: std::collections::BTreeSet<HostId>,
    /// The (host, service) pairs a family's files imply, beyond the services listing it.
    pub implied: Vec<(HostId, ServiceId)>,
}

impl SecretNeed<'_> {
    /// The services whose copy host `h` holds: those that list the secret and run there
    /// (not on Swarm), and those a family's files imply there; sorted.
    pub fn services_on(&self, site: &Site, h: HostId) -> Vec<ServiceId> {
        let mut v: Vec<ServiceId> = self
            .services
            .iter()
            .copied()
            .filter(|s| !site.on_swarm(*s) && site.service(*s).hosts.iter().any(|x| x.value == h))
            .chain(self.implied.iter().filter(|(x, _)| *x == h).map(|(_, s)| *s))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every service whose directory holds it: those that list it and those a family's
    /// files imply, sorted.
    pub fn all_services(&self) -> Vec<ServiceId> {
        let mut v: Vec<ServiceId> = self.services.iter().copied().chain(self.implied.iter().map(|(_, s)| *s)).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// `[secrets]` and what `site/secrets/` holds.
#[derive(Debug, Default)]
pub struct Secrets {
    /// Where `[secrets]` is written; `None` when the site does not use secrets delivery
    /// (secrets are then names the operator provisions by hand, and nothing is checked).
    pub loc: Option<Loc>,
    /// Recovery recipients.
    pub recovery: Vec<At<crate::secrets::Recipient>>,
    /// Whether a recovery key written is not usable (then which recipients a
    /// ciphertext should have is unknown: that error alone is reported).
    pub recovery_invalid: bool,
    /// Every file under `site/secrets/`, sorted by path.
    pub files: Vec<CipherFile>,
    /// Secrets a family's generated files read on a host without a service listing
    /// them there (the backup jobs' keys, which a container must not see), set once the
    /// families are resolved.
    pub implied: Vec<ImpliedSecret>,
}

/// A secret a family's files read on a host, under a service's directory, that the
/// service does not list.
#[derive(Debug, Clone)]
pub struct ImpliedSecret {
    /// The secret's name.
    pub name: String,
    /// The host that reads it.
    pub host: HostId,
    /// The service whose directory holds it.
    pub service: ServiceId,
    /// What implies it (a backup policy, a Swarm service's secret).
    pub loc: Loc,
}

/// A file under `site/secrets/`.
#[derive(Debug, Clone)]
pub struct CipherFile {
    /// Path relative to `site/secrets/` (`db_password.age`).
    pub rel: String,
    /// The secret's name (the file stem), when the path is `<name>.age`.
    pub name: Option<String>,
    /// The file, for diagnostics (its registered text is the age header only).
    pub loc: Loc,
    /// The ciphertext.
    pub bytes: std::sync::Arc<[u8]>,
    /// The parsed header; `None` when the file is not an age file.
    pub header: Option<crate::secrets::Header>,
}

impl Secrets {
    /// The ciphertext of secret `name`.
    pub fn file(&self, name: &str) -> Option<&CipherFile> {
        self.files.iter().find(|f| f.name.as_deref() == Some(name))
    }

    /// A short version of secret `name`: the first 12 hex digits of its ciphertext's
    /// SHA-256. It changes whenever the secret is rotated (or re-encrypted) and says
    /// nothing of the value, so a file that must change with the secret can carry it.
    pub fn version(&self, name: &str) -> Option<String> {
        self.file(name).map(|f| crate::artifact::sha256_hex(&f.bytes)[..12].to_string())
    }
}

/// `[recovery]`.
#[derive(Debug)]
pub struct Recovery {
    /// Recovery time objective.
    pub rto: At<Duration>,
    /// Recovery point objective.
    pub rpo: At<Duration>,
}

impl Default for Recovery {
    fn default() -> Self {
        let nowhere = Loc::new(0, 0..0);
        Recovery {
            rto: At { value: Duration(4 * 3600), loc: nowhere.clone() },
            rpo: At { value: Duration(3600), loc: nowhere },
        }
    }
}

/// `[defaults]` after merging the site's values over the built-in ones.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Where `[defaults]` is written; `None` when every value is built in.
    pub loc: Option<Loc>,
    /// Container restart policy.
    pub restart: String,
    /// Container pids limit.
    pub pids_limit: u32,
    /// Size of each tmpfs mount.
    pub tmpfs_size: Size,
    /// Health-check interval.
    pub health_interval: Duration,
    /// Health-check timeout.
    pub health_timeout: Duration,
    /// Health-check retries.
    pub health_retries: u32,
    /// Health-check start period.
    pub health_start_period: Duration,
    /// Resources of services that declare none.
    pub resources: Resources,
    /// Backup retention.
    pub backup_retention: Duration,
}

impl Default for Defaults {
    /// The built-in defaults, documented in README.md.
    fn default() -> Self {
        Defaults {
            restart: "unless-stopped".into(),
            pids_limit: 100,
            tmpfs_size: Size(64 << 20),
            health_interval: Duration(30),
            health_timeout: Duration(5),
            health_retries: 3,
            health_start_period: Duration(30),
            resources: Resources {
                cpus: 0.5,
                memory: Size(256 << 20),
                reserve_cpus: 0.1,
                reserve_memory: Size(64 << 20),
                pids: 100,
            },
            backup_retention: Duration(30 * 86400),
            loc: None,
        }
    }
}

/// A VLAN / security zone.
#[derive(Debug)]
pub struct Zone {
    /// Name.
    pub name: String,
    /// Where it is defined.
    pub loc: Loc,
    /// VLAN id (`None` only when the site has an error there).
    pub vlan: Option<At<u16>>,
    /// Network (`None` only when the site has an error there).
    pub cidr: Option<At<IpNet>>,
    /// Gateway address.
    pub gateway: Option<At<IpAddr>>,
    /// Description.
    pub description: Option<String>,
}

/// Docker network driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetDriver {
    /// Single-host bridge.
    Bridge,
    /// Swarm overlay.
    Overlay,
}

/// A docker network.
#[derive(Debug)]
pub struct DockerNetwork {
    /// Name.
    pub name: String,
    /// Where it is defined.
    pub loc: Loc,
    /// Subnet (`None` only when the site has an error there).
    pub cidr: Option<At<IpNet>>,
    /// Gateway.
    pub gateway: Option<At<IpAddr>>,
    /// No outside route.
    pub internal: bool,
    /// Driver.
    pub driver: NetDriver,
    /// Encrypted overlay.
    pub encrypted: bool,
    /// Description.
    pub description: Option<String>,
}

/// A machine.
#[derive(Debug)]
pub struct Host {
    /// Name.
    pub name: String,
    /// Where it is defined.
    pub loc: Loc,
    /// Hypervisor, VM, firewall or physical.
    pub kind: At<HostKind>,
    /// The hypervisor of a VM.
    pub on: Option<At<HostId>>,
    /// Operating system.
    pub os: Option<String>,
    /// Roles.
    pub roles: Vec<At<Role>>,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// Sizing.
    pub resources: Option<HostResources>,
    /// Description.
    pub description: Option<String>,
    /// `interfaces` was written (even if an entry failed to resolve).
    pub interfaces_declared: bool,
    /// SSH host public key (`ssh-ed25519 <base64>`), the recipient of its secrets.
    pub ssh_host_key: Option<At<crate::secrets::Recipient>>,
    /// Whether `ssh_host_key` is written (a bad one is reported once, as a bad value).
    pub ssh_host_key_written: bool,
}

impl Host {
    /// The first interface's address, used as the host's main address.
    pub fn primary_address(&self) -> Option<IpAddr> {
        self.interfaces.first().map(|i| i.address.value)
    }
    /// Whether the host has a role.
    pub fn has_role(&self, r: Role) -> bool {
        self.roles.iter().any(|x| x.value == r)
    }
    /// Whether the host is a Swarm member (manager or worker).
    pub fn in_swarm(&self) -> bool {
        self.has_role(Role::SwarmManager) || self.has_role(Role::SwarmWorker)
    }
}

/// A host's network interface.
#[derive(Debug)]
pub struct Interface {
    /// Zone.
    pub zone: At<ZoneId>,
    /// Address.
    pub address: At<IpAddr>,
    /// OS interface name.
    pub name: Option<At<String>>,
}

/// Sizing of a machine.
#[derive(Debug, Clone)]
pub struct HostResources {
    /// Cores.
    pub cpus: Option<u32>,
    /// Memory.
    pub memory: Option<Size>,
    /// Disk.
    pub disk: Option<Size>,
}

/// A named port of a service.
#[derive(Debug, Clone)]
pub struct Port {
    /// Name (`http`, `postgres`, …).
    pub name: String,
    /// Protocol and number.
    pub spec: PortSpec,
    /// Where it is declared; `None` when it comes from the kind's defaults.
    pub loc: Option<Loc>,
}

/// How a service is checked for health.
#[derive(Debug, Clone)]
pub enum HealthCheck {
    /// HTTP GET on a path of a named port.
    Http {
        /// Path.
        path: String,
        /// Port name.
        port: String,
        /// Expected status.
        status: u16,
    },
    /// TCP connect to a named port.
    Tcp {
        /// Port name.
        port: String,
    },
    /// A command (argv) run in the container.
    Exec(Vec<String>),
}

/// A health check with its timing.
#[derive(Debug, Clone)]
pub struct Health {
    /// What to check.
    pub check: HealthCheck,
    /// Interval.
    pub interval: Duration,
    /// Timeout.
    pub timeout: Duration,
    /// Retries.
    pub retries: u32,
    /// Start period.
    pub start_period: Duration,
    /// Where declared; `None` when derived from the kind.
    pub loc: Option<Loc>,
}

/// Limits and reservations.
#[derive(Debug, Clone)]
pub struct Resources {
    /// CPU limit.
    pub cpus: f64,
    /// Memory limit.
    pub memory: Size,
    /// CPU reservation.
    pub reserve_cpus: f64,
    /// Memory reservation.
    pub reserve_memory: Size,
    /// Pids limit.
    pub pids: u32,
}

/// A public exposure: where it is published. How the edge treats it (WAF, TLS
/// certificate, rate limit, body size) is the edge family's (`families::edge`).
#[derive(Debug, Clone)]
pub struct Expose {
    /// Position in the service's `expose` array (families key their own data by it).
    pub index: usize,
    /// Public hostname.
    pub hostname: At<String>,
    /// Path prefix.
    pub path: At<String>,
    /// Port name.
    pub port: At<String>,
    /// WebSocket upgrades.
    pub websocket: bool,
    /// Where declared.
    pub loc: Loc,
}

/// A named volume mounted into a container.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// Mount point.
    pub target: String,
    /// Where declared.
    pub loc: Loc,
}

/// A relaxation of the hardening defaults, with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExceptionKind {
    /// `cap_add` is not empty.
    CapAdd,
    /// `read_only = false`.
    ReadOnly,
    /// The container runs as root.
    RootUser,
    /// No health check.
    Health,
}

impl ExceptionKind {
    /// All kinds with their key names.
    pub const ALL: &[(&str, ExceptionKind)] = &[
        ("cap_add", ExceptionKind::CapAdd),
        ("read_only", ExceptionKind::ReadOnly),
        ("root_user", ExceptionKind::RootUser),
        ("health", ExceptionKind::Health),
    ];
    /// The key name.
    pub fn key(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// A written exception.
#[derive(Debug, Clone)]
pub struct Exception {
    /// Which default it relaxes.
    pub kind: ExceptionKind,
    /// Why.
    pub reason: At<String>,
}

/// A service.
#[derive(Debug)]
pub struct Service {
    /// Name.
    pub name: String,
    /// Where it is defined.
    pub loc: Loc,
    /// Kind.
    pub kind: At<ServiceKind>,
    /// Container image.
    pub image: Option<At<Image>>,
    /// Hosts it runs on, in declared order.
    pub hosts: Vec<At<HostId>>,
    /// Swarm replicas.
    pub replicas: u32,
    /// Version of a built-in kind.
    pub version: Option<String>,
    /// Named ports (declared, or the kind's defaults).
    pub ports: Vec<Port>,
    /// Docker network attachments, with the static address (`None`: the driver assigns
    /// one, written `"auto"`).
    pub networks: Vec<(NetId, At<Option<IpAddr>>)>,
    /// Container user.
    pub user: Option<At<String>>,
    /// Health check.
    pub health: Option<Health>,
    /// Resources (declared or `[defaults]`).
    pub resources: Resources,
    /// Secret names.
    pub secrets: Vec<At<String>>,
    /// Environment.
    pub env: Vec<(At<String>, At<String>)>,
    /// Volumes.
    pub volumes: Vec<Volume>,
    /// tmpfs mounts.
    pub tmpfs: Vec<At<String>>,
    /// Public exposures.
    pub expose: Vec<Expose>,
    /// Dependencies.
    pub depends_on: Vec<At<ServiceId>>,
    /// Added capabilities.
    pub cap_add: Vec<At<String>>,
    /// Read-only root.
    pub read_only: At<bool>,
    /// Holds data that must be backed up.
    pub stateful: bool,
    /// Written exceptions.
    pub exceptions: Vec<Exception>,
    /// Description.
    pub description: Option<String>,
    /// What the site wrote, where a value may have failed to resolve: checks that would
    /// only repeat an error already reported look here first.
    pub declared: Declared,
}

/// Which optional parts of an entity the site wrote (even if they failed to resolve).
#[derive(Debug, Clone, Copy, Default)]
pub struct Declared {
    /// The kind resolved (an unknown kind skips kind-specific checks).
    pub kind_known: bool,
    /// `health` was written.
    pub health: bool,
    /// `hosts` was not empty.
    pub hosts: bool,
}

impl Service {
    /// A named port.
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }
    /// The exception of a kind, if written.
    pub fn exception(&self, k: ExceptionKind) -> Option<&Exception> {
        self.exceptions.iter().find(|e| e.kind == k)
    }
}

/// One end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// All hosts of a service.
    Service(ServiceId),
    /// A host.
    Host(HostId),
    /// A whole zone.
    Zone(ZoneId),
    /// Anything outside the site.
    Internet,
}

/// Allowed traffic.
#[derive(Debug)]
pub struct Flow {
    /// Source.
    pub from: At<Endpoint>,
    /// Destination.
    pub to: At<Endpoint>,
    /// Ports.
    pub ports: Vec<At<PortSpec>>,
    /// Reason.
    pub why: String,
    /// Where declared.
    pub loc: Loc,
}

/// A forbidden zone pair; `None` is the internet.
#[derive(Debug)]
pub struct Guardrail {
    /// Source zone.
    pub from: Option<ZoneId>,
    /// Destination zone.
    pub to: Option<ZoneId>,
    /// Reason.
    pub why: String,
    /// Where declared.
    pub loc: Loc,
}

/// How a backup is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMethod {
    /// `pg_basebackup`.
    PgBasebackup,
    /// `pg_dump`.
    PgDump,
    /// Redis RDB snapshot copy.
    RedisRdb,
    /// restic of the service's volumes.
    Restic,
    /// ZFS snapshot and send.
    ZfsSnapshot,
    /// `mc mirror` of buckets.
    MinioMirror,
}

impl BackupMethod {
    /// All methods with their names.
    pub const ALL: &[(&str, BackupMethod)] = &[
        ("pg-basebackup", BackupMethod::PgBasebackup),
        ("pg-dump", BackupMethod::PgDump),
        ("redis-rdb", BackupMethod::RedisRdb),
        ("restic", BackupMethod::Restic),
        ("zfs-snapshot", BackupMethod::ZfsSnapshot),
        ("minio-mirror", BackupMethod::MinioMirror),
    ];
    /// The name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }
    /// Whether the method can back up a service of `kind`: the database-native methods
    /// need their database, file-level ones fit anything.
    pub fn fits(self, kind: ServiceKind) -> bool {
        match self {
            BackupMethod::PgBasebackup | BackupMethod::PgDump => kind == ServiceKind::Postgres,
            BackupMethod::RedisRdb => kind == ServiceKind::Redis,
            BackupMethod::MinioMirror => kind == ServiceKind::Minio,
            BackupMethod::Restic | BackupMethod::ZfsSnapshot => true,
        }
    }
}

/// A backup policy.
#[derive(Debug)]
pub struct Backup {
    /// Name.
    pub name: String,
    /// Where defined.
    pub loc: Loc,
    /// Service backed up.
    pub service: At<ServiceId>,
    /// Method.
    pub method: BackupMethod,
    /// Full-backup interval.
    pub every: At<Duration>,
    /// Continuous archiving.
    pub continuous: bool,
    /// Destination.
    pub target: At<Endpoint>,
    /// Retention.
    pub retention: Duration,
    /// Restore test.
    pub verify_restore: bool,
    /// How long a restore takes, as declared (`None`: [`DEFAULT_RESTORE_TIME`]).
    pub restore_time: Option<At<Duration>>,
}

/// An architecture decision record, `site/adr/<name>.md`.
#[derive(Debug, Clone)]
pub struct Adr {
    /// Its repository-relative file name (`site/adr/0001-flows.md`).
    pub file: String,
    /// The title (its first line, a `# ` heading).
    pub title: String,
    /// The Markdown after the title.
    pub body: String,
    /// The file.
    pub loc: Loc,
}

/// How long a restore takes when a policy declares no `restore_time`.
pub const DEFAULT_RESTORE_TIME: Duration = Duration(3600);

/// How often a continuously archiving PostgreSQL closes and ships a WAL segment even when
/// little is written (`archive_timeout`): the window a continuous policy can lose.
pub const ARCHIVE_TIMEOUT: Duration = Duration(60);

impl Backup {
    /// The most data this policy can lose when its service's host dies: the WAL not yet
    /// shipped for continuous archiving, else everything since the last run. The RPO check,
    /// the backup units and the recovery plan all read this one figure.
    pub fn worst_case_loss(&self) -> Duration {
        if self.continuous { ARCHIVE_TIMEOUT } else { self.every.value }
    }

    /// How long a restore from this policy takes: its `restore_time`, else
    /// [`DEFAULT_RESTORE_TIME`]. The RTO check and the recovery plan read this one figure.
    pub fn restore_estimate(&self) -> Duration {
        self.restore_time.as_ref().map_or(DEFAULT_RESTORE_TIME, |r| r.value)
    }
}
