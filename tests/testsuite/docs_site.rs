//! The documentation site (`generated/docs/`, issue 19):
//!
//! - **links**: every internal link and anchor of every Markdown page and HTML page of the
//!   reference site resolves (and the checker finds a broken one);
//! - **SVG**: the topology is well-formed XML, its host boxes do not overlap, and it is
//!   byte-identical across runs and thread counts, at the reference site's size and on a
//!   synthetic site of 50 hosts (`examples/synth_site.rs`);
//! - **browser**: headless Chromium (Debian's `chromium`, installed by `scripts/test.sh`)
//!   loads the overview, a host page and the topology page from `file://`: no console
//!   error, the page's script ran (it marks `<body data-ready="ok">`), the DOM holds
//!   every host and zone; screenshots go to `target/docs-screenshots/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

#[allow(dead_code)]
#[path = "../../examples/synth_site.rs"]
mod synth;

/// The anchors (`id`s) of an HTML text.
fn html_ids(html: &str) -> BTreeSet<String> {
    attr_values(html, "id").into_iter().collect()
}

/// Every value of an attribute in an HTML/SVG text (`name="…"`), entities decoded.
fn attr_values(text: &str, name: &str) -> Vec<String> {
    let pat = format!(" {name}=\"");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&pat) {
        rest = &rest[i + pat.len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        out.push(rest[..end].replace("&amp;", "&").replace("&#x2f;", "/").replace("&quot;", "\""));
        rest = &rest[end..];
    }
    out
}

/// The links of a Markdown text and the anchors of its headings (as a git host makes
/// them, the same `id`s the HTML pages carry).
fn md_links(md: &str) -> Vec<String> {
    use pulldown_cmark::{Event, Parser, Tag};
    Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES)
        .filter_map(|e| match e {
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// Checks every internal link of the `.md` and `.html` files under `root` (the
/// `generated/` folder; links may reach any file in it). Returns the broken ones.
fn broken_links(root: &Path) -> (usize, Vec<String>) {
    let tree = read_tree(root);
    let mut anchors: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, bytes) in &tree {
        let text = String::from_utf8_lossy(bytes);
        if rel.ends_with(".html") {
            anchors.insert(rel.clone(), html_ids(&text));
        } else if rel.ends_with(".md") {
            anchors.insert(rel.clone(), html_ids(&medianest::render::markdown::to_html(&text)));
        }
    }
    let mut checked = 0;
    let mut broken = Vec::new();
    for (rel, bytes) in &tree {
        let text = String::from_utf8_lossy(bytes);
        let links = if rel.ends_with(".md") {
            md_links(&text)
        } else if rel.ends_with(".html") {
            let mut v = attr_values(&text, "href");
            v.extend(attr_values(&text, "src"));
            v
        } else {
            continue;
        };
        let dir = Path::new(rel).parent().unwrap_or(Path::new(""));
        for link in links {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, frag) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() { rel.clone() } else { normalize(&dir.join(path)) };
            let exists = tree.contains_key(&target) || tree.keys().any(|k| k.starts_with(&format!("{target}/")));
            if !exists {
                broken.push(format!("{rel}: `{link}` → {target} does not exist"));
                continue;
            }
            if let Some(f) = frag
                && !anchors.get(&target).is_some_and(|a| a.contains(f))
            {
                broken.push(format!("{rel}: `{link}` → no anchor `{f}` in {target}"));
            }
        }
    }
    (checked, broken)
}

/// `a/b/../c` → `a/c` (a path that climbs above the root keeps its `..`, and fails).
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir if parts.pop().is_none() => {
                parts.push("..".into());
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

#[test]
fn every_internal_link_and_anchor_of_the_docs_resolves() {
    let (checked, broken) = broken_links(&repo_root().join("generated"));
    println!("docs links: {checked} internal links checked");
    assert!(checked > 500, "too few links found ({checked}): the checker does not see them");
    assert!(broken.is_empty(), "{} broken links:\n{}", broken.len(), broken.join("\n"));
}

#[test]
fn the_link_checker_finds_a_broken_link_and_a_missing_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("docs/a.md", "# A\n\n## Part one\n\n[ok](b.md#b) [self](#part-one) [gone](c.md) [bad](b.md#nope)\n");
    w("docs/b.md", "# B\n");
    w("docs/site/a.html", "<h1 id=\"a\">A</h1><a href=\"b.html#a\">x</a><img src=\"../missing.svg\">");
    w("docs/site/b.html", "<h1 id=\"b\">B</h1>");
    let (checked, broken) = broken_links(dir.path());
    assert_eq!(checked, 6);
    assert_eq!(broken.len(), 4, "{broken:#?}");
    assert!(broken.iter().any(|b| b.contains("`c.md`")) && broken.iter().any(|b| b.contains("no anchor `nope`")));
    assert!(broken.iter().any(|b| b.contains("missing.svg")) && broken.iter().any(|b| b.contains("no anchor `a`")));
}

/// A host box of the SVG: `(host, x, y, w, h)`.
type BoxGeo = (String, f64, f64, f64, f64);

/// Parses the SVG (it must be well-formed XML) and returns its host boxes and zones.
fn svg_geometry(svg: &str) -> (Vec<BoxGeo>, Vec<String>) {
    let doc = roxmltree::Document::parse(svg).expect("the topology is well-formed XML");
    let mut boxes = Vec::new();
    let mut zones = Vec::new();
    for g in doc.descendants().filter(|n| n.has_tag_name("g")) {
        if let Some(z) = g.attribute("data-zone") {
            zones.push(z.to_string());
        }
        let Some(host) = g.attribute("data-host") else { continue };
        if g.attribute("class") != Some("host") {
            continue;
        }
        let rect = g
            .descendants()
            .find(|n| n.has_tag_name("rect") && n.attribute("class") == Some("host-box"))
            .expect("a host group has its box");
        let num = |a: &str| rect.attribute(a).unwrap().parse::<f64>().unwrap();
        boxes.push((host.to_string(), num("x"), num("y"), num("width"), num("height")));
    }
    (boxes, zones)
}

fn overlaps(boxes: &[BoxGeo]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            if a.1 < b.1 + b.3 && b.1 < a.1 + a.3 && a.2 < b.2 + b.4 && b.2 < a.2 + a.4 {
                out.push(format!("{} and {} overlap", a.0, b.0));
            }
        }
    }
    out
}

#[test]
fn the_topology_shows_every_zone_and_host_and_its_boxes_do_not_overlap() {
    let svg = std::fs::read_to_string(repo_root().join("generated/docs/topology.svg")).unwrap();
    let (boxes, zones) = svg_geometry(&svg);
    let inventory = std::fs::read_to_string(repo_root().join("generated/docs/inventory.md")).unwrap();
    for z in ["management", "application", "database", "storage", "monitoring", "dmz"] {
        assert!(zones.iter().any(|x| x == z), "zone {z} missing");
    }
    for h in ["pve1", "pve2", "edge1", "edge2", "app1", "app2", "db1", "db2", "cache1", "stor1", "dns1", "mon1", "log1"]
    {
        assert!(boxes.iter().any(|b| b.0 == h), "host {h} has no box");
        assert!(inventory.contains(h));
    }
    assert!(svg.contains("data-host=\"fw1\""), "the firewall is drawn");
    assert!(svg.contains("VIP 10.0.6.5"), "the edge VIP is drawn");
    assert!(svg.contains("tcp/443"), "flows carry their ports");
    let o = overlaps(&boxes);
    assert!(o.is_empty(), "{o:#?}");
    // Port labels cover no host box and no other label: their extent at 10px (about
    // 5.5px a character, 10px tall above the baseline, centred on x).
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let labels: Vec<BoxGeo> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some("port"))
        .map(|n| {
            let text = n.text().unwrap_or_default();
            let num = |a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
            let w = text.chars().count() as f64 * 5.5;
            (format!("label `{text}`"), num("x") - w / 2.0, num("y") - 10.0, w, 12.0)
        })
        .collect();
    assert!(labels.len() >= 20, "most flows carry their ports: {}", labels.len());
    let mut all = boxes.clone();
    all.extend(labels.iter().cloned());
    let o = overlaps(&all);
    assert!(o.is_empty(), "{o:#?}");
    // The overlap check itself can fail.
    let mut moved = boxes.clone();
    moved[1].1 = moved[0].1 + 5.0;
    moved[1].2 = moved[0].2 + 5.0;
    assert!(!overlaps(&moved).is_empty());
}

fn build_threads(repo: &Path, threads: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medianest"));
    cmd.args(["-C", repo.to_str().unwrap(), "--color", "never", "build"]);
    match threads {
        Some(t) => cmd.env("RAYON_NUM_THREADS", t),
        None => cmd.env_remove("RAYON_NUM_THREADS"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tree = read_tree(&repo.join("generated/docs"));
    std::fs::remove_dir_all(repo.join("generated")).unwrap();
    tree
}

#[test]
fn a_fifty_host_site_is_drawn_without_overlap_and_identically_on_any_thread_count() {
    let files = synth::generate(50, 200).expect("a valid synthetic site");
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in &files {
        let p = dir.path().join("site").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let one = build_threads(dir.path(), Some("1"));
    let again = build_threads(dir.path(), Some("1"));
    let many = build_threads(dir.path(), None);
    assert!(one == again, "two runs differ");
    assert!(one == many, "1 thread and the default differ");
    let svg = String::from_utf8(one["topology.svg"].clone()).unwrap();
    let (boxes, zones) = svg_geometry(&svg);
    let hosts =
        one.keys().filter(|k| k.starts_with("hosts/") && k.ends_with(".md") && !k.ends_with("README.md")).count();
    assert!(hosts >= 50, "{hosts} host pages");
    // Every host but the firewall (a column of its own) has a box.
    assert_eq!(boxes.len() + 1, hosts, "one box per host");
    assert_eq!(zones.len(), 6);
    let o = overlaps(&boxes);
    assert!(o.is_empty(), "{o:#?}");
    // Legible: every box is at least as wide as the longest host name needs.
    for b in &boxes {
        assert!(b.3 >= 150.0 && b.4 >= 40.0, "{b:?} too small to read");
    }
    let (checked, broken) = {
        let g = tempfile::tempdir().unwrap();
        for (rel, bytes) in &one {
            let p = g.path().join("docs").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        // Links into the hosts' files leave `docs/`: check those from the full tree only.
        let (c, b) = broken_links(g.path());
        (c, b.into_iter().filter(|l| !l.contains("../hosts/") && !l.contains("../firewall/")).collect::<Vec<_>>())
    };
    assert!(checked > 100 && broken.is_empty(), "{checked} checked, broken: {broken:#?}");
}

/// Where the browser test writes its screenshots (named in README.md).
fn screenshots() -> PathBuf {
    repo_root().join("target/docs-screenshots")
}

/// Runs headless Chromium on a page; returns (stdout, stderr).
fn chromium(args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("`chromium` runs (Debian's package; scripts/test.sh installs it)");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Console errors Chromium logged (`Uncaught …`, a failed load, a CSP violation).
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            (l.contains(":CONSOLE") && (l.contains("Uncaught") || l.contains("Error") || l.contains("error")))
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_FILE_NOT_FOUND")
        })
        .collect()
}

#[test]
fn chromium_loads_the_pages_from_disk_without_errors() {
    let site = repo_root().join("generated/docs/site");
    std::fs::create_dir_all(screenshots()).unwrap();
    let hosts = [
        "pve1", "pve2", "fw1", "edge1", "edge2", "app1", "app2", "db1", "db2", "cache1", "stor1", "dns1", "mon1",
        "log1",
    ];
    let zones = ["management", "application", "database", "storage", "monitoring", "dmz"];
    for (page, shot, size) in [
        ("index.html", "overview.png", "1280,1600"),
        ("hosts/db1.html", "host-db1.png", "390,1400"),
        ("topology.html", "topology.png", "1700,1300"),
    ] {
        let url = format!("file://{}", site.join(page).display());
        let (dom, log) = chromium(&["--dump-dom".into(), "--virtual-time-budget=3000".into(), url.clone()]);
        let errors = console_errors(&log);
        assert!(errors.is_empty(), "{page}: console errors:\n{}", errors.join("\n"));
        assert!(dom.contains("data-ready=\"ok\""), "{page}: the page's script did not run to its end:\n{dom}");
        if page != "hosts/db1.html" {
            for h in hosts {
                assert!(dom.contains(h), "{page}: host {h} is not in the DOM");
            }
        }
        if page == "topology.html" {
            for z in zones {
                assert!(dom.contains(&format!("data-zone=\"{z}\"")), "{page}: zone {z} is not in the DOM");
            }
            let start = dom.find("<svg").expect("the diagram is inline");
            let end = dom.find("</svg>").expect("the diagram ends") + "</svg>".len();
            let (boxes, _) = svg_geometry(&dom[start..end].replace("<br>", ""));
            assert!(boxes.len() >= 13 && overlaps(&boxes).is_empty(), "{boxes:?}");
        } else if page == "hosts/db1.html" {
            assert!(dom.contains("/etc/postgresql/16/main/postgresql.conf"), "{page}: the files it applies");
        }
        let path = screenshots().join(shot);
        let _ = std::fs::remove_file(&path);
        let (_, log) = chromium(&[format!("--screenshot={}", path.display()), format!("--window-size={size}"), url]);
        let errors = console_errors(&log);
        assert!(errors.is_empty(), "{page}: console errors:\n{}", errors.join("\n"));
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{page}: no screenshot at {}: {e}", path.display()));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{page}: an empty screenshot");
    }
}
