//! The same site gives byte-identical output whatever the thread count, the order the
//! site files were created in, or the working directory; and no output names the build
//! machine (absolute paths, host name).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::*;

fn build_with(repo: &Path, cwd: &Path, dir_arg: &str, threads: &str) -> BTreeMap<String, Vec<u8>> {
    let out = Command::new(env!("CARGO_BIN_EXE_medianest"))
        .current_dir(cwd)
        .args(["-C", dir_arg, "--color", "never", "build"])
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    read_tree(&repo.join("generated"))
}

/// A copy of `site` whose files are created in reverse order.
fn reversed_copy(site: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = read_tree(site).into_iter().rev().collect();
    for (rel, bytes) in files {
        let p = dir.path().join("site").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    dir
}

fn assert_same_everywhere(site: &Path) {
    let a = tempfile::tempdir().unwrap();
    copy_tree(site, &a.path().join("site"));
    let one = build_with(a.path(), a.path(), ".", "1");
    assert!(!one.is_empty());
    std::fs::remove_dir_all(a.path().join("generated")).unwrap();
    let many = build_with(a.path(), Path::new("/"), a.path().to_str().unwrap(), "8");
    assert!(one == many, "1 thread and 8 threads differ");

    let b = reversed_copy(site);
    let reversed = build_with(b.path(), b.path(), ".", "3");
    assert!(one == reversed, "creation order changed the output");

    let machine: Vec<String> = [
        a.path().to_string_lossy().into_owned(),
        b.path().to_string_lossy().into_owned(),
        repo_root().to_string_lossy().into_owned(),
    ]
    .into_iter()
    .chain(std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| h.len() > 3))
    .collect();
    for (rel, bytes) in &one {
        // Secrets' ciphertexts are copied byte for byte from site/secrets/ (binary age).
        if rel.ends_with(".age") {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        for m in &machine {
            assert!(!text.contains(m.as_str()), "{rel} contains `{m}` from the build machine");
        }
        assert!(!text.contains('\r'), "{rel} has CR line ends");
        assert!(text.ends_with('\n'), "{rel} has no final newline");
    }
}

#[test]
fn fixture_site_output_is_deterministic() {
    assert_same_everywhere(&suite("fixtures/base-site"));
}

#[test]
fn reference_site_output_is_deterministic() {
    assert_same_everywhere(&repo_root().join("site"));
}
