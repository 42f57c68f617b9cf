//! The review workflow over real git repositories made in temp dirs: `diff` against a
//! revision (golden text, Markdown and JSON for a flow added, a service exposed, an image
//! bumped, a user changed), `diff` with no previous `generated/` or an older layout,
//! `check --committed`, and `explain` on every file of the reference site.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Runs git with a fixed identity and dates, so commit ids are the same on every run.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "medianest tests")
        .env("GIT_AUTHOR_EMAIL", "tests@medianest.invalid")
        .env("GIT_COMMITTER_NAME", "medianest tests")
        .env("GIT_COMMITTER_EMAIL", "tests@medianest.invalid")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn commit_all(repo: &Repo, message: &str) {
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", message]);
}

const WORKER: &str = r#"[services.worker]
image = "ghcr.io/lab/worker:1.0.0"
hosts = ["app1"]
replicas = 1
user = "1001:1001"
ports = { http = 9000 }
health = { http = "/health" }
"#;

/// A repository at a committed, built base; the head edits are applied but not committed.
fn edited_repo() -> Repo {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    repo.write("site/worker.toml", WORKER);
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "base");
    // A flow added, a service exposed, an image bumped, a user changed.
    repo.write(
        "site/worker.toml",
        &(WORKER.replace("user = \"1001:1001\"", "user = \"1002:1002\"")
            + "expose = [{ hostname = \"jobs.lab.example.org\", waf = \"detect\" }]\n\n[[flows]]\nfrom = \"service:worker\"\nto = \"service:db\"\nports = [\"postgres\"]\nwhy = \"job results\"\n\n[[flows]]\nfrom = \"service:proxy\"\nto = \"service:worker\"\nports = [\"http\"]\nwhy = \"edge to the job API\"\n"),
    );
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    repo.write("site/services.toml", &services.replace("ghcr.io/lab/web:2.1.0", "ghcr.io/lab/web:2.2.0"));
    repo
}

#[test]
fn diff_reports_the_meaning_of_a_change_in_three_formats() {
    let repo = edited_repo();
    for (format, file) in [("text", "diff.txt"), ("markdown", "diff.md"), ("json", "diff.json")] {
        let out = repo.run(&["diff", "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        if let Some(d) = compare_text(&text, &suite("review").join(file)) {
            panic!("{d}");
        }
    }
    let text = stdout(&repo.run(&["diff"]));
    for needle in [
        "[relaxes security] flow added: service:worker → service:db (tcp/5432, job results)",
        "exposure added: https://jobs.lab.example.org/ → worker",
        "service changed: web (image: ghcr.io/lab/web:2.1.0 → ghcr.io/lab/web:2.2.0)",
        "service changed: worker (user: 1001:1001 → 1002:1002)",
        "M generated/docs/inventory.md",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout(&repo.run(&["diff", "--format", "json"]))).unwrap();
    assert_eq!(json["format"], 1);
    assert!(
        json["files"].as_array().unwrap().iter().any(|f| f["path"] == "docs/inventory.md" && f["change"] == "changed")
    );
}

/// Filler VMs `fill<i>` in the app zone: each adds a line to every host's `/etc/hosts`.
fn fillers(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            format!(
                "[hosts.fill{i:03}]\nkind = \"vm\"\non = \"pve1\"\ninterfaces = [{{ zone = \"app\", address = \"10.1.2.{}\" }}]\n\n",
                100 + i
            )
        })
        .collect()
}

#[test]
fn a_review_comment_too_long_for_a_pr_keeps_the_summary_and_the_file_list() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    repo.write("site/worker.toml", WORKER);
    repo.write("site/fill.toml", &fillers(0..120));
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "base");
    // fill000 leaves, fill120 joins (every /etc/hosts and plan.json changes), and the
    // worker is exposed through the edge (haproxy.cfg changes; edge1 reloads haproxy).
    repo.write("site/fill.toml", &fillers(1..121));
    repo.write(
        "site/worker.toml",
        &(WORKER.to_string()
            + "expose = [{ hostname = \"jobs.lab.example.org\", waf = \"detect\" }]\n\n[[flows]]\nfrom = \"service:proxy\"\nto = \"service:worker\"\nports = [\"http\"]\nwhy = \"edge to the job API\"\n"),
    );
    let full = stdout(&repo.run(&["diff"]));
    assert!(full.len() > 120_000, "the change is meant to be far too long for a comment: {}", full.len());
    let out = repo.run(&["diff", "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.chars().count() < 60_000 && md.len() < 60_000, "{}", md.len());

    // The summary survives whole.
    for needle in [
        "#### What changes",
        "- host added: fill120",
        "- host removed: fill000",
        "- \\[relaxes security\\] exposure added: https://jobs.lab.example.org/ → worker",
        "- \\[relaxes security\\] flow added: service:proxy → service:worker (tcp/9000, edge to the job API)",
        "| edge1 | 3 changed | base 1, haproxy 1, plan 1 | reloads haproxy.service |",
        "#### Files",
        "are left out to keep this comment under 60,000 characters",
        "Run `medianest diff HEAD` locally to see every diff.",
    ] {
        assert!(md.contains(needle), "{needle:?} missing from\n{md}");
    }
    // What leaving the site means for fill000's agent.
    assert!(md.contains("> **Host removed:** `fill000` leaves the site"), "{md}");
    assert!(md.contains("refuses this commit"), "{md}");
    assert!(md.contains("| fill000 | 3 removed | base 1, nftables 1, plan 1 | tree removed:"), "{md}");

    let json: serde_json::Value = serde_json::from_str(&stdout(&repo.run(&["diff", "--format", "json"]))).unwrap();
    let files = json["files"].as_array().unwrap();
    assert!(files.len() > 240, "{}", files.len());
    let (below, left_out) = {
        let start = md.find("\nDiffs left out:\n").expect("a list of the diffs left out");
        let end = md[start..].find("\n\n<details>").map_or(md.len(), |e| start + e + 1);
        let below = md.find("\nDiffs below:\n").expect("a list of the diffs shown");
        (&md[below..start], &md[start..end])
    };
    let mut shown = 0;
    for f in files {
        let path = f["path"].as_str().unwrap();
        let line = format!("generated/{path} (+{} -{})", f["added_lines"], f["removed_lines"]);
        let block = format!("** `generated/{path}`\n\n```diff\n");
        // Every file is in the Files list with its line counts, either with its diff
        // below or named as left out: never both, never neither.
        let in_below = below.contains(&format!("{line}\n"));
        let in_left = left_out.contains(&format!("{line} · "));
        assert!(in_below != in_left, "{path}: below {in_below}, left out {in_left}\n{md}");
        assert_eq!(md.contains(&block), in_below, "{path}\n{md}");
        shown += usize::from(in_below);
        // The checksum churn goes first: no manifest or plan diff while others are cut.
        if path == "manifest.json" || path.ends_with("/plan.json") {
            assert!(left_out.contains(&format!("{line} · checksums\n")), "{path}\n{md}");
        }
    }
    assert!(shown > 10, "{md}");
    // The config of the host that reloads is kept; whole files go before changed ones.
    assert!(below.contains("generated/hosts/edge1/root/etc/haproxy/haproxy.cfg (+"), "{md}");
    assert!(left_out.contains("generated/hosts/fill120/root/etc/hosts (+"), "{md}");
    assert!(left_out.contains(" · whole file added\n"), "{md}");
    assert!(left_out.contains("generated/hosts/fill000/root/etc/hosts (+0 -"), "{md}");
    assert!(left_out.contains(" · whole file removed\n"), "{md}");
    assert!(
        left_out.contains("/root/etc/hosts (+1 -1) · no room left\n"),
        "some changed /etc/hosts do not fit either: {md}"
    );
    assert!(md.contains("<details><summary><code>edge1</code>: 2 of 3 file diffs</summary>"), "{md}");
}

#[test]
fn a_change_that_reaches_no_host_says_so() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "base");
    // A description: only the docs (inventory, catalogue, runbook, as Markdown and HTML)
    // and the manifest change, no host file. (An image bump reaches the host's Compose
    // file.)
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    let described = services.replace("primary = \"db1\"", "primary = \"db1\"\ndescription = \"the lab database\"");
    repo.write("site/services.toml", &described);
    assert!(repo.run(&["build"]).status.success());
    let md = stdout(&repo.run(&["diff", "--format", "markdown"]));
    assert!(
        md.contains("> **This change reaches no host:** no generated host file changes; only `generated/docs/inventory.md`, `generated/docs/runbooks/db.md`, `generated/docs/services.md`, `generated/docs/site/inventory.html`, `generated/docs/site/runbooks/db.html`, 2 more, which no host applies, change"),
        "{md}"
    );
    assert!(md.contains("- `M` generated/docs/inventory.md (+4 -0)\n"), "{md}");
    let text = stdout(&repo.run(&["diff"]));
    assert!(text.contains("note: this change reaches no host: no generated host file changes"), "{text}");
    // An env change of a native service: the model changes, but no file under
    // generated/ does.
    commit_all(&repo, "describe");
    repo.write(
        "site/services.toml",
        &described.replace("kind = \"haproxy\"", "kind = \"haproxy\"\nenv = { TZ = \"UTC\" }"),
    );
    let md = stdout(&repo.run(&["diff", "--format", "markdown"]));
    assert!(md.contains("- service changed: proxy (env: "), "{md}");
    assert!(
        md.contains("> **This change reaches no host:** no generated host file changes, and nothing else under `generated/` changes either"),
        "{md}"
    );
    assert!(!md.contains("#### Hosts"), "no empty hosts table: {md}");
    // A change that reaches a host says nothing of the kind.
    let md = stdout(&edited_repo().run(&["diff", "--format", "markdown"]));
    assert!(!md.contains("reaches no host"), "{md}");
}

#[test]
fn diff_exit_code_and_stat() {
    let repo = edited_repo();
    assert_eq!(repo.run(&["diff", "--exit-code", "--stat"]).status.code(), Some(1));
    let stat = stdout(&repo.run(&["diff", "--stat"]));
    assert!(!stat.contains("@@"), "--stat prints no hunks:\n{stat}");
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "head");
    let out = repo.run(&["diff", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("no changes"));
    // The previous commit is still reachable by rev-spec.
    let out = repo.run(&["diff", "HEAD~1", "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(repo.run(&["diff", "no-such-rev"]).status.code(), Some(2));
}

#[test]
fn diff_against_a_commit_without_generated_or_with_an_older_layout() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    commit_all(&repo, "site only");
    let text = stdout(&repo.run(&["diff"]));
    assert!(text.contains("`generated/` does not exist at `HEAD` (first build?)"), "{text}");
    assert!(text.contains("A generated/manifest.json"), "{text}");

    assert!(repo.run(&["build"]).status.success());
    repo.write("generated/legacy/haproxy.cfg", "old layout\n");
    commit_all(&repo, "built, with a file of an older layout");
    std::fs::remove_dir_all(repo.path().join("generated/legacy")).unwrap();
    let text = stdout(&repo.run(&["diff"]));
    assert!(text.contains("D generated/legacy/haproxy.cfg"), "{text}");
    assert!(text.contains("an older layout"), "{text}");
}

#[test]
fn check_committed_red_and_green() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    assert!(repo.run(&["build"]).status.success());
    // Fresh but never added: untracked.
    let out = repo.run(&["check", "--committed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("untracked  generated/manifest.json"), "{}", stdout(&out));
    // Fresh and committed.
    commit_all(&repo, "built");
    let out = repo.run(&["check", "--committed"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("up to date and committed"));
    // Fresh but not committed.
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    repo.write("site/services.toml", &services.replace("ghcr.io/lab/web:2.1.0", "ghcr.io/lab/web:2.2.0"));
    assert!(repo.run(&["build"]).status.success());
    let out = repo.run(&["check", "--committed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("modified   generated/docs/inventory.md"), "{}", stdout(&out));
    assert!(stdout(&out).contains("git add site generated && git commit"), "{}", stdout(&out));
    // Stale: the site changed and nothing was built.
    commit_all(&repo, "bump");
    repo.write("site/services.toml", &services.replace("ghcr.io/lab/web:2.1.0", "ghcr.io/lab/web:2.3.0"));
    let out = repo.run(&["check", "--committed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("changed  generated/docs/inventory.md"), "{}", stdout(&out));
    // An untracked extra file, with a fresh tree otherwise.
    repo.write("site/services.toml", &services.replace("ghcr.io/lab/web:2.1.0", "ghcr.io/lab/web:2.2.0"));
    repo.write("generated/stray.txt", "x\n");
    let out = repo.run(&["check", "--committed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("extra    generated/stray.txt"), "{}", stdout(&out));
}

/// `check --committed` in `repo`: exit code and stdout.
fn committed(repo: &Repo) -> (Option<i32>, String) {
    let out = repo.run(&["check", "--committed"]);
    (out.status.code(), stdout(&out) + &stderr(&out))
}

#[test]
fn check_committed_fails_while_the_site_has_uncommitted_changes() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    repo.write("site/notes.toml", "# notes, no tables\n");
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "built");
    assert_eq!(committed(&repo).0, Some(0));
    // Each kind of change to site/, built (generated/ up to date) but not committed.
    let hosts = std::fs::read_to_string(repo.path().join("site/hosts.toml")).unwrap();
    let cases: [(&str, &dyn Fn(), &str); 4] = [
        ("modified", &|| repo.write("site/hosts.toml", &format!("# a comment\n{hosts}")), "modified   site/hosts.toml"),
        ("untracked", &|| repo.write("site/more.toml", "# more notes\n"), "untracked  site/more.toml"),
        (
            "added",
            &|| {
                repo.write("site/more.toml", "# more notes\n");
                git(repo.path(), &["add", "site/more.toml"]);
            },
            "added      site/more.toml",
        ),
        (
            "deleted",
            &|| std::fs::remove_file(repo.path().join("site/notes.toml")).unwrap(),
            "deleted    site/notes.toml",
        ),
    ];
    for (what, edit, line) in cases {
        edit();
        assert!(repo.run(&["build"]).status.success(), "{what}");
        assert!(repo.run(&["check"]).status.success(), "{what}: generated/ is up to date");
        let (code, out) = committed(&repo);
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(out.contains(line), "{what}: {line:?} missing from\n{out}");
        assert!(out.contains("git add site generated && git commit"), "{what}: {out}");
        git(repo.path(), &["reset", "-q", "--hard"]);
        git(repo.path(), &["clean", "-q", "-fd"]);
        assert_eq!(committed(&repo).0, Some(0), "{what}: clean again");
    }
    // Directories that only start like `site` or `generated` are not theirs.
    repo.write("site-drafts/x.toml", "# x\n");
    repo.write("generated-old/x", "x\n");
    let (code, out) = committed(&repo);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn check_committed_removes_an_untracked_extra_file_with_rm_not_git_rm() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "built");
    repo.write("generated/stray.txt", "x\n");
    let (code, out) = committed(&repo);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("extra    generated/stray.txt"), "{out}");
    assert!(out.contains("`rm generated/stray.txt`"), "{out}");
    assert!(!out.contains("git rm"), "git rm fails on an untracked file:\n{out}");
    // Committed, the same file is removed with `git rm`; names are shell-quoted.
    repo.write("generated/it's.txt", "x\n");
    commit_all(&repo, "stray files");
    let (code, out) = committed(&repo);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("`git rm 'generated/it'\\''s.txt' generated/stray.txt`, then `git commit`"), "{out}");
    assert!(!out.contains("`rm "), "{out}");
}

#[test]
fn check_committed_outside_a_git_repository_says_so_plainly() {
    let repo = Repo::base();
    assert!(repo.run(&["build"]).status.success());
    let out = repo.run(&["check", "--committed"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let dir = repo.path().canonicalize().unwrap();
    assert_eq!(
        err,
        format!("error: `check --committed` needs a git repository: `{}` is not inside one\n", dir.display())
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    // `diff` says the same kind of thing.
    let out = repo.run(&["diff"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), format!("error: `diff` needs a git repository: `{}` is not inside one\n", dir.display()));
}

#[test]
fn explain_answers_for_every_generated_file_of_the_reference_site() {
    let root = repo_root();
    let compiled = medianest::ops::compile_with(&medianest::ops::Paths::under(&root), medianest::ops::Depth::Traces);
    assert!(!compiled.failed());
    let files = medianest::emit::list_tree(&root.join("generated")).unwrap();
    assert!(files.len() > 10);
    for f in &files {
        let text = medianest::ops::explain::explain(&compiled, f, None, "generated")
            .unwrap_or_else(|e| panic!("explain {f}: {e}"));
        assert!(text.starts_with(&format!("generated/{f}\n")), "{text}");
        if f != "manifest.json" {
            assert!(text.contains("family:"), "{text}");
            assert!(text.contains("from:      site/"), "{text}");
        }
    }
    // A line is traced to the entity it names.
    let out = medianest(&root, &["explain", "generated/hosts/app1/root/etc/hosts:12"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("template:  base/hosts.j2 (built-in"), "{text}");
    assert!(text.contains("host `db1`, from site/hosts/data.toml:"), "{text}");
    assert!(text.contains("host address `10.0.3.10`, from site/hosts/data.toml:"), "{text}");
    // Unknown files and lines are usage errors.
    assert_eq!(medianest(&root, &["explain", "generated/nope.conf"]).status.code(), Some(2));
    assert_eq!(medianest(&root, &["explain", "generated/hosts/app1/root/etc/hosts:9999"]).status.code(), Some(2));
}

#[test]
fn explain_takes_absolute_relative_and_dotted_paths() {
    let root = repo_root();
    let abs = root.join("generated/docs/inventory.md");
    let line3 = format!("{}:3", abs.display());
    for target in [
        line3.as_str(),
        "generated/docs/inventory.md:3",
        "./generated/docs/inventory.md:3",
        "docs/inventory.md:3",
        ".//generated/./docs/inventory.md:3",
    ] {
        let out = medianest(&root, &["explain", target]);
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with("generated/docs/inventory.md\n"), "{target}: {text}");
        assert!(text.contains("\nline 3: "), "{target}: {text}");
    }
    // Without a line, an absolute path too.
    let out = medianest(&root, &["explain", &abs.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("generated/docs/inventory.md\n"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("\nline "), "{}", stdout(&out));
    // An absolute path when `-C` is relative to another working directory.
    let out = Command::new(env!("CARGO_BIN_EXE_medianest"))
        .current_dir(root.join("site"))
        .args(["-C", "..", "explain", &line3])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("\nline 3: "), "{}", stdout(&out));
    // An absolute path outside the output directory is a clear usage error, whatever
    // it looks like (an installed path, a site file, a path that climbs out).
    for target in [
        "/etc/hosts".to_string(),
        format!("{}", root.join("site/site.toml").display()),
        format!("{}/generated/../site/site.toml:2", root.display()),
    ] {
        let out = medianest(&root, &["explain", &target]);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("is outside the output directory"), "{target}: {err}");
        assert!(err.contains(&format!("{}", root.join("generated").display())), "{target}: {err}");
    }
}

#[test]
fn the_ci_recipe_checks_and_writes_the_review_comment() {
    let repo = Repo::base();
    git(repo.path(), &["init", "-q"]);
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "main");
    git(repo.path(), &["checkout", "-q", "-b", "feature"]);
    let services = std::fs::read_to_string(repo.path().join("site/services.toml")).unwrap();
    repo.write("site/services.toml", &services.replace("ghcr.io/lab/web:2.1.0", "ghcr.io/lab/web:2.2.0"));
    let script = repo_root().join("scripts/ci/medianest-ci.sh");
    let run = || {
        Command::new("sh")
            .arg(&script)
            .args(["main", "comment.md"])
            .current_dir(repo.path())
            .env("MEDIANEST", env!("CARGO_BIN_EXE_medianest"))
            .output()
            .unwrap()
    };
    // Not built: the check fails and says what to run.
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("run `medianest build`, then `git add site generated && git commit`"),
        "{}",
        stdout(&out)
    );
    // Built and committed: the comment is written.
    assert!(repo.run(&["build"]).status.success());
    commit_all(&repo, "bump web");
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let comment = std::fs::read_to_string(repo.path().join("comment.md")).unwrap();
    assert!(comment.starts_with("### medianest diff against `"), "{comment}");
    assert!(
        comment.contains("service changed: web (image: ghcr.io/lab/web:2.1.0 → ghcr.io/lab/web:2.2.0)"),
        "{comment}"
    );
    assert!(comment.contains("<details>"), "{comment}");
}
