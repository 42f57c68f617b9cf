//! `medianest diff` and `medianest check --committed`: the review workflow over git.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};

use super::{Compiled, Paths, analyze_files, compile};
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

/// The repository-relative name of a directory, for git lookups; `command` is named in
/// the error when the directory is outside the repository root.
fn rel(paths: &Paths, dir: &std::path::Path, command: &str) -> Result<String> {
    let shown = paths.display(dir);
    let outside = std::path::Path::new(&shown).is_absolute()
        || std::path::Path::new(&shown).components().next() == Some(std::path::Component::ParentDir);
    if outside {
        anyhow::bail!("`{shown}` is outside the repository root; `{command}` reads it from git and needs it inside");
    }
    Ok(shown)
}

/// The repository `command` works on; outside one, a plain sentence that says so.
pub fn open_repo(paths: &Paths, command: &str) -> Result<git::Repo> {
    git::Repo::discover(&paths.root).map_err(|e| match e.downcast::<git::NotARepo>() {
        Ok(n) => anyhow!("`{command}` needs a git repository: `{}` is not inside one", n.0.display()),
        Err(e) => e,
    })
}

/// Compiles the working site and compares it with `base`. `None` when the site has errors
/// (the diagnostics are in the returned [`Compiled`]).
pub fn diff(paths: &Paths, base: &Base) -> Result<(Compiled, Option<Review>)> {
    let compiled = compile(paths);
    if compiled.failed() {
        return Ok((compiled, None));
    }
    let site_dir = rel(paths, &paths.site, "diff")?;
    let out_dir = rel(paths, &paths.out, "diff")?;
    let mut notes = Vec::new();
    let (label, commit, base_files, base_site_files) = match base {
        Base::Rev(rev) => {
            let repo = open_repo(paths, "diff")?;
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
            let toml: Vec<(String, Vec<u8>)> = files
                .into_iter()
                .filter(|(p, _)| p.ends_with(".toml") || crate::load::is_secret_path(p) || crate::load::is_adr(p))
                .collect();
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

/// The model changes, with the facts each family adds.
fn semantic_changes(base: &Site, head: &Site) -> Vec<semantic::Change> {
    semantic::compare(base, head, &crate::families::facts)
}

/// What `check --committed` found not committed.
#[derive(Debug, Clone)]
pub struct Uncommitted {
    /// The directories that must be committed together, as shown: the site, the
    /// templates (when they are inside the repository and have changes) and the output.
    pub dirs: Vec<String>,
    /// Files under them that differ from `HEAD`, sorted by path.
    pub files: Vec<git::Dirty>,
}

impl Uncommitted {
    /// The command that commits them.
    pub fn fix(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| crate::render::escape::sh(d)).collect();
        format!("git add {} && git commit", dirs.join(" "))
    }
}

/// Files under the site, template and output directories that differ from what is
/// committed at `HEAD`: the output is only reviewable, and only reaches CI and the
/// hosts, together with the site it was compiled from.
pub fn uncommitted(repo: &git::Repo, paths: &Paths) -> Result<Uncommitted> {
    const COMMAND: &str = "check --committed";
    let site = rel(paths, &paths.site, COMMAND)?;
    let out = rel(paths, &paths.out, COMMAND)?;
    let mut files = repo.dirty(&site)?;
    let mut dirs = vec![site];
    // Templates outside the repository are not the repository's business.
    if let Ok(templates) = rel(paths, &paths.templates, COMMAND)
        && paths.templates.is_dir()
    {
        let dirty = repo.dirty(&templates)?;
        if !dirty.is_empty() {
            files.extend(dirty);
            dirs.push(templates);
        }
    }
    files.extend(repo.dirty(&out)?);
    dirs.push(out);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup();
    Ok(Uncommitted { dirs, files })
}

/// The drift report of `check` with exact fixes: build, then commit the site *and* the
/// output (`git add site generated && git commit`); extra files are removed with
/// `git rm` when git tracks them and with plain `rm` otherwise (`git rm` fails on an
/// untracked file). Paths are shell-quoted.
pub fn drift_report(paths: &Paths, drift: &crate::emit::Drift, out_name: &str) -> String {
    let mut s = super::render_drift(drift, out_name);
    let sh = crate::render::escape::sh;
    let commit = format!("git add {} {} && git commit", sh(&paths.display(&paths.site)), sh(out_name));
    if !drift.changed.is_empty() || !drift.missing.is_empty() {
        s.push_str(&format!(
            "help: run `medianest build`, then `{commit}`; files under `{out_name}/` are never edited by hand\n"
        ));
    }
    if drift.extra.is_empty() {
        return s;
    }
    let repo = git::Repo::discover(&paths.root).ok();
    let (mut tracked, mut untracked, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
    for p in &drift.extra {
        let shown = format!("{out_name}/{p}");
        let word = sh(&shown);
        match repo.as_ref().map(|r| r.is_tracked(&shown)) {
            Some(Ok(true)) => tracked.push(word),
            Some(Ok(false)) => untracked.push(word),
            _ => unknown.push(word),
        }
    }
    if !untracked.is_empty() {
        s.push_str(&format!(
            "help: no build makes the extra files and git does not track them; remove them: `rm {}`\n",
            untracked.join(" ")
        ));
    }
    if !tracked.is_empty() {
        s.push_str(&format!(
            "help: no build makes the extra files, which are committed; remove them: `git rm {}`, then `git commit`\n",
            tracked.join(" ")
        ));
    }
    if !unknown.is_empty() {
        s.push_str(&format!(
            "help: no build makes the extra files; remove them: `rm {}` (`git rm` for files that are committed)\n",
            unknown.join(" ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(changed: bool, extra: &[&str]) -> crate::emit::Drift {
        crate::emit::Drift {
            changed: if changed { vec![("a".into(), b"new\n".to_vec(), b"old\n".to_vec())] } else { vec![] },
            missing: vec![],
            extra: extra.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_report_lists_the_files_then_gives_exact_fixes() {
        for d in [drift(true, &[]), drift(false, &["x"]), drift(true, &["x"])] {
            let listing = super::super::render_drift(&d, "generated");
            assert!(!listing.contains("help:"), "the listing carries no fix of its own:\n{listing}");
            let report = drift_report(&Paths::under(std::path::Path::new("/nonexistent")), &d, "generated");
            assert!(!report.contains("are removed with `git rm`"), "{report}");
            assert!(report.starts_with(&listing), "{report}");
            assert!(report.contains("\nhelp: "), "{report}");
        }
    }

    #[test]
    fn the_fix_commits_the_site_and_the_output() {
        let report = drift_report(&Paths::under(std::path::Path::new("/nonexistent")), &drift(true, &[]), "generated");
        assert!(
            report.ends_with(
                "\nhelp: run `medianest build`, then `git add site generated && git commit`; files under `generated/` are never edited by hand\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn without_git_the_extra_fix_names_both_commands() {
        let dir = tempfile::tempdir().unwrap();
        let report = drift_report(&Paths::under(dir.path()), &drift(false, &["a b.txt"]), "generated");
        assert!(
            report.ends_with(
                "help: no build makes the extra files; remove them: `rm 'generated/a b.txt'` (`git rm` for files that are committed)\n"
            ),
            "{report}"
        );
        assert!(!report.contains("medianest build"), "building does not remove extra files: {report}");
    }
}
