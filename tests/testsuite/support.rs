//! Helpers shared by the suite: building fixture repositories in temp dirs, running the
//! binary, comparing trees both ways, and blessing expected output.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/testsuite/<rel>`.
pub fn suite(rel: &str) -> PathBuf {
    repo_root().join("tests/testsuite").join(rel)
}

/// Whether expected files should be rewritten (`MEDIANEST_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os("MEDIANEST_BLESS").is_some_and(|v| v == "1")
}

/// Copies every file under `from` into `to`, creating directories.
pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in read_tree(from) {
        let dest = to.join(&rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(dest, bytes).unwrap();
    }
}

/// Every file under `root` by relative `/` path.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(rel, fs::read(e.path()).unwrap());
        }
    }
    out
}

/// A temporary repository: `site/` from the base fixture, overlaid with `overlay/site`
/// and `overlay/templates` when given.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn base() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&suite("fixtures/base-site"), &dir.path().join("site"));
        Repo { dir }
    }

    pub fn with_overlay(overlay: &Path) -> Repo {
        let repo = Repo::base();
        for sub in ["site", "templates"] {
            if overlay.join(sub).is_dir() {
                copy_tree(&overlay.join(sub), &repo.path().join(sub));
            }
        }
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn generated(&self) -> BTreeMap<String, Vec<u8>> {
        read_tree(&self.path().join("generated"))
    }

    /// Runs `medianest -C <repo> --color never <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        medianest(self.path(), args)
    }
}

/// Runs the binary with `-C dir`.
pub fn medianest(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medianest"))
        .arg("-C")
        .arg(dir)
        .args(["--color", "never"])
        .args(args)
        .env_remove("MEDIANEST_BLESS")
        .output()
        .expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Compares a produced tree with an expected directory both ways (missing and extra
/// files), or rewrites the expected directory when blessing. Returns the differences.
pub fn compare_tree(actual: &BTreeMap<String, Vec<u8>>, expected_dir: &Path) -> Vec<String> {
    if blessing() {
        let _ = fs::remove_dir_all(expected_dir);
        for (rel, bytes) in actual {
            let p = expected_dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        return Vec::new();
    }
    let expected = read_tree(expected_dir);
    let mut problems = Vec::new();
    for (rel, bytes) in &expected {
        match actual.get(rel) {
            None => problems.push(format!("missing: {rel}")),
            Some(a) if a != bytes => problems.push(format!(
                "changed: {rel}\n{}",
                similar::TextDiff::from_lines(String::from_utf8_lossy(bytes), String::from_utf8_lossy(a))
                    .unified_diff()
                    .header("expected", "actual")
            )),
            _ => {}
        }
    }
    for rel in actual.keys() {
        if !expected.contains_key(rel) {
            problems.push(format!("extra: {rel}"));
        }
    }
    problems
}

/// Compares text with an expected file, or rewrites it when blessing.
pub fn compare_text(actual: &str, expected_file: &Path) -> Option<String> {
    if blessing() {
        fs::write(expected_file, actual).unwrap();
        return None;
    }
    let expected = fs::read_to_string(expected_file).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{} differs (bless with MEDIANEST_BLESS=1 after reviewing):\n{}",
            expected_file.display(),
            similar::TextDiff::from_lines(&expected, actual).unified_diff().header("expected", "actual")
        )
    })
}
