//! Fingerprints: a no-op `build` or `check` that does not compile.
//!
//! Compiling a large site costs far more than looking at it: on a 10,000-service site,
//! loading and compiling take about 0.7 s, while hashing the inputs and looking at the
//! output tree take about 30 ms. So, like cargo's fingerprints, every
//! successful `build` and clean `check` records what it saw in
//! `.medianest/fingerprint.json` (a local cache beside `generated/`, never committed):
//!
//! - the medianest binary (version, size and mtime of the executable), the site,
//!   template and output directories;
//! - a sha256 over every input file (`site/**/*.toml` and the template overrides);
//! - every file of the output tree with its size, mode and sha256, and, when it is safe
//!   to trust, the `stat` stamp (inode, mtime, ctime) it had when its content was known
//!   to be right;
//! - every directory of the tree, with the stamp it had when its names were listed and
//!   found right (a name added, removed or renamed changes a directory's ctime, so
//!   matching directory stamps spare listing the tree: one `stat` per file and
//!   directory is all a no-op run costs).
//!
//! The next run is *fresh* (nothing to compile, nothing to write) when the binary, the
//! directories and the input hash match, and the output tree holds exactly the recorded
//! files, each with its size and mode and either its recorded stamp or, when there is
//! none, its recorded sha256. Any doubt means "not fresh" and the normal pipeline runs;
//! a missing or unreadable fingerprint is never an error.
//!
//! Why a stamp can be trusted: any change of a file's content, mode or name sets its
//! ctime to the time of the change, and the ctime cannot be set back by a user. A stamp
//! is recorded only when the file's ctime is older than the moment its content was
//! checked, by more than the filesystem clock's granularity ([`RACY`]); a later change
//! then always gives a different ctime. Files written by this very run are "racy" and
//! get no stamp: the next run hashes them and records their stamps. This is git's index
//! and its racy-git rule.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::{ArtifactSet, MANIFEST, manifest_bytes, sha256_hex};
use crate::emit;

/// Version of the fingerprint file; a different one is ignored.
const FORMAT: u32 = 2;

/// Where the fingerprint lives, under the repository root.
pub const CACHE_DIR: &str = ".medianest";

/// How much older than the content check a file's ctime must be for its stamp to be
/// trusted: far above the kernel's timestamp granularity (one jiffy, at most 10 ms).
pub const RACY: Duration = Duration::from_millis(100);

/// The hash of everything the output depends on besides the binary: the site files
/// (already read, as [`crate::load::read_site`] returns them) and every file under
/// `templates`. `None` when an input could not be read: then nothing is cached.
pub fn digest(site_files: &[(String, Vec<u8>)], complete: bool, templates: &Path) -> Option<String> {
    if !complete {
        return None;
    }
    let mut h = Sha256::new();
    let mut add = |kind: &str, rel: &str, bytes: &[u8]| {
        // Length-prefixed fields: no two different input sets hash the same stream.
        for field in [kind.as_bytes(), rel.as_bytes(), bytes] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
    };
    for (rel, bytes) in site_files {
        add("site", rel, bytes);
    }
    if templates.is_dir() {
        for entry in walkdir::WalkDir::new(templates).sort_by_file_name() {
            let entry = entry.ok()?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(templates).unwrap_or(entry.path()).to_string_lossy();
            add("template", &rel, &fs::read(entry.path()).ok()?);
        }
    }
    Some(base16ct::lower::encode_string(&h.finalize()))
}

/// What the binary, directories and inputs of a run were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    tool: String,
    site: PathBuf,
    templates: PathBuf,
    out: PathBuf,
    inputs: String,
}

/// `.medianest/fingerprint.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Fingerprint {
    format: u32,
    key: Key,
    /// Every file of the output tree, sorted by path.
    files: Vec<Entry>,
    /// Every directory of the output tree (`""` is the tree itself), with the stamp it
    /// had when its names were last listed and found right. Only [`fresh`] stamps them,
    /// after listing the tree itself.
    dirs: Vec<Dir>,
}

/// A directory of the output tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dir {
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stamp: Option<Stamp>,
}

/// One file of the output tree as the last run left it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: String,
    size: u64,
    mode: u32,
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stamp: Option<Stamp>,
}

/// A file's `stat` at a time its content was known to be right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp { ino: m.ino(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()) }
    }

    /// Whether the ctime is older than `checked` by more than [`RACY`].
    fn settled(&self, checked: SystemTime) -> bool {
        let Ok(since) = checked.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let ctime = Duration::new(self.ctime.0.max(0) as u64, self.ctime.1.clamp(0, 999_999_999) as u32);
        self.ctime.0 >= 0 && ctime + RACY < since
    }
}

/// The cache key of a run, or `None` when it cannot be known (then nothing is cached).
fn key(paths: &crate::paths::Paths, digest: Option<&str>) -> Option<Key> {
    let inputs = digest?.to_string();
    let exe = std::env::current_exe().ok()?;
    let meta = fs::metadata(&exe).ok()?;
    let tool = format!(
        "medianest {} {} {} {}.{}",
        env!("CARGO_PKG_VERSION"),
        exe.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    Some(Key {
        tool,
        site: std::path::absolute(&paths.site).ok()?,
        templates: std::path::absolute(&paths.templates).ok()?,
        out: std::path::absolute(&paths.out).ok()?,
        inputs,
    })
}

fn file_of(paths: &crate::paths::Paths) -> PathBuf {
    paths.root.join(CACHE_DIR).join("fingerprint.json")
}

/// Whether the output tree is exactly what the last successful run of the same binary
/// on the same inputs left. Returns the number of files in the tree when it is. Files
/// that had no trusted stamp are hashed, and their stamps recorded for the next run.
pub fn fresh(paths: &crate::paths::Paths, digest: Option<&str>) -> Option<usize> {
    let key = key(paths, digest)?;
    let bytes = fs::read(file_of(paths)).ok()?;
    let mut fp: Fingerprint = serde_json::from_slice(&bytes).ok()?;
    if fp.format != FORMAT || fp.key != key {
        return None;
    }
    let checked = SystemTime::now();
    // Directories first, stat before listing: a file added, removed or renamed changes
    // its directory's ctime, so when every directory keeps its stamp the tree holds the
    // same names and there is no need to list it.
    let dirs: Vec<Option<Stamp>> = fp
        .dirs
        .par_iter()
        .map(|d| fs::symlink_metadata(paths.out.join(&d.path)).ok().filter(|m| m.is_dir()).map(|m| Stamp::of(&m)))
        .collect();
    let listed_before = fp.dirs.iter().zip(&dirs).all(|(d, now)| d.stamp.is_some() && d.stamp == *now);
    if !listed_before {
        let mut on_disk = emit::list_tree(&paths.out).ok()?;
        on_disk.sort();
        if on_disk.len() != fp.files.len() || on_disk.iter().zip(&fp.files).any(|(p, e)| *p != e.path) {
            return None;
        }
    }
    // Then every file: its stamp, or its content.
    let files: Vec<Option<Option<Stamp>>> = fp
        .files
        .par_iter()
        .map(|entry| {
            let path = paths.out.join(&entry.path);
            let meta = fs::symlink_metadata(&path).ok()?;
            if !meta.is_file() || meta.len() != entry.size || meta.permissions().mode() & 0o777 != entry.mode {
                return None;
            }
            let stamp = Stamp::of(&meta);
            if entry.stamp == Some(stamp) {
                return Some(None);
            }
            let content = fs::read(&path).ok()?;
            (sha256_hex(&content) == entry.sha256).then_some(Some(stamp))
        })
        .collect();
    let mut restamped = false;
    for (entry, verified) in fp.files.iter_mut().zip(files) {
        if let Some(stamp) = verified?
            && stamp.settled(checked)
        {
            entry.stamp = Some(stamp);
            restamped = true;
        }
    }
    for (d, now) in fp.dirs.iter_mut().zip(dirs) {
        if d.stamp.is_none() && now.is_some_and(|s| s.settled(checked)) {
            d.stamp = now;
            restamped = true;
        }
    }
    if restamped {
        save(paths, &fp);
    }
    Some(fp.files.len())
}

/// Records that the output tree holds exactly `set` and its manifest, as verified or
/// written by a run that started looking at the tree at `checked`. A failure to write
/// the cache is not an error: the next run compiles.
pub fn record(paths: &crate::paths::Paths, digest: Option<&str>, set: &ArtifactSet, checked: SystemTime) {
    let Some(key) = key(paths, digest) else {
        forget(paths);
        return;
    };
    let manifest = manifest_bytes(set);
    let mut expected: Vec<(&str, u64, u32, String)> = set
        .values()
        .map(|a| (a.meta.path.as_str(), a.bytes.len() as u64, emit::tree_mode(a), a.sha256().to_string()))
        .collect();
    expected.push((MANIFEST, manifest.len() as u64, 0o644, sha256_hex(&manifest)));
    expected.sort_by(|a, b| a.0.cmp(b.0));
    let files: Vec<Entry> = expected
        .into_iter()
        .map(|(path, size, mode, sha256)| {
            // A stamp only for a file that is as expected and settled since `checked`.
            let stamp = fs::symlink_metadata(paths.out.join(path)).ok().and_then(|m| {
                let s = Stamp::of(&m);
                (m.is_file() && m.len() == size && m.permissions().mode() & 0o777 == mode && s.settled(checked))
                    .then_some(s)
            });
            Entry { path: path.to_string(), size, mode, sha256, stamp }
        })
        .collect();
    let dirs = std::iter::once("")
        .chain(emit::parent_dirs(files.iter().map(|e| e.path.as_str())))
        .map(|d| Dir { path: d.to_string(), stamp: None })
        .collect();
    save(paths, &Fingerprint { format: FORMAT, key, files, dirs });
}

/// Removes the fingerprint (after a run that changed the tree without recording it).
pub fn forget(paths: &crate::paths::Paths) {
    let _ = fs::remove_file(file_of(paths));
}

fn save(paths: &crate::paths::Paths, fp: &Fingerprint) {
    let dir = paths.root.join(CACHE_DIR);
    if !dir.is_dir() {
        if fs::create_dir_all(&dir).is_err() {
            return;
        }
        // Like cargo's `target/`: ignored by git and by backup tools, whatever the
        // repository's own ignore files say.
        let _ = fs::write(dir.join(".gitignore"), "# Local cache of medianest; never committed.\n*\n");
        let _ = fs::write(
            dir.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by medianest.\n",
        );
    }
    let Ok(bytes) = serde_json::to_vec(fp) else { return };
    let _ = emit::write_if_changed(&file_of(paths), &bytes, 0o644);
}
