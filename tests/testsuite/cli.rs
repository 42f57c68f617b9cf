//! The command line: exit codes and messages of `build` and `check`.

use crate::support::*;

#[test]
fn build_then_check_is_clean_and_a_rebuild_writes_nothing() {
    let repo = Repo::base();
    let out = repo.run(&["build"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("written, 0 unchanged, 0 removed"), "{}", stderr(&out));
    let before: Vec<_> = walkdir::WalkDir::new(repo.path().join("generated"))
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    let out = repo.run(&["build"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains(" 0 written"), "{}", stderr(&out));
    let after: Vec<_> = walkdir::WalkDir::new(repo.path().join("generated"))
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
        .collect();
    assert_eq!(before, after, "a no-op build must not touch mtimes");
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("is up to date"));
}

#[test]
fn check_fails_on_a_hand_edit_with_a_diff_and_the_fix() {
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    let p = repo.path().join("generated/hosts/app1/root/etc/hosts");
    let text = std::fs::read_to_string(&p).unwrap().replace("10.1.3.10", "10.1.3.99");
    std::fs::write(&p, text).unwrap();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let o = stdout(&out);
    assert!(o.contains("changed  generated/hosts/app1/root/etc/hosts"), "{o}");
    assert!(o.contains("-10.1.3.99\tdb1.lab.lan db1"), "{o}");
    assert!(o.contains("+10.1.3.10\tdb1.lab.lan db1"), "{o}");
    assert!(o.contains("run `medianest build`, then `git add site generated && git commit`"), "{o}");
}

#[test]
fn check_fails_on_a_missing_file() {
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    std::fs::remove_file(repo.path().join("generated/docs/inventory.md")).unwrap();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("missing  generated/docs/inventory.md"), "{}", stdout(&out));
}

#[test]
fn check_fails_on_an_extra_file_and_build_leaves_it_alone() {
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    repo.write("generated/notes.txt", "mine\n");
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("extra    generated/notes.txt"), "{}", stdout(&out));
    let out = repo.run(&["build"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("`generated/notes.txt` was not made by medianest"), "{}", stderr(&out));
    assert!(repo.path().join("generated/notes.txt").exists());
}

#[test]
fn check_fails_when_nothing_was_built() {
    let repo = Repo::base();
    let out = repo.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("missing  generated/manifest.json"));
}

#[test]
fn an_invalid_site_fails_build_and_check_with_exit_1() {
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    let before = repo.generated();
    repo.write("site/broken.toml", "[hosts.x]\nkind = \"vm\"\non = \"pve9\"\n");
    for cmd in ["build", "check"] {
        let out = repo.run(&[cmd]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("unknown host `pve9`"), "{}", stderr(&out));
        assert!(stderr(&out).contains("nothing was written"));
    }
    assert_eq!(before, repo.generated(), "a failed build must not touch generated/");
}

#[test]
fn stale_files_of_a_previous_build_are_removed() {
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    assert!(repo.path().join("generated/hosts/db2/plan.json").exists());
    // Remove db2 from the site: its tree must go.
    let hosts = std::fs::read_to_string(repo.path().join("site/hosts.toml")).unwrap();
    let cut = hosts.find("[hosts.db2]").unwrap();
    repo.write("site/hosts.toml", &hosts[..cut]);
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    repo.write("site/services.toml", &services.replace("hosts = [\"db1\", \"db2\"]", "hosts = [\"db1\"]"));
    let out = repo.run(&["-v", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed generated/hosts/db2/plan.json"), "{}", stderr(&out));
    assert!(!repo.path().join("generated/hosts/db2").exists());
    assert!(repo.run(&["check"]).status.success());
}

#[test]
fn usage_and_io_errors_exit_2() {
    let repo = Repo::base();
    let out = repo.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = medianest(&repo.path().join("does-not-exist"), &["build"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a directory"));
    // The output path is a file: an I/O error, not a site error.
    repo.write("out-file", "x");
    let out = repo.run(&["--out", "out-file", "build"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn help_documents_the_exit_codes() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medianest")).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let o = stdout(&out);
    for needle in ["Exit codes:", "0    success", "1    the site has errors", "2    usage error", "-C <DIR>", "--color"]
    {
        assert!(o.contains(needle), "{needle:?} missing from\n{o}");
    }
}

#[test]
fn paths_can_be_overridden() {
    let repo = Repo::base();
    std::fs::rename(repo.path().join("site"), repo.path().join("inventory")).unwrap();
    let out = repo.run(&["--site", "inventory", "--out", "rendered", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(repo.path().join("rendered/manifest.json").exists());
    let manifest = std::fs::read_to_string(repo.path().join("rendered/manifest.json")).unwrap();
    assert!(manifest.contains("\"site/hosts.toml\""), "sources are named site/… whatever --site is");
}

#[test]
fn the_closing_count_is_the_number_of_errors_shown() {
    // A missing comma in an inline table: the TOML parser reports one of its errors
    // twice at the same place; it is shown once, so it must be counted once.
    let repo = Repo::base();
    repo.write(
        "site/zz-case.toml",
        "[services.worker]\nimage = \"ghcr.io/lab/worker:1.0.0\"\nhosts = [\"app1\"]\nports = { http = 8080 metrics = 9100 }\n",
    );
    for cmd in ["build", "check"] {
        let out = repo.run(&[cmd]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = stderr(&out);
        let shown = err.lines().filter(|l| l.starts_with("error[")).count();
        assert!(shown > 1, "{err}");
        assert!(
            err.contains(&format!("error: the site has {shown} errors; nothing was written")),
            "{cmd}: {shown} errors shown, but the count differs:\n{err}"
        );
    }
}

#[test]
fn an_empty_site_directory_is_a_missing_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("site")).unwrap();
    let out = medianest(dir.path(), &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("error[missing-table]: `site` holds no site file"), "{}", stderr(&out));
    assert!(!dir.path().join("generated").exists(), "nothing is written");
}

/// Raw bytes from a site file never reach the terminal, a huge line is not echoed
/// whole, and a byte-order mark does not shift columns.
#[test]
fn diagnostics_show_no_raw_control_bytes_and_cut_long_lines() {
    let repo = Repo::base();
    // ESC ] 0 ; … BEL would set the terminal's title; CR would return the cursor.
    repo.write(
        "site/zz-esc.toml",
        "[zones.lab]\nvlan = 99\ncidr = \"10.99.0.0/24\"\ndescription = \"a\u{1b}]0;pwned\u{7}b\"\r\n",
    );
    let out = repo.run(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\r'), "raw control bytes: {err:?}");
    std::fs::remove_file(repo.path().join("site/zz-esc.toml")).unwrap();

    let long = "x".repeat(2_000_000);
    repo.write(
        "site/zz-long.toml",
        &format!("[zones.lab]\nvlan = 99\ncidr = \"10.99.0.0/24\"\ndescription = \"{long};\"\n"),
    );
    let out = repo.run(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.len() < 5_000, "a 2 MB line is echoed: {} bytes of stderr", err.len());
    assert!(err.contains("site/zz-long.toml:4:15"), "{err}");
    std::fs::remove_file(repo.path().join("site/zz-long.toml")).unwrap();

    repo.write("site/zz-bom.toml", "\u{feff}[zones.Lab]\nvlan = 99\ncidr = \"10.99.0.0/24\"\n");
    let err = stderr(&repo.run(&["build"]));
    assert!(err.contains("site/zz-bom.toml:1:8"), "the BOM shifts columns: {err}");
}
