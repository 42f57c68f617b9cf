//! The TOML schema of a site file, field for field.
//!
//! These types mirror what an operator writes and nothing more: every scalar is kept as
//! a [`Spanned`] raw value so that [`crate::resolve`] can type it (address, CIDR, port,
//! duration, …) and point at the exact bytes when it is wrong. Keeping the typing out of
//! serde lets one run report *every* bad value in a file instead of stopping at the
//! first one. Unknown keys are found by [`crate::load`] against these tables (each
//! struct is declared with [`crate::keys!`], which records its keys, docs and shapes).
//!
//! Only core entities live here. Keys that one artifact family needs (the edge's WAF
//! and certificates, keepalived's VIP, the agent's repository, …) are declared in that
//! family's folder and claimed through its [`super::keys::KeySet`].
//!
//! Every site file may hold any of the top-level tables; names are the keys of tables,
//! so the same entity defined in two files is a duplicate-name error, not a merge.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A string with its byte span in the source file.
pub type Str = Spanned<String>;
/// A map from entity name (with the span of the key) to its definition.
pub type Named<T> = IndexMap<Str, T>;

/// An integer or a string, for values such as ports (`4000` or `"udp/53"`) and versions.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IntOrStr {
    /// A TOML integer.
    Int(i64),
    /// A TOML string.
    Str(String),
}

crate::keys! {
    /// One file under `site/`.
    #[derive(Debug, Default, Deserialize)]
    pub struct RawFile {
        /// Required (exactly one file defines it). Site-wide settings.
        pub site: Option<Spanned<RawSiteSettings>>,
        /// Required (exactly one file defines it). Recovery targets.
        pub recovery: Option<Spanned<RawRecovery>>,
        /// The one place where defaults live.
        pub defaults: Option<Spanned<RawDefaults>>,
        /// VLANs / security zones.
        #[serde(default)]
        pub zones: Named<RawZone>,
        /// Docker networks (bridge or overlay).
        #[serde(default)]
        pub docker_networks: Named<RawDockerNetwork>,
        /// Machines: hypervisors, VMs, firewalls, physical hosts.
        #[serde(default)]
        pub hosts: Named<RawHost>,
        /// Services: containers and built-in kinds.
        #[serde(default)]
        pub services: Named<RawService>,
        /// Allowed traffic: anything no flow lists is denied.
        #[serde(default)]
        pub flows: Vec<Spanned<RawFlow>>,
        /// Forbidden zone pairs that no flow may open.
        #[serde(default)]
        pub guardrails: Vec<Spanned<RawGuardrail>>,
        /// Backup policies.
        #[serde(default)]
        pub backups: Named<RawBackup>,
        /// Secrets delivery: with this table, every secret a service names is an age file `site/secrets/<name>.age`, checked and delivered by the agent.
        pub secrets: Option<Spanned<RawSecrets>>,
    }
}

impl RawFile {
    /// Takes in another piece of the same file (see `load::pieces`).
    pub fn absorb(&mut self, other: RawFile) {
        self.site = self.site.take().or(other.site);
        self.recovery = self.recovery.take().or(other.recovery);
        self.defaults = self.defaults.take().or(other.defaults);
        self.zones.extend(other.zones);
        self.docker_networks.extend(other.docker_networks);
        self.hosts.extend(other.hosts);
        self.services.extend(other.services);
        self.flows.extend(other.flows);
        self.guardrails.extend(other.guardrails);
        self.backups.extend(other.backups);
        self.secrets = self.secrets.take().or(other.secrets);
    }
}

crate::keys! {
    /// `[site]`
    #[derive(Debug, Deserialize)]
    pub struct RawSiteSettings {
        /// Required. Short identifier of the site.
        pub name: Option<Str>,
        /// Required. Internal DNS domain (e.g. `medianest.lan`).
        pub domain: Option<Str>,
        /// Public DNS domain for exposed services.
        pub public_domain: Option<Str>,
        /// One-line description for the docs.
        pub description: Option<Str>,
    }
}

crate::keys! {
    /// `[recovery]`
    #[derive(Debug, Deserialize)]
    pub struct RawRecovery {
        /// Required. Recovery time objective (e.g. `"4h"`).
        pub rto: Option<Str>,
        /// Required. Recovery point objective (e.g. `"1h"`); every backup runs at least this often unless it archives continuously.
        pub rpo: Option<Str>,
    }
}

crate::keys! {
    /// `[secrets]`
    #[derive(Debug, Deserialize)]
    pub struct RawSecrets {
        /// Operators' recovery keys (`age1…` or `ssh-ed25519 AAAA…`): every secret is also encrypted to them, so `medianest secrets edit` and `rekey` work from an operator's machine.
        #[serde(default)]
        pub recovery: Vec<Str>,
    }
}

crate::keys! {
    /// `[defaults]`: every default that the model applies, in one place.
    #[derive(Debug, Default, Deserialize)]
    pub struct RawDefaults {
        /// Container hardening defaults.
        pub container: Option<Spanned<RawContainerDefaults>>,
        /// Health-check timing defaults.
        pub health: Option<Spanned<RawHealthTiming>>,
        /// Resource limits for services that declare none (default 0.5 CPUs / 256m, reserved 0.1 / 64m, 100 pids).
        pub resources: Option<Spanned<RawResources>>,
        /// Backup retention when a policy declares none (default `"30d"`).
        pub backup_retention: Option<Str>,
    }
}

crate::keys! {
    /// `[defaults.container]`
    #[derive(Debug, Deserialize)]
    pub struct RawContainerDefaults {
        /// Restart policy: `unless-stopped`, `on-failure`, `always` or `no` (default `unless-stopped`).
        pub restart: Option<Str>,
        /// Default pids limit (default `100`).
        pub pids_limit: Option<Spanned<i64>>,
        /// Default size of each tmpfs mount (default `"64m"`).
        pub tmpfs_size: Option<Str>,
    }
}

crate::keys! {
    /// Health-check timing, used in `[defaults.health]` and per service.
    #[derive(Debug, Deserialize)]
    pub struct RawHealthTiming {
        /// Time between checks (default `"30s"`).
        pub interval: Option<Str>,
        /// Time a check may take (default `"5s"`).
        pub timeout: Option<Str>,
        /// Failures before unhealthy (default `3`).
        pub retries: Option<Spanned<i64>>,
        /// Grace period after start (default `"30s"`).
        pub start_period: Option<Str>,
    }
}

crate::keys! {
    /// `[zones.<name>]`
    #[derive(Debug, Deserialize)]
    pub struct RawZone {
        /// Required. 802.1Q VLAN id (1–4094).
        pub vlan: Option<Spanned<i64>>,
        /// Required. Network of the zone, e.g. `"10.0.3.0/24"`.
        pub cidr: Option<Str>,
        /// Gateway address (inside `cidr`).
        pub gateway: Option<Str>,
        /// What lives here.
        pub description: Option<Str>,
    }
}

crate::keys! {
    /// `[docker_networks.<name>]`
    #[derive(Debug, Deserialize)]
    pub struct RawDockerNetwork {
        /// Required. Subnet, e.g. `"172.25.0.0/24"`.
        pub cidr: Option<Str>,
        /// Gateway address inside the subnet.
        pub gateway: Option<Str>,
        /// No route to the outside world (default `false`).
        pub internal: Option<Spanned<bool>>,
        /// `bridge` or `overlay` (default `bridge`).
        pub driver: Option<Str>,
        /// Encrypt overlay traffic (default `false`).
        pub encrypted: Option<Spanned<bool>>,
        /// What it is for.
        pub description: Option<Str>,
    }
}

crate::keys! {
    /// `[hosts.<name>]`
    #[derive(Debug, Deserialize)]
    pub struct RawHost {
        /// Required. `hypervisor`, `vm`, `firewall` or `physical`.
        pub kind: Option<Str>,
        /// Required for a VM. The hypervisor it runs on.
        pub on: Option<Str>,
        /// Operating system, e.g. `debian-12`.
        pub os: Option<Str>,
        /// Roles from a fixed vocabulary (`docker`, `swarm-manager`, …).
        #[serde(default)]
        pub roles: Vec<Str>,
        /// Required. Network interfaces; the first address is the host's main address.
        #[serde(default)]
        pub interfaces: Vec<Spanned<RawInterface>>,
        /// Sizing of a VM or machine.
        pub resources: Option<Spanned<RawHostResources>>,
        /// What it does.
        pub description: Option<Str>,
        /// The host's SSH host public key (`ssh-ed25519 AAAA…`, from `/etc/ssh/ssh_host_ed25519_key.pub`): the secrets its services need are encrypted to it.
        pub ssh_host_key: Option<Str>,
    }
}

crate::keys! {
    /// One entry of `hosts.<name>.interfaces`.
    #[derive(Debug, Deserialize)]
    pub struct RawInterface {
        /// Required. Zone the interface sits in.
        pub zone: Option<Str>,
        /// Required. Address in the zone's CIDR.
        pub address: Option<Str>,
        /// OS name of the interface (e.g. `eth0`, `vtnet1`).
        pub name: Option<Str>,
    }
}

crate::keys! {
    /// `hosts.<name>.resources`
    #[derive(Debug, Deserialize)]
    pub struct RawHostResources {
        /// Virtual or physical CPU cores.
        pub cpus: Option<Spanned<i64>>,
        /// Memory, e.g. `"8g"`.
        pub memory: Option<Str>,
        /// Root disk, e.g. `"50g"`.
        pub disk: Option<Str>,
    }
}

crate::keys! {
    /// `[services.<name>]`
    #[derive(Debug, Deserialize)]
    pub struct RawService {
        /// `container` or a built-in kind (`haproxy`, `nginx`, `postgres`, …) (default `container`).
        pub kind: Option<Str>,
        /// Required for containers. Container image with a pinned tag or digest.
        pub image: Option<Str>,
        /// Required. Hosts the service runs on.
        #[serde(default)]
        pub hosts: Vec<Str>,
        /// Swarm replica count for container services (default `1`).
        pub replicas: Option<Spanned<i64>>,
        /// Version of a built-in kind (e.g. postgres `16`).
        pub version: Option<Spanned<IntOrStr>>,
        /// Named ports: `{ http = 4000, dns = "udp/53" }` (default: the kind's ports).
        #[serde(default)]
        pub ports: Named<Spanned<IntOrStr>>,
        /// Docker network attachments: a static address on a bridge, `{ internal = "172.25.0.20" }`, or `"auto"` where the driver assigns one (overlays, whose addresses Swarm assigns): `{ front = "auto" }`.
        #[serde(default)]
        pub networks: Named<Str>,
        /// Required for containers. Container user `uid:gid` (root needs an exception).
        pub user: Option<Str>,
        /// Required for containers (or an exception). Health check (default for native kinds: TCP connect to the first TCP port).
        pub health: Option<Spanned<RawHealth>>,
        /// Limits and reservations (default `[defaults.resources]`).
        pub resources: Option<Spanned<RawResources>>,
        /// Secret names (never values).
        #[serde(default)]
        pub secrets: Vec<Str>,
        /// Non-secret environment variables.
        #[serde(default)]
        pub env: Named<Str>,
        /// Named volumes and their mount points: `{ uploads = "/app/uploads" }`.
        #[serde(default)]
        pub volumes: Named<Str>,
        /// Writable tmpfs mounts on a read-only root.
        #[serde(default)]
        pub tmpfs: Vec<Str>,
        /// Public exposure through the edge.
        #[serde(default)]
        pub expose: Vec<Spanned<RawExpose>>,
        /// Services that must be healthy first.
        #[serde(default)]
        pub depends_on: Vec<Str>,
        /// Capabilities added back after `cap_drop = ["ALL"]` (needs an exception).
        #[serde(default)]
        pub cap_add: Vec<Str>,
        /// Read-only root filesystem; `false` needs an exception (default `true`).
        pub read_only: Option<Spanned<bool>>,
        /// Whether the service holds data that must be backed up (default: the kind's, or `true` when it has volumes).
        pub stateful: Option<Spanned<bool>>,
        /// Written reasons for each relaxation of the hardening defaults.
        #[serde(default)]
        pub exceptions: Named<Str>,
        /// What it does.
        pub description: Option<Str>,
    }
}

crate::keys! {
    /// `services.<name>.health`
    #[derive(Debug, Deserialize)]
    pub struct RawHealth {
        /// HTTP path to GET, e.g. `"/api/health"`.
        pub http: Option<Str>,
        /// Named port to check (default: the service's first port).
        pub port: Option<Str>,
        /// Plain TCP connect check (`true`).
        pub tcp: Option<Spanned<bool>>,
        /// Command run inside the container (argv, no shell).
        pub exec: Option<Spanned<Vec<Str>>>,
        /// Expected HTTP status (default `200`).
        pub status: Option<Spanned<i64>>,
        /// Time between checks (default `[defaults.health]`).
        pub interval: Option<Str>,
        /// Time a check may take.
        pub timeout: Option<Str>,
        /// Failures before unhealthy.
        pub retries: Option<Spanned<i64>>,
        /// Grace period after start.
        pub start_period: Option<Str>,
    }
}

crate::keys! {
    /// Resource limits and reservations.
    #[derive(Debug, Deserialize)]
    pub struct RawResources {
        /// CPU limit.
        pub cpus: Option<Spanned<f64>>,
        /// Memory limit.
        pub memory: Option<Str>,
        /// CPU reservation.
        pub reserve_cpus: Option<Spanned<f64>>,
        /// Memory reservation.
        pub reserve_memory: Option<Str>,
        /// Max processes.
        pub pids: Option<Spanned<i64>>,
    }
}

crate::keys! {
    /// One entry of `services.<name>.expose`.
    #[derive(Debug, Deserialize)]
    pub struct RawExpose {
        /// Required. Public DNS name.
        pub hostname: Option<Str>,
        /// URL path prefix, matched by whole segments: `/api` matches `/api` and `/api/…`, never `/apiary` (default `/`).
        pub path: Option<Str>,
        /// Named port of the service (default: its first port).
        pub port: Option<Str>,
        /// Pass WebSocket upgrades (default `false`).
        pub websocket: Option<Spanned<bool>>,
    }
}

crate::keys! {
    /// One `[[flows]]` entry.
    #[derive(Debug, Deserialize)]
    pub struct RawFlow {
        /// Required. `service:<name>`, `host:<name>`, `zone:<name>` or `internet`.
        pub from: Option<Str>,
        /// Required. `service:<name>`, `host:<name>`, `zone:<name>` or `internet`.
        pub to: Option<Str>,
        /// Required. Ports: `"tcp/5432"`, `"udp/53"`, `5432` (tcp), or a named port of the target service.
        #[serde(default)]
        pub ports: Vec<Spanned<IntOrStr>>,
        /// Required. Why this traffic is needed.
        pub why: Option<Str>,
    }
}

crate::keys! {
    /// One `[[guardrails]]` entry.
    #[derive(Debug, Deserialize)]
    pub struct RawGuardrail {
        /// Required. The forbidden pair.
        pub deny: Option<Spanned<RawDenyPair>>,
        /// Required. Why it must never be allowed.
        pub why: Option<Str>,
    }
}

crate::keys! {
    /// `guardrails.deny`
    #[derive(Debug, Deserialize)]
    pub struct RawDenyPair {
        /// Required. `zone:<name>` or `internet`.
        pub from: Option<Str>,
        /// Required. `zone:<name>` or `internet`.
        pub to: Option<Str>,
    }
}

crate::keys! {
    /// `[backups.<name>]`
    #[derive(Debug, Deserialize)]
    pub struct RawBackup {
        /// Required. Service whose data is backed up.
        pub service: Option<Str>,
        /// Required. `pg-basebackup`, `pg-dump`, `redis-rdb`, `restic`, `zfs-snapshot` or `minio-mirror`.
        pub method: Option<Str>,
        /// Required. How often a full backup runs, e.g. `"24h"`.
        pub every: Option<Str>,
        /// Continuous archiving between full backups (PostgreSQL WAL) (default `false`).
        pub continuous: Option<Spanned<bool>>,
        /// Required. Where backups go: `service:<name>` or `host:<name>`.
        pub target: Option<Str>,
        /// How long backups are kept (default `[defaults] backup_retention`).
        pub retention: Option<Str>,
        /// Run a restore test after each backup (default `false`).
        pub verify_restore: Option<Spanned<bool>>,
        /// How long a restore from this policy takes, end to end, e.g. `"45m"`: the recovery plan's RTO estimate for its service, checked against `[recovery] rto` (default `"1h"`).
        pub restore_time: Option<Str>,
    }
}
