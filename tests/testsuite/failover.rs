//! Automated PostgreSQL failover (the postgres service's `failover`) against the real
//! tools, from the reference site's generated files: db1 and db2 with their own
//! addresses (10.0.3.10 and .11 on `ens18`, in 10.0.3.0/24) and the failover address
//! 10.0.3.20.
//!
//! - The generated failover script, replica bootstrap and password-file script pass
//!   `shellcheck` (`keepalived -t` on db1's and db2's keepalived.conf is in edge.rs).
//! - End to end, in namespaces the test creates: a switch (a bridge) and one network and
//!   mount namespace per host, each loading its generated nftables ruleset (so VRRP and
//!   PostgreSQL pass only by the site's flows) and the generated `ip_nonlocal_bind`.
//!   PostgreSQL 16 primary on db1 and replica on db2 start from their generated
//!   `/etc/postgresql/16/main` (the unit's steps: the generated password-file script,
//!   then the generated fence, then `pg_ctl -D /etc/postgresql/16/main`, as
//!   `pg_ctlcluster` does); the roles come from the generated setup script; PgBouncer
//!   on both hosts from its generated files (the auth file from the generated render
//!   script); keepalived on both from the generated keepalived.conf, running the
//!   generated failover script. Then: the address settles on db1, db2's check refuses
//!   to compete, a write through db2's PgBouncer reaches db1 and streams to db2; the
//!   script's leave-MASTER step makes db1 read-only and its MASTER step lifts that. db1's
//!   host is lost (every process in its namespaces killed with SIGKILL, its link gone
//!   with them). Within [`DEADLINE`] db2 holds the address, is promoted, and a write
//!   through its PgBouncer succeeds (the times are printed). Then db1 boots again (new
//!   namespaces, same disks): its unit's start runs the fence, which refuses with db2
//!   named, so PostgreSQL stays down and db1's keepalived check fails; db2's own fence
//!   passes (db1 does not answer), and the generated failback bootstrap refuses to run on
//!   db2, which holds the address.
//!
//! Test-only overrides, none in the generated files: `archive_mode = off` and an empty
//! `restore_command` (no pgBackRest repository here), `fsync`/`full_page_writes` off
//! (speed), given on `pg_ctl`'s command line; an empty `pg_ident.conf` (Debian's
//! `pg_createcluster` makes one); the replica is a cold copy of the primary's data
//! directory with its slot created first (the npm PostgreSQL 16 has no `pg_basebackup`
//! and Debian's 15 cannot copy a 16 server), in place of the generated bootstrap script;
//! `/etc` and `/usr/lib/postgresql` are overlays per host holding the generated files
//! and `16/bin` links to the npm server and to Debian's 15 `psql`/`pg_isready` (what
//! PGDG's `postgresql-16` would install); `/run`, `/var/lib/postgresql` and
//! `/var/log/postgresql` are per-host scratch bind mounts; the test delivers the
//! secrets into `/run/medianest/secrets` as the agent would (owner `postgres`, as the
//! hosts' plans say).
//!
//! Needs root, `unshare`, `nsenter`, `ip`, `nft`, `keepalived`, `pgbouncer`,
//! `postgresql-15` (the client) and the PostgreSQL 16 binaries (scripts/test.sh).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// How long the test allows from the loss of db1's host to a write through PgBouncer on
/// the promoted db2.
const DEADLINE: Duration = Duration::from_secs(30);

/// Where scripts/test.sh unpacks the PostgreSQL 16 server (as in postgres.rs).
fn pg16() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("MEDIANEST_PG16_BIN")
            .unwrap_or_else(|_| "/var/cache/medianest-test/pg16-npm/pg16/package/native/bin".into()),
    );
    assert!(p.join("postgres").exists(), "no PostgreSQL 16 at {} (scripts/test.sh fetches it)", p.display());
    p
}

#[test]
fn the_failover_scripts_pass_shellcheck() {
    let hosts = repo_root().join("generated/hosts");
    let mut scripts = Vec::new();
    for h in ["db1", "db2"] {
        let root = hosts.join(h).join("root/etc/medianest");
        for f in ["postgres/failover.sh", "postgres-replica-init", "postgres/render-passfile.sh"] {
            assert!(root.join(f).exists(), "{h}: {f}");
            scripts.push(root.join(f));
        }
    }
    let o = Command::new("shellcheck").args(["-s", "sh"]).args(&scripts).output().expect("shellcheck runs");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // The check is real: a script it must refuse is refused.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.sh");
    let text =
        std::fs::read_to_string(&scripts[0]).unwrap().replace("for peer in $peers; do", "for peer in \"$peers\"; do");
    std::fs::write(&bad, text).unwrap();
    let o = Command::new("shellcheck").args(["-s", "sh"]).arg(&bad).output().unwrap();
    assert!(!o.status.success(), "shellcheck accepted a loop over one quoted word");
}

/// The run (`$1` generated/, `$2` scratch, `$3` the PostgreSQL 16 binaries, `$4` the
/// deadline in seconds). Prints `key=value` lines.
const RUN: &str = r#"
G=$1 T=$2 PG16=$3 DEADLINE=$4
VIP=10.0.3.20
K=$$
cleanup() {
  for ns in $(cat "$T/holders" 2>/dev/null); do kill_ns "$ns"; done
}
# Every process in the network namespace of holder $1 (a host's processes), SIGKILL.
kill_ns() {
  id=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 0
  # A holder gone and its pid reused must never mean this namespace.
  [ "$id" = "$(readlink /proc/$$/ns/net)" ] && return 0
  n=0
  while :; do
    left=0
    for p in /proc/[0-9]*; do
      if [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$id" ]; then
        left=1
        kill -9 "${p#/proc/}" 2>/dev/null
      fi
    done
    # Until they are gone: their mounts go with the last one.
    [ "$left" = 0 ] && return 0
    n=$((n+1)); [ $n -lt 50 ] || return 0
    sleep 0.1
  done
}
trap cleanup EXIT INT TERM
: > "$T/holders"
now() { date +%s.%N; }
since() { echo "$1" | awk -v t0="$2" '{ printf "%.1f", $1 - t0 }'; }

# The switch: one bridge.
unshare --net sh -c "echo \$\$ > $T/sw.pid; exec sleep 300" &
i=0; until [ -s "$T/sw.pid" ]; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
SW=$(cat "$T/sw.pid"); echo "$SW" >> "$T/holders"
nsenter -t "$SW" -n sh -c 'ip link set lo up && ip link add br0 type bridge && ip link set br0 up'

# A host "boots": new network and mount namespaces over its disks ($T/<host>), the
# generated files in place, its address on ens18 on the switch, its firewall and sysctl.
boot() {
  h=$1 addr=$2 H=$T/$1
  B=$H/boot.$(date +%s%N)
  mkdir -p "$B/up" "$B/work" "$B/uup" "$B/uwork" "$H/run" "$H/lib" "$H/log"
  rm -f "$H.pid"
  unshare --net --mount --propagation private sh -c "
    mount -t overlay overlay -o lowerdir=/etc,upperdir=$B/up,workdir=$B/work /etc
    mount -t overlay overlay -o lowerdir=/usr/lib/postgresql,upperdir=$B/uup,workdir=$B/uwork /usr/lib/postgresql
    mount --bind $H/run /run
    mount --bind $H/lib /var/lib/postgresql
    mount --bind $H/log /var/log/postgresql
    echo \$\$ > $H.pid
    exec sleep 300" &
  i=0; until [ -s "$H.pid" ]; do i=$((i+1)); [ $i -lt 50 ] || exit 1; sleep 0.1; done
  P=$(cat "$H.pid"); echo "$P" >> "$T/holders"
  eval "NS_$h=$P"
  ip link add "mf${K}$h" type veth peer name "mf${K}s$h"
  ip link set "mf${K}$h" netns "$P"
  ip link set "mf${K}s$h" netns "$SW"
  nsenter -t "$SW" -n sh -c "ip link set mf${K}s$h master br0 && ip link set mf${K}s$h up"
  in_h "$h" sh -ec "
    ip link set lo up
    ip link set mf${K}$h name ens18
    ip addr add $addr/24 dev ens18
    ip link set ens18 up
    nft -f $G/hosts/$h/root/etc/nftables.conf
    sysctl -qw \"\$(grep '^net.ipv4.ip_nonlocal_bind' $G/hosts/$h/root/etc/sysctl.d/90-medianest.conf | tr -d ' ')\"
    mkdir -p /run/postgresql /run/medianest/secrets/postgres /run/medianest/secrets/pgbouncer /usr/lib/postgresql/16/bin
    chown postgres:postgres /run/postgresql /var/lib/postgresql /var/log/postgresql
    for b in postgres pg_ctl initdb; do ln -sf $PG16/\$b /usr/lib/postgresql/16/bin/\$b; done
    for b in psql pg_isready; do ln -sf /usr/lib/postgresql/15/bin/\$b /usr/lib/postgresql/16/bin/\$b; done
    rm -rf /etc/postgresql /etc/keepalived /etc/pgbouncer /etc/medianest
    for d in postgresql keepalived pgbouncer medianest; do cp -R $G/hosts/$h/root/etc/\$d /etc/; done
    touch /etc/postgresql/16/main/pg_ident.conf
    chown -R postgres:postgres /etc/postgresql /etc/pgbouncer
    printf replpass > /run/medianest/secrets/postgres/replication_password
    printf apppass > /run/medianest/secrets/postgres/postgres_password
    printf apppass > /run/medianest/secrets/pgbouncer/postgres_password
    chown postgres:postgres /run/medianest/secrets/*/*
    chmod 400 /run/medianest/secrets/*/*"
}
in_h() { h=$1; shift; eval "p=\$NS_$h"; nsenter -t "$p" -m -n -- "$@"; }

FAST="-c archive_mode=off -c restore_command= -c fsync=off -c full_page_writes=off"
# postgresql@16-main's start: the drop-ins' ExecStartPre (the password file, the
# fence), then pg_ctlcluster's pg_ctl on the configuration directory.
start_pg() {
  in_h "$1" sh -c "sh /etc/medianest/postgres/render-passfile.sh && sh /etc/medianest/postgres/failover.sh fence && \
    runuser -u postgres -- /usr/lib/postgresql/16/bin/pg_ctl -D /etc/postgresql/16/main -l /var/log/postgresql/postgresql-16-main.log -w -t 30 -o '$FAST' start >/dev/null"
}
sql() { h=$1; shift; in_h "$h" runuser -u postgres -- psql -X -w -q -At -h /var/run/postgresql -d postgres "$@" 2>&1; }
# Through the host's PgBouncer, as the application.
app() { h=$1 a=$2; shift 2; in_h "$h" env PGPASSWORD=apppass timeout 5 psql -X -w -q -At -h "$a" -p 6432 -U medianest -d medianest "$@" 2>&1; }
holds_vip() { in_h "$1" ip -o addr show dev ens18 | grep -q " $VIP/"; }

boot db1 10.0.3.10
boot db2 10.0.3.11

# db1: a new cluster, started as its unit would; roles from the generated setup.
in_h db1 runuser -u postgres -- /usr/lib/postgresql/16/bin/initdb -N -D /var/lib/postgresql/16/main -U postgres --auth-local=peer -E UTF8 --locale=C.UTF-8 >/dev/null
start_pg db1 || { cat "$T/db1/log/postgresql-16-main.log" >&2; exit 1; }
in_h db1 sh /etc/medianest/postgres/setup.sh >/dev/null
# db2: a cold copy of db1 with its slot (in place of pg_basebackup), then a standby.
sql db1 -c "SELECT pg_create_physical_replication_slot('replica_db2', true)" >/dev/null
in_h db1 runuser -u postgres -- /usr/lib/postgresql/16/bin/pg_ctl -D /etc/postgresql/16/main -w -m fast stop >/dev/null
mkdir -p "$T/db2/lib/16"
cp -a "$T/db1/lib/16/main" "$T/db2/lib/16/main"
rm -rf "$T/db2/lib/16/main/pg_replslot/"*
touch "$T/db2/lib/16/main/standby.signal"
chown -R postgres:postgres "$T/db2/lib/16"
start_pg db1 || exit 1
start_pg db2 || { cat "$T/db2/log/postgresql-16-main.log" >&2; exit 1; }

for h in db1 db2; do
  in_h $h sh /etc/medianest/pgbouncer/render-userlist.sh
  in_h $h runuser -u postgres -- pgbouncer -d /etc/pgbouncer/pgbouncer.ini
  in_h $h keepalived -n -l -D -f /etc/keepalived/keepalived.conf -p /run/keepalived.pid -r /run/keepalived-vrrp.pid -c /run/keepalived-checkers.pid > "$T/$h/keepalived.log" 2>&1 &
done
i=0; until holds_vip db1; do
  i=$((i+1)); [ $i -lt 100 ] || { echo "db1 never took $VIP" >&2; cat "$T/db1/keepalived.log" >&2; exit 1; }; sleep 0.2; done
# db2 follows the address: it streams once db1 holds it.
i=0; until [ "$(sql db1 -c "SELECT state FROM pg_stat_replication WHERE application_name = 'db2'")" = streaming ]; do
  i=$((i+1)); [ $i -lt 100 ] || { echo "db2 does not stream" >&2; cat "$T/db2/log/postgresql-16-main.log" >&2; exit 1; }; sleep 0.2; done
echo "streaming=yes"
echo "listen_db1=$(sql db1 -c 'SHOW listen_addresses')"
sleep 3
echo "vip_db2_before=$(holds_vip db2 && echo yes || echo no)"
rc=0; in_h db2 sh /etc/medianest/postgres/failover.sh check || rc=$?
echo "check_db2_before=$rc"

# A write through db2's PgBouncer goes to the address, on db1, and streams to db2.
app db2 10.0.3.11 -c "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v text)" >/dev/null
echo "write_before=$(app db2 10.0.3.11 -c "INSERT INTO t VALUES (1, 'before') RETURNING id")"
echo "written_on=$(app db2 10.0.3.11 -c "SELECT host(inet_server_addr())")"
i=0; until [ "$(sql db2 -d medianest -c 'SELECT count(*) FROM t')" = 1 ]; do
  i=$((i+1)); [ $i -lt 100 ] || break; sleep 0.1; done
echo "replicated=$(sql db2 -d medianest -c 'SELECT v FROM t WHERE id = 1')"

# keepalived's notify on leaving MASTER fences a primary's writes; taking the address
# again lifts the fence (the generated script, as keepalived runs it).
in_h db1 sh /etc/medianest/postgres/failover.sh backup 2>/dev/null
echo "readonly_after_leave=$(sql db1 -c 'SHOW default_transaction_read_only')"
echo "write_while_fenced=$(sql db1 -d medianest -c "INSERT INTO t VALUES (9, 'fenced')" | head -1)"
in_h db1 sh /etc/medianest/postgres/failover.sh master 2>/dev/null
sleep 0.5
echo "readonly_after_master=$(sql db1 -c 'SHOW default_transaction_read_only')"

# db1's host is lost: every process of it killed at once, its link gone with it.
T0=$(now)
kill_ns "$NS_db1"
vip_at= promoted_at= write_at=
while :; do
  t=$(now)
  [ "$(since "$t" "$T0" | cut -d. -f1)" -lt "$DEADLINE" ] || break
  [ -n "$vip_at" ] || { holds_vip db2 && vip_at=$(since "$(now)" "$T0"); }
  [ -n "$promoted_at" ] || { [ "$(sql db2 -c 'SELECT pg_is_in_recovery()')" = f ] && promoted_at=$(since "$(now)" "$T0"); }
  if [ -n "$vip_at" ] && [ -z "$write_at" ] && [ "$(app db2 10.0.3.11 -c "INSERT INTO t VALUES (2, 'after') RETURNING id")" = 2 ]; then
    write_at=$(since "$(now)" "$T0")
  fi
  [ -n "$vip_at" ] && [ -n "$promoted_at" ] && [ -n "$write_at" ] && break
  sleep 0.2
done
echo "vip_moved_s=${vip_at:-never}"
echo "promoted_s=${promoted_at:-never}"
echo "write_after_s=${write_at:-never}"
echo "rows=$(app db2 10.0.3.11 -c "SELECT string_agg(v, ',' ORDER BY id) FROM t")"
echo "slot_for_db1=$(sql db2 -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'replica_db1'")"

# The failback's bootstrap refuses to turn the host holding the address into a replica.
rc=0; in_h db2 sh /etc/medianest/postgres-replica-init > /dev/null 2> "$T/init.err" || rc=$?
echo "init_on_db2=$rc $(grep -c 'this host holds 10.0.3.20' "$T/init.err")"

# db1 boots again on its old disks. Its unit's start runs the fence first.
boot db1 10.0.3.10
rm -f "$T/db1/run/postgresql/"*
rc=0; start_pg db1 2> "$T/fence.err" || rc=$?
echo "restart_db1=$rc"
echo "fence_says=$(grep -c 'refusing to start /var/lib/postgresql/16/main as a primary: 10.0.3.11' "$T/fence.err")"
rc=0; in_h db1 pg_isready -q -h /var/run/postgresql -p 5432 || rc=$?
echo "db1_running=$([ "$rc" -eq 0 ] && echo yes || echo no)"
rc=0; in_h db1 sh /etc/medianest/postgres/failover.sh check || rc=$?
echo "check_db1_after=$rc"
rc=0; in_h db2 sh /etc/medianest/postgres/failover.sh fence 2>/dev/null || rc=$?
echo "fence_db2=$rc"
echo "vip_db2_after=$(holds_vip db2 && echo yes || echo no)"
"#;

/// Kills whatever the run left in its namespaces, should the script itself be killed
/// (its own trap does this otherwise).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let holders = std::fs::read_to_string(self.0.join("holders")).unwrap_or_default();
        for h in holders.split_whitespace() {
            let Ok(id) = std::fs::read_link(format!("/proc/{h}/ns/net")) else { continue };
            // A holder gone and its pid reused must never mean the test's own namespace.
            if std::fs::read_link("/proc/self/ns/net").is_ok_and(|own| own == id) {
                continue;
            }
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.chars().all(|c| c.is_ascii_digit())
                    && std::fs::read_link(e.path().join("ns/net")).is_ok_and(|x| x == id)
                {
                    let _ = Command::new("kill").args(["-9", &name]).status();
                }
            }
        }
    }
}

#[test]
fn the_replica_takes_over_when_the_primary_host_is_lost_and_the_old_primary_is_fenced() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "the failover test needs root (namespaces)");
    let bin = pg16();
    let scratch = tempfile::tempdir().unwrap();
    let _guard = Cleanup(scratch.path().to_path_buf());
    let start = std::time::Instant::now();
    let o = Command::new("timeout")
        .args(["120", "sh", "-u", "-c", RUN, "sh"])
        .arg(repo_root().join("generated"))
        .arg(scratch.path())
        .arg(&bin)
        .arg(DEADLINE.as_secs().to_string())
        .output()
        .expect("sh runs");
    let out = stdout(&o);
    let logs = || {
        ["db1/keepalived.log", "db2/keepalived.log", "db2/log/postgresql-16-main.log", "db2/log/pgbouncer.log"]
            .iter()
            .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(scratch.path().join(f)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(o.status.success(), "exit {:?}\n{out}\n{}\n{}", o.status.code(), stderr(&o), logs());
    let get = |k: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in\n{out}\n{}", logs()))
            .to_string()
    };
    // Before: the primary listens on the address and holds it; the standby stays out.
    assert_eq!(get("streaming"), "yes");
    assert_eq!(get("listen_db1"), "localhost,10.0.3.10,10.0.3.20");
    assert_eq!(get("vip_db2_before"), "no", "{out}");
    assert_eq!(get("check_db2_before"), "1", "a standby does not compete with a live primary: {out}");
    assert_eq!(get("write_before"), "1", "{out}");
    assert_eq!(get("written_on"), "10.0.3.20", "PgBouncer writes to the failover address: {out}");
    assert_eq!(get("replicated"), "before", "{out}");
    // Leaving MASTER turns a primary read-only; becoming MASTER again lifts it.
    assert_eq!(get("readonly_after_leave"), "on", "{out}");
    assert!(get("write_while_fenced").contains("read-only transaction"), "{out}");
    assert_eq!(get("readonly_after_master"), "off", "{out}");
    // The failover, within the deadline.
    let secs = |k: &str| -> f64 {
        get(k).parse().unwrap_or_else(|_| panic!("{k} never happened within {DEADLINE:?}\n{out}\n{}", logs()))
    };
    let (vip, promoted, write) = (secs("vip_moved_s"), secs("promoted_s"), secs("write_after_s"));
    assert!(write <= DEADLINE.as_secs_f64(), "{out}");
    assert_eq!(get("rows"), "before,after", "the write before the loss survived, the one after went to db2: {out}");
    assert_eq!(get("slot_for_db1"), "1", "the new primary keeps a slot for the old one's rebuild: {out}");
    assert_eq!(get("init_on_db2"), "1 1", "the failback bootstrap never runs where the address is: {out}");
    // The old primary is fenced: its start refuses, naming the new primary.
    assert_ne!(get("restart_db1"), "0", "{out}");
    assert_eq!(
        get("fence_says"),
        "1",
        "{out}\n{}",
        std::fs::read_to_string(scratch.path().join("fence.err")).unwrap_or_default()
    );
    assert_eq!(get("db1_running"), "no", "{out}");
    assert_eq!(get("check_db1_after"), "1", "{out}");
    // The fence is not a blanket refusal: the new primary passes its own.
    assert_eq!(get("fence_db2"), "0", "{out}");
    assert_eq!(get("vip_db2_after"), "yes", "nopreempt: the address stays on db2: {out}");
    eprintln!(
        "failover: address moved after {vip:.1} s, db2 promoted after {promoted:.1} s, write through PgBouncer after {write:.1} s (deadline {} s); whole run {:.1} s",
        DEADLINE.as_secs(),
        start.elapsed().as_secs_f64()
    );
}
