//! The semantic summary: what a change means, computed from the two resolved models
//! (base and head), not from text. Each entity is reduced to a sorted map of facts (the
//! core's here, each family's passed in by the caller); the summary
//! lists entities added and removed, and the facts that changed, so a reviewer reads
//! "flow added: service:medianest-backend → service:pgbouncer tcp/6432 (application
//! database)" before any config text. A scalar reads `old → new`, a list `+item` /
//! `-item`; a change that loosens security (a guard-rail removed, a WAF lowered, a
//! hardening exception or capability added, a signer added, …) is flagged.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::facts::{Fact, Val, exposure_subject, exposure_url};
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
    /// The change loosens security (reviewers look at these first).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub relaxes: bool,
}

impl Change {
    /// The one-line text form.
    pub fn line(&self) -> String {
        let flag = if self.relaxes { "[relaxes security] " } else { "" };
        let mut s = format!("{flag}{} {}: {}", self.category, self.change, self.subject);
        if !self.details.is_empty() {
            let sep = if self.change == "changed" { "; " } else { ", " };
            s.push_str(&format!(" ({})", self.details.join(sep)));
        }
        s
    }
}

type Facts = BTreeMap<String, Val>;

/// How an entity is shown when its identity is not how a reader knows it (exposures).
type Shown = BTreeMap<(String, String), String>;

/// Every entity of a site as `(category, subject) → facts`.
fn facts(site: &Site) -> BTreeMap<(String, String), Facts> {
    let mut out: BTreeMap<(String, String), Facts> = BTreeMap::new();
    let mut put = |cat: &str, subject: String, f: Vec<(&str, Val)>| {
        let mut subject = subject;
        // Two entries with the same name (two flows between the same endpoints) stay apart.
        let mut n = 1;
        while out.contains_key(&(cat.to_string(), subject.clone())) {
            n += 1;
            subject = format!("{} #{n}", subject.trim_end_matches(&format!(" #{}", n - 1)));
        }
        out.insert((cat.to_string(), subject), f.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    };
    let st = &site.settings;
    put(
        "site",
        "[site]".into(),
        vec![
            ("name", st.name.clone().into()),
            ("domain", st.domain.clone().into()),
            ("public_domain", st.public_domain.clone().unwrap_or_default().into()),
            ("description", st.description.clone().unwrap_or_default().into()),
        ],
    );
    let d = &site.defaults;
    put(
        "defaults",
        "[defaults]".into(),
        vec![
            ("container.restart", d.restart.clone().into()),
            ("container.pids_limit", d.pids_limit.to_string().into()),
            ("container.tmpfs_size", d.tmpfs_size.to_string().into()),
            ("health.interval", d.health_interval.to_string().into()),
            ("health.timeout", d.health_timeout.to_string().into()),
            ("health.retries", d.health_retries.to_string().into()),
            ("health.start_period", d.health_start_period.to_string().into()),
            ("resources.cpus", d.resources.cpus.to_string().into()),
            ("resources.memory", d.resources.memory.to_string().into()),
            ("resources.reserve_cpus", d.resources.reserve_cpus.to_string().into()),
            ("resources.reserve_memory", d.resources.reserve_memory.to_string().into()),
            ("resources.pids", d.resources.pids.to_string().into()),
            ("backup_retention", d.backup_retention.to_string().into()),
        ],
    );
    put(
        "recovery",
        "targets".into(),
        vec![("rto", site.recovery.rto.value.to_string().into()), ("rpo", site.recovery.rpo.value.to_string().into())],
    );
    for z in &site.zones {
        put(
            "zone",
            z.name.clone(),
            vec![
                ("vlan", z.vlan.as_ref().map(|v| v.value.to_string()).unwrap_or_default().into()),
                ("cidr", z.cidr.as_ref().map(|v| v.value.to_string()).unwrap_or_default().into()),
                ("gateway", z.gateway.as_ref().map(|v| v.value.to_string()).unwrap_or_default().into()),
                ("description", z.description.clone().unwrap_or_default().into()),
            ],
        );
    }
    for n in &site.docker_networks {
        put(
            "docker network",
            n.name.clone(),
            vec![
                ("cidr", n.cidr.as_ref().map(|v| v.value.to_string()).unwrap_or_default().into()),
                ("internal", n.internal.to_string().into()),
                ("driver", format!("{:?}", n.driver).to_lowercase().into()),
                ("gateway", n.gateway.as_ref().map(|v| v.value.to_string()).unwrap_or_default().into()),
                ("encrypted", n.encrypted.to_string().into()),
                ("description", n.description.clone().unwrap_or_default().into()),
            ],
        );
    }
    for h in &site.hosts {
        put(
            "host",
            h.name.clone(),
            vec![
                ("kind", h.kind.value.name().to_string().into()),
                ("on", h.on.as_ref().map(|o| site.host(o.value).name.clone()).unwrap_or_default().into()),
                ("os", h.os.clone().unwrap_or_default().into()),
                ("roles", Val::many(h.roles.iter().map(|r| r.value.name()))),
                ("description", h.description.clone().unwrap_or_default().into()),
                (
                    "resources",
                    h.resources
                        .as_ref()
                        .map(|r| {
                            let o = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                            format!(
                                "cpus {}, memory {}, disk {}",
                                o(r.cpus.map(|c| c.to_string())),
                                o(r.memory.map(|m| m.to_string())),
                                o(r.disk.map(|d| d.to_string()))
                            )
                        })
                        .unwrap_or_default()
                        .into(),
                ),
                (
                    "interfaces",
                    Val::many(h.interfaces.iter().map(|i| {
                        let name = i.name.as_ref().map(|n| format!(" ({})", n.value)).unwrap_or_default();
                        format!("{} {}{name}", site.zone(i.zone.value).name, i.address.value)
                    })),
                ),
            ],
        );
    }
    for (i, s) in site.services.iter().enumerate() {
        let sid = crate::model::ServiceId(i);
        let r = &s.resources;
        put(
            "service",
            s.name.clone(),
            vec![
                ("kind", s.kind.value.info().name.to_string().into()),
                ("image", s.image.as_ref().map(|i| i.value.to_string()).unwrap_or_default().into()),
                ("hosts", Val::many(s.hosts.iter().map(|h| site.host(h.value).name.as_str()))),
                ("replicas", s.replicas.to_string().into()),
                ("ports", Val::many(s.ports.iter().map(|p| format!("{} {}", p.name, p.spec)))),
                ("user", s.user.as_ref().map(|u| u.value.clone()).unwrap_or_default().into()),
                ("resources.cpus", r.cpus.to_string().into()),
                ("resources.memory", r.memory.to_string().into()),
                ("resources.reserve_cpus", r.reserve_cpus.to_string().into()),
                ("resources.reserve_memory", r.reserve_memory.to_string().into()),
                ("resources.pids", r.pids.to_string().into()),
                ("secrets", Val::many(s.secrets.iter().map(|x| x.value.as_str()))),
                ("cap_add", Val::many(s.cap_add.iter().map(|x| x.value.as_str()))),
                ("read_only", s.read_only.value.to_string().into()),
                ("env", Val::many(s.env.iter().map(|(k, v)| format!("{}={}", k.value, v.value)))),
                (
                    "networks",
                    Val::many(s.networks.iter().map(|(n, a)| {
                        let addr = a.value.map(|ip| ip.to_string()).unwrap_or_else(|| "auto".into());
                        format!("{} {addr}", site.network(*n).name)
                    })),
                ),
                ("volumes", Val::many(s.volumes.iter().map(|v| format!("{} {}", v.name, v.target)))),
                ("tmpfs", Val::many(s.tmpfs.iter().map(|x| x.value.as_str()))),
                ("depends_on", Val::many(s.depends_on.iter().map(|d| site.service(d.value).name.as_str()))),
                ("exceptions", Val::many(s.exceptions.iter().map(|e| format!("{}: {}", e.kind.key(), e.reason.value)))),
                ("health", s.health.as_ref().map(health_text).unwrap_or_default().into()),
                ("stateful", s.stateful.to_string().into()),
                ("version", s.version.clone().unwrap_or_default().into()),
                ("description", s.description.clone().unwrap_or_default().into()),
            ],
        );
        for e in &s.expose {
            put(
                "exposure",
                exposure_subject(site, sid, e),
                vec![
                    ("hostname", e.hostname.value.clone().into()),
                    ("path", e.path.value.clone().into()),
                    ("port", e.port.value.clone().into()),
                    ("websocket", e.websocket.to_string().into()),
                ],
            );
        }
    }
    for f in &site.flows {
        // Named by its endpoints, so a change of ports reads as one changed flow.
        let subject = site.flow_name(f);
        put(
            "flow",
            subject,
            vec![("ports", Val::many(f.ports.iter().map(|p| p.value.to_string()))), ("why", f.why.clone().into())],
        );
    }
    let zone =
        |z: Option<crate::model::ZoneId>| site.endpoint_name(&z.map(Endpoint::Zone).unwrap_or(Endpoint::Internet));
    for g in &site.guardrails {
        put("guard-rail", format!("deny {} → {}", zone(g.from), zone(g.to)), vec![("why", g.why.clone().into())]);
    }
    // Secrets: what each ciphertext is encrypted to (from its header) and its hash,
    // never a value. A new hash with the same recipients reads "rotated".
    let needs = site.secret_needs();
    let mut ids: Vec<(String, String)> = site
        .hosts
        .iter()
        .filter_map(|h| Some((h.ssh_host_key.as_ref()?.value.id(), format!("host {}", h.name))))
        .collect();
    ids.extend(site.secrets.recovery.iter().map(|k| (k.value.id(), format!("recovery key {}", k.value.id()))));
    for f in &site.secrets.files {
        let Some(name) = &f.name else { continue };
        let recipients = f.header.as_ref().and_then(|h| h.label()).map(|(_, l)| {
            Val::many(l.into_iter().map(|id| {
                ids.iter().find(|(k, _)| k == id).map(|(_, w)| w.clone()).unwrap_or(format!("unknown key {id}"))
            }))
        });
        let users = needs.get(name.as_str()).map(|n| n.all_services()).unwrap_or_default();
        put(
            "secret",
            name.clone(),
            vec![
                ("ciphertext", crate::artifact::sha256_hex(&f.bytes)[..12].to_string().into()),
                ("recipients", recipients.unwrap_or(Val::Many(Vec::new()))),
                ("services", Val::many(users.iter().map(|s| site.service(*s).name.clone()))),
            ],
        );
    }
    for b in &site.backups {
        put(
            "backup",
            b.name.clone(),
            vec![
                ("service", site.service(b.service.value).name.clone().into()),
                ("method", b.method.name().to_string().into()),
                ("every", b.every.value.to_string().into()),
                ("continuous", b.continuous.to_string().into()),
                ("target", site.endpoint_name(&b.target.value).into()),
                ("retention", b.retention.to_string().into()),
                ("verify_restore", b.verify_restore.to_string().into()),
                ("restore_time", b.restore_estimate().to_string().into()),
            ],
        );
    }
    out
}

/// Every entity with the facts `more` adds to it (each family's, from the caller), and
/// how the entities whose identity is not their name are shown.
fn all_facts(site: &Site, more: &dyn Fn(&Site) -> Vec<Fact>) -> (BTreeMap<(String, String), Facts>, Shown) {
    let mut out = facts(site);
    for f in more(site) {
        out.entry((f.category.to_string(), f.subject)).or_default().insert(f.field.to_string(), f.value);
    }
    let mut shown = Shown::new();
    for (i, s) in site.services.iter().enumerate() {
        let id = crate::model::ServiceId(i);
        for e in &s.expose {
            shown.insert(("exposure".into(), exposure_subject(site, id, e)), exposure_url(site, id, e));
        }
    }
    (out, shown)
}

fn health_text(h: &crate::model::Health) -> String {
    use crate::model::HealthCheck;
    let check = match &h.check {
        HealthCheck::Http { path, port, status } => format!("http {path} on {port} expects {status}"),
        HealthCheck::Tcp { port } => format!("tcp {port}"),
        HealthCheck::Exec(argv) => format!("exec {}", argv.join(" ")),
    };
    format!("{check}, every {} (timeout {}, {} retries, start {})", h.interval, h.timeout, h.retries, h.start_period)
}

/// Whether a change of one fact loosens security.
fn relaxes(category: &str, field: &str, before: Option<&Val>, after: Option<&Val>) -> bool {
    let one = |v: Option<&Val>| match v {
        Some(Val::One(s)) => s.clone(),
        _ => String::new(),
    };
    let added = |v: Option<&Val>, w: Option<&Val>| match (v, w) {
        (Some(Val::Many(a)), Some(Val::Many(b))) => b.iter().any(|x| !a.contains(x)),
        (None, Some(Val::Many(b))) => !b.is_empty(),
        _ => false,
    };
    match (category, field) {
        ("service", "cap_add" | "exceptions") | ("agent", "signers") => added(before, after),
        ("service", "read_only") => one(before) == "true" && one(after) == "false",
        ("service", "user") => {
            let root = |u: &str| crate::model::values::is_root_user(u);
            !root(&one(before)) && root(&one(after))
        }
        ("exposure", "waf") => {
            let rank = |w: &str| ["off", "detect", "block"].iter().position(|x| *x == w).unwrap_or(2);
            rank(&one(after)) < rank(&one(before))
        }
        ("flow", "ports") | ("firewall", "accepts") => added(before, after),
        _ => false,
    }
}

/// The semantic changes from `base` to `head`, sorted by category, change and subject;
/// `more` gives the facts the artifact families add to a site's entities
/// (`families::facts`), so review does not depend on the families.
pub fn compare(base: &Site, head: &Site, more: &dyn Fn(&Site) -> Vec<Fact>) -> Vec<Change> {
    let ((old, old_shown), (new, new_shown)) = (all_facts(base, more), all_facts(head, more));
    let show = |m: &Shown, key: &(String, String)| m.get(key).cloned().unwrap_or_else(|| key.1.clone());
    let mut out = Vec::new();
    let get = |f: &Facts, k: &str| f.get(k).map(Val::text).filter(|v| !v.is_empty());
    let brief = |cat: &str, f: &Facts| -> Vec<String> {
        match cat {
            "flow" => ["ports", "why"].iter().filter_map(|k| get(f, k)).collect(),
            "guard-rail" => get(f, "why").into_iter().collect(),
            "service" => {
                let mut d = Vec::new();
                d.extend(get(f, "image").or_else(|| get(f, "kind")));
                d.extend(get(f, "hosts").map(|h| format!("on {h}")));
                d
            }
            "host" => get(f, "interfaces").into_iter().collect(),
            "exposure" => {
                ["port", "waf", "websocket"].iter().filter_map(|k| Some(format!("{k} {}", get(f, k)?))).collect()
            }
            _ => Vec::new(),
        }
    };
    for ((cat, subject), f) in &new {
        let key = (cat.clone(), subject.clone());
        match old.get(&key) {
            None => out.push(Change {
                category: cat.clone(),
                change: "added",
                subject: show(&new_shown, &key),
                details: brief(cat, f),
                // A new flow opens traffic, a new exposure a public route.
                relaxes: cat == "flow"
                    || cat == "exposure"
                    || f.iter()
                        .any(|(k, v)| relaxes(cat, k, None, Some(v)) && !matches!(v, Val::One(x) if x.is_empty())),
            }),
            Some(o) if o != f => {
                let mut relaxed = false;
                let mut details = Vec::new();
                let keys: std::collections::BTreeSet<&String> = f.keys().chain(o.keys()).collect();
                for k in keys {
                    let (before, after) = (o.get(k), f.get(k));
                    if before == after {
                        continue;
                    }
                    relaxed |= relaxes(cat, k, before, after);
                    details.push(describe(k, before, after));
                }
                if cat == "secret" {
                    details = secret_details(o, f);
                }
                out.push(Change {
                    category: cat.clone(),
                    change: "changed",
                    subject: show(&new_shown, &key),
                    details,
                    relaxes: relaxed,
                });
            }
            _ => {}
        }
    }
    for ((cat, subject), f) in &old {
        if !new.contains_key(&(cat.clone(), subject.clone())) {
            out.push(Change {
                category: cat.clone(),
                change: "removed",
                subject: show(&old_shown, &(cat.clone(), subject.clone())),
                details: brief(cat, f),
                relaxes: cat == "guard-rail",
            });
        }
    }
    let rank = |c: &str| ["removed", "added", "changed"].iter().position(|x| *x == c).unwrap_or(3);
    out.sort_by(|a, b| {
        (a.category.as_str(), rank(a.change), &a.subject).cmp(&(b.category.as_str(), rank(b.change), &b.subject))
    });
    out
}

/// A secret's change in the reviewer's words: "rotated" (a new ciphertext for the same
/// recipients), "recipients changed" (re-encrypted: the value may have changed too).
fn secret_details(before: &Facts, after: &Facts) -> Vec<String> {
    let same = |k: &str| before.get(k) == after.get(k);
    let mut d = Vec::new();
    if !same("recipients") {
        d.push(describe("recipients changed", before.get("recipients"), after.get("recipients")));
    } else if !same("ciphertext") {
        d.push(describe("rotated", before.get("ciphertext"), after.get("ciphertext")));
    }
    if !same("services") {
        d.push(describe("services", before.get("services"), after.get("services")));
    }
    d
}

/// `field: old → new` for a scalar, `field: +a, -b` for a list.
fn describe(field: &str, before: Option<&Val>, after: Option<&Val>) -> String {
    match (before, after) {
        (Some(Val::Many(a)), Some(Val::Many(b))) => {
            let mut d: Vec<String> = b.iter().filter(|x| !a.contains(x)).map(|x| format!("+{x}")).collect();
            d.extend(a.iter().filter(|x| !b.contains(x)).map(|x| format!("-{x}")));
            if d.is_empty() {
                // Same items, another order (host order sets keepalived priority).
                format!("{field}: order {} → {}", a.join(", "), b.join(", "))
            } else {
                format!("{field}: {}", d.join(", "))
            }
        }
        (None, Some(Val::Many(b))) => {
            format!("{field}: {}", b.iter().map(|x| format!("+{x}")).collect::<Vec<_>>().join(", "))
        }
        (Some(Val::Many(a)), None) => {
            format!("{field}: {}", a.iter().map(|x| format!("-{x}")).collect::<Vec<_>>().join(", "))
        }
        _ => {
            let t = |v: Option<&Val>| v.map(Val::text).unwrap_or_default();
            format!("{field}: {} → {}", shown(&t(before)), shown(&t(after)))
        }
    }
}

fn shown(v: &str) -> &str {
    if v.is_empty() { "(none)" } else { v }
}
