//! `medianest pull --boot`: the secrets of the applied commit, delivered again from the
//! local mirror after a reboot. The secrets directory is a tmpfs (`/run`), so a reboot
//! empties it, and the services that read it (Redis, PgBouncer, PostgreSQL's replica,
//! PowerDNS, containers) would fail until the next pull reached the network. The
//! generated `medianest-secrets.service` runs this early at boot, ordered before them:
//! no fetch (the commit was verified when it was applied; its secrets' ciphertext was
//! kept then in the agent's own root-only state, `applied-secrets.json`, because the
//! mirror is discarded when a later fetch is refused), no reload (nothing that reads
//! them runs yet), nothing else written.

use anyhow::{Context, Result};

use super::fsops::Root;
use super::state::StateDir;
use super::{PullOptions, Report, SecretReport, decrypt_secrets, secret_action, source};

/// Delivers the applied commit's secrets into the secrets directory; `report.result`
/// says `applied` when a file was written, `unchanged` otherwise.
pub fn run(opts: &PullOptions, dir: &StateDir, report: &mut Report) -> Result<()> {
    let root = Root::open(&opts.root)?;
    let Some(applied) = dir.state()?.applied_commit else {
        report.reason = Some("nothing was applied yet: no secrets to deliver".into());
        return Ok(());
    };
    report.commit = Some(applied.clone());
    // The secrets kept when the commit was applied; the mirror for an agent that kept
    // none (the mirror may be gone: a refused fetch discards it).
    let secrets = match dir.applied_secrets(&applied)? {
        Some(s) => s,
        None => {
            let mirror = dir.path.join("mirror.git");
            let repo = git2::Repository::open_bare(&mirror)
                .with_context(|| format!("failed to open the mirror `{}`", mirror.display()))?;
            let commit =
                git2::Oid::from_str(&applied).with_context(|| format!("the state names a bad commit `{applied}`"))?;
            source::read_generation(&repo, commit, &opts.host, &opts.branch, opts.limits)
                .with_context(|| format!("failed to read the applied commit {applied} from the mirror"))?
                .secrets
        }
    };
    let plain = decrypt_secrets(&root, &opts.host_key, &secrets)?;
    let mut wrote = false;
    for ((x, _), value) in secrets.iter().zip(&plain) {
        for d in &x.deliveries {
            let (uid, gid, action) = secret_action(&root, d, value)?;
            if action != "unchanged" {
                root.ensure_dir(crate::secrets::RUN_DIR, 0o711, 0, 0)?;
                root.ensure_dir(&format!("{}/{}", crate::secrets::RUN_DIR, d.service), 0o500, uid, gid)?;
                root.write(&d.target, value, 0o400, uid, gid)?;
                wrote = true;
            }
            report.secrets.push(SecretReport {
                name: x.name.clone(),
                service: d.service.clone(),
                sha256: x.sha256.clone(),
                action,
            });
        }
    }
    if wrote {
        report.result = "applied";
    }
    Ok(())
}
