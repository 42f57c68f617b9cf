//! Family **postgres**: PostgreSQL with streaming replicas. It owns what only PostgreSQL
//! needs ([`keys`]: which host holds the primary). It renders nothing yet (the data-tier
//! issue adds `postgresql.conf`, `pg_hba.conf` and replication); its checks run today.

pub mod keys;

use std::any::Any;

use super::{Family, Lowering, Part};
use crate::diag::{Diagnostic, Diagnostics};
use crate::load::keys::KeySet;
use crate::model::facts::Fact;
use crate::model::{ServiceKind, Site};

/// The postgres family.
pub struct Postgres;

/// The postgres model of a site (empty when the family resolved nothing).
pub fn model(site: &Site) -> &keys::Model {
    static EMPTY: keys::Model = keys::Model { primary: std::collections::BTreeMap::new() };
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

    fn lower(&self, _site: &Site, _out: &mut Lowering) {}

    fn facts(&self, site: &Site) -> Vec<Fact> {
        let m = model(site);
        m.primary
            .iter()
            .map(|(id, h)| Fact {
                category: "service",
                subject: site.service(*id).name.clone(),
                field: "primary",
                value: site.host(h.value).name.clone().into(),
            })
            .collect()
    }

    fn verify(&self, site: &Site, diags: &mut Diagnostics) {
        let m = model(site);
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
                _ => {}
            }
        }
    }
}
