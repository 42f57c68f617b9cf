//! Family **base**: files every Linux host gets regardless of its services.
//!
//! For now that is `/etc/hosts` with every site host, so hosts reach each other by name
//! before DNS is up (and when it is down). Firewall appliances are skipped: pfSense is
//! configured through its own family. Template: `templates/base/hosts.j2`.

use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering};
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
    pub name: Src<String>,
    /// Fully qualified name in the site domain.
    pub fqdn: Src<String>,
    /// Main address (first interface).
    pub address: Option<Src<String>>,
}

fn entry(site: &Site, h: &crate::model::Host) -> HostEntry {
    let fqdn = format!("{}.{}", h.name, site.settings.domain);
    HostEntry {
        name: Src::at(h.name.clone(), "host", &h.loc),
        fqdn: Src::of(fqdn, "host name in the site domain", std::iter::once(&h.loc).chain(&site.settings.loc)),
        address: h.interfaces.first().map(|i| Src::at(i.address.value.to_string(), "host address", &i.address.loc)),
    }
}

impl Family for Base {
    fn name(&self) -> &'static str {
        "base"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let entries: Vec<HostEntry> =
            site.hosts.iter().filter(|h| h.primary_address().is_some()).map(|h| entry(site, h)).collect();
        // Every host's file names every host: the list is converted, and its provenance
        // recorded, once for all of them.
        let entries = out.share(&entries);
        for h in site.hosts.iter().filter(|h| h.kind.value.is_linux()) {
            let ctx = HostsFileContext { host: entry(site, h), entries: entries.value.clone() };
            let meta = ArtifactMeta::host_file(self.name(), &h.name, "/etc/hosts", 0o644, "root:root");
            out.add_shared("base/hosts.j2", &ctx, &[&entries], meta, Some(h.loc.clone()));
        }
    }
}
