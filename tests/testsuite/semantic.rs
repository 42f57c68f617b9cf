//! The semantic summary of `diff`, from two models: list fields as `+item`/`-item`, a
//! flow's port change as one changed flow, family keys reviewed like core keys, and
//! changes that loosen security flagged.

use std::collections::BTreeMap;

use medianest::review::semantic::{Change, compare};

use crate::support::*;

/// The base fixture's site files, with `edit` applied to their text by file name.
fn site_files(edit: &dyn Fn(&str, String) -> String) -> Vec<(String, Vec<u8>)> {
    let dir = suite("fixtures/base-site");
    let mut names: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        names.insert(name.clone(), edit(&name, text).into_bytes());
    }
    names.into_iter().collect()
}

fn changes(edit: &dyn Fn(&str, String) -> String) -> Vec<Change> {
    let base = medianest::ops::analyze_files(site_files(&|_, t| t), "site");
    let head = medianest::ops::analyze_files(site_files(edit), "site");
    assert!(!base.diags.has_errors() && !head.diags.has_errors(), "{}", head.diags.render_plain(&head.sources));
    compare(&base.site, &head.site, &medianest::families::facts)
}

fn lines(c: &[Change]) -> String {
    c.iter().map(|c| c.line()).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_flow_port_change_is_one_changed_flow() {
    let c = changes(&|name, t| {
        if name == "policy.toml" { t.replace("ports = [\"tcp/443\", \"http\"]", "ports = [\"tcp/443\"]") } else { t }
    });
    let text = lines(&c);
    // Narrowing a flow is not a relaxation; widening one is (see the guard-rail test's
    // sibling in `relaxes`), and both read as one changed flow.
    assert!(text.contains("flow changed: internet → service:proxy (ports: -tcp/80)"), "{text}");
    assert!(!text.contains("[relaxes security] flow changed"), "{text}");
    assert!(!text.contains("flow added") && !text.contains("flow removed"), "{text}");
}

#[test]
fn removing_a_guardrail_is_flagged() {
    let c = changes(&|name, t| {
        if name == "policy.toml" {
            t.replace("[[guardrails]]\ndeny = { from = \"zone:dmz\", to = \"zone:db\" }\nwhy = \"the DMZ never reaches the database\"\n", "")
        } else {
            t
        }
    });
    let text = lines(&c);
    assert!(text.contains("[relaxes security] guard-rail removed: deny zone:dmz → zone:db"), "{text}");
}

#[test]
fn family_keys_are_reviewed_and_a_lower_waf_is_flagged() {
    let c = changes(&|name, t| {
        if name == "services.toml" {
            t.replace("websocket = true, waf = \"block\"", "websocket = true, waf = \"detect\", max_body = \"8m\"")
        } else {
            t
        }
    });
    let text = lines(&c);
    assert!(text.contains("[relaxes security] exposure changed: https://lab.example.org/ → web"), "{text}");
    assert!(text.contains("max_body: 1m → 8m"), "{text}");
    assert!(text.contains("waf: block → detect"), "{text}");
}

#[test]
fn list_fields_read_as_items_added_and_removed() {
    let c = changes(&|name, t| {
        if name == "services.toml" {
            t.replace("secrets = [\"db_password\"]", "secrets = [\"db_password\", \"session_key\"]")
                .replace("tmpfs = [\"/tmp\"]", "tmpfs = [\"/run\"]")
        } else {
            t
        }
    });
    let text = lines(&c);
    assert!(text.contains("secrets: +session_key"), "{text}");
    assert!(text.contains("tmpfs: +/run, -/tmp"), "{text}");
    assert!(!text.contains("db_password, session_key"), "a list edit must not print both whole lists:\n{text}");
}

#[test]
fn a_primary_change_names_the_postgres_key() {
    let c = changes(&|name, t| {
        if name == "services.toml" { t.replace("primary = \"db1\"", "primary = \"db2\"") } else { t }
    });
    let text = lines(&c);
    assert!(text.contains("service changed: db (primary: db1 → db2)"), "{text}");
}

#[test]
fn a_path_change_is_one_changed_exposure() {
    let c = changes(&|name, t| {
        if name == "services.toml" { t.replace("path = \"/\", websocket", "path = \"/app/\", websocket") } else { t }
    });
    let text = lines(&c);
    assert!(text.contains("exposure changed: https://lab.example.org/app/ → web (path: / → /app/)"), "{text}");
    assert!(!text.contains("exposure added") && !text.contains("exposure removed"), "{text}");
}
