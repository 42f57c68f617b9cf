//! Review and provenance coverage, measured on the reference site:
//!
//! - **keys**: every leaf key of `site/` is mutated in a type-valid way; when the site
//!   still builds and a generated file changes, `diff`'s semantic summary must have a
//!   line naming that entity and field, and every changed file's manifest `sources`
//!   must list the site file that holds the key;
//! - **explain**: every line of every rendered file that holds a site value (a name, an
//!   address, a port, a duration, …) is traced by `explain` to at least one value
//!   (plans and the manifest are data about the other files, and left out).
//!
//! Both print their figure (`cargo test coverage -- --nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use medianest::artifact::ArtifactSet;
use medianest::ops::explain::{line_values, mentions};
use medianest::ops::{Compiled, Depth, Paths, compile, compile_with};
use toml::de::{DeTable, DeValue};

use crate::support::*;

/// One leaf of a site file: its key path, and the byte span of its value.
#[derive(Debug, Clone)]
struct Leaf {
    file: String,
    path: Vec<String>,
    span: std::ops::Range<usize>,
    value: Scalar,
}

#[derive(Debug, Clone)]
enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn leaves_of(file: &str, text: &str) -> Vec<Leaf> {
    fn walk(file: &str, v: &toml::Spanned<DeValue>, path: &mut Vec<String>, out: &mut Vec<Leaf>) {
        let value = match v.get_ref() {
            DeValue::String(s) => Some(Scalar::Str(s.to_string())),
            DeValue::Integer(i) => i.as_str().replace('_', "").parse().ok().map(Scalar::Int),
            DeValue::Float(f) => f.as_str().parse().ok().map(Scalar::Float),
            DeValue::Boolean(b) => Some(Scalar::Bool(*b)),
            DeValue::Datetime(_) => None,
            DeValue::Array(items) => {
                for (i, it) in items.iter().enumerate() {
                    path.push(format!("#{i}"));
                    walk(file, it, path, out);
                    path.pop();
                }
                None
            }
            DeValue::Table(t) => {
                table(file, t, path, out);
                None
            }
        };
        if let Some(value) = value {
            out.push(Leaf { file: file.to_string(), path: path.clone(), span: v.span(), value });
        }
    }
    fn table(file: &str, t: &DeTable, path: &mut Vec<String>, out: &mut Vec<Leaf>) {
        for (k, v) in t.iter() {
            path.push(k.get_ref().to_string());
            walk(file, v, path, out);
            path.pop();
        }
    }
    let doc = DeTable::parse(text).expect("the reference site parses");
    let mut out = Vec::new();
    table(file, doc.get_ref(), &mut Vec::new(), &mut out);
    out
}

/// A type-valid change of a value, written as TOML; `None` when there is none to try.
fn mutate(v: &Scalar) -> Option<String> {
    Some(match v {
        Scalar::Int(n) => (n + 1).to_string(),
        Scalar::Float(f) => format!("{:?}", f + 0.5),
        Scalar::Bool(b) => (!b).to_string(),
        Scalar::Str(s) => format!("{:?}", mutate_str(s)?),
    })
}

fn mutate_str(s: &str) -> Option<String> {
    // An address: the next one (the last octet stays a host address).
    if let Ok(std::net::IpAddr::V4(a)) = s.parse::<std::net::IpAddr>() {
        let o = a.octets();
        let last = if o[3] >= 250 { o[3] - 1 } else { o[3] + 1 };
        return Some(std::net::Ipv4Addr::new(o[0], o[1], o[2], last).to_string());
    }
    // `tcp/5432`, `30s`, `512m`, `16`: the number plus one.
    let digits_end = s.rfind(|c: char| c.is_ascii_digit()).map(|i| i + 1)?;
    let digits_start = s[..digits_end].rfind(|c: char| !c.is_ascii_digit()).map(|i| i + 1).unwrap_or(0);
    let n: u64 = s[digits_start..digits_end].parse().ok()?;
    Some(format!("{}{}{}", &s[..digits_start], n + 1, &s[digits_end..]))
}

/// Free text gets a word appended instead (a description, a reason).
fn mutate_text(s: &str) -> String {
    format!("{s} (edited)")
}

fn copy_repo(to: &Path) {
    let root = repo_root();
    copy_tree(&root.join("site"), &to.join("site"));
    copy_tree(&root.join("templates"), &to.join("templates"));
}

fn changed_files(base: &ArtifactSet, head: &ArtifactSet) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (p, a) in head {
        if base.get(p).is_none_or(|b| b.bytes != a.bytes) {
            out.push((p.clone(), a.meta.sources.clone()));
        }
    }
    for (p, b) in base {
        if !head.contains_key(p) {
            out.push((p.clone(), b.meta.sources.clone()));
        }
    }
    out
}

/// How the summary names the entity a key path belongs to: `(category or name, fields)`.
fn entity_and_fields(path: &[String]) -> (String, Vec<String>) {
    let named = ["zones", "docker_networks", "hosts", "services", "backups", "certificates"];
    let fields: Vec<String> = path.iter().filter(|s| !s.starts_with('#')).cloned().collect();
    match path.first().map(String::as_str) {
        Some(t) if named.contains(&t) && path.len() > 2 => (path[1].clone(), fields[2..].to_vec()),
        Some("flows") => ("flow".into(), fields[1..].to_vec()),
        Some("guardrails") => ("guard-rail".into(), fields[1..].to_vec()),
        Some(t) => (t.to_string(), fields[1..].to_vec()),
        None => (String::new(), fields),
    }
}

#[test]
fn every_key_that_changes_output_is_reviewed_and_sourced() {
    let dir = tempfile::tempdir().unwrap();
    copy_repo(dir.path());
    let paths = Paths::under(dir.path());
    let base: Compiled = compile(&paths);
    assert!(!base.failed());
    let mut leaves = Vec::new();
    for f in medianest::emit::list_tree(&dir.path().join("site")).unwrap().into_iter().filter(|f| f.ends_with(".toml"))
    {
        let text = std::fs::read_to_string(dir.path().join("site").join(&f)).unwrap();
        leaves.extend(leaves_of(&f, &text));
    }
    let (mut tried, mut changing, mut covered) = (0, 0, 0);
    let mut misses = Vec::new();
    for leaf in &leaves {
        let file = dir.path().join("site").join(&leaf.file);
        let original = std::fs::read_to_string(&file).unwrap();
        let mut candidates: Vec<String> = mutate(&leaf.value).into_iter().collect();
        if let Scalar::Str(s) = &leaf.value {
            candidates.push(format!("{:?}", mutate_text(s)));
        }
        let mut done = false;
        for new in candidates {
            if done {
                break;
            }
            tried += 1;
            let edited = format!("{}{}{}", &original[..leaf.span.start], new, &original[leaf.span.end..]);
            std::fs::write(&file, &edited).unwrap();
            let head = compile(&paths);
            std::fs::write(&file, &original).unwrap();
            if head.failed() {
                continue;
            }
            done = true;
            let changed = changed_files(&base.artifacts, &head.artifacts);
            if changed.is_empty() {
                continue;
            }
            changing += 1;
            let key = format!("site/{}: {}", leaf.file, leaf.path.join("."));
            let (entity, fields) = entity_and_fields(&leaf.path);
            let summary = medianest::review::semantic::compare(&base.site, &head.site, &medianest::families::facts);
            let named = summary.iter().any(|c| {
                let text = c.line().to_lowercase();
                (c.subject.contains(&entity) || c.category == entity)
                    && fields
                        .iter()
                        .any(|f| text.contains(&f.to_lowercase().replace('_', "")) || text.contains(&f.to_lowercase()))
            });
            let site_file = format!("site/{}", leaf.file);
            let unsourced: Vec<&str> =
                changed.iter().filter(|(_, s)| !s.contains(&site_file)).map(|(p, _)| p.as_str()).collect();
            if named && unsourced.is_empty() {
                covered += 1;
            } else {
                let lines: Vec<String> = summary.iter().map(|c| c.line()).collect();
                misses.push(format!(
                    "{key} → {new}: {}{}",
                    if named {
                        String::new()
                    } else {
                        format!("no summary line names `{entity}` {fields:?} (got {lines:?}); ")
                    },
                    if unsourced.is_empty() {
                        String::new()
                    } else {
                        format!("sources of {unsourced:?} lack {site_file}")
                    }
                ));
            }
        }
    }
    println!(
        "key coverage: {covered} of {changing} keys whose mutation changes output are reviewed and sourced ({} leaves, {tried} builds)",
        leaves.len()
    );
    assert!(changing > 100, "too few keys changed output ({changing}): the mutations are not reaching the site");
    assert!(misses.is_empty(), "{} of {changing} keys not covered:\n{}", misses.len(), misses.join("\n"));
}

/// Every scalar the site writes that is specific enough to find in a line, and every
/// entity name. Words of a fixed vocabulary (`kind = "nginx"`, a role, a WAF mode) are
/// left out: they are also the names of the programs the templates configure.
fn site_values(site: &Path) -> BTreeSet<String> {
    const VOCABULARY: &[&str] = &["kind", "roles", "method", "driver", "waf", "balance", "drift", "restart", "os"];
    let mut out = BTreeSet::new();
    for f in medianest::emit::list_tree(site).unwrap().into_iter().filter(|f| f.ends_with(".toml")) {
        let text = std::fs::read_to_string(site.join(&f)).unwrap();
        for leaf in leaves_of(&f, &text) {
            let key = leaf.path.iter().rev().find(|s| !s.starts_with('#')).map(String::as_str).unwrap_or("");
            if VOCABULARY.contains(&key) {
                continue;
            }
            match &leaf.value {
                Scalar::Str(s) => out.insert(s.clone()),
                Scalar::Int(n) if *n >= 10 => out.insert(n.to_string()),
                _ => false,
            };
            if let [t, name, ..] = leaf.path.as_slice()
                && ["zones", "docker_networks", "hosts", "services", "backups", "certificates"].contains(&t.as_str())
            {
                out.insert(name.clone());
            }
        }
    }
    out.retain(|v| v.chars().count() >= 3);
    out
}

#[test]
fn explain_traces_every_line_that_holds_a_site_value() {
    let root = repo_root();
    let compiled = compile_with(&Paths::under(&root), Depth::Traces);
    assert!(!compiled.failed());
    let values = site_values(&root.join("site"));
    let (mut bearing, mut resolved) = (0usize, 0usize);
    let mut misses: BTreeMap<String, usize> = BTreeMap::new();
    let templates: BTreeMap<&str, &str> = medianest::render::builtin_templates().iter().copied().collect();
    // Plans and the manifest are data about the other files, not rendered from the
    // site: `explain` describes them as such.
    for (path, a) in compiled.artifacts.iter().filter(|(_, a)| !a.meta.template.is_empty()) {
        let traces: Vec<_> = a.meta.all_traces().collect();
        // A value that the template itself spells out may be its fixed text.
        let fixed = templates.get(a.meta.template.as_str()).copied().unwrap_or("");
        let specific: Vec<&String> = values.iter().filter(|v| !mentions(fixed, v)).collect();
        for line in String::from_utf8_lossy(&a.bytes).lines() {
            if !specific.iter().any(|v| mentions(line, v)) {
                continue;
            }
            bearing += 1;
            if line_values(&traces, line).is_empty() {
                *misses.entry(format!("{path}: {}", line.trim())).or_default() += 1;
            } else {
                resolved += 1;
            }
        }
    }
    let pct = resolved as f64 * 100.0 / bearing.max(1) as f64;
    println!("explain coverage: {resolved} of {bearing} lines that hold a site value are traced ({pct:.1} %)");
    assert!(bearing > 500, "too few value-bearing lines ({bearing}): the site values are not found");
    let shown: Vec<&String> = misses.keys().take(40).collect();
    assert!(pct >= 95.0, "{pct:.1} % traced; untraced lines (first 40):\n{shown:#?}");
}
