//! Family **docs**: the documentation of the site, from the same model as everything
//! deployed, as Markdown under `generated/docs/` (read in a pull request) and as a static
//! HTML site under `generated/docs/site/` (the same pages, for a browser, offline).
//!
//! | page | module | template |
//! | --- | --- | --- |
//! | `README.md`: overview, the diagram, every page | here | `docs/overview.md.j2` |
//! | `network.md`: zones, VLANs, CIDRs, gateways, every address | [`pages`] | `docs/network.md.j2` |
//! | `hosts/<host>.md` (+ index): kind, hypervisor, addresses, services, the files it applies | [`pages`] | `docs/host.md.j2` |
//! | `services.md`: image, ports, exposure, resources, secrets by name, hardening | [`pages`] | `docs/services.md.j2` |
//! | `flows.md`: zone × zone matrix, each flow with its why, each host's accept rules | [`flows`] | `docs/flows.md.j2` |
//! | `topology.md` + `topology.svg`: the diagram | [`svg`] | `docs/topology.{md,svg}.j2` |
//! | `recovery.md`: RTO/RPO, policies, worst-case loss, restore steps, RTO estimates | [`recovery`] | `docs/recovery.md.j2` |
//! | `runbooks/<service>.md` (+ index): operate, restore, fail over, its alerts | [`pages`] | `docs/runbook.md.j2` |
//! | `adr/<n>.md` (+ index): the site's decision records, `site/adr/*.md` | here | `docs/adr.md.j2` |
//! | `inventory.md`: the whole site on one page | [`inventory`] | `docs/inventory.md.j2` |
//!
//! Every page ends with the site files it came from: its context's provenance
//! ([`Lowering::page`]), never a list kept by hand. The HTML page of each is
//! `docs/page.html.j2` over the same context: it includes the Markdown template and
//! converts it (`markdown` filter, [`crate::render::markdown`]), adds the navigation and
//! the search box; `site/search-index.js` (built here) and `site/style.css` are shared
//! by all pages, so a page's size does not grow with the site.
//!
//! The host pages and runbooks list the files each host applies, which the other
//! families write: they are lowered after them ([`Family::lower_after`]).

pub mod flows;
pub mod inventory;
pub mod pages;
pub mod recovery;
pub mod svg;

use minijinja::Value;
use serde::Serialize;

use super::provenance::Src;
use super::{Family, Lowering};
use crate::artifact::ArtifactMeta;
use crate::diag::Loc;
use crate::model::{ServiceId, Site};
use crate::render::RenderJob;
use crate::render::markdown::site_link;

/// The docs family.
pub struct Docs;

/// The pages of the navigation, `(Markdown path under docs/, title)`.
const NAV: &[(&str, &str)] = &[
    ("README.md", "Overview"),
    ("topology.md", "Topology"),
    ("network.md", "Network"),
    ("hosts/README.md", "Hosts"),
    ("services.md", "Services"),
    ("flows.md", "Flows"),
    ("recovery.md", "Recovery"),
    ("runbooks/README.md", "Runbooks"),
    ("adr/README.md", "Decisions"),
    ("inventory.md", "Inventory"),
];

/// An entry of the search index.
#[derive(Serialize)]
struct SearchEntry {
    /// Title.
    t: String,
    /// Page, relative to the site folder.
    u: String,
    /// Words it is found by.
    x: Src<String>,
}

/// Context of an index page (`docs/hosts.md.j2`, `docs/runbooks.md.j2`): the site's
/// name and the rows it lists.
#[derive(Serialize)]
struct Listing<'a, T> {
    site: &'a Src<String>,
    items: &'a [T],
}

/// Context of `docs/search-index.js.j2`.
#[derive(Serialize)]
struct Index {
    entries: Vec<SearchEntry>,
}

/// Writes a page as Markdown (`docs/<md>`) and as HTML (`docs/site/<md as html>`).
fn emit(out: &mut Lowering, template: &'static str, md: &str, title: &str, ctx: &impl Serialize, origin: Option<&Loc>) {
    emit_with(out, template, md, title, ctx, origin, false, &[(template, false)])
}

/// [`emit`] for a page whose HTML is made of parts: Markdown templates (converted) and
/// HTML ones (included as they are), e.g. the coloured zone matrix of the flows page.
fn emit_parts(
    out: &mut Lowering,
    template: &'static str,
    md: &str,
    title: &str,
    ctx: &impl Serialize,
    parts: &[(&'static str, bool)],
) {
    emit_with(out, template, md, title, ctx, None, false, parts)
}

#[allow(clippy::too_many_arguments)]
fn emit_with(
    out: &mut Lowering,
    template: &'static str,
    md: &str,
    title: &str,
    ctx: &impl Serialize,
    origin: Option<&Loc>,
    svg: bool,
    parts: &[(&'static str, bool)],
) {
    let page = out.page(ctx, origin);
    out.add_page(template, &page, None, ArtifactMeta::shared("docs", format!("docs/{md}"), Vec::new()));
    let depth = md.matches('/').count();
    let root = "../".repeat(depth);
    let here = site_link(md);
    let nav: Vec<Value> = NAV
        .iter()
        .map(|(p, t)| {
            let href = format!("{root}{}", site_link(p));
            minijinja::context! { href, title => *t, current => *p == md }
        })
        .collect();
    let parts: Vec<Value> =
        parts.iter().map(|(t, html)| Value::from(vec![Value::from(*t), Value::from(*html)])).collect();
    let doc = minijinja::context! {
        parts,
        title,
        root,
        nav,
        svg,
        markdown => format!("{}{}", "../".repeat(depth + 1), md),
    };
    out.add_page(
        "docs/page.html.j2",
        &page,
        Some(minijinja::context! { doc }),
        ArtifactMeta::shared("docs", format!("docs/site/{here}"), Vec::new()),
    );
}

/// An architecture decision record from `site/adr/`.
#[derive(Serialize)]
struct AdrPage {
    title: Src<String>,
    body: Src<String>,
    file: String,
}

impl Family for Docs {
    fn name(&self) -> &'static str {
        "docs"
    }

    fn lower(&self, site: &Site, out: &mut Lowering) {
        let inv = inventory::inventory(site);
        emit(out, "docs/inventory.md.j2", "inventory.md", "Inventory", &inv, None);
        #[derive(Serialize)]
        struct NetworkPage<'a> {
            site: &'a Src<String>,
            zones: &'a [inventory::ZoneView],
            networks: &'a [inventory::NetworkView],
            addresses: Vec<pages::AddressRow>,
        }
        let np = NetworkPage {
            site: &inv.site.name,
            zones: &inv.zones,
            networks: &inv.networks,
            addresses: pages::addresses(site),
        };
        emit(out, "docs/network.md.j2", "network.md", "Network", &np, None);
        let sp = pages::services(site, &inv);
        emit(out, "docs/services.md.j2", "services.md", "Services", &sp, None);
        let rec = recovery::recovery(site, &inv.site.name);
        emit(out, "docs/recovery.md.j2", "recovery.md", "Recovery plan", &rec, None);
        let topo = svg::topology(site, &inv.site.name);
        let page = out.page(&topo, None);
        out.add_page(
            "docs/topology.svg.j2",
            &page,
            None,
            ArtifactMeta::shared("docs", "docs/topology.svg".into(), Vec::new()),
        );
        emit_with(
            out,
            "docs/topology.md.j2",
            "topology.md",
            "Topology",
            &topo,
            None,
            true,
            &[("docs/topology.md.j2", false)],
        );
        #[derive(Serialize)]
        struct Overview<'a> {
            #[serde(flatten)]
            inv: &'a inventory::InventoryContext,
            pages: Vec<(String, String)>,
            services_with_backups: usize,
            adrs: Vec<(String, String)>,
        }
        let adrs = adr_list(site);
        let ov = Overview {
            inv: &inv,
            pages: NAV[1..].iter().map(|(p, t)| (p.to_string(), t.to_string())).collect(),
            services_with_backups: rec.services.len(),
            adrs: adrs.iter().map(|(f, t, _)| (f.clone(), t.value.clone())).collect(),
        };
        emit(out, "docs/overview.md.j2", "README.md", "Overview", &ov, None);
        // ADRs.
        #[derive(Serialize)]
        struct AdrIndex<'a> {
            site: &'a Src<String>,
            adrs: Vec<(String, &'a Src<String>)>,
        }
        let idx = AdrIndex { site: &inv.site.name, adrs: adrs.iter().map(|(f, t, _)| (f.clone(), t)).collect() };
        emit(out, "docs/adrs.md.j2", "adr/README.md", "Decisions", &idx, None);
        for (file, title, a) in &adrs {
            let p = AdrPage {
                title: title.clone(),
                body: Src::at(a.body.clone(), "decision record", &a.loc),
                file: a.file.clone(),
            };
            emit(out, "docs/adr.md.j2", &format!("adr/{file}"), &title.value, &p, Some(&a.loc));
        }
        // The search index and the style sheet, shared by every HTML page.
        let mut entries: Vec<SearchEntry> = NAV
            .iter()
            .map(|(p, t)| SearchEntry { t: t.to_string(), u: site_link(p), x: Src::of(t.to_lowercase(), "page", []) })
            .collect();
        for (h, v) in site.hosts.iter().zip(&inv.hosts) {
            let addrs: Vec<&str> = v.addresses.iter().map(|a| a.value.as_str()).collect();
            let svcs: Vec<&str> = v.services.iter().map(|a| a.value.as_str()).collect();
            entries.push(SearchEntry {
                t: format!("host {}", h.name),
                u: site_link(&format!("hosts/{}.md", h.name)),
                x: Src::at(
                    format!("{} {} {} {}", h.name, v.kind.value, addrs.join(" "), svcs.join(" ")),
                    "host",
                    &h.loc,
                ),
            });
        }
        for (s, v) in site.services.iter().zip(&inv.services) {
            entries.push(SearchEntry {
                t: format!("runbook {}", s.name),
                u: site_link(&format!("runbooks/{}.md", s.name)),
                x: Src::at(format!("{} {} {}", s.name, v.kind.value, v.image.value), "service", &s.loc),
            });
        }
        for (z, v) in site.zones.iter().zip(&inv.zones) {
            entries.push(SearchEntry {
                t: format!("zone {}", z.name),
                u: format!("network.html#{}", crate::render::markdown::slug(&format!("zone {}", z.name))),
                x: Src::at(format!("{} {} vlan {}", z.name, v.cidr.value, v.vlan.value), "zone", &z.loc),
            });
        }
        out.add(
            "docs/search-index.js.j2",
            &Index { entries },
            ArtifactMeta::shared("docs", "docs/site/search-index.js".into(), Vec::new()),
            None,
        );
        #[derive(Serialize)]
        struct Style<'a> {
            site: &'a Src<String>,
        }
        out.add(
            "docs/style.css.j2",
            &Style { site: &inv.site.name },
            ArtifactMeta::shared("docs", "docs/site/style.css".into(), Vec::new()),
            None,
        );
    }

    fn lower_after(&self, site: &Site, others: &[RenderJob], out: &mut Lowering) {
        let inv = inventory::inventory(site);
        #[derive(Serialize)]
        struct FlowsPage<'a> {
            site: &'a Src<String>,
            #[serde(flatten)]
            flows: flows::FlowsContext,
            list: &'a [inventory::FlowView],
            guardrails: &'a [inventory::FlowView],
            rendered: Vec<(String, String, String)>,
            pfsense: Vec<flows::FirewallRules<'a>>,
            pfsense_total: usize,
        }
        // The firewalls' files as rendered: pfSense's configuration, each host's ruleset.
        let rendered = others
            .iter()
            .filter(|j| matches!(j.meta.family, "pfsense" | "nftables") && !j.meta.path.ends_with(".sh"))
            .map(|j| {
                let what = match &j.meta.host {
                    Some(h) => format!("{h} (nftables)"),
                    None => format!("{} (pfSense)", j.meta.path.split('/').nth(1).unwrap_or("firewall")),
                };
                let target = j.meta.apply.as_ref().map(|a| a.target.clone()).unwrap_or_else(|| j.meta.path.clone());
                (what, target, format!("../{}", j.meta.path))
            })
            .collect();
        let pfsense_rules = flows::pfsense_rules(site);
        let fp = FlowsPage {
            site: &inv.site.name,
            flows: flows::flows(site),
            list: &inv.flows,
            guardrails: &inv.guardrails,
            rendered,
            pfsense: pfsense_rules.0,
            pfsense_total: pfsense_rules.1,
        };
        emit_parts(
            out,
            "docs/flows.md.j2",
            "flows.md",
            "Flows",
            &fp,
            &[("docs/flows-head.md.j2", false), ("docs/matrix.html.j2", true), ("docs/flows-rest.md.j2", false)],
        );
        let files = pages::files_by_host(site, others);
        let vms = pages::vms(site);
        let secrets = pages::secrets_by_host(site);
        let empty = Vec::new();
        // Host pages and runbooks are most of the site's pages: lowered on every core,
        // collected in site order.
        per_entity(out, site, &site.hosts, &inv.hosts, |l, i, h, view| {
            let p = pages::HostPage {
                host: view,
                description: inventory::opt(&h.description, "host description", &h.loc),
                share: pages::vm_share(site, crate::model::HostId(i), vms[i].len()),
                vms: vms[i].clone(),
                files: files.get(&h.name).unwrap_or(&empty),
                secrets: &secrets[i],
                certificates: pages::certificates_of(site, crate::model::HostId(i)),
                up: "../../",
            };
            emit(l, "docs/host.md.j2", &format!("hosts/{}.md", h.name), &h.name, &p, Some(&h.loc));
        });
        let hosts = Listing { site: &inv.site.name, items: &inv.hosts };
        emit(out, "docs/hosts.md.j2", "hosts/README.md", "Hosts", &hosts, None);
        // Runbooks: one per service, at the URL every alert's `runbook_url` points at.
        let alerts = super::prometheus::runbook_alerts(site);
        let policies = recovery::policies_by_service(site);
        per_entity(out, site, &site.services, &inv.services, |l, i, s, row| {
            let id = ServiceId(i);
            let sfiles = pages::service_files(site, id, &files);
            let rec = recovery::service_recovery(site, id, &policies[i]);
            let p = pages::RunbookPage {
                service: Src::at(s.name.clone(), "service", &s.loc),
                row,
                hosts: row.hosts.clone(),
                commands: pages::commands(site, id, &sfiles),
                files: sfiles,
                postgres: pages::postgres(site, id),
                recovery: rec.as_ref(),
                alerts: alerts.get(&id).cloned().unwrap_or_default(),
            };
            emit(
                l,
                "docs/runbook.md.j2",
                &format!("{}/{}.md", super::prometheus::RUNBOOKS.trim_start_matches("docs/"), s.name),
                &format!("Runbook: {}", s.name),
                &p,
                Some(&s.loc),
            );
        });
        let services = Listing { site: &inv.site.name, items: &inv.services };
        emit(out, "docs/runbooks.md.j2", "runbooks/README.md", "Runbooks", &services, None);
    }
}

/// Lowers one page per entity (a host, a service) with its row of the inventory, on
/// every core, the jobs collected in site order.
fn per_entity<E: Sync, R: Sync>(
    out: &mut Lowering,
    site: &Site,
    entities: &[E],
    rows: &[R],
    page: impl Fn(&mut Lowering, usize, &E, &R) + Sync,
) {
    use rayon::prelude::*;
    let jobs: Vec<Vec<RenderJob>> = entities
        .par_iter()
        .zip(rows)
        .enumerate()
        .map(|(i, (e, r))| {
            let mut l = Lowering::new(site, out.depth);
            page(&mut l, i, e, r);
            l.jobs
        })
        .collect();
    out.jobs.extend(jobs.into_iter().flatten());
}

/// The site's ADRs: `(page file name, title, the record)`, in file order.
fn adr_list(site: &Site) -> Vec<(String, Src<String>, &crate::model::Adr)> {
    site.adrs
        .iter()
        .map(|a| {
            let file = a.file.rsplit('/').next().unwrap_or(&a.file).to_string();
            (file, Src::at(a.title.clone(), "decision record", &a.loc), a)
        })
        .collect()
}
