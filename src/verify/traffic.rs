//! Traffic: exposures (ports that exist, one service per route) and flows (ports the
//! target serves, guard-rails that no flow may cross).

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::shortlist;
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::*;

pub(super) fn exposure(site: &Site, diags: &mut Diagnostics) {
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
                        format!("its ports are {}", shortlist(&names))
                    }),
                );
            }
            // `/api` and `/api/` match the same requests (whole segments).
            let key = (e.hostname.value.clone(), e.path.value.trim_end_matches('/').to_string());
            if let Some((other, loc)) = routes.get(&key) {
                diags.push(
                    Diagnostic::error(
                        "duplicate-route",
                        if *other == s.name {
                            format!("`{}{}` is exposed twice by `{other}`", e.hostname.value, e.path.value)
                        } else {
                            format!("`{}{}` is exposed by both `{other}` and `{}`", e.hostname.value, e.path.value, s.name)
                        },
                        e.path.loc.clone(),
                    )
                    .also((*loc).clone(), format!("exposed by `{other}` here"))
                    .help("give one of them another hostname or path (a path matches by whole segments: `/api` and `/api/` are the same route)"),
                );
            } else {
                routes.insert(key, (&s.name, &e.loc));
            }
        }
    }
}

pub(super) fn flows(site: &Site, diags: &mut Diagnostics) {
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
        // A zone to itself is traffic between its machines, and a service to itself runs
        // between its hosts (replication); a host to itself goes over loopback.
        if f.from.value == f.to.value && matches!(f.from.value, Endpoint::Host(_) | Endpoint::Internet) {
            diags.push(
                Diagnostic::error("bad-endpoint", "a flow from an endpoint to itself says nothing", f.to.loc.clone())
                    .help("a host reaches itself over loopback, which needs no flow"),
            );
        }
        // The zone pairs this flow uses: two machines that share a zone talk inside it
        // (the pair zone → same zone: a guard-rail from a zone to itself forbids that);
        // otherwise every zone of the source against every zone of the destination.
        let mut crossings: BTreeSet<(Option<ZoneId>, Option<ZoneId>)> = BTreeSet::new();
        for a in site.endpoint_zone_sets(&f.from.value) {
            for b in site.endpoint_zone_sets(&f.to.value) {
                let shared: Vec<&Option<ZoneId>> = a.iter().filter(|z| b.contains(z)).collect();
                if !shared.is_empty() {
                    crossings.extend(shared.into_iter().map(|z| (*z, *z)));
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
