//! pfSense's own keys on `[services.<name>]` (`kind = "pfsense"`): what the model does
//! not know about the firewall — its WAN port and addressing, the VLAN trunk, where its
//! log goes and which zone administers it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::families::{Part, parts_of, service_keys};
use crate::load::schema::{Named, Str};
use crate::model::values::{self, NameKind, ValueError};
use crate::model::{At, ServiceId, ServiceKind, Site, ZoneId};
use crate::resolve::cx::{Cx, RefTo};

crate::keys! {
    /// pfSense's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct PfsenseFile {
        /// pfSense's keys on services.
        #[serde(default)]
        pub services: Named<PfsenseService>,
    }
}

crate::keys! {
    /// pfSense's keys of `[services.<name>]` (`kind = "pfsense"` only).
    #[derive(Debug, Deserialize)]
    pub struct PfsenseService {
        /// The WAN port's OS name, e.g. `igb0`. Setting it makes medianest generate the firewall's `config.xml` (under `generated/firewall/<host>/`); without it the firewall gets none.
        pub wan: Option<Str>,
        /// WAN addressing: `dhcp` (default) or a static address with its prefix length, e.g. `203.0.113.2/29`.
        pub wan_address: Option<Str>,
        /// Required with a static `wan_address` (and not allowed with `dhcp`). The upstream gateway, e.g. `203.0.113.1`.
        pub wan_gateway: Option<Str>,
        /// OS name of the VLAN trunk port, e.g. `igb1`. The firewall interface with this name carries its zone untagged; interfaces named `vlan<N>` are VLANs tagged on the trunk with their zone's `vlan`; any other name is a port of its own.
        pub trunk: Option<Str>,
        /// Service that receives pfSense's remote syslog (the filter log of every denied packet), e.g. `logstash`: its port named `syslog` (UDP) is the target, and a flow must let the firewall reach it.
        pub syslog: Option<Str>,
        /// Required with `wan`. The zone that administers the firewall: it becomes pfSense's LAN, the only interface with the anti-lockout rule, and a flow must let it reach the web GUI.
        pub admin_zone: Option<Str>,
        /// The web GUI's HTTPS port, which the anti-lockout rule keeps open from `admin_zone` (default `443`).
        pub admin_port: Option<Spanned<i64>>,
    }
}

/// How the WAN gets its address.
#[derive(Debug, Clone)]
pub enum WanAddress {
    /// By DHCP (`loc` is where `dhcp` is written, or the service when it is the default).
    Dhcp(crate::diag::Loc),
    /// A static address with its prefix length.
    Static(At<(IpAddr, u8)>),
}

/// One pfSense service's settings.
#[derive(Debug, Clone)]
pub struct Firewall {
    /// The WAN port.
    pub wan: At<String>,
    /// WAN addressing.
    pub wan_address: WanAddress,
    /// Upstream gateway of a static WAN address.
    pub wan_gateway: Option<At<IpAddr>>,
    /// The VLAN trunk port.
    pub trunk: Option<At<String>>,
    /// The remote syslog service.
    pub syslog: Option<At<ServiceId>>,
    /// The administering zone (pfSense's LAN).
    pub admin_zone: Option<At<ZoneId>>,
    /// The web GUI port (and where it is written: the service when it is the default).
    pub admin_port: At<u16>,
}

/// The pfsense family's model: settings per service that sets `wan`.
#[derive(Default)]
pub struct Model {
    /// By service.
    pub services: BTreeMap<ServiceId, Firewall>,
    /// Each firewall's config, built on first use: the checks and the lower both need
    /// it, and building it twice doubled the family's cost on large sites.
    pub built: std::sync::OnceLock<Vec<super::Firewalled>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("services", &self.services).finish_non_exhaustive()
    }
}

/// An OS interface name (`igb0`, `vlan20`, `em1`): what the core accepts for a host's
/// interface `name`.
fn ifname(s: &str) -> Result<String, ValueError> {
    values::name(s, NameKind::Ident)
}

/// `dhcp`, or `<address>/<prefix>`.
fn wan_address(s: &str) -> Result<Option<(IpAddr, u8)>, ValueError> {
    if s == "dhcp" {
        return Ok(None);
    }
    let bad = || ValueError {
        code: "bad-value",
        message: format!("`{}` is neither `dhcp` nor an address with its prefix length", values::printable(s)),
        help: "write `dhcp`, or the static address with its prefix length, e.g. `203.0.113.2/29`".into(),
    };
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr = values::address(a).map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = p.parse().ok().filter(|n| (1..=max).contains(n)).ok_or_else(bad)?;
    Ok(Some((addr, prefix)))
}

/// Types pfSense's keys of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let files = parts_of::<PfsenseFile>(parts);
    let services: Vec<_> = files.iter().map(|(f, x)| (*f, &x.services)).collect();
    let mut out = Model::default();
    for (file, id, k) in service_keys(site, &services) {
        let mut cx = Cx::new(file, site, diags);
        let svc = site.service(id);
        let first = [
            k.wan.as_ref().map(|v| v.span()),
            k.wan_address.as_ref().map(|v| v.span()),
            k.wan_gateway.as_ref().map(|v| v.span()),
            k.trunk.as_ref().map(|v| v.span()),
            k.syslog.as_ref().map(|v| v.span()),
            k.admin_zone.as_ref().map(|v| v.span()),
            k.admin_port.as_ref().map(|v| v.span()),
        ]
        .into_iter()
        .flatten()
        .next();
        let Some(first) = first else { continue };
        if svc.kind.value != ServiceKind::Pfsense {
            if svc.declared.kind_known {
                let loc = cx.loc(first);
                cx.diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "`wan`, `trunk`, `syslog` and the other firewall keys apply to pfsense, and `{}` is a `{}` service",
                            svc.name,
                            svc.kind.value.info().name
                        ),
                        loc,
                    )
                    .help("remove them, or set `kind = \"pfsense\"`"),
                );
            }
            continue;
        }
        let wan = k.wan.as_ref().and_then(|v| cx.value(v, ifname));
        let address = k.wan_address.as_ref().and_then(|v| cx.value(v, wan_address));
        let gateway = k.wan_gateway.as_ref().and_then(|v| cx.value(v, values::address));
        let trunk = k.trunk.as_ref().and_then(|v| cx.value(v, ifname));
        let syslog = k
            .syslog
            .as_ref()
            .and_then(|v| cx.reference_str(RefTo::Service, v))
            .map(|a| At { value: ServiceId(a.value), loc: a.loc });
        let admin_zone = k
            .admin_zone
            .as_ref()
            .and_then(|v| cx.reference_str(RefTo::Zone, v))
            .map(|a| At { value: ZoneId(a.value), loc: a.loc });
        let admin_port = match &k.admin_port {
            Some(p) => cx.int::<u16>(p, 1, 65535, "web GUI port"),
            None => Some(At { value: 443, loc: svc.loc.clone() }),
        };
        let wan_address = match &address {
            Some(At { value: Some(a), loc }) => WanAddress::Static(At { value: *a, loc: loc.clone() }),
            Some(At { value: None, loc }) => WanAddress::Dhcp(loc.clone()),
            None => WanAddress::Dhcp(svc.loc.clone()),
        };
        // Keys that only make sense together.
        match (&wan_address, &gateway) {
            (WanAddress::Static(a), None) if k.wan_gateway.is_none() => cx.diags.push(
                Diagnostic::error(
                    "missing-key",
                    format!("the static WAN address of `{}` has no gateway", svc.name),
                    a.loc.clone(),
                )
                .help("add `wan_gateway = \"<the upstream router's address>\"`"),
            ),
            (WanAddress::Dhcp(_), Some(g)) => cx.diags.push(
                Diagnostic::error(
                    "bad-value",
                    "`wan_gateway` is set, and the WAN takes its address (and gateway) by DHCP",
                    g.loc.clone(),
                )
                .help("remove `wan_gateway`, or give the WAN a static `wan_address`"),
            ),
            (WanAddress::Static(a), Some(g)) => {
                let (addr, prefix) = a.value;
                let net = ipnet::IpNet::new(addr, prefix).map(|n| n.trunc());
                if net.is_ok_and(|n| !n.contains(&g.value)) || g.value == addr {
                    cx.diags.push(
                        Diagnostic::error(
                            "address-outside-zone",
                            format!(
                                "WAN gateway `{}` is not another address of the WAN network `{addr}/{prefix}`",
                                g.value
                            ),
                            g.loc.clone(),
                        )
                        .help("the gateway must be reachable on the WAN link: an address of its network"),
                    );
                }
            }
            _ => {}
        }
        let Some(wan) = wan else {
            if k.wan.is_none() {
                let loc = cx.loc(first);
                cx.diags.push(
                    Diagnostic::error(
                        "missing-key",
                        format!("pfsense service `{}` sets firewall keys but no `wan` port", svc.name),
                        loc,
                    )
                    .help("add `wan = \"igb0\"` (the OS name of the WAN port); it makes the firewall's config.xml"),
                );
            }
            continue;
        };
        if admin_zone.is_none() && k.admin_zone.is_none() {
            cx.diags.push(
                Diagnostic::error(
                    "missing-key",
                    format!("pfsense service `{}` has no `admin_zone`", svc.name),
                    wan.loc.clone(),
                )
                .help("add `admin_zone = \"management\"`: the zone that administers the firewall (pfSense's LAN)"),
            );
        }
        let Some(admin_port) = admin_port else { continue };
        out.services
            .insert(id, Firewall { wan, wan_address, wan_gateway: gateway, trunk, syslog, admin_zone, admin_port });
    }
    out
}
