//! The redis family against a real server (Debian 12's `redis-server`, Redis 7.0).
//!
//! From `fixtures/data-loopback` (cache1 at 127.0.0.6, app1 a client with a flow to the
//! redis port), in a private network and mount namespace: Redis starts from the
//! generated `/etc/redis/redis.conf`, unchanged, at its real path (`/etc/redis`,
//! `/var/lib/redis` and `/var/log/redis` are scratch bind mounts; `/run` is a private
//! tmpfs into which the test puts the delivered secret, as the agent would, and the
//! generated `render-secrets.sh` (the unit's `ExecStartPre`) renders the password file
//! from it). Then: a client without the password gets `NOAUTH`,
//! a wrong one `WRONGPASS`, the right one `PONG` on the flow's address and on loopback;
//! `FLUSHALL`, `FLUSHDB` and `CONFIG` are unknown commands; `INFO` shows the keys'
//! values (maxmemory 64mb, noeviction, AOF on); the server listens on exactly 127.0.0.1,
//! ::1 and 127.0.0.6 (a connection to 127.0.0.7 is refused). Redis has no config-test
//! mode, so the check that can fail is starting it: a misspelt policy, and a missing
//! secrets file, each stop it at once with exit code 1.
//!
//! Test-only overrides, none in the generated files: `--pidfile` on the command line
//! (`/run/redis` is systemd's RuntimeDirectory, absent here); no NOTIFY_SOCKET, so
//! `supervised systemd` only logs that nothing supervises it. Needs root, `unshare`,
//! `ip`, `ss` and `redis-server`/`redis-cli` (scripts/test.sh installs them).

use std::process::Command;

use crate::support::*;

/// The script (`$1`: the loopback site's generated/, `$2`: scratch), run in a private
/// network and mount namespace. Prints `key=value` lines.
const E2E: &str = r#"
G=$1 T=$2
ip link set lo up
mkdir -p "$T/etc" "$T/lib" "$T/log"
cp "$G/hosts/cache1/root/etc/redis/redis.conf" "$T/etc/"
# What the agent delivers (the service's secret redis_password, with a space and a
# quote to show the escaping), into a private /run; then the generated render script,
# as the unit's ExecStartPre does, writes Redis's password file.
mount -t tmpfs medianest-run /run
mkdir -p /run/medianest/secrets/cache
printf 's3cret "test' > /run/medianest/secrets/cache/redis_password
chmod 400 /run/medianest/secrets/cache/redis_password
sh "$G/hosts/cache1/root/etc/medianest/redis/render-secrets.sh"
echo "rendered=$(stat -c '%a %U' /run/medianest/redis/secrets.conf) $(grep -c '^requirepass "\\x73\\x33' /run/medianest/redis/secrets.conf)"
mount --bind "$T/etc" /etc/redis
mount --bind "$T/lib" /var/lib/redis
mount --bind "$T/log" /var/log/redis
cli() { timeout 5 redis-cli -p 6379 "$@" 2>&1; }
auth() { cli --no-auth-warning -a 's3cret "test' "$@"; }

redis-server /etc/redis/redis.conf --pidfile "$T/redis.pid" > "$T/stdout" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
i=0; until [ "$(auth -h 127.0.0.6 ping)" = PONG ]; do
  i=$((i+1)); [ $i -lt 100 ] || { cat "$T/stdout" "$T/log/redis-server.log" >&2; exit 1; }; sleep 0.05; done
echo "noauth=$(cli -h 127.0.0.6 ping)"
echo "wrongpass=$(cli --no-auth-warning -a wrong -h 127.0.0.6 ping | tr '\n' ' ')"
echo "auth=$(auth -h 127.0.0.6 ping)"
echo "loopback=$(auth -h 127.0.0.1 ping)"
echo "set=$(auth -h 127.0.0.6 set k v)"
echo "get=$(auth -h 127.0.0.6 get k)"
echo "flushall=$(auth -h 127.0.0.6 flushall)"
echo "flushdb=$(auth -h 127.0.0.6 flushdb)"
echo "config=$(auth -h 127.0.0.6 config get maxmemory)"
echo "after=$(auth -h 127.0.0.6 get k)"
echo "other=$(cli -h 127.0.0.7 ping)"
for f in maxmemory maxmemory_policy aof_enabled; do
  echo "$f=$(auth -h 127.0.0.6 info | tr -d '\r' | sed -n "s/^$f://p")"
done
echo "listening=$(ss -Hltn 'sport = :6379' | awk '{print $4}' | sort | tr '\n' ' ')"
kill $PID; wait $PID 2>/dev/null || true
trap - EXIT

# Starting is the check: a bad value, or no secrets file, stops Redis at once.
set +e
sed 's/^maxmemory-policy noeviction/maxmemory-policy noevictio/' /etc/redis/redis.conf > "$T/etc/bad.conf"
timeout 10 redis-server /etc/redis/bad.conf --pidfile "$T/bad.pid" > "$T/bad.out" 2>&1; echo "bad_exit=$?"
echo "bad_says=$(grep -c 'FATAL CONFIG FILE ERROR' "$T/bad.out")"
rm /run/medianest/redis/secrets.conf
timeout 10 redis-server /etc/redis/redis.conf --pidfile "$T/nosecret.pid" > "$T/nosecret.out" 2>&1; echo "nosecret_exit=$?"
rm /run/medianest/secrets/cache/redis_password
sh "$G/hosts/cache1/root/etc/medianest/redis/render-secrets.sh" > "$T/render.out" 2>&1; echo "render_exit=$? $(grep -c 'is missing' "$T/render.out")"
set -e
"#;

#[test]
fn redis_runs_from_the_generated_config_with_a_password_and_only_on_its_addresses() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&suite("fixtures/data-loopback/site"), &dir.path().join("site"));
    let o = medianest(dir.path(), &["build"]);
    assert!(o.status.success(), "the loopback site builds: {}", stderr(&o));
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
    assert!(get("noauth").starts_with("NOAUTH"), "{out}");
    assert!(get("wrongpass").contains("WRONGPASS"), "{out}");
    assert_eq!(get("auth"), "PONG");
    assert_eq!(get("loopback"), "PONG");
    assert_eq!(get("set"), "OK");
    assert_eq!(get("get"), "v");
    for c in ["flushall", "flushdb", "config"] {
        assert!(get(c).starts_with("ERR unknown command"), "{c}: {out}");
    }
    assert_eq!(get("after"), "v", "the data survived");
    assert!(get("other").contains("Connection refused"), "{out}");
    assert_eq!(get("maxmemory"), (64u64 << 20).to_string());
    assert_eq!(get("maxmemory_policy"), "noeviction");
    assert_eq!(get("aof_enabled"), "1");
    assert_eq!(get("listening").trim(), "127.0.0.1:6379 127.0.0.6:6379 [::1]:6379", "{out}");
    assert_eq!(get("bad_exit"), "1", "{out}");
    assert_eq!(get("bad_says"), "1", "{out}");
    assert_eq!(get("nosecret_exit"), "1", "{out}");
    assert_eq!(get("rendered"), "640 redis 1", "{out}");
    assert_eq!(get("render_exit"), "1 1", "no delivered secret, no password file: {out}");
    eprintln!("redis loopback run: {:.1} s", start.elapsed().as_secs_f64());
}

/// The agent's check of a staged `redis.conf` ([`Validator::Redis`], the command the
/// agent runs): every host's generated file passes, and quickly; a misspelt value, an
/// unknown directive and a missing include each fail with Redis's own message. The
/// staged file's `/run` includes are stand-ins, so it passes before the first secret
/// is delivered.
#[test]
fn the_agents_redis_check_passes_the_generated_config_and_refuses_a_broken_one() {
    use medianest::agent::actions;
    use medianest::artifact::Validator;
    let hosts = repo_root().join("generated/hosts");
    let mut checked = 0;
    for e in std::fs::read_dir(&hosts).unwrap() {
        let root = e.unwrap().path().join("root");
        if !root.join("etc/redis/redis.conf").exists() {
            continue;
        }
        let start = std::time::Instant::now();
        let o = actions::validator(Validator::Redis, &root).output().unwrap();
        assert!(o.status.success(), "{}: {}{}", root.display(), stdout(&o), stderr(&o));
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
        checked += 1;
    }
    assert_eq!(checked, 1, "cache1");
    let good = std::fs::read_to_string(hosts.join("cache1/root/etc/redis/redis.conf")).unwrap();
    for (broken, says) in [
        (good.replace("maxmemory-policy noeviction", "maxmemory-policy noevictio"), "argument(s) must be one of"),
        (
            good.replace("tcp-keepalive 300", "tcp-keepalive 300\nbogus-directive yes"),
            "Bad directive or wrong number of arguments",
        ),
        (
            good.replace("include /run/medianest/redis/secrets.conf", "include /etc/redis/missing.conf"),
            "redis-server stopped at once (exit 1)",
        ),
    ] {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/redis")).unwrap();
        std::fs::write(d.path().join("etc/redis/redis.conf"), broken).unwrap();
        let o = actions::validator(Validator::Redis, d.path()).output().unwrap();
        assert!(!o.status.success(), "a broken config passed: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{says}: {}", stderr(&o));
    }
}
