//! The pgbouncer family against real servers: Debian 12's PgBouncer 1.18 in front of
//! Debian 12's PostgreSQL 15.
//!
//! From `fixtures/data-loopback` (db1 127.0.0.2 the primary, db2 127.0.0.3 a replica
//! that is not started, pool1 127.0.0.4 the pooler, app1 a client with a flow to it), in
//! a private network and mount namespace: PostgreSQL starts from db1's generated files
//! (as in postgres.rs), PgBouncer from pool1's generated `pgbouncer.ini` and
//! `databases.ini`, unchanged, at their real paths (`/etc/pgbouncer`,
//! `/var/log/postgresql` and `/run/postgresql` are scratch bind mounts). The test
//! delivers `app`'s password into a private `/run` as the agent would, and the generated
//! `render-userlist.sh` (the unit's `ExecStartPre`) writes the auth file from it. Then a query through the pool reaches `appdb` on
//! 127.0.0.2:55432 as `app`, a row written through the pool is on the primary, a client
//! without a password or with a wrong one is refused, the pooler answers on 127.0.0.1
//! and 127.0.0.4 only (127.0.0.9 is refused), and `SHOW` through the pool's own
//! entry shows the generated `[databases]`. PgBouncer has no check mode: starting it is
//! the check, and a bad `auth_type` stops it with exit code 1.
//!
//! Test-only overrides, none in the generated files: PostgreSQL's as in postgres.rs
//! (`data_directory`, `hba_file` at the copy's path, `ident_file`, `external_pid_file`,
//! `unix_socket_directories`, `fsync`/`synchronous_commit`/`full_page_writes` off);
//! none for PgBouncer. Needs root, `unshare`, `ip`, `runuser`, `postgresql-15` and
//! `pgbouncer` (scripts/test.sh installs them).

use std::process::Command;

use crate::support::*;

/// The script (`$1`: the loopback site's generated/, `$2`: scratch), run in a private
/// network and mount namespace. Prints `key=value` lines.
const E2E: &str = r#"
G=$1 T=$2
PGBIN=/usr/lib/postgresql/15/bin
FAST="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  [ -f "$T/run/pgbouncer.pid" ] && kill -INT "$(cat "$T/run/pgbouncer.pid")" 2>/dev/null || true
  [ -f "$T/p/postmaster.pid" ] && as_pg $PGBIN/pg_ctl -D "$T/p" -m immediate -w stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
ip link set lo up
mkdir -p "$T/pgb" "$T/log" "$T/run" "$T/psock"
cp "$G"/hosts/pool1/root/etc/pgbouncer/*.ini "$T/pgb/"
cp -R "$G/hosts/db1/root/etc/postgresql" "$T/db1"
chown -R postgres:postgres "$T"
chmod 700 "$T/psock"
mount --bind "$T/pgb" /etc/pgbouncer
mount --bind "$T/log" /var/log/postgresql
# A private /run, into which the test delivers the pooler's copy of app's password as
# the agent would.
mount -t tmpfs medianest-run /run
mkdir -p /run/postgresql /run/medianest/secrets/pool
mount --bind "$T/run" /run/postgresql
printf 'apppass' > /run/medianest/secrets/pool/app_password

# db1, the primary, from its generated files.
as_pg $PGBIN/initdb -N -D "$T/p" -U postgres --auth-local=peer -E UTF8 --locale=C.UTF-8 >/dev/null
C=$T/db1/15/main
as_pg $PGBIN/pg_ctl -D "$T/p" -l "$T/p.log" -w -t 60 -o "-c config_file=$C/postgresql.conf -c data_directory=$T/p -c hba_file=$C/pg_hba.conf -c ident_file=$T/p/pg_ident.conf -c external_pid_file=$T/p/ext.pid -c unix_socket_directories=$T/psock $FAST" start >/dev/null \
  || { cat "$T/p.log" >&2; exit 1; }
psql_p() { as_pg $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h "$T/psock" -p 55432 -U postgres "$@"; }
psql_p -d postgres -c "CREATE ROLE app LOGIN PASSWORD 'apppass'" -c "CREATE DATABASE appdb OWNER app"
# The generated render script, as the unit's ExecStartPre runs it: the auth file from
# the delivered password.
sh "$G/hosts/pool1/root/etc/medianest/pgbouncer/render-userlist.sh"
echo "userlist=$(cat /run/medianest/pgbouncer/userlist.txt) $(stat -c '%a %U' /run/medianest/pgbouncer/userlist.txt)"

as_pg pgbouncer -d /etc/pgbouncer/pgbouncer.ini
q() { h=$1; shift; timeout 10 $PGBIN/psql -X -w -h "$h" -p 6432 -U app -d appdb -Atc "$@" 2>&1; }
i=0; until [ "$(PGPASSWORD=apppass q 127.0.0.4 'SELECT 1')" = 1 ]; do
  i=$((i+1)); [ $i -lt 100 ] || { cat "$T/log/pgbouncer.log" >&2; exit 1; }; sleep 0.1; done
echo "through=$(PGPASSWORD=apppass q 127.0.0.4 "SELECT current_user || ' ' || current_database() || ' ' || host(inet_server_addr()) || ' ' || inet_server_port()")"
PGPASSWORD=apppass q 127.0.0.4 "CREATE TABLE t(id int); INSERT INTO t VALUES (1), (2)" >/dev/null
echo "on_primary=$(psql_p -d appdb -Atc 'SELECT count(*) FROM t')"
echo "loopback=$(PGPASSWORD=apppass q 127.0.0.1 'SELECT 1')"
echo "nopass=$(q 127.0.0.4 'SELECT 1' | head -1)"
echo "wrongpass=$(PGPASSWORD=wrong q 127.0.0.4 'SELECT 1' | head -1)"
echo "other=$(PGPASSWORD=apppass q 127.0.0.9 'SELECT 1' | head -1)"
echo "listening=$(ss -Hltn 'sport = :6432' | awk '{print $4}' | sort | tr '\n' ' ')"
echo "server_conns=$(psql_p -d postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")"
kill -INT "$(cat "$T/run/pgbouncer.pid")"
i=0; while [ -f "$T/run/pgbouncer.pid" ]; do i=$((i+1)); [ $i -lt 50 ] || break; sleep 0.1; done

# Starting is the check: a bad value stops PgBouncer at once.
sed 's/^auth_type = scram-sha-256/auth_type = scram/' /etc/pgbouncer/pgbouncer.ini > "$T/pgb/bad.ini"
chown postgres "$T/pgb/bad.ini"
set +e
timeout 10 runuser -u postgres -- pgbouncer /etc/pgbouncer/bad.ini > "$T/bad.out" 2>&1; echo "bad_exit=$?"
set -e
echo "bad_says=$(grep -c 'invalid value' "$T/bad.out")"
"#;

#[test]
fn pgbouncer_pools_to_the_primary_from_the_generated_config_with_scram() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/data-loopback/site"), &dir.path().join("site"));
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
    let ini =
        std::fs::read_to_string(dir.path().join("generated/hosts/pool1/root/etc/pgbouncer/databases.ini")).unwrap();
    // Writes to the primary, `_ro` to the replica, the keys on each entry.
    assert!(
        ini.contains("\nappdb = host=127.0.0.2 port=55432 dbname=appdb pool_mode=transaction pool_size=5\n"),
        "{ini}"
    );
    assert!(
        ini.contains("\nappdb_ro = host=127.0.0.3 port=55432 dbname=appdb pool_mode=transaction pool_size=5\n"),
        "{ini}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let o = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh", "-eu", "-c", E2E, "sh"])
        .arg(dir.path().join("generated"))
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
    assert_eq!(get("userlist"), "\"app\" \"apppass\" 640 postgres", "{out}");
    assert_eq!(get("through"), "app appdb 127.0.0.2 55432", "{out}");
    assert_eq!(get("on_primary"), "2");
    assert_eq!(get("loopback"), "1", "{out}");
    assert!(get("nopass").contains("no password supplied"), "{out}");
    assert!(get("wrongpass").contains("SASL authentication failed"), "{out}");
    assert!(get("other").contains("Connection refused"), "{out}");
    assert_eq!(get("listening").trim(), "127.0.0.1:6432 127.0.0.4:6432", "{out}");
    let conns: u32 = get("server_conns").parse().unwrap();
    assert!((1..=5).contains(&conns), "pool_size 5 bounds the server connections: {conns}");
    assert_eq!(get("bad_exit"), "1", "{out}");
    assert_eq!(get("bad_says"), "1", "{out}");
    eprintln!("pgbouncer loopback run: {:.1} s", start.elapsed().as_secs_f64());
}

/// The agent's check of the staged PgBouncer files ([`Validator::Pgbouncer`], the
/// command the agent runs): every host's generated files pass (the auth file rendered
/// from secrets, not yet delivered, is a stand-in); an unknown parameter, a bad pool
/// mode and a missing include each fail.
#[test]
fn the_agents_pgbouncer_check_passes_the_generated_files_and_refuses_broken_ones() {
    use medianest::agent::actions;
    use medianest::artifact::Validator;
    let hosts = repo_root().join("generated/hosts");
    let mut checked = 0;
    for e in std::fs::read_dir(&hosts).unwrap() {
        let root = e.unwrap().path().join("root");
        if !root.join("etc/pgbouncer/pgbouncer.ini").exists() {
            continue;
        }
        let start = std::time::Instant::now();
        let o = actions::validator(Validator::Pgbouncer, &root).output().unwrap();
        assert!(o.status.success(), "{}: {}{}", root.display(), stdout(&o), stderr(&o));
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
        checked += 1;
    }
    assert_eq!(checked, 2, "db1 and db2");
    let dir = hosts.join("db1/root/etc/pgbouncer");
    let ini = std::fs::read_to_string(dir.join("pgbouncer.ini")).unwrap();
    let dbs = std::fs::read_to_string(dir.join("databases.ini")).unwrap();
    for (ini, dbs, says) in [
        (
            ini.replace("max_client_conn = 200", "max_client_conn = 200\nbogus_param = 1"),
            dbs.clone(),
            "unknown parameter",
        ),
        (
            ini.clone(),
            dbs.replace("pool_mode=transaction", "pool_mode=sometimes"),
            "pgbouncer stopped at once (exit 1)",
        ),
        (ini.clone(), String::new(), "pgbouncer stopped at once (exit 1)"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc/pgbouncer");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("pgbouncer.ini"), ini).unwrap();
        if !dbs.is_empty() {
            std::fs::write(etc.join("databases.ini"), dbs).unwrap();
        }
        let o = actions::validator(Validator::Pgbouncer, d.path()).output().unwrap();
        assert!(!o.status.success(), "broken files passed: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{says}: {}", stderr(&o));
    }
}
