//! Stage 1, **load**: `site/**/*.toml` → [`RawSite`].
//!
//! Walks the site directory in sorted order, registers every file in the
//! [`SourceMap`], parses it (all syntax errors of a file at once) and deserializes it
//! into the [`schema`] types. Unknown keys are not a serde error here: the parsed
//! document is walked against the schema's field lists and every unknown key is
//! reported with the closest known one, so one run lists every typo in every file.

pub mod keys;
mod pieces;
pub mod schema;

use std::path::Path;

use rayon::prelude::*;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, FileId, Loc, SourceMap, did_you_mean};
use crate::model::values::looks_like_secret_name;
use keys::{Describe, KeySet, Shape};
use schema::*;
use serde::Deserialize;
use toml::Spanned;

/// Every site file, parsed, in sorted path order.
#[derive(Default)]
pub struct RawSite {
    /// `(file, contents)` for each file that parsed: the core keys.
    pub files: Vec<(FileId, RawFile)>,
    /// For each key owner (in the order given to [`load_files`]), `(file, its keys of
    /// that file)` for each file that holds some: the owner's own file-level type.
    pub owned: Vec<Vec<(FileId, Box<dyn std::any::Any + Send + Sync>)>>,
    /// `(file, key)` of every key taken out of a file because its value had the wrong
    /// type (reported once, at the value; resolve does not also call it missing).
    pub wrong_typed: std::collections::BTreeSet<(FileId, String)>,
    /// Every file under `site/secrets/` (ciphertexts, never parsed as TOML), sorted.
    pub secrets: Vec<SecretFile>,
    /// The architecture decision records, `adr/*.md`: `(file, title, body)`, in path order.
    pub adrs: Vec<(FileId, String, String)>,
}

/// A file under `site/secrets/`.
pub struct SecretFile {
    /// Registered in the source map with the age header as its text (nothing for a
    /// file that is not an age file: its bytes may be a plaintext, never shown).
    pub file: FileId,
    /// Path relative to `site/secrets/`.
    pub rel: String,
    /// The bytes.
    pub bytes: std::sync::Arc<[u8]>,
}

/// Whether a path relative to `site/` is under `site/secrets/`.
pub fn is_secret_path(rel: &str) -> bool {
    rel.starts_with("secrets/")
}

/// Whether a path relative to the site directory is a decision record: `adr/<name>.md`.
pub fn is_adr(rel: &str) -> bool {
    rel.strip_prefix("adr/").is_some_and(|n| n.ends_with(".md") && !n.contains('/'))
}

/// One file's keys of one owner.
type Owned = Option<Box<dyn std::any::Any + Send + Sync>>;

/// Reads every `*.toml` under `site_dir`. `display_prefix` is how the directory is named
/// in diagnostics (`site`), so messages show repository-relative paths.
/// `owners` are the artifact families' key sets (`None` for a family without keys).
pub fn load_site(
    site_dir: &Path,
    display_prefix: &str,
    owners: &[Option<KeySet>],
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> RawSite {
    let files = read_site(site_dir, display_prefix, diags);
    load_files(files, display_prefix, owners, sources, diags)
}

/// The bytes of every `*.toml` under `site_dir`, as `(path relative to it, bytes)` in
/// sorted order: what [`load_files`] parses and what a build's fingerprint hashes.
pub fn read_site(site_dir: &Path, display_prefix: &str, diags: &mut Diagnostics) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    if !site_dir.is_dir() {
        diags.push(
            Diagnostic::error_nowhere("no-site", format!("site directory `{display_prefix}` does not exist"))
                .help("run medianest from the repository root, or pass `-C <repo>` or `--site <dir>`"),
        );
        return files;
    }
    let mut paths = Vec::new();
    for entry in walkdir::WalkDir::new(site_dir).sort_by_file_name().follow_links(false) {
        match entry {
            Ok(e)
                if e.file_type().is_file()
                    && (e.path().extension().is_some_and(|x| x == "toml")
                        || e.path()
                            .strip_prefix(site_dir)
                            .is_ok_and(|r| is_adr(&r.to_string_lossy().replace('\\', "/")))) =>
            {
                paths.push(e.into_path())
            }
            // Every file under `secrets/` is read: a ciphertext, or something that must
            // not be there (a plaintext), which the build reports.
            Ok(e)
                if e.file_type().is_file()
                    && e.path().strip_prefix(site_dir).is_ok_and(|r| is_secret_path(&r.to_string_lossy())) =>
            {
                paths.push(e.into_path())
            }
            Ok(_) => {}
            Err(err) => {
                diags.push(Diagnostic::error_nowhere("io", format!("failed to walk `{display_prefix}`: {err}")))
            }
        }
    }
    if paths.is_empty() {
        diags.push(
            Diagnostic::error_nowhere(
                "missing-table",
                format!("`{display_prefix}` holds no site file, so nothing defines `[site]` or `[recovery]`"),
            )
            .help("add `site.toml` with `[site]` (`name`, `domain`) and `[recovery]` (`rto`, `rpo`); README.md has a minimal site"),
        );
    }
    for path in paths {
        let rel = path.strip_prefix(site_dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        match std::fs::read(&path) {
            Ok(bytes) => files.push((rel, bytes)),
            Err(err) => {
                diags.push(Diagnostic::error_nowhere("io", format!("failed to read `{display_prefix}/{rel}`: {err}")))
            }
        }
    }
    files
}

/// Parses site files given as `(path relative to the site directory, bytes)`, e.g. read
/// from a git tree. They are registered as `<display_prefix>/<path>`, in sorted order.
/// Each of `owners` gets its keys of every file, typed as its own file-level struct.
pub fn load_files(
    mut files: Vec<(String, Vec<u8>)>,
    display_prefix: &str,
    owners: &[Option<KeySet>],
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> RawSite {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut raw = RawSite {
        files: Vec::new(),
        owned: owners.iter().map(|_| Vec::new()).collect(),
        wrong_typed: Default::default(),
        secrets: Vec::new(),
        adrs: Vec::new(),
    };
    let mut ids = Vec::with_capacity(files.len());
    for (rel, bytes) in files {
        let name = format!("{display_prefix}/{rel}");
        if let Some(inner) = rel.strip_prefix("secrets/") {
            let header = crate::secrets::Header::parse(&bytes).map(|h| h.len).unwrap_or(0);
            let text = String::from_utf8_lossy(&bytes[..header]).into_owned();
            let file = sources.add(name, text);
            raw.secrets.push(SecretFile { file, rel: inner.to_string(), bytes: bytes.into() });
            continue;
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                diags.push(
                    Diagnostic::error_nowhere("not-utf8", format!("`{name}` is not valid UTF-8"))
                        .help("save the file as UTF-8"),
                );
                continue;
            }
        };
        // A UTF-8 byte-order mark is not part of the document: dropped, it neither
        // shifts line-1 columns nor reaches a value.
        let text = match text.strip_prefix('\u{FEFF}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        if is_adr(&rel) {
            let file = sources.add(name.clone(), text.clone());
            if let Some(adr) = adr(file, &name, &text, diags) {
                raw.adrs.push(adr);
            }
            continue;
        }
        ids.push(sources.add(name, text));
    }
    // Files parse independently: on every core, each into diagnostics of its own, merged
    // in file order so the result does not depend on the thread count.
    type Parsed = (Option<(pieces::Pieces, Vec<Owned>)>, Diagnostics);
    let parsed: Vec<Parsed> = ids
        .par_iter()
        .map(|&file| {
            let mut found = Diagnostics::default();
            (parse_file(file, sources.text(file), owners, &mut found), found)
        })
        .collect();
    for (file, (parsed, found)) in ids.into_iter().zip(parsed) {
        diags.extend(found);
        if let Some((parsed, owned)) = parsed {
            raw.wrong_typed.extend(parsed.removed.into_iter().map(|k| (file, k)));
            raw.files.push((file, parsed.file));
            for (i, part) in owned.into_iter().enumerate() {
                if let Some(part) = part {
                    raw.owned[i].push((file, part));
                }
            }
        }
    }
    raw
}

/// A decision record: its first line is its title, a `# ` heading; the rest its body.
fn adr(file: FileId, name: &str, text: &str, diags: &mut Diagnostics) -> Option<(FileId, String, String)> {
    let first = text.lines().next().unwrap_or("");
    let title = first.strip_prefix("# ").map(str::trim).filter(|t| !t.is_empty());
    let Some(title) = title else {
        diags.push(
            Diagnostic::error(
                "bad-adr",
                format!("decision record `{name}` does not start with its title"),
                Loc::new(file, 0..first.len()),
            )
            .help("make the first line a level-1 heading, e.g. `# 1. Flows are the only allow-list`"),
        );
        return None;
    };
    if let Some((n, line)) = text.lines().enumerate().skip(1).find(|(_, l)| l.starts_with("# ")) {
        let start: usize = text.lines().take(n).map(|l| l.len() + 1).sum();
        diags.push(
            Diagnostic::error(
                "bad-adr",
                format!("decision record `{name}` has a second title"),
                Loc::new(file, start..start + line.len()),
            )
            .help("one record, one title: make this a `## ` section, or move it to a file of its own"),
        );
        return None;
    }
    let body = text[first.len()..].trim_start_matches(['\r', '\n']).to_string();
    Some((file, title.to_string(), body))
}

/// Parses one site file into its core keys and each owner's keys; `None` when it cannot
/// be used at all.
pub fn parse_file(
    file: FileId,
    text: &str,
    owners: &[Option<KeySet>],
    diags: &mut Diagnostics,
) -> Option<(pieces::Pieces, Vec<Owned>)> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::error(
                    "toml-syntax",
                    format!("invalid TOML: {}", first_line(e.message())),
                    Loc::new(file, span),
                )
                .help("see https://toml.io for the syntax"),
            );
        }
        return None;
    }
    // Unknown keys are found by walking the document against the schema's field lists,
    // so every typo in the file is reported, each at its own key.
    let sets: Vec<KeySet> = owners.iter().flatten().copied().collect();
    let walk = Walk { core: RawFile::shape(), owners: &sets };
    let mut unknown = Vec::new();
    walk.find_unknown_keys(doc.get_ref(), &mut Vec::new(), &mut unknown);
    for (path, span) in &unknown {
        report_unknown_key(file, path, span.clone(), &walk, diags);
    }
    // Each owner reads its own keys from a pruned copy (a value of the wrong type is
    // reported and taken out, the rest kept); the core ignores them.
    let mut removed = Vec::new();
    let owned: Vec<Owned> = owners
        .iter()
        .map(|o| {
            let set = o.as_ref()?;
            let pruned = keys::prune(doc.get_ref(), Shape::Table(set.table))?;
            let deser = |t| (set.parse)(Spanned::new(doc.span(), t));
            pieces::read(file, pruned, Shape::Table(set.table), &deser, &mut removed, diags)
        })
        .collect();
    // Almost every file reads whole (no copy); one with a wrong-typed value is parsed
    // again and read piece by piece, so the error costs only that value.
    let mut core = match RawFile::deserialize(toml::de::Deserializer::from(doc)) {
        Ok(file) => pieces::Pieces { file, removed: Vec::new() },
        Err(_) => pieces::core_keys(file, &DeTable::parse_recoverable(text).0, diags),
    };
    core.removed.extend(removed);
    Some((core, owned))
}

fn wrong_type(file: FileId, e: &toml::de::Error, diags: &mut Diagnostics) {
    let span = e.span().unwrap_or(0..0);
    diags.push(
        Diagnostic::error("wrong-type", first_line(e.message()).to_string(), Loc::new(file, span))
            .help("check the value's type against the site reference (SITE-REFERENCE.md)"),
    );
}

/// The key tables a file is checked against: the core schema and every owner's.
struct Walk<'a> {
    core: Shape,
    owners: &'a [KeySet],
}

impl Walk<'_> {
    fn known(&self, path: &[String]) -> Option<Vec<&'static str>> {
        keys::known_at(self.core, self.owners, path)
    }
}

type KeyPath = (Vec<String>, std::ops::Range<usize>);

impl Walk<'_> {
    /// Collects `(path, key span)` of every key that no key table knows.
    fn find_unknown_keys(&self, table: &DeTable, path: &mut Vec<String>, out: &mut Vec<KeyPath>) {
        let known = self.known(path);
        for (k, v) in table.iter() {
            if let Some(known) = &known
                && !known.contains(&k.get_ref().as_ref())
            {
                let mut p = path.clone();
                p.push(k.get_ref().to_string());
                out.push((p, k.span()));
                continue;
            }
            path.push(k.get_ref().to_string());
            self.walk_value(v.get_ref(), path, out);
            path.pop();
        }
    }

    fn walk_value(&self, v: &DeValue, path: &mut Vec<String>, out: &mut Vec<KeyPath>) {
        match v {
            DeValue::Table(t) => self.find_unknown_keys(t, path, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(format!("#{i}"));
                    self.walk_value(item.get_ref(), path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim_end_matches('.')
}

fn report_unknown_key(
    file: FileId,
    path: &[String],
    span: std::ops::Range<usize>,
    walk: &Walk,
    diags: &mut Diagnostics,
) {
    let Some((key, parents)) = path.split_last() else {
        return;
    };
    let known = walk.known(parents).unwrap_or_default();
    let mut d =
        Diagnostic::error("unknown-key", format!("unknown key `{key}`{}", where_(parents)), Loc::new(file, span))
            .label("not a key medianest knows");
    if looks_like_secret_name(key) {
        d = d.help(
            "secret values never go in the site: name the secret in `secrets = [\"...\"]` and provision it on the host",
        );
    } else if let Some(s) = did_you_mean(key, known.iter().copied()) {
        d = d.help(format!("did you mean `{s}`?"));
    } else if !known.is_empty() {
        d = d.help(format!(
            "known keys here: {}",
            known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    diags.push(d);
}

fn where_(parents: &[String]) -> String {
    if parents.is_empty() {
        " at the top level".to_string()
    } else {
        let p: Vec<String> = parents
            .iter()
            .map(|s| match s.strip_prefix('#') {
                Some(i) => format!("[{i}]"),
                None => s.clone(),
            })
            .collect();
        format!(" in `{}`", p.join(".").replace(".[", "["))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<RawFile>, String) {
        let mut sources = SourceMap::default();
        let f = sources.add("site/t.toml".into(), text.into());
        let mut diags = Diagnostics::default();
        let r = parse_file(f, sources.text(f), &[], &mut diags).map(|(core, _)| core.file);
        (r, diags.render_plain(&sources))
    }

    #[test]
    fn reads_named_tables_with_spans() {
        let (r, out) = parse("[hosts.db1]\nkind = \"vm\"\non = \"pve1\"\n");
        let r = r.unwrap();
        assert!(out.is_empty(), "{out}");
        let (name, host) = r.hosts.first().unwrap();
        assert_eq!(name.get_ref(), "db1");
        assert_eq!(name.span(), 7..10);
        assert_eq!(host.on.as_ref().unwrap().get_ref(), "pve1");
    }

    #[test]
    fn reports_every_unknown_key_with_a_suggestion() {
        let (r, out) = parse(
            "[hosts.db1]\nkindd = \"vm\"\ninterfaces = [{ zone = \"db\", adress = \"10.0.0.1\" }]\n[zones.db]\npassword = \"x\"\n",
        );
        assert!(r.is_some());
        assert!(out.contains("unknown key `kindd` in `hosts.db1`"), "{out}");
        assert!(out.contains("did you mean `kind`?"), "{out}");
        assert!(out.contains("unknown key `adress` in `hosts.db1.interfaces[0]`"), "{out}");
        assert!(out.contains("did you mean `address`?"), "{out}");
        assert!(out.contains("site/t.toml:3:30"), "{out}");
        assert!(out.contains("secret values never go in the site"), "{out}");
        assert!(out.contains("3 errors"), "{out}");
    }

    #[test]
    fn reports_all_syntax_errors() {
        let (r, out) = parse("a = \nb = [1,\n");
        assert!(r.is_none());
        assert!(out.contains("invalid TOML"), "{out}");
    }

    #[test]
    fn reports_type_errors_at_the_value_and_keeps_the_rest() {
        let (r, out) = parse("[zones.db]\nvlan = \"ten\"\ncidr = \"10.0.3.0/24\"\n[zones.app]\nvlan = 20\n");
        assert!(out.contains("site/t.toml:2:8"), "{out}");
        assert!(out.contains("`zones.db.vlan` is a string, but it takes an integer"), "{out}");
        let r = r.expect("the file is kept");
        let (_, db) = r.zones.iter().find(|(k, _)| k.get_ref() == "db").expect("the zone is kept");
        assert!(db.vlan.is_none() && db.cidr.is_some());
        assert!(r.zones.iter().any(|(k, _)| k.get_ref() == "app"), "other entities of the file are kept");
    }

    #[test]
    fn tables_describe_the_schema_structs() {
        assert!(RawZone::TABLE.field("gateway").is_some());
        assert!(RawFile::TABLE.field("guardrails").is_some());
        assert_eq!(RawZone::TABLE.field("vlan").unwrap().text(), "Required. 802.1Q VLAN id (1–4094).");
        let path: Vec<String> = ["hosts", "db1", "interfaces", "#0"].iter().map(|s| s.to_string()).collect();
        let known = keys::known_at(RawFile::shape(), &[], &path).unwrap();
        assert!(known.contains(&"address"), "{known:?}");
    }
}
