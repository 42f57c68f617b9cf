//! Review: what a change does to the rendered infrastructure, for `medianest diff`.
//!
//! A [`Review`] compares a base (the `generated/` tree and resolved site at a git
//! revision, or the working `generated/`) with the head (the working site compiled in
//! memory). It holds the file changes grouped by host and family, the units each host
//! will reload or restart, the semantic changes from the two models ([`semantic`]), and
//! notes on anything unusual (no `generated/` at the base, an older layout). [`format`]
//! prints it as text, Markdown for a pull-request comment, or JSON.

pub mod format;
pub mod semantic;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::artifact::{ArtifactSet, HostPlan, MANIFEST, Manifest, manifest_bytes};

/// Version of the JSON output.
pub const FORMAT: u32 = 1;

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileChangeKind {
    /// New in head.
    Added,
    /// Gone in head.
    Removed,
    /// Different bytes.
    Changed,
}

impl FileChangeKind {
    /// One-letter marker, as in `git diff --name-status`.
    pub fn letter(self) -> char {
        match self {
            FileChangeKind::Added => 'A',
            FileChangeKind::Removed => 'D',
            FileChangeKind::Changed => 'M',
        }
    }
}

/// One changed file under `generated/`.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    /// Path under `generated/`.
    pub path: String,
    /// Added, removed or changed.
    pub change: FileChangeKind,
    /// Host whose tree it is in.
    pub host: Option<String>,
    /// Artifact family.
    pub family: String,
    /// Lines added and removed.
    pub added_lines: usize,
    /// Lines removed.
    pub removed_lines: usize,
    /// Unified diff (empty for binary files).
    #[serde(skip)]
    pub diff: String,
}

/// What one host sees.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostSummary {
    /// Files added.
    pub added: usize,
    /// Files changed.
    pub changed: usize,
    /// Files removed.
    pub removed: usize,
    /// Changed files per family.
    pub families: BTreeMap<String, usize>,
    /// Units the host reloads when it applies the change.
    pub reload: Vec<String>,
    /// Units the host restarts when it applies the change.
    pub restart: Vec<String>,
    /// The host's whole tree (`generated/hosts/<host>/`) is gone: the host left the site.
    /// In JSON only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tree_removed: bool,
}

impl HostSummary {
    /// Counts one changed file of this host.
    pub fn count(&mut self, f: &FileChange) {
        match f.change {
            FileChangeKind::Added => self.added += 1,
            FileChangeKind::Removed => self.removed += 1,
            FileChangeKind::Changed => self.changed += 1,
        }
        *self.families.entry(f.family.clone()).or_default() += 1;
    }
}

/// Everything `diff` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// Format version of the JSON output.
    pub format: u32,
    /// What the head is compared with (`HEAD`, `main`, `working tree`).
    pub base: String,
    /// The base commit, short, when it is a revision.
    pub base_commit: Option<String>,
    /// Per host (and `""` for files no host applies), sorted.
    pub hosts: BTreeMap<String, HostSummary>,
    /// Semantic changes from the site models.
    pub semantic: Vec<semantic::Change>,
    /// Changed files, sorted by path.
    pub files: Vec<FileChange>,
    /// Anything the reviewer should know about the comparison itself.
    pub notes: Vec<String>,
}

impl Review {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.semantic.is_empty()
    }
}

/// The family and host of a path in the base tree, from its manifest when it has one.
fn base_meta(base_manifest: &Option<Manifest>, path: &str) -> (Option<String>, String) {
    if let Some(m) = base_manifest
        && let Some(e) = m.files.iter().find(|e| e.path == path)
    {
        return (e.host.clone(), e.family.clone());
    }
    let host = path.strip_prefix("hosts/").and_then(|p| p.split('/').next()).map(str::to_string);
    let family = if path == MANIFEST { "manifest".into() } else { "unknown".into() };
    (host, family)
}

/// Compares the head artifacts with the base files (paths relative to `generated/`).
pub fn compare_files(
    base: &BTreeMap<String, Vec<u8>>,
    head: &ArtifactSet,
) -> (Vec<FileChange>, BTreeMap<String, HostSummary>, Vec<String>) {
    let base_manifest: Option<Manifest> = base.get(MANIFEST).and_then(|b| serde_json::from_slice(b).ok());
    let mut notes = Vec::new();
    if base.contains_key(MANIFEST) && base_manifest.is_none() {
        notes.push("the base `manifest.json` is unreadable (an older format?); families of removed files are guessed from their paths".into());
    }
    let manifest = manifest_bytes(head);
    let mut head_files: BTreeMap<&str, (&[u8], Option<String>, String)> = head
        .values()
        .map(|a| (a.meta.path.as_str(), (a.bytes.as_slice(), a.meta.host.clone(), a.meta.family.to_string())))
        .collect();
    head_files.insert(MANIFEST, (&manifest, None, "manifest".into()));

    let mut files = Vec::new();
    let paths: BTreeSet<&str> = head_files.keys().copied().chain(base.keys().map(String::as_str)).collect();
    for path in paths {
        let old = base.get(path).map(Vec::as_slice);
        let new = head_files.get(path);
        let (change, host, family) = match (old, new) {
            (None, Some((_, h, f))) => (FileChangeKind::Added, h.clone(), f.clone()),
            (Some(_), None) => {
                let (h, f) = base_meta(&base_manifest, path);
                (FileChangeKind::Removed, h, f)
            }
            (Some(o), Some((n, h, f))) if o != *n => (FileChangeKind::Changed, h.clone(), f.clone()),
            _ => continue,
        };
        let (a, b) = (old.unwrap_or(b""), new.map(|n| n.0).unwrap_or(b""));
        let (diff, added_lines, removed_lines) = match (std::str::from_utf8(a), std::str::from_utf8(b)) {
            (Ok(a), Ok(b)) => {
                let td = similar::TextDiff::configure().timeout(std::time::Duration::from_secs(2)).diff_lines(a, b);
                let (mut plus, mut minus) = (0, 0);
                for op in td.iter_all_changes() {
                    match op.tag() {
                        similar::ChangeTag::Insert => plus += 1,
                        similar::ChangeTag::Delete => minus += 1,
                        similar::ChangeTag::Equal => {}
                    }
                }
                let old_name = if change == FileChangeKind::Added {
                    "/dev/null".to_string()
                } else {
                    format!("a/generated/{path}")
                };
                let new_name = if change == FileChangeKind::Removed {
                    "/dev/null".to_string()
                } else {
                    format!("b/generated/{path}")
                };
                (td.unified_diff().context_radius(3).header(&old_name, &new_name).to_string(), plus, minus)
            }
            _ => (String::new(), 0, 0),
        };
        files.push(FileChange { path: path.to_string(), change, host, family, added_lines, removed_lines, diff });
    }

    // Reloads and restarts: the head plan's actions for files that changed or were added.
    let plans: BTreeMap<String, HostPlan> = head
        .values()
        .filter(|a| a.meta.family == "plan")
        .filter_map(|a| Some((a.meta.host.clone()?, serde_json::from_slice(&a.bytes).ok()?)))
        .collect();
    let mut hosts: BTreeMap<String, HostSummary> = BTreeMap::new();
    for f in &files {
        let h = hosts.entry(f.host.clone().unwrap_or_default()).or_default();
        h.count(f);
        if let (Some(host), Some(plan)) = (&f.host, f.host.as_ref().and_then(|x| plans.get(x))) {
            let source = f.path.trim_start_matches(&format!("hosts/{host}/")).to_string();
            if let Some(entry) = plan.files.iter().find(|p| p.source == source) {
                h.reload.extend(entry.actions.reload.clone());
                h.restart.extend(entry.actions.restart.clone());
            }
        }
    }
    // A host whose tree was in the base and has no file in the head left the site.
    let head_hosts: BTreeSet<&str> = head.values().filter_map(|a| a.meta.host.as_deref()).collect();
    let base_hosts: BTreeSet<&str> =
        base.keys().filter_map(|p| p.strip_prefix("hosts/").and_then(|p| p.split('/').next())).collect();
    for (name, h) in hosts.iter_mut() {
        h.tree_removed = base_hosts.contains(name.as_str()) && !head_hosts.contains(name.as_str());
    }
    for h in hosts.values_mut() {
        h.reload.sort();
        h.reload.dedup();
        h.restart.sort();
        h.restart.dedup();
    }
    if !base.is_empty() && files.iter().any(|f| f.change == FileChangeKind::Removed && f.family == "unknown") {
        notes.push("the base `generated/` holds files this version does not make (an older layout?); they are listed as removed".into());
    }
    (files, hosts, notes)
}
