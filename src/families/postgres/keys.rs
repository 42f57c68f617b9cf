//! PostgreSQL's own keys on `[services.<name>]`: which host holds the primary.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::diag::{Diagnostic, Diagnostics};
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
    }
}

/// The postgres family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// The primary of each service that names one.
    pub primary: BTreeMap<ServiceId, At<HostId>>,
}

/// Types PostgreSQL's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<PostgresFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let Some(p) = &k.primary else { continue };
        let mut cx = Cx::new(file, site, diags);
        let svc = site.service(id);
        if svc.kind.value != ServiceKind::Postgres {
            let loc = cx.loc(p.span());
            cx.diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "`primary` only applies to postgres, and `{}` is a `{}` service",
                        svc.name,
                        svc.kind.value.info().name
                    ),
                    loc,
                )
                .help("remove `primary`"),
            );
            continue;
        }
        if let Some(h) = cx.reference_str(RefTo::Host, p) {
            out.primary.insert(id, At { value: HostId(h.value), loc: h.loc });
        }
    }
    out
}
