//! The containers family: every generated Compose and stack file of the reference site
//! and of `fixtures/swarm-site` (laid over base-site) is parsed, and each service must
//! keep the hardening (read-only root, `cap_drop: [ALL]`, no-new-privileges in Compose,
//! a non-root user, a health check, limits and reservations) unless the site declares
//! that exception. Then the real tools: every Compose file validates against the
//! compose-spec JSON schema (`check-jsonschema`, in the venv scripts/test.sh makes), and
//! every stack file passes `docker stack config -c` (offline, no engine); a broken copy
//! of each fails, so both checks can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// The compose-spec schema (the Compose Specification's JSON schema, Apache-2.0, kept
/// in the suite so a clone tests on its own).
fn schema() -> PathBuf {
    suite("containers/compose-spec.json")
}

/// `check-jsonschema`: `$MEDIANEST_CHECK_JSONSCHEMA`, else the venv of scripts/test.sh.
fn check_jsonschema() -> PathBuf {
    std::env::var_os("MEDIANEST_CHECK_JSONSCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/medianest-test/venv/bin/check-jsonschema"))
}

/// The reference site's and the swarm fixture's generated files: `(path, text)`.
fn generated_files() -> (Repo, Vec<(String, String)>) {
    let swarm = Repo::with_overlay(&suite("fixtures/swarm-site"));
    let o = swarm.run(&["build"]);
    assert!(o.status.success(), "the swarm fixture builds: {}", stderr(&o));
    let mut out = Vec::new();
    for (name, tree) in [("site", read_tree(&repo_root().join("generated"))), ("swarm", swarm.generated())] {
        for (p, bytes) in tree {
            if p.contains("/etc/medianest/compose/") || p.contains("/etc/medianest/stacks/") {
                out.push((format!("{name}:{p}"), String::from_utf8(bytes).unwrap()));
            }
        }
    }
    (swarm, out)
}

/// The services of a site and their declared exceptions, by name.
fn exceptions(site: &medianest::model::Site) -> BTreeMap<String, Vec<&'static str>> {
    site.services.iter().map(|s| (s.name.clone(), s.exceptions.iter().map(|e| e.kind.key()).collect())).collect()
}

fn hardening_misses(file: &str, doc: &Value, exc: &BTreeMap<String, Vec<&'static str>>) -> Vec<String> {
    let stack = doc.get("version").is_some();
    let mut misses = Vec::new();
    let services = doc["services"].as_object().expect("services");
    assert!(!services.is_empty(), "{file}: no services");
    for (name, s) in services {
        let ex = exc.get(name).cloned().unwrap_or_default();
        let mut miss = |what: &str| misses.push(format!("{file}: `{name}` {what}"));
        if s["read_only"] != Value::Bool(true) && !ex.contains(&"read_only") {
            miss("has a writable root without an exception");
        }
        if s["cap_drop"] != serde_json::json!(["ALL"]) {
            miss("does not drop every capability");
        }
        if s.get("cap_add").is_some() && !ex.contains(&"cap_add") {
            miss("adds capabilities without an exception");
        }
        if !stack {
            let opts = s["security_opt"].as_array().cloned().unwrap_or_default();
            if !opts.iter().any(|o| o.as_str().is_some_and(|o| o.starts_with("no-new-privileges"))) {
                miss("lacks no-new-privileges");
            }
            if s["pids_limit"].as_u64().is_none() {
                miss("has no pids limit");
            }
        }
        let user = s["user"].as_str().unwrap_or("");
        let root =
            user.is_empty() || user.split(':').next().is_some_and(|u| u == "root" || u.chars().all(|c| c == '0'));
        if root && !ex.contains(&"root_user") {
            miss("runs as root without an exception");
        }
        if s.get("healthcheck").is_none() && !ex.contains(&"health") {
            miss("has no health check without an exception");
        }
        let r = &s["deploy"]["resources"];
        for k in ["limits", "reservations"] {
            if r[k]["cpus"].is_null() || r[k]["memory"].is_null() {
                miss(&format!("has no {k}"));
            }
        }
        if s["logging"]["driver"] != "json-file" || s["logging"]["options"]["max-size"].is_null() {
            miss("has no rotated json-file log");
        }
    }
    misses
}

#[test]
fn every_container_keeps_its_hardening_unless_the_site_says_why() {
    let (_dir, files) = generated_files();
    let site = medianest::ops::compile(&medianest::ops::Paths::under(&repo_root()));
    let swarm = Repo::with_overlay(&suite("fixtures/swarm-site"));
    let swarm_site = medianest::ops::compile(&medianest::ops::Paths::under(swarm.path()));
    let mut exc = exceptions(&site.site);
    exc.extend(exceptions(&swarm_site.site));
    let (mut compose, mut stacks, mut misses) = (0, 0, Vec::new());
    for (file, text) in &files {
        let doc: Value = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{file} is YAML: {e}"));
        if doc.get("version").is_some() {
            stacks += 1
        } else {
            compose += 1
        }
        misses.extend(hardening_misses(file, &doc, &exc));
    }
    println!("hardening: {compose} compose and {stacks} stack files checked");
    assert!(compose >= 8 && stacks >= 1, "expected the reference site's compose files and a stack");
    assert!(misses.is_empty(), "{}", misses.join("\n"));
    // The checker sees a relaxation: a copy without read_only fails it.
    let (file, text) = files.iter().find(|(f, _)| f.contains("app1")).unwrap();
    let broken: Value = serde_saphyr::from_str(&text.replacen("read_only: true", "read_only: false", 1)).unwrap();
    assert!(!hardening_misses(file, &broken, &exc).is_empty(), "a writable root is caught");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn compose_files_match_the_compose_spec_and_stacks_pass_docker_stack_config() {
    let (_dir, files) = generated_files();
    let scratch = tempfile::tempdir().unwrap();
    let checker = check_jsonschema();
    assert!(checker.exists(), "{} is missing: run scripts/test.sh once (it makes the venv)", checker.display());
    let mut compose = Vec::new();
    for (i, (file, text)) in files.iter().enumerate() {
        if text.contains("\nversion: \"3.8\"") {
            let p = write(scratch.path(), &format!("stack{i}.yml"), text);
            let o = Command::new("docker").args(["stack", "config", "-c"]).arg(&p).output().expect("docker CLI");
            assert!(o.status.success(), "{file}: docker stack config: {}", String::from_utf8_lossy(&o.stderr));
            // A key Swarm's schema does not know fails, so the check can fail.
            let bad =
                write(scratch.path(), &format!("bad{i}.yml"), &text.replacen("    read_only:", "    read_onyl:", 1));
            let o = Command::new("docker").args(["stack", "config", "-c"]).arg(&bad).output().unwrap();
            assert!(!o.status.success(), "{file}: a misspelt key must fail docker stack config");
        } else {
            compose.push((file, write(scratch.path(), &format!("compose{i}.yaml"), text)));
        }
    }
    let mut cmd = Command::new(&checker);
    cmd.arg("--schemafile").arg(schema());
    for (_, p) in &compose {
        cmd.arg(p);
    }
    let o = cmd.output().expect("check-jsonschema runs");
    assert!(
        o.status.success(),
        "compose files fail the compose-spec: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let (_, first) = &compose[0];
    let text = std::fs::read_to_string(first).unwrap();
    let bad = write(scratch.path(), "bad-compose.yaml", &text.replacen("    read_only:", "    read_onyl:", 1));
    let o = Command::new(&checker).arg("--schemafile").arg(schema()).arg(&bad).output().unwrap();
    assert!(!o.status.success(), "a misspelt key must fail the compose-spec");
    println!("{} compose files valid against the compose-spec", compose.len());
}

#[test]
fn nfs_exports_list_exactly_the_client_hosts_and_images_are_listed() {
    let g = read_tree(&repo_root().join("generated"));
    let exports = String::from_utf8(g["hosts/stor1/root/etc/exports.d/medianest.exports"].clone()).unwrap();
    let line = exports.lines().find(|l| l.starts_with("/tank/medianest/uploads ")).expect("uploads exported");
    let clients: Vec<&str> = line.split_whitespace().skip(1).map(|c| c.split('(').next().unwrap()).collect();
    assert_eq!(clients, ["10.0.2.10", "10.0.2.11"], "app1 and app2, the backend's hosts");
    let app1 = String::from_utf8(g["hosts/app1/root/etc/medianest/compose/compose.yaml"].clone()).unwrap();
    assert!(app1.contains("o: \"addr=10.0.4.10,"), "the volume mounts stor1's export");
    let images = String::from_utf8(g["docs/images.txt"].clone()).unwrap();
    let lines: Vec<&str> = images.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(lines, sorted, "sorted, once each");
    assert!(lines.contains(&"ghcr.io/medianest/backend:1.4.2"));
    assert!(lines.iter().all(|l| l.contains(':') || l.contains('@')), "every image pinned");
}

#[test]
fn the_family_keys_are_reviewed_by_diff() {
    // Two builds of base-site with the API's family keys changed: each change is a
    // summary line naming its field.
    let base = r#"
[containers]
log_max_size = "10m"

[services.api]
image = "ghcr.io/lab/api:1.0.0"
hosts = ["app1"]
user = "1001:1001"
ports = { api = 9000 }
health = { http = "/health", port = "api" }
command = ["api", "--serve"]
publish = [{ port = "api", bind = "127.0.0.1" }]
binds = [{ source = "/etc/ssl/certs", target = "/etc/ssl/certs" }]
"#;
    let edited = base
        .replace("\"--serve\"", "\"--serve\", \"--verbose\"")
        .replace("bind = \"127.0.0.1\"", "bind = \"10.1.2.10\"")
        .replace("target = \"/etc/ssl/certs\" }", "target = \"/etc/ssl/certs\", writable = true }")
        .replace("\"10m\"", "\"20m\"");
    let build = |text: &str| {
        let repo = Repo::base();
        repo.write("site/zz-api.toml", text);
        let c = medianest::ops::compile(&medianest::ops::Paths::under(repo.path()));
        assert!(!c.failed(), "the site builds");
        (repo, c)
    };
    let ((_a, a), (_b, b)) = (build(base), build(&edited));
    let lines: Vec<String> = medianest::review::semantic::compare(&a.site, &b.site, &medianest::families::facts)
        .iter()
        .map(|c| c.line())
        .collect();
    for field in ["command", "publish", "binds", "log_max_size"] {
        assert!(lines.iter().any(|l| l.contains(field)), "no line names `{field}`: {lines:?}");
    }
    let compose = &b.artifacts["hosts/app1/root/etc/medianest/compose/compose.yaml"];
    let text = String::from_utf8(compose.bytes.clone()).unwrap();
    assert!(text.contains("command: [\"api\", \"--serve\", \"--verbose\"]"), "{text}");
    assert!(text.contains("host_ip: \"10.1.2.10\""), "{text}");
    assert!(text.contains("max-size: \"20m\""), "{text}");
}

/// The swarm fixture with its secrets delivered: test-only host keys (tests/keys) for
/// the hosts that hold secrets, the recovery key, and a value for every secret.
fn swarm_with_secrets() -> Repo {
    let repo = Repo::with_overlay(&suite("fixtures/swarm-site"));
    let keys = repo_root().join("tests/keys");
    let key = |h: &str| {
        let k = std::fs::read_to_string(keys.join(format!("{h}.ssh_host_ed25519_key.pub"))).unwrap();
        k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    };
    // The workers get keys too: that they receive nothing is what the test checks.
    for (file, host, with) in [
        ("site/hosts.toml", "app1", "app1"),
        ("site/hosts.toml", "db1", "db1"),
        ("site/hosts.toml", "db2", "db2"),
        ("site/zz-swarm.toml", "sw1", "mon1"),
        ("site/zz-swarm.toml", "sw2", "log1"),
        ("site/zz-swarm.toml", "sw3", "dns1"),
    ] {
        let p = repo.path().join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let table = format!("[hosts.{host}]\n");
        assert!(text.contains(&table), "{file} has no {table}");
        std::fs::write(&p, text.replace(&table, &format!("{table}ssh_host_key = \"{}\"\n", key(with)))).unwrap();
    }
    let o = Command::new("age-keygen").arg("-y").arg(keys.join("recovery.agekey")).output().expect("age-keygen");
    let recovery = String::from_utf8_lossy(&o.stdout).trim().to_string();
    repo.write("site/zz-secrets.toml", &format!("[secrets]\nrecovery = [\"{recovery}\"]\n"));
    for name in [
        "db_password",
        "api_token",
        "backup_repository_password",
        "backup_s3_access_key",
        "backup_s3_secret_key",
        "minio_tls_ca_key",
    ] {
        set_secret(&repo, name, &format!("test-only {name}"));
    }
    repo
}

/// `medianest secrets set <name>` with `value` on stdin.
fn set_secret(repo: &Repo, name: &str, value: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_medianest"))
        .arg("-C")
        .arg(repo.path())
        .args(["--color", "never", "secrets", "set", name])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "secrets set {name}: {}", stderr(&o));
}

#[test]
fn swarm_secrets_come_from_the_managers_copy_and_rotation_redeploys() {
    let repo = swarm_with_secrets();
    let o = repo.run(&["build"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = repo.generated();
    let text = |p: &str| String::from_utf8(g.get(p).unwrap_or_else(|| panic!("{p} is not generated")).clone()).unwrap();
    // Only the manager holds the Swarm service's secret; the workers' containers read
    // it from Swarm's store.
    assert!(g.contains_key("hosts/sw1/secrets/api_token.age"));
    for w in ["sw2", "sw3"] {
        assert!(!g.keys().any(|k| k.starts_with(&format!("hosts/{w}/secrets/"))), "{w} holds a secret");
    }
    let plan: Value = serde_json::from_str(&text("hosts/sw1/plan.json")).unwrap();
    let targets: Vec<&str> = plan["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["deliveries"].as_array().unwrap())
        .map(|d| d["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["/run/medianest/secrets/api/api_token"]);
    // The stack creates it from that copy, named by version.
    let stack_path = g.keys().find(|k| k.starts_with("hosts/sw1/root/etc/medianest/stacks/")).unwrap().clone();
    let stack = text(&stack_path);
    let doc: Value = serde_saphyr::from_str(&stack).unwrap();
    let entry = &doc["secrets"]["api_token"];
    assert_eq!(entry["file"], "/run/medianest/secrets/api/api_token", "{stack}");
    let name = entry["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("lab_api_token_") && name.len() == "lab_api_token_".len() + 12, "{name}");
    assert!(entry.get("external").is_none(), "{stack}");
    let scratch = tempfile::tempdir().unwrap();
    let p = write(scratch.path(), "stack.yml", &stack);
    let o = Command::new("docker").args(["stack", "config", "-c"]).arg(&p).output().expect("docker CLI");
    assert!(o.status.success(), "docker stack config: {}", String::from_utf8_lossy(&o.stderr));
    // Compose bind-mounts the file as it is: the container's user (web runs as
    // 1001:1001) owns its copy, or it could not read a 0400 file.
    let app1: Value = serde_json::from_str(&text("hosts/app1/plan.json")).unwrap();
    let web = app1["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["deliveries"].as_array().unwrap())
        .find(|d| d["service"] == "web")
        .expect("web's secret is delivered on app1");
    assert_eq!(web["owner"], "1001:1001");
    // A Compose service carries its secrets' versions as a label.
    let compose = text("hosts/app1/root/etc/medianest/compose/compose.yaml");
    let label = |c: &str| {
        let doc: Value = serde_saphyr::from_str(c).unwrap();
        doc["services"]["web"]["labels"]["medianest.secrets"].as_str().unwrap_or_default().to_string()
    };
    assert!(label(&compose).starts_with("db_password="), "{compose}");

    // Rotation: a new value is a new Swarm secret (they are immutable) and a new label,
    // so the deploy picks both up; nothing else in either file changes.
    set_secret(&repo, "api_token", "test-only api_token rotated");
    set_secret(&repo, "db_password", "test-only db_password rotated");
    let o = repo.run(&["build"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g2 = repo.generated();
    let stack2 = String::from_utf8(g2[&stack_path].clone()).unwrap();
    let doc2: Value = serde_saphyr::from_str(&stack2).unwrap();
    let name2 = doc2["secrets"]["api_token"]["name"].as_str().unwrap();
    assert_ne!(name2, name, "a rotated secret keeps its Swarm name");
    assert_eq!(stack2.replace(name2, &name), stack, "rotation changed more than the secret's name");
    let compose2 = String::from_utf8(g2["hosts/app1/root/etc/medianest/compose/compose.yaml"].clone()).unwrap();
    assert_ne!(label(&compose2), label(&compose));
    assert_eq!(compose2.replace(&label(&compose2), &label(&compose)), compose);
    println!("swarm secret `{name}` → `{name2}` on rotation; compose label {} → {}", label(&compose), label(&compose2));
}
