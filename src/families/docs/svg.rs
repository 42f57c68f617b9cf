//! `generated/docs/topology.svg`: the network drawn from the model. Template:
//! `templates/docs/topology.svg.j2`; the geometry is computed here.
//!
//! Layout (deliberately simple, and linear in the site's size):
//!
//! - the internet is a band at the top; each zone a band below it, in site order, with
//!   its VLAN and CIDR;
//! - the firewall (a `firewall` host, in every zone) is a column on the left crossing
//!   every band, with its address in each;
//! - every other host is a box in the band of its first interface, laid out left to
//!   right in rows of [`PER_ROW`], with its addresses, kind and services (at most
//!   [`MAX_SERVICES`] lines, then "+n more"); keepalived floating addresses are a pill
//!   in their zone's band header;
//! - flows are edges: host → host for each pair a grant connects, labelled with its
//!   ports; the internet as a source starts at its band; a whole zone as a source is one
//!   edge per destination zone, from the source band's anchor on the firewall column to
//!   the destination band. Edges and their labels are drawn under the boxes, so they
//!   never hide a name. Each label goes to the first spot along its edge (the middle,
//!   then outwards) that covers no box, zone heading, floating address or earlier label;
//!   an edge with no free spot is drawn without one, its ports in its tooltip (and on
//!   the flows page). Beyond [`EDGE_LIMIT`] host pairs (50 hosts of apps and databases
//!   make hundreds) single edges cannot be followed: every flow is then drawn between
//!   zones, in a lane right of the bands, labelled with its ports (the flows page has
//!   each flow);
//!
//! Boxes never overlap by construction (rows and bands only grow downwards), which the
//! browser test checks from the SVG's geometry. Beyond [`DETAIL_LIMIT`] hosts a diagram of
//! boxes stops being readable (and its edges grow with the square of the hosts), so the
//! diagram is summarised: one box per zone with its counts, edges between zones from the
//! same grants, and the host pages carry the detail.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::super::provenance::Src;
use crate::model::flows::{Dest, Peer, egress_zone};
use crate::model::values::PortSpec;
use crate::model::{HostId, HostKind, Site};

/// Hosts per row inside a band.
pub const PER_ROW: usize = 6;
/// Service lines inside a host box.
pub const MAX_SERVICES: usize = 6;
/// Above this many hosts the diagram is a summary by zone.
pub const DETAIL_LIMIT: usize = 200;
/// Above this many host → host edges, flows are drawn between zones instead.
pub const EDGE_LIMIT: usize = 80;
/// The width of the lane where flows between zones are drawn.
const LANE_W: i64 = 300;

const BOX_W: i64 = 180;
const GAP_X: i64 = 40;
const GAP_Y: i64 = 36;
const LINE: i64 = 15;
const LEFT: i64 = 230;
const FW_X: i64 = 20;
const FW_W: i64 = 170;
const BAND_HEAD: i64 = 34;
const INTERNET_H: i64 = 70;

/// A zone band.
#[derive(Serialize)]
pub struct Band {
    /// Name.
    pub name: Src<String>,
    /// VLAN and CIDR.
    pub label: Src<String>,
    /// Top.
    pub y: i64,
    /// Height.
    pub h: i64,
    /// Colour index (0–5).
    pub tone: usize,
}

/// A line of text in a box.
#[derive(Serialize)]
pub struct Text {
    /// The text.
    pub text: Src<String>,
    /// Baseline.
    pub y: i64,
    /// `name`, `addr`, `kind`, `svc`.
    pub class: &'static str,
}

/// A host box.
#[derive(Serialize)]
pub struct HostBox {
    /// Host name (the `data-host` attribute).
    pub name: Src<String>,
    /// Link to its page, relative to the HTML site's folder.
    pub href: String,
    /// Geometry.
    pub x: i64,
    /// Top.
    pub y: i64,
    /// Width.
    pub w: i64,
    /// Height.
    pub h: i64,
    /// Lines.
    pub lines: Vec<Text>,
}

/// A flow edge.
#[derive(Serialize)]
pub struct Edge {
    /// SVG path data.
    pub d: String,
    /// Ports.
    pub label: Src<String>,
    /// Label position (its baseline's centre).
    pub lx: i64,
    /// Label position.
    pub ly: i64,
    /// Whether the label is drawn: it is left out where every spot along the edge
    /// would cover a box, a zone's heading or another label (the edge's tooltip and
    /// the flows page still carry the ports).
    pub shown: bool,
    /// From the internet.
    pub public: bool,
    /// Where the label may go, in order of preference.
    #[serde(skip)]
    pub spots: Vec<(i64, i64)>,
}

/// A rectangle: left, top, right, bottom.
type Rect = (i64, i64, i64, i64);

fn overlap(a: Rect, b: Rect) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// The box a port label takes at `(x, y)` (centred, 10px text, a halo of 2px).
fn label_rect(text: &str, (x, y): (i64, i64)) -> Rect {
    let w = text.chars().count() as i64 * 6 + 4;
    (x - w / 2, y - 11, x + w / 2, y + 4)
}

/// Puts each edge's label on the first of its spots that covers no box, zone heading,
/// floating address or earlier label; an edge with none keeps its label off the drawing.
/// Greedy in edge order, so the result is deterministic.
fn place_labels(edges: &mut [Edge], mut taken: Vec<Rect>) {
    for e in edges {
        let free = e.spots.iter().copied().find(|p| {
            let r = label_rect(&e.label.value, *p);
            !taken.iter().any(|t| overlap(r, *t))
        });
        if let Some(p) = free {
            (e.lx, e.ly, e.shown) = (p.0, p.1, true);
            taken.push(label_rect(&e.label.value, p));
        }
    }
}

/// A floating address.
#[derive(Serialize)]
pub struct Pill {
    /// Text.
    pub text: Src<String>,
    /// Left.
    pub x: i64,
    /// Top.
    pub y: i64,
    /// Width.
    pub w: i64,
}

/// Context of `docs/topology.svg.j2`.
#[derive(Serialize)]
pub struct Topology {
    /// Site name.
    pub site: Src<String>,
    /// Canvas.
    pub width: i64,
    /// Canvas.
    pub height: i64,
    /// Zones.
    pub bands: Vec<Band>,
    /// Firewall columns.
    pub firewalls: Vec<HostBox>,
    /// Hosts.
    pub hosts: Vec<HostBox>,
    /// Flows.
    pub edges: Vec<Edge>,
    /// Floating addresses.
    pub vips: Vec<Pill>,
    /// Summarised (beyond [`DETAIL_LIMIT`] hosts).
    pub summary: bool,
    /// How many hosts.
    pub host_count: usize,
}

fn ports_text(ports: &BTreeSet<PortSpec>) -> String {
    let v: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    if v.len() > 4 { format!("{} … (+{})", v[..3].join(", "), v.len() - 3) } else { v.join(", ") }
}

/// A curve from one point to another, bowing sideways so parallel edges stay apart, and
/// the spots along it where its label may go: the middle first, then outwards.
fn curve(a: (i64, i64), b: (i64, i64), bow: i64) -> (String, Vec<(i64, i64)>) {
    let m = ((a.0 + b.0) / 2 + bow, (a.1 + b.1) / 2);
    // The quadratic Bézier at t, in hundredths.
    let at = |t: i64| {
        let u = 100 - t;
        let f = |a: i64, m: i64, b: i64| (u * u * a + 2 * u * t * m + t * t * b) / 10_000;
        (f(a.0, m.0, b.0), f(a.1, m.1, b.1) + 4)
    };
    let spots = [50, 40, 60, 30, 70, 20, 80].into_iter().map(at).collect();
    (format!("M{} {} Q{} {} {} {}", a.0, a.1, m.0, m.1, b.0, b.1), spots)
}

/// Lays the site out.
pub fn topology(site: &Site, name: &Src<String>) -> Topology {
    let firewall: Vec<HostId> =
        (0..site.hosts.len()).map(HostId).filter(|&h| site.host(h).kind.value == HostKind::Firewall).collect();
    let placed: Vec<HostId> =
        (0..site.hosts.len()).map(HostId).filter(|&h| site.host(h).kind.value != HostKind::Firewall).collect();
    let summary = placed.len() > DETAIL_LIMIT;
    // Edges: host → host pairs with their ports; zones and the internet from their labels.
    let plan = site.flow_plan();
    #[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
    enum From {
        Internet,
        Zone(usize),
        Host(HostId),
    }
    let mut pairs: BTreeMap<(From, HostId), (BTreeSet<PortSpec>, Vec<usize>)> = BTreeMap::new();
    type ZonePairs = BTreeMap<(Option<usize>, Option<usize>), (BTreeSet<PortSpec>, Vec<usize>)>;
    // Every grant between zones (for the lane), and those whose source is a whole zone.
    let (mut all_zones, mut from_zones): (ZonePairs, ZonePairs) = Default::default();
    for g in &plan.grants {
        let Dest::Host(to) = g.to else { continue };
        let from = match g.from {
            Peer::Internet => From::Internet,
            Peer::Zone(z) => From::Zone(z.0),
            Peer::Host(h) => From::Host(h),
        };
        let fz = match g.from {
            Peer::Internet => None,
            Peer::Zone(z) => Some(z.0),
            Peer::Host(h) => egress_zone(site, h, Some(to)).map(|z| z.0),
        };
        let tz = site.host(to).interfaces.first().map(|i| i.zone.value.0);
        let add = |m: &mut ZonePairs| {
            let e = m.entry((fz, tz)).or_default();
            e.0.insert(g.port);
            e.1.push(g.flow);
        };
        add(&mut all_zones);
        if matches!(g.from, Peer::Zone(_)) {
            add(&mut from_zones);
        } else {
            let e = pairs.entry((from, to)).or_default();
            e.0.insert(g.port);
            e.1.push(g.flow);
        }
    }
    // Too many host pairs to follow (or a summary): every flow is drawn between zones, in
    // a lane right of the bands.
    let lane = summary || pairs.len() > EDGE_LIMIT;
    if lane {
        pairs.clear();
    }
    let zone_pairs = if lane { all_zones } else { from_zones };
    let inner = LEFT + PER_ROW as i64 * (BOX_W + GAP_X);
    let width = if lane { inner + LANE_W } else { inner };
    // Hosts per zone (by first interface); hosts with no interface at the end, in no band.
    let mut by_zone: Vec<Vec<HostId>> = site.zones.iter().map(|_| Vec::new()).collect();
    let mut nowhere = Vec::new();
    for &h in &placed {
        match site.host(h).interfaces.first() {
            Some(i) => by_zone[i.zone.value.0].push(h),
            None => nowhere.push(h),
        }
    }
    let mut bands = Vec::new();
    let mut hosts = Vec::new();
    let mut center: BTreeMap<HostId, (i64, i64)> = BTreeMap::new();
    let mut band_anchor: Vec<(i64, i64)> = Vec::new();
    let mut y = INTERNET_H + 10;
    let box_of = |h: HostId, x: i64, y: i64| -> HostBox {
        let host = site.host(h);
        let mut lines = vec![Text { text: Src::at(host.name.clone(), "host", &host.loc), y: 0, class: "name" }];
        for i in &host.interfaces {
            lines.push(Text {
                text: Src::of(
                    format!("{} {}", i.address.value, site.zone(i.zone.value).name),
                    "interface",
                    [&i.address.loc, &i.zone.loc],
                ),
                y: 0,
                class: "addr",
            });
        }
        lines.push(Text {
            text: Src::at(
                match &host.on {
                    Some(on) => format!("{} on {}", host.kind.value.name(), site.host(on.value).name),
                    None => host.kind.value.name().to_string(),
                },
                "host kind",
                &host.kind.loc,
            ),
            y: 0,
            class: "kind",
        });
        let svcs = site.services_on(h);
        for s in svcs.iter().take(MAX_SERVICES) {
            let s = site.service(*s);
            lines.push(Text { text: Src::at(s.name.clone(), "service", &s.loc), y: 0, class: "svc" });
        }
        if svcs.len() > MAX_SERVICES {
            lines.push(Text {
                text: Src::at(format!("+{} more", svcs.len() - MAX_SERVICES), "services", &host.loc),
                y: 0,
                class: "svc",
            });
        }
        for (k, l) in lines.iter_mut().enumerate() {
            l.y = y + 18 + k as i64 * LINE;
        }
        let h_px = 14 + lines.len() as i64 * LINE;
        HostBox {
            name: Src::at(host.name.clone(), "host", &host.loc),
            href: format!("hosts/{}.html", host.name),
            x,
            y,
            w: BOX_W,
            h: h_px,
            lines,
        }
    };
    for (zi, z) in site.zones.iter().enumerate() {
        let top = y;
        let label = Src::of(
            [z.vlan.as_ref().map(|v| format!("VLAN {}", v.value)), z.cidr.as_ref().map(|c| c.value.to_string())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
            "zone network",
            z.vlan.iter().map(|v| &v.loc).chain(z.cidr.iter().map(|c| &c.loc)),
        );
        let mut row_y = top + BAND_HEAD;
        if summary {
            let n = by_zone[zi].len();
            let services: usize = by_zone[zi].iter().map(|&h| site.services_on(h).len()).sum();
            let text = Src::at(format!("{n} hosts, {services} service instances"), "zone", &z.loc);
            let b = HostBox {
                name: Src::at(format!("{} hosts", z.name), "zone", &z.loc),
                href: "hosts/index.html".into(),
                x: LEFT,
                y: row_y,
                w: BOX_W * 2,
                h: 14 + 2 * LINE,
                lines: vec![
                    Text { text: Src::at(z.name.clone(), "zone", &z.loc), y: row_y + 18, class: "name" },
                    Text { text, y: row_y + 18 + LINE, class: "svc" },
                ],
            };
            row_y += b.h + GAP_Y;
            hosts.push(b);
        } else {
            for row in by_zone[zi].chunks(PER_ROW) {
                let mut tallest = 0;
                for (k, &h) in row.iter().enumerate() {
                    let x = LEFT + k as i64 * (BOX_W + GAP_X);
                    let b = box_of(h, x, row_y);
                    tallest = tallest.max(b.h);
                    center.insert(h, (b.x + b.w / 2, b.y + b.h / 2));
                    hosts.push(b);
                }
                row_y += tallest + GAP_Y;
            }
        }
        let h = (row_y - top).max(BAND_HEAD + 60);
        band_anchor.push((FW_X + FW_W, top + BAND_HEAD / 2));
        bands.push(Band { name: Src::at(z.name.clone(), "zone", &z.loc), label, y: top, h, tone: zi % 6 });
        y = top + h + 8;
    }
    // Hosts with no interface: one row at the bottom, outside the bands.
    for (k, &h) in nowhere.iter().enumerate() {
        let b = box_of(h, LEFT + (k % PER_ROW) as i64 * (BOX_W + GAP_X), y + (k / PER_ROW) as i64 * 140);
        center.insert(h, (b.x + b.w / 2, b.y + b.h / 2));
        hosts.push(b);
    }
    if !nowhere.is_empty() {
        y += nowhere.len().div_ceil(PER_ROW) as i64 * 140;
    }
    let height = y + 10;
    // The firewall: a column through every band, its address in each.
    let firewalls: Vec<HostBox> = firewall
        .iter()
        .enumerate()
        .map(|(k, &h)| {
            let host = site.host(h);
            let x = FW_X + k as i64 * 8;
            let mut lines = vec![Text { text: Src::at(host.name.clone(), "host", &host.loc), y: 24, class: "name" }];
            lines.push(Text {
                text: Src::at("firewall".into(), "host kind", &host.kind.loc),
                y: 24 + LINE,
                class: "kind",
            });
            for i in &host.interfaces {
                let b = &bands[i.zone.value.0];
                lines.push(Text {
                    text: Src::at(i.address.value.to_string(), "interface address", &i.address.loc),
                    y: b.y + 22,
                    class: "addr",
                });
            }
            HostBox {
                name: Src::at(host.name.clone(), "host", &host.loc),
                href: format!("hosts/{}.html", host.name),
                x,
                y: 4,
                w: FW_W - k as i64 * 16,
                h: height - 14,
                lines,
            }
        })
        .collect();
    let mut edges = Vec::new();
    let fw_ids: BTreeSet<HostId> = firewall.iter().copied().collect();
    let fw_anchor = |h: HostId, to: (i64, i64)| -> (i64, i64) {
        let k = firewall.iter().position(|&f| f == h).unwrap_or(0) as i64;
        (FW_X + FW_W - k * 8, to.1)
    };
    let loc_of = |flows: &[usize]| -> Vec<crate::diag::Loc> {
        let mut set: Vec<usize> = flows.to_vec();
        set.sort();
        set.dedup();
        set.into_iter().map(|f| site.flows[f].loc.clone()).collect()
    };
    for (k, ((from, to), (ports, flows))) in pairs.iter().enumerate() {
        let Some(&b) = center.get(to) else { continue };
        let a = match from {
            From::Internet => (LEFT + (width - LEFT) / 2, INTERNET_H - 10),
            From::Zone(z) => band_anchor[*z],
            From::Host(h) if fw_ids.contains(h) => fw_anchor(*h, b),
            From::Host(h) => match center.get(h) {
                Some(&c) => c,
                None => continue,
            },
        };
        let (to_pt, from_pt) = if fw_ids.contains(to) { (fw_anchor(*to, a), a) } else { (b, a) };
        let bow = ((k % 5) as i64 - 2) * 18;
        let (d, spots) = curve(from_pt, to_pt, bow);
        let locs = loc_of(flows);
        edges.push(Edge {
            d,
            label: Src::of(ports_text(ports), "ports of the flows", locs.iter()),
            lx: spots[0].0,
            ly: spots[0].1,
            shown: false,
            public: *from == From::Internet,
            spots,
        });
    }
    for (k, ((fz, tz), (ports, flows))) in zone_pairs.iter().enumerate() {
        // Between zones (a summary, or a whole zone as the source): from the source
        // band's anchor on the firewall column to the destination band's left edge.
        let pt = |z: &Option<usize>, dest: bool| match z {
            Some(z) if lane => (inner + 10, bands[*z].y + bands[*z].h / 2 + if dest { 8 } else { -8 }),
            None if lane => (inner + 10, INTERNET_H / 2),
            Some(z) if dest => (LEFT - 6, bands[*z].y + BAND_HEAD + 20),
            Some(z) => band_anchor[*z],
            None => (LEFT + (inner - LEFT) / 2, INTERNET_H - 10),
        };
        let (a, b) = (pt(fz, false), pt(tz, true));
        let (d, spots) = if lane {
            // Out into the lane and back: further out the further apart the zones are.
            let bow = (40 + (a.1 - b.1).abs() / 5 + (k as i64 % 3) * 14).min(LANE_W - 90);
            let (c1, c2) = ((a.0 + bow, a.1), (b.0 + bow, b.1));
            let mid = (a.1 + b.1) / 2 + 4;
            (
                format!("M{} {} C{} {} {} {} {} {}", a.0, a.1, c1.0, c1.1, c2.0, c2.1, b.0, b.1),
                vec![(a.0 + bow * 3 / 4, mid), (a.0 + bow * 3 / 4, mid - 14), (a.0 + bow * 3 / 4, mid + 14)],
            )
        } else {
            curve(a, b, 40 + (k as i64 % 4) * 12)
        };
        let locs = loc_of(flows);
        edges.push(Edge {
            d,
            label: Src::of(ports_text(ports), "ports of the flows", locs.iter()),
            lx: spots[0].0,
            ly: spots[0].1,
            shown: false,
            public: fz.is_none(),
            spots,
        });
    }
    // Floating addresses: a pill in their zone's band, right of its first row.
    let vips = if summary {
        Vec::new()
    } else {
        super::pages::vips(site)
            .into_iter()
            .filter_map(|(vip, svc, _)| {
                let z =
                    site.zones.iter().position(|z| z.cidr.as_ref().is_some_and(|c| c.value.contains(&vip.value)))?;
                let b = &bands[z];
                Some(Pill {
                    text: Src::of(
                        format!("VIP {} ({})", vip.value, site.service(svc).name),
                        "floating address",
                        [&vip.loc],
                    ),
                    x: LEFT + 330,
                    y: b.y + 6,
                    w: BOX_W + 40,
                })
            })
            .collect()
    };
    // What a label must not cover: boxes, zone headings (name and VLAN line), pills.
    let rect = |x: i64, y: i64, w: i64, h: i64| (x, y, x + w, y + h);
    let mut taken: Vec<Rect> = hosts.iter().chain(&firewalls).map(|b| rect(b.x, b.y, b.w, b.h)).collect();
    taken.extend(bands.iter().map(|b| {
        let heading = 120 + (b.label.value.chars().count() as i64) * 7;
        rect(LEFT, b.y + 6, heading, 22)
    }));
    taken.extend(vips.iter().map(|p| rect(p.x, p.y, p.w, 22)));
    taken.push(rect(LEFT, 6, width - LEFT, INTERNET_H - 16));
    place_labels(&mut edges, taken);
    Topology {
        site: name.clone(),
        width,
        height,
        bands,
        firewalls,
        hosts,
        edges,
        vips,
        summary,
        host_count: site.hosts.len(),
    }
}
