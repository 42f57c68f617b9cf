//! What the agent remembers between runs, all under its state directory: the applied
//! commit and file hashes (`state.json`), the journal of an apply in progress with
//! backups of the files it replaces, the run lock, and Prometheus textfile metrics.
//! Every state file is replaced atomically (temp + fsync + rename + directory fsync).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The last commit applied successfully.
    pub applied_commit: Option<String>,
    /// sha256 of every file that commit wrote, by target path.
    pub files: BTreeMap<String, String>,
    /// The unit each managed file's change reloads (from its plan entry): what reloads
    /// when a later plan drops the file.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
    /// The applied commit's committer time (Unix seconds): exported so an alert fires
    /// when no new signed commit arrives (a freeze, or a branch that vanished).
    #[serde(default)]
    pub applied_time: Option<i64>,
}

/// One file of an apply in progress, with what to restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Target path.
    pub target: String,
    /// The file before the apply: `(backup file name, mode, uid, gid)`, or `None` when it
    /// did not exist (a rollback removes it).
    pub before: Option<(String, u32, u32, u32)>,
    /// A delivered secret: its backup is in the secrets tmpfs, not the state directory.
    #[serde(default)]
    pub secret: bool,
    /// The apply removes the file (the new plan no longer lists it).
    #[serde(default)]
    pub remove: bool,
    /// Set (in memory) once the swap or removal of this file has happened: what a
    /// rollback restores. A recovery after a crash restores every file whose content,
    /// mode or owner is no longer its backup's, which is the same set.
    #[serde(default)]
    pub swapped: bool,
}

/// `journal.json`: present only while an apply is in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// Commit being applied.
    pub commit: String,
    /// Files being replaced.
    pub entries: Vec<JournalEntry>,
    /// Units to reload after restoring.
    pub reload: Vec<String>,
    /// Files whose containers were deployed: after restoring, the previous file is
    /// deployed again (or, when there was none, the new one torn down first).
    #[serde(default)]
    pub deploy: Vec<(String, crate::artifact::Deploy)>,
    /// Directories the apply creates, outermost first: an undo removes them.
    #[serde(default)]
    pub dirs: Vec<String>,
}

/// A secret of a plan with its ciphertext.
pub type Sealed = (crate::artifact::PlanSecret, Vec<u8>);

/// The file of [`StateDir::save_applied_secrets`].
const APPLIED_SECRETS: &str = "applied-secrets.json";

/// The applied commit's secrets, as kept for a boot delivery.
#[derive(Serialize, Deserialize)]
struct AppliedSecrets {
    commit: String,
    secrets: Vec<KeptSecret>,
}

/// One kept secret: its plan entry and its ciphertext in hex.
#[derive(Serialize, Deserialize)]
struct KeptSecret {
    plan: crate::artifact::PlanSecret,
    ciphertext: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    anyhow::ensure!(s.len().is_multiple_of(2) && s.is_ascii(), "odd or non-ASCII hex");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("bad hex")).collect()
}

/// The state directory.
pub struct StateDir {
    /// Its path.
    pub path: PathBuf,
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] with the file's mode (a temporary file is created 0600).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("state files live in a directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("failed to create a file in `{}`", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("failed to write `{}`", path.display()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of `{}`", path.display()))?;
    tmp.as_file().sync_all().with_context(|| format!("failed to sync `{}`", path.display()))?;
    tmp.persist(path).with_context(|| format!("failed to replace `{}`", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to sync `{}`", dir.display()))?;
    Ok(())
}

impl StateDir {
    /// Opens (and creates) the state directory.
    pub fn open(path: &Path) -> Result<StateDir> {
        std::fs::create_dir_all(path.join("backup"))
            .with_context(|| format!("failed to create `{}`", path.display()))?;
        Ok(StateDir { path: path.to_path_buf() })
    }

    /// Takes the run lock, or `None` when another run holds it. `flock` on an open file:
    /// the kernel drops it when the holder dies, even by `kill -9`.
    pub fn lock(&self) -> Result<Option<OwnedFd>> {
        let p = self.path.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("failed to open `{}`", p.display()))?;
        let fd = OwnedFd::from(f);
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(fd)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e).context("failed to lock"),
        }
    }

    /// The saved state (empty on the first run).
    pub fn state(&self) -> Result<State> {
        let p = self.path.join("state.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("`{}` is corrupt", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", p.display())),
        }
    }

    /// Saves the state.
    pub fn save_state(&self, s: &State) -> Result<()> {
        write_atomic(&self.path.join("state.json"), &serde_json::to_vec_pretty(s)?)
    }

    /// Keeps the applied commit's secrets (ciphertext and where each goes) for a boot
    /// delivery: the mirror they came from is discarded when a later fetch is refused,
    /// and a reboot before the next good pull must still find them. Ciphertext only,
    /// in the root-only state directory.
    pub fn save_applied_secrets(&self, commit: &str, secrets: &[Sealed]) -> Result<()> {
        let kept = AppliedSecrets {
            commit: commit.to_string(),
            secrets: secrets.iter().map(|(p, c)| KeptSecret { plan: p.clone(), ciphertext: hex(c) }).collect(),
        };
        write_atomic_mode(&self.path.join(APPLIED_SECRETS), &serde_json::to_vec_pretty(&kept)?, 0o600)
    }

    /// The secrets kept for `commit` by [`Self::save_applied_secrets`], or `None` when
    /// none were kept for it (an agent from before this file, or a crash between the two
    /// writes: the caller falls back to the mirror).
    pub fn applied_secrets(&self, commit: &str) -> Result<Option<Vec<Sealed>>> {
        let p = self.path.join(APPLIED_SECRETS);
        let kept: AppliedSecrets = match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("`{}` is corrupt", p.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", p.display())),
        };
        if kept.commit != commit {
            return Ok(None);
        }
        kept.secrets
            .into_iter()
            .map(|k| {
                let bytes = unhex(&k.ciphertext).with_context(|| format!("`{}` is corrupt", p.display()))?;
                // The same check as a fetched ciphertext against its plan.
                anyhow::ensure!(
                    crate::artifact::sha256_hex(&bytes) == k.plan.sha256,
                    "`{}`: the kept ciphertext of `{}` does not match its hash",
                    p.display(),
                    k.plan.name
                );
                Ok(Some((k.plan, bytes)))
            })
            .collect::<Result<Option<Vec<_>>>>()
    }

    /// The journal of an interrupted apply, if any.
    pub fn journal(&self) -> Result<Option<Journal>> {
        let p = self.path.join("journal.json");
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("`{}` is corrupt", p.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("failed to read `{}`", p.display())),
        }
    }

    /// Writes the journal (before the first file is replaced).
    pub fn save_journal(&self, j: &Journal) -> Result<()> {
        write_atomic(&self.path.join("journal.json"), &serde_json::to_vec_pretty(j)?)
    }

    /// Removes the journal and the backups (after a finished apply or rollback).
    pub fn clear_journal(&self) -> Result<()> {
        match std::fs::remove_file(self.path.join("journal.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("failed to remove the journal"),
        }
        std::fs::File::open(&self.path).and_then(|d| d.sync_all()).context("failed to sync the state directory")?;
        let backups = self.path.join("backup");
        if let Ok(entries) = std::fs::read_dir(&backups) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Path of a backup file.
    pub fn backup(&self, name: &str) -> PathBuf {
        self.path.join("backup").join(name)
    }

    /// Writes the Prometheus textfile metrics into the state directory (where the next
    /// run reads its last success) and, when it exists, node exporter's textfile
    /// directory, readable by all: the exporter runs as `prometheus`, and the state
    /// directory is root-only (0700).
    pub fn write_metrics(&self, m: &Metrics, textfile_dir: &Path) -> Result<()> {
        let mut s = String::new();
        s.push_str("# HELP medianest_pull_last_attempt_timestamp_seconds When the agent last ran.\n# TYPE medianest_pull_last_attempt_timestamp_seconds gauge\n");
        s.push_str(&format!("medianest_pull_last_attempt_timestamp_seconds {}\n", m.last_attempt));
        s.push_str("# HELP medianest_pull_last_success_timestamp_seconds When a run last ended with the host on a verified commit.\n# TYPE medianest_pull_last_success_timestamp_seconds gauge\n");
        s.push_str(&format!("medianest_pull_last_success_timestamp_seconds {}\n", m.last_success));
        s.push_str("# HELP medianest_pull_applied_commit_info The commit the host runs.\n# TYPE medianest_pull_applied_commit_info gauge\n");
        s.push_str(&format!("medianest_pull_applied_commit_info{{commit=\"{}\"}} 1\n", m.commit));
        s.push_str("# HELP medianest_pull_applied_commit_timestamp_seconds Committer time of the applied commit: alert when it grows older than CI's signed heartbeat interval.\n# TYPE medianest_pull_applied_commit_timestamp_seconds gauge\n");
        s.push_str(&format!("medianest_pull_applied_commit_timestamp_seconds {}\n", m.applied_time));
        s.push_str("# HELP medianest_pull_drift_files Managed files changed on the host since the last apply.\n# TYPE medianest_pull_drift_files gauge\n");
        s.push_str(&format!("medianest_pull_drift_files {}\n", m.drift));
        s.push_str("# HELP medianest_pull_duration_seconds How long the last run took.\n# TYPE medianest_pull_duration_seconds gauge\n");
        s.push_str(&format!("medianest_pull_duration_seconds {:.3}\n", m.seconds));
        s.push_str("# HELP medianest_pull_result Result of the last run (0 ok, 1 refused, 3 rolled back, 5 fetch failed).\n# TYPE medianest_pull_result gauge\n");
        s.push_str(&format!("medianest_pull_result {}\n", m.result));
        s.push_str("# HELP medianest_pull_verification_disabled 1 when the last run applied without checking signatures (--insecure-no-verify).\n# TYPE medianest_pull_verification_disabled gauge\n");
        s.push_str(&format!("medianest_pull_verification_disabled {}\n", u8::from(m.insecure_no_verify)));
        if !m.secrets.is_empty() {
            s.push_str("# HELP medianest_pull_secret_info A secret of the host's plan: name, service and the sha256 of its ciphertext (never a value).\n# TYPE medianest_pull_secret_info gauge\n");
            for (name, service, sha) in &m.secrets {
                s.push_str(&format!(
                    "medianest_pull_secret_info{{name=\"{name}\",service=\"{service}\",ciphertext_sha256=\"{sha}\"}} 1\n"
                ));
            }
        }
        write_atomic(&self.path.join("medianest.prom"), s.as_bytes())?;
        if textfile_dir.is_dir() {
            let target = textfile_dir.join("medianest.prom");
            write_atomic_mode(&target, s.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// The metrics written by the previous run, for the timestamps it carries.
    pub fn previous_success(&self) -> u64 {
        std::fs::read_to_string(self.path.join("medianest.prom"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("medianest_pull_last_success_timestamp_seconds ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Values of the textfile metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Unix time of this run.
    pub last_attempt: u64,
    /// Unix time of the last successful run.
    pub last_success: u64,
    /// Commit the host runs.
    pub commit: String,
    /// Its committer time (Unix seconds; 0 when unknown).
    pub applied_time: i64,
    /// Drifted files.
    pub drift: usize,
    /// Exit code of this run.
    pub result: i32,
    /// Duration of this run.
    pub seconds: f64,
    /// The plan's secrets: `(name, service, ciphertext sha256)`.
    pub secrets: Vec<(String, String, String)>,
    /// Whether signatures went unchecked (`--insecure-no-verify`).
    pub insecure_no_verify: bool,
}
