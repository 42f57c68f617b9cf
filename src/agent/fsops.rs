//! Reading and writing files under the host root without ever following a symlink.
//!
//! The root is opened once as a directory fd; every path below it is walked one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY`, so a symlinked directory on the
//! host (`/etc/nginx -> /root`) stops the walk instead of redirecting it. A file is
//! replaced by writing a temporary file in the same directory (created `0600`), setting
//! its mode and owner on the fd, `fsync`, `rename` over the target and `fsync` of the
//! directory: a reader (or a crash) sees the old file or the new one, never a mix, and
//! the final name never exists with the wrong permissions.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};

use super::error::refusal;

/// A file on the host: content, mode, uid, gid.
pub type HostFile = (Vec<u8>, u32, u32, u32);

/// A host root opened as a directory.
pub struct Root {
    fd: OwnedFd,
    /// Shown in messages.
    pub shown: String,
}

/// The components of an absolute target path, checked: no empty, `.`, `..` or NUL part.
pub fn components(target: &str) -> Result<Vec<&str>> {
    let rel = target.strip_prefix('/').with_context(|| format!("`{target}` is not absolute"))?;
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.chars().any(char::is_control)) {
        bail!("`{target}` has an unsafe path component");
    }
    Ok(parts)
}

fn open_dir_at(dir: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Root {
    /// Opens the root directory.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("failed to open the root `{}`", path.display()))?;
        Ok(Root { fd, shown: path.display().to_string() })
    }

    /// Walks to the parent directory of `target`; `create` makes missing directories
    /// (mode 0755). Fails on a symlink or non-directory in the way.
    fn parent(&self, target: &str, create: bool) -> Result<Option<(OwnedFd, String)>> {
        let parts = components(target)?;
        let (name, dirs) = parts.split_last().context("empty path")?;
        let mut cur = rustix::io::dup(&self.fd).context("dup")?;
        let mut walked = String::new();
        for d in dirs {
            walked.push('/');
            walked.push_str(d);
            cur = match open_dir_at(&cur, d) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    rustix::fs::mkdirat(&cur, *d, Mode::from_raw_mode(0o755))
                        .with_context(|| format!("failed to create `{walked}` under `{}`", self.shown))?;
                    open_dir_at(&cur, d).with_context(|| format!("failed to open `{walked}`"))?
                }
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                    return Err(refusal(format!(
                        "`{walked}` on the host is a symlink or not a directory; refusing to write through it"
                    )));
                }
                Err(e) => return Err(e).with_context(|| format!("failed to open `{walked}` under `{}`", self.shown)),
            };
        }
        Ok(Some((cur, name.to_string())))
    }

    /// The current content, mode, uid and gid of `target`; `None` when it does not exist.
    /// A symlink at the target is an error; so is anything but a regular file (a FIFO
    /// would block `open` forever while the run holds the lock), checked before opening,
    /// and the open itself never blocks (`O_NONBLOCK`) in case it is swapped in between.
    pub fn read(&self, target: &str) -> Result<Option<HostFile>> {
        let Some((dir, name)) = self.parent(target, false)? else { return Ok(None) };
        match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => refuse_special(target, FileType::from_raw_mode(st.st_mode))?,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("failed to stat `{target}`")),
        }
        let fd = match rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(refusal(format!("`{target}` on the host is a symlink; refusing to touch it")));
            }
            Err(e) => return Err(e).with_context(|| format!("failed to open `{target}`")),
        };
        let st = rustix::fs::fstat(&fd).with_context(|| format!("failed to stat `{target}`"))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => bail!("`{target}` on the host is a directory"),
            other => refuse_special(target, other)?,
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut bytes).with_context(|| format!("failed to read `{target}`"))?;
        Ok(Some((bytes, st.st_mode & 0o7777, st.st_uid, st.st_gid)))
    }

    /// Atomically replaces `target` with `bytes`, `mode`, `uid`, `gid`.
    pub fn write(&self, target: &str, bytes: &[u8], mode: u32, uid: u32, gid: u32) -> Result<()> {
        let (dir, name) = self.parent(target, true)?.context("parent exists after create")?;
        match rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                return Err(refusal(format!(
                    "`{target}` on the host is a symlink; refusing to replace what it points to"
                )));
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                bail!("`{target}` on the host is a directory")
            }
            Ok(st) => refuse_special(target, FileType::from_raw_mode(st.st_mode))?,
            _ => {}
        }
        let tmp = format!(".{name}.medianest-{}.tmp", std::process::id());
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| format!("failed to create a temporary file beside `{target}`"))?;
        let result = (|| -> Result<()> {
            rustix::fs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .with_context(|| format!("failed to set the owner of `{target}`"))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .with_context(|| format!("failed to set the mode of `{target}`"))?;
            let mut f = std::fs::File::from(rustix::io::dup(&fd)?);
            f.write_all(bytes).with_context(|| format!("failed to write `{target}`"))?;
            rustix::fs::fsync(&fd).with_context(|| format!("failed to sync `{target}`"))?;
            crate::agent::crash_point("before-rename");
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, name.as_str())
                .with_context(|| format!("failed to replace `{target}`"))?;
            rustix::fs::fsync(&dir).with_context(|| format!("failed to sync the directory of `{target}`"))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Makes the directory `dir` exist (missing parents 0755) and gives it `mode` and
    /// its owner, never through a symlink: the secrets tmpfs is traversable, not
    /// listable, and each service's directory is its own.
    pub fn ensure_dir(&self, dir: &str, mode: u32, uid: u32, gid: u32) -> Result<()> {
        let (fd, _) = self.parent(&format!("{dir}/-"), true)?.context("the directory exists after create")?;
        rustix::fs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .with_context(|| format!("failed to set the owner of `{dir}`"))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).with_context(|| format!("failed to set the mode of `{dir}`"))
    }

    /// The directories a write of `target` would create, outermost first.
    pub fn missing_dirs(&self, target: &str) -> Result<Vec<String>> {
        let parts = components(target)?;
        let (_, dirs) = parts.split_last().context("empty path")?;
        let mut cur = rustix::io::dup(&self.fd).context("dup")?;
        let mut walked = String::new();
        let mut missing = Vec::new();
        for d in dirs {
            walked.push('/');
            walked.push_str(d);
            if !missing.is_empty() {
                missing.push(walked.clone());
                continue;
            }
            match open_dir_at(&cur, d) {
                Ok(fd) => cur = fd,
                Err(rustix::io::Errno::NOENT) => missing.push(walked.clone()),
                // The write refuses these itself, with its reason.
                Err(_) => return Ok(Vec::new()),
            }
        }
        Ok(missing)
    }

    /// Removes the empty directory `dir`, if it exists (an undo of one the apply made).
    pub fn remove_dir(&self, dir: &str) -> Result<()> {
        let Some((parent, name)) = self.parent(dir, false)? else { return Ok(()) };
        match rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("failed to remove the directory `{dir}`")),
        }
        rustix::fs::fsync(&parent).with_context(|| format!("failed to sync the directory above `{dir}`"))
    }

    /// Removes the temporary files a killed writer left beside `target`
    /// (`.<name>.medianest-<pid>.tmp`, possibly already with the final mode); returns how
    /// many. The caller holds the run lock, so no writer is alive.
    pub fn clean_temp_beside(&self, target: &str) -> Result<usize> {
        let Some((dir, _)) = self.parent(target, false)? else { return Ok(0) };
        let mut names = Vec::new();
        let listing =
            rustix::fs::Dir::read_from(&dir).with_context(|| format!("failed to list the directory of `{target}`"))?;
        for e in listing {
            let e = e.with_context(|| format!("failed to list the directory of `{target}`"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if is_temp_name(&name) {
                names.push(name);
            }
        }
        for n in &names {
            match rustix::fs::unlinkat(&dir, n.as_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to remove the leftover `{n}` beside `{target}`"));
                }
            }
        }
        Ok(names.len())
    }

    /// Removes `target` (a file the new generation added), if it exists.
    pub fn remove(&self, target: &str) -> Result<()> {
        let Some((dir, name)) = self.parent(target, false)? else { return Ok(()) };
        match rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e).with_context(|| format!("failed to remove `{target}`")),
        }
        rustix::fs::fsync(&dir).with_context(|| format!("failed to sync the directory of `{target}`"))?;
        Ok(())
    }
}

/// Whether `name` is one of [`Root::write`]'s temporary files.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .and_then(|n| n.rsplit_once(".medianest-"))
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses anything at a managed path that is not a regular file (a FIFO, a socket, a
/// device): the agent never opens one.
fn refuse_special(target: &str, kind: FileType) -> Result<()> {
    match kind {
        FileType::RegularFile | FileType::Symlink | FileType::Directory => Ok(()),
        other => Err(refusal(format!(
            "`{target}` on the host is not a regular file ({other:?}); refusing to open or replace it"
        ))),
    }
}

/// Looks up a user or group id by name in the host root's `/etc/passwd` or `/etc/group`
/// (numbers are taken as they are; `root` is 0 even without the files).
pub fn lookup_id(root: &Root, file: &str, name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    if let Some((bytes, ..)) = root.read(file)? {
        for line in String::from_utf8_lossy(&bytes).lines() {
            let mut f = line.split(':');
            if f.next() == Some(name)
                && let Some(id) = f.nth(1).and_then(|x| x.parse().ok())
            {
                return Ok(id);
            }
        }
    }
    if name == "root" {
        return Ok(0);
    }
    bail!("no `{name}` in the host's `{file}`")
}
