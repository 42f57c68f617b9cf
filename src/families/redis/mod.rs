//! Family **redis**: Redis 7 (Debian's `redis-server`) on every host of a `redis` service.
//! Templates: `templates/redis/`. Per host, **`/etc/redis/redis.conf`** (0640
//! `redis:redis`, as Debian ships it); the agent **restarts** `redis-server.service` when
//! it changes (Redis has no reload: a SIGHUP is ignored, and `bind`/`port` change only at
//! start). It holds:
//!
//! - `bind 127.0.0.1 -::1` plus exactly the host's addresses that a flow reaches on the
//!   redis port (found as the host firewall finds them), `port`, `protected-mode yes`;
//! - the password, never in `generated/`: the last line is `include` of a file holding
//!   `requirepass <the service's first secret>`. Redis reads no password file of its
//!   own, so [`RENDER`] writes it from the secret the agent delivers
//!   (`/run/medianest/secrets/<service>/<name>`) into [`RENDERED`] (tmpfs, 0640
//!   `redis:redis`, the value hex-escaped in a quoted string so any byte is safe), run
//!   as root by a drop-in's `ExecStartPre=+` before every start. A service that lists
//!   no secret includes `/etc/redis/secrets.conf`, written by the operator. Redis
//!   refuses to start while the file is missing, so a host is never served without a
//!   password. (An ACL file, `aclfile /etc/redis/users.acl`, is
//!   the finer way, one user per client with its own commands: not yet, every client here
//!   is one application.)
//! - `maxmemory` and `maxmemory-policy` (this family's keys; `maxmemory` defaults to
//!   half the service's memory limit, for the fork of a save), persistence (`appendonly`,
//!   `appendfsync`, the RDB `save` interval: the keys), `dir /var/lib/redis`, Debian's
//!   log file and pid file, `supervised systemd`, `daemonize no`;
//! - the commands renamed to nothing, so no client can run them ([`DISABLED`]):
//!   `FLUSHALL` and `FLUSHDB` (one call empties the sessions and queues), `CONFIG` (a
//!   client could turn off the password or persistence, or write files anywhere with
//!   `CONFIG SET dir`), `DEBUG` (crashes and sleeps the server; Redis 7 refuses it already
//!   with `enable-debug-command no`, kept for clarity). Not `KEYS`: it blocks the server
//!   on a large keyspace but destroys nothing, and clients that call it would break;
//!   not `SHUTDOWN`: systemd restarts the server. ACLs (`-@dangerous` per user) are the
//!   modern way and come with the ACL file.
//!
//! Validator [`Validator::Redis`]: Redis has no config-test mode, so the agent starts
//! `redis-server` on the staged file in private network and mount namespaces (no port,
//! scratch socket and directory, the included password file an empty stand-in) and
//! stops it once it is up; a bad directive stops it at once with exit code 1.

pub mod keys;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::{Diagnostic, Diagnostics};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::values::Size;
use crate::model::{ServiceId, ServiceKind, Site};

/// The configuration file.
pub const CONF: &str = "/etc/redis/redis.conf";
/// The file holding `requirepass` when the service lists no secret: written by the
/// operator.
pub const SECRETS: &str = "/etc/redis/secrets.conf";
/// The file holding `requirepass` rendered from the delivered secret before each start
/// (a tmpfs: the password is never on disk).
pub const RENDERED: &str = "/run/medianest/redis/secrets.conf";
/// The script that renders it.
pub const RENDER: &str = "/etc/medianest/redis/render-secrets.sh";
/// The drop-in that runs it before Redis starts.
pub const DROP_IN: &str = "/etc/systemd/system/redis-server.service.d/medianest-secrets.conf";
/// The unit.
pub const UNIT: &str = "redis-server.service";
/// Commands no client may run (renamed to nothing).
pub const DISABLED: &[&str] = &["FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG"];

/// The redis family.
pub struct Redis;

/// Context of `redis/redis.conf.j2`.
#[derive(Serialize)]
pub struct ConfContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// Addresses reached by a flow on the redis port (loopback is added).
    pub bind: Vec<Src<String>>,
    /// The port.
    pub port: Src<u16>,
    /// `maxmemory`, as Redis writes it.
    pub maxmemory: Src<String>,
    /// `maxmemory-policy`.
    pub maxmemory_policy: Src<String>,
    /// `appendonly`.
    pub appendonly: Src<bool>,
    /// `appendfsync`.
    pub appendfsync: Src<String>,
    /// The `save` directive's value: `<seconds> 1`, or `""` (no snapshots).
    pub save: Src<String>,
    /// The RDB interval in seconds (`None`: no snapshots).
    pub save_seconds: Option<u64>,
    /// The secret the operator puts in the secrets file.
    pub secret: Option<Src<String>>,
    /// The secrets file.
    pub secrets: &'static str,
    /// Where the secrets delivery puts the password (when the service lists a secret).
    pub delivered: Option<String>,
    /// Commands renamed to nothing.
    pub disabled: &'static [&'static str],
}

/// A size as Redis writes it: `mb` or `kb` when whole, else bytes.
pub fn redis_size(s: Size) -> String {
    for (unit, shift) in [("gb", 30), ("mb", 20), ("kb", 10)] {
        if s.0.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", s.0 >> shift);
        }
    }
    s.0.to_string()
}

/// The redis services this family configures (a known kind, at least one host).
fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    super::configured(site, ServiceKind::Redis)
}

/// The redis model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model {
        maxmemory: BTreeMap::new(),
        maxmemory_policy: BTreeMap::new(),
        appendonly: BTreeMap::new(),
        appendfsync: BTreeMap::new(),
        save: BTreeMap::new(),
    };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// Lowers one service.
fn lower_service(site: &Site, id: ServiceId, out: &mut Lowering) {
    let svc = site.service(id);
    let m = model(site);
    let maxmemory = m.maxmemory(site, id);
    if maxmemory.value.0 > svc.resources.memory.0 || maxmemory.value.0 < keys::MIN_MAXMEMORY {
        return;
    }
    let Some((port, port_loc)) = super::service_port(site, id, "redis") else { return };
    let policy = m.maxmemory_policy(site, id);
    let aof = m.appendonly(site, id);
    let fsync = m.appendfsync(site, id);
    let save = m.save(site, id);
    for h in &svc.hosts {
        let host = site.host(h.value);
        if host.interfaces.is_empty() {
            continue;
        }
        let ctx = ConfContext {
            host: Src::at(host.name.clone(), "host", &host.loc),
            service: Src::at(svc.name.clone(), "service", &svc.loc),
            bind: super::listen_addresses(site, h.value, &[port]),
            port: Src::at(port.port, "redis port", port_loc),
            maxmemory: Src::of(redis_size(maxmemory.value), "maxmemory", [&maxmemory.loc]),
            maxmemory_policy: Src::at(policy.value.to_string(), "maxmemory_policy", &policy.loc),
            appendonly: Src::at(aof.value, "appendonly", &aof.loc),
            appendfsync: Src::at(fsync.value.to_string(), "appendfsync", &fsync.loc),
            save: Src::at(
                save.value.map(|d| format!("{} 1", d.0)).unwrap_or_else(|| "\"\"".into()),
                "RDB snapshot interval (save)",
                &save.loc,
            ),
            save_seconds: save.value.map(|d| d.0),
            secret: svc.secrets.first().map(|s| Src::at(s.value.clone(), "secret (requirepass)", &s.loc)),
            secrets: if svc.secrets.is_empty() { SECRETS } else { RENDERED },
            delivered: svc.secrets.first().map(|s| super::secret_file(&svc.name, &s.value)),
            disabled: DISABLED,
        };
        let mut meta = ArtifactMeta::host_file("redis", &host.name, CONF, 0o640, "redis:redis");
        if let Some(a) = meta.apply.as_mut() {
            a.validate = Some(Validator::Redis);
            a.restart = Some(UNIT.into());
        }
        out.add("redis/redis.conf.j2", &ctx, meta, Some(svc.loc.clone()));
        if ctx.delivered.is_some() {
            // requirepass from the delivered secret, rendered by root before each start:
            // Redis reads no password file of its own.
            let mut meta = ArtifactMeta::host_file("redis", &host.name, RENDER, 0o750, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.restart = Some(UNIT.into());
            }
            out.add("redis/render-secrets.sh.j2", &ctx, meta, Some(svc.loc.clone()));
            let mut meta = ArtifactMeta::host_file("redis", &host.name, DROP_IN, 0o644, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.reload = Some("daemon-reload".into());
                a.restart = Some(UNIT.into());
            }
            out.add("redis/secrets-drop-in.conf.j2", &ctx, meta, Some(svc.loc.clone()));
        }
    }
}

impl Family for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::RedisFile>())
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
        let mut v = Vec::new();
        for id in services(site) {
            let subject = site.service(id).name.clone();
            let fact = |field: &'static str, value: String| Fact {
                category: "service",
                subject: subject.clone(),
                field,
                value: value.into(),
            };
            v.push(fact("maxmemory", redis_size(m.maxmemory(site, id).value)));
            v.push(fact("maxmemory_policy", m.maxmemory_policy(site, id).value.to_string()));
            v.push(fact("appendonly", m.appendonly(site, id).value.to_string()));
            v.push(fact("appendfsync", m.appendfsync(site, id).value.to_string()));
            let save = m.save(site, id).value.map(|d| format!("{}s", d.0)).unwrap_or_else(|| "off".into());
            v.push(fact("save", save));
        }
        v
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let m = model(site);
        for id in services(site) {
            let s = site.service(id);
            let mm = m.maxmemory(site, id);
            let limit = s.resources.memory;
            if mm.value.0 > limit.0 {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` sets maxmemory {}, above its memory limit {} (resources.memory): the kernel would kill Redis before it evicts",
                            s.name,
                            redis_size(mm.value),
                            redis_size(limit)
                        ),
                        mm.loc.clone(),
                    )
                    .help("lower `maxmemory` (about half the limit leaves room for the fork of a save) or raise `resources.memory`"),
                );
            } else if mm.value.0 < keys::MIN_MAXMEMORY {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` sets maxmemory {}, under 1mb", s.name, redis_size(mm.value)),
                        mm.loc.clone(),
                    )
                    .help("give Redis at least `1m`"),
                );
            }
        }
    }
}
