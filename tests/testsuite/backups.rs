//! The backups family against the real tools.
//!
//! - Every generated unit and timer (reference site and `fixtures/backups-loopback`)
//!   passes `systemd-analyze verify` with nothing on stderr (an unknown key only warns),
//!   every `OnCalendar=` passes `systemd-analyze calendar`, and a broken timer is refused.
//! - Every generated job script passes `shellcheck`.
//! - End to end on loopback, in a private network namespace: PostgreSQL 15 starts from
//!   db1's generated files with WAL archiving on; the generated job script runs a full
//!   and a differential pgBackRest backup through the generated wrapper (the generated
//!   `archive_command` ships WAL meanwhile), writes its success metric, and the generated
//!   restore test restores the newest backup into a scratch directory, replays the
//!   archive and queries it. Then a point-in-time restore to a third data directory
//!   holds the rows written before the target time and not those after. Before that,
//!   the postgres family's generated role setup runs twice against the same server: the
//!   role logs in over TCP with its password (SCRAM), owns its database, has its limit.
//! - restic: the generated job of cache1 backs up its data directory twice, forgets by
//!   retention and reports; the generated restore test checks the repository and
//!   restores the newest snapshot.
//!
//! - MinIO's TLS: stor1's generated script issues MinIO's certificate with a CA the test
//!   makes (kept while current, issued again for a new address and for a rotated CA,
//!   refused with a key that is not the CA's), and it verifies against the CA as db1 receives it for the address
//!   db1 reaches; moto's S3 server (the venv of scripts/test.sh, or
//!   `$MEDIANEST_MOTO_SERVER`) serves HTTPS with it, and db1's generated pgBackRest
//!   (refusing another CA) and cache1's generated restic job and restore test work
//!   against it. A site with MinIO and no `[minio_tls]` is refused.
//!
//! Test-only overrides, none in the generated files (made with `sed` on copies):
//! paths under `/etc/medianest/backup`, `/etc/pgbackrest`, `/run/medianest/secrets` and
//! node exporter's textfile directory point into the scratch directory; pgBackRest's
//! repository is `posix` in the scratch directory instead of MinIO's S3 (no MinIO here:
//! it is not packaged in Debian), so the `repo1-s3-*`/`repo1-storage-*` lines and the
//! wrapper's S3 key lines go, and `lock-path`/`log-path` are scratch; restic's repository
//! is a local directory and its CA line goes; PostgreSQL's paths as in postgres.rs, and
//! `psql` reaches it on the scratch socket. Needs root, `unshare`, `runuser`,
//! `postgresql-15`, `pgbackrest`, `restic`, `shellcheck`, `systemd-analyze`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The loopback site, built.
fn loopback() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/backups-loopback/site"), &dir.path().join("site"));
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
    dir
}

/// Every file under `generated/hosts/*/root/<rel>` whose name starts with one of `prefixes`.
fn files(generated: &Path, rel: &str, prefixes: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for host in std::fs::read_dir(generated.join("hosts")).unwrap() {
        let dir = host.unwrap().path().join("root").join(rel);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if prefixes.iter().any(|x| name.starts_with(x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

const UNITS: &[&str] = &["medianest-backup-", "medianest-restore-test-", "medianest-minio-", "medianest-postgres-"];

/// `systemd-analyze verify` on a host's units: success and a silent stderr.
fn verify(units: &[PathBuf]) -> (bool, String) {
    let o = Command::new("systemd-analyze").arg("verify").args(units).output().expect("systemd-analyze runs");
    (o.status.success() && o.stderr.is_empty(), format!("{}{}", stdout(&o), stderr(&o)))
}

#[test]
fn every_generated_unit_and_timer_passes_systemd_analyze() {
    let site = loopback();
    let mut seen = 0;
    let mut calendars = 0;
    for generated in [repo_root().join("generated"), site.path().join("generated")] {
        let units = files(&generated, "etc/systemd/system", UNITS);
        assert!(!units.is_empty(), "no backup units in {}", generated.display());
        let mut by_host: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
        for u in units {
            by_host.entry(u.parent().unwrap().to_path_buf()).or_default().push(u);
        }
        for (dir, units) in &by_host {
            let (ok, out) = verify(units);
            assert!(ok, "{}: {out}", dir.display());
            seen += units.len();
            for u in units {
                let text = std::fs::read_to_string(u).unwrap();
                for cal in text.lines().filter_map(|l| l.strip_prefix("OnCalendar=")) {
                    let o = Command::new("systemd-analyze").args(["calendar", cal]).output().unwrap();
                    assert!(o.status.success(), "{}: `{cal}`: {}", u.display(), stderr(&o));
                    calendars += 1;
                }
            }
        }
    }
    assert!(seen >= 20 && calendars >= 8, "{seen} units, {calendars} calendars");

    // A broken copy is refused: the check can fail.
    let t = tempfile::tempdir().unwrap();
    let timer = files(&site.path().join("generated"), "etc/systemd/system", &["medianest-backup-pg-pitr.timer"]);
    let text = std::fs::read_to_string(&timer[0]).unwrap();
    let service = timer[0].with_extension("service");
    std::fs::copy(&service, t.path().join("medianest-backup-pg-pitr.service")).unwrap();
    let bad = t.path().join("medianest-backup-pg-pitr.timer");
    let broken: String = text
        .lines()
        .map(|l| if l.starts_with("OnCalendar=") { "OnCalendar=daily at noon\n".to_string() } else { format!("{l}\n") })
        .collect();
    std::fs::write(&bad, broken).unwrap();
    let (ok, out) = verify(&[bad.clone(), t.path().join("medianest-backup-pg-pitr.service")]);
    assert!(!ok, "a bad OnCalendar passed: {out}");
    std::fs::write(&bad, text.replace("[Timer]", "[Timer]\nOnCalender=hourly")).unwrap();
    let (ok, out) = verify(&[bad, t.path().join("medianest-backup-pg-pitr.service")]);
    assert!(!ok, "a misspelt key passed: {out}");
}

#[test]
fn every_generated_job_script_passes_shellcheck() {
    let site = loopback();
    let mut scripts = Vec::new();
    for generated in [repo_root().join("generated"), site.path().join("generated")] {
        scripts.extend(files(&generated, "etc/medianest/backup", &[""]));
        scripts.extend(files(&generated, "etc/medianest/minio", &[""]));
        scripts.extend(files(&generated, "etc/medianest/postgres", &[""]));
        scripts.extend(files(&generated, "etc/medianest/redis", &[""]));
        scripts.extend(files(&generated, "etc/medianest/pgbouncer", &[""]));
        scripts.extend(files(&generated, "etc/medianest/powerdns", &[""]));
    }
    assert!(scripts.len() >= 12, "{scripts:?}");
    let o = Command::new("shellcheck").args(["-s", "sh"]).args(&scripts).output().expect("shellcheck runs");
    assert!(o.status.success(), "{}", stdout(&o));
}

/// The end-to-end script (`$1`: the loopback site's generated/, `$2`: scratch), run in a
/// private network namespace. Prints `key=value` lines.
const E2E: &str = r#"
G=$1 T=$2
PGBIN=/usr/lib/postgresql/15/bin
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  for d in p r; do
    [ -f "$T/$d/postmaster.pid" ] && as_pg $PGBIN/pg_ctl -D "$T/$d" -m immediate -w stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
ip link set lo up
mkdir -p "$T/backup" "$T/secrets" "$T/textfile" "$T/repo" "$T/log" "$T/lock" "$T/psock"
H=$G/hosts/db1/root/etc

# The test-only overrides (see the module doc), on copies.
over() {
  sed -e "s|/etc/medianest/backup/|$T/backup/|g" \
      -e "s|/etc/pgbackrest/pgbackrest.conf|$T/pgbackrest.conf|g" \
      -e "s|/run/medianest/secrets/pg/|$T/secrets/|g" \
      -e "s|/var/lib/prometheus/node-exporter|$T/textfile|g" \
      -e "s|psql -X -At -p 55432|psql -X -At -h $T/psock -p 55432|g" \
      -e "/S3_KEY=\\|S3_KEY_SECRET=/d" "$1"
}
for f in pg-pitr.sh pg-pitr-pgbackrest.sh pg-pitr-restore-test.sh; do over "$H/medianest/backup/$f" > "$T/backup/$f"; done
sed -e '/^repo1-s3-/d' -e '/^repo1-storage-/d' -e 's|^repo1-type=s3|repo1-type=posix|' \
    -e "s|^repo1-path=.*|repo1-path=$T/repo|" -e "s|^pg1-socket-path=.*|pg1-socket-path=$T/psock|" \
    -e "s|^pg1-path=.*|pg1-path=$T/p|" "$H/pgbackrest/pgbackrest.conf" > "$T/pgbackrest.conf"
# The global section gets scratch lock and log paths.
awk -v lp="$T/lock" -v lg="$T/log" '/^\[global\]/{print; print "lock-path=" lp; print "log-path=" lg; next} {print}' "$T/pgbackrest.conf" > "$T/pgbackrest.conf.new"
mv "$T/pgbackrest.conf.new" "$T/pgbackrest.conf"
printf 'correct horse battery staple\n' > "$T/secrets/backup_repository_password"
cp -R "$H/postgresql" "$T/db1"
over "$T/db1/15/main/conf.d/medianest.conf" > "$T/m.conf" && mv "$T/m.conf" "$T/db1/15/main/conf.d/medianest.conf"
chown -R postgres:postgres "$T"
chmod 700 "$T/psock"
echo "archive_mode=$(grep -c '^archive_mode = on' "$T/db1/15/main/postgresql.conf")"
echo "archive_command=$(grep '^archive_command' "$T/db1/15/main/conf.d/medianest.conf" | sed "s|$T|T|g")"

as_pg $PGBIN/initdb -N -D "$T/p" -U postgres --auth-local=peer -E UTF8 --locale=C.UTF-8 >/dev/null
C=$T/db1/15/main
start() { as_pg $PGBIN/pg_ctl -D "$T/$1" -l "$T/$1.log" -w -t 120 -o "-c config_file=$C/postgresql.conf -c data_directory=$T/$1 -c hba_file=$C/pg_hba.conf -c ident_file=$T/p/pg_ident.conf -c external_pid_file=$T/$1/ext.pid -c unix_socket_directories=$T/psock $2" start >/dev/null || { cat "$T/$1.log" >&2; exit 1; }; }
start p ""
q() { as_pg $PGBIN/psql -X -q -At -v ON_ERROR_STOP=1 -h "$T/psock" -p 55432 -U postgres -d postgres -c "$1"; }
# The generated role setup, twice (idempotent), then the role logs in over TCP with SCRAM.
printf 'app secret\n' > "$T/secrets/app_password"; chown postgres "$T/secrets/app_password"
sed -e "s|/run/medianest/secrets/pg/|$T/secrets/|g" -e "s|-p 55432|-h $T/psock -p 55432|g" \
    "$G/hosts/db1/root/etc/medianest/postgres/setup.sh" > "$T/setup.sh"
sh "$T/setup.sh" > "$T/setup.out" 2>&1 || { cat "$T/setup.out" >&2; exit 1; }
sh "$T/setup.sh" >> "$T/setup.out" 2>&1 || { cat "$T/setup.out" >&2; exit 1; }
echo "setup=$(tail -1 "$T/setup.out")"
echo "login=$(PGPASSWORD='app secret' $PGBIN/psql -X -At -h 127.0.0.2 -p 55432 -U app -d appdb -c "SELECT current_user || ' ' || current_database() || ' ' || (SELECT rolconnlimit FROM pg_roles WHERE rolname = 'app') || ' ' || (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb')")"
echo "wrong=$(PGPASSWORD='nope' $PGBIN/psql -X -At -h 127.0.0.2 -p 55432 -U app -d appdb -c 'SELECT 1' 2>&1 | head -1)"
echo "stored=$(q "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'app'")"
q "CREATE TABLE t(id int, at timestamptz default now())"
q "INSERT INTO t(id) VALUES (1)"

# The generated job: a full backup, then a differential one.
sh "$T/backup/pg-pitr.sh" full > "$T/full.out" 2>&1 || { cat "$T/full.out" "$T/log"/* >&2; exit 1; }
echo "metric=$(sed -n 's/^medianest_backup_last_success_timestamp_seconds{policy="pg-pitr"} \([0-9]*\)$/\1/p' "$T/textfile/medianest_backup_pg-pitr.prom")"
q "INSERT INTO t(id) VALUES (2)"
sh "$T/backup/pg-pitr.sh" > "$T/diff.out" 2>&1 || { cat "$T/diff.out" >&2; exit 1; }
echo "backups=$(as_pg sh "$T/backup/pg-pitr-pgbackrest.sh" info --output=json | python3 -c 'import json,sys; print(" ".join(b["type"] for b in json.load(sys.stdin)[0]["backup"]))')"
echo "encrypted=$(as_pg sh "$T/backup/pg-pitr-pgbackrest.sh" info --output=json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["cipher"])')"

# Rows on both sides of a target time, archived.
q "INSERT INTO t(id) VALUES (3)"
sleep 1
target=$(q "SELECT now()")
sleep 1
q "INSERT INTO t(id) VALUES (4)"
q "SELECT pg_switch_wal()" >/dev/null
i=0; until [ "$(q "SELECT last_archived_wal IS NOT NULL AND last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver")" = t ]; do
  i=$((i+1)); [ $i -lt 600 ] || { q "SELECT * FROM pg_stat_archiver" >&2; exit 1; }; sleep 0.2; done
echo "archived=$(q "SELECT archived_count > 0 AND failed_count = 0 FROM pg_stat_archiver")"

# The generated restore test: newest backup, archive replayed, queried.
sh "$T/backup/pg-pitr-restore-test.sh" > "$T/rt.out" 2>&1 || { cat "$T/rt.out" >&2; exit 1; }
echo "restore_test=$(tail -1 "$T/rt.out")"
echo "restore_metric=$(grep -c '^medianest_restore_test_last_success_timestamp_seconds{policy="pg-pitr"} [0-9]*$' "$T/textfile/medianest_restore_pg-pitr.prom")"

# Point in time, into a third data directory.
mkdir "$T/r"; chown postgres:postgres "$T/r"; chmod 700 "$T/r"
as_pg sh "$T/backup/pg-pitr-pgbackrest.sh" --pg1-path="$T/r" --type=time "--target=$target" --target-action=promote \
  "--recovery-option=restore_command=/bin/sh $T/backup/pg-pitr-pgbackrest.sh --pg1-path=$T/r archive-get %f \"%p\"" restore >/dev/null
as_pg $PGBIN/pg_ctl -D "$T/p" -m fast -w stop >/dev/null
start r "-c archive_mode=off"
i=0; until [ "$(q 'SELECT pg_is_in_recovery()')" = f ]; do i=$((i+1)); [ $i -lt 300 ] || exit 1; sleep 0.2; done
echo "pitr_rows=$(q 'SELECT string_agg(id::text, $$ $$ ORDER BY id) FROM t')"
"#;

#[test]
fn pgbackrest_backs_up_archives_and_restores_to_a_point_in_time_on_loopback() {
    let site = loopback();
    let scratch = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let o = Command::new("unshare")
        .args(["--net", "sh", "-eu", "-c", E2E, "sh"])
        .arg(site.path().join("generated"))
        .arg(scratch.path())
        .output()
        .expect("unshare runs");
    let out = stdout(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{}", o.status.code(), stderr(&o));
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in\n{out}"))
            .to_string()
    };
    assert_eq!(get("setup"), "pg on db1: roles app in place");
    assert_eq!(get("login"), "app appdb 10 app", "{out}");
    assert!(get("wrong").contains("password authentication failed"), "{out}");
    assert_eq!(get("stored"), "SCRAM-SHA-256$", "stored as a verifier");
    assert_eq!(get("archive_mode"), "1");
    assert_eq!(get("archive_command"), "archive_command = '/bin/sh T/backup/pg-pitr-pgbackrest.sh archive-push %p'");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at: u64 = get("metric").parse().expect("the job reports a timestamp");
    assert!(now.abs_diff(at) < 600, "metric {at}, now {now}");
    assert_eq!(get("backups"), "full diff", "{out}");
    assert_eq!(get("encrypted"), "aes-256-cbc", "{out}");
    assert_eq!(get("archived"), "t");
    assert_eq!(get("restore_test"), "restore test of pg-pitr: passed");
    assert_eq!(get("restore_metric"), "1");
    assert_eq!(get("pitr_rows"), "1 2 3", "rows before the target time only");
    eprintln!("pgBackRest loopback run: {:.1} s", start.elapsed().as_secs_f64());
}

#[test]
fn restic_backs_up_forgets_and_passes_its_restore_test() {
    let site = loopback();
    let t = tempfile::tempdir().unwrap();
    let tp = t.path().display().to_string();
    let h = site.path().join("generated/hosts/cache1/root/etc/medianest/backup");
    for d in ["data", "secrets", "textfile", "repo", "cache"] {
        std::fs::create_dir_all(t.path().join(d)).unwrap();
    }
    std::fs::write(t.path().join("data/dump.rdb"), "REDIS0011 the cache's data").unwrap();
    std::fs::write(t.path().join("secrets/backup_repository_password"), "correct horse\n").unwrap();
    let over = |name: &str| -> PathBuf {
        let text = std::fs::read_to_string(h.join(name)).unwrap();
        let text = text
            .replace("s3:https://127.0.0.3:9000/backups/cache-files", &format!("{tp}/repo"))
            .replace("/run/medianest/secrets/cache/", &format!("{tp}/secrets/"))
            .replace("/var/lib/prometheus/node-exporter", &format!("{tp}/textfile"))
            .replace("/var/lib/redis", &format!("{tp}/data"))
            .replace("/var/cache/restic", &format!("{tp}/cache"));
        let text: String = text
            .lines()
            .filter(|l| !l.contains("RESTIC_CACERT") && !l.contains("AWS_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let job = over("cache-files.sh");
    let test = over("cache-files-restore-test.sh");
    for _ in 0..2 {
        let o = Command::new("sh").arg(&job).output().unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
    let metric = std::fs::read_to_string(t.path().join("textfile/medianest_backup_cache-files.prom")).unwrap();
    assert!(metric.contains("medianest_backup_last_success_timestamp_seconds{policy=\"cache-files\"} "), "{metric}");
    let o = Command::new("restic")
        .args(["snapshots", "--json", "--tag", "cache-files"])
        .env("RESTIC_REPOSITORY", t.path().join("repo"))
        .env("RESTIC_PASSWORD_FILE", t.path().join("secrets/backup_repository_password"))
        .output()
        .unwrap();
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{}", stderr(&o));
    let o = Command::new("sh").arg(&test).output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).ends_with("restore test of cache-files: passed\n"), "{}", stdout(&o));
    // A repository that lost its data fails the restore test.
    for e in walkdir::WalkDir::new(t.path().join("repo/data")).into_iter().filter_map(Result::ok) {
        if e.file_type().is_file() {
            std::fs::write(e.path(), b"garbage").unwrap();
        }
    }
    let o = Command::new("sh").arg(&test).output().unwrap();
    assert!(!o.status.success(), "a corrupt repository passed: {}", stdout(&o));
}

/// MinIO's TLS on loopback, in a private network namespace (`$1`: generated/ of the
/// loopback site whose `[minio_tls] ca` is the test's CA, `$2`: scratch holding the CA
/// key in `ca/ca.key`, `$3`: moto_server). stor1's generated issuing script (paths into
/// the scratch directory) issues the certificate, keeps it, issues again for a new
/// address, refuses a key that is not the CA's; moto's S3 server then serves HTTPS with
/// that certificate (no MinIO here) and db1's generated pgBackRest (its conf and wrapper,
/// the CA at the path its conf names, as db1 receives it) and cache1's generated restic
/// job and restore test (its CA copy) work against it, and pgBackRest refuses another
/// CA. Prints
/// `key=value` lines.
const MINIO_TLS: &str = r#"
G=$1 T=$2 MOTO=$3
ip link set lo up
mkdir -p "$T/tls" "$T/secrets" "$T/lock" "$T/log" "$T/textfile" "$T/cache" "$T/data"
H=$G/hosts/stor1/root/etc
sed -e "s|^dir=.*|dir=$T/tls/minio|" -e "s|^ca=.*|ca=$H/medianest/tls/minio-ca.crt|" \
    -e "s|^ca_key=.*|ca_key=$T/ca/ca.key|" "$H/medianest/minio/tls.sh" > "$T/tls.sh"
C=$T/tls/minio/public.crt
echo "first=$(sh "$T/tls.sh" | sed 's/ (notAfter.*//')"
before=$(sha256sum < "$C")
echo "second=$(sh "$T/tls.sh" | sed 's/ (.*//')"
[ "$(sha256sum < "$C")" = "$before" ] && echo "kept=yes"
echo "key=$(stat -c '%a %u:%g' "$T/tls/minio/private.key") cert=$(stat -c '%a' "$C") ca_copy=$(cmp -s "$T/tls/minio/CAs/minio-ca.crt" "$H/medianest/tls/minio-ca.crt" && echo same)"
# Verified against the CA as db1 receives it, for the address db1 reaches stor1 at.
DB1CA=$G/hosts/db1/root/etc/medianest/tls/minio-ca.crt
echo "verify_db1=$(openssl verify -CAfile "$DB1CA" -verify_ip 127.0.0.3 "$C" 2>&1)"
echo "verify_other_ip=$(openssl verify -CAfile "$DB1CA" -verify_ip 127.0.0.9 "$C" >/dev/null 2>&1 && echo ok || echo refused)"
# A flow that adds an address: the certificate is issued again.
sed -e "s|^ips='|ips='127.0.0.9 |" -e "s|^san='|san='IP:127.0.0.9,DNS:127.0.0.9,|" "$T/tls.sh" > "$T/tls2.sh"
echo "new_address=$(sh "$T/tls2.sh" | sed 's/ for .*//')"
echo "verify_new=$(openssl verify -CAfile "$DB1CA" -verify_ip 127.0.0.9 "$C" >/dev/null 2>&1 && echo ok || echo refused)"
# A CA key that is not the CA's signs nothing.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/other.key" 2>/dev/null
sed "s|^ca_key=.*|ca_key=$T/other.key|" "$T/tls.sh" > "$T/tls3.sh"
if e=$(sh "$T/tls3.sh" 2>&1 >/dev/null); then echo "wrong_key=accepted"; else echo "wrong_key=$e (refused)"; fi
# A rotation: the new CA first, the old one after it, the new key. The certificate is
# issued again from the new CA, which alone verifies it; then it is kept.
mkdir -p "$T/ca2"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=new -keyout "$T/ca2/ca.key" \
    -out "$T/ca2/ca.crt" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
cat "$T/ca2/ca.crt" "$H/medianest/tls/minio-ca.crt" > "$T/ca2/bundle.crt"
sed -e "s|^ca=.*|ca=$T/ca2/bundle.crt|" -e "s|^ca_key=.*|ca_key=$T/ca2/ca.key|" "$T/tls.sh" > "$T/tls4.sh"
echo "rotation=$(sh "$T/tls4.sh" | sed 's/ for .*//') $(openssl verify -CAfile "$T/ca2/ca.crt" "$C" | sed 's/.*: //') $(sh "$T/tls4.sh" | sed 's/ (.*//; s/.*: //')"
sh "$T/tls.sh" >/dev/null

# HTTPS S3 with the issued certificate, at stor1's address.
"$MOTO" -H 127.0.0.3 -p 9000 -c "$C" -k "$T/tls/minio/private.key" > "$T/moto.log" 2>&1 &
echo $! > "$T/moto.pid"
trap 'kill "$(cat "$T/moto.pid")" 2>/dev/null || true' EXIT
i=0; until curl -fsS --cacert "$DB1CA" -o /dev/null https://127.0.0.3:9000/ 2>/dev/null; do
  i=$((i+1)); [ $i -lt 300 ] || { cat "$T/moto.log" >&2; exit 1; }; sleep 0.1; done
curl -fsS --cacert "$DB1CA" -X PUT -o /dev/null https://127.0.0.3:9000/backups

# pgBackRest as db1 runs it: the CA is the file its conf names, where db1 receives it.
P=$G/hosts/db1/root/etc/pgbackrest/pgbackrest.conf
named=$(sed -n 's/^repo1-storage-ca-file=//p' "$P")
echo "ca_named=$named distributed=$([ -f "$G/hosts/db1/root$named" ] && echo yes)"
cp "$G/hosts/db1/root$named" "$T/db1-ca.crt"
printf 'AKIAMEDIANESTTEST\n' > "$T/secrets/backup_s3_access_key"
printf 'test secret key\n' > "$T/secrets/backup_s3_secret_key"
printf 'correct horse battery staple\n' > "$T/secrets/backup_repository_password"
conf() {
  sed "s|^repo1-storage-ca-file=.*|repo1-storage-ca-file=$1|" "$P" |
    awk -v lp="$T/lock" -v lg="$T/log" '/^\[global\]/{print; print "lock-path=" lp; print "log-path=" lg; next} {print}' > "$T/pgbackrest.conf"
}
conf "$T/db1-ca.crt"
sed -e "s|/run/medianest/secrets/pg/|$T/secrets/|g" -e "s|--config=/etc/pgbackrest/pgbackrest.conf|--config=$T/pgbackrest.conf|" \
    "$G/hosts/db1/root/etc/medianest/backup/pg-pitr-pgbackrest.sh" > "$T/pgbackrest.sh"
chown -R postgres "$T/pgbackrest.conf" "$T/pgbackrest.sh" "$T/secrets" "$T/lock" "$T/log" "$T/db1-ca.crt"
if e=$(runuser -u postgres -- sh "$T/pgbackrest.sh" repo-ls 2>&1); then echo "pgbackrest=ok"; else echo "pgbackrest=$e" | tr '\n' ' '; echo; fi
echo "pgbackrest_info=$(runuser -u postgres -- sh "$T/pgbackrest.sh" info 2>&1 | grep -o 'status: .*')"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=other -keyout "$T/o.key" -out "$T/other-ca.crt" 2>/dev/null
chown postgres "$T/other-ca.crt"; conf "$T/other-ca.crt"
echo "pgbackrest_other_ca=$(runuser -u postgres -- sh "$T/pgbackrest.sh" --io-timeout=1 repo-ls 2>&1 | grep -o 'unable to verify certificate[^:]*')"

# restic as cache1 runs it: its generated job, its copy of the CA.
printf 'the cache data\n' > "$T/data/dump.rdb"
sed -e "s|/run/medianest/secrets/cache/|$T/secrets/|g" -e "s|/var/lib/prometheus/node-exporter|$T/textfile|g" \
    -e "s|/var/lib/redis|$T/data|g" -e "s|/var/cache/restic|$T/cache|g" \
    -e "s|^RESTIC_CACERT=.*|RESTIC_CACERT=$G/hosts/cache1/root/etc/medianest/tls/minio-ca.crt|" \
    "$G/hosts/cache1/root/etc/medianest/backup/cache-files.sh" > "$T/restic-job.sh"
echo "restic_job=$(sh "$T/restic-job.sh" > "$T/restic.log" 2>&1 && echo ok || cat "$T/restic.log")"
echo "restic_metric=$(grep -c '^medianest_backup_last_success_timestamp_seconds{policy="cache-files"} ' "$T/textfile/medianest_backup_cache-files.prom")"
mkdir -p "$T/vartmp"
sed -e "s|/run/medianest/secrets/cache/|$T/secrets/|g" -e "s|/var/lib/prometheus/node-exporter|$T/textfile|g" \
    -e "s|/var/tmp/|$T/vartmp/|g" -e "s|/var/cache/restic|$T/cache|g" \
    -e "s|^RESTIC_CACERT=.*|RESTIC_CACERT=$G/hosts/cache1/root/etc/medianest/tls/minio-ca.crt|" \
    "$G/hosts/cache1/root/etc/medianest/backup/cache-files-restore-test.sh" > "$T/restic-test.sh"
echo "restic_restore_test=$(sh "$T/restic-test.sh" 2>&1 | tail -1)"
"#;

/// The loopback site with a CA of the test's own (its key in `ca/ca.key` of the returned
/// scratch directory), built.
fn loopback_with_ca() -> (tempfile::TempDir, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let ca = scratch.path().join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=backuptest MinIO CA", "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout"])
        .arg(ca.join("ca.key"))
        .arg("-out")
        .arg(ca.join("ca.crt"))
        .output()
        .expect("openssl runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/backups-loopback/site"), &dir.path().join("site"));
    let toml = dir.path().join("site/site.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let start = text.find("ca = \"\"\"").expect("the fixture has a CA");
    let end = start + 8 + text[start + 8..].find("\"\"\"").unwrap() + 3;
    let pem = std::fs::read_to_string(ca.join("ca.crt")).unwrap();
    std::fs::write(&toml, format!("{}ca = \"\"\"\n{pem}\"\"\"{}", &text[..start], &text[end..])).unwrap();
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
    (dir, scratch)
}

/// moto's S3 server: `$MEDIANEST_MOTO_SERVER`, else the venv of scripts/test.sh.
fn moto_server() -> PathBuf {
    std::env::var_os("MEDIANEST_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/medianest-test/venv/bin/moto_server"))
}

#[test]
fn minio_tls_is_issued_on_the_host_and_trusted_by_pgbackrest_and_restic_over_https() {
    let moto = moto_server();
    assert!(moto.exists(), "{} is missing: run scripts/test.sh once (it makes the venv)", moto.display());
    let (site, scratch) = loopback_with_ca();
    let o = Command::new("unshare")
        .args(["--net", "sh", "-eu", "-c", MINIO_TLS, "sh"])
        .arg(site.path().join("generated"))
        .arg(scratch.path())
        .arg(&moto)
        .output()
        .expect("unshare runs");
    let out = stdout(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{}", o.status.code(), stderr(&o));
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in\n{out}"))
            .to_string()
    };
    assert_eq!(
        get("first"),
        "MinIO TLS on stor1: issued a certificate for IP:127.0.0.3,DNS:127.0.0.3,IP:127.0.0.1,DNS:127.0.0.1,DNS:stor1,DNS:stor1.backuptest.lan,DNS:localhost"
    );
    assert_eq!(get("second"), "MinIO TLS on stor1: the certificate is current");
    assert_eq!(get("kept"), "yes");
    // The key is MinIO's user's (`user = "1000:1000"`), readable by it alone.
    assert_eq!(get("key"), "400 1000:1000 cert=444 ca_copy=same");
    assert!(get("verify_db1").ends_with(": OK"), "{out}");
    assert_eq!(get("verify_other_ip"), "refused");
    assert_eq!(get("new_address"), "MinIO TLS on stor1: issued a certificate");
    assert_eq!(get("verify_new"), "ok");
    assert_eq!(
        get("wrong_key"),
        "MinIO TLS on stor1: the secret minio_tls_ca_key is not the key of [minio_tls] ca (refused)"
    );
    assert_eq!(get("rotation"), "MinIO TLS on stor1: issued a certificate OK the certificate is current");
    assert_eq!(get("ca_named"), "/etc/medianest/tls/minio-ca.crt distributed=yes");
    // pgBackRest lists the repository over HTTPS (empty: no stanza yet), verifying the
    // certificate against the CA and its name against the endpoint.
    assert_eq!(get("pgbackrest"), "ok", "{out}");
    assert_eq!(get("pgbackrest_info"), "status: error (missing stanza path)", "{out}");
    assert_eq!(get("pgbackrest_other_ca"), "unable to verify certificate presented by '127.0.0.3");
    assert_eq!(get("restic_job"), "ok", "{out}");
    assert_eq!(get("restic_metric"), "1");
    assert_eq!(get("restic_restore_test"), "restore test of cache-files: passed", "{out}");
}

#[test]
fn a_site_with_minio_and_no_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/backups-loopback/site"), &dir.path().join("site"));
    let toml = dir.path().join("site/site.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let start = text.find("[minio_tls]").unwrap();
    let end = start + text[start..].find("\"\"\"\n").unwrap();
    let end = end + 4 + text[end + 4..].find("\"\"\"\n").unwrap() + 4;
    std::fs::write(&toml, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let o = medianest(dir.path(), &["build"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("error[missing-key]: `minio` is a MinIO service and the site has no `[minio_tls]`"), "{err}");
    assert!(!dir.path().join("generated").exists(), "nothing is written");
}

/// The reference site's MinIO files agree with each other: the container mounts the
/// directory the issuing script writes, where MinIO's `--certs-dir` and the health
/// check look; the CA every client names (pgBackRest, restic, Prometheus, mc) is a file
/// its host receives, the same CA everywhere; and the script names the address each
/// client reaches MinIO at.
#[test]
fn the_generated_minio_files_agree() {
    use serde_json::Value;
    let g = repo_root().join("generated/hosts");
    let read = |host: &str, path: &str| {
        std::fs::read_to_string(g.join(host).join("root").join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{host}:{path}: {e}"))
    };
    let script = read("stor1", "/etc/medianest/minio/tls.sh");
    let var = |name: &str| -> String {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in tls.sh"))
            .trim_matches('\'')
            .to_string()
    };
    let (dir, ca) = (var("dir"), var("ca"));
    let compose: Value = serde_saphyr::from_str(&read("stor1", "/etc/medianest/compose/compose.yaml")).unwrap();
    let minio = &compose["services"]["minio"];
    let mount =
        minio["volumes"].as_array().unwrap().iter().find(|v| v["source"] == dir.as_str()).expect("TLS dir mounted");
    assert_eq!(mount["read_only"], true);
    let target = mount["target"].as_str().unwrap();
    let command: Vec<&str> = minio["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let at = command.iter().position(|a| *a == "--certs-dir").expect("--certs-dir");
    assert_eq!(command[at + 1], target, "{command:?}");
    assert_eq!(command[..2], ["server", "/data"]);
    // The health check trusts the CA copy the script keeps in the mounted directory.
    let health = minio["healthcheck"]["test"][1].as_str().unwrap();
    assert!(health.contains(&format!("SSL_CERT_FILE={target}/CAs/minio-ca.crt")), "{health}");
    assert!(script.contains("\"$dir/CAs/minio-ca.crt\""), "the script keeps the CA copy there");
    assert!(health.contains("https://127.0.0.1:9000") && var("ips").split(' ').any(|a| a == "127.0.0.1"), "{health}");
    let pem = |text: String| text[text.find("-----BEGIN").expect("a PEM block")..].to_string();
    let the_ca = pem(read("stor1", &ca));
    // Each client's CA path, on its host.
    let mut clients = vec![
        (
            "db1",
            read("db1", "/etc/pgbackrest/pgbackrest.conf")
                .lines()
                .find_map(|l| l.strip_prefix("repo1-storage-ca-file="))
                .unwrap()
                .to_string(),
        ),
        (
            "mon1",
            read("mon1", "/etc/prometheus/prometheus.yml")
                .lines()
                .find_map(|l| l.trim().strip_prefix("ca_file: "))
                .unwrap()
                .trim_matches('"')
                .to_string(),
        ),
    ];
    for (host, job) in [("cache1", "redis-rdb.sh"), ("stor1", "medianest-media.sh"), ("dns1", "powerdns-zones.sh")] {
        let text = read(host, &format!("/etc/medianest/backup/{job}"));
        clients.push((
            host,
            text.lines()
                .find_map(|l| l.strip_prefix("RESTIC_CACERT="))
                .unwrap_or_else(|| panic!("{host} {job}"))
                .to_string(),
        ));
    }
    for (host, path) in &clients {
        assert_eq!(path, &ca, "{host}");
        assert_eq!(pem(read(host, path)), the_ca, "{host} has the same CA");
    }
    // The certificate names the address each client reaches stor1 at.
    let ips = var("ips");
    assert!(read("mon1", "/etc/prometheus/prometheus.yml").contains("targets: [\"10.0.4.10:9000\"]"));
    assert!(read("db1", "/etc/pgbackrest/pgbackrest.conf").contains("repo1-s3-endpoint=10.0.4.10\n"));
    assert!(ips.split(' ').any(|a| a == "10.0.4.10"), "{ips}");
    // mc trusts the CA instead of skipping verification.
    let buckets = read("stor1", "/etc/medianest/minio/buckets.sh");
    assert!(!buckets.contains("--insecure") && buckets.contains(&format!("-v {ca}:")), "{buckets}");
}
