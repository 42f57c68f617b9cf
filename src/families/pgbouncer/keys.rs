//! PgBouncer's own keys on `[services.<name>]`: the pool mode, the pool sizes and the
//! databases it serves.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{NameKind, ValueError, name};
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// PgBouncer's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct PgbouncerFile {
        /// PgBouncer's keys on services.
        #[serde(default)]
        pub services: Named<PgbouncerService>,
    }
}

crate::keys! {
    /// PgBouncer's keys of `[services.<name>]` (`kind = "pgbouncer"` only).
    #[derive(Debug, Deserialize)]
    pub struct PgbouncerService {
        /// When a server connection goes back to the pool: `session` (default, PgBouncer's own: when the client disconnects; safe for every client), `transaction` (after each transaction; clients must not rely on session state: Prisma needs `pgbouncer=true` in its URL) or `statement`.
        pub pool_mode: Option<Str>,
        /// Server connections per database and user pair on each host of the service (default `20`, from 1 to 1000). Every pooler opens its own pools, so hosts × databases × this must fit in the PostgreSQL service's `max_connections` less the 3 kept for superusers.
        pub default_pool_size: Option<Spanned<i64>>,
        /// Client connections each pooler accepts (default `100`, from 1 to 100000). Each takes a file descriptor; clients beyond the pool wait in a queue.
        pub max_client_conn: Option<Spanned<i64>>,
        /// The databases served (names of `[a-z][a-z0-9_]*`): each `<db>` goes to the PostgreSQL primary, and `<db>_ro` to its replicas when it has any. Without it, every database name goes to the primary (`*`) and there is no read-only entry.
        pub databases: Option<Spanned<Vec<Str>>>,
    }
}

/// How server connections are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Until the client disconnects.
    Session,
    /// Until the transaction ends.
    Transaction,
    /// Until the statement ends.
    Statement,
}

impl PoolMode {
    /// As `pgbouncer.ini` writes it.
    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// The pool modes, as the site writes them.
pub const POOL_MODES: &[(&str, PoolMode)] =
    &[("session", PoolMode::Session), ("transaction", PoolMode::Transaction), ("statement", PoolMode::Statement)];
/// `default_pool_size` when a service writes none (PgBouncer's default).
pub const DEFAULT_POOL_SIZE: u32 = 20;
/// `max_client_conn` when a service writes none (PgBouncer's default).
pub const DEFAULT_MAX_CLIENT_CONN: u32 = 100;

/// The pgbouncer family's model: what each service writes, where.
#[derive(Debug, Default)]
pub struct Model {
    /// `pool_mode`.
    pub pool_mode: BTreeMap<ServiceId, At<PoolMode>>,
    /// `default_pool_size`.
    pub default_pool_size: BTreeMap<ServiceId, At<u32>>,
    /// `max_client_conn`.
    pub max_client_conn: BTreeMap<ServiceId, At<u32>>,
    /// `databases`, each where it is written.
    pub databases: BTreeMap<ServiceId, Vec<At<String>>>,
}

impl Model {
    /// A service's pool mode, and where it is decided (the service when it is the default).
    pub fn pool_mode(&self, site: &Site, id: ServiceId) -> At<PoolMode> {
        self.pool_mode
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: PoolMode::Session, loc: site.service(id).loc.clone() })
    }
    /// A service's `default_pool_size`.
    pub fn default_pool_size(&self, site: &Site, id: ServiceId) -> At<u32> {
        self.default_pool_size
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: DEFAULT_POOL_SIZE, loc: site.service(id).loc.clone() })
    }
    /// A service's `max_client_conn`.
    pub fn max_client_conn(&self, site: &Site, id: ServiceId) -> At<u32> {
        self.max_client_conn
            .get(&id)
            .cloned()
            .unwrap_or_else(|| At { value: DEFAULT_MAX_CLIENT_CONN, loc: site.service(id).loc.clone() })
    }
}

/// A database name PgBouncer may serve.
fn database(s: &str) -> Result<String, ValueError> {
    let n = name(s, NameKind::Secret).map_err(|e| ValueError {
        code: e.code,
        message: format!("`{}` is not a database name here", crate::model::values::printable(s)),
        help: "use lowercase letters, digits and `_`, starting with a letter, at most 63 characters".into(),
    })?;
    if n == "pgbouncer" {
        return Err(ValueError {
            code: "bad-value",
            message: "`pgbouncer` is PgBouncer's admin console, not a database".into(),
            help: "name the PostgreSQL database itself".into(),
        });
    }
    Ok(n)
}

/// Types PgBouncer's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<PgbouncerFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        if svc.declared.kind_known && svc.kind.value != ServiceKind::Pgbouncer {
            let spans = [
                ("pool_mode", k.pool_mode.as_ref().map(|v| v.span())),
                ("default_pool_size", k.default_pool_size.as_ref().map(|v| v.span())),
                ("max_client_conn", k.max_client_conn.as_ref().map(|v| v.span())),
                ("databases", k.databases.as_ref().map(|v| v.span())),
            ];
            for (key, span) in spans {
                if let Some(span) = span {
                    cx.not_for_kind(key, "pgbouncer", svc, span);
                }
            }
            continue;
        }
        if let Some(v) = k.pool_mode.as_ref().and_then(|v| cx.vocabulary(v, "pool mode", POOL_MODES)) {
            out.pool_mode.insert(id, v);
        }
        if let Some(v) = k.default_pool_size.as_ref().and_then(|v| cx.int(v, 1, 1000, "default_pool_size")) {
            out.default_pool_size.insert(id, v);
        }
        if let Some(v) = k.max_client_conn.as_ref().and_then(|v| cx.int(v, 1, 100_000, "max_client_conn")) {
            out.max_client_conn.insert(id, v);
        }
        if let Some(list) = &k.databases {
            if list.get_ref().is_empty() {
                let loc = cx.loc(list.span());
                cx.diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` lists no database: no client could connect", svc.name),
                        loc,
                    )
                    .help("list the databases it serves, or remove `databases` to serve every one"),
                );
                continue;
            }
            let mut dbs: Vec<At<String>> = Vec::new();
            for v in list.get_ref() {
                let Some(d) = cx.value(v, database) else { continue };
                if dbs.iter().any(|x| x.value == d.value) {
                    cx.diags.push(
                        Diagnostic::error("duplicate-name", format!("database `{}` is listed twice", d.value), d.loc)
                            .help("list each database once"),
                    );
                    continue;
                }
                dbs.push(d);
            }
            out.databases.insert(id, dbs);
        }
    }
    out
}
