//! Reading the repository with git2: trees at a revision (no checkout, no temp clone)
//! and the status of the working tree. Used by `diff` and `check --committed`; the
//! renderer never depends on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use git2::{ObjectType, Repository, StatusOptions, TreeWalkMode, TreeWalkResult};

/// The root is not inside a git repository. Callers say which command needed one.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is not inside a git repository", .0.display())]
pub struct NotARepo(pub PathBuf);

/// A git2 error as one plain sentence: its message, without libgit2's class and code
/// (`; class=Repository (6); code=NotFound (-3)`), which mean nothing to a user.
fn plain(e: git2::Error) -> anyhow::Error {
    anyhow!("{}", e.message())
}

/// A repository and where the medianest root sits inside its work tree.
pub struct Repo {
    repo: Repository,
    /// The medianest root relative to the work tree (`""` when they are the same).
    prefix: String,
}

/// A file in the working tree that differs from `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Path relative to the medianest root.
    pub path: String,
    /// `modified`, `added`, `deleted`, `untracked`, `renamed` or `typechange`.
    pub state: &'static str,
}

impl Repo {
    /// Opens the repository that contains `root`.
    pub fn discover(root: &Path) -> Result<Repo> {
        let repo = match Repository::discover(root) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                let shown = root.canonicalize().or_else(|_| std::path::absolute(root)).unwrap_or(root.to_path_buf());
                return Err(NotARepo(shown).into());
            }
            Err(e) => {
                return Err(plain(e)).with_context(|| format!("failed to open the repository of `{}`", root.display()));
            }
        };
        let workdir: PathBuf =
            repo.workdir().context("the repository is bare; medianest needs a work tree")?.to_path_buf();
        let root = root.canonicalize().with_context(|| format!("failed to resolve `{}`", root.display()))?;
        let workdir = workdir.canonicalize().with_context(|| format!("failed to resolve `{}`", workdir.display()))?;
        let prefix = root
            .strip_prefix(&workdir)
            .with_context(|| format!("`{}` is outside the work tree `{}`", root.display(), workdir.display()))?
            .to_string_lossy()
            .replace('\\', "/");
        Ok(Repo { repo, prefix })
    }

    fn full(&self, rel: &str) -> String {
        if self.prefix.is_empty() { rel.to_string() } else { format!("{}/{rel}", self.prefix) }
    }

    /// The commit a revision names, as a short id, and its full id.
    pub fn resolve(&self, rev: &str) -> Result<(String, String)> {
        let obj = self.repo.revparse_single(rev).map_err(plain).with_context(|| format!("unknown revision `{rev}`"))?;
        let commit = obj.peel_to_commit().map_err(plain).with_context(|| format!("`{rev}` does not name a commit"))?;
        let id = commit.id().to_string();
        Ok((id[..12.min(id.len())].to_string(), id))
    }

    /// Every file under `dir` (relative to the medianest root) in the tree of `rev`, by
    /// path relative to `dir`; `None` when `dir` does not exist in that tree.
    pub fn files_at(&self, rev: &str, dir: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        let obj = self.repo.revparse_single(rev).map_err(plain).with_context(|| format!("unknown revision `{rev}`"))?;
        let tree = obj.peel_to_tree().map_err(plain).with_context(|| format!("`{rev}` has no tree"))?;
        let full = self.full(dir);
        let entry = match tree.get_path(Path::new(&full)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(plain(e)).with_context(|| format!("failed to look up `{full}` at `{rev}`")),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            bail!("`{full}` at `{rev}` is not a directory");
        }
        let sub = entry.to_object(&self.repo).and_then(|o| o.peel_to_tree()).map_err(plain)?;
        let mut out = BTreeMap::new();
        let mut failure: Option<anyhow::Error> = None;
        sub.walk(TreeWalkMode::PreOrder, |parent, e| {
            if e.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            let Ok(name) = e.name() else { return TreeWalkResult::Ok };
            let path = format!("{parent}{name}");
            match self.repo.find_blob(e.id()) {
                Ok(blob) => {
                    out.insert(path, blob.content().to_vec());
                    TreeWalkResult::Ok
                }
                Err(err) => {
                    failure = Some(plain(err).context(format!("failed to read `{full}/{path}` at `{rev}`")));
                    TreeWalkResult::Abort
                }
            }
        })
        .or_else(|e| if failure.is_some() { Ok(()) } else { Err(plain(e)) })?;
        if let Some(f) = failure {
            return Err(f);
        }
        Ok(Some(out))
    }

    /// Files under `dir` (relative to the medianest root) that differ from `HEAD` in the
    /// index or the work tree, untracked files included, sorted by path.
    pub fn dirty(&self, dir: &str) -> Result<Vec<Dirty>> {
        let mut opts = StatusOptions::new();
        opts.pathspec(self.full(dir)).include_untracked(true).recurse_untracked_dirs(true).include_ignored(false);
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(plain).context("failed to read the git status")?;
        let scope = if dir == "." { self.prefix.clone() } else { self.full(dir) };
        let mut out = Vec::new();
        for s in statuses.iter() {
            let st = s.status();
            let state = if st.is_wt_new() {
                "untracked"
            } else if st.is_index_new() {
                "added"
            } else if st.is_wt_deleted() || st.is_index_deleted() {
                "deleted"
            } else if st.is_wt_renamed() || st.is_index_renamed() {
                "renamed"
            } else if st.is_wt_typechange() || st.is_index_typechange() {
                "typechange"
            } else if st.is_wt_modified() || st.is_index_modified() {
                "modified"
            } else {
                continue;
            };
            let path = s.path().unwrap_or("<non-UTF-8 path>");
            // The pathspec `site` also matches `site-drafts/…` in some libgit2 versions.
            if !scope.is_empty() && path != scope && !path.starts_with(&format!("{scope}/")) {
                continue;
            }
            let rel = path.strip_prefix(&format!("{}/", self.prefix)).unwrap_or(path).to_string();
            out.push(Dirty { path: rel, state });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Whether `path` (relative to the medianest root) is in the index, i.e. `git rm`
    /// can remove it.
    pub fn is_tracked(&self, path: &str) -> Result<bool> {
        let index = self.repo.index().map_err(plain).context("failed to read the git index")?;
        Ok(index.get_path(Path::new(&self.full(path)), 0).is_some())
    }
}
