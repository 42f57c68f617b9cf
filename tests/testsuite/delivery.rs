//! Host delivery: the generated bootstrap scripts pass shellcheck, run twice against a
//! fake root with a stubbed package manager and systemctl (the second run changes
//! nothing), write exactly the files the agent then manages, and the generated systemd
//! units pass `systemd-analyze verify`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

fn stub(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake root and stubs that record what they were asked to do.
/// The fingerprints the bootstrap pins: Docker's and PGDG's signing keys.
const DOCKER_KEY: &str = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88";
const PGDG_KEY: &str = "B97B0AFCAA1A47F044F244A07FCC7D46ACCC4CF8";

fn fake_host(dir: &Path, os_id: &str) {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), format!("PRETTY_NAME=\"{os_id} 12\"\nID={os_id}\nVERSION_ID=\"12\"\n"))
        .unwrap();
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let log = dir.join("calls.log");
    let installed = dir.join("installed");
    std::fs::write(&installed, "").unwrap();
    let l = log.display();
    let i = installed.display();
    stub(
        &stubs.join("apt-get"),
        &format!(
            "echo \"apt-get $*\" >> '{l}'\nif [ \"$1\" = install ]; then for p in \"$@\"; do echo \"$p\" >> '{i}'; done; fi"
        ),
    );
    // curl writes the URL it fetched as the key; gpg prints the fingerprint of the
    // repository's real key for it, or zeros while `bad-key` names that repository.
    stub(
        &stubs.join("curl"),
        &format!(
            "echo \"curl $*\" >> '{l}'\nfor a in \"$@\"; do [ \"$prev\" = -o ] && out=$a; prev=$a; url=$a; done\necho \"$url\" > \"$out\""
        ),
    );
    stub(
        &stubs.join("gpg"),
        &format!(
            "key=$(eval echo \\${{$#}})\ncase $(cat \"$key\") in\n  *docker*) repo=docker fpr={DOCKER_KEY} ;;\n  *) repo=pgdg fpr={PGDG_KEY} ;;\nesac\ngrep -qx \"$repo\" '{b}' 2>/dev/null && fpr=0000000000000000000000000000000000000000\necho \"fpr:::::::::$fpr:\"",
            b = dir.join("bad-key").display()
        ),
    );
    stub(
        &stubs.join("dpkg-query"),
        &format!("pkg=$(eval echo \\${{$#}})\ngrep -qx \"$pkg\" '{i}' && echo 'install ok installed'"),
    );
    stub(
        &stubs.join("systemctl"),
        &format!(
            "echo \"systemctl $*\" >> '{l}'\nunit=$(eval echo \\${{$#}})\ncase $1 in\n  is-enabled) [ -e \"{d}/enabled.$unit\" ] ;;\n  enable) touch \"{d}/enabled.$unit\" ;;\n  start) mkdir -p '{r}/var/lib/medianest' && echo '{{}}' > '{r}/var/lib/medianest/state.json' ;;\nesac",
            d = dir.display(),
            r = root.display()
        ),
    );
    stub(&stubs.join("sysctl"), &format!("echo \"sysctl $*\" >> '{l}'"));
}

fn bootstrap(dir: &Path, host: &str, extra: &[&str]) -> Output {
    let script = repo_root().join(format!("generated/hosts/{host}/bootstrap.sh"));
    let stubs = dir.join("stubs");
    Command::new("sh")
        .arg(&script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_medianest"))
        .args(extra)
        .env("MEDIANEST_ROOT", dir.join("root"))
        .env("MEDIANEST_APT_GET", stubs.join("apt-get"))
        .env("MEDIANEST_DPKG_QUERY", stubs.join("dpkg-query"))
        .env("MEDIANEST_SYSTEMCTL", stubs.join("systemctl"))
        .env("MEDIANEST_SYSCTL", stubs.join("sysctl"))
        .env("MEDIANEST_CURL", stubs.join("curl"))
        .env("MEDIANEST_GPG", stubs.join("gpg"))
        .output()
        .unwrap()
}

/// path → (content hash, mode, uid, gid, mtime) of every entry under `root`.
fn snapshot(root: &Path) -> Vec<(String, String, u32, u32, u32, i64)> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let md = e.path().symlink_metadata().unwrap();
            let hash = if md.is_file() {
                medianest::artifact::sha256_hex(&std::fs::read(e.path()).unwrap())
            } else {
                String::new()
            };
            (
                e.path().display().to_string(),
                hash,
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime_nsec() + md.mtime() * 1_000_000_000,
            )
        })
        .collect()
}

#[test]
fn every_bootstrap_script_passes_shellcheck() {
    let scripts: Vec<_> = std::fs::read_dir(repo_root().join("generated/hosts"))
        .unwrap()
        .map(|e| e.unwrap().path().join("bootstrap.sh"))
        .filter(|p| p.exists())
        .collect();
    assert!(scripts.len() >= 10, "{scripts:?}");
    // check-set-e-suppressed (SC2310): a function called in an `if` or before `||` runs
    // without `set -e`, which once let a failed step print "done".
    let o = Command::new("shellcheck")
        .args(["--shell=sh", "--enable=check-set-e-suppressed"])
        .args(&scripts)
        .output()
        .expect("shellcheck is installed by scripts/test.sh");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    for s in &scripts {
        assert_eq!(std::fs::metadata(s).unwrap().mode() & 0o111, 0o111, "{} is not executable", s.display());
    }
}

#[test]
fn bootstrap_twice_against_a_fake_root_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path(), "debian");
    let o = bootstrap(dir.path(), "app1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("bootstrap of app1: done (changed: yes)"), "{}", stdout(&o));
    let root = dir.path().join("root");
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
    for needle in [
        "apt-get install -y -qq --no-install-recommends",
        "docker-ce",
        "docker-compose-plugin",
        "nfs-common",
        "libnginx-mod-http-modsecurity",
        "systemctl daemon-reload",
        "systemctl enable --now medianest-pull.timer",
        "systemctl enable medianest-secrets.service",
        "systemctl enable nftables.service",
        "nftables",
        "systemctl start medianest-pull.service",
        "sysctl --system",
    ] {
        assert!(calls.contains(needle), "{needle:?} not in\n{calls}");
    }
    // The files it writes are exactly the ones the agent then keeps up to date.
    for f in [
        "etc/medianest/agent.toml",
        "etc/medianest/allowed_signers",
        "etc/systemd/system/medianest-pull.service",
        "etc/systemd/system/medianest-pull.timer",
        "etc/systemd/system/medianest-secrets.service",
        "etc/sysctl.d/90-medianest.conf",
    ] {
        let generated = std::fs::read(repo_root().join("generated/hosts/app1/root").join(f)).unwrap();
        assert_eq!(std::fs::read(root.join(f)).unwrap(), generated, "{f} differs from the agent's copy");
    }
    let bin = std::fs::metadata(root.join("usr/local/bin/medianest")).unwrap();
    assert_eq!(bin.mode() & 0o777, 0o755);
    let state = std::fs::metadata(root.join("var/lib/medianest")).unwrap();
    assert_eq!((state.mode() & 0o777, state.uid()), (0o700, 0));
    // The backend's volumes are NFS exports of stor1: Docker mounts them, no local
    // directory is made (local volumes are; see the mon1 run below).
    assert!(!root.join("srv/medianest/medianest-backend/uploads").exists());

    let before = snapshot(&root);
    let calls_before = calls.lines().count();
    let o = bootstrap(dir.path(), "app1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("(changed: no)"), "{}", stdout(&o));
    assert_eq!(snapshot(&root), before, "the second run changed the root");
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
    let new: Vec<&str> = calls.lines().skip(calls_before).collect();
    assert!(new.iter().all(|c| c.starts_with("systemctl is-enabled")), "the second run acted: {new:?}");
}

#[test]
fn a_failing_bootstrap_step_stops_the_script_and_names_the_step() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path(), "debian");
    // Where the units go is a file: writing them must fail, and say so.
    std::fs::create_dir_all(dir.path().join("root/etc/systemd")).unwrap();
    std::fs::write(dir.path().join("root/etc/systemd/system"), "not a directory\n").unwrap();
    let o = bootstrap(dir.path(), "app1", &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains(
            "bootstrap of app1 stopped: creating the directory of /etc/systemd/system/medianest-pull.service failed"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("done"), "{}", stdout(&o));
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap_or_default();
    assert!(!calls.contains("enable --now"), "nothing after the failed step ran:\n{calls}");
    // A failing command of a step stops it too, named.
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path(), "debian");
    stub(&dir.path().join("stubs/sysctl"), "exit 3");
    let o = bootstrap(dir.path(), "app1", &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("stopped:") && stderr(&o).contains("sysctl --system failed"), "{}", stderr(&o));
}

#[test]
fn bootstrap_dry_run_writes_nothing_and_a_wrong_os_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path(), "debian");
    let root = dir.path().join("root");
    let before = snapshot(&root);
    let o = bootstrap(dir.path(), "edge1", &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("would write /etc/medianest/agent.toml"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("would run: systemctl") || stdout(&o).contains("medianest-pull.timer"),
        "{}",
        stdout(&o)
    );
    assert_eq!(snapshot(&root), before);

    let other = tempfile::tempdir().unwrap();
    fake_host(other.path(), "ubuntu");
    let o = bootstrap(other.path(), "edge1", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("medianest bootstraps Debian 12"), "{}", stderr(&o));
    let o = Command::new("sh").arg(repo_root().join("generated/hosts/edge1/bootstrap.sh")).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "no binary given is a usage error");
}

#[test]
fn generated_systemd_units_pass_systemd_analyze_verify() {
    // The unit's ExecStart must exist: a private mount namespace puts the medianest
    // binary at /usr/local/bin for the check only.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_medianest"), bin.join("medianest")).unwrap();
    let units = repo_root().join("generated/hosts/app1/root/etc/systemd/system");
    let script = format!(
        "mount --bind '{}' /usr/local/bin && systemd-analyze verify '{u}/medianest-pull.service' '{u}/medianest-pull.timer' '{u}/medianest-secrets.service'",
        bin.display(),
        u = units.display()
    );
    let o = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stderr(&o).trim(), "", "systemd-analyze warned");
    // The edge's ACME units (family acme), on their own: their script is not on this
    // machine, systemd-analyze only checks the interpreter.
    let edge = repo_root().join("generated/hosts/edge1/root/etc/systemd/system");
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(edge.join("medianest-acme-media.service"))
        .arg(edge.join("medianest-acme-media.timer"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stderr(&o).trim(), "", "systemd-analyze warned");
    // And it does catch a bad unit.
    let bad = dir.path().join("medianest-pull.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(units.join("medianest-pull.service"))
            .unwrap()
            .replace("Type=oneshot", "Type=oneshot\nBogusKey=1"),
    )
    .unwrap();
    let script =
        format!("mount --bind '{}' /usr/local/bin && systemd-analyze verify '{}'", bin.display(), bad.display());
    let o = Command::new("unshare").args(["-m", "sh", "-c", &script]).output().unwrap();
    assert!(stderr(&o).contains("Unknown key"), "{}", stderr(&o));
}

/// `systemd-analyze security` rates the pull service (7.3 MEDIUM before it was
/// sandboxed); the bar is 5.0.
#[test]
fn the_pull_service_is_sandboxed() {
    let unit = repo_root().join("generated/hosts/app1/root/etc/systemd/system/medianest-pull.service");
    let o =
        Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit).output().unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for medianest-pull.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    println!("systemd-analyze security: medianest-pull.service exposure {score}");
    assert!(score <= 5.0, "exposure {score} > 5.0:\n{text}");
}

#[test]
fn pull_reads_the_agent_toml_the_bootstrap_writes() {
    // `pull --config` with the generated agent.toml: the repository is unreachable here, so
    // the run must fail to fetch (exit 5) after reading every setting.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(repo_root().join("generated/hosts/app1/root/etc/medianest/agent.toml"))
        .unwrap()
        .replace(
            "https://git.example.org/medianest/homelab.git",
            &format!("file://{}/missing.git", dir.path().display()),
        )
        .replace("/var/lib/medianest", &dir.path().join("state").display().to_string());
    std::fs::write(&conf, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_medianest"))
        .args(["pull", "--once", "--format", "json", "--config"])
        .arg(&conf)
        .arg("--root")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["result"], "fetch-failed");
}

#[test]
fn postgresql_16_comes_from_pgdg_with_a_pinned_key() {
    // db1 runs PostgreSQL 16, which Debian 12 does not ship: the bootstrap adds the
    // PGDG repository, but only with a key whose fingerprint is the pinned one.
    for ok in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        fake_host(dir.path(), "debian");
        let stubs = dir.path().join("stubs");
        let l = dir.path().join("calls.log");
        if !ok {
            std::fs::write(dir.path().join("bad-key"), "pgdg\n").unwrap();
        }
        let script = repo_root().join("generated/hosts/db1/bootstrap.sh");
        let o = Command::new("sh")
            .arg(&script)
            .args(["--binary", env!("CARGO_BIN_EXE_medianest")])
            .env("MEDIANEST_ROOT", dir.path().join("root"))
            .env("MEDIANEST_APT_GET", stubs.join("apt-get"))
            .env("MEDIANEST_DPKG_QUERY", stubs.join("dpkg-query"))
            .env("MEDIANEST_SYSTEMCTL", stubs.join("systemctl"))
            .env("MEDIANEST_SYSCTL", stubs.join("sysctl"))
            .env("MEDIANEST_CURL", stubs.join("curl"))
            .env("MEDIANEST_GPG", stubs.join("gpg"))
            .output()
            .unwrap();
        let root = dir.path().join("root");
        let calls = std::fs::read_to_string(&l).unwrap_or_default();
        assert!(calls.contains("curl -fsSL --proto =https --tlsv1.2 -o"), "{calls}");
        if ok {
            assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
            let list = std::fs::read_to_string(root.join("etc/apt/sources.list.d/pgdg.list")).unwrap();
            assert!(list.contains("[signed-by=/usr/share/keyrings/postgresql-pgdg.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main"), "{list}");
            assert!(root.join("usr/share/keyrings/postgresql-pgdg.asc").exists());
            let install = calls.lines().filter(|l| l.contains("install -y")).collect::<Vec<_>>();
            // Debian's packages (with curl and gnupg) first, then PostgreSQL 16 from PGDG
            // (then Docker's: db1 runs exporter containers).
            assert!(
                install.len() == 3 && install[0].contains("gnupg") && install[1].ends_with(" postgresql-16"),
                "{calls}"
            );
        } else {
            assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
            assert!(stderr(&o).contains("stopped: checking the PGDG key (fingerprint 0000"), "{}", stderr(&o));
            assert!(!root.join("etc/apt/sources.list.d/pgdg.list").exists());
            assert!(!root.join("usr/share/keyrings/postgresql-pgdg.asc").exists());
            assert!(!calls.contains("postgresql-16"), "{calls}");
        }
    }
}

#[test]
fn docker_comes_from_dockers_repository_with_a_pinned_key() {
    // mon1 runs Grafana in Compose: Docker's engine and its Compose v2 plugin come from
    // Docker's repository (Debian 12's docker.io has no `docker compose`), added only
    // with the pinned key; Grafana's local volume is a directory owned by its user.
    for ok in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        fake_host(dir.path(), "debian");
        if !ok {
            std::fs::write(dir.path().join("bad-key"), "docker\n").unwrap();
        }
        let o = bootstrap(dir.path(), "mon1", &[]);
        let root = dir.path().join("root");
        let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap_or_default();
        assert!(calls.contains("curl -fsSL --proto =https --tlsv1.2 -o"), "{calls}");
        assert!(calls.contains("https://download.docker.com/linux/debian/gpg"), "{calls}");
        if ok {
            assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
            let list = std::fs::read_to_string(root.join("etc/apt/sources.list.d/docker.list")).unwrap();
            assert!(
                list.contains(
                    "deb [signed-by=/usr/share/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable"
                ),
                "{list}"
            );
            let install: Vec<&str> = calls.lines().filter(|l| l.contains("install -y")).collect();
            assert!(install.len() == 2 && install[0].contains("gnupg") && !install[0].contains("docker"), "{calls}");
            assert!(install[1].ends_with(" containerd.io docker-ce docker-ce-cli docker-compose-plugin"), "{calls}");
            let data = std::fs::metadata(root.join("srv/medianest/grafana/data")).unwrap();
            assert_eq!((data.mode() & 0o777, data.uid(), data.gid()), (0o750, 472, 472));
        } else {
            assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
            assert!(stderr(&o).contains("stopped: checking the Docker key (fingerprint 0000"), "{}", stderr(&o));
            assert!(!root.join("etc/apt/sources.list.d/docker.list").exists());
            assert!(!root.join("usr/share/keyrings/docker.asc").exists());
            assert!(!calls.contains("docker-ce"), "{calls}");
        }
    }
}

/// The Debian packages a bootstrap installs (its first `for pkg in …` list, section 2)
/// and the contrib sources it writes, if any.
fn debian_packages(script: &str) -> (Vec<String>, Option<String>) {
    let after = script.split("# 2. Packages for the roles and services").nth(1).expect("a packages section");
    let line = after.lines().find(|l| l.starts_with("for pkg in ")).expect("a package list");
    let pkgs =
        line.trim_start_matches("for pkg in ").trim_end_matches("; do").split_whitespace().map(String::from).collect();
    let contrib = script
        .split("ensure_file /etc/apt/sources.list.d/medianest-contrib.sources 644 <<'MEDIANEST_EOF'\n")
        .nth(1)
        .map(|s| s.split("MEDIANEST_EOF").next().unwrap().to_string());
    (pkgs, contrib)
}

/// `apt-cache policy` under a private apt state with the given sources: the packages
/// without a candidate.
fn unresolved(t: &Path, sources: &[(&str, &str)], pkgs: &[String]) -> Vec<String> {
    let parts = t.join("sources.list.d");
    std::fs::create_dir_all(&parts).unwrap();
    std::fs::create_dir_all(t.join("lists/partial")).unwrap();
    std::fs::create_dir_all(t.join("cache/archives/partial")).unwrap();
    for (name, text) in sources {
        std::fs::write(parts.join(name), text).unwrap();
    }
    let opts = [
        "-o".to_string(),
        format!("Dir::Etc::SourceParts={}", parts.display()),
        "-o".into(),
        "Dir::Etc::SourceList=/dev/null".into(),
        "-o".into(),
        format!("Dir::State::Lists={}", t.join("lists").display()),
        "-o".into(),
        format!("Dir::Cache={}", t.join("cache").display()),
        "-o".into(),
        "APT::Sandbox::User=root".into(),
    ];
    let o = Command::new("apt-get").args(&opts).args(["update", "-qq"]).output().expect("apt-get runs");
    assert!(o.status.success(), "apt-get update: {}", stderr(&o));
    let o = Command::new("apt-cache").args(&opts).arg("policy").args(pkgs).output().expect("apt-cache runs");
    let text = stdout(&o);
    pkgs.iter()
        .filter(|p| {
            let block = text.split(&format!("\n{p}:\n")).nth(1).or_else(|| text.strip_prefix(&format!("{p}:\n")));
            block.is_none_or(|b| {
                b.lines().find(|l| l.trim_start().starts_with("Candidate:")).is_none_or(|l| l.contains("(none)"))
            })
        })
        .cloned()
        .collect()
}

#[test]
fn every_debian_package_a_bootstrap_installs_resolves_under_the_sources_it_configures() {
    // Debian 12's own sources (main), as a fresh install has them, plus what each script
    // adds. PGDG's and Docker's repositories are not reachable from here: their
    // packages are checked by name in the pinned-key tests only.
    let main = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
    let mut plain: std::collections::BTreeSet<String> = Default::default();
    let mut with_contrib: std::collections::BTreeSet<String> = Default::default();
    let mut contrib_sources = None;
    for e in std::fs::read_dir(repo_root().join("generated/hosts")).unwrap() {
        let script = e.unwrap().path().join("bootstrap.sh");
        let Ok(text) = std::fs::read_to_string(&script) else { continue };
        let (pkgs, contrib) = debian_packages(&text);
        if let Some(c) = contrib {
            with_contrib.extend(pkgs);
            contrib_sources = Some(c);
        } else {
            plain.extend(pkgs);
        }
    }
    let contrib = contrib_sources.expect("the reference site's ZFS host enables contrib");
    assert!(with_contrib.contains("zfsutils-linux") && with_contrib.contains("sanoid"), "{with_contrib:?}");
    let t = tempfile::tempdir().unwrap();
    let plain: Vec<String> = plain.into_iter().collect();
    let missing = unresolved(&t.path().join("main"), &[("debian.sources", main)], &plain);
    assert!(missing.is_empty(), "not in Debian 12 main: {missing:?}");
    let with_contrib: Vec<String> = with_contrib.into_iter().collect();
    let missing = unresolved(
        &t.path().join("contrib"),
        &[("debian.sources", main), ("medianest-contrib.sources", &contrib)],
        &with_contrib,
    );
    assert!(missing.is_empty(), "not in Debian 12 main + contrib: {missing:?}");
    // Without the contrib file, ZFS does not resolve: the check can fail.
    let missing = unresolved(&t.path().join("main"), &[("debian.sources", main)], &with_contrib);
    assert!(missing.contains(&"zfsutils-linux".to_string()), "{missing:?}");
}

#[test]
fn the_agent_fetches_https_and_ssh_out_of_the_box() {
    // The default binary has both transports: against a loopback TLS server with a
    // certificate no one trusts, the fetch fails at certificate verification (not with
    // "there is no TLS stream available"), and an ssh:// URL fails to connect (not with
    // "unsupported URL protocol").
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let port = 18000 + (std::process::id() % 1000) as u16;
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept", &format!("127.0.0.1:{port}"), "-key"])
        .arg(&key)
        .arg("-cert")
        .arg(&cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let listening = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let pull = |url: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_medianest"))
            .args(["pull", "--once", "--format", "json", "--host", "h", "--deadline", "20s", "--repo", url])
            .arg("--root")
            .arg(dir.path())
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--textfile-dir")
            .arg(dir.path())
            .arg("--insecure-no-verify")
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).to_lowercase())
    };
    let https = listening.then(|| pull(&format!("https://127.0.0.1:{port}/site.git")));
    let _ = server.kill();
    let _ = server.wait();
    let (code, out) = https.expect("the TLS server listens");
    assert_eq!(code, Some(5), "{out}");
    assert!(!out.contains("no tls stream"), "the https transport is missing: {out}");
    assert!(out.contains("certificate"), "the fetch got as far as the certificate: {out}");
    let (code, out) = pull("ssh://git@127.0.0.1:1/site.git");
    assert_eq!(code, Some(5), "{out}");
    assert!(!out.contains("unsupported url protocol"), "the ssh transport is missing: {out}");
    println!("https: refused at certificate verification; ssh: connection refused");
}

#[test]
fn an_edge_bootstrap_makes_a_placeholder_haproxy_accepts_and_never_replaces_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    fake_host(dir.path(), "debian");
    let o = bootstrap(dir.path(), "edge1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let root = dir.path().join("root");
    let pem = root.join("etc/haproxy/certs/media.example.org.pem");
    let md = std::fs::metadata(&pem).expect("the placeholder is made");
    assert_eq!(md.mode() & 0o777, 0o600, "the key is readable by root only");
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "subjectAltName", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let text = stdout(&subject);
    assert!(text.contains("CN = media.example.org") && text.contains("O = medianest placeholder"), "{text}");
    assert!(text.contains("DNS:media.example.org"), "{text}");
    // HAProxy's own check accepts the generated config with it (the first apply's
    // validation), where a missing file is refused.
    let generated = repo_root().join("generated/hosts/edge1/root/etc/haproxy");
    let crt_list = std::fs::read_to_string(generated.join("crt-list.txt"))
        .unwrap()
        .replace("/etc/haproxy/certs/", &format!("{}/", pem.parent().unwrap().display()));
    std::fs::write(dir.path().join("crt-list.txt"), crt_list).unwrap();
    let cfg = std::fs::read_to_string(generated.join("haproxy.cfg"))
        .unwrap()
        .replace("/etc/haproxy/crt-list.txt", &dir.path().join("crt-list.txt").display().to_string())
        .replace("/run/haproxy/admin.sock", &dir.path().join("admin.sock").display().to_string());
    std::fs::write(dir.path().join("haproxy.cfg"), cfg).unwrap();
    let check =
        || Command::new("haproxy").args(["-dW", "-c", "-f"]).arg(dir.path().join("haproxy.cfg")).output().unwrap();
    let o = check();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    std::fs::rename(&pem, dir.path().join("moved.pem")).unwrap();
    assert!(!check().status.success(), "haproxy -c accepted a missing certificate");
    // A certificate that exists (the ACME client's, the operator's) is never replaced.
    let real = std::fs::read(dir.path().join("moved.pem")).unwrap().into_iter().rev().collect::<Vec<u8>>();
    std::fs::write(&pem, &real).unwrap();
    let o = bootstrap(dir.path(), "edge1", &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::read(&pem).unwrap(), real, "the bootstrap replaced an existing certificate");
    assert!(stdout(&o).contains("(changed: no)"), "{}", stdout(&o));
}
