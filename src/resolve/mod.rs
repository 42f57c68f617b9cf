//! Stage 2, **resolve**: [`RawSite`] → [`Site`].
//!
//! Types every raw value (addresses, CIDRs, ports, durations, sizes, names, images),
//! resolves names to typed ids with "did you mean" hints, applies `[defaults]` and the
//! built-in kind defaults, and reports duplicates across files. Problems are collected;
//! an entity with a bad field is still built (with the field left out) so that the
//! checks in `verify` can run on everything else in the same pass.
//!
//! One file per concern: `index` (every named entity, name → id), [`cx`] (typing a
//! value and resolving a reference, with hints; what families use for their own keys),
//! `settings` (`[site]`, `[recovery]`, `[defaults]`), `network` (zones, docker
//! networks, hosts), `service` (services, ports, networks, health checks), `exposure`
//! (hostname, path, port), `hardening` (capabilities, exceptions) and `policy` (flows,
//! guard-rails, backups).

pub mod cx;
mod exposure;
mod hardening;
mod index;
mod network;
mod policy;
mod service;
mod settings;

use crate::diag::Diagnostics;
use crate::load::RawSite;
use crate::model::*;
use cx::Cx;
use index::Index;
use settings::singletons;

/// Builds the typed site. Returns it even when there were errors, for `verify` to use.
pub fn resolve(raw: &RawSite, file_names: &[String], diags: &mut Diagnostics) -> Site {
    let index = Index::build(raw, diags);
    let mut site = Site { files: file_names.to_vec(), ..Site::default() };
    site.adrs = raw
        .adrs
        .iter()
        .map(|(file, title, body)| Adr {
            file: file_names.get(*file).cloned().unwrap_or_default(),
            title: title.clone(),
            body: body.clone(),
            loc: crate::diag::Loc::new(*file, 0..0),
        })
        .collect();

    singletons(raw, &index, &mut site, diags);

    for (name, (file, loc, z)) in &index.zones {
        let mut cx = Cx::new(*file, &index, diags);
        site.zones.push(cx.zone(name, loc.clone(), z));
    }
    for (name, (file, loc, n)) in &index.networks {
        let mut cx = Cx::new(*file, &index, diags);
        site.docker_networks.push(cx.network(name, loc.clone(), n));
    }
    for (name, (file, loc, h)) in &index.hosts {
        let mut cx = Cx::new(*file, &index, diags);
        site.hosts.push(cx.host(name, loc.clone(), h));
    }
    for (name, (file, loc, s)) in &index.services {
        let mut cx = Cx::new(*file, &index, diags);
        let svc = cx.service(name, loc.clone(), s, &site.defaults);
        site.services.push(svc);
    }
    for (file, parsed) in &raw.files {
        for f in &parsed.flows {
            let mut cx = Cx::new(*file, &index, diags);
            if let Some(flow) = cx.flow(f, &site) {
                site.flows.push(flow);
            }
        }
        for g in &parsed.guardrails {
            let mut cx = Cx::new(*file, &index, diags);
            if let Some(rail) = cx.guardrail(g) {
                site.guardrails.push(rail);
            }
        }
    }
    for (name, (file, loc, b)) in &index.backups {
        let mut cx = Cx::new(*file, &index, diags);
        if let Some(backup) = cx.backup(name, loc.clone(), b, &site.defaults) {
            site.backups.push(backup);
        }
    }
    // The model lives until the build is written: give back the vectors' growth slack
    // (a few MB on a 10,000-service site).
    site.zones.shrink_to_fit();
    site.docker_networks.shrink_to_fit();
    site.hosts.shrink_to_fit();
    site.services.shrink_to_fit();
    site.flows.shrink_to_fit();
    site.guardrails.shrink_to_fit();
    site.backups.shrink_to_fit();
    site
}
