//! Stage 4, **lower**: the [`Site`] → one [`RenderJob`] per file, family by family.
//!
//! An artifact family (docs, base, and later haproxy, nginx, pfsense, compose, postgres,
//! prometheus, bootstrap, dns, …) is one module here plus one folder under `templates/`.
//! It reads the resolved site, builds typed, documented template contexts (never raw
//! TOML) and says where each file goes, with what mode, owner and apply actions. Adding
//! a family means adding a module and a line to [`FAMILIES`]; no other family changes.

pub mod base;
pub mod delivery;
pub mod docs;
pub mod edge;
pub mod haproxy;
pub mod keepalived;
pub mod nginx;
pub mod postgres;

use std::collections::BTreeSet;

use minijinja::Value;
use serde::Serialize;

use crate::artifact::Trace;
use crate::diag::Loc;
use crate::model::Site;
use crate::render::RenderJob;

/// One artifact family.
pub trait Family: Sync {
    /// Short name, recorded in the manifest.
    fn name(&self) -> &'static str;
    /// Adds this family's render jobs for the site.
    fn lower(&self, site: &Site, out: &mut Lowering);
    /// Checks that only this family's output needs (certificates for the edge, flows a
    /// proxy relies on, …), run in the verify stage with all the others.
    fn verify(&self, _site: &Site, _diags: &mut crate::diag::Diagnostics) {}
    /// Lines this family adds to the semantic summary of `medianest diff` (e.g. firewall
    /// rules opened), computed from the two models. Most families add none.
    fn review(&self, _base: &Site, _head: &Site) -> Vec<crate::review::semantic::Change> {
        Vec::new()
    }
}

/// Every family, in the order their jobs are planned (output order is by path anyway).
pub const FAMILIES: &[&dyn Family] = &[
    &docs::Docs,
    &base::Base,
    &haproxy::Haproxy,
    &keepalived::Keepalived,
    &nginx::Nginx,
    &delivery::Delivery,
    &postgres::Postgres,
];

/// The jobs being collected from the families.
#[derive(Default)]
pub struct Lowering {
    /// Jobs so far.
    pub jobs: Vec<RenderJob>,
}

impl Lowering {
    /// Adds a job rendering `template` with `context`.
    pub fn add(
        &mut self,
        template: &'static str,
        context: &impl Serialize,
        meta: crate::artifact::ArtifactMeta,
        origin: Option<Loc>,
    ) {
        self.jobs.push(RenderJob { template, context: Value::from(minijinja::value::Serde(context)), meta, origin });
    }
}

/// Runs every family's own checks (after the core checks of [`crate::verify`]).
pub fn verify(site: &Site, diags: &mut crate::diag::Diagnostics) {
    for family in FAMILIES {
        family.verify(site, diags);
    }
}

/// Lowers the site through every family.
pub fn lower(site: &Site) -> Vec<RenderJob> {
    use rayon::prelude::*;
    // Families are independent: lower them on every core, collected in this fixed order.
    let per_family: Vec<Vec<RenderJob>> = FAMILIES
        .par_iter()
        .map(|f| {
            let mut l = Lowering::default();
            f.lower(site, &mut l);
            l.jobs
        })
        .collect();
    per_family.into_iter().flatten().collect()
}

/// Traces for every named entity of the site (for `explain`).
pub fn all_traces(site: &Site) -> Vec<Trace> {
    let mut t = Vec::new();
    t.extend(site.zones.iter().map(|z| Trace { what: "zone", name: z.name.clone(), loc: z.loc.clone() }));
    t.extend(site.docker_networks.iter().map(|n| Trace {
        what: "docker network",
        name: n.name.clone(),
        loc: n.loc.clone(),
    }));
    t.extend(host_traces(site));
    t.extend(site.services.iter().map(|s| Trace { what: "service", name: s.name.clone(), loc: s.loc.clone() }));
    t.extend(site.backups.iter().map(|b| Trace { what: "backup", name: b.name.clone(), loc: b.loc.clone() }));
    t
}

/// Traces for every host.
pub fn host_traces(site: &Site) -> Vec<Trace> {
    site.hosts.iter().map(|h| Trace { what: "host", name: h.name.clone(), loc: h.loc.clone() }).collect()
}

/// The sorted, unique names of the site files that the locations come from.
pub fn sources_of<'a>(site: &Site, locs: impl IntoIterator<Item = &'a Loc>) -> Vec<String> {
    let set: BTreeSet<&str> = locs.into_iter().filter_map(|l| site.files.get(l.file).map(String::as_str)).collect();
    set.into_iter().map(str::to_string).collect()
}
