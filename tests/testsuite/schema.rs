//! The site-key reference is generated from the schema (`medianest schema`), and the
//! committed `SITE-REFERENCE.md` is exactly that output.

use crate::support::*;

#[test]
fn committed_site_reference_is_what_the_schema_generates() {
    let out = medianest(&repo_root(), &["schema"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = stdout(&out);
    let path = repo_root().join("SITE-REFERENCE.md");
    if blessing() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "SITE-REFERENCE.md is stale: run `cargo run -- schema > SITE-REFERENCE.md` and commit it"
    );
    // Every key the loader accepts is documented, family keys included.
    for key in ["vlan", "expose", "waf", "rate_limit", "vip", "primary", "signers", "verify_restore"] {
        assert!(generated.contains(&format!("| `{key}` |")), "`{key}` is missing from the reference");
    }
}
