//! The dns family's own keys on `[services.<name>]`: whether PowerDNS signs its zones.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::Named;
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// The dns family's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct DnsFile {
        /// The dns family's keys on services.
        #[serde(default)]
        pub services: Named<DnsService>,
    }
}

crate::keys! {
    /// The dns family's keys of `[services.<name>]` (`kind = "powerdns"` only).
    #[derive(Debug, Deserialize)]
    pub struct DnsService {
        /// Sign the internal zones with DNSSEC (default `false`). The signing keys are created on the host by `pdnsutil secure-zone` when PowerDNS starts, never in git.
        pub dnssec: Option<Spanned<bool>>,
    }
}

/// The dns family's model: the settings of each powerdns service that writes any.
#[derive(Debug, Default)]
pub struct Model {
    /// `dnssec`, by service, where it is written.
    pub dnssec: BTreeMap<ServiceId, At<bool>>,
}

impl Model {
    /// Whether a service signs its zones, and where that is decided (the service itself
    /// when it writes nothing: the default, off).
    pub fn dnssec(&self, site: &Site, id: ServiceId) -> At<bool> {
        self.dnssec.get(&id).cloned().unwrap_or_else(|| At { value: false, loc: site.service(id).loc.clone() })
    }
}

/// Types the dns family's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<DnsFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let Some(v) = &k.dnssec else { continue };
        let cx = Cx::new(file, site, diags);
        let loc = cx.loc(v.span());
        let svc = site.service(id);
        if svc.kind.value != ServiceKind::Powerdns && svc.declared.kind_known {
            cx.diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "`dnssec` applies to powerdns, and `{}` is a `{}` service",
                        svc.name,
                        svc.kind.value.info().name
                    ),
                    loc,
                )
                .help("remove it, or set `kind = \"powerdns\"`"),
            );
            continue;
        }
        out.dnssec.insert(id, At { value: *v.get_ref(), loc });
    }
    out
}
