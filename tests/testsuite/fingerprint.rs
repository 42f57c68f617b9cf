//! Fingerprints (`src/fingerprint.rs`): a no-op `build` or `check` skips compiling, and
//! nothing that changes the inputs or the output tree is ever missed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::*;

const NOTHING_CHANGED: &str = "nothing changed since the last build";

/// Longer than `fingerprint::RACY`: files written before now get trusted stamps.
fn settle() {
    std::thread::sleep(Duration::from_millis(250));
}

/// A built repository whose fingerprint holds trusted stamps for every file.
fn settled_repo() -> Repo {
    let repo = Repo::base();
    let out = repo.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    settle();
    // The first no-op build hashes the files the build wrote and stamps them.
    let out = repo.run(&["build"]);
    assert!(stderr(&out).contains(NOTHING_CHANGED), "{}", stderr(&out));
    let fp = fs::read_to_string(repo.path().join(".medianest/fingerprint.json")).unwrap();
    let files = fp.matches("\"path\"").count();
    assert_eq!(fp.matches("\"stamp\"").count(), files, "every settled file is stamped");
    repo
}

#[test]
fn no_op_build_and_check_skip_compiling_and_touch_nothing() {
    let repo = settled_repo();
    let before = mtimes(&repo);
    let out = repo.run(&["build"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains(NOTHING_CHANGED), "{}", stderr(&out));
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("is up to date"), "{}", stderr(&out));
    assert_eq!(before, mtimes(&repo));
    // The cache ignores itself in git and tags itself for backup tools.
    assert_eq!(fs::read_to_string(repo.path().join(".medianest/.gitignore")).unwrap().lines().last(), Some("*"));
    assert!(repo.path().join(".medianest/CACHEDIR.TAG").is_file());
}

fn mtimes(repo: &Repo) -> Vec<(String, std::time::SystemTime)> {
    walkdir::WalkDir::new(repo.path().join("generated"))
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.path().display().to_string(), e.metadata().unwrap().modified().unwrap())
        })
        .collect()
}

#[test]
fn a_same_size_edit_that_keeps_the_mtime_is_still_caught() {
    let repo = settled_repo();
    let p = repo.path().join("generated/hosts/app1/root/etc/hosts");
    let old = fs::metadata(&p).unwrap().modified().unwrap();
    let text = fs::read_to_string(&p).unwrap().replace("10.1.3.10", "10.1.3.99");
    fs::write(&p, &text).unwrap();
    // Put the mtime back, as `touch -r` or an archive tool would: only the ctime says it
    // changed, and the ctime cannot be set back.
    fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("changed  generated/hosts/app1/root/etc/hosts"), "{}", stdout(&out));
    let out = repo.run(&["build"]);
    assert!(stderr(&out).contains(": 1 written"), "{}", stderr(&out));
}

#[test]
fn an_edit_right_after_a_build_is_caught() {
    // No settling: the files are "racy" (changed within the clock's granularity of the
    // run that recorded them), so they get no stamp and are hashed.
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    let p = repo.path().join("generated/docs/inventory.md");
    let text = fs::read_to_string(&p).unwrap();
    fs::write(&p, text.replacen('a', "b", 1)).unwrap();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("changed  generated/docs/inventory.md"), "{}", stdout(&out));
}

#[test]
fn input_changes_always_compile() {
    let repo = settled_repo();
    // A comment changes no output, but the site changed: compile to find that out.
    let p = repo.path().join("site/hosts.toml");
    let text = fs::read_to_string(&p).unwrap();
    fs::write(&p, format!("# a comment\n{text}")).unwrap();
    let out = repo.run(&["build"]);
    assert!(!stderr(&out).contains(NOTHING_CHANGED), "{}", stderr(&out));
    assert!(stderr(&out).contains(": 0 written"), "{}", stderr(&out));
    // A new site file, empty: compiled (not trusted to the fingerprint), no output changes.
    settle();
    repo.write("site/extra.toml", "# nothing yet\n");
    let out = repo.run(&["check"]);
    assert!(!stderr(&out).contains(NOTHING_CHANGED), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // The same file gains a zone: the inventory and the manifest change.
    settle();
    repo.write("site/extra.toml", "[zones.lab]\nvlan = 99\ncidr = \"10.99.0.0/24\"\n");
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "a new zone is in the inventory");
    assert!(stdout(&out).contains("changed  generated/docs/inventory.md"), "{}", stdout(&out));
    // …and so do the flows page (a column per zone), edge1's firewall ("from the
    // internet" means from no zone of the site) and pve1's bridge (it carries every
    // zone's VLAN), each host file with its plan; and the docs that show zones (the
    // overview, network plan and topology, each as Markdown and HTML, the SVG, the
    // search index).
    let out = repo.run(&["build"]);
    assert!(stderr(&out).contains(": 17 written"), "{}", stderr(&out));
    settle();
    let out = repo.run(&["check"]);
    assert!(stderr(&out).contains("is up to date"), "{}", stderr(&out));
    // A template override changes the output.
    let hosts = medianest::render::builtin_templates().iter().find(|(n, _)| *n == "base/hosts.j2").unwrap().1;
    repo.write("templates/base/hosts.j2", &format!("# overridden\n{hosts}"));
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = repo.run(&["build"]);
    assert!(!stderr(&out).contains(NOTHING_CHANGED), "{}", stderr(&out));
    assert!(
        fs::read_to_string(repo.path().join("generated/hosts/app1/root/etc/hosts"))
            .unwrap()
            .starts_with("# overridden")
    );
}

#[test]
fn output_tree_changes_are_never_fresh() {
    let repo = settled_repo();
    // Directory stamps are recorded by a no-op run that listed the tree.
    settle();
    assert!(stderr(&repo.run(&["build"])).contains(NOTHING_CHANGED));
    // An extra file, at the top and deep in the tree (only its directory's stamp shows it).
    for extra in ["generated/notes.txt", "generated/hosts/app1/root/etc/extra.conf"] {
        repo.write(extra, "mine\n");
        let out = repo.run(&["check"]);
        assert_eq!(out.status.code(), Some(1), "{extra}");
        assert!(stdout(&out).contains(&format!("extra    {extra}")), "{}", stdout(&out));
        fs::remove_file(repo.path().join(extra)).unwrap();
    }
    // A missing file.
    let inv = repo.path().join("generated/docs/inventory.md");
    let text = fs::read(&inv).unwrap();
    fs::remove_file(&inv).unwrap();
    let out = repo.run(&["check"]);
    assert!(stdout(&out).contains("missing  generated/docs/inventory.md"), "{}", stdout(&out));
    fs::write(&inv, text).unwrap();
    // A mode change: `build` puts the mode back.
    fs::set_permissions(&inv, fs::Permissions::from_mode(0o600)).unwrap();
    let out = repo.run(&["build"]);
    assert!(stderr(&out).contains(": 1 written"), "{}", stderr(&out));
    assert_eq!(fs::metadata(&inv).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn no_cache_compiles_and_a_broken_fingerprint_is_ignored() {
    let repo = settled_repo();
    let out = repo.run(&["build", "--no-cache"]);
    assert!(!stderr(&out).contains(NOTHING_CHANGED), "{}", stderr(&out));
    assert!(stderr(&out).contains(": 0 written"), "{}", stderr(&out));
    for junk in ["", "{", "{\"format\": 99}", "\u{0}\u{1}"] {
        fs::write(repo.path().join(".medianest/fingerprint.json"), junk).unwrap();
        let out = repo.run(&["check"]);
        assert_eq!(out.status.code(), Some(0), "{junk:?}: {}", stderr(&out));
    }
}

#[test]
fn warnings_are_shown_on_every_build() {
    let repo = Repo::base();
    let p = repo.path().join("site/services.toml");
    let text = fs::read_to_string(&p).unwrap();
    // An exception that relaxes nothing is a warning, not an error.
    fs::write(&p, format!("{text}\n[services.web.exceptions]\ncap_add = \"not needed\"\n")).unwrap();
    for _ in 0..2 {
        let out = repo.run(&["build"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stderr(&out).contains("unused-exception"), "{}", stderr(&out));
        settle();
    }
}
