//! The bad-input corpus: `invalid/<code>--<variant>/site/*.toml` is laid over the base
//! fixture site, `medianest build` must fail with exit code 1, write nothing, and print
//! exactly `stderr.txt` (file:line:col, the source line, the hint). The case name starts
//! with the diagnostic code that must appear, so a blessed file with the wrong error
//! still fails.

use crate::support::*;

#[test]
fn every_invalid_site_is_rejected_with_its_diagnostic() {
    let root = suite("invalid");
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus should hold at least 30 cases, has {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let code = name.split("--").next().unwrap();
        let repo = Repo::with_overlay(case);
        let out = repo.run(&["build"]);
        let err = stderr(&out);
        if out.status.code() != Some(1) {
            failures.push(format!("{name}: exit code {:?}, expected 1\n{err}", out.status.code()));
            continue;
        }
        if repo.path().join("generated").exists() {
            failures.push(format!("{name}: generated/ was written"));
        }
        if !err.contains(&format!("error[{code}]")) {
            failures.push(format!("{name}: no `error[{code}]` in\n{err}"));
        }
        if !err.contains("help: ") {
            failures.push(format!("{name}: no hint in\n{err}"));
        }
        if let Some(diff) = compare_text(&err, &case.join("stderr.txt")) {
            failures.push(format!("{name}: {diff}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn all_errors_of_a_broken_site_come_in_one_run() {
    let repo = Repo::base();
    repo.write(
        "site/extra.toml",
        r#"
[zones.bad]
vlan = 5000
cidr = "10.9.9.1/24"

[hosts.x1]
kind = "vmm"
interfaces = [{ zone = "nowhere", address = "10.1.1.300" }]

[services.y]
image = "nginx:latest"
hosts = ["app2"]
"#,
    );
    let out = repo.run(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        "VLAN id 5000 is out of range",
        "has host bits set",
        "unknown host kind `vmm`",
        "unknown zone `nowhere`",
        "`10.1.1.300` is not an IP address",
        "pinned to `latest`",
        "unknown host `app2`",
        "did you mean `app1`?",
        "site/extra.toml:3:8",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in\n{err}");
    }
    assert!(!repo.path().join("generated").exists());
}
