//! Placement: hosts (VMs on hypervisors, interfaces), where services run (Docker for
//! containers, the firewall only for pfSense), dependencies without cycles, and no two
//! services on one port of a host.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::*;

pub(super) fn hosts(site: &Site, diags: &mut Diagnostics) {
    for h in &site.hosts {
        // `<host>.<domain>` goes into /etc/hosts and DNS, which take at most 253
        // characters.
        let fqdn = h.name.len() + 1 + site.settings.domain.len();
        if !site.settings.domain.is_empty() && fqdn > 253 {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "`{}.{}` is {fqdn} characters long; a DNS name takes at most 253",
                        h.name, site.settings.domain
                    ),
                    h.loc.clone(),
                )
                .help("shorten the host name or the site's `domain`"),
            );
        }
        match (h.kind.value, &h.on) {
            (HostKind::Vm, None) => diags.push(
                Diagnostic::error(
                    "missing-key",
                    format!("VM `{}` does not say which hypervisor it runs on", h.name),
                    h.loc.clone(),
                )
                .help("add `on = \"<hypervisor host>\"`"),
            ),
            (HostKind::Vm, Some(on)) => {
                let hv = site.host(on.value);
                if hv.kind.value != HostKind::Hypervisor {
                    diags.push(
                        Diagnostic::error(
                            "bad-placement",
                            format!(
                                "`{}` is placed on `{}`, which is a {}, not a hypervisor",
                                h.name,
                                hv.name,
                                hv.kind.value.name()
                            ),
                            on.loc.clone(),
                        )
                        .also(hv.kind.loc.clone(), "its kind")
                        .help("place VMs on a host with `kind = \"hypervisor\"`"),
                    );
                }
            }
            (_, Some(on)) => diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!("`{}` is a {} and cannot run on another host", h.name, h.kind.value.name()),
                    on.loc.clone(),
                )
                .help("remove `on`, or set `kind = \"vm\"`"),
            ),
            _ => {}
        }
        if h.interfaces.is_empty() && !h.interfaces_declared {
            diags.push(
                Diagnostic::error("missing-key", format!("host `{}` has no interfaces", h.name), h.loc.clone())
                    .help("add `interfaces = [{ zone = \"<zone>\", address = \"<address>\" }]`"),
            );
        }
        let mut zones = BTreeSet::new();
        for i in &h.interfaces {
            if !zones.insert(i.zone.value) && h.kind.value != HostKind::Firewall {
                diags.push(
                    Diagnostic::error(
                        "duplicate-interface",
                        format!("host `{}` has two interfaces in zone `{}`", h.name, site.zone(i.zone.value).name),
                        i.zone.loc.clone(),
                    )
                    .help("one interface per zone is enough; remove one"),
                );
            }
        }
    }
}

pub(super) fn services(site: &Site, diags: &mut Diagnostics) {
    for (sid, s) in site.services.iter().enumerate() {
        let info = s.kind.value.info();
        if !s.declared.kind_known {
            continue;
        }
        if s.hosts.is_empty() && !s.declared.hosts {
            diags.push(
                Diagnostic::error("missing-key", format!("service `{}` runs on no host", s.name), s.loc.clone())
                    .help("add `hosts = [\"<host>\"]`"),
            );
        }
        let mut seen = BTreeSet::new();
        for h in &s.hosts {
            if !seen.insert(h.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-name",
                        format!("host `{}` is listed twice", site.host(h.value).name),
                        h.loc.clone(),
                    )
                    .help("list each host once"),
                );
            }
            let host = site.host(h.value);
            let on_firewall = host.kind.value == HostKind::Firewall;
            if on_firewall != (s.kind.value == ServiceKind::Pfsense) {
                let msg = if on_firewall {
                    format!("service `{}` cannot run on the firewall `{}`", s.name, host.name)
                } else {
                    format!("pfsense runs only on firewall hosts, and `{}` is a {}", host.name, host.kind.value.name())
                };
                diags.push(
                    Diagnostic::error("bad-placement", msg, h.loc.clone())
                        .help("firewall hosts run only the `pfsense` kind; place other services on Linux hosts"),
                );
            }
            if info.container
                && !host.has_role(Role::Docker)
                && !host.has_role(Role::SwarmManager)
                && !host.has_role(Role::SwarmWorker)
            {
                diags.push(
                    Diagnostic::error(
                        "bad-placement",
                        format!(
                            "container service `{}` is placed on `{}`, which does not run Docker",
                            s.name, host.name
                        ),
                        h.loc.clone(),
                    )
                    .also(host.loc.clone(), "host defined here")
                    .help(format!("add `\"docker\"` to the roles of `{}`", host.name)),
                );
            }
        }
        if let (Some(img), false) = (&s.image, info.container) {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("`{}` services run natively from the Debian package, not from an image", info.name),
                    img.loc.clone(),
                )
                .help(format!("remove `image`, or use `kind = \"container\"` to run `{}` in a container", img.value)),
            )
        }
        if s.replicas > 1 && !info.container {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("`replicas` applies to containers, and `{}` is a native `{}` service", s.name, info.name),
                    s.loc.clone(),
                )
                .help("list more hosts in `hosts` instead"),
            );
        }
        for (net, addr) in &s.networks {
            let n = site.network(*net);
            if addr.value.is_none() {
                // `"auto"`: the driver assigns the address, which fits overlays and replicas.
                continue;
            }
            if n.driver == NetDriver::Overlay {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!(
                            "docker network `{}` is an overlay, and Swarm assigns overlay addresses itself",
                            n.name
                        ),
                        addr.loc.clone(),
                    )
                    .also(n.loc.clone(), "network defined here")
                    .help(format!("write `{} = \"auto\"` to let Swarm assign it, or use a `bridge` network (one per host) for static addresses", n.name)),
                );
            } else if s.replicas > 1 {
                diags.push(
                    Diagnostic::error(
                        "bad-value",
                        format!("`{}` runs {} replicas, which cannot share one static address", s.name, s.replicas),
                        addr.loc.clone(),
                    )
                    .help(
                        "run one container per host (list the hosts instead of `replicas`), or drop the static address",
                    ),
                );
            }
        }
        if !s.networks.is_empty() && !info.container {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("native service `{}` cannot attach to docker networks", s.name),
                    s.loc.clone(),
                )
                .help("remove `networks`"),
            );
        }
        let r = &s.resources;
        if r.reserve_cpus > r.cpus || r.reserve_memory > r.memory {
            diags.push(
                Diagnostic::error(
                    "bad-resources",
                    format!("service `{}` reserves more than its limit", s.name),
                    s.loc.clone(),
                )
                .help(format!(
                    "reservations ({} CPUs, {}) must not exceed limits ({} CPUs, {})",
                    r.reserve_cpus, r.reserve_memory, r.cpus, r.memory
                )),
            );
        }
        for d in &s.depends_on {
            if d.value.0 == sid {
                diags.push(
                    Diagnostic::error(
                        "dependency-cycle",
                        format!("service `{}` depends on itself", s.name),
                        d.loc.clone(),
                    )
                    .help("remove it from `depends_on`"),
                );
            }
        }
    }
    dependency_cycles(site, diags);
    port_clashes(site, diags);
}

pub(super) fn dependency_cycles(site: &Site, diags: &mut Diagnostics) {
    // Depth-first search; report each cycle once, at the edge that closes it.
    fn visit(site: &Site, s: ServiceId, state: &mut Vec<u8>, stack: &mut Vec<ServiceId>, diags: &mut Diagnostics) {
        state[s.0] = 1;
        stack.push(s);
        for d in &site.service(s).depends_on {
            let t = d.value;
            if t == s {
                continue;
            }
            match state[t.0] {
                0 => visit(site, t, state, stack, diags),
                1 => {
                    let start = stack.iter().position(|x| *x == t).unwrap_or(0);
                    let mut names: Vec<&str> = stack[start..].iter().map(|x| site.service(*x).name.as_str()).collect();
                    names.push(&site.service(t).name);
                    diags.push(
                        Diagnostic::error(
                            "dependency-cycle",
                            format!("services depend on each other in a cycle: {}", names.join(" → ")),
                            d.loc.clone(),
                        )
                        .help("break the cycle: nothing could ever start first"),
                    );
                }
                _ => {}
            }
        }
        stack.pop();
        state[s.0] = 2;
    }
    let mut state = vec![0u8; site.services.len()];
    for i in 0..site.services.len() {
        if state[i] == 0 {
            visit(site, ServiceId(i), &mut state, &mut Vec::new(), diags);
        }
    }
}

pub(super) fn port_clashes(site: &Site, diags: &mut Diagnostics) {
    for (hid, h) in site.hosts.iter().enumerate() {
        let mut used: BTreeMap<values_key::Key, (&str, &str, Option<&Loc>)> = BTreeMap::new();
        for sid in site.services_on(HostId(hid)) {
            let s = site.service(sid);
            // VRRP and ICMP have no ports to clash on.
            for p in s.ports.iter().filter(|p| p.spec.proto.has_ports()) {
                let key = (p.spec.proto, p.spec.port);
                if let Some((other, oport, oloc)) = used.get(&key) {
                    if *other == s.name {
                        continue;
                    }
                    let loc = p.loc.clone().unwrap_or(s.loc.clone());
                    let mut d = Diagnostic::error(
                        "port-clash",
                        format!("services `{other}` and `{}` both listen on {} on host `{}`", s.name, p.spec, h.name),
                        loc,
                    )
                    .label(format!("`{}` port `{}`", s.name, p.name));
                    if let Some(ol) = oloc {
                        d = d.also((*ol).clone(), format!("`{other}` port `{oport}`"));
                    }
                    diags.push(d.help("move one service to another host or change its port"));
                } else {
                    used.insert(key, (&s.name, &p.name, p.loc.as_ref()));
                }
            }
        }
    }
}

mod values_key {
    pub type Key = (crate::model::values::Proto, u16);
}
