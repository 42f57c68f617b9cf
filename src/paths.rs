//! Where a run reads its inputs and writes its output. Its own module because both the
//! operations ([`crate::ops`]) and the fingerprint ([`crate::fingerprint`]) that they
//! consult need it, and neither should import the other for it.

use std::path::{Path, PathBuf};

/// Where the inputs and the output are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Repository root; other paths are shown relative to it.
    pub root: PathBuf,
    /// The site directory (`site/`).
    pub site: PathBuf,
    /// Template overrides (`templates/`).
    pub templates: PathBuf,
    /// The output directory (`generated/`).
    pub out: PathBuf,
}

impl Paths {
    /// The default layout under `root`.
    pub fn under(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            site: root.join("site"),
            templates: root.join("templates"),
            out: root.join("generated"),
        }
    }

    /// How a path is shown in messages: relative to the root when under it.
    pub fn display(&self, p: &Path) -> String {
        let shown = p.strip_prefix(&self.root).unwrap_or(p).to_string_lossy().replace('\\', "/");
        if shown.is_empty() { ".".into() } else { shown }
    }
}
