//! Stage 1, **load**: `site/**/*.toml` → [`RawSite`].
//!
//! Walks the site directory in sorted order, registers every file in the
//! [`SourceMap`], parses it (all syntax errors of a file at once) and deserializes it
//! into the [`schema`] types. Unknown keys are not a serde error here: the parsed
//! document is walked against the schema's field lists and every unknown key is
//! reported with the closest known one, so one run lists every typo in every file.

pub mod schema;

use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, FileId, Loc, SourceMap, did_you_mean};
use crate::model::values::looks_like_secret_name;
use schema::*;

/// Every site file, parsed, in sorted path order.
#[derive(Debug, Default)]
pub struct RawSite {
    /// `(file, contents)` for each file that parsed.
    pub files: Vec<(FileId, RawFile)>,
}

/// Reads every `*.toml` under `site_dir`. `display_prefix` is how the directory is named
/// in diagnostics (`site`), so messages show repository-relative paths.
pub fn load_site(site_dir: &Path, display_prefix: &str, sources: &mut SourceMap, diags: &mut Diagnostics) -> RawSite {
    let files = read_site(site_dir, display_prefix, diags);
    load_files(files, display_prefix, sources, diags)
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
            Ok(e) if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "toml") => {
                paths.push(e.into_path())
            }
            Ok(_) => {}
            Err(err) => {
                diags.push(Diagnostic::error_nowhere("io", format!("failed to walk `{display_prefix}`: {err}")))
            }
        }
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
pub fn load_files(
    mut files: Vec<(String, Vec<u8>)>,
    display_prefix: &str,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> RawSite {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut raw = RawSite::default();
    let mut ids = Vec::with_capacity(files.len());
    for (rel, bytes) in files {
        let name = format!("{display_prefix}/{rel}");
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
        ids.push(sources.add(name, text));
    }
    // Files parse independently: on every core, each into diagnostics of its own, merged
    // in file order so the result does not depend on the thread count.
    let parsed: Vec<(Option<RawFile>, Diagnostics)> = ids
        .par_iter()
        .map(|&file| {
            let mut found = Diagnostics::default();
            (parse_file(file, sources.text(file), &mut found), found)
        })
        .collect();
    for (file, (parsed, found)) in ids.into_iter().zip(parsed) {
        diags.extend(found);
        if let Some(parsed) = parsed {
            raw.files.push((file, parsed));
        }
    }
    raw
}

/// Parses one site file; `None` when it cannot be used at all.
pub fn parse_file(file: FileId, text: &str, diags: &mut Diagnostics) -> Option<RawFile> {
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
    let mut unknown = Vec::new();
    find_unknown_keys(doc.get_ref(), &mut Vec::new(), &mut unknown);
    for (path, span) in &unknown {
        report_unknown_key(file, path, span.clone(), diags);
    }
    let result: Result<RawFile, _> = RawFile::deserialize(toml::de::Deserializer::from(doc));
    match result {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::error("wrong-type", first_line(e.message()).to_string(), Loc::new(file, span))
                    .help("check the value's type against the site reference in README.md"),
            );
            None
        }
    }
}

/// Collects `(path, key span)` of every key that the schema does not know.
fn find_unknown_keys(table: &DeTable, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, std::ops::Range<usize>)>) {
    let known = known_fields(path);
    let is_struct = !known.is_empty();
    for (k, v) in table.iter() {
        if is_struct && !known.contains(&k.get_ref().as_ref()) {
            let mut p = path.clone();
            p.push(k.get_ref().to_string());
            out.push((p, k.span()));
            continue;
        }
        path.push(k.get_ref().to_string());
        walk_value(v.get_ref(), path, out);
        path.pop();
    }
}

fn walk_value(v: &DeValue, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, std::ops::Range<usize>)>) {
    match v {
        DeValue::Table(t) => find_unknown_keys(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("#{i}"));
                walk_value(item.get_ref(), path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim_end_matches('.')
}

fn report_unknown_key(file: FileId, path: &[String], span: std::ops::Range<usize>, diags: &mut Diagnostics) {
    let Some((key, parents)) = path.split_last() else {
        return;
    };
    let known = known_fields(parents);
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

/// The keys a table at `parents` accepts (for "did you mean").
fn known_fields(parents: &[String]) -> &'static [&'static str] {
    let shape: Vec<&str> = parents
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.starts_with('#') {
                "#"
            } else if i == 1
                && matches!(
                    parents[0].as_str(),
                    "zones" | "docker_networks" | "hosts" | "services" | "backups" | "certificates"
                )
            {
                "*"
            } else {
                s.as_str()
            }
        })
        .collect();
    match shape.as_slice() {
        [] => fields_of::<RawFile>(),
        ["site"] => fields_of::<RawSiteSettings>(),
        ["recovery"] => fields_of::<RawRecovery>(),
        ["defaults"] => fields_of::<RawDefaults>(),
        ["defaults", "container"] => fields_of::<RawContainerDefaults>(),
        ["defaults", "health"] => fields_of::<RawHealthTiming>(),
        ["defaults", "resources"] | ["services", "*", "resources"] => fields_of::<RawResources>(),
        ["zones", "*"] => fields_of::<RawZone>(),
        ["docker_networks", "*"] => fields_of::<RawDockerNetwork>(),
        ["hosts", "*"] => fields_of::<RawHost>(),
        ["hosts", "*", "interfaces", "#"] => fields_of::<RawInterface>(),
        ["hosts", "*", "resources"] => fields_of::<RawHostResources>(),
        ["services", "*"] => fields_of::<RawService>(),
        ["services", "*", "health"] => fields_of::<RawHealth>(),
        ["services", "*", "expose", "#"] => fields_of::<RawExpose>(),
        ["services", "*", "expose", "#", "rate_limit"] => fields_of::<RawRateLimit>(),
        ["certificates", "*"] => fields_of::<RawCertificate>(),
        ["agent"] => fields_of::<RawAgent>(),
        ["flows", "#"] => fields_of::<RawFlow>(),
        ["guardrails", "#"] => fields_of::<RawGuardrail>(),
        ["guardrails", "#", "deny"] => fields_of::<RawDenyPair>(),
        ["backups", "*"] => fields_of::<RawBackup>(),
        _ => &[],
    }
}

/// The field names serde derived for `T`, read by asking `T` to deserialize itself from
/// a deserializer that records them. This keeps one source of truth: the schema structs.
pub fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Capture<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("capture"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("capture"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<RawFile>, String) {
        let mut sources = SourceMap::default();
        let f = sources.add("site/t.toml".into(), text.into());
        let mut diags = Diagnostics::default();
        let r = parse_file(f, sources.text(f), &mut diags);
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
    fn reports_type_errors_at_the_value() {
        let (r, out) = parse("[zones.db]\nvlan = \"ten\"\n");
        assert!(r.is_none());
        assert!(out.contains("site/t.toml:2:8"), "{out}");
    }

    #[test]
    fn captures_field_names_from_serde() {
        assert!(fields_of::<RawZone>().contains(&"gateway"));
        assert!(fields_of::<RawFile>().contains(&"guardrails"));
    }
}
