//! The render jobs of a site as data, for the Jinja2 benchmark peer (`scripts/bench/`).
//!
//! Behind the hidden `medianest dump-contexts` command: one JSON object per line with
//! the template name, the output path and the exact context the template is rendered
//! with. Not a stable interface; it exists so that another template engine can render
//! the same templates with the same data and be compared byte for byte and in time.

use std::io::Write;

use anyhow::{Context as _, Result};

use super::{Analysis, Paths, analyze};
use crate::{families, load};

/// Loads, resolves, verifies and lowers the site, and writes one line per render job to
/// `out`: `{"template": …, "path": …, "context": …}`. Writes nothing when the site has
/// errors (they are in the returned analysis). Returns the number of jobs written.
pub fn dump_contexts(paths: &Paths, out: &mut dyn Write) -> Result<(Analysis, usize)> {
    let mut sources = crate::diag::SourceMap::default();
    let mut diags = crate::diag::Diagnostics::default();
    let display = paths.display(&paths.site);
    let raw = load::load_site(&paths.site, &display, &crate::families::key_sets(), &mut sources, &mut diags);
    let analysis = analyze(raw, &display, sources, diags);
    if analysis.diags.has_errors() {
        return Ok((analysis, 0));
    }
    let jobs = families::lower(&analysis.site, families::provenance::Depth::Files);
    for job in &jobs {
        let line = serde_json::json!({
            "template": job.template,
            "path": job.meta.path,
            "context": job.context,
        });
        serde_json::to_writer(&mut *out, &line).context("failed to write the contexts")?;
        out.write_all(b"\n").context("failed to write the contexts")?;
    }
    out.flush().context("failed to write the contexts")?;
    Ok((analysis, jobs.len()))
}
