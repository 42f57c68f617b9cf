//! Every named entity of the site, by table, sorted by name: the position in that order
//! becomes the entity's id. Duplicate and badly formed names are reported here.

use std::collections::BTreeMap;

use super::cx::{Names, RefTo};
use crate::diag::{Diagnostic, Diagnostics, FileId, Loc};
use crate::load::RawSite;
use crate::load::schema::*;
use crate::model::values::{self, NameKind};

type Entry<'a, T> = (FileId, Loc, &'a T);

/// Every named entity of the site, sorted by name, with the position that becomes its id.
pub(super) struct Index<'a> {
    pub(super) zones: BTreeMap<String, Entry<'a, RawZone>>,
    pub(super) networks: BTreeMap<String, Entry<'a, RawDockerNetwork>>,
    pub(super) hosts: BTreeMap<String, Entry<'a, RawHost>>,
    pub(super) services: BTreeMap<String, Entry<'a, RawService>>,
    pub(super) backups: BTreeMap<String, Entry<'a, RawBackup>>,
    /// Keys taken out of a file for a wrong type (see `RawSite::wrong_typed`).
    pub(super) wrong_typed: &'a std::collections::BTreeSet<(FileId, String)>,
    /// Id (position in name order) of every zone, network, host and service name, so
    /// that resolving a reference is one lookup, not a scan of every name.
    pub(super) ids: [std::collections::HashMap<String, usize>; 4],
}

impl<'a> Index<'a> {
    pub(super) fn build(raw: &'a RawSite, diags: &mut Diagnostics) -> Self {
        fn collect<'a, T>(
            raw: &'a RawSite,
            table: &str,
            kind: NameKind,
            get: impl Fn(&'a RawFile) -> &'a Named<T>,
            diags: &mut Diagnostics,
        ) -> BTreeMap<String, Entry<'a, T>> {
            let mut out: BTreeMap<String, Entry<'a, T>> = BTreeMap::new();
            for (file, parsed) in &raw.files {
                for (key, value) in get(parsed) {
                    let loc = Loc::new(*file, key.span());
                    if let Err(e) = values::name(key.get_ref(), kind) {
                        diags.push(Diagnostic::error("bad-name", e.message, loc.clone()).help(e.help));
                    }
                    if let Some((_, first, _)) = out.get(key.get_ref()) {
                        diags.push(
                            Diagnostic::error(
                                "duplicate-name",
                                format!("`{}` is defined twice in `{table}`", key.get_ref()),
                                loc,
                            )
                            .label("second definition")
                            .also(first.clone(), "first defined here")
                            .help("names are unique per table; rename one or merge the two definitions"),
                        );
                        continue;
                    }
                    out.insert(key.get_ref().clone(), (*file, loc, value));
                }
            }
            out
        }
        let mut index = Index {
            zones: collect(raw, "zones", NameKind::Ident, |f| &f.zones, diags),
            networks: collect(raw, "docker_networks", NameKind::Ident, |f| &f.docker_networks, diags),
            hosts: collect(raw, "hosts", NameKind::Label, |f| &f.hosts, diags),
            services: collect(raw, "services", NameKind::Label, |f| &f.services, diags),
            backups: collect(raw, "backups", NameKind::Ident, |f| &f.backups, diags),
            wrong_typed: &raw.wrong_typed,
            ids: Default::default(),
        };
        fn ids<T>(m: &BTreeMap<String, T>) -> std::collections::HashMap<String, usize> {
            m.keys().enumerate().map(|(i, k)| (k.clone(), i)).collect()
        }
        index.ids = [ids(&index.zones), ids(&index.networks), ids(&index.hosts), ids(&index.services)];
        index
    }
}

impl Names for Index<'_> {
    fn wrong_typed(&self, file: FileId, key: &str) -> bool {
        self.wrong_typed.contains(&(file, key.to_string()))
    }
    fn id(&self, to: RefTo, name: &str) -> Option<usize> {
        self.ids[to as usize].get(name).copied()
    }
    fn names(&self, to: RefTo) -> Vec<&str> {
        match to {
            RefTo::Zone => self.zones.keys().map(String::as_str).collect(),
            RefTo::Network => self.networks.keys().map(String::as_str).collect(),
            RefTo::Host => self.hosts.keys().map(String::as_str).collect(),
            RefTo::Service => self.services.keys().map(String::as_str).collect(),
        }
    }
}
