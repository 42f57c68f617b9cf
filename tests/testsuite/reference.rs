//! The MediaNest reference site in `site/` compiles, and the committed `generated/` is
//! exactly its output (what CI's `medianest check` enforces).

use crate::support::*;

#[test]
fn committed_generated_tree_is_up_to_date() {
    let out = medianest(&repo_root(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", stdout(&out), stderr(&out));
}

#[test]
fn reference_site_has_the_architecture() {
    let inventory = std::fs::read_to_string(repo_root().join("generated/docs/inventory.md")).unwrap();
    for needle in [
        "| management | 10 | 10.0.1.0/24",
        "| application | 20 | 10.0.2.0/24",
        "| database | 30 | 10.0.3.0/24",
        "| storage | 40 | 10.0.4.0/24",
        "| monitoring | 50 | 10.0.5.0/24",
        "| dmz | 60 |",
        "172.25.0.0/24",
        "172.26.0.0/24",
        "Recovery time objective (RTO): **4h**",
        "Recovery point objective (RPO): **1h**",
        "medianest-backend",
        "medianest-frontend",
    ] {
        assert!(inventory.contains(needle), "{needle:?} missing from the inventory");
    }
}

/// The README's "A minimal site" says it builds as is: it does, into the files it names.
#[test]
fn the_readme_minimal_site_builds() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("### A minimal site").expect("the README has a minimal site")..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let toml = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("site")).unwrap();
    std::fs::write(dir.path().join("site/site.toml"), toml).unwrap();
    let out = medianest(dir.path(), &["build"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tree = read_tree(&dir.path().join("generated"));
    for f in ["hosts/pve1/root/etc/hosts", "hosts/app1/root/etc/hosts", "hosts/pve1/plan.json", "docs/inventory.md"] {
        assert!(tree.contains_key(f), "{f} missing: {:?}", tree.keys().collect::<Vec<_>>());
    }
}
