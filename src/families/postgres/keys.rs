//! PostgreSQL's own keys on `[services.<name>]`: which host holds the primary, and how
//! many connections the server accepts.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::Diagnostics;
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
        /// `max_connections` of every host of the service (default `100`, from 10 to 5000). Each connection is a server process; `work_mem` is derived from it (the service's memory / (4 × max_connections)), so more connections get less memory each. A replica must allow as many as its primary, so it is one value per service.
        pub max_connections: Option<Spanned<i64>>,
    }
}

/// The postgres family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// The primary of each service that names one.
    pub primary: BTreeMap<ServiceId, At<HostId>>,
    /// `max_connections` of each service that writes it.
    pub max_connections: BTreeMap<ServiceId, At<u32>>,
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
