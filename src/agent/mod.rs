//! `medianest pull`: the host agent. It runs as root on every host, so it treats the
//! repository as untrusted input that must prove itself, and it never depends on the
//! renderer (only on [`crate::artifact`] for the plan and manifest formats).
//!
//! One run: take the lock → finish or undo an interrupted apply (journal) → remove a
//! killed run's leftovers → fetch into a staging ref ([`source::fetch`], byte cap and
//! deadline; a damaged mirror rebuilt) → accept only fast-forward history from the
//! applied commit and the floor → verify every unapplied commit's SSH signature → read
//! and check the host's tree from that one commit → detect drift → stage and validate
//! with the native tools → journal and back up → swap every file atomically, never
//! through a symlink ([`fsops`]), and remove the files the plan dropped → reload →
//! health (units active; the repository still reachable after a firewall change) → deploy
//! containers (Compose or a Swarm stack) and wait until they converge → record the state,
//! or restore the previous files byte for byte, reload and redeploy them again. A run with nothing to do writes nothing and reloads nothing.
//!
//! Exit codes: 0 applied or nothing to do, 1 refused (the repository did not prove
//! itself; nothing was written), 2 usage or I/O error (or a rollback that could not
//! restore every file), 3 the apply failed and was rolled back, 4 another run holds the
//! lock, 5 the fetch failed or the branch is gone.

pub mod actions;
pub mod boot;
pub mod error;
pub mod fsops;
pub mod source;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::artifact::sha256_hex;
use error::Refusal;
use fsops::{Root, lookup_id};
use source::Limits;
use state::{Journal, JournalEntry, Metrics, State, StateDir};

/// Exit codes of `pull`.
pub mod exit {
    /// Applied, or nothing to do.
    pub const OK: i32 = 0;
    /// Refused: the repository did not prove itself.
    pub const REFUSED: i32 = 1;
    /// Usage or I/O error.
    pub const ERROR: i32 = 2;
    /// The apply failed and the previous files were restored.
    pub const ROLLED_BACK: i32 = 3;
    /// Another run holds the lock.
    pub const BUSY: i32 = 4;
    /// The fetch failed.
    pub const FETCH_FAILED: i32 = 5;
}

/// What to do with managed files changed on the host since the last apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Overwrite them with the committed version.
    Enforce,
    /// Report them and leave them alone.
    Report,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Repository URL or path.
    pub repo: String,
    /// Branch.
    pub branch: String,
    /// This host's name in the site.
    pub host: String,
    /// The root files are written under (`/` on a real host).
    pub root: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// `allowed_signers` file: every commit from the applied one to the tip must carry a
    /// valid SSH signature by a key it lists. Mandatory: without it a run is refused,
    /// unless `insecure_no_verify`.
    pub allowed_signers: Option<PathBuf>,
    /// Apply without verifying signatures (`--insecure-no-verify`): an operator's
    /// explicit choice, logged on every run and exported as a metric.
    pub insecure_no_verify: bool,
    /// Node exporter's textfile directory: the metrics are copied there (world-readable)
    /// when it exists, since the state directory is root-only.
    pub textfile_dir: PathBuf,
    /// The host's SSH private key (a path on the host, read under `root`): it decrypts
    /// the secrets the plan names.
    pub host_key: PathBuf,
    /// Report what would change; write nothing.
    pub dry_run: bool,
    /// Accept a commit that does not descend from the applied one.
    pub allow_rollback: bool,
    /// Drift policy.
    pub drift: DriftPolicy,
    /// Fetch and tree limits.
    pub limits: Limits,
    /// The pinned floor (a path on the host, under `root`): the applied commit recorded
    /// outside the state directory.
    pub floor: PathBuf,
    /// Only deliver the applied commit's secrets again, from the mirror ([`boot`]).
    pub boot: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Target path.
    pub target: String,
    /// `create`, `update`, `unchanged`, `drift-kept`, `drift-overwritten`, or `remove` (a file
    /// the previous generation wrote that the new plan no longer lists).
    pub action: &'static str,
}

/// What happened to one delivered secret: its name and the hash of its ciphertext,
/// never its value.
#[derive(Debug, Clone, Serialize)]
pub struct SecretReport {
    /// The secret's name.
    pub name: String,
    /// The service whose copy this is.
    pub service: String,
    /// sha256 of the ciphertext it was decrypted from.
    pub sha256: String,
    /// `create`, `rotate` or `unchanged`.
    pub action: &'static str,
}

/// The report of a run (printed as JSON with `--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Exit code.
    pub exit_code: i32,
    /// `applied`, `unchanged`, `dry-run`, `refused`, `invalid` (validation failed, nothing
    /// changed), `rolled-back`, `busy`, `fetch-failed`, `error`.
    pub result: &'static str,
    /// Why, for anything but success.
    pub reason: Option<String>,
    /// Commit fetched.
    pub commit: Option<String>,
    /// Commit the host runs after the run.
    pub applied_commit: Option<String>,
    /// Per-file actions.
    pub files: Vec<FileReport>,
    /// Per-secret actions (names and ciphertext hashes only).
    pub secrets: Vec<SecretReport>,
    /// Managed files changed on the host since the last apply.
    pub drift: Vec<String>,
    /// Units reloaded.
    pub reloaded: Vec<String>,
    /// Units restarted.
    pub restarted: Vec<String>,
    /// Files whose containers were deployed.
    pub deployed: Vec<String>,
    /// Whether an interrupted apply was undone first.
    pub recovered: bool,
    /// Whether signatures were left unchecked (`--insecure-no-verify`).
    pub insecure_no_verify: bool,
    /// Milliseconds taken.
    pub millis: u128,
}

impl Report {
    fn new() -> Report {
        Report {
            exit_code: exit::OK,
            result: "unchanged",
            reason: None,
            commit: None,
            applied_commit: None,
            files: Vec::new(),
            secrets: Vec::new(),
            drift: Vec::new(),
            reloaded: Vec::new(),
            restarted: Vec::new(),
            deployed: Vec::new(),
            recovered: false,
            insecure_no_verify: false,
            millis: 0,
        }
    }
}

/// Aborts the process at a named step when `MEDIANEST_CRASH_AT` names it: the hook the
/// crash-consistency tests use to stop the agent at every step boundary.
pub fn crash_point(step: &str) {
    if let Ok(at) = std::env::var("MEDIANEST_CRASH_AT") {
        let (name, nth) =
            at.split_once('#').map(|(n, k)| (n.to_string(), k.parse::<usize>().unwrap_or(1))).unwrap_or((at, 1));
        if name == step {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static SEEN: AtomicUsize = AtomicUsize::new(0);
            if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                eprintln!("medianest: crash hook at `{step}`");
                std::process::abort();
            }
        }
    }
}

/// One log line on stderr, JSON for the journal.
fn log(event: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({ "event": event });
    if let (Some(obj), serde_json::Value::Object(extra)) = (line.as_object_mut(), fields) {
        obj.extend(extra);
    }
    eprintln!("{line}");
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Runs once. Never panics on repository content; every outcome is a [`Report`].
pub fn pull(opts: &PullOptions) -> Report {
    let start = Instant::now();
    let mut report = Report::new();
    let state_dir = match StateDir::open(&opts.state_dir) {
        Ok(s) => s,
        Err(e) => return finish(report, exit::ERROR, "error", Some(format!("{e:#}")), start),
    };
    let _lock = match state_dir.lock() {
        Ok(Some(l)) => l,
        // At boot, a pull that holds the lock delivers the secrets itself (and the agent
        // restarting medianest-secrets.service is such a pull): nothing is missing.
        Ok(None) if opts.boot => {
            let why = "another run holds the lock and delivers the secrets itself".into();
            return finish(report, exit::OK, "busy", Some(why), start);
        }
        Ok(None) => return finish(report, exit::BUSY, "busy", Some("another run holds the lock".into()), start),
        Err(e) => return finish(report, exit::ERROR, "error", Some(format!("{e:#}")), start),
    };
    let result = if opts.boot { boot::run(opts, &state_dir, &mut report) } else { run(opts, &state_dir, &mut report) };
    let (code, what, reason) = match result {
        Ok(()) => (exit::OK, report.result, report.reason.take()),
        Err(e) if e.downcast_ref::<Refusal>().is_some() => (exit::REFUSED, "refused", Some(format!("{e:#}"))),
        Err(e) if e.downcast_ref::<RolledBack>().is_some() => {
            (exit::ROLLED_BACK, "rolled-back", Some(format!("{e:#}")))
        }
        Err(e) if e.downcast_ref::<ValidationFailed>().is_some() => {
            (exit::ROLLED_BACK, "invalid", Some(format!("{e:#}")))
        }
        Err(e) if e.downcast_ref::<FetchFailed>().is_some() => {
            (exit::FETCH_FAILED, "fetch-failed", Some(format!("{e:#}")))
        }
        Err(e) => (exit::ERROR, "error", Some(format!("{e:#}"))),
    };
    // Whoever can push without a key must not fill the state directory: the objects of
    // a refused fetch are not kept (the mirror is a cache; the next run fetches again,
    // within --max-bytes).
    if code == exit::REFUSED && !opts.dry_run {
        let mirror = state_dir.path.join("mirror.git");
        if mirror.exists() {
            match remove_path(&mirror) {
                Ok(()) => log("mirror-discarded", serde_json::json!({ "why": "the fetched commits were refused" })),
                Err(e) => log("mirror-discard-failed", serde_json::json!({ "reason": format!("{e:#}") })),
            }
        }
    }
    if !opts.dry_run {
        let st = load_state(&state_dir);
        // A boot delivery fetched nothing: it is no proof the host still follows its
        // branch (AgentStale), so it keeps the last success time.
        let success = if code == exit::OK && !opts.boot { now() } else { state_dir.previous_success() };
        let _ = state_dir.write_metrics(
            &Metrics {
                last_attempt: now(),
                last_success: success,
                commit: st.applied_commit.clone().unwrap_or_default(),
                applied_time: st.applied_time.unwrap_or(0),
                drift: report.drift.len(),
                result: code,
                seconds: start.elapsed().as_secs_f64(),
                secrets: report.secrets.iter().map(|x| (x.name.clone(), x.service.clone(), x.sha256.clone())).collect(),
                insecure_no_verify: opts.insecure_no_verify,
            },
            &opts.textfile_dir,
        );
        report.applied_commit = st.applied_commit;
    }
    finish(report, code, what, reason, start)
}

fn finish(mut r: Report, code: i32, what: &'static str, reason: Option<String>, start: Instant) -> Report {
    r.exit_code = code;
    r.result = what;
    r.reason = reason;
    r.millis = start.elapsed().as_millis();
    log(
        "finished",
        serde_json::json!({ "result": r.result, "exit_code": r.exit_code, "reason": r.reason, "commit": r.commit }),
    );
    r
}

/// The apply failed after the swap and the previous files were restored.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RolledBack(String);

/// The staged files did not validate; nothing was swapped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ValidationFailed(String);

/// The fetch failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FetchFailed(String);

/// What an undo could not do. Empty lists mean the host is back on the previous files,
/// reloaded and redeployed.
#[derive(Debug, Default)]
struct Undone {
    /// Files (and created directories) that could not be put back, with why.
    not_restored: Vec<String>,
    /// Units whose reload failed after the restore, with why.
    reload_failed: Vec<String>,
    /// Container files whose previous version could not be deployed again.
    redeploy_failed: Vec<String>,
}

impl Undone {
    /// The truth about a rollback, for the report.
    fn describe(&self) -> String {
        let mut s = if self.not_restored.is_empty() {
            "the previous files were restored".to_string()
        } else {
            format!("the rollback could not restore {} (everything else was restored)", self.not_restored.join("; "))
        };
        if self.reload_failed.is_empty() {
            s.push_str(" and reloaded");
        } else {
            s.push_str(&format!(", and reloading failed too: {}", self.reload_failed.join("; ")));
        }
        if !self.redeploy_failed.is_empty() {
            s.push_str(&format!("; redeploying failed: {}", self.redeploy_failed.join("; ")));
        }
        s
    }
}

/// Whether a file on the host is exactly what a journal entry recorded before the apply.
fn is_before(current: &Option<fsops::HostFile>, bytes: &[u8], mode: u32, uid: u32, gid: u32) -> bool {
    current.as_ref().is_some_and(|(b, m, u, g)| b.as_slice() == bytes && (*m, *u, *g) == (mode, uid, gid))
}

/// Restores the files a journal names, removes the directories the apply created,
/// reloads and redeploys the previous containers. Only what the apply changed is
/// touched (a file whose swap never happened is left alone, so an unwritable file does
/// not stop the rest), every error is collected rather than stopping the undo, and the
/// journal is cleared only when every file is back: the next run retries the rest.
fn undo(root: &Root, host_root: &std::path::Path, dir: &StateDir, j: &Journal) -> Result<Undone> {
    let on_host = |target: &str| host_root.join(target.trim_start_matches('/'));
    let mut out = Undone::default();
    // Containers from a file that did not exist before: stopped while the file is there.
    for (target, d) in &j.deploy {
        if j.entries.iter().any(|e| &e.target == target && e.before.is_none()) && on_host(target).exists() {
            let _ = actions::teardown(*d, &on_host(target));
        }
    }
    for e in j.entries.iter().rev() {
        let restored = (|| -> Result<()> {
            let current = root.read(&e.target)?;
            match &e.before {
                Some((backup, mode, uid, gid)) => {
                    let bytes = zeroize::Zeroizing::new(if e.secret {
                        root.read(&secret_backup(backup))?
                            .with_context(|| format!("its backup `{}` is missing", secret_backup(backup)))?
                            .0
                    } else {
                        std::fs::read(dir.backup(backup)).context("its backup is missing")?
                    });
                    if !e.swapped && is_before(&current, &bytes, *mode, *uid, *gid) {
                        return Ok(());
                    }
                    root.write(&e.target, &bytes, *mode, *uid, *gid)
                }
                None if current.is_some() => root.remove(&e.target),
                None => Ok(()),
            }
        })();
        if let Err(err) = restored {
            out.not_restored.push(format!("`{}` ({err:#})", e.target));
        }
    }
    // Directories the apply created, deepest first; one still holding a file that could
    // not be removed stays, and says so.
    for d in j.dirs.iter().rev() {
        if let Err(err) = root.remove_dir(d) {
            out.not_restored.push(format!("the directory `{d}` ({err:#})"));
        }
    }
    if let Err(err) = remove_secret_backups(root, j) {
        log("cleanup-failed", serde_json::json!({ "reason": format!("{err:#}") }));
    }
    for unit in &j.reload {
        if let Err(err) = actions::systemctl(actions::RELOAD, unit) {
            out.reload_failed.push(format!("`{unit}` ({err:#})"));
        }
    }
    for (target, d) in &j.deploy {
        if on_host(target).exists()
            && let Err(e) = actions::deploy(*d, &on_host(target))
        {
            log("redeploy-failed", serde_json::json!({ "target": target, "reason": format!("{e:#}") }));
            out.redeploy_failed.push(format!("`{target}` ({e:#})"));
        }
    }
    if out.not_restored.is_empty() {
        dir.clear_journal()?;
    } else {
        log("rollback-incomplete", serde_json::json!({ "not_restored": out.not_restored }));
    }
    Ok(out)
}

/// Where the previous plaintext of a secret is kept during an apply: in the secrets
/// tmpfs itself, root-only, never in the state directory (which is on disk).
fn secret_backup(name: &str) -> String {
    format!("{}/{name}", secret_backup_dir())
}

fn secret_backup_dir() -> String {
    format!("{}/.rollback", crate::secrets::RUN_DIR)
}

fn remove_secret_backups(root: &Root, j: &Journal) -> Result<()> {
    for e in j.entries.iter().filter(|e| e.secret) {
        if let Some((backup, ..)) = &e.before {
            root.remove(&secret_backup(backup))?;
        }
    }
    Ok(())
}

/// Decrypts every secret of the plan with the host key, before anything is compared or
/// written: one that does not decrypt (encrypted to another host, swapped with another
/// name, corrupt) refuses the whole apply, so a host is never half-rotated.
/// What delivering `value` to `d` does: the owner's ids, and `unchanged` (same bytes,
/// 0400, same owner), `create` (no file yet) or `rotate`. Compared by content: a hash of
/// a plaintext is never kept.
fn secret_action(root: &Root, d: &crate::artifact::SecretDelivery, value: &[u8]) -> Result<(u32, u32, &'static str)> {
    let (user, group) = d.owner.split_once(':').unwrap_or((d.owner.as_str(), d.owner.as_str()));
    let (uid, gid) = (lookup_id(root, "/etc/passwd", user)?, lookup_id(root, "/etc/group", group)?);
    let current = root.read(&d.target)?.map(|(b, m, u, g)| (zeroize::Zeroizing::new(b), m, u, g));
    let same =
        current.as_ref().is_some_and(|(b, m, u, g)| b.as_slice() == value && *m == 0o400 && *u == uid && *g == gid);
    let action = match (&current, same) {
        (_, true) => "unchanged",
        (None, _) => "create",
        (Some(_), _) => "rotate",
    };
    Ok((uid, gid, action))
}

pub(crate) fn decrypt_secrets(
    root: &Root,
    key: &std::path::Path,
    secrets: &[(crate::artifact::PlanSecret, Vec<u8>)],
) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>> {
    if secrets.is_empty() {
        return Ok(Vec::new());
    }
    let shown = key.display().to_string();
    let found = root.read(&shown).with_context(|| format!("failed to read the host key `{shown}`"))?;
    let Some((bytes, ..)) = found else {
        return error::refuse(format!(
            "the plan names secrets but the host key `{shown}` does not exist (--host-key); nothing was changed"
        ));
    };
    let bytes = zeroize::Zeroizing::new(bytes);
    let ids = crate::secrets::identities_from(&bytes)
        .map_err(|e| error::refusal(format!("the host key `{shown}` is unusable: {e:#}; nothing was changed")))?;
    secrets
        .iter()
        .map(|(x, c)| {
            crate::secrets::decrypt(&x.name, c, &ids).map_err(|e| {
                error::refusal(format!(
                    "secret `{}` cannot be decrypted with this host's key: {e}; nothing was changed",
                    x.name
                ))
            })
        })
        .collect()
}

/// The state directory's one staging directory, removed when dropped (and at the start
/// of the next run, when a kill prevented that).
struct Staging(PathBuf);

impl Staging {
    fn new(dir: &StateDir) -> Result<Staging> {
        let p = dir.path.join("staging");
        remove_path(&p)?;
        std::fs::create_dir(&p).with_context(|| format!("failed to create the staging directory `{}`", p.display()))?;
        Ok(Staging(p))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes a file or a directory tree, if it exists.
fn remove_path(p: &std::path::Path) -> Result<()> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.with_context(|| format!("failed to remove `{}`", p.display()))
}

/// One target per directory: a directory is listed once, however many files it holds.
fn one_per_directory<'a>(targets: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for t in targets {
        seen.entry(t.rsplit_once('/').map_or("", |(d, _)| d)).or_insert(t);
    }
    seen.into_values().collect()
}

/// Removes what a killed run leaves: temporary files beside the managed files (already
/// with their final mode), the staging copy and temporary files in the state directory,
/// and backups no journal refers to. Runs under the lock, after any recovery.
fn clean_leftovers<'a>(root: &Root, dir: &StateDir, targets: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut removed = 0usize;
    for t in one_per_directory(targets.map(String::as_str)) {
        removed += root.clean_temp_beside(t)?;
    }
    remove_path(&dir.path.join("staging"))?;
    for e in std::fs::read_dir(&dir.path).with_context(|| format!("failed to list `{}`", dir.path.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(".tmp") {
            remove_path(&e.path())?;
            removed += 1;
        }
    }
    if dir.journal()?.is_none() {
        dir.clear_journal()?;
    }
    if removed > 0 {
        log("cleaned", serde_json::json!({ "leftovers": removed }));
    }
    Ok(())
}

/// The saved state; one that cannot be read (emptied, corrupt) counts as lost, which the
/// floor covers, rather than wedging every later run.
fn load_state(dir: &StateDir) -> State {
    dir.state().unwrap_or_else(|e| {
        log("state-unreadable", serde_json::json!({ "reason": format!("{e:#}") }));
        State::default()
    })
}

/// The pinned floor: the last applied commit, recorded a second time outside the state
/// directory (by default `/etc/medianest/floor`, under the root), so that losing the
/// state directory does not reopen rollbacks. Absent only before the first apply.
fn read_floor(root: &Root, target: &str) -> Result<Option<git2::Oid>> {
    let Some((bytes, ..)) = root.read(target).with_context(|| format!("failed to read the floor `{target}`"))? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    match git2::Oid::from_str(text.trim()) {
        Ok(oid) if text.trim().len() == 40 => Ok(Some(oid)),
        _ => error::refuse(format!(
            "the floor `{target}` holds no commit id; an operator must restore it (or remove it to trust the branch's tip again)"
        )),
    }
}

fn write_floor(root: &Root, target: &str, commit: git2::Oid) -> Result<()> {
    root.write(target, format!("{commit}\n").as_bytes(), 0o644, 0, 0)
        .with_context(|| format!("failed to record the floor `{target}`"))
}

fn commit_time(repo: &git2::Repository, commit: git2::Oid) -> i64 {
    repo.find_commit(commit).map(|c| c.time().seconds()).unwrap_or(0)
}

/// Where the bootstrap writes the agent's settings; a plan that changes this file must
/// keep verification on.
pub const AGENT_CONFIG: &str = "/etc/medianest/agent.toml";

/// The keys an `allowed_signers` text lists (lines that are neither blank nor comments).
fn signer_lines(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && l.split_whitespace().count() >= 2)
        .count()
}

/// Refuses a generation that would leave the agent with no signers: `agent.toml` and
/// `allowed_signers` are managed files, so one signed commit that dropped the line or
/// emptied the file would switch verification off for every later run.
fn check_keeps_signers(opts: &PullOptions, generation: &source::Generation) -> Result<()> {
    let mut signer_files: BTreeSet<String> = BTreeSet::new();
    if let Some(bytes) = generation.files.get(AGENT_CONFIG) {
        let named = std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("allowed_signers").and_then(|v| v.as_str()).map(str::to_string));
        let Some(named) = named else {
            return error::refuse(format!(
                "the new `{AGENT_CONFIG}` names no allowed_signers: it would switch signature verification off; nothing was changed"
            ));
        };
        signer_files.insert(named);
    }
    // The file this run verified with, when it lies under the root the plan writes.
    if let Some(p) = &opts.allowed_signers
        && let Ok(rel) = p.strip_prefix(&opts.root)
    {
        signer_files.insert(format!("/{}", rel.display()));
    }
    for f in &signer_files {
        if let Some(bytes) = generation.files.get(f)
            && signer_lines(bytes) == 0
        {
            return error::refuse(format!(
                "the new `{f}` lists no key: it would leave the agent with no signers; nothing was changed"
            ));
        }
    }
    Ok(())
}

/// Refuses a run that has nothing to verify with, unless the operator said
/// `--insecure-no-verify` (logged on every run).
fn check_verification(opts: &PullOptions, report: &mut Report) -> Result<()> {
    if opts.insecure_no_verify {
        report.insecure_no_verify = true;
        log(
            "insecure-no-verify",
            serde_json::json!({ "warning": "signature verification is OFF (--insecure-no-verify): any commit on the branch is applied" }),
        );
        return Ok(());
    }
    let Some(p) = &opts.allowed_signers else {
        return error::refuse(
            "no allowed_signers (--allowed-signers, or `allowed_signers` in agent.toml): verification is mandatory; an operator can pass --insecure-no-verify",
        );
    };
    match std::fs::read(p) {
        Ok(b) if signer_lines(&b) > 0 => Ok(()),
        Ok(_) => error::refuse(format!("`{}` lists no key: nothing can be verified", p.display())),
        Err(e) => error::refuse(format!("cannot read the allowed_signers file `{}`: {e}", p.display())),
    }
}

/// What the history checks compare against.
struct Trust<'a> {
    state: &'a State,
    floor: Option<git2::Oid>,
    floor_target: &'a str,
}

/// Fetches the branch and proves the tip: fast-forward from the applied commit and the
/// floor, every unapplied commit signed, then the host's tree read and checked. `fresh`:
/// the mirror was just built, so a missing object is the remote's doing, not damage.
fn fetch_verified(
    opts: &PullOptions,
    dir: &StateDir,
    ctx: &Trust,
    fresh: bool,
    report: &mut Report,
) -> Result<(git2::Repository, git2::Oid, source::Generation)> {
    let floor = ctx.floor;
    let floor_target = ctx.floor_target;
    let (repo, commit) = source::fetch(&dir.path.join("mirror.git"), &opts.repo, &opts.branch, opts.limits)
        .map_err(|e| anyhow::Error::new(FetchFailed(format!("{e:#}"))))?;
    report.commit = Some(commit.to_string());
    crash_point("fetched");
    check_verification(opts, report)?;
    let last = ctx.state.applied_commit.as_deref().and_then(|c| git2::Oid::from_str(c).ok());
    source::check_fast_forward(&repo, last, commit, opts.allow_rollback, fresh)?;
    // The floor outlives a lost state directory: anything older is a rollback.
    if let Some(f) = floor
        && last != Some(f)
        && !opts.allow_rollback
    {
        if last.is_none() {
            log("state-lost", serde_json::json!({ "floor": f.to_string(), "file": floor_target }));
        }
        if !fresh && repo.find_commit(f).is_err() {
            return Err(anyhow::Error::new(source::MirrorDamaged(format!("the floor {f} cannot be read"))));
        }
        // Not in a fresh mirror's history at all: the branch no longer contains it.
        let descends = f == commit
            || (repo.find_commit(f).is_ok() && repo.graph_descendant_of(commit, f).map_err(source::damaged)?);
        if !descends {
            return error::refuse(format!(
                "{commit} does not descend from the pinned floor {f} (`{floor_target}`, kept outside the state directory): a rollback, or history rewritten after the agent's state was lost; an operator can pass --allow-rollback"
            ));
        }
    }
    let last = last.or(floor);
    // Every commit the host has not applied yet is verified, oldest first, before any
    // tree or blob is read: a signed tip on an unsigned parent would otherwise apply the
    // parent's change.
    if let (Some(signers), false) = (&opts.allowed_signers, opts.insecure_no_verify) {
        let range = source::unapplied(&repo, last, commit)?;
        for oid in &range {
            let who = source::verify_signature(&repo, *oid, signers).map_err(|e| match e.downcast_ref::<Refusal>() {
                Some(r) if *oid != commit => error::refusal(format!(
                    "{r}; it lies between the applied commit {} and the tip {commit}, and every commit in between must be signed",
                    last.map(|l| l.to_string()).unwrap_or_default()
                )),
                _ => e,
            })?;
            log("verified", serde_json::json!({ "commit": oid.to_string(), "signer": who }));
        }
    }
    let generation = source::read_generation(&repo, commit, &opts.host, &opts.branch, opts.limits)?;
    Ok((repo, commit, generation))
}

fn run(opts: &PullOptions, dir: &StateDir, report: &mut Report) -> Result<()> {
    let root = Root::open(&opts.root)?;
    // An apply that was interrupted (crash, kill, power loss) is undone first, so the
    // host is back on exactly the last applied generation before anything else happens.
    // Every place a killed run may have left a temporary file: the files it journaled,
    // the files of the applied generation, and the floor.
    let mut written: BTreeSet<String> = BTreeSet::new();
    if let Some(j) = dir.journal()? {
        written.extend(j.entries.iter().map(|e| e.target.clone()));
        if load_state(dir).applied_commit.as_deref() == Some(j.commit.as_str()) {
            // The crash came after the new state was recorded: the apply finished.
            dir.clear_journal()?;
        } else if opts.dry_run {
            anyhow::bail!("an interrupted apply of {} must be recovered first; run without --dry-run", j.commit);
        } else {
            log("recover", serde_json::json!({ "commit": j.commit, "files": j.entries.len() }));
            let undone = undo(&root, &opts.root, dir, &j)?;
            if !undone.not_restored.is_empty() {
                anyhow::bail!(
                    "an interrupted apply of {} could not be undone: {}; the host needs an operator",
                    j.commit,
                    undone.describe()
                );
            }
            if !undone.reload_failed.is_empty() {
                log("recover-reload-failed", serde_json::json!({ "units": undone.reload_failed }));
            }
            report.recovered = true;
        }
    }
    let state = load_state(dir);
    let floor_target = opts.floor.display().to_string();
    // What a killed run left behind (its temporary files beside the targets, staging
    // copies and backups in the state directory), removed under the lock.
    if !opts.dry_run {
        written.extend(state.files.keys().cloned());
        written.insert(floor_target.clone());
        clean_leftovers(&root, dir, written.iter())?;
    }
    let floor = read_floor(&root, &floor_target)?;
    let mirror = dir.path.join("mirror.git");
    let fresh = !mirror.exists();
    let ctx = Trust { state: &state, floor, floor_target: &floor_target };
    let (repo, commit, generation) = match fetch_verified(opts, dir, &ctx, fresh, report) {
        // A mirror whose objects cannot be read is rebuilt from the remote, once, and the
        // whole check starts again: corruption is never reported as an attack.
        Err(e) if e.downcast_ref::<source::MirrorDamaged>().is_some() && !fresh => {
            log("mirror-rebuilt", serde_json::json!({ "message": format!("mirror damaged, rebuilt: {e:#}") }));
            remove_path(&mirror)?;
            fetch_verified(opts, dir, &ctx, true, report)?
        }
        r => r?,
    };
    check_keeps_signers(opts, &generation)?;
    if generation.files.contains_key(&floor_target) {
        return error::refuse(format!("the plan writes the agent's own floor `{floor_target}`"));
    }
    let plain = decrypt_secrets(&root, &opts.host_key, &generation.secrets)?;
    crash_point("verified");

    // Compare with the host: what changes, and what drifted since the last apply.
    // (target, new bytes, mode, uid, gid, existed before)
    type Change<'a> = (&'a str, &'a [u8], u32, u32, u32, bool);
    let mut changes: Vec<Change> = Vec::new();
    for f in &generation.plan.files {
        let bytes = generation.files.get(&f.target).map(Vec::as_slice).unwrap_or_default();
        let mode = u32::from_str_radix(&f.mode, 8).unwrap_or(0o644);
        let (user, group) = f.owner.split_once(':').unwrap_or((f.owner.as_str(), f.owner.as_str()));
        let (uid, gid) = (lookup_id(&root, "/etc/passwd", user)?, lookup_id(&root, "/etc/group", group)?);
        let current = root.read(&f.target)?;
        let drifted = match (&current, state.files.get(&f.target)) {
            (Some((b, ..)), Some(h)) => sha256_hex(b) != *h,
            (None, Some(_)) => true,
            _ => false,
        };
        if drifted {
            report.drift.push(f.target.clone());
        }
        let same =
            current.as_ref().is_some_and(|(b, m, u, g)| b.as_slice() == bytes && *m == mode && *u == uid && *g == gid);
        let action = match (same, drifted, opts.drift) {
            (true, _, _) => "unchanged",
            (false, true, DriftPolicy::Report) => "drift-kept",
            (false, true, DriftPolicy::Enforce) => "drift-overwritten",
            (false, false, _) if current.is_none() => "create",
            (false, false, _) => "update",
        };
        report.files.push(FileReport { target: f.target.clone(), action });
        if matches!(action, "create" | "update" | "drift-overwritten") {
            changes.push((f.target.as_str(), bytes, mode, uid, gid, current.is_some()));
        }
    }
    // Secrets: compared by content (a hash of a plaintext is never kept), delivered
    // 0400 to the service's user; a rotated one reloads or restarts what reads it.
    let mut secret_targets: BTreeSet<&str> = BTreeSet::new();
    // Each changed service's directory and owner, made before its file is written.
    let mut secret_dirs: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut secret_reload: BTreeSet<String> = BTreeSet::new();
    let mut secret_restart: BTreeSet<String> = BTreeSet::new();
    for ((x, _), value) in generation.secrets.iter().zip(&plain) {
        for d in &x.deliveries {
            let (uid, gid, action) = secret_action(&root, d, value)?;
            let same = action == "unchanged";
            report.secrets.push(SecretReport {
                name: x.name.clone(),
                service: d.service.clone(),
                sha256: x.sha256.clone(),
                action,
            });
            if !same {
                changes.push((d.target.as_str(), value.as_slice(), 0o400, uid, gid, action == "rotate"));
                secret_targets.insert(d.target.as_str());
                secret_dirs.insert(format!("{}/{}", crate::secrets::RUN_DIR, d.service), (uid, gid));
                secret_reload.extend(d.reload.clone());
                secret_restart.extend(d.restart.clone());
            }
        }
    }
    // Files the previous generation wrote that this one no longer lists (a revoked
    // exposure's vhost): removed through the journal, with a backup and an undo. One
    // changed by hand is kept under the `report` policy, and said so.
    let mut removals: Vec<&str> = Vec::new();
    let mut removal_units: BTreeSet<String> = BTreeSet::new();
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    for (target, hash) in &state.files {
        if generation.files.contains_key(target) {
            continue;
        }
        let Some((bytes, ..)) = root.read(target)? else { continue };
        let drifted = sha256_hex(&bytes) != *hash;
        if drifted {
            report.drift.push(target.clone());
        }
        if drifted && opts.drift == DriftPolicy::Report {
            report.files.push(FileReport { target: target.clone(), action: "drift-kept" });
            kept.insert(target.clone(), hash.clone());
            continue;
        }
        report.files.push(FileReport { target: target.clone(), action: "remove" });
        removals.push(target.as_str());
        removal_units.extend(state.units.get(target).cloned());
    }
    if !report.drift.is_empty() {
        log("drift", serde_json::json!({ "files": report.drift, "policy": opts.drift }));
    }
    if opts.dry_run {
        report.result = "dry-run";
        return Ok(());
    }
    let units_of = |st: &mut State| {
        for f in &generation.plan.files {
            if let Some(u) = f.actions.reload.clone().or_else(|| f.actions.restart.clone()) {
                st.units.insert(f.target.clone(), u);
            }
        }
        st.units.retain(|t, _| st.files.contains_key(t));
    };
    if changes.is_empty() && removals.is_empty() {
        if state.applied_commit.as_deref() != Some(&commit.to_string()) {
            let mut st = state.clone();
            st.applied_commit = Some(commit.to_string());
            for f in &generation.plan.files {
                if let Some(b) = generation.files.get(&f.target) {
                    st.files.insert(f.target.clone(), sha256_hex(b));
                }
            }
            st.files.retain(|t, _| generation.files.contains_key(t) || kept.contains_key(t));
            units_of(&mut st);
            st.applied_time = Some(commit_time(&repo, commit));
            dir.save_applied_secrets(&commit.to_string(), &generation.secrets)?;
            dir.save_state(&st)?;
            write_floor(&root, &floor_target, commit)?;
            report.result = "applied";
        }
        return Ok(());
    }

    // Stage and validate the whole new tree with the native tools, in the state
    // directory's one staging directory (a killed run's copy is removed at the start).
    let staged = Staging::new(dir)?;
    for (target, bytes) in generation.files.iter() {
        let p = staged.path().join(target.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().context("parent")?).context("failed to stage")?;
        std::fs::write(&p, bytes).with_context(|| format!("failed to stage `{target}`"))?;
    }
    let changed: BTreeSet<&str> = changes.iter().map(|c| c.0).collect();
    let entries: Vec<_> = generation.plan.files.iter().filter(|f| changed.contains(f.target.as_str())).collect();
    let validators: BTreeSet<crate::artifact::Validator> = entries.iter().filter_map(|f| f.actions.validate).collect();
    for v in &validators {
        if let Err(e) = actions::run(actions::validator(*v, staged.path()), &format!("validation with {v}")) {
            let e = e.context(format!("the new files of {commit} do not validate; nothing was changed"));
            return Err(anyhow::Error::new(ValidationFailed(format!("{e:#}"))));
        }
    }
    crash_point("staged");

    // Journal and back up, then swap.
    let mut reload: BTreeSet<String> = entries.iter().filter_map(|f| f.actions.reload.clone()).collect();
    reload.extend(removal_units);
    let mut restart: BTreeSet<String> = entries.iter().filter_map(|f| f.actions.restart.clone()).collect();
    reload.extend(secret_reload);
    restart.extend(secret_restart);
    let mut journal = Journal {
        commit: commit.to_string(),
        entries: Vec::new(),
        reload: reload.iter().chain(&restart).cloned().collect(),
        deploy: entries.iter().filter_map(|f| f.actions.deploy.map(|d| (f.target.clone(), d))).collect(),
        dirs: Vec::new(),
    };
    // Directories the swap will create, journaled before they exist so an undo removes
    // them (`/etc/newsvc/sub` after a failed reload stays otherwise).
    for (target, ..) in &changes {
        for d in root.missing_dirs(target)? {
            if !journal.dirs.contains(&d) {
                journal.dirs.push(d);
            }
        }
    }
    journal.dirs.sort_by_key(|d| d.matches('/').count());
    for target in one_per_directory(changes.iter().map(|c| c.0)) {
        root.clean_temp_beside(target)?;
    }
    if !secret_dirs.is_empty() {
        root.ensure_dir(crate::secrets::RUN_DIR, 0o711, 0, 0)?;
        root.ensure_dir(&secret_backup_dir(), 0o700, 0, 0)?;
        for (d, (uid, gid)) in &secret_dirs {
            root.ensure_dir(d, 0o500, *uid, *gid)?;
        }
    }
    for (i, (target, ..)) in changes.iter().enumerate() {
        let secret = secret_targets.contains(target);
        let before = match root.read(target)? {
            Some((bytes, mode, uid, gid)) => {
                let name = format!("{i}");
                if secret {
                    let bytes = zeroize::Zeroizing::new(bytes);
                    root.write(&secret_backup(&name), &bytes, 0o400, 0, 0)?;
                } else {
                    state::write_atomic(&dir.backup(&name), &bytes)?;
                }
                Some((name, mode, uid, gid))
            }
            None => None,
        };
        journal.entries.push(JournalEntry {
            target: target.to_string(),
            before,
            secret,
            remove: false,
            swapped: false,
        });
    }
    for (i, target) in removals.iter().enumerate() {
        let Some((bytes, mode, uid, gid)) = root.read(target)? else { continue };
        let name = format!("r{i}");
        state::write_atomic(&dir.backup(&name), &bytes)?;
        journal.entries.push(JournalEntry {
            target: target.to_string(),
            before: Some((name, mode, uid, gid)),
            secret: false,
            remove: true,
            swapped: false,
        });
    }
    dir.save_journal(&journal)?;
    crash_point("journaled");
    let applied = (|| -> Result<()> {
        for (i, (target, bytes, mode, uid, gid, _)) in changes.iter().enumerate() {
            root.write(target, bytes, *mode, *uid, *gid)?;
            // Which files were actually swapped: the rollback restores those, never one
            // whose swap failed. Kept in memory only (rewriting the journal per file is
            // quadratic); after a crash the recovery restores every file that is no
            // longer its backup, which is the same set.
            journal.entries[i].swapped = true;
            crash_point("swapped");
        }
        for i in changes.len()..journal.entries.len() {
            root.remove(&journal.entries[i].target)?;
            journal.entries[i].swapped = true;
            crash_point("removed");
        }
        for u in &reload {
            actions::systemctl(actions::RELOAD, u)?;
            report.reloaded.push(u.clone());
        }
        for u in &restart {
            actions::systemctl("restart", u)?;
            report.restarted.push(u.clone());
        }
        crash_point("reloaded");
        for u in reload.iter().chain(&restart) {
            actions::systemctl("is-active", u).with_context(|| format!("`{u}` is not running after the change"))?;
        }
        if entries.iter().any(|f| f.actions.probe == Some(crate::artifact::Probe::Refetch)) {
            source::reachable(&opts.repo, &opts.branch)
                .context("the repository is unreachable after the change (a firewall that cuts the host off)")?;
        }
        // Containers last: the host's firewall and units are in place when they start.
        for (target, d) in &journal.deploy {
            let file = opts.root.join(target.trim_start_matches('/'));
            actions::deploy(*d, &file)?;
            report.deployed.push(target.clone());
            crash_point("deployed");
            actions::converge(*d, &file, actions::converge_deadline())
                .with_context(|| format!("the containers of `{target}` did not converge"))?;
        }
        Ok(())
    })();
    if let Err(e) = applied {
        log("rollback", serde_json::json!({ "commit": commit.to_string(), "reason": format!("{e:#}") }));
        let undone =
            undo(&root, &opts.root, dir, &journal).context("the rollback failed too; the host needs an operator")?;
        if !undone.not_restored.is_empty() {
            anyhow::bail!("{e:#}; {}; the host needs an operator", undone.describe());
        }
        return Err(anyhow::Error::new(RolledBack(format!("{e:#}; {}", undone.describe()))));
    }
    let mut st = State {
        applied_commit: Some(commit.to_string()),
        files: BTreeMap::new(),
        units: BTreeMap::new(),
        applied_time: Some(commit_time(&repo, commit)),
    };
    for (t, b) in &generation.files {
        st.files.insert(t.clone(), sha256_hex(b));
    }
    st.files.extend(kept);
    units_of(&mut st);
    // Drifted files kept by policy keep their drift visible next time.
    for f in report.files.iter().filter(|f| f.action == "drift-kept") {
        if let Some(h) = state.files.get(&f.target) {
            st.files.insert(f.target.clone(), h.clone());
        }
    }
    dir.save_applied_secrets(&commit.to_string(), &generation.secrets)?;
    dir.save_state(&st)?;
    write_floor(&root, &floor_target, commit)?;
    crash_point("recorded");
    remove_secret_backups(&root, &journal)?;
    dir.clear_journal()?;
    report.result = "applied";
    log(
        "applied",
        serde_json::json!({ "commit": commit.to_string(), "files": changes.len(), "reloaded": report.reloaded }),
    );
    Ok(())
}
