//! Golden trees: `golden/<case>/` lays `site/` and `templates/` over the base fixture
//! site; `medianest build` must produce exactly `golden/<case>/expected/` (no missing,
//! no extra, no changed file). Bless with `MEDIANEST_BLESS=1 cargo test golden`, then
//! review the diff like code.

use crate::support::*;

#[test]
fn fixture_sites_build_to_their_expected_trees() {
    let root = suite("golden");
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let repo = Repo::with_overlay(case);
        let out = repo.run(&["build"]);
        if !out.status.success() {
            failures.push(format!("{name}: build failed:\n{}", stderr(&out)));
            continue;
        }
        let problems = compare_tree(&repo.generated(), &case.join("expected"));
        if !problems.is_empty() {
            failures.push(format!("{name}:\n{}", problems.join("\n")));
        }
    }
    assert!(failures.is_empty(), "bless with MEDIANEST_BLESS=1 after review:\n{}", failures.join("\n\n"));
}

#[test]
fn a_site_template_overrides_the_builtin_one() {
    let repo = Repo::base();
    repo.write(
        "templates/base/hosts.j2",
        "# custom {{ host.fqdn }}\n{% for e in entries %}{{ e.address }} {{ e.name }}\n{% endfor %}",
    );
    let out = repo.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts = std::fs::read_to_string(repo.path().join("generated/hosts/app1/root/etc/hosts")).unwrap();
    assert!(hosts.starts_with("# custom app1.lab.lan\n"), "{hosts}");
}

#[test]
fn a_broken_override_is_reported_at_its_line() {
    let repo = Repo::base();
    repo.write("templates/base/hosts.j2", "line one\n{% for e in entries %}\n{{ e.nope }}\n{% endfor %}\n");
    let out = repo.run(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error[template-error]"), "{err}");
    assert!(err.contains("templates/base/hosts.j2:3:"), "{err}");
    assert!(!repo.path().join("generated").exists());

    let repo = Repo::base();
    repo.write("templates/docs/inventory.md.j2", "{% if %}\n");
    let out = repo.run(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("templates/docs/inventory.md.j2:1:"), "{err}");
}
