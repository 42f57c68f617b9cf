//! PostgreSQL's own keys on `[services.<name>]`: which host holds the primary, how
//! many connections the server accepts, its roles, and automated failover.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostics, Loc};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::{At, HostId, ServiceId, ServiceKind, Site};
use crate::resolve::cx::{Cx, RefTo};

crate::keys! {
    /// PostgreSQL's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct PostgresFile {
        /// PostgreSQL's keys on services.
        #[serde(default)]
        pub services: Named<PostgresService>,
    }
}

crate::keys! {
    /// PostgreSQL's keys of `[services.<name>]` (`kind = "postgres"` only).
    #[derive(Debug, Deserialize)]
    pub struct PostgresService {
        /// Required when the service runs on more than one host. The host that holds the primary; the others are streaming replicas.
        pub primary: Option<Str>,
        /// The login roles the service's primary holds, each with the databases it owns: `roles = { medianest = { password = "postgres_password", owns = ["medianest"] } }`. `/etc/medianest/postgres/setup.sh` creates them (and the replication role when the service has replicas) from the secrets' files on every apply; a role or database is never dropped.
        #[serde(default)]
        pub roles: Named<Spanned<RawRole>>,
        /// `max_connections` of every host of the service (default `100`, from 10 to 5000). Each connection is a server process; `work_mem` is derived from it (the service's memory / (4 × max_connections)), so more connections get less memory each. A replica must allow as many as its primary, so it is one value per service.
        pub max_connections: Option<Spanned<i64>>,
        /// Automated failover through a database floating address: `failover = { vip = "10.0.3.20", vrid = 52, promote = ["db2"] }`. keepalived on the primary and on each replica that may be promoted holds `vip` (VRRP, `nopreempt`), PostgreSQL also listens on it and PgBouncer sends writes to it; when the primary's host is lost, the replica that takes the address checks that the old primary is unreachable or not a primary and promotes itself. A former primary refuses to start as a primary while another host is one (it is rebuilt as a replica: the failback runbook). Needs `vrrp` among the service's `ports` (keepalived is part of the service) and a `vrrp` flow between its hosts.
        pub failover: Option<Spanned<RawFailover>>,
    }
}

crate::keys! {
    /// `failover` of a postgres service.
    #[derive(Debug, Deserialize)]
    pub struct RawFailover {
        /// Required. The database floating address: a free address in the zone the service's hosts share.
        pub vip: Option<Str>,
        /// The VRRP router id, 1–255 (default `51`), unique among the keepalived instances of the zone.
        pub vrid: Option<Spanned<i64>>,
        /// The replicas that may be promoted (default every replica of the service). A replica not listed follows whichever host is primary but never takes the address.
        pub promote: Option<Vec<Str>>,
    }
}

crate::keys! {
    /// One login role of `roles`.
    #[derive(Debug, Deserialize)]
    pub struct RawRole {
        /// Required. The secret (one of the service's `secrets`) that holds the role's password.
        pub password: Option<Str>,
        /// The databases the role owns (names of `[a-z][a-z0-9_]*`), created when missing.
        #[serde(default)]
        pub owns: Vec<Str>,
        /// The role's connection limit (default none, from 1 to the service's `max_connections`).
        pub connection_limit: Option<Spanned<i64>>,
    }
}

/// A login role.
#[derive(Debug, Clone)]
pub struct Role {
    /// Its name.
    pub name: At<String>,
    /// The secret holding its password.
    pub password: At<String>,
    /// The databases it owns.
    pub owns: Vec<At<String>>,
    /// Its connection limit.
    pub connection_limit: Option<At<u32>>,
}

/// A role or database name PostgreSQL and the setup script accept unquoted.
pub fn sql_name(s: &str) -> Result<String, crate::model::values::ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(crate::model::values::ValueError {
            code: "bad-value",
            message: format!("`{}` is not a PostgreSQL name medianest writes", crate::model::values::printable(s)),
            help: "use up to 63 lowercase letters, digits and `_`, starting with a letter, e.g. `medianest`".into(),
        })
    }
}

/// A service's automated failover.
#[derive(Debug, Clone)]
pub struct Failover {
    /// The `failover` table.
    pub loc: Loc,
    /// The floating address.
    pub vip: At<IpAddr>,
    /// The VRRP router id (where it is written, or the table for the default).
    pub vrid: At<u8>,
    /// The replicas that may be promoted, when written (else every replica).
    pub promote: Option<Vec<At<HostId>>>,
}

/// The VRRP router id when `failover` writes none (keepalived's own default).
pub const DEFAULT_VRID: u8 = 51;

/// The postgres family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// `failover` of each service that writes it.
    pub failover: BTreeMap<ServiceId, Failover>,
    /// The primary of each service that names one.
    pub primary: BTreeMap<ServiceId, At<HostId>>,
    /// `max_connections` of each service that writes it.
    pub max_connections: BTreeMap<ServiceId, At<u32>>,
    /// `roles` of each service that writes them.
    pub roles: BTreeMap<ServiceId, Vec<Role>>,
}

/// `max_connections` when a service writes none (PostgreSQL's own default).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 100;
/// The fewest connections accepted: PostgreSQL keeps 3 for superusers.
pub const MIN_MAX_CONNECTIONS: i64 = 10;
/// The most connections accepted: one process each, and a pooler (PgBouncer) is the
/// answer to more clients.
pub const MAX_MAX_CONNECTIONS: i64 = 5000;

impl Model {
    /// A service's `max_connections`, and where it is decided (the service itself when
    /// it writes none: the default).
    pub fn max_connections(&self, site: &Site, id: ServiceId) -> At<u32> {
        self.max_connections
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: DEFAULT_MAX_CONNECTIONS, loc: site.service(id).loc.clone() })
    }
}

/// Types PostgreSQL's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<PostgresFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        if let Some(v) = &k.max_connections {
            let mut cx = Cx::new(file, site, diags);
            if svc.declared.kind_known && svc.kind.value != ServiceKind::Postgres {
                cx.not_for_kind("max_connections", "postgres", svc, v.span());
            } else if let Some(n) = cx.int(v, MIN_MAX_CONNECTIONS, MAX_MAX_CONNECTIONS, "max_connections") {
                out.max_connections.insert(id, n);
            }
        }
        if !k.roles.is_empty() {
            let mut cx = Cx::new(file, site, diags);
            if svc.declared.kind_known && svc.kind.value != ServiceKind::Postgres {
                cx.not_for_kind("roles", "postgres", svc, k.roles[0].span());
            } else {
                let roles = resolve_roles(&mut cx, svc, &k.roles);
                out.roles.insert(id, roles);
            }
        }
        if let Some(f) = &k.failover {
            let mut cx = Cx::new(file, site, diags);
            if svc.declared.kind_known && svc.kind.value != ServiceKind::Postgres {
                cx.not_for_kind("failover", "postgres", svc, f.span());
            } else if let Some(f) = resolve_failover(&mut cx, f) {
                out.failover.insert(id, f);
            }
        }
        let Some(p) = &k.primary else { continue };
        let mut cx = Cx::new(file, site, diags);
        if svc.kind.value != ServiceKind::Postgres {
            cx.not_for_kind("primary", "postgres", svc, p.span());
            continue;
        }
        if let Some(h) = cx.reference_str(RefTo::Host, p) {
            out.primary.insert(id, At { value: HostId(h.value), loc: h.loc });
        }
    }
    out
}

/// Types a service's `failover`.
fn resolve_failover(cx: &mut Cx, raw: &Spanned<RawFailover>) -> Option<Failover> {
    let loc = cx.loc(raw.span());
    let r = raw.get_ref();
    let vip = cx.required(&r.vip, &loc, "vip", "failover");
    let vip = vip.and_then(|v| cx.value(v, crate::model::values::address));
    let vrid = match &r.vrid {
        Some(v) => cx.int::<u8>(v, 1, 255, "VRRP router id")?,
        None => At { value: DEFAULT_VRID, loc: loc.clone() },
    };
    // An unknown host is reported; the failover is then left out whole (a shorter list
    // would be reported again as wrong).
    let promote = match &r.promote {
        Some(hs) => {
            let found: Vec<At<HostId>> = hs
                .iter()
                .filter_map(|h| cx.reference_str(RefTo::Host, h))
                .map(|h| At { value: HostId(h.value), loc: h.loc })
                .collect();
            if found.len() < hs.len() {
                return None;
            }
            Some(found)
        }
        None => None,
    };
    Some(Failover { loc, vip: vip?, vrid, promote })
}

/// Types a service's `roles`.
fn resolve_roles(cx: &mut Cx, svc: &crate::model::Service, raw: &Named<Spanned<RawRole>>) -> Vec<Role> {
    let mut out = Vec::new();
    for (name, r) in raw.iter() {
        let Some(name) = cx.value(name, sql_name) else { continue };
        let loc = cx.loc(r.span());
        let r = r.get_ref();
        let Some(pw) = cx.required(&r.password, &loc, "password", &format!("roles.{}", name.value)) else { continue };
        let pw_loc = cx.loc(pw.span());
        if !svc.secrets.iter().any(|s| s.value == *pw.get_ref()) {
            cx.diags.push(
                crate::diag::Diagnostic::error(
                    "unknown-reference",
                    format!(
                        "role `{}` reads its password from `{}`, which `{}` does not list in `secrets`",
                        name.value,
                        pw.get_ref(),
                        svc.name
                    ),
                    pw_loc,
                )
                .also(svc.loc.clone(), "the service")
                .help(format!(
                    "add \"{}\" to `secrets` of `{}`, or name one of its secrets",
                    pw.get_ref(),
                    svc.name
                )),
            );
            continue;
        }
        let owns = r.owns.iter().filter_map(|d| cx.value(d, sql_name)).collect();
        let connection_limit =
            r.connection_limit.as_ref().and_then(|v| cx.int(v, 1, MAX_MAX_CONNECTIONS, "connection_limit"));
        out.push(Role { name, password: At { value: pw.get_ref().clone(), loc: pw_loc }, owns, connection_limit });
    }
    out
}
