//! `medianest secrets`: the operator's side of secrets delivery. Values are read from
//! stdin or an editor and written only as age ciphertexts under `site/secrets/`; nothing
//! here prints a value, and the only plaintext on disk is the editor's file, in a
//! private directory on a tmpfs, removed when the editor exits.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::{Analysis, Paths, analyze_files};
use crate::load::read_site;
use crate::model::{SecretNeed, Site};
use crate::secrets::{self, Recipient};
use crate::verify::secrets::recipient_problems;

/// One line of `secrets list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The secret's name.
    pub name: String,
    /// `ok`, `missing` (no ciphertext), `rekey` (recipients out of date), `unused` (no
    /// service names it) or `invalid` (not an age file of medianest).
    pub status: &'static str,
    /// Services that list it.
    pub services: Vec<String>,
    /// Hosts it is delivered to.
    pub hosts: Vec<String>,
    /// Recovery keys it is also encrypted to.
    pub recovery: usize,
}

/// Reads and analyzes the site; fails on any error that is not about secrets (those are
/// what these commands fix).
pub fn load(paths: &Paths) -> Result<Analysis> {
    let mut diags = crate::diag::Diagnostics::default();
    let files = read_site(&paths.site, &paths.display(&paths.site), &mut diags);
    let mut analysis = analyze_files(files, &paths.display(&paths.site));
    analysis.diags.extend(diags);
    if analysis
        .diags
        .sorted(&analysis.sources)
        .iter()
        .any(|d| d.severity == crate::diag::Severity::Error && !d.code.starts_with("secret-"))
    {
        bail!(
            "the site has errors:\n{}\nfix them first (`medianest check`)",
            analysis.diags.render_plain(&analysis.sources)
        );
    }
    Ok(analysis)
}

/// Every secret the site names or holds, by name.
pub fn list(site: &Site) -> Vec<Listed> {
    let needs = site.secret_needs();
    let mut out: Vec<Listed> = needs
        .iter()
        .map(|(name, need)| {
            let status = match site.secrets.file(name) {
                None => "missing",
                Some(f) => match &f.header {
                    None => "invalid",
                    Some(h) if h.label().is_some_and(|(n, _)| n == *name) => {
                        if recipient_problems(site, need, h).is_empty() { "ok" } else { "rekey" }
                    }
                    Some(_) => "rekey",
                },
            };
            Listed {
                name: name.to_string(),
                status,
                services: need.all_services().into_iter().map(|s| site.service(s).name.clone()).collect(),
                hosts: need.hosts.iter().map(|h| site.host(*h).name.clone()).collect(),
                recovery: site.secrets.recovery.len(),
            }
        })
        .collect();
    for f in &site.secrets.files {
        if f.name.as_deref().is_none_or(|n| !needs.contains_key(n)) {
            let status = if f.name.is_some() && f.header.is_some() { "unused" } else { "invalid" };
            let name = f.name.clone().unwrap_or_else(|| f.rel.clone());
            out.push(Listed { name, status, services: vec![], hosts: vec![], recovery: 0 });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Who `name` must be encrypted to; fails when a host that needs it has no key.
fn recipients_of<'a>(site: &'a Site, name: &str) -> Result<(SecretNeed<'a>, Vec<Recipient>)> {
    let needs = site.secret_needs();
    let Some(need) = needs.get(name).cloned() else {
        bail!("no service names the secret `{name}`: add it to the `secrets` of the services that need it first");
    };
    let keyless: Vec<&str> = need
        .hosts
        .iter()
        .map(|h| site.host(*h))
        .filter(|h| h.ssh_host_key.is_none())
        .map(|h| h.name.as_str())
        .collect();
    if !keyless.is_empty() {
        bail!(
            "`{name}` is needed on {}, which declare{} no `ssh_host_key`: add it to the host first",
            keyless.join(", "),
            if keyless.len() == 1 { "s" } else { "" }
        );
    }
    let r = site.secret_recipients(&need);
    Ok((need, r))
}

/// The path of a secret's ciphertext.
pub fn path_of(paths: &Paths, name: &str) -> PathBuf {
    paths.site.join(secrets::SITE_DIR).join(format!("{name}.age"))
}

/// Encrypts `value` as `name` to the recipients the site implies and writes
/// `site/secrets/<name>.age` (atomically). Returns the path written.
pub fn set(paths: &Paths, site: &Site, name: &str, value: &[u8]) -> Result<PathBuf> {
    if value.is_empty() {
        bail!("the value of `{name}` is empty");
    }
    let (_, recipients) = recipients_of(site, name)?;
    let bytes = secrets::encrypt(name, value, &recipients)?;
    let path = path_of(paths, name);
    write_atomic(&path, &bytes)?;
    Ok(path)
}

/// Decrypts `name` with the operator's identity (a recovery key).
pub fn reveal(site: &Site, name: &str, identity: &[Box<dyn age::Identity>]) -> Result<Zeroizing<Vec<u8>>> {
    let f = site.secrets.file(name).with_context(|| format!("`site/secrets/{name}.age` does not exist"))?;
    secrets::decrypt(name, &f.bytes, identity)
        .map_err(|e| anyhow::anyhow!("`site/secrets/{name}.age` cannot be decrypted with this identity: {e}"))
}

/// `secrets edit`: the current value (if any) in `$VISUAL`/`$EDITOR`, in a private
/// directory on a tmpfs; re-encrypted when it changed (or its recipients are out of
/// date). Returns whether the file was written.
pub fn edit(paths: &Paths, site: &Site, name: &str, identity: &[Box<dyn age::Identity>], editor: &str) -> Result<bool> {
    recipients_of(site, name)?;
    let before = match site.secrets.file(name) {
        Some(_) => reveal(site, name, identity)?,
        None => Zeroizing::new(Vec::new()),
    };
    let dir = private_tmpfs_dir()?;
    let file = dir.path().join(name);
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("failed to create `{}`", file.display()))?;
        f.write_all(&before).with_context(|| format!("failed to write `{}`", file.display()))?;
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .status()
        .with_context(|| format!("failed to run the editor `{editor}`"));
    let after =
        std::fs::read(&file).map(Zeroizing::new).with_context(|| format!("failed to read `{}`", file.display()));
    // The plaintext is overwritten before anything else can fail, and removed with
    // its directory.
    let written = after.as_ref().map_or(0, |a| a.len());
    let _ = std::fs::write(&file, vec![0u8; before.len().max(written)]);
    drop(dir);
    let status = status?;
    if !status.success() {
        bail!("the editor exited with {status}; `{name}` is unchanged");
    }
    let after = after?;
    let stale = site.secrets.file(name).and_then(|f| f.header.as_ref()).is_none_or(|h| {
        let needs = site.secret_needs();
        needs.get(name).is_none_or(|n| !recipient_problems(site, n, h).is_empty())
    });
    if *after == *before && !stale {
        return Ok(false);
    }
    set(paths, site, name, &after)?;
    Ok(true)
}

/// `secrets rekey`: re-encrypts every secret whose recipients are not what the site
/// implies now (`all`: every secret), decrypting with the operator's identity. Returns
/// the names rewritten.
pub fn rekey(paths: &Paths, site: &Site, identity: &[Box<dyn age::Identity>], all: bool) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for row in list(site) {
        if !(row.status == "rekey" || (all && row.status == "ok")) {
            continue;
        }
        let value = reveal(site, &row.name, identity)?;
        set(paths, site, &row.name, &value)?;
        done.push(row.name);
    }
    Ok(done)
}

/// A new directory, mode 0700, on a tmpfs (`$XDG_RUNTIME_DIR`, else `/dev/shm`;
/// `MEDIANEST_SECRETS_TMPDIR` overrides both): the editor's file never reaches a disk.
fn private_tmpfs_dir() -> Result<tempfile::TempDir> {
    let candidates: Vec<PathBuf> = match std::env::var_os("MEDIANEST_SECRETS_TMPDIR") {
        Some(d) => vec![d.into()],
        None => std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from("/dev/shm")])
            .collect(),
    };
    for base in &candidates {
        if is_tmpfs(base) {
            let dir = tempfile::Builder::new()
                .prefix("medianest-secret-")
                .tempdir_in(base)
                .with_context(|| format!("failed to create a private directory in `{}`", base.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("failed to make `{}` private", dir.path().display()))?;
            return Ok(dir);
        }
    }
    bail!(
        "no tmpfs to edit in (tried {}): the plaintext must not reach a disk; set XDG_RUNTIME_DIR or MEDIANEST_SECRETS_TMPDIR to a tmpfs directory",
        candidates.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )
}

fn is_tmpfs(dir: &Path) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    rustix::fs::statfs(dir).is_ok_and(|s| {
        let t = s.f_type;
        t == TMPFS_MAGIC || t == RAMFS_MAGIC
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a ciphertext path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create `{}`", dir.display()))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("failed to write in `{}`", dir.display()))?;
    tmp.write_all(bytes).with_context(|| format!("failed to write `{}`", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("failed to set the mode of `{}`", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow::anyhow!("failed to write `{}`: {}", path.display(), e.error))?;
    Ok(())
}
