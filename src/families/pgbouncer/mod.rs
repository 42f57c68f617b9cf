//! Family **pgbouncer**: PgBouncer (Debian's package, 1.18 on Debian 12) on every host of
//! a `pgbouncer` service, in front of the PostgreSQL service it `depends_on`. Templates:
//! `templates/pgbouncer/`. Per host, two files, split by what applies them:
//!
//! - **`/etc/pgbouncer/pgbouncer.ini`** (0640 `postgres:postgres`, as Debian ships it):
//!   the settings PgBouncer reads only at start (a `SIGHUP` leaves the listening sockets
//!   as they are: tried on 1.18), so the agent **restarts** `pgbouncer.service` when it
//!   changes: `listen_addr` (127.0.0.1 for local clients, plus exactly the host's
//!   addresses that a flow reaches on the pgbouncer port, found as the host firewall
//!   finds them), `listen_port`, `unix_socket_dir`, `pidfile` and `logfile` at Debian's
//!   paths, `auth_type = scram-sha-256` with `auth_file = /etc/pgbouncer/userlist.txt`,
//!   `max_client_conn` (this family's key). It ends with
//!   `%include /etc/pgbouncer/databases.ini`.
//! - **`/etc/pgbouncer/databases.ini`** (0640): the `[databases]` section, which a
//!   **reload** applies: each database of the `databases` key to the PostgreSQL primary,
//!   `<db>_ro` to its replicas (PgBouncer spreads new server connections over the
//!   listed hosts), or `*` to the primary when the key is absent (the primary: the
//!   failover floating address when the postgres service has `failover`, so writes
//!   follow a promotion with no configuration change); each entry carries
//!   `pool_mode` and `pool_size` (the keys), so a pool change never restarts the pooler.
//!   A pooler on the same host as the server reaches it on `127.0.0.1`; another host on
//!   its address in the zone the pooler speaks from. A replica that no flow lets the
//!   pooler reach is left out of the read-only entry.
//!
//! The password file is never in `generated/`. When the postgres service's `roles` name
//! a password secret this service lists too, [`RENDER`] writes [`RUN_AUTH_FILE`]
//! (tmpfs, 0640 `postgres:postgres`, one `"role" "password"` line each, `"` doubled)
//! from the delivered secrets before every start (a drop-in's `ExecStartPre=+`).
//! Otherwise `/etc/pgbouncer/userlist.txt` is the operator's: one `"user" "secret"`
//! line per role, best the SCRAM verifier PostgreSQL stores (`SELECT rolname,
//! rolpassword FROM pg_authid`).
//!
//! Checks: the service names exactly one postgres service in `depends_on`; each pooler
//! host (other than the primary itself) has a flow to the primary's postgres port; and
//! hosts × databases (1 for `*`) × `default_pool_size` fits in that service's
//! `max_connections` less PostgreSQL's 3 superuser slots. Validator
//! [`Validator::Pgbouncer`]: PgBouncer has no check mode, so the agent starts it on the
//! staged files in private network and mount namespaces and stops it once it is up; a
//! bad parameter stops it at once with exit code 1.

pub mod keys;

use std::any::Any;
use std::collections::BTreeMap;

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering, Part};
use crate::artifact::{ArtifactMeta, Validator};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::keys::KeySet;
use crate::model::facts::{Fact, Val};
use crate::model::flows::Peer;
use crate::model::{HostId, ServiceId, ServiceKind, Site};

/// Where Debian's package reads its configuration.
pub const INI: &str = "/etc/pgbouncer/pgbouncer.ini";
/// The included `[databases]` file.
pub const DATABASES_INI: &str = "/etc/pgbouncer/databases.ini";
/// The password file the operator writes.
pub const AUTH_FILE: &str = "/etc/pgbouncer/userlist.txt";
/// The unit.
pub const UNIT: &str = "pgbouncer.service";
/// PostgreSQL's `superuser_reserved_connections` default: slots a pool cannot take.
pub const SUPERUSER_RESERVED: u32 = 3;

/// The pgbouncer family.
pub struct Pgbouncer;

/// A role PgBouncer authenticates, with its delivered password.
#[derive(Serialize, Clone)]
pub struct UserView {
    /// The role.
    pub name: Src<String>,
    /// Where the secrets delivery puts its password on the pooler.
    pub password: Src<String>,
}

/// The auth file rendered from the delivered secrets before every start (tmpfs).
pub const RUN_AUTH_FILE: &str = "/run/medianest/pgbouncer/userlist.txt";
/// The script that renders it.
pub const RENDER: &str = "/etc/medianest/pgbouncer/render-userlist.sh";

/// Context of `pgbouncer/pgbouncer.ini.j2`.
#[derive(Serialize)]
pub struct IniContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The PostgreSQL service behind it.
    pub backend: Src<String>,
    /// Addresses reached by a flow on the pgbouncer port (127.0.0.1 is added).
    pub listen_addr: Vec<Src<String>>,
    /// The port.
    pub listen_port: Src<u16>,
    /// `max_client_conn`.
    pub max_client_conn: Src<u32>,
    /// The password file.
    pub auth_file: &'static str,
    /// The roles whose password the pooler renders into its auth file from the
    /// delivered secrets (empty: the operator writes the auth file).
    pub users: Vec<UserView>,
    /// The included file.
    pub databases_ini: &'static str,
    /// The postgres service's failover address, when it has one (faster retries).
    pub failover: Option<Src<String>>,
}

/// Context of `pgbouncer/databases.ini.j2`.
#[derive(Serialize)]
pub struct DatabasesContext {
    /// The host.
    pub host: Src<String>,
    /// The service.
    pub service: Src<String>,
    /// The PostgreSQL service behind it.
    pub backend: Src<String>,
    /// One line per entry.
    pub entries: Vec<Entry>,
    /// The replicas no flow lets this host reach (left out of the read-only entries).
    pub unreached: Vec<Src<String>>,
}

/// One `[databases]` entry.
#[derive(Serialize)]
pub struct Entry {
    /// The name clients ask for (`medianest`, `medianest_ro`, `*`).
    pub name: Src<String>,
    /// The PostgreSQL database (`None` for `*`: the name the client asked for).
    pub dbname: Option<Src<String>>,
    /// The server addresses, comma-separated.
    pub hosts: Src<String>,
    /// The server port.
    pub port: Src<u16>,
    /// `pool_mode`.
    pub pool_mode: Src<String>,
    /// `pool_size`.
    pub pool_size: Src<u32>,
    /// `primary` or `replicas`.
    pub role: &'static str,
}

/// The pgbouncer services this family configures (a known kind, at least one host).
fn services(site: &Site) -> impl Iterator<Item = ServiceId> + '_ {
    super::configured(site, ServiceKind::Pgbouncer)
}

/// The postgres services a pgbouncer service depends on, with where each is named.
fn backends(site: &Site, id: ServiceId) -> Vec<(ServiceId, &Loc)> {
    site.service(id)
        .depends_on
        .iter()
        .filter(|d| {
            let s = site.service(d.value);
            s.declared.kind_known && s.kind.value == ServiceKind::Postgres
        })
        .map(|d| (d.value, &d.loc))
        .collect()
}

/// The primary of a postgres service (the named one, or its only host) and its replicas.
fn primary_of(site: &Site, pg: ServiceId) -> Option<(HostId, Loc, Vec<HostId>)> {
    let svc = site.service(pg);
    let (p, loc) = match super::postgres::model(site).primary.get(&pg) {
        Some(p) => (p.value, p.loc.clone()),
        None if svc.hosts.len() == 1 => (svc.hosts[0].value, svc.hosts[0].loc.clone()),
        None => return None,
    };
    let replicas = svc.hosts.iter().map(|h| h.value).filter(|h| *h != p).collect();
    Some((p, loc, replicas))
}

/// The address `from` connects to on `to`: loopback on the same host, else `to`'s
/// interface in the zone `from` speaks from. With where it is written.
fn address_from(site: &Site, from: HostId, to: HostId) -> Option<(String, &Loc)> {
    let t = site.host(to);
    if from == to {
        return Some(("127.0.0.1".into(), &t.loc));
    }
    let i = crate::model::flows::arrival(site, to, Peer::Host(from));
    t.interfaces.get(i).map(|a| (a.address.value.to_string(), &a.address.loc))
}

/// The pgbouncer model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model {
        pool_mode: BTreeMap::new(),
        default_pool_size: BTreeMap::new(),
        max_client_conn: BTreeMap::new(),
        databases: BTreeMap::new(),
    };
    site.ext.get::<keys::Model>().unwrap_or(&EMPTY)
}

/// Lowers one service.
fn lower_service(site: &Site, id: ServiceId, out: &mut Lowering) {
    let svc = site.service(id);
    let [(pg, dep_loc)] = backends(site, id)[..] else { return };
    let Some((primary, primary_loc, replicas)) = primary_of(site, pg) else { return };
    let Some((port, port_loc)) = super::service_port(site, id, "pgbouncer") else { return };
    let Some((pg_port, pg_port_loc)) = super::service_port(site, pg, "postgres") else { return };
    let m = model(site);
    let mode = m.pool_mode(site, id);
    let size = m.default_pool_size(site, id);
    let conns = m.max_client_conn(site, id);
    let pg_svc = site.service(pg);
    let service = Src::at(svc.name.clone(), "service", &svc.loc);
    let backend = Src::of(pg_svc.name.clone(), "the postgres service (depends_on)", [dep_loc, &pg_svc.loc]);
    let file = |host: &str, target: &str, restart: bool| {
        let mut meta = ArtifactMeta::host_file("pgbouncer", host, target, 0o640, "postgres:postgres");
        if let Some(a) = meta.apply.as_mut() {
            a.validate = Some(Validator::Pgbouncer);
            if restart {
                a.restart = Some(UNIT.into());
            } else {
                a.reload = Some(UNIT.into());
            }
        }
        meta
    };
    // The postgres service's roles whose password secret this service lists too: the
    // pooler authenticates them with the delivered values.
    let users: Vec<UserView> = super::postgres::model(site)
        .roles
        .get(&pg)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let listed = svc.secrets.iter().find(|x| x.value == r.password.value)?;
            Some(UserView {
                name: Src::at(r.name.value.clone(), "role (the postgres service's roles)", &r.name.loc),
                password: Src::of(
                    super::secret_file(&svc.name, &r.password.value),
                    "the role's password (delivered)",
                    [&r.password.loc, &listed.loc],
                ),
            })
        })
        .collect();
    for h in &svc.hosts {
        let hid = h.value;
        let host = site.host(hid);
        if host.interfaces.is_empty() {
            continue;
        }
        let host_src = Src::at(host.name.clone(), "host", &host.loc);
        let origin = Some(svc.loc.clone());
        let ini = IniContext {
            host: host_src.clone(),
            service: service.clone(),
            backend: backend.clone(),
            listen_addr: super::listen_addresses(site, hid, &[port]),
            listen_port: Src::at(port.port, "pgbouncer port", port_loc),
            max_client_conn: Src::at(conns.value, "max_client_conn", &conns.loc),
            auth_file: if users.is_empty() { AUTH_FILE } else { RUN_AUTH_FILE },
            users: users.clone(),
            databases_ini: DATABASES_INI,
            failover: super::postgres::failover::plan(site, pg)
                .map(|f| Src::at(f.vip().value.to_string(), "the PostgreSQL failover address", &f.vip().loc)),
        };
        out.add("pgbouncer/pgbouncer.ini.j2", &ini, file(&host.name, INI, true), origin.clone());
        if !users.is_empty() {
            // PgBouncer reads a `"user" "password"` file, not bare values: rendered by root
            // before every start (a drop-in's ExecStartPre=+).
            let mut meta = ArtifactMeta::host_file("pgbouncer", &host.name, RENDER, 0o750, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.restart = Some(UNIT.into());
            }
            out.add("pgbouncer/render-userlist.sh.j2", &ini, meta, origin.clone());
            let target = format!("/etc/systemd/system/{UNIT}.d/medianest-userlist.conf");
            let mut meta = ArtifactMeta::host_file("pgbouncer", &host.name, &target, 0o644, "root:root");
            if let Some(a) = meta.apply.as_mut() {
                a.reload = Some("daemon-reload".into());
                a.restart = Some(UNIT.into());
            }
            out.add("pgbouncer/userlist-drop-in.conf.j2", &ini, meta, origin.clone());
        }

        let Some((paddr, paddr_loc)) = address_from(site, hid, primary) else { continue };
        let reach = |to: HostId| to == hid || site.flow_plan().allows(site, Some(hid), Some(to), pg_port);
        let mut ro: Vec<(String, &Loc)> = Vec::new();
        let mut unreached = Vec::new();
        for r in &replicas {
            let rh = site.host(*r);
            if !reach(*r) {
                unreached.push(Src::at(rh.name.clone(), "replica no flow reaches", &rh.loc));
                continue;
            }
            if let Some(a) = address_from(site, hid, *r) {
                ro.push(a);
            }
        }
        let pool_mode = Src::at(mode.value.name().to_string(), "pool_mode", &mode.loc);
        let pool_size = Src::at(size.value, "default_pool_size", &size.loc);
        let server_port = Src::at(pg_port.port, "postgres port", pg_port_loc);
        // With failover, writes go to the floating address: whichever host is primary.
        let primary_hosts = match super::postgres::failover::plan(site, pg) {
            Some(f) => Src::of(
                f.vip().value.to_string(),
                "the PostgreSQL failover address (whichever host is primary)",
                [&f.vip().loc, &f.failover.loc],
            ),
            None => Src::of(paddr, "the PostgreSQL primary's address", [paddr_loc, &primary_loc]),
        };
        let ro_hosts = (!ro.is_empty()).then(|| {
            Src::of(
                ro.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>().join(","),
                "the PostgreSQL replicas' addresses",
                ro.iter().map(|(_, l)| *l).chain(pg_svc.hosts.iter().map(|h| &h.loc)),
            )
        });
        let mut entries = Vec::new();
        match m.databases.get(&id) {
            Some(dbs) if !dbs.is_empty() => {
                for d in dbs {
                    entries.push(Entry {
                        name: Src::at(d.value.clone(), "database", &d.loc),
                        dbname: Some(Src::at(d.value.clone(), "database", &d.loc)),
                        hosts: primary_hosts.clone(),
                        port: server_port.clone(),
                        pool_mode: pool_mode.clone(),
                        pool_size: pool_size.clone(),
                        role: "primary",
                    });
                    if let Some(ro_hosts) = &ro_hosts {
                        entries.push(Entry {
                            name: Src::at(format!("{}_ro", d.value), "read-only database (on the replicas)", &d.loc),
                            dbname: Some(Src::at(d.value.clone(), "database", &d.loc)),
                            hosts: ro_hosts.clone(),
                            port: server_port.clone(),
                            pool_mode: pool_mode.clone(),
                            pool_size: pool_size.clone(),
                            role: "replicas",
                        });
                    }
                }
            }
            _ => entries.push(Entry {
                name: Src::at("*".to_string(), "every database (no `databases` key)", &svc.loc),
                dbname: None,
                hosts: primary_hosts.clone(),
                port: server_port.clone(),
                pool_mode: pool_mode.clone(),
                pool_size: pool_size.clone(),
                role: "primary",
            }),
        }
        let dbs =
            DatabasesContext { host: host_src, service: service.clone(), backend: backend.clone(), entries, unreached };
        out.add("pgbouncer/databases.ini.j2", &dbs, file(&host.name, DATABASES_INI, false), origin);
    }
}

impl Family for Pgbouncer {
    fn name(&self) -> &'static str {
        "pgbouncer"
    }

    fn keys(&self) -> Option<KeySet> {
        Some(KeySet::of::<keys::PgbouncerFile>())
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
            let fact =
                |field: &'static str, value: Val| Fact { category: "service", subject: subject.clone(), field, value };
            v.push(fact("pool_mode", m.pool_mode(site, id).value.name().to_string().into()));
            v.push(fact("default_pool_size", m.default_pool_size(site, id).value.to_string().into()));
            v.push(fact("max_client_conn", m.max_client_conn(site, id).value.to_string().into()));
            let dbs = m.databases.get(&id).map(|d| d.iter().map(|x| x.value.clone()).collect::<Vec<_>>());
            v.push(fact("databases", Val::many(dbs.unwrap_or_else(|| vec!["*".to_string()]))));
        }
        v
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let m = model(site);
        for id in services(site) {
            let s = site.service(id);
            let pgs = backends(site, id);
            let Some((pg, _)) = pgs.first().copied() else {
                diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("pgbouncer service `{}` names no postgres service in `depends_on`", s.name),
                        s.loc.clone(),
                    )
                    .help("add the PostgreSQL service it pools to `depends_on`"),
                );
                continue;
            };
            if let Some((_, loc)) = pgs.get(1) {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("pgbouncer service `{}` depends on more than one postgres service", s.name),
                        (*loc).clone(),
                    )
                    .help("one pooler service per PostgreSQL service: declare another pgbouncer service"),
                );
                continue;
            }
            let pg_svc = site.service(pg);
            let size = m.default_pool_size(site, id);
            let dbs = m.databases.get(&id).map(|d| d.len()).unwrap_or(0).max(1) as u32;
            let hosts = s.hosts.len() as u32;
            let max = super::postgres::model(site).max_connections(site, pg);
            let usable = max.value.saturating_sub(SUPERUSER_RESERVED);
            if size.value * dbs * hosts > usable {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`{}` may open {} connections to `{}` ({hosts} host(s) × {dbs} database(s) × default_pool_size {}), more than its max_connections {} less {SUPERUSER_RESERVED} for superusers",
                            s.name,
                            size.value * dbs * hosts,
                            pg_svc.name,
                            size.value,
                            max.value
                        ),
                        size.loc.clone(),
                    )
                    .label(format!("`{}` allows {} connections", pg_svc.name, max.value))
                    .help("lower `default_pool_size`, or raise `max_connections` on the postgres service"),
                );
            }
            let Some((primary, _, _)) = primary_of(site, pg) else { continue };
            let Some((pg_port, _)) = super::service_port(site, pg, "postgres") else { continue };
            // With failover, every host that may become the primary is reached too.
            let targets: Vec<HostId> = match super::postgres::failover::plan(site, pg) {
                Some(f) => f.candidates.iter().map(|c| c.value).collect(),
                None => vec![primary],
            };
            for h in &s.hosts {
                let Some(primary) = targets
                    .iter()
                    .copied()
                    .find(|t| h.value != *t && !site.flow_plan().allows(site, Some(h.value), Some(*t), pg_port))
                else {
                    continue;
                };
                {
                    diags.push(
                        Diagnostic::error(
                            "missing-flow",
                            format!(
                                "PgBouncer on `{}` forwards to the primary `{}`, but no flow allows {} → {} {}",
                                site.host(h.value).name,
                                site.host(primary).name,
                                site.host(h.value).name,
                                site.host(primary).name,
                                pg_port
                            ),
                            h.loc.clone(),
                        )
                        .help(format!(
                            "add a flow from `service:{}` to `service:{}` on the postgres port",
                            s.name, pg_svc.name
                        )),
                    );
                }
            }
        }
    }
}
