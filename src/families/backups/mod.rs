//! Family **backups**: the jobs that run every `[backups.*]` policy, on the host that
//! holds the data, and the MinIO buckets they write to. Templates: `templates/backups/`.
//!
//! Per policy and job host (the hosts of the service; for a `restic` policy over an NFS
//! volume, the NFS server, where the files are):
//!
//! - **`/etc/medianest/backup/<policy>.sh`** (0750 root): the job. It runs the tool of
//!   the method, then writes `medianest_backup_last_success_timestamp_seconds{policy}`
//!   into node exporter's textfile directory, atomically, only on success: the metric the
//!   observability family's `BackupTooOld`/`BackupNeverReported` alerts read.
//!   - `pg-basebackup`: **pgBackRest** (`/etc/pgbackrest/pgbackrest.conf`, a stanza named
//!     after the service, the repository in the MinIO bucket under `/<policy>`,
//!     retention by time, zstd, encrypted with the repository password). The job runs a
//!     differential backup (pgBackRest makes it a full one when there is none yet); a
//!     second timer runs a weekly full one. It does nothing on a standby, so after a
//!     failover the promoted host takes over without a commit. With `continuous = true`,
//!     the postgres family sets `archive_mode`, `archive_command` through the same
//!     wrapper and `archive_timeout` = [`ARCHIVE_TIMEOUT`](crate::model::ARCHIVE_TIMEOUT).
//!   - `pg-dump`: `pg_dump -Fc` piped into `restic backup --stdin`.
//!   - `redis-rdb`: `redis-cli --rdb` (a consistent snapshot over the replication
//!     protocol, with the password from `/etc/redis/secrets.conf`), then restic.
//!   - `restic`: `restic backup` of the policy's `paths`; `restic forget --prune` keeps
//!     the retention.
//!   - `zfs-snapshot`: **sanoid** takes and prunes the snapshots of `dataset`
//!     (`/etc/sanoid/sanoid.conf`, its own timer from Debian's package) and the job runs
//!     **syncoid**, sending them over SSH to the target host.
//!   - `minio-mirror`: `mc mirror` (the `mc` of the MinIO image) from this MinIO to the
//!     target one.
//! - **`/etc/systemd/system/medianest-backup-<policy>.{service,timer}`**: a oneshot
//!   service and its timer, at a schedule derived from `every` ([`schedule`]). The agent
//!   reloads systemd and enables and (re)starts the timer when it changes.
//! - With `verify_restore = true`: **`medianest-restore-test-<policy>`**, a service and
//!   timer that restore the latest backup into a scratch directory and check it
//!   (pgBackRest: restore, start a throwaway server on it, query it; restic: `restic
//!   check` and a restore), reporting `medianest_restore_test_last_success_timestamp_seconds`.
//!
//! Credentials are files, never values in `generated/`: the S3 access and secret keys
//! (`backup_s3_access_key`, `backup_s3_secret_key`) and the repository password
//! (`backup_repository_password`, restic's password and pgBackRest's cipher pass), read
//! from [`secret_file`](super::secret_file) under the backed-up service's directory.
//! [`secrets`] tells the secrets delivery which host needs which; a service does not
//! list them (a container would then see them). MinIO gets **`/etc/medianest/minio/buckets.sh`**, run by
//! `medianest-minio-buckets.service` whenever it changes: it creates the buckets
//! (`buckets`) and the backup user with those keys, with `mc` from the MinIO image.
//!
//! pgBackRest speaks S3 over HTTPS only: MinIO must serve TLS on its API port
//! (`--certs-dir`); the job trusts the CA in [`MINIO_CA`]. restic and `mc` speak to
//! the same port.

pub mod keys;
pub mod schedule;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part, secret_file};
use crate::artifact::ArtifactMeta;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::flows::Peer;
use crate::model::{Backup, BackupMethod, Endpoint, HostId, Role, ServiceId, ServiceKind, Site};
use schedule::Schedule;

/// Where the job scripts go.
pub const DIR: &str = "/etc/medianest/backup";
/// Node exporter's textfile directory (Debian's), where the jobs report.
pub const TEXTFILE_DIR: &str = super::TEXTFILE_DIR;
/// pgBackRest's configuration.
pub const PGBACKREST_CONF: &str = "/etc/pgbackrest/pgbackrest.conf";
/// sanoid's configuration.
pub const SANOID_CONF: &str = "/etc/sanoid/sanoid.conf";
/// The CA that signed MinIO's certificate, trusted by the jobs.
pub const MINIO_CA: &str = super::minio::CA_FILE;
/// MinIO's bucket setup.
pub const MINIO_BUCKETS: &str = "/etc/medianest/minio/buckets.sh";
/// Where restic keeps the repositories of a host target (over SFTP, as root).
pub const SFTP_DIR: &str = "/srv/medianest/backups";
/// The secrets a job writing to MinIO reads.
pub const S3_SECRETS: [&str; 2] = ["backup_s3_access_key", "backup_s3_secret_key"];
/// The repository password (restic's password, pgBackRest's cipher pass).
pub const PASSWORD_SECRET: &str = "backup_repository_password";
/// Where pgBackRest full backups run, whatever the policy's interval.
pub const FULL_EVERY: u64 = 7 * 24 * 3600;

/// The backups family.
pub struct Backups;

/// A job's S3 repository (MinIO).
#[derive(Serialize, Clone)]
pub struct S3View {
    /// The MinIO host.
    pub host: Src<String>,
    /// Its address, as the job host reaches it.
    pub address: Src<String>,
    /// Its API port.
    pub port: Src<u16>,
    /// The bucket.
    pub bucket: Src<String>,
    /// The access key file.
    pub access_key: String,
    /// The secret key file.
    pub secret_key: String,
}

/// PostgreSQL as a pgBackRest stanza or a `pg_dump` source.
#[derive(Serialize, Clone)]
pub struct PgView {
    /// The stanza (the service's name).
    pub stanza: Src<String>,
    /// The major version.
    pub version: Src<String>,
    /// The data directory.
    pub data: String,
    /// The port.
    pub port: Src<u16>,
}

/// A ZFS replication.
#[derive(Serialize, Clone)]
pub struct ZfsView {
    /// The dataset.
    pub dataset: Src<String>,
    /// The target host.
    pub target: Src<String>,
    /// Its address as this host reaches it.
    pub address: Src<String>,
    /// The dataset it is received as.
    pub received: String,
    /// Hourly snapshots kept.
    pub hourly: u64,
    /// Daily snapshots kept.
    pub daily: u64,
}

/// Context of the job templates: one policy on one host.
#[derive(Serialize, Clone)]
pub struct JobContext {
    /// The policy.
    pub policy: Src<String>,
    /// The service backed up.
    pub service: Src<String>,
    /// The job host.
    pub host: Src<String>,
    /// The method (`pg-basebackup`, `restic`, …).
    pub method: Src<String>,
    /// The interval.
    pub every: Src<String>,
    /// Worst-case data loss.
    pub loss: Src<String>,
    /// The site's RPO.
    pub rpo: Src<String>,
    /// Retention.
    pub retention: Src<String>,
    /// Retention in whole days (at least 1).
    pub retention_days: u64,
    /// Retention in whole hours (at least 1).
    pub retention_hours: u64,
    /// The textfile directory.
    pub textfile: &'static str,
    /// The S3 repository, when the target is MinIO.
    pub s3: Option<S3View>,
    /// The restic repository (`s3:https://…` for MinIO, `sftp:…` for a host).
    pub repository: Option<Src<String>>,
    /// The repository password file.
    pub password: String,
    /// What restic backs up.
    pub paths: Vec<Src<String>>,
    /// PostgreSQL.
    pub pg: Option<PgView>,
    /// ZFS.
    pub zfs: Option<ZfsView>,
    /// Whether a restore test runs.
    pub verify_restore: bool,
    /// The MinIO image (`minio-mirror`: its `mc`).
    pub image: Option<String>,
    /// pgBackRest's configuration.
    pub pgbackrest_conf: &'static str,
    /// The CA file trusted for MinIO.
    pub minio_ca: &'static str,
    /// The pgBackRest wrapper (with its secrets).
    pub wrapper: String,
    /// Redis's password as delivered (its service's first secret), when it lists one.
    pub redis_password: Option<String>,
}

/// Context of `backups/job.service.j2` and `backups/job.timer.j2`.
#[derive(Serialize)]
pub struct UnitContext {
    /// The unit's name without suffix.
    pub unit: String,
    /// What it does.
    pub description: String,
    /// The policy.
    pub policy: Src<String>,
    /// The script it runs.
    pub script: String,
    /// The script's argument.
    pub arg: Option<&'static str>,
    /// `OnCalendar=`.
    pub calendar: Option<Src<String>>,
    /// `OnUnitActiveSec=`, in seconds.
    pub every: Option<Src<u64>>,
    /// Units to start after (the database).
    pub after: Vec<Src<String>>,
}

/// Context of `backups/buckets.sh.j2`.
#[derive(Serialize)]
pub struct BucketsContext {
    /// The MinIO host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// Its image.
    pub image: Src<String>,
    /// Its API port.
    pub port: Src<u16>,
    /// The buckets.
    pub buckets: Vec<Src<String>>,
    /// Root user and password files, backup access and secret key files.
    pub root_user: String,
    /// Root password file.
    pub root_password: String,
    /// Backup access key file.
    pub access_key: String,
    /// Backup secret key file.
    pub secret_key: String,
    /// The MinIO CA, which mc trusts.
    pub ca: &'static str,
}

/// Context of `backups/minio-ca.crt.j2`.
#[derive(Serialize)]
pub struct CaContext {
    /// The host.
    pub host: Src<String>,
    /// The CA certificate(s), PEM.
    pub ca: Src<String>,
    /// Their SHA-256 fingerprints.
    pub fingerprints: Vec<String>,
}

/// Context of `backups/tls.sh.j2` and its units: MinIO's certificate on one host.
#[derive(Serialize)]
pub struct TlsContext {
    /// The MinIO host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The certificate directory.
    pub dir: &'static str,
    /// The CA file.
    pub ca: &'static str,
    /// The CA key file (the secrets delivery's).
    pub ca_key: String,
    /// The CA key's secret name.
    pub ca_key_name: &'static str,
    /// Who owns the key: the container's user.
    pub owner: Src<String>,
    /// The addresses the certificate names.
    pub ips: Vec<Src<String>>,
    /// The DNS names it names.
    pub names: Vec<Src<String>>,
    /// Days a certificate is issued for.
    pub days: u64,
    /// Days before its end that it is issued again.
    pub renew_days: u64,
    /// The same, in seconds (`openssl x509 -checkend`).
    pub renew_seconds: u64,
    /// The script.
    pub script: &'static str,
    /// The unit's name without suffix.
    pub unit: &'static str,
}

/// The backups model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model {
        paths: BTreeMap::new(),
        dataset: BTreeMap::new(),
        dataset_written: std::collections::BTreeSet::new(),
        bucket: BTreeMap::new(),
        buckets: BTreeMap::new(),
        ca: None,
        ca_written: None,
    };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// The data directory Debian's package of a native kind keeps its state in.
fn native_data_dir(kind: ServiceKind) -> Option<&'static str> {
    match kind {
        ServiceKind::Powerdns => Some("/var/lib/powerdns"),
        ServiceKind::Redis => Some("/var/lib/redis"),
        _ => None,
    }
}

/// A duration as the templates write it.
fn text(d: crate::model::values::Duration) -> String {
    d.to_string()
}

/// The buckets of a MinIO service: its `buckets`, or [`keys::DEFAULT_BUCKET`].
pub fn buckets(site: &Site, id: ServiceId) -> Vec<At<String>> {
    model(site)
        .buckets
        .get(&id)
        .cloned()
        .unwrap_or_else(|| vec![At { value: keys::DEFAULT_BUCKET.to_string(), loc: site.service(id).loc.clone() }])
}

use crate::model::At;

/// A policy's bucket: its `bucket`, or [`keys::DEFAULT_BUCKET`] (at the policy).
fn bucket(site: &Site, b: &Backup) -> At<String> {
    model(site)
        .bucket
        .get(&b.name)
        .cloned()
        .unwrap_or_else(|| At { value: keys::DEFAULT_BUCKET.to_string(), loc: b.loc.clone() })
}

/// The MinIO service a policy writes to, when its target is one.
fn minio_target(site: &Site, b: &Backup) -> Option<ServiceId> {
    match b.target.value {
        Endpoint::Service(t) if site.service(t).kind.value == ServiceKind::Minio => Some(t),
        _ => None,
    }
}

/// The directories a restic policy backs up, by the host that runs the job: its
/// `paths` on every host of the service, else the service's volumes (an NFS volume on
/// its server), else its kind's data directory.
pub fn restic_paths(site: &Site, b: &Backup) -> BTreeMap<HostId, Vec<At<String>>> {
    let svc = site.service(b.service.value);
    let mut out: BTreeMap<HostId, Vec<At<String>>> = BTreeMap::new();
    if let Some(p) = model(site).paths.get(&b.name) {
        for h in &svc.hosts {
            out.insert(h.value, p.clone());
        }
        return out;
    }
    let nfs = &super::containers::model(site).nfs;
    for v in &svc.volumes {
        match nfs.get(&v.name) {
            Some(n) => out
                .entry(n.server.value)
                .or_default()
                .push(At { value: n.export.value.clone(), loc: n.export.loc.clone() }),
            None => {
                for h in &svc.hosts {
                    out.entry(h.value)
                        .or_default()
                        .push(At { value: super::containers::volume_dir(&svc.name, &v.name), loc: v.loc.clone() });
                }
            }
        }
    }
    if out.is_empty()
        && let Some(dir) = native_data_dir(svc.kind.value)
    {
        for h in &svc.hosts {
            out.insert(h.value, vec![At { value: dir.to_string(), loc: svc.loc.clone() }]);
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.value.cmp(&b.value));
        v.dedup_by(|a, b| a.value == b.value);
    }
    out
}

/// The hosts that run a policy's job, with what restic reads there.
fn job_hosts(site: &Site, b: &Backup) -> BTreeMap<HostId, Vec<At<String>>> {
    if b.method == BackupMethod::Restic {
        return restic_paths(site, b);
    }
    site.service(b.service.value).hosts.iter().map(|h| (h.value, Vec::new())).collect()
}

/// The first address of `to` that `from` reaches.
fn address(site: &Site, to: HostId, from: HostId) -> Option<(String, &Loc)> {
    // Always the host part of a URL or of `root@host:path` (IPv6 in brackets).
    reached(site, to, from).map(|a| (super::host_text(a.value), &a.loc))
}

/// The address of `to` that `from` reaches (see [`address`]).
fn reached(site: &Site, to: HostId, from: HostId) -> Option<&At<std::net::IpAddr>> {
    let t = site.host(to);
    let i = crate::model::flows::arrival(site, to, Peer::Host(from)).min(t.interfaces.len().saturating_sub(1));
    t.interfaces.get(i).map(|x| &x.address)
}

/// The pgBackRest wrapper of a policy: `archive_command` and the jobs run pgBackRest
/// through it (it reads the keys into pgBackRest's environment).
pub fn wrapper(policy: &str) -> String {
    format!("{DIR}/{policy}-pgbackrest.sh")
}

/// The policy that archives a postgres service's WAL continuously, if any.
pub fn archiving(site: &Site, id: ServiceId) -> Option<&Backup> {
    site.backups.iter().find(|b| b.service.value == id && b.continuous && b.method == BackupMethod::PgBasebackup)
}

/// The unit name of a policy's job.
pub fn unit(policy: &str) -> String {
    format!("medianest-backup-{policy}")
}

/// The unit name of a policy's restore test.
pub fn restore_unit(policy: &str) -> String {
    format!("medianest-restore-test-{policy}")
}

/// A systemd unit file written by this family: systemd rereads it; a timer is also
/// enabled and (re)started.
fn unit_file(host: &str, name: &str, start: bool) -> ArtifactMeta {
    let mut meta = ArtifactMeta::host_file("backups", host, &format!("/etc/systemd/system/{name}"), 0o644, "root:root");
    if let Some(a) = meta.apply.as_mut() {
        a.reload = Some("daemon-reload".into());
        if start {
            a.restart = Some(name.to_string());
        }
    }
    meta
}

/// The job context of a policy on one host (`None` when the policy cannot run there:
/// its errors are [`Family::verify`]'s).
fn job(site: &Site, b: &Backup, host: HostId, paths: &[At<String>]) -> Option<JobContext> {
    let svc = site.service(b.service.value);
    let h = site.host(host);
    let policy = Src::at(b.name.clone(), "backup policy", &b.loc);
    let s3 = match minio_target(site, b) {
        Some(m) => {
            let mh = site.service(m).hosts.first()?.value;
            let (addr, addr_loc) = address(site, mh, host)?;
            let port = super::service_port(site, m, "api")?;
            let bucket = bucket(site, b);
            Some(S3View {
                host: Src::at(site.host(mh).name.clone(), "MinIO host", &site.host(mh).loc),
                address: Src::of(addr, "MinIO address (reached by the job host)", [addr_loc, &b.target.loc]),
                port: Src::at(port.0.port, "MinIO API port", port.1),
                bucket: Src::at(bucket.value, "bucket", &bucket.loc),
                access_key: secret_file(&svc.name, S3_SECRETS[0]),
                secret_key: secret_file(&svc.name, S3_SECRETS[1]),
            })
        }
        None => None,
    };
    let repository = match (&s3, &b.target.value) {
        (Some(s), _) => Some(Src::of(
            format!("s3:https://{}:{}/{}/{}", s.address.value, s.port.value, s.bucket.value, b.name),
            "restic repository (MinIO)",
            [&b.target.loc],
        )),
        (None, Endpoint::Host(t)) if b.method != BackupMethod::ZfsSnapshot => {
            let a = reached(site, *t, host)?;
            let path = format!("{SFTP_DIR}/{}/{}", h.name, b.name);
            // restic's `sftp:user@host:path` splits at the first colon, so an IPv6 host
            // (even bracketed) needs the URL form, `sftp://user@[host]/path`.
            let repository = match a.value {
                std::net::IpAddr::V4(v4) => format!("sftp:root@{v4}:{path}"),
                v6 => format!("sftp://root@{}/{path}", super::host_text(v6)),
            };
            let addr_loc = &a.loc;
            Some(Src::of(repository, "restic repository (SFTP to the target host)", [addr_loc, &b.target.loc]))
        }
        _ => None,
    };
    let pg = (svc.kind.value == ServiceKind::Postgres).then(|| {
        let v = super::postgres_version(site, b.service.value).to_string();
        let port = super::service_port(site, b.service.value, "postgres");
        PgView {
            stanza: Src::at(svc.name.clone(), "service", &svc.loc),
            data: format!("/var/lib/postgresql/{v}/main"),
            version: Src::at(v, "PostgreSQL version", &svc.loc),
            port: port.map_or(Src::at(5432, "postgres port", &svc.loc), |(p, l)| Src::at(p.port, "postgres port", l)),
        }
    });
    let zfs = if b.method == BackupMethod::ZfsSnapshot {
        let ds = model(site).dataset.get(&b.name)?;
        let Endpoint::Host(t) = b.target.value else { return None };
        let (addr, addr_loc) = address(site, t, host)?;
        let pool = ds.value.split('/').next().unwrap_or(&ds.value);
        let rest = ds.value.split_once('/').map_or("", |(_, r)| r);
        let received = if rest.is_empty() {
            format!("{pool}/backup/{}", h.name)
        } else {
            format!("{pool}/backup/{}/{rest}", h.name)
        };
        let hours = b.retention.0 / 3600;
        Some(ZfsView {
            dataset: Src::at(ds.value.clone(), "dataset", &ds.loc),
            target: Src::at(site.host(t).name.clone(), "target host", &b.target.loc),
            address: Src::of(addr, "target address (reached by the job host)", [addr_loc, &b.target.loc]),
            received,
            hourly: hours.clamp(1, 48),
            daily: (hours / 24).max(1),
        })
    } else {
        None
    };
    let rpo = &site.recovery.rpo;
    Some(JobContext {
        policy,
        service: Src::at(svc.name.clone(), "service", &svc.loc),
        host: Src::at(h.name.clone(), "host", &h.loc),
        method: Src::at(b.method.name().to_string(), "backup method", &b.loc),
        every: Src::at(text(b.every.value), "interval", &b.every.loc),
        loss: Src::of(text(b.worst_case_loss()), "worst-case data loss", [&b.every.loc, &b.loc]),
        rpo: Src::at(text(rpo.value), "recovery point objective", &rpo.loc),
        retention: Src::at(text(b.retention), "retention", &b.loc),
        retention_days: (b.retention.0 / 86400).max(1),
        retention_hours: (b.retention.0 / 3600).max(1),
        textfile: TEXTFILE_DIR,
        s3,
        repository,
        password: secret_file(&svc.name, PASSWORD_SECRET),
        paths: paths.iter().map(|p| Src::at(p.value.clone(), "backed-up directory", &p.loc)).collect(),
        pg,
        zfs,
        verify_restore: b.verify_restore,
        image: svc.image.as_ref().map(|i| i.value.to_string()),
        pgbackrest_conf: PGBACKREST_CONF,
        minio_ca: MINIO_CA,
        wrapper: wrapper(&b.name),
        redis_password: (svc.kind.value == ServiceKind::Redis)
            .then(|| svc.secrets.first().map(|x| secret_file(&svc.name, &x.value)))
            .flatten(),
    })
}

/// A timer's schedule as a context value.
fn timer(sched: Schedule, loc: &Loc) -> (Option<Src<String>>, Option<Src<u64>>) {
    match sched {
        Schedule::Calendar(c) => (Some(Src::at(c, "schedule (from `every`)", loc)), None),
        Schedule::Every(s) => (None, Some(Src::at(s, "interval (from `every`)", loc))),
    }
}

/// Lowers one policy.
fn lower_policy(site: &Site, b: &Backup, out: &mut Lowering) {
    let svc = site.service(b.service.value);
    for (host, paths) in job_hosts(site, b) {
        let Some(cx) = job(site, b, host, &paths) else { continue };
        let h = &site.host(host).name;
        let origin = Some(b.loc.clone());
        let script = format!("{DIR}/{}.sh", b.name);
        // The job waits for the server it reads (its unit is the service's version's).
        let after: Vec<Src<String>> = match b.method {
            BackupMethod::PgBasebackup | BackupMethod::PgDump => vec![Src::at(
                format!("postgresql@{}-main.service", super::postgres_version(site, b.service.value)),
                "PostgreSQL unit (the service's version)",
                &svc.loc,
            )],
            BackupMethod::RedisRdb => vec![Src::at(super::redis::UNIT.to_string(), "Redis unit", &svc.loc)],
            _ => Vec::new(),
        };
        out.add(
            "backups/job.sh.j2",
            &cx,
            ArtifactMeta::host_file("backups", h, &script, 0o750, "root:root"),
            origin.clone(),
        );
        let name = unit(&b.name);
        let (calendar, every) = timer(schedule::schedule(b.every.value.0, &b.name), &b.every.loc);
        let mut units = vec![UnitContext {
            unit: name.clone(),
            description: format!("medianest backup `{}` of {} ({})", b.name, svc.name, b.method.name()),
            policy: cx.policy.clone(),
            script: script.clone(),
            arg: (b.method == BackupMethod::PgBasebackup).then_some("diff"),
            calendar,
            every,
            after: after.clone(),
        }];
        if b.method == BackupMethod::PgBasebackup {
            let name = format!("{name}-full");
            let (calendar, every) = timer(schedule::schedule(FULL_EVERY, &name), &b.loc);
            units.push(UnitContext {
                unit: name,
                description: format!("medianest weekly full backup `{}` of {}", b.name, svc.name),
                policy: cx.policy.clone(),
                script: script.clone(),
                arg: Some("full"),
                calendar,
                every,
                after: after.clone(),
            });
        }
        if b.verify_restore && !matches!(b.method, BackupMethod::ZfsSnapshot | BackupMethod::MinioMirror) {
            let test = format!("{DIR}/{}-restore-test.sh", b.name);
            out.add(
                "backups/restore-test.sh.j2",
                &cx,
                ArtifactMeta::host_file("backups", h, &test, 0o750, "root:root"),
                origin.clone(),
            );
            let name = restore_unit(&b.name);
            // Halfway between two runs, so it tests the newest backup, not one in flight.
            let (calendar, every) =
                timer(schedule::schedule(b.every.value.0.max(86400), &format!("{name}-test")), &b.loc);
            units.push(UnitContext {
                unit: name,
                description: format!("medianest restore test of backup `{}` ({})", b.name, svc.name),
                policy: cx.policy.clone(),
                script: test,
                arg: None,
                calendar,
                every,
                after: Vec::new(),
            });
        }
        for u in &units {
            out.add("backups/job.service.j2", u, unit_file(h, &format!("{}.service", u.unit), false), origin.clone());
            out.add("backups/job.timer.j2", u, unit_file(h, &format!("{}.timer", u.unit), true), origin.clone());
        }
        if b.method == BackupMethod::PgBasebackup {
            let mut meta = ArtifactMeta::host_file("backups", h, PGBACKREST_CONF, 0o640, "postgres:postgres");
            if let Some(a) = meta.apply.as_mut() {
                a.reload = None;
            }
            out.add("backups/pgbackrest.conf.j2", &cx, meta, origin.clone());
            // Run by PostgreSQL as postgres (archive_command): readable by its group.
            let meta = ArtifactMeta::host_file("backups", h, &cx.wrapper, 0o750, "root:postgres");
            out.add("backups/pgbackrest.sh.j2", &cx, meta, origin.clone());
        }
        if b.method == BackupMethod::ZfsSnapshot {
            out.add(
                "backups/sanoid.conf.j2",
                &cx,
                ArtifactMeta::host_file("backups", h, SANOID_CONF, 0o644, "root:root"),
                origin.clone(),
            );
        }
    }
}

/// The hosts that get [`MINIO_CA`]: the MinIO clients medianest configures. Each MinIO
/// host (its health check, bucket setup, `mc mirror`), each host that runs a job writing
/// to MinIO (pgBackRest, restic), and each Prometheus host that scrapes a MinIO; with
/// where each is decided. A flow alone is not a client: a container that speaks to
/// MinIO mounts the CA itself.
pub fn ca_hosts(site: &Site) -> BTreeMap<HostId, Vec<&Loc>> {
    let mut out: BTreeMap<HostId, Vec<&Loc>> = BTreeMap::new();
    for id in super::configured(site, ServiceKind::Minio) {
        for h in &site.service(id).hosts {
            out.entry(h.value).or_default().push(&h.loc);
        }
    }
    for b in site.backups.iter().filter(|b| minio_target(site, b).is_some()) {
        for h in job_hosts(site, b).into_keys() {
            out.entry(h).or_default().push(&b.loc);
        }
    }
    for prom in super::configured(site, ServiceKind::Prometheus) {
        for h in &site.service(prom).hosts {
            for j in super::prometheus::scrape::jobs(site, prom, h.value) {
                if site.service(j.service).kind.value == ServiceKind::Minio {
                    out.entry(h.value).or_default().extend(j.locs(site));
                }
            }
        }
    }
    out.retain(|h, _| site.host(*h).kind.value.is_linux());
    out
}

/// What MinIO's certificate on `host` names: every address a flow reaches its API or
/// console at, and loopback; the host's name, its name in the site's domain, and
/// `localhost`.
pub fn tls_names(site: &Site, id: ServiceId, host: HostId) -> (Vec<Src<String>>, Vec<Src<String>>) {
    let svc = site.service(id);
    let h = site.host(host);
    let ports: Vec<_> = ["api", "console"].iter().filter_map(|p| svc.port(p)).map(|p| p.spec).collect();
    let mut ips = super::listen_addresses(site, host, &ports);
    ips.push(Src::at("127.0.0.1".to_string(), "loopback (health check, bucket setup)", &svc.loc));
    let mut names = vec![Src::at(h.name.clone(), "host", &h.loc)];
    if !site.settings.domain.is_empty() {
        names.push(Src::of(
            format!("{}.{}", h.name, site.settings.domain),
            "host in the site's domain",
            [&h.loc].into_iter().chain(site.settings.loc.iter()),
        ));
    }
    names.push(Src::at("localhost".to_string(), "loopback", &svc.loc));
    (ips, names)
}

/// The owner of MinIO's key on its hosts: the container's numeric user (a name is the
/// containers family's error), else root.
fn tls_owner(site: &Site, id: ServiceId) -> Src<String> {
    let svc = site.service(id);
    match &svc.user {
        Some(u) => Src::at(u.value.clone(), "container user (reads the key)", &u.loc),
        None => Src::at("0:0".to_string(), "container user (none: root)", &svc.loc),
    }
}

/// Lowers MinIO's CA on every host of [`ca_hosts`].
fn lower_ca(site: &Site, out: &mut Lowering) {
    let Some(ca) = &model(site).ca else { return };
    let minio_hosts: std::collections::BTreeSet<HostId> = super::configured(site, ServiceKind::Minio)
        .flat_map(|id| site.service(id).hosts.iter().map(|h| h.value))
        .collect();
    for (h, locs) in ca_hosts(site) {
        let host = site.host(h);
        let cx = CaContext {
            host: Src::at(host.name.clone(), "host", &host.loc),
            ca: Src::of(
                ca.value.trim_end().to_string(),
                "MinIO CA ([minio_tls] ca)",
                [&ca.loc].into_iter().chain(locs),
            ),
            fingerprints: keys::fingerprints(&ca.value),
        };
        let mut meta = ArtifactMeta::host_file("backups", &host.name, MINIO_CA, 0o644, "root:root");
        if let Some(a) = meta.apply.as_mut() {
            a.reload = None;
            // A new CA on a MinIO host: its certificate is issued again.
            a.restart = minio_hosts.contains(&h).then(|| format!("{}.service", super::minio::TLS_UNIT));
        }
        out.add("backups/minio-ca.crt.j2", &cx, meta, Some(ca.loc.clone()));
    }
}

/// Lowers the certificate issuing of one MinIO service on each of its hosts.
fn lower_tls(site: &Site, id: ServiceId, out: &mut Lowering) {
    use super::minio::{CA_KEY_SECRET, CERT_DAYS, RENEW_DAYS, TLS_DIR, TLS_SCRIPT, TLS_UNIT};
    let svc = site.service(id);
    for h in &svc.hosts {
        let host = site.host(h.value);
        let (ips, names) = tls_names(site, id, h.value);
        let cx = TlsContext {
            host: Src::at(host.name.clone(), "host", &host.loc),
            service: Src::at(svc.name.clone(), "service", &svc.loc),
            dir: TLS_DIR,
            ca: MINIO_CA,
            ca_key: secret_file(&svc.name, CA_KEY_SECRET),
            ca_key_name: CA_KEY_SECRET,
            owner: tls_owner(site, id),
            ips,
            names,
            days: CERT_DAYS,
            renew_days: RENEW_DAYS,
            renew_seconds: RENEW_DAYS * 86400,
            script: TLS_SCRIPT,
            unit: TLS_UNIT,
        };
        let origin = Some(svc.loc.clone());
        let service = format!("{TLS_UNIT}.service");
        let mut meta = ArtifactMeta::host_file("backups", &host.name, TLS_SCRIPT, 0o750, "root:root");
        if let Some(a) = meta.apply.as_mut() {
            a.reload = None;
            a.restart = Some(service.clone());
        }
        out.add("backups/tls.sh.j2", &cx, meta, origin.clone());
        let mut meta = unit_file(&host.name, &service, false);
        if let Some(a) = meta.apply.as_mut() {
            a.restart = Some(service.clone());
        }
        out.add("backups/tls.service.j2", &cx, meta, origin.clone());
        out.add(
            "backups/tls-renew.service.j2",
            &cx,
            unit_file(&host.name, &format!("{TLS_UNIT}-renew.service"), false),
            origin.clone(),
        );
        out.add(
            "backups/tls-renew.timer.j2",
            &cx,
            unit_file(&host.name, &format!("{TLS_UNIT}-renew.timer"), true),
            origin,
        );
    }
}

/// Lowers the bucket setup of one MinIO service.
fn lower_minio(site: &Site, id: ServiceId, out: &mut Lowering) {
    let svc = site.service(id);
    let (Some(image), Some((port, port_loc))) = (&svc.image, super::service_port(site, id, "api")) else { return };
    for h in &svc.hosts {
        let host = site.host(h.value);
        let cx = BucketsContext {
            host: Src::at(host.name.clone(), "host", &host.loc),
            service: Src::at(svc.name.clone(), "service", &svc.loc),
            image: Src::at(image.value.to_string(), "image", &image.loc),
            port: Src::at(port.port, "MinIO API port", port_loc),
            buckets: buckets(site, id).into_iter().map(|b| Src::at(b.value, "bucket", &b.loc)).collect(),
            root_user: secret_file(&svc.name, "minio_root_user"),
            root_password: secret_file(&svc.name, "minio_root_password"),
            access_key: secret_file(&svc.name, S3_SECRETS[0]),
            secret_key: secret_file(&svc.name, S3_SECRETS[1]),
            ca: MINIO_CA,
        };
        let origin = Some(svc.loc.clone());
        out.add(
            "backups/buckets.sh.j2",
            &cx,
            ArtifactMeta::host_file("backups", &host.name, MINIO_BUCKETS, 0o750, "root:root"),
            origin.clone(),
        );
        let mut meta = unit_file(&host.name, "medianest-minio-buckets.service", true);
        if let Some(a) = meta.apply.as_mut() {
            // The script changing is what reruns it.
            a.restart = None;
        }
        out.add("backups/buckets.service.j2", &cx, meta, origin.clone());
    }
}

/// The secrets each host's backup jobs read, as `(host, service, name)`: delivered like
/// the service's own (under `/run/medianest/secrets/<service>/`, owned by its user, so
/// PostgreSQL's `archive_command` reads them), but never listed in the service's
/// `secrets`, which a container would see. MinIO's host gets the backup keys too: its
/// bucket setup creates the backup user with them.
pub fn secrets(site: &Site) -> Vec<(HostId, ServiceId, &'static str, &Loc)> {
    let mut out = std::collections::BTreeMap::new();
    for b in &site.backups {
        let minio = minio_target(site, b);
        // restic and pgBackRest encrypt with the repository password, whatever the
        // target; the S3 keys are for a MinIO target only.
        let mut names: Vec<&'static str> = Vec::new();
        if minio.is_some() {
            names.extend(S3_SECRETS);
        }
        if !matches!(b.method, BackupMethod::MinioMirror | BackupMethod::ZfsSnapshot) {
            names.push(PASSWORD_SECRET);
        }
        for h in job_hosts(site, b).into_keys() {
            for n in &names {
                out.entry((h, b.service.value, *n)).or_insert(&b.loc);
            }
        }
        for h in minio.iter().flat_map(|t| site.service(*t).hosts.iter().map(move |h| (h.value, *t))) {
            for n in S3_SECRETS {
                out.entry((h.0, h.1, n)).or_insert(&b.loc);
            }
        }
    }
    // Each MinIO host issues its own certificate with the CA's key.
    for id in super::configured(site, ServiceKind::Minio) {
        for h in &site.service(id).hosts {
            out.entry((h.value, id, super::minio::CA_KEY_SECRET)).or_insert(&site.service(id).loc);
        }
    }
    out.into_iter().map(|((h, s, n), l)| (h, s, n, l)).collect()
}

/// The Debian packages a host's backup jobs need, with the policies that need them.
pub fn packages(site: &Site, host: HostId) -> Vec<(&'static str, &Loc)> {
    let mut out = Vec::new();
    for b in &site.backups {
        if !job_hosts(site, b).contains_key(&host) {
            continue;
        }
        let pkgs: &[&'static str] = match b.method {
            BackupMethod::PgBasebackup => &["pgbackrest"],
            BackupMethod::PgDump | BackupMethod::Restic => &["restic"],
            BackupMethod::RedisRdb => &["restic", "redis-tools"],
            BackupMethod::ZfsSnapshot => &["sanoid"],
            BackupMethod::MinioMirror => &[],
        };
        out.extend(pkgs.iter().map(|p| (*p, &b.loc)));
    }
    // A MinIO host issues its certificate with openssl.
    for id in super::configured(site, ServiceKind::Minio) {
        if site.service(id).hosts.iter().any(|h| h.value == host) {
            out.push(("openssl", &site.service(id).loc));
        }
    }
    out
}

impl Family for Backups {
    fn name(&self) -> &'static str {
        "backups"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::BackupsFile>())
    }

    fn resolve(&self, parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(keys::resolve(parts, site, diags)))
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        for b in &site.backups {
            lower_policy(site, b, out);
        }
        for id in super::configured(site, ServiceKind::Minio).collect::<Vec<_>>() {
            lower_minio(site, id, out);
            lower_tls(site, id, out);
        }
        lower_ca(site, out);
    }

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let mut v = Vec::new();
        for b in &site.backups {
            let fact = |field: &'static str, value: String| Fact {
                category: "backup",
                subject: b.name.clone(),
                field,
                value: value.into(),
            };
            v.push(fact("worst_case_loss", b.worst_case_loss().to_string()));
            let hosts: Vec<String> = job_hosts(site, b).keys().map(|h| site.host(*h).name.clone()).collect();
            v.push(fact("runs_on", hosts.join(", ")));
            let when = match schedule::schedule(b.every.value.0, &b.name) {
                Schedule::Calendar(c) => format!("OnCalendar={c}"),
                Schedule::Every(s) => format!("every {s}s"),
            };
            v.push(fact("schedule", when));
        }
        if let Some(ca) = &model(site).ca {
            v.push(Fact {
                category: "minio tls",
                subject: "[minio_tls]".into(),
                field: "ca_sha256",
                value: keys::fingerprints(&ca.value).join(", ").into(),
            });
        }
        for id in super::configured(site, ServiceKind::Minio) {
            for h in &site.service(id).hosts {
                let (ips, names) = tls_names(site, id, h.value);
                let all = ips.into_iter().chain(names).map(|x| x.value);
                v.push(Fact {
                    category: "minio tls",
                    subject: format!("{} on {}", site.service(id).name, site.host(h.value).name),
                    field: "certificate names",
                    value: crate::model::facts::Val::many(all),
                });
            }
        }
        v
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        for b in &site.backups {
            verify_policy(site, b, diags);
        }
        verify_minio(site, diags);
    }
}

/// MinIO can serve TLS: the site has its CA. (A MinIO user the host cannot give the key
/// to is the containers family's check, with the secrets'.)
fn verify_minio(site: &Site, diags: &mut Diagnostics) {
    let ids: Vec<ServiceId> = super::configured(site, ServiceKind::Minio).collect();
    if let (Some(first), None) = (ids.first(), &model(site).ca_written) {
        let svc = site.service(*first);
        diags.push(
            Diagnostic::error(
                "missing-key",
                format!(
                    "`{}` is a MinIO service and the site has no `[minio_tls]`: MinIO serves S3 over HTTPS only, with a certificate signed by the site's MinIO CA",
                    svc.name
                ),
                svc.loc.clone(),
            )
            .label("`[minio_tls] ca` is required by this service")
            .help("create the CA (README, \"MinIO's TLS\"), add `[minio_tls]` with `ca = \"\"\"<ca.crt>\"\"\"`, and set the secret `minio_tls_ca_key` to its key"),
        );
    }
}

/// A policy's job can run: a target its method can write to, the keys it needs, the
/// secrets its service must list.
fn verify_policy(site: &Site, b: &Backup, diags: &mut Diagnostics) {
    let svc = site.service(b.service.value);
    let m = model(site);
    let minio = minio_target(site, b);
    match (b.method, &b.target.value) {
        (BackupMethod::ZfsSnapshot, Endpoint::Host(t)) => {
            if !site.host(*t).has_role(Role::Zfs) {
                diags.push(
                    Diagnostic::error(
                        "bad-endpoint",
                        format!(
                            "backup `{}` sends ZFS snapshots to `{}`, which has no `zfs` role",
                            b.name,
                            site.host(*t).name
                        ),
                        b.target.loc.clone(),
                    )
                    .help("send them to a host with a ZFS pool (role `zfs`)"),
                );
            }
            // syncoid reads its target as `user@host:dataset`, a host without a colon.
            if let Some(a) = svc.hosts.iter().filter_map(|h| reached(site, *t, h.value)).find(|a| a.value.is_ipv6()) {
                diags.push(
                    Diagnostic::error(
                        "bad-endpoint",
                        format!(
                            "backup `{}` sends ZFS snapshots to `{}` at {}, and syncoid cannot name an IPv6 address",
                            b.name,
                            site.host(*t).name,
                            a.value
                        ),
                        b.target.loc.clone(),
                    )
                    .also(a.loc.clone(), "the address the job host reaches")
                    .help("send them to a host the job hosts reach over IPv4"),
                );
            }
            if !m.dataset_written.contains(&b.name) {
                diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("backup `{}` snapshots ZFS but names no dataset", b.name),
                        b.loc.clone(),
                    )
                    .label("`dataset` is required here")
                    .help("add `dataset = \"<pool>/<dataset>\"`, the dataset that holds the service's data"),
                );
            }
        }
        (BackupMethod::ZfsSnapshot, _) => diags.push(
            Diagnostic::error(
                "bad-endpoint",
                format!(
                    "backup `{}` sends ZFS snapshots to `{}`, and syncoid sends to a host",
                    b.name,
                    site.endpoint_name(&b.target.value)
                ),
                b.target.loc.clone(),
            )
            .help("set `target = \"host:<a host with the zfs role>\"`"),
        ),
        (BackupMethod::PgBasebackup | BackupMethod::MinioMirror, _) if minio.is_none() => diags.push(
            Diagnostic::error(
                "bad-endpoint",
                format!(
                    "backup `{}` ({}) writes to `{}`, and its job writes to a MinIO service",
                    b.name,
                    b.method.name(),
                    site.endpoint_name(&b.target.value)
                ),
                b.target.loc.clone(),
            )
            .help("set `target = \"service:<a minio service>\"`"),
        ),
        (_, Endpoint::Zone(_) | Endpoint::Internet) => diags.push(
            Diagnostic::error(
                "bad-endpoint",
                format!(
                    "backup `{}` writes to `{}`, which is no machine a job can write to",
                    b.name,
                    site.endpoint_name(&b.target.value)
                ),
                b.target.loc.clone(),
            )
            .help("set `target` to a MinIO service (`service:minio`) or a host (`host:<name>`, restic over SFTP)"),
        ),
        // A backup onto itself is the core's to report.
        (_, Endpoint::Service(t)) if minio.is_none() && *t != b.service.value => diags.push(
            Diagnostic::error(
                "bad-endpoint",
                format!(
                    "backup `{}` writes to `{}`, a `{}` service, and restic writes to MinIO or to a host",
                    b.name,
                    site.service(*t).name,
                    site.service(*t).kind.value.info().name
                ),
                b.target.loc.clone(),
            )
            .help("set `target` to a MinIO service (`service:minio`) or a host (`host:<name>`, restic over SFTP)"),
        ),
        _ => {}
    }
    if let Some(t) = minio {
        let bucket = bucket(site, b);
        let have = buckets(site, t);
        if !have.iter().any(|x| x.value == bucket.value) {
            let names: Vec<&str> = have.iter().map(|x| x.value.as_str()).collect();
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "backup `{}` writes to bucket `{}`, which `{}` does not hold",
                        b.name,
                        bucket.value,
                        site.service(t).name
                    ),
                    bucket.loc.clone(),
                )
                .help(format!(
                    "use one of {}, or add it to the `buckets` of `{}`",
                    names.join(", "),
                    site.service(t).name
                )),
            );
        }
    }
    if b.method == BackupMethod::Restic && restic_paths(site, b).is_empty() {
        diags.push(
            Diagnostic::error(
                "missing-key",
                format!(
                    "backup `{}` has nothing to back up: `{}` has no volume and no known data directory",
                    b.name, svc.name
                ),
                b.loc.clone(),
            )
            .label("`paths` is required here")
            .help("add `paths = [\"/var/lib/<service>\"]`, the directories that hold its data"),
        );
    }
    if !m.paths.get(&b.name).is_none_or(|p| p.is_empty()) && b.method != BackupMethod::Restic {
        let loc = m.paths[&b.name][0].loc.clone();
        diags.push(
            Diagnostic::error(
                "bad-value",
                format!("`paths` is for `restic` policies, and `{}` uses `{}`", b.name, b.method.name()),
                loc,
            )
            .help("remove `paths`"),
        );
    }
    if let Some(d) = m.dataset.get(&b.name).filter(|_| b.method != BackupMethod::ZfsSnapshot) {
        diags.push(
            Diagnostic::error(
                "bad-value",
                format!("`dataset` is for `zfs-snapshot` policies, and `{}` uses `{}`", b.name, b.method.name()),
                d.loc.clone(),
            )
            .help("remove `dataset`"),
        );
    }
}
