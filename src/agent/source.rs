//! Getting a host's generation out of git, trusting nothing: fetch into a staging ref
//! with a byte cap and a deadline, accept only fast-forward history from the last applied
//! commit, verify the tip's SSH signature against `allowed_signers`, and read only
//! `generated/hosts/<host>/` from that one commit's tree, checking every entry and every
//! file against the manifest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use git2::{FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository, TreeWalkMode, TreeWalkResult};

use super::error::refuse;
use crate::artifact::{HostPlan, Manifest, sha256_hex};

/// The ref fetched commits land on before they are trusted.
pub const INCOMING: &str = "refs/medianest/incoming";

/// Limits on what the repository may make the agent do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes a fetch may transfer.
    pub max_bytes: usize,
    /// Time the whole fetch may take.
    pub deadline: Duration,
    /// Files in a host tree.
    pub max_files: usize,
    /// Bytes of one file.
    pub max_file_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 256 << 20, deadline: Duration::from_secs(300), max_files: 10_000, max_file_bytes: 16 << 20 }
    }
}

/// The remote answered but has no such branch (deleted, or the remote emptied). Not a
/// damaged mirror, so nothing is rebuilt, and never a reason to reuse the tip fetched
/// last time: that would report `unchanged` forever while no commit can arrive.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BranchGone(pub String);

/// The mirror's objects cannot be read (corrupt, truncated, deleted): the mirror is a
/// cache, so the caller rebuilds it from the remote and starts again, instead of
/// reporting corruption as an attack ("not signed", "rewritten") forever.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MirrorDamaged(pub String);

/// A git error while reading objects the fetch brought: the mirror is damaged.
pub fn damaged(e: git2::Error) -> anyhow::Error {
    anyhow::Error::new(MirrorDamaged(format!("the mirror cannot be read: {e}")))
}

/// Removes the mirror, whatever it is now (a directory, or a plain file in its place).
fn remove_mirror(mirror: &Path) -> Result<()> {
    let r = if mirror.is_dir() && !mirror.is_symlink() {
        std::fs::remove_dir_all(mirror)
    } else {
        std::fs::remove_file(mirror)
    };
    r.with_context(|| format!("failed to reset the mirror `{}`", mirror.display()))
}

/// Fetches `branch` of `url` into the bare mirror at `mirror`, onto [`INCOMING`]. A run
/// killed mid-fetch can leave git lock files or a damaged mirror behind: stale locks are
/// removed (the caller holds the agent's run lock, so nothing else uses the mirror), and a
/// mirror that still fails is rebuilt once from scratch.
pub fn fetch(mirror: &Path, url: &str, branch: &str, limits: Limits) -> Result<(Repository, Oid)> {
    network_timeouts(limits.deadline);
    remove_stale_locks(mirror);
    match fetch_once(mirror, url, branch, limits) {
        Ok(x) => Ok(x),
        Err(first) if mirror.symlink_metadata().is_ok() && first.downcast_ref::<BranchGone>().is_none() => {
            eprintln!(
                "{}",
                serde_json::json!({ "event": "mirror-rebuilt", "message": format!("mirror damaged, rebuilt: {first:#}") })
            );
            remove_mirror(mirror)?;
            fetch_once(mirror, url, branch, limits).map_err(|e| e.context(format!("after a first failure: {first:#}")))
        }
        Err(e) => Err(e),
    }
}

/// Bounds how long a network transport waits: a remote that never answers (a firewall
/// dropping the packets, a hung server) fails the run instead of holding the lock.
/// `--deadline` bounds them too: the progress callback that enforces it only runs when
/// data arrives, so a remote that accepts and never answers is cut by these timeouts.
fn network_timeouts(deadline: Duration) {
    let ms = |cap: u64| i32::try_from(deadline.as_millis().clamp(1, u128::from(cap))).unwrap_or(i32::MAX);
    // SAFETY: libgit2 global options; the agent runs one fetch at a time, on one thread.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(15_000));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms(60_000));
    }
}

/// Whether the repository still answers with `branch`: its refs are listed over the
/// network, nothing is downloaded and the mirror is not touched. Asked after a change
/// that could cut the host off (its firewall); the caller restores the previous files
/// when it cannot.
pub fn reachable(url: &str, branch: &str) -> Result<()> {
    network_timeouts(Limits::default().deadline);
    let mut remote = git2::Remote::create_detached(url).with_context(|| format!("bad repository URL `{url}`"))?;
    remote.connect(git2::Direction::Fetch).with_context(|| format!("`{url}` does not answer"))?;
    let want = format!("refs/heads/{branch}");
    let found = remote.list().with_context(|| format!("failed to list `{url}`"))?.iter().any(|h| h.name() == want);
    if !found {
        bail!("`{url}` answers but has no branch `{branch}`");
    }
    Ok(())
}

fn remove_stale_locks(mirror: &Path) {
    for e in walkdir::WalkDir::new(mirror).into_iter().flatten() {
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "lock") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn fetch_once(mirror: &Path, url: &str, branch: &str, limits: Limits) -> Result<(Repository, Oid)> {
    let repo = match Repository::open_bare(mirror) {
        Ok(r) => r,
        Err(_) => Repository::init_bare(mirror)
            .with_context(|| format!("failed to create the mirror `{}`", mirror.display()))?,
    };
    if !branch.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) || branch.contains("..") {
        bail!("`{branch}` is not a branch name medianest accepts");
    }
    let oid = {
        let start = Instant::now();
        let mut cb = RemoteCallbacks::new();
        let (max, deadline) = (limits.max_bytes, limits.deadline);
        cb.transfer_progress(move |p| p.received_bytes() <= max && start.elapsed() <= deadline);
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(cb);
        fo.download_tags(git2::AutotagOption::None);
        let mut remote = repo.remote_anonymous(url).with_context(|| format!("bad repository URL `{url}`"))?;
        remote.fetch(&[format!("+refs/heads/{branch}:{INCOMING}")], Some(&mut fo), None).with_context(|| {
            format!("failed to fetch `{branch}` from `{url}` (limits: {max} bytes, {}s)", deadline.as_secs())
        })?;
        // What the remote advertised in this very fetch, not what the incoming ref still
        // holds from an earlier one: a missing branch leaves that ref untouched.
        let want = format!("refs/heads/{branch}");
        let advertised = remote
            .list()
            .with_context(|| format!("failed to list `{url}`"))?
            .iter()
            .find(|h| h.name() == want)
            .map(|h| h.oid());
        let Some(oid) = advertised else {
            return Err(anyhow::Error::new(BranchGone(format!(
                "`{url}` has no branch `{branch}` (deleted, or the remote emptied): the host stays on its applied commit, and no new commit can arrive"
            ))));
        };
        if repo.refname_to_id(INCOMING).ok() != Some(oid) {
            bail!("the fetch of `{branch}` from `{url}` did not bring its tip {oid}");
        }
        oid
    };
    Ok((repo, oid))
}

/// Refuses `new` unless it is `last` or a descendant of it (no rollback, no force-push).
/// `fresh`: the mirror was built by this fetch, so the applied commit missing from it is
/// a rewritten branch; in an older mirror it may be damage, which a rebuild settles.
pub fn check_fast_forward(
    repo: &Repository,
    last: Option<Oid>,
    new: Oid,
    allow_rollback: bool,
    fresh: bool,
) -> Result<()> {
    let Some(last) = last else { return Ok(()) };
    if last == new || allow_rollback {
        return Ok(());
    }
    if let Err(e) = repo.find_commit(last) {
        if !fresh {
            return Err(damaged(e));
        }
        return refuse(format!(
            "the last applied commit {last} is not in the fetched history: the branch was rewritten"
        ));
    }
    if !repo.graph_descendant_of(new, last).map_err(damaged)? {
        return refuse(format!(
            "{new} does not descend from the last applied commit {last}: a force-push or rollback; an operator can pass --allow-rollback"
        ));
    }
    Ok(())
}

/// Largest manifest the agent reads.
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// Largest commit object whose signature the agent checks (a commit is headers and a
/// message; a huge one is an attack on memory before any key was shown).
pub const MAX_COMMIT_BYTES: usize = 1 << 20;

/// Most commits one run verifies: a longer unapplied history is refused rather than
/// checked for hours while the lock is held.
pub const MAX_UNAPPLIED: usize = 10_000;

/// The commits from `last` (excluded) to `tip`, oldest first: what this run would apply
/// and therefore must verify. Only `tip` on the first run, or when `tip` does not descend
/// from `last` (an operator's `--allow-rollback`).
pub fn unapplied(repo: &Repository, last: Option<Oid>, tip: Oid) -> Result<Vec<Oid>> {
    let Some(last) = last else { return Ok(vec![tip]) };
    if last == tip {
        return Ok(Vec::new());
    }
    // `last` outside the fetched history (an operator's rollback; damage was ruled out
    // by the fast-forward check): only the tip is new to verify.
    if repo.find_commit(last).is_err() || !repo.graph_descendant_of(tip, last).map_err(damaged)? {
        return Ok(vec![tip]);
    }
    let mut walk = repo.revwalk().map_err(damaged)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE).map_err(damaged)?;
    walk.push(tip).map_err(damaged)?;
    walk.hide(last).map_err(damaged)?;
    let mut out = Vec::new();
    for oid in walk {
        out.push(oid.map_err(damaged)?);
        if out.len() > MAX_UNAPPLIED {
            return refuse(format!(
                "more than {MAX_UNAPPLIED} commits between the applied {last} and the tip {tip}; an operator must pin a newer commit"
            ));
        }
    }
    Ok(out)
}

/// Verifies the SSH signature of commit `oid` against `allowed_signers` with
/// `ssh-keygen -Y verify` in the `git` namespace.
pub fn verify_signature(repo: &Repository, oid: Oid, allowed_signers: &Path) -> Result<String> {
    let (size, _) = repo.odb().and_then(|o| o.read_header(oid)).map_err(damaged)?;
    if size > MAX_COMMIT_BYTES {
        return refuse(format!("commit {oid} is {size} bytes, more than a commit needs ({MAX_COMMIT_BYTES})"));
    }
    let (sig, payload) = match repo.extract_signature(&oid, None) {
        Ok(x) => x,
        // libgit2's "this commit is not signed"; anything else is an unreadable object.
        Err(e) if e.code() == git2::ErrorCode::NotFound && e.class() == git2::ErrorClass::Object => {
            return refuse(format!("commit {oid} is not signed"));
        }
        Err(e) => return Err(damaged(e)),
    };
    let sig = sig.as_str().context("signature is not text")?.to_string();
    if !sig.starts_with("-----BEGIN SSH SIGNATURE-----") {
        return refuse(format!("commit {oid} is not SSH-signed"));
    }
    let dir = tempfile::tempdir().context("failed to create a temporary directory")?;
    let sig_path = dir.path().join("commit.sig");
    std::fs::write(&sig_path, sig.as_bytes()).context("failed to write the signature")?;
    let payload_path = dir.path().join("commit.payload");
    std::fs::write(&payload_path, &*payload).context("failed to write the signed payload")?;
    let run = |args: &[&str]| -> Result<std::process::Output> {
        let payload = std::fs::File::open(&payload_path).context("failed to open the signed payload")?;
        std::process::Command::new("ssh-keygen").args(args).stdin(payload).output().context("failed to run ssh-keygen")
    };
    let signers = allowed_signers.to_str().context("allowed_signers path is not UTF-8")?;
    let sig_s = sig_path.to_str().context("path")?;
    let found = run(&["-Y", "find-principals", "-f", signers, "-s", sig_s])?;
    let principal = String::from_utf8_lossy(&found.stdout).lines().next().unwrap_or("").trim().to_string();
    if !found.status.success() || principal.is_empty() {
        return refuse(format!("commit {oid} is signed by a key that allowed_signers does not list"));
    }
    let verified = run(&["-Y", "verify", "-f", signers, "-I", &principal, "-n", "git", "-s", sig_s])?;
    if !verified.status.success() {
        return refuse(format!(
            "the signature of commit {oid} does not verify: {}",
            String::from_utf8_lossy(&verified.stderr).trim()
        ));
    }
    Ok(principal)
}

/// A host's generation as read from one commit.
#[derive(Debug)]
pub struct Generation {
    /// The commit.
    pub commit: Oid,
    /// The apply plan.
    pub plan: HostPlan,
    /// Content of each planned file, by target path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Each secret of the plan with its ciphertext (checked against the plan's hash).
    pub secrets: Vec<(crate::artifact::PlanSecret, Vec<u8>)>,
}

/// Whether a tree entry name is acceptable.
fn check_name(name: &[u8]) -> std::result::Result<&str, String> {
    let name = std::str::from_utf8(name).map_err(|_| "a non-UTF-8 name".to_string())?;
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(format!("the name `{}`", name.escape_debug()));
    }
    if name.eq_ignore_ascii_case(".git") {
        return Err(format!("the name `{name}`"));
    }
    // A newline (or any control character) in a name is written as is by every tool
    // and breaks every line-based one that reads it back.
    if name.chars().any(char::is_control) {
        return Err(format!("the name `{}` (a control character)", name.escape_debug()));
    }
    if name.len() > 255 {
        return Err("a name longer than 255 bytes".into());
    }
    Ok(name)
}

/// Roots a host tree may write to: everything else is refused, whatever the signature.
pub const ALLOWED_ROOTS: &[&str] = &["/etc/"];

/// Whether a plan's reload or restart action is a plain unit name (it reaches
/// `systemctl` as an argument: no option, no path).
fn is_unit_name(a: &str) -> bool {
    !a.is_empty() && !a.starts_with('-') && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// Reads `generated/hosts/<host>/` of `commit` and checks it completely.
pub fn read_generation(repo: &Repository, commit: Oid, host: &str, branch: &str, limits: Limits) -> Result<Generation> {
    let c = repo.find_commit(commit).map_err(damaged)?;
    let tree = c.tree().map_err(damaged)?;
    let base = format!("generated/hosts/{host}");
    let entry = match tree.get_path(Path::new(&base)) {
        Ok(e) if e.kind() == Some(ObjectType::Tree) => e,
        Err(e) if e.code() != git2::ErrorCode::NotFound => return Err(damaged(e)),
        _ => return refuse(format!("commit {commit} has no `{base}/`")),
    };
    let sub = entry.to_object(repo).and_then(|o| o.peel_to_tree()).map_err(damaged)?;
    let mut unreadable: Option<git2::Error> = None;
    let odb = repo.odb().map_err(damaged)?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut problem: Option<String> = None;
    let mut total = 0usize;
    sub.walk(TreeWalkMode::PreOrder, |parent, e| {
        // Every entry counts, trees included: nine objects of empty trees with a 40-way
        // fan-out 8 deep are billions of entries and not one blob.
        total += 1;
        if total > limits.max_files {
            problem = Some(format!("`{base}/` has more than {} entries", limits.max_files));
            return TreeWalkResult::Abort;
        }
        let name = match check_name(e.name_bytes()) {
            Ok(n) => n,
            Err(what) => {
                problem = Some(format!("`{base}/{parent}` holds {what}"));
                return TreeWalkResult::Abort;
            }
        };
        let path = format!("{parent}{name}");
        match (e.kind(), e.filemode()) {
            (Some(ObjectType::Tree), _) => {
                if parent.matches('/').count() > 32 {
                    problem = Some(format!("`{base}/{path}` is nested too deep"));
                    return TreeWalkResult::Abort;
                }
                TreeWalkResult::Ok
            }
            (Some(ObjectType::Blob), 0o100644) | (Some(ObjectType::Blob), 0o100755) => {
                // The size from the object's header, before anything is inflated: a
                // 1 GiB blob of zeros is 4.7 MB on the wire.
                match odb.read_header(e.id()) {
                    Ok((size, _)) if size > limits.max_file_bytes => {
                        problem = Some(format!("`{base}/{path}` is larger than {} bytes", limits.max_file_bytes));
                        return TreeWalkResult::Abort;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        problem = Some(format!("`{base}/{path}` cannot be read: {err}"));
                        unreadable = Some(err);
                        return TreeWalkResult::Abort;
                    }
                }
                match repo.find_blob(e.id()) {
                    Ok(b) if b.content().len() <= limits.max_file_bytes => {
                        files.insert(path, b.content().to_vec());
                        TreeWalkResult::Ok
                    }
                    Ok(_) => {
                        problem = Some(format!("`{base}/{path}` is larger than {} bytes", limits.max_file_bytes));
                        TreeWalkResult::Abort
                    }
                    Err(err) => {
                        problem = Some(format!("`{base}/{path}` cannot be read: {err}"));
                        unreadable = Some(err);
                        TreeWalkResult::Abort
                    }
                }
            }
            (_, 0o120000) => {
                problem = Some(format!("`{base}/{path}` is a symlink"));
                TreeWalkResult::Abort
            }
            (_, 0o160000) => {
                problem = Some(format!("`{base}/{path}` is a submodule"));
                TreeWalkResult::Abort
            }
            (_, mode) => {
                problem = Some(format!("`{base}/{path}` has the unexpected mode {mode:o}"));
                TreeWalkResult::Abort
            }
        }
    })
    .or_else(|e| if problem.is_some() { Ok(()) } else { Err(e) })
    .map_err(damaged)?;
    if let Some(e) = unreadable {
        return Err(damaged(e));
    }
    if let Some(p) = problem {
        return refuse(p);
    }

    // Every file must be exactly what the manifest (read from the same commit) says.
    let manifest_blob = match tree.get_path(Path::new("generated/manifest.json")) {
        Ok(e) => {
            let (size, _) = odb.read_header(e.id()).map_err(damaged)?;
            if size > MAX_MANIFEST_BYTES {
                return refuse(format!("`generated/manifest.json` is larger than {MAX_MANIFEST_BYTES} bytes"));
            }
            repo.find_blob(e.id()).map_err(damaged)?
        }
        Err(e) if e.code() != git2::ErrorCode::NotFound => return Err(damaged(e)),
        Err(_) => return refuse(format!("commit {commit} has no `generated/manifest.json`")),
    };
    let manifest: Manifest = match serde_json::from_slice(manifest_blob.content()) {
        Ok(m) => m,
        Err(e) => return refuse(format!("`generated/manifest.json` is unreadable: {e}")),
    };
    // The tree is bound to the branch it was built for: a signed commit made for
    // `testing` and moved onto `main` (a branch teleport) is refused.
    match manifest.branch.as_deref() {
        Some(b) if b == branch => {}
        Some(b) => {
            return refuse(format!(
                "commit {commit} was built for the branch `{b}`, not `{branch}`: a commit moved from another branch"
            ));
        }
        None => {
            return refuse(format!(
                "the manifest of commit {commit} records no branch (built by an older medianest, or without `[agent]`); rebuild it"
            ));
        }
    }
    let prefix = format!("hosts/{host}/");
    let listed: BTreeMap<&str, &str> =
        manifest.files.iter().filter_map(|e| Some((e.path.strip_prefix(&prefix)?, e.sha256.as_str()))).collect();
    let entries: BTreeMap<&str, &crate::artifact::ManifestEntry> =
        manifest.files.iter().filter_map(|e| Some((e.path.strip_prefix(&prefix)?, e))).collect();
    for (path, bytes) in &files {
        match listed.get(path.as_str()) {
            Some(hash) if *hash == sha256_hex(bytes) => {}
            Some(_) => return refuse(format!("`{base}/{path}` does not match its sha256 in the manifest")),
            None => return refuse(format!("`{base}/{path}` is not in the manifest")),
        }
    }
    if let Some(missing) = listed.keys().find(|p| !files.contains_key(**p)) {
        return refuse(format!("`{base}/{missing}` is in the manifest but not in the tree"));
    }
    let plan_bytes = match files.remove("plan.json") {
        Some(b) => b,
        None => return refuse(format!("`{base}/plan.json` is missing")),
    };
    let plan: HostPlan = match serde_json::from_slice(&plan_bytes) {
        Ok(p) => p,
        Err(e) => return refuse(format!("`{base}/plan.json` is unreadable: {e}")),
    };
    if plan.host != host {
        return refuse(format!("`{base}/plan.json` is the plan of `{}`, not of `{host}`", plan.host));
    }
    let mut targets = BTreeMap::new();
    for f in &plan.files {
        if let Err(e) = super::fsops::components(&f.target) {
            return refuse(format!("plan target: {e}"));
        }
        if !ALLOWED_ROOTS.iter().any(|r| f.target.starts_with(r)) {
            return refuse(format!(
                "plan target `{}` is outside the roots the agent may write ({})",
                f.target,
                ALLOWED_ROOTS.join(", ")
            ));
        }
        if f.source != format!("root{}", f.target) {
            return refuse(format!("plan entry `{}` takes its content from `{}`", f.target, f.source));
        }
        let Some(bytes) = files.remove(&f.source) else {
            return refuse(format!("`{base}/{}` named by the plan is missing", f.source));
        };
        if sha256_hex(&bytes) != f.sha256 {
            return refuse(format!("`{base}/{}` does not match its sha256 in the plan", f.source));
        }
        let Some(mode) = u32::from_str_radix(&f.mode, 8).ok().filter(|m| *m <= 0o7777) else {
            return refuse(format!("plan entry `{}` has the bad mode `{}`", f.target, f.mode));
        };
        if mode & 0o6000 != 0 {
            return refuse(format!("plan entry `{}` has the setuid/setgid mode {:04o}", f.target, mode));
        }
        if mode & 0o002 != 0 {
            return refuse(format!("plan entry `{}` has the world-writable mode {:04o}", f.target, mode));
        }
        // The plan and the manifest are written from the same artifact: they agree on
        // mode and owner, and the file's family may write the target.
        let Some(m) = entries.get(f.source.as_str()) else {
            return refuse(format!("`{base}/{}` is not in the manifest", f.source));
        };
        if u32::from_str_radix(&m.mode, 8).ok() != Some(mode) || m.owner != f.owner {
            return refuse(format!(
                "plan entry `{}` says {:04o} {} but the manifest says {} {}",
                f.target, mode, f.owner, m.mode, m.owner
            ));
        }
        if !crate::artifact::family_may_write(&m.family, &f.target) {
            return refuse(format!(
                "plan target `{}` is outside what the family `{}` may write",
                f.target,
                m.family.escape_debug()
            ));
        }
        for a in [&f.actions.reload, &f.actions.restart].into_iter().flatten() {
            if !is_unit_name(a) {
                return refuse(format!("plan entry `{}` names the action `{}`", f.target, a.escape_debug()));
            }
        }
        targets.insert(f.target.clone(), bytes);
    }
    let mut secrets = Vec::new();
    let mut sources = std::collections::BTreeSet::new();
    for x in &plan.secrets {
        // A plan decides only which secret goes to which service: the place is fixed,
        // so a plan cannot direct a plaintext anywhere else (under `/etc`, into a
        // file a service serves).
        let ok_name = |n: &str, extra: char| {
            n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == extra)
        };
        if !ok_name(&x.name, '_') {
            return refuse(format!("the plan names the secret `{}`", x.name.escape_debug()));
        }
        if x.source != format!("secrets/{}.age", x.name) {
            return refuse(format!("secret `{}` takes its ciphertext from `{}`", x.name, x.source.escape_debug()));
        }
        let Some(bytes) = files.get(&x.source) else {
            return refuse(format!("`{base}/{}` named by the plan is missing", x.source));
        };
        if sha256_hex(bytes) != x.sha256 {
            return refuse(format!("`{base}/{}` does not match its sha256 in the plan", x.source));
        }
        for d in &x.deliveries {
            if !ok_name(&d.service, '-') || d.target != format!("{}/{}/{}", crate::secrets::RUN_DIR, d.service, x.name)
            {
                return refuse(format!(
                    "secret `{}` would be delivered to `{}`, not `{}/<service>/{}`",
                    x.name,
                    d.target.escape_debug(),
                    crate::secrets::RUN_DIR,
                    x.name
                ));
            }
            for a in [&d.reload, &d.restart].into_iter().flatten() {
                if !is_unit_name(a) {
                    return refuse(format!("secret `{}` names the action `{}`", x.name, a.escape_debug()));
                }
            }
        }
        sources.insert(x.source.clone());
        secrets.push((x.clone(), bytes.clone()));
    }
    for s in &sources {
        files.remove(s);
    }
    // The bootstrap script is for the operator, not something the agent applies.
    files.remove("bootstrap.sh");
    if let Some(extra) = files.keys().next() {
        return refuse(format!("`{base}/{extra}` is not named by the plan"));
    }
    Ok(Generation { commit, plan, files: targets, secrets })
}
