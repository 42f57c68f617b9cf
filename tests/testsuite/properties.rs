//! Properties (proptest, stable toolchain, part of the normal suite):
//!
//! - random edits of a valid site, and arbitrary bytes as a site file, never panic the
//!   compiler: it either builds or reports errors (and then produces nothing);
//! - the output does not depend on the order or the files the entities are declared in
//!   (named tables shuffled, split across randomly named files created in random order);
//! - every rendered path stays inside `generated/`, whatever names the site uses;
//! - escaping round-trips: shell words through `/bin/sh`, XML text and attributes
//!   through an XML parser (roxmltree), YAML scalars through a YAML parser (serde-saphyr).
//!
//! The cargo-fuzz targets in `fuzz/` run the same pipeline for much longer
//! (`scripts/fuzz.sh`); these keep a short version of it in CI.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::sync::OnceLock;

use proptest::prelude::*;

use crate::support::*;
use medianest::artifact::check_rel_path;
use medianest::ops::{Paths, compile};
use medianest::render::escape;

/// Fragments that tend to break parsers and checks.
const FRAGMENTS: &[&str] = &[
    "",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    "=",
    "\n",
    "#",
    ";",
    "$",
    "\\",
    "\u{0}",
    "é",
    "🦀",
    "0",
    "-1",
    "99999999999999999999",
    "10.1.1.300",
    "10.1.3.10",
    "/24",
    "tcp/",
    "udp/0",
    "service:",
    "zone:",
    "host:",
    "internet",
    "true",
    "1.5",
    "[[flows]]",
    "[hosts.x]",
    "kind = \"vm\"",
    "\"latest\"",
    "nginx",
    "pve1",
    "db",
    "\"\"",
    ",",
    "..",
    "/run/secrets/",
    "x = 1",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for (pos, del, frag) in edits {
        if s.is_empty() {
            break;
        }
        let at = pos % s.len();
        let end = (at + del % 12).min(s.len());
        let ins: Vec<char> = FRAGMENTS[frag % FRAGMENTS.len()].chars().collect();
        s.splice(at..end, ins);
    }
    s.into_iter().collect()
}

/// Compiles the repository at `root`; checks the invariants every compile keeps, and
/// returns the artifacts (path → bytes) when it built.
fn compile_checked(root: &Path) -> Result<Option<BTreeMap<String, Vec<u8>>>, TestCaseError> {
    let compiled = compile(&Paths::under(root));
    if compiled.failed() {
        prop_assert!(compiled.artifacts.is_empty(), "a failed build produced files");
        let rendered = compiled.diags.render_plain(&compiled.sources);
        prop_assert!(rendered.contains("error["), "a failed build reported no error:\n{rendered}");
        return Ok(None);
    }
    prop_assert!(!compiled.artifacts.is_empty());
    for path in compiled.artifacts.keys() {
        prop_assert!(stays_inside(path), "`{path}` would be written outside generated/");
    }
    Ok(Some(compiled.artifacts.into_iter().map(|(p, a)| (p, a.bytes)).collect()))
}

/// Whether `generated/<path>` names a file strictly inside `generated/`.
fn stays_inside(path: &str) -> bool {
    check_rel_path(path).is_ok()
        && !path.contains('\0')
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_site_edits_never_panic(
        file in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let repo = Repo::base();
        let mut files: Vec<_> = read_tree(&repo.path().join("site")).into_keys().collect();
        files.sort();
        let name = &files[file % files.len()];
        let path = repo.path().join("site").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, mutate(&text, &edits)).unwrap();
        compile_checked(repo.path())?;
    }

    #[test]
    fn arbitrary_bytes_as_a_site_file_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        text in "[ -~\n]{0,400}",
    ) {
        let repo = Repo::base();
        repo.write("site/zz-bytes.toml", "");
        std::fs::write(repo.path().join("site/zz-bytes.toml"), &bytes).unwrap();
        compile_checked(repo.path())?;
        std::fs::write(repo.path().join("site/zz-bytes.toml"), text.as_bytes()).unwrap();
        compile_checked(repo.path())?;
    }
}

// --- Output independent of declaration order and file layout -------------------------

/// A block of a site file: the lines of one named entity (its table and subtables, with
/// the comments above them), or one `[[flows]]`/`[[guardrails]]` entry.
struct Block {
    /// `hosts.app1`, `site`, … ; `None` for array-of-tables entries, whose order matters.
    entity: Option<String>,
    text: String,
}

/// Splits a site file into blocks at its table headers.
fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut pending = String::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(header) = t.strip_prefix('[') {
            let entity = if header.starts_with('[') {
                None
            } else {
                let key = header.split(']').next().unwrap_or("");
                let parts: Vec<&str> = key.split('.').map(str::trim).collect();
                Some(match parts[0] {
                    "site" | "recovery" | "defaults" => parts[0].to_string(),
                    table => format!("{table}.{}", parts.get(1).unwrap_or(&"")),
                })
            };
            // A subtable joins its entity's block wherever it appears in the file.
            let at = entity.as_ref().and_then(|e| out.iter().position(|b| b.entity.as_ref() == Some(e)));
            let i = at.unwrap_or_else(|| {
                out.push(Block { entity, text: String::new() });
                out.len() - 1
            });
            out[i].text.push_str(&std::mem::take(&mut pending));
            out[i].text.push_str(line);
            out[i].text.push('\n');
            current = Some(i);
        } else if t.is_empty() || t.starts_with('#') {
            pending.push_str(line);
            pending.push('\n');
        } else {
            let i = current.unwrap_or_else(|| panic!("a key before any table: {line}"));
            out[i].text.push_str(&std::mem::take(&mut pending));
            out[i].text.push_str(line);
            out[i].text.push('\n');
        }
    }
    out
}

/// A file without the line of a docs page that names the site files it came from (which
/// files hold the tables is exactly what the permutation changes).
fn without_sources(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter(|l| {
            !l.starts_with("Generated by `medianest build` from")
                && !l.starts_with("<p>Generated by <code>medianest build</code> from")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// The reference site, file by file.
fn reference_site() -> &'static BTreeMap<String, Vec<u8>> {
    static SITE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    SITE.get_or_init(|| read_tree(&repo_root().join("site")))
}

/// What the reference site compiles to, laid out as it is in the repository.
fn reference_output() -> &'static BTreeMap<String, Vec<u8>> {
    static OUT: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    OUT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for (rel, bytes) in reference_site() {
            let p = dir.path().join("site").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let compiled = compile(&Paths::under(dir.path()));
        assert!(!compiled.failed(), "{}", compiled.diags.render_plain(&compiled.sources));
        compiled.artifacts.into_iter().map(|(p, a)| (p, a.bytes)).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Named tables (zones, hosts, services, backups, …) shuffled and spread over
    /// randomly named files, written in a random order: the same bytes out. Flows and
    /// guard-rails keep their files and order (their order is part of the output).
    #[test]
    fn output_is_independent_of_declaration_order(seed in any::<u64>(), files in 1usize..6) {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut named: Vec<String> = Vec::new();
        let mut layout: Vec<(String, String)> = Vec::new();
        for (rel, bytes) in reference_site() {
            // Ciphertexts are not declarations: they are copied as they are, below.
            if rel.starts_with("secrets/") {
                continue;
            }
            if !rel.ends_with(".toml") {
                // A decision record is a page of its own, not tables.
                layout.push((rel.clone(), String::from_utf8(bytes.clone()).unwrap()));
                continue;
            }
            let mut ordered = String::new();
            for b in blocks(std::str::from_utf8(bytes).unwrap()) {
                match b.entity {
                    Some(_) => named.push(b.text),
                    None => ordered.push_str(&b.text),
                }
            }
            if !ordered.is_empty() {
                layout.push((rel.clone(), ordered));
            }
        }
        for i in (1..named.len()).rev() {
            named.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let names: Vec<String> =
            (0..files).map(|i| format!("{}/p{:x}.toml", ["a", "m", "z"][i % 3], next() % 4096)).collect();
        let mut by_file: BTreeMap<String, String> = BTreeMap::new();
        for text in named {
            by_file.entry(names[(next() % files as u64) as usize].clone()).or_default().push_str(&text);
        }
        for (rel, text) in by_file {
            match layout.iter_mut().find(|(r, _)| *r == rel) {
                Some((_, t)) => t.push_str(&text),
                None => layout.push((rel, text)),
            }
        }
        for i in (1..layout.len()).rev() {
            layout.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in &layout {
            let p = dir.path().join("site").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        for (rel, bytes) in reference_site().iter().filter(|(r, _)| r.starts_with("secrets/")) {
            let p = dir.path().join("site").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let out = compile_checked(dir.path())?;
        let out = out.ok_or_else(|| TestCaseError::fail("the permuted site does not build"))?;
        prop_assert!(out.keys().eq(reference_output().keys()), "different files");
        for (path, bytes) in &out {
            prop_assert!(
                without_sources(bytes) == without_sources(&reference_output()[path]),
                "`{path}` differs"
            );
        }
    }
}

// --- Rendered paths stay inside generated/ --------------------------------------------

/// A site overlay that adds a VM, a container on it exposed at `<label>.lab.example.org`
/// with `path`, and the flow the edge needs; every name is given as a quoted TOML key or
/// string, so hostile names reach the resolver as written.
fn named_overlay(host: &str, service: &str, label: &str, path: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        "[hosts.{h}]\nkind = \"vm\"\non = \"pve1\"\nroles = [\"docker\"]\ninterfaces = [{{ zone = \"app\", address = \"10.1.2.77\" }}]\n\n\
         [services.{s}]\nimage = \"ghcr.io/lab/prop:1.0.0\"\nhosts = [{h}]\nports = {{ http = 9000 }}\nuser = \"1001:1001\"\n\
         health = {{ http = \"/health\" }}\ntmpfs = [\"/tmp\"]\nexpose = [{{ hostname = {d}, path = {p} }}]\n\n\
         [[flows]]\nfrom = \"service:proxy\"\nto = {to}\nports = [\"tcp/9000\"]\nwhy = \"edge to the new service\"\n",
        h = q(host),
        s = q(service),
        d = q(&format!("{label}.lab.example.org")),
        p = q(path),
        to = q(&format!("service:{service}")),
    )
}

fn label() -> impl Strategy<Value = String> {
    "x[a-z0-9-]{0,24}[a-z0-9]"
}

fn hostile() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(".."),
            Just("."),
            Just("/"),
            Just("\\"),
            Just("x"),
            Just("-"),
            Just("_"),
            Just("~"),
            Just("%2e"),
            Just("\u{0}"),
            Just(" "),
            Just("é"),
            Just("hosts"),
            Just("etc"),
        ],
        1..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Valid names build, and every file lands inside generated/, including the ones
    /// named after the host, the service and the public hostname.
    #[test]
    fn valid_names_render_inside_generated(
        host in label(),
        service in label(),
        dns in label(),
        // `..` is the one segment the path rules refuse (found by this test: with 3,000
        // cases, proptest's bias toward short strings reaches it after ~700).
        seg in "[a-z0-9._~-]{1,12}".prop_filter("`..` is not a valid path segment", |s| s != ".."),
    ) {
        prop_assume!(host != service);
        let repo = Repo::base();
        repo.write("site/zz-names.toml", &named_overlay(&host, &service, &dns, &format!("/{seg}/")));
        let Some(out) = compile_checked(repo.path())? else {
            // Say why, so that a rare failure in CI can be understood from its log.
            let compiled = compile(&Paths::under(repo.path()));
            return Err(TestCaseError::fail(format!(
                "a site with valid names does not build:\n{}",
                compiled.diags.render_plain(&compiled.sources)
            )));
        };
        let hosts_file = format!("hosts/{host}/root/etc/hosts");
        prop_assert!(out.contains_key(&hosts_file));
    }

    /// Hostile names are either refused (nothing is written) or stay inside generated/.
    #[test]
    fn hostile_names_never_escape_generated(
        host in prop_oneof![label(), hostile()],
        service in prop_oneof![label(), hostile()],
        dns in prop_oneof![label(), hostile()],
        path in prop_oneof![Just("/".to_string()), hostile()],
    ) {
        let repo = Repo::base();
        repo.write("site/zz-names.toml", &named_overlay(&host, &service, &dns, &path));
        compile_checked(repo.path())?;
    }
}

// --- Escaping round-trips ---------------------------------------------------------------

/// Strings that hit the escapers' edge cases often: any character, plus a bias toward
/// ASCII punctuation, control characters, C1 controls and the odd Unicode code points.
fn tricky_string() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        4 => any::<char>(),
        4 => (0x20u32..0x7f).prop_filter_map("ascii", char::from_u32),
        2 => (0u32..0x20).prop_filter_map("c0", char::from_u32),
        2 => (0x7fu32..0xa1).prop_filter_map("c1", char::from_u32),
        1 => prop_oneof![Just('\u{2028}'), Just('\u{2029}'), Just('\u{feff}'), Just('\u{fffe}'), Just('\u{ffff}'), Just('\u{10ffff}')],
    ];
    proptest::collection::vec(c, 0..24).prop_map(|v| v.into_iter().collect())
}

/// Characters XML 1.0 can carry (the `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// `sh` makes one word of anything: `/bin/sh` gives back exactly the input.
    #[test]
    fn shell_words_round_trip_through_sh(words in proptest::collection::vec(tricky_string(), 1..8)) {
        let words: Vec<String> = words.into_iter().map(|w| w.replace('\0', "")).collect();
        let script = format!("printf '%s\\000' {}", words.iter().map(|w| escape::sh(w)).collect::<Vec<_>>().join(" "));
        let out = std::process::Command::new("/bin/sh").arg("-c").arg(&script).output().unwrap();
        prop_assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        let mut got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        prop_assert_eq!(got.pop(), Some(&b""[..]));
        let want: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
        prop_assert_eq!(got, want, "script: {}", script);
    }

    /// `xml` text and attribute values parse back to the input; characters XML cannot
    /// carry come back as U+FFFD, and the document is always well-formed.
    #[test]
    fn xml_escaping_round_trips_through_a_parser(s in tricky_string()) {
        let doc = format!("<r a=\"{0}\" b='{0}'>{0}</r>", escape::xml(&s));
        let s: String = s.chars().map(|c| if xml_char(c) { c } else { '\u{fffd}' }).collect();
        let parsed = roxmltree::Document::parse(&doc);
        prop_assert!(parsed.is_ok(), "{doc:?}: {:?}", parsed.err());
        let parsed = parsed.unwrap();
        let root = parsed.root_element();
        prop_assert_eq!(root.attribute("a"), Some(s.as_str()), "attribute in {:?}", doc);
        prop_assert_eq!(root.attribute("b"), Some(s.as_str()), "attribute in {:?}", doc);
        let text: String = root.children().filter_map(|n| n.text()).collect();
        prop_assert_eq!(text, s, "text in {:?}", doc);
    }

    /// `yaml` scalars parse back to the input, as map values and as list items.
    #[test]
    fn yaml_scalars_round_trip_through_a_parser(s in tricky_string()) {
        let doc = format!("key: {0}\nlist:\n  - {0}\n", escape::yaml(&s));
        let parsed: Result<BTreeMap<String, serde_json::Value>, _> = serde_saphyr::from_str(&doc);
        prop_assert!(parsed.is_ok(), "{doc:?}: {:?}", parsed.err());
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed["key"].as_str(), Some(s.as_str()), "{:?}", doc);
        prop_assert_eq!(parsed["list"][0].as_str(), Some(s.as_str()), "{:?}", doc);
    }
}

#[test]
fn escaping_edge_cases() {
    for s in ["", "no", "yes", "0755", "~", "null", "- x", "a: b", "#x", "\u{7f}", "\u{85}", "\u{feff}", "\u{fffe}"] {
        let doc = format!("k: {}\n", escape::yaml(s));
        let parsed: BTreeMap<String, String> = serde_saphyr::from_str(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
        assert_eq!(parsed["k"], s, "{doc:?}");
    }
    for s in ["a\rb", "a\r\nb", "\t", " \n ", "]]>", "&amp;", "\u{85}", "\u{2028}"] {
        let doc = format!("<r a=\"{0}\">{0}</r>", escape::xml(s));
        let parsed = roxmltree::Document::parse(&doc).unwrap();
        assert_eq!(parsed.root_element().attribute("a"), Some(s), "{doc:?}");
        assert_eq!(parsed.root_element().text().unwrap_or(""), s, "{doc:?}");
    }
}
