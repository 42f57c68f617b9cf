//! The semantic summary: what a change means, computed from the two resolved models
//! (base and head), not from text. Each entity is reduced to a sorted map of facts; the
//! summary lists entities added and removed, and the facts that changed, so a reviewer
//! reads "flow added: service:medianest-backend → service:pgbouncer tcp/6432
//! (application database)" before any config text.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Endpoint, Site};

/// One line of the semantic summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of thing: `zone`, `docker network`, `host`, `service`, `exposure`,
    /// `flow`, `guard-rail`, `backup`, `recovery`, or a family's own category.
    pub category: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// Which one (`medianest-backend`, `service:a → service:b tcp/5432`).
    pub subject: String,
    /// For `changed`: `field: old → new` per fact; for flows and guard-rails: the reason.
    pub details: Vec<String>,
}

impl Change {
    /// The one-line text form.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}: {}", self.category, self.change, self.subject);
        if !self.details.is_empty() {
            let sep = if self.change == "changed" { "; " } else { ", " };
            s.push_str(&format!(" ({})", self.details.join(sep)));
        }
        s
    }
}

type Facts = BTreeMap<String, String>;

/// Every entity of a site as `(category, subject) → facts`.
fn facts(site: &Site) -> BTreeMap<(String, String), Facts> {
    let mut out: BTreeMap<(String, String), Facts> = BTreeMap::new();
    let mut put = |cat: &str, subject: String, f: Vec<(&str, String)>| {
        out.insert((cat.to_string(), subject), f.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    };
    put(
        "recovery",
        "targets".into(),
        vec![("rto", site.recovery.rto.value.to_string()), ("rpo", site.recovery.rpo.value.to_string())],
    );
    for z in &site.zones {
        put(
            "zone",
            z.name.clone(),
            vec![
                ("vlan", z.vlan.as_ref().map(|v| v.value.to_string()).unwrap_or_default()),
                ("cidr", z.cidr.as_ref().map(|v| v.value.to_string()).unwrap_or_default()),
                ("gateway", z.gateway.as_ref().map(|v| v.value.to_string()).unwrap_or_default()),
            ],
        );
    }
    for n in &site.docker_networks {
        put(
            "docker network",
            n.name.clone(),
            vec![
                ("cidr", n.cidr.as_ref().map(|v| v.value.to_string()).unwrap_or_default()),
                ("internal", n.internal.to_string()),
                ("driver", format!("{:?}", n.driver).to_lowercase()),
            ],
        );
    }
    for h in &site.hosts {
        put(
            "host",
            h.name.clone(),
            vec![
                ("kind", h.kind.value.name().to_string()),
                ("on", h.on.as_ref().map(|o| site.host(o.value).name.clone()).unwrap_or_default()),
                ("os", h.os.clone().unwrap_or_default()),
                ("roles", h.roles.iter().map(|r| r.value.name()).collect::<Vec<_>>().join(", ")),
                (
                    "addresses",
                    h.interfaces
                        .iter()
                        .map(|i| format!("{} {}", site.zone(i.zone.value).name, i.address.value))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ],
        );
    }
    for s in &site.services {
        let r = &s.resources;
        put(
            "service",
            s.name.clone(),
            vec![
                ("kind", s.kind.value.info().name.to_string()),
                ("image", s.image.as_ref().map(|i| i.value.to_string()).unwrap_or_default()),
                ("hosts", s.hosts.iter().map(|h| site.host(h.value).name.as_str()).collect::<Vec<_>>().join(", ")),
                ("primary", s.primary.as_ref().map(|p| site.host(p.value).name.clone()).unwrap_or_default()),
                ("replicas", s.replicas.to_string()),
                ("ports", s.ports.iter().map(|p| format!("{} {}", p.name, p.spec)).collect::<Vec<_>>().join(", ")),
                ("user", s.user.as_ref().map(|u| u.value.clone()).unwrap_or_default()),
                (
                    "resources",
                    format!("{} CPUs / {}, reserved {} / {}", r.cpus, r.memory, r.reserve_cpus, r.reserve_memory),
                ),
                ("secrets", s.secrets.iter().map(|x| x.value.as_str()).collect::<Vec<_>>().join(", ")),
                ("capabilities", s.cap_add.iter().map(|x| x.value.as_str()).collect::<Vec<_>>().join(", ")),
                ("read-only root", s.read_only.value.to_string()),
                ("env", s.env.iter().map(|(k, v)| format!("{}={}", k.value, v.value)).collect::<Vec<_>>().join(", ")),
            ],
        );
        for e in &s.expose {
            put(
                "exposure",
                format!("https://{}{} → {}", e.hostname.value, e.path.value, s.name),
                vec![
                    ("port", e.port.value.clone()),
                    ("websocket", e.websocket.to_string()),
                    ("waf", format!("{:?}", e.waf).to_lowercase()),
                ],
            );
        }
    }
    for f in &site.flows {
        let ports: Vec<String> = f.ports.iter().map(|p| p.value.to_string()).collect();
        let subject =
            format!("{} → {} {}", site.endpoint_name(&f.from.value), site.endpoint_name(&f.to.value), ports.join(", "));
        put("flow", subject, vec![("why", f.why.clone())]);
    }
    let zone =
        |z: Option<crate::model::ZoneId>| site.endpoint_name(&z.map(Endpoint::Zone).unwrap_or(Endpoint::Internet));
    for g in &site.guardrails {
        put("guard-rail", format!("deny {} → {}", zone(g.from), zone(g.to)), vec![("why", g.why.clone())]);
    }
    for b in &site.backups {
        put(
            "backup",
            b.name.clone(),
            vec![
                ("service", site.service(b.service.value).name.clone()),
                ("method", b.method.name().to_string()),
                ("every", b.every.value.to_string()),
                ("continuous", b.continuous.to_string()),
                ("target", site.endpoint_name(&b.target.value)),
                ("retention", b.retention.to_string()),
            ],
        );
    }
    out
}

/// The semantic changes from `base` to `head`, sorted by category, change and subject.
pub fn compare(base: &Site, head: &Site) -> Vec<Change> {
    let (old, new) = (facts(base), facts(head));
    let mut out = Vec::new();
    let brief = |cat: &str, f: &Facts| -> Vec<String> {
        match cat {
            "flow" | "guard-rail" => f.get("why").cloned().into_iter().collect(),
            "service" => {
                let mut d = Vec::new();
                if let Some(i) = f.get("image").filter(|i| !i.is_empty()) {
                    d.push(i.clone());
                } else if let Some(k) = f.get("kind") {
                    d.push(k.clone());
                }
                if let Some(h) = f.get("hosts").filter(|h| !h.is_empty()) {
                    d.push(format!("on {h}"));
                }
                d
            }
            "host" => f.get("addresses").cloned().into_iter().collect(),
            "exposure" => {
                ["port", "waf", "websocket"].iter().filter_map(|k| Some(format!("{k} {}", f.get(*k)?))).collect()
            }
            _ => Vec::new(),
        }
    };
    for ((cat, subject), f) in &new {
        match old.get(&(cat.clone(), subject.clone())) {
            None => out.push(Change {
                category: cat.clone(),
                change: "added",
                subject: subject.clone(),
                details: brief(cat, f),
            }),
            Some(o) if o != f => {
                let details = f
                    .iter()
                    .filter(|(k, v)| o.get(*k) != Some(*v))
                    .map(|(k, v)| {
                        let before = o.get(k).map(String::as_str).unwrap_or("");
                        format!("{k}: {} → {}", shown(before), shown(v))
                    })
                    .collect();
                out.push(Change { category: cat.clone(), change: "changed", subject: subject.clone(), details });
            }
            _ => {}
        }
    }
    for ((cat, subject), f) in &old {
        if !new.contains_key(&(cat.clone(), subject.clone())) {
            out.push(Change {
                category: cat.clone(),
                change: "removed",
                subject: subject.clone(),
                details: brief(cat, f),
            });
        }
    }
    let rank = |c: &str| ["removed", "added", "changed"].iter().position(|x| *x == c).unwrap_or(3);
    out.sort_by(|a, b| {
        (a.category.as_str(), rank(a.change), &a.subject).cmp(&(b.category.as_str(), rank(b.change), &b.subject))
    });
    out
}

fn shown(v: &str) -> &str {
    if v.is_empty() { "(none)" } else { v }
}
