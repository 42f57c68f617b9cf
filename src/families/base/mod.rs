//! Family **base**: files every Linux host gets regardless of its services.
//!
//! For now that is `/etc/hosts` with every site host, so hosts reach each other by name
//! before DNS is up (and when it is down). Firewall appliances are skipped: pfSense is
//! configured through its own family. Template: `templates/base/hosts.j2`.

use serde::Serialize;

use super::{Family, Lowering, sources_of};
use crate::artifact::ArtifactMeta;
use crate::model::Site;

/// The base family.
pub struct Base;

/// Context of `base/hosts.j2`.
#[derive(Serialize)]
pub struct HostsFileContext {
    /// The host the file is for.
    pub host: HostEntry,
    /// Every host with an address, by name: a list of [`HostEntry`], converted once and
    /// shared by every host's context (the list is the same for all, and converting it
    /// per host made lowering quadratic in the number of hosts).
    pub entries: minijinja::Value,
}

/// One line of `/etc/hosts`.
#[derive(Serialize, Clone)]
pub struct HostEntry {
    /// Short name.
    pub name: String,
    /// Fully qualified name in the site domain.
    pub fqdn: String,
    /// Main address (first interface).
    pub address: String,
}

impl Family for Base {
    fn name(&self) -> &'static str {
        "base"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let entries: Vec<HostEntry> = site
            .hosts
            .iter()
            .filter_map(|h| {
                Some(HostEntry {
                    name: h.name.clone(),
                    fqdn: format!("{}.{}", h.name, site.settings.domain),
                    address: h.primary_address()?.to_string(),
                })
            })
            .collect();
        let entries = minijinja::Value::from(minijinja::value::Serde(&entries));
        let mut locs: Vec<&crate::diag::Loc> = site.hosts.iter().map(|h| &h.loc).collect();
        locs.extend(site.settings.loc.as_ref());
        let sources = sources_of(site, locs);
        // Every host's file names every host: one shared list of traces for all of them.
        let traces: std::sync::Arc<[crate::artifact::Trace]> = super::host_traces(site).into();
        for h in site.hosts.iter().filter(|h| h.kind.value.is_linux()) {
            let host = HostEntry {
                name: h.name.clone(),
                fqdn: format!("{}.{}", h.name, site.settings.domain),
                address: String::new(),
            };
            let ctx = HostsFileContext { host, entries: entries.clone() };
            let meta = ArtifactMeta::host_file(self.name(), &h.name, "/etc/hosts", 0o644, "root:root", sources.clone())
                .traced(traces.clone());
            out.add("base/hosts.j2", &ctx, meta, Some(h.loc.clone()));
        }
    }
}
