//! Stage 3, **verify**: the checks that need the whole [`Site`].
//!
//! Each function below is one family of rules (addressing, hosts, services, hardening,
//! secrets, exposure, flows and guard-rails, backups). They only read the model and push
//! diagnostics; none stops at the first problem. Values that failed to resolve are
//! `None` in the model and are skipped here, so one mistake is reported once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::load::looks_like_secret_name;
use crate::model::values::is_root_user;
use crate::model::*;

/// Runs every check.
pub fn verify(site: &Site, diags: &mut Diagnostics) {
    addressing(site, diags);
    hosts(site, diags);
    services(site, diags);
    hardening(site, diags);
    secrets(site, diags);
    exposure(site, diags);
    flows(site, diags);
    backups(site, diags);
    for family in crate::families::FAMILIES {
        family.verify(site, diags);
    }
}

fn addressing(site: &Site, diags: &mut Diagnostics) {
    // VLAN ids are unique.
    let mut vlans: BTreeMap<u16, &Zone> = BTreeMap::new();
    for z in &site.zones {
        let Some(v) = &z.vlan else { continue };
        if let Some(first) = vlans.get(&v.value) {
            diags.push(
                Diagnostic::error(
                    "duplicate-vlan",
                    format!("VLAN {} is used by zones `{}` and `{}`", v.value, first.name, z.name),
                    v.loc.clone(),
                )
                .also(first.vlan.as_ref().map(|x| x.loc.clone()).unwrap_or(first.loc.clone()), "first used here")
                .help("give each zone its own VLAN id"),
            );
        } else {
            vlans.insert(v.value, z);
        }
    }
    // No two networks (zones or docker networks) overlap.
    let mut nets: Vec<(String, &At<ipnet::IpNet>)> = Vec::new();
    for z in &site.zones {
        if let Some(c) = &z.cidr {
            nets.push((format!("zone `{}`", z.name), c));
        }
    }
    for n in &site.docker_networks {
        if let Some(c) = &n.cidr {
            nets.push((format!("docker network `{}`", n.name), c));
        }
    }
    for (i, (an, a)) in nets.iter().enumerate() {
        for (bn, b) in &nets[i + 1..] {
            if a.value.contains(&b.value.network()) || b.value.contains(&a.value.network()) {
                diags.push(
                    Diagnostic::error(
                        "overlapping-cidr",
                        format!("{bn} ({}) overlaps {an} ({})", b.value, a.value),
                        b.loc.clone(),
                    )
                    .also(a.loc.clone(), format!("{an} is defined here"))
                    .help("give each network its own address range"),
                );
            }
        }
    }
    // Gateways lie inside their networks.
    for z in &site.zones {
        if let (Some(c), Some(g)) = (&z.cidr, &z.gateway) {
            inside(diags, &g.value, &g.loc, c, &format!("zone `{}`", z.name), "gateway");
        }
    }
    for n in &site.docker_networks {
        if let (Some(c), Some(g)) = (&n.cidr, &n.gateway) {
            inside(diags, &g.value, &g.loc, c, &format!("docker network `{}`", n.name), "gateway");
        }
    }
    // Host addresses: inside their zone, unique, not the gateway (unless the host is the firewall).
    let mut seen: BTreeMap<IpAddr, (&str, &Loc)> = BTreeMap::new();
    for h in &site.hosts {
        for i in &h.interfaces {
            let z = site.zone(i.zone.value);
            if let Some(c) = &z.cidr
                && !inside(diags, &i.address.value, &i.address.loc, c, &format!("zone `{}`", z.name), "address")
            {
                continue;
            }
            if let Some(g) = &z.gateway
                && g.value == i.address.value
                && h.kind.value != HostKind::Firewall
            {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("`{}` is the gateway of zone `{}`", i.address.value, z.name),
                        i.address.loc.clone(),
                    )
                    .also(g.loc.clone(), "the zone's gateway")
                    .help("only the firewall host may hold the gateway address; pick a free address"),
                );
                continue;
            }
            if let Some((other, loc)) = seen.get(&i.address.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("address `{}` is used by `{other}` and `{}`", i.address.value, h.name),
                        i.address.loc.clone(),
                    )
                    .also((*loc).clone(), format!("already used by `{other}`"))
                    .help("every interface needs its own address"),
                );
            } else {
                seen.insert(i.address.value, (&h.name, &i.address.loc));
            }
        }
    }
    // Docker network attachments: inside the network, unique per network, not the gateway.
    let mut attached: BTreeMap<(NetId, IpAddr), (&str, &Loc)> = BTreeMap::new();
    for s in &site.services {
        for (net, addr) in &s.networks {
            let n = site.network(*net);
            if let Some(c) = &n.cidr
                && !inside(diags, &addr.value, &addr.loc, c, &format!("docker network `{}`", n.name), "address")
            {
                continue;
            }
            if n.gateway.as_ref().is_some_and(|g| g.value == addr.value) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!("`{}` is the gateway of docker network `{}`", addr.value, n.name),
                        addr.loc.clone(),
                    )
                    .help("pick a free address in the network"),
                );
            }
            if let Some((other, loc)) = attached.get(&(*net, addr.value)) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-address",
                        format!(
                            "address `{}` on docker network `{}` is used by `{other}` and `{}`",
                            addr.value, n.name, s.name
                        ),
                        addr.loc.clone(),
                    )
                    .also((*loc).clone(), format!("already used by `{other}`"))
                    .help("every container needs its own address on a network"),
                );
            } else {
                attached.insert((*net, addr.value), (&s.name, &addr.loc));
            }
        }
    }
}

/// Reports `addr` outside `net`; returns whether it is inside.
fn inside(diags: &mut Diagnostics, addr: &IpAddr, loc: &Loc, net: &At<ipnet::IpNet>, owner: &str, what: &str) -> bool {
    let n = net.value;
    if !n.contains(addr) {
        diags.push(
            Diagnostic::error("address-outside-zone", format!("{what} `{addr}` is outside {owner} ({n})"), loc.clone())
                .also(net.loc.clone(), format!("{owner} is {n}"))
                .help(format!("use an address in {n}, or move it to the zone that holds `{addr}`")),
        );
        return false;
    }
    let is_v4_edge = matches!((addr, n), (IpAddr::V4(_), ipnet::IpNet::V4(v4)) if v4.prefix_len() < 31 && (*addr == IpAddr::V4(v4.network()) || *addr == IpAddr::V4(v4.broadcast())));
    if is_v4_edge {
        diags.push(
            Diagnostic::error(
                "address-outside-zone",
                format!("{what} `{addr}` is the network or broadcast address of {owner}"),
                loc.clone(),
            )
            .help("use a host address between the first and the last"),
        );
        return false;
    }
    true
}

fn hosts(site: &Site, diags: &mut Diagnostics) {
    for h in &site.hosts {
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

fn services(site: &Site, diags: &mut Diagnostics) {
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
        match (&s.primary, s.kind.value) {
            (Some(p), ServiceKind::Postgres) if !s.hosts.iter().any(|h| h.value == p.value) => diags.push(
                Diagnostic::error(
                    "bad-placement",
                    format!("primary `{}` is not one of the hosts of `{}`", site.host(p.value).name, s.name),
                    p.loc.clone(),
                )
                .help("the primary must be listed in `hosts`"),
            ),
            (Some(p), k) if k != ServiceKind::Postgres => diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("`primary` only applies to postgres, and `{}` is a `{}` service", s.name, info.name),
                    p.loc.clone(),
                )
                .help("remove `primary`"),
            ),
            (None, ServiceKind::Postgres) if s.hosts.len() > 1 => diags.push(
                Diagnostic::error(
                    "missing-key",
                    format!("postgres service `{}` runs on {} hosts but names no primary", s.name, s.hosts.len()),
                    s.loc.clone(),
                )
                .help("add `primary = \"<host>\"`; the other hosts become streaming replicas"),
            ),
            _ => {}
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
                    .help("remove the address, or use a `bridge` network (one per host) for static addresses"),
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

fn dependency_cycles(site: &Site, diags: &mut Diagnostics) {
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

fn port_clashes(site: &Site, diags: &mut Diagnostics) {
    for (hid, h) in site.hosts.iter().enumerate() {
        let mut used: BTreeMap<values_key::Key, (&str, &str, Option<&Loc>)> = BTreeMap::new();
        for sid in site.services_on(HostId(hid)) {
            let s = site.service(sid);
            for p in &s.ports {
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

fn hardening(site: &Site, diags: &mut Diagnostics) {
    for s in site.services.iter().filter(|s| s.declared.kind_known) {
        let mut needed = BTreeSet::new();
        if s.kind.value.info().container {
            match &s.user {
                None => diags.push(
                    Diagnostic::error(
                        "root-container",
                        format!("container `{}` does not say which user it runs as", s.name),
                        s.loc.clone(),
                    )
                    .help("add `user = \"uid:gid\"` with a non-root user (images default to root)"),
                ),
                Some(u) if is_root_user(&u.value) => {
                    needed.insert(ExceptionKind::RootUser);
                    if s.exception(ExceptionKind::RootUser).is_none() {
                        diags.push(
                            Diagnostic::error(
                                "hardening-exception",
                                format!("container `{}` runs as root", s.name),
                                u.loc.clone(),
                            )
                            .help(
                                "use a non-root `user`, or write why root is needed: `exceptions.root_user = \"...\"`",
                            ),
                        );
                    }
                }
                Some(_) => {}
            }
            if !s.read_only.value {
                needed.insert(ExceptionKind::ReadOnly);
                if s.exception(ExceptionKind::ReadOnly).is_none() {
                    diags.push(
                        Diagnostic::error("hardening-exception", format!("container `{}` has a writable root filesystem without a reason", s.name), s.read_only.loc.clone())
                            .help("mount writable paths as `volumes` or `tmpfs`, or write why: `exceptions.read_only = \"...\"`"),
                    );
                }
            }
            if s.health.is_none() && !s.declared.health {
                needed.insert(ExceptionKind::Health);
                if s.exception(ExceptionKind::Health).is_none() {
                    diags.push(
                        Diagnostic::error("hardening-exception", format!("container `{}` has no health check", s.name), s.loc.clone())
                            .help("add `health = { http = \"/health\" }` (or `tcp`/`exec`), or write why: `exceptions.health = \"...\"`"),
                    );
                }
            }
        }
        if let Some(first) = s.cap_add.first() {
            needed.insert(ExceptionKind::CapAdd);
            if s.exception(ExceptionKind::CapAdd).is_none() {
                let caps: Vec<&str> = s.cap_add.iter().map(|c| c.value.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        "hardening-exception",
                        format!("service `{}` adds capabilities ({}) without a reason", s.name, caps.join(", ")),
                        first.loc.clone(),
                    )
                    .help("write why they are needed: `exceptions.cap_add = \"...\"`"),
                );
            }
        }
        for e in &s.exceptions {
            if e.reason.value.trim().is_empty() {
                diags.push(
                    Diagnostic::error(
                        "hardening-exception",
                        format!("hardening exception `{}` of `{}` has no reason", e.kind.key(), s.name),
                        e.reason.loc.clone(),
                    )
                    .help("write the reason a reviewer needs to accept it"),
                );
            } else if !needed.contains(&e.kind) {
                diags.push(
                    Diagnostic::error(
                        "unused-exception",
                        format!("exception `{}` of `{}` relaxes nothing", e.kind.key(), s.name),
                        e.reason.loc.clone(),
                    )
                    .help("remove it: the service already keeps this default")
                    .warning(),
                );
            }
        }
    }
}

/// Prefixes of well-known credential formats.
const SECRET_VALUE_PREFIXES: &[&str] =
    &["-----BEGIN", "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "AKIA", "sk_live_", "sk-"];

/// Whether a value looks like a credential rather than configuration.
pub fn looks_like_secret_value(v: &str) -> bool {
    if SECRET_VALUE_PREFIXES.iter().any(|p| v.starts_with(p)) {
        return true;
    }
    // user:password@ in a URL.
    if let Some((_, rest)) = v.split_once("://")
        && let Some((userinfo, _)) = rest.split_once('@')
        && userinfo.contains(':')
    {
        return true;
    }
    false
}

fn secrets(site: &Site, diags: &mut Diagnostics) {
    for s in &site.services {
        for (k, v) in &s.env {
            let is_ref = v.value.starts_with("/run/secrets/");
            if looks_like_secret_name(&k.value) && !is_ref {
                diags.push(
                    Diagnostic::error("secret-value", format!("`{}` looks like a secret and has a literal value", k.value), v.loc.clone())
                        .label("a value here would be committed to git and rendered into configs")
                        .help(format!("list the secret in `secrets = [...]` and point the app at its file, e.g. `{}_FILE = \"/run/secrets/<name>\"`", k.value.trim_end_matches("_FILE"))),
                );
            } else if looks_like_secret_value(&v.value) {
                diags.push(
                    Diagnostic::error(
                        "secret-value",
                        format!("the value of `{}` looks like a credential", k.value),
                        v.loc.clone(),
                    )
                    .help("never write credentials in the site; provision them as secrets and refer to them by name"),
                );
            }
            if is_ref {
                let name = v.value.trim_start_matches("/run/secrets/");
                if !s.secrets.iter().any(|x| x.value == name) {
                    diags.push(
                        Diagnostic::error(
                            "unknown-reference",
                            format!("`{}` reads secret `{name}`, which `{}` does not list", k.value, s.name),
                            v.loc.clone(),
                        )
                        .help(format!("add `\"{name}\"` to `secrets`")),
                    );
                }
            }
        }
    }
}

fn exposure(site: &Site, diags: &mut Diagnostics) {
    let mut routes: BTreeMap<(String, String), (&str, &Loc)> = BTreeMap::new();
    for s in &site.services {
        for e in &s.expose {
            if s.port(&e.port.value).is_none() {
                let names: Vec<&str> = s.ports.iter().map(|p| p.name.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        "unknown-port",
                        format!("service `{}` has no port named `{}`", s.name, e.port.value),
                        e.port.loc.clone(),
                    )
                    .help(if names.is_empty() {
                        "declare the port in `ports`".to_string()
                    } else {
                        format!("its ports are {}", crate::resolve::shortlist(&names))
                    }),
                );
            }
            let key = (e.hostname.value.clone(), e.path.value.clone());
            if let Some((other, loc)) = routes.get(&key) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-route",
                        format!("`{}{}` is exposed by both `{other}` and `{}`", e.hostname.value, e.path.value, s.name),
                        e.path.loc.clone(),
                    )
                    .also((*loc).clone(), format!("exposed by `{other}` here"))
                    .help("give one of them another hostname or path"),
                );
            } else {
                routes.insert(key, (&s.name, &e.loc));
            }
        }
    }
}

fn flows(site: &Site, diags: &mut Diagnostics) {
    for f in &site.flows {
        if let Endpoint::Service(to) = f.to.value {
            let svc = site.service(to);
            for p in &f.ports {
                if !svc.ports.iter().any(|x| x.spec == p.value) {
                    let offered: Vec<String> = svc.ports.iter().map(|x| format!("{} ({})", x.spec, x.name)).collect();
                    diags.push(
                        Diagnostic::error(
                            "flow-port-not-served",
                            format!("flow to `{}` on {} but the service does not listen there", svc.name, p.value),
                            p.loc.clone(),
                        )
                        .help(if offered.is_empty() {
                            format!("`{}` declares no ports", svc.name)
                        } else {
                            format!("`{}` listens on {}", svc.name, offered.join(", "))
                        }),
                    );
                }
            }
        }
        if f.from.value == f.to.value && !matches!(f.from.value, Endpoint::Service(_)) {
            diags.push(
                Diagnostic::error("bad-endpoint", "a flow from an endpoint to itself says nothing", f.to.loc.clone())
                    .help("traffic inside a zone or host needs no flow"),
            );
        }
        // The zone pairs this flow crosses: for each pair of machines that share no zone,
        // every zone of the source against every zone of the destination.
        let mut crossings: BTreeSet<(Option<ZoneId>, Option<ZoneId>)> = BTreeSet::new();
        for a in site.endpoint_zone_sets(&f.from.value) {
            for b in site.endpoint_zone_sets(&f.to.value) {
                if a.iter().any(|z| b.contains(z)) {
                    continue;
                }
                for za in &a {
                    for zb in &b {
                        crossings.insert((*za, *zb));
                    }
                }
            }
        }
        for g in &site.guardrails {
            if crossings.contains(&(g.from, g.to)) {
                let zname = |z: Option<ZoneId>| {
                    z.map(|z| format!("zone `{}`", site.zone(z).name)).unwrap_or_else(|| "the internet".into())
                };
                diags.push(
                    Diagnostic::error(
                        "guardrail-violation",
                        format!(
                            "flow {} → {} opens {} → {}, which a guard-rail forbids",
                            site.endpoint_name(&f.from.value),
                            site.endpoint_name(&f.to.value),
                            zname(g.from),
                            zname(g.to)
                        ),
                        f.to.loc.clone(),
                    )
                    .label("this destination is in a forbidden zone")
                    .also(g.loc.clone(), format!("guard-rail: {}", g.why))
                    .help("route the traffic through an allowed tier (e.g. via the application zone), or change the guard-rail in review"),
                );
            }
        }
    }
}

fn backups(site: &Site, diags: &mut Diagnostics) {
    let rpo = &site.recovery.rpo;
    for b in &site.backups {
        if b.every.value > rpo.value && !b.continuous {
            diags.push(
                Diagnostic::error(
                    "rpo-violation",
                    format!("backup `{}` runs every {}, but the site's RPO is {}", b.name, b.every.value, rpo.value),
                    b.every.loc.clone(),
                )
                .also(rpo.loc.clone(), "recovery point objective")
                .help(format!(
                    "run it at least every {}, or add continuous archiving (`continuous = true`)",
                    rpo.value
                )),
            );
        }
        let svc = site.service(b.service.value);
        let fits = match b.method {
            BackupMethod::PgBasebackup | BackupMethod::PgDump => svc.kind.value == ServiceKind::Postgres,
            BackupMethod::RedisRdb => svc.kind.value == ServiceKind::Redis,
            BackupMethod::MinioMirror => svc.kind.value == ServiceKind::Minio,
            BackupMethod::Restic | BackupMethod::ZfsSnapshot => true,
        };
        if !fits {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!(
                        "backup method `{}` does not fit `{}` (a `{}` service)",
                        b.method.name(),
                        svc.name,
                        svc.kind.value.info().name
                    ),
                    b.service.loc.clone(),
                )
                .help("use `restic` or `zfs-snapshot` for generic data"),
            );
        }
        if b.target.value == Endpoint::Service(b.service.value) {
            diags.push(
                Diagnostic::error(
                    "bad-endpoint",
                    format!("backup `{}` stores `{}` on itself", b.name, svc.name),
                    b.target.loc.clone(),
                )
                .help("a backup must live somewhere else, e.g. `target = \"service:minio\"`"),
            );
        }
        if b.continuous && svc.kind.value != ServiceKind::Postgres {
            diags.push(
                Diagnostic::error(
                    "bad-value",
                    format!("continuous archiving is WAL archiving and needs a postgres service, not `{}`", svc.name),
                    b.loc.clone(),
                )
                .help("remove `continuous`, and run the backup at least as often as the RPO"),
            );
        }
    }
    for (i, s) in site.services.iter().enumerate() {
        if s.stateful && !site.backups.iter().any(|b| b.service.value == ServiceId(i)) {
            diags.push(
                Diagnostic::error("missing-backup", format!("`{}` holds state but no backup policy covers it", s.name), s.loc.clone())
                    .help(format!(
                        "add `[backups.{}]` with `service = \"{}\"`, `method`, `every` and `target`, or set `stateful = false` if its data can be rebuilt",
                        s.name, s.name
                    )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_credentials() {
        assert!(looks_like_secret_value("postgres://app:hunter2@db:5432/app"));
        assert!(looks_like_secret_value("ghp_abcdef"));
        assert!(!looks_like_secret_value("postgres://app@db:5432/app"));
        assert!(!looks_like_secret_value("production"));
    }
}
