//! keepalived's own keys on `[services.<name>]`: the floating address and the VRRP
//! router id.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values;
use crate::model::{At, ServiceId, ServiceKind, Site};
use crate::resolve::cx::Cx;

crate::keys! {
    /// keepalived's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct KeepalivedFile {
        /// keepalived's keys on services.
        #[serde(default)]
        pub services: Named<KeepalivedService>,
    }
}

crate::keys! {
    /// keepalived's keys of `[services.<name>]` (`kind = "keepalived"` only).
    #[derive(Debug, Deserialize)]
    pub struct KeepalivedService {
        /// Required for keepalived. The floating address the hosts share.
        pub vip: Option<Str>,
        /// The VRRP router id, 1–255 (default `51`).
        pub vrid: Option<Spanned<i64>>,
    }
}

/// One keepalived instance's settings.
#[derive(Debug, Clone)]
pub struct Vrrp {
    /// The floating address.
    pub vip: Option<At<IpAddr>>,
    /// The router id, and where it is written (the service, when it is the default).
    pub vrid: At<u8>,
}

/// The keepalived family's model: settings per service that writes any.
#[derive(Debug, Default)]
pub struct Model {
    /// By service.
    pub services: BTreeMap<ServiceId, Vrrp>,
}

impl Model {
    /// A service's settings (no VIP, router id 51 when it writes none).
    pub fn of(&self, site: &Site, id: ServiceId) -> Vrrp {
        let default = || Vrrp { vip: None, vrid: At { value: 51, loc: site.service(id).loc.clone() } };
        self.services.get(&id).cloned().unwrap_or_else(default)
    }
}

/// Types keepalived's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<KeepalivedFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let mut cx = Cx::new(file, site, diags);
        let svc = site.service(id);
        if svc.kind.value != ServiceKind::Keepalived && svc.declared.kind_known {
            let at = k.vip.as_ref().map(|v| v.span()).or(k.vrid.as_ref().map(|v| v.span())).unwrap_or(0..0);
            let loc = cx.loc(at);
            cx.diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "`vip` and `vrid` apply to keepalived, and `{}` is a `{}` service",
                        svc.name,
                        svc.kind.value.info().name
                    ),
                    loc,
                )
                .help("remove them, or set `kind = \"keepalived\"`"),
            );
            continue;
        }
        let vip = k.vip.as_ref().and_then(|v| cx.value(v, values::address));
        let vrid = k
            .vrid
            .as_ref()
            .and_then(|v| cx.int::<u8>(v, 1, 255, "VRRP router id"))
            .unwrap_or(At { value: 51, loc: svc.loc.clone() });
        out.services.insert(id, Vrrp { vip, vrid });
    }
    out
}
