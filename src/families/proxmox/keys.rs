//! The proxmox family's own keys: the top-level `[proxmox.<host>]` table, what the
//! model does not know about a Proxmox VE host's network (the physical NIC its
//! management bridge is bridged to).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::families::{Part, parts_of};
use crate::load::schema::{Named, Str};
use crate::model::values::{self, ValueError};
use crate::model::{At, HostId, Role, Site};
use crate::resolve::cx::{Cx, RefTo};

crate::keys! {
    /// The proxmox family's keys in one site file.
    #[derive(Debug, Default, Deserialize)]
    pub struct ProxmoxFile {
        /// Proxmox VE hosts' networking, one table per host with the `proxmox` role.
        #[serde(default)]
        pub proxmox: Named<RawNode>,
    }
}

crate::keys! {
    /// `[proxmox.<host>]`: a Proxmox VE host's network, written to its `/etc/network/interfaces`.
    #[derive(Debug, Deserialize)]
    pub struct RawNode {
        /// Required. The physical NIC the management bridge is bridged to, as `ip link` names it on the host (e.g. `eno1`): the VLAN trunk from the switch.
        pub uplink: Option<Str>,
    }
}

/// One Proxmox VE host's settings.
#[derive(Debug, Clone)]
pub struct Node {
    /// The physical uplink NIC.
    pub uplink: At<String>,
}

/// The proxmox family's model.
#[derive(Debug, Default)]
pub struct Model {
    /// By host.
    pub nodes: BTreeMap<HostId, Node>,
    /// Hosts that have a `[proxmox.<host>]` table (with or without a valid uplink), so
    /// a missing uplink is reported once.
    pub written: BTreeMap<HostId, Loc>,
}

/// A Linux network interface name: 1–15 characters (the kernel's `IFNAMSIZ`) of
/// letters, digits, `-` and `_`, starting with a letter. No `.` (a VLAN sub-interface is
/// not a trunk) and nothing ifupdown would read as syntax.
pub fn nic_name(s: &str) -> Result<String, ValueError> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !first_ok || !rest_ok || s.len() > 15 {
        return Err(ValueError {
            code: "bad-name",
            message: format!("`{}` is not a network interface name", values::printable(s)),
            help: "write the NIC's name as `ip link` shows it on the host, e.g. `eno1` or `enp3s0f0`: a letter, then letters, digits, `-` or `_`, at most 15 characters".into(),
        });
    }
    Ok(s.to_string())
}

/// Types `[proxmox.<host>]` of every file.
pub fn resolve(parts: &[Part], site: &Site, diags: &mut Diagnostics) -> Model {
    let mut out = Model::default();
    for (file, f) in parts_of::<ProxmoxFile>(parts) {
        let mut cx = Cx::new(file, site, diags);
        for (name, raw) in &f.proxmox {
            let at = cx.loc(name.span());
            let Some(id) = cx.reference(RefTo::Host, name.get_ref(), at.clone()).map(HostId) else { continue };
            let host = site.host(id);
            if let Some(first) = out.written.get(&id) {
                cx.diags.push(
                    Diagnostic::error("duplicate-name", format!("`[proxmox.{}]` is defined twice", host.name), at)
                        .also(first.clone(), "first defined here")
                        .help("keep one `[proxmox.<host>]` table per host"),
                );
                continue;
            }
            out.written.insert(id, at.clone());
            if !host.has_role(Role::Proxmox) {
                cx.diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!(
                            "`[proxmox.{}]` applies to Proxmox VE hosts, and `{}` has no `proxmox` role",
                            host.name, host.name
                        ),
                        at,
                    )
                    .label("not a Proxmox VE host")
                    .help(format!("add `\"proxmox\"` to the `roles` of `{}`, or remove this table", host.name)),
                );
                continue;
            }
            let Some(uplink) = &raw.uplink else {
                if !cx.names.wrong_typed(file, "uplink") {
                    cx.diags.push(missing_uplink(&host.name, at).label("`uplink` is required here"));
                }
                continue;
            };
            if let Some(uplink) = cx.value(uplink, nic_name) {
                out.nodes.insert(id, Node { uplink });
            }
        }
    }
    out
}

/// The error of a Proxmox VE host without an uplink, at `loc`.
pub fn missing_uplink(host: &str, loc: Loc) -> Diagnostic {
    Diagnostic::error("missing-key", format!("Proxmox VE host `{host}` has no uplink NIC"), loc).help(format!(
        "add `[proxmox.{host}]` with `uplink = \"eno1\"`: the physical NIC its management bridge is bridged to, as `ip link` names it on the host"
    ))
}
