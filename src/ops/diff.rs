//! `medianest diff` and `medianest check --committed`: the review workflow over git.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{Compiled, Paths, analyze_files, compile};
use crate::families::FAMILIES;
use crate::git;
use crate::model::Site;
use crate::review::{self, Review, semantic};

/// What the working site is compared with.
#[derive(Debug, Clone)]
pub enum Base {
    /// The `site/` and `generated/` trees at a git revision.
    Rev(String),
    /// The working `generated/` (and, for the semantic summary, the site at `HEAD`).
    Worktree,
}

/// The repository-relative name of a directory, for git lookups.
fn rel(paths: &Paths, dir: &std::path::Path) -> Result<String> {
    let shown = paths.display(dir);
    if dir.is_absolute() && !dir.starts_with(&paths.root) && std::path::Path::new(&shown).is_absolute() {
        anyhow::bail!("`{shown}` is outside the repository root; `diff` reads it from git and needs it inside");
    }
    Ok(shown)
}

/// Compiles the working site and compares it with `base`. `None` when the site has errors
/// (the diagnostics are in the returned [`Compiled`]).
pub fn diff(paths: &Paths, base: &Base) -> Result<(Compiled, Option<Review>)> {
    let compiled = compile(paths);
    if compiled.failed() {
        return Ok((compiled, None));
    }
    let site_dir = rel(paths, &paths.site)?;
    let out_dir = rel(paths, &paths.out)?;
    let mut notes = Vec::new();
    let (label, commit, base_files, base_site_files) = match base {
        Base::Rev(rev) => {
            let repo = git::Repo::discover(&paths.root)?;
            let (short, _) = repo.resolve(rev)?;
            let generated = repo.files_at(rev, &out_dir)?;
            if generated.is_none() {
                notes.push(format!("`{out_dir}/` does not exist at `{rev}` (first build?): every file is new"));
            }
            (rev.clone(), Some(short), generated.unwrap_or_default(), repo.files_at(rev, &site_dir)?)
        }
        Base::Worktree => {
            let mut files = BTreeMap::new();
            for p in crate::emit::list_tree(&paths.out)? {
                let full = paths.out.join(&p);
                files.insert(p, std::fs::read(&full).with_context(|| format!("failed to read `{}`", full.display()))?);
            }
            let head_site =
                git::Repo::discover(&paths.root).ok().and_then(|r| r.files_at("HEAD", &site_dir).ok().flatten());
            if head_site.is_none() {
                notes.push("no committed site to compare the model with; the semantic summary is empty".into());
            }
            ("the working tree".to_string(), None, files, head_site)
        }
    };
    let semantic = match base_site_files {
        Some(files) => {
            let toml: Vec<(String, Vec<u8>)> = files.into_iter().filter(|(p, _)| p.ends_with(".toml")).collect();
            let analysis = analyze_files(toml, &format!("{label}:{site_dir}"));
            if analysis.diags.has_errors() {
                notes.push(format!(
                    "the site at {label} has {} error(s) with this version of medianest, so its model cannot be compared; only files are",
                    // As many as `build` would show: identical ones are printed once.
                    analysis
                        .diags
                        .sorted(&analysis.sources)
                        .iter()
                        .filter(|d| d.severity == crate::diag::Severity::Error)
                        .count()
                ));
                Vec::new()
            } else {
                semantic_changes(&analysis.site, &compiled.site)
            }
        }
        None if matches!(base, Base::Rev(_)) => {
            notes.push(format!("`{site_dir}/` does not exist at `{label}`: every entity is new"));
            semantic_changes(&Site::default(), &compiled.site)
        }
        None => Vec::new(),
    };
    let (files, hosts, mut file_notes) = review::compare_files(&base_files, &compiled.artifacts);
    notes.append(&mut file_notes);
    let review = Review { format: review::FORMAT, base: label, base_commit: commit, hosts, semantic, files, notes };
    Ok((compiled, Some(review)))
}

/// The model changes, plus whatever each family adds.
fn semantic_changes(base: &Site, head: &Site) -> Vec<semantic::Change> {
    let mut out = semantic::compare(base, head);
    for f in FAMILIES {
        out.extend(f.review(base, head));
    }
    out
}

/// Files under the output directory that differ from what is committed at `HEAD`.
pub fn uncommitted(paths: &Paths) -> Result<Vec<git::Dirty>> {
    let out_dir = rel(paths, &paths.out)?;
    git::Repo::discover(&paths.root)?.dirty(&out_dir)
}
