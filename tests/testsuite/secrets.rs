//! Secrets delivery (#15) from the operator's side: interoperability with Debian's `age`
//! CLI and `ssh-keygen` keys, the reference site's ciphertexts (each readable by exactly
//! the hosts that need it), and `medianest secrets set|edit|list|rekey` end to end. The
//! agent's side (delivery, rotation, refusals) is in `agent.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use medianest::secrets::{self, DecryptFailure, Header, Recipient};

use crate::support::*;

fn keygen(path: &Path) -> Recipient {
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    secrets::parse_recipient(&std::fs::read_to_string(path.with_extension("pub")).unwrap()).unwrap()
}

fn age(args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("age")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's `age` is installed (scripts/test.sh)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn age_cli_and_medianest_read_each_other_with_ssh_keygen_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host");
    let host = keygen(&key);
    let keyfile = key.to_str().unwrap();
    let ids = secrets::read_identity(&key).unwrap();

    // medianest → age: the CLI decrypts with the SSH private key (the medianest stanza
    // is ignored) and sees the name line, then the value.
    let c = secrets::encrypt("db_password", b"v4lue\n", std::slice::from_ref(&host)).unwrap();
    let o = age(&["-d", "-i", keyfile], &c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"medianest-secret v1 db_password\nv4lue\n");

    // age → medianest: a file the CLI encrypted to the public key.
    let o =
        age(&["-e", "-R", key.with_extension("pub").to_str().unwrap()], b"medianest-secret v1 db_password\nfrom-cli");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&secrets::decrypt("db_password", &o.stdout, &ids).unwrap()[..], b"from-cli");
    // Its ssh-ed25519 stanza carries the tag the build computes for that key.
    let h = Header::parse(&o.stdout).unwrap();
    assert_eq!(h.ssh_tags().into_iter().collect::<Vec<_>>(), vec![host.ssh_tag().unwrap().as_str()]);
    assert!(h.label().is_none(), "the CLI writes no recipients list");

    // An X25519 recovery identity made by age-keygen works both ways too.
    let rec = dir.path().join("recovery.txt");
    assert!(Command::new("age-keygen").arg("-o").arg(&rec).output().unwrap().status.success());
    let public = Command::new("age-keygen").arg("-y").arg(&rec).output().unwrap();
    let r = secrets::parse_recipient(&String::from_utf8(public.stdout).unwrap()).unwrap();
    let c = secrets::encrypt("x", b"y", &[host.clone(), r]).unwrap();
    let o = age(&["-d", "-i", rec.to_str().unwrap()], &c);
    assert_eq!(o.stdout, b"medianest-secret v1 x\ny", "{}", stderr(&o));
    assert_eq!(&secrets::decrypt("x", &c, &secrets::read_identity(&rec).unwrap()).unwrap()[..], b"y");

    // Another key reads neither.
    let other = dir.path().join("other");
    keygen(&other);
    assert!(!age(&["-d", "-i", other.to_str().unwrap()], &c).status.success());
    assert!(matches!(
        secrets::decrypt("x", &c, &secrets::read_identity(&other).unwrap()),
        Err(DecryptFailure::NotForMe)
    ));
}

#[test]
fn reference_secrets_are_readable_by_exactly_the_hosts_that_need_them() {
    let a = medianest::ops::secrets::load(&medianest::ops::Paths::under(&repo_root())).unwrap();
    let site = &a.site;
    let keys = repo_root().join("tests/keys");
    let needs = site.secret_needs();
    assert!(needs.len() >= 20, "the reference site names its secrets");
    // The inventory's table of holders, as committed: `| name | [h](…), … | … |`.
    let inventory = std::fs::read_to_string(repo_root().join("generated/docs/inventory.md")).unwrap();
    let listed: BTreeMap<String, Vec<String>> = inventory
        .split("\n## Secrets\n")
        .nth(1)
        .expect("the inventory lists the secrets")
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("](hosts/"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let hosts = cells[1].split(", ").map(|h| h.trim_start_matches('[').split(']').next().unwrap().to_string());
            (cells[0].trim_start_matches("| ").to_string(), hosts.collect())
        })
        .collect();
    assert_eq!(listed.len(), needs.len(), "every secret is in the inventory: {listed:?}");
    for (name, need) in &needs {
        let c = &site.secrets.file(name).unwrap_or_else(|| panic!("`{name}` has a ciphertext")).bytes;
        // The inventory names exactly the hosts that can read it.
        let holders: Vec<String> = need.hosts.iter().map(|h| site.host(*h).name.clone()).collect();
        assert_eq!(listed.get(*name), Some(&holders), "the inventory's holders of {name}");
        for h in &site.hosts {
            let Ok(ids) = secrets::read_identity(&keys.join(format!("{}.ssh_host_ed25519_key", h.name))) else {
                continue;
            };
            let got = secrets::decrypt(name, c, &ids);
            let id = site.hosts.iter().position(|x| x.name == h.name).unwrap();
            if need.hosts.contains(&medianest::model::HostId(id)) {
                let v = got.unwrap_or_else(|e| panic!("{} cannot read {name}: {e}", h.name));
                assert!(String::from_utf8_lossy(&v).starts_with("test-only "), "{name} holds a test value");
            } else {
                assert!(matches!(got, Err(DecryptFailure::NotForMe)), "{} must not read {name}", h.name);
            }
        }
        let rec = secrets::read_identity(&keys.join("recovery.agekey")).unwrap();
        assert!(secrets::decrypt(name, c, &rec).is_ok(), "the recovery key reads {name}");
    }
}

/// A private tmpfs directory for the editor's file, checked empty afterwards.
fn shm() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("medianest-test-").tempdir_in("/dev/shm").expect("/dev/shm is a tmpfs")
}

#[test]
fn secrets_commands_set_edit_list_and_rekey_the_reference_site() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("site"), &dir.path().join("site"));
    let keys = repo_root().join("tests/keys");
    let rec = keys.join("recovery.agekey");
    let run = |args: &[&str], input: &[u8], env: &[(&str, &str)]| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_medianest"))
            .arg("-C")
            .arg(dir.path())
            .args(["--color", "never"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let read = |name: &str, key: &str| {
        let c = std::fs::read(dir.path().join(format!("site/secrets/{name}.age"))).unwrap();
        secrets::decrypt(name, &c, &secrets::read_identity(&keys.join(key)).unwrap()).map(|v| v.to_vec())
    };
    let o = run(&["secrets", "list"], b"", &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("postgres_password"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("test-only"), "list never prints a value");

    // set: from stdin, exactly its bytes, to db1 and db2 (and the recovery key).
    let o = run(&["secrets", "set", "postgres_password"], b"NEW-pg-VALUE", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read("postgres_password", "db1.ssh_host_ed25519_key").unwrap(), b"NEW-pg-VALUE");
    assert!(read("postgres_password", "mon1.ssh_host_ed25519_key").is_err());
    let o = run(&["secrets", "set", "nobody_uses_this"], b"x", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no service names the secret `nobody_uses_this`"), "{}", stderr(&o));

    // edit: the editor gets the current value in a private tmpfs directory, removed after.
    let tmp = shm();
    let editor = "sh -c 'grep -q \"^test-only redis_password\" \"$1\" && printf EDITED-redis > \"$1\"' editor";
    let env = [("EDITOR", editor), ("VISUAL", editor), ("MEDIANEST_SECRETS_TMPDIR", tmp.path().to_str().unwrap())];
    let o = run(&["secrets", "edit", "redis_password", "-i", rec.to_str().unwrap()], b"", &env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(read("redis_password", "cache1.ssh_host_ed25519_key").unwrap(), b"EDITED-redis");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the editor's directory is removed");
    {
        let o = &o;
        assert!(!stdout(o).contains("EDITED") && !stderr(o).contains("EDITED"));
    }

    // A host key changes: the build names the stale files, rekey fixes them.
    let new_key = dir.path().join("app1-new");
    let app1 = keygen(&new_key);
    let hosts = dir.path().join("site/hosts/app.toml");
    let text = std::fs::read_to_string(&hosts).unwrap();
    let old = text.lines().find(|l| l.starts_with("ssh_host_key")).unwrap().to_string();
    std::fs::write(&hosts, text.replacen(&old, &format!("ssh_host_key = \"{}\"", app1.text()), 1)).unwrap();
    let o = run(&["build"], b"", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not encrypted to host `app1`, which needs it"), "{}", stderr(&o));
    assert!(stderr(&o).contains("medianest secrets rekey"));
    let o = run(&["secrets", "list"], b"", &[]);
    assert!(stdout(&o).lines().any(|l| l.starts_with("jwt_secret") && l.contains(" rekey ")), "{}", stdout(&o));
    let o = run(&["secrets", "rekey"], b"", &[("MEDIANEST_AGE_IDENTITY", rec.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("jwt_secret"), "{}", stderr(&o));
    let o = run(&["build"], b"", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c = std::fs::read(dir.path().join("site/secrets/jwt_secret.age")).unwrap();
    assert!(secrets::decrypt("jwt_secret", &c, &secrets::read_identity(&new_key).unwrap()).is_ok());
    // Nothing under generated/ holds a value.
    for e in walkdir::WalkDir::new(dir.path().join("generated")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let b = std::fs::read(e.path()).unwrap();
            for v in [&b"NEW-pg-VALUE"[..], b"EDITED-redis", b"test-only "] {
                assert!(!b.windows(v.len()).any(|w| w == v), "{} holds a plaintext", e.path().display());
            }
        }
    }
}

#[test]
fn diff_shows_secret_changes_without_values() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("site"), &dir.path().join("site"));
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .current_dir(dir.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    let set = |name: &str, v: &str| {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_medianest"))
            .arg("-C")
            .arg(dir.path())
            .args(["-q", "secrets", "set", name])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(v.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    };
    set("postgres_password", "ROTATED-value");
    let o = medianest(dir.path(), &["diff", "--stat"]);
    let out = stdout(&o);
    assert!(out.contains("secret changed: postgres_password (rotated: "), "{out}{}", stderr(&o));
    assert!(!out.contains("ROTATED") && !out.contains("test-only"), "no value in the review");

    // A second recovery key, and `rekey`: every secret's recipients change.
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "rotate"]);
    let second = keygen(&tempfile::tempdir().unwrap().path().join("operator2")).text().to_string();
    let site_toml = dir.path().join("site/site.toml");
    let text = std::fs::read_to_string(&site_toml).unwrap();
    std::fs::write(&site_toml, text.replacen("recovery = [", &format!("recovery = [\"{second}\", "), 1)).unwrap();
    let rec = repo_root().join("tests/keys/recovery.agekey");
    let o = medianest(dir.path(), &["secrets", "rekey", "-i", rec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = medianest(dir.path(), &["diff", "--stat"]);
    let out = stdout(&o);
    let id = secrets::parse_recipient(&second).unwrap().id();
    assert!(
        out.contains(&format!("secret changed: redis_password (recipients changed: +recovery key {id})")),
        "{out}{}",
        stderr(&o)
    );
}
