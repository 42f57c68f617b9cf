//! Family **postgres**: PostgreSQL with streaming replicas, on every host of a `postgres`
//! service, at Debian's paths for the service's version (15, 16 or 17; 15 when the
//! service names none, Debian 12's). Templates: `templates/postgres/`. Per host:
//!
//! - **`/etc/postgresql/<v>/main/postgresql.conf`** (0644 `postgres:postgres`, as
//!   `pg_createcluster` writes it) holds Debian's paths and every setting that needs a
//!   **restart**: `listen_addresses` (exactly the host's addresses that a flow reaches on
//!   the postgres port, found as the host firewall finds them, plus `localhost` for local
//!   tools), `port`, `max_connections` (this family's key), `shared_buffers`,
//!   `wal_level = replica`, `max_wal_senders`, `max_replication_slots`, `hot_standby`.
//!   It ends with `include_dir = 'conf.d'`, as Debian's does. Apply: restart
//!   `postgresql@<v>-main.service`.
//! - **`conf.d/medianest.conf`** (0644) holds what a **reload** applies:
//!   `effective_cache_size`, `work_mem`, `maintenance_work_mem`, `wal_keep_size`,
//!   `password_encryption = scram-sha-256`, `hot_standby_feedback`, and on a replica
//!   `primary_conninfo` and `primary_slot_name` (reloadable since PostgreSQL 13). The
//!   split is the point: the agent restarts the server only when a file holding a
//!   restart-only setting changed, and reloads it otherwise (a restart drops every
//!   client connection; a reload drops none).
//! - **`pg_hba.conf`** (0640, as Debian) from the flow plan only: Debian's `local` socket
//!   lines (`peer`) and its loopback lines (a host reaching itself needs no flow), then one
//!   `host … all all <source> scram-sha-256` line per source that a grant lets open the
//!   postgres port on this host ([`allowed_sources`]), and on the primary one
//!   `host replication replicator <address>/32 scram-sha-256` line per replica that a
//!   flow lets reach it. Nothing else. `host`, not `hostssl`: TLS needs a certificate and
//!   key on every database host, which nothing provisions yet; SCRAM never sends the
//!   password, but the data itself is not encrypted on the wire (the database zone's
//!   traffic stays inside its VLAN). Reload.
//! - On each **replica**, `/etc/medianest/postgres-replica-init` (0755): the
//!   one-time bootstrap, run by the operator. It stops the cluster, moves the old data
//!   directory aside, runs `pg_basebackup -X stream -C -S <slot>` from the primary (which
//!   creates the replica's slot there), writes `standby.signal` and starts the cluster.
//!   `standby.signal` is state of the data directory, never a managed file: the agent
//!   must not be able to turn a primary into a standby.
//!
//! Memory, from the service's `resources.memory` `M` (at least 128 MiB): `shared_buffers
//! = M/4`, `effective_cache_size = 3M/4`, `maintenance_work_mem = min(M/16, 1 GiB)`,
//! `work_mem = M / (4 × max_connections)` (at least 64 kB, PostgreSQL's minimum), each
//! rounded down to a kB. Replication: `max_wal_senders = replicas + 3` (a
//! `pg_basebackup -X stream` takes two, a WAL archiver or a second bootstrap one more),
//! `max_replication_slots = replicas + 2`, the same on every host of the service (a
//! standby needs at least its primary's values), `wal_keep_size = 1GB` on top of the
//! slots.
//!
//! Replication connects as the role [`REPLICATION_ROLE`] with the password of the
//! service's secret `replication_password`, read from a libpq password file,
//! [`PASSFILE`] under the version's directory (0600 `postgres`, written by the operator:
//! `<primary address>:<port>:*:replicator:<password>`), never from `generated/`. The
//! role itself is created once on the primary by the operator (`CREATE ROLE replicator
//! WITH REPLICATION LOGIN PASSWORD …`), as the databases and application roles are.
//!
//! **WAL archiving**, when a `continuous` `pg-basebackup` policy covers the service:
//! `archive_mode = on` (restart) in `postgresql.conf`, and in `conf.d/medianest.conf`
//! `archive_command` and `restore_command` through the backups family's pgBackRest
//! wrapper, and `archive_timeout` = [`ARCHIVE_TIMEOUT`](crate::model::ARCHIVE_TIMEOUT),
//! the policy's worst-case loss that the RPO check reads. Never `archive_mode` without
//! the policy: a failing `archive_command` fills `pg_wal` on the primary.
//!
//! **Automated failover**, when the service has `failover` ([`failover`], which has the
//! design and why): every host that may hold the floating address also listens on it,
//! admits it in pg_hba (a client on the host connecting to it) and takes replication
//! from every other host; every host's `primary_conninfo`, password file (one line per
//! address it connects to) and `/etc/medianest/postgres-replica-init` target the
//! address (inert on the configured primary until it is rebuilt as a replica); every
//! host gets [`failover::SCRIPT`] and the `ExecStartPre=` fence drop-in
//! `postgresql@<v>-main.service.d/medianest-fence.conf`.
//!
//! Not here yet: TLS (`hostssl`), as above.

pub mod failover;
pub mod keys;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part, allowed_sources};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::flows::Peer;
use crate::model::values::PortSpec;
use crate::model::{HostId, ServiceId, ServiceKind, Site};

/// The versions this family configures: Debian 12's, and PGDG's 16 and 17.
pub const VERSIONS: &[&str] = &["15", "16", "17"];
/// The version of a service that names none (Debian 12's `postgresql`).
pub use super::DEFAULT_POSTGRES_VERSION as DEFAULT_VERSION;
/// The role replicas connect as.
pub const REPLICATION_ROLE: &str = "replicator";
/// The replica's libpq password file, in `/etc/postgresql/<v>/main/`.
pub const PASSFILE: &str = "replication.pgpass";
/// The replica's password file rendered from the delivered `replication_password`
/// before every start (tmpfs), when the service lists that secret.
pub const RUN_PASSFILE: &str = "/run/medianest/postgres/replication.pgpass";
/// The script that renders it.
pub const RENDER_PASSFILE: &str = "/etc/medianest/postgres/render-passfile.sh";
/// Where the replica bootstrap script goes.
pub const REPLICA_INIT: &str = "/etc/medianest/postgres-replica-init";
/// The least memory a service may have (`shared_buffers` would be under 32 MB).
pub const MIN_MEMORY: u64 = 128 << 20;
/// PostgreSQL's least `work_mem`, in kB.
pub const MIN_WORK_MEM_KB: u64 = 64;
/// `wal_keep_size`: WAL kept for a replica that lost its slot.
pub const WAL_KEEP_SIZE: &str = "1GB";

/// The postgres family.
pub struct Postgres;

/// Context of `postgres/postgresql.conf.j2`: Debian's paths and the restart-only settings.
#[derive(Serialize)]
pub struct ServerContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// `primary` or `replica`.
    pub role: Src<String>,
    /// The major version (`16`).
    pub version: Src<String>,
    /// Addresses reached by a flow on the postgres port (`localhost` is added).
    pub listen_addresses: Vec<Src<String>>,
    /// The port.
    pub port: Src<u16>,
    /// `max_connections`.
    pub max_connections: Src<u32>,
    /// `shared_buffers` (M/4).
    pub shared_buffers: Src<String>,
    /// `max_wal_senders` (replicas + 3).
    pub max_wal_senders: Src<u32>,
    /// `max_replication_slots` (replicas + 2).
    pub max_replication_slots: Src<u32>,
    /// `archive_mode = on`: a policy archives the WAL continuously.
    pub archive: Option<Src<String>>,
}

/// Context of `postgres/medianest.conf.j2`: the settings a reload applies.
#[derive(Serialize)]
pub struct ReloadContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// `effective_cache_size` (3M/4).
    pub effective_cache_size: Src<String>,
    /// `work_mem` (M / (4 × max_connections)).
    pub work_mem: Src<String>,
    /// `maintenance_work_mem` (min(M/16, 1 GiB)).
    pub maintenance_work_mem: Src<String>,
    /// `wal_keep_size`.
    pub wal_keep_size: &'static str,
    /// What a replica follows.
    pub standby: Option<StandbyView>,
    /// Continuous WAL archiving through pgBackRest.
    pub archive: Option<ArchiveView>,
}

/// WAL archiving (the settings a reload applies).
#[derive(Serialize)]
pub struct ArchiveView {
    /// The backup policy.
    pub policy: Src<String>,
    /// `archive_command`.
    pub command: Src<String>,
    /// `restore_command` (a replica that fell behind its slot's WAL, a PITR restore).
    pub restore: Src<String>,
    /// `archive_timeout`, in seconds.
    pub timeout: Src<u64>,
}

/// A replica's upstream.
#[derive(Serialize)]
pub struct StandbyView {
    /// The primary host.
    pub primary: Src<String>,
    /// The primary's address this replica reaches.
    pub address: Src<String>,
    /// The primary's port.
    pub port: Src<u16>,
    /// The replication slot on the primary.
    pub slot: Src<String>,
    /// This replica's name (`application_name`).
    pub name: Src<String>,
    /// The password file.
    pub passfile: Src<String>,
    /// The replication role.
    pub role: &'static str,
    /// Whether a flow lets this replica reach the primary on the port.
    pub reached: bool,
    /// The version's configuration directory.
    pub etc: Src<String>,
    /// The data directory.
    pub data: Src<String>,
    /// The version.
    pub version: Src<String>,
    /// The delivered replication password, when the service lists `replication_password`:
    /// the password file is then rendered from it ([`RENDER_PASSFILE`]).
    pub delivered: Option<Src<String>>,
    /// With `failover`: the floating address the replica follows (`address` is it), so
    /// a promotion needs no configuration change.
    pub vip: Option<Src<String>>,
    /// With `failover`: whether this host is the configured primary (its standby
    /// settings are inert until it is rebuilt as a replica, after a failover).
    pub configured_primary: bool,
    /// With `failover`: the other hosts' addresses, also in the password file (the
    /// failover script asks them whether they are primary).
    pub peers: Vec<Src<String>>,
}

/// Context of `postgres/pg_hba.conf.j2`.
#[derive(Serialize)]
pub struct HbaContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The host's own addresses (a host reaching itself needs no flow).
    pub own: Vec<Src<String>>,
    /// Sources the flows let open the postgres port here.
    pub clients: Vec<Src<String>>,
    /// On the primary (with `failover`, on every host that may become it): each other
    /// host a flow lets reach it, for streaming replication.
    pub replicas: Vec<HbaReplica>,
    /// The failover floating address, when this host may hold it.
    pub vip: Option<Src<String>>,
    /// The replication role.
    pub role: &'static str,
}

/// One replication line.
#[derive(Serialize)]
pub struct HbaReplica {
    /// The replica host.
    pub host: Src<String>,
    /// The address it connects from (`/32` or `/128`).
    pub source: Src<String>,
}

/// Context of `postgres/setup.sh.j2` and `postgres/setup.service.j2`.
#[derive(Serialize)]
pub struct SetupContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The version.
    pub version: Src<String>,
    /// The port.
    pub port: Src<u16>,
    /// The login roles.
    pub roles: Vec<RoleView>,
    /// The replication role's password file, when the service has replicas.
    pub replication: Option<Src<String>>,
    /// The replication role.
    pub replication_role: &'static str,
}

/// One login role.
#[derive(Serialize)]
pub struct RoleView {
    /// Its name.
    pub name: Src<String>,
    /// Its password file.
    pub password: Src<String>,
    /// The databases it owns.
    pub owns: Vec<Src<String>>,
    /// Its connection limit (`-1`: none).
    pub connection_limit: Src<i64>,
}

/// Where the role and database setup goes.
pub const SETUP: &str = "/etc/medianest/postgres/setup.sh";
/// Its unit.
pub const SETUP_UNIT: &str = "medianest-postgres-setup.service";
/// The secret the replication role's password comes from.
pub const REPLICATION_SECRET: &str = "replication_password";

/// Context of `postgres/replica-init.sh`.
#[derive(Serialize)]
pub struct InitContext<'a> {
    /// The replica host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// Its upstream.
    pub standby: &'a StandbyView,
}

/// An address or network as `pg_hba.conf` writes it: always with a prefix length.
fn cidr(net: String) -> String {
    if net.contains('/') {
        net
    } else {
        let bits = if net.contains(':') { 128 } else { 32 };
        format!("{net}/{bits}")
    }
}

/// The configured version of a service: its `version`, or [`DEFAULT_VERSION`].
pub use super::postgres_version as version;

/// A size in kB as PostgreSQL reads it: `MB` when whole, else `kB`.
fn pg_size(kb: u64) -> String {
    if kb.is_multiple_of(1024) { format!("{}MB", kb / 1024) } else { format!("{kb}kB") }
}

/// The memory settings of a service, in kB: `(shared_buffers, effective_cache_size,
/// work_mem, maintenance_work_mem)` (formulas in the module doc).
pub fn memory_kb(memory: u64, max_connections: u32) -> (u64, u64, u64, u64) {
    let kb = memory / 1024;
    (kb / 4, kb * 3 / 4, kb / (4 * u64::from(max_connections.max(1))), (kb / 16).min(1 << 20))
}

/// A replication slot name for a replica host (`replica_db2`: lowercase, digits, `_`).
pub fn slot_name(host: &str) -> String {
    format!("replica_{}", host.replace('-', "_"))
}

/// The postgres port of a service, and where it is decided.
fn pg_port(site: &Site, id: ServiceId) -> Option<(PortSpec, &Loc)> {
    let svc = site.service(id);
    svc.port("postgres").or(svc.ports.first()).map(|p| (p.spec, p.loc.as_ref().unwrap_or(&svc.loc)))
}

/// The primary of a service: the named one, or its only host.
fn primary_of(site: &Site, id: ServiceId) -> Option<(HostId, Loc)> {
    let svc = site.service(id);
    match model(site).primary.get(&id) {
        Some(p) => Some((p.value, p.loc.clone())),
        None if svc.hosts.len() == 1 => Some((svc.hosts[0].value, svc.hosts[0].loc.clone())),
        None => None,
    }
}

/// The postgres services this family configures (a known kind, at least one host).
fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    super::configured(site, ServiceKind::Postgres)
}

/// Lowers one service.
fn lower_service(site: &Site, id: ServiceId, out: &mut Lowering) {
    let svc = site.service(id);
    let v = version(site, id);
    if !VERSIONS.contains(&v) || svc.resources.memory.0 < MIN_MEMORY {
        return;
    }
    let Some((primary, primary_loc)) = primary_of(site, id) else { return };
    let Some((port, port_loc)) = pg_port(site, id) else { return };
    let m = model(site);
    let conns = m.max_connections(site, id);
    let (sb, ecs, wm, mwm) = memory_kb(svc.resources.memory.0, conns.value);
    if wm < MIN_WORK_MEM_KB {
        return;
    }
    let replicas: Vec<HostId> = svc.hosts.iter().map(|h| h.value).filter(|h| *h != primary).collect();
    let fo = failover::plan(site, id);
    let etc = format!("/etc/postgresql/{v}/main");
    let data = format!("/var/lib/postgresql/{v}/main");
    let service = Src::at(svc.name.clone(), "service", &svc.loc);
    let version = Src::at(v.to_string(), "PostgreSQL version", &svc.loc);
    let mem = |kb: u64, what: &'static str| Src::at(pg_size(kb), what, &svc.loc);
    let n = replicas.len() as u32;
    let host_locs: Vec<&Loc> = svc.hosts.iter().map(|h| &h.loc).collect();
    let unit = format!("postgresql@{v}-main.service");
    // The replication password as the secrets delivery puts it, when the service lists it.
    let delivered = svc
        .secrets
        .iter()
        .find(|x| x.value == REPLICATION_SECRET)
        .map(|x| Src::at(super::secret_file(&svc.name, &x.value), "replication password (delivered)", &x.loc));
    // WAL archiving when a continuous policy covers the service: through the backups
    // family's pgBackRest wrapper, which holds the keys.
    let archive = super::backups::archiving(site, id).map(|b| {
        let w = super::backups::wrapper(&b.name);
        ArchiveView {
            policy: Src::at(b.name.clone(), "backup policy (continuous)", &b.loc),
            command: Src::at(
                format!("/bin/sh {w} archive-push %p"),
                "archive_command (the policy's pgBackRest)",
                &b.loc,
            ),
            restore: Src::at(
                format!("/bin/sh {w} archive-get %f \"%p\""),
                "restore_command (the policy's pgBackRest)",
                &b.loc,
            ),
            timeout: Src::at(crate::model::ARCHIVE_TIMEOUT.0, "archive_timeout (the policy's worst-case loss)", &b.loc),
        }
    });
    let file = |host: &str, target: String, mode: u32, reload: bool| {
        let mut meta = ArtifactMeta::host_file("postgres", host, &target, mode, "postgres:postgres");
        if let Some(a) = meta.apply.as_mut() {
            if reload {
                a.reload = Some(unit.clone());
            } else {
                a.restart = Some(unit.clone());
            }
        }
        meta
    };
    // The server parses postgresql.conf with its conf.d: either file changing is checked.
    let validated = |mut meta: ArtifactMeta| {
        if let Some(a) = meta.apply.as_mut() {
            a.validate = Some(Validator::Postgres);
        }
        meta
    };
    for h in &svc.hosts {
        let hid = h.value;
        let host = site.host(hid);
        if host.interfaces.is_empty() {
            continue;
        }
        let is_primary = hid == primary;
        let host_src = Src::at(host.name.clone(), "host", &host.loc);
        let role = Src::of(
            if is_primary { "primary" } else { "replica" }.to_string(),
            "replication role (the service's primary)",
            [&primary_loc],
        );
        let origin = Some(svc.loc.clone());
        // With failover, a host that may hold the floating address also listens on it
        // (bound before keepalived moves it here: `ip_nonlocal_bind`, family delivery).
        let vip_here = fo.as_ref().filter(|f| f.holds(hid)).map(|f| {
            Src::of(f.vip().value.to_string(), "the failover floating address", [&f.vip().loc, &f.failover.loc])
        });
        let mut listen_addresses = super::listen_addresses(site, hid, &[port]);
        listen_addresses.extend(vip_here.clone());
        let server = ServerContext {
            host: host_src.clone(),
            service: service.clone(),
            role,
            version: version.clone(),
            listen_addresses,
            port: Src::at(port.port, "postgres port", port_loc),
            max_connections: Src::at(conns.value, "max_connections", &conns.loc),
            shared_buffers: mem(sb, "shared_buffers (a quarter of the service's memory)"),
            max_wal_senders: Src::of(n + 3, "max_wal_senders (replicas + 3)", host_locs.iter().copied()),
            max_replication_slots: Src::of(n + 2, "max_replication_slots (replicas + 2)", host_locs.iter().copied()),
            archive: archive.as_ref().map(|a| a.policy.clone()),
        };
        let conf = validated(file(&host.name, format!("{etc}/postgresql.conf"), 0o644, false));
        out.add("postgres/postgresql.conf.j2", &server, conf, origin.clone());

        // A replica follows the primary; with failover every host is ready to (the
        // configured primary once it is rebuilt as a replica), at the floating address.
        let standby = (!is_primary || fo.is_some()).then(|| {
            let p = site.host(primary);
            let i =
                crate::model::flows::arrival(site, primary, Peer::Host(hid)).min(p.interfaces.len().saturating_sub(1));
            let addr = p.interfaces.get(i).map(|x| (x.address.value.to_string(), &x.address.loc));
            let (address, addr_loc) = addr.unwrap_or_else(|| (String::new(), &p.loc));
            let address = match &fo {
                Some(f) => Src::of(
                    f.vip().value.to_string(),
                    "the failover floating address (whichever host is primary)",
                    [&f.vip().loc, &f.failover.loc],
                ),
                None => Src::of(address, "the primary's address (reached by the replica)", [addr_loc, &primary_loc]),
            };
            let others = || svc.hosts.iter().map(|o| o.value).filter(|o| *o != hid);
            let reached = match &fo {
                Some(f) => f
                    .candidates
                    .iter()
                    .filter(|c| c.value != hid)
                    .all(|c| site.flow_plan().allows(site, Some(hid), Some(c.value), port)),
                None => site.flow_plan().allows(site, Some(hid), Some(primary), port),
            };
            StandbyView {
                primary: Src::of(p.name.clone(), "primary host", [&primary_loc]),
                address,
                port: Src::at(port.port, "postgres port", port_loc),
                slot: Src::at(slot_name(&host.name), "replication slot (from the replica's name)", &h.loc),
                name: Src::at(host.name.clone(), "replica name", &h.loc),
                passfile: match &delivered {
                    Some(_) => Src::at(RUN_PASSFILE.to_string(), "replication password file (rendered)", &svc.loc),
                    None => Src::at(format!("{etc}/{PASSFILE}"), "replication password file", &svc.loc),
                },
                role: REPLICATION_ROLE,
                reached,
                etc: Src::at(etc.clone(), "configuration directory", &svc.loc),
                data: Src::at(data.clone(), "data directory", &svc.loc),
                version: version.clone(),
                delivered: delivered.clone(),
                vip: fo
                    .as_ref()
                    .map(|f| Src::at(f.vip().value.to_string(), "the failover floating address", &f.vip().loc)),
                configured_primary: is_primary,
                peers: match &fo {
                    Some(_) => others()
                        .filter_map(|o| failover::address_from(site, hid, o))
                        .map(|(a, l)| Src::at(a, "peer address", l))
                        .collect(),
                    None => Vec::new(),
                },
            }
        });
        let reload = ReloadContext {
            host: host_src.clone(),
            service: service.clone(),
            effective_cache_size: mem(ecs, "effective_cache_size (three quarters of the service's memory)"),
            work_mem: Src::of(pg_size(wm), "work_mem (memory / (4 × max_connections))", [&svc.loc, &conns.loc]),
            maintenance_work_mem: mem(mwm, "maintenance_work_mem (a sixteenth of the memory, at most 1 GiB)"),
            wal_keep_size: WAL_KEEP_SIZE,
            standby,
            archive: archive.as_ref().map(|a| ArchiveView {
                policy: a.policy.clone(),
                command: a.command.clone(),
                restore: a.restore.clone(),
                timeout: a.timeout.clone(),
            }),
        };
        out.add(
            "postgres/medianest.conf.j2",
            &reload,
            validated(file(&host.name, format!("{etc}/conf.d/medianest.conf"), 0o644, true)),
            origin.clone(),
        );
        if let Some(sb) = &reload.standby {
            let mut meta = ArtifactMeta::host_file("postgres", &host.name, REPLICA_INIT, 0o755, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.reload = None;
            }
            let init = InitContext { host: host_src.clone(), service: service.clone(), standby: sb };
            out.add("postgres/replica-init.sh.j2", &init, meta, origin.clone());
            if sb.delivered.is_some() {
                // libpq reads a password file, not a bare secret: rendered by root before
                // every start (a drop-in's ExecStartPre=+) and by the bootstrap.
                out.add(
                    "postgres/render-passfile.sh.j2",
                    &init,
                    ArtifactMeta::host_file("postgres", &host.name, RENDER_PASSFILE, 0o750, "root:root"),
                    origin.clone(),
                );
                let mut meta = ArtifactMeta::host_file(
                    "postgres",
                    &host.name,
                    &format!("/etc/systemd/system/{unit}.d/medianest-passfile.conf"),
                    0o644,
                    "root:root",
                );
                if let Some(a) = meta.apply.as_mut() {
                    a.reload = Some("daemon-reload".into());
                }
                out.add("postgres/passfile-drop-in.conf.j2", &init, meta, origin.clone());
            }
        }

        if let (Some(f), Some(sb)) = (&fo, &reload.standby) {
            let ctx = failover::ScriptContext {
                host: host_src.clone(),
                service: service.clone(),
                version: version.clone(),
                port: Src::at(port.port, "postgres port", port_loc),
                data: Src::at(data.clone(), "data directory", &svc.loc),
                vip: Src::at(f.vip().value.to_string(), "the failover floating address", &f.vip().loc),
                may_promote: Src::of(
                    f.holds(hid),
                    "may hold the address (the primary, or a replica in `promote`)",
                    [&f.failover.loc, &h.loc],
                ),
                peers: svc
                    .hosts
                    .iter()
                    .filter(|o| o.value != hid)
                    .filter_map(|o| {
                        let (a, l) = failover::address_from(site, hid, o.value)?;
                        let oh = site.host(o.value);
                        Some(failover::PeerView {
                            name: Src::at(oh.name.clone(), "peer host", &o.loc),
                            address: Src::at(a, "peer address", l),
                        })
                    })
                    .collect(),
                slots: svc
                    .hosts
                    .iter()
                    .filter(|o| o.value != hid)
                    .map(|o| Src::at(slot_name(&site.host(o.value).name), "replication slot of a peer", &o.loc))
                    .collect(),
                passfile: sb.passfile.clone(),
                render_passfile: sb.delivered.as_ref().map(|_| RENDER_PASSFILE),
                role: REPLICATION_ROLE,
                replica_init: REPLICA_INIT,
                state: failover::STATE,
                script: failover::SCRIPT,
            };
            // keepalived runs it (family keepalived) and so does the unit's start.
            let meta = ArtifactMeta::host_file("postgres", &host.name, failover::SCRIPT, 0o750, "root:root");
            out.add("postgres/failover.sh.j2", &ctx, meta, origin.clone());
            let mut meta = ArtifactMeta::host_file(
                "postgres",
                &host.name,
                &format!("/etc/systemd/system/{unit}.d/medianest-fence.conf"),
                0o644,
                "root:root",
            );
            if let Some(a) = meta.apply.as_mut() {
                a.reload = Some("daemon-reload".into());
            }
            out.add("postgres/fence-drop-in.conf.j2", &ctx, meta, origin.clone());
        }

        lower_setup(site, id, hid, port, port_loc, !replicas.is_empty(), out);

        // Who streams from this host: the replicas, when it is the primary; with
        // failover, every other host, when it may become the primary.
        let streams_from_here: Vec<HostId> = match &fo {
            Some(f) if f.holds(hid) => svc.hosts.iter().map(|h| h.value).filter(|h| *h != hid).collect(),
            Some(_) => Vec::new(),
            None if is_primary => replicas.clone(),
            None => Vec::new(),
        };
        let replicas_view: Vec<HbaReplica> = if !streams_from_here.is_empty() {
            streams_from_here
                .iter()
                .filter(|r| site.flow_plan().allows(site, Some(**r), Some(hid), port))
                .filter_map(|r| {
                    let rh = site.host(*r);
                    let i = crate::model::flows::arrival(site, *r, Peer::Host(hid));
                    let a = rh.interfaces.get(i)?;
                    let flows: Vec<&Loc> = site
                        .flow_plan()
                        .allowing(site, Some(*r), Some(hid), port)
                        .map(|g| &site.flows[g.flow].loc)
                        .collect();
                    Some(HbaReplica {
                        host: Src::at(rh.name.clone(), "replica host", &rh.loc),
                        source: Src::of(
                            cidr(a.address.value.to_string()),
                            "replica address (a flow)",
                            std::iter::once(&a.address.loc).chain(flows),
                        ),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let hba = HbaContext {
            host: host_src.clone(),
            service: service.clone(),
            own: host
                .interfaces
                .iter()
                .map(|i| Src::at(cidr(i.address.value.to_string()), "host address", &i.address.loc))
                .collect(),
            clients: allowed_sources(site, hid, port)
                .into_iter()
                // pg_hba wants a CIDR for one address too.
                .map(|s| s.map(cidr))
                .collect(),
            replicas: replicas_view,
            role: REPLICATION_ROLE,
            // The host holding the address reaches itself there too (PgBouncer beside it).
            vip: vip_here.clone().map(|v| v.map(cidr)),
        };
        out.add("postgres/pg_hba.conf.j2", &hba, file(&host.name, format!("{etc}/pg_hba.conf"), 0o640, true), origin);
    }
}

/// Lowers the role and database setup of one host of a service: a script the agent runs
/// (through its oneshot unit) whenever it changes; it does nothing on a standby.
fn lower_setup(
    site: &Site,
    id: ServiceId,
    hid: HostId,
    port: PortSpec,
    port_loc: &Loc,
    replicas: bool,
    out: &mut Lowering,
) {
    let svc = site.service(id);
    let host = site.host(hid);
    let roles = model(site).roles.get(&id).map(Vec::as_slice).unwrap_or_default();
    let replication = svc.secrets.iter().find(|s| s.value == REPLICATION_SECRET).filter(|_| replicas);
    if roles.is_empty() && replication.is_none() {
        return;
    }
    let cx = SetupContext {
        host: Src::at(host.name.clone(), "host", &host.loc),
        service: Src::at(svc.name.clone(), "service", &svc.loc),
        version: Src::at(version(site, id).to_string(), "PostgreSQL version", &svc.loc),
        port: Src::at(port.port, "postgres port", port_loc),
        roles: roles
            .iter()
            .map(|r| RoleView {
                name: Src::at(r.name.value.clone(), "role", &r.name.loc),
                password: Src::at(super::secret_file(&svc.name, &r.password.value), "password secret", &r.password.loc),
                owns: r.owns.iter().map(|d| Src::at(d.value.clone(), "database", &d.loc)).collect(),
                connection_limit: r
                    .connection_limit
                    .as_ref()
                    .map_or(Src::at(-1, "connection limit (none)", &r.name.loc), |c| {
                        Src::at(i64::from(c.value), "connection limit", &c.loc)
                    }),
            })
            .collect(),
        replication: replication
            .map(|s| Src::at(super::secret_file(&svc.name, &s.value), "replication password secret", &s.loc)),
        replication_role: REPLICATION_ROLE,
    };
    let origin = Some(svc.loc.clone());
    let mut meta = ArtifactMeta::host_file("postgres", &host.name, SETUP, 0o750, "root:root");
    if let Some(a) = meta.apply.as_mut() {
        a.restart = Some(SETUP_UNIT.into());
    }
    out.add("postgres/setup.sh.j2", &cx, meta, origin.clone());
    let mut meta = ArtifactMeta::host_file(
        "postgres",
        &host.name,
        &format!("/etc/systemd/system/{SETUP_UNIT}"),
        0o644,
        "root:root",
    );
    if let Some(a) = meta.apply.as_mut() {
        a.reload = Some("daemon-reload".into());
    }
    out.add("postgres/setup.service.j2", &cx, meta, origin);
}

/// The postgres model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model {
        failover: BTreeMap::new(),
        primary: BTreeMap::new(),
        max_connections: BTreeMap::new(),
        roles: BTreeMap::new(),
    };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

impl Family for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::PostgresFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for id in services(site).collect::<Vec<_>>() {
            lower_service(site, id, out);
        }
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let m = model(site);
        let mut v: Vec<Fact> = m
            .primary
            .iter()
            .map(|(id, h)| Fact {
                category: "service",
                subject: site.service(*id).name.clone(),
                field: "primary",
                value: site.host(h.value).name.clone().into(),
            })
            .collect();
        v.extend(m.roles.iter().map(|(id, roles)| {
            Fact {
                category: "service",
                subject: site.service(*id).name.clone(),
                field: "roles",
                value: roles
                    .iter()
                    .map(|r| {
                        let owns: Vec<&str> = r.owns.iter().map(|d| d.value.as_str()).collect();
                        if owns.is_empty() {
                            r.name.value.clone()
                        } else {
                            format!("{} (owns {})", r.name.value, owns.join(", "))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
                    .into(),
            }
        }));
        v.extend(m.failover.iter().map(|(id, f)| {
            let promote = match &f.promote {
                Some(l) => l.iter().map(|h| site.host(h.value).name.as_str()).collect::<Vec<_>>().join(", "),
                None => "every replica".to_string(),
            };
            Fact {
                category: "service",
                subject: site.service(*id).name.clone(),
                field: "failover",
                value: format!("vip {}, vrid {}, promote {promote}", f.vip.value, f.vrid.value).into(),
            }
        }));
        v.extend(services(site).map(|id| Fact {
            category: "service",
            subject: site.service(id).name.clone(),
            field: "max_connections",
            value: m.max_connections(site, id).value.to_string().into(),
        }));
        v
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        failover::verify(site, diags);
        let m = model(site);
        for id in services(site) {
            let s = site.service(id);
            let v = version(site, id);
            if !VERSIONS.contains(&v) {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "medianest configures PostgreSQL 15, 16 and 17, and `{}` asks for version `{v}`",
                            s.name
                        ),
                        s.loc.clone(),
                    )
                    .help("set `version` to 15 (Debian 12's package), 16 or 17 (the PGDG repository)"),
                );
            }
            let memory = s.resources.memory.0;
            if memory < MIN_MEMORY {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "postgres service `{}` has {} MiB of memory, and PostgreSQL needs at least {} MiB here (shared_buffers is a quarter of it)",
                            s.name,
                            memory >> 20,
                            MIN_MEMORY >> 20
                        ),
                        s.loc.clone(),
                    )
                    .help("raise `resources.memory`"),
                );
                continue;
            }
            let conns = m.max_connections(site, id);
            let (_, _, wm, _) = memory_kb(memory, conns.value);
            if wm < MIN_WORK_MEM_KB {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` would give each of its {} connections {wm} kB of work_mem (memory / (4 × max_connections)), under PostgreSQL's minimum of {MIN_WORK_MEM_KB} kB",
                            s.name, conns.value
                        ),
                        conns.loc.clone(),
                    )
                    .help("lower `max_connections` (a pooler serves many clients with few connections) or raise `resources.memory`"),
                );
            }
        }
        for (i, s) in site.services.iter().enumerate() {
            if !s.declared.kind_known || s.kind.value != ServiceKind::Postgres {
                continue;
            }
            match m.primary.get(&crate::model::ServiceId(i)) {
                Some(p) if !s.hosts.iter().any(|h| h.value == p.value) => diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!("primary `{}` is not one of the hosts of `{}`", site.host(p.value).name, s.name),
                        p.loc.clone(),
                    )
                    .help("the primary must be listed in `hosts`"),
                ),
                None if s.hosts.len() > 1 => diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("postgres service `{}` runs on {} hosts but names no primary", s.name, s.hosts.len()),
                        s.loc.clone(),
                    )
                    .help("add `primary = \"<host>\"`; the other hosts become streaming replicas"),
                ),
                Some(p) => {
                    // Each replica streams from the primary: that connection needs a flow
                    // like any other (the primary's firewall and pg_hba read the same).
                    let Some((port, _)) = super::service_port(site, crate::model::ServiceId(i), "postgres") else {
                        continue;
                    };
                    let cut = s.hosts.iter().find(|r| {
                        r.value != p.value && !site.flow_plan().allows(site, Some(r.value), Some(p.value), port)
                    });
                    if let Some(r) = cut {
                        super::edge::missing_flow(
                            diags,
                            &p.loc,
                            &format!("service:{}", s.name),
                            &format!("service:{}", s.name),
                            port,
                            "streaming replication from the primary",
                            &format!(
                                "replica `{}` streams from the primary `{}`",
                                site.host(r.value).name,
                                site.host(p.value).name
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}
