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
