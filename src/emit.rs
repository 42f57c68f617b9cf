//! Stage 6, **emit**: an [`ArtifactSet`] → the `generated/` tree, or a comparison with it.
//!
//! `write_tree` writes only files whose bytes changed (temp file + rename, so a reader
//! never sees half a file, and mtimes of unchanged files stay put), removes files that
//! the previous build listed in its manifest but this build no longer makes, and never
//! touches a path outside the output directory: artifact paths are checked relative
//! paths, and symlinks inside the output tree are refused rather than followed.
//! `compare` is the same tree in memory against the disk, for `check`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use rayon::prelude::*;

use crate::artifact::{Artifact, ArtifactSet, MANIFEST, Manifest, check_rel_path, manifest_bytes};

/// What a write did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// Files created or rewritten.
    pub written: Vec<String>,
    /// Files left as they were.
    pub unchanged: usize,
    /// Stale files removed.
    pub removed: Vec<String>,
    /// Files in the tree that no build made (left alone).
    pub unknown: Vec<String>,
}

/// Writes `set` (and its manifest) under `out`.
pub fn write_tree(set: &ArtifactSet, out: &Path) -> Result<WriteReport> {
    let mut report = WriteReport::default();
    refuse_symlink(out)?;
    fs::create_dir_all(out).with_context(|| format!("failed to create `{}`", out.display()))?;
    let previous = read_manifest(out);

    // (path, bytes, mode in the tree): scripts keep their executable bit (and git sees it).
    let mut files: Vec<(&str, &[u8], u32)> =
        set.values().map(|a| (a.meta.path.as_str(), a.bytes.as_slice(), tree_mode(a))).collect();
    let manifest = manifest_bytes(set);
    files.push((MANIFEST, &manifest, 0o644));
    for (rel, _, _) in &files {
        check_rel_path(rel).map_err(anyhow::Error::msg)?;
    }
    create_dirs(out, files.iter().map(|(rel, _, _)| *rel))?;
    // Files are independent once their directories exist: write them on every core, so
    // the filesystem's per-file cost (most of a cold build of a large site) overlaps.
    let wrote: Vec<Result<bool>> =
        files.par_iter().map(|(rel, bytes, mode)| write_if_changed(&out.join(rel), bytes, *mode)).collect();
    for ((rel, _, _), wrote) in files.iter().zip(wrote) {
        if wrote? {
            report.written.push(rel.to_string());
        } else {
            report.unchanged += 1;
        }
    }

    let now: BTreeSet<&str> = files.iter().map(|(p, _, _)| *p).collect();
    if let Some(prev) = previous {
        for entry in prev.files {
            if now.contains(entry.path.as_str()) || check_rel_path(&entry.path).is_err() {
                continue;
            }
            let path = out.join(&entry.path);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => {
                    fs::remove_file(&path).with_context(|| format!("failed to remove stale `{}`", path.display()))?;
                    report.removed.push(entry.path.clone());
                    remove_empty_parents(out, &path);
                }
                _ => {}
            }
        }
    }
    for rel in list_tree(out)? {
        if !now.contains(rel.as_str()) {
            report.unknown.push(rel);
        }
    }
    Ok(report)
}

/// The mode an artifact has in the output tree: 0755 for scripts the repository runs
/// (executable and not installed by a host plan, which sets modes itself), else 0644.
pub fn tree_mode(a: &Artifact) -> u32 {
    if a.meta.apply.is_none() && a.meta.mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// Creates every directory that holds one of `files` (relative paths under `root`), each
/// once, parents before children, refusing symlinked or non-directory components.
fn create_dirs<'a>(root: &Path, files: impl Iterator<Item = &'a str>) -> Result<()> {
    let dirs = parent_dirs(files);
    // Level by level, parents before children; the directories of one level are created
    // on every core (on ext4, creating a directory costs more CPU than writing a file).
    let mut levels: Vec<Vec<&str>> = Vec::new();
    for dir in dirs {
        let depth = dir.matches('/').count();
        if levels.len() <= depth {
            levels.resize_with(depth + 1, Vec::new);
        }
        levels[depth].push(dir);
    }
    for level in levels {
        level.par_iter().try_for_each(|dir| create_dir(&root.join(dir)))?;
    }
    Ok(())
}

/// Every directory that holds one of `files` (relative, `/`-separated paths), with its
/// ancestors, sorted (so a parent comes before its children); not the root itself.
pub fn parent_dirs<'a>(files: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut dirs = BTreeSet::new();
    for rel in files {
        let mut p = rel;
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            // Present already: so are its parents.
            if !dirs.insert(p) {
                break;
            }
        }
    }
    dirs
}

/// Creates the directory `path` unless it is one already; refuses a symlink or a file.
fn create_dir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!("`{}` is a symlink; refusing to write through it", path.display())
            }
            Ok(m) if !m.is_dir() => bail!("`{}` is in the way of a generated directory", path.display()),
            Ok(_) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to stat `{}`", path.display())),
        },
        Err(e) => Err(e).with_context(|| format!("failed to create `{}`", path.display())),
    }
}

/// Reads the manifest of a previous build, if there is a readable one.
pub fn read_manifest(out: &Path) -> Option<Manifest> {
    let bytes = fs::read(out.join(MANIFEST)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn refuse_symlink(path: &Path) -> Result<()> {
    if let Ok(m) = fs::symlink_metadata(path)
        && m.file_type().is_symlink()
    {
        bail!("`{}` is a symlink; medianest writes only into a real directory", path.display());
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode` unless it already holds exactly them (then only
/// a wrong mode is fixed). Returns whether it changed anything. A new file is written
/// to a temporary file and renamed, so a reader never sees half of it.
pub fn write_if_changed(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => bail!("`{}` is a symlink; refusing to write through it", path.display()),
        Ok(m) if m.is_file() && m.len() == bytes.len() as u64 => {
            let old = fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
            if old == bytes {
                if m.permissions().mode() & 0o777 == mode {
                    return Ok(false);
                }
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .with_context(|| format!("failed to set the mode of `{}`", path.display()))?;
                return Ok(true);
            }
        }
        _ => {}
    }
    let dir = path.parent().context("a file always has a parent")?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".medianest-")
        .tempfile_in(dir)
        .with_context(|| format!("failed to create a temporary file in `{}`", dir.display()))?;
    // Set explicitly rather than at creation, where the umask would apply.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of `{}`", path.display()))?;
    tmp.write_all(bytes).with_context(|| format!("failed to write `{}`", path.display()))?;
    tmp.persist(path).with_context(|| format!("failed to replace `{}`", path.display()))?;
    Ok(true)
}

fn remove_empty_parents(root: &Path, path: &Path) {
    let mut cur = path.parent();
    while let Some(dir) = cur {
        if dir == root || !dir.starts_with(root) || fs::remove_dir(dir).is_err() {
            break;
        }
        cur = dir.parent();
    }
}

/// Every file under `root`, as sorted `/`-separated relative paths. Symlinks are listed
/// as files (so `check` reports them), never followed.
pub fn list_tree(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    for entry in walkdir::WalkDir::new(root).sort_by_file_name().follow_links(false) {
        let entry = entry.with_context(|| format!("failed to walk `{}`", root.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        out.push(rel.to_string_lossy().replace('\\', "/"));
    }
    Ok(out)
}

/// How the tree on disk differs from a build.
#[derive(Debug, Default)]
pub struct Drift {
    /// Files whose bytes differ: `(path, expected, on disk)`.
    pub changed: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Files the build makes that are not on disk.
    pub missing: Vec<String>,
    /// Files on disk that the build does not make.
    pub extra: Vec<String>,
}

impl Drift {
    /// Whether the tree matches.
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

/// Compares `set` (plus its manifest) with the tree under `out`.
pub fn compare(set: &ArtifactSet, out: &Path) -> Result<Drift> {
    let mut expected: BTreeMap<&str, &[u8]> =
        set.values().map(|a| (a.meta.path.as_str(), a.bytes.as_slice())).collect();
    let manifest = manifest_bytes(set);
    expected.insert(MANIFEST, &manifest);
    let on_disk = list_tree(out)?;
    let mut drift = Drift::default();
    let disk_set: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    for (rel, bytes) in &expected {
        if !disk_set.contains(rel) {
            drift.missing.push(rel.to_string());
            continue;
        }
        let path: PathBuf = out.join(rel);
        let actual = match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => b"<a symlink>".to_vec(),
            _ => fs::read(&path).with_context(|| format!("failed to read `{}`", path.display()))?,
        };
        if actual != *bytes {
            drift.changed.push((rel.to_string(), bytes.to_vec(), actual));
        }
    }
    for rel in on_disk {
        if !expected.contains_key(rel.as_str()) {
            drift.extra.push(rel);
        }
    }
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{Artifact, ArtifactMeta};

    fn set(files: &[(&str, &str)]) -> ArtifactSet {
        files
            .iter()
            .map(|(p, c)| {
                (
                    p.to_string(),
                    Artifact::new(c.as_bytes().to_vec(), ArtifactMeta::shared("docs", p.to_string(), vec![])),
                )
            })
            .collect()
    }

    #[test]
    fn writes_only_changes_and_removes_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("generated");
        let r = write_tree(&set(&[("docs/a.md", "a\n"), ("docs/b.md", "b\n")]), &out).unwrap();
        assert_eq!(r.written, ["docs/a.md", "docs/b.md", "manifest.json"]);
        let r = write_tree(&set(&[("docs/a.md", "a\n"), ("docs/b.md", "b\n")]), &out).unwrap();
        assert!(r.written.is_empty());
        assert_eq!(r.unchanged, 3);
        fs::write(out.join("hand.txt"), "mine").unwrap();
        let r = write_tree(&set(&[("docs/a.md", "A\n")]), &out).unwrap();
        assert_eq!(r.written, ["docs/a.md", "manifest.json"]);
        assert_eq!(r.removed, ["docs/b.md"]);
        assert_eq!(r.unknown, ["hand.txt"]);
        assert!(out.join("hand.txt").exists(), "files no build made are left alone");
    }

    #[test]
    fn compare_finds_changed_missing_and_extra() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("generated");
        let s = set(&[("a", "1\n"), ("b", "2\n")]);
        write_tree(&s, &out).unwrap();
        assert!(compare(&s, &out).unwrap().is_clean());
        fs::write(out.join("a"), "x\n").unwrap();
        fs::remove_file(out.join("b")).unwrap();
        fs::write(out.join("c"), "3\n").unwrap();
        let d = compare(&s, &out).unwrap();
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.missing, ["b"]);
        assert_eq!(d.extra, ["c"]);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_to_write_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("generated");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("docs")).unwrap();
        assert!(write_tree(&set(&[("docs/a.md", "a\n")]), &out).is_err());
        assert!(!outside.join("a.md").exists());
    }
}
