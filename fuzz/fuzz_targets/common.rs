//! The pipeline every target runs: site files in memory → load → resolve → verify →
//! lower → render, with the invariants that must hold for any input.

use std::sync::OnceLock;

use medianest::artifact::check_rel_path;
use medianest::diag::{Diagnostics, SourceMap};
use medianest::render::Templates;
use medianest::{families, ops};

fn templates() -> &'static Templates {
    static T: OnceLock<Templates> = OnceLock::new();
    T.get_or_init(|| {
        let mut sources = SourceMap::default();
        let mut diags = Diagnostics::default();
        let t = Templates::load(None, "templates", &mut sources, &mut diags);
        assert!(!diags.has_errors(), "the built-in templates compile");
        t
    })
}

/// Runs the pipeline on `(path under site/, bytes)` files. Any panic is a finding; so is
/// a site that passes every check but fails to render, or a file outside generated/.
pub fn run(files: Vec<(String, Vec<u8>)>) {
    let analysis = ops::analyze_files(files, "site");
    if analysis.diags.has_errors() {
        // Diagnostics must render whatever the input (they quote the source).
        let _ = analysis.diags.render_plain(&analysis.sources);
        return;
    }
    let jobs = families::lower(&analysis.site, families::provenance::Depth::Traces);
    let mut diags = Diagnostics::default();
    let artifacts = templates().render_all(jobs, &mut diags);
    assert!(!diags.has_errors(), "a valid site failed to render: {:?}", diags.render_plain(&analysis.sources));
    for a in &artifacts {
        assert!(check_rel_path(&a.meta.path).is_ok(), "artifact outside generated/: {:?}", a.meta.path);
        assert!(a.bytes.ends_with(b"\n"));
    }
}
