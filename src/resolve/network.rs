//! Zones, docker networks and hosts.

use super::cx::{Cx, RefTo};
use crate::diag::Loc;
use crate::load::schema::*;
use crate::model::values::{self, NameKind, Size};
use crate::model::*;

impl Cx<'_, '_> {
    pub(super) fn zone(&mut self, name: &str, loc: Loc, z: &RawZone) -> Zone {
        let t = format!("[zones.{name}]");
        let vlan = self.required(&z.vlan, &loc, "vlan", &t).and_then(|v| self.int(v, 1, 4094, "VLAN id"));
        // A zone holds a gateway and hosts: a /31 or /32 (/127, /128) has no room for
        // them beside its network and broadcast addresses.
        let cidr = self.required(&z.cidr, &loc, "cidr", &t).and_then(|v| {
            self.value(v, |s| {
                let net = values::cidr(s)?;
                let room = match net {
                    ipnet::IpNet::V4(n) => n.prefix_len() <= 30,
                    ipnet::IpNet::V6(n) => n.prefix_len() <= 126,
                };
                if room {
                    Ok(net)
                } else {
                    Err(values::ValueError {
                        code: "bad-value",
                        message: format!("zone network `{net}` has no room for a gateway and hosts"),
                        help: "give the zone a /30 or larger (a VLAN usually has a /24)".into(),
                    })
                }
            })
        });
        Zone {
            name: name.to_string(),
            vlan,
            cidr,
            gateway: z.gateway.as_ref().and_then(|v| self.value(v, values::address)),
            description: self.opt_text(&z.description),
            loc,
        }
    }

    pub(super) fn network(&mut self, name: &str, loc: Loc, n: &RawDockerNetwork) -> DockerNetwork {
        let t = format!("[docker_networks.{name}]");
        let cidr = self.required(&n.cidr, &loc, "cidr", &t).and_then(|v| self.value(v, values::cidr));
        let driver = n
            .driver
            .as_ref()
            .and_then(|v| {
                self.vocabulary(v, "network driver", &[("bridge", NetDriver::Bridge), ("overlay", NetDriver::Overlay)])
            })
            .map(|a| a.value)
            .unwrap_or(NetDriver::Bridge);
        DockerNetwork {
            name: name.to_string(),
            cidr,
            gateway: n.gateway.as_ref().and_then(|v| self.value(v, values::address)),
            internal: n.internal.as_ref().map(|b| *b.get_ref()).unwrap_or(false),
            driver,
            encrypted: n.encrypted.as_ref().map(|b| *b.get_ref()).unwrap_or(false),
            description: self.opt_text(&n.description),
            loc,
        }
    }

    pub(super) fn host(&mut self, name: &str, loc: Loc, h: &RawHost) -> Host {
        let t = format!("[hosts.{name}]");
        let kind = self
            .required(&h.kind, &loc, "kind", &t)
            .and_then(|v| self.vocabulary(v, "host kind", HostKind::ALL))
            .unwrap_or(At { value: HostKind::Physical, loc: loc.clone() });
        let on =
            h.on.as_ref()
                .and_then(|v| self.reference_str(RefTo::Host, v))
                .map(|a| At { value: HostId(a.value), loc: a.loc });
        let os =
            h.os.as_ref()
                .and_then(|v| self.value(v, |s| values::name(s, NameKind::Ident).or_else(|_| values::dns_name(s))))
                .map(|a| a.value);
        let roles = h.roles.iter().filter_map(|r| self.vocabulary(r, "host role", Role::ALL)).collect();
        let mut interfaces = Vec::new();
        for i in &h.interfaces {
            let iloc = self.loc(i.span());
            let i = i.get_ref();
            let zone =
                self.required(&i.zone, &iloc, "zone", "interface").and_then(|v| self.reference_str(RefTo::Zone, v));
            let address =
                self.required(&i.address, &iloc, "address", "interface").and_then(|v| self.value(v, values::address));
            let iname = i.name.as_ref().and_then(|v| self.value(v, |s| values::name(s, NameKind::Ident)));
            if let (Some(zone), Some(address)) = (zone, address) {
                interfaces.push(Interface {
                    zone: At { value: ZoneId(zone.value), loc: zone.loc },
                    address,
                    name: iname,
                });
            }
        }
        let resources = h.resources.as_ref().map(|r| {
            let r = r.get_ref();
            HostResources {
                cpus: r.cpus.as_ref().and_then(|v| self.int(v, 1, 4096, "CPU count")).map(|a| a.value),
                memory: r.memory.as_ref().and_then(|v| self.value(v, Size::parse)).map(|a| a.value),
                disk: r.disk.as_ref().and_then(|v| self.value(v, Size::parse)).map(|a| a.value),
            }
        });
        Host {
            name: name.to_string(),
            kind,
            on,
            os,
            roles,
            interfaces,
            resources,
            description: self.opt_text(&h.description),
            interfaces_declared: !h.interfaces.is_empty(),
            ssh_host_key_written: h.ssh_host_key.is_some(),
            ssh_host_key: h.ssh_host_key.as_ref().and_then(|v| self.value(v, values::ssh_host_key)),
            loc,
        }
    }
}
