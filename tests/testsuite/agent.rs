//! `medianest pull` against the threat catalogue of AGENT-THREATS.md, all without
//! network: a repository simulator (bare repositories in temp dirs, SSH keys made with
//! ssh-keygen, signed, unsigned and crafted commits, force-pushes) and a fake host root
//! whose whole tree is snapshotted before and after, so "refused" means exactly: a
//! non-zero exit, a reason, and not one byte changed anywhere under the root.
//!
//! Native tools and systemd are replaced by stubs on `PATH` (`nginx`, `haproxy`,
//! `systemctl`, `docker`) whose exit codes the tests control and whose calls they count.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use medianest::artifact::{Artifact, ArtifactMeta, ArtifactSet, host_plans, manifest_bytes};

use crate::support::*;

/// `(target, content, validate, reload)` of one host file.
type HostFile<'a> = (&'a str, &'a [u8], Option<&'a str>, Option<&'a str>);

/// `(name, ciphertext, service, owner, reload)` of one secret of `web1`.
type SecretSpec<'a> = (&'a str, Vec<u8>, &'a str, &'a str, Option<&'a str>);

/// Bare remote + working clone + keys + stubs + fake root + state dir.
struct Sim {
    dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.autocrlf=false",
            "-c",
            "user.name=ci",
            "-c",
            "user.email=ci@medianest.invalid",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn keygen(path: &Path) {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "deploy@medianest", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success());
}

/// The family that may write `target` (as the compiler's would be), else `base`.
fn family_for(target: &str) -> &'static str {
    medianest::artifact::FAMILY_TARGETS
        .iter()
        .map(|(f, _)| *f)
        .find(|f| medianest::artifact::family_may_write(f, target))
        .unwrap_or("base")
}

/// A snapshot of a tree: path → (sha256 or link target, mode, uid, gid).
type Snapshot = BTreeMap<String, (String, u32, u32, u32)>;

fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name().follow_links(false) {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let what = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(e.path()).unwrap().display())
        } else if md.is_file() {
            medianest::artifact::sha256_hex(&std::fs::read(e.path()).unwrap())
        } else {
            "dir".into()
        };
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        out.insert(rel, (what, md.mode() & 0o7777, md.uid(), md.gid()));
    }
    out
}

impl Sim {
    fn new() -> Sim {
        let sim = Sim { dir: tempfile::tempdir().unwrap() };
        let d = sim.path();
        git(d, &["init", "-q", "--bare", "remote.git"]);
        std::fs::create_dir_all(d.join("work")).unwrap();
        git(&d.join("work"), &["init", "-q"]);
        git(&d.join("work"), &["remote", "add", "origin", d.join("remote.git").to_str().unwrap()]);
        keygen(&d.join("key"));
        keygen(&d.join("other-key"));
        let public = std::fs::read_to_string(d.join("key.pub")).unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        std::fs::write(d.join("allowed_signers"), format!("deploy@medianest namespaces=\"git\" {}\n", key.join(" ")))
            .unwrap();
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::fs::write(d.join("root/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(d.join("root/etc/group"), "root:x:0:\nhaproxy:x:120:\n").unwrap();
        std::fs::create_dir_all(d.join("root/root/.ssh")).unwrap();
        std::fs::write(d.join("root/root/.ssh/authorized_keys"), "ssh-ed25519 AAAA operator\n").unwrap();
        std::fs::create_dir_all(d.join("stubs")).unwrap();
        for (tool, control) in [("nginx", "nginx.rc"), ("haproxy", "haproxy.rc"), ("keepalived", "keepalived.rc")] {
            stub(&d.join("stubs").join(tool), &d.join(control), &d.join("calls.log"), tool);
        }
        stub(&d.join("stubs/systemctl"), &d.join("systemctl.rc"), &d.join("calls.log"), "systemctl");
        sim
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn root(&self) -> PathBuf {
        self.path().join("root")
    }
    fn work(&self) -> PathBuf {
        self.path().join("work")
    }

    /// Makes a stub fail from now on (`systemctl` fails only for `verb`).
    fn fail(&self, tool: &str, verb: Option<&str>) {
        std::fs::write(self.path().join(format!("{tool}.rc")), verb.unwrap_or("*")).unwrap();
    }
    fn heal(&self, tool: &str) {
        let _ = std::fs::remove_file(self.path().join(format!("{tool}.rc")));
    }
    fn calls(&self) -> String {
        std::fs::read_to_string(self.path().join("calls.log")).unwrap_or_default()
    }

    /// Writes `generated/` for host `web1` (and optionally another host) into the work tree.
    fn render(&self, files: &[HostFile], other: &[HostFile]) {
        self.render_with_secrets(files, other, &[])
    }

    /// [`Sim::render`], with secrets for `web1`: `(name, ciphertext, service, owner, reload)`.
    fn render_with_secrets(&self, files: &[HostFile], other: &[HostFile], secrets: &[SecretSpec]) {
        self.render_for("main", files, other, secrets)
    }

    /// [`Sim::render_with_secrets`] for the branch `branch` (the manifest records it).
    fn render_for(&self, branch: &str, files: &[HostFile], other: &[HostFile], secrets: &[SecretSpec]) {
        let gen_dir = self.work().join("generated");
        let _ = std::fs::remove_dir_all(&gen_dir);
        let mut set = ArtifactSet::new();
        for (host, list) in [("web1", files), ("other", other)] {
            for (target, content, validate, reload) in list {
                let mut meta = ArtifactMeta::host_file(family_for(target), host, target, 0o644, "root:root");
                meta.branch = Some(branch.to_string());
                if let Some(a) = meta.apply.as_mut() {
                    a.validate =
                        validate.map(|v| serde_json::from_value(serde_json::json!(v)).expect("a known validator"));
                    a.reload = reload.map(str::to_string);
                    // As the backups family does: a timer file makes systemd reread its
                    // units, then (re)starts the timer.
                    if let Some(timer) = reload.filter(|r| r.ends_with(".timer")) {
                        a.reload = Some("daemon-reload".into());
                        a.restart = Some(timer.to_string());
                    }
                    // As the nftables family does: a firewall change is probed.
                    if *reload == Some("nftables.service") {
                        a.probe = Some(medianest::artifact::Probe::Refetch);
                    }
                }
                set.insert(meta.path.clone(), Artifact::new(content.to_vec(), meta));
            }
        }
        for (name, ciphertext, service, owner, reload) in secrets {
            let mut meta = ArtifactMeta::shared("secrets", format!("hosts/web1/secrets/{name}.age"), vec![]);
            meta.host = Some("web1".into());
            meta.secret = Some(medianest::artifact::SecretMeta {
                name: name.to_string(),
                deliveries: vec![medianest::artifact::SecretDelivery {
                    service: service.to_string(),
                    target: format!("/run/medianest/secrets/{service}/{name}"),
                    owner: owner.to_string(),
                    reload: reload.map(str::to_string),
                    restart: None,
                }],
            });
            set.insert(meta.path.clone(), Artifact::new(ciphertext.clone(), meta));
        }
        let hosts: Vec<(String, Vec<String>)> = vec![("web1".into(), vec![]), ("other".into(), vec![])];
        for p in host_plans(&set, &hosts) {
            set.insert(p.meta.path.clone(), p);
        }
        for (path, a) in &set {
            let p = gen_dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, &a.bytes).unwrap();
        }
        std::fs::write(gen_dir.join("manifest.json"), manifest_bytes(&set)).unwrap();
    }

    /// Commits the work tree (signed with `key`, or unsigned) and pushes `main`.
    fn commit(&self, message: &str, key: Option<&str>) -> String {
        let w = self.work();
        git(&w, &["add", "-A"]);
        match key {
            Some(k) => {
                let key = self.path().join(k);
                git(
                    &w,
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &format!("user.signingkey={}", key.display()),
                        "commit",
                        "-q",
                        "-S",
                        "--allow-empty",
                        "-m",
                        message,
                    ],
                )
            }
            None => git(&w, &["commit", "-q", "--allow-empty", "-m", message]),
        };
        let id = String::from_utf8(git(&w, &["rev-parse", "HEAD"]).stdout).unwrap().trim().to_string();
        git(&w, &["push", "-q", "-f", "origin", "HEAD:main"]);
        id
    }

    /// Points the remote's `main` at `commit` (a force-push).
    fn force_main(&self, commit: &str) {
        git(&self.path().join("remote.git"), &["update-ref", "refs/heads/main", commit]);
    }

    fn pull_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let signers = self.path().join("allowed_signers");
        let mut args = vec!["--allowed-signers", signers.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.pull_bare(&args, env)
    }

    /// A run with only the options given (no `--allowed-signers`).
    fn pull_bare(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!("{}:{}", self.path().join("stubs").display(), std::env::var("PATH").unwrap_or_default());
        // Node exporter's textfile directory, as its package creates it.
        std::fs::create_dir_all(self.path().join("textfile")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_medianest"))
            .args(["pull", "--once", "--format", "json", "--host", "web1", "--repo"])
            .arg(format!("file://{}", self.path().join("remote.git").display()))
            .arg("--root")
            .arg(self.root())
            .arg("--state-dir")
            .arg(self.path().join("state"))
            .arg("--textfile-dir")
            .arg(self.path().join("textfile"))
            .args(extra)
            .envs(env.iter().copied())
            .env("PATH", path)
            .output()
            .unwrap()
    }

    fn pull(&self) -> Output {
        self.pull_with(&[], &[])
    }

    fn state(&self) -> String {
        std::fs::read_to_string(self.path().join("state/state.json")).unwrap_or_default()
    }
}

/// A stub: exits 1 when its control file exists (for `systemctl`, when the control file
/// names the verb or `*`), logs every call.
fn stub(path: &Path, control: &Path, log: &Path, name: &str) {
    let script = format!(
        "#!/bin/sh\necho \"{name} $*\" >> '{}'\nif [ -e '{}' ]; then verb=$(cat '{}'); if [ \"$verb\" = '*' ] || [ \"$verb\" = \"$1\" ]; then echo \"{name} stub: failing\" >&2; exit 1; fi; fi\nexit 0\n",
        log.display(),
        control.display(),
        control.display()
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("no JSON report:\n{}\n{}", stdout(o), stderr(o)))
}

const NGINX_V1: &[u8] = b"events {}\nhttp { server { listen 80; } }\n";
const NGINX_V2: &[u8] = b"events {}\nhttp { server { listen 8080; } }\n";

fn generation(hosts: &'static [u8], nginx: &'static [u8]) -> Vec<HostFile<'static>> {
    vec![("/etc/hosts", hosts, None, None), ("/etc/nginx/nginx.conf", nginx, Some("nginx"), Some("nginx.service"))]
}

fn v1() -> Vec<HostFile<'static>> {
    generation(b"10.0.0.1 web1\n", NGINX_V1)
}

fn v2() -> Vec<HostFile<'static>> {
    generation(b"10.0.0.1 web1\n10.0.0.2 db1\n", NGINX_V2)
}

/// A simulator with v1 applied.
fn applied_v1() -> (Sim, String) {
    let sim = Sim::new();
    sim.render(&v1(), &[]);
    let c1 = sim.commit("v1", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (sim, c1)
}

/// Asserts a refused run: exit 1, a reason, nothing changed under the root or in state.
fn assert_refused(sim: &Sim, o: &Output, before: &Snapshot, state: &str, why: &str) {
    let r = report(o);
    assert_eq!(o.status.code(), Some(1), "{r}");
    assert_eq!(r["result"], "refused");
    let reason = r["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "reason {reason:?} lacks {why:?}");
    assert_eq!(&snapshot(&sim.root()), before, "the root changed");
    assert_eq!(sim.state(), state, "the state changed");
}

#[test]
fn a_new_timer_is_enabled_and_started_and_a_failing_one_rolls_back() {
    // A backup schedule must survive a reboot: the timer is enabled, not only started.
    let sim = Sim::new();
    let timer: &[u8] = b"[Timer]\nOnCalendar=*:07\n";
    let files: Vec<HostFile> =
        vec![("/etc/systemd/system/medianest-backup-x.timer", timer, None, Some("medianest-backup-x.timer"))];
    sim.render(&files, &[]);
    sim.commit("a timer", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let calls = sim.calls();
    let order: Vec<usize> = [
        "systemctl daemon-reload",
        "systemctl enable -- medianest-backup-x.timer",
        "systemctl restart -- medianest-backup-x.timer",
        "systemctl is-active -- medianest-backup-x.timer",
    ]
    .iter()
    .map(|c| calls.find(c).unwrap_or_else(|| panic!("no `{c}` in\n{calls}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order:\n{calls}");
    // A timer that cannot be enabled is a failed apply: the file is taken back.
    let changed: &[u8] = b"[Timer]\nOnCalendar=*:08\n";
    sim.render(
        &[("/etc/systemd/system/medianest-backup-x.timer", changed, None, Some("medianest-backup-x.timer"))],
        &[],
    );
    sim.commit("another schedule", Some("key"));
    sim.fail("systemctl", Some("enable"));
    let o = sim.pull();
    assert_eq!(report(&o)["result"], "rolled-back", "{}", stdout(&o));
    assert_eq!(std::fs::read(sim.root().join("etc/systemd/system/medianest-backup-x.timer")).unwrap(), timer);
}

#[test]
fn applies_a_signed_generation_then_a_rerun_changes_nothing() {
    // Catalogue 28: no-op and dry-run.
    let (sim, c1) = applied_v1();
    assert_eq!(std::fs::read(sim.root().join("etc/nginx/nginx.conf")).unwrap(), NGINX_V1);
    assert!(sim.calls().contains("nginx -t -q -c"), "validated: {}", sim.calls());
    // reload-or-restart: a unit that is not running yet (keepalived before its first
    // config) is started, not failed.
    assert!(sim.calls().contains("systemctl reload-or-restart -- nginx.service"), "{}", sim.calls());
    assert!(sim.state().contains(&c1));
    let before = snapshot(&sim.root());
    let inode = std::fs::metadata(sim.root().join("etc/hosts")).unwrap().ino();
    let calls = sim.calls();
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(report(&o)["result"], "unchanged");
    assert_eq!(snapshot(&sim.root()), before);
    assert_eq!(std::fs::metadata(sim.root().join("etc/hosts")).unwrap().ino(), inode, "nothing rewritten");
    assert_eq!(sim.calls(), calls, "no validation, no reload");
    // Dry run of a new commit: reports, writes nothing.
    sim.render(&v2(), &[]);
    sim.commit("v2", Some("key"));
    let o = sim.pull_with(&["--dry-run"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let r = report(&o);
    assert_eq!(r["result"], "dry-run");
    assert!(r["files"].as_array().unwrap().iter().any(|f| f["action"] == "update"));
    assert_eq!(snapshot(&sim.root()), before);
    assert!(sim.state().contains(&c1));
    // Metrics are written for Prometheus' textfile collector.
    let metrics = std::fs::read_to_string(sim.path().join("state/medianest.prom")).unwrap();
    assert!(metrics.contains(&format!("medianest_pull_applied_commit_info{{commit=\"{c1}\"}} 1")), "{metrics}");
    assert!(metrics.contains("medianest_pull_drift_files 0"));
    // And where node exporter reads them: the state directory is root-only.
    let textfile = sim.path().join("textfile/medianest.prom");
    assert_eq!(std::fs::read_to_string(&textfile).unwrap(), metrics);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&textfile).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn refuses_unsigned_foreign_and_tampered_commits() {
    // Catalogue 1, 2, 3.
    let (sim, c1) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.render(&v2(), &[]);
    sim.commit("unsigned", None);
    assert_refused(&sim, &sim.pull(), &before, &state, "is not signed");
    // Each case sits directly on the applied commit (every commit in between is
    // verified too, see `every_commit_between_the_applied_one_and_the_tip_is_verified`).
    git(&sim.work(), &["reset", "-q", "--soft", &c1]);
    sim.commit("foreign key", Some("other-key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "allowed_signers does not list");
    git(&sim.work(), &["reset", "-q", "--soft", &c1]);
    // Tampered: a signed commit's object edited, keeping the old signature.
    let signed = sim.commit("signed v2", Some("key"));
    let raw = String::from_utf8(git(&sim.work(), &["cat-file", "commit", &signed]).stdout).unwrap();
    let forged = raw.replace("signed v2", "signed v2 (and a backdoor)");
    std::fs::write(sim.path().join("forged"), forged).unwrap();
    let id = String::from_utf8(
        git(
            &sim.work(),
            &["hash-object", "-t", "commit", "-w", "--literally", sim.path().join("forged").to_str().unwrap()],
        )
        .stdout,
    )
    .unwrap();
    git(&sim.work(), &["push", "-q", "-f", "origin", &format!("{}:refs/heads/main", id.trim())]);
    assert_refused(&sim, &sim.pull(), &before, &state, "does not verify");
    // Signed in another namespace than `git`.
    let unsigned = sim.commit("to be signed as a file", None);
    let payload = git(&sim.work(), &["cat-file", "commit", &unsigned]).stdout;
    std::fs::write(sim.path().join("payload"), &payload).unwrap();
    let o = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(sim.path().join("key"))
        .arg(sim.path().join("payload"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let sig = std::fs::read_to_string(sim.path().join("payload.sig")).unwrap();
    let text = String::from_utf8(payload).unwrap();
    let (headers, body) = text.split_once("\n\n").unwrap();
    let gpgsig = format!("gpgsig {}", sig.trim_end().replace('\n', "\n "));
    std::fs::write(sim.path().join("wrong-ns"), format!("{headers}\n{gpgsig}\n\n{body}")).unwrap();
    let id = String::from_utf8(
        git(&sim.work(), &["hash-object", "-t", "commit", "-w", sim.path().join("wrong-ns").to_str().unwrap()]).stdout,
    )
    .unwrap();
    git(&sim.work(), &["push", "-q", "-f", "origin", &format!("{}:refs/heads/main", id.trim())]);
    assert_refused(&sim, &sim.pull(), &before, &state, "does not verify");
}

#[test]
fn refuses_a_force_push_back_to_an_older_signed_commit() {
    // Catalogue 4.
    let (sim, c1) = applied_v1();
    sim.render(&v2(), &[]);
    let c2 = sim.commit("v2", Some("key"));
    assert_eq!(sim.pull().status.code(), Some(0));
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.force_main(&c1);
    assert_refused(&sim, &sim.pull(), &before, &state, "does not descend from the last applied commit");
    assert!(sim.state().contains(&c2));
    // An operator may roll back on purpose.
    let o = sim.pull_with(&["--allow-rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(sim.root().join("etc/nginx/nginx.conf")).unwrap(), NGINX_V1);
}

#[test]
fn a_missing_remote_keeps_the_last_known_good_state() {
    // Catalogue 11: the remote is gone (deleted, renamed, unreachable).
    let (sim, c1) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    let remote = sim.path().join("remote.git");
    let moved = sim.path().join("remote-moved.git");
    std::fs::rename(&remote, &moved).unwrap();
    let o = sim.pull();
    let r = report(&o);
    assert_eq!(o.status.code(), Some(5), "{r}");
    assert_eq!(r["result"], "fetch-failed");
    assert_eq!(&snapshot(&sim.root()), &before, "the root changed");
    assert_eq!(sim.state(), state, "the state changed");
    // Back again: nothing to do, the last applied commit is still the one in force.
    std::fs::rename(&moved, &remote).unwrap();
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(&snapshot(&sim.root()), &before);
    assert!(sim.state().contains(&c1));
}

#[test]
fn a_fetch_over_the_byte_cap_is_aborted_and_changes_nothing() {
    // Catalogue 9: endless data. A 4 MB blob of noise (it does not compress) against a
    // 1 MB cap: the fetch stops, the last applied generation stays in force.
    let (sim, c1) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    let mut noise = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(sim.work().join("blob.bin"), &noise).unwrap();
    sim.commit("a huge blob", Some("key"));
    let o = sim.pull_with(&["--max-bytes", "1000000"], &[]);
    let r = report(&o);
    assert_eq!(o.status.code(), Some(5), "{r}");
    assert_eq!(r["result"], "fetch-failed");
    assert!(r["reason"].as_str().unwrap_or_default().contains("1000000 bytes"), "{r}");
    assert_eq!(&snapshot(&sim.root()), &before, "the root changed");
    assert_eq!(sim.state(), state, "the state changed");
    assert!(sim.state().contains(&c1));
    // The cap, not the blob, stopped it: with room for the blob the same commit applies.
    let o = sim.pull_with(&["--max-bytes", "100000000"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!sim.state().contains(&c1), "the new commit is in force");
}

/// Commits a host tree whose `generated/hosts/web1` is replaced by a crafted tree.
fn crafted(sim: &Sim, entry: &str) -> (Snapshot, String) {
    let before = snapshot(&sim.root());
    let state = sim.state();
    let w = sim.work();
    let blob = String::from_utf8(git(&w, &["hash-object", "-w", "generated/hosts/web1/plan.json"]).stdout).unwrap();
    let mktree = |input: String| -> String {
        let mut child = Command::new("git")
            .current_dir(&w)
            .args(["mktree", "-z", "--missing"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_string()
    };
    // NUL-terminated entries (`mktree -z`): a crafted name may hold a newline.
    let host = mktree(format!("100644 blob {}\tplan.json\0{entry}\0", blob.trim()));
    let hosts = mktree(format!("040000 tree {host}\tweb1\0"));
    let manifest = String::from_utf8(git(&w, &["hash-object", "-w", "generated/manifest.json"]).stdout).unwrap();
    let generated = mktree(format!("040000 tree {hosts}\thosts\0100644 blob {}\tmanifest.json\0", manifest.trim()));
    let top = mktree(format!("040000 tree {generated}\tgenerated\0"));
    let commit = String::from_utf8(
        git(
            &w,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={}", sim.path().join("key").display()),
                "commit-tree",
                "-S",
                "-p",
                "HEAD",
                "-m",
                "crafted",
                &top,
            ],
        )
        .stdout,
    )
    .unwrap();
    git(&w, &["push", "-q", "-f", "origin", &format!("{}:refs/heads/main", commit.trim())]);
    (before, state)
}

#[test]
fn refuses_crafted_trees_whatever_the_signature() {
    // Catalogue 12, 13, 16: `..`, `.git`, symlinks, submodules. Signed by the right key.
    let cases: Vec<(String, &str)> = vec![
        ("040000 tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\t..".into(), "holds the name `..`"),
        ("100644 blob e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\t.GIT".into(), "holds the name `.GIT`"),
        ("120000 blob e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\tshadow".into(), "is a symlink"),
        ("160000 commit 0000000000000000000000000000000000000001\tsub".into(), "is a submodule"),
    ];
    for (entry, why) in cases {
        let (sim, _) = applied_v1();
        git(&sim.work(), &["hash-object", "-w", "--stdin"]);
        let (before, state) = crafted(&sim, &entry);
        assert_refused(&sim, &sim.pull(), &before, &state, why);
    }
}

#[test]
fn refuses_targets_outside_the_allowed_roots_and_files_off_the_manifest() {
    // Catalogue 14 (agent side) and manifest verification.
    let (sim, _) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.render(&[("/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA attacker\n", None, None)], &[]);
    sim.commit("outside", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "outside the roots the agent may write");
    // A file changed after rendering no longer matches the manifest.
    sim.render(&v2(), &[]);
    std::fs::write(sim.work().join("generated/hosts/web1/root/etc/hosts"), "6.6.6.6 web1\n").unwrap();
    sim.commit("edited by hand", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "does not match its sha256 in the manifest");
}

#[test]
fn compiler_never_renders_a_target_outside_etc() {
    // Catalogue 14, compiler side: every planned target of the reference site is under /etc/.
    let compiled = medianest::ops::compile(&medianest::ops::Paths::under(&repo_root()));
    for a in compiled.artifacts.values() {
        if let Some(apply) = &a.meta.apply {
            assert!(
                medianest::agent::source::ALLOWED_ROOTS.iter().any(|r| apply.target.starts_with(r)),
                "{}",
                apply.target
            );
        }
    }
}

#[test]
fn never_writes_through_a_host_symlink() {
    // Catalogue 15.
    let sim = Sim::new();
    std::fs::create_dir_all(sim.root().join("outside")).unwrap();
    std::os::unix::fs::symlink(sim.root().join("outside"), sim.root().join("etc/nginx")).unwrap();
    sim.render(&v1(), &[]);
    sim.commit("v1", Some("key"));
    let before = snapshot(&sim.root());
    let o = sim.pull();
    assert_refused(&sim, &o, &before, "", "is a symlink or not a directory");
    assert!(std::fs::read_dir(sim.root().join("outside")).unwrap().next().is_none());
    // A symlink at the file itself is not followed either.
    std::fs::remove_file(sim.root().join("etc/nginx")).unwrap();
    std::fs::create_dir_all(sim.root().join("etc/nginx")).unwrap();
    std::os::unix::fs::symlink(sim.root().join("root/.ssh/authorized_keys"), sim.root().join("etc/nginx/nginx.conf"))
        .unwrap();
    let before = snapshot(&sim.root());
    assert_refused(&sim, &sim.pull(), &before, "", "symlink");
}

#[test]
fn reads_only_its_own_host_tree() {
    // Catalogue 17.
    let sim = Sim::new();
    sim.render(&v1(), &[("/etc/passwd", b"root::0:0::/:/bin/sh\n", None, None)]);
    std::fs::write(sim.work().join("README"), "top-level file\n").unwrap();
    sim.commit("two hosts", Some("key"));
    let passwd = std::fs::read(sim.root().join("etc/passwd")).unwrap();
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(sim.root().join("etc/passwd")).unwrap(), passwd, "another host's file was applied");
}

#[test]
fn validation_reload_and_health_failures_restore_the_previous_state() {
    // Catalogue 18, 19, 20, 21.
    for (tool, verb, result) in [
        ("nginx", None, "invalid"),
        ("systemctl", Some("reload-or-restart"), "rolled-back"),
        ("systemctl", Some("is-active"), "rolled-back"),
    ] {
        let (sim, c1) = applied_v1();
        let before = snapshot(&sim.root());
        sim.render(&v2(), &[]);
        sim.commit("v2", Some("key"));
        sim.fail(tool, verb);
        let o = sim.pull();
        let r = report(&o);
        assert_eq!(o.status.code(), Some(3), "{tool} {verb:?}: {r}");
        assert_eq!(r["result"], result);
        assert_eq!(snapshot(&sim.root()), before, "{tool} {verb:?}: not restored byte for byte");
        assert!(sim.state().contains(&c1));
        sim.heal(tool);
        assert_eq!(sim.pull().status.code(), Some(0), "applies once fixed");
        assert_eq!(std::fs::read(sim.root().join("etc/nginx/nginx.conf")).unwrap(), NGINX_V2);
    }
    // Two services, one invalid: nothing of either is applied.
    let (sim, _) = applied_v1();
    let before = snapshot(&sim.root());
    let mut files = v2();
    files.push(("/etc/haproxy/haproxy.cfg", b"global\n", Some("haproxy"), Some("haproxy.service")));
    sim.render(&files, &[]);
    sim.commit("v2 + haproxy", Some("key"));
    sim.fail("haproxy", None);
    assert_eq!(sim.pull().status.code(), Some(3));
    assert_eq!(snapshot(&sim.root()), before);
}

#[test]
fn drift_is_reported_and_enforced_or_kept() {
    let (sim, _) = applied_v1();
    std::fs::write(sim.root().join("etc/hosts"), "edited by hand\n").unwrap();
    let o = sim.pull_with(&["--drift", "report"], &[]);
    let r = report(&o);
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert_eq!(r["drift"], serde_json::json!(["/etc/hosts"]));
    assert_eq!(std::fs::read_to_string(sim.root().join("etc/hosts")).unwrap(), "edited by hand\n");
    let metrics = std::fs::read_to_string(sim.path().join("state/medianest.prom")).unwrap();
    assert!(metrics.contains("medianest_pull_drift_files 1"), "{metrics}");
    let o = sim.pull();
    assert_eq!(
        report(&o)["files"].as_array().unwrap().iter().find(|f| f["target"] == "/etc/hosts").unwrap()["action"],
        "drift-overwritten"
    );
    assert_eq!(std::fs::read(sim.root().join("etc/hosts")).unwrap(), b"10.0.0.1 web1\n");
}

#[test]
fn modes_and_owners_come_from_the_plan_whatever_the_umask() {
    // Catalogue 27.
    let sim = Sim::new();
    sim.render(&v1(), &[]);
    // Make one file 0640 root:haproxy by editing the plan and manifest consistently.
    let plan_path = sim.work().join("generated/hosts/web1/plan.json");
    let plan = std::fs::read_to_string(&plan_path).unwrap().replace(
        "\"mode\": \"0644\",\n      \"owner\": \"root:root\"",
        "\"mode\": \"0640\",\n      \"owner\": \"root:haproxy\"",
    );
    std::fs::write(&plan_path, &plan).unwrap();
    let manifest_path = sim.work().join("generated/manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        if f["path"] == "hosts/web1/plan.json" {
            f["sha256"] = medianest::artifact::sha256_hex(plan.as_bytes()).into();
        } else if f["path"].as_str().unwrap().starts_with("hosts/web1/root/") {
            f["mode"] = "0640".into();
            f["owner"] = "root:haproxy".into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    sim.commit("modes", Some("key"));
    let path = format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap());
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec '{}' pull --once --format json --host web1 --repo 'file://{}' --root '{}' --state-dir '{}' --textfile-dir /nonexistent --allowed-signers '{}'",
            env!("CARGO_BIN_EXE_medianest"),
            sim.path().join("remote.git").display(),
            sim.root().display(),
            sim.path().join("state").display(),
            sim.path().join("allowed_signers").display()
        ))
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["etc/hosts", "etc/nginx/nginx.conf"] {
        let md = std::fs::metadata(sim.root().join(f)).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640, "{f}");
        assert_eq!((md.uid(), md.gid()), (0, 120), "{f}");
    }
}

#[test]
fn one_run_at_a_time_and_kill_9_frees_the_lock() {
    // Catalogue 26.
    let (sim, _) = applied_v1();
    let lock = sim.path().join("state/lock");
    // `-o`: the lock is held by `flock` itself, not inherited by `sleep`.
    let mut holder = Command::new("flock").arg("-o").arg(&lock).args(["sleep", "30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(report(&o)["result"], "busy");
    // kill -9 the holder: the kernel releases the lock; no stale lock file to clean.
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(sim.pull().status.code(), Some(0));
}

/// Every managed file is exactly the old or the new version.
fn assert_old_or_new(sim: &Sim, old: &[HostFile], new: &[HostFile]) -> usize {
    let mut torn = 0;
    for ((target, a, ..), (_, b, ..)) in old.iter().zip(new) {
        let p = sim.root().join(target.trim_start_matches('/'));
        let now = std::fs::read(&p).unwrap_or_default();
        if now != *a && now != *b {
            torn += 1;
        }
    }
    torn
}

#[test]
fn a_crash_at_every_step_converges_to_old_or_new() {
    // Catalogue 22: crash hook at every step boundary, then a rerun converges.
    let steps = [
        "fetched",
        "verified",
        "staged",
        "journaled",
        "before-rename#1",
        "swapped#1",
        "before-rename#2",
        "swapped#2",
        "reloaded",
        "recorded",
    ];
    let mut converged = 0;
    for step in steps {
        let (sim, _) = applied_v1();
        sim.render(&v2(), &[]);
        let c2 = sim.commit("v2", Some("key"));
        let o = sim.pull_with(&[], &[("MEDIANEST_CRASH_AT", step)]);
        assert_ne!(o.status.code(), Some(0), "{step}: the hook did not fire");
        assert_eq!(assert_old_or_new(&sim, &v1(), &v2()), 0, "{step}: torn file");
        let o = sim.pull();
        assert_eq!(o.status.code(), Some(0), "{step}: {}", stderr(&o));
        assert!(sim.state().contains(&c2), "{step}");
        for (target, content, ..) in v2() {
            assert_eq!(
                std::fs::read(sim.root().join(target.trim_start_matches('/'))).unwrap(),
                content,
                "{step}: {target}"
            );
        }
        assert!(!sim.path().join("state/journal.json").exists());
        converged += 1;
    }
    assert_eq!(converged, steps.len());
}

#[test]
fn random_sigkills_during_apply_leave_no_torn_file() {
    // Catalogue 23: at least 200 SIGKILLs at random times during an apply. The files are
    // large enough that a naive writer would be caught mid-write.
    let big1 = vec![b'a'; 1 << 20];
    let big2 = vec![b'b'; 1 << 20];
    let gen1: Vec<HostFile> = vec![("/etc/nginx/big.conf", &big1, None, None), ("/etc/hosts", b"v1\n", None, None)];
    let gen2: Vec<HostFile> = vec![("/etc/nginx/big.conf", &big2, None, None), ("/etc/hosts", b"v2\n", None, None)];
    let sim = Sim::new();
    sim.render(&gen1, &[]);
    let c1 = sim.commit("gen1", Some("key"));
    sim.render(&gen2, &[]);
    let c2 = sim.commit("gen2", Some("key"));
    sim.force_main(&c1);
    assert_eq!(sim.pull().status.code(), Some(0));
    let path = format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap());
    // 200 in CI; `scripts/bench/agent-kill-loop.sh` runs 1,000 (MEDIANEST_KILL_RUNS).
    let runs: usize = std::env::var("MEDIANEST_KILL_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    // How long a whole apply takes here: kills are spread over that span, so they land in
    // every phase, the file swaps included.
    let spawn_run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_medianest"))
            .args(["pull", "--once", "--allow-rollback", "--host", "web1", "--repo"])
            .arg(format!("file://{}", sim.path().join("remote.git").display()))
            .arg("--root")
            .arg(sim.root())
            .arg("--state-dir")
            .arg(sim.path().join("state"))
            .arg("--textfile-dir")
            .arg(sim.path().join("textfile"))
            .arg("--allowed-signers")
            .arg(sim.path().join("allowed_signers"))
            .args(extra)
            .env("PATH", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut span = std::time::Duration::ZERO;
    for target in [&c2, &c1, &c2, &c1] {
        sim.force_main(target);
        let t = std::time::Instant::now();
        assert!(spawn_run(&[]).wait().unwrap().success());
        span = span.max(t.elapsed());
    }
    let span_us = span.as_micros() as u64 + 1;
    let (mut torn, mut killed, mut mid_apply, mut leftover) = (0, 0, 0, 0);
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for i in 0..runs {
        let (target, files) = if i % 2 == 0 { (&c2, &gen2) } else { (&c1, &gen1) };
        sim.force_main(target);
        let mut child = spawn_run(&[]);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_micros(seed % span_us));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        if sim.path().join("state/journal.json").exists() {
            mid_apply += 1;
        }
        torn += assert_old_or_new(&sim, &gen1, &gen2);
        // The next run converges to the branch's commit. A child the killed run forked
        // holds the lock until it execs (the lock is close-on-exec): under load that
        // window can outlast the kill, and the next run then says busy (exit 4) and
        // leaves everything alone; the one after converges.
        let mut o = sim.pull_with(&["--allow-rollback"], &[]);
        for _ in 0..20 {
            if o.status.code() != Some(4) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            o = sim.pull_with(&["--allow-rollback"], &[]);
        }
        assert_eq!(o.status.code(), Some(0), "run {i}: {}", stderr(&o));
        for (t, content, ..) in files.iter() {
            assert_eq!(std::fs::read(sim.root().join(t.trim_start_matches('/'))).unwrap(), *content, "run {i}: {t}");
        }
        // And nothing of the killed run is left (#13 item 6).
        let left = leftovers(&sim);
        leftover += left.len();
        assert_eq!(left, Vec::<String>::new(), "run {i}: leftovers after the next run");
    }
    eprintln!(
        "sigkill runs: {runs}, killed while running: {killed}, killed between journal and record: {mid_apply}, torn files: {torn}, leftovers after the next run: {leftover}"
    );
    assert_eq!(torn, 0);
    assert!(killed >= runs * 3 / 10, "too few kills landed during a run ({killed}); the test would prove little");
    assert!(mid_apply >= runs / 20, "too few kills landed between the journal and the record ({mid_apply})");
}

#[test]
fn a_full_disk_while_staging_changes_nothing() {
    // Catalogue 25: the state directory (where files are staged) is a 256 KiB tmpfs in a
    // private mount namespace; the new generation does not fit.
    let big = vec![b'x'; 1 << 20];
    let (sim, c1) = applied_v1();
    let before = snapshot(&sim.root());
    let mut files = v2();
    files.push(("/etc/nginx/big.conf", &big, None, None));
    sim.render(&files, &[]);
    sim.commit("too big", Some("key"));
    let small = sim.path().join("small-state");
    std::fs::create_dir_all(&small).unwrap();
    let path = format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap());
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{s}' && cp -a '{st}/.' '{s}/' && exec '{bin}' pull --once --format json --host web1 --repo 'file://{repo}' --root '{root}' --state-dir '{s}' --textfile-dir /nonexistent --allowed-signers '{signers}'",
        s = small.display(),
        st = sim.path().join("state").display(),
        bin = env!("CARGO_BIN_EXE_medianest"),
        repo = sim.path().join("remote.git").display(),
        root = sim.root().display(),
        signers = sim.path().join("allowed_signers").display()
    );
    let o = Command::new("unshare").args(["-m", "sh", "-c", &script]).env("PATH", path).output().unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    let reason = report(&o)["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("No space left on device"), "failed for another reason: {reason}");
    assert_eq!(snapshot(&sim.root()), before, "a full disk changed the live files");
    assert!(sim.state().contains(&c1));
}

const NFT_OPEN: &[u8] = b"table inet medianest\ndelete table inet medianest\ntable inet medianest {\n    chain output {\n        type filter hook output priority filter; policy accept;\n    }\n}\n";
const NFT_CUT_OFF: &[u8] = b"table inet medianest\ndelete table inet medianest\ntable inet medianest {\n    chain output {\n        type filter hook output priority filter; policy accept;\n        tcp dport 9418 reject with tcp reset\n    }\n}\n";

#[test]
fn a_firewall_that_cuts_the_host_off_its_repository_is_rolled_back() {
    // The host and its git server in two network namespaces; systemctl applies the
    // ruleset for real, with nft, inside the host's namespace. A ruleset that blocks the
    // git port passes `nft -c` and loads, but the repository no longer answers: the
    // agent restores the previous rules and says why.
    let sim = Sim::new();
    let (ns, remote_ns) = (format!("mnag{}", std::process::id()), format!("mnrm{}", std::process::id()));
    let sh = |s: &str| {
        let o = Command::new("sh").arg("-c").arg(s).output().unwrap();
        assert!(o.status.success(), "{s}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!("ip netns pids {n} | xargs -r kill -9; ip netns del {n}"))
                    .status();
            }
        }
    }
    let _cleanup = Cleanup(vec![ns.clone(), remote_ns.clone()]);
    sh(&format!(
        "ip netns add {ns} && ip netns add {remote_ns} && ip link add mnag{p} type veth peer name mnrm{p} && \
         ip link set mnag{p} netns {ns} name eth0 && ip link set mnrm{p} netns {remote_ns} name eth0 && \
         ip -n {ns} addr add 10.0.1.2/24 dev eth0 && ip -n {remote_ns} addr add 10.0.1.10/24 dev eth0 && \
         ip -n {ns} link set eth0 up && ip -n {remote_ns} link set eth0 up && ip -n {ns} link set lo up && ip -n {remote_ns} link set lo up",
        p = std::process::id() % 100000
    ));
    let daemon = Command::new("ip")
        .args([
            "netns",
            "exec",
            &remote_ns,
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=10.0.1.10",
            "--port=9418",
        ])
        .arg(format!("--base-path={}", sim.path().display()))
        .arg(sim.path())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _daemon = Kill(daemon);
    // systemctl applies the host's ruleset the way nftables.service does.
    let systemctl = sim.path().join("stubs/systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\necho \"systemctl $*\" >> '{}'\nif [ \"$1\" = reload-or-restart ] && [ \"$3\" = nftables.service ]; then exec nft -f '{}/etc/nftables.conf'; fi\nexit 0\n",
            sim.path().join("calls.log").display(),
            sim.root().display()
        ),
    )
    .unwrap();
    let pull = || {
        let path = format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap_or_default());
        Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_medianest")])
            .args(["pull", "--once", "--format", "json", "--host", "web1", "--repo", "git://10.0.1.10/remote.git"])
            .arg("--root")
            .arg(sim.root())
            .arg("--state-dir")
            .arg(sim.path().join("state"))
            .arg("--textfile-dir")
            .arg(sim.path().join("textfile"))
            .arg("--allowed-signers")
            .arg(sim.path().join("allowed_signers"))
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let nft = vec![("/etc/nftables.conf", NFT_OPEN, Some("nft"), Some("nftables.service"))];
    sim.render(&nft, &[]);
    let c1 = sim.commit("open", Some("key"));
    // The daemon may take a moment to listen.
    let mut o = pull();
    for _ in 0..50 {
        if o.status.code() != Some(4) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        o = pull();
    }
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let before = snapshot(&sim.root());

    let cut = vec![("/etc/nftables.conf", NFT_CUT_OFF, Some("nft"), Some("nftables.service"))];
    sim.render(&cut, &[]);
    sim.commit("cut off", Some("key"));
    let o = pull();
    let r = report(&o);
    assert_eq!(o.status.code(), Some(3), "{r}");
    assert_eq!(r["result"], "rolled-back", "{r}");
    assert!(r["reason"].as_str().unwrap_or("").contains("unreachable"), "{r}");
    assert_eq!(snapshot(&sim.root()), before, "the previous ruleset is back on disk");
    assert!(sim.state().contains(&c1));
    let live = sh(&format!("ip netns exec {ns} nft list table inet medianest"));
    assert!(!live.contains("9418"), "the previous ruleset is loaded again:\n{live}");
    assert_eq!(sim.calls().matches("reload-or-restart -- nftables.service").count(), 3, "{}", sim.calls());
    // And the host still pulls.
    assert_eq!(pull().status.code(), Some(3), "the same commit is refused again, not half-applied");
}

/// A `docker` stub: logs its argv, and for `up` / `stack deploy` the sha256 of the file
/// it deploys (so a test sees which bytes were running); `config` fails while
/// `docker.rc` exists; `compose ps` prints `ps.json`, `service ls` prints `services.txt`.
fn docker_stub(sim: &Sim) {
    let d = sim.path();
    let script = format!(
        r#"#!/bin/sh
echo "docker $*" >> '{log}'
file=; prev=
for a in "$@"; do
  if [ "$prev" = -f ] || [ "$prev" = -c ]; then file=$a; fi
  prev=$a
done
case " $* " in
  *" config "*) if [ -e '{rc}' ]; then echo "docker stub: invalid" >&2; exit 1; fi ;;
  *" up "*|*" stack deploy "*) echo "deployed $(sha256sum < "$file" | cut -c1-64)" >> '{log}' ;;
  *" ps "*) cat '{ps}' ;;
  *" service ls "*) cat '{svc}' ;;
esac
exit 0
"#,
        log = d.join("calls.log").display(),
        rc = d.join("docker.rc").display(),
        ps = d.join("ps.json").display(),
        svc = d.join("services.txt").display(),
    );
    let path = d.join("stubs/docker");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes `generated/` for `web1` with one container file deployed by `deploy`.
fn render_deploy(sim: &Sim, target: &str, content: &[u8], validate: &str, deploy: &str) {
    let gen_dir = sim.work().join("generated");
    let _ = std::fs::remove_dir_all(&gen_dir);
    let mut set = ArtifactSet::new();
    let mut meta = ArtifactMeta::host_file("containers", "web1", target, 0o640, "root:root");
    meta.branch = Some("main".into());
    if let Some(a) = meta.apply.as_mut() {
        a.validate = Some(serde_json::from_value(serde_json::json!(validate)).expect("a known validator"));
        a.deploy = Some(serde_json::from_value(serde_json::json!(deploy)).expect("a known deploy action"));
    }
    set.insert(meta.path.clone(), Artifact::new(content.to_vec(), meta));
    for p in host_plans(&set, &[("web1".into(), vec![])]) {
        set.insert(p.meta.path.clone(), p);
    }
    for (path, a) in &set {
        let p = gen_dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &a.bytes).unwrap();
    }
    std::fs::write(gen_dir.join("manifest.json"), manifest_bytes(&set)).unwrap();
}

fn sha(b: &[u8]) -> String {
    medianest::artifact::sha256_hex(b)
}

#[test]
fn containers_deploy_converge_and_a_failed_convergence_redeploys_the_previous_file() {
    const COMPOSE: &str = "/etc/medianest/compose/compose.yaml";
    const STACK: &str = "/etc/medianest/stacks/lab.yml";
    let healthy = r#"{"Name":"lab-web-1","State":"running","Health":"healthy"}
{"Name":"lab-worker-1","State":"running","Health":""}
"#;
    let unhealthy = r#"{"Name":"lab-web-1","State":"running","Health":"unhealthy"}"#;
    for (target, validate, deploy, up, good, bad) in [
        (COMPOSE, "compose", "compose", "compose -f", healthy, unhealthy),
        (STACK, "stack", "stack", "stack deploy --prune --with-registry-auth -c", "lab_api 2/2\n", "lab_api 1/2\n"),
    ] {
        let sim = Sim::new();
        docker_stub(&sim);
        let (ps, svc) = (sim.path().join("ps.json"), sim.path().join("services.txt"));
        std::fs::write(&ps, good).unwrap();
        std::fs::write(&svc, good).unwrap();
        let (v1, v2): (&[u8], &[u8]) = (b"name: lab\nservices: {}\n", b"name: lab\nservices: {web: {}}\n");
        render_deploy(&sim, target, v1, validate, deploy);
        sim.commit("v1", Some("key"));
        let o = sim.pull_with(&[], &[("MEDIANEST_CONVERGE_SECS", "2")]);
        let r = report(&o);
        assert_eq!(o.status.code(), Some(0), "{deploy}: {r}\n{}", stderr(&o));
        assert_eq!(r["deployed"], serde_json::json!([target]));
        let calls = sim.calls();
        let file = sim.root().join(target.trim_start_matches('/'));
        assert!(calls.contains(&format!("docker {up} {}", file.display())), "{calls}");
        assert!(calls.contains(&format!("deployed {}", sha(v1))), "{calls}");
        if deploy == "stack" {
            assert!(calls.contains(&format!("-c {} lab", file.display())), "the stack is named by its file: {calls}");
            assert!(calls.contains("service ls --filter label=com.docker.stack.namespace=lab"), "{calls}");
        } else {
            assert!(calls.contains("up -d --remove-orphans"), "{calls}");
            assert!(calls.contains("ps --all --format json"), "{calls}");
        }

        // v2 does not converge: v1 comes back byte for byte and is deployed again.
        let before = snapshot(&sim.root());
        render_deploy(&sim, target, v2, validate, deploy);
        sim.commit("v2", Some("key"));
        std::fs::write(&ps, bad).unwrap();
        std::fs::write(&svc, bad).unwrap();
        std::fs::write(sim.path().join("calls.log"), "").unwrap();
        let o = sim.pull_with(&[], &[("MEDIANEST_CONVERGE_SECS", "1")]);
        let r = report(&o);
        assert_eq!(o.status.code(), Some(3), "{deploy}: {r}");
        assert_eq!(r["result"], "rolled-back");
        assert!(r["reason"].as_str().unwrap().contains("did not converge"), "{r}");
        assert_eq!(snapshot(&sim.root()), before, "{deploy}: not restored byte for byte");
        let calls = sim.calls();
        let deployed: Vec<&str> = calls.lines().filter(|l| l.starts_with("deployed ")).collect();
        assert_eq!(deployed, [format!("deployed {}", sha(v2)), format!("deployed {}", sha(v1))], "{calls}");

        // A file Docker's own check refuses is never swapped in nor deployed.
        std::fs::write(sim.path().join("docker.rc"), "").unwrap();
        std::fs::write(sim.path().join("calls.log"), "").unwrap();
        let o = sim.pull_with(&[], &[("MEDIANEST_CONVERGE_SECS", "1")]);
        assert_eq!(report(&o)["result"], "invalid");
        assert_eq!(snapshot(&sim.root()), before);
        assert!(!sim.calls().contains("deployed"), "{}", sim.calls());
    }
}

// Secrets delivery (#15): decrypted with the host's SSH key into the secrets tmpfs,
// rotated with a reload, refused whole when one does not decrypt, and never a plaintext
// anywhere else.

const ALPHA: &str = "s3cret-ALPHA-7d1e40c2";
const BRAVO: &str = "s3cret-BRAVO-93b0aa51";
const CHARLIE: &str = "s3cret-CHARLIE-0c55e2f7";

/// A host key for `web1` in the fake root (and one for another host); returns the
/// recipients `(web1, other)`.
fn host_keys(sim: &Sim) -> (medianest::secrets::Recipient, medianest::secrets::Recipient) {
    std::fs::create_dir_all(sim.root().join("etc/ssh")).unwrap();
    keygen(&sim.root().join("etc/ssh/ssh_host_ed25519_key"));
    keygen(&sim.path().join("other-host-key"));
    let r = |p: PathBuf| medianest::secrets::parse_recipient(&std::fs::read_to_string(p).unwrap()).unwrap();
    (r(sim.root().join("etc/ssh/ssh_host_ed25519_key.pub")), r(sim.path().join("other-host-key.pub")))
}

fn seal(name: &str, value: &str, to: &medianest::secrets::Recipient) -> Vec<u8> {
    medianest::secrets::encrypt(name, value.as_bytes(), std::slice::from_ref(to)).unwrap()
}

/// Every place outside the secrets directory that holds one of `values`: files under
/// the root, the state directory, the textfile directory, and the run's output.
fn plaintext_leaks(sim: &Sim, o: &Output, values: &[&str]) -> Vec<String> {
    let secrets_dir = sim.root().join("run/medianest/secrets");
    let mut found = Vec::new();
    for dir in [sim.root(), sim.path().join("state"), sim.path().join("textfile")] {
        for e in walkdir::WalkDir::new(&dir).follow_links(false) {
            let e = e.unwrap();
            if !e.file_type().is_file() || e.path().starts_with(&secrets_dir) {
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap();
            for v in values {
                if bytes.windows(v.len()).any(|w| w == v.as_bytes()) {
                    found.push(format!("{} holds {v}", e.path().display()));
                }
            }
        }
    }
    for v in values {
        if stdout(o).contains(v) || stderr(o).contains(v) {
            found.push(format!("the output holds {v}"));
        }
    }
    found
}

#[test]
fn delivers_and_rotates_secrets_with_a_reload_and_no_plaintext_elsewhere() {
    let sim = Sim::new();
    let (web1, _) = host_keys(&sim);
    std::fs::write(sim.root().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\npostgres:x:70:71::/:/bin/false\n")
        .unwrap();
    std::fs::write(sim.root().join("etc/group"), "root:x:0:\npostgres:x:71:\n").unwrap();
    let spec = |v: &str| {
        vec![(
            "db_password",
            seal("db_password", v, &web1),
            "postgres",
            "postgres:postgres",
            Some("postgresql.service"),
        )]
    };
    sim.render_with_secrets(&v1(), &[], &spec(ALPHA));
    sim.commit("v1 with a secret", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = sim.root().join("run/medianest/secrets/postgres/db_password");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ALPHA);
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o400, 70, 71), "0400 postgres:postgres");
    // The tmpfs can be crossed, not listed; each service's directory is its own.
    let dir = |p: &str| {
        let m = std::fs::metadata(sim.root().join(p)).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(dir("run/medianest/secrets"), (0o711, 0, 0));
    assert_eq!(dir("run/medianest/secrets/postgres"), (0o500, 70, 71));
    assert_eq!(dir("run/medianest/secrets/.rollback"), (0o700, 0, 0));
    let r = report(&o);
    assert_eq!(r["secrets"][0]["name"], "db_password");
    assert_eq!(r["secrets"][0]["action"], "create");
    assert!(sim.calls().contains("systemctl reload-or-restart -- postgresql.service"), "{}", sim.calls());
    let metrics = std::fs::read_to_string(sim.path().join("textfile/medianest.prom")).unwrap();
    let sha = r["secrets"][0]["sha256"].as_str().unwrap();
    assert!(
        metrics.contains(&format!(
            "medianest_pull_secret_info{{name=\"db_password\",service=\"postgres\",ciphertext_sha256=\"{sha}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA]), Vec::<String>::new());

    // Rotation: the new value replaces the old one and the unit that reads it reloads.
    let calls = sim.calls().matches("postgresql.service").count();
    sim.render_with_secrets(&v1(), &[], &spec(BRAVO));
    sim.commit("rotate db_password", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report(&o)["secrets"][0]["action"], "rotate");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), BRAVO);
    assert!(sim.calls().matches("postgresql.service").count() > calls, "reloaded: {}", sim.calls());
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA, BRAVO]), Vec::<String>::new());
    assert!(!sim.root().join("run/medianest/secrets/.rollback/0").exists(), "the rollback copy is removed");

    // Nothing to do: nothing rewritten, nothing reloaded.
    let calls = sim.calls();
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report(&o)["secrets"][0]["action"], "unchanged");
    assert_eq!(sim.calls(), calls);

    // A failed reload restores the previous value, from the tmpfs, not the state dir.
    sim.render_with_secrets(&v1(), &[], &spec(ALPHA));
    sim.commit("rotate back", Some("key"));
    sim.fail("systemctl", Some("reload-or-restart"));
    let o = sim.pull();
    sim.heal("systemctl");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), BRAVO, "the previous value is back");
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA, BRAVO]), Vec::<String>::new());
}

#[test]
fn boot_delivers_the_applied_secrets_again_without_the_network_even_after_a_refused_fetch() {
    let sim = Sim::new();
    let (web1, _) = host_keys(&sim);
    std::fs::write(sim.root().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\npostgres:x:70:71::/:/bin/false\n")
        .unwrap();
    std::fs::write(sim.root().join("etc/group"), "root:x:0:\npostgres:x:71:\n").unwrap();
    let spec = vec![("db_password", seal("db_password", ALPHA, &web1), "postgres", "postgres:postgres", None)];
    sim.render_with_secrets(&v1(), &[], &spec);
    sim.commit("v1 with a secret", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A reboot empties the tmpfs, and the repository is out of reach.
    std::fs::remove_dir_all(sim.root().join("run/medianest")).unwrap();
    std::fs::rename(sim.path().join("remote.git"), sim.path().join("remote.away")).unwrap();
    let calls = sim.calls();
    let o = sim.pull_with(&["--boot"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = sim.root().join("run/medianest/secrets/postgres/db_password");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ALPHA);
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o400, 70, 71));
    let r = report(&o);
    assert_eq!((r["result"].as_str(), r["secrets"][0]["action"].as_str()), (Some("applied"), Some("create")));
    assert_eq!(sim.calls(), calls, "nothing reloaded: the services start after it");
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA]), Vec::<String>::new());
    // Again: nothing to write.
    let o = sim.pull_with(&["--boot"], &[]);
    assert_eq!(report(&o)["result"], "unchanged", "{}", stdout(&o));
    // An unsigned push is refused, and the refused objects go with the whole mirror;
    // a reboot before the next good pull still delivers the applied commit's secrets
    // (kept, as ciphertext, when it was applied).
    std::fs::rename(sim.path().join("remote.away"), sim.path().join("remote.git")).unwrap();
    sim.render_with_secrets(&v2(), &[], &spec);
    sim.commit("unsigned", None);
    let o = sim.pull();
    assert_eq!(report(&o)["result"], "refused", "{}", stdout(&o));
    assert!(!sim.path().join("state/mirror.git").exists(), "the refused fetch's mirror is kept");
    std::fs::remove_dir_all(sim.root().join("run/medianest")).unwrap();
    std::fs::rename(sim.path().join("remote.git"), sim.path().join("remote.away")).unwrap();
    let o = sim.pull_with(&["--boot"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ALPHA, "no secret after a refused fetch and a reboot");
    let kept = std::fs::read_to_string(sim.path().join("state/applied-secrets.json")).unwrap();
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA]), Vec::<String>::new());
    assert!(!kept.contains(ALPHA.trim()), "the kept file holds the plaintext");
    let md = std::fs::metadata(sim.path().join("state/applied-secrets.json")).unwrap();
    assert_eq!(md.mode() & 0o777, 0o600);
    // While a pull holds the lock (the agent restarting medianest-secrets.service), it
    // succeeds without waiting: that pull delivers the secrets itself.
    let lock = sim.path().join("state/lock");
    let mut holder = Command::new("flock").arg("-o").arg(&lock).args(["sleep", "30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = sim.pull_with(&["--boot"], &[]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report(&o)["result"], "busy");
    // A host that never applied anything has nothing to deliver, and says so.
    std::fs::remove_file(sim.path().join("state/state.json")).unwrap();
    let o = sim.pull_with(&["--boot"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(report(&o)["reason"].as_str().unwrap_or_default().contains("nothing was applied"), "{}", stdout(&o));
}

#[test]
fn refuses_a_secret_for_another_host_a_swapped_one_and_an_unsigned_change() {
    let sim = Sim::new();
    let (web1, other) = host_keys(&sim);
    let secret = |name: &'static str, c: Vec<u8>| (name, c, "app", "root:root", None);
    sim.render_with_secrets(
        &v1(),
        &[],
        &[secret("api_key", seal("api_key", ALPHA, &web1)), secret("db_password", seal("db_password", BRAVO, &web1))],
    );
    let c1 = sim.commit("v1", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (before, state) = (snapshot(&sim.root()), sim.state());

    // Encrypted to another host: this one cannot read it, and nothing changes (not
    // even the files and the other secret of the same commit).
    sim.render_with_secrets(
        &v2(),
        &[],
        &[
            secret("api_key", seal("api_key", CHARLIE, &other)),
            secret("db_password", seal("db_password", BRAVO, &web1)),
        ],
    );
    sim.commit("a secret for another host", Some("key"));
    let o = sim.pull();
    assert_refused(&sim, &o, &before, &state, "secret `api_key` cannot be decrypted with this host's key");
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA, BRAVO, CHARLIE]), Vec::<String>::new());

    // Swapped between two names (each a valid ciphertext for this host).
    sim.render_with_secrets(
        &v2(),
        &[],
        &[secret("api_key", seal("db_password", BRAVO, &web1)), secret("db_password", seal("api_key", ALPHA, &web1))],
    );
    sim.commit("swapped", Some("key"));
    let o = sim.pull();
    assert_refused(&sim, &o, &before, &state, "holds the secret `db_password`, not this one");
    assert_eq!(plaintext_leaks(&sim, &o, &[ALPHA, BRAVO]), Vec::<String>::new());

    // An unsigned commit that changes a secret is refused like any other change.
    sim.render_with_secrets(
        &v1(),
        &[],
        &[secret("api_key", seal("api_key", CHARLIE, &web1)), secret("db_password", seal("db_password", BRAVO, &web1))],
    );
    sim.commit("unsigned secret change", None);
    assert_refused(&sim, &sim.pull(), &before, &state, "is not signed");
    assert_eq!(std::fs::read_to_string(sim.root().join("run/medianest/secrets/app/api_key")).unwrap(), ALPHA);
    git(&sim.work(), &["reset", "-q", "--soft", &c1]);

    // A signed plan still cannot send a plaintext out of the secrets tmpfs.
    sim.render_with_secrets(
        &v1(),
        &[],
        &[("api_key", seal("api_key", ALPHA, &web1), "x/../../../etc/cron.d", "root:root", None)],
    );
    sim.commit("a delivery out of the secrets directory", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "would be delivered to");
}

// #13: the pull agent under attack and fault.

#[test]
fn verification_is_mandatory_and_cannot_be_committed_away() {
    // #13 item 8: without allowed_signers nothing applies; `--insecure-no-verify` is the
    // only way around and says so on every run; a signed commit that would leave the
    // agent with no signers is refused.
    let (sim, _) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.render(&v2(), &[]);
    sim.commit("unsigned", None);
    assert_refused(&sim, &sim.pull_bare(&[], &[]), &before, &state, "verification is mandatory");
    std::fs::write(sim.path().join("empty_signers"), "# nobody\n").unwrap();
    let empty = sim.path().join("empty_signers");
    let o = sim.pull_bare(&["--allowed-signers", empty.to_str().unwrap()], &[]);
    assert_refused(&sim, &o, &before, &state, "lists no key");
    for _ in 0..2 {
        let o = sim.pull_bare(&["--insecure-no-verify"], &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(report(&o)["insecure_no_verify"], true);
        assert!(stderr(&o).contains("\"event\":\"insecure-no-verify\""), "not logged: {}", stderr(&o));
        let metrics = std::fs::read_to_string(sim.path().join("state/medianest.prom")).unwrap();
        assert!(metrics.contains("medianest_pull_verification_disabled 1"), "{metrics}");
    }
    assert_eq!(std::fs::read(sim.root().join("etc/nginx/nginx.conf")).unwrap(), NGINX_V2);

    // Signed commits that switch verification off through the managed files.
    let (sim, _) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    let toml_without: &[u8] = b"repository = \"x\"\nbranch = \"main\"\nhost = \"web1\"\n";
    let toml_with: &[u8] =
        b"repository = \"x\"\nhost = \"web1\"\nallowed_signers = \"/etc/medianest/allowed_signers\"\n";
    let mut files = v1();
    files.push(("/etc/medianest/agent.toml", toml_without, None, None));
    sim.render(&files, &[]);
    sim.commit("drop the signers line", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "names no allowed_signers");
    let mut files = v1();
    files.push(("/etc/medianest/agent.toml", toml_with, None, None));
    files.push(("/etc/medianest/allowed_signers", b"# emptied\n", None, None));
    sim.render(&files, &[]);
    sim.commit("empty the signers", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "lists no key");
    let metrics = std::fs::read_to_string(sim.path().join("state/medianest.prom")).unwrap();
    assert!(metrics.contains("medianest_pull_verification_disabled 0"), "{metrics}");
}

#[test]
fn every_commit_between_the_applied_one_and_the_tip_is_verified() {
    // #13 item 10: a signed tip on top of an unsigned parent carries the parent's change.
    let (sim, c1) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.render(&v2(), &[]);
    let unsigned = sim.commit("unsigned change", None);
    let tip = sim.commit("signed tip", Some("key"));
    let o = sim.pull();
    assert_refused(&sim, &o, &before, &state, &format!("commit {unsigned} is not signed"));
    let reason = report(&o)["reason"].as_str().unwrap().to_string();
    assert!(reason.contains(&c1) && reason.contains(&tip), "{reason}");
    // A foreign key in the middle is refused the same way.
    sim.force_main(&c1);
    git(&sim.work(), &["reset", "-q", "--hard", &c1]);
    sim.render(&v2(), &[]);
    let foreign = sim.commit("foreign", Some("other-key"));
    sim.commit("signed tip", Some("key"));
    let o = sim.pull();
    assert_refused(&sim, &o, &before, &state, &format!("commit {foreign} is signed by a key"));
    // Signed all the way: applies.
    sim.force_main(&c1);
    git(&sim.work(), &["reset", "-q", "--hard", &c1]);
    sim.render(&v2(), &[]);
    sim.commit("signed", Some("key"));
    sim.commit("signed tip", Some("key"));
    assert_eq!(sim.pull().status.code(), Some(0));
}

#[test]
fn refuses_a_signed_commit_built_for_another_branch() {
    // #13 item 11, catalogue 5 (branch teleport): the manifest records the branch.
    let (sim, _) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.render_for("testing", &v2(), &[], &[]);
    sim.commit("made for testing, pushed to main", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "was built for the branch `testing`, not `main`");
    // The same tree followed on `testing` is fine.
    git(&sim.work(), &["push", "-q", "-f", "origin", "HEAD:testing"]);
    let o = sim.pull_with(&["--branch", "testing"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_lost_state_directory_does_not_reopen_rollbacks() {
    // #13 item 9, catalogue 7: the applied commit is pinned a second time outside the
    // state directory; with the state deleted, emptied or corrupt, an older signed
    // commit is still a rollback.
    for how in ["deleted", "emptied", "corrupt"] {
        let (sim, c1) = applied_v1();
        sim.render(&v2(), &[]);
        let c2 = sim.commit("v2", Some("key"));
        assert_eq!(sim.pull().status.code(), Some(0));
        let floor = sim.root().join("etc/medianest/floor");
        assert_eq!(std::fs::read_to_string(&floor).unwrap().trim(), c2, "{how}");
        let state = sim.path().join("state");
        match how {
            "deleted" => std::fs::remove_dir_all(&state).unwrap(),
            "emptied" => std::fs::write(state.join("state.json"), "").unwrap(),
            _ => std::fs::write(state.join("state.json"), "{\"applied_commit\": 7").unwrap(),
        }
        sim.force_main(&c1);
        let before = snapshot(&sim.root());
        let o = sim.pull();
        let r = report(&o);
        assert_eq!(o.status.code(), Some(1), "{how}: {r}");
        assert!(r["reason"].as_str().unwrap().contains(&format!("does not descend from the pinned floor {c2}")), "{r}");
        assert_eq!(snapshot(&sim.root()), before, "{how}: the root changed");
        assert_eq!(std::fs::read(sim.root().join("etc/nginx/nginx.conf")).unwrap(), NGINX_V2);
        // The branch back on the floor (or ahead of it) applies again.
        sim.force_main(&c2);
        let o = sim.pull();
        assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
        assert!(sim.state().contains(&c2), "{how}");
    }
}

#[test]
fn a_deleted_branch_or_an_emptied_remote_fails_the_fetch_and_the_commit_age_is_exported() {
    // #13 item 12, catalogue 6: a stale incoming ref must not make a run `unchanged`.
    let (sim, c1) = applied_v1();
    let remote = sim.path().join("remote.git");
    let metrics = || std::fs::read_to_string(sim.path().join("state/medianest.prom")).unwrap();
    let time = String::from_utf8(git(&sim.work(), &["show", "-s", "--format=%ct", &c1]).stdout).unwrap();
    assert!(
        metrics().contains(&format!("medianest_pull_applied_commit_timestamp_seconds {}", time.trim())),
        "{}",
        metrics()
    );
    git(&remote, &["update-ref", "-d", "refs/heads/main"]);
    let o = sim.pull();
    let r = report(&o);
    assert_eq!(o.status.code(), Some(5), "{r}");
    assert!(r["reason"].as_str().unwrap().contains("has no branch `main`"), "{r}");
    // Emptied: a fresh repository in its place.
    std::fs::remove_dir_all(&remote).unwrap();
    git(sim.path(), &["init", "-q", "--bare", "remote.git"]);
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(5), "{}", report(&o));
    assert!(metrics().contains("medianest_pull_result 5"), "{}", metrics());
    assert!(metrics().contains(&format!("medianest_pull_applied_commit_timestamp_seconds {}", time.trim())));
    assert!(sim.state().contains(&c1));
    // Back: the host carries on.
    git(&sim.work(), &["push", "-q", "-f", "origin", "HEAD:main"]);
    assert_eq!(sim.pull().status.code(), Some(0));
}

/// A run inside a private mount namespace, after `setup` (shell, e.g. a read-only bind
/// mount over part of the root).
fn pull_in_namespace(sim: &Sim, setup: &str, env: &[(&str, &str)]) -> Output {
    let path = format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap());
    let script = format!(
        "{setup} && exec '{bin}' pull --once --format json --host web1 --repo 'file://{repo}' --root '{root}' --state-dir '{state}' --textfile-dir /nonexistent --allowed-signers '{signers}'",
        bin = env!("CARGO_BIN_EXE_medianest"),
        repo = sim.path().join("remote.git").display(),
        root = sim.root().display(),
        state = sim.path().join("state").display(),
        signers = sim.path().join("allowed_signers").display()
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Four files, the last in `/etc/nginx/ro/` (made read-only by some tests).
fn four(tag: &'static str) -> Vec<HostFile<'static>> {
    let b = |s: String| -> &'static [u8] { Box::leak(s.into_bytes().into_boxed_slice()) };
    vec![
        ("/etc/nginx/a.conf", b(format!("a {tag}\n")), None, Some("a.service")),
        ("/etc/nginx/b.conf", b(format!("b {tag}\n")), None, Some("a.service")),
        ("/etc/nginx/c.conf", b(format!("c {tag}\n")), None, Some("a.service")),
        ("/etc/nginx/ro/d.conf", b(format!("d {tag}\n")), None, Some("a.service")),
    ]
}

#[test]
fn a_rollback_restores_only_what_was_swapped_and_names_what_it_could_not() {
    // #13 item 1: the fourth file is unwritable (a read-only bind mount). The undo must
    // not retry it, must restore the three others and must not stop at an error.
    let sim = Sim::new();
    sim.render(&four("v1"), &[]);
    sim.commit("v1", Some("key"));
    assert_eq!(sim.pull().status.code(), Some(0));
    let before = snapshot(&sim.root());
    sim.render(&four("v2"), &[]);
    let c2 = sim.commit("v2", Some("key"));
    let ro = sim.root().join("etc/nginx/ro");
    let o = pull_in_namespace(
        &sim,
        &format!("mount --bind '{0}' '{0}' && mount -o remount,bind,ro '{0}'", ro.display()),
        &[],
    );
    let r = report(&o);
    assert_eq!(o.status.code(), Some(3), "{r}\n{}", stderr(&o));
    assert_eq!(r["result"], "rolled-back");
    assert!(r["reason"].as_str().unwrap().contains("/etc/nginx/ro/d.conf"), "{r}");
    assert_eq!(snapshot(&sim.root()), before, "the three swapped files are back");
    assert!(!sim.path().join("state/journal.json").exists());
    // Without the mount the same commit applies.
    assert_eq!(sim.pull().status.code(), Some(0));
    assert!(sim.state().contains(&c2));

    // A recovery that cannot restore everything says exactly what, keeps the journal,
    // and a later run finishes the job.
    let sim = Sim::new();
    sim.render(&four("v1"), &[]);
    sim.commit("v1", Some("key"));
    assert_eq!(sim.pull().status.code(), Some(0));
    let before = snapshot(&sim.root());
    sim.render(&four("v2"), &[]);
    sim.commit("v2", Some("key"));
    let o = sim.pull_with(&[], &[("MEDIANEST_CRASH_AT", "swapped#2")]);
    assert_ne!(o.status.code(), Some(0));
    let etc = sim.root().join("etc");
    let o = pull_in_namespace(
        &sim,
        &format!("mount --bind '{0}' '{0}' && mount -o remount,bind,ro '{0}'", etc.display()),
        &[],
    );
    let r = report(&o);
    assert_eq!(o.status.code(), Some(2), "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("could not restore `/etc/nginx/b.conf`") && reason.contains("`/etc/nginx/a.conf`"),
        "{reason}"
    );
    assert!(
        !reason.contains("/etc/nginx/c.conf") && !reason.contains("/etc/nginx/ro/d.conf"),
        "only what was swapped: {reason}"
    );
    assert!(sim.path().join("state/journal.json").exists(), "kept for the next run");
    let o = sim.pull_with(&["--dry-run"], &[]);
    assert_ne!(o.status.code(), Some(0));
    std::fs::write(sim.path().join("systemctl.rc"), "reload-or-restart").unwrap();
    let o = sim.pull();
    sim.heal("systemctl");
    assert_eq!(report(&o)["recovered"], true, "{}", report(&o));
    assert_eq!(snapshot(&sim.root()), before, "recovered, then v2 rolled back again");
}

#[test]
fn a_restore_whose_reload_fails_too_says_so() {
    // #13 item 7.
    let (sim, c1) = applied_v1();
    let before = snapshot(&sim.root());
    sim.render(&v2(), &[]);
    sim.commit("v2", Some("key"));
    sim.fail("systemctl", Some("reload-or-restart"));
    let o = sim.pull();
    let r = report(&o);
    assert_eq!(o.status.code(), Some(3), "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(!reason.contains("restored and reloaded"), "{reason}");
    assert!(reason.contains("the previous files were restored, and reloading failed too: `nginx.service`"), "{reason}");
    assert_eq!(snapshot(&sim.root()), before);
    assert!(sim.state().contains(&c1));
}

#[test]
fn files_dropped_from_the_plan_are_removed_through_the_journal() {
    // #13 item 2: a revoked vhost must not stay live.
    let old: &[u8] = b"server { listen 81; }\n";
    let with = || {
        let mut f = v1();
        f.push(("/etc/nginx/revoked.conf", old, None, Some("nginx.service")));
        f
    };
    let sim = Sim::new();
    sim.render(&with(), &[]);
    let c1 = sim.commit("with the vhost", Some("key"));
    assert_eq!(sim.pull().status.code(), Some(0));
    let before = snapshot(&sim.root());
    sim.render(&v1(), &[]);
    sim.commit("revoke", Some("key"));
    // A failed reload puts it back byte for byte.
    sim.fail("systemctl", Some("reload-or-restart"));
    assert_eq!(sim.pull().status.code(), Some(3));
    sim.heal("systemctl");
    assert_eq!(snapshot(&sim.root()), before);
    let calls = sim.calls().matches("reload-or-restart -- nginx.service").count();
    let o = sim.pull();
    let r = report(&o);
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert!(
        r["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["target"] == "/etc/nginx/revoked.conf" && f["action"] == "remove"),
        "{r}"
    );
    assert!(!sim.root().join("etc/nginx/revoked.conf").exists());
    assert!(!sim.state().contains("revoked.conf"));
    assert!(
        sim.calls().matches("reload-or-restart -- nginx.service").count() > calls,
        "nginx reloaded: {}",
        sim.calls()
    );
    // Under `report`, one edited by hand is kept and reported.
    sim.force_main(&c1);
    assert_eq!(sim.pull_with(&["--allow-rollback"], &[]).status.code(), Some(0));
    std::fs::write(sim.root().join("etc/nginx/revoked.conf"), "edited\n").unwrap();
    git(&sim.work(), &["reset", "-q", "--soft", &c1]);
    sim.render(&v1(), &[]);
    sim.commit("revoke again", Some("key"));
    let o = sim.pull_with(&["--drift", "report"], &[]);
    let r = report(&o);
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert!(r["drift"].as_array().unwrap().iter().any(|f| f == "/etc/nginx/revoked.conf"), "{r}");
    assert_eq!(std::fs::read_to_string(sim.root().join("etc/nginx/revoked.conf")).unwrap(), "edited\n");
}

#[test]
fn directories_created_by_a_failed_apply_are_removed() {
    // #13 item 3.
    let (sim, _) = applied_v1();
    let before = snapshot(&sim.root());
    let mut files = v1();
    files.push(("/etc/nginx/newsvc/sub/x.conf", b"x\n", None, Some("newsvc.service")));
    sim.render(&files, &[]);
    sim.commit("a new service", Some("key"));
    sim.fail("systemctl", Some("reload-or-restart"));
    assert_eq!(sim.pull().status.code(), Some(3));
    assert_eq!(snapshot(&sim.root()), before, "`/etc/newsvc/sub` is gone");
    // And after a crash mid-apply, the recovery removes them too.
    sim.heal("systemctl");
    let o = sim.pull_with(&[], &[("MEDIANEST_CRASH_AT", "swapped#1")]);
    assert_ne!(o.status.code(), Some(0));
    sim.fail("systemctl", Some("reload-or-restart"));
    let o = sim.pull();
    assert_eq!(report(&o)["recovered"], true);
    assert_eq!(snapshot(&sim.root()), before);
}

#[test]
fn a_fifo_at_a_managed_path_is_refused_without_blocking() {
    // #13 item 4: `open()` of a FIFO blocks forever, with the lock held.
    let (sim, _) = applied_v1();
    sim.render(&v2(), &[]);
    sim.commit("v2", Some("key"));
    std::fs::remove_file(sim.root().join("etc/hosts")).unwrap();
    assert!(Command::new("mkfifo").arg(sim.root().join("etc/hosts")).status().unwrap().success());
    let before = snapshot(&sim.root());
    let state = sim.state();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medianest"))
        .args(["pull", "--once", "--format", "json", "--host", "web1", "--repo"])
        .arg(format!("file://{}", sim.path().join("remote.git").display()))
        .arg("--root")
        .arg(sim.root())
        .arg("--state-dir")
        .arg(sim.path().join("state"))
        .arg("--allowed-signers")
        .arg(sim.path().join("allowed_signers"))
        .env("PATH", format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent blocked on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_refused(&sim, &o, &before, &state, "is not a regular file");
}

/// Leftovers of killed runs: temporary files under the root, staging copies, temporary
/// files and stray backups in the state directory.
fn leftovers(sim: &Sim) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(sim.root()).into_iter().flatten() {
        let n = e.file_name().to_string_lossy();
        if n.contains(".medianest-") && n.ends_with(".tmp") {
            out.push(e.path().display().to_string());
        }
    }
    let state = sim.path().join("state");
    for e in std::fs::read_dir(&state).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n == "staging" || n.starts_with(".tmp") {
            out.push(e.path().display().to_string());
        }
    }
    if !state.join("journal.json").exists() {
        for e in std::fs::read_dir(state.join("backup")).into_iter().flatten().flatten() {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn a_killed_run_leaves_nothing_behind_after_the_next_one() {
    // #13 item 6: a temporary file already with its final mode beside the target, and a
    // staging copy in the state directory.
    for step in ["before-rename#2", "staged", "journaled"] {
        let (sim, _) = applied_v1();
        sim.render(&v2(), &[]);
        sim.commit("v2", Some("key"));
        let o = sim.pull_with(&[], &[("MEDIANEST_CRASH_AT", step)]);
        assert_ne!(o.status.code(), Some(0));
        assert!(!leftovers(&sim).is_empty(), "{step}: the crash left nothing to clean?");
        let o = sim.pull();
        assert_eq!(o.status.code(), Some(0), "{step}: {}", stderr(&o));
        assert_eq!(leftovers(&sim), Vec::<String>::new(), "{step}");
    }
}

/// Overwrites the middle of every object file of the mirror (packs and loose objects).
fn corrupt_mirror(sim: &Sim) -> usize {
    let mut n = 0;
    for e in walkdir::WalkDir::new(sim.path().join("state/mirror.git/objects")).into_iter().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().is_file() || name.ends_with(".idx") || name.ends_with(".rev") {
            continue;
        }
        let mut bytes = std::fs::read(e.path()).unwrap();
        let len = bytes.len();
        // Past a pack's 12-byte header, short of its 20-byte trailer: every object.
        for b in &mut bytes[12.min(len)..len.saturating_sub(20).max(12.min(len))] {
            *b ^= 0x5a;
        }
        let mut perms = std::fs::metadata(e.path()).unwrap().permissions();
        perms.set_mode(0o644);
        std::fs::set_permissions(e.path(), perms).unwrap();
        std::fs::write(e.path(), bytes).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_damaged_mirror_is_rebuilt_not_reported_as_an_attack() {
    // #13 item 5: corrupted objects, then a plain file where the mirror was.
    let (sim, _) = applied_v1();
    sim.render(&v2(), &[]);
    let c2 = sim.commit("v2", Some("key"));
    assert!(corrupt_mirror(&sim) > 0);
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("mirror damaged, rebuilt"), "{}", stderr(&o));
    assert!(sim.state().contains(&c2));
    let mirror = sim.path().join("state/mirror.git");
    std::fs::remove_dir_all(&mirror).unwrap();
    std::fs::write(&mirror, "not a repository\n").unwrap();
    sim.render(&v1(), &[]);
    let c3 = sim.commit("v3", Some("key"));
    let o = sim.pull();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("mirror damaged, rebuilt"), "{}", stderr(&o));
    assert!(sim.state().contains(&c3));
}

/// Bytes used under `dir`.
fn du(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[test]
fn refused_pushes_do_not_accumulate_in_the_mirror() {
    // #13 item 15: four junk force-pushes of 2 MB of noise each, unsigned.
    let (sim, c1) = applied_v1();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut peak = 0;
    for i in 0..4 {
        let mut noise = vec![0u8; 2 << 20];
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        git(&sim.work(), &["reset", "-q", "--hard", &c1]);
        std::fs::write(sim.work().join(format!("junk{i}.bin")), &noise).unwrap();
        sim.commit("junk", None);
        let o = sim.pull();
        assert_eq!(o.status.code(), Some(1), "{}", report(&o));
        peak = peak.max(du(&sim.path().join("state")));
    }
    assert!(peak < 3 << 20, "the state directory grew to {peak} bytes with refused objects");
    sim.force_main(&c1);
    assert_eq!(sim.pull().status.code(), Some(0));
}

/// Sets the mode and owner of `target` in web1's plan, and in the manifest when
/// `manifest` (else only the plan's hash there), as a hand-crafted commit would.
fn patch_mode(sim: &Sim, target: &str, mode: &str, owner: &str, manifest: bool) {
    let plan_path = sim.work().join("generated/hosts/web1/plan.json");
    let mut plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    for f in plan["files"].as_array_mut().unwrap() {
        if f["target"] == target {
            f["mode"] = mode.into();
            f["owner"] = owner.into();
        }
    }
    let bytes = serde_json::to_vec_pretty(&plan).unwrap();
    std::fs::write(&plan_path, &bytes).unwrap();
    let manifest_path = sim.work().join("generated/manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == "hosts/web1/plan.json" {
            f["sha256"] = medianest::artifact::sha256_hex(&bytes).into();
        } else if manifest && f["path"] == format!("hosts/web1/root{target}") {
            f["mode"] = mode.into();
            f["owner"] = owner.into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn refuses_targets_outside_the_family_and_dangerous_or_mismatched_modes() {
    // #13 item 17: signed, well-formed, inside /etc, and still refused.
    let (sim, _) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    for target in ["/etc/passwd", "/etc/shadow", "/etc/sudoers.d/medianest", "/etc/ld.so.preload", "/etc/cron.d/x"] {
        let mut files = v1();
        files.push((target, b"evil\n", None, None));
        sim.render(&files, &[]);
        sim.commit(target, Some("key"));
        assert_refused(&sim, &sim.pull(), &before, &state, "outside what the family `base` may write");
    }
    for (mode, owner, in_manifest, why) in [
        ("4755", "root:root", true, "setuid/setgid mode 4755"),
        ("2755", "root:root", true, "setuid/setgid mode 2755"),
        ("0777", "root:root", true, "world-writable mode 0777"),
        ("0755", "root:root", false, "but the manifest says 0644 root:root"),
        ("0644", "haproxy:haproxy", false, "but the manifest says 0644 root:root"),
    ] {
        sim.render(&v2(), &[]);
        patch_mode(&sim, "/etc/nginx/nginx.conf", mode, owner, in_manifest);
        sim.commit(&format!("mode {mode}"), Some("key"));
        assert_refused(&sim, &sim.pull(), &before, &state, why);
    }
}

#[test]
fn every_rendered_target_is_inside_its_family_s_directories() {
    // #13 item 17, compiler side: the reference site and every fixture site.
    let mut sites = vec![repo_root()];
    for e in std::fs::read_dir(repo_root().join("tests/testsuite/fixtures")).unwrap().flatten() {
        if e.path().join("site").is_dir() {
            sites.push(e.path());
        }
    }
    let (mut seen, mut outside) = (0, std::collections::BTreeSet::new());
    for site in sites {
        let compiled = medianest::ops::compile(&medianest::ops::Paths::under(&site));
        for a in compiled.artifacts.values() {
            if let Some(apply) = &a.meta.apply {
                seen += 1;
                if !medianest::artifact::family_may_write(a.meta.family, &apply.target) {
                    outside.insert(format!("{} writes {}", a.meta.family, apply.target));
                }
            }
        }
    }
    assert!(outside.is_empty(), "{outside:#?}");
    assert!(seen > 100, "{seen}");
}

#[test]
fn refuses_newlines_in_names_and_options_as_units() {
    // #13 item 18.
    let (sim, _) = applied_v1();
    git(&sim.work(), &["hash-object", "-w", "--stdin"]);
    let (before, state) = crafted(&sim, "100644 blob e69de29bb2d1d6434b8b29ae775ad8c2e48c5391\tevil\nname");
    assert_refused(&sim, &sim.pull(), &before, &state, "(a control character)");
    let (sim, _) = applied_v1();
    let (before, state) = (snapshot(&sim.root()), sim.state());
    sim.render(&[("/etc/hosts", b"x\n", None, Some("-H.service"))], &[]);
    sim.commit("an option as a unit", Some("key"));
    assert_refused(&sim, &sim.pull(), &before, &state, "names the action `-H.service`");
}

/// Spawns the agent with `args` after the usual options and waits at most `bound`
/// (a hang is the failure being tested); returns its output.
fn pull_bounded(sim: &Sim, repo: &str, args: &[&str], bound: std::time::Duration, wrap: &[&str]) -> Output {
    let mut cmd = Command::new(wrap.first().copied().unwrap_or(env!("CARGO_BIN_EXE_medianest")));
    if !wrap.is_empty() {
        cmd.args(&wrap[1..]).arg(env!("CARGO_BIN_EXE_medianest"));
    }
    let mut child = cmd
        .args(["pull", "--once", "--format", "json", "--host", "web1", "--repo", repo])
        .arg("--root")
        .arg(sim.root())
        .arg("--state-dir")
        .arg(sim.path().join("state"))
        .arg("--allowed-signers")
        .arg(sim.path().join("allowed_signers"))
        .args(args)
        .env("PATH", format!("{}:{}", sim.path().join("stubs").display(), std::env::var("PATH").unwrap()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + bound;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("the agent was still running after {bound:?}:\n{}", stderr(&o));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_huge_blob_is_refused_from_its_header_without_inflating_it() {
    // #13 item 13: 64 MiB of zeros (64 KiB in the pack). The mirror already holds it
    // (a dry run fetched it); the reading run gets a 48 MiB data limit, which inflating
    // the blob would exceed.
    let (sim, _) = applied_v1();
    std::fs::write(sim.work().join("generated/hosts/web1/big"), vec![0u8; 64 << 20]).unwrap();
    sim.commit("a huge blob", Some("key"));
    let repo = format!("file://{}", sim.path().join("remote.git").display());
    let o = pull_bounded(&sim, &repo, &["--dry-run"], std::time::Duration::from_secs(120), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o =
        pull_bounded(&sim, &repo, &["--dry-run"], std::time::Duration::from_secs(120), &["prlimit", "--data=50331648"]);
    let r = report(&o);
    assert_eq!(o.status.code(), Some(1), "{r}");
    assert!(r["reason"].as_str().unwrap().contains("generated/hosts/web1/big` is larger than 16777216 bytes"), "{r}");
}

#[test]
fn a_tree_bomb_is_cut_at_the_entry_cap() {
    // #13 item 14: empty trees, 40-way fan-out, 8 deep: nine objects, 40^8 entries.
    let (sim, _) = applied_v1();
    let w = sim.work();
    let mut tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904".to_string();
    git(&w, &["hash-object", "-w", "-t", "tree", "/dev/null"]);
    for _ in 0..8 {
        let input: String = (0..40).map(|i| format!("040000 tree {tree}\td{i:02}\n")).collect();
        let mut child = Command::new("git")
            .current_dir(&w)
            .args(["mktree", "--missing"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        tree = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_string();
    }
    let (before, state) = crafted(&sim, &format!("040000 tree {tree}\tbomb"));
    let repo = format!("file://{}", sim.path().join("remote.git").display());
    let o = pull_bounded(&sim, &repo, &[], std::time::Duration::from_secs(60), &[]);
    assert_refused(&sim, &o, &before, &state, "has more than 10000 entries");
}

#[test]
fn a_hung_remote_is_cut_off_by_the_deadline() {
    // #13 item 16, catalogue 10: a loopback server that accepts and never answers, over
    // git:// and over https (in the default build: the TLS handshake is what hangs).
    let sim = Sim::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let runs: Vec<_> = ["git", "https"]
        .into_iter()
        .map(|scheme| {
            let repo = format!("{scheme}://127.0.0.1:{port}/remote.git");
            let t = std::time::Instant::now();
            let o = pull_bounded(&sim, &repo, &["--deadline", "3s"], std::time::Duration::from_secs(45), &[]);
            (scheme, o, t.elapsed())
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    for (scheme, o, took) in runs {
        let r = report(&o);
        assert_eq!(o.status.code(), Some(5), "{scheme}: {r}");
        assert_eq!(r["result"], "fetch-failed", "{scheme}");
        println!("{scheme}: a hung remote cut off after {:.1} s (--deadline 3s)", took.as_secs_f64());
    }
}
