//! Family **postgres**: PostgreSQL with streaming replicas. It owns what only PostgreSQL
//! needs: which host holds the primary. It renders nothing yet (the data-tier issue adds
//! `postgresql.conf`, `pg_hba.conf` and replication); its checks run today.

use super::{Family, Lowering};
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{ServiceKind, Site};

/// The postgres family.
pub struct Postgres;

impl Family for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn lower(&self, _site: &Site, _out: &mut Lowering) {}

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        for s in site.services.iter().filter(|s| s.declared.kind_known) {
            let info = s.kind.value.info();
            match (&s.primary, s.kind.value) {
                (Some(p), ServiceKind::Postgres) if !s.hosts.iter().any(|h| h.value == p.value) => diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!("primary `{}` is not one of the hosts of `{}`", site.host(p.value).name, s.name),
                        p.loc.clone(),
                    )
                    .help("the primary must be listed in `hosts`"),
                ),
                (Some(p), k) if k != ServiceKind::Postgres => diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`primary` only applies to postgres, and `{}` is a `{}` service", s.name, info.name),
                        p.loc.clone(),
                    )
                    .help("remove `primary`"),
                ),
                (None, ServiceKind::Postgres) if s.hosts.len() > 1 => diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("postgres service `{}` runs on {} hosts but names no primary", s.name, s.hosts.len()),
                        s.loc.clone(),
                    )
                    .help("add `primary = \"<host>\"`; the other hosts become streaming replicas"),
                ),
                _ => {}
            }
        }
    }
}
