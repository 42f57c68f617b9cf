//! Nginx's own keys on `[services.<name>]`: how strict the OWASP Core Rule Set is.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::Diagnostics;
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::Named;
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// Nginx's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct NginxFile {
        /// Nginx's keys on services.
        #[serde(default)]
        pub services: Named<NginxService>,
    }
}

crate::keys! {
    /// Nginx's keys of `[services.<name>]` (`kind = "nginx"` only).
    #[derive(Debug, Deserialize)]
    pub struct NginxService {
        /// The Core Rule Set's paranoia level, 1–4 (default `1`): each level adds rules that catch more attacks and more false positives; raise it with exclusions ready.
        pub waf_paranoia: Option<Spanned<i64>>,
        /// The inbound anomaly score at which a request is blocked, 1–1000 (default `5`: one critical rule). Higher lets more through.
        pub waf_inbound_threshold: Option<Spanned<i64>>,
        /// The outbound anomaly score at which a response is blocked, 1–1000 (default `4`).
        pub waf_outbound_threshold: Option<Spanned<i64>>,
    }
}

/// CRS 3.3's defaults (crs-setup.conf): paranoia, inbound and outbound thresholds.
pub const DEFAULTS: (u16, u16, u16) = (1, 5, 4);

/// One service's Core Rule Set settings.
#[derive(Debug, Clone)]
pub struct Crs {
    /// Paranoia level.
    pub paranoia: At<u16>,
    /// Inbound anomaly threshold.
    pub inbound: At<u16>,
    /// Outbound anomaly threshold.
    pub outbound: At<u16>,
}

/// The nginx family's model: what each service writes.
#[derive(Debug, Default)]
pub struct Model {
    /// By service (only those that write a key).
    pub crs: BTreeMap<ServiceId, Crs>,
}

impl Model {
    /// A service's settings, the defaults traced to the service.
    pub fn crs(&self, site: &Site, id: ServiceId) -> Crs {
        self.crs.get(&id).cloned().unwrap_or_else(|| {
            let at = |value| At { value, loc: site.service(id).loc.clone() };
            Crs { paranoia: at(DEFAULTS.0), inbound: at(DEFAULTS.1), outbound: at(DEFAULTS.2) }
        })
    }
}

/// Types Nginx's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<NginxFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let svc = site.service(id);
        let mut cx = Cx::new(file, site, diags);
        let keys = [
            ("waf_paranoia", &k.waf_paranoia, 1, 4, "paranoia level", DEFAULTS.0),
            ("waf_inbound_threshold", &k.waf_inbound_threshold, 1, 1000, "inbound anomaly threshold", DEFAULTS.1),
            ("waf_outbound_threshold", &k.waf_outbound_threshold, 1, 1000, "outbound anomaly threshold", DEFAULTS.2),
        ];
        if svc.declared.kind_known && svc.kind.value != ServiceKind::Nginx {
            for (key, v, ..) in keys {
                if let Some(v) = v {
                    cx.not_for_kind(key, "nginx", svc, v.span());
                }
            }
            continue;
        }
        let [p, i, o] = keys.map(|(_, v, lo, hi, what, default)| {
            v.as_ref()
                .and_then(|v| cx.int::<u16>(v, lo, hi, what))
                .unwrap_or(At { value: default, loc: svc.loc.clone() })
        });
        out.crs.insert(id, Crs { paranoia: p, inbound: i, outbound: o });
    }
    out
}
